-- The `kong` table (Kong's PDK) of a worker.
--
--   local new_kong = require "luagate.pdk"
--   _G.kong = new_kong()          -- once per worker, before plugins load
--
-- Modules: request, response, service (+ .request, .response), client,
-- ctx, log, router, node, ip, table, nginx, plugin, cache, core_cache,
-- configuration, version, version_num. Every function that needs a request
-- reads luagate.request.cur and checks its phase first (see
-- luagate.pdk.private). docs/pdk.md lists each function and its status.

local ffi = require "ffi"
local gw = require "luagate.ffi"
local request = require "luagate.request"
local private = require "luagate.pdk.private"
local log_mod = require "luagate.pdk.log"
local cache_mod = require "luagate.pdk.cache"

local type = type
local ipairs = ipairs
local pcall = pcall
local rawget = rawget
local tonumber = tonumber
local collectgarbage = collectgarbage
local io_open = io.open
local bit = require "bit"
local error = error
local pairs = pairs
local tostring = tostring
local setmetatable = setmetatable
local fmt = string.format
local random = math.random
local floor = math.floor
local ffi_string = ffi.string
local ffi_new = ffi.new

local C = gw.C
local str_p, len_p, int_p = gw.str_p, gw.len_p, gw.int_p

local check = private.check
local PHASES = private.PHASES

local ok_new_tab, new_tab = pcall(require, "table.new")
if not ok_new_tab then
  new_tab = function() return {} end
end
local ok_clear_tab, clear_tab = pcall(require, "table.clear")
if not ok_clear_tab then
  clear_tab = function(t)
    for k in pairs(t) do
      t[k] = nil
    end
  end
end


local KONG_VERSION = "3.10.0"
local KONG_VERSION_NUM = 3010000


-- kong.client -----------------------------------------------------------------

-- consumers index per config table: conf -> { id = {}, username = {} }
local consumer_index = setmetatable({}, { __mode = "k" })

local function consumers_of(conf)
  local idx = consumer_index[conf]
  if idx then
    return idx
  end
  idx = { id = {}, username = {} }
  for _, c in ipairs(conf.consumers or {}) do
    if c.id then
      idx.id[c.id] = c
    end
    if c.username then
      idx.username[c.username] = c
    end
  end
  consumer_index[conf] = idx
  return idx
end


local function client_address(r)
  if C.gw_ffi_req_client(r.ptr, str_p, len_p, int_p) == gw.OK then
    return ffi_string(str_p[0], len_p[0]), int_p[0]
  end
  return nil, nil
end


-- --metrics-consumers on: the consumer's name goes to the request metrics
local metrics_consumers = gw.available and C.gw_ffi_metrics_consumers() == 1


local function new_client()
  local client = {}
  local REQUEST = PHASES.request
  local ACCESS_AND_AFTER = PHASES.access_and_after

  function client.get_ip()
    local ip = client_address(check(REQUEST))
    return ip
  end

  -- no trusted_ips: the forwarded address is the peer's
  function client.get_forwarded_ip()
    local ip = client_address(check(REQUEST))
    return ip
  end

  function client.get_port()
    local _, port = client_address(check(REQUEST))
    return port
  end

  function client.get_forwarded_port()
    local _, port = client_address(check(REQUEST))
    return port
  end

  function client.get_credential()
    return check(ACCESS_AND_AFTER).credential
  end

  function client.get_consumer()
    return check(ACCESS_AND_AFTER).consumer
  end

  function client.authenticate(consumer, credential)
    local r = check(PHASES.access)
    if consumer ~= nil and type(consumer) ~= "table" then
      error("consumer must be a table or nil", 2)
    end
    if credential ~= nil and type(credential) ~= "table" then
      error("credential must be a table or nil", 2)
    end
    if consumer == nil and credential == nil then
      error("either credential or consumer must be provided", 2)
    end
    r.consumer = consumer
    r.credential = credential
    -- the runtime hashes on it (upstreams' hash_on = consumer) and logs it
    local id = consumer and (consumer.id or consumer.username)
    if gw.available then
      if type(id) == "string" then
        C.gw_ffi_req_set_consumer(r.ptr, id, #id)
      else
        C.gw_ffi_req_set_consumer(r.ptr, nil, 0)
      end
      if metrics_consumers then
        local name = consumer and (consumer.username or consumer.custom_id or
                                   consumer.id)
        C.gw_ffi_req_set_consumer_name(r.ptr, name, type(name) == "string"
                                                    and #name or 0)
      end
    end
    -- ngx.ctx only when it exists: reading r.ctx would make one for every
    -- request (runloop's lazy_mt), which copies r.consumer and
    -- r.credential into it when it is made later
    local ctx = rawget(r, "ctx")
    if ctx then
      ctx.authenticated_consumer = consumer
      ctx.authenticated_credential = credential
    end
  end

  function client.load_consumer(consumer_id, search_by_username)
    local r = check(ACCESS_AND_AFTER)
    if type(consumer_id) ~= "string" then
      error("consumer_id must be a string", 2)
    end
    local conf = r.conf
    if not conf then
      return nil
    end
    local idx = consumers_of(conf)
    local c = idx.id[consumer_id]
    if not c and search_by_username then
      c = idx.username[consumer_id]
    end
    -- Kong's entity: no credentials in it (kong.db's view)
    local ok, db = pcall(require, "luagate.db")
    if c and ok and db.consumers then
      return db.consumers:select({ id = c.id }) or c
    end
    return c
  end

  function client.get_protocol(allow_terminated)
    local r = check(ACCESS_AND_AFTER)
    -- Kong: a route with a single protocol gives it ("grpc", "grpcs"...)
    local route = r.route
    local protocols = route and route.protocols
    if type(protocols) == "table" and #protocols == 1 then
      return protocols[1]
    end
    return C.gw_ffi_req_tls(r.ptr) == 1 and "https" or "http"
  end

  client.tls = require("luagate.pdk.tls").new(check)

  return client
end


-- kong.ctx ------------------------------------------------------------------

local function current()
  local r = request.cur
  if not r then
    error("no request found", 3)
  end
  return r
end


local function shared_table(r)
  local t = r.shared
  if t == nil then
    t = {}
    r.shared = t
  end
  return t
end


local function plugin_table(r)
  local all = r.plugin_ctx
  if all == nil then
    all = {}
    r.plugin_ctx = all
  end
  local name = r.plugin or ""
  local t = all[name]
  if t == nil then
    t = {}
    all[name] = t
  end
  return t
end


-- kong.ctx.shared / kong.ctx.plugin resolve to the running request's own
-- tables on each access (as Kong's resolve through ngx.ctx), so plugins get
-- plain tables: pairs, #, next and rawget work on them.
local function new_ctx()
  return setmetatable({}, {
    __index = function(_, k)
      if k == "shared" then
        return shared_table(current())
      elseif k == "plugin" then
        return plugin_table(current())
      end
      return nil
    end,
    __newindex = function()
      error("kong.ctx is read-only", 2)
    end,
  })
end


-- kong.node -----------------------------------------------------------------

-- random bytes from the kernel (getrandom), so that ids differ between
-- workers and starts; math.random only if that fails
pcall(ffi.cdef, "long getrandom(void *buf, size_t buflen, unsigned int flags);")
local rand_buf = ffi_new("uint8_t[16]")

local function uuid()
  local b = {}
  local ok, n = pcall(C.getrandom, rand_buf, 16, 0)
  if ok and n == 16 then
    for i = 1, 16 do
      b[i] = rand_buf[i - 1]
    end
  else
    for i = 1, 16 do
      b[i] = random(0, 255)
    end
  end
  b[7] = bit.bor(bit.band(b[7], 0x0f), 0x40)
  b[9] = bit.bor(bit.band(b[9], 0x3f), 0x80)
  return fmt("%02x%02x%02x%02x-%02x%02x-%02x%02x-%02x%02x-" ..
             "%02x%02x%02x%02x%02x%02x", b[1], b[2], b[3], b[4], b[5],
             b[6], b[7], b[8], b[9], b[10], b[11], b[12], b[13], b[14],
             b[15], b[16])
end
private.uuid = uuid


local function hostname()
  local buf = ffi_new("char[256]")
  local ok, rc = pcall(C.gethostname, buf, 256)
  if ok and rc == 0 then
    return ffi_string(buf)
  end
  local f = io_open("/proc/sys/kernel/hostname")
  if f then
    local h = f:read("*l")
    f:close()
    return h
  end
  return "localhost"
end


local function worker_pid()
  if gw.available then
    return C.gw_ffi_worker_pid()
  end
  local ok, pid = pcall(C.getpid)
  return ok and pid or 0
end


local UNITS = { b = 1, k = 1024, m = 1024 * 1024, g = 1024 * 1024 * 1024 }

local function new_node(shared)
  local node = {}
  local node_id

  function node.get_id()
    if node_id then
      return node_id
    end
    -- one id for all the workers when a "kong" dictionary exists
    local dict = shared and shared.kong
    if dict then
      local id = dict:get("node_id")
      if not id then
        id = uuid()
        local ok = dict:add("node_id", id)
        if not ok then
          id = dict:get("node_id") or id
        end
      end
      node_id = id
    else
      node_id = uuid()
    end
    return node_id
  end

  function node.get_hostname()
    return hostname()
  end

  function node.get_memory_stats(unit, scale)
    unit = unit or "b"
    if type(unit) ~= "string" or not UNITS[unit:lower()] then
      error("invalid unit '" .. tostring(unit) ..
            "' (expected 'k/K', 'm/M', or 'g/G')", 2)
    end
    scale = scale or 2
    if type(scale) ~= "number" or scale < 0 then
      error("scale must be equal or greater than 0", 2)
    end
    local div = UNITS[unit:lower()]
    local function conv(bytes)
      if div == 1 then
        return bytes
      end
      local m = 10 ^ scale
      return fmt("%s %s", floor(bytes / div * m + 0.5) / m,
                 unit:upper() .. "iB")
    end
    return {
      lua_shared_dicts = {},
      workers_lua_vms = {
        {
          http_allocated_gc = conv(floor(collectgarbage("count") * 1024)),
          pid = worker_pid(),
        },
      },
    }
  end

  return node
end


-- kong.table ----------------------------------------------------------------

local function new_table_module()
  local t = {}
  t.new = new_tab
  t.clear = clear_tab
  function t.merge(t1, t2)
    local res = {}
    if t1 then
      for k, v in pairs(t1) do
        res[k] = v
      end
    end
    if t2 then
      for k, v in pairs(t2) do
        res[k] = v
      end
    end
    return res
  end
  return t
end


-- kong ----------------------------------------------------------------------

local function shared_dicts()
  local ok, shdict = pcall(require, "luagate.shdict")
  if ok and type(shdict) == "table" then
    return shdict
  end
  return nil
end


local function now()
  if gw.available then
    return C.gw_ffi_now()
  end
  return os.time()
end


local _M = {}


function _M.new()
  local kong = {
    version = KONG_VERSION,
    version_num = KONG_VERSION_NUM,
  }

  local settings = rawget(_G, "LUAGATE_SETTINGS")
  kong.configuration = private.read_only(type(settings) == "table" and
                                         settings or {})

  kong.request = require "luagate.pdk.request"
  kong.response = require "luagate.pdk.response"
  kong.service = require "luagate.pdk.service"
  kong.client = new_client()
  kong.ctx = new_ctx()
  kong.log = log_mod.new()
  kong.log.serialize = log_mod.make_serialize(kong)
  kong.response.log = kong.log

  -- Kong's entity shapes: the normalized config links by index and carries
  -- runtime fields (phases); plugins get a copy with `service = { id }`.
  local public = setmetatable({}, { __mode = "k" })
  local function public_route(r)
    local route = r.route
    if not route then
      return nil
    end
    local p = public[route]
    if not p then
      p = {}
      for k, v in pairs(route) do
        if k ~= "phases" and k ~= "service" then
          p[k] = v
        end
      end
      local svc = r.service
      p.service = svc and { id = svc.id } or nil
      public[route] = p
    end
    return p
  end

  kong.router = {
    get_route = function()
      return public_route(check(PHASES.access_and_after))
    end,
    get_service = function()
      return check(PHASES.access_and_after).service
    end,
  }

  local shared = shared_dicts()
  kong.node = new_node(shared)

  kong.ip = {
    is_trusted = function(address)
      return false
    end,
  }

  kong.table = new_table_module()

  kong.nginx = {
    get_subsystem = function()
      return "http"
    end,
    get_statistics = function()
      return {
        connections_active = 0, connections_reading = 0,
        connections_writing = 0, connections_waiting = 0,
        connections_accepted = 0, connections_handled = 0,
        total_requests = 0,
      }
    end,
  }

  kong.plugin = require "luagate.pdk.plugin"

  local dict = shared and shared.kong_db_cache
  local core_dict = shared and shared.kong_core_db_cache or dict
  local cache_ttl = type(settings) == "table" and
                    tonumber(settings.db_cache_ttl) or 0
  local cache_neg_ttl = type(settings) == "table" and
                        tonumber(settings.db_cache_neg_ttl) or cache_ttl
  kong.cache = cache_mod.new({
    name = "kong_db_cache", dict = dict, ttl = cache_ttl,
    neg_ttl = cache_neg_ttl, now = now,
  })
  kong.core_cache = cache_mod.new({
    name = "kong_core_db_cache", dict = core_dict, ttl = cache_ttl,
    neg_ttl = cache_neg_ttl, now = now,
  })
  kong.db = require "luagate.db"
  -- events between this node's workers (lua/kong/worker_events.lua)
  local ok_we, we = pcall(require, "kong.worker_events")
  if ok_we then
    kong.worker_events = we
  end
  local ok_ce, ce = pcall(require, "kong.cluster_events")
  if ok_ce then
    kong.cluster_events = ce
  end

  return kong
end


return setmetatable(_M, {
  __call = function(_, ...)
    return _M.new(...)
  end,
})
