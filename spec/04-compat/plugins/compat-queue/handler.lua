-- luacheck: no max line length
-- kong.tools.queue (Kong 3 API) + kong.worker_events: each request enqueues
-- an entry; batches of 2 are handed to a handler that posts a worker event;
-- every worker's registered handler records that it saw it.
local Queue = require "kong.tools.queue"

local H = { PRIORITY = 12, VERSION = "1.0.0" }

local SOURCE, EVENT = "compat-queue", "batch"

function H:init_worker()
  kong.worker_events.register(function(data, event, source, pid)
    local d = ngx.shared.kong
    d:set("compat-queue:seen:" .. ngx.worker.id() .. ":" .. data.batch, true)
    d:incr("compat-queue:seen-count", 1, 0)
  end, SOURCE, EVENT)
  kong.cluster_events:subscribe("compat-channel", function(data)
    ngx.shared.kong:set("compat-queue:cluster:" .. ngx.worker.id(), data)
  end)
end

local function send(conf, entries)
  local d = ngx.shared.kong
  local n = d:incr("compat-queue:handler-calls", 1, 0)
  if conf.fail_first and n == 1 then
    return nil, "first try fails"
  end
  local batch = table.concat(entries, ",")
  d:set("compat-queue:batch:" .. n, batch)
  return kong.worker_events.post(SOURCE, EVENT, { batch = batch })
end

function H:access(conf)
  local what = kong.request.get_query_arg("what")
  if what == "dump" then
    local d = ngx.shared.kong
    local out = {}
    for _, k in ipairs(d:get_keys(0)) do
      if k:find("^compat%-") then
        out[k] = d:get(k)
      end
    end
    return kong.response.exit(200, out)
  elseif what == "broadcast" then
    local ok, err = kong.cluster_events:broadcast("compat-channel", "hello")
    return kong.response.exit(200, { ok = ok, err = err })
  end
end

function H:log(conf)
  local entry = kong.request.get_query_arg("entry")
  if entry then
    Queue.enqueue({
      name = "compat-queue",
      max_batch_size = 2,
      max_coalescing_delay = 5,
      max_entries = 100,
      initial_retry_delay = 0.05,
      max_retry_time = 5,
      max_retry_delay = 1,
    }, send, conf, entry)
  end
end

return H
