-- Test plugin of the jwt specs (spec/03-plugins/04-jwt/02-access_spec.lua).
--   mode "jwks":  answers with the JSON file conf.file and counts the
--                 fetches in ngx.shared.kong ("jwt-fixture:hits:<counter>")
--   mode "hits":  answers {"hits": n} for conf.counter
--   mode "echo":  (after jwt, PRIORITY 900) copies what jwt left for later
--                 plugins into upstream headers: X-Ctx-Token
--                 (kong.ctx.shared.authenticated_jwt_token), X-Ngx-Ctx-Token
--                 (ngx.ctx.authenticated_jwt_token), X-Client-Consumer
--                 (kong.client.get_consumer().username), X-Client-Credential
--                 (kong.client.get_credential().key or "(none)"),
--                 X-Parser-Alg (the alg of that token, decoded with
--                 require "kong.plugins.jwt.jwt_parser", as third-party
--                 plugins do)
local H = { PRIORITY = 900, VERSION = "1.0.0" }

H.SCHEMA = {
  name = "jwt-fixture",
  fields = {
    { config = { type = "record", fields = {
        { mode = { type = "string", required = true,
                   one_of = { "jwks", "hits", "echo" } } },
        { file = { type = "string" } },
        { counter = { type = "string" } },
    } } },
  },
}

function H:access(conf)
  local dict = ngx.shared.kong
  if conf.mode == "jwks" then
    local f = assert(io.open(conf.file, "rb"))
    local body = f:read("*a")
    f:close()
    dict:incr("jwt-fixture:hits:" .. conf.counter, 1, 0)
    return kong.response.exit(200, body,
                              { ["Content-Type"] = "application/json" })
  elseif conf.mode == "hits" then
    local n = dict:get("jwt-fixture:hits:" .. conf.counter) or 0
    return kong.response.exit(200, { hits = n })
  end
  local set = kong.service.request.set_header
  set("X-Ctx-Token", kong.ctx.shared.authenticated_jwt_token or "(none)")
  set("X-Ngx-Ctx-Token", ngx.ctx.authenticated_jwt_token or "(none)")
  local consumer = kong.client.get_consumer()
  set("X-Client-Consumer", consumer and consumer.username or "(none)")
  local cred = kong.client.get_credential()
  set("X-Client-Credential", cred and (cred.key or "(no key)") or "(none)")
  local token = kong.ctx.shared.authenticated_jwt_token
  if token then
    local jwt_decoder = require "kong.plugins.jwt.jwt_parser"
    local jwt = assert(jwt_decoder:new(token))
    set("X-Parser-Alg", jwt.header.alg)
  end
end

return H
