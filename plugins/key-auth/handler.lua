-- key-auth: authenticates a consumer by an API key found in a header, the
-- query string or the body (Kong 3.10's behaviour). docs/plugins/key-auth.md
local auth = require "luagate.auth"
local db = require "luagate.db"

local kong = kong
local type = type
local error = error
local ipairs = ipairs
local setmetatable = setmetatable
local fmt = string.format

local ERR_DUPLICATE_API_KEY = "Duplicate API key found"
local ERR_NO_API_KEY = "No API key found in request"
local ERR_INVALID_AUTH_CRED = "Unauthorized"
local ERR_INVALID_PLUGIN_CONF = "Invalid plugin configuration"

local EMPTY = setmetatable({}, { __newindex = function()
  error("read-only table", 2)
end })

local KeyAuthHandler = {
  PRIORITY = 1250,
  VERSION = "3.10.0",
}


-- What is built once per plugin instance (conf tables are stable for a
-- config generation): the header names to look up and the error tables.
local prepared = setmetatable({}, { __mode = "k" })

local function prepare(conf)
  local p = prepared[conf]
  if p then
    return p
  end
  local www = conf.realm and fmt('Key realm="%s"', conf.realm) or "Key"
  local names = {}
  for i, name in ipairs(conf.key_names or EMPTY) do
    local normalized = auth.normalize_header_name(name)
    names[i] = {
      name = name,
      header = normalized,
      -- a name with '_' also matches a header sent with '_' (Kong's
      -- headers table finds both "api_key" and "api-key")
      raw_header = normalized ~= name:lower() and name:lower() or nil,
    }
  end
  p = {
    names = names,
    duplicate = auth.failure(401, ERR_DUPLICATE_API_KEY, www),
    no_key = auth.failure(401, ERR_NO_API_KEY, www),
    invalid = auth.failure(401, ERR_INVALID_AUTH_CRED, www),
    bad_conf = auth.failure(500, ERR_INVALID_PLUGIN_CONF),
  }
  prepared[conf] = p
  return p
end


local function get_body()
  local body, err = kong.request.get_body()
  if err or type(body) ~= "table" then
    kong.log.info("Cannot process request body: ", err)
    return EMPTY
  end
  return body
end


-- hide_credentials: as Kong, the header and the query argument of that
-- name go in any case, the body field when key_in_body is on.
local function hide(conf, n, found_header, body)
  local sreq = kong.service.request
  sreq.clear_query_arg(n.name)
  sreq.clear_header(n.header)
  if found_header and found_header ~= n.header then
    sreq.clear_header(found_header)
  end
  if conf.key_in_body then
    body = body or get_body()
    if body ~= EMPTY then
      body[n.name] = nil
      sreq.set_body(body)
    end
  end
end


-- The value of key name n in the request (header, then query string,
-- then body, as configured): a string, a table (repeated), true (a query
-- argument without a value) or nil; the header it came from; the query and
-- body tables, read once per request.
local function read_key(conf, n, query, body)
  local v, found_header
  if conf.key_in_header then
    v = auth.request_header(n.header)
    if v ~= nil then
      found_header = n.header
    elseif n.raw_header then
      v = auth.request_header(n.raw_header)
      if v ~= nil then
        found_header = n.raw_header
      end
    end
  end
  if v == nil and conf.key_in_query then
    query = query or kong.request.get_query()
    v = query[n.name]
  end
  if v == nil and conf.key_in_body then
    body = body or get_body()
    v = body[n.name]
  end
  return v, found_header, query, body
end


local function do_authentication(conf)
  local p = prepare(conf)
  if type(conf.key_names) ~= "table" then
    kong.log.err("no conf.key_names set, aborting plugin execution")
    return nil, p.bad_conf
  end

  -- the first name outside the loop: with the usual single name the loop
  -- below never runs, and a loop that runs once per request is one the
  -- JIT blacklists (and with it every trace through this function)
  local names = p.names
  local n = names[1]
  local v, found_header, query, body
  if n then
    v, found_header, query, body = read_key(conf, n, nil, nil)
  end
  for i = 2, #names do
    local tv = type(v)
    if tv == "string" or tv == "table" then
      break
    end
    n = names[i]
    v, found_header, query, body = read_key(conf, n, query, body)
  end

  local key
  local tv = type(v)
  if tv == "string" then
    key = v
    if conf.hide_credentials then
      hide(conf, n, found_header, body)
    end
  elseif tv == "table" then
    return nil, p.duplicate
  end

  if not key or key == "" then
    return nil, p.no_key
  end

  local credential = db.keyauth_credentials:select_by_key(key)
  if not credential then
    return nil, p.invalid
  end

  local consumer = db.consumers:select(credential.consumer)
  if not consumer then
    kong.log.err("consumer ", credential.consumer.id, " of key-auth ",
                 "credential ", credential.id, " not found")
    return nil, p.invalid
  end

  auth.set_consumer(consumer, credential)
  return true
end


-- At each config load, with the configs of every key-auth instance:
-- prepare them now rather than on their first request.
function KeyAuthHandler:configure(configs)
  for _, conf in ipairs(configs or EMPTY) do
    prepare(conf)
  end
end


function KeyAuthHandler:access(conf)
  if not conf.run_on_preflight and kong.request.get_method() == "OPTIONS" then
    return
  end
  return auth.access(conf, do_authentication)
end


return KeyAuthHandler
