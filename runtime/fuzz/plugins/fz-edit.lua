-- Fuzz-only plugin (runtime/fuzz/request_fuzzer.c): request headers sent by
-- the fuzzed client pick what it does, so that the fuzzer reaches the PDK
-- paths that change the upstream request and the response:
--   X-Fz-Exit: N     access: kong.response.exit(N, { message = ... })
--   X-Fz-Set: v      access: sets X-Fz-Added: v on the upstream request
--   X-Fz-Clear: name access: clears that upstream request header
--   X-Fz-Path: /p    access: kong.service.request.set_path
--   X-Fz-Query: q    access: kong.service.request.set_raw_query
--   X-Fz-Method: M   access: kong.service.request.set_method
--   X-Fz-Host: h     access: sets the upstream Host header
--   X-Fz-Body: any   access: reads the whole body, forwards it with "!" added
--                    and X-Fz-Body-Changed: 1 (the harness skips its body
--                    length check for such requests)
--   X-Fz-Status: N   header_filter: kong.response.set_status(N)
-- header_filter always adds X-Fz-Hf: 1; body_filter upper-cases the body
-- when the request had X-Fz-Upper.

local kong = kong
local ngx = ngx
local tonumber = tonumber
local pcall = pcall
local upper = string.upper

local H = { PRIORITY = 900, VERSION = "0.1.0" }

H.SCHEMA = {
  name = "fz-edit",
  fields = {
    { config = { type = "record", fields = {} } },
  },
}


function H:access(conf)
  local h = kong.request.get_header
  local sreq = kong.service.request
  local exit = h("X-Fz-Exit")
  if exit then
    local st = tonumber(exit)
    if not st or st < 200 or st > 599 then
      st = 403
    end
    return kong.response.exit(st, { message = "fz-edit exit" })
  end
  local v = h("X-Fz-Set")
  if v then
    pcall(sreq.set_header, "X-Fz-Added", v)
  end
  v = h("X-Fz-Clear")
  if v then
    pcall(sreq.clear_header, v)
  end
  v = h("X-Fz-Path")
  if v then
    pcall(sreq.set_path, v)
  end
  v = h("X-Fz-Query")
  if v then
    pcall(sreq.set_raw_query, v)
  end
  v = h("X-Fz-Method")
  if v then
    pcall(sreq.set_method, v)
  end
  v = h("X-Fz-Host")
  if v then
    pcall(sreq.set_header, "Host", v)
  end
  if h("X-Fz-Body") then
    local body = kong.request.get_raw_body()
    if body then
      sreq.set_raw_body(body .. "!")
      sreq.set_header("X-Fz-Body-Changed", "1")
    end
  end
  kong.ctx.plugin.upper = h("X-Fz-Upper") ~= nil
end


function H:header_filter(conf)
  kong.response.set_header("X-Fz-Hf", "1")
  local st = tonumber(kong.request.get_header("X-Fz-Status") or "")
  if st and st >= 200 and st <= 599 then
    pcall(kong.response.set_status, st)
  end
  if kong.ctx.plugin.upper then
    kong.response.clear_header("Content-Length")
  end
end


function H:body_filter(conf)
  if kong.ctx.plugin.upper then
    ngx.arg[1] = upper(ngx.arg[1])
  end
end


return H
