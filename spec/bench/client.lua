-- Benchmark clients (LuaJIT + luasocket).
--
--   luajit client.lua seq PORT N
--       N sequential GET / on one keepalive connection; exits 1 on an error.
--   luajit client.lua hold PORT N READY_FILE STOP_FILE
--       opens N connections, one GET / on each (kept open), writes
--       READY_FILE, waits for STOP_FILE to appear, then closes them.
local socket = require "socket"

local mode, port, n = arg[1], tonumber(arg[2]), tonumber(arg[3])

-- BENCH_PATH picks the path (default /); the User-Agent is for the plugin
-- benchmark's header read; BENCH_STATUS is the status every response must
-- have (default 200)
local EXTRA = os.getenv("BENCH_HEADER")
local STATUS = tonumber(os.getenv("BENCH_STATUS")) or 200
local REQUEST = "GET " .. (os.getenv("BENCH_PATH") or "/") ..
                " HTTP/1.1\r\nHost: bench\r\nUser-Agent: bench\r\n" ..
                (EXTRA and (EXTRA .. "\r\n") or "") .. "\r\n"

local function read_response(sock)
  local line, err = sock:receive("*l")
  if not line then
    return nil, err
  end
  local status = tonumber(line:match("^HTTP/1%.%d (%d+)"))
  local len
  local chunked = false
  while true do
    line, err = sock:receive("*l")
    if not line then
      return nil, err
    end
    if line == "" then
      break
    end
    local name, value = line:match("^([^:]+):%s*(.-)%s*$")
    name = name and name:lower()
    if name == "content-length" then
      len = tonumber(value)
    elseif name == "transfer-encoding" and value:lower():find("chunked") then
      chunked = true
    end
  end
  if chunked then
    while true do
      local size = tonumber(assert(sock:receive("*l")):match("%x+"), 16)
      if size == 0 then
        assert(sock:receive("*l"))
        break
      end
      assert(sock:receive(size + 2))
    end
  elseif len and len > 0 then
    local _, rerr = sock:receive(len)
    if rerr then
      return nil, rerr
    end
  end
  return status
end

local function connect()
  local sock = socket.tcp()
  sock:settimeout(30)
  local ok, err = sock:connect("127.0.0.1", port)
  if not ok then
    return nil, err
  end
  sock:setoption("tcp-nodelay", true)
  return sock
end

if mode == "seq" then
  local sock = assert(connect())
  for i = 1, n do
    assert(sock:send(REQUEST))
    local status, err = read_response(sock)
    if status ~= STATUS then
      io.stderr:write(("request %d: %s\n"):format(i, tostring(status or err)))
      os.exit(1)
    end
  end
  sock:close()
  os.exit(0)
elseif mode == "hold" then
  local ready, stop = arg[4], arg[5]
  local socks = {}
  local failed = 0
  for i = 1, n do
    local sock, err = connect()
    if sock then
      sock:send(REQUEST)
      local status = read_response(sock)
      if status == 200 then
        socks[#socks + 1] = sock
      else
        failed = failed + 1
        sock:close()
      end
    else
      failed = failed + 1
      if failed == 1 then
        io.stderr:write("connect " .. i .. ": " .. tostring(err) .. "\n")
      end
    end
  end
  local f = assert(io.open(ready, "w"))
  f:write(#socks, " ", failed, "\n")
  f:close()
  while not io.open(stop, "r") do
    socket.sleep(0.1)
  end
  for _, s in ipairs(socks) do s:close() end
  os.exit(0)
else
  io.stderr:write("usage: client.lua seq|hold PORT N [READY STOP]\n")
  os.exit(2)
end
