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
-- `socket_path` (default /dev/log) from a timer. A full socket buffer or
-- a missing socket drops the entry and logs the loss.

local cjson = require "cjson.safe"
local dgram = require "kong.plugins.udp-log.dgram"
local custom_fields = require "kong.plugins.http-log.custom_fields"

local kong = kong
local ngx = ngx
local pcall = pcall
local tostring = tostring
local date = os.date
local clear_tab = require "table.clear"
local encode = cjson.encode

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


-- socket path -> { path, messages, spare, n, running, dropped }
local buffers = {}


local function drain(b)
  while b.n > 0 do
    local messages, n = b.messages, b.n
    b.messages, b.n = b.spare, 0
    b.spare = messages
    local addr, err = dgram.unix_addr(b.path)
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
    clear_tab(messages)
    if lost > 0 then
      kong.log.err("[syslog] could not send to ", b.path, ": ", first_err,
                   " (", lost, " of ", n, " log entries lost)")
    end
  end
end


local function flush(premature, b)
  local ok, err = pcall(drain, b)
  b.running = false
  if not ok then
    kong.log.err("[syslog] ", tostring(err))
  end
end


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


function SysLogHandler:configure(configs)
  custom_fields.prepare(configs)
end


function SysLogHandler:log(conf)
  custom_fields.apply(conf)

  local obj = kong.log.serialize()
  local severity = severity_of(conf, obj.response and obj.response.status
                                     or 0)
  if SEVERITY[severity] > SEVERITY[conf.log_level] then
    return
  end

  local json, err = encode(obj)
  if not json then
    kong.log.err("could not encode the log entry: ", err)
    return
  end
  local pri = FACILITY[conf.facility] * 8 + SEVERITY[severity]
  local message = "<" .. pri .. ">" .. date("%b %e %H:%M:%S", ngx.time()) ..
                  " " .. SENDER_NAME .. "[" .. ngx.worker.pid() .. "]: " ..
                  json

  local path = conf.socket_path
  local b = buffers[path]
  if not b then
    b = { path = path, messages = {}, spare = {}, n = 0, running = false,
          dropped = 0 }
    buffers[path] = b
  end
  if b.n >= MAX_PENDING then
    b.dropped = b.dropped + 1
    if b.dropped == 1 or b.dropped % 1000 == 0 then
      kong.log.warn("[syslog] ", b.dropped, " log entries dropped: ",
                    MAX_PENDING, " are waiting already")
    end
    return
  end
  b.dropped = 0
  b.n = b.n + 1
  b.messages[b.n] = message
  if not b.running then
    local ok, terr = ngx.timer.at(0, flush, b)
    if ok then
      b.running = true
    else
      kong.log.err("failed to create timer: ", tostring(terr))
    end
  end
end


return SysLogHandler
