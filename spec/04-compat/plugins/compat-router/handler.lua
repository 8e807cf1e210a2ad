-- luacheck: no max line length
-- luacheck: globals ngx compat_template_loaded_at
-- ngx.ctx keys from Kong's runloop: router_matches, service, route,
-- balancer_data (timeouts), KONG_* timings, and ngx.var.upstream_uri.
local H = { PRIORITY = 600, VERSION = "1.0.0" }

function H:access(conf)
  local ctx = ngx.ctx
  local caps = ctx.router_matches and ctx.router_matches.uri_captures or {}
  if caps.id then
    ngx.var.upstream_uri = "/anything/item-" .. caps.id .. "?from=" ..
                           tostring(caps[1])
  end
  local bd = ctx.balancer_data
  if conf.read_timeout then
    bd.read_timeout = conf.read_timeout
  end
  kong.service.request.set_header("X-Ctx-Service", ctx.service and ctx.service.name)
  kong.service.request.set_header("X-Ctx-Route", ctx.route and ctx.route.name)
  kong.service.request.set_header("X-Bd", tostring(bd.host) .. ":" ..
                                  tostring(bd.port) .. ":" ..
                                  tostring(bd.read_timeout) .. ":" ..
                                  type(bd.tries))
  kong.service.request.set_header("X-Processing-Start",
                                  tostring(ctx.KONG_PROCESSING_START))
end

function H:header_filter(conf)
  local ctx = ngx.ctx
  ngx.header["X-Access-Time"] = tostring(ctx.KONG_ACCESS_TIME)
  ngx.header["X-Access-Start"] = tostring(ctx.KONG_ACCESS_START)
  -- phases that have not run (log) or not ended (this one): nil, also on
  -- a connection whose previous request ran them
  ngx.header["X-Not-Yet"] = tostring(ctx.KONG_LOG_START) .. "," ..
                            tostring(ctx.KONG_LOG_TIME) .. "," ..
                            tostring(ctx.KONG_HEADER_FILTER_ENDED_AT) .. "," ..
                            tostring(ctx.KONG_HEADER_FILTER_TIME)
  ngx.header["X-Header-Filter-Start"] = tostring(ctx.KONG_HEADER_FILTER_START)
  ngx.header["X-Proxy-Latency"] = tostring(ctx.KONG_PROXY_LATENCY)
  ngx.header["X-Waiting-Time"] = tostring(ctx.KONG_WAITING_TIME)
  ngx.header["X-Upstream-Uri"] = ngx.var.upstream_uri
  ngx.header["X-Upstream-Status-Var"] = ngx.var.upstream_status
  ngx.header["X-Upstream-Http"] = ngx.var.upstream_http_content_type
  ngx.header["X-Sent-Http"] = ngx.var.sent_http_content_type
  ngx.header["X-Upstream-Host"] = ngx.var.upstream_host
end

function H:log(conf)
  local ctx = ngx.ctx
  local line = string.format("compat-router log: tries=%d proxy=%s waiting=%s receive=%s bytes_sent=%s request_length=%s",
    #ctx.balancer_data.tries, tostring(ctx.KONG_PROXY_LATENCY),
    tostring(ctx.KONG_WAITING_TIME), tostring(ctx.KONG_RECEIVE_TIME),
    tostring(ngx.var.bytes_sent), tostring(ngx.var.request_length))
  ngx.shared.kong:set("compat-router:log", line)
end

return H
