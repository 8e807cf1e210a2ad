-- tcp-log through the real binary, against a TCP server in the spec: one
-- JSON line per request, pooled connections, custom fields, redaction,
-- rejected requests, host names, an unreachable server.
local helpers = require "spec.helpers"
local socket = require "socket"

local fmt = string.format


-- A TCP server: accepts every connection and collects the lines they
-- carry. srv.lines() polls (never blocks); srv.wait(n) waits for n lines.
local function tcp_server()
  local server = assert(socket.bind("127.0.0.1", 0))
  server:settimeout(0)
  local _, port = server:getsockname()
  local srv = { port = tonumber(port), conns = {}, accepted = 0,
                received = {} }

  function srv.poll()
    while true do
      local c = server:accept()
      if not c then
        break
      end
      c:settimeout(0)
      srv.accepted = srv.accepted + 1
      srv.conns[#srv.conns + 1] = { sock = c, buf = "" }
    end
    for _, c in ipairs(srv.conns) do
      if c.sock then
        while true do
          local data, err, partial = c.sock:receive(8192)
          data = data or partial
          if data and #data > 0 then
            c.buf = c.buf .. data
          end
          if err == "closed" then
            c.sock:close()
            c.sock = nil
            break
          end
          if not data or #data == 0 or err then
            break
          end
        end
        while true do
          local i = c.buf:find("\n", 1, true)
          if not i then
            break
          end
          srv.received[#srv.received + 1] = c.buf:sub(1, i - 1)
          c.buf = c.buf:sub(i + 1)
        end
      end
    end
    return srv.received
  end

  function srv.wait(n, timeout)
    return helpers.wait_until(function()
      local lines = srv.poll()
      if #lines >= n then
        return lines
      end
    end, timeout or 10)
  end

  function srv.close()
    for _, c in ipairs(srv.conns) do
      if c.sock then
        c.sock:close()
      end
    end
    server:close()
  end

  return srv
end


describe("tcp-log", function()
  local mock, srv, gw, client, closed_port

  lazy_setup(function()
    mock = helpers.mock_upstream()
    srv = tcp_server()
    closed_port = helpers.get_free_port()
    gw = assert(helpers.start_luagate({
      config = {
        _format_version = "3.0",
        services = {
          { name = "mock-svc", url = fmt("http://127.0.0.1:%d", mock.port),
            routes = {
              { name = "tcp", paths = { "/tcp" },
                plugins = {
                  { name = "tcp-log",
                    config = { host = "127.0.0.1", port = srv.port } },
                } },
              { name = "named", paths = { "/named" },
                plugins = {
                  { name = "tcp-log",
                    config = { host = "localhost", port = srv.port,
                               custom_fields_by_lua = {
                                 route = "return nil",
                                 marker = "return 'named'",
                               } } },
                } },
              { name = "rejected", paths = { "/rejected" },
                plugins = {
                  { name = "tcp-log",
                    config = { host = "127.0.0.1", port = srv.port } },
                  { name = "request-termination",
                    config = { status_code = 451 } },
                } },
              { name = "closed", paths = { "/closed" },
                plugins = {
                  { name = "tcp-log",
                    config = { host = "127.0.0.1", port = closed_port,
                               timeout = 1000 } },
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

  it("sends one JSON line per request over a pooled connection", function()
    local before = #srv.poll()
    for i = 1, 5 do
      assert.res_status(200, client:get("/tcp/" .. i, {
        headers = { Authorization = "Bearer tcp-secret" },
      }))
      -- one at a time: each goes out on its own
      srv.wait(before + i)
    end
    local lines = srv.poll()
    for i = 1, 5 do
      local e = assert(helpers.json_decode(lines[before + i]))
      assert.equal("/tcp/" .. i, e.request.uri)
      assert.equal(200, e.response.status)
      assert.equal("tcp", e.route.name)
      assert.equal("REDACTED", e.request.headers.authorization)
      assert.is_nil(lines[before + i]:find("tcp-secret", 1, true))
    end
    -- kept alive between sends
    assert.equal(1, srv.accepted)
  end)

  it("resolves host names and applies custom_fields_by_lua", function()
    local before = #srv.poll()
    assert.res_status(200, client:get("/named/1"))
    local e = helpers.json_decode(srv.wait(before + 1)[before + 1])
    assert.equal("/named/1", e.request.uri)
    assert.equal("named", e.marker)
    assert.is_nil(e.route)
  end)

  it("logs rejected requests", function()
    local before = #srv.poll()
    assert.res_status(451, client:get("/rejected"))
    local e = helpers.json_decode(srv.wait(before + 1)[before + 1])
    assert.equal(451, e.response.status)
  end)

  it("logs a connection failure; requests go on", function()
    local t0 = helpers.gettime()
    assert.res_status(200, client:get("/closed"))
    assert.truthy(helpers.gettime() - t0 < 1)
    helpers.wait_until(function()
      local data = helpers.read_file(gw.error_log) or ""
      return data:find(fmt("[tcp-log] failed to connect to 127.0.0.1:%d: " ..
                           "connection refused (1 log entries lost)",
                           closed_port), 1, true)
    end, 10)
  end)
end)
