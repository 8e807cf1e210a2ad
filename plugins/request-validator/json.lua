-- JSON decoding for the request validator: cjson's speed, with JSON's
-- object / array distinction kept for empty containers.
--
-- cjson (Debian's 2.1.0) decodes `{}` and `[]` to the same empty table, so
-- `{"type": "array"}` could not tell `[]` from `{}`. Non-empty tables are
-- told apart by their keys (numbers for arrays, strings for objects). A
-- document that may hold an empty array (`[` then `]` with only blanks
-- between) is decoded by the small decoder below instead, which gives every
-- array the ARRAY_MT metatable. JSON null is cjson.null in both.
--
--   local json = require "kong.plugins.request-validator.json"
--   local v, err = json.decode('{"a":[]}')
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
local NULL = cjson.null

local _M = {
  NULL = NULL,
  ARRAY_MT = { __name = "json array" },
}
local ARRAY_MT = _M.ARRAY_MT


-- True for a decoded JSON array (a marked table, or a table whose first
-- key is a number).
local function is_array(t)
  local k = next(t)
  if k == nil then
    return getmetatable(t) == ARRAY_MT
  end
  return type(k) == "number"
end
_M.is_array = is_array


-- the small decoder -----------------------------------------------------------

local ESCAPES = {
  [34] = "\"", [92] = "\\", [47] = "/", [98] = "\b", [102] = "\f",
  [110] = "\n", [114] = "\r", [116] = "\t",
}

local MAX_DEPTH = 1000

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


local decode_value -- forward

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


local function decode_array(s, i, depth)
  local arr = setmetatable({}, ARRAY_MT)
  i = skip(s, i)
  if byte(s, i) == 93 then
    return arr, i + 1
  end
  local n = 0
  while true do
    local v
    v, i = decode_value(s, i, depth)
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


local function decode_object(s, i, depth)
  local obj = {}
  i = skip(s, i)
  if byte(s, i) == 125 then
    return obj, i + 1
  end
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
    v, i = decode_value(s, i + 1, depth)
    if v == nil then
      return nil, i
    end
    obj[k] = v
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


-- -?(0|[1-9][0-9]*)(.[0-9]+)?([eE][+-]?[0-9]+)?
local function decode_number(s, i)
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
  return tonumber(sub(s, i, j - 1)), j
end


decode_value = function(s, i, depth)
  i = skip(s, i)
  local c = byte(s, i)
  if c == 123 then
    if depth >= MAX_DEPTH then
      return nil, "too many nested containers"
    end
    return decode_object(s, i + 1, depth + 1)
  elseif c == 91 then
    if depth >= MAX_DEPTH then
      return nil, "too many nested containers"
    end
    return decode_array(s, i + 1, depth + 1)
  elseif c == 34 then
    return decode_string(s, i + 1)
  elseif c == 116 and sub(s, i, i + 3) == "true" then
    return true, i + 4
  elseif c == 102 and sub(s, i, i + 4) == "false" then
    return false, i + 5
  elseif c == 110 and sub(s, i, i + 3) == "null" then
    return NULL, i + 4
  end
  if c == 45 or (c and c >= 48 and c <= 57) then
    return decode_number(s, i)
  end
  if c == nil then
    return nil, "unexpected end of input"
  end
  return nil, fmt("unexpected character '%s'", char(c))
end


-- Decodes with the small decoder; returns value or nil, err.
local function slow_decode(s)
  local v, i = decode_value(s, 1, 0)
  if v == nil then
    return nil, i
  end
  i = skip(s, i)
  if i <= #s then
    return nil, "trailing garbage"
  end
  return v
end
_M.slow_decode = slow_decode


-- Decodes a JSON text. Returns the value, or nil and an error message.
function _M.decode(s)
  if type(s) ~= "string" then
    return nil, "expected a string"
  end
  if find(s, "%[[ \t\r\n]*%]") then
    return slow_decode(s)
  end
  local v, err = cjson_decode(s)
  if v == nil and err then
    return nil, err
  end
  return v
end


return _M
