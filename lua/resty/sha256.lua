-- lua-resty-string's resty.sha256 API (new, update, final, reset) over
-- OpenSSL: local d = require("resty.sha256"):new(); d:update(s); d:final()
return require("resty.luagate.digest").class("sha256")
