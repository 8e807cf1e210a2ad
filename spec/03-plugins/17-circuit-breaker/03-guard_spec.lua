-- The circuit breaker's phase guards (kong.plugin.idle): closed with a
-- healthy upstream, its access and log handlers are left out (no Lua runs
-- for the route's requests), and every change of its state still reaches
-- every worker: failures counted and reset, the circuit opened by another
-- worker, a probe closing it again. Two workers, the mock upstream, the
-- cb-fixture test plugin for the breakers' state.
local helpers = require "spec.helpers"

local fmt = string.format
local PLUGINS_DIR = helpers.root ..
                    "/spec/03-plugins/17-circuit-breaker/plugins"

local DEFAULT_BODY =
  '{"message":"Service temporarily unavailable (circuit open)"}'


local function config(mock_port)
  local url = fmt("http://127.0.0.1:%d", mock_port)
  local function service(name, cb, plugins)
    local list = { { name = "circuit-breaker", config = cb } }
    for _, p in ipairs(plugins or {}) do
      list[#list + 1] = p
    end
    return { name = name, url = url, plugins = list,
             routes = { { name = name, paths = { "/" .. name },
                          strip_path = true } } }
  end
  return {
    _format_version = "3.0",
    services = {
      service("count", { failure_threshold = 3, open_timeout_s = 30 }),
      service("spread", { failure_threshold = 4, open_timeout_s = 30 }),
      service("probe", { failure_threshold = 1, open_timeout_s = 1 }),
      service("beside", { failure_threshold = 2, open_timeout_s = 30 },
              { { name = "correlation-id" } }),
      { name = "state", url = url,
        routes = { { name = "state", paths = { "/_state" },
                     plugins = { { name = "cb-fixture" } } } } },
    },
  }
end


describe("circuit-breaker with phase guards", function()
  local mock, gw, client

  local function get(path)
    return assert(client:send({ path = path }))
  end

  local function get_fresh(path)
    return assert(helpers.request_once(gw.proxy_port, { path = path }))
  end


  local function breaker(name)
    local res = get("/_state")
    local st = assert(helpers.json_decode(assert.res_status(200, res)))
    return st.breakers[name] or { state = "closed",
                                  consecutive_failures = 0 }
  end

  local function skips()
    local series = 'luagate_phase_guard_skips_total{phase="%s"}'
    return helpers.metric(gw, series:format("access")),
           helpers.metric(gw, series:format("log"))
  end

  lazy_setup(function()
    mock = helpers.mock_upstream()
    gw = assert(helpers.start_luagate({
      config = config(mock.port),
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

  it("runs no handler for the successes of a closed circuit", function()
    assert.res_status(200, get("/count/request")) -- sets both guards
    local a0, l0 = skips()
    for _ = 1, 10 do
      assert.res_status(200, get("/count/request"))
    end
    local a1, l1 = skips()
    assert.equal(a0 + 10, a1)
    assert.equal(l0 + 10, l1)
  end)

  it("still counts failures, resets the count on a success and opens",
     function()
    for _ = 1, 3 do
      assert.res_status(200, get("/count/request"))
    end
    assert.res_status(500, get("/count/status/500"))
    assert.res_status(500, get("/count/status/500"))
    assert.equal(2, breaker("service 'count'").consecutive_failures)
    -- the success after them runs the log handler, which resets the count
    assert.res_status(200, get("/count/request"))
    assert.equal(0, breaker("service 'count'").consecutive_failures)
    assert.res_status(200, get("/count/request"))
    assert.res_status(500, get("/count/status/500"))
    assert.res_status(500, get("/count/status/500"))
    assert.equal("closed", breaker("service 'count'").state)
    assert.res_status(500, get("/count/status/500"))
    local before = mock.count("/request?after=open")
    assert.equal(DEFAULT_BODY,
                 assert.res_status(503, get("/count/request?after=open")))
    assert.equal(before, mock.count("/request?after=open"))
    assert.equal("open", breaker("service 'count'").state)
  end)

  it("opens in every worker, whichever worker counted the failures",
     function()
    -- both workers serve successes and set their guards
    local pids = {}
    for _ = 1, 30 do
      assert.res_status(200, get_fresh("/spread/request"))
      local res = get_fresh("/_state")
      pids[helpers.json_decode(res.body).pid] = true
    end
    local n = 0
    for _ in pairs(pids) do n = n + 1 end
    assert.equal(2, n)
    -- failures on one connection: one worker counts them all
    for _ = 1, 4 do
      assert.res_status(500, get("/spread/status/500"))
    end
    assert.equal("open", breaker("service 'spread'").state)
    -- every worker answers with the fallback now
    pids = {}
    for _ = 1, 20 do
      assert.equal(DEFAULT_BODY,
                   assert.res_status(503, get_fresh("/spread/request")))
      local res = get_fresh("/_state")
      pids[helpers.json_decode(res.body).pid] = true
    end
    n = 0
    for _ in pairs(pids) do n = n + 1 end
    assert.equal(2, n)
  end)

  it("closes again after a successful probe and leaves its handlers " ..
     "out again", function()
    assert.res_status(200, get("/probe/request"))
    assert.res_status(500, get("/probe/status/500"))
    assert.equal(DEFAULT_BODY, assert.res_status(503, get("/probe/request")))
    helpers.wait_until(function()
      return get("/probe/request").status == 200
    end, 5)
    assert.equal("closed", breaker("service 'probe'").state)
    assert.res_status(200, get("/probe/request")) -- sets the guards again
    local a0, l0 = skips()
    for _ = 1, 5 do
      assert.res_status(200, get("/probe/request"))
    end
    local a1, l1 = skips()
    assert.equal(a0 + 5, a1)
    assert.equal(l0 + 5, l1)
  end)

  it("guards only the phases it is alone in beside another plugin",
     function()
    -- correlation-id has an access handler, and no log handler
    local a0, l0 = skips()
    for _ = 1, 3 do
      assert.res_status(200, get("/beside/request"))
    end
    local a1, l1 = skips()
    assert.equal(a0, a1)
    assert.equal(l0 + 2, l1) -- the first success sets the log guard
    assert.res_status(500, get("/beside/status/500"))
    assert.res_status(500, get("/beside/status/500"))
    assert.equal(DEFAULT_BODY, assert.res_status(503, get("/beside/request")))
  end)
end)
