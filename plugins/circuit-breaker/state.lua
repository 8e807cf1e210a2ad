-- circuit-breaker: the breakers' state, in a shared dictionary (all the
-- workers of a node see the same breakers).
--
--   local state = require "kong.plugins.circuit-breaker.state"
--   state.get_all()   -> array of breakers of the running configuration:
--     { key, scope = "service" | "route", name,
--       service = { id, name }, route = { id, name } (scope route),
--       state = "closed" | "open" | "half_open", generation,
--       since (epoch seconds of the last transition, nil before any),
--       retry_at (open: when probes start), reason (of the last
--       transition), consecutive_failures, window = { requests, failures,
--       ratio } (ratio mode; the current and previous windows weighted),
--       probes_in_flight (half-open), plugin_id, config = { ... } }
--
-- Keys, for a breaker K = "circuit-breaker:<scope>:<entity id>":
--   K            gen * 4 + state (absent = closed, generation 0); the one
--                value the access phase reads while closed
--   K:at         time of the last transition (seconds, float)
--   K:why        reason of the last transition
--   K:f          consecutive failures (consecutive mode)
--   K:w<i>:n/:e  requests / failures of ratio window i (floor(now/window))
--   K:p<gen>     probes in flight while half-open at generation gen
--   K:t<v>       transition token: the one worker that adds it moves the
--                breaker away from value v
-- A transition is taken by adding its token, then re-reading the value
-- (a token outlives nothing but the race it settles), so two workers never
-- both move the same breaker, and a stale observer never moves it back.

local cjson = require "cjson.safe"

local kong = kong
local ngx = ngx
local type = type
local ipairs = ipairs
local tostring = tostring
local setmetatable = setmetatable
local floor = math.floor

local CLOSED, OPEN, HALF_OPEN = 0, 1, 2
local NAMES = { [CLOSED] = "closed", [OPEN] = "open",
                [HALF_OPEN] = "half_open" }
local TOKEN_TTL = 10   -- s; covers the race between add and set
local PROBE_TTL = 60   -- s; a probe that never reports frees its slot
local PREFIX = "circuit-breaker:"

local _M = {
  CLOSED = CLOSED,
  OPEN = OPEN,
  HALF_OPEN = HALF_OPEN,
  NAMES = NAMES,
  PROBE_TTL = PROBE_TTL,
}


-- breaker descriptors, one per (scope, entity table) of a config
-- generation; they also cache the current ratio window's key names
local by_service = setmetatable({}, { __mode = "k" })
local by_route = setmetatable({}, { __mode = "k" })


-- The descriptor of the breaker of entity (a service or route table of
-- the running config) for scope.
function _M.breaker(scope, entity)
  local cache = scope == "route" and by_route or by_service
  local b = cache[entity]
  if b then
    return b
  end
  local key = PREFIX .. scope .. ":" .. tostring(entity.id)
  b = {
    key = key,
    scope = scope,
    name = scope .. " '" .. tostring(entity.name or entity.id) .. "'",
    entity = entity,
    at = key .. ":at",
    why = key .. ":why",
    f = key .. ":f",
    w = key .. ":w",
    p = key .. ":p",
    t = key .. ":t",
    -- ratio window cache: index and key names of the current and
    -- previous windows
    widx = nil, wn = nil, we = nil, pwn = nil, pwe = nil,
  }
  cache[entity] = b
  return b
end


-- Points b's window keys at window idx.
function _M.window(b, idx)
  if b.widx ~= idx then
    local w = b.w
    b.widx = idx
    b.wn = w .. idx .. ":n"
    b.we = w .. idx .. ":e"
    b.pwn = w .. (idx - 1) .. ":n"
    b.pwe = w .. (idx - 1) .. ":e"
  end
end


-- Moves breaker b from value from_v to state `to` (generation + 1);
-- true when this call made the move. Logs the transition.
function _M.transition(dict, b, from_v, to, now, reason)
  local ok = dict:add(b.t .. from_v, true, TOKEN_TTL)
  if not ok then
    return false
  end
  if (dict:get(b.key) or 0) ~= from_v then
    return false
  end
  local gen = floor(from_v / 4) + 1
  dict:set(b.at, now)
  dict:set(b.why, reason)
  if to ~= HALF_OPEN then
    dict:delete(b.f)
  end
  if to == CLOSED and b.widx then
    -- a closed circuit starts counting afresh
    dict:delete(b.wn)
    dict:delete(b.we)
    dict:delete(b.pwn)
    dict:delete(b.pwe)
  end
  dict:set(b.key, gen * 4 + to)
  kong.log.notice("circuit breaker ", b.name, ": ", NAMES[from_v % 4],
                  " -> ", NAMES[to], " (", reason, ")")
  return true
end


-- failures and requests of the sliding window at now (the previous window
-- weighted by how much of it the sliding window still covers)
function _M.window_counts(dict, b, window, now)
  local idx = floor(now / window)
  _M.window(b, idx)
  local weight = 1 - (now - idx * window) / window
  local n = (dict:get(b.wn) or 0) + (dict:get(b.pwn) or 0) * weight
  local e = (dict:get(b.we) or 0) + (dict:get(b.pwe) or 0) * weight
  return n, e
end


-- report ---------------------------------------------------------------------

local function entity_ref(e)
  if not e then
    return nil
  end
  return { id = e.id, name = e.name }
end


local function describe(dict, b, p, conf, now)
  local v = dict:get(b.key) or 0
  local st = v % 4
  local gen = floor(v / 4)
  local c = p.config
  local info = {
    key = b.key,
    scope = b.scope,
    name = b.name,
    state = NAMES[st],
    generation = gen,
    since = dict:get(b.at),
    reason = dict:get(b.why),
    plugin_id = p.id,
    config = {
      failure_threshold = c.failure_threshold,
      error_ratio = c.error_ratio,
      min_requests = c.min_requests,
      window_s = c.window_s,
      open_timeout_s = c.open_timeout_s,
      half_open_requests = c.half_open_requests,
    },
  }
  if b.scope == "route" then
    info.route = entity_ref(b.entity)
    local si = b.entity.service
    info.service = entity_ref(type(si) == "number" and conf.services[si] or
                              nil)
  else
    info.service = entity_ref(b.entity)
  end
  if st == OPEN and info.since then
    info.retry_at = info.since + c.open_timeout_s
  elseif st == HALF_OPEN then
    info.probes_in_flight = dict:get(b.p .. gen) or 0
  end
  if c.error_ratio then
    local n, e = _M.window_counts(dict, b, c.window_s, now)
    info.window = { requests = n, failures = e,
                    ratio = n > 0 and e / n or 0 }
  else
    info.consecutive_failures = dict:get(b.f) or 0
  end
  return info
end


-- The services or routes a circuit-breaker instance covers.
local function covered(conf, p)
  local scope = p.config.scope
  local list = {}
  local routes, services = conf.routes or {}, conf.services or {}
  if p.route then
    local r = routes[p.route]
    if scope == "route" then
      list[1] = r
    elseif r and r.service then
      list[1] = services[r.service]
    end
  elseif p.service then
    if scope == "service" then
      list[1] = services[p.service]
    else
      for _, r in ipairs(routes) do
        if r.service == p.service then
          list[#list + 1] = r
        end
      end
    end
  elseif scope == "service" then
    for _, s in ipairs(services) do
      list[#list + 1] = s
    end
  else
    for _, r in ipairs(routes) do
      if r.service then
        list[#list + 1] = r
      end
    end
  end
  return list
end


function _M.get_all()
  local conf = require("luagate.db").current()
  local out, seen = {}, {}
  local now = ngx.now()
  for _, p in ipairs(conf and conf.plugins or {}) do
    if p.name == "circuit-breaker" and p.enabled ~= false then
      local dict = ngx.shared[p.config.dictionary_name]
      if dict then
        for _, e in ipairs(covered(conf, p)) do
          local b = _M.breaker(p.config.scope, e)
          if not seen[b.key] then
            seen[b.key] = true
            out[#out + 1] = describe(dict, b, p, conf, now)
          end
        end
      end
    end
  end
  return out
end


-- get_all() as JSON (for an admin endpoint or a log line).
function _M.get_all_json()
  return cjson.encode(_M.get_all())
end


return _M
