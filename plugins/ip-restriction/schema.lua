-- ip-restriction: Kong's configuration (allow / deny lists of IPs and CIDR
-- ranges, IPv4 and IPv6; the status and message of a rejection).
local typedefs = require "kong.db.schema.typedefs"


local function ip_list(what)
  return {
    description = "List of IPs or CIDR ranges to " .. what .. ", IPv4 " ..
                  "or IPv6 (`10.0.0.1`, `10.0.0.0/8`, `2001:db8::/32`). " ..
                  "One of `config.allow` or `config.deny` must be set.",
    type = "array",
    elements = typedefs.ip_or_cidr {
      description = "An IP address or a CIDR range, such as " ..
                    "192.168.1.1 or 192.168.0.0/16.",
    },
  }
end


return {
  name = "ip-restriction",
  fields = {
    -- Kong also lists the stream protocols (the plugin runs in preread
    -- there); luagate accepts them in configs but has no stream routes.
    { protocols = typedefs.protocols {
        default = { "http", "https", "tcp", "tls", "grpc", "grpcs" },
    } },
    { config = {
        type = "record",
        fields = {
          { allow = ip_list("allow") },
          { deny = ip_list("deny") },
          { status = {
              description = "The HTTP status of the requests that will " ..
                            "be rejected by the plugin (403 when not set).",
              type = "number",
              required = false,
          } },
          { message = {
              description = "The message to send as a response body to " ..
                            "rejected requests (`IP address not allowed: " ..
                            "<client ip>` when not set).",
              type = "string",
              required = false,
          } },
        },
      },
    },
  },
  entity_checks = {
    { at_least_one_of = { "config.allow", "config.deny" } },
  },
}
