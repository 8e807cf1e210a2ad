-- kong.client.tls: the TLS connection of the current request and the
-- certificate the client sent (C side: runtime/src/tls.c).
--
-- Kong's functions, plus two of ours that mtls-auth is built on:
--   get_client_certificate()  the client certificate's fields, a table:
--       subject_dn, issuer_dn (RFC 2253), cn (first CN), cns, san = { dns,
--       email, uri, ip } (lists), serial (hex), fingerprint (SHA-256 hex),
--       not_before, not_after (epoch seconds); nil when none was sent
--   verify_client_certificate(store, depth, flags)  verifies it against a
--       trust store made by new_trust_store(pem): true, or nil and the
--       reason ("no certificate" when the client sent none)
-- Client certificates are asked for during the handshake when the config
-- holds an mtls-auth plugin (there is no `certificate` phase: see
-- request_client_certificate).

local ffi = require "ffi"
local gw = require "luagate.ffi"
local private = require "luagate.pdk.private"

local C = gw.C
local OK, DECLINED = gw.OK, gw.DECLINED
local str_p, len_p, err_p = gw.str_p, gw.len_p, gw.err_p
local ffi_string = ffi.string
local ffi_gc = ffi.gc
local gmatch = string.gmatch

local _M = {}


function _M.var(r, which)
  if C.gw_ffi_tls_var(r.ptr, which, str_p, len_p) == OK then
    return ffi_string(str_p[0], len_p[0])
  end
  return nil
end


function _M.client_chain(r)
  if C.gw_ffi_tls_client_chain(r.ptr, str_p, len_p) == OK then
    return ffi_string(str_p[0], len_p[0])
  end
  return nil
end


local INT_FIELDS = { not_before = true, not_after = true }
local SAN = { san_dns = "dns", san_email = "email", san_uri = "uri",
              san_ip = "ip" }

-- parsed once per request (r is the request's state table)
function _M.client_info(r)
  if r.tls_client_info ~= nil then
    return r.tls_client_info or nil
  end
  local info = false
  if C.gw_ffi_tls_client_info(r.ptr, str_p, len_p) == OK then
    info = { cns = {}, san = { dns = {}, email = {}, uri = {}, ip = {} } }
    for k, v in gmatch(ffi_string(str_p[0], len_p[0]), "([%w_]+)=([^\n]*)\n") do
      if k == "cn" then
        info.cns[#info.cns + 1] = v
        info.cn = info.cn or v
      elseif SAN[k] then
        local list = info.san[SAN[k]]
        list[#list + 1] = v
      elseif INT_FIELDS[k] then
        info[k] = tonumber(v)
      else
        info[k] = v
      end
    end
  end
  r.tls_client_info = info
  return info or nil
end


-- A trust store from PEM text (CA certificates, optionally CRLs); freed by
-- the garbage collector. Returns the store, or nil and an error.
function _M.new_trust_store(pem)
  if type(pem) ~= "string" or pem == "" then
    return nil, "no CA certificate in the PEM text"
  end
  local st = C.gw_ffi_tls_store_new(pem, #pem, err_p)
  if st == nil then
    return nil, ffi_string(err_p[0])
  end
  return ffi_gc(st, C.gw_ffi_tls_store_free)
end


_M.CRL_LEAF, _M.CRL_CHAIN, _M.PARTIAL_CHAIN = 1, 2, 4


function _M.new(check)
  local REQUEST = private.PHASES.request
  local tls = {}

  function tls.get_full_client_certificate_chain()
    local r = check(REQUEST)
    if C.gw_ffi_req_tls(r.ptr) ~= 1 then
      return nil, "connection is not TLS"
    end
    return _M.client_chain(r)
  end

  function tls.get_client_certificate()
    return _M.client_info(check(REQUEST))
  end

  function tls.verify_client_certificate(store, depth, flags)
    local r = check(REQUEST)
    if store == nil then
      error("store required (kong.client.tls.new_trust_store)", 2)
    end
    local rc = C.gw_ffi_tls_verify_client(r.ptr, store, tonumber(depth) or 1,
                                          tonumber(flags) or 0, err_p)
    if rc == OK then
      return true
    elseif rc == DECLINED then
      return nil, "no certificate"
    end
    return nil, ffi_string(err_p[0])
  end

  tls.new_trust_store = _M.new_trust_store
  tls.CRL_LEAF, tls.CRL_CHAIN, tls.PARTIAL_CHAIN =
    _M.CRL_LEAF, _M.CRL_CHAIN, _M.PARTIAL_CHAIN

  -- Kong's value for ngx.var.ssl_client_verify, kept per request
  function tls.set_client_verify(v)
    local r = check(REQUEST)
    if v ~= "SUCCESS" and v ~= "NONE" and (type(v) ~= "string" or
                                           not v:find("^FAILED:")) then
      error("unknown client verify value: " .. tostring(v) ..
            " accepted values are: 'SUCCESS', 'NONE' or 'FAILED:<reason>'", 2)
    end
    r.tls_client_verify = v
  end

  -- Kong calls these in its `certificate` phase, which luagate does not
  -- have: the handshake asks for a certificate when an mtls-auth plugin is
  -- configured, and sessions are resumed by tickets.
  function tls.request_client_certificate()
    return nil, "luagate has no certificate phase: client certificates are " ..
                "asked for when the configuration holds an mtls-auth plugin"
  end

  function tls.disable_session_reuse()
    return nil, "luagate has no certificate phase"
  end

  return tls
end

return _M
