-- http-log through the real binary, against a recording log server
-- (spec/fixtures/otlp_collector.py): the request made for each entry
-- (method, headers, Basic auth from the URL, JSON object or array),
-- batching, retries with backoff, giving up, queue limits (max_entries,
-- max_bytes), shared queues, concurrency_limit, custom fields, redaction,
-- an unreachable server.
local helpers = require "spec.helpers"

local fmt = string.format


-- The recording server. srv.requests(path): the requests it got for that
-- path (all when nil), oldest first, read from its record file.
local function start_collector()
  local dir = helpers.make_prefix("collector")
  local record = dir .. "/requests.jsonl"
  local srv = helpers.start_server(fmt("%s %s --record %s",
    helpers.shell_quote(helpers.python),
    helpers.shell_quote(helpers.root .. "/spec/fixtures/otlp_collector.py"),
    helpers.shell_quote(record)), "collector")
  function srv.requests(path)
    local out = {}
    for _, line in ipairs(helpers.file_lines(record)) do
      local r = assert(helpers.json_decode(line))
      if path == nil or r.path == path then
        out[#out + 1] = r
      end
    end
    return out
  end
  function srv.wait(path, n, timeout)
    return helpers.wait_until(function()
      local list = srv.requests(path)
      if #list >= n then
        return list
      end
    end, timeout or 10)
  end
  return srv
end


local function error_log_has(gw, text, timeout)
  return helpers.wait_until(function()
    local data = helpers.read_file(gw.error_log) or ""
    if data:find(text, 1, true) then
      return data
    end
  end, timeout or 10)
end


local function b64(s)
  return (require("mime").b64(s))
end


describe("http-log", function()
  local mock, collector, gw, client, closed_port

  lazy_setup(function()
    mock = helpers.mock_upstream()
    collector = start_collector()
    closed_port = helpers.get_free_port()
    local base = fmt("http://127.0.0.1:%d", collector.port)

    local function route(name, conf, extra)
      local plugins = { { name = "http-log", config = conf } }
      for _, p in ipairs(extra or {}) do
        plugins[#plugins + 1] = p
      end
      return { name = name, paths = { "/" .. name }, plugins = plugins }
    end

    gw = assert(helpers.start_luagate({
      config = {
        _format_version = "3.0",
        services = {
          { name = "mock-svc", url = fmt("http://127.0.0.1:%d", mock.port),
            routes = {
              route("default", { http_endpoint = base .. "/default" }),
              route("put", {
                http_endpoint = fmt("http://user:p%%40ss@127.0.0.1:%d/put",
                                    collector.port),
                method = "PUT",
                content_type = "application/json; charset=utf-8",
                headers = { ["X-Api-Key"] = "k1", ["X-Other"] = "v",
                            authorization = "Bearer configured" },
              }),
              route("authhdr", {
                http_endpoint = base .. "/authhdr",
                headers = { Authorization = "Bearer configured" },
              }),
              route("patch", { http_endpoint = base .. "/patch",
                               method = "PATCH" }),
              route("batch", {
                http_endpoint = base .. "/batch",
                queue = { max_batch_size = 3, max_coalescing_delay = 1 },
              }),
              route("retry", {
                http_endpoint = base .. "/fail/2/retry",
                queue = { initial_retry_delay = 0.2, max_retry_delay = 1 },
              }),
              route("giveup", {
                http_endpoint = base .. "/status/500/giveup",
                queue = { initial_retry_delay = 0.1, max_retry_delay = 0.2,
                          max_retry_time = 1 },
              }),
              route("limit", {
                http_endpoint = base .. "/delay/1.5/limit",
                queue = { max_entries = 2 },
              }),
              route("bytes", {
                http_endpoint = base .. "/bytes",
                queue = { max_bytes = 100 },
              }),
              route("custom", {
                http_endpoint = base .. "/custom",
                custom_fields_by_lua = {
                  route = "return nil",
                  ["extra.method"] = "return kong.request.get_method()",
                },
              }),
              route("unreachable", {
                http_endpoint = fmt("http://127.0.0.1:%d/x", closed_port),
                queue = { initial_retry_delay = 0.05,
                          max_retry_delay = 0.1, max_retry_time = 0.5 },
              }),
              route("shared-a", {
                http_endpoint = base .. "/shared",
                queue = { max_batch_size = 2, max_coalescing_delay = 3 },
              }),
              route("shared-b", {
                http_endpoint = base .. "/shared",
                queue = { max_batch_size = 2, max_coalescing_delay = 3 },
              }),
              route("shared-c", {
                http_endpoint = base .. "/shared",
                headers = { ["X-Queue"] = "c" },
                queue = { max_batch_size = 2, max_coalescing_delay = 0.2 },
              }),
              route("concurrent", {
                http_endpoint = base .. "/delay/1/concurrent",
                queue = { concurrency_limit = -1 },
              }),
              route("serial", {
                http_endpoint = base .. "/delay/0.5/serial",
              }),
              route("rejected", { http_endpoint = base .. "/rejected" }, {
                { name = "request-termination",
                  config = { status_code = 403, message = "go away" } },
              }),
            } },
        },
      },
    }))
  end)

  lazy_teardown(function()
    if gw then helpers.stop_luagate(gw) end
    if collector then collector.stop() end
    if mock then mock.stop() end
  end)

  before_each(function()
    client = helpers.proxy_client(gw)
  end)

  after_each(function()
    if client then client:close() end
  end)

  it("POSTs each entry as a JSON object", function()
    local res = client:get("/default/x?q=1", {
      headers = { ["X-Test"] = "t1" },
    })
    assert.res_status(200, res)
    local r = collector.wait("/default", 1)[1]
    assert.equal("POST", r.method)
    assert.equal("application/json", r.headers["content-type"])
    assert.equal(fmt("127.0.0.1:%d", collector.port), r.headers.host)
    assert.equal(tostring(#r.body), r.headers["content-length"])
    local e = assert(helpers.json_decode(r.body))
    assert.equal("/default/x?q=1", e.request.uri)
    assert.equal("GET", e.request.method)
    assert.equal("t1", e.request.headers["x-test"])
    assert.equal(200, e.response.status)
    assert.equal("default", e.route.name)
    assert.equal("mock-svc", e.service.name)
    assert.is_nil(r.headers.authorization)
  end)

  it("uses the method, content type, headers and URL credentials", function()
    assert.res_status(200, client:get("/put/y"))
    local r = collector.wait("/put", 1)[1]
    assert.equal("PUT", r.method)
    assert.equal("application/json; charset=utf-8",
                 r.headers["content-type"])
    assert.equal("k1", r.headers["x-api-key"])
    assert.equal("v", r.headers["x-other"])
    -- the URL's credentials win over a configured Authorization
    assert.equal("Basic " .. b64("user:p@ss"), r.headers.authorization)
    assert.equal("/put/y", helpers.json_decode(r.body).request.uri)

    assert.res_status(200, client:get("/patch/z"))
    r = collector.wait("/patch", 1)[1]
    assert.equal("PATCH", r.method)

    assert.res_status(200, client:get("/authhdr"))
    r = collector.wait("/authhdr", 1)[1]
    assert.equal("Bearer configured", r.headers.authorization)
  end)

  it("logs requests another plugin rejected", function()
    assert.res_status(403, client:get("/rejected"))
    local e = helpers.json_decode(collector.wait("/rejected", 1)[1].body)
    assert.equal(403, e.response.status)
  end)

  it("redacts credentials", function()
    assert.res_status(200, client:get("/default/creds", {
      headers = { Authorization = "Bearer top-secret",
                  Cookie = "sid=cookie-secret" },
    }))
    local list = collector.wait("/default", 2)
    local body = list[#list].body
    local e = helpers.json_decode(body)
    assert.equal("/default/creds", e.request.uri)
    assert.equal("REDACTED", e.request.headers.authorization)
    assert.equal("REDACTED", e.request.headers.cookie)
    assert.is_nil(body:find("top-secret", 1, true))
    assert.is_nil(body:find("cookie-secret", 1, true))
  end)

  it("sends batches as JSON arrays", function()
    local t0 = helpers.gettime()
    for i = 1, 3 do
      assert.res_status(200, client:get("/batch/" .. i))
    end
    local r = collector.wait("/batch", 1)[1]
    local batch = assert(helpers.json_decode(r.body))
    assert.equal(3, #batch)
    for i = 1, 3 do
      assert.equal("/batch/" .. i, batch[i].request.uri)
    end
    -- a full batch goes at once, not after max_coalescing_delay
    assert.truthy(r.time - t0 < 0.9, r.time - t0)

    -- a partial batch waits for max_coalescing_delay (1 s)
    local t1 = helpers.gettime()
    assert.res_status(200, client:get("/batch/4"))
    assert.res_status(200, client:get("/batch/5"))
    r = collector.wait("/batch", 2)[2]
    batch = assert(helpers.json_decode(r.body))
    assert.equal(2, #batch)
    assert.equal("/batch/4", batch[1].request.uri)
    assert.equal("/batch/5", batch[2].request.uri)
    assert.truthy(r.time - t1 >= 0.8, r.time - t1)
    assert.truthy(r.time - t1 < 5, r.time - t1)
  end)

  it("retries a failing request with exponential backoff", function()
    assert.res_status(200, client:get("/retry/1"))
    local list = collector.wait("/fail/2/retry", 3)
    assert.equal(500, list[1].status)
    assert.equal(500, list[2].status)
    assert.equal(200, list[3].status)
    assert.equal(list[1].body, list[2].body)
    assert.equal(list[1].body, list[3].body)
    assert.equal("/retry/1", helpers.json_decode(list[3].body).request.uri)
    local gap1 = list[2].time - list[1].time
    local gap2 = list[3].time - list[2].time
    assert.truthy(gap1 >= 0.15, gap1)  -- initial_retry_delay 0.2
    assert.truthy(gap2 >= 0.35, gap2)  -- doubled
    assert.truthy(gap2 < 3, gap2)
    local log = error_log_has(gw, "handler could not process entries " ..
                                  "(try 2)")
    assert.matches("returned status code 500 and body " ..
                   '{"message": "failing on purpose"}', log, 1, true)
    -- delivered: nothing more comes
    assert.equal(3, #collector.requests("/fail/2/retry"))
  end)

  it("gives up after max_retry_time and logs the loss", function()
    assert.res_status(200, client:get("/giveup/1"))
    local log = error_log_has(gw, "could not send entries, giving up after",
                              10)
    assert.matches("1 queue entries were lost", log, 1, true)
    local tries = #collector.requests("/status/500/giveup")
    -- 0.1 + 0.2 + 0.2 ... within 1 s
    assert.truthy(tries >= 3, tries)
    assert.truthy(tries <= 12, tries)
    -- the queue goes on with the next entry
    assert.res_status(200, client:get("/giveup/2"))
    collector.wait("/status/500/giveup", tries + 1)
  end)

  it("drops the oldest entries past max_entries", function()
    -- the first entry is being sent (the server takes 1.5 s) ...
    assert.res_status(200, client:get("/limit/1"))
    collector.wait("/delay/1.5/limit", 1)
    -- ... while five more wait in a queue of two
    for i = 2, 6 do
      assert.res_status(200, client:get("/limit/" .. i))
    end
    local list = collector.wait("/delay/1.5/limit", 3, 15)
    local uris = {}
    for i, r in ipairs(list) do
      uris[i] = helpers.json_decode(r.body).request.uri
    end
    -- FIFO: had 2-4 not been dropped, they would have come first
    assert.same({ "/limit/1", "/limit/5", "/limit/6" }, uris)
    local log = error_log_has(gw, "full (max_entries 2), dropping the " ..
                                  "oldest entries")
    assert.matches("reached 100% of its capacity", log, 1, true)
  end)

  it("refuses entries longer than max_bytes", function()
    assert.res_status(200, client:get("/bytes/1"))
    error_log_has(gw, "failed to enqueue log entry to log server: string " ..
                      "to be queued is longer than queue's max_bytes (100)")
    assert.same({}, collector.requests("/bytes"))
  end)

  it("applies custom_fields_by_lua", function()
    assert.res_status(200, client:post("/custom/1", { body = "x" }))
    local e = helpers.json_decode(collector.wait("/custom", 1)[1].body)
    assert.is_nil(e.route)
    assert.equal("POST", e.extra.method)
    assert.equal("/custom/1", e.request.uri)
  end)

  it("does not delay requests when the server is unreachable", function()
    local t0 = helpers.gettime()
    assert.res_status(200, client:get("/unreachable/1"))
    assert.truthy(helpers.gettime() - t0 < 1)
    local log = error_log_has(gw, fmt("failed request to 127.0.0.1:%d: " ..
                                      "could not connect: connection " ..
                                      "refused", closed_port))
    assert.truthy(log:find("giving up after", 1, true) or
                  error_log_has(gw, "giving up after"))
  end)

  it("shares a queue between instances with the same parameters", function()
    assert.res_status(200, client:get("/shared-a/1"))
    assert.res_status(200, client:get("/shared-b/1"))
    assert.res_status(200, client:get("/shared-c/1"))
    local list = collector.wait("/shared", 2)
    local by_queue = {}
    for _, r in ipairs(list) do
      by_queue[r.headers["x-queue"] or "ab"] = helpers.json_decode(r.body)
    end
    -- a and b: one request, both entries
    assert.equal(2, #by_queue.ab)
    assert.equal("/shared-a/1", by_queue.ab[1].request.uri)
    assert.equal("/shared-b/1", by_queue.ab[2].request.uri)
    -- c has other headers: a queue of its own
    assert.equal(1, #by_queue.c)
    assert.equal("/shared-c/1", by_queue.c[1].request.uri)
  end)

  it("sends entries at once, in parallel, with concurrency_limit -1",
     function()
    for i = 1, 3 do
      assert.res_status(200, client:get("/concurrent/" .. i))
    end
    local list = collector.wait("/delay/1/concurrent", 3)
    -- the server answers each after 1 s: one at a time they would arrive
    -- 1 s apart
    assert.truthy(list[3].time - list[1].time < 0.8,
                  list[3].time - list[1].time)
    for _, r in ipairs(list) do
      assert.equal("table", type(helpers.json_decode(r.body).request))
    end

    -- with the default concurrency_limit (1), one after the other
    for i = 1, 2 do
      assert.res_status(200, client:get("/serial/" .. i))
    end
    list = collector.wait("/delay/0.5/serial", 2)
    assert.truthy(list[2].time - list[1].time >= 0.4,
                  list[2].time - list[1].time)
  end)
end)
