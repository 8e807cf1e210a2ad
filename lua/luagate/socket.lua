-- ngx.socket.tcp(): cosockets over the C primitives of
-- runtime/src/cosocket.c (connect, send-all, recv-some, keepalive pool).
-- The receive patterns are built here on a per-socket string.buffer.
--
--   local sock = require("luagate.socket").tcp()
--   sock:settimeouts(1000, 1000, 5000)           -- ms: connect, send, read
--   local ok, err = sock:connect("127.0.0.1", 6379, { pool = "mine" })
--   local bytes, err = sock:send({ "PING", "\r\n" })
--   local line, err, partial = sock:receive("*l")
--   sock:setkeepalive(60000, 30)                 -- back to the pool
--
-- Errors are lua-nginx-module's: nil, "timeout" / "closed" /
-- "connection refused" ..., with the partial data as third value for
-- receive. A socket belongs to the request (or timer) that created it and is
-- closed when it ends, unless put in the keepalive pool before.
--
-- Waiting: an operation that cannot finish at once leaves the socket with an
-- operation under way and the coroutine waits (gw_ffi_sock_wait). Inside a
-- light thread of _M.parallel() the wait yields to the scheduler instead,
-- which waits for the first of all its threads' sockets at once: that is how
-- luagate.http runs requests in parallel (one coroutine may wait for one
-- operation only).

local ffi = require "ffi"
local buffer = require "string.buffer"
local gw = require "luagate.ffi"
local request = require "luagate.request"
require "luagate.io_cdefs"

local type = type
local error = error
local tostring = tostring
local tonumber = tonumber
local setmetatable = setmetatable
local select = select
local pairs = pairs
local ipairs = ipairs
local unpack = unpack
local concat = table.concat
local maxn = table.maxn
local find = string.find
local gsub = string.gsub
local sub = string.sub
local floor = math.floor
local co_create = coroutine.create
local co_resume = coroutine.resume
local co_running = coroutine.running
local co_status = coroutine.status
local yield = coroutine.yield
local ffi_string = ffi.string
local ffi_new = ffi.new
local ffi_gc = ffi.gc
local cast = ffi.cast

local C = gw.C
local OK, ERROR, AGAIN, DONE, DECLINED = gw.OK, gw.ERROR, gw.AGAIN, gw.DONE,
                                         gw.DECLINED

local str_p = ffi_new("const char *[1]")
local len_p = ffi_new("size_t[1]")
local err_p = ffi_new("const char *[1]")
local int_p = ffi_new("int[1]")
local id_buf = ffi_new("int[1]")
local char_p_t = ffi.typeof("const char *")
local sess_ptr_t = ffi.typeof("struct gw_tls_client_sess *")

local DEFAULT_TIMEOUT = 60000   -- ms, lua_socket_*_timeout
local DEFAULT_KEEPALIVE = 60000 -- ms, lua_socket_keepalive_timeout
local DEFAULT_POOL_SIZE = 30    -- lua_socket_pool_size
local RECV_CHUNK = 16384
local WAIT = {} -- what a light thread yields to its scheduler

local NO_COSOCKET = {
  header_filter = true, body_filter = true, log = true, init_worker = true,
}

local _M = {}

-- light threads: coroutine -> its thread record (weak keys)
local threads = setmetatable({}, { __mode = "k" })


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


-- Waits for the operation under way on socket id; returns OK or
-- ERROR, err.
local function wait_op(r, id)
  local th = threads[co_running()]
  if th then
    return yield(WAIT, id)
  end
  id_buf[0] = id
  err_p[0] = nil
  local rc = C.gw_ffi_sock_wait(r.lctx, id_buf, 1, int_p, err_p)
  if rc == AGAIN then
    local _, rc2, err = request.await(r)
    return rc2, err
  elseif rc == ERROR then
    return ERROR, errstr()
  end
  return OK -- finished already, or nothing was under way
end
_M._wait_op = wait_op


local Sock = {}
Sock.__index = Sock


-- ngx.socket.tcp()
function _M.tcp()
  local r, err = cur_request()
  if not r and err ~= "no request found" then
    error(err, 2)
  end
  local s = setmetatable({
    id = nil,
    rb = buffer.new(),
    connect_timeout = DEFAULT_TIMEOUT,
    send_timeout = DEFAULT_TIMEOUT,
    read_timeout = DEFAULT_TIMEOUT,
    reused = 0,
  }, Sock)
  local th = threads[co_running()]
  if th then
    th.socks[#th.socks + 1] = s
  end
  return s
end


function Sock:settimeout(ms)
  ms = tonumber(ms) or 0
  self.connect_timeout, self.send_timeout, self.read_timeout = ms, ms, ms
end


function Sock:settimeouts(connect, send, read)
  self.connect_timeout = tonumber(connect) or self.connect_timeout
  self.send_timeout = tonumber(send) or self.send_timeout
  self.read_timeout = tonumber(read) or self.read_timeout
end


function Sock:setoption()
  return true
end


function Sock:close()
  local id = self.id
  if not id then
    return nil, "closed"
  end
  self.id = nil
  self.rb:reset()
  C.gw_ffi_sock_close(id)
  return 1
end


function Sock:connect(host, port, opts)
  if type(host) ~= "string" then
    error("bad argument #1 to 'connect' (string expected)", 2)
  end
  if sub(host, 1, 5) == "unix:" then
    return nil, "unix domain sockets are not supported"
  end
  if type(port) == "table" and opts == nil then
    opts, port = port, nil
  end
  port = tonumber(port)
  if not port then
    error("bad argument #2 to 'connect' (number expected)", 2)
  end
  local r, err = cur_request()
  if not r then
    error(err, 2)
  end
  if self.id then
    self:close()
  end
  err_p[0] = nil
  local id = C.gw_ffi_sock_open(r.lctx, err_p)
  if id < 0 then
    return nil, errstr()
  end
  self.id = id
  self.rb:reset()
  local key = opts and opts.pool or (host .. ":" .. port)
  self.pool = key
  err_p[0] = nil
  local rc = C.gw_ffi_sock_connect(r.lctx, id, host, floor(port), key,
                                   self.connect_timeout, int_p, err_p)
  if rc == AGAIN then
    rc, err = wait_op(r, id)
  elseif rc == OK then
    self.reused = int_p[0]
    return 1
  else
    err = errstr()
  end
  if rc ~= OK then
    if self.id == id then
      self:close()
    end
    return nil, err
  end
  self.reused = 0
  return 1
end


function Sock:getreusedtimes()
  if not self.id then
    return nil, "closed"
  end
  return self.reused
end


-- sock:sslhandshake(reused_session?, server_name?, ssl_verify?,
--                   send_status_req?) -> session | true, or nil, err
-- (lua-nginx-module). The handshake waits like the other operations, within
-- the connect timeout. ssl_verify checks the certificate against
-- --lua-ssl-trusted-certificate (or the system store) and server_name.
-- The session returned (unless reused_session is false) may be given to a
-- later handshake to resume it. A failed handshake closes the socket.
function Sock:sslhandshake(reused_session, server_name, ssl_verify,
                           send_status_req)
  local id = self.id
  if not id then
    return nil, "closed"
  end
  if server_name ~= nil and type(server_name) ~= "string" then
    error("bad argument #2 to 'sslhandshake' (string expected)", 2)
  end
  local r, err = cur_request()
  if not r then
    error(err, 2)
  end
  local sess = ffi.istype(sess_ptr_t, reused_session) and reused_session or nil
  err_p[0] = nil
  int_p[0] = 0
  local rc = C.gw_ffi_sock_sslhandshake(r.lctx, id, sess, server_name,
                                        ssl_verify and 1 or 0,
                                        send_status_req and 1 or 0,
                                        self.connect_timeout, int_p, err_p)
  if rc == OK then
    self.reused = int_p[0] -- an idle TLS connection of this identity
  elseif rc == AGAIN then
    rc, err = wait_op(r, id)
  else
    err = errstr()
  end
  if rc ~= OK then
    if self.id == id then
      self:close()
    end
    return nil, err
  end
  if reused_session == false then
    return true
  end
  local p = C.gw_ffi_sock_ssl_session(id)
  if p == nil then
    return true
  end
  return ffi_gc(p, C.gw_ffi_ssl_session_free)
end


local function flatten(t, out)
  for i = 1, #t do
    local v = t[i]
    local tv = type(v)
    if tv == "table" then
      flatten(v, out)
    elseif tv == "string" or tv == "number" then
      out[#out + 1] = v
    elseif tv == "boolean" then
      out[#out + 1] = tostring(v)
    else
      error("bad data type " .. tv .. " in the table", 3)
    end
  end
  return out
end


function Sock:send(data)
  local id = self.id
  if not id then
    return nil, "closed"
  end
  local td = type(data)
  if td == "table" then
    data = concat(flatten(data, {}))
  elseif td == "number" or td == "boolean" then
    data = tostring(data)
  elseif td ~= "string" then
    error("bad argument #1 to 'send' (string, number or table expected)", 2)
  end
  local r, err = cur_request()
  if not r then
    error(err, 2)
  end
  err_p[0] = nil
  local rc = C.gw_ffi_sock_send(r.lctx, id, data, #data, self.send_timeout,
                                err_p)
  if rc == AGAIN then
    rc, err = wait_op(r, id) -- `data` stays referenced while C writes it
  elseif rc ~= OK then
    err = errstr()
  end
  if rc ~= OK then
    if err ~= "timeout" then
      self:close()
    end
    return nil, err
  end
  return #data
end


-- Reads more bytes into the buffer. Returns true, or nil, err.
local function fill(self, r, max)
  local id = self.id
  if not id then
    return nil, "closed"
  end
  while true do
    err_p[0] = nil
    local rc = C.gw_ffi_sock_recv(r.lctx, id, max or RECV_CHUNK,
                                  self.read_timeout, str_p, len_p, err_p)
    if rc == OK then
      self.rb:putcdata(str_p[0], len_p[0])
      return true
    elseif rc == DONE then
      return nil, "closed"
    elseif rc == ERROR then
      return nil, errstr()
    end
    local err
    rc, err = wait_op(r, id)
    if rc ~= OK then
      return nil, err
    end
  end
end


-- A failed read: lua-nginx-module returns the buffered bytes as partial
-- and closes the socket unless the read timed out.
local function read_error(self, err)
  local partial = self.rb:get()
  if err ~= "timeout" then
    local id = self.id
    if id then
      self.id = nil
      C.gw_ffi_sock_close(id)
    end
  end
  return nil, err, partial
end


local function find_byte(rb, byte)
  local p, n = rb:ref()
  if n == 0 then
    return nil
  end
  local q = C.memchr(p, byte, n)
  if q == nil then
    return nil
  end
  return tonumber(cast(char_p_t, q) - p) + 1
end


local function find_str(rb, pat, from)
  local p, n = rb:ref()
  from = from or 1
  if n - (from - 1) < #pat then
    return nil
  end
  local q = C.memmem(p + (from - 1), n - (from - 1), pat, #pat)
  if q == nil then
    return nil
  end
  return tonumber(cast(char_p_t, q) - p) + 1
end


local function receive_line(self, r)
  local rb = self.rb
  while true do
    local i = find_byte(rb, 10)
    if i then
      local line = rb:get(i - 1)
      rb:skip(1)
      if find(line, "\r", 1, true) then
        line = gsub(line, "\r", "")
      end
      return line
    end
    local ok, err = fill(self, r)
    if not ok then
      return read_error(self, err)
    end
  end
end


local function receive_all(self, r)
  while true do
    local ok, err = fill(self, r)
    if not ok then
      if err == "closed" then
        local data = self.rb:get()
        self:close()
        return data
      end
      return read_error(self, err)
    end
  end
end


local function receive_size(self, r, n)
  local rb = self.rb
  while #rb < n do
    local ok, err = fill(self, r, n - #rb)
    if not ok then
      return read_error(self, err)
    end
  end
  return rb:get(n)
end


function Sock:receive(pattern)
  if not self.id then
    return nil, "closed"
  end
  local r, err = cur_request()
  if not r then
    error(err, 2)
  end
  if pattern == nil or pattern == "*l" then
    return receive_line(self, r)
  elseif pattern == "*a" then
    return receive_all(self, r)
  end
  local n = tonumber(pattern)
  if not n then
    error("bad argument #1 to 'receive' (bad pattern argument)", 2)
  end
  n = floor(n)
  if n <= 0 then
    return ""
  end
  return receive_size(self, r, n)
end


function Sock:receiveany(max)
  max = tonumber(max)
  if not max or max <= 0 then
    error("bad argument #1 to 'receiveany' (bad max argument)", 2)
  end
  if not self.id then
    return nil, "closed"
  end
  local r, err = cur_request()
  if not r then
    error(err, 2)
  end
  local rb = self.rb
  if #rb == 0 then
    local ok
    ok, err = fill(self, r, max)
    if not ok then
      return read_error(self, err)
    end
  end
  return rb:get(max < #rb and max or #rb)
end


-- sock:receiveuntil(pattern, { inclusive = bool }) -> reader(size?)
-- reader() returns the data before the pattern (and the pattern itself
-- when inclusive) and consumes the pattern; reader(size) returns chunks of
-- at most size bytes, then nil once the pattern was consumed.
function Sock:receiveuntil(pattern, opts)
  if type(pattern) ~= "string" or pattern == "" then
    error("bad argument #1 to 'receiveuntil' (pattern is empty)", 2)
  end
  local inclusive = opts and opts.inclusive
  local plen = #pattern
  local finished = false
  return function(size)
    if not self.id then
      return nil, "closed"
    end
    local r, err = cur_request()
    if not r then
      error(err, 2)
    end
    local rb = self.rb
    if size then
      size = tonumber(size)
      if finished then
        finished = false
        return nil
      end
    end
    while true do
      local i = find_str(rb, pattern)
      if i then
        if size and i - 1 > size then
          return rb:get(size)
        end
        local data = rb:get(i - 1)
        rb:skip(plen)
        if inclusive then
          data = data .. pattern
        end
        if size then
          if data == "" then
            return nil
          end
          finished = true
        end
        return data
      end
      if size then
        -- bytes that cannot start the pattern are safe to hand out
        local safe = #rb - plen + 1
        if safe >= size then
          return rb:get(size)
        end
      end
      local ok
      ok, err = fill(self, r)
      if not ok then
        return read_error(self, err)
      end
    end
  end
end


function Sock:setkeepalive(timeout, size)
  local id = self.id
  if not id then
    return nil, "closed"
  end
  if #self.rb > 0 then
    self:close()
    return nil, "unread data in buffer"
  end
  self.id = nil
  err_p[0] = nil
  if C.gw_ffi_sock_keepalive(id, tonumber(timeout) or DEFAULT_KEEPALIVE,
                             tonumber(size) or DEFAULT_POOL_SIZE,
                             err_p) ~= OK then
    return nil, errstr()
  end
  return 1
end


-- Idle connections in this worker's keepalive pool.
function _M.pool_count()
  return C.gw_ffi_sock_pool_count()
end


-- Light threads ------------------------------------------------------------

-- Runs fns[i]() each in a light thread until they end; their socket waits
-- are multiplexed into one gw_ffi_sock_wait over all their sockets.
--   mode "all": returns an array of each function's results packed
--               ({ n = count, ... }).
--   mode "any": returns i, packed results of the first function whose
--               first result is truthy; the other threads are aborted (their
--               sockets closed). When none succeeds: nil, the array of
--               packed results.
-- Only socket operations may wait inside these threads (ngx.sleep would
-- not): a thread that yields otherwise fails with an error.
function _M.parallel(fns, mode)
  local r, err = cur_request()
  if not r then
    error(err, 2)
  end
  local n = #fns
  local results = {}
  local ths = {}
  local waiting = {} -- socket id -> thread
  local live = 0

  local function finish(th, ok, ...)
    th.done = true
    live = live - 1
    if ok then
      results[th.i] = { n = select("#", ...), ... }
    else
      results[th.i] = { n = 2, nil, tostring((...)) }
    end
  end

  local function step(th, ...)
    local co = th.co
    local res = { co_resume(co, ...) }
    if not res[1] then
      return finish(th, false, res[2])
    end
    if co_status(co) == "dead" then
      return finish(th, true, unpack(res, 2, maxn(res)))
    end
    if res[2] ~= WAIT then
      return finish(th, false, "only socket operations may wait in a " ..
                    "light thread")
    end
    waiting[res[3]] = th
  end

  local function abort_others()
    for _, th in ipairs(ths) do
      if not th.done then
        th.done = true
        for _, s in ipairs(th.socks) do
          s:close()
        end
      end
    end
  end

  for i = 1, n do
    local co = co_create(fns[i])
    local th = { i = i, co = co, socks = {} }
    threads[co] = th
    ths[i] = th
    live = live + 1
  end
  for i = 1, n do
    step(ths[i])
    if mode == "any" and ths[i].done and results[i][1] then
      abort_others()
      return i, results[i]
    end
  end

  local ids = ffi_new("int[?]", n > 0 and n or 1)
  while live > 0 do
    local k = 0
    for id, th in pairs(waiting) do
      if th.done then
        waiting[id] = nil
      else
        ids[k] = id
        k = k + 1
      end
    end
    if k == 0 then
      break
    end
    err_p[0] = nil
    local rc = C.gw_ffi_sock_wait(r.lctx, ids, k, int_p, err_p)
    local id, werr
    if rc == AGAIN then
      id, rc, werr = request.await(r)
    elseif rc == DECLINED then
      -- none under way any more (closed): wake them all with an error
      id = ids[0]
      rc, werr = ERROR, "closed"
    else
      id = int_p[0]
      werr = rc ~= OK and errstr() or nil
    end
    local th = waiting[id]
    waiting[id] = nil
    if th and not th.done then
      step(th, rc, werr)
      if mode == "any" and th.done and results[th.i][1] then
        abort_others()
        return th.i, results[th.i]
      end
    end
  end
  if mode == "any" then
    return nil, results
  end
  return results
end


return _M
