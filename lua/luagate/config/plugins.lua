-- Plugin discovery and plugin schemas for config validation.
--
-- A plugin named N is found in the first directory of `dirs` that holds
-- either `N/handler.lua` + `N/schema.lua` (Kong's layout), or a single
-- file `N.lua` returning its handler table with the schema under
-- `handler.SCHEMA` (or `handler.schema`). Only the schema is loaded here;
-- handlers are the plugin loader's business.

local type = type
local ipairs = ipairs
local next = next
local pcall = pcall
local loadfile = loadfile
local load = load
local pairs = pairs
local gsub = string.gsub
local setmetatable = setmetatable
local tostring = tostring
local open = io.open
local find = string.find
local sort = table.sort
local concat = table.concat

local Schema = require "luagate.schema"
local entities = require "luagate.config.entities"

local lfs
do
  local ok, m = pcall(require, "lfs")
  if ok then
    lfs = m
  end
end


local _M = {}


local function exists(path)
  local f = open(path, "r")
  if f then
    f:close()
    return true
  end
  return false
end


local Registry = {}
Registry.__index = Registry


-- Creates a plugin registry over `dirs` (array of directories, searched
-- in order).
function _M.new(dirs)
  return setmetatable({
    dirs = dirs or {},
    found = {},
    schemas = {},
    sources = {}, -- name -> source text of the schema (or handler) file
  }, Registry)
end


-- Returns { name, dir, schema_path, handler_path, single } or nil.
function Registry:find(name)
  if type(name) ~= "string" or not find(name, "^[%w][%w%-_%.]*$") then
    return nil
  end
  local cached = self.found[name]
  if cached ~= nil then
    return cached or nil
  end
  local info = false
  for _, dir in ipairs(self.dirs) do
    local base = dir .. "/" .. name
    if exists(base .. "/handler.lua") and exists(base .. "/schema.lua") then
      info = { name = name, dir = dir, schema_path = base .. "/schema.lua",
               handler_path = base .. "/handler.lua" }
      break
    end
    if exists(base .. ".lua") then
      info = { name = name, dir = dir, handler_path = base .. ".lua",
               single = true }
      break
    end
  end
  self.found[name] = info
  return info or nil
end


-- Sorted names of every plugin found in the directories.
function Registry:known()
  if self.known_list then
    return self.known_list
  end
  local names, seen = {}, {}
  if lfs then
    for _, dir in ipairs(self.dirs) do
      local ok, iter, state = pcall(lfs.dir, dir)
      if ok then
        for entry in iter, state do
          if entry ~= "." and entry ~= ".." then
            local name = entry:match("^(.-)%.lua$") or entry
            if not seen[name] and self:find(name) then
              seen[name] = true
              names[#names + 1] = name
            end
          end
        end
      end
    end
  end
  sort(names)
  self.known_list = names
  return names
end


function Registry:not_found_message(name)
  local known = self:known()
  local list = #known > 0 and concat(known, ", ") or "none found"
  return "plugin '" .. tostring(name) .. "' not enabled; known plugins: " ..
         list
end


local function load_chunk(path, dirs, modname)
  -- a schema may require its plugin's own modules (kong.plugins.<name>.*)
  local ok, loader = pcall(require, "luagate.plugins")
  if ok then
    loader.install()
    if dirs and #loader.dirs == 0 then
      loader.dirs = dirs
    end
  end
  local env = setmetatable({}, { __index = _G })
  -- read here (not loadfile) to keep the source for the config hash
  local f = open(path, "rb")
  local src = f and f:read("*a")
  if f then
    f:close()
  end
  local chunk, err
  if src then
    -- as loadfile: a first line starting with "#" is skipped
    chunk, err = load((gsub(src, "^#[^\n]*", "")), "@" .. path, "t", env)
  else
    chunk, err = loadfile(path, "t", env)
  end
  if not chunk then
    return nil, err
  end
  -- the module name reaches the chunk as `...`, as with require
  local ok, res = pcall(chunk, modname)
  if not ok then
    return nil, tostring(res)
  end
  return res, nil, src
end


local FOREIGN = {
  consumer = true, route = true, service = true, consumer_group = true,
}


-- Builds the plugin entity's schema from the plugin's Kong-format schema:
-- the entity fields (name, instance_name, enabled, protocols, tags) with
-- the plugin's overrides, `config` from the plugin, foreign fields
-- (`consumer = typedefs.no_consumer`...) kept aside as scope restrictions.
local function build_entity_schema(def)
  if type(def) ~= "table" then
    return nil, "schema must be a table"
  end
  if type(def.fields) ~= "table" then
    return nil, "schema must have a 'fields' array"
  end
  local overrides, order, forbidden = {}, {}, {}
  for i, item in ipairs(def.fields) do
    if type(item) ~= "table" then
      return nil, "fields[" .. (i - 1) .. "] must be a one-key table"
    end
    local fname, f = next(item)
    if type(fname) ~= "string" or type(f) ~= "table" then
      return nil, "fields[" .. (i - 1) .. "] must be a one-key table"
    end
    if FOREIGN[fname] then
      if f.eq ~= nil and Schema.is_null(f.eq) then
        forbidden[fname] = true
      end
    else
      overrides[fname] = f
      order[#order + 1] = fname
    end
  end
  local config = overrides.config
  if config == nil then
    config = { type = "record", fields = {} }
    overrides.config = config
  elseif config.type ~= "record" then
    return nil, "'config' must be a record"
  end
  local fields, used = {}, {}
  for _, item in ipairs(entities.PLUGIN_BASE_FIELDS) do
    local fname, f = next(item)
    fields[#fields + 1] = { [fname] = overrides[fname] or f }
    used[fname] = true
  end
  for _, fname in ipairs(order) do
    if not used[fname] then
      fields[#fields + 1] = { [fname] = overrides[fname] }
    end
  end
  local ok, s = pcall(Schema.new, {
    name = def.name,
    fields = fields,
    entity_checks = def.entity_checks,
    shorthand_fields = def.shorthand_fields,
    check = def.check,
  })
  if not ok then
    return nil, tostring(s)
  end
  return { schema = s, forbidden = forbidden, def = def }
end


-- The schema entry of plugin `name`: { schema, forbidden, def }; or nil
-- and an error message (not found, or an invalid schema).
function Registry:schema(name)
  local cached = self.schemas[name]
  if cached then
    return cached
  end
  local info = self:find(name)
  if not info then
    return nil, self:not_found_message(name), "not_found"
  end
  local def, err, src
  if info.single then
    local handler
    handler, err, src = load_chunk(info.handler_path, self.dirs,
                                   "kong.plugins." .. name)
    if type(handler) == "table" then
      def = handler.SCHEMA or handler.schema
      if def == nil then
        err = "no SCHEMA in " .. info.handler_path
      end
    elseif not err then
      err = info.handler_path .. " must return a table"
    end
  else
    def, err, src = load_chunk(info.schema_path, self.dirs,
                               "kong.plugins." .. name .. ".schema")
  end
  if def == nil then
    return nil, "could not load the schema of plugin '" .. name .. "': " ..
                tostring(err)
  end
  local entry
  entry, err = build_entity_schema(def)
  if not entry then
    return nil, "invalid schema of plugin '" .. name .. "': " .. err
  end
  self.schemas[name] = entry
  self.sources[name] = src or ""
  return entry
end


-- The schemas loaded so far, as one string: name and source of each, by
-- name (part of the config hash).
function Registry:signature()
  local names = {}
  for name in pairs(self.sources) do
    names[#names + 1] = name
  end
  sort(names)
  local parts = {}
  for i, name in ipairs(names) do
    parts[i] = name .. "\0" .. self.sources[name]
  end
  return concat(parts, "\0")
end


return _M
