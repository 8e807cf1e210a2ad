-- Configuration of the jwt plugin: Kong's fields (Kong 3.10), then
-- luagate's additions (jwks_*, secrets, claims_to_headers), documented in
-- docs/plugins/jwt.md.
local typedefs = require "kong.db.schema.typedefs"

local type = type
local find = string.find
local sub = string.sub


local ALGORITHMS = {
  "HS256", "HS384", "HS512",
  "RS256", "RS384", "RS512",
  "ES256", "ES384", "ES512",
  "PS256", "PS384", "PS512",
  "EdDSA",
}


-- The parser needs libcrypto; load it only when a public key is checked.
-- luagate.config's plugin registry loads schemas without making
-- `kong.plugins.*` requirable (only the runtime's plugin loader does), so
-- fall back to the file next to this one.
local jwt_parser
local function parser()
  if jwt_parser then
    return jwt_parser
  end
  local ok, m = pcall(require, "kong.plugins.jwt.jwt_parser")
  if not ok then
    local src = debug.getinfo(1, "S").source
    local dir = src:match("^@(.*)/[^/]*$") or "."
    m = dofile(dir .. "/jwt_parser.lua")
  end
  jwt_parser = m
  return m
end


-- An entry of `secrets`: HS* take `secret`, the others `public_key` (a
-- PEM public key or certificate that fits the algorithm).
local function check_secret_entry(e)
  local alg = e.algorithm or "HS256"
  local hs = sub(alg, 1, 2) == "HS"
  if hs then
    if type(e.public_key) == "string" then
      return nil, "algorithm " .. alg .. " takes a 'secret', not a " ..
                  "'public_key'"
    end
    if type(e.secret) ~= "string" then
      return nil, "algorithm " .. alg .. " needs a 'secret'"
    end
    return true
  end
  if type(e.secret) == "string" then
    return nil, "algorithm " .. alg .. " takes a 'public_key', not a " ..
                "'secret'"
  end
  if type(e.public_key) ~= "string" then
    return nil, "algorithm " .. alg .. " needs a 'public_key'"
  end
  local jwt_parser = parser()
  local key = jwt_parser.load_public_key(e.public_key)
  if not key then
    return nil, "invalid public key"
  end
  if not jwt_parser.key_fits(alg, key) then
    return nil, "public key does not fit algorithm " .. alg
  end
  return true
end


local function check_claim_header(name)
  local lname = name:lower()
  if lname == "host" or lname == "content-length" or
     lname == "transfer-encoding" or lname == "connection" then
    return nil, "header '" .. name .. "' cannot carry a claim"
  end
  return typedefs.validate_header_name(name)
end


local function check_jwks_url(url)
  if not find(url, "^[hH][tT][tT][pP][sS]?://[^/?#]") then
    return nil, "expected an http:// or https:// URL"
  end
  return true
end


return {
  name = "jwt",
  fields = {
    { consumer = typedefs.no_consumer },
    { protocols = typedefs.protocols_http },
    { config = {
        type = "record",
        fields = {
          { uri_param_names = {
              description = "A list of querystring parameters that Kong " ..
                "will inspect to retrieve JWTs.",
              type = "set",
              elements = { type = "string" },
              default = { "jwt" },
          } },
          { cookie_names = {
              description = "A list of cookie names that Kong will " ..
                "inspect to retrieve JWTs.",
              type = "set",
              elements = { type = "string" },
              default = {},
          } },
          { key_claim_name = {
              description = "The name of the claim in which the key " ..
                "identifying the secret must be passed. The plugin will " ..
                "attempt to read this claim from the JWT payload and the " ..
                "header, in that order.",
              type = "string",
              default = "iss",
          } },
          { secret_is_base64 = {
              description = "If true, the plugin assumes the credential's " ..
                "secret to be base64 encoded. You will need to create a " ..
                "base64-encoded secret for your Consumer, and sign your " ..
                "JWT with the original secret.",
              type = "boolean",
              required = true,
              default = false,
          } },
          { claims_to_verify = {
              description = "A list of registered claims (according to " ..
                "RFC 7519) that Kong can verify as well. Accepted values: " ..
                "one of exp or nbf.",
              type = "set",
              elements = { type = "string", one_of = { "exp", "nbf" } },
          } },
          { anonymous = {
              description = "An optional string (consumer UUID or " ..
                "username) value to use as an \"anonymous\" consumer if " ..
                "authentication fails.",
              type = "string",
          } },
          { run_on_preflight = {
              description = "A boolean value that indicates whether the " ..
                "plugin should run (and try to authenticate) on OPTIONS " ..
                "preflight requests. If set to false, then OPTIONS " ..
                "requests will always be allowed.",
              type = "boolean",
              required = true,
              default = true,
          } },
          { maximum_expiration = {
              description = "A value between 0 and 31536000 (365 days) " ..
                "limiting the lifetime of the JWT to maximum_expiration " ..
                "seconds in the future.",
              type = "number",
              default = 0,
              between = { 0, 31536000 },
          } },
          { header_names = {
              description = "A list of HTTP header names that Kong will " ..
                "inspect to retrieve JWTs.",
              type = "set",
              elements = { type = "string" },
              default = { "authorization" },
          } },
          { realm = {
              description = "When authentication fails the plugin sends " ..
                "`WWW-Authenticate` header with `realm` attribute value.",
              type = "string",
              required = false,
          } },

          -- luagate extensions ------------------------------------------
          { jwks_urls = {
              description = "luagate: URLs of JSON Web Key Sets. A token " ..
                "whose key claim names no consumer credential is verified " ..
                "with the key of its `kid` (RSA, EC and OKP keys); such a " ..
                "token needs no consumer.",
              type = "array",
              elements = {
                type = "string",
                custom_validator = check_jwks_url,
              },
              default = {},
          } },
          { jwks_refresh_interval = {
              description = "luagate: seconds after which a fetched key " ..
                "set is fetched again in the background (the old keys " ..
                "serve meanwhile).",
              type = "number",
              default = 300,
              between = { 1, 86400 },
          } },
          { jwks_min_refetch_interval = {
              description = "luagate: a token with an unknown `kid` makes " ..
                "the key set be fetched again at once, but at most once " ..
                "per this many seconds (per URL, across workers).",
              type = "number",
              default = 60,
              between = { 0, 86400 },
          } },
          { jwks_timeout = {
              description = "luagate: timeout in milliseconds of a JWKS " ..
                "fetch (connect, send and read each).",
              type = "integer",
              default = 5000,
              between = { 1, 60000 },
          } },
          { secrets = {
              description = "luagate: keys for tokens that belong to no " ..
                "consumer: any token signed by one of them passes. " ..
                "`{ secret, algorithm }` for HS256/384/512, " ..
                "`{ public_key, algorithm }` (PEM) for the others.",
              type = "array",
              default = {},
              elements = {
                type = "record",
                fields = {
                  { secret = {
                      description = "The HMAC secret (HS256/384/512).",
                      type = "string",
                      referenceable = true,
                  } },
                  { public_key = {
                      description = "A PEM public key or certificate " ..
                        "(RS*, PS*, ES*, EdDSA).",
                      type = "string",
                  } },
                  { algorithm = {
                      description = "The algorithm tokens signed with " ..
                        "this key must name in their `alg` header.",
                      type = "string",
                      default = "HS256",
                      one_of = ALGORITHMS,
                  } },
                },
                entity_checks = {
                  { custom_entity_check = {
                      field_sources = { "secret", "public_key", "algorithm" },
                      fn = check_secret_entry,
                  } },
                },
              },
          } },
          { claims_to_headers = {
              description = "luagate: claims copied to upstream request " ..
                "headers once the token is verified (claim name -> header " ..
                "name). A missing claim clears the header; arrays are " ..
                "joined with ', ', objects sent as JSON.",
              type = "map",
              keys = { type = "string" },
              values = {
                type = "string",
                custom_validator = check_claim_header,
              },
          } },
        },
      },
    },
  },
  entity_checks = {
    { conditional = {
        if_field = "config.maximum_expiration",
        if_match = { gt = 0 },
        then_field = "config.claims_to_verify",
        then_match = { contains = "exp" },
    } },
  },
}
