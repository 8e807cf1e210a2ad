-- What the rate-limiting specs share: the clock (windows are aligned on
-- it) and lists of requests and their statuses.
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


-- n times the same request
function _M.times(n, req)
  local reqs = {}
  for i = 1, n do
    reqs[i] = req
  end
  return reqs
end

return _M
