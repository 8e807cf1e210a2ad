-- lua-resty-string's resty.sha384 API (new, update, final, reset) over
-- OpenSSL: local d = require("resty.sha384"):new(); d:update(s); d:final()
return require("resty.luagate.digest").class("sha384")
