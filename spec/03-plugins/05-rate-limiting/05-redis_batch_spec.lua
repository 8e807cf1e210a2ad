-- rate-limiting's Redis batches (plugins/rate-limiting/policies.lua): the
-- requests of a client that arrive while a script command of the plan is
-- under way wait in a batch, counted by one script run. Redis is paused
-- (CLIENT PAUSE) while the requests arrive, so that they do meet in
-- batches (for a second or more: sending them may take a while on a loaded
-- machine): each spec then checks the counts are exact, each request gets
-- its own place in the order (its remaining count), and what happens when
-- clients leave, Redis is late, or Redis lost the script.
local helpers = require "spec.helpers"
local socket = require "socket"

local fmt = string.format

local ROUTE_ID = "9d0e3c1a-6b1f-4c55-8e0a-3f0b6a2c7d41"
local TWO_ID = "4a7e2f90-1c3d-4b8e-9f21-6d5c0b7a8e33"
local SERVICE_ID = "00000000-0000-0000-0000-000000000000"


local support = require "spec.03-plugins.05-rate-limiting.support"
local now, at_phase = support.now, support.at_phase
local statuses, times = support.statuses, support.times


describe("rate-limiting redis batches", function()
  local mock, red, gw, cli

  -- A client id no other run has used.
  local seq = 0
  local function client()
    seq = seq + 1
    return fmt("c%d-%d", seq, math.floor(now() * 1000))
  end

  local function redis_cli(args)
    local ok, out = helpers.execute(cli .. args)
    assert(ok, out)
    return (out:gsub("%s+$", ""))
  end

  -- Redis holds every client's commands for `ms` from now.
  local function pause(ms)
    assert.equal("OK", redis_cli("CLIENT PAUSE " .. ms .. " ALL"))
  end

  -- script runs Redis made since the last reset (EVALSHA and EVAL)
  local function script_calls()
    local info = redis_cli("INFO commandstats")
    local n = 0
    for calls in info:gmatch("cmdstat_eval%a*:calls=(%d+)") do
      n = n + tonumber(calls)
    end
    return n
  end

  local function send_all(reqs)
    return support.send_all(reqs, gw.proxy_port)
  end
  local read_all = support.read_all

  -- The sorted remaining counts of the answers with status 200.
  local function remaining(list, header)
    local out = {}
    for _, res in ipairs(list) do
      if res.status == 200 then
        out[#out + 1] = tonumber(res.headers[header])
      end
    end
    table.sort(out)
    return out
  end

  local function range(a, b)
    local out = {}
    for i = a, b do
      out[#out + 1] = i
    end
    return out
  end

  local function route(name, config, extra)
    local c = { policy = "redis", limit_by = "header", header_name = "X-Client",
                redis = { host = "127.0.0.1", port = red.port } }
    for k, v in pairs(config) do
      c[k] = v
    end
    return support.rl_route(name, c, extra)
  end

  lazy_setup(function()
    mock = helpers.mock_upstream()
    red = helpers.redis()
    cli = "redis-cli -p " .. red.port .. " "
    gw = assert(helpers.start_luagate({
      workers = 1,
      config = {
        _format_version = "3.0",
        services = {
          { name = "echo", url = "http://127.0.0.1:" .. mock.port,
            routes = {
              route("fixed", { hour = 30 }),
              route("sliding", { hour = 30, algorithm = "sliding-window" }),
              route("gcra", { hour = 30, algorithm = "gcra" }),
              route("two", { minute = 20, hour = 25 }, { id = TWO_ID }),
              route("many", { hour = 1000 }, { id = ROUTE_ID }),
              route("late-tolerant", { hour = 1000, fault_tolerant = true,
                                       redis = { host = "127.0.0.1",
                                                 port = red.port,
                                                 timeout = 150 } }),
              route("late-strict", { hour = 1000, fault_tolerant = false,
                                     redis = { host = "127.0.0.1",
                                               port = red.port,
                                               timeout = 150 } }),
              route("flush", { hour = 10 }),
            } },
        },
      },
    }))
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

  after_each(function()
    -- no worker died, no coroutine failed
    local log = helpers.read_file(gw.error_log) or ""
    assert.is_nil(log:find("coroutine failed", 1, true), log)
    assert.is_nil(log:find("exited on signal", 1, true), log)
  end)

  for _, alg in ipairs({ "fixed", "sliding", "gcra" }) do
    it("counts a batch exactly, each request in its place (" .. alg .. ")",
       function()
      at_phase(3600, 0, 3590)
      redis_cli("CONFIG RESETSTAT")
      local id = client()
      pause(1000)
      local res = read_all(send_all(times(80, {
        path = "/" .. alg .. "/x", headers = { ["X-Client"] = id } })))
      local n = statuses(res)
      assert.equal(30, n[200])
      assert.equal(50, n[429])
      -- the 30 admitted saw 29, 28, ... 0 left: one place each
      assert.same(range(0, 29), remaining(res, "X-RateLimit-Remaining-Hour"))
      for _, r in ipairs(res) do
        if r.status == 429 then
          assert.equal("0", r.headers["X-RateLimit-Remaining-Hour"])
          assert.truthy(tonumber(r.headers["Retry-After"]) >= 1)
        end
      end
      -- far fewer script runs than requests: they went in batches
      local calls = script_calls()
      assert.truthy(calls >= 1 and calls <= 20, "script runs: " .. calls)
      -- and the count stays exact after the batches
      local one = read_all(send_all({ { path = "/" .. alg .. "/x",
                                        headers = { ["X-Client"] = id } } }))
      assert.equal(429, one[1].status)
    end)
  end

  it("batches several clients and limiters in one round", function()
    at_phase(60, 0, 50)
    local a, b = client(), client()
    local reqs = {}
    for i = 1, 60 do
      reqs[i] = { path = "/two/x",
                  headers = { ["X-Client"] = i % 2 == 0 and a or b } }
    end
    pause(1000)
    local res = read_all(send_all(reqs))
    local of = { [a] = {}, [b] = {} }
    for i, r in ipairs(res) do
      local list = of[reqs[i].headers["X-Client"]]
      list[#list + 1] = r
    end
    for _, list in pairs(of) do
      local n = statuses(list)
      assert.equal(20, n[200])
      assert.equal(10, n[429])
      assert.same(range(0, 19),
                  remaining(list, "X-RateLimit-Remaining-Minute"))
      assert.same(range(5, 24), remaining(list, "X-RateLimit-Remaining-Hour"))
    end
  end)

  it("refuses with the right counts left when a count is above a lowered " ..
     "limit", function()
    at_phase(60, 0, 50)
    local id = client()
    local t = math.floor(now())
    local function key(size, period)
      return helpers.shell_quote(fmt("ratelimit:%s:%s:%s:%d:%s", TWO_ID,
                                     SERVICE_ID, id, (t - t % size) * 1000,
                                     period))
    end
    -- the minute's limit was 30 when these 25 were counted; it is 20 now
    redis_cli("SET " .. key(60, "minute") .. " 25 EX 120")
    redis_cli("SET " .. key(3600, "hour") .. " 24 EX 3700")
    local res = read_all(send_all({ { path = "/two/x",
                                      headers = { ["X-Client"] = id } } }))[1]
    assert.equal(429, res.status)
    assert.equal("0", res.headers["X-RateLimit-Remaining-Minute"])
    -- as for any refused request: the hour has one left, and is not counted
    assert.equal("1", res.headers["X-RateLimit-Remaining-Hour"])
    assert.equal("24", redis_cli("GET " .. key(3600, "hour")))
  end)

  it("answers the others when clients leave a batch, and counts all",
     function()
    at_phase(3600, 0, 3590)
    local id = client()
    pause(1000)
    local socks = send_all(times(40, { path = "/many/x",
                                       headers = { ["X-Client"] = id } }))
    socket.sleep(0.1)
    local stay = {}
    for i, sock in ipairs(socks) do
      if i % 2 == 0 then
        sock:close() -- gone while its request waits for Redis
      else
        stay[#stay + 1] = sock
      end
    end
    local n = statuses(read_all(stay))
    assert.equal(20, n[200])
    -- every request reached Redis in its batch, the gone ones too (as a
    -- request sent alone is counted when its client leaves)
    local start_ms = (math.floor(now()) - math.floor(now()) % 3600) * 1000
    local key = fmt("ratelimit:%s:%s:%s:%d:hour", ROUTE_ID, SERVICE_ID, id,
                    start_ms)
    assert.equal("40", redis_cli("GET " .. helpers.shell_quote(key)))
    local one = read_all(send_all({ { path = "/many/x",
                                      headers = { ["X-Client"] = id } } }))
    assert.equal(200, one[1].status)
    assert.equal("959", one[1].headers["X-RateLimit-Remaining-Hour"])
  end)

  it("fails a batch Redis answers too late: through with fault_tolerant, " ..
     "else 500", function()
    at_phase(3600, 0, 3590)
    local id = client()
    pause(1500)
    local tol = send_all(times(10, { path = "/late-tolerant/x",
                                     headers = { ["X-Client"] = id } }))
    local strict = send_all(times(10, { path = "/late-strict/x",
                                        headers = { ["X-Client"] = id } }))
    for _, r in ipairs(read_all(tol)) do
      assert.equal(200, r.status)
      assert.is_nil(r.headers["X-RateLimit-Remaining-Hour"])
    end
    for _, r in ipairs(read_all(strict)) do
      assert.equal(500, r.status)
      assert.equal("An unexpected error occurred",
                   helpers.json_decode(r.body).message)
    end
    local log = helpers.read_file(gw.error_log) or ""
    assert.truthy(log:find("failed to get usage: timeout", 1, true))
    -- Redis answers again: the plan counts as before
    helpers.wait_until(function()
      local r = read_all(send_all({
        { path = "/late-strict/x", headers = { ["X-Client"] = client() } } }))
      return r[1].status == 200
    end, 5)
  end)

  it("counts exactly when Redis lost the script, in batches", function()
    at_phase(3600, 0, 3590)
    assert.equal("OK", redis_cli("SCRIPT FLUSH"))
    local id = client()
    pause(1000)
    local n = statuses(read_all(send_all(times(30, {
      path = "/flush/x", headers = { ["X-Client"] = id } }))))
    assert.equal(10, n[200])
    assert.equal(20, n[429])
    local info = redis_cli("INFO memory")
    assert.equal("1", info:match("number_of_cached_scripts:(%d+)"))
  end)
end)
