-- The log phase and sender loop shared by the logging plugins that send
-- one encoded entry per request off the request's path (file-log,
-- tcp-log, udp-log, syslog; http-log has Kong's batch queue, queue.lua):
--
-- * log phase: custom_fields_by_lua are applied to kong.log.serialize()'s
--   object, which is encoded as JSON; the entry is added to the worker's
--   buffer of its destination (a key: "host:port", a path) and a timer
--   (ngx.timer.at(0)) is started if none is pending.
-- * the timer hands everything that waits to the plugin's `send`, again
--   until nothing waits (entries queued while `send` yields go out in the
--   next round). A buffer holds at most `max_pending` entries: more are
--   dropped, with a warning every 1000.
--
--   local sink = require "kong.plugins.http-log.sink"
--   local buffers = sink.new("tcp-log", send, 10000)
--   Handler.configure = sink.configure
--   function Handler:log(conf)
--     local line = sink.encode(sink.serialize(conf))
--     if line then buffers:push(conf.host .. ":" .. conf.port, conf, line) end
--   end
--
-- `send(conf, entries, n)` gets the latest config pushed for that
-- destination and entries[1..n] (strings); it may yield and may raise (the
-- error is logged, those entries are lost).

local cjson = require "cjson.safe"
local custom_fields = require "kong.plugins.http-log.custom_fields"

local kong = kong
local ngx = ngx
local pcall = pcall
local tostring = tostring
local setmetatable = setmetatable
local clear_tab = require "table.clear"
local encode = cjson.encode


local _M = {}

local Sink = {}
Sink.__index = Sink


-- For the handler's `configure`: compiles custom_fields_by_lua.
function _M.configure(_, configs)
  custom_fields.prepare(configs)
end


-- The log object of this request with conf's custom fields applied.
function _M.serialize(conf)
  custom_fields.apply(conf)
  return kong.log.serialize()
end


-- The JSON text of a log object, or nil (the error is logged).
function _M.encode(obj)
  local text, err = encode(obj)
  if not text then
    kong.log.err("could not encode the log entry: ", err)
    return nil
  end
  return text
end


-- A set of per-destination buffers for the plugin `name` ("tcp-log": the
-- prefix of its error messages). max_pending: nil for no limit.
function _M.new(name, send, max_pending)
  return setmetatable({ name = name, send = send, max_pending = max_pending,
                        buffers = {} }, Sink)
end


local function drain(sink, b)
  local send = sink.send
  while b.n > 0 do
    local entries, n = b.entries, b.n
    b.entries, b.n = b.spare, 0
    b.spare = entries
    send(b.conf, entries, n)
    clear_tab(entries)
  end
end


local function flush(premature, sink, b)
  local ok, err = pcall(drain, sink, b)
  b.running = false
  if not ok then
    clear_tab(b.spare)
    kong.log.err("[", sink.name, "] ", tostring(err))
  end
end


-- Queues entry (a string) for the destination key; conf is the config it
-- came with (send gets the latest one).
function Sink:push(key, conf, entry)
  local b = self.buffers[key]
  if not b then
    b = { entries = {}, spare = {}, n = 0, running = false, dropped = 0 }
    self.buffers[key] = b
  end
  b.conf = conf
  local max = self.max_pending
  if max and b.n >= max then
    b.dropped = b.dropped + 1
    if b.dropped == 1 or b.dropped % 1000 == 0 then
      kong.log.warn("[", self.name, "] ", b.dropped, " log entries for ",
                    key, " dropped: ", max, " are waiting already")
    end
    return
  end
  b.dropped = 0
  b.n = b.n + 1
  b.entries[b.n] = entry
  if not b.running then
    local ok, err = ngx.timer.at(0, flush, self, b)
    if ok then
      b.running = true
    else
      kong.log.err("failed to create timer: ", tostring(err))
    end
  end
end


return _M
