-- proxy-cache storage: where encoded cache entities live.
--
--   local strategies = require "kong.plugins.proxy-cache.strategies"
--   local s, err = strategies.new(conf)   -- one per config, see handler
--   s:fetch(key)            -> string | nil (absent) | nil, err
--   s:store(key, value, ttl) -> true | nil, err   (ttl in seconds)
--   s:purge(key)            -> true (deleted) | false (absent) | nil, err
--   s:flush()               -> number of entries removed | nil, err
--
-- Keys are stored under the prefix "proxy-cache:" so that flush() removes
-- this plugin's entries only (the default dictionary, kong_db_cache, also
-- holds kong.cache's). memory: a shared dictionary of this node, usable
-- in every phase. redis: luagate.redis, usable where a request or timer
-- may wait (access, timers): the handler stores from a timer.
--
-- DELAYED_STORE[name] is true for strategies that cannot store from
-- body_filter.

local redis = require "luagate.redis"

local ngx = ngx

local type = type
local tostring = tostring
local sub = string.sub
local ceil = math.ceil
local unpack = unpack
local setmetatable = setmetatable

local PREFIX = "proxy-cache:"
local SCAN_COUNT = 1000

local _M = {
  PREFIX = PREFIX,
  DELAYED_STORE = { redis = true },
}


-- memory ---------------------------------------------------------------------

local Memory = {}
Memory.__index = Memory


function Memory:fetch(key)
  local v, err = self.dict:get(PREFIX .. key)
  if err then
    return nil, "could not read the cache entry: " .. err
  end
  return v
end


function Memory:store(key, value, ttl)
  local ok, err = self.dict:set(PREFIX .. key, value, ttl)
  if not ok then
    return nil, "could not store the cache entry: " .. tostring(err)
  end
  return true
end


function Memory:purge(key)
  local k = PREFIX .. key
  local present = self.dict:get(k) ~= nil
  self.dict:delete(k)
  return present
end


function Memory:flush()
  -- get_keys walks the whole dictionary under its lock: an admin
  -- operation, never a request path
  local keys = self.dict:get_keys(0)
  local n = 0
  local plen = #PREFIX
  for i = 1, #keys do
    local k = keys[i]
    if sub(k, 1, plen) == PREFIX then
      self.dict:delete(k)
      n = n + 1
    end
  end
  return n
end


-- redis ----------------------------------------------------------------------

local Redis = {}
Redis.__index = Redis


function Redis:fetch(key)
  local v, err = self.red:command("GET", PREFIX .. key)
  if err then
    return nil, "could not read the cache entry from Redis: " .. err
  end
  if v == redis.null or v == nil then
    return nil
  end
  return v
end


function Redis:store(key, value, ttl)
  local ok, err
  if ttl and ttl > 0 then
    ok, err = self.red:command("SET", PREFIX .. key, value, "PX",
                               tostring(ceil(ttl * 1000)))
  else
    ok, err = self.red:command("SET", PREFIX .. key, value)
  end
  if not ok then
    return nil, "could not store the cache entry in Redis: " .. tostring(err)
  end
  return true
end


function Redis:purge(key)
  local n, err = self.red:command("DEL", PREFIX .. key)
  if not n then
    return nil, "could not purge the cache entry from Redis: " ..
                tostring(err)
  end
  return n > 0
end


function Redis:flush()
  local cursor = "0"
  local n = 0
  repeat
    local res, err = self.red:command("SCAN", cursor, "MATCH", PREFIX .. "*",
                                      "COUNT", tostring(SCAN_COUNT))
    if not res then
      return nil, "could not scan Redis: " .. tostring(err)
    end
    cursor = res[1]
    local keys = res[2]
    if type(keys) == "table" and #keys > 0 then
      local del, derr = self.red:command("DEL", unpack(keys))
      if not del then
        return nil, "could not purge Redis entries: " .. tostring(derr)
      end
      n = n + del
    end
  until cursor == "0"
  return n
end


-- Returns the strategy object of conf, or nil, err (a missing dictionary).
function _M.new(conf)
  if conf.strategy == "redis" then
    local r = conf.redis or {}
    return setmetatable({
      name = "redis",
      red = redis.new({
        host = r.host,
        port = r.port,
        db = r.database,
        username = r.username,
        password = r.password,
        timeout = r.timeout,
      }),
    }, Redis)
  end
  local name = conf.memory and conf.memory.dictionary_name or "kong_db_cache"
  local dict = ngx.shared[name]
  if not dict then
    return nil, "missing shared dict '" .. name .. "'"
  end
  return setmetatable({ name = "memory", dict = dict }, Memory)
end


return _M
