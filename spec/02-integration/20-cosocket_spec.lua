-- ngx.socket.tcp (luagate.socket over runtime/src/cosocket.c) through the
-- real binary, with the io-cosocket test plugin against the mock upstream.
local helpers = require "spec.helpers"


describe("cosockets", function()
  local s = helpers.io_suite("io-cosocket", "mock")

  local function call(mode)
    return s.call("mode=" .. mode)
  end

  it("connects, sends a table, reads lines, receiveuntil and sizes", function()
    local d = call("echo")
    assert.is_nil(d.err)
    assert.equal("HTTP/1.1 200 OK", d.first.status_line)
    assert.is_true(d.first.body_len > 10)
    assert.equal(#"GET /request HTTP/1.1\r\nHost: mock\r\n\r\n", d.first.sent)
    assert.is_true(d.first.keepalive)
  end)

  it("reuses kept-alive connections (getreusedtimes)", function()
    local d = call("echo")
    assert.is_true(d.second.reused > 0)
    assert.equal(d.first.conn_id, d.second.conn_id)
    -- across requests of the same worker too
    local a = call("reuse")
    local b = call("reuse")
    assert.is_true(b.reused > a.reused or b.reused > 0)
    assert.equal(a.conn_id, b.conn_id)
  end)

  it("reports a refused connection at once", function()
    local d = call("refused")
    assert.is_nil(d.ok)
    assert.equal("connection refused", d.err)
    assert.is_true(d.elapsed < 0.5)
  end)

  it("reports a name that does not resolve", function()
    local d = call("unresolvable")
    assert.is_nil(d.ok)
    assert.equal("host not found", d.err)
  end)

  it("times out a read without blocking the worker, stays usable",
     function()
    local t0 = helpers.gettime()
    local d = call("timeout")
    assert.is_nil(d.data)
    assert.equal("timeout", d.err)
    assert.equal("", d.partial)
    assert.is_true(d.elapsed >= 0.15 and d.elapsed < 0.8, tostring(d.elapsed))
    assert.equal("HTTP/1.1 200 OK", d.after)
    assert.is_true(helpers.gettime() - t0 < 3)
  end)

  it("the worker serves others while a cosocket waits", function()
    local slow = helpers.raw_connect(s.gw.proxy_port)
    assert(slow:send("GET /io?mode=timeout HTTP/1.1\r\nHost: x\r\n\r\n"))
    local t0 = helpers.gettime()
    local d = call("refused")
    assert.equal("connection refused", d.err)
    assert.is_true(helpers.gettime() - t0 < 0.2)
    local res = slow:read_response("GET")
    assert.res_status(200, res)
    slow:close()
  end)

  it("reads until closed (*a) and reports closed with partial data", function()
    local d = call("closed")
    assert.is_nil(d.err)
    assert.equal("HTTP/1.1 200 OK", d.all_head)
    assert.is_true(d.all_len > 100)
    assert.is_nil(d.again)
    assert.equal("closed", d.again_err)
    assert.is_nil(d.size_data)
    assert.equal("closed", d.size_err)
    assert.is_true(d.size_partial_len > 100)
  end)

  it("receiveuntil with sizes, receiveany, inclusive, close, ssl",
     function()
    local d = call("patterns")
    assert.equal("HTTP/1.1 200 OK", d.status)
    assert.is_nil(d.reader_err)
    assert.is_true(d.chunks_max <= 7)
    assert.matches("Transfer%-Encoding: chunked", d.head)
    assert.is_nil(d.head:find("\r\n\r\n", 1, true))
    assert.matches("^%x+$", d.size_line)
    assert.equal(5, #d.any)
    assert.matches("\n$", d.inclusive)
    assert.equal("closed", d.close_again[2])
    assert.equal("closed", d.ssl[2]) -- sslhandshake on a closed socket
  end)

  it("closes the sockets a request forgot", function()
    s.mock.clear()
    local d = call("leak")
    assert.is_number(d.pool)
    -- the mock sees the connection end: a new request on it would fail;
    -- simply check the worker is fine and nothing went to the pool
    local p = call("pool")
    assert.equal(d.pool, p.pool)
  end)

  it("survives a client that leaves while the plugin waits", function()
    local pids = helpers.worker_pids(s.gw)
    for _ = 1, 3 do
      local c = helpers.raw_connect(s.gw.proxy_port)
      assert(c:send("GET /io?mode=timeout HTTP/1.1\r\nHost: x\r\n\r\n"))
      helpers.sleep(0.05)
      c:close()
    end
    helpers.sleep(0.5) -- the read timeouts fire after the requests ended
    assert.equal("connection refused", call("refused").err)
    assert.same(pids, helpers.worker_pids(s.gw))
  end)
end)


describe("cosockets over TLS", function()
  local s = helpers.io_suite("io-cosocket", "tls")

  local function call(mode)
    return s.call("mode=" .. mode)
  end

  it("sslhandshake verifies, sends SNI, and pools TLS connections by " ..
     "identity", function()
    local d = call("tls")
    assert.equal("cdata", d.handshake1) -- a session
    assert.equal("cdata", d.handshake2)
    assert.equal("localhost", d.sni)
    assert.matches("^https://", d.url)
    -- the second socket got the first one's connection (its fresh TCP
    -- connection was dropped for it)
    assert.equal(0, d.reused1)
    assert.is_true(d.reused2 > 0)
    assert.equal(d.conn1, d.conn2)
    -- a plain connect and another server name never get it
    assert.equal(0, d.plain_reused)
    assert.is_true(d.ip_handshake) -- reused_session false: true
    assert.equal(0, d.ip_reused)
  end)

  it("resumes TLS sessions (the one given back, else the worker's cache " ..
     "for the name)", function()
    local d = call("tls_session")
    assert.equal("cdata", d.second)
    assert.is_true(d.resumed)
  end)

  it("reports verification failures with lua-nginx-module's texts", function()
    local d = call("tls_fail")
    assert.is_nil(d.mismatch.ok)
    assert.equal("certificate host mismatch", d.mismatch.err)
    -- the failed socket is closed
    assert.equal("closed", d.mismatch.send_after)
    assert.is_true(d.no_verify.ok)
    assert.is_true(d.right_name.ok)
    assert.is_nil(d.plain.ok)
    assert.equal("timeout", d.plain.err)
  end)

  it("refuses a server the trusted certificates do not cover", function()
    -- without --lua-ssl-trusted-certificate: the system store, which does
    -- not know the test CA
    local gw2 = assert(helpers.start_luagate({
      config = s.config,
      args = { "--plugins-dir", helpers.root .. "/spec/fixtures/plugins" },
    }))
    local res = assert(helpers.request_once(gw2.proxy_port,
                                            { path = "/io?mode=tls_fail" }))
    helpers.stop_luagate(gw2)
    local d = helpers.json_decode(assert.res_status(200, res))
    assert.equal("20: unable to get local issuer certificate", d.right_name.err)
    assert.is_true(d.no_verify.ok)
  end)

  it("refuses an unreadable --lua-ssl-trusted-certificate at start", function()
    local rc, _, err = helpers.luagate_exec({ "check", "-c", s.gw.config_path,
      "--lua-ssl-trusted-certificate", "/nonexistent/ca.pem" })
    assert.equal(2, rc) -- a usage error
    assert.matches("cannot read '/nonexistent/ca.pem'", err, 1, true)
  end)
end)
