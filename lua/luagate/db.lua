-- kong.db: Kong's DAO facade over the running declarative (DB-less)
-- configuration.
--
--   local db = require "luagate.db"
--   db.consumers:select({ id = id })          -> entity or nil
--   db.keyauth_credentials:select_by_key(k)   -> entity or nil
--   for row in db.acls:each_for_consumer({ id = id }) do ... end
--   db.consumers:cache_key(id)                -> "consumers:<id>:::::"
--
-- The config read is the one of the running request (request.cur.conf);
-- outside a request (init_worker, timers) the worker's current one, set by
-- luagate.runtime with `set_current(conf)` on each load. Entities are views
-- of the normalized config shaped as Kong's DAOs return them: foreign keys
-- as `{ id = ... }`, consumers without their credentials. They are built
-- once per config generation and kept in hash indexes (weak-keyed by the
-- config table), so every select is O(1); plugins must not modify them.
--
-- Loading this module also registers the credential entities of the
-- bundled auth plugins (keyauth_credentials, basicauth_credentials,
-- jwt_secrets, acls) with the config loader, so that they are validated
-- nested under consumers and at the top level. docs/consumers.md.

local ffi = require "ffi"
local request = require "luagate.request"
local config = require "luagate.config"
local typedefs = require "kong.db.schema.typedefs"
local slice_point = require("luagate.slice").point

local type = type
local pairs = pairs
local ipairs = ipairs
local error = error
local tostring = tostring
local tonumber = tonumber
local setmetatable = setmetatable
local fmt = string.format
local lower = string.lower
local floor = math.floor
local ceil = math.ceil
local open = io.open
local concat = table.concat

local codec
do
  local ok, m = pcall(require, "luagate.ngx.codec")
  if ok then
    codec = m
  end
end


local _M = {
  strategy = "off",
}


local MAX_PAGE_SIZE = 50000
local DEFAULT_PAGE_SIZE = 1000

-- fields the runloop injects into plugin configs (not part of the entity)
local INJECTED = {
  route_id = true, service_id = true, consumer_id = true,
  __plugin_id = true, plugin_instance_name = true, __key__ = true,
  __seq__ = true,
}


-- crypto helpers -------------------------------------------------------------

local crypto
do
  for _, decl in ipairs({
    "typedef struct bio_st BIO;",
    "typedef struct evp_pkey_st EVP_PKEY;",
    "BIO *BIO_new_mem_buf(const void *buf, int len);",
    "int BIO_free(BIO *a);",
    "EVP_PKEY *PEM_read_bio_PUBKEY(BIO *bp, EVP_PKEY **x, void *cb, void *u);",
    [[EVP_PKEY *PEM_read_bio_PrivateKey(BIO *bp, EVP_PKEY **x, void *cb,
                                        void *u);]],
    "void EVP_PKEY_free(EVP_PKEY *pkey);",
    "int RAND_bytes(unsigned char *buf, int num);",
    "void ERR_clear_error(void);",
  }) do
    pcall(ffi.cdef, decl)
  end
  local ok, lib = pcall(ffi.load, "crypto")
  if not ok then
    ok, lib = pcall(ffi.load, "libcrypto.so.3")
  end
  if ok then
    crypto = lib
  end
end


local HEX_DIGITS = "0123456789abcdef"

local function hex(bin)
  if codec then
    return codec.to_hex(bin)
  end
  local out = {}
  for i = 1, #bin do
    local b = bin:byte(i)
    out[i] = HEX_DIGITS:sub(floor(b / 16) + 1, floor(b / 16) + 1) ..
             HEX_DIGITS:sub(b % 16 + 1, b % 16 + 1)
  end
  return concat(out)
end


-- 16 random bytes as 32 hex digits (Kong's random_string for `auto`
-- string fields), from OpenSSL's CSPRNG or /dev/urandom.
local function random_hex()
  if crypto then
    local buf = ffi.new("unsigned char[16]")
    if crypto.RAND_bytes(buf, 16) == 1 then
      return hex(ffi.string(buf, 16))
    end
  end
  local f = open("/dev/urandom", "rb")
  if f then
    local bytes = f:read(16)
    f:close()
    if bytes and #bytes == 16 then
      return hex(bytes)
    end
  end
  error("no source of random bytes")
end
_M._random_hex = random_hex


-- Kong's basic-auth digest: sha1(password .. consumer_id), hex.
local function basicauth_hash(password, consumer_id)
  if not codec then
    error("luagate.ngx.codec is not available", 2)
  end
  return codec.to_hex(codec.sha1_bin((password or "") .. consumer_id))
end
_M.basicauth_hash = basicauth_hash


-- true when `s` is a PEM public (or private) key OpenSSL can read
local function valid_pem_key(s)
  if not crypto then
    return true -- no libcrypto: not checked
  end
  for _, reader in ipairs({ "PEM_read_bio_PUBKEY",
                            "PEM_read_bio_PrivateKey" }) do
    local bio = crypto.BIO_new_mem_buf(s, #s)
    if bio ~= nil then
      local key = crypto[reader](bio, nil, nil, nil)
      crypto.BIO_free(bio)
      if key ~= nil then
        crypto.EVP_PKEY_free(key)
        crypto.ERR_clear_error()
        return true
      end
    end
  end
  crypto.ERR_clear_error()
  return false
end


-- credential entity schemas (Kong 3.10's daos) -------------------------------

local JWT_ALGORITHMS = {
  "HS256", "HS384", "HS512", "RS256", "RS384", "RS512", "ES256", "ES384",
  "ES512", "PS256", "PS384", "PS512", "EdDSA",
}

local function validate_public_key(s)
  if valid_pem_key(s) then
    return true
  end
  return nil, "invalid key"
end

_M.SCHEMAS = {
  keyauth_credentials = {
    name = "keyauth_credentials",
    fields = {
      { id = typedefs.uuid },
      { created_at = typedefs.auto_timestamp_s },
      { key = { type = "string", required = false, unique = true,
                auto = true, referenceable = true } },
      { tags = typedefs.tags },
    },
  },
  basicauth_credentials = {
    name = "basicauth_credentials",
    fields = {
      { id = typedefs.uuid },
      { created_at = typedefs.auto_timestamp_s },
      { username = { type = "string", required = true, unique = true } },
      { password = { type = "string", required = true,
                     referenceable = true } },
      { tags = typedefs.tags },
    },
  },
  jwt_secrets = {
    name = "jwt_secrets",
    fields = {
      { id = typedefs.uuid },
      { created_at = typedefs.auto_timestamp_s },
      { key = { type = "string", required = false, unique = true,
                auto = true } },
      { secret = { type = "string", auto = true, referenceable = true } },
      { rsa_public_key = { type = "string" } },
      { algorithm = { type = "string", default = "HS256",
                      one_of = JWT_ALGORITHMS } },
      { tags = typedefs.tags },
    },
    entity_checks = {
      { conditional = {
          if_field = "algorithm",
          if_match = { match_any = { patterns = {
            "^RS256$", "^RS384$", "^RS512$", "^ES256$", "^ES384$", "^ES512$",
            "^PS256$", "^PS384$", "^PS512$", "^EdDSA$" } } },
          then_field = "rsa_public_key",
          then_match = { required = true,
                         custom_validator = validate_public_key },
      } },
    },
  },
  acls = {
    name = "acls",
    fields = {
      { id = typedefs.uuid },
      { created_at = typedefs.auto_timestamp_s },
      { group = { type = "string", required = true } },
      { tags = typedefs.tags },
    },
  },
}

-- natural keys: unique across the config, refused twice by the loader
local UNIQUE_KEY = {
  keyauth_credentials = "key",
  basicauth_credentials = "username",
  jwt_secrets = "key",
}

for _, name in ipairs({ "keyauth_credentials", "basicauth_credentials",
                        "jwt_secrets", "acls" }) do
  config.register_entity(name, _M.SCHEMAS[name], "consumers",
                         { key = UNIQUE_KEY[name] })
end


-- the config being served ---------------------------------------------------

local current_conf
local indexes = setmetatable({}, { __mode = "k" }) -- conf -> index

-- consumer view -> its 1-based index in conf.consumers; the runloop reads
-- it as `consumer.__index_in_conf` to find consumer-scoped plugins in O(1)
-- (a metatable field, so pairs/JSON do not show it)
local positions = setmetatable({}, { __mode = "k" })
local CONSUMER_MT = {
  __index = function(t, k)
    if k == "__index_in_conf" then
      return positions[t]
    end
    return nil
  end,
}


local function conf_now()
  local r = request.cur
  local conf = r and r.conf
  if conf then
    return conf
  end
  return current_conf
end


local function new_set()
  return { list = {}, by = { id = {} }, fk = {} }
end


local function add(set, v, unique_fields, fk_fields)
  local list = set.list
  list[#list + 1] = v
  local by = set.by
  if v.id ~= nil then
    by.id[v.id] = v
  end
  if unique_fields then
    for _, f in ipairs(unique_fields) do
      local x = v[f]
      if x ~= nil then
        local t = by[f]
        if not t then
          t = {}
          by[f] = t
        end
        if t[x] == nil then
          t[x] = v
        end
      end
    end
  end
  if fk_fields then
    for _, f in ipairs(fk_fields) do
      local ref = v[f]
      local id = type(ref) == "table" and ref.id or nil
      if id ~= nil then
        local t = set.fk[f]
        if not t then
          t = {}
          set.fk[f] = t
        end
        local l = t[id]
        if not l then
          l = {}
          t[id] = l
        end
        l[#l + 1] = v
      end
    end
  end
end


local function shallow_copy(t, skip)
  local out = {}
  for k, v in pairs(t) do
    if not (skip and skip[k]) and
       not (type(k) == "string" and k:sub(1, 1) == "_") then
      out[k] = v
    end
  end
  return out
end


local CREDENTIAL_KINDS = {
  "keyauth_credentials", "basicauth_credentials", "jwt_secrets", "acls",
  "hmacauth_credentials", "oauth2_credentials",
}

-- unique (select_by_*) fields of each DAO
local UNIQUE = {
  consumers = { "username", "custom_id" },
  consumer_groups = { "name" },
  keyauth_credentials = { "key" },
  basicauth_credentials = { "username" },
  jwt_secrets = { "key" },
  hmacauth_credentials = { "username" },
  oauth2_credentials = { "client_id" },
  routes = { "name" },
  services = { "name" },
  plugins = { "instance_name" },
}

-- foreign keys (each_for_* / page_for_*) of each DAO
local FOREIGN = {
  keyauth_credentials = { "consumer" },
  basicauth_credentials = { "consumer" },
  jwt_secrets = { "consumer" },
  acls = { "consumer" },
  hmacauth_credentials = { "consumer" },
  oauth2_credentials = { "consumer" },
  routes = { "service" },
  plugins = { "route", "service", "consumer", "consumer_group" },
}

-- Kong's cache_key field lists (primary key { "id" } when absent)
local CACHE_KEY = {
  keyauth_credentials = { "key" },
  basicauth_credentials = { "username" },
  jwt_secrets = { "key" },
  acls = { "consumer", "group" },
  hmacauth_credentials = { "username" },
  oauth2_credentials = { "client_id" },
  plugins = { "name", "route", "service", "consumer", "consumer_group" },
}


-- consumers and their credentials, in one pass over conf.consumers
local function build_consumers(conf, idx)
  local consumers = new_set()
  local by_lower = {}
  local group_names = {}
  local acl_groups = {}
  local creds = {}
  for _, kind in ipairs(CREDENTIAL_KINDS) do
    creds[kind] = new_set()
  end
  local transform = conf.transform ~= false
  local groups = conf.consumer_groups or {}

  for i, c in ipairs(conf.consumers or {}) do
    slice_point() -- (set_current builds it in a worker's sliced load)
    local cid = c.id
    local v = setmetatable({
      id = cid, username = c.username, custom_id = c.custom_id,
      tags = c.tags, created_at = c.created_at, updated_at = c.updated_at,
    }, CONSUMER_MT)
    positions[v] = i
    add(consumers, v, UNIQUE.consumers)
    if type(c.username) == "string" then
      local lu = lower(c.username)
      local l = by_lower[lu]
      if not l then
        l = {}
        by_lower[lu] = l
      end
      l[#l + 1] = v
    end

    if type(c.groups) == "table" and c.groups[1] ~= nil then
      local names = {}
      for _, gi in ipairs(c.groups) do
        local g = groups[gi]
        if g and g.name then
          names[#names + 1] = g.name
        end
      end
      group_names[cid] = names
    end

    local ref = { id = cid }
    for _, kind in ipairs(CREDENTIAL_KINDS) do
      local list = c[kind]
      if type(list) == "table" then
        for _, e in ipairs(list) do
          local cv = shallow_copy(e)
          cv.consumer = ref
          if kind == "keyauth_credentials" and cv.key == nil then
            cv.key = random_hex()
          elseif kind == "basicauth_credentials" and transform and
                 type(cv.password) == "string" then
            cv.password = basicauth_hash(cv.password, cid)
          elseif kind == "jwt_secrets" then
            if cv.key == nil then
              cv.key = random_hex()
            end
            if cv.secret == nil then
              cv.secret = random_hex()
            end
          elseif kind == "acls" and type(cv.group) == "string" then
            local g = acl_groups[cid]
            if not g then
              g = {}
              acl_groups[cid] = g
            end
            if g[cv.group] == nil then
              g[#g + 1] = cv.group
              g[cv.group] = cv.group
            end
          end
          add(creds[kind], cv, UNIQUE[kind], FOREIGN[kind])
        end
      end
    end
  end

  consumers.by_lower_username = by_lower
  idx.consumers = consumers
  idx.consumer_group_names = group_names
  idx.acl_groups = acl_groups
  for kind, set in pairs(creds) do
    idx[kind] = set
  end
end


local function ref_of(list, i)
  local e = i and list and list[i]
  return e and { id = e.id } or nil
end


local BUILDERS = {}

BUILDERS.consumers = build_consumers
for _, kind in ipairs(CREDENTIAL_KINDS) do
  BUILDERS[kind] = build_consumers
end

BUILDERS.consumer_groups = function(conf, idx)
  local set = new_set()
  for _, g in ipairs(conf.consumer_groups or {}) do
    add(set, { id = g.id, name = g.name, tags = g.tags,
               created_at = g.created_at }, UNIQUE.consumer_groups)
  end
  idx.consumer_groups = set
end

BUILDERS.ca_certificates = function(conf, idx)
  local set = new_set()
  for _, c in ipairs(conf.ca_certificates or {}) do
    add(set, shallow_copy(c))
  end
  idx.ca_certificates = set
end

BUILDERS.services = function(conf, idx)
  local set = new_set()
  for _, s in ipairs(conf.services or {}) do
    add(set, shallow_copy(s), UNIQUE.services)
  end
  idx.services = set
end

local ROUTE_SKIP = { phases = true }

BUILDERS.routes = function(conf, idx)
  local set = new_set()
  for _, r in ipairs(conf.routes or {}) do
    local v = shallow_copy(r, ROUTE_SKIP)
    v.service = ref_of(conf.services, r.service)
    add(set, v, UNIQUE.routes, FOREIGN.routes)
  end
  idx.routes = set
end

BUILDERS.plugins = function(conf, idx)
  local set = new_set()
  for _, p in ipairs(conf.plugins or {}) do
    local v = shallow_copy(p)
    if type(p.config) == "table" then
      v.config = shallow_copy(p.config, INJECTED)
    end
    v.route = ref_of(conf.routes, p.route)
    v.service = ref_of(conf.services, p.service)
    v.consumer = ref_of(conf.consumers, p.consumer)
    v.consumer_group = ref_of(conf.consumer_groups, p.consumer_group)
    add(set, v, UNIQUE.plugins, FOREIGN.plugins)
  end
  idx.plugins = set
end


local EMPTY_SET = { list = {}, by = { id = {} }, fk = {} }

-- The index of DAO `name` for `conf`, built on first use.
local function data(name, conf)
  conf = conf or conf_now()
  if not conf then
    return EMPTY_SET
  end
  local idx = indexes[conf]
  if not idx then
    idx = {}
    indexes[conf] = idx
  end
  local set = idx[name]
  if set == nil then
    BUILDERS[name](conf, idx)
    set = idx[name]
  end
  return set
end


-- Makes `conf` the config outside requests (init_worker, timers) and builds
-- its consumer and credential indexes now, off the first request's time.
function _M.set_current(conf)
  current_conf = conf
  if conf then
    data("consumers", conf)
  end
end


-- The config kong.db reads now (the request's, or the current one).
function _M.current()
  return conf_now()
end


-- Names of the consumer groups consumer `id` belongs to (array), or nil.
-- luagate's own helper (the acl plugin's include_consumer_groups).
function _M.consumer_group_names(consumer_id, conf)
  conf = conf or conf_now()
  local _ = data("consumers", conf)
  local idx = indexes[conf]
  return idx and idx.consumer_group_names[consumer_id] or nil
end


-- The groups of consumer `id`'s acls, built when the config is indexed:
-- names in config order (array part), each indexed by itself (hash part),
-- as Kong's acl plugin keeps them; nil when it has none. Do not modify.
function _M.acl_groups(consumer_id, conf)
  conf = conf or conf_now()
  local _ = data("consumers", conf)
  local idx = indexes[conf]
  return idx and idx.acl_groups[consumer_id] or nil
end


-- DAO -------------------------------------------------------------------------

local DAO = {}
DAO.__index = DAO


local function check_size(size, level)
  if size == nil then
    return DEFAULT_PAGE_SIZE
  end
  if type(size) ~= "number" then
    error("size must be a number", level + 1)
  end
  if size ~= floor(size) or size < 1 or size > MAX_PAGE_SIZE then
    return nil, "size must be an integer between 1 and " .. MAX_PAGE_SIZE
  end
  return size
end


local function iterate(list, size)
  local i = 0
  return function()
    i = i + 1
    local v = list[i]
    if v == nil then
      return nil
    end
    return v, nil, ceil(i / size)
  end
end


local function page_of(list, size, offset)
  local first = 1
  if offset ~= nil then
    if type(offset) ~= "string" then
      error("offset must be a string", 3)
    end
    first = tonumber(offset)
    if not first or first ~= floor(first) or first < 1 then
      return nil, fmt("'%s' is not a valid offset", offset)
    end
  end
  local rows = {}
  local last = first + size - 1
  for i = first, last do
    local v = list[i]
    if v == nil then
      break
    end
    rows[#rows + 1] = v
  end
  local next_offset
  if list[last + 1] ~= nil then
    next_offset = tostring(last + 1)
  end
  return rows, nil, nil, next_offset
end


function DAO:select(pk)
  if type(pk) ~= "table" then
    error("primary_key must be a table", 2)
  end
  local id = pk.id
  if type(id) ~= "string" then
    return nil, "invalid primary key: 'id' must be a string"
  end
  return data(self._name).by.id[id]
end


function DAO:each(size)
  local n, err = check_size(size, 2)
  if not n then
    return nil, err
  end
  return iterate(data(self._name).list, n)
end


function DAO:page(size, offset)
  local n, err = check_size(size, 2)
  if not n then
    return nil, err
  end
  return page_of(data(self._name).list, n, offset)
end


function DAO:count()
  return #data(self._name).list
end


-- Kong's DAO:cache_key: "<name>:<k1>:<k2>:<k3>:<k4>:<k5>:<ws_id>" from the
-- arguments, or from the cache_key (else primary key) fields of an entity
-- table (foreign fields by id). There are no workspaces: ws_id is "".
function DAO:cache_key(key, arg2, arg3, arg4, arg5)
  if type(key) == "string" or type(key) == "number" then
    return fmt("%s:%s:%s:%s:%s:%s:", self._name, tostring(key),
               arg2 == nil and "" or tostring(arg2),
               arg3 == nil and "" or tostring(arg3),
               arg4 == nil and "" or tostring(arg4),
               arg5 == nil and "" or tostring(arg5))
  end
  if type(key) ~= "table" then
    error("key must be a string or an entity table", 2)
  end
  local values = { self._name }
  for _, f in ipairs(CACHE_KEY[self._name] or { "id" }) do
    local v = key[f]
    if type(v) == "table" then
      v = v.id
    end
    values[#values + 1] = v == nil and "" or tostring(v)
  end
  for i = #values + 1, 6 do
    values[i] = ""
  end
  values[7] = ""
  return concat(values, ":")
end


local function read_only(self)
  return nil, fmt("cannot modify '%s' entities: the configuration is " ..
                  "declarative (DB-less)", self._name)
end

for _, m in ipairs({ "insert", "update", "upsert", "delete", "truncate" }) do
  DAO[m] = read_only
end


local function new_dao(name)
  local cache_key = CACHE_KEY[name]
  local dao = setmetatable({
    _name = name,
    schema = {
      name = name,
      primary_key = { "id" },
      cache_key = cache_key,
      endpoint_key = UNIQUE_KEY[name] or (UNIQUE[name] or {})[1],
    },
  }, DAO)

  for _, f in ipairs(UNIQUE[name] or {}) do
    dao["select_by_" .. f] = function(self, value)
      if type(value) ~= "string" then
        error(f .. " must be a string", 2)
      end
      local t = data(self._name).by[f]
      return t and t[value] or nil
    end
    for _, m in ipairs({ "update_by_", "upsert_by_", "delete_by_" }) do
      dao[m .. f] = read_only
    end
  end

  for _, f in ipairs(FOREIGN[name] or {}) do
    local function rows_for(self, fk, level)
      if type(fk) ~= "table" then
        error(f .. " must be a table", level + 1)
      end
      local t = data(self._name).fk[f]
      return t and fk.id ~= nil and t[fk.id] or EMPTY_SET.list
    end
    dao["each_for_" .. f] = function(self, fk, size)
      local rows = rows_for(self, fk, 2)
      local n, err = check_size(size, 2)
      if not n then
        return nil, err
      end
      return iterate(rows, n)
    end
    dao["page_for_" .. f] = function(self, fk, size, offset)
      local rows = rows_for(self, fk, 2)
      local n, err = check_size(size, 2)
      if not n then
        return nil, err
      end
      return page_of(rows, n, offset)
    end
  end

  if name == "consumers" then
    -- Kong 3.x: every consumer whose username matches case-insensitively
    function dao:select_by_username_ignore_case(username)
      if type(username) ~= "string" then
        error("username must be a string", 2)
      end
      local set = data("consumers")
      return set.by_lower_username and
             set.by_lower_username[lower(username)] or {}
    end
  end

  return dao
end


for name in pairs(BUILDERS) do
  _M[name] = new_dao(name)
end


return _M
