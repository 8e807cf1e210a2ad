-- The operator commands: luagate reload, health, config diff.
local helpers = require "spec.helpers"

describe("CLI against a running node", function()
  local mock, gw

  lazy_setup(function()
    mock = helpers.mock_upstream()
    local err
    gw, err = helpers.start_luagate({ config = helpers.simple_config(mock.port),
                                      workers = 2 })
    assert(gw, err)
  end)

  lazy_teardown(function()
    helpers.stop_luagate(gw)
    if mock then mock.stop() end
  end)

  local function admin_addr()
    return "127.0.0.1:" .. gw.admin_port
  end

  it("health: 0 when the node answers with workers", function()
    local rc, out = helpers.luagate_exec({ "health", "--admin", admin_addr() })
    assert.equal(0, rc)
    assert.matches("2 workers", out)
  end)

  it("health: 1 when nothing answers", function()
    local rc, _, err = helpers.luagate_exec({
      "health", "--admin", "127.0.0.1:" .. helpers.get_free_port(),
    })
    assert.equal(1, rc)
    assert.matches("cannot reach", err)
  end)

  it("config diff: 0 for the running file", function()
    local rc, out = helpers.luagate_exec({ "config", "diff", "-c",
                                           gw.config_path, "--admin",
                                           admin_addr() })
    assert.equal(0, rc, out)
    assert.matches("no differences", out)
  end)

  it("config diff: 1 with the entities that differ", function()
    local cfg = helpers.simple_config(mock.port, { paths = { "/other" } })
    cfg.services[2] = { name = "extra", url = "http://127.0.0.1:1" }
    local path = helpers.make_config_file(cfg, helpers.make_prefix("diff"))
    local rc, out = helpers.luagate_exec({ "config", "diff", "-c", path,
                                           "--admin", admin_addr() })
    assert.equal(1, rc, out)
    assert.matches("%+ service extra", out)
    assert.matches("~ route mock%-route[^\n]*: paths", out)
  end)

  it("config diff: 2 on errors", function()
    local rc = helpers.luagate_exec({ "config", "diff", "-c", "/nonexistent.yml",
                                      "--admin", admin_addr() })
    assert.equal(2, rc)
    rc = helpers.luagate_exec({ "config", "diff", "-c", gw.config_path,
                                "--admin", "127.0.0.1:" .. helpers.get_free_port() })
    assert.equal(2, rc)
    rc = helpers.luagate_exec({ "config", "diff", "--admin", admin_addr() })
    assert.equal(2, rc)
  end)

  it("reload: SIGHUP through the pid file", function()
    local before = assert(helpers.admin_status(gw)).config_hash
    helpers.write_file(gw.config_path, helpers.json_encode(
      helpers.simple_config(mock.port, { paths = { "/reloaded" } })))
    local rc, out = helpers.luagate_exec({ "reload", "--pid", gw.pid_file })
    assert.equal(0, rc, out)
    assert.is_true(helpers.wait_new_config(gw, before))
    local r = assert(helpers.request_once(gw.proxy_port, { path = "/" }))
    assert.equal(404, r.status)
  end)

  it("reload: 1 with a message without a running master", function()
    local rc, _, err = helpers.luagate_exec({ "reload", "--pid",
                                              "/nonexistent.pid" })
    assert.equal(1, rc)
    assert.matches("pid file", err)
    rc, _, err = helpers.luagate_exec({ "reload" })
    assert.equal(1, rc)
    assert.matches("%-%-pid", err)
  end)

  it("help lists the commands", function()
    local rc, out = helpers.luagate_exec({ "help" })
    assert.equal(0, rc)
    for _, w in ipairs({ "reload", "health", "config diff", "--admin-token" }) do
      assert.matches(w, out, 1, true)
    end
  end)
end)
