-- kong.response (and kong.log.serialize) through the real binary, with the
-- pdk-response test plugin (spec/fixtures/plugins/pdk-response).
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
        { name = "pdk-response",
          config = { mode = rt.mode, status = rt.status,
                     message = rt.message } },
      },
    }
    for _, p in ipairs(rt.extra or {}) do
      table.insert(list[i].plugins, p)
    end
  end
  return {
    _format_version = "3.0",
    services = {
      { name = "mock", url = fmt("http://127.0.0.1:%d", mock_port),
        routes = list },
    },
  }
end


describe("kong.response", function()
  local mock, gw, client

  lazy_setup(function()
    mock = helpers.mock_upstream()
    gw = assert(helpers.start_luagate({
      config = config(mock.port, {
        { path = "/exit-table", mode = "exit_table", status = 403,
          message = "nope" },
        { path = "/exit-string", mode = "exit_string", status = 201,
          message = "plain body" },
        { path = "/exit-no-body", mode = "exit_no_body", status = 204 },
        { path = "/error", mode = "error", status = 403 },
        { path = "/error-msg", mode = "error", status = 429,
          message = "Slow down" },
        { path = "/error-ct", mode = "error_ct", status = 400 },
        { path = "/set-status", mode = "set_status", status = 299 },
        { path = "/validation", mode = "validation" },
        { path = "/headers", mode = "headers", strip_path = false },
        { path = "/body", mode = "body" },
        { path = "/serialize", mode = "serialize" },
        -- request-termination's access runs after pdk-response's
        -- (priority 2 < 900); response-transformer has a header_filter
        { path = "/exit-packed", mode = "exit_packed", status = 203,
          extra = { { name = "request-termination",
                      config = { status_code = 418 } },
                    { name = "response-transformer",
                      config = { add = { headers = { "X-RT:1" } } } } } },
        { path = "/exit-packed-alone", mode = "exit_packed", status = 203 },
        { path = "/pack-refused", mode = "pack_refused" },
        { path = "/prepared", mode = "prepared" },
        { path = "/prepare-refused", mode = "prepare_refused" },
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

  describe("exit()", function()
    it("sends a table as JSON with the headers given", function()
      local res = client:get("/exit-table")
      local body = assert.res_status(403, res)
      assert.same({ message = "nope" }, helpers.json_decode(body))
      assert.equal("application/json; charset=utf-8",
                   res.headers["content-type"])
      assert.equal("1", res.headers["x-exit"])
      assert.equal(tostring(#body), res.headers["content-length"])
      -- header_filter still runs and sees the source
      assert.equal("exit", res.headers["x-source"])
    end)

    it("sends a string as is, with multi-value headers", function()
      local res = client:get("/exit-string")
      assert.equal("plain body", assert.res_status(201, res))
      assert.equal("text/plain", res.headers["content-type"])
      assert.same({ "a", "b" }, res.headers["x-multi"])
    end)

    it("stops the handler and keeps earlier headers", function()
      local res = client:get("/exit-no-body")
      assert.res_status(204, res)
      assert.equal("kept", res.headers["x-before-exit"])
      assert.is_nil(res.headers["x-after-exit"])
    end)

    it("never reaches the upstream", function()
      mock.clear()
      assert.res_status(403, client:get("/exit-table"))
      assert.same({}, mock.requests())
    end)
  end)

  describe("exit_packed() and pack_headers() (luagate)", function()
    it("answers like exit() and runs no later access handler", function()
      mock.clear()
      local res = client:get("/exit-packed")
      assert.equal("packed body", assert.res_status(203, res))
      assert.equal("text/plain", res.headers["content-type"])
      assert.same({ "a", "b" }, res.headers["x-multi"])
      assert.equal("5", res.headers["x-num"])
      assert.equal("kept", res.headers["x-before-exit"])
      assert.equal("11", res.headers["content-length"])
      -- the plugin is done with the request: its own header_filter does not
      -- run (it would set X-Source), another plugin's does
      assert.is_nil(res.headers["x-source"])
      assert.equal("1", res.headers["x-rt"])
      assert.same({}, mock.requests())
    end)

    it("leaves out the phases no other plugin has", function()
      local res = client:get("/exit-packed-alone")
      assert.equal("packed body", assert.res_status(203, res))
      assert.is_nil(res.headers["x-source"])
      -- exit() on the same plugin runs its header_filter
      res = client:get("/exit-no-body")
      assert.res_status(204, res)
      assert.equal("exit", res.headers["x-source"])
      -- nor its log handler: the log phase of a request runs before the
      -- next request on the connection is answered (and the error log is
      -- written at once)
      assert.is_nil((helpers.read_file(gw.error_log) or ""):find(
        "log ran after exit_packed", 1, true))
    end)

    it("packs only what exit() would take as it is", function()
      local d = helpers.json_decode(assert.res_status(200,
                                    client:get("/pack-refused")))
      assert.same({ crlf = true, lf_in_array = true, te = true,
                    empty_array = true, table_value = true,
                    non_string_name = true, ok = true,
                    bad_packed = "malformed packed headers",
                    crlf_packed = "CR, LF and NUL are not allowed",
                    truncated_packed = "malformed packed headers",
                    unnamed_packed = "invalid header name",
                    table_body = "body must be a nil or string",
                    no_packed = "packed headers must be a string " ..
                                "(kong.response.pack_headers)",
                    bad_status = "code must be a number",
                    memo_type = "memo must be a table",
                    memo_deadline = "memo.deadline must be a number",
                    memo_no_deps = "memo.deps must hold 1 to 4 values",
                    memo_bad_dep = "memo.deps[1] must be { dict = a " ..
                      "shared dictionary, key = a string, version = a " ..
                      "number, expires = a number }",
                    memo_bad_header = "memo.headers[1] must be a header name",
                  }, d)
    end)
  end)

  describe("prepare_headers() and set_prepared_headers() (luagate)",
           function()
    it("sets the headers as set_header would, slots in place", function()
      local res = client:get("/prepared")
      assert.res_status(200, res)
      local h = res.headers
      assert.equal("fixed", h["x-p-set"]) -- one value: the others replaced
      assert.equal("12345678901234", h["x-p-int"])
      assert.equal("-42", h["x-p-neg"])
      assert.equal("12345678901234", h["x-p-again"])
      assert.equal("true", h["x-p-bool"])
      assert.equal("1.5", h["x-p-num"])
      assert.is_string(h["x-p-empty"])
      assert.equal(h["x-s-empty"], h["x-p-empty"])
      -- the values the runtime does not write go header by header
      assert.equal("2.5", h["x-f-frac"])
      assert.equal(h["x-s-frac"], h["x-f-frac"])
      assert.equal(h["x-s-big"], h["x-f-big"])
      assert.equal("0", h["x-f-zero"])
      assert.equal(h["x-s-zero"], h["x-f-zero"])
      assert.equal(h["x-s-negzero"], h["x-f-negzero"])
      assert.equal("s", h["x-f-str"])
    end)

    it("prepares only what set_header would take as it is", function()
      local d = helpers.json_decode(assert.res_status(200,
                                    client:get("/prepare-refused")))
      assert.matches('invalid header value for "X": got table',
                     d.bad_slot_value, 1, true)
      d.bad_slot_value = nil
      assert.matches("prepared headers expected", d.not_prepared, 1, true)
      d.not_prepared = nil
      assert.same({ crlf = true, te = true, bad_name = true,
                    table_value = true, slot_0 = true, slot_5 = true,
                    slot_str = true, not_pair = true, not_list = true,
                    empty = true }, d)
    end)
  end)

  describe("error()", function()
    it("sends Kong's default JSON error with the request id", function()
      local res = client:get("/error")
      local body = assert.res_status(403, res)
      local d = assert(helpers.json_decode(body))
      assert.equal("Forbidden", d.message)
      assert.is_string(d.request_id)
      assert.equal("application/json; charset=utf-8",
                   res.headers["content-type"])
    end)

    it("uses the message given", function()
      local res = client:get("/error-msg")
      local d = assert(helpers.json_decode(assert.res_status(429, res)))
      assert.equal("Slow down", d.message)
    end)

    it("negotiates with Accept", function()
      local res = client:get("/error", { headers = { Accept = "text/html" } })
      local body = assert.res_status(403, res)
      assert.equal("text/html; charset=utf-8", res.headers["content-type"])
      assert.matches("<p>Forbidden.</p>", body, 1, true)

      res = client:get("/error", {
        headers = { Accept = "application/xml;q=0.9, text/plain" },
      })
      body = assert.res_status(403, res)
      assert.equal("text/plain; charset=utf-8", res.headers["content-type"])
      assert.matches("^Forbidden\nrequest_id: ", body)

      res = client:get("/error", { headers = { Accept = "application/xml" } })
      body = assert.res_status(403, res)
      assert.matches("<message>Forbidden</message>", body, 1, true)
    end)

    it("follows a Content-Type given in the headers", function()
      local res = client:get("/error-ct",
                             { headers = { Accept = "application/json" } })
      local body = assert.res_status(400, res)
      assert.equal("text/plain", res.headers["content-type"])
      assert.matches("^Bad request\nrequest_id: ", body)
    end)
  end)

  it("sets the status in access for the upstream's response", function()
    local res = client:get("/set-status")
    assert.res_status(299, res)
  end)

  it("keeps headers set in access on the proxied response", function()
    local res = client:get("/set-status")
    assert.res_status(299, res)
    assert.equal("1", res.headers["x-set-in-access"])
  end)

  it("validates arguments and phases like Kong", function()
    local res = client:get("/validation")
    local d = assert(helpers.json_decode(assert.res_status(200, res)))
    assert.matches("code must be a number$", d.status_type)
    assert.matches("code must be a number between 100 and 599",
                   d.status_range, 1, true)
    assert.matches("body must be a nil, string or table", d.body_type, 1,
                   true)
    assert.matches("headers must be a nil or table", d.headers_type, 1, true)
    assert.matches("code must be a number between 400 and 599",
                   d.error_range, 1, true)
    assert.matches('invalid header value for "X": got table', d.header_value,
                   1, true)
    assert.matches("contains CR or LF", d.header_crlf, 1, true)
    -- raised at the plugin's call, as Kong's (the runtime refused it)
    assert.matches('handler.lua:16: invalid header value for "X": ' ..
                   "contains CR or LF", d.header_crlf, 1, true)
    assert.matches('handler.lua:16: invalid header value for "X": ' ..
                   "contains CR or LF", d.header_crlf_add, 1, true)
    assert.matches("function cannot be called in access phase (only in: " ..
                   "response, header_filter, body_filter, log)",
                   d.get_status_phase, 1, true)
    assert.matches("function cannot be called in access phase (only in: " ..
                   "body_filter)", d.raw_body_phase, 1, true)
  end)

  it("reads and changes headers in header_filter", function()
    local res = client:get("/headers/response-headers?X-Remove-Me=1")
    assert.res_status(200, res)
    assert.equal("200", res.headers["x-status-seen"])
    assert.equal("service", res.headers["x-source"])
    assert.equal("application/json", res.headers["x-ct-seen"])
    assert.same({ "1", "2" }, res.headers["x-added"])
    assert.equal("a", res.headers["x-set-1"])
    assert.same({ "b", "c" }, res.headers["x-set-2"])
    assert.is_nil(res.headers["x-remove-me"])
    assert.equal("true", res.headers["x-count-ok"])
  end)

  it("buffers the body with get_raw_body and replaces it", function()
    local res = client:get("/body/stream/3")
    local body = assert.res_status(200, res)
    assert.matches("^%[", body)
    assert.matches("%]$", body)
    assert.matches('"PATH"', body, 1, true)
    -- one bracket pair: the chunks were held back and sent once
    local _, n = body:gsub("%[", "")
    assert.equal(1, n)
  end)

  it("serializes the request for loggers", function()
    local res = client:get("/serialize/x?q=1", {
      headers = { Authorization = "Bearer secret", ["X-Custom"] = "c" },
    })
    assert.res_status(200, res)
    local obj
    helpers.wait_until(function()
      local log = helpers.read_file(gw.error_log) or ""
      local json = log:match("%[pdk%-response%] serialize: ([^\n]+)")
      obj = json and helpers.json_decode(json)
      return obj
    end, 5)
    assert.equal("GET", obj.request.method)
    assert.equal("/serialize/x?q=1", obj.request.uri)
    assert.equal(fmt("http://127.0.0.1:%d/serialize/x?q=1", gw.proxy_port),
                 obj.request.url)
    assert.same({ q = "1" }, obj.request.querystring)
    assert.equal("REDACTED", obj.request.headers.authorization)
    assert.equal("c", obj.request.headers["x-custom"])
    assert.equal(200, obj.response.status)
    assert.is_number(obj.response.size)
    assert.is_number(obj.latencies.request)
    assert.is_number(obj.latencies.kong)
    assert.equal("200", obj.upstream_status)
    assert.equal("127.0.0.1", obj.client_ip)
    assert.is_number(obj.started_at)
    assert.equal("route-11", obj.route.name)
    assert.equal("mock", obj.service.name)
    assert.equal("value", obj.custom.field)
  end)

  -- needs the path the runtime computed (route strip_path + service path):
  -- ffi.h has no getter for it yet, so kong.log.serialize and
  -- ngx.var.upstream_uri fall back to the client's path
  it("gives the upstream URI as proxied", function()
    assert.res_status(200, client:get("/serialize/up?q=2"))
    local obj
    helpers.wait_until(function()
      local log = helpers.read_file(gw.error_log) or ""
      for json in log:gmatch("%[pdk%-response%] serialize: ([^\n]+)") do
        local o = helpers.json_decode(json)
        if o and o.request.uri == "/serialize/up?q=2" then
          obj = o
        end
      end
      return obj
    end, 5)
    assert.equal("/up?q=2", obj.upstream_uri)
  end)
end)
