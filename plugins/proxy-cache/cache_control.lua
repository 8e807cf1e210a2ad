-- proxy-cache: Cache-Control directives and freshness (RFC 9111), used
-- when config.cache_control is on.
--
--   parse(value)         -> { ["max-age"] = 60, ["no-cache"] = true, ... }
--                          (names lowercase; a value that is a number is a
--                          number, a quoted string loses its quotes;
--                          nil for nil/empty input; value may be an array
--                          of header values)
--   lifetime(cc, expires, date, now) -> freshness lifetime in seconds
--                          (s-maxage, max-age, else Expires - Date), or
--                          nil when the response gives none
--   vary_names(value)    -> sorted array of lowercase names, "*" for
--                          "Vary: *", nil when empty

local type = type
local tonumber = tonumber
local concat = table.concat
local sort = table.sort
local find = string.find
local sub = string.sub
local lower = string.lower
local byte = string.byte

local ngx = ngx

local COMMA = byte(",")
local EQ = byte("=")
local QUOTE = byte('"')

local _M = {}


-- trims spaces and tabs of s[i..j]
local function trim(s, i, j)
  while i <= j do
    local c = byte(s, i)
    if c ~= 32 and c ~= 9 then
      break
    end
    i = i + 1
  end
  while j >= i do
    local c = byte(s, j)
    if c ~= 32 and c ~= 9 then
      break
    end
    j = j - 1
  end
  return i, j
end


function _M.parse(value)
  if type(value) == "table" then
    value = concat(value, ",")
  end
  if type(value) ~= "string" or value == "" then
    return nil
  end
  local t = {}
  local n = #value
  local i = 1
  while i <= n do
    -- one directive: name[=value] up to the next comma outside quotes
    local j = i
    local eq
    while j <= n do
      local c = byte(value, j)
      if c == COMMA then
        break
      elseif c == EQ and not eq then
        eq = j
      elseif c == QUOTE and eq then
        local close = find(value, '"', j + 1, true)
        j = close or n
      end
      j = j + 1
    end
    local ns, ne = trim(value, i, (eq or j) - 1)
    if ne >= ns then
      local name = lower(sub(value, ns, ne))
      local v = true
      if eq then
        local vs, ve = trim(value, eq + 1, j - 1)
        local s = sub(value, vs, ve)
        if byte(s, 1) == QUOTE and byte(s, -1) == QUOTE and #s >= 2 then
          s = sub(s, 2, -2)
        end
        v = tonumber(s) or s
      end
      if t[name] == nil then -- the first occurrence wins
        t[name] = v
      end
    end
    i = j + 1
  end
  return t
end


local function seconds(v)
  if type(v) == "number" and v >= 0 then
    return v
  end
  return nil
end
_M.seconds = seconds


function _M.lifetime(cc, expires, date, now)
  if cc then
    local s = seconds(cc["s-maxage"]) or seconds(cc["max-age"])
    if s then
      return s
    end
  end
  if type(expires) == "table" then
    expires = expires[#expires] -- several: the last one wins
  end
  if expires then
    local exp = ngx.parse_http_time(expires)
    if not exp then
      return 0 -- an invalid Expires means "already expired"
    end
    if type(date) == "table" then
      date = date[1]
    end
    local base = date and ngx.parse_http_time(date) or now
    local d = exp - base
    return d > 0 and d or 0
  end
  return nil
end


function _M.vary_names(value)
  if type(value) == "table" then
    value = concat(value, ",")
  end
  if type(value) ~= "string" then
    return nil
  end
  local names = {}
  local seen = {}
  local i, n = 1, #value
  while i <= n do
    local j = find(value, ",", i, true) or (n + 1)
    local s, e = trim(value, i, j - 1)
    if e >= s then
      local name = lower(sub(value, s, e))
      if name == "*" then
        return "*"
      end
      if not seen[name] then
        seen[name] = true
        names[#names + 1] = name
      end
    end
    i = j + 1
  end
  if #names == 0 then
    return nil
  end
  sort(names)
  return names
end


return _M
