-- luacheck: no max line length
-- lua-resty-http from access: request_uri, then the step-by-step API with
-- keepalive (as kong-plugin-jwt-keycloak's 3.x port and many auth plugins).
local http = require "resty.http"
local cjson = require "cjson.safe"

local H = { PRIORITY = 950, VERSION = "1.0.0" }

function H:access(conf)
  local httpc = http.new()
  httpc:set_timeout(2000)
  local res, err = httpc:request_uri(conf.url .. "/anything/one?a=1", {
    method = "POST",
    body = "payload",
    headers = { ["Content-Type"] = "text/plain", ["X-From"] = "resty.http" },
    query = { b = "2" },
    keepalive_timeout = 10000,
  })
  if not res then
    return kong.response.exit(502, { message = "request_uri: " .. tostring(err) })
  end
  local echoed = cjson.decode(res.body) or {}

  -- step by step, twice on the same pool to see reuse
  local parsed = assert(httpc:parse_uri(conf.url))
  local reused
  for _ = 1, 2 do
    local c = http.new()
    c:set_timeouts(1000, 1000, 1000)
    local ok, cerr = c:connect(parsed[2], parsed[3])
    if not ok then
      return kong.response.exit(502, { message = "connect: " .. cerr })
    end
    reused = c:get_reused_times()
    local r2, rerr = c:request({ path = "/anything/two", headers = { Host = "mock" } })
    if not r2 then
      return kong.response.exit(502, { message = "request: " .. rerr })
    end
    local body = r2:read_body()
    if not body then
      return kong.response.exit(502, { message = "read_body" })
    end
    c:set_keepalive(10000, 10)
  end
  local https_ok, https_err = http.new():request_uri("https://127.0.0.1:1/")

  kong.service.request.set_header("X-Http-Status", tostring(res.status))
  kong.service.request.set_header("X-Http-Method", tostring(echoed.method))
  kong.service.request.set_header("X-Http-Body", tostring(echoed.body))
  kong.service.request.set_header("X-Http-Path", tostring(echoed.path))
  kong.service.request.set_header("X-Http-Reused", tostring(reused))
  kong.service.request.set_header("X-Http-Ctype",
                                  tostring(res.headers["Content-Type"]))
  kong.service.request.set_header("X-Https", tostring(https_ok) .. ":" ..
                                  tostring(https_err))
end

return H
