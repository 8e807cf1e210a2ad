-- Master and workers: forking, restarts, reloads, graceful and fast exits.
local helpers = require "spec.helpers"

local fmt = string.format

local function config(mock_port, extra_route)
  local routes = { { name = "load", paths = { "/load" } } }
  if extra_route then
    routes[#routes + 1] = { name = extra_route, paths = { "/" .. extra_route } }
  end
  return {
    _format_version = "3.0",
    services = {
      { name = "echo", url = fmt("http://127.0.0.1:%d", mock_port),
        routes = routes },
    },
  }
end

local function get_status(gw, path)
  local res = helpers.request_once(gw.proxy_port, { path = path }, 5)
  return res and res.status
end

-- SIGKILLs every worker and waits for the master to have restarted them all
local function restart_workers(gw)
  local before = helpers.worker_pids(gw)
  for _, p in ipairs(before) do
    helpers.signal(p, "KILL")
  end
  helpers.wait_until(function()
    local now = helpers.worker_pids(gw)
    if #now ~= #before then
      return false
    end
    for _, p in ipairs(now) do
      for _, q in ipairs(before) do
        if p == q then
          return false
        end
      end
    end
    return get_status(gw, "/load") == 200
  end, 10)
end

describe("processes", function()
  local mock

  lazy_setup(function()
    mock = helpers.mock_upstream()
  end)

  lazy_teardown(function()
    if mock then mock.stop() end
  end)

  describe("with 2 workers", function()
    local gw

    lazy_setup(function()
      local err
      gw, err = helpers.start_luagate({ config = config(mock.port, "first"),
                                        workers = 2 })
      assert(gw, err)
      helpers.wait_until(function()
        return #helpers.worker_pids(gw) == 2
      end, 10)
    end)

    lazy_teardown(function()
      helpers.stop_luagate(gw)
    end)

    it("forks 2 workers, reported by /status", function()
      assert.equal(2, #helpers.worker_pids(gw))
      local st = assert(helpers.admin_status(gw))
      assert.equal(2, st.workers)
    end)

    it("restarts a worker killed with SIGKILL and keeps serving", function()
      local before = helpers.worker_pids(gw)
      helpers.signal(before[1], "KILL")
      helpers.wait_until(function()
        local now = helpers.worker_pids(gw)
        if #now ~= 2 then
          return false
        end
        for _, p in ipairs(now) do
          if p == before[1] then
            return false
          end
        end
        return true
      end, 10)
      assert.is_true(helpers.pid_alive(before[2]))
      for _ = 1, 20 do
        assert.equal(200, get_status(gw, "/load"))
      end
    end)

    it("SIGHUP with a changed valid config serves the new routes",
       function()
      assert.equal(200, get_status(gw, "/first"))
      assert.equal(404, get_status(gw, "/second"))
      local hash = assert(helpers.admin_status(gw)).config_hash
      assert.is_string(hash)
      helpers.reload_luagate(gw, config(mock.port, "second"))
      helpers.wait_until(function()
        -- every worker has it: several connections in a row see it
        for _ = 1, 10 do
          if get_status(gw, "/second") ~= 200 then
            return false
          end
        end
        return true
      end, 10)
      assert.equal(404, get_status(gw, "/first"))
      local new_hash = assert(helpers.admin_status(gw)).config_hash
      assert.not_equal(hash, new_hash)
      assert.equal(2, #helpers.worker_pids(gw))
      -- the workers checked it as they loaded it; the master took their
      -- word: restarted workers start with it
      local log = helpers.read_file(gw.error_log) or ""
      assert.truthy(log:find("configuration " .. new_hash .. " reloaded from",
                             1, true), log)
      restart_workers(gw)
      for _ = 1, 10 do
        assert.equal(200, get_status(gw, "/second"))
      end
      assert.equal(new_hash, assert(helpers.admin_status(gw)).config_hash)
    end)

    it("SIGHUP with an invalid config logs an error and keeps the old one",
       function()
      local size = #(helpers.read_file(gw.error_log) or "")
      local hash = assert(helpers.admin_status(gw)).config_hash
      helpers.write_file(gw.config_path,
                         "{\"_format_version\": \"3.0\", \"services\": 5}")
      helpers.signal(gw, "HUP")
      local new_lines = helpers.wait_until(function()
        local data = helpers.read_file(gw.error_log) or ""
        local tail = data:sub(size + 1)
        return tail:lower():find("error") and tail
      end, 10)
      assert.truthy(new_lines)
      assert.is_true(helpers.pid_alive(gw.pid))
      assert.equal(200, get_status(gw, "/second"))
      assert.equal(hash, assert(helpers.admin_status(gw)).config_hash)
      -- the worker says why; the master says the old one stays
      helpers.wait_until(function()
        local tail = (helpers.read_file(gw.error_log) or ""):sub(size + 1)
        return tail:find("reload failed, keeping the running configuration",
                         1, true) and
               tail:find("services", 1, true) and
               tail:find("invalid configuration, keeping the running one",
                         1, true)
      end, 10)
      -- the error names the operator's file and line, not the master's copy
      local tail = (helpers.read_file(gw.error_log) or ""):sub(size + 1)
      assert.matches("keeping the running configuration: " .. gw.config_path ..
                     ":1: services: expected an array", tail, 1, true)
      -- workers restarted now start with the last good one, not the
      -- refused file
      restart_workers(gw)
      assert.equal(200, get_status(gw, "/second"))
      assert.equal(hash, assert(helpers.admin_status(gw)).config_hash)
      -- a valid config afterwards is taken again
      helpers.reload_luagate(gw, config(mock.port, "third"))
      helpers.wait_until(function()
        return get_status(gw, "/third") == 200
      end, 10)
    end)

    it("reloads during a stream of requests lose none", function()
      local clients = {}
      for i = 1, 4 do
        clients[i] = helpers.proxy_client(gw, 5)
      end
      local failures = {}
      local total = 0
      local function one(i)
        total = total + 1
        local c = clients[i]
        local res, err = c:get("/load/" .. total)
        if not res or res.status ~= 200 then
          failures[#failures + 1] = fmt("#%d on client %d: %s", total, i,
                                        res and res.status or tostring(err))
          c:close()
          clients[i] = helpers.proxy_client(gw, 5)
        end
        if total % 25 == 0 then
          -- a fresh connection now and then
          local r2, e2 = helpers.request_once(gw.proxy_port,
                                              { path = "/load/fresh" }, 5)
          if not r2 or r2.status ~= 200 then
            failures[#failures + 1] = "fresh connection: " ..
                                      tostring(r2 and r2.status or e2)
          end
        end
      end
      local hups = 0
      local next_hup = helpers.gettime() + 0.2
      local stop_at
      while true do
        for i = 1, #clients do
          one(i)
        end
        local now = helpers.gettime()
        if hups < 5 and now >= next_hup then
          hups = hups + 1
          helpers.write_file(gw.config_path, helpers.json_encode(
            config(mock.port, hups % 2 == 0 and "even" or "odd")))
          helpers.signal(gw, "HUP")
          next_hup = now + 0.3
          if hups == 5 then
            stop_at = now + 1
          end
        end
        if stop_at and now > stop_at then
          break
        end
      end
      for _, c in ipairs(clients) do c:close() end
      assert.equal(5, hups)
      assert.truthy(total > 50, "only " .. total .. " requests")
      assert.same({}, failures)
      -- the last config (5 = odd) is in effect
      helpers.wait_until(function()
        return get_status(gw, "/odd") == 200
      end, 10)
    end)
  end)

  describe("signals", function()
    it("SIGTERM lets an in-flight request complete, then exits 0",
       function()
      local gw = assert(helpers.start_luagate({ config = config(mock.port),
                                                workers = 1 }))
      finally(function() helpers.stop_luagate(gw, "KILL") end)
      local raw = assert(helpers.raw_connect(gw.proxy_port))
      assert(raw:send("GET /load/delay/1.5 HTTP/1.1\r\nHost: x\r\n\r\n"))
      -- the request has reached the upstream before the signal
      helpers.wait_until(function()
        for _, r in ipairs(mock.requests()) do
          if r.path == "/delay/1.5" then return true end
        end
      end, 5)
      helpers.signal(gw, "TERM")
      local res, err = raw:read_response()
      assert.is_table(res, "no response: " .. tostring(err))
      assert.equal(200, res.status)
      assert.equal("/delay/1.5", helpers.json_decode(res.body).path)
      raw:close()
      assert.equal(0, helpers.wait_exit(gw, 10))
      assert.equal(0, #helpers.children(gw.pid))
    end)

    it("SIGTERM stops accepting and exits 0 when idle", function()
      local gw = assert(helpers.start_luagate({ config = config(mock.port),
                                                workers = 2 }))
      finally(function() helpers.stop_luagate(gw, "KILL") end)
      helpers.wait_until(function()
        return #helpers.worker_pids(gw) == 2
      end, 10)
      local workers = helpers.worker_pids(gw)
      helpers.signal(gw, "TERM")
      assert.equal(0, helpers.wait_exit(gw, 10))
      for _, w in ipairs(workers) do
        assert.is_false(helpers.pid_alive(w))
      end
      assert.is_false(helpers.port_open(gw.proxy_port))
    end)

    it("SIGTERM gives up on requests after --drain-timeout", function()
      local gw = assert(helpers.start_luagate({
        config = config(mock.port), workers = 1,
        args = { "--drain-timeout", "1000" },
      }))
      finally(function() helpers.stop_luagate(gw, "KILL") end)
      local raw = assert(helpers.raw_connect(gw.proxy_port))
      assert(raw:send("GET /load/delay/8 HTTP/1.1\r\nHost: x\r\n\r\n"))
      helpers.wait_until(function()
        for _, r in ipairs(mock.requests()) do
          if r.path == "/delay/8" then return true end
        end
      end, 5)
      local t0 = helpers.gettime()
      helpers.signal(gw, "TERM")
      local rc = helpers.wait_exit(gw, 7)
      assert.is_number(rc, "still running 7 s after SIGTERM")
      assert.truthy(helpers.gettime() - t0 < 6)
      raw:close()
    end)

    it("SIGQUIT exits at once, even with a request in flight", function()
      local gw = assert(helpers.start_luagate({ config = config(mock.port),
                                                workers = 2 }))
      finally(function() helpers.stop_luagate(gw, "KILL") end)
      helpers.wait_until(function()
        return #helpers.worker_pids(gw) == 2
      end, 10)
      local workers = helpers.worker_pids(gw)
      local raw = assert(helpers.raw_connect(gw.proxy_port))
      assert(raw:send("GET /load/delay/10 HTTP/1.1\r\nHost: x\r\n\r\n"))
      helpers.wait_until(function()
        for _, r in ipairs(mock.requests()) do
          if r.path == "/delay/10" then return true end
        end
      end, 5)
      local t0 = helpers.gettime()
      helpers.signal(gw, "QUIT")
      local rc = helpers.wait_exit(gw, 5)
      assert.is_number(rc, "still running 5 s after SIGQUIT")
      assert.truthy(helpers.gettime() - t0 < 4)
      helpers.wait_until(function()
        for _, w in ipairs(workers) do
          if helpers.pid_alive(w) then return false end
        end
        return true
      end, 3)
      raw:close()
    end)
  end)
end)
