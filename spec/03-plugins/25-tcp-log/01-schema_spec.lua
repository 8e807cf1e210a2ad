-- tcp-log: config validation through luagate.config.
local config = require "luagate.config"
local helpers = require "spec.helpers"

local PLUGINS = { helpers.root .. "/plugins" }


local function load(config_yaml)
  return config.load_string([[
_format_version: "3.0"
plugins:
- name: tcp-log
]] .. config_yaml, "yaml", "test.yml", { plugins_dirs = PLUGINS })
end


describe("tcp-log schema", function()
  it("fills Kong's defaults", function()
    local conf, errs = load("  config:\n    host: logs.internal\n" ..
                            "    port: 5140\n")
    assert.is_nil(errs)
    assert.same({
      host = "logs.internal",
      port = 5140,
      timeout = 10000,
      keepalive = 60000,
      tls = false,
    }, conf.plugins[1].config)
  end)

  it("accepts every field", function()
    local conf, errs = load([[
  config:
    host: 10.0.0.5
    port: 514
    timeout: 500
    keepalive: 1000
    tls: false
    tls_sni: logs.example.com
    custom_fields_by_lua:
      a.b: return 1
]])
    assert.is_nil(errs)
    local c = conf.plugins[1].config
    assert.equal("10.0.0.5", c.host)
    assert.equal("logs.example.com", c.tls_sni)
    assert.same({ ["a.b"] = "return 1" }, c.custom_fields_by_lua)
  end)

  it("requires host and port", function()
    local conf, errs = load("  config: {}\n")
    assert.is_nil(conf)
    assert.same({
      "test.yml:4: plugins[0].config.host: required field missing",
      "test.yml:4: plugins[0].config.port: required field missing",
    }, errs)
  end)

  it("refuses bad values and TLS", function()
    local conf, errs = load([[
  config:
    host: 'bad host'
    port: 70000
    tls: true
    timeout: a
    keepalive: b
    tls_sni: 1
    custom_fields_by_lua:
      x: "return )"
]])
    assert.is_nil(conf)
    assert.same({
      "test.yml:5: plugins[0].config.host: invalid hostname: bad host",
      "test.yml:6: plugins[0].config.port: value should be between 0 and " ..
        "65535",
      "test.yml:7: plugins[0].config.tls: TLS is not supported yet " ..
        "(luagate has no TLS client)",
      "test.yml:8: plugins[0].config.timeout: expected a number",
      "test.yml:9: plugins[0].config.keepalive: expected a number",
      "test.yml:10: plugins[0].config.tls_sni: expected a string",
      "test.yml:12: plugins[0].config.custom_fields_by_lua.x: error " ..
        "parsing custom_fields_by_lua: custom_fields_by_lua:1: " ..
        "unexpected symbol near ')'",
    }, errs)
  end)

  it("describes every config field", function()
    local schema = dofile(helpers.root .. "/plugins/tcp-log/schema.lua")
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
