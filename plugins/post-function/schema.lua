-- post-function: Lua code run after every other plugin (PRIORITY -1000);
-- the schema is pre-function's.
local make
do
  local ok, m = pcall(require, "kong.plugins.pre-function._schema")
  if not ok then
    local src = debug.getinfo(1, "S").source
    local dir = src:match("^@(.*)/[^/]*$") or "."
    m = dofile(dir .. "/../pre-function/_schema.lua")
  end
  make = m
end

return make("post-function")
