-- request-termination: answers every request itself (or, with `trigger`,
-- only those carrying that header or query argument), with Kong's bodies:
--   * echo: status_code and a JSON copy of the request
--     {message, kong = {node_id, worker_pid, hostname}, request = {scheme,
--      host, port, headers, query, body, raw_body, method, path},
--      matched_route, matched_service};
--   * body: the raw body, with content_type as Content-Type;
--   * otherwise {"message": message}, the message defaulting by status
--     (503 "Service unavailable", ...); a status without a default message
--     and no `message` gives an empty body.
-- Responses go through kong.response.exit (no request_id, as in Kong).

local kong = kong
local ngx = ngx

local DEFAULT_MESSAGES = {
  [401] = "Unauthorized",
  [404] = "Not found",
  [405] = "Method not allowed",
  [500] = "An unexpected error occurred",
  [502] = "Bad Gateway",
  [503] = "Service unavailable",
}


local RequestTerminationHandler = {
  PRIORITY = 2,
  VERSION = "3.10.0",
}


local function triggered(name)
  return kong.request.get_header(name) ~= nil or
         kong.request.get_query_arg(name) ~= nil
end


local function echo(conf, status)
  local headers = kong.request.get_headers()
  local query = kong.request.get_query()
  if conf.trigger and headers[conf.trigger] == nil and
     query[conf.trigger] == nil then
    return
  end
  return kong.response.exit(status, {
    message = conf.message or DEFAULT_MESSAGES[status],
    kong = {
      node_id = kong.node.get_id(),
      worker_pid = ngx.worker.pid(),
      hostname = kong.node.get_hostname(),
    },
    request = {
      scheme = kong.request.get_scheme(),
      host = kong.request.get_host(),
      port = kong.request.get_port(),
      headers = headers,
      query = query,
      body = (kong.request.get_body()),
      raw_body = (kong.request.get_raw_body()),
      method = kong.request.get_method(),
      path = kong.request.get_path(),
    },
    matched_route = kong.router.get_route(),
    matched_service = kong.router.get_service(),
  })
end


function RequestTerminationHandler:access(conf)
  local status = conf.status_code

  if conf.echo then
    return echo(conf, status)
  end

  if conf.trigger and not triggered(conf.trigger) then
    return -- not for this request: proxied
  end

  if conf.body then
    return kong.response.exit(status, conf.body,
                              { ["Content-Type"] = conf.content_type })
  end

  local message = conf.message or DEFAULT_MESSAGES[status]
  return kong.response.exit(status, message and { message = message } or nil)
end


return RequestTerminationHandler
