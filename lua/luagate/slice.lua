-- Cooperative slicing of a config load in a worker (runtime/src/config.c,
-- gw_config_load_start): the load runs in its own coroutine, and the
-- loader's loops call point() between entities. Every few calls it looks at
-- the clock and, past the slice's budget, yields back to the event loop,
-- which serves requests and resumes the load on a later turn
-- (runtime/src/worker.c). Outside the load's coroutine (a synchronous load:
-- the master, `luagate check`, unit specs) point() does nothing.

local os_clock = os.clock
local running = coroutine.running
local yield = coroutine.yield
local sort = table.sort
local min = math.min
local getenv = os.getenv
local getinfo = debug.getinfo
local fmt = string.format

local _M = {}

-- A request that arrives during a slice waits for its end, at each of its
-- turns on the loop (the request, then the upstream's answer): 0.1 ms keeps
-- that under the steady p99 of a proxied request (docs/performance.md,
-- "Config changes"); a slice and the return to the loop cost a few
-- microseconds.
local BUDGET = 0.0001 -- seconds of wall time per slice
local EVERY = 4       -- point() calls between two clock reads (a point is
                      -- an entity: a few microseconds)
local RUN = 32        -- elements sorted in one piece by sort()

local co       -- the load's coroutine while one runs
local clock = os_clock
local started = 0
local calls = 0
local trace    -- LUAGATE_RELOAD_TRACE: a function logging long slices
local TRACE_MIN = 0.002 -- seconds


-- Called at the start of the load's coroutine. In a worker the clock is
-- the monotonic wall clock (a request waits for wall time, and os.clock is
-- a system call); elsewhere the process's CPU time.
function _M.begin()
  co = running()
  local ok, lffi = pcall(require, "luagate.ffi")
  clock = ok and lffi.available and lffi.C.gw_ffi_monotonic or os_clock
  started = clock()
  calls = 0
  trace = nil
  local v = getenv("LUAGATE_RELOAD_TRACE")
  if ok and lffi.available and v and v ~= "" and v ~= "0" then
    local C = lffi.C
    trace = function(t)
      local info = getinfo(3, "Sl")
      local msg = fmt("reload trace: a Lua slice took %.1f ms, up to %s:%d",
                      t * 1000, info and info.short_src or "?",
                      info and info.currentline or 0)
      C.gw_ffi_log(6, msg, #msg)
    end
  end
end


function _M.finish()
  co = nil
end


-- Whether a sliced load runs in this coroutine (point() may yield).
function _M.active()
  return co ~= nil and running() == co
end


local function point()
  if co == nil then
    return
  end
  calls = calls + 1
  if calls < EVERY then
    return
  end
  calls = 0
  local t = clock() - started
  if t >= BUDGET and running() == co then
    if trace and t > TRACE_MIN then
      trace(t)
    end
    yield()
    started = clock()
  end
end
_M.point = point


-- Sorts `list` in place by `less` like table.sort, with slice points: runs
-- of RUN elements, then merges. `less` must be a strict total order (no
-- two elements equivalent): the order of equivalent elements is not the
-- one table.sort would give. Outside a load it is table.sort.
function _M.sort(list, less)
  local n = #list
  if co == nil or n <= RUN then
    sort(list, less)
    return
  end
  for lo = 1, n, RUN do -- insertion sort of each run
    local hi = min(lo + RUN - 1, n)
    for i = lo + 1, hi do
      local v = list[i]
      local j = i - 1
      while j >= lo and less(v, list[j]) do
        list[j + 1] = list[j]
        j = j - 1
      end
      list[j + 1] = v
    end
    point()
  end
  local src, dst = list, {}
  local width = RUN
  while width < n do
    for lo = 1, n, 2 * width do
      local mid = min(lo + width, n + 1)
      local hi = min(lo + 2 * width, n + 1)
      local i, j = lo, mid
      for k = lo, hi - 1 do
        if j >= hi or (i < mid and not less(src[j], src[i])) then
          dst[k] = src[i]
          i = i + 1
        else
          dst[k] = src[j]
          j = j + 1
        end
        point()
      end
    end
    src, dst = dst, src
    width = width * 2
  end
  if src ~= list then
    for k = 1, n do
      list[k] = src[k]
    end
  end
end


return _M
