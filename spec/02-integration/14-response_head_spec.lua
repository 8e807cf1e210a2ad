-- The head of a proxied response whose plugins set response headers in
-- access: written straight from the upstream's head when no plugin has a
-- phase that reads the response (resp-early), from the header lists
-- otherwise (resp-early-log: the same access handler and a log handler).
-- Both ways must send the same head.
local helpers = require "spec.helpers"

local fmt = string.format
local lower = string.lower
local PLUGINS_DIR = helpers.root .. "/spec/fixtures/plugins"

-- headers that differ between two responses of the mock upstream (its
-- body echoes the request: the route's path, the connection)
local VARYING = { ["x-mock-connection-id"] = true, date = true,
                  ["content-length"] = true }


local function head_of(res, method)
  local list = {}
  for _, h in ipairs(res.raw_headers) do
    if not VARYING[lower(h[1])] then
      list[#list + 1] = h[1] .. ": " .. h[2]
    end
  end
  local cl = res.headers["content-length"]
  if cl and method ~= "HEAD" then
    assert.equal(tostring(#res.body), cl)
  end
  return { status = res.status, reason = res.reason, headers = list }
end


describe("response head after access-phase headers", function()
  local mock, gw

  lazy_setup(function()
    mock = helpers.mock_upstream()
    gw = assert(helpers.start_luagate({
      config = {
        _format_version = "3.0",
        services = {
          { name = "mock", url = fmt("http://127.0.0.1:%d", mock.port),
            routes = {
              { name = "early", paths = { "/early" },
                plugins = { { name = "resp-early" } } },
              { name = "early-log", paths = { "/early-log" },
                plugins = { { name = "resp-early-log" } } },
            } },
        },
      },
      args = { "--plugins-dir", PLUGINS_DIR },
    }))
  end)

  lazy_teardown(function()
    if gw then helpers.stop_luagate(gw) end
    if mock then mock.stop() end
  end)

  -- the response of `request` (a format string for the route's path) on
  -- a new connection
  local function raw(request, path)
    local c = assert(helpers.raw_connect(gw.proxy_port))
    assert(c:send(fmt(request, path)))
    local method = request:match("^(%u+)")
    local res = assert(c:read_response(method))
    c.sock:close()
    return res
  end

  local REQUESTS = {
    ["GET"] = "GET %s/anything HTTP/1.1\r\nHost: x\r\n\r\n",
    ["GET, Connection: close"] =
      "GET %s/anything HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    ["GET over HTTP/1.0"] = "GET %s/anything HTTP/1.0\r\nHost: x\r\n\r\n",
    ["HTTP/1.0 keep-alive"] =
      "GET %s/anything HTTP/1.0\r\nHost: x\r\nConnection: keep-alive\r\n\r\n",
    ["HEAD"] = "HEAD %s/anything HTTP/1.1\r\nHost: x\r\n\r\n",
    ["a 204"] = "GET %s/status/204 HTTP/1.1\r\nHost: x\r\n\r\n",
    ["a 426"] = "GET %s/status/426 HTTP/1.1\r\nHost: x\r\n\r\n",
    ["a 500"] = "GET %s/status/500 HTTP/1.1\r\nHost: x\r\n\r\n",
    ["a chunked body"] = "GET %s/stream/3 HTTP/1.1\r\nHost: x\r\n\r\n",
  }

  for what, request in pairs(REQUESTS) do
    it("is the same both ways: " .. what, function()
      local method = request:match("^(%u+)")
      local direct = head_of(raw(request, "/early"), method)
      local lists = head_of(raw(request, "/early-log"), method)
      assert.same(lists, direct)
    end)
  end

  it("replaces the upstream's headers and drops hop-by-hop ones; numbers " ..
     "are sent as tostring() makes them", function()
    for _, path in ipairs({ "/early", "/early-log" }) do
      local res = raw(REQUESTS.GET, path)
      assert.equal(200, res.status)
      assert.equal("text/x-early", res.headers["content-type"])
      assert.same({ "a", "b" }, res.headers["x-early"])
      assert.same({ "42", "43" }, res.headers["x-num"])
      assert.equal("-7", res.headers["x-neg"])
      assert.equal("99999999999999", res.headers["x-big"])
      assert.equal("1e+14", res.headers["x-huge"])
      assert.equal("1.5", res.headers["x-frac"])
      assert.equal("0", res.headers["x-zero"])
      assert.equal(tostring(-0.0), res.headers["x-neg-zero"])
      assert.is_nil(res.headers["x-gone"])
      assert.is_nil(res.headers["keep-alive"])
      assert.is_nil(res.headers["upgrade"])
      assert.is_string(res.headers["x-mock-connection-id"])
      assert.equal(tostring(#res.body), res.headers["content-length"])
      assert.equal("/anything",
                   helpers.json_decode(res.body).path)
    end
  end)

  it("sends the plugin's Upgrade with a 426", function()
    local res = raw(REQUESTS["a 426"], "/early")
    assert.equal(426, res.status)
    assert.equal("h2c", res.headers["upgrade"])
  end)
end)
