-- Name resolution for services and targets: DNS answers with their TTLs,
-- SRV for targets without a port, changes picked up, the last good
-- addresses kept when the server fails. A small DNS server of our own
-- (spec/fixtures/dns_server.py) answers from a file the spec rewrites.
local helpers = require "spec.helpers"

local fmt = string.format

describe("DNS", function()
  local mock, dns, gw, records

  local function set_records(t)
    helpers.write_file(records, helpers.json_encode(t))
  end

  lazy_setup(function()
    mock = helpers.mock_upstream()
    records = helpers.make_prefix("dns") .. "/records.json"
    set_records({ ttl = 1, a = { ["svc.test"] = { "127.0.0.1" } },
                  srv = { ["srv.test"] = { { 0, 10, mock.port, "svc.test" } } } })
    dns = helpers.start_server(fmt("%s %s/spec/fixtures/dns_server.py %s",
                                   helpers.python, helpers.root, records), "dns")
    gw = assert(helpers.start_luagate({
      args = { "--dns-resolver", "127.0.0.1:" .. dns.port },
      config = {
        _format_version = "3.0",
        upstreams = { { name = "pool", targets = { { target = "srv.test" } } } },
        services = {
          { name = "byname", url = fmt("http://svc.test:%d", mock.port),
            connect_timeout = 500,
            routes = { { name = "a", paths = { "/a" } } } },
          { name = "bysrv", host = "pool", routes = { { name = "b", paths = { "/b" } } } },
        },
      },
    }))
  end)

  lazy_teardown(function()
    if gw then helpers.stop_luagate(gw) end
    if dns then dns.stop() end
    if mock then mock.stop() end
  end)

  it("resolves a service host through the DNS server", function()
    local res = helpers.request_once(gw.proxy_port, { path = "/a/x" })
    assert.equal(200, res.status)
  end)

  it("finds a target without a port through SRV (its port included)", function()
    local res = helpers.request_once(gw.proxy_port, { path = "/b/x" })
    assert.equal(200, res.status)
    assert.equal("/x", helpers.json_decode(res.body).path)
  end)

  it("picks up a changed record after its TTL, and keeps the last good " ..
     "addresses when the name stops resolving", function()
    -- moved to an address where nothing listens: requests fail after the TTL
    set_records({ ttl = 1, a = { ["svc.test"] = { "127.0.0.9" } } })
    helpers.wait_until(function()
      return helpers.request_once(gw.proxy_port, { path = "/a/x" }).status == 502
    end, 10)
    -- back: requests succeed again
    set_records({ ttl = 1, a = { ["svc.test"] = { "127.0.0.1" } } })
    helpers.wait_until(function()
      return helpers.request_once(gw.proxy_port, { path = "/a/x" }).status == 200
    end, 10)
    -- the DNS server stops answering: the last good address stays in use
    dns.stop()
    helpers.wait_until(function()
      -- requests trigger the refreshes; each must still succeed
      assert.equal(200, helpers.request_once(gw.proxy_port, { path = "/a/x" }).status)
      return (helpers.read_file(gw.error_log) or ""):find("keeping the last good addresses", 1,
                                                          true) ~= nil
    end, 30, 0.5)
    assert.equal(200, helpers.request_once(gw.proxy_port, { path = "/a/x" }).status)
  end)
end)
