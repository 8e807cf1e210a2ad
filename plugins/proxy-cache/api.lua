-- proxy-cache: cache management, the functions behind Kong's Admin API
-- endpoints (`GET|DELETE /proxy-cache/:cache_key`, `DELETE /proxy-cache`,
-- `DELETE /proxy-cache/:plugin_id/caches`,
-- `GET|DELETE /proxy-cache/:plugin_id/caches/:cache_key`), which luagate's
-- Admin API serves with them (from a timer: luagate.admin's defer);
-- plugins and timers may call them directly:
--
--   local api = require "kong.plugins.proxy-cache.api"
--   api.lookup(cache_key [, plugin_id]) -> entry, plugin_id
--                                       | nil, "not found" | nil, err
--   api.purge(cache_key [, plugin_id])  -> true | nil, "not found"
--                                       | nil, err
--   api.purge_all([plugin_id])          -> number of entries removed,
--                                          and the errors of the stores
--                                          that failed (nil when none)
--   api.has_instance(plugin_id)         -> whether it is an enabled
--                                          proxy-cache instance
--
-- cache_key is the X-Cache-Key of a response. Without plugin_id every
-- enabled proxy-cache instance of the running configuration is searched
-- (instances that share a store are visited once; a store that cannot
-- be reached is skipped, its error returned when no other store had the
-- key). An entry is the table
-- the plugin stored: { status, headers, body, body_len, timestamp, ttl,
-- version, age0, stale_if_error }; an entry under a key whose responses
-- varied (Vary, with cache_control) is { vary = { header names } } and
-- purging it makes every variant unreachable.
--
-- The memory strategy works anywhere; the redis strategy needs a context
-- that may wait (access, or a timer: ngx.timer.at). purge and purge_all
-- remove entries from this node's shared dictionary, and from Redis for
-- every node.

local db = require "luagate.db"
local handler = require "kong.plugins.proxy-cache.handler"
local buffer = require "string.buffer"

local type = type
local pcall = pcall
local ipairs = ipairs
local tostring = tostring

local NOT_FOUND = "not found"

local _M = {}


-- { { id = plugin id, plan = plan }, ... } of the running configuration,
-- one per distinct store
local function instances(plugin_id)
  local conf = db.current()
  local list, seen = {}, {}
  for _, p in ipairs(conf and conf.plugins or {}) do
    if p.name == "proxy-cache" and p.enabled ~= false and
       (plugin_id == nil or p.id == plugin_id) then
      local plan = handler._plan_of(p.config)
      local s = plan.strategy
      if s then
        local id = s.name == "memory" and s.dict or
                   (s.name .. ":" .. tostring(s.red.key))
        if not seen[id] then
          seen[id] = true
          list[#list + 1] = { id = p.id, plan = plan }
        end
      end
    end
  end
  return list
end


-- Whether plugin_id is an enabled proxy-cache instance with a store.
function _M.has_instance(plugin_id)
  return instances(plugin_id)[1] ~= nil
end


local function check_key(cache_key)
  if type(cache_key) ~= "string" or cache_key == "" then
    error("cache_key must be a non-empty string", 3)
  end
end


function _M.lookup(cache_key, plugin_id)
  check_key(cache_key)
  local first_err
  for _, inst in ipairs(instances(plugin_id)) do
    local raw, err = inst.plan.strategy:fetch(cache_key)
    if raw then
      local ok, entry = pcall(buffer.decode, raw)
      if ok and type(entry) == "table" then
        entry.version = nil
        return entry, inst.id
      end
    end
    first_err = first_err or err
  end
  return nil, first_err or NOT_FOUND
end


function _M.purge(cache_key, plugin_id)
  check_key(cache_key)
  local found, first_err = false, nil
  for _, inst in ipairs(instances(plugin_id)) do
    local ok, err = inst.plan.strategy:purge(cache_key)
    if ok then
      found = true
    end
    first_err = first_err or err
  end
  if found then
    return true
  end
  return nil, first_err or NOT_FOUND
end


function _M.purge_all(plugin_id)
  local n, errs = 0, nil
  for _, inst in ipairs(instances(plugin_id)) do
    local c, err = inst.plan.strategy:flush()
    if c then
      n = n + c
    else
      errs = errs and (errs .. "; " .. err) or err
    end
  end
  return n, errs
end


return _M
