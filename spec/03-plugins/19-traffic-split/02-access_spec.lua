-- traffic-split through the real binary and two mock upstreams: weighted
-- distribution (95/5 over 2,000 requests), shifting by config reload alone
-- (0/100, 100/0), match conditions, sticky choice across requests and
-- workers, url / service / upstream targets, paths, timeouts, the
-- X-Traffic-Split header, and a config naming an unknown service.
local helpers = require "spec.helpers"

local fmt = string.format

local HEADER = "x-traffic-split"


-- counts the X-Traffic-Split values of n requests
local function count_labels(gw, n, path, opts)
  local client = helpers.proxy_client(gw)
  local counts = {}
  for _ = 1, n do
    local res = assert(client:get(path, opts))
    assert.res_status(200, res)
    local label = res.headers[HEADER] or "none"
    counts[label] = (counts[label] or 0) + 1
  end
  client:close()
  return counts
end


local function echo(res, status)
  return assert(helpers.json_decode(assert.res_status(status or 200, res)))
end


describe("traffic-split", function()
  local stable, canary

  lazy_setup(function()
    stable = helpers.mock_upstream()
    canary = helpers.mock_upstream()
  end)

  lazy_teardown(function()
    stable.stop()
    canary.stop()
  end)

  local function A(path)
    return fmt("http://127.0.0.1:%d%s", stable.port, path or "")
  end

  local function B(path)
    return fmt("http://127.0.0.1:%d%s", canary.port, path or "")
  end


  describe("weights and reloads", function()
    local gw

    local function config(w_stable, w_canary)
      return {
        _format_version = "3.0",
        services = {
          { name = "stable", url = A("/stable"), routes = {
            { name = "split", paths = { "/split" }, plugins = {
              { name = "traffic-split", config = { rules = { { targets = {
                { name = "stable", weight = w_stable },
                { name = "canary", url = B("/canary"), weight = w_canary },
              } } } } },
            } },
            { name = "sticky", paths = { "/sticky" }, plugins = {
              { name = "traffic-split", config = {
                sticky = { by = "header", name = "X-User" },
                rules = { { targets = {
                  { name = "stable", weight = w_stable },
                  { name = "canary", url = B("/canary"), weight = w_canary },
                } } },
              } },
            } },
          } },
        },
      }
    end

    lazy_setup(function()
      gw = assert(helpers.start_luagate({ config = config(95, 5) }))
    end)

    lazy_teardown(function()
      helpers.stop_luagate(gw)
    end)

    it("sends 5% to the canary: 95/5 over 2,000 requests", function()
      canary.clear()
      local counts = count_labels(gw, 2000, "/split/x")
      assert.equal(2000, (counts.stable or 0) + (counts.canary or 0))
      -- 100 expected; +-2.5% of 2,000
      assert.is_true(counts.canary >= 50 and counts.canary <= 150,
                     "canary got " .. tostring(counts.canary))
      -- the canary requests really reached the canary upstream, with its
      -- path in place of the service's
      local got = canary.requests()
      assert.equal(counts.canary, #got)
      for _, r in ipairs(got) do
        assert.equal("/canary/x", r.path)
      end
    end)

    it("proxies the stable share to the route's own service", function()
      local res = helpers.request_once(gw.proxy_port, { path = "/split/y?q=1" })
      -- retry until a stable one comes (95%)
      for _ = 1, 20 do
        if res.headers[HEADER] == "stable" then
          break
        end
        res = helpers.request_once(gw.proxy_port, { path = "/split/y?q=1" })
      end
      assert.equal("stable", res.headers[HEADER])
      local e = echo(res)
      assert.equal("/stable/y", e.path)
      assert.equal("1", e.query.q)
    end)

    it("shifts everything to the canary and back by reload alone", function()
      assert.is_true(helpers.reload_luagate(gw, config(0, 100)))
      assert.same({ canary = 200 }, count_labels(gw, 200, "/split/x"))
      assert.is_true(helpers.reload_luagate(gw, config(100, 0)))
      assert.same({ stable = 200 }, count_labels(gw, 200, "/split/x"))
      assert.is_true(helpers.reload_luagate(gw, config(95, 5)))
    end)

    it("moves sticky users only towards a growing canary", function()
      assert.is_true(helpers.reload_luagate(gw, config(80, 20)))
      local before = {}
      local client = helpers.proxy_client(gw)
      for i = 1, 300 do
        local res = client:get("/sticky",
                               { headers = { ["X-User"] = "u" .. i } })
        before[i] = res.headers[HEADER]
      end
      assert.is_true(helpers.reload_luagate(gw, config(50, 50)))
      client:close()
      client = helpers.proxy_client(gw)
      local on_canary, moved = 0, 0
      for i = 1, 300 do
        local res = client:get("/sticky",
                               { headers = { ["X-User"] = "u" .. i } })
        local now = res.headers[HEADER]
        if before[i] == "canary" then
          assert.equal("canary", now, "user u" .. i .. " left the canary")
        elseif now == "canary" then
          moved = moved + 1
        end
        if now == "canary" then
          on_canary = on_canary + 1
        end
      end
      client:close()
      assert.is_true(moved > 0)
      -- 150 expected
      assert.is_true(on_canary >= 100 and on_canary <= 200,
                     "on canary: " .. on_canary)
      assert.is_true(helpers.reload_luagate(gw, config(95, 5)))
    end)
  end)


  describe("rules, targets and sticky", function()
    local gw

    lazy_setup(function()
      local function split(rules, extra)
        local conf = { rules = rules }
        for k, v in pairs(extra or {}) do
          conf[k] = v
        end
        return { name = "traffic-split", config = conf }
      end
      local half = { { name = "stable", weight = 50 },
                     { name = "canary", url = B("/canary"), weight = 50 } }
      gw = assert(helpers.start_luagate({
        workers = 2,
        config = {
          _format_version = "3.0",
          consumers = {
            { username = "alice", keyauth_credentials = { { key = "ka" } } },
            { username = "bob", keyauth_credentials = { { key = "kb" } } },
          },
          upstreams = { { name = "pool", targets = {
            { target = fmt("127.0.0.1:%d", canary.port), weight = 100 },
          } } },
          services = {
            { name = "beta", url = B("/beta-svc") },
            { name = "slow", url = B(), read_timeout = 300 },
            { name = "stable", url = A("/stable"), routes = {
              { name = "match", paths = { "/match" }, plugins = { split({
                { match = { header = { name = "X-Beta", value = "1" } },
                  targets = { { name = "beta", url = B("/beta"),
                                weight = 1 } } },
                { match = { header = { name = "X-Version",
                                       regex = "^v2(\\.\\d+)?$" } },
                  targets = { { name = "v2", url = B("/v2"), weight = 1 } } },
                { match = { cookie = { name = "group", value = "b" } },
                  targets = { { name = "cookie", url = B("/cookie"),
                                weight = 1 } } },
                { match = { query = { name = "variant", value = "2" } },
                  targets = { { name = "query", url = B("/query"),
                                weight = 1 } } },
                { match = { header = { name = "X-Any" },
                            query = { name = "both" } },
                  targets = { { name = "both", url = B("/both"),
                                weight = 1 } } },
              }) } },
              { name = "consumer", paths = { "/consumer" }, plugins = {
                { name = "key-auth", config = {} },
                split({
                  { match = { consumer = "alice" },
                    targets = { { name = "alice", url = B("/alice"),
                                  weight = 1 } } },
                }),
              } },
              { name = "by-header", paths = { "/by-header" }, plugins = {
                split({ { targets = half } },
                      { sticky = { by = "header", name = "X-User" } }),
              } },
              { name = "by-cookie", paths = { "/by-cookie" }, plugins = {
                split({ { targets = half } },
                      { sticky = { by = "cookie", name = "uid" } }),
              } },
              { name = "by-ip", paths = { "/by-ip" }, plugins = {
                split({ { targets = half } }, { sticky = { by = "ip" } }),
              } },
              { name = "by-consumer", paths = { "/by-consumer" }, plugins = {
                { name = "key-auth", config = {} },
                split({ { targets = half } }, { sticky = { by = "consumer" } }),
              } },
              { name = "service", paths = { "/service" }, plugins = {
                split({ { targets = { { service = "beta", weight = 1 } } } }),
              } },
              { name = "service-timeout", paths = { "/service-timeout" },
                plugins = {
                  split({ { targets = { { service = "slow", weight = 1 } } } }),
                } },
              { name = "nostrip", paths = { "/nostrip" }, strip_path = false,
                plugins = { split({ { targets = {
                  { name = "c", url = B("/canary/"), weight = 1 } } } }) } },
              { name = "root-target", paths = { "/root-target" }, plugins = {
                split({ { targets = { { url = B(), weight = 1 } } } }) } },
              { name = "upstream", paths = { "/upstream" }, plugins = {
                split({ { targets = { { upstream = "pool", weight = 1 } } } }),
              } },
              { name = "no-header", paths = { "/no-header" }, plugins = {
                split({ { targets = { { url = B("/nh"), weight = 1 } } } },
                      { response_header = false }),
              } },
              { name = "unknown", paths = { "/unknown" }, plugins = {
                split({ { targets = { { service = "nope", weight = 1 } } } }),
              } },
            } },
          },
        },
      }))
    end)

    lazy_teardown(function()
      helpers.stop_luagate(gw)
    end)

    local function get(path, headers)
      return helpers.request_once(gw.proxy_port,
                                  { path = path, headers = headers })
    end

    it("routes by header value, header regex, cookie and query", function()
      local cases = {
        { { ["X-Beta"] = "1" }, "/match/p", "beta", "/beta/p" },
        { { ["X-Version"] = "v2.3" }, "/match/p", "v2", "/v2/p" },
        { { Cookie = "a=1; group=b; z=2" }, "/match/p", "cookie",
          "/cookie/p" },
        { {}, "/match/p?variant=2", "query", "/query/p" },
        { { ["X-Any"] = "x" }, "/match/p?both", "both", "/both/p" },
      }
      for _, c in ipairs(cases) do
        local res = get(c[2], c[1])
        assert.equal(c[3], res.headers[HEADER], c[3])
        assert.equal(c[4], echo(res).path)
      end
    end)

    it("tries the rules in order: the first match wins", function()
      local res = get("/match/p?variant=2", { ["X-Beta"] = "1",
                                              ["X-Version"] = "v2" })
      assert.equal("beta", res.headers[HEADER])
    end)

    it("leaves a request no rule matches to the route's service", function()
      for _, h in ipairs({
        {}, { ["X-Beta"] = "2" }, { ["X-Version"] = "v20" },
        { Cookie = "group=bb" }, { ["X-Any"] = "x" },
      }) do
        local res = get("/match/p?variant=3", h)
        assert.is_nil(res.headers[HEADER])
        assert.equal("/stable/p", echo(res).path)
      end
    end)

    it("matches the authenticated consumer", function()
      local res = get("/consumer/p", { apikey = "ka" })
      assert.equal("alice", res.headers[HEADER])
      assert.equal("/alice/p", echo(res).path)
      res = get("/consumer/p", { apikey = "kb" })
      assert.is_nil(res.headers[HEADER])
      assert.equal("/stable/p", echo(res).path)
      assert.res_status(401, get("/consumer/p"))
    end)

    it("keeps one header value on one target across workers", function()
      local sides = {}
      for i = 1, 40 do
        local first
        for _ = 1, 5 do
          local label = get("/by-header", { ["X-User"] = "user-" .. i })
                          .headers[HEADER]
          first = first or label
          assert.equal(first, label, "user-" .. i .. " moved")
        end
        sides[first] = (sides[first] or 0) + 1
      end
      -- 50/50: both sides get users
      assert.is_true((sides.stable or 0) > 5 and (sides.canary or 0) > 5)
    end)

    it("keeps one cookie value on one target", function()
      local sides = {}
      for i = 1, 40 do
        local first
        for _ = 1, 3 do
          local label = get("/by-cookie", { Cookie = "uid=c" .. i })
                          .headers[HEADER]
          first = first or label
          assert.equal(first, label)
        end
        sides[first] = true
      end
      assert.is_true(sides.stable and sides.canary)
    end)

    it("keeps one client IP on one target", function()
      local first = get("/by-ip").headers[HEADER]
      for _ = 1, 20 do
        assert.equal(first, get("/by-ip").headers[HEADER])
      end
    end)

    it("keeps one consumer on one target", function()
      for _, key in ipairs({ "ka", "kb" }) do
        local first = get("/by-consumer", { apikey = key }).headers[HEADER]
        assert.is_not_nil(first)
        for _ = 1, 10 do
          assert.equal(first, get("/by-consumer", { apikey = key })
                                .headers[HEADER])
        end
      end
    end)

    it("sends a service target to the service's host, port and path", function()
      local res = get("/service/p?x=1")
      assert.equal("beta", res.headers[HEADER]) -- the service's name
      local e = echo(res)
      assert.equal("/beta-svc/p", e.path)
      assert.equal("1", e.query.x)
    end)

    it("applies the service target's timeouts", function()
      local res = get("/service-timeout/delay/0.1")
      assert.equal("/delay/0.1", echo(res).path)
      local t0 = helpers.gettime()
      res = get("/service-timeout/delay/2")
      assert.res_status(504, res)
      assert.is_true(helpers.gettime() - t0 < 1.5)
    end)

    it("keeps the route's path handling with a url target", function()
      -- strip_path = false: the matched prefix stays
      local res = get("/nostrip/p")
      assert.equal("c", res.headers[HEADER])
      assert.equal("/canary/nostrip/p", echo(res).path)
      -- a url without a path: the path is what the route leaves
      res = get("/root-target/a/b")
      assert.equal("1.1", res.headers[HEADER]) -- rule.target positions
      assert.equal("/a/b", echo(res).path)
    end)

    it("sends an upstream target through the upstream", function()
      local res = get("/upstream/p")
      assert.equal("pool", res.headers[HEADER])
      -- the upstream's target is the canary mock; the path stays the
      -- service's
      assert.equal("/stable/p", echo(res).path)
      local got = canary.requests()
      assert.equal("/stable/p", got[#got].path)
    end)

    it("adds no header with response_header = false", function()
      local res = get("/no-header/p")
      assert.is_nil(res.headers[HEADER])
      assert.equal("/nh/p", echo(res).path)
    end)

    it("fails with 500 on a service the config lacks, and says why", function()
      local res = get("/unknown/p")
      local body = assert(helpers.json_decode(assert.res_status(500, res)))
      assert.equal("An unexpected error occurred", body.message)
      helpers.wait_until(function()
        local log = helpers.read_file(gw.error_log) or ""
        return log:find("no service named 'nope' in the config", 1, true)
      end, 5)
    end)
  end)
end)
