-- A bounded map of recently used items, for the workers' caches of
-- values derived from request data (proxy-cache: raw key inputs -> cache
-- key, decoded entries of the memory strategy; rate-limiting: client id ->
-- counter key prefix, and -> counter key of the current window).
--
--   local recent = require "luagate.recent"
--   local m = recent.new(max_items [, max_bytes])
--   m:get(k)     -> v | nil
--   m:set(k, v)  -- with max_bytes, v is a table and v.bytes its size
--   m:concat(k, left, right) -> left .. right, made once and kept under k
--   m:delete(k)
--   m:clear()
--
-- Two generations approximate an LRU at the cost of two table lookups: items
-- go in the current generation; when max_items items (or max_bytes bytes)
-- went in, it becomes the old generation and the previous old one is
-- dropped; an item found in the old generation moves to the current one.
-- So at most 2 * max_items items and 2 * max_bytes bytes are held, and an
-- item used at least once per max_items insertions stays.

local setmetatable = setmetatable

local _M = {}
local mt = { __index = _M }


function _M.new(max_items, max_bytes)
  return setmetatable({
    cur = {},
    old = {},
    n = 0,
    bytes = 0,
    max_items = max_items,
    max_bytes = max_bytes or math.huge,
    sized = max_bytes ~= nil,
  }, mt)
end


function _M:set(k, v)
  local bytes = self.sized and v.bytes or 0
  if self.n >= self.max_items or self.bytes + bytes > self.max_bytes then
    self.old = self.cur
    self.cur = {}
    self.n = 0
    self.bytes = 0
  end
  self.cur[k] = v
  self.n = self.n + 1
  self.bytes = self.bytes + bytes
end


function _M:get(k)
  local v = self.cur[k]
  if v == nil then
    v = self.old[k]
    if v ~= nil then
      self.old[k] = nil
      self:set(k, v)
    end
  end
  return v
end


-- The string left .. right, kept under k: a string made from request data
-- again and again is made once (rate-limiting's counter keys).
function _M:concat(k, left, right)
  local v = self:get(k)
  if v == nil then
    v = left .. right
    self:set(k, v)
  end
  return v
end


function _M:delete(k)
  self.cur[k] = nil
  self.old[k] = nil
end


function _M:clear()
  self.cur = {}
  self.old = {}
  self.n = 0
  self.bytes = 0
end


return _M
