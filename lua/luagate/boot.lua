-- Worker start-up: the globals plugins expect (kong, luagate, ngx), the
-- plugin module searcher, a warning for plugins that write globals, and the
-- coroutine entry point the C runtime resumes.

local runloop = require "luagate.runloop"
local plugins = require "luagate.plugins"
local lffi = require "luagate.ffi"

local rawset = rawset
local tostring = tostring
local fmt = string.format
local C = lffi.C

local _M = {
  thread_main = runloop.thread_main,
}


local function build_globals()
  local ok, pdk = pcall(require, "luagate.pdk")
  local kong = ok and pdk.new() or {}
  if not ok then
    local msg = "could not load the PDK: " .. tostring(pdk)
    C.gw_ffi_log(lffi.LOG_ERR, msg, #msg)
  end
  local ngx_ok, ngxm = pcall(require, "luagate.ngx")
  local ngx = ngx_ok and ngxm.new() or {}
  if not ngx_ok then
    local msg = "could not load the ngx API: " .. tostring(ngxm)
    C.gw_ffi_log(lffi.LOG_ERR, msg, #msg)
  end
  rawset(_G, "kong", kong)
  rawset(_G, "luagate", kong)
  rawset(_G, "ngx", ngx)
end


-- Plugins may write globals (Kong allows it); each name is logged once,
-- with the place that wrote it.
local function guard_globals()
  local warned = {}
  setmetatable(_G, {
    __newindex = function(t, k, v)
      if not warned[k] then
        warned[k] = true
        local info = debug.getinfo(2, "Sl")
        local where = info and info.short_src .. ":" .. (info.currentline or "?") or "?"
        local msg = fmt("global variable '%s' written at %s; plugins should use locals",
                        tostring(k), where)
        C.gw_ffi_log(lffi.LOG_WARN, msg, #msg)
      end
      rawset(t, k, v)
    end,
  })
end

-- C modules that set globals when loaded (lyaml's "yaml") load before the
-- guard goes up.
pcall(require, "yaml")
pcall(require, "lyaml")


-- LuaJIT's options. maxirconst (constants in one trace, 500 by default):
-- a request's path through the runloop and a few plugins holds more than
-- 500 constants (strings, FFI functions), and a trace that reaches the
-- limit is aborted ("trace too long") and the code runs interpreted, with
-- every FFI call converting its arguments: a proxy-cache hit took 40,900
-- event-loop instructions at 500 and 22,800 at 1,000 (700 to 1,500
-- measure the same; docs/performance.md). LUAGATE_JIT_OPT="opt=value ..."
-- adds or overrides options (jit.opt.start's syntax), for tuning.
do
  local opts = { "maxirconst=1000" }
  local extra = os.getenv("LUAGATE_JIT_OPT")
  for o in (extra or ""):gmatch("%S+") do
    opts[#opts + 1] = o
  end
  local ok, err = pcall(require("jit.opt").start, unpack(opts))
  if not ok then
    local msg = "LUAGATE_JIT_OPT: " .. tostring(err)
    C.gw_ffi_log(lffi.LOG_ERR, msg, #msg)
  end
end

-- LUAGATE_JIT_LOG=FILE writes LuaJIT's trace log (jit.v) for tuning.
local jit_log = os.getenv("LUAGATE_JIT_LOG")
if jit_log and jit_log ~= "" then
  require("jit.v").start(jit_log)
end

build_globals()
plugins.install()
guard_globals()

return _M
