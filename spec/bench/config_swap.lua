-- Config-swap benchmark helpers (LuaJIT + luasocket); spec/bench/config_swap.sh
-- runs them.
--
--   luajit config_swap.lua load PATH RUNS
--       loads PATH with luagate.runtime.load (what a worker runs, without
--       the C structures) RUNS times; prints the median and min in ms
--   luajit config_swap.lua client PORT CONNS STOP_FILE OUT
--       CONNS keepalive connections, each sending GET / one after the
--       other until STOP_FILE exists; writes "start_s latency_ms ok" per
--       request to OUT (ok: 1 for a 200, 0 otherwise)
--   luajit config_swap.lua report OUT T0 T1
--       latency percentiles of the requests started before T0 (steady) and
--       between T0 and T1 (during the reloads), the p99 ratio and failures
local socket = require "socket"

local mode = arg[1]
local gettime = socket.gettime

local function percentile(sorted, p)
  if #sorted == 0 then
    return 0
  end
  local i = math.ceil(#sorted * p)
  return sorted[math.max(1, math.min(#sorted, i))]
end

if mode == "load" then
  local root = os.getenv("LUAGATE_ROOT") or "."
  package.path = root .. "/lua/?.lua;" .. root .. "/lua/?/init.lua;" ..
                 package.path
  require "luagate.boot"
  local runtime = require "luagate.runtime"
  local path, runs = arg[2], tonumber(arg[3]) or 7
  local times = {}
  for i = 1, runs do
    collectgarbage()
    local t = os.clock()
    local conf, err = runtime.load(path, { prefix = root, plugins_dirs = {} })
    times[i] = (os.clock() - t) * 1000
    assert(conf, err)
  end
  table.sort(times)
  print(("%.1f %.1f"):format(percentile(times, 0.5), times[1]))

elseif mode == "client" then
  local port, conns = tonumber(arg[2]), tonumber(arg[3])
  local stop, out = arg[4], arg[5]
  local REQ = "GET / HTTP/1.1\r\nHost: bench\r\n\r\n"
  local function connect()
    local s = socket.tcp()
    s:settimeout(5)
    if not s:connect("127.0.0.1", port) then
      return nil
    end
    s:setoption("tcp-nodelay", true)
    return s
  end
  local function exchange(s)
    if not s:send(REQ) then
      return nil
    end
    local line = s:receive("*l")
    if not line then
      return nil
    end
    local status = tonumber(line:match("^HTTP/1%.%d (%d+)"))
    local len = 0
    while true do
      local h = s:receive("*l")
      if not h then
        return nil
      end
      if h == "" then
        break
      end
      local n = h:lower():match("^content%-length:%s*(%d+)")
      if n then
        len = tonumber(n)
      end
    end
    if len > 0 and not s:receive(len) then
      return nil
    end
    return status
  end
  -- one coroutine-free round robin: each connection has one request in
  -- flight at a time; requests are sent to all, then answers read in order
  local socks = {}
  for i = 1, conns do
    socks[i] = assert(connect(), "could not connect")
  end
  local f = assert(io.open(out, "w"))
  local function stopped()
    local s = io.open(stop, "r")
    if s then
      s:close()
      return true
    end
    return false
  end
  local n = 0
  while true do
    for i = 1, conns do
      local t0 = gettime()
      local st = exchange(socks[i])
      local dt = (gettime() - t0) * 1000
      f:write(("%.6f %.3f %d\n"):format(t0, dt, st == 200 and 1 or 0))
      if not st then
        socks[i]:close()
        socks[i] = connect() or socks[i]
      end
    end
    n = n + 1
    if n % 200 == 0 and stopped() then
      break
    end
  end
  f:close()

elseif mode == "report" then
  local out, t0, t1 = arg[2], tonumber(arg[3]), tonumber(arg[4])
  local steady, swap = {}, {}
  local fails_steady, fails_swap = 0, 0
  for line in io.lines(out) do
    local t, ms, ok = line:match("^(%S+) (%S+) (%d)")
    t, ms = tonumber(t), tonumber(ms)
    if t then
      if t < t0 then
        steady[#steady + 1] = ms
        if ok ~= "1" then fails_steady = fails_steady + 1 end
      elseif t <= t1 then
        swap[#swap + 1] = ms
        if ok ~= "1" then fails_swap = fails_swap + 1 end
      end
    end
  end
  table.sort(steady)
  table.sort(swap)
  local function row(name, s, fails)
    print(("%-15s requests %7d  failed %d  p50 %.2f  p99 %.2f  " ..
           "p99.9 %.2f  max %.1f ms"):format(name, #s, fails,
           percentile(s, 0.5), percentile(s, 0.99), percentile(s, 0.999),
           s[#s] or 0))
  end
  row("steady", steady, fails_steady)
  row("during reloads", swap, fails_swap)
  local p99s, p99w = percentile(steady, 0.99), percentile(swap, 0.99)
  print(("p99 ratio (during reloads / steady): %.2f"):format(
        p99s > 0 and p99w / p99s or 0))
  print(("RESULT %.2f %.2f %.2f %.1f %d"):format(p99s, p99w,
        p99s > 0 and p99w / p99s or 0, swap[#swap] or 0,
        fails_steady + fails_swap))
end
