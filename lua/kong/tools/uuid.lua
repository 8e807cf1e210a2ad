-- kong.tools.uuid: random (v4) UUIDs.
local digest = require "resty.luagate.digest"

local byte = string.byte
local fmt = string.format
local find = string.find
local random = math.random
local char = string.char
local type = type

local _M = {}

local function bytes16()
  local b = digest.random(16)
  if b then
    return b
  end
  local t = {}
  for i = 1, 16 do
    t[i] = char(random(0, 255))
  end
  return table.concat(t)
end


function _M.uuid()
  local b = { byte(bytes16(), 1, 16) }
  b[7] = b[7] % 16 + 0x40 -- version 4
  b[9] = b[9] % 64 + 0x80 -- variant 10
  return fmt("%02x%02x%02x%02x-%02x%02x-%02x%02x-%02x%02x-" ..
             "%02x%02x%02x%02x%02x%02x", b[1], b[2], b[3], b[4], b[5], b[6],
             b[7], b[8], b[9], b[10], b[11], b[12], b[13], b[14], b[15], b[16])
end


local UUID_PATTERN = "^%x%x%x%x%x%x%x%x%-%x%x%x%x%-%x%x%x%x%-%x%x%x%x%-" ..
                     "%x%x%x%x%x%x%x%x%x%x%x%x$"

function _M.is_valid_uuid(s)
  return type(s) == "string" and find(s, UUID_PATTERN) ~= nil and
         s ~= "00000000-0000-0000-0000-000000000000"
end

return _M
