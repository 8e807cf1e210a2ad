-- cors through the real binary and the mock upstream: preflights answered
-- by the gateway, headers on proxied and rejected responses, origin
-- matching (exact, regex on host or scheme://host:port), credentials,
-- preflight_continue, private network, allow_origin_absent.
local helpers = require "spec.helpers"

local fmt = string.format

local ALL_METHODS = "GET,HEAD,PUT,PATCH,POST,DELETE,OPTIONS,TRACE,CONNECT"


-- routes: { path = "/x", plugins = { { name =, config = } } }
local function config(mock_port, routes)
  local list = {}
  for i, rt in ipairs(routes) do
    list[i] = { name = "route-" .. i, paths = { rt.path },
                plugins = rt.plugins }
  end
  return {
    _format_version = "3.0",
    services = {
      { name = "mock", url = fmt("http://127.0.0.1:%d", mock_port),
        routes = list },
    },
  }
end


local function cors(conf)
  return { { name = "cors", config = conf or {} } }
end


local function preflight(client, path, origin, extra)
  local headers = {
    Origin = origin,
    ["Access-Control-Request-Method"] = "GET",
  }
  for k, v in pairs(extra or {}) do
    headers[k] = v
  end
  return client:options(path, { headers = headers })
end


describe("cors", function()
  local mock, gw, client

  lazy_setup(function()
    mock = helpers.mock_upstream()
    gw = assert(helpers.start_luagate({
      config = config(mock.port, {
        { path = "/default", plugins = cors() },
        { path = "/full", plugins = cors({
            origins = { "http://example.com", "http://example.org" },
            methods = { "GET" },
            headers = { "origin", "type", "accepts" },
            exposed_headers = { "x-auth-token" },
            max_age = 23,
            credentials = true,
          }) },
        { path = "/single", plugins = cors({
            origins = { "http://example.com" },
          }) },
        { path = "/regex", plugins = cors({
            origins = { "(.*[./])?example\\.org", "http://www.example.net",
                        "https://api.example.io:8443" },
          }) },
        { path = "/regex-port", plugins = cors({
            origins = { "http://(a|b)\\.example\\.com:80[0-9]{2}",
                        "^https://secure\\.example\\.com$" },
          }) },
        { path = "/star-creds", plugins = cors({
            origins = { "*" }, credentials = true,
          }) },
        { path = "/star-among", plugins = cors({
            origins = { "http://only.com", "*" },
          }) },
        { path = "/continue", plugins = cors({
            preflight_continue = true,
          }) },
        { path = "/pna", plugins = cors({ private_network = true }) },
        { path = "/no-absent", plugins = cors({
            origins = { "http://example.com", "http://example.org" },
            allow_origin_absent = false,
          }) },
        { path = "/terminated", plugins = {
            { name = "cors", config = { origins = { "http://a.com", "x.*" },
                                        exposed_headers = { "x-a", "x-b" } } },
            { name = "request-termination", config = { status_code = 418,
                                                       message = "teapot" } },
          } },
      }),
    }))
  end)

  lazy_teardown(function()
    if gw then helpers.stop_luagate(gw) end
    if mock then mock.stop() end
  end)

  before_each(function()
    client = helpers.proxy_client(gw)
  end)

  after_each(function()
    if client then client:close() end
  end)

  describe("preflight", function()
    it("is answered by the gateway with the default config", function()
      mock.clear()
      local res = preflight(client, "/default", "http://my.site")
      assert.res_status(200, res)
      assert.equal("", res.body)
      assert.equal("*", res.headers["access-control-allow-origin"])
      assert.equal(ALL_METHODS, res.headers["access-control-allow-methods"])
      assert.is_nil(res.headers["access-control-allow-headers"])
      assert.is_nil(res.headers["access-control-max-age"])
      assert.is_nil(res.headers["access-control-allow-credentials"])
      assert.is_nil(res.headers["access-control-expose-headers"])
      assert.is_nil(res.headers["vary"])
      assert.is_nil(res.headers["access-control-allow-private-network"])
      -- the upstream never saw it
      assert.same({}, mock.requests())
    end)

    it("echoes Access-Control-Request-Headers when no headers are set",
       function()
      local res = preflight(client, "/default", "http://my.site", {
        ["Access-Control-Request-Headers"] = "X-Custom, Authorization",
      })
      assert.res_status(200, res)
      assert.equal("X-Custom, Authorization",
                   res.headers["access-control-allow-headers"])
    end)

    it("sends every configured header", function()
      local res = preflight(client, "/full", "http://example.com", {
        ["Access-Control-Request-Headers"] = "X-Ignored",
      })
      assert.res_status(200, res)
      assert.equal("http://example.com",
                   res.headers["access-control-allow-origin"])
      assert.equal("GET", res.headers["access-control-allow-methods"])
      assert.equal("origin,type,accepts",
                   res.headers["access-control-allow-headers"])
      assert.equal("23", res.headers["access-control-max-age"])
      assert.equal("true", res.headers["access-control-allow-credentials"])
      assert.equal("Origin", res.headers["vary"])
      -- exposed headers are for actual responses only
      assert.is_nil(res.headers["access-control-expose-headers"])
    end)

    it("removes ACAO for an origin that is not listed", function()
      local res = preflight(client, "/full", "http://evil.com")
      assert.res_status(200, res)
      assert.is_nil(res.headers["access-control-allow-origin"])
      assert.equal("Origin", res.headers["vary"])
      assert.equal("true", res.headers["access-control-allow-credentials"])
    end)

    it("echoes the origin with credentials and '*'", function()
      local res = preflight(client, "/star-creds", "http://my.site")
      assert.res_status(200, res)
      assert.equal("http://my.site",
                   res.headers["access-control-allow-origin"])
      assert.equal("true", res.headers["access-control-allow-credentials"])
      assert.equal("Origin", res.headers["vary"])
    end)

    it("is proxied with preflight_continue, without CORS headers", function()
      mock.clear()
      local res = preflight(client, "/continue", "http://my.site")
      local echo = assert(helpers.json_decode(assert.res_status(200, res)))
      assert.equal("OPTIONS", echo.method)
      assert.equal("http://my.site", echo.headers["origin"])
      assert.is_nil(res.headers["access-control-allow-origin"])
      assert.is_nil(res.headers["access-control-allow-methods"])
      assert.equal(1, #mock.requests())
    end)

    it("allows private network access when asked and configured", function()
      local res = preflight(client, "/pna", "http://my.site", {
        ["Access-Control-Request-Private-Network"] = "true",
      })
      assert.res_status(200, res)
      assert.equal("true",
                   res.headers["access-control-allow-private-network"])

      res = preflight(client, "/pna", "http://my.site")
      assert.res_status(200, res)
      assert.is_nil(res.headers["access-control-allow-private-network"])

      res = preflight(client, "/default", "http://my.site", {
        ["Access-Control-Request-Private-Network"] = "true",
      })
      assert.res_status(200, res)
      assert.is_nil(res.headers["access-control-allow-private-network"])
    end)

    it("needs Origin and Access-Control-Request-Method", function()
      -- no Access-Control-Request-Method: a plain OPTIONS, proxied
      local res = client:options("/full", {
        headers = { Origin = "http://example.com" },
      })
      local echo = assert(helpers.json_decode(assert.res_status(200, res)))
      assert.equal("OPTIONS", echo.method)
      assert.equal("http://example.com",
                   res.headers["access-control-allow-origin"])
      assert.equal("x-auth-token",
                   res.headers["access-control-expose-headers"])
      assert.is_nil(res.headers["access-control-allow-methods"])

      -- no Origin: proxied too
      res = client:options("/full", {
        headers = { ["Access-Control-Request-Method"] = "GET" },
      })
      echo = assert(helpers.json_decode(assert.res_status(200, res)))
      assert.equal("OPTIONS", echo.method)
      assert.is_nil(res.headers["access-control-allow-methods"])
    end)
  end)

  describe("actual requests", function()
    it("get ACAO '*' with the default config", function()
      local res = client:get("/default", {
        headers = { Origin = "http://my.site" },
      })
      local echo = assert(helpers.json_decode(assert.res_status(200, res)))
      assert.equal("GET", echo.method)
      assert.equal("*", res.headers["access-control-allow-origin"])
      assert.is_nil(res.headers["access-control-allow-credentials"])
      assert.is_nil(res.headers["access-control-expose-headers"])
      assert.is_nil(res.headers["access-control-allow-methods"])
      assert.is_nil(res.headers["vary"])
    end)

    it("get ACAO without an Origin (allow_origin_absent)", function()
      local res = client:get("/default")
      assert.res_status(200, res)
      assert.equal("*", res.headers["access-control-allow-origin"])
    end)

    it("get the listed origin, ACAC, exposed headers and Vary", function()
      local res = client:get("/full", {
        headers = { Origin = "http://example.org" },
      })
      assert.res_status(200, res)
      assert.equal("http://example.org",
                   res.headers["access-control-allow-origin"])
      assert.equal("true", res.headers["access-control-allow-credentials"])
      assert.equal("x-auth-token",
                   res.headers["access-control-expose-headers"])
      assert.equal("Origin", res.headers["vary"])
      assert.is_nil(res.headers["access-control-allow-methods"])
      assert.is_nil(res.headers["access-control-max-age"])
    end)

    it("drop ACAO for an origin that is not listed", function()
      local res = client:get("/full", {
        headers = { Origin = "http://example.net" },
      })
      assert.res_status(200, res)
      assert.is_nil(res.headers["access-control-allow-origin"])
      assert.equal("Origin", res.headers["vary"])
    end)

    it("keep the upstream's Vary and add Origin", function()
      local res = client:get("/full/response-headers?Vary=Accept-Encoding", {
        headers = { Origin = "http://example.com" },
      })
      assert.res_status(200, res)
      assert.same({ "Accept-Encoding", "Origin" }, res.headers["vary"])
    end)

    it("replace an ACAO the upstream sent", function()
      local res = client:get(
        "/full/response-headers?Access-Control-Allow-Origin=http://up.com",
        { headers = { Origin = "http://evil.com" } })
      assert.res_status(200, res)
      assert.is_nil(res.headers["access-control-allow-origin"])
      res = client:get(
        "/full/response-headers?Access-Control-Allow-Origin=http://up.com",
        { headers = { Origin = "http://example.com" } })
      assert.res_status(200, res)
      assert.equal("http://example.com",
                   res.headers["access-control-allow-origin"])
    end)

    it("get a single literal origin whatever the request's", function()
      for _, origin in ipairs({ "http://example.com", "http://other.com" }) do
        local res = client:get("/single", { headers = { Origin = origin } })
        assert.res_status(200, res)
        assert.equal("http://example.com",
                     res.headers["access-control-allow-origin"])
        assert.equal("Origin", res.headers["vary"])
      end
      local res = client:get("/single")
      assert.res_status(200, res)
      assert.equal("http://example.com",
                   res.headers["access-control-allow-origin"])
    end)

    it("match regexes on the host, anchored", function()
      local cases = {
        { "http://example.org", "http://example.org" },
        { "https://www.example.org", "https://www.example.org" },
        { "http://a.b.example.org:8080", "http://a.b.example.org:8080" },
        -- default ports are dropped from the echoed origin
        { "https://example.org:443", "https://example.org" },
        { "http://example.org:80", "http://example.org" },
        -- not anchored at both ends
        { "http://example.org.evil.com", nil },
        { "http://notexample.org", nil },
        -- plain entries compare the normalized origin
        { "http://www.example.net", "http://www.example.net" },
        { "http://www.example.net:80", "http://www.example.net" },
        { "https://www.example.net", nil },
        { "https://api.example.io:8443", "https://api.example.io:8443" },
        { "https://api.example.io", nil },
      }
      for _, case in ipairs(cases) do
        local res = client:get("/regex", { headers = { Origin = case[1] } })
        assert.res_status(200, res)
        assert.equal(case[2], res.headers["access-control-allow-origin"],
                     case[1])
        assert.equal("Origin", res.headers["vary"])
      end
    end)

    it("match regexes with ':' on scheme://host:port", function()
      local cases = {
        { "http://a.example.com:8042", "http://a.example.com:8042" },
        { "http://b.example.com:8099", "http://b.example.com:8099" },
        { "http://c.example.com:8042", nil },
        { "http://a.example.com:9042", nil },
        { "https://a.example.com:8042", nil },
        { "https://secure.example.com", "https://secure.example.com" },
        { "https://secure.example.com:443", "https://secure.example.com" },
        { "http://secure.example.com", nil },
      }
      for _, case in ipairs(cases) do
        local res = client:get("/regex-port",
                               { headers = { Origin = case[1] } })
        assert.res_status(200, res)
        assert.equal(case[2], res.headers["access-control-allow-origin"],
                     case[1])
      end
    end)

    it("get '*' when '*' is among several origins", function()
      local res = client:get("/star-among", {
        headers = { Origin = "http://any.com" },
      })
      assert.res_status(200, res)
      assert.equal("*", res.headers["access-control-allow-origin"])
      assert.equal("Origin", res.headers["vary"])
    end)

    it("echo the origin with credentials and '*'", function()
      local res = client:get("/star-creds", {
        headers = { Origin = "http://My.Site:8080" },
      })
      assert.res_status(200, res)
      assert.equal("http://My.Site:8080",
                   res.headers["access-control-allow-origin"])
      assert.equal("true", res.headers["access-control-allow-credentials"])
      assert.equal("Origin", res.headers["vary"])
      -- without an Origin: '*' and no credentials
      res = client:get("/star-creds")
      assert.res_status(200, res)
      assert.equal("*", res.headers["access-control-allow-origin"])
      assert.is_nil(res.headers["access-control-allow-credentials"])
      assert.is_nil(res.headers["vary"])
    end)

    it("get no CORS header without Origin when allow_origin_absent is off",
       function()
      local res = client:get("/no-absent")
      assert.res_status(200, res)
      assert.is_nil(res.headers["access-control-allow-origin"])
      assert.is_nil(res.headers["vary"])
      res = client:get("/no-absent", {
        headers = { Origin = "http://example.org" },
      })
      assert.res_status(200, res)
      assert.equal("http://example.org",
                   res.headers["access-control-allow-origin"])
    end)

    it("get CORS headers on responses another plugin produced", function()
      local res = client:get("/terminated", {
        headers = { Origin = "http://a.com" },
      })
      local body = assert(helpers.json_decode(assert.res_status(418, res)))
      assert.same({ message = "teapot" }, body)
      assert.equal("http://a.com", res.headers["access-control-allow-origin"])
      assert.equal("x-a,x-b", res.headers["access-control-expose-headers"])
      assert.equal("Origin", res.headers["vary"])
    end)

    it("answers a preflight before another plugin rejects it", function()
      local res = preflight(client, "/terminated", "http://xyz")
      assert.res_status(200, res)
      assert.equal("http://xyz", res.headers["access-control-allow-origin"])
      assert.is_nil(res.headers["access-control-expose-headers"])
    end)

    it("do not fail on odd Origin values", function()
      for _, origin in ipairs({ "null", "", "not a url", "http://",
                                "http://[::1]:8080", "://x" }) do
        local res = client:get("/regex", { headers = { Origin = origin } })
        assert.res_status(200, res)
        assert.is_nil(res.headers["access-control-allow-origin"], origin)
      end
    end)
  end)
end)
