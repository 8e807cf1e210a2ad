-- proxy-cache, memory strategy: each worker keeps decoded copies of the
-- entries it served and checks them against the shared dictionary on every
-- hit (strategies.lua). Through the real binary with 2 workers: a purge
-- through the Admin API, an entry refreshed by one worker and a reload that
-- turns the hit headers off all reach every worker's next hit. The
-- proxy-cache-fixture plugin (mode "pid") tells which worker answered; the
-- mock upstream echoes X-Gen, a header outside the cache key, so a body
-- tells which upstream response filled the entry.
local helpers = require "spec.helpers"

local fmt = string.format
local PLUGINS_DIR = helpers.root .. "/spec/03-plugins/16-proxy-cache/plugins"
local ROUTE_ID = "a0000000-0000-4000-8000-0000000000c1"


local function config(mock_port, pc_extra)
  local pc = { strategy = "memory" }
  for k, v in pairs(pc_extra or {}) do
    pc[k] = v
  end
  return {
    _format_version = "3.0",
    services = {
      { name = "mock", url = fmt("http://127.0.0.1:%d", mock_port),
        routes = {
          { name = "copies", id = ROUTE_ID, paths = { "/copies" },
            strip_path = true,
            plugins = {
              { name = "proxy-cache", config = pc },
              { name = "proxy-cache-fixture", config = { mode = "pid" } },
            } },
          { name = "short", paths = { "/short" }, strip_path = true,
            plugins = {
              { name = "proxy-cache",
                config = { strategy = "memory", cache_ttl = 1,
                           storage_ttl = 60 } },
              { name = "proxy-cache-fixture", config = { mode = "pid" } },
            } },
        } },
    },
  }
end


describe("proxy-cache workers' copies of memory entries", function()
  local mock, gw

  -- a query argument no other test uses
  local function uniq()
    return helpers.unique("t=")
  end

  -- one request on a new connection (connections spread over the workers)
  local function get(path, gen)
    local c = helpers.proxy_client(gw)
    local res = assert(c:send({ method = "GET", path = path,
                                headers = { ["X-Gen"] = gen } }))
    c:close()
    local echo = helpers.json_decode(res.body)
    return {
      status = res.status,
      cache = res.headers["x-cache-status"],
      key = res.headers["x-cache-key"],
      age = res.headers["age"],
      pid = res.headers["x-worker-pid"],
      gen = echo and echo.headers["x-gen"],
    }
  end

  -- requests until each of the 2 workers answered `per_worker` that pass
  -- ok(r); returns every response, in order
  local function from_each_worker(path, gen, per_worker, ok)
    local all, count = {}, {}
    helpers.wait_until(function()
      local r = get(path, gen)
      all[#all + 1] = r
      if ok(r) then
        count[r.pid] = (count[r.pid] or 0) + 1
      end
      local workers = 0
      for _, n in pairs(count) do
        if n >= per_worker then
          workers = workers + 1
        end
      end
      return workers == 2
    end, 10)
    return all
  end

  local function is_hit(r)
    return r.cache == "Hit"
  end

  local function any()
    return true
  end

  lazy_setup(function()
    mock = helpers.mock_upstream()
    gw = assert(helpers.start_luagate({
      config = config(mock.port),
      workers = 2,
      args = { "--plugins-dir", PLUGINS_DIR },
    }))
  end)

  lazy_teardown(function()
    if gw then helpers.stop_luagate(gw) end
    if mock then mock.stop() end
  end)

  it("a purge through the Admin API reaches every worker's next hit",
     function()
    local path = "/copies/request?" .. uniq()
    local first = get(path, "1")
    assert.equal("Miss", first.cache)
    assert.equal("1", first.gen)
    -- two hits per worker: the first makes its copy, the second uses it
    for _, r in ipairs(from_each_worker(path, "1", 2, is_hit)) do
      assert.equal("1", r.gen)
    end

    local c = assert(helpers.admin_client(gw))
    local res = assert(c:send({ method = "DELETE",
                                path = "/proxy-cache/" .. first.key }))
    c:close()
    assert.equal(204, res.status)

    local after = from_each_worker(path, "2", 1, any)
    assert.equal("Miss", after[1].cache)
    for _, r in ipairs(after) do
      assert.equal(200, r.status)
      assert.equal("2", r.gen) -- never the purged entry
    end
  end)

  it("an entry one worker refreshed is what the other serves next",
     function()
    local path = "/short/request?" .. uniq()
    assert.equal("Miss", get(path, "1").cache)
    for _, r in ipairs(from_each_worker(path, "1", 2, is_hit)) do
      assert.equal("1", r.gen)
    end
    -- older than cache_ttl (1 s): the next request refreshes it with X-Gen 2
    local refreshed
    helpers.wait_until(function()
      local r = get(path, "2")
      if r.cache == "Refresh" then
        refreshed = r
        return true
      end
      assert.equal("1", r.gen)
      return false
    end, 5)
    assert.equal("2", refreshed.gen)
    for _, r in ipairs(from_each_worker(path, "3", 1, is_hit)) do
      assert.equal("2", r.gen)
    end
  end)

  it("a reload that turns the hit headers off applies to the copies",
     function()
    local path = "/copies/request?" .. uniq()
    assert.equal("Miss", get(path, "1").cache)
    for _, r in ipairs(from_each_worker(path, "1", 2, is_hit)) do
      assert.truthy(r.age)
      assert.truthy(r.key)
    end
    assert.is_true(helpers.reload_luagate(gw, config(mock.port, {
      response_headers = { age = false, ["X-Cache-Status"] = false,
                           ["X-Cache-Key"] = false },
    })))
    -- served from the entry stored before the reload (X-Gen 1)
    for _, r in ipairs(from_each_worker(path, "2", 2, any)) do
      assert.equal("1", r.gen)
      assert.is_nil(r.cache)
      assert.is_nil(r.age)
      assert.is_nil(r.key)
    end
  end)
end)
