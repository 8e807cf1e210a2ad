-- Test plugin of the circuit-breaker specs (02-access_spec.lua): answers
-- {"pid": worker pid, "now": ngx.now(), "breakers": state.get_all()}, the
-- breakers keyed by name.
local H = { PRIORITY = 1000, VERSION = "1.0.0" }

H.SCHEMA = {
  name = "cb-fixture",
  fields = {
    { config = { type = "record", fields = {} } },
  },
}


function H:access()
  local state = require "kong.plugins.circuit-breaker.state"
  local by_name = {}
  for _, b in ipairs(state.get_all()) do
    by_name[b.name] = b
  end
  return kong.response.exit(200, {
    pid = ngx.worker.pid(),
    now = ngx.now(),
    breakers = by_name,
  })
end


return H
