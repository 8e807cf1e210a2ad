-- correlation-id: config validation through luagate.config.
local config = require "luagate.config"
local helpers = require "spec.helpers"

local PLUGINS = { helpers.root .. "/plugins" }


local function load(config_yaml)
  return config.load_string([[
_format_version: "3.0"
plugins:
- name: correlation-id
]] .. config_yaml, "yaml", "test.yml", { plugins_dirs = PLUGINS })
end


describe("correlation-id schema", function()
  it("fills Kong's defaults", function()
    local conf, errs = load("")
    assert.is_nil(errs)
    local c = conf.plugins[1].config
    assert.equal("Kong-Request-ID", c.header_name)
    assert.equal("uuid#counter", c.generator)
    assert.is_false(c.echo_downstream)
  end)

  it("accepts each generator", function()
    for _, g in ipairs({ "uuid", "uuid#counter", "tracker" }) do
      local conf, errs = load([[
  config:
    header_name: X-Correlation-ID
    generator: "]] .. g .. [["
    echo_downstream: true
]])
      assert.is_nil(errs)
      local c = conf.plugins[1].config
      assert.equal(g, c.generator)
      assert.equal("X-Correlation-ID", c.header_name)
      assert.is_true(c.echo_downstream)
    end
  end)

  it("refuses unknown generators and wrong types", function()
    local conf, errs = load([[
  config:
    header_name: 12
    generator: uuid4
    echo_downstream: "true"
]])
    assert.is_nil(conf)
    assert.same({
      "test.yml:5: plugins[0].config.header_name: expected a string",
      "test.yml:6: plugins[0].config.generator: expected one of: uuid, " ..
        "uuid#counter, tracker",
      "test.yml:7: plugins[0].config.echo_downstream: expected a boolean",
    }, errs)
  end)

  it("refuses an empty header name", function()
    local conf, errs = load("  config:\n    header_name: ''\n")
    assert.is_nil(conf)
    assert.same({ "test.yml:5: plugins[0].config.header_name: length must " ..
                  "be at least 1" }, errs)
  end)

  it("describes every config field", function()
    local schema = dofile(helpers.root .. "/plugins/correlation-id/schema.lua")
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
