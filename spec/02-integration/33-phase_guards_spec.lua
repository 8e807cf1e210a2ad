-- Phase guards (kong.plugin.idle, runtime/include/gw/guard.h) through the
-- real binary (one worker) and the guard-probe test plugin: an access or
-- log handler left out while the keys it watches keep their values, and
-- run again when one is stored, deleted, expires or gets a new expiry time;
-- statuses that still run a log handler; responses the gateway made; a
-- plugin that is not the route's only handler of the phase; a reload;
-- argument errors. luagate_phase_guard_skips_total counts the handlers
-- left out.
local helpers = require "spec.helpers"

local fmt = string.format
local PLUGINS_DIR = helpers.root .. "/spec/fixtures/plugins"


local function config(mock_port, down_port)
  local url = fmt("http://127.0.0.1:%d", mock_port)
  local function route(name, plugins, path)
    return { name = name, paths = { path or "/" .. name }, strip_path = true,
             plugins = plugins }
  end
  local function probe(mode, key)
    return { name = "guard-probe", config = { mode = mode, key = key } }
  end
  return {
    _format_version = "3.0",
    services = {
      { name = "mock", url = url, routes = {
          route("acc", { probe("access", "acc") }),
          route("exp", { probe("access", "exp") }),
          route("shared", { probe("access", "shared"),
                            { name = "rt-count",
                              config = { key = "guards" } } }),
          route("lg", { probe("log", "lg") }),
          route("set", { probe("set") }),
          route("report", { probe("report") }),
          route("misuse", { probe("misuse") }),
      } },
      { name = "down", url = fmt("http://127.0.0.1:%d", down_port),
        routes = { route("lgdown", { probe("log", "lgdown") }) } },
    },
  }
end


describe("phase guards (kong.plugin.idle)", function()
  local mock, gw, client

  local function get(path)
    return assert(client:send({ path = path }))
  end

  local function set(key, op, ttl)
    assert.res_status(200, get(fmt("/set?key=%s&op=%s&ttl=%s", key,
                                   op or "set", ttl or 0)))
  end

  -- the handlers' run counts (this worker: the spec runs one)
  local function runs()
    return helpers.json_decode(assert.res_status(200, get("/report")))
  end

  local function skips()
    return {
      access = helpers.metric(gw,
        'luagate_phase_guard_skips_total{phase="access"}'),
      log = helpers.metric(gw, 'luagate_phase_guard_skips_total{phase="log"}'),
    }
  end

  lazy_setup(function()
    mock = helpers.mock_upstream()
    gw = assert(helpers.start_luagate({
      config = config(mock.port, helpers.get_free_port()),
      workers = 1,
      args = { "--plugins-dir", PLUGINS_DIR },
    }))
  end)

  lazy_teardown(function()
    if gw then helpers.stop_luagate(gw) end
    if mock then mock.stop() end
  end)

  before_each(function()
    client = helpers.proxy_client(gw)
  end)

  after_each(function()
    if client then client:close() end
  end)

  it("leaves an access handler out while its key keeps its value",
     function()
    assert.res_status(403, get("/acc/request"))
    set("acc")
    local res = get("/acc/request")
    assert.res_status(200, res)
    assert.equal("true", res.headers["x-idle"])
    local r0, s0 = runs().access, skips().access
    for _ = 1, 5 do
      res = get("/acc/request")
      assert.res_status(200, res)
      assert.is_nil(res.headers["x-idle"]) -- the handler did not run
    end
    assert.equal(r0, runs().access)
    assert.equal(s0 + 5, skips().access)

    -- a change of another key of the dictionary: the guard holds
    set("other")
    assert.res_status(200, get("/acc/request"))
    assert.equal(r0, runs().access)

    -- the key stored again (same value): the handler runs, and guards again
    set("acc")
    res = get("/acc/request")
    assert.res_status(200, res)
    assert.equal("true", res.headers["x-idle"])
    assert.equal(r0 + 1, runs().access)
    assert.res_status(200, get("/acc/request"))
    assert.equal(r0 + 1, runs().access)

    -- deleted: the handler runs and refuses
    set("acc", "delete")
    assert.res_status(403, get("/acc/request"))
    assert.res_status(403, get("/acc/request"))
    assert.equal(r0 + 3, runs().access)
  end)

  it("runs the handler again once a watched key expires", function()
    set("exp", "set", 1)
    local res = get("/exp/request")
    assert.res_status(200, res)
    assert.equal("true", res.headers["x-idle"])
    local r0 = runs().access
    assert.res_status(200, get("/exp/request"))
    assert.equal(r0, runs().access)
    helpers.sleep(1.2)
    assert.res_status(403, get("/exp/request"))
    assert.equal(r0 + 1, runs().access)
  end)

  it("follows a new expiry time (expire) of a watched key", function()
    set("exp")
    assert.equal("true", get("/exp/request").headers["x-idle"])
    local r0 = runs().access
    set("exp", "expire", 1)
    -- the value is the same: still left out, until the new expiry
    assert.res_status(200, get("/exp/request"))
    assert.equal(r0, runs().access)
    helpers.sleep(1.2)
    assert.res_status(403, get("/exp/request"))
    assert.equal(r0 + 1, runs().access)
  end)

  it("keeps no guard for a plugin that is not the route's only handler " ..
     "of the phase", function()
    set("shared")
    local r0, s0 = runs().access, skips().access
    for _ = 1, 3 do
      local res = get("/shared/request")
      assert.res_status(200, res)
      assert.equal("false", res.headers["x-idle"])
    end
    assert.equal(r0 + 3, runs().access)
    assert.equal(s0, skips().access)
  end)

  it("leaves a log handler out but for the statuses it names", function()
    assert.res_status(200, get("/lg/status/200")) -- runs, guards
    local r0, s0 = runs().log, skips().log
    for _ = 1, 4 do
      assert.res_status(200, get("/lg/status/200"))
    end
    assert.res_status(404, get("/lg/status/404"))
    assert.equal(r0, runs().log)
    assert.equal(s0 + 5, skips().log)
    -- 500 and 503 still run it; the guard stays for the others
    assert.res_status(500, get("/lg/status/500"))
    assert.res_status(503, get("/lg/status/503"))
    assert.res_status(200, get("/lg/status/200"))
    assert.equal(r0 + 2, runs().log)
    -- the watched key stored: it runs again
    set("lg")
    assert.res_status(200, get("/lg/status/200"))
    assert.res_status(200, get("/lg/status/200"))
    assert.equal(r0 + 3, runs().log)
  end)

  it("runs a guarded log handler for responses the gateway made",
     function()
    assert.res_status(502, get("/lgdown/request")) -- runs, guards
    local r0 = runs().log
    for _ = 1, 3 do
      assert.res_status(502, get("/lgdown/request"))
    end
    assert.equal(r0 + 3, runs().log)
  end)

  it("starts without guards after a reload", function()
    set("acc")
    get("/acc/request")
    assert.is_nil(get("/acc/request").headers["x-idle"])
    local cfg = config(mock.port, helpers.get_free_port())
    cfg.services[1].routes[1].tags = { "reloaded" }
    assert(helpers.reload_luagate(gw, cfg))
    client:close()
    client = helpers.proxy_client(gw)
    local res = get("/acc/request")
    assert.res_status(200, res)
    assert.equal("true", res.headers["x-idle"])
  end)

  it("refuses bad arguments", function()
    local res = get("/misuse/request")
    local errs = helpers.json_decode(assert.res_status(200, res))
    assert.matches("dict must be a shared dictionary", errs.dict, nil, true)
    assert.matches("watched must hold 1 to 4 keys", errs.no_keys, nil, true)
    assert.matches("watched must hold 1 to 4 keys", errs.five_keys, nil,
                   true)
    assert.matches("watched[1] must be { key = a string", errs.bad_key, nil,
                   true)
    assert.matches("watched[1] must be { key = a string", errs.bad_version,
                   nil, true)
    assert.matches("statuses must be a table, in the log phase",
                   errs.statuses_in_access, nil, true)
    assert.matches("function cannot be called in header_filter phase " ..
                   "(only in: access, log)", res.headers["x-header-filter"],
                   nil, true)
  end)
end)
