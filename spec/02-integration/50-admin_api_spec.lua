-- The Admin API: entities, GET/POST /config, debug switches, proxy-cache,
-- circuit-breakers, the token rule. docs/admin-api.md.
local helpers = require "spec.helpers"

local function config(port)
  return {
    _format_version = "3.0",
    services = {
      {
        name = "mock",
        url = "http://127.0.0.1:" .. port,
        routes = { { name = "r1", paths = { "/one" } } },
        plugins = { { name = "key-auth" } },
      },
    },
    consumers = {
      {
        username = "bob",
        keyauth_credentials = { { key = "s3cr3t-key" } },
        basicauth_credentials = { { username = "bob", password = "pw-123" } },
      },
    },
    upstreams = {
      { name = "up1", targets = { { target = "127.0.0.1:" .. port } } },
    },
  }
end

local function new_config(port)
  return {
    _format_version = "3.0",
    services = {
      {
        name = "mock2",
        url = "http://127.0.0.1:" .. port,
        routes = { { name = "r2", paths = { "/two" } } },
      },
    },
  }
end

local function admin(gw, method, path, opts)
  local c = assert(helpers.admin_client(gw))
  opts = opts or {}
  opts.method = method
  opts.path = path
  local res = assert(c:send(opts))
  c:close()
  return res
end

local function json(res)
  return helpers.json_decode(res.body)
end


describe("admin API", function()
  local mock, gw

  lazy_setup(function()
    mock = helpers.mock_upstream()
    local err
    gw, err = helpers.start_luagate({ config = config(mock.port), workers = 2 })
    assert(gw, err)
  end)

  lazy_teardown(function()
    helpers.stop_luagate(gw)
    if mock then mock.stop() end
  end)

  describe("entities", function()
    it("GET /services lists in Kong's shape", function()
      local res = admin(gw, "GET", "/services")
      assert.equal(200, res.status)
      local body = json(res)
      assert.equal(1, #body.data)
      assert.equal("mock", body.data[1].name)
      assert.is_number(body.data[1].created_at)
      assert.is_number(body.data[1].updated_at)
      assert.not_equal("string", type(body.next))
    end)

    it("GET /services/{name} and /services/{id}", function()
      local s = json(admin(gw, "GET", "/services/mock"))
      assert.equal("mock", s.name)
      local s2 = json(admin(gw, "GET", "/services/" .. s.id))
      assert.equal(s.id, s2.id)
    end)

    it("GET /routes/{name}: service as { id }", function()
      local res = admin(gw, "GET", "/routes/r1")
      assert.equal(200, res.status)
      local r = json(res)
      local s = json(admin(gw, "GET", "/services/mock"))
      assert.same({ id = s.id }, r.service)
      assert.same({ "/one" }, r.paths)
      local list = json(admin(gw, "GET", "/routes"))
      assert.equal(1, #list.data)
    end)

    it("GET /consumers and /consumers/{username}", function()
      local c = json(admin(gw, "GET", "/consumers/bob"))
      assert.equal("bob", c.username)
      assert.is_nil(c.keyauth_credentials)
      assert.equal(1, #json(admin(gw, "GET", "/consumers")).data)
    end)

    it("GET /plugins and /plugins/{id}", function()
      local list = json(admin(gw, "GET", "/plugins"))
      assert.equal(1, #list.data)
      local p = list.data[1]
      assert.equal("key-auth", p.name)
      assert.is_table(p.service)
      local one = json(admin(gw, "GET", "/plugins/" .. p.id))
      assert.equal(p.id, one.id)
    end)

    it("GET /upstreams and /upstreams/{name}/targets", function()
      local list = json(admin(gw, "GET", "/upstreams"))
      assert.equal("up1", list.data[1].name)
      local t = json(admin(gw, "GET", "/upstreams/up1/targets"))
      assert.equal("127.0.0.1:" .. mock.port, t.data[1].target)
      assert.same({ id = list.data[1].id }, t.data[1].upstream)
    end)

    it("unknown entities are 404 Not found", function()
      for _, p in ipairs({ "/services/nope", "/routes/nope", "/consumers/x",
                           "/plugins/x", "/upstreams/x/targets", "/nothing" }) do
        local res = admin(gw, "GET", p)
        assert.equal(404, res.status, p)
        assert.equal("Not found", json(res).message)
      end
    end)

    it("pages with size and offset", function()
      local res = admin(gw, "GET", "/services?size=0")
      assert.equal(400, res.status)
      local body = json(admin(gw, "GET", "/services?size=1"))
      assert.equal(1, #body.data)
    end)
  end)

  describe("GET /config", function()
    it("returns the running config with secrets redacted", function()
      local res = admin(gw, "GET", "/config")
      assert.equal(200, res.status)
      assert.matches("application/json", res.headers["content-type"])
      assert.not_matches("s3cr3t%-key", res.body)
      assert.not_matches("pw%-123", res.body)
      local doc = json(res)
      assert.equal("3.0", doc._format_version)
      assert.equal("<redacted>",
                   doc.consumers[1].keyauth_credentials[1].key)
      assert.equal("<redacted>",
                   doc.consumers[1].basicauth_credentials[1].password)
      assert.equal("mock", doc.services[1].name)
    end)
  end)

  describe("POST /config", function()
    it("refuses an invalid config with 400 and error paths", function()
      local res = admin(gw, "POST", "/config", {
        headers = { ["Content-Type"] = "application/json" },
        body = helpers.json_encode({
          _format_version = "3.0",
          services = { { name = "x", host = 12,
                         routes = { { paths = { 5 } } } } },
        }),
      })
      assert.equal(400, res.status)
      local body = json(res)
      assert.matches("^declarative config is invalid: ", body.message)
      assert.is_table(body.fields.services)
      assert.is_string(body.fields.services[1].host)
      assert.is_table(body.flattened_errors)
      assert.equal("service", body.flattened_errors[1].entity_type)
    end)

    it("refuses a syntax error and an empty body", function()
      local res = admin(gw, "POST", "/config", {
        headers = { ["Content-Type"] = "application/json" }, body = "{bad",
      })
      assert.equal(400, res.status)
      assert.matches("syntax error", json(res).message)
      res = admin(gw, "POST", "/config", { body = "" })
      assert.equal(400, res.status)
    end)

    it("?check_hash=1 answers 304 for the running config", function()
      local st = assert(helpers.admin_status(gw))
      local res = admin(gw, "POST", "/config?check_hash=1", {
        body = assert(helpers.read_file(gw.config_path)),
      })
      assert.equal(304, res.status)
      assert.equal(st.config_hash, assert(helpers.admin_status(gw)).config_hash)
    end)

    it("applies a YAML config to every worker atomically", function()
      local text = require("lyaml").dump({ new_config(mock.port) })
      -- requests keep flowing while the config changes
      local proxy = helpers.proxy_client(gw)
      assert.res_status(200, assert(proxy:get("/one", {
        headers = { apikey = "s3cr3t-key" } })))
      local res = admin(gw, "POST", "/config", {
        headers = { ["Content-Type"] = "application/yaml" }, body = text,
      })
      assert.equal(201, res.status, res.body)
      local hash = json(res).config_hash
      assert.is_string(hash)
      -- every worker runs it when the answer comes: many fresh connections
      for _ = 1, 20 do
        local r = assert(helpers.request_once(gw.proxy_port,
                                              { path = "/two" }))
        assert.equal(200, r.status)
        r = assert(helpers.request_once(gw.proxy_port, { path = "/one" }))
        assert.equal(404, r.status)
      end
      -- the keepalive connection opened before keeps working
      assert.res_status(200, assert(proxy:get("/two")))
      proxy:close()
      for _ = 1, 6 do
        assert.equal(hash, assert(helpers.admin_status(gw)).config_hash)
      end
      local routes = json(admin(gw, "GET", "/routes"))
      assert.equal("r2", routes.data[1].name)
      -- posting it again with check_hash: 304
      res = admin(gw, "POST", "/config?check_hash=1", { body = text })
      assert.equal(304, res.status)
      -- JSON, and Kong's {"config": "..."} wrapper, go back to the first
      res = admin(gw, "POST", "/config", {
        headers = { ["Content-Type"] = "application/json" },
        body = helpers.json_encode({
          config = helpers.json_encode(config(mock.port)),
        }),
      })
      assert.equal(201, res.status, res.body)
      local r = assert(helpers.request_once(gw.proxy_port,
                                            { path = "/one" }))
      assert.equal(401, r.status) -- key-auth is back
    end)

    it("a SIGHUP re-reads the original file", function()
      admin(gw, "POST", "/config", {
        body = helpers.json_encode(new_config(mock.port)),
      })
      assert.truthy(helpers.reload_luagate(gw))
      local r = assert(helpers.request_once(gw.proxy_port, { path = "/one" }))
      assert.equal(401, r.status)
    end)

    it("refuses a body over the limit with 413", function()
      local c = assert(helpers.admin_client(gw))
      local res = assert(c:send({
        method = "POST", path = "/config",
        headers = { ["Content-Length"] = tostring(65 * 1024 * 1024) },
      }))
      c:close()
      assert.equal(413, res.status)
    end)
  end)

  describe("debug switch", function()
    it("adds debug fields to a route's access log for a while", function()
      local res = admin(gw, "POST", "/debug/routes/r1?seconds=60")
      assert.equal(201, res.status, res.body)
      local list = json(admin(gw, "GET", "/debug/routes"))
      assert.equal(1, #list.data)
      local r = assert(helpers.request_once(gw.proxy_port, {
        path = "/one", headers = { apikey = "s3cr3t-key", ["X-Debug-Me"] = "1" },
      }))
      assert.equal(200, r.status)
      local entry
      helpers.wait_until(function()
        for _, e in ipairs(helpers.access_log_entries(gw)) do
          if e.debug and e.request_id then
            entry = e
          end
        end
        return entry
      end, 5)
      assert.equal("<redacted>", entry.debug.request_headers.apikey)
      assert.equal("1", entry.debug.request_headers["X-Debug-Me"])
      assert.equal("127.0.0.1:" .. mock.port, entry.debug.upstream_addr)
      assert.is_table(entry.debug.timings_ms)
      assert.matches("route debug", helpers.read_file(gw.error_log))
      assert.not_matches("s3cr3t%-key", helpers.read_file(gw.error_log))
      res = admin(gw, "DELETE", "/debug/routes/r1")
      assert.equal(200, res.status)
      assert.equal(0, #json(admin(gw, "GET", "/debug/routes")).data)
    end)

    it("bad input: 400 and 404", function()
      assert.equal(400, admin(gw, "POST", "/debug/routes/r1?seconds=5000").status)
      assert.equal(400, admin(gw, "POST", "/debug/routes/r1?seconds=x").status)
      assert.equal(404, admin(gw, "POST", "/debug/routes/nope").status)
    end)
  end)

  describe("plugins' endpoints", function()
    it("DELETE /proxy-cache and /proxy-cache/{key}", function()
      assert.equal(204, admin(gw, "DELETE", "/proxy-cache").status)
      assert.equal(404, admin(gw, "DELETE", "/proxy-cache/abc").status)
    end)

    it("GET /circuit-breakers", function()
      local res = admin(gw, "GET", "/circuit-breakers")
      assert.equal(200, res.status)
      assert.is_table(json(res).data)
    end)

    it("GET /dashboard is text/html or 404", function()
      local res = admin(gw, "GET", "/dashboard")
      if res.status == 200 then
        assert.matches("text/html", res.headers["content-type"])
      else
        assert.equal(404, res.status)
      end
    end)
  end)
end)


describe("admin API token", function()
  local mock

  lazy_setup(function()
    mock = helpers.mock_upstream()
  end)

  lazy_teardown(function()
    if mock then mock.stop() end
  end)

  it("refuses to start on a non-loopback address without a token", function()
    local prefix = helpers.make_prefix("notoken")
    local path = helpers.make_config_file(helpers.simple_config(mock.port),
                                          prefix)
    local rc, _, err = helpers.luagate_exec({
      "run", "-c", path, "--listen", "127.0.0.1:" .. helpers.get_free_port(),
      "--admin-listen", "0.0.0.0:" .. helpers.get_free_port(),
    })
    assert.not_equal(0, rc)
    assert.matches("admin%-token", err)
  end)

  it("asks for the token when it listens on 0.0.0.0", function()
    local port = helpers.get_free_port()
    local gw = assert(helpers.start_luagate({
      config = helpers.simple_config(mock.port),
      admin_port = port,
      args = { "--admin-listen", "0.0.0.0:" .. port },
      env = { LUAGATE_ADMIN_TOKEN = "t0ken" },
    }))
    finally(function() helpers.stop_luagate(gw) end)
    local res = admin(gw, "GET", "/status")
    assert.equal(401, res.status)
    assert.is_string(json(res).message)
    res = admin(gw, "GET", "/services", {
      headers = { Authorization = "Bearer wrong" },
    })
    assert.equal(401, res.status)
    res = admin(gw, "GET", "/services", {
      headers = { Authorization = "Bearer t0ken" },
    })
    assert.equal(200, res.status)
    res = admin(gw, "GET", "/status", {
      headers = { ["Kong-Admin-Token"] = "t0ken" },
    })
    assert.equal(200, res.status)
    -- the CLI passes it too
    local rc = helpers.luagate_exec({ "health", "--admin",
                                      "127.0.0.1:" .. port },
                                    { LUAGATE_ADMIN_TOKEN = "t0ken" })
    assert.equal(0, rc)
    rc = helpers.luagate_exec({ "health", "--admin", "127.0.0.1:" .. port })
    assert.equal(1, rc)
  end)
end)
