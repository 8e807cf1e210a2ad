-- A small JSON reader (RFC 8259) that records the 1-based line of every
-- value, keyed by path like luagate.config.yaml. Nulls become
-- luagate.schema's NULL (cjson.null). Used for declarative configs only:
-- correctness and error lines matter more than speed.

local type = type
local tonumber = tonumber
local byte = string.byte
local sub = string.sub
local find = string.find
local char = string.char
local concat = table.concat
local floor = math.floor
local error = error
local pcall = pcall

local Schema = require "luagate.schema"
local yaml_reader = require "luagate.config.yaml"

local NULL = Schema.NULL
local child_path = yaml_reader.child_path


local _M = {}


local ESCAPES = {
  [byte('"')] = '"', [byte("\\")] = "\\", [byte("/")] = "/",
  [byte("b")] = "\b", [byte("f")] = "\f", [byte("n")] = "\n",
  [byte("r")] = "\r", [byte("t")] = "\t",
}


local function utf8_encode(cp)
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


-- Parses `text`. Returns doc, lines; or nil, line, message.
function _M.parse(text)
  local pos = 1
  local line = 1
  local len = #text
  local lines = {}

  local function fail(msg)
    error({ json_error = msg, line = line }, 0)
  end

  local function skip_ws()
    while pos <= len do
      local c = byte(text, pos)
      if c == 10 then
        line = line + 1
      elseif c ~= 32 and c ~= 9 and c ~= 13 then
        return
      end
      pos = pos + 1
    end
  end

  local function describe()
    if pos > len then
      return "unexpected end of input"
    end
    return "unexpected character '" .. sub(text, pos, pos) .. "'"
  end

  local function read_hex4()
    local h = sub(text, pos, pos + 3)
    if not find(h, "^%x%x%x%x$") then
      fail("invalid unicode escape")
    end
    pos = pos + 4
    return tonumber(h, 16)
  end

  local function read_string()
    pos = pos + 1 -- opening quote
    local parts = {}
    local start = pos
    while true do
      if pos > len then
        fail("unterminated string")
      end
      local c = byte(text, pos)
      if c == 34 then
        parts[#parts + 1] = sub(text, start, pos - 1)
        pos = pos + 1
        return concat(parts)
      elseif c == 92 then
        parts[#parts + 1] = sub(text, start, pos - 1)
        local e = byte(text, pos + 1)
        pos = pos + 2
        if e == 117 then -- \u
          local cp = read_hex4()
          if cp >= 0xD800 and cp <= 0xDBFF then
            if sub(text, pos, pos + 1) ~= "\\u" then
              fail("invalid unicode surrogate pair")
            end
            pos = pos + 2
            local lo = read_hex4()
            if lo < 0xDC00 or lo > 0xDFFF then
              fail("invalid unicode surrogate pair")
            end
            cp = 0x10000 + (cp - 0xD800) * 0x400 + (lo - 0xDC00)
          end
          parts[#parts + 1] = utf8_encode(cp)
        elseif e and ESCAPES[e] then
          parts[#parts + 1] = ESCAPES[e]
        else
          fail("invalid escape in string")
        end
        start = pos
      elseif c < 32 then
        fail("control character in string")
      else
        pos = pos + 1
      end
    end
  end

  local function read_number()
    local s, e = find(text, "^-?%d+%.?%d*[eE]?[-+]?%d*", pos)
    local lit = s and sub(text, s, e)
    if not lit or not find(lit, "^-?0$") and not find(lit, "^-?[1-9]") and
       not find(lit, "^-?0[%.eE]") then
      fail("invalid number")
    end
    local n = tonumber(lit)
    if not n then
      fail("invalid number '" .. lit .. "'")
    end
    pos = e + 1
    return n
  end

  local read_value -- forward

  local function read_literal(word, value)
    if sub(text, pos, pos + #word - 1) ~= word then
      fail(describe())
    end
    pos = pos + #word
    return value
  end

  read_value = function(path)
    skip_ws()
    lines[path] = line
    local c = byte(text, pos)
    if c == 123 then -- {
      pos = pos + 1
      local obj = {}
      skip_ws()
      if byte(text, pos) == 125 then
        pos = pos + 1
        return obj
      end
      while true do
        skip_ws()
        if byte(text, pos) ~= 34 then
          fail(describe() .. ", expected a string key")
        end
        local key_line = line
        local key = read_string()
        skip_ws()
        if byte(text, pos) ~= 58 then
          fail(describe() .. ", expected ':'")
        end
        pos = pos + 1
        local kpath = child_path(path, key)
        lines[kpath .. "?key"] = key_line
        obj[key] = read_value(kpath)
        skip_ws()
        c = byte(text, pos)
        if c == 44 then
          pos = pos + 1
        elseif c == 125 then
          pos = pos + 1
          return obj
        else
          fail(describe() .. ", expected ',' or '}'")
        end
      end
    elseif c == 91 then -- [
      pos = pos + 1
      local arr = {}
      skip_ws()
      if byte(text, pos) == 93 then
        pos = pos + 1
        return arr
      end
      local i = 0
      while true do
        arr[i + 1] = read_value(child_path(path, i))
        i = i + 1
        skip_ws()
        c = byte(text, pos)
        if c == 44 then
          pos = pos + 1
        elseif c == 93 then
          pos = pos + 1
          return arr
        else
          fail(describe() .. ", expected ',' or ']'")
        end
      end
    elseif c == 34 then
      return read_string()
    elseif c == 116 then
      return read_literal("true", true)
    elseif c == 102 then
      return read_literal("false", false)
    elseif c == 110 then
      return read_literal("null", NULL)
    elseif c == 45 or (c and c >= 48 and c <= 57) then
      return read_number()
    end
    fail(describe())
  end

  local ok, res = pcall(function()
    local v = read_value("")
    skip_ws()
    if pos <= len then
      fail(describe() .. " after the document")
    end
    return v
  end)
  if not ok then
    if type(res) == "table" then
      return nil, res.line, res.json_error
    end
    return nil, line, tostring(res)
  end
  return res, lines
end


return _M
