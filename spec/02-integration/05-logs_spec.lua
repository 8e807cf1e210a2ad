-- Access log (one JSON line per request) and what the logs never contain.
local helpers = require "spec.helpers"

local fmt = string.format
local cjson_null = require("cjson").null

local SECRET_AUTH = "Bearer S3CRET-auth-token-4f9a"
local SECRET_COOKIE = "session=C00KIE-value-77e1"

local function name_of(v)
  if type(v) == "table" then
    return v.name
  end
  if v == cjson_null then
    return nil
  end
  return v
end

describe("logs", function()
  local mock, gw

  lazy_setup(function()
    mock = helpers.mock_upstream()
    local err
    gw, err = helpers.start_luagate({
      log_level = "debug",
      config = {
        _format_version = "3.0",
        services = {
          { name = "echo-svc", url = fmt("http://127.0.0.1:%d", mock.port),
            routes = { { name = "echo-route", paths = { "/echo" } } } },
          { name = "refused-svc",
            url = fmt("http://127.0.0.1:%d", helpers.get_free_port()),
            routes = { { name = "refused-route", paths = { "/refused" } } } },
        },
      },
    })
    assert(gw, err)
  end)

  lazy_teardown(function()
    helpers.stop_luagate(gw)
    if mock then mock.stop() end
  end)

  local function entries_after(n, count)
    return helpers.wait_until(function()
      local list = helpers.access_log_entries(gw)
      if #list >= n + count then
        return { unpack(list, n + 1) }
      end
    end, 10)
  end

  it("writes one JSON line per request with the agreed keys", function()
    local n = #helpers.access_log_entries(gw)
    local client = helpers.proxy_client(gw)
    local res = assert(client:post("/echo/logged", { body = "0123456789" }))
    assert.res_status(200, res)
    local upstream_id = assert.request(res).has.header("x-request-id")
    res = assert(client:get("/not-routed"))
    assert.res_status(404, res)
    client:close()

    local list = entries_after(n, 2)
    assert.equal(2, #list)
    local e = list[1]
    assert.is_nil(e._raw, "not JSON: " .. tostring(e._raw))
    for _, key in ipairs({ "time", "request_id", "client_ip", "method",
                           "path", "status", "bytes_in", "bytes_out",
                           "latency_ms", "route", "service" }) do
      assert.is_not_nil(e[key], "missing key " .. key)
    end
    assert.equal(upstream_id, e.request_id)
    assert.equal("127.0.0.1", e.client_ip)
    assert.equal("POST", e.method)
    assert.equal("/echo/logged", e.path)
    assert.equal(200, e.status)
    assert.truthy(e.bytes_in >= 10, "bytes_in " .. tostring(e.bytes_in))
    assert.truthy(e.bytes_out > #res.body)
    assert.is_table(e.latency_ms)
    for _, k in ipairs({ "total", "upstream", "gateway" }) do
      assert.is_number(e.latency_ms[k], "latency_ms." .. k)
      assert.truthy(e.latency_ms[k] >= 0)
    end
    assert.equal("echo-route", name_of(e.route))
    assert.equal("echo-svc", name_of(e.service))

    local e2 = list[2]
    assert.equal("GET", e2.method)
    assert.equal("/not-routed", e2.path)
    assert.equal(404, e2.status)
    assert.is_nil(name_of(e2.route))
    assert.not_equal(e.request_id, e2.request_id)
  end)

  it("logs upstream failures with their status", function()
    local n = #helpers.access_log_entries(gw)
    local res = assert(helpers.request_once(gw.proxy_port,
                                            { path = "/refused/x" }))
    local body = assert.res_status(502, res)
    local list = entries_after(n, 1)
    assert.equal(502, list[1].status)
    assert.equal(helpers.json_decode(body).request_id, list[1].request_id)
  end)

  it("never writes Authorization or Cookie values", function()
    local n = #helpers.access_log_entries(gw)
    local headers = { Authorization = SECRET_AUTH, Cookie = SECRET_COOKIE,
                      ["Proxy-Authorization"] = SECRET_AUTH }
    local client = helpers.proxy_client(gw)
    assert.res_status(200, assert(client:get("/echo/s", { headers = headers })))
    assert.res_status(404, assert(client:get("/nope", { headers = headers })))
    assert.res_status(502, assert(client:get("/refused/s",
                                             { headers = headers })))
    client:close()
    -- and a request that is rejected while parsing
    local raw = assert(helpers.raw_connect(gw.proxy_port))
    raw:send("GET /echo HTTP/1.1\r\nHost: x\r\nAuthorization: " ..
             SECRET_AUTH ..
             "\r\nCookie: " .. SECRET_COOKIE .. "\r\nX-Bad : y\r\n\r\n")
    raw:wait_closed(5)
    raw:close()
    entries_after(n, 3)
    helpers.sleep(0.3)
    for _, path in ipairs({ gw.access_log, gw.error_log, gw.stdout,
                            gw.stderr }) do
      local data = helpers.read_file(path) or ""
      assert.is_nil(data:find("S3CRET", 1, true), path .. " has the token")
      assert.is_nil(data:find("C00KIE", 1, true), path .. " has the cookie")
    end
  end)

  describe("--access-log", function()
    it("stdout writes the lines to standard output", function()
      local g = assert(helpers.start_luagate({
        config = helpers.simple_config(mock.port), access_log = "stdout",
      }))
      finally(function() helpers.stop_luagate(g) end)
      assert.res_status(200, assert(helpers.request_once(g.proxy_port,
                                      { path = "/to-stdout" })))
      helpers.wait_until(function()
        for line in (helpers.read_file(g.stdout) or ""):gmatch("[^\n]+") do
          local e = helpers.json_decode(line)
          if type(e) == "table" and e.path == "/to-stdout" then
            return true
          end
        end
      end, 10)
    end)

    it("off writes no access log", function()
      local g = assert(helpers.start_luagate({
        config = helpers.simple_config(mock.port), access_log = "off",
      }))
      finally(function() helpers.stop_luagate(g) end)
      assert.res_status(200, assert(helpers.request_once(g.proxy_port,
                                      { path = "/quiet" })))
      helpers.sleep(0.5)
      local out = helpers.read_file(g.stdout) or ""
      assert.is_nil(out:find("/quiet", 1, true))
      assert.is_nil(helpers.read_file(g.prefix .. "/off"))
      assert.is_nil(helpers.read_file(g.prefix .. "/access.log"))
    end)
  end)
end)
