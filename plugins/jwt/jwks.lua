-- JSON Web Key Sets for the jwt plugin (luagate extension).
--
-- Key sets are fetched with luagate.http, parsed into key objects
-- (jwt_parser.jwk_to_key) and kept in two places:
--   * ngx.shared.kong: the JWKS document and its fetch time, so that every
--     worker uses what one fetched;
--   * a per-worker table: the parsed keys, rebuilt when the shared copy is
--     newer than the worker's.
-- A fetch happens
--   * in the background (ngx.timer.at) when a config names the URL
--     (configure) and when the keys are older than jwks_refresh_interval;
--   * at once, in the request, when no keys were ever fetched, or when a
--     token names a `kid` the set has not, at most once per
--     jwks_min_refetch_interval per URL across workers.
-- A fetch in flight is marked in the shared dictionary: other workers wait
-- for its result instead of fetching too.

local cjson = require "cjson.safe"
local jwt_parser = require "kong.plugins.jwt.jwt_parser"

local type = type
local ipairs = ipairs
local tostring = tostring
local json_decode = cjson.decode
local key_fits = jwt_parser.key_fits
local jwk_to_key = jwt_parser.jwk_to_key

local PREFIX = "luagate:jwt:jwks:"
local WAIT_STEP = 0.01 -- seconds between looks at a fetch in flight
local FAIL_BACKOFF = 5 -- seconds without fetching after a failed fetch

local _M = {}

-- url -> { keys = array of entries, by_kid = kid -> entry, at = fetch time }
-- entry: { kid, alg, key (key object), credential = { key = kid, ... } }
local sets = {}

-- url -> shared dictionary keys
local shm_keys = {}

local function keys_of(url)
  local k = shm_keys[url]
  if not k then
    k = {
      body = PREFIX .. "body:" .. url,
      at = PREFIX .. "at:" .. url,
      lock = PREFIX .. "lock:" .. url,
      fail = PREFIX .. "fail:" .. url,
      kid = PREFIX .. "kid:" .. url,
    }
    shm_keys[url] = k
  end
  return k
end


local function shm()
  return ngx.shared.kong
end


local function log(level, ...)
  if kong and kong.log then
    kong.log[level](...)
  end
end


-- Parses a JWKS document into a set; nil, err when it is not one.
local function parse(url, body, at)
  local doc = json_decode(body)
  if type(doc) ~= "table" or type(doc.keys) ~= "table" then
    return nil, "not a JWK set (no 'keys' array)"
  end
  local set = { keys = {}, by_kid = {}, at = at }
  for i, jwk in ipairs(doc.keys) do
    if type(jwk) == "table" and jwk.use ~= "enc" and jwk.kty ~= "oct" then
      local key, err = jwk_to_key(jwk)
      if not key then
        log("warn", "JWKS ", url, ": key #", i, " skipped: ", err)
      else
        local kid = type(jwk.kid) == "string" and jwk.kid or nil
        local e = {
          kid = kid,
          alg = type(jwk.alg) == "string" and jwk.alg or nil,
          key = key,
          credential = { key = kid, jwks_url = url },
        }
        set.keys[#set.keys + 1] = e
        if kid and not set.by_kid[kid] then
          set.by_kid[kid] = e
        end
      end
    end
  end
  return set
end


-- Takes the shared copy of url's set when it is newer than ours.
local function sync(url)
  local dict = shm()
  local set = sets[url]
  if not dict then
    return set
  end
  local k = keys_of(url)
  local at = dict:get(k.at)
  if not at or (set and set.at >= at) then
    return set
  end
  local body = dict:get(k.body)
  if not body then
    return set
  end
  local parsed, err = parse(url, body, at)
  if not parsed then
    log("err", "JWKS ", url, ": ", err)
    return set
  end
  sets[url] = parsed
  return parsed
end


-- Fetches url now (the caller may wait). Returns the set, or nil, err.
-- When another worker is fetching it, waits for that fetch instead.
local failed_at = {} -- url -> time of this worker's last failed fetch

local function fetch(url, timeout)
  local dict = shm()
  local k = keys_of(url)
  if dict and dict:get(k.fail) or
     (failed_at[url] and ngx.now() - failed_at[url] < FAIL_BACKOFF) then
    return nil, "the last fetch failed less than " .. FAIL_BACKOFF ..
                " seconds ago"
  end
  local wait_s = timeout / 1000 + 1
  if dict then
    local ok = dict:add(k.lock, true, wait_s)
    if not ok then
      -- someone fetches: wait for a newer shared copy
      local before = dict:get(k.at) or 0
      local waited = 0
      while waited < wait_s do
        ngx.sleep(WAIT_STEP)
        waited = waited + WAIT_STEP
        local at = dict:get(k.at)
        if at and at > before then
          return sync(url)
        end
        if not dict:get(k.lock) then
          break
        end
      end
      local set = sync(url)
      if set then
        return set
      end
      return nil, "the fetch of another worker did not finish"
    end
  end
  local http = require "luagate.http"
  local res, err = http.request(url, {
    timeout = timeout,
    headers = { Accept = "application/json" },
  })
  local set
  if not res then
    err = "could not fetch: " .. tostring(err)
  elseif res.status ~= 200 then
    err = "could not fetch: status " .. tostring(res.status)
  else
    local at = ngx.now()
    set, err = parse(url, res.body or "", at)
    if set then
      sets[url] = set
      if dict then
        local sok, serr = dict:set(k.body, res.body)
        if not sok then
          log("warn", "JWKS ", url, ": not shared with other workers: ",
              serr)
        else
          dict:set(k.at, at)
        end
      end
    end
  end
  if dict then
    dict:delete(k.lock)
  end
  if not set then
    failed_at[url] = ngx.now()
    if dict then
      dict:set(k.fail, true, FAIL_BACKOFF)
    end
    log("err", "JWKS ", url, ": ", err)
    return nil, err
  end
  failed_at[url] = nil
  return set
end


-- Schedules a background fetch of url (the config names it, or its keys
-- are old), skipped when the shared copy is younger than fresh_for seconds
-- by then. At most one pending per URL and worker.
local pending = {}
function _M.prefetch(url, timeout, fresh_for)
  if pending[url] then
    return
  end
  pending[url] = true
  local ok, err = ngx.timer.at(0, function(premature)
    pending[url] = nil
    if premature then
      return
    end
    local set = sync(url)
    if set and ngx.now() - set.at < (fresh_for or 0) then
      return
    end
    fetch(url, timeout)
  end)
  if not ok then
    pending[url] = nil
    log("err", "JWKS ", url, ": could not schedule a fetch: ", err)
  end
end


-- The usable set of url: synced with the shared copy, fetched now when
-- there is none, refreshed in the background when old.
local function get(url, conf)
  local set = sync(url)
  if not set then
    set = fetch(url, conf.jwks_timeout)
    return set
  end
  if ngx.now() - set.at > conf.jwks_refresh_interval then
    _M.prefetch(url, conf.jwks_timeout, conf.jwks_refresh_interval)
  end
  return set
end


-- May url be fetched again for an unknown kid? Once per interval, across
-- workers.
local function may_refetch(url, interval)
  local dict = shm()
  if not dict then
    local set = sets[url]
    return not set or ngx.now() - set.at >= interval
  end
  if interval <= 0 then
    return true
  end
  return (dict:add(keys_of(url).kid, true, interval))
end


local function fits(e, alg)
  return (e.alg == nil or e.alg == alg) and key_fits(alg, e.key)
end


-- Finds the keys for a token: with kid, the key of that kid in the first
-- set that has it (fetching the sets again when none has it, within
-- jwks_min_refetch_interval); without kid, every key of every set.
-- Returns an array of entries that fit alg (maybe empty) and whether the
-- kid was found at all.
function _M.find(conf, kid, alg)
  local urls = conf.jwks_urls
  if kid ~= nil then
    if type(kid) ~= "string" then
      return {}, false
    end
    for _, url in ipairs(urls) do
      local set = get(url, conf)
      local e = set and set.by_kid[kid]
      if e then
        return fits(e, alg) and { e } or {}, true
      end
    end
    for _, url in ipairs(urls) do
      if may_refetch(url, conf.jwks_min_refetch_interval) then
        local set = fetch(url, conf.jwks_timeout)
        local e = set and set.by_kid[kid]
        if e then
          return fits(e, alg) and { e } or {}, true
        end
      else
        local set = sync(url)
        local e = set and set.by_kid[kid]
        if e then
          return fits(e, alg) and { e } or {}, true
        end
      end
    end
    return {}, false
  end
  local out = {}
  for _, url in ipairs(urls) do
    local set = get(url, conf)
    if set then
      for _, e in ipairs(set.keys) do
        if fits(e, alg) then
          out[#out + 1] = e
        end
      end
    end
  end
  return out, #out > 0
end


-- For specs and operations: drop this worker's parsed sets.
function _M.reset()
  sets = {}
end


return _M
