-- rate-limiting: config validation through luagate.config (Kong's fields,
-- defaults and messages; the deprecated redis_* shorthands; the refused
-- cluster policy and Redis TLS; luagate's extensions).
local config = require "luagate.config"
local helpers = require "spec.helpers"

local PLUGINS = { helpers.root .. "/plugins" }


local function load(config_lines)
  return config.load_string("_format_version: \"3.0\"\n" ..
                            "plugins:\n" ..
                            "- name: rate-limiting\n" ..
                            "  config:\n" .. config_lines,
                            "yaml", "test.yml", { plugins_dirs = PLUGINS })
end


local function ok(config_lines)
  local conf, errs = load(config_lines)
  assert.is_nil(errs)
  return conf.plugins[1].config
end


-- the only error, as the loader prints it
local function err(config_lines)
  local conf, errs = load(config_lines)
  assert.is_nil(conf)
  assert.equal(1, #errs, table.concat(errs or {}, "\n"))
  return errs[1]
end


describe("rate-limiting schema", function()
  it("fills Kong's defaults", function()
    local c = ok("    minute: 5\n")
    assert.equal(5, c.minute)
    assert.is_nil(c.second)
    assert.is_nil(c.hour)
    assert.is_nil(c.day)
    assert.is_nil(c.month)
    assert.is_nil(c.year)
    assert.equal("consumer", c.limit_by)
    assert.equal("local", c.policy)
    assert.is_true(c.fault_tolerant)
    assert.is_false(c.hide_client_headers)
    assert.equal(429, c.error_code)
    assert.equal("API rate limit exceeded", c.error_message)
    assert.equal(-1, c.sync_rate)
    assert.is_nil(c.header_name)
    assert.is_nil(c.path)
    assert.same({ port = 6379, timeout = 2000, database = 0, ssl = false,
                  ssl_verify = false }, c.redis)
    -- luagate's extensions keep Kong's behaviour by default
    assert.equal("fixed-window", c.algorithm)
    assert.is_nil(c.limit)
    assert.is_nil(c.window_size)
    assert.is_nil(c.burst)
    assert.is_nil(c.throttle)
  end)

  it("accepts every period and field", function()
    local c = ok([[
    second: 1
    minute: 2
    hour: 3
    day: 4
    month: 5
    year: 6.5
    limit_by: header
    header_name: X-Client
    policy: redis
    fault_tolerant: false
    hide_client_headers: true
    error_code: 503
    error_message: slow down
    sync_rate: 0.5
    redis:
      host: redis.internal
      port: 7000
      timeout: 100
      username: u
      password: p
      database: 3
      ssl_verify: true
      server_name: redis.example.com
]])
    assert.equal(6.5, c.year)
    assert.equal("X-Client", c.header_name)
    assert.equal(503, c.error_code)
    assert.equal("slow down", c.error_message)
    assert.equal(0.5, c.sync_rate)
    assert.same({ host = "redis.internal", port = 7000, timeout = 100,
                  username = "u", password = "p", database = 3, ssl = false,
                  ssl_verify = true, server_name = "redis.example.com" },
                c.redis)
  end)

  it("needs at least one limit (Kong's message)", function()
    assert.equal("test.yml:3: plugins[0]: at least one of these fields " ..
                 "must be non-empty: 'config.second', 'config.minute', " ..
                 "'config.hour', 'config.day', 'config.month', 'config.year'",
                 err("    policy: local\n"))
  end)

  it("refuses limits that are not positive numbers", function()
    assert.equal("test.yml:5: plugins[0].config.minute: value must be " ..
                 "greater than 0", err("    minute: 0\n"))
    assert.equal("test.yml:5: plugins[0].config.second: value must be " ..
                 "greater than 0", err("    second: -1\n"))
    assert.equal("test.yml:5: plugins[0].config.hour: expected a number",
                 err("    hour: lots\n"))
  end)

  it("refuses a longer period with a lower limit (Kong's message)", function()
    assert.equal("test.yml:5: plugins[0].config: The limit for " ..
                 "minute(5.0) cannot be lower than the limit for " ..
                 "second(10.0)", err("    second: 10\n    minute: 5\n"))
    assert.equal("test.yml:5: plugins[0].config: The limit for " ..
                 "year(99.5) cannot be lower than the limit for " ..
                 "hour(100.0)", err("    hour: 100\n    year: 99.5\n"))
    -- equal limits are fine
    ok("    second: 10\n    minute: 10\n")
  end)

  it("checks limit_by and its companions", function()
    assert.equal("test.yml:6: plugins[0].config.limit_by: expected one of: " ..
                 "consumer, credential, ip, service, header, path",
                 err("    minute: 5\n    limit_by: user\n"))
    assert.equal("test.yml:5: plugins[0].config.header_name: required " ..
                 "field missing", err("    minute: 5\n    limit_by: header\n"))
    assert.equal("test.yml:5: plugins[0].config.path: required field " ..
                 "missing", err("    minute: 5\n    limit_by: path\n"))
    assert.equal("test.yml:7: plugins[0].config.path: should start with: /",
                 err("    minute: 5\n    limit_by: path\n    path: x\n"))
    for _, by in ipairs({ "consumer", "credential", "ip", "service" }) do
      assert.equal(by, ok("    minute: 5\n    limit_by: " .. by .. "\n")
                         .limit_by)
    end
    assert.equal("/a/b", ok("    minute: 5\n    limit_by: path\n" ..
                            "    path: /a/b\n").path)
  end)

  it("refuses the cluster policy: no database in luagate", function()
    assert.equal("test.yml:6: plugins[0].config.policy: the 'cluster' " ..
                 "policy keeps counters in Kong's database and luagate has " ..
                 "none: use 'local' or 'redis'",
                 err("    minute: 5\n    policy: cluster\n"))
    assert.equal("test.yml:6: plugins[0].config.policy: expected one of: " ..
                 "local, cluster, redis",
                 err("    minute: 5\n    policy: memcached\n"))
  end)

  it("needs a Redis host with the redis policy", function()
    assert.equal("test.yml:5: plugins[0].config.redis.host: required field " ..
                 "missing", err("    minute: 5\n    policy: redis\n"))
    local c = ok("    minute: 5\n    policy: redis\n    redis:\n" ..
                 "      host: 127.0.0.1\n")
    assert.equal(6379, c.redis.port)
    assert.equal(2000, c.redis.timeout)
    assert.equal("test.yml:9: plugins[0].config.redis.port: value should be " ..
                 "between 0 and 65535",
                 err("    minute: 5\n    policy: redis\n    redis:\n" ..
                     "      host: 127.0.0.1\n      port: 70000\n"))
  end)

  it("refuses Redis over TLS for now, with the reason", function()
    assert.equal("test.yml:9: plugins[0].config.redis.ssl: TLS to Redis is " ..
                 "not supported yet (luagate.redis connects over plain " ..
                 "TCP): set ssl to false",
                 err("    minute: 5\n    policy: redis\n    redis:\n" ..
                     "      host: 127.0.0.1\n      ssl: true\n"))
    -- from a shorthand: the line of the config record
    assert.equal("test.yml:5: plugins[0].config.redis.ssl: TLS to Redis is " ..
                 "not supported yet (luagate.redis connects over plain " ..
                 "TCP): set ssl to false",
                 err("    minute: 5\n    policy: redis\n" ..
                     "    redis_host: 127.0.0.1\n    redis_ssl: true\n"))
  end)

  it("accepts Kong's deprecated redis_* shorthands into redis.*", function()
    local c = ok([[
    minute: 5
    policy: redis
    redis_host: cache.internal
    redis_port: 7001
    redis_password: secret
    redis_username: user
    redis_ssl: false
    redis_ssl_verify: true
    redis_server_name: cache.example.com
    redis_timeout: 150
    redis_database: 2
]])
    assert.same({ host = "cache.internal", port = 7001, password = "secret",
                  username = "user", ssl = false, ssl_verify = true,
                  server_name = "cache.example.com", timeout = 150,
                  database = 2 }, c.redis)
    assert.is_nil(c.redis_host)
    assert.equal("test.yml:8: plugins[0].config.redis_port: expected an " ..
                 "integer", err("    minute: 5\n    policy: redis\n" ..
                                "    redis_host: h\n    redis_port: x\n"))
  end)

  it("checks sync_rate as Kong", function()
    assert.equal("test.yml:5: plugins[0].config: sync_rate can only be used " ..
                 "with the redis policy",
                 err("    minute: 5\n    sync_rate: 1\n"))
    assert.equal("test.yml:5: plugins[0].config: sync_rate must be greater " ..
                 "than 0.02, or -1 to disable",
                 err("    minute: 5\n    policy: redis\n" ..
                     "    redis_host: h\n    sync_rate: 0.01\n"))
  end)

  it("checks error_code and error_message", function()
    assert.equal("test.yml:6: plugins[0].config.error_code: value must be " ..
                 "greater than 0", err("    minute: 5\n    error_code: 0\n"))
    assert.equal("test.yml:6: plugins[0].config.error_message: length must " ..
                 "be at least 1", err("    minute: 5\n    error_message: ''\n"))
  end)

  describe("luagate's extensions", function()
    it("accepts algorithms", function()
      for _, a in ipairs({ "fixed-window", "sliding-window", "gcra" }) do
        assert.equal(a, ok("    minute: 5\n    algorithm: " .. a .. "\n")
                          .algorithm)
      end
      assert.equal("test.yml:6: plugins[0].config.algorithm: expected one " ..
                   "of: fixed-window, sliding-window, gcra",
                   err("    minute: 5\n    algorithm: leaky-bucket\n"))
    end)

    it("accepts limit + window_size, alone or with periods", function()
      local c = ok("    limit: 100\n    window_size: 900\n")
      assert.equal(100, c.limit)
      assert.equal(900, c.window_size)
      c = ok("    minute: 10\n    limit: 100\n    window_size: 900\n")
      assert.equal(10, c.minute)
      assert.equal("test.yml:5: plugins[0].config: all or none of these " ..
                   "fields must be set: 'limit', 'window_size'",
                   err("    limit: 100\n"))
      assert.equal("test.yml:5: plugins[0].config: all or none of these " ..
                   "fields must be set: 'limit', 'window_size'",
                   err("    minute: 5\n    window_size: 10\n"))
      assert.equal("test.yml:6: plugins[0].config.window_size: value " ..
                   "should be between 1 and 31536000",
                   err("    limit: 1\n    window_size: 0\n"))
      assert.equal("test.yml:6: plugins[0].config.window_size: expected an " ..
                   "integer", err("    limit: 1\n    window_size: 1.5\n"))
      assert.equal("test.yml:5: plugins[0].config.limit: value must be " ..
                   "greater than 0", err("    limit: 0\n    window_size: 9\n"))
    end)

    it("refuses a window_size that repeats a configured period", function()
      assert.equal("test.yml:5: plugins[0].config: window_size 60 is the " ..
                   "'minute' window, which is already limited: set one of " ..
                   "them",
                   err("    minute: 5\n    limit: 9\n    window_size: 60\n"))
      -- alone it is fine
      ok("    limit: 9\n    window_size: 60\n")
    end)

    it("accepts burst with gcra only", function()
      assert.equal(3, ok("    second: 5\n    algorithm: gcra\n" ..
                         "    burst: 3\n").burst)
      assert.equal("test.yml:5: plugins[0].config: burst is only used with " ..
                   "algorithm 'gcra'", err("    second: 5\n    burst: 3\n"))
      assert.equal("test.yml:7: plugins[0].config.burst: value must be " ..
                   "greater than 0",
                   err("    second: 5\n    algorithm: gcra\n    burst: 0\n"))
    end)

    it("fills throttle's defaults and checks its bounds", function()
      assert.same({ max_wait_ms = 1000, max_queue = 100 },
                  ok("    second: 5\n    throttle: {}\n").throttle)
      assert.same({ max_wait_ms = 250, max_queue = 4 },
                  ok("    second: 5\n    throttle:\n" ..
                     "      max_wait_ms: 250\n      max_queue: 4\n").throttle)
      assert.equal("test.yml:7: plugins[0].config.throttle.max_wait_ms: " ..
                   "value should be between 1 and 600000",
                   err("    second: 5\n    throttle:\n" ..
                       "      max_wait_ms: 0\n"))
      assert.equal("test.yml:7: plugins[0].config.throttle.max_queue: " ..
                   "value should be between 1 and 1000000",
                   err("    second: 5\n    throttle:\n" ..
                       "      max_queue: 0\n"))
      assert.equal("test.yml:7: plugins[0].config.throttle.wait: unknown " ..
                   "field", err("    second: 5\n    throttle:\n" ..
                                "      wait: 1\n"))
    end)
  end)

  it("applies to http protocols only", function()
    local conf, errs = config.load_string([[
_format_version: "3.0"
plugins:
- name: rate-limiting
  protocols: [tcp]
  config:
    minute: 5
]], "yaml", "test.yml", { plugins_dirs = PLUGINS })
    assert.is_nil(conf)
    assert.equal("test.yml:4: plugins[0].protocols[0]: expected one of: " ..
                 "http, https, grpc, grpcs", errs[1])
  end)

  it("can be scoped to a consumer group", function()
    local conf, errs = config.load_string([[
_format_version: "3.0"
consumer_groups:
- name: free
plugins:
- name: rate-limiting
  consumer_group: free
  config:
    day: 100
    limit_by: consumer
]], "yaml", "test.yml", { plugins_dirs = PLUGINS })
    assert.is_nil(errs)
    assert.equal(1, conf.plugins[1].consumer_group)
  end)
end)
