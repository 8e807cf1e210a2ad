-- What Kong's authentication plugins share: setting the authenticated
-- consumer and the X-Consumer-* upstream headers, the `anonymous` logic
-- (several auth plugins as a logical OR), and constant-time comparison.
--
--   local auth = require "luagate.auth"
--
--   function Handler:access(conf)
--     return auth.access(conf, do_authentication)
--   end
--
-- `do_authentication(conf)` returns true once it called
-- auth.set_consumer(consumer, credential), or nil and an error table
-- { status = 401, message = "...", www_authenticate = "..." } (make them
-- once with auth.failure). docs/consumers.md.

local request = require "luagate.request"
local db = require "luagate.db"

local type = type
local byte = string.byte
local lower = string.lower
local find = string.find
local gsub = string.gsub
local char = string.char
local concat = table.concat
local setmetatable = setmetatable
local bit = require "bit"
local bor = bit.bor
local bxor = bit.bxor

local _M = {}


-- kong/constants.lua HEADERS
local HEADERS = {
  CONSUMER_ID = "X-Consumer-ID",
  CONSUMER_CUSTOM_ID = "X-Consumer-Custom-ID",
  CONSUMER_USERNAME = "X-Consumer-Username",
  CREDENTIAL_IDENTIFIER = "X-Credential-Identifier",
  ANONYMOUS = "X-Anonymous-Consumer",
  CONSUMER_GROUPS = "X-Consumer-Groups",
  AUTHENTICATED_GROUPS = "X-Authenticated-Groups",
}
_M.HEADERS = HEADERS


-- `kong` is the worker's global, made by luagate.boot before plugins load
local kong_ref

local function K()
  local k = kong_ref
  if not k then
    k = _G.kong
    kong_ref = k
  end
  return k
end


-- The upstream header ops of set_consumer for one consumer, credential
-- and identifier, prepared for gw_ffi_upstream_set_hops (one FFI call
-- instead of five kong.service.request calls, the names and values checked
-- once, not on every request): made once per credential (per consumer
-- without one) of a config. nil when a value is not a string
-- (set_consumer's own calls convert or refuse it then).
local packs = setmetatable({}, { __mode = "k" })
local pk -- { C, OK, err_p, SET, CLEAR, hops }, resolved on first use

local PACKED_NAMES = {
  HEADERS.CONSUMER_ID, HEADERS.CONSUMER_CUSTOM_ID, HEADERS.CONSUMER_USERNAME,
  HEADERS.CREDENTIAL_IDENTIFIER, HEADERS.ANONYMOUS,
}

local function pack_of(consumer, credential, identifier)
  local key = credential or consumer
  local p = packs[key]
  if p and p.consumer == consumer and p.credential == credential and
     p.identifier == identifier then
    return p
  end
  if not pk then
    local gw = require "luagate.ffi"
    pk = { C = gw.C, OK = gw.OK, err_p = gw.err_p,
           SET = char(48 + gw.HDR_SET), CLEAR = char(48 + gw.HDR_CLEAR),
           hops = require("luagate.pdk.private").hops }
  end
  local values = {
    consumer and consumer.id,
    consumer and consumer.custom_id,
    consumer and consumer.username,
    credential and identifier ~= false and (identifier or credential.id) or
      nil,
    not credential and "true" or nil,
  }
  local parts = {}
  for i = 1, 5 do
    local name, v = PACKED_NAMES[i], values[i]
    if v == nil or v == false then
      parts[i] = pk.CLEAR .. name .. "\0\0"
    elseif type(v) == "string" then
      -- set_header sends an empty value as " " (Kong)
      parts[i] = pk.SET .. name .. "\0" .. (v == "" and " " or v) .. "\0"
    else
      return nil
    end
  end
  p = {
    consumer = consumer, credential = credential, identifier = identifier,
    -- nil when the runtime refused a value (CR or LF)
    hops = pk.hops(concat(parts)),
  }
  packs[key] = p
  return p
end


-- Kong's set_consumer of its auth plugins: authenticates the request
-- (kong.client.authenticate) and sets or clears the upstream headers
-- X-Consumer-ID, X-Consumer-Custom-ID, X-Consumer-Username,
-- X-Credential-Identifier (`identifier`, by default credential.id; false:
-- none, as mtls-auth) and X-Anonymous-Consumer ("true" when there is no
-- credential). The headers go in one call (pack_of); when the runtime
-- refuses one (CR or LF in a value), they are set one by one, which
-- raises Kong's error.
function _M.set_consumer(consumer, credential, identifier)
  local kong = K()
  kong.client.authenticate(consumer, credential)

  local p = pack_of(consumer, credential, identifier)
  local hops = p and p.hops
  if hops and pk.C.gw_ffi_upstream_set_hops(request.cur.ptr, hops, nil,
                                            pk.err_p) == pk.OK then
    return
  end

  local sreq = kong.service.request
  local set_header = sreq.set_header
  local clear_header = sreq.clear_header

  local v = consumer and consumer.id
  if v then
    set_header(HEADERS.CONSUMER_ID, v)
  else
    clear_header(HEADERS.CONSUMER_ID)
  end

  v = consumer and consumer.custom_id
  if v then
    set_header(HEADERS.CONSUMER_CUSTOM_ID, v)
  else
    clear_header(HEADERS.CONSUMER_CUSTOM_ID)
  end

  v = consumer and consumer.username
  if v then
    set_header(HEADERS.CONSUMER_USERNAME, v)
  else
    clear_header(HEADERS.CONSUMER_USERNAME)
  end

  if credential and identifier ~= false then
    v = identifier or credential.id
  else
    v = nil
  end
  if v then
    set_header(HEADERS.CREDENTIAL_IDENTIFIER, v)
  else
    clear_header(HEADERS.CREDENTIAL_IDENTIFIER)
  end

  if credential then
    clear_header(HEADERS.ANONYMOUS)
  else
    set_header(HEADERS.ANONYMOUS, true)
  end
end


-- The consumer `anonymous` names (id, else username), as
-- kong.client.load_consumer(anonymous, true) finds it; nil when none.
function _M.anonymous_consumer(anonymous)
  local consumers = db.consumers
  return consumers:select({ id = anonymous }) or
         consumers:select_by_username(anonymous)
end


-- An error table for auth.access (build them once, not per request):
-- status, message and the WWW-Authenticate value (or nil).
function _M.failure(status, message, www_authenticate)
  return {
    status = status,
    message = message,
    www_authenticate = www_authenticate,
  }
end


local function anonymous_fallback(anonymous)
  local kong = K()
  local consumer = _M.anonymous_consumer(anonymous)
  if not consumer then
    kong.log.err("anonymous consumer ", anonymous, " is configured but ",
                 "doesn't exist")
    return kong.response.error(500)
  end
  return _M.set_consumer(consumer, nil)
end


-- The access phase of an auth plugin. Without conf.anonymous (logical
-- AND) a failure of `authenticate(conf)` ends the request with its error.
-- With conf.anonymous (logical OR): nothing is done when an earlier plugin
-- already authenticated a credential; a failure makes the anonymous
-- consumer the request's consumer (500 when it does not exist).
function _M.access(conf, authenticate)
  local anonymous = conf.anonymous
  if anonymous then
    if K().client.get_credential() then
      return
    end
    if authenticate(conf) then
      return
    end
    return anonymous_fallback(anonymous)
  end
  local ok, err = authenticate(conf)
  if not ok then
    -- a new headers table each time: kong.response.error adds to it
    local www = err.www_authenticate
    return K().response.error(err.status, err.message,
                              www and { ["WWW-Authenticate"] = www } or nil)
  end
end


-- Compares two strings in a time that depends only on the length of `b`
-- (the expected secret), not on where they differ. false for non-strings.
function _M.constant_time_eq(a, b)
  if type(a) ~= "string" or type(b) ~= "string" then
    return false
  end
  local la, lb = #a, #b
  local diff = la == lb and 0 or 1
  for i = 1, lb do
    -- bytes of `a` past its end compare as 0 (diff is already set then)
    diff = bor(diff, bxor(byte(a, i) or 0, byte(b, i)))
  end
  return diff == 0
end


-- "X_Api_Key" -> "x-api-key" (how the runtime matches header names)
local function normalize(name)
  name = lower(name)
  if find(name, "_", 1, true) then
    name = gsub(name, "_", "-")
  end
  return name
end
_M.normalize_header_name = normalize


-- The value of client request header `name` (already normalized with
-- normalize_header_name): a string, an array of strings when the header is
-- repeated, or nil. Reads the request through the FFI without building the
-- whole headers table (access phase only).
local header_value, C -- resolved on first use (they need the runtime)
function _M.request_header(name)
  local r = request.cur
  if not r or not r.ptr then
    error("no request found", 2)
  end
  if not C then
    header_value = require("luagate.pdk.private").header_value
    C = require("luagate.ffi").C
  end
  -- not a tail call: a trace returning to a lower frame right after an
  -- FFI call aborts ("NYI: return to lower frame")
  local v = header_value(r.ptr, C.gw_ffi_req_header, name, true)
  return v
end


return _M
