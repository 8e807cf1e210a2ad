-- kong.worker_events: lua-resty-worker-events' API, delivered to every
-- worker of this node.
--
--   kong.worker_events.register(function(data, event, source, pid) ... end,
--                               "my-source", "my-event")   -- or all events
--   kong.worker_events.post("my-source", "my-event", { any = "data" })
--   kong.worker_events.post_local("my-source", "my-event", data) -- here
--
-- Delivery: post() appends the event to ngx.shared.kong_cluster_events
-- under a sequence number (kept 60 s) and runs the poller at once in the
-- posting worker; each worker that registered a handler polls the list
-- every 0.1 s (LATENCY) from a timer. Another worker's handlers thus run
-- within ~0.1 s, in a timer (they may sleep and do I/O). Data goes through
-- string.buffer encoding: tables, strings, numbers, booleans (no functions).
local buffer = require "string.buffer"

local type = type
local pairs = pairs
local pcall = pcall
local select = select
local tostring = tostring
local rawget = rawget
local fmt = string.format

local DICT = "kong_cluster_events"
local SEQ_KEY = "lg:we:seq"
local EV_KEY = "lg:we:ev:"
local EV_TTL = 60
local LATENCY = 0.1

local _M = {
  LATENCY = LATENCY,
}

local handlers = {} -- source ("*" = all) -> event ("*" = all) -> list
local last_seq -- of this worker
local polling = false


local function ngx_()
  return rawget(_G, "ngx")
end


local function dict()
  local ngx = ngx_()
  return ngx and ngx.shared and ngx.shared[DICT]
end


local function log_err(msg)
  local ngx = ngx_()
  if ngx and ngx.log then
    ngx.log(ngx.ERR, msg)
  end
end


local function dispatch(source, event, data, pid)
  local function run(list)
    if not list then
      return
    end
    for i = 1, #list do
      local ok, err = pcall(list[i], data, event, source, pid)
      if not ok then
        log_err(fmt("worker-events: handler for %s:%s failed: %s",
                    tostring(source), tostring(event), tostring(err)))
      end
    end
  end
  for _, s in pairs({ source, "*" }) do
    local by_event = handlers[s]
    if by_event then
      run(by_event[event])
      if event ~= "*" then
        run(by_event["*"])
      end
    end
  end
end


-- Delivers the events posted since this worker last looked.
function _M.poll()
  local d = dict()
  if not d then
    return "no dictionary"
  end
  local seq = d:get(SEQ_KEY) or 0
  if last_seq == nil then
    last_seq = seq
    return "done"
  end
  while last_seq < seq do
    last_seq = last_seq + 1
    local v = d:get(EV_KEY .. last_seq)
    if v then
      local ok, ev = pcall(buffer.decode, v)
      if ok and type(ev) == "table" then
        dispatch(ev.source, ev.event, ev.data, ev.pid)
      end
    end
  end
  return "done"
end


local function start_polling()
  if polling then
    return
  end
  polling = true
  if last_seq == nil then
    local d = dict()
    last_seq = d and d:get(SEQ_KEY) or 0
  end
  local ngx = ngx_()
  local ok, err = ngx.timer.every(LATENCY, function(premature)
    if not premature then
      _M.poll()
    end
  end)
  if not ok then
    polling = false
    log_err("worker-events: could not start polling: " .. tostring(err))
  end
end


-- register(callback, source?, event1?, ...): callback(data, event, source,
-- pid) for those events (all of the source's without events; all with no
-- source).
function _M.register(callback, source, ...)
  if type(callback) ~= "function" then
    error("callback must be a function", 2)
  end
  source = source or "*"
  local by_event = handlers[source]
  if not by_event then
    by_event = {}
    handlers[source] = by_event
  end
  local n = select("#", ...)
  local events = n > 0 and { ... } or { "*" }
  for _, ev in ipairs(events) do
    local list = by_event[ev]
    if not list then
      list = {}
      by_event[ev] = list
    end
    list[#list + 1] = callback
  end
  start_polling()
  return true
end

_M.register_weak = _M.register


function _M.unregister(callback, source, ...)
  source = source or "*"
  local by_event = handlers[source]
  if not by_event then
    return false
  end
  local n = select("#", ...)
  local events = n > 0 and { ... } or nil
  local found = false
  for ev, list in pairs(by_event) do
    if not events or ev == events[1] or (function()
      for _, e in ipairs(events) do if e == ev then return true end end
    end)() then
      for i = #list, 1, -1 do
        if list[i] == callback then
          table.remove(list, i)
          found = true
        end
      end
    end
  end
  return found
end


-- post(source, event, data, unique?): to every worker's handlers. Returns
-- "done" or nil, err.
function _M.post(source, event, data, unique)
  if type(source) ~= "string" or source == "" then
    return nil, "source is required"
  end
  if type(event) ~= "string" or event == "" then
    return nil, "event is required"
  end
  local d = dict()
  if not d then
    -- no dictionary: this worker only
    dispatch(source, event, data, nil)
    return "done"
  end
  if unique then
    local ok = d:add("lg:we:unique:" .. tostring(unique), true, 1)
    if not ok then
      return "done"
    end
  end
  if last_seq == nil then
    last_seq = d:get(SEQ_KEY) or 0
  end
  local ngx = ngx_()
  local ok, enc = pcall(buffer.encode, {
    source = source, event = event, data = data,
    pid = ngx and ngx.worker.pid() or nil,
  })
  if not ok then
    return nil, "could not encode the event data: " .. tostring(enc)
  end
  local seq, err = d:incr(SEQ_KEY, 1, 0)
  if not seq then
    return nil, "could not post: " .. tostring(err)
  end
  local stored
  stored, err = d:set(EV_KEY .. seq, enc, EV_TTL)
  if not stored then
    return nil, "could not post: " .. tostring(err)
  end
  _M.poll()
  return "done"
end


function _M.post_local(source, event, data)
  dispatch(source, event, data, nil)
  return "done"
end


function _M.configure()
  return true
end


function _M.configured()
  return true
end


return _M
