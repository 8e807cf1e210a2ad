-- gRPC: services with protocol grpc (HTTP/2 cleartext to the upstream) and
-- grpcs (HTTP/2 over TLS, ALPN h2), clients over h2c and TLS, the four
-- kinds of call (unary, server, client and bidirectional streaming, the
-- last in lockstep so that only a full-duplex path passes), statuses and
-- trailers passed through, plugins on gRPC routes, the gateway's own errors
-- as gRPC statuses (Kong's mapping), connection reuse, deadlines, large
-- messages both ways, gRPC statuses in the access log, kong.log.serialize
-- and /metrics, and the route rules Kong has for grpc protocols.
-- Server and client: spec/fixtures/grpc_server.py and grpc_client.py
-- (Debian's python3-grpcio).
local helpers = require "spec.helpers"
local tls = require("spec.tls_fixtures").get()

local fmt = string.format
local q = helpers.shell_quote

local ROOT = os.getenv("LUAGATE_ROOT") or "."
local SERVER = ROOT .. "/spec/fixtures/grpc_server.py"
local CLIENT = ROOT .. "/spec/fixtures/grpc_client.py"
local CA_ID = "3b1c0a6e-7f55-4b55-9a44-0b9c5e0c6a01"

-- Runs grpc_client.py; opts: port, method, data (table), msgs (list),
-- msg_size, metadata (table), authority, tls (true: the test CA), lockstep,
-- timeout, calls. Returns the decoded outcome.
local function call(opts)
  local args = { "--target", "127.0.0.1:" .. opts.port,
                 "--method", opts.method or "Unary",
                 "--timeout", tostring(opts.timeout or 10) }
  if opts.data then
    args[#args + 1] = "--data"
    args[#args + 1] = helpers.json_encode(opts.data)
  end
  if opts.msgs then
    args[#args + 1] = "--msgs"
    args[#args + 1] = helpers.json_encode(opts.msgs)
  end
  for k, v in pairs(opts.metadata or {}) do
    args[#args + 1] = "--metadata"
    args[#args + 1] = k .. "=" .. v
  end
  if opts.authority then
    args[#args + 1] = "--authority"
    args[#args + 1] = opts.authority
  end
  if opts.tls then
    args[#args + 1] = "--tls-ca"
    args[#args + 1] = tls.ca.cert
  end
  if opts.msg_size then
    args[#args + 1] = "--msg-size"
    args[#args + 1] = tostring(opts.msg_size)
  end
  if opts.lockstep then
    args[#args + 1] = "--lockstep"
  end
  if opts.calls then
    args[#args + 1] = "--calls"
    args[#args + 1] = tostring(opts.calls)
  end
  for i, a in ipairs(args) do args[i] = q(a) end
  local rc, out, err = helpers.execute(fmt("timeout 60 %s %s %s 2>&1",
    q(helpers.python), q(CLIENT), table.concat(args, " ")))
  local res = helpers.json_decode((out or ""):match("({.*})%s*$") or "")
  assert(res, fmt("grpc_client.py failed (rc %s): %s %s", tostring(rc),
                  tostring(out), tostring(err)))
  return res
end

local function start_server(opts)
  local cmd = fmt("%s %s --port 0", q(helpers.python), q(SERVER))
  if opts and opts.tls then
    cmd = cmd .. fmt(" --tls-cert %s --tls-key %s", q(opts.tls.cert),
                     q(opts.tls.key))
  end
  return helpers.start_server(cmd, "grpc")
end

describe("gRPC", function()
  local plain, secure, h1, gw, h2c_port, tls_port

  lazy_setup(function()
    plain = start_server()
    secure = start_server({ tls = tls.certs.upstream })
    h1 = helpers.mock_upstream()
    h2c_port = helpers.get_free_port()
    tls_port = helpers.get_free_port()
    local closed = helpers.get_free_port()
    local function svc(name, url, route, extra)
      local s = { name = name, url = url, connect_timeout = 2000,
                  read_timeout = 5000, retries = 0,
                  routes = { route } }
      for k, v in pairs(extra or {}) do s[k] = v end
      return s
    end
    gw = assert(helpers.start_luagate({
      config = {
        _format_version = "3.0",
        ca_certificates = { { id = CA_ID, cert = tls.ca.cert_pem } },
        consumers = {
          { username = "alice", keyauth_credentials = { { key = "k-alice" } } },
        },
        services = {
          svc("echo", fmt("grpc://127.0.0.1:%d", plain.port), {
            name = "echo", protocols = { "grpc", "grpcs" },
            paths = { "/luagate.test.Echo/" },
            plugins = {
              { name = "request-transformer",
                config = { add = { headers = { "x-added:by-plugin" } } } },
              { name = "response-transformer",
                config = { add = { headers = { "x-resp:by-plugin" } } } },
            } }),
          svc("secure", fmt("grpcs://localhost:%d", secure.port), {
            name = "secure", protocols = { "grpc" }, hosts = { "secure.test" },
            plugins = { { name = "pre-function", config = { access = { [[
              kong.service.request.set_header("x-protocol",
                                              kong.client.get_protocol())
            ]] } } } },
          }, { tls_verify = true, ca_certificates = { CA_ID } }),
          -- the upstream's certificate is not signed by a trusted CA here
          svc("untrusted", fmt("grpcs://localhost:%d", secure.port), {
            name = "untrusted", protocols = { "grpc" },
            hosts = { "untrusted.test" },
          }, { tls_verify = true }),
          svc("auth", fmt("grpc://127.0.0.1:%d", plain.port), {
            name = "auth", protocols = { "grpc" }, hosts = { "auth.test" },
            plugins = { { name = "key-auth" } },
          }),
          svc("down", fmt("grpc://127.0.0.1:%d", closed), {
            name = "down", protocols = { "grpc" }, hosts = { "down.test" },
          }),
          -- an HTTP/1.1 server where HTTP/2 is expected
          svc("wrongproto", fmt("grpc://127.0.0.1:%d", h1.port), {
            name = "wrongproto", protocols = { "grpc" },
            hosts = { "wrongproto.test" },
          }),
          svc("logged", fmt("grpc://127.0.0.1:%d", plain.port), {
            name = "logged", protocols = { "grpc" }, hosts = { "logged.test" },
            plugins = { { name = "post-function", config = { log = { [[
              local s = kong.log.serialize()
              kong.log.notice("serialized grpc_status=",
                              tostring(s.response.grpc_status),
                              " status=", s.response.status)
            ]] } } } },
          }),
        },
      },
      args = { "--listen", fmt("127.0.0.1:%d http2", h2c_port),
               "--listen", fmt("127.0.0.1:%d ssl http2", tls_port),
               "--ssl-cert", tls.certs.localhost.chain,
               "--ssl-key", tls.certs.localhost.key },
    }))
    helpers.wait_until(function()
      return helpers.port_open(h2c_port) and helpers.port_open(tls_port)
    end, 10)
  end)

  lazy_teardown(function()
    helpers.stop_luagate(gw)
    if plain then plain.stop() end
    if secure then secure.stop() end
    if h1 then h1.stop() end
  end)

  describe("calls through a grpc service", function()
    it("unary: message, metadata both ways, trailers, plugins", function()
      local res = call({ port = h2c_port, data = { msg = "hello" },
                         metadata = { ["x-client"] = "c1" } })
      assert.equal("OK", res.code)
      local echo = res.responses[1]
      assert.equal("hello", echo.msg)
      assert.equal("/luagate.test.Echo/Unary", echo.method)
      -- the route kept the path (grpc routes do not strip it)
      assert.equal("/luagate.test.Echo/Unary",
                   echo.metadata["x-forwarded-path"])
      assert.equal("c1", echo.metadata["x-client"])
      assert.equal("by-plugin", echo.metadata["x-added"])
      assert.equal("http", echo.metadata["x-forwarded-proto"])
      assert.equal("127.0.0.1", echo.metadata["x-forwarded-for"])
      assert.equal("yes", res.initial_metadata["x-initial"])
      assert.equal("by-plugin", res.initial_metadata["x-resp"])
      -- the trailers came through the gateway, and nothing else did
      assert.equal("done", res.trailing_metadata["x-trailer"])
      assert.is_nil(res.trailing_metadata["content-length"])
    end)

    it("server streaming: every message, in order", function()
      local res = call({ port = h2c_port, method = "ServerStream",
                         data = { n = 5, delay = 0.05 } })
      assert.equal("OK", res.code)
      assert.equal(5, #res.responses)
      for i = 1, 5 do
        assert.equal(i - 1, res.responses[i].i)
      end
    end)

    it("client streaming: every message reaches the server", function()
      local res = call({ port = h2c_port, method = "ClientStream",
                         msgs = { "a", "b", "c", "d" } })
      assert.equal("OK", res.code)
      assert.equal(4, res.responses[1].count)
      assert.same({ "a", "b", "c", "d" }, res.responses[1].msgs)
    end)

    it("bidirectional streaming in lockstep (full duplex)", function()
      -- the client sends message i+1 only after answer i came back: a path
      -- that waited for the end of the request would hang to the deadline
      local res = call({ port = h2c_port, method = "Bidi", lockstep = true,
                         msgs = { "one", "two", "three" }, timeout = 8 })
      assert.equal("OK", res.code, res.details)
      assert.equal(3, #res.responses)
      assert.equal("one", res.responses[1].echo)
      assert.equal("three", res.responses[3].echo)
    end)

    it("passes the upstream's error status, message and trailers", function()
      local res = call({ port = h2c_port, method = "Fail",
                         data = { code = 9, details = "not now: 100% busy" } })
      assert.equal("FAILED_PRECONDITION", res.code)
      assert.equal("not now: 100% busy", res.details)
      assert.equal("yes", res.trailing_metadata["x-fail-trailer"])
    end)

    it("carries large messages both ways (flow control)", function()
      local res = call({ port = h2c_port, msg_size = 3000000 })
      assert.equal("OK", res.code)
      assert.equal(3000000, #res.responses[1].msg)
      assert.equal("0123456789", res.responses[1].msg:sub(2999991))
      res = call({ port = h2c_port, method = "Big", data = { size = 5000000 } })
      assert.equal("OK", res.code)
      assert.equal(5000000, #res.responses[1].data)
    end)

    it("reuses one upstream connection for calls one after another", function()
      local res = call({ port = h2c_port, calls = 5, data = { msg = "x" } })
      assert.equal("OK", res.code)
      assert.equal(1, #res.peers, helpers.json_encode(res.peers))
    end)

    it("a deadline the client gives up on leaves the gateway serving", function()
      local res = call({ port = h2c_port, method = "Slow",
                         data = { delay = 2 }, timeout = 0.5 })
      assert.equal("DEADLINE_EXCEEDED", res.code)
      res = call({ port = h2c_port, data = { msg = "after" } })
      assert.equal("OK", res.code)
      assert.equal("after", res.responses[1].msg)
    end)

    it("serves HTTP/1.1 clients, the trailers in the last chunk", function()
      local payload = '{"msg":"over h1"}'
      local framed = "\0" .. string.char(0, 0, 0, #payload) .. payload
      local conn = assert(helpers.raw_connect(gw.proxy_port))
      conn:send("POST /luagate.test.Echo/Unary HTTP/1.1\r\nHost: x\r\n" ..
                "Content-Type: application/grpc\r\nTE: trailers\r\n" ..
                "Content-Length: " .. #framed .. "\r\n\r\n" .. framed)
      local data = ""
      helpers.wait_until(function()
        local chunk, err, partial = conn:receive(1)
        data = data .. (chunk or partial or "")
        return data:find("\r\n0\r\n.-\r\n\r\n$") ~= nil or err == "closed"
      end, 10, 0)
      conn:close()
      assert.matches("^HTTP/1.1 200 OK\r\n", data)
      assert.matches("\r\n[Tt]ransfer%-[Ee]ncoding: chunked\r\n", data)
      assert.matches('"msg": "over h1"', data, 1, true)
      -- the last chunk carries the upstream's trailers
      local trailers = data:match("\r\n0\r\n(.-)\r\n\r\n$")
      assert.truthy(trailers, data)
      assert.matches("grpc%-status: 0", trailers)
      assert.matches("x%-trailer: done", trailers)
    end)

    it("serves gRPC clients over TLS (ALPN h2)", function()
      local res = call({ port = tls_port, tls = true, authority = "localhost",
                         data = { msg = "over tls" } })
      assert.equal("OK", res.code, res.details)
      assert.equal("over tls", res.responses[1].msg)
      assert.equal("https", res.responses[1].metadata["x-forwarded-proto"])
      assert.equal("done", res.trailing_metadata["x-trailer"])
    end)
  end)

  describe("grpcs services", function()
    it("speak HTTP/2 over TLS to the upstream, verified", function()
      local res = call({ port = h2c_port, authority = "secure.test",
                         method = "ServerStream", data = { n = 3 } })
      assert.equal("OK", res.code, res.details)
      assert.equal(3, #res.responses)
      res = call({ port = h2c_port, authority = "secure.test",
                   data = { msg = "tls upstream" } })
      assert.equal("tls upstream", res.responses[1].msg)
      -- a route whose only protocol is grpc: kong.client.get_protocol (Kong)
      assert.equal("grpc", res.responses[1].metadata["x-protocol"])
      assert.equal("done", res.trailing_metadata["x-trailer"])
    end)

    it("refuse an upstream certificate no trusted CA signed", function()
      local res = call({ port = h2c_port, authority = "untrusted.test" })
      -- the gateway's 502, as Kong maps it: 5xx -> INTERNAL
      assert.equal("INTERNAL", res.code)
      assert.equal("An invalid response was received from the upstream server",
                   res.details)
    end)
  end)

  describe("the gateway's own answers to gRPC clients", function()
    it("a plugin's refusal becomes a gRPC status (Kong's mapping)", function()
      local res = call({ port = h2c_port, authority = "auth.test" })
      assert.equal("UNAUTHENTICATED", res.code)
      -- Kong's kong.response.error: the short name, not the HTTP message
      assert.equal("Unauthenticated", res.details)
      res = call({ port = h2c_port, authority = "auth.test",
                   metadata = { apikey = "k-alice" }, data = { msg = "in" } })
      assert.equal("OK", res.code)
      assert.equal("alice", res.responses[1].metadata["x-consumer-username"])
    end)

    it("no route: NOT_FOUND with the router's message", function()
      local res = call({ port = h2c_port, method = "/other.Service/Call" })
      assert.equal("NOT_FOUND", res.code)
      assert.equal("no Route matched with those values", res.details)
    end)

    it("an upstream that refuses connections: INTERNAL", function()
      local res = call({ port = h2c_port, authority = "down.test" })
      assert.equal("INTERNAL", res.code)
      assert.equal("An invalid response was received from the upstream server",
                   res.details)
    end)

    it("an upstream that does not speak HTTP/2: INTERNAL, nothing else hurt", function()
      local res = call({ port = h2c_port, authority = "wrongproto.test" })
      assert.equal("INTERNAL", res.code)
      assert.equal("An invalid response was received from the upstream server",
                   res.details)
      res = call({ port = h2c_port, data = { msg = "still here" } })
      assert.equal("still here", res.responses[1].msg)
      -- the mock answers the HTTP/2 preface with a close (or bytes that
      -- are not frames): logged against that upstream either way
      assert.matches(fmt("upstream 127.0.0.1:%d ", h1.port),
                     helpers.read_file(gw.error_log), 1, true)
    end)

    it("the HTTP status stays, grpc-status and grpc-message are added", function()
      local rc, out = helpers.execute(fmt(
        "curl -sS -D- -o /dev/null --http2-prior-knowledge -H %s -H %s " ..
        "--data-binary '' http://127.0.0.1:%d/luagate.test.Echo/Unary",
        q("content-type: application/grpc"), q("host: auth.test"), h2c_port))
      assert.equal(0, rc)
      assert.matches("^HTTP/2 401", out)
      assert.matches("\ngrpc%-status: 16\r", out)
      assert.matches("\ngrpc%-message: Unauthenticated\r", out)
      assert.matches("\ncontent%-type: application/grpc\r", out)
    end)

    it("a non-gRPC request to the same route keeps the JSON error", function()
      local rc, out = helpers.execute(fmt(
        "curl -sS -i --http2-prior-knowledge -H %s " ..
        "http://127.0.0.1:%d/luagate.test.Echo/Unary", q("host: auth.test"),
        h2c_port))
      assert.equal(0, rc)
      assert.matches("^HTTP/2 401", out)
      assert.no.matches("grpc%-status", out)
      assert.matches('"message":"No API key found in request"', out, 1, true)
    end)
  end)

  describe("observability", function()
    it("logs and counts gRPC statuses", function()
      local res = call({ port = h2c_port, authority = "logged.test",
                         method = "Fail", data = { code = 7, details = "no" } })
      assert.equal("PERMISSION_DENIED", res.code)
      res = call({ port = h2c_port, authority = "logged.test",
                   data = { msg = "fine" } })
      assert.equal("OK", res.code)
      local seen = {}
      helpers.wait_until(function()
        for _, e in ipairs(helpers.access_log_entries(gw)) do
          if e.service == "logged" and e.grpc_status then
            seen[e.grpc_status] = (seen[e.grpc_status] or 0) + 1
          end
        end
        return seen[7] and seen[0]
      end, 10)
      assert.equal(1, seen[7])
      assert.equal(1, seen[0])
      -- kong.log.serialize() has it too
      helpers.wait_until(function()
        local log = helpers.read_file(gw.error_log) or ""
        return log:find("serialized grpc_status=7 status=200", 1, true) and
               log:find("serialized grpc_status=0 status=200", 1, true)
      end, 10)
      -- /metrics: by service, route and gRPC status; the gateway's own too
      local function scrape()
        local r = helpers.request_once(gw.admin_port, { path = "/metrics" })
        return r and r.body or ""
      end
      local function down_count(m)
        return tonumber(m:match('luagate_grpc_responses_total{service="down",' ..
                                'route="down",grpc_status="13"} (%d+)')) or 0
      end
      local before = down_count(scrape())
      call({ port = h2c_port, authority = "down.test" })
      local metrics
      helpers.wait_until(function()
        metrics = scrape()
        return down_count(metrics) == before + 1
      end, 10)
      assert.matches('luagate_grpc_responses_total{service="logged",' ..
                     'route="logged",grpc_status="7"} 1', metrics, 1, true)
      assert.matches('luagate_grpc_responses_total{service="logged",' ..
                     'route="logged",grpc_status="0"} 1', metrics, 1, true)
    end)
  end)

  describe("route rules for grpc protocols (Kong's)", function()
    local function check(routes)
      local dir = helpers.make_prefix("grpc-check")
      local path = helpers.make_config_file({
        _format_version = "3.0",
        services = { { name = "s", url = "grpc://127.0.0.1:9", routes = routes } },
      }, dir)
      local rc, out, err = helpers.luagate_exec({ "check", "-c", path })
      return rc, (out or "") .. (err or "")
    end

    it("strip_path defaults to false and cannot be true", function()
      local rc, out = check({ { name = "r", protocols = { "grpc" },
                                paths = { "/a.B/" } } })
      assert.equal(0, rc, out)
      rc, out = check({ { name = "r", protocols = { "grpc" },
                          paths = { "/a.B/" }, strip_path = true } })
      assert.equal(1, rc)
      assert.matches("routes[0].strip_path: cannot set 'strip_path' when " ..
                     "'protocols' is 'grpc' or 'grpcs'", out, 1, true)
    end)

    it("methods, sources and destinations cannot be set", function()
      local rc, out = check({ { name = "r", protocols = { "grpcs" },
                                paths = { "/a.B/" }, methods = { "POST" } } })
      assert.equal(1, rc)
      assert.matches("routes[0].methods: cannot set 'methods' when " ..
                     "'protocols' is 'grpc' or 'grpcs'", out, 1, true)
    end)

    it("a grpc service has no path", function()
      local dir = helpers.make_prefix("grpc-check")
      local path = helpers.make_config_file({
        _format_version = "3.0",
        services = { { name = "s", url = "grpc://127.0.0.1:9/base" } },
      }, dir)
      local rc, out, err = helpers.luagate_exec({ "check", "-c", path })
      assert.equal(1, rc)
      assert.matches("services[0].path: value must be null",
                     (out or "") .. (err or ""), 1, true)
    end)
  end)
end)
