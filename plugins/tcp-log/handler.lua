-- tcp-log: sends each request's log object (kong.log.serialize(), as one
-- JSON line ending with "\n") to a TCP server, with Kong's behaviour:
-- custom_fields_by_lua are applied in the log phase, and the data goes out
-- from a timer over a cosocket (connect, send, setkeepalive: connections
-- are pooled for `keepalive` ms), never on the request's path. Errors are
-- logged as Kong's are ("failed to connect to host:port: ...").
--
-- luagate batches (kong.plugins.http-log.sink): the lines of one
-- destination wait in a per-worker buffer (at most 10000; more are
-- dropped, with a warning) and one timer sends all that waits with one
-- send. Lines that could not be sent are
-- lost (Kong: the same, one request at a time). TLS is not supported yet.

local sink = require "kong.plugins.http-log.sink"

local kong = kong
local ngx = ngx
local tostring = tostring
local concat = table.concat

local MAX_PENDING = 10000


local TcpLogHandler = {
  PRIORITY = 7,
  VERSION = "3.10.0",
}


-- Sends lines[1..n] with one send.
local function send(conf, lines, n)
  local host, port = conf.host, conf.port
  local data = concat(lines, "\n", 1, n) .. "\n"
  local sock = ngx.socket.tcp()
  sock:settimeout(conf.timeout)
  local ok, err = sock:connect(host, port)
  if not ok then
    kong.log.err("[tcp-log] failed to connect to ", host, ":",
                 tostring(port), ": ", err, " (", n, " log entries lost)")
    return
  end
  ok, err = sock:send(data)
  if not ok then
    kong.log.err("[tcp-log] failed to send data to ", host, ":",
                 tostring(port), ": ", err, " (", n, " log entries lost)")
    sock:close()
    return
  end
  ok, err = sock:setkeepalive(conf.keepalive)
  if not ok then
    kong.log.err("[tcp-log] failed to keepalive to ", host, ":",
                 tostring(port), ": ", err)
    sock:close()
  end
end


-- "host:port" -> its waiting lines
local buffers = sink.new("tcp-log", send, MAX_PENDING)

TcpLogHandler.configure = sink.configure


function TcpLogHandler:log(conf)
  local line = sink.encode(sink.serialize(conf))
  if line then
    buffers:push(conf.host .. ":" .. tostring(conf.port), conf, line)
  end
end


return TcpLogHandler
