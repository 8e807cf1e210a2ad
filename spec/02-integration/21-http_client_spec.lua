-- luagate.http through the real binary, with the io-http test plugin
-- against the mock upstream.
local helpers = require "spec.helpers"


describe("http client", function()
  local s = helpers.io_suite("io-http", "mock")
  local call = s.call

  it("GETs with headers and keeps the connection alive", function()
    local d = call("mode=get")
    assert.equal(200, d.a.status)
    assert.equal("application/json", d.a.content_type)
    assert.equal("yes", d.a.echo.headers["x-test"])
    assert.equal("1", d.a.echo.query.x)
    assert.equal("GET", d.a.echo.method)
    assert.equal(200, d.b.status)
    assert.equal(d.a.conn_id, d.b.conn_id)
    assert.is_true(d.b.reused)
  end)

  it("POSTs a body with Content-Length", function()
    local d = call("mode=post")
    assert.equal(200, d.a.status)
    assert.equal("POST", d.a.echo.method)
    assert.equal("hello body", d.a.echo.body)
    assert.equal("10", d.a.echo.headers["content-length"])
  end)

  it("returns non-2xx statuses and empty 204 bodies", function()
    assert.equal(503, call("mode=status&code=503").a.status)
    local d = call("mode=status&code=204")
    assert.equal(204, d.a.status)
    assert.equal(0, d.a.body_len)
  end)

  it("reads chunked responses", function()
    local d = call("mode=chunked")
    assert.equal(200, d.a.status)
    assert.equal("chunked", d.te)
    assert.equal(5, d.lines)
    assert.is_nil(d.big_err)
    assert.equal(200000, d.big_len)
  end)

  it("streams a body through body_reader", function()
    local d = call("mode=stream")
    assert.is_nil(d.err)
    assert.is_nil(d.read_err)
    assert.is_true(d.body_nil)
    assert.equal(300000, d.len)
    assert.is_true(d.chunks > 1)
  end)

  it("times out", function()
    local d = call("mode=timeout")
    assert.matches("timeout", d.a.err)
    assert.is_true(d.elapsed < 1, tostring(d.elapsed))
  end)

  it("reports refused connections", function()
    local d = call("mode=refused")
    assert.matches("connection refused", d.a.err)
  end)

  it("handles Connection: close from either side", function()
    local d = call("mode=close")
    assert.equal(200, d.a.status)
    assert.equal(200, d.b.status)
    assert.equal("close", d.b.echo.headers.connection)
  end)

  it("runs requests in parallel: 3 x /delay/0.3 in < 0.6 s", function()
    local t0 = helpers.gettime()
    local d = call("mode=multi&n=3&delay=0.3")
    local wall = helpers.gettime() - t0
    assert.equal(3, #d.results)
    for i = 1, 3 do
      assert.equal(200, d.results[i].status)
      assert.equal(tostring(i), d.results[i].echo.query.i)
    end
    assert.is_true(d.elapsed >= 0.29, tostring(d.elapsed))
    assert.is_true(d.elapsed < 0.6, tostring(d.elapsed))
    assert.is_true(wall < 0.8, tostring(wall))
  end)

  it("parallel requests fail independently", function()
    local d = call("mode=multi_mixed")
    assert.equal(200, d.results[1].status)
    assert.matches("connection refused", d.results[2].err)
    assert.matches("timeout", d.results[3].err)
    assert.equal(200, d.results[4].status)
    assert.is_true(d.elapsed < 1, tostring(d.elapsed))
  end)

  it("\"any\" returns the first to finish and aborts the others", function()
    local d = call("mode=any")
    assert.equal(2, d.index)
    assert.equal(200, d.a.status)
    assert.is_true(d.elapsed < 0.6, tostring(d.elapsed))
    -- the worker is fine afterwards
    assert.equal(200, call("mode=get").a.status)
  end)

  it("rejects bad urls and unknown schemes", function()
    local d = call("mode=bad")
    assert.matches("bad url", d.errs[1])
    assert.equal("unsupported scheme: ftp", d.errs[2])
  end)
end)


describe("http client over TLS", function()
  local s = helpers.io_suite("io-http", "tls")

  local function call(mode)
    return s.call("mode=" .. mode)
  end

  it("requests https URLs, verifying the server, keeping connections",
     function()
    local d = call("tls")
    assert.is_nil(d.a.err)
    assert.equal(200, d.a.status)
    assert.equal("/tls", d.a.echo.path)
    assert.equal("1", d.a.echo.query.x)
    assert.equal("tls", d.a.echo.headers["x-test"])
    assert.equal("localhost", d.a.echo.tls_sni)
    -- the default port of the scheme is not in Host; this one is
    assert.equal("localhost:" .. s.up.port, d.a.echo.headers.host)
    -- kept alive and reused
    assert.is_true(d.b.reused)
    assert.equal(d.a.conn_id, d.b.conn_id)
    assert.equal(200000, d.post.echo.body_size)
    -- by IP: no SNI, and the IP address is what is verified
    assert.equal(200, d.ip.status)
    assert.equal(require("cjson").null, d.ip.echo.tls_sni)
    -- ssl_server_name: another identity, another connection
    assert.equal("upstream.test", d.sni.echo.tls_sni)
    assert.not_equal(d.a.conn_id, d.sni.conn_id)
  end)

  it("fails a request whose certificate does not verify", function()
    local d = call("tls_fail")
    assert.equal("TLS handshake failed: certificate host mismatch",
                 d.mismatch.err)
    assert.equal(200, d.no_verify.status)
    assert.equal(200, d.right_name.status)
    assert.equal("example.test", d.right_name.echo.tls_sni)
  end)

  it("resty.http: request_uri and connect with https", function()
    local d = call("resty_tls")
    assert.is_nil(d.a.err)
    assert.equal(200, d.a.status)
    assert.equal("b", d.a.echo.query.a)
    assert.equal("localhost", d.a.echo.tls_sni)
    assert.equal("certificate host mismatch", d.fail.err)
    assert.equal(200, d.no_verify.status)
    assert.equal(200, d.steps.status)
    assert.equal("/steps", d.steps.echo.path)
    assert.equal("upstream.test", d.steps.echo.tls_sni)
  end)
end)
