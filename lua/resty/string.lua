-- lua-resty-string's resty.string: to_hex(bin) and atoi(s).
local byte = string.byte
local fmt = string.format
local gsub = string.gsub
local tonumber = tonumber
local type = type
local tostring = tostring

local _M = { _VERSION = "0.1" }

local function hexbyte(c)
  return fmt("%02x", byte(c))
end

function _M.to_hex(s)
  if type(s) ~= "string" then
    return nil
  end
  return (gsub(s, ".", hexbyte))
end

-- The integer the decimal string `s` spells (C atoi: leading digits, 0 if
-- none).
function _M.atoi(s)
  local n = tonumber((tostring(s):match("^%s*([+-]?%d+)")))
  return n or 0
end

return _M
