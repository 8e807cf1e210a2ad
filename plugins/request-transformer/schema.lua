-- request-transformer: Kong's configuration (http_method; remove, rename,
-- replace, add, append of headers, querystring and body; replace.uri).
-- Entries are "name:value" strings; values are templates (template.lua),
-- compiled here so that a bad one is refused when the config loads.
local typedefs = require "kong.db.schema.typedefs"
local entries = require "luagate.header_entries"

local split = entries.split
local valid_header = entries.valid_header
local check_rename_header = entries.check_rename_header
local strings = entries.strings


-- luagate.config's plugin registry loads schemas without making
-- `kong.plugins.*` requirable (the runtime's plugin loader does): fall
-- back to the file next to this one.
local template
do
  local ok, m = pcall(require, "kong.plugins.request-transformer.template")
  if not ok then
    local src = debug.getinfo(1, "S").source
    local dir = src:match("^@(.*)/[^/]*$") or "."
    m = dofile(dir .. "/template.lua")
  end
  template = m
end


local function check_template(value)
  local ok, err = template.compile(value)
  if not ok then
    return nil, "value '" .. value .. "' is not in supported format, " ..
                "error: " .. err
  end
  return true
end


-- body and querystring entries: "name:value" with a value that compiles
local function check_for_value(entry)
  local name, value = split(entry)
  if not name then
    return nil, "invalid value: " .. entry
  end
  if value == "" then
    return nil, "key '" .. name .. "' has no value"
  end
  return check_template(value)
end


-- remove.headers entries: a header name (anything after ':' is ignored)
local function check_header(entry)
  return valid_header((split(entry)) or entry)
end


-- replace/add/append.headers entries: "name:value", the value a template
local function check_header_value(entry)
  return entries.check_header_value(entry, check_template)
end


local function record(description, fields)
  return {
    description = description,
    type = "record",
    required = true,
    fields = fields,
  }
end


local REMOVE = record("Parameters to remove from the request.", {
  { body = strings("List of parameter names. Remove the parameter if " ..
                   "and only if content-type is one the following: " ..
                   "application/json, multipart/form-data, " ..
                   "application/x-www-form-urlencoded and the parameter " ..
                   "is present.") },
  { headers = strings("List of header names. Unset the headers with the " ..
                      "given name.", check_header) },
  { querystring = strings("List of querystring names. Remove the " ..
                          "querystring if it is present.") },
})

local RENAME = record("Parameters to rename in the request.", {
  { body = strings("List of parameter old_name:new_name pairs. Rename " ..
                   "the parameter name if and only if content-type is " ..
                   "one the following: application/json, " ..
                   "multipart/form-data, application/x-www-form-urlencoded " ..
                   "and the parameter is present.", check_for_value) },
  { headers = strings("List of header old_name:new_name pairs. If and " ..
                      "only if the header is already set, rename the " ..
                      "header and keep its value(s).",
                      check_rename_header, true) },
  { querystring = strings("List of querystring old_name:new_name pairs. " ..
                          "If and only if the querystring is present, " ..
                          "rename it and keep its value(s).",
                          check_for_value) },
})


local function value_record(description, verb, with_uri)
  local fields = {
    { body = strings("List of paramname:value pairs. " .. verb .. " The " ..
                     "body is changed only when its content-type is " ..
                     "application/json, multipart/form-data or " ..
                     "application/x-www-form-urlencoded. Values are " ..
                     "templates.", check_for_value) },
    { headers = strings("List of headername:value pairs. " .. verb ..
                        " Values are templates.", check_header_value, true) },
    { querystring = strings("List of queryname:value pairs. " .. verb ..
                            " Values are templates.", check_for_value) },
  }
  if with_uri then
    fields[#fields + 1] = { uri = {
      description = "Updates the upstream request URI with the given " ..
                    "value (a template). This value can only be used to " ..
                    "update the path part of the URI; not the scheme, " ..
                    "nor the hostname.",
      type = "string",
      custom_validator = check_template,
    } }
  end
  return record(description, fields)
end


return {
  name = "request-transformer",
  fields = {
    { protocols = typedefs.protocols },
    { config = {
        type = "record",
        fields = {
          { http_method = typedefs.http_method {
              description = "A string representing an HTTP method, such " ..
                            "as GET, POST, PUT, or DELETE. The string " ..
                            "must contain only uppercase letters. Changes " ..
                            "the method of the upstream request.",
          } },
          { remove = REMOVE },
          { rename = RENAME },
          { replace = value_record("Parameters to replace in the request.",
                                   "If and only if the parameter is " ..
                                   "already set, replace its old value " ..
                                   "with the new one.", true) },
          { add = value_record("Parameters to add to the request.",
                               "If and only if the parameter is not " ..
                               "already set, set a new parameter with " ..
                               "the given value.") },
          { append = value_record("Parameters to append to the request.",
                                  "Add the value to the parameter, " ..
                                  "keeping the values it already has " ..
                                  "(the parameter becomes multi-valued); " ..
                                  "set it when absent.") },
        },
      },
    },
  },
}
