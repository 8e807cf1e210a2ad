-- opentelemetry through the real binary, the mock upstream (which echoes
-- the traceparent it got) and a recording OTLP/HTTP collector
-- (spec/fixtures/otlp_collector.py): W3C propagation (new traces,
-- incoming context kept, invalid headers, sampled flag), the exported
-- spans (ids matching what the upstream got, names, kinds, attributes,
-- status, resource, scope), sampling, header_type and propagation,
-- http_response_header_for_traceid, rejected requests, batching, retries,
-- the trace id in the log serializer.
local helpers = require "spec.helpers"

local fmt = string.format

local TRACEPARENT = "^00%-(" .. ("%x"):rep(32) .. ")%-(" .. ("%x"):rep(16) ..
                    ")%-(%x%x)$"


local function start_collector()
  local dir = helpers.make_prefix("otlp")
  local record = dir .. "/requests.jsonl"
  local srv = helpers.start_server(fmt("%s %s --record %s",
    helpers.shell_quote(helpers.python),
    helpers.shell_quote(helpers.root .. "/spec/fixtures/otlp_collector.py"),
    helpers.shell_quote(record)), "otlp")
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
  -- every span exported to path: { span, resource, scope, request }
  function srv.spans(path)
    local out = {}
    for _, r in ipairs(srv.requests(path)) do
      if r.status == 200 then
        local body = assert(helpers.json_decode(r.body))
        for _, rs in ipairs(body.resourceSpans) do
          for _, ss in ipairs(rs.scopeSpans) do
            for _, span in ipairs(ss.spans) do
              out[#out + 1] = { span = span, resource = rs.resource,
                                scope = ss.scope, request = r }
            end
          end
        end
      end
    end
    return out
  end
  -- waits for the spans of trace_id; returns { name -> entry }
  function srv.trace(path, trace_id, n, timeout)
    return helpers.wait_until(function()
      local found, count = {}, 0
      for _, e in ipairs(srv.spans(path)) do
        if e.span.traceId == trace_id then
          found[e.span.name] = e
          count = count + 1
        end
      end
      if count >= (n or 1) then
        return found
      end
    end, timeout or 10)
  end
  return srv
end


local function attrs_of(list)
  local out = {}
  for _, a in ipairs(list or {}) do
    local v = a.value
    out[a.key] = v.stringValue or v.intValue or v.doubleValue or v.boolValue
  end
  return out
end


-- the traceparent the upstream got (nil when none)
local function upstream_traceparent(res)
  local echo = assert(helpers.json_decode(assert.res_status(200, res)))
  return echo.headers.traceparent, echo
end


local function parse(tp)
  local tid, sid, flags = assert(tp, "no traceparent"):match(TRACEPARENT)
  assert(tid, "bad traceparent: " .. tostring(tp))
  return tid, sid, flags
end


describe("opentelemetry", function()
  local mock, collector, gw, client, dir

  lazy_setup(function()
    mock = helpers.mock_upstream()
    collector = start_collector()
    dir = helpers.make_prefix("otel-files")
    local base = fmt("http://127.0.0.1:%d", collector.port)

    local function route(name, conf, extra, paths)
      conf.traces_endpoint = conf.traces_endpoint or (base .. "/v1/traces")
      -- a queue given is filled with typedefs.queue's defaults
      -- (max_batch_size 1), not with the plugin's default record (200)
      conf.queue = conf.queue or { max_batch_size = 10,
                                   max_coalescing_delay = 0.1 }
      local plugins = { { name = "opentelemetry", config = conf } }
      for _, p in ipairs(extra or {}) do
        plugins[#plugins + 1] = p
      end
      return { name = name, paths = paths or { "/" .. name },
               plugins = plugins }
    end

    gw = assert(helpers.start_luagate({
      config = {
        _format_version = "3.0",
        services = {
          { name = "mock-svc", url = fmt("http://127.0.0.1:%d", mock.port),
            routes = {
              route("otel", {
                headers = { Authorization = "Bearer tok" },
                resource_attributes = { ["service.name"] = "my-gw",
                                        env = "test" },
              }, {
                { name = "file-log", config = { path = dir .. "/log" } },
              }),
              route("ignore", { header_type = "ignore" }),
              route("w3c", { header_type = "w3c" }),
              route("never", { sampling_rate = 0 }),
              route("parent", {
                sampling_rate = 0,
                sampling_strategy = "parent_probability_fallback",
              }),
              route("traceid", {
                http_response_header_for_traceid = "X-Trace-Id",
              }),
              route("prop", {
                propagation = { extract = { "w3c" }, inject = { "w3c" },
                                clear = { "x-remove-me" } },
              }),
              route("noinject", {
                propagation = { extract = { "w3c" },
                                inject = helpers.empty_array,
                                clear = { "x-remove-me" } },
              }),
              route("auth", {}, {
                { name = "key-auth" },
              }),
              route("batch", {
                traces_endpoint = base .. "/batch/v1/traces",
                queue = { max_batch_size = 200, max_coalescing_delay = 1 },
              }),
              route("legacy", {
                traces_endpoint = base .. "/legacy/v1/traces",
                batch_span_count = 4,
                batch_flush_delay = 1,
                queue = { max_batch_size = 1, max_coalescing_delay = 0 },
              }),
              route("retry", {
                traces_endpoint = base .. "/fail/1/v1/traces",
                queue = { max_batch_size = 10, max_coalescing_delay = 0.1,
                          initial_retry_delay = 0.1 },
              }),
            } },
        },
        plugins = {
          -- unrouted requests: global instance
          { name = "opentelemetry",
            config = { traces_endpoint = base .. "/global/v1/traces",
                       queue = { max_coalescing_delay = 0.1 } } },
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

  it("starts a trace and exports its spans over OTLP/HTTP JSON", function()
    local res = client:get("/otel/x?a=1", {
      headers = { ["User-Agent"] = "spec" },
    })
    local tp = upstream_traceparent(res)
    local tid, sid, flags = parse(tp)
    assert.equal("01", flags)

    local trace = collector.trace("/v1/traces", tid, 2)
    local root, bal = trace.kong, trace["kong.balancer"]
    assert.truthy(root, "no root span")
    assert.truthy(bal, "no balancer span")

    -- the upstream's parent is the balancer span, child of the root
    assert.equal(sid, bal.span.spanId)
    assert.equal(root.span.spanId, bal.span.parentSpanId)
    assert.is_nil(root.span.parentSpanId)
    assert.matches("^" .. ("%x"):rep(16) .. "$", root.span.spanId)
    assert.are_not.equal(root.span.spanId, bal.span.spanId)
    assert.equal(2, root.span.kind)
    assert.equal(3, bal.span.kind)
    assert.same({ code = 0 }, root.span.status)

    -- times: strings of nanoseconds, in order
    for _, s in ipairs({ root.span, bal.span }) do
      assert.matches("^%d+$", s.startTimeUnixNano)
      assert.matches("^%d+$", s.endTimeUnixNano)
      assert.truthy(tonumber(s.startTimeUnixNano) <=
                    tonumber(s.endTimeUnixNano))
    end
    assert.truthy(tonumber(root.span.startTimeUnixNano) <=
                  tonumber(bal.span.startTimeUnixNano))
    assert.truthy(tonumber(bal.span.endTimeUnixNano) <=
                  tonumber(root.span.endTimeUnixNano))
    local now_ns = os.time() * 1e9
    assert.truthy(math.abs(tonumber(root.span.startTimeUnixNano) - now_ns)
                  < 60e9)

    local a = attrs_of(root.span.attributes)
    assert.equal("GET", a["http.method"])
    assert.equal(fmt("http://127.0.0.1:%d/otel/x?a=1", gw.proxy_port),
                 a["http.url"])
    assert.equal("127.0.0.1", a["http.host"])
    assert.equal("http", a["http.scheme"])
    assert.equal("1.1", a["http.flavor"])
    assert.equal("127.0.0.1", a["net.peer.ip"])
    assert.equal("200", a["http.status_code"])
    assert.equal("/otel", a["http.route"])
    assert.is_string(a["kong.request.id"])
    local b = attrs_of(bal.span.attributes)
    assert.equal("127.0.0.1", b["net.peer.name"])
    assert.equal(tostring(mock.port), b["net.peer.port"])
    assert.equal("mock-svc", b["peer.service"])
    assert.equal("200", b["http.status_code"])

    -- the export request, the resource and the scope
    local req = root.request
    assert.equal("POST", req.method)
    assert.equal("application/json", req.headers["content-type"])
    assert.equal("Bearer tok", req.headers.authorization)
    local r = attrs_of(root.resource.attributes)
    assert.equal("my-gw", r["service.name"])
    assert.equal("test", r.env)
    assert.equal("3.10.0", r["service.version"])
    assert.is_string(r["service.instance.id"])
    assert.equal("luagate", root.scope.name)
  end)

  it("keeps the incoming trace and sends a new parent upstream", function()
    local tid = "4bf92f3577b34da6a3ce929d0e0e4736"
    local pid = "00f067aa0ba902b7"
    local res = client:get("/otel/in", {
      headers = { traceparent = fmt("00-%s-%s-01", tid, pid),
                  tracestate = "vendor=opaque" },
    })
    local tp, echo = upstream_traceparent(res)
    local utid, usid, flags = parse(tp)
    assert.equal(tid, utid)
    assert.are_not.equal(pid, usid)
    assert.equal("01", flags)
    assert.equal("vendor=opaque", echo.headers.tracestate)

    local trace = collector.trace("/v1/traces", tid, 2)
    assert.equal(pid, trace.kong.span.parentSpanId)
    assert.equal(usid, trace["kong.balancer"].span.spanId)
    assert.equal(trace.kong.span.spanId,
                 trace["kong.balancer"].span.parentSpanId)
  end)

  it("accepts upper-case hex and sends it lower-case", function()
    local tid = "4BF92F3577B34DA6A3CE929D0E0E4737"
    local res = client:get("/otel/upper", {
      headers = { traceparent = fmt("00-%s-00F067AA0BA902B7-01", tid) },
    })
    local utid = parse(upstream_traceparent(res))
    assert.equal(tid:lower(), utid)
  end)

  it("starts a new trace on an invalid traceparent", function()
    local cases = {
      "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
      "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
      "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
      "00-4bf92f3577b34da6a3ce929d0e0e47-00f067aa0ba902b7-01",
      "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-1",
      "not a traceparent",
    }
    for _, bad in ipairs(cases) do
      local res = client:get("/otel/bad", { headers = { traceparent = bad } })
      local utid, _, flags = parse(upstream_traceparent(res))
      assert.are_not.equal("4bf92f3577b34da6a3ce929d0e0e4736", utid, bad)
      assert.are_not.equal(("0"):rep(32), utid, bad)
      assert.equal("01", flags, bad)
    end
    local log = helpers.wait_until(function()
      local data = helpers.read_file(gw.error_log) or ""
      if data:find("invalid W3C Trace Context version; ignoring.", 1,
                   true) then
        return data
      end
    end, 10)
    assert.matches("invalid W3C trace context trace ID; ignoring.", log, 1,
                   true)
    assert.matches("invalid W3C trace context parent ID; ignoring.", log, 1,
                   true)
    assert.matches("invalid W3C traceparent header; ignoring.", log, 1, true)
  end)

  it("gives every request its own trace and ids", function()
    local seen = {}
    for _ = 1, 10 do
      local tid, sid = parse(upstream_traceparent(client:get("/otel/many")))
      assert.is_nil(seen[tid])
      assert.is_nil(seen[sid])
      seen[tid], seen[sid] = true, true
    end
  end)

  it("follows a parent that was not sampled", function()
    local tid = "11111111111111111111111111111111"
    local res = client:get("/otel/unsampled", {
      headers = { traceparent = fmt("00-%s-00f067aa0ba902b7-00", tid) },
    })
    local utid, _, flags = parse(upstream_traceparent(res))
    assert.equal(tid, utid)
    assert.equal("00", flags)
    -- a sampled request after it: once its spans are out, the unsampled
    -- trace would have been too (one queue, in order)
    local later = parse(upstream_traceparent(client:get("/otel/later")))
    collector.trace("/v1/traces", later, 2)
    for _, e in ipairs(collector.spans("/v1/traces")) do
      assert.are_not.equal(tid, e.span.traceId)
    end
  end)

  it("exports nothing with sampling_rate 0, and says so upstream", function()
    local utid, _, flags = parse(upstream_traceparent(client:get("/never")))
    assert.equal("00", flags)
    local later = parse(upstream_traceparent(client:get("/otel/after")))
    collector.trace("/v1/traces", later, 2)
    for _, e in ipairs(collector.spans("/v1/traces")) do
      assert.are_not.equal(utid, e.span.traceId)
    end
  end)

  it("lets the parent decide with parent_probability_fallback", function()
    local tid = "22222222222222222222222222222222"
    local res = client:get("/parent", {
      headers = { traceparent = fmt("00-%s-00f067aa0ba902b7-01", tid) },
    })
    local _, _, flags = parse(upstream_traceparent(res))
    assert.equal("01", flags)
    collector.trace("/v1/traces", tid, 2)
    -- no parent: the rate (0) decides
    local _, _, f2 = parse(upstream_traceparent(client:get("/parent")))
    assert.equal("00", f2)
  end)

  it("ignores the incoming context with header_type ignore", function()
    local tid = "33333333333333333333333333333333"
    local res = client:get("/ignore", {
      headers = { traceparent = fmt("00-%s-00f067aa0ba902b7-01", tid) },
    })
    local utid = parse(upstream_traceparent(res))
    assert.are_not.equal(tid, utid)
    local trace = collector.trace("/v1/traces", utid, 2)
    assert.is_nil(trace.kong.span.parentSpanId)
  end)

  it("injects W3C with header_type w3c", function()
    local tid = "44444444444444444444444444444444"
    local res = client:get("/w3c", {
      headers = { traceparent = fmt("00-%s-00f067aa0ba902b7-01", tid) },
    })
    assert.equal(tid, (parse(upstream_traceparent(res))))
  end)

  it("adds the trace id to the response when asked", function()
    local res = client:get("/traceid")
    local utid = parse(upstream_traceparent(res))
    assert.equal(utid, res.headers["x-trace-id"])
    -- and not elsewhere
    assert.is_nil(client:get("/otel/y").headers["x-trace-id"])
  end)

  it("extracts, clears and injects as `propagation` says", function()
    local tid = "55555555555555555555555555555555"
    local res = client:get("/prop", {
      headers = { traceparent = fmt("00-%s-00f067aa0ba902b7-01", tid),
                  ["X-Remove-Me"] = "secret" },
    })
    local tp, echo = upstream_traceparent(res)
    assert.equal(tid, (parse(tp)))
    assert.is_nil(echo.headers["x-remove-me"])

    -- inject = {}: the incoming header passes as it is, nothing injected
    local incoming = fmt("00-%s-00f067aa0ba902b7-01", tid)
    res = client:get("/noinject", {
      headers = { traceparent = incoming, ["X-Remove-Me"] = "x" },
    })
    tp, echo = upstream_traceparent(res)
    assert.equal(incoming, tp)
    assert.is_nil(echo.headers["x-remove-me"])
    res = client:get("/noinject")
    tp = upstream_traceparent(res)
    assert.is_nil(tp)
  end)

  it("traces requests a plugin that runs first rejected", function()
    local tid = "66666666666666666666666666666666"
    local res = client:get("/auth", {
      headers = { traceparent = fmt("00-%s-00f067aa0ba902b7-01", tid) },
    })
    assert.res_status(401, res)
    local trace = collector.trace("/v1/traces", tid, 1)
    local root = trace.kong
    assert.equal("00f067aa0ba902b7", root.span.parentSpanId)
    assert.equal("401", attrs_of(root.span.attributes)["http.status_code"])
    assert.is_nil(trace["kong.balancer"])
  end)

  it("marks server errors", function()
    local res = client:get("/otel/status/500")
    assert.res_status(500, res)
    local tid = parse(helpers.json_decode(res.body).request.headers
                      .traceparent)
    local trace = collector.trace("/v1/traces", tid, 2)
    assert.same({ code = 2 }, trace.kong.span.status)
    assert.same({ code = 2 }, trace["kong.balancer"].span.status)
    assert.equal("500", attrs_of(trace.kong.span.attributes)
                        ["http.status_code"])
  end)

  it("traces unrouted requests (global instance)", function()
    local tid = "77777777777777777777777777777777"
    local res = client:get("/no/such/route", {
      headers = { traceparent = fmt("00-%s-00f067aa0ba902b7-01", tid) },
    })
    assert.res_status(404, res)
    local trace = collector.trace("/global/v1/traces", tid, 1)
    assert.equal("404", attrs_of(trace.kong.span.attributes)
                        ["http.status_code"])
    assert.is_nil(attrs_of(trace.kong.span.attributes)["http.route"])
  end)

  it("exports the spans of several requests in one batch", function()
    local ids = {}
    for i = 1, 3 do
      ids[i] = parse(upstream_traceparent(client:get("/batch")))
    end
    for i = 1, 3 do
      collector.trace("/batch/v1/traces", ids[i], 2)
    end
    local reqs = collector.requests("/batch/v1/traces")
    assert.equal(1, #reqs)
    assert.equal(6, #collector.spans("/batch/v1/traces"))
  end)

  it("lets the deprecated batch_span_count override the queue", function()
    local a = parse(upstream_traceparent(client:get("/legacy")))
    local b = parse(upstream_traceparent(client:get("/legacy")))
    collector.trace("/legacy/v1/traces", a, 2)
    collector.trace("/legacy/v1/traces", b, 2)
    -- max_batch_size 4 (not 1): the four spans in one export
    local reqs = collector.requests("/legacy/v1/traces")
    assert.equal(1, #reqs)
    assert.equal(4, #collector.spans("/legacy/v1/traces"))
  end)

  it("retries a failed export", function()
    local tid = parse(upstream_traceparent(client:get("/retry")))
    collector.trace("/fail/1/v1/traces", tid, 2)
    local reqs = collector.requests("/fail/1/v1/traces")
    assert.equal(2, #reqs)
    assert.equal(500, reqs[1].status)
    assert.equal(200, reqs[2].status)
    assert.equal(reqs[1].body, reqs[2].body)
    -- both spans of the request, in one batch
    assert.equal(2, #collector.spans("/fail/1/v1/traces"))
  end)

  it("gives the trace id to the log serializer", function()
    local tid = "88888888888888888888888888888888"
    assert.res_status(200, client:get("/otel/logged", {
      headers = { traceparent = fmt("00-%s-00f067aa0ba902b7-01", tid) },
    }))
    local entry = helpers.wait_until(function()
      for _, line in ipairs(helpers.file_lines(dir .. "/log")) do
        local e = helpers.json_decode(line)
        if e and e.request.uri == "/otel/logged" then
          return e
        end
      end
    end, 10)
    assert.same({ w3c = tid }, entry.trace_id)
  end)
end)
