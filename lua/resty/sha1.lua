-- lua-resty-string's resty.sha1 API (new, update, final, reset) over
-- OpenSSL: local d = require("resty.sha1"):new(); d:update(s); d:final()
return require("resty.luagate.digest").class("sha1")
