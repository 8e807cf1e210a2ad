-- The "name:value" entries of the transformer plugins' configs (Kong's
-- request-transformer and response-transformer): splitting them as Kong
-- does, and the schema checks both plugins share.

local typedefs = require "kong.db.schema.typedefs"

local find = string.find
local match = string.match
local fmt = string.format

local validate_header_name = typedefs.validate_header_name

local _M = {}


-- Kong's split of an entry: the name up to the first ':', then the value
-- after the run of ':' that follows it.
function _M.split(entry)
  return match(entry, "^([^:]+):*(.-)$")
end
local split = _M.split


function _M.valid_header(name)
  if validate_header_name(name) then
    return true
  end
  return nil, fmt("'%s' is not a valid header", name)
end
local valid_header = _M.valid_header


-- rename.headers entries: "old:new", both header names
function _M.check_rename_header(entry)
  local name, value = split(entry)
  local ok, err = valid_header(name)
  if not ok then
    return nil, err
  end
  return valid_header(value)
end


-- replace/add/append.headers entries: "name:value" whose value has no
-- control characters; then check_value(value) when given (templates)
function _M.check_header_value(entry, check_value)
  local name, value = split(entry)
  local ok, err = valid_header(name)
  if not ok then
    return nil, err
  end
  if find(value, "[%z\1-\8\10-\31\127]") then
    return nil, fmt("'%s' is not a valid header", value)
  end
  if check_value then
    return check_value(value)
  end
  return true
end


-- an array of entries, each checked by validator; colon: entries must have
-- a ':' (a value)
function _M.strings(description, validator, colon)
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


return _M
