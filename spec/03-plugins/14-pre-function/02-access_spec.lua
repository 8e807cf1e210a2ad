-- pre-function through the real binary and the mock upstream: code in
-- every phase, the two styles of snippet (a body, or a chunk returning the
-- function), order of snippets, exits and errors, the sandbox refusing
-- escapes while the PDK keeps working.
local helpers = require "spec.helpers"

local fmt = string.format


local function pre(conf)
  return { name = "pre-function", config = conf }
end


-- Tries each escape and answers with what happened to each.
local ESCAPES = [[
local results = {}
local function try(name, f)
  local ok, err = pcall(f)
  results[name] = ok and "allowed" or tostring(err)
end
try("os.execute", function() return os.execute("id") end)
try("os.getenv", function() return os.getenv("HOME") end)
try("io.open", function() return io.open("/etc/passwd") end)
try("io.popen", function() return io.popen("id") end)
try("require ffi", function() return require("ffi") end)
try("require os", function() return require("os") end)
try("_G.require ffi", function() return _G.require("ffi") end)
try("load", function() return load("return 1")() end)
try("loadstring", function() return loadstring("return 1")() end)
try("dofile", function() return dofile("/etc/passwd") end)
try("loadfile", function() return loadfile("/etc/passwd") end)
try("setmetatable _G", function() return setmetatable(_G, {}) end)
try("getmetatable", function() return getmetatable("").__index end)
try("rawset _G", function() return rawset(_G, "x", 1) end)
try("debug", function() return debug.getinfo(1) end)
try("package", function() return package.loaded end)
try("setfenv", function() return setfenv(1, {}) end)
try("string.dump", function() return string.dump(try) end)
try("collectgarbage", function() return collectgarbage("count") end)
try("jit.off", function() return jit.off() end)
try("overwrite kong.request", function()
  kong.request.get_header = function() return "evil" end
end)
try("overwrite kong", function() kong.request = {} end)
try("overwrite ngx.say", function() ngx.say = nil end)
try("overwrite ngx.shared", function() ngx.shared.kong = nil end)
try("overwrite cjson", function() require("cjson").encode = nil end)
try("overwrite a dictionary", function() ngx.shared.kong.get = nil end)
try("overwrite kong.cache", function() kong.cache.get = nil end)
try("yield the request", function() coroutine.yield(1) end)
return kong.response.exit(200, results)
]]


local function config(mock_port)
  local routes = {}
  local function route(path, plugins)
    routes[#routes + 1] = { name = "r" .. #routes, paths = { path },
                            plugins = plugins }
  end

  route("/basic", { pre({
    access = { "kong.service.request.set_header('X-Pre', 'access')" },
    header_filter = { "kong.response.set_header('X-Pre-Resp', 'header')" },
    body_filter = { [[
      local body = kong.response.get_raw_body()
      if body then
        kong.response.set_raw_body(body .. "\n-- appended")
      end
    ]] },
    log = { [[
      kong.log.notice("pre-function log phase ran for ",
                      ngx.var.request_id)
    ]] },
  }) })
  route("/returning", { pre({ header_filter = { [[
    local count = 0
    return function()
      count = count + 1
      kong.response.set_header("X-Count", count)
    end
  ]] } }) })
  route("/body-style", { pre({ header_filter = { [[
    hits = (hits or 0) + 1
    kong.response.set_header("X-Hits", hits)
  ]] } }) })
  route("/order", { pre({
    access = { "kong.ctx.shared.order = 'a'",
               "kong.ctx.shared.order = kong.ctx.shared.order .. 'b'",
               "return function() kong.ctx.shared.order = " ..
               "kong.ctx.shared.order .. 'c' end" },
    header_filter = { "kong.response.set_header('X-Order', " ..
                      "kong.ctx.shared.order)" },
  }) })
  route("/exit", { pre({ access = { [[
    return kong.response.exit(403, { message = "denied by pre-function" })
  ]] } }) })
  route("/exit-pcall", { pre({ access = { [[
    pcall(kong.response.exit, 418, "teapot")
    kong.service.request.set_header("X-After", "ran")
  ]] } }) })
  route("/error", { pre({ access = { "error('boom from pre-function')" } }) })
  route("/error-late", { pre({
    header_filter = { "error('late boom from pre-function')" },
  }) })
  route("/escapes", { pre({ access = { ESCAPES } }) })
  route("/after-escapes", {
    pre({ access = { "kong.service.request.set_header('X-Seen', " ..
                     "kong.request.get_header('X-In'))" } }),
    { name = "request-transformer", config = {
        add = { headers = { "X-Tmpl:$(headers.x_in)" } },
    } },
  })
  route("/functions", { pre({ functions = {
    "kong.service.request.set_header('X-Functions', 'yes')",
  } }) })
  route("/ngx", { pre({
    access = { "ngx.ctx.from_access = 'ctx-value'" },
    header_filter = { "ngx.header['X-Ctx'] = ngx.ctx.from_access " ..
                      "ngx.status = 202" },
  }) })
  route("/cjson", { pre({ access = { [[
    local cjson = require "cjson.safe"
    return kong.response.exit(200, cjson.encode({ ok = true,
                                                  n = select("#", 1, 2) }),
                              { ["Content-Type"] = "application/json" })
  ]] } }) })
  route("/objects", { pre({ access = { [[
    local first = kong.cache:get("spec-key", nil, function() return "v1" end)
    local second = kong.cache:get("spec-key", nil, function() return "v2" end)
    ngx.shared.kong:set("spec-key", "stored")
    return kong.response.exit(200, { first = first, second = second,
                                     stored = ngx.shared.kong:get("spec-key") })
  ]] } }) })
  route("/globals-a", { pre({ access = { "leaked_global = 'a'" } }) })
  route("/globals-b", { pre({ header_filter = { [[
    kong.response.set_header("X-Leak", tostring(leaked_global))
    kong.response.set_header("X-Global-Kong", tostring(_G.kong ~= nil))
  ]] } }) })
  route("/sleep", { pre({ access = { [[
    ngx.sleep(0.05)
    kong.service.request.set_header("X-Slept", "yes")
  ]] } }) })

  return {
    _format_version = "3.0",
    services = {
      { name = "mock", url = fmt("http://127.0.0.1:%d", mock_port),
        routes = routes },
    },
    plugins = {
      -- a global instance: rewrite runs global plugins only
      pre({ rewrite = { [[
        if kong.request.get_path() == "/basic" then
          kong.service.request.set_header("X-Rewrite", "global")
        end
      ]] } }),
    },
  }
end


describe("pre-function", function()
  local mock, gw, client

  lazy_setup(function()
    mock = helpers.mock_upstream()
    gw = assert(helpers.start_luagate({ config = config(mock.port) }))
    client = helpers.proxy_client(gw)
  end)

  lazy_teardown(function()
    if client then client:close() end
    if gw then helpers.stop_luagate(gw) end
    if mock then mock.stop() end
  end)

  local function get(path, opts)
    local res = assert(client:get(path, opts))
    if not res.keepalive then
      client = helpers.proxy_client(gw)
    end
    return res
  end

  local function log_has(text)
    helpers.wait_until(function()
      local log = helpers.read_file(gw.error_log) or ""
      return log:find(text, 1, true) ~= nil
    end, 5)
  end

  it("runs code in rewrite, access, header_filter, body_filter and log",
     function()
    local res = get("/basic")
    local body = assert.res_status(200, res)
    local json_part, tail = body:match("^(.*)\n(%-%- appended)$")
    assert.equal("-- appended", tail)
    local e = assert(helpers.json_decode(json_part))
    assert.equal("access", e.headers["x-pre"])
    assert.equal("global", e.headers["x-rewrite"])
    assert.equal("header", res.headers["x-pre-resp"])
    log_has("pre-function log phase ran for " .. e.headers["x-request-id"])
  end)

  it("calls the function a chunk returns, keeping its upvalues",
     function()
    for i = 1, 3 do
      local res = get("/returning")
      assert.res_status(200, res)
      assert.equal(tostring(i), res.headers["x-count"])
    end
  end)

  it("runs a body-style chunk on every request (and once at load, as " ..
     "Kong does)", function()
    local first = tonumber(get("/body-style").headers["x-hits"])
    local second = tonumber(get("/body-style").headers["x-hits"])
    assert.equal(2, first)
    assert.equal(3, second)
  end)

  it("runs the snippets of a phase in order", function()
    local res = get("/order")
    assert.res_status(200, res)
    assert.equal("abc", res.headers["x-order"])
  end)

  it("may end the request with kong.response.exit", function()
    mock.clear()
    local res = get("/exit")
    local body = assert.res_status(403, res)
    assert.same({ message = "denied by pre-function" },
                helpers.json_decode(body))
    assert.same({}, mock.requests())
  end)

  it("exits even through pcall", function()
    mock.clear()
    local res = get("/exit-pcall")
    assert.equal("teapot", assert.res_status(418, res))
    assert.same({}, mock.requests())
  end)

  it("fails the request with 500 on an error in access", function()
    local res = get("/error")
    local body = assert.res_status(500, res)
    local json = helpers.json_decode(body)
    assert.equal("An unexpected error occurred", json.message)
    assert.matches("^%x+$", json.request_id)
    log_has("boom from pre-function")
  end)

  it("logs an error in header_filter and sends the response", function()
    local res = get("/error-late")
    assert.res_status(200, res)
    log_has("late boom from pre-function")
  end)

  it("refuses sandbox escapes", function()
    local res = get("/escapes")
    local r = assert(helpers.json_decode(assert.res_status(200, res)))
    local function refused(name, text)
      assert.is_string(r[name], name)
      assert.truthy(r[name]:find(text, 1, true), name .. ": " .. r[name])
    end
    refused("os.execute", "attempt to call field 'execute' (a nil value)")
    refused("os.getenv", "attempt to call field 'getenv' (a nil value)")
    refused("io.open", "attempt to call field 'open' (a nil value)")
    refused("io.popen", "attempt to call field 'popen' (a nil value)")
    refused("require ffi", "require 'ffi' not allowed within sandbox")
    refused("require os", "require 'os' not allowed within sandbox")
    refused("_G.require ffi", "require 'ffi' not allowed within sandbox")
    refused("load", "attempt to call global 'load' (a nil value)")
    refused("loadstring", "attempt to call global 'loadstring'")
    refused("dofile", "attempt to call global 'dofile'")
    refused("loadfile", "attempt to call global 'loadfile'")
    refused("setmetatable _G", "attempt to call global 'setmetatable'")
    refused("getmetatable", "attempt to call global 'getmetatable'")
    refused("rawset _G", "attempt to call global 'rawset'")
    refused("debug", "attempt to index global 'debug' (a nil value)")
    refused("package", "attempt to index global 'package' (a nil value)")
    refused("setfenv", "attempt to call global 'setfenv'")
    refused("string.dump", "attempt to call field 'dump' (a nil value)")
    refused("collectgarbage", "attempt to call global 'collectgarbage'")
    refused("jit.off", "attempt to call field 'off' (a nil value)")
    refused("overwrite kong.request", "Cannot modify " ..
            "kong.request.get_header. Protected by the sandbox.")
    refused("overwrite kong", "Cannot modify kong.request. Protected by " ..
            "the sandbox.")
    refused("overwrite ngx.say", "Cannot modify ngx.say. Protected by " ..
            "the sandbox.")
    refused("overwrite ngx.shared", "Cannot modify ngx.shared.kong. " ..
            "Protected by the sandbox.")
    refused("overwrite cjson", "Cannot modify cjson.encode. Protected by " ..
            "the sandbox.")
    refused("overwrite a dictionary", "Cannot modify ngx.shared.kong.get. " ..
            "Protected by the sandbox.")
    refused("overwrite kong.cache", "Cannot modify kong.cache.get. " ..
            "Protected by the sandbox.")
    refused("yield the request", "attempt to yield from outside a " ..
            "coroutine created by the code")
  end)

  it("leaves the PDK intact for every plugin after escape attempts",
     function()
    get("/escapes")
    local e = assert(helpers.json_decode(assert.res_status(200,
      get("/after-escapes", { headers = { ["X-In"] = "in" } }))))
    assert.equal("in", e.headers["x-seen"])
    assert.equal("in", e.headers["x-tmpl"])
  end)

  it("accepts Kong 2.x's functions as access code", function()
    local e = assert(helpers.json_decode(assert.res_status(200,
                                                           get("/functions"))))
    assert.equal("yes", e.headers["x-functions"])
  end)

  it("gives ngx.ctx, ngx.header and ngx.status", function()
    local res = get("/ngx")
    assert.res_status(202, res)
    assert.equal("ctx-value", res.headers["x-ctx"])
  end)

  it("may require allowed modules", function()
    local res = get("/cjson")
    local body = assert.res_status(200, res)
    assert.same({ ok = true, n = 2 }, helpers.json_decode(body))
  end)

  it("calls methods of kong.cache and ngx.shared dictionaries", function()
    local body = assert.res_status(200, get("/objects"))
    assert.same({ first = "v1", second = "v1", stored = "stored" },
                helpers.json_decode(body))
  end)

  it("keeps each snippet's globals to itself", function()
    assert.res_status(200, get("/globals-a"))
    local res = get("/globals-b")
    assert.res_status(200, res)
    assert.equal("nil", res.headers["x-leak"])
    assert.equal("true", res.headers["x-global-kong"])
  end)

  it("may wait without blocking the worker", function()
    local e = assert(helpers.json_decode(assert.res_status(200,
                                                           get("/sleep"))))
    assert.equal("yes", e.headers["x-slept"])
  end)
end)
