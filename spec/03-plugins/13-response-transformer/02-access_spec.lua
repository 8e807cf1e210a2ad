-- response-transformer through the real binary and the mock upstream:
-- every header operation and their order, JSON body operations and
-- json_types, Content-Length handling, bodies that are not JSON objects,
-- responses the gateway itself sends (kong.response.exit), large bodies
-- arriving in many chunks.
local helpers = require "spec.helpers"

local fmt = string.format
local rep = string.rep


local function rt(conf)
  return { name = "response-transformer", config = conf }
end


local JSON_OPS = {
  remove = { json = { "method", "remote_addr", "absent" } },
  rename = { json = { "path:renamed_path", "absent:never" } },
  replace = { json = { "http_version:2", "query:q", "absent:x" },
              json_types = { "number" } },
  add = { json = { "added:true", "n:1.5", "s:str", "path:no",
                   "bad:notanumber", "uri:nope" },
          json_types = { "boolean", "number", "string", "string",
                         "number" } },
  append = { json = { "body_size:1", "list:a", "flag:false" },
             json_types = { "number", "string", "boolean" } },
}


local function config(mock_port)
  local function route(host, plugins)
    return { name = host, hosts = { host }, plugins = plugins }
  end
  return {
    _format_version = "3.0",
    services = {
      { name = "mock", url = fmt("http://127.0.0.1:%d", mock_port),
        routes = {
          route("headers.test", { rt({
            remove = { headers = { "X-Remove", "X-Absent" } },
            rename = { headers = { "X-Old:X-New", "X-Absent:X-Never" } },
            replace = { headers = { "X-Rep:replaced", "X-Absent:nope" } },
            add = { headers = { "X-Add:added", "X-Exists:nope" } },
            append = { headers = { "X-App:1", "X-App:2", "X-Had:more" } },
          }) }),
          route("order.test", { rt({
            remove = { headers = { "X-A" } },
            rename = { headers = { "X-B:X-C" } },
            replace = { headers = { "X-C:replaced-c" } },
            add = { headers = { "X-A:readded", "X-C:ignored" } },
            append = { headers = { "X-C:appended" } },
          }) }),
          route("json.test", { rt(JSON_OPS) }),
          route("exit.test", {
            { name = "pre-function", config = { access = { [[
              local body = kong.request.get_header("X-Body")
              return kong.response.exit(201, body,
                { ["Content-Type"] = kong.request.get_header("X-Type") })
            ]] } } },
            rt({ add = { json = { "added:yes" }, headers = { "X-Add:1" } } }),
          }),
        } },
    },
  }
end


local function json_of(res, status)
  local body = assert.res_status(status or 200, res)
  return assert(helpers.json_decode(body))
end


describe("response-transformer", function()
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

  local function request(method, host, path, opts)
    opts = opts or {}
    opts.method = method
    opts.path = path
    opts.headers = opts.headers or {}
    opts.headers.Host = host
    local res = assert(client:send(opts))
    if not res.keepalive then
      client = helpers.proxy_client(gw)
    end
    return res
  end

  describe("headers", function()
    it("removes, renames, replaces, adds and appends", function()
      local res = request("GET", "headers.test", "/response-headers?" ..
                          "X-Remove=1&X-Old=a&X-Old=b&X-Rep=orig&" ..
                          "X-Exists=up&X-Had=first")
      assert.res_status(200, res)
      local h = res.headers
      assert.is_nil(h["x-remove"])
      assert.is_nil(h["x-old"])
      assert.same({ "a", "b" }, h["x-new"])
      assert.is_nil(h["x-never"])
      assert.equal("replaced", h["x-rep"])
      assert.is_nil(h["x-absent"])
      assert.equal("added", h["x-add"])
      assert.equal("up", h["x-exists"])
      assert.same({ "1", "2" }, h["x-app"])
      assert.same({ "first", "more" }, h["x-had"])
      -- no JSON operation: the body is the upstream's
      local body = helpers.json_decode(res.body)
      assert.equal("/response-headers", body.path)
    end)

    it("runs remove, rename, replace, add, append in order", function()
      local res = request("GET", "order.test", "/response-headers?" ..
                          "X-A=1&X-B=2")
      assert.res_status(200, res)
      local h = res.headers
      assert.equal("readded", h["x-a"])
      assert.is_nil(h["x-b"])
      assert.same({ "replaced-c", "appended" }, h["x-c"])
    end)
  end)

  describe("JSON bodies", function()
    it("transforms top-level properties with their json_types", function()
      local res = request("GET", "json.test", "/anything?a=1")
      local body = json_of(res)
      assert.is_nil(body.method)
      assert.is_nil(body.remote_addr)
      assert.is_nil(body.never)
      -- rename first, so add finds no "path" and sets it
      assert.equal("/anything", body.renamed_path)
      assert.equal("no", body.path)
      assert.equal(2, body.http_version)
      assert.equal("q", body.query)
      assert.is_nil(body.absent)
      assert.equal(true, body.added)
      assert.equal(1.5, body.n)
      assert.equal("str", body.s)
      assert.is_nil(body.bad) -- not a number: skipped
      assert.equal("/anything?a=1", body.uri) -- present: add skips it
      assert.same({ 0, 1 }, body.body_size)
      assert.same({ "a" }, body.list)
      assert.same({ false }, body.flag)
      -- untouched properties keep their text (the mock's JSON has ", "
      -- and ": " separators; ours has none)
      assert.truthy(res.body:find('"headers":{"host": "127.0.0.1:', 1, true),
                    res.body)
      -- the length changed: sent chunked, without Content-Length
      assert.is_nil(res.headers["content-length"])
      assert.equal("chunked", res.headers["transfer-encoding"])
    end)

    it("transforms a body that arrives in many chunks", function()
      local payload = rep("x", 300000)
      local res = request("POST", "json.test", "/anything", {
        body = payload,
      })
      local body = json_of(res)
      assert.equal(payload, body.body)
      assert.same({ 300000, 1 }, body.body_size)
      assert.equal(true, body.added)
      assert.is_nil(body.method)
    end)

    it("leaves other content types alone", function()
      local res = request("GET", "json.test", "/bytes/20")
      local body = assert.res_status(200, res)
      assert.equal("abcdefghijklmnopqrst", body)
      assert.equal("application/octet-stream", res.headers["content-type"])
    end)

    it("leaves JSON that is not an object alone", function()
      for _, body in ipairs({ "{not json", "[1,2]", '"text"', "" }) do
        local res = request("GET", "exit.test", "/", { headers = {
          ["X-Body"] = body, ["X-Type"] = "application/json",
        } })
        assert.equal(body, assert.res_status(201, res))
        assert.equal("1", res.headers["x-add"])
      end
    end)

    it("transforms responses the gateway sends", function()
      local res = request("GET", "exit.test", "/", { headers = {
        ["X-Body"] = '{"from":"exit"}',
        ["X-Type"] = "application/json; charset=utf-8",
      } })
      assert.equal('{"from":"exit","added":"yes"}',
                   assert.res_status(201, res))
      res = request("GET", "exit.test", "/", { headers = {
        ["X-Body"] = '{"from":"exit"}', ["X-Type"] = "text/plain",
      } })
      assert.equal('{"from":"exit"}', assert.res_status(201, res))
    end)

    it("copes with responses without a body", function()
      local res = request("HEAD", "json.test", "/anything")
      assert.res_status(200, res)
      assert.equal("", res.body)
      res = request("GET", "json.test", "/status/204")
      assert.res_status(204, res)
      -- the connection still serves requests
      json_of(request("GET", "json.test", "/anything"))
    end)
  end)
end)
