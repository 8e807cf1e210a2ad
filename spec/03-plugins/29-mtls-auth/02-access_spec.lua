-- mtls-auth through the real binary, an HTTPS listener, curl with client
-- certificates and the mock upstream: verification (expired, untrusted,
-- revoked with a CRL), consumer mapping (username, custom_id, SAN),
-- anonymous, default_consumer, skip_consumer_lookup and its headers and
-- groups, ssl_client_verify, plain HTTP, and routes without the plugin.
local helpers = require "spec.helpers"

local fmt = string.format
local FIXTURES = helpers.root .. "/spec/fixtures/plugins"

local tls = require("spec.tls_fixtures").get()

local CA_ID = "8a0f3b1e-2c4d-4e6f-8a1b-3c5d7e9f1a2b"
local CRL_CA_ID = "9b1c2d3e-4f5a-4b6c-8d7e-9f0a1b2c3d4e"
local SERVER_CA_ID = "2c3d4e5f-6a7b-4c8d-9e0f-1a2b3c4d5e6f"
local SERVER_CRL_CA_ID = "6a7b8c9d-0e1f-4a2b-9c3d-5e6f7a8b9c0d"
local ALICE_ID = "3d4e5f6a-7b8c-4d9e-8f0a-2b3c4d5e6f7a"
local ROBERT_ID = "4e5f6a7b-8c9d-4e0f-9a1b-3c4d5e6f7a8b"
local ANON_ID = "5f6a7b8c-9d0e-4f1a-8b2c-4d5e6f7a8b9c"

local DEFAULT = { ca_certificates = { CA_ID } }

local function with(t)
  local c = { ca_certificates = { CA_ID } }
  for k, v in pairs(t) do
    c[k] = v
  end
  return c
end

-- path, mtls-auth config (nil: no plugin), echo the TLS client (tls-echo)
local ROUTES = {
  { "/default", DEFAULT },
  { "/username", with({ consumer_by = { "username" } }) },
  { "/custom", with({ consumer_by = { "custom_id" } }) },
  { "/no-auto", with({ consumer_by = {} }) },
  { "/anon", with({ anonymous = "anon" }) },
  { "/default-consumer", with({ consumer_by = {},
                                default_consumer = ALICE_ID }) },
  { "/skip", with({ skip_consumer_lookup = true }) },
  { "/wrong-ca", { ca_certificates = { SERVER_CA_ID } } },
  { "/two-cas", { ca_certificates = { SERVER_CA_ID, CA_ID } } },
  { "/strict", { ca_certificates = { CRL_CA_ID },
                 revocation_check_mode = "STRICT" } },
  { "/strict-no-crl", with({ revocation_check_mode = "STRICT" }) },
  { "/ignore", { ca_certificates = { CRL_CA_ID } } },
  { "/ignore-no-crl", DEFAULT },
  -- a CRL in the store, but none of the client certificates' issuer
  { "/ignore-other-crl", { ca_certificates = { SERVER_CRL_CA_ID, CA_ID } } },
  { "/strict-other-crl", { ca_certificates = { SERVER_CRL_CA_ID, CA_ID },
                           revocation_check_mode = "STRICT" } },
  { "/skip-revocation", { ca_certificates = { CRL_CA_ID },
                          revocation_check_mode = "SKIP" } },
  { "/echo", DEFAULT, true },
  { "/echo-skip-cn", with({ skip_consumer_lookup = true }), true },
  { "/echo-skip-dn", with({ skip_consumer_lookup = true,
                            authenticated_group_by = "DN" }), true },
  { "/echo-open", nil, true },
  { "/open", nil },
}


local function config(mock_port)
  local routes = {}
  for i, r in ipairs(ROUTES) do
    local plugins = {}
    if r[2] then
      plugins[#plugins + 1] = { name = "mtls-auth", config = r[2] }
    end
    if r[3] then
      plugins[#plugins + 1] = { name = "tls-echo" }
    end
    routes[i] = { name = "r" .. i, paths = { r[1] }, plugins = plugins }
  end
  return {
    _format_version = "3.0",
    ca_certificates = {
      { id = CA_ID, cert = tls.client_ca.cert_pem },
      -- the same CA with its CRL (revoking tls.certs.revoked)
      { id = CRL_CA_ID, cert = tls.client_ca.cert_pem .. "\n" ..
                               tls.client_ca.crl_pem },
      { id = SERVER_CA_ID, cert = tls.ca.cert_pem },
      { id = SERVER_CRL_CA_ID, cert = tls.ca.cert_pem .. "\n" ..
                                      tls.ca.crl_pem },
    },
    services = {
      { name = "mock", url = fmt("http://127.0.0.1:%d", mock_port),
        routes = routes },
    },
    consumers = {
      { id = ALICE_ID, username = "alice" },
      -- bob's certificate: CN bob-cn, SAN DNS:bob
      { id = ROBERT_ID, username = "robert", custom_id = "bob" },
      { id = ANON_ID, username = "anon" },
      { username = "carol" },
    },
  }
end


describe("mtls-auth", function()
  local mock, gw, ssl_port

  lazy_setup(function()
    mock = helpers.mock_upstream()
    ssl_port = helpers.get_free_port()
    gw = assert(helpers.start_luagate({
      config = config(mock.port),
      args = { "--plugins-dir", FIXTURES,
               "--listen", "127.0.0.1:" .. ssl_port .. " ssl",
               "--ssl-cert", tls.certs.localhost.cert,
               "--ssl-key", tls.certs.localhost.key },
    }))
    helpers.wait_until(function()
      return helpers.port_open(ssl_port)
    end, 10)
  end)

  lazy_teardown(function()
    if gw then helpers.stop_luagate(gw) end
    if mock then mock.stop() end
  end)

  -- An HTTPS request with curl, with the client certificate `cert` (a
  -- tls.certs entry) or none; returns the status and the decoded body.
  local function request(path, cert)
    local auth = cert and fmt("--cert %s --key %s", cert.cert, cert.key) or
                 ""
    local rc, out, err = helpers.execute(fmt(
      "curl -s -S --max-time 10 --cacert %s %s -w '\\n%%{http_code}' " ..
      "https://127.0.0.1:%d%s", tls.ca.cert, auth, ssl_port, path))
    assert(rc == 0, "curl failed: " .. tostring(err))
    local body, status = out:match("^(.*)\n(%d+)$")
    return tonumber(status), helpers.json_decode(body)
  end

  local function assert_401(path, cert, message)
    local status, body = request(path, cert)
    assert.equal(401, status)
    assert.equal(message, body.message)
  end

  local function error_log()
    return helpers.read_file(gw.error_log) or ""
  end

  describe("a trusted certificate", function()
    it("authenticates the consumer named by its CN", function()
      local status, d = request("/default/request", tls.certs.alice)
      assert.equal(200, status)
      assert.equal(ALICE_ID, d.headers["x-consumer-id"])
      assert.equal("alice", d.headers["x-consumer-username"])
      assert.is_nil(d.headers["x-consumer-custom-id"])
      assert.is_nil(d.headers["x-anonymous-consumer"])
      -- Kong's mtls-auth sends no X-Credential-Identifier
      assert.is_nil(d.headers["x-credential-identifier"])
      -- skip_consumer_lookup's headers are not sent
      assert.is_nil(d.headers["x-client-cert-dn"])
    end)

    it("matches custom_id against a SAN", function()
      local status, d = request("/default/request", tls.certs.bob)
      assert.equal(200, status)
      assert.equal(ROBERT_ID, d.headers["x-consumer-id"])
      assert.equal("robert", d.headers["x-consumer-username"])
      assert.equal("bob", d.headers["x-consumer-custom-id"])
      status, d = request("/custom/request", tls.certs.bob)
      assert.equal(200, status)
      assert.equal("robert", d.headers["x-consumer-username"])
    end)

    it("uses only the consumer_by fields", function()
      -- bob's names (bob, bob-cn) match no username
      assert_401("/username", tls.certs.bob,
                 "TLS certificate failed verification")
      -- alice's names match no custom_id
      assert_401("/custom", tls.certs.alice,
                 "TLS certificate failed verification")
      assert_401("/no-auto", tls.certs.alice,
                 "TLS certificate failed verification")
      assert.matches("certificate is valid but consumer matching failed",
                     error_log(), 1, true)
    end)

    it("verifies against any of several CAs", function()
      local status, d = request("/two-cas/request", tls.certs.alice)
      assert.equal(200, status)
      assert.equal("alice", d.headers["x-consumer-username"])
    end)

    it("falls back to default_consumer when no consumer matches",
       function()
      local status, d = request("/default-consumer/request", tls.certs.bob)
      assert.equal(200, status)
      assert.equal(ALICE_ID, d.headers["x-consumer-id"])
      assert.is_nil(d.headers["x-anonymous-consumer"])
      -- but not for a certificate that fails verification
      assert_401("/default-consumer", tls.certs.untrusted,
                 "TLS certificate failed verification")
    end)

    it("is answered 200 by a route without the plugin", function()
      local status, d = request("/open/request", tls.certs.alice)
      assert.equal(200, status)
      assert.is_nil(d.headers["x-consumer-id"])
    end)
  end)

  describe("a certificate that fails verification", function()
    it("expired: 401 and the reason in the log", function()
      assert_401("/default", tls.certs.expired,
                 "TLS certificate failed verification")
      assert.matches("client certificate verify failed: certificate has " ..
                     "expired", error_log(), 1, true)
    end)

    it("untrusted: 401", function()
      assert_401("/default", tls.certs.untrusted,
                 "TLS certificate failed verification")
      assert.matches("client certificate verify failed: unable to get " ..
                     "local issuer certificate", error_log(), 1, true)
    end)

    it("signed by another CA than the plugin's: 401", function()
      assert_401("/wrong-ca", tls.certs.alice,
                 "TLS certificate failed verification")
    end)

    it("sets ssl_client_verify to FAILED:<reason>", function()
      local status, d = request("/echo", tls.certs.expired)
      assert.equal(401, status)
      assert.is_nil(d.verify) -- the 401 is mtls-auth's
      -- on a route without the plugin, nothing verified it
      status, d = request("/echo-open", tls.certs.expired)
      assert.equal(200, status)
      assert.equal("FAILED:not verified", d.verify)
    end)
  end)

  describe("without a certificate", function()
    it("answers 401 No required TLS certificate was sent", function()
      assert_401("/default", nil, "No required TLS certificate was sent")
    end)

    it("answers the same to plain HTTP", function()
      local client = helpers.proxy_client(gw)
      local res = client:get("/default")
      local body = helpers.json_decode(assert.res_status(401, res))
      client:close()
      assert.equal("No required TLS certificate was sent", body.message)
    end)

    it("passes a route without the plugin", function()
      local status = request("/open/request")
      assert.equal(200, status)
      local client = helpers.proxy_client(gw)
      local res = client:get("/open/request")
      assert.res_status(200, res)
      client:close()
    end)

    it("echoes NONE as ssl_client_verify on a route without it",
       function()
      local status, d = request("/echo-open")
      assert.equal(200, status)
      assert.equal("NONE", d.verify)
      assert.equal("none", d.cert)
    end)
  end)

  describe("anonymous", function()
    it("takes the anonymous consumer when there is no certificate",
       function()
      local status, d = request("/anon/request")
      assert.equal(200, status)
      assert.equal(ANON_ID, d.headers["x-consumer-id"])
      assert.equal("true", d.headers["x-anonymous-consumer"])
      local client = helpers.proxy_client(gw)
      d = helpers.json_decode(assert.res_status(200,
                                                client:get("/anon/request")))
      client:close()
      assert.equal("anon", d.headers["x-consumer-username"])
    end)

    it("takes it for a certificate that fails verification", function()
      local status, d = request("/anon/request", tls.certs.untrusted)
      assert.equal(200, status)
      assert.equal("anon", d.headers["x-consumer-username"])
      assert.equal("true", d.headers["x-anonymous-consumer"])
    end)

    it("is not used when the certificate authenticates", function()
      local status, d = request("/anon/request", tls.certs.alice)
      assert.equal(200, status)
      assert.equal("alice", d.headers["x-consumer-username"])
      assert.is_nil(d.headers["x-anonymous-consumer"])
    end)
  end)

  describe("skip_consumer_lookup", function()
    it("passes any trusted certificate with its DN and SANs upstream",
       function()
      local status, d = request("/skip/request", tls.certs.bob)
      assert.equal(200, status)
      assert.equal("CN=bob-cn", d.headers["x-client-cert-dn"])
      assert.equal("bob,bob-cn", d.headers["x-client-cert-san"])
      assert.is_nil(d.headers["x-consumer-id"])
      status, d = request("/skip/request", tls.certs.alice)
      assert.equal(200, status)
      assert.equal("CN=alice", d.headers["x-client-cert-dn"])
      assert.equal("alice.clients.test,alice@clients.test,alice",
                   d.headers["x-client-cert-san"])
    end)

    it("still refuses untrusted certificates and none", function()
      assert_401("/skip", tls.certs.untrusted,
                 "TLS certificate failed verification")
      assert_401("/skip", nil, "No required TLS certificate was sent")
    end)

    it("sets the authenticated group from the CN or the DN", function()
      local status, d = request("/echo-skip-cn", tls.certs.bob)
      assert.equal(200, status)
      assert.same({ "bob-cn" }, d.groups)
      assert.equal("none", d.consumer)
      assert.equal("SUCCESS", d.verify)
      status, d = request("/echo-skip-dn", tls.certs.bob)
      assert.equal(200, status)
      assert.same({ "CN=bob-cn" }, d.groups)
    end)
  end)

  describe("revocation", function()
    it("STRICT refuses a revoked certificate, accepts the others",
       function()
      assert_401("/strict", tls.certs.revoked,
                 "TLS certificate failed verification")
      assert.matches("client certificate verify failed: certificate " ..
                     "revoked", error_log(), 1, true)
      local status, d = request("/strict/request", tls.certs.alice)
      assert.equal(200, status)
      assert.equal("alice", d.headers["x-consumer-username"])
    end)

    it("STRICT refuses every certificate when the CA has no CRL",
       function()
      assert_401("/strict-no-crl", tls.certs.alice,
                 "TLS certificate failed verification")
      assert.matches("client certificate verify failed: unable to get " ..
                     "certificate CRL", error_log(), 1, true)
    end)

    it("IGNORE_CA_ERROR (default) checks the CRL when there is one",
       function()
      assert_401("/ignore", tls.certs.revoked,
                 "TLS certificate failed verification")
      local status = request("/ignore/request", tls.certs.alice)
      assert.equal(200, status)
      -- without a CRL the revoked certificate cannot be known as such
      local d
      status, d = request("/ignore-no-crl/request", tls.certs.revoked)
      assert.equal(200, status)
      assert.equal("carol", d.headers["x-consumer-username"])
    end)

    it("IGNORE_CA_ERROR passes when the issuer has no CRL, STRICT not",
       function()
      local status, d = request("/ignore-other-crl/request",
                                tls.certs.revoked)
      assert.equal(200, status)
      assert.equal("carol", d.headers["x-consumer-username"])
      assert.matches("client certificate revocation not checked (unable " ..
                     "to get certificate CRL), ignored as " ..
                     "revocation_check_mode is IGNORE_CA_ERROR",
                     error_log(), 1, true)
      -- still verified: an untrusted certificate is refused
      assert_401("/ignore-other-crl", tls.certs.untrusted,
                 "TLS certificate failed verification")
      assert_401("/strict-other-crl", tls.certs.alice,
                 "TLS certificate failed verification")
    end)

    it("SKIP does not check the CRL", function()
      local status, d = request("/skip-revocation/request",
                                tls.certs.revoked)
      assert.equal(200, status)
      assert.equal("carol", d.headers["x-consumer-username"])
    end)
  end)

  describe("kong.client.tls", function()
    it("shows the client certificate's fields", function()
      local status, d = request("/echo", tls.certs.alice)
      assert.equal(200, status)
      assert.equal("SUCCESS", d.verify)
      assert.equal("alice", d.consumer)
      assert.equal("none", d.groups)
      local c = d.cert
      assert.equal("CN=alice", c.subject_dn)
      assert.equal("CN=luagate test client CA", c.issuer_dn)
      assert.equal("alice", c.cn)
      assert.same({ "alice" }, c.cns)
      assert.same({ "alice.clients.test" }, c.san.dns)
      assert.same({ "alice@clients.test" }, c.san.email)
      assert.matches("^%x+$", c.serial)
      -- the SHA-256 of the DER certificate, as openssl computes it
      local _, out = helpers.execute(fmt(
        "openssl x509 -in %s -noout -fingerprint -sha256",
        tls.certs.alice.cert))
      local fp = out:match("=([%x:]+)"):gsub(":", ""):lower()
      assert.equal(fp, c.fingerprint:lower())
      assert.is_true(c.not_before <= os.time())
      assert.is_true(c.not_after > os.time())
    end)
  end)
end)
