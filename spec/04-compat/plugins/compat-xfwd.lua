-- Sets the X-Forwarded-* values the way Kong plugins do: through
-- ngx.var.upstream_x_forwarded_*.
local XFwd = { PRIORITY = 1000, VERSION = "1.0.0" }

function XFwd:access(conf)
  ngx.var.upstream_x_forwarded_host = "public.example.com"
  ngx.var.upstream_x_forwarded_proto = "https"
  ngx.var.upstream_x_forwarded_port = "443"
  ngx.var.upstream_x_forwarded_prefix = "/api"
end

XFwd.schema = {
  name = "compat-xfwd",
  fields = { { config = { type = "record", fields = {} } } },
}

return XFwd
