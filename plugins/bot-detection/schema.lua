-- bot-detection: Kong's configuration (allow and deny lists of regexes on
-- the User-Agent header).
local typedefs = require "kong.db.schema.typedefs"


local function regex_list(what)
  return {
    description = "An array of regular expressions that should be " ..
                  what .. ". The regular expressions will be checked " ..
                  "against the `User-Agent` header.",
    type = "array",
    elements = { type = "string", is_regex = true },
    default = {},
  }
end


return {
  name = "bot-detection",
  fields = {
    { consumer = typedefs.no_consumer },
    { protocols = typedefs.protocols_http },
    { config = {
        type = "record",
        fields = {
          { allow = regex_list("allowed") },
          { deny = regex_list("denied") },
        },
      },
    },
  },
}
