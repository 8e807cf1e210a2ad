-- file-log: Kong's configuration (the file, whether it is reopened, custom
-- fields).
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
  name = "file-log",
  fields = {
    { protocols = typedefs.protocols },
    { config = {
        type = "record",
        fields = {
          { path = {
              description = "The file path of the output log file. The " ..
                            "plugin creates the log file if it doesn't " ..
                            "exist yet.",
              type = "string",
              required = true,
              match_none = {
                { pattern = "[%*&%%`]", err = "not a valid filename" },
              },
          } },
          { reopen = {
              description = "Determines whether the log file is closed " ..
                            "and reopened on every request (luagate: " ..
                            "before every batch of lines it writes).",
              type = "boolean",
              required = true,
              default = false,
          } },
          { custom_fields_by_lua = custom_fields.field() },
        },
      },
    },
  },
}
