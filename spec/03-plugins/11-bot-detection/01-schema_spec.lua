-- bot-detection: config validation through luagate.config.
local config = require "luagate.config"
local helpers = require "spec.helpers"

local PLUGINS = { helpers.root .. "/plugins" }


local function load(yaml)
  return config.load_string(yaml, "yaml", "test.yml",
                            { plugins_dirs = PLUGINS })
end


describe("bot-detection schema", function()
  it("fills Kong's defaults", function()
    local conf, errs = load([[
_format_version: "3.0"
plugins:
- name: bot-detection
]])
    assert.is_nil(errs)
    local c = conf.plugins[1].config
    assert.same({}, c.allow)
    assert.same({}, c.deny)
  end)

  it("accepts regex lists", function()
    local conf, errs = load([[
_format_version: "3.0"
plugins:
- name: bot-detection
  config:
    allow: ["facebookexternalhit/1\\.1", "^MyClient"]
    deny: ["HelloWorld", "(?i)evil[0-9]+"]
]])
    assert.is_nil(errs)
    local c = conf.plugins[1].config
    assert.same({ "facebookexternalhit/1\\.1", "^MyClient" }, c.allow)
    assert.same({ "HelloWorld", "(?i)evil[0-9]+" }, c.deny)
  end)

  it("refuses invalid regexes and wrong types", function()
    local conf, errs = load([[
_format_version: "3.0"
plugins:
- name: bot-detection
  config:
    allow: ["(unclosed", "ok"]
    deny: "HelloWorld"
]])
    assert.is_nil(conf)
    assert.same({
      "test.yml:5: plugins[0].config.allow[0]: not a valid regex: " ..
        "(unclosed (missing closing parenthesis at offset 9)",
      "test.yml:6: plugins[0].config.deny: expected an array",
    }, errs)
  end)

  it("cannot be scoped to a consumer", function()
    local conf, errs = load([[
_format_version: "3.0"
consumers:
- username: bob
  plugins:
  - name: bot-detection
]])
    assert.is_nil(conf)
    assert.same({ "test.yml:5: consumers[0].plugins[0]: value must be " ..
                  "null: plugin 'bot-detection' cannot be configured on a " ..
                  "consumer" }, errs)
  end)

  it("describes every config field", function()
    local schema = dofile(helpers.root .. "/plugins/bot-detection/schema.lua")
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

  it("has a built-in list of valid regexes", function()
    local Schema = require "luagate.schema"
    local rules = dofile(helpers.root .. "/plugins/bot-detection/rules.lua")
    assert.truthy(#rules.bots > 5)
    for _, re in ipairs(rules.bots) do
      assert.is_true(Schema.check_regex(re), re)
    end
  end)
end)
