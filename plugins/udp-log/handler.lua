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
-- destination wait in a per-worker buffer (kong.plugins.http-log.sink: at
-- most 10000; more are dropped, with a warning) and one timer sends all of
-- them.

local dgram = require "kong.plugins.udp-log.dgram"
local sink = require "kong.plugins.http-log.sink"

local kong = kong
local tostring = tostring

local MAX_PENDING = 10000


local UdpLogHandler = {
  PRIORITY = 8,
  VERSION = "3.10.0",
}


-- Sends entries[1..n], one datagram each.
local function send(conf, entries, n)
  local host, port = conf.host, conf.port
  local target = host .. ":" .. tostring(port)
  local ip, err = dgram.resolve(host)
  local addr
  if ip then
    addr, err = dgram.inet_addr(ip, port)
  end
  if not addr then
    kong.log.err("[udp-log] could not send to ", target, ": ", err,
                 " (", n, " log entries lost)")
    return
  end
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
                 first_err, " (", lost, " of ", n, " log entries lost)")
  end
end


-- "host:port" -> its waiting entries
local buffers = sink.new("udp-log", send, MAX_PENDING)

UdpLogHandler.configure = sink.configure


function UdpLogHandler:log(conf)
  local message = sink.encode(sink.serialize(conf))
  if message then
    buffers:push(conf.host .. ":" .. tostring(conf.port), conf, message)
  end
end


return UdpLogHandler
