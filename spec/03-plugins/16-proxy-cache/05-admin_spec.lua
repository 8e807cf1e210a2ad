-- proxy-cache entries through the Admin API (GET|DELETE /proxy-cache/{key},
-- DELETE /proxy-cache) with both strategies: the operations run in a timer
-- (luagate.admin's defer), where the redis strategy may wait for Redis.
-- Through the real binary, the mock upstream and a real redis-server,
-- which the last test stops.
local helpers = require "spec.helpers"

local fmt = string.format
local IDS = {
  mem = "d0000000-0000-4000-8000-000000000001",
  red = "d0000000-0000-4000-8000-000000000002",
}


describe("proxy-cache through the Admin API", function()
  local mock, redis, gw

  -- a query argument no other test uses
  local function uniq()
    return helpers.unique("t=")
  end

  local function get(path)
    local res = assert(helpers.request_once(gw.proxy_port, { path = path }))
    assert.equal(200, res.status)
    return res.headers["x-cache-status"], res.headers["x-cache-key"]
  end

  local function admin(method, path)
    local res = assert(helpers.request_once(gw.admin_port,
                                            { method = method, path = path }))
    return res.status, res.body ~= "" and helpers.json_decode(res.body) or nil
  end

  lazy_setup(function()
    mock = helpers.mock_upstream()
    redis = helpers.redis()
    local function route(name, pc)
      return { name = name, paths = { "/" .. name }, strip_path = true,
               plugins = { { name = "proxy-cache", config = pc,
                             id = IDS[name] } } }
    end
    gw = assert(helpers.start_luagate({
      config = {
        _format_version = "3.0",
        services = {
          { name = "mock", url = fmt("http://127.0.0.1:%d", mock.port),
            routes = {
              route("mem", { strategy = "memory" }),
              route("red", { strategy = "redis",
                             redis = { host = "127.0.0.1",
                                       port = redis.port } }),
            } },
        },
      },
      workers = 1,
    }))
  end)

  lazy_teardown(function()
    helpers.stop_luagate(gw)
    redis:stop()
    mock:stop()
  end)

  it("looks up and purges a key in Redis", function()
    local path = "/red/request?" .. uniq()
    local st, key = get(path)
    assert.equal("Miss", st)
    helpers.wait_until(function() return get(path) == "Hit" end, 5, 0.05)

    local status, entry = admin("GET", "/proxy-cache/" .. key)
    assert.equal(200, status)
    assert.equal(200, entry.status)
    assert.is_string(entry.body)

    status = admin("DELETE", "/proxy-cache/" .. key)
    assert.equal(204, status)
    assert.equal("Miss", (get(path)))
    assert.equal(404, (admin("DELETE", "/proxy-cache/" .. key .. "x")))
    assert.equal(405, (admin("POST", "/proxy-cache/" .. key)))
  end)

  it("purges every entry of both strategies", function()
    local mpath, rpath = "/mem/request?" .. uniq(), "/red/request?" .. uniq()
    get(mpath)
    get(rpath)
    helpers.wait_until(function()
      return get(mpath) == "Hit" and get(rpath) == "Hit"
    end, 5, 0.05)
    assert.equal(204, (admin("DELETE", "/proxy-cache")))
    assert.equal("Miss", (get(mpath)))
    assert.equal("Miss", (get(rpath)))
  end)

  it("has Kong's per-instance endpoints", function()
    local mpath, rpath = "/mem/request?" .. uniq(), "/red/request?" .. uniq()
    local _, mkey = get(mpath)
    local _, rkey = get(rpath)
    helpers.wait_until(function()
      return get(mpath) == "Hit" and get(rpath) == "Hit"
    end, 5, 0.05)
    local mem, red = "/proxy-cache/" .. IDS.mem, "/proxy-cache/" .. IDS.red
    assert.equal(200, (admin("GET", red .. "/caches/" .. rkey)))
    assert.equal(404, (admin("GET", mem .. "/caches/" .. rkey)))
    assert.equal(200, (admin("GET", mem .. "/caches/" .. mkey)))
    -- one instance's entries only
    assert.equal(204, (admin("DELETE", mem .. "/caches")))
    assert.equal("Miss", (get(mpath)))
    assert.equal("Hit", (get(rpath)))
    assert.equal(404, (admin("DELETE", mem .. "/caches/" .. rkey)))
    assert.equal(204, (admin("DELETE", red .. "/caches/" .. rkey)))
    assert.equal("Miss", (get(rpath)))
    -- not an instance, not a route of the API
    local other = "/proxy-cache/d0000000-0000-4000-8000-00000000ffff"
    assert.equal(404, (admin("DELETE", other .. "/caches")))
    assert.equal(404, (admin("GET", other .. "/caches/" .. mkey)))
    assert.equal(404, (admin("GET", mem .. "/other/" .. mkey)))
    assert.equal(405, (admin("GET", mem .. "/caches")))
  end)

  it("says which store failed when Redis is down, and purges the others",
     function()
    local mpath = "/mem/request?" .. uniq()
    get(mpath)
    assert.equal("Hit", (get(mpath)))
    redis:stop()
    local status, body = admin("DELETE", "/proxy-cache")
    assert.equal(502, status)
    assert.matches("could not purge every store", body.message, 1, true)
    assert.equal("Miss", (get(mpath)))
    status, body = admin("GET", "/proxy-cache/abc")
    assert.equal(502, status)
    assert.matches("could not look up", body.message, 1, true)
  end)
end)


-- a Redis that takes connections and never answers: the timer's purge
-- waits for its timeout while the admin request waits for the timer
describe("proxy-cache through the Admin API with a Redis that never answers",
         function()
  local hole, gw

  lazy_setup(function()
    local port = helpers.get_free_port()
    hole = helpers.start_process(fmt("python3 -c \"import socket, time; " ..
      "s = socket.socket(); " ..
      "s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1); " ..
      "s.bind(('127.0.0.1', %d)); s.listen(64); time.sleep(600)\"", port),
      "blackhole")
    helpers.wait_until(function() return helpers.port_open(port) end, 10)
    gw = assert(helpers.start_luagate({
      config = {
        _format_version = "3.0",
        services = {
          { name = "s", url = "http://127.0.0.1:9",
            routes = {
              { name = "red", paths = { "/red" }, plugins = {
                { name = "proxy-cache", config = {
                  strategy = "redis",
                  redis = { host = "127.0.0.1", port = port,
                            timeout = 1000 } } } } },
            } },
        },
      },
      workers = 1,
    }))
  end)

  lazy_teardown(function()
    helpers.stop_luagate(gw)
    hole.stop()
  end)

  it("answers when the store's timeout ends, and forgets a client that left",
     function()
    -- a client that leaves before the answer: nothing is sent to it, and
    -- the worker goes on
    for _ = 1, 3 do
      local c = assert(helpers.raw_connect(gw.admin_port))
      assert(c:send("DELETE /proxy-cache HTTP/1.1\r\nHost: x\r\n\r\n"))
      c.sock:close()
    end
    local t0 = helpers.gettime()
    local res = assert(helpers.request_once(gw.admin_port,
      { method = "DELETE", path = "/proxy-cache" }, 10))
    assert.equal(502, res.status)
    assert.matches("could not purge every store", res.body, 1, true)
    assert.is_true(helpers.gettime() - t0 >= 0.9) -- it waited for Redis
    res = assert(helpers.request_once(gw.admin_port, { path = "/status" }))
    assert.equal(200, res.status)
  end)
end)
