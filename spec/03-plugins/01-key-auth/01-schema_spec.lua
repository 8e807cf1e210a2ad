-- key-auth: plugin config and keyauth_credentials validation through
-- luagate.config (defaults, types, scope, credentials nested and top-level).
require "luagate.db" -- registers the credential entities
local config = require "luagate.config"
local helpers = require "spec.helpers"

local PLUGINS = { helpers.root .. "/plugins" }


local function load(yaml)
  return config.load_string(yaml, "yaml", "test.yml",
                            { plugins_dirs = PLUGINS })
end


describe("key-auth schema", function()
  it("fills Kong's defaults", function()
    local conf, errs = load([[
_format_version: "3.0"
plugins:
- name: key-auth
]])
    assert.is_nil(errs)
    local c = conf.plugins[1].config
    assert.same({ "apikey" }, c.key_names)
    assert.is_false(c.hide_credentials)
    assert.is_true(c.key_in_header)
    assert.is_true(c.key_in_query)
    assert.is_false(c.key_in_body)
    assert.is_true(c.run_on_preflight)
    assert.is_nil(c.anonymous)
    assert.is_nil(c.realm)
    assert.same({ "grpc", "grpcs", "http", "https" },
                conf.plugins[1].protocols)
  end)

  it("accepts every field", function()
    local conf, errs = load([[
_format_version: "3.0"
plugins:
- name: key-auth
  config:
    key_names: [apikey, x_api-key, Token]
    hide_credentials: true
    anonymous: nobody
    key_in_header: false
    key_in_query: false
    key_in_body: true
    run_on_preflight: false
    realm: my-realm
]])
    assert.is_nil(errs)
    local c = conf.plugins[1].config
    assert.same({ "apikey", "x_api-key", "Token" }, c.key_names)
    assert.is_true(c.hide_credentials)
    assert.equal("nobody", c.anonymous)
    assert.is_false(c.key_in_header)
    assert.is_false(c.key_in_query)
    assert.is_true(c.key_in_body)
    assert.is_false(c.run_on_preflight)
    assert.equal("my-realm", c.realm)
  end)

  it("refuses bad values with Kong's messages", function()
    local _, errs = load([[
_format_version: "3.0"
plugins:
- name: key-auth
  config:
    key_names: ["bad name", "", 3]
    hide_credentials: "yes"
    anonymous: 5
    key_in_header: 1
    key_in_query: null
    key_in_body: "no"
    run_on_preflight: {}
    realm: ""
    nope: 1
]])
    assert.same({
      "test.yml:5: plugins[0].config.key_names[0]: bad header name " ..
        "'bad name', allowed characters are A-Z, a-z, 0-9, '_', and '-'",
      "test.yml:5: plugins[0].config.key_names[1]: length must be at least 1",
      "test.yml:5: plugins[0].config.key_names[2]: expected a string",
      "test.yml:6: plugins[0].config.hide_credentials: expected a boolean",
      "test.yml:7: plugins[0].config.anonymous: expected a string",
      "test.yml:8: plugins[0].config.key_in_header: expected a boolean",
      "test.yml:10: plugins[0].config.key_in_body: expected a boolean",
      "test.yml:11: plugins[0].config.run_on_preflight: expected a boolean",
      "test.yml:12: plugins[0].config.realm: length must be at least 1",
      "test.yml:13: plugins[0].config.nope: unknown field",
    }, errs)
  end)

  it("requires key_names to be an array", function()
    local _, errs = load([[
_format_version: "3.0"
plugins:
- name: key-auth
  config:
    key_names: apikey
]])
    assert.same({
      "test.yml:5: plugins[0].config.key_names: expected an array",
    }, errs)
  end)

  it("cannot be scoped to a consumer or a consumer group", function()
    local _, errs = load([[
_format_version: "3.0"
consumers:
- username: c
consumer_groups:
- name: g
plugins:
- name: key-auth
  consumer: c
- name: key-auth
  consumer_group: g
]])
    assert.same({
      "test.yml:8: plugins[0].consumer: value must be null: plugin " ..
        "'key-auth' cannot be configured on a consumer",
      "test.yml:10: plugins[1].consumer_group: value must be null: plugin " ..
        "'key-auth' cannot be configured on a consumer group",
    }, errs)
  end)

  it("takes only http protocols", function()
    local _, errs = load([[
_format_version: "3.0"
plugins:
- name: key-auth
  protocols: [tcp]
]])
    assert.same({
      "test.yml:4: plugins[0].protocols[0]: expected one of: http, https, " ..
        "grpc, grpcs",
    }, errs)
  end)
end)


describe("keyauth_credentials", function()
  it("are accepted nested and top-level, linked to their consumer", function()
    local conf, errs = load([[
_format_version: "3.0"
consumers:
- username: alice
  keyauth_credentials:
  - key: k-alice
    tags: [t1]
- username: bob
  id: 5b2c3b9a-8d7a-4a7e-9e43-0e7c1d8b4f11
keyauth_credentials:
- consumer: bob
  key: k-bob
- consumer: 5b2c3b9a-8d7a-4a7e-9e43-0e7c1d8b4f11
  key: k-bob-2
- consumer: { username: alice }
  key: k-alice-2
]])
    assert.is_nil(errs)
    local alice, bob = conf.consumers[1], conf.consumers[2]
    assert.equal(2, #alice.keyauth_credentials)
    assert.equal("k-alice", alice.keyauth_credentials[1].key)
    assert.same({ "t1" }, alice.keyauth_credentials[1].tags)
    assert.equal("k-alice-2", alice.keyauth_credentials[2].key)
    assert.equal(2, #bob.keyauth_credentials)
    assert.equal("k-bob", bob.keyauth_credentials[1].key)
    assert.equal("k-bob-2", bob.keyauth_credentials[2].key)
    assert.truthy(alice.keyauth_credentials[1].id:match(
      "^%x+%-%x+%-%x+%-%x+%-%x+$"))
  end)

  it("accept a credential without key (a random one is made)", function()
    local conf, errs = load([[
_format_version: "3.0"
consumers:
- username: alice
  keyauth_credentials:
  - tags: [generated]
]])
    assert.is_nil(errs)
    assert.is_nil(conf.consumers[1].keyauth_credentials[1].key)
  end)

  it("refuses bad and duplicate keys, unknown fields and consumers",
     function()
    local _, errs = load([[
_format_version: "3.0"
consumers:
- username: alice
  keyauth_credentials:
  - key: k1
  - key: k1
  - key: 5
  - key: ""
  - key: k2
    ttl: 10
keyauth_credentials:
- consumer: ghost
  key: k3
- consumer: alice
  key: k1
- "k4"
]])
    assert.same({
      "test.yml:6: consumers[0].keyauth_credentials[1].key: uniqueness " ..
        "violation: 'keyauth_credentials' entity with key set to 'k1' " ..
        "already declared",
      "test.yml:7: consumers[0].keyauth_credentials[2].key: expected a " ..
        "string",
      "test.yml:8: consumers[0].keyauth_credentials[3].key: length must " ..
        "be at least 1",
      "test.yml:10: consumers[0].keyauth_credentials[4].ttl: unknown field",
      "test.yml:12: keyauth_credentials[0].consumer: could not find " ..
        "consumer 'ghost'",
      "test.yml:15: keyauth_credentials[1].key: uniqueness violation: " ..
        "'keyauth_credentials' entity with key set to 'k1' already declared",
      "test.yml:16: keyauth_credentials[2]: expected a record",
    }, errs)
  end)
end)
