-- luagate.redis: a Redis client for plugin code on hiredis's async API
-- (runtime/src/redis.c). Connections are per worker, one multiplexed
-- connection per host:port:db:user, made on first use (AUTH and SELECT
-- first) and remade after a failure.
--
--   local redis = require "luagate.redis"
--   local red = redis.new({ host = "127.0.0.1", port = 6379, db = 0,
--                           password = nil, username = nil, timeout = 1000 })
--   local ok, err = red:set("k", "v")            -- "OK"
--   local v = red:get("k")                       -- "v", or ngx.null
--   local n = red:incr("counter")                -- a number
--   local res, err = red:command("HSET", "h", "f", "v")
--   local replies = red:pipeline(function(p)
--     p:incr("a"); p:expire("a", 60)
--   end)                                         -- { 1, 1 }
--   local v = red:script("return redis.call('GET', KEYS[1])", 1, "k")
--   red:close()
--
-- Replies: status -> string ("OK"), integer -> number, bulk -> string,
-- nil -> ngx.null (cjson.null), array -> table. An error reply gives
-- nil, "ERR ..."; in a pipeline, and nested in arrays, it is the item
-- { false, "ERR ..." } (lua-resty-redis's convention). A dead Redis gives
-- nil, err at once (connection refused) or within `timeout` ms; a timeout
-- closes the connection (the next command makes a new one).

local ffi = require "ffi"
local gw = require "luagate.ffi"
local request = require "luagate.request"
require "luagate.io_cdefs"

local type = type
local error = error
local select = select
local pairs = pairs
local pcall = pcall
local tostring = tostring
local tonumber = tonumber
local setmetatable = setmetatable
local rawget = rawget
local upper = string.upper
local lower = string.lower
local fmt = string.format
local byte = string.byte
local find = string.find
local ffi_new = ffi.new
local ffi_string = ffi.string

local C = gw.C
local OK, AGAIN = gw.OK, gw.AGAIN

local err_p = ffi_new("const char *[1]")
local ip_buf = ffi_new("char[64]")
local argc_t = ffi.typeof("int[?]")
local argv_t = ffi.typeof("const char *[?]")
local argvlen_t = ffi.typeof("size_t[?]")

local DEFAULT_TIMEOUT = 1000 -- ms
local NO_COSOCKET = {
  header_filter = true, body_filter = true, log = true, init_worker = true,
}

local _M = { null = ffi.cast("void *", nil) }
-- ngx.null and cjson.null are a NULL light userdata: that is what the C
-- side pushes for nil replies
do
  local ok, cjson = pcall(require, "cjson")
  if ok then
    _M.null = cjson.null
  end
end

-- Commands that may block their connection: they get one of their own.
local BLOCKING = {
  BLPOP = true, BRPOP = true, BRPOPLPUSH = true, BLMOVE = true,
  BLMPOP = true, BZPOPMIN = true, BZPOPMAX = true, BZMPOP = true,
  WAIT = true, XREAD = "BLOCK", XREADGROUP = "BLOCK",
}

local mt = {}
local Pipe = {}


local function errstr(default)
  local e = err_p[0]
  if e ~= nil then
    return ffi_string(e)
  end
  return default or "unknown error"
end


local function cur_request()
  local r = request.cur
  if r == nil or r.lctx == nil then
    return nil, "no request found"
  end
  if NO_COSOCKET[r.phase] then
    return nil, "API disabled in the context of " .. tostring(r.phase)
  end
  return r
end


local function sha1_hex(s)
  local codec = require "luagate.ngx.codec"
  return codec.to_hex(codec.sha1_bin(s))
end


function _M.new(opts)
  opts = opts or {}
  if type(opts) ~= "table" then
    error("bad argument #1 to 'new' (table expected)", 2)
  end
  local host = opts.host or "127.0.0.1"
  local port = tonumber(opts.port) or 6379
  local db = tonumber(opts.db) or 0
  local user = opts.username
  local password = opts.password
  local self = {
    host = host,
    port = port,
    db = db,
    username = user,
    password = password,
    timeout = tonumber(opts.timeout) or DEFAULT_TIMEOUT,
    key = fmt("%s:%d:%d:%s:%s", host, port, db, user or "",
              password and sha1_hex(password) or ""),
  }
  return setmetatable(self, mt)
end


-- Argument arrays for gw_ffi_redis_exec, reused by every call (the runtime
-- copies the arguments before it returns) and grown as needed: an array
-- per call cost the common one-command call three allocations.
local scratch_n = 0
local scratch_argc, scratch_argv, scratch_len

local function scratch(ncmds, total)
  local n = ncmds > total and ncmds or total
  if n > scratch_n then
    scratch_n = n < 32 and 32 or n
    scratch_argc = argc_t(scratch_n)
    scratch_argv = argv_t(scratch_n)
    scratch_len = argvlen_t(scratch_n)
  end
  return scratch_argc, scratch_argv, scratch_len
end


-- The address of host: GW_OK with ip_buf filled, or nil, err. IP literals
-- and cached names answer at once; a lookup waits.
local function resolve(r, host)
  err_p[0] = nil
  local rc = C.gw_ffi_redis_resolve(r.lctx, host, ip_buf, 64, err_p)
  -- a loop only while a lookup is pending: the usual call runs none (the
  -- JIT blacklists a loop left at once on every call)
  while rc == AGAIN do
    request.await(r)
    err_p[0] = nil
    rc = C.gw_ffi_redis_resolve(r.lctx, host, ip_buf, 64, err_p)
  end
  if rc ~= OK then
    return nil, "could not resolve " .. host .. ": " .. errstr()
  end
  return rc
end


-- Puts command cmd's arguments in argv and argvlen from index k; returns
-- the next index.
local function put_args(cmd, argv, argvlen, k)
  for j = 1, #cmd do
    local a = cmd[j]
    argv[k] = a
    argvlen[k] = #a
    k = k + 1
  end
  return k
end


-- Hands the ncmds commands in argc/argv/argvlen to the runtime and waits
-- for the replies: the raw replies table, or nil, err.
local function submit(self, r, ncmds, argc, argv, argvlen, dedicated)
  local ok, err = resolve(r, self.host)
  if not ok then
    return nil, err
  end
  err_p[0] = nil
  local rc = C.gw_ffi_redis_exec(r.lctx, self.key, ip_buf,
                                 self.port, rawget(self, "username"),
                                 rawget(self, "password"), self.db,
                                 ncmds, argc, argv, argvlen, self.timeout,
                                 dedicated and 1 or 0, err_p)
  if rc == AGAIN then
    local replies, werr = request.await(r)
    if not replies then
      return nil, werr
    end
    return replies
  end
  return nil, errstr()
end


-- Sends the commands (a list of argument lists) and returns the raw
-- replies table, or nil, err. One command (the usual call) runs no loop
-- over the commands.
local function exec(self, cmds, dedicated, ncmds)
  local r, err = cur_request()
  if not r then
    error(err, 3)
  end

  ncmds = ncmds or #cmds
  local first = cmds[1]
  local total = #first
  for i = 2, ncmds do
    total = total + #cmds[i]
  end
  local argc, argv, argvlen = scratch(ncmds, total)
  argc[0] = #first
  local k = put_args(first, argv, argvlen, 0)
  for i = 2, ncmds do
    local cmd = cmds[i]
    argc[i - 1] = #cmd
    k = put_args(cmd, argv, argvlen, k)
  end
  return submit(self, r, ncmds, argc, argv, argvlen, dedicated)
end


local function args_of(name, ...)
  local n = select("#", ...)
  local cmd = { name }
  for i = 1, n do
    local a = select(i, ...)
    local ta = type(a)
    if ta == "string" then
      cmd[i + 1] = a
    elseif ta == "number" then
      -- integers exactly (doubles hold them up to 2^53), others with
      -- enough digits to round-trip
      if a == a and a % 1 == 0 and a < 9007199254740992 and a > -9007199254740992 then
        cmd[i + 1] = fmt("%d", a)
      else
        cmd[i + 1] = fmt("%.17g", a)
      end
    elseif ta == "boolean" then
      cmd[i + 1] = a and "1" or "0"
    elseif ta == "nil" then
      error("bad argument #" .. i .. " to '" .. lower(name) ..
            "' (nil value)", 3)
    else
      cmd[i + 1] = tostring(a)
    end
  end
  return cmd
end


local function is_error(v)
  return type(v) == "table" and v[1] == false and type(v[2]) == "string"
end


-- The reply of a one-command exchange (replies, or nil, err): the reply,
-- or nil, err (an error reply's message)
local function first_reply(replies, err)
  if not replies then
    return nil, err
  end
  local v = replies[1]
  if is_error(v) then
    return nil, v[2]
  end
  return v
end


-- red:command(name, ...) -> reply, or nil, err
function mt.command(self, name, ...)
  if type(name) ~= "string" then
    error("bad argument #1 to 'command' (string expected)", 2)
  end
  name = upper(name)
  local blocking = BLOCKING[name]
  if blocking == "BLOCK" then -- XREAD/XREADGROUP: only with BLOCK
    blocking = false
    for i = 1, select("#", ...) do
      local a = select(i, ...)
      if type(a) == "string" and upper(a) == "BLOCK" then
        blocking = true
        break
      end
    end
  end
  return first_reply(exec(self, { args_of(name, ...) }, blocking))
end


-- red:command_argv(argv, n) -> reply, or nil, err: the command whose name
-- (in capitals, not a blocking one) and arguments are the strings
-- argv[1..n]. For plugins that send the same command on every request
-- from an array they keep: no argument list is built, no argument
-- converted; red:command does both for every call.
function mt.command_argv(self, argv, n)
  local r, err = cur_request()
  if not r then
    error(err, 2)
  end
  if type(n) ~= "number" or n < 1 or n % 1 ~= 0 then
    error("bad argument #2 to 'command_argv' (a count of 1 or more " ..
          "expected)", 2)
  end
  local argc, cargv, argvlen = scratch(1, n)
  argc[0] = n
  for j = 1, n do
    local a = argv[j]
    if type(a) ~= "string" then
      error("bad argument #1 to 'command_argv' (argv[" .. j .. "]: " ..
            "string expected, got " .. type(a) .. ")", 2)
    end
    cargv[j - 1] = a
    argvlen[j - 1] = #a
  end
  return first_reply(submit(self, r, 1, argc, cargv, argvlen, false))
end


-- red:pipeline_argv(cmds, n) -> array of replies (an error reply is
-- { false, "ERR ..." }), or nil, err when the exchange failed: the n
-- commands cmds[1..n], each an array of strings as command_argv takes
-- (not a blocking command), sent at once. For plugins that batch commands
-- of their own: cmds may be longer than n, the rest is left alone.
function mt.pipeline_argv(self, cmds, n)
  if type(cmds) ~= "table" then
    error("bad argument #1 to 'pipeline_argv' (table expected)", 2)
  end
  if type(n) ~= "number" or n < 1 or n % 1 ~= 0 or n > #cmds then
    error("bad argument #2 to 'pipeline_argv' (a count from 1 to #cmds " ..
          "expected)", 2)
  end
  for i = 1, n do
    local cmd = cmds[i]
    if type(cmd) ~= "table" or #cmd == 0 then
      error("bad argument #1 to 'pipeline_argv' (cmds[" .. i .. "]: " ..
            "a non-empty array expected)", 2)
    end
    for j = 1, #cmd do
      if type(cmd[j]) ~= "string" then
        error("bad argument #1 to 'pipeline_argv' (cmds[" .. i .. "][" ..
              j .. "]: string expected, got " .. type(cmd[j]) .. ")", 2)
      end
    end
  end
  return exec(self, cmds, false, n)
end


-- red:pipeline(function(p) p:incr("a"); p:expire("a", 60) end)
-- -> array of replies (an error reply is { false, "ERR ..." }), or nil, err
-- when the exchange failed.
function mt.pipeline(self, fn)
  local p = setmetatable({ cmds = {} }, Pipe)
  fn(p)
  if #p.cmds == 0 then
    return {}
  end
  return exec(self, p.cmds)
end


-- red:eval(src, nkeys, ...), red:evalsha(sha, nkeys, ...)
-- red:script(src, nkeys, ...): EVALSHA, and EVAL when Redis answers
-- NOSCRIPT (the script is then cached by Redis).
-- script source -> its SHA-1, computed once per source (plugins use a few
-- fixed scripts)
local script_sha = {}

function mt.script(self, src, nkeys, ...)
  local sha = script_sha[src]
  if not sha then
    sha = sha1_hex(src)
    script_sha[src] = sha
  end
  local v, err = mt.command(self, "EVALSHA", sha, nkeys or 0, ...)
  if v == nil and err and find(err, "NOSCRIPT", 1, true) == 1 then
    return mt.command(self, "EVAL", src, nkeys or 0, ...)
  end
  return v, err
end


-- Nothing to release: connections are shared by the worker.
function mt.close()
  return 1
end
mt.set_keepalive = mt.close


-- lua-resty-redis style: red:connect(host, port, opts) retargets self.
function mt.connect(self, host, port, opts)
  local n = _M.new({
    host = host, port = port,
    db = opts and opts.db or self.db,
    username = opts and opts.username or rawget(self, "username"),
    password = opts and opts.password or rawget(self, "password"),
    timeout = self.timeout,
  })
  for k, v in pairs(n) do
    self[k] = v
  end
  return 1
end


function mt.set_timeout(self, ms)
  self.timeout = tonumber(ms) or self.timeout
  return 1
end
mt.set_timeouts = function(self, c, s, r)
  self.timeout = tonumber(r) or tonumber(s) or tonumber(c) or self.timeout
  return 1
end


-- The method of a command without one of its own (red:hset(...)).
local function command_method(name)
  local cmd = upper(name)
  return function(s, ...)
    return mt.command(s, cmd, ...)
  end
end


-- Method lookups (red:command, red:get...) run this on every call: it
-- makes no closure itself (a closure in the same function, even on a path
-- not taken, stops the JIT at its "return m": NYI bytecode UCLO).
mt.__index = function(self, name)
  local m = rawget(mt, name)
  if m then
    return m
  end
  if type(name) ~= "string" or byte(name, 1) == 95 then -- "_"
    return nil
  end
  local f = command_method(name)
  mt[name] = f
  return f
end


Pipe.__index = function(p, name)
  if type(name) ~= "string" then
    return nil
  end
  local cmd = upper(name)
  return function(pp, ...)
    if cmd == "COMMAND" then
      local args = { ... }
      pp.cmds[#pp.cmds + 1] = args_of(upper(args[1]),
                                      select(2, ...))
    else
      pp.cmds[#pp.cmds + 1] = args_of(cmd, ...)
    end
    return true
  end
end


-- Live Redis connections of this worker.
function _M.conn_count()
  return C.gw_ffi_redis_conn_count()
end

_M.is_error = is_error

return _M
