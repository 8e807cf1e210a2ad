local typedefs = require "kong.db.schema.typedefs"

-- luagate's own plugin: gzip (and brotli) compression of upstream responses,
-- done in C on the streaming path.
return {
  name = "response-compression",
  fields = {
    { protocols = typedefs.protocols_http },
    { consumer = typedefs.no_consumer },
    { config = {
        type = "record",
        fields = {
          { types = {
              description = "Media types (type/subtype, no parameters) that are " ..
                            "compressed; '*' compresses every type.",
              type = "array",
              elements = { type = "string" },
              default = { "text/html", "text/plain", "text/css", "text/xml",
                          "text/javascript", "application/javascript",
                          "application/json", "application/xml",
                          "application/problem+json", "image/svg+xml" },
          } },
          { min_size = {
              description = "Responses whose Content-Length is smaller than this " ..
                            "many bytes are sent as they are (responses without " ..
                            "Content-Length are compressed).",
              type = "integer", default = 1024, between = { 0, 1073741824 },
          } },
          { gzip_level = {
              description = "gzip compression level, 1 (fastest) to 9 (smallest).",
              type = "integer", default = 6, between = { 1, 9 },
          } },
          { brotli = {
              description = "Use brotli for clients that prefer it (Accept-Encoding: br).",
              type = "boolean", default = true,
          } },
          { brotli_level = {
              description = "brotli quality, 0 (fastest) to 11 (smallest).",
              type = "integer", default = 4, between = { 0, 11 },
          } },
        },
    } },
  },
}
