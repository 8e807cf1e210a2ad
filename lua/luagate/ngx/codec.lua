-- ngx encoding and digest functions with lua-nginx-module semantics.
--
--   encode_base64(s, no_padding?)  -> string (RFC 4648, "=" padding unless
--                                     no_padding is true)
--   decode_base64(s)               -> string, or nil when s is invalid
--   encode_base64url(s)            -> string (URL alphabet, never padded)
--   decode_base64url(s)            -> string, or nil when s is invalid
--   md5(s)                         -> 32 lowercase hex digits
--   md5_bin(s), sha1_bin(s), sha256_bin(s) -> raw digest
--   hmac_sha1(key, s)              -> raw 20-byte HMAC-SHA1
--   crc32_short(s), crc32_long(s)  -> CRC-32 (IEEE, zlib) as a number
--
-- Decoding follows nginx's ngx_decode_base64: the input is read up to its
-- first "=" and everything from there on is ignored, so padding is optional
-- ("aGk" and "aGk=" both give "hi"); any byte outside the alphabet before
-- that point, or a length of 4k+1 characters, makes the input invalid.
-- Unused low bits of the last character are not checked.
--
-- Argument coercion as in lua-nginx-module: nil/false become "", other
-- non-strings go through tostring(), except decode_base64 and
-- decode_base64url which raise on a non-string, and no_padding which must
-- be a boolean when given.

local ffi = require("ffi")
local buffer = require("string.buffer")
local cdefs = require("luagate.ngx.cdefs")

local type = type
local error = error
local tostring = tostring
local tonumber = tonumber
local band = require("bit").band
local rshift = require("bit").rshift
local lshift = require("bit").lshift
local bor = require("bit").bor
local ffi_new = ffi.new
local ffi_cast = ffi.cast
local ffi_string = ffi.string

local crypto = cdefs.crypto
local z = cdefs.z

local _M = {}


local u8p = ffi.typeof("const uint8_t *")
local scratch = buffer.new()     -- reused by every call; nothing re-enters

local function str_arg(s)
  if type(s) ~= "string" then
    if not s then
      return ""
    end
    return tostring(s)
  end
  return s
end


-- base64 --------------------------------------------------------------------

local STD = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
local URL = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"

local ENC_STD = ffi_new("uint8_t[64]", STD)
local ENC_URL = ffi_new("uint8_t[64]", URL)

local function decode_table(alphabet)
  local t = ffi_new("int8_t[256]")
  for i = 0, 255 do
    t[i] = -1
  end
  for i = 1, 64 do
    t[alphabet:byte(i)] = i - 1
  end
  return t
end

local DEC_STD = decode_table(STD)
local DEC_URL = decode_table(URL)


local function encode(s, enc, pad)
  local n = #s
  local full = n - n % 3
  local rem = n - full
  local outlen = full / 3 * 4
  if rem > 0 then
    outlen = outlen + (pad and 4 or rem + 1)
  end
  if outlen == 0 then
    return ""
  end
  local src = ffi_cast(u8p, s)
  scratch:reset()
  local dst = scratch:reserve(outlen)
  local j = 0
  for i = 0, full - 1, 3 do
    local v = bor(lshift(src[i], 16), lshift(src[i + 1], 8), src[i + 2])
    dst[j] = enc[rshift(v, 18)]
    dst[j + 1] = enc[band(rshift(v, 12), 63)]
    dst[j + 2] = enc[band(rshift(v, 6), 63)]
    dst[j + 3] = enc[band(v, 63)]
    j = j + 4
  end
  if rem == 1 then
    local v = src[full]
    dst[j] = enc[rshift(v, 2)]
    dst[j + 1] = enc[band(lshift(v, 4), 63)]
    if pad then
      dst[j + 2] = 61
      dst[j + 3] = 61
    end
  elseif rem == 2 then
    local v = bor(lshift(src[full], 8), src[full + 1])
    dst[j] = enc[rshift(v, 10)]
    dst[j + 1] = enc[band(rshift(v, 4), 63)]
    dst[j + 2] = enc[band(lshift(v, 2), 63)]
    if pad then
      dst[j + 3] = 61
    end
  end
  scratch:commit(outlen)
  return scratch:get()
end


local function decode(s, dec)
  local n = #s
  local src = ffi_cast(u8p, s)
  local len = 0
  while len < n do
    local c = src[len]
    if c == 61 then -- "="
      break
    end
    if dec[c] < 0 then
      return nil
    end
    len = len + 1
  end
  local rem = len % 4
  if rem == 1 then
    return nil
  end
  local full = len - rem
  local outlen = full / 4 * 3 + (rem > 0 and rem - 1 or 0)
  if outlen == 0 then
    return ""
  end
  scratch:reset()
  local dst = scratch:reserve(outlen)
  local j = 0
  for i = 0, full - 1, 4 do
    local v = bor(lshift(dec[src[i]], 18), lshift(dec[src[i + 1]], 12),
                  lshift(dec[src[i + 2]], 6), dec[src[i + 3]])
    dst[j] = rshift(v, 16)
    dst[j + 1] = band(rshift(v, 8), 255)
    dst[j + 2] = band(v, 255)
    j = j + 3
  end
  if rem >= 2 then
    local v = bor(lshift(dec[src[full]], 18), lshift(dec[src[full + 1]], 12))
    if rem == 3 then
      v = bor(v, lshift(dec[src[full + 2]], 6))
    end
    dst[j] = rshift(v, 16)
    if rem == 3 then
      dst[j + 1] = band(rshift(v, 8), 255)
    end
  end
  scratch:commit(outlen)
  return scratch:get()
end


function _M.encode_base64(s, no_padding)
  s = str_arg(s)
  if no_padding ~= nil and type(no_padding) ~= "boolean" then
    error("boolean argument only", 2)
  end
  return encode(s, ENC_STD, not no_padding)
end


function _M.decode_base64(s)
  if type(s) ~= "string" then
    error("string argument only", 2)
  end
  return decode(s, DEC_STD)
end


function _M.encode_base64url(s)
  return encode(str_arg(s), ENC_URL, false)
end


function _M.decode_base64url(s)
  if type(s) ~= "string" then
    error("string argument only", 2)
  end
  return decode(s, DEC_URL)
end


-- digests -------------------------------------------------------------------

local md_buf = ffi_new("unsigned char[64]")
local md_len = ffi_new("unsigned int[1]")

local function need_crypto()
  if not crypto then
    error("libcrypto not available: " .. tostring(cdefs.load_errors.crypto),
          3)
  end
end

local function digest(s, md)
  if crypto.EVP_Digest(s, #s, md_buf, md_len, md, nil) ~= 1 then
    error("EVP_Digest() failed", 3)
  end
  return ffi_string(md_buf, md_len[0])
end


local HEX = ffi_new("uint8_t[16]", "0123456789abcdef")

local function to_hex(bin)
  local n = #bin
  local src = ffi_cast(u8p, bin)
  scratch:reset()
  local dst = scratch:reserve(n * 2)
  for i = 0, n - 1 do
    local c = src[i]
    dst[i * 2] = HEX[rshift(c, 4)]
    dst[i * 2 + 1] = HEX[band(c, 15)]
  end
  scratch:commit(n * 2)
  return scratch:get()
end
_M.to_hex = to_hex


function _M.md5_bin(s)
  need_crypto()
  return digest(str_arg(s), crypto.EVP_md5())
end


function _M.md5(s)
  need_crypto()
  return to_hex(digest(str_arg(s), crypto.EVP_md5()))
end


function _M.sha1_bin(s)
  need_crypto()
  return digest(str_arg(s), crypto.EVP_sha1())
end


function _M.sha256_bin(s)
  need_crypto()
  return digest(str_arg(s), crypto.EVP_sha256())
end


function _M.hmac_sha1(key, s)
  need_crypto()
  key = str_arg(key)
  s = str_arg(s)
  local out = crypto.HMAC(crypto.EVP_sha1(), key, #key, s, #s, md_buf,
                          md_len)
  if out == nil then
    error("HMAC() failed", 2)
  end
  return ffi_string(md_buf, md_len[0])
end


-- crc32 ---------------------------------------------------------------------

local function crc32(s)
  if not z then
    error("zlib not available: " .. tostring(cdefs.load_errors.z), 3)
  end
  s = str_arg(s)
  return tonumber(z.crc32(0, s, #s))
end


function _M.crc32_short(s)
  return crc32(s)
end


function _M.crc32_long(s)
  return crc32(s)
end


return _M
