-- luacheck: no max line length (kept in the shape of Kong's specs)
-- myplugin's integration spec, written as a Kong plugin spec: only the
-- helpers module differs (spec.kong_helpers instead of spec.helpers).
local helpers = require "spec.kong_helpers"

local PLUGIN_NAME = "myplugin"


for _, strategy in helpers.all_strategies() do
  describe(PLUGIN_NAME .. ": (access) [#" .. strategy .. "]", function()
    local client

    lazy_setup(function()
      local bp = helpers.get_db_utils(strategy == "off" and "postgres" or strategy,
                                      nil, { PLUGIN_NAME })

      -- Inject a test route. No need to create a service, there is a
      -- default service which will echo the request.
      local route1 = bp.routes:insert({
        hosts = { "test1.com" },
      })
      -- add the plugin to test to the route we created
      bp.plugins:insert {
        name = PLUGIN_NAME,
        route = { id = route1.id },
        config = {},
      }

      local route2 = bp.routes:insert({
        hosts = { "test2.com" },
      })
      bp.plugins:insert {
        name = PLUGIN_NAME,
        route = { id = route2.id },
        config = {
          request_header = "X-Custom-Request",
          response_header = "X-Custom-Response",
        },
      }

      -- a route without the plugin
      bp.routes:insert({
        hosts = { "test3.com" },
      })

      -- start kong
      assert(helpers.start_kong({
        -- set the strategy
        database   = strategy,
        -- use the custom test template to create a local mock server
        nginx_conf = "spec/fixtures/custom_nginx.template",
        -- make sure our plugin gets loaded
        plugins = "bundled," .. PLUGIN_NAME,
        -- write & load declarative config, only if 'strategy=off'
        declarative_config = strategy == "off" and helpers.make_yaml_file() or nil,
      }))
    end)

    lazy_teardown(function()
      helpers.stop_kong(nil, true)
    end)

    before_each(function()
      client = helpers.proxy_client()
    end)

    after_each(function()
      if client then client:close() end
    end)


    describe("request", function()
      it("gets a 'hello-world' header", function()
        local r = client:get("/request", {
          headers = {
            host = "test1.com"
          }
        })
        -- validate that the request succeeded, response status 200
        assert.response(r).has.status(200)
        -- now check the request (as echoed by the mock backend) to have the header
        local header_value = assert.request(r).has.header("hello-world")
        -- validate the value of that header
        assert.equal("this is on a request", header_value)
      end)

      it("uses the configured header name", function()
        local r = client:get("/request", {
          headers = { host = "test2.com" },
          query = { a = "1" },
        })
        assert.response(r).has.status(200)
        assert.equal("this is on a request",
                     assert.request(r).has.header("x-custom-request"))
        assert.request(r).has.no.header("hello-world")
      end)
    end)


    describe("response", function()
      it("gets a 'bye-world' header", function()
        local r = client:get("/request", {
          headers = {
            host = "test1.com"
          }
        })
        -- validate that the request succeeded, response status 200
        assert.response(r).has.status(200)
        -- now check the response to have the header
        local header_value = assert.response(r).has.header("bye-world")
        -- validate the value of that header
        assert.equal("this is on the response", header_value)
      end)

      it("is untouched on a route without the plugin", function()
        local r = client:get("/request", { headers = { host = "test3.com" } })
        assert.response(r).has.status(200)
        assert.response(r).has.no.header("bye-world")
        assert.request(r).has.no.header("hello-world")
      end)
    end)
  end)
end
