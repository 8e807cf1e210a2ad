-- basic-auth: plugin config and basicauth_credentials validation through
-- luagate.config.
require "luagate.db" -- registers the credential entities
local config = require "luagate.config"
local helpers = require "spec.helpers"

local PLUGINS = { helpers.root .. "/plugins" }


local function load(yaml)
  return config.load_string(yaml, "yaml", "test.yml",
                            { plugins_dirs = PLUGINS })
end


describe("basic-auth schema", function()
  it("fills Kong's defaults", function()
    local conf, errs = load([[
_format_version: "3.0"
plugins:
- name: basic-auth
]])
    assert.is_nil(errs)
    local c = conf.plugins[1].config
    assert.is_false(c.hide_credentials)
    assert.equal("service", c.realm)
    assert.is_nil(c.anonymous)
    assert.same({ "grpc", "grpcs", "http", "https" },
                conf.plugins[1].protocols)
  end)

  it("accepts every field", function()
    local conf, errs = load([[
_format_version: "3.0"
plugins:
- name: basic-auth
  config:
    hide_credentials: true
    realm: my realm
    anonymous: 0a1b2c3d-4e5f-4a6b-8c7d-9e0f1a2b3c4d
]])
    assert.is_nil(errs)
    local c = conf.plugins[1].config
    assert.is_true(c.hide_credentials)
    assert.equal("my realm", c.realm)
    assert.equal("0a1b2c3d-4e5f-4a6b-8c7d-9e0f1a2b3c4d", c.anonymous)
  end)

  it("refuses bad values", function()
    local _, errs = load([[
_format_version: "3.0"
plugins:
- name: basic-auth
  config:
    hide_credentials: 0
    realm: [a]
    anonymous: ""
    key_names: [apikey]
]])
    assert.same({
      "test.yml:5: plugins[0].config.hide_credentials: expected a boolean",
      "test.yml:6: plugins[0].config.realm: expected a string",
      "test.yml:7: plugins[0].config.anonymous: length must be at least 1",
      "test.yml:8: plugins[0].config.key_names: unknown field",
    }, errs)
  end)

  it("cannot be scoped to a consumer or a consumer group", function()
    local _, errs = load([[
_format_version: "3.0"
consumers:
- username: c
  plugins:
  - name: basic-auth
consumer_groups:
- name: g
  plugins:
  - name: basic-auth
]])
    assert.same({
      "test.yml:5: consumers[0].plugins[0]: value must be null: plugin " ..
        "'basic-auth' cannot be configured on a consumer",
      "test.yml:9: consumer_groups[0].plugins[0]: value must be null: " ..
        "plugin 'basic-auth' cannot be configured on a consumer group",
    }, errs)
  end)
end)


describe("basicauth_credentials", function()
  it("are accepted nested and top-level, passwords kept as given",
     function()
    local conf, errs = load([[
_format_version: "3.0"
consumers:
- username: alice
  basicauth_credentials:
  - username: al
    password: pw
    tags: [t]
- username: bob
basicauth_credentials:
- consumer: bob
  username: bo
  password: pw2
]])
    assert.is_nil(errs)
    local a = conf.consumers[1].basicauth_credentials[1]
    assert.equal("al", a.username)
    assert.equal("pw", a.password)
    assert.same({ "t" }, a.tags)
    local b = conf.consumers[2].basicauth_credentials[1]
    assert.equal("bo", b.username)
    assert.equal("pw2", b.password)
    assert.is_true(conf.transform)
  end)

  it("need a username and a password, usernames unique", function()
    local _, errs = load([[
_format_version: "3.0"
consumers:
- username: alice
  basicauth_credentials:
  - username: u
  - password: p
  - username: u
    password: p
    extra: 1
  - username: ""
    password: 5
basicauth_credentials:
- consumer: alice
  username: u
  password: q
- consumer: nobody
  username: v
  password: q
]])
    assert.same({
      "test.yml:5: consumers[0].basicauth_credentials[0].password: " ..
        "required field missing",
      "test.yml:6: consumers[0].basicauth_credentials[1].username: " ..
        "required field missing",
      "test.yml:7: consumers[0].basicauth_credentials[2].username: " ..
        "uniqueness violation: 'basicauth_credentials' entity with " ..
        "username set to 'u' already declared",
      "test.yml:9: consumers[0].basicauth_credentials[2].extra: unknown " ..
        "field",
      "test.yml:10: consumers[0].basicauth_credentials[3].username: " ..
        "length must be at least 1",
      "test.yml:11: consumers[0].basicauth_credentials[3].password: " ..
        "expected a string",
      "test.yml:14: basicauth_credentials[0].username: uniqueness " ..
        "violation: 'basicauth_credentials' entity with username set to " ..
        "'u' already declared",
      "test.yml:16: basicauth_credentials[1].consumer: could not find " ..
        "consumer 'nobody'",
    }, errs)
  end)

  it("follow _transform", function()
    local conf, errs = load([[
_format_version: "3.0"
_transform: false
consumers:
- username: alice
  basicauth_credentials:
  - username: al
    password: 2aae6c35c94fcfb415dbe95f408b9ce91ee846ed
]])
    assert.is_nil(errs)
    assert.is_false(conf.transform)
    local _
    _, errs = load([[
_format_version: "3.0"
_transform: "no"
]])
    assert.same({ "test.yml:2: _transform: expected a boolean" }, errs)
  end)
end)
