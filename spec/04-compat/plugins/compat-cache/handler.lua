-- luacheck: no max line length
-- kong.cache:get with extra callback arguments and a TTL returned by the
-- callback (Optum/kong-upstream-jwt and jwt-keycloak style).
local H = { PRIORITY = 700, VERSION = "1.0.0" }

local function load_value(key, suffix)
  local calls = ngx.shared.kong:incr("compat-cache:" .. key, 1, 0)
  -- value, err, ttl
  return { v = key .. suffix, calls = calls }, nil, tonumber(ngx.var.arg_ttl)
end

function H:access(conf)
  local key = kong.request.get_query_arg("key")
  local opts = nil
  if kong.request.get_query_arg("zero") then
    opts = { ttl = 0 }
  end
  local value, err, hit = kong.cache:get("compat:" .. key, opts, load_value,
                                         key, "-loaded")
  if err then
    return kong.response.exit(500, { message = err })
  end
  if kong.request.get_query_arg("invalidate") then
    kong.cache:invalidate("compat:" .. key)
  end
  return kong.response.exit(200, { value = value.v, calls = value.calls,
                                   hit_level = hit,
                                   core = kong.core_cache ~= nil })
end

return H
