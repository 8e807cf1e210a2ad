-- The runloop's compiled code settles: once warm, a route's requests record
-- no more traces (LUAGATE_JIT_LOG, LuaJIT's jit.v log). The coroutine loop
-- of luagate.runloop.thread_main yields after each phase, and the code
-- after the yield is recorded as a new trace each time until a trace to
-- link to exists; with a loop over the plugins in the access phase that
-- could take thousands of requests (docs/performance.md, "The auth route,
-- third pass": one start in three under callgrind). That old failure did
-- not show on every start: this spec guards the settled state, it cannot
-- prove the order of trace formation. The route is the benchmark's auth
-- route.
local helpers = require "spec.helpers"

local fmt = string.format

local function count_lines(path)
  local n = 0
  for _ in (helpers.read_file(path) or ""):gmatch("[^\n]*\n") do
    n = n + 1
  end
  return n
end


describe("the JIT on a route with three plugins", function()
  local mock, gw, jit_log

  lazy_setup(function()
    mock = helpers.mock_upstream()
    local prefix = helpers.make_prefix("jit")
    jit_log = prefix .. "/jit.log"
    gw = assert(helpers.start_luagate({
      config = {
        _format_version = "3.0",
        services = {
          { name = "s", url = fmt("http://127.0.0.1:%d", mock.port),
            routes = {
              { name = "auth", paths = { "/auth" },
                plugins = {
                  { name = "key-auth" },
                  { name = "rate-limiting",
                    config = { minute = 1000000000, policy = "local" } },
                  { name = "request-transformer",
                    config = { add = { headers = { "X-Bench:1" } } } },
                } },
            } },
        },
        consumers = {
          { username = "bench", keyauth_credentials = { { key = "k" } } },
        },
      },
      env = { LUAGATE_JIT_LOG = jit_log },
      access_log = "off",
      log_level = "error",
    }))
  end)

  lazy_teardown(function()
    if gw then helpers.stop_luagate(gw) end
    if mock then mock.stop() end
  end)

  local function requests(n)
    local rc, out, err = helpers.execute(fmt(
      "BENCH_HEADER='apikey: k' BENCH_PATH=/auth luajit %s/spec/bench/" ..
      "client.lua seq %d %d", helpers.root, gw.proxy_port, n))
    assert(rc == 0, "the client failed: " .. out .. err)
  end

  it("records no trace once warm", function()
    requests(3000)
    local warm = count_lines(jit_log)
    requests(500)
    -- a late trace or two may still come; the stitched traces came one
    -- per request
    assert.is_true(count_lines(jit_log) - warm <= 5,
                   "traces recorded after warm-up: " ..
                   (count_lines(jit_log) - warm))
  end)
end)
