-- Every bad input has a defined answer and never affects another connection.
local helpers = require "spec.helpers"

local fmt = string.format
local ngx_now = require("socket").gettime

local HEADER_TIMEOUT = 1000    -- ms
local BODY_TIMEOUT = 1000      -- ms
local KEEPALIVE_TIMEOUT = 1500 -- ms
local MAX_HEADER = 4096
local MAX_BODY = 1024 * 1024

describe("errors", function()
  local mock, gw

  lazy_setup(function()
    mock = helpers.mock_upstream()
    local refused_port = helpers.get_free_port()
    local err
    gw, err = helpers.start_luagate({
      config = {
        _format_version = "3.0",
        services = {
          { name = "echo", url = fmt("http://127.0.0.1:%d", mock.port),
            routes = { { name = "echo", paths = { "/echo" } } } },
          { name = "refused", url = fmt("http://127.0.0.1:%d", refused_port),
            routes = { { name = "refused", paths = { "/refused" } } } },
          { name = "slow", url = fmt("http://127.0.0.1:%d", mock.port),
            read_timeout = 500,
            routes = { { name = "slow", paths = { "/slow" } } } },
          -- no TLS client yet: such a request must never go out in clear
          { name = "tls", url = fmt("https://127.0.0.1:%d", mock.port),
            connect_timeout = 500,
            routes = { { name = "tls", paths = { "/tls" } } } },
        },
      },
      args = {
        "--client-header-timeout", tostring(HEADER_TIMEOUT),
        "--client-body-timeout", tostring(BODY_TIMEOUT),
        "--keepalive-timeout", tostring(KEEPALIVE_TIMEOUT),
        "--max-header-size", tostring(MAX_HEADER),
        "--max-body-size", tostring(MAX_BODY),
      },
    })
    assert(gw, err)
  end)

  lazy_teardown(function()
    helpers.stop_luagate(gw)
    if mock then mock.stop() end
  end)

  -- Sends raw bytes on a new connection and reads one response.
  local function raw_request(data)
    local raw = assert(helpers.raw_connect(gw.proxy_port))
    assert(raw:send(data))
    local res, err = raw:read_response()
    return res, err, raw
  end

  local function assert_json_error(res, status)
    local body = assert.res_status(status, res)
    local json = helpers.json_decode(body)
    assert.is_table(json, "not JSON: " .. tostring(body))
    assert.is_string(json.message)
    return json
  end

  describe("upstream failures", function()
    it("refused connection -> 502 with message and request_id", function()
      local client = helpers.proxy_client(gw)
      local res = assert(client:get("/refused/x"))
      local json = assert_json_error(res, 502)
      assert.is_string(json.request_id)
      assert.truthy(#json.request_id > 0)
      client:close()
    end)

    it("read timeout -> 504 with message and request_id", function()
      local client = helpers.proxy_client(gw)
      local t0 = helpers.gettime()
      local res = assert(client:get("/slow/delay/4"))
      local elapsed = helpers.gettime() - t0
      local json = assert_json_error(res, 504)
      assert.is_string(json.request_id)
      assert.truthy(elapsed < 3.5, "504 took " .. elapsed .. " s")
      client:close()
    end)

    it("a fast request on the slow service still succeeds", function()
      local client = helpers.proxy_client(gw)
      assert.res_status(200, assert(client:get("/slow/delay/0.05")))
      client:close()
    end)

    it("no route -> 404 JSON", function()
      local client = helpers.proxy_client(gw)
      local body = assert.res_status(404, assert(client:get("/none")))
      local json = helpers.json_decode(body)
      assert.equal("no Route matched with those values", json.message)
      json.message, json.request_id = nil, nil
      assert.same({}, json)
      client:close()
    end)
  end)

  -- (spec/02-integration/44-upstream_tls_spec.lua has upstream TLS itself)
  it("an https service whose upstream speaks plain HTTP -> 504 after the " ..
     "connect timeout (the handshake never ends), nothing sent in clear",
     function()
    local t0 = ngx_now()
    local res = assert(helpers.request_once(gw.proxy_port, {
      path = "/tls/x", headers = { ["X-Tls-Check"] = "1" } }))
    local body = assert.res_status(504, res)
    assert.equal("The upstream server is timing out", helpers.json_decode(body).message)
    assert.is_true(ngx_now() - t0 >= 0.45)
    for _, req in ipairs(mock.requests()) do
      assert.is_nil(req.headers["x-tls-check"])
    end
  end)

  describe("bad requests", function()
    local cases = {
      { "Content-Length with Transfer-Encoding",
        "POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n" ..
        "Transfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n", 400 },
      { "two different Content-Length",
        "POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n" ..
        "Content-Length: 4\r\n\r\nabcd", 400 },
      { "malformed chunk size",
        "POST /echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n" ..
        "\r\nzz\r\nabc\r\n0\r\n\r\n", 400 },
      { "whitespace before the colon",
        "GET /echo HTTP/1.1\r\nHost: x\r\nX-Foo : bar\r\n\r\n", 400 },
      { "Transfer-Encoding not ending in chunked",
        "POST /echo HTTP/1.1\r\nHost: x\r\n" ..
        "Transfer-Encoding: chunked, gzip\r\n\r\nabc", 400 },
      { "a broken request line",
        "GET /echo HTTP/1.1 extra\r\nHost: x\r\n\r\n", 400 },
      -- found by the request fuzzer (docs/fuzzing.md)
      { "Transfer-Encoding: gzip alone",
        "POST /echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip\r\n\r\n" ..
        "0\r\n\r\n", 400 },
      { "Transfer-Encoding: chunked with trailing tabs",
        "POST /echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\t\t\r\n\r\n" ..
        "0\r\n\r\n", 400 },
      { "an obs-folded header line",
        "POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\nX-A: a\r\n b\r\n\r\n",
        400 },
      { "a fragment in the request target",
        "GET /echo#frag HTTP/1.1\r\nHost: x\r\n\r\n", 400 },
      { "a control character in the request target",
        "GET /ec\fho HTTP/1.1\r\nHost: x\r\n\r\n", 400 },
      { "whitespace inside a header name",
        "POST /echo HTTP/1.1\r\nHost: x\r\nTransfer -Encoding: chunked\r\n" ..
        "Content-Length: 3\r\n\r\nabc", 400 },
      { "an obs-folded trailer line",
        "POST /echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n" ..
        "0\r\nX-T: a\r\n b\r\n\r\n", 400 },
      { "whitespace before a trailer's colon",
        "POST /echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n" ..
        "0\r\nX-T : a\r\n\r\n", 400 },
      { "an empty Transfer-Encoding beside a Content-Length",
        "POST /echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding:\r\nContent-Length: 4\r\n\r\nbody",
        400 },
      { "a trailer with an empty name",
        "POST /echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n" ..
        "0\r\n: a\r\n\r\n", 400 },
      { "header block over --max-header-size",
        "GET /echo HTTP/1.1\r\nHost: x\r\nX-Big: " ..
        string.rep("a", MAX_HEADER + 100) .. "\r\n\r\n", 431 },
      { "Content-Length over --max-body-size",
        "POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: " ..
        (MAX_BODY + 1) .. "\r\n\r\n", 413 },
    }

    for _, case in ipairs(cases) do
      it(case[1] .. " -> " .. case[3], function()
        local res, err, raw = raw_request(case[2])
        assert.is_table(res, "no response: " .. tostring(err))
        assert_json_error(res, case[3])
        -- nothing of it reached the upstream's echo
        raw:close()
      end)
    end

    it("chunked trailers are not taken for headers; the connection goes on", function()
      local raw = assert(helpers.raw_connect(gw.proxy_port))
      assert(raw:send("POST /echo/t1 HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n" ..
                      "\r\n3\r\nabc\r\n0\r\nX-Trailer: v\r\n\r\n" ..
                      "GET /echo/t2 HTTP/1.1\r\nHost: x\r\n\r\n"))
      local res1 = assert(raw:read_response())
      assert.equal(200, res1.status)
      local echo1 = helpers.json_decode(res1.body)
      assert.equal("abc", echo1.body)
      assert.is_nil(echo1.headers["x-trailer"])
      local res2 = assert(raw:read_response())
      assert.equal(200, res2.status)
      assert.equal("/t2", helpers.json_decode(res2.body).path)
      raw:close()
    end)

    it("a Connection header naming Content-Length cannot drop the body's framing", function()
      -- found by the request fuzzer: the body would reach the upstream as
      -- the next request (request smuggling)
      local raw = assert(helpers.raw_connect(gw.proxy_port))
      assert(raw:send("POST /echo/s1 HTTP/1.1\r\nHost: x\r\nConnection: Content-Length\r\n" ..
                      "Content-Length: 4\r\n\r\nbody" ..
                      "GET /echo/s2 HTTP/1.1\r\nHost: x\r\n\r\n"))
      local res1 = assert(raw:read_response())
      assert.equal(200, res1.status)
      local echo1 = helpers.json_decode(res1.body)
      assert.equal("body", echo1.body)
      assert.equal("4", echo1.headers["content-length"])
      local res2 = assert(raw:read_response())
      assert.equal("/s2", helpers.json_decode(res2.body).path)
      raw:close()
    end)

    it("an Upgrade the upstream does not switch leaves the connection usable", function()
      local raw = assert(helpers.raw_connect(gw.proxy_port))
      assert(raw:send("GET /echo/u1 HTTP/1.1\r\nHost: x\r\nConnection: upgrade\r\n" ..
                      "Upgrade: foo\r\n\r\n"))
      local res1 = assert(raw:read_response())
      assert.equal(200, res1.status)
      assert(raw:send("GET /echo/u2 HTTP/1.1\r\nHost: x\r\n\r\n"))
      local res2 = assert(raw:read_response())
      assert.equal(200, res2.status)
      assert.equal("/u2", helpers.json_decode(res2.body).path)
      raw:close()
    end)

    it("chunked body over --max-body-size -> 413", function()
      local raw = assert(helpers.raw_connect(gw.proxy_port))
      assert(raw:send("POST /echo HTTP/1.1\r\nHost: x\r\n" ..
                      "Transfer-Encoding: chunked\r\n\r\n"))
      local chunk = string.rep("z", 256 * 1024)
      for _ = 1, 6 do
        local ok = raw:send(fmt("%x\r\n%s\r\n", #chunk, chunk))
        if not ok then break end
      end
      pcall(raw.send, raw, "0\r\n\r\n")
      local res, err = raw:read_response()
      assert.is_table(res, "no response: " .. tostring(err))
      assert_json_error(res, 413)
      raw:close()
    end)

    it("a body within --max-body-size is accepted", function()
      local client = helpers.proxy_client(gw)
      local res = assert(client:post("/echo", { body = string.rep("y", 1000) }))
      assert.equal(1000, assert.response(res).has.jsonbody().body_size)
      client:close()
    end)
  end)

  describe("client timeouts", function()
    it("slow headers past --client-header-timeout: closed (408 allowed)",
       function()
      local raw = assert(helpers.raw_connect(gw.proxy_port))
      assert(raw:send("GET /echo HTTP/1.1\r\nHost: x\r\n"))
      local closed, data = raw:wait_closed(HEADER_TIMEOUT / 1000 + 4)
      assert.is_true(closed)
      if data and #data > 0 then
        assert.matches("^HTTP/1%.1 408", data)
      end
      raw:close()
    end)

    it("slow body past --client-body-timeout: closed (408 allowed)",
       function()
      local raw = assert(helpers.raw_connect(gw.proxy_port))
      assert(raw:send("POST /echo HTTP/1.1\r\nHost: x\r\n" ..
                      "Content-Length: 100\r\n\r\n0123456789"))
      local closed, data = raw:wait_closed(BODY_TIMEOUT / 1000 + 4)
      assert.is_true(closed)
      if data and #data > 0 then
        assert.matches("^HTTP/1%.1 408", data)
      end
      raw:close()
    end)

    it("an idle keepalive connection is closed after --keepalive-timeout",
       function()
      local raw = assert(helpers.raw_connect(gw.proxy_port))
      assert(raw:send("GET /echo/idle HTTP/1.1\r\nHost: x\r\n\r\n"))
      local res = assert(raw:read_response())
      assert.equal(200, res.status)
      local closed, data = raw:wait_closed(KEEPALIVE_TIMEOUT / 1000 + 4)
      assert.is_true(closed)
      assert.equal("", data or "")
      raw:close()
    end)
  end)

  describe("isolation", function()
    it("garbage on one connection does not affect another", function()
      local good = helpers.proxy_client(gw)
      assert.res_status(200, assert(good:get("/echo/before")))
      local garbage = {
        "\0\1\2\3\4\5 garbage\r\n\r\n",
        "GET /echo HTTP/1.1\r\nHost: x\r\nContent-Length: -1\r\n\r\n",
        string.rep("A", 20000) .. "\r\n\r\n",
        "GET /echo HTTP/9.9\r\n\r\n",
        "POST /echo HTTP/1.1\r\nHost: x\r\n" ..
          "Transfer-Encoding: chunked\r\n\r\n" ..
          "ffffffffffffffffffff\r\n",
      }
      for _, g in ipairs(garbage) do
        local raw = assert(helpers.raw_connect(gw.proxy_port))
        raw:send(g)
        local closed, data = raw:wait_closed(5)
        assert.is_true(closed, "connection left open after: " .. g:sub(1, 40))
        if data and #data > 0 then
          assert.matches("^HTTP/1%.1 4%d%d", data)
        end
        raw:close()
        -- the good keepalive connection still works
        local res = assert(good:get("/echo/after"))
        assert.res_status(200, res)
      end
      -- half-open connections and abrupt closes too
      for _ = 1, 20 do
        local raw = assert(helpers.raw_connect(gw.proxy_port))
        raw:send("GET /echo/abandoned HTTP/1.1\r\nHost: x\r\n")
        raw:close()
      end
      assert.res_status(200, assert(good:get("/echo/still")))
      good:close()
    end)

    it("a client that disconnects mid-response does not affect others",
       function()
      local good = helpers.proxy_client(gw)
      for _ = 1, 5 do
        local raw = assert(helpers.raw_connect(gw.proxy_port))
        raw:send("GET /echo/bytes/10000000 HTTP/1.1\r\nHost: x\r\n\r\n")
        raw:receive(1000)
        raw:close()
      end
      assert.res_status(200, assert(good:get("/echo/ok")))
      good:close()
    end)
  end)
end)
