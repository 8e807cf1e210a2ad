-- The master's snapshots of the configuration file (runtime/src/master.c):
-- workers start with the last snapshot known good and load reload orders
-- from newer ones. A worker restarted just before a reload may open its
-- snapshot late, and one restarted after an order went out never got it.
-- strace holds a worker's open() of one snapshot (syscall injection,
-- delay_enter), which makes these races happen on every run.
local helpers = require "spec.helpers"

local fmt = string.format

local function have_strace()
  local rc = os.execute("strace -V >/dev/null 2>&1")
  return rc == 0 or rc == true
end

local function unique(tag)
  return helpers.unique(tag .. "-")
end

local function config(mock_port, name)
  return {
    _format_version = "3.0",
    services = {
      { name = "echo", url = fmt("http://127.0.0.1:%d", mock_port),
        routes = { { name = name, paths = { "/" .. name } } } },
    },
  }
end

local function exists(path)
  local f = io.open(path, "r")
  if f then
    f:close()
  end
  return f ~= nil
end

-- The run directory of gw's master: the /tmp/luagate.* directory whose
-- first snapshot has the bytes of gw's configuration file (the route name
-- in it is unique).
local function run_dir(gw)
  local want = assert(helpers.read_file(gw.config_path))
  local ext = gw.config_path:match("%.%w+$") or ""
  local _, out = helpers.execute("ls -d /tmp/luagate.* 2>/dev/null")
  for dir in out:gmatch("%S+") do
    if helpers.read_file(dir .. "/config-1" .. ext) == want then
      return dir, ext
    end
  end
end

local function files_in(dir)
  local _, out = helpers.execute("ls " .. helpers.shell_quote(dir))
  local list = {}
  for f in out:gmatch("%S+") do
    list[#list + 1] = f
  end
  table.sort(list)
  return list
end

-- Traces pids (and, with -f, the children they fork from now on) and holds
-- every open() of path for `hold` seconds. Returns once strace is attached.
local function hold_open(pids, path, hold)
  local attach = {}
  for i, p in ipairs(pids) do
    attach[i] = "-p " .. p
  end
  local st = helpers.start_process(fmt(
    "strace -f -o /dev/null -P %s -e trace=openat " ..
    "-e inject=openat:delay_enter=%ds %s",
    helpers.shell_quote(path), hold, table.concat(attach, " ")), "strace")
  helpers.wait_until(function()
    local _, n = (helpers.read_file(st.stderr) or ""):gsub("attached", "")
    return n >= #pids
  end, 10)
  return st
end

-- Kills the first worker and returns the pid of the one the master starts
-- in its place.
local function restart_first_worker(gw)
  local before = helpers.worker_pids(gw)
  helpers.signal(before[1], "KILL")
  return helpers.wait_until(function()
    local now = helpers.worker_pids(gw)
    if #now ~= #before then
      return false
    end
    for _, p in ipairs(now) do
      if p ~= before[2] and p ~= before[1] then
        return p
      end
    end
  end, 10)
end

local function count(s, plain)
  local n, at = 0, 1
  while true do
    local i = s:find(plain, at, true)
    if not i then
      return n
    end
    n, at = n + 1, i + 1
  end
end

describe("snapshots", function()
  local mock

  lazy_setup(function()
    mock = helpers.mock_upstream()
  end)

  lazy_teardown(function()
    if mock then mock.stop() end
  end)

  -- luagate with 2 workers on config `name`, stopped when the test ends;
  -- returns it, the master's run directory and the snapshots' extension
  local function start(name)
    local gw = assert(helpers.start_luagate({ config = config(mock.port, name),
                                              workers = 2 }))
    finally(function() helpers.stop_luagate(gw) end)
    helpers.wait_until(function()
      return #helpers.worker_pids(gw) == 2
    end, 10)
    local dir, ext = run_dir(gw)
    assert.is_string(dir, "the master's run directory")
    return gw, dir, ext
  end

  before_each(function()
    if not have_strace() then
      pending("strace is not installed (make deps installs it)")
    end
  end)

  it("keeps the snapshot a restarted worker has not opened yet, then drops it",
     function()
    local name = unique("snap")
    local gw, dir, ext = start(name)
    local first = dir .. "/config-1" .. ext

    -- the worker started in place of a killed one waits 8 s in its open()
    -- of the first snapshot, the one known good when it was forked
    local st = hold_open({ gw.pid }, first, 8)
    finally(st.stop)
    local late = restart_first_worker(gw)
    assert.is_number(late)

    -- meanwhile three reloads, each loaded by the other worker: the first
    -- snapshot is neither the one known good nor among the last three
    -- ordered any more
    for i = 1, 3 do
      helpers.reload_luagate(gw, config(mock.port, name .. "-" .. i),
                             { wait = false })
      helpers.wait_until(function()
        local log = helpers.read_file(gw.error_log) or ""
        return count(log, " reloaded from ") == i
      end, 10)
    end
    assert.is_true(exists(first), "the late worker's snapshot was removed")

    -- the late worker starts, then loads the newest order
    assert.is_true(helpers.wait_new_config(gw, nil, 20))
    local st_now = assert(helpers.admin_status(gw))
    assert.equal(2, #st_now.worker_config_hashes)
    assert.is_true(helpers.pid_alive(late), "the late worker died")
    local log = helpers.read_file(gw.error_log) or ""
    assert.falsy(log:find("could not load the configuration", 1, true), log)
    local res = helpers.request_once(gw.proxy_port,
                                     { path = "/" .. name .. "-3" }, 5)
    assert.equal(200, res and res.status)

    -- once it has reported, its snapshot goes: the run directory holds the
    -- three last ordered (the newest is the one known good)
    helpers.wait_until(function()
      return not exists(first)
    end, 10)
    assert.same({ "config-2" .. ext, "config-3" .. ext, "config-4" .. ext },
                files_in(dir))
  end)

  it("orders a worker restarted after a reload order went out to load it",
     function()
    local name = unique("order")
    local gw, dir, ext = start(name)
    local second = dir .. "/config-2" .. ext

    -- one worker will wait 3 s in its open() of the next snapshot; the
    -- other is stopped, so neither loads it before the second is killed
    -- (a traced worker is reaped late: it is not the one killed)
    local pids = helpers.worker_pids(gw)
    local st = hold_open({ pids[2] }, second, 3)
    finally(st.stop)
    helpers.signal(pids[1], "STOP")
    helpers.reload_luagate(gw, config(mock.port, name .. "-new"),
                           { wait = false })
    helpers.wait_until(function()
      return exists(second)
    end, 10)
    -- the order is out; the worker that replaces the stopped one starts
    -- with the first snapshot, the one still known good
    local late = restart_first_worker(gw)
    assert.is_number(late)

    -- the other worker loads the second one, which becomes known good; the
    -- late worker must load it too
    helpers.wait_until(function()
      local log = helpers.read_file(gw.error_log) or ""
      return log:find(" reloaded from ", 1, true)
    end, 15)
    local loaded = helpers.wait_until(function()
      local log = helpers.read_file(gw.error_log) or ""
      return log:find(late .. "#worker %d+: configuration %x+ loaded") ~= nil
    end, 10)
    assert.is_true(loaded)
    assert.is_true(helpers.wait_new_config(gw, nil, 10))
    for _ = 1, 10 do
      local res = helpers.request_once(gw.proxy_port,
                                       { path = "/" .. name .. "-new" }, 5)
      assert.equal(200, res and res.status)
    end
  end)
end)
