-- response-transformer: config validation through luagate.config (Kong's
-- fields and defaults, "name:value" entries, header names and values,
-- json_types).
local config = require "luagate.config"
local helpers = require "spec.helpers"

local PLUGINS = { helpers.root .. "/plugins" }


local function load(config_yaml)
  return config.load_string([[
_format_version: "3.0"
plugins:
- name: response-transformer
]] .. config_yaml, "yaml", "test.yml", { plugins_dirs = PLUGINS })
end


local function errors_of(config_yaml)
  local conf, errs = load(config_yaml)
  assert.is_nil(conf)
  return errs
end


local function config_of(config_yaml)
  local conf, errs = load(config_yaml)
  assert.is_nil(errs)
  return conf.plugins[1].config
end


describe("response-transformer schema", function()
  it("fills Kong's defaults: every list empty", function()
    local c = config_of("")
    assert.same({ json = {}, headers = {} }, c.remove)
    assert.same({ json = {}, headers = {} }, c.rename)
    for _, op in ipairs({ "replace", "add", "append" }) do
      assert.same({ json = {}, json_types = {}, headers = {} }, c[op], op)
    end
  end)

  it("accepts a full config", function()
    local c = config_of([[
  config:
    remove:
      headers: [X-Powered-By, "x-b:ignored"]
      json: [secret]
    rename:
      headers: ["X-Old:X-New"]
      json: ["a:b"]
    replace:
      headers: ["X-R:replaced"]
      json: ["n:1", "flag:true", "s:text:with:colons"]
      json_types: [number, boolean, string]
    add:
      headers: ["X-A:added"]
      json: ["new:v"]
    append:
      headers: ["X-M:a", "X-M:b"]
      json: ["list:1"]
      json_types: [number]
]])
    assert.same({ "X-Powered-By", "x-b:ignored" }, c.remove.headers)
    assert.same({ "number", "boolean", "string" }, c.replace.json_types)
    assert.same({ "list:1" }, c.append.json)
  end)

  it("wants name:value entries", function()
    assert.same({
      "test.yml:6: plugins[0].config.add.headers[0]: invalid value: X-A",
      "test.yml:7: plugins[0].config.add.json[0]: invalid value: k",
      "test.yml:9: plugins[0].config.rename.json[0]: invalid value: :x",
    }, errors_of([[
  config:
    add:
      headers: [X-A]
      json: [k]
    rename:
      json: [":x"]
]]))
  end)

  it("checks header names and values", function()
    assert.same({
      "test.yml:6: plugins[0].config.rename.headers[0]: 'b c' is not a " ..
      "valid header",
      "test.yml:8: plugins[0].config.add.headers[0]: 'X@' is not a " ..
      "valid header",
      "test.yml:10: plugins[0].config.append.headers[0]: 'a\nb' is not a " ..
      "valid header",
    }, errors_of([[
  config:
    rename:
      headers: ["a:b c"]
    add:
      headers: ["X@:1"]
    append:
      headers: ["X-V:a\nb"]
]]))
  end)

  it("wants known json_types", function()
    assert.same({
      "test.yml:6: plugins[0].config.add.json_types[0]: expected one of: " ..
      "boolean, number, string",
    }, errors_of([[
  config:
    add:
      json_types: [integer]
]]))
  end)

  it("describes every config field", function()
    local schema = dofile(helpers.root ..
                          "/plugins/response-transformer/schema.lua")
    local function check(fields, path)
      for _, fi in ipairs(fields) do
        local fname, fdef = next(fi)
        local p = path .. "." .. fname
        assert.is_string(fdef.description, p)
        assert.truthy(#fdef.description >= 10, p)
        assert.truthy(#fdef.description <= 500, p)
        if fdef.type == "record" then
          check(fdef.fields, p)
        end
      end
    end
    for _, item in ipairs(schema.fields) do
      local name, f = next(item)
      if name == "config" then
        check(f.fields, "config")
      end
    end
  end)
end)
