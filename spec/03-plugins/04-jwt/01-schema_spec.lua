-- jwt: config validation through luagate.config (Kong's fields and
-- defaults, maximum_expiration, scope; luagate's secrets, jwks_* and
-- claims_to_headers; the jwt_secrets credentials).
local config = require "luagate.config"
local helpers = require "spec.helpers"

local HERE = helpers.root .. "/spec/03-plugins/04-jwt"
local keys = dofile(HERE .. "/keys.lua")

local PLUGINS = { helpers.root .. "/plugins" }


local function load(yaml)
  return config.load_string(yaml, "yaml", "test.yml",
                            { plugins_dirs = PLUGINS })
end


local function plugin_config(yaml)
  local conf, errs = load(yaml)
  assert.is_nil(errs)
  return conf.plugins[1].config
end


-- the one error of a config that must not load
local function load_error(yaml)
  local conf, errs = load(yaml)
  assert.is_nil(conf)
  assert.equal(1, #errs, table.concat(errs or {}, "\n"))
  return errs[1]
end


local function indent(pem, n)
  local pad = string.rep(" ", n)
  return (pem:gsub("\n$", ""):gsub("\n", "\n" .. pad))
end


describe("jwt schema", function()
  local k

  lazy_setup(function()
    k = keys.generate(helpers.make_prefix("jwt-schema-keys"))
  end)

  it("fills Kong's defaults and luagate's", function()
    local c = plugin_config([[
_format_version: "3.0"
plugins:
- name: jwt
]])
    assert.same({ "jwt" }, c.uri_param_names)
    assert.same({}, c.cookie_names)
    assert.same({ "authorization" }, c.header_names)
    assert.equal("iss", c.key_claim_name)
    assert.is_false(c.secret_is_base64)
    assert.is_nil(c.claims_to_verify)
    assert.is_nil(c.anonymous)
    assert.is_true(c.run_on_preflight)
    assert.equal(0, c.maximum_expiration)
    assert.is_nil(c.realm)
    assert.same({}, c.jwks_urls)
    assert.equal(300, c.jwks_refresh_interval)
    assert.equal(60, c.jwks_min_refetch_interval)
    assert.equal(5000, c.jwks_timeout)
    assert.same({}, c.secrets)
    assert.is_nil(c.claims_to_headers)
  end)

  it("accepts every field", function()
    local c = plugin_config([[
_format_version: "3.0"
plugins:
- name: jwt
  config:
    uri_param_names: [token, jwt]
    cookie_names: [session]
    header_names: [authorization, x-token]
    key_claim_name: kid
    secret_is_base64: true
    claims_to_verify: [exp, nbf]
    anonymous: guest
    run_on_preflight: false
    maximum_expiration: 3600
    realm: api
    jwks_urls: ["http://idp.example.com/.well-known/jwks.json",
                "https://cognito-idp.example.com/pool/.well-known/jwks.json"]
    jwks_refresh_interval: 600
    jwks_min_refetch_interval: 0
    jwks_timeout: 1000
    secrets:
    - secret: s3cret
    - secret: other
      algorithm: HS512
    claims_to_headers:
      sub: X-User-Id
      email: X-User-Email
]])
    assert.same({ "token", "jwt" }, c.uri_param_names)
    assert.same({ "session" }, c.cookie_names)
    assert.same({ "authorization", "x-token" }, c.header_names)
    assert.equal("kid", c.key_claim_name)
    assert.is_true(c.secret_is_base64)
    assert.same({ "exp", "nbf" }, c.claims_to_verify)
    assert.equal("guest", c.anonymous)
    assert.is_false(c.run_on_preflight)
    assert.equal(3600, c.maximum_expiration)
    assert.equal("api", c.realm)
    assert.equal(2, #c.jwks_urls)
    assert.equal(600, c.jwks_refresh_interval)
    assert.equal(0, c.jwks_min_refetch_interval)
    assert.equal(1000, c.jwks_timeout)
    assert.same({ { secret = "s3cret", algorithm = "HS256" },
                  { secret = "other", algorithm = "HS512" } }, c.secrets)
    assert.same({ sub = "X-User-Id", email = "X-User-Email" },
                c.claims_to_headers)
  end)

  describe("Kong's fields", function()
    it("claims_to_verify takes exp and nbf only", function()
      assert.equal("test.yml:5: plugins[0].config.claims_to_verify[1]: " ..
                   "expected one of: exp, nbf", load_error([[
_format_version: "3.0"
plugins:
- name: jwt
  config:
    claims_to_verify: [exp, iat]
]]))
    end)

    it("maximum_expiration is between 0 and 31536000", function()
      assert.equal("test.yml:5: plugins[0].config.maximum_expiration: " ..
                   "value should be between 0 and 31536000", load_error([[
_format_version: "3.0"
plugins:
- name: jwt
  config:
    maximum_expiration: 31536001
    claims_to_verify: [exp]
]]))
      assert.equal("test.yml:5: plugins[0].config.maximum_expiration: " ..
                   "value should be between 0 and 31536000", load_error([[
_format_version: "3.0"
plugins:
- name: jwt
  config:
    maximum_expiration: -1
]]))
    end)

    it("maximum_expiration needs exp in claims_to_verify", function()
      assert.equal("test.yml:5: plugins[0].config.claims_to_verify: " ..
                   "expected to contain: exp", load_error([[
_format_version: "3.0"
plugins:
- name: jwt
  config:
    claims_to_verify: [nbf]
    maximum_expiration: 60
]]))
      local c = plugin_config([[
_format_version: "3.0"
plugins:
- name: jwt
  config:
    claims_to_verify: [nbf, exp]
    maximum_expiration: 60
]])
      assert.equal(60, c.maximum_expiration)
    end)

    it("checks types", function()
      assert.equal("test.yml:5: plugins[0].config.secret_is_base64: " ..
                   "expected a boolean", load_error([[
_format_version: "3.0"
plugins:
- name: jwt
  config:
    secret_is_base64: "yes"
]]))
      assert.equal("test.yml:5: plugins[0].config.uri_param_names: " ..
                   "expected a set", load_error([[
_format_version: "3.0"
plugins:
- name: jwt
  config:
    uri_param_names: jwt
]]))
      assert.equal("test.yml:5: plugins[0].config.maximum_expiration: " ..
                   "expected a number", load_error([[
_format_version: "3.0"
plugins:
- name: jwt
  config:
    maximum_expiration: soon
]]))
      assert.equal("test.yml:5: plugins[0].config.nope: unknown field",
                   load_error([[
_format_version: "3.0"
plugins:
- name: jwt
  config:
    nope: 1
]]))
    end)

    it("cannot be scoped to a consumer", function()
      assert.equal("test.yml:6: plugins[0].consumer: value must be null: " ..
                   "plugin 'jwt' cannot be configured on a consumer",
                   load_error([[
_format_version: "3.0"
consumers:
- username: alice
plugins:
- name: jwt
  consumer: alice
]]))
    end)
  end)

  describe("secrets", function()
    it("takes PEM public keys for the asymmetric algorithms", function()
      local c = plugin_config(([[
_format_version: "3.0"
plugins:
- name: jwt
  config:
    secrets:
    - algorithm: RS256
      public_key: |
        %s
    - algorithm: ES256
      public_key: |
        %s
    - algorithm: EdDSA
      public_key: |
        %s
]]):format(indent(k.rsa.public, 8), indent(k.ec256.public, 8),
           indent(k.ed25519.public, 8)))
      assert.equal(3, #c.secrets)
      assert.equal(k.rsa.public, c.secrets[1].public_key)
      assert.is_nil(c.secrets[1].secret)
    end)

    it("takes PKCS#1 RSA keys and certificates", function()
      local pkcs1 = keys.run(("openssl rsa -pubin -in %s -RSAPublicKey_out")
                             :format(k.rsa.public_path))
      local cert = keys.run(("openssl req -new -x509 -key %s -subj /CN=jwt " ..
                             "-days 1"):format(k.rsa.private))
      assert.matches("BEGIN RSA PUBLIC KEY", pkcs1, 1, true)
      assert.matches("BEGIN CERTIFICATE", cert, 1, true)
      local c = plugin_config(([[
_format_version: "3.0"
plugins:
- name: jwt
  config:
    secrets:
    - algorithm: RS256
      public_key: |
        %s
    - algorithm: PS512
      public_key: |
        %s
]]):format(indent(pkcs1, 8), indent(cert, 8)))
      assert.equal(2, #c.secrets)
    end)

    it("refuses a secret with an asymmetric algorithm and the reverse",
    function()
      assert.equal("test.yml:6: plugins[0].config.secrets[0]: algorithm " ..
                   "RS256 takes a 'public_key', not a 'secret'", load_error([[
_format_version: "3.0"
plugins:
- name: jwt
  config:
    secrets:
    - secret: abc
      algorithm: RS256
]]))
      assert.equal("test.yml:6: plugins[0].config.secrets[0]: algorithm " ..
                   "HS256 takes a 'secret', not a 'public_key'",
                   load_error(([[
_format_version: "3.0"
plugins:
- name: jwt
  config:
    secrets:
    - public_key: |
        %s
]]):format(indent(k.rsa.public, 8))))
      assert.equal("test.yml:6: plugins[0].config.secrets[0]: algorithm " ..
                   "PS256 needs a 'public_key'", load_error([[
_format_version: "3.0"
plugins:
- name: jwt
  config:
    secrets:
    - algorithm: PS256
]]))
      assert.equal("test.yml:6: plugins[0].config.secrets[0]: algorithm " ..
                   "HS384 needs a 'secret'", load_error([[
_format_version: "3.0"
plugins:
- name: jwt
  config:
    secrets:
    - algorithm: HS384
]]))
    end)

    it("refuses a bad public key, or one of another kind", function()
      assert.equal("test.yml:6: plugins[0].config.secrets[0]: invalid " ..
                   "public key", load_error([[
_format_version: "3.0"
plugins:
- name: jwt
  config:
    secrets:
    - algorithm: RS256
      public_key: "-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----"
]]))
      assert.equal("test.yml:6: plugins[0].config.secrets[0]: public key " ..
                   "does not fit algorithm ES384", load_error(([[
_format_version: "3.0"
plugins:
- name: jwt
  config:
    secrets:
    - algorithm: ES384
      public_key: |
        %s
]]):format(indent(k.ec256.public, 8))))
      assert.equal("test.yml:6: plugins[0].config.secrets[0]: public key " ..
                   "does not fit algorithm RS256", load_error(([[
_format_version: "3.0"
plugins:
- name: jwt
  config:
    secrets:
    - algorithm: RS256
      public_key: |
        %s
]]):format(indent(k.ed25519.public, 8))))
    end)

    it("refuses unknown algorithms, none included", function()
      assert.equal("test.yml:7: plugins[0].config.secrets[0].algorithm: " ..
                   "expected one of: HS256, HS384, HS512, RS256, RS384, " ..
                   "RS512, ES256, ES384, ES512, PS256, PS384, PS512, EdDSA",
                   load_error([[
_format_version: "3.0"
plugins:
- name: jwt
  config:
    secrets:
    - secret: abc
      algorithm: none
]]))
    end)
  end)

  describe("jwks", function()
    it("takes http and https URLs only", function()
      assert.equal("test.yml:5: plugins[0].config.jwks_urls[0]: expected " ..
                   "an http:// or https:// URL", load_error([[
_format_version: "3.0"
plugins:
- name: jwt
  config:
    jwks_urls: ["file:///etc/jwks.json"]
]]))
    end)

    it("bounds the intervals and the timeout", function()
      assert.equal("test.yml:5: plugins[0].config.jwks_refresh_interval: " ..
                   "value should be between 1 and 86400", load_error([[
_format_version: "3.0"
plugins:
- name: jwt
  config:
    jwks_refresh_interval: 0
]]))
      assert.equal("test.yml:5: plugins[0].config.jwks_timeout: " ..
                   "value should be between 1 and 60000", load_error([[
_format_version: "3.0"
plugins:
- name: jwt
  config:
    jwks_timeout: 0
]]))
      assert.equal("test.yml:5: plugins[0].config.jwks_timeout: " ..
                   "expected an integer", load_error([[
_format_version: "3.0"
plugins:
- name: jwt
  config:
    jwks_timeout: 1.5
]]))
    end)
  end)

  describe("claims_to_headers", function()
    it("refuses bad header names and framing headers", function()
      assert.equal("test.yml:6: plugins[0].config.claims_to_headers.sub: " ..
                   "bad header name 'X User', allowed characters are " ..
                   "A-Z, a-z, 0-9, '_', and '-'", load_error([[
_format_version: "3.0"
plugins:
- name: jwt
  config:
    claims_to_headers:
      sub: X User
]]))
      assert.equal("test.yml:6: plugins[0].config.claims_to_headers.sub: " ..
                   "header 'Content-Length' cannot carry a claim",
                   load_error([[
_format_version: "3.0"
plugins:
- name: jwt
  config:
    claims_to_headers:
      sub: Content-Length
]]))
    end)
  end)

  describe("jwt_secrets credentials", function()
    it("default to HS256 and need a valid rsa_public_key otherwise",
    function()
      require "luagate.db" -- registers the credential schemas, as workers do
      local conf = assert(load([[
_format_version: "3.0"
consumers:
- username: alice
  jwt_secrets:
  - key: a-key
    secret: a-secret
]]))
      assert.equal("HS256", conf.consumers[1].jwt_secrets[1].algorithm)
      assert.matches("rsa_public_key: required field missing", load_error([[
_format_version: "3.0"
consumers:
- username: alice
  jwt_secrets:
  - key: a-key
    algorithm: RS256
]]), 1, true)
      assert.matches("rsa_public_key: invalid key", load_error([[
_format_version: "3.0"
consumers:
- username: alice
  jwt_secrets:
  - key: a-key
    algorithm: ES256
    rsa_public_key: "-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----"
]]), 1, true)
    end)
  end)
end)
