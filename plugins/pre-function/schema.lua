-- pre-function: Lua code run before every other plugin (PRIORITY 1000000).
local make
do
  local ok, m = pcall(require, "kong.plugins.pre-function._schema")
  if not ok then
    local src = debug.getinfo(1, "S").source
    local dir = src:match("^@(.*)/[^/]*$") or "."
    m = dofile(dir .. "/_schema.lua")
  end
  make = m
end

return make("pre-function")
