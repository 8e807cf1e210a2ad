-- kong.tools.table: Kong's table helpers.
local type = type
local next = next
local pairs = pairs
local ipairs = ipairs
local select = select
local getmetatable = getmetatable
local setmetatable = setmetatable

local _M = {}

_M.EMPTY = setmetatable({}, {
  __newindex = function() error("empty table is read-only", 2) end,
})
_M.new = require "table.new"
_M.clear = require "table.clear"


function _M.table_merge(t1, t2)
  local res = {}
  if t1 then
    for k, v in pairs(t1) do
      res[k] = v
    end
  end
  if t2 then
    for k, v in pairs(t2) do
      res[k] = v
    end
  end
  return res
end


function _M.table_contains(arr, val)
  if arr then
    for _, v in pairs(arr) do
      if v == val then
        return true
      end
    end
  end
  return false
end


-- is_array(t, mode): mode "strict" = keys 1..n, "fast" = #t or empty,
-- default = positive integer keys only (holes allowed)
function _M.is_array(t, mode)
  if type(t) ~= "table" then
    return false
  end
  if mode == "fast" then
    return t[1] ~= nil or next(t) == nil
  end
  local max, n = 0, 0
  for k in pairs(t) do
    if type(k) ~= "number" or k < 1 or k % 1 ~= 0 then
      return false
    end
    if k > max then
      max = k
    end
    n = n + 1
  end
  if mode == "strict" then
    return max == n
  end
  return true
end


function _M.shallow_copy(orig)
  if type(orig) ~= "table" then
    return orig
  end
  local copy = {}
  for k, v in pairs(orig) do
    copy[k] = v
  end
  return copy
end


function _M.cycle_aware_deep_copy(orig, remove_metatables, deep_copy_keys,
                                  cycle_aware_cache)
  if type(orig) ~= "table" then
    return orig
  end
  cycle_aware_cache = cycle_aware_cache or {}
  if cycle_aware_cache[orig] then
    return cycle_aware_cache[orig]
  end
  local copy = {}
  cycle_aware_cache[orig] = copy
  for k, v in pairs(orig) do
    if deep_copy_keys then
      k = _M.cycle_aware_deep_copy(k, remove_metatables, deep_copy_keys,
                                   cycle_aware_cache)
    end
    copy[k] = _M.cycle_aware_deep_copy(v, remove_metatables, deep_copy_keys,
                                       cycle_aware_cache)
  end
  if not remove_metatables then
    local mt = getmetatable(orig)
    if mt then
      setmetatable(copy, mt)
    end
  end
  return copy
end


function _M.deep_copy(orig, copy_mt)
  if type(orig) ~= "table" then
    return orig
  end
  local copy = {}
  for k, v in next, orig do
    copy[_M.deep_copy(k, copy_mt)] = _M.deep_copy(v, copy_mt)
  end
  if copy_mt ~= false then
    local mt = getmetatable(orig)
    if mt then
      setmetatable(copy, mt)
    end
  end
  return copy
end


function _M.deep_merge(t1, t2)
  local res = _M.deep_copy(t1)
  for k, v in pairs(t2) do
    if type(v) == "table" and type(res[k]) == "table" then
      res[k] = _M.deep_merge(res[k], v)
    else
      res[k] = _M.deep_copy(v)
    end
  end
  return res
end
_M.cycle_aware_deep_merge = _M.deep_merge


function _M.pack(...)
  return { n = select("#", ...), ... }
end


function _M.unpack(t, i, j)
  return unpack(t, i or 1, j or t.n or #t)
end


function _M.concat(...)
  local res = {}
  for i = 1, select("#", ...) do
    local t = select(i, ...)
    if t then
      for _, v in ipairs(t) do
        res[#res + 1] = v
      end
    end
  end
  return res
end


-- add_error(errors, k, v): errors[k] = v, or a list when k repeats
function _M.add_error(errors, k, v)
  if not errors then
    errors = {}
  end
  if errors[k] then
    if type(errors[k]) ~= "table" then
      errors[k] = { errors[k] }
    end
    local list = errors[k]
    list[#list + 1] = v
  else
    errors[k] = v
  end
  return errors
end


return _M
