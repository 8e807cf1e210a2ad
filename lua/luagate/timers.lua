-- ngx.timer.at / ngx.timer.every on the C runtime's timers: a job waits in
-- this table under an id; when its timer fires, C runs it in a coroutine of
-- its own (so the callback may sleep and do I/O), with `premature` true when
-- the worker is stopping.

local lffi = require "luagate.ffi"
local request = require "luagate.request"

local C = lffi.C
local type = type
local select = select
local unpack = unpack
local xpcall = xpcall
local tostring = tostring
local traceback = debug.traceback
local fmt = string.format
local cast = require("ffi").cast

local _M = {}

local jobs = {}
local next_id = 0
local running = 0


local function schedule(delay, job)
  next_id = next_id + 1
  local id = next_id
  jobs[id] = job
  if C.gw_ffi_timer_at(delay, id, lffi.err_p) ~= 0 then
    jobs[id] = nil
    return nil, lffi.errmsg("could not create the timer")
  end
  return true
end


local function check(delay, fn)
  if type(delay) ~= "number" or delay < 0 then
    error("bad argument #1 to 'at' (a non-negative number expected)", 3)
  end
  if type(fn) ~= "function" then
    error("bad argument #2 to 'at' (function expected, got " .. type(fn) .. ")", 3)
  end
end


-- ngx.timer.at(delay, callback, ...): callback(premature, ...) later.
function _M.at(delay, fn, ...)
  check(delay, fn)
  return schedule(delay, { fn = fn, n = select("#", ...), ... })
end


-- ngx.timer.every(interval, callback, ...): again and again.
function _M.every(interval, fn, ...)
  check(interval, fn)
  if interval == 0 then
    error("bad argument #1 to 'every' (interval must be greater than 0)", 2)
  end
  return schedule(interval, { fn = fn, every = interval, n = select("#", ...), ... })
end


function _M.running_count()
  return running
end


function _M.pending_count()
  return C.gw_ffi_timers_pending()
end


local function on_error(e)
  return traceback(tostring(e), 2)
end


-- Called by runloop.thread_main in the timer's coroutine.
function _M.run(lctx, id, premature)
  local job = jobs[id]
  jobs[id] = nil
  if not job then
    return
  end
  local r = { lctx = lctx, phase = "timer",
              ctx = {}, shared = {}, plugin_ctx = {} }
  request.cur = r
  running = running + 1
  local ok, err = xpcall(job.fn, on_error, premature and true or false,
                         unpack(job, 1, job.n))
  running = running - 1
  if not ok then
    local msg = fmt("timer callback failed: %s", tostring(err))
    C.gw_ffi_log(lffi.LOG_ERR, msg, #msg)
  end
  if job.every and not premature then
    schedule(job.every, job)
  end
end


return _M
