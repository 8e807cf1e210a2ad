-- The admin listener's /status.
local helpers = require "spec.helpers"

describe("admin /status", function()
  local mock, gw

  lazy_setup(function()
    mock = helpers.mock_upstream()
    local err
    gw, err = helpers.start_luagate({
      config = helpers.simple_config(mock.port), workers = 2,
    })
    assert(gw, err)
  end)

  lazy_teardown(function()
    helpers.stop_luagate(gw)
    if mock then mock.stop() end
  end)

  it("answers JSON with version, uptime, workers, connections, requests, " ..
     "config_hash", function()
    local admin = assert(helpers.admin_client(gw))
    local res = assert(admin:get("/status"))
    local json = assert.response(res).has.jsonbody()
    admin:close()
    assert.matches("application/json", res.headers["content-type"])
    local _, version_out = helpers.luagate_exec({ "version" })
    assert.equal(version_out:match("luagate (%S+)"), json.version)
    assert.is_number(json.uptime)
    assert.truthy(json.uptime >= 0)
    assert.equal(2, json.workers)
    assert.is_table(json.connections)
    assert.is_number(json.connections.active)
    assert.is_number(json.requests)
    assert.is_string(json.config_hash)
    assert.truthy(#json.config_hash > 0)
    -- every live worker's configuration ("" while a starting worker still
    -- loads its first one): both run the same one once started
    assert.equal(2, #json.worker_config_hashes)
    helpers.wait_until(function()
      local st = assert(helpers.admin_status(gw))
      return st.worker_config_hashes[1] == json.config_hash and
             st.worker_config_hashes[2] == json.config_hash
    end, 10)
  end)

  it("counts served requests", function()
    local before = assert(helpers.admin_status(gw)).requests
    local client = helpers.proxy_client(gw)
    for i = 1, 10 do
      assert.res_status(200, assert(client:get("/r" .. i)))
    end
    client:close()
    helpers.wait_until(function()
      return assert(helpers.admin_status(gw)).requests >= before + 10
    end, 5)
  end)

  it("counts active connections", function()
    local clients = {}
    for i = 1, 3 do
      clients[i] = helpers.proxy_client(gw)
      assert.res_status(200, assert(clients[i]:get("/open")))
    end
    helpers.wait_until(function()
      return assert(helpers.admin_status(gw)).connections.active >= 3
    end, 5)
    for _, c in ipairs(clients) do c:close() end
  end)

  it("uptime grows", function()
    local a = assert(helpers.admin_status(gw)).uptime
    helpers.wait_until(function()
      return assert(helpers.admin_status(gw)).uptime > a
    end, 5)
  end)

  it("config_hash is the same for the same config on another instance",
     function()
    local g2 = assert(helpers.start_luagate({ config = gw.config_path }))
    finally(function() helpers.stop_luagate(g2) end)
    assert.equal(assert(helpers.admin_status(gw)).config_hash,
                 assert(helpers.admin_status(g2)).config_hash)
  end)

  it("an unknown admin path is a 404", function()
    local admin = assert(helpers.admin_client(gw))
    local res = assert(admin:get("/no-such-endpoint"))
    assert.res_status(404, res)
    admin:close()
  end)

  it("the proxy port does not serve /status", function()
    -- no route matches /status in this config? It does ("/"): the request
    -- goes upstream, not to the admin API
    local res = assert(helpers.request_once(gw.proxy_port,
                                            { path = "/status" }))
    local json = assert.response(res).has.jsonbody()
    assert.equal("/status", json.path)
    assert.is_nil(json.config_hash)
  end)

  it("--admin-listen off opens no admin port (not even the default)",
     function()
    local default_was_open = helpers.port_open(8001)
    local g = assert(helpers.start_luagate({
      config = helpers.simple_config(mock.port), admin = false,
    }))
    finally(function() helpers.stop_luagate(g) end)
    assert.res_status(200, assert(helpers.request_once(g.proxy_port,
                                    { path = "/x" })))
    assert.is_nil(g.admin_port)
    assert.truthy(g.cmdline:find("--admin-listen off", 1, true))
    if not default_was_open then
      assert.is_false(helpers.port_open(8001))
    end
  end)
end)
