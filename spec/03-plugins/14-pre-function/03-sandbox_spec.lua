-- The pre-/post-function sandbox (plugins/pre-function/sandbox.lua) on its
-- own: what code may reach in each untrusted_lua mode, read-only views of
-- kong and ngx, require's allow-list, coroutines, kong.response.exit
-- through pcall.
local helpers = require "spec.helpers"
local request = require "luagate.request"

local SANDBOX = helpers.root .. "/plugins/pre-function/sandbox.lua"


local function run(sandbox, code)
  local fn, err = sandbox.load(code)
  assert(fn, err)
  return fn()
end


local function fails(sandbox, code)
  local fn, err = sandbox.load(code)
  assert(fn, err)
  local ok, e = pcall(fn)
  assert.is_false(ok, code)
  return tostring(e)
end


insulate("sandbox", function()
  local sandbox
  local set_status, dict

  setup(function()
    _G.LUAGATE_SETTINGS = nil
    dict = { store = {} }
    function dict:get(k) return self.store[k] end
    function dict:set(k, v) self.store[k] = v; return true end
    local log_calls = {}
    _G.kong = {
      request = { get_header = function(name) return "value-of-" .. name end },
      service = { request = { set_header = function() return true end } },
      log = setmetatable({ err = function() end }, {
        __call = function(_, ...) log_calls[#log_calls + 1] = { ... } end,
      }),
      ctx = setmetatable({}, {
        __index = function(_, k) if k == "shared" then return {} end end,
        __newindex = function() error("kong.ctx is read-only", 2) end,
      }),
      cache = setmetatable({ value = "cached" }, { __index = {
        get = function(self) return self.value end,
      } }),
      configuration = setmetatable({}, {
        __index = function() return nil end,
        __newindex = function() error("read-only", 2) end,
      }),
      _log_calls = log_calls,
    }
    _G.ngx = setmetatable({
      say = function() end,
      re = { match = function() return { "m" } end },
      var = setmetatable({}, { __newindex = function(t, k, v)
        rawset(t, "_" .. k, v) end }),
      shared = { d = dict },
      log = function() end,
      NOTICE = 6,
    }, {
      __newindex = function(t, k, v)
        if k == "status" then
          set_status = v
        else
          rawset(t, k, v)
        end
      end,
    })
    sandbox = dofile(SANDBOX)
  end)

  teardown(function()
    _G.kong = nil
    _G.ngx = nil
    _G.LUAGATE_SETTINGS = nil
  end)

  after_each(function()
    _G.LUAGATE_SETTINGS = nil
  end)

  it("defaults to the sandbox mode", function()
    assert.equal("sandbox", sandbox.mode())
  end)

  it("gives the safe standard functions", function()
    assert.same({ "HELLO", 3, "string", 2, 5, "1,2" }, { run(sandbox, [[
      local t = { 2, 1 }
      table.sort(t)
      return string.upper("hello"), math.max(1, 3), type(""),
             select("#", 1, 2), bit.bor(4, 1), table.concat(t, ",")
    ]]) })
    assert.equal("number", run(sandbox, "return type(os.time())"))
    assert.equal("number", run(sandbox, "return type(os.clock())"))
    assert.equal("string", run(sandbox, "return type(os.date('!%Y'))"))
    assert.equal("ok", run(sandbox, "return ({pcall(error, 'x')})[1] " ..
                                    "== false and 'ok'"))
  end)

  it("gives nothing that reaches the system or the VM", function()
    local nil_fields = {
      "os.execute", "os.getenv", "os.exit", "os.remove", "os.rename",
      "os.tmpname", "io.open", "io.popen", "io.lines", "io.read",
      "io.write", "string.dump", "math.randomseed", "jit.off", "jit.flush",
    }
    for _, f in ipairs(nil_fields) do
      assert.is_nil(run(sandbox, "return " .. f), f)
    end
    local nil_globals = {
      "load", "loadstring", "loadfile", "dofile", "debug", "package",
      "setfenv", "getfenv", "rawset", "rawget", "rawequal", "setmetatable",
      "getmetatable", "collectgarbage", "newproxy", "module", "gcinfo",
    }
    for _, g in ipairs(nil_globals) do
      assert.is_nil(run(sandbox, "return " .. g), g)
    end
  end)

  it("keeps each snippet's globals to itself", function()
    run(sandbox, "leaked = 'x'")
    assert.is_nil(rawget(_G, "leaked"))
    assert.is_nil(run(sandbox, "return leaked"))
    local fn = assert(sandbox.load("n = (n or 0) + 1 return n"))
    assert.equal(1, fn())
    assert.equal(2, fn())
    assert.equal("table", run(sandbox, "return type(_G)"))
    assert.is_true(run(sandbox, "x = 1 return _G.x == 1"))
  end)

  it("protects its own environment's metatable", function()
    assert.matches("attempt to call global 'setmetatable'",
                   fails(sandbox, "setmetatable(_G, {})"))
    assert.matches("attempt to call global 'getmetatable'",
                   fails(sandbox, "return getmetatable('').__index"))
  end)

  it("refuses bytecode", function()
    local fn, err = sandbox.load(string.dump(function() return 1 end))
    assert.is_nil(fn)
    assert.equal("attempt to load chunk with wrong mode", err)
  end)

  it("requires only allowed modules, read-only", function()
    assert.equal('{"a":1}', run(sandbox, [[
      return require("cjson").encode({ a = 1 })
    ]]))
    assert.equal("require 'ffi' not allowed within sandbox",
                 (fails(sandbox, "return require('ffi')"):gsub("^.-:%d+: ",
                                                                "")))
    assert.matches("require 'os' not allowed within sandbox",
                   fails(sandbox, "return require('os')"), 1, true)
    assert.matches("require 'luagate.ffi' not allowed",
                   fails(sandbox, "return require('luagate.ffi')"), 1, true)
    assert.matches("Cannot modify cjson.encode. Protected by the sandbox.",
                   fails(sandbox, "require('cjson').encode = nil"), 1, true)
    assert.is_function(require("cjson").encode)
  end)

  it("extends the allow-list with untrusted_lua_sandbox_requires",
     function()
    _G.LUAGATE_SETTINGS = { untrusted_lua_sandbox_requires = "bit, string" }
    assert.equal(5, run(sandbox, "return require('bit').bor(4, 1)"))
    _G.LUAGATE_SETTINGS = { untrusted_lua_sandbox_requires = { "bit" } }
    assert.equal(5, run(sandbox, "return require('bit').bor(4, 1)"))
  end)

  it("gives kong and ngx behind read-only views", function()
    assert.equal("value-of-x",
                 run(sandbox, "return kong.request.get_header('x')"))
    assert.equal("m", run(sandbox, "return ngx.re.match('a', 'a')[1]"))
    assert.matches("Cannot modify kong.request.get_header. Protected by " ..
                   "the sandbox.",
                   fails(sandbox, "kong.request.get_header = nil"), 1, true)
    assert.matches("Cannot modify kong.request. Protected by the sandbox.",
                   fails(sandbox, "kong.request = {}"), 1, true)
    assert.matches("Cannot modify ngx.say. Protected by the sandbox.",
                   fails(sandbox, "ngx.say = print"), 1, true)
    assert.matches("Cannot modify ngx.shared.d. Protected by the sandbox.",
                   fails(sandbox, "ngx.shared.d = nil"), 1, true)
    assert.matches("Cannot modify ngx.shared.d.get. Protected by the " ..
                   "sandbox.", fails(sandbox, "ngx.shared.d.get = nil"), 1,
                   true)
    assert.matches("Cannot modify kong.cache.get. Protected by the " ..
                   "sandbox.", fails(sandbox, "kong.cache.get = nil"), 1,
                   true)
    assert.matches("Cannot modify kong.service.request.set_header",
                   fails(sandbox, "kong.service.request.set_header = nil"),
                   1, true)
    -- the real tables are untouched
    assert.equal("value-of-y", _G.kong.request.get_header("y"))
    assert.is_function(_G.ngx.say)
    assert.equal(dict, _G.ngx.shared.d)
    assert.is_function(_G.kong.cache.get)
    assert.is_function(rawget(dict, "get"))
  end)

  it("lets code use data tables and objects as they are", function()
    run(sandbox, "ngx.status = 418")
    assert.equal(418, set_status)
    run(sandbox, "ngx.var.foo = 'bar'")
    assert.equal("bar", rawget(_G.ngx.var, "_foo"))
    assert.is_true(run(sandbox, "return ngx.shared.d:set('k', 'v')"))
    assert.equal("v", run(sandbox, "return ngx.shared.d:get('k')"))
    assert.equal("v", dict.store.k)
    assert.equal("cached", run(sandbox, "return kong.cache:get('key')"))
    run(sandbox, "kong.log('hello', 1)")
    assert.same({ "hello", 1 }, _G.kong._log_calls[1])
    assert.matches("kong.ctx is read-only",
                   fails(sandbox, "kong.ctx.x = 1"), 1, true)
  end)

  it("lets only the code's own coroutines yield", function()
    assert.matches("attempt to yield from outside a coroutine created by " ..
                   "the code", fails(sandbox, "coroutine.yield(1)"), 1, true)
    assert.same({ 1, 2, 3 }, { run(sandbox, [[
      local gen = coroutine.wrap(function()
        coroutine.yield(1)
        coroutine.yield(2)
        return 3
      end)
      return gen(), gen(), gen()
    ]]) })
    assert.same({ true, "x" }, { run(sandbox, [[
      local co = coroutine.create(function(a) return coroutine.yield(a) end)
      return coroutine.resume(co, "x")
    ]]) })
  end)

  it("lets kong.response.exit through pcall and xpcall", function()
    local wrap = run(sandbox, [[
      return function(f)
        local ok = pcall(f)
        local ok2 = xpcall(f, function(e) return e end)
        local co = coroutine.create(f)
        coroutine.resume(co)
        return "swallowed"
      end
    ]])
    local function exit()
      error(request.EXIT, 0)
    end
    local ok, err = pcall(wrap, exit)
    assert.is_false(ok)
    assert.equal(request.EXIT, err)
    -- other errors are caught as usual
    assert.equal("swallowed", wrap(function() error("plain") end))
  end)

  it("with untrusted_lua = on, gives the whole global environment",
     function()
    _G.LUAGATE_SETTINGS = { untrusted_lua = "on" }
    assert.equal("on", sandbox.mode())
    assert.is_function(run(sandbox, "return os.getenv"))
    assert.is_table(run(sandbox, "return debug"))
    run(sandbox, "written_global = 1")
    assert.is_nil(rawget(_G, "written_global"))
    -- still text only
    local fn, err = sandbox.load(string.dump(function() end))
    assert.is_nil(fn)
    assert.equal("attempt to load chunk with wrong mode", err)
  end)

  it("with untrusted_lua = off, loads nothing", function()
    _G.LUAGATE_SETTINGS = { untrusted_lua = "off" }
    assert.equal("off", sandbox.mode())
    local fn, err = sandbox.load("return 1")
    assert.is_nil(fn)
    assert.equal("loading of untrusted Lua code disabled because " ..
                 "'untrusted_lua' config option is set to 'off'", err)
  end)

  it("reads the mode from kong.configuration first", function()
    _G.LUAGATE_SETTINGS = { untrusted_lua = "off" }
    local conf = _G.kong.configuration
    _G.kong.configuration = { untrusted_lua = "on" }
    local mode = sandbox.mode()
    _G.kong.configuration = conf
    assert.equal("on", mode)
  end)
end)
