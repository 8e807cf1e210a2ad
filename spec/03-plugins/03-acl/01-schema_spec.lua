-- acl: plugin config and acls validation through luagate.config.
require "luagate.db" -- registers the credential entities
local config = require "luagate.config"
local helpers = require "spec.helpers"

local PLUGINS = { helpers.root .. "/plugins" }


local function load(yaml)
  return config.load_string(yaml, "yaml", "test.yml",
                            { plugins_dirs = PLUGINS })
end


describe("acl schema", function()
  it("fills Kong's defaults", function()
    local conf, errs = load([[
_format_version: "3.0"
plugins:
- name: acl
  config:
    allow: [admins]
]])
    assert.is_nil(errs)
    local c = conf.plugins[1].config
    assert.same({ "admins" }, c.allow)
    assert.is_nil(c.deny)
    assert.is_false(c.hide_groups_header)
    assert.is_false(c.include_consumer_groups)
    assert.is_false(c.always_use_authenticated_groups)
    assert.same({ "grpc", "grpcs", "http", "https" },
                conf.plugins[1].protocols)
  end)

  it("accepts every field", function()
    local conf, errs = load([[
_format_version: "3.0"
plugins:
- name: acl
  config:
    deny: [a, b]
    hide_groups_header: true
    include_consumer_groups: true
    always_use_authenticated_groups: true
]])
    assert.is_nil(errs)
    local c = conf.plugins[1].config
    assert.same({ "a", "b" }, c.deny)
    assert.is_true(c.hide_groups_header)
    assert.is_true(c.include_consumer_groups)
    assert.is_true(c.always_use_authenticated_groups)
  end)

  it("needs exactly one of allow and deny", function()
    local _, errs = load([[
_format_version: "3.0"
plugins:
- name: acl
- name: acl
  route: r
  config: { allow: [a], deny: [b] }
- name: acl
  service: s
  config: { allow: [] }
services:
- name: s
  host: example.com
  routes:
  - name: r
    paths: [/]
]])
    assert.same({
      "test.yml:3: plugins[0]: only one of these fields must be " ..
        "non-empty: 'config.allow', 'config.deny'",
      "test.yml:3: plugins[0]: at least one of these fields must be " ..
        "non-empty: 'config.allow', 'config.deny'",
      "test.yml:4: plugins[1]: only one of these fields must be " ..
        "non-empty: 'config.allow', 'config.deny'",
      "test.yml:7: plugins[2]: only one of these fields must be " ..
        "non-empty: 'config.allow', 'config.deny'",
      "test.yml:7: plugins[2]: at least one of these fields must be " ..
        "non-empty: 'config.allow', 'config.deny'",
    }, errs)
  end)

  it("refuses bad values", function()
    local _, errs = load([[
_format_version: "3.0"
plugins:
- name: acl
  config:
    allow: admins
    hide_groups_header: "false"
    include_consumer_groups: 1
    always_use_authenticated_groups: []
- name: acl
  route: r
  config:
    deny: [ok, 3, ""]
routes:
- name: r
  paths: [/]
]])
    assert.same({
      "test.yml:5: plugins[0].config.allow: expected an array",
      "test.yml:6: plugins[0].config.hide_groups_header: expected a boolean",
      "test.yml:7: plugins[0].config.include_consumer_groups: expected a " ..
        "boolean",
      "test.yml:8: plugins[0].config.always_use_authenticated_groups: " ..
        "expected a boolean",
      "test.yml:12: plugins[1].config.deny[1]: expected a string",
      "test.yml:12: plugins[1].config.deny[2]: length must be at least 1",
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
- name: acl
  consumer: c
  config: { allow: [a] }
- name: acl
  consumer_group: g
  config: { allow: [a] }
]])
    assert.same({
      "test.yml:8: plugins[0].consumer: value must be null: plugin 'acl' " ..
        "cannot be configured on a consumer",
      "test.yml:11: plugins[1].consumer_group: value must be null: " ..
        "plugin 'acl' cannot be configured on a consumer group",
    }, errs)
  end)
end)


describe("acls", function()
  it("are accepted nested and top-level", function()
    local conf, errs = load([[
_format_version: "3.0"
consumers:
- username: u
  acls:
  - group: a
    tags: [t]
acls:
- consumer: u
  group: b
]])
    assert.is_nil(errs)
    local acls = conf.consumers[1].acls
    assert.equal(2, #acls)
    assert.equal("a", acls[1].group)
    assert.same({ "t" }, acls[1].tags)
    assert.equal("b", acls[2].group)
    assert.not_equal(acls[1].id, acls[2].id)
  end)

  it("need a group, once per consumer", function()
    local _, errs = load([[
_format_version: "3.0"
consumers:
- username: u
  acls:
  - group: a
  - {}
  - group: a
- username: v
  acls:
  - group: a
acls:
- consumer: u
  group: 7
- consumer: x
  group: a
]])
    assert.same({
      "test.yml:6: consumers[0].acls[1].group: required field missing",
      "test.yml:7: consumers[0].acls[2]: uniqueness violation: 'acls' " ..
        "entity already declared (see consumers[0].acls[0])",
      "test.yml:13: acls[0].group: expected a string",
      "test.yml:14: acls[1].consumer: could not find consumer 'x'",
    }, errs)
  end)
end)
