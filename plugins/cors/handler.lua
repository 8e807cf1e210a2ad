-- cors: Cross-Origin Resource Sharing, with Kong's behaviour.
--
-- Preflights (OPTIONS with Origin and Access-Control-Request-Method) are
-- answered in access with 200 and no body (unless preflight_continue, which
-- proxies them untouched); every other response gets
-- Access-Control-Allow-Origin, -Expose-Headers and -Allow-Credentials in
-- header_filter. Origins:
--   * none, or only "*"                  ACAO: *
--   * one origin without regex chars     ACAO: that origin, always
--   * otherwise, with a request Origin   "*" anywhere in the list gives
--     ACAO: *; else the entries are tried in order: a regex (any char
--     outside [A-Za-z0-9.:/-]) is anchored at both ends and matched on the
--     request origin's host, or on scheme://host[:port] when it contains
--     ':'; a plain entry is compared with the normalized origin (default
--     ports dropped). A match gives ACAO: the normalized origin; no match
--     removes ACAO.
-- Vary: Origin is added whenever origins are listed (except "*" alone).
-- With credentials, ACAC: true is sent; when ACAO would be "*", the
-- request's Origin is echoed instead (browsers refuse "*" with
-- credentials).
--
-- Everything derived from the config (joined header values, the origin
-- entries normalized or turned into anchored regexes) is built once per
-- conf table; request origins are normalized through a per-worker LRU.

local lru_new = require("luagate.pdk.cache").lru_new

local kong = kong
local ngx = ngx
local type = type
local ipairs = ipairs
local tostring = tostring
local setmetatable = setmetatable
local find = string.find
local sub = string.sub
local match = string.match
local gsub = string.gsub
local concat = table.concat
local re_find = ngx.re.find

local OK = 200
local ALL_METHODS = "GET,HEAD,PUT,PATCH,POST,DELETE,OPTIONS,TRACE,CONNECT"
local ACAO = "Access-Control-Allow-Origin"
local ACAC = "Access-Control-Allow-Credentials"
local REQUEST_ORIGINS_CACHE_SIZE = 10000


local CorsHandler = {
  PRIORITY = 2000,
  VERSION = "3.10.0",
}


-- origins ------------------------------------------------------------------

-- Splits an origin into { domain = "scheme://host[:port]", host = host };
-- the port is dropped when it is the scheme's default. A value that is not
-- scheme://authority (e.g. "null") is its own domain and host.
local function normalize_origin(origin)
  local scheme, rest = match(origin, "^(%a[%w+.-]*)://(.*)$")
  if not scheme then
    return { domain = origin, host = origin }
  end
  local authority = match(rest, "^([^/?#]*)")
  authority = gsub(authority, "^.*@", "")
  local host, port = match(authority, "^(%b[]):(%d*)$")
  if not host then
    host = match(authority, "^%b[]$")
    if not host then
      host, port = match(authority, "^([^:]*):(%d*)$")
      if not host then
        host = authority
      end
    end
  end
  if port == "" or (scheme == "http" and port == "80") or
     (scheme == "https" and port == "443") then
    port = nil
  end
  return {
    domain = scheme .. "://" .. host .. (port and (":" .. port) or ""),
    host = host,
  }
end


local request_origins = lru_new(REQUEST_ORIGINS_CACHE_SIZE)

local function normalized_request_origin(origin)
  local node = request_origins:get(origin)
  if node then
    return node.value
  end
  local n = normalize_origin(origin)
  request_origins:set(origin, n)
  return n
end


-- per config ---------------------------------------------------------------

local compiled = setmetatable({}, { __mode = "k" })


local function join(list)
  if type(list) == "table" and #list > 0 then
    return concat(list, ",")
  end
  return nil
end


local function compile(conf)
  local c = compiled[conf]
  if c then
    return c
  end
  local origins = type(conf.origins) == "table" and conf.origins or {}
  local n = #origins
  c = {
    allow_all = n == 0 or (n == 1 and origins[1] == "*"),
    single = nil,     -- the one literal origin, sent as is
    has_star = false, -- "*" among several origins
    entries = {},     -- { regex = anchored, by_host = bool } | { domain = }
    methods = join(conf.methods) or ALL_METHODS,
    headers = join(conf.headers),
    exposed = join(conf.exposed_headers),
    max_age = conf.max_age and tostring(conf.max_age) or nil,
  }
  if not c.allow_all then
    if n == 1 and find(origins[1], "^[A-Za-z0-9.:/-]+$") then
      c.single = origins[1]
    end
    for _, entry in ipairs(origins) do
      if entry == "*" then
        c.has_star = true
      end
      local e
      if find(entry, "[^A-Za-z0-9.:/-]") then
        local re = entry
        if sub(re, -1) ~= "$" then
          re = re .. "$"
        end
        if sub(re, 1, 1) == "^" then
          re = sub(re, 2) -- matched with the "a" (anchored) option
        end
        e = { regex = re, by_host = not find(re, ":", 1, true) }
      else
        e = { domain = normalize_origin(entry).domain }
      end
      c.entries[#c.entries + 1] = e
    end
  end
  compiled[conf] = c
  return c
end


local function add_vary(in_header_filter)
  if in_header_filter then
    kong.response.add_header("Vary", "Origin")
  else
    kong.response.set_header("Vary", "Origin")
  end
end


-- Sets ACAO (and Vary); returns true when ACAO is "*".
local function configure_origin(c, in_header_filter, req_origin)
  local set_header = kong.response.set_header
  if c.allow_all then
    set_header(ACAO, "*")
    return true
  end

  add_vary(in_header_filter)

  if c.single then
    set_header(ACAO, c.single)
    return false
  end

  if req_origin then
    if c.has_star then
      set_header(ACAO, "*")
      return true
    end
    local o = normalized_request_origin(req_origin)
    local entries = c.entries
    for i = 1, #entries do
      local e = entries[i]
      local found
      if e.regex then
        local from, _, err = re_find(e.by_host and o.host or o.domain,
                                     e.regex, "ajo")
        found = from
        if err then
          kong.log.err("could not search for domain: ", err)
        end
      else
        found = o.domain == e.domain
      end
      if found then
        set_header(ACAO, o.domain)
        return false
      end
    end
  end

  kong.response.clear_header(ACAO)
  return false
end


local function configure_credentials(conf, allow_all, in_header_filter,
                                     req_origin)
  if not conf.credentials then
    return
  end
  if not allow_all then
    kong.response.set_header(ACAC, "true")
    return
  end
  -- ACAC: true is refused by browsers with ACAO: *; echo the origin
  if req_origin then
    add_vary(in_header_filter)
    kong.response.set_header(ACAO, req_origin)
    kong.response.set_header(ACAC, "true")
  end
end


function CorsHandler:configure(configs)
  if configs then
    for _, conf in ipairs(configs) do
      compile(conf)
    end
  end
end


function CorsHandler:access(conf)
  if kong.request.get_method() ~= "OPTIONS" then
    return
  end
  local req_origin = kong.request.get_header("Origin")
  if not req_origin or
     not kong.request.get_header("Access-Control-Request-Method") then
    return
  end

  -- a preflight: answered here, or left to the upstream; either way
  -- header_filter adds nothing
  local ctx = kong.ctx.plugin
  ctx.preflight = true -- luacheck: ignore 122 (kong.ctx.plugin is ours)
  if conf.preflight_continue then
    return
  end

  local c = compiled[conf] or compile(conf)
  local allow_all = configure_origin(c, false, req_origin)
  configure_credentials(conf, allow_all, false, req_origin)

  local set_header = kong.response.set_header
  if c.headers then
    set_header("Access-Control-Allow-Headers", c.headers)
  else
    local acrh = kong.request.get_header("Access-Control-Request-Headers")
    if acrh then
      set_header("Access-Control-Allow-Headers", acrh)
    else
      kong.response.clear_header("Access-Control-Allow-Headers")
    end
  end

  set_header("Access-Control-Allow-Methods", c.methods)

  if c.max_age then
    set_header("Access-Control-Max-Age", c.max_age)
  end

  if conf.private_network and
     kong.request.get_header("Access-Control-Request-Private-Network")
       == "true" then
    set_header("Access-Control-Allow-Private-Network", "true")
  end

  return kong.response.exit(OK)
end


function CorsHandler:header_filter(conf)
  -- only an OPTIONS request can be a preflight: others skip kong.ctx
  if kong.request.get_method() == "OPTIONS" and kong.ctx.plugin.preflight then
    return
  end

  local req_origin = kong.request.get_header("Origin")
  if not req_origin and not conf.allow_origin_absent then
    return
  end

  local c = compiled[conf] or compile(conf)
  local allow_all = configure_origin(c, true, req_origin)
  configure_credentials(conf, allow_all, true, req_origin)

  if c.exposed then
    kong.response.set_header("Access-Control-Expose-Headers", c.exposed)
  end
end


-- for unit specs
CorsHandler._normalize_origin = normalize_origin

return CorsHandler
