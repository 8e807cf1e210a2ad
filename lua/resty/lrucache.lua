-- lua-resty-lrucache's API: a per-worker LRU cache of Lua values.
--   local lrucache = require "resty.lrucache"
--   local c, err = lrucache.new(200)
--   c:set(key, value, ttl?, flags?)  c:get(key) -> value, stale, flags
--   c:delete(key)  c:count()  c:capacity()  c:flush_all()  c:get_keys()
-- ttl in seconds (float), nil or 0 = no expiry; expiry uses ngx.now().
local type = type
local setmetatable = setmetatable

local function now()
  local ngx = rawget(_G, "ngx")
  if ngx and ngx.now then
    return ngx.now()
  end
  return os.time()
end

local _M = { _VERSION = "0.13" }
local mt = { __index = _M }


function _M.new(size)
  if type(size) ~= "number" or size < 1 then
    return nil, "size too small"
  end
  -- sentinel node of a circular doubly linked list, most recent first
  local head = {}
  head.prev, head.next = head, head
  return setmetatable({ size = size, n = 0, map = {}, head = head }, mt)
end


local function unlink(node)
  node.prev.next = node.next
  node.next.prev = node.prev
end


local function push_front(head, node)
  node.next = head.next
  node.prev = head
  head.next.prev = node
  head.next = node
end


function _M:get(key)
  local node = self.map[key]
  if not node then
    return nil
  end
  if node.expire and node.expire <= now() then
    unlink(node)
    self.map[key] = nil
    self.n = self.n - 1
    return nil, node.value, node.flags
  end
  unlink(node)
  push_front(self.head, node)
  return node.value, nil, node.flags
end


function _M:set(key, value, ttl, flags)
  local node = self.map[key]
  if node then
    unlink(node)
  else
    if self.n >= self.size then
      local last = self.head.prev
      unlink(last)
      self.map[last.key] = nil
      self.n = self.n - 1
    end
    node = { key = key }
    self.map[key] = node
    self.n = self.n + 1
  end
  node.value = value
  node.flags = flags
  node.expire = (ttl and ttl > 0) and now() + ttl or nil
  push_front(self.head, node)
end


function _M:delete(key)
  local node = self.map[key]
  if not node then
    return false
  end
  unlink(node)
  self.map[key] = nil
  self.n = self.n - 1
  return true
end


function _M:count()
  return self.n
end


function _M:capacity()
  return self.size
end


function _M:flush_all()
  self.map = {}
  self.n = 0
  self.head.prev, self.head.next = self.head, self.head
end


-- Keys from most to least recently used (at most max_count; 0/nil: all).
function _M:get_keys(max_count, res)
  res = res or {}
  local i = 0
  local node = self.head.next
  local all = not max_count or max_count == 0
  while node ~= self.head and (all or i < max_count) do
    i = i + 1
    res[i] = node.key
    node = node.next
  end
  res[i + 1] = nil
  return res
end


return _M
