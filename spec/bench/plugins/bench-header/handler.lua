-- The benchmark's one-plugin route: reads a request header and sets one
-- upstream header (issue: "a route with one plugin that reads a header and
-- sets one upstream header loses at most 5% throughput").
local get_header = kong.request.get_header
local set_header = kong.service.request.set_header

local BenchHeader = { PRIORITY = 1000, VERSION = "1.0.0" }

function BenchHeader:access(conf)
  set_header("X-Bench-UA", get_header("user-agent") or "none")
end

return BenchHeader
