-- response-transformer: changes the response before it reaches the
-- client, as Kong's plugin does. Headers in header_filter: remove, rename,
-- replace (only present ones), add (only absent ones), append. The
-- top-level properties of an application/json body in body_filter, in the
-- same order, on the whole body (kong.response.get_raw_body holds the
-- chunks back until the last one); Content-Length is cleared in
-- header_filter when the body will be rewritten. The entries are parsed
-- once per config table.

local kong = kong
local json_object = require "kong.plugins.request-transformer.json_object"

local type = type
local ipairs = ipairs
local tonumber = tonumber
local setmetatable = setmetatable
local find = string.find
local match = string.match
local lower = string.lower

local OPS = { "remove", "rename", "replace", "add", "append" }

local ResponseTransformerHandler = {
  PRIORITY = 800,
  VERSION = "3.10.0",
}


-- plans -----------------------------------------------------------------------

local function split(entry)
  return match(entry, "^([^:]+):*(.-)$")
end


local function cast(value, json_type)
  if json_type == "number" then
    return tonumber(value)
  elseif json_type == "boolean" then
    return value == "true"
  end
  return value
end


-- { remove = { name... }, rename = { { old, new }... },
--   replace/add/append = { { name, value }... } } for headers or json;
-- entries without a value (or, for json, with a value json_types cannot
-- give) are left out, as Kong skips them.
local function build_ops(conf, target)
  local ops, n = {}, 0
  for _, op in ipairs(OPS) do
    local rec = conf[op] or {}
    local list = {}
    for i, entry in ipairs(rec[target] or {}) do
      local name, value = split(entry)
      if op == "remove" then
        list[#list + 1] = name or entry
      elseif name and value ~= "" then
        if target == "json" and op ~= "rename" then
          value = cast(value, rec.json_types and rec.json_types[i])
        end
        if value ~= nil then
          list[#list + 1] = { name, value }
        end
      end
    end
    ops[op] = list
    n = n + #list
  end
  return n > 0 and ops or nil
end


local plans = setmetatable({}, { __mode = "k" })

local function plan_of(conf)
  local p = plans[conf]
  if not p then
    p = {
      headers = build_ops(conf, "headers"),
      json = build_ops(conf, "json"),
    }
    plans[conf] = p
  end
  return p
end


function ResponseTransformerHandler:configure(configs)
  for _, conf in ipairs(configs or {}) do
    plan_of(conf)
  end
end


-- headers ---------------------------------------------------------------------

-- Header operations on the response as it is so far
-- (kong.response.get_header sees the changes), without a table of every
-- header.
local function transform_headers(ops)
  local resp = kong.response
  local get_header = resp.get_header

  for _, name in ipairs(ops.remove) do
    resp.clear_header(name)
  end

  for _, e in ipairs(ops.rename) do
    local old, new = e[1], e[2]
    if old ~= new and get_header(old) ~= nil then
      local v = resp.get_headers(1000)[lower(old)]
      resp.clear_header(old)
      if type(v) == "table" then
        resp.set_header(new, v[1])
        for i = 2, #v do
          resp.add_header(new, v[i])
        end
      else
        resp.set_header(new, v)
      end
    end
  end

  for _, e in ipairs(ops.replace) do
    if get_header(e[1]) ~= nil then
      resp.set_header(e[1], e[2])
    end
  end

  for _, e in ipairs(ops.add) do
    if get_header(e[1]) == nil then
      resp.set_header(e[1], e[2])
    end
  end

  for _, e in ipairs(ops.append) do
    resp.add_header(e[1], e[2])
  end
end


local function is_json(content_type)
  if type(content_type) ~= "string" then
    return false
  end
  return find(lower(content_type), "application/json", 1, true) ~= nil
end


function ResponseTransformerHandler:header_filter(conf)
  local plan = plan_of(conf)
  if plan.headers then
    transform_headers(plan.headers)
  end
  if plan.json and is_json(kong.response.get_header("Content-Type")) then
    -- the body is going to change
    kong.response.clear_header("Content-Length")
  end
end


-- the JSON body ---------------------------------------------------------------

-- The transformed body, or nil when it is not a JSON object or nothing
-- changed. Untouched properties keep their text (json_object.lua).
local function transform_json(ops, body)
  local obj = json_object.parse(body)
  if not obj then
    return nil
  end
  local changed = false
  for _, name in ipairs(ops.remove) do
    changed = obj:remove(name) or changed
  end
  for _, e in ipairs(ops.rename) do
    changed = obj:rename(e[1], e[2]) or changed
  end
  for _, e in ipairs(ops.replace) do
    if obj:has(e[1]) then
      obj:set(e[1], e[2])
      changed = true
    end
  end
  for _, e in ipairs(ops.add) do
    if not obj:has(e[1]) then
      obj:set(e[1], e[2])
      changed = true
    end
  end
  for _, e in ipairs(ops.append) do
    obj:append(e[1], e[2])
    changed = true
  end
  if not changed then
    return nil
  end
  return obj:tostring()
end


function ResponseTransformerHandler:body_filter(conf)
  local ops = plan_of(conf).json
  if not ops or not is_json(kong.response.get_header("Content-Type")) then
    return
  end
  local body = kong.response.get_raw_body()
  if not body then
    return -- held back until the last chunk
  end
  local new = transform_json(ops, body)
  if new then
    kong.response.set_raw_body(new)
  end
end


return ResponseTransformerHandler
