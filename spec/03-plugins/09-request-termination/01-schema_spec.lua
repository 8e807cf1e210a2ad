-- request-termination: config validation through luagate.config (status
-- range, message / body / content_type / echo combinations, trigger).
local config = require "luagate.config"
local helpers = require "spec.helpers"

local PLUGINS = { helpers.root .. "/plugins" }


local function load(config_yaml)
  return config.load_string([[
_format_version: "3.0"
plugins:
- name: request-termination
]] .. config_yaml, "yaml", "test.yml", { plugins_dirs = PLUGINS })
end


local function errors_of(config_yaml)
  local conf, errs = load(config_yaml)
  assert.is_nil(conf)
  return errs
end


describe("request-termination schema", function()
  it("fills Kong's defaults", function()
    local conf, errs = load("")
    assert.is_nil(errs)
    local c = conf.plugins[1].config
    assert.equal(503, c.status_code)
    assert.is_false(c.echo)
    assert.is_nil(c.message)
    assert.is_nil(c.body)
    assert.is_nil(c.content_type)
    assert.is_nil(c.trigger)
  end)

  it("accepts a message, or a body with its content type", function()
    local conf, errs = load([[
  config:
    status_code: 418
    message: "I'm a teapot"
    trigger: X-Teapot
]])
    assert.is_nil(errs)
    local c = conf.plugins[1].config
    assert.equal(418, c.status_code)
    assert.equal("I'm a teapot", c.message)
    assert.equal("X-Teapot", c.trigger)

    conf, errs = load([[
  config:
    status_code: 200
    body: "<h1>hi</h1>"
    content_type: text/html
]])
    assert.is_nil(errs)
    c = conf.plugins[1].config
    assert.equal("<h1>hi</h1>", c.body)
    assert.equal("text/html", c.content_type)

    conf, errs = load("  config:\n    body: raw\n")
    assert.is_nil(errs)
    assert.equal("raw", conf.plugins[1].config.body)
    conf, errs = load("  config:\n    echo: true\n    message: hi\n")
    assert.is_nil(errs)
    assert.is_true(conf.plugins[1].config.echo)
  end)

  it("refuses a message with a body or a content type", function()
    local msg = "test.yml:5: plugins[0].config: message cannot be used " ..
                "with content_type or body"
    assert.same({ msg }, errors_of([[
  config:
    message: hi
    body: there
]]))
    assert.same({ msg }, errors_of([[
  config:
    message: hi
    content_type: text/plain
]]))
  end)

  it("refuses a content type without a body", function()
    assert.same({ "test.yml:5: plugins[0].config: content_type requires a " ..
                  "body" }, errors_of([[
  config:
    content_type: text/plain
]]))
  end)

  it("refuses echo with a body", function()
    assert.same({ "test.yml:5: plugins[0].config: echo cannot be used with " ..
                  "content_type and body" }, errors_of([[
  config:
    echo: true
    body: raw
]]))
  end)

  it("checks the status code range and the types", function()
    assert.same({ "test.yml:5: plugins[0].config.status_code: value should " ..
                  "be between 100 and 599" },
                errors_of("  config:\n    status_code: 600\n"))
    assert.same({ "test.yml:5: plugins[0].config.status_code: value should " ..
                  "be between 100 and 599" },
                errors_of("  config:\n    status_code: 99\n"))
    assert.same({
      "test.yml:5: plugins[0].config.status_code: expected an integer",
      "test.yml:6: plugins[0].config.echo: expected a boolean",
      "test.yml:7: plugins[0].config.message: expected a string",
    }, errors_of([[
  config:
    status_code: 503.5
    echo: "yes"
    message: 12
]]))
  end)

  it("wants a header name as trigger", function()
    assert.same({ "test.yml:5: plugins[0].config.trigger: bad header name " ..
                  "'x trigger', allowed characters are A-Z, a-z, 0-9, '_', " ..
                  "and '-'" }, errors_of("  config:\n    trigger: x trigger\n"))
  end)

  it("can be scoped to a consumer", function()
    local conf, errs = config.load_string([[
_format_version: "3.0"
consumers:
- username: bob
  plugins:
  - name: request-termination
]], "yaml", "test.yml", { plugins_dirs = PLUGINS })
    assert.is_nil(errs)
    assert.equal(1, #conf.plugins)
  end)

  it("describes every config field", function()
    local schema = dofile(helpers.root ..
                          "/plugins/request-termination/schema.lua")
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
