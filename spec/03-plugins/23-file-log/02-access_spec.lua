-- file-log through the real binary: one JSON line per request (the log
-- serializer's object), credentials redacted, custom_fields_by_lua,
-- rejected and unrouted requests, reopen and rotation, an unwritable path,
-- and whole lines when two workers write the same file.
local helpers = require "spec.helpers"

local fmt = string.format

local BOB_ID = "5f8e0b3a-1c2d-4e5f-8a9b-0c1d2e3f4a5b"


local function decode_lines(path)
  local out = {}
  for _, line in ipairs(helpers.file_lines(path)) do
    out[#out + 1] = assert(helpers.json_decode(line), "not JSON: " .. line)
  end
  return out
end


-- waits until path holds n lines; returns them decoded
local function wait_lines(path, n, timeout)
  return helpers.wait_until(function()
    local lines = decode_lines(path)
    if #lines >= n then
      return lines
    end
  end, timeout or 10)
end


local function find_entry(entries, uri)
  for _, e in ipairs(entries) do
    if e.request and e.request.uri == uri then
      return e
    end
  end
end


describe("file-log", function()
  local mock, gw, client, dir

  lazy_setup(function()
    mock = helpers.mock_upstream()
    dir = helpers.make_prefix("file-log")
    gw = assert(helpers.start_luagate({
      config = {
        _format_version = "3.0",
        services = {
          { name = "mock-svc", url = fmt("http://127.0.0.1:%d", mock.port),
            routes = {
              { name = "plain", paths = { "/plain" },
                plugins = {
                  { name = "file-log",
                    config = { path = dir .. "/plain.log" } },
                } },
              { name = "custom", paths = { "/custom" },
                plugins = {
                  { name = "file-log",
                    config = {
                      path = dir .. "/custom.log",
                      custom_fields_by_lua = {
                        route = "return nil",
                        ["new_field"] = "return 42",
                        ["extra.client_header"] =
                          "return kong.request.get_header('x-client')",
                        ["request.method"] = "return 'REWRITTEN'",
                        ["broken"] = "error('boom')",
                        ["bad_type"] = "return function() end",
                      },
                    } },
                } },
              { name = "rejected", paths = { "/rejected" },
                plugins = {
                  { name = "file-log",
                    config = { path = dir .. "/rejected.log" } },
                  { name = "request-termination",
                    config = { status_code = 418, message = "no tea" } },
                } },
              { name = "reopen", paths = { "/reopen" },
                plugins = {
                  { name = "file-log",
                    config = { path = dir .. "/reopen.log",
                               reopen = true } },
                } },
              { name = "keep", paths = { "/keep" },
                plugins = {
                  { name = "file-log",
                    config = { path = dir .. "/keep.log" } },
                } },
              { name = "unwritable", paths = { "/unwritable" },
                plugins = {
                  { name = "file-log",
                    config = { path = dir .. "/no/such/dir/x.log" } },
                } },
              { name = "keyauth", paths = { "/keyauth" },
                plugins = {
                  { name = "key-auth",
                    config = { hide_credentials = true } },
                  { name = "file-log",
                    config = { path = dir .. "/keyauth.log" } },
                } },
            } },
        },
        consumers = {
          { id = BOB_ID, username = "bob",
            keyauth_credentials = { { key = "secret-key-123" } } },
        },
        plugins = {
          -- global: sees what no route took
          { name = "file-log", config = { path = dir .. "/global.log" } },
        },
      },
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

  it("writes the log object of each request as one JSON line", function()
    local res = client:get("/plain/one?a=1&b=x", {
      headers = { ["X-Test"] = "hello" },
    })
    assert.res_status(200, res)
    res = client:post("/plain/two", { body = "abc" })
    assert.res_status(200, res)

    local lines = wait_lines(dir .. "/plain.log", 2)
    assert.equal(2, #lines)
    local e = lines[1]
    assert.equal("/plain/one?a=1&b=x", e.request.uri)
    assert.equal("GET", e.request.method)
    assert.same({ a = "1", b = "x" }, e.request.querystring)
    assert.equal("hello", e.request.headers["x-test"])
    assert.equal(200, e.response.status)
    assert.equal("plain", e.route.name)
    assert.equal("mock-svc", e.service.name)
    assert.equal("127.0.0.1", e.client_ip)
    assert.is_number(e.started_at)
    assert.is_number(e.latencies.request)
    assert.is_number(e.latencies.kong)
    assert.is_number(e.latencies.proxy)
    assert.truthy(e.response.size > 0)
    assert.equal("/plain/two", lines[2].request.uri)
    assert.equal("POST", lines[2].request.method)
    -- one object per line, nothing else
    local raw = helpers.read_file(dir .. "/plain.log")
    assert.equal(2, select(2, raw:gsub("\n", "")))
    assert.equal("\n", raw:sub(-1))
  end)

  it("does not write credentials", function()
    local res = client:get("/plain/creds", {
      headers = {
        Authorization = "Basic dXNlcjpwYXNzd29yZA==",
        ["Proxy-Authorization"] = "Bearer proxy-secret",
        Cookie = "session=cookie-secret",
      },
    })
    assert.res_status(200, res)
    local lines = wait_lines(dir .. "/plain.log", 3)
    local e = assert(find_entry(lines, "/plain/creds"))
    assert.equal("REDACTED", e.request.headers.authorization)
    assert.equal("REDACTED", e.request.headers["proxy-authorization"])
    assert.equal("REDACTED", e.request.headers.cookie)
    local raw = helpers.read_file(dir .. "/plain.log")
    assert.is_nil(raw:find("dXNlcjpwYXNzd29yZA", 1, true))
    assert.is_nil(raw:find("proxy-secret", 1, true))
    assert.is_nil(raw:find("cookie-secret", 1, true))
  end)

  it("does not write a key hidden by key-auth's hide_credentials", function()
    local res = client:get("/keyauth/x", {
      headers = { apikey = "secret-key-123" },
    })
    assert.res_status(200, res)
    local lines = wait_lines(dir .. "/keyauth.log", 1)
    assert.equal("bob", lines[1].consumer.username)
    assert.is_nil(lines[1].consumer.keyauth_credentials)
    assert.is_nil(lines[1].request.headers.apikey)
    local raw = helpers.read_file(dir .. "/keyauth.log")
    assert.is_nil(raw:find("secret-key-123", 1, true))
  end)

  -- Kong: key-auth's hide_credentials clears the query argument with
  -- kong.service.request.clear_query_arg, which changes the request's
  -- args, so serialize().request.querystring (kong.request.get_query())
  -- no longer has it (request.uri, the original request line, still does,
  -- in Kong too).
  it("does not write a query key hidden by hide_credentials", function()
    local res = client:get("/keyauth/q?apikey=secret-key-123&x=1")
    assert.res_status(200, res)
    local lines = wait_lines(dir .. "/keyauth.log", 2)
    local e = lines[2]
    assert.equal("1", e.request.querystring.x)
    assert.is_nil(e.request.querystring.apikey)
  end)

  it("applies custom_fields_by_lua", function()
    local res = client:get("/custom/x", {
      headers = { ["X-Client"] = "c-42" },
    })
    assert.res_status(200, res)
    local e = wait_lines(dir .. "/custom.log", 1)[1]
    assert.is_nil(e.route)              -- removed
    assert.equal(42, e.new_field)       -- added
    assert.equal("c-42", e.extra.client_header) -- nested
    assert.equal("REWRITTEN", e.request.method) -- replaced
    assert.is_nil(e.broken)             -- failed: left alone
    assert.is_nil(e.bad_type)
    assert.equal("/custom/x", e.request.uri) -- the rest is intact
    local log = helpers.wait_until(function()
      local data = helpers.read_file(gw.error_log) or ""
      if data:find("custom_fields_by_lua 'broken' failed: ", 1, true) then
        return data
      end
    end, 10)
    assert.matches("boom", log, 1, true)
    assert.matches("custom_fields_by_lua 'bad_type' returned a function",
                   log, 1, true)
  end)

  it("logs requests another plugin rejected", function()
    local res = client:get("/rejected/x")
    assert.res_status(418, res)
    local e = wait_lines(dir .. "/rejected.log", 1)[1]
    assert.equal(418, e.response.status)
    assert.equal("/rejected/x", e.request.uri)
    assert.equal("rejected", e.route.name)
  end)

  it("logs requests no route took (global instance)", function()
    local res = client:get("/nowhere/at/all")
    assert.res_status(404, res)
    local lines = helpers.wait_until(function()
      local l = decode_lines(dir .. "/global.log")
      if find_entry(l, "/nowhere/at/all") then
        return l
      end
    end, 10)
    local e = find_entry(lines, "/nowhere/at/all")
    assert.equal(404, e.response.status)
    assert.is_nil(e.route)
  end)

  it("follows a rotated file with reopen", function()
    assert.res_status(200, client:get("/reopen/1"))
    wait_lines(dir .. "/reopen.log", 1)
    assert(os.rename(dir .. "/reopen.log", dir .. "/reopen.log.1"))
    assert.res_status(200, client:get("/reopen/2"))
    local lines = wait_lines(dir .. "/reopen.log", 1)
    assert.equal("/reopen/2", lines[1].request.uri)
    assert.equal(1, #decode_lines(dir .. "/reopen.log.1"))
  end)

  it("keeps writing to the open file without reopen", function()
    assert.res_status(200, client:get("/keep/1"))
    wait_lines(dir .. "/keep.log", 1)
    assert(os.rename(dir .. "/keep.log", dir .. "/keep.log.1"))
    assert.res_status(200, client:get("/keep/2"))
    local lines = wait_lines(dir .. "/keep.log.1", 2)
    assert.equal("/keep/2", lines[2].request.uri)
    assert.is_nil(helpers.read_file(dir .. "/keep.log"))
  end)

  it("logs an error for a file it cannot open; requests go on", function()
    local res = client:get("/unwritable/x")
    assert.res_status(200, res)
    helpers.wait_until(function()
      local data = helpers.read_file(gw.error_log) or ""
      return data:find("[file-log] failed to open the file '" .. dir ..
                       "/no/such/dir/x.log': No such file or directory",
                       1, true)
    end, 10)
  end)
end)


describe("file-log with two workers", function()
  local mock, gw, dir

  lazy_setup(function()
    mock = helpers.mock_upstream()
    dir = helpers.make_prefix("file-log-workers")
    gw = assert(helpers.start_luagate({
      workers = 2,
      config = {
        _format_version = "3.0",
        services = {
          { name = "mock-svc", url = fmt("http://127.0.0.1:%d", mock.port),
            routes = {
              { name = "many", paths = { "/many" },
                plugins = {
                  { name = "file-log",
                    config = {
                      path = dir .. "/many.log",
                      -- a long line: partial writes would show
                      custom_fields_by_lua = {
                        padding = "return string.rep('x', 20000)",
                      },
                    } },
                } },
            } },
        },
      },
    }))
  end)

  lazy_teardown(function()
    if gw then helpers.stop_luagate(gw) end
    if mock then mock.stop() end
  end)

  it("keeps every line whole", function()
    local N = 200
    local clients = {}
    for i = 1, 8 do
      clients[i] = helpers.proxy_client(gw)
    end
    for i = 1, N do
      local c = clients[(i % 8) + 1]
      assert.res_status(200, c:get("/many/" .. i))
    end
    for _, c in ipairs(clients) do
      c:close()
    end
    local lines = wait_lines(dir .. "/many.log", N, 20)
    assert.equal(N, #lines)
    local seen = {}
    for _, e in ipairs(lines) do
      assert.equal(20000, #e.padding)
      seen[e.request.uri] = true
    end
    for i = 1, N do
      assert.truthy(seen["/many/" .. i], "/many/" .. i)
    end
  end)
end)
