-- Declarative entities: their schemas (Kong 3.x fields and defaults) and
-- the registry the loader walks. Plugin daos (credentials...) hook in with
-- `register(name, schema_def, parent)`.
--
-- A registry entry:
--   name       entity kind, also its top-level key and its nesting key
--   schema     luagate.schema object, or nil to keep items as-is (tables)
--   refs       { field = kind }: foreign keys (by name or id at top level,
--              implicit when nested); removed before schema validation
--   parents    { kind = field }: kinds it can nest under, and the foreign
--              field that nesting sets
--   key        natural key used for references and duplicates ("name")

local type = type
local ipairs = ipairs
local pairs = pairs
local next = next
local sort = table.sort
local find = string.find
local sub = string.sub

local Schema = require "luagate.schema"
local typedefs = require "kong.db.schema.typedefs"

local null = Schema.NULL


local _M = {}


local TLS_PROTOCOLS = {
  https = true, grpcs = true, tls = true, tls_passthrough = true, wss = true,
}


-- services ---------------------------------------------------------------

local SERVICE_PROTOCOLS = {
  "http", "https", "grpc", "grpcs", "tcp", "tls", "tls_passthrough", "udp",
  "ws", "wss",
}

local services = {
  name = "services",
  fields = {
    { id = typedefs.uuid },
    { name = typedefs.utf8_name },
    { protocol = { type = "string", required = true, default = "http",
                   one_of = SERVICE_PROTOCOLS } },
    { host = typedefs.host { required = true } },
    { port = typedefs.port { required = true, default = 80 } },
    { path = typedefs.path },
    { retries = { type = "integer", default = 5, between = { 0, 32767 } } },
    { connect_timeout = typedefs.timeout { default = 60000 } },
    { write_timeout = typedefs.timeout { default = 60000 } },
    { read_timeout = typedefs.timeout { default = 60000 } },
    { tags = typedefs.tags },
    { client_certificate = { type = "foreign", reference = "certificates" } },
    { tls_verify = { type = "boolean" } },
    { tls_verify_depth = { type = "integer", between = { 0, 64 } } },
    { ca_certificates = { type = "array", elements = typedefs.uuid } },
    { enabled = { type = "boolean", required = true, default = true } },
  },
  entity_checks = {
    { conditional = {
        if_field = "protocol",
        if_match = { one_of = { "tcp", "tls", "tls_passthrough", "udp",
                                "grpc", "grpcs" } },
        then_field = "path",
        then_match = { eq = null },
    } },
  },
  shorthand_fields = {
    { url = {
        type = "string",
        custom_validator = function(s)
          local u, err = typedefs.parse_url(s)
          if not u then
            return nil, err
          end
          return true
        end,
        func = function(s)
          local u = typedefs.parse_url(s)
          local out = { protocol = u.scheme, host = u.host, port = u.port,
                        path = u.path }
          if not out.port then
            out.port = TLS_PROTOCOLS[u.scheme] and 443 or 80
          end
          return out
        end,
    } },
  },
}


-- before validation: the default port follows the protocol
local function service_pre(item)
  if item.url == nil and Schema.is_null(item.port) and
     type(item.protocol) == "string" and TLS_PROTOCOLS[item.protocol] then
    item.port = 443
  end
end


-- routes -----------------------------------------------------------------

local ROUTE_PROTOCOLS = {
  "http", "https", "grpc", "grpcs", "tcp", "tls", "tls_passthrough", "udp",
  "ws", "wss",
}

local PATH_START_ERR = "should start with: / (fixed path) or ~/ (regex path)"


local function validate_route_path(p)
  if sub(p, 1, 1) == "/" then
    if find(p, "//", 1, true) then
      return nil, "must not have empty segments"
    end
    return typedefs.validate_path(p)
  end
  if sub(p, 1, 2) == "~/" then
    local ok, err = Schema.check_regex(sub(p, 2), true)
    if not ok then
      return nil, "invalid regex: '" .. sub(p, 2) .. "' (PCRE returned: " ..
                  err .. ")"
    end
    return true
  end
  return nil, PATH_START_ERR
end


local function validate_route_header_name(h)
  if h:lower() == "host" then
    return nil, "cannot contain 'host' header, which must be specified " ..
                "in the 'hosts' attribute"
  end
  return typedefs.validate_header_name(h)
end


local function has(list, v)
  if type(list) ~= "table" then
    return false
  end
  for _, x in ipairs(list) do
    if x == v then
      return true
    end
  end
  return false
end


local function set(v)
  return type(v) == "table" and next(v) ~= nil
end


local function check_route(r)
  local p = r.protocols or {}
  local http = has(p, "http") or has(p, "ws")
  local https = has(p, "https") or has(p, "wss")
  local grpc = has(p, "grpc") or has(p, "grpcs")
  local stream = has(p, "tcp") or has(p, "tls") or has(p, "udp") or
                 has(p, "tls_passthrough")

  if set(r.snis) and not (https or has(p, "grpcs") or has(p, "tls") or
                          has(p, "tls_passthrough")) then
    return nil, "'snis' can only be set when 'protocols' is 'grpcs', " ..
                "'https', 'tls' or 'tls_passthrough'"
  end

  local any_http = set(r.methods) or set(r.hosts) or set(r.headers) or
                   set(r.paths)
  if http and not any_http then
    return nil, "must set one of 'methods', 'hosts', 'headers', 'paths' " ..
                "when 'protocols' is 'http'"
  end
  if https and not (any_http or set(r.snis)) then
    return nil, "must set one of 'methods', 'hosts', 'headers', 'paths', " ..
                "'snis' when 'protocols' is 'https'"
  end
  if grpc and not (set(r.hosts) or set(r.headers) or set(r.paths) or
                   set(r.snis)) then
    return nil, "must set one of 'hosts', 'headers', 'paths', 'snis' " ..
                "when 'protocols' is 'grpc' or 'grpcs'"
  end
  if stream and not (set(r.sources) or set(r.destinations) or
                     set(r.snis)) then
    return nil, "must set one of 'sources', 'destinations', 'snis' when " ..
                "'protocols' is 'tcp', 'tls' or 'udp'"
  end
  if stream and (set(r.methods) or set(r.paths) or set(r.hosts) or
                 set(r.headers)) then
    return nil, "'methods', 'hosts', 'headers' and 'paths' can only be " ..
                "set for http, https, grpc or grpcs routes"
  end
  return true
end


-- Kong's grpc route subschema (chosen by the first protocol, as Kong's
-- schema chooses subschemas for sets): strip_path defaults to false and
-- cannot be true; methods, sources and destinations cannot be set.
local function grpc_first(p)
  if type(p) == "table" and (p[1] == "grpc" or p[1] == "grpcs") then
    return true
  end
  return nil, "not a grpc route"
end

local function grpc_forbids(field, match)
  return { conditional = {
    if_field = "protocols", if_match = { custom_validator = grpc_first },
    then_field = field, then_match = match,
    then_err = "cannot set '" .. field .. "' when 'protocols' is 'grpc' or 'grpcs'",
  } }
end


local routes = {
  name = "routes",
  fields = {
    { id = typedefs.uuid },
    { name = typedefs.utf8_name },
    { protocols = { type = "set", required = true,
                    default = { "http", "https" },
                    len_min = 1,
                    elements = { type = "string",
                                 one_of = ROUTE_PROTOCOLS } } },
    { methods = { type = "set", elements = typedefs.http_method } },
    { hosts = { type = "array", elements = typedefs.wildcard_host } },
    { paths = { type = "array",
                elements = { type = "string",
                             custom_validator = validate_route_path } } },
    { headers = { type = "map",
                  keys = { type = "string",
                           custom_validator = validate_route_header_name },
                  values = { type = "array",
                             elements = { type = "string" } } } },
    { snis = { type = "set", elements = typedefs.sni } },
    { sources = typedefs.sources },
    { destinations = typedefs.destinations },
    { https_redirect_status_code = { type = "integer", required = true,
                                     default = 426,
                                     one_of = { 426, 301, 302, 307, 308 } } },
    { regex_priority = { type = "integer", default = 0 } },
    { strip_path = { type = "boolean", required = true, default = true } },
    { path_handling = { type = "string", default = "v0",
                        one_of = { "v0", "v1" } } },
    { preserve_host = { type = "boolean", required = true,
                        default = false } },
    { request_buffering = { type = "boolean", required = true,
                            default = true } },
    { response_buffering = { type = "boolean", required = true,
                             default = true } },
    { tags = typedefs.tags },
  },
  entity_checks = {
    { custom_entity_check = {
        field_sources = { "protocols", "methods", "hosts", "headers", "paths",
                          "snis", "sources", "destinations" },
        fn = check_route,
    } },
    grpc_forbids("strip_path", { eq = false }),
    grpc_forbids("methods", { eq = null }),
    grpc_forbids("sources", { eq = null }),
    grpc_forbids("destinations", { eq = null }),
  },
}


-- before validation: grpc routes default to strip_path false (Kong)
local function route_pre(item)
  if item.strip_path == nil and grpc_first(item.protocols) then
    item.strip_path = false
  end
end


-- after validation: header names are case-insensitive, kept lowercase
local function route_post(r)
  if r.headers then
    local h = {}
    local names = {}
    for k in pairs(r.headers) do
      names[#names + 1] = k
    end
    sort(names)
    for _, k in ipairs(names) do
      local lk = k:lower()
      local list = h[lk] or {}
      for _, v in ipairs(r.headers[k]) do
        list[#list + 1] = v
      end
      h[lk] = list
    end
    r.headers = h
  end
end


-- consumers and groups ---------------------------------------------------

local consumers = {
  name = "consumers",
  fields = {
    { id = typedefs.uuid },
    { username = { type = "string" } },
    { custom_id = { type = "string" } },
    { tags = typedefs.tags },
  },
  entity_checks = {
    { at_least_one_of = { "custom_id", "username" } },
  },
}

local consumer_groups = {
  name = "consumer_groups",
  fields = {
    { id = typedefs.uuid },
    { name = typedefs.utf8_name { required = true } },
    { tags = typedefs.tags },
  },
}


-- plugins (the entity part; `config` comes from the plugin's schema) -----

_M.PLUGIN_BASE_FIELDS = {
  { id = typedefs.uuid },
  { name = { type = "string", required = true } },
  { instance_name = typedefs.utf8_name },
  { config = { type = "json" } },
  { protocols = typedefs.protocols },
  { enabled = { type = "boolean", required = true, default = true } },
  { tags = typedefs.tags },
}


-- upstreams, targets -----------------------------------------------------

local function validate_upstream_name(s)
  local h, port = typedefs.split_host_port(s)
  if not h or not typedefs.is_hostname(h) then
    return nil, "Invalid name ('" .. s .. "'); must be a valid hostname"
  end
  if typedefs.is_ip(h) or typedefs.is_ipv4(h) then
    return nil, "Invalid name ('" .. s .. "'); no ip addresses allowed"
  end
  if port then
    return nil, "Invalid name ('" .. s .. "'); no port allowed"
  end
  return true
end

local HASH_ON = { "none", "consumer", "ip", "header", "cookie", "path",
                  "query_arg", "uri_capture" }

-- Kong's healthchecks record (defaults as Kong's); 0 disables a counter.
local function statuses(default)
  return { type = "array", default = default,
           elements = { type = "integer", between = { 100, 999 } } }
end

local function positive(default)
  return { type = "integer", default = default, between = { 0, 255 } }
end

local HEALTHCHECKS = {
  type = "record",
  default = {},
  fields = {
    { active = { type = "record", default = {}, fields = {
      { type = { type = "string", default = "http",
                 one_of = { "tcp", "http", "https", "grpc", "grpcs" } } },
      { timeout = { type = "number", default = 1, between = { 0, 65535 } } },
      { concurrency = { type = "integer", default = 10, between = { 1, 65536 } } },
      { http_path = typedefs.path { default = "/" } },
      { headers = { type = "map", keys = { type = "string" },
                    values = { type = "array", elements = { type = "string" } } } },
      { https_verify_certificate = { type = "boolean", default = true } },
      { https_sni = { type = "string" } },
      { healthy = { type = "record", default = {}, fields = {
        { interval = { type = "number", default = 0, between = { 0, 65535 } } },
        { http_statuses = statuses({ 200, 302 }) },
        { successes = positive(0) },
      } } },
      { unhealthy = { type = "record", default = {}, fields = {
        { interval = { type = "number", default = 0, between = { 0, 65535 } } },
        { http_statuses = statuses({ 429, 404, 500, 501, 502, 503, 504, 505 }) },
        { tcp_failures = positive(0) },
        { timeouts = positive(0) },
        { http_failures = positive(0) },
      } } },
    } } },
    { passive = { type = "record", default = {}, fields = {
      { type = { type = "string", default = "http",
                 one_of = { "tcp", "http", "https", "grpc", "grpcs" } } },
      { healthy = { type = "record", default = {}, fields = {
        { http_statuses = statuses({ 200, 201, 202, 203, 204, 205, 206, 207,
                                     208, 226, 300, 301, 302, 303, 304, 305,
                                     306, 307, 308 }) },
        { successes = positive(0) },
      } } },
      { unhealthy = { type = "record", default = {}, fields = {
        { http_statuses = statuses({ 429, 500, 503 }) },
        { tcp_failures = positive(0) },
        { timeouts = positive(0) },
        { http_failures = positive(0) },
      } } },
      -- luagate: a target ejected by passive checks alone comes back on its
      -- own: after backoff_s one request is let through; success readmits
      -- it, failure doubles the back-off (up to max_backoff_s)
      { readmission = { type = "record", default = {}, fields = {
        { backoff_s = { type = "number", default = 10, between = { 0.1, 3600 } } },
        { max_backoff_s = { type = "number", default = 300, between = { 0.1, 86400 } } },
      } } },
    } } },
    { threshold = { type = "number", default = 0, between = { 0, 100 } } },
  },
}

local upstreams = {
  name = "upstreams",
  fields = {
    { id = typedefs.uuid },
    { name = { type = "string", required = true,
               custom_validator = validate_upstream_name } },
    { algorithm = { type = "string", default = "round-robin",
                    one_of = { "consistent-hashing", "least-connections",
                               "round-robin", "latency" } } },
    { hash_on = { type = "string", default = "none", one_of = HASH_ON } },
    { hash_fallback = { type = "string", default = "none",
                        one_of = HASH_ON } },
    { hash_on_header = typedefs.header_name },
    { hash_fallback_header = typedefs.header_name },
    { hash_on_cookie = typedefs.cookie_name },
    { hash_on_cookie_path = typedefs.path { default = "/" } },
    { hash_on_query_arg = { type = "string" } },
    { hash_fallback_query_arg = { type = "string" } },
    { hash_on_uri_capture = { type = "string" } },
    { hash_fallback_uri_capture = { type = "string" } },
    { slots = { type = "integer", default = 10000,
                between = { 10, 65536 } } },
    { healthchecks = HEALTHCHECKS },
    -- luagate: never eject (passive) more than this share of the targets
    { max_ejection_percent = { type = "integer", default = 100,
                               between = { 0, 100 } } },
    { tags = typedefs.tags },
    { host_header = typedefs.host },
    { client_certificate = { type = "foreign", reference = "certificates" } },
    { use_srv_name = { type = "boolean", default = false } },
  },
  entity_checks = {
    { conditional = { if_field = "hash_on", if_match = { eq = "header" },
                      then_field = "hash_on_header",
                      then_match = { required = true } } },
    { conditional = { if_field = "hash_fallback",
                      if_match = { eq = "header" },
                      then_field = "hash_fallback_header",
                      then_match = { required = true } } },
    { conditional = { if_field = "hash_on", if_match = { eq = "cookie" },
                      then_field = "hash_on_cookie",
                      then_match = { required = true } } },
  },
}


local function validate_target(s)
  local h, port = typedefs.split_host_port(s)
  if not h then
    return nil, "Invalid target ('" .. s .. "'); not a valid hostname " ..
                "or ip address"
  end
  if port and port > 65535 then
    return nil, "Invalid target ('" .. s .. "'); invalid port number"
  end
  if not (typedefs.is_ip(h) or typedefs.is_hostname(h)) then
    return nil, "Invalid target ('" .. s .. "'); not a valid hostname " ..
                "or ip address"
  end
  return true
end

local targets = {
  name = "targets",
  fields = {
    { id = typedefs.uuid },
    { target = { type = "string", required = true,
                 custom_validator = validate_target } },
    { weight = { type = "integer", default = 100,
                 between = { 0, 65535 } } },
    -- luagate: failover tiers; the lowest number that has a healthy target
    -- takes all the traffic (multi-region failover)
    { priority = { type = "integer", default = 0, between = { 0, 255 } } },
    { tags = typedefs.tags },
  },
}


-- after validation: a target without a port gets Kong's 8000
local function target_post(t)
  local h, port = typedefs.split_host_port(t.target)
  -- a name without a port is looked up as SRV first (Kong), 8000 otherwise
  t.srv = (h and not port and not typedefs.is_ip(h)) and true or nil
  if h and not port then
    if typedefs.is_ipv6(h) then
      t.target = "[" .. h .. "]:8000"
    else
      t.target = h .. ":8000"
    end
  end
end


-- certificates, snis, ca_certificates -------------------------------------

local certificates = {
  name = "certificates",
  fields = {
    { id = typedefs.uuid },
    { cert = typedefs.certificate { required = true, referenceable = true } },
    { key = typedefs.key { required = true } },
    { cert_alt = typedefs.certificate { referenceable = true } },
    { key_alt = typedefs.key },
    { tags = typedefs.tags },
  },
  entity_checks = {
    { mutually_required = { "cert_alt", "key_alt" } },
  },
}

local snis = {
  name = "snis",
  fields = {
    { id = typedefs.uuid },
    { name = typedefs.sni { required = true } },
    { tags = typedefs.tags },
  },
}

local ca_certificates = {
  name = "ca_certificates",
  fields = {
    { id = typedefs.uuid },
    { cert = typedefs.certificate { required = true } },
    { cert_digest = { type = "string" } },
    { tags = typedefs.tags },
  },
}


-- the registry -------------------------------------------------------------

local registry = {}
local order = {}
_M.children_cache = {} -- kind -> children_of(kind)
_M.generation = 0 -- register() calls so far
_M.registry = registry
_M.order = order


-- Registers an entity kind. `schema_def` is a Kong-format schema table (or
-- nil: items are kept as given, only required to be tables); `parent` is
-- the kind it nests under ("consumers"), its foreign field being the
-- singular of it ("consumer"), or a table { kind = field }. Options in
-- `extra` (refs, key, pre, post) are for the built-in kinds.
function _M.register(name, schema_def, parent, extra)
  extra = extra or {}
  local parents = {}
  local refs = {}
  if type(parent) == "string" then
    local field = parent:gsub("s$", "")
    parents[parent] = field
    refs[field] = parent
  elseif type(parent) == "table" then
    for kind, field in pairs(parent) do
      parents[kind] = field
      refs[field] = kind
    end
  end
  for field, kind in pairs(extra.refs or {}) do
    refs[field] = kind
  end
  local entry = {
    name = name,
    schema = schema_def and Schema.new(schema_def) or nil,
    parents = parents,
    refs = refs,
    key = extra.key,
    pre = extra.pre,
    post = extra.post,
  }
  if not registry[name] then
    order[#order + 1] = name
  end
  registry[name] = entry
  _M.children_cache = {}
  -- (a worker's reload reuses entities validated under the same kinds:
  -- luagate.config, Loader:reuse)
  _M.generation = _M.generation + 1
  return entry
end


-- built-in kinds, in the order they are processed (parents before
-- children, plugins last so every scope can be resolved)
_M.register("certificates", certificates, nil)
_M.register("snis", snis, "certificates", { key = "name" })
_M.register("ca_certificates", ca_certificates, nil)
_M.register("services", services, nil,
            { key = "name", pre = service_pre,
              refs = { client_certificate = "certificates" } })
_M.register("routes", routes, "services", { key = "name", pre = route_pre,
                                            post = route_post })
_M.register("consumers", consumers, nil, { key = "username" })
_M.register("consumer_groups", consumer_groups, nil, { key = "name" })
_M.register("upstreams", upstreams, nil, { key = "name" })
_M.register("targets", targets, "upstreams", { post = target_post })

-- credentials of the bundled auth plugins: kept as given until the plugins
-- register their daos' schemas
for _, cred in ipairs({ "keyauth_credentials", "basicauth_credentials",
                        "jwt_secrets", "acls", "hmacauth_credentials",
                        "oauth2_credentials" }) do
  _M.register(cred, nil, "consumers")
end

_M.register("plugins", nil, {
  services = "service", routes = "route", consumers = "consumer",
  consumer_groups = "consumer_group",
})


-- which kinds nest under `kind` ({ child_kind, ... })
-- (cached until the next register; do not modify the result)
function _M.children_of(kind)
  local cache = _M.children_cache
  local out = cache[kind]
  if out then
    return out
  end
  out = {}
  for _, name in ipairs(order) do
    if registry[name].parents[kind] then
      out[#out + 1] = name
    end
  end
  cache[kind] = out
  return out
end


return _M
