-- luagate.slice: a worker's reload runs the config load in a coroutine that
-- yields between entities once its slice of CPU time is spent.
local slice = require "luagate.slice"
local config = require "luagate.config"

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
    local slices = 0
    local co = coroutine.create(function()
      slice.begin()
      local conf, err = config.load_string(text, "json", "big.json")
      slice.finish()
      return conf, err
    end)
    local ok, conf, err = coroutine.resume(co)
    while ok and coroutine.status(co) == "suspended" do
      slices = slices + 1
      ok, conf, err = coroutine.resume(co)
    end
    assert.is_true(ok, conf)
    assert.is_table(conf, err)
    assert.equal(#whole.routes, #conf.routes)
    assert.equal(1000, #conf.routes)
    assert.equal(whole.routes[777].id, conf.routes[777].id)
    -- 1,040 entities: valgrind or not, that is more than one slice of 2 ms
    assert.is_true(slices >= 1, tostring(slices))
  end)
end)
