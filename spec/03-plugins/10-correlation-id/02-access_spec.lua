-- correlation-id through the real binary: each generator's format, the
-- upstream header, an incoming id kept, echo_downstream (on proxied and
-- rejected responses), the id in the log serializer.
local helpers = require "spec.helpers"

local fmt = string.format

local UUID = "%x%x%x%x%x%x%x%x%-%x%x%x%x%-4%x%x%x%-[89ab]%x%x%x%-" ..
             "%x%x%x%x%x%x%x%x%x%x%x%x"
local FIXTURES = helpers.root .. "/spec/03-plugins/10-correlation-id/fixtures"


local function config(mock_port, routes)
  local list = {}
  for i, rt in ipairs(routes) do
    local plugins = { { name = "correlation-id", config = rt.config },
                      { name = "cid-report" } }
    for _, p in ipairs(rt.extra or {}) do
      plugins[#plugins + 1] = p
    end
    list[i] = { name = "route-" .. i, paths = { rt.path },
                plugins = plugins }
  end
  return {
    _format_version = "3.0",
    services = {
      { name = "mock", url = fmt("http://127.0.0.1:%d", mock_port),
        routes = list },
    },
  }
end


local function upstream_id(res, header)
  local echo = assert(helpers.json_decode(assert.res_status(200, res)))
  return echo.headers[header or "kong-request-id"]
end


describe("correlation-id", function()
  local mock, gw, client

  lazy_setup(function()
    mock = helpers.mock_upstream()
    gw = assert(helpers.start_luagate({
      config = config(mock.port, {
        { path = "/default", config = {} },
        { path = "/uuid", config = { generator = "uuid" } },
        { path = "/tracker", config = { generator = "tracker" } },
        { path = "/echo", config = { echo_downstream = true } },
        { path = "/custom", config = { header_name = "X-Correlation-ID",
                                       generator = "uuid",
                                       echo_downstream = true } },
        { path = "/rejected", config = { echo_downstream = true },
          extra = { { name = "request-termination",
                      config = { status_code = 451,
                                 message = "Unavailable" } } } },
      }),
      args = { "--plugins-dir", FIXTURES },
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

  it("sends '<worker uuid>#<counter>' upstream by default", function()
    local id1 = upstream_id(client:get("/default"))
    local id2 = upstream_id(client:get("/default"))
    local uuid1, n1 = id1:match("^(" .. UUID .. ")#(%d+)$")
    local uuid2, n2 = id2:match("^(" .. UUID .. ")#(%d+)$")
    assert.truthy(uuid1, id1)
    assert.equal(uuid1, uuid2) -- one worker
    assert.equal(tonumber(n1) + 1, tonumber(n2))
  end)

  it("does not echo the id unless asked", function()
    local res = client:get("/default")
    assert.res_status(200, res)
    assert.is_nil(res.headers["kong-request-id"])
  end)

  it("sends a new random uuid per request with 'uuid'", function()
    local seen = {}
    for _ = 1, 20 do
      local id = upstream_id(client:get("/uuid"))
      assert.matches("^" .. UUID .. "$", id)
      assert.is_nil(seen[id])
      seen[id] = true
    end
  end)

  it("builds the tracker id from the connection and the time", function()
    local before = os.time()
    local id = upstream_id(client:get("/tracker"))
    local addr, port, pid, conn, n, now =
      id:match("^(.-)%-(%d+)%-(%d+)%-(%d+)%-(%d+)%-(%d+%.%d%d%d)$")
    assert.truthy(addr, id)
    -- the address the request arrived on (the proxy listens on 127.0.0.1)
    assert.equal("127.0.0.1", addr)
    assert.equal(gw.proxy_port, tonumber(port))
    local workers = helpers.worker_pids(gw)
    assert.truthy(#workers > 0)
    local found = false
    for _, w in ipairs(workers) do
      found = found or tonumber(w) == tonumber(pid)
    end
    assert.is_true(found, pid)
    -- the client's port stands in for the connection number
    local _, client_port = client.sock:getsockname()
    assert.equal(tonumber(client_port), tonumber(conn))
    assert.truthy(tonumber(n) >= 1)
    assert.truthy(tonumber(now) >= before - 1 and
                  tonumber(now) <= os.time() + 1)
    -- the count goes on
    local id2 = upstream_id(client:get("/tracker"))
    assert.equal(tonumber(n) + 1, tonumber(id2:match("%-(%d+)%-[%d.]+$")))
  end)

  it("keeps an id the client sent", function()
    local res = client:get("/echo", {
      headers = { ["Kong-Request-ID"] = "client-id-42" },
    })
    assert.equal("client-id-42", upstream_id(res))
    assert.equal("client-id-42", res.headers["kong-request-id"])
  end)

  it("replaces an empty id the client sent", function()
    local res = client:get("/echo", { headers = { ["Kong-Request-ID"] = "" } })
    local id = upstream_id(res)
    assert.matches("^" .. UUID .. "#%d+$", id)
    assert.equal(id, res.headers["kong-request-id"])
  end)

  it("echoes the id it generated", function()
    local res = client:get("/echo")
    local id = upstream_id(res)
    assert.matches("^" .. UUID .. "#%d+$", id)
    assert.equal(id, res.headers["kong-request-id"])
  end)

  it("uses the configured header name", function()
    local res = client:get("/custom")
    local id = upstream_id(res, "x-correlation-id")
    assert.matches("^" .. UUID .. "$", id)
    assert.equal(id, res.headers["x-correlation-id"])
    assert.is_nil(res.headers["kong-request-id"])
  end)

  it("echoes the id on a response another plugin produced", function()
    mock.clear()
    local res = client:get("/rejected")
    local body = assert(helpers.json_decode(assert.res_status(451, res)))
    assert.equal("Unavailable", body.message)
    assert.matches("^" .. UUID .. "#%d+$", res.headers["kong-request-id"])
    assert.same({}, mock.requests())
    res = client:get("/rejected",
                     { headers = { ["Kong-Request-ID"] = "mine" } })
    assert.res_status(451, res)
    assert.equal("mine", res.headers["kong-request-id"])
  end)

  it("gives the id to the log serializer", function()
    local res = client:get("/uuid/logged-path")
    local id = upstream_id(res)
    local line = helpers.wait_until(function()
      for _, l in ipairs(helpers.file_lines(gw.error_log)) do
        if l:find("cid-report uri=/uuid/logged-path ", 1, true) then
          return l
        end
      end
    end, 10)
    assert.matches("correlation_id=" .. id, line, 1, true)

    res = client:get("/echo/logged-too", {
      headers = { ["Kong-Request-ID"] = "kept-in-log" },
    })
    assert.res_status(200, res)
    line = helpers.wait_until(function()
      for _, l in ipairs(helpers.file_lines(gw.error_log)) do
        if l:find("cid-report uri=/echo/logged-too ", 1, true) then
          return l
        end
      end
    end, 10)
    assert.matches("correlation_id=kept-in-log", line, 1, true)
  end)
end)
