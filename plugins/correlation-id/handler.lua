-- correlation-id: gives every request an id in a header, with Kong's
-- behaviour: an id the client sent (non-empty) is kept; otherwise one is
-- generated and set on the upstream request. The id is logged
-- (kong.log.set_serialize_value("correlation_id", id)) and, with
-- echo_downstream, set on the response in header_filter (generated there
-- when the request never reached this plugin's access, e.g. rejected by a
-- plugin that runs first).
--
-- Generators:
--   uuid          a random (version 4) UUID per request
--   uuid#counter  "<worker uuid>#<n>": one UUID per worker, n counting that
--                 worker's ids from 1
--   tracker       "<server_addr>-<server_port>-<pid>-<connection>-
--                 <connection_requests>-<now>", from ngx.var; the variables
--                 luagate does not have yet are replaced (see
--                 docs/plugins/correlation-id.md): connection by the
--                 client's port, connection_requests by
--                 the worker's request count.
-- Random bytes come from getrandom(2), read 4 KiB at a time.

local ffi = require "ffi"

local kong = kong
local ngx = ngx
local pcall = pcall
local error = error
local tonumber = tonumber
local fmt = string.format
local concat = table.concat

pcall(ffi.cdef, [[
long getrandom(void *buf, size_t buflen, unsigned int flags);
]])

local C = ffi.C


local CorrelationIdHandler = {
  PRIORITY = 100001,
  VERSION = "3.10.0",
}


-- random UUIDs ---------------------------------------------------------------

local POOL_SIZE = 4096
local pool = ffi.new("uint8_t[?]", POOL_SIZE)
local pool_pos = POOL_SIZE

local HEX = {}
for i = 0, 255 do
  HEX[i] = fmt("%02x", i)
end

local parts = {}


local function refill()
  local got = 0
  while got < POOL_SIZE do
    local n = tonumber(C.getrandom(pool + got, POOL_SIZE - got, 0))
    if n <= 0 then
      -- cannot happen on Linux >= 3.17 short of EINTR; never serve zeros
      error("getrandom() failed")
    end
    got = got + n
  end
  pool_pos = 0
end


local function uuid()
  if pool_pos + 16 > POOL_SIZE then
    refill()
  end
  local p = pool_pos
  pool_pos = p + 16
  for i = 0, 15 do
    local b = pool[p + i]
    if i == 6 then
      b = b % 16 + 0x40 -- version 4
    elseif i == 8 then
      b = b % 64 + 0x80 -- RFC 4122 variant
    end
    parts[i + 1] = HEX[b]
  end
  return concat(parts, "", 1, 4) .. "-" .. concat(parts, "", 5, 6) .. "-" ..
         concat(parts, "", 7, 8) .. "-" .. concat(parts, "", 9, 10) .. "-" ..
         concat(parts, "", 11, 16)
end


-- generators -----------------------------------------------------------------

local worker_uuid
local worker_counter = 0
local worker_requests = 0


local generators = {
  ["uuid"] = uuid,

  ["uuid#counter"] = function()
    if not worker_uuid then
      worker_uuid = uuid()
    end
    worker_counter = worker_counter + 1
    return worker_uuid .. "#" .. worker_counter
  end,

  ["tracker"] = function()
    local var = ngx.var
    worker_requests = worker_requests + 1
    return fmt("%s-%s-%d-%s-%s-%0.3f",
               var.server_addr or "-",
               var.server_port or "-",
               ngx.worker.pid(),
               var.connection or var.remote_port or "-",
               var.connection_requests or worker_requests,
               ngx.now())
  end,
}


function CorrelationIdHandler:init_worker()
  worker_uuid = uuid()
  worker_counter = 0
end


function CorrelationIdHandler:access(conf)
  local id = kong.request.get_header(conf.header_name)
  if id == nil or id == "" then
    id = generators[conf.generator]()
    kong.service.request.set_header(conf.header_name, id)
  end

  kong.log.set_serialize_value("correlation_id", id)

  if conf.echo_downstream then
    local ctx = kong.ctx.plugin
    ctx.correlation_id = id -- luacheck: ignore 122
  end
end


function CorrelationIdHandler:header_filter(conf)
  if not conf.echo_downstream then
    return
  end
  local id = kong.ctx.plugin.correlation_id or
             kong.request.get_header(conf.header_name)
  if id == nil or id == "" then
    id = generators[conf.generator]()
  end
  kong.response.set_header(conf.header_name, id)
end


-- for unit specs
CorrelationIdHandler._uuid = uuid

return CorrelationIdHandler
