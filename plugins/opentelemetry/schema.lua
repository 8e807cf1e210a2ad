-- opentelemetry: Kong's configuration (the OTLP/HTTP traces endpoint, the
-- export request, the queue, sampling, trace context propagation). luagate
-- supports the W3C Trace Context format only: other formats are refused
-- when the config loads (see docs/plugins/opentelemetry.md).
local typedefs = require "kong.db.schema.typedefs"

local ipairs = ipairs
local tostring = tostring
local lower = string.lower
local match = string.match
local concat = table.concat

local Queue
do
  local ok, m = pcall(require, "kong.plugins.http-log.queue")
  if not ok then
    local src = debug.getinfo(1, "S").source
    local dir = src:match("^@(.*)/[^/]*/[^/]*$") or "."
    m = dofile(dir .. "/http-log/queue.lua")
  end
  Queue = m
end


local HEADER_TYPES = {
  "preserve", "ignore", "b3", "b3-single", "w3c", "jaeger", "ot", "aws",
  "gcp", "datadog", "instana",
}
local SUPPORTED_HEADER_TYPES = { preserve = true, ignore = true, w3c = true }

local EXTRACTORS = {
  "b3", "w3c", "jaeger", "ot", "aws", "gcp", "datadog", "instana",
}
local INJECTORS = {
  "preserve", "b3", "b3-single", "w3c", "jaeger", "ot", "aws", "gcp",
  "datadog", "instana",
}
local FORMATS = {
  "b3", "b3-single", "w3c", "jaeger", "ot", "aws", "gcp", "datadog",
  "instana",
}


local function supported_only(list, what)
  local set = {}
  for _, v in ipairs(list) do
    set[v] = true
  end
  local names = {}
  for _, v in ipairs(list) do
    names[#names + 1] = v
  end
  return function(v)
    if set[v] then
      return true
    end
    return nil, what .. " '" .. v .. "' is not supported by luagate yet " ..
                "(supported: " .. concat(names, ", ") .. ")"
  end
end


local function http_only(url)
  local ok, err = typedefs.url.custom_validator(url)
  if not ok then
    return nil, err
  end
  local scheme = match(url, "^(%a[%w+%-.]*)://")
  scheme = scheme and lower(scheme)
  if scheme == "https" then
    return nil, "https is not supported yet (luagate has no TLS " ..
                "client): use an http:// endpoint"
  end
  if scheme ~= "http" then
    return nil, "unsupported scheme '" .. tostring(scheme) ..
                "': expected http"
  end
  return true
end


return {
  name = "opentelemetry",
  fields = {
    { protocols = typedefs.protocols_http },
    { config = {
        type = "record",
        fields = {
          { traces_endpoint = typedefs.url {
              description = "The OTLP/HTTP URL spans are exported to " ..
                            "(http only), e.g. " ..
                            "http://collector:4318/v1/traces.",
              required = true,
              referenceable = true,
              custom_validator = http_only,
          } },
          { logs_endpoint = typedefs.url {
              description = "Kong: an OTLP/HTTP URL for logs. Not " ..
                            "supported by luagate yet (traces only).",
              referenceable = true,
              custom_validator = function()
                return nil, "logs are not supported by luagate yet " ..
                            "(traces only)"
              end,
          } },
          { headers = {
              description = "The custom headers to be added in the HTTP " ..
                            "request sent to the OTLP server. This " ..
                            "setting is useful for adding the " ..
                            "authentication headers (token) for the APM " ..
                            "backend.",
              type = "map",
              keys = typedefs.header_name,
              values = {
                type = "string",
                referenceable = true,
              },
          } },
          { resource_attributes = {
              description = "Attributes of the resource the spans belong " ..
                            "to (string values), added to (or replacing) " ..
                            "service.name=kong, service.instance.id and " ..
                            "service.version.",
              type = "map",
              keys = { type = "string", required = true },
              values = { type = "string", required = true },
          } },
          { queue = Queue.schema_field {
              default = { max_batch_size = 200 },
          } },
          { batch_span_count = {
              description = "Deprecated: the number of spans to be sent " ..
                            "in a single batch; use queue.max_batch_size.",
              type = "integer",
          } },
          { batch_flush_delay = {
              description = "Deprecated: the delay, in seconds, between " ..
                            "two consecutive batches; use " ..
                            "queue.max_coalescing_delay.",
              type = "integer",
          } },
          { connect_timeout = typedefs.timeout {
              description = "Timeout in milliseconds for connecting to " ..
                            "the OTLP server.",
              default = 1000,
          } },
          { send_timeout = typedefs.timeout {
              description = "Timeout in milliseconds for sending a batch " ..
                            "to the OTLP server.",
              default = 5000,
          } },
          { read_timeout = typedefs.timeout {
              description = "Timeout in milliseconds for reading the OTLP " ..
                            "server's response.",
              default = 5000,
          } },
          { http_response_header_for_traceid = {
              description = "When set, the name of a response header the " ..
                            "request's trace ID (hex) is added to.",
              type = "string",
          } },
          { header_type = {
              description = "Deprecated (use `propagation`): the trace " ..
                            "context header format: `preserve` (the " ..
                            "incoming format, W3C by default), `ignore` " ..
                            "(always start a new trace) or `w3c`. Kong's " ..
                            "other formats are not supported by luagate.",
              type = "string",
              required = false,
              default = "preserve",
              one_of = HEADER_TYPES,
              custom_validator = function(v)
                if SUPPORTED_HEADER_TYPES[v] then
                  return true
                end
                return nil, "header_type '" .. v .. "' is not supported " ..
                            "by luagate yet (supported: preserve, ignore, " ..
                            "w3c)"
              end,
          } },
          { sampling_rate = {
              description = "Tracing sampling rate for configuring the " ..
                            "probability-based sampler. When set, this " ..
                            "value supersedes the global " ..
                            "`tracing_sampling_rate` setting (luagate: " ..
                            "1.0 when neither is set).",
              type = "number",
              between = { 0, 1 },
          } },
          { sampling_strategy = {
              description = "`parent_drop_probability_fallback`: a " ..
                            "parent that was not sampled drops the trace, " ..
                            "otherwise the sampling rate decides; " ..
                            "`parent_probability_fallback`: a parent's " ..
                            "sampled flag decides, the rate only for new " ..
                            "traces.",
              type = "string",
              default = "parent_drop_probability_fallback",
              one_of = { "parent_drop_probability_fallback",
                         "parent_probability_fallback" },
          } },
          { propagation = {
              description = "Trace context propagation: the formats " ..
                            "extracted from requests, the headers cleared, " ..
                            "the formats injected upstream. When extract, " ..
                            "clear or inject is set, it takes precedence " ..
                            "over header_type.",
              type = "record",
              default = { default_format = "w3c" },
              fields = {
                { extract = {
                    description = "Header formats used to extract " ..
                                  "tracing context from incoming " ..
                                  "requests (luagate: w3c). If empty, a " ..
                                  "new trace is always started.",
                    type = "array",
                    elements = {
                      type = "string",
                      one_of = EXTRACTORS,
                      custom_validator = supported_only({ "w3c" },
                                                        "format"),
                    },
                } },
                { clear = {
                    description = "Header names to clear after context " ..
                                  "extraction, so that they are not sent " ..
                                  "upstream.",
                    type = "array",
                    elements = { type = "string" },
                } },
                { inject = {
                    description = "Header formats used to inject tracing " ..
                                  "context upstream (luagate: w3c, or " ..
                                  "preserve: the incoming format, else " ..
                                  "default_format). If empty, nothing is " ..
                                  "injected.",
                    type = "array",
                    elements = {
                      type = "string",
                      one_of = INJECTORS,
                      custom_validator = supported_only(
                        { "preserve", "w3c" }, "format"),
                    },
                } },
                { default_format = {
                    description = "The format injected when `preserve` " ..
                                  "finds no incoming context (luagate: " ..
                                  "w3c).",
                    type = "string",
                    required = true,
                    default = "w3c",
                    one_of = FORMATS,
                    custom_validator = supported_only({ "w3c" }, "format"),
                } },
              },
          } },
        },
        shorthand_fields = {
          { endpoint = typedefs.url {
              description = "Deprecated: the traces endpoint; use " ..
                            "`traces_endpoint`.",
              referenceable = true,
              deprecation = {
                message = "OpenTelemetry: config.endpoint is deprecated, " ..
                          "please use config.traces_endpoint instead",
                removal_in_version = "4.0",
                replaced_with = { { path = { "traces_endpoint" } } },
              },
              func = function(value)
                return { traces_endpoint = value }
              end,
          } },
        },
      },
    },
  },
}
