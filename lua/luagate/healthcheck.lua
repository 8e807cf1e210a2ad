-- Active health checks (Kong's healthchecks.active): worker 0 probes every
-- target of the upstreams that have an interval, on a timer, and writes what
-- it finds into the health table the C balancer of every worker reads
-- (gw_ffi_health_set). Passive checks and self-readmission are in C
-- (runtime/src/balancer.c).
--
-- A target becomes unhealthy after `unhealthy.http_failures` probes with an
-- unhealthy status, `tcp_failures` connection failures or `timeouts`
-- timeouts in a row (0 disables that counter), and healthy again after
-- `healthy.successes` good probes. Probes of healthy targets run every
-- `healthy.interval` seconds, of unhealthy ones every `unhealthy.interval`.

local lffi = require "luagate.ffi"
local timers = require "luagate.timers"

local C = lffi.C
local ipairs = ipairs
local tostring = tostring
local tonumber = tonumber
local pcall = pcall
local fmt = string.format

local _M = {}

local generation = 0 -- a reload starts a new generation; older loops stop


local function set(key, unhealthy)
  C.gw_ffi_health_set(key, unhealthy and 1 or 0)
end


local function in_list(list, v)
  for _, x in ipairs(list or {}) do
    if x == v then
      return true
    end
  end
  return false
end


-- One probe: "ok", "http" (unhealthy status), "tcp" or "timeout".
local function probe(active, target)
  if active.type == "tcp" then
    local sock = require("luagate.socket").tcp()
    sock:settimeout(active.timeout * 1000)
    local host, port = target:match("^%[?([^%]]+)%]?:(%d+)$")
    local ok, err = sock:connect(host, tonumber(port))
    sock:close()
    if ok then
      return "ok"
    end
    return err == "timeout" and "timeout" or "tcp"
  end
  local http = require "luagate.http"
  local scheme = active.type == "https" and "https" or "http"
  local res, err = http.request(fmt("%s://%s%s", scheme, target, active.http_path),
                                { timeout = active.timeout * 1000,
                                  headers = { ["User-Agent"] = "luagate-healthcheck" },
                                  keepalive = false,
                                  -- Kong's https_verify_certificate, https_sni
                                  ssl_verify =
                                    active.https_verify_certificate ~= false,
                                  ssl_server_name = active.https_sni })
  if not res then
    return err == "timeout" and "timeout" or "tcp"
  end
  if in_list(active.unhealthy.http_statuses, res.status) then
    return "http", res.status
  end
  if in_list(active.healthy.http_statuses, res.status) then
    return "ok", res.status
  end
  return "other", res.status
end


local function check_target(up, state, t)
  local active = up.healthchecks.active
  local key = up.name .. "/" .. t.target
  local st = state[key]
  if not st then
    st = { http = 0, tcp = 0, timeout = 0, ok = 0, unhealthy = false }
    state[key] = st
  end
  local outcome = probe(active, t.target)
  local u = active.unhealthy
  if outcome == "ok" then
    st.http, st.tcp, st.timeout = 0, 0, 0
    st.ok = st.ok + 1
    local need = active.healthy.successes
    if st.unhealthy and need > 0 and st.ok >= need then
      st.unhealthy = false
      set(key, false)
    end
    return
  end
  if outcome == "other" then
    return
  end
  st.ok = 0
  st[outcome] = st[outcome] + 1
  local limit = outcome == "http" and u.http_failures
                or outcome == "tcp" and u.tcp_failures
                or u.timeouts
  if not st.unhealthy and limit > 0 and st[outcome] >= limit then
    st.unhealthy = true
    set(key, true)
  end
end


local function loop(premature, gen, up, state)
  if premature or gen ~= generation then
    return
  end
  local active = up.healthchecks.active
  local any_unhealthy = false
  for _, t in ipairs(up.targets or {}) do
    if t.weight > 0 then
      local ok, err = pcall(check_target, up, state, t)
      if not ok then
        local msg = "health check of " .. t.target .. " failed: " .. tostring(err)
        C.gw_ffi_log(lffi.LOG_ERR, msg, #msg)
      end
      local st = state[up.name .. "/" .. t.target]
      if st and st.unhealthy then
        any_unhealthy = true
      end
    end
  end
  local interval = any_unhealthy and active.unhealthy.interval > 0
                   and active.unhealthy.interval or active.healthy.interval
  if interval <= 0 then
    interval = active.unhealthy.interval
  end
  if interval > 0 then
    timers.at(interval, loop, gen, up, state)
  end
end


-- Called at every configuration load in a worker: worker 0 (re)starts the
-- probes of the new configuration.
function _M.start(conf)
  generation = generation + 1
  if C.gw_ffi_worker_id() ~= 0 then
    return
  end
  for _, up in ipairs(conf.upstreams or {}) do
    local hc = up.healthchecks and up.healthchecks.active
    if hc and (hc.healthy.interval > 0 or hc.unhealthy.interval > 0) then
      timers.at(0, loop, generation, up, {})
    end
  end
end


return _M
