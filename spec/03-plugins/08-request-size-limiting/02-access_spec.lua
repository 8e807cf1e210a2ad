-- request-size-limiting through the real binary: Content-Length checked
-- without reading the body, chunked bodies read and measured, units,
-- 413 / 417 / 411 answers with Kong's messages.
local helpers = require "spec.helpers"

local fmt = string.format
local rep = string.rep

local TOO_LARGE = "Request size limit exceeded"
local LENGTH_REQUIRED = "A valid Content-Length header is required"


local function config(mock_port, routes)
  local list = {}
  for i, rt in ipairs(routes) do
    list[i] = {
      name = "route-" .. i,
      paths = { rt.path },
      plugins = { { name = "request-size-limiting", config = rt.config } },
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


-- one request on its own connection (a rejected request's connection is
-- closed when its body was not read)
local function send(gw, method, path, opts)
  local o = { method = method, path = path }
  for k, v in pairs(opts or {}) do
    o[k] = v
  end
  return helpers.request_once(gw.proxy_port, o)
end


local function json(res, status)
  return assert(helpers.json_decode(assert.res_status(status, res)))
end


describe("request-size-limiting", function()
  local mock, gw

  lazy_setup(function()
    mock = helpers.mock_upstream()
    gw = assert(helpers.start_luagate({
      config = config(mock.port, {
        { path = "/bytes", config = { allowed_payload_size = 10,
                                      size_unit = "bytes" } },
        { path = "/kilobytes", config = { allowed_payload_size = 1,
                                          size_unit = "kilobytes" } },
        { path = "/megabytes", config = { allowed_payload_size = 1 } },
        { path = "/require", config = { allowed_payload_size = 10,
                                        size_unit = "bytes",
                                        require_content_length = true } },
        { path = "/default", config = {} },
      }),
    }))
  end)

  lazy_teardown(function()
    if gw then helpers.stop_luagate(gw) end
    if mock then mock.stop() end
  end)

  describe("with Content-Length", function()
    it("proxies a body up to the limit", function()
      local res = send(gw, "POST", "/bytes", { body = "0123456789" })
      local echo = json(res, 200)
      assert.equal("0123456789", echo.body)
      res = send(gw, "POST", "/bytes", { body = "" })
      echo = json(res, 200)
      assert.equal("POST", echo.method)
    end)

    it("rejects a larger body with 413", function()
      mock.clear()
      local res = send(gw, "POST", "/bytes", { body = "0123456789A" })
      local body = json(res, 413)
      assert.equal(TOO_LARGE, body.message)
      assert.matches("^%x+$", body.request_id)
      assert.same({}, mock.requests())
    end)

    it("decides from the header alone", function()
      -- a Content-Length over the limit is refused before the body comes
      local raw = assert(helpers.raw_connect(gw.proxy_port))
      assert(raw:send("POST /bytes HTTP/1.1\r\nHost: x\r\n" ..
                      "Content-Length: 1000000\r\n\r\n"))
      local res = assert(raw:read_response("POST"))
      raw:close()
      assert.equal(413, res.status)
      assert.equal(TOO_LARGE, helpers.json_decode(res.body).message)
    end)

    it("answers 417 to a client that expects 100-continue", function()
      local raw = assert(helpers.raw_connect(gw.proxy_port))
      assert(raw:send("POST /bytes HTTP/1.1\r\nHost: x\r\n" ..
                      "Content-Length: 11\r\nExpect: 100-Continue \r\n\r\n"))
      local res = assert(raw:read_response("POST"))
      raw:close()
      assert.equal(417, res.status)
      assert.equal(TOO_LARGE, helpers.json_decode(res.body).message)
    end)

    it("recognizes Expect in linear time, and only 100-continue", function()
      for _, case in ipairs({
        { "x" .. rep(" ", 30000) .. "y", 413 },
        { rep(" ", 30000) .. "100-continue", 417 },
        { "100-continue-please", 413 },
      }) do
        local t0 = helpers.gettime()
        local res = send(gw, "POST", "/bytes", {
          headers = { Expect = case[1] }, body = "0123456789A",
        })
        assert.truthy(helpers.gettime() - t0 < 1.5)
        assert.equal(TOO_LARGE, json(res, case[2]).message)
      end
    end)

    it("lets a client expecting 100-continue send an allowed body",
       function()
      local res = send(gw, "POST", "/bytes", {
        headers = { Expect = "100-continue" }, body = "0123456789",
      })
      assert.equal("0123456789", json(res, 200).body)
    end)

    it("counts kilobytes and megabytes in powers of two", function()
      assert.equal(1024, json(send(gw, "POST", "/kilobytes", {
        body = rep("k", 1024) }), 200).body_size)
      assert.equal(TOO_LARGE, json(send(gw, "POST", "/kilobytes", {
        body = rep("k", 1025) }), 413).message)
      assert.equal(1048576, json(send(gw, "POST", "/megabytes", {
        body = rep("m", 1048576) }), 200).body_size)
      assert.equal(TOO_LARGE, json(send(gw, "POST", "/megabytes", {
        body = rep("m", 1048577) }), 413).message)
    end)
  end)

  describe("chunked", function()
    it("reads and proxies a body up to the limit", function()
      local res = send(gw, "POST", "/bytes", { chunks = { "01234", "56789" } })
      assert.equal("0123456789", json(res, 200).body)
    end)

    it("rejects a larger body with 413", function()
      mock.clear()
      local res = send(gw, "POST", "/bytes",
                       { chunks = { "01234", "56789", "A" } })
      assert.equal(TOO_LARGE, json(res, 413).message)
      assert.same({}, mock.requests())
      res = send(gw, "POST", "/kilobytes", { chunks = { rep("k", 1000),
                                                   rep("k", 25) } })
      assert.equal(TOO_LARGE, json(res, 413).message)
    end)

    it("answers 417 to a client that expects 100-continue", function()
      local res = send(gw, "POST", "/bytes", {
        headers = { Expect = "100-continue" },
        chunks = { "0123456789", "AB" },
      })
      assert.equal(TOO_LARGE, json(res, 417).message)
    end)
  end)

  describe("require_content_length", function()
    it("answers 411 to a request without Content-Length", function()
      mock.clear()
      local res = send(gw, "GET", "/require")
      local body = json(res, 411)
      assert.equal(LENGTH_REQUIRED, body.message)
      assert.matches("^%x+$", body.request_id)
      assert.same({}, mock.requests())
    end)

    it("checks a request with Content-Length as usual", function()
      assert.equal("abc", json(send(gw, "POST", "/require", { body = "abc" }),
                               200).body)
      assert.equal(TOO_LARGE, json(send(gw, "POST", "/require", {
        body = "0123456789A" }), 413).message)
      json(send(gw, "GET", "/require", {
        headers = { ["Content-Length"] = "0" } }), 200)
    end)

    it("still measures chunked requests", function()
      assert.equal("abc", json(send(gw, "POST", "/require",
                                    { chunks = { "abc" } }), 200).body)
      assert.equal(TOO_LARGE, json(send(gw, "POST", "/require", {
        chunks = { "0123456789A" } }), 413).message)
    end)
  end)

  it("lets requests without a body through by default", function()
    local echo = json(send(gw, "GET", "/default/request"), 200)
    assert.equal("/request", echo.path)
    echo = json(send(gw, "POST", "/default", { body = rep("x", 100000) }), 200)
    assert.equal(100000, echo.body_size)
  end)
end)
