-- The jwt plugin through the real binary and the mock upstream: token
-- sources, every algorithm with keys generated here by the openssl CLI
-- (tokens signed by openssl, HS* ones by jwt_parser.encode), Kong's errors
-- and headers, registered claims, anonymous, preflight; luagate's secrets,
-- claims_to_headers and JWKS (served by the same gateway through the
-- jwt-fixture test plugin, with key rotation and two workers).
local helpers = require "spec.helpers"
local cjson = require "cjson"

local fmt = string.format
local HERE = helpers.root .. "/spec/03-plugins/04-jwt"
local keys = dofile(HERE .. "/keys.lua")
local PLUGINS_DIR = HERE .. "/plugins"

local ANON_ID = "a0a0a0a0-0000-4000-8000-000000000001"
local USER_ID = "a0a0a0a0-0000-4000-8000-000000000002"
local HS_SECRET = "hs256-secret-value"
local B64_RAW = "the raw \0\1\2 secret"
local SVC_SECRET = "service-wide secret"


local function now()
  return os.time()
end


local function get(gw, path, headers, method)
  local c = helpers.proxy_client(gw)
  local res, err = c:send({ method = method or "GET", path = path,
                            headers = headers })
  c:close()
  return assert(res, err)
end

local function bearer(token)
  return { Authorization = "Bearer " .. token }
end

-- 401 with Kong's body and WWW-Authenticate; returns the decoded body
local function assert_401(res, message, www)
  local body = assert.res_status(401, res)
  local json = cjson.decode(body)
  if message then
    assert.same({ message = message }, json)
  end
  assert.equal(www or 'Bearer error="invalid_token"',
               res.headers["www-authenticate"])
  assert.matches("application/json", res.headers["content-type"], 1, true)
  assert.is_nil(json.request_id)
  return json
end

local function echo_of(res)
  local body = assert.res_status(200, res)
  return cjson.decode(body)
end


describe("jwt: consumer credentials", function()
  local mock, gw, k
  local parser = keys.parser()

  -- algorithm -> { key name, credential key }
  local ASYM = {
    RS256 = "rsa", RS384 = "rsa", RS512 = "rsa",
    PS256 = "rsa", PS384 = "rsa", PS512 = "rsa",
    ES256 = "ec256", ES384 = "ec384", ES512 = "ec521",
    EdDSA = "ed25519",
  }

  lazy_setup(function()
    k = keys.generate(helpers.make_prefix("jwt-keys"))
    mock = helpers.mock_upstream()

    local secrets = {
      { key = "hs256-key", secret = HS_SECRET },
      { key = "hs384-key", secret = "hs384-secret", algorithm = "HS384" },
      { key = "hs512-key", secret = "hs512-secret", algorithm = "HS512" },
      { key = "b64-key",
        secret = require("luagate.ngx.codec").encode_base64(B64_RAW) },
      { key = "not-b64-key", secret = "not*base64!" },
      -- Kong's resty.openssl verifies with a private key too
      { key = "rs256-private-key", algorithm = "RS256",
        rsa_public_key = k.rsa.private_pem },
    }
    for alg, name in pairs(ASYM) do
      secrets[#secrets + 1] = { key = alg:lower() .. "-key", algorithm = alg,
                                rsa_public_key = k[name].public }
    end

    local function route(name, config, extra)
      local plugins = { { name = "jwt", config = config } }
      for _, p in ipairs(extra or {}) do
        plugins[#plugins + 1] = p
      end
      return { name = name, paths = { "/" .. name }, plugins = plugins }
    end

    local echo = { name = "jwt-fixture", config = { mode = "echo" } }
    gw = assert(helpers.start_luagate({
      args = { "--plugins-dir", PLUGINS_DIR },
      config = {
        _format_version = "3.0",
        consumers = {
          { username = "anon", id = ANON_ID },
          { username = "user", id = USER_ID, custom_id = "user-custom",
            jwt_secrets = secrets },
        },
        services = { {
          name = "mock", url = fmt("http://127.0.0.1:%d", mock.port),
          routes = {
            route("default", nil, { echo }),
            route("realm", { realm = "luagate" }),
            route("claims", { claims_to_verify = { "exp", "nbf" } }),
            route("maxexp", { claims_to_verify = { "exp" },
                              maximum_expiration = 60 }),
            route("sources", { uri_param_names = { "token", "jwt" },
                               cookie_names = { "jwtc" },
                               header_names = { "authorization", "x-jwt" } }),
            route("b64", { secret_is_base64 = true }),
            route("kid", { key_claim_name = "kid" }),
            route("anon", { anonymous = "anon" }, { echo }),
            route("anon-id", { anonymous = ANON_ID }),
            route("anon-missing", { anonymous = "nobody" }),
            route("preflight", { run_on_preflight = false }),
          },
        } },
      },
    }))
  end)

  lazy_teardown(function()
    if gw then helpers.stop_luagate(gw) end
    if mock then mock.stop() end
  end)

  local function hs(claims, header)
    return keys.token(claims, "HS256", HS_SECRET, header)
  end

  describe("no token", function()
    it("answers 401 Unauthorized with WWW-Authenticate: Bearer", function()
      assert_401(get(gw, "/default"), "Unauthorized", "Bearer")
    end)

    it("adds the realm when one is configured", function()
      assert_401(get(gw, "/realm"), "Unauthorized", 'Bearer realm="luagate"')
      assert_401(get(gw, "/realm", bearer("x.y.z")), nil,
                 'Bearer realm="luagate" error="invalid_token"')
    end)

    it("ignores an Authorization header that is not Bearer", function()
      assert_401(get(gw, "/default", { Authorization = "Basic dXNlcjpw" }),
                 "Unauthorized", "Bearer")
      assert_401(get(gw, "/default", { Authorization = "Bearer" }),
                 "Unauthorized", "Bearer")
    end)

    it("ignores empty sources", function()
      assert_401(get(gw, "/sources?token=&jwt=", { Cookie = "jwtc=" }),
                 "Unauthorized", "Bearer")
    end)
  end)

  describe("a valid token", function()
    it("authenticates the consumer and sets Kong's upstream headers",
    function()
      local token = hs({ iss = "hs256-key", sub = "s" })
      local res = get(gw, "/default", {
        Authorization = "Bearer " .. token,
        ["X-Anonymous-Consumer"] = "spoofed",
        ["X-Consumer-Username"] = "spoofed",
      })
      assert.res_status(200, res)
      assert.equal(USER_ID, assert.request(res).has.header("x-consumer-id"))
      assert.equal("user",
                   assert.request(res).has.header("x-consumer-username"))
      assert.equal("user-custom",
                   assert.request(res).has.header("x-consumer-custom-id"))
      assert.equal("hs256-key",
                   assert.request(res).has.header("x-credential-identifier"))
      assert.request(res).has.no.header("x-anonymous-consumer")
      -- the token goes upstream as it came (Kong hides nothing)
      assert.equal("Bearer " .. token,
                   assert.request(res).has.header("authorization"))
    end)

    it("leaves the token and consumer to the plugins after it", function()
      local token = hs({ iss = "hs256-key" })
      local res = get(gw, "/default", bearer(token))
      assert.res_status(200, res)
      assert.equal(token, assert.request(res).has.header("x-ctx-token"))
      assert.equal(token, assert.request(res).has.header("x-ngx-ctx-token"))
      assert.equal("user", assert.request(res).has.header("x-client-consumer"))
      assert.equal("hs256-key",
                   assert.request(res).has.header("x-client-credential"))
      assert.equal("HS256", assert.request(res).has.header("x-parser-alg"))
    end)

    it("accepts 'bearer' in lower case and the key claim in the header",
    function()
      local token = hs({ sub = "s" }, { typ = "JWT", alg = "HS256",
                                        iss = "hs256-key" })
      local res = get(gw, "/default", { Authorization = "bearer " .. token })
      assert.res_status(200, res)
      assert.equal("hs256-key",
                   assert.request(res).has.header("x-credential-identifier"))
    end)

    it("takes the claim before the header", function()
      local token = hs({ iss = "nobody" }, { typ = "JWT", alg = "HS256",
                                             iss = "hs256-key" })
      assert_401(get(gw, "/default", bearer(token)),
                 "No credentials found for given 'iss'")
    end)

    it("accepts a token without typ, and typ in any case", function()
      local t1 = hs({ iss = "hs256-key" }, { alg = "HS256" })
      assert.res_status(200, get(gw, "/default", bearer(t1)))
      local t2 = hs({ iss = "hs256-key" }, { alg = "HS256", typ = "jwt" })
      assert.res_status(200, get(gw, "/default", bearer(t2)))
    end)

    it("does not check exp unless claims_to_verify says so", function()
      local token = hs({ iss = "hs256-key", exp = now() - 3600 })
      assert.res_status(200, get(gw, "/default", bearer(token)))
    end)

    it("uses key_claim_name", function()
      local token = hs({ sub = "x" }, { typ = "JWT", alg = "HS256",
                                        kid = "hs256-key" })
      assert.res_status(200, get(gw, "/kid", bearer(token)))
      assert_401(get(gw, "/kid", bearer(hs({ iss = "hs256-key" }))),
                 "No mandatory 'kid' in claims")
    end)
  end)

  describe("algorithms", function()
    for _, alg in ipairs({ "HS256", "HS384", "HS512" }) do
      it(alg .. " verifies and refuses a wrong signature", function()
        local secret = ({ HS256 = HS_SECRET, HS384 = "hs384-secret",
                          HS512 = "hs512-secret" })[alg]
        local key = alg:lower() .. "-key"
        local token = keys.token({ iss = key }, alg, secret)
        local res = get(gw, "/default", bearer(token))
        assert.res_status(200, res)
        assert.equal(key,
                     assert.request(res).has.header("x-credential-identifier"))
        local bad = keys.token({ iss = key }, alg, secret .. "x")
        assert_401(get(gw, "/default", bearer(bad)), "Invalid signature")
      end)
    end

    for _, alg in ipairs({ "RS256", "RS384", "RS512", "PS256", "PS384",
                           "PS512", "ES256", "ES384", "ES512", "EdDSA" }) do
      it(alg .. " verifies an openssl-signed token and refuses others",
      function()
        local key = alg:lower() .. "-key"
        local token = keys.token({ iss = key, n = 1 }, alg, k[ASYM[alg]])
        local res = get(gw, "/default", bearer(token))
        assert.res_status(200, res)
        assert.equal(key,
                     assert.request(res).has.header("x-credential-identifier"))
        -- the same header and claims under another signature
        local other = keys.token({ iss = key, n = 2 }, alg, k[ASYM[alg]])
        local h, c = token:match("^([^.]+)%.([^.]+)%.")
        local sig = other:match("%.([^.]+)$")
        assert_401(get(gw, "/default", bearer(h .. "." .. c .. "." .. sig)),
                   "Invalid signature")
        -- a signature by another key of the same kind
        local wrong = ({ rsa = k.rsa2, ec256 = k.ec256, ec384 = k.ec384,
                         ec521 = k.ec521, ed25519 = k.ed25519 })[ASYM[alg]]
        if ASYM[alg] == "rsa" then
          local t = keys.token({ iss = key }, alg, wrong)
          assert_401(get(gw, "/default", bearer(t)), "Invalid signature")
        end
      end)
    end

    it("verifies the tokens jwt_parser.encode signs", function()
      for alg, name in pairs(ASYM) do
        local token = parser.encode({ iss = alg:lower() .. "-key" },
                                    k[name].private_pem, alg)
        assert.res_status(200, get(gw, "/default", bearer(token)), alg)
      end
    end)

    it("verifies with a private key given as rsa_public_key", function()
      local t = keys.token({ iss = "rs256-private-key" }, "RS256", k.rsa)
      assert.res_status(200, get(gw, "/default", bearer(t)))
      local bad = keys.token({ iss = "rs256-private-key" }, "RS256", k.rsa2)
      assert_401(get(gw, "/default", bearer(bad)), "Invalid signature")
    end)

    it("refuses an ES256 signature of the wrong size", function()
      local token = keys.token({ iss = "es256-key" }, "ES256", k.ec256)
      local short = token:gsub("%.[^.]+$", "." ..
        parser.base64_encode(string.rep("\1", 63)))
      assert_401(get(gw, "/default", bearer(short)), "Invalid signature")
    end)
  end)

  describe("refuses", function()
    it("alg none", function()
      local token = keys.unsigned({ iss = "hs256-key" },
                                  { typ = "JWT", alg = "none" })
      assert_401(get(gw, "/default", bearer(token)), "Bad token; invalid alg")
      local nosig = keys.unsigned({ iss = "hs256-key" },
                                  { typ = "JWT", alg = "HS256" })
      assert_401(get(gw, "/default", bearer(nosig)), "Invalid signature")
    end)

    it("an unknown alg", function()
      local token = keys.unsigned({ iss = "hs256-key" },
                                  { typ = "JWT", alg = "HS1" })
      assert_401(get(gw, "/default", bearer(token)), "Bad token; invalid alg")
    end)

    it("algorithm confusion: an RS256 public key used as HS256 secret",
    function()
      local token = keys.token({ iss = "rs256-key" }, "HS256", k.rsa.public)
      assert_401(get(gw, "/default", bearer(token)), "Invalid algorithm")
    end)

    it("a token whose alg is not the credential's", function()
      local token = keys.token({ iss = "hs256-key" }, "HS512", HS_SECRET)
      assert_401(get(gw, "/default", bearer(token)), "Invalid algorithm")
      local rs = keys.token({ iss = "hs256-key" }, "RS256", k.rsa)
      assert_401(get(gw, "/default", bearer(rs)), "Invalid algorithm")
      local es = keys.token({ iss = "rs256-key" }, "ES256", k.ec256)
      assert_401(get(gw, "/default", bearer(es)), "Invalid algorithm")
    end)

    it("malformed tokens", function()
      for _, t in ipairs({ "abc", "a.b", "a.b.c", "!!.??.xx",
                           keys.parser().base64_encode("1") .. ".e30.x" }) do
        assert_401(get(gw, "/default", bearer(t)), "Bad token; invalid JSON")
      end
      local claims_null = keys.parser().base64_encode('{"alg":"HS256"}') ..
                          "." .. keys.parser().base64_encode("null") .. ".x"
      assert_401(get(gw, "/default", bearer(claims_null)),
                 "Bad token; invalid claims")
      local token = hs({ iss = "hs256-key" })
      assert_401(get(gw, "/default", bearer(token .. "!")),
                 "Bad token; invalid signature")
      assert_401(get(gw, "/default", bearer(token .. ".x")),
                 "Bad token; invalid signature")
      local typ = hs({ iss = "hs256-key" }, { typ = "JWS", alg = "HS256" })
      assert_401(get(gw, "/default", bearer(typ)), "Bad token; invalid typ")
    end)

    it("a token without the key claim, with an empty or unknown one",
    function()
      assert_401(get(gw, "/default", bearer(hs({ sub = "x" }))),
                 "No mandatory 'iss' in claims")
      assert_401(get(gw, "/default", bearer(hs({ iss = "" }))),
                 "Invalid 'iss' in claims")
      assert_401(get(gw, "/default", bearer(hs({ iss = 42 }))),
                 "Invalid 'iss' in claims")
      assert_401(get(gw, "/default", bearer(hs({ iss = "nope" }))),
                 "No credentials found for given 'iss'")
    end)

    it("a credential whose secret is not base64 with secret_is_base64",
    function()
      local t = keys.token({ iss = "not-b64-key" }, "HS256", "not*base64!")
      assert_401(get(gw, "/b64", bearer(t)), "Invalid key/secret")
      assert.res_status(200, get(gw, "/default", bearer(t)))
    end)
  end)

  describe("token sources", function()
    local token
    before_each(function()
      token = hs({ iss = "hs256-key" })
    end)

    it("reads the query, cookies and each header name", function()
      assert.res_status(200, get(gw, "/sources?token=" .. token))
      assert.res_status(200, get(gw, "/sources?a=1&jwt=" .. token))
      assert.res_status(200, get(gw, "/sources", {
        Cookie = "a=b; jwtc=" .. token .. "; c=d" }))
      assert.res_status(200, get(gw, "/sources",
                                 { ["X-Jwt"] = "Bearer " .. token }))
      assert.res_status(200, get(gw, "/sources", bearer(token)))
      -- the defaults: ?jwt= and Authorization, no cookie
      assert.res_status(200, get(gw, "/default?jwt=" .. token))
      assert_401(get(gw, "/default?token=" .. token), "Unauthorized", "Bearer")
      assert_401(get(gw, "/default", { Cookie = "jwtc=" .. token }),
                 "Unauthorized", "Bearer")
    end)

    it("accepts the same token in several places", function()
      local res = get(gw, "/sources?token=" .. token .. "&jwt=" .. token, {
        Authorization = "Bearer " .. token, Cookie = "jwtc=" .. token })
      assert.res_status(200, res)
    end)

    it("refuses two different tokens", function()
      local other = hs({ iss = "hs256-key", n = 2 })
      assert_401(get(gw, "/sources?token=" .. token, bearer(other)),
                 "Multiple tokens provided")
      assert_401(get(gw, "/sources?jwt=" .. token .. "&jwt=" .. other),
                 "Multiple tokens provided")
      assert_401(get(gw, "/sources", { Cookie = "jwtc=" .. token,
                                       ["X-Jwt"] = "Bearer " .. other }),
                 "Multiple tokens provided")
    end)

    it("refuses a query parameter without a value", function()
      assert_401(get(gw, "/sources?token"), "Unrecognizable token")
    end)
  end)

  describe("registered claims", function()
    it("refuses an expired token with the claim errors", function()
      local t = hs({ iss = "hs256-key", exp = now() - 10 })
      local json = assert_401(get(gw, "/claims", bearer(t)))
      assert.same({ exp = "token expired", nbf = "must be a number" }, json)
    end)

    it("refuses a token not valid yet", function()
      local t = hs({ iss = "hs256-key", exp = now() + 600, nbf = now() + 600 })
      assert.same({ nbf = "token not valid yet" },
                  assert_401(get(gw, "/claims", bearer(t))))
    end)

    it("wants numbers", function()
      local t = hs({ iss = "hs256-key", exp = tostring(now() + 600),
                     nbf = now() - 1 })
      assert.same({ exp = "must be a number" },
                  assert_401(get(gw, "/claims", bearer(t))))
    end)

    it("accepts a token in its validity window", function()
      local t = hs({ iss = "hs256-key", exp = now() + 600, nbf = now() - 1 })
      assert.res_status(200, get(gw, "/claims", bearer(t)))
    end)

    it("checks maximum_expiration", function()
      local far = hs({ iss = "hs256-key", exp = now() + 3600 })
      assert.same({ exp = "exceeds maximum allowed expiration" },
                  assert_401(get(gw, "/maxexp", bearer(far))))
      local near = hs({ iss = "hs256-key", exp = now() + 30 })
      assert.res_status(200, get(gw, "/maxexp", bearer(near)))
      local none = hs({ iss = "hs256-key" })
      assert.same({ exp = "must be a number" },
                  assert_401(get(gw, "/maxexp", bearer(none))))
    end)

    it("checks the signature before the claims", function()
      local t = keys.token({ iss = "hs256-key", exp = now() - 10 }, "HS256",
                           "wrong")
      assert_401(get(gw, "/claims", bearer(t)), "Invalid signature")
    end)
  end)

  describe("secret_is_base64", function()
    it("verifies with the decoded secret", function()
      local t = keys.token({ iss = "b64-key" }, "HS256", B64_RAW)
      assert.res_status(200, get(gw, "/b64", bearer(t)))
      -- elsewhere the secret is the base64 text itself
      assert_401(get(gw, "/default", bearer(t)), "Invalid signature")
    end)

    it("refuses a token signed with the base64 text", function()
      local encoded = require("luagate.ngx.codec").encode_base64(B64_RAW)
      local t = keys.token({ iss = "b64-key" }, "HS256", encoded)
      assert_401(get(gw, "/b64", bearer(t)), "Invalid signature")
      assert.res_status(200, get(gw, "/default", bearer(t)))
    end)

    it("does not decode public keys", function()
      local t = keys.token({ iss = "rs256-key" }, "RS256", k.rsa)
      assert.res_status(200, get(gw, "/b64", bearer(t)))
    end)
  end)

  describe("anonymous", function()
    it("lets a request without token through as the anonymous consumer",
    function()
      local res = get(gw, "/anon", { ["X-Credential-Identifier"] = "spoof" })
      assert.res_status(200, res)
      assert.equal("true",
                   assert.request(res).has.header("x-anonymous-consumer"))
      assert.equal(ANON_ID, assert.request(res).has.header("x-consumer-id"))
      assert.equal("anon",
                   assert.request(res).has.header("x-consumer-username"))
      assert.request(res).has.no.header("x-credential-identifier")
      assert.equal("(none)", assert.request(res).has.header("x-ctx-token"))
      assert.equal("anon",
                   assert.request(res).has.header("x-client-consumer"))
      assert.equal("(none)",
                   assert.request(res).has.header("x-client-credential"))
    end)

    it("also after a failed verification, and by id", function()
      local bad = keys.token({ iss = "hs256-key" }, "HS256", "wrong")
      local res = get(gw, "/anon", bearer(bad))
      assert.res_status(200, res)
      assert.equal("anon",
                   assert.request(res).has.header("x-consumer-username"))
      res = get(gw, "/anon-id", bearer("garbage"))
      assert.res_status(200, res)
      assert.equal(ANON_ID, assert.request(res).has.header("x-consumer-id"))
    end)

    it("authenticates a valid token as its consumer", function()
      local t = hs({ iss = "hs256-key" })
      local res = get(gw, "/anon", bearer(t))
      assert.res_status(200, res)
      assert.equal("user",
                   assert.request(res).has.header("x-consumer-username"))
      assert.request(res).has.no.header("x-anonymous-consumer")
      assert.equal(t, assert.request(res).has.header("x-ctx-token"))
    end)

    it("answers 500 when the anonymous consumer does not exist", function()
      local res = get(gw, "/anon-missing")
      local body = assert.res_status(500, res)
      assert.equal("An unexpected error occurred",
                   cjson.decode(body).message)
      assert.matches("anonymous consumer nobody is configured but " ..
                     "doesn't exist", helpers.read_file(gw.error_log), 1, true)
      -- a valid token does not need it
      assert.res_status(200, get(gw, "/anon-missing",
                                 bearer(hs({ iss = "hs256-key" }))))
    end)
  end)

  describe("preflight", function()
    it("authenticates OPTIONS by default", function()
      assert_401(get(gw, "/default", nil, "OPTIONS"), "Unauthorized",
                 "Bearer")
    end)

    it("lets OPTIONS through with run_on_preflight = false", function()
      local res = get(gw, "/preflight", nil, "OPTIONS")
      assert.res_status(200, res)
      assert.equal("OPTIONS", echo_of(res).method)
      assert_401(get(gw, "/preflight"), "Unauthorized", "Bearer")
    end)
  end)
end)


describe("jwt: luagate's secrets and claims_to_headers", function()
  local mock, gw, k

  local function route(name, config)
    return { name = name, paths = { "/" .. name },
             plugins = { { name = "jwt", config = config } } }
  end

  local function config(svc_secret)
    return {
      _format_version = "3.0",
      consumers = {
        { username = "user", id = USER_ID, jwt_secrets = {
          { key = "user-key", secret = "user-secret" } } },
      },
      services = { {
        name = "mock", url = fmt("http://127.0.0.1:%d", mock.port),
        routes = {
          route("svc", {
            secrets = {
              { secret = svc_secret },
              { secret = "second secret", algorithm = "HS512" },
              { public_key = k.rsa.public, algorithm = "RS256" },
              { public_key = k.ec256.public, algorithm = "ES256" },
            },
            claims_to_verify = { "exp" },
            claims_to_headers = {
              sub = "X-User-Id", groups = "X-Groups", n = "X-N",
              admin = "X-Admin", meta = "X-Meta",
            },
          }),
          route("hdr", {
            claims_to_headers = { sub = "X-User-Id", iss = "X-Issuer" },
          }),
        },
      } },
    }
  end

  lazy_setup(function()
    k = keys.generate(helpers.make_prefix("jwt-keys"))
    mock = helpers.mock_upstream()
    gw = assert(helpers.start_luagate({ config = config(SVC_SECRET) }))
  end)

  lazy_teardown(function()
    if gw then helpers.stop_luagate(gw) end
    if mock then mock.stop() end
  end)

  local function svc(claims, alg, key)
    claims.exp = claims.exp or now() + 600
    return keys.token(claims, alg or "HS256", key or SVC_SECRET)
  end

  it("passes a token signed with the service's secret, with no consumer",
  function()
    local res = get(gw, "/svc", bearer(svc({ sub = "u-1" })))
    assert.res_status(200, res)
    assert.equal("u-1", assert.request(res).has.header("x-user-id"))
    assert.request(res).has.no.header("x-consumer-id")
    assert.request(res).has.no.header("x-consumer-username")
    assert.request(res).has.no.header("x-anonymous-consumer")
    assert.request(res).has.no.header("x-credential-identifier")
  end)

  it("tries every key of the token's algorithm", function()
    assert.res_status(200, get(gw, "/svc",
                               bearer(svc({}, "HS512", "second secret"))))
    assert.res_status(200, get(gw, "/svc", bearer(svc({}, "RS256", k.rsa))))
    assert.res_status(200, get(gw, "/svc",
                               bearer(svc({}, "ES256", k.ec256))))
  end)

  it("refuses other keys and algorithms", function()
    assert_401(get(gw, "/svc", bearer(svc({}, "HS256", "other"))),
               "Invalid signature")
    assert_401(get(gw, "/svc", bearer(svc({}, "RS256", k.rsa2))),
               "Invalid signature")
    assert_401(get(gw, "/svc", bearer(svc({}, "HS384", SVC_SECRET))),
               "Invalid algorithm")
    -- the RS256 public key as an HS256 secret
    assert_401(get(gw, "/svc", bearer(svc({}, "HS256", k.rsa.public))),
               "Invalid signature")
    assert_401(get(gw, "/svc", bearer(svc({}, "PS256", k.rsa))),
               "Invalid algorithm")
  end)

  it("still verifies the claims", function()
    local t = svc({ exp = now() - 5 })
    assert.same({ exp = "token expired" }, assert_401(get(gw, "/svc",
                                                          bearer(t))))
  end)

  it("identifies a consumer whose credential the key claim names",
  function()
    local t = keys.token({ iss = "user-key", exp = now() + 60 }, "HS256",
                         "user-secret")
    local res = get(gw, "/svc", bearer(t))
    assert.res_status(200, res)
    assert.equal(USER_ID, assert.request(res).has.header("x-consumer-id"))
    -- a known key claim does not fall back to the service's secrets
    local t2 = keys.token({ iss = "user-key", exp = now() + 60 }, "HS256",
                          SVC_SECRET)
    assert_401(get(gw, "/svc", bearer(t2)), "Invalid signature")
  end)

  it("copies claims to upstream headers", function()
    local res = get(gw, "/svc", bearer(svc({
      sub = "u-2", groups = { "a", "b" }, n = 1234567890, admin = false,
      meta = { plan = "gold" },
    })))
    assert.res_status(200, res)
    assert.equal("u-2", assert.request(res).has.header("x-user-id"))
    assert.equal("a, b", assert.request(res).has.header("x-groups"))
    assert.equal("1234567890", assert.request(res).has.header("x-n"))
    assert.equal("false", assert.request(res).has.header("x-admin"))
    assert.same({ plan = "gold" },
                cjson.decode(assert.request(res).has.header("x-meta")))
  end)

  it("clears the headers of missing claims", function()
    local res = get(gw, "/svc", {
      Authorization = "Bearer " .. svc({}),
      ["X-User-Id"] = "spoofed", ["X-Groups"] = "admins",
    })
    assert.res_status(200, res)
    assert.request(res).has.no.header("x-user-id")
    assert.request(res).has.no.header("x-groups")
  end)

  it("refuses a claim with CR, LF or NUL for a header", function()
    assert_401(get(gw, "/svc", bearer(svc({ sub = "a\r\nX-Evil: 1" }))),
               "Invalid 'sub' in claims")
    assert_401(get(gw, "/svc", bearer(svc({ groups = { "a", "b\nc" } }))),
               "Invalid 'groups' in claims")
    assert_401(get(gw, "/svc", bearer(svc({ sub = "a\0b" }))),
               "Invalid 'sub' in claims")
    local res = get(gw, "/svc", bearer(svc({ sub = "a\tb" })))
    assert.res_status(200, res)
    assert.equal("a\tb", assert.request(res).has.header("x-user-id"))
  end)

  it("copies claims of consumer tokens too", function()
    local t = keys.token({ iss = "user-key", sub = "me" }, "HS256",
                         "user-secret")
    local res = get(gw, "/hdr", bearer(t))
    assert.res_status(200, res)
    assert.equal("me", assert.request(res).has.header("x-user-id"))
    assert.equal("user-key", assert.request(res).has.header("x-issuer"))
  end)

  it("keeps Kong's errors when no secrets are configured", function()
    assert_401(get(gw, "/hdr", bearer(svc({ sub = "x" }))),
               "No mandatory 'iss' in claims")
  end)

  -- last: changes the config
  it("forgets a verified token when its key changes (reload)", function()
    local t = svc({ sub = "r" })
    assert.res_status(200, get(gw, "/svc", bearer(t)))
    assert.res_status(200, get(gw, "/svc", bearer(t)))
    assert.is_true(helpers.reload_luagate(gw, config("rotated secret")))
    assert_401(get(gw, "/svc", bearer(t)), "Invalid signature")
    assert.res_status(200, get(gw, "/svc", bearer(svc({}, "HS256",
                                                     "rotated secret"))))
  end)
end)


describe("jwt: JWKS", function()
  local mock, gw, k, port, dir

  local function write_jwks(name, list)
    helpers.write_file(dir .. "/" .. name .. ".json",
                       cjson.encode({ keys = list }))
  end

  local function hits(counter)
    local res = get(gw, "/hits-" .. counter)
    return cjson.decode(assert.res_status(200, res)).hits
  end

  local function rs(kid, claims, key, alg)
    claims = claims or {}
    claims.exp = claims.exp or now() + 600
    return keys.token(claims, alg or "RS256", key or k.rsa,
                      { typ = "JWT", alg = alg or "RS256", kid = kid })
  end

  lazy_setup(function()
    dir = helpers.make_prefix("jwt-jwks")
    k = keys.generate(dir)
    port = helpers.get_free_port()
    mock = helpers.mock_upstream()
    write_jwks("main", {
      keys.jwk(k.rsa, "rsa-1", { use = "sig", alg = "RS256" }),
      keys.jwk(k.ec256, "ec-1"),
      keys.jwk(k.ec521, "ec-521"),
      keys.jwk(k.ed25519, "ed-1"),
      { kty = "oct", kid = "hs-1", k = "c2VjcmV0" },
      keys.jwk(k.rsa2, "rsa-enc", { use = "enc" }),
    })
    write_jwks("rotate", { keys.jwk(k.rsa, "r-1") })
    write_jwks("limited", { keys.jwk(k.rsa, "l-1") })
    write_jwks("refresh", { keys.jwk(k.rsa, "f-1") })
    write_jwks("bad", {})
    helpers.write_file(dir .. "/bad.json", "not json")

    local base = fmt("http://127.0.0.1:%d", port)
    local function jwks_route(name)
      return {
        name = "jwks-" .. name, paths = { "/jwks-" .. name },
        plugins = { { name = "jwt-fixture", config = {
          mode = "jwks", file = dir .. "/" .. name .. ".json",
          counter = name } } },
      }
    end
    local function hits_route(name)
      return {
        name = "hits-" .. name, paths = { "/hits-" .. name },
        plugins = { { name = "jwt-fixture", config = {
          mode = "hits", counter = name } } },
      }
    end
    local function route(name, config)
      config.claims_to_verify = { "exp" }
      return { name = name, paths = { "/" .. name },
               plugins = { { name = "jwt", config = config } } }
    end
    local routes = {
      route("main", { jwks_urls = { base .. "/jwks-main" },
                      claims_to_headers = { sub = "X-Sub" } }),
      route("rotate", { jwks_urls = { base .. "/jwks-rotate" },
                        jwks_min_refetch_interval = 0 }),
      route("limited", { jwks_urls = { base .. "/jwks-limited" } }),
      route("refresh", { jwks_urls = { base .. "/jwks-refresh" },
                         jwks_refresh_interval = 1 }),
      route("two", { jwks_urls = { base .. "/jwks-bad",
                                   base .. "/jwks-main" } }),
      route("down", { jwks_urls = { fmt("http://127.0.0.1:%d/x",
                                        helpers.get_free_port()) },
                      jwks_timeout = 500 }),
    }
    for _, name in ipairs({ "main", "rotate", "limited", "refresh", "bad" }) do
      routes[#routes + 1] = jwks_route(name)
      routes[#routes + 1] = hits_route(name)
    end

    gw = assert(helpers.start_luagate({
      proxy_port = port,
      workers = 2,
      args = { "--plugins-dir", PLUGINS_DIR },
      config = {
        _format_version = "3.0",
        services = { {
          name = "mock", url = fmt("http://127.0.0.1:%d", mock.port),
          routes = routes,
        } },
      },
    }))
  end)

  lazy_teardown(function()
    if gw then helpers.stop_luagate(gw) end
    if mock then mock.stop() end
  end)

  it("fetches each key set once at start, in the background, for all " ..
     "workers", function()
    helpers.wait_until(function()
      return hits("main") >= 1 and hits("rotate") >= 1 and
             hits("limited") >= 1 and hits("refresh") >= 1
    end, 10)
    -- many requests over new connections reach both workers
    for _ = 1, 20 do
      assert.res_status(200, get(gw, "/main", bearer(rs("rsa-1"))))
    end
    assert.equal(1, hits("main"))
    assert.equal(1, hits("limited"))
  end)

  it("verifies RSA, EC and OKP keys by kid, with no consumer", function()
    local res = get(gw, "/main", bearer(rs("rsa-1", { sub = "cognito-user" })))
    assert.res_status(200, res)
    assert.equal("cognito-user", assert.request(res).has.header("x-sub"))
    assert.equal("rsa-1",
                 assert.request(res).has.header("x-credential-identifier"))
    assert.request(res).has.no.header("x-consumer-id")
    assert.request(res).has.no.header("x-anonymous-consumer")
    assert.res_status(200, get(gw, "/main",
                               bearer(rs("ec-1", nil, k.ec256, "ES256"))))
    assert.res_status(200, get(gw, "/main",
                               bearer(rs("ec-521", nil, k.ec521, "ES512"))))
    assert.res_status(200, get(gw, "/main",
                               bearer(rs("ed-1", nil, k.ed25519, "EdDSA"))))
  end)

  it("tries every key when the token has no kid", function()
    local t = keys.token({ exp = now() + 60 }, "ES256", k.ec256)
    assert.res_status(200, get(gw, "/main", bearer(t)))
    local wrong = keys.token({ exp = now() + 60 }, "RS256", k.rsa2)
    assert_401(get(gw, "/main", bearer(wrong)), "Invalid signature")
  end)

  it("refuses a key used with another algorithm", function()
    -- the JWK says alg RS256
    assert_401(get(gw, "/main", bearer(rs("rsa-1", nil, k.rsa, "PS256"))),
               "Invalid algorithm")
    -- algorithm confusion: the RSA public key as an HS256 secret
    local t = keys.token({ exp = now() + 60 }, "HS256", k.rsa.public,
                         { typ = "JWT", alg = "HS256", kid = "rsa-1" })
    assert_401(get(gw, "/main", bearer(t)), "Invalid algorithm")
    -- symmetric (oct) keys and encryption keys are not loaded
    local hs = keys.token({ exp = now() + 60 }, "HS256", "secret",
                          { typ = "JWT", alg = "HS256", kid = "hs-1" })
    assert_401(get(gw, "/main", bearer(hs)),
               "No credentials found for given 'kid'")
    assert_401(get(gw, "/main", bearer(rs("rsa-enc", nil, k.rsa2))),
               "No credentials found for given 'kid'")
    -- an EC key of another curve
    assert_401(get(gw, "/main", bearer(rs("ec-1", nil, k.ec384, "ES384"))),
               "Invalid algorithm")
  end)

  it("refuses a bad signature and verifies the claims", function()
    assert_401(get(gw, "/main", bearer(rs("rsa-1", nil, k.rsa2))),
               "Invalid signature")
    local old = rs("rsa-1", { exp = now() - 1 })
    assert.same({ exp = "token expired" },
                assert_401(get(gw, "/main", bearer(old))))
  end)

  it("refetches at once for an unknown kid (key rotation)", function()
    assert.res_status(200, get(gw, "/rotate", bearer(rs("r-1"))))
    local before = hits("rotate")
    write_jwks("rotate", { keys.jwk(k.rsa2, "r-2") })
    assert.res_status(200, get(gw, "/rotate", bearer(rs("r-2", nil, k.rsa2))))
    assert.is_true(hits("rotate") > before)
    -- r-1 is gone from the new set: refused after that refetch
    assert_401(get(gw, "/rotate", bearer(rs("r-1"))),
               "No credentials found for given 'kid'")
  end)

  it("refetches for unknown kids at most once per interval", function()
    assert.res_status(200, get(gw, "/limited", bearer(rs("l-1"))))
    local before = hits("limited")
    assert_401(get(gw, "/limited", bearer(rs("l-2", nil, k.rsa2))),
               "No credentials found for given 'kid'")
    assert.equal(before + 1, hits("limited"))
    -- l-2 appears, but the next refetch is a minute away
    write_jwks("limited", { keys.jwk(k.rsa, "l-1"), keys.jwk(k.rsa2, "l-2") })
    for _ = 1, 5 do
      assert_401(get(gw, "/limited", bearer(rs("l-2", nil, k.rsa2))),
                 "No credentials found for given 'kid'")
    end
    assert.equal(before + 1, hits("limited"))
    assert.res_status(200, get(gw, "/limited", bearer(rs("l-1"))))
  end)

  it("refreshes old key sets in the background", function()
    assert.res_status(200, get(gw, "/refresh", bearer(rs("f-1"))))
    local before = hits("refresh")
    -- f-1 revoked: seen once the set is older than jwks_refresh_interval
    write_jwks("refresh", { keys.jwk(k.rsa2, "f-2") })
    helpers.wait_until(function()
      local res = get(gw, "/refresh", bearer(rs("f-1")))
      return res.status == 401
    end, 10)
    assert.is_true(hits("refresh") > before)
    assert.res_status(200, get(gw, "/refresh", bearer(rs("f-2", nil, k.rsa2))))
  end)

  it("uses the next URL when one serves no key set", function()
    assert.res_status(200, get(gw, "/two", bearer(rs("rsa-1"))))
    assert.is_true(hits("bad") >= 1)
  end)

  it("answers 401 when the key set cannot be fetched", function()
    assert_401(get(gw, "/down", bearer(rs("rsa-1"))),
               "No credentials found for given 'kid'")
    assert_401(get(gw, "/down", bearer(keys.token({ exp = now() + 60 },
                                                  "RS256", k.rsa))),
               "Invalid algorithm")
    local log = helpers.read_file(gw.error_log) or ""
    assert.matches("JWKS http://127.0.0.1:%d+/x: could not fetch", log)
  end)
end)
