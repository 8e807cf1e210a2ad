-- kong.plugin: the running plugin's id (Kong's) and, a luagate extension,
-- phase guards (docs/pdk.md, "kong.plugin.idle"; runtime/include/gw/guard.h).
--
-- A handler that found nothing to do for a request, from the values of a
-- few shared-dictionary keys, and would find nothing to do for the next
-- requests of the route while those keys keep their values, calls
-- kong.plugin.idle: the runtime then leaves its phase out of the route's
-- requests, in C and without entering Lua, until one of the keys changes.
-- Kept only where the plugin is the route's only handler of the phase
-- (kong.plugin.can_idle), so that leaving the phase out skips no one else.

local ffi = require "ffi"
local bit = require "bit"
local gw = require "luagate.ffi"
local private = require "luagate.pdk.private"
local runloop -- required on first use (it requires the PDK's users)

local type = type
local pairs = pairs
local error = error
local floor = math.floor
local setmetatable = setmetatable

local C = gw.C
local err_p = gw.err_p
local OK, ERROR = gw.OK, gw.ERROR
local check = private.check
local errmsg = private.errmsg
local PHASES = private.PHASES

local ACCESS_LOG = private.phase_set("access", "log")
local MAX_KEYS = 4
local NSTATUS = 1000

local args = ffi.new("struct gw_guard_args")
local keys = ffi.new("struct gw_guard_key[?]", MAX_KEYS)
local BITMAP_T = ffi.typeof("uint8_t[?]")

local _M = {}


function _M.get_id()
  local r = check(PHASES.request)
  local conf = r.plugin_conf
  return conf and conf.__plugin_id or nil
end


-- true when kong.plugin.idle called now would be kept: the running
-- handler (access or log) is its route's only handler of this phase and
-- its config does not depend on the consumer. Cheap; a handler may call
-- it first and skip reading stamps when it is false.
function _M.can_idle()
  local r = check(ACCESS_LOG)
  runloop = runloop or require("luagate.runloop")
  return runloop.lone(r)
end


-- statuses table -> its bitmap, built once per table
local bitmaps = setmetatable({}, { __mode = "k" })

local function bitmap_of(statuses)
  local bm = bitmaps[statuses]
  if bm then
    return bm
  end
  bm = BITMAP_T(NSTATUS / 8)
  for k, v in pairs(statuses) do
    -- an array of statuses, or a set { [status] = true }
    local s = v == true and k or v
    if type(s) ~= "number" or s ~= floor(s) or s < 0 or s >= NSTATUS then
      error("statuses must hold integer statuses (0-999)", 3)
    end
    bm[floor(s / 8)] = bit.bor(bm[floor(s / 8)], bit.lshift(1, s % 8))
  end
  bitmaps[statuses] = bm
  return bm
end


-- kong.plugin.idle(dict, watched, statuses): the running access or log
-- handler has nothing to do for this request, and will have nothing to do
-- for the route's next requests while the keys of `watched` keep the
-- stamps given:
--   dict      a shared dictionary (ngx.shared.x); every key is in it
--   watched   1 to 4 { key = k, version = v }: a key the decision was
--             made from and its stamp, dict:get_stamp(k)'s version, read
--             BEFORE the value the decision used; version nil: the key
--             was missing
--   statuses  log phase only: the upstream statuses that still need the
--             handler (an array, or a set { [status] = true }); a
--             response the gateway made (an exit, an error) always runs
--             the log handler
-- Returns true when the runtime keeps the guard, false when it does not
-- (the plugin is not the route's only handler of the phase, or one of the
-- keys changed since its stamp was read). Raises on bad arguments.
function _M.idle(dict, watched, statuses)
  local r = check(ACCESS_LOG)
  local zone = type(dict) == "table" and dict[1]
  if type(zone) ~= "cdata" then
    error("dict must be a shared dictionary", 2)
  end
  if type(watched) ~= "table" or #watched < 1 or #watched > MAX_KEYS then
    error("watched must hold 1 to " .. MAX_KEYS .. " keys", 2)
  end
  if statuses ~= nil and (type(statuses) ~= "table" or r.phase ~= "log") then
    error("statuses must be a table, in the log phase", 2)
  end
  for i = 1, #watched do
    local w = watched[i]
    if type(w) ~= "table" or type(w.key) ~= "string" or w.key == "" or
       (w.version ~= nil and type(w.version) ~= "number") then
      error("watched[" .. i .. "] must be { key = a string, " ..
            "version = a number or nil }", 2)
    end
  end
  runloop = runloop or require("luagate.runloop")
  if not runloop.lone(r) then
    return false
  end
  local n = #watched
  for i = 1, n do
    local w, k = watched[i], keys[i - 1]
    k.key = w.key
    k.klen = #w.key
    k.present = w.version ~= nil and 1 or 0
    k.ver = w.version or 0
  end
  args.dict = zone
  args.keys = keys
  args.nkeys = n
  args.statuses = statuses and bitmap_of(statuses) or nil
  err_p[0] = nil
  local rc = C.gw_ffi_guard_set(r.ptr, args, err_p)
  for i = 0, n - 1 do
    keys[i].key = nil
  end
  args.statuses = nil
  if rc == ERROR then
    error(errmsg("could not set the guard"), 2)
  end
  return rc == OK
end


return _M
