-- request-validator: validates query, header and path parameters and the
-- JSON body of requests against JSON Schemas (Kong Enterprise's plugin).
--
--   * parameters first: each configured parameter is read (query argument,
--     header, or named capture of the route's regex path), converted from
--     text to its schema's type, and validated; a missing required one or
--     an invalid one gives 400 "request param doesn't conform to schema";
--   * with body_schema, the Content-Type must be one of
--     allowed_content_types (400 "specified Content-Type is not allowed");
--     JSON bodies (application/json, */*+json) are validated, others pass;
--     a body that is not JSON or does not conform gives 400 "request body
--     doesn't conform to schema";
--   * verbose_response adds `errors`: every failure with its JSON pointer.
--
-- Schemas are compiled into Lua closures when the config loads (the
-- schema's validator compiles them; configure() picks them up) and kept per
-- config table; a request runs closures only.

local jsonschema = require "kong.plugins.request-validator.jsonschema"
local json = require "luagate.json"
local media = require "kong.plugins.request-validator.media"

local kong = kong
local type = type
local ipairs = ipairs
local tonumber = tonumber
local setmetatable = setmetatable
local floor = math.floor
local find = string.find
local sub = string.sub
local gsub = string.gsub
local gmatch = string.gmatch
local escape_ptr = function(s)
  return (gsub(gsub(s, "~", "~0"), "/", "~1"))
end

local MSG_CONTENT_TYPE = "specified Content-Type is not allowed"
local MSG_BODY = "request body doesn't conform to schema"
local MSG_PARAM = "request param doesn't conform to schema"
local MSG_PARAM_MISSING = "required parameter value not found in request"

local ARRAY_MT = json.ARRAY_MT
local NULL = json.NULL


local RequestValidatorHandler = {
  PRIORITY = 999,
  VERSION = "3.10.0",
}


-- parameters ------------------------------------------------------------------

local SEPARATORS = {
  form = ",", simple = ",", label = ",", matrix = ",", deepObject = ",",
  spaceDelimited = " ", pipeDelimited = "|",
}


-- Converts a parameter's text to `t` (a JSON Schema type name); returns
-- the converted value or nil when the text does not read as one.
local function convert(t, s)
  if t == "integer" or t == "number" then
    local n = tonumber(s)
    if n and (t == "number" or n == floor(n)) and
       not find(s, "[^%d%.eE+-]") then
      return n
    end
  elseif t == "boolean" then
    if s == "true" then
      return true
    elseif s == "false" then
      return false
    end
  elseif t == "null" then
    if s == "" then
      return NULL
    end
  elseif t == "string" then
    return s
  end
  return nil
end


local function type_list(t)
  if type(t) == "string" then
    return { t }
  elseif type(t) == "table" then
    return t
  end
  return {}
end


-- A function text (or array of texts) -> value for the schema's type:
-- compiled once per parameter.
local function make_coercer(schema, param)
  local s = jsonschema.schema_of(schema)
  local types = type_list(type(s) == "table" and s.type)
  local has = {}
  for _, t in ipairs(types) do
    has[t] = true
  end

  local function scalar(list, v)
    if has.string or #list == 0 then
      return v
    end
    for _, t in ipairs(list) do
      local c = convert(t, v)
      if c ~= nil then
        return c
      end
    end
    return v
  end

  if has.array then
    local items = type(s) == "table" and type(s.items) == "table" and
                  s.items.type
    local item_types = type_list(items)
    local item_has_string = false
    for _, t in ipairs(item_types) do
      if t == "string" then
        item_has_string = true
      end
    end
    local sep = SEPARATORS[param.style or "form"] or ","
    return function(v)
      local parts = setmetatable({}, ARRAY_MT)
      if type(v) == "table" then -- repeated query argument
        for i, x in ipairs(v) do
          parts[i] = x == true and "" or x
        end
      elseif v ~= "" then
        for p in gmatch(v .. sep, "(.-)" .. (sep == "|" and "%|" or sep)) do
          parts[#parts + 1] = p
        end
      end
      if not item_has_string and #item_types > 0 then
        for i = 1, #parts do
          parts[i] = scalar(item_types, parts[i])
        end
      end
      return parts
    end
  end

  return function(v)
    if type(v) == "table" then
      v = v[1]
    end
    if v == true then
      v = ""
    end
    return scalar(types, v)
  end
end


-- compiled configs ------------------------------------------------------------

local compiled = setmetatable({}, { __mode = "k" })


local function compile(conf)
  local c = {}
  if conf.body_schema ~= nil then
    c.body = assert(jsonschema.compile_cached(conf.body_schema))
    local allowed = {}
    for i, ct in ipairs(conf.allowed_content_types or {}) do
      allowed[i] = assert(media.parse(ct))
    end
    c.allowed = allowed
    c.check_params = conf.content_type_parameter_validation ~= false
  end
  local params = conf.parameter_schema
  if params and #params > 0 then
    local list = {}
    for i, p in ipairs(params) do
      local e = {
        name = p.name,
        ["in"] = p["in"],
        required = p.required,
        ptr = "/" .. p["in"] .. "/" .. escape_ptr(p.name),
      }
      if p.schema ~= nil then
        e.validate = assert(jsonschema.compile_cached(p.schema))
        e.coerce = make_coercer(p.schema, p)
      end
      list[i] = e
      if e["in"] == "query" then
        c.needs_query = true
      elseif e["in"] == "path" then
        c.needs_captures = true
      end
    end
    c.params = list
  end
  compiled[conf] = c
  return c
end


local function get(conf)
  return compiled[conf] or compile(conf)
end


function RequestValidatorHandler:configure(configs)
  for _, conf in ipairs(configs or {}) do
    if not compiled[conf] then
      compile(conf)
    end
  end
end


-- access ----------------------------------------------------------------------

local function reject(message, errors)
  if errors then
    return kong.response.exit(400, { message = message, errors = errors })
  end
  return kong.response.exit(400, { message = message })
end


local function prefix_errors(out, list, ptr)
  for _, e in ipairs(list) do
    out[#out + 1] = { path = ptr .. e.path, message = e.message }
  end
end


local function validate_params(c, verbose)
  local query, captures
  if c.needs_query then
    query = kong.request.get_query(1000)
  end
  if c.needs_captures then
    captures = kong.request.get_uri_captures().named
  end
  local errors = verbose and {} or nil
  local ok = true
  for _, p in ipairs(c.params) do
    local where = p["in"]
    local v
    if where == "query" then
      v = query[p.name]
    elseif where == "header" then
      v = kong.request.get_header(p.name)
    else
      v = captures[p.name]
    end
    if v == nil then
      if p.required then
        ok = false
        if not verbose then
          break
        end
        errors[#errors + 1] = { path = p.ptr, message = MSG_PARAM_MISSING }
      end
    elseif p.validate then
      local valid, list = p.validate(p.coerce(v), verbose)
      if not valid then
        ok = false
        if not verbose then
          break
        end
        prefix_errors(errors, list, p.ptr)
      end
    end
  end
  if not ok then
    return reject(MSG_PARAM, errors)
  end
end


local function validate_body(c, verbose)
  local ct = kong.request.get_header("Content-Type")
  local m = ct and media.parse(ct)
  if not m or not media.allowed(c.allowed, m, c.check_params) then
    return reject(MSG_CONTENT_TYPE)
  end
  if not media.is_json(m) then
    return
  end
  local body, err = kong.request.get_raw_body()
  if not body then
    kong.log.err("could not read the request body: ", err)
    return kong.response.exit(500, { message = "An unexpected error occurred" })
  end
  local value
  value, err = json.decode(body)
  if value == nil then
    return reject(MSG_BODY, verbose and {
      { path = "", message = "request body is not valid JSON: " ..
                             (sub(err or "", 1, 200)) },
    } or nil)
  end
  local valid, errors = c.body(value, verbose)
  if not valid then
    return reject(MSG_BODY, errors)
  end
end


function RequestValidatorHandler:access(conf)
  local c = get(conf)
  local verbose = conf.verbose_response
  if c.params then
    validate_params(c, verbose)
  end
  if c.body then
    validate_body(c, verbose)
  end
end


return RequestValidatorHandler
