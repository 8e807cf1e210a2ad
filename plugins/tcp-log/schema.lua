-- tcp-log: Kong's configuration (the log server's address, timeouts, TLS,
-- custom fields).
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
  name = "tcp-log",
  fields = {
    { protocols = typedefs.protocols },
    { config = {
        type = "record",
        fields = {
          { host = typedefs.host {
              description = "The IP address or host name to send data to.",
              required = true,
          } },
          { port = typedefs.port {
              description = "The port to send data to on the upstream " ..
                            "server.",
              required = true,
          } },
          { timeout = {
              description = "An optional timeout in milliseconds when " ..
                            "sending data to the upstream server " ..
                            "(connect and send).",
              type = "number",
              default = 10000,
          } },
          { keepalive = {
              description = "An optional value in milliseconds that " ..
                            "defines how long an idle connection lives " ..
                            "before being closed.",
              type = "number",
              default = 60000,
          } },
          { tls = {
              description = "Indicates whether to perform a TLS handshake " ..
                            "against the remote server. luagate has no " ..
                            "TLS client yet: only false is accepted.",
              type = "boolean",
              required = true,
              default = false,
              custom_validator = function(v)
                if v then
                  return nil, "TLS is not supported yet (luagate has no " ..
                              "TLS client)"
                end
                return true
              end,
          } },
          { tls_sni = {
              description = "An optional string that defines the SNI " ..
                            "(Server Name Indication) hostname to send in " ..
                            "the TLS handshake (unused while tls is false).",
              type = "string",
          } },
          { custom_fields_by_lua = custom_fields.field() },
        },
      },
    },
  },
}
