-- basic-auth: authenticates a consumer by username and password from the
-- Proxy-Authorization or Authorization header (RFC 7617), as Kong 3.10.
-- docs/plugins/basic-auth.md
local auth = require "luagate.auth"
local db = require "luagate.db"
local codec = require "luagate.ngx.codec"

local kong = kong
local match = string.match
local fmt = string.format
local ipairs = ipairs
local setmetatable = setmetatable

local decode_base64 = codec.decode_base64
local constant_time_eq = auth.constant_time_eq
local basicauth_hash = db.basicauth_hash

local ERR_UNAUTHORIZED = "Unauthorized"

local PROXY_AUTHORIZATION = "proxy-authorization"
local AUTHORIZATION = "authorization"

local BasicAuthHandler = {
  PRIORITY = 1100,
  VERSION = "3.10.0",
}


-- the 401 of each instance, made once (conf tables live for a config
-- generation)
local failures = setmetatable({}, { __mode = "k" })

local function failure(conf)
  local f = failures[conf]
  if not f then
    f = auth.failure(401, ERR_UNAUTHORIZED,
                     fmt('Basic realm="%s"', conf.realm or "service"))
    failures[conf] = f
  end
  return f
end


-- username, password of a "Basic <base64(user:password)>" header value;
-- nil when the header is absent or not in that form. With hide_credentials
-- the header is removed from the upstream request once looked at.
local function retrieve_credentials(header_name, conf)
  local value = kong.request.get_header(header_name)
  local username, password
  if value then
    local b64 = match(value, "%s*[Bb]asic%s*(.+)")
    if b64 then
      local decoded = decode_base64(b64)
      if decoded then
        username, password = match(decoded, "([^:]+):(.*)")
        if not username then
          kong.log.err("header has unrecognized format")
        end
      end
    end
  end
  if conf.hide_credentials then
    kong.service.request.clear_header(header_name)
  end
  return username, password
end


local function do_authentication(conf)
  if not (kong.request.get_header(AUTHORIZATION) or
          kong.request.get_header(PROXY_AUTHORIZATION)) then
    return nil, failure(conf)
  end

  local credentials = db.basicauth_credentials
  local credential, password
  local username, given = retrieve_credentials(PROXY_AUTHORIZATION, conf)
  if username then
    credential = credentials:select_by_username(username)
    password = given
  end
  if not credential then
    username, given = retrieve_credentials(AUTHORIZATION, conf)
    if username then
      credential = credentials:select_by_username(username)
      password = given
    end
  end

  if not credential then
    -- hash anyway: an unknown username takes as long as a wrong password
    basicauth_hash(password, "")
    return nil, failure(conf)
  end
  if not constant_time_eq(basicauth_hash(password, credential.consumer.id),
                          credential.password) then
    return nil, failure(conf)
  end

  local consumer = db.consumers:select(credential.consumer)
  if not consumer then
    kong.log.err("consumer ", credential.consumer.id, " of basic-auth ",
                 "credential ", credential.id, " not found")
    return nil, failure(conf)
  end

  auth.set_consumer(consumer, credential, credential.username)
  return true
end


-- At each config load, with the configs of every basic-auth instance:
-- make their 401s now rather than on their first request.
function BasicAuthHandler:configure(configs)
  for _, conf in ipairs(configs or {}) do
    failure(conf)
  end
end


function BasicAuthHandler:access(conf)
  return auth.access(conf, do_authentication)
end


return BasicAuthHandler
