-- cors: config validation through luagate.config (defaults, regex origins,
-- methods, types, scope).
local config = require "luagate.config"
local helpers = require "spec.helpers"

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


describe("cors schema", function()
  it("fills Kong's defaults", function()
    local c = plugin_config([[
_format_version: "3.0"
plugins:
- name: cors
]])
    assert.same({ "GET", "HEAD", "PUT", "PATCH", "POST", "DELETE", "OPTIONS",
                  "TRACE", "CONNECT" }, c.methods)
    assert.is_false(c.credentials)
    assert.is_false(c.preflight_continue)
    assert.is_false(c.private_network)
    assert.is_true(c.allow_origin_absent)
    assert.is_nil(c.origins)
    assert.is_nil(c.headers)
    assert.is_nil(c.exposed_headers)
    assert.is_nil(c.max_age)
  end)

  it("accepts every field", function()
    local c = plugin_config([[
_format_version: "3.0"
plugins:
- name: cors
  config:
    origins: ["*", "http://example.com", "(.*[./])?example\\.org"]
    methods: [GET, POST]
    headers: [X-A, X-B]
    exposed_headers: [X-C]
    max_age: 3600
    credentials: true
    preflight_continue: true
    private_network: true
    allow_origin_absent: false
]])
    assert.same({ "*", "http://example.com", "(.*[./])?example\\.org" },
                c.origins)
    assert.same({ "GET", "POST" }, c.methods)
    assert.same({ "X-A", "X-B" }, c.headers)
    assert.same({ "X-C" }, c.exposed_headers)
    assert.equal(3600, c.max_age)
    assert.is_true(c.credentials)
    assert.is_true(c.preflight_continue)
    assert.is_true(c.private_network)
    assert.is_false(c.allow_origin_absent)
  end)

  it("refuses an origin that is not a valid regex", function()
    local conf, errs = load([[
_format_version: "3.0"
plugins:
- name: cors
  config:
    origins: ["http://ok.com", "(bad"]
]])
    assert.is_nil(conf)
    assert.same({ "test.yml:5: plugins[0].config.origins[1]: '(bad' is " ..
                  "not a valid regex" }, errs)
  end)

  it("refuses unknown methods and wrong types", function()
    local conf, errs = load([[
_format_version: "3.0"
plugins:
- name: cors
  config:
    methods: [GET, get, PURGE]
    max_age: "ten"
    credentials: "yes"
    headers: X-A
    allow_origin_absent: 1
    nope: 1
]])
    assert.is_nil(conf)
    local list = "expected one of: GET, HEAD, PUT, PATCH, POST, DELETE, " ..
                 "OPTIONS, TRACE, CONNECT"
    assert.same({
      "test.yml:5: plugins[0].config.methods[1]: " .. list,
      "test.yml:5: plugins[0].config.methods[2]: " .. list,
      "test.yml:6: plugins[0].config.max_age: expected a number",
      "test.yml:7: plugins[0].config.credentials: expected a boolean",
      "test.yml:8: plugins[0].config.headers: expected an array",
      "test.yml:9: plugins[0].config.allow_origin_absent: expected a boolean",
      "test.yml:10: plugins[0].config.nope: unknown field",
    }, errs)
  end)

  it("cannot be scoped to a consumer", function()
    local conf, errs = load([[
_format_version: "3.0"
consumers:
- username: bob
  plugins:
  - name: cors
]])
    assert.is_nil(conf)
    assert.same({ "test.yml:5: consumers[0].plugins[0]: value must be " ..
                  "null: plugin 'cors' cannot be configured on a consumer" },
                errs)
  end)

  it("accepts only the http protocols", function()
    local conf, errs = load([[
_format_version: "3.0"
plugins:
- name: cors
  protocols: [tcp]
]])
    assert.is_nil(conf)
    assert.same({ "test.yml:4: plugins[0].protocols[0]: expected one of: " ..
                  "http, https, grpc, grpcs" }, errs)
  end)

  it("describes every config field", function()
    local schema = dofile(helpers.root .. "/plugins/cors/schema.lua")
    for _, item in ipairs(schema.fields) do
      local name, f = next(item)
      if name == "config" then
        for _, fi in ipairs(f.fields) do
          local fname, fdef = next(fi)
          assert.is_string(fdef.description, fname)
          assert.truthy(#fdef.description >= 10, fname)
          assert.truthy(#fdef.description <= 500, fname)
        end
      end
    end
  end)
end)
