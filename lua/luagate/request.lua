-- The request (or timer) that the running coroutine serves. The runloop
-- sets `cur` before it runs plugin code; PDK functions read it.
--
--   local request = require "luagate.request"
--   local r = request.cur          -- nil outside a request
--   r.ptr        gw_req* cdata (FFI calls take it)
--   r.lctx       gw_lctx* cdata (operations that wait take it)
--   r.phase      "rewrite" | "access" | "response" | "header_filter" |
--                "body_filter" | "log" | "timer" | "init_worker"
--   r.ctx        ngx.ctx of the request (a table; plugins may replace it)
--   r.shared     kong.ctx.shared
--   r.plugin     name of the plugin whose handler runs now
--   r.plugin_ctx table: plugin name -> kong.ctx.plugin table
--   r.route, r.service   the Lua entities of the config (or nil)
--   r.conf       the normalized config this request runs on
--   r.consumer, r.credential   set by kong.client.authenticate
--   r.co         the coroutine that runs the request's phases (the runloop's)
--   request.await(r)  yields until the operation started with r.lctx ends
--                     and returns what it returned.
--   request.stop(r)   ends the running plugin handler (kong.response.exit)
--   request.park(r, seconds)  a ticket (a number) for the running coroutine,
--                     or nil when it cannot wait; then request.await(r)
--                     returns when request.unpark(ticket) is called or
--                     `seconds` have passed (nothing tells which: the
--                     waker leaves its answer where the parked code looks)
--   request.unpark(ticket)  true when it woke the coroutine; false when
--                     that one is no longer parked (woke up, request ended)

local C = require("luagate.ffi").C
local error = error
local pcall = pcall
local yield = coroutine.yield
local running = coroutine.running

local _M = {
  cur = nil,
  -- raised (error(request.EXIT, 0)) by request.stop where its yield cannot
  -- reach the runtime (see stop); the runloop catches it.
  EXIT = setmetatable({}, { __tostring = function() return "luagate exit" end }),
  -- what a coroutine yields to the C runtime (runtime/src/lua_req.c)
  YIELD_AWAIT = 1,
  YIELD_DONE = 2,
  YIELD_EXIT = 3,
  -- the request whose coroutine yielded YIELD_EXIT, until the coroutine
  -- that finishes its phase takes it (runloop.thread_main, at once)
  exited = nil,
}


-- Waits for the operation the running coroutine started (an FFI call that
-- took r.lctx and returned GW_AGAIN) and returns its results.
function _M.await(r)
  local a, b, c, d = yield(1)
  _M.cur = r
  return a, b, c, d
end


function _M.park(r, seconds)
  local t = C.gw_ffi_park(r.lctx, seconds)
  if t == 0 then
    return nil
  end
  return t
end


function _M.unpark(ticket)
  return C.gw_ffi_unpark(ticket) == 1
end


-- Ends the plugin handler that called kong.response.exit (or ngx.exit);
-- never returns. On the request's coroutine it yields YIELD_EXIT: the C
-- side abandons that coroutine where it stands (the handler's frames and
-- any pcall around the call are never resumed, as in Kong, whose exit
-- yields the handler's coroutine) and finishes the phase on a fresh one.
-- A yield costs a few hundred instructions where error() costs some
-- 15,000 (LuaJIT on x86-64 raises through libgcc's unwinder). Elsewhere
-- (a coroutine of the plugin's, a light thread, or under a C function
-- that cannot be yielded across, such as a string.gsub callback) it
-- raises EXIT, caught by the runloop's xpcall.
function _M.stop(r)
  if r.co ~= nil and r.co == running() then
    _M.exited = r
    pcall(yield, 3) -- never resumed if it yielded
    _M.exited = nil
  end
  error(_M.EXIT, 0)
end

return _M
