-- luacheck: no max line length
local typedefs = require "kong.db.schema.typedefs"

local PLUGIN_NAME = ({...})[1]:match("^kong%.plugins%.([^%.]+)")

return {
  -- the template's schema names the plugin; here on purpose a different
  -- name: the directory's is the one that counts
  name = "myplugin",
  module_name_seen = PLUGIN_NAME,
  fields = {
    { consumer = typedefs.no_consumer },
    { protocols = typedefs.protocols_http },
    { config = {
        type = "record",
        fields = {
          { request_header = typedefs.header_name {
              required = true,
              default = "Hello-World" } },
          { response_header = typedefs.header_name {
              required = true,
              default = "Bye-World" } },
          { route_by_header = { type = "boolean", default = false } },
          { env_seen = { type = "string",
                         default = os.getenv("HOME") and "yes" or "no" } },
        },
        entity_checks = {
          { at_least_one_of = { "request_header", "response_header" }, },
          { distinct = { "request_header", "response_header"} },
        },
      },
    },
  },
}
