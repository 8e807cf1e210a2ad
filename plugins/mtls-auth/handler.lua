-- mtls-auth: authenticates the client certificate sent in the TLS
-- handshake against the plugin's CA certificates and maps it to a consumer
-- (Kong Enterprise 3.10's behaviour). docs/plugins/mtls-auth.md
--
-- The handshake asks for a certificate whenever the config holds an
-- mtls-auth plugin and accepts any (runtime/src/tls.c); this handler
-- verifies it per request with kong.client.tls, so a bad certificate gets
-- an HTTP 401 rather than a handshake alert.
local auth = require "luagate.auth"
local db = require "luagate.db"

local kong = kong
local ngx = ngx
local ipairs = ipairs
local tostring = tostring
local setmetatable = setmetatable
local concat = table.concat
local find = string.find

local ERR_NO_CERT = "No required TLS certificate was sent"
local ERR_FAILED = "TLS certificate failed verification"
local ERR_NO_CN = "Certificate missing Common Name"
local ERR_UNEXPECTED = "An unexpected error occurred"

-- OpenSSL's verification errors that leave the revocation status unknown
-- (no CRL for the issuer, or one that cannot be used): IGNORE_CA_ERROR
-- then verifies without the CRL check
local UNKNOWN_STATUS = {
  ["unable to get certificate CRL"] = true,
  ["unable to get CRL issuer certificate"] = true,
  ["CRL has expired"] = true,
  ["CRL is not yet valid"] = true,
  ["CRL signature failure"] = true,
  ["unable to decrypt CRL's signature"] = true,
}

-- Kong sets no verify depth (OpenSSL's default, 100); nine intermediate
-- CAs between the leaf and its trust anchor are plenty
local VERIFY_DEPTH = 9

local EMPTY = {}

local MtlsAuthHandler = {
  PRIORITY = 1600,
  VERSION = "3.10.0",
}


-- What is built once per plugin instance (conf tables are stable for a
-- config generation): the trust store of its CA certificates (with the
-- CRLs their PEM holds), the verify flags and the error tables.
local prepared = setmetatable({}, { __mode = "k" })

local function prepare(conf)
  local p = prepared[conf]
  if p then
    return p
  end
  local tls = kong.client.tls
  p = {
    no_cert = auth.failure(401, ERR_NO_CERT),
    failed = auth.failure(401, ERR_FAILED),
    no_cn = auth.failure(401, ERR_NO_CN),
    unexpected = auth.failure(500, ERR_UNEXPECTED),
    flags = conf.allow_partial_chain and tls.PARTIAL_CHAIN or 0,
  }
  local pems = {}
  local has_crl = false
  for i, id in ipairs(conf.ca_certificates or EMPTY) do
    local ca = db.ca_certificates:select({ id = id })
    if not ca then
      -- the config loader refuses unknown ids: not expected
      p.err = "CA Certificate '" .. tostring(id) .. "' does not exist"
      break
    end
    pems[i] = ca.cert
    if find(ca.cert, "-----BEGIN X509 CRL-----", 1, true) then
      has_crl = true
    end
  end
  if not p.err then
    local store, err = tls.new_trust_store(concat(pems, "\n"))
    if store then
      p.store = store
    else
      p.err = "could not build the trust store: " .. tostring(err)
    end
  end
  p.has_crl = has_crl
  prepared[conf] = p
  return p
end


-- Verifies the client certificate per revocation_check_mode: true, or
-- nil and OpenSSL's reason.
local function verify(conf, p)
  local tls = kong.client.tls
  local mode = conf.revocation_check_mode
  if mode == "SKIP" or (mode == "IGNORE_CA_ERROR" and not p.has_crl) then
    return tls.verify_client_certificate(p.store, VERIFY_DEPTH, p.flags)
  end
  local ok, reason = tls.verify_client_certificate(p.store, VERIFY_DEPTH,
                                                   p.flags + tls.CRL_LEAF)
  if not ok and mode == "IGNORE_CA_ERROR" and UNKNOWN_STATUS[reason] then
    kong.log.info("client certificate revocation not checked (",
                  reason, "), ignored as revocation_check_mode is ",
                  "IGNORE_CA_ERROR")
    return tls.verify_client_certificate(p.store, VERIFY_DEPTH, p.flags)
  end
  return ok, reason
end


-- The certificate's names in Kong's order of lookup: the subject
-- alternative names (DNS, email, URI, IP), then the subject's CN.
local function subject_names(cert)
  local names = {}
  local san = cert.san or EMPTY
  for _, kind in ipairs({ "dns", "email", "uri", "ip" }) do
    for _, v in ipairs(san[kind] or EMPTY) do
      names[#names + 1] = v
    end
  end
  if cert.cn then
    names[#names + 1] = cert.cn
  end
  return names
end


local function find_consumer(names, consumer_by)
  local consumers = db.consumers
  for _, name in ipairs(names) do
    for _, field in ipairs(consumer_by) do
      local consumer
      if field == "username" then
        consumer = consumers:select_by_username(name)
      elseif field == "custom_id" then
        consumer = consumers:select_by_custom_id(name)
      end
      if consumer then
        return consumer
      end
    end
  end
  return nil
end


-- skip_consumer_lookup: the authenticated group (ngx.ctx, as Kong, for
-- acl) and the certificate's identity upstream.
local function skip_lookup(conf, cert, names)
  local by = conf.authenticated_group_by
  local group
  if by == "CN" then
    if not cert.cn then
      kong.log.info("client certificate has no CN for ",
                    "authenticated_group_by CN")
      return nil, ERR_NO_CN
    end
    group = cert.cn
  elseif by == "DN" then
    group = cert.subject_dn
  end
  if group then
    -- luacheck: push ignore 122
    ngx.ctx.authenticated_groups = { group }
    -- luacheck: pop
  end
  local set_header = kong.service.request.set_header
  set_header("X-Client-Cert-DN", cert.subject_dn)
  if names[1] then
    set_header("X-Client-Cert-SAN", concat(names, ","))
  end
  return true
end


local function do_authentication(conf)
  local p = prepare(conf)
  if p.err then
    kong.log.err(p.err)
    return nil, p.unexpected
  end
  local tls = kong.client.tls

  local cert = tls.get_client_certificate()
  if not cert then
    tls.set_client_verify("NONE")
    return nil, p.no_cert
  end

  local ok, reason = verify(conf, p)
  if not ok then
    if reason == "no certificate" then
      tls.set_client_verify("NONE")
      return nil, p.no_cert
    end
    kong.log.info("client certificate verify failed: ", reason)
    tls.set_client_verify("FAILED:" .. reason)
    return nil, p.failed
  end

  local names = subject_names(cert)

  if conf.skip_consumer_lookup then
    local err
    ok, err = skip_lookup(conf, cert, names)
    if not ok then
      tls.set_client_verify("FAILED:" .. err)
      return nil, p.no_cn
    end
    tls.set_client_verify("SUCCESS")
    return true
  end

  local consumer = find_consumer(names, conf.consumer_by or EMPTY)
  if not consumer and conf.default_consumer then
    consumer = auth.anonymous_consumer(conf.default_consumer)
    if not consumer then
      kong.log.err("default consumer ", conf.default_consumer,
                   " is configured but doesn't exist")
      return nil, p.unexpected
    end
  end
  if not consumer then
    kong.log.info("certificate is valid but consumer matching failed, ",
                  "using names = ", concat(names, ", "), " fields = ",
                  concat(conf.consumer_by or EMPTY, ", "))
    tls.set_client_verify("FAILED:consumer not found")
    return nil, p.failed
  end

  -- Kong's credential is the consumer's id; no X-Credential-Identifier
  auth.set_consumer(consumer, { id = consumer.id }, false)
  tls.set_client_verify("SUCCESS")
  return true
end


-- At each config load, with the configs of every mtls-auth instance:
-- build their trust stores now rather than on their first request.
function MtlsAuthHandler:configure(configs)
  for _, conf in ipairs(configs or EMPTY) do
    prepare(conf)
  end
end


function MtlsAuthHandler:access(conf)
  return auth.access(conf, do_authentication)
end


return MtlsAuthHandler
