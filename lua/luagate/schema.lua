-- The schema engine: one validator for declarative entities and plugin
-- configs, speaking Kong's schema vocabulary (types, field attributes,
-- validators, entity_checks, shorthand_fields).
--
-- local Schema = require "luagate.schema"
-- local s = Schema.new({ name = "x",
--                       fields = { { a = { type = "string" } } } })
-- local out, errs = s:validate(input)
--
-- `out` is a validated deep copy of `input` with defaults filled in; `errs`
-- is nil or an error tree keyed like the input: field name -> message
-- (string) or sub-tree, array index (1-based) -> message or sub-tree, and
-- "@entity" -> array of messages for entity checks. Nulls (cjson.null,
-- lyaml.null, ngx.null) are treated as absent.

local type = type
local pairs = pairs
local ipairs = ipairs
local next = next
local tostring = tostring
local tonumber = tonumber
local setmetatable = setmetatable
local pcall = pcall
local error = error
local fmt = string.format
local find = string.find
local sub = string.sub
local concat = table.concat
local sort = table.sort
local floor = math.floor
local huge = math.huge

local ffi = require "ffi"

local cjson_null
do
  local ok, cjson = pcall(require, "cjson")
  if ok then
    cjson_null = cjson.null
  end
end

local lyaml_null
do
  local ok, functional = pcall(require, "lyaml.functional")
  if ok then
    lyaml_null = functional.NULL
  end
end


local _M = {}

-- the value our own code uses for "null" (e.g. `eq = null` in typedefs)
_M.NULL = cjson_null or setmetatable({}, { __tostring = function()
  return "null"
end })

local ENTITY = "@entity"
_M.ENTITY = ENTITY


local MSG = {
  REQUIRED = "required field missing",
  UNKNOWN = "unknown field",
  TYPE = "expected %s",
  BETWEEN = "value should be between %s and %s",
  EQ = "value must be %s",
  EQ_NULL = "value must be null",
  NE = "value must not be %s",
  GT = "value must be greater than %s",
  LEN_EQ = "length must be %d",
  LEN_MIN = "length must be at least %d",
  LEN_MAX = "length must not exceed %d",
  MATCH = "invalid value: %s",
  STARTS_WITH = "should start with: %s",
  CONTAINS = "expected to contain: %s",
  ONE_OF = "expected one of: %s",
  NOT_ONE_OF = "must not be one of: %s",
  IS_REGEX = "not a valid regex: %s",
  TIMESTAMP = "expected a valid timestamp",
  UUID = "expected a valid UUID",
  VALIDATION = "failed validating",
  AT_LEAST_ONE_OF = "at least one of these fields must be non-empty: %s",
  ONLY_ONE_OF = "only one of these fields must be non-empty: %s",
  DISTINCT = "values of these fields must be distinct: %s",
  MUTUALLY_REQUIRED = "all or none of these fields must be set: %s",
  MUTUALLY_EXCLUSIVE = "only one or none of these fields must be set: %s",
  MUTUALLY_EXCLUSIVE_SUBSETS = "these sets are mutually exclusive: %s",
  DUPLICATE = "duplicate value: %s",
}
_M.MSG = MSG


local TYPE_NAMES = {
  string = "a string",
  number = "a number",
  integer = "an integer",
  boolean = "a boolean",
  array = "an array",
  set = "a set",
  map = "a map",
  record = "a record",
  ["function"] = "a function",
  foreign = "a foreign key",
}


local function is_null(v)
  if v == nil then
    return true
  end
  local t = type(v)
  if t == "string" or t == "number" or t == "boolean" then
    return false
  end
  if v == cjson_null or v == lyaml_null or v == _M.NULL then
    return true
  end
  local ngx = _G.ngx
  if ngx ~= nil and type(ngx) == "table" and ngx.null ~= nil
     and v == ngx.null then
    return true
  end
  return false
end
_M.is_null = is_null


local function deep_copy(v)
  if type(v) ~= "table" then
    return v
  end
  local c = {}
  for k, x in pairs(v) do
    c[k] = deep_copy(x)
  end
  return c
end
_M.deep_copy = deep_copy


local function is_array(t)
  if type(t) ~= "table" then
    return false
  end
  local n = #t
  local count = 0
  for k in pairs(t) do
    if type(k) ~= "number" or k < 1 or k > n or floor(k) ~= k then
      return false
    end
    count = count + 1
  end
  return count == n
end
_M.is_array = is_array


local function quote_list(list)
  local out = {}
  for i, v in ipairs(list) do
    out[i] = "'" .. tostring(v) .. "'"
  end
  return concat(out, ", ")
end
_M.quote_list = quote_list


local function plain_list(list)
  local out = {}
  for i, v in ipairs(list) do
    out[i] = tostring(v)
  end
  return concat(out, ", ")
end


local function tostr(v)
  if type(v) == "string" then
    return v
  end
  if is_null(v) then
    return "null"
  end
  return tostring(v)
end


-- PCRE2 through the FFI, used by `is_regex` and route path validation.
local pcre2
do
  local ok = pcall(ffi.cdef, [[
    typedef struct pcre2_real_code_8 pcre2_code_8;
    pcre2_code_8 *pcre2_compile_8(const unsigned char *pattern, size_t length,
                                  uint32_t options, int *errorcode,
                                  size_t *erroroffset, void *ccontext);
    void pcre2_code_free_8(pcre2_code_8 *code);
    int pcre2_get_error_message_8(int errorcode, unsigned char *buffer,
                                  size_t bufflen);
  ]])
  if ok then
    local lib_ok, lib = pcall(ffi.load, "pcre2-8")
    if not lib_ok then
      lib_ok, lib = pcall(ffi.load, "libpcre2-8.so.0")
    end
    if lib_ok then
      pcre2 = lib
    end
  end
end

local PCRE2_ANCHORED = 0x80000000
local PCRE2_UTF = 0x00080000


-- Compiles `re` with PCRE2 (anchored when `anchored`); returns true, or nil
-- and the PCRE2 message ("... at offset N").
function _M.check_regex(re, anchored)
  if not pcre2 then
    return true -- no PCRE2: accept (validation only)
  end
  local errcode = ffi.new("int[1]")
  local erroff = ffi.new("size_t[1]")
  local opts = PCRE2_UTF
  if anchored then
    opts = opts + PCRE2_ANCHORED
  end
  local code = pcre2.pcre2_compile_8(re, #re, opts, errcode, erroff, nil)
  if code == nil then
    local buf = ffi.new("unsigned char[256]")
    local n = pcre2.pcre2_get_error_message_8(errcode[0], buf, 256)
    local msg = n > 0 and ffi.string(buf, n) or "unknown error"
    return nil, msg .. " at offset " .. tonumber(erroff[0])
  end
  pcre2.pcre2_code_free_8(code)
  return true
end


local UUID_PATTERN = "^%x%x%x%x%x%x%x%x%-%x%x%x%x%-%x%x%x%x%-%x%x%x%x%-"
                     .. "%x%x%x%x%x%x%x%x%x%x%x%x$"

function _M.is_uuid(s)
  return type(s) == "string" and find(s, UUID_PATTERN) ~= nil
end


local function is_vault_ref(v)
  return type(v) == "string" and sub(v, 1, 8) == "{vault:/" and
         sub(v, -1) == "}"
end


local function length_of(v)
  if type(v) == "string" then
    return #v
  end
  if type(v) == "table" then
    local n = 0
    for _ in pairs(v) do
      n = n + 1
    end
    return n
  end
  return nil
end


local validate_field -- forward
local validate_record -- forward


-- Runs the value validators (not the type check) of `field` on `v`.
-- Returns true or nil, message.
local function run_validators(field, v)
  local t = type(v)

  if field.eq ~= nil then
    if is_null(field.eq) then
      if not is_null(v) then
        return nil, MSG.EQ_NULL
      end
    elseif v ~= field.eq then
      return nil, fmt(MSG.EQ, tostr(field.eq))
    end
  end

  if field.ne ~= nil and v == field.ne then
    return nil, fmt(MSG.NE, tostr(field.ne))
  end

  if field.between and t == "number" then
    local lo, hi = field.between[1], field.between[2]
    if v < lo or v > hi then
      return nil, fmt(MSG.BETWEEN, tostr(lo), tostr(hi))
    end
  end

  if field.gt ~= nil and t == "number" and v <= field.gt then
    return nil, fmt(MSG.GT, tostr(field.gt))
  end

  local len = length_of(v)
  if len then
    if field.len_eq and len ~= field.len_eq then
      return nil, fmt(MSG.LEN_EQ, field.len_eq)
    end
    local len_min = field.len_min
    if len_min == nil and t == "string" then
      len_min = 1 -- Kong's strings are non-empty unless told otherwise
    end
    if len_min and len < len_min then
      return nil, fmt(MSG.LEN_MIN, len_min)
    end
    if field.len_max and len > field.len_max then
      return nil, fmt(MSG.LEN_MAX, field.len_max)
    end
  end

  if t == "string" then
    if field.match and not find(v, field.match) then
      return nil, fmt(MSG.MATCH, v)
    end
    if field.not_match and find(v, field.not_match) then
      return nil, fmt(MSG.MATCH, v)
    end
    if field.match_all then
      for _, m in ipairs(field.match_all) do
        if not find(v, m.pattern) then
          return nil, m.err or fmt(MSG.MATCH, v)
        end
      end
    end
    if field.match_none then
      for _, m in ipairs(field.match_none) do
        if find(v, m.pattern) then
          return nil, m.err or fmt(MSG.MATCH, v)
        end
      end
    end
    if field.match_any then
      local ok = false
      for _, p in ipairs(field.match_any.patterns or {}) do
        if find(v, p) then
          ok = true
          break
        end
      end
      if not ok then
        return nil, field.match_any.err or fmt(MSG.MATCH, v)
      end
    end
    if field.starts_with and sub(v, 1, #field.starts_with) ~=
       field.starts_with then
      return nil, fmt(MSG.STARTS_WITH, field.starts_with)
    end
    if field.is_regex then
      local ok, err = _M.check_regex(v)
      if not ok then
        return nil, fmt(MSG.IS_REGEX, v .. " (" .. err .. ")")
      end
    end
    if field.uuid and not _M.is_uuid(v) then
      return nil, MSG.UUID
    end
  end

  if field.one_of then
    local ok = false
    for _, x in ipairs(field.one_of) do
      if x == v then
        ok = true
        break
      end
    end
    if not ok then
      return nil, fmt(MSG.ONE_OF, plain_list(field.one_of))
    end
  end

  if field.not_one_of then
    for _, x in ipairs(field.not_one_of) do
      if x == v then
        return nil, fmt(MSG.NOT_ONE_OF, plain_list(field.not_one_of))
      end
    end
  end

  if field.contains ~= nil and t == "table" then
    local ok = false
    for _, x in ipairs(v) do
      if x == field.contains then
        ok = true
        break
      end
    end
    if not ok then
      return nil, fmt(MSG.CONTAINS, tostr(field.contains))
    end
  end

  if field.timestamp and (t ~= "number" or v < 0) then
    return nil, MSG.TIMESTAMP
  end

  if field.mutually_exclusive_subsets and t == "table" then
    local seen = {}
    for _, x in ipairs(v) do
      seen[x] = true
    end
    local hits = {}
    for _, set in ipairs(field.mutually_exclusive_subsets) do
      for _, x in ipairs(set) do
        if seen[x] then
          hits[#hits + 1] = set
          break
        end
      end
    end
    if #hits > 1 then
      local parts = {}
      for i, set in ipairs(hits) do
        parts[i] = "{" .. plain_list(set) .. "}"
      end
      return nil, fmt(MSG.MUTUALLY_EXCLUSIVE_SUBSETS, concat(parts, ", "))
    end
  end

  if field.custom_validator then
    local ok, res, err = pcall(field.custom_validator, v)
    if not ok then
      return nil, MSG.VALIDATION .. ": " .. tostring(res)
    end
    if not res then
      return nil, err or MSG.VALIDATION
    end
  end

  return true
end


local function type_error(ftype)
  return fmt(MSG.TYPE, TYPE_NAMES[ftype] or ftype)
end


-- Validates a collection of `elements` (array or set). Returns the copy
-- and nil, or nil and an error (string or tree).
local function validate_elements(field, v)
  if not is_array(v) then
    return nil, type_error(field.type)
  end
  local out = {}
  local errs
  local seen = field.type == "set" and {} or nil
  local elements = field.elements or { type = "json" }
  for i = 1, #v do
    local x = v[i]
    if is_null(x) then
      errs = errs or {}
      errs[i] = MSG.REQUIRED
    else
      local c, err = validate_field(elements, x)
      if err ~= nil then
        errs = errs or {}
        errs[i] = err
      elseif seen then
        local key = type(c) == "table" and c or c
        if not seen[key] then
          seen[key] = true
          out[#out + 1] = c
        end
      else
        out[#out + 1] = c
      end
    end
  end
  if errs then
    return nil, errs
  end
  return out
end


local function validate_map(field, v)
  if type(v) ~= "table" then
    return nil, type_error("map")
  end
  local keys = field.keys or { type = "string" }
  local values = field.values or { type = "json" }
  local out, errs = {}, nil
  for k, x in pairs(v) do
    local ck, kerr = validate_field(keys, k)
    if kerr ~= nil then
      if type(k) ~= keys.type and keys.type == "string" then
        return nil, type_error("map")
      end
      errs = errs or {}
      errs[tostring(k)] = type(kerr) == "string" and kerr or "invalid key"
    elseif not is_null(x) then
      local cv, verr = validate_field(values, x)
      if verr ~= nil then
        errs = errs or {}
        errs[tostring(k)] = verr
      else
        out[ck] = cv
      end
    end
  end
  if errs then
    return nil, errs
  end
  return out
end


-- Validates one value against one field definition. `v` is not null.
-- Returns the validated copy and nil, or nil and an error (string or tree).
validate_field = function(field, v)
  local ftype = field.type

  if field.referenceable and is_vault_ref(v) then
    return v
  end

  local out, err
  if ftype == "string" then
    if type(v) ~= "string" then
      return nil, type_error(ftype)
    end
    out = v
  elseif ftype == "number" then
    if type(v) ~= "number" or v ~= v then
      return nil, type_error(ftype)
    end
    out = v
  elseif ftype == "integer" then
    if type(v) ~= "number" or v ~= v or v == huge or v == -huge or
       floor(v) ~= v then
      return nil, type_error(ftype)
    end
    out = v
  elseif ftype == "boolean" then
    if type(v) ~= "boolean" then
      return nil, type_error(ftype)
    end
    out = v
  elseif ftype == "array" or ftype == "set" then
    out, err = validate_elements(field, v)
    if err ~= nil then
      return nil, err
    end
  elseif ftype == "map" then
    out, err = validate_map(field, v)
    if err ~= nil then
      return nil, err
    end
  elseif ftype == "record" then
    if type(v) ~= "table" or (next(v) ~= nil and is_array(v)) then
      return nil, type_error("record")
    end
    out, err = validate_record(field, v)
    if err ~= nil then
      return nil, err
    end
  elseif ftype == "foreign" then
    if type(v) ~= "table" and type(v) ~= "string" then
      return nil, type_error("foreign")
    end
    out = deep_copy(v)
  elseif ftype == "function" then
    if type(v) ~= "function" then
      return nil, type_error(ftype)
    end
    out = v
  elseif ftype == "json" or ftype == nil or ftype == "any" then
    out = deep_copy(v)
  else
    return nil, "unknown type: " .. tostring(ftype)
  end

  local ok, verr = run_validators(field, out)
  if not ok then
    return nil, verr
  end
  return out
end


-- Reads a dotted path ("config.redis.host") in a record.
local function get_path(t, path)
  if not find(path, ".", 1, true) then
    return t[path]
  end
  local cur = t
  for part in path:gmatch("[^%.]+") do
    if type(cur) ~= "table" then
      return nil
    end
    cur = cur[part]
  end
  return cur
end


-- Sets an error at a dotted path of the error tree (creating sub-trees).
local function set_error(errs, path, msg)
  local parts = {}
  for part in path:gmatch("[^%.]+") do
    parts[#parts + 1] = part
  end
  local cur = errs
  for i = 1, #parts - 1 do
    local p = parts[i]
    if type(cur[p]) ~= "table" then
      if cur[p] ~= nil then
        return -- a message is already there
      end
      cur[p] = {}
    end
    cur = cur[p]
  end
  if cur[parts[#parts]] == nil then
    cur[parts[#parts]] = msg
  end
end


local function has_error(errs, path)
  if not errs then
    return false
  end
  if not find(path, ".", 1, true) then
    return errs[path] ~= nil
  end
  local cur = errs
  for part in path:gmatch("[^%.]+") do
    if type(cur) ~= "table" then
      return true
    end
    cur = cur[part]
    if cur == nil then
      return false
    end
  end
  return true
end


local function add_entity_error(errs, msg)
  local list = errs[ENTITY]
  if not list then
    list = {}
    errs[ENTITY] = list
  end
  list[#list + 1] = msg
end


local function is_set(v)
  if is_null(v) then
    return false
  end
  if type(v) == "table" then
    return next(v) ~= nil
  end
  if v == "" then
    return false
  end
  return true
end


-- Checks `v` against a `*_match` table (if_match, then_match): validators
-- plus `required`. Returns true or nil, message.
local function check_match(m, v)
  if is_null(v) then
    if m.required then
      return nil, MSG.REQUIRED
    end
    if m.eq ~= nil and not is_null(m.eq) then
      return nil, fmt(MSG.EQ, tostr(m.eq))
    end
    return true
  end
  if m.type then
    local _, err = validate_field(m, v)
    if err ~= nil then
      return nil, type(err) == "string" and err or MSG.VALIDATION
    end
    return true
  end
  return run_validators(m, v)
end


local function fields_have_errors(errs, list)
  if next(errs) == nil then
    return false
  end
  for _, f in ipairs(list) do
    if has_error(errs, f) then
      return true
    end
  end
  return false
end


local CHECKS = {}

-- how many of the fields (dotted paths) are set in e
local function count_set(fields, e)
  local n = 0
  for _, f in ipairs(fields) do
    if is_set(get_path(e, f)) then
      n = n + 1
    end
  end
  return n
end

-- a check that counts the set fields of its list: ok(n, #list)
local function counting_check(ok, msg)
  return function(arg, e)
    if ok(count_set(arg, e), #arg) then
      return true
    end
    return nil, fmt(msg, quote_list(arg))
  end
end

CHECKS.at_least_one_of = counting_check(function(n) return n > 0 end,
                                        MSG.AT_LEAST_ONE_OF)
CHECKS.only_one_of = counting_check(function(n) return n == 1 end,
                                    MSG.ONLY_ONE_OF)
CHECKS.mutually_required = counting_check(
  function(n, total) return n == 0 or n == total end, MSG.MUTUALLY_REQUIRED)
CHECKS.mutually_exclusive = counting_check(function(n) return n <= 1 end,
                                           MSG.MUTUALLY_EXCLUSIVE)

CHECKS.distinct = function(arg, e)
  local seen = {}
  for _, f in ipairs(arg) do
    local v = get_path(e, f)
    if not is_null(v) then
      if seen[v] then
        return nil, fmt(MSG.DISTINCT, quote_list(arg))
      end
      seen[v] = true
    end
  end
  return true
end

CHECKS.conditional_at_least_one_of = function(arg, e)
  local v = get_path(e, arg.if_field)
  local list, err_fmt
  if check_match(arg.if_match or {}, v) then
    list, err_fmt = arg.then_at_least_one_of, arg.then_err
  elseif arg.else_then_at_least_one_of then
    if arg.else_match and not check_match(arg.else_match, v) then
      return true
    end
    list, err_fmt = arg.else_then_at_least_one_of, arg.else_then_err
  else
    return true
  end
  if count_set(list, e) > 0 then
    return true
  end
  return nil, fmt(err_fmt or MSG.AT_LEAST_ONE_OF, quote_list(list))
end

CHECKS.custom_entity_check = function(arg, e)
  local ok, res, err = pcall(arg.fn, e)
  if not ok then
    return nil, MSG.VALIDATION .. ": " .. tostring(res)
  end
  if not res then
    return nil, err or MSG.VALIDATION
  end
  return true
end


local function check_fields_of(name, arg)
  if name == "conditional_at_least_one_of" then
    local list = { arg.if_field }
    for _, f in ipairs(arg.then_at_least_one_of or {}) do
      list[#list + 1] = f
    end
    return list
  elseif name == "custom_entity_check" then
    return arg.field_sources or {}
  elseif name == "conditional" then
    return { arg.if_field, arg.then_field }
  end
  return arg
end


local function run_entity_checks(checks, e, errs)
  for _, check in ipairs(checks) do
    local name, arg = next(check)
    if not fields_have_errors(errs, check_fields_of(name, arg)) then
      if name == "conditional" then
        local ok = check_match(arg.if_match or {}, get_path(e, arg.if_field))
        if ok then
          local tv = get_path(e, arg.then_field)
          local tok, terr = check_match(arg.then_match or {}, tv)
          if not tok then
            set_error(errs, arg.then_field, arg.then_err or terr)
          end
        end
      else
        local fn = CHECKS[name]
        if not fn then
          add_entity_error(errs, "unknown entity check: " .. tostring(name))
        else
          local ok, err = fn(arg, e)
          if not ok then
            add_entity_error(errs, err)
          end
        end
      end
    end
  end
end


-- Deep-merges `src` into `dst` without overwriting values already set.
local function merge_missing(dst, src)
  for k, v in pairs(src) do
    if dst[k] == nil or is_null(dst[k]) then
      dst[k] = v
    elseif type(dst[k]) == "table" and type(v) == "table" and
           not is_array(v) then
      merge_missing(dst[k], v)
    end
  end
end


local function field_list(def)
  local cached = def.__field_list
  if cached then
    return cached
  end
  local list, map = {}, {}
  for _, item in ipairs(def.fields or {}) do
    local name, f = next(item)
    list[#list + 1] = { name = name, field = f }
    map[name] = f
  end
  -- def tables are ours or plugins' (loaded once): caching is safe
  cached = { list = list, map = map }
  def.__field_list = cached
  return cached
end


-- Builds the default value of an absent record from its fields' defaults.
local function default_record(def)
  local out = {}
  for _, item in ipairs(field_list(def).list) do
    local f = item.field
    if f.default ~= nil and not is_null(f.default) then
      out[item.name] = deep_copy(f.default)
    elseif f.type == "record" and f.required ~= false then
      out[item.name] = default_record(f)
    end
  end
  return out
end


-- Validates a record (a table with `fields`, optional `entity_checks`,
-- `shorthand_fields`, `check`). Returns the copy and nil, or nil and the
-- error tree.
validate_record = function(def, input, opts)
  local fl = field_list(def)
  local errs = {}
  local src = {}
  for k, v in pairs(input) do
    src[k] = v
  end

  -- shorthands: accepted on input, turned into canonical fields
  local shorthands = def.shorthand_fields
  local derived
  if shorthands then
    for _, item in ipairs(shorthands) do
      local name, sf = next(item)
      local v = src[name]
      src[name] = nil
      if not is_null(v) then
        local c, err = validate_field(sf, v)
        if err ~= nil then
          errs[name] = err
        elseif sf.func then
          local ok, res = pcall(sf.func, c)
          if not ok then
            errs[name] = MSG.VALIDATION .. ": " .. tostring(res)
          elseif type(res) == "table" then
            derived = derived or {}
            merge_missing(derived, res)
          end
        end
      end
    end
  end
  if derived then
    -- explicit fields win over shorthand-derived ones
    for k, v in pairs(derived) do
      local cur = src[k]
      if is_null(cur) then
        src[k] = v
      elseif type(cur) == "table" and type(v) == "table" then
        local merged = deep_copy(cur)
        merge_missing(merged, v)
        src[k] = merged
      end
    end
  end

  for k in pairs(src) do
    if fl.map[k] == nil and errs[k] == nil then
      errs[tostring(k)] = MSG.UNKNOWN
    end
  end

  local out = {}
  for _, item in ipairs(fl.list) do
    local name, f = item.name, item.field
    local v = src[name]
    if is_null(v) then
      v = nil
      if f.default ~= nil and not is_null(f.default) then
        v = deep_copy(f.default)
      elseif f.type == "record" and f.required ~= false and
             not (opts and opts.partial) then
        local d = default_record(f)
        local _, derr = validate_record(f, d)
        if derr == nil then
          out[name] = d
        else
          -- an absent record whose own fields are required: their errors,
          -- as Kong reports them (`config.path: required field missing`)
          errs[name] = derr
        end
      end
      if v == nil then
        if f.required and out[name] == nil and errs[name] == nil then
          errs[name] = MSG.REQUIRED
        end
      end
    end
    if v ~= nil and errs[name] == nil then
      local c, err = validate_field(f, v)
      if err ~= nil then
        errs[name] = err
      else
        out[name] = c
      end
    end
  end

  if def.entity_checks then
    run_entity_checks(def.entity_checks, out, errs)
  end

  if def.check and next(errs) == nil then
    local ok, res, err = pcall(def.check, out)
    if not ok or not res then
      add_entity_error(errs, (not ok) and tostring(res) or
                             (err or MSG.VALIDATION))
    end
  end

  if next(errs) ~= nil then
    return nil, errs
  end
  return out
end


local Schema = {}
Schema.__index = Schema


-- Creates a schema from a Kong-format definition (`name`, `fields`,
-- `entity_checks`, `shorthand_fields`, `check`). Raises on misuse.
function _M.new(def)
  if type(def) ~= "table" then
    error("schema definition must be a table", 2)
  end
  if type(def.fields) ~= "table" then
    error("schema definition must have 'fields'", 2)
  end
  local ok, err = _M.check_definition(def)
  if not ok then
    error("invalid schema '" .. tostring(def.name) .. "': " .. err, 2)
  end
  return setmetatable({ name = def.name, def = def }, Schema)
end


-- Validates `input` (a table). Returns the validated copy (or nil) and the
-- error tree (or nil).
function Schema:validate(input, opts)
  if type(input) ~= "table" then
    return nil, { [ENTITY] = { type_error("record") } }
  end
  return validate_record(self.def, input, opts)
end


-- Validates a single value against a field definition (exposed for the
-- loader's special cases). `v` nil/null only checks `required`.
function _M.validate_value(field, v)
  if is_null(v) then
    if field.required then
      return nil, MSG.REQUIRED
    end
    return nil
  end
  return validate_field(field, v)
end


local KNOWN_TYPES = {
  string = true, number = true, integer = true, boolean = true, array = true,
  set = true, map = true, record = true, foreign = true, ["function"] = true,
  json = true, any = true,
}


-- A light metaschema: checks field definitions have a known type and
-- that collections/records carry their sub-definitions. Returns true or
-- nil, message.
local function check_field_def(name, f, path)
  path = path and (path .. "." .. name) or name
  if type(f) ~= "table" then
    return nil, path .. ": field definition must be a table"
  end
  if f.type == nil and f.fields == nil then
    return nil, path .. ": missing type"
  end
  local ft = f.type or "record"
  if not KNOWN_TYPES[ft] then
    return nil, path .. ": unknown type '" .. tostring(ft) .. "'"
  end
  if ft == "record" then
    return _M.check_definition(f, path)
  end
  if (ft == "array" or ft == "set") and f.elements then
    return check_field_def("elements", f.elements, path)
  end
  if ft == "map" then
    if f.keys then
      local ok, err = check_field_def("keys", f.keys, path)
      if not ok then
        return nil, err
      end
    end
    if f.values then
      return check_field_def("values", f.values, path)
    end
  end
  return true
end


function _M.check_definition(def, path)
  if def.fields ~= nil and type(def.fields) ~= "table" then
    return nil, (path or "fields") .. ": 'fields' must be an array"
  end
  for i, item in ipairs(def.fields or {}) do
    if type(item) ~= "table" then
      return nil, (path or "fields") .. ": entry " .. i ..
                  " must be a one-key table"
    end
    local name, f = next(item)
    if type(name) ~= "string" then
      return nil, (path or "fields") .. ": entry " .. i ..
                  " must be a one-key table"
    end
    if f and f.type == nil and f.fields then
      f.type = "record"
    end
    local ok, err = check_field_def(name, f, path)
    if not ok then
      return nil, err
    end
  end
  return true
end


-- Flattens an error tree into { {path=, msg=}, ... }, with array indexes
-- 0-based (`paths[0]`), map/record keys dotted, entity errors on the
-- containing path. Sorted by path for stable output.
function _M.flatten_errors(tree, prefix, out)
  out = out or {}
  prefix = prefix or ""
  if type(tree) == "string" then
    out[#out + 1] = { path = prefix, msg = tree }
    return out
  end
  local keys = {}
  for k in pairs(tree) do
    keys[#keys + 1] = k
  end
  sort(keys, function(a, b)
    local ta, tb = type(a), type(b)
    if ta ~= tb then
      return ta == "number"
    end
    return a < b
  end)
  for _, k in ipairs(keys) do
    local v = tree[k]
    if k == ENTITY then
      for _, msg in ipairs(v) do
        out[#out + 1] = { path = prefix, msg = msg }
      end
    else
      local p
      if type(k) == "number" then
        p = prefix .. "[" .. (k - 1) .. "]"
      elseif prefix == "" then
        p = k
      else
        p = prefix .. "." .. k
      end
      _M.flatten_errors(v, p, out)
    end
  end
  return out
end


return _M
