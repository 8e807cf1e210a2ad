-- kong.tools.queue: Kong 3's batched, retried delivery from a timer.
--
--   local Queue = require "kong.tools.queue"
--   local ok, err = Queue.enqueue(
--     { name = "my-log", max_batch_size = 100, max_coalescing_delay = 1,
--       max_entries = 10000, max_retry_time = 60, initial_retry_delay = 0.01,
--       max_retry_delay = 60 },
--     function(handler_conf, entries) return true end,   -- or nil, err
--     conf, entry)
--
-- One queue per name in each worker (Kong's are per worker too). The first
-- enqueue starts a timer that waits until `max_batch_size` entries are
-- there or `max_coalescing_delay` seconds passed since the oldest one,
-- calls the handler with up to max_batch_size entries, retries a failed
-- batch after initial_retry_delay doubling up to max_retry_delay, for at
-- most max_retry_time seconds (then drops it with an error log), and ends
-- when the queue is empty. A full queue (max_entries, or max_bytes of
-- string entries) drops its oldest entry to take the new one, as Kong.
-- The handler runs with the handler_conf of the latest enqueue.
local type = type
local pcall = pcall
local tostring = tostring
local rawget = rawget
local min = math.min
local fmt = string.format
local remove = table.remove

local Queue = {}

local queues = {} -- name -> queue

local DEFAULTS = {
  max_batch_size = 1,
  max_coalescing_delay = 1,
  max_entries = 10000,
  max_bytes = nil,
  max_retry_time = 60,
  initial_retry_delay = 0.01,
  max_retry_delay = 60,
  concurrency_limit = 1,
}


local function ngx_()
  return rawget(_G, "ngx")
end


local function log(level, q, msg)
  local ngx = ngx_()
  ngx.log(ngx[level], fmt("queue %s: %s", q.log_tag or q.name, msg))
end


local function opt(conf, k)
  local v = conf[k]
  if v == nil then
    return DEFAULTS[k]
  end
  return v
end


local function process(premature, q)
  local ngx = ngx_()
  if premature then
    -- worker stopping: one last try for what is queued
    if #q.entries > 0 then
      pcall(q.handler, q.handler_conf, q.entries)
      q.entries = {}
    end
    q.running = false
    return
  end
  while #q.entries > 0 do
    -- coalesce
    local deadline = q.first_at + q.max_coalescing_delay
    while #q.entries < q.max_batch_size and ngx.now() < deadline do
      ngx.sleep(min(0.05, deadline - ngx.now()))
      ngx.update_time()
    end
    local batch = {}
    local n = min(#q.entries, q.max_batch_size)
    for i = 1, n do
      batch[i] = q.entries[i]
    end
    for _ = 1, n do
      remove(q.entries, 1)
    end
    if type(batch[1]) == "string" then
      for i = 1, n do
        q.bytes = q.bytes - #batch[i]
      end
    end
    q.first_at = ngx.now()

    local delay = q.initial_retry_delay
    local started = ngx.now()
    while true do
      local ok, res, err = pcall(q.handler, q.handler_conf, batch)
      if ok and res then
        break
      end
      err = ok and err or res
      if ngx.now() - started + delay > q.max_retry_time then
        log("ERR", q, fmt("could not send entries, giving up after %d " ..
                          "tries. %d queue entries were lost", q.tries or 1, n))
        break
      end
      log("WARN", q, "handler could not process entries: " .. tostring(err))
      ngx.sleep(delay)
      ngx.update_time()
      delay = min(delay * 2, q.max_retry_delay)
    end
  end
  q.running = false
end


-- Queue.enqueue(queue_conf, handler, handler_conf, value) -> true | nil, err
function Queue.enqueue(queue_conf, handler, handler_conf, value)
  if type(queue_conf) ~= "table" then
    error("arg #1 (queue_conf) must be a table", 2)
  end
  if type(queue_conf.name) ~= "string" then
    error("arg #1 (queue_conf) must include a name", 2)
  end
  if type(handler) ~= "function" then
    error("arg #2 (handler) must be a function", 2)
  end
  if value == nil then
    error("arg #4 (value) must not be nil", 2)
  end
  local ngx = ngx_()
  local q = queues[queue_conf.name]
  if not q then
    q = { name = queue_conf.name, entries = {}, bytes = 0 }
    queues[queue_conf.name] = q
  end
  for k in pairs(DEFAULTS) do
    q[k] = opt(queue_conf, k)
  end
  q.log_tag = queue_conf.log_tag
  q.handler = handler
  q.handler_conf = handler_conf
  if q.max_batch_size < 1 then
    q.max_batch_size = 1
  end

  if q.max_bytes and type(value) == "string" then
    if #value > q.max_bytes then
      return nil, "string to be queued is longer than queue's max_bytes"
    end
    while q.bytes + #value > q.max_bytes and #q.entries > 0 do
      q.bytes = q.bytes - #(remove(q.entries, 1))
      log("WARN", q, "queue full, dropping old entry")
    end
  end
  if #q.entries >= q.max_entries then
    local old = remove(q.entries, 1)
    if type(old) == "string" then
      q.bytes = q.bytes - #old
    end
    log("WARN", q, "queue full, dropping old entry")
  end
  if #q.entries == 0 then
    q.first_at = ngx.now()
  end
  q.entries[#q.entries + 1] = value
  if type(value) == "string" then
    q.bytes = q.bytes + #value
  end
  if not q.running then
    local ok, err = ngx.timer.at(0, process, q)
    if not ok then
      return nil, "could not start the queue's timer: " .. tostring(err)
    end
    q.running = true
  end
  return true
end


function Queue.is_full(queue_conf)
  local q = queues[queue_conf.name]
  return q ~= nil and #q.entries >= opt(queue_conf, "max_entries")
end


function Queue.can_enqueue(queue_conf, entry)
  local q = queues[queue_conf.name]
  if not q then
    return true
  end
  if #q.entries >= opt(queue_conf, "max_entries") then
    return false
  end
  local mb = opt(queue_conf, "max_bytes")
  if mb and type(entry) == "string" and q.bytes + #entry > mb then
    return false
  end
  return true
end


-- entries waiting in a queue (for specs and diagnostics)
function Queue._exists(name)
  return queues[name] ~= nil and #queues[name].entries > 0
end


return Queue
