-- luacheck: no max line length
-- luacheck: globals ngx compat_template_loaded_at
-- An OpenResty-style answer from access: ngx.status, ngx.header, ngx.say,
-- ngx.print, ngx.exit (no return), or ngx.redirect; then code that must
-- never run.
local H = { PRIORITY = 900, VERSION = "1.0.0" }

function H:access(conf)
  if conf.mode == "redirect" then
    ngx.redirect("/elsewhere?x=1", 307)
  elseif conf.mode == "exit" then
    kong.response.exit(418, { message = "teapot" })
  else
    ngx.status = 201
    ngx.header["X-Compat"] = "printed"
    ngx.header.content_type = "text/plain"
    ngx.say("hello")
    ngx.print("world", "!", 42)
    ngx.exit(201)
  end
  -- never reached: the exits end the handler even without `return`
  kong.response.exit(500, { message = "after exit" })
end

function H:header_filter(conf)
  kong.response.set_header("X-After-Exit", "header_filter ran")
end

return H
