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
  if authority:find("@", 1, true) then
    authority = match(authority, "@(.*)$")
  end
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


local function build_request(method, host, port, path, opts)
  local h = opts.headers or {}
  local lines = { method, " ", path, " HTTP/1.1\r\n" }
  local have = {}
  for k, v in pairs(h) do
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
  if not have["host"] then
    lines[#lines + 1] = (port == 80) and fmt("Host: %s\r\n", host)
                        or fmt("Host: %s:%d\r\n", host, port)
  end
  if not have["user-agent"] then
    lines[#lines + 1] = "User-Agent: " .. USER_AGENT .. "\r\n"
  end
  local body = opts.body
  if body ~= nil and type(body) ~= "string" then
    body = tostring(body)
  end
  if not have["content-length"] and not have["transfer-encoding"] and
     (body or method == "POST" or method == "PUT" or method == "PATCH") then
    lines[#lines + 1] = fmt("Content-Length: %d\r\n", body and #body or 0)
  end
  if not have["connection"] and opts.keepalive == false then
    lines[#lines + 1] = "Connection: close\r\n"
  end
  lines[#lines + 1] = "\r\n"
  if body then
    lines[#lines + 1] = body
  end
  return concat(lines)
end


-- Reads the status line and headers; returns res or nil, err, started
-- (started: some bytes of the response arrived).
local function read_head(sock)
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
    local headers = setmetatable({}, headers_mt)
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


local function header_has(v, token)
  if type(v) == "table" then
    v = concat(v, ",")
  end
  return v ~= nil and find(lower(v), token, 1, true) ~= nil
end


-- Returns a reader: reader() -> chunk, or nil when done, or nil, err. On
-- the end of a body that allows it, the connection is kept alive.
local function body_reader(sock, res, method, opts)
  local te = res.headers["transfer-encoding"]
  local cl = tonumber(res.headers["content-length"])
  local status = res.status
  local keep = opts.keepalive ~= false and
               not header_has(res.headers["connection"], "close") and
               (res.version >= 1.1 or
                header_has(res.headers["connection"], "keep-alive"))
  local done = false
  local function finish(reusable)
    done = true
    if reusable and keep then
      sock:setkeepalive(opts.keepalive_timeout, opts.keepalive_pool)
    else
      sock:close()
    end
  end

  if method == "HEAD" or status == 204 or status == 304 or
     (status >= 100 and status < 200) then
    finish(true)
    return function() return nil end
  end

  if te and header_has(te, "chunked") then
    local left = 0 -- bytes left in the current chunk
    return function()
      if done then
        return nil
      end
      if left == 0 then
        local line, err = sock:receive("*l")
        if not line then
          finish(false)
          return nil, err
        end
        local size = tonumber(match(line, "^%s*(%x+)"), 16)
        if not size then
          finish(false)
          return nil, "bad chunk size: " .. line:sub(1, 40)
        end
        if size == 0 then
          repeat -- trailers
            line, err = sock:receive("*l")
            if not line then
              finish(false)
              return nil, err
            end
          until line == ""
          finish(true)
          return nil
        end
        left = size
      end
      local n = left < BODY_CHUNK and left or BODY_CHUNK
      local data, err = sock:receive(n)
      if not data then
        finish(false)
        return nil, err
      end
      left = left - n
      if left == 0 then
        local crlf
        crlf, err = sock:receive("*l")
        if not crlf then
          finish(false)
          return nil, err
        end
      end
      return data
    end
  end

  if cl then
    local left = cl
    if left == 0 then
      finish(true)
    end
    return function()
      if done then
        return nil
      end
      local n = left < BODY_CHUNK and left or BODY_CHUNK
      local data, err = sock:receive(n)
      if not data then
        finish(false)
        return nil, err
      end
      left = left - n
      if left == 0 then
        finish(true)
      end
      return data
    end
  end

  -- delimited by the connection's end
  return function()
    if done then
      return nil
    end
    local data, err = sock:receiveany(BODY_CHUNK)
    if not data then
      finish(false)
      if err == "closed" then
        return nil
      end
      return nil, err
    end
    return data
  end
end


-- One attempt: returns res, or nil, err, retryable.
local function attempt(method, host, port, path, opts, req)
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
  local reader = body_reader(sock, res, method, opts)
  res.body_reader = reader
  res.sock = sock
  if opts.stream then
    res.read_body = function()
      local parts = {}
      while true do
        local chunk, rerr = reader()
        if not chunk then
          if rerr then
            return nil, rerr
          end
          return concat(parts)
        end
        parts[#parts + 1] = chunk
      end
    end
    return res
  end
  local parts = {}
  while true do
    local chunk, rerr = reader()
    if not chunk then
      if rerr then
        return nil, "could not read the body: " .. tostring(rerr), false
      end
      break
    end
    parts[#parts + 1] = chunk
  end
  res.body = concat(parts)
  return res
end


-- http.request(url, opts) -> res, or nil, err. opts: method ("GET"),
-- headers (name -> value or array), body (string), timeout (ms, all three;
-- or connect_timeout, send_timeout, read_timeout), keepalive (default true),
-- keepalive_timeout (ms), keepalive_pool (size), pool (pool key), stream
-- (true: res.body stays nil; read res.body_reader() or res.read_body()).
function _M.request(url, opts)
  opts = opts or {}
  if type(opts) ~= "table" then
    error("bad argument #2 to 'request' (table expected)", 2)
  end
  local scheme, host, port, path = parse_url(url)
  if not scheme then
    return nil, host
  end
  if scheme == "https" then
    return nil, "https is not supported yet"
  elseif scheme ~= "http" then
    return nil, "unsupported scheme: " .. scheme
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
  local req = build_request(method, host, port, path, opts)
  local res, err, retry = attempt(method, host, port, path, opts, req)
  if not res and retry then
    res, err = attempt(method, host, port, path, opts, req)
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
