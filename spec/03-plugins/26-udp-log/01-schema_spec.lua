-- udp-log: config validation through luagate.config.
local config = require "luagate.config"
local helpers = require "spec.helpers"

local PLUGINS = { helpers.root .. "/plugins" }


local function load(config_yaml)
  return config.load_string([[
_format_version: "3.0"
plugins:
- name: udp-log
]] .. config_yaml, "yaml", "test.yml", { plugins_dirs = PLUGINS })
end


describe("udp-log schema", function()
  it("fills Kong's defaults", function()
    local conf, errs = load("  config:\n    host: 127.0.0.1\n" ..
                            "    port: 9999\n")
    assert.is_nil(errs)
    assert.same({ host = "127.0.0.1", port = 9999, timeout = 10000 },
                conf.plugins[1].config)
  end)

  it("accepts every field", function()
    local conf, errs = load([[
  config:
    host: logs.internal
    port: 514
    timeout: 100
    custom_fields_by_lua:
      route: return nil
]])
    assert.is_nil(errs)
    local c = conf.plugins[1].config
    assert.equal(100, c.timeout)
    assert.same({ route = "return nil" }, c.custom_fields_by_lua)
  end)

  it("requires host and port", function()
    local conf, errs = load("  config: {}\n")
    assert.is_nil(conf)
    assert.same({
      "test.yml:4: plugins[0].config.host: required field missing",
      "test.yml:4: plugins[0].config.port: required field missing",
    }, errs)
  end)

  it("refuses bad values", function()
    local conf, errs = load([[
  config:
    host: ''
    port: -1
    timeout: soon
]])
    assert.is_nil(conf)
    assert.same({
      "test.yml:5: plugins[0].config.host: length must be at least 1",
      "test.yml:6: plugins[0].config.port: value should be between 0 and " ..
        "65535",
      "test.yml:7: plugins[0].config.timeout: expected a number",
    }, errs)
  end)

  it("describes every config field", function()
    local schema = dofile(helpers.root .. "/plugins/udp-log/schema.lua")
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
