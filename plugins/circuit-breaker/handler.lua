-- circuit-breaker: stops sending requests to a failing upstream for a
-- while, and answers them at once with a fallback response instead
-- (docs/plugins/circuit-breaker.md).
--
-- One breaker per service (scope "service") or per route (scope "route"),
-- shared by the workers of the node through a shared dictionary
-- (state.lua). States:
--   closed     requests go through; their outcomes are counted in log
--              (consecutive failures, or failures / requests over a
--              sliding window with error_ratio); reaching the threshold
--              opens the circuit;
--   open       requests get the fallback response in access, without
--              contacting the upstream, for open_timeout_s;
--   half_open  then up to half_open_requests probes go through at once;
--              the first probe that succeeds closes the circuit, the first
--              that fails opens it again; other requests get the fallback.
-- A failure is an upstream status in failure_statuses, or a 502/503/504
-- the gateway made (connection refused, timeouts). Responses a plugin made
-- (kong.response.exit: auth failures, rate limiting, cache hits, this
-- plugin's fallback) are not counted.
--
-- PRIORITY 940: after the auth plugins, ip-restriction and acl (requests
-- they refuse never count), before rate-limiting (910; an open circuit
-- answers without using the client's quota), and long before the upstream
-- is contacted. Cost while closed: one dictionary read in access; in log
-- one read (a success, consecutive mode) or one increment.

local state = require "kong.plugins.circuit-breaker.state"
local cjson = require "cjson.safe"

local kong = kong
local ngx = ngx
local type = type
local pairs = pairs
local ipairs = ipairs
local setmetatable = setmetatable
local floor = math.floor
local ceil = math.ceil
local lower = string.lower

local CLOSED, OPEN, HALF_OPEN = state.CLOSED, state.OPEN, state.HALF_OPEN
local PROBE_TTL = state.PROBE_TTL
local breaker_of = state.breaker
local transition = state.transition

local JSON = "application/json; charset=utf-8"

-- phase guards (kong.plugin.idle, a luagate extension): the closed state
-- with a healthy upstream costs no Lua at all
local watch_one, watch_two = {}, {}

local function can_idle()
  return kong.plugin.can_idle()
end

local function idle(dict, keys, statuses)
  return kong.plugin.idle(dict, keys, statuses)
end

local function watched(key, version)
  return { key = key, version = version }
end


local CircuitBreakerHandler = {
  PRIORITY = 940,
  VERSION = "1.0.0",
}


-- per config ---------------------------------------------------------------

local plans = setmetatable({}, { __mode = "k" })

local function plan_of(conf)
  local plan = plans[conf]
  if plan then
    return plan
  end
  local fail = {}
  for _, s in ipairs(conf.failure_statuses) do
    fail[s] = true
  end
  local fb = conf.fallback
  local headers = {}
  local has_ct = false
  for name, value in pairs(fb.headers or {}) do
    headers[name] = value
    if lower(name) == "content-type" then
      has_ct = true
    end
  end
  local body = fb.body
  if type(body) == "table" then
    body = cjson.encode(body)
    if not has_ct then
      headers["Content-Type"] = JSON
    end
  end
  plan = {
    dict = ngx.shared[conf.dictionary_name],
    fail = fail,
    ratio = conf.error_ratio,
    fb_status = fb.status,
    fb_body = body,
    fb_headers = headers,
  }
  plans[conf] = plan
  return plan
end


-- The breaker of this request, or nil (no service: nothing to protect).
local function current_breaker(conf)
  if conf.scope == "route" then
    local route = kong.router.get_route()
    if route and route.service ~= nil and kong.router.get_service() then
      return breaker_of("route", route)
    end
    return nil
  end
  local service = kong.router.get_service()
  return service and breaker_of("service", service)
end


local function fallback(plan, retry_after)
  if retry_after then
    kong.response.set_header("Retry-After", retry_after)
  end
  return kong.response.exit(plan.fb_status, plan.fb_body, plan.fb_headers)
end


-- probes this worker let through and has not seen the end of: the log
-- phase looks at kong.ctx.plugin only while there are some
local probes_here = 0


function CircuitBreakerHandler:access(conf)
  local plan = plan_of(conf)
  local dict = plan.dict
  if not dict then
    if not plan.err_logged then
      plan.err_logged = true
      kong.log.err("missing shared dict '", conf.dictionary_name,
                   "': the circuit breaker is off")
    end
    return
  end
  local b = current_breaker(conf)
  if not b then
    return
  end

  -- closed, and the route's only access handler: the runtime leaves this
  -- handler out while the state key keeps its value (a phase guard; the
  -- stamp is read before the value it stands for)
  local lone = can_idle()
  local ver = lone and dict:get_stamp(b.key)
  local v = dict:get(b.key)
  if v == nil or v % 4 == CLOSED then
    if lone then
      watch_one[1] = watched(b.key, ver)
      idle(dict, watch_one)
    end
    return
  end

  local now = ngx.now()
  if v % 4 == OPEN then
    local at = dict:get(b.at) or 0
    local wait = at + conf.open_timeout_s - now
    if wait > 0 then
      return fallback(plan, ceil(wait))
    end
    transition(dict, b, v, HALF_OPEN, now, "open for " ..
               conf.open_timeout_s .. "s")
    v = dict:get(b.key) or 0
    if v % 4 == CLOSED then
      return
    elseif v % 4 == OPEN then
      return fallback(plan, 1)
    end
  end

  -- half-open: a probe when a slot is free
  local pkey = b.p .. floor(v / 4)
  local n = dict:incr(pkey, 1, 0, PROBE_TTL)
  if n and n <= conf.half_open_requests then
    local ctx = kong.ctx.plugin
    ctx.probe_v = v -- luacheck: ignore 122
    ctx.probe_key = pkey -- luacheck: ignore 122
    ctx.breaker = b -- luacheck: ignore 122
    probes_here = probes_here + 1
    return
  end
  if n then
    dict:incr(pkey, -1)
  end
  return fallback(plan, nil)
end


-- true: a failure, false: a success, nil: not an upstream outcome
local function outcome(plan)
  local source = kong.response.get_source()
  if source == "service" then
    local s = kong.service.response.get_status()
    if s == nil then
      return nil
    end
    return plan.fail[s] == true
  elseif source == "error" then
    local s = kong.response.get_status()
    if s == 502 or s == 503 or s == 504 then
      return true
    end
  end
  return nil
end


local function trip(dict, b, now, reason)
  local v = dict:get(b.key) or 0
  if v % 4 == CLOSED then
    transition(dict, b, v, OPEN, now, reason)
  end
end


function CircuitBreakerHandler:log(conf)
  local plan = plan_of(conf)
  local dict = plan.dict
  if not dict then
    return
  end

  if probes_here > 0 then
    local ctx = kong.ctx.plugin
    local probe_v = ctx.probe_v
    if probe_v then
      probes_here = probes_here - 1
      local b = ctx.breaker
      local failed = outcome(plan)
      if failed == nil then
        dict:incr(ctx.probe_key, -1) -- no verdict: the slot is free again
      elseif failed then
        transition(dict, b, probe_v, OPEN, ngx.now(), "probe failed")
      else
        transition(dict, b, probe_v, CLOSED, ngx.now(), "probe succeeded")
      end
      return
    end
  end

  local failed = outcome(plan)
  if failed == nil then
    return
  end
  local b = current_breaker(conf)
  if not b then
    return
  end

  if plan.ratio then
    local now = ngx.now()
    local window = conf.window_s
    state.window(b, floor(now / window))
    local ttl = 2 * window + 1
    dict:incr(b.wn, 1, 0, ttl)
    if failed then
      dict:incr(b.we, 1, 0, ttl)
      local n, e = state.window_counts(dict, b, window, now)
      if n >= conf.min_requests and e / n >= plan.ratio then
        trip(dict, b, now, ("error ratio %.2f over %d requests"):format(
          e / n, floor(n + 0.5)))
      end
    end
    return
  end

  if failed then
    local f = dict:incr(b.f, 1, 0)
    if f and f >= conf.failure_threshold then
      trip(dict, b, ngx.now(), f .. " consecutive failures")
    end
  elseif not can_idle() then
    if dict:get(b.f) then
      dict:delete(b.f)
    end
  else
    -- a success with no failure counted, closed: nothing to do for the
    -- next successes either while neither key moves (a phase guard; the
    -- upstream's failure statuses still run this handler)
    local kver = dict:get_stamp(b.key)
    local fver = dict:get_stamp(b.f)
    if dict:get(b.f) then
      dict:delete(b.f)
      return
    end
    local v = dict:get(b.key)
    if v == nil or v % 4 == CLOSED then
      watch_two[1] = watched(b.key, kver)
      watch_two[2] = watched(b.f, fver)
      idle(dict, watch_two, plan.fail)
    end
  end
end


return CircuitBreakerHandler
