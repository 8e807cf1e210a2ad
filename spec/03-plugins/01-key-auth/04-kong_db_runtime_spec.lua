-- kong.db in a running worker: in access, in `configure` and in a timer
-- (the worker's current config), and after a reload.
local helpers = require "spec.helpers"

local FIXTURES = helpers.root .. "/spec/03-plugins/01-key-auth/fixtures"

local ALICE = "1d2c3b4a-5e6f-4a7b-8c9d-0e1f2a3b4c5d"
local BOB = "6a5b4c3d-2e1f-4a0b-9c8d-7e6f5a4b3c2d"
local CAROL = "3c2b1a0f-9e8d-4c7b-8a6f-5e4d3c2b1a0f"


local function config(consumers)
  return {
    _format_version = "3.0",
    services = {
      -- never reached: the probe answers in access
      { name = "none", url = "http://127.0.0.1:9", routes = {
        { name = "probe", paths = { "/probe" },
          plugins = { { name = "db-probe" } } },
      } },
    },
    consumers = consumers,
  }
end


describe("kong.db in a worker", function()
  local gw

  lazy_setup(function()
    gw = assert(helpers.start_luagate({
      config = config({ { id = ALICE, username = "alice" } }),
      args = { "--plugins-dir", FIXTURES },
    }))
  end)

  lazy_teardown(function()
    if gw then helpers.stop_luagate(gw) end
  end)

  local function probe(user)
    local res = assert(helpers.request_once(gw.proxy_port, {
      path = "/probe?user=" .. user }))
    return assert(helpers.json_decode(assert.res_status(200, res)))
  end

  it("reads the config in access, configure and timers", function()
    local d = probe("alice")
    assert.equal(1, d.configure_count)
    assert.equal(ALICE, d.request_user)
    helpers.wait_until(function()
      return probe("alice").timer_user == ALICE
    end, 10)
    assert.equal("none", probe("bob").request_user)
  end)

  it("follows a reload", function()
    assert.is_true(helpers.reload_luagate(gw, config({
      { id = ALICE, username = "alice" },
      { id = BOB, username = "bob" },
      { id = CAROL, username = "carol" },
    })))
    helpers.wait_until(function()
      return probe("bob").request_user == BOB
    end, 10)
    local d = probe("bob")
    assert.equal(3, d.configure_count)
    -- a timer started now reads the new config
    helpers.wait_until(function()
      return probe("carol").timer_user == CAROL
    end, 10)
  end)
end)
