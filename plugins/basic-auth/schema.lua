-- basic-auth's configuration (Kong 3.10's fields and defaults).
local typedefs = require "kong.db.schema.typedefs"

return {
  name = "basic-auth",
  fields = {
    { consumer = typedefs.no_consumer },
    { consumer_group = typedefs.no_consumer_group },
    { protocols = typedefs.protocols_http },
    { config = {
        type = "record",
        fields = {
          { anonymous = {
              type = "string",
              description = "Consumer (id or username, not custom_id) to " ..
                            "use when authentication fails, instead of a " ..
                            "401. No default. A credential set by an " ..
                            "earlier auth plugin then skips this one " ..
                            "(logical OR).",
          } },
          { hide_credentials = {
              type = "boolean",
              required = true,
              default = false,
              description = "Remove the Authorization / " ..
                            "Proxy-Authorization header the credentials " ..
                            "were read from before proxying.",
          } },
          { realm = {
              type = "string",
              required = true,
              default = "service",
              description = "Realm of the `WWW-Authenticate: Basic " ..
                            "realm=\"<realm>\"` header sent with 401 " ..
                            "responses.",
          } },
        },
    } },
  },
}
