-- proxy-cache: config validation through luagate.config (Kong's fields,
-- defaults and messages; the redis strategy and coalesce_timeout).
local config = require "luagate.config"
local helpers = require "spec.helpers"

local PLUGINS = { helpers.root .. "/plugins" }


local function load(config_lines)
  return config.load_string("_format_version: \"3.0\"\n" ..
                            "plugins:\n" ..
                            "- name: proxy-cache\n" ..
                            "  config:\n" .. config_lines,
                            "yaml", "test.yml", { plugins_dirs = PLUGINS })
end


local function ok(config_lines)
  local conf, errs = load(config_lines)
  assert.is_nil(errs)
  return conf.plugins[1].config
end


-- the errors, as the loader prints them
local function errs_of(config_lines)
  local conf, errs = load(config_lines)
  assert.is_nil(conf)
  return errs
end


describe("proxy-cache schema", function()
  it("fills Kong's defaults", function()
    local c = ok("    strategy: memory\n")
    assert.same({ 200, 301, 404 }, c.response_code)
    assert.same({ "GET", "HEAD" }, c.request_method)
    assert.same({ "text/plain", "application/json" }, c.content_type)
    assert.equal(300, c.cache_ttl)
    assert.equal("memory", c.strategy)
    assert.is_false(c.cache_control)
    assert.is_false(c.ignore_uri_case)
    assert.is_nil(c.storage_ttl)
    assert.same({ dictionary_name = "kong_db_cache" }, c.memory)
    assert.is_nil(c.vary_query_params)
    assert.is_nil(c.vary_headers)
    assert.same({ age = true, ["X-Cache-Status"] = true,
                  ["X-Cache-Key"] = true }, c.response_headers)
    -- luagate's additions
    assert.same({ port = 6379, database = 0, timeout = 2000 }, c.redis)
    assert.equal(5, c.coalesce_timeout)
  end)

  it("accepts every field", function()
    local c = ok([[
    strategy: redis
    response_code: [200, 418]
    request_method: [POST, PUT, PATCH]
    content_type: ["text/*", "application/json; charset=utf-8"]
    cache_ttl: 60
    cache_control: true
    ignore_uri_case: true
    storage_ttl: 3600
    memory:
      dictionary_name: my_cache
    redis:
      host: redis.internal
      port: 6380
      username: cache
      password: secret
      database: 2
      timeout: 500
    vary_query_params: [page, lang]
    vary_headers: [Accept-Language]
    response_headers:
      age: false
      X-Cache-Status: false
      X-Cache-Key: true
    coalesce_timeout: 0
]])
    assert.same({ 200, 418 }, c.response_code)
    assert.same({ "POST", "PUT", "PATCH" }, c.request_method)
    assert.same({ "text/*", "application/json; charset=utf-8" },
                c.content_type)
    assert.equal(60, c.cache_ttl)
    assert.is_true(c.cache_control)
    assert.is_true(c.ignore_uri_case)
    assert.equal(3600, c.storage_ttl)
    assert.same({ dictionary_name = "my_cache" }, c.memory)
    assert.same({ host = "redis.internal", port = 6380, username = "cache",
                  password = "secret", database = 2, timeout = 500 },
                c.redis)
    assert.same({ "page", "lang" }, c.vary_query_params)
    assert.same({ "Accept-Language" }, c.vary_headers)
    assert.same({ age = false, ["X-Cache-Status"] = false,
                  ["X-Cache-Key"] = true }, c.response_headers)
    assert.equal(0, c.coalesce_timeout)
  end)

  it("requires a strategy, memory or redis", function()
    assert.same({ "test.yml:5: plugins[0].config.strategy: required field " ..
                  "missing" },
                errs_of("    cache_ttl: 10\n"))
    assert.same({ "test.yml:5: plugins[0].config.strategy: expected one of: " ..
                  "memory, redis" },
                errs_of("    strategy: disk\n"))
  end)

  it("requires redis.host with the redis strategy", function()
    assert.same({ "test.yml:5: plugins[0].config.redis.host: required " ..
                  "field missing" },
                errs_of("    strategy: redis\n"))
    assert.same({ "test.yml:7: plugins[0].config.redis.port: value should " ..
                  "be between 0 and 65535" },
                errs_of("    strategy: redis\n    redis:\n" ..
                        "      port: 70000\n      host: localhost\n"))
  end)

  it("checks status codes, methods and TTLs", function()
    assert.same({ "test.yml:6: plugins[0].config.response_code[0]: value " ..
                  "should be between 100 and 900" },
                errs_of("    strategy: memory\n    response_code: [99]\n"))
    assert.same({ "test.yml:6: plugins[0].config.response_code: length " ..
                  "must be at least 1" },
                errs_of("    strategy: memory\n    response_code: []\n"))
    assert.same({ "test.yml:6: plugins[0].config.request_method[1]: " ..
                  "expected one of: HEAD, GET, POST, PATCH, PUT" },
                errs_of("    strategy: memory\n" ..
                        "    request_method: [GET, DELETE]\n"))
    assert.same({ "test.yml:6: plugins[0].config.cache_ttl: value must be " ..
                  "greater than 0" },
                errs_of("    strategy: memory\n    cache_ttl: 0\n"))
    assert.same({ "test.yml:6: plugins[0].config.cache_ttl: expected an " ..
                  "integer" },
                errs_of("    strategy: memory\n    cache_ttl: 1.5\n"))
    assert.same({ "test.yml:6: plugins[0].config.coalesce_timeout: value " ..
                  "should be between 0 and 600" },
                errs_of("    strategy: memory\n    coalesce_timeout: -1\n"))
    assert.same({ "test.yml:6: plugins[0].config.cache_control: expected a " ..
                  "boolean" },
                errs_of("    strategy: memory\n    cache_control: yes-ish\n"))
  end)

  it("refuses unknown fields", function()
    assert.same({ "test.yml:7: plugins[0].config.response_headers.X-Cache: " ..
                  "unknown field" },
                errs_of("    strategy: memory\n    response_headers:\n" ..
                        "      X-Cache: true\n"))
  end)

  it("every field has a description", function()
    local schema = require("kong.plugins.proxy-cache.schema")
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
