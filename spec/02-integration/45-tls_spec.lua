-- HTTPS listeners: the default certificate, certificates chosen by SNI
-- (exact, wildcards, the "*" catch-all) and swapped on reload, protocol
-- versions and suites, session resumption across workers, plain HTTP on a
-- TLS port and TLS on a plain one, route protocols and their redirects.
-- Clients are curl, openssl s_client and python's ssl module.
local helpers = require "spec.helpers"
local tls = require("spec.tls_fixtures").get()

local fmt = string.format

local q = helpers.shell_quote

-- curl against the TLS port; returns status (number), body, curl's exit
-- code, stderr. opts: sni (name resolved to 127.0.0.1), path, ca (false:
-- -k), extra (string)
local function curl(port, opts)
  opts = opts or {}
  local host = opts.sni or "127.0.0.1"
  local cmd = fmt("curl -sS --max-time 10 %s %s -w '\\n%%{http_code}' %s",
                  opts.ca == false and "-k" or "--cacert " .. q(opts.ca or tls.ca.cert),
                  opts.sni and fmt("--resolve %s:%d:127.0.0.1", host, port) or "",
                  q(fmt("%s://%s:%d%s", opts.scheme or "https", host, port,
                        opts.path or "/echo")))
  if opts.extra then
    cmd = cmd .. " " .. opts.extra
  end
  local rc, out, err = helpers.execute(cmd)
  local body, code = out:match("^(.*)\n(%d+)$")
  return tonumber(code), body, rc, err
end

-- the subject CN of the certificate served for an SNI (nil: no handshake)
local function served_cn(port, sni, extra)
  local rc, out = helpers.execute(fmt(
    "echo | timeout 10 openssl s_client -connect 127.0.0.1:%d %s %s 2>/dev/null " ..
    "| openssl x509 -noout -subject", port,
    sni and ("-servername " .. q(sni)) or "-noservername", extra or ""))
  if rc ~= 0 then
    return nil
  end
  return out:match("CN%s*=%s*([^,\n]+)")
end

local function cert_entity(name, snis)
  local c = tls.certs[name]
  local list = {}
  for i, s in ipairs(snis) do
    list[i] = { name = s }
  end
  return { cert = c.cert_pem, key = c.key_pem, snis = list }
end

describe("TLS listeners", function()
  local mock, gw, tls_port

  local function config(certificates)
    return {
      _format_version = "3.0",
      certificates = certificates,
      services = {
        { name = "echo", url = fmt("http://127.0.0.1:%d", mock.port),
          routes = {
            { name = "echo", paths = { "/echo" } },
            { name = "secure", paths = { "/secure" }, protocols = { "https" } },
            { name = "moved", paths = { "/moved" }, protocols = { "https" },
              https_redirect_status_code = 308 },
            { name = "plain", paths = { "/plain" }, protocols = { "http" } },
            { name = "bysni", paths = { "/bysni" }, protocols = { "https" },
              snis = { "example.test", "*.wild.test" } },
          } },
      },
    }
  end

  lazy_setup(function()
    mock = helpers.mock_upstream()
    tls_port = helpers.get_free_port()
    local err
    gw, err = helpers.start_luagate({
      workers = 2,
      config = config({
        cert_entity("example.test", { "example.test" }),
        cert_entity("wild.test", { "*.wild.test" }),
        cert_entity("other.test", { "other.*" }),
      }),
      args = { "--listen", fmt("127.0.0.1:%d ssl", tls_port),
               "--ssl-cert", tls.certs.localhost.chain,
               "--ssl-key", tls.certs.localhost.key,
               "--client-header-timeout", "1000" },
    })
    assert(gw, err)
    helpers.wait_until(function()
      return helpers.port_open(tls_port)
    end, 10)
  end)

  lazy_teardown(function()
    helpers.stop_luagate(gw)
    if mock then mock.stop() end
  end)

  describe("certificates", function()
    it("serves the default certificate, verified by the client", function()
      local status, body, rc, err = curl(tls_port)
      assert.equal(0, rc, err)
      assert.equal(200, status)
      local echo = helpers.json_decode(body)
      assert.equal("https", echo.headers["x-forwarded-proto"])
      assert.equal(tostring(tls_port), echo.headers["x-forwarded-port"])
    end)

    it("chooses the certificate by exact SNI", function()
      assert.equal("example.test", served_cn(tls_port, "example.test"))
      local status, _, rc, err = curl(tls_port, { sni = "example.test" })
      assert.equal(0, rc, err)
      assert.equal(200, status)
    end)

    it("matches SNI case-insensitively", function()
      assert.equal("example.test", served_cn(tls_port, "EXAMPLE.Test"))
    end)

    it("chooses a leading wildcard for one label only", function()
      assert.equal("*.wild.test", served_cn(tls_port, "api.wild.test"))
      local status, _, rc, err = curl(tls_port, { sni = "api.wild.test" })
      assert.equal(0, rc, err)
      assert.equal(200, status)
      assert.equal("localhost", served_cn(tls_port, "a.b.wild.test"))
    end)

    it("chooses a trailing wildcard", function()
      assert.equal("other.test", served_cn(tls_port, "other.test"))
    end)

    it("falls back to the default certificate for unknown names and no SNI",
       function()
      assert.equal("localhost", served_cn(tls_port, "unknown.test"))
      assert.equal("localhost", served_cn(tls_port, nil))
    end)

    it("swaps certificates on reload, and the '*' SNI replaces the default",
       function()
      assert.truthy(helpers.reload_luagate(gw, config({
        cert_entity("other.test", { "example.test" }),
        cert_entity("wild.test", { "*" }),
      })))
      helpers.wait_until(function()
        return served_cn(tls_port, "example.test") == "other.test"
      end, 10)
      assert.equal("*.wild.test", served_cn(tls_port, "unknown.test"))
      assert.equal("*.wild.test", served_cn(tls_port, nil))
      -- and back
      assert.truthy(helpers.reload_luagate(gw, config({
        cert_entity("example.test", { "example.test" }),
        cert_entity("wild.test", { "*.wild.test" }),
        cert_entity("other.test", { "other.*" }),
      })))
      helpers.wait_until(function()
        return served_cn(tls_port, "example.test") == "example.test"
      end, 10)
      assert.equal("localhost", served_cn(tls_port, "unknown.test"))
    end)
  end)

  describe("protocols", function()
    local function handshake(flags)
      local rc, out = helpers.execute(fmt(
        "echo | timeout 10 openssl s_client -connect 127.0.0.1:%d %s 2>&1",
        tls_port, flags))
      return rc == 0 and out:find("Cipher is ", 1, true) ~= nil and
             not out:find("Cipher is (NONE)", 1, true), out
    end

    it("speaks TLS 1.2 and 1.3", function()
      assert.truthy(handshake("-tls1_3"))
      assert.truthy(handshake("-tls1_2"))
    end)

    it("refuses TLS 1.0 and 1.1 even to a client that offers them", function()
      assert.falsy(handshake("-tls1_1 -cipher 'DEFAULT:@SECLEVEL=0'"))
      assert.falsy(handshake("-tls1 -cipher 'DEFAULT:@SECLEVEL=0'"))
    end)

    it("refuses suites without forward secrecy or AEAD", function()
      assert.falsy(handshake("-tls1_2 -cipher 'AES128-SHA:AES256-SHA256'"))
      assert.falsy(handshake("-tls1_2 -cipher 'ECDHE-RSA-AES128-SHA:ECDHE-ECDSA-AES128-SHA'"))
      assert.truthy(handshake("-tls1_2 -cipher 'ECDHE-ECDSA-AES128-GCM-SHA256'"))
    end)

    it("selects http/1.1 by ALPN and does not claim h2", function()
      local _, out = handshake("-alpn h2,http/1.1")
      assert.matches("ALPN protocol: http/1.1", out, 1, true)
      local ok, out2 = handshake("-alpn h2")
      assert.truthy(ok)
      assert.matches("No ALPN negotiated", out2, 1, true)
    end)

    it("resumes sessions with tickets on any worker", function()
      local sess = helpers.make_prefix("tls-sess") .. "/sess.pem"
      for _, v in ipairs({ "-tls1_2", "-tls1_3" }) do
        local rc = helpers.execute(fmt(
          "printf 'GET /echo HTTP/1.1\\r\\nHost: x\\r\\nConnection: close\\r\\n\\r\\n' | " ..
          "timeout 10 openssl s_client -quiet -connect 127.0.0.1:%d %s -CAfile %s " ..
          "-sess_out %s", tls_port, v, q(tls.ca.cert), q(sess)))
        assert.equal(0, rc)
        -- two workers: eight new connections land on both
        for _ = 1, 8 do
          local _, out = helpers.execute(fmt(
            "echo | timeout 10 openssl s_client -connect 127.0.0.1:%d %s -CAfile %s " ..
            "-sess_in %s 2>&1", tls_port, v, q(tls.ca.cert), q(sess)))
          assert.matches("Reused, TLSv1", out, 1, true)
        end
      end
    end)
  end)

  describe("requests", function()
    it("streams large bodies both ways", function()
      local status, body, rc, err = curl(tls_port, { path = "/echo/bytes/3000000" })
      assert.equal(0, rc, err)
      assert.equal(200, status)
      assert.equal(3000000, #body)
      local file = helpers.make_prefix("tls-body") .. "/body"
      helpers.write_file(file, string.rep("0123456789abcdef", 150000))
      local status2, body2, rc2, err2 = curl(tls_port, {
        extra = "-X POST -H 'Content-Type: application/octet-stream' --data-binary @" .. q(file) })
      assert.equal(0, rc2, err2)
      assert.equal(200, status2)
      assert.equal(2400000, helpers.json_decode(body2).body_size)
    end)

    it("serves pipelined and keepalive requests on one connection", function()
      local script = [[
import socket, ssl, sys
ctx = ssl.create_default_context(cafile=sys.argv[2])
s = ctx.wrap_socket(socket.create_connection(("127.0.0.1", int(sys.argv[1]))),
                    server_hostname="localhost")
s.sendall(b"GET /echo/1 HTTP/1.1\r\nHost: a\r\n\r\nGET /echo/2 HTTP/1.1\r\nHost: a\r\n\r\n"
          b"GET /echo/3 HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n")
data = b""
while True:
    k = s.recv(65536)
    if not k:
        break
    data += k
print(data.count(b"HTTP/1.1 200 "), data.count(b'"x-forwarded-path": "/echo/'))
]]
      local file = helpers.make_prefix("tls-pipe") .. "/pipe.py"
      helpers.write_file(file, script)
      local rc, out, err = helpers.execute(fmt("timeout 20 python3 %s %d %s", q(file),
                                               tls_port, q(tls.ca.cert)))
      assert.equal(0, rc, err)
      assert.equal("3 3", out:match("^(%d+ %d+)"))
    end)

    it("answers plain HTTP on the TLS port with 400, as nginx does", function()
      local status, body = curl(tls_port, { scheme = "http" })
      assert.equal(400, status)
      assert.equal("The plain HTTP request was sent to HTTPS port",
                   helpers.json_decode(body).message)
    end)

    it("closes a TLS handshake on the plain port, and serves the next client",
       function()
      local rc, out = helpers.execute(fmt(
        "echo | timeout 10 openssl s_client -connect 127.0.0.1:%d 2>&1", gw.proxy_port))
      assert.not_equal(0, rc)
      assert.falsy(out:find("Cipher is ECDHE", 1, true))
      local status = curl(gw.proxy_port, { scheme = "http" })
      assert.equal(200, status)
    end)

    it("closes a connection that does not finish its handshake in time", function()
      local sock = assert(helpers.raw_connect(tls_port))
      local t0 = helpers.gettime()
      local res = sock:read_response()
      assert.is_nil(res)
      local waited = helpers.gettime() - t0
      assert.truthy(waited >= 0.8 and waited < 5, "closed after " .. waited .. " s")
      assert.equal(200, (curl(tls_port)))
    end)

    it("closes garbage on the TLS port without an answer", function()
      local sock = assert(helpers.raw_connect(tls_port))
      assert(sock:send("\1\2\3\4garbage\r\n\r\n"))
      assert.is_nil((sock:read_response()))
      assert.equal(200, (curl(tls_port)))
    end)
  end)

  describe("route protocols", function()
    it("answers http on an https-only route with Kong's 426", function()
      local res = assert(helpers.request_once(gw.proxy_port, { path = "/secure/x" }))
      local body = assert.res_status(426, res)
      assert.same({ message = "Please use HTTPS protocol" }, helpers.json_decode(body))
      assert.equal("TLS/1.2, HTTP/1.1", res.headers["upgrade"])
      assert.equal("Upgrade", res.headers["connection"])
    end)

    it("redirects with https_redirect_status_code to the same host and URI", function()
      local res = assert(helpers.request_once(gw.proxy_port, {
        path = "/moved/a?b=1", headers = { Host = "api.example.test:8000" } }))
      assert.res_status(308, res)
      assert.equal("https://api.example.test/moved/a?b=1", res.headers["location"])
    end)

    it("serves an https-only route over TLS", function()
      local status, body = curl(tls_port, { path = "/secure/x" })
      assert.equal(200, status)
      assert.equal("/x", helpers.json_decode(body).path) -- strip_path
    end)

    it("matches routes by the handshake's SNI, wildcards included", function()
      assert.equal(200, (curl(tls_port, { path = "/bysni", sni = "example.test" })))
      assert.equal(200, (curl(tls_port, { path = "/bysni", sni = "api.wild.test" })))
      assert.equal(404, (curl(tls_port, { path = "/bysni", sni = "other.test" })))
      assert.equal(404, (curl(tls_port, { path = "/bysni" }))) -- an IP: no SNI
      -- the Host header does not stand in for the SNI
      assert.equal(404, (curl(tls_port, { path = "/bysni", extra = "-H 'Host: example.test'" })))
    end)

    it("does not match an http-only route over TLS", function()
      assert.equal(404, (curl(tls_port, { path = "/plain" })))
      local res = assert(helpers.request_once(gw.proxy_port, { path = "/plain" }))
      assert.res_status(200, res)
    end)
  end)
end)

describe("TLS listener set-up", function()
  it("uses a self-signed certificate for localhost when none is given", function()
    local port = helpers.get_free_port()
    local gw = assert(helpers.start_luagate({
      args = { "--listen", fmt("127.0.0.1:%d ssl", port) },
    }))
    finally(function() helpers.stop_luagate(gw) end)
    helpers.wait_until(function() return helpers.port_open(port) end, 10)
    assert.equal("localhost", served_cn(port, "localhost"))
    local _, _, rc = curl(port, { path = "/", ca = tls.ca.cert })
    assert.equal(60, rc) -- curl: the peer's certificate is not trusted
    assert.equal(404, (curl(port, { path = "/", ca = false })))
    assert.matches("self-signed certificate",
                   helpers.read_file(gw.error_log) .. helpers.read_file(gw.stderr), 1, true)
  end)

  it("refuses to start with a certificate file it cannot load", function()
    local rc, _, err = helpers.luagate_exec({ "run", "-c", helpers.make_config_file(
      { _format_version = "3.0" }, helpers.make_prefix("tls-bad")),
      "--listen", "127.0.0.1:0 ssl", "--admin-listen", "off",
      "--ssl-cert", "/nonexistent.pem", "--ssl-key", tls.certs.localhost.key })
    assert.not_equal(0, rc)
    assert.matches("--ssl-cert /nonexistent.pem: could not load the certificate", err, 1, true)
    rc, _, err = helpers.luagate_exec({ "run", "-c", "/dev/null", "--listen",
      "127.0.0.1:0 ssl", "--ssl-cert", tls.certs.localhost.cert })
    assert.not_equal(0, rc)
    assert.matches("--ssl-cert and --ssl-key go together", err, 1, true)
  end)

  it("refuses a key that does not match its certificate, naming the entity", function()
    local dir = helpers.make_prefix("tls-check")
    local path = helpers.make_config_file({
      _format_version = "3.0",
      certificates = { { id = "7d1c3e34-6f58-4a44-8a4f-3a3c9d7f2a10",
                         cert = tls.certs["example.test"].cert_pem,
                         key = tls.certs["other.test"].key_pem,
                         snis = { { name = "example.test" } } } },
    }, dir)
    local rc, _, err = helpers.luagate_exec({ "check", "-c", path })
    assert.equal(1, rc)
    assert.matches("certificates[1] (id 7d1c3e34-6f58-4a44-8a4f-3a3c9d7f2a10): " ..
                   "the key does not match cert", err, 1, true)
  end)

  it("refuses a certificate that is not one", function()
    local dir = helpers.make_prefix("tls-check")
    local path = helpers.make_config_file({
      _format_version = "3.0",
      certificates = { { cert = "-----BEGIN CERTIFICATE-----\nnot base64\n" ..
                                "-----END CERTIFICATE-----\n",
                         key = tls.certs["other.test"].key_pem } },
    }, dir)
    local rc, _, err = helpers.luagate_exec({ "check", "-c", path })
    assert.equal(1, rc)
    assert.matches("certificates%[1%] %(id [%x-]+%): invalid cert: bad base64 decode", err)
  end)

  it("refuses the ssl and http2 flags on the admin listener", function()
    local rc, _, err = helpers.luagate_exec({ "run", "-c", "/dev/null",
      "--admin-listen", "127.0.0.1:0 ssl" })
    assert.equal(2, rc)
    assert.matches("'ssl' is not supported on the admin listener", err, 1,
                   true)
    rc, _, err = helpers.luagate_exec({ "run", "-c", "/dev/null",
      "--admin-listen", "127.0.0.1:0 http2" })
    assert.equal(2, rc)
    assert.matches("'http2' is not supported on the admin listener", err, 1,
                   true)
  end)
end)
