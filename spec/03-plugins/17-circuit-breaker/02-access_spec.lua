-- circuit-breaker through the real binary (2 workers) and the mock
-- upstream: opening after consecutive failures or an error ratio, the
-- fallback (default, string, JSON, headers, Retry-After), half-open probes
-- (success closes, failure reopens, the probe limit), connection refused
-- and timeouts as failures, failure_statuses, responses plugins made not
-- counted, scope route, the state shared by the workers, transitions in
-- the error log and state.get_all() (through the cb-fixture test plugin).
local helpers = require "spec.helpers"

local fmt = string.format
local PLUGINS_DIR = helpers.root ..
                    "/spec/03-plugins/17-circuit-breaker/plugins"

local DEFAULT_BODY =
  '{"message":"Service temporarily unavailable (circuit open)"}'


local function config(mock_port, down_port)
  local mock_url = fmt("http://127.0.0.1:%d", mock_port)
  local function service(name, cb, opts)
    opts = opts or {}
    local plugins = { { name = "circuit-breaker", config = cb } }
    for _, p in ipairs(opts.plugins or {}) do
      plugins[#plugins + 1] = p
    end
    return {
      name = name,
      url = opts.url or mock_url,
      read_timeout = opts.read_timeout,
      routes = opts.routes or {
        { name = name, paths = { "/" .. name }, strip_path = true },
      },
      plugins = plugins,
    }
  end
  return {
    _format_version = "3.0",
    services = {
      service("basic", { failure_threshold = 3, open_timeout_s = 1 }),
      service("fbtext", { failure_threshold = 1, open_timeout_s = 30,
                          fallback = { status = 200, body = "maintenance",
                                       headers = {
                                         ["Content-Type"] = "text/plain",
                                         ["X-Fallback"] = "yes" } } }),
      service("fbjson", { failure_threshold = 1, open_timeout_s = 30,
                          fallback = { status = 502,
                                       body = { error = "down", code = 7 } } }),
      service("half", { failure_threshold = 2, open_timeout_s = 1 }),
      service("probe", { failure_threshold = 1, open_timeout_s = 1,
                         half_open_requests = 1 }),
      service("ratio", { error_ratio = 0.5, min_requests = 10,
                         window_s = 3600, open_timeout_s = 30 }),
      service("shared", { failure_threshold = 5, open_timeout_s = 30 }),
      service("refused", { failure_threshold = 2, open_timeout_s = 30 },
              { url = fmt("http://127.0.0.1:%d", down_port) }),
      service("timeout", { failure_threshold = 2, open_timeout_s = 30 },
              { read_timeout = 200 }),
      service("statuses", { failure_threshold = 1, open_timeout_s = 30,
                            failure_statuses = { 503 } }),
      service("exits", { failure_threshold = 1, open_timeout_s = 30 },
              { plugins = { { name = "request-termination",
                              config = { status_code = 500,
                                         trigger = "X-Term" } } } }),
      service("scoped", { scope = "route", failure_threshold = 1,
                          open_timeout_s = 30 },
              { routes = {
                  { name = "ra", paths = { "/ra" }, strip_path = true },
                  { name = "rb", paths = { "/rb" }, strip_path = true },
              } }),
      { name = "state", url = mock_url,
        routes = { { name = "state", paths = { "/_state" },
                     plugins = { { name = "cb-fixture" } } } } },
    },
  }
end


describe("circuit-breaker", function()
  local mock, gw, client

  local function get(path, headers)
    return assert(client:send({ path = path, headers = headers }))
  end

  -- a request on a connection of its own (any worker)
  local function get_fresh(path, headers)
    return assert(helpers.request_once(gw.proxy_port,
                                       { path = path, headers = headers }))
  end


  -- the breakers, read on the client's connection: the log phases of the
  -- requests it sent before have run (the log phase runs once the response
  -- is sent; another connection could be served before it)
  local function breakers()
    local res = get("/_state")
    return assert(helpers.json_decode(assert.res_status(200, res)))
  end

  -- the same on a connection of its own (any worker)
  local function breakers_fresh()
    local res = get_fresh("/_state")
    return assert(helpers.json_decode(assert.res_status(200, res)))
  end

  local function breaker(name)
    return breakers().breakers[name]
  end

  local function log_has(text)
    return (helpers.read_file(gw.error_log) or ""):find(text, 1, true)
  end

  lazy_setup(function()
    mock = helpers.mock_upstream()
    gw = assert(helpers.start_luagate({
      config = config(mock.port, helpers.get_free_port()),
      workers = 2,
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

  it("opens after failure_threshold consecutive failures and answers " ..
     "without the upstream", function()
    assert.res_status(500, get("/basic/status/500"))
    assert.res_status(500, get("/basic/status/500"))
    -- a success starts the count again
    assert.res_status(200, get("/basic/status/200"))
    assert.equal(0, breaker("service 'basic'").consecutive_failures)
    assert.res_status(500, get("/basic/status/500"))
    assert.res_status(500, get("/basic/status/500"))
    assert.equal(2, breaker("service 'basic'").consecutive_failures)
    assert.equal("closed", breaker("service 'basic'").state)
    assert.res_status(500, get("/basic/status/500"))

    local res = get("/basic/request?fallback=1")
    assert.equal(DEFAULT_BODY, assert.res_status(503, res))
    assert.equal("application/json; charset=utf-8",
                 res.headers["content-type"])
    assert.equal("1", res.headers["retry-after"])
    assert.equal(0, mock.count("/request?fallback=1"))

    local b = breaker("service 'basic'")
    assert.equal("open", b.state)
    assert.equal("3 consecutive failures", b.reason)
    assert.equal(1, b.generation)
    assert.equal(b.since + 1, b.retry_at)
    assert.equal("basic", b.service.name)
    assert.equal("service", b.scope)
    assert.equal(3, b.config.failure_threshold)
    assert.truthy(log_has("circuit breaker service 'basic': closed -> " ..
                          "open (3 consecutive failures)"))

    -- after open_timeout_s: one probe, which succeeds and closes it
    helpers.wait_until(function()
      return get("/basic/status/200").status == 200
    end, 5)
    assert.res_status(200, get("/basic/request"))
    b = breaker("service 'basic'")
    assert.equal("closed", b.state)
    assert.equal("probe succeeded", b.reason)
    assert.equal(3, b.generation)
    assert.truthy(log_has("circuit breaker service 'basic': open -> " ..
                          "half_open (open for 1s)"))
    assert.truthy(log_has("circuit breaker service 'basic': half_open -> " ..
                          "closed (probe succeeded)"))
  end)

  it("sends the configured fallback: string body, status, headers",
     function()
    assert.res_status(500, get("/fbtext/status/500"))
    local res = get("/fbtext/request")
    assert.equal("maintenance", assert.res_status(200, res))
    assert.equal("text/plain", res.headers["content-type"])
    assert.equal("yes", res.headers["x-fallback"])
    local retry = tonumber(res.headers["retry-after"])
    assert.is_true(retry >= 29 and retry <= 30)
  end)

  it("sends a table fallback body as JSON", function()
    assert.res_status(500, get("/fbjson/status/500"))
    local res = get("/fbjson/request")
    local body = assert(helpers.json_decode(assert.res_status(502, res)))
    assert.same({ error = "down", code = 7 }, body)
    assert.equal("application/json; charset=utf-8",
                 res.headers["content-type"])
  end)

  it("reopens when the half-open probe fails", function()
    assert.res_status(500, get("/half/status/500"))
    assert.res_status(500, get("/half/status/500"))
    assert.res_status(503, get("/half/status/500"))
    -- the probe reaches the upstream and fails
    helpers.wait_until(function()
      return get("/half/status/500").status == 500
    end, 5)
    local res = get("/half/request")
    assert.equal(DEFAULT_BODY, assert.res_status(503, res))
    local b = breaker("service 'half'")
    assert.equal("open", b.state)
    assert.equal("probe failed", b.reason)
    assert.truthy(log_has("circuit breaker service 'half': half_open -> " ..
                          "open (probe failed)"))
    -- then a good probe closes it, and the count starts from zero
    helpers.wait_until(function()
      return get("/half/status/200").status == 200
    end, 5)
    assert.res_status(500, get("/half/status/500"))
    assert.res_status(200, get("/half/request"))
    assert.equal("closed", breaker("service 'half'").state)
  end)

  it("lets half_open_requests probes through at once", function()
    assert.res_status(500, get("/probe/status/500"))
    assert.res_status(503, get("/probe/request"))
    helpers.wait_until(function()
      local st = breakers()
      return st.now >= st.breakers["service 'probe'"].retry_at
    end, 5)
    -- a slow probe, and meanwhile the others get the fallback
    local conn = assert(helpers.raw_connect(gw.proxy_port))
    assert(conn:send(helpers.build_request({ path = "/probe/delay/0.5" },
                                           "localhost")))
    helpers.wait_until(function()
      local b = breaker("service 'probe'")
      return b.state == "half_open" and b.probes_in_flight == 1
    end, 5)
    local res = get_fresh("/probe/request")
    assert.equal(DEFAULT_BODY, assert.res_status(503, res))
    assert.is_nil(res.headers["retry-after"])
    local probe = assert(conn:read_response("GET"))
    conn:close()
    assert.res_status(200, probe)
    -- the probe's log phase closes it
    helpers.wait_until(function()
      return breaker("service 'probe'").state == "closed"
    end, 5)
    assert.res_status(200, get("/probe/request"))
  end)

  it("opens on an error ratio over the window with error_ratio", function()
    for _ = 1, 5 do
      assert.res_status(500, get("/ratio/status/500"))
    end
    -- fewer than min_requests: still closed
    local b = breaker("service 'ratio'")
    assert.equal("closed", b.state)
    assert.same({ requests = 5, failures = 5, ratio = 1 }, b.window)
    assert.is_nil(b.consecutive_failures)
    for _ = 1, 10 do
      assert.res_status(200, get("/ratio/status/200"))
    end
    -- 6/16, 7/17, 8/18, 9/19: below 0.5
    for _ = 1, 4 do
      assert.res_status(500, get("/ratio/status/500"))
    end
    assert.equal("closed", breaker("service 'ratio'").state)
    -- 10/20
    assert.res_status(500, get("/ratio/status/500"))
    assert.res_status(503, get("/ratio/request"))
    b = breaker("service 'ratio'")
    assert.equal("open", b.state)
    assert.equal("error ratio 0.50 over 20 requests", b.reason)
  end)

  it("shares the state between the workers", function()
    -- failures on fresh connections land on both workers
    for _ = 1, 5 do
      assert.res_status(500, get_fresh("/shared/status/500"))
    end
    -- their log phases may still be running
    helpers.wait_until(function()
      return breakers_fresh().breakers["service 'shared'"].state == "open"
    end, 5)
    local pids = {}
    for _ = 1, 20 do
      assert.equal(DEFAULT_BODY,
                   assert.res_status(503, get_fresh("/shared/request")))
      local st = breakers_fresh()
      assert.equal("open", st.breakers["service 'shared'"].state)
      pids[st.pid] = true
    end
    local n = 0
    for _ in pairs(pids) do n = n + 1 end
    assert.equal(2, n)
  end)

  it("counts refused connections as failures", function()
    for _ = 1, 2 do
      local res = get("/refused/request")
      assert.res_status(502, res)
      assert.matches("An invalid response was received from the upstream " ..
                     "server", res.body, nil, true)
    end
    assert.equal(DEFAULT_BODY,
                 assert.res_status(503, get("/refused/request")))
  end)

  it("counts upstream timeouts as failures", function()
    for _ = 1, 2 do
      assert.res_status(504, get("/timeout/delay/1"))
    end
    assert.equal(DEFAULT_BODY,
                 assert.res_status(503, get("/timeout/request")))
  end)

  it("counts only failure_statuses from the upstream", function()
    for _ = 1, 3 do
      assert.res_status(500, get("/statuses/status/500"))
    end
    assert.equal("closed", breaker("service 'statuses'").state)
    assert.res_status(503, get("/statuses/status/503"))
    assert.equal(DEFAULT_BODY,
                 assert.res_status(503, get("/statuses/request")))
  end)

  it("does not count responses a plugin made", function()
    for _ = 1, 3 do
      local res = get("/exits/request", { ["X-Term"] = "1" })
      assert.res_status(500, res)
    end
    assert.equal("closed", breaker("service 'exits'").state)
    assert.res_status(200, get("/exits/request"))
  end)

  it("keeps one breaker per route with scope route", function()
    assert.res_status(500, get("/ra/status/500"))
    assert.equal(DEFAULT_BODY, assert.res_status(503, get("/ra/request")))
    assert.res_status(200, get("/rb/request"))
    local st = breakers().breakers
    assert.equal("open", st["route 'ra'"].state)
    assert.equal("closed", st["route 'rb'"].state)
    assert.equal("ra", st["route 'ra'"].route.name)
    assert.equal("scoped", st["route 'ra'"].service.name)
    assert.is_nil(st["service 'scoped'"])
  end)
end)
