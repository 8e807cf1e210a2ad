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
-- Not here: TLS (https:// answers nil, "https is not supported yet": the
-- cosockets have no sslhandshake yet), proxies, HTTP/1.0 clients
-- (version 1.0 is sent but responses are read the same way), trailers.
local socket = require "luagate.socket"

local type = type
local pairs = pairs
local ipairs = ipairs
local tostring = tostring
local tonumber = tonumber
local setmetatable = setmetatable
local rawget = rawget
local rawset = rawset
local lower = string.lower
local upper = string.upper
local match = string.match
local find = string.find
local gsub = string.gsub
local fmt = string.format
local concat = table.concat

local _M = { _VERSION = "0.17.1" }
local mt = { __index = _M }

local USER_AGENT = "lua-resty-http/0.17.1 (luagate)"
local DEFAULT_CHUNK = 65536

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
  local scheme, rest = match(uri, "^(%a[%w+.-]*)://(.*)$")
  if not scheme then
    return nil, "bad uri: " .. tostring(uri)
  end
  scheme = lower(scheme)
  local authority, path = match(rest, "^([^/?#]*)(.*)$")
  authority = gsub(authority, "^.*@", "") -- userinfo dropped
  local host, port
  if find(authority, "^%[") then
    host, port = match(authority, "^(%[[^%]]+%]):?(%d*)$")
  else
    host, port = match(authority, "^([^:]*):?(%d*)$")
  end
  if not host or host == "" then
    return nil, "bad uri: " .. tostring(uri)
  end
  port = tonumber(port) or (scheme == "https" and 443 or 80)
  path = gsub(path, "#.*$", "")
  local query = ""
  local qpos = find(path, "?", 1, true)
  if qpos then
    query = path:sub(qpos + 1)
    path = path:sub(1, qpos - 1)
  end
  if path == "" then
    path = "/"
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
  if type(options) == "table" then
    host = options.host
    port = options.port
    scheme = options.scheme or "http"
    opts = { pool = options.pool }
    self.pool_size = options.pool_size
  end
  if scheme == "https" or (opts and opts.ssl) then
    return nil, "https is not supported yet"
  end
  if type(host) ~= "string" then
    return nil, "no host given"
  end
  if find(host, "^unix:") then
    return nil, "unix domain sockets are not supported"
  end
  port = tonumber(port) or 80
  local ok, err = self.sock:connect(host, port, opts)
  if not ok then
    return nil, err
  end
  self.host, self.port, self.scheme = host, port, scheme
  self.keepalive = true
  return true
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
  local version = params.version or 1.1
  local lines = { method, " ", path, " HTTP/",
                  version == 1.0 and "1.0" or "1.1", "\r\n" }
  local have = {}
  local headers = params.headers or {}
  for k, v in pairs(headers) do
    local lk = lower(tostring(k))
    have[lk] = true
    if type(v) == "table" then
      for _, vi in ipairs(v) do
        lines[#lines + 1] = fmt("%s: %s\r\n", k, tostring(vi))
      end
    else
      lines[#lines + 1] = fmt("%s: %s\r\n", k, tostring(v))
    end
  end
  if not have["host"] and self.host then
    local dport = self.scheme == "https" and 443 or 80
    lines[#lines + 1] = self.port == dport and fmt("Host: %s\r\n", self.host)
                        or fmt("Host: %s:%d\r\n", self.host, self.port)
  end
  if not have["user-agent"] then
    lines[#lines + 1] = "User-Agent: " .. USER_AGENT .. "\r\n"
  end
  local body = params.body
  local body_fn
  if type(body) == "function" then
    body_fn, body = body, nil
    if not have["content-length"] and not have["transfer-encoding"] then
      lines[#lines + 1] = "Transfer-Encoding: chunked\r\n"
      self.chunked_upload = true
    end
  elseif type(body) == "table" then
    body = concat(body)
  elseif body ~= nil then
    body = tostring(body)
  end
  if body and not have["content-length"] and not have["transfer-encoding"] then
    lines[#lines + 1] = fmt("Content-Length: %d\r\n", #body)
  end
  if have["connection"] then
    local c = headers.Connection or headers.connection
    if type(c) == "string" and find(lower(c), "close", 1, true) then
      self.keepalive = false
    end
  elseif version == 1.0 then
    self.keepalive = false
  end
  lines[#lines + 1] = "\r\n"
  return concat(lines), body, body_fn
end


local function read_head(sock)
  while true do
    local line, err = sock:receive("*l")
    if not line then
      return nil, err
    end
    local version, status, reason =
      match(line, "^HTTP/(%d%.%d) (%d%d%d) ?(.*)$")
    if not status then
      return nil, "bad status line: " .. line:sub(1, 80)
    end
    status = tonumber(status)
    local headers = new_headers()
    while true do
      local hl
      hl, err = sock:receive("*l")
      if not hl then
        return nil, err
      end
      if hl == "" then
        break
      end
      local name, value = match(hl, "^([^:%s]+)%s*:%s*(.-)%s*$")
      if name then
        name = lower(name)
        local old = rawget(headers, name)
        if old == nil then
          rawset(headers, name, value)
        elseif type(old) == "table" then
          old[#old + 1] = value
        else
          rawset(headers, name, { old, value })
        end
      end
    end
    if status >= 200 or status == 101 then
      return { status = status, reason = reason, headers = headers,
               version = tonumber(version) }
    end
  end
end


local function has_token(v, token)
  if type(v) == "table" then
    v = concat(v, ",")
  end
  return v ~= nil and find(lower(v), token, 1, true) ~= nil
end


-- body_reader(max_chunk_size?) -> data, or nil when done, or nil, err
local function make_reader(self, res, method)
  local sock = self.sock
  local h = res.headers
  local status = res.status
  local done = false
  if method == "HEAD" or status == 204 or status == 304 then
    return nil
  end
  if has_token(h["transfer-encoding"], "chunked") then
    local left = 0
    return function(max)
      if done then
        return nil
      end
      max = max or DEFAULT_CHUNK
      if left == 0 then
        local line, err = sock:receive("*l")
        if not line then
          return nil, err
        end
        local size = tonumber(match(line, "^%s*(%x+)"), 16)
        if not size then
          return nil, "bad chunk size"
        end
        if size == 0 then
          repeat
            line, err = sock:receive("*l")
            if not line then
              return nil, err
            end
          until line == ""
          done = true
          return nil
        end
        left = size
      end
      local n = left < max and left or max
      local data, err = sock:receive(n)
      if not data then
        return nil, err
      end
      left = left - n
      if left == 0 then
        local _, e = sock:receive("*l")
        if e then
          return nil, e
        end
      end
      return data
    end
  end
  local cl = tonumber(h["content-length"])
  if cl then
    local left = cl
    return function(max)
      if left <= 0 then
        return nil
      end
      max = max or DEFAULT_CHUNK
      local n = left < max and left or max
      local data, err = sock:receive(n)
      if not data then
        return nil, err
      end
      left = left - n
      return data
    end
  end
  -- until the peer closes: the connection cannot be reused
  self.keepalive = false
  return function(max)
    if done then
      return nil
    end
    local data, err = sock:receiveany(max or DEFAULT_CHUNK)
    if not data then
      done = true
      if err == "closed" then
        return nil
      end
      return nil, err
    end
    return data
  end
end


local function read_body(res)
  local reader = res.body_reader
  if not reader then
    return ""
  end
  local parts = {}
  while true do
    local data, err = reader()
    if err then
      return nil, err
    end
    if not data then
      break
    end
    parts[#parts + 1] = data
  end
  return concat(parts)
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
  local res, err = read_head(self.sock)
  if not res then
    return nil, err
  end
  local h = res.headers
  if has_token(h["connection"], "close") or
     (res.version == 1.0 and not has_token(h["connection"], "keep-alive")) then
    self.keepalive = false
  end
  local method = upper((params and params.method) or "GET")
  res.body_reader = make_reader(self, res, method)
  res.has_body = res.body_reader ~= nil
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
                           pool = params.pool })
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
