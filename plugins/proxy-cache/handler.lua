-- proxy-cache: a reverse proxy cache, as Kong's bundled plugin (3.10), with
-- luagate's additions (docs/plugins/proxy-cache.md):
--   * strategy "redis" besides "memory";
--   * with cache_control: RFC 9111 freshness on both sides (a stale entry
--     is not served unless the request allows it with max-stale), the
--     response's Vary, and stale-if-error (RFC 5861: a stale entry serves
--     a 500/502/503/504 or a failed connection, X-Cache-Status: Stale);
--   * request coalescing: concurrent misses of one key on a node reach the
--     upstream once; the others wait for the entry and serve it as a Hit.
--
-- access: a cacheable request computes its key and looks it up: a usable
-- entry is sent with kong.response.exit (Hit); otherwise the request goes
-- on (Miss, or Refresh when the entry exists but cannot be used).
-- header_filter: decides whether the response can be stored (status,
-- content type, Cache-Control) and adds X-Cache-Status / X-Cache-Key.
-- body_filter: collects the body (chunks pass through unchanged) and
-- stores the entry on the last chunk (redis: from a timer, as Redis cannot
-- be reached from body_filter). log: releases a coalescing lock a request
-- that never finished its body still holds.

local strategies = require "kong.plugins.proxy-cache.strategies"
local cache_key = require "kong.plugins.proxy-cache.cache_key"
local cc_lib = require "kong.plugins.proxy-cache.cache_control"
local recent = require "luagate.recent"
local buffer = require "string.buffer"

local kong = kong
local ngx = ngx
local type = type
local pairs = pairs
local ipairs = ipairs
local pcall = pcall
local tonumber = tonumber
local setmetatable = setmetatable
local floor = math.floor
local min = math.min
local lower = string.lower
local find = string.find
local sub = string.sub
local match = string.match
local encode = buffer.encode
local decode = buffer.decode

local seconds = cc_lib.seconds

local CACHE_VERSION = 1
local LOCK_PREFIX = "proxy-cache:lock:"
-- cache keys remembered per config, by their raw inputs (luagate.recent)
local KEYS_REMEMBERED = 1000

-- response headers never stored: hop-by-hop ones, the length (the
-- response is re-framed), the headers the plugin sets itself, and the
-- rate-limiting headers of the request that filled the entry
local NOT_STORED = {
  ["connection"] = true,
  ["keep-alive"] = true,
  ["proxy-authenticate"] = true,
  ["proxy-authorization"] = true,
  ["proxy-connection"] = true,
  ["te"] = true,
  ["trailer"] = true,
  ["trailers"] = true,
  ["transfer-encoding"] = true,
  ["upgrade"] = true,
  ["content-length"] = true,
  ["age"] = true,
  ["x-cache-status"] = true,
  ["x-cache-key"] = true,
}

-- the headers a hit adds to the stored ones (never stored, above)
local HIT_HEADERS = {
  ["Age"] = true,
  ["X-Cache-Status"] = true,
  ["X-Cache-Key"] = true,
}

-- statuses stale-if-error covers (RFC 5861 section 4)
local ERROR_STATUS = { [500] = true, [502] = true, [503] = true, [504] = true }


-- kong.ctx.plugin (a function, so that luacheck does not take the table
-- for a read-only field of the kong global)
local function plugin_ctx()
  return kong.ctx.plugin
end


local ProxyCacheHandler = {
  PRIORITY = 100,
  VERSION = "3.10.0",
}


-- per config: sets and parsed content types -------------------------------

-- "type/subtype; a=b" -> type, subtype, params (lowercase names; values
-- unquoted; charset lowercase), nparams; nil when it is not a media type
local function parse_media_type(s)
  local semi = find(s, ";", 1, true)
  local main = semi and sub(s, 1, semi - 1) or s
  main = lower(match(main, "^%s*(.-)%s*$"))
  local t, st
  if main == "*" then
    t, st = "*", "*"
  else
    t, st = match(main, "^([^/%s]+)/([^/%s]+)$")
    if not t then
      return nil
    end
  end
  local params, n = nil, 0
  while semi do
    local nxt = find(s, ";", semi + 1, true)
    local part = sub(s, semi + 1, nxt and nxt - 1 or -1)
    local k, v = match(part, "^%s*([^=%s]+)%s*=%s*(.-)%s*$")
    if k then
      k = lower(k)
      v = match(v, '^"(.*)"$') or v
      if k == "charset" then
        v = lower(v)
      end
      params = params or {}
      if params[k] == nil then
        n = n + 1
      end
      params[k] = v
    end
    semi = nxt
  end
  return t, st, params, n
end


local function types_match(want, t, st, params, n)
  if want.type ~= "*" and want.type ~= t then
    return false
  end
  if want.subtype ~= "*" and want.subtype ~= st then
    return false
  end
  if want.n ~= n then
    return false
  end
  if n > 0 then
    for k, v in pairs(want.params) do
      if params[k] ~= v then
        return false
      end
    end
  end
  return true
end


local function set_of(list)
  local s = {}
  for i = 1, #list do
    s[list[i]] = true
  end
  return s
end


local plans = setmetatable({}, { __mode = "k" })

local function plan_of(conf)
  local plan = plans[conf]
  if plan then
    return plan
  end
  plan = {
    methods = set_of(conf.request_method),
    codes = set_of(conf.response_code),
    exact_types = {},   -- lowercase config value -> true (fast path)
    types = {},         -- parsed config values
    vary_query = conf.vary_query_params and conf.vary_query_params[1] and
                 conf.vary_query_params or nil,
    vary_headers = nil,
    show_age = conf.response_headers.age,
    show_status = conf.response_headers["X-Cache-Status"],
    show_key = conf.response_headers["X-Cache-Key"],
    keys = recent.new(KEYS_REMEMBERED),
  }
  for _, ct in ipairs(conf.content_type) do
    local t, st, params, n = parse_media_type(ct)
    if t then
      plan.types[#plan.types + 1] = { type = t, subtype = st,
                                      params = params, n = n }
      if t ~= "*" and st ~= "*" then
        plan.exact_types[lower(ct)] = true
      end
    end
  end
  if conf.vary_headers and conf.vary_headers[1] then
    local names = {}
    for i, h in ipairs(conf.vary_headers) do
      names[i] = lower(h)
    end
    plan.vary_headers = names
  end
  local strategy, err = strategies.new(conf)
  plan.strategy = strategy
  plan.strategy_err = err
  plan.delayed = strategy and strategies.DELAYED_STORE[strategy.name]
  plan.memo_ok = strategy and strategy.name == "memory"
  if strategy and conf.coalesce_timeout > 0 then
    plan.locks = ngx.shared.kong_locks or strategy.dict
    plan.lock_ttl = conf.coalesce_timeout
  end
  plans[conf] = plan
  return plan
end


local function content_type_ok(plan, ct)
  if type(ct) ~= "string" or ct == "" then
    return false
  end
  if plan.exact_types[lower(ct)] then
    return true
  end
  local t, st, params, n = parse_media_type(ct)
  if not t then
    return false
  end
  local types = plan.types
  for i = 1, #types do
    if types_match(types[i], t, st, params, n) then
      return true
    end
  end
  return false
end


-- request side ---------------------------------------------------------------

local function request_headers_getter()
  local all
  return function(name)
    all = all or kong.request.get_headers()
    return all[name]
  end
end


local function request_cc()
  local cc = cc_lib.parse(kong.request.get_header("cache-control"))
  if not cc then
    local pragma = kong.request.get_header("pragma")
    if pragma and find(lower(pragma), "no-cache", 1, true) then
      cc = { ["no-cache"] = true } -- RFC 9111 5.4: Pragma without CC
    end
  end
  return cc
end


local function decode_entry(raw)
  local ok, entry = pcall(decode, raw)
  if not ok or type(entry) ~= "table" or entry.version ~= CACHE_VERSION then
    return nil
  end
  return entry
end


-- The entry stored under key (following a Vary marker to the request's
-- variant), or nil; nil, err when the store failed. The memory strategy's
-- entries are shared by the worker's requests (strategies.lua): read-only.
local function lookup(conf, plan, ctx, key)
  local strategy = plan.strategy
  local entry, err = strategy:fetch_entry(key, decode_entry)
  if err then
    return nil, err
  end
  if entry and entry.vary then
    if not conf.cache_control then
      return nil
    end
    ctx.getter = ctx.getter or request_headers_getter()
    local marker = entry
    local vkey = cache_key.variant(key, entry.vary, ctx.getter)
    entry, err = strategy:fetch_entry(vkey, decode_entry)
    if err then
      return nil, err
    end
    if entry and entry.vary then
      return nil
    end
    return entry, nil, marker
  end
  return entry
end


-- Whether entry may answer this request, and its current age (seconds).
local function usable(conf, entry, req_cc, now)
  local resident = now - entry.timestamp
  if resident < 0 then
    resident = 0
  end
  if not conf.cache_control then
    -- Kong: an entry older than cache_ttl is refreshed (it may be kept
    -- longer with storage_ttl)
    return resident <= conf.cache_ttl, resident
  end
  local age = (entry.age0 or 0) + resident
  local ttl = entry.ttl
  local fresh = age < ttl
  if req_cc then
    if req_cc["no-cache"] then
      return false, age
    end
    local max_age = seconds(req_cc["max-age"])
    if max_age and floor(age) > max_age then
      return false, age
    end
    local min_fresh = seconds(req_cc["min-fresh"])
    if min_fresh and ttl - age < min_fresh then
      return false, age
    end
    if not fresh then
      local max_stale = req_cc["max-stale"]
      if max_stale == true then
        return true, age
      end
      max_stale = seconds(max_stale)
      return max_stale ~= nil and age - ttl <= max_stale, age
    end
  end
  return fresh, age
end


-- The memo (kong.response.exit_packed) that lets the runtime answer the
-- next requests like this one with entry until the entry stops being
-- usable for them: the memory strategy's entries only (their stamps end
-- the memo when the dictionary changes), and with cache_control, only
-- requests without Cache-Control, Pragma and Authorization (named in
-- headers: a request with one of them comes to the plugin). Kept on the
-- entry (a worker's decoded copy) per plan.
local CC_REQUEST_HEADERS = { "cache-control", "pragma", "authorization" }

local function memo_of(conf, plan, entry, marker)
  local dep = entry.memo_dep
  if not (plan.memo_ok and dep) or (marker and not marker.memo_dep) then
    return nil
  end
  local m = entry.memo
  if m and entry.memo_plan == plan and entry.memo_marker == marker then
    return m
  end
  local headers = {}
  local deadline
  if conf.cache_control then
    for i = 1, #CC_REQUEST_HEADERS do
      headers[#headers + 1] = CC_REQUEST_HEADERS[i]
    end
    deadline = entry.timestamp + entry.ttl - (entry.age0 or 0)
  else
    deadline = entry.timestamp + conf.cache_ttl
  end
  local lists = { plan.vary_headers or {}, marker and marker.vary or {} }
  for _, list in ipairs(lists) do
    for i = 1, #list do
      headers[#headers + 1] = lower(list[i])
    end
  end
  m = {
    deadline = deadline,
    deps = marker and { marker.memo_dep, dep } or { dep },
    headers = headers,
    age_origin = plan.show_age and entry.timestamp - (entry.age0 or 0) or nil,
  }
  entry.memo, entry.memo_plan, entry.memo_marker = m, plan, marker
  return m
end


local function serve(conf, plan, ctx, entry, age, key, marker, req_cc)
  ctx.hit = true
  -- the stored headers never hold these names (NOT_STORED); the entry may
  -- be the worker's copy that the previous hit (of another config, after a
  -- reload) filled: each one is set or cleared
  local headers = entry.headers
  local age_v = plan.show_age and floor(age) or nil
  headers["Age"] = age_v
  headers["X-Cache-Status"] = plan.show_status and "Hit" or nil
  headers["X-Cache-Key"] = plan.show_key and key or nil
  -- for logging plugins, as Kong exposes it
  kong.ctx.shared.proxy_cache_hit = { -- luacheck: ignore 122
    res = entry,
    req = { body = entry.req_body },
  }
  -- the headers in the runtime's packed form, set in one call: packed
  -- again when the plan or the Age changed (once a second at most)
  if entry.packed_plan ~= plan or entry.packed_age ~= age_v then
    entry.packed = kong.response.pack_headers(headers)
    entry.packed_plan = plan
    entry.packed_age = age_v
  end
  local packed = entry.packed
  if packed then
    -- the handler returns right after: nothing to stop
    return kong.response.exit_packed(entry.status, entry.body, packed,
                                     req_cc == nil and
                                     memo_of(conf, plan, entry, marker) or nil)
  end
  return kong.response.exit(entry.status, entry.body, headers)
end


-- The request's cache key (docs: "Cache key"). The key is a function of
-- the config and of the raw inputs below, so the keys of recent inputs are
-- remembered (plan.keys): no query parsing, sorting or SHA-256 for them.
-- The inputs are joined unambiguously: a method has no space, a raw path
-- no "?", a query no LF, nor has a prefix (ids); the headers part is last.
local function request_key(conf, plan, ctx, method)
  local consumer = kong.client.get_consumer()
  local route = kong.router.get_route()
  local prefix = cache_key.prefix(consumer and consumer.id, route and route.id)
  local path = kong.request.get_raw_path()
  local query = kong.request.get_raw_query()
  local headers_part = ""
  if plan.vary_headers then
    ctx.getter = request_headers_getter()
    headers_part = cache_key.headers_key(ctx.getter, plan.vary_headers)
  end
  local raw = method .. " " .. path .. "?" .. query .. "\n" .. prefix ..
              "\n" .. headers_part
  local keys = plan.keys
  local key = keys:get(raw)
  if key then
    return key
  end
  if conf.ignore_uri_case then
    path = lower(path)
  end
  key = cache_key.build(prefix, method, path,
    cache_key.params_key(kong.request.get_query(), plan.vary_query),
    headers_part)
  keys:set(raw, key)
  return key
end


-- coalescing -----------------------------------------------------------------

local lock_seq = 0


local function release_lock(plan, ctx)
  local lkey = ctx.lock
  if not lkey then
    return
  end
  ctx.lock = nil
  local locks = plan.locks
  if locks:get(lkey) == ctx.lock_token then
    locks:delete(lkey)
  end
end


-- Takes the key's lock (this request fetches the response for everyone)
-- or waits for the request holding it to store the response. Returns the
-- entry and its age when one became usable meanwhile.
local function coalesce(conf, plan, ctx, key, req_cc)
  local locks = plan.locks
  local lkey = LOCK_PREFIX .. key
  lock_seq = lock_seq + 1
  local token = ngx.worker.pid() .. ":" .. lock_seq
  local ok, err = locks:add(lkey, token, plan.lock_ttl)
  if ok then
    ctx.lock = lkey
    ctx.lock_token = token
    return nil
  end
  if err ~= "exists" then
    return nil
  end
  local deadline = ngx.now() + plan.lock_ttl
  local delay = 0.002
  repeat
    ngx.sleep(delay)
    if locks:get(lkey) == nil then
      local entry, lerr, marker = lookup(conf, plan, ctx, key)
      if lerr then
        kong.log.err(lerr)
        return nil
      end
      if entry then
        local use, age = usable(conf, entry, req_cc, ngx.now())
        if use then
          return entry, age, marker
        end
      end
      return nil
    end
    delay = min(delay * 2, 0.02)
  until ngx.now() >= deadline
  return nil
end


function ProxyCacheHandler:access(conf)
  local plan = plan_of(conf)
  local ctx = plugin_ctx()

  local method = kong.request.get_method()
  if not plan.methods[method] then
    ctx.status = "Bypass"
    return
  end

  local req_cc
  if conf.cache_control then
    req_cc = request_cc()
    if (req_cc and req_cc["no-store"]) or
       kong.request.get_header("authorization") then
      ctx.status = "Bypass"
      return
    end
  end

  if not plan.strategy then
    if not plan.err_logged then
      plan.err_logged = true
      kong.log.err("could not use the ", conf.strategy, " strategy: ",
                   plan.strategy_err)
    end
    return
  end

  local key = request_key(conf, plan, ctx, method)
  ctx.key = key

  local entry, err, marker = lookup(conf, plan, ctx, key)
  if err then
    kong.log.err(err)
    return
  end

  if entry then
    local use, age = usable(conf, entry, req_cc, ngx.now())
    if use then
      return serve(conf, plan, ctx, entry, age, key, marker, req_cc)
    end
    ctx.status = "Refresh"
    if conf.cache_control then
      ctx.req_sie = req_cc and seconds(req_cc["stale-if-error"])
      if entry.stale_if_error or ctx.req_sie then
        ctx.stale = entry
      end
    end
  else
    ctx.status = "Miss"
  end

  if req_cc and req_cc["only-if-cached"] then
    -- RFC 9111 5.2.1.7: nothing usable in the cache
    ctx.status = nil
    return kong.response.exit(504)
  end

  ctx.store = true

  if plan.locks and not (req_cc and req_cc["no-cache"]) then
    local found, age, marker = coalesce(conf, plan, ctx, key, req_cc)
    if found then
      return serve(conf, plan, ctx, found, age, key, marker, req_cc)
    end
  end
end


-- response side --------------------------------------------------------------

-- The response's headers as they will be stored.
local function storable_headers()
  local h = ngx.resp.get_headers(0, true)
  for name in pairs(h) do
    local l = lower(name)
    if NOT_STORED[l] or find(l, "ratelimit", 1, true) then
      h[name] = nil
    end
  end
  return h
end


-- Prepares ctx.entry when the response can be stored; false otherwise.
local function prepare_entry(conf, plan, ctx, now)
  local status = kong.response.get_status()
  if not plan.codes[status] then
    return false
  end
  if not content_type_ok(plan, kong.response.get_header("content-type")) then
    return false
  end

  local ttl, sie, age0, vary
  if conf.cache_control then
    local rcc = cc_lib.parse(kong.response.get_header("cache-control"))
    if rcc and (rcc["private"] or rcc["no-store"] or rcc["no-cache"]) then
      return false
    end
    vary = cc_lib.vary_names(kong.response.get_header("vary"))
    if vary == "*" then
      return false
    end
    ttl = cc_lib.lifetime(rcc, kong.response.get_header("expires"),
                          kong.response.get_header("date"), now)
    if not ttl or ttl <= 0 then
      return false
    end
    sie = rcc and seconds(rcc["stale-if-error"])
    age0 = tonumber(kong.response.get_header("age"))
    if age0 and age0 < 0 then
      age0 = nil
    end
  else
    ttl = conf.cache_ttl
  end

  ctx.entry = {
    version = CACHE_VERSION,
    status = status,
    headers = storable_headers(),
    timestamp = now,
    ttl = ttl,
    age0 = age0,
    stale_if_error = sie,
  }
  ctx.storage_ttl = conf.storage_ttl or (ttl + (sie or 0))
  if vary then
    ctx.getter = ctx.getter or request_headers_getter()
    ctx.store_key = cache_key.variant(ctx.key, vary, ctx.getter)
    ctx.marker = encode({ version = CACHE_VERSION, vary = vary })
  end
  return true
end


local function store_async(premature, strategy, key, skey, value, marker,
                           ttl, locks, lkey, token)
  if not premature then
    local ok, err = strategy:store(skey, value, ttl)
    if ok and marker then
      ok, err = strategy:store(key, marker, ttl)
    end
    if not ok then
      kong.log.err(err)
    end
  end
  if lkey and locks:get(lkey) == token then
    locks:delete(lkey)
  end
end


-- Stores ctx.entry with its body; releases the coalescing lock once the
-- entry can be read.
local function store(plan, ctx, body)
  local entry = ctx.entry
  ctx.entry = nil
  ctx.store = nil
  entry.body = body
  entry.body_len = #body
  local value = encode(entry)
  local key = ctx.key
  local skey = ctx.store_key or key
  if plan.delayed then
    local ok, err = ngx.timer.at(0, store_async, plan.strategy, key, skey,
                                 value, ctx.marker, ctx.storage_ttl,
                                 plan.locks, ctx.lock, ctx.lock_token)
    if ok then
      ctx.lock = nil -- the timer releases it
    else
      kong.log.err("could not store the cache entry: ", err)
      release_lock(plan, ctx)
    end
    return
  end
  local ok, err = plan.strategy:store(skey, value, ctx.storage_ttl)
  if ok and ctx.marker then
    ok, err = plan.strategy:store(key, ctx.marker, ctx.storage_ttl)
  end
  if not ok then
    kong.log.err(err)
  end
  release_lock(plan, ctx)
end


-- With stale-if-error: replaces an error response with the stale entry.
local function serve_stale(plan, ctx, now)
  local entry = ctx.stale
  if not ERROR_STATUS[kong.response.get_status()] or
     kong.response.get_source() == "exit" then
    return false
  end
  local age = (entry.age0 or 0) + (now - entry.timestamp)
  local allowed = seconds(entry.stale_if_error)
  local req_sie = ctx.req_sie
  if req_sie and (not allowed or req_sie > allowed) then
    allowed = req_sie
  end
  if not allowed or age - entry.ttl > allowed then
    return false
  end

  for name in pairs(ngx.resp.get_headers(0, true)) do
    kong.response.clear_header(name)
  end
  kong.response.set_status(entry.status)
  for name, v in pairs(entry.headers) do
    if not HIT_HEADERS[name] then -- what an earlier hit added
      kong.response.set_header(name, v)
    end
  end
  if plan.show_age then
    kong.response.set_header("Age", floor(age))
  end
  if plan.show_status then
    kong.response.set_header("X-Cache-Status", "Stale")
  end
  if plan.show_key then
    kong.response.set_header("X-Cache-Key", ctx.key)
  end
  ctx.stale_body = entry.body
  ctx.store = nil
  release_lock(plan, ctx)
  return true
end


function ProxyCacheHandler:header_filter(conf)
  local ctx = plugin_ctx()
  if ctx.hit then
    return
  end
  local status = ctx.status
  local key = ctx.key
  if status == nil and key == nil then
    return
  end
  local plan = plan_of(conf)
  local now = ngx.now()

  if ctx.stale and serve_stale(plan, ctx, now) then
    return
  end

  if ctx.store then
    if prepare_entry(conf, plan, ctx, now) then
      local s = ctx.entry.status
      if kong.request.get_method() == "HEAD" or s == 204 or s == 304 or
         s < 200 then
        store(plan, ctx, "") -- no body_filter call for these
      else
        ctx.buf = buffer.new()
      end
    else
      status = "Bypass"
      ctx.store = nil
      release_lock(plan, ctx)
    end
  end

  if status and plan.show_status then
    kong.response.set_header("X-Cache-Status", status)
  end
  if key and plan.show_key then
    kong.response.set_header("X-Cache-Key", key)
  end
end


function ProxyCacheHandler:body_filter(conf)
  local ctx = plugin_ctx()
  local stale_body = ctx.stale_body
  if stale_body then
    local arg = ngx.arg
    if arg[2] then
      arg[1] = stale_body -- luacheck: ignore 122
    else
      arg[1] = "" -- luacheck: ignore 122
    end
    return
  end
  local buf = ctx.buf
  if not buf then
    return
  end
  buf:put(ngx.arg[1])
  if ngx.arg[2] then
    ctx.buf = nil
    store(plan_of(conf), ctx, buf:get())
  end
end


function ProxyCacheHandler:log(conf)
  local ctx = plugin_ctx()
  if ctx.lock then
    -- the response never reached its end (client gone, upstream failed)
    release_lock(plan_of(conf), ctx)
  end
end


-- for api.lua and the specs
ProxyCacheHandler._plan_of = plan_of
ProxyCacheHandler._parse_media_type = parse_media_type


return ProxyCacheHandler
