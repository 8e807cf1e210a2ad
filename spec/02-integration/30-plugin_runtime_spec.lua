-- The plugin runtime's Kong contracts, through the real binary: discovery,
-- PRIORITY order, scope precedence, the conf table, early exits, errors,
-- waiting in handlers, timers, buffered and streamed response bodies, hot
-- reload and load-time refusals. Test plugins: spec/fixtures/plugins/rt-*.
local helpers = require "spec.helpers"

local fmt = string.format
local PLUGINS_DIR = helpers.root .. "/spec/fixtures/plugins"

-- fixed ids, so that conf.route_id / conf.service_id can be compared
local S1_ID = "5a1e0000-0000-4000-8000-000000000001"
local S2_ID = "5a1e0000-0000-4000-8000-000000000002"
local R_CONF_ID = "0a7e0000-0000-4000-8000-000000000001"

local trace_seq = 0
local function trace_id()
  trace_seq = trace_seq + 1
  return fmt("t%d-%d", os.time(), trace_seq)
end


-- The main config: services s1 and s2 on the mock upstream, one route per
-- behaviour under test.
local function main_config(mock_port)
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
        name = "s1", id = S1_ID, url = url,
        routes = {
          route("order", "/order", {
            { name = "rt-trace-a" }, { name = "rt-trace-b" },
            { name = "rt-trace-c" }, { name = "rt-report" },
          }),
          route("exit", "/exit", {
            { name = "rt-trace-a" }, { name = "rt-exit" },
            { name = "rt-trace-b" }, { name = "rt-report" },
          }),
          route("ctx-exit", "/ctx-exit", {
            { name = "rt-exit" }, { name = "rt-ctx" },
          }),
          route("ctx-auth", "/ctx-auth", { { name = "rt-ctx" } }),
          route("exit-pcall", "/exit-pcall", {
            { name = "rt-trace-a" },
            { name = "rt-exit", config = { mode = "pcall" } },
            { name = "rt-trace-b" }, { name = "rt-report" },
          }),
          route("exit-coroutine", "/exit-coroutine", {
            { name = "rt-trace-a" },
            { name = "rt-exit", config = { mode = "coroutine" } },
            { name = "rt-trace-b" }, { name = "rt-report" },
          }),
          route("exit-gsub", "/exit-gsub", {
            { name = "rt-trace-a" },
            { name = "rt-exit", config = { mode = "gsub" } },
            { name = "rt-trace-b" }, { name = "rt-report" },
          }),
          route("exit-sleep", "/exit-sleep", {
            { name = "rt-trace-a" },
            { name = "rt-exit", config = { mode = "sleep" } },
            { name = "rt-trace-b" }, { name = "rt-report" },
          }),
          route("exit-cosocket", "/exit-cosocket", {
            { name = "rt-trace-a" },
            { name = "rt-exit", config = { mode = "cosocket",
                                           port = mock_port } },
            { name = "rt-trace-b" }, { name = "rt-report" },
          }),
          route("exit-header-filter", "/exit-header-filter", {
            { name = "rt-trace-a" },
            { name = "rt-exit", config = { mode = "header_filter" } },
            { name = "rt-trace-b" }, { name = "rt-report" },
          }),
          route("scope-route", "/scope-route", {
            { name = "rt-trace-b", config = { tag = "route" } },
          }),
          route("scope-service", "/scope-service"),
          route("conf", "/conf", {
            { name = "rt-conf", config = { label = "on-route" } },
          }, { id = R_CONF_ID }),
          route("error", "/error", { { name = "rt-error" } }),
          route("sleep", "/sleep", { { name = "rt-sleep" } }),
          route("timer", "/timer", { { name = "rt-timer" } }),
          route("buffer", "/buffer", { { name = "rt-buffer" } }),
          route("stream-arg", "/stream-arg", {
            { name = "rt-body", config = { mode = "arg" } },
          }),
          route("stream-raw", "/stream-raw", {
            { name = "rt-body", config = { mode = "raw" } },
          }),
          route("count-a", "/count-a", {
            { name = "rt-count", config = { key = "A" } },
          }),
          route("count-b", "/count-b"),
          route("global-write", "/global-write", { { name = "rt-global" } }),
          route("dump", "/dump", { { name = "rt-dump" } }),
        },
        plugins = {
          { name = "rt-trace-b", config = { tag = "service" } },
          { name = "rt-conf", config = { label = "on-service" } },
        },
      },
      {
        name = "s2", id = S2_ID, url = url,
        routes = {
          route("scope-global", "/scope-global"),
        },
      },
    },
    consumers = {
      { username = "alice" }, { username = "bob" }, { username = "carol" },
      { username = "dave" },
    },
    plugins = {
      -- global instances
      { name = "rt-auth" },
      { name = "rt-trace-b", config = { tag = "global" } },
      { name = "rt-report" },
      -- consumer-scoped instances (chosen lazily, after rt-auth)
      { name = "rt-trace-b", consumer = "alice",
        config = { tag = "consumer" } },
      { name = "rt-trace-b", consumer = "bob", route = "scope-route",
        config = { tag = "route+consumer" } },
      { name = "rt-trace-b", consumer = "carol", service = "s1",
        config = { tag = "service+consumer" } },
      { name = "rt-trace-b", consumer = "dave", route = "scope-route",
        service = "s1", config = { tag = "route+service+consumer" } },
      -- rt-trace-a runs before rt-auth: its consumer-scoped config never
      -- applies
      { name = "rt-trace-a", consumer = "alice",
        config = { tag = "consumer" } },
    },
  }
end


local function dump(gw, key)
  local res = helpers.request_once(gw.proxy_port, {
    path = "/dump?key=" .. key,
  })
  local body = assert.res_status(200, res)
  local v = helpers.json_decode(body).value
  if type(v) == "userdata" then -- JSON null
    return nil
  end
  return v
end


local function log_trace(gw, id)
  return helpers.wait_until(function()
    return dump(gw, "log:" .. id)
  end, 5)
end


describe("plugin runtime", function()
  local mock, gw, client

  lazy_setup(function()
    mock = helpers.mock_upstream()
    gw = assert(helpers.start_luagate({
      config = main_config(mock.port),
      args = { "--plugins-dir", PLUGINS_DIR },
      workers = 1,
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

  describe("discovery", function()
    it("loads a folder plugin, single-file plugins (SCHEMA and schema), " ..
       "a plugin's own module and typedefs in a schema", function()
      local res = client:get("/order")
      assert.res_status(200, res)
      -- rt-trace-a: folder + kong.plugins.rt-trace-a.util + typedefs;
      -- rt-trace-b: single file with SCHEMA; rt-trace-c: with schema
      local access = res.headers["x-trace-access"]
      assert.truthy(access:find("a=a", 1, true))
      assert.truthy(access:find("b=", 1, true))
      assert.truthy(access:find("c=c", 1, true))
    end)

    it("refuses an unknown plugin at `luagate check`, listing the known ones",
       function()
      local dir = helpers.make_prefix("rt-check")
      local path = helpers.make_config_file({
        _format_version = "3.0",
        services = { { name = "s", url = "http://127.0.0.1:9",
                       routes = { { name = "r", paths = { "/" } } } } },
        plugins = { { name = "no-such-plugin" } },
      }, dir)
      local rc, out, err = helpers.luagate_exec({
        "check", "-c", path, "--plugins-dir", PLUGINS_DIR })
      assert.equal(1, rc, out)
      assert.matches("plugin 'no-such-plugin' not enabled", err, 1, true)
      assert.matches("known plugins: ", err, 1, true)
      assert.matches("rt-trace-a", err, 1, true)
      assert.matches("rt-trace-b", err, 1, true)
    end)

    it("refuses PRIORITY = math.huge at `luagate check` with a clear message",
       function()
      local dir = helpers.make_prefix("rt-check")
      local path = helpers.make_config_file({
        _format_version = "3.0",
        plugins = { { name = "rt-bad-priority" } },
      }, dir)
      local rc, out, err = helpers.luagate_exec({
        "check", "-c", path, "--plugins-dir", PLUGINS_DIR })
      assert.equal(1, rc, out)
      assert.matches("plugin 'rt-bad-priority': PRIORITY must be an integer",
                     err, 1, true)
    end)
  end)

  describe("order", function()
    it("runs handlers by PRIORITY, ties by name descending, the same order " ..
       "in access, header_filter and log", function()
      local id = trace_id()
      local res = client:get("/order", { headers = { ["X-Trace-Id"] = id } })
      assert.res_status(200, res)
      -- a 2000 > c 1000 = b 1000 (c > b by name) > report -1000
      -- (rt-trace-b's route instance, tag "b" by default, beats its
      -- service and global ones)
      local expected = "a=a,c=c,b=b,report"
      assert.equal(expected, res.headers["x-trace-access"])
      assert.equal(expected, res.headers["x-trace-header-filter"])
      assert.equal(expected, log_trace(gw, id))
    end)
  end)

  describe("phases without a route", function()
    it("rewrite runs global plugins only", function()
      local res = client:get("/order")
      assert.res_status(200, res)
      -- rt-trace-a (route instance) has a rewrite handler too
      assert.equal("report", res.headers["x-trace-rewrite"])
    end)

    it("a request no route matches runs the global plugins' " ..
       "header_filter and log", function()
      local id = trace_id()
      local res = client:get("/no-such-route", {
        headers = { ["X-Trace-Id"] = id },
      })
      assert.res_status(404, res)
      -- the global instances of rt-trace-b and rt-report
      assert.equal("b=global,report", res.headers["x-trace-header-filter"])
      assert.equal("b=global,report", log_trace(gw, id))
    end)
  end)

  describe("scope precedence", function()
    local function tag_of(path, consumer)
      local res = client:get(path, { headers = { ["X-Consumer"] = consumer } })
      assert.res_status(200, res)
      local access = res.headers["x-trace-access"]
      local hf = res.headers["x-trace-header-filter"]
      -- the config chosen in access is the one header_filter gets
      assert.equal(access, hf)
      return access:match("b=([^,]+)"), access:match("a=([^,]+)")
    end

    it("global < service < route", function()
      assert.equal("global", tag_of("/scope-global"))
      assert.equal("service", tag_of("/scope-service"))
      assert.equal("route", tag_of("/scope-route"))
    end)

    it("consumer beats route, service and global", function()
      assert.equal("consumer", tag_of("/scope-global", "alice"))
      assert.equal("consumer", tag_of("/scope-service", "alice"))
      assert.equal("consumer", tag_of("/scope-route", "alice"))
    end)

    it("route+consumer and service+consumer beat consumer, route, service",
       function()
      assert.equal("route+consumer", tag_of("/scope-route", "bob"))
      -- bob's instance is for scope-route only
      assert.equal("service", tag_of("/scope-service", "bob"))
      assert.equal("service+consumer", tag_of("/scope-route", "carol"))
      assert.equal("service+consumer", tag_of("/scope-service", "carol"))
      -- carol's instance is for s1 only
      assert.equal("global", tag_of("/scope-global", "carol"))
    end)

    it("route+service+consumer beats everything", function()
      assert.equal("route+service+consumer", tag_of("/scope-route", "dave"))
      assert.equal("service", tag_of("/scope-service", "dave"))
    end)

    it("a consumer-scoped config applies only to plugins that run after " ..
       "the authenticating one", function()
      -- rt-trace-a (PRIORITY 2000) runs before rt-auth (1500)
      local b, a = tag_of("/scope-global", "alice")
      assert.equal("consumer", b)
      assert.is_nil(a) -- rt-trace-a has only a consumer-scoped instance
    end)
  end)

  describe("conf", function()
    it("carries route_id and service_id and stays the same table across " ..
       "requests", function()
      local res1 = client:get("/conf")
      assert.res_status(200, res1)
      assert.equal("on-route", res1.headers["x-conf-label"])
      assert.equal(R_CONF_ID, res1.headers["x-conf-route-id"])
      assert.equal("none", res1.headers["x-conf-service-id"])
      assert.equal("true", res1.headers["x-conf-same"])
      local res2 = client:get("/conf")
      assert.res_status(200, res2)
      assert.equal(res1.headers["x-conf-id"], res2.headers["x-conf-id"])
      assert.equal(tonumber(res1.headers["x-conf-count"]) + 1,
                   tonumber(res2.headers["x-conf-count"]))
    end)

    it("of a service-scoped instance carries service_id", function()
      local res = client:get("/scope-service")
      assert.res_status(200, res)
      assert.equal("on-service", res.headers["x-conf-label"])
      assert.equal(S1_ID, res.headers["x-conf-service-id"])
      assert.equal("none", res.headers["x-conf-route-id"])
    end)
  end)

  describe("kong.response.exit in access", function()
    it("skips later access handlers; header_filter and log still run",
       function()
      local id = trace_id()
      local res = client:get("/exit", { headers = { ["X-Trace-Id"] = id } })
      local body = assert.res_status(403, res)
      assert.same({ message = "stopped by rt-exit" }, helpers.json_decode(body))
      assert.equal("a=a,exit", res.headers["x-trace-access"])
      assert.equal("a=a,exit,b=b,report", res.headers["x-trace-header-filter"])
      assert.equal("a=a,exit,b=b,report", log_trace(gw, id))
    end)

    it("ngx.ctx made after kong.response.exit has KONG_EXITED", function()
      local res = client:get("/ctx-exit")
      assert.res_status(403, res)
      assert.equal("true", res.headers["x-ctx-exited"])
      local ok = client:get("/ctx-auth")
      assert.res_status(200, ok)
      assert.equal("nil", ok.headers["x-ctx-exited"])
    end)

    it("ngx.ctx made after kong.client.authenticate has the consumer",
       function()
      local res = client:get("/ctx-auth",
                             { headers = { ["X-Consumer"] = "bob" } })
      assert.res_status(200, res)
      assert.equal("bob", res.headers["x-ctx-consumer"])
      -- rt-auth authenticates without a credential
      assert.equal("none", res.headers["x-ctx-credential"])
      res = client:get("/ctx-auth")
      assert.res_status(200, res)
      assert.equal("none", res.headers["x-ctx-consumer"])
    end)

    -- the same outcome whatever surrounds the call or came before it
    local function exits(path, access_trace)
      local id = trace_id()
      local res = client:get(path, { headers = { ["X-Trace-Id"] = id } })
      local body = assert.res_status(403, res)
      assert.same({ message = "stopped by rt-exit" }, helpers.json_decode(body))
      assert.equal(access_trace, res.headers["x-trace-access"])
      assert.equal("a=a,exit,b=b,report", res.headers["x-trace-header-filter"])
      assert.equal("a=a,exit,b=b,report", log_trace(gw, id))
    end

    it("stops the handler even inside its own pcall, as Kong's does",
       function()
      exits("/exit-pcall", "a=a,exit")
    end)

    it("stops the handler from a coroutine the handler made", function()
      exits("/exit-coroutine", "a=a,exit")
    end)

    it("stops the handler from a string.gsub callback", function()
      exits("/exit-gsub", "a=a,exit")
    end)

    it("works after the handler waited (ngx.sleep)", function()
      exits("/exit-sleep", "a=a,exit,slept")
    end)

    it("works with a cosocket open, which the request's end closes",
       function()
      exits("/exit-cosocket", "a=a,exit,connected")
      -- the connection and the worker serve the next requests
      exits("/exit-cosocket", "a=a,exit,connected")
      exits("/exit", "a=a,exit")
      assert.res_status(200, client:get("/order"))
    end)

    it("many exits in a row on one connection, mixed with proxied " ..
       "requests", function()
      for i = 1, 50 do
        local res = client:get(i % 3 == 0 and "/order" or "/exit")
        assert.res_status(i % 3 == 0 and 200 or 403, res)
      end
    end)
  end)

  describe("kong.response.exit in header_filter", function()
    it("stops that handler; the later header_filter handlers and log run",
       function()
      local id = trace_id()
      local res = client:get("/exit-header-filter", {
        headers = { ["X-Trace-Id"] = id },
      })
      assert.res_status(451, res)
      assert.equal("1", res.headers["x-exit-header-filter"])
      assert.equal("a=a,exit,b=b,report", res.headers["x-trace-access"])
      assert.equal("a=a,exit,b=b,report", res.headers["x-trace-header-filter"])
      assert.equal("a=a,exit,b=b,report", log_trace(gw, id))
    end)
  end)

  describe("errors", function()
    it("an error in access gives 500 with Kong's body and the worker " ..
       "serves the next request", function()
      local before = client:get("/error")
      assert.res_status(200, before)
      local pid = before.headers["x-worker-pid"]
      assert.truthy(pid)

      local res = client:get("/error", { headers = { ["X-Fail"] = "access" } })
      local body = assert.res_status(500, res)
      local json = helpers.json_decode(body)
      assert.equal("An unexpected error occurred", json.message)
      assert.is_string(json.request_id)
      assert.truthy(#json.request_id > 0)

      local c2 = helpers.proxy_client(gw)
      local after = c2:get("/error")
      c2:close()
      assert.res_status(200, after)
      assert.equal(pid, after.headers["x-worker-pid"])

      helpers.wait_until(function()
        local log = helpers.read_file(gw.error_log) or ""
        return log:find("rt-error failed on purpose in access", 1, true)
      end, 5)
    end)

    it("an error in log does not touch the response", function()
      local res = client:get("/error", { headers = { ["X-Fail"] = "log" } })
      assert.res_status(200, res)
      helpers.wait_until(function()
        local log = helpers.read_file(gw.error_log) or ""
        return log:find("rt-error failed on purpose in log", 1, true)
      end, 5)
      local again = helpers.proxy_client(gw)
      assert.res_status(200, again:get("/error"))
      again:close()
    end)
  end)

  describe("waiting", function()
    it("ngx.sleep in access does not block other requests", function()
      local req = "GET /sleep HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
      local c1 = assert(helpers.raw_connect(gw.proxy_port))
      local c2 = assert(helpers.raw_connect(gw.proxy_port))
      local t0 = helpers.gettime()
      assert(c1:send(req))
      assert(c2:send(req))
      local r1 = assert(c1:read_response())
      local r2 = assert(c2:read_response())
      local elapsed = helpers.gettime() - t0
      c1:close()
      c2:close()
      assert.equal(200, r1.status)
      assert.equal(200, r2.status)
      for _, r in ipairs({ r1, r2 }) do
        local slept = r.headers["x-slept"]
        assert.truthy(tonumber(slept) >= 0.45, slept)
      end
      -- one worker: sequential sleeps would take >= 1 s
      assert.truthy(elapsed < 0.9, "two 0.5 s sleeps took " .. elapsed .. " s")
    end)

    it("ngx.timer.at runs its callback later, writing to ngx.shared.kong",
       function()
      local id = trace_id()
      local res = client:get("/timer", { headers = { ["X-Trace-Id"] = id } })
      assert.res_status(200, res)
      assert.equal("fired", helpers.wait_until(function()
        return dump(gw, "timer:" .. id)
      end, 5))
    end)
  end)

  describe("response bodies", function()
    it("a response handler gets the buffered upstream body and may " ..
       "answer with another", function()
      local res = client:get("/buffer/request")
      local body = assert.res_status(200, res)
      assert.equal("yes", res.headers["x-buffered"])
      local json = helpers.json_decode(body)
      assert.equal(200, json.upstream_status)
      local echo = helpers.json_decode(json.upstream_body)
      assert.equal("/request", echo.path)
      assert.equal(#json.upstream_body, json.upstream_body_size)
    end)

    it("a response handler sees the upstream status", function()
      local res = client:get("/buffer/status/418")
      local body = assert.res_status(418, res)
      assert.equal(418, helpers.json_decode(body).upstream_status)
    end)

    it("body_filter changes a chunked upstream body through ngx.arg",
       function()
      local direct = assert(helpers.request_once(mock.port,
                                                 { path = "/stream/3" }))
      local res = client:get("/stream-arg/stream/3")
      local body = assert.res_status(200, res)
      local calls = tonumber(body:match("%[calls=(%d+)%]$"))
      assert.truthy(calls and calls >= 2, body)
      assert.equal(direct.body:upper(), (body:gsub("%[calls=%d+%]$", "")))
    end)

    it("body_filter replaces a chunked upstream body with " ..
       "kong.response.set_raw_body", function()
      local direct = assert(helpers.request_once(mock.port,
                                                 { path = "/stream/4" }))
      local res = client:get("/stream-raw/stream/4")
      local body = assert.res_status(200, res)
      assert.equal("<<" .. direct.body .. ">>", body)
    end)
  end)

  describe("routes without the plugin", function()
    it("a route-scoped plugin of route A is not called for route B",
       function()
      assert.res_status(200, client:get("/count-a"))
      assert.res_status(200, client:get("/count-a"))
      for _ = 1, 3 do
        assert.res_status(200, client:get("/count-b"))
      end
      assert.equal(2, dump(gw, "count:A"))
    end)
  end)

  describe("globals", function()
    it("a plugin writing a global still works, with a warning in the " ..
       "error log", function()
      local b1 = assert.res_status(200, client:get("/global-write"))
      local b2 = assert.res_status(200, client:get("/global-write"))
      assert.equal(helpers.json_decode(b1).counter + 1,
                   helpers.json_decode(b2).counter)
      helpers.wait_until(function()
        local log = helpers.read_file(gw.error_log) or ""
        return log:find("global variable 'rt_global_counter' written at", 1,
                        true)
      end, 5)
    end)
  end)
end)


describe("plugin runtime reloads", function()
  local mock, gw, dir

  local HOT_V1 = [[
local H = { PRIORITY = 10, VERSION = "1.0.0" }
H.SCHEMA = { name = "rt-hot", fields = { { config = { type = "record",
  fields = { { note = { type = "string", default = "n" } } } } } } }
function H:header_filter(conf)
  kong.response.set_header("X-Hot", "v1")
  kong.response.set_header("X-Hot-Conf", tostring(conf))
end
return H
]]
  -- a different size on purpose: the loader notices changes by mtime
  -- (whole seconds) and size, and this edit comes within the second
  local HOT_V2 = HOT_V1:gsub('"v1"', '"version-two"')

  local function config(note)
    local c = helpers.simple_config(mock.port)
    c.plugins = { { name = "rt-hot", config = { note = note } },
                  { name = "rt-conf" } }
    return c
  end

  lazy_setup(function()
    mock = helpers.mock_upstream()
    dir = helpers.make_prefix("rt-hot-plugins")
    helpers.write_file(dir .. "/rt-hot.lua", HOT_V1)
    gw = assert(helpers.start_luagate({
      config = config("one"),
      args = { "--plugins-dir", PLUGINS_DIR, "--plugins-dir", dir },
      workers = 1,
    }))
  end)

  lazy_teardown(function()
    if gw then helpers.stop_luagate(gw) end
    if mock then mock.stop() end
  end)

  local function get()
    local res = helpers.request_once(gw.proxy_port, { path = "/" })
    assert.res_status(200, res)
    return res
  end

  it("conf is a new table after a config reload", function()
    local a = get()
    local b = get()
    assert.equal(a.headers["x-conf-id"], b.headers["x-conf-id"])
    assert.equal(a.headers["x-hot-conf"], b.headers["x-hot-conf"])
    assert.truthy(helpers.reload_luagate(gw, config("two")))
    local c = helpers.wait_until(function()
      local res = get()
      return res.headers["x-hot-conf"] ~= a.headers["x-hot-conf"] and res
    end, 5)
    assert.not_equal(a.headers["x-conf-id"], c.headers["x-conf-id"])
    assert.equal("1", c.headers["x-conf-count"])
  end)

  it("SIGHUP reloads a plugin file that changed, without a restart",
       function()
    local pid = gw.pid
    assert.equal("v1", get().headers["x-hot"])
    helpers.write_file(dir .. "/rt-hot.lua", HOT_V2)
    -- same config: only the plugin file changed
    helpers.reload_luagate(gw, nil, { wait = false })
    helpers.wait_until(function()
      return get().headers["x-hot"] == "version-two"
    end, 10)
    assert.equal(pid, gw.pid)
    assert.is_nil(helpers.exit_code(gw))
  end)
end)
