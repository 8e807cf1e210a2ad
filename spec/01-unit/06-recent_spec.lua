-- luagate.recent, the bounded map of the workers' caches (proxy-cache,
-- rate-limiting; two generations: what was used lately stays, the rest
-- goes).
local recent = require "luagate.recent"


describe("luagate.recent", function()
  it("keeps what is set, forgets what is deleted", function()
    local m = recent.new(10)
    assert.is_nil(m:get("a"))
    m:set("a", 1)
    m:set("b", false)
    assert.equal(1, m:get("a"))
    assert.is_false(m:get("b"))
    m:set("a", 2)
    assert.equal(2, m:get("a"))
    m:delete("a")
    assert.is_nil(m:get("a"))
  end)

  it("holds at most two generations of max_items", function()
    local m = recent.new(3)
    for i = 1, 3 do
      m:set(i, i)
    end
    m:set(4, 4) -- 1..3 become the old generation
    for i = 1, 4 do
      assert.equal(i, m:get(i)) -- 1..3 move back to the current one
    end
    -- moving 3 filled the current generation (4, 1, 2): it became the old
    -- one, 3 started a new one where 4 then moved: current {3, 4}, old {1, 2}
    for i = 5, 7 do
      m:set(i, i) -- 6 turns {3, 4, 5} into the old generation; {1, 2} go
    end
    assert.is_nil(m:get(1))
    assert.is_nil(m:get(2))
    assert.equal(6, m:get(6))
    assert.equal(7, m:get(7))
    assert.equal(5, m:get(5)) -- moves back: current {6, 7, 5}
  end)

  it("drops what is not used while max_items others come", function()
    local m = recent.new(100)
    m:set("old", true)
    for i = 1, 200 do
      m:set(i, i)
    end
    assert.is_nil(m:get("old"))
    assert.equal(200, m:get(200))
    assert.equal(101, m:get(101))
    -- an item used once per generation stays
    m:set("warm", 1)
    for i = 1, 1000 do
      m:set("x" .. i, i)
      if i % 50 == 0 then
        assert.equal(1, m:get("warm"))
      end
    end
  end)

  it("with max_bytes, a generation ends at that many bytes", function()
    local m = recent.new(1000, 100)
    m:set("a", { bytes = 60 })
    m:set("b", { bytes = 30 })
    assert.equal(60, m:get("a").bytes)
    m:set("c", { bytes = 50 }) -- 140 > 100: a and b are the old generation
    m:set("d", { bytes = 60 }) -- 110 > 100: c is, a and b are gone
    assert.is_nil(m:get("a"))
    assert.is_nil(m:get("b"))
    assert.equal(50, m:get("c").bytes)
    assert.equal(60, m:get("d").bytes)
  end)

  it("clear() forgets both generations", function()
    local m = recent.new(2)
    m:set("a", 1)
    m:set("b", 2)
    m:set("c", 3) -- a and b in the old generation
    m:clear()
    assert.is_nil(m:get("a"))
    assert.is_nil(m:get("c"))
    m:set("d", 4)
    assert.equal(4, m:get("d"))
  end)

  it("concat() makes left .. right once per key", function()
    local m = recent.new(4)
    local a = m:concat("id", "prefix:", "id")
    assert.equal("prefix:id", a)
    -- kept: another right side is not used while the key is held
    assert.equal("prefix:id", m:concat("id", "prefix:", "other"))
    m:delete("id")
    assert.equal("prefix:other", m:concat("id", "prefix:", "other"))
  end)
end)
