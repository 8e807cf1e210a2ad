-- A per-worker batching queue with Kong's plugin queue API and semantics
-- (kong.tools.queue, the `queue` record of the logging plugins), used by
-- http-log and opentelemetry (they prefer a kong.tools.queue that has
-- Kong's whole API, get_plugin_params included; the compat layer's has
-- not yet):
--
--   local Queue = require "kong.plugins.http-log.queue"
--   local qconf = Queue.get_plugin_params("http-log", conf, "my queue")
--   local ok, err = Queue.enqueue(qconf, handler, conf, entry)
--   -- later, from a timer: handler(conf, { entry, entry, ... })
--   --   returns true, or nil/false and an error message (or raises)
--
-- * A queue is known by its name and lives in one worker: entries wait in
--   memory; one timer (`ngx.timer.at`) delivers them, never the request.
-- * Batching: the handler gets up to `max_batch_size` entries, as soon as
--   that many wait, or once the oldest has waited `max_coalescing_delay`
--   seconds.
-- * Retries: a batch whose handler fails is tried again after
--   `initial_retry_delay` seconds, the delay doubling up to
--   `max_retry_delay`, until `max_retry_time` seconds have passed since
--   the first try; then it is dropped and the loss is logged.
-- * Bounds: at `max_entries` waiting entries (or `max_bytes` bytes of
--   string entries), the oldest entry is dropped to make room for the new
--   one. A warning is logged when the queue reaches 80 % of its capacity
--   and when it starts dropping; a notice when it is back to normal.
-- * `concurrency_limit` -1: every entry is handled at once in a timer of
--   its own (no batching), with the same retries.
-- * A timer that runs while the worker exits sends what waits without
--   coalescing and without retrying.
--
-- The handler and its conf are the last ones given to enqueue (a config
-- reload takes effect on the next entry).

local type = type
local pairs = pairs
local ipairs = ipairs
local next = next
local tostring = tostring
local setmetatable = setmetatable
local xpcall = xpcall
local floor = math.floor
local min = math.min
local fmt = string.format
local traceback = debug.traceback



local _M = {}

local CAPACITY_WARNING_THRESHOLD = 0.8
local POLL = 0.02 -- seconds between looks at a filling batch

_M.CAPACITY_WARNING_THRESHOLD = CAPACITY_WARNING_THRESHOLD

-- Kong's defaults (typedefs.queue)
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
_M.DEFAULTS = DEFAULTS

local queues = {} -- name -> queue


local function now()
  return ngx.now()
end


local function exiting()
  return ngx.worker and ngx.worker.exiting and ngx.worker.exiting() or false
end


local function on_error(e)
  return traceback(tostring(e), 2)
end


-- get_plugin_params ----------------------------------------------------------

-- config -> { [queue name] = queue conf }
local params_cache = setmetatable({}, { __mode = "k" })


-- The queue parameters of a plugin instance: its `queue` record with
-- defaults filled in, named `queue_name` (default: "<plugin> <instance
-- id>"). The result is cached per config table: do not modify it.
function _M.get_plugin_params(plugin_name, config, queue_name)
  local name = queue_name or
               fmt("%s %s", plugin_name,
                   tostring(config.__plugin_id or config.plugin_instance_name
                            or "plugin"))
  local by_name = params_cache[config]
  if by_name then
    local p = by_name[name]
    if p then
      return p
    end
  else
    by_name = {}
    params_cache[config] = by_name
  end
  local src = type(config.queue) == "table" and config.queue or {}
  local p = {}
  for k, v in pairs(DEFAULTS) do
    p[k] = v
  end
  for k, v in pairs(src) do
    if v ~= nil and v ~= ngx.null then
      p[k] = v
    end
  end
  p.name = name
  by_name[name] = p
  return p
end


-- queue state ---------------------------------------------------------------

local function count(q)
  return q.tail - q.head + 1
end


local function pop(q)
  local h = q.head
  local v = q.entries[h]
  q.entries[h] = nil
  q.times[h] = nil
  q.head = h + 1
  if type(v) == "string" then
    q.bytes = q.bytes - #v
  end
  if q.head > q.tail then
    q.head, q.tail = 1, 0
  end
  return v
end


local function capacity_check(q)
  local c = q.conf
  local n = count(q)
  local full = n / c.max_entries
  if c.max_bytes then
    local b = q.bytes / c.max_bytes
    if b > full then
      full = b
    end
  end
  if full >= CAPACITY_WARNING_THRESHOLD then
    if not q.warned then
      q.warned = true
      kong.log.warn(fmt("queue %s: reached %d%% of its capacity " ..
                      "(%d entries waiting, max_entries %d)", q.name,
                      floor(full * 100), n, c.max_entries))
    end
  elseif q.warned then
    q.warned = false
    if q.dropped > 0 then
      kong.log.notice(fmt("queue %s: resumed normal operation; %d " ..
                        "entries were dropped while it was full",
                        q.name, q.dropped))
    else
      kong.log.notice(fmt("queue %s: resumed normal operation", q.name))
    end
    q.dropped = 0
  end
end


local function drop_oldest(q, why)
  pop(q)
  q.dropped = q.dropped + 1
  q.total_dropped = q.total_dropped + 1
  if q.dropped == 1 then
    kong.log.warn(fmt("queue %s: %s, dropping the oldest entries", q.name,
                    why))
  end
end


-- delivery ------------------------------------------------------------------

-- Calls the handler until it succeeds or max_retry_time passes. Returns
-- true, or false after logging the loss.
local function deliver(q, batch, n)
  local c = q.conf
  local start = now()
  local delay = c.initial_retry_delay
  local tries = 0
  while true do
    tries = tries + 1
    local ok, res, err = xpcall(q.handler, on_error, q.handler_conf, batch)
    if ok and res then
      q.sent = q.sent + n
      return true
    end
    err = ok and tostring(err or "unknown error") or tostring(res)
    local elapsed = now() - start
    if exiting() or elapsed >= c.max_retry_time then
      q.lost = q.lost + n
      kong.log.err(fmt("queue %s: could not send entries, giving up after " ..
                     "%d tries; %d queue entries were lost: %s", q.name,
                     tries, n, err))
      return false
    end
    kong.log.warn(fmt("queue %s: handler could not process entries (try " ..
                    "%d), retrying in %gs: %s", q.name, tries, delay, err))
    ngx.sleep(min(delay, c.max_retry_time - elapsed))
    delay = min(delay * 2, c.max_retry_delay)
  end
end


local function process(premature, q)
  q.running = true
  local ok, err = xpcall(function()
    while count(q) > 0 do
      local c = q.conf
      local size = c.max_batch_size
      if not premature and not exiting() then
        -- wait for a full batch, or for the oldest entry's deadline
        local deadline = q.times[q.head] + c.max_coalescing_delay
        while count(q) < size do
          local t = now()
          if t >= deadline or exiting() then
            break
          end
          ngx.sleep(min(deadline - t, POLL))
          if count(q) == 0 then
            break
          end
          deadline = q.times[q.head] + q.conf.max_coalescing_delay
        end
      end
      local n = min(count(q), size)
      if n > 0 then
        local batch = {}
        for i = 1, n do
          batch[i] = pop(q)
        end
        capacity_check(q)
        deliver(q, batch, n)
      end
    end
  end, on_error)
  q.running = false
  if not ok then
    kong.log.err(fmt("queue %s: delivery failed: %s", q.name, tostring(err)))
  end
  -- entries that came while the last batch was sent
  if count(q) > 0 and not exiting() then
    q.running = true
    local tok, terr = ngx.timer.at(0, process, q)
    if not tok then
      q.running = false
      kong.log.err(fmt("queue %s: could not create a timer: %s", q.name,
                     tostring(terr)))
    end
  end
end


local function single(premature, q, value)
  deliver(q, { value }, 1)
end


local function get_queue(conf, handler, handler_conf)
  local name = conf.name
  local q = queues[name]
  if not q then
    q = {
      name = name,
      entries = {},
      times = {},
      head = 1,
      tail = 0,
      bytes = 0,
      running = false,
      warned = false,
      dropped = 0,
      total_dropped = 0,
      sent = 0,
      lost = 0,
    }
    queues[name] = q
  end
  q.conf = conf
  q.handler = handler
  q.handler_conf = handler_conf
  return q
end


-- public API ----------------------------------------------------------------

-- Queues value for handler(handler_conf, batch). Returns true, or nil and
-- an error (bad arguments, an entry max_bytes cannot take, no timer).
function _M.enqueue(queue_conf, handler, handler_conf, value)
  if type(queue_conf) ~= "table" or type(queue_conf.name) ~= "string" then
    error("arg #1 (queue_conf) must be a table with a name", 2)
  end
  if type(handler) ~= "function" then
    error("arg #2 (handler) must be a function", 2)
  end
  if value == nil then
    error("arg #4 (value) must not be nil", 2)
  end
  local q = get_queue(queue_conf, handler, handler_conf)
  local c = q.conf

  if c.max_bytes then
    if type(value) ~= "string" then
      return nil, fmt("queue %s: max_bytes is set, so entries must be " ..
                      "strings (got a %s)", q.name, type(value))
    end
    if #value > c.max_bytes then
      return nil, fmt("string to be queued is longer than queue's " ..
                      "max_bytes (%d)", c.max_bytes)
    end
  end

  if c.concurrency_limit == -1 then
    local ok, err = ngx.timer.at(0, single, q, value)
    if not ok then
      return nil, "could not create a timer: " .. tostring(err)
    end
    return true
  end

  while count(q) >= c.max_entries do
    drop_oldest(q, fmt("full (max_entries %d)", c.max_entries))
  end
  if c.max_bytes and type(value) == "string" then
    while q.bytes + #value > c.max_bytes and count(q) > 0 do
      drop_oldest(q, fmt("full (max_bytes %d)", c.max_bytes))
    end
  end

  local t = q.tail + 1
  q.tail = t
  q.entries[t] = value
  q.times[t] = now()
  if type(value) == "string" then
    q.bytes = q.bytes + #value
  end
  capacity_check(q)

  if not q.running then
    q.running = true
    local ok, err = ngx.timer.at(0, process, q)
    if not ok then
      q.running = false
      return nil, "could not create a timer: " .. tostring(err)
    end
  end
  return true
end


-- True when an entry now would make the queue drop another.
function _M.is_full(queue_conf)
  local q = queues[queue_conf.name]
  if not q then
    return false
  end
  local c = q.conf
  return count(q) >= c.max_entries or
         (c.max_bytes ~= nil and q.bytes >= c.max_bytes)
end


-- True when value can be queued without dropping another entry.
function _M.can_enqueue(queue_conf, value)
  local q = queues[queue_conf.name]
  local max_bytes = queue_conf.max_bytes
  if max_bytes and (type(value) ~= "string" or #value > max_bytes) then
    return false
  end
  if not q then
    return true
  end
  if count(q) >= q.conf.max_entries then
    return false
  end
  return not max_bytes or q.bytes + #value <= max_bytes
end


-- Counters of a queue (for specs and debugging): waiting, bytes, sent,
-- lost (given up after retries), dropped (to make room), running.
function _M.stats(name)
  local q = queues[name]
  if not q then
    return nil
  end
  return {
    waiting = count(q), bytes = q.bytes, sent = q.sent, lost = q.lost,
    dropped = q.total_dropped, running = q.running,
  }
end


function _M._exists(name)
  return queues[name] ~= nil
end


-- schema --------------------------------------------------------------------

local QUEUE_DESCRIPTIONS = {
  max_batch_size = "Maximum number of entries that can be processed at " ..
                   "a time.",
  max_coalescing_delay = "Maximum number of (fractional) seconds to " ..
                         "elapse after the first entry was queued before " ..
                         "the queue starts calling the handler.",
  max_entries = "Maximum number of entries that can be waiting on the " ..
                "queue; past it, the oldest entry is dropped.",
  max_bytes = "Maximum number of bytes that can be waiting on a queue, " ..
              "requires string content.",
  max_retry_time = "Time in seconds before the queue gives up calling a " ..
                   "failed handler for a batch.",
  initial_retry_delay = "Time in seconds before the initial retry is " ..
                        "made for a failing batch.",
  max_retry_delay = "Maximum time in seconds between retries, caps " ..
                    "exponential backoff.",
  concurrency_limit = "The number of queue delivery timers: 1, or -1 " ..
                      "for unlimited (every entry sent at once in a " ..
                      "timer of its own).",
}


-- The `queue` record of a plugin schema: typedefs.queue (Kong's fields and
-- defaults) with a description on each field; overrides as for any
-- typedef (e.g. { default = { max_batch_size = 200 } }).
function _M.schema_field(overrides)
  local typedefs = require "kong.db.schema.typedefs"
  local q = typedefs.queue(overrides)
  q.description = q.description or
                  "Configuration of the queue that batches entries and " ..
                  "delivers them from a timer."
  for _, item in ipairs(q.fields) do
    local name, f = next(item)
    f.description = f.description or QUEUE_DESCRIPTIONS[name]
  end
  return q
end


return _M
