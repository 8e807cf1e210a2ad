-- luacheck: no max line length
-- resty.lock + resty.lrucache + resty.sha256 / resty.string, as caching
-- auth plugins use them.
local lrucache = require "resty.lrucache"
local resty_lock = require "resty.lock"
local resty_sha256 = require "resty.sha256"
local resty_sha1 = require "resty.sha1"
local resty_md5 = require "resty.md5"
local str = require "resty.string"
local random = require "resty.random"

local H = { PRIORITY = 500, VERSION = "1.0.0" }

local cache = assert(lrucache.new(2))
local computed = 0

local function digest(class, s)
  local d = class:new()
  d:update(s:sub(1, 3))
  d:update(s:sub(4))
  return str.to_hex(d:final())
end

function H:access(conf)
  local input = kong.request.get_query_arg("s") or ""
  local lock = assert(resty_lock:new("kong_locks", { timeout = 2 }))
  local elapsed, err = lock:lock("compat-lock:" .. input)
  if not elapsed then
    return kong.response.exit(500, { message = "lock: " .. err })
  end
  local hold = tonumber(kong.request.get_query_arg("hold"))
  if hold then
    ngx.sleep(hold)
  end
  local hit = true
  local v = cache:get(input)
  if not v then
    hit = false
    computed = computed + 1
    v = digest(resty_sha256, input)
    cache:set(input, v, 10)
  end
  lock:unlock()
  local d = resty_sha256:new()
  d:update("abc")
  d:reset()
  d:update(input)
  return kong.response.exit(200, {
    sha256 = v,
    sha256_reset = str.to_hex(d:final()),
    sha1 = digest(resty_sha1, input),
    md5 = digest(resty_md5, input),
    hit = hit,
    count = cache:count(),
    capacity = cache:capacity(),
    random_len = #random.bytes(16, true),
    atoi = str.atoi("42abc"),
    waited = elapsed,
  })
end

return H
