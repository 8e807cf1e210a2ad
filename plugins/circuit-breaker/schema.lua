-- circuit-breaker: luagate's plugin (no Kong equivalent). See
-- docs/plugins/circuit-breaker.md.

local typedefs = require "kong.db.schema.typedefs"

local type = type


local DEFAULT_FAILURE_STATUSES = {}
for s = 500, 599 do
  DEFAULT_FAILURE_STATUSES[#DEFAULT_FAILURE_STATUSES + 1] = s
end


local function check_body(body)
  local t = type(body)
  if t ~= "string" and t ~= "table" then
    return nil, "expected a string or a table"
  end
  return true
end


return {
  name = "circuit-breaker",
  fields = {
    { consumer = typedefs.no_consumer },
    { protocols = typedefs.protocols_http },
    { config = {
        type = "record",
        fields = {
          { scope = {
              description = "What one breaker covers: every route of a " ..
                            "service (service) or each route apart " ..
                            "(route).",
              type = "string",
              default = "service",
              one_of = { "service", "route" },
              required = true,
          } },
          { failure_threshold = {
              description = "Consecutive failures that open the circuit " ..
                            "(when error_ratio is not set).",
              type = "integer",
              default = 5,
              between = { 1, 1000000 },
              required = true,
          } },
          { error_ratio = {
              description = "Ratio mode: the circuit opens when failures / " ..
                            "requests over the last window_s seconds " ..
                            "reaches this value (with at least " ..
                            "min_requests requests). Replaces " ..
                            "failure_threshold when set.",
              type = "number",
              gt = 0,
              between = { 0, 1 },
          } },
          { min_requests = {
              description = "Ratio mode: requests needed in the window " ..
                            "before the ratio is considered.",
              type = "integer",
              default = 20,
              between = { 1, 1000000 },
              required = true,
          } },
          { window_s = {
              description = "Ratio mode: length of the window, in seconds " ..
                            "(sliding: the previous window counts in " ..
                            "proportion to its overlap).",
              type = "integer",
              default = 60,
              between = { 1, 86400 },
              required = true,
          } },
          { failure_statuses = {
              description = "Upstream response statuses counted as " ..
                            "failures. Connection errors and timeouts " ..
                            "(502, 503, 504 made by the gateway) always " ..
                            "count.",
              type = "array",
              default = DEFAULT_FAILURE_STATUSES,
              elements = { type = "integer", between = { 100, 599 } },
              required = true,
          } },
          { open_timeout_s = {
              description = "Seconds the circuit stays open before " ..
                            "half-open probes are let through.",
              type = "number",
              default = 30,
              gt = 0,
              required = true,
          } },
          { half_open_requests = {
              description = "Probes let through at once while half-open: " ..
                            "the first success closes the circuit, the " ..
                            "first failure opens it again.",
              type = "integer",
              default = 1,
              between = { 1, 1000 },
              required = true,
          } },
          { dictionary_name = {
              description = "The shared dictionary holding the breakers' " ..
                            "state, shared by the workers of a node.",
              type = "string",
              default = "kong",
              required = true,
          } },
          { fallback = {
              description = "The response sent instead of contacting the " ..
                            "upstream while the circuit is open.",
              type = "record",
              required = true,
              fields = {
                { status = {
                    description = "Status of the fallback response.",
                    type = "integer",
                    default = 503,
                    between = { 100, 599 },
                    required = true,
                } },
                { body = {
                    description = "Body of the fallback response: a " ..
                                  "string is sent as is, a table as JSON.",
                    type = "json",
                    default = {
                      message = "Service temporarily unavailable " ..
                                "(circuit open)",
                    },
                    custom_validator = check_body,
                } },
                { headers = {
                    description = "Headers of the fallback response.",
                    type = "map",
                    keys = typedefs.header_name,
                    values = { type = "string" },
                    default = {},
                    required = true,
                } },
              },
          } },
        },
      },
    },
  },
}
