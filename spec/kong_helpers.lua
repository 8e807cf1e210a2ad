-- Kong's spec.helpers names over luagate's spec/helpers.lua, so that a Kong
-- plugin spec ports with few edits:
--
--   local helpers = require "spec.kong_helpers"   -- was "spec.helpers"
--   for _, strategy in helpers.all_strategies() do   -- yields "off" only
--     local bp = helpers.get_db_utils(strategy, nil, { "myplugin" })
--     local route = bp.routes:insert({ hosts = { "test1.com" } })
--     bp.plugins:insert({ name = "myplugin", route = { id = route.id } })
--     assert(helpers.start_kong({
--       plugins = "bundled,myplugin",
--       declarative_config = helpers.make_yaml_file(),
--     }))
--     local client = helpers.proxy_client()
--     ...
--     helpers.stop_kong()
--
-- What it does instead of Kong's: no database: blueprints (`bp.<entity>
-- :insert{}`) accumulate a declarative config that start_kong writes and
-- luagate runs (`database`, `nginx_conf` and the other Kong settings are
-- ignored). The mock upstream (spec/fixtures/mock_upstream.py) starts with
-- the gateway on a free port; Kong's convention `127.0.0.1:15555` (the
-- default service of the blueprints, `helpers.mock_upstream_url`) is
-- rewritten to that port everywhere in the config, plugin configs
-- included. Plugin directories are found from the names in `plugins`: the
-- directory holding `<name>/handler.lua`, `<name>.lua` or
-- `kong/plugins/<name>/handler.lua`, looked for from the calling spec's
-- folder upwards, then from the current directory upwards, then along
-- package.path; `plugins_dir` (a string or a list) in start_kong's
-- options adds directories.
--
-- Everything in spec/helpers.lua is reachable here too (assertions
-- included); proxy_client() and admin_client() need no gateway argument:
-- they talk to the one start_kong started.

local base = require "spec.helpers"

local fmt = string.format
local concat = table.concat
local random = math.random

local helpers = setmetatable({}, { __index = base })

-- Run from a plugin author's folder (busted with luagate's tree on the
-- lpath), spec/helpers.lua's root (LUAGATE_ROOT or the current directory)
-- is not luagate's: take it from where this file is, and keep the
-- processes' directories out of the author's folder.
do
  local f = io.open(base.bin, "r")
  if f then
    f:close()
  else
    local src = debug.getinfo(1, "S").source
    local dir = src:match("^@(.*)/spec/kong_helpers%.lua$")
    if dir then
      if dir:sub(1, 1) ~= "/" then
        dir = (os.getenv("PWD") or ".") .. "/" .. dir
      end
      base.root = dir
      base.bin = os.getenv("LUAGATE_BIN") or (dir .. "/bin/luagate")
      base.mock_upstream_script = dir .. "/spec/fixtures/mock_upstream.py"
      base.tmp_root = (os.getenv("TMPDIR") or "/tmp") .. "/luagate-spec"
    end
  end
end

-- Kong's mock upstream constants (spec/internal/constants.lua)
helpers.mock_upstream_protocol = "http"
helpers.mock_upstream_host = "127.0.0.1"
helpers.mock_upstream_hostname = "localhost"
helpers.mock_upstream_port = 15555
helpers.mock_upstream_ssl_port = 15556
helpers.mock_upstream_url = "http://127.0.0.1:15555"
helpers.mock_upstream_ssl_url = "https://127.0.0.1:15556"
helpers.redis_host = os.getenv("KONG_SPEC_TEST_REDIS_HOST") or "127.0.0.1"
helpers.redis_port = tonumber(os.getenv("KONG_SPEC_TEST_REDIS_PORT") or 6379)

local MOCK_PORT = helpers.mock_upstream_port

local state = {
  config = nil,   -- declarative config the blueprints fill
  gw = nil,       -- the running luagate
  mock = nil,     -- the running mock upstream
  dirs = nil,     -- plugin directories found
}

helpers.test_conf = {
  prefix = base.tmp_root,
  database = "off",
  proxy_listeners = {},
}


---------------------------------------------------------------------------
-- ids and the accumulated config
---------------------------------------------------------------------------

math.randomseed(os.time() + math.floor(base.gettime() * 1000) % 100000)

local function uuid()
  local function hex(n)
    local t = {}
    for i = 1, n do
      t[i] = fmt("%x", random(0, 15))
    end
    return concat(t)
  end
  return fmt("%s-%s-4%s-%x%s-%s", hex(8), hex(4), hex(3), random(8, 11),
             hex(3), hex(12))
end
helpers.uuid = uuid

local function new_config()
  return { _format_version = "3.0" }
end

local function current_config()
  if not state.config then
    state.config = new_config()
  end
  return state.config
end


local function copy(v)
  if type(v) ~= "table" then
    return v
  end
  local t = {}
  for k, x in pairs(v) do
    t[k] = copy(x)
  end
  return setmetatable(t, getmetatable(v))
end


-- A reference `{ id = ... }` from an entity (or a reference) given to a
-- blueprint.
local function ref(v)
  if type(v) == "table" and v.id then
    return { id = v.id }
  end
  return v
end


---------------------------------------------------------------------------
-- blueprints
---------------------------------------------------------------------------

local Blueprint = {}
Blueprint.__index = Blueprint

-- kind: the declarative key; defaults(overrides, seq) -> table of defaults;
-- refs: fields that reference other entities.
local function blueprint(kind, defaults, refs)
  return setmetatable({ kind = kind, defaults = defaults, refs = refs or {},
                        seq = 0 }, Blueprint)
end


-- Inserts an entity built from the defaults and overrides; returns it
-- (with its id) as Kong's blueprints do.
function Blueprint:insert(overrides, options)
  overrides = overrides or {}
  self.seq = self.seq + 1
  local e = {}
  if self.defaults then
    for k, v in pairs(self.defaults(overrides, self.seq)) do
      e[k] = v
    end
  end
  for k, v in pairs(overrides) do
    e[k] = copy(v)
  end
  e.id = e.id or uuid()
  for _, f in ipairs(self.refs) do
    if e[f] ~= nil then
      e[f] = ref(e[f])
    end
  end
  local conf = current_config()
  local list = conf[self.kind]
  if not list then
    list = {}
    conf[self.kind] = list
  end
  list[#list + 1] = e
  return copy(e)
end


-- Inserts n entities; returns them as a list.
function Blueprint:insert_n(n, overrides, options)
  local res = {}
  for i = 1, n do
    res[i] = self:insert(overrides, options)
  end
  return res
end


-- Removes every entity of this kind from the accumulated config.
function Blueprint:truncate()
  current_config()[self.kind] = nil
  return true
end


local function plugin_blueprint(name)
  return blueprint("plugins", function(overrides)
    return { name = name, config = {} }
  end, { "route", "service", "consumer", "consumer_group" })
end


local function new_blueprints()
  local bp = {}
  bp.services = blueprint("services", function(overrides)
    if overrides.url then
      return {}
    end
    return {
      protocol = helpers.mock_upstream_protocol,
      host = helpers.mock_upstream_host,
      port = helpers.mock_upstream_port,
    }
  end, { "client_certificate" })

  bp.named_services = blueprint("services", function(overrides, seq)
    return {
      name = fmt("service-%d", seq),
      protocol = helpers.mock_upstream_protocol,
      host = helpers.mock_upstream_host,
      port = helpers.mock_upstream_port,
    }
  end)

  -- a route without a service gets a new default one, as in Kong
  bp.routes = blueprint("routes", function(overrides)
    if overrides.service ~= nil then
      return {}
    end
    return { service = bp.services:insert() }
  end, { "service" })

  bp.named_routes = blueprint("routes", function(overrides, seq)
    local r = { name = fmt("route-%d", seq) }
    if overrides.service == nil then
      r.service = bp.named_services:insert()
    end
    return r
  end, { "service" })

  bp.consumers = blueprint("consumers", function(overrides, seq)
    if overrides.username or overrides.custom_id then
      return {}
    end
    return { username = fmt("consumer-username-%d", seq) }
  end)

  bp.consumer_groups = blueprint("consumer_groups", function(_, seq)
    return { name = fmt("consumer-group-%d", seq) }
  end)

  bp.upstreams = blueprint("upstreams", function(_, seq)
    return { name = fmt("upstream-%d", seq) }
  end)

  bp.targets = blueprint("targets", function()
    return { weight = 100 }
  end, { "upstream" })

  bp.plugins = plugin_blueprint(nil)

  bp.keyauth_credentials = blueprint("keyauth_credentials", function()
    return { key = uuid():gsub("-", "") }
  end, { "consumer" })

  bp.basicauth_credentials = blueprint("basicauth_credentials", nil,
                                       { "consumer" })
  bp.hmacauth_credentials = blueprint("hmacauth_credentials", nil,
                                      { "consumer" })
  bp.jwt_secrets = blueprint("jwt_secrets", nil, { "consumer" })
  bp.acls = blueprint("acls", nil, { "consumer" })

  -- bp.key_auth_plugins, bp.rate_limiting_plugins... as in Kong
  for _, name in ipairs({ "key-auth", "basic-auth", "acl", "cors",
                          "rate-limiting", "response-ratelimiting",
                          "request-transformer", "response-transformer",
                          "request-termination", "ip-restriction",
                          "correlation-id", "file-log", "http-log",
                          "pre-function", "post-function", "jwt",
                          "hmac-auth", "prometheus", "proxy-cache" }) do
    bp[name:gsub("-", "_") .. "_plugins"] = plugin_blueprint(name)
  end
  return bp
end


-- A database stub: DB-less only. truncate() empties the accumulated
-- config; the entity DAOs are the blueprints' truncate().
local function new_db(bp)
  local db = {
    strategy = "off",
    truncate = function(_, kind)
      if kind then
        current_config()[kind] = nil
      else
        state.config = new_config()
      end
      return true
    end,
  }
  for k, b in pairs(bp) do
    db[k] = { truncate = function() return b:truncate() end }
  end
  return db
end


-- Kong's get_db_utils(strategy, tables, plugins): starts a new declarative
-- config and returns its blueprints and a db stub. `tables` and `plugins`
-- are accepted and not needed (no database).
function helpers.get_db_utils(strategy, tables, plugins)
  state.config = new_config()
  state.plugins_hint = plugins
  local bp = new_blueprints()
  return bp, new_db(bp)
end


-- Kong yields every database strategy; luagate is DB-less only.
function helpers.each_strategy()
  return ipairs({ "off" })
end
helpers.all_strategies = helpers.each_strategy


---------------------------------------------------------------------------
-- the mock upstream and port mapping
---------------------------------------------------------------------------

local function ensure_mock()
  if not state.mock then
    state.mock = base.mock_upstream()
  end
  return state.mock
end

-- The real port behind Kong's 15555 (starts the mock upstream if needed).
function helpers.mock_upstream_real_port()
  return ensure_mock().port
end


local MOCK_HOSTS = { ["127.0.0.1"] = true, localhost = true }

-- Rewrites Kong's mock upstream address (127.0.0.1:15555,
-- localhost:15555) to the real mock's port, in place, recursively.
local function map_mock(v, port)
  if type(v) ~= "table" then
    return
  end
  if MOCK_HOSTS[v.host] and tonumber(v.port) == MOCK_PORT then
    v.port = port
  end
  for k, x in pairs(v) do
    if type(x) == "string" then
      local s = x:gsub("(127%.0%.0%.1):15555", "%1:" .. port)
                 :gsub("(localhost):15555", "%1:" .. port)
      v[k] = s
    elseif type(x) == "table" then
      map_mock(x, port)
    end
  end
end


-- Writes the accumulated config (or `config`) to a file luagate reads and
-- returns its path; Kong's make_yaml_file (the file is JSON, which
-- luagate reads as well).
function helpers.make_yaml_file(config, path)
  local conf = copy(config or current_config())
  map_mock(conf, ensure_mock().port)
  path = path or (base.make_prefix("declarative") .. "/kong.json")
  base.write_file(path, base.json_encode(conf))
  return path
end


---------------------------------------------------------------------------
-- plugin directories
---------------------------------------------------------------------------

local function exists(path)
  local f = io.open(path, "r")
  if f then
    f:close()
    return true
  end
  return false
end


local function dirname(path)
  return path:match("^(.*)/[^/]*$") or "."
end


local function absolute(path)
  if path:sub(1, 1) == "/" then
    return path
  end
  local cwd = os.getenv("PWD") or "."
  return cwd .. "/" .. path
end


-- The directory luagate must be given for plugin `name` under `dir`, or
-- nil.
local function plugin_dir_in(dir, name)
  if exists(dir .. "/" .. name .. "/handler.lua") or
     exists(dir .. "/" .. name .. ".lua") then
    return dir
  end
  if exists(dir .. "/kong/plugins/" .. name .. "/handler.lua") then
    return dir .. "/kong/plugins"
  end
end


local function search_up(start, name)
  local dir = absolute(start)
  while true do
    local found = plugin_dir_in(dir, name)
    if found then
      return found
    end
    local parent = dirname(dir)
    if parent == dir or parent == "" then
      return nil
    end
    dir = parent
  end
end


-- Directories of the plugins named in a Kong `plugins` setting
-- ("bundled,myplugin" or a list): bundled ones are luagate's own.
local function find_plugin_dirs(plugins, spec_dir)
  local names = {}
  if type(plugins) == "string" then
    for n in plugins:gmatch("[^,%s]+") do
      names[#names + 1] = n
    end
  elseif type(plugins) == "table" then
    for _, n in ipairs(plugins) do
      names[#names + 1] = n
    end
  end
  for _, n in ipairs(state.plugins_hint or {}) do
    names[#names + 1] = n
  end
  local dirs, seen, missing, done = {}, {}, {}, {}
  for _, name in ipairs(names) do
    if not done[name] and name ~= "bundled" and name ~= "off" and
       not exists(base.root .. "/plugins/" .. name .. "/handler.lua") then
      done[name] = true
      local found = (spec_dir and search_up(spec_dir, name))
                    or search_up(".", name)
      if not found then
        for tmpl in package.path:gmatch("[^;]+") do
          local d = tmpl:match("^(.*)/%?%.lua$")
          if d then
            found = plugin_dir_in(absolute(d), name)
            if found then
              break
            end
          end
        end
      end
      -- last: luagate's own examples (examples/plugins/<name>)
      found = found or plugin_dir_in(base.root .. "/examples/plugins", name)
      if found and not seen[found] then
        seen[found] = true
        dirs[#dirs + 1] = found
      elseif not found then
        missing[#missing + 1] = name
      end
    end
  end
  return dirs, missing
end


-- The folder of the spec file that called into the helpers.
local function caller_spec_dir()
  for level = 3, 20 do
    local info = debug.getinfo(level, "S")
    if not info then
      break
    end
    local src = info.source or ""
    if src:sub(1, 1) == "@" and src:find("_spec%.lua$") then
      return dirname(src:sub(2))
    end
  end
end


-- `require "kong.plugins.<name>.<module>"` in the spec process (schema
-- specs load the plugin's schema.lua): a package searcher over the
-- directories find_plugin_dirs finds for <name>.
local function plugin_searcher(modname)
  local name, rest = modname:match("^kong%.plugins%.([^%.]+)%.?(.*)$")
  if not name then
    return nil
  end
  local dirs = find_plugin_dirs({ name }, caller_spec_dir())
  local tried = {}
  for _, dir in ipairs(dirs) do
    local candidates
    if rest == "" then
      candidates = { dir .. "/" .. name .. ".lua",
                     dir .. "/" .. name .. "/init.lua" }
    else
      candidates = { dir .. "/" .. name .. "/" .. rest:gsub("%.", "/") ..
                     ".lua" }
    end
    for _, path in ipairs(candidates) do
      if exists(path) then
        local chunk, err = loadfile(path)
        if not chunk then
          error("error loading module '" .. modname .. "' from file '" ..
                path .. "':\n\t" .. err, 0)
        end
        return chunk
      end
      tried[#tried + 1] = "\n\tno file '" .. path .. "'"
    end
  end
  return concat(tried)
end

do
  local loaders = package.loaders -- LuaJIT (Lua 5.1)
  table.insert(loaders, 2, plugin_searcher)
end


---------------------------------------------------------------------------
-- start / stop
---------------------------------------------------------------------------

-- Kong's start_kong(conf): starts luagate on the declarative config
-- (conf.declarative_config: a path, a Lua table, or nil for what the
-- blueprints accumulated) with the plugin directories of conf.plugins.
-- Also understood: plugins_dir (string or list), workers
-- (nginx_worker_processes), log_level, env. Returns true, or nil and the
-- error (with the gateway's logs).
function helpers.start_kong(conf)
  conf = conf or {}
  if state.gw then
    helpers.stop_kong()
  end
  local mock = ensure_mock()

  local config_path
  local decl = conf.declarative_config
  if type(decl) == "table" then
    config_path = helpers.make_yaml_file(decl)
  elseif type(decl) == "string" then
    local data = base.read_file(decl)
    if not data then
      return nil, "cannot read declarative_config " .. decl
    end
    local parsed = base.json_decode(data)
    if parsed then
      map_mock(parsed, mock.port)
      config_path = base.make_prefix("declarative") .. "/kong.json"
      base.write_file(config_path, base.json_encode(parsed))
    else
      -- YAML or Lua: only the 15555 strings are mapped
      local ext = decl:match("%.(%w+)$") or "yml"
      data = data:gsub("(127%.0%.0%.1):15555", "%1:" .. mock.port)
                 :gsub("(localhost):15555", "%1:" .. mock.port)
                 :gsub("(port:%s*)15555", "%1" .. mock.port)
      config_path = base.make_prefix("declarative") .. "/kong." .. ext
      base.write_file(config_path, data)
    end
  else
    config_path = helpers.make_yaml_file()
  end

  local dirs, missing = find_plugin_dirs(conf.plugins, caller_spec_dir())
  if #missing > 0 then
    return nil, "plugin(s) not found: " .. concat(missing, ", ") ..
                " (give start_kong a plugins_dir)"
  end
  local extra = conf.plugins_dir
  if type(extra) == "string" then
    extra = { extra }
  end
  for _, d in ipairs(extra or {}) do
    table.insert(dirs, 1, absolute(d))
  end
  state.dirs = dirs

  local args = {}
  for _, d in ipairs(dirs) do
    args[#args + 1] = "--plugins-dir"
    args[#args + 1] = d
  end
  local gw, err = base.start_luagate({
    config = config_path,
    args = args,
    workers = tonumber(conf.nginx_worker_processes or conf.workers) or 1,
    log_level = conf.log_level,
    env = conf.env,
  })
  if not gw then
    return nil, err
  end
  state.gw = gw
  return true
end


-- Kong's stop_kong(prefix, preserve_prefix, preserve_dc): stops luagate
-- and the mock upstream.
function helpers.stop_kong()
  if state.gw then
    base.stop_luagate(state.gw)
    state.gw = nil
  end
  if state.mock then
    state.mock.stop()
    state.mock = nil
  end
  return true
end


-- Kong's restart_kong(conf).
function helpers.restart_kong(conf)
  if state.gw then
    base.stop_luagate(state.gw)
    state.gw = nil
  end
  return helpers.start_kong(conf)
end


-- Kong's reload_kong: writes the accumulated config (or `config`) and
-- sends SIGHUP; waits for the new config.
function helpers.reload_kong(config)
  assert(state.gw, "start_kong() first")
  local conf = copy(config or current_config())
  map_mock(conf, ensure_mock().port)
  return base.reload_luagate(state.gw, conf)
end


-- The running gateway (spec/helpers.lua's gw table), for what Kong's
-- helpers have no name for.
function helpers.get_running_gateway()
  return state.gw
end


-- Kong's error log assertions read this file.
function helpers.get_error_log()
  return state.gw and state.gw.error_log
end


---------------------------------------------------------------------------
-- clients
---------------------------------------------------------------------------

local function url_encode(s)
  return (tostring(s):gsub("[^%w%-%._~]", function(c)
    return fmt("%%%02X", c:byte())
  end))
end


local function encode_query(q)
  local keys = {}
  for k in pairs(q) do keys[#keys + 1] = k end
  table.sort(keys)
  local parts = {}
  for _, k in ipairs(keys) do
    local v = q[k]
    if type(v) == "table" then
      for _, one in ipairs(v) do
        parts[#parts + 1] = url_encode(k) .. "=" .. url_encode(one)
      end
    elseif v == true then
      parts[#parts + 1] = url_encode(k)
    else
      parts[#parts + 1] = url_encode(k) .. "=" .. url_encode(v)
    end
  end
  return concat(parts, "&")
end


local function header_of(headers, name)
  for k, v in pairs(headers or {}) do
    if k:lower() == name then
      return v
    end
  end
end


-- Kong's client options: query (table), body (string or table encoded by
-- the Content-Type: JSON by default, form-urlencoded).
local function kong_opts(opts)
  local o = {}
  for k, v in pairs(opts or {}) do o[k] = v end
  o.headers = {}
  for k, v in pairs(opts and opts.headers or {}) do o.headers[k] = v end
  if type(o.query) == "table" then
    local q = encode_query(o.query)
    if q ~= "" then
      o.path = (o.path or "/") .. (o.path and o.path:find("?", 1, true) and
                                   "&" or "?") .. q
    end
  elseif type(o.query) == "string" and o.query ~= "" then
    o.path = (o.path or "/") .. "?" .. o.query
  end
  o.query = nil
  if type(o.body) == "table" then
    local ct = header_of(o.headers, "content-type")
    if ct and ct:find("application/x-www-form-urlencoded", 1, true) then
      o.body = encode_query(o.body)
    else
      if not ct then
        o.headers["Content-Type"] = "application/json"
      end
      o.body = base.json_encode(o.body)
    end
  end
  return o
end


local KongClient = {}
KongClient.__index = KongClient

function KongClient:send(opts)
  return self.client:send(kong_opts(opts))
end

for _, m in ipairs({ "get", "post", "put", "patch", "delete", "head",
                     "options" }) do
  KongClient[m] = function(self, path, opts)
    local o = {}
    for k, v in pairs(opts or {}) do o[k] = v end
    o.method = m:upper()
    o.path = path
    return self.client:send(kong_opts(o))
  end
end

-- Kong's client:request{ method, path, ... } (lua-resty-http's name)
KongClient.request = KongClient.send

function KongClient:close()
  return self.client:close()
end


local function wrap(client)
  return setmetatable({ client = client }, KongClient)
end


-- Kong's proxy_client(timeout): a client to the running gateway's proxy.
function helpers.proxy_client(timeout)
  assert(state.gw, "start_kong() first")
  return wrap(base.proxy_client(state.gw, timeout and timeout / 1000))
end


-- Kong's admin_client(timeout): a client to the running gateway's admin
-- API (luagate's admin API is read-only: /status and friends).
function helpers.admin_client(timeout)
  assert(state.gw, "start_kong() first")
  return wrap(assert(base.admin_client(state.gw, timeout and timeout / 1000)))
end


-- Kong's wait_for_all_config_update: DB-less, nothing to wait for beyond
-- reload_kong.
function helpers.wait_for_all_config_update()
  return true
end


---------------------------------------------------------------------------
-- plugin schema validation, in process
---------------------------------------------------------------------------

-- Kong's validate_plugin_config_schema(config, schema_def): validates a
-- plugin entity `{ config = config }` against a plugin schema (the table
-- schema.lua returns). Returns the entity with defaults filled, or nil and
-- Kong-shaped errors ({ config = { field = "message" } }).
function helpers.validate_plugin_config_schema(config, schema_def, extra)
  local Schema = require "luagate.schema"
  local fields = {}
  for _, item in ipairs(schema_def.fields or {}) do
    local name, f = next(item)
    if name ~= "consumer" and name ~= "route" and name ~= "service" and
       name ~= "consumer_group" then
      fields[#fields + 1] = { [name] = f }
    end
  end
  local s = Schema.new({
    name = schema_def.name,
    fields = fields,
    entity_checks = schema_def.entity_checks,
    shorthand_fields = schema_def.shorthand_fields,
    check = schema_def.check,
  })
  local entity = { config = config }
  for k, v in pairs(extra or {}) do entity[k] = v end
  return s:validate(entity)
end


return helpers
