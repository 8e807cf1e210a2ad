-- The environment pre-function and post-function code runs in, after
-- Kong's `untrusted_lua` setting (kong.configuration.untrusted_lua):
--
--   sandbox (default)  each snippet gets its own environment with safe
--                      standard functions only, `kong` and `ngx` behind
--                      read-only views, and `require` of an allow-list;
--   on                 the full global environment (globals the code
--                      writes stay in its own environment);
--   off                no code is loaded (a config with code is refused).
--
-- Code is always loaded as text: bytecode is refused in every mode.
--
-- local sandbox = require "kong.plugins.pre-function.sandbox"
-- local fn, err = sandbox.load(code, chunkname)   -- compiled, not run
-- local ok, err = sandbox.validate(code)          -- syntax only

local type = type
local pairs = pairs
local ipairs = ipairs
local select = select
local error = error
local pcall = pcall
local xpcall = xpcall
local tostring = tostring
local rawget = rawget
local rawset = rawset
local load = load
local setmetatable = setmetatable
local getmetatable = getmetatable
local fmt = string.format
local gmatch = string.gmatch
local co_create = coroutine.create
local co_resume = coroutine.resume
local co_running = coroutine.running
local co_status = coroutine.status
local co_yield = coroutine.yield

local _M = {}

local OFF_MESSAGE = "loading of untrusted Lua code disabled because " ..
                    "'untrusted_lua' config option is set to 'off'"
_M.OFF_MESSAGE = OFF_MESSAGE

-- modules `require` may load in the sandbox, besides
-- kong.configuration.untrusted_lua_sandbox_requires
local DEFAULT_REQUIRES = {
  "cjson", "cjson.safe", "table.new", "table.clear", "table.nkeys",
}
_M.DEFAULT_REQUIRES = DEFAULT_REQUIRES

local BASE = {
  "_VERSION", "assert", "error", "ipairs", "next", "pairs", "select",
  "tonumber", "tostring", "type", "unpack",
}

local LIBS = {
  string = { "byte", "char", "find", "format", "gmatch", "gsub", "len",
             "lower", "match", "rep", "reverse", "sub", "upper" },
  table = { "concat", "insert", "maxn", "remove", "sort", "foreach",
            "foreachi", "getn" },
  math = { "abs", "acos", "asin", "atan", "atan2", "ceil", "cos", "cosh",
           "deg", "exp", "floor", "fmod", "frexp", "huge", "ldexp", "log",
           "log10", "max", "min", "modf", "pi", "pow", "rad", "random",
           "sin", "sinh", "sqrt", "tan", "tanh" },
  os = { "clock", "date", "difftime", "time" },
  io = { "type" },
  bit = { "arshift", "band", "bnot", "bor", "bswap", "bxor", "lshift",
          "rol", "ror", "rshift", "tobit", "tohex" },
  jit = { "os", "arch", "version", "version_num" },
}

-- LuaJIT's table extensions, when present
local TABLE_EXTRAS = {
  new = "table.new", clear = "table.clear", nkeys = "table.nkeys",
  isarray = "table.isarray", isempty = "table.isempty",
  clone = "table.clone",
}

-- what the runloop raises for kong.response.exit: never swallowed
local EXIT
do
  local ok, request = pcall(require, "luagate.request")
  if ok then
    EXIT = request.EXIT
  end
end


-- A setting from kong.configuration, else from LUAGATE_SETTINGS (what
-- kong.configuration reads; the config loader has no kong global).
local function setting(name)
  local kong = rawget(_G, "kong")
  local conf = type(kong) == "table" and kong.configuration
  local v
  if type(conf) == "table" then
    v = conf[name]
  end
  if v == nil then
    local s = rawget(_G, "LUAGATE_SETTINGS")
    if type(s) == "table" then
      v = s[name]
    end
  end
  return v
end


-- "sandbox", "on" or "off"
function _M.mode()
  local m = setting("untrusted_lua")
  if m == "on" or m == "off" then
    return m
  end
  return "sandbox"
end


local function list_setting(v)
  local out = {}
  if type(v) == "table" then
    for _, x in ipairs(v) do
      out[#out + 1] = x
    end
  elseif type(v) == "string" then
    for x in gmatch(v, "[^,%s]+") do
      out[#out + 1] = x
    end
  end
  return out
end


-- protected views of kong and ngx ---------------------------------------------

-- Code reaches kong and ngx through read-only views, so that nothing it
-- does changes them for the other plugins of the worker:
--   * modules: tables reachable from kong and ngx that hold functions
--     (kong.request, ngx.re...): reads give the value (a view for a
--     module), writes are refused;
--   * objects with methods (kong.cache, kong.core_cache, the ngx.shared
--     dictionaries): the same, and a method called on the view runs on
--     the object;
--   * data tables (ngx.ctx, ngx.var, ngx.header, ngx.arg, kong.ctx and
--     kong.configuration, which guard themselves) and what functions
--     return are given as they are.
local modules, objects -- sets, built on first use in the worker

local SKIP = {
  kong = { cache = true, core_cache = true, db = true, ctx = true,
           configuration = true, worker_events = true,
           cluster_events = true },
  ngx = { shared = true, ctx = true, var = true, header = true, arg = true },
}


local function is_module(t)
  local mt = getmetatable(t)
  return mt == nil or (type(mt) == "table" and mt.__newindex == nil)
end


local function walk(t, depth, skip, set)
  set[t] = true
  if depth == 0 then
    return
  end
  for k, v in pairs(t) do
    if type(v) == "table" and not set[v] and not (skip and skip[k]) and
       is_module(v) then
      walk(v, depth - 1, nil, set)
    end
  end
end


local function build_sets()
  if modules then
    return modules, objects
  end
  local mods, objs = {}, {}
  local kong = rawget(_G, "kong")
  if type(kong) == "table" then
    walk(kong, 3, SKIP.kong, mods)
    for _, name in ipairs({ "cache", "core_cache" }) do
      local o = rawget(kong, name)
      if type(o) == "table" then
        objs[o] = true
      end
    end
  end
  local ngx = rawget(_G, "ngx")
  if type(ngx) == "table" then
    walk(ngx, 2, SKIP.ngx, mods)
    local shared = rawget(ngx, "shared")
    if type(shared) == "table" then
      mods[shared] = true
      -- dictionaries are made on first lookup: every table found in
      -- ngx.shared is one
      objs[shared] = "parent"
    end
  end
  if kong ~= nil then
    modules, objects = mods, objs -- complete once the PDK exists
  end
  return mods, objs
end


-- ngx fields code may assign (forwarded to ngx)
local NGX_WRITABLE = { status = true, ctx = true }


-- A view maker for one environment: views are per environment, so that
-- nothing one snippet does to them is seen by another.
local function viewer(mods, objs)
  local views = {}
  local real_ngx = rawget(_G, "ngx")

  local function view(t, path)
    local v = views[t]
    if v then
      return v
    end
    local is_object = objs[t] == true
    local parent_of_objects = objs[t] == "parent"
    local bound = is_object and {} or nil
    local mt = {
      __index = function(self, k)
        local x = t[k]
        local tx = type(x)
        if tx == "table" and parent_of_objects and not objs[x] then
          objs[x] = true
        end
        if tx == "table" and (mods[x] or objs[x]) then
          return view(x, path .. "." .. tostring(k))
        elseif tx == "function" and is_object then
          -- obj:method() through the view runs on the object
          local b = bound[x]
          if not b then
            b = function(first, ...)
              if first == self then
                first = t
              end
              return x(first, ...)
            end
            bound[x] = b
          end
          return b
        end
        return x
      end,
      __newindex = function(_, k, x)
        if t == real_ngx and NGX_WRITABLE[k] then
          t[k] = x
          return
        end
        error(fmt("Cannot modify %s.%s. Protected by the sandbox.", path,
                  tostring(k)), 2)
      end,
      __tostring = function()
        return path
      end,
      __metatable = false,
    }
    local tmt = getmetatable(t)
    if type(tmt) == "table" and tmt.__call then
      mt.__call = function(_, ...)
        return t(...)
      end
    end
    v = setmetatable({}, mt)
    views[t] = v
    return v
  end

  return view
end


-- the environment -------------------------------------------------------------

local function rethrow_exit(ok, ...)
  if not ok and EXIT ~= nil and (...) == EXIT then
    error(EXIT, 0)
  end
  return ok, ...
end


-- pcall and xpcall that let kong.response.exit through (luagate stops a
-- handler on exit by raising a private value: a snippet's pcall around
-- exit would otherwise swallow it)
local function safe_pcall(f, ...)
  return rethrow_exit(pcall(f, ...))
end


local function safe_xpcall(f, handler, ...)
  local function h(e)
    if EXIT ~= nil and e == EXIT then
      return e
    end
    return handler(e)
  end
  return rethrow_exit(xpcall(f, h, ...))
end


-- coroutines: only those the code created may yield; yielding the
-- request's own coroutine would hand control to the runtime
local function coroutine_lib()
  local owned = setmetatable({}, { __mode = "k" })
  local lib = {}
  function lib.create(f)
    local co = co_create(f)
    owned[co] = true
    return co
  end
  function lib.resume(co, ...)
    return rethrow_exit(co_resume(co, ...))
  end
  local function unwrap(ok, ...)
    if not ok then
      error((...), 0)
    end
    return ...
  end
  function lib.wrap(f)
    local co = lib.create(f)
    return function(...)
      return unwrap(co_resume(co, ...))
    end
  end
  function lib.yield(...)
    local co = co_running()
    if not co or not owned[co] then
      error("attempt to yield from outside a coroutine created by the " ..
            "code", 2)
    end
    return co_yield(...)
  end
  lib.running = co_running
  lib.status = co_status
  return lib
end


local function copy_lib(name, fields)
  local src = rawget(_G, name)
  if type(src) ~= "table" then
    local ok, m = pcall(require, name)
    if not ok or type(m) ~= "table" then
      return nil
    end
    src = m
  end
  local out = {}
  for _, f in ipairs(fields) do
    out[f] = src[f]
  end
  return out
end


local function requires_allowed()
  local allowed = {}
  for _, m in ipairs(DEFAULT_REQUIRES) do
    allowed[m] = true
  end
  for _, m in ipairs(list_setting(setting("untrusted_lua_sandbox_requires"))) do
    allowed[m] = true
  end
  return allowed
end


-- A fresh sandbox environment (runtime: kong and ngx views present).
local function sandbox_env()
  local env = {}
  for _, name in ipairs(BASE) do
    env[name] = _G[name]
  end
  env.pcall = safe_pcall
  env.xpcall = safe_xpcall
  for name, fields in pairs(LIBS) do
    env[name] = copy_lib(name, fields)
  end
  for f, modname in pairs(TABLE_EXTRAS) do
    local ok, fn = pcall(require, modname)
    if ok and type(fn) == "function" then
      env.table[f] = fn
    end
  end
  env.coroutine = coroutine_lib()

  local mods, objs = build_sets()
  local view = viewer(mods, objs)
  local kong = rawget(_G, "kong")
  local ngx = rawget(_G, "ngx")
  if kong ~= nil then
    env.kong = view(kong, "kong")
  end
  if ngx ~= nil then
    env.ngx = view(ngx, "ngx")
    env.print = function(...)
      local n = select("#", ...)
      local parts = { ... }
      for i = 1, n do
        parts[i] = tostring(parts[i])
      end
      ngx.log(ngx.NOTICE, table.concat(parts, "\t", 1, n))
    end
  end

  local allowed = requires_allowed()
  env.require = function(modname)
    if type(modname) ~= "string" or not allowed[modname] then
      error(fmt("require '%s' not allowed within sandbox",
                tostring(modname)), 2)
    end
    local m = require(modname)
    if type(m) == "table" then
      walk(m, 1, nil, mods)
      return view(m, modname)
    end
    return m
  end

  env._G = env
  return setmetatable(env, { __metatable = false })
end


local function full_env()
  local env = setmetatable({}, { __index = _G })
  rawset(env, "_G", env)
  return env
end


-- Compiles code (text only) in a new environment for the current mode.
-- Returns the function (not run), or nil and an error. opts.env_only:
-- compile against an empty environment (validation, outside a worker).
function _M.load(code, chunkname, opts)
  if type(code) ~= "string" then
    return nil, "code must be a string"
  end
  local mode = _M.mode()
  if mode == "off" then
    return nil, OFF_MESSAGE
  end
  local env
  if opts and opts.env_only then
    env = {}
  elseif mode == "on" then
    env = full_env()
  else
    env = sandbox_env()
  end
  local fn, err = load(code, chunkname, "t", env)
  if not fn then
    return nil, err
  end
  return fn, nil, env
end


-- Checks that code compiles (it is not run). Returns true or nil, err.
function _M.validate(code, chunkname)
  local fn, err = _M.load(code, chunkname, { env_only = true })
  if not fn then
    return nil, err
  end
  return true
end


-- for specs: forget the module and object sets (a new PDK)
function _M._reset()
  modules, objects = nil, nil
end


return _M
