-- luacheck: no max line length
-- luacheck: globals ngx compat_template_loaded_at
-- body_filter with ngx.arg (Moesif style): holds every chunk back and sends
-- the whole body upper-cased with a suffix at the end.
local concat = table.concat

local H = { PRIORITY = 800, VERSION = "1.0.0" }

function H:header_filter(conf)
  ngx.header["Content-Length"] = nil
  ngx.header["X-Status-Seen"] = tostring(ngx.status)
  ngx.status = conf.status or ngx.status
end

function H:body_filter(conf)
  local ctx = ngx.ctx
  local chunk, eof = ngx.arg[1], ngx.arg[2]
  ctx.compat_chunks = ctx.compat_chunks or {}
  if chunk and chunk ~= "" then
    ctx.compat_chunks[#ctx.compat_chunks + 1] = chunk
  end
  if not eof then
    ngx.arg[1] = nil
    return
  end
  ngx.arg[1] = concat(ctx.compat_chunks):upper() .. "|" ..
               #ctx.compat_chunks .. conf.suffix
end

return H
