-- tcp-log: sends each request's log object (kong.log.serialize(), as one
-- JSON line ending with "\n") to a TCP server, with Kong's behaviour:
-- custom_fields_by_lua are applied in the log phase, and the data goes out
-- from a timer over a cosocket (connect, send, setkeepalive: connections
-- are pooled for `keepalive` ms), never on the request's path. Errors are
-- logged as Kong's are ("failed to connect to host:port: ...").
--
-- luagate batches: the lines of one destination wait in a per-worker
-- buffer (at most 10000; more are dropped, with a warning) and one timer
-- sends all that waits with one send. Lines that could not be sent are
-- lost (Kong: the same, one request at a time). TLS is not supported yet.

local cjson = require "cjson.safe"
local custom_fields = require "kong.plugins.http-log.custom_fields"

local kong = kong
local ngx = ngx
local pcall = pcall
local tostring = tostring
local concat = table.concat
local clear_tab = require "table.clear"
local encode = cjson.encode

local MAX_PENDING = 10000


local TcpLogHandler = {
  PRIORITY = 7,
  VERSION = "3.10.0",
}


-- "host:port" -> { host, port, conf, lines, spare, n, running, dropped }
local buffers = {}


local function send(b, data, n)
  local conf = b.conf
  local host, port = b.host, b.port
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


local function drain(b)
  while b.n > 0 do
    local lines, n = b.lines, b.n
    b.lines, b.n = b.spare, 0
    b.spare = lines
    local data = concat(lines, "\n", 1, n) .. "\n"
    clear_tab(lines)
    send(b, data, n)
  end
end


local function flush(premature, b)
  local ok, err = pcall(drain, b)
  b.running = false
  if not ok then
    kong.log.err("[tcp-log] ", tostring(err))
  end
end


function TcpLogHandler:configure(configs)
  custom_fields.prepare(configs)
end


function TcpLogHandler:log(conf)
  custom_fields.apply(conf)

  local line, err = encode(kong.log.serialize())
  if not line then
    kong.log.err("could not encode the log entry: ", err)
    return
  end

  local key = conf.host .. ":" .. tostring(conf.port)
  local b = buffers[key]
  if not b then
    b = { host = conf.host, port = conf.port, lines = {}, spare = {},
          n = 0, running = false, dropped = 0 }
    buffers[key] = b
  end
  b.conf = conf -- the latest config's timeouts
  if b.n >= MAX_PENDING then
    b.dropped = b.dropped + 1
    if b.dropped == 1 or b.dropped % 1000 == 0 then
      kong.log.warn("[tcp-log] ", b.dropped, " log entries for ", key,
                    " dropped: ", MAX_PENDING, " are waiting already")
    end
    return
  end
  b.dropped = 0
  b.n = b.n + 1
  b.lines[b.n] = line
  if not b.running then
    local ok, terr = ngx.timer.at(0, flush, b)
    if ok then
      b.running = true
    else
      kong.log.err("failed to create timer: ", tostring(terr))
    end
  end
end


return TcpLogHandler
