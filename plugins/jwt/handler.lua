-- jwt: authenticates requests that carry a JSON Web Token (RFC 7519),
-- with Kong 3.10's contract (docs/plugins/jwt.md):
--   * the token comes from the query (uri_param_names), cookies
--     (cookie_names) or headers (header_names, `Bearer <token>`); two
--     different tokens are refused;
--   * its key claim (key_claim_name, in the claims then the header) names a
--     consumer's jwt_secrets credential, whose `algorithm` the token's `alg`
--     must equal (so `alg: none` and algorithm confusion are refused);
--   * the signature, then `exp`/`nbf` (claims_to_verify) and
--     maximum_expiration are checked;
--   * the consumer is authenticated (X-Consumer-* upstream headers) and the
--     token stored in kong.ctx.shared.authenticated_jwt_token;
--   * with `anonymous`, a failure authenticates the anonymous consumer.
-- luagate's additions: `secrets` and `jwks_urls` verify tokens that belong
-- to no consumer; `claims_to_headers` copies claims upstream.

local jwt_decoder = require "kong.plugins.jwt.jwt_parser"
local jwks = require "kong.plugins.jwt.jwks"
local auth = require "luagate.auth"
local cjson = require "cjson.safe"

local kong = kong
local ngx = ngx
local type = type
local ipairs = ipairs
local pairs = pairs
local next = next
local tostring = tostring
local setmetatable = setmetatable
local error = error
local find = string.find
local match = string.match
local sub = string.sub
local fmt = string.format
local floor = math.floor
local sort = table.sort
local concat = table.concat
local json_encode = cjson.encode
local load_public_key = jwt_decoder.load_public_key


local JwtHandler = {
  PRIORITY = 1450,
  VERSION = "3.10.0",
}


local WWW_AUTHENTICATE = "WWW-Authenticate"

local MSG_UNAUTHORIZED = "Unauthorized"
local MSG_MULTIPLE_TOKENS = "Multiple tokens provided"
local MSG_UNRECOGNIZABLE = "Unrecognizable token"
local MSG_BAD_TOKEN = "Bad token; "
local MSG_INVALID_ALGORITHM = "Invalid algorithm"
local MSG_INVALID_KEY = "Invalid key/secret"
local MSG_INVALID_SIGNATURE = "Invalid signature"
local MSG_NO_KID_CREDENTIALS = "No credentials found for given 'kid'"

local BODY_UNAUTHORIZED = { message = MSG_UNAUTHORIZED }
local BODY_MULTIPLE_TOKENS = { message = MSG_MULTIPLE_TOKENS }
local BODY_UNRECOGNIZABLE = { message = MSG_UNRECOGNIZABLE }
local BODY_INVALID_ALGORITHM = { message = MSG_INVALID_ALGORITHM }
local BODY_INVALID_KEY = { message = MSG_INVALID_KEY }
local BODY_INVALID_SIGNATURE = { message = MSG_INVALID_SIGNATURE }
local BODY_NO_KID_CREDENTIALS = { message = MSG_NO_KID_CREDENTIALS }

-- a second, different token was found
local MULTIPLE = setmetatable({}, { __tostring = function()
  return "multiple tokens"
end })


-- Per-config data, built on first use and kept as long as the config
-- (weak keys: a reload brings new conf tables).
local prepared = setmetatable({}, { __mode = "k" })

local function prepare(conf)
  local p = prepared[conf]
  if p then
    return p
  end
  local base = conf.realm and fmt('Bearer realm="%s"', conf.realm) or "Bearer"
  local kc = conf.key_claim_name
  p = {
    headers_base = { [WWW_AUTHENTICATE] = base },
    headers_error = { [WWW_AUTHENTICATE] = base .. ' error="invalid_token"' },
    body_no_claim = { message = "No mandatory '" .. kc .. "' in claims" },
    body_invalid_claim = { message = "Invalid '" .. kc .. "' in claims" },
    body_no_credentials = {
      message = "No credentials found for given '" .. kc .. "'",
    },
    cookie_vars = {},
    claim_headers = {},
    secrets = {},
    jwks = type(conf.jwks_urls) == "table" and #conf.jwks_urls > 0,
  }
  for i, name in ipairs(conf.cookie_names or {}) do
    p.cookie_vars[i] = "cookie_" .. name
  end
  for claim, header in pairs(conf.claims_to_headers or {}) do
    p.claim_headers[#p.claim_headers + 1] = {
      claim = claim,
      header = header,
      body_invalid = { message = "Invalid '" .. claim .. "' in claims" },
    }
  end
  sort(p.claim_headers, function(a, b) return a.claim < b.claim end)
  for i, s in ipairs(conf.secrets or {}) do
    local alg = s.algorithm or "HS256"
    local key = s.secret
    if sub(alg, 1, 2) ~= "HS" then
      key = load_public_key(s.public_key) -- checked by the schema
    end
    if key then
      p.secrets[#p.secrets + 1] = {
        alg = alg,
        key = key,
        credential = { secrets_index = i, algorithm = alg },
      }
    end
  end
  p.service_keys = p.jwks or #p.secrets > 0
  prepared[conf] = p
  return p
end


-- Credentials ---------------------------------------------------------------

-- The jwt_secrets credential of `key` (kong.db: luagate.db's view of the
-- declarative config, O(1)) and its consumer; nil when none.
local function find_credential(key)
  local db = kong.db
  local cred, err = db.jwt_secrets:select_by_key(key)
  if err then
    error("could not load jwt credential: " .. tostring(err))
  end
  if not cred then
    return nil
  end
  local ref = cred.consumer
  local consumer = type(ref) == "table" and ref.id and
                   db.consumers:select({ id = ref.id })
  return cred, consumer or nil
end


-- Tokens --------------------------------------------------------------------

local function add_token(cur, t)
  if t == nil or t == "" then
    return cur
  end
  if cur == nil or cur == t then
    return t
  end
  return MULTIPLE
end


-- The token of the request: a string, nil (none), MULTIPLE (two different
-- ones), or another value (`?jwt` without a value).
local function retrieve_token(conf, p)
  local token
  local names = conf.uri_param_names
  if names and #names > 0 then
    local raw = kong.request.get_raw_query()
    if raw ~= "" then
      local args
      for _, name in ipairs(names) do
        if find(raw, name, 1, true) then
          args = args or kong.request.get_query()
          local v = args[name]
          if type(v) == "table" then
            for _, t in ipairs(v) do
              token = add_token(token, t)
            end
          else
            token = add_token(token, v)
          end
        end
      end
    end
  end

  local cookie_vars = p.cookie_vars
  if #cookie_vars > 0 then
    local var = ngx.var
    for i = 1, #cookie_vars do
      token = add_token(token, var[cookie_vars[i]])
    end
  end

  for _, name in ipairs(conf.header_names) do
    local v = kong.request.get_header(name)
    if v then
      token = add_token(token, match(v, "[Bb]earer%s+(.+)"))
    end
  end
  return token
end


-- Claims to headers ---------------------------------------------------------

-- reused between checking and setting (nothing yields in between)
local claim_values = {}

local function claim_string(v)
  local t = type(v)
  if t == "string" then
    return v
  elseif t == "number" then
    if v == floor(v) and v > -2^53 and v < 2^53 then
      return fmt("%d", v)
    end
    return tostring(v)
  elseif t == "boolean" then
    return v and "true" or "false"
  elseif t == "table" then
    local n = #v
    if n == 0 then
      return nil
    end
    local parts = {}
    for i = 1, n do
      local s = v[i]
      local st = type(s)
      if st ~= "string" and st ~= "number" and st ~= "boolean" then
        return json_encode(v)
      end
      parts[i] = claim_string(s)
    end
    return concat(parts, ", ")
  end
  return nil -- null
end


-- Fills claim_values for p.claim_headers; returns the failed item when a
-- value carries CR, LF or another control character (tab aside).
local function check_claim_headers(p, claims)
  local list = p.claim_headers
  for i = 1, #list do
    local v = claims[list[i].claim]
    local s = v ~= nil and claim_string(v) or nil
    if type(v) == "table" and s == nil and next(v) ~= nil then
      s = json_encode(v) -- an object
    end
    if s and find(s, "[%z\1-\8\10-\31\127]") then
      return list[i]
    end
    claim_values[i] = s or false
  end
end


local function set_claim_headers(p)
  local list = p.claim_headers
  for i = 1, #list do
    local s = claim_values[i]
    claim_values[i] = nil
    if s then
      kong.service.request.set_header(list[i].header, s)
    else
      kong.service.request.clear_header(list[i].header)
    end
  end
end


local function clear_claim_headers(p)
  local list = p.claim_headers
  for i = 1, #list do
    kong.service.request.clear_header(list[i].header)
  end
end


-- Signatures ----------------------------------------------------------------

-- Tokens whose signature verified, with the key that verified it: a client
-- sends the same token many times, and RSA/ECDSA verification costs tens of
-- microseconds. A hit needs the very same token bytes and key (object or
-- secret); the claims are still checked on every request. Per worker,
-- bounded (cleared when full).
local VERIFIED_MAX = 1024
local verified = {}
local verified_n = 0

local function verify_signature(jwt, key)
  local token = jwt.token
  if verified[token] == key then
    return true
  end
  if not jwt:verify_signature(key) then
    return false
  end
  if verified_n >= VERIFIED_MAX then
    verified = {}
    verified_n = 0
  end
  verified[token] = key
  verified_n = verified_n + 1
  return true
end


-- Verification --------------------------------------------------------------

-- An error result: { body, headers } (status is always 401).
local function failure(body, headers)
  return { body = body, headers = headers }
end


-- Checks claims_to_verify and maximum_expiration: nil or the error map.
local function check_claims(conf, jwt)
  local ok, errors = jwt:verify_registered_claims(conf.claims_to_verify)
  if not ok then
    return errors
  end
  local max = conf.maximum_expiration
  if max and max > 0 then
    ok, errors = jwt:check_maximum_expiration(max)
    if not ok then
      return errors
    end
  end
  return nil
end


local logged_bad_keys = setmetatable({}, { __mode = "k" })

-- The key to verify a consumer credential's tokens with, or nil.
local function credential_key(conf, jwt, cred, algorithm)
  if sub(algorithm, 1, 2) == "HS" then
    local secret = cred.secret
    if type(secret) ~= "string" then
      return nil
    end
    if conf.secret_is_base64 then
      return jwt:base64_decode(secret)
    end
    return secret
  end
  local pem = cred.rsa_public_key
  if type(pem) ~= "string" then
    return nil
  end
  local key = load_public_key(pem)
  if not key and not logged_bad_keys[cred] then
    logged_bad_keys[cred] = true
    kong.log.err("jwt_secrets '", tostring(cred.key),
                 "': rsa_public_key is not a valid public key")
  end
  return key
end


-- Verifies jwt against a consumer's credential. Returns true, or nil and a
-- failure.
local function verify_credential(conf, p, jwt, cred)
  local algorithm = cred.algorithm or "HS256"
  if jwt.header.alg ~= algorithm then
    return nil, failure(BODY_INVALID_ALGORITHM, p.headers_error)
  end
  local key = credential_key(conf, jwt, cred, algorithm)
  if not key then
    return nil, failure(BODY_INVALID_KEY, p.headers_error)
  end
  if not verify_signature(jwt, key) then
    return nil, failure(BODY_INVALID_SIGNATURE, p.headers_error)
  end
  return true
end


-- Verifies jwt against the service's own keys (secrets, then the JWKS).
-- Returns the credential that verified it, or nil and a failure.
local function verify_service_keys(conf, p, jwt)
  local alg = jwt.header.alg
  local tried = 0
  local secrets = p.secrets
  for i = 1, #secrets do
    local s = secrets[i]
    if s.alg == alg then
      tried = tried + 1
      if verify_signature(jwt, s.key) then
        return s.credential
      end
    end
  end
  local kid_unknown = false
  if p.jwks then
    local kid = jwt.header.kid
    local list, found = jwks.find(conf, kid, alg)
    kid_unknown = kid ~= nil and not found
    for i = 1, #list do
      tried = tried + 1
      if verify_signature(jwt, list[i].key) then
        return list[i].credential
      end
    end
  end
  if tried > 0 then
    return nil, failure(BODY_INVALID_SIGNATURE, p.headers_error)
  end
  if kid_unknown then
    return nil, failure(BODY_NO_KID_CREDENTIALS, p.headers_error)
  end
  return nil, failure(BODY_INVALID_ALGORITHM, p.headers_error)
end


-- Returns true, consumer, credential, token; or nil and a failure.
local function do_authentication(conf, p)
  local token = retrieve_token(conf, p)
  if token == nil then
    return nil, failure(BODY_UNAUTHORIZED, p.headers_base)
  elseif token == MULTIPLE then
    return nil, failure(BODY_MULTIPLE_TOKENS, p.headers_error)
  elseif type(token) ~= "string" then
    return nil, failure(BODY_UNRECOGNIZABLE, p.headers_error)
  end

  local jwt, err = jwt_decoder:new(token)
  if not jwt then
    return nil, failure({ message = MSG_BAD_TOKEN .. tostring(err) },
                        p.headers_error)
  end

  local kc = conf.key_claim_name
  local key = jwt.claims[kc] or jwt.header[kc]
  local cred, consumer
  if type(key) == "string" and key ~= "" then
    cred, consumer = find_credential(key)
  end

  if cred then
    local ok, ferr = verify_credential(conf, p, jwt, cred)
    if not ok then
      return nil, ferr
    end
  elseif p.service_keys then
    local ferr
    cred, ferr = verify_service_keys(conf, p, jwt)
    if not cred then
      return nil, ferr
    end
  elseif not key then
    return nil, failure(p.body_no_claim, p.headers_error)
  elseif type(key) ~= "string" or key == "" then
    return nil, failure(p.body_invalid_claim, p.headers_error)
  else
    return nil, failure(p.body_no_credentials, p.headers_error)
  end

  local errors = check_claims(conf, jwt)
  if errors then
    return nil, failure(errors, p.headers_error)
  end

  if #p.claim_headers > 0 then
    local bad = check_claim_headers(p, jwt.claims)
    if bad then
      return nil, failure(bad.body_invalid, p.headers_error)
    end
  end

  return true, consumer, cred, token
end


-- Consumer ------------------------------------------------------------------

-- Kong's jwt set_consumer: luagate.auth's (X-Consumer-* headers, with the
-- credential's key as X-Credential-Identifier) plus the token for the
-- plugins after this one.
local function set_consumer(consumer, credential, token)
  auth.set_consumer(consumer, credential, credential and credential.key)
  -- luacheck: push ignore 122
  kong.ctx.shared.authenticated_jwt_token = token
  ngx.ctx.authenticated_jwt_token = token -- as Kong's jwt did, for old plugins
  -- luacheck: pop
end


-- Phases --------------------------------------------------------------------

function JwtHandler:configure(configs)
  for _, conf in ipairs(configs or {}) do
    for _, url in ipairs(conf.jwks_urls or {}) do
      jwks.prefetch(url, conf.jwks_timeout, conf.jwks_refresh_interval)
    end
  end
end


-- With `anonymous` (logical OR between auth plugins, luagate.auth): true
-- once authenticated; a failure leaves the anonymous consumer to auth.
local function authenticate_or(conf)
  local p = prepare(conf)
  local ok, consumer, cred, token = do_authentication(conf, p)
  if not ok then
    return nil
  end
  set_claim_headers(p)
  set_consumer(consumer, cred, token)
  return true
end


function JwtHandler:access(conf)
  if not conf.run_on_preflight and kong.request.get_method() == "OPTIONS" then
    return
  end

  local p = prepare(conf)

  if conf.anonymous then
    -- set again on success; never left to what the client sent
    clear_claim_headers(p)
    return auth.access(conf, authenticate_or)
  end

  local ok, consumer, cred, token = do_authentication(conf, p)
  if not ok then
    -- Kong's jwt exits (no request_id) with the claim errors themselves
    return kong.response.exit(401, consumer.body, consumer.headers)
  end
  set_claim_headers(p)
  set_consumer(consumer, cred, token)
end


return JwtHandler
