-- The Admin API's Lua side: everything that reads the configuration or
-- calls plugins. runtime/src/admin.c calls handle() with lua_pcall (it may
-- not yield) for the paths it does not answer itself (/status, /metrics,
-- /upstreams/{name}/health, /dashboard, GET /debug/routes).
--
--   handle(req) -> status, content_type, body [, action, arg1, arg2]
--
-- req: method, path, query (raw, without "?"), body (string or nil),
-- content_type, conf (the worker's running normalized config), hash
-- (its config hash), loaded_at (epoch seconds), prefix, plugins_dirs.
-- action tells the C side to act after the Lua part:
--   "apply", format ("json"|"yaml"), hash   POST /config: the body is valid
--   "debug_on", route_id, seconds          POST /debug/routes/{x}
--   "debug_off", route_id                  DELETE /debug/routes/{x}
-- See docs/admin-api.md.

local type = type
local getmetatable = getmetatable
local pairs = pairs
local ipairs = ipairs
local tostring = tostring
local tonumber = tonumber
local pcall = pcall
local require = require
local concat = table.concat
local find = string.find
local match = string.match
local gmatch = string.gmatch
local gsub = string.gsub
local lower = string.lower
local sub = string.sub
local char = string.char
local floor = math.floor

local cjson = require "cjson.safe"
local export = require "luagate.admin.export"

local encode = export.encode
local array = export.array
local object = export.object
local NULL = export.NULL

local JSON = "application/json; charset=utf-8"

local MAX_DEBUG_SECONDS = 3600
local DEFAULT_DEBUG_SECONDS = 300
local DEFAULT_PAGE_SIZE = 100
local MAX_PAGE_SIZE = 1000

local _M = {}


local function json(status, v)
  return status, JSON, encode(v)
end

local function message(status, msg)
  return json(status, { message = msg })
end

local function not_found()
  return message(404, "Not found")
end


local function unescape(s)
  s = gsub(s, "+", " ")
  return (gsub(s, "%%(%x%x)", function(h)
    return char(tonumber(h, 16))
  end))
end

local function parse_query(q)
  local args = {}
  if type(q) ~= "string" then
    return args
  end
  for pair in gmatch(q, "[^&]+") do
    local k, v = match(pair, "^([^=]*)=(.*)$")
    if not k then
      k, v = pair, ""
    end
    args[unescape(k)] = unescape(v)
  end
  return args
end
_M.parse_query = parse_query

local function truthy(v)
  return v == "1" or v == "true" or v == "yes" or v == ""
end


-- entities -------------------------------------------------------------------

-- kinds served, and the fields an endpoint key may match besides id
local KINDS = {
  services = { "name" },
  routes = { "name" },
  consumers = { "username", "custom_id" },
  plugins = { "instance_name" },
  upstreams = { "name" },
  consumer_groups = { "name" },
  certificates = {},
  snis = { "name" },
  ca_certificates = {},
  targets = { "target" },
}

local function find_entity(list, kind, key)
  for _, e in ipairs(list) do
    if e.id == key then
      return e
    end
  end
  for _, f in ipairs(KINDS[kind] or {}) do
    for _, e in ipairs(list) do
      if e[f] == key then
        return e
      end
    end
  end
  return nil
end

local function page(list, args)
  local size = tonumber(args.size) or DEFAULT_PAGE_SIZE
  if size ~= floor(size) or size < 1 or size > MAX_PAGE_SIZE then
    return message(400, "size must be an integer between 1 and " ..
                        MAX_PAGE_SIZE)
  end
  local offset = 0
  if args.offset and args.offset ~= "" then
    offset = tonumber(args.offset)
    if not offset or offset ~= floor(offset) or offset < 0 then
      return message(400, "invalid offset")
    end
  end
  local data = array()
  for i = offset + 1, offset + size do
    if list[i] == nil then
      break
    end
    data[#data + 1] = list[i]
  end
  local next_ = NULL
  local offset_ = nil
  if list[offset + size + 1] ~= nil then
    offset_ = tostring(offset + size)
    next_ = "?size=" .. size .. "&offset=" .. offset_
  end
  return json(200, object({ data = data, next = next_, offset = offset_ }))
end

-- entities of `kind` whose field `fk` refers to entity id
local function children(list, fk, id)
  local out = array()
  for _, e in ipairs(list) do
    local r = e[fk]
    if type(r) == "table" and r.id == id then
      out[#out + 1] = e
    end
  end
  return out
end

local PARENT_FK = {
  services = "service", routes = "route", consumers = "consumer",
  consumer_groups = "consumer_group", upstreams = "upstream",
}

local function entity_endpoint(req, args, parts)
  local kind = parts[1]
  if not KINDS[kind] or kind == "targets" then
    return nil
  end
  if req.method ~= "GET" and req.method ~= "HEAD" then
    return message(405, "Method not allowed (the configuration is " ..
                        "declarative: use POST /config)")
  end
  local conf, t = req.conf, req.loaded_at
  local list = export.entities(conf, kind, t)
  if #parts == 1 then
    return page(list, args)
  end
  local e = find_entity(list, kind, parts[2])
  if not e then
    return not_found()
  end
  if #parts == 2 then
    return json(200, e)
  end
  if #parts == 3 then
    local sub_kind = parts[3]
    if kind == "upstreams" and sub_kind == "targets" then
      return page(children(export.entities(conf, "targets", t), "upstream",
                           e.id), args)
    end
    local fk = PARENT_FK[kind]
    if fk and (sub_kind == "routes" or sub_kind == "plugins") and
       (sub_kind ~= "routes" or kind == "services") then
      return page(children(export.entities(conf, sub_kind, t), fk, e.id),
                  args)
    end
    if kind == "consumers" then
      for _, ck in ipairs(export.CREDENTIAL_KINDS) do
        local path_name = ({
          keyauth_credentials = "key-auth", basicauth_credentials =
          "basic-auth", jwt_secrets = "jwt", acls = "acls",
          hmacauth_credentials = "hmac-auth", oauth2_credentials = "oauth2",
        })[ck]
        if sub_kind == path_name then
          return page(children(export.entities(conf, ck, t), "consumer",
                               e.id), args)
        end
      end
    end
  end
  return not_found()
end


-- POST /config ---------------------------------------------------------------

local function singular(kind)
  if kind == "consumer_groups" then
    return "consumer_group"
  end
  return (gsub(kind, "s$", ""))
end

-- "config:12: services[0].routes[1].paths: expected an array" ->
-- line, path, msg
local function split_error(s)
  local rest = gsub(s, "^config:", "")
  local line = match(rest, "^(%d+): ")
  if line then
    rest = sub(rest, #line + 3)
  else
    rest = gsub(rest, "^ ", "")
  end
  local path, msg = match(rest, "^([%w_%.%[%]%-]+): (.*)$")
  if not path then
    return tonumber(line), nil, rest
  end
  return tonumber(line), path, msg
end

-- the fields tree: {services = [null, {host = "..."}]} (arrays by index)
local function add_field(tree, path, msg)
  local node = tree
  local segs = {}
  for name, idx in gmatch(path, "([^%.%[]*)%[?(%d*)%]?") do
    if name ~= "" then
      segs[#segs + 1] = name
    end
    if idx ~= "" then
      segs[#segs + 1] = tonumber(idx) + 1
    end
  end
  for i, k in ipairs(segs) do
    if i == #segs then
      if node[k] == nil then
        node[k] = msg
      elseif type(node[k]) == "string" then
        node[k] = node[k] .. "; " .. msg
      end
      return
    end
    local nxt = node[k]
    if type(nxt) ~= "table" then
      nxt = type(segs[i + 1]) == "number" and array() or object()
      node[k] = nxt
    end
    if type(k) == "number" and getmetatable(node) == export.ARRAY_MT then
      for j = 1, k - 1 do
        if node[j] == nil then
          node[j] = NULL
        end
      end
    end
    node = nxt
  end
end

local ENTITY_KINDS = {
  services = true, routes = true, consumers = true, plugins = true,
  upstreams = true, targets = true, certificates = true, snis = true,
  ca_certificates = true, consumer_groups = true,
}
for _, k in ipairs(export.CREDENTIAL_KINDS) do
  ENTITY_KINDS[k] = true
end

local function invalid(errs)
  local fields = object()
  local flat = array()
  local by_entity = {}
  local texts = {}
  for _, s in ipairs(errs) do
    local line, path, msg = split_error(s)
    texts[#texts + 1] = path and (path .. ": " .. msg) or msg
    if path then
      add_field(fields, path, msg)
      -- the innermost "kind[i]" is the entity
      local epath, kind
      local pos = 1
      while true do
        local s_, e_, k = find(path, "([%a_]+)%[%d+%]", pos)
        if not s_ then
          break
        end
        if ENTITY_KINDS[k] then
          epath, kind = sub(path, 1, e_), k
        end
        pos = e_ + 1
      end
      local field = epath and sub(path, #epath + 2) or path
      local key = epath or ""
      local ent = by_entity[key]
      if not ent then
        ent = {
          entity_type = kind and singular(kind) or NULL,
          entity_path = epath or NULL,
          errors = array(),
        }
        by_entity[key] = ent
        flat[#flat + 1] = ent
      end
      ent.errors[#ent.errors + 1] = {
        field = field ~= "" and field or NULL,
        message = msg,
        type = (field and field ~= "") and "field" or "entity",
        line = line or NULL,
      }
    else
      flat[#flat + 1] = {
        entity_type = NULL,
        errors = array({ { message = msg, type = "entity",
                           line = line or NULL } }),
      }
      local list = fields["@entity"] or array()
      list[#list + 1] = msg
      fields["@entity"] = list
    end
  end
  local summary = concat(texts, "; ", 1, #texts > 10 and 10 or #texts)
  if #texts > 10 then
    summary = summary .. "; and " .. (#texts - 10) .. " more"
  end
  return json(400, object({
    code = 14,
    name = "invalid declarative configuration",
    message = "declarative config is invalid: " .. summary,
    fields = fields,
    flattened_errors = flat,
  }))
end

local function format_of(ctype, body)
  ctype = lower(ctype or "")
  if find(ctype, "json", 1, true) then
    return "json"
  elseif find(ctype, "yaml", 1, true) or find(ctype, "yml", 1, true) then
    return "yaml"
  end
  local first = match(body, "^%s*(.)")
  if first == "{" or first == "[" then
    return "json"
  end
  return "yaml"
end

local function post_config(req, args)
  local body = req.body
  if type(body) ~= "string" or match(body, "^%s*$") then
    return message(400, "declarative config is invalid: empty body " ..
                        "(send the configuration as JSON or YAML)")
  end
  local format = format_of(req.content_type, body)
  -- Kong's {"config": "<yaml or json text>"} wrapper
  if format == "json" then
    local doc = cjson.decode(body)
    if type(doc) == "table" and type(doc.config) == "string" and
       doc._format_version == nil then
      body = doc.config
      format = format_of(nil, body)
    end
  end
  local config = require "luagate.config"
  local dirs = { (req.prefix or ".") .. "/plugins" }
  for _, d in ipairs(req.plugins_dirs or {}) do
    dirs[#dirs + 1] = d
  end
  local conf, errs = config.load_string(body, format, "config",
                                        { plugins_dirs = dirs })
  if not conf then
    if type(errs) ~= "table" then
      errs = { tostring(errs) }
    end
    return invalid(errs)
  end
  if truthy(args.check_hash or "0") and args.check_hash and
     conf.hash == req.hash then
    return 304, JSON, ""
  end
  return 201, JSON, body, "apply", format, conf.hash
end


-- other endpoints ---------------------------------------------------------

-- Answers req from a timer, where job() may wait (Redis): the runtime
-- keeps the request until the timer gives job's answer (action "defer",
-- gw_ffi_admin_answer; a 504 after 30 s). Without the runtime (req.token
-- nil) job runs here.
local function defer(req, job)
  local token = req.token
  if not token then
    return job()
  end
  local C = require("luagate.ffi").C
  local ok, err = ngx.timer.at(0, function(premature)
    local s, ct, b
    if premature then
      s, ct, b = message(503, "the worker is stopping")
    else
      local okj, a1, a2, a3 = pcall(job)
      if okj then
        s, ct, b = a1, a2, a3
      else
        pcall(ngx.log, ngx.ERR, "admin API: ", tostring(a1))
        s, ct, b = message(500, "An unexpected error occurred")
      end
    end
    b = b or ""
    C.gw_ffi_admin_answer(token, s, ct or JSON, b, #b)
  end)
  if not ok then
    return message(503, "could not start the operation: " .. tostring(err))
  end
  return 202, JSON, "", "defer"
end


-- Kong's routes: /proxy-cache, /proxy-cache/{key}, and per instance
-- /proxy-cache/{plugin_id}/caches and /proxy-cache/{plugin_id}/caches/{key}.
local function proxy_cache_op(req, parts, api)
  local plugin_id, key
  if #parts == 2 then
    key = parts[2]
  elseif (#parts == 3 or #parts == 4) and parts[3] == "caches" then
    plugin_id, key = parts[2], parts[4]
    if not api.has_instance(plugin_id) then
      return not_found()
    end
  elseif #parts ~= 1 then
    return not_found()
  end
  if key == nil then
    if req.method ~= "DELETE" then
      return message(405, "Method not allowed")
    end
    local n, err = api.purge_all(plugin_id)
    if err then
      return message(502, "could not purge every store: " .. tostring(err))
    end
    return 204, JSON, "", nil, n
  end
  if req.method == "DELETE" then
    local ok2, err = api.purge(key, plugin_id)
    if ok2 then
      return 204, JSON, ""
    end
    if err == "not found" then
      return not_found()
    end
    return message(502, "could not purge: " .. tostring(err))
  elseif req.method == "GET" then
    local entry, err = api.lookup(key, plugin_id)
    if entry then
      local v = {}
      for k, x in pairs(entry) do
        v[k] = x
      end
      return json(200, v)
    end
    if err == "not found" then
      return not_found()
    end
    return message(502, "could not look up: " .. tostring(err))
  end
  return message(405, "Method not allowed")
end

-- The stores of proxy-cache's redis strategy need a context that may
-- wait: the operations run in a timer (defer).
local function proxy_cache(req, parts)
  local ok, api = pcall(require, "kong.plugins.proxy-cache.api")
  if not ok then
    return message(404, "proxy-cache is not available: " .. tostring(api))
  end
  return defer(req, function()
    return proxy_cache_op(req, parts, api)
  end)
end

local function circuit_breakers(req)
  if req.method ~= "GET" then
    return message(405, "Method not allowed")
  end
  local ok, state = pcall(require, "kong.plugins.circuit-breaker.state")
  if not ok then
    return message(404, "circuit-breaker is not available")
  end
  local list = state.get_all()
  local data = array()
  for i, b in ipairs(list) do
    data[i] = b
  end
  return json(200, object({ data = data, next = NULL }))
end

local function debug_route(req, args, parts)
  if #parts ~= 3 or parts[2] ~= "routes" then
    return not_found()
  end
  local list = export.entities(req.conf, "routes")
  local r = find_entity(list, "routes", parts[3])
  if not r then
    return not_found()
  end
  if req.method == "DELETE" then
    local status, ctype, body = json(200, {
      route = { id = r.id, name = r.name or NULL }, enabled = false,
    })
    return status, ctype, body, "debug_off", r.id
  end
  if req.method ~= "POST" then
    return message(405, "Method not allowed")
  end
  local seconds = DEFAULT_DEBUG_SECONDS
  if args.seconds then
    seconds = tonumber(args.seconds)
    if not seconds or seconds ~= floor(seconds) or seconds < 1 or
       seconds > MAX_DEBUG_SECONDS then
      return message(400, "seconds must be an integer between 1 and " ..
                          MAX_DEBUG_SECONDS)
    end
  end
  local status, ctype, body = json(201, {
    route = { id = r.id, name = r.name or NULL },
    enabled = true, seconds = seconds,
    expires_at = floor((ngx and ngx.now() or os.time()) + seconds),
  })
  return status, ctype, body, "debug_on", r.id, seconds
end


local function split_path(path)
  local parts = {}
  for seg in gmatch(path, "[^/]+") do
    parts[#parts + 1] = unescape(seg)
  end
  return parts
end


local function dispatch(req)
  local args = parse_query(req.query)
  local parts = split_path(req.path)
  local top = parts[1]
  if top == "config" and #parts == 1 then
    if req.method == "GET" then
      return json(200, export.document(req.conf))
    elseif req.method == "POST" then
      return post_config(req, args)
    end
    return message(405, "Method not allowed")
  elseif top == "proxy-cache" then
    return proxy_cache(req, parts)
  elseif top == "circuit-breakers" and #parts == 1 then
    return circuit_breakers(req)
  elseif top == "debug" then
    return debug_route(req, args, parts)
  elseif top == "" or top == nil then
    return json(200, { tagline = "Welcome to luagate",
                       message = "see docs/admin-api.md" })
  end
  local s, ct, b = entity_endpoint(req, args, parts)
  if s then
    return s, ct, b
  end
  return not_found()
end


-- Answers one admin request; see the header. Never raises for bad input.
function _M.handle(req)
  local request = require "luagate.request"
  local saved = request.cur
  request.cur = nil -- kong.db and plugins read the worker's config here
  local db = require "luagate.db"
  local saved_conf = db.current()
  if req.conf then
    db.set_current(req.conf)
  end
  local ok, s, ct, b, action, a1, a2 = pcall(dispatch, req)
  request.cur = saved
  if saved_conf and saved_conf ~= req.conf then
    db.set_current(saved_conf)
  end
  if not ok then
    local msg = tostring(s)
    if ngx and ngx.log then
      pcall(ngx.log, ngx.ERR, "admin API: ", msg)
    end
    return message(500, "An unexpected error occurred")
  end
  return s, ct, b, action, a1, a2
end


return _M
