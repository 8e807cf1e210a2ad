-- The entry point the C runtime calls to load a configuration: validates the
-- declarative file, loads the plugins' handlers (reloading changed plugin
-- files), builds the plugin plans and ranks the routes for the C router.
local config = require "luagate.config"
local router = require "luagate.router"
local slice = require "luagate.slice"
local plugins = require "luagate.plugins"

local ipairs = ipairs
local pairs = pairs
local pcall = pcall
local error = error
local collectgarbage = collectgarbage
local tostring = tostring
local concat = table.concat
local fmt = string.format

local _M = {}

local initialized = {} -- handler table -> true once init_worker ran


local function log(level, msg)
  local ok, lffi = pcall(require, "luagate.ffi")
  if ok and lffi.available then
    lffi.C.gw_ffi_log(level, msg, #msg)
  end
end


-- Runs init_worker for handlers new to this worker and configure(configs)
-- for every plugin, as Kong does on each plugins-iterator rebuild.
local function start_handlers(conf)
  local by_name = {}
  for _, p in ipairs(conf.plugins or {}) do
    if p.enabled ~= false then
      local list = by_name[p.name] or {}
      list[#list + 1] = p.config
      by_name[p.name] = list
    end
  end
  for name, e in pairs(conf._handlers or {}) do
    local h = e.handler
    if not initialized[h] and type(h.init_worker) == "function" then
      initialized[h] = true
      local ok, err = pcall(h.init_worker, h)
      if not ok then
        log(4, fmt("[%s] init_worker failed: %s", name, tostring(err)))
      end
    end
    if type(h.configure) == "function" then
      local ok, err = pcall(h.configure, h, by_name[name])
      if not ok then
        log(4, fmt("[%s] configure failed: %s", name, tostring(err)))
      end
    end
  end
end


-- Returns conf, router_entries; or nil, text with one error per line.
-- opts: prefix, plugins_dirs, worker (true in a worker: run init_worker).
local function load(path, opts)
  require "luagate.boot"
  local dirs = { opts.prefix .. "/plugins" }
  for _, d in ipairs(opts.plugins_dirs or {}) do
    dirs[#dirs + 1] = d
  end
  local changed = plugins.refresh(dirs, opts.plugins_legacy)
  if #changed > 0 then
    log(6, "plugin code changed, reloaded: " .. concat(changed, ", "))
  end
  local conf, errs = config.load_file(path, { plugins_dirs = dirs })
  if not conf then
    if type(errs) == "table" then
      return nil, concat(errs, "\n")
    end
    return nil, tostring(errs)
  end
  -- `_luagate: { plugins_legacy: true }` in the config turns on the
  -- loader's Kong 1.x/2.x mode before the handlers load
  local legacy = opts.plugins_legacy or
                 (conf.luagate and conf.luagate.plugins_legacy) or false
  if legacy ~= plugins.legacy then
    plugins.refresh(dirs, legacy)
  end
  local runloop = require "luagate.runloop"
  local ok, berrs = runloop.build(conf, opts)
  config.shared[conf] = nil
  if not ok then
    local lines = {}
    for _, e in ipairs(berrs) do
      lines[#lines + 1] = path .. ": " .. e
    end
    return nil, concat(lines, "\n")
  end
  if opts.worker then
    require("luagate.db").set_current(conf)
    start_handlers(conf)
    require("luagate.healthcheck").start(conf)
  end
  return conf, router.compile(conf)
end


-- `load` with the garbage collector stopped: a load makes garbage in
-- bursts (parse tree, validation copies) and collecting it while the
-- worker's loop waits costs a quarter of the load's time; the collector
-- takes it afterwards, in its incremental steps between requests.
function _M.load(path, opts)
  collectgarbage("stop")
  local ok, conf, entries = pcall(load, path, opts)
  collectgarbage("restart")
  if not ok then
    error(conf, 0)
  end
  return conf, entries
end


-- `load` in a worker's reload, run in its own coroutine
-- (gw_config_load_start): it yields between entities about every 0.1 ms
-- (luagate.slice), so requests go on between the slices. The collector is
-- stopped during the load as in `load` (collecting while the load
-- allocates walked the running config too, again and again: a third of the
-- load's time). First it finishes the collection cycle in progress, in
-- slices: that frees the previous load's garbage and the config it
-- replaced. Without it, with a reload every second and few requests
-- to drive the collector between two loads, no cycle would ever end and
-- every config would stay in memory. A worker that completed a cycle since
-- its last swap (it drives one in slices after each swap: worker.c) passes
-- opts.collect = false: that cycle freed the replaced config, and starting
-- another would walk the running one again.
function _M.load_sliced(path, opts)
  slice.begin()
  config.last_reuse = nil
  -- (a step is about 6 us; the clock is read every 4 points)
  local done = opts.collect == false
  while not done do
    done = collectgarbage("step", 0) or collectgarbage("step", 0)
    slice.point()
  end
  collectgarbage("stop")
  local ok, conf, entries = pcall(load, path, opts)
  collectgarbage("restart")
  slice.finish()
  if not ok then
    error(conf, 0)
  end
  local r = conf and config.last_reuse
  if r then
    log(7, fmt("%d of %d entities validated by the last reload, reused",
               r.reused, r.entities))
  end
  return conf, entries
end


-- A sliced load dropped before its end (gw_config_load_cancel: the worker
-- stops): the collector runs again.
function _M.load_abandoned()
  collectgarbage("restart")
  slice.finish()
end


return _M
