-- opentelemetry: W3C Trace Context propagation and span export over
-- OTLP/HTTP (JSON encoding), after Kong's plugin:
--
-- * access: the incoming `traceparent` (W3C, version 00) is extracted,
--   or a new trace is started (random 16-byte trace id); the request gets
--   a root span id and, when the context is injected, the upstream gets
--   `traceparent: 00-<trace id>-<kong.balancer span id>-<flags>`
--   (`tracestate` passes through untouched). The sampling decision
--   (sampling_rate, sampling_strategy, the parent's sampled flag) sets
--   the flags. The trace id goes into the log serializer as
--   `trace_id.w3c`.
-- * header_filter: the time the upstream's response head arrived ends the
--   `kong.balancer` span; `http_response_header_for_traceid` adds the
--   trace id to the response.
-- * log: a sampled request's spans, the root `kong` span (SERVER) and its
--   `kong.balancer` child (CLIENT, when the request was proxied), are
--   encoded (OTLP JSON) and queued; a timer exports them in batches
--   (queue.max_batch_size spans per request, default 200) with
--   luagate.http, retried as the queue says. Nothing waits on the
--   request's path.
--
-- A request whose access phase this plugin did not run (rejected by a
-- plugin that runs first, or matching no route) still gets its root span,
-- from the incoming traceparent when there is one.

local ffi = require "ffi"
local cjson = require "cjson.safe"
local http = require "luagate.http"

local Queue
do
  local ok, m = pcall(require, "kong.tools.queue")
  if ok and type(m) == "table" and type(m.enqueue) == "function" and
     type(m.get_plugin_params) == "function" then
    Queue = m
  else
    Queue = require "kong.plugins.http-log.queue"
  end
end

local kong = kong
local ngx = ngx
local type = type
local pairs = pairs
local ipairs = ipairs
local next = next
local pcall = pcall
local error = error
local tostring = tostring
local tonumber = tonumber
local setmetatable = setmetatable
local concat = table.concat
local sort = table.sort
local floor = math.floor
local fmt = string.format
local lower = string.lower
local sub = string.sub
local encode = cjson.encode

pcall(ffi.cdef, [[
long getrandom(void *buf, size_t buflen, unsigned int flags);
]])
local C = ffi.C

local SPAN_KIND_SERVER = 2
local SPAN_KIND_CLIENT = 3
local STATUS_UNSET = 0
local STATUS_ERROR = 2
local SCOPE_NAME = "luagate"


local OpenTelemetryHandler = {
  PRIORITY = 14,
  VERSION = "3.10.0",
}


-- random ids ------------------------------------------------------------------

local POOL_SIZE = 4096
local pool = ffi.new("uint8_t[?]", POOL_SIZE)
local pool_pos = POOL_SIZE

local HEX = {}
for i = 0, 255 do
  HEX[i] = fmt("%02x", i)
end

local hex_parts = {}


local function refill()
  local got = 0
  while got < POOL_SIZE do
    local n = tonumber(C.getrandom(pool + got, POOL_SIZE - got, 0))
    if n <= 0 then
      error("getrandom() failed")
    end
    got = got + n
  end
  pool_pos = 0
end


-- n random bytes as lowercase hex, never all zeros (invalid in W3C)
local function random_hex(n)
  local s
  repeat
    if pool_pos + n > POOL_SIZE then
      refill()
    end
    local zero = true
    for i = 1, n do
      local b = pool[pool_pos + i - 1]
      if b ~= 0 then
        zero = false
      end
      hex_parts[i] = HEX[b]
    end
    pool_pos = pool_pos + n
    if not zero then
      s = concat(hex_parts, "", 1, n)
    end
  until s
  return s
end
OpenTelemetryHandler.random_hex = random_hex


-- W3C traceparent -------------------------------------------------------------

local ZERO_TRACE = "00000000000000000000000000000000"
local ZERO_SPAN = "0000000000000000"


-- Parses a traceparent header. Returns { trace_id, span_id, flags (number),
-- sampled } or nil and a reason (Kong's warnings).
local function parse_traceparent(v)
  if type(v) ~= "string" then
    return nil
  end
  local version, trace_id, span_id, flags =
    v:match("^%s*(%x+)%-(%x+)%-(%x+)%-(%x+)%s*$")
  if not version then
    return nil, "invalid W3C traceparent header; ignoring."
  end
  if version ~= "00" then
    return nil, "invalid W3C Trace Context version; ignoring."
  end
  if #trace_id ~= 32 or trace_id == ZERO_TRACE then
    return nil, "invalid W3C trace context trace ID; ignoring."
  end
  if #span_id ~= 16 or span_id == ZERO_SPAN then
    return nil, "invalid W3C trace context parent ID; ignoring."
  end
  if #flags ~= 2 then
    return nil, "invalid W3C trace context flags; ignoring."
  end
  local f = tonumber(flags, 16)
  return {
    trace_id = lower(trace_id),
    span_id = lower(span_id),
    flags = f,
    sampled = f % 2 == 1,
  }
end
OpenTelemetryHandler.parse_traceparent = parse_traceparent


-- per-config plans ------------------------------------------------------------

-- conf -> { extract, inject, clear, rate, parent_decides, queue_conf,
--           resource (encoded prefix), endpoint }
local plans = setmetatable({}, { __mode = "k" })


local function has(list, v)
  for _, x in ipairs(list or {}) do
    if x == v then
      return true
    end
  end
  return false
end


local function set_or_empty(v)
  return type(v) == "table" and next(v) ~= nil
end


local function attr(key, value)
  local tv = type(value)
  local v
  if tv == "number" then
    if value == floor(value) and value > -2^53 and value < 2^53 then
      v = { intValue = fmt("%d", value) }
    else
      v = { doubleValue = value }
    end
  elseif tv == "boolean" then
    v = { boolValue = value }
  else
    v = { stringValue = tostring(value) }
  end
  return { key = key, value = v }
end


local function plan_of(conf)
  local p = plans[conf]
  if p then
    return p
  end
  p = {}

  -- propagation (Kong: `propagation` wins when extract, clear or inject is
  -- set; else header_type says)
  local prop = conf.propagation or {}
  if set_or_empty(prop.extract) or set_or_empty(prop.clear) or
     set_or_empty(prop.inject) then
    p.extract = has(prop.extract, "w3c")
    p.inject_w3c = has(prop.inject, "w3c")
    p.preserve = has(prop.inject, "preserve")
    p.clear = prop.clear or {}
  else
    local ht = conf.header_type or "preserve"
    p.extract = ht ~= "ignore"
    p.inject_w3c = ht == "w3c"
    p.preserve = ht == "preserve" or ht == "ignore"
    p.clear = {}
  end
  -- only w3c exists in luagate: preserve injects w3c (the incoming format,
  -- or default_format)
  p.inject = p.inject_w3c or p.preserve

  p.parent_decides = conf.sampling_strategy == "parent_probability_fallback"

  -- the queue: batch_span_count / batch_flush_delay (deprecated) override
  -- queue.max_batch_size / max_coalescing_delay, as in Kong
  local q = {}
  for k, v in pairs(conf.queue or {}) do
    q[k] = v
  end
  if type(conf.batch_span_count) == "number" then
    q.max_batch_size = conf.batch_span_count
  end
  if type(conf.batch_flush_delay) == "number" then
    q.max_coalescing_delay = conf.batch_flush_delay
  end

  -- resource attributes (Kong's defaults, then the configured ones)
  local res = {
    ["service.name"] = "kong",
    ["service.instance.id"] = kong.node.get_id(),
    ["service.version"] = kong.version,
  }
  for k, v in pairs(conf.resource_attributes or {}) do
    res[k] = v
  end
  local keys = {}
  for k in pairs(res) do
    keys[#keys + 1] = k
  end
  sort(keys)
  local attrs = {}
  for i, k in ipairs(keys) do
    attrs[i] = attr(k, res[k])
  end
  p.prefix = '{"resourceSpans":[{"resource":{"attributes":' ..
             encode(attrs) .. '},"scopeSpans":[{"scope":' ..
             encode({ name = SCOPE_NAME }) ..
             ',"spans":['
  p.suffix = "]}]}]}"

  local headers = { ["Content-Type"] = "application/json" }
  local names = {}
  for k, v in pairs(conf.headers or {}) do
    if lower(k) ~= "content-type" then
      headers[k] = v
    end
    names[#names + 1] = lower(k) .. "=" .. v
  end
  sort(names)
  p.headers = headers

  local url = conf.traces_endpoint
  local shown = url:gsub("^(%a[%w+%-.]*://)[^/?#@]*@", "%1")
  local key = fmt("%s %s %s %s %s %s %s", url, concat(names, "&"),
                  concat(keys, "&"), tostring(conf.connect_timeout),
                  tostring(conf.send_timeout), tostring(conf.read_timeout),
                  encode(attrs))
  p.queue_conf = Queue.get_plugin_params("opentelemetry", { queue = q },
    fmt("opentelemetry %s [%s]", shown, ngx.md5(key):sub(1, 8)))

  plans[conf] = p
  return p
end


local function sampling_rate(conf)
  local rate = conf.sampling_rate
  if type(rate) ~= "number" then
    local settings = kong.configuration
    rate = settings and tonumber(settings.tracing_sampling_rate) or 1
  end
  return rate
end


local function decide(conf, p, trace_id, parent)
  if parent then
    if p.parent_decides then
      return parent.sampled
    end
    if not parent.sampled then
      return false
    end
  end
  local rate = sampling_rate(conf)
  if rate >= 1 then
    return true
  elseif rate <= 0 then
    return false
  end
  -- the trace id's last 32 bits: the same decision for the whole trace
  return tonumber(sub(trace_id, -8), 16) / 4294967296 < rate
end


-- the trace of a request ------------------------------------------------------

local function now()
  ngx.update_time()
  return ngx.now()
end


-- Starts the request's trace (extracting the incoming context when the
-- config says so) and stores it in kong.ctx.plugin.
local function start_trace(conf, p)
  local parent
  if p.extract then
    local err
    parent, err = parse_traceparent(kong.request.get_header("traceparent"))
    if err then
      kong.log.warn(err)
    end
  end
  local trace_id = parent and parent.trace_id or random_hex(16)
  local sampled = decide(conf, p, trace_id, parent)
  local t = {
    trace_id = trace_id,
    span_id = random_hex(8),
    parent = parent,
    sampled = sampled,
    flags = parent and parent.flags or 0,
  }
  if sampled then
    t.flags = t.flags - t.flags % 2 + 1
  else
    t.flags = t.flags - t.flags % 2
  end
  local ctx = kong.ctx.plugin
  ctx.trace = t -- luacheck: ignore 122
  kong.log.set_serialize_value("trace_id", { w3c = trace_id })
  return t
end


function OpenTelemetryHandler:access(conf)
  local p = plan_of(conf)
  local t = start_trace(conf, p)
  local sreq = kong.service.request
  for _, h in ipairs(p.clear) do
    sreq.clear_header(h)
  end
  if p.inject then
    t.balancer_span_id = random_hex(8)
    sreq.set_header("traceparent", fmt("00-%s-%s-%02x", t.trace_id,
                                       t.balancer_span_id, t.flags))
  end
  t.access_end = now()
end


function OpenTelemetryHandler:header_filter(conf)
  local t = kong.ctx.plugin.trace
  if not t then
    t = start_trace(conf, plan_of(conf))
  end
  t.header_at = now()
  local name = conf.http_response_header_for_traceid
  if name then
    kong.response.add_header(name, t.trace_id)
  end
end


-- Queue handler: exports a batch of encoded spans.
local function export(conf, spans)
  local p = plan_of(conf)
  local res, err = http.request(conf.traces_endpoint, {
    method = "POST",
    headers = p.headers,
    body = p.prefix .. concat(spans, ",") .. p.suffix,
    connect_timeout = conf.connect_timeout,
    send_timeout = conf.send_timeout,
    read_timeout = conf.read_timeout,
  })
  if not res then
    return nil, "failed to send request: " .. tostring(err)
  end
  if res.status < 200 or res.status > 299 then
    return nil, fmt("response error: %d, body: %s", res.status,
                    tostring(res.body or ""))
  end
  return true
end
OpenTelemetryHandler.export = export


local function ns(seconds)
  -- whole microseconds fit a double exactly; the string carries the rest
  return fmt("%.0f000", floor(seconds * 1e6 + 0.5))
end


function OpenTelemetryHandler:log(conf)
  local p = plan_of(conf)
  local t = kong.ctx.plugin.trace or start_trace(conf, p)
  if not t.sampled then
    return
  end

  local kreq = kong.request
  local status = kong.response.get_status()
  local route = kong.router.get_route()
  local service = kong.router.get_service()
  local end_time = now()
  local start_time = kreq.get_start_time() / 1000

  local raw_query = kreq.get_raw_query()
  local attrs = {
    attr("http.method", kreq.get_method()),
    attr("http.url", kreq.get_scheme() .. "://" .. kreq.get_host() .. ":" ..
                     kreq.get_port() .. kreq.get_raw_path() ..
                     (raw_query ~= "" and ("?" .. raw_query) or "")),
    attr("http.host", kreq.get_host()),
    attr("http.scheme", kreq.get_scheme()),
    attr("http.flavor", fmt("%.1f", kreq.get_http_version() or 1.1)),
    attr("http.client_ip", kong.client.get_forwarded_ip()),
    attr("net.peer.ip", kong.client.get_ip()),
    attr("http.status_code", status),
  }
  local request_id = ngx.var.request_id
  if request_id then
    attrs[#attrs + 1] = attr("kong.request.id", request_id)
  end
  if route and type(route.paths) == "table" and route.paths[1] then
    attrs[#attrs + 1] = attr("http.route", route.paths[1])
  end

  local root = {
    traceId = t.trace_id,
    spanId = t.span_id,
    parentSpanId = t.parent and t.parent.span_id or nil,
    name = "kong",
    kind = SPAN_KIND_SERVER,
    startTimeUnixNano = ns(start_time),
    endTimeUnixNano = ns(end_time),
    attributes = attrs,
    status = { code = status >= 500 and STATUS_ERROR or STATUS_UNSET },
  }

  local spans = { encode(root) }

  if t.balancer_span_id and t.access_end and
     kong.response.get_source() == "service" then
    local battrs = {}
    if service then
      if service.host then
        battrs[#battrs + 1] = attr("net.peer.name", service.host)
      end
      if service.port then
        battrs[#battrs + 1] = attr("net.peer.port", service.port)
      end
      if service.name then
        battrs[#battrs + 1] = attr("peer.service", service.name)
      end
    end
    local up_status = tonumber(ngx.var.upstream_status)
    if up_status then
      battrs[#battrs + 1] = attr("http.status_code", up_status)
    end
    spans[2] = encode({
      traceId = t.trace_id,
      spanId = t.balancer_span_id,
      parentSpanId = t.span_id,
      name = "kong.balancer",
      kind = SPAN_KIND_CLIENT,
      startTimeUnixNano = ns(t.access_end),
      endTimeUnixNano = ns(t.header_at or end_time),
      attributes = battrs[1] and battrs or nil,
      status = { code = up_status and up_status >= 500 and STATUS_ERROR
                        or STATUS_UNSET },
    })
  end

  for _, span in ipairs(spans) do
    local ok, err = Queue.enqueue(p.queue_conf, export, conf, span)
    if not ok then
      kong.log.err("failed to enqueue span: ", err)
      return
    end
  end
end


return OpenTelemetryHandler
