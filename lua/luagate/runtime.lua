-- The entry point the C runtime calls to load a configuration: validates the
-- declarative file, then ranks the routes for the C router.
local config = require "luagate.config"
local router = require "luagate.router"

local concat = table.concat

local _M = {}

-- Returns conf, router_entries; or nil, text with one error per line.
function _M.load(path, opts)
  local dirs = { opts.prefix .. "/plugins" }
  for _, d in ipairs(opts.plugins_dirs or {}) do
    dirs[#dirs + 1] = d
  end
  local conf, errs = config.load_file(path, { plugins_dirs = dirs })
  if not conf then
    if type(errs) == "table" then
      return nil, concat(errs, "\n")
    end
    return nil, tostring(errs)
  end
  return conf, router.compile(conf)
end

return _M
