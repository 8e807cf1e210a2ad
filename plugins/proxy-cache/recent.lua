-- proxy-cache: a bounded map of recently used items, for the worker's
-- caches (handler: raw key inputs -> cache key; strategies: decoded
-- entries of the memory strategy).
--
--   local recent = require "kong.plugins.proxy-cache.recent"
--   local m = recent.new(max_items [, max_bytes])
--   m:get(k)     -> v | nil
--   m:set(k, v)  -- with max_bytes, v is a table and v.bytes its size
--   m:delete(k)
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


function _M:delete(k)
  self.cur[k] = nil
  self.old[k] = nil
end


return _M
