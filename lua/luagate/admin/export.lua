-- The running configuration as the Admin API shows it: Kong-shaped entity
-- views (foreign keys as `{ id = ... }`, timestamps), the declarative
-- document GET /config returns, secrets redacted, and a JSON encoder that
-- keeps arrays arrays (Debian's cjson has no array marker).
--
--   local export = require "luagate.admin.export"
--   export.entities(conf, "routes", t)  -> array of route views
--   export.document(conf)               -> declarative table, redacted
--   export.encode(v)                    -> JSON text
--
-- The redaction rule (docs/admin-api.md):
--   * credentials (every entity kind nested under consumers) and
--     certificates: any field whose name contains "key", "secret",
--     "password" or "token";
--   * plugin configs, at any depth: string (or string array) fields whose
--     name contains "password", "secret" or "token", or is "key", ends in
--     "_key" or contains "apikey"/"api_key";
-- a redacted value becomes the string "<redacted>".

local type = type
local setmetatable = setmetatable
local getmetatable = getmetatable
local tonumber = tonumber
local pairs = pairs
local ipairs = ipairs
local next = next
local tostring = tostring
local sort = table.sort
local concat = table.concat
local find = string.find
local lower = string.lower
local sub = string.sub
local fmt = string.format
local gsub = string.gsub
local byte = string.byte
local floor = math.floor
local huge = math.huge

local cjson = require "cjson.safe"

local NULL = cjson.null

local _M = {}

_M.REDACTED = "<redacted>"
_M.NULL = NULL

-- arrays built here carry this metatable, so that empty ones stay []
local ARRAY_MT = { __name = "array" }
local OBJECT_MT = { __name = "object" }
_M.ARRAY_MT = ARRAY_MT
_M.OBJECT_MT = OBJECT_MT

local function array(t)
  return setmetatable(t or {}, ARRAY_MT)
end
_M.array = array

local function object(t)
  return setmetatable(t or {}, OBJECT_MT)
end
_M.object = object


-- JSON -------------------------------------------------------------------

local ESC = {
  ['"'] = '\\"', ["\\"] = "\\\\", ["\b"] = "\\b", ["\f"] = "\\f",
  ["\n"] = "\\n", ["\r"] = "\\r", ["\t"] = "\\t",
}

local function esc_char(c)
  return ESC[c] or fmt("\\u%04x", byte(c))
end

local function is_seq(t)
  local n = 0
  for k in pairs(t) do
    if type(k) ~= "number" or k < 1 or k ~= floor(k) then
      return false
    end
    n = n + 1
  end
  return n == #t
end

local function enc(v, out)
  local tv = type(v)
  if v == nil or v == NULL then
    out[#out + 1] = "null"
  elseif tv == "boolean" then
    out[#out + 1] = v and "true" or "false"
  elseif tv == "number" then
    if v ~= v or v == huge or v == -huge then
      out[#out + 1] = "null"
    elseif v == floor(v) and v > -1e15 and v < 1e15 then
      out[#out + 1] = fmt("%d", v)
    else
      out[#out + 1] = fmt("%.14g", v)
    end
  elseif tv == "string" then
    out[#out + 1] = '"' .. gsub(v, '[%c"\\]', esc_char) .. '"'
  elseif tv == "table" then
    local mt = getmetatable(v)
    if mt ~= OBJECT_MT and (mt == ARRAY_MT or (next(v) == nil) or
                            is_seq(v)) then
      out[#out + 1] = "["
      for i = 1, #v do
        if i > 1 then
          out[#out + 1] = ","
        end
        enc(v[i], out)
      end
      out[#out + 1] = "]"
    else
      local keys = {}
      for k in pairs(v) do
        keys[#keys + 1] = tostring(k)
      end
      sort(keys)
      out[#out + 1] = "{"
      for i, k in ipairs(keys) do
        if i > 1 then
          out[#out + 1] = ","
        end
        enc(k, out)
        out[#out + 1] = ":"
        local x = v[k]
        if x == nil then
          x = v[tonumber(k)]
        end
        enc(x, out)
      end
      out[#out + 1] = "}"
    end
  else
    out[#out + 1] = "null"
  end
end

-- Encodes v as JSON: object keys sorted, empty tables as [] unless made
-- with object(), arrays made with array() always [].
function _M.encode(v)
  local out = {}
  enc(v, out)
  return concat(out)
end


-- redaction ----------------------------------------------------------------

local function secret_name(name, strict)
  name = lower(tostring(name))
  if find(name, "password", 1, true) or find(name, "secret", 1, true) or
     find(name, "token", 1, true) then
    return true
  end
  if strict then
    return find(name, "key", 1, true) ~= nil
  end
  return name == "key" or sub(name, -4) == "_key" or
         find(name, "apikey", 1, true) ~= nil or
         find(name, "api_key", 1, true) ~= nil
end
_M.secret_name = secret_name

local function redact_value(v)
  if type(v) == "string" then
    return _M.REDACTED
  elseif type(v) == "table" and v ~= NULL then
    local allstr = next(v) ~= nil
    for _, x in pairs(v) do
      if type(x) ~= "string" then
        allstr = false
      end
    end
    if allstr then
      local out = array()
      for i = 1, #v do
        out[i] = _M.REDACTED
      end
      return out
    end
  end
  return v
end

-- Plugin config fields, at any depth (a copy).
local function redact_config(t)
  if type(t) ~= "table" or t == NULL then
    return t
  end
  local out = {}
  for k, v in pairs(t) do
    if type(k) == "string" and secret_name(k, false) then
      out[k] = redact_value(v)
    elseif type(v) == "table" then
      out[k] = redact_config(v)
    else
      out[k] = v
    end
  end
  return setmetatable(out, getmetatable(t))
end
_M.redact_config = redact_config

-- Credential and certificate fields (first level, in place on a copy).
local function redact_entity(e)
  for k, v in pairs(e) do
    if k ~= "id" and type(k) == "string" and secret_name(k, true) and
       (type(v) == "string" or type(v) == "table") then
      e[k] = redact_value(v)
    end
  end
  return e
end
_M.redact_entity = redact_entity


-- entity views ---------------------------------------------------------------

-- fields the runloop injects into plugin configs (not part of the entity)
local INJECTED = {
  route_id = true, service_id = true, consumer_id = true,
  __plugin_id = true, plugin_instance_name = true, __key__ = true,
  __seq__ = true,
}

local SKIP = {
  routes = { phases = true },
  upstreams = { targets = true },
  consumers = { groups = true },
  certificates = { snis = true },
}

local function copy(t, skip)
  local out = {}
  for k, v in pairs(t) do
    if not (skip and skip[k]) and
       not (type(k) == "string" and sub(k, 1, 1) == "_") then
      out[k] = v
    end
  end
  return out
end

local function ref(list, i)
  local e = type(i) == "number" and list and list[i]
  return e and { id = e.id } or NULL
end

local CREDENTIAL_KINDS = {
  "keyauth_credentials", "basicauth_credentials", "jwt_secrets", "acls",
  "hmacauth_credentials", "oauth2_credentials",
}
_M.CREDENTIAL_KINDS = CREDENTIAL_KINDS

-- Kong-shaped views of kind `kind` ("services", "routes", "consumers",
-- "plugins", "upstreams", "targets", "consumer_groups", a credential
-- kind), with created_at/updated_at = t (the load time). Credentials and
-- plugin configs are redacted.
function _M.entities(conf, kind, t)
  local out = array()
  local function stamp(e)
    if t then
      e.created_at = e.created_at or t
      e.updated_at = e.updated_at or t
    end
    return e
  end
  if kind == "targets" then
    for _, u in ipairs(conf.upstreams or {}) do
      for _, tg in ipairs(u.targets or {}) do
        local v = copy(tg)
        v.upstream = { id = u.id }
        out[#out + 1] = stamp(v)
      end
    end
    return out
  end
  for _, ck in ipairs(CREDENTIAL_KINDS) do
    if ck == kind then
      for _, c in ipairs(conf.consumers or {}) do
        for _, e in ipairs(c[kind] or {}) do
          local v = redact_entity(copy(e))
          v.consumer = { id = c.id }
          out[#out + 1] = stamp(v)
        end
      end
      return out
    end
  end
  for _, e in ipairs(conf[kind] or {}) do
    local v = copy(e, SKIP[kind])
    if kind == "consumers" then
      for _, ck in ipairs(CREDENTIAL_KINDS) do
        v[ck] = nil
      end
    elseif kind == "routes" then
      v.service = ref(conf.services, e.service)
    elseif kind == "plugins" then
      v.config = redact_config(copy(e.config or {}, INJECTED))
      v.route = ref(conf.routes, e.route)
      v.service = ref(conf.services, e.service)
      v.consumer = ref(conf.consumers, e.consumer)
      v.consumer_group = ref(conf.consumer_groups, e.consumer_group)
    elseif kind == "certificates" then
      redact_entity(v)
    elseif kind == "snis" then
      v.certificate = ref(conf.certificates, e.certificate)
    end
    out[#out + 1] = stamp(v)
  end
  return out
end


-- drops null references (a declarative document leaves them out)
local function no_nulls(e)
  for k, v in pairs(e) do
    if v == NULL then
      e[k] = nil
    end
  end
  return e
end

-- The running configuration as a declarative document (Kong's 3.0
-- format, flat entities referring to each other by id; credentials nested
-- in their consumer, targets in their upstream), redacted.
function _M.document(conf)
  local doc = object({ _format_version = "3.0" })
  if conf.transform == false then
    doc._transform = false
  end
  if type(conf.luagate) == "table" and next(conf.luagate) then
    doc._luagate = conf.luagate
  end
  for _, kind in ipairs({ "certificates", "snis", "ca_certificates",
                          "services", "routes", "consumer_groups",
                          "plugins" }) do
    local list = _M.entities(conf, kind)
    for _, e in ipairs(list) do
      no_nulls(e)
    end
    if #list > 0 then
      doc[kind] = list
    end
  end
  local consumers = _M.entities(conf, "consumers")
  local groups = conf.consumer_groups or {}
  for i, v in ipairs(consumers) do
    local c = conf.consumers[i]
    for _, ck in ipairs(CREDENTIAL_KINDS) do
      if type(c[ck]) == "table" and c[ck][1] ~= nil then
        local list = array()
        for _, e in ipairs(c[ck]) do
          list[#list + 1] = redact_entity(copy(e))
        end
        v[ck] = list
      end
    end
    if type(c.groups) == "table" and c.groups[1] ~= nil then
      local names = array()
      for _, gi in ipairs(c.groups) do
        if groups[gi] then
          names[#names + 1] = { name = groups[gi].name }
        end
      end
      v.groups = names
    end
  end
  if #consumers > 0 then
    doc.consumers = consumers
  end
  local ups = _M.entities(conf, "upstreams")
  for i, v in ipairs(ups) do
    local tl = array()
    for _, tg in ipairs(conf.upstreams[i].targets or {}) do
      local x = copy(tg)
      x.upstream = nil
      tl[#tl + 1] = x
    end
    if #tl > 0 then
      v.targets = tl
    end
  end
  if #ups > 0 then
    doc.upstreams = ups
  end
  return doc
end


return _M
