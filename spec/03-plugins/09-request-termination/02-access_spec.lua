-- request-termination through the real binary: default messages per
-- status, custom message, raw body and content type, trigger (header or
-- query argument), echo; the upstream is never reached when it answers.
local helpers = require "spec.helpers"

local fmt = string.format


local function config(mock_port, routes)
  local list = {}
  for i, rt in ipairs(routes) do
    list[i] = {
      name = "route-" .. i,
      paths = { rt.path },
      plugins = { { name = "request-termination", config = rt.config } },
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


describe("request-termination", function()
  local mock, gw, client

  lazy_setup(function()
    mock = helpers.mock_upstream()
    gw = assert(helpers.start_luagate({
      config = config(mock.port, {
        { path = "/default", config = {} },
        { path = "/status-401", config = { status_code = 401 } },
        { path = "/status-404", config = { status_code = 404 } },
        { path = "/status-405", config = { status_code = 405 } },
        { path = "/status-500", config = { status_code = 500 } },
        { path = "/status-502", config = { status_code = 502 } },
        { path = "/status-418", config = { status_code = 418 } },
        { path = "/status-204", config = { status_code = 204 } },
        { path = "/message", config = { status_code = 403,
                                        message = "No coffee for you" } },
        { path = "/ok-message", config = { status_code = 200,
                                           message = "all good" } },
        { path = "/html", config = { status_code = 200,
                                     body = "<h1>maintenance</h1>",
                                     content_type = "text/html" } },
        { path = "/raw", config = { status_code = 202, body = "raw bytes" } },
        { path = "/trigger", config = { status_code = 403,
                                        trigger = "X-Stop" } },
        { path = "/echo", config = { status_code = 404, echo = true } },
        { path = "/echo-message", config = { status_code = 200, echo = true,
                                             message = "echoed" } },
        { path = "/echo-trigger", config = { status_code = 200, echo = true,
                                             trigger = "debug" } },
      }),
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

  it("answers 503 'Service unavailable' by default, without the upstream",
     function()
    mock.clear()
    local res = client:get("/default")
    local body = assert.res_status(503, res)
    assert.equal('{"message":"Service unavailable"}', body)
    assert.equal("application/json; charset=utf-8",
                 res.headers["content-type"])
    assert.same({}, mock.requests())
  end)

  it("uses Kong's default message of each status", function()
    local cases = {
      { "/status-401", 401, "Unauthorized" },
      { "/status-404", 404, "Not found" },
      { "/status-405", 405, "Method not allowed" },
      { "/status-500", 500, "An unexpected error occurred" },
      { "/status-502", 502, "Bad Gateway" },
    }
    for _, case in ipairs(cases) do
      local res = client:get(case[1])
      local body = assert(helpers.json_decode(assert.res_status(case[2],
                                                                res)))
      assert.same({ message = case[3] }, body)
    end
  end)

  it("sends no body for a status without a default message", function()
    local res = client:get("/status-418")
    assert.equal("", assert.res_status(418, res))
    assert.is_nil(res.headers["content-type"])
    res = client:get("/status-204")
    assert.equal("", assert.res_status(204, res))
  end)

  it("sends the configured message", function()
    local res = client:get("/message")
    local body = assert(helpers.json_decode(assert.res_status(403, res)))
    assert.same({ message = "No coffee for you" }, body)
    -- a request body is not read (the connection is closed after the
    -- answer, so this one gets its own)
    res = helpers.request_once(gw.proxy_port, { method = "POST",
                                                path = "/message",
                                                body = "ignored" })
    body = assert(helpers.json_decode(assert.res_status(403, res)))
    assert.same({ message = "No coffee for you" }, body)
    res = client:get("/ok-message")
    body = assert(helpers.json_decode(assert.res_status(200, res)))
    assert.same({ message = "all good" }, body)
  end)

  it("sends a raw body with its content type", function()
    local res = client:get("/html")
    assert.equal("<h1>maintenance</h1>", assert.res_status(200, res))
    assert.equal("text/html", res.headers["content-type"])
    res = client:get("/raw")
    assert.equal("raw bytes", assert.res_status(202, res))
    assert.equal("9", res.headers["content-length"])
  end)

  describe("trigger", function()
    it("proxies requests without the trigger", function()
      mock.clear()
      local res = client:get("/trigger/request")
      local echo = assert(helpers.json_decode(assert.res_status(200, res)))
      assert.equal("/request", echo.path)
      assert.equal(1, #mock.requests())
    end)

    it("terminates requests with the trigger header, any case", function()
      for _, name in ipairs({ "X-Stop", "x-stop", "X-STOP" }) do
        local res = client:get("/trigger", { headers = { [name] = "1" } })
        -- 403 has no default message in request-termination's table
        assert.equal("", assert.res_status(403, res))
      end
    end)

    it("terminates requests with the trigger query argument", function()
      assert.res_status(403, client:get("/trigger?X-Stop=yes"))
      assert.res_status(403, client:get("/trigger?a=1&X-Stop"))
      assert.res_status(403, client:get("/trigger?X-Stop="))
      -- query argument names are case-sensitive
      assert.res_status(200, client:get("/trigger?x-stop=1"))
    end)
  end)

  describe("echo", function()
    it("sends a copy of the request", function()
      local res = client:post("/echo/some/path?a=1&b=x%20y&c&a=2", {
        headers = { ["Content-Type"] = "application/json",
                    ["X-Custom"] = "hello", Host = "echo.test:8080" },
        body = '{"k":[1,2],"s":"v"}',
      })
      local body = assert(helpers.json_decode(assert.res_status(404, res)))
      assert.equal("Not found", body.message)

      local r = body.request
      assert.equal("POST", r.method)
      assert.equal("/echo/some/path", r.path)
      assert.equal("http", r.scheme)
      assert.equal("echo.test", r.host)
      assert.equal(gw.proxy_port, r.port)
      assert.equal("hello", r.headers["x-custom"])
      assert.equal("application/json", r.headers["content-type"])
      assert.same({ "1", "2" }, r.query.a)
      assert.equal("x y", r.query.b)
      assert.is_true(r.query.c)
      assert.same({ k = { 1, 2 }, s = "v" }, r.body)
      assert.equal('{"k":[1,2],"s":"v"}', r.raw_body)

      assert.matches("^%x+%-%x+%-%x+%-%x+%-%x+$", body.kong.node_id)
      assert.is_number(body.kong.worker_pid)
      assert.truthy(body.kong.worker_pid > 0)
      assert.is_string(body.kong.hostname)

      assert.equal("route-14", body.matched_route.name)
      assert.is_string(body.matched_route.id)
      assert.same({ "/echo" }, body.matched_route.paths)
      assert.equal("mock", body.matched_service.name)
      assert.is_string(body.matched_service.id)
    end)

    it("leaves out a body it cannot decode", function()
      local res = client:get("/echo")
      local body = assert(helpers.json_decode(assert.res_status(404, res)))
      assert.is_nil(body.request.body)
      assert.equal("", body.request.raw_body)
      res = client:post("/echo", {
        headers = { ["Content-Type"] = "text/plain" }, body = "plain",
      })
      body = assert(helpers.json_decode(assert.res_status(404, res)))
      assert.is_nil(body.request.body)
      assert.equal("plain", body.request.raw_body)
    end)

    it("uses the configured message", function()
      local res = client:get("/echo-message")
      local body = assert(helpers.json_decode(assert.res_status(200, res)))
      assert.equal("echoed", body.message)
    end)

    it("honours the trigger", function()
      mock.clear()
      local res = client:get("/echo-trigger/anything")
      local echo = assert(helpers.json_decode(assert.res_status(200, res)))
      assert.equal("/anything", echo.path) -- the mock upstream's echo
      assert.is_nil(echo.request)
      assert.equal(1, #mock.requests())

      res = client:get("/echo-trigger?debug=1")
      local body = assert(helpers.json_decode(assert.res_status(200, res)))
      assert.equal("/echo-trigger", body.request.path)
      assert.is_nil(body.message) -- 200 has no default message

      res = client:get("/echo-trigger", { headers = { Debug = "on" } })
      body = assert(helpers.json_decode(assert.res_status(200, res)))
      assert.equal("on", body.request.headers.debug)
    end)
  end)
end)
