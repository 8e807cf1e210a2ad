-- lua-resty-lock's API over ngx.shared: a lock shared by the workers.
--   local lock = require("resty.lock"):new("kong_locks", { timeout = 5 })
--   local elapsed, err = lock:lock("key")   -- waits with ngx.sleep
--   ...; lock:unlock()   lock:expire(10)
-- opts: exptime (30 s: the lock frees itself if never unlocked), timeout
-- (5 s of waiting, 0 = try once), step (0.001 s first wait), ratio (2),
-- max_step (0.5 s).
local type = type
local setmetatable = setmetatable
local min = math.min
local tostring = tostring

local _M = { _VERSION = "0.09" }
local mt = { __index = _M }

local seq = 0


function _M.new(_, dict_name, opts)
  local ngx = rawget(_G, "ngx")
  local dict = ngx and ngx.shared and ngx.shared[dict_name]
  if not dict then
    return nil, "dictionary not found"
  end
  opts = opts or {}
  return setmetatable({
    dict = dict,
    exptime = opts.exptime or 30,
    timeout = opts.timeout or 5,
    step = opts.step or 0.001,
    ratio = opts.ratio or 2,
    max_step = opts.max_step or 0.5,
  }, mt)
end


local function token()
  seq = seq + 1
  local ngx = rawget(_G, "ngx")
  local pid = ngx and ngx.worker and ngx.worker.pid() or 0
  return tostring(pid) .. ":" .. seq
end


-- Returns the seconds waited, or nil and "timeout" / "locked" / an error.
function _M:lock(key)
  if type(key) ~= "string" then
    key = tostring(key)
  end
  if self.key then
    return nil, "locked"
  end
  local id = token()
  local dict = self.dict
  local ok, err = dict:add(key, id, self.exptime)
  if ok then
    self.key, self.id = key, id
    return 0
  end
  if err ~= "exists" then
    return nil, err
  end
  local timeout = self.timeout
  if timeout == 0 then
    return nil, "timeout"
  end
  local step, elapsed = self.step, 0
  local sleep = rawget(_G, "ngx").sleep
  while timeout > 0 do
    step = min(step, timeout)
    sleep(step)
    elapsed = elapsed + step
    timeout = timeout - step
    ok, err = dict:add(key, id, self.exptime)
    if ok then
      self.key, self.id = key, id
      return elapsed
    end
    if err ~= "exists" then
      return nil, err
    end
    step = min(step * self.ratio, self.max_step)
  end
  return nil, "timeout"
end


function _M:unlock()
  local key = self.key
  if not key then
    return nil, "unlocked"
  end
  self.key = nil
  local v = self.dict:get(key)
  if v ~= self.id then
    return nil, "unlocked" -- expired and taken by another
  end
  self.dict:delete(key)
  return 1
end


function _M:expire(time)
  local key = self.key
  if not key then
    return nil, "unlocked"
  end
  if self.dict:get(key) ~= self.id then
    self.key = nil
    return nil, "unlocked"
  end
  local ok, err = self.dict:set(key, self.id, time or self.exptime)
  if not ok then
    return nil, err
  end
  return true
end


return _M
