-- request-transformer through the real binary and the mock upstream: every
-- operation on headers, querystring and bodies (JSON, form, multipart), the
-- order of operations, templates and their namespaces, header injection
-- attempts, http_method, replace.uri with regex captures.
local helpers = require "spec.helpers"

local fmt = string.format


local function rt(conf)
  return { name = "request-transformer", config = conf }
end


-- routes: { path = "/x", plugins = { ... }, strip = false }
local function config(mock_port, routes)
  local list = {}
  for i, r in ipairs(routes) do
    list[i] = { name = "route-" .. i, paths = { r.path },
                plugins = r.plugins, strip_path = r.strip }
  end
  return {
    _format_version = "3.0",
    services = {
      { name = "mock", url = fmt("http://127.0.0.1:%d", mock_port),
        routes = list },
    },
  }
end


local function echo(res, status)
  local body = assert.res_status(status or 200, res)
  return assert(helpers.json_decode(body))
end


local function sorted_list(v)
  if type(v) ~= "table" then
    return { v }
  end
  return v
end


describe("request-transformer", function()
  local mock, gw, client

  lazy_setup(function()
    mock = helpers.mock_upstream()
    gw = assert(helpers.start_luagate({
      config = config(mock.port, {
        { path = "/remove", plugins = { rt({ remove = {
            headers = { "X-Remove-1", "x-remove-2", "Host", "X-Absent" },
            querystring = { "q1", "q2", "absent" },
        } }) } },
        { path = "/rename", plugins = { rt({ rename = {
            headers = { "X-Old:X-New", "X-Absent:X-Never", "Host:X-Host" },
            querystring = { "a:b", "absent:never", "same:same" },
        } }) } },
        { path = "/replace", plugins = { rt({ replace = {
            headers = { "X-Rep:replaced", "X-Absent:nope" },
            querystring = { "q:new", "absent:nope", "flag:on" },
        } }) } },
        { path = "/add", plugins = { rt({ add = {
            headers = { "X-Add:added", "X-Exists:nope", "Host:ignored.test",
                        "X-Empty:" },
            querystring = { "n:1", "e:nope" },
        } }) } },
        -- constant header adds only: set in one PDK call (prepared)
        { path = "/add-prepared", plugins = {
            { name = "pre-function", config = {
                access = { "kong.service.request.set_header('X-Pre', 'pre')" },
            } },
            rt({ add = { headers = {
              "X-Add:added", "X-Exists:nope", "X-Twice:first",
              "X-Twice:second", "X-Pre:rt",
            } } }) } },
        -- a name with "_" is looked up as get_header does ("-" too)
        { path = "/add-underscore", plugins = { rt({ add = {
            headers = { "X_Under:rt", "X-New:added" },
        } }) } },
        { path = "/append", plugins = { rt({ append = {
            headers = { "X-App:one", "X-App:two", "X-Had:more",
                        "Host:ignored.test" },
            querystring = { "m:1", "m:2", "h:more" },
        } }) } },
        { path = "/order", plugins = { rt({
            remove = { headers = { "X-A" }, querystring = { "a" } },
            rename = { headers = { "X-B:X-C" }, querystring = { "b:c" } },
            replace = { headers = { "X-C:replaced-c" },
                        querystring = { "c:replaced-c" } },
            add = { headers = { "X-A:readded", "X-C:ignored" },
                    querystring = { "a:readded", "c:ignored" } },
            append = { headers = { "X-C:appended" },
                       querystring = { "c:appended" } },
        }) } },
        { path = "/host", plugins = { rt({ replace = {
            headers = { "Host:replaced.test" },
        } }) } },
        { path = "~/templates/(?<id>\\d+)$", plugins = {
            { name = "pre-function", config = {
                access = { "kong.ctx.shared.user = 'alice'" },
            } },
            rt({
              remove = { headers = { "X-Src" } },
              add = { headers = {
                "X-Id:$(uri_captures.id)",
                "X-Cap0:$(uri_captures[0])",
                "X-Cap1:$(uri_captures[1])",
                "X-Host:$(headers.host)",
                "X-Ua:$(headers[\"user-agent\"])",
                "X-Q:$(query_params[\"a\"] or \"d\")",
                "X-Q2:$(query_params.missing or query_params.b or 'none')",
                "X-Shared:$(shared.user)",
                "X-Rid:$(request_id)",
                "X-Multi-Copy:$(headers.x_multi)",
                "X-Flag:$(query_params.flag)",
                "X-Literal:$('$(not a template)')",
                "X-Const:pre-$(query_params.a)-post",
                "X-Missing:[$(headers.nope)]",
                "X-Copy:$(headers.x_src)",
              } },
            }),
        } },
        { path = "/inject", plugins = { rt({
            add = { headers = { "X-A:$(query_params.x)" },
                    querystring = { "y:$(query_params.x)" } },
            append = { headers = { "X-B:$(query_params.x)" } },
            replace = { headers = { "X-C:$(query_params.x)" } },
        }) } },
        { path = "/body", plugins = { rt({
            remove = { body = { "p1" } },
            rename = { body = { "p2:p2new" } },
            replace = { body = { "p3:r3" } },
            add = { body = { "p4:a4", "p3:ignored" } },
            append = { body = { "p5:x" } },
        }) } },
        { path = "/body-tmpl", plugins = { rt({
            add = { body = { "user:$(query_params.user)",
                             "true:true", "num:12" } },
        }) } },
        { path = "/method-get", plugins = { rt({ http_method = "GET" }) } },
        { path = "/method-post", plugins = { rt({ http_method = "POST" }) } },
        { path = "/method-query", plugins = { rt({
            http_method = "GET",
            add = { querystring = { "added:1" } },
        }) } },
        { path = "~/users/(?<id>\\d+)/profile$", plugins = { rt({
            replace = { uri = "/u/$(uri_captures.id)" },
        }) } },
        { path = "~/esc/(?<name>[^/]+)$", plugins = { rt({
            replace = { uri = "/n/$(uri_captures.name)" },
        }) } },
        { path = "/bad-uri", plugins = { rt({
            replace = { uri = "$(query_params.p)" },
        }) } },
        { path = "/static-uri", plugins = { rt({
            replace = { uri = "/static/path" },
        }) } },
      }),
    }))
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

  local function post(path, opts)
    local res = assert(client:post(path, opts))
    if not res.keepalive then
      client = helpers.proxy_client(gw)
    end
    return res
  end

  describe("headers", function()
    it("removes headers, case-insensitively; Host stays", function()
      local e = echo(get("/remove", { headers = {
        ["X-Remove-1"] = "1", ["X-Remove-2"] = "2", ["X-Keep"] = "k",
        Host = "client.test",
      } }))
      assert.is_nil(e.headers["x-remove-1"])
      assert.is_nil(e.headers["x-remove-2"])
      assert.equal("k", e.headers["x-keep"])
      assert.equal(fmt("127.0.0.1:%d", mock.port), e.headers.host)
    end)

    it("renames present headers with all their values", function()
      local e = echo(get("/rename", { headers = {
        ["X-Old"] = { "v1", "v2" }, Host = "client.test",
      } }))
      assert.is_nil(e.headers["x-old"])
      assert.same({ "v1", "v2" }, e.headers["x-new"])
      assert.is_nil(e.headers["x-never"])
      assert.is_nil(e.headers["x-host"]) -- Host is not renamed
    end)

    it("replaces present headers only", function()
      local e = echo(get("/replace", { headers = { ["X-Rep"] = "old" } }))
      assert.equal("replaced", e.headers["x-rep"])
      assert.is_nil(e.headers["x-absent"])
    end)

    it("adds absent headers only; never Host; no empty values", function()
      local e = echo(get("/add", { headers = { ["X-Exists"] = "mine" } }))
      assert.equal("added", e.headers["x-add"])
      assert.equal("mine", e.headers["x-exists"])
      assert.is_nil(e.headers["x-empty"])
      assert.equal(fmt("127.0.0.1:%d", mock.port), e.headers.host)
    end)

    it("adds constant values in one call, each only when absent then",
       function()
      local e = echo(get("/add-prepared",
                         { headers = { ["x-exists"] = "mine" } }))
      assert.equal("added", e.headers["x-add"])
      assert.equal("mine", e.headers["x-exists"])
      assert.equal("first", e.headers["x-twice"]) -- the second saw the first
      assert.equal("pre", e.headers["x-pre"]) -- set by an earlier plugin
      e = echo(get("/add-underscore", { headers = { ["X-Under"] = "mine" } }))
      assert.equal("mine", e.headers["x-under"])
      assert.is_nil(e.headers["x_under"])
      assert.equal("added", e.headers["x-new"])
    end)

    it("appends values, keeping the ones sent; never to Host", function()
      local e = echo(get("/append", { headers = { ["X-Had"] = "first" } }))
      assert.same({ "one", "two" }, e.headers["x-app"])
      assert.same({ "first", "more" }, e.headers["x-had"])
      assert.equal(fmt("127.0.0.1:%d", mock.port), e.headers.host)
    end)

    it("replaces Host, which changes the upstream Host", function()
      local e = echo(get("/host"))
      assert.equal("replaced.test", e.headers.host)
    end)
  end)

  describe("querystring", function()
    it("removes arguments", function()
      local e = echo(get("/remove?q1=1&q2=2&keep=k"))
      assert.same({ keep = "k" }, e.query)
    end)

    it("renames present arguments with all their values", function()
      local e = echo(get("/rename?a=1&a=2&same=s"))
      assert.same({ b = { "1", "2" }, same = "s" }, e.query)
    end)

    it("replaces present arguments only, flags included", function()
      local e = echo(get("/replace?q=old&flag&x=1"))
      assert.same({ q = "new", flag = "on", x = "1" }, e.query)
    end)

    it("adds absent arguments only", function()
      local e = echo(get("/add?e=mine"))
      assert.same({ n = "1", e = "mine" }, e.query)
    end)

    it("appends values", function()
      local e = echo(get("/append?h=first"))
      assert.same({ m = { "1", "2" }, h = { "first", "more" } }, e.query)
    end)
  end)

  describe("order", function()
    it("runs remove, rename, replace, add, append", function()
      local e = echo(get("/order?a=1&b=2", { headers = {
        ["X-A"] = "1", ["X-B"] = "2",
      } }))
      -- X-A removed then added again; X-B renamed to X-C, which replace
      -- then finds, add skips and append extends
      assert.equal("readded", e.headers["x-a"])
      assert.is_nil(e.headers["x-b"])
      assert.same({ "replaced-c", "appended" }, e.headers["x-c"])
      assert.same({ a = "readded", c = { "replaced-c", "appended" } },
                  e.query)
    end)
  end)

  describe("templates", function()
    it("render the request's headers, query, captures, shared, id",
       function()
      local e = echo(get("/templates/42?a=qa&b=qb&flag", { headers = {
        Host = "client.test", ["User-Agent"] = "spec-agent",
        ["X-Multi"] = { "m1", "m2" }, ["X-Src"] = "source",
      } }))
      local h = e.headers
      assert.equal("42", h["x-id"])
      assert.equal("/templates/42", h["x-cap0"])
      assert.equal("42", h["x-cap1"])
      assert.equal("client.test", h["x-host"])
      assert.equal("spec-agent", h["x-ua"])
      assert.equal("qa", h["x-q"])
      assert.equal("qb", h["x-q2"])
      assert.equal("alice", h["x-shared"])
      assert.matches("^%x+$", h["x-rid"])
      assert.equal(h["x-request-id"], h["x-rid"])
      assert.equal("m1, m2", h["x-multi-copy"])
      assert.equal("true", h["x-flag"])
      assert.equal("$(not a template)", h["x-literal"])
      assert.equal("pre-qa-post", h["x-const"])
      assert.equal("[]", h["x-missing"])
      -- templates read the request as it came, before any change
      assert.is_nil(h["x-src"])
      assert.equal("source", h["x-copy"])
    end)

    it("fall back to defaults", function()
      local e = echo(get("/templates/7"))
      assert.equal("d", e.headers["x-q"])
      assert.equal("none", e.headers["x-q2"])
      assert.equal("pre--post", e.headers["x-const"])
      assert.equal("7", e.headers["x-id"])
    end)
  end)

  describe("header injection", function()
    it("refuses header values with CR or LF from templates", function()
      mock.clear()
      local e = echo(get("/inject?x=a%0D%0AInjected:%201", { headers = {
        ["X-C"] = "original",
      } }))
      local h = e.headers
      assert.is_nil(h["x-a"])
      assert.is_nil(h["x-b"])
      assert.equal("original", h["x-c"])
      assert.is_nil(h["injected"])
      -- a query argument may hold them: it is encoded
      assert.equal("a\r\nInjected: 1", e.query.y)
      assert.truthy(e.uri:find("y=a%0D%0AInjected", 1, true), e.uri)
      local reqs = mock.requests()
      for name in pairs(reqs[#reqs].headers) do
        assert.not_equal("injected", name)
      end
      helpers.wait_until(function()
        local log = helpers.read_file(gw.error_log) or ""
        return log:find("refused the value of header 'X-A': it contains " ..
                        "a control character", 1, true) ~= nil
      end, 5)
    end)

    it("refuses a lone LF and other control characters too", function()
      local e = echo(get("/inject?x=a%0AX-Evil:%201"))
      assert.is_nil(e.headers["x-a"])
      assert.is_nil(e.headers["x-evil"])
      e = echo(get("/inject?x=a%00b"))
      assert.is_nil(e.headers["x-a"])
    end)

    it("sets clean values", function()
      local e = echo(get("/inject?x=fine%20value", { headers = {
        ["X-C"] = "original",
      } }))
      assert.equal("fine value", e.headers["x-a"])
      assert.equal("fine value", e.headers["x-b"])
      assert.equal("fine value", e.headers["x-c"])
    end)
  end)

  describe("JSON bodies", function()
    it("transforms top-level properties, keeping the rest as sent",
       function()
      local body = '{"p1":1,"p2":[],"p3":{"n":1},"p5":"v","keep":1.10,' ..
                   '"deep":{"p1":"stays"}}'
      local e = echo(post("/body", {
        headers = { ["Content-Type"] = "application/json" }, body = body,
      }))
      assert.equal('{"p2new":[],"p3":"r3","p5":["v","x"],"keep":1.10,' ..
                   '"deep":{"p1":"stays"},"p4":"a4"}', e.body)
      assert.equal(#e.body, e.body_size)
      assert.equal(tostring(#e.body), e.headers["content-length"])
    end)

    it("appends to an array and builds one from a value", function()
      local e = echo(post("/body", {
        headers = { ["Content-Type"] = "application/json; charset=utf-8" },
        body = '{"p5":[1,"a"],"p3":null}',
      }))
      assert.equal('{"p5":[1,"a","x"],"p3":"r3","p4":"a4"}', e.body)
    end)

    it("fills an empty body with add and append", function()
      local e = echo(post("/body", {
        headers = { ["Content-Type"] = "application/json" }, body = "",
      }))
      -- p3 is absent: add sets it
      assert.equal('{"p4":"a4","p3":"ignored","p5":["x"]}', e.body)
    end)

    it("leaves arrays, scalars and invalid JSON alone", function()
      for _, body in ipairs({ "[1,2]", '"text"', "{not json", "12" }) do
        local e = echo(post("/body", {
          headers = { ["Content-Type"] = "application/json" }, body = body,
        }))
        assert.equal(body, e.body)
      end
    end)

    it("renders templates into string values", function()
      local e = echo(post("/body-tmpl?user=bob", {
        headers = { ["Content-Type"] = "application/json" }, body = "{}",
      }))
      -- values are strings, as in Kong ("true", "12")
      assert.equal('{"user":"bob","true":"true","num":"12"}', e.body)
    end)
  end)

  describe("form bodies", function()
    it("transforms arguments", function()
      local e = echo(post("/body", {
        headers = { ["Content-Type"] = "application/x-www-form-urlencoded" },
        body = "p1=1&p2=2&p3=3&p5=v&keep=a%20b",
      }))
      assert.equal("keep=a%20b&p2new=2&p3=r3&p4=a4&p5=v&p5=x", e.body)
      assert.equal(#e.body, e.body_size)
    end)

    it("fills an empty body", function()
      local e = echo(post("/body", {
        headers = { ["Content-Type"] = "application/x-www-form-urlencoded" },
        body = "",
      }))
      assert.equal("p3=ignored&p4=a4&p5=x", e.body)
    end)
  end)

  describe("multipart bodies", function()
    local B = "spec-boundary-1234"

    local function part(name, value, extra)
      return "--" .. B .. "\r\nContent-Disposition: form-data; name=\"" ..
             name .. "\"" .. (extra or "") .. "\r\n\r\n" .. value .. "\r\n"
    end

    it("transforms parts, keeping the others byte for byte", function()
      local file = "--" .. B .. "\r\nContent-Disposition: form-data; " ..
                   "name=\"p2\"; filename=\"a.txt\"\r\nContent-Type: " ..
                   "text/plain\r\n\r\nfile\r\ncontent\r\n"
      local body = part("p1", "1") .. file .. part("p3", "3") ..
                   part("keep", "k") .. "--" .. B .. "--\r\n"
      local e = echo(post("/body", {
        headers = { ["Content-Type"] = "multipart/form-data; boundary=" .. B },
        body = body,
      }))
      local expected = "--" .. B .. "\r\nContent-Disposition: form-data; " ..
                       "name=\"p2new\"; filename=\"a.txt\"\r\nContent-Type: " ..
                       "text/plain\r\n\r\nfile\r\ncontent\r\n" ..
                       part("p3", "r3") .. part("keep", "k") ..
                       part("p4", "a4") .. part("p5", "x") ..
                       "--" .. B .. "--\r\n"
      assert.equal(expected, e.body)
      assert.equal(#expected, e.body_size)
    end)

    it("works with a quoted boundary and an empty body", function()
      local e = echo(post("/body", {
        headers = { ["Content-Type"] =
                      "multipart/form-data; boundary=\"" .. B .. "\"" },
        body = "",
      }))
      assert.equal(part("p4", "a4") .. part("p3", "ignored") ..
                   part("p5", "x") .. "--" .. B .. "--\r\n", e.body)
    end)
  end)

  it("leaves other bodies alone", function()
    local e = echo(post("/body", {
      headers = { ["Content-Type"] = "text/plain" }, body = "p1=1",
    }))
    assert.equal("p1=1", e.body)
    e = echo(post("/body", { body = "p1=1" }))
    assert.equal("p1=1", e.body)
  end)

  describe("http_method", function()
    it("changes the method", function()
      local e = echo(get("/method-post"))
      assert.equal("POST", e.method)
      e = echo(post("/method-get", { body = "x" }))
      assert.equal("GET", e.method)
    end)

    it("moves a form body's arguments into the querystring for GET",
       function()
      local e = echo(post("/method-get?a=1", {
        headers = { ["Content-Type"] = "application/x-www-form-urlencoded" },
        body = "a=2&b=3",
      }))
      assert.equal("GET", e.method)
      assert.same({ a = { "1", "2" }, b = "3" }, e.query)
    end)

    it("lets querystring operations see those arguments", function()
      local e = echo(post("/method-query", {
        headers = { ["Content-Type"] = "application/x-www-form-urlencoded" },
        body = "f=1",
      }))
      assert.same({ f = "1", added = "1" }, e.query)
    end)
  end)

  describe("replace.uri", function()
    it("sets the upstream path from regex captures, keeping the query",
       function()
      local e = echo(get("/users/42/profile?x=1"))
      assert.equal("/u/42", e.path)
      assert.same({ x = "1" }, e.query)
    end)

    it("escapes what a path cannot hold", function()
      local e = echo(get("/esc/a%20b%3Fc%23d%25e"))
      assert.equal("/n/a%20b%3Fc%23d%25e", e.path)
      assert.same({}, e.query)
    end)

    it("sets a static path", function()
      local e = echo(get("/static-uri/ignored?q=1"))
      assert.equal("/static/path", e.path)
      assert.same({ q = "1" }, e.query)
    end)

    it("fails the request when the path does not start with /", function()
      local res = get("/bad-uri?p=relative")
      local body = assert.res_status(500, res)
      local json = helpers.json_decode(body)
      assert.equal("An unexpected error occurred", json.message)
      helpers.wait_until(function()
        local log = helpers.read_file(gw.error_log) or ""
        return log:find("the uri 'relative' rendered from replace.uri " ..
                        "does not start with /", 1, true) ~= nil
      end, 5)
    end)

    it("keeps the path when the template renders nothing", function()
      local e = echo(get("/bad-uri/rest"))
      assert.equal("/rest", e.path)
    end)
  end)

  it("ignores unrelated requests' values (no state between requests)",
     function()
    local e1 = echo(get("/templates/1?a=first"))
    local e2 = echo(get("/templates/2"))
    assert.equal("first", e1.headers["x-q"])
    assert.equal("d", e2.headers["x-q"])
    assert.equal("2", e2.headers["x-id"])
    assert.same(sorted_list(e2.headers["x-shared"]), { "alice" })
  end)
end)
