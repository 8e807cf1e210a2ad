-- xml-json: config validation through luagate.config (defaults, SOAP
-- options, element names).
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


local function errors_of(body)
  local conf, errs = load([[
_format_version: "3.0"
plugins:
- name: xml-json
  config:
]] .. body)
  assert.is_nil(conf)
  return errs
end


describe("xml-json schema", function()
  it("fills the defaults", function()
    local c = plugin_config([[
_format_version: "3.0"
plugins:
- name: xml-json
]])
    assert.same({ to_xml = true, root = "request" }, c.request)
    assert.same({ to_json = true, strip_namespaces = true, unwrap_soap = true },
                c.response)
  end)

  it("fills the SOAP defaults", function()
    local c = plugin_config([[
_format_version: "3.0"
plugins:
- name: xml-json
  config:
    request: { soap: {} }
]])
    assert.same({ version = "1.1" }, c.request.soap)
  end)

  it("accepts every field", function()
    local c = plugin_config([[
_format_version: "3.0"
plugins:
- name: xml-json
  config:
    request:
      to_xml: true
      root: m:GetPrice
      soap: { version: "1.2", action: "urn:prices#GetPrice",
              namespace: "urn:prices" }
    response:
      to_json: false
      strip_namespaces: false
      unwrap_soap: false
]])
    assert.same({ to_xml = true, root = "m:GetPrice", soap = {
      version = "1.2", action = "urn:prices#GetPrice", namespace = "urn:prices",
    } }, c.request)
    assert.same({ to_json = false, strip_namespaces = false,
                  unwrap_soap = false }, c.response)
  end)

  it("refuses an invalid root element name", function()
    for _, name in ipairs({ "1abc", "a b", "-a", "a>b" }) do
      assert.same({ "test.yml:5: plugins[0].config.request.root: '" .. name ..
                    "' is not a valid XML element name" },
                  errors_of("    request: { root: '" .. name .. "' }\n"))
    end
  end)

  it("checks the SOAP options", function()
    assert.same({ "test.yml:5: plugins[0].config.request.soap.version: " ..
                  "expected one of: 1.1, 1.2" },
                errors_of("    request: { soap: { version: '1.3' } }\n"))
    assert.same({ "test.yml:5: plugins[0].config.request.soap.version: " ..
                  "expected a string" },
                errors_of("    request: { soap: { version: 1.2 } }\n"))
    assert.same({ "test.yml:5: plugins[0].config.request.soap.action: " ..
                  "must not contain CR, LF or '\"'" },
                errors_of("    request: { soap: { action: 'a\"b' } }\n"))
    assert.same({ "test.yml:5: plugins[0].config.request.soap.namespace: " ..
                  "must not contain CR, LF or '\"'" },
                errors_of("    request: { soap: { namespace: \"a\\nb\" } }\n"))
    assert.same({ "test.yml:5: plugins[0].config.request.soap.envelope: " ..
                  "unknown field" },
                errors_of("    request: { soap: { envelope: x } }\n"))
  end)

  it("checks types", function()
    assert.same({ "test.yml:5: plugins[0].config.response.to_json: " ..
                  "expected a boolean" },
                errors_of("    response: { to_json: 'yes' }\n"))
  end)
end)
