-- udp-log: sends each request's log object (kong.log.serialize(), as
-- JSON, one object per datagram) to a UDP server, with Kong's behaviour:
-- custom_fields_by_lua are applied in the log phase, and the datagrams go
-- out from a timer, never on the request's path.
--
-- luagate has no UDP cosocket: datagrams are sent with a non-blocking
-- sendto() through the FFI (kong.plugins.udp-log.dgram). A send never
-- waits; when the socket buffer is full the datagram is dropped and the
-- loss logged, as when a message is larger than a datagram can be. A host
-- name is resolved by the worker's resolver (cached). The entries of one
-- destination wait in a per-worker buffer (at most 10000; more are
-- dropped, with a warning) and one timer sends all of them.

local cjson = require "cjson.safe"
local dgram = require "kong.plugins.udp-log.dgram"
local custom_fields = require "kong.plugins.http-log.custom_fields"

local kong = kong
local ngx = ngx
local tostring = tostring
local pcall = pcall
local clear_tab = require "table.clear"
local encode = cjson.encode

local MAX_PENDING = 10000


local UdpLogHandler = {
  PRIORITY = 8,
  VERSION = "3.10.0",
}


-- "host:port" -> { host, port, entries, n, running, dropped }
local buffers = {}


local function drain(b)
  while b.n > 0 do
    local entries, n = b.entries, b.n
    b.entries, b.n = b.spare, 0
    b.spare = entries

    local target = b.host .. ":" .. tostring(b.port)
    local ip, err = dgram.resolve(b.host)
    local addr
    if ip then
      addr, err = dgram.inet_addr(ip, b.port)
    end
    if not addr then
      kong.log.err("[udp-log] could not send to ", target, ": ", err,
                   " (", n, " log entries lost)")
    else
      local lost, first_err = 0, nil
      for i = 1, n do
        local ok, serr = dgram.send(addr, entries[i])
        if not ok then
          lost = lost + 1
          first_err = first_err or serr
        end
      end
      if lost > 0 then
        kong.log.err("[udp-log] could not send to ", target, ": ",
                     first_err, " (", lost, " of ", n,
                     " log entries lost)")
      end
    end
    clear_tab(entries)
  end
end


local function flush(premature, b)
  local ok, err = pcall(drain, b)
  b.running = false
  if not ok then
    kong.log.err("[udp-log] ", tostring(err))
    clear_tab(b.entries)
    b.n = 0
  end
end


function UdpLogHandler:configure(configs)
  custom_fields.prepare(configs)
end


function UdpLogHandler:log(conf)
  custom_fields.apply(conf)

  local message, err = encode(kong.log.serialize())
  if not message then
    kong.log.err("could not encode the log entry: ", err)
    return
  end

  local key = conf.host .. ":" .. tostring(conf.port)
  local b = buffers[key]
  if not b then
    b = { host = conf.host, port = conf.port, entries = {}, spare = {},
          n = 0, running = false, dropped = 0 }
    buffers[key] = b
  end
  if b.n >= MAX_PENDING then
    b.dropped = b.dropped + 1
    if b.dropped == 1 or b.dropped % 1000 == 0 then
      kong.log.warn("[udp-log] ", b.dropped, " log entries for ", key,
                    " dropped: ", MAX_PENDING, " are waiting already")
    end
    return
  end
  b.dropped = 0
  b.n = b.n + 1
  b.entries[b.n] = message
  if not b.running then
    local ok, terr = ngx.timer.at(0, flush, b)
    if ok then
      b.running = true
    else
      kong.log.err("failed to create timer: ", tostring(terr))
    end
  end
end


return UdpLogHandler
