-- file-log: config validation through luagate.config.
local config = require "luagate.config"
local helpers = require "spec.helpers"

local PLUGINS = { helpers.root .. "/plugins" }


local function load(config_yaml)
  return config.load_string([[
_format_version: "3.0"
plugins:
- name: file-log
]] .. config_yaml, "yaml", "test.yml", { plugins_dirs = PLUGINS })
end


-- every field of a record (recursively) has a description of 10..500 chars
local function check_descriptions(fields, prefix)
  for _, item in ipairs(fields) do
    local name, f = next(item)
    local path = prefix .. name
    assert.is_string(f.description, path)
    assert.truthy(#f.description >= 10 and #f.description <= 500, path)
    if f.type == "record" and f.fields then
      check_descriptions(f.fields, path .. ".")
    end
  end
end


describe("file-log schema", function()
  it("fills Kong's defaults", function()
    local conf, errs = load("  config:\n    path: /tmp/x.log\n")
    assert.is_nil(errs)
    local c = conf.plugins[1].config
    assert.equal("/tmp/x.log", c.path)
    assert.is_false(c.reopen)
    assert.is_nil(c.custom_fields_by_lua)
  end)

  it("accepts every field", function()
    local conf, errs = load([[
  config:
    path: /var/log/luagate/requests.log
    reopen: true
    custom_fields_by_lua:
      route: return nil
      my.nested: return kong.request.get_header('x')
]])
    assert.is_nil(errs)
    local c = conf.plugins[1].config
    assert.is_true(c.reopen)
    assert.same({ route = "return nil",
                  ["my.nested"] = "return kong.request.get_header('x')" },
                c.custom_fields_by_lua)
  end)

  it("requires a path", function()
    local conf, errs = load("  config: {}\n")
    assert.is_nil(conf)
    assert.same({ "test.yml:4: plugins[0].config.path: required field " ..
                  "missing" }, errs)
  end)

  -- Kong reports config.path as missing when `config` is left out too.
  it("requires a path when config is left out", function()
    local conf, errs = load("")
    assert.is_nil(conf)
    assert.same({ "test.yml:3: plugins[0].config.path: required field " ..
                  "missing" }, errs)
  end)

  it("refuses bad values", function()
    local conf, errs = load([[
  config:
    path: /tmp/a*b.log
    reopen: "yes"
    custom_fields_by_lua:
      a: "return ("
      b: 12
      c: ""
]])
    assert.is_nil(conf)
    assert.same({
      "test.yml:5: plugins[0].config.path: not a valid filename",
      "test.yml:6: plugins[0].config.reopen: expected a boolean",
      "test.yml:8: plugins[0].config.custom_fields_by_lua.a: error " ..
        "parsing custom_fields_by_lua: custom_fields_by_lua:1: " ..
        "unexpected symbol near '<eof>'",
      "test.yml:9: plugins[0].config.custom_fields_by_lua.b: expected a " ..
        "string",
      "test.yml:10: plugins[0].config.custom_fields_by_lua.c: length " ..
        "must be at least 1",
    }, errs)
  end)

  it("refuses each character Kong refuses in a path", function()
    for _, ch in ipairs({ "*", "&", "%", "`" }) do
      local conf, errs = load("  config:\n    path: '/tmp/a" .. ch ..
                              "b.log'\n")
      assert.is_nil(conf, ch)
      assert.same({ "test.yml:5: plugins[0].config.path: not a valid " ..
                    "filename" }, errs)
    end
  end)

  it("describes every config field", function()
    local schema = dofile(helpers.root .. "/plugins/file-log/schema.lua")
    for _, item in ipairs(schema.fields) do
      local name, f = next(item)
      if name == "config" then
        check_descriptions(f.fields, "config.")
      end
    end
  end)
end)
