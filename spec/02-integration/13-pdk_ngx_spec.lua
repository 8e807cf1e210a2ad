-- The ngx API through the real binary, with the pdk-ngx test plugin:
-- ngx.var, ngx.req, ngx.header, ngx.arg, ngx.ctx, ngx.say/exit/redirect,
-- ngx.sleep, ngx.log.
local helpers = require "spec.helpers"

local fmt = string.format
local PLUGINS_DIR = helpers.root .. "/spec/fixtures/plugins"


local function config(mock_port, routes)
  local list = {}
  for i, rt in ipairs(routes) do
    list[i] = {
      name = "route-" .. i,
      paths = { rt.path },
      strip_path = rt.strip_path,
      plugins = {
        { name = "pdk-ngx", config = { mode = rt.mode, status = rt.status } },
      },
    }
  end
  return {
    _format_version = "3.0",
    services = {
      { name = "mock", url = fmt("http://127.0.0.1:%d", mock_port),
        routes = list },
    },
  }
end


describe("ngx", function()
  local mock, gw, client

  lazy_setup(function()
    mock = helpers.mock_upstream()
    gw = assert(helpers.start_luagate({
      config = config(mock.port, {
        { path = "/vars", mode = "vars" },
        { path = "/say-exit", mode = "say_exit", status = 202 },
        { path = "/exit-ok", mode = "exit_ok" },
        { path = "/exit-status", mode = "exit_status", status = 403 },
        { path = "/redirect", mode = "redirect" },
        { path = "/redirect-301", mode = "redirect", status = 301 },
        { path = "/sleep", mode = "sleep" },
        { path = "/ctx", mode = "ctx" },
        { path = "/req-set", mode = "req_set" },
        { path = "/upstream-uri", mode = "upstream_uri" },
        { path = "/post-args", mode = "post_args" },
        { path = "/log", mode = "log" },
        { path = "/errors", mode = "errors" },
        { path = "/header", mode = "header" },
        { path = "/arg", mode = "arg" },
      }),
      args = { "--plugins-dir", PLUGINS_DIR },
      log_level = "notice",
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

  it("reads ngx.var and ngx.req", function()
    local res = client:get("/vars/p?page=2&x=y", {
      headers = { Host = "Api.Example.com", ["X-Test"] = "t",
                  Cookie = "a=1; session=abc; b=2" },
    })
    local d = assert(helpers.json_decode(assert.res_status(200, res)))
    assert.is_string(d.request_id)
    assert.equal("127.0.0.1", d.remote_addr)
    assert.matches("^%d+$", d.remote_port)
    assert.equal("api.example.com", d.host)
    assert.equal("/vars/p", d.uri)
    assert.equal("/vars/p?page=2&x=y", d.request_uri)
    assert.equal("page=2&x=y", d.args)
    assert.equal("?", d.is_args)
    assert.equal("GET", d.request_method)
    assert.equal("http", d.scheme)
    assert.equal(tostring(gw.proxy_port), d.server_port)
    assert.equal("HTTP/1.1", d.server_protocol)
    assert.equal("t", d.http_x_test)
    assert.equal("abc", d.cookie_session)
    assert.equal("2", d.arg_page)
    assert.is_nil(d.unknown)
    assert.equal("access", d.phase)
    assert.equal("GET", d.method)
    assert.equal(1.1, d.http_version)
    assert.same({ page = "2", x = "y" }, d.uri_args)
    assert.equal("t", d.headers_x_test)
    assert.is_true(d.start_time_ok)
    assert.is_true(d.now_ok)
    assert.equal(0, d.worker_id)
    assert.equal(1, d.worker_count)
    assert.equal("http", d.subsystem)
    assert.equal("aGVsbG8=", d.b64)
    assert.equal("5d41402abc4b2a76b9719d911017c592", d.md5)
    assert.equal("123", d.re)
  end)

  it("sends ngx.say output with ngx.exit(status)", function()
    local res = client:get("/say-exit")
    assert.equal("hello world!1\n", assert.res_status(202, res))
  end)

  it("sends buffered output with 200 on ngx.exit(ngx.OK)", function()
    local res = client:get("/exit-ok")
    assert.equal("from access\n", assert.res_status(200, res))
  end)

  it("ends the request with ngx.exit(403)", function()
    mock.clear()
    assert.res_status(403, client:get("/exit-status"))
    assert.same({}, mock.requests())
  end)

  it("redirects", function()
    local res = client:get("/redirect")
    assert.res_status(302, res)
    assert.equal("/somewhere?x=1", res.headers["location"])
    res = client:get("/redirect-301")
    assert.res_status(301, res)
  end)

  it("sleeps without blocking the worker", function()
    local t0 = helpers.gettime()
    local other = helpers.proxy_client(gw)
    -- a sleeping request and a quick one on another connection
    local sock = client.sock
    local head = helpers.build_request({ path = "/sleep" },
                                       "127.0.0.1:" .. gw.proxy_port)
    assert(sock:send(head))
    local quick = other:get("/vars")
    assert.res_status(200, quick)
    assert.truthy(helpers.gettime() - t0 < 0.2)
    local res = helpers.read_response(sock, "GET")
    assert.res_status(200, res)
    assert.equal("true", res.headers["x-slept"])
    other:close()
  end)

  it("keeps ngx.ctx across phases of a request", function()
    local res = client:get("/ctx")
    assert.res_status(200, res)
    assert.equal("nil", res.headers["x-ctx"])
    assert.equal("as", res.headers["x-ctx-header-filter"])
    res = client:get("/ctx")
    assert.equal("nil", res.headers["x-ctx"])
  end)

  it("changes the upstream request with ngx.req", function()
    local res = client:get("/req-set", {
      headers = { ["X-Remove"] = "1" }, body = "client body",
    })
    local echo = assert(helpers.json_decode(assert.res_status(200, res)))
    assert.equal("1", echo.headers["x-set-by-ngx"])
    assert.is_nil(echo.headers["x-remove"])
    assert.equal("/anything/ngx", echo.path)
    assert.same({ q = "v" }, echo.query)
    assert.equal("POST", echo.method)
    assert.equal("seen:client body", echo.body)
  end)

  it("writes ngx.var.upstream_uri", function()
    local res = client:get("/upstream-uri")
    local echo = assert(helpers.json_decode(assert.res_status(200, res)))
    assert.equal("/anything/via-var", echo.path)
    assert.same({ k = "v" }, echo.query)
  end)

  it("reads post args", function()
    local res = client:post("/post-args", {
      headers = { ["Content-Type"] = "application/x-www-form-urlencoded" },
      body = "a=1&b=2",
    })
    local d = assert(helpers.json_decode(assert.res_status(200, res)))
    assert.same({ a = "1", b = "2" }, d.args)
  end)

  it("logs with ngx.log, also in the log phase", function()
    assert.res_status(200, client:get("/log"))
    helpers.wait_until(function()
      local log = helpers.read_file(gw.error_log) or ""
      return log:find("[lua] handler.lua:", 1, true) and
             log:find("ngx.log line 1 true nil", 1, true) and
             log:find("log phase: status=200 upstream_status=200 " ..
                      "request_time=", 1, true) and
             log:find("get_phase=log", 1, true)
    end, 5)
  end)

  it("validates arguments", function()
    local d = assert(helpers.json_decode(
                assert.res_status(200, client:get("/errors"))))
    assert.matches("bad argument #1 to 'exit'", d.exit_type, 1, true)
    assert.matches("only ngx.HTTP_MOVED_TEMPORARILY", d.redirect_status, 1,
                   true)
    assert.matches("bad argument #1 to 'log'", d.log_level, 1, true)
    assert.matches("bad argument #1 to 'sleep'", d.sleep_arg, 1, true)
    assert.matches("unsupported HTTP method: 12345", d.set_method, 1, true)
    assert.matches("bad argument #1 to 'set_header'", d.set_header_name, 1,
                   true)
  end)

  it("reads and writes ngx.header in header_filter", function()
    local res = client:get("/header")
    assert.res_status(200, res)
    assert.equal("yes", res.headers["x-from-ngx"])
    assert.equal("dash", res.headers["x-underscored"])
    assert.same({ "1", "2" }, res.headers["x-multi"])
    assert.equal("application/json", res.headers["x-upstream-ct"])
    assert.equal("200", res.headers["x-status"])
    assert.equal("header_filter", res.headers["x-phase"])
    assert.equal("true", res.headers["x-resp-headers-ok"])
  end)

  it("filters body chunks with ngx.arg", function()
    local res = client:get("/arg/bytes/40")
    local body = assert.res_status(200, res)
    assert.equal("ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789ABCD<eof>", body)
  end)
end)
