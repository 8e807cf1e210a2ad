-- lua-resty-http's API (0.17) over luagate's cosockets (luagate.socket):
--
--   local http = require "resty.http"
--   local httpc = http.new()
--   httpc:set_timeouts(1000, 1000, 5000)           -- ms
--   local res, err = httpc:request_uri("http://127.0.0.1:8080/x", {
--     method = "POST", body = "...", headers = { ... }, query = { a = 1 },
--     keepalive_timeout = 60000, keepalive_pool = 10,
--   })                                            -- res.status/headers/body
--   -- or step by step:
--   httpc:connect("127.0.0.1", 8080)              -- or { scheme, host, port }
--   local res = httpc:request{ path = "/x", headers = { ... } }
--   local body = res:read_body()                   -- or res.body_reader(n)
--   httpc:set_keepalive(60000, 10)                 -- or httpc:close()
--
-- https: connect{ scheme = "https", ssl_verify (default true),
-- ssl_server_name (default: the host), ssl_reused_session,
-- ssl_send_status_req } and request_uri's params of the same names, over
-- the cosockets' sslhandshake (trusted CAs: --lua-ssl-trusted-certificate).
-- Not here: client certificates (ssl_client_cert, ssl_client_priv_key
-- answer nil, err), proxies, HTTP/1.0 clients (version 1.0 is sent but
-- responses are read the same way), trailers.
--
-- An adapter: URLs, request heads, response heads and bodies are
-- luagate.http's.
local socket = require "luagate.socket"
local lhttp = require "luagate.http"

local type = type
local tostring = tostring
local tonumber = tonumber
local setmetatable = setmetatable
local rawget = rawget
local lower = string.lower
local upper = string.upper
local find = string.find
local gsub = string.gsub
local fmt = string.format
local concat = table.concat

local _M = { _VERSION = "0.17.1" }
local mt = { __index = _M }

local USER_AGENT = "lua-resty-http/0.17.1 (luagate)"

local headers_mt = {
  __index = function(t, k)
    if type(k) == "string" then
      local lk = gsub(lower(k), "_", "-")
      if lk ~= k then
        return rawget(t, lk)
      end
    end
    return nil
  end,
}


local function new_headers()
  return setmetatable({}, headers_mt)
end
_M.new_headers = new_headers


function _M.new()
  return setmetatable({ sock = socket.tcp(), keepalive = true }, mt)
end


function _M:set_timeout(ms)
  self.sock:settimeout(ms)
end


function _M:set_timeouts(connect, send, read)
  self.sock:settimeouts(connect, send, read)
end


-- parse_uri(uri, query_in_path=true) -> { scheme, host, port, path, query }
function _M:parse_uri(uri, query_in_path)
  if type(self) == "string" then -- called as http.parse_uri(uri)
    uri, query_in_path = self, uri
  end
  if query_in_path == nil then
    query_in_path = true
  end
  local scheme, host, port, path = lhttp.parse_url(uri)
  if not scheme then
    return nil, "bad uri: " .. tostring(uri)
  end
  local query = ""
  local qpos = find(path, "?", 1, true)
  if qpos then
    query = path:sub(qpos + 1)
    path = path:sub(1, qpos - 1)
  end
  if query_in_path then
    if query ~= "" then
      path = path .. "?" .. query
    end
    return { scheme, host, port, path }
  end
  return { scheme, host, port, path, query }
end


-- connect(host, port, opts) (the old form) or connect{ scheme, host,
-- port, pool, pool_size, backlog, ssl_* ... }.
function _M:connect(options, port, opts)
  local host, scheme = options, "http"
  local tls
  if type(options) == "table" then
    host = options.host
    port = options.port
    scheme = options.scheme or "http"
    opts = { pool = options.pool }
    self.pool_size = options.pool_size
    if scheme == "https" then
      if options.ssl_client_cert or options.ssl_client_priv_key then
        return nil, "client certificates (ssl_client_cert) are not supported"
      end
      tls = {
        session = options.ssl_reused_session,
        -- lua-resty-http: ssl_verify defaults to true
        verify = options.ssl_verify ~= false,
        server_name = options.ssl_server_name,
        status_req = options.ssl_send_status_req,
      }
    end
  end
  if scheme ~= "http" and scheme ~= "https" then
    return nil, "unsupported scheme: " .. tostring(scheme)
  end
  if type(host) ~= "string" then
    return nil, "no host given"
  end
  if find(host, "^unix:") then
    return nil, "unix domain sockets are not supported"
  end
  port = tonumber(port) or (scheme == "https" and 443 or 80)
  local ok, err = self.sock:connect(host, port, opts)
  if not ok then
    return nil, err
  end
  if tls then
    -- a pooled TLS connection of the same identity is picked up by the
    -- handshake itself (luagate.socket)
    ok, err = self.sock:sslhandshake(tls.session, tls.server_name or host,
                                     tls.verify, tls.status_req)
    if not ok then
      return nil, err
    end
    self.ssl_session = ok
  end
  self.host, self.port, self.scheme = host, port, scheme
  self.keepalive = true
  return true
end


-- The old form: connect(host, port) then ssl_handshake(...) (the
-- cosocket's sslhandshake arguments).
function _M:ssl_handshake(...)
  local ok, err = self.sock:sslhandshake(...)
  if ok then
    self.scheme = "https"
  end
  return ok, err
end


function _M:get_reused_times()
  return self.sock:getreusedtimes()
end


function _M:close()
  return self.sock:close()
end


function _M:set_keepalive(timeout, size)
  if not self.keepalive then
    self:close()
    return 2
  end
  local ok, err = self.sock:setkeepalive(timeout, size or self.pool_size)
  if not ok then
    return nil, err
  end
  return 1
end


local function encode_query(q)
  if type(q) == "string" then
    return q
  end
  local ngx = rawget(_G, "ngx")
  return ngx.encode_args(q)
end


local function format_request(self, params)
  local method = upper(params.method or "GET")
  local path = params.path or "/"
  local query = params.query
  if query ~= nil then
    query = encode_query(query)
    if query ~= "" then
      path = path .. (find(path, "?", 1, true) and "&" or "?") .. query
    end
  end
  local version = params.version == 1.0 and "1.0" or "1.1"
  local headers = params.headers or {}
  local body = params.body
  local body_fn
  if type(body) == "function" then
    body_fn, body = body, nil
  elseif type(body) == "table" then
    body = concat(body)
  elseif body ~= nil then
    body = tostring(body)
  end
  local head, have = lhttp.format_head(method, path, version, headers, {
    host = self.host and lhttp.host_header(self.scheme, self.host, self.port),
    user_agent = USER_AGENT,
    transfer_encoding = body_fn and "chunked" or nil,
    content_length = body and #body or nil,
  })
  if body_fn and not have["content-length"] and
     not have["transfer-encoding"] then
    self.chunked_upload = true
  end
  if have["connection"] then
    local c = headers.Connection or headers.connection
    if type(c) == "string" and find(lower(c), "close", 1, true) then
      self.keepalive = false
    end
  elseif version == "1.0" then
    self.keepalive = false
  end
  return head, body, body_fn
end


local function read_body(res)
  local reader = res.body_reader
  if not reader then
    return ""
  end
  return lhttp.read_all(reader)
end


function _M:send_request(params)
  local head, body, body_fn = format_request(self, params or {})
  local ok, err = self.sock:send(head)
  if not ok then
    return nil, err
  end
  if body and #body > 0 then
    ok, err = self.sock:send(body)
    if not ok then
      return nil, err
    end
  elseif body_fn then
    while true do
      local chunk = body_fn()
      if self.chunked_upload then
        ok, err = self.sock:send(fmt("%x\r\n", chunk and #chunk or 0) ..
                                 (chunk or "") .. "\r\n")
      elseif chunk then
        ok, err = self.sock:send(chunk)
      end
      if not ok or not chunk then
        break
      end
    end
    self.chunked_upload = nil
    if err then
      return nil, err
    end
  end
  return true
end


function _M:read_response(params)
  local res, err = lhttp.read_head(self.sock, new_headers)
  if not res then
    return nil, err
  end
  if not lhttp.server_keeps_alive(res) then
    self.keepalive = false
  end
  local method = upper((params and params.method) or "GET")
  local reader, until_close = lhttp.body_reader(self.sock, res, method,
    function(reusable)
      if not reusable then
        self.keepalive = false
      end
    end)
  if until_close then
    -- the connection cannot be reused
    self.keepalive = false
  end
  res.body_reader = reader
  res.has_body = reader ~= nil
  res.read_body = read_body
  res.read_trailers = function() end
  return res
end


-- request{ method, path, query, headers, body, version } on a connected
-- client; the body is read with res:read_body() or res.body_reader.
function _M:request(params)
  params = params or {}
  local ok, err = self:send_request(params)
  if not ok then
    return nil, err
  end
  return self:read_response(params)
end


-- request_uri(uri, params): connect, request, read the whole body, and
-- keep the connection alive (params.keepalive ~= false) or close it.
function _M:request_uri(uri, params)
  params = params or {}
  local parsed, err = _M.parse_uri(uri, false)
  if not parsed then
    return nil, err
  end
  local scheme, host, port, path, query = parsed[1], parsed[2], parsed[3],
                                          parsed[4], parsed[5]
  if params.path == nil then
    params.path = path
  end
  if params.query == nil then
    params.query = query
  elseif query ~= "" then
    params.query = query .. "&" .. encode_query(params.query)
  end
  local ok
  ok, err = self:connect({ scheme = scheme, host = host, port = port,
                           pool = params.pool, ssl_verify = params.ssl_verify,
                           ssl_server_name = params.ssl_server_name,
                           ssl_send_status_req = params.ssl_send_status_req,
                           ssl_client_cert = params.ssl_client_cert,
                           ssl_client_priv_key = params.ssl_client_priv_key })
  if not ok then
    return nil, err
  end
  local res
  res, err = self:request(params)
  if not res then
    self:close()
    return nil, err
  end
  local body
  body, err = res:read_body()
  if not body then
    self:close()
    return nil, err
  end
  res.body = body
  if params.keepalive == false or not self.keepalive then
    self:close()
  else
    self:set_keepalive(params.keepalive_timeout, params.keepalive_pool)
  end
  return res
end


return _M
