-- luacheck: no max line length (kept in the shape of Kong's specs)
-- spec/kong_helpers.lua: Kong's spec.helpers names over luagate's helpers.
-- The first block is Kong's template plugin spec (kong-reference §6) with
-- only the require changed, run against examples/plugins/myplugin.
local helpers = require "spec.kong_helpers"

local PLUGIN_NAME = "myplugin"


for _, strategy in helpers.all_strategies() do
  describe(PLUGIN_NAME .. " [#" .. strategy .. "]", function()
    lazy_setup(function()
      local bp = helpers.get_db_utils(strategy == "off" and "postgres" or strategy,
                                      nil, { PLUGIN_NAME })
      bp.plugins:insert{ name = PLUGIN_NAME,
                         route = { id = bp.routes:insert({ hosts = { "test1.com" } }).id },
                         config = {} }
      assert(helpers.start_kong({ database = strategy,
                                  nginx_conf = "spec/fixtures/custom_nginx.template",
                                  plugins = "bundled," .. PLUGIN_NAME,
                                  declarative_config = strategy == "off" and
                                                       helpers.make_yaml_file() or nil }))
    end)

    lazy_teardown(function() helpers.stop_kong(nil, true) end)

    it("adds header", function()
      local r = helpers.proxy_client():get("/request", { headers = { host = "test1.com" } })
      assert.response(r).has.status(200)
      assert.equal("this is on a request", assert.request(r).has.header("hello-world"))
    end)

    it("adds the response header", function()
      local r = helpers.proxy_client():get("/request", { headers = { host = "test1.com" } })
      assert.equal("this is on the response", assert.response(r).has.header("bye-world"))
    end)
  end)
end


describe("kong_helpers", function()
  after_each(function()
    helpers.stop_kong()
  end)

  it("each_strategy and all_strategies yield only 'off'", function()
    local list = {}
    for i, s in helpers.each_strategy() do list[i] = s end
    assert.same({ "off" }, list)
    list = {}
    for i, s in helpers.all_strategies() do list[i] = s end
    assert.same({ "off" }, list)
  end)

  it("blueprints return entities with ids and accumulate a config",
     function()
    local bp = helpers.get_db_utils("off", nil, { "myplugin" })
    local service = bp.services:insert({ name = "svc" })
    assert.is_string(service.id)
    assert.equal(15555, service.port)
    local route = bp.routes:insert({ paths = { "/x" }, service = service })
    assert.same({ id = service.id }, route.service)
    -- a route without a service gets a default one
    local r2 = bp.routes:insert({ hosts = { "a.test" } })
    assert.is_string(r2.service.id)
    local consumer = bp.consumers:insert({ username = "bob" })
    local cred = bp.keyauth_credentials:insert({ key = "secret",
                                                 consumer = { id = consumer.id } })
    assert.same({ id = consumer.id }, cred.consumer)
    local generated = bp.keyauth_credentials:insert({ consumer = consumer })
    assert.is_string(generated.key)
    bp.plugins:insert({ name = "myplugin", service = { id = service.id },
                        config = { response_header = "X-Svc" } })

    local path = helpers.make_yaml_file()
    local conf = helpers.json_decode(helpers.read_file(path))
    assert.equal(2, #conf.services)
    assert.equal(2, #conf.routes)
    assert.equal(1, #conf.consumers)
    assert.equal(2, #conf.keyauth_credentials)
    assert.equal(1, #conf.plugins)
    -- Kong's 15555 is mapped to the real mock upstream
    assert.equal(helpers.mock_upstream_real_port(), conf.services[1].port)
    local rc, _, err = helpers.luagate_exec({ "check", "-c", path,
      "--plugins-dir", helpers.root .. "/examples/plugins" })
    assert.equal(0, rc, err)
  end)

  it("starts luagate on the accumulated config when declarative_config " ..
     "is not given; proxy and admin clients need no gateway", function()
    local bp = helpers.get_db_utils("off", nil, { "myplugin" })
    local service = bp.services:insert({ url = helpers.mock_upstream_url .. "/anything" })
    local route = bp.routes:insert({ paths = { "/svc" }, service = service })
    bp.plugins:insert({ name = "myplugin", route = { id = route.id },
                        config = { request_header = "X-In", response_header = "X-Out" } })
    assert(helpers.start_kong({ plugins = "bundled,myplugin" }))

    local client = helpers.proxy_client()
    local r = client:get("/svc/more", { query = { a = "1 2", b = "x" } })
    local body = assert.res_status(200, r)
    local echo = helpers.json_decode(body)
    assert.equal("/anything/more", echo.path)
    assert.same({ a = "1 2", b = "x" }, echo.query)
    assert.equal("this is on a request", echo.headers["x-in"])
    assert.equal("this is on the response", r.headers["x-out"])

    -- a table body is sent as JSON
    r = client:post("/svc", { body = { hello = "world" } })
    echo = helpers.json_decode(assert.res_status(200, r))
    assert.same({ hello = "world" }, helpers.json_decode(echo.body))
    assert.matches("application/json", echo.headers["content-type"], 1, true)
    client:close()

    local admin = helpers.admin_client()
    local st = admin:get("/status")
    assert.res_status(200, st)
    admin:close()
  end)

  it("accepts a declarative_config given as a Lua table", function()
    local port = helpers.mock_upstream_port
    assert(helpers.start_kong({
      plugins = "myplugin",
      declarative_config = {
        _format_version = "3.0",
        services = { { name = "s", url = "http://127.0.0.1:" .. port,
                       routes = { { name = "r", paths = { "/" } } },
                       plugins = { { name = "myplugin" } } } },
      },
    }))
    local r = helpers.proxy_client():get("/request")
    assert.response(r).has.status(200)
    assert.equal("this is on the response", assert.response(r).has.header("bye-world"))
  end)

  it("reports a plugin it cannot find", function()
    helpers.get_db_utils("off")
    local ok, err = helpers.start_kong({ plugins = "bundled,no-such-plugin" })
    assert.is_nil(ok)
    assert.matches("no-such-plugin", err, 1, true)
  end)
end)
