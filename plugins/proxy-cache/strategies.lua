-- proxy-cache storage: where encoded cache entities live.
--
--   local strategies = require "kong.plugins.proxy-cache.strategies"
--   local s, err = strategies.new(conf)   -- one per config, see handler
--   s:fetch(key)            -> string | nil (absent) | nil, err
--   s:fetch_entry(key, decode) -> decode(fetch(key)) | nil | nil, err
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
--
-- The memory strategy's fetch_entry keeps the decoded entries in the
-- worker (LOCAL_* below), each with the stamp of the stored value
-- (dict:get_stamp: a version that changes with every store of the key,
-- and its expiry), and checks the stamp on every use: one lookup in the
-- dictionary, no copy of the value, no decode. Any change of the key in
-- the dictionary (a store by any worker, a purge, expiry, eviction,
-- flush_all) changes or removes the stamp, so the next use on every worker
-- sees it: the dictionary stays the only truth. The decoded entry is
-- shared by the requests of the worker: read-only. Such an entry carries
-- memo_dep, its key and stamp, which a hit gives the runtime's answer memo
-- (handler.lua, memo_of).

local redis = require "luagate.redis"
local recent = require "luagate.recent"

local ngx = ngx

local type = type
local tostring = tostring
local sub = string.sub
local ceil = math.ceil
local unpack = unpack
local setmetatable = setmetatable

local PREFIX = "proxy-cache:"
local SCAN_COUNT = 1000

-- the worker's decoded memory entries: at most LOCAL_ITEMS entries and
-- LOCAL_BYTES bytes of stored values per generation (luagate.recent: twice
-- that in all); values larger than LOCAL_MAX_VALUE are decoded on every use
local LOCAL_ITEMS = 1000
local LOCAL_BYTES = 8 * 1024 * 1024
local LOCAL_MAX_VALUE = 1024 * 1024

local local_entries = recent.new(LOCAL_ITEMS, LOCAL_BYTES)

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


function Memory:fetch_entry(key, decode)
  local dict = self.dict
  local dkey = PREFIX .. key
  local ver, expires = dict:get_stamp(dkey)
  if not ver then
    local_entries:delete(dkey)
    return nil
  end
  local item = local_entries:get(dkey)
  if item and item.ver == ver and item.expires == expires and
     item.dict == dict then
    return item.entry
  end
  -- a store between get_stamp and get gives a newer value under the older
  -- stamp: the next use fetches it again, never an older value
  local raw, err = dict:get(dkey)
  if raw == nil then
    if type(err) == "string" then
      return nil, "could not read the cache entry: " .. err
    end
    local_entries:delete(dkey)
    return nil
  end
  local entry = decode(raw)
  if entry and #raw <= LOCAL_MAX_VALUE then
    local_entries:set(dkey, { ver = ver, expires = expires, dict = dict,
                              entry = entry, bytes = #raw })
    -- the value this decoded entry is, for kong.response.exit_packed's
    -- memo (the entry is decoded again when the stamp changes)
    entry.memo_dep = { dict = dict, key = dkey, version = ver,
                       expires = expires }
  end
  return entry
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


function Redis:fetch_entry(key, decode)
  local raw, err = self:fetch(key)
  if raw == nil then
    return nil, err
  end
  return decode(raw)
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
