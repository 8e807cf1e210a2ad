-- basic-auth through the real binary and the mock upstream: both headers,
-- every 401 and its WWW-Authenticate, consumer headers, hide_credentials,
-- anonymous, several auth plugins (AND / OR), _transform: false.
local helpers = require "spec.helpers"
local codec = require "luagate.ngx.codec"

local fmt = string.format

local BOB_ID = "5f8e0b3a-1c2d-4e5f-8a9b-0c1d2e3f4a5b"
local ANON_ID = "0a1b2c3d-4e5f-4a6b-8c7d-9e0f1a2b3c4d"
local MISSING_ID = "1b2c3d4e-5f6a-4b7c-8d9e-0f1a2b3c4d5e"


local function basic(user, password)
  return "Basic " .. codec.encode_base64(user .. ":" .. password)
end


local function service(mock_port, routes)
  return { name = "mock", url = fmt("http://127.0.0.1:%d", mock_port),
           routes = routes }
end


local function route(name, path, plugins)
  return { name = name, paths = { path }, plugins = plugins }
end


local function config(mock_port)
  return {
    _format_version = "3.0",
    services = {
      service(mock_port, {
        route("default", "/default", { { name = "basic-auth" } }),
        route("hide", "/hide", { { name = "basic-auth",
                                   config = { hide_credentials = true } } }),
        route("realm", "/realm", { { name = "basic-auth",
                                     config = { realm = "test-realm" } } }),
        route("anon", "/anon", { { name = "basic-auth",
                                   config = { anonymous = ANON_ID } } }),
        route("anon-name", "/anon-name", { { name = "basic-auth",
          config = { anonymous = "no-body" } } }),
        route("anon-missing", "/anon-missing", { { name = "basic-auth",
          config = { anonymous = MISSING_ID } } }),
        route("and", "/and", {
          { name = "basic-auth" }, { name = "key-auth" } }),
        route("or", "/or", {
          { name = "basic-auth", config = { anonymous = ANON_ID } },
          { name = "key-auth", config = { anonymous = ANON_ID } } }),
      }),
    },
    consumers = {
      { id = BOB_ID, username = "bob", custom_id = "bob-cid",
        basicauth_credentials = {
          { username = "bob-user", password = "kong" },
          { username = "colon", password = "pass:word" },
          { username = "utf8", password = "pässwörd" },
        } },
      { username = "mickey", keyauth_credentials = { { key = "mouse" } } },
      { id = ANON_ID, username = "no-body" },
    },
  }
end


describe("basic-auth", function()
  local mock, gw, client

  lazy_setup(function()
    mock = helpers.mock_upstream()
    gw = assert(helpers.start_luagate({ config = config(mock.port) }))
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

  local function echo(res)
    return json(res, 200)
  end

  local function assert_401(res, realm)
    local body = json(res, 401)
    assert.equal("Unauthorized", body.message)
    assert.is_string(body.request_id)
    assert.equal(fmt('Basic realm="%s"', realm or "service"),
                 res.headers["www-authenticate"])
  end

  local function get(path, headers)
    return client:get(path, { headers = headers })
  end

  describe("401", function()
    it("without credentials", function()
      assert_401(get("/default"))
    end)

    it("with a wrong password or an unknown user", function()
      assert_401(get("/default", { Authorization = basic("bob-user",
                                                         "nope") }))
      assert_401(get("/default", { Authorization = basic("ghost", "kong") }))
      -- usernames and passwords are case-sensitive
      assert_401(get("/default", { Authorization = basic("Bob-user",
                                                         "kong") }))
      assert_401(get("/default", { Authorization = basic("bob-user",
                                                         "Kong") }))
    end)

    it("with malformed headers", function()
      for _, v in ipairs({
        "foobar",
        "Basic",
        "Basic ",
        "Basic a29uZw==",                            -- "kong": no ':'
        "Basic Ym9iLXVzZXI=",                        -- "bob-user": no ':'
        "Basic Omtvbmc=",                            -- ":kong": no user
        "Basic aYm9iLXVzZXI6a29uZw==",               -- not base64
        "Bearer Ym9iLXVzZXI6a29uZw==",
      }) do
        assert_401(get("/default", { Authorization = v }))
        assert_401(get("/default", { ["Proxy-Authorization"] = v }))
      end
    end)

    it("sends the configured realm", function()
      assert_401(get("/realm"), "test-realm")
      assert_401(get("/realm", { Authorization = basic("bob-user", "x") }),
                 "test-realm")
    end)
  end)

  describe("Authorization", function()
    it("authenticates and sends the consumer headers upstream", function()
      local d = echo(get("/default/request",
                         { Authorization = basic("bob-user", "kong") }))
      assert.equal(BOB_ID, d.headers["x-consumer-id"])
      assert.equal("bob", d.headers["x-consumer-username"])
      assert.equal("bob-cid", d.headers["x-consumer-custom-id"])
      assert.equal("bob-user", d.headers["x-credential-identifier"])
      assert.is_nil(d.headers["x-anonymous-consumer"])
      assert.equal(basic("bob-user", "kong"), d.headers.authorization)
    end)

    it("takes passwords with ':' and UTF-8", function()
      local d = echo(get("/default", {
        Authorization = basic("colon", "pass:word") }))
      assert.equal("colon", d.headers["x-credential-identifier"])
      d = echo(get("/default", { Authorization = basic("utf8",
                                                       "pässwörd") }))
      assert.equal("utf8", d.headers["x-credential-identifier"])
    end)

    it("accepts the scheme in lower case and extra spaces", function()
      local v = codec.encode_base64("bob-user:kong")
      local d = echo(get("/default", { Authorization = "basic " .. v }))
      assert.equal("bob", d.headers["x-consumer-username"])
      d = echo(get("/default", { Authorization = "Basic   " .. v }))
      assert.equal("bob", d.headers["x-consumer-username"])
    end)

    it("overwrites consumer headers the client sent", function()
      local d = echo(get("/default", {
        Authorization = basic("bob-user", "kong"),
        ["X-Consumer-Username"] = "evil",
        ["X-Credential-Identifier"] = "evil",
        ["X-Anonymous-Consumer"] = "true",
      }))
      assert.equal("bob", d.headers["x-consumer-username"])
      assert.equal("bob-user", d.headers["x-credential-identifier"])
      assert.is_nil(d.headers["x-anonymous-consumer"])
    end)
  end)

  describe("Proxy-Authorization", function()
    it("authenticates", function()
      local d = echo(get("/default", {
        ["Proxy-Authorization"] = basic("bob-user", "kong") }))
      assert.equal("bob", d.headers["x-consumer-username"])
    end)

    it("is read first", function()
      local d = echo(get("/default", {
        ["Proxy-Authorization"] = basic("bob-user", "kong"),
        Authorization = basic("bob-user", "nope") }))
      assert.equal("bob-user", d.headers["x-credential-identifier"])
      -- a known user with a wrong password there is final
      assert_401(get("/default", {
        ["Proxy-Authorization"] = basic("bob-user", "nope"),
        Authorization = basic("bob-user", "kong") }))
    end)

    it("falls back to Authorization for an unknown or malformed one",
       function()
      local d = echo(get("/default", {
        ["Proxy-Authorization"] = basic("ghost", "kong"),
        Authorization = basic("colon", "pass:word") }))
      assert.equal("colon", d.headers["x-credential-identifier"])
      d = echo(get("/default", {
        ["Proxy-Authorization"] = "Bearer x",
        Authorization = basic("bob-user", "kong") }))
      assert.equal("bob-user", d.headers["x-credential-identifier"])
    end)
  end)

  describe("hide_credentials", function()
    it("removes the header the credentials came from", function()
      local d = echo(get("/hide/request", {
        Authorization = basic("bob-user", "kong"), ["X-Other"] = "1" }))
      assert.equal("bob", d.headers["x-consumer-username"])
      assert.is_nil(d.headers.authorization)
      assert.equal("1", d.headers["x-other"])
    end)

    it("removes every header it read, and only those", function()
      -- Proxy-Authorization did not authenticate: both were read
      local d = echo(get("/hide/request", {
        ["Proxy-Authorization"] = basic("ghost", "x"),
        Authorization = basic("bob-user", "kong") }))
      assert.equal("bob-user", d.headers["x-credential-identifier"])
      assert.is_nil(d.headers.authorization)
      -- Proxy-Authorization authenticated: Authorization was not read
      d = echo(get("/hide/request", {
        ["Proxy-Authorization"] = basic("bob-user", "kong"),
        Authorization = "Bearer upstream-token" }))
      assert.equal("bob-user", d.headers["x-credential-identifier"])
      assert.equal("Bearer upstream-token", d.headers.authorization)
    end)

    it("keeps Proxy-Authorization upstream when off, as Kong (nginx) does", function()
      local d = echo(get("/default/request", {
        ["Proxy-Authorization"] = basic("bob-user", "kong") }))
      assert.equal("bob-user", d.headers["x-credential-identifier"])
      assert.equal(basic("bob-user", "kong"), d.headers["proxy-authorization"])
    end)
  end)

  describe("anonymous", function()
    it("lets requests without valid credentials through as anonymous",
       function()
      for _, path in ipairs({ "/anon", "/anon-name" }) do
        for _, h in ipairs({ {}, { Authorization = basic("bob-user", "x") },
                             { Authorization = "garbage" } }) do
          local d = echo(get(path .. "/request", h))
          assert.equal("true", d.headers["x-anonymous-consumer"])
          assert.equal(ANON_ID, d.headers["x-consumer-id"])
          assert.equal("no-body", d.headers["x-consumer-username"])
          assert.is_nil(d.headers["x-credential-identifier"])
        end
      end
    end)

    it("sends no WWW-Authenticate", function()
      local res = get("/anon")
      assert.res_status(200, res)
      assert.is_nil(res.headers["www-authenticate"])
    end)

    it("authenticates valid credentials as usual", function()
      local d = echo(get("/anon", { Authorization = basic("bob-user",
                                                          "kong") }))
      assert.equal("bob", d.headers["x-consumer-username"])
      assert.is_nil(d.headers["x-anonymous-consumer"])
    end)

    it("answers 500 when the anonymous consumer does not exist", function()
      local body = json(get("/anon-missing"), 500)
      assert.equal("An unexpected error occurred", body.message)
      helpers.wait_until(function()
        return (helpers.read_file(gw.error_log) or ""):find(
          "anonymous consumer " .. MISSING_ID .. " is configured but " ..
          "doesn't exist", 1, true) ~= nil
      end, 10)
      local d = echo(get("/anon-missing", {
        Authorization = basic("bob-user", "kong") }))
      assert.equal("bob", d.headers["x-consumer-username"])
    end)
  end)

  describe("with key-auth", function()
    it("needs both without anonymous (logical AND)", function()
      local d = echo(get("/and", { apikey = "mouse",
                                   Authorization = basic("bob-user",
                                                         "kong") }))
      assert.is_nil(d.headers["x-anonymous-consumer"])
      -- key-auth (1250) runs first, basic-auth (1100) sets the consumer last
      assert.equal("bob", d.headers["x-consumer-username"])
      local res = get("/and", { apikey = "mouse" })
      assert.res_status(401, res)
      assert.equal('Basic realm="service"', res.headers["www-authenticate"])
      res = get("/and", { Authorization = basic("bob-user", "kong") })
      assert.res_status(401, res)
      assert.equal("Key", res.headers["www-authenticate"])
      assert.res_status(401, get("/and"))
    end)

    it("needs either with anonymous (logical OR)", function()
      local d = echo(get("/or", { apikey = "mouse",
                                  Authorization = basic("bob-user",
                                                        "kong") }))
      -- key-auth (1250) authenticated first; basic-auth skipped
      assert.equal("mickey", d.headers["x-consumer-username"])
      d = echo(get("/or", { apikey = "mouse" }))
      assert.equal("mickey", d.headers["x-consumer-username"])
      assert.is_nil(d.headers["x-anonymous-consumer"])
      d = echo(get("/or", { Authorization = basic("bob-user", "kong") }))
      assert.equal("bob", d.headers["x-consumer-username"])
      assert.is_nil(d.headers["x-anonymous-consumer"])
      d = echo(get("/or"))
      assert.equal("no-body", d.headers["x-consumer-username"])
      assert.equal("true", d.headers["x-anonymous-consumer"])
    end)
  end)
end)


describe("basic-auth with _transform: false", function()
  local mock, gw

  lazy_setup(function()
    mock = helpers.mock_upstream()
    local id = "9e8d7c6b-5a4f-4e3d-8c2b-1a0f9e8d7c6b"
    local hash = codec.to_hex(codec.sha1_bin("kong" .. id))
    gw = assert(helpers.start_luagate({ config = {
      _format_version = "3.0",
      _transform = false,
      services = { service(mock.port, {
        route("default", "/", { { name = "basic-auth" } }) }) },
      consumers = {
        { id = id, username = "bob", basicauth_credentials = {
          { username = "hashed", password = hash },
          { username = "plain", password = "kong" } } },
      },
    } }))
  end)

  lazy_teardown(function()
    if gw then helpers.stop_luagate(gw) end
    if mock then mock.stop() end
  end)

  it("takes passwords as already hashed", function()
    local res = helpers.request_once(gw.proxy_port, { path = "/", headers = {
      Authorization = basic("hashed", "kong") } })
    assert.res_status(200, res)
    -- a plain password in the file is then a hash no password matches
    res = helpers.request_once(gw.proxy_port, { path = "/", headers = {
      Authorization = basic("plain", "kong") } })
    assert.res_status(401, res)
  end)
end)
