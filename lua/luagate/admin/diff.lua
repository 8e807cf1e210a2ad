-- `luagate config diff`: compares a config file with what a running node
-- serves (its GET /config), entity by entity.
--
--   local diff = require "luagate.admin.diff"
--   local text, code = diff.run(conf, remote_json)
--
-- conf is the file loaded by luagate.runtime; both sides go through
-- luagate.admin.export (so the same secrets are redacted on both) and are
-- compared by entity id (ids are derived from names when a file gives
-- none, so a renamed entity shows as removed + added). Entities are
-- labelled by name. code: 0 equal, 1 different, 2 error.

local type = type
local pairs = pairs
local ipairs = ipairs
local tostring = tostring
local concat = table.concat
local sort = table.sort
local fmt = string.format

local cjson = require "cjson.safe"
local export = require "luagate.admin.export"

local _M = {}

local KINDS = {
  "certificates", "snis", "ca_certificates", "services", "routes",
  "consumer_groups", "consumers", "upstreams", "plugins",
}

local function singular(kind)
  if kind == "consumer_groups" then
    return "consumer_group"
  end
  return (kind:gsub("s$", ""))
end

local function label(e)
  if type(e) ~= "table" then
    return "?"
  end
  local name = e.name or e.username or e.custom_id or e.target or e.id
  if e.instance_name then
    name = e.instance_name
  end
  local scope = {}
  for _, f in ipairs({ "route", "service", "consumer", "consumer_group" }) do
    if type(e[f]) == "table" and e[f].id then
      scope[#scope + 1] = f .. " " .. tostring(e[f].id)
    end
  end
  if #scope > 0 then
    return tostring(name) .. " (" .. concat(scope, ", ") .. ")"
  end
  return tostring(name)
end

-- Deep equality of decoded documents; NaN (YAML .nan) equals NaN, so an
-- unchanged document never reads as changed.
local function equal(a, b)
  if type(a) ~= type(b) then
    return false
  end
  if type(a) ~= "table" then
    return a == b or (a ~= a and b ~= b)
  end
  for k, v in pairs(a) do
    if not equal(v, b[k]) then
      return false
    end
  end
  for k in pairs(b) do
    if a[k] == nil then
      return false
    end
  end
  return true
end

local function by_id(list)
  local t, order = {}, {}
  for _, e in ipairs(type(list) == "table" and list or {}) do
    if type(e) == "table" then
      local id = e.id or label(e)
      t[id] = e
      order[#order + 1] = id
    end
  end
  return t, order
end

-- Compares two decoded documents; returns the lines and the counts.
function _M.compare(want, have)
  local lines = {}
  local added, removed, changed = 0, 0, 0
  for _, kind in ipairs(KINDS) do
    local w, worder = by_id(want[kind])
    local h, horder = by_id(have[kind])
    for _, id in ipairs(worder) do
      local e = w[id]
      if h[id] == nil then
        added = added + 1
        lines[#lines + 1] = fmt("+ %s %s", singular(kind), label(e))
      elseif not equal(e, h[id]) then
        changed = changed + 1
        local fields = {}
        local seen = {}
        for k, v in pairs(e) do
          seen[k] = true
          if not equal(v, h[id][k]) then
            fields[#fields + 1] = tostring(k)
          end
        end
        for k in pairs(h[id]) do
          if not seen[k] then
            fields[#fields + 1] = tostring(k)
          end
        end
        sort(fields)
        lines[#lines + 1] = fmt("~ %s %s: %s", singular(kind), label(e),
                                concat(fields, ", "))
      end
    end
    for _, id in ipairs(horder) do
      if w[id] == nil then
        removed = removed + 1
        lines[#lines + 1] = fmt("- %s %s", singular(kind),
                                label(h[id]))
      end
    end
  end
  return lines, added, removed, changed
end

-- See the header. remote_json: the body of GET /config.
function _M.run(conf, remote_json)
  local have, err = cjson.decode(remote_json)
  if type(have) ~= "table" then
    return "could not decode the running configuration: " ..
           tostring(err or "not a JSON object"), 2
  end
  local want = cjson.decode(export.encode(export.document(conf)))
  local lines, a, r, c = _M.compare(want, have)
  if #lines == 0 then
    return "no differences: the running configuration matches the file", 0
  end
  lines[#lines + 1] = fmt("%d added, %d removed, %d changed (+ only in the " ..
                          "file, - only in the running node)", a, r, c)
  return concat(lines, "\n"), 1
end

_M.equal = equal

return _M
