-- syslog: sends each request's log object (kong.log.serialize(), as JSON)
-- to the local syslog daemon, with Kong's behaviour:
--
-- * the severity comes from the response status: server_errors_severity
--   (>= 500), client_errors_severity (>= 400), successful_severity
--   (otherwise); the entry is sent only if that severity is at least as
--   severe as log_level (emerg 0 ... debug 7: severity <= log_level).
-- * the message is "kong[<pid>]: <json>" at the configured facility;
--   custom_fields_by_lua are applied in the log phase.
--
-- luagate speaks to the daemon itself (Kong calls syslog(3) through
-- lua-syslog): RFC 3164 messages as syslog(3) writes them to the local
-- socket, "<PRI>Mmm dd hh:mm:ss kong[pid]: message" (the daemon adds the
-- host name), one datagram each, sent with a non-blocking sendto() to
-- `socket_path` (default /dev/log) from a timer (kong.plugins.http-log.sink:
-- at most 10000 wait; more are dropped, with a warning). A full socket
-- buffer or a missing socket drops the entry and logs the loss.

local dgram = require "kong.plugins.udp-log.dgram"
local sink = require "kong.plugins.http-log.sink"

local kong = kong
local ngx = ngx
local date = os.date

local MAX_PENDING = 10000
local SENDER_NAME = "kong"

local SEVERITY = {
  emerg = 0, alert = 1, crit = 2, err = 3, warning = 4, notice = 5,
  info = 6, debug = 7,
}

local FACILITY = {
  kern = 0, user = 1, mail = 2, daemon = 3, auth = 4, syslog = 5, lpr = 6,
  news = 7, uucp = 8, cron = 9, authpriv = 10, ftp = 11,
  local0 = 16, local1 = 17, local2 = 18, local3 = 19, local4 = 20,
  local5 = 21, local6 = 22, local7 = 23,
}


local SysLogHandler = {
  PRIORITY = 4,
  VERSION = "3.10.0",
}

SysLogHandler.SEVERITY = SEVERITY
SysLogHandler.FACILITY = FACILITY


-- Sends messages[1..n] to the daemon's socket, one datagram each.
local function send(conf, messages, n)
  local path = conf.socket_path
  local addr, err = dgram.unix_addr(path)
  local lost, first_err = 0, err
  for i = 1, n do
    local ok, serr = true, nil
    if addr then
      ok, serr = dgram.send(addr, messages[i])
    end
    if not ok or not addr then
      lost = lost + 1
      first_err = first_err or serr
    end
  end
  if lost > 0 then
    kong.log.err("[syslog] could not send to ", path, ": ", first_err,
                 " (", lost, " of ", n, " log entries lost)")
  end
end


-- socket path -> its waiting messages
local buffers = sink.new("syslog", send, MAX_PENDING)


-- The severity name for a response status.
local function severity_of(conf, status)
  if status >= 500 then
    return conf.server_errors_severity
  elseif status >= 400 then
    return conf.client_errors_severity
  end
  return conf.successful_severity
end
SysLogHandler.severity_of = severity_of


SysLogHandler.configure = sink.configure


function SysLogHandler:log(conf)
  local obj = sink.serialize(conf)
  local severity = severity_of(conf, obj.response and obj.response.status
                                     or 0)
  if SEVERITY[severity] > SEVERITY[conf.log_level] then
    return
  end

  local json = sink.encode(obj)
  if not json then
    return
  end
  local pri = FACILITY[conf.facility] * 8 + SEVERITY[severity]
  local message = "<" .. pri .. ">" .. date("%b %e %H:%M:%S", ngx.time()) ..
                  " " .. SENDER_NAME .. "[" .. ngx.worker.pid() .. "]: " ..
                  json
  buffers:push(conf.socket_path, conf, message)
end


return SysLogHandler
