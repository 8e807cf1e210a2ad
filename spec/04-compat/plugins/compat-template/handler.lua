-- luacheck: no max line length
-- luacheck: globals ngx kong compat_template_loaded_at
-- Kong/kong-plugin template style (kong/plugins/myplugin/handler.lua),
-- with the habits found in the wild: the plugin name from `...`, PRIORITY
-- from the environment at load time, a global written by mistake, and
-- writes to conf.
local plugin_name = ({...})[1]:match("^kong%.plugins%.([^%.]+)")

local plugin = {
  PRIORITY = tonumber(os.getenv("COMPAT_TEMPLATE_PRIORITY") or "1000"),
  VERSION = "0.1",
}

-- a global, as some plugins do (luagate warns once and goes on)
compat_template_loaded_at = ngx.now()

function plugin:init_worker()
  kong.log.debug("saying hi from the 'init_worker' handler")
end

function plugin:rewrite(conf)
  -- global instance only: decides the route by a header
  if conf.route_by_header then
    kong.service.request.set_header("X-Compat-Route", "b")
  end
end

function plugin:access(conf)
  kong.service.request.set_header(conf.request_header, "this is on a request")
  conf.calls = (conf.calls or 0) + 1  -- conf is writable
  kong.ctx.plugin.seen = kong.request.get_header(conf.request_header)
  kong.ctx.plugin.all = kong.request.get_headers()[conf.request_header:lower()]
  kong.ctx.plugin.calls = conf.calls
end

function plugin:header_filter(conf)
  kong.response.set_header(conf.response_header, "this is on the response")
  kong.response.set_header("X-Plugin-Name", plugin_name)
  kong.response.set_header("X-Seen", tostring(kong.ctx.plugin.seen))
  kong.response.set_header("X-Seen-All", tostring(kong.ctx.plugin.all))
  kong.response.set_header("X-Calls", tostring(kong.ctx.plugin.calls))
  kong.response.set_header("X-Global-Type", type(compat_template_loaded_at))
end

return plugin
