-- jwt: key sets fetched from https:// jwks_urls (luagate.http over the
-- cosockets' TLS), verified against --lua-ssl-trusted-certificate. The key
-- sets are served by a TLS mock upstream (--static-dir).
local helpers = require "spec.helpers"
local cjson = require "cjson"

local fmt = string.format
local HERE = helpers.root .. "/spec/03-plugins/04-jwt"
local keys = dofile(HERE .. "/keys.lua")


local function get(gw, path, token)
  local c = helpers.proxy_client(gw)
  local res, err = c:send({ path = path, headers = {
    Authorization = "Bearer " .. token } })
  c:close()
  return assert(res, err)
end


describe("jwt: JWKS over https", function()
  local tls, k, up, other, mock, gw

  local function rs(kid)
    return keys.token({ exp = os.time() + 600, sub = "tls-user" }, "RS256",
                      k.rsa, { typ = "JWT", alg = "RS256", kid = kid })
  end

  lazy_setup(function()
    tls = require("spec.tls_fixtures").get()
    local dir = helpers.make_prefix("jwt-jwks-https")
    k = keys.generate(dir)
    helpers.write_file(dir .. "/set.json", cjson.encode({
      keys = { keys.jwk(k.rsa, "tls-1", { use = "sig", alg = "RS256" }) } }))
    local c = tls.certs.upstream
    up = helpers.mock_upstream({ tls = { cert = c.cert, key = c.key },
                                 static_dir = dir })
    -- a certificate for example.test only: "localhost" does not match it
    local ex = tls.certs["example.test"]
    other = helpers.mock_upstream({ tls = { cert = ex.cert, key = ex.key },
                                    static_dir = dir })
    mock = helpers.mock_upstream()
    local function route(name, url)
      return { name = name, paths = { "/" .. name }, plugins = { {
        name = "jwt", config = { jwks_urls = { url }, jwks_timeout = 2000,
                                 claims_to_verify = { "exp" },
                                 claims_to_headers = { sub = "X-Sub" } } } } }
    end
    gw = assert(helpers.start_luagate({
      args = { "--lua-ssl-trusted-certificate", tls.ca.cert },
      config = {
        _format_version = "3.0",
        services = { {
          name = "mock", url = fmt("http://127.0.0.1:%d", mock.port),
          routes = {
            route("good", fmt("https://localhost:%d/static/set.json", up.port)),
            route("mismatch",
                  fmt("https://localhost:%d/static/set.json", other.port)),
          },
        } },
      },
    }))
  end)

  lazy_teardown(function()
    if gw then helpers.stop_luagate(gw) end
    up.stop()
    other.stop()
    mock.stop()
  end)

  it("verifies tokens with a key set fetched over https", function()
    local res
    helpers.wait_until(function()
      res = get(gw, "/good", rs("tls-1"))
      return res.status == 200
    end, 10)
    assert.equal("tls-user", assert.request(res).has.header("x-sub"))
    -- a key the set does not have
    local body = assert.res_status(401, get(gw, "/good", rs("other")))
    assert.same({ message = "No credentials found for given 'kid'" },
                cjson.decode(body))
  end)

  it("does not trust a key set whose server certificate does not verify",
     function()
    local body = assert.res_status(401, get(gw, "/mismatch", rs("tls-1")))
    assert.same({ message = "No credentials found for given 'kid'" },
                cjson.decode(body))
    helpers.wait_until(function()
      local log = helpers.read_file(gw.error_log) or ""
      return log:find("JWKS https://localhost:" .. other.port ..
                      "/static/set.json: could not fetch: TLS handshake " ..
                      "failed: certificate host mismatch", 1, true)
    end, 10)
  end)
end)
