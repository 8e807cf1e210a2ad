-- key-auth through the real binary and the mock upstream: where the key is
-- looked for, every 401 and its WWW-Authenticate, the upstream consumer
-- headers, hide_credentials, anonymous (logical OR), preflight.
local helpers = require "spec.helpers"

local fmt = string.format
local FIXTURES = helpers.root .. "/spec/fixtures/plugins"

local BOB_ID = "5f8e0b3a-1c2d-4e5f-8a9b-0c1d2e3f4a5b"
local ANON_ID = "0a1b2c3d-4e5f-4a6b-8c7d-9e0f1a2b3c4d"
local BOB_KEY_ID = "7d6c5b4a-3e2f-4a1b-9c8d-7e6f5a4b3c2d"

local ROUTES = {
  { "/default", {} },
  { "/hide", { hide_credentials = true } },
  { "/anon-id", { anonymous = ANON_ID } },
  { "/anon-name", { anonymous = "no-body" } },
  { "/anon-missing", { anonymous = "1b2c3d4e-5f6a-4b7c-8d9e-0f1a2b3c4d5e" } },
  { "/body", { key_in_body = true } },
  { "/body-hide", { key_in_body = true, hide_credentials = true } },
  { "/no-preflight", { run_on_preflight = false } },
  { "/underscore", { key_names = { "api_key" } } },
  { "/dash", { key_names = { "api-key" } } },
  { "/underscore-hide", { key_names = { "api_key" },
                          hide_credentials = true } },
  { "/realm", { realm = "test-realm" } },
  { "/no-header", { key_in_header = false } },
  { "/no-query", { key_in_query = false } },
  { "/two-names", { key_names = { "k1", "k2" } } },
}


local function config(mock_port)
  local routes = {}
  for i, r in ipairs(ROUTES) do
    routes[i] = {
      name = "r" .. i,
      paths = { r[1] },
      plugins = { { name = "key-auth", config = r[2] } },
    }
  end
  routes[#routes + 1] = {
    name = "scoped",
    paths = { "/scoped" },
    plugins = {
      { name = "key-auth" },
      { name = "rt-conf", config = { label = "route" } },
    },
  }
  return {
    _format_version = "3.0",
    services = {
      { name = "mock", url = fmt("http://127.0.0.1:%d", mock_port),
        routes = routes },
    },
    consumers = {
      { id = BOB_ID, username = "bob", custom_id = "bob-cid",
        keyauth_credentials = { { id = BOB_KEY_ID, key = "kong" } },
        plugins = {
          { name = "rt-conf", route = "scoped",
            config = { label = "bob" } },
        } },
      { id = ANON_ID, username = "no-body" },
      { username = "alice",
        keyauth_credentials = { { key = "alice-key" } } },
      -- a custom_id no header can carry: the runtime refuses it
      { username = "carol", custom_id = "c\r\nX-Evil: 1",
        keyauth_credentials = { { key = "carol-key" } } },
    },
  }
end


describe("key-auth", function()
  local mock, gw, client

  lazy_setup(function()
    mock = helpers.mock_upstream()
    gw = assert(helpers.start_luagate({
      config = config(mock.port),
      args = { "--plugins-dir", FIXTURES },
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

  local function json(res, status)
    return assert(helpers.json_decode(assert.res_status(status, res)))
  end

  -- the upstream echo of an authenticated request
  local function echo(res)
    return json(res, 200)
  end

  local function assert_401(res, message, www)
    local body = json(res, 401)
    assert.equal(message, body.message)
    assert.is_string(body.request_id)
    assert.equal(www or "Key", res.headers["www-authenticate"])
  end

  describe("without a key", function()
    it("answers 401 No API key found in request", function()
      local res = client:get("/default/request")
      assert_401(res, "No API key found in request")
      assert.equal("application/json; charset=utf-8",
                   res.headers["content-type"])
    end)

    it("treats an empty header or a value-less argument as no key",
       function()
      assert_401(client:get("/default", { headers = { apikey = "" } }),
                 "No API key found in request")
      assert_401(client:get("/default?apikey"),
                 "No API key found in request")
      assert_401(client:get("/default?apikey="),
                 "No API key found in request")
    end)

    it("sends the realm when configured", function()
      assert_401(client:get("/realm"), "No API key found in request",
                 'Key realm="test-realm"')
      assert_401(client:get("/realm?apikey=nope"), "Unauthorized",
                 'Key realm="test-realm"')
      assert_401(client:get("/realm?apikey=a&apikey=b"),
                 "Duplicate API key found", 'Key realm="test-realm"')
    end)

    it("answers in the client's format", function()
      local res = client:get("/default", { headers = {
        Accept = "text/plain" } })
      local body = assert.res_status(401, res)
      assert.truthy(body:match(
        "^No API key found in request\nrequest_id: %x+\n$"), body)
      assert.equal("Key", res.headers["www-authenticate"])
    end)
  end)

  describe("key in a header", function()
    it("authenticates and sends the consumer headers upstream", function()
      local d = echo(client:get("/default/request", {
        headers = { apikey = "kong" } }))
      assert.equal(BOB_ID, d.headers["x-consumer-id"])
      assert.equal("bob", d.headers["x-consumer-username"])
      assert.equal("bob-cid", d.headers["x-consumer-custom-id"])
      assert.equal(BOB_KEY_ID, d.headers["x-credential-identifier"])
      assert.is_nil(d.headers["x-anonymous-consumer"])
      -- hide_credentials is off: the key goes upstream
      assert.equal("kong", d.headers.apikey)
    end)

    it("matches the header name case-insensitively", function()
      local d = echo(client:get("/default", {
        headers = { ApiKey = "kong" } }))
      assert.equal("bob", d.headers["x-consumer-username"])
    end)

    it("answers 401 Unauthorized for an unknown key", function()
      assert_401(client:get("/default", { headers = { apikey = "nope" } }),
                 "Unauthorized")
      -- keys are case-sensitive
      assert_401(client:get("/default", { headers = { apikey = "KONG" } }),
                 "Unauthorized")
    end)

    it("refuses a repeated header", function()
      assert_401(client:get("/default", {
        headers = { apikey = { "kong", "kong" } } }),
        "Duplicate API key found")
    end)

    it("overwrites consumer headers the client sent", function()
      local d = echo(client:get("/default", { headers = {
        apikey = "alice-key",
        ["X-Consumer-Username"] = "evil",
        ["X-Consumer-ID"] = "evil-id",
        ["X-Consumer-Custom-ID"] = "evil-cid",
        ["X-Credential-Identifier"] = "evil-cred",
        ["X-Anonymous-Consumer"] = "true",
      } }))
      assert.equal("alice", d.headers["x-consumer-username"])
      assert.not_equal("evil-id", d.headers["x-consumer-id"])
      assert.is_string(d.headers["x-consumer-id"])
      -- alice has no custom_id: the client's header is removed
      assert.is_nil(d.headers["x-consumer-custom-id"])
      assert.not_equal("evil-cred", d.headers["x-credential-identifier"])
      assert.is_nil(d.headers["x-anonymous-consumer"])
    end)

    it("answers 500 for a consumer value with CR or LF, with Kong's " ..
       "message, and sends nothing upstream", function()
      mock.clear()
      local body = json(client:get("/default", {
        headers = { apikey = "carol-key" } }), 500)
      assert.equal("An unexpected error occurred", body.message)
      helpers.wait_until(function()
        return (helpers.read_file(gw.error_log) or ""):find(
          'invalid header value for "X-Consumer-Custom-ID": contains CR ' ..
          'or LF', 1, true) ~= nil
      end, 10)
      assert.same({}, mock.requests())
    end)

    it("is looked for before the query string", function()
      local d = echo(client:get("/default?apikey=nope", {
        headers = { apikey = "kong" } }))
      assert.equal("bob", d.headers["x-consumer-username"])
      assert_401(client:get("/default?apikey=kong", {
        headers = { apikey = "nope" } }), "Unauthorized")
    end)

    it("is ignored with key_in_header off", function()
      assert_401(client:get("/no-header", { headers = { apikey = "kong" } }),
                 "No API key found in request")
      local d = echo(client:get("/no-header?apikey=kong"))
      assert.equal("bob", d.headers["x-consumer-username"])
    end)

    it("finds a key name with '_' sent with '_' or '-'", function()
      for _, name in ipairs({ "api_key", "api-key", "API_KEY" }) do
        local d = echo(client:get("/underscore", {
          headers = { [name] = "kong" } }))
        assert.equal("bob", d.headers["x-consumer-username"])
      end
      assert_401(client:get("/underscore", {
        headers = { api_key = "nope" } }), "Unauthorized")
      -- the query argument name is exact
      local d = echo(client:get("/underscore?api_key=kong"))
      assert.equal("bob", d.headers["x-consumer-username"])
      assert_401(client:get("/underscore?api-key=kong"),
                 "No API key found in request")
    end)

    it("finds a key name with '-' sent with '-' only", function()
      for _, name in ipairs({ "api-key", "Api-Key" }) do
        local d = echo(client:get("/dash", { headers = { [name] = "kong" } }))
        assert.equal("bob", d.headers["x-consumer-username"])
      end
      assert_401(client:get("/dash", { headers = { api_key = "kong" } }),
                 "No API key found in request")
    end)

    it("tries the key names in order", function()
      local d = echo(client:get("/two-names", { headers = { k2 = "kong" } }))
      assert.equal("bob", d.headers["x-consumer-username"])
      -- the first name found is the key, even if another would pass
      assert_401(client:get("/two-names", {
        headers = { k1 = "nope", k2 = "kong" } }), "Unauthorized")
      assert_401(client:get("/two-names", {
        headers = { apikey = "kong" } }), "No API key found in request")
    end)
  end)

  describe("key in the query string", function()
    it("authenticates", function()
      local d = echo(client:get("/default/request?apikey=kong&x=1"))
      assert.equal("bob", d.headers["x-consumer-username"])
      assert.equal("kong", d.query.apikey)
      assert.equal("1", d.query.x)
    end)

    it("answers 401 Unauthorized for an unknown key", function()
      assert_401(client:get("/default?apikey=123"), "Unauthorized")
    end)

    it("refuses a repeated argument", function()
      assert_401(client:get("/default?apikey=kong&apikey=kong"),
                 "Duplicate API key found")
    end)

    it("decodes the argument", function()
      local d = echo(client:get("/default?apikey=alice%2Dkey"))
      assert.equal("alice", d.headers["x-consumer-username"])
    end)

    it("is ignored with key_in_query off", function()
      assert_401(client:get("/no-query?apikey=kong"),
                 "No API key found in request")
    end)
  end)

  describe("key in the body", function()
    local BOUNDARY = "XyZboundary"

    local function multipart(fields)
      local parts = {}
      for _, f in ipairs(fields) do
        parts[#parts + 1] = "--" .. BOUNDARY .. "\r\n" ..
          'Content-Disposition: form-data; name="' .. f[1] .. '"\r\n\r\n' ..
          f[2] .. "\r\n"
      end
      return table.concat(parts) .. "--" .. BOUNDARY .. "--\r\n"
    end

    local BODIES = {
      form = {
        ct = "application/x-www-form-urlencoded",
        make = function(key) return "apikey=" .. key .. "&other=1" end,
      },
      json = {
        ct = "application/json",
        make = function(key)
          return helpers.json_encode({ apikey = key, other = "1" })
        end,
      },
      multipart = {
        ct = "multipart/form-data; boundary=" .. BOUNDARY,
        make = function(key)
          return multipart({ { "apikey", key }, { "other", "1" } })
        end,
      },
    }

    for name, b in pairs(BODIES) do
      describe(name, function()
        it("authenticates", function()
          local d = echo(client:post("/body/request", {
            headers = { ["Content-Type"] = b.ct }, body = b.make("kong") }))
          assert.equal("bob", d.headers["x-consumer-username"])
          -- the body goes upstream as sent
          assert.equal(b.make("kong"), d.body)
        end)

        it("answers 401 Unauthorized for an unknown key", function()
          assert_401(client:post("/body", {
            headers = { ["Content-Type"] = b.ct }, body = b.make("nope") }),
            "Unauthorized")
        end)

        it("is not looked at with key_in_body off", function()
          assert_401(client:post("/default", {
            headers = { ["Content-Type"] = b.ct }, body = b.make("kong") }),
            "No API key found in request")
        end)

        it("is removed with hide_credentials", function()
          local d = echo(client:post("/body-hide/request", {
            headers = { ["Content-Type"] = b.ct }, body = b.make("kong") }))
          assert.equal("bob", d.headers["x-consumer-username"])
          assert.is_nil(d.body:find("kong", 1, true))
          assert.truthy(d.body:find("other", 1, true))
        end)
      end)
    end

    it("refuses a repeated form field or a JSON array", function()
      assert_401(client:post("/body", {
        headers = { ["Content-Type"] = "application/x-www-form-urlencoded" },
        body = "apikey=kong&apikey=kong" }), "Duplicate API key found")
      assert_401(client:post("/body", {
        headers = { ["Content-Type"] = "application/json" },
        body = '{"apikey":["kong","kong"]}' }), "Duplicate API key found")
    end)

    it("does not take apikey[] or a non-string JSON value as the key",
       function()
      assert_401(client:post("/body", {
        headers = { ["Content-Type"] = "application/x-www-form-urlencoded" },
        body = "apikey[]=kong&apikey[]=kong" }),
        "No API key found in request")
      assert_401(client:post("/body", {
        headers = { ["Content-Type"] = "application/json" },
        body = '{"apikey":42}' }), "No API key found in request")
    end)

    it("treats an unreadable body as no key", function()
      assert_401(client:post("/body", {
        headers = { ["Content-Type"] = "application/json" },
        body = "{not json" }), "No API key found in request")
      -- a body not read is not drained: each on its own connection
      assert_401(helpers.request_once(gw.proxy_port, {
        method = "POST", path = "/body",
        headers = { ["Content-Type"] = "text/plain" },
        body = "apikey=kong" }), "No API key found in request")
      assert_401(helpers.request_once(gw.proxy_port, {
        method = "POST", path = "/body", body = "apikey=kong" }),
        "No API key found in request")
    end)

    it("comes after the header and the query string", function()
      local d = echo(client:post("/body?apikey=alice-key", {
        headers = { ["Content-Type"] = "application/x-www-form-urlencoded" },
        body = "apikey=nope" }))
      assert.equal("alice", d.headers["x-consumer-username"])
    end)
  end)

  describe("hide_credentials", function()
    it("removes the header", function()
      local d = echo(client:get("/hide/request", {
        headers = { apikey = "kong", ["X-Other"] = "1" } }))
      assert.equal("bob", d.headers["x-consumer-username"])
      assert.is_nil(d.headers.apikey)
      assert.equal("1", d.headers["x-other"])
    end)

    it("removes the query argument and keeps the others", function()
      local d = echo(client:get("/hide/request?a=1&apikey=kong&b=2"))
      assert.equal("bob", d.headers["x-consumer-username"])
      assert.is_nil(d.query.apikey)
      assert.equal("1", d.query.a)
      assert.equal("2", d.query.b)
    end)

    it("removes the argument of that name when the header was used",
       function()
      local d = echo(client:get("/hide/request?apikey=other", {
        headers = { apikey = "kong" } }))
      assert.is_nil(d.headers.apikey)
      assert.is_nil(d.query.apikey)
    end)

    it("removes a key name with '_' however it was sent", function()
      for _, name in ipairs({ "api_key", "api-key" }) do
        local d = echo(client:get("/underscore-hide/request", {
          headers = { [name] = "kong" } }))
        assert.equal("bob", d.headers["x-consumer-username"])
        assert.is_nil(d.headers.api_key)
        assert.is_nil(d.headers["api-key"])
      end
    end)
  end)

  describe("anonymous", function()
    it("lets a request without key through as the anonymous consumer",
       function()
      for _, path in ipairs({ "/anon-id", "/anon-name" }) do
        local d = echo(client:get(path .. "/request"))
        assert.equal("true", d.headers["x-anonymous-consumer"])
        assert.equal(ANON_ID, d.headers["x-consumer-id"])
        assert.equal("no-body", d.headers["x-consumer-username"])
        assert.is_nil(d.headers["x-credential-identifier"])
        assert.is_nil(d.headers["x-consumer-custom-id"])
      end
    end)

    it("also takes an unknown or repeated key as anonymous", function()
      local d = echo(client:get("/anon-id?apikey=nope"))
      assert.equal("no-body", d.headers["x-consumer-username"])
      d = echo(client:get("/anon-id?apikey=kong&apikey=kong"))
      assert.equal("no-body", d.headers["x-consumer-username"])
    end)

    it("authenticates a valid key as usual", function()
      local d = echo(client:get("/anon-id", { headers = { apikey = "kong" } }))
      assert.equal("bob", d.headers["x-consumer-username"])
      assert.is_nil(d.headers["x-anonymous-consumer"])
      assert.equal(BOB_KEY_ID, d.headers["x-credential-identifier"])
    end)

    it("removes a client's X-Anonymous-Consumer on success", function()
      local d = echo(client:get("/anon-id", { headers = {
        apikey = "kong", ["X-Anonymous-Consumer"] = "true" } }))
      assert.is_nil(d.headers["x-anonymous-consumer"])
    end)

    it("answers 500 when the anonymous consumer does not exist", function()
      local body = json(client:get("/anon-missing"), 500)
      assert.equal("An unexpected error occurred", body.message)
      helpers.wait_until(function()
        return (helpers.read_file(gw.error_log) or ""):find(
          "anonymous consumer 1b2c3d4e-5f6a-4b7c-8d9e-0f1a2b3c4d5e is " ..
          "configured but doesn't exist", 1, true) ~= nil
      end, 10)
      -- a valid key does not need it
      local d = echo(client:get("/anon-missing?apikey=kong"))
      assert.equal("bob", d.headers["x-consumer-username"])
    end)
  end)

  describe("preflight", function()
    it("authenticates OPTIONS by default", function()
      assert_401(client:options("/default"), "No API key found in request")
    end)

    it("lets OPTIONS through with run_on_preflight off", function()
      local d = echo(client:options("/no-preflight/request"))
      assert.equal("OPTIONS", d.method)
      assert.is_nil(d.headers["x-consumer-id"])
      assert_401(client:get("/no-preflight"), "No API key found in request")
    end)
  end)

  describe("consumer-scoped plugins", function()
    it("apply after the key authenticated their consumer", function()
      local res = client:get("/scoped", { headers = { apikey = "kong" } })
      assert.res_status(200, res)
      assert.equal("bob", res.headers["x-conf-label"])
      res = client:get("/scoped", { headers = { apikey = "alice-key" } })
      assert.res_status(200, res)
      assert.equal("route", res.headers["x-conf-label"])
    end)
  end)
end)
