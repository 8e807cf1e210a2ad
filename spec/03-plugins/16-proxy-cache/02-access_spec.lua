-- proxy-cache through the real binary (2 workers), the mock upstream and
-- redis: Miss / Hit / Refresh / Bypass / Stale and their headers, the
-- cache key (Kong's composition), both strategies, vary_query_params and
-- vary_headers, ignore_uri_case, response_headers, content types, HEAD,
-- cache_control (freshness, no-store, private, no-cache, max-age,
-- max-stale, min-fresh, only-if-cached, Vary, stale-if-error), request
-- coalescing, a store that is down or missing, and the purge functions of
-- api.lua (through the proxy-cache-fixture test plugin).
local helpers = require "spec.helpers"
local codec = require "luagate.ngx.codec"

local fmt = string.format
local PLUGINS_DIR = helpers.root .. "/spec/03-plugins/16-proxy-cache/plugins"

local ROUTE_IDS = {
  memory = "a0000000-0000-4000-8000-000000000001",
  redis = "a0000000-0000-4000-8000-000000000002",
  auth = "a0000000-0000-4000-8000-000000000003",
}
local PLUGIN_IDS = {
  memory = "b0000000-0000-4000-8000-000000000001",
  redis = "b0000000-0000-4000-8000-000000000002",
}
local ALICE_ID = "c0000000-0000-4000-8000-000000000001"
local BOB_ID = "c0000000-0000-4000-8000-000000000002"


local function sha256_hex(s)
  return codec.to_hex(codec.sha256_bin(s))
end


local function config(mock_port, redis_port, down_port)
  local redis_conf = { host = "127.0.0.1", port = redis_port }
  local fixture = { name = "proxy-cache-fixture",
                    config = { mode = "fail", down_port = down_port } }
  local function route(name, pc_conf, extra)
    local plugins = {}
    if pc_conf then
      pc_conf.strategy = pc_conf.strategy or "memory"
      plugins[1] = { name = "proxy-cache", config = pc_conf,
                     id = PLUGIN_IDS[name] }
    end
    for _, p in ipairs(extra or {}) do
      plugins[#plugins + 1] = p
    end
    return { name = name, id = ROUTE_IDS[name], paths = { "/" .. name },
             strip_path = true, plugins = plugins }
  end
  return {
    _format_version = "3.0",
    services = {
      { name = "mock", url = fmt("http://127.0.0.1:%d", mock_port),
        routes = {
          route("memory", {}),
          route("redis", { strategy = "redis", redis = redis_conf }),
          route("short", { cache_ttl = 1, storage_ttl = 60 }),
          route("vary", { vary_query_params = { "a" },
                          vary_headers = { "X-Tenant" } }),
          route("case", { ignore_uri_case = true }),
          route("quiet", { response_headers = {
            age = false, ["X-Cache-Status"] = false,
            ["X-Cache-Key"] = false } }),
          route("post", { request_method = { "POST" } }),
          route("ctwild", { content_type = { "application/*" } }),
          route("ctparams", {
            content_type = { "application/json; charset=utf-8" } }),
          route("auth", {}, { { name = "key-auth" } }),
          route("cc", { cache_control = true }, { fixture }),
          route("ccstore", { cache_control = true, storage_ttl = 60 },
                { fixture }),
          route("ccredis", { cache_control = true, strategy = "redis",
                             redis = redis_conf }, { fixture }),
          route("nodict", { memory = { dictionary_name = "nope" } }),
          route("redisdown", { strategy = "redis",
                               redis = { host = "127.0.0.1",
                                         port = down_port } }),
          route("nocoalesce", { coalesce_timeout = 0 }),
          route("_admin", nil, { { name = "proxy-cache-fixture",
                                   config = { mode = "admin" } } }),
        } },
    },
    consumers = {
      { id = ALICE_ID, username = "alice",
        keyauth_credentials = { { key = "alice-key" } } },
      { id = BOB_ID, username = "bob",
        keyauth_credentials = { { key = "bob-key" } } },
    },
  }
end


describe("proxy-cache", function()
  local mock, redis, gw, client

  -- a query argument no other test uses
  local function uniq()
    return helpers.unique("t=")
  end


  local function get(path, headers, method)
    local res = assert(client:send({ method = method or "GET", path = path,
                                     headers = headers }))
    return res
  end

  local function cache_status(res)
    return res.headers["x-cache-status"]
  end

  local function admin(query)
    local res = get("/_admin?" .. query)
    assert.res_status(200, res)
    return assert(helpers.json_decode(res.body))
  end

  lazy_setup(function()
    mock = helpers.mock_upstream()
    redis = helpers.redis()
    gw = assert(helpers.start_luagate({
      config = config(mock.port, redis.port, helpers.get_free_port()),
      workers = 2,
      args = { "--plugins-dir", PLUGINS_DIR },
    }))
  end)

  lazy_teardown(function()
    if gw then helpers.stop_luagate(gw) end
    if redis then redis.stop() end
    if mock then mock.stop() end
  end)

  before_each(function()
    client = helpers.proxy_client(gw)
  end)

  after_each(function()
    if client then client:close() end
  end)

  for _, strategy in ipairs({ "memory", "redis" }) do
    describe("strategy " .. strategy, function()
      local base = "/" .. strategy

      it("misses, then hits with Age, X-Cache-Status and X-Cache-Key",
         function()
        local q = uniq()
        local res = get(base .. "/request?" .. q)
        local body = assert.res_status(200, res)
        assert.equal("Miss", cache_status(res))
        assert.is_nil(res.headers["age"])
        local key = sha256_hex(ROUTE_IDS[strategy] .. "|GET|" .. base ..
                               "/request|" .. q .. "|")
        assert.equal(key, res.headers["x-cache-key"])

        local hit
        helpers.wait_until(function()
          hit = get(base .. "/request?" .. q)
          return cache_status(hit) == "Hit"
        end, 5)
        assert.equal(body, assert.res_status(200, hit))
        assert.equal(key, hit.headers["x-cache-key"])
        assert.equal("application/json", hit.headers["content-type"])
        assert.equal(res.headers["x-mock-connection-id"],
                     hit.headers["x-mock-connection-id"])
        assert.equal(tostring(#body), hit.headers["content-length"])
        assert.truthy(tonumber(hit.headers["age"]))

        -- Age grows while the entry is served
        helpers.wait_until(function()
          hit = get(base .. "/request?" .. q)
          return cache_status(hit) == "Hit" and
                 tonumber(hit.headers["age"]) >= 1
        end, 5)
        assert.equal(body, hit.body)
        assert.equal(1, mock.count("/request?" .. q))
      end)

      it("keys arguments in any order, and tells values apart", function()
        local q = uniq()
        assert.equal("Miss", cache_status(get(base .. "/request?" .. q ..
                                              "&a=1&b=2")))
        helpers.wait_until(function()
          return cache_status(get(base .. "/request?b=2&" .. q ..
                                  "&a=1")) == "Hit"
        end, 5)
        assert.equal("Miss", cache_status(get(base .. "/request?" .. q ..
                                              "&a=1&b=3")))
        assert.equal("Miss", cache_status(get(base .. "/other?" .. q ..
                                              "&a=1&b=2")))
      end)

      it("bypasses a method that is not cacheable", function()
        local q = uniq()
        for _ = 1, 2 do
          local res = get(base .. "/request?" .. q, nil, "POST")
          assert.res_status(200, res)
          assert.equal("Bypass", cache_status(res))
          assert.is_nil(res.headers["x-cache-key"])
        end
        assert.equal(2, mock.count("/request?" .. q))
      end)

      it("bypasses a status that is not cacheable, caches a 404", function()
        local q = uniq()
        for _ = 1, 2 do
          local res = get(base .. "/status/201?" .. q)
          assert.res_status(201, res)
          assert.equal("Bypass", cache_status(res))
          assert.truthy(res.headers["x-cache-key"])
        end
        assert.equal(2, mock.count("/status/201?" .. q))

        local res = get(base .. "/status/404?" .. q)
        local body = assert.res_status(404, res)
        assert.equal("Miss", cache_status(res))
        helpers.wait_until(function()
          res = get(base .. "/status/404?" .. q)
          return cache_status(res) == "Hit"
        end, 5)
        assert.equal(body, assert.res_status(404, res))
        assert.equal(1, mock.count("/status/404?" .. q))
      end)

      it("bypasses a content type that is not cacheable", function()
        local q = uniq()
        for _ = 1, 2 do
          local res = get(base .. "/bytes/16?" .. q)
          assert.equal("abcdefghijklmnop", assert.res_status(200, res))
          assert.equal("Bypass", cache_status(res))
        end
        assert.equal(2, mock.count("/bytes/16?" .. q))
      end)

      it("caches HEAD apart from GET", function()
        local q = uniq()
        local res = get(base .. "/request?" .. q, nil, "HEAD")
        assert.res_status(200, res)
        assert.equal("Miss", cache_status(res))
        helpers.wait_until(function()
          res = get(base .. "/request?" .. q, nil, "HEAD")
          return cache_status(res) == "Hit"
        end, 5)
        assert.equal("", res.body or "")
        res = get(base .. "/request?" .. q)
        assert.equal("Miss", cache_status(res))
        assert.equal("GET", assert.response(res).has.jsonbody().method)
      end)

      it("coalesces concurrent misses of a key into one upstream request",
         function()
        local q = uniq()
        local path = base .. "/delay/0.5?" .. q
        local conns = {}
        for i = 1, 10 do
          conns[i] = assert(helpers.raw_connect(gw.proxy_port))
        end
        for i = 1, 10 do
          assert(conns[i]:send(helpers.build_request({ path = path },
                                                     "localhost")))
        end
        local statuses = {}
        local bodies = {}
        for i = 1, 10 do
          local res = assert(conns[i]:read_response("GET"))
          conns[i]:close()
          bodies[assert.res_status(200, res)] = true
          local s = cache_status(res)
          statuses[s] = (statuses[s] or 0) + 1
        end
        assert.same({ Miss = 1, Hit = 9 }, statuses)
        local n = 0
        for _ in pairs(bodies) do n = n + 1 end
        assert.equal(1, n)
        assert.equal(1, mock.count("/delay/0.5?" .. q))
      end)

      it("purges entries with api.lua", function()
        local q1, q2 = uniq(), uniq()
        local r1 = get(base .. "/request?" .. q1)
        local k1 = r1.headers["x-cache-key"]
        local r2 = get(base .. "/request?" .. q2)
        local k2 = r2.headers["x-cache-key"]
        helpers.wait_until(function()
          return cache_status(get(base .. "/request?" .. q1)) == "Hit" and
                 cache_status(get(base .. "/request?" .. q2)) == "Hit"
        end, 5)

        local out = admin("op=lookup&key=" .. k1)
        assert.equal(PLUGIN_IDS[strategy], out.plugin_id)
        assert.equal(200, out.ok.status)
        assert.equal(r1.body, out.ok.body)
        assert.equal(#r1.body, out.ok.body_len)
        assert.equal(300, out.ok.ttl)
        out = admin("op=lookup&key=" .. k1 .. "&plugin_id=" ..
                    PLUGIN_IDS[strategy])
        assert.equal(200, out.ok.status)

        local pid = "&plugin_id=" .. PLUGIN_IDS[strategy]
        assert.same({ ok = true }, admin("op=purge&key=" .. k1))
        assert.same({ err = "not found" }, admin("op=lookup&key=" .. k1 ..
                                                 pid))
        assert.same({ err = "not found" }, admin("op=purge&key=" .. k1 ..
                                                 pid))
        assert.equal("Miss", cache_status(get(base .. "/request?" .. q1)))
        assert.equal("Hit", cache_status(get(base .. "/request?" .. q2)))

        -- purge_all of this instance only
        out = admin("op=purge_all" .. pid)
        assert.is_true(out.ok >= 1)
        assert.is_nil(out.err)
        assert.same({ err = "not found" }, admin("op=lookup&key=" .. k2 ..
                                                 pid))
        assert.equal("Miss", cache_status(get(base .. "/request?" .. q2)))
      end)
    end)
  end

  it("purge_all of one instance leaves the others' entries", function()
    local q = uniq()
    get("/memory/request?" .. q)
    get("/redis/request?" .. q)
    helpers.wait_until(function()
      return cache_status(get("/memory/request?" .. q)) == "Hit" and
             cache_status(get("/redis/request?" .. q)) == "Hit"
    end, 5)
    local out = admin("op=purge_all&plugin_id=" .. PLUGIN_IDS.redis)
    assert.is_true(out.ok >= 1)
    assert.equal("Hit", cache_status(get("/memory/request?" .. q)))
    assert.equal("Miss", cache_status(get("/redis/request?" .. q)))
    -- every instance
    helpers.wait_until(function()
      return cache_status(get("/redis/request?" .. q)) == "Hit"
    end, 5)
    out = admin("op=purge_all")
    assert.is_true(out.ok >= 2)
    -- the store that is down is reported, the others purged
    assert.equal("could not scan Redis: Connection refused", out.err)
    assert.equal("Miss", cache_status(get("/memory/request?" .. q)))
    assert.equal("Miss", cache_status(get("/redis/request?" .. q)))
    -- a key no reachable store has: the unreachable one's error
    out = admin("op=lookup&key=nope")
    assert.equal("could not read the cache entry from Redis: " ..
                 "Connection refused", out.err)
    -- a key must be given
    out = admin("op=bad_key")
    assert.is_false(out.ok)
    assert.matches("cache_key must be a non-empty string", out.err,
                   nil, true)
  end)

  it("refreshes an entry older than cache_ttl (kept by storage_ttl)",
     function()
    local q = uniq()
    assert.equal("Miss", cache_status(get("/short/request?" .. q)))
    helpers.wait_until(function()
      return cache_status(get("/short/request?" .. q)) == "Hit"
    end, 5)
    local res
    helpers.wait_until(function()
      res = get("/short/request?" .. q)
      return cache_status(res) == "Refresh"
    end, 5)
    assert.res_status(200, res)
    assert.equal(2, mock.count("/request?" .. q))
    helpers.wait_until(function()
      return cache_status(get("/short/request?" .. q)) == "Hit"
    end, 5)
  end)

  it("keys vary_query_params and vary_headers only", function()
    local q = uniq()
    local function status_of(query, headers)
      return cache_status(get("/vary/request?" .. query, headers))
    end
    assert.equal("Miss", status_of("a=" .. q .. "&b=1"))
    helpers.wait_until(function()
      -- b is not part of the key
      return status_of("a=" .. q .. "&b=2") == "Hit"
    end, 5)
    assert.equal("Hit", status_of("b=3&a=" .. q))
    assert.equal("Miss", status_of("a=" .. q .. "x"))
    -- headers: X-Tenant only, any case
    assert.equal("Miss", status_of("a=" .. q, { ["X-Tenant"] = "t1" }))
    assert.equal("Miss", status_of("a=" .. q, { ["X-Tenant"] = "t2" }))
    helpers.wait_until(function()
      return status_of("a=" .. q, { ["x-tenant"] = "t1",
                                    ["X-Other"] = "o" }) == "Hit"
    end, 5)
    assert.equal("Hit", status_of("a=" .. q, { ["X-TENANT"] = "t2" }))
  end)

  it("lowercases the path with ignore_uri_case", function()
    local q = uniq()
    assert.equal("Miss", cache_status(get("/case/Request?" .. q)))
    helpers.wait_until(function()
      return cache_status(get("/case/REQUEST?" .. q)) == "Hit"
    end, 5)
    -- and tells cases apart without it
    assert.equal("Miss", cache_status(get("/memory/Request?" .. q)))
    assert.equal("Miss", cache_status(get("/memory/REQUEST?" .. q)))
  end)

  it("leaves out the headers response_headers turns off", function()
    local q = uniq()
    -- the memory strategy stores before the last byte goes out: the next
    -- request finds the entry
    for _ = 1, 3 do
      local res = get("/quiet/request?" .. q)
      assert.res_status(200, res)
      assert.is_nil(res.headers["x-cache-status"])
      assert.is_nil(res.headers["x-cache-key"])
      assert.is_nil(res.headers["age"])
    end
    -- served from the cache all along
    assert.equal(1, mock.count("/request?" .. q))
  end)

  it("caches the configured request methods only", function()
    local q = uniq()
    assert.equal("Miss", cache_status(get("/post/request?" .. q, nil,
                                          "POST")))
    helpers.wait_until(function()
      return cache_status(get("/post/request?" .. q, nil, "POST")) == "Hit"
    end, 5)
    assert.equal("Bypass", cache_status(get("/post/request?" .. q)))
  end)

  it("matches content types with wildcards and exact parameters", function()
    local q = uniq()
    assert.equal("Miss", cache_status(get("/ctwild/bytes/8?" .. q)))
    helpers.wait_until(function()
      return cache_status(get("/ctwild/bytes/8?" .. q)) == "Hit"
    end, 5)
    assert.equal("Miss", cache_status(get("/ctwild/request?" .. q)))
    -- application/json is not application/json; charset=utf-8
    assert.equal("Bypass", cache_status(get("/ctparams/request?" .. q)))
  end)

  it("keys the consumer and the route (caches are per consumer)", function()
    local q = uniq()
    local res = get("/auth/request?" .. q, { apikey = "alice-key" })
    assert.equal("Miss", cache_status(res))
    assert.equal(sha256_hex(ALICE_ID .. ":" .. ROUTE_IDS.auth ..
                            "|GET|/auth/request|" .. q .. "|"),
                 res.headers["x-cache-key"])
    helpers.wait_until(function()
      return cache_status(get("/auth/request?" .. q,
                              { apikey = "alice-key" })) == "Hit"
    end, 5)
    -- the query argument apikey is part of the request, so use the header
    assert.equal("Miss", cache_status(get("/auth/request?" .. q,
                                          { apikey = "bob-key" })))
    -- rejected requests never reach the cache
    local r = get("/auth/request?" .. q)
    assert.res_status(401, r)
    assert.is_nil(r.headers["x-cache-status"])
  end)

  it("does not cache without its shared dictionary", function()
    local q = uniq()
    for _ = 1, 2 do
      local res = get("/nodict/request?" .. q)
      assert.res_status(200, res)
      assert.is_nil(res.headers["x-cache-status"])
      assert.is_nil(res.headers["x-cache-key"])
    end
    assert.equal(2, mock.count("/request?" .. q))
    helpers.wait_until(function()
      return (helpers.read_file(gw.error_log) or ""):find(
        "could not use the memory strategy: missing shared dict 'nope'",
        1, true)
    end, 5)
  end)

  it("proxies when Redis is down", function()
    local q = uniq()
    for _ = 1, 2 do
      local res = get("/redisdown/request?" .. q)
      assert.res_status(200, res)
      assert.is_nil(res.headers["x-cache-status"])
      assert.truthy(res.headers["x-cache-key"])
    end
    assert.equal(2, mock.count("/request?" .. q))
    helpers.wait_until(function()
      return (helpers.read_file(gw.error_log) or ""):find(
        "could not read the cache entry from Redis", 1, true)
    end, 5)
  end)

  it("lets every concurrent miss through with coalesce_timeout 0",
     function()
    local q = uniq()
    local conns = {}
    for i = 1, 4 do
      conns[i] = assert(helpers.raw_connect(gw.proxy_port))
      assert(conns[i]:send(helpers.build_request(
        { path = "/nocoalesce/delay/0.5?" .. q }, "localhost")))
    end
    for i = 1, 4 do
      local res = assert(conns[i]:read_response("GET"))
      conns[i]:close()
      assert.res_status(200, res)
      assert.equal("Miss", cache_status(res))
    end
    assert.equal(4, mock.count("/delay/0.5?" .. q))
  end)

  describe("with cache_control", function()
    -- /cc/response-headers?...: the mock adds the query as headers
    local function rh(query)
      return "/cc/response-headers?" .. query .. "&" .. uniq()
    end

    local function wait_hit(path, headers)
      local res
      helpers.wait_until(function()
        res = get(path, headers)
        return cache_status(res) == "Hit"
      end, 5)
      return res
    end

    it("caches a response with max-age, s-maxage or Expires", function()
      local p = rh("Cache-Control=max-age%3D60")
      assert.equal("Miss", cache_status(get(p)))
      wait_hit(p)

      local exp = os.date("!%a,%%20%d%%20%b%%20%Y%%20%H:%M:%S%%20GMT",
                          os.time() + 60)
      p = rh("Expires=" .. exp)
      assert.equal("Miss", cache_status(get(p)))
      wait_hit(p)

      -- s-maxage wins over max-age: stale after a second (kept by
      -- storage_ttl: refreshed)
      p = rh("Cache-Control=s-maxage%3D1%2Cmax-age%3D60"):gsub("^/cc/",
                                                                "/ccstore/")
      assert.equal("Miss", cache_status(get(p)))
      wait_hit(p)
      helpers.wait_until(function()
        return cache_status(get(p)) == "Refresh"
      end, 5)
    end)

    it("bypasses responses without freshness, no-store, private, no-cache, " ..
       "Vary: *", function()
      for _, q in ipairs({ "x=1", "Cache-Control=no-store",
                           "Cache-Control=private%2Cmax-age%3D60",
                           "Cache-Control=no-cache%2Cmax-age%3D60",
                           "Cache-Control=max-age%3D0",
                           "Expires=garbage",
                           "Cache-Control=max-age%3D60&Vary=*" }) do
        local p = rh(q)
        for _ = 1, 2 do
          local res = get(p)
          assert.res_status(200, res)
          assert.equal("Bypass", cache_status(res), q)
        end
      end
    end)

    it("bypasses requests with no-store or Authorization", function()
      local p = rh("Cache-Control=max-age%3D60")
      get(p)
      wait_hit(p)
      local res = get(p, { ["Cache-Control"] = "no-store" })
      assert.equal("Bypass", cache_status(res))
      assert.is_nil(res.headers["x-cache-key"])
      res = get(p, { Authorization = "Bearer x" })
      assert.equal("Bypass", cache_status(res))
      assert.equal("Hit", cache_status(get(p)))
    end)

    it("refreshes for a request's no-cache, Pragma: no-cache, max-age, " ..
       "min-fresh", function()
      local p = rh("Cache-Control=max-age%3D60")
      get(p)
      wait_hit(p)
      assert.equal("Refresh", cache_status(get(p, {
        ["Cache-Control"] = "no-cache" })))
      assert.equal("Refresh", cache_status(get(p, { Pragma = "no-cache" })))
      wait_hit(p)
      assert.equal("Hit", cache_status(get(p, {
        ["Cache-Control"] = "min-fresh=30" })))
      assert.equal("Refresh", cache_status(get(p, {
        ["Cache-Control"] = "min-fresh=100" })))
      -- max-age: once the entry is a second old
      helpers.wait_until(function()
        local res = get(p)
        return cache_status(res) == "Hit" and
               tonumber(res.headers["age"]) >= 1
      end, 5)
      assert.equal("Hit", cache_status(get(p, {
        ["Cache-Control"] = "max-age=30" })))
      assert.equal("Refresh", cache_status(get(p, {
        ["Cache-Control"] = "max-age=0" })))
    end)

    it("serves a stale entry only with max-stale", function()
      local p = rh("Cache-Control=max-age%3D1%2Cstale-if-error%3D60")
      local first = get(p)
      assert.equal("Miss", cache_status(first))
      -- stale for at least a second
      helpers.wait_until(function()
        local res = get(p, { ["Cache-Control"] = "max-stale" })
        return cache_status(res) == "Hit" and
               tonumber(res.headers["age"]) >= 2
      end, 6)
      local res = get(p, { ["Cache-Control"] = "max-stale=100" })
      assert.equal("Hit", cache_status(res))
      assert.equal(first.body, res.body)
      assert.equal("Refresh", cache_status(get(p, {
        ["Cache-Control"] = "max-stale=0" })))
      -- without it: refreshed
      helpers.wait_until(function()
        return cache_status(get(p)) == "Hit"
      end, 5)
    end)

    it("answers only-if-cached with 504 when nothing is usable", function()
      local p = rh("Cache-Control=max-age%3D60")
      local res = get(p, { ["Cache-Control"] = "only-if-cached" })
      assert.equal("", assert.res_status(504, res))
      assert.is_nil(res.headers["x-cache-status"])
      assert.truthy(res.headers["x-cache-key"])
      assert.equal(0, mock.count(p:sub(#"/cc" + 1)))
      get(p)
      wait_hit(p)
      res = get(p, { ["Cache-Control"] = "only-if-cached" })
      assert.res_status(200, res)
      assert.equal("Hit", cache_status(res))
    end)

    it("stores one variant per value of the response's Vary headers",
       function()
      local p = rh("Cache-Control=max-age%3D60&Vary=Accept-Language")
      local en = { ["Accept-Language"] = "en" }
      local fr = { ["Accept-Language"] = "fr" }
      assert.equal("Miss", cache_status(get(p, en)))
      assert.equal("Miss", cache_status(get(p, fr)))
      local res = wait_hit(p, en)
      assert.equal("en", assert.request(res).has.header("accept-language"))
      res = wait_hit(p, fr)
      assert.equal("fr", assert.request(res).has.header("accept-language"))
      assert.equal("Miss", cache_status(get(p)))
      res = wait_hit(p)
      assert.is_nil(assert.response(res).has.jsonbody().headers[
        "accept-language"])
    end)

    for _, route in ipairs({ "cc", "ccredis" }) do
      it("serves the stale entry on upstream errors with stale-if-error [" ..
         route .. "]", function()
        local q = "Cache-Control=max-age%3D1%2Cstale-if-error%3D60&" .. uniq()
        local p = "/" .. route .. "/response-headers?" .. q
        local first = get(p)
        assert.equal("Miss", cache_status(first))
        local key = first.headers["x-cache-key"]
        helpers.wait_until(function()
          local res = get(p, { ["Cache-Control"] = "max-stale" })
          return cache_status(res) == "Hit" and
                 tonumber(res.headers["age"]) >= 2
        end, 6)
        for _, fail in ipairs({ "500", "down", "slow" }) do
          local res = get(p, { ["X-Fail"] = fail })
          assert.equal(first.body, assert.res_status(200, res), fail)
          assert.equal("Stale", cache_status(res), fail)
          assert.equal(key, res.headers["x-cache-key"])
          assert.equal("application/json", res.headers["content-type"])
          assert.is_true(tonumber(res.headers["age"]) >= 2)
        end
        -- a working upstream refreshes it
        local res = get(p)
        assert.equal("Refresh", cache_status(res))
        assert.res_status(200, res)
      end)
    end

    it("passes errors on without stale-if-error, or past its window",
       function()
      local p = rh("Cache-Control=max-age%3D1")
      p = p:gsub("^/cc/", "/ccstore/")
      get(p)
      helpers.wait_until(function()
        local res = get(p, { ["Cache-Control"] = "max-stale" })
        return cache_status(res) == "Hit" and
               tonumber(res.headers["age"]) >= 2
      end, 6)
      local res = get(p, { ["X-Fail"] = "500" })
      assert.res_status(500, res)
      assert.equal("Bypass", cache_status(res))
      -- the request's own stale-if-error
      res = get(p, { ["X-Fail"] = "500",
                     ["Cache-Control"] = "stale-if-error=100" })
      assert.res_status(200, res)
      assert.equal("Stale", cache_status(res))
      res = get(p, { ["X-Fail"] = "down",
                     ["Cache-Control"] = "stale-if-error=0" })
      assert.res_status(502, res)
      assert.equal("Bypass", cache_status(res))
    end)
  end)
end)
