-- http-log: config validation through luagate.config.
local config = require "luagate.config"
local helpers = require "spec.helpers"

local PLUGINS = { helpers.root .. "/plugins" }


local function load(config_yaml)
  return config.load_string([[
_format_version: "3.0"
plugins:
- name: http-log
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


local QUEUE_DEFAULTS = {
  max_batch_size = 1,
  max_coalescing_delay = 1,
  max_entries = 10000,
  max_retry_time = 60,
  initial_retry_delay = 0.01,
  max_retry_delay = 60,
  concurrency_limit = 1,
}


describe("http-log schema", function()
  it("fills Kong's defaults", function()
    local conf, errs = load("  config:\n    http_endpoint: " ..
                            "http://logs.internal:8080/ingest\n")
    assert.is_nil(errs)
    assert.same({
      http_endpoint = "http://logs.internal:8080/ingest",
      method = "POST",
      content_type = "application/json",
      timeout = 10000,
      keepalive = 60000,
      queue = QUEUE_DEFAULTS,
    }, conf.plugins[1].config)
  end)

  it("accepts every field", function()
    local conf, errs = load([[
  config:
    http_endpoint: http://user:pass@logs.internal/ingest?x=1
    method: PATCH
    content_type: "application/json; charset=utf-8"
    timeout: 2500
    keepalive: 1000
    headers:
      X-Api-Key: abc
      Authorization: Bearer t
    queue:
      max_batch_size: 50
      max_coalescing_delay: 0.5
      max_entries: 100
      max_bytes: 1000000
      max_retry_time: 10
      initial_retry_delay: 0.5
      max_retry_delay: 5
      concurrency_limit: -1
    custom_fields_by_lua:
      route: return nil
]])
    assert.is_nil(errs)
    local c = conf.plugins[1].config
    assert.equal("PATCH", c.method)
    assert.equal("application/json; charset=utf-8", c.content_type)
    assert.equal(2500, c.timeout)
    assert.equal(1000, c.keepalive)
    assert.same({ ["X-Api-Key"] = "abc", Authorization = "Bearer t" },
                c.headers)
    assert.same({ max_batch_size = 50, max_coalescing_delay = 0.5,
                  max_entries = 100, max_bytes = 1000000,
                  max_retry_time = 10, initial_retry_delay = 0.5,
                  max_retry_delay = 5, concurrency_limit = -1 }, c.queue)
    assert.same({ route = "return nil" }, c.custom_fields_by_lua)
  end)

  it("maps the deprecated queue_size and flush_timeout", function()
    local conf, errs = load([[
  config:
    http_endpoint: http://h/x
    queue_size: 5
    flush_timeout: 2
    retry_count: 3
]])
    assert.is_nil(errs)
    local c = conf.plugins[1].config
    assert.equal(5, c.queue.max_batch_size)
    assert.equal(2, c.queue.max_coalescing_delay)
    assert.is_nil(c.queue_size)
    assert.is_nil(c.flush_timeout)
    assert.is_nil(c.retry_count) -- no effect, as in Kong 3
    -- explicit queue fields win
    conf, errs = load([[
  config:
    http_endpoint: http://h/x
    queue_size: 5
    queue:
      max_batch_size: 7
]])
    assert.is_nil(errs)
    assert.equal(7, conf.plugins[1].config.queue.max_batch_size)
  end)

  it("requires http_endpoint", function()
    local conf, errs = load("  config: {}\n")
    assert.is_nil(conf)
    assert.same({ "test.yml:4: plugins[0].config.http_endpoint: required " ..
                  "field missing" }, errs)
  end)

  it("refuses endpoints it cannot send to", function()
    local cases = {
      ["https://logs/x"] = "https is not supported yet (luagate has no " ..
                           "TLS client): use an http:// endpoint",
      ["ftp://logs/x"] = "unsupported scheme 'ftp': expected http",
      ["not a url"] = "missing scheme in url",
      ["http://bad host/x"] = "invalid hostname: bad host",
    }
    for url, msg in pairs(cases) do
      local conf, errs = load("  config:\n    http_endpoint: '" .. url ..
                              "'\n")
      assert.is_nil(conf, url)
      assert.same({ "test.yml:5: plugins[0].config.http_endpoint: " .. msg },
                  errs)
    end
  end)

  it("refuses bad values", function()
    local conf, errs = load([[
  config:
    http_endpoint: http://h/x
    method: GET
    content_type: text/plain
    timeout: x
    headers:
      Content-Length: '1'
      content-type: a
      HOST: b
      bad header: x
      X-Ok: 1
    custom_fields_by_lua:
      f: "local = 1"
]])
    assert.is_nil(conf)
    assert.same({
      "test.yml:6: plugins[0].config.method: expected one of: POST, PUT, " ..
        "PATCH",
      "test.yml:7: plugins[0].config.content_type: expected one of: " ..
        "application/json, application/json; charset=utf-8",
      "test.yml:8: plugins[0].config.timeout: expected a number",
      "test.yml:10: plugins[0].config.headers.Content-Length: cannot " ..
        "contain 'Content-Length' header",
      "test.yml:11: plugins[0].config.headers.content-type: cannot " ..
        "contain 'Content-Type' header",
      "test.yml:12: plugins[0].config.headers.HOST: cannot contain " ..
        "'Host' header",
      "test.yml:13: plugins[0].config.headers.bad header: bad header " ..
        "name 'bad header', allowed characters are A-Z, a-z, 0-9, '_', " ..
        "and '-'",
      "test.yml:14: plugins[0].config.headers.X-Ok: expected a string",
      "test.yml:16: plugins[0].config.custom_fields_by_lua.f: error " ..
        "parsing custom_fields_by_lua: custom_fields_by_lua:1: '<name>' " ..
        "expected near '='",
    }, errs)
  end)

  it("checks the queue's bounds", function()
    local conf, errs = load([[
  config:
    http_endpoint: http://h/x
    queue:
      max_batch_size: 0
      concurrency_limit: 2
      max_coalescing_delay: 4000
      initial_retry_delay: 0
      max_retry_delay: 0
      max_entries: 0
      max_bytes: 1.5
      unknown: 1
]])
    assert.is_nil(conf)
    assert.same({
      "test.yml:7: plugins[0].config.queue.max_batch_size: value should " ..
        "be between 1 and 1000000",
      "test.yml:8: plugins[0].config.queue.concurrency_limit: expected " ..
        "one of: -1, 1",
      "test.yml:9: plugins[0].config.queue.max_coalescing_delay: value " ..
        "should be between 0 and 3600",
      "test.yml:10: plugins[0].config.queue.initial_retry_delay: value " ..
        "should be between 0.001 and 1000000",
      "test.yml:11: plugins[0].config.queue.max_retry_delay: value " ..
        "should be between 0.001 and 1000000",
      "test.yml:12: plugins[0].config.queue.max_entries: value should be " ..
        "between 1 and 1000000",
      "test.yml:13: plugins[0].config.queue.max_bytes: expected an integer",
      "test.yml:14: plugins[0].config.queue.unknown: unknown field",
    }, errs)
  end)

  it("describes every config field", function()
    local schema = dofile(helpers.root .. "/plugins/http-log/schema.lua")
    for _, item in ipairs(schema.fields) do
      local name, f = next(item)
      if name == "config" then
        check_descriptions(f.fields, "config.")
        check_descriptions(f.shorthand_fields, "config.")
      end
    end
  end)
end)
