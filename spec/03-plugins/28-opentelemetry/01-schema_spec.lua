-- opentelemetry: config validation through luagate.config.
local config = require "luagate.config"
local helpers = require "spec.helpers"

local PLUGINS = { helpers.root .. "/plugins" }


local function load(config_yaml)
  return config.load_string([[
_format_version: "3.0"
plugins:
- name: opentelemetry
]] .. config_yaml, "yaml", "test.yml", { plugins_dirs = PLUGINS })
end


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


local DEFAULTS = {
  traces_endpoint = "http://collector:4318/v1/traces",
  connect_timeout = 1000,
  send_timeout = 5000,
  read_timeout = 5000,
  header_type = "preserve",
  sampling_strategy = "parent_drop_probability_fallback",
  propagation = { default_format = "w3c" },
  queue = {
    max_batch_size = 200,
    max_coalescing_delay = 1,
    max_entries = 10000,
    max_retry_time = 60,
    initial_retry_delay = 0.01,
    max_retry_delay = 60,
    concurrency_limit = 1,
  },
}


describe("opentelemetry schema", function()
  it("fills Kong's defaults", function()
    local conf, errs = load("  config:\n    traces_endpoint: " ..
                            "http://collector:4318/v1/traces\n")
    assert.is_nil(errs)
    assert.same(DEFAULTS, conf.plugins[1].config)
  end)

  it("takes the deprecated endpoint as traces_endpoint", function()
    local conf, errs = load("  config:\n    endpoint: " ..
                            "http://collector:4318/v1/traces\n")
    assert.is_nil(errs)
    assert.same(DEFAULTS, conf.plugins[1].config)
  end)

  it("accepts every supported field", function()
    local conf, errs = load([[
  config:
    traces_endpoint: http://collector:4318/v1/traces
    headers:
      Authorization: Bearer t
    resource_attributes:
      service.name: edge
      deployment.environment: prod
    queue:
      max_batch_size: 50
    batch_span_count: 10
    batch_flush_delay: 2
    connect_timeout: 100
    send_timeout: 200
    read_timeout: 300
    http_response_header_for_traceid: X-Trace-Id
    header_type: w3c
    sampling_rate: 0.25
    sampling_strategy: parent_probability_fallback
    propagation:
      extract: [w3c]
      inject: [preserve, w3c]
      clear: [x-b3-traceid]
      default_format: w3c
]])
    assert.is_nil(errs)
    local c = conf.plugins[1].config
    assert.same({ Authorization = "Bearer t" }, c.headers)
    assert.same({ ["service.name"] = "edge",
                  ["deployment.environment"] = "prod" },
                c.resource_attributes)
    assert.equal(50, c.queue.max_batch_size)
    assert.equal(10, c.batch_span_count)
    assert.equal(2, c.batch_flush_delay)
    assert.equal(0.25, c.sampling_rate)
    assert.equal("X-Trace-Id", c.http_response_header_for_traceid)
    assert.same({ extract = { "w3c" }, inject = { "preserve", "w3c" },
                  clear = { "x-b3-traceid" }, default_format = "w3c" },
                c.propagation)
    -- ignore is supported too
    conf, errs = load("  config:\n    traces_endpoint: http://c/v1/t\n" ..
                      "    header_type: ignore\n")
    assert.is_nil(errs)
    assert.equal("ignore", conf.plugins[1].config.header_type)
  end)

  it("requires traces_endpoint", function()
    local conf, errs = load("  config: {}\n")
    assert.is_nil(conf)
    assert.same({ "test.yml:4: plugins[0].config.traces_endpoint: " ..
                  "required field missing" }, errs)
  end)

  it("refuses what luagate does not support, with the reason", function()
    local conf, errs = load([[
  config:
    traces_endpoint: https://c/v1/traces
    logs_endpoint: http://c/v1/logs
    header_type: b3
    propagation:
      extract: [w3c, b3]
      inject: [preserve, jaeger]
      default_format: datadog
]])
    assert.is_nil(conf)
    assert.same({
      "test.yml:5: plugins[0].config.traces_endpoint: https is not " ..
        "supported yet (luagate has no TLS client): use an http:// endpoint",
      "test.yml:6: plugins[0].config.logs_endpoint: logs are not " ..
        "supported by luagate yet (traces only)",
      "test.yml:7: plugins[0].config.header_type: header_type 'b3' is not " ..
        "supported by luagate yet (supported: preserve, ignore, w3c)",
      "test.yml:9: plugins[0].config.propagation.extract[1]: format 'b3' " ..
        "is not supported by luagate yet (supported: w3c)",
      "test.yml:10: plugins[0].config.propagation.inject[1]: format " ..
        "'jaeger' is not supported by luagate yet (supported: preserve, " ..
        "w3c)",
      "test.yml:11: plugins[0].config.propagation.default_format: format " ..
        "'datadog' is not supported by luagate yet (supported: w3c)",
    }, errs)
    for _, ht in ipairs({ "b3-single", "jaeger", "ot", "aws", "gcp",
                          "datadog", "instana" }) do
      conf, errs = load("  config:\n    traces_endpoint: http://c/v1/t\n" ..
                        "    header_type: " .. ht .. "\n")
      assert.is_nil(conf, ht)
      assert.same({ "test.yml:6: plugins[0].config.header_type: " ..
                    "header_type '" .. ht .. "' is not supported by " ..
                    "luagate yet (supported: preserve, ignore, w3c)" },
                  errs)
    end
  end)

  it("refuses bad values", function()
    local conf, errs = load([[
  config:
    traces_endpoint: http://c/v1/traces
    header_type: nope
    sampling_rate: 1.5
    sampling_strategy: always
    connect_timeout: -1
    resource_attributes:
      a: 1
    headers:
      'x y': z
    batch_span_count: 1.5
    propagation:
      extract: [nope]
]])
    assert.is_nil(conf)
    assert.same({
      "test.yml:6: plugins[0].config.header_type: expected one of: " ..
        "preserve, ignore, b3, b3-single, w3c, jaeger, ot, aws, gcp, " ..
        "datadog, instana",
      "test.yml:7: plugins[0].config.sampling_rate: value should be " ..
        "between 0 and 1",
      "test.yml:8: plugins[0].config.sampling_strategy: expected one of: " ..
        "parent_drop_probability_fallback, parent_probability_fallback",
      "test.yml:9: plugins[0].config.connect_timeout: value should be " ..
        "between 0 and 2147483646",
      "test.yml:11: plugins[0].config.resource_attributes.a: expected a " ..
        "string",
      "test.yml:13: plugins[0].config.headers.x y: bad header name " ..
        "'x y', allowed characters are A-Z, a-z, 0-9, '_', and '-'",
      "test.yml:14: plugins[0].config.batch_span_count: expected an " ..
        "integer",
      "test.yml:16: plugins[0].config.propagation.extract[0]: expected " ..
        "one of: b3, w3c, jaeger, ot, aws, gcp, datadog, instana",
    }, errs)
  end)

  it("describes every config field", function()
    local schema = dofile(helpers.root ..
                          "/plugins/opentelemetry/schema.lua")
    for _, item in ipairs(schema.fields) do
      local name, f = next(item)
      if name == "config" then
        check_descriptions(f.fields, "config.")
        check_descriptions(f.shorthand_fields, "config.")
      end
    end
  end)
end)
