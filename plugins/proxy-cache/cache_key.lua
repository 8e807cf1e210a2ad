-- proxy-cache: the cache key, as Kong composes it (docs: "Cache key"):
--
--   sha256_hex(prefix | method | uri | params | headers)
--
--   prefix   "<consumer id>:<route id>" for an authenticated request on a
--            route, "<route id>" on a route, "default" otherwise
--   uri      the request path without the query (lowercase with
--            ignore_uri_case)
--   params   "name=value" items joined with ":", for the configured
--            vary_query_params in their order, or every argument sorted by
--            name when none is configured; a repeated argument gives its
--            sorted values joined with ","; a flag argument (?a) its name
--   headers  the same over vary_headers (none when not configured)
--
-- variant(key, names) is the key of one variant of a response that came
-- with `Vary: <names>` (cache_control): the key and the request's values
-- of those headers.

local codec = require "luagate.ngx.codec"

local type = type
local pairs = pairs
local tostring = tostring
local sort = table.sort
local concat = table.concat
local fmt = string.format

local sha256_bin = codec.sha256_bin
local to_hex = codec.to_hex

local _M = {}


local function sha256_hex(s)
  return to_hex(sha256_bin(s))
end
_M.sha256_hex = sha256_hex


local function item(name, v)
  if type(v) == "table" then
    sort(v)
    return name .. "=" .. concat(v, ",")
  elseif v == true then
    return name
  end
  return name .. "=" .. tostring(v)
end


-- "a=1:b=2" over names (an array) looked up in args, skipping absent ones
local function from_list(args, names)
  local parts = {}
  for i = 1, #names do
    local name = names[i]
    local v = args[name]
    if v ~= nil and v ~= false then
      parts[#parts + 1] = item(name, v)
    end
  end
  return concat(parts, ":")
end


function _M.params_key(args, vary)
  if vary then
    return from_list(args, vary)
  end
  local names = {}
  for k in pairs(args) do
    names[#names + 1] = k
  end
  if #names == 0 then
    return ""
  end
  sort(names)
  return from_list(args, names)
end


-- get_header(name) gives the request's value of a (lowercase) header name
function _M.headers_key(get_header, vary)
  if not vary then
    return ""
  end
  local parts = {}
  for i = 1, #vary do
    local name = vary[i]
    local v = get_header(name)
    if v ~= nil then
      parts[#parts + 1] = item(name, v)
    end
  end
  return concat(parts, ":")
end


function _M.prefix(consumer_id, route_id)
  if consumer_id and route_id then
    return consumer_id .. ":" .. route_id
  end
  return route_id or "default"
end


function _M.build(prefix, method, uri, params, headers)
  return sha256_hex(fmt("%s|%s|%s|%s|%s", prefix, method, uri, params,
                        headers))
end


function _M.variant(key, names, get_header)
  return sha256_hex(key .. "|vary|" .. _M.headers_key(get_header, names))
end


return _M
