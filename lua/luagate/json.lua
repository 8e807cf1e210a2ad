-- JSON decoding that keeps what cjson loses. Debian's cjson (2.1.0) decodes
-- `{}` and `[]` to the same empty table, loses the order of object keys and
-- turns every number into a double; it also accepts more than RFC 8259
-- (NaN, hex numbers). One strict recursive-descent reader serves three uses:
--
--   json.decode(s)          cjson's tables (fast path), but a document that
--                           may hold an empty array goes through the strict
--                           reader, which marks every array with ARRAY_MT
--                           (request-validator)
--   json.slow_decode(s)     the strict reader alone, plain tables, arrays
--                           marked (JSON Schema texts)
--   json.decode_ordered(s)  order and source text kept (xml-json):
--                             object  setmetatable({ keys = {...},
--                                                    vals = {...} }, OBJECT_MT)
--                             array   setmetatable({ v1, ... }, ARRAY_MT)
--                             number  setmetatable({ text = "1.50" },
--                                                  NUMBER_MT)
--   json.is_valid(s)        true when s is exactly one RFC 8259 value
--                           (aggregator places answers in its response as
--                           they came)
--
-- Strings and booleans decode to themselves, JSON null to NULL (cjson.null)
-- everywhere. Decoders return the value, or nil and an error message.
--
--   local json = require "luagate.json"
--   local v = assert(json.decode('{"a":[]}'))
--   json.is_array(v.a) --> true

local cjson = require "cjson.safe"

local type = type
local next = next
local tonumber = tonumber
local getmetatable = getmetatable
local setmetatable = setmetatable
local byte = string.byte
local sub = string.sub
local find = string.find
local char = string.char
local fmt = string.format
local concat = table.concat
local floor = math.floor

local cjson_decode = cjson.decode

local _M = {
  NULL = cjson.null,
  OBJECT_MT = { __name = "json object" },
  ARRAY_MT = { __name = "json array" },
  NUMBER_MT = { __name = "json number" },
}
local NULL = _M.NULL
local OBJECT_MT, ARRAY_MT, NUMBER_MT = _M.OBJECT_MT, _M.ARRAY_MT,
                                       _M.NUMBER_MT

-- how a reader builds values; max_depth counts nested containers
local PLAIN = { ordered = false, max_depth = 1000 } -- cjson's own limit
local ORDERED = { ordered = true, max_depth = 512 }
local CHECK = { ordered = false, max_depth = 512 }

local ESCAPES = {
  [34] = "\"", [92] = "\\", [47] = "/", [98] = "\b", [102] = "\f",
  [110] = "\n", [114] = "\r", [116] = "\t",
}


-- True for a decoded JSON array (a marked table, or a table whose first
-- key is a number). For decode's and slow_decode's values.
local function is_array(t)
  local k = next(t)
  if k == nil then
    return getmetatable(t) == ARRAY_MT
  end
  return type(k) == "number"
end
_M.is_array = is_array


-- The kind of a decode_ordered value: "object", "array", "number", "null",
-- "string" or "boolean".
function _M.kind(v)
  if v == NULL then
    return "null"
  end
  local t = type(v)
  if t == "table" then
    local mt = getmetatable(v)
    if mt == OBJECT_MT then
      return "object"
    elseif mt == ARRAY_MT then
      return "array"
    elseif mt == NUMBER_MT then
      return "number"
    end
  end
  return t
end


-- the strict reader -----------------------------------------------------------

local function utf8_char(cp)
  if cp < 0x80 then
    return char(cp)
  elseif cp < 0x800 then
    return char(0xC0 + floor(cp / 0x40), 0x80 + cp % 0x40)
  elseif cp < 0x10000 then
    return char(0xE0 + floor(cp / 0x1000), 0x80 + floor(cp / 0x40) % 0x40,
                0x80 + cp % 0x40)
  end
  return char(0xF0 + floor(cp / 0x40000), 0x80 + floor(cp / 0x1000) % 0x40,
              0x80 + floor(cp / 0x40) % 0x40, 0x80 + cp % 0x40)
end


local function skip(s, i)
  local _, e = find(s, "^[ \t\r\n]*", i)
  return e + 1
end


local function decode_string(s, i)
  -- i is just past the opening quote
  local parts, n = nil, 0
  local start = i
  while true do
    local j = find(s, "[\"\\%z\1-\31]", i)
    if not j then
      return nil, "unterminated string"
    end
    local c = byte(s, j)
    if c == 34 then
      if not parts then
        return sub(s, start, j - 1), j + 1
      end
      n = n + 1
      parts[n] = sub(s, i, j - 1)
      return concat(parts, "", 1, n), j + 1
    elseif c == 92 then
      parts = parts or {}
      n = n + 1
      parts[n] = sub(s, i, j - 1)
      local e = byte(s, j + 1)
      if e == 117 then -- \uXXXX
        local hex = sub(s, j + 2, j + 5)
        local cp = find(hex, "^%x%x%x%x$") and tonumber(hex, 16)
        if not cp then
          return nil, "invalid unicode escape"
        end
        i = j + 6
        if cp >= 0xD800 and cp <= 0xDBFF then
          local lo = sub(s, i, i + 1) == "\\u" and sub(s, i + 2, i + 5)
          local lcp = lo and find(lo, "^%x%x%x%x$") and tonumber(lo, 16)
          if lcp and lcp >= 0xDC00 and lcp <= 0xDFFF then
            cp = 0x10000 + (cp - 0xD800) * 0x400 + (lcp - 0xDC00)
            i = i + 6
          end
        end
        n = n + 1
        parts[n] = utf8_char(cp)
      else
        local r = e and ESCAPES[e]
        if not r then
          return nil, "invalid escape"
        end
        n = n + 1
        parts[n] = r
        i = j + 2
      end
    else
      return nil, "control character in string"
    end
  end
end


-- -?(0|[1-9][0-9]*)(.[0-9]+)?([eE][+-]?[0-9]+)?
local function decode_number(s, i, o)
  local j = i
  if byte(s, j) == 45 then
    j = j + 1
  end
  local c = byte(s, j)
  if c == 48 then
    j = j + 1
  elseif c and c >= 49 and c <= 57 then
    local _, e = find(s, "^%d*", j + 1)
    j = e + 1
  else
    return nil, "invalid number"
  end
  if byte(s, j) == 46 then
    local _, e = find(s, "^%d+", j + 1)
    if not e then
      return nil, "invalid number"
    end
    j = e + 1
  end
  c = byte(s, j)
  if c == 101 or c == 69 then
    j = j + 1
    c = byte(s, j)
    if c == 43 or c == 45 then
      j = j + 1
    end
    local _, e = find(s, "^%d+", j)
    if not e then
      return nil, "invalid number"
    end
    j = e + 1
  end
  local text = sub(s, i, j - 1)
  if o.ordered then
    return setmetatable({ text = text }, NUMBER_MT), j
  end
  return tonumber(text), j
end


local decode_value -- forward

local function decode_array(s, i, depth, o)
  local arr = setmetatable({}, ARRAY_MT)
  i = skip(s, i)
  if byte(s, i) == 93 then
    return arr, i + 1
  end
  local n = 0
  while true do
    local v
    v, i = decode_value(s, i, depth, o)
    if v == nil then
      return nil, i
    end
    n = n + 1
    arr[n] = v
    i = skip(s, i)
    local c = byte(s, i)
    if c == 93 then
      return arr, i + 1
    elseif c ~= 44 then
      return nil, "expected ',' or ']'"
    end
    i = i + 1
  end
end


local function decode_object(s, i, depth, o)
  local ordered = o.ordered
  local obj, keys, vals
  if ordered then
    keys, vals = {}, {}
    obj = setmetatable({ keys = keys, vals = vals }, OBJECT_MT)
  else
    obj = {}
  end
  i = skip(s, i)
  if byte(s, i) == 125 then
    return obj, i + 1
  end
  local n = 0
  while true do
    if byte(s, i) ~= 34 then
      return nil, "expected a string key"
    end
    local k
    k, i = decode_string(s, i + 1)
    if k == nil then
      return nil, i
    end
    i = skip(s, i)
    if byte(s, i) ~= 58 then
      return nil, "expected ':'"
    end
    local v
    v, i = decode_value(s, i + 1, depth, o)
    if v == nil then
      return nil, i
    end
    if ordered then
      n = n + 1
      keys[n], vals[n] = k, v
    else
      obj[k] = v
    end
    i = skip(s, i)
    local c = byte(s, i)
    if c == 125 then
      return obj, i + 1
    elseif c ~= 44 then
      return nil, "expected ',' or '}'"
    end
    i = skip(s, i + 1)
  end
end


decode_value = function(s, i, depth, o)
  i = skip(s, i)
  local c = byte(s, i)
  if c == 123 or c == 91 then
    if depth >= o.max_depth then
      return nil, "too many nested containers"
    end
    if c == 123 then
      return decode_object(s, i + 1, depth + 1, o)
    end
    return decode_array(s, i + 1, depth + 1, o)
  elseif c == 34 then
    return decode_string(s, i + 1)
  elseif c == 116 and sub(s, i, i + 3) == "true" then
    return true, i + 4
  elseif c == 102 and sub(s, i, i + 4) == "false" then
    return false, i + 5
  elseif c == 110 and sub(s, i, i + 3) == "null" then
    return NULL, i + 4
  elseif c == 45 or (c and c >= 48 and c <= 57) then
    return decode_number(s, i, o)
  elseif c == nil then
    return nil, "unexpected end of input"
  end
  return nil, fmt("unexpected character '%s' at position %d", char(c), i)
end


-- Reads exactly one value (blanks around it allowed) the way o says.
local function read(s, o)
  if type(s) ~= "string" then
    return nil, "expected a string"
  end
  local v, i = decode_value(s, 1, 0, o)
  if v == nil then
    return nil, i
  end
  i = skip(s, i)
  if i <= #s then
    return nil, "unexpected data after the value at position " .. i
  end
  return v
end


-- The strict reader alone: plain tables, arrays marked with ARRAY_MT.
function _M.slow_decode(s)
  return read(s, PLAIN)
end


-- Objects and arrays keep their order, numbers their source text.
function _M.decode_ordered(s)
  return read(s, ORDERED)
end


function _M.is_valid(s)
  return read(s, CHECK) ~= nil
end


-- cjson's speed where it cannot go wrong: a document that may hold an empty
-- array (`[` then `]` with only blanks between) takes the strict reader.
function _M.decode(s)
  if type(s) ~= "string" then
    return nil, "expected a string"
  end
  if find(s, "%[[ \t\r\n]*%]") then
    return read(s, PLAIN)
  end
  local v, err = cjson_decode(s)
  if v == nil and err then
    return nil, err
  end
  return v
end


return _M
