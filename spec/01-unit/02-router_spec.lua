local router = require("luagate.router")

-- Compiles routes and returns "route:path" labels in rank order.
local function order(routes)
  local out = {}
  for i, e in ipairs(router.compile({ routes = routes })) do
    out[i] = e.route .. ":" .. (e.regex and "~" or "") .. tostring(e.path)
  end
  return out
end

describe("luagate.router.compile", function()
  it("returns an empty list for odd input", function()
    assert.same({}, router.compile(nil))
    assert.same({}, router.compile({}))
    assert.same({}, router.compile({ routes = "x" }))
    assert.same({}, router.compile({ routes = { 1, "a", false } }))
  end)

  it("gives one entry per path and one for a route without paths", function()
    local entries = router.compile({ routes = {
      { paths = { "/a", "/b" }, strip_path = true },
      { methods = { "GET" } },
    } })
    assert.equal(3, #entries)
    assert.same({ "0:/a", "0:/b", "1:nil" }, order({
      { paths = { "/a", "/b" } },
      { methods = { "GET" } },
    }))
  end)

  it("builds the documented entry shape", function()
    local entries = router.compile({ routes = {
      { name = "r", hosts = { "A.com", "*.b.com" }, methods = { "get" },
        headers = { ["X-Foo"] = { "a", "b" }, ["x-bar"] = "c" },
        paths = { "~/u/(\\d+)" } },
    } })
    assert.same({
      route = 0,
      path = "/u/(\\d+)",
      regex = true,
      hosts = { "a.com", "*.b.com" },
      methods = { "GET" },
      headers = {
        { name = "x-bar", values = { "c" } },
        { name = "x-foo", values = { "a", "b" } },
      },
    }, entries[1])
  end)

  it("treats empty arrays as absent", function()
    local e = router.compile({ routes = {
      { paths = {}, hosts = {}, methods = {}, headers = {} },
    } })[1]
    assert.is_nil(e.path)
    assert.is_nil(e.hosts)
    assert.is_nil(e.methods)
    assert.is_nil(e.headers)
    assert.is_false(e.regex)
  end)

  it("ranks longer plain prefixes first", function()
    assert.same({ "1:/a/b", "2:/a", "0:/" }, order({
      { paths = { "/" } },
      { paths = { "/a/b" } },
      { paths = { "/a" } },
    }))
  end)

  it("ranks regex paths before plain ones, by regex_priority", function()
    assert.same({ "2:~/x", "1:~/y", "3:~/z", "0:/very/long/plain" }, order({
      { paths = { "/very/long/plain" } },
      { paths = { "~/y" }, regex_priority = 1 },
      { paths = { "~/x" }, regex_priority = 10 },
      { paths = { "~/z" } },
    }))
  end)

  it("ranks by match weight first", function()
    assert.same({ "2:/", "1:~/r", "0:/long/path" }, order({
      { paths = { "/long/path" } },
      { paths = { "~/r" }, regex_priority = 100 },
      { paths = { "/" }, methods = { "GET" } },
    }))
    -- hosts + methods + headers + paths = 4 beats any 3
    assert.same({ "1:/", "0:/a" }, order({
      { paths = { "/a" }, hosts = { "a.com" }, methods = { "GET" } },
      { paths = { "/" }, hosts = { "a.com" }, methods = { "GET" },
        headers = { ["x-a"] = { "1" } } },
    }))
  end)

  it("ranks plain hosts before wildcard hosts and no hosts", function()
    -- Kong's PLAIN_HOST_ONLY bit: only routes that have hosts, all plain;
    -- the other two tie on it and go by path length
    assert.same({ "1:/", "0:/longer", "2:/" }, order({
      { hosts = { "a.com", "*.b.com" }, paths = { "/longer" } },
      { hosts = { "a.com" }, paths = { "/" } },
      { methods = { "GET" }, paths = { "/" } },
    }))
    -- a host-only route beats a path-only route (both weigh 1)
    assert.same({ "1:nil", "0:/a" }, order({
      { paths = { "/a" } },
      { hosts = { "a.com" } },
    }))
  end)

  it("ranks more headers first", function()
    assert.same({ "1:/", "0:/longer" }, order({
      { headers = { ["x-a"] = { "1" } }, paths = { "/longer" } },
      { headers = { ["x-a"] = { "1" }, ["x-b"] = { "2" } }, paths = { "/" } },
    }))
  end)

  it("checks wildcard before header count", function()
    assert.same({ "1:/", "0:/" }, order({
      { hosts = { "*.a.com" }, paths = { "/" },
        headers = { ["x-a"] = { "1" }, ["x-b"] = { "2" } } },
      { hosts = { "a.com" }, headers = { ["x-a"] = { "1" } }, paths = { "/" } },
    }))
  end)

  it("breaks ties by route order, then path order", function()
    assert.same({ "0:/b", "0:/a", "1:/a", "1:/b" }, order({
      { paths = { "/b", "/a" } },
      { paths = { "/a", "/b" } },
    }))
  end)

  it("ranks a path-less route after prefixes of the same weight", function()
    assert.same({ "1:/", "0:nil" }, order({
      { hosts = { "a.com" }, methods = { "GET" } },
      { hosts = { "a.com" }, paths = { "/" } },
    }))
  end)

  it("does not share tables between entries or with the config", function()
    local hosts = { "a.com" }
    local entries = router.compile({ routes = {
      { hosts = hosts, paths = { "/a", "/b" } },
    } })
    assert.are_not.equal(hosts, entries[1].hosts)
    assert.are_not.equal(entries[1].hosts, entries[2].hosts)
  end)

  it("drops unusable values without crashing", function()
    local entries = router.compile({ routes = {
      { paths = { 1, "", "/ok" }, hosts = { false, "h.com" },
        methods = { {}, "GET" }, regex_priority = "high",
        headers = { ["x-a"] = { 1, "v" }, [3] = { "z" } } },
      { paths = { 1 } },
    } })
    assert.equal(1, #entries)
    assert.equal("/ok", entries[1].path)
    assert.same({ "h.com" }, entries[1].hosts)
    assert.same({ "GET" }, entries[1].methods)
    assert.same({ { name = "x-a", values = { "v" } } }, entries[1].headers)
  end)
end)
