-- myplugin: the smallest useful plugin, in the shape of Kong's plugin
-- template. It adds a header to the request sent upstream (access) and one
-- to the response sent to the client (header_filter).
--
-- Handler contract: a plain table with PRIORITY (integer: higher runs first)
-- and VERSION ("x.y.z"), and one method per phase, called as
-- handler:phase(conf) with the validated config of the instance that
-- applies to this request.

local kong = kong

local REQUEST_VALUE = "this is on a request"
local RESPONSE_VALUE = "this is on the response"

local MyPlugin = {
  PRIORITY = 1000,
  VERSION = "0.1.0",
}


-- Once per worker, when the plugin is loaded.
function MyPlugin:init_worker()
  kong.log.debug("myplugin: init_worker")
end


-- Before the request goes upstream; may end it with kong.response.exit.
function MyPlugin:access(conf)
  if conf.request_header then
    kong.service.request.set_header(conf.request_header, REQUEST_VALUE)
  end
end


-- When the upstream's response head arrives, before the client gets it.
function MyPlugin:header_filter(conf)
  if conf.response_header then
    kong.response.set_header(conf.response_header, RESPONSE_VALUE)
  end
end


return MyPlugin
