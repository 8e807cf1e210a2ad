-- lua-resty-string's resty.sha512 API (new, update, final, reset) over
-- OpenSSL: local d = require("resty.sha512"):new(); d:update(s); d:final()
return require("resty.luagate.digest").class("sha512")
