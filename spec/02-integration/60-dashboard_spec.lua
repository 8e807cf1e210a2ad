-- The admin listener's GET /dashboard, loaded in headless Chromium while
-- traffic flows (spec/fixtures/dashboard_check.py drives Chromium over the
-- DevTools pipe and sends the traffic); the page's computed state is read
-- from window.__dashboard. Chromium is required: without it this spec fails.
--
-- LUAGATE_DASHBOARD_FROM_FILE=1 loads lua/luagate/admin/dashboard.html from
-- the file system instead (with ?admin=<admin port>, web security off): for
-- working on the page with a gateway whose admin API has no /dashboard.
-- (the embedded JavaScript has long lines)
-- luacheck: max line length 110
local helpers = require "spec.helpers"

local fmt = string.format

local CHECK = helpers.root .. "/spec/fixtures/dashboard_check.py"
local PAGE = helpers.root .. "/lua/luagate/admin/dashboard.html"

local function find_chromium()
  for _, name in ipairs({ os.getenv("LUAGATE_CHROMIUM") or "", "chromium",
                          "chromium-browser" }) do
    if name ~= "" then
      local p = io.popen("command -v " .. helpers.shell_quote(name) ..
                         " 2>/dev/null")
      local path = p:read("*l")
      p:close()
      if path and path ~= "" then
        return path
      end
    end
  end
end

-- Checks of the page's pure functions (parser, quantiles, rates), run in
-- the page; each value is compared in the specs below.
local LIB_CHECKS = [==[
(function () {
  var L = window.__dashboard_lib, out = {};
  var text = [
    '# HELP kong_http_requests_total a "help" line',
    '# TYPE kong_http_requests_total counter',
    'kong_http_requests_total{service="we\\"ird\\\\name\\nx",route="r",code="200"} 7',
    'kong_http_requests_total{service="a,b}c",route="r",code="503"} 3 1700000000000',
    'kong_http_requests_total { service = "spaced" , code = "200" , } 2\r',
    'kong_request_latency_ms_bucket{service="s",le="+Inf"} 4',
    'some_gauge NaN',
    'other_gauge -Inf',
    'broken{service="x} 1',
    '',
  ].join('\n');
  var p = L.parseProm(text);
  out.parsed = p.samples.length;
  out.parseErrors = p.errors;
  out.weird = p.samples[0].labels.service;
  out.comma = p.samples[1].labels.service;
  out.commaValue = p.samples[1].value;
  out.spaced = p.samples[2].labels.service + "/" + p.samples[2].value;
  out.inf = p.samples[3].labels.le;
  out.nan = isNaN(p.samples[4].value);
  out.minusInf = p.samples[5].value === -Infinity;
  out.type = p.types.kong_http_requests_total;

  var H = L.histogramQuantile, B = [[1, 0], [2, 10], [5, 20], [Infinity, 20]];
  out.q50 = H(0.5, B);
  out.q75 = H(0.75, B);
  out.q100 = H(1, B);
  out.qInf = H(0.99, [[1, 0], [2, 10], [Infinity, 20]]);
  out.qFirst = H(0.5, [[10, 4], [Infinity, 4]]);
  out.qEmpty = String(H(0.5, [[1, 0], [Infinity, 0]]));

  function snap(body, uptime, t) {
    return L.snapshot(L.parseProm(body).samples, uptime === null ? null : { uptime: uptime }, t);
  }
  function req(svc, code, n) {
    return 'kong_http_requests_total{service="' + svc + '",route="r",code="' + code + '"} ' + n + '\n';
  }
  function hist(svc, counts) {   // counts for le 1, 10, +Inf (cumulative)
    return 'kong_request_latency_ms_bucket{service="' + svc + '",le="1"} ' + counts[0] + '\n' +
           'kong_request_latency_ms_bucket{service="' + svc + '",le="10"} ' + counts[1] + '\n' +
           'kong_request_latency_ms_bucket{service="' + svc + '",le="+Inf"} ' + counts[2] + '\n' +
           'kong_request_latency_ms_count{service="' + svc + '"} ' + counts[2] + '\n';
  }
  var a = snap(req("s1", 200, 100) + req("s1", 500, 10) + req("gone", 200, 5) +
               hist("s1", [50, 110, 110]), 100, 0);
  // 2 s later by the gateway's clock (the browser's says 10 s): s1 got 30
  // more requests, 10 of them 500s and 5 404s; "gone" disappeared; "new" appeared
  var b = snap(req("s1", 200, 115) + req("s1", 500, 20) + req("s1", 404, 5) +
               req("new", 200, 4) + hist("s1", [60, 140, 140]), 102, 10000);
  var r = L.compute(a, b);
  out.dt = r.dt;
  out.s1 = r.services.s1;
  out.newSvc = r.services["new"];
  out.goneListed = "gone" in r.services;
  out.totalRps = r.totalRps;
  // a counter reset (a restart of the worker): s1's counters went down
  var c = snap(req("s1", 200, 6) + req("s1", 500, 2) + hist("s1", [8, 8, 8]), 104, 12000);
  out.reset = L.compute(b, c).services.s1;
  // the gateway restarted (uptime went back): counts since its start
  var d = snap(req("s1", 200, 9), 3, 14000);
  var rd = L.compute(c, d);
  out.restart = { restarted: rd.restarted, dt: rd.dt, requests: rd.services.s1.requests };
  // without /status, the browser's clock
  out.noStatusDt = L.compute(snap(req("s1", 200, 1), null, 0), snap(req("s1", 200, 3), null, 4000)).dt;
  out.breakers = L.normalizeBreakers([{ name: "service 'a'", state: "half_open",
                                        consecutive_failures: 3 }]);
  out.breakersObj = L.normalizeBreakers({ data: [{ name: "x", state: "OPEN" }] });
  return JSON.stringify(out);
})()
]==]

-- One scrape whose /upstreams/{name}/health answer reaches the page 800 ms
-- late (as on a loaded machine; window.fetch is wrapped for that one
-- request): window.__dashboard as a reader sees it when the answer arrives,
-- 400 ms into the wait, and once the page counted one more scrape.
local MID_SCRAPE = [==[
new Promise(function (resolve) {
  var orig = window.fetch, out = { held: 0, during: [] }, t0 = Date.now();
  function snap() { return JSON.parse(JSON.stringify(window.__dashboard)); }
  out.before = snap();
  window.fetch = function (url) {
    var p = orig.apply(this, arguments);
    if (out.held || !/\/upstreams\/[^\/]+\/health$/.test(String(url))) return p;
    out.held++;
    window.fetch = orig;
    return p.then(function (r) {
      out.during.push(snap());
      return new Promise(function (res) {
        setTimeout(function () { out.during.push(snap()); }, 400);
        setTimeout(function () { res(r); }, 800);
      });
    });
  };
  (function poll() {
    var s = window.__dashboard;
    if (out.during.length === 2 && s.scrapes > out.during[1].scrapes) {
      out.after = snap();
    } else if (Date.now() - t0 < 15000) {
      return setTimeout(poll, 20);
    }
    window.fetch = orig;
    resolve(JSON.stringify(out));
  })();
})
]==]

describe("admin /dashboard", function()
  local mock, gw, chromium, result, result_err, tmp
  local before = {}   -- what the admin API said before the check stopped gw

  local function run_check()
    if result or result_err then
      return result, result_err
    end
    if not chromium then
      result_err = "chromium is not installed (Debian package `chromium`;" ..
                   " `make deps` installs it): the dashboard spec needs it"
      return nil, result_err
    end
    local url = fmt("http://127.0.0.1:%d/dashboard", gw.admin_port)
    local extra = ""
    if os.getenv("LUAGATE_DASHBOARD_FROM_FILE") == "1" then
      url = fmt("file://%s?admin=http://127.0.0.1:%d", PAGE, gw.admin_port)
      extra = " --disable-web-security"
    end
    before.config_hash = assert(helpers.admin_status(gw)).config_hash
    local admin = assert(helpers.admin_client(gw))
    before.cb_status = assert(admin:get("/circuit-breakers")).status
    local page_status = assert(admin:get("/dashboard")).status
    admin:close()
    if page_status ~= 200 and os.getenv("LUAGATE_DASHBOARD_FROM_FILE") ~= "1" then
      result_err = "the admin listener answers GET /dashboard with " ..
                   page_status .. " (runtime/src/admin.c must serve " ..
                   "lua/luagate/admin/dashboard.html)"
      return nil, result_err
    end
    local eval_file = helpers.write_file(tmp .. "/checks.js", LIB_CHECKS)
    local mid_file = helpers.write_file(tmp .. "/mid_scrape.js", MID_SCRAPE)
    local out = tmp .. "/result.json"
    local cmd = fmt("%s %s --chromium %s --url %s --out %s --screenshot %s" ..
                    " --eval %s --eval %s --proxy %d --rate 25" ..
                    " --cycle /alpha/a,/alpha/b,/alpha/c,/alpha/status/500" ..
                    " --cycle /beta/x,/beta/x,/beta/x,/beta/x,/beta/status/404" ..
                    " --wait-services alpha,beta --min-scrapes 3 --timeout 40" ..
                    " --stop-pid %d%s >%s/check.log 2>&1",
                    helpers.shell_quote(helpers.python), helpers.shell_quote(CHECK),
                    helpers.shell_quote(chromium), helpers.shell_quote(url),
                    helpers.shell_quote(out), helpers.shell_quote(tmp .. "/dashboard.png"),
                    helpers.shell_quote(eval_file), helpers.shell_quote(mid_file),
                    gw.proxy_port, gw.pid, extra, tmp)
    os.execute(cmd)
    local data = helpers.read_file(out)
    if not data then
      result_err = "dashboard_check.py wrote no result: " ..
                   tostring(helpers.read_file(tmp .. "/check.log"))
      return nil, result_err
    end
    result = helpers.json_decode(data)
    if not result.ready then
      result_err = "the page did not get ready: " .. data:sub(1, 4000)
      return nil, result_err
    end
    return result
  end

  local function state()
    return assert(run_check()).state
  end

  lazy_setup(function()
    chromium = find_chromium()
    tmp = helpers.make_prefix("dashboard")
    mock = helpers.mock_upstream()
    local config = {
      _format_version = "3.0",
      upstreams = { {
        name = "pool-a",
        targets = {
          { target = "127.0.0.1:" .. mock.port },
          { target = "127.0.0.1:1", weight = 0 },
        },
      } },
      services = {
        {
          name = "alpha",
          url = fmt("http://127.0.0.1:%d", mock.port),
          routes = { { name = "alpha-route", paths = { "/alpha" },
                       strip_path = true } },
        },
        {
          name = "beta", host = "pool-a", port = 80, protocol = "http",
          routes = { { name = "beta-route", paths = { "/beta" },
                       strip_path = true } },
        },
      },
    }
    local err
    gw, err = helpers.start_luagate({ config = config, workers = 2 })
    assert(gw, err)
  end)

  lazy_teardown(function()
    helpers.stop_luagate(gw)
    if mock then mock.stop() end
  end)

  it("chromium is installed", function()
    assert(chromium, "chromium is not installed (Debian package `chromium`;" ..
                     " `make deps` installs it): the dashboard spec needs it")
  end)

  it("GET /dashboard is one self-contained HTML page", function()
    local admin = assert(helpers.admin_client(gw))
    local res = assert(admin:get("/dashboard"))
    admin:close()
    assert.equal(200, res.status, "GET /dashboard on the admin listener")
    assert.matches("text/html", res.headers["content-type"], 1, true)
    assert.equal(helpers.read_file(PAGE), res.body)
    -- no external asset: no URL, no src/href attributes, no @import
    assert.is_nil(res.body:find("https?://"))
    assert.is_nil(res.body:find("//[%w.-]+%.%a%a+/"))
    assert.is_nil(res.body:find("<script[^>]+src", 1))
    assert.is_nil(res.body:find("<link", 1, true))
    assert.is_nil(res.body:find("@import", 1, true))
    assert.is_nil(res.body:find("url%("))
  end)

  describe("in headless chromium, with traffic on two services", function()
    it("the page runs without errors and scrapes", function()
      local r = assert(run_check())
      assert.same({}, r.errors)
      local s = r.state
      assert.is_true(s.connected)
      assert.truthy(s.scrapes >= 3)
      assert.equal(0, s.failures)
      assert.equal(0, s.parseErrors)
      assert.is_number(s.lastScrape)
      assert.equal(2, s.workers)
      assert.is_string(s.configHash)
      assert.equal(before.config_hash, s.configHash)
    end)

    it("requests per second, overall and per service", function()
      local s = state()
      -- 25 requests/s on each service's connection
      for _, name in ipairs({ "alpha", "beta" }) do
        local svc = s.services[name]
        assert.truthy(svc.rps > 5 and svc.rps < 60, name .. " rps " .. svc.rps)
      end
      assert.truthy(s.totalRps >= s.services.alpha.rps + s.services.beta.rps - 1e-6)
      assert.truthy(s.totalRps < 120)
    end)

    it("error rate: alpha's 500s (1 in 4), beta's 404s (1 in 5)", function()
      local s = state()
      local a, b = s.services.alpha, s.services.beta
      assert.near(0.25, a.errorRate5xx, 0.08)
      assert.near(0.25, a.errorRate, 0.08)
      assert.equal(0, a.errorRate4xx)
      assert.near(0.20, b.errorRate4xx, 0.08)
      assert.equal(0, b.errorRate5xx)
      assert.truthy(s.errorRate > 0.1 and s.errorRate < 0.35)
    end)

    it("p50 <= p95 <= p99 per service, from the histogram", function()
      local s = state()
      for _, name in ipairs({ "alpha", "beta" }) do
        local svc = s.services[name]
        assert.is_number(svc.p50)
        assert.truthy(svc.p50 > 0, name)
        assert.truthy(svc.p50 <= svc.p95 and svc.p95 <= svc.p99, name)
        -- the mock answers at once: well under a second
        assert.truthy(svc.p99 < 1000, name .. " p99 " .. svc.p99)
      end
    end)

    it("upstream targets with their state", function()
      local s = state()
      local by = {}
      for _, t in ipairs(s.targets) do
        assert.equal("pool-a", t.upstream)
        by[t.target] = t
      end
      local up, off = by["127.0.0.1:" .. mock.port], by["127.0.0.1:1"]
      assert.equal("healthy", up.state)
      assert.equal("healthy", up.health)
      assert.equal(100, up.weight)
      -- weight 0: unhealthy in /metrics, DISABLED in /upstreams/pool-a/health
      assert.equal("unhealthy", off.state)
      assert.equal("disabled", off.health)
      assert.equal(0, off.weight)
    end)

    it("a reader never sees a half-done scrape (a slow /upstreams/{name}/health)",
       function()
      local r = assert(run_check())
      local m = helpers.json_decode(assert(r.eval and r.eval[2]))
      assert.equal(1, m.held, "the page asked no /upstreams/{name}/health")
      assert.equal(2, #m.during)
      assert.is_table(m.after, "the held scrape never completed")
      for i, s in ipairs({ m.during[1], m.during[2], m.after }) do
        assert.equal(2, #s.targets, "read " .. i)
        for _, t in ipairs(s.targets) do
          local what = "read " .. i .. ", target " .. t.target
          assert.is_string(t.state, what)
          assert.is_string(t.health, what)
          assert.is_number(t.weight, what)
        end
      end
      -- the held scrape is counted when complete, not while it waits
      assert.equal(m.during[1].scrapes, m.during[2].scrapes)
      assert.equal(m.during[1].lastScrape, m.during[2].lastScrape)
      assert.equal(m.during[2].scrapes + 1, m.after.scrapes)
    end)

    it("circuit breakers: the endpoint's list or 'not available'", function()
      local s = state()
      if before.cb_status == 404 then
        assert.equal("not available", s.circuitBreakers)
      else
        assert.is_table(s.circuitBreakers)
      end
    end)

    it("renders (screenshot over 10 KB)", function()
      local r = assert(run_check())
      local png = assert(helpers.read_file(r.screenshot))
      assert.equal("\137PNG", png:sub(1, 4))
      assert.truthy(#png > 10 * 1024, "screenshot of " .. #png .. " bytes")
    end)

    it("parses the text format, computes quantiles and rates", function()
      local r = assert(run_check())
      local c = helpers.json_decode(assert(r.eval and r.eval[1]))
      assert.equal(6, c.parsed)
      assert.same({ 9 }, c.parseErrors)
      assert.equal('we"ird\\name\nx', c.weird)
      assert.equal("a,b}c", c.comma)
      assert.equal(3, c.commaValue)
      assert.equal("spaced/2", c.spaced)
      assert.equal("+Inf", c.inf)
      assert.is_true(c.nan)
      assert.is_true(c.minusInf)
      assert.equal("counter", c.type)
      -- histogram_quantile
      assert.near(2, c.q50, 1e-9)
      assert.near(3.5, c.q75, 1e-9)
      assert.near(5, c.q100, 1e-9)
      assert.near(2, c.qInf, 1e-9)       -- rank in +Inf: the highest bound
      assert.near(5, c.qFirst, 1e-9)     -- first bucket starts at 0
      assert.equal("NaN", c.qEmpty)
      -- rates over the gateway's clock (uptime), not the browser's
      assert.near(2, c.dt, 1e-9)
      assert.equal(30, c.s1.requests)
      assert.near(15, c.s1.rps, 1e-9)
      assert.near(10 / 30, c.s1.errorRate5xx, 1e-9)
      assert.near(5 / 30, c.s1.errorRate4xx, 1e-9)
      assert.near(0.5, c.s1.errorRate, 1e-9)
      -- 30 new observations: 10 under 1 ms, 20 in 1..10 ms
      assert.near(1 + 9 * (15 - 10) / 20, c.s1.p50, 1e-9)
      assert.near(1 + 9 * (29.7 - 10) / 20, c.s1.p99, 1e-9)
      assert.equal(4, c.newSvc.requests)  -- a new service counts from 0
      assert.is_false(c.goneListed)
      assert.near(17, c.totalRps, 1e-9)
      -- counter reset: the current values are the increase
      assert.is_true(c.reset.reset)
      assert.equal(8, c.reset.requests)
      assert.near(0.25, c.reset.errorRate5xx, 1e-9)
      assert.truthy(c.reset.p99 > 0 and c.reset.p99 <= 1)
      assert.same({ restarted = true, dt = 3, requests = 9 }, c.restart)
      assert.near(4, c.noStatusDt, 1e-9)
      assert.equal("half_open", c.breakers[1].state)
      assert.equal(3, c.breakers[1].failures)
      assert.equal("open", c.breakersObj[1].state)
    end)

    -- last: the check stopped the gateway
    it("a failed scrape shows 'disconnected' and keeps the last values",
       function()
      local r = assert(run_check())
      local d = r.disconnected
      assert.is_table(d, "the page never reported connected = false")
      assert.is_false(d.connected)
      assert.truthy(d.failures >= 1)
      assert.is_string(d.lastError)
      assert.truthy(d.services.alpha.total >= r.state.services.alpha.total)
      assert.truthy(d.services.alpha.rps > 0)
      assert.truthy(d.services.alpha.p99 > 0)
      assert.truthy(#d.targets >= 2)
    end)
  end)
end)
