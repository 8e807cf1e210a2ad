-- luagate.shdict (ngx.shared) against build/test/libgwshdict.so, which this
-- spec (re)builds through runtime/test/shdict_run.sh --lib unless
-- LUAGATE_SHDICT_LIB names another build.
local ffi = require("ffi")

local LIB = os.getenv("LUAGATE_SHDICT_LIB") or "build/test/libgwshdict.so"

if not os.getenv("LUAGATE_SHDICT_LIB") then
  local rc = os.execute("sh runtime/test/shdict_run.sh --lib")
  assert(rc == 0 or rc == true, "could not build " .. LIB)
end

pcall(ffi.cdef, [[
  struct gw_shdict;
  int gw_shdict_create(const char *name, size_t size);
  struct gw_shdict *gw_shdict_find(const char *name, size_t len);
  int poll(void *fds, unsigned long nfds, int timeout);
]])
local lib = ffi.load(LIB)
-- the registry outlives a reload of this file in the same process
for name, size in pairs({ dogs = 1024 * 1024, small = 32 * 1024 }) do
  if lib.gw_shdict_find(name, #name) == nil then
    assert(lib.gw_shdict_create(name, size) == 0)
  end
end

local function sleep(s)
  ffi.C.poll(nil, 0, s * 1000)
end

local shared = require("luagate.shdict")

describe("luagate.shdict", function()
  local dogs

  before_each(function()
    dogs = shared.dogs
    dogs:flush_all()
    dogs:flush_expired()
  end)

  it("indexes dictionaries by name, cached, nil when unknown", function()
    assert.is_table(shared.dogs)
    assert.equal(shared.dogs, shared["dogs"])
    assert.equal(shared.dogs, rawget(shared, "dogs"))
    assert.is_nil(shared.cats)
    assert.is_nil(shared[1])
    assert.is_nil(rawget(shared, "cats"))
  end)

  it("sets and gets strings, numbers, booleans", function()
    assert.same({ true, nil, false }, { dogs:set("s", "hello") })
    assert.same({ true, nil, false }, { dogs:set("n", 1.5) })
    assert.same({ true, nil, false }, { dogs:set("t", true) })
    assert.same({ true, nil, false }, { dogs:set("f", false) })
    assert.same({ "hello" }, { dogs:get("s") })
    assert.same({ 1.5 }, { dogs:get("n") })
    assert.same({ true }, { dogs:get("t") })
    assert.same({ false }, { dogs:get("f") })
    assert.same({ "" }, { dogs:set("e", "") and dogs:get("e") })
    local bin = "a\0b\0c"
    dogs:set(bin, bin)
    assert.equal(bin, dogs:get(bin))
    assert.is_nil(dogs:get("a"))
    assert.equal(0, select("#", dogs:get("missing")) - 1)
  end)

  it("returns user flags only when non-zero", function()
    dogs:set("k", "v", 0, 42)
    assert.same({ "v", 42 }, { dogs:get("k") })
    dogs:set("k", "v", 0, 0)
    assert.equal(1, select("#", dogs:get("k")))
    dogs:set("k", "v", 0, 4294967295)
    assert.same({ "v", 4294967295 }, { dogs:get("k") })
  end)

  it("converts number keys and rejects bad keys", function()
    dogs:set(12, "twelve")
    assert.equal("twelve", dogs:get("12"))
    assert.same({ nil, "nil key" }, { dogs:get(nil) })
    assert.same({ nil, "empty key" }, { dogs:get("") })
    assert.same({ nil, "key too long" }, { dogs:get(("x"):rep(65536)) })
    assert.same({ nil, "nil key" }, { dogs:set(nil, 1) })
    assert.same({ nil, "empty key" }, { dogs:set("", 1) })
    assert.same({ nil, "key too long" }, { dogs:set(("x"):rep(65536), 1) })
    local long = ("k"):rep(65535)
    assert.is_true(dogs:set(long, 1))
    assert.equal(1, dogs:get(long))
    for _, m in ipairs({ "incr", "ttl", "expire", "lpush", "lpop", "llen",
                         "get_stale", "delete", "add" }) do
      assert.same({ nil, "empty key" }, { dogs[m](dogs, "", 1) }, m)
    end
  end)

  it("rejects bad values, exptime, flags and zone", function()
    assert.same({ nil, "bad value type" }, { dogs:set("k", {}) })
    assert.same({ nil, "bad value type" }, { dogs:set("k", print) })
    assert.has_error(function() dogs:set("k", 1, -1) end,
                     "bad \"exptime\" argument")
    assert.has_error(function() dogs:set("k", 1, "x") end,
                     "bad \"exptime\" argument")
    assert.has_error(function() dogs:set("k", 1, 0, "x") end,
                     "bad \"flags\" argument")
    assert.has_error(function() dogs.get(nil, "k") end, "bad \"zone\" argument")
    assert.has_error(function() dogs.set({}, "k", 1) end,
                     "bad \"zone\" argument")
  end)

  it("copies long values (beyond the reusable buffer) intact", function()
    for _, n in ipairs({ 4095, 4096, 4097, 10000, 100000, 300000 }) do
      local v = ("0123456789"):rep(n / 10 + 1):sub(1, n)
      assert.is_true(dogs:set("big", v))
      assert.equal(v, dogs:get("big"))
      assert.equal(v, (dogs:get_stale("big")))
    end
  end)

  it("add / safe_add / replace", function()
    assert.same({ true, nil, false }, { dogs:add("a", 1) })
    assert.same({ false, "exists", false }, { dogs:add("a", 2) })
    assert.same({ false, "exists", false }, { dogs:safe_add("a", 2) })
    assert.equal(1, dogs:get("a"))
    assert.same({ true, nil, false }, { dogs:safe_add("b", 2) })
    assert.same({ false, "not found", false }, { dogs:replace("c", 3) })
    assert.is_nil(dogs:get("c"))
    assert.same({ true, nil, false }, { dogs:replace("a", "x", 0, 7) })
    assert.same({ "x", 7 }, { dogs:get("a") })
    assert.same({ true, nil, false }, { dogs:safe_set("a", "y") })
    assert.equal("y", dogs:get("a"))
  end)

  it("add and replace treat expired keys as absent", function()
    dogs:set("x", 1, 0.001)
    sleep(0.01)
    assert.same({ false, "not found", false }, { dogs:replace("x", 2) })
    dogs:set("x", 1, 0.001)
    sleep(0.01)
    assert.is_true(dogs:add("x", 3))
    assert.equal(3, dogs:get("x"))
  end)

  it("delete, and set to nil", function()
    dogs:set("a", 1)
    assert.same({ true, nil, false }, { dogs:delete("a") })
    assert.is_nil(dogs:get("a"))
    assert.same({ true, nil, false }, { dogs:delete("a") })
    dogs:set("a", 1)
    assert.is_true(dogs:set("a", nil))
    assert.is_nil(dogs:get("a"))
    assert.same({ nil, "nil key" }, { dogs:delete(nil) })
  end)

  it("incr", function()
    assert.same({ nil, "not found" }, { dogs:incr("c", 1) })
    assert.same({ 11, nil, false }, { dogs:incr("c", 1, 10) })
    assert.same({ 12.5 }, { dogs:incr("c", 1.5) })
    assert.same({ 10.5, nil, false }, { dogs:incr("c", -2, 100) })
    assert.same({ 11.5 }, { dogs:incr("c", "1") })
    dogs:set("s", "str")
    assert.same({ nil, "not a number" }, { dogs:incr("s", 1) })
    assert.same({ nil, "not a number" }, { dogs:incr("s", 1, 0) })
    assert.has_error(function() dogs:incr("c", "x") end,
                     "bad value arg: number expected, got string")
    assert.has_error(function() dogs:incr("c", 1, {}) end,
                     "bad init arg: number expected, got table")
    assert.has_error(function() dogs:incr("c", 1, nil, 1) end,
                     "must provide \"init\" when providing \"init_ttl\"")
    assert.has_error(function() dogs:incr("c", 1, 0, -1) end,
                     "bad \"init_ttl\" argument")
  end)

  it("incr with init_ttl expires; existing keys keep their ttl", function()
    assert.equal(1, dogs:incr("t", 1, 0, 0.02))
    assert.equal(2, dogs:incr("t", 1, 0, 100))
    local ttl = dogs:ttl("t")
    assert.is_true(ttl > 0 and ttl <= 0.02)
    sleep(0.04)
    assert.is_nil(dogs:get("t"))
    assert.same({ 5, nil, false }, { dogs:incr("t", 5, 0) })
    assert.equal(0, dogs:ttl("t"))
  end)

  it("expires values; get_stale still sees them", function()
    dogs:set("e", "v", 0.02, 3)
    assert.same({ "v", 3 }, { dogs:get("e") })
    assert.same({ "v", 3, false }, { dogs:get_stale("e") })
    sleep(0.04)
    assert.equal(1, select("#", dogs:get("e")))
    assert.is_nil(dogs:get("e"))
    assert.same({ "v", 3, true }, { dogs:get_stale("e") })
    dogs:set("f", 1, 0.001)
    sleep(0.01)
    assert.same({ 1, nil, true }, { dogs:get_stale("f") })
    assert.equal(1, select("#", dogs:get_stale("nope")))
  end)

  it("ttl and expire", function()
    dogs:set("k", 1, 10)
    local ttl = dogs:ttl("k")
    assert.is_true(ttl > 9.9 and ttl <= 10)
    dogs:set("p", 1)
    assert.equal(0, dogs:ttl("p"))
    assert.same({ nil, "not found" }, { dogs:ttl("none") })
    assert.same({ true }, { dogs:expire("p", 0.02) })
    sleep(0.04)
    assert.is_nil(dogs:get("p"))
    assert.same({ nil, "not found" }, { dogs:ttl("p") })
    assert.same({ nil, "not found" }, { dogs:expire("p", 1) })
    assert.same({ nil, "not found" }, { dogs:expire("none", 1) })
    assert.same({ true }, { dogs:expire("k", 0) })
    assert.equal(0, dogs:ttl("k"))
    assert.has_error(function() dogs:expire("k") end,
                     "bad \"exptime\" argument")
  end)

  it("get_stamp changes with every store of the value, not on reads",
     function()
    assert.same({ nil }, { dogs:get_stamp("s") })
    dogs:set("s", "a", 10)
    local v1, e1 = dogs:get_stamp("s")
    assert.is_number(v1)
    assert.is_true(e1 > 0)
    assert.same({ v1, e1 }, { dogs:get_stamp("s") })
    dogs:get("s")
    dogs:ttl("s")
    assert.same({ v1, e1 }, { dogs:get_stamp("s") })
    dogs:set("s", "a", 10) -- same value again: a new version
    local v2 = dogs:get_stamp("s")
    assert.not_equal(v1, v2)
    dogs:set("other", "x")
    assert.equal(v2, (dogs:get_stamp("s")))
    local _, e2 = dogs:get_stamp("other")
    assert.equal(0, e2)
    assert.same({ true }, { dogs:expire("s", 20) })
    local v3, e3 = dogs:get_stamp("s")
    assert.equal(v2, v3)
    assert.is_true(e3 > e1)
    dogs:delete("s")
    assert.is_nil(dogs:get_stamp("s"))
    dogs:set("s", "a", 10)
    assert.is_true((dogs:get_stamp("s")) > v2)
    dogs:set("n", 1)
    local n1 = dogs:get_stamp("n")
    dogs:incr("n", 1)
    assert.not_equal(n1, (dogs:get_stamp("n")))
    dogs:rpush("l", 1)
    local l1 = dogs:get_stamp("l")
    dogs:rpush("l", 2)
    local l2 = dogs:get_stamp("l")
    dogs:lpop("l")
    local l3 = dogs:get_stamp("l")
    assert.is_true(l1 ~= l2 and l2 ~= l3)
    dogs:set("e", "v", 0.01)
    sleep(0.03)
    assert.is_nil(dogs:get_stamp("e"))
    dogs:flush_all()
    assert.is_nil(dogs:get_stamp("n"))
    assert.same({ nil, "empty key" }, { dogs:get_stamp("") })
  end)

  it("flush_all expires everything, flush_expired frees", function()
    for i = 1, 10 do
      dogs:set("k" .. i, i)
    end
    assert.is_nil(dogs:flush_all())
    assert.is_nil(dogs:get("k1"))
    assert.same({ 1, nil, true }, { dogs:get_stale("k1") })
    assert.same({}, dogs:get_keys(0))
    local free = dogs:free_space()
    assert.equal(3, dogs:flush_expired(3))
    assert.equal(7, dogs:flush_expired())
    assert.equal(0, dogs:flush_expired(0))
    assert.is_true(dogs:free_space() > free)
  end)

  it("get_keys: 1024 by default, 0 for all, live keys only", function()
    for i = 1, 1100 do
      dogs:set("key" .. i, i)
    end
    dogs:set("gone", 1, 0.001)
    sleep(0.01)
    assert.equal(1024, #dogs:get_keys())
    assert.equal(1100, #dogs:get_keys(0))
    local keys = dogs:get_keys(2)
    assert.same({ "key1100", "key1099" }, keys)
    local seen = {}
    for _, k in ipairs(dogs:get_keys(0)) do
      seen[k] = true
    end
    assert.is_nil(seen.gone)
    assert.is_true(seen.key1 and seen.key550 and true)
    local bin = "a\0" .. ("z"):rep(300)
    dogs:flush_all()
    dogs:set(bin, 1)
    assert.same({ bin }, dogs:get_keys())
  end)

  it("capacity and free_space", function()
    assert.equal(1024 * 1024, dogs:capacity())
    assert.equal(32 * 1024, shared.small:capacity())
    dogs:flush_expired()
    local free = dogs:free_space()
    assert.is_true(free > 900 * 1024 and free < 1024 * 1024)
    dogs:set("x", ("x"):rep(10000))
    assert.is_true(dogs:free_space() <= free - 10000)
  end)

  it("evicts LRU entries when full: set is forcible, safe_* fail", function()
    local small = shared.small
    small:flush_all()
    small:flush_expired()
    local v = ("v"):rep(1000)
    local forced
    for i = 1, 100 do
      local ok, err, forcible = small:set("k" .. i, v)
      assert.is_true(ok, err)
      if forcible and not forced then
        forced = i
      end
      if i > 3 then
        small:get("k1")
      end
    end
    assert.is_number(forced)
    assert.is_nil(small:get("k2"))
    assert.equal(v, small:get("k1"))
    assert.equal(v, small:get("k100"))
    assert.same({ false, "no memory", false }, { small:safe_set("s", v) })
    assert.same({ false, "no memory", false }, { small:safe_add("s", v) })
    assert.same({ nil, "no memory" }, { small:lpush("l", v) })
    assert.same({ false, "no memory", false },
                { small:set("huge", ("h"):rep(64 * 1024)) })
    assert.equal(v, small:get("k100"))
    local _, _, forcible = small:set("one-more", v)
    assert.is_true(forcible)
    small:flush_all()
    assert.same({ true, nil, false }, { small:safe_set("s", v) })
    assert.same({ 1, nil, false }, { small:incr("n", 1, 0) })
  end)

  it("lists: push, pop, llen and type errors", function()
    assert.equal(1, dogs:lpush("l", "a"))
    assert.equal(2, dogs:rpush("l", 2))
    assert.equal(3, dogs:lpush("l", ("b"):rep(5000)))
    assert.equal(3, dogs:llen("l"))
    assert.same({ nil, "value is a list" }, { dogs:get("l") })
    assert.same({ nil, "not a number" }, { dogs:incr("l", 1) })
    assert.same({ false, "exists", false }, { dogs:add("l", 1) })
    assert.same({ "l" }, dogs:get_keys())
    assert.equal(("b"):rep(5000), dogs:lpop("l"))
    assert.equal(2, dogs:rpop("l"))
    assert.equal("a", dogs:rpop("l"))
    assert.same({ nil }, { dogs:lpop("l") })
    assert.equal(0, dogs:llen("l"))
    assert.same({ nil, "bad value type" }, { dogs:lpush("l", true) })
    assert.same({ nil, "bad value type" }, { dogs:rpush("l", nil) })
    dogs:set("s", "x")
    assert.same({ nil, "value not a list" }, { dogs:lpush("s", "a") })
    assert.same({ nil, "value not a list" }, { dogs:lpop("s") })
    assert.same({ nil, "value not a list" }, { dogs:llen("s") })
    dogs:rpush("l", 1)
    assert.is_true(dogs:set("l", "now a string"))
    assert.equal("now a string", dogs:get("l"))
    dogs:lpush("l2", 1)
    assert.is_true(dogs:delete("l2"))
    assert.equal(0, dogs:llen("l2"))
    dogs:lpush("l3", 1)
    dogs:flush_all()
    assert.equal(0, dogs:llen("l3"))
    assert.equal(1, dogs:rpush("l3", 9))
  end)

  it("hot paths compile (no NYI trace aborts in get/set/incr/get_stamp)",
     function()
    local traceerr = require("jit.vmdef").traceerr
    local nyi = {}
    local function on_trace(what, _, _, _, code, extra)
      if what == "abort" then
        local msg = traceerr[code] or tostring(code)
        if msg:find("NYI", 1, true) then
          nyi[#nyi + 1] = msg:format(extra)
        end
      end
    end
    jit.attach(on_trace, "trace")
    jit.flush()
    local d = dogs
    local sum = 0
    for i = 1, 2000 do
      d:set("k", i)
      sum = sum + d:get("k")
      d:incr("n", 1, 0)
      d:set("s", "value", 10, 3)
      if d:get("s") ~= "value" then
        sum = 0
      end
      d:get_stale("s")
      if d:get_stamp("s") == nil then
        sum = 0
      end
      d:lpush("l", i)
      d:rpop("l")
    end
    jit.attach(on_trace)
    assert.equal(2000 * 2001 / 2, sum)
    assert.same({}, nyi)
  end)
end)
