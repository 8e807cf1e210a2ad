-- lua-resty-string's resty.random: bytes(len, strong) from OpenSSL.
local digest = require "resty.luagate.digest"

local _M = { _VERSION = "0.1" }

function _M.bytes(len, strong)
  if type(len) ~= "number" or len < 1 then
    return nil
  end
  return digest.random(len, strong)
end

function _M.number(min, max, strong)
  local s = digest.random(4, strong)
  if not s then
    return nil
  end
  local b1, b2, b3, b4 = s:byte(1, 4)
  local v = ((b1 * 256 + b2) * 256 + b3) * 256 + b4
  min, max = min or 0, max or 4294967295
  return min + v % (max - min + 1)
end

return _M
