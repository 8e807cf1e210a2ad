-- rate-limiting: Kong's plugin (limits per second ... year, limit_by,
-- policies local and redis, Kong's headers and errors) with luagate's
-- extensions: sliding-window and gcra algorithms, windows of any length
-- (limit + window_size), throttling (hold a request until it fits instead
-- of refusing it). See docs/plugins/rate-limiting.md.

local windows = require "kong.plugins.rate-limiting.windows"
local policies = require "kong.plugins.rate-limiting.policies"
local recent = require "luagate.recent"

local kong = kong
local ngx = ngx
local type = type
local pcall = pcall
local error = error
local ipairs = ipairs
local tostring = tostring
local setmetatable = setmetatable
local ceil = math.ceil
local floor = math.floor
local sort = table.sort
local ngx_now = ngx.now
local md5 = ngx.md5

local acquire = policies.acquire
local prepare = policies.prepare

local ERR_500 = "An unexpected error occurred"
local EMPTY_UUID = "00000000-0000-0000-0000-000000000000"
local MAX_ID_LEN = 64 -- longer identifiers (header values) are hashed

local RATELIMIT_LIMIT = "RateLimit-Limit"
local RATELIMIT_REMAINING = "RateLimit-Remaining"
local RATELIMIT_RESET = "RateLimit-Reset"
local RETRY_AFTER = "Retry-After"
local THROTTLED_MS = "X-RateLimit-Throttled-Ms"

-- Kong's periods: config field, window kind, header suffix
local PERIODS = {
  { "second", "second", "Second" },
  { "minute", "minute", "Minute" },
  { "hour", "hour", "Hour" },
  { "day", "day", "Day" },
  { "month", "month", "Month" },
  { "year", "year", "Year" },
}

-- header suffix of a window_size that is one of Kong's period lengths
-- (Kong's Rate Limiting Advanced names them the same way)
local HUMAN = {
  [1] = "Second", [60] = "Minute", [3600] = "Hour", [86400] = "Day",
  [2592000] = "Month", [31536000] = "Year",
}

local ALGORITHMS = {
  ["fixed-window"] = "fixed",
  ["sliding-window"] = "sliding",
  gcra = "gcra",
}


-- the workers' bounded caches of strings made from client ids
local BASES_MAX = 1024 -- client id -> counters' key prefix, per plan
local KEYS_MAX = 1024 -- prefix -> counter key, per limiter and window

local RateLimitingHandler = {
  PRIORITY = 910,
  VERSION = "3.10.0",
}


-- headers ------------------------------------------------------------------

local set_header = kong.response.set_header


-- X-RateLimit-* of limiter i; returns the index of the tightest limiter
-- so far (the fewest requests left; on a tie, the longest window), as Kong.
local function put_limiter(plan, i, best)
  local lim = plan.lims[i]
  local rem = plan.rem
  local r = rem[i]
  set_header(lim.h_limit, lim.limit_s)
  set_header(lim.h_remaining, r) -- a number: see set_client_headers
  if not best or r < rem[best] or
     (r == rem[best] and lim.size > plan.lims[best].size) then
    return i
  end
  return best
end


-- X-RateLimit-* per limiter and the RateLimit-* of the tightest one. The
-- first limiter is outside the loop: a plan of one limiter runs no loop
-- (see policies.lua). The counts go to set_header as numbers (the PDK has
-- the runtime write integers: no string per request); the reset's string
-- is made once per second.
local function set_each_header(plan)
  local best = put_limiter(plan, 1, nil)
  for i = 2, plan.n do
    best = put_limiter(plan, i, best)
  end
  local lim = plan.lims[best]
  local seconds = ceil(plan.reset[best])
  if seconds < 1 then
    seconds = 1
  end
  if lim.reset_n ~= seconds then
    lim.reset_n = seconds
    lim.reset_s = tostring(seconds)
  end
  set_header(RATELIMIT_LIMIT, lim.limit_s)
  set_header(RATELIMIT_REMAINING, plan.rem[best])
  set_header(RATELIMIT_RESET, lim.reset_s)
end


-- The same headers in one PDK call (kong.response.set_prepared_headers)
-- when the plan has prepared them (prepare_client_headers): the counts of
-- limiters 1..n and the reset's seconds are its slots.
local set_prepared = kong.response.set_prepared_headers

local function set_client_headers(plan)
  local prepared = plan.prepared
  if not prepared then
    return set_each_header(plan)
  end
  local rem, lims = plan.rem, plan.lims
  local best = 1
  for i = 2, plan.n do
    local r = rem[i]
    if r < rem[best] or (r == rem[best] and lims[i].size > lims[best].size)
    then
      best = i
    end
  end
  local seconds = ceil(plan.reset[best])
  if seconds < 1 then
    seconds = 1
  end
  local n = plan.n
  if n == 1 then
    set_prepared(prepared[1], rem[1], seconds)
  elseif n == 2 then
    set_prepared(prepared[best], rem[1], rem[2], seconds)
  else
    set_prepared(prepared[best], rem[1], rem[2], rem[3], seconds)
  end
end


-- The headers of set_each_header prepared once per tightest limiter
-- (kong.response.prepare_headers), for plans of up to 3 limiters (the
-- PDK's 4 slots: the counts and the reset); nil otherwise.
local function prepare_client_headers(plan)
  local n = plan.n
  if n < 1 or n > 3 then
    return nil
  end
  local prepared = {}
  for best = 1, n do
    local list = {}
    for i = 1, n do
      local lim = plan.lims[i]
      list[#list + 1] = { lim.h_limit, lim.limit_s }
      list[#list + 1] = { lim.h_remaining, { slot = i } }
    end
    list[#list + 1] = { RATELIMIT_LIMIT, plan.lims[best].limit_s }
    list[#list + 1] = { RATELIMIT_REMAINING, { slot = best } }
    list[#list + 1] = { RATELIMIT_RESET, { slot = n + 1 } }
    prepared[best] = kong.response.prepare_headers(list)
    if not prepared[best] then
      return nil
    end
  end
  return prepared
end


-- plans: what a config needs per request, built once per config table --

local plans = setmetatable({}, { __mode = "k" })


local function new_limiter(conf, period, kind, size, limit, suffix)
  local leff = ceil(limit)
  local t_us = floor(size * 1e6 / limit + 0.5)
  if t_us < 1 then
    t_us = 1
  end
  local tau_us = (conf.burst or leff) * t_us
  local num_s = policies.num_s
  return {
    period = period,          -- name in the counter keys
    kind = kind,              -- "month", "year", or a window of `size`
    size = size,              -- nominal length (s)
    limit = limit,            -- as configured
    limit_s = tostring(limit), -- as sent in headers
    leff = leff,              -- requests admitted per window
    leff_s = num_s(leff),     -- the same, as the Redis script gets it
    h_limit = "X-RateLimit-Limit-" .. suffix,
    h_remaining = "X-RateLimit-Remaining-" .. suffix,
    sfx_gcra = ":gcra:" .. period,
    t_us = t_us,              -- gcra: emission interval (µs)
    tau_us = tau_us,          -- gcra: burst tolerance (µs)
    t_us_s = num_s(t_us), tau_us_s = num_s(tau_us), -- as the script gets them
    -- the current window, refreshed when time leaves it
    w_start = 0, w_end = -1, w_len = 1, next_len = 1, weight = 0,
    sfx = nil, sfx_prev = nil,
    keys = recent.new(KEYS_MAX), -- base -> key in the current window (policies)
    reset_n = nil, reset_s = nil, -- the last RateLimit-Reset, as a string
  }
end


local function by_size(a, b)
  return a.size < b.size
end


local function build_plan(conf)
  local lims = {}
  for _, p in ipairs(PERIODS) do
    local limit = conf[p[1]]
    if type(limit) == "number" then
      lims[#lims + 1] = new_limiter(conf, p[1], p[2], windows.SIZES[p[1]],
                                    limit, p[3])
    end
  end
  if type(conf.limit) == "number" and type(conf.window_size) == "number" then
    local ws = conf.window_size
    lims[#lims + 1] = new_limiter(conf, tostring(ws), "window", ws,
                                  conf.limit, HUMAN[ws] or tostring(ws))
  end
  sort(lims, by_size)

  local route_id = conf.route_id
  if type(route_id) ~= "string" then
    route_id = EMPTY_UUID
  end
  local service_id = conf.service_id
  if type(service_id) ~= "string" then
    service_id = EMPTY_UUID
  end

  local throttle = conf.throttle
  if type(throttle) ~= "table" then
    throttle = nil
  end

  local plan = {
    n = #lims,
    lims = lims,
    alg = ALGORITHMS[conf.algorithm] or "fixed",
    prefix = "ratelimit:" .. route_id .. ":" .. service_id .. ":",
    red = nil, -- policy redis: the client (policies.redis_plan)
    throttle = throttle,
    max_wait = throttle and throttle.max_wait_ms / 1000,
    max_queue = throttle and throttle.max_queue,
    -- scratch arrays, filled by policies.acquire and read before any yield
    keys = {}, used = {}, prev = {}, rem = {}, reset = {}, wait = 0,
    bases = recent.new(BASES_MAX), -- client id -> prefix .. id (base_of)
  }
  if conf.policy == "redis" then
    policies.redis_plan(plan, conf)
  end
  if not conf.hide_client_headers then
    plan.prepared = prepare_client_headers(plan)
  end
  plans[conf] = plan
  return plan
end


-- the client ---------------------------------------------------------------

local function get_identifier(conf)
  local by = conf.limit_by
  local id
  if by == "consumer" then
    local entity = kong.client.get_consumer() or kong.client.get_credential()
    id = entity and entity.id
  elseif by == "credential" then
    local cred = kong.client.get_credential()
    id = cred and cred.id
  elseif by == "service" then
    local service = kong.router.get_service()
    id = service and service.id
  elseif by == "header" then
    id = kong.request.get_header(conf.header_name)
  elseif by == "path" then
    local path = kong.request.get_path()
    if path == conf.path then
      id = path
    end
  end
  if type(id) ~= "string" or id == "" then
    id = kong.client.get_forwarded_ip()
  end
  if #id > MAX_ID_LEN then
    id = md5(id)
  end
  return id
end


-- The counters' key prefix of client id: made once per client (the
-- BASES_MAX clients seen last), not on every request.
local function base_of(plan, id)
  return plan.bases:concat(id, plan.prefix, id)
end


-- throttling ---------------------------------------------------------------

-- Holds a refused request until it fits (sleeping yields: the worker goes
-- on serving), within max_wait and max_queue. Returns allowed (or nil,
-- err when the store failed), the time waited (s), the queue depth seen.
local function throttle_loop(plan, base, d, qkey)
  local waited = 0
  local depth
  local started = ngx_now()
  while true do
    local wait = plan.wait
    if waited + wait > plan.max_wait then
      return false, nil, waited, depth
    end
    if not depth then
      -- counted once per request, before its first sleep; the counter
      -- lives max_wait (+1 s) so that waiters lost with their connection
      -- (client gone) do not count forever
      local n, err = d:incr(qkey, 1, 0, plan.max_wait + 1)
      if not n then
        return nil, "could not count waiters: " .. tostring(err)
      end
      depth = n
      if n > plan.max_queue then
        return false, nil, waited, depth
      end
    end
    -- 1 ms more: wake up inside the next window, not at its edge
    ngx.sleep(wait + 0.001)
    local now = ngx_now()
    waited = now - started
    prepare(plan, now)
    local allowed, err = acquire(plan, base, now)
    if allowed == nil then
      return nil, err, waited, depth
    end
    if allowed then
      return true, nil, waited, depth
    end
  end
end


local function throttle(plan, base)
  local d, err = policies.dict()
  if not d then
    return nil, err
  end
  local qkey = base .. ":waiting"
  local ok, allowed, terr, waited, depth = pcall(throttle_loop, plan, base, d,
                                                 qkey)
  if depth then
    local n = d:incr(qkey, -1)
    if n and n < 0 then
      d:incr(qkey, 1) -- the counter expired under us: keep it at 0
    end
  end
  if not ok then
    error(allowed, 0)
  end
  return allowed, terr, waited, depth
end


local function store_failed(conf, err)
  if conf.fault_tolerant then
    kong.log.err("failed to get usage: ", tostring(err))
    return
  end
  kong.log.err(err)
  return kong.response.error(500, ERR_500)
end


-- the phase ------------------------------------------------------------------

function RateLimitingHandler:access(conf)
  local plan = plans[conf] or build_plan(conf)
  local base = base_of(plan, get_identifier(conf))
  local now = ngx_now()
  prepare(plan, now)

  local allowed, err = acquire(plan, base, now)
  if allowed == nil then
    return store_failed(conf, err)
  end

  local waited
  if not allowed and plan.throttle then
    local depth
    allowed, err, waited, depth = throttle(plan, base)
    if waited then
      local ms = floor(waited * 1000 + 0.5)
      kong.log.set_serialize_value("ratelimit_wait_ms", ms)
      kong.log.set_serialize_value("ratelimit_queue_depth", depth)
      if ms > 0 then
        kong.service.request.set_header(THROTTLED_MS, ms)
        if not conf.hide_client_headers then
          set_header(THROTTLED_MS, ms)
        end
      end
    end
    if allowed == nil then
      return store_failed(conf, err)
    end
  end

  if not conf.hide_client_headers then
    set_client_headers(plan)
    if not allowed then
      local seconds = ceil(plan.wait)
      if seconds < 1 then
        seconds = 1
      end
      set_header(RETRY_AFTER, seconds)
    end
  end

  if not allowed then
    return kong.response.error(conf.error_code, conf.error_message)
  end
end


return RateLimitingHandler
