-- The parts of the PDK and of the ngx API that need no running request:
-- argument validation, header tables, query/body decoding, error pages,
-- kong.table, kong.cache, kong.log formatting and serialize helpers,
-- kong.ctx / kong.client with a fake request, ngx.var name parsing.

local private = require "luagate.pdk.private"
local request = require "luagate.request"
local cache_mod = require "luagate.pdk.cache"
local log_mod = require "luagate.pdk.log"
local new_kong = require "luagate.pdk"
local new_ngx = require "luagate.ngx"


-- a request as the runloop would set it; ptr is any non-nil value because
-- the functions tested here do not call into C
local function fake_request(phase, extra)
  local r = {
    ptr = true, phase = phase, ctx = {}, shared = {}, plugin = "pdk-test",
    plugin_ctx = {},
  }
  for k, v in pairs(extra or {}) do
    r[k] = v
  end
  return r
end


describe("PDK phase checks", function()
  after_each(function()
    request.cur = nil
  end)

  it("raises 'no request found' without a request", function()
    request.cur = nil
    assert.has_error(function()
      private.check(private.PHASES.request)
    end, "no request found")
  end)

  it("raises Kong's message in a wrong phase", function()
    request.cur = fake_request("log")
    local ok, err = pcall(private.check, private.PHASES.rewrite_access)
    assert.is_false(ok)
    assert.matches("function cannot be called in log phase " ..
                   "(only in: rewrite, access)", err, 1, true)
  end)

  it("lists allowed phases in Kong's order", function()
    local set = private.phase_set("log", "access", "header_filter")
    assert.equal("access, header_filter, log", set.__names)
  end)

  it("returns the request in an allowed phase", function()
    local r = fake_request("access")
    request.cur = r
    assert.equal(r, private.check(private.PHASES.rewrite_access))
  end)

  it("reports a timer phase as a phase error", function()
    request.cur = { phase = "timer" }
    local ok, err = pcall(private.check, private.PHASES.access)
    assert.is_false(ok)
    assert.matches("cannot be called in timer phase", err, 1, true)
  end)
end)


describe("header validation", function()
  it("converts numbers and booleans", function()
    assert.equal("1", private.validate_header("X", 1))
    assert.equal("true", private.validate_header("X", true))
    assert.equal("v", private.validate_header("X", "v"))
  end)

  it("refuses a non-string name", function()
    assert.has_error(function()
      private.validate_header(1, "v")
    end, 'invalid header name "1": got number, expected string')
  end)

  it("refuses a table value", function()
    assert.has_error(function()
      private.validate_header("X", {})
    end, 'invalid header value for "X": got table, expected string, ' ..
         'number or boolean')
  end)

  it("refuses CR and LF in values", function()
    assert.has_error(function()
      private.validate_header("X", "a\r\nInjected: 1")
    end, 'invalid header value for "X": contains CR or LF')
    assert.has_error(function()
      private.validate_headers({ X = { "ok", "b\n" } })
    end, 'invalid header value for "X": contains CR or LF')
  end)

  it("validates header tables", function()
    assert.has_no_error(function()
      private.validate_headers({ A = "1", B = { "x", "y" }, C = 2, D = true })
    end)
    assert.has_error(function()
      private.validate_headers("x")
    end, "headers must be a table")
    assert.has_error(function()
      private.validate_headers({ A = { 1 } })
    end, 'invalid header value in array "A": got number, expected string')
    assert.has_error(function()
      private.validate_headers({ A = function() end })
    end, 'invalid header value for "A": got function, expected string, ' ..
         'number, boolean or array of strings')
  end)

  it("normalizes names", function()
    assert.equal("x-foo-bar", private.normalize_header_name("X_Foo_Bar"))
    assert.equal("x-a", private.normalize_header_name("X-A"))
    -- the same results once kept, and past the cache's 1,024 names
    assert.equal("x-foo-bar", private.normalize_header_name("X_Foo_Bar"))
    for i = 1, 1100 do
      assert.equal("x-n-" .. i, private.normalize_header_name("X_N_" .. i))
    end
    assert.equal("x-foo-bar", private.normalize_header_name("X_Foo_Bar"))
    assert.equal("x-n-1", private.normalize_header_name("X_N_1"))
  end)

  it("looks headers up case-insensitively with _ for -", function()
    local h = setmetatable({ ["x-custom-header"] = "v",
                             ["x-multi"] = { "a", "b" } },
                           private.headers_mt)
    assert.equal("v", h["X-Custom-Header"])
    assert.equal("v", h.x_custom_header)
    assert.same({ "a", "b" }, h.X_Multi)
    assert.is_nil(h.missing)
    assert.is_nil(h[1])
  end)

  it("normalizes empty values as Kong does", function()
    assert.equal(" ", private.normalize_value(""))
    assert.equal("3", private.normalize_value(3))
  end)
end)


describe("query strings", function()
  it("decodes as ngx.decode_args", function()
    local args = private.decode_args("a=1&b&c=&a=2&d=x%20y+z")
    assert.same({ "1", "2" }, args.a)
    assert.is_true(args.b)
    assert.equal("", args.c)
    assert.equal("x y z", args.d)
  end)

  it("truncates at max_args", function()
    local args, err = private.decode_args("a=1&b=2&c=3", 2)
    assert.equal("truncated", err)
    assert.equal("1", args.a)
    assert.is_nil(args.c)
  end)

  it("encodes sorted", function()
    assert.equal("a=1&b&c=x%20y&d=1&d=2",
                 private.encode_args({ c = "x y", a = 1, b = true,
                                       d = { "1", "2" }, e = false }))
  end)
end)


describe("bodies", function()
  it("finds the mime type", function()
    assert.equal("application/json",
                 private.mime_of("Application/JSON; charset=utf-8"))
    assert.is_nil(private.mime_of(nil))
  end)

  it("finds the multipart boundary", function()
    assert.equal("xyz",
                 private.boundary_of("multipart/form-data; boundary=xyz"))
    assert.equal("a b", private.boundary_of(
                   'multipart/form-data; Boundary="a b"; x=1'))
    assert.is_nil(private.boundary_of("multipart/form-data"))
  end)

  it("parses and builds multipart bodies", function()
    local body = private.encode_multipart({ a = "1", b = { "x", "y" } }, "BB")
    local args = private.parse_multipart(body, "BB")
    assert.same({ a = "1", b = { "x", "y" } }, args)
  end)

  it("parses a browser-style multipart body", function()
    local body = table.concat({
      "--XX",
      'Content-Disposition: form-data; name="field"',
      "",
      "value 1",
      "--XX",
      'Content-Disposition: form-data; name="file"; filename="a.txt"',
      "Content-Type: text/plain",
      "",
      "file\r\ncontent",
      "--XX--",
      "",
    }, "\r\n")
    local args = private.parse_multipart(body, "XX")
    assert.equal("value 1", args.field)
    assert.equal("file\r\ncontent", args.file)
  end)

  it("refuses non-object JSON", function()
    assert.same({ a = 1 }, private.decode_json('{"a":1}'))
    local v, err = private.decode_json("1")
    assert.is_nil(v)
    assert.equal("invalid json body", err)
    assert.is_nil((private.decode_json("{bad")))
  end)
end)


describe("kong.response.error content negotiation", function()
  local JSON = "application/json; charset=utf-8"
  it("defaults to JSON", function()
    assert.equal(JSON, private.response_type(nil))
    assert.equal(JSON, private.response_type("*/*"))
    assert.equal(JSON, private.response_type("image/png"))
  end)

  it("picks by type and q", function()
    assert.equal("text/html; charset=utf-8",
                 private.response_type("text/html"))
    assert.equal("text/plain; charset=utf-8",
                 private.response_type("application/xml;q=0.5, text/plain"))
    assert.equal("application/xml; charset=utf-8",
                 private.response_type("text/plain;q=0.2, application/xml"))
    assert.equal("text/plain; charset=utf-8", private.response_type("text/*"))
    assert.equal("text/html; charset=utf-8",
                 private.response_type({ "text/html",
                                         "application/xml;q=0.1" }))
  end)

  it("renders the templates", function()
    local json = private.error_body(JSON, "Forbidden", "abc")
    assert.same({ message = "Forbidden", request_id = "abc" },
                require("cjson").decode(json))
    assert.equal("Forbidden\nrequest_id: abc\n",
                 private.error_body("text/plain; charset=utf-8", "Forbidden",
                                    "abc"))
    assert.matches("<p>Forbidden.</p>",
                   private.error_body("text/html", "Forbidden", "abc"), 1,
                   true)
    assert.matches("<message>Forbidden</message>",
                   private.error_body("application/xml", "Forbidden", "abc"),
                   1, true)
  end)

  it("escapes JSON messages", function()
    local json = private.error_body(JSON, 'say "hi"', "x")
    assert.equal('say "hi"', require("cjson").decode(json).message)
  end)

  it("has Kong's default messages", function()
    assert.equal("Not found", private.error_message(404))
    assert.equal("Too many requests", private.error_message(429))
    assert.equal("The upstream server responded with 499",
                 private.error_message(499))
  end)
end)


describe("kong.table, kong.configuration, kong.node, kong.version", function()
  local kong = new_kong()

  it("merges", function()
    assert.same({ a = 1, b = 3, c = 4 },
                kong.table.merge({ a = 1, b = 2 }, { b = 3, c = 4 }))
    assert.same({ a = 1 }, kong.table.merge({ a = 1 }))
    assert.same({}, kong.table.merge())
  end)

  it("creates and clears", function()
    local t = kong.table.new(4, 4)
    t[1], t.x = 1, 2
    kong.table.clear(t)
    assert.is_nil(next(t))
  end)

  it("has a read-only configuration", function()
    assert.has_error(function()
      kong.configuration.x = 1
    end)
  end)

  it("has a stable UUID node id", function()
    local id = kong.node.get_id()
    assert.matches("^%x+%-%x+%-4%x+%-[89ab]%x+%-%x+$", id)
    assert.equal(id, kong.node.get_id())
    assert.is_string(kong.node.get_hostname())
  end)

  it("reports Lua memory", function()
    local stats = kong.node.get_memory_stats()
    assert.is_number(stats.workers_lua_vms[1].http_allocated_gc)
    local k = kong.node.get_memory_stats("k", 1)
    assert.matches("KiB$", k.workers_lua_vms[1].http_allocated_gc)
  end)

  it("has Kong's version", function()
    assert.equal("3.10.0", kong.version)
    assert.equal(3010000, kong.version_num)
  end)

  it("trusts no IP", function()
    assert.is_false(kong.ip.is_trusted("127.0.0.1"))
  end)
end)


describe("kong.ctx and kong.client with a fake request", function()
  local kong = new_kong()
  after_each(function()
    request.cur = nil
  end)

  it("forwards kong.ctx.shared to the request", function()
    local r = fake_request("access")
    request.cur = r
    kong.ctx.shared.a = 1
    assert.equal(1, r.shared.a)
    assert.equal(1, kong.ctx.shared.a)
    local seen = {}
    for k, v in pairs(kong.ctx.shared) do -- a plain table
      seen[k] = v
    end
    assert.same({ a = 1 }, seen)
    request.cur = fake_request("access")
    assert.is_nil(kong.ctx.shared.a)
  end)

  it("namespaces kong.ctx.plugin per plugin", function()
    local r = fake_request("access")
    request.cur = r
    kong.ctx.plugin.x = "mine"
    r.plugin = "other"
    assert.is_nil(kong.ctx.plugin.x)
    r.plugin = "pdk-test"
    assert.equal("mine", kong.ctx.plugin.x)
    assert.equal("mine", r.plugin_ctx["pdk-test"].x)
  end)

  it("authenticates", function()
    local r = fake_request("access")
    request.cur = r
    local c, cred = { id = "c1" }, { id = "k1" }
    kong.client.authenticate(c, cred)
    assert.equal(c, kong.client.get_consumer())
    assert.equal(cred, kong.client.get_credential())
    assert.equal(c, r.ctx.authenticated_consumer)
    assert.equal(cred, r.ctx.authenticated_credential)
    assert.has_error(function()
      kong.client.authenticate(nil, nil)
    end, "either credential or consumer must be provided")
    assert.has_error(function()
      kong.client.authenticate("x")
    end, "consumer must be a table or nil")
  end)

  it("authenticates only in access", function()
    request.cur = fake_request("rewrite")
    assert.has_error(function()
      kong.client.authenticate({})
    end, "function cannot be called in rewrite phase (only in: access)")
  end)

  it("loads consumers by id and username", function()
    local conf = { consumers = { { id = "id-1", username = "alice" } } }
    request.cur = fake_request("access", { conf = conf })
    assert.equal("alice", kong.client.load_consumer("id-1").username)
    assert.is_nil(kong.client.load_consumer("alice"))
    assert.equal("id-1", kong.client.load_consumer("alice", true).id)
    assert.has_error(function()
      kong.client.load_consumer(1)
    end, "consumer_id must be a string")
  end)

  it("gives the route and service", function()
    request.cur = fake_request("access", { route = { name = "r" },
                                           service = { name = "s" } })
    assert.equal("r", kong.router.get_route().name)
    assert.equal("s", kong.router.get_service().name)
  end)

  it("records serialize values", function()
    local r = fake_request("access")
    request.cur = r
    kong.log.set_serialize_value("request.headers.x", "1")
    kong.log.set_serialize_value("custom", { a = 1 }, { mode = "add" })
    assert.has_error(function()
      kong.log.set_serialize_value(1, "x")
    end, "key must be a string")
    assert.has_error(function()
      kong.log.set_serialize_value("k", "x", { mode = "bad" })
    end, "mode must be 'set', 'add' or 'replace'")
    local obj = log_mod.apply_values({ request = { headers = {} } },
                                     r.serialize_values)
    assert.equal("1", obj.request.headers.x)
    assert.same({ a = 1 }, obj.custom)
  end)
end)


describe("kong.log helpers", function()
  it("applies set / add / replace", function()
    local obj = { a = 1, b = { c = 2 } }
    log_mod.apply_values(obj, {
      { key = "a", value = 10, mode = "add" },
      { key = "n", value = 5, mode = "add" },
      { key = "b.c", value = 3, mode = "replace" },
      { key = "x.y", value = 1, mode = "replace" },
      { key = "p.q", value = 7, mode = "set" },
    })
    assert.same({ a = 1, n = 5, b = { c = 3 }, p = { q = 7 } }, obj)
  end)

  it("drops credentials from consumers", function()
    local c = log_mod.consumer_view({
      id = "1", username = "u", keyauth_credentials = { { key = "s" } },
      custom_credentials = { {} }, tags = { "t" },
    })
    assert.same({ id = "1", username = "u", tags = { "t" } }, c)
  end)

  it("redacts secrets in headers", function()
    assert.same({ authorization = "REDACTED", cookie = "REDACTED", a = "b" },
                log_mod.redact({ authorization = "Basic x", cookie = "s=1",
                                 a = "b" }))
  end)

  it("formats lines as [kong] file:N [plugin] msg", function()
    local lines = {}
    log_mod.sink = function(level, line)
      lines[#lines + 1] = { level, line }
    end
    local log = log_mod.new()
    request.cur = fake_request("access")
    log.err("a", 1, nil, true)
    log("notice")
    log.inspect({ x = 1 })
    request.cur = nil
    log.warn("no plugin")
    log_mod.sink = nil
    assert.equal(4, lines[1][1])
    assert.matches("^%[kong%] 30%-pdk_args_spec%.lua:%d+ %[pdk%-test%] " ..
                   "a1niltrue$", lines[1][2])
    assert.equal(6, lines[2][1])
    assert.matches("%[pdk%-test%] notice$", lines[2][2])
    assert.matches("x = 1", lines[3][2], 1, true)
    assert.matches("^%[kong%] 30%-pdk_args_spec%.lua:%d+ no plugin$",
                   lines[4][2])
  end)

  it("pretty-prints", function()
    assert.equal('{\n  "a",\n  k = 1\n}', log_mod.inspect_value({ "a", k = 1 }))
    assert.equal('"s"', log_mod.inspect_value("s"))
  end)
end)


describe("kong.cache", function()
  local clock
  local function now() return clock end

  -- an in-memory stand-in for ngx.shared.DICT
  local function fake_dict()
    local data, exp = {}, {}
    local d = {}
    function d:get(k)
      if exp[k] and exp[k] <= clock then
        data[k], exp[k] = nil, nil
      end
      return data[k]
    end
    function d:set(k, v, ttl)
      data[k] = v
      exp[k] = (ttl and ttl > 0) and clock + ttl or nil
      return true
    end
    d.safe_set = d.set
    function d:add(k, v, ttl)
      if self:get(k) ~= nil then return false, "exists" end
      return self:set(k, v, ttl)
    end
    function d:delete(k) data[k], exp[k] = nil, nil end
    function d:incr(k, by, init)
      data[k] = (self:get(k) or init) + by
      return data[k]
    end
    function d:ttl(k)
      if exp[k] then return exp[k] - clock end
      return 0
    end
    function d:flush_all() data, exp = {}, {} end
    return d
  end

  before_each(function()
    clock = 1000
  end)

  it("caches callback results and passes arguments", function()
    local c = cache_mod.new({ now = now })
    local calls = 0
    local function cb(a, b)
      calls = calls + 1
      return a .. b
    end
    local v, err, lvl = c:get("k", nil, cb, "x", "y")
    assert.same({ "xy", nil, 3 }, { v, err, lvl })
    v, err, lvl = c:get("k", nil, cb, "x", "y")
    assert.same({ "xy", nil, 1 }, { v, err, lvl })
    assert.equal(1, calls)
  end)

  it("does not cache errors and prefixes them", function()
    local c = cache_mod.new({ now = now })
    local v, err = c:get("k", nil, function() return nil, "boom" end)
    assert.is_nil(v)
    assert.equal("failed to get from node cache: boom", err)
    v = c:get("k", nil, function() return "ok" end)
    assert.equal("ok", v)
    v, err = c:get("e", nil, function() error("thrown") end)
    assert.is_nil(v)
    assert.matches("callback threw an error: .*thrown", err)
  end)

  it("caches misses with neg_ttl", function()
    local c = cache_mod.new({ now = now })
    local calls = 0
    local function cb() calls = calls + 1 return nil end
    c:get("m", { neg_ttl = 10 }, cb)
    c:get("m", { neg_ttl = 10 }, cb)
    assert.equal(1, calls)
    clock = clock + 11
    c:get("m", { neg_ttl = 10 }, cb)
    assert.equal(2, calls)
  end)

  it("expires with ttl, 0 meaning never, and lets cb override", function()
    local c = cache_mod.new({ now = now })
    local calls = 0
    local function cb(ttl) calls = calls + 1 return "v", nil, ttl end
    c:get("a", { ttl = 5 }, cb)
    c:get("b", { ttl = 0 }, cb)
    c:get("c", { ttl = 100 }, cb, 1)      -- cb says 1 second
    clock = clock + 6
    c:get("a", { ttl = 5 }, cb)
    c:get("b", { ttl = 0 }, cb)
    c:get("c", { ttl = 100 }, cb, 1)
    assert.equal(5, calls)                -- a and c again, not b
    assert.has_error(function() c:get(1) end, "key must be a string")
    assert.has_error(function() c:get("x", { ttl = -1 }, cb) end,
                     "opts.ttl must be >= 0")
  end)

  it("probes, invalidates, renews and purges", function()
    local c = cache_mod.new({ now = now })
    assert.is_nil(c:probe("k"))
    c:get("k", { ttl = 30 }, function() return "v" end)
    local ttl, err, v = c:probe("k")
    assert.same({ 30, nil, "v" }, { ttl, err, v })
    c:invalidate("k")
    assert.is_nil(c:probe("k"))
    local nv, _, nttl = c:renew("k", nil, function() return "w", nil, 7 end)
    assert.same({ "w", 7 }, { nv, nttl })
    assert.equal("w", select(3, c:probe("k")))
    c:purge()
    assert.is_nil(c:probe("k"))
  end)

  it("evicts the least recently used entry", function()
    local lru = cache_mod.lru_new(2)
    lru:set("a", 1, 0, 0)
    lru:set("b", 2, 0, 0)
    lru:get("a")
    lru:set("c", 3, 0, 0)
    assert.is_nil(lru:get("b"))
    assert.equal(1, lru:get("a").value)
    assert.equal(3, lru:get("c").value)
  end)

  it("shares values and invalidations through the dictionary", function()
    local dict = fake_dict()
    local w1 = cache_mod.new({ now = now, dict = dict })
    local w2 = cache_mod.new({ now = now, dict = dict })
    local v, _, lvl = w1:get("k", nil, function() return { a = 1 } end)
    assert.same({ a = 1 }, v)
    assert.equal(3, lvl)
    v, _, lvl = w2:get("k", nil, function() error("not called") end)
    assert.same({ a = 1 }, v)
    assert.equal(2, lvl)
    -- w2 now has it in L1; w1 invalidates: w2 must not serve it anymore
    w1:invalidate("k")
    v, _, lvl = w2:get("k", nil, function() return "new" end)
    assert.equal("new", v)
    assert.equal(3, lvl)
    -- a cached miss is shared too
    w1:get("miss", nil, function() return nil end)
    v, _, lvl = w2:get("miss", nil, function() return "not used" end)
    assert.is_nil(v)
    assert.equal(2, lvl)
    w2:purge()
    v = w1:get("miss", nil, function() return "filled" end)
    assert.equal("filled", v)
  end)
end)


describe("ngx table without a request", function()
  local ngx = new_ngx()

  it("splits variable names", function()
    local ngx_mod = require "luagate.ngx"
    assert.same({ "http", "x_foo" }, { ngx_mod.var_kind("http_x_foo") })
    assert.same({ "cookie", "session" }, { ngx_mod.var_kind("cookie_session") })
    assert.same({ "arg", "page" }, { ngx_mod.var_kind("arg_page") })
    assert.same({ "sent_http", "content_type" },
                { ngx_mod.var_kind("sent_http_content_type") })
    assert.same({ "var", "remote_addr" }, { ngx_mod.var_kind("remote_addr") })
  end)

  it("has the constants and helpers", function()
    assert.equal(200, ngx.HTTP_OK)
    assert.equal(4, ngx.ERR)
    assert.equal(0, ngx.OK)
    assert.equal(require("cjson").null, ngx.null)
    assert.equal("aGk=", ngx.encode_base64("hi"))
    assert.equal("a%20b", ngx.escape_uri("a b"))
    assert.is_function(ngx.re.match)
    assert.equal("http", ngx.config.subsystem)
    assert.equal(10026, ngx.config.ngx_lua_version)
  end)

  it("keeps ngx.ctx per request", function()
    local r1, r2 = fake_request("access"), fake_request("access")
    request.cur = r1
    ngx.ctx.a = 1
    request.cur = r2
    assert.is_nil(ngx.ctx.a)
    ngx.ctx = { b = 2 }
    assert.equal(2, r2.ctx.b)
    request.cur = r1
    assert.equal(1, ngx.ctx.a)
    request.cur = nil
  end)

  it("errors on request functions without a request", function()
    request.cur = nil
    assert.has_error(function() return ngx.var.uri end, "no request found")
    assert.has_error(function() ngx.req.get_method() end, "no request found")
  end)

  it("reports the phase", function()
    request.cur = fake_request("response")
    assert.equal("content", ngx.get_phase())
    request.cur = fake_request("access")
    assert.equal("access", ngx.get_phase())
    request.cur = nil
  end)

  it("has the time functions", function()
    assert.is_number(ngx.now())
    assert.equal(math.floor(ngx.now()), ngx.time())
    assert.matches("^%d%d%d%d%-%d%d%-%d%d$", ngx.today())
    assert.matches("^%d%d%d%d%-%d%d%-%d%d %d%d:%d%d:%d%d$", ngx.utctime())
  end)
end)
