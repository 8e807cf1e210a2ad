-- request-size-limiting: config validation through luagate.config.
local config = require "luagate.config"
local helpers = require "spec.helpers"

local PLUGINS = { helpers.root .. "/plugins" }


local function load(yaml)
  return config.load_string(yaml, "yaml", "test.yml",
                            { plugins_dirs = PLUGINS })
end


describe("request-size-limiting schema", function()
  it("fills Kong's defaults", function()
    local conf, errs = load([[
_format_version: "3.0"
plugins:
- name: request-size-limiting
]])
    assert.is_nil(errs)
    assert.same({ allowed_payload_size = 128, size_unit = "megabytes",
                  require_content_length = false },
                (function()
                  local c = conf.plugins[1].config
                  return { allowed_payload_size = c.allowed_payload_size,
                           size_unit = c.size_unit,
                           require_content_length = c.require_content_length }
                end)())
  end)

  it("accepts each size unit", function()
    for _, unit in ipairs({ "megabytes", "kilobytes", "bytes" }) do
      local conf, errs = load([[
_format_version: "3.0"
plugins:
- name: request-size-limiting
  config:
    allowed_payload_size: 10
    size_unit: ]] .. unit .. [[

    require_content_length: true
]])
      assert.is_nil(errs)
      local c = conf.plugins[1].config
      assert.equal(unit, c.size_unit)
      assert.equal(10, c.allowed_payload_size)
      assert.is_true(c.require_content_length)
    end
  end)

  it("refuses unknown units and wrong types", function()
    local conf, errs = load([[
_format_version: "3.0"
plugins:
- name: request-size-limiting
  config:
    allowed_payload_size: 1.5
    size_unit: gigabytes
    require_content_length: "no"
    extra: 1
]])
    assert.is_nil(conf)
    assert.same({
      "test.yml:5: plugins[0].config.allowed_payload_size: expected an " ..
        "integer",
      "test.yml:6: plugins[0].config.size_unit: expected one of: " ..
        "megabytes, kilobytes, bytes",
      "test.yml:7: plugins[0].config.require_content_length: expected a " ..
        "boolean",
      "test.yml:8: plugins[0].config.extra: unknown field",
    }, errs)
  end)

  it("refuses a string size", function()
    local conf, errs = load([[
_format_version: "3.0"
plugins:
- name: request-size-limiting
  config:
    allowed_payload_size: "128"
]])
    assert.is_nil(conf)
    assert.same({ "test.yml:5: plugins[0].config.allowed_payload_size: " ..
                  "expected an integer" }, errs)
  end)

  it("describes every config field", function()
    local schema = dofile(helpers.root ..
                          "/plugins/request-size-limiting/schema.lua")
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
