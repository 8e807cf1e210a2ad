-- key-auth's configuration (Kong 3.10's fields and defaults).
local typedefs = require "kong.db.schema.typedefs"

return {
  name = "key-auth",
  fields = {
    { consumer = typedefs.no_consumer },
    { consumer_group = typedefs.no_consumer_group },
    { protocols = typedefs.protocols_http },
    { config = {
        type = "record",
        fields = {
          { key_names = {
              type = "array",
              required = true,
              elements = typedefs.header_name,
              default = { "apikey" },
              description = "Names of the header, query argument or body " ..
                            "field that carry the API key, tried in order; " ..
                            "only letters, digits, '_' and '-'.",
          } },
          { hide_credentials = {
              type = "boolean",
              required = true,
              default = false,
              description = "Remove the key (header, query argument and " ..
                            "body field) from the request sent upstream.",
          } },
          { anonymous = {
              type = "string",
              description = "Consumer (id or username) to use when " ..
                            "authentication fails, instead of a 401. No " ..
                            "default. A credential set by an earlier auth " ..
                            "plugin then skips this one (logical OR).",
          } },
          { key_in_header = {
              type = "boolean",
              required = true,
              default = true,
              description = "Look for the key in the request headers.",
          } },
          { key_in_query = {
              type = "boolean",
              required = true,
              default = true,
              description = "Look for the key in the query string.",
          } },
          { key_in_body = {
              type = "boolean",
              required = true,
              default = false,
              description = "Look for the key in the request body " ..
                            "(application/x-www-form-urlencoded, " ..
                            "application/json, multipart/form-data).",
          } },
          { run_on_preflight = {
              type = "boolean",
              required = true,
              default = true,
              description = "Authenticate OPTIONS requests too; when " ..
                            "false they pass without a key.",
          } },
          { realm = {
              type = "string",
              required = false,
              description = "Realm of the WWW-Authenticate header sent " ..
                            "with 401 responses (`Key realm=\"<realm>\"`); " ..
                            "no default: the header is just `Key`.",
          } },
        },
    } },
  },
}
