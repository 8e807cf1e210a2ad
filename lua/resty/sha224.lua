-- lua-resty-string's resty.sha224 API (new, update, final, reset) over
-- OpenSSL: local d = require("resty.sha224"):new(); d:update(s); d:final()
return require("resty.luagate.digest").class("sha224")
