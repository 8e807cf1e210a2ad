-- luacheck: no max line length
-- The plugin loader for plugins copied from Kong installations: Kong 3
-- strictness by default, the opt-in legacy mode for Kong 1.x/2.x plugins
-- (`_luagate: { plugins_legacy: true }`), and the config key itself.
local helpers = require "spec.helpers"

local fmt = string.format
local PLUGINS_DIR = helpers.root .. "/spec/04-compat/plugins"


local function legacy_config(mock_port, legacy)
  return {
    _format_version = "3.0",
    _luagate = legacy ~= nil and { plugins_legacy = legacy } or nil,
    services = {
      {
        name = "mock", url = fmt("http://127.0.0.1:%d", mock_port),
        routes = {
          { name = "legacy", paths = { "/legacy" },
            plugins = { { name = "compat-legacy", config = { value = "v" } } } },
        },
      },
    },
  }
end


local function check(config, dir)
  local prefix = helpers.make_prefix("compat-check")
  local path = helpers.make_config_file(config, prefix)
  return helpers.luagate_exec({ "check", "-c", path,
                                "--plugins-dir", dir or PLUGINS_DIR })
end


describe("compat: plugin loader", function()
  describe("legacy mode", function()
    local mock, gw, client

    lazy_setup(function()
      mock = helpers.mock_upstream()
      gw = assert(helpers.start_luagate({
        config = legacy_config(mock.port, true),
        args = { "--plugins-dir", PLUGINS_DIR },
      }))
    end)

    lazy_teardown(function()
      if gw then helpers.stop_luagate(gw) end
      if mock then mock.stop() end
    end)

    before_each(function()
      client = helpers.proxy_client(gw)
    end)

    after_each(function()
      if client then client:close() end
    end)

    it("runs a BasePlugin:extend() handler with no VERSION and no PRIORITY",
       function()
      local res = client:get("/legacy")
      local echo = helpers.json_decode(assert.res_status(200, res))
      assert.equal("v:compat-legacy", echo.headers["x-legacy"])
      assert.equal("yes", res.headers["x-legacy-response"])
    end)
  end)

  describe("Kong 3 strictness (default)", function()
    it("refuses a Kong 2 plugin with a hint about legacy mode", function()
      local rc, _, err = check(legacy_config(9, nil))
      assert.equal(1, rc)
      assert.matches("compat-legacy", err, 1, true)
      assert.matches("plugins_legacy: true", err, 1, true)
    end)

    it("accepts it with _luagate.plugins_legacy", function()
      local rc, out, err = check(legacy_config(9, true))
      assert.equal(0, rc, (out or "") .. (err or ""))
    end)

    it("refuses PRIORITY = math.huge with a clear message", function()
      local dir = helpers.make_prefix("compat-huge")
      assert(os.execute("mkdir -p " .. dir .. "/huge"))
      helpers.write_file(dir .. "/huge/handler.lua",
        "return { PRIORITY = math.huge, VERSION = '1.0', access = function() end }")
      helpers.write_file(dir .. "/huge/schema.lua",
        "return { name = 'huge', fields = { { config = { type = 'record', fields = {} } } } }")
      local rc, _, err = check({ _format_version = "3.0",
                                 plugins = { { name = "huge" } } }, dir)
      assert.equal(1, rc)
      assert.matches("plugin 'huge': PRIORITY must be an integer, got inf " ..
                     "(math.huge is refused since Kong 3.0", err, 1, true)
    end)

    it("refuses a VERSION that is not x.y[.z]", function()
      local dir = helpers.make_prefix("compat-version")
      assert(os.execute("mkdir -p " .. dir .. "/badver"))
      helpers.write_file(dir .. "/badver/handler.lua",
        "return { PRIORITY = 10, VERSION = 'one', access = function() end }")
      helpers.write_file(dir .. "/badver/schema.lua",
        "return { name = 'badver', fields = { { config = { type = 'record', fields = {} } } } }")
      local rc, _, err = check({ _format_version = "3.0",
                                 plugins = { { name = "badver" } } }, dir)
      assert.equal(1, rc)
      assert.matches("VERSION must be a string like", err, 1, true)
    end)
  end)

  describe("_luagate config key", function()
    it("refuses unknown settings and wrong types", function()
      local rc, _, err = check({ _format_version = "3.0",
                                 _luagate = { nope = true } })
      assert.equal(1, rc)
      assert.matches("_luagate.nope", err, 1, true)
      rc, _, err = check({ _format_version = "3.0",
                           _luagate = { plugins_legacy = "yes" } })
      assert.equal(1, rc)
      assert.matches("_luagate.plugins_legacy: expected a boolean", err, 1, true)
    end)
  end)
end)
