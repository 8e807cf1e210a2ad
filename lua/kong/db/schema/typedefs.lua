-- Common field definitions for schemas, with the names Kong plugins use
-- (`local typedefs = require "kong.db.schema.typedefs"`). Our own
-- implementation for luagate's schema engine (lua/luagate/schema.lua).
--
-- Each typedef is a field definition table; calling it with a table of
-- overrides returns a copy with those attributes replaced:
--   { host = typedefs.host { required = true } }

local type = type
local pairs = pairs
local ipairs = ipairs
local tonumber = tonumber
local setmetatable = setmetatable
local find = string.find
local match = string.match
local sub = string.sub
local gsub = string.gsub
local lower = string.lower

local Schema = require "luagate.schema"

local null = Schema.NULL


local _M = {}


local function copy(t)
  if type(t) ~= "table" then
    return t
  end
  local c = {}
  for k, v in pairs(t) do
    if k ~= "__field_list" then
      c[k] = copy(v)
    end
  end
  return c
end


local typedef_mt
typedef_mt = {
  __call = function(self, overrides)
    local c = copy(self)
    for k, v in pairs(overrides or {}) do
      c[k] = v
    end
    return setmetatable(c, typedef_mt)
  end,
}


local function Typedef(def)
  return setmetatable(def, typedef_mt)
end


-- Validation helpers (also used by luagate.config.entities) ------------

-- IPv4 dotted quad
local function is_ipv4(s)
  local a, b, c, d = match(s, "^(%d+)%.(%d+)%.(%d+)%.(%d+)$")
  if not a then
    return false
  end
  for _, x in ipairs({ a, b, c, d }) do
    if #x > 3 or tonumber(x) > 255 then
      return false
    end
  end
  return true
end
_M.is_ipv4 = is_ipv4


local function is_ipv6(s)
  if not find(s, ":", 1, true) or find(s, "[^%x:%.]") then
    return false
  end
  local double = 0
  for _ in s:gmatch("::") do
    double = double + 1
  end
  if double > 1 or find(s, ":::", 1, true) then
    return false
  end
  local groups, has_v4 = 0, false
  local body = s
  local v4 = match(s, ":(%d+%.%d+%.%d+%.%d+)$")
  if v4 then
    if not is_ipv4(v4) then
      return false
    end
    has_v4 = true
    body = sub(s, 1, #s - #v4 - 1)
    if sub(body, -1) == ":" then
      body = body .. "0" -- "::1.2.3.4": keep the parser simple
    end
  end
  for g in (body .. ":"):gmatch("([^:]*):") do
    if #g > 4 then
      return false
    end
    if g ~= "" then
      groups = groups + 1
    end
  end
  local max = has_v4 and 6 or 8
  if double == 0 then
    return groups == max
  end
  return groups < max + (has_v4 and 1 or 0)
end
_M.is_ipv6 = is_ipv6


local function is_ip(s)
  return type(s) == "string" and (is_ipv4(s) or is_ipv6(s))
end
_M.is_ip = is_ip


local function is_cidr(s)
  if type(s) ~= "string" then
    return false
  end
  local ip, bits = match(s, "^(.-)/(%d+)$")
  if not ip then
    return false
  end
  bits = tonumber(bits)
  if is_ipv4(ip) then
    return bits <= 32
  end
  return is_ipv6(ip) and bits <= 128
end
_M.is_cidr = is_cidr


-- RFC 1123 hostname (labels of letters, digits, '-', '_' tolerated)
local function is_hostname(s)
  if #s == 0 or #s > 253 then
    return false
  end
  if sub(s, -1) == "." then
    s = sub(s, 1, -2)
  end
  for label in (s .. "."):gmatch("([^%.]*)%.") do
    if #label == 0 or #label > 63 or find(label, "[^%w%-_]") or
       sub(label, 1, 1) == "-" or sub(label, -1) == "-" then
      return false
    end
  end
  return true
end
_M.is_hostname = is_hostname


-- Splits "host[:port]" ("[v6]:port" for IPv6). Returns host, port|nil, or
-- nil, message.
local function split_host_port(s)
  local h, p = match(s, "^%[([^%]]+)%]:?(%d*)$")
  if h then
    return h, p ~= "" and tonumber(p) or nil
  end
  if is_ipv6(s) then
    return s
  end
  h, p = match(s, "^([^:]*):(%d+)$")
  if h then
    return h, tonumber(p)
  end
  if find(s, ":", 1, true) then
    return nil, "invalid port number"
  end
  return s
end
_M.split_host_port = split_host_port


local function validate_host(s)
  if is_ip(s) or is_hostname(s) then
    return true
  end
  return nil, "invalid hostname: " .. s
end
_M.validate_host = validate_host


local function validate_host_with_optional_port(s)
  local h, p = split_host_port(s)
  if not h then
    return nil, p
  end
  if p and p > 65535 then
    return nil, "invalid port number"
  end
  return validate_host(h)
end


-- A route host: optional ":port", at most one "*" that must be the whole
-- leftmost or rightmost label.
local function validate_wildcard_host(s)
  local h, p = split_host_port(s)
  if not h then
    return nil, p
  end
  if p and p > 65535 then
    return nil, "invalid port number"
  end
  local _, stars = gsub(h, "%*", "")
  if stars == 0 then
    return validate_host(h)
  end
  if stars > 1 then
    return nil, "invalid wildcard: must have at most one wildcard"
  end
  local rest
  if sub(h, 1, 2) == "*." then
    rest = sub(h, 3)
  elseif sub(h, -2) == ".*" then
    rest = sub(h, 1, -3)
  else
    return nil, "invalid wildcard: must be placed at leftmost or " ..
                "rightmost label"
  end
  if not is_hostname(rest) then
    return nil, "invalid hostname: " .. s
  end
  return true
end
_M.validate_wildcard_host = validate_wildcard_host


local function validate_ip(s)
  if is_ip(s) then
    return true
  end
  return nil, "not an ip address: " .. s
end


local function validate_cidr(s)
  if is_cidr(s) then
    return true
  end
  return nil, "invalid cidr range: " .. s
end


local function validate_ip_or_cidr(s)
  if is_ip(s) or is_cidr(s) then
    return true
  end
  return nil, "invalid ip or cidr range: '" .. s .. "'"
end


local function validate_path(s)
  -- percent-encoding must be well formed
  local i = 1
  while true do
    local p = find(s, "%", i, true)
    if not p then
      break
    end
    if not find(sub(s, p + 1, p + 2), "^%x%x$") then
      return nil, "invalid url-encoded value: '" .. sub(s, p, p + 2) .. "'"
    end
    i = p + 1
  end
  return true
end
_M.validate_path = validate_path


-- a validator accepting the strings that match `pattern` (anchored);
-- the message is `before .. s .. after`
local function charset_validator(pattern, before, after)
  return function(s)
    if find(s, pattern) then
      return true
    end
    return nil, before .. s .. after
  end
end

local validate_name = charset_validator("^[%w%.%-_~]+$", "invalid value '",
  "': it must only contain alphanumeric and '., -, _, ~' characters")
_M.validate_name = validate_name

-- letters, digits, '.-_~' and any non-ASCII (UTF-8) byte
local validate_utf8_name = charset_validator("^[%w%.%-_~\128-\255]+$",
  "invalid value '", "': the only accepted ascii characters are " ..
  "alphanumerics or ., -, _, and ~")

local validate_header_name = charset_validator("^[%w_%-]+$",
  "bad header name '", "', allowed characters are A-Z, a-z, 0-9, '_', and '-'")
_M.validate_header_name = validate_header_name

-- RFC 6265 token: no CTLs, separators or spaces
local validate_cookie_name = charset_validator("^[%w!#%$%%&'%*%+%-%.%^_`|~]+$",
  "bad cookie name '", "', allowed characters are A-Z, a-z, 0-9, and " ..
  "!#$%&'*+-.^_`|~")


local function validate_tag(s)
  if find(s, "[,/]") or find(s, "[%z\1-\31\127]") then
    return nil, "invalid tag '" .. s .. "': expected printable ascii " ..
                "(except `,` and `/`) or valid utf-8 sequences"
  end
  return true
end


-- Parses an URL into { scheme, host, port, path }. Returns the table, or
-- nil and a message.
local function parse_url(s)
  local scheme, rest = match(s, "^(%a[%w+%-.]*)://(.*)$")
  if not scheme then
    return nil, "missing scheme in url"
  end
  local authority, path = match(rest, "^([^/%?#]*)(.*)$")
  authority = gsub(authority, "^.*@", "")
  if authority == "" then
    return nil, "missing host in url"
  end
  local host, port = split_host_port(authority)
  if not host then
    return nil, "invalid port number"
  end
  path = gsub(path, "[%?#].*$", "")
  return {
    scheme = lower(scheme),
    host = host,
    port = port,
    path = path ~= "" and path or nil,
  }
end
_M.parse_url = parse_url


local function validate_url(s)
  local u, err = parse_url(s)
  if not u then
    return nil, err
  end
  local ok, herr = validate_host(u.host)
  if not ok then
    return nil, herr
  end
  if u.port and u.port > 65535 then
    return nil, "invalid port number"
  end
  return true
end


local function validate_pem(s)
  if find(s, "-----BEGIN ", 1, true) then
    return true
  end
  return nil, "invalid PEM: expected a '-----BEGIN' block"
end


-- The typedefs ----------------------------------------------------------

local HTTP_PROTOCOLS = { "http", "https", "grpc", "grpcs" }
local ALL_PROTOCOLS = {
  "http", "https", "grpc", "grpcs", "tcp", "tls", "tls_passthrough", "udp",
  "ws", "wss",
}
_M.PROTOCOLS = ALL_PROTOCOLS
_M.HTTP_PROTOCOLS = HTTP_PROTOCOLS


_M.uuid = Typedef {
  type = "string",
  uuid = true,
  auto = true,
}

_M.http_method = Typedef {
  type = "string",
  match = "^%u+$",
}

_M.protocol = Typedef {
  type = "string",
  one_of = ALL_PROTOCOLS,
}

_M.protocols = Typedef {
  type = "set",
  required = true,
  default = { "grpc", "grpcs", "http", "https" },
  elements = { type = "string", one_of = ALL_PROTOCOLS },
}

_M.protocols_http = Typedef {
  type = "set",
  required = true,
  default = { "grpc", "grpcs", "http", "https" },
  elements = { type = "string", one_of = HTTP_PROTOCOLS },
}

_M.host = Typedef {
  type = "string",
  custom_validator = validate_host,
}

_M.host_with_optional_port = Typedef {
  type = "string",
  custom_validator = validate_host_with_optional_port,
}

_M.wildcard_host = Typedef {
  type = "string",
  custom_validator = validate_wildcard_host,
}

_M.redis_host = _M.host { description = "A string representing a host " ..
                                         "name, such as example.com." }

_M.port = Typedef {
  type = "integer",
  between = { 0, 65535 },
}

_M.path = Typedef {
  type = "string",
  starts_with = "/",
  match_none = {
    { pattern = "//", err = "must not have empty segments" },
  },
  custom_validator = validate_path,
}

_M.url = Typedef {
  type = "string",
  custom_validator = validate_url,
}

_M.ip = Typedef {
  type = "string",
  custom_validator = validate_ip,
}

_M.cidr = Typedef {
  type = "string",
  custom_validator = validate_cidr,
}

_M.ip_or_cidr = Typedef {
  type = "string",
  custom_validator = validate_ip_or_cidr,
}

_M.cidr_v4 = _M.cidr
_M.cidr_v6 = _M.cidr
_M.ip_or_cidr_v4 = _M.ip_or_cidr

_M.timeout = Typedef {
  type = "integer",
  between = { 0, 2147483646 },
}

_M.header_name = Typedef {
  type = "string",
  custom_validator = validate_header_name,
}

_M.cookie_name = Typedef {
  type = "string",
  custom_validator = validate_cookie_name,
}

_M.name = Typedef {
  type = "string",
  unique = true,
  custom_validator = validate_name,
}

_M.utf8_name = Typedef {
  type = "string",
  unique = true,
  custom_validator = validate_utf8_name,
}

_M.tag = Typedef {
  type = "string",
  custom_validator = validate_tag,
}

_M.tags = Typedef {
  type = "set",
  elements = _M.tag,
}

_M.lua_code = Typedef {
  type = "map",
  keys = { type = "string", len_min = 1 },
  values = { type = "string", len_min = 1 },
}

_M.certificate = Typedef {
  type = "string",
  custom_validator = validate_pem,
}

_M.key = Typedef {
  type = "string",
  custom_validator = validate_pem,
  encrypted = true,
  referenceable = true,
}

-- "*" alone is the catch-all SNI: its certificate replaces the default one
_M.sni = Typedef {
  type = "string",
  custom_validator = function(s)
    if s == "*" then
      return true
    end
    return validate_wildcard_host(s)
  end,
}

_M.ttl = Typedef {
  type = "number",
  between = { 0, 100000000 },
}

_M.semantic_version = Typedef {
  type = "string",
  match = "^%d+%.%d+%.?%d*$",
}

_M.auto_timestamp_s = Typedef {
  type = "integer",
  timestamp = true,
  auto = true,
}

_M.auto_timestamp_ms = Typedef {
  type = "number",
  timestamp = true,
  auto = true,
}

_M.no_consumer = Typedef {
  type = "foreign",
  reference = "consumers",
  eq = null,
}

_M.no_route = Typedef {
  type = "foreign",
  reference = "routes",
  eq = null,
}

_M.no_service = Typedef {
  type = "foreign",
  reference = "services",
  eq = null,
}

_M.no_consumer_group = Typedef {
  type = "foreign",
  reference = "consumer_groups",
  eq = null,
}

-- a record of ip/port pairs (route sources / destinations)
_M.sources = Typedef {
  type = "set",
  elements = {
    type = "record",
    fields = {
      { ip = _M.ip_or_cidr },
      { port = _M.port },
    },
    entity_checks = {
      { at_least_one_of = { "ip", "port" } },
    },
  },
}
_M.destinations = _M.sources

-- Kong's plugin queue parameters, with Kong's defaults
_M.queue = Typedef {
  type = "record",
  fields = {
    { max_batch_size = { type = "integer", default = 1,
                         between = { 1, 1000000 } } },
    { max_coalescing_delay = { type = "number", default = 1,
                               between = { 0, 3600 } } },
    { max_entries = { type = "integer", default = 10000,
                      between = { 1, 1000000 } } },
    { max_bytes = { type = "integer" } },
    { max_retry_time = { type = "number", default = 60 } },
    { initial_retry_delay = { type = "number", default = 0.01,
                              between = { 0.001, 1000000 } } },
    { max_retry_delay = { type = "number", default = 60,
                          between = { 0.001, 1000000 } } },
    { concurrency_limit = { type = "integer", default = 1,
                            one_of = { -1, 1 } } },
  },
}

return _M
