-- traffic-split: canary releases and A/B tests by config alone.
--
--   * rules are tried in order; the first whose `match` holds (header,
--     cookie, query argument, consumer: all that are set) decides;
--   * one of its targets is chosen by weight: at random, or with `sticky`
--     from a hash (CRC32) of the consumer id, a header, a cookie or the
--     client IP, so that one client stays on one target across requests and
--     workers (a client without the key is hashed by its IP);
--   * the request goes to the target: a `url` (scheme, host, port, and its
--     path in place of the service's path), a `service` of the config (its
--     protocol, host, port, path and timeouts), an `upstream`, or the
--     route's own service when the target names none;
--   * `X-Traffic-Split: <target name or rule.target>` on the response.
--
-- Rules, weights and resolved services are compiled once per config (in
-- configure(), or on the first request) and kept per conf table; a reload
-- with new weights takes effect on the next request.
--
-- PRIORITY 785: after the authentication plugins (lowest: hmac-auth 1030),
-- so that `consumer` rules and sticky-by-consumer see the consumer, and
-- after acl (950), rate-limiting (910) and request-transformer (801), so
-- that requests they reject are not routed and a path they set is kept
-- relative to the new target.

local kong = kong
local type = type
local ipairs = ipairs
local tostring = tostring
local setmetatable = setmetatable
local random = math.random
local find = string.find
local sub = string.sub
local fmt = string.format
local concat = table.concat

local HEADER = "X-Traffic-Split"
local HASH_BUCKETS = 10000


local TrafficSplitHandler = {
  PRIORITY = 785,
  VERSION = "1.0.0",
}


-- compiled configs ------------------------------------------------------------

local compiled = setmetatable({}, { __mode = "k" })


local function cookie_value(name)
  local cookies = kong.request.get_header("Cookie")
  if cookies == nil then
    return nil
  end
  if type(cookies) == "table" then
    cookies = concat(cookies, "; ")
  end
  for pair in (cookies .. ";"):gmatch("%s*([^;]*);") do
    local eq = find(pair, "=", 1, true)
    if eq and sub(pair, 1, eq - 1):match("^%s*(.-)%s*$") == name then
      local v = sub(pair, eq + 1):match("^%s*(.-)%s*$")
      if sub(v, 1, 1) == '"' and sub(v, -1) == '"' and #v > 1 then
        v = sub(v, 2, -2)
      end
      return v
    end
  end
  return nil
end


local function value_test(cond)
  local value, regex = cond.value, cond.regex
  if value then
    return function(v)
      return v == value
    end
  elseif regex then
    return function(v)
      return (ngx.re.find(v, regex, "jo")) ~= nil
    end
  end
  return function()
    return true
  end
end


-- header values may be arrays (repeated header): any of them
local function any_of(test, v)
  if type(v) == "table" then
    for _, x in ipairs(v) do
      if test(x) then
        return true
      end
    end
    return false
  end
  return test(v)
end


local function compile_match(m)
  local checks = {}
  if not m then
    return checks
  end
  if m.header then
    local name, test = m.header.name, value_test(m.header)
    checks[#checks + 1] = function()
      local v = kong.request.get_header(name)
      return v ~= nil and any_of(test, v)
    end
  end
  if m.cookie then
    local name, test = m.cookie.name, value_test(m.cookie)
    checks[#checks + 1] = function()
      local v = cookie_value(name)
      return v ~= nil and test(v)
    end
  end
  if m.query then
    local name, test = m.query.name, value_test(m.query)
    checks[#checks + 1] = function()
      local v = kong.request.get_query_arg(name)
      if v == true then
        v = ""
      end
      return type(v) == "string" and test(v)
    end
  end
  if m.consumer then
    local want = m.consumer
    checks[#checks + 1] = function()
      local c = kong.client.get_consumer()
      return c ~= nil and (c.id == want or c.username == want)
    end
  end
  return checks
end


local function resolve_service(name)
  local db = kong.db
  if not db or not db.services then
    return nil, "kong.db is not available to resolve service '" .. name .. "'"
  end
  local s = db.services:select_by_name(name)
  if not s then
    s = db.services:select({ id = name })
  end
  if not s then
    return nil, "no service named '" .. name .. "' in the config"
  end
  return s
end


local function compile_target(t, ri, ti)
  local out = {
    weight = t.weight,
    label = t.name or (ri .. "." .. ti),
  }
  if t.url then
    local u = assert(require("kong.db.schema.typedefs").parse_url(t.url))
    out.kind = "target"
    out.scheme = u.scheme
    out.host = u.host
    out.port = u.port or (u.scheme == "https" and 443 or 80)
    out.path = u.path or "/"
  elseif t.service then
    local s, err = resolve_service(t.service)
    if not s then
      return nil, fmt("rules[%d].targets[%d]: %s", ri - 1, ti - 1, err)
    end
    out.kind = "target"
    out.scheme = s.protocol or "http"
    out.host = s.host
    out.port = s.port or (out.scheme == "https" and 443 or 80)
    out.path = s.path or "/"
    out.timeouts = {
      s.connect_timeout or 60000, s.write_timeout or 60000,
      s.read_timeout or 60000,
    }
    if not t.name then
      out.label = s.name or out.label
    end
  elseif t.upstream then
    out.kind = "upstream"
    out.upstream = t.upstream
    if not t.name then
      out.label = t.upstream
    end
  else
    out.kind = "keep"
  end
  return out
end


local function compile(conf)
  local rules = {}
  for ri, rule in ipairs(conf.rules) do
    local targets, total = {}, 0
    for ti, t in ipairs(rule.targets) do
      local ct, err = compile_target(t, ri, ti)
      if not ct then
        return nil, err
      end
      total = total + ct.weight
      ct.cum = total
      targets[ti] = ct
    end
    rules[ri] = {
      checks = compile_match(rule.match),
      targets = targets,
      total = total,
    }
  end
  local c = { rules = rules, sticky = conf.sticky }
  compiled[conf] = c
  return c
end


local function get(conf)
  local c = compiled[conf]
  if c then
    return c
  end
  local err
  c, err = compile(conf)
  if not c then
    error("traffic-split: " .. err, 0)
  end
  return c
end


-- Compiles every config when it loads, so that the first request does not
-- pay for it and a config naming an unknown service is reported at once.
function TrafficSplitHandler:configure(configs)
  for _, conf in ipairs(configs or {}) do
    if not compiled[conf] then
      local ok, err = compile(conf)
      if not ok then
        kong.log.err(err, "; requests it applies to fail with 500")
      end
    end
  end
end


-- choosing --------------------------------------------------------------------

local function sticky_key(sticky)
  local by = sticky.by
  local key
  if by == "consumer" then
    local c = kong.client.get_consumer()
    key = c and (c.id or c.username)
  elseif by == "header" then
    key = kong.request.get_header(sticky.name)
    if type(key) == "table" then
      key = key[1]
    end
  elseif by == "cookie" then
    key = cookie_value(sticky.name)
  end
  if key == nil or key == "" then
    key = kong.client.get_ip()
  end
  return tostring(key)
end


local function choose(rule, sticky)
  local targets, total = rule.targets, rule.total
  if #targets == 1 then
    return targets[1]
  end
  if sticky then
    -- bucket in [0, HASH_BUCKETS): target i when bucket * total falls
    -- below its cumulative weight * HASH_BUCKETS (raising a canary's weight
    -- only moves clients towards it)
    local bucket = ngx.crc32_long(sticky_key(sticky)) % HASH_BUCKETS
    local x = bucket * total
    for i = 1, #targets do
      if x < targets[i].cum * HASH_BUCKETS then
        return targets[i]
      end
    end
    return targets[#targets]
  end
  local x = random() * total
  for i = 1, #targets do
    if x < targets[i].cum then
      return targets[i]
    end
  end
  return targets[#targets]
end


-- The upstream path for a target whose path replaces the service's: the
-- rest of the path the route would give (strip_path applied) is kept.
local function replace_service_path(new_base)
  local uri = ngx.var.upstream_uri or "/"
  local q = find(uri, "?", 1, true)
  if q then
    uri = sub(uri, 1, q - 1)
  end
  local service = kong.router.get_service()
  local base = service and service.path or "/"
  local rest
  if base == "/" then
    rest = uri
  elseif sub(uri, 1, #base) == base then
    rest = sub(uri, #base + 1)
  elseif sub(base, -1) == "/" and uri == sub(base, 1, -2) then
    rest = ""
  else
    rest = uri -- a plugin set its own path: keep it whole
  end
  if rest == "" then
    return new_base
  end
  if sub(new_base, -1) == "/" and sub(rest, 1, 1) == "/" then
    return new_base .. sub(rest, 2)
  end
  return new_base .. rest
end


local function apply(t)
  local kind = t.kind
  if kind == "target" then
    kong.service.set_target(t.host, t.port)
    kong.service.request.set_scheme(t.scheme)
    kong.service.request.set_path(replace_service_path(t.path))
    local to = t.timeouts
    if to then
      kong.service.set_timeouts(to[1], to[2], to[3])
    end
  elseif kind == "upstream" then
    local ok, err = kong.service.set_upstream(t.upstream)
    if not ok then
      error("traffic-split: " .. tostring(err), 0)
    end
  end
end


function TrafficSplitHandler:access(conf)
  local c = get(conf)
  for _, rule in ipairs(c.rules) do
    local ok = true
    local checks = rule.checks
    for i = 1, #checks do
      if not checks[i]() then
        ok = false
        break
      end
    end
    if ok then
      local t = choose(rule, c.sticky)
      apply(t)
      if conf.response_header then
        local ctx = kong.ctx.plugin
        ctx.label = t.label -- luacheck: ignore 122
      end
      return
    end
  end
end


-- Headers set in access do not reach a proxied response in luagate
-- (docs/pdk.md, known gaps): set it here.
function TrafficSplitHandler:header_filter(conf)
  local label = kong.ctx.plugin.label
  if label then
    kong.response.set_header(HEADER, label)
  end
end


return TrafficSplitHandler
