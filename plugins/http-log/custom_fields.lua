-- custom_fields_by_lua, shared by the logging plugins (file-log, http-log,
-- tcp-log, udp-log, syslog): a map of log field -> Lua code whose return
-- value sets (or, with nil, removes) that field of the log object, with
-- Kong's semantics: the code runs in the log phase, in the sandbox of the
-- `untrusted_lua` setting (kong.plugins.pre-function.sandbox), and each
-- value goes through kong.log.set_serialize_value, so later logging
-- plugins see it too.
--
-- luagate compiles each snippet once per config (in `configure`, or on
-- first use), not per request; the schema refuses code that does not
-- compile.
--
--   local custom_fields = require "kong.plugins.http-log.custom_fields"
--   { custom_fields_by_lua = custom_fields.field() }     -- schema
--   custom_fields.apply(conf)                            -- log phase
--
-- This belongs in kong.tools.sandbox / the PDK once the compat layer has
-- them; it lives here so that the five logging plugins share one copy.

local typedefs = require "kong.db.schema.typedefs"

local type = type
local pairs = pairs
local pcall = pcall
local xpcall = xpcall
local tostring = tostring
local setmetatable = setmetatable
local sort = table.sort
local traceback = debug.traceback


-- the sandbox of pre-function/post-function (Kong's kong.tools.sandbox);
-- the config loader may load schemas before `kong.plugins.*` is
-- requirable: fall back to the file
local sandbox
do
  local ok, m = pcall(require, "kong.plugins.pre-function.sandbox")
  if not ok then
    local src = debug.getinfo(1, "S").source
    local dir = src:match("^@(.*)/[^/]*/[^/]*$") or "."
    m = dofile(dir .. "/pre-function/sandbox.lua")
  end
  sandbox = m
end


local _M = {}


local function chunkname(key)
  return "=custom_fields_by_lua." .. tostring(key)
end


local function validate(code)
  local ok, err = sandbox.validate(code, "=custom_fields_by_lua")
  if not ok then
    return nil, "error parsing custom_fields_by_lua: " .. tostring(err)
  end
  return true
end
_M.validate = validate


-- The schema field (Kong's `typedefs.lua_code`), with a syntax check of
-- each snippet.
function _M.field()
  return typedefs.lua_code {
    description = "A map of log field names to Lua code whose return " ..
                  "value sets (or, when nil, removes) that field of the " ..
                  "log object. Dots in a name make nested fields. The " ..
                  "code runs in the log phase, in the sandbox of the " ..
                  "`untrusted_lua` setting.",
    values = {
      type = "string",
      len_min = 1,
      custom_validator = validate,
    },
  }
end


-- conf -> { n = count, keys = { sorted }, fns = { key -> function } }
local compiled = setmetatable({}, { __mode = "k" })


local function compile(conf)
  local map = conf.custom_fields_by_lua
  local c = { n = 0, keys = {}, fns = {}, errs = {} }
  if type(map) == "table" then
    for key, code in pairs(map) do
      if type(code) == "string" then
        local fn, err = sandbox.load(code, chunkname(key))
        c.n = c.n + 1
        c.keys[c.n] = key
        if fn then
          c.fns[key] = fn
        else
          c.errs[key] = err
        end
      end
    end
    sort(c.keys)
  end
  compiled[conf] = c
  return c
end


-- Compiles the snippets of each conf (a `configure` hook calls it with
-- every config of its plugin).
function _M.prepare(configs)
  if type(configs) ~= "table" then
    return
  end
  for _, conf in pairs(configs) do
    if type(conf) == "table" and conf.custom_fields_by_lua then
      compile(conf)
    end
  end
end


local function on_error(e)
  return traceback(tostring(e), 2)
end


-- Runs conf's snippets (log phase) and sets their values with
-- kong.log.set_serialize_value, in the keys' order. A snippet that fails
-- is logged and leaves its field alone; the log entry is still sent.
function _M.apply(conf)
  local map = conf.custom_fields_by_lua
  if map == nil or type(map) ~= "table" then
    return
  end
  local c = compiled[conf] or compile(conf)
  if c.n == 0 then
    return
  end
  local set = kong.log.set_serialize_value
  for i = 1, c.n do
    local key = c.keys[i]
    local fn = c.fns[key]
    if fn then
      local ok, value = xpcall(fn, on_error)
      if ok then
        local tv = type(value)
        if tv == "function" or tv == "userdata" or tv == "thread" or
           tv == "cdata" then
          kong.log.err("custom_fields_by_lua '", key, "' returned a ",
                       tv, "; field left unchanged")
        else
          set(key, value)
        end
      else
        kong.log.err("custom_fields_by_lua '", key, "' failed: ", value)
      end
    else
      kong.log.err("custom_fields_by_lua '", key, "' could not be ",
                   "loaded: ", c.errs[key])
    end
  end
end


return _M
