-- kong.request through the real binary, with the pdk-request test plugin
-- (spec/fixtures/plugins/pdk-request): what a plugin reads of the client
-- request in each phase, argument errors, phase errors.
local helpers = require "spec.helpers"

local fmt = string.format
local PLUGINS_DIR = helpers.root .. "/spec/fixtures/plugins"


-- A service on the mock upstream with one route per entry of `routes`:
-- { path = "/x", mode = "dump", strip_path = ..., regex = ... }.
local function config(mock_port, routes)
  local list = {}
  for i, rt in ipairs(routes) do
    list[i] = {
      name = "route-" .. i,
      paths = { rt.path },
      strip_path = rt.strip_path,
      plugins = {
        { name = rt.plugin or "pdk-request",
          config = { mode = rt.mode, status = rt.status,
                     message = rt.message, value = rt.value } },
      },
    }
  end
  return {
    _format_version = "3.0",
    services = {
      { name = "mock", url = fmt("http://127.0.0.1:%d", mock_port),
        routes = list },
    },
  }
end


describe("kong.request", function()
  local mock, gw, client

  lazy_setup(function()
    mock = helpers.mock_upstream()
    gw = assert(helpers.start_luagate({
      config = config(mock.port, {
        { path = "/dump", mode = "dump" },
        { path = [[~/captures/(?<id>\d+)/(\w+)$]], mode = "dump",
          strip_path = false },
        { path = "/body", mode = "body" },
        { path = "/as-json", mode = "body_as_json" },
        { path = "/errors", mode = "errors" },
        { path = "/truncated", mode = "truncated" },
        { path = "/phases", mode = "phases" },
      }),
      args = { "--plugins-dir", PLUGINS_DIR },
      log_level = "debug",
    }))
  end)

  lazy_teardown(function()
    if gw then helpers.stop_luagate(gw) end
    if mock then mock.stop() end
  end)

  before_each(function()
    client = helpers.proxy_client(gw)
  end)

  after_each(function()
    if client then client:close() end
  end)

  it("reads the request line, host, query and headers", function()
    local res = client:get("/dump/a%20b/../c?a=1&a=2&b&c=x+y", {
      headers = { Host = "Example.COM:8080", ["X-Test-Header"] = "t",
                  ["X-Multi"] = { "m1", "m2" } },
    })
    local body = assert.res_status(200, res)
    local d = assert(helpers.json_decode(body))
    assert.equal("http", d.scheme)
    assert.equal("example.com", d.host)
    assert.equal(gw.proxy_port, d.port)
    assert.equal("http", d.forwarded_scheme)
    assert.equal("example.com", d.forwarded_host)
    assert.equal(gw.proxy_port, d.forwarded_port)
    assert.equal(1.1, d.http_version)
    assert.equal("GET", d.method)
    assert.equal("/dump/c", d.path)
    assert.equal("/dump/a%20b/../c", d.raw_path)
    assert.equal("/dump/c?a=1&a=2&b&c=x+y", d.path_with_query)
    assert.equal("a=1&a=2&b&c=x+y", d.raw_query)
    assert.same({ "1", "2" }, d.query.a)
    assert.is_true(d.query.b)
    assert.equal("x y", d.query.c)
    assert.equal("1", d.query_arg)
    assert.equal("t", d.header)
    assert.equal("t", d.header_upper)
    assert.equal("t", d.headers["x-test-header"])
    assert.equal("t", d.headers_lookup)
    assert.same({ "m1", "m2" }, d.headers["x-multi"])
    assert.equal("m1", d.multi)
    assert.is_number(d.start_time)
    assert.truthy(d.start_time > 1e12) -- milliseconds
  end)

  it("gives the regex captures of the route", function()
    local res = client:get("/captures/42/abc")
    local d = assert(helpers.json_decode(assert.res_status(200, res)))
    assert.equal("/captures/42/abc", d.captures.unnamed["0"])
    assert.equal("42", d.captures.unnamed["1"])
    assert.equal("abc", d.captures.unnamed["2"])
    assert.equal("42", d.captures.named.id)
  end)

  it("reads a form body", function()
    local res = client:post("/body", {
      headers = { ["Content-Type"] = "application/x-www-form-urlencoded" },
      body = "a=1&b=two+words&a=3",
    })
    local d = assert(helpers.json_decode(assert.res_status(200, res)))
    assert.equal("a=1&b=two+words&a=3", d.raw)
    assert.same({ "1", "3" }, d.body.a)
    assert.equal("two words", d.body.b)
    assert.equal("application/x-www-form-urlencoded", d.mime)
  end)

  it("reads a JSON body, chunked", function()
    local res = client:post("/body", {
      headers = { ["Content-Type"] = "application/json; charset=utf-8" },
      chunks = { '{"a":', '[1,2],', '"b":"x"}' },
    })
    local d = assert(helpers.json_decode(assert.res_status(200, res)))
    assert.same({ a = { 1, 2 }, b = "x" }, d.body)
    assert.equal("application/json", d.mime)
  end)

  it("reports an invalid JSON body", function()
    local res = client:post("/body", {
      headers = { ["Content-Type"] = "application/json" },
      body = "[not json",
    })
    local d = assert(helpers.json_decode(assert.res_status(200, res)))
    assert.equal("invalid json body", d.body_err)
  end)

  it("reads a multipart body", function()
    local body = table.concat({
      "--BOUNDARY",
      'Content-Disposition: form-data; name="field"',
      "",
      "value",
      "--BOUNDARY--",
      "",
    }, "\r\n")
    local res = client:post("/body", {
      headers = { ["Content-Type"] =
                  "multipart/form-data; boundary=BOUNDARY" },
      body = body,
    })
    local d = assert(helpers.json_decode(assert.res_status(200, res)))
    assert.equal("value", d.body.field)
    assert.equal("multipart/form-data", d.mime)
  end)

  it("reports missing and unsupported content types", function()
    local res = client:post("/body", { body = "x" })
    local d = assert(helpers.json_decode(assert.res_status(200, res)))
    assert.equal("x", d.raw)
    assert.equal("missing content type", d.body_err)
    res = client:post("/body", {
      headers = { ["Content-Type"] = "text/plain" }, body = "x",
    })
    d = assert(helpers.json_decode(assert.res_status(200, res)))
    assert.equal("unsupported content type 'text/plain'", d.body_err)
  end)

  it("decodes with a forced mimetype", function()
    local res = client:post("/as-json", {
      headers = { ["Content-Type"] = "text/plain" }, body = '{"k":"v"}',
    })
    local d = assert(helpers.json_decode(assert.res_status(200, res)))
    assert.same({ k = "v" }, d.body)
  end)

  it("gives an empty raw body when there is none", function()
    local res = client:get("/body")
    local d = assert(helpers.json_decode(assert.res_status(200, res)))
    assert.equal("", d.raw)
  end)

  it("validates arguments like Kong", function()
    local res = client:get("/errors")
    local d = assert(helpers.json_decode(assert.res_status(200, res)))
    assert.matches("header name must be a string", d.header_name, 1, true)
    assert.matches("max_args must be a number", d.max_args_type, 1, true)
    assert.matches("max_args must be >= 1", d.max_args_low, 1, true)
    assert.matches("max_args must be <= 1000", d.max_args_high, 1, true)
    assert.matches("query argument name must be a string", d.query_arg_name,
                   1, true)
    assert.matches("max_headers must be >= 1", d.max_headers, 1, true)
    -- the error points at the plugin's code
    assert.matches("handler.lua:%d+:", d.header_name)
  end)

  it("says when it truncated", function()
    local res = client:get("/truncated?a=1&b=2&c=3",
                           { headers = { ["X-A"] = "1", ["X-B"] = "2" } })
    local d = assert(helpers.json_decode(assert.res_status(200, res)))
    assert.equal("truncated", d.query)
    assert.equal("truncated", d.headers)
  end)

  it("works in header_filter and log, refuses the body there", function()
    local res = client:get("/phases/x")
    assert.res_status(200, res)
    assert.equal("GET", res.headers["x-method"])
    assert.equal("/phases/x", res.headers["x-path"])
    assert.matches("function cannot be called in header_filter phase " ..
                   "(only in: rewrite, access, response)",
                   res.headers["x-body-error"], 1, true)
    helpers.wait_until(function()
      local log = helpers.read_file(gw.error_log) or ""
      return log:find("[pdk-request] log phase method=GET body_error=", 1,
                      true) and
             log:find("cannot be called in log phase", 1, true)
    end, 5)
  end)
end)
