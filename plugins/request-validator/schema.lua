-- request-validator: Kong Enterprise's configuration (body_schema,
-- parameter_schema, allowed_content_types, verbose_response, version,
-- content_type_parameter_validation). Schemas are JSON Schema, given as a
-- table or as a JSON text (Kong takes a text), compiled here so that an
-- invalid one is a config error with its path inside the schema.
local typedefs = require "kong.db.schema.typedefs"


-- siblings load through the plugin searcher in a worker; the config loader
-- (luagate check, specs) loads plugin schemas without it
local function sibling(name)
  local modname = "kong.plugins.request-validator." .. name
  local ok, m = pcall(require, modname)
  if ok then
    return m
  end
  local dir = debug.getinfo(1, "S").source:match("^@(.*)/[^/]*$") or "."
  m = dofile(dir .. "/" .. name .. ".lua")
  package.loaded[modname] = m
  return m
end

local jsonschema = sibling("jsonschema")
local media = sibling("media")


local VERSIONS = { "kong", "draft4", "draft6", "draft7" }
local STYLES = {
  "form", "simple", "label", "matrix", "spaceDelimited", "pipeDelimited",
  "deepObject",
}


local function validate_schema(value)
  local t = type(value)
  if t ~= "table" and t ~= "string" and t ~= "boolean" then
    return nil, "expected a JSON Schema (an object, a boolean or a JSON text)"
  end
  local ok, err = jsonschema.compile_cached(value)
  if not ok then
    return nil, err
  end
  return true
end


local function validate_version(value)
  if value == "kong" then
    return nil, "version 'kong' (Kong's own schema format) is not " ..
                "supported: use a JSON Schema draft (draft4, draft6, draft7)"
  end
  return true
end


local function validate_content_type(value)
  local ok, err = media.parse(value)
  if not ok then
    return nil, err
  end
  return true
end


return {
  name = "request-validator",
  fields = {
    { protocols = typedefs.protocols_http },
    { config = {
        type = "record",
        fields = {
          { body_schema = {
              description = "The JSON Schema the request body must " ..
                            "conform to, as an object or as a JSON text " ..
                            "(Kong's form). Checked for `application/json` " ..
                            "and `+json` bodies. One of `body_schema` or " ..
                            "`parameter_schema` must be specified.",
              type = "json",
              custom_validator = validate_schema,
          } },
          { allowed_content_types = {
              description = "Content types a request must have when " ..
                            "`body_schema` is set (`type/subtype`, " ..
                            "optionally one parameter such as " ..
                            "`charset=UTF-8`; `*` wildcards allowed). " ..
                            "Bodies of the non-JSON ones are not validated.",
              type = "set",
              default = { "application/json" },
              elements = {
                type = "string",
                custom_validator = validate_content_type,
              },
          } },
          { content_type_parameter_validation = {
              description = "Whether the parameter of the request's " ..
                            "Content-Type (e.g. `charset`) must match the " ..
                            "allowed content type's exactly.",
              type = "boolean",
              required = true,
              default = true,
          } },
          { parameter_schema = {
              description = "Query, header and path parameters to " ..
                            "validate, each with a JSON Schema for its " ..
                            "value. One of `body_schema` or " ..
                            "`parameter_schema` must be specified.",
              type = "array",
              elements = {
                type = "record",
                fields = {
                  { name = {
                      description = "The parameter's name (case-sensitive " ..
                                    "for query and path; for `path`, the " ..
                                    "name of a named capture of the " ..
                                    "route's regex path).",
                      type = "string",
                      required = true,
                  } },
                  { ["in"] = {
                      description = "Where the parameter is: `query`, " ..
                                    "`header` or `path`.",
                      type = "string",
                      required = true,
                      one_of = { "query", "header", "path" },
                  } },
                  { required = {
                      description = "Whether the parameter must be in " ..
                                    "the request.",
                      type = "boolean",
                      required = true,
                  } },
                  { schema = {
                      description = "The JSON Schema of the value (object " ..
                                    "or JSON text). The text of the value " ..
                                    "is converted to the schema's `type` " ..
                                    "first (`\"10\"` becomes 10 for " ..
                                    "`integer`; arrays are split).",
                      type = "json",
                      custom_validator = validate_schema,
                  } },
                  { style = {
                      description = "How an array value is serialized " ..
                                    "(OpenAPI): `form`/`simple` split on " ..
                                    "`,`, `spaceDelimited` on spaces, " ..
                                    "`pipeDelimited` on `|`.",
                      type = "string",
                      one_of = STYLES,
                  } },
                  { explode = {
                      description = "For query arrays: `true` when each " ..
                                    "item is its own `name=value` pair.",
                      type = "boolean",
                  } },
                },
              },
          } },
          { verbose_response = {
              description = "If enabled, the 400 response lists every " ..
                            "validation failure with its JSON pointer " ..
                            "(`errors`).",
              type = "boolean",
              required = true,
              default = false,
          } },
          { version = {
              description = "The JSON Schema draft of the schemas: " ..
                            "`draft4`, `draft6` or `draft7` (one compiler " ..
                            "reads the three). Kong's own format (`kong`) " ..
                            "is not supported.",
              type = "string",
              required = true,
              default = "draft7",
              one_of = VERSIONS,
              custom_validator = validate_version,
          } },
        },
        entity_checks = {
          { at_least_one_of = { "body_schema", "parameter_schema" } },
        },
      },
    },
  },
}
