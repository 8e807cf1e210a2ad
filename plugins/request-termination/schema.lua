-- request-termination: Kong's configuration (the status, message or raw
-- body of the response, echo mode, trigger).
local typedefs = require "kong.db.schema.typedefs"
local Schema = require "luagate.schema"

local is_null = Schema.is_null


local function is_present(v)
  return not is_null(v) and v ~= ""
end


local function check(config)
  if is_present(config.message) and
     (is_present(config.content_type) or is_present(config.body)) then
    return nil, "message cannot be used with content_type or body"
  end
  if is_present(config.content_type) and not is_present(config.body) then
    return nil, "content_type requires a body"
  end
  if config.echo and
     (is_present(config.content_type) or is_present(config.body)) then
    return nil, "echo cannot be used with content_type and body"
  end
  return true
end


return {
  name = "request-termination",
  fields = {
    { protocols = typedefs.protocols_http },
    { config = {
        type = "record",
        fields = {
          { status_code = {
              description = "The response code to send. Must be an " ..
                            "integer between 100 and 599.",
              type = "integer",
              required = true,
              default = 503,
              between = { 100, 599 },
          } },
          { message = {
              description = "The message to send, if using the default " ..
                            "response generator (a JSON body " ..
                            "`{\"message\": ...}`).",
              type = "string",
          } },
          { content_type = {
              description = "Content type of the raw response configured " ..
                            "with `config.body`.",
              type = "string",
          } },
          { body = {
              description = "The raw response body to send. This is " ..
                            "mutually exclusive with the `config.message` " ..
                            "field.",
              type = "string",
          } },
          { echo = {
              description = "When set, the plugin will echo a copy of the " ..
                            "request back to the client, as JSON (for " ..
                            "debugging; combine with `trigger`).",
              type = "boolean",
              required = true,
              default = false,
          } },
          { trigger = typedefs.header_name {
              description = "A header or query argument name: when set, " ..
                            "the plugin only terminates requests that " ..
                            "carry it; others are proxied as usual.",
          } },
        },
        custom_validator = check,
      },
    },
  },
}
