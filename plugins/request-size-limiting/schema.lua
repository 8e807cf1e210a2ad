-- request-size-limiting: Kong's configuration (the largest request body
-- allowed, its unit, whether a Content-Length header is required).
local typedefs = require "kong.db.schema.typedefs"

local SIZE_UNITS = { "megabytes", "kilobytes", "bytes" }


return {
  name = "request-size-limiting",
  fields = {
    { protocols = typedefs.protocols_http },
    { config = {
        type = "record",
        fields = {
          { allowed_payload_size = {
              description = "Allowed request payload size, in " ..
                            "`size_unit` (megabytes by default: 128 " ..
                            "MiB, 134217728 bytes).",
              type = "integer",
              default = 128,
          } },
          { size_unit = {
              description = "Unit of `allowed_payload_size`: " ..
                            "`megabytes` (2^20 bytes, the default), " ..
                            "`kilobytes` (2^10 bytes) or `bytes`.",
              type = "string",
              required = true,
              default = SIZE_UNITS[1],
              one_of = SIZE_UNITS,
          } },
          { require_content_length = {
              description = "Set to `true` to ensure a valid " ..
                            "`Content-Length` header exists before " ..
                            "reading the request body (chunked requests " ..
                            "are still measured).",
              type = "boolean",
              required = true,
              default = false,
          } },
        },
      },
    },
  },
}
