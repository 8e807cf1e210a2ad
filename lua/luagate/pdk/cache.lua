-- kong.cache / kong.core_cache: Kong's entity cache (an mlcache wrapper in
-- Kong), here a per-worker LRU (L1) in front of a shared dictionary (L2,
-- ngx.shared.kong_db_cache when the runtime created it).
--
--   local v, err, hit_level = kong.cache:get(key, opts, cb, ...)
--
-- get: L1, then L2, then cb(...) whose results are (value, err, ttl). A
-- nil value is cached (negative entry, neg_ttl); an err is returned as
-- "failed to get from node cache: <err>" and nothing is cached; a number
-- as third value overrides the ttl. ttl 0 means no expiry; the defaults
-- are Kong's DB-less ones (ttl = neg_ttl = 0). hit_level: 1 L1, 2 L2, 3 cb.
--
-- Invalidation is visible to every worker: invalidate() deletes the L2
-- entry and bumps an epoch counter kept in L2; an L1 entry is used only
-- while the epoch it was stored under is the current one. (Coarse: any
-- invalidation makes every worker refill its L1 from L2, which is cheap.)
-- Without a shared dictionary the cache is per worker.

local buffer = require "string.buffer"

local type = type
local error = error
local pcall = pcall
local tostring = tostring
local setmetatable = setmetatable
local max = math.max

local encode = buffer.encode
local decode = buffer.decode


local _M = {}


-- LRU ----------------------------------------------------------------------

local LRU = {}
LRU.__index = LRU


function _M.lru_new(size)
  local head = {}
  head.prev, head.next = head, head
  return setmetatable({ size = size, count = 0, map = {}, head = head },
                      LRU)
end


local function unlink(node)
  node.prev.next = node.next
  node.next.prev = node.prev
end


local function push_front(self, node)
  local head = self.head
  node.next = head.next
  node.prev = head
  head.next.prev = node
  head.next = node
end


-- node or nil; moves it to the front
function LRU:get(key)
  local node = self.map[key]
  if node then
    unlink(node)
    push_front(self, node)
  end
  return node
end


function LRU:set(key, value, expires, epoch)
  local node = self.map[key]
  if node then
    unlink(node)
  else
    if self.count >= self.size then
      local last = self.head.prev
      unlink(last)
      self.map[last.key] = nil
      self.count = self.count - 1
    end
    node = { key = key }
    self.map[key] = node
    self.count = self.count + 1
  end
  node.value, node.expires, node.epoch = value, expires, epoch
  push_front(self, node)
  return node
end


function LRU:delete(key)
  local node = self.map[key]
  if node then
    unlink(node)
    self.map[key] = nil
    self.count = self.count - 1
  end
end


function LRU:flush()
  self.map = {}
  self.count = 0
  self.head.prev, self.head.next = self.head, self.head
end


-- the cache ----------------------------------------------------------------

local Cache = {}
Cache.__index = Cache

local EPOCH_SUFFIX = "\0epoch"


-- opts: name (key prefix in the dict), dict (a shared dict or nil), ttl,
-- neg_ttl (seconds, 0 = none), lru_size, now (function returning seconds).
function _M.new(opts)
  local self = setmetatable({
    name = opts.name or "kong_db_cache",
    dict = opts.dict,
    ttl = max(opts.ttl or 0, 0),
    neg_ttl = max(opts.neg_ttl or opts.ttl or 0, 0),
    lru = _M.lru_new(opts.lru_size or 10000),
    now = opts.now or os.time,
    local_epoch = 0,
  }, Cache)
  self.prefix = self.name .. ":"
  self.epoch_key = self.name .. EPOCH_SUFFIX
  return self
end


function Cache:epoch()
  local dict = self.dict
  if dict then
    return dict:get(self.epoch_key) or 0
  end
  return self.local_epoch
end


function Cache:bump_epoch()
  local dict = self.dict
  if dict then
    local v = dict:incr(self.epoch_key, 1, 0)
    if v then
      return v
    end
  end
  self.local_epoch = self.local_epoch + 1
  return self.local_epoch
end


local function check_key(key)
  if type(key) ~= "string" then
    error("key must be a string", 3)
  end
end


local function check_opts(opts)
  if opts == nil then
    return
  end
  if type(opts) ~= "table" then
    error("opts must be a table", 3)
  end
  if opts.ttl ~= nil and (type(opts.ttl) ~= "number" or opts.ttl < 0) then
    error("opts.ttl must be >= 0", 3)
  end
  if opts.neg_ttl ~= nil and (type(opts.neg_ttl) ~= "number" or
                              opts.neg_ttl < 0) then
    error("opts.neg_ttl must be >= 0", 3)
  end
end


-- L1 then L2; returns found, value, level
function Cache:lookup(key, epoch)
  local now = self.now()
  local node = self.lru:get(key)
  if node then
    if node.epoch == epoch and (node.expires == 0 or node.expires > now) then
      return true, node.value, 1, node.expires
    end
    self.lru:delete(key)
  end
  local dict = self.dict
  if dict then
    local data = dict:get(self.prefix .. key)
    if data ~= nil then
      local ok, value = pcall(decode, data)
      if ok then
        local ttl = dict:ttl(self.prefix .. key)
        local expires = (ttl and ttl > 0) and (now + ttl) or 0
        self.lru:set(key, value, expires, epoch)
        return true, value, 2, expires
      end
    end
  end
  return false
end


function Cache:store(key, value, ttl, epoch)
  local now = self.now()
  self.lru:set(key, value, ttl > 0 and (now + ttl) or 0, epoch)
  local dict = self.dict
  if dict then
    local ok, data = pcall(encode, value)
    if ok then
      dict:set(self.prefix .. key, data, ttl)
    end
  end
end


function Cache:get(key, opts, cb, ...)
  check_key(key)
  check_opts(opts)
  local epoch = self:epoch()
  local found, value, level = self:lookup(key, epoch)
  if found then
    return value, nil, level
  end
  if cb == nil then
    return nil
  end
  if type(cb) ~= "function" then
    error("callback must be a function", 2)
  end
  local ok, v, err, ttl = pcall(cb, ...)
  if not ok then
    return nil, "failed to get from node cache: callback threw an error: " ..
                tostring(v)
  end
  if err ~= nil then
    return nil, "failed to get from node cache: " .. tostring(err)
  end
  if type(ttl) ~= "number" or ttl < 0 then
    if v == nil then
      ttl = opts and opts.neg_ttl or self.neg_ttl
    else
      ttl = opts and opts.ttl or self.ttl
    end
  end
  self:store(key, v, ttl, epoch)
  return v, nil, 3
end


-- Runs cb unconditionally and stores its result (mlcache's renew).
function Cache:renew(key, opts, cb, ...)
  check_key(key)
  check_opts(opts)
  if type(cb) ~= "function" then
    error("callback must be a function", 2)
  end
  local ok, v, err, ttl = pcall(cb, ...)
  if not ok then
    return nil, "failed to renew key in node cache: callback threw an " ..
                "error: " .. tostring(v)
  end
  if err ~= nil then
    return nil, "failed to renew key in node cache: " .. tostring(err)
  end
  if type(ttl) ~= "number" or ttl < 0 then
    ttl = v == nil and (opts and opts.neg_ttl or self.neg_ttl)
          or (opts and opts.ttl or self.ttl)
  end
  self:invalidate(key)
  self:store(key, v, ttl, self:epoch())
  return v, nil, ttl
end


-- Returns the remaining ttl (0: no expiry), nil, value; or nil when the
-- key is not cached.
function Cache:probe(key)
  check_key(key)
  local found, value, _, expires = self:lookup(key, self:epoch())
  if not found then
    return nil
  end
  local ttl = expires == 0 and 0 or max(expires - self.now(), 0)
  return ttl, nil, value
end


function Cache:safe_set(key, value)
  check_key(key)
  local ok, data = pcall(encode, value)
  if not ok then
    return nil, data
  end
  local dict = self.dict
  if dict then
    return dict:safe_set(self.prefix .. key, data, self.ttl)
  end
  self.lru:set(key, value, self.ttl > 0 and self.now() + self.ttl or 0,
               self:epoch())
  return true
end


function Cache:invalidate_local(key)
  check_key(key)
  self.lru:delete(key)
  local dict = self.dict
  if dict then
    dict:delete(self.prefix .. key)
  end
end


function Cache:invalidate(key)
  check_key(key)
  self:invalidate_local(key)
  -- the other workers' L1 entries
  self:bump_epoch()
end


function Cache:purge()
  self.lru:flush()
  local dict = self.dict
  if dict then
    local e = dict:get(self.epoch_key) or 0
    dict:flush_all()
    dict:set(self.epoch_key, e + 1)
  else
    self.local_epoch = self.local_epoch + 1
  end
end


-- mlcache's get_bulk: bulk = { key, opts, cb, arg, ... } in fours, with
-- bulk.n the number of operations. Returns { v, err, hit_level, ... }.
function Cache:get_bulk(bulk, opts)
  if type(bulk) ~= "table" then
    error("bulk must be a table", 2)
  end
  if opts ~= nil and type(opts) ~= "table" then
    error("opts must be a table", 2)
  end
  local n = bulk.n or (#bulk / 4)
  local res = { n = n }
  for i = 0, n - 1 do
    local v, err, level = self:get(bulk[i * 4 + 1], bulk[i * 4 + 2],
                                   bulk[i * 4 + 3], bulk[i * 4 + 4])
    res[i * 3 + 1], res[i * 3 + 2], res[i * 3 + 3] = v, err, level
  end
  return res
end


_M.Cache = Cache

return _M
