-- The handler of pre-function and post-function: runs the configured Lua
-- code of each phase, in order. Code is compiled once per config table (in
-- configure, when the config loads, or on first use), each snippet in its
-- own environment (sandbox.lua). As in Kong, each chunk is run once when
-- compiled: when it returns a function (Kong 2.x+ style), that function is
-- what runs on every request (its upvalues live as long as the config);
-- otherwise the chunk itself runs on every request. Functions are called
-- with no arguments. An error fails the request as any plugin error does
-- (500 in rewrite and access; logged in the later phases).

local sandbox = require "kong.plugins.pre-function.sandbox"

local type = type
local pcall = pcall
local ipairs = ipairs
local error = error
local setmetatable = setmetatable

local PHASES = {
  "certificate", "rewrite", "access", "header_filter", "body_filter", "log",
}


return function(plugin_name, priority)

  -- The function running the snippets of one phase, or false.
  local function compile_phase(list, phase)
    if type(list) ~= "table" or #list == 0 then
      return false
    end
    local fns = {}
    for i, code in ipairs(list) do
      local chunk, err = sandbox.load(code)
      if not chunk then
        error("[" .. plugin_name .. "] could not load config." .. phase ..
              "[" .. (i - 1) .. "]: " .. tostring(err), 0)
      end
      local ok, res = pcall(chunk)
      if ok and type(res) == "function" then
        fns[i] = res
      else
        fns[i] = chunk
      end
    end
    if #fns == 1 then
      return fns[1]
    end
    local n = #fns
    return function()
      for i = 1, n do
        fns[i]()
      end
    end
  end

  local cache = setmetatable({}, { __mode = "k" })

  local function compiled(conf)
    local c = cache[conf]
    if c then
      return c
    end
    c = {}
    for _, phase in ipairs(PHASES) do
      c[phase] = compile_phase(conf[phase], phase)
    end
    cache[conf] = c
    return c
  end

  local ServerlessFunction = {
    PRIORITY = priority,
    VERSION = "3.10.0",
  }

  function ServerlessFunction:configure(configs)
    for _, conf in ipairs(configs or {}) do
      compiled(conf)
    end
  end

  for _, phase in ipairs(PHASES) do
    ServerlessFunction[phase] = function(_, conf)
      local fn = compiled(conf)[phase]
      if fn then
        return fn()
      end
    end
  end

  return ServerlessFunction
end
