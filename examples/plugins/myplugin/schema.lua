-- myplugin's configuration, in Kong's schema format.
local typedefs = require "kong.db.schema.typedefs"

local PLUGIN_NAME = "myplugin"

return {
  name = PLUGIN_NAME,
  fields = {
    -- the plugin cannot be scoped to a consumer
    { consumer = typedefs.no_consumer },
    -- HTTP(S) routes and services only
    { protocols = typedefs.protocols_http },
    { config = {
        type = "record",
        fields = {
          { request_header = typedefs.header_name {
              required = true,
              default = "Hello-World",
              description = "Header added to the request sent upstream." } },
          { response_header = typedefs.header_name {
              required = true,
              default = "Bye-World",
              description = "Header added to the response to the client." } },
          { ttl = {
              type = "integer",
              default = 600,
              required = true,
              gt = 0,
              description = "An example number field (seconds); unused." } },
        },
        entity_checks = {
          -- at least one of the headers must be set
          { at_least_one_of = { "request_header", "response_header" } },
          -- and they must differ
          { distinct = { "request_header", "response_header" } },
        },
      },
    },
  },
}
