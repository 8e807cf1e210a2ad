-- ngx.var.upstream_x_forwarded_* set by a plugin replace the X-Forwarded-*
-- values the gateway sends upstream (Kong's behaviour).
local helpers = require "spec.helpers"

describe("compat: upstream_x_forwarded_*", function()
  local mock, gw

  lazy_setup(function()
    mock = helpers.mock_upstream()
    gw = assert(helpers.start_luagate({
      args = { "--plugins-dir", helpers.root .. "/spec/04-compat/plugins" },
      config = {
        _format_version = "3.0",
        services = { { name = "s", url = "http://127.0.0.1:" .. mock.port, routes = {
          { name = "set", paths = { "/set" }, plugins = { { name = "compat-xfwd" } } },
          { name = "plain", paths = { "/plain" } },
        } } },
      },
    }))
  end)

  lazy_teardown(function()
    if gw then helpers.stop_luagate(gw) end
    if mock then mock.stop() end
  end)

  it("sends what the plugin set", function()
    local client = helpers.proxy_client(gw)
    local res = assert(client:get("/set/x", { headers = { Host = "inner:8000" } }))
    assert.equal(200, res.status)
    local h = helpers.json_decode(res.body).headers
    assert.equal("public.example.com", h["x-forwarded-host"])
    assert.equal("https", h["x-forwarded-proto"])
    assert.equal("443", h["x-forwarded-port"])
    assert.equal("/api", h["x-forwarded-prefix"])
    client:close()
  end)

  it("keeps the gateway's own values otherwise", function()
    local client = helpers.proxy_client(gw)
    local res = assert(client:get("/plain/x", { headers = { Host = "inner:8000" } }))
    local h = helpers.json_decode(res.body).headers
    assert.equal("inner", h["x-forwarded-host"])
    assert.equal("http", h["x-forwarded-proto"])
    assert.equal(tostring(gw.proxy_port), h["x-forwarded-port"])
    assert.is_nil(h["x-forwarded-prefix"])
    client:close()
  end)
end)
