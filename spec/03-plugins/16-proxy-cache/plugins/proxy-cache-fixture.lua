-- Test plugin of the proxy-cache specs (02-access_spec.lua), PRIORITY 50:
-- its access runs after proxy-cache's (100), so the cache key is the
-- client's request while the upstream request may be changed.
--   mode "fail":  X-Fail: 500  -> the upstream path becomes /status/500
--                 X-Fail: down -> the upstream is conf.down_port (refused)
--                 X-Fail: slow -> /delay/2 with a 300 ms read timeout (504)
--   mode "admin": answers with kong.plugins.proxy-cache.api:
--                 ?op=lookup|purge|purge_all [&key=K] [&plugin_id=ID]
--                 -> {"ok": value, "err": err, "plugin_id": id}
--   mode "pid":   X-Worker-Pid on every response (header_filter runs after
--                 proxy-cache's, so the header is not stored: a hit tells
--                 which worker served it)
local H = { PRIORITY = 50, VERSION = "1.0.0" }

H.SCHEMA = {
  name = "proxy-cache-fixture",
  fields = {
    { config = { type = "record", fields = {
        { mode = { type = "string", required = true,
                   one_of = { "fail", "admin", "pid" } } },
        { down_port = { type = "integer" } },
    } } },
  },
}


function H:access(conf)
  if conf.mode == "admin" then
    local api = require "kong.plugins.proxy-cache.api"
    local op = kong.request.get_query_arg("op")
    local key = kong.request.get_query_arg("key")
    local plugin_id = kong.request.get_query_arg("plugin_id")
    local v, err
    if op == "lookup" then
      v, err = api.lookup(key, plugin_id)
    elseif op == "purge" then
      v, err = api.purge(key, plugin_id)
    elseif op == "purge_all" then
      v, err = api.purge_all(plugin_id)
    elseif op == "bad_key" then
      local ok, e = pcall(api.purge, nil)
      v, err = ok, e
    end
    local body = { ok = v, err = err }
    if op == "lookup" and v then
      body.plugin_id = err
      body.err = nil
    end
    return kong.response.exit(200, body)
  end

  if conf.mode == "pid" then
    return
  end

  local fail = kong.request.get_header("X-Fail")
  if fail == "500" then
    kong.service.request.set_path("/status/500")
  elseif fail == "down" then
    kong.service.set_target("127.0.0.1", conf.down_port)
  elseif fail == "slow" then
    kong.service.request.set_path("/delay/2")
    kong.service.set_timeouts(1000, 1000, 300)
  end
end


function H:header_filter(conf)
  if conf.mode == "pid" then
    kong.response.set_header("X-Worker-Pid", ngx.worker.pid())
  end
end


return H
