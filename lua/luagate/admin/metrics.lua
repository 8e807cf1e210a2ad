-- The part of GET /metrics that lives in Lua: state kept by plugins in the
-- shared dictionaries, read at scrape time (never on the request path).
-- runtime/src/admin.c appends render()'s text to what metrics.c renders.
--
--   luagate_circuit_breaker_state{scope,service,route,state}  1 for the
--       breaker's current state (closed, open, half_open), 0 for the others
--   luagate_rate_limiting_throttle_waiting{route,service}  requests held by
--       rate-limiting's throttling right now, all workers, per plugin scope
--       (the route and service the plugin instance is attached to; "" for a
--       global one)

local db = require "luagate.db"

local concat = table.concat
local ipairs = ipairs
local pcall = pcall
local tostring = tostring
local find = string.find
local gsub = string.gsub
local sub = string.sub
local fmt = string.format

local _M = {}

local STATES = { "closed", "open", "half_open" }
local RL_DICT = "kong_rate_limiting_counters"
local EMPTY_UUID = "00000000-0000-0000-0000-000000000000"
local WAITING = ":waiting"


local function esc(v)
  return (gsub(tostring(v or ""), '[\\"\n]', { ["\\"] = "\\\\", ['"'] = '\\"',
                                               ["\n"] = "\\n" }))
end


local function name_of(e)
  return e and (e.name or e.id) or ""
end


local function breakers(out)
  local ok, state = pcall(require, "kong.plugins.circuit-breaker.state")
  if not ok then
    return
  end
  local list = state.get_all()
  if #list == 0 then
    return
  end
  out[#out + 1] = "# HELP luagate_circuit_breaker_state Circuit breakers: 1 for " ..
                  "the current state\n# TYPE luagate_circuit_breaker_state gauge\n"
  for _, b in ipairs(list) do
    local labels = fmt('scope="%s",service="%s",route="%s"', esc(b.scope),
                       esc(name_of(b.service)), esc(name_of(b.route)))
    for _, st in ipairs(STATES) do
      out[#out + 1] = fmt("luagate_circuit_breaker_state{%s,state=\"%s\"} %d\n",
                          labels, st, b.state == st and 1 or 0)
    end
  end
end


-- "ratelimit:<route_id>:<service_id>:<identifier>:waiting" counters
-- (plugins/rate-limiting/handler.lua), summed per route and service id
local function throttled(out)
  local dict = ngx.shared[RL_DICT]
  local conf = db.current()
  if not dict or not conf then
    return
  end
  local throttling = false
  for _, p in ipairs(conf.plugins or {}) do
    if p.name == "rate-limiting" and p.enabled ~= false and
       type(p.config) == "table" and type(p.config.throttle) == "table" then
      throttling = true
    end
  end
  if not throttling then
    return
  end
  local sums, order = {}, {}
  for _, key in ipairs(dict:get_keys(0)) do
    if sub(key, -#WAITING) == WAITING and find(key, "ratelimit:", 1, true) == 1 then
      local route_id, service_id = key:match("^ratelimit:([^:]*):([^:]*):")
      local n = dict:get(key)
      if route_id and type(n) == "number" and n > 0 then
        local k = route_id .. ":" .. service_id
        if not sums[k] then
          sums[k] = { route_id, service_id, 0 }
          order[#order + 1] = k
        end
        sums[k][3] = sums[k][3] + n
      end
    end
  end
  local names = {}
  for _, kind in ipairs({ "routes", "services" }) do
    for _, e in ipairs(conf[kind] or {}) do
      if e.id then
        names[e.id] = e.name or e.id
      end
    end
  end
  names[EMPTY_UUID] = ""
  out[#out + 1] = "# HELP luagate_rate_limiting_throttle_waiting Requests held by " ..
                  "rate-limiting throttling now, by the plugin's route and service\n" ..
                  "# TYPE luagate_rate_limiting_throttle_waiting gauge\n"
  for _, k in ipairs(order) do
    local s = sums[k]
    out[#out + 1] = fmt('luagate_rate_limiting_throttle_waiting{route="%s",' ..
                        'service="%s"} %d\n', esc(names[s[1]] or s[1]),
                        esc(names[s[2]] or s[2]), s[3])
  end
end


function _M.render()
  local out = {}
  local ok, err = pcall(breakers, out)
  if not ok then
    ngx.log(ngx.ERR, "metrics: circuit breakers: ", err)
  end
  ok, err = pcall(throttled, out)
  if not ok then
    ngx.log(ngx.ERR, "metrics: throttling: ", err)
  end
  return concat(out)
end

return _M
