-- lua-resty-string's resty.md5 API (new, update, final, reset) over
-- OpenSSL: local d = require("resty.md5"):new(); d:update(s); d:final()
return require("resty.luagate.digest").class("md5")
