-- post-function through the real binary and the mock upstream: it runs
-- after every other plugin in each phase (PRIORITY -1000), pre-function
-- before them (1000000): each sees what the other plugins did, or not yet.
local helpers = require "spec.helpers"

local fmt = string.format


local function config(mock_port)
  return {
    _format_version = "3.0",
    services = {
      { name = "mock", url = fmt("http://127.0.0.1:%d", mock_port),
        routes = {
          { name = "order", paths = { "/order" }, plugins = {
              { name = "pre-function", config = {
                  access = { [[
                    kong.ctx.shared.pre_saw =
                      kong.request.get_header("X-RT") or "none"
                  ]] },
                  header_filter = { [[
                    kong.ctx.shared.pre_resp_saw =
                      kong.response.get_header("X-Resp-RT") or "none"
                  ]] },
              } },
              { name = "request-transformer", config = {
                  add = { headers = { "X-RT:rt" } },
              } },
              { name = "response-transformer", config = {
                  add = { headers = { "X-Resp-RT:1" },
                          json = { "from_rt:yes" } },
              } },
              { name = "post-function", config = {
                  access = { [[
                    local sreq = kong.service.request
                    sreq.set_header("X-Post-Saw",
                                    kong.request.get_header("X-RT") or "none")
                    sreq.set_header("X-Pre-Saw", kong.ctx.shared.pre_saw)
                  ]] },
                  header_filter = { [[
                    kong.response.set_header("X-Post-Resp-Saw",
                      kong.response.get_header("X-Resp-RT") or "none")
                    kong.response.set_header("X-Pre-Resp-Saw",
                      kong.ctx.shared.pre_resp_saw)
                  ]] },
                  body_filter = { [[
                    local body = kong.response.get_raw_body()
                    if body then
                      kong.response.set_raw_body(body .. "|post")
                    end
                  ]] },
              } },
          } },
          { name = "exit", paths = { "/exit" }, plugins = {
              { name = "request-termination", config = {
                  status_code = 403, message = "terminated",
              } },
              { name = "post-function", config = {
                  access = { "kong.service.request.set_header('X-No', '1')" },
                  header_filter = {
                    "kong.response.set_header('X-Post-On-Exit', " ..
                    "kong.response.get_status())",
                  },
              } },
          } },
          { name = "error", paths = { "/error" }, plugins = {
              { name = "post-function", config = {
                  access = { "local t = nil; return t.field" },
              } },
          } },
        } },
    },
  }
end


describe("post-function", function()
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

  local function get(path)
    local res = assert(client:get(path))
    if not res.keepalive then
      client = helpers.proxy_client(gw)
    end
    return res
  end

  it("runs after the other plugins, pre-function before them", function()
    local res = get("/order")
    local body = assert.res_status(200, res)
    local json, tail = body:match("^(.*)(|post)$")
    assert.equal("|post", tail)
    local e = assert(helpers.json_decode(json))
    -- access: request-transformer (801) between pre (1000000) and post
    assert.equal("rt", e.headers["x-rt"])
    assert.equal("rt", e.headers["x-post-saw"])
    assert.equal("none", e.headers["x-pre-saw"])
    -- header_filter: response-transformer (800) between them too
    assert.equal("1", res.headers["x-resp-rt"])
    assert.equal("1", res.headers["x-post-resp-saw"])
    assert.equal("none", res.headers["x-pre-resp-saw"])
    -- body_filter: post-function sees the transformed body
    assert.equal("yes", e.from_rt)
  end)

  it("runs its header_filter on responses another plugin sent",
     function()
    mock.clear()
    local res = get("/exit")
    local body = assert.res_status(403, res)
    assert.same({ message = "terminated" }, helpers.json_decode(body))
    -- access was skipped after the exit; header_filter still ran
    assert.equal("403", res.headers["x-post-on-exit"])
    assert.same({}, mock.requests())
  end)

  it("fails the request with 500 on an error", function()
    local res = get("/error")
    local body = assert.res_status(500, res)
    assert.equal("An unexpected error occurred",
                 helpers.json_decode(body).message)
    helpers.wait_until(function()
      local log = helpers.read_file(gw.error_log) or ""
      return log:find("[post-function] access handler failed", 1, true) and
             log:find("attempt to index local 't' (a nil value)", 1,
                      true) ~= nil
    end, 5)
  end)
end)
