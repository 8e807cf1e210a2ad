-- A JSON Schema (draft 7, with draft 4 and 6 forms) compiler: a schema is
-- turned once, at config load, into a tree of Lua closures; validating a
-- value runs those closures and never looks at the schema again.
--
--   local jsonschema = require "kong.plugins.request-validator.jsonschema"
--   local validate, err = jsonschema.compile({ type = "object",
--     required = { "name" }, properties = { name = { type = "string" } } })
--   -- err: "invalid JSON Schema at '#/properties/name/type': ..."
--   local ok, errors = validate(value, true)
--   -- errors: { { path = "/name", message = "expected string, got number" } }
--
-- validate(value, collect): with `collect`, every failure is listed with its
-- JSON pointer (RFC 6901, "" for the root); without, validation stops at the
-- first failure (the fast path) and errors is nil.
--
-- Values are as luagate.json decodes them: objects and arrays are tables
-- (arrays told apart by json.is_array), null is cjson.null.
--
-- Supported: type (string or array, integer vs number), enum, const,
-- properties, required, additionalProperties, patternProperties,
-- propertyNames, minProperties, maxProperties, dependencies, items (schema
-- or array), additionalItems, minItems, maxItems, uniqueItems, contains,
-- minLength, maxLength (UTF-8 code points), pattern (PCRE2, UTF-8 mode,
-- unanchored), minimum, maximum, exclusiveMinimum, exclusiveMaximum (numbers,
-- or draft 4's booleans), multipleOf, allOf, anyOf, oneOf, not,
-- if/then/else, $ref to the same document (#, #/definitions/..,
-- #/$defs/.., any JSON pointer), boolean schemas, format (date-time, date,
-- time, email, uuid, ipv4, ipv6, hostname, uri; other formats are
-- annotations). As draft 7 says, keywords next to $ref are ignored.

local json = require "luagate.json"
local ffi = require "ffi"

local type = type
local next = next
local pairs = pairs
local ipairs = ipairs
local error = error
local pcall = pcall
local tostring = tostring
local tonumber = tonumber
local setmetatable = setmetatable
local getmetatable = getmetatable
local find = string.find
local sub = string.sub
local gsub = string.gsub
local fmt = string.format
local concat = table.concat
local sort = table.sort
local floor = math.floor
local abs = math.abs
local huge = math.huge

local is_array = json.is_array
local NULL = json.NULL


-- PCRE2 through ngx.re at run time; at config load (outside a worker, e.g.
-- `luagate check` or a spec) luagate's own module.
local re_find
do
  local ngx = rawget(_G, "ngx")
  if type(ngx) == "table" and type(ngx.re) == "table" and ngx.re.find then
    re_find = ngx.re.find
  else
    re_find = require("luagate.ngx.re").find
  end
end
local RE_OPTS = "jou"


-- the null values a config may carry (YAML's, cjson's)
local NULLS = { [NULL] = true }
do
  local ok, functional = pcall(require, "lyaml.functional")
  if ok and functional.NULL then
    NULLS[functional.NULL] = true
  end
end


local _M = {}


-- validation state: validation is synchronous (nothing yields), so one
-- state per worker serves every call
local errs        -- array of { path, message } while collecting, else nil
local path = {}   -- keys and indexes from the root to the current value
local depth = 0


local function pointer()
  if depth == 0 then
    return ""
  end
  local parts = {}
  for i = 1, depth do
    local p = path[i]
    if type(p) == "string" then
      p = gsub(gsub(p, "~", "~0"), "/", "~1")
    else
      p = tostring(p)
    end
    parts[i] = p
  end
  return "/" .. concat(parts, "/")
end


local function fail(msg)
  if errs then
    errs[#errs + 1] = { path = pointer(), message = msg }
  end
  return false
end


-- records a failure one level down (a missing property, an extra one)
local function fail_at(key, msg)
  if errs then
    depth = depth + 1
    path[depth] = key
    errs[#errs + 1] = { path = pointer(), message = msg }
    depth = depth - 1
  end
  return false
end


-- Runs fn(x) without collecting errors; returns its result.
local function quietly(fn, x)
  local saved = errs
  errs = nil
  local ok = fn(x)
  errs = saved
  return ok
end


-- values ----------------------------------------------------------------------

local function json_type(x)
  local t = type(x)
  if t == "table" then
    return is_array(x) and "array" or "object"
  elseif t == "number" then
    if x == floor(x) and x ~= huge and x ~= -huge then
      return "integer"
    end
    return "number"
  elseif t == "string" or t == "boolean" then
    return t
  elseif NULLS[x] then
    return "null"
  end
  return t
end


local function is_null(x)
  return NULLS[x] == true
end


local function equal(a, b)
  if a == b then
    return true
  end
  if is_null(a) and is_null(b) then
    return true
  end
  if type(a) ~= "table" or type(b) ~= "table" then
    return false
  end
  local n = 0
  for k, v in pairs(a) do
    local w = b[k]
    if w == nil or not equal(v, w) then
      return false
    end
    n = n + 1
  end
  for _ in pairs(b) do
    n = n - 1
  end
  return n == 0
end
_M.equal = equal


-- A canonical text of a value (sorted keys), for uniqueItems.
local function canon(x, out)
  local t = type(x)
  if t == "table" then
    if is_array(x) then
      out[#out + 1] = "["
      for i = 1, #x do
        canon(x[i], out)
        out[#out + 1] = ","
      end
      out[#out + 1] = "]"
    else
      local keys = {}
      for k in pairs(x) do
        keys[#keys + 1] = k
      end
      sort(keys)
      out[#out + 1] = "{"
      for _, k in ipairs(keys) do
        out[#out + 1] = fmt("%q:", k)
        canon(x[k], out)
        out[#out + 1] = ","
      end
      out[#out + 1] = "}"
    end
  elseif t == "string" then
    out[#out + 1] = fmt("%q", x)
  elseif is_null(x) then
    out[#out + 1] = "null"
  else
    out[#out + 1] = tostring(x)
  end
  return out
end


-- Length in code points: bytes minus UTF-8 continuation bytes.
local function utf8_len(s)
  local n = #s
  local i = 1
  while true do
    local j = find(s, "[\128-\191]", i)
    if not j then
      return n
    end
    n = n - 1
    i = j + 1
  end
end


-- formats ---------------------------------------------------------------------

local DAYS = { 31, 29, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31 }

local function valid_date(y, m, d)
  y, m, d = tonumber(y), tonumber(m), tonumber(d)
  if m < 1 or m > 12 or d < 1 or d > DAYS[m] then
    return false
  end
  if m == 2 and d == 29 then
    return (y % 4 == 0 and y % 100 ~= 0) or y % 400 == 0
  end
  return true
end

local function valid_time(s)
  local h, mi, se, rest = s:match("^(%d%d):(%d%d):(%d%d)(.*)$")
  if not h or tonumber(h) > 23 or tonumber(mi) > 59 or tonumber(se) > 60 then
    return false
  end
  rest = gsub(rest, "^%.%d+", "")
  if rest == "Z" or rest == "z" then
    return true
  end
  local oh, om = rest:match("^[+-](%d%d):(%d%d)$")
  return oh ~= nil and tonumber(oh) <= 23 and tonumber(om) <= 59
end

local function valid_hostname(s)
  if #s == 0 or #s > 253 then
    return false
  end
  for label in (s .. "."):gmatch("([^.]*)%.") do
    if #label == 0 or #label > 63 or not find(label, "^[%w%-]+$") or
       find(label, "^%-") or find(label, "%-$") then
      return false
    end
  end
  return true
end

local inet_pton
do
  pcall(ffi.cdef, "int inet_pton(int af, const char *src, void *dst);")
  local buf = ffi.new("unsigned char[16]")
  inet_pton = function(af, s)
    return ffi.C.inet_pton(af, s, buf) == 1
  end
end
local AF_INET, AF_INET6 = 2, 10

-- the local part of an address: atext, dots inside
local EMAIL_LOCAL = "^[%w!#%$%%&'%*%+/=%?%^_`{|}~%-]" ..
                    "[%w!#%$%%&'%*%+/=%?%^_`{|}~%-%.]*$"

local FORMATS = {
  ["date-time"] = function(s)
    local y, m, d, rest = s:match("^(%d%d%d%d)%-(%d%d)%-(%d%d)[Tt](.*)$")
    return y ~= nil and valid_date(y, m, d) and valid_time(rest)
  end,
  date = function(s)
    local y, m, d = s:match("^(%d%d%d%d)%-(%d%d)%-(%d%d)$")
    return y ~= nil and valid_date(y, m, d)
  end,
  time = valid_time,
  email = function(s)
    local l, d = s:match("^([^@]+)@([^@]+)$")
    return l ~= nil and #l <= 64 and find(l, EMAIL_LOCAL) ~= nil and
           not find(l, "%.%.") and not find(l, "%.$") and valid_hostname(d)
  end,
  uuid = function(s)
    return find(s, "^%x%x%x%x%x%x%x%x%-%x%x%x%x%-%x%x%x%x%-%x%x%x%x%-" ..
                   "%x%x%x%x%x%x%x%x%x%x%x%x$") ~= nil
  end,
  ipv4 = function(s)
    return find(s, "^%d+%.%d+%.%d+%.%d+$") ~= nil and inet_pton(AF_INET, s)
  end,
  ipv6 = function(s)
    return find(s, ":", 1, true) ~= nil and inet_pton(AF_INET6, s)
  end,
  hostname = valid_hostname,
  uri = function(s)
    return find(s, "^%a[%w+.%-]*:[^%s]*$") ~= nil
  end,
}
_M.FORMATS = FORMATS


-- compiling -------------------------------------------------------------------

local TYPES = {
  null = true, boolean = true, object = true, array = true, number = true,
  integer = true, string = true,
}

local function schema_error(at, msg)
  error({ schema_error = fmt("invalid JSON Schema at '%s': %s", at, msg) }, 0)
end


local function escape_ptr(k)
  return (gsub(gsub(tostring(k), "~", "~0"), "/", "~1"))
end


local function is_object(t)
  return type(t) == "table" and not (next(t) ~= nil and is_array(t)) and
         getmetatable(t) ~= json.ARRAY_MT
end


local function is_list(t)
  return type(t) == "table" and (next(t) == nil or is_array(t))
end


local function check_nonneg_int(v, at)
  if type(v) ~= "number" or v < 0 or v ~= floor(v) then
    schema_error(at, "expected a non-negative integer")
  end
  return v
end


local function check_number(v, at)
  if type(v) ~= "number" then
    schema_error(at, "expected a number")
  end
  return v
end


local function sorted_keys(t)
  local keys = {}
  for k in pairs(t) do
    keys[#keys + 1] = tostring(k)
  end
  sort(keys)
  return keys
end


-- Runs a list of checks on x: all of them when collecting, up to the first
-- failure otherwise.
local function all_of(checks)
  local n = #checks
  if n == 0 then
    return function() return true end
  elseif n == 1 then
    return checks[1]
  end
  return function(x)
    local ok = true
    for i = 1, n do
      if not checks[i](x) then
        if not errs then
          return false
        end
        ok = false
      end
    end
    return ok
  end
end


local Compiler = {}
Compiler.__index = Compiler


-- Resolves a local JSON pointer ("#", "#/a/b") against the root document.
function Compiler:resolve(ref)
  if ref == "#" then
    return self.root
  end
  if sub(ref, 1, 2) ~= "#/" then
    return nil
  end
  local cur = self.root
  for part in (sub(ref, 3) .. "/"):gmatch("([^/]*)/") do
    part = gsub(part, "%%(%x%x)", function(h)
      return string.char(tonumber(h, 16))
    end)
    part = gsub(gsub(part, "~1", "/"), "~0", "~")
    if type(cur) ~= "table" then
      return nil
    end
    local v = cur[part]
    if v == nil and is_array(cur) and find(part, "^%d+$") then
      v = cur[tonumber(part) + 1]
    end
    cur = v
  end
  return cur
end


-- A validator for `$ref`: compiled once per pointer; a reference met again
-- while its target compiles (recursion) gets a forwarding closure.
function Compiler:ref(ref, at)
  local fn = self.refs[ref]
  if fn then
    return fn
  end
  if type(ref) ~= "string" then
    schema_error(at, "$ref must be a string")
  end
  if sub(ref, 1, 1) ~= "#" then
    schema_error(at, "only references within the schema ('#...') are " ..
                     "supported, got '" .. ref .. "'")
  end
  -- a chain of references that only point at references never ends
  local seen, cur = {}, ref
  local target
  while true do
    if seen[cur] then
      schema_error(at, "circular $ref '" .. ref .. "'")
    end
    seen[cur] = true
    target = self:resolve(cur)
    if target == nil then
      schema_error(at, "cannot resolve $ref '" .. cur .. "'")
    end
    if type(target) == "table" and target["$ref"] ~= nil then
      cur = target["$ref"]
      if type(cur) ~= "string" then
        break
      end
    else
      break
    end
  end
  local compiled
  fn = function(x)
    return compiled(x)
  end
  self.refs[ref] = fn
  compiled = self:node(self:resolve(ref), ref)
  self.refs[ref] = compiled
  return compiled
end


function Compiler:type_check(types, at)
  local list
  if type(types) == "string" then
    list = { types }
  elseif is_list(types) and #types > 0 then
    list = types
  else
    schema_error(at, "expected a type name or an array of type names")
  end
  local set = {}
  for i, t in ipairs(list) do
    if type(t) ~= "string" or not TYPES[t] then
      schema_error(#list > 1 and (at .. "/" .. (i - 1)) or at,
                   "unknown type '" .. tostring(t) .. "'")
    end
    set[t] = true
  end
  if set.number then
    set.integer = true
  end
  local msg = #list == 1 and ("expected " .. list[1]) or
              ("expected one of " .. concat(list, ", "))
  return function(x)
    local t = json_type(x)
    if set[t] then
      return true
    end
    return fail(msg .. ", got " .. (t == "integer" and "number" or t))
  end
end


function Compiler:string_checks(s, at, checks)
  local min_len = s.minLength ~= nil and
                  check_nonneg_int(s.minLength, at .. "/minLength")
  local max_len = s.maxLength ~= nil and
                  check_nonneg_int(s.maxLength, at .. "/maxLength")
  if min_len or max_len then
    local min_msg = min_len and
      fmt("string must be at least %d characters long", min_len)
    local max_msg = max_len and
      fmt("string must be at most %d characters long", max_len)
    checks[#checks + 1] = function(x)
      if type(x) ~= "string" then
        return true
      end
      local n = #x -- bytes: an upper bound of the code points
      if min_len and (n < min_len or utf8_len(x) < min_len) then
        return fail(min_msg)
      end
      if max_len and n > max_len and utf8_len(x) > max_len then
        return fail(max_msg)
      end
      return true
    end
  end
  local pattern = s.pattern
  if pattern ~= nil then
    if type(pattern) ~= "string" then
      schema_error(at .. "/pattern", "expected a string")
    end
    local _, _, rerr = re_find("", pattern, RE_OPTS)
    if rerr then
      schema_error(at .. "/pattern", "invalid regex '" .. pattern .. "': " ..
                                     tostring(rerr))
    end
    local msg = "string does not match pattern '" .. pattern .. "'"
    checks[#checks + 1] = function(x)
      if type(x) ~= "string" or re_find(x, pattern, RE_OPTS) then
        return true
      end
      return fail(msg)
    end
  end
  local format = s.format
  if format ~= nil then
    if type(format) ~= "string" then
      schema_error(at .. "/format", "expected a string")
    end
    local f = FORMATS[format]
    if f then
      local msg = "string is not a valid " .. format
      checks[#checks + 1] = function(x)
        if type(x) ~= "string" or f(x) then
          return true
        end
        return fail(msg)
      end
    end
  end
end


function Compiler:number_checks(s, at, checks)
  local minimum = s.minimum ~= nil and check_number(s.minimum, at .. "/minimum")
  local maximum = s.maximum ~= nil and check_number(s.maximum, at .. "/maximum")
  local xmin, xmax = s.exclusiveMinimum, s.exclusiveMaximum
  local min_excl, max_excl = false, false
  -- draft 4: booleans modifying minimum / maximum
  if type(xmin) == "boolean" then
    min_excl = xmin and minimum ~= false
    xmin = nil
  elseif xmin ~= nil then
    check_number(xmin, at .. "/exclusiveMinimum")
  end
  if type(xmax) == "boolean" then
    max_excl = xmax and maximum ~= false
    xmax = nil
  elseif xmax ~= nil then
    check_number(xmax, at .. "/exclusiveMaximum")
  end
  local multiple = s.multipleOf
  if multiple ~= nil then
    if type(multiple) ~= "number" or multiple <= 0 then
      schema_error(at .. "/multipleOf", "expected a number greater than 0")
    end
  end
  if not (minimum or maximum or xmin or xmax or multiple) then
    return
  end
  local function num(v)
    if v == floor(v) and abs(v) < 1e15 then
      return fmt("%d", v)
    end
    return fmt("%.14g", v)
  end
  local min_msg = minimum and fmt("value must be %s %s",
                                  min_excl and ">" or ">=", num(minimum))
  local max_msg = maximum and fmt("value must be %s %s",
                                  max_excl and "<" or "<=", num(maximum))
  local xmin_msg = xmin and ("value must be > " .. num(xmin))
  local xmax_msg = xmax and ("value must be < " .. num(xmax))
  local mult_msg = multiple and
                   ("value must be a multiple of " .. num(multiple))
  local int_multiple = multiple and multiple == floor(multiple)
  checks[#checks + 1] = function(x)
    if type(x) ~= "number" then
      return true
    end
    local ok = true
    if minimum and (x < minimum or (min_excl and x == minimum)) then
      ok = fail(min_msg)
      if not errs then return false end
    end
    if maximum and (x > maximum or (max_excl and x == maximum)) then
      ok = fail(max_msg)
      if not errs then return false end
    end
    if xmin and x <= xmin then
      ok = fail(xmin_msg)
      if not errs then return false end
    end
    if xmax and x >= xmax then
      ok = fail(xmax_msg)
      if not errs then return false end
    end
    if multiple then
      local good
      if int_multiple and x == floor(x) then
        good = x % multiple == 0
      else
        local q = x / multiple
        good = abs(q - floor(q + 0.5)) <= 1e-9 * (abs(q) > 1 and abs(q) or 1)
      end
      if not good then
        ok = fail(mult_msg)
      end
    end
    return ok
  end
end


function Compiler:object_checks(s, at, checks)
  local props = s.properties
  local pattern_props = s.patternProperties
  local additional = s.additionalProperties
  local required = s.required
  local min_props = s.minProperties ~= nil and
                    check_nonneg_int(s.minProperties, at .. "/minProperties")
  local max_props = s.maxProperties ~= nil and
                    check_nonneg_int(s.maxProperties, at .. "/maxProperties")
  local names = s.propertyNames
  local deps = s.dependencies

  local pkeys, pfns, pset = {}, {}, {}
  if props ~= nil then
    if not is_object(props) then
      schema_error(at .. "/properties", "expected an object")
    end
    for i, k in ipairs(sorted_keys(props)) do
      local v = props[k]
      if v == nil then
        v = props[tonumber(k)]
      end
      pkeys[i] = k
      pfns[i] = self:node(v, at .. "/properties/" .. escape_ptr(k))
      pset[k] = true
    end
  end

  local pats, patfns = {}, {}
  if pattern_props ~= nil then
    if not is_object(pattern_props) then
      schema_error(at .. "/patternProperties", "expected an object")
    end
    for i, k in ipairs(sorted_keys(pattern_props)) do
      local sat = at .. "/patternProperties/" .. escape_ptr(k)
      local _, _, rerr = re_find("", k, RE_OPTS)
      if rerr then
        schema_error(sat, "invalid regex '" .. k .. "': " .. tostring(rerr))
      end
      pats[i] = k
      patfns[i] = self:node(pattern_props[k], sat)
    end
  end

  local add_fn, no_additional
  if additional ~= nil then
    if additional == false then
      no_additional = true
    elseif additional ~= true then
      add_fn = self:node(additional, at .. "/additionalProperties")
    end
  end

  local req = {}
  if required ~= nil then
    if not is_list(required) then
      schema_error(at .. "/required", "expected an array of strings")
    end
    for i, k in ipairs(required) do
      if type(k) ~= "string" then
        schema_error(at .. "/required/" .. (i - 1), "expected a string")
      end
      req[i] = k
    end
  end

  local names_fn = names ~= nil and self:node(names, at .. "/propertyNames")

  local dep_keys, dep_req, dep_fns = {}, {}, {}
  if deps ~= nil then
    if not is_object(deps) then
      schema_error(at .. "/dependencies", "expected an object")
    end
    for i, k in ipairs(sorted_keys(deps)) do
      local d = deps[k]
      local dat = at .. "/dependencies/" .. escape_ptr(k)
      dep_keys[i] = k
      if type(d) == "table" and (getmetatable(d) == json.ARRAY_MT or
                                 (next(d) ~= nil and is_array(d))) then
        for j, name in ipairs(d) do
          if type(name) ~= "string" then
            schema_error(dat .. "/" .. (j - 1), "expected a string")
          end
        end
        dep_req[i] = d
      else
        dep_fns[i] = self:node(d, dat)
      end
    end
  end

  local iterate = #pats > 0 or add_fn or no_additional or names_fn
  local npk, nreq, npat, ndep = #pkeys, #req, #pats, #dep_keys
  if npk == 0 and nreq == 0 and not iterate and not min_props and
     not max_props and ndep == 0 then
    return
  end

  checks[#checks + 1] = function(x)
    if type(x) ~= "table" or is_array(x) then
      return true
    end
    local ok = true
    for i = 1, nreq do
      if x[req[i]] == nil then
        ok = fail_at(req[i], "required property is missing")
        if not errs then return false end
      end
    end
    for i = 1, npk do
      local k = pkeys[i]
      local v = x[k]
      if v ~= nil then
        depth = depth + 1
        path[depth] = k
        local r = pfns[i](v)
        depth = depth - 1
        if not r then
          ok = false
          if not errs then return false end
        end
      end
    end
    if iterate then
      local keys
      if errs then -- stable error order
        keys = {}
        for k in pairs(x) do
          keys[#keys + 1] = k
        end
        sort(keys)
      end
      local idx = 0
      local k, v
      while true do
        if keys then
          idx = idx + 1
          k = keys[idx]
          if k ~= nil then
            v = x[k]
          end
        else
          k, v = next(x, k)
        end
        if k == nil then
          break
        end
        if names_fn then
          depth = depth + 1
          path[depth] = k
          local r = names_fn(k)
          depth = depth - 1
          if not r then
            ok = false
            if not errs then return false end
          end
        end
        local matched = pset[k] ~= nil
        for i = 1, npat do
          if re_find(k, pats[i], RE_OPTS) then
            matched = true
            depth = depth + 1
            path[depth] = k
            local r = patfns[i](v)
            depth = depth - 1
            if not r then
              ok = false
              if not errs then return false end
            end
          end
        end
        if not matched then
          if no_additional then
            ok = fail_at(k, "additional property is not allowed")
            if not errs then return false end
          elseif add_fn then
            depth = depth + 1
            path[depth] = k
            local r = add_fn(v)
            depth = depth - 1
            if not r then
              ok = false
              if not errs then return false end
            end
          end
        end
      end
    end
    if min_props or max_props then
      local n = 0
      for _ in pairs(x) do
        n = n + 1
      end
      if min_props and n < min_props then
        ok = fail(fmt("object must have at least %d properties", min_props))
        if not errs then return false end
      end
      if max_props and n > max_props then
        ok = fail(fmt("object must have at most %d properties", max_props))
        if not errs then return false end
      end
    end
    for i = 1, ndep do
      local k = dep_keys[i]
      if x[k] ~= nil then
        local list = dep_req[i]
        if list then
          for j = 1, #list do
            if x[list[j]] == nil then
              ok = fail_at(list[j], fmt("property is required when '%s' " ..
                                        "is present", k))
              if not errs then return false end
            end
          end
        elseif not dep_fns[i](x) then
          ok = false
          if not errs then return false end
        end
      end
    end
    return ok
  end
end


function Compiler:array_checks(s, at, checks)
  local items = s.items
  local additional = s.additionalItems
  local min_items = s.minItems ~= nil and
                    check_nonneg_int(s.minItems, at .. "/minItems")
  local max_items = s.maxItems ~= nil and
                    check_nonneg_int(s.maxItems, at .. "/maxItems")
  local unique = s.uniqueItems
  local contains = s.contains
  if unique ~= nil and type(unique) ~= "boolean" then
    schema_error(at .. "/uniqueItems", "expected a boolean")
  end

  local item_fn, tuple, add_fn, no_additional
  if items ~= nil then
    local list = type(items) == "table" and
                 (getmetatable(items) == json.ARRAY_MT or
                  (next(items) ~= nil and is_array(items)))
    if list then
      tuple = {}
      for i, sch in ipairs(items) do
        tuple[i] = self:node(sch, at .. "/items/" .. (i - 1))
      end
      if additional == false then
        no_additional = true
      elseif additional ~= nil and additional ~= true then
        add_fn = self:node(additional, at .. "/additionalItems")
      end
    else
      item_fn = self:node(items, at .. "/items")
    end
  end
  local contains_fn = contains ~= nil and self:node(contains, at .. "/contains")

  if not (item_fn or tuple or min_items or max_items or unique or
          contains_fn) then
    return
  end
  local ntuple = tuple and #tuple or 0

  checks[#checks + 1] = function(x)
    if type(x) ~= "table" or not is_array(x) then
      return true
    end
    local n = #x
    local ok = true
    if min_items and n < min_items then
      ok = fail(fmt("array must have at least %d items", min_items))
      if not errs then return false end
    end
    if max_items and n > max_items then
      ok = fail(fmt("array must have at most %d items", max_items))
      if not errs then return false end
    end
    if item_fn or tuple then
      for i = 1, n do
        local fn = item_fn
        if tuple then
          if i <= ntuple then
            fn = tuple[i]
          elseif no_additional then
            ok = fail(fmt("array must have at most %d items", ntuple))
            if not errs then return false end
            break
          else
            fn = add_fn
          end
        end
        if fn then
          depth = depth + 1
          path[depth] = i - 1
          local r = fn(x[i])
          depth = depth - 1
          if not r then
            ok = false
            if not errs then return false end
          end
        end
      end
    end
    if unique and n > 1 then
      local seen = {}
      for i = 1, n do
        local v = x[i]
        local key = type(v) == "table" and concat(canon(v, {})) or
                    (type(v) == "string" and ("s" .. v)) or
                    (is_null(v) and "null") or tostring(v)
        local first = seen[key]
        if first then
          ok = fail(fmt("array items must be unique (items %d and %d are " ..
                        "equal)", first - 1, i - 1))
          if not errs then return false end
          break
        end
        seen[key] = i
      end
    end
    if contains_fn then
      local found = false
      for i = 1, n do
        if quietly(contains_fn, x[i]) then
          found = true
          break
        end
      end
      if not found then
        ok = fail("array must contain at least one item matching 'contains'")
      end
    end
    return ok
  end
end


function Compiler:combinators(s, at, checks)
  local function list_of(key)
    local v = s[key]
    if v == nil then
      return nil
    end
    if not is_list(v) or #v == 0 then
      schema_error(at .. "/" .. key, "expected a non-empty array of schemas")
    end
    local fns = {}
    for i, sch in ipairs(v) do
      fns[i] = self:node(sch, at .. "/" .. key .. "/" .. (i - 1))
    end
    return fns
  end

  local all = list_of("allOf")
  if all then
    local n = #all
    checks[#checks + 1] = function(x)
      local ok = true
      for i = 1, n do
        if not all[i](x) then
          ok = false
          if not errs then return false end
        end
      end
      return ok
    end
  end

  local any = list_of("anyOf")
  if any then
    local n = #any
    checks[#checks + 1] = function(x)
      for i = 1, n do
        if quietly(any[i], x) then
          return true
        end
      end
      return fail("value must match at least one schema in anyOf")
    end
  end

  local one = list_of("oneOf")
  if one then
    local n = #one
    checks[#checks + 1] = function(x)
      local matched = 0
      for i = 1, n do
        if quietly(one[i], x) then
          matched = matched + 1
          if matched > 1 then
            return fail("value must match exactly one schema in oneOf " ..
                        "(matched several)")
          end
        end
      end
      if matched == 1 then
        return true
      end
      return fail("value must match exactly one schema in oneOf " ..
                  "(matched none)")
    end
  end

  if s["not"] ~= nil then
    local fn = self:node(s["not"], at .. "/not")
    checks[#checks + 1] = function(x)
      if quietly(fn, x) then
        return fail("value must not match the schema in 'not'")
      end
      return true
    end
  end

  if s["if"] ~= nil then
    local if_fn = self:node(s["if"], at .. "/if")
    local then_fn = s["then"] ~= nil and self:node(s["then"], at .. "/then")
    local else_fn = s["else"] ~= nil and self:node(s["else"], at .. "/else")
    if then_fn or else_fn then
      checks[#checks + 1] = function(x)
        if quietly(if_fn, x) then
          return not then_fn or then_fn(x)
        end
        return not else_fn or else_fn(x)
      end
    end
  end
end


-- Compiles one (sub)schema found at pointer `at`.
function Compiler:node(s, at)
  if s == true then
    return function() return true end
  elseif s == false then
    return function() return fail("no value is allowed here") end
  end
  if type(s) ~= "table" or (next(s) ~= nil and is_array(s)) or
     getmetatable(s) == json.ARRAY_MT then
    schema_error(at, "a schema must be an object or a boolean")
  end

  -- draft 7: $ref overrides its siblings
  if s["$ref"] ~= nil then
    return self:ref(s["$ref"], at .. "/$ref")
  end

  local checks = {}
  if s.type ~= nil then
    checks[#checks + 1] = self:type_check(s.type, at .. "/type")
  end

  if s.enum ~= nil then
    local enum = s.enum
    if not is_list(enum) then
      schema_error(at .. "/enum", "expected an array")
    end
    local n = #enum
    checks[#checks + 1] = function(x)
      for i = 1, n do
        if equal(x, enum[i]) then
          return true
        end
      end
      return fail("value must be one of the values of enum")
    end
  end

  local const = s.const
  if const ~= nil then
    checks[#checks + 1] = function(x)
      if equal(x, const) then
        return true
      end
      return fail("value must be equal to const")
    end
  end

  self:string_checks(s, at, checks)
  self:number_checks(s, at, checks)
  self:object_checks(s, at, checks)
  self:array_checks(s, at, checks)
  self:combinators(s, at, checks)

  -- definitions are compiled too, so that an error in one is reported even
  -- when nothing refers to it
  for _, key in ipairs({ "definitions", "$defs" }) do
    local defs = s[key]
    if defs ~= nil then
      if not is_object(defs) then
        schema_error(at .. "/" .. key, "expected an object")
      end
      if at == "#" then
        for _, k in ipairs(sorted_keys(defs)) do
          local ptr = "#/" .. key .. "/" .. escape_ptr(k)
          self:ref(ptr, ptr)
        end
      else
        for _, k in ipairs(sorted_keys(defs)) do
          self:node(defs[k], at .. "/" .. key .. "/" .. escape_ptr(k))
        end
      end
    end
  end

  return all_of(checks)
end


-- Compiles a schema (a table or boolean, or a JSON text). Returns the
-- validator function, or nil and the error (with the schema path).
function _M.compile(schema)
  if type(schema) == "string" then
    local decoded, err = json.slow_decode(schema)
    if decoded == nil then
      return nil, "invalid JSON Schema: not valid JSON: " .. tostring(err)
    end
    schema = decoded
  end
  local c = setmetatable({ root = schema, refs = {} }, Compiler)
  local ok, root = pcall(Compiler.node, c, schema, "#")
  if not ok then
    if type(root) == "table" and root.schema_error then
      return nil, root.schema_error
    end
    error(root, 0)
  end
  return function(x, collect)
    errs = collect and {} or nil
    depth = 0
    local valid = root(x)
    local list = errs
    errs = nil
    depth = 0
    return valid, list
  end
end


-- Validators compiled while the config was validated (the schema's
-- custom_validator), found again by the handler: keyed by the schema table
-- (or text) the config holds; weak, so a config generation's validators go
-- with it.
local cache = setmetatable({}, { __mode = "kv" })


-- compile(), remembering the result for the same schema value.
function _M.compile_cached(schema)
  local v = cache[schema]
  if v then
    return v
  end
  local err
  v, err = _M.compile(schema)
  if v then
    cache[schema] = v
  end
  return v, err
end


-- The top-level `type` of a schema (string, array of strings, or nil),
-- for coercing parameters; a JSON text is decoded.
function _M.schema_of(schema)
  if type(schema) == "string" then
    return (json.slow_decode(schema))
  end
  return schema
end


return _M
