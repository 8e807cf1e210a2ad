-- GET /metrics on the admin listener: Prometheus text with Kong's metric
-- names, counted in C by each worker and merged at scrape time.
local helpers = require "spec.helpers"

local fmt = string.format

local function scrape(gw)
  local res = helpers.request_once(gw.admin_port, { path = "/metrics" })
  assert.equal(200, res.status)
  return res.body, res.headers["content-type"]
end

local function value(body, series)
  local v = body:match("\n" .. series:gsub("[%-%.%+%[%]%(%)%$%^%%%?%*]", "%%%0") .. " ([%d%.e%+]+)")
  return tonumber(v)
end

describe("metrics", function()
  local mock, gw

  lazy_setup(function()
    mock = helpers.mock_upstream()
    gw = assert(helpers.start_luagate({
      workers = 2,
      config = {
        _format_version = "3.0",
        upstreams = { { name = "pool", targets = { { target = "127.0.0.1:" .. mock.port } } } },
        services = {
          { name = "api", url = fmt("http://127.0.0.1:%d", mock.port),
            routes = { { name = "echo", paths = { "/echo" } } } },
          { name = "balanced", host = "pool",
            routes = { { name = "lb", paths = { "/lb" } } } },
        },
      },
    }))
  end)

  lazy_teardown(function()
    if gw then helpers.stop_luagate(gw) end
    if mock then mock.stop() end
  end)

  it("counts requests by service, route and code, across workers", function()
    for _ = 1, 12 do -- new connections: both workers serve some
      assert.equal(200, helpers.request_once(gw.proxy_port, { path = "/echo/x" }).status)
    end
    for _ = 1, 3 do
      assert.equal(503, helpers.request_once(gw.proxy_port, { path = "/echo/status/503" }).status)
    end
    helpers.wait_until(function()
      local body = scrape(gw)
      return value(body, 'kong_http_requests_total{service="api",route="echo",code="200"}') == 12
    end, 5)
    local body, ctype = scrape(gw)
    assert.matches("text/plain; version=0.0.4", ctype, 1, true)
    assert.equal(3, value(body, 'kong_http_requests_total{service="api",route="echo",code="503"}'))
    -- one histogram per service whose count is every request of it
    assert.equal(15, value(body, 'kong_request_latency_ms_count{service="api"}'))
    assert.equal(15, value(body, 'kong_request_latency_ms_bucket{service="api",le="+Inf"}'))
    assert.is_true(value(body, 'kong_bandwidth_bytes{service="api",route="echo",direction="egress"}') > 0)
    assert.is_true(value(body, 'kong_nginx_requests_total') >= 15)
    assert.equal(2, value(body, "luagate_workers"))
  end)

  it("has one series per label set (valid exposition)", function()
    local body = scrape(gw)
    local seen = {}
    for line in body:gmatch("[^\n]+") do
      if line:sub(1, 1) ~= "#" then
        local series = line:match("^(.-) [^ ]+$")
        assert.is_nil(seen[series], "duplicate series " .. tostring(series))
        seen[series] = true
      end
    end
  end)

  it("shows upstream target health and shared dictionaries", function()
    assert.equal(200, helpers.request_once(gw.proxy_port, { path = "/lb/x" }).status)
    local body = scrape(gw)
    local target = "127.0.0.1:" .. mock.port
    assert.equal(1, value(body, fmt('kong_upstream_target_health{upstream="pool",target="%s",state="healthy"}', target)))
    assert.equal(0, value(body, fmt('kong_upstream_target_health{upstream="pool",target="%s",state="unhealthy"}', target)))
    assert.is_true(value(body, 'kong_memory_lua_shared_dict_total_bytes{shared_dict="kong"}') > 0)
    assert.matches('kong_data_plane_config_hash{hash="%x+"} 1', body)
  end)
end)

describe("metrics with --metrics off", function()
  local mock, gw

  lazy_setup(function()
    mock = helpers.mock_upstream()
    gw = assert(helpers.start_luagate({
      workers = 1,
      args = { "--metrics", "off" },
      config = {
        _format_version = "3.0",
        services = {
          { name = "api", url = fmt("http://127.0.0.1:%d", mock.port),
            routes = { { name = "echo", paths = { "/echo" } } } },
        },
      },
    }))
  end)

  lazy_teardown(function()
    if gw then helpers.stop_luagate(gw) end
    if mock then mock.stop() end
  end)

  it("keeps no per-request series, and still serves the node's gauges", function()
    for _ = 1, 3 do
      assert.equal(200, helpers.request_once(gw.proxy_port, { path = "/echo/x" }).status)
    end
    local body = scrape(gw)
    assert.is_nil(body:find("kong_http_requests_total{", 1, true))
    assert.is_nil(body:find('kong_request_latency_ms_count{service="api"}', 1, true))
    assert.equal(1, value(body, "luagate_workers"))
    assert.is_true(value(body, "kong_nginx_requests_total") >= 3)
  end)
end)

describe("metrics from plugins and reloads", function()
  local mock, gw
  local refused = helpers.get_free_port()

  local function config(extra_route)
    local routes = { { name = "echo", paths = { "/echo" } } }
    if extra_route then
      routes[2] = extra_route
    end
    return {
      _format_version = "3.0",
      consumers = { { username = "alice", keyauth_credentials = { { key = "alice-key" } } } },
      services = {
        { name = "api", url = fmt("http://127.0.0.1:%d", mock.port), routes = routes },
        { name = "down", url = fmt("http://127.0.0.1:%d", refused),
          routes = { { name = "down", paths = { "/down" } } },
          plugins = { { name = "circuit-breaker",
                        config = { failure_threshold = 2, open_timeout_s = 60 } } } },
        { name = "slow", url = fmt("http://127.0.0.1:%d", mock.port),
          routes = { { name = "throttled", paths = { "/throttled" },
                       plugins = { { name = "rate-limiting",
                                     config = { second = 1, policy = "local",
                                                throttle = { max_wait_ms = 5000,
                                                             max_queue = 10 } } } } } } },
        { name = "keyed", url = fmt("http://127.0.0.1:%d", mock.port),
          routes = { { name = "keyed", paths = { "/keyed" },
                       plugins = { { name = "key-auth" } } } } },
      },
    }
  end

  lazy_setup(function()
    mock = helpers.mock_upstream()
    gw = assert(helpers.start_luagate({ workers = 2, config = config(),
                                        args = { "--metrics-consumers", "on" } }))
  end)

  lazy_teardown(function()
    if gw then helpers.stop_luagate(gw) end
    if mock then mock.stop() end
  end)

  it("gives each circuit breaker's state", function()
    local body = scrape(gw)
    local closed = 'luagate_circuit_breaker_state{scope="service",service="down",route="",state="closed"}'
    local open = 'luagate_circuit_breaker_state{scope="service",service="down",route="",state="open"}'
    assert.equal(1, value(body, closed))
    assert.equal(0, value(body, open))
    for _ = 1, 2 do
      assert.equal(502, helpers.request_once(gw.proxy_port, { path = "/down" }).status)
    end
    -- the breaker counts in the log phase, after the answer went out
    helpers.wait_until(function()
      return value(scrape(gw), open) == 1
    end, 5)
    body = scrape(gw)
    assert.equal(0, value(body, closed))
    assert.equal(503, helpers.request_once(gw.proxy_port, { path = "/down" }).status)
  end)

  it("gives the requests waiting in rate-limiting's throttle", function()
    local gauge = 'luagate_rate_limiting_throttle_waiting{route="throttled",service=""}'
    local socks = {}
    for i = 1, 3 do
      socks[i] = assert(helpers.raw_connect(gw.proxy_port))
      assert(socks[i]:send("GET /throttled HTTP/1.1\r\nHost: t\r\n\r\n"))
    end
    -- one passes at once, two wait for the next seconds
    local seen
    helpers.wait_until(function()
      seen = value(scrape(gw), gauge)
      return seen and seen >= 1
    end, 3, 0.05)
    assert.is_true(seen <= 2)
    for i = 1, 3 do
      local res = assert(socks[i]:read_response())
      assert.equal(200, res.status)
      socks[i]:close()
    end
    helpers.wait_until(function()
      local v = value(scrape(gw), gauge)
      return v == nil or v == 0
    end, 5)
  end)

  it("labels request counts by consumer with --metrics-consumers on", function()
    local res = helpers.request_once(gw.proxy_port, { path = "/keyed", headers = { apikey = "alice-key" } })
    assert.equal(200, res.status)
    assert.equal(401, helpers.request_once(gw.proxy_port, { path = "/keyed" }).status)
    helpers.wait_until(function()
      return value(scrape(gw), 'kong_http_requests_total{service="keyed",route="keyed",code="200",consumer="alice"}') == 1
    end, 5)
    local body = scrape(gw)
    assert.equal(1, value(body, 'kong_http_requests_total{service="keyed",route="keyed",code="401",consumer=""}'))
  end)

  it("gives the time the running configuration was swapped in", function()
    local series = "luagate_config_last_reload_timestamp_seconds"
    local first = value(scrape(gw), series)
    assert.is_true(math.abs(first - helpers.gettime()) < 120, tostring(first))
    helpers.sleep(1.1)
    assert(helpers.reload_luagate(gw, config({ name = "more", paths = { "/more" } })))
    helpers.wait_until(function()
      return value(scrape(gw), series) > first + 1
    end, 10)
  end)
end)
