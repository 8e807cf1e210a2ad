-- udp-log through the real binary, against a UDP socket in the spec: one
-- JSON datagram per request, host names, custom fields, redaction, a
-- message too large for a datagram, a name that does not resolve.
local helpers = require "spec.helpers"
local socket = require "socket"

local fmt = string.format


local function udp_server()
  local sock = assert(socket.udp())
  assert(sock:setsockname("127.0.0.1", 0))
  sock:settimeout(0)
  local _, port = sock:getsockname()
  local srv = { port = tonumber(port), received = {} }
  function srv.poll()
    while true do
      local data = sock:receive()
      if not data then
        break
      end
      srv.received[#srv.received + 1] = data
    end
    return srv.received
  end
  function srv.wait(n, timeout)
    return helpers.wait_until(function()
      local list = srv.poll()
      if #list >= n then
        return list
      end
    end, timeout or 10)
  end
  function srv.close()
    sock:close()
  end
  return srv
end


local function error_log_has(gw, text, timeout)
  return helpers.wait_until(function()
    local data = helpers.read_file(gw.error_log) or ""
    if data:find(text, 1, true) then
      return data
    end
  end, timeout or 10)
end


describe("udp-log", function()
  local mock, srv, gw, client

  lazy_setup(function()
    mock = helpers.mock_upstream()
    srv = udp_server()
    gw = assert(helpers.start_luagate({
      config = {
        _format_version = "3.0",
        services = {
          { name = "mock-svc", url = fmt("http://127.0.0.1:%d", mock.port),
            routes = {
              { name = "udp", paths = { "/udp" },
                plugins = {
                  { name = "udp-log",
                    config = { host = "127.0.0.1", port = srv.port } },
                } },
              { name = "named", paths = { "/named" },
                plugins = {
                  { name = "udp-log",
                    config = { host = "localhost", port = srv.port,
                               custom_fields_by_lua = {
                                 ["a.b"] = "return 1 + 1",
                               } } },
                } },
              { name = "huge", paths = { "/huge" },
                plugins = {
                  { name = "udp-log",
                    config = { host = "127.0.0.1", port = srv.port,
                               custom_fields_by_lua = {
                                 pad = "return string.rep('x', 70000)",
                               } } },
                } },
              { name = "unknown", paths = { "/unknown" },
                plugins = {
                  { name = "udp-log",
                    config = { host = "no-such-host.invalid",
                               port = srv.port } },
                } },
            } },
        },
      },
    }))
  end)

  lazy_teardown(function()
    if gw then helpers.stop_luagate(gw) end
    if srv then srv.close() end
    if mock then mock.stop() end
  end)

  before_each(function()
    client = helpers.proxy_client(gw)
  end)

  after_each(function()
    if client then client:close() end
  end)

  it("sends one JSON datagram per request", function()
    local before = #srv.poll()
    for i = 1, 5 do
      assert.res_status(200, client:get("/udp/" .. i, {
        headers = { Cookie = "sid=udp-secret" },
      }))
    end
    local list = srv.wait(before + 5)
    local seen = {}
    for i = before + 1, before + 5 do
      local data = list[i]
      assert.equal("}", data:sub(-1)) -- no newline, nothing after
      local e = assert(helpers.json_decode(data))
      assert.equal("REDACTED", e.request.headers.cookie)
      assert.is_nil(data:find("udp-secret", 1, true))
      seen[e.request.uri] = true
    end
    for i = 1, 5 do
      assert.truthy(seen["/udp/" .. i], "/udp/" .. i)
    end
  end)

  it("resolves host names and applies custom_fields_by_lua", function()
    local before = #srv.poll()
    assert.res_status(200, client:get("/named/x"))
    local e = helpers.json_decode(srv.wait(before + 1)[before + 1])
    assert.equal("/named/x", e.request.uri)
    assert.same({ b = 2 }, e.a)
  end)

  it("logs an entry too large for a datagram", function()
    local before = #srv.poll()
    assert.res_status(200, client:get("/huge"))
    error_log_has(gw, fmt("[udp-log] could not send to 127.0.0.1:%d: " ..
                          "Message too long (1 of 1 log entries lost)",
                          srv.port))
    -- the next ones still go
    assert.res_status(200, client:get("/udp/after"))
    local list = srv.wait(before + 1)
    assert.equal("/udp/after", helpers.json_decode(list[#list]).request.uri)
  end)

  it("logs a host name that does not resolve", function()
    assert.res_status(200, client:get("/unknown"))
    error_log_has(gw, "[udp-log] could not send to no-such-host.invalid:" ..
                      srv.port .. ": could not resolve " ..
                      "no-such-host.invalid", 20)
  end)
end)
