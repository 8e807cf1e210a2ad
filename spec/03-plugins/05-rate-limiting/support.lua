-- What the rate-limiting specs share: the clock (windows are aligned on
-- it), routes with the plugin, and lists of requests sent at once and
-- their statuses.
local helpers = require "spec.helpers"
local socket = require "socket"

local floor = math.floor

local _M = {}


function _M.now()
  return socket.gettime()
end
local now = _M.now


-- Waits until (now mod size) is in [lo, hi): windows are aligned on the
-- clock, so a spec that must stay inside one window starts where there is
-- room left in it.
function _M.at_phase(size, lo, hi)
  local deadline = now() + size + 2
  while true do
    local m = now() % size
    if m >= lo and m < hi then
      return
    end
    assert(now() < deadline, "clock phase not reached")
    local d = (lo - m) % size
    socket.sleep(math.max(0.001, math.min(d, 0.2)))
  end
end


-- Waits for a window of `size` s after the current one, then until
-- (now mod size) is in [lo, hi): a fresh window, whatever ran before.
function _M.next_window(size, lo, hi)
  local target = (floor(now() / size) + 1) * size + lo
  socket.sleep(math.max(0, target - now()))
  _M.at_phase(size, lo, hi)
end


-- status -> how many of the responses have it
function _M.statuses(list)
  local n = {}
  for _, res in ipairs(list) do
    n[res.status] = (n[res.status] or 0) + 1
  end
  return n
end


-- A route `/name` with the plugin's config, and `extra` route fields.
function _M.rl_route(name, config, extra)
  local r = {
    name = name,
    paths = { "/" .. name },
    plugins = { { name = "rate-limiting", config = config } },
  }
  for k, v in pairs(extra or {}) do
    r[k] = v
  end
  return r
end


-- Sends each request on its own connection, all before reading any
-- answer, so the gateway serves them concurrently; returns the sockets.
-- reqs[i] = { path =, headers =, port = (default `port`) }.
function _M.send_all(reqs, port)
  local socks = {}
  for i, r in ipairs(reqs) do
    local sock = socket.tcp()
    sock:settimeout(15)
    local p = r.port or port
    assert(sock:connect("127.0.0.1", p))
    assert(sock:send((helpers.build_request({ path = r.path,
                                              headers = r.headers },
                                            "127.0.0.1:" .. p))))
    socks[i] = sock
  end
  return socks
end


-- The responses on socks (send_all), in order; closes them.
function _M.read_all(socks)
  local out = {}
  for i, sock in ipairs(socks) do
    out[i] = assert(helpers.read_response(sock, "GET"))
    sock:close()
  end
  return out
end


-- n times the same request
function _M.times(n, req)
  local reqs = {}
  for i = 1, n do
    reqs[i] = req
  end
  return reqs
end

return _M
