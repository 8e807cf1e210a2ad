-- kong.plugins.base_plugin: the Kong 0.x-2.x handler base class, removed in
-- Kong 3.0. Available in luagate's legacy plugin mode
-- (`_luagate: { plugins_legacy: true }` in the config), for handlers like
--
--   local BasePlugin = require "kong.plugins.base_plugin"
--   local H = BasePlugin:extend()
--   function H:new() H.super.new(self, "my-plugin") end
--   function H:access(conf) H.super.access(self) ... end
--   H.PRIORITY = 1000
--   return H
--
-- The loader instantiates such a class once (`H()`), as Kong 2 did.
local loader = require "luagate.plugins"

if not loader.legacy then
  error("kong.plugins.base_plugin was removed in Kong 3.0; this plugin is " ..
        "written for Kong 1.x/2.x: enable legacy mode with " ..
        "`_luagate: { plugins_legacy: true }` in the declarative config", 2)
end

local setmetatable = setmetatable
local pairs = pairs

-- a minimal class system (rxi's "classic" shape, which Kong used)
local Object = {}
Object.__index = Object

function Object:new() end

function Object:extend()
  local cls = {}
  for k, v in pairs(self) do
    if k:find("__") == 1 then
      cls[k] = v
    end
  end
  cls.__index = cls
  cls.super = self
  setmetatable(cls, self)
  return cls
end

function Object:is(T)
  local mt = getmetatable(self)
  while mt do
    if mt == T then
      return true
    end
    mt = getmetatable(mt)
  end
  return false
end

function Object:__call(...)
  local obj = setmetatable({}, self)
  obj:new(...)
  return obj
end


local BasePlugin = Object:extend()

function BasePlugin:new(name)
  self._name = name
end

function BasePlugin:get_name()
  return self._name
end

local function noop() end
BasePlugin._noop = noop

BasePlugin.init_worker = noop
BasePlugin.certificate = noop
BasePlugin.rewrite = noop
BasePlugin.access = noop
BasePlugin.header_filter = noop
BasePlugin.body_filter = noop
BasePlugin.log = noop

return BasePlugin
