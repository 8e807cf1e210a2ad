-- kong.tools.utils: the helpers Kong 1.x-3.x plugins import from it (in
-- Kong 3.5+ it re-exports kong.tools.{table,string,uuid,rand,...}).
local tbl = require "kong.tools.table"
local str = require "kong.tools.string"
local uuid = require "kong.tools.uuid"
local digest = require "resty.luagate.digest"

local type = type
local pairs = pairs
local pcall = pcall
local tostring = tostring
local tonumber = tonumber
local find = string.find
local match = string.match
local byte = string.byte
local char = string.char
local gsub = string.gsub
local fmt = string.format
local concat = table.concat
local random = math.random

local _M = {}

for k, v in pairs(tbl) do _M[k] = v end
for k, v in pairs(str) do _M[k] = v end
_M.uuid = uuid.uuid
_M.is_valid_uuid = uuid.is_valid_uuid


-- get_rand_bytes(n, blocking): n random bytes
function _M.get_rand_bytes(n)
  local b = digest.random(n)
  if b then
    return b
  end
  local t = {}
  for i = 1, n do
    t[i] = char(random(0, 255))
  end
  return concat(t)
end


-- random_string(): 32 URL-safe characters (Kong: base64 of 24 random bytes
-- with +/ replaced and no padding)
local ALPHA = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789"
function _M.random_string(len)
  len = len or 32
  local bytes = _M.get_rand_bytes(len)
  local out = {}
  for i = 1, len do
    local c = byte(bytes, i) % #ALPHA + 1
    out[i] = ALPHA:sub(c, c)
  end
  return concat(out)
end


local function encode(v)
  local ngx = rawget(_G, "ngx")
  return ngx.escape_uri(tostring(v))
end


-- encode_args(args, raw): Kong's querystring encoder (sorted keys; arrays
-- repeat the key; true gives a bare key; false is skipped)
function _M.encode_args(args, raw)
  local keys = {}
  for k in pairs(args) do
    keys[#keys + 1] = k
  end
  table.sort(keys, function(a, b) return tostring(a) < tostring(b) end)
  local out = {}
  for _, k in ipairs(keys) do
    local v = args[k]
    local ek = raw and tostring(k) or encode(k)
    if type(v) == "table" then
      for _, vi in ipairs(v) do
        out[#out + 1] = vi == true and ek or
                        (ek .. "=" .. (raw and tostring(vi) or encode(vi)))
      end
    elseif v == true then
      out[#out + 1] = ek
    elseif v ~= false and v ~= nil then
      out[#out + 1] = ek .. "=" .. (raw and tostring(v) or encode(v))
    end
  end
  return concat(out, "&")
end


function _M.decode_args(s)
  local ngx = rawget(_G, "ngx")
  return ngx.decode_args(s)
end


-- load_module_if_exists(name) -> true, module | false, err
function _M.load_module_if_exists(name)
  local ok, res = pcall(require, name)
  if ok then
    return true, res
  end
  if type(res) == "string" and find(res, "module '" .. name .. "' not found", 1,
                                     true) then
    return false, res
  end
  error(res, 2)
end


function _M.get_hostname()
  local f = io.popen("/bin/hostname 2>/dev/null")
  local h = f and f:read("*l")
  if f then
    f:close()
  end
  return h or "localhost"
end


function _M.yield(in_loop, phase)
  local ngx = rawget(_G, "ngx")
  phase = phase or ngx.get_phase()
  if phase == "init" or phase == "init_worker" or
     phase == "header_filter" or phase == "body_filter" or phase == "log" then
    return
  end
  ngx.sleep(0)
end


-- hostname_type(name) -> "ipv4" | "ipv6" | "name"
function _M.hostname_type(name)
  if match(name, "^%d+%.%d+%.%d+%.%d+$") then
    return "ipv4"
  end
  if find(name, ":", 1, true) then
    return "ipv6"
  end
  return "name"
end


-- normalize_ip(address) -> { type, host, port } or nil, err
function _M.normalize_ip(address)
  local host, port = match(address, "^%[([^%]]+)%]:?(%d*)$")
  local t
  if host then
    t = "ipv6"
  else
    host, port = match(address, "^([^:]+):?(%d*)$")
    if not host then
      return { type = "ipv6", host = address }
    end
    t = _M.hostname_type(host)
  end
  port = tonumber(port)
  if t == "ipv4" then
    for o in host:gmatch("%d+") do
      if tonumber(o) > 255 then
        return nil, "invalid ipv4 address: " .. address
      end
    end
  end
  return { type = t, host = host, port = port }
end


function _M.format_host(p1, p2)
  local t = type(p1) == "table" and p1 or _M.normalize_ip(p1)
  if not t then
    return nil
  end
  local host = t.type == "ipv6" and ("[" .. t.host .. "]") or t.host
  local port = p2 or t.port
  if port then
    return host .. ":" .. port
  end
  return host
end


function _M.validate_header_name(name)
  if name == nil or name == "" then
    return nil, "no header name provided"
  end
  if match(name, "^[%w%-_]+$") then
    return name
  end
  return nil, "bad header name '" .. name ..
              "', allowed characters are A-Z, a-z, 0-9, '_', and '-'"
end


function _M.validate_cookie_name(name)
  if name == nil or name == "" then
    return nil, "no cookie name provided"
  end
  if match(name, "^[%w%-_!#$%%&'*+.^`|~]+$") then
    return name
  end
  return nil, "bad cookie name '" .. name .. "', allowed characters are " ..
              "A-Z, a-z, 0-9, '_', and '-'"
end


function _M.check_https(trusted_ip, allow_terminated)
  local ngx = rawget(_G, "ngx")
  if ngx.var.scheme == "https" then
    return true
  end
  if not allow_terminated then
    return false
  end
  local proto = ngx.req.get_headers()["x-forwarded-proto"]
  return trusted_ip and type(proto) == "string" and proto:lower() == "https"
end


function _M.time_ns()
  local ngx = rawget(_G, "ngx")
  return ngx.now() * 1e9
end


function _M.sort_by_handler_priority(a, b)
  local pa = a.handler and a.handler.PRIORITY or 0
  local pb = b.handler and b.handler.PRIORITY or 0
  if pa == pb then
    return a.name > b.name
  end
  return pa > pb
end


_M.unindent = function(s)
  return (gsub(s, "\n%s+", "\n"))
end

_M.fmt = fmt

return _M
