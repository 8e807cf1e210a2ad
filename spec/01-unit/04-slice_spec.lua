-- luagate.slice: a worker's reload runs the config load in a coroutine that
-- yields between entities once its slice of CPU time is spent.
local slice = require "luagate.slice"
local config = require "luagate.config"
local router = require "luagate.router"

-- runs f() in a coroutine like a worker's load: resumed until it ends;
-- returns the number of yields and f's results
local function sliced(f)
  local yields = 0
  local co = coroutine.create(function()
    slice.begin()
    local a, b = f()
    slice.finish()
    return a, b
  end)
  local ok, a, b = coroutine.resume(co)
  while ok and coroutine.status(co) == "suspended" do
    yields = yields + 1
    ok, a, b = coroutine.resume(co)
  end
  assert(ok, a)
  return yields, a, b
end

local function burn(seconds)
  local t = os.clock()
  while os.clock() - t < seconds do end
end

describe("luagate.slice", function()
  after_each(function()
    slice.finish()
  end)

  it("yields the load's coroutine once the slice's budget is spent", function()
    local points = 0
    local co = coroutine.create(function()
      slice.begin()
      for _ = 1, 400 do
        burn(0.0001)
        slice.point()
        points = points + 1
      end
      slice.finish()
      return "done"
    end)
    local ok, res = coroutine.resume(co)
    assert.is_true(ok, res)
    assert.equal("suspended", coroutine.status(co))
    assert.is_true(points > 0 and points < 400, tostring(points))
    local resumes = 1
    while coroutine.status(co) == "suspended" do
      ok, res = coroutine.resume(co)
      assert.is_true(ok, res)
      resumes = resumes + 1
    end
    assert.equal("done", res)
    assert.equal(400, points)
    assert.is_true(resumes >= 3, tostring(resumes))
  end)

  it("never yields outside the load's coroutine", function()
    local load = coroutine.create(function()
      slice.begin()
      coroutine.yield("begun")
    end)
    assert.same({ true, "begun" }, { coroutine.resume(load) })
    -- another coroutine (a request) passing through a slice point
    local other = coroutine.create(function()
      for _ = 1, 200 do
        burn(0.0001)
        slice.point()
      end
      return "finished"
    end)
    assert.same({ true, "finished" }, { coroutine.resume(other) })
    -- the main thread too
    for _ = 1, 200 do
      burn(0.00005)
      slice.point()
    end
  end)

  it("lets a whole config load run in slices with the same result", function()
    local text = { '{"_format_version":"3.0","services":[' }
    for s = 1, 40 do
      local routes = {}
      for r = 1, 25 do
        routes[r] = string.format('{"name":"s%d-r%d","paths":["/s%d/r%d"]}', s, r, s, r)
      end
      text[#text + 1] = string.format('%s{"name":"s%d","url":"http://127.0.0.1:%d","routes":[%s]}',
                                      s > 1 and "," or "", s, 9000 + s, table.concat(routes, ","))
    end
    text[#text + 1] = "]}"
    text = table.concat(text)
    local whole = assert(config.load_string(text, "json", "big.json"))
    local slices, conf, err = sliced(function()
      return config.load_string(text, "json", "big.json")
    end)
    assert.is_table(conf, err)
    assert.equal(#whole.routes, #conf.routes)
    assert.equal(1000, #conf.routes)
    assert.equal(whole.routes[777].id, conf.routes[777].id)
    -- 1,040 entities: valgrind or not, that is more than one slice of 2 ms
    assert.is_true(slices >= 1, tostring(slices))
  end)

  it("sorts in slices as table.sort does", function()
    math.randomseed(42)
    for _, n in ipairs({ 0, 1, 2, 31, 32, 33, 64, 65, 100, 1000, 20000 }) do
      local a, b = {}, {}
      for i = 1, n do
        local v = { k = math.random(1, 50), i = i }
        a[i], b[i] = v, v
      end
      local function less(x, y)
        if x.k ~= y.k then
          return x.k > y.k
        end
        return x.i < y.i
      end
      table.sort(a, less)
      local yields = sliced(function()
        slice.sort(b, less)
      end)
      assert.equal(n, #b)
      for i = 1, n do
        assert.is_true(a[i] == b[i], "n = " .. n .. ", element " .. i)
      end
      if n == 20000 then
        -- 20,000 elements are more than a slice's 0.1 ms of work
        assert.is_true(yields >= 1, tostring(yields))
      end
    end
    -- outside a load it is table.sort: no coroutine needed
    local c = { 3, 1, 2 }
    slice.sort(c, function(x, y) return x < y end)
    assert.same({ 1, 2, 3 }, c)
  end)

  it("ranks routes in slices as in one piece", function()
    local routes = {}
    for i = 1, 3000 do
      routes[i] = {
        paths = { "/p" .. (i % 97), "~/r" .. (i % 13) .. "$" },
        hosts = i % 3 == 0 and { "h" .. (i % 7) .. ".test" } or nil,
        methods = i % 5 == 0 and { "GET" } or nil,
        regex_priority = i % 4,
      }
    end
    local whole = router.compile({ routes = routes })
    local yields, entries = sliced(function()
      return router.compile({ routes = routes })
    end)
    assert.is_true(yields >= 1, tostring(yields))
    assert.equal(6000, #whole)
    assert.same(whole, entries)
  end)

  it("leaves the collector running after a sliced load, finished or dropped",
     function()
    local runtime = require "luagate.runtime"
    -- KB the heap grew by while making about 130 MB of garbage
    local keep = {} -- (the tables escape: the JIT cannot sink them)
    local function growth()
      local before = collectgarbage("count")
      for i = 1, 1000000 do
        keep[i % 2 + 1] = { 1, 2, 3, 4, 5, 6, 7, 8 }
      end
      return collectgarbage("count") - before
    end
    local _, conf, err = sliced(function()
      return runtime.load_sliced("/nonexistent/luagate.json",
                                 { prefix = "/nonexistent", plugins_dirs = {} })
    end)
    assert.is_nil(conf)
    assert.matches("could not open config", err)
    assert.is_true(growth() < 100000)
    -- the measure tells: with the collector stopped, all of it stays
    collectgarbage("stop")
    assert.is_true(growth() > 100000)
    -- a load dropped while the collector is stopped
    runtime.load_abandoned()
    assert.is_true(growth() < 100000)
    assert.same({ 1, 2, 3, 4, 5, 6, 7, 8 }, keep[1])
  end)

  it("keeps the heap bounded over sliced loads that follow each other",
     function()
    local runtime = require "luagate.runtime"
    local path = os.tmpname()
    finally(function() os.remove(path) end)
    local parts = { '{"_format_version":"3.0","services":[' }
    for s = 1, 100 do
      local routes = {}
      for r = 1, 20 do
        routes[r] = string.format('{"name":"s%d-r%d","paths":["/s%d/r%d"]}',
                                  s, r, s, r)
      end
      parts[#parts + 1] = string.format(
        '%s{"name":"s%d","url":"http://127.0.0.1:%d","routes":[%s]}',
        s > 1 and "," or "", s, 9000 + s, table.concat(routes, ","))
    end
    parts[#parts + 1] = "]}"
    local f = assert(io.open(path, "w"))
    f:write(table.concat(parts))
    f:close()
    -- no allocation between the loads drives the collector: each load
    -- (about 7 MB of config and garbage) must free what the one before it
    -- left
    local heap, kept = {}, nil
    for i = 1, 6 do
      local yields, conf, err = sliced(function()
        return runtime.load_sliced(path, { prefix = "/nonexistent",
                                           plugins_dirs = {} })
      end)
      assert.is_table(conf, err)
      assert.is_true(yields >= 1, tostring(yields))
      kept = conf -- the running config, as a worker holds it
      heap[i] = collectgarbage("count")
    end
    assert.equal(2000, #kept.routes)
    assert.is_true(heap[6] - heap[3] < 4000,
                   ("heap: %d KB after the 3rd load, %d KB after the 6th")
                     :format(heap[3], heap[6]))
  end)
end)

