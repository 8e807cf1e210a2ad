-- The schema cases pre-function and post-function share (their schema is
-- one, kong.plugins.pre-function._schema): config validation through
-- luagate.config (phases, code compiled at load with the path of a bad
-- snippet, bytecode refused, the deprecated `functions`, untrusted_lua,
-- no consumer scope). Used by 14-pre-function/01-schema_spec.lua and
-- 15-post-function/01-schema_spec.lua.
local config = require "luagate.config"
local helpers = require "spec.helpers"

local PLUGINS = { helpers.root .. "/plugins" }

local PHASES = { "certificate", "rewrite", "access", "header_filter",
                 "body_filter", "log" }


local function load(config_yaml, name)
  return config.load_string([[
_format_version: "3.0"
plugins:
- name: ]] .. (name or "pre-function") .. "\n" .. config_yaml, "yaml",
    "test.yml", { plugins_dirs = PLUGINS })
end


local function errors_of(config_yaml, name)
  local conf, errs = load(config_yaml, name)
  assert.is_nil(conf)
  return errs
end


return function(plugin)
  describe(plugin .. " schema", function()
    it("takes code for every phase, empty by default", function()
      local conf, errs = load([[
  config:
    access:
    - "kong.service.request.set_header('X-A', '1')"
    - |
      local n = 0
      return function() n = n + 1 end
]], plugin)
      assert.is_nil(errs)
      local c = conf.plugins[1].config
      assert.equal(2, #c.access)
      for _, phase in ipairs(PHASES) do
        if phase ~= "access" then
          assert.same({}, c[phase], phase)
        end
      end
    end)

    it("wants code for at least one phase", function()
      assert.same({
        "test.yml:3: plugins[0]: at least one of these fields must be " ..
        "non-empty: 'config.certificate', 'config.rewrite', " ..
        "'config.access', 'config.header_filter', 'config.body_filter', " ..
        "'config.log'",
      }, errors_of("", plugin))
      assert.same({
        "test.yml:3: plugins[0]: at least one of these fields must be " ..
        "non-empty: 'config.certificate', 'config.rewrite', " ..
        "'config.access', 'config.header_filter', 'config.body_filter', " ..
        "'config.log'",
      }, errors_of("  config:\n    log: []\n", plugin))
    end)

    it("refuses code that does not compile, with its path", function()
      assert.same({
        "test.yml:7: plugins[0].config.header_filter[1]: error parsing " ..
        plugin .. ": [string \"x x\"]:1: '=' expected near 'x'",
        "test.yml:9: plugins[0].config.log[0]: error parsing " .. plugin ..
        ": [string \"return function(\"]:1: <name> or '...' " ..
        "expected near '<eof>'",
      }, errors_of([[
  config:
    header_filter:
    - "return 1"
    - "x x"
    log:
    - "return function("
]], plugin))
    end)

    it("refuses non-strings and empty code", function()
      assert.same({
        "test.yml:6: plugins[0].config.access[0]: expected a string",
        "test.yml:7: plugins[0].config.access[1]: length must be at " ..
        "least 1",
      }, errors_of([[
  config:
    access:
    - 12
    - ""
]], plugin))
    end)

    it("does not run the code when validating it", function()
      local conf, errs = load([[
  config:
    access:
    - "error('must not run')"
]], plugin)
      assert.is_nil(errs)
      assert.equal(1, #conf.plugins[1].config.access)
    end)

    it("refuses bytecode", function()
      local bytecode = string.dump(function() return 1 end)
      local conf, errs = config.load_string(
        "return { _format_version = '3.0', plugins = { { name = '" ..
        plugin .. "', config = { access = { " ..
        string.format("%q", bytecode) .. " } } } } }", "lua", "test.lua",
        { plugins_dirs = PLUGINS })
      assert.is_nil(conf)
      assert.same({ "test.lua: plugins[0].config.access[0]: error " ..
                    "parsing " .. plugin .. ": attempt to load chunk " ..
                    "with wrong mode" }, errs)
    end)

    it("accepts Kong 2.x's functions as the access phase", function()
      local conf, errs = load([[
  config:
    functions:
    - "kong.service.request.set_header('X-A', '1')"
]], plugin)
      assert.is_nil(errs)
      local c = conf.plugins[1].config
      assert.same({ "kong.service.request.set_header('X-A', '1')" },
                  c.access)
      assert.is_nil(c.functions)
      assert.same({
        "test.yml:6: plugins[0].config.functions[0]: error parsing " ..
        plugin .. ": [string \"x x\"]:1: '=' expected near 'x'",
      }, errors_of("  config:\n    functions:\n    - x x\n", plugin))
    end)

    it("refuses unknown fields", function()
      assert.same({
        "test.yml:5: plugins[0].config.phase: unknown field",
      }, errors_of("  config:\n    phase: access\n    access: ['x = 1']\n",
                   plugin))
    end)

    it("cannot be scoped to a consumer", function()
      local conf, errs = config.load_string([[
_format_version: "3.0"
consumers:
- username: bob
  plugins:
  - name: ]] .. plugin .. [[

    config:
      access: ["x = 1"]
]], "yaml", "test.yml", { plugins_dirs = PLUGINS })
      assert.is_nil(conf)
      assert.equal(1, #errs)
      assert.matches("value must be null", errs[1], 1, true)
    end)

    describe("with untrusted_lua", function()
      after_each(function()
        _G.LUAGATE_SETTINGS = nil
      end)

      it("= off, refuses any code", function()
        _G.LUAGATE_SETTINGS = { untrusted_lua = "off" }
        assert.same({
          "test.yml:6: plugins[0].config.access[0]: error parsing " ..
          plugin .. ": loading of untrusted Lua code disabled because " ..
          "'untrusted_lua' config option is set to 'off'",
        }, errors_of("  config:\n    access:\n    - x = 1\n", plugin))
      end)

      it("= on, accepts code", function()
        _G.LUAGATE_SETTINGS = { untrusted_lua = "on" }
        local conf, errs = load("  config:\n    access:\n    - x = 1\n",
                                plugin)
        assert.is_nil(errs)
        assert.truthy(conf)
      end)
    end)

    it("describes every config field", function()
      local schema = dofile(helpers.root .. "/plugins/" .. plugin ..
                            "/schema.lua")
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
end
