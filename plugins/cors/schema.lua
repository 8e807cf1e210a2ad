-- cors: Kong's configuration (allowed origins, methods and headers,
-- credentials, preflight handling).
local typedefs = require "kong.db.schema.typedefs"
local Schema = require "luagate.schema"


local METHODS = {
  "GET", "HEAD", "PUT", "PATCH", "POST", "DELETE", "OPTIONS", "TRACE",
  "CONNECT",
}


-- An origin is "*" or a PCRE regex (a plain origin is a valid regex too).
local function validate_asterisk_or_regex(value)
  if value == "*" or Schema.check_regex(value) then
    return true
  end
  return nil, "'" .. tostring(value) .. "' is not a valid regex"
end


local function header_list(description)
  return {
    description = description,
    type = "array",
    elements = { type = "string" },
  }
end


return {
  name = "cors",
  fields = {
    { consumer = typedefs.no_consumer },
    { protocols = typedefs.protocols_http },
    { config = {
        type = "record",
        fields = {
          { origins = {
              description = "List of allowed domains for the " ..
                            "`Access-Control-Allow-Origin` header: `*` " ..
                            "for all, exact origins " ..
                            "(`https://example.com`) or PCRE regexes. " ..
                            "Empty: `*`.",
              type = "array",
              elements = {
                type = "string",
                custom_validator = validate_asterisk_or_regex,
              },
          } },
          { headers = header_list(
              "Value for the `Access-Control-Allow-Headers` header. When " ..
              "empty, the preflight's `Access-Control-Request-Headers` " ..
              "is echoed.") },
          { exposed_headers = header_list(
              "Value for the `Access-Control-Expose-Headers` header. If " ..
              "not specified, no custom headers are exposed.") },
          { methods = {
              description = "Value for the `Access-Control-Allow-Methods` " ..
                            "header. Available options include `GET`, " ..
                            "`HEAD`, `PUT`, `PATCH`, `POST`, `DELETE`, " ..
                            "`OPTIONS`, `TRACE`, `CONNECT`. By default, " ..
                            "all options are allowed.",
              type = "array",
              default = METHODS,
              elements = { type = "string", one_of = METHODS },
          } },
          { max_age = {
              description = "Indicates how long the results of the " ..
                            "preflight request can be cached, in seconds " ..
                            "(`Access-Control-Max-Age`).",
              type = "number",
          } },
          { credentials = {
              description = "Flag to determine whether the " ..
                            "`Access-Control-Allow-Credentials` header " ..
                            "should be sent with `true` as the value.",
              type = "boolean",
              required = true,
              default = false,
          } },
          { private_network = {
              description = "Flag to determine whether the " ..
                            "`Access-Control-Allow-Private-Network` header " ..
                            "should be sent with `true` as the value.",
              type = "boolean",
              required = true,
              default = false,
          } },
          { preflight_continue = {
              description = "A boolean value that instructs the plugin to " ..
                            "proxy the `OPTIONS` preflight request to the " ..
                            "upstream service.",
              type = "boolean",
              required = true,
              default = false,
          } },
          { allow_origin_absent = {
              description = "When false, responses to requests " ..
                            "without an `Origin` header get no CORS " ..
                            "headers; when true, they get them as the " ..
                            "other responses do.",
              type = "boolean",
              required = true,
              default = true,
          } },
        },
      },
    },
  },
}
