-- response-transformer: Kong's configuration (remove, rename, replace,
-- add, append of response headers and of top-level JSON body properties;
-- json_types for the values of replace/add/append.json).
local typedefs = require "kong.db.schema.typedefs"

local find = string.find
local match = string.match
local fmt = string.format

local validate_header_name = typedefs.validate_header_name


local function split(entry)
  return match(entry, "^([^:]+):*(.-)$")
end


local function valid_header(name)
  if validate_header_name(name) then
    return true
  end
  return nil, fmt("'%s' is not a valid header", name)
end


-- rename.headers entries: "old:new", both header names
local function check_rename_header(entry)
  local name, value = split(entry)
  local ok, err = valid_header(name)
  if not ok then
    return nil, err
  end
  return valid_header(value)
end


-- replace/add/append.headers entries: "name:value", a value without
-- control characters
local function check_header_value(entry)
  local name, value = split(entry)
  local ok, err = valid_header(name)
  if not ok then
    return nil, err
  end
  if find(value, "[%z\1-\8\10-\31\127]") then
    return nil, fmt("'%s' is not a valid header", value)
  end
  return true
end


local function strings(description, validator, colon)
  return {
    description = description,
    type = "array",
    required = true,
    default = {},
    elements = {
      type = "string",
      match = colon and "^[^:]+:.*$" or nil,
      custom_validator = validator,
    },
  }
end


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
