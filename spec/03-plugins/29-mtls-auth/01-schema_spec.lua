-- mtls-auth: plugin config validation through luagate.config (Kong's
-- defaults, bad values, ca_certificates ids checked against the config's
-- ca_certificates entities, with the element's path).
require "luagate.db" -- registers the credential entities
local config = require "luagate.config"
local helpers = require "spec.helpers"

local tls = require("spec.tls_fixtures").get()

local PLUGINS = { helpers.root .. "/plugins" }
local CA_ID = "8a0f3b1e-2c4d-4e6f-8a1b-3c5d7e9f1a2b"
local OTHER_ID = "1b2c3d4e-5f6a-4b7c-8d9e-0f1a2b3c4d5e"


local function load(doc)
  doc._format_version = "3.0"
  return config.load_string(helpers.json_encode(doc), "json", "test.json",
                            { plugins_dirs = PLUGINS })
end

local function cas()
  return { { id = CA_ID, cert = tls.client_ca.cert_pem } }
end


describe("mtls-auth schema", function()
  it("fills Kong's defaults", function()
    local conf, errs = load({
      ca_certificates = cas(),
      plugins = { { name = "mtls-auth",
                    config = { ca_certificates = { CA_ID } } } },
    })
    assert.is_nil(errs)
    assert.same({
      ca_certificates = { CA_ID },
      consumer_by = { "username", "custom_id" },
      cache_ttl = 60,
      skip_consumer_lookup = false,
      authenticated_group_by = "CN",
      revocation_check_mode = "IGNORE_CA_ERROR",
      http_timeout = 30000,
      cert_cache_ttl = 60000,
      send_ca_dn = false,
      allow_partial_chain = false,
      ssl_verify = true,
    }, conf.plugins[1].config)
    assert.same({ "grpc", "grpcs", "http", "https" },
                conf.plugins[1].protocols)
  end)

  it("accepts every field", function()
    local conf, errs = load({
      ca_certificates = cas(),
      consumers = { { username = "anon" } },
      plugins = { { name = "mtls-auth", config = {
        ca_certificates = { CA_ID },
        anonymous = "anon",
        default_consumer = "anon",
        consumer_by = { "custom_id" },
        cache_ttl = 5,
        skip_consumer_lookup = true,
        authenticated_group_by = "DN",
        revocation_check_mode = "STRICT",
        http_timeout = 100,
        cert_cache_ttl = 10,
        send_ca_dn = true,
        allow_partial_chain = true,
        http_proxy_host = "proxy.test",
        http_proxy_port = 3128,
        https_proxy_host = "proxy.test",
        https_proxy_port = 3129,
        ssl_verify = false,
      } } },
    })
    assert.is_nil(errs)
    local c = conf.plugins[1].config
    assert.same({ "custom_id" }, c.consumer_by)
    assert.equal("anon", c.anonymous)
    assert.equal("anon", c.default_consumer)
    assert.equal("DN", c.authenticated_group_by)
    assert.equal("STRICT", c.revocation_check_mode)
    assert.is_true(c.skip_consumer_lookup)
    assert.is_true(c.allow_partial_chain)
    assert.is_true(c.send_ca_dn)
    assert.equal(3129, c.https_proxy_port)
  end)

  it("accepts an empty consumer_by (automatic matching off)", function()
    local conf, errs = load({
      ca_certificates = cas(),
      plugins = { { name = "mtls-auth", config = {
        ca_certificates = { CA_ID }, consumer_by = {} } } },
    })
    assert.is_nil(errs)
    assert.same({}, conf.plugins[1].config.consumer_by)
  end)

  it("requires ca_certificates, at least one, as UUIDs", function()
    local _, errs = load({
      routes = {
        { name = "a", paths = { "/a" },
          plugins = { { name = "mtls-auth" } } },
        { name = "b", paths = { "/b" },
          plugins = { { name = "mtls-auth",
                        config = { ca_certificates = {} } } } },
        { name = "c", paths = { "/c" },
          plugins = { { name = "mtls-auth",
                        config = { ca_certificates = { "nope" } } } } },
      },
    })
    assert.same({
      "test.json:1: routes[0].plugins[0].config.ca_certificates: " ..
        "required field missing",
      "test.json:1: routes[1].plugins[0].config.ca_certificates: " ..
        "length must be at least 1",
      "test.json:1: routes[2].plugins[0].config.ca_certificates[0]: " ..
        "expected a valid UUID",
    }, errs)
  end)

  it("refuses an id that names no ca_certificate, with its path",
     function()
    local _, errs = load({
      ca_certificates = cas(),
      routes = { { name = "a", paths = { "/a" }, plugins = {
        { name = "mtls-auth",
          config = { ca_certificates = { CA_ID, OTHER_ID } } } } } },
      plugins = { { name = "mtls-auth",
                    config = { ca_certificates = { OTHER_ID } } } },
    })
    assert.same({
      "test.json:1: routes[0].plugins[0].config.ca_certificates[1]: " ..
        "could not find ca_certificate '" .. OTHER_ID .. "'",
      "test.json:1: plugins[0].config.ca_certificates[0]: could not find " ..
        "ca_certificate '" .. OTHER_ID .. "'",
    }, errs)
  end)

  it("refuses bad values with Kong's messages", function()
    local _, errs = load({
      ca_certificates = cas(),
      plugins = { { name = "mtls-auth", config = {
        ca_certificates = { CA_ID },
        consumer_by = { "id" },
        authenticated_group_by = "OU",
        revocation_check_mode = "NONE",
        skip_consumer_lookup = "yes",
        cache_ttl = "1",
        http_proxy_host = "proxy.test",
        https_proxy_port = 70000,
        nope = 1,
      } } },
    })
    assert.same({
      "test.json:1: plugins[0].config: all or none of these fields must " ..
        "be set: 'http_proxy_host', 'http_proxy_port'",
      "test.json:1: plugins[0].config.authenticated_group_by: expected " ..
        "one of: CN, DN",
      "test.json:1: plugins[0].config.cache_ttl: expected a number",
      "test.json:1: plugins[0].config.consumer_by[0]: expected one of: " ..
        "username, custom_id",
      "test.json:1: plugins[0].config.https_proxy_port: value should be " ..
        "between 0 and 65535",
      "test.json:1: plugins[0].config.nope: unknown field",
      "test.json:1: plugins[0].config.revocation_check_mode: expected " ..
        "one of: SKIP, IGNORE_CA_ERROR, STRICT",
      "test.json:1: plugins[0].config.skip_consumer_lookup: expected a " ..
        "boolean",
    }, errs)
  end)

  it("finds the ca_certificates through kong.db", function()
    local db = require "luagate.db"
    local conf = assert(load({ ca_certificates = cas() }))
    db.set_current(conf)
    local ca = db.ca_certificates:select({ id = CA_ID })
    local none = db.ca_certificates:select({ id = OTHER_ID })
    db.set_current(nil)
    assert.equal(tls.client_ca.cert_pem, ca.cert)
    assert.is_nil(none)
  end)

  it("cannot be configured on a consumer", function()
    local _, errs = load({
      ca_certificates = cas(),
      consumers = { { username = "bob", plugins = {
        { name = "mtls-auth", config = { ca_certificates = { CA_ID } } },
      } } },
    })
    assert.same({
      "test.json:1: consumers[0].plugins[0]: value must be null: plugin " ..
        "'mtls-auth' cannot be configured on a consumer",
    }, errs)
  end)
end)
