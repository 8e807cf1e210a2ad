-- Proxying: routing (Kong semantics), path handling, forwarded headers,
-- bodies both ways, keepalive, pipelining, WebSocket tunnelling.
local helpers = require "spec.helpers"

local fmt = string.format
local MB = 1024 * 1024

-- What the mock upstream sends for /bytes/N and /chunked-bytes/N.
local function pattern_bytes(n)
  local p = "abcdefghijklmnopqrstuvwxyz0123456789"
  return string.rep(p, math.floor(n / #p) + 1):sub(1, n)
end

local function sha1_of(data)
  local dir = helpers.make_prefix("sha1")
  helpers.write_file(dir .. "/body", data)
  local _, out = helpers.execute("sha1sum " .. dir .. "/body")
  return out:match("^(%x+)")
end

local function config(mock_port)
  local function url(path)
    return fmt("http://127.0.0.1:%d%s", mock_port, path or "")
  end
  return {
    _format_version = "3.0",
    services = {
      {
        name = "echo",
        url = url(),
        routes = {
          { name = "echo", paths = { "/echo" } },
          { name = "nostrip", paths = { "/nostrip" }, strip_path = false },
          { name = "regex", paths = { [[~/regex/\d+$]] }, strip_path = false },
          { name = "ws", paths = { "/ws" } },
          { name = "preserve", paths = { "/preserve" }, preserve_host = true },
          { name = "methods", paths = { "/methods" }, methods = { "POST" } },
          { name = "headers", paths = { "/hdr" },
            headers = { ["x-version"] = { "v2" } } },
        },
      },
      {
        name = "longer",
        url = url("/longer-base"),
        routes = { { name = "longer", paths = { "/echo/longer" } } },
      },
      {
        name = "join",
        url = url("/base"),
        routes = { { name = "join", paths = { "/join" } } },
      },
      {
        name = "exact-host",
        url = url("/exact-host"),
        routes = { { name = "exact-host", hosts = { "example.test" },
                     paths = { "/hosted" } } },
      },
      {
        name = "wild-host",
        url = url("/wild-host"),
        routes = { { name = "wild-host", hosts = { "*.wild.test" },
                     paths = { "/hosted" } } },
      },
      {
        name = "dns",
        url = fmt("http://localhost:%d/dns", mock_port),
        routes = { { name = "dns", paths = { "/dns" } } },
      },
    },
  }
end

describe("proxy", function()
  local mock, gw

  lazy_setup(function()
    mock = helpers.mock_upstream()
    local err
    gw, err = helpers.start_luagate({ config = config(mock.port) })
    assert(gw, err)
  end)

  lazy_teardown(function()
    helpers.stop_luagate(gw)
    if mock then mock.stop() end
  end)

  local client
  before_each(function()
    client = helpers.proxy_client(gw)
  end)
  after_each(function()
    client:close()
  end)

  local function echo_of(res, status)
    assert.res_status(status or 200, res)
    return assert.response(res).has.jsonbody()
  end

  describe("routing", function()
    it("a plain path is a prefix and is stripped by default", function()
      local json = echo_of(client:get("/echo/a/b?x=1&y=2"))
      assert.equal("/a/b", json.path)
      assert.equal("/a/b?x=1&y=2", json.uri)
      assert.same({ x = "1", y = "2" }, json.query)
    end)

    it("the request path equal to the prefix goes upstream as /", function()
      local json = echo_of(client:get("/echo"))
      assert.equal("/", json.path)
    end)

    it("the longest prefix wins", function()
      local json = echo_of(client:get("/echo/longer/x"))
      assert.equal("/longer-base/x", json.path)
      json = echo_of(client:get("/echo/other"))
      assert.equal("/other", json.path)
    end)

    it("strip_path = false keeps the path", function()
      local json = echo_of(client:get("/nostrip/a"))
      assert.equal("/nostrip/a", json.path)
    end)

    it("joins the service path and the stripped path", function()
      assert.equal("/base/x/y", echo_of(client:get("/join/x/y")).path)
      assert.equal("/base", echo_of(client:get("/join")).path)
      assert.equal("/base/x?q=1", echo_of(client:get("/join/x?q=1")).uri)
    end)

    it("a ~ path is a regex", function()
      assert.equal("/regex/123", echo_of(client:get("/regex/123")).path)
      local res = assert(client:get("/regex/abc"))
      assert.res_status(404, res)
    end)

    it("matches exact and wildcard hosts", function()
      local json = echo_of(client:get("/hosted/p",
                             { headers = { Host = "example.test" } }))
      assert.equal("/exact-host/p", json.path)
      json = echo_of(client:get("/hosted/p",
                       { headers = { Host = "a.wild.test" } }))
      assert.equal("/wild-host/p", json.path)
      local host_port = "example.test:" .. gw.proxy_port
      json = echo_of(client:get("/hosted/p",
                       { headers = { Host = host_port } }))
      assert.equal("/exact-host/p", json.path)
      local res = assert(client:get("/hosted/p",
                           { headers = { Host = "other.test" } }))
      assert.res_status(404, res)
    end)

    it("matches methods", function()
      assert.equal("POST", echo_of(client:post("/methods", { body = "x" }))
                   .method)
      local res = assert(client:get("/methods"))
      assert.res_status(404, res)
    end)

    it("matches headers", function()
      local res = assert(client:get("/hdr"))
      assert.res_status(404, res)
      res = assert(client:get("/hdr", { headers = { ["X-Version"] = "v2" } }))
      assert.res_status(200, res)
      res = assert(client:get("/hdr", { headers = { ["X-Version"] = "v1" } }))
      assert.res_status(404, res)
    end)

    it("no match: 404 with Kong's JSON body", function()
      local res = assert(client:get("/nothing-here"))
      local body = assert.res_status(404, res)
      local json = helpers.json_decode(body)
      assert.equal("no Route matched with those values", json.message)
      -- Kong 3.x also gives the request id in its error bodies
      json.message, json.request_id = nil, nil
      assert.same({}, json)
      assert.matches("application/json", res.headers["content-type"])
    end)

    it("resolves a service host name (localhost)", function()
      local json = echo_of(client:get("/dns/x"))
      assert.equal("/dns/x", json.path)
    end)
  end)

  describe("Host header", function()
    it("is the service's host:port by default (preserve_host false)",
       function()
      local res = assert(client:get("/echo/h",
                           { headers = { Host = "client.test" } }))
      assert.res_status(200, res)
      assert.equal("127.0.0.1:" .. mock.port,
                   assert.request(res).has.header("host"))
    end)

    it("is the client's with preserve_host", function()
      local res = assert(client:get("/preserve/h",
                           { headers = { Host = "client.test" } }))
      assert.res_status(200, res)
      assert.equal("client.test", assert.request(res).has.header("host"))
    end)
  end)

  describe("request headers", function()
    it("are forwarded, repeated ones included", function()
      local res = assert(client:get("/echo/h", { headers = {
        ["X-Custom"] = "abc",
        ["X-Multi"] = { "one", "two" },
        ["User-Agent"] = "spec",
      } }))
      assert.res_status(200, res)
      assert.equal("abc", assert.request(res).has.header("x-custom"))
      assert.equal("spec", assert.request(res).has.header("user-agent"))
      local multi = assert.request(res).has.header("x-multi")
      if type(multi) == "table" then
        multi = table.concat(multi, ", ")
      end
      assert.equal("one, two", multi)
    end)

    it("X-Forwarded-* and X-Real-IP are set (XFF appended)", function()
      local res = assert(client:get("/echo/xff?a=1", { headers = {
        Host = "front.test",
        ["X-Forwarded-For"] = "10.1.2.3",
      } }))
      assert.res_status(200, res)
      assert.equal("10.1.2.3, 127.0.0.1",
                   assert.request(res).has.header("x-forwarded-for"))
      assert.equal("http", assert.request(res).has.header("x-forwarded-proto"))
      assert.equal("front.test",
                   assert.request(res).has.header("x-forwarded-host"))
      assert.equal(tostring(gw.proxy_port),
                   assert.request(res).has.header("x-forwarded-port"))
      assert.equal("/echo/xff",
                   assert.request(res).has.header("x-forwarded-path"))
      assert.equal("127.0.0.1", assert.request(res).has.header("x-real-ip"))
    end)

    it("X-Forwarded-For is the client address when absent", function()
      local res = assert(client:get("/echo/xff"))
      assert.res_status(200, res)
      assert.equal("127.0.0.1",
                   assert.request(res).has.header("x-forwarded-for"))
    end)

    it("X-Request-ID is generated for every request, sent upstream",
       function()
      local ids = {}
      for i = 1, 3 do
        local res = assert(client:get("/echo/id", { headers = {
          ["X-Request-ID"] = "client-chosen",
        } }))
        assert.res_status(200, res)
        local id = assert.request(res).has.header("x-request-id")
        assert.is_string(id)
        assert.not_equal("client-chosen", id)
        assert.truthy(#id >= 8, "short request id " .. id)
        assert.is_nil(ids[id])
        ids[id] = i
      end
    end)

    it("hop-by-hop headers are not forwarded", function()
      local res = assert(client:get("/echo/hop", { headers = {
        Connection = "keep-alive",
        ["Keep-Alive"] = "timeout=5",
        TE = "trailers",
        Trailer = "X-Trail",
        Upgrade = "h2c",
        ["Proxy-Authorization"] = "Basic Zm9vOmJhcg==",
        ["Proxy-Connection"] = "keep-alive",
        ["X-Kept"] = "yes",
      } }))
      assert.res_status(200, res)
      assert.equal("yes", assert.request(res).has.header("x-kept"))
      for _, h in ipairs({ "keep-alive", "te", "trailer", "upgrade",
                           "proxy-connection" }) do
        assert.request(res).has_no.header(h)
      end
      -- passed on as nginx and Kong do (basic-auth reads it)
      assert.equal("Basic Zm9vOmJhcg==",
                   assert.request(res).has.header("proxy-authorization"))
    end)

    it("hop-by-hop response headers are not passed to the client",
       function()
      local res = assert(client:get(
        "/echo/response-headers?Keep-Alive=timeout%3D1&Trailer=X-T" ..
        "&Upgrade=foo&X-Kept=1"))
      assert.res_status(200, res)
      assert.equal("1", res.headers["x-kept"])
      assert.is_nil(res.headers["trailer"])
      assert.is_nil(res.headers["upgrade"])
      assert.not_equal("timeout=1", res.headers["keep-alive"])
    end)
  end)

  describe("bodies", function()
    it("Content-Length request body", function()
      local json = echo_of(client:post("/echo/b", { body = "hello world" }))
      assert.equal("hello world", json.body)
      assert.equal("11", json.headers["content-length"])
    end)

    it("chunked request body", function()
      local json = echo_of(client:post("/echo/b",
                             { chunks = { "hel", "lo ", "chunked" } }))
      assert.equal("hello chunked", json.body)
    end)

    it("20 MB request body, Content-Length", function()
      local body = pattern_bytes(20 * MB - 7)
      local json = echo_of(client:post("/echo/big", { body = body }))
      assert.equal(#body, json.body_size)
      assert.equal(sha1_of(body), json.body_sha1)
    end)

    it("20 MB request body, chunked", function()
      local chunk = pattern_bytes(MB + 3)
      local chunks = {}
      for i = 1, 20 do chunks[i] = chunk end
      local json = echo_of(client:post("/echo/big", { chunks = chunks }))
      assert.equal(20 * (MB + 3), json.body_size)
      assert.equal(sha1_of(table.concat(chunks)), json.body_sha1)
    end)

    it("20 MB response body, Content-Length", function()
      local res = assert(client:get("/echo/bytes/" .. 20 * MB))
      local body = assert.res_status(200, res)
      assert.equal(20 * MB, #body)
      assert.equal(pattern_bytes(20 * MB), body)
    end)

    it("20 MB response body, chunked", function()
      local res = assert(client:get("/echo/chunked-bytes/" .. 20 * MB))
      local body = assert.res_status(200, res)
      assert.equal(20 * MB, #body)
      assert.equal(pattern_bytes(20 * MB), body)
    end)

    it("streamed chunked response", function()
      local res = assert(client:get("/echo/stream/5"))
      local body = assert.res_status(200, res)
      local n = 0
      for line in body:gmatch("[^\n]+") do
        assert.equal(n, helpers.json_decode(line).id)
        n = n + 1
      end
      assert.equal(5, n)
    end)

    it("HEAD has no body, 204 has no body", function()
      local res = assert(client:head("/echo/bytes/100"))
      assert.res_status(200, res)
      assert.equal("", res.body)
      res = assert(client:get("/echo/status/204"))
      assert.res_status(204, res)
      -- the connection is still usable
      assert.res_status(200, assert(client:get("/echo/after")))
    end)

    it("upstream error statuses are passed through", function()
      local res = assert(client:get("/echo/status/503"))
      local body = assert.res_status(503, res)
      assert.equal(503, helpers.json_decode(body).status)
    end)
  end)

  describe("connections", function()
    it("client keepalive: several requests on one connection", function()
      local raw = assert(helpers.raw_connect(gw.proxy_port))
      for i = 1, 3 do
        assert(raw:send(fmt("GET /echo/ka%d HTTP/1.1\r\nHost: x\r\n\r\n", i)))
        local res = assert(raw:read_response())
        assert.equal(200, res.status)
        assert.equal("/ka" .. i, helpers.json_decode(res.body).path)
      end
      raw:close()
    end)

    it("HTTP/1.0 without keep-alive is closed after the response",
       function()
      local raw = assert(helpers.raw_connect(gw.proxy_port))
      assert(raw:send("GET /echo/old HTTP/1.0\r\nHost: x\r\n\r\n"))
      local res = assert(raw:read_response())
      assert.equal(200, res.status)
      assert.is_true((raw:wait_closed(5)))
      raw:close()
    end)

    it("Connection: close is honoured", function()
      local raw = assert(helpers.raw_connect(gw.proxy_port))
      assert(raw:send("GET /echo/c HTTP/1.1\r\nHost: x\r\n" ..
                      "Connection: close\r\n\r\n"))
      local res = assert(raw:read_response())
      assert.equal(200, res.status)
      assert.is_true((raw:wait_closed(5)))
      raw:close()
    end)

    it("pipelined requests are answered in order", function()
      local raw = assert(helpers.raw_connect(gw.proxy_port))
      local reqs = {}
      for i = 1, 5 do
        reqs[i] = fmt("GET /echo/pipe%d HTTP/1.1\r\nHost: x\r\n\r\n", i)
      end
      reqs[6] = "POST /echo/pipe6 HTTP/1.1\r\nHost: x\r\n" ..
                "Content-Length: 3\r\n\r\nabc"
      assert(raw:send(table.concat(reqs)))
      for i = 1, 6 do
        local res = assert(raw:read_response())
        assert.equal(200, res.status)
        local json = helpers.json_decode(res.body)
        assert.equal("/pipe" .. i, json.path)
        if i == 6 then
          assert.equal("abc", json.body)
        end
      end
      raw:close()
    end)

    it("upstream connections are kept alive", function()
      local a = echo_of(client:get("/echo/up1"))
      local b = echo_of(client:get("/echo/up2"))
      local other = helpers.proxy_client(gw)
      local c = echo_of(other:get("/echo/up3"))
      other:close()
      assert.equal(a.connection_id, b.connection_id)
      assert.equal(a.connection_id, c.connection_id)
    end)

    it("an upstream that closes after its response is handled", function()
      echo_of(client:get("/echo/close"))
      echo_of(client:get("/echo/after-close"))
    end)

    it("tunnels a WebSocket upgrade", function()
      local raw = assert(helpers.raw_connect(gw.proxy_port))
      assert(raw:send("GET /ws/chat HTTP/1.1\r\nHost: x\r\n" ..
                      "Upgrade: websocket\r\nConnection: Upgrade\r\n" ..
                      "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n" ..
                      "Sec-WebSocket-Version: 13\r\n\r\n"))
      local res = assert(raw:read_response())
      assert.equal(101, res.status)
      assert.equal("websocket", res.headers["upgrade"]:lower())
      assert.equal("s3pPLMBiTxaQ9kYGzzhZRbK+xOo=",
                   res.headers["sec-websocket-accept"])
      local msg = "\129\5hello\0\255binary"
      assert(raw:send(msg))
      assert.equal(msg, raw:receive(#msg))
      assert(raw:send("second"))
      assert.equal("second", raw:receive(6))
      raw:close()
      -- the upstream saw the upgrade headers
      local seen
      for _, r in ipairs(mock.requests()) do
        if r.path == "/chat" then seen = r end
      end
      assert.is_table(seen)
      assert.equal("websocket", seen.headers.upgrade)
    end)
  end)
end)
