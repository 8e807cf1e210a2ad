-- The configuration of pre-function and post-function (Kong's fields):
-- arrays of Lua code per phase, each compiled when the config loads (a
-- syntax error refuses the config, with the path of the snippet); the code
-- is not run here. Kong 2.x's `functions` (code for the access phase) is
-- accepted as a deprecated alias of `access`.
local typedefs = require "kong.db.schema.typedefs"

local type = type

-- luagate.config's plugin registry loads schemas without making
-- `kong.plugins.*` requirable (the runtime's plugin loader does): fall
-- back to the file next to this one.
local sandbox
do
  local ok, m = pcall(require, "kong.plugins.pre-function.sandbox")
  if not ok then
    local src = debug.getinfo(1, "S").source
    local dir = src:match("^@(.*)/[^/]*$") or "."
    m = dofile(dir .. "/sandbox.lua")
  end
  sandbox = m
end


local PHASES = {
  { "certificate", "in the certificate phase (not run by luagate: it " ..
                   "has no TLS listener)" },
  { "rewrite", "in the rewrite phase (global instances only, as for " ..
               "every plugin)" },
  { "access", "in the access phase" },
  { "header_filter", "in the header_filter phase" },
  { "body_filter", "in the body_filter phase (once per body chunk)" },
  { "log", "in the log phase, after the response was sent" },
}


return function(plugin_name)

  local function validate_function(code)
    local ok, err = sandbox.validate(code)
    if not ok then
      return nil, "error parsing " .. plugin_name .. ": " .. err
    end
    return true
  end

  local function phase_functions(where)
    return {
      description = "Custom functions, which can be user-defined, are " ..
                    "cached, and are run " .. where .. ". Each is Lua " ..
                    "code: either the body to run, or a chunk returning " ..
                    "the function to run on every request.",
      type = "array",
      required = true,
      default = {},
      elements = {
        type = "string",
        required = false,
        custom_validator = validate_function,
      },
    }
  end

  local fields = {}
  local names = {}
  for i, p in ipairs(PHASES) do
    fields[i] = { [p[1]] = phase_functions(p[2]) }
    names[i] = "'config." .. p[1] .. "'"
  end
  local AT_LEAST_ONE = "at least one of these fields must be non-empty: " ..
                       table.concat(names, ", ")

  -- Kong's at_least_one_of over config.<phase>, checked only when config
  -- itself is valid
  local function some_code(entity)
    local config = entity.config
    if type(config) ~= "table" then
      return true
    end
    for _, p in ipairs(PHASES) do
      local list = config[p[1]]
      if type(list) == "table" and #list > 0 then
        return true
      end
    end
    return nil, AT_LEAST_ONE
  end

  return {
    name = plugin_name,
    fields = {
      { consumer = typedefs.no_consumer },
      { protocols = typedefs.protocols },
      { config = {
          type = "record",
          fields = fields,
          shorthand_fields = {
            { functions = {
                description = "Deprecated (removed in Kong 3.0): the " ..
                              "functions to run in the access phase; use " ..
                              "`access`.",
                type = "array",
                elements = {
                  type = "string",
                  custom_validator = validate_function,
                },
                deprecation = {
                  message = plugin_name .. ": config.functions is " ..
                            "deprecated, please use config.access instead",
                  removal_in_version = "3.0",
                  replaced_with = { { path = { "access" } } },
                },
                func = function(value)
                  if type(value) == "table" and #value > 0 then
                    return { access = value }
                  end
                  return nil
                end,
            } },
          },
        },
      },
    },
    entity_checks = {
      { custom_entity_check = {
          field_sources = { "config" },
          fn = some_code,
      } },
    },
  }
end
