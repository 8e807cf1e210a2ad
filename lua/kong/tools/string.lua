-- kong.tools.string: Kong's string helpers.
local type = type
local fmt = string.format
local find = string.find
local gsub = string.gsub
local lower = string.lower
local sub = string.sub
local tostring = tostring

local _M = {}


function _M.strip(s)
  if s == nil then
    return ""
  end
  s = tostring(s)
  return (gsub(s, "^%s*(.-)%s*$", "%1"))
end


-- split(s, delim, max): plain delimiter (default " "), at most max parts
function _M.split(s, delim, max)
  delim = delim or " "
  local res, n, pos = {}, 0, 1
  if delim == "" then
    return { s }, 1
  end
  while true do
    if max and n == max - 1 then
      break
    end
    local i, j = find(s, delim, pos, true)
    if not i then
      break
    end
    n = n + 1
    res[n] = sub(s, pos, i - 1)
    pos = j + 1
  end
  n = n + 1
  res[n] = sub(s, pos)
  return res, n
end


function _M.bytes_to_str(bytes, unit, scale)
  if not unit or unit == "" or lower(unit) == "b" then
    return fmt("%d", bytes)
  end
  scale = scale or 2
  local u = lower(unit)
  local div = u == "k" and 1024 or u == "m" and 1048576 or
              u == "g" and 1073741824 or nil
  if not div then
    error("invalid unit '" .. unit .. "' (expected 'k/K', 'm/M', or 'g/G')", 2)
  end
  return fmt("%." .. scale .. "f %siB", bytes / div, string.upper(unit))
end


function _M.validate_utf8(s)
  local ok = true
  local i, n = 1, #s
  while i <= n do
    local c = s:byte(i)
    local len = c < 0x80 and 1 or c >= 0xF0 and c < 0xF5 and 4 or
                c >= 0xE0 and 3 or c >= 0xC2 and c < 0xE0 and 2 or nil
    if not len then
      return false, i
    end
    for k = 1, len - 1 do
      local cc = s:byte(i + k)
      if not cc or cc < 0x80 or cc > 0xBF then
        return false, i
      end
    end
    i = i + len
  end
  return ok
end


function _M.replace_dashes(s)
  return (gsub(s, "-", "_"))
end


function _M.replace_dashes_lower(s)
  return lower((gsub(s, "-", "_")))
end


function _M.isempty(s)
  return s == nil or (type(s) == "string" and s == "")
end


return _M
