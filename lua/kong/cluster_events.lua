-- kong.cluster_events: Kong's cluster-wide channels, for a node of one.
--   kong.cluster_events:subscribe("channel", function(data) ... end)
--   kong.cluster_events:broadcast("channel", "data", nbf?)
-- luagate is a single node: a broadcast reaches the channel's subscribers
-- in every worker of this node (Kong delivers to the *other* nodes and
-- relies on worker_events locally), through kong.worker_events (so within
-- ~0.1 s), after `nbf` seconds when given. Data must be a string, as in
-- Kong.
local worker_events = require "kong.worker_events"

local type = type

local SOURCE = "luagate:cluster_events"

local _M = {}


function _M:broadcast(channel, data, nbf)
  if type(channel) ~= "string" then
    error("channel must be a string", 2)
  end
  if type(data) ~= "string" then
    error("data must be a string", 2)
  end
  if nbf ~= nil and type(nbf) ~= "number" then
    error("nbf must be a number", 2)
  end
  if nbf and nbf > 0 then
    local ngx = rawget(_G, "ngx")
    return ngx.timer.at(nbf, function(premature)
      if not premature then
        worker_events.post(SOURCE, channel, data)
      end
    end)
  end
  local ok, err = worker_events.post(SOURCE, channel, data)
  if not ok then
    return nil, err
  end
  return true
end


function _M:subscribe(channel, cb, start_polling)
  if type(channel) ~= "string" then
    error("channel must be a string", 2)
  end
  if type(cb) ~= "function" then
    error("callback must be a function", 2)
  end
  return worker_events.register(function(data)
    cb(data)
  end, SOURCE, channel)
end


function _M.new()
  return _M
end


return setmetatable(_M, { __tostring = function() return "cluster_events" end })
