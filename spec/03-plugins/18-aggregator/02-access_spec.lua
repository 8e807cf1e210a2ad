-- aggregator through the real binary: calls made in parallel (wall time of
-- the slowest), templates over the client request, forwarded headers,
-- JSON answers placed as they came, non-JSON ones as strings, optional
-- failures in _partial, and each status_policy on failing required calls
-- (error status, refused connection, timeout). The routes have no
-- service: the plugin answers.
local helpers = require "spec.helpers"
local cjson = require "cjson.safe"

local fmt = string.format


describe("aggregator", function()
  local mock, gw, client, proxy_port, down_port

  -- a route answering `body` with `content_type` (request-termination), to
  -- serve exact JSON texts to the calls
  local function fixed(name, body, content_type)
    return {
      name = name, paths = { "/fixed/" .. name },
      plugins = { { name = "request-termination", config = {
        status_code = 200, body = body, content_type = content_type,
      } } },
    }
  end

  local function agg(path, conf, extra)
    local r = { name = "agg" .. path:gsub("[^%w]", "-"), paths = { path },
                plugins = { { name = "aggregator", config = conf } } }
    for k, v in pairs(extra or {}) do
      r[k] = v
    end
    return r
  end

  lazy_setup(function()
    mock = helpers.mock_upstream()
    proxy_port = helpers.get_free_port()
    down_port = helpers.get_free_port() -- nothing listens there
    local m = fmt("http://127.0.0.1:%d", mock.port)
    local self = fmt("http://127.0.0.1:%d", proxy_port)
    local routes = {
      fixed("json", '{"list":[],"big":12345678901234567890,"o":{}}',
            "application/json"),
      fixed("badjson", '{"a": NaN}', "application/json"),
      fixed("text", "plain text", "text/plain"),
      fixed("vnd", '[1,2]', "application/vnd.api+json; charset=utf-8"),

      agg("/parallel", { calls = {
        { name = "a", url = m .. "/delay/1" },
        { name = "b", url = m .. "/delay/1" },
        { name = "c", url = m .. "/delay/1" },
      } }),

      agg("~/users/(?<id>[^/]+)/(\\d+)$", {
        forward_headers = { "X-Trace", "X-Both" },
        calls = {
          { name = "user",
            url = m .. "/u/$(uri_captures.id)/$(uri_captures[2])" ..
                  "?q=$(query_params.q or \"none\")&rid=$(request_id)",
            headers = {
              ["X-From-Header"] = "$(headers.x_user)",
              ["X-Both"] = "from-config",
              ["X-Missing"] = "$(headers.x_absent)",
              ["X-Default"] = "$(headers.x_absent or 'dflt')",
            } },
        },
      }),

      agg("/shapes", { calls = {
        { name = "echo", url = m .. "/anything",
          path_in_response = "data.echo" },
        { name = "json", url = self .. "/fixed/json",
          path_in_response = "data.json" },
        { name = "badjson", url = self .. "/fixed/badjson" },
        { name = "text", url = self .. "/fixed/text" },
        { name = "vnd", url = self .. "/fixed/vnd" },
        { name = "bytes", url = m .. "/bytes/4" },
        { name = "empty", url = m .. "/status/204" },
      } }),

      agg("/partial", { calls = {
        { name = "ok", url = m .. "/anything" },
        { name = "unavailable", url = m .. "/status/503", required = false },
        { name = "down", url = fmt("http://127.0.0.1:%d/x", down_port),
          required = false },
        { name = "slow", url = m .. "/delay/2", timeout_ms = 300,
          required = false },
      } }),

      agg("/first-error", { calls = {
        { name = "ok", url = m .. "/anything" },
        { name = "missing", url = m .. "/status/404" },
        { name = "broken", url = m .. "/status/503" },
      } }),

      agg("/first-error-down", { calls = {
        { name = "down", url = fmt("http://127.0.0.1:%d/x", down_port) },
        { name = "ok", url = m .. "/anything" },
      } }),

      agg("/first-error-timeout", { calls = {
        { name = "slow", url = m .. "/delay/3", timeout_ms = 300 },
        { name = "ok", url = m .. "/anything" },
      } }),

      agg("/worst", { status_policy = "worst", calls = {
        { name = "missing", url = m .. "/status/404" },
        { name = "broken", url = m .. "/status/503" },
        { name = "optional", url = m .. "/status/504", required = false },
        { name = "ok", url = m .. "/anything" },
      } }),

      agg("/worst-down", { status_policy = "worst", calls = {
        { name = "missing", url = m .. "/status/404" },
        { name = "down", url = fmt("http://127.0.0.1:%d/x", down_port) },
      } }),

      agg("/worst-ok", { status_policy = "worst", calls = {
        { name = "ok", url = m .. "/anything" },
        { name = "optional", url = m .. "/status/500", required = false },
      } }),

      agg("/any", { status_policy = "ok-if-any", calls = {
        { name = "broken", url = m .. "/status/500" },
        { name = "ok", url = m .. "/anything" },
      } }),

      agg("/any-none", { status_policy = "ok-if-any", calls = {
        { name = "broken", url = m .. "/status/500" },
        { name = "down", url = fmt("http://127.0.0.1:%d/x", down_port) },
      } }),

      agg("/all-optional", { calls = {
        { name = "broken", url = m .. "/status/500", required = false },
      } }),

      agg("/shared", { calls = {
        { name = "s", url = m .. "/t/$(shared.tenant.id)?n=$(shared.n)",
          headers = { ["X-Deep"] = "$(shared.tenant.missing.x or 'none')" } },
      } }, { plugins = {
        { name = "set-shared", config = {} },
        { name = "aggregator", config = { calls = {
          { name = "s", url = m .. "/t/$(shared.tenant.id)?n=$(shared.n)",
            headers = { ["X-Deep"] = "$(shared.tenant.missing.x or 'none')" } },
        } } },
      } }),

      agg("/methods", { calls = {
        { name = "post", url = m .. "/anything", method = "POST" },
        { name = "delete", url = m .. "/anything", method = "DELETE" },
      } }),
    }
    -- a plugin putting values in kong.ctx.shared before the aggregator runs
    local plugins_dir = helpers.make_prefix("agg-plugins")
    helpers.write_file(plugins_dir .. "/set-shared.lua", [[
      local H = { PRIORITY = 1000, VERSION = "1.0.0" }
      H.SCHEMA = { name = "set-shared", fields = {
        { config = { type = "record", fields = {} } } } }
      function H:access()
        kong.ctx.shared.tenant = { id = "t/9" }
        kong.ctx.shared.n = 12
      end
      return H
    ]])
    gw = assert(helpers.start_luagate({
      args = { "--plugins-dir", plugins_dir },
      proxy_port = proxy_port,
      config = {
        _format_version = "3.0",
        -- the aggregator's routes need no service
        routes = routes,
        services = {
          -- on a route with a service, the service is not called
          { name = "unused", url = m .. "/never-called", routes = {
            agg("/with-service", { calls = {
              { name = "a", url = m .. "/anything" },
            } }),
          } },
        },
      },
    }))
  end)

  lazy_teardown(function()
    helpers.stop_luagate(gw)
    mock.stop()
  end)

  before_each(function()
    client = helpers.proxy_client(gw, 15)
  end)

  after_each(function()
    if client then
      client:close()
    end
  end)

  local function json(res, status)
    assert.res_status(status, res)
    assert.equal("application/json; charset=utf-8",
                 res.headers["content-type"])
    return assert(helpers.json_decode(res.body))
  end

  it("makes the calls in parallel: the time of the slowest", function()
    local t0 = helpers.gettime()
    local res = client:get("/parallel")
    local elapsed = helpers.gettime() - t0
    local body = json(res, 200)
    for _, name in ipairs({ "a", "b", "c" }) do
      assert.equal("/delay/1", body[name].path)
      assert.equal("GET", body[name].method)
    end
    -- three calls of 1 s each: about 1 s, far from the 3 s of a sequence
    assert.is_true(elapsed >= 0.9, "too fast: " .. elapsed)
    assert.is_true(elapsed < 2.5, "not parallel: " .. elapsed)
  end)

  it("renders urls and headers from the client request", function()
    local res = client:get("/users/bob/7?q=hello", {
      headers = { ["X-User"] = "u-1", ["X-Trace"] = "t-1",
                  ["X-Both"] = "from-client" },
    })
    local body = json(res, 200)
    local u = body.user
    assert.equal("/u/bob/7", u.path)
    assert.equal("hello", u.query.q)
    assert.matches("^%x+$", u.query.rid)
    assert.equal("u-1", u.headers["x-from-header"])
    assert.equal("t-1", u.headers["x-trace"])          -- forwarded
    assert.equal("from-config", u.headers["x-both"])   -- config wins
    assert.is_nil(u.headers["x-missing"])              -- empty: not sent
    assert.equal("dflt", u.headers["x-default"])
    assert.is_nil(u.headers["x-user"])                 -- not forwarded
  end)

  it("uses the default of a missing query argument", function()
    local body = json(client:get("/users/bob/7"), 200)
    assert.equal("none", body.user.query.q)
  end)

  it("percent-encodes values in urls", function()
    local body = json(client:get("/users/a%2Fb/7?q=x%26y%3Dz%20%2F..%2F"),
                      200)
    -- the values cannot add segments or arguments
    assert.equal("/u/a%2Fb/7", body.user.uri:match("^[^?]*"))
    assert.equal("x&y=z /../", body.user.query.q)
    assert.is_nil(body.user.query.y)
  end)

  it("refuses a value with CR or LF with 400", function()
    local res = client:get("/users/bob/7", {
      headers = { ["X-User"] = "ok" },
    })
    assert.res_status(200, res)
    res = client:get("/users/bob/7?q=a%0D%0AX-Injected:%201")
    local body = json(res, 400)
    assert.same({ message = "invalid value for the url of call 'user': " ..
                            "the value of $(query_params.q or \"none\") " ..
                            "contains CR or LF" }, body)
  end)

  it("places JSON answers as they came, others as strings", function()
    local raw = assert.res_status(200, client:get("/shapes"))
    -- exact texts: key order, empty array and object, big number kept
    assert.matches('"json":{"list":[],"big":12345678901234567890,"o":{}}',
                   raw, 1, true)
    assert.matches('"vnd":[1,2]', raw, 1, true)
    local body = assert(helpers.json_decode(raw))
    assert.equal("/anything", body.data.echo.path)
    assert.equal('{"a": NaN}', body.badjson)   -- not valid JSON: a string
    assert.equal("plain text", body.text)
    assert.equal("abcd", body.bytes)
    assert.equal(cjson.null, body.empty)       -- an empty answer: null
    assert.matches('"empty":null', raw, 1, true)
    assert.is_nil(body._partial)
  end)

  it("lists failed optional calls in _partial", function()
    local t0 = helpers.gettime()
    local body = json(client:get("/partial"), 200)
    local elapsed = helpers.gettime() - t0
    assert.equal("/anything", body.ok.path)
    assert.is_nil(body.unavailable)
    assert.is_nil(body.down)
    assert.is_nil(body.slow)
    assert.same({
      { name = "unavailable", status = 503 },
      { name = "down", error = "could not connect: connection refused" },
      { name = "slow", error = "could not read the response: timeout" },
    }, body._partial)
    assert.is_true(elapsed < 1.5, "the timeout did not cut the call: " ..
                                  elapsed)
  end)

  describe("status_policy first-error", function()
    it("answers 502 naming the first failed required call", function()
      local body = json(client:get("/first-error"), 502)
      assert.same({ message = "upstream call 'missing' failed: status 404",
                    call = "missing" }, body)
    end)

    it("answers 502 when a required upstream is down", function()
      local body = json(client:get("/first-error-down"), 502)
      assert.same({ message = "upstream call 'down' failed: could not " ..
                              "connect: connection refused",
                    call = "down" }, body)
    end)

    it("answers 504 when a required call times out", function()
      local t0 = helpers.gettime()
      local body = json(client:get("/first-error-timeout"), 504)
      local elapsed = helpers.gettime() - t0
      assert.same({ message = "upstream call 'slow' failed: could not read " ..
                              "the response: timeout",
                    call = "slow" }, body)
      assert.is_true(elapsed < 2, "timeout_ms was not applied: " .. elapsed)
    end)
  end)

  describe("status_policy worst", function()
    it("answers the highest status of the failed required calls", function()
      local body = json(client:get("/worst"), 503)
      assert.same({ message = "upstream call 'broken' failed: status 503",
                    call = "broken" }, body)
    end)

    it("counts a refused connection as 502", function()
      local body = json(client:get("/worst-down"), 502)
      assert.same({ message = "upstream call 'down' failed: could not " ..
                              "connect: connection refused",
                    call = "down" }, body)
    end)

    it("answers 200 when only optional calls failed", function()
      local body = json(client:get("/worst-ok"), 200)
      assert.equal("/anything", body.ok.path)
      assert.same({ { name = "optional", status = 500 } }, body._partial)
    end)
  end)

  describe("status_policy ok-if-any", function()
    it("answers 200 while a call succeeded, failures in _partial", function()
      local body = json(client:get("/any"), 200)
      assert.equal("/anything", body.ok.path)
      assert.same({ { name = "broken", status = 500 } }, body._partial)
    end)

    it("answers 502 when every call failed", function()
      local body = json(client:get("/any-none"), 502)
      assert.same({ message = "every upstream call failed; upstream call " ..
                              "'broken' failed: status 500",
                    call = "broken" }, body)
    end)
  end)

  it("reads kong.ctx.shared", function()
    local body = json(client:get("/shared"), 200)
    assert.equal("/t/t%2F9", body.s.uri:match("^[^?]*"))
    assert.equal("12", body.s.query.n)
    assert.equal("none", body.s.headers["x-deep"])
  end)

  it("answers {_partial} when every call is optional and failed", function()
    local raw = assert.res_status(200, client:get("/all-optional"))
    assert.equal('{"_partial":[{"name":"broken","status":500}]}', raw)
  end)

  it("sends each call's method", function()
    local body = json(client:get("/methods"), 200)
    assert.equal("POST", body.post.method)
    assert.equal("DELETE", body.delete.method)
  end)

  it("never calls the route's service", function()
    local body = json(client:get("/with-service"), 200)
    assert.equal("/anything", body.a.path)
    local got = mock.requests()
    assert.equal("/anything", got[#got].path)
    for _, r in ipairs(got) do
      assert.is_nil(r.path:find("never-called", 1, true), r.path)
    end
  end)
end)
