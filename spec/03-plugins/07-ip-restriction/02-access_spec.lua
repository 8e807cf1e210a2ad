-- ip-restriction through the real binary: IPv4 clients (127.0.0.1) and
-- IPv6 clients (::1, through a second listener), allow and deny lists,
-- deny before allow, status and message, content negotiation of the error.
local helpers = require "spec.helpers"
local socket = require "socket"

local fmt = string.format


local function config(mock_port, routes)
  local list = {}
  for i, rt in ipairs(routes) do
    list[i] = {
      name = "route-" .. i,
      paths = { rt.path },
      plugins = { { name = "ip-restriction", config = rt.config } },
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


-- One GET over IPv6 to [::1]:port.
local function get6(port, path, headers)
  local sock = socket.tcp6()
  sock:settimeout(10)
  assert(sock:connect("::1", port))
  local lines = { "GET " .. path .. " HTTP/1.1", "Host: test",
                  "Connection: close" }
  for k, v in pairs(headers or {}) do
    lines[#lines + 1] = k .. ": " .. v
  end
  assert(sock:send(table.concat(lines, "\r\n") .. "\r\n\r\n"))
  local res, err = helpers.read_response(sock, "GET")
  sock:close()
  return assert(res, err)
end


describe("ip-restriction", function()
  local mock, gw, client, port6

  lazy_setup(function()
    mock = helpers.mock_upstream()
    port6 = helpers.get_free_port()
    gw = assert(helpers.start_luagate({
      config = config(mock.port, {
        { path = "/deny-me", config = { deny = { "127.0.0.1" } } },
        { path = "/deny-range", config = { deny = { "127.0.0.0/8" },
                                           status = 401,
                                           message = "Go away" } },
        { path = "/deny-other", config = { deny = { "127.0.0.2",
                                                     "10.0.0.0/8",
                                                     "::2" } } },
        { path = "/allow-me", config = { allow = { "127.0.0.1/32" } } },
        { path = "/allow-other", config = { allow = { "10.0.0.0/8",
                                                       "128.0.0.0/1",
                                                       "::1" } } },
        { path = "/allow-all-v4", config = { allow = { "0.0.0.0/0" } } },
        { path = "/deny-wins", config = { allow = { "127.0.0.0/8", "::1" },
                                          deny = { "127.0.0.1",
                                                   "::/0" } } },
        { path = "/allow-v6-range", config = { allow = {
            "2001:db8::/32", "0:0:0:0:0:0:0:0/127" } } },
        { path = "/deny-v6-range", config = { deny = { "::/64" } } },
        { path = "/mapped", config = { allow = {
            "::ffff:127.0.0.0/104" } } },
        { path = "/teapot", config = { deny = { "127.0.0.1" },
                                       status = 418 } },
        { path = "/bad-status", config = { deny = { "127.0.0.1" },
                                           status = 200 } },
      }),
      args = { "--listen", "[::1]:" .. port6 },
    }))
    helpers.wait_until(function()
      local s = socket.tcp6()
      s:settimeout(0.5)
      local ok = s:connect("::1", port6)
      s:close()
      return ok
    end, 10)
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

  describe("IPv4 client", function()
    it("is rejected by a deny entry with Kong's default answer", function()
      mock.clear()
      local res = client:get("/deny-me")
      local body = assert(helpers.json_decode(assert.res_status(403, res)))
      assert.equal("IP address not allowed: 127.0.0.1", body.message)
      assert.matches("^%x+$", body.request_id)
      assert.equal("application/json; charset=utf-8",
                   res.headers["content-type"])
      assert.same({}, mock.requests())
    end)

    it("is rejected by a deny range with the configured status and message",
       function()
      local res = client:get("/deny-range")
      local body = assert(helpers.json_decode(assert.res_status(401, res)))
      assert.equal("Go away", body.message)
    end)

    it("passes a deny list it is not on", function()
      local res = client:get("/deny-other/request")
      local echo = assert(helpers.json_decode(assert.res_status(200, res)))
      assert.equal("/request", echo.path)
    end)

    it("passes an allow list it is on", function()
      assert.res_status(200, client:get("/allow-me"))
      assert.res_status(200, client:get("/allow-all-v4"))
    end)

    it("is rejected by an allow list it is not on", function()
      local res = client:get("/allow-other")
      local body = assert(helpers.json_decode(assert.res_status(403, res)))
      assert.equal("IP address not allowed: 127.0.0.1", body.message)
    end)

    it("is rejected when denied, even if allowed", function()
      local res = client:get("/deny-wins")
      local body = assert(helpers.json_decode(assert.res_status(403, res)))
      assert.equal("IP address not allowed: 127.0.0.1", body.message)
    end)

    it("is not matched by IPv6 ranges", function()
      assert.res_status(403, client:get("/allow-v6-range"))
      assert.res_status(200, client:get("/deny-v6-range"))
    end)

    it("is matched by an IPv4-mapped IPv6 range", function()
      assert.res_status(200, client:get("/mapped"))
    end)

    it("gets the error in the format it accepts", function()
      local res = client:get("/deny-me", { headers = { Accept = "text/html" } })
      local body = assert.res_status(403, res)
      assert.matches("text/html", res.headers["content-type"], 1, true)
      assert.matches("IP address not allowed: 127.0.0.1", body, 1, true)

      res = client:get("/deny-me", { headers = { Accept = "text/plain" } })
      body = assert.res_status(403, res)
      assert.matches("text/plain", res.headers["content-type"], 1, true)
      assert.matches("IP address not allowed: 127.0.0.1", body, 1, true)
    end)

    it("gets any error status configured", function()
      local res = client:get("/teapot")
      local body = assert(helpers.json_decode(assert.res_status(418, res)))
      assert.equal("IP address not allowed: 127.0.0.1", body.message)
    end)

    it("gets a 500 when the status is not an error status (as in Kong)",
       function()
      local res = client:get("/bad-status")
      local body = assert(helpers.json_decode(assert.res_status(500, res)))
      assert.equal("An unexpected error occurred", body.message)
    end)
  end)

  describe("IPv6 client", function()
    it("is rejected by a deny entry", function()
      local res = get6(port6, "/deny-wins")
      local body = assert(helpers.json_decode(assert.res_status(403, res)))
      assert.equal("IP address not allowed: ::1", body.message)
    end)

    it("passes an allow list it is on", function()
      local res = get6(port6, "/allow-other/request")
      local echo = assert(helpers.json_decode(assert.res_status(200, res)))
      assert.equal("/request", echo.path)
      assert.res_status(200, get6(port6, "/allow-v6-range"))
    end)

    it("is rejected by an allow list it is not on", function()
      local res = get6(port6, "/allow-me")
      local body = assert(helpers.json_decode(assert.res_status(403, res)))
      assert.equal("IP address not allowed: ::1", body.message)
      assert.res_status(403, get6(port6, "/allow-all-v4"))
      assert.res_status(403, get6(port6, "/mapped"))
    end)

    it("is rejected by a deny range", function()
      local res = get6(port6, "/deny-v6-range")
      assert.res_status(403, res)
      assert.res_status(200, get6(port6, "/deny-me"))
      assert.res_status(200, get6(port6, "/deny-other"))
    end)
  end)
end)
