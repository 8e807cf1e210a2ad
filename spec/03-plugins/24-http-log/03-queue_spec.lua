-- The queue http-log and opentelemetry share (plugins/http-log/queue.lua,
-- Kong's kong.tools.queue API), on a simulated clock: timers are
-- coroutines a small scheduler runs, ngx.sleep advances the clock. Covers
-- batching, coalescing, retries with backoff, giving up, max_entries,
-- max_bytes, concurrency_limit -1 and the parameters.
local helpers = require "spec.helpers"


insulate("http-log queue", function()
  local Queue, clock, timers, logs, exiting

  local function run_timers(limit)
    limit = limit or 10000
    while #timers > 0 and limit > 0 do
      limit = limit - 1
      local t = table.remove(timers, 1)
      local ok, res = coroutine.resume(t.co, unpack(t.args, 1, t.args.n))
      assert(ok, res)
      t.args = { n = 0 }
      if coroutine.status(t.co) == "suspended" then
        clock = clock + (res or 0)
        timers[#timers + 1] = t
      end
    end
  end

  local function logged(level, text)
    for _, l in ipairs(logs) do
      if l[1] == level and l[2]:find(text, 1, true) then
        return true
      end
    end
    return false
  end

  before_each(function()
    clock, timers, logs, exiting = 1000, {}, {}, false
    _G.ngx = {
      null = setmetatable({}, { __name = "null" }),
      now = function() return clock end,
      sleep = function(s) coroutine.yield(s) end,
      worker = { exiting = function() return exiting end },
      timer = {
        at = function(_, fn, ...)
          timers[#timers + 1] = { co = coroutine.create(fn),
                                  args = { n = select("#", ...) + 1,
                                           false, ... } }
          return true
        end,
      },
    }
    local function sink(level)
      return function(...)
        logs[#logs + 1] = { level, table.concat({ ... }) }
      end
    end
    _G.kong = { log = { warn = sink("warn"), err = sink("err"),
                        notice = sink("notice") } }
    Queue = dofile(helpers.root .. "/plugins/http-log/queue.lua")
  end)

  after_each(function()
    _G.ngx, _G.kong = nil, nil
  end)

  local function params(q, name)
    return Queue.get_plugin_params("spec", { queue = q }, name or "q")
  end

  local function recorder(results)
    local calls = {}
    local handler = function(conf, batch)
      calls[#calls + 1] = { time = clock, batch = batch, conf = conf }
      local r = results and results[#calls]
      if r == "raise" then
        error("handler blew up")
      elseif r == false then
        return nil, "nope"
      end
      return true
    end
    return handler, calls
  end

  it("fills Kong's defaults and caches the parameters", function()
    local conf = { queue = { max_batch_size = 5 }, __plugin_id = "abc" }
    local p = Queue.get_plugin_params("http-log", conf)
    assert.same({ name = "http-log abc", max_batch_size = 5,
                  max_coalescing_delay = 1, max_entries = 10000,
                  max_retry_time = 60, initial_retry_delay = 0.01,
                  max_retry_delay = 60, concurrency_limit = 1 }, p)
    assert.equal(p, Queue.get_plugin_params("http-log", conf))
    local named = Queue.get_plugin_params("http-log", conf, "other")
    assert.equal("other", named.name)
  end)

  it("hands out batches of max_batch_size, in order", function()
    local handler, calls = recorder()
    local p = params({ max_batch_size = 2, max_coalescing_delay = 0 })
    for i = 1, 5 do
      assert(Queue.enqueue(p, handler, "conf", i))
    end
    run_timers()
    assert.equal(3, #calls)
    assert.same({ 1, 2 }, calls[1].batch)
    assert.same({ 3, 4 }, calls[2].batch)
    assert.same({ 5 }, calls[3].batch)
    assert.equal("conf", calls[1].conf)
    assert.equal(5, Queue.stats("q").sent)
  end)

  it("waits max_coalescing_delay for a batch to fill", function()
    local handler, calls = recorder()
    local p = params({ max_batch_size = 10, max_coalescing_delay = 1 })
    for i = 1, 3 do
      Queue.enqueue(p, handler, nil, i)
    end
    run_timers()
    assert.equal(1, #calls)
    assert.same({ 1, 2, 3 }, calls[1].batch)
    assert.truthy(calls[1].time >= 1001 and calls[1].time < 1001.1,
                  calls[1].time)
  end)

  it("retries with exponential backoff until the handler succeeds",
     function()
    local handler, calls = recorder({ false, "raise", false, true })
    local p = params({ initial_retry_delay = 0.5, max_retry_delay = 1.5 })
    Queue.enqueue(p, handler, nil, "x")
    run_timers()
    assert.equal(4, #calls)
    assert.equal(0.5, calls[2].time - calls[1].time)
    assert.equal(1.0, calls[3].time - calls[2].time)
    assert.equal(1.5, calls[4].time - calls[3].time) -- capped
    assert.truthy(logged("warn", "handler could not process entries " ..
                                 "(try 1), retrying in 0.5s: nope"))
    assert.truthy(logged("warn", "handler blew up"))
    assert.equal(1, Queue.stats("q").sent)
    assert.equal(0, Queue.stats("q").lost)
  end)

  it("gives up after max_retry_time and goes on", function()
    local fails = {}
    for i = 1, 100 do
      fails[i] = false
    end
    local handler, calls = recorder(fails)
    local p = params({ initial_retry_delay = 1, max_retry_delay = 1,
                       max_retry_time = 3 })
    Queue.enqueue(p, handler, nil, "a")
    Queue.enqueue(p, handler, nil, "b")
    run_timers()
    -- tries at 0, 1, 2, 3 s for each entry
    local a, b = 0, 0
    for _, c in ipairs(calls) do
      if c.batch[1] == "a" then a = a + 1 else b = b + 1 end
    end
    assert.equal(4, a)
    assert.equal(4, b)
    assert.truthy(logged("err", "queue q: could not send entries, giving " ..
                                "up after 4 tries; 1 queue entries were " ..
                                "lost: nope"))
    assert.equal(2, Queue.stats("q").lost)
  end)

  it("drops the oldest entries past max_entries, and says so", function()
    local handler, calls = recorder()
    local p = params({ max_entries = 5, max_batch_size = 100,
                       max_coalescing_delay = 0 })
    for i = 1, 8 do
      Queue.enqueue(p, handler, nil, i)
    end
    assert.is_true(Queue.is_full(p))
    assert.is_false(Queue.can_enqueue(p, 9))
    run_timers()
    assert.same({ 4, 5, 6, 7, 8 }, calls[1].batch)
    assert.truthy(logged("warn", "queue q: reached 80% of its capacity " ..
                                 "(4 entries waiting, max_entries 5)"))
    assert.truthy(logged("warn", "queue q: full (max_entries 5), " ..
                                 "dropping the oldest entries"))
    assert.truthy(logged("notice", "queue q: resumed normal operation; 3 " ..
                                   "entries were dropped while it was full"))
    assert.equal(3, Queue.stats("q").dropped)
    assert.is_false(Queue.is_full(p))
  end)

  it("keeps the waiting bytes under max_bytes", function()
    local handler, calls = recorder()
    local p = params({ max_bytes = 10, max_batch_size = 100,
                       max_coalescing_delay = 0 })
    assert(Queue.enqueue(p, handler, nil, "aaaa"))
    assert(Queue.enqueue(p, handler, nil, "bbbb"))
    assert.is_false(Queue.can_enqueue(p, "cccc"))
    assert.is_true(Queue.can_enqueue(p, "cc"))
    assert(Queue.enqueue(p, handler, nil, "cccc")) -- drops "aaaa"
    local ok, err = Queue.enqueue(p, handler, nil, "12345678901")
    assert.is_nil(ok)
    assert.equal("string to be queued is longer than queue's max_bytes " ..
                 "(10)", err)
    ok, err = Queue.enqueue(p, handler, nil, { "table" })
    assert.is_nil(ok)
    assert.equal("queue q: max_bytes is set, so entries must be strings " ..
                 "(got a table)", err)
    run_timers()
    assert.same({ "bbbb", "cccc" }, calls[1].batch)
  end)

  it("sends every entry at once with concurrency_limit -1", function()
    local handler, calls = recorder()
    local p = params({ concurrency_limit = -1, max_batch_size = 10 })
    for i = 1, 3 do
      Queue.enqueue(p, handler, nil, i)
    end
    assert.equal(3, #timers)
    run_timers()
    assert.same({ { 1 }, { 2 }, { 3 } },
                { calls[1].batch, calls[2].batch, calls[3].batch })
    assert.equal(1000, calls[3].time) -- no coalescing delay
  end)

  it("sends without waiting or retrying while the worker exits", function()
    local handler, calls = recorder({ false })
    local p = params({ max_batch_size = 10, max_coalescing_delay = 5 })
    Queue.enqueue(p, handler, nil, 1)
    exiting = true
    run_timers()
    assert.equal(1, #calls)
    assert.equal(1000, calls[1].time)
    assert.truthy(logged("err", "giving up after 1 tries"))
  end)

  it("uses the latest handler and conf given", function()
    local h1, c1 = recorder()
    local h2, c2 = recorder()
    local p = params({ max_batch_size = 2, max_coalescing_delay = 1 })
    Queue.enqueue(p, h1, "old", 1)
    Queue.enqueue(p, h2, "new", 2)
    run_timers()
    assert.equal(0, #c1)
    assert.same({ 1, 2 }, c2[1].batch)
    assert.equal("new", c2[1].conf)
  end)

  it("refuses misuse", function()
    local p = params({})
    assert.has_error(function() Queue.enqueue(p, nil, nil, 1) end,
                     "arg #2 (handler) must be a function")
    assert.has_error(function() Queue.enqueue(p, print, nil, nil) end,
                     "arg #4 (value) must not be nil")
    assert.has_error(function() Queue.enqueue({}, print, nil, 1) end,
                     "arg #1 (queue_conf) must be a table with a name")
  end)
end)
