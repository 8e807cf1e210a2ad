-- Media types (Content-Type values) for the request validator, as Kong
-- Enterprise compares them: type, subtype and parameter names are
-- case-insensitive, and so is the value of `charset`; only the first
-- parameter counts. An allowed type may use `*` for the type, the subtype
-- or part of the subtype (`application/*+json`).

local type = type
local lower = string.lower
local match = string.match
local find = string.find
local sub = string.sub
local gsub = string.gsub

local _M = {}

local TOKEN = "^[%w!#%$&%^_%.%+%-]+$"


-- Parses "type/subtype[; name=value...]". Returns
-- { type, subtype, param, value } (param and value nil without one), or
-- nil and a message.
function _M.parse(s)
  if type(s) ~= "string" then
    return nil, "expected a string"
  end
  local mt, rest = match(s, "^([^;]*)(.*)$")
  local t, st = match(mt, "^%s*([^/%s]+)/([^/%s]+)%s*$")
  if not t or not (t == "*" or find(t, TOKEN)) or
     not find(gsub(st, "%*", "x"), TOKEN) then
    return nil, "invalid content type '" .. s .. "'"
  end
  local out = { type = lower(t), subtype = lower(st) }
  if find(st, "*", 1, true) and st ~= "*" then
    -- a partial wildcard such as "*+json" or "vnd.*"
    local escaped = gsub(lower(st), "[%^%$%(%)%%%.%[%]%+%-%?]", "%%%0")
    out.subtype_pattern = "^" .. gsub(escaped, "%*", ".*") .. "$"
  end
  if rest ~= "" then
    local name, value = match(rest, "^;%s*([^=;%s]+)%s*=%s*([^;]-)%s*;?")
    if not name then
      return nil, "invalid content type parameter in '" .. s .. "'"
    end
    name = lower(name)
    if sub(value, 1, 1) == '"' and sub(value, -1) == '"' and #value > 1 then
      value = sub(value, 2, -2)
    end
    if name == "charset" then
      value = lower(value)
    end
    out.param, out.value = name, value
  end
  return out
end


-- True when the parsed request media type `m` is one of `allowed` (parsed
-- entries); with `check_params`, the parameters must match exactly (both
-- absent, or same name and value).
function _M.allowed(allowed, m, check_params)
  for i = 1, #allowed do
    local a = allowed[i]
    if (a.type == "*" or a.type == m.type) and
       (a.subtype == "*" or a.subtype == m.subtype or
        (a.subtype_pattern and find(m.subtype, a.subtype_pattern))) and
       (not check_params or (a.param == m.param and a.value == m.value)) then
      return true
    end
  end
  return false
end


-- application/json, or any +json subtype (application/merge-patch+json).
function _M.is_json(m)
  return (m.type == "application" and m.subtype == "json") or
         find(m.subtype, "+json", 1, true) ~= nil and
         sub(m.subtype, -5) == "+json"
end


return _M
