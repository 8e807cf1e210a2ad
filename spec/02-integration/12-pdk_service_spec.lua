-- kong.service, kong.service.request and kong.service.response through the
-- real binary, with the pdk-service test plugin: the mock upstream echoes
-- what it received.
local helpers = require "spec.helpers"

local fmt = string.format
local PLUGINS_DIR = helpers.root .. "/spec/fixtures/plugins"


local function config(mock_port, routes)
  local list = {}
  for i, rt in ipairs(routes) do
    list[i] = {
      name = "route-" .. i,
      paths = { rt.path },
      strip_path = rt.strip_path,
      plugins = {
        { name = "pdk-service", config = { mode = rt.mode, value = rt.value } },
      },
    }
  end
  return {
    _format_version = "3.0",
    services = {
      { name = "mock", url = fmt("http://127.0.0.1:%d", mock_port),
        routes = list },
      -- a service whose upstream does not listen, for set_target
      { name = "dead", url = fmt("http://127.0.0.1:%d",
                                 helpers.get_free_port()),
        routes = {
          { name = "target", paths = { "/target" },
            plugins = {
              { name = "pdk-service",
                config = { mode = "target",
                           value = "127.0.0.1:" .. mock_port } },
            } },
        } },
    },
  }
end


describe("kong.service", function()
  local mock, gw, client

  lazy_setup(function()
    mock = helpers.mock_upstream()
    gw = assert(helpers.start_luagate({
      config = config(mock.port, {
        { path = "/headers", mode = "headers" },
        { path = "/prepared", mode = "prepared" },
        { path = "/path-query", mode = "path_query" },
        { path = "/set-query", mode = "set_query" },
        { path = "/clear-query-arg", mode = "clear_query_arg" },
        { path = "/method-body", mode = "method_body" },
        { path = "/json-body", mode = "json_body" },
        { path = "/form-body", mode = "form_body" },
        { path = "/scheme", mode = "scheme" },
        { path = "/timeouts", mode = "timeouts" },
        { path = "/validation", mode = "validation" },
        { path = "/service-response", mode = "service_response" },
      }),
      args = { "--plugins-dir", PLUGINS_DIR },
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

  it("sets, adds and clears upstream headers", function()
    local res = client:get("/headers", { headers = { ["X-Remove"] = "gone",
                                                     ["X-Keep"] = "k" } })
    local echo = assert(helpers.json_decode(assert.res_status(200, res)))
    assert.equal("v", echo.headers["x-added"])
    assert.equal("42", echo.headers["x-number"])
    assert.same({ "a", "b" }, echo.headers["x-multi"])
    assert.is_nil(echo.headers["x-remove"])
    assert.equal("k", echo.headers["x-keep"])
    assert.equal("1", echo.headers["x-set-a"])
    assert.same({ "2", "3" }, echo.headers["x-set-b"])
    -- kong.request.get_header sees the change
    assert.equal("v", echo.headers["x-seen"])
  end)


  it("sets prepared headers as set_header would (luagate)", function()
    local res = client:get("/prepared", { headers = {
      ["X-Set"] = "old", ["x-present"] = "mine" } })
    local echo = assert(helpers.json_decode(assert.res_status(200, res)))
    assert.equal("set", echo.headers["x-set"]) -- replaced
    assert.equal("7", echo.headers["x-num"])
    assert.equal("true", echo.headers["x-bool"])
    assert.equal("new", echo.headers["x-absent"])
    assert.equal("mine", echo.headers["x-present"])
    assert.equal("nil,nil,nil,nil,nil,nil,nil", echo.headers["x-refused"])
    assert.equal("true", echo.headers["x-host-set-ok"])
    assert.matches("handler.lua:%d+: prepared headers expected",
                   echo.headers["x-misuse"])
  end)

  it("sets the path and the raw query", function()
    local res = client:get("/path-query/ignored?old=1")
    local echo = assert(helpers.json_decode(assert.res_status(200, res)))
    assert.equal("/anything/changed", echo.path)
    assert.same({ a = "1", b = "2" }, echo.query)
  end)

  it("sets the query from a table", function()
    local res = client:get("/set-query?old=1")
    local echo = assert(helpers.json_decode(assert.res_status(200, res)))
    assert.matches("?a=1&a=2&flag&z=last", echo.uri, 1, true)
  end)

  it("clears one query argument", function()
    local res = client:get("/clear-query-arg?keep=1&drop=2&drop=3")
    local echo = assert(helpers.json_decode(assert.res_status(200, res)))
    assert.same({ keep = "1" }, echo.query)
  end)

  it("sets the method and the raw body", function()
    local res = client:post("/method-body", { body = "original" })
    local echo = assert(helpers.json_decode(assert.res_status(200, res)))
    assert.equal("PUT", echo.method)
    assert.equal("raw body", echo.body)
    assert.equal("8", echo.headers["content-length"])
  end)

  it("sets a JSON body with its content type", function()
    local res = client:post("/json-body", { body = "x" })
    local echo = assert(helpers.json_decode(assert.res_status(200, res)))
    assert.same({ a = 1, b = "two" }, helpers.json_decode(echo.body))
    assert.equal("application/json", echo.headers["content-type"])
  end)

  it("sets a form body", function()
    local res = client:post("/form-body", { body = "x" })
    local echo = assert(helpers.json_decode(assert.res_status(200, res)))
    assert.equal("a=1&b=x%20y", echo.body)
    assert.equal("application/x-www-form-urlencoded",
                 echo.headers["content-type"])
  end)

  it("accepts the http scheme, timeouts and retries", function()
    assert.res_status(200, client:get("/scheme"))
    assert.res_status(200, client:get("/timeouts"))
  end)

  it("routes to a target", function()
    local res = client:get("/target/x")
    local echo = assert(helpers.json_decode(assert.res_status(200, res)))
    assert.equal("/x", echo.path)
  end)

  it("validates arguments like Kong", function()
    local res = client:get("/validation")
    local d = assert(helpers.json_decode(assert.res_status(200, res)))
    assert.matches('invalid header name "1": got number, expected string',
                   d.header_name, 1, true)
    assert.matches("contains CR or LF", d.header_crlf, 1, true)
    -- raised at the plugin's call, as Kong's (the runtime refused it)
    assert.matches('handler.lua:17: invalid header value for "X": ' ..
                   "contains CR or LF", d.header_crlf, 1, true)
    assert.matches('handler.lua:17: invalid header value for "X": ' ..
                   "contains CR or LF", d.header_crlf_add, 1, true)
    assert.equal(54, d.refused_bytes)
    assert.equal("ok", d.other_bytes)
    assert.matches("CR, LF and NUL are not allowed", d.nul_message, 1, true)
    assert.matches("invalid header name", d.bad_name_1, 1, true)
    assert.matches("invalid header name", d.bad_name_2, 1, true)
    assert.matches("invalid scheme: ftp", d.scheme, 1, true)
    assert.matches("path must start with /", d.path, 1, true)
    assert.matches("invalid method: FETCH", d.method, 1, true)
    assert.matches("query must be a string", d.query, 1, true)
    assert.matches("args must be a table", d.args, 1, true)
    assert.matches("body must be a string", d.body, 1, true)
    assert.matches("port must be an integer between 0 and 65535",
                   d.target_port, 1, true)
    assert.matches("connect_timeout must be an integer between 1 and",
                   d.timeouts, 1, true)
    assert.matches("retries must be an integer between 0 and 32767",
                   d.retries, 1, true)
    assert.equal("could not find an Upstream named 'no-such-upstream'",
                 d.upstream)
  end)

  it("reads the upstream's response in header_filter", function()
    local res = client:get("/service-response/status/201")
    assert.res_status(201, res)
    assert.equal("201", res.headers["x-upstream-status"])
    assert.equal("application/json", res.headers["x-upstream-ct"])
    assert.equal("true", res.headers["x-upstream-has-ct"])
    assert.matches("function cannot be called in header_filter phase " ..
                   "(only in: rewrite, access)",
                   res.headers["x-set-header-phase"], 1, true)
  end)
end)
