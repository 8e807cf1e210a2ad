-- acl through the real binary and the mock upstream: allow and deny by the
-- consumer's acls, consumer groups (include_consumer_groups), authenticated
-- groups set by another plugin, 401 / 403, the groups header; plugins
-- scoped to a consumer group between consumer and route precedence;
-- decisions follow a config reload.
local helpers = require "spec.helpers"

local fmt = string.format
local PLUGIN_DIRS = {
  "--plugins-dir", helpers.root .. "/spec/fixtures/plugins",
  "--plugins-dir", helpers.root .. "/spec/03-plugins/03-acl/fixtures",
}

local FORBIDDEN = "You cannot consume this service"


local function route(path, plugins)
  return { name = path:sub(2), paths = { path }, plugins = plugins }
end


local function key_auth(conf)
  return { name = "key-auth", config = conf }
end


local function acl(conf)
  return { name = "acl", config = conf }
end


local TEST_AUTH = { name = "acl-test-auth" }
local ANON = { anonymous = "anonymous" }


local function config(mock_port)
  return {
    _format_version = "3.0",
    services = {
      { name = "mock", url = fmt("http://127.0.0.1:%d", mock_port),
        routes = {
          route("/allow-admins", { key_auth(), acl({ allow = { "admins" } }) }),
          route("/allow-users", { key_auth(),
                                  acl({ allow = { "users", "other" } }) }),
          route("/deny-users", { key_auth(), acl({ deny = { "users" } }) }),
          route("/hide", { key_auth(), acl({ allow = { "users" },
                                             hide_groups_header = true }) }),
          route("/no-auth", { acl({ allow = { "admins" } }) }),
          route("/anon-allow", { key_auth(ANON),
                                 acl({ allow = { "admins" } }) }),
          route("/anon-deny", { key_auth(ANON), acl({ deny = { "admins" } }) }),
          route("/cg", { key_auth(), acl({ allow = { "gold" },
                                           include_consumer_groups = true }) }),
          route("/cg-deny", { key_auth(),
                              acl({ deny = { "gold" },
                                    include_consumer_groups = true }) }),
          route("/cg-off", { key_auth(), acl({ allow = { "gold" } }) }),
          route("/ext", { TEST_AUTH, acl({ allow = { "a" } }) }),
          route("/ext-hide", { TEST_AUTH, acl({ allow = { "a" },
                                                hide_groups_header = true }) }),
          route("/ext-consumer", { key_auth(), TEST_AUTH,
                                   acl({ allow = { "a" } }) }),
          route("/ext-always", { key_auth(), TEST_AUTH,
                                 acl({ allow = { "a", "admins" },
                                       always_use_authenticated_groups =
                                         true }) }),
          route("/ext-anon", { key_auth(ANON), TEST_AUTH,
                               acl({ allow = { "a" } }) }),
          route("/scoped", { key_auth(), { name = "rt-conf",
                                           config = { label = "route" } } }),
        } },
    },
    consumer_groups = {
      { name = "gold", plugins = {
        { name = "rt-conf", config = { label = "gold" } } } },
      { name = "silver", plugins = {
        { name = "rt-conf", config = { label = "silver" } } } },
    },
    consumers = {
      { username = "alice", keyauth_credentials = { { key = "alice-key" } },
        acls = { { group = "admins" }, { group = "users" } } },
      { username = "bob", keyauth_credentials = { { key = "bob-key" } },
        acls = { { group = "users" } } },
      { username = "carol", keyauth_credentials = { { key = "carol-key" } } },
      { username = "anonymous" },
      { username = "dave", groups = { "gold" },
        keyauth_credentials = { { key = "dave-key" } } },
      { username = "erin", groups = { "gold", "silver" },
        keyauth_credentials = { { key = "erin-key" } },
        acls = { { group = "users" } },
        plugins = { { name = "rt-conf", config = { label = "erin" } } } },
      { username = "frank", groups = { "silver" },
        keyauth_credentials = { { key = "frank-key" } } },
    },
  }
end


describe("acl", function()
  local mock, gw, client

  lazy_setup(function()
    mock = helpers.mock_upstream()
    gw = assert(helpers.start_luagate({
      config = config(mock.port),
      args = PLUGIN_DIRS,
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

  local function get(path, headers)
    return client:get(path, { headers = headers })
  end

  -- the groups header the upstream got, after a 200
  local function groups(res, name)
    local d = assert(helpers.json_decode(assert.res_status(200, res)))
    return d.headers[name or "x-consumer-groups"], d
  end

  local function assert_403(res)
    local body = assert(helpers.json_decode(assert.res_status(403, res)))
    assert.equal(FORBIDDEN, body.message)
    assert.is_string(body.request_id)
  end

  describe("allow", function()
    it("lets a consumer in an allowed group through", function()
      assert.equal("admins, users",
                   groups(get("/allow-admins", { apikey = "alice-key" })))
      assert.equal("users",
                   groups(get("/allow-users", { apikey = "bob-key" })))
      assert.equal("admins, users",
                   groups(get("/allow-users", { apikey = "alice-key" })))
    end)

    it("refuses other consumers with 403", function()
      assert_403(get("/allow-admins", { apikey = "bob-key" }))
      -- a consumer without acls
      assert_403(get("/allow-admins", { apikey = "carol-key" }))
    end)

    it("answers 401 without an authenticated consumer", function()
      local res = get("/no-auth")
      local body = assert(helpers.json_decode(assert.res_status(401, res)))
      assert.equal("Unauthorized", body.message)
    end)
  end)

  describe("deny", function()
    it("refuses a consumer in a denied group", function()
      assert_403(get("/deny-users", { apikey = "bob-key" }))
      assert_403(get("/deny-users", { apikey = "alice-key" }))
    end)

    it("lets others through, groups header even when empty", function()
      local value, d = groups(get("/deny-users", { apikey = "carol-key" }))
      assert.equal("carol", d.headers["x-consumer-username"])
      -- Kong sends the (empty) list of a consumer without groups
      assert.equal("", value)
    end)
  end)

  describe("X-Consumer-Groups", function()
    it("replaces the value a client sent", function()
      assert.equal("users", groups(get("/allow-users", {
        apikey = "bob-key", ["X-Consumer-Groups"] = "admins" })))
    end)

    it("is not sent with hide_groups_header", function()
      local value, d = groups(get("/hide", { apikey = "bob-key" }))
      assert.is_nil(value)
      assert.equal("bob", d.headers["x-consumer-username"])
      assert_403(get("/hide", { apikey = "carol-key" }))
    end)
  end)

  describe("anonymous consumers", function()
    it("are checked by their own groups", function()
      assert_403(get("/anon-allow"))
      assert.equal("admins, users",
                   groups(get("/anon-allow", { apikey = "alice-key" })))
      local value, d = groups(get("/anon-deny"))
      assert.equal("", value)
      assert.equal("true", d.headers["x-anonymous-consumer"])
      assert_403(get("/anon-deny", { apikey = "alice-key" }))
    end)
  end)

  describe("include_consumer_groups", function()
    it("counts consumer group names as groups", function()
      assert.equal("gold", groups(get("/cg", { apikey = "dave-key" })))
      assert.equal("users, gold, silver",
                   groups(get("/cg", { apikey = "erin-key" })))
      assert_403(get("/cg", { apikey = "alice-key" }))
      assert_403(get("/cg", { apikey = "frank-key" }))
      assert_403(get("/cg-deny", { apikey = "dave-key" }))
      assert.equal("admins, users",
                   groups(get("/cg-deny", { apikey = "alice-key" })))
    end)

    it("does not count them when off", function()
      assert_403(get("/cg-off", { apikey = "dave-key" }))
    end)
  end)

  describe("authenticated groups", function()
    local AUTH = "x-authenticated-groups"

    it("are used when no consumer is authenticated", function()
      local value, d = groups(get("/ext", { ["X-Test-Groups"] = "a" }), AUTH)
      assert.equal("a", value)
      assert.is_nil(d.headers["x-consumer-groups"])
      assert.equal("b, a",
                   groups(get("/ext", { ["X-Test-Groups"] = "b,a" }), AUTH))
      assert.equal("a", groups(get("/ext", { ["X-Test-Groups"] = "a",
                                             ["X-Test-Ctx"] = "ngx" }), AUTH))
      assert_403(get("/ext", { ["X-Test-Groups"] = "b" }))
      local value2 = groups(get("/ext-hide", { ["X-Test-Groups"] = "a" }),
                            AUTH)
      assert.is_nil(value2)
    end)

    it("401 without them, 403 with a credential but no consumer",
       function()
      local res = get("/ext")
      local body = assert(helpers.json_decode(assert.res_status(401, res)))
      assert.equal("Unauthorized", body.message)
      assert_403(get("/ext", { ["X-Test-Credential"] = "1" }))
      -- a value that is not a table counts as none
      assert.res_status(401, get("/ext", { ["X-Test-Bad-Groups"] = "1" }))
    end)

    it("are ignored for a consumer with a credential by default",
       function()
      assert_403(get("/ext-consumer", { apikey = "alice-key",
                                        ["X-Test-Groups"] = "a" }))
    end)

    it("win over the consumer's with always_use_authenticated_groups",
       function()
      assert.equal("a", groups(get("/ext-always", {
        apikey = "alice-key", ["X-Test-Groups"] = "a" }), AUTH))
      assert_403(get("/ext-always", { apikey = "alice-key",
                                      ["X-Test-Groups"] = "b" }))
      -- without them, the consumer's groups
      assert.equal("admins, users",
                   groups(get("/ext-always", { apikey = "alice-key" })))
    end)

    it("replace the anonymous consumer's", function()
      assert.equal("a", groups(get("/ext-anon", { ["X-Test-Groups"] = "a" }),
                               AUTH))
      assert_403(get("/ext-anon"))
    end)
  end)

  describe("plugins scoped to a consumer group", function()
    it("rank between consumer and route", function()
      local function label(key)
        local res = get("/scoped", { apikey = key })
        assert.res_status(200, res)
        return res.headers["x-conf-label"]
      end
      assert.equal("route", label("bob-key"))    -- in no group
      assert.equal("gold", label("dave-key"))    -- group over route
      assert.equal("silver", label("frank-key"))
      assert.equal("erin", label("erin-key"))    -- consumer over group
    end)
  end)
end)


describe("acl after a config reload", function()
  local mock, gw

  local function conf(bob_group)
    return {
      _format_version = "3.0",
      services = {
        { name = "mock", url = fmt("http://127.0.0.1:%d", mock.port),
          routes = { route("/admins", { key_auth(),
                                        acl({ allow = { "admins" } }) }) } },
      },
      consumers = {
        { username = "bob", keyauth_credentials = { { key = "bob-key" } },
          acls = { { group = bob_group } } },
      },
    }
  end

  lazy_setup(function()
    mock = helpers.mock_upstream()
    gw = assert(helpers.start_luagate({ config = conf("users") }))
  end)

  lazy_teardown(function()
    if gw then helpers.stop_luagate(gw) end
    if mock then mock.stop() end
  end)

  it("decides with the new groups", function()
    local function status()
      local res = helpers.request_once(gw.proxy_port, {
        path = "/admins", headers = { apikey = "bob-key" } })
      return res and res.status
    end
    assert.equal(403, status())
    assert.equal(403, status()) -- cached decision
    assert.is_true(helpers.reload_luagate(gw, conf("admins")))
    helpers.wait_until(function() return status() == 200 end, 10)
    assert.equal(200, status())
  end)
end)
