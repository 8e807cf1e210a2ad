-- Plugin code: finds and loads handlers from the plugin directories, makes
-- `require "kong.plugins.<name>.<module>"` resolve there, checks Kong's
-- handler contract, and reloads a plugin whose files changed (hot reload on
-- SIGHUP).

local type = type
local pairs = pairs
local ipairs = ipairs
local tostring = tostring
local loadfile = loadfile
local pcall = pcall
local floor = math.floor
local huge = math.huge
local find = string.find
local match = string.match
local gsub = string.gsub
local fmt = string.format
local open = io.open
local concat = table.concat

local lfs
do
  local ok, m = pcall(require, "lfs")
  if ok then
    lfs = m
  end
end

local _M = {
  dirs = {},
  legacy = false,
}

local LEGACY_HINT = " (a Kong 1.x/2.x plugin? set `_luagate: " ..
                    "{ plugins_legacy: true }` in the config)"

local stamps = {} -- plugin name -> signature of its files' mtimes
local handlers = {} -- plugin name -> handler table


local function exists(path)
  local f = open(path, "r")
  if f then
    f:close()
    return true
  end
  return false
end


-- Where module `kong.plugins.<name>[.<rest>]` lives, or nil.
local function locate(modname)
  local name, rest = match(modname, "^kong%.plugins%.([^%.]+)%.?(.*)$")
  if not name then
    return nil
  end
  for _, dir in ipairs(_M.dirs) do
    if rest == "" then
      local single = dir .. "/" .. name .. ".lua"
      if exists(single) then
        return single
      end
      local init = dir .. "/" .. name .. "/init.lua"
      if exists(init) then
        return init
      end
    else
      local path = dir .. "/" .. name .. "/" .. gsub(rest, "%.", "/") .. ".lua"
      if exists(path) then
        return path
      end
    end
  end
  return nil
end


local function searcher(modname)
  local path = locate(modname)
  if not path then
    if find(modname, "^kong%.plugins%.") then
      return "\n\tno file for '" .. modname .. "' in the plugin directories"
    end
    return nil
  end
  local chunk, err = loadfile(path)
  if not chunk then
    error("error loading module '" .. modname .. "' from file '" .. path ..
          "':\n\t" .. err, 0)
  end
  return chunk
end


-- Installs the searcher (once) ahead of the standard ones.
function _M.install()
  if _M.installed then
    return
  end
  local loaders = package.loaders or package.searchers
  table.insert(loaders, 2, searcher)
  _M.installed = true
end


-- A signature of a plugin's files: their paths and contents' digests. Not
-- mtimes: they count whole seconds, and an edit within the second of the
-- load (same size) would go unseen.
local function file_digest(path)
  local f = open(path, "rb")
  if not f then
    return ""
  end
  local data = f:read("*a") or ""
  f:close()
  local ok, codec = pcall(require, "luagate.ngx.codec")
  if ok then
    return codec.md5(data)
  end
  return tostring(#data) .. ":" .. data
end


local function signature(name)
  if not lfs then
    return ""
  end
  local parts = {}
  for _, dir in ipairs(_M.dirs) do
    local single = dir .. "/" .. name .. ".lua"
    if lfs.attributes(single) then
      parts[#parts + 1] = single .. "=" .. file_digest(single)
    end
    local base = dir .. "/" .. name
    local d = lfs.attributes(base)
    if d and d.mode == "directory" then
      local function walk(path)
        for entry in lfs.dir(path) do
          if entry ~= "." and entry ~= ".." then
            local full = path .. "/" .. entry
            local at = lfs.attributes(full)
            if at and at.mode == "directory" then
              walk(full)
            elseif at and find(entry, "%.lua$") then
              parts[#parts + 1] = full .. "=" .. file_digest(full)
            end
          end
        end
      end
      walk(base)
    end
  end
  table.sort(parts)
  return concat(parts, ";")
end


-- Forgets the modules of a plugin so the next require loads them anew.
local function unload(name)
  local prefix = "kong.plugins." .. name
  for mod in pairs(package.loaded) do
    if mod == prefix or mod:sub(1, #prefix + 1) == prefix .. "." then
      package.loaded[mod] = nil
    end
  end
  handlers[name] = nil
end


-- Sets the plugin directories and drops the plugins whose files changed
-- since they were loaded. Returns the names reloaded.
function _M.refresh(dirs, legacy)
  _M.dirs = dirs or _M.dirs
  _M.install()
  local changed = {}
  -- legacy nil: keep the mode; a new mode reloads every handler
  if legacy ~= nil and (legacy and true or false) ~= _M.legacy then
    _M.legacy = legacy and true or false
    package.loaded["kong.plugins.base_plugin"] = nil
    for name in pairs(handlers) do
      unload(name)
      changed[#changed + 1] = name
    end
  end
  for name in pairs(handlers) do
    local sig = signature(name)
    if sig ~= stamps[name] then
      unload(name)
      changed[#changed + 1] = name
    end
  end
  return changed
end


local function valid_version(v)
  return type(v) == "string" and
         (find(v, "^%d+%.%d+$") or find(v, "^%d+%.%d+%.%d+")) ~= nil
end


-- The handler table of plugin `name`, loaded and checked; or nil, err.
-- The second result is true when it was loaded now (init_worker is due).
function _M.handler(name)
  local h = handlers[name]
  if h then
    return h, false
  end
  local modname = "kong.plugins." .. name .. ".handler"
  local path = locate(modname)
  if not path then
    modname = "kong.plugins." .. name
    path = locate(modname)
  end
  if not path then
    return nil, fmt("plugin '%s': no handler.lua found", name)
  end
  local ok, res = pcall(require, modname)
  if not ok then
    return nil, fmt("plugin '%s': could not load its handler: %s", name,
                    tostring(res))
  end
  h = res
  if type(h) ~= "table" then
    return nil, fmt("plugin '%s': handler.lua must return a table, got %s",
                    name, type(h))
  end
  -- Kong 2.x handlers made with BasePlugin:extend() are classes: instantiate
  if type(h.new) == "function" and getmetatable(h) and _M.legacy then
    local inst = h()
    if type(inst) == "table" then
      h = inst
      -- BasePlugin's do-nothing phase methods are not phases the plugin
      -- has: hide them so that those phases cost nothing
      local base = package.loaded["kong.plugins.base_plugin"]
      local noop = type(base) == "table" and base._noop
      if noop then
        for _, phase in ipairs({ "init_worker", "certificate", "rewrite",
                                 "access", "header_filter", "body_filter",
                                 "log" }) do
          if h[phase] == noop then
            h[phase] = false
          end
        end
      end
    end
  end
  local prio = h.PRIORITY
  if prio == nil and _M.legacy then
    prio = 0
    h.PRIORITY = 0
  end
  if type(prio) ~= "number" or prio ~= prio or prio == huge or prio == -huge
     or floor(prio) ~= prio then
    local hint = ""
    if prio == huge or prio == -huge then
      hint = " (math.huge is refused since Kong 3.0: use a large integer" ..
             " such as 1000000)"
    elseif prio == nil and not _M.legacy then
      hint = LEGACY_HINT
    end
    return nil, fmt("plugin '%s': PRIORITY must be an integer, got %s%s", name,
                    tostring(prio), hint)
  end
  if not (_M.legacy and h.VERSION == nil) and not valid_version(h.VERSION) then
    return nil, fmt("plugin '%s': VERSION must be a string like " ..
                    "\"1.0.0\", got %s%s", name, tostring(h.VERSION),
                    h.VERSION == nil and LEGACY_HINT or "")
  end
  if type(h.response) == "function" and
     (type(h.header_filter) == "function" or type(h.body_filter) == "function") then
    return nil, fmt("plugin '%s': implements both response and " ..
                    "header_filter/body_filter, which cannot run together", name)
  end
  handlers[name] = h
  stamps[name] = signature(name)
  return h, true
end


return _M
