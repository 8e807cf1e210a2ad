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
--   request.await(r)  yields until the operation started with r.lctx ends
--                     and returns what it returned.

local yield = coroutine.yield

local _M = {
  cur = nil,
  -- raised (error(request.EXIT, 0)) by kong.response.exit so that the
  -- handler that called it stops there; the runloop catches it.
  EXIT = setmetatable({}, { __tostring = function() return "luagate exit" end }),
  -- what a coroutine yields to the C runtime
  YIELD_AWAIT = 1,
  YIELD_DONE = 2,
}


-- Waits for the operation the running coroutine started (an FFI call that
-- took r.lctx and returned GW_AGAIN) and returns its results.
function _M.await(r)
  local a, b, c, d = yield(1)
  _M.cur = r
  return a, b, c, d
end

return _M
