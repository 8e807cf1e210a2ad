-- response-transformer: Kong's configuration (remove, rename, replace,
-- add, append of response headers and of top-level JSON body properties;
-- json_types for the values of replace/add/append.json).
local typedefs = require "kong.db.schema.typedefs"
local entries = require "luagate.header_entries"

local check_rename_header = entries.check_rename_header
local check_header_value = entries.check_header_value
local strings = entries.strings


local JSON_TYPES = {
  description = "List of JSON type names. Specify the types of the JSON " ..
                "values returned when appending JSON properties. Each " ..
                "string element can be one of: boolean, number, or " ..
                "string; the n-th type applies to the n-th json entry " ..
                "(string when absent).",
  type = "array",
  required = true,
  default = {},
  elements = {
    type = "string",
    one_of = { "boolean", "number", "string" },
  },
}


local function value_record(description, verb)
  return {
    description = description,
    type = "record",
    required = true,
    fields = {
      { json = strings("List of property_name:value pairs. " .. verb ..
                       " Applies to application/json responses only.",
                       nil, true) },
      { json_types = JSON_TYPES },
      { headers = strings("List of header_name:value pairs. " .. verb,
                          check_header_value, true) },
    },
  }
end


return {
  name = "response-transformer",
  fields = {
    { protocols = typedefs.protocols_http },
    { config = {
        type = "record",
        fields = {
          { remove = {
              description = "What to remove from the response.",
              type = "record",
              required = true,
              fields = {
                { json = strings("List of property names. Remove the " ..
                                 "property from the JSON body if it is " ..
                                 "present.") },
                { headers = strings("List of header names. Unset the " ..
                                    "header(s) with the given name.") },
              },
          } },
          { rename = {
              description = "What to rename in the response.",
              type = "record",
              required = true,
              fields = {
                { json = strings("List of property old_name:new_name " ..
                                 "pairs. Rename the property in the JSON " ..
                                 "body if it is present.", nil, true) },
                { headers = strings("List of original_header_name:" ..
                                    "new_header_name pairs. If the header " ..
                                    "original_header_name is already set, " ..
                                    "rename it to new_header_name.",
                                    check_rename_header, true) },
              },
          } },
          { replace = value_record("What to replace in the response.",
                                   "If and only if the header or " ..
                                   "property is already set, replace its " ..
                                   "old value with the new one.") },
          { add = value_record("What to add to the response.",
                               "If and only if the header or property " ..
                               "is not already set, set a new one with " ..
                               "the given value.") },
          { append = value_record("What to append to the response.",
                                  "If the header or property is not set, " ..
                                  "set it with the given value; if it is " ..
                                  "already set, add the value to it (a " ..
                                  "new header line, or a JSON array).") },
        },
      },
    },
  },
}
