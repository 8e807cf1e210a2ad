-- The plugin runloop: loads handlers, builds each route's plugin plan at
-- config load, and runs the phases of a request in its coroutine.
--
-- Kong's contracts (docs/plugin-development.md): handlers run by PRIORITY,
-- highest first, ties by name descending, the same order in every phase;
-- one config per plugin and request, chosen by Kong's scope precedence
--   1 route+service+consumer  2 route+consumer  3 service+consumer
--   4 route+service  5 consumer  5b consumer group  6 route  7 service
--   8 global
-- (consumer groups rank between consumer and route, as Kong Enterprise's
-- do; a consumer in several groups takes the first group that has one)
-- lazily in access, so that a consumer-scoped config applies to plugins
-- that run after the authenticating one; the configs chosen in access are
-- the ones header_filter, body_filter and log use. rewrite runs global
-- plugins only; a request no route took runs the global plugins'
-- header_filter, body_filter and log.

local ffi = require "ffi"
local lffi = require "luagate.ffi"
local request = require "luagate.request"
local loader = require "luagate.plugins"

local C = lffi.C
local type = type
local next = next
local pairs = pairs
local rawget = rawget
local rawset = rawset
local setmetatable = setmetatable
local ipairs = ipairs
local tostring = tostring
local xpcall = xpcall
local traceback = debug.traceback
local yield = coroutine.yield
local running = coroutine.running
local sort = table.sort
local concat = table.concat
local cast = ffi.cast
local fill = ffi.fill
local fmt = string.format
local new_tab = require "table.new"
local clear_tab = require "table.clear"
local clone_tab = require "table.clone"
local bit = require "bit"
local slice_point = require("luagate.slice").point

local EXIT = request.EXIT
local YIELD_DONE = request.YIELD_DONE

-- thread_main's first argument: a phase bit, or one of these
local KIND_TIMER = 0
local KIND_EXITED = -1 -- finish the phase of request.exited (lua_req.c)

-- enum gw_phase (runtime/include/gw/config-t.h)
local PHASE_REWRITE = 1
local PHASE_ACCESS = 2
local PHASE_RESPONSE = 4
local PHASE_HEADER_FILTER = 8
local PHASE_BODY_FILTER = 16
local PHASE_LOG = 32

local PHASE_NAMES = {
  [PHASE_REWRITE] = "rewrite",
  [PHASE_ACCESS] = "access",
  [PHASE_RESPONSE] = "response",
  [PHASE_HEADER_FILTER] = "header_filter",
  [PHASE_BODY_FILTER] = "body_filter",
  [PHASE_LOG] = "log",
}

local PHASE_BITS = {
  rewrite = PHASE_REWRITE,
  access = PHASE_ACCESS,
  response = PHASE_RESPONSE,
  header_filter = PHASE_HEADER_FILTER,
  body_filter = PHASE_BODY_FILTER,
  log = PHASE_LOG,
}

local ERR_500 = "An unexpected error occurred"

local _M = {
  PHASE_NAMES = PHASE_NAMES,
}


local function phase_mask(handler)
  local m = 0
  for name, bit in pairs(PHASE_BITS) do
    if type(handler[name]) == "function" then
      m = m + bit
    end
  end
  return m
end


-- plan building ---------------------------------------------------------------

-- The conf table a handler gets: the validated config plus the scope ids
-- Kong injects. The same table serves every request of this generation.
local function instance_conf(conf, p)
  local c = p.config or {}
  c.route_id = p.route and conf.routes[p.route].id or nil
  c.service_id = p.service and conf.services[p.service].id or nil
  c.consumer_id = p.consumer and conf.consumers[p.consumer].id or nil
  c.__plugin_id = p.id
  c.plugin_instance_name = p.instance_name
  return c
end


-- Access and the phases after it: a plugin done with a request skips the
-- later ones (plugin_done); a phase guard leaves out access or log.
local SOLO_PHASES = { PHASE_ACCESS, PHASE_HEADER_FILTER, PHASE_BODY_FILTER,
                      PHASE_LOG }
local LATER_MASK = PHASE_HEADER_FILTER + PHASE_BODY_FILTER + PHASE_LOG

-- plan.solo[plugin name] = the phases of SOLO_PHASES in which that plugin
-- alone has a handler in plan (nil when it has none such): the later ones
-- are the phases the runtime may leave out for a request that plugin is
-- done with (plugin_done), access and log those its guards may leave out
-- (lone).
local function solo_masks(plan)
  local solo
  for k = 1, #SOLO_PHASES do
    local b = SOLO_PHASES[k]
    local owner, n = nil, 0
    for i = 1, #plan do
      local e = plan[i].entry
      if bit.band(e.mask, b) ~= 0 then
        owner, n = e.name, n + 1
      end
    end
    if n == 1 then
      solo = solo or {}
      solo[owner] = bit.bor(solo[owner] or 0, b)
    end
  end
  plan.solo = solo
end


local function by_priority(a, b)
  if a.priority ~= b.priority then
    return a.priority > b.priority
  end
  return a.name > b.name
end


-- Builds conf._plans[route index (1-based)], conf._global_plan and the
-- phase masks the C side reads (conf.routes[i].phases,
-- conf.global_phases). Returns true or nil, errors (array of strings).
function _M.build(conf, opts)
  local errs = {}
  local entries = {} -- plugin name -> entry
  for _, p in ipairs(conf.plugins or {}) do
    if p.enabled ~= false then
      local e = entries[p.name]
      if not e then
        local handler, err = loader.handler(p.name, opts)
        if not handler then
          errs[#errs + 1] = err
        else
          e = {
            name = p.name,
            handler = handler,
            priority = handler.PRIORITY or 0,
            mask = phase_mask(handler),
            global = nil, -- rank 8
            by_route = {}, by_service = {}, by_route_service = {},
            by_consumer = {}, by_route_consumer = {}, by_group = {},
            by_service_consumer = {}, by_route_service_consumer = {},
            consumer_scoped = false,
          }
          entries[p.name] = e
        end
      end
      if e then
        local c = instance_conf(conf, p)
        local r, s, k = p.route, p.service, p.consumer
        if p.consumer_group then
          e.consumer_scoped = true
          e.by_group[p.consumer_group] = c
        elseif k then
          e.consumer_scoped = true
          if r and s then
            e.by_route_service_consumer[r .. ":" .. s .. ":" .. k] = c
          elseif r then
            e.by_route_consumer[r .. ":" .. k] = c
          elseif s then
            e.by_service_consumer[s .. ":" .. k] = c
          else
            e.by_consumer[k] = c
          end
        elseif r and s then
          e.by_route_service[r .. ":" .. s] = c
        elseif r then
          e.by_route[r] = c
        elseif s then
          e.by_service[s] = c
        else
          e.global = c
        end
      end
    end
  end
  if #errs > 0 then
    return nil, errs
  end

  local list = {}
  for _, e in pairs(entries) do
    list[#list + 1] = e
  end
  sort(list, by_priority)

  -- global plan: plugins with a global instance
  local global_plan = {}
  local global_mask = 0
  for _, e in ipairs(list) do
    if e.global then
      global_plan[#global_plan + 1] = { entry = e, static = e.global }
      global_mask = bit.bor(global_mask, e.mask)
    end
  end

  -- A route's plan: the items of the plugins that run on it. Routes whose
  -- plugins have no consumer-scoped config and the same configs share one
  -- plan (items name their route only for consumer-scoped configs:
  -- select_conf), found by the configs' numbers (`key`).
  local plans, same_plan = {}, {}
  local shared = require("luagate.config").shared[conf]
  local masks = {} -- plan -> its plugins' phases
  local conf_no, nconfs = {}, 0
  local statics, rss, nos = {}, {}, {}
  local scoped = false
  for _, e in ipairs(list) do
    scoped = scoped or e.consumer_scoped
  end
  local with_rs = {} -- entries with route-and-service configs
  for k, e in ipairs(list) do
    with_rs[k] = next(e.by_route_service) ~= nil
  end
  for ri, route in ipairs(conf.routes or {}) do
    slice_point()
    local si = route.service
    for k, e in ipairs(list) do
      local rs = si and with_rs[k] and e.by_route_service[ri .. ":" .. si] or
                 nil
      statics[k] = rs or e.by_route[ri] or (si and e.by_service[si]) or
                   e.global
      rss[k] = rs
    end
    local plan, key
    if not scoped then
      for k = 1, #list do
        local c = statics[k]
        local no = c and conf_no[c]
        if c and not no then
          nconfs = nconfs + 1
          no = nconfs
          conf_no[c] = no
        end
        nos[k] = no or 0
      end
      key = concat(nos, ",", 1, #list)
      plan = same_plan[key]
    end
    if not plan then
      plan = {}
      local mask = 0
      for k, e in ipairs(list) do
        local static = statics[k]
        if static or e.consumer_scoped then
          plan[#plan + 1] = {
            entry = e, static = static, route_service = rss[k],
            route = scoped and ri or nil, service = scoped and si or nil,
          }
          mask = bit.bor(mask, e.mask)
          if e.consumer_scoped then
            plan.consumer_scoped = true
          end
        end
      end
      solo_masks(plan)
      -- the plugin that runs alone on the route's requests (answer memos)
      plan.alone = #plan == 1 and plan[1].entry.name or nil
      masks[plan] = mask
      if key then
        same_plan[key] = plan
      end
    end
    plans[ri] = plan
    -- rewrite runs global plugins only
    local phases = bit.bor(bit.band(masks[plan], bit.bnot(PHASE_REWRITE)),
                           bit.band(global_mask, PHASE_REWRITE))
    if route.phases ~= phases then
      if shared and shared[ri] then -- (the running config's too)
        route = clone_tab(route)
        conf.routes[ri] = route
      end
      route.phases = phases
    end
  end
  local cg = {}
  for i, k in ipairs(conf.consumers or {}) do
    if k.groups and #k.groups > 0 then
      cg[i] = k.groups
    end
  end
  conf._consumer_groups = cg
  solo_masks(global_plan)
  conf._plans = plans
  conf._global_plan = global_plan
  conf.global_phases = global_mask
  conf._handlers = entries
  return true
end


-- consumer index -> array of its group indexes, of the config being served
-- (set by select_conf's caller per request: the conf's table)
local consumers_groups

-- The config of item's plugin for this request, by scope precedence.
local function select_conf(item, consumer)
  local e = item.entry
  if consumer and e.consumer_scoped then
    local r, s = item.route, item.service
    local c = (r and s and
               e.by_route_service_consumer[r .. ":" .. s .. ":" .. consumer])
      or (r and e.by_route_consumer[r .. ":" .. consumer])
      or (s and e.by_service_consumer[s .. ":" .. consumer])
    if c then
      return c
    end
    if item.route_service then
      return item.route_service
    end
    c = e.by_consumer[consumer]
    if c then
      return c
    end
    local groups = consumers_groups and consumers_groups[consumer]
    if groups then
      for i = 1, #groups do
        c = e.by_group[groups[i]]
        if c then
          return c
        end
      end
    end
  end
  return item.static
end


-- running phases --------------------------------------------------------------

local function on_error(e)
  if e == EXIT then
    return e
  end
  return traceback(tostring(e), 2)
end


local function log_err(r, plugin, phase, err)
  local msg = fmt("[%s] %s handler failed (request %s): %s", plugin, phase,
                  r.id or "?", tostring(err))
  C.gw_ffi_log(lffi.LOG_ERR, msg, #msg)
end


local function fail_500(r)
  local body = fmt('{"message":"%s","request_id":"%s"}', ERR_500, r.id or "")
  C.gw_ffi_resp_reset_headers(r.ptr)
  local ct = "application/json; charset=utf-8"
  C.gw_ffi_resp_set_header(r.ptr, lffi.HDR_SET, "Content-Type", 12, ct, #ct,
                           lffi.err_p)
  C.gw_ffi_resp_exit(r.ptr, 500, body, #body, lffi.err_p)
  r.exited = true
end


-- Consumer index of the authenticated consumer (kong.client.authenticate
-- sets r.consumer to the consumer entity).
local function consumer_index(r)
  local c = r.consumer
  if not c then
    return nil
  end
  local conf = r.conf
  consumers_groups = conf._consumer_groups
  local by_id = conf._consumer_index
  if not by_id then -- id -> index, once per config
    by_id = {}
    for i, k in ipairs(conf.consumers or {}) do
      if k.id then
        by_id[k.id] = i
      end
    end
    conf._consumer_index = by_id
  end
  return c.id and by_id[c.id] or nil
end


local function call(r, name, fn, handler, conf, phase_name)
  r.plugin = name
  r.plugin_conf = conf
  local ok, err = xpcall(fn, on_error, handler, conf)
  r.plugin = nil
  r.plugin_conf = nil
  if ok then
    return true
  end
  if err == EXIT then
    r.exited = true
    return false
  end
  log_err(r, name, phase_name, err)
  return nil
end


-- The access handler of a plan's item: its config chosen (recorded in
-- selected when the plan has consumer-scoped configs), its handler run
-- unless the request has its response (r.exited).
local function access_item(r, item, selected)
  local conf = select_conf(item, selected and consumer_index(r))
  if conf then
    if selected then
      selected[#selected + 1] = item
      selected[item] = conf
    end
    local h = item.entry.handler
    local fn = h.access
    -- rawget: r's __index (lazy fields) has nothing to add for this one
    if fn and not rawget(r, "exited") then
      local ok = call(r, item.entry.name, fn, h, conf, "access")
      if ok == nil then
        fail_500(r)
      end
    end
  end
end


-- Runs the access handlers of plan from its item `from` (1, or the one
-- after the handler kong.response.exit stopped). The first four items are
-- run one by one, not in a loop. LuaJIT does not compile the yield at the
-- end of thread_main's loop: a trace ends there, and the code after it is
-- recorded at once as a new trace, which goes around the loop, through a
-- whole request, to the yield again, and so on, until one of them meets a
-- trace to link to: the root trace of thread_main's loop, which LuaJIT
-- gives up when it meets an inner loop, such as one over the plugins. On
-- some starts every request of the auth route recorded one more trace for
-- thousands of requests (40,000 to 60,000 instructions a request instead of
-- 21,000; docs/performance.md, "The auth route, third pass").
local function run_access(r, plan, from)
  -- the configs chosen here serve the later phases; a plan whose plugins
  -- have no consumer-scoped config chooses the same ones every time
  local selected
  if from > 1 then
    selected = r.selected
  elseif plan.consumer_scoped then
    selected = new_tab(8, 8)
    r.selected = selected
  end
  local n = #plan
  local i = from
  if i <= n then
    access_item(r, plan[i], selected)
    i = i + 1
    if i <= n then
      access_item(r, plan[i], selected)
      i = i + 1
      if i <= n then
        access_item(r, plan[i], selected)
        i = i + 1
        if i <= n then
          access_item(r, plan[i], selected)
          i = i + 1
        end
      end
    end
  end
  for k = i, n do
    access_item(r, plan[k], selected)
  end
end


-- The handler of item for phase_name, with conf: false when the phase
-- stops after it (rewrite and response stop at an exit or an error).
local function list_call(r, phase_name, item, conf, may_fail)
  local h = item.entry.handler
  local ok = call(r, item.entry.name, h[phase_name], h, conf, phase_name)
  if ok ~= true and may_fail then
    if ok == nil then
      fail_500(r)
    end
    return false
  end
  return true
end

-- Item i of r.selected (the configs chosen in access) in a later phase.
local function selected_item(r, phase_name, selected, i, _, done, may_fail)
  local item = selected[i]
  if item.entry.handler[phase_name] and item.entry.name ~= done then
    return list_call(r, phase_name, item, selected[item], may_fail)
  end
  return true
end

-- Item i of a plan, its config chosen for consumer index k.
local function plan_item(r, phase_name, plan, i, k, done, may_fail)
  local item = plan[i]
  if item.entry.handler[phase_name] and item.entry.name ~= done then
    local conf = select_conf(item, k)
    if conf then
      return list_call(r, phase_name, item, conf, may_fail)
    end
  end
  return true
end


-- Runs a phase's handlers from item `from` of the list (r.selected, or
-- plan): 1, or the one after the handler kong.response.exit stopped. The
-- first four one by one, for the reason given at run_access.
local function run_list(r, phase, phase_name, plan, from)
  local may_fail = phase == PHASE_RESPONSE or phase == PHASE_REWRITE
  local done = rawget(r, "done_plugin") -- see plugin_done
  local list, each, k = r.selected, selected_item, nil
  if not list then
    list, each, k = plan, plan_item, consumer_index(r)
  end
  local n = #list
  local i = from
  if i > n or not each(r, phase_name, list, i, k, done, may_fail) then
    return
  end
  i = i + 1
  if i > n or not each(r, phase_name, list, i, k, done, may_fail) then
    return
  end
  i = i + 1
  if i > n or not each(r, phase_name, list, i, k, done, may_fail) then
    return
  end
  i = i + 1
  if i > n or not each(r, phase_name, list, i, k, done, may_fail) then
    return
  end
  for j = i + 1, n do
    if not each(r, phase_name, list, j, k, done, may_fail) then
      return
    end
  end
end


-- Each phase's start and end (seconds; 0: the phase did not run), read by
-- ngx.ctx's KONG_* timings (ctx_mt): slots of r.times, an array kept with
-- the request table (reset_request zeroes it). T_START[phase bit] and
-- T_END[phase bit] are the slots.
local TIMES_T = ffi.typeof("double[12]")
local TIMES_SIZE = ffi.sizeof(TIMES_T)
local T_START, T_END = {}, {}
for bit_ in pairs(PHASE_NAMES) do
  local i = 0
  while bit.lshift(1, i) ~= bit_ do
    i = i + 1
  end
  T_START[bit_] = 2 * i
  T_END[bit_] = 2 * i + 1
end


local function phase_plan(r, phase)
  local conf = r.conf
  if phase == PHASE_REWRITE or not r.route_index then
    return conf._global_plan
  end
  return conf._plans[r.route_index] or conf._global_plan
end


local function run_phase(r, phase)
  local name = PHASE_NAMES[phase]
  r.times[T_START[phase]] = C.gw_ffi_now()
  r.phase = name
  request.cur = r
  local plan = phase_plan(r, phase)
  if phase == PHASE_ACCESS then
    run_access(r, plan, 1)
  else
    run_list(r, phase, name, plan, 1)
  end
  r.times[T_END[phase]] = C.gw_ffi_now()
end


-- The running access handler's plugin is done with request r (it answered
-- from its own data: kong.response.exit_packed): its header_filter,
-- body_filter and log handlers are not run for r, and the runtime leaves
-- out those of these phases in which no other plugin has a handler (no
-- coroutine resume for them).
function _M.plugin_done(r)
  local name = r.plugin
  if not name or r.phase ~= "access" then
    return
  end
  r.done_plugin = name
  local solo = phase_plan(r, PHASE_ACCESS).solo
  local mask = solo and solo[name]
  mask = mask and bit.band(mask, LATER_MASK) or 0
  if mask ~= 0 then
    C.gw_ffi_req_skip_phases(r.ptr, mask)
  end
end


-- Whether the running access handler's plugin is the only plugin of
-- request r's route (kong.response.exit_packed's memo).
function _M.alone(r)
  local name = r.plugin
  return name ~= nil and r.phase == "access" and
         phase_plan(r, PHASE_ACCESS).alone == name
end


-- Whether the running access or log handler's plugin is the only handler
-- of that phase on request r's route, with a config that does not depend
-- on the consumer: a phase guard it sets (kong.plugin.idle) leaves out no
-- other plugin's handler.
function _M.lone(r)
  local name = r.plugin
  local ri = r.route_index
  if not name or not ri then
    return false
  end
  local phase = PHASE_BITS[r.phase]
  if phase ~= PHASE_ACCESS and phase ~= PHASE_LOG then
    return false
  end
  local plan = r.conf._plans[ri]
  if not plan or plan.consumer_scoped then
    return false
  end
  local mask = plan.solo and plan.solo[name]
  return mask ~= nil and bit.band(mask, phase) ~= 0
end


-- The index in list (a plan or r.selected) of the item after plugin name's.
local function index_after(list, name)
  for i = 1, #list do
    if list[i].entry.name == name then
      return i + 1
    end
  end
  return #list + 1
end


-- The rest of the phase in which a handler called kong.response.exit on
-- the request's coroutine (request.stop): that coroutine was abandoned in
-- the handler, and this one goes on as `call` would have after the
-- handler's return: the handler ended with the response registered
-- (r.exited), the phase continues with the same list after it.
local function finish_exited(r)
  local phase = PHASE_BITS[r.phase]
  local name = r.plugin
  r.plugin = nil
  r.plugin_conf = nil
  r.exited = true
  request.cur = r
  if phase ~= PHASE_REWRITE and phase ~= PHASE_RESPONSE then
    local plan = phase_plan(r, phase)
    if phase == PHASE_ACCESS then
      run_access(r, plan, index_after(plan, name))
    else
      run_list(r, phase, r.phase, plan,
               index_after(r.selected or plan, name))
    end
  end
  r.times[T_END[phase]] = C.gw_ffi_now()
end


-- ngx.ctx: Kong's keys plugins read, computed when read (a request that
-- never reads them pays nothing): KONG_* timings (ms), router_matches,
-- balancer_data (writable timeouts go to kong.service.set_timeouts).
local ctx_req = setmetatable({}, { __mode = "k" }) -- ctx -> r
local info_d = ffi.new("double[3]")
local info_u = ffi.new("uint64_t[2]")
local info_i = ffi.new("int[1]")

local function log_info(r)
  C.gw_ffi_log_info(r.ptr, info_d, info_d + 1, info_d + 2, info_u,
                    info_u + 1, info_i)
  return info_d[0], info_d[1], info_d[2], info_i[0]
end

local KONG_PHASE_KEYS = {} -- "KONG_ACCESS_START" -> { slot[, end slot] }
for bit_, name in pairs(PHASE_NAMES) do
  local up = name:upper()
  KONG_PHASE_KEYS["KONG_" .. up .. "_START"] = { T_START[bit_] }
  KONG_PHASE_KEYS["KONG_" .. up .. "_ENDED_AT"] = { T_END[bit_] }
  KONG_PHASE_KEYS["KONG_" .. up .. "_TIME"] = { T_START[bit_], T_END[bit_] }
end

local TIMEOUT_KEYS = {
  connect_timeout = true, send_timeout = true, read_timeout = true,
}

local function new_balancer_data(r)
  local svc = r.service or {}
  local store = {
    connect_timeout = svc.connect_timeout or 60000,
    send_timeout = svc.write_timeout or 60000,
    read_timeout = svc.read_timeout or 60000,
  }
  local bd = {
    host = svc.host, port = svc.port, scheme = svc.protocol or "http",
    retries = svc.retries or 5, try_count = 0,
  }
  return setmetatable(bd, {
    __index = function(_, k)
      if TIMEOUT_KEYS[k] then
        return store[k]
      end
      if k == "tries" then
        -- one entry per attempt the runtime made (known once proxied)
        local ok, _, _, _, n = pcall(log_info, r)
        local tries = {}
        for i = 1, (ok and n or 0) do
          tries[i] = { ip = bd.host, port = bd.port }
        end
        return tries
      end
      return nil
    end,
    __newindex = function(t, k, v)
      if TIMEOUT_KEYS[k] then
        store[k] = v
        if (r.phase == "access" or r.phase == "rewrite") and
           type(v) == "number" and v >= 1 then
          C.gw_ffi_upstream_timeouts(r.ptr, store.connect_timeout,
                                     store.send_timeout, store.read_timeout)
        end
        return
      end
      rawset(t, k, v)
    end,
  })
end

local function ms(x)
  return x and x * 1000 or nil
end

local ctx_mt = {
  __index = function(ctx, k)
    local r = ctx_req[ctx]
    if not r or type(k) ~= "string" then
      return nil
    end
    if k == "balancer_data" then
      if not r.ptr then
        return nil
      end
      local bd = new_balancer_data(r)
      rawset(ctx, k, bd)
      return bd
    elseif k == "router_matches" then
      local ok, caps = pcall(function()
        return rawget(_G, "kong").request.get_uri_captures()
      end)
      local uc = {}
      if ok and type(caps) == "table" then
        for i, v in pairs(caps.unnamed or {}) do uc[i] = v end
        for n, v in pairs(caps.named or {}) do uc[n] = v end
      end
      local m = { uri_captures = next(uc) and uc or nil }
      rawset(ctx, k, m)
      return m
    end
    local pk = KONG_PHASE_KEYS[k]
    if pk then
      local times = rawget(r, "times")
      local a = times and times[pk[1]]
      if a == 0 then
        a = nil
      end
      if pk[2] then
        local b = times[pk[2]]
        return a and b ~= 0 and (b - a) * 1000 or nil
      end
      return ms(a)
    end
    if k == "KONG_PROCESSING_START" then
      return r.ptr and C.gw_ffi_req_start_time(r.ptr) * 1000 or nil
    end
    if not r.ptr or (k ~= "KONG_PROXY_LATENCY" and k ~= "KONG_WAITING_TIME"
                     and k ~= "KONG_RECEIVE_TIME" and k ~= "KONG_PROXIED"
                     and k ~= "KONG_RESPONSE_LATENCY") then
      return nil
    end
    local total, upstream, gateway = log_info(r)
    if k == "KONG_PROXY_LATENCY" then
      return upstream > 0 and gateway * 1000 or nil
    elseif k == "KONG_WAITING_TIME" then
      return upstream > 0 and upstream * 1000 or nil
    elseif k == "KONG_RECEIVE_TIME" then
      local rt = (total - gateway - upstream) * 1000
      return upstream > 0 and (rt > 0 and rt or 0) or nil
    elseif k == "KONG_PROXIED" then
      return upstream > 0 or nil
    else -- KONG_RESPONSE_LATENCY: answered by the gateway itself
      return upstream == 0 and total * 1000 or nil
    end
  end,
}


-- ctx, shared and plugin_ctx are made when first used: most requests of
-- most plugins never touch them.
local LAZY = { ctx = true, shared = true, plugin_ctx = true }
local lazy_mt = {
  __index = function(t, k)
    if LAZY[k] then
      local v = {}
      if k == "ctx" then
        v.route = rawget(t, "route")
        v.service = rawget(t, "service")
        -- what the PDK would have written into an existing ngx.ctx
        -- (kong.client.authenticate, kong.response.exit): they do not
        -- make one for every request
        v.authenticated_consumer = rawget(t, "consumer")
        v.authenticated_credential = rawget(t, "credential")
        if rawget(t, "kong_exited") then
          v.KONG_EXITED = true
        end
        ctx_req[v] = t
        setmetatable(v, ctx_mt)
      end
      t[k] = v
      return v
    end
    if k == "id" then
      local v
      if C.gw_ffi_req_id(t.ptr, lffi.str_p, lffi.len_p) == 0 then
        v = ffi.string(lffi.str_p[0], lffi.len_p[0])
      end
      t.id = v
      return v
    end
    return nil
  end,
}

local REQ_T = ffi.typeof("struct gw_req *")
local LCTX_T = ffi.typeof("struct gw_lctx *")

-- The struct gw_req * of a request, by address: the runtime reuses its
-- request objects (a free list), so a few cdata serve every request; a
-- cast per request made one object of garbage each, and the collector's
-- steps came back every few thousand requests. Bounded: emptied when it
-- holds REQ_PTRS_MAX.
local REQ_PTRS_MAX = 4096
local req_ptrs = {}
local n_req_ptrs = 0

local function req_ptr(addr)
  local p = req_ptrs[addr]
  if p == nil then
    if n_req_ptrs >= REQ_PTRS_MAX then
      clear_tab(req_ptrs)
      n_req_ptrs = 0
    end
    p = cast(REQ_T, addr)
    req_ptrs[addr] = p
    n_req_ptrs = n_req_ptrs + 1
  end
  return p
end

local function set_route(r, route_idx)
  if route_idx >= 0 then
    local conf = r.conf
    r.route_index = route_idx + 1
    local route = conf.routes[route_idx + 1]
    r.route = route
    local si = route and route.service
    r.service = si and conf.services[si] or nil
    local ctx = rawget(r, "ctx")
    if ctx then
      ctx.route = r.route
      ctx.service = r.service
    end
  end
end

-- Empties a request state table for the next request. The fields most
-- requests set are set to nil one by one: their keys stay in the table, so
-- setting them again finds them (clearing the table removes the keys, and
-- each request then inserted them again: lj_tab_newkey and the hashing,
-- some 800 instructions per request). A field is set to nil only when it
-- holds a value: storing nil under a key the table lacks inserts that key
-- (LuaJIT), whose node the next new key may take over, and the fields
-- a route never sets then pushed out the ones it sets, which were
-- inserted again on every request (8 on the auth route). A field not in
-- this list (a rarer one) is still there: then the table is cleared as a
-- whole. The phases' times are in r.times, zeroed (not a field each: 12
-- fields more made next() walk a hash part of 32 nodes instead of 16).
local function drop(r, k)
  if rawget(r, k) ~= nil then
    r[k] = nil
  end
end

local function reset_request(r)
  r.co = nil
  r.ptr = nil
  r.lctx = nil
  r.conf = nil
  drop(r, "route_index")
  drop(r, "route")
  drop(r, "service")
  drop(r, "phase")
  drop(r, "plugin")
  drop(r, "plugin_conf")
  drop(r, "consumer")
  drop(r, "credential")
  drop(r, "selected")
  local times = r.times
  r.times = nil
  if next(r) ~= nil then
    clear_tab(r)
  end
  fill(times, TIMES_SIZE)
  r.times = times
end


-- The request state of a coroutine's new request. The coroutine's previous
-- state table is emptied and reused (nothing outside the runloop and the
-- PDK keeps it; the tables plugins see, ctx and friends, are new for every
-- request); a new one is sized for the fields the runloop and the PDK set,
-- so that its hash part is not rebuilt as they are added.
local function new_request(r, co, ptr, lctx, route_idx, conf)
  if r then
    reset_request(r)
  else
    r = setmetatable(new_tab(0, 16), lazy_mt)
    r.times = TIMES_T()
  end
  r.co = co
  r.ptr = req_ptr(ptr)
  r.lctx = lctx
  r.conf = conf
  set_route(r, route_idx)
  return r
end


local timers -- luagate.timers, required by the first coroutine (it requires
             -- this module)

-- One job of a coroutine (below): returns the request it served, kept for
-- the next phase.
local function job(r, co, lctx_c, kind, ptr, arg, new, conf)
  if kind == KIND_EXITED then
    r = request.exited
    if r == nil then
      error("the request's coroutine yielded YIELD_EXIT outside " ..
            "kong.response.exit")
    end
    request.exited = nil
    r.co = co
    finish_exited(r)
  elseif kind == KIND_TIMER then
    timers.run(lctx_c, arg, new)
  else
    if new or r == nil then
      r = new_request(r, co, ptr, lctx_c, arg, conf)
    elseif arg >= 0 and not r.route_index then
      set_route(r, arg) -- routed after rewrite
    end
    run_phase(r, kind)
  end
  request.cur = nil
  return r
end


-- The body of every coroutine the C runtime runs (see lua_req.c): loops
-- over the jobs it is given, yielding YIELD_DONE after each. A coroutine
-- that replaces one abandoned by kong.response.exit starts with
-- KIND_EXITED and takes over that coroutine's request.
--
-- The loop is left to the interpreter (jit.off below; `job` is compiled):
-- coroutine.yield is a C function, so a trace through the loop ends there
-- and LuaJIT stitches a new one after it, for every phase in turn, in a
-- chain that grew for thousands of requests (30 and more traces, each
-- compiled when hot: a start cost 21,000 to 97,000 instructions per
-- request over its first 2,000, against 24,000 to 28,000 now).
function _M.thread_main(kind, ptr, lctx, arg, new, conf)
  local r
  local co = running()
  timers = timers or require "luagate.timers"
  -- a coroutine belongs to one gw_lctx for its whole life
  local lctx_c = cast(LCTX_T, lctx)
  while true do
    r = job(r, co, lctx_c, kind, ptr, arg, new, conf)
    local _ -- lctx: the same for the coroutine's whole life
    kind, ptr, _, arg, new, conf = yield(YIELD_DONE)
  end
end
jit.off(_M.thread_main)


return _M
