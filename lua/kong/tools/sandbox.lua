-- kong.tools.sandbox: loads user code in a restricted environment, the one
-- pre-function/post-function use (plugins/pre-function/sandbox.lua, after
-- kong.configuration.untrusted_lua: sandbox (default), on, off).
--
--   local sandbox = require "kong.tools.sandbox"
--   local ok, err = sandbox.validate(code)            -- compiles it
--   local ok, err = sandbox.validate_function(code)   -- must return a function
--   local fn = sandbox.parse(code)   -- runs code, returns the function
--                                    -- it returns
--   local fn = sandbox.sandbox(code, opts)            -- the compiled chunk
local type = type
local pcall = pcall
local tostring = tostring

local _M = {}

local impl


local function sb()
  if not impl then
    local ok, m = pcall(require, "kong.plugins.pre-function.sandbox")
    if not ok then
      error("kong.tools.sandbox needs the bundled pre-function plugin's " ..
            "sandbox: " .. tostring(m), 3)
    end
    impl = m
  end
  return impl
end


function _M.sandbox(code, opts)
  local fn, err = sb().load(code, opts and opts.chunk_name or "=sandbox", opts)
  if not fn then
    error(err, 2)
  end
  return fn
end


function _M.validate(code)
  return sb().validate(code)
end


function _M.validate_safe(code)
  local ok, err = pcall(_M.validate, code)
  if not ok then
    return nil, err
  end
  return err == nil and true or ok, err
end


-- parse(code): the function `code` returns (code is run once)
function _M.parse(code)
  local chunk, err = sb().load(code, "=sandbox")
  if not chunk then
    error(err, 2)
  end
  local ok, fn = pcall(chunk)
  if not ok then
    error(fn, 2)
  end
  return fn
end


function _M.validate_function(code)
  local ok, fn = pcall(_M.parse, code)
  if not ok then
    return nil, "Error parsing function: " .. tostring(fn)
  end
  if type(fn) ~= "function" then
    return nil, "Bad return value from function, expected function type, " ..
                "got " .. type(fn)
  end
  return true
end


function _M.sandbox_mode()
  return sb().mode()
end


return _M
