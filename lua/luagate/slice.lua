-- Cooperative slicing of a config load in a worker (runtime/src/config.c,
-- gw_config_load_start): the load runs in its own coroutine, and the
-- loader's loops call point() between entities. Every few calls it looks at
-- the clock and, past the slice's budget, yields back to the event loop,
-- which serves requests and resumes the load on its next turn. Outside the
-- load's coroutine (a synchronous load: the master, `luagate check`, unit
-- specs) point() does nothing.

local clock = os.clock
local running = coroutine.running
local yield = coroutine.yield

local _M = {}

local BUDGET = 0.001 -- seconds of CPU per slice
local EVERY = 32     -- point() calls between two clock reads

local co       -- the load's coroutine while one runs
local started = 0
local calls = 0


function _M.begin()
  co = running()
  started = clock()
  calls = 0
end


function _M.finish()
  co = nil
end


function _M.point()
  if co == nil then
    return
  end
  calls = calls + 1
  if calls < EVERY then
    return
  end
  calls = 0
  if clock() - started >= BUDGET and running() == co then
    yield()
    started = clock()
  end
end


return _M
