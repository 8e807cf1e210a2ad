-- luacheck: no max line length
-- Kong 2.x style: BasePlugin class, no VERSION, no PRIORITY (legacy mode).
local BasePlugin = require "kong.plugins.base_plugin"

local LegacyHandler = BasePlugin:extend()

function LegacyHandler:new()
  LegacyHandler.super.new(self, "compat-legacy")
end

function LegacyHandler:access(conf)
  LegacyHandler.super.access(self)
  kong.service.request.set_header("X-Legacy", conf.value .. ":" .. self:get_name())
end

function LegacyHandler:header_filter(conf)
  LegacyHandler.super.header_filter(self)
  kong.response.set_header("X-Legacy-Response", "yes")
end

return LegacyHandler
