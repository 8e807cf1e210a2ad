local config = require "luagate.config"

local function load(plugin_config)
  local yaml = table.concat({
    '_format_version: "3.0"',
    "services:",
    "- name: s",
    "  url: http://127.0.0.1:15555",
    "  routes: [{name: r, paths: [/]}]",
    "  plugins:",
    "  - name: response-compression",
    "    config: " .. plugin_config,
  }, "\n")
  return config.load_string(yaml, "yaml", "test.yml", { plugins_dirs = { "plugins" } })
end

describe("response-compression schema", function()
  it("fills the defaults", function()
    local conf = assert(load("{}"))
    local c = conf.plugins[1].config
    assert.equal(1024, c.min_size)
    assert.equal(6, c.gzip_level)
    assert.is_true(c.brotli)
    assert.equal(4, c.brotli_level)
    assert.truthy(#c.types > 5)
  end)

  it("refuses levels out of range", function()
    local conf, errs = load("{gzip_level: 10, brotli_level: 12}")
    assert.is_nil(conf)
    assert.same({
      "test.yml:8: services[0].plugins[0].config.brotli_level: value should be between 0 and 11",
      "test.yml:8: services[0].plugins[0].config.gzip_level: value should be between 1 and 9",
    }, errs)
  end)

  it("cannot be scoped to a consumer", function()
    local yaml = [[
_format_version: "3.0"
consumers:
- username: alice
  plugins:
  - name: response-compression
]]
    local conf, errs = config.load_string(yaml, "yaml", "test.yml",
                                          { plugins_dirs = { "plugins" } })
    assert.is_nil(conf)
    assert.matches("cannot be configured on a consumer", errs[1], 1, true)
  end)
end)
