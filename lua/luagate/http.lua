-- luagate.http: an HTTP/1.1 client over cosockets (luagate.socket), for
-- plugin code in rewrite, access, response phases and timers.
--
--   local http = require "luagate.http"
--   local res, err = http.request("http://127.0.0.1:8080/x?y=1", {
--     method = "POST", headers = { ["Content-Type"] = "text/plain" },
--     body = "hello", timeout = 2000, keepalive = true,
--   })
--   -- res.status, res.reason, res.headers["content-type"], res.body
--
--   -- streaming: res.body is nil, read the chunks yourself
--   local res = http.request(url, { stream = true })
--   for chunk in res.body_reader do ... end   -- or repeat ... until not c
--
--   -- parallel: wall time ~ the slowest, not the sum
--   local results, errs = http.request_multi({ { url1 }, { url2, opts } })
--   local i, res = http.request_multi({ { url1 }, { url2 } }, "any")
--
-- https:// URLs speak TLS (sslhandshake of luagate.socket): the server's
-- certificate is verified against --lua-ssl-trusted-certificate (or the
-- system store) and the host name unless opts.ssl_verify is false;
-- opts.ssl_server_name replaces the host as SNI and verified name. TLS
-- connections are pooled apart from plain ones, by server name and
-- verification.
--
-- Responses: Content-Length, chunked and close-delimited bodies; 1xx
-- interim responses are skipped. Connections go back to the keepalive pool
-- (key "host:port") once the body was read whole, unless the server or the
-- caller said otherwise. A pooled connection that turns out closed before
-- the response starts is retried once on a new one.

local socket = require "luagate.socket"

local type = type
local error = error
local pairs = pairs
local ipairs = ipairs
local tostring = tostring
local tonumber = tonumber
local setmetatable = setmetatable
local rawget = rawget
local rawset = rawset
local concat = table.concat
local lower = string.lower
local upper = string.upper
local match = string.match
local find = string.find
local gsub = string.gsub
local fmt = string.format

local DEFAULT_TIMEOUT = 60000 -- ms
local BODY_CHUNK = 65536
local USER_AGENT = "luagate-http/0.1"

local _M = { USER_AGENT = USER_AGENT }


local function escape(s)
  return (s:gsub("[^%w%-%._~]", function(c)
    return fmt("%%%02X", c:byte())
  end))
end


-- Headers with case-insensitive names: stored lowercased, read any case.
local headers_mt = {
  __index = function(t, k)
    if type(k) == "string" then
      return rawget(t, lower(k))
    end
  end,
  __newindex = function(t, k, v)
    rawset(t, type(k) == "string" and lower(k) or k, v)
  end,
}


-- Splits a URL: scheme, host, port, path-and-query; or nil, err.
local function parse_url(url)
  if type(url) ~= "string" then
    return nil, "bad url"
  end
  local scheme, rest = match(url, "^(%a[%w+.-]*)://(.*)$")
  if not scheme then
    return nil, "bad url: " .. url
  end
  scheme = lower(scheme)
  local authority, path = match(rest, "^([^/?#]*)(.*)$")
  authority = gsub(authority, "^.*@", "") -- userinfo dropped
  local host, port = match(authority, "^%[([^%]]+)%]:?(%d*)$")
  if host then
    host = "[" .. host .. "]"
  else
    host, port = match(authority, "^([^:]+):?(%d*)$")
  end
  if not host or host == "" then
    return nil, "bad url: " .. url
  end
  port = tonumber(port) or (scheme == "https" and 443 or 80)
  path = path:gsub("#.*$", "")
  if path == "" then
    path = "/"
  elseif path:sub(1, 1) == "?" then
    path = "/" .. path
  end
  return scheme, host, port, path
end
_M.parse_url = parse_url


-- The Host header's value for a server: the port is left out when it is
-- the scheme's default.
local function host_header(scheme, host, port)
  local default = scheme == "https" and 443 or 80
  return port == default and host or fmt("%s:%d", host, port)
end
_M.host_header = host_header


-- The request head: the request line, the caller's headers (name -> value,
-- or an array of values: one line each), then those of `defaults` the
-- caller did not give (names compared without case), in this order:
-- host, user_agent, transfer_encoding, content_length (neither of these two
-- when the caller gave either), connection. Ends with the blank line.
-- Returns the head and the set of the caller's header names, lowercased.
local function format_head(method, target, version, headers, defaults)
  local lines = { method, " ", target, " HTTP/", version, "\r\n" }
  local have = {}
  for k, v in pairs(headers or {}) do
    have[lower(tostring(k))] = true
    if type(v) == "table" then
      for _, vi in ipairs(v) do
        lines[#lines + 1] = fmt("%s: %s\r\n", k, tostring(vi))
      end
    else
      lines[#lines + 1] = fmt("%s: %s\r\n", k, tostring(v))
    end
  end
  local d = defaults
  if d.host and not have["host"] then
    lines[#lines + 1] = "Host: " .. d.host .. "\r\n"
  end
  if d.user_agent and not have["user-agent"] then
    lines[#lines + 1] = "User-Agent: " .. d.user_agent .. "\r\n"
  end
  if not have["content-length"] and not have["transfer-encoding"] then
    if d.transfer_encoding then
      lines[#lines + 1] = "Transfer-Encoding: " .. d.transfer_encoding ..
                          "\r\n"
    end
    if d.content_length then
      lines[#lines + 1] = fmt("Content-Length: %d\r\n", d.content_length)
    end
  end
  if d.connection and not have["connection"] then
    lines[#lines + 1] = "Connection: " .. d.connection .. "\r\n"
  end
  lines[#lines + 1] = "\r\n"
  return concat(lines), have
end
_M.format_head = format_head


local function build_request(method, host, port, path, opts, scheme)
  local body = opts.body
  if body ~= nil and type(body) ~= "string" then
    body = tostring(body)
  end
  local length
  if body or method == "POST" or method == "PUT" or method == "PATCH" then
    length = body and #body or 0
  end
  local head = format_head(method, path, "1.1", opts.headers, {
    host = host_header(scheme or "http", host, port),
    user_agent = USER_AGENT,
    content_length = length,
    connection = opts.keepalive == false and "close" or nil,
  })
  return body and head .. body or head
end


-- Reads the status line and headers (1xx interim responses but 101 are
-- skipped); returns res { status, reason, headers, version } or nil, err,
-- started (started: some bytes of the response arrived). new_headers()
-- makes the headers table (default: names read in any case).
local function read_head(sock, new_headers)
  while true do
    local line, err = sock:receive("*l")
    if not line then
      return nil, err, false
    end
    local version, status, reason =
      match(line, "^HTTP/(%d+%.%d+) (%d%d%d) ?(.*)$")
    if not status then
      return nil, "bad status line: " .. line:sub(1, 80), true
    end
    status = tonumber(status)
    local headers = new_headers and new_headers() or
                    setmetatable({}, headers_mt)
    while true do
      local hl
      hl, err = sock:receive("*l")
      if not hl then
        return nil, err, true
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
    -- 1xx interim response: the real one follows
  end
end
_M.read_head = read_head


local function header_has(v, token)
  if type(v) == "table" then
    v = concat(v, ",")
  end
  return v ~= nil and find(lower(v), token, 1, true) ~= nil
end


-- True when the server lets the connection be reused after res.
local function server_keeps_alive(res)
  local connection = res.headers["connection"]
  return not header_has(connection, "close") and
         (res.version >= 1.1 or header_has(connection, "keep-alive"))
end
_M.server_keeps_alive = server_keeps_alive


-- The reader of res's body: reader(max?) -> the next chunk (at most max
-- bytes, 64 KiB by default), or nil when done, or nil, err. finish(reusable)
-- is called once, when the body was read whole (reusable: the connection
-- may serve another request) or failed (false). Returns nil, after
-- finish(true), when the response has no body (HEAD, 1xx, 204, 304); the
-- second value is true for a body that the connection's end delimits.
local function body_reader(sock, res, method, finish)
  local te = res.headers["transfer-encoding"]
  local cl = tonumber(res.headers["content-length"])
  local status = res.status
  local done = false
  local function stop(reusable)
    done = true
    finish(reusable)
  end

  if method == "HEAD" or status == 204 or status == 304 or
     (status >= 100 and status < 200) then
    stop(true)
    return nil
  end

  if te and header_has(te, "chunked") then
    local left = 0 -- bytes left in the current chunk
    return function(max)
      if done then
        return nil
      end
      if left == 0 then
        local line, err = sock:receive("*l")
        if not line then
          stop(false)
          return nil, err
        end
        local size = tonumber(match(line, "^%s*(%x+)"), 16)
        if not size then
          stop(false)
          return nil, "bad chunk size: " .. line:sub(1, 40)
        end
        if size == 0 then
          repeat -- trailers
            line, err = sock:receive("*l")
            if not line then
              stop(false)
              return nil, err
            end
          until line == ""
          stop(true)
          return nil
        end
        left = size
      end
      max = max or BODY_CHUNK
      local n = left < max and left or max
      local data, err = sock:receive(n)
      if not data then
        stop(false)
        return nil, err
      end
      left = left - n
      if left == 0 then
        local crlf
        crlf, err = sock:receive("*l")
        if not crlf then
          stop(false)
          return nil, err
        end
      end
      return data
    end
  end

  if cl then
    local left = cl
    if left == 0 then
      stop(true)
    end
    return function(max)
      if done then
        return nil
      end
      max = max or BODY_CHUNK
      local n = left < max and left or max
      local data, err = sock:receive(n)
      if not data then
        stop(false)
        return nil, err
      end
      left = left - n
      if left == 0 then
        stop(true)
      end
      return data
    end
  end

  -- delimited by the connection's end
  return function(max)
    if done then
      return nil
    end
    local data, err = sock:receiveany(max or BODY_CHUNK)
    if not data then
      stop(false)
      if err == "closed" then
        return nil
      end
      return nil, err
    end
    return data
  end, true
end
_M.body_reader = body_reader


-- Reads what reader gives to the end: the body, or nil, err.
local function read_all(reader)
  local parts = {}
  while true do
    local chunk, err = reader()
    if not chunk then
      if err then
        return nil, err
      end
      return concat(parts)
    end
    parts[#parts + 1] = chunk
  end
end
_M.read_all = read_all


local function no_body()
  return nil
end


-- One attempt: returns res, or nil, err, retryable.
local function attempt(method, host, port, path, opts, req, tls)
  local sock = socket.tcp()
  local timeout = opts.timeout or DEFAULT_TIMEOUT
  sock:settimeouts(opts.connect_timeout or timeout,
                   opts.send_timeout or timeout,
                   opts.read_timeout or timeout)
  local chost = host:match("^%[(.*)%]$") or host
  local ok, err = sock:connect(chost, port, { pool = opts.pool })
  if not ok then
    return nil, "could not connect: " .. tostring(err), false
  end
  if tls then
    ok, err = sock:sslhandshake(false, opts.ssl_server_name or chost,
                                opts.ssl_verify ~= false)
    if not ok then
      return nil, "TLS handshake failed: " .. tostring(err), false
    end
  end
  local reused = (sock:getreusedtimes() or 0) > 0
  local sent
  sent, err = sock:send(req)
  if not sent then
    sock:close()
    return nil, "could not send the request: " .. tostring(err),
           reused and err == "closed"
  end
  local res, started
  res, err, started = read_head(sock)
  if not res then
    sock:close()
    return nil, "could not read the response: " .. tostring(err),
           reused and err == "closed" and not started
  end
  res.reused = reused
  local keep = opts.keepalive ~= false and server_keeps_alive(res)
  local reader = body_reader(sock, res, method, function(reusable)
    if reusable and keep then
      sock:setkeepalive(opts.keepalive_timeout, opts.keepalive_pool)
    else
      sock:close()
    end
  end) or no_body
  res.body_reader = reader
  res.sock = sock
  if opts.stream then
    res.read_body = function()
      return read_all(reader)
    end
    return res
  end
  local body, rerr = read_all(reader)
  if not body then
    return nil, "could not read the body: " .. tostring(rerr), false
  end
  res.body = body
  return res
end


-- http.request(url, opts) -> res, or nil, err. opts: method ("GET"),
-- headers (name -> value or array), body (string), timeout (ms, all three;
-- or connect_timeout, send_timeout, read_timeout), keepalive (default true),
-- keepalive_timeout (ms), keepalive_pool (size), pool (pool key), stream
-- (true: res.body stays nil; read res.body_reader() or res.read_body()),
-- ssl_verify (https: default true), ssl_server_name (default: the host).
function _M.request(url, opts)
  opts = opts or {}
  if type(opts) ~= "table" then
    error("bad argument #2 to 'request' (table expected)", 2)
  end
  local scheme, host, port, path = parse_url(url)
  if not scheme then
    return nil, host
  end
  if scheme ~= "http" and scheme ~= "https" then
    return nil, "unsupported scheme: " .. scheme
  end
  if opts.ssl_server_name ~= nil and type(opts.ssl_server_name) ~= "string" then
    error("bad ssl_server_name option (string expected)", 2)
  end

  if opts.query then
    local q = opts.query
    if type(q) == "table" then
      local parts = {}
      for k, v in pairs(q) do
        parts[#parts + 1] = escape(tostring(k)) .. "=" .. escape(tostring(v))
      end
      q = concat(parts, "&")
    end
    path = path .. (find(path, "?", 1, true) and "&" or "?") .. q
  end
  local method = upper(opts.method or "GET")
  local tls = scheme == "https"
  local req = build_request(method, host, port, path, opts, scheme)
  local res, err, retry = attempt(method, host, port, path, opts, req, tls)
  if not res and retry then
    res, err = attempt(method, host, port, path, opts, req, tls)
  end
  return res, err
end


-- http.request_multi(list, mode): list of { url, opts } (or
-- { url = , opts = }), run in parallel (light threads of luagate.socket).
--   mode "all" (default): returns results, errs: results[i] is the response
--     or false, errs[i] the error (or nil).
--   mode "any": returns i, res of the first request that succeeds; the
--     others are aborted (their connections closed). nil, err when all
--     failed.
-- Bodies are read whole (opts.stream is ignored).
function _M.request_multi(list, mode)
  if type(list) ~= "table" then
    error("bad argument #1 to 'request_multi' (table expected)", 2)
  end
  mode = mode or "all"
  if mode ~= "all" and mode ~= "any" then
    error("bad argument #2 to 'request_multi' (\"all\" or \"any\" " ..
          "expected)", 2)
  end
  local fns = {}
  for i, item in ipairs(list) do
    local url = item.url or item[1]
    local opts = item.opts or item[2] or {}
    if opts.stream then
      local copy = {}
      for k, v in pairs(opts) do
        copy[k] = v
      end
      copy.stream = nil
      opts = copy
    end
    fns[i] = function()
      return _M.request(url, opts)
    end
  end
  if mode == "any" then
    local i, packed = socket.parallel(fns, "any")
    if i then
      return i, packed[1]
    end
    local errs = {}
    for k, p in ipairs(packed) do
      errs[k] = tostring(p[2])
    end
    return nil, "every request failed: " .. concat(errs, "; ")
  end
  local packed = socket.parallel(fns, "all")
  local results, errs = {}, {}
  for i = 1, #fns do
    local p = packed[i]
    results[i] = p and p[1] or false
    errs[i] = p and p[2] or nil
  end
  return results, errs
end


return _M
