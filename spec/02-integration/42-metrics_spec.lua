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
