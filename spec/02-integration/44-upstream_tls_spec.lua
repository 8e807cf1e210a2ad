-- Upstream TLS: services with protocol https. The handshake, SNI,
-- certificate verification (tls_verify, tls_verify_depth, ca_certificates),
-- client certificates (mutual TLS), keepalive pools per TLS identity, and
-- retries when a target's certificate is refused. Real luagate, real TLS
-- mock upstreams (spec/fixtures/mock_upstream.py with --tls-cert).
local helpers = require "spec.helpers"

local fmt = string.format
local ngx_sleep = require("socket").sleep

local CA_ID = "6f1b2c1e-8c1a-4d51-9d7e-0a1b2c3d4e01"
local ROGUE_ID = "6f1b2c1e-8c1a-4d51-9d7e-0a1b2c3d4e02"
local ALICE_ID = "6f1b2c1e-8c1a-4d51-9d7e-0a1b2c3d4e03"
local BOB_ID = "6f1b2c1e-8c1a-4d51-9d7e-0a1b2c3d4e04"


local function get(gw, path)
  local res = assert(helpers.request_once(gw.proxy_port, { path = path }))
  return res, res.body
end

local function echo_of(gw, path)
  local res = get(gw, path)
  local body = assert.res_status(200, res)
  return helpers.json_decode(body)
end

local function error_log(gw)
  return helpers.read_file(gw.error_log) or ""
end


describe("upstream TLS", function()
  local tls, up, other, mtls, gw

  lazy_setup(function()
    tls = require("spec.tls_fixtures").get()
    local cert = tls.certs.upstream
    -- CN upstream.test, SAN upstream.test, localhost, 127.0.0.1
    up = helpers.mock_upstream({ tls = { cert = cert.cert, key = cert.key } })
    -- SAN example.test only: "localhost" and 127.0.0.1 do not match
    local ex = tls.certs["example.test"]
    other = helpers.mock_upstream({ tls = { cert = ex.cert, key = ex.key } })
    -- asks for a client certificate signed by the client CA
    mtls = helpers.mock_upstream({ tls = { cert = cert.cert, key = cert.key,
                                           client_ca = tls.client_ca.cert } })

    local function svc(name, url, extra)
      local s = { name = name, url = url, connect_timeout = 2000,
                  read_timeout = 5000, retries = 0,
                  routes = { { name = name, paths = { "/" .. name } } } }
      for k, v in pairs(extra or {}) do s[k] = v end
      return s
    end
    local verify = { tls_verify = true, ca_certificates = { CA_ID } }
    gw = assert(helpers.start_luagate({
      config = {
        _format_version = "3.0",
        ca_certificates = {
          { id = CA_ID, cert = tls.ca.cert_pem },
          { id = ROGUE_ID, cert = tls.rogue_ca.cert_pem },
        },
        certificates = {
          { id = ALICE_ID, cert = tls.certs.alice.cert_pem,
            key = tls.certs.alice.key_pem },
          { id = BOB_ID, cert = tls.certs.bob.cert_pem,
            key = tls.certs.bob.key_pem },
        },
        upstreams = {
          { name = "tls-pool", targets = {
            { target = fmt("localhost:%d", other.port), weight = 100 },
            { target = fmt("localhost:%d", up.port), weight = 100 },
          } },
        },
        services = {
          svc("ip", fmt("https://127.0.0.1:%d", up.port)),
          svc("name", fmt("https://localhost:%d", up.port)),
          svc("verify-name", fmt("https://localhost:%d", up.port), verify),
          svc("verify-ip", fmt("https://127.0.0.1:%d", up.port), verify),
          svc("verify-system", fmt("https://localhost:%d", up.port),
              { tls_verify = true }),
          svc("verify-rogue", fmt("https://localhost:%d", up.port),
              { tls_verify = true, ca_certificates = { ROGUE_ID } }),
          svc("depth-0", fmt("https://localhost:%d", up.port),
              { tls_verify = true, tls_verify_depth = 0,
                ca_certificates = { CA_ID } }),
          svc("mismatch-name", fmt("https://localhost:%d", other.port), verify),
          svc("mismatch-ip", fmt("https://127.0.0.1:%d", other.port), verify),
          svc("no-verify-mismatch", fmt("https://localhost:%d", other.port)),
          svc("alice", fmt("https://localhost:%d", mtls.port),
              { client_certificate = { id = ALICE_ID } }),
          svc("bob", fmt("https://localhost:%d", mtls.port),
              { client_certificate = BOB_ID }),
          svc("no-client-cert", fmt("https://localhost:%d", mtls.port)),
          svc("retry", "https://tls-pool", { tls_verify = true,
              ca_certificates = { CA_ID }, retries = 2 }),
        },
      },
    }))
  end)

  lazy_teardown(function()
    helpers.stop_luagate(gw)
    up.stop()
    other.stop()
    mtls.stop()
  end)

  it("proxies to an https service (no verification by default)", function()
    local echo = echo_of(gw, "/ip/hello?x=1")
    assert.equal("/hello", echo.path) -- strip_path
    assert.equal("/ip/hello", echo.headers["x-forwarded-path"])
    assert.equal("1", echo.query.x)
    assert.matches("^https://", echo.url)
    -- an IP literal is never sent as SNI
    assert.equal(require("cjson").null, echo.tls_sni)
  end)

  it("sends the service host as SNI", function()
    assert.equal("localhost", echo_of(gw, "/name").tls_sni)
  end)

  it("keeps TLS connections alive and reuses them", function()
    local a = echo_of(gw, "/name/a")
    local b = echo_of(gw, "/name/b")
    assert.equal(a.connection_id, b.connection_id)
  end)

  it("resumes the TLS session on a new connection", function()
    local first = echo_of(gw, "/name/close") -- the mock closes after it
    local again = echo_of(gw, "/name/again")
    assert.not_equal(first.connection_id, again.connection_id)
    assert.is_true(again.tls_session_reused)
  end)

  it("streams large bodies both ways", function()
    local res = get(gw, "/name/bytes/300000")
    local body = assert.res_status(200, res)
    assert.equal(300000, #body)
    local pattern = "abcdefghijklmnopqrstuvwxyz0123456789"
    assert.equal(string.rep(pattern, 8334):sub(1, 300000), body)
    local payload = string.rep("0123456789abcdef", 65536) -- 1 MiB
    res = assert(helpers.request_once(gw.proxy_port, {
      method = "POST", path = "/name/upload", body = payload }))
    local echo = helpers.json_decode(assert.res_status(200, res))
    assert.equal(#payload, echo.body_size)
    assert.equal(payload, echo.body)
  end)

  describe("tls_verify", function()
    it("accepts a certificate from ca_certificates for the host name",
       function()
      assert.equal("localhost", echo_of(gw, "/verify-name").tls_sni)
    end)

    it("checks an IP literal against the certificate's IP addresses", function()
      local echo = echo_of(gw, "/verify-ip")
      assert.equal("/verify-ip", echo.headers["x-forwarded-path"])
    end)

    it("refuses a certificate the system store does not trust: 502 JSON",
       function()
      local res = get(gw, "/verify-system")
      local body = assert.res_status(502, res)
      assert.equal("An invalid response was received from the upstream server",
                   helpers.json_decode(body).message)
      helpers.wait_until(function()
        return error_log(gw):find("certificate verify failed: unable to get " ..
                                  "local issuer certificate", 1, true)
      end, 5)
    end)

    it("refuses a certificate another CA signed", function()
      local res = get(gw, "/verify-rogue")
      assert.res_status(502, res)
    end)

    it("tls_verify_depth counts intermediate CAs (OpenSSL): 0 accepts a " ..
       "certificate the trusted CA signed itself", function()
      assert.equal("localhost", echo_of(gw, "/depth-0").tls_sni)
    end)

    it("refuses a certificate for another host name", function()
      local res = get(gw, "/mismatch-name")
      local body = assert.res_status(502, res)
      assert.is_table(helpers.json_decode(body))
      helpers.wait_until(function()
        return error_log(gw):find("certificate verify failed: hostname " ..
                                  "mismatch", 1, true)
      end, 5)
    end)

    it("refuses a certificate without the IP literal", function()
      assert.res_status(502, (get(gw, "/mismatch-ip")))
      helpers.wait_until(function()
        return error_log(gw):find("IP address mismatch", 1, true)
      end, 5)
    end)

    it("without tls_verify the same certificate is accepted", function()
      assert.equal("localhost", echo_of(gw, "/no-verify-mismatch").tls_sni)
    end)

    it("a refused certificate is a failed try: the next target answers",
       function()
      for _ = 1, 4 do
        local echo = echo_of(gw, "/retry/x")
        assert.equal("localhost", echo.tls_sni)
      end
    end)
  end)

  describe("client_certificate", function()
    it("is presented to the upstream (mutual TLS)", function()
      assert.equal("alice", echo_of(gw, "/alice").tls_client_cn)
      -- a bare id works as well as { id = ... }
      assert.equal("bob-cn", echo_of(gw, "/bob").tls_client_cn)
    end)

    it("an upstream that requires one fails the request without it: 502",
       function()
      local res = get(gw, "/no-client-cert")
      local body = assert.res_status(502, res)
      assert.is_string(helpers.json_decode(body).message)
    end)
  end)

  describe("keepalive pools by TLS identity", function()
    it("never gives one client certificate's connection to another", function()
      local ids = {}
      for _ = 1, 3 do
        local a = echo_of(gw, "/alice/p")
        local b = echo_of(gw, "/bob/p")
        assert.equal("alice", a.tls_client_cn)
        assert.equal("bob-cn", b.tls_client_cn)
        assert.not_equal(a.connection_id, b.connection_id)
        ids.alice = ids.alice or a.connection_id
        ids.bob = ids.bob or b.connection_id
        -- each keeps reusing its own
        assert.equal(ids.alice, a.connection_id)
        assert.equal(ids.bob, b.connection_id)
      end
    end)

    it("never gives one SNI's connection to another on the same address",
       function()
      local by_ip = echo_of(gw, "/ip/p")
      local by_name = echo_of(gw, "/name/p")
      assert.not_equal(by_ip.connection_id, by_name.connection_id)
      assert.equal(by_ip.connection_id, echo_of(gw, "/ip/p").connection_id)
      assert.equal(by_name.connection_id, echo_of(gw, "/name/p").connection_id)
    end)

    it("keeps verified and unverified connections apart", function()
      local plain = echo_of(gw, "/name/v")
      local verified = echo_of(gw, "/verify-name/v")
      assert.not_equal(plain.connection_id, verified.connection_id)
      assert.equal(verified.connection_id,
                   echo_of(gw, "/verify-name/v").connection_id)
    end)
  end)
end)


describe("upstream TLS configuration", function()
  local tls

  lazy_setup(function()
    tls = require("spec.tls_fixtures").get()
  end)

  local function check(config)
    local dir = helpers.make_prefix("tls-check")
    local path = helpers.make_config_file(config, dir)
    return helpers.luagate_exec({ "check", "-c", path })
  end

  local function service(extra)
    local s = { name = "s", url = "https://127.0.0.1:9" }
    for k, v in pairs(extra) do s[k] = v end
    return s
  end

  it("refuses a client certificate that does not exist", function()
    local rc, _, err = check({ _format_version = "3.0", services = {
      service({ client_certificate = ALICE_ID }) } })
    assert.equal(1, rc)
    assert.matches("could not find certificate '" .. ALICE_ID .. "'", err, 1,
                   true)
  end)

  it("refuses a ca_certificates id that does not exist", function()
    local rc, _, err = check({ _format_version = "3.0", services = {
      service({ tls_verify = true, ca_certificates = { CA_ID } }) } })
    assert.equal(1, rc)
    assert.matches("could not find ca_certificate '" .. CA_ID .. "'", err, 1,
                   true)
  end)

  it("refuses a client certificate whose key does not match", function()
    local rc, _, err = check({
      _format_version = "3.0",
      certificates = { { id = ALICE_ID, cert = tls.certs.alice.cert_pem,
                         key = tls.certs.bob.key_pem } },
      services = { service({ client_certificate = ALICE_ID }) },
    })
    assert.equal(1, rc)
    assert.matches("service 's': could not load the client certificate", err, 1,
                   true)
  end)

  it("accepts a valid TLS service", function()
    local rc, out = check({
      _format_version = "3.0",
      ca_certificates = { { id = CA_ID, cert = tls.ca.cert_pem } },
      certificates = { { id = ALICE_ID, cert = tls.certs.alice.cert_pem,
                         key = tls.certs.alice.key_pem } },
      services = { service({ client_certificate = ALICE_ID, tls_verify = true,
                             ca_certificates = { CA_ID } }) },
    })
    assert.equal(0, rc)
    assert.matches("is valid", out)
  end)
end)


describe("active health checks of type https", function()
  local tls, up, other, gw

  lazy_setup(function()
    tls = require("spec.tls_fixtures").get()
    local c = tls.certs.upstream
    up = helpers.mock_upstream({ tls = { cert = c.cert, key = c.key } })
    local ex = tls.certs["example.test"]
    other = helpers.mock_upstream({ tls = { cert = ex.cert, key = ex.key } })
    gw = assert(helpers.start_luagate({
      args = { "--lua-ssl-trusted-certificate", tls.ca.cert },
      config = {
        _format_version = "3.0",
        upstreams = { { name = "hc",
          healthchecks = { active = {
            type = "https", https_sni = "upstream.test",
            http_path = "/status/200", timeout = 1,
            healthy = { interval = 0.2, successes = 1 },
            unhealthy = { interval = 0.2, tcp_failures = 1 } } },
          targets = { { target = "127.0.0.1:" .. up.port },
                      { target = "127.0.0.1:" .. other.port } } } },
        services = { { name = "s", host = "hc", protocol = "https",
                       routes = { { name = "r", paths = { "/" } } } } },
      },
    }))
  end)

  lazy_teardown(function()
    helpers.stop_luagate(gw)
    up.stop()
    other.stop()
  end)

  local function health_of(target)
    local res = helpers.request_once(gw.admin_port,
                                     { path = "/upstreams/hc/health" })
    local body = res and res.status == 200 and helpers.json_decode(res.body)
    if not (body and body.data) then -- seen once on a loaded machine: say what came
      io.stderr:write("GET /upstreams/hc/health: ", tostring(res and res.status), " ",
                      tostring(res and res.body), "\n")
      return nil
    end
    for _, d in ipairs(body.data) do
      if d.target == target then
        return d.health
      end
    end
  end

  it("probe over TLS with https_sni, verifying the certificate (Kong's " ..
     "https_verify_certificate default)", function()
    helpers.wait_until(function()
      return health_of("127.0.0.1:" .. other.port) == "UNHEALTHY"
    end, 10)
    -- the probes passed long enough for the other one to fail twice over
    ngx_sleep(0.6)
    assert.equal("HEALTHY", health_of("127.0.0.1:" .. up.port))
  end)
end)
