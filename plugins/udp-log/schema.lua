-- udp-log: Kong's configuration (the log server's address, custom fields).
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


return {
  name = "udp-log",
  fields = {
    { protocols = typedefs.protocols },
    { config = {
        type = "record",
        fields = {
          { host = typedefs.host {
              description = "The IP address or host name to send the " ..
                            "log datagrams to.",
              required = true,
          } },
          { port = typedefs.port {
              description = "The UDP port to send the log datagrams to.",
              required = true,
          } },
          { timeout = {
              description = "Timeout in milliseconds (Kong's socket " ..
                            "timeout). luagate's sends never wait, so it " ..
                            "has no effect.",
              type = "number",
              default = 10000,
          } },
          { custom_fields_by_lua = custom_fields.field() },
        },
      },
    },
  },
}
