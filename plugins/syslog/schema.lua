-- syslog: Kong's configuration (the level threshold, the severity per
-- class of response status, the facility, custom fields) plus luagate's
-- `socket_path`.
local typedefs = require "kong.db.schema.typedefs"

local custom_fields
do
  local ok, m = pcall(require, "kong.plugins.http-log.custom_fields")
  if not ok then
    local src = debug.getinfo(1, "S").source
    local dir = src:match("^@(.*)/[^/]*/[^/]*$") or "."
    m = dofile(dir .. "/http-log/custom_fields.lua")
  end
  custom_fields = m
end


local SEVERITIES = {
  "debug", "info", "notice", "warning", "err", "crit", "alert", "emerg",
}

local FACILITIES = {
  "auth", "authpriv", "cron", "daemon", "ftp", "kern", "lpr", "mail",
  "news", "syslog", "user", "uucp", "local0", "local1", "local2", "local3",
  "local4", "local5", "local6", "local7",
}


local function severity(description)
  return {
    description = description,
    type = "string",
    required = true,
    default = "info",
    one_of = SEVERITIES,
  }
end


return {
  name = "syslog",
  fields = {
    { protocols = typedefs.protocols },
    { config = {
        type = "record",
        fields = {
          { log_level = severity(
              "The least severe level sent: an entry whose severity is " ..
              "less severe than this one is not logged.") },
          { successful_severity = severity(
              "The severity of entries whose response status is below " ..
              "400.") },
          { client_errors_severity = severity(
              "The severity of entries whose response status is 400 to " ..
              "499.") },
          { server_errors_severity = severity(
              "The severity of entries whose response status is 500 or " ..
              "more.") },
          { custom_fields_by_lua = custom_fields.field() },
          { facility = {
              description = "The facility is used by the operating " ..
                            "system to decide how to handle each log " ..
                            "message.",
              type = "string",
              required = true,
              default = "user",
              one_of = FACILITIES,
          } },
          { socket_path = {
              description = "luagate only: the local syslog daemon's unix " ..
                            "datagram socket the entries are sent to.",
              type = "string",
              required = true,
              default = "/dev/log",
              starts_with = "/",
              len_max = 107,
          } },
        },
      },
    },
  },
}
