-- Upstreams and targets: balancing, passive and active health checks,
-- self-readmission, retries on another target, failover across priority
-- tiers, the health endpoint. Real luagate, real mock upstreams.
local helpers = require "spec.helpers"

local fmt = string.format


-- the target of each logged request, from the access log's upstream_tries
local function targets_of(gw, from)
  local out = {}
  local entries = helpers.access_log_entries(gw)
  for i = (from or 0) + 1, #entries do
    local tries = entries[i].upstream_tries
    if tries and #tries > 0 then
      out[#out + 1] = { target = tries[#tries].target, tries = tries,
                        status = entries[i].status }
    end
  end
  return out, #entries
end

local function wait_logged(gw, n)
  helpers.wait_until(function()
    return #helpers.access_log_entries(gw) >= n
  end, 10)
end

local function service(upstream, extra)
  local s = { name = "s", host = upstream, retries = 3,
              connect_timeout = 1000, read_timeout = 5000,
              routes = { { name = "r", paths = { "/" } } } }
  for k, v in pairs(extra or {}) do s[k] = v end
  return s
end

local function get(client, path, headers)
  return assert(client:get(path, { headers = headers }))
end


describe("upstreams", function()
  local mocks = {}

  lazy_setup(function()
    for i = 1, 3 do
      mocks[i] = helpers.mock_upstream()
    end
  end)

  lazy_teardown(function()
    for _, m in ipairs(mocks) do
      m.stop()
    end
  end)

  local function t(i)
    return "127.0.0.1:" .. mocks[i].port
  end

  describe("weighted round-robin", function()
    local gw

    lazy_setup(function()
      gw = assert(helpers.start_luagate({
        config = {
          _format_version = "3.0",
          upstreams = { { name = "pool", targets = {
            { target = t(1), weight = 100 },
            { target = t(2), weight = 300 },
            { target = t(3), weight = 0 }, -- disabled
          } } },
          services = { service("pool") },
        },
      }))
    end)

    lazy_teardown(function()
      helpers.stop_luagate(gw)
    end)

    it("spreads 10,000 requests by weight, smoothly, and never to a weight-0 target", function()
      local client = helpers.proxy_client(gw)
      local n = 10000
      for _ = 1, n do
        assert.equal(200, get(client, "/x").status)
      end
      client:close()
      wait_logged(gw, n)
      local got = targets_of(gw)
      local count = { [t(1)] = 0, [t(2)] = 0, [t(3)] = 0 }
      local run, longest = 0, 0
      local last
      for _, e in ipairs(got) do
        count[e.target] = count[e.target] + 1
        run = e.target == last and run + 1 or 1
        last = e.target
        if run > longest then longest = run end
      end
      assert.equal(0, count[t(3)])
      -- within 5% of the weights (25% / 75%)
      assert.is_true(math.abs(count[t(1)] / n - 0.25) < 0.05, tostring(count[t(1)]))
      assert.is_true(math.abs(count[t(2)] / n - 0.75) < 0.05, tostring(count[t(2)]))
      -- smooth: never more than 3 in a row for a 1:3 split
      assert.is_true(longest <= 3, "longest run " .. longest)
    end)

    it("reports the targets' health on the admin API", function()
      local res = helpers.request_once(gw.admin_port, { path = "/upstreams/pool/health" })
      assert.equal(200, res.status)
      local body = helpers.json_decode(res.body)
      assert.equal(3, body.total)
      assert.equal(t(1), body.data[1].target)
      assert.equal("HEALTHY", body.data[1].health)
      assert.equal("DISABLED", body.data[3].health)
      local missing = helpers.request_once(gw.admin_port, { path = "/upstreams/nope/health" })
      assert.equal(404, missing.status)
    end)

    it("takes Kong's manual override: PUT .../targets/{t}/unhealthy and /healthy", function()
      local function put(path, method)
        return assert(helpers.request_once(gw.admin_port, { method = method or "PUT", path = path }))
      end
      local function health(i)
        local res = helpers.request_once(gw.admin_port, { path = "/upstreams/pool/health" })
        return helpers.json_decode(res.body).data[i].health
      end
      local res = put("/upstreams/pool/targets/" .. t(2) .. "/unhealthy")
      assert.equal(204, res.status)
      assert.is_nil(res.headers["content-length"])
      assert.equal("UNHEALTHY", health(2))
      assert.matches("set unhealthy through the admin API", helpers.read_file(gw.error_log), 1, true)
      -- every request goes to the one healthy target now
      local client = helpers.proxy_client(gw)
      local _, from = targets_of(gw)
      for _ = 1, 20 do
        assert.equal(200, get(client, "/x").status)
      end
      wait_logged(gw, from + 20)
      for _, e in ipairs((targets_of(gw, from))) do
        assert.equal(t(1), e.target)
      end
      -- Kong 1.x's POST works too
      assert.equal(204, put("/upstreams/pool/targets/" .. t(2) .. "/healthy", "POST").status)
      assert.equal("HEALTHY", health(2))
      local seen = {}
      _, from = targets_of(gw)
      for _ = 1, 8 do
        assert.equal(200, get(client, "/x").status)
      end
      client:close()
      wait_logged(gw, from + 8)
      for _, e in ipairs((targets_of(gw, from))) do
        seen[e.target] = true
      end
      assert.truthy(seen[t(2)])
      -- unknown names and other methods
      assert.equal(404, put("/upstreams/nope/targets/" .. t(2) .. "/healthy").status)
      assert.equal(404, put("/upstreams/pool/targets/127.0.0.1:1/healthy").status)
      assert.equal(405, put("/upstreams/pool/targets/" .. t(2) .. "/healthy", "DELETE").status)
    end)
  end)

  describe("host_header", function()
    it("sends the upstream's host_header as Host, its name otherwise", function()
      local gw = assert(helpers.start_luagate({
        config = {
          _format_version = "3.0",
          upstreams = {
            { name = "named", host_header = "api.internal", targets = { { target = t(1) } } },
            { name = "plain", targets = { { target = t(1) } } },
          },
          services = {
            { name = "a", host = "named", routes = { { name = "a", paths = { "/a" } } } },
            { name = "b", host = "plain", port = 8080,
              routes = { { name = "b", paths = { "/b" } } } },
            { name = "c", host = "named", routes = { { name = "c", paths = { "/c" },
                                                       preserve_host = true } } },
          },
        },
      }))
      finally(function() helpers.stop_luagate(gw) end)
      local client = helpers.proxy_client(gw)
      local function host_seen(path)
        local res = get(client, path, { Host = "client.example" })
        assert.equal(200, res.status)
        return helpers.json_decode(res.body).headers.host
      end
      assert.equal("api.internal", host_seen("/a"))
      assert.equal("plain:8080", host_seen("/b"))
      assert.equal("client.example", host_seen("/c"))
      client:close()
    end)
  end)

  describe("consistent hashing", function()
    local gw
    local function config(n, slots)
      local targets = {}
      for i = 1, n do
        targets[i] = { target = t(i) }
      end
      return {
        _format_version = "3.0",
        upstreams = { { name = "pool", algorithm = "consistent-hashing",
                        hash_on = "header", hash_on_header = "X-User",
                        hash_fallback = "ip", targets = targets, slots = slots } },
        services = { service("pool") },
      }
    end

    lazy_setup(function()
      gw = assert(helpers.start_luagate({ config = config(2) }))
    end)

    lazy_teardown(function()
      helpers.stop_luagate(gw)
    end)

    it("keeps a key on its target, and a new target takes only its own share", function()
      local client = helpers.proxy_client(gw)
      local keys = 300
      for k = 1, keys do
        get(client, "/x", { ["X-User"] = "user-" .. k })
        get(client, "/x", { ["X-User"] = "user-" .. k })
      end
      wait_logged(gw, keys * 2)
      local before, seen = targets_of(gw)
      local place = {}
      for k = 1, keys do
        local a, b = before[2 * k - 1].target, before[2 * k].target
        assert.equal(a, b, "user-" .. k .. " moved between two requests")
        place[k] = a
      end
      client:close()

      assert(helpers.reload_luagate(gw, config(3)))
      client = helpers.proxy_client(gw)
      for k = 1, keys do
        get(client, "/x", { ["X-User"] = "user-" .. k })
      end
      client:close()
      wait_logged(gw, seen + keys)
      local after = targets_of(gw, seen)
      local moved, to_new = 0, 0
      for k = 1, keys do
        if after[k].target ~= place[k] then
          moved = moved + 1
          assert.equal(t(3), after[k].target, "user-" .. k .. " moved between old targets")
          to_new = to_new + 1
        end
      end
      -- about a third moves, all to the new target
      assert.is_true(moved > keys * 0.2 and moved < keys * 0.5, "moved " .. moved)
      assert.equal(moved, to_new)
    end)

    it("sizes the ring by slots: 65536 spreads 1,200 keys within a few percent", function()
      assert(helpers.reload_luagate(gw, config(3, 65536)))
      local _, seen = targets_of(gw)
      local client = helpers.proxy_client(gw)
      local keys = 1200
      for k = 1, keys do
        get(client, "/x", { ["X-User"] = "slots-" .. k })
      end
      client:close()
      wait_logged(gw, seen + keys)
      local count = {}
      for _, e in ipairs((targets_of(gw, seen))) do
        count[e.target] = (count[e.target] or 0) + 1
      end
      for i = 1, 3 do
        local share = (count[t(i)] or 0) / keys
        assert.is_true(share > 0.27 and share < 0.40, t(i) .. " got " .. share)
      end
    end)
  end)

  describe("passive health checks, retries and readmission", function()
    local gw, spare

    lazy_setup(function()
      spare = helpers.mock_upstream()
      gw = assert(helpers.start_luagate({
        config = {
          _format_version = "3.0",
          upstreams = { { name = "pool",
            healthchecks = { passive = {
              unhealthy = { tcp_failures = 1, http_failures = 2 },
              readmission = { backoff_s = 1 } } },
            targets = { { target = t(1) },
                        { target = "127.0.0.1:" .. spare.port } } } },
          services = { service("pool") },
        },
      }))
    end)

    lazy_teardown(function()
      helpers.stop_luagate(gw)
      spare.stop()
    end)

    it("retries a refused connection on another target, ejects the dead one, " ..
       "and readmits it after a successful probe", function()
      local port = spare.port
      spare.stop()
      local client = helpers.proxy_client(gw)
      for _ = 1, 6 do
        assert.equal(200, get(client, "/x").status)
      end
      wait_logged(gw, 6)
      local got = targets_of(gw)
      local retried = 0
      for _, e in ipairs(got) do
        if #e.tries == 2 then
          retried = retried + 1
          assert.equal("127.0.0.1:" .. port, e.tries[1].target)
          assert.equal(0, e.tries[1].status)
          assert.equal(t(1), e.tries[2].target)
        end
      end
      -- one refused try ejected it: the others went straight to the live one
      assert.equal(1, retried)
      assert.matches("is unhealthy", helpers.read_file(gw.error_log), 1, true)

      -- back on the same port: after the back-off a request probes it
      spare = helpers.mock_upstream({ port = port })
      local _, seen = targets_of(gw)
      helpers.wait_until(function()
        get(client, "/x")
        local after = targets_of(gw, seen)
        for _, e in ipairs(after) do
          if e.target == "127.0.0.1:" .. port and e.status == 200 then
            return true
          end
        end
      end, 10)
      assert.matches("is healthy again", helpers.read_file(gw.error_log), 1, true)
      client:close()
    end)

    it("answers 503 when every target is down", function()
      local port = spare.port
      spare.stop()
      mocks[1].stop()
      local client = helpers.proxy_client(gw)
      local res
      for _ = 1, 3 do
        res = get(client, "/x")
      end
      assert.equal(503, res.status)
      assert.equal("failure to get a peer from the ring-balancer",
                   helpers.json_decode(res.body).message)
      client:close()
      mocks[1] = helpers.mock_upstream({ port = tonumber(t(1):match(":(%d+)$")) })
      spare = helpers.mock_upstream({ port = port })
    end)
  end)

  describe("failover across priority tiers", function()
    local gw, backup

    lazy_setup(function()
      backup = helpers.mock_upstream()
      gw = assert(helpers.start_luagate({
        config = {
          _format_version = "3.0",
          upstreams = { { name = "pool",
            healthchecks = { passive = { unhealthy = { tcp_failures = 1 },
                                         readmission = { backoff_s = 0.5 } } },
            targets = { { target = t(2), priority = 0 },
                        { target = "127.0.0.1:" .. backup.port, priority = 1 } } } },
          services = { service("pool") },
        },
      }))
    end)

    lazy_teardown(function()
      helpers.stop_luagate(gw)
      backup.stop()
    end)

    it("sends nothing to the backup tier while the primary is healthy, " ..
       "fails over, and fails back", function()
      local client = helpers.proxy_client(gw)
      for _ = 1, 10 do
        get(client, "/x")
      end
      wait_logged(gw, 10)
      for _, e in ipairs((targets_of(gw))) do
        assert.equal(t(2), e.target)
      end
      local port2 = tonumber(t(2):match(":(%d+)$"))
      mocks[2].stop()
      local _, seen = targets_of(gw)
      for _ = 1, 5 do
        assert.equal(200, get(client, "/x").status)
      end
      wait_logged(gw, seen + 5)
      local after = targets_of(gw, seen)
      assert.equal("127.0.0.1:" .. backup.port, after[#after].target)

      mocks[2] = helpers.mock_upstream({ port = port2 })
      local _, seen2 = targets_of(gw)
      helpers.wait_until(function()
        get(client, "/x")
        local list = targets_of(gw, seen2)
        return #list > 0 and list[#list].target == t(2)
      end, 10)
      client:close()
    end)
  end)

  describe("active health checks", function()
    local gw, flaky

    lazy_setup(function()
      flaky = helpers.mock_upstream()
      gw = assert(helpers.start_luagate({
        workers = 2,
        config = {
          _format_version = "3.0",
          upstreams = { { name = "pool",
            healthchecks = { active = {
              http_path = "/status/200", timeout = 0.5,
              healthy = { interval = 0.2, successes = 1 },
              unhealthy = { interval = 0.2, tcp_failures = 1, http_failures = 1 } } },
            targets = { { target = t(3) },
                        { target = "127.0.0.1:" .. flaky.port } } } },
          services = { service("pool") },
        },
      }))
    end)

    lazy_teardown(function()
      helpers.stop_luagate(gw)
      flaky.stop()
    end)

    local function health_of(target)
      local res = helpers.request_once(gw.admin_port, { path = "/upstreams/pool/health" })
      for _, d in ipairs(helpers.json_decode(res.body).data) do
        if d.target == target then
          return d.health
        end
      end
    end

    it("marks a target down when its probes fail and up when they pass, " ..
       "for every worker", function()
      local target = "127.0.0.1:" .. flaky.port
      assert.equal("HEALTHY", health_of(target))
      local port = flaky.port
      flaky.stop()
      helpers.wait_until(function()
        return health_of(target) == "UNHEALTHY"
      end, 10)
      -- no request reaches it (on either worker) while it is down
      local _, seen = targets_of(gw)
      for _ = 1, 10 do
        local client = helpers.proxy_client(gw)
        assert.equal(200, get(client, "/x").status)
        client:close()
      end
      wait_logged(gw, seen + 10)
      for _, e in ipairs((targets_of(gw, seen))) do
        assert.equal(t(3), e.target)
        assert.equal(1, #e.tries)
      end
      flaky = helpers.mock_upstream({ port = port })
      helpers.wait_until(function()
        return health_of(target) == "HEALTHY"
      end, 10)
      assert.matches("is healthy again (active health check)",
                     helpers.read_file(gw.error_log), 1, true)
    end)
  end)

  describe("least connections", function()
    local gw

    lazy_setup(function()
      gw = assert(helpers.start_luagate({
        config = {
          _format_version = "3.0",
          upstreams = { { name = "pool", algorithm = "least-connections",
                          targets = { { target = t(1) }, { target = t(3) } } } },
          services = { service("pool") },
        },
      }))
    end)

    lazy_teardown(function()
      helpers.stop_luagate(gw)
    end)

    it("sends new requests to the target with fewer requests in flight", function()
      -- one slow request holds a connection to one target...
      local slow = helpers.raw_connect(gw.proxy_port)
      assert(slow:send("GET /delay/1.5 HTTP/1.1\r\nHost: x\r\n\r\n"))
      helpers.wait_until(function()
        local st = helpers.request_once(gw.admin_port, { path = "/upstreams/pool/health" })
        for _, d in ipairs(helpers.json_decode(st.body).data) do
          if d.active_connections == 1 then
            return true
          end
        end
      end, 5)
      -- ...so the next ones all go to the other
      local client = helpers.proxy_client(gw)
      for _ = 1, 4 do
        get(client, "/x")
      end
      client:close()
      assert.equal(200, assert(slow:read_response()).status)
      slow:close()
      wait_logged(gw, 5)
      local got = targets_of(gw)
      assert.equal(5, #got)
      local fast = {}
      for i = 1, 4 do
        fast[got[i].target] = true
      end
      -- the 4 quick requests (logged first) all went to one target, and the
      -- slow one (logged last) to the other
      local n = 0
      for _ in pairs(fast) do n = n + 1 end
      assert.equal(1, n)
      assert.is_nil(fast[got[5].target])
    end)
  end)
end)
