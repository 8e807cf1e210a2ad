-- luacheck: no max line length (kept in the shape of Kong's specs)
-- myplugin's schema spec, written as a Kong plugin schema spec.
local PLUGIN_NAME = "myplugin"

local helpers = require "spec.kong_helpers"
local schema_def = require("kong.plugins." .. PLUGIN_NAME .. ".schema")
local v = helpers.validate_plugin_config_schema


describe(PLUGIN_NAME .. ": (schema)", function()
  it("accepts distinct request_header and response_header", function()
    local ok, err = v({
        request_header = "My-Request-Header",
        response_header = "Your-Response",
      }, schema_def)
    assert.is_nil(err)
    assert.is_truthy(ok)
  end)

  it("fills the defaults", function()
    local ok, err = v({}, schema_def)
    assert.is_nil(err)
    assert.equal("Hello-World", ok.config.request_header)
    assert.equal("Bye-World", ok.config.response_header)
    assert.equal(600, ok.config.ttl)
  end)

  it("does not accept identical request_header and response_header", function()
    local ok, err = v({
        request_header = "they-are-the-same",
        response_header = "they-are-the-same",
      }, schema_def)

    assert.is_same({
      ["config"] = {
        ["@entity"] = {
          [1] = "values of these fields must be distinct: 'request_header', 'response_header'"
        }
      }
    }, err)
    assert.is_falsy(ok)
  end)
end)
