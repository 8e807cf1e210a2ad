-- circuit-breaker: config validation through luagate.config (defaults,
-- ranges, the fallback record, no consumer scope).
local config = require "luagate.config"
local helpers = require "spec.helpers"

local PLUGINS = { helpers.root .. "/plugins" }


local function load(config_lines, extra, tail)
  return config.load_string("_format_version: \"3.0\"\n" ..
                            "plugins:\n" ..
                            "- name: circuit-breaker\n" ..
                            (extra or "") ..
                            "  config:\n" .. config_lines .. (tail or ""),
                            "yaml", "test.yml", { plugins_dirs = PLUGINS })
end


local function ok(config_lines)
  local conf, errs = load(config_lines)
  assert.is_nil(errs)
  return conf.plugins[1].config
end


local function errs_of(config_lines, extra, tail)
  local conf, errs = load(config_lines, extra, tail)
  assert.is_nil(conf)
  return errs
end


describe("circuit-breaker schema", function()
  it("fills the defaults", function()
    local c = ok("    {}\n")
    assert.equal("service", c.scope)
    assert.equal(5, c.failure_threshold)
    assert.is_nil(c.error_ratio)
    assert.equal(20, c.min_requests)
    assert.equal(60, c.window_s)
    local statuses = {}
    for s = 500, 599 do statuses[#statuses + 1] = s end
    assert.same(statuses, c.failure_statuses)
    assert.equal(30, c.open_timeout_s)
    assert.equal(1, c.half_open_requests)
    assert.equal("kong", c.dictionary_name)
    assert.same({
      status = 503,
      body = { message = "Service temporarily unavailable (circuit open)" },
      headers = {},
    }, c.fallback)
  end)

  it("accepts every field", function()
    local c = ok([[
    scope: route
    failure_threshold: 10
    error_ratio: 0.25
    min_requests: 50
    window_s: 10
    failure_statuses: [502, 503, 504, 429]
    open_timeout_s: 2.5
    half_open_requests: 3
    dictionary_name: breakers
    fallback:
      status: 200
      body: "maintenance"
      headers:
        Content-Type: text/plain
        X-Fallback: "yes"
]])
    assert.equal("route", c.scope)
    assert.equal(10, c.failure_threshold)
    assert.equal(0.25, c.error_ratio)
    assert.equal(50, c.min_requests)
    assert.equal(10, c.window_s)
    assert.same({ 502, 503, 504, 429 }, c.failure_statuses)
    assert.equal(2.5, c.open_timeout_s)
    assert.equal(3, c.half_open_requests)
    assert.equal("breakers", c.dictionary_name)
    assert.same({ status = 200, body = "maintenance",
                  headers = { ["Content-Type"] = "text/plain",
                              ["X-Fallback"] = "yes" } }, c.fallback)

    c = ok("    fallback:\n      body:\n        error: down\n        code: 7\n")
    assert.same({ error = "down", code = 7 }, c.fallback.body)
    assert.equal(503, c.fallback.status)
  end)

  it("checks ranges", function()
    local cases = {
      { "scope: consumer", "test.yml:5: plugins[0].config.scope: expected " ..
        "one of: service, route" },
      { "failure_threshold: 0", "test.yml:5: plugins[0].config." ..
        "failure_threshold: value should be between 1 and 1000000" },
      { "failure_threshold: 1.5", "test.yml:5: plugins[0].config." ..
        "failure_threshold: expected an integer" },
      { "error_ratio: 0", "test.yml:5: plugins[0].config.error_ratio: " ..
        "value must be greater than 0" },
      { "error_ratio: 1.5", "test.yml:5: plugins[0].config.error_ratio: " ..
        "value should be between 0 and 1" },
      { "min_requests: 0", "test.yml:5: plugins[0].config.min_requests: " ..
        "value should be between 1 and 1000000" },
      { "window_s: 0", "test.yml:5: plugins[0].config.window_s: value " ..
        "should be between 1 and 86400" },
      { "failure_statuses: [600]", "test.yml:5: plugins[0].config." ..
        "failure_statuses[0]: value should be between 100 and 599" },
      { "open_timeout_s: 0", "test.yml:5: plugins[0].config." ..
        "open_timeout_s: value must be greater than 0" },
      { "half_open_requests: 0", "test.yml:5: plugins[0].config." ..
        "half_open_requests: value should be between 1 and 1000" },
    }
    for _, case in ipairs(cases) do
      assert.same({ case[2] }, errs_of("    " .. case[1] .. "\n"))
    end
  end)

  it("checks the fallback", function()
    assert.same({ "test.yml:6: plugins[0].config.fallback.status: value " ..
                  "should be between 100 and 599" },
                errs_of("    fallback:\n      status: 99\n"))
    assert.same({ "test.yml:6: plugins[0].config.fallback.body: expected " ..
                  "a string or a table" },
                errs_of("    fallback:\n      body: 12\n"))
    assert.same({ "test.yml:7: plugins[0].config.fallback.headers.X-A: " ..
                  "expected a string" },
                errs_of("    fallback:\n      headers:\n        X-A: 1\n"))
  end)

  it("cannot be scoped to a consumer", function()
    assert.same({ "test.yml:4: plugins[0].consumer: value must be null: " ..
                  "plugin 'circuit-breaker' cannot be configured on a " ..
                  "consumer" },
                errs_of("    {}\n", "  consumer: bob\n",
                        "consumers:\n- username: bob\n"))
  end)

  it("every field has a description", function()
    local schema = require("kong.plugins.circuit-breaker.schema")
    local function check(fields, path)
      for _, f in ipairs(fields) do
        local name, def = next(f)
        if path ~= "" or name == "config" then
          if name ~= "config" then
            assert.is_string(def.description, path .. name)
            assert.is_true(#def.description >= 10, path .. name)
          end
          if def.fields then
            check(def.fields, path .. name .. ".")
          end
        end
      end
    end
    check(schema.fields, "")
  end)
end)
