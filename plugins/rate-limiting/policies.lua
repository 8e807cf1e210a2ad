-- Counters of rate-limiting: where they live (policy local: the shared
-- dictionary kong_rate_limiting_counters; policy redis: Redis, one round
-- trip per request) and how a request is counted (fixed-window,
-- sliding-window, gcra).
--
-- Every acquire(plan, base, now) counts the request against all of the
-- plan's limiters at once, or against none of them: a refused request is
-- not counted (as in Kong). It returns true (allowed), false (refused) or
-- nil, err (the store failed), and leaves in the plan's scratch arrays,
-- for the caller to read before it yields again:
--   plan.rem[i]    requests left in limiter i (after this one if allowed)
--   plan.reset[i]  seconds until limiter i resets (fixed, sliding: the end
--                  of the current window; gcra: until its burst is whole)
--   plan.wait      when refused, seconds until the request could pass
--                  (assuming no other traffic)

local redis = require "luagate.redis"
local request = require "luagate.request"
local windows = require "kong.plugins.rate-limiting.windows"

local ngx = ngx
local type = type
local pairs = pairs
local pcall = pcall
local unpack = unpack
local tonumber = tonumber
local tostring = tostring
local floor = math.floor
local ceil = math.ceil
local find = string.find
local fmt = string.format
local sha1_bin = ngx.sha1_bin
local bounds = windows.bounds

local DICT = "kong_rate_limiting_counters"

local LOCK_TTL = 0.1       -- seconds a gcra lock lives at most
local LOCK_SPINS = 200     -- tries before sleeping (another worker holds it)
local LOCK_TIMEOUT = 0.5   -- seconds before giving up

local _M = { DICT = DICT }


-- windows -----------------------------------------------------------------

-- Loops over the limiters: the first one is handled before each loop, so
-- that a plan of one limiter (the usual config) runs no loop at all. The
-- JIT blacklists a loop that is left after one iteration on every request,
-- and then aborts every trace that reaches it: the whole acquire would run
-- in the interpreter.

-- Moves limiter lim's window to the one holding `now` (when it is
-- elsewhere) and sets the sliding weight: the share of the previous window
-- still inside the sliding window. Limiters are shared by the requests of
-- the worker: a request that waited (Redis) prepares again for its own
-- `now` before reading them.
local function prepare_one(lim, now)
  if now >= lim.w_end or now < lim.w_start then
    local kind, size = lim.kind, lim.size
    local s, e = bounds(kind, size, now)
    local ps = bounds(kind, size, s - 1)
    local ns, ne = bounds(kind, size, e)
    lim.w_start, lim.w_end, lim.w_len = s, e, e - s
    lim.next_len = ne - ns
    -- Kong's key: ratelimit:<route>:<service>:<id>:<start ms>:<period>
    lim.sfx = ":" .. (s * 1000) .. ":" .. lim.period
    lim.sfx_prev = ":" .. (ps * 1000) .. ":" .. lim.period
    -- the keys of the window that ended
    lim.keys:clear()
  end
  lim.weight = (lim.w_end - now) / lim.w_len
end


-- The counter key of `base` (the plan's prefix and the client's id) in
-- limiter lim's current window: built once per client and window (the
-- clients seen last, luagate.recent), not on every request.
local function window_key(lim, base)
  return lim.keys:concat(base, base, lim.sfx)
end
_M.window_key = window_key


local function prepare(plan, now)
  local lims, n = plan.lims, plan.n
  if n == 0 then
    return
  end
  prepare_one(lims[1], now)
  for i = 2, n do
    prepare_one(lims[i], now)
  end
end
_M.prepare = prepare


-- evaluation --------------------------------------------------------------

-- fixed-window: plan.used[i] = requests counted in the window before this
-- one.
local function fixed_over(plan, i)
  return plan.used[i] + 1 > plan.lims[i].leff
end


-- rem[i] and reset[i] of limiter i; returns the wait so far, raised to
-- this limiter's when it refuses
local function fixed_fill(plan, i, now, allowed, wait)
  local lim = plan.lims[i]
  local u = plan.used[i]
  local left = lim.w_end - now
  plan.reset[i] = left
  if allowed then
    plan.rem[i] = lim.leff - u - 1
  elseif u + 1 > lim.leff then
    plan.rem[i] = 0
    if left > wait then
      wait = left
    end
  else
    plan.rem[i] = lim.leff - u
  end
  return wait
end


local function fixed_eval(plan, now, decided)
  local n = plan.n
  local allowed = n == 0 or not fixed_over(plan, 1)
  for i = 2, n do
    if fixed_over(plan, i) then
      allowed = false
    end
  end
  if decided ~= nil then
    allowed = decided -- the store's decision (Redis script)
  end
  local wait = 0
  if n > 0 then
    wait = fixed_fill(plan, 1, now, allowed, wait)
    for i = 2, n do
      wait = fixed_fill(plan, i, now, allowed, wait)
    end
  end
  plan.wait = wait
  return allowed
end


-- sliding-window: plan.used[i] = requests of the current window before
-- this one, plan.prev[i] = requests of the previous window; the previous
-- window weighs the part of it still inside the sliding window.
local function sliding_eval(plan, now, decided)
  local lims, used, prev = plan.lims, plan.used, plan.prev
  local rem, reset = plan.rem, plan.reset
  local n = plan.n
  local allowed = true
  for i = 1, n do
    local lim = lims[i]
    local est = prev[i] * lim.weight + used[i]
    if est + 1 > lim.leff then
      allowed = false
    end
  end
  if decided ~= nil then
    allowed = decided
  end
  local wait = 0
  for i = 1, n do
    local lim = lims[i]
    local c, p, leff = used[i], prev[i], lim.leff
    local est = p * lim.weight + c
    reset[i] = lim.w_end - now
    if allowed then
      rem[i] = floor(leff - est - 1)
    elseif est + 1 > leff then
      rem[i] = 0
      -- when would est + 1 <= leff, with no other request meanwhile?
      local room = leff - 1 - c
      local t
      if room >= 0 and p > 0 then
        -- later in this window, as the previous one weighs less
        t = lim.w_end - lim.w_len * room / p
      else
        -- in the next window, where this one is the previous
        t = lim.w_end + lim.next_len * (1 - (leff - 1) / c)
      end
      if t - now > wait then
        wait = t - now
      end
    else
      rem[i] = floor(leff - est)
    end
    if rem[i] < 0 then
      rem[i] = 0
    end
  end
  plan.wait = wait
  return allowed
end


-- gcra: plan.used[i] = the theoretical arrival time of limiter i (in µs,
-- not before now_us); a request fits when it arrives at most tau - T
-- before it.
local function gcra_eval(plan, now_us, decided)
  local lims, used, rem, reset = plan.lims, plan.used, plan.rem, plan.reset
  local n = plan.n
  local allowed = true
  for i = 1, n do
    local lim = lims[i]
    if used[i] + lim.t_us - now_us > lim.tau_us then
      allowed = false
    end
  end
  if decided ~= nil then
    allowed = decided
  end
  local wait = 0
  for i = 1, n do
    local lim = lims[i]
    local tat = used[i]
    local t, tau = lim.t_us, lim.tau_us
    if allowed then
      rem[i] = floor((tau - (tat + t - now_us)) / t)
      reset[i] = (tat + t - now_us) / 1e6
    else
      reset[i] = (tat - now_us) / 1e6
      local w = tat + t - tau - now_us
      if w > 0 then
        rem[i] = 0
        if w / 1e6 > wait then
          wait = w / 1e6
        end
      else
        rem[i] = floor((tau - (tat - now_us)) / t)
      end
    end
    if rem[i] < 0 then
      rem[i] = 0
    end
  end
  plan.wait = wait
  return allowed
end


-- policy local ------------------------------------------------------------

local function dict()
  local d = ngx.shared[DICT]
  if not d then
    return nil, "missing shared dictionary '" .. DICT .. "'"
  end
  return d
end
_M.dict = dict


local function undo(d, keys, n)
  for i = 1, n do
    d:incr(keys[i], -1)
  end
end


-- Counts the request in limiter i: true when that makes it over its
-- limit, false when not, nil and an error when the dictionary failed (the
-- limiters before i are undone then).
local function count_one(plan, d, i, base, now, sliding)
  local lim = plan.lims[i]
  local keys = plan.keys
  local key = window_key(lim, base)
  keys[i] = key
  local ttl = lim.w_end - now + 1
  if sliding then
    ttl = ttl + lim.next_len
  end
  local c, err = d:incr(key, 1, 0, ttl)
  if not c then
    undo(d, keys, i - 1)
    return nil, "could not count in '" .. DICT .. "': " .. tostring(err)
  end
  plan.used[i] = c - 1
  if sliding then
    local p = d:get(base .. lim.sfx_prev)
    p = tonumber(p) or 0
    plan.prev[i] = p
    return p * lim.weight + c > lim.leff
  end
  return c > lim.leff
end


local function local_counts(plan, base, now, sliding)
  local d, err = dict()
  if not d then
    return nil, err
  end
  local n = plan.n
  local over = false
  if n > 0 then
    over, err = count_one(plan, d, 1, base, now, sliding)
    if over == nil then
      return nil, err
    end
    for i = 2, n do
      local o
      o, err = count_one(plan, d, i, base, now, sliding)
      if o == nil then
        return nil, err
      end
      if o then
        over = true
      end
    end
  end
  if over then
    undo(d, plan.keys, n)
  end
  if sliding then
    return sliding_eval(plan, now)
  end
  return fixed_eval(plan, now)
end


-- A per-identifier lock between workers: the gcra state is read and
-- written under it (the dictionary has no compare-and-set). The holder
-- never yields while holding it, so a taken lock is free again within
-- microseconds, unless its worker died: then it expires.
local function lock(d, key)
  for _ = 1, LOCK_SPINS do
    if d:add(key, true, LOCK_TTL) then
      return true
    end
  end
  local deadline = ngx.now() + LOCK_TIMEOUT
  repeat
    ngx.sleep(0.001)
    if d:add(key, true, LOCK_TTL) then
      return true
    end
  until ngx.now() > deadline
  return nil, "could not lock " .. key
end


local function local_gcra(plan, base, now)
  local d, err = dict()
  if not d then
    return nil, err
  end
  local lock_key = base .. ":lock"
  local ok
  ok, err = lock(d, lock_key)
  if not ok then
    return nil, err
  end
  local now_us = floor(now * 1e6)
  local lims, keys, used = plan.lims, plan.keys, plan.used
  local n = plan.n
  for i = 1, n do
    local key = base .. lims[i].sfx_gcra
    keys[i] = key
    local tat = tonumber((d:get(key)))
    if not tat or tat < now_us then
      tat = now_us
    end
    used[i] = tat
  end
  local allowed = gcra_eval(plan, now_us)
  if allowed then
    for i = 1, n do
      local tat = used[i] + lims[i].t_us
      local okset, serr = d:set(keys[i], tat, (tat - now_us) / 1e6 + 1)
      if not okset then
        d:delete(lock_key)
        return nil, "could not store in '" .. DICT .. "': " .. tostring(serr)
      end
    end
  end
  d:delete(lock_key)
  return allowed
end


-- policy redis ------------------------------------------------------------

-- One script for the three algorithms. It counts k requests of one client
-- (a batch, below; k = 1 for a request sent on its own) in order: each in
-- every limiter or in none. It returns { allowed, values... }: the first
-- `allowed` of the k requests fit (0 <= allowed <= k) and are counted, the
-- others are refused and not counted; the values are the state before the
-- batch:
--   "f" fixed:   KEYS[i] counter; ARGV: leff, ttl per limiter;
--                values: the counts
--   "s" sliding: KEYS[2i-1] current, KEYS[2i] previous counter;
--                ARGV: leff, ttl, weight per limiter;
--                values: current and previous count, per limiter
--   "g" gcra:    KEYS[i] theoretical arrival time (µs); ARGV[4] now (µs),
--                then T, tau per limiter; values: max(tat, now)
-- ARGV[1..3]: the algorithm, the number of limiters, k. Request j of the
-- batch fits in a limiter when its j - 1 predecessors, counted, leave it
-- room: the largest such j is found from a division, then checked with the
-- same comparison a single request makes, so that k = 1 decides exactly
-- as one request would.
local SCRIPT = [[
local alg, n, room = ARGV[1], tonumber(ARGV[2]), tonumber(ARGV[3])
local out = { 0 }
local floor = math.floor
if alg == "f" then
  for i = 1, n do
    local c = tonumber(redis.call("GET", KEYS[i]) or "0")
    out[i + 1] = c
    local r = tonumber(ARGV[2 + 2 * i]) - c
    if r < room then room = r end
  end
  if room > 0 then
    for i = 1, n do
      if redis.call("INCRBY", KEYS[i], room) == room then
        redis.call("EXPIRE", KEYS[i], ARGV[3 + 2 * i])
      end
    end
  end
elseif alg == "s" then
  for i = 1, n do
    local c = tonumber(redis.call("GET", KEYS[2 * i - 1]) or "0")
    local p = tonumber(redis.call("GET", KEYS[2 * i]) or "0")
    out[2 * i] = c
    out[2 * i + 1] = p
    local est = p * tonumber(ARGV[3 + 3 * i]) + c
    local leff = tonumber(ARGV[1 + 3 * i])
    local r = floor(leff - est)
    if r > room then r = room end
    if r < 0 then r = 0 end
    while r > 0 and est + r > leff do r = r - 1 end
    while r < room and est + r + 1 <= leff do r = r + 1 end
    room = r
  end
  if room > 0 then
    for i = 1, n do
      if redis.call("INCRBY", KEYS[2 * i - 1], room) == room then
        redis.call("EXPIRE", KEYS[2 * i - 1], ARGV[2 + 3 * i])
      end
    end
  end
else
  local now = tonumber(ARGV[4])
  for i = 1, n do
    local tat = tonumber(redis.call("GET", KEYS[i]) or "0")
    if tat < now then tat = now end
    out[i + 1] = tat
    local t, tau = tonumber(ARGV[3 + 2 * i]), tonumber(ARGV[4 + 2 * i])
    local r = floor((tau + now - tat) / t)
    if r > room then r = room end
    if r < 0 then r = 0 end
    while r > 0 and tat + (r - 1) * t + t - now > tau do r = r - 1 end
    while r < room and tat + r * t + t - now <= tau do r = r + 1 end
    room = r
  end
  if room > 0 then
    for i = 1, n do
      local tat = out[i + 1] + room * tonumber(ARGV[3 + 2 * i])
      redis.call("SET", KEYS[i], string.format("%d", tat), "PX",
                 math.floor((tat - now) / 1000) + 1000)
    end
  end
end
if room < 0 then room = 0 end -- a count above a lowered limit
out[1] = room
return out
]]

local SCRIPT_SHA
do
  local bin = sha1_bin(SCRIPT)
  local hex = {}
  for i = 1, #bin do
    hex[i] = fmt("%02x", bin:byte(i))
  end
  SCRIPT_SHA = table.concat(hex)
end
_M.SCRIPT = SCRIPT
_M.SCRIPT_SHA = SCRIPT_SHA


local function redis_client(conf)
  local r = conf.redis or {}
  return redis.new({
    host = r.host,
    port = r.port,
    db = r.database,
    username = r.username,
    password = r.password,
    timeout = r.timeout,
  })
end


-- The script's command, EVALSHA sha nkeys KEYS... ARGV..., is an array of
-- strings kept by the plan and rewritten for each command (its length is
-- fixed by the plan): red:command_argv sends it as it is, and the runtime
-- copies it before the request waits, so the requests of a worker can
-- share it. Numbers are written as Redis reads them: integers with %d,
-- others with enough digits to round-trip.
local K = 3 -- cmd[K + i] is the script's KEYS[i]

local function num_s(v)
  if v % 1 == 0 and v < 9007199254740992 and v > -9007199254740992 then
    return fmt("%d", v)
  end
  return fmt("%.17g", v)
end
_M.num_s = num_s -- the handler writes its limiters' fixed numbers with it


-- A script command with what is fixed per plan; the other slots are
-- filled for each command by script_args.
local function new_cmd(plan)
  local alg = plan.alg
  local nkeys = alg == "sliding" and 2 * plan.n or plan.n
  local cmd = { "EVALSHA", SCRIPT_SHA, fmt("%d", nkeys) }
  cmd[K + nkeys + 1] = alg == "gcra" and "g" or alg == "sliding" and "s" or "f"
  cmd[K + nkeys + 2] = fmt("%d", plan.n)
  cmd[K + nkeys + 3] = "1"
  return cmd
end


-- lim.ttl_s: the string of a counter's TTL (seconds), v; kept while v
-- stays the same (it changes once a second)
local function ttl_s(lim, v)
  if lim.ttl_v ~= v then
    lim.ttl_v = v
    lim.ttl_s = fmt("%d", v)
  end
  return lim.ttl_s
end


-- The fixed-window script's arguments of limiter lim (the i-th of n).
local function fixed_args(cmd, n, lim, i, base, now)
  cmd[K + i] = window_key(lim, base)
  cmd[K + n + 2 + 2 * i] = lim.leff_s
  cmd[K + n + 3 + 2 * i] = ttl_s(lim, ceil(lim.w_end - now) + 1)
end


-- Fills cmd's per-command slots: the keys of client `base` and the
-- limiters' arguments at `now` (the plan prepared for it; gcra's clock is
-- floor(now * 1e6) µs), for k requests (k_s: k as a string).
local function script_args(plan, cmd, base, now, k_s)
  local lims, n, alg = plan.lims, plan.n, plan.alg
  if alg == "gcra" then
    cmd[K + n + 3] = k_s
    cmd[K + n + 4] = fmt("%d", floor(now * 1e6))
    for i = 1, n do
      local lim = lims[i]
      cmd[K + i] = base .. lim.sfx_gcra
      cmd[K + n + 3 + 2 * i] = lim.t_us_s
      cmd[K + n + 4 + 2 * i] = lim.tau_us_s
    end
    return
  end
  if alg == "sliding" then
    local nkeys = 2 * n
    cmd[K + nkeys + 3] = k_s
    for i = 1, n do
      local lim = lims[i]
      cmd[K + 2 * i - 1] = base .. lim.sfx
      cmd[K + 2 * i] = base .. lim.sfx_prev
      cmd[K + nkeys + 1 + 3 * i] = lim.leff_s
      cmd[K + nkeys + 2 + 3 * i] =
        ttl_s(lim, ceil(lim.w_end - now + lim.next_len) + 1)
      cmd[K + nkeys + 3 + 3 * i] = fmt("%.17g", lim.weight)
    end
    return
  end
  cmd[K + n + 3] = k_s
  fixed_args(cmd, n, lims[1], 1, base, now)
  for i = 2, n do
    fixed_args(cmd, n, lims[i], i, base, now)
  end
end


local function noscript(v)
  return type(v) == "table" and v[1] == false and type(v[2]) == "string" and
    find(v[2], "NOSCRIPT", 1, true) == 1
end


local function check_reply(res)
  if type(res) ~= "table" or type(res[1]) ~= "number" then
    if type(res) == "table" and res[1] == false then
      return nil, tostring(res[2])
    end
    return nil, "unexpected reply from the rate-limiting script"
  end
  return res
end


local function run_script(red, cmd)
  local ncmd = #cmd
  local res, err = red:command_argv(cmd, ncmd)
  if res == nil and err and find(err, "NOSCRIPT", 1, true) == 1 then
    -- a fresh (or restarted) Redis: EVAL caches the script there. The
    -- requests that send the plan's command meanwhile send EVAL too (the
    -- same script): harmless, and restored when this one is answered.
    cmd[1], cmd[2] = "EVAL", SCRIPT
    res, err = red:command_argv(cmd, ncmd)
    cmd[1], cmd[2] = "EVALSHA", SCRIPT_SHA
  end
  if res == nil then
    return nil, err
  end
  return check_reply(res)
end


-- Request j of a batch whose script answered res, sent at `now`: fills the
-- plan's scratch arrays as if it had been sent alone after the j - 1
-- before it, and returns allowed.
local function batch_eval(plan, res, j, now)
  local lims, used, prev = plan.lims, plan.used, plan.prev
  local n = plan.n
  local room = res[1]
  local fits = j <= room
  local before = fits and j - 1 or room -- counted before it
  local alg = plan.alg
  if alg == "gcra" then
    local now_us = floor(now * 1e6) -- the script's clock (script_args)
    for i = 1, n do
      used[i] = (tonumber(res[i + 1]) or now_us) + before * lims[i].t_us
    end
    return gcra_eval(plan, now_us, fits)
  end
  -- other requests may have moved the windows while this one waited
  prepare(plan, now)
  if alg == "sliding" then
    for i = 1, n do
      used[i] = (tonumber(res[2 * i]) or 0) + before
      prev[i] = tonumber(res[2 * i + 1]) or 0
    end
    return sliding_eval(plan, now, fits)
  end
  used[1] = (tonumber(res[2]) or 0) + before
  for i = 2, n do
    used[i] = (tonumber(res[i + 1]) or 0) + before
  end
  return fixed_eval(plan, now, fits)
end


-- Batches. A request sent on its own costs Redis a script run, and the
-- worker a write, a read and a wake-up. While a command of the plan is
-- under way (plan.busy_until: its deadline) or a flusher runs, a request
-- joins its client's open batch instead and parks; the plan's flusher, a
-- timer (so that no client's request holds the others' fate: a request's
-- coroutine can end at any time, its client gone), sends every open batch
-- as one script command per batch, in one pipeline, and wakes each member
-- with the batch's answer; it goes on while batches opened meanwhile, and
-- ends when none did. Under load a batch gathers what arrives during a
-- round trip: one script run and one exchange count them all, as exactly
-- as one by one (the script decides them in their order of arrival).
local BATCH_MAX = 256 -- requests per batch (a full one is closed)

-- One round: sends the batches list[1..m] at `now` and leaves each its
-- answer (b.res, or b.err).
local function round(plan, list, m, now)
  local red, cmds, k_s = plan.red, plan.cmds, plan.k_s
  prepare(plan, now)
  for i = 1, m do
    local b = list[i]
    local cmd = cmds[i]
    if not cmd then
      cmd = new_cmd(plan)
      cmds[i] = cmd
    end
    local k = #b.tickets
    local ks = k_s[k]
    if not ks then
      ks = fmt("%d", k)
      k_s[k] = ks
    end
    script_args(plan, cmd, b.base, now, ks)
  end
  local res, err = red:pipeline_argv(cmds, m)
  if res then
    -- a fresh (or restarted) Redis: EVAL caches the script there. Only
    -- the commands that met NOSCRIPT go again (the others were counted).
    local retry, at
    for i = 1, m do
      if noscript(res[i]) then
        retry, at = retry or {}, at or {}
        local n = #retry + 1
        retry[n] = { "EVAL", SCRIPT, unpack(cmds[i], 3) }
        at[n] = i
      end
    end
    if retry then
      local res2, err2 = red:pipeline_argv(retry, #retry)
      for n = 1, #retry do
        res[at[n]] = res2 and res2[n] or { false, err2 or "failed" }
      end
    end
  end
  for i = 1, m do
    local b = list[i]
    b.now = now
    if res then
      b.res, b.err = check_reply(res[i])
    else
      b.err = err or "failed"
    end
  end
end


local function flush(premature, plan)
  while true do
    local list = plan.order
    local m = #list
    if m == 0 then
      plan.flushing = false
      return
    end
    plan.order, plan.spare = plan.spare, list
    local open = plan.open
    for base in pairs(open) do
      open[base] = nil
    end
    local ok, err = pcall(round, plan, list, m, ngx.now())
    for i = 1, m do
      local b = list[i]
      if not ok then
        b.res, b.err = nil, "rate-limiting batch failed: " .. tostring(err)
      end
      local tickets = b.tickets
      for j = 1, #tickets do
        request.unpark(tickets[j])
      end
      list[i] = nil
    end
  end
end


-- Joins base's open batch and waits for its answer.
local function join(plan, base)
  local r = request.cur
  local b = plan.open[base]
  if not b then
    b = { base = base, tickets = {}, res = nil, err = nil, now = 0 }
    plan.open[base] = b
    plan.order[#plan.order + 1] = b
    if not plan.flushing then
      local ok, terr = ngx.timer.at(0, flush, plan)
      if not ok then
        plan.open[base] = nil
        plan.order[#plan.order] = nil
        return nil, "could not start the batch: " .. tostring(terr)
      end
      plan.flushing = true
    end
  end
  -- the flusher's exchange takes at most twice the timeout (a NOSCRIPT
  -- answer sends again); the flusher's own round before may take as long
  local ticket = request.park(r, plan.park_s)
  if not ticket then
    return nil, "could not wait for the batch"
  end
  local j = #b.tickets + 1
  b.tickets[j] = ticket
  if j >= BATCH_MAX then
    plan.open[base] = nil -- full: the next request opens another
  end
  request.await(r)
  local res = b.res
  if not res then
    return nil, b.err or "timeout"
  end
  return batch_eval(plan, res, j, b.now)
end


local function redis_acquire(plan, base, now)
  if plan.flushing or now < plan.busy_until then
    return join(plan, base)
  end
  plan.busy_until = now + plan.busy_s
  local cmd = plan.rcmd
  script_args(plan, cmd, base, now, "1")
  local res, err = run_script(plan.red, cmd)
  plan.busy_until = 0
  if not res then
    return nil, err
  end
  return batch_eval(plan, res, 1, now)
end


-- The plan's fields for the redis policy.
function _M.redis_plan(plan, conf)
  plan.red = redis_client(conf)
  plan.rcmd = new_cmd(plan)
  local timeout = plan.red.timeout / 1000
  plan.busy_s = timeout
  plan.busy_until = 0
  plan.park_s = 4 * timeout + 1
  plan.flushing = false
  plan.open = {}    -- base -> its open batch
  plan.order = {}   -- the open batches, in order
  plan.spare = {}   -- the flusher's other list
  plan.cmds = {}    -- the flusher's commands, reused
  plan.k_s = {}     -- k -> its string
end


-- entry point -------------------------------------------------------------

function _M.acquire(plan, base, now)
  if plan.red then
    return redis_acquire(plan, base, now)
  end
  local alg = plan.alg
  if alg == "gcra" then
    return local_gcra(plan, base, now)
  end
  return local_counts(plan, base, now, alg == "sliding")
end


-- exposed for unit specs
_M.fixed_eval = fixed_eval
_M.sliding_eval = sliding_eval
_M.gcra_eval = gcra_eval

return _M
