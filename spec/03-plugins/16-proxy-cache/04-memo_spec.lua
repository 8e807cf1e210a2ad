-- proxy-cache hits answered by the runtime's answer memos (runtime/src/
-- memo.c, kong.response.exit_packed's memo): on a route where proxy-cache
-- is the only plugin, a memory-strategy hit lets the runtime answer the
-- next identical requests in C. Through the real binary (1 worker, so that
-- the worker that made a memo is the one that answers) and the mock
-- upstream, which echoes X-Gen, a header outside the cache key: a body
-- tells which upstream response filled the entry. luagate_memo_answers_total
-- (GET /metrics) counts the requests the memos answered.
local helpers = require "spec.helpers"

local fmt = string.format


local function config(mock_port, extra_routes)
  local function route(name, pc, others)
    pc.strategy = pc.strategy or "memory"
    local plugins = { { name = "proxy-cache", config = pc } }
    for _, p in ipairs(others or {}) do
      plugins[#plugins + 1] = p
    end
    return { name = name, paths = { "/" .. name }, strip_path = true,
             plugins = plugins }
  end
  local routes = {
    route("memo", {}),
    route("quiet", { response_headers = { age = false,
                                          ["X-Cache-Status"] = false,
                                          ["X-Cache-Key"] = false } }),
    route("short", { cache_ttl = 1, storage_ttl = 60 }),
    route("aging", { cache_ttl = 30 }),
    route("vary", { vary_headers = { "X-Tenant" } }),
    route("cc", { cache_control = true }),
    route("withrt", {}, { { name = "response-transformer",
                            config = { add = { headers = { "X-Rt:1" } } } } }),
  }
  for _, r in ipairs(extra_routes or {}) do
    routes[#routes + 1] = r
  end
  return {
    _format_version = "3.0",
    services = {
      { name = "mock", url = fmt("http://127.0.0.1:%d", mock_port),
        routes = routes },
    },
  }
end


describe("proxy-cache answer memos", function()
  local mock, gw

  -- a query argument no other test uses
  local function uniq()
    return helpers.unique("t=")
  end

  -- requests the memos answered so far
  local function memo_answers()
    return helpers.metric(gw, "luagate_memo_answers_total")
  end

  -- one request on a raw connection: the response as read, headers in
  -- their order (raw_headers), and the body the upstream echoed
  local function get(path, headers, method)
    local c = assert(helpers.raw_connect(gw.proxy_port))
    local lines = { fmt("%s %s HTTP/1.1", method or "GET", path),
                    "Host: memo.test" }
    for name, value in pairs(headers or {}) do
      lines[#lines + 1] = name .. ": " .. value
    end
    assert(c:send(table.concat(lines, "\r\n") .. "\r\n\r\n"))
    local res = assert(helpers.read_response(c.sock, method or "GET"))
    c.sock:close()
    local echo = res.body ~= "" and helpers.json_decode(res.body) or nil
    res.gen = echo and echo.headers["x-gen"]
    res.cache = res.headers["x-cache-status"]
    return res
  end

  -- a request, and how many of the memos' answers it was (0 or 1)
  local function counted(path, headers, method)
    local before = memo_answers()
    local res = get(path, headers, method)
    return res, memo_answers() - before
  end

  lazy_setup(function()
    mock = helpers.mock_upstream()
    gw = assert(helpers.start_luagate({
      config = config(mock.port),
      workers = 1,
    }))
  end)

  lazy_teardown(function()
    helpers.stop_luagate(gw)
    mock:stop()
  end)

  it("answers repeated hits itself, with the plugin's exact response",
     function()
    local path = "/quiet/request?" .. uniq()
    local miss, n0 = counted(path, { ["X-Gen"] = "1" })
    assert.equal(200, miss.status)
    assert.equal("1", miss.gen)
    assert.equal(0, n0)
    -- the plugin's hit makes the memo, the next ones come from it
    local hit, n1 = counted(path, { ["X-Gen"] = "2" })
    assert.equal(0, n1)
    assert.equal("1", hit.gen)
    for _ = 1, 3 do
      local again, n = counted(path, { ["X-Gen"] = "3" })
      assert.equal(1, n)
      assert.equal(hit.status, again.status)
      assert.equal(hit.reason, again.reason)
      assert.same(hit.raw_headers, again.raw_headers) -- names, values, order
      assert.equal(hit.body, again.body)
    end
    -- the access log has the memos' answers as the others
    helpers.wait_until(function()
      local n = 0
      for _, e in ipairs(helpers.access_log_entries(gw)) do
        if e.path == "/quiet/request" and e.status == 200 and
           e.route == "quiet" then
          n = n + 1
        end
      end
      return n == 5
    end, 5, 0.1)
  end)

  it("sends the Age the plugin would, counted from the entry's store",
     function()
    local path = "/aging/request?" .. uniq()
    assert.equal("Miss", get(path).cache)
    local hit = get(path)
    assert.equal("Hit", hit.cache)
    assert.equal("0", hit.headers["age"])
    helpers.wait_until(function()
      return get(path).headers["age"] == "1"
    end, 5, 0.2)
    local res, n = counted(path)
    assert.equal(1, n)
    assert.equal("Hit", res.cache)
    assert.truthy(res.headers["age"] == "1" or res.headers["age"] == "2")
  end)

  it("stops at the entry's cache_ttl: the plugin refreshes it", function()
    local path = "/short/request?" .. uniq()
    assert.equal("Miss", get(path, { ["X-Gen"] = "1" }).cache)
    assert.equal("Hit", get(path).cache)
    local _, n = counted(path)
    assert.equal(1, n)
    helpers.wait_until(function()
      return get(path, { ["X-Gen"] = "2" }).cache == "Refresh"
    end, 5, 0.2)
    local res = get(path)
    assert.equal("Hit", res.cache)
    assert.equal("2", res.gen)
  end)

  it("ends with the entry: a purge of the key or of all entries", function()
    local path = "/memo/request?" .. uniq()
    local miss = get(path, { ["X-Gen"] = "1" })
    assert.equal("Miss", miss.cache)
    get(path)
    local _, n = counted(path)
    assert.equal(1, n)

    local admin = assert(helpers.admin_client(gw))
    local res = assert(admin:send({ method = "DELETE",
      path = "/proxy-cache/" .. miss.headers["x-cache-key"] }))
    assert.equal(204, res.status)
    local after, n2 = counted(path, { ["X-Gen"] = "2" })
    assert.equal(0, n2)
    assert.equal("Miss", after.cache)
    assert.equal("2", after.gen)

    get(path)
    local again, n3 = counted(path)
    assert.equal(1, n3)
    assert.equal("2", again.gen)
    res = assert(admin:send({ method = "DELETE", path = "/proxy-cache" }))
    admin:close()
    assert.equal(204, res.status)
    local last, n4 = counted(path, { ["X-Gen"] = "3" })
    assert.equal(0, n4)
    assert.equal("Miss", last.cache)
    assert.equal("3", last.gen)
  end)

  it("answers only requests with the same method, target and vary_headers",
     function()
    local path = "/vary/request?" .. uniq()
    local a = { ["X-Tenant"] = "a", ["X-Gen"] = "a" }
    assert.equal("Miss", get(path, a).cache)
    get(path, a)
    local _, n = counted(path, a)
    assert.equal(1, n)
    -- another tenant, no tenant: their own entries, never the memo's
    local b, nb = counted(path, { ["X-Tenant"] = "b", ["X-Gen"] = "b" })
    assert.equal(0, nb)
    assert.equal("Miss", b.cache)
    assert.equal("b", b.gen)
    local none, nn = counted(path, { ["X-Gen"] = "none" })
    assert.equal(0, nn)
    assert.equal("Miss", none.cache)
    -- the header's name in another case is the same header
    local same, ns = counted(path, { ["x-tenant"] = "a" })
    assert.equal("a", same.gen)
    assert.equal("Hit", same.cache)
    assert.equal(1, ns)
    -- another target (a query argument more), another method
    local q, nq = counted(path .. "&x=1", a)
    assert.equal(0, nq)
    assert.equal("Miss", q.cache)
    local head, nh = counted(path, a, "HEAD")
    assert.equal(0, nh)
    assert.equal("Miss", head.cache)
  end)

  it("answers HEAD from a HEAD memo without a body", function()
    local path = "/memo/request?" .. uniq()
    assert.equal("Miss", get(path, nil, "HEAD").cache)
    local hit = get(path, nil, "HEAD")
    assert.equal("Hit", hit.cache)
    local res, n = counted(path, nil, "HEAD")
    assert.equal(1, n)
    assert.equal("", res.body)
    assert.equal(hit.headers["content-length"], res.headers["content-length"])
  end)

  it("says Connection: close and closes when the client asked", function()
    local path = "/memo/request?" .. uniq()
    get(path)
    for i = 1, 3 do -- the plugin's hit, then the memo's
      local c = assert(helpers.raw_connect(gw.proxy_port))
      local before = memo_answers()
      assert(c:send("GET " .. path .. " HTTP/1.1\r\nHost: memo.test\r\n" ..
                    "Connection: close\r\n\r\n"))
      local res = assert(helpers.read_response(c.sock, "GET"))
      assert.equal("Hit", res.headers["x-cache-status"])
      assert.equal("close", res.headers["connection"])
      local more, err = c.sock:receive(1)
      assert.is_nil(more)
      assert.equal("closed", err)
      c.sock:close()
      assert.equal(i == 1 and 0 or 1, memo_answers() - before)
    end
  end)

  it("leaves a request with a body to the plugin", function()
    local path = "/memo/request?" .. uniq()
    get(path)
    get(path)
    local _, n = counted(path)
    assert.equal(1, n)
    local empty, nb = counted(path, { ["Content-Length"] = "0" })
    assert.equal(1, nb) -- an empty body is no body
    assert.equal("Hit", empty.cache)
    local c = assert(helpers.raw_connect(gw.proxy_port))
    local before = memo_answers()
    assert(c:send("GET " .. path .. " HTTP/1.1\r\nHost: memo.test\r\n" ..
                  "Content-Length: 3\r\n\r\nabc"))
    local res = assert(helpers.read_response(c.sock, "GET"))
    c.sock:close()
    assert.equal(200, res.status)
    assert.equal("Hit", res.headers["x-cache-status"])
    assert.equal(before, memo_answers())
  end)

  -- a Miss, then hits that all come from the plugin, each with header
  -- name's value
  local function plugin_hits_only(path, name, value)
    assert.equal("Miss", get(path).cache)
    for _ = 1, 3 do
      local res, n = counted(path)
      assert.equal(0, n)
      assert.equal("Hit", res.cache)
      assert.equal(value, res.headers[name])
    end
  end

  it("makes no memo where another plugin runs", function()
    -- its header_filter ran
    plugin_hits_only("/withrt/request?" .. uniq(), "x-rt", "1")
  end)

  it("makes no memo of an answer with grpc-status", function()
    -- the runtime reads it from an exit for the logs and metrics
    plugin_hits_only("/memo/response-headers?grpc-status=0&" .. uniq(),
                     "grpc-status", "0")
  end)

  describe("with cache_control", function()
    local function cc_path()
      return "/cc/response-headers?Cache-Control=max-age%3D60&" .. uniq()
    end

    it("answers requests without Cache-Control, Pragma or Authorization",
       function()
      local path = cc_path()
      assert.equal("Miss", get(path, { ["X-Gen"] = "1" }).cache)
      get(path)
      local _, n = counted(path)
      assert.equal(1, n)
      for _, h in ipairs({ { ["Cache-Control"] = "max-age=100" },
                           { ["Pragma"] = "x" },
                           { ["Authorization"] = "Basic eDp5" } }) do
        local _, nh = counted(path, h)
        assert.equal(0, nh)
      end
    end)

    it("serves what a request's no-cache refreshed next", function()
      local path = cc_path()
      assert.equal("Miss", get(path, { ["X-Gen"] = "1" }).cache)
      get(path)
      local res, n = counted(path)
      assert.equal(1, n)
      assert.equal("1", res.gen)
      local fresh = get(path, { ["Cache-Control"] = "no-cache",
                                ["X-Gen"] = "2" })
      assert.equal("Refresh", fresh.cache)
      assert.equal("2", fresh.gen)
      -- the memo of the old entry is over: the plugin serves the new one
      local after, n2 = counted(path)
      assert.equal(0, n2)
      assert.equal("Hit", after.cache)
      assert.equal("2", after.gen)
      local again, n3 = counted(path)
      assert.equal(1, n3)
      assert.equal("2", again.gen)
    end)

    it("keeps the variants of the response's Vary apart", function()
      local path = "/cc/response-headers?Cache-Control=max-age%3D60&" ..
                   "Vary=Accept-Language&" .. uniq()
      local en = { ["Accept-Language"] = "en", ["X-Gen"] = "en" }
      local fr = { ["Accept-Language"] = "fr", ["X-Gen"] = "fr" }
      assert.equal("Miss", get(path, en).cache)
      get(path, en)
      local res, n = counted(path, en)
      assert.equal(1, n)
      assert.equal("en", res.gen)
      local other, nf = counted(path, fr)
      assert.equal(0, nf)
      assert.equal("fr", other.gen)
      get(path, fr)
      local back, nb = counted(path, fr)
      assert.equal(1, nb)
      assert.equal("fr", back.gen)
    end)
  end)

  it("starts again empty after a reload", function()
    local path = "/memo/request?" .. uniq()
    get(path)
    get(path)
    local _, n = counted(path)
    assert.equal(1, n)
    -- the same routes and one more: a new configuration
    assert.is_true(helpers.reload_luagate(gw, config(mock.port, {
      { name = "extra", paths = { "/extra" } } })))
    local hit, n1 = counted(path)
    assert.equal("Hit", hit.cache) -- the entry outlives the configuration
    assert.equal(0, n1)            -- its memo does not
    local _, n2 = counted(path)
    assert.equal(1, n2)
  end)
end)


-- entries in Redis change on other nodes, where no stamp can tell: the
-- redis strategy's hits always come from the plugin
describe("proxy-cache answer memos with the redis strategy", function()
  local mock, redis, gw

  lazy_setup(function()
    mock = helpers.mock_upstream()
    redis = helpers.redis()
    gw = assert(helpers.start_luagate({
      config = {
        _format_version = "3.0",
        services = {
          { name = "mock", url = fmt("http://127.0.0.1:%d", mock.port),
            routes = {
              { name = "redis", paths = { "/redis" }, strip_path = true,
                plugins = { { name = "proxy-cache", config = {
                  strategy = "redis",
                  redis = { host = "127.0.0.1", port = redis.port } } } } },
            } },
        },
      },
      workers = 1,
    }))
  end)

  lazy_teardown(function()
    helpers.stop_luagate(gw)
    redis:stop()
    mock:stop()
  end)

  it("makes none", function()
    local path = "/redis/request?t=" .. math.floor(helpers.gettime() * 1000)
    local statuses = {}
    for i = 1, 4 do
      local res = assert(helpers.request_once(gw.proxy_port, { path = path }))
      assert.equal(200, res.status)
      statuses[i] = res.headers["x-cache-status"]
    end
    assert.same({ "Miss", "Hit", "Hit", "Hit" }, statuses)
    local res = assert(helpers.request_once(gw.admin_port,
                                            { path = "/metrics" }))
    assert.equal("0", res.body:match("\nluagate_memo_answers_total (%d+)\n"))
  end)
end)
