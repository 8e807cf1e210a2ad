-- ngx URI, query-argument and HTTP-date helpers with lua-nginx-module
-- semantics.
--
--   escape_uri(s, type?)       -> string. type 2 (default) escapes a URI
--       component: every byte but ALPHA DIGIT - . _ ~ ! * ' ( ) becomes %XX
--       (nginx's table; ! * ' ( ) are kept as lua-nginx-module keeps them).
--       type 0 escapes a full URI: only space # % ? and bytes 0x00-0x1F,
--       0x7F-0xFF. Hex digits are uppercase. Other types raise.
--   unescape_uri(s)            -> string. %XX with two hex digits decodes,
--       "+" becomes a space, a "%" not followed by two hex digits is kept.
--   encode_args(t)             -> string. Keys must be strings. A string or
--       number value gives key=value, true gives a bare key, false and empty
--       tables give nothing, an array gives one pair per element. Keys and
--       values are escaped as URI components (space -> %20). lua-nginx-module
--       emits keys in table traversal order, which is unspecified; we sort
--       them (byte order) so the output is deterministic.
--   decode_args(s, max_args?)  -> table[, "truncated"]. Pairs split on "&",
--       key and value on the first "="; both unescaped as unescape_uri
--       does. A key without "=" is true, "k=" is "", a pair with an empty
--       key is ignored, a repeated key collects its values in an array in
--       order. At most max_args pairs (default 100, 0 = no limit) are kept;
--       when more were present "truncated" is returned as second value.
--   http_time(sec)             -> "Thu, 18 Nov 2010 11:27:35 GMT"
--   cookie_time(sec)           -> "Thu, 18-Nov-10 11:27:35 GMT" (a
--       four-digit year after 2037, as nginx does)
--   parse_http_time(s)         -> seconds since the epoch, or nil. Accepts
--       the three HTTP date forms as nginx's ngx_parse_http_time does: RFC
--       1123 "Sun, 06 Nov 1994 08:49:37 GMT", RFC 850 "Sunday, 06-Nov-94
--       08:49:37 GMT" (two-digit years: < 70 means 20xx) and asctime "Sun
--       Nov  6 08:49:37 1994". The weekday is not checked, nor the text
--       after the time (RFC 1123 / 850) or the year (asctime).
--
-- Non-string arguments to escape_uri/unescape_uri: nil and false give "",
-- others go through tostring().

local ffi = require("ffi")
local buffer = require("string.buffer")

local type = type
local error = error
local pairs = pairs
local tostring = tostring
local tonumber = tonumber
local floor = math.floor
local sort = table.sort
local byte = string.byte
local sub = string.sub
local find = string.find
local fmt = string.format
local band = require("bit").band
local rshift = require("bit").rshift
local ffi_new = ffi.new
local ffi_cast = ffi.cast

local _M = {}


local u8p = ffi.typeof("const uint8_t *")
local scratch = buffer.new()     -- reused by escape/unescape; no re-entry


-- escaping ------------------------------------------------------------------

local function escape_map(keep)
  local m = ffi_new("uint8_t[256]")
  for c = 0, 255 do
    m[c] = keep(c) and 0 or 1
  end
  return m
end

local function is_alnum(c)
  return (c >= 48 and c <= 57) or (c >= 65 and c <= 90)
         or (c >= 97 and c <= 122)
end

local COMPONENT_KEEP = {}
for c in ("-._~!*'()"):gmatch(".") do
  COMPONENT_KEEP[byte(c)] = true
end

local ESCAPE = {
  [0] = escape_map(function(c)
    return c > 0x20 and c < 0x7f and c ~= 35 and c ~= 37 and c ~= 63
  end),
  [2] = escape_map(function(c)
    return is_alnum(c) or COMPONENT_KEEP[c] == true
  end),
}

local HEX = ffi_new("uint8_t[16]", "0123456789ABCDEF")


local function escape(s, map)
  local n = #s
  local src = ffi_cast(u8p, s)
  local extra = 0
  for i = 0, n - 1 do
    extra = extra + map[src[i]]
  end
  if extra == 0 then
    return s
  end
  local outlen = n + extra * 2
  scratch:reset()
  local dst = scratch:reserve(outlen)
  local j = 0
  for i = 0, n - 1 do
    local c = src[i]
    if map[c] == 1 then
      dst[j] = 37
      dst[j + 1] = HEX[rshift(c, 4)]
      dst[j + 2] = HEX[band(c, 15)]
      j = j + 3
    else
      dst[j] = c
      j = j + 1
    end
  end
  scratch:commit(outlen)
  return scratch:get()
end


function _M.escape_uri(s, esc_type)
  if type(s) ~= "string" then
    s = s and tostring(s) or ""
  end
  local map
  if esc_type == nil then
    map = ESCAPE[2]
  else
    if type(esc_type) ~= "number" then
      error("\"type\" is not a number", 2)
    end
    map = ESCAPE[esc_type]
    if not map then
      error("\"type\" " .. esc_type .. " out of range", 2)
    end
  end
  return escape(s, map)
end


-- hex digit value of byte c, or -1
local HEXVAL = ffi_new("int8_t[256]")
for c = 0, 255 do
  HEXVAL[c] = -1
end
for i = 0, 9 do
  HEXVAL[48 + i] = i
end
for i = 0, 5 do
  HEXVAL[65 + i] = 10 + i
  HEXVAL[97 + i] = 10 + i
end


local function unescape(s)
  local n = #s
  if not find(s, "[%%+]") then
    return s
  end
  local src = ffi_cast(u8p, s)
  scratch:reset()
  local dst = scratch:reserve(n)
  local i, j = 0, 0
  while i < n do
    local c = src[i]
    if c == 37 and i + 2 < n and HEXVAL[src[i + 1]] >= 0
       and HEXVAL[src[i + 2]] >= 0 then
      dst[j] = HEXVAL[src[i + 1]] * 16 + HEXVAL[src[i + 2]]
      i = i + 3
    else
      dst[j] = c == 43 and 32 or c
      i = i + 1
    end
    j = j + 1
  end
  scratch:commit(j)
  return scratch:get()
end


function _M.unescape_uri(s)
  if type(s) ~= "string" then
    s = s and tostring(s) or ""
  end
  return unescape(s)
end


-- query arguments -----------------------------------------------------------

local function put_arg(buf, key, v)
  local vt = type(v)
  if vt == "string" or vt == "number" then
    if #buf > 0 then
      buf:put("&")
    end
    buf:put(key, "=", escape(tostring(v), ESCAPE[2]))
  elseif v == true then
    if #buf > 0 then
      buf:put("&")
    end
    buf:put(key)
  elseif v ~= false then
    error("attempt to use " .. vt .. " as query arg value", 3)
  end
end


function _M.encode_args(args)
  if type(args) ~= "table" then
    error("bad argument #1 to 'encode_args' (table expected, got "
          .. type(args) .. ")", 2)
  end
  local keys = {}
  for k in pairs(args) do
    if type(k) ~= "string" then
      error("attempt to use " .. type(k) .. " as query arg key", 2)
    end
    keys[#keys + 1] = k
  end
  sort(keys)

  local buf = buffer.new()
  for i = 1, #keys do
    local k = keys[i]
    local v = args[k]
    local key = escape(k, ESCAPE[2])
    if type(v) == "table" then
      for j = 1, #v do
        put_arg(buf, key, v[j])
      end
    else
      put_arg(buf, key, v)
    end
  end
  return buf:get()
end


function _M.decode_args(s, max_args)
  if type(s) ~= "string" then
    error("bad argument #1 to 'decode_args' (string expected, got "
          .. type(s) .. ")", 2)
  end
  if max_args == nil then
    max_args = 100
  elseif type(max_args) ~= "number" then
    error("bad argument #2 to 'decode_args' (number expected, got "
          .. type(max_args) .. ")", 2)
  end

  local args = {}
  local count = 0
  local n = #s
  local i = 1
  while i <= n do
    local amp = find(s, "&", i, true) or n + 1
    if amp > i then
      if max_args > 0 and count >= max_args then
        return args, "truncated"
      end
      local eq = find(s, "=", i, true)
      local key, val
      if eq and eq < amp then
        key = sub(s, i, eq - 1)
        val = unescape(sub(s, eq + 1, amp - 1))
      else
        key = sub(s, i, amp - 1)
        val = true
      end
      if key ~= "" then
        key = unescape(key)
        local old = args[key]
        if old == nil then
          args[key] = val
        elseif type(old) == "table" then
          old[#old + 1] = val
        else
          args[key] = { old, val }
        end
        count = count + 1
      end
    end
    i = amp + 1
  end
  return args
end


-- HTTP dates ----------------------------------------------------------------

local WDAYS = { "Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat" }
local MONTHS = { "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug",
                 "Sep", "Oct", "Nov", "Dec" }
local MONTH_NUM = {}
for i, m in pairs(MONTHS) do
  MONTH_NUM[m] = i
end
local MDAYS = { 31, 29, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31 }


-- Days since 1970-01-01 of a proleptic Gregorian date (month 1-12).
local function days_from_civil(y, m, d)
  if m <= 2 then
    y = y - 1
  end
  local era = floor(y / 400)
  local yoe = y - era * 400
  local mp = (m + 9) % 12
  local doy = floor((153 * mp + 2) / 5) + d - 1
  local doe = yoe * 365 + floor(yoe / 4) - floor(yoe / 100) + doy
  return era * 146097 + doe - 719468
end


-- Year, month (1-12), day of a day count since 1970-01-01.
local function civil_from_days(z)
  z = z + 719468
  local era = floor(z / 146097)
  local doe = z - era * 146097
  local yoe = floor((doe - floor(doe / 1460) + floor(doe / 36524)
                     - floor(doe / 146096)) / 365)
  local y = yoe + era * 400
  local doy = doe - (365 * yoe + floor(yoe / 4) - floor(yoe / 100))
  local mp = floor((5 * doy + 2) / 153)
  local d = doy - floor((153 * mp + 2) / 5) + 1
  local m = mp < 10 and mp + 3 or mp - 9
  if m <= 2 then
    y = y + 1
  end
  return y, m, d
end


local function gmtime(sec, fname)
  local t = tonumber(sec)
  if not t then
    error("bad argument #1 to '" .. fname .. "' (number expected, got "
          .. type(sec) .. ")", 3)
  end
  t = floor(t)
  local days = floor(t / 86400)
  local rem = t - days * 86400
  local y, m, d = civil_from_days(days)
  local wday = (days + 4) % 7 -- 1970-01-01 was a Thursday
  return y, m, d, floor(rem / 3600), floor(rem % 3600 / 60), rem % 60,
         WDAYS[wday + 1]
end


function _M.http_time(sec)
  local y, m, d, hh, mm, ss, wd = gmtime(sec, "http_time")
  return fmt("%s, %02d %s %04d %02d:%02d:%02d GMT", wd, d, MONTHS[m], y,
             hh, mm, ss)
end


function _M.cookie_time(sec)
  local y, m, d, hh, mm, ss, wd = gmtime(sec, "cookie_time")
  if y > 2037 then
    return fmt("%s, %02d-%s-%d %02d:%02d:%02d GMT", wd, d, MONTHS[m], y,
               hh, mm, ss)
  end
  return fmt("%s, %02d-%s-%02d %02d:%02d:%02d GMT", wd, d, MONTHS[m],
             y % 100, hh, mm, ss)
end


local function digits(s, i, n)
  local v = tonumber(sub(s, i, i + n - 1))
  if not v or not find(sub(s, i, i + n - 1), "^%d+$") then
    return nil
  end
  return v
end


-- "hh:mm:ss" at i; returns hour, min, sec or nil
local function parse_clock(s, i)
  if sub(s, i + 2, i + 2) ~= ":" or sub(s, i + 5, i + 5) ~= ":" then
    return nil
  end
  local hh, mm, ss = digits(s, i, 2), digits(s, i + 3, 2), digits(s, i + 6, 2)
  if not (hh and mm and ss) then
    return nil
  end
  return hh, mm, ss
end


function _M.parse_http_time(s)
  if type(s) ~= "string" then
    error("bad argument #1 to 'parse_http_time' (string expected, got "
          .. type(s) .. ")", 2)
  end
  local n = #s
  -- skip the weekday: up to "," (RFC 1123 / 850) or " " (asctime)
  local isoc = false
  local p = 1
  while p <= n do
    local c = byte(s, p)
    if c == 44 then
      break
    elseif c == 32 then
      isoc = true
      break
    end
    p = p + 1
  end
  p = p + 1
  while p <= n and byte(s, p) == 32 do
    p = p + 1
  end
  if n - p + 1 < 18 then
    return nil
  end

  local year, month, day, hh, mm, ss
  if not isoc then
    -- "06 Nov 1994 08:49:37" or "06-Nov-94 08:49:37"
    day = digits(s, p, 2)
    if not day then
      return nil
    end
    local sep = sub(s, p + 2, p + 2)
    if sep ~= " " and sep ~= "-" then
      return nil
    end
    month = MONTH_NUM[sub(s, p + 3, p + 5)]
    if not month or sub(s, p + 6, p + 6) ~= sep then
      return nil
    end
    p = p + 7
    if sep == " " then
      year = digits(s, p, 4)
      p = p + 4
    else
      year = digits(s, p, 2)
      if year then
        year = year + (year < 70 and 2000 or 1900)
      end
      p = p + 2
    end
    if not year or sub(s, p, p) ~= " " then
      return nil
    end
    hh, mm, ss = parse_clock(s, p + 1)
    if not hh then
      return nil
    end
  else
    -- "Nov  6 08:49:37 1994"
    month = MONTH_NUM[sub(s, p, p + 2)]
    if not month or sub(s, p + 3, p + 3) ~= " " then
      return nil
    end
    p = p + 4
    if byte(s, p) == 32 then
      p = p + 1
    end
    day = digits(s, p, 1)
    if not day then
      return nil
    end
    p = p + 1
    if byte(s, p) ~= 32 then
      local d2 = digits(s, p, 1)
      if not d2 then
        return nil
      end
      day = day * 10 + d2
      p = p + 1
    end
    if sub(s, p, p) ~= " " then
      return nil
    end
    hh, mm, ss = parse_clock(s, p + 1)
    if not hh or sub(s, p + 9, p + 9) ~= " " then
      return nil
    end
    year = digits(s, p + 10, 4)
    if not year then
      return nil
    end
  end

  if hh > 23 or mm > 59 or ss > 59 or day < 1 then
    return nil
  end
  if day == 29 and month == 2 then
    if year % 4 ~= 0 or (year % 100 == 0 and year % 400 ~= 0) then
      return nil
    end
  elseif day > MDAYS[month] then
    return nil
  end

  return days_from_civil(year, month, day) * 86400 + hh * 3600 + mm * 60
         + ss
end


return _M
