-- luacheck: no max line length
-- Real-world Kong plugin styles run unmodified (spec/04-compat/plugins):
-- the loader's contracts, the ngx/resty compatibility layer and the kong.*
-- modules plugins import, through the real binary.
local helpers = require "spec.helpers"

local fmt = string.format
local PLUGINS_DIR = helpers.root .. "/spec/04-compat/plugins"

local function json(res)
  return helpers.json_decode(res.body)
end


local function config(mock_port)
  local url = fmt("http://127.0.0.1:%d", mock_port)
  local function route(name, path, plugins, extra)
    local r = { name = name, paths = { path }, plugins = plugins }
    for k, v in pairs(extra or {}) do r[k] = v end
    return r
  end
  return {
    _format_version = "3.0",
    services = {
      {
        name = "mock", url = url,
        routes = {
          route("template", "/template", { { name = "compat-template" } }),
          route("routing-a", "/routing"),
          route("body", "/body", { { name = "compat-body" } }),
          route("body-status", "/body-status",
                { { name = "compat-body", config = { status = 203 } } }),
          route("print", "/print", { { name = "compat-print" } }),
          route("redirect", "/redirect",
                { { name = "compat-print", config = { mode = "redirect" } } }),
          route("kexit", "/kexit", {
            { name = "compat-print", config = { mode = "exit" } },
            { name = "compat-router" }, -- lower priority: never runs
          }),
          route("http", "/http", { { name = "compat-http",
                                     config = { url = url } } }),
          route("cache", "/cache", { { name = "compat-cache" } }),
          route("items", "~/items/(?<id>\\d+)$", { { name = "compat-router" } }),
          route("queue", "/queue", { { name = "compat-queue" } }),
          route("lock", "/lock", { { name = "compat-lock" } }),
          route("ngx", "/ngx", { { name = "compat-ngx" } }),
        },
      },
      {
        name = "slow", url = url .. "/delay/1",
        routes = {
          route("slow", "/slow", { { name = "compat-router",
                                     config = { read_timeout = 300 } } }),
          route("fast", "/fast", { { name = "compat-router" } }),
        },
      },
      {
        name = "svc-b", url = url .. "/anything/b",
        routes = {
          route("routing-b", "/routing", nil,
                { headers = { ["x-compat-route"] = { "b" } } }),
        },
      },
    },
    plugins = {
      -- global: its rewrite sets the header routing-b matches
      { name = "compat-template", config = { route_by_header = true,
                                             request_header = "X-Global-Hello",
                                             response_header = "X-Global-Bye" } },
    },
  }
end


describe("compat: Kong plugins run unmodified", function()
  local mock, gw, client

  lazy_setup(function()
    mock = helpers.mock_upstream()
    gw = assert(helpers.start_luagate({
      config = config(mock.port),
      args = { "--plugins-dir", PLUGINS_DIR },
      workers = 2,
      env = { COMPAT_TEMPLATE_PRIORITY = "1001" },
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

  describe("Kong template plugin", function()
    it("loads by its directory name, sees `...`, writes conf and a global",
       function()
      local res = client:get("/template")
      assert.res_status(200, res)
      assert.equal("this is on the response", res.headers["bye-world"])
      assert.equal("compat-template", res.headers["x-plugin-name"])
      assert.equal("number", res.headers["x-global-type"])
      local echo = json(res)
      assert.equal("this is on a request", echo.headers["hello-world"])
      -- one config per plugin: the route's wins over the global one in
      -- access; the global one ran in rewrite (global instances only)
      assert.is_nil(echo.headers["x-global-hello"])
      assert.equal("b", echo.headers["x-compat-route"])
      -- conf is writable and kept between requests
      local res2 = client:get("/template")
      assert.res_status(200, res2)
      assert.is_true(tonumber(res2.headers["x-calls"]) >=
                     tonumber(res.headers["x-calls"]))
    end)

    it("kong.service.request.set_header is seen by kong.request.get_header(s)",
       function()
      local res = client:get("/template")
      assert.res_status(200, res)
      assert.equal("this is on a request", res.headers["x-seen"])
      assert.equal("this is on a request", res.headers["x-seen-all"])
    end)

    it("a global plugin's header set in rewrite is seen by the router",
       function()
      local res = client:get("/routing")
      local echo = json(res)
      assert.res_status(200, res)
      assert.equal("/anything/b", echo.path)
    end)

    it("logs one warning for the global it writes", function()
      helpers.wait_until(function()
        local log = helpers.read_file(gw.error_log) or ""
        return log:find("global variable 'compat_template_loaded_at' written",
                        1, true)
      end, 5)
    end)
  end)

  describe("ngx.arg in body_filter", function()
    it("holds chunks back and replaces the body at the end", function()
      local res = client:get("/body")
      local body = assert.res_status(200, res)
      assert.matches('"X-FORWARDED-PATH": "/BODY"', body, 1, true)
      assert.matches("|END$", body)
      assert.equal("200", res.headers["x-status-seen"])
    end)

    it("ngx.status is writable in header_filter", function()
      local res = client:get("/body-status")
      assert.res_status(203, res)
    end)
  end)

  describe("ngx.print/say + ngx.exit from access", function()
    it("answers with the output, status and headers; the handler stops",
       function()
      local res = client:get("/print")
      local body = assert.res_status(201, res)
      assert.equal("hello\nworld!42", body)
      assert.equal("printed", res.headers["x-compat"])
      assert.equal("header_filter ran", res.headers["x-after-exit"])
    end)

    it("ngx.redirect", function()
      local res = client:get("/redirect")
      assert.res_status(307, res)
      assert.equal("/elsewhere?x=1", res.headers["location"])
    end)

    it("kong.response.exit without return: one response, later plugins skipped",
       function()
      local res = client:get("/kexit")
      local body = assert.res_status(418, res)
      assert.equal("teapot", helpers.json_decode(body).message)
      assert.is_nil(res.headers["x-bd"])
    end)
  end)

  describe("resty.http", function()
    it("request_uri and the step-by-step API with keepalive", function()
      local res = client:get("/http")
      local echo = json(res)
      assert.res_status(200, res)
      local h = echo.headers
      assert.equal("200", h["x-http-status"])
      assert.equal("POST", h["x-http-method"])
      assert.equal("payload", h["x-http-body"])
      assert.equal("/anything/one", h["x-http-path"])
      assert.truthy(tonumber(h["x-http-reused"]) >= 1)
      assert.matches("application/json", h["x-http-ctype"], 1, true)
      -- https is tried: nobody listens on port 1
      assert.equal("nil:connection refused", h["x-https"])
    end)
  end)

  describe("kong.cache", function()
    it("passes extra args, caches, honours the callback's TTL", function()
      local key = "k" .. os.time() .. math.random(1000)
      local res = client:get("/cache?key=" .. key .. "&ttl=1")
      local v = json(res)
      assert.res_status(200, res)
      assert.equal(key .. "-loaded", v.value)
      assert.equal(1, v.calls)
      assert.equal(3, v.hit_level)
      v = json(client:get("/cache?key=" .. key .. "&ttl=1"))
      assert.equal(1, v.calls)
      assert.is_true(v.hit_level < 3)
      helpers.sleep(1.3)
      v = json(client:get("/cache?key=" .. key .. "&ttl=1"))
      assert.equal(2, v.calls)
      assert.is_true(v.core)
    end)

    it("ttl = 0 never expires", function()
      local key = "z" .. os.time() .. math.random(1000)
      local v = json(client:get("/cache?zero=1&key=" .. key))
      assert.equal(1, v.calls)
      helpers.sleep(1.1)
      v = json(client:get("/cache?zero=1&key=" .. key))
      assert.equal(1, v.calls)
    end)
  end)

  describe("ngx.ctx and ngx.var from Kong's runloop", function()
    it("router_matches.uri_captures, upstream_uri, service, route, " ..
       "balancer_data, KONG_* timings", function()
      local res = client:get("/items/42")
      local echo = json(res)
      assert.res_status(200, res)
      assert.equal("/anything/item-42", echo.path)
      assert.same({ from = "42" }, echo.query)
      local h = echo.headers
      assert.equal("mock", h["x-ctx-service"])
      assert.equal("items", h["x-ctx-route"])
      assert.equal("127.0.0.1:" .. mock.port .. ":60000:table", h["x-bd"])
      assert.truthy(tonumber(h["x-processing-start"]) > 1e12)
      assert.truthy(tonumber(res.headers["x-access-time"]) >= 0)
      assert.truthy(tonumber(res.headers["x-access-start"]) > 1e12)
      assert.truthy(tonumber(res.headers["x-header-filter-start"]) >=
                    tonumber(res.headers["x-access-start"]))
      assert.equal("nil,nil,nil,nil", res.headers["x-not-yet"])
      assert.truthy(tonumber(res.headers["x-proxy-latency"]) >= 0)
      assert.truthy(tonumber(res.headers["x-waiting-time"]) >= 0)
      assert.equal("/anything/item-42?from=42", res.headers["x-upstream-uri"])
      assert.equal("200", res.headers["x-upstream-status-var"])
      assert.matches("application/json", res.headers["x-upstream-http"], 1, true)
      assert.matches("application/json", res.headers["x-sent-http"], 1, true)
      assert.equal("127.0.0.1:" .. mock.port, res.headers["x-upstream-host"])
      -- the next request on the connection (whose request state the first
      -- one's log phase left) sees none of the first one's times
      res = client:get("/items/43")
      assert.res_status(200, res)
      assert.equal("nil,nil,nil,nil", res.headers["x-not-yet"])
    end)

    it("balancer_data.read_timeout written by a plugin takes effect",
       function()
      local res = client:get("/slow")
      assert.res_status(504, res)
      res = client:get("/fast")
      assert.res_status(200, res)
    end)

    it("log phase sees tries, latencies, bytes_sent, request_length",
       function()
      local res = client:get("/items/7")
      assert.res_status(200, res)
      local line
      helpers.wait_until(function()
        local c = helpers.proxy_client(gw)
        line = json(c:get("/queue?what=dump"))["compat-router:log"]
        c:close()
        return line and line:find("tries=1", 1, true)
      end, 5)
      assert.matches("tries=1 proxy=%d[%d.]* waiting=%d[%d.]* receive=%d[%d.]* " ..
                     "bytes_sent=%d+ request_length=%d+", line)
    end)
  end)

  describe("kong.tools.queue + kong.worker_events", function()
    it("batches, retries, and delivers a posted event to every worker",
       function()
      for i = 1, 4 do
        local res = client:get("/queue?entry=e" .. i)
        assert.res_status(200, res)
      end
      local dump
      helpers.wait_until(function()
        local c = helpers.proxy_client(gw)
        dump = json(c:get("/queue?what=dump"))
        c:close()
        return dump["compat-queue:batch:3"] ~= nil and
               (dump["compat-queue:seen-count"] or 0) >= 4
      end, 10)
      -- first call failed and was retried with the same batch
      assert.equal("e1,e2", dump["compat-queue:batch:2"])
      assert.equal("e3,e4", dump["compat-queue:batch:3"])
      -- both workers saw both batches
      assert.is_true(dump["compat-queue:seen:0:e1,e2"])
      assert.is_true(dump["compat-queue:seen:1:e1,e2"])
      assert.is_true(dump["compat-queue:seen:0:e3,e4"])
      assert.is_true(dump["compat-queue:seen:1:e3,e4"])
    end)

    it("kong.cluster_events reaches the subscribers of every worker",
       function()
      local res = client:get("/queue?what=broadcast")
      assert.res_status(200, res)
      assert.is_true(json(res).ok)
      helpers.wait_until(function()
        local c = helpers.proxy_client(gw)
        local dump = json(c:get("/queue?what=dump"))
        c:close()
        return dump["compat-queue:cluster:0"] == "hello" and
               dump["compat-queue:cluster:1"] == "hello"
      end, 5)
    end)
  end)

  describe("resty.lock, resty.lrucache, resty digests", function()
    it("computes once under the lock and caches", function()
      local res = client:get("/lock?s=hello")
      local v = json(res)
      assert.res_status(200, res)
      assert.equal("2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824",
                   v.sha256)
      assert.equal(v.sha256, v.sha256_reset)
      assert.equal("aaf4c61ddcc5e8a2dabede0f3b482cd9aea9434d", v.sha1)
      assert.equal("5d41402abc4b2a76b9719d911017c592", v.md5)
      assert.equal(16, v.random_len)
      assert.equal(42, v.atoi)
      assert.equal(2, v.capacity)
      local v2 = json(client:get("/lock?s=hello"))
      assert.is_true(v2.hit)
    end)

    it("a second request waits for the lock", function()
      local c2 = helpers.proxy_client(gw)
      local t0 = helpers.gettime()
      -- two connections, possibly two workers: the lock is in shared memory
      local raw = helpers.raw_connect(gw.proxy_port)
      raw:send("GET /lock?s=wait&hold=0.5 HTTP/1.1\r\nHost: x\r\n\r\n")
      helpers.sleep(0.1)
      local res2 = c2:get("/lock?s=wait")
      local elapsed = helpers.gettime() - t0
      local first = raw:read_response()
      raw:close()
      c2:close()
      assert.equal(200, first.status)
      local v = json(res2)
      assert.res_status(200, res2)
      assert.truthy(elapsed >= 0.4, "waited " .. elapsed)
      assert.truthy(v.waited > 0)
    end)
  end)

  describe("ngx API and library modules", function()
    local v, res
    lazy_setup(function()
      local c = helpers.proxy_client(gw)
      res = c:send({
        method = "POST",
        path = "/ngx?x=1&flag&multi=a&multi=b&mock=" .. mock.port,
        headers = { ["X-Test"] = "t1", ["Content-Type"] = "text/plain" },
        body = "the body",
      })
      c:close()
      v = helpers.json_decode(res.body)
    end)

    it("ngx.req.*", function()
      assert.equal(200, res.status)
      assert.equal("1,boolean,2", v.uri_args)
      assert.equal("POST", v.method)
      assert.equal("t1,t1", v.headers)
      assert.equal("the body", v.body)
      assert.equal("number", v.start_time)
      assert.equal("z=1", v.set_uri_args)
      assert.equal("/", v.upstream_echo.path) -- strip_path
      assert.same({ z = "1" }, v.upstream_echo.query)
      assert.equal("by-ngx", v.upstream_echo.headers["x-set"])
    end)

    it("time helpers, ngx.re.match with a result table, config, vars", function()
      assert.equal("Thu, 01 Jan 1970 00:00:00 GMT", v.http_time)
      assert.equal("Thu, 01-Jan-70 00:00:00 GMT", v.cookie_time)
      assert.equal(100, v.parse_http_time)
      assert.equal("abc:123", v.re_match_res)
      assert.equal("number", type(v.ngx_lua_version))
      assert.equal("access", v.phase)
      assert.matches("^/ngx%?x=1", v.vars)
      assert.matches("|POST /ngx?x=1", v.vars, 1, true)
      assert.matches("^application/json", v.resp_headers)
      assert.equal("200", v.upstream_status)
    end)

    it("Kong's shared dictionaries exist", function()
      assert.equal("kong,kong_db_cache,kong_rate_limiting_counters," ..
                   "kong_core_db_cache,kong_locks,kong_cluster_events," ..
                   "kong_healthchecks", v.shared_dicts)
    end)

    it("cosockets: receive patterns, receiveuntil, keepalive, reuse",
       function()
      local parts = {}
      for p in (v.cosocket .. "|"):gmatch("(.-)|") do parts[#parts + 1] = p end
      assert.equal("HTTP/1.1 200 OK", parts[1])
      assert.equal("{", parts[2])              -- receive(1)
      assert.equal("true", parts[3])           -- receive(n) after receiveuntil
      assert.truthy(tonumber(parts[4]))        -- getreusedtimes
      assert.truthy(tonumber(parts[5]) >= 1)   -- from the pool after setkeepalive
      assert.equal("nil", parts[6])            -- sslhandshake, not connected
      assert.equal("closed", parts[7])
    end)

    it("our resty.* win over Debian's copies", function()
      assert.equal(helpers.root .. "/lua/resty/lrucache.lua", v.searchpath)
      assert.equal(helpers.root .. "/lua/resty/http.lua", v.searchpath_http)
    end)

    it("penlight, jwt_parser, kong.tools.*, constants, meta, sandbox, db",
       function()
      assert.equal("pl,true", v.penlight)
      assert.equal("table", v.jwt_parser)
      assert.equal("true|3|x|32|2|1|5|a=x%20y&b=2|false", v.utils)
      assert.equal("36|true|y", v.tools)
      assert.equal("X-Consumer-ID,X-Anonymous-Consumer,true", v.constants)
      assert.equal("kong,3.10.0,3", v.meta)
      assert.equal("true,42,nil", v.sandbox)
      assert.equal("table,table,consumers:abc:::::", v.kong_db)
      assert.equal("true", v.core_cache)
      assert.equal("function,function", v.events)
    end)
  end)
end)
