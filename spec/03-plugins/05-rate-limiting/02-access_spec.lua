-- rate-limiting through the real binary and the mock upstream: Kong's
-- periods, headers, refusals and limit_by; exact counts across workers
-- (shared dictionary) and across nodes (Redis); Redis going away and
-- coming back; luagate's sliding-window, gcra, windows of any length,
-- throttling, and quotas per consumer group.
local helpers = require "spec.helpers"
local socket = require "socket"

local fmt = string.format
local floor = math.floor

local PLUGINS_DIR = helpers.root .. "/spec/fixtures/plugins"

local PERIOD_SIZES = {
  second = 1, minute = 60, hour = 3600, day = 86400,
}


local support = require "spec.03-plugins.05-rate-limiting.support"
local now, at_phase, next_window = support.now, support.at_phase,
                                   support.next_window
local statuses, times = support.statuses, support.times


-- The next minute boundary is at least 5 s away (day, month and year
-- boundaries are minute boundaries too).
local function minute_room()
  at_phase(60, 0, 54)
end


-- Unix time of UTC midnight, first day of month m of year y.
local function utc_time(y, m, d)
  local t = os.time({ year = y, month = m, day = d, hour = 0, min = 0,
                      sec = 0, isdst = false })
  local ref = os.time()
  local offset = ref - os.time(os.date("!*t", ref))
  return t + offset
end


-- Seconds left in the period holding t, by the calendar (UTC).
local function seconds_left(period, t)
  local size = PERIOD_SIZES[period]
  if size then
    return size - floor(t) % size
  end
  local d = os.date("!*t", floor(t))
  if period == "month" then
    local y, m = d.year, d.month + 1
    if m == 13 then
      y, m = y + 1, 1
    end
    return utc_time(y, m, 1) - floor(t)
  end
  return utc_time(d.year + 1, 1, 1) - floor(t)
end


local gw_port

-- GET path on a fresh connection (from source address `ip` if given).
local function get(path, headers, ip, port)
  local sock = socket.tcp()
  sock:settimeout(10)
  if ip then
    assert(sock:bind(ip, 0))
  end
  port = port or gw_port
  assert(sock:connect("127.0.0.1", port))
  local head = helpers.build_request({ path = path, headers = headers },
                                     "127.0.0.1:" .. port)
  assert(sock:send(head))
  local res = assert(helpers.read_response(sock, "GET"))
  sock:close()
  return res
end


-- Every request on its own connection, all sent before any answer is
-- read; the responses in order (support.send_all).
local function parallel(reqs)
  return support.read_all(support.send_all(reqs, gw_port))
end


local rl_route = support.rl_route


local function json(res)
  return assert(helpers.json_decode(res.body))
end


local function assert_refused(res, message, status)
  assert.res_status(status or 429, res)
  local body = json(res)
  assert.equal(message or "API rate limit exceeded", body.message)
  assert.is_string(body.request_id)
end


local function no_rl_headers(res)
  for _, h in ipairs(res.raw_headers) do
    local name = h[1]:lower()
    assert.is_nil(name:find("ratelimit", 1, true), "header " .. h[1])
    assert.not_equal("retry-after", name)
  end
end


-----------------------------------------------------------------------------
describe("rate-limiting (local policy)", function()
  local mock, gw

  lazy_setup(function()
    mock = helpers.mock_upstream()
    local routes = {}
    for _, p in ipairs({ "second", "minute", "hour", "day", "month",
                         "year" }) do
      routes[#routes + 1] = rl_route("p-" .. p, { [p] = 3 })
    end
    routes[#routes + 1] = rl_route("multi", { second = 2, minute = 5 })
    -- three limiters: the headers set in one call (prepared per tightest
    -- limiter); four: set one by one
    routes[#routes + 1] = rl_route("three", {
      minute = 20, hour = 30, day = 40,
    })
    routes[#routes + 1] = rl_route("four", {
      minute = 20, hour = 30, day = 40, month = 50,
    })
    routes[#routes + 1] = rl_route("custom", { limit = 4, window_size = 7 })
    routes[#routes + 1] = rl_route("custom-hour", { limit = 2,
                                                    window_size = 3600 })
    routes[#routes + 1] = rl_route("custom-error", {
      minute = 1, error_code = 503, error_message = "slow down",
    })
    routes[#routes + 1] = rl_route("hidden", {
      minute = 1, hide_client_headers = true,
    })
    routes[#routes + 1] = rl_route("lb-ip", { minute = 2, limit_by = "ip" })
    routes[#routes + 1] = rl_route("lb-header", {
      minute = 2, limit_by = "header", header_name = "X-Client",
    })
    routes[#routes + 1] = rl_route("lb-path", {
      minute = 2, limit_by = "path", path = "/lb-path/one",
    })
    routes[#routes + 1] = rl_route("lb-consumer", {
      minute = 2, limit_by = "consumer",
    })
    routes[#routes + 1] = rl_route("lb-credential", {
      minute = 2, limit_by = "credential",
    })
    routes[#routes + 1] = rl_route("unlimited", { year = 1e9 })
    gw = assert(helpers.start_luagate({
      args = { "--plugins-dir", PLUGINS_DIR },
      config = {
        _format_version = "3.0",
        services = {
          { name = "echo", url = "http://127.0.0.1:" .. mock.port,
            routes = routes },
          -- one counter per service, whoever calls
          { name = "by-service", url = "http://127.0.0.1:" .. mock.port,
            routes = {
              { name = "svc-a", paths = { "/svc-a" } },
              { name = "svc-b", paths = { "/svc-b" } },
            },
            plugins = {
              { name = "rate-limiting",
                config = { minute = 3, limit_by = "service" } },
            },
          },
          -- one counter per client address, across the service's routes
          { name = "by-ip", url = "http://127.0.0.1:" .. mock.port,
            routes = {
              { name = "ip-a", paths = { "/ip-a" } },
              { name = "ip-b", paths = { "/ip-b" } },
            },
            plugins = {
              { name = "rate-limiting", config = { minute = 2 } },
            },
          },
        },
        consumers = {
          { username = "alice" },
          { username = "bob" },
        },
        plugins = {
          { name = "rl-auth" },
        },
      },
    }))
    gw_port = gw.proxy_port
  end)

  lazy_teardown(function()
    helpers.stop_luagate(gw)
    if mock then
      mock.stop()
    end
  end)

  for _, period in ipairs({ "second", "minute", "hour", "day", "month",
                            "year" }) do
    it("limits per " .. period .. " with Kong's headers", function()
      local Period = period:sub(1, 1):upper() .. period:sub(2)
      if period == "second" then
        next_window(1, 0.02, 0.5)
      else
        minute_room()
      end
      for i = 1, 3 do
        local t = now()
        local res = get("/p-" .. period .. "/x")
        assert.res_status(200, res)
        assert.equal("3", res.headers["X-RateLimit-Limit-" .. Period])
        assert.equal(tostring(3 - i),
                     res.headers["X-RateLimit-Remaining-" .. Period])
        assert.equal("3", res.headers["RateLimit-Limit"])
        assert.equal(tostring(3 - i), res.headers["RateLimit-Remaining"])
        local reset = tonumber(res.headers["RateLimit-Reset"])
        assert.near(seconds_left(period, t), reset, 1)
        assert.is_nil(res.headers["Retry-After"])
      end
      local t = now()
      local res = get("/p-" .. period .. "/x")
      assert_refused(res)
      assert.equal("3", res.headers["X-RateLimit-Limit-" .. Period])
      assert.equal("0", res.headers["X-RateLimit-Remaining-" .. Period])
      assert.equal("0", res.headers["RateLimit-Remaining"])
      assert.near(seconds_left(period, t),
                  tonumber(res.headers["Retry-After"]), 1)
      assert.equal(res.headers["RateLimit-Reset"], res.headers["Retry-After"])
      -- the header names as Kong writes them
      local names = {}
      for _, h in ipairs(res.raw_headers) do
        names[h[1]] = true
      end
      assert.is_true(names["X-RateLimit-Limit-" .. Period])
      assert.is_true(names["X-RateLimit-Remaining-" .. Period])
      assert.is_true(names["RateLimit-Limit"])
      assert.is_true(names["RateLimit-Remaining"])
      assert.is_true(names["RateLimit-Reset"])
      assert.is_true(names["Retry-After"])
    end)
  end

  it("sends the same headers with three limiters as with four", function()
    minute_room()
    for _, path in ipairs({ "/three/x", "/four/x" }) do
      local res = get(path)
      assert.res_status(200, res)
      local h = res.headers
      assert.equal("20", h["X-RateLimit-Limit-Minute"])
      assert.equal("19", h["X-RateLimit-Remaining-Minute"])
      assert.equal("30", h["X-RateLimit-Limit-Hour"])
      assert.equal("29", h["X-RateLimit-Remaining-Hour"])
      assert.equal("40", h["X-RateLimit-Limit-Day"])
      assert.equal("39", h["X-RateLimit-Remaining-Day"])
      if path == "/four/x" then
        assert.equal("50", h["X-RateLimit-Limit-Month"])
        assert.equal("49", h["X-RateLimit-Remaining-Month"])
      else
        assert.is_nil(h["X-RateLimit-Limit-Month"])
      end
      assert.equal("20", h["RateLimit-Limit"]) -- the minute's: 19 left
      assert.equal("19", h["RateLimit-Remaining"])
      local reset = tonumber(h["RateLimit-Reset"])
      assert.is_true(reset >= 1 and reset <= 60)
    end
  end)

  it("opens a new window when the period turns", function()
    next_window(1, 0.02, 0.5)
    for _ = 1, 3 do
      assert.res_status(200, get("/p-second/x"))
    end
    assert.res_status(429, get("/p-second/x"))
    next_window(1, 0.02, 0.5) -- the next second
    local res = get("/p-second/x")
    assert.res_status(200, res)
    assert.equal("2", res.headers["X-RateLimit-Remaining-Second"])
  end)

  it("counts several periods, reports the tightest and does not count " ..
     "refused requests", function()
    minute_room()
    next_window(1, 0.02, 0.4)
    -- second 1: 2 pass, 2 refused by the second limit
    local r = {}
    for i = 1, 4 do
      r[i] = get("/multi/x")
    end
    assert.res_status(200, r[1])
    assert.equal("1", r[1].headers["X-RateLimit-Remaining-Second"])
    assert.equal("4", r[1].headers["X-RateLimit-Remaining-Minute"])
    assert.equal("2", r[1].headers["RateLimit-Limit"]) -- 1 left < 4 left
    assert.equal("1", r[1].headers["RateLimit-Remaining"])
    assert.res_status(200, r[2])
    assert_refused(r[3])
    assert.equal("0", r[3].headers["X-RateLimit-Remaining-Second"])
    assert.equal("3", r[3].headers["X-RateLimit-Remaining-Minute"])
    assert.equal("1", r[3].headers["Retry-After"])
    assert_refused(r[4])

    -- second 2: 2 more pass (the minute has 5, refused ones did not count)
    next_window(1, 0.02, 0.4)
    local a = get("/multi/x")
    assert.res_status(200, a)
    assert.equal("2", a.headers["X-RateLimit-Remaining-Minute"])
    local b = get("/multi/x")
    assert.res_status(200, b)
    assert.equal("0", b.headers["X-RateLimit-Remaining-Second"])
    assert.equal("1", b.headers["X-RateLimit-Remaining-Minute"])
    assert.equal("2", b.headers["RateLimit-Limit"]) -- 0 left < 1 left
    assert.res_status(429, get("/multi/x"))

    -- second 3: the fifth of the minute passes, then the minute refuses
    next_window(1, 0.02, 0.4)
    local c = get("/multi/x")
    assert.res_status(200, c)
    assert.equal("1", c.headers["X-RateLimit-Remaining-Second"])
    assert.equal("0", c.headers["X-RateLimit-Remaining-Minute"])
    assert.equal("5", c.headers["RateLimit-Limit"])
    assert.equal("0", c.headers["RateLimit-Remaining"])
    local t = now()
    local d = get("/multi/x")
    assert_refused(d)
    assert.equal("1", d.headers["X-RateLimit-Remaining-Second"])
    assert.equal("0", d.headers["X-RateLimit-Remaining-Minute"])
    assert.equal("5", d.headers["RateLimit-Limit"])
    assert.near(seconds_left("minute", t), tonumber(d.headers["Retry-After"]),
                1)
  end)

  it("limits a window of any length (limit + window_size)", function()
    at_phase(7, 0.2, 4)
    for i = 1, 4 do
      local t = now()
      local res = get("/custom/x")
      assert.res_status(200, res)
      assert.equal("4", res.headers["X-RateLimit-Limit-7"])
      assert.equal(tostring(4 - i), res.headers["X-RateLimit-Remaining-7"])
      assert.equal("4", res.headers["RateLimit-Limit"])
      assert.near(7 - floor(t) % 7, tonumber(res.headers["RateLimit-Reset"]),
                  1)
    end
    local res = get("/custom/x")
    assert_refused(res)
    assert.equal("0", res.headers["X-RateLimit-Remaining-7"])
    -- a window_size that is a period's length takes its name
    minute_room()
    res = get("/custom-hour/x")
    assert.res_status(200, res)
    assert.equal("2", res.headers["X-RateLimit-Limit-Hour"])
    assert.equal("1", res.headers["X-RateLimit-Remaining-Hour"])
  end)

  it("answers with error_code and error_message", function()
    minute_room()
    assert.res_status(200, get("/custom-error/x"))
    local res = get("/custom-error/x")
    assert_refused(res, "slow down", 503)
    assert.is_string(res.headers["Retry-After"])
  end)

  it("negotiates the refusal's format like kong.response.error", function()
    minute_room()
    get("/custom-error/x")
    local res = get("/custom-error/x", { Accept = "text/plain" })
    assert.equal(503, res.status)
    assert.matches("slow down", res.body, 1, true)
    assert.matches("^text/plain", res.headers["Content-Type"])
  end)

  it("hides its headers with hide_client_headers", function()
    minute_room()
    local res = get("/hidden/x")
    assert.res_status(200, res)
    no_rl_headers(res)
    res = get("/hidden/x")
    assert_refused(res)
    no_rl_headers(res)
  end)

  it("leaves the request to the upstream untouched", function()
    local res = get("/unlimited/x?a=1", { ["X-Thing"] = "1" })
    local req = json(res)
    assert.equal("/x", req.path)
    assert.equal("1", req.headers["x-thing"])
    assert.is_nil(req.headers["x-ratelimit-throttled-ms"])
  end)

  describe("limit_by", function()
    it("consumer falls back to the client address without one", function()
      minute_room()
      assert.res_status(200, get("/lb-consumer/x"))
      assert.res_status(200, get("/lb-consumer/x"))
      assert.res_status(429, get("/lb-consumer/x"))
      -- another address has its own counter
      assert.res_status(200, get("/lb-consumer/x", nil, "127.0.0.2"))
    end)

    it("consumer counts per consumer, whatever the credential", function()
      minute_room()
      local alice1 = { ["X-Consumer"] = "alice", ["X-Credential"] = "k1" }
      local alice2 = { ["X-Consumer"] = "alice", ["X-Credential"] = "k2" }
      assert.res_status(200, get("/lb-consumer/x", alice1))
      assert.res_status(200, get("/lb-consumer/x", alice2))
      assert.res_status(429, get("/lb-consumer/x", alice1))
      assert.res_status(429, get("/lb-consumer/x", alice2, "127.0.0.3"))
      local res = get("/lb-consumer/x", { ["X-Consumer"] = "bob" })
      assert.res_status(200, res)
      assert.equal("1", res.headers["X-RateLimit-Remaining-Minute"])
    end)

    it("credential counts per credential, else by address", function()
      minute_room()
      local k1 = { ["X-Consumer"] = "alice", ["X-Credential"] = "c1" }
      local k2 = { ["X-Consumer"] = "alice", ["X-Credential"] = "c2" }
      assert.res_status(200, get("/lb-credential/x", k1))
      assert.res_status(200, get("/lb-credential/x", k1))
      assert.res_status(429, get("/lb-credential/x", k1))
      assert.res_status(200, get("/lb-credential/x", k2))
      -- a consumer without a credential: the address
      local res = get("/lb-credential/x", { ["X-Consumer"] = "alice" },
                      "127.0.0.4")
      assert.res_status(200, res)
      assert.equal("1", res.headers["X-RateLimit-Remaining-Minute"])
    end)

    it("ip counts per client address, not X-Forwarded-For", function()
      minute_room()
      local spoof = { ["X-Forwarded-For"] = "203.0.113.9" }
      assert.res_status(200, get("/lb-ip/x", spoof, "127.0.0.5"))
      assert.res_status(200, get("/lb-ip/x", nil, "127.0.0.5"))
      assert.res_status(429, get("/lb-ip/x", spoof, "127.0.0.5"))
      assert.res_status(200, get("/lb-ip/x", nil, "127.0.0.6"))
    end)

    it("ip shares one counter across a service's routes", function()
      minute_room()
      assert.res_status(200, get("/ip-a/x", nil, "127.0.0.7"))
      assert.res_status(200, get("/ip-b/x", nil, "127.0.0.7"))
      assert.res_status(429, get("/ip-a/x", nil, "127.0.0.7"))
      assert.res_status(200, get("/ip-b/x", nil, "127.0.0.8"))
    end)

    it("service counts every caller of the service together", function()
      minute_room()
      assert.res_status(200, get("/svc-a/x", nil, "127.0.0.9"))
      assert.res_status(200, get("/svc-b/x", nil, "127.0.0.10"))
      local res = get("/svc-a/x", nil, "127.0.0.11")
      assert.res_status(200, res)
      assert.equal("0", res.headers["X-RateLimit-Remaining-Minute"])
      assert_refused(get("/svc-b/x", nil, "127.0.0.12"))
    end)

    it("header counts per header value, else by address", function()
      minute_room()
      local a = { ["X-Client"] = "a" }
      assert.res_status(200, get("/lb-header/x", a))
      assert.res_status(200, get("/lb-header/x", a, "127.0.0.13"))
      assert.res_status(429, get("/lb-header/x", a, "127.0.0.14"))
      assert.res_status(200, get("/lb-header/x", { ["X-Client"] = "b" }))
      -- long values are counted too (hashed in the key)
      local long = { ["X-Client"] = string.rep("z", 300) }
      assert.res_status(200, get("/lb-header/x", long))
      assert.res_status(200, get("/lb-header/x", long))
      assert.res_status(429, get("/lb-header/x", long))
      -- no header: the address
      local res = get("/lb-header/x", nil, "127.0.0.15")
      assert.res_status(200, res)
      assert.equal("1", res.headers["X-RateLimit-Remaining-Minute"])
    end)

    it("path counts the configured path apart, other paths by address",
       function()
      minute_room()
      assert.res_status(200, get("/lb-path/one", nil, "127.0.0.16"))
      assert.res_status(200, get("/lb-path/one", nil, "127.0.0.17"))
      assert.res_status(429, get("/lb-path/one", nil, "127.0.0.18"))
      -- other paths: the caller's address, shared between those paths
      assert.res_status(200, get("/lb-path/two", nil, "127.0.0.16"))
      assert.res_status(200, get("/lb-path/three", nil, "127.0.0.16"))
      assert.res_status(429, get("/lb-path/two", nil, "127.0.0.16"))
      assert.res_status(200, get("/lb-path/two", nil, "127.0.0.19"))
    end)
  end)
end)


-----------------------------------------------------------------------------
describe("rate-limiting across workers (local policy, 2 workers)", function()
  local mock, gw

  lazy_setup(function()
    mock = helpers.mock_upstream()
    local svc = { name = "echo", url = "http://127.0.0.1:" .. mock.port,
                  routes = {
                    rl_route("w-fixed", { hour = 25 }),
                    rl_route("w-sliding", { hour = 25,
                                            algorithm = "sliding-window" }),
                    rl_route("w-gcra", { hour = 25, algorithm = "gcra" }),
                  } }
    gw = assert(helpers.start_luagate({
      workers = 2,
      log_level = "notice",
      args = { "--plugins-dir", PLUGINS_DIR },
      config = {
        _format_version = "3.0",
        services = { svc },
        plugins = { { name = "rl-report" } },
      },
    }))
    gw_port = gw.proxy_port
  end)

  lazy_teardown(function()
    helpers.stop_luagate(gw)
    if mock then
      mock.stop()
    end
  end)

  for _, alg in ipairs({ "fixed", "sliding", "gcra" }) do
    it("lets exactly the limit through, concurrently (" .. alg .. ")",
       function()
      at_phase(3600, 0, 3590)
      local res = parallel(times(75, { path = "/w-" .. alg .. "/x" }))
      local n = statuses(res)
      assert.equal(25, n[200])
      assert.equal(50, n[429])
      -- both workers served
      local seen = {}
      helpers.wait_until(function()
        local count = 0
        for line in io.lines(gw.error_log) do
          local w = line:match("#worker (%d+): .*rl%-report path=/w%-" .. alg)
          if w then
            seen[w] = true
            count = count + 1
          end
        end
        return count == 75
      end, 10)
      assert.is_true(seen["0"] and seen["1"])
    end)
  end
end)


-----------------------------------------------------------------------------
describe("rate-limiting (redis policy, two nodes)", function()
  local mock, red, gw1, gw2
  local ROUTE_ID = "5c4b1b65-27b4-4f3d-9e0c-0d2a4c6f8a11"

  lazy_setup(function()
    mock = helpers.mock_upstream()
    red = helpers.redis()
    local function redis_conf(extra)
      local c = { policy = "redis",
                  redis = { host = "127.0.0.1", port = red.port } }
      for k, v in pairs(extra) do
        c[k] = v
      end
      return c
    end
    local config = {
      _format_version = "3.0",
      services = {
        { name = "echo", url = "http://127.0.0.1:" .. mock.port,
          routes = {
            rl_route("r-fixed", redis_conf({ hour = 30 })),
            rl_route("r-sliding", redis_conf({
              hour = 30, algorithm = "sliding-window" })),
            rl_route("r-gcra", redis_conf({ hour = 30, algorithm = "gcra" })),
            rl_route("r-keys", redis_conf({ minute = 3 }), { id = ROUTE_ID }),
            rl_route("r-flush", redis_conf({ minute = 3, limit_by = "header",
                                             header_name = "X-Flush" })),
            rl_route("r-shorthand", {
              second = 2, minute = 4, policy = "redis",
              redis_host = "127.0.0.1", redis_port = red.port,
            }),
          } },
      },
    }
    gw1 = assert(helpers.start_luagate({ workers = 2, config = config }))
    gw2 = assert(helpers.start_luagate({ workers = 2, config = config }))
    gw_port = gw1.proxy_port
  end)

  lazy_teardown(function()
    helpers.stop_luagate(gw1)
    helpers.stop_luagate(gw2)
    if red then
      red.stop()
    end
    if mock then
      mock.stop()
    end
  end)

  for _, alg in ipairs({ "fixed", "sliding", "gcra" }) do
    it("lets exactly the limit through across nodes (" .. alg .. ")",
       function()
      at_phase(3600, 0, 3590)
      local reqs = {}
      for i = 1, 90 do
        reqs[i] = { path = "/r-" .. alg .. "/x",
                    port = i % 2 == 0 and gw1.proxy_port or gw2.proxy_port }
      end
      local n = statuses(parallel(reqs))
      assert.equal(30, n[200])
      assert.equal(60, n[429])
    end)
  end

  it("keeps Kong's key shape and expiry in Redis", function()
    minute_room()
    local t = now()
    local res = get("/r-keys/x")
    assert.res_status(200, res)
    assert.equal("2", res.headers["X-RateLimit-Remaining-Minute"])
    local start_ms = (floor(t) - floor(t) % 60) * 1000
    local key = fmt("ratelimit:%s:%s:127.0.0.1:%d:minute", ROUTE_ID,
                    "00000000-0000-0000-0000-000000000000", start_ms)
    local cli = "redis-cli -p " .. red.port .. " "
    local _, out = helpers.execute(cli .. "GET " .. helpers.shell_quote(key))
    assert.equal("1", (out:gsub("%s+$", "")))
    local _, ttl = helpers.execute(cli .. "TTL " .. helpers.shell_quote(key))
    ttl = tonumber((ttl:gsub("%s+$", "")))
    assert.truthy(ttl > 0 and ttl <= 61, "ttl " .. tostring(ttl))
    -- the other node counts in the same key
    res = get("/r-keys/x", nil, nil, gw2.proxy_port)
    assert.equal("1", res.headers["X-RateLimit-Remaining-Minute"])
  end)

  it("counts exactly when Redis lost the script (NOSCRIPT, then EVAL)",
     function()
    minute_room()
    local cli = "redis-cli -p " .. red.port .. " "
    -- the script is loaded (earlier specs), then forgotten: the first
    -- requests of both nodes meet NOSCRIPT at once, in parallel
    local ok, out = helpers.execute(cli .. "SCRIPT FLUSH")
    assert.truthy(ok and out:find("OK", 1, true), out)
    local client = "flush-" .. now() -- a counter no other run has used
    local reqs = {}
    for i = 1, 12 do
      reqs[i] = { path = "/r-flush/x", headers = { ["X-Flush"] = client },
                  port = i % 2 == 0 and gw1.proxy_port or gw2.proxy_port }
    end
    local n = statuses(parallel(reqs))
    assert.equal(3, n[200])
    assert.equal(9, n[429])
    -- Redis has the script again (EVAL cached it)
    local _, info = helpers.execute(cli .. "INFO memory")
    assert.equal("1", info:match("number_of_cached_scripts:(%d+)"))
  end)

  it("reads Kong's deprecated redis_* fields", function()
    minute_room()
    next_window(1, 0.02, 0.5)
    local res = get("/r-shorthand/x")
    assert.res_status(200, res)
    assert.equal("1", res.headers["X-RateLimit-Remaining-Second"])
    assert.equal("3", res.headers["X-RateLimit-Remaining-Minute"])
    assert.res_status(200, get("/r-shorthand/x", nil, nil, gw2.proxy_port))
    assert_refused(get("/r-shorthand/x"))
  end)
end)


-----------------------------------------------------------------------------
describe("rate-limiting when Redis goes away", function()
  local mock, red, gw

  lazy_setup(function()
    mock = helpers.mock_upstream()
    red = helpers.redis()
    local function conf(ft)
      return { minute = 5, policy = "redis", fault_tolerant = ft,
               redis = { host = "127.0.0.1", port = red.port,
                         timeout = 500 } }
    end
    gw = assert(helpers.start_luagate({
      config = {
        _format_version = "3.0",
        services = {
          { name = "echo", url = "http://127.0.0.1:" .. mock.port,
            routes = {
              rl_route("tolerant", conf(true)),
              rl_route("strict", conf(false)),
            } },
        },
      },
    }))
    gw_port = gw.proxy_port
  end)

  lazy_teardown(function()
    helpers.stop_luagate(gw)
    if red then
      red.stop()
    end
    if mock then
      mock.stop()
    end
  end)

  it("lets requests through (fault_tolerant) or fails them, then recovers",
     function()
    minute_room()
    local res = get("/tolerant/x")
    assert.res_status(200, res)
    assert.equal("4", res.headers["X-RateLimit-Remaining-Minute"])
    res = get("/strict/x")
    assert.res_status(200, res)
    assert.equal("4", res.headers["X-RateLimit-Remaining-Minute"])

    local port = red.port
    red.stop()
    red = nil

    -- fault_tolerant = true: proxied, without counting (no headers), logged
    for _ = 1, 7 do
      res = get("/tolerant/x")
      assert.res_status(200, res)
      no_rl_headers(res)
    end
    helpers.wait_until(function()
      local log = helpers.read_file(gw.error_log) or ""
      return log:find("[rate-limiting] failed to get usage: ", 1, true)
    end, 5)

    -- fault_tolerant = false: Kong's 500
    res = get("/strict/x")
    assert.res_status(500, res)
    assert.equal("An unexpected error occurred", json(res).message)
    no_rl_headers(res)

    -- Redis is back on the same port: the client reconnects by itself
    red = helpers.redis({ port = port })
    helpers.wait_until(function()
      return get("/strict/x").status == 200
    end, 10)
    -- counting again, from the (empty) new Redis
    local left = {}
    for _ = 1, 10 do
      res = get("/strict/x")
      if res.status ~= 200 then
        break
      end
      left[#left + 1] = tonumber(res.headers["X-RateLimit-Remaining-Minute"])
    end
    assert_refused(res)
    assert.equal(0, left[#left])
    for i = 2, #left do
      assert.equal(left[i - 1] - 1, left[i])
    end
    res = get("/tolerant/x")
    assert.res_status(200, res)
    assert.equal("4", res.headers["X-RateLimit-Remaining-Minute"])
  end)
end)


-----------------------------------------------------------------------------
describe("rate-limiting algorithms", function()
  local mock, gw

  lazy_setup(function()
    mock = helpers.mock_upstream()
    local edge = { limit = 10, window_size = 2 }
    local function with(t, extra)
      local c = {}
      for k, v in pairs(t) do
        c[k] = v
      end
      for k, v in pairs(extra) do
        c[k] = v
      end
      return c
    end
    gw = assert(helpers.start_luagate({
      config = {
        _format_version = "3.0",
        services = {
          { name = "echo", url = "http://127.0.0.1:" .. mock.port,
            routes = {
              rl_route("edge-fixed", edge),
              rl_route("edge-sliding", with(edge,
                { algorithm = "sliding-window" })),
              rl_route("edge-gcra", with(edge, { algorithm = "gcra" })),
              rl_route("gcra-burst", { minute = 60, algorithm = "gcra",
                                       burst = 3 }),
              rl_route("gcra-rate", { second = 2, algorithm = "gcra",
                                      burst = 1 }),
              rl_route("sliding-minute", { minute = 3,
                                           algorithm = "sliding-window" }),
            } },
        },
      },
    }))
    gw_port = gw.proxy_port
  end)

  lazy_teardown(function()
    helpers.stop_luagate(gw)
    if mock then
      mock.stop()
    end
  end)

  it("no burst at a window's edge with sliding-window and gcra", function()
    -- late in a 2 s window: 10 requests each, all pass
    at_phase(2, 1.3, 1.6)
    for _, name in ipairs({ "edge-fixed", "edge-sliding", "edge-gcra" }) do
      local n = statuses(parallel(times(10, { path = "/" .. name .. "/x" })))
      assert.equal(10, n[200], name)
    end
    -- early in the next window: 10 more each
    at_phase(2, 0.05, 0.35)
    local passed = {}
    for _, name in ipairs({ "edge-fixed", "edge-sliding", "edge-gcra" }) do
      local n = statuses(parallel(times(10, { path = "/" .. name .. "/x" })))
      passed[name] = n[200] or 0
    end
    -- fixed windows let a second burst through, 20 in well under 2 s
    assert.equal(10, passed["edge-fixed"])
    -- sliding: the previous window still weighs ~90%: about one more
    assert.truthy(passed["edge-sliding"] <= 2,
                  "sliding passed " .. passed["edge-sliding"])
    -- gcra: 5 per second came back since the burst (~0.8 s ago)
    assert.truthy(passed["edge-gcra"] >= 1 and passed["edge-gcra"] <= 6,
                  "gcra passed " .. passed["edge-gcra"])
  end)

  it("sliding-window reports the wait until the request fits", function()
    minute_room()
    local res
    for _ = 1, 3 do
      res = get("/sliding-minute/x")
      assert.res_status(200, res)
    end
    assert.equal("0", res.headers["X-RateLimit-Remaining-Minute"])
    local t = now()
    res = get("/sliding-minute/x")
    assert_refused(res)
    -- this minute holds 3: the next one must weigh it below 2, i.e. a
    -- third of the way into it
    local expect = seconds_left("minute", t) + 20
    assert.near(expect, tonumber(res.headers["Retry-After"]), 2)
  end)

  it("gcra lets `burst` requests at once, then one per interval", function()
    -- 60 a minute: one a second, 3 at once after a quiet time
    local res = parallel(times(4, { path = "/gcra-burst/x" }))
    local n = statuses(res)
    assert.equal(3, n[200])
    assert.equal(1, n[429])
    for _, r in ipairs(res) do
      assert.equal("60", r.headers["X-RateLimit-Limit-Minute"])
      if r.status == 429 then
        assert.equal("1", r.headers["Retry-After"])
        assert.equal("0", r.headers["X-RateLimit-Remaining-Minute"])
      end
    end
    -- one interval (1 s) later, one more fits, and only one
    helpers.wait_until(function()
      return get("/gcra-burst/x").status == 200
    end, 2, 0.02)
    assert.res_status(429, get("/gcra-burst/x"))
  end)

  it("gcra spaces requests at the rate: no window edge", function()
    -- 2 per second, burst 1: one every 0.5 s
    helpers.wait_until(function()
      return get("/gcra-rate/x").status == 200
    end, 2, 0.05)
    assert.res_status(429, get("/gcra-rate/x"))
    for _ = 1, 4 do
      socket.sleep(0.6) -- the client's pace, slower than the rate
      local res = get("/gcra-rate/x")
      assert.res_status(200, res)
      assert.equal("0", res.headers["X-RateLimit-Remaining-Second"])
    end
  end)
end)


-----------------------------------------------------------------------------
describe("rate-limiting throttle", function()
  local mock, gw

  lazy_setup(function()
    mock = helpers.mock_upstream()
    gw = assert(helpers.start_luagate({
      log_level = "notice",
      args = { "--plugins-dir", PLUGINS_DIR },
      config = {
        _format_version = "3.0",
        services = {
          { name = "echo", url = "http://127.0.0.1:" .. mock.port,
            routes = {
              rl_route("th", { second = 2,
                               throttle = { max_wait_ms = 3000 } }),
              rl_route("th-queue", { second = 1, throttle = {
                max_wait_ms = 5000, max_queue = 2 } }),
              rl_route("th-short", { minute = 1, throttle = {
                max_wait_ms = 200 } }),
              rl_route("th-block", { limit = 1, window_size = 3, throttle = {
                max_wait_ms = 5000 } }),
              rl_route("th-gcra", { second = 4, algorithm = "gcra",
                                    burst = 1, throttle = {
                                      max_wait_ms = 3000 } }),
              { name = "plain", paths = { "/plain" } },
            } },
        },
        plugins = { { name = "rl-report" } },
      },
    }))
    gw_port = gw.proxy_port
  end)

  lazy_teardown(function()
    helpers.stop_luagate(gw)
    if mock then
      mock.stop()
    end
  end)

  it("delays requests over the rate instead of refusing them", function()
    mock.clear()
    next_window(1, 0.05, 0.3)
    local t0 = now()
    local res = parallel(times(6, { path = "/th/x" }))
    local elapsed = now() - t0
    local held = {}
    for _, r in ipairs(res) do
      assert.res_status(200, r)
      local ms = r.headers["X-RateLimit-Throttled-Ms"]
      if ms then
        held[#held + 1] = tonumber(ms)
      end
    end
    table.sort(held)
    -- 2 now, 2 at the next second, 2 at the one after
    assert.equal(4, #held)
    assert.truthy(held[1] >= 500 and held[2] <= 1200, table.concat(held, ","))
    assert.truthy(held[3] >= 1400 and held[4] <= 2300,
                  table.concat(held, ","))
    assert.truthy(elapsed >= 1.4 and elapsed < 3, "took " .. elapsed)
    -- the upstream is told how long the request was held
    local seen = 0
    for _, req in ipairs(mock.requests()) do
      local h = req.headers["x-ratelimit-throttled-ms"]
      if h then
        seen = seen + 1
        assert.truthy(tonumber(h) >= 500)
      end
    end
    assert.equal(4, seen)
    -- and the loggers
    helpers.wait_until(function()
      local waits = 0
      for line in io.lines(gw.error_log) do
        local ms = line:match("rl%-report path=/th/x status=200 " ..
                              "ratelimit_wait_ms=(%d+) " ..
                              "ratelimit_queue_depth=%d+")
        if ms and tonumber(ms) >= 500 then
          waits = waits + 1
        end
      end
      return waits == 4
    end, 5)
  end)

  it("refuses at once when the queue is full", function()
    next_window(1, 0.05, 0.3)
    local res = parallel(times(6, { path = "/th-queue/x" }))
    local n = statuses(res)
    -- 1 passes now, 2 wait their turn (max_queue), 3 are refused
    assert.equal(3, n[200])
    assert.equal(3, n[429])
    local waited = 0
    for _, r in ipairs(res) do
      if r.status == 429 then
        assert_refused(r)
        assert.equal("1", r.headers["Retry-After"])
        assert.is_nil(r.headers["X-RateLimit-Throttled-Ms"])
      elseif r.headers["X-RateLimit-Throttled-Ms"] then
        waited = waited + 1
      end
    end
    assert.equal(2, waited)
    helpers.wait_until(function()
      local depths = {}
      for line in io.lines(gw.error_log) do
        local d = line:match("rl%-report path=/th%-queue/x status=%d+ " ..
                             "ratelimit_wait_ms=%d+ " ..
                             "ratelimit_queue_depth=(%d+)")
        if d then
          depths[#depths + 1] = tonumber(d)
        end
      end
      table.sort(depths)
      -- the 2 that waited saw 1 and 2; the 3 refused ones found 2
      -- waiting (each leaves the count as it was)
      return #depths == 5 and table.concat(depths, ",") == "1,2,3,3,3"
    end, 5)
  end)

  it("refuses when the wait would pass max_wait_ms", function()
    minute_room()
    assert.res_status(200, get("/th-short/x"))
    local t = now()
    local res = get("/th-short/x")
    assert.truthy(now() - t < 1)
    assert_refused(res)
    assert.is_nil(res.headers["X-RateLimit-Throttled-Ms"])
    assert.near(seconds_left("minute", t), tonumber(res.headers["Retry-After"]),
                1)
  end)

  it("throttles gcra to an even pace", function()
    next_window(1, 0.05, 0.3)
    local t0 = now()
    local res = parallel(times(5, { path = "/th-gcra/x" }))
    local elapsed = now() - t0
    local held = {}
    for _, r in ipairs(res) do
      assert.res_status(200, r)
      held[#held + 1] = tonumber(r.headers["X-RateLimit-Throttled-Ms"] or 0)
    end
    table.sort(held)
    -- one every 0.25 s: 0, ~250, ~500, ~750, ~1000 ms
    assert.equal(0, held[1])
    for i = 2, 5 do
      assert.truthy(held[i] - held[i - 1] >= 150, table.concat(held, ","))
      assert.truthy(held[i] <= (i - 1) * 250 + 300, table.concat(held, ","))
    end
    assert.truthy(elapsed >= 0.9 and elapsed < 3, "took " .. elapsed)
  end)

  it("does not block the worker while a request is held", function()
    next_window(3, 0.05, 0.5)
    assert.res_status(200, get("/th-block/x"))
    -- the next one is held until the next 3 s window
    local held = socket.tcp()
    held:settimeout(10)
    assert(held:connect("127.0.0.1", gw.proxy_port))
    local t0 = now()
    assert(held:send(helpers.build_request({ path = "/th-block/x" },
                                           "127.0.0.1")))
    -- meanwhile the only worker answers others
    for _ = 1, 5 do
      local t1 = now()
      assert.res_status(200, get("/plain/x"))
      assert.truthy(now() - t1 < 1)
    end
    -- ... while the held one is still waiting
    held:settimeout(0)
    local data, err = held:receive(1)
    assert.is_nil(data)
    assert.equal("timeout", err)
    assert.truthy(now() - t0 < 2)
    held:settimeout(10)
    local res = assert(helpers.read_response(held, "GET"))
    held:close()
    assert.res_status(200, res)
    assert.truthy(now() - t0 >= 2)
    assert.truthy(tonumber(res.headers["X-RateLimit-Throttled-Ms"]) >= 2000)
  end)
end)


-----------------------------------------------------------------------------
describe("rate-limiting quotas per consumer group", function()
  local mock, gw

  lazy_setup(function()
    mock = helpers.mock_upstream()
    gw = assert(helpers.start_luagate({
      args = { "--plugins-dir", PLUGINS_DIR },
      config = {
        _format_version = "3.0",
        services = {
          { name = "api", url = "http://127.0.0.1:" .. mock.port,
            routes = { { name = "api", paths = { "/api" } } },
            plugins = { { name = "rl-auth", config = { required = true } } },
          },
        },
        consumer_groups = {
          { name = "free" },
          { name = "pro" },
          { name = "enterprise" },
        },
        consumers = {
          { username = "alice", groups = { "free" } },
          { username = "bob", groups = { "pro" } },
          { username = "carol", groups = { "enterprise" } },
        },
        plugins = {
          { name = "rate-limiting", consumer_group = "free",
            config = { day = 3, limit_by = "consumer" } },
          { name = "rate-limiting", consumer_group = "pro",
            config = { day = 6, limit_by = "consumer" } },
        },
      },
    }))
    gw_port = gw.proxy_port
  end)

  lazy_teardown(function()
    helpers.stop_luagate(gw)
    if mock then
      mock.stop()
    end
  end)

  local function count_until_refused(user, max)
    local passed = 0
    for _ = 1, max do
      local res = get("/api/x", { ["X-Consumer"] = user })
      if res.status ~= 200 then
        assert_refused(res)
        return passed, res
      end
      passed = passed + 1
    end
    return passed
  end

  it("gives each tier its daily quota", function()
    minute_room()
    local res = get("/api/x", { ["X-Consumer"] = "alice" })
    assert.res_status(200, res)
    assert.equal("3", res.headers["X-RateLimit-Limit-Day"])
    local passed, refused = count_until_refused("alice", 10)
    assert.equal(2, passed)
    assert.equal("3", refused.headers["X-RateLimit-Limit-Day"])
    assert.near(seconds_left("day", now()),
                tonumber(refused.headers["Retry-After"]), 2)

    res = get("/api/x", { ["X-Consumer"] = "bob" })
    assert.equal("6", res.headers["X-RateLimit-Limit-Day"])
    passed = count_until_refused("bob", 10)
    assert.equal(5, passed)

    -- enterprise: no plugin for the group, no limit
    local p, r = count_until_refused("carol", 20)
    assert.equal(20, p)
    assert.is_nil(r)
    no_rl_headers(get("/api/x", { ["X-Consumer"] = "carol" }))

    -- without a consumer, the auth plugin refuses before any quota
    res = get("/api/x")
    assert.res_status(401, res)
  end)
end)


-----------------------------------------------------------------------------
-- The same tiers with the bundled key-auth, as docs/plugins/rate-limiting.md
-- shows them (pending while plugins/key-auth is not there).
local has_key_auth = helpers.read_file(helpers.root ..
                                       "/plugins/key-auth/handler.lua")
local describe_ka = has_key_auth and describe or pending

describe_ka("rate-limiting quotas per consumer group with key-auth",
            function()
  local mock, gw

  lazy_setup(function()
    mock = helpers.mock_upstream()
    gw = assert(helpers.start_luagate({
      config = {
        _format_version = "3.0",
        services = {
          { name = "api", url = "http://127.0.0.1:" .. mock.port,
            routes = { { name = "api", paths = { "/api" } } },
            plugins = { { name = "key-auth",
                          config = { key_names = { "apikey" } } } },
          },
        },
        consumer_groups = {
          { name = "free" }, { name = "pro" }, { name = "enterprise" },
        },
        consumers = {
          { username = "alice", groups = { "free" },
            keyauth_credentials = { { key = "alice-key" } } },
          { username = "bob", groups = { "pro" },
            keyauth_credentials = { { key = "bob-key" } } },
          { username = "carol", groups = { "enterprise" },
            keyauth_credentials = { { key = "carol-key" } } },
        },
        plugins = {
          { name = "rate-limiting", consumer_group = "free",
            config = { day = 2, limit_by = "consumer" } },
          { name = "rate-limiting", consumer_group = "pro",
            config = { day = 4, limit_by = "consumer" } },
        },
      },
    }))
    gw_port = gw.proxy_port
  end)

  lazy_teardown(function()
    helpers.stop_luagate(gw)
    if mock then
      mock.stop()
    end
  end)

  it("gives each tier its daily quota", function()
    minute_room()
    local function run(key, max)
      local passed = 0
      for _ = 1, max do
        local res = get("/api/x", { apikey = key })
        if res.status ~= 200 then
          assert_refused(res)
          return passed, res
        end
        passed = passed + 1
      end
      return passed
    end
    local passed, refused = run("alice-key", 10)
    assert.equal(2, passed)
    assert.equal("2", refused.headers["X-RateLimit-Limit-Day"])
    passed = run("bob-key", 10)
    assert.equal(4, passed)
    passed, refused = run("carol-key", 10)
    assert.equal(10, passed)
    assert.is_nil(refused)
    assert.res_status(401, get("/api/x"))
  end)
end)
