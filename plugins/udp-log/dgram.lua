-- Datagram sockets through the LuaJIT FFI (libc socket/sendto), for
-- udp-log (UDP over IPv4/IPv6) and syslog (a unix datagram socket such as
-- /dev/log). luagate has no UDP cosocket: a datagram send never waits for
-- the peer, so a non-blocking sendto(MSG_DONTWAIT) from a timer is all it
-- takes; a full socket buffer (EAGAIN) drops the datagram instead of
-- blocking the worker.
--
--   local dgram = require "kong.plugins.udp-log.dgram"
--   local addr, err = dgram.inet_addr("127.0.0.1", 514)   -- or unix_addr
--   local ok, err = dgram.send(addr, "message")
--
-- One socket per address family and worker, opened on first use (CLOEXEC,
-- NONBLOCK) and kept. Linux constants.

local ffi = require "ffi"

local C = ffi.C
local tonumber = tonumber
local tostring = tostring

pcall(ffi.cdef, [[
int socket(int domain, int type, int protocol);
int inet_pton(int af, const char *src, void *dst);
char *strerror(int errnum);
]])
pcall(ffi.cdef, [[
long sendto(int sockfd, const void *buf, size_t len, int flags,
            const void *dest_addr, unsigned int addrlen);
]])
-- our own names: another module may declare the libc structs differently
pcall(ffi.cdef, [[
struct luagate_dgram_in {
  uint16_t family; uint16_t port; uint8_t addr[4]; uint8_t zero[8];
};
struct luagate_dgram_in6 {
  uint16_t family; uint16_t port; uint32_t flowinfo; uint8_t addr[16];
  uint32_t scope_id;
};
struct luagate_dgram_un {
  uint16_t family; char path[108];
};
]])

local AF_UNIX = 1
local AF_INET = 2
local AF_INET6 = 10
local SOCK_DGRAM = 2
local SOCK_NONBLOCK = 0x800
local SOCK_CLOEXEC = 0x80000
local MSG_DONTWAIT = 0x40
local MSG_NOSIGNAL = 0x4000
local EINTR = 4
local EAGAIN = 11

local _M = {
  AF_UNIX = AF_UNIX,
  AF_INET = AF_INET,
  AF_INET6 = AF_INET6,
}

local sockets = {} -- family -> fd


local function errno_string(e)
  return ffi.string(C.strerror(e or ffi.errno()))
end
_M.errno_string = errno_string


local function htons(n)
  return ffi.abi("le") and (n % 256) * 256 + math.floor(n / 256) or n
end


-- The address of an IP literal (IPv4 or IPv6) and port, or nil if host is
-- not an IP literal.
function _M.inet_addr(host, port)
  local a = ffi.new("struct luagate_dgram_in")
  if C.inet_pton(AF_INET, host, a.addr) == 1 then
    a.family = AF_INET
    a.port = htons(port)
    return { family = AF_INET, sa = a, len = ffi.sizeof(a),
             name = host .. ":" .. tostring(port) }
  end
  local a6 = ffi.new("struct luagate_dgram_in6")
  local h6 = host:match("^%[(.*)%]$") or host
  if C.inet_pton(AF_INET6, h6, a6.addr) == 1 then
    a6.family = AF_INET6
    a6.port = htons(port)
    return { family = AF_INET6, sa = a6, len = ffi.sizeof(a6),
             name = "[" .. h6 .. "]:" .. tostring(port) }
  end
  return nil, "not an IP address: " .. tostring(host)
end


-- The IP address of a host name, waiting (yielding) for the worker's
-- resolver if needed: timers only. Returns the address, or nil, err.
-- luagate has no public resolver API (kong.dns, ngx.socket.udp): this
-- uses the one luagate.redis uses.
local ip_buf
function _M.resolve(host)
  if C.inet_pton(AF_INET, host, ffi.new("uint8_t[4]")) == 1 or
     C.inet_pton(AF_INET6, host:match("^%[(.*)%]$") or host,
                 ffi.new("uint8_t[16]")) == 1 then
    return host
  end
  require "luagate.io_cdefs"
  local request = require "luagate.request"
  local r = request.cur
  if not r or not r.lctx then
    return nil, "no timer or request to resolve " .. host .. " in"
  end
  ip_buf = ip_buf or ffi.new("char[64]")
  local err_p = ffi.new("const char *[1]")
  while true do
    local rc = C.gw_ffi_redis_resolve(r.lctx, host, ip_buf, 64, err_p)
    if rc == 0 then
      return ffi.string(ip_buf)
    elseif rc == -2 then -- GW_AGAIN
      request.await(r)
    else
      local e = err_p[0] ~= nil and ffi.string(err_p[0]) or "unknown error"
      return nil, "could not resolve " .. host .. ": " .. e
    end
  end
end


-- The address of a unix datagram socket, or nil, err (path too long).
function _M.unix_addr(path)
  if #path >= 108 then
    return nil, "socket path too long (107 bytes at most): " .. path
  end
  local a = ffi.new("struct luagate_dgram_un")
  a.family = AF_UNIX
  ffi.copy(a.path, path)
  return { family = AF_UNIX, sa = a, len = ffi.sizeof(a), name = path }
end


local function get_socket(family)
  local fd = sockets[family]
  if fd then
    return fd
  end
  fd = C.socket(family, SOCK_DGRAM + SOCK_NONBLOCK + SOCK_CLOEXEC, 0)
  if fd < 0 then
    return nil, "socket() failed: " .. errno_string()
  end
  sockets[family] = fd
  return fd
end


-- Sends one datagram without waiting. Returns true, or nil, err, errno
-- (err "dropped: socket buffer full" when the kernel has no room).
function _M.send(addr, data)
  local fd, err = get_socket(addr.family)
  if not fd then
    return nil, err
  end
  while true do
    local n = tonumber(C.sendto(fd, data, #data,
                                MSG_DONTWAIT + MSG_NOSIGNAL, addr.sa,
                                addr.len))
    if n >= 0 then
      return true
    end
    local e = ffi.errno()
    if e ~= EINTR then
      if e == EAGAIN then
        return nil, "dropped: socket buffer full", e
      end
      return nil, errno_string(e), e
    end
  end
end


return _M
