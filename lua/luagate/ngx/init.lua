-- The `ngx` table (lua-nginx-module's API) of a worker.
--
--   local new_ngx = require "luagate.ngx"
--   _G.ngx = new_ngx()          -- once per worker
--
-- The pure helpers come from luagate.ngx.{re,codec,uri,constants} and
-- ngx.shared from luagate.shdict; what needs a request reads
-- luagate.request.cur. Fields that change per request (ngx.ctx,
-- ngx.status, ngx.headers_sent) are served by a metatable on the table;
-- ngx.var, ngx.header and ngx.arg are proxies. docs/pdk.md lists each
-- function and its status.
--
-- Output: ngx.print/say collect into the request (r.output); ngx.exit(st)
-- with st >= 200 in rewrite/access sends it as the response body with that
-- status (gw_ffi_resp_exit), then stops the handler (request.stop).
-- ngx.exit(ngx.OK) is a no-op: the handler goes on unless it returns.

local ffi = require "ffi"
local buffer = require "string.buffer"
local cjson = require "cjson.safe"
local gw = require "luagate.ffi"
local request = require "luagate.request"
local private = require "luagate.pdk.private"
local kreq = require "luagate.pdk.request"
local kservice = require "luagate.pdk.service"
local klog = require "luagate.pdk.log"

local type = type
local error = error
local pairs = pairs
local ipairs = ipairs
local select = select
local tostring = tostring
local tonumber = tonumber
local rawget = rawget
local rawset = rawset
local pcall = pcall
local setmetatable = setmetatable
local getmetatable = getmetatable
local floor = math.floor
local fmt = string.format
local find = string.find
local sub = string.sub
local lower = string.lower
local gsub = string.gsub
local match = string.match
local concat = table.concat
local os_date = os.date
local ffi_string = ffi.string

local C = gw.C
local str_p, len_p, int_p = gw.str_p, gw.len_p, gw.int_p
local err_p = gw.err_p
local OK, AGAIN = gw.OK, gw.AGAIN
local HDR_SET, HDR_ADD, HDR_CLEAR = gw.HDR_SET, gw.HDR_ADD, gw.HDR_CLEAR

local ffi_str = private.ffi_str
local tls = require "luagate.pdk.tls"
local tls_var = tls.var
local errmsg = private.errmsg
local normalize_header_name = private.normalize_header_name
local header_value = private.header_value
local build_headers = private.build_headers
local has_cr_lf = private.has_cr_lf

local stop = request.stop
local NULL = cjson.null


local function try_require(name)
  local ok, mod = pcall(require, name)
  if ok and type(mod) == "table" then
    return mod
  end
  return nil
end


local _M = {}


-- phases where output and exits are allowed (content-like)
local CONTENT_PHASES = { rewrite = true, access = true, response = true }
local HEADER_WRITABLE = {
  rewrite = true, access = true, response = true, header_filter = true,
}


-- The running request with its gw_req, or raises.
local function req(level)
  local r = request.cur
  if r == nil or r.ptr == nil then
    error("no request found", (level or 2) + 1)
  end
  return r
end


local function disabled(r, what, level)
  error(fmt("API disabled in the context of %s", r and r.phase or
            "init_worker"), (level or 2) + 1)
end


-- time ----------------------------------------------------------------------

local function now()
  if gw.available then
    return C.gw_ffi_now()
  end
  return os.time()
end
_M.now = now


-- ngx.var -------------------------------------------------------------------

local function client_addr(r)
  if C.gw_ffi_req_client(r.ptr, str_p, len_p, int_p) == OK then
    return ffi_string(str_p[0], len_p[0]), int_p[0]
  end
  return nil, nil
end


local function current_query(r)
  return kservice.request._current_query(r)
end


local function current_path(r)
  return r.upstream_path or ffi_str(C.gw_ffi_req_path, r.ptr) or "/"
end


local function upstream_uri(r)
  if r.upstream_uri then
    return r.upstream_uri
  end
  -- the runtime's own: strip_path and the service path applied
  local u = ffi_str(C.gw_ffi_upstream_uri, r.ptr)
  if u then
    return u
  end
  local q = current_query(r)
  local p = current_path(r)
  return q ~= "" and (p .. "?" .. q) or p
end


local function log_info(r)
  local dbl3, u64 = gw.dbl3, gw.u64_2
  if C.gw_ffi_log_info(r.ptr, dbl3, dbl3 + 1, dbl3 + 2, u64, u64 + 1,
                       int_p) == OK then
    return dbl3[0], tonumber(u64[0]), tonumber(u64[1])
  end
  return 0, 0, 0
end


local function cookie_value(r, name)
  local cookies = header_value(r.ptr, C.gw_ffi_req_header, "cookie", true)
  if cookies == nil then
    return nil
  end
  if type(cookies) == "table" then
    cookies = concat(cookies, "; ")
  end
  for pair in string.gmatch(cookies, "[^;]+") do
    local k, v = match(pair, "^%s*([^=]-)%s*=%s*(.-)%s*$")
    if k == name then
      return v
    end
  end
  return nil
end
_M._cookie_value = cookie_value


local VARS = {
  request_id = function(r)
    return ffi_str(C.gw_ffi_req_id, r.ptr)
  end,
  remote_addr = function(r)
    local ip = client_addr(r)
    return ip
  end,
  realip_remote_addr = function(r)
    local ip = client_addr(r)
    return ip
  end,
  remote_port = function(r)
    local _, port = client_addr(r)
    return port and tostring(port) or nil
  end,
  realip_remote_port = function(r)
    local _, port = client_addr(r)
    return port and tostring(port) or nil
  end,
  host = function(r)
    return kreq._get_host(r)
  end,
  uri = function(r)
    return current_path(r)
  end,
  document_uri = function(r)
    return current_path(r)
  end,
  request_uri = function(r)
    -- the target as the client sent it (nginx's $request_uri)
    return ffi_str(C.gw_ffi_req_target, r.ptr) or "/"
  end,
  args = function(r)
    local q = current_query(r)
    return q ~= "" and q or nil
  end,
  query_string = function(r)
    local q = current_query(r)
    return q ~= "" and q or nil
  end,
  is_args = function(r)
    return current_query(r) ~= "" and "?" or ""
  end,
  request_method = function(r)
    return ffi_str(C.gw_ffi_req_method, r.ptr)
  end,
  scheme = function(r)
    return C.gw_ffi_req_tls(r.ptr) == 1 and "https" or "http"
  end,
  https = function(r)
    return C.gw_ffi_req_tls(r.ptr) == 1 and "on" or ""
  end,
  ssl_protocol = function(r)
    return tls_var(r, 1)
  end,
  ssl_cipher = function(r)
    return tls_var(r, 2)
  end,
  ssl_server_name = function(r)
    return tls_var(r, 3)
  end,
  ssl_session_reused = function(r)
    return tls_var(r, 4)
  end,
  ssl_client_s_dn = function(r)
    local info = tls.client_info(r)
    return info and info.subject_dn
  end,
  ssl_client_i_dn = function(r)
    local info = tls.client_info(r)
    return info and info.issuer_dn
  end,
  ssl_client_raw_cert = function(r)
    return tls.client_chain(r)
  end,
  ssl_client_verify = function(r)
    if r.tls_client_verify then
      return r.tls_client_verify
    end
    return tls.client_info(r) and "FAILED:not verified" or "NONE"
  end,
  server_port = function(r)
    return tostring(C.gw_ffi_req_server_port(r.ptr))
  end,
  server_protocol = function(r)
    if C.gw_ffi_req_http_version(r.ptr, gw.dbl_p) == OK then
      local v = tonumber(gw.dbl_p[0])
      if v == 1 then
        return "HTTP/1.0"
      elseif v == 2 then
        return "HTTP/2.0"
      end
      return fmt("HTTP/%.1f", v)
    end
    return "HTTP/1.1"
  end,
  upstream_status = function(r)
    local s = C.gw_ffi_upstream_status(r.ptr)
    return s > 0 and tostring(s) or nil
  end,
  status = function(r)
    return tostring(C.gw_ffi_resp_status(r.ptr))
  end,
  request_time = function(r)
    return fmt("%.3f", now() - C.gw_ffi_req_start_time(r.ptr))
  end,
  upstream_uri = upstream_uri,
  upstream_scheme = function(r)
    return r.upstream_scheme or "http"
  end,
  upstream_host = function(r)
    if r.upstream_host then
      return r.upstream_host
    end
    -- the Host sent upstream: the client's with preserve_host, else the
    -- service's host (with its port when not 80)
    local route, svc = r.route, r.service
    if route and route.preserve_host then
      return header_value(r.ptr, C.gw_ffi_req_header, "host")
    end
    if svc and svc.host then
      local port = tonumber(svc.port)
      return (port and port ~= 80 and port ~= 443) and
             (svc.host .. ":" .. port) or svc.host
    end
    return nil
  end,
  request = function(r) -- the request line as received (nginx's $request)
    local proto = _M.VARS.server_protocol(r)
    return (ffi_str(C.gw_ffi_req_method, r.ptr) or "GET") .. " " ..
           (ffi_str(C.gw_ffi_req_target, r.ptr) or "/") .. " " .. proto
  end,
  server_addr = function(r)
    return ffi_str(C.gw_ffi_req_server_addr, r.ptr)
  end,
  hostname = function()
    local k = rawget(_G, "kong")
    return k and k.node and k.node.get_hostname() or "localhost"
  end,
  -- what luagate sends upstream as X-Forwarded-* (runtime/src/proxy.c
  -- build_head); writes are kept but the runtime does not apply them yet
  upstream_x_forwarded_host = function(r)
    local v = r.vars and r.vars.upstream_x_forwarded_host
    return v or kreq._get_host(r)
  end,
  upstream_x_forwarded_port = function(r)
    local v = r.vars and r.vars.upstream_x_forwarded_port
    return v or tostring(C.gw_ffi_req_server_port(r.ptr))
  end,
  upstream_x_forwarded_proto = function(r)
    local v = r.vars and r.vars.upstream_x_forwarded_proto
    return v or "http"
  end,
  upstream_x_forwarded_path = function(r)
    local v = r.vars and r.vars.upstream_x_forwarded_path
    return v or ffi_str(C.gw_ffi_req_raw_path, r.ptr)
  end,
  upstream_x_forwarded_prefix = function(r)
    return r.vars and r.vars.upstream_x_forwarded_prefix
  end,
  request_length = function(r)
    local _, bytes_in = log_info(r)
    return tostring(bytes_in)
  end,
  bytes_sent = function(r)
    local _, _, bytes_out = log_info(r)
    return tostring(bytes_out)
  end,
  body_bytes_sent = function(r)
    local _, _, bytes_out = log_info(r)
    return tostring(bytes_out)
  end,
  content_type = function(r)
    return header_value(r.ptr, C.gw_ffi_req_header, "content-type")
  end,
  content_length = function(r)
    return header_value(r.ptr, C.gw_ffi_req_header, "content-length")
  end,
  msec = function()
    return fmt("%.3f", now())
  end,
  time_local = function()
    return os_date("%d/%b/%Y:%H:%M:%S %z", floor(now()))
  end,
  time_iso8601 = function()
    return os_date("%Y-%m-%dT%H:%M:%S%z", floor(now()))
  end,
  request_body = function(r)
    if C.gw_ffi_req_body(r.ptr, str_p, len_p) == OK and len_p[0] > 0 then
      return ffi_string(str_p[0], len_p[0])
    end
    return nil
  end,
}
_M.VARS = VARS


-- Splits a variable name into (kind, rest): "http", "cookie", "arg",
-- "sent_http", "upstream_http" for the prefixed families, or ("var", name).
local function var_kind(name)
  if sub(name, 1, 5) == "http_" then
    return "http", sub(name, 6)
  elseif sub(name, 1, 7) == "cookie_" then
    return "cookie", sub(name, 8)
  elseif sub(name, 1, 4) == "arg_" then
    return "arg", sub(name, 5)
  elseif sub(name, 1, 10) == "sent_http_" then
    return "sent_http", sub(name, 11)
  elseif sub(name, 1, 14) == "upstream_http_" then
    return "upstream_http", sub(name, 15)
  end
  return "var", name
end
_M.var_kind = var_kind


-- nginx's header variable: several values joined with ", " (cookies "; ")
local function join_header(v, sep)
  if type(v) == "table" then
    return concat(v, sep or ", ")
  end
  return v
end


local function get_var(r, name)
  local getter = VARS[name]
  if getter then
    return getter(r)
  end
  local kind, rest = var_kind(name)
  if kind == "http" then
    local h = gsub(lower(rest), "_", "-")
    return join_header(header_value(r.ptr, C.gw_ffi_req_header, h, true),
                       h == "cookie" and "; " or ", ")
  elseif kind == "cookie" then
    return cookie_value(r, rest)
  elseif kind == "arg" then
    -- nginx: first match, case-insensitive name, value not unescaped
    local q = current_query(r)
    local lname = lower(rest)
    for pair in string.gmatch(q, "[^&]+") do
      local k, v = match(pair, "^([^=]*)=?(.*)$")
      if k and lower(k) == lname then
        return v
      end
    end
    return nil
  elseif kind == "sent_http" then
    local h = gsub(lower(rest), "_", "-")
    return join_header(header_value(r.ptr, C.gw_ffi_resp_header, h, true))
  elseif kind == "upstream_http" then
    local h = gsub(lower(rest), "_", "-")
    return join_header(header_value(r.ptr, C.gw_ffi_upstream_resp_header, h,
                                    true))
  end
  local vars = r.vars
  return vars and vars[name]
end
_M._get_var = get_var


-- ngx.var.upstream_x_forwarded_* -> gw_ffi_upstream_xfwd's `which`
local XFWD = {
  upstream_x_forwarded_for = 0, upstream_x_forwarded_proto = 1,
  upstream_x_forwarded_host = 2, upstream_x_forwarded_port = 3,
  upstream_x_forwarded_path = 4, upstream_x_forwarded_prefix = 5,
}

local function ngx_log_warn(msg)
  C.gw_ffi_log(gw.LOG_WARN, msg, #msg)
end


local function set_var(r, name, value)
  if value ~= nil and type(value) ~= "string" then
    if type(value) == "number" then
      value = tostring(value)
    else
      error("bad variable value type", 3)
    end
  end
  if name == "upstream_uri" then
    if value == nil then
      error("variable \"upstream_uri\" cannot be unset", 3)
    end
    local q = find(value, "?", 1, true)
    local p = q and sub(value, 1, q - 1) or value
    kservice.request._set_path(r, p ~= "" and p or "/", 3)
    kservice.request._set_query(r, q and sub(value, q + 1) or "", 3)
    r.upstream_uri = value
    return
  elseif name == "upstream_host" then
    r.upstream_host = value
    if value then
      kservice._set_one_header(r, "Host", value, 3)
    end
    return
  elseif name == "upstream_scheme" then
    r.upstream_scheme = value
    if value then
      err_p[0] = nil
      if C.gw_ffi_upstream_scheme(r.ptr, value, #value, err_p) ~= OK then
        error(errmsg("could not set the scheme"), 3)
      end
    end
    return
  elseif name == "args" or name == "query_string" then
    kservice.request._set_query(r, value or "", 3)
    return
  elseif XFWD[name] then
    -- sent upstream instead of the gateway's own X-Forwarded-* value
    local v = tostring(value or "")
    err_p[0] = nil
    if C.gw_ffi_upstream_xfwd(r.ptr, XFWD[name], v, #v, err_p) ~= OK then
      error(errmsg("could not set " .. name), 3)
    end
  elseif VARS[name] or var_kind(name) ~= "var" then
    error(fmt("variable \"%s\" not changeable", name), 3)
  end
  -- unknown variables: kept per request (nginx would need `set $x`)
  local vars = r.vars
  if not vars then
    vars = {}
    r.vars = vars
  end
  vars[name] = value
end


local function new_var()
  return setmetatable({}, {
    __index = function(_, name)
      local r = req(2)
      if type(name) ~= "string" then
        if type(name) == "number" then
          return nil -- regex captures ($1...): not kept
        end
        error("bad variable name", 2)
      end
      return get_var(r, name)
    end,
    __newindex = function(_, name, value)
      local r = req(2)
      if type(name) ~= "string" then
        error("bad variable name", 2)
      end
      set_var(r, name, value)
    end,
  })
end


-- ngx.header ----------------------------------------------------------------

local function resp_set(r, op, name, value, level)
  err_p[0] = nil
  if C.gw_ffi_resp_set_header(r.ptr, op, name, #name, value,
                              value and #value or 0, err_p) ~= OK then
    error(errmsg("could not set header"), level + 1)
  end
end


local function set_resp_header(r, name, value, level)
  if not HEADER_WRITABLE[r.phase] then
    error("attempt to set ngx.header.HEADER after sending out response " ..
          "headers", level + 1)
  end
  if type(name) ~= "string" then
    error("bad argument #2 to '__newindex' (string expected, got " ..
          type(name) .. ")", level + 1)
  end
  name = gsub(name, "_", "-")
  if value == nil or value == NULL then
    resp_set(r, HDR_CLEAR, name, nil, level + 1)
    return
  end
  if type(value) == "table" then
    if #value == 0 then
      resp_set(r, HDR_CLEAR, name, nil, level + 1)
      return
    end
    for i, v in ipairs(value) do
      v = tostring(v)
      if has_cr_lf(v) then
        error("header value contains CR or LF", level + 1)
      end
      resp_set(r, i == 1 and HDR_SET or HDR_ADD, name, v, level + 1)
    end
    return
  end
  value = tostring(value)
  if has_cr_lf(value) then
    error("header value contains CR or LF", level + 1)
  end
  resp_set(r, HDR_SET, name, value, level + 1)
end


local function new_header()
  return setmetatable({}, {
    __index = function(_, name)
      local r = req(2)
      if type(name) ~= "string" then
        return nil
      end
      return header_value(r.ptr, C.gw_ffi_resp_header,
                          normalize_header_name(name), true)
    end,
    __newindex = function(_, name, value)
      set_resp_header(req(2), name, value, 2)
    end,
  })
end


-- ngx.arg (body_filter) ----------------------------------------------------

local function new_arg()
  return setmetatable({}, {
    __index = function(_, k)
      local r = request.cur
      if not r or r.ptr == nil or r.phase ~= "body_filter" then
        return nil
      end
      if C.gw_ffi_resp_chunk(r.ptr, str_p, len_p, int_p) ~= OK then
        return nil
      end
      if k == 1 then
        return ffi_string(str_p[0], len_p[0])
      elseif k == 2 then
        return int_p[0] ~= 0
      end
      return nil
    end,
    __newindex = function(_, k, v)
      local r = request.cur
      if not r or r.ptr == nil or r.phase ~= "body_filter" then
        error("API disabled in the current context", 2)
      end
      if C.gw_ffi_resp_chunk(r.ptr, str_p, len_p, int_p) ~= OK then
        error("no response body chunk", 2)
      end
      local chunk, eof
      if k == 1 then
        if v == nil or v == NULL then
          chunk = ""
        elseif type(v) == "table" then
          local parts = {}
          for i, p in ipairs(v) do
            parts[i] = tostring(p)
          end
          chunk = concat(parts)
        else
          chunk = tostring(v)
        end
        eof = int_p[0]
      elseif k == 2 then
        chunk = ffi_string(str_p[0], len_p[0])
        eof = v and 1 or 0
      else
        error("bad index: " .. tostring(k), 2)
      end
      err_p[0] = nil
      if C.gw_ffi_resp_set_chunk(r.ptr, chunk, #chunk, eof, err_p) ~= OK then
        error(errmsg("could not set the chunk"), 2)
      end
    end,
  })
end


-- output --------------------------------------------------------------------

local function put_output(buf, v, level)
  local tv = type(v)
  if tv == "string" then
    buf:put(v)
  elseif tv == "number" then
    buf:put(tostring(v))
  elseif tv == "nil" then
    buf:put("nil")
  elseif tv == "boolean" then
    buf:put(v and "true" or "false")
  elseif v == NULL then
    buf:put("null")
  elseif tv == "table" then
    for i = 1, #v do
      put_output(buf, v[i], level + 1)
    end
  else
    error("bad argument to 'print' (string, number, boolean, nil, " ..
          "ngx.null or table expected, got " .. tv .. ")", level + 1)
  end
end


local function output(newline, ...)
  local r = req(3)
  if not CONTENT_PHASES[r.phase] then
    disabled(r, "print", 3)
  end
  local buf = r.output
  if not buf then
    buf = buffer.new()
    r.output = buf
  end
  for i = 1, select("#", ...) do
    put_output(buf, (select(i, ...)), 3)
  end
  if newline then
    buf:put("\n")
  end
  return 1
end


local function send_exit(r, status, body, level)
  private.register_exit(r, status, body, level + 1)
  r.output = nil
  stop(r)
end


local function ngx_exit(status)
  if type(status) ~= "number" then
    error("bad argument #1 to 'exit' (number expected, got " ..
          type(status) .. ")", 2)
  end
  local r = request.cur
  if r == nil or r.ptr == nil then
    -- timers, init_worker: nothing to end
    return
  end
  local phase = r.phase
  if status == 0 or status == -5 then -- ngx.OK, ngx.DECLINED
    if CONTENT_PHASES[phase] and r.output and #r.output > 0 then
      send_exit(r, 200, r.output:get(), 2)
    end
    return
  end
  if phase == "log" or phase == "body_filter" then
    return
  end
  if status == -1 then -- ngx.ERROR
    status = 500
  elseif status < 0 then
    return
  end
  if status < 200 or status > 599 then
    error("attempt to exit with an invalid status " .. status, 2)
  end
  local body
  if r.output and #r.output > 0 then
    body = r.output:get()
  end
  if phase == "header_filter" then
    body = nil
  end
  send_exit(r, status, body, 2)
end


local REDIRECT_STATUS = {
  [301] = "Moved Permanently", [302] = "Moved Temporarily",
  [303] = "See Other", [307] = "Temporary Redirect",
  [308] = "Permanent Redirect",
}


local function redirect(uri, status)
  local r = req(2)
  if not CONTENT_PHASES[r.phase] then
    disabled(r, "redirect", 2)
  end
  if type(uri) ~= "string" then
    error("bad argument #1 to 'redirect' (string expected, got " ..
          type(uri) .. ")", 2)
  end
  if has_cr_lf(uri) then
    error("uri contains CR or LF", 2)
  end
  status = status or 302
  local text = REDIRECT_STATUS[status]
  if not text then
    error("only ngx.HTTP_MOVED_TEMPORARILY, ngx.HTTP_MOVED_PERMANENTLY, " ..
          "ngx.HTTP_PERMANENT_REDIRECT, ngx.HTTP_SEE_OTHER, and " ..
          "ngx.HTTP_TEMPORARY_REDIRECT are allowed", 2)
  end
  resp_set(r, HDR_SET, "Location", uri, 2)
  resp_set(r, HDR_SET, "Content-Type", "text/html", 2)
  local body = fmt("<html>\r\n<head><title>%d %s</title></head>\r\n" ..
                   "<body>\r\n<center><h1>%d %s</h1></center>\r\n" ..
                   "</body>\r\n</html>\r\n", status, text, status, text)
  r.output = nil
  send_exit(r, status, body, 2)
end


-- ngx.log -------------------------------------------------------------------

local function log_arg(v, i)
  local tv = type(v)
  if tv == "string" then
    return v
  elseif tv == "number" then
    return tostring(v)
  elseif tv == "nil" then
    return "nil"
  elseif tv == "boolean" then
    return v and "true" or "false"
  elseif v == NULL then
    return "null"
  elseif tv == "table" then
    local mt = getmetatable(v)
    if mt and mt.__tostring then
      return tostring(v)
    end
  end
  error(fmt("bad argument #%d to 'log' (expected table to have " ..
            "__tostring metamethod)", i), 4)
end


local function ngx_log(level, ...)
  if type(level) ~= "number" then
    error("bad argument #1 to 'log' (number expected, got " ..
          type(level) .. ")", 2)
  end
  if level < 0 or level > 8 then
    error("bad log level: " .. level, 2)
  end
  local lvl = level == 0 and 1 or level
  if not klog.enabled(lvl) then
    return
  end
  local n = select("#", ...)
  local parts = {}
  for i = 1, n do
    parts[i] = log_arg((select(i, ...)), i + 1)
  end
  klog.write(lvl, "[lua] " .. klog.location(2) .. ": " .. concat(parts))
end


-- ngx.req ---------------------------------------------------------------------

local METHOD_NAMES = {
  [0x0002] = "GET", [0x0004] = "HEAD", [0x0008] = "POST", [0x0010] = "PUT",
  [0x0020] = "DELETE", [0x0040] = "MKCOL", [0x0080] = "COPY",
  [0x0100] = "MOVE", [0x0200] = "OPTIONS", [0x0400] = "PROPFIND",
  [0x0800] = "PROPPATCH", [0x1000] = "LOCK", [0x2000] = "UNLOCK",
  [0x4000] = "PATCH", [0x8000] = "TRACE",
}
_M.METHOD_NAMES = METHOD_NAMES


local function check_max(v, what)
  if v == nil then
    return 100
  end
  if type(v) ~= "number" then
    error("bad argument #1 to '" .. what .. "' (number expected, got " ..
          type(v) .. ")", 3)
  end
  return v
end


local function new_req()
  local R = {}

  function R.get_headers(max_headers, raw)
    local r = req(2)
    max_headers = check_max(max_headers, "get_headers")
    return build_headers(r.ptr, C.gw_ffi_req_header_count,
                         C.gw_ffi_req_header_at, max_headers, raw)
  end

  function R.set_header(name, value)
    local r = req(2)
    if type(name) ~= "string" then
      error("bad argument #1 to 'set_header' (string expected, got " ..
            type(name) .. ")", 2)
    end
    if value == nil then
      kservice._upstream_header(r, HDR_CLEAR, name, nil)
      return
    end
    if type(value) == "table" then
      for _, v in ipairs(value) do
        if has_cr_lf(tostring(v)) then
          error("header value contains CR or LF", 2)
        end
      end
    else
      value = tostring(value)
      if has_cr_lf(value) then
        error("header value contains CR or LF", 2)
      end
    end
    kservice._set_one_header(r, name, value, 2)
  end

  function R.clear_header(name)
    local r = req(2)
    if type(name) ~= "string" then
      error("bad argument #1 to 'clear_header' (string expected, got " ..
            type(name) .. ")", 2)
    end
    kservice._upstream_header(r, HDR_CLEAR, name, nil)
  end

  function R.get_method()
    local r = req(2)
    return ffi_str(C.gw_ffi_req_method, r.ptr)
  end

  function R.set_method(method_id)
    local r = req(2)
    local name = METHOD_NAMES[method_id]
    if not name then
      error("unsupported HTTP method: " .. tostring(method_id), 2)
    end
    err_p[0] = nil
    if C.gw_ffi_upstream_method(r.ptr, name, #name, err_p) ~= OK then
      error(errmsg("could not set the method"), 2)
    end
  end

  function R.get_uri_args(max_args)
    local r = req(2)
    max_args = check_max(max_args, "get_uri_args")
    return private.decode_args(current_query(r), max_args)
  end

  function R.set_uri_args(args)
    local r = req(2)
    local q
    if type(args) == "string" then
      q = args
    elseif type(args) == "table" then
      q = private.encode_args(args)
    else
      error("bad argument #1 to 'set_uri_args' (string or table expected, " ..
            "got " .. type(args) .. ")", 2)
    end
    kservice.request._set_query(r, q, 2)
  end

  function R.set_uri(uri, jump)
    local r = req(2)
    if type(uri) ~= "string" or uri == "" then
      error("bad argument #1 to 'set_uri' (non-empty string expected)", 2)
    end
    if jump and r.phase ~= "rewrite" then
      error("API disabled in the context of " .. r.phase ..
            " (jump is only allowed in rewrite)", 2)
    end
    -- jump: luagate does not re-route; the new path goes upstream
    kservice.request._set_path(r, uri, 2)
    r.upstream_uri = nil
  end

  function R.read_body()
    local r = req(2)
    if not CONTENT_PHASES[r.phase] then
      disabled(r, "read_body", 2)
    end
    local body, err = kreq._read_body(r)
    if not body then
      error("could not read the request body: " .. tostring(err), 2)
    end
  end

  function R.discard_body()
    req(2)
  end

  function R.get_body_data()
    local r = req(2)
    if C.gw_ffi_req_body(r.ptr, str_p, len_p) == OK and len_p[0] > 0 then
      return ffi_string(str_p[0], len_p[0])
    end
    return nil
  end

  function R.get_body_file()
    req(2)
    return nil
  end

  function R.set_body_data(data)
    local r = req(2)
    if type(data) ~= "string" then
      error("bad argument #1 to 'set_body_data' (string expected, got " ..
            type(data) .. ")", 2)
    end
    kservice.request._set_body(r, data, 2)
  end

  function R.get_post_args(max_args)
    local r = req(2)
    max_args = check_max(max_args, "get_post_args")
    if C.gw_ffi_req_body(r.ptr, str_p, len_p) ~= OK then
      return nil, "request body not read yet"
    end
    return private.decode_args(ffi_string(str_p[0], len_p[0]), max_args)
  end

  function R.start_time()
    local r = req(2)
    return C.gw_ffi_req_start_time(r.ptr)
  end

  function R.http_version()
    local r = req(2)
    if C.gw_ffi_req_http_version(r.ptr, gw.dbl_p) == OK then
      return tonumber(gw.dbl_p[0])
    end
    return nil
  end

  function R.is_internal()
    req(2)
    return false
  end

  function R.raw_header(no_request_line)
    local r = req(2)
    local out = {}
    if not no_request_line then
      local p = ffi_str(C.gw_ffi_req_raw_path, r.ptr) or "/"
      local q = ffi_str(C.gw_ffi_req_query, r.ptr) or ""
      out[1] = fmt("%s %s HTTP/%s\r\n", ffi_str(C.gw_ffi_req_method, r.ptr),
                   q ~= "" and (p .. "?" .. q) or p,
                   VARS.server_protocol(r):sub(6))
    end
    local n = C.gw_ffi_req_header_count(r.ptr)
    for i = 0, n - 1 do
      if C.gw_ffi_req_header_at(r.ptr, i, str_p, len_p, gw.str2_p,
                                gw.len2_p) == OK then
        out[#out + 1] = ffi_string(str_p[0], len_p[0]) .. ": " ..
                        ffi_string(gw.str2_p[0], gw.len2_p[0]) .. "\r\n"
      end
    end
    out[#out + 1] = "\r\n"
    return concat(out)
  end

  return R
end


-- timers --------------------------------------------------------------------

local function new_timer()
  local T = {}
  local function timers()
    local t = try_require("luagate.timers")
    if not t then
      error("timers are not available", 3)
    end
    return t
  end

  function T.at(delay, fn, ...)
    return timers().at(delay, fn, ...)
  end

  function T.every(interval, fn, ...)
    return timers().every(interval, fn, ...)
  end

  function T.running_count()
    local t = timers()
    return t.running_count and t.running_count() or 0
  end

  function T.pending_count()
    local t = timers()
    if t.pending_count then
      return t.pending_count()
    end
    return C.gw_ffi_timers_pending()
  end

  return T
end


-- the table -------------------------------------------------------------------

local function copy_into(dst, src)
  if src then
    for k, v in pairs(src) do
      if dst[k] == nil then
        dst[k] = v
      end
    end
  end
end


function _M.new()
  local ngx = {}

  local constants = try_require("luagate.ngx.constants")
  copy_into(ngx, constants)
  ngx.null = NULL

  ngx.re = try_require("luagate.ngx.re")
  copy_into(ngx, try_require("luagate.ngx.codec"))
  copy_into(ngx, try_require("luagate.ngx.uri"))
  ngx.to_hex = nil

  ngx.shared = try_require("luagate.shdict") or {}

  -- time
  ngx.now = now
  function ngx.time()
    return floor(now())
  end
  function ngx.update_time()
    if gw.available then
      C.gw_ffi_update_time()
    end
  end
  function ngx.today()
    return os_date("%Y-%m-%d", floor(now()))
  end
  function ngx.localtime()
    return os_date("%Y-%m-%d %H:%M:%S", floor(now()))
  end
  function ngx.utctime()
    return os_date("!%Y-%m-%d %H:%M:%S", floor(now()))
  end

  ngx.log = ngx_log
  ngx.var = new_var()
  ngx.header = new_header()
  ngx.arg = new_arg()
  ngx.req = new_req()
  ngx.resp = {
    get_headers = function(max_headers, raw)
      local r = req(2)
      max_headers = check_max(max_headers, "get_headers")
      return build_headers(r.ptr, C.gw_ffi_resp_header_count,
                           C.gw_ffi_resp_header_at, max_headers, raw)
    end,
  }

  function ngx.print(...)
    return output(false, ...)
  end
  function ngx.say(...)
    return output(true, ...)
  end
  function ngx.flush()
    req(2)
    return 1
  end
  function ngx.eof()
    req(2)
    return 1
  end
  ngx.exit = ngx_exit
  ngx.redirect = redirect
  function ngx.exec()
    error("ngx.exec is not supported", 2)
  end
  function ngx.on_abort()
    return nil, "lua_check_client_abort is off"
  end

  function ngx.sleep(seconds)
    if type(seconds) ~= "number" or seconds < 0 then
      error("bad argument #1 to 'sleep' (non-negative number expected)", 2)
    end
    local r = request.cur
    if r == nil or r.lctx == nil then
      error("API disabled in the context of init_worker_by_lua*", 2)
    end
    local ph = r.phase
    if ph == "header_filter" or ph == "body_filter" or ph == "log" then
      error("API disabled in the context of " .. ph, 2)
    end
    local rc = C.gw_ffi_sleep(r.lctx, seconds)
    if rc == AGAIN then
      request.await(r)
    elseif rc ~= OK then
      error("could not sleep", 2)
    end
  end

  function ngx.get_phase()
    local r = request.cur
    if r then
      local ph = r.phase
      if ph == "response" then
        return "content"
      end
      return ph or "timer"
    end
    return rawget(request, "phase") or "init_worker"
  end

  ngx.worker = {
    id = function()
      return gw.available and C.gw_ffi_worker_id() or 0
    end,
    count = function()
      return gw.available and C.gw_ffi_worker_count() or 1
    end,
    pid = function()
      return gw.available and C.gw_ffi_worker_pid() or 0
    end,
    exiting = function()
      return gw.available and C.gw_ffi_exiting() ~= 0 or false
    end,
  }

  ngx.config = {
    subsystem = "http",
    ngx_lua_version = 10026,
    nginx_version = 1022001,
    debug = false,
    prefix = function()
      local s = rawget(_G, "LUAGATE_SETTINGS")
      return type(s) == "table" and s.prefix or ""
    end,
    nginx_configure = function()
      return ""
    end,
  }

  ngx.timer = new_timer()
  ngx.socket = { tcp = require("luagate.socket").tcp }
  ngx.location = {
    capture = function()
      error("ngx.location.capture is not supported", 2)
    end,
    capture_multi = function()
      error("ngx.location.capture_multi is not supported", 2)
    end,
  }

  ngx.is_subrequest = false

  -- per-request fields
  local no_request_ctx = {}
  setmetatable(ngx, {
    __index = function(_, k)
      if k == "ctx" then
        local r = request.cur
        if not r then
          return no_request_ctx
        end
        local ctx = r.ctx
        if ctx == nil then
          ctx = {}
          r.ctx = ctx
        end
        return ctx
      elseif k == "status" then
        local r = request.cur
        if not r or r.ptr == nil then
          return 0
        end
        return C.gw_ffi_resp_status(r.ptr)
      elseif k == "headers_sent" then
        local r = request.cur
        return r ~= nil and (r.phase == "body_filter" or r.phase == "log")
      end
      return nil
    end,
    __newindex = function(t, k, v)
      if k == "ctx" then
        if type(v) ~= "table" then
          error("ctx should be a table while getting a " .. type(v), 2)
        end
        local r = request.cur
        if not r then
          no_request_ctx = v
          return
        end
        r.ctx = v
      elseif k == "status" then
        local r = req(2)
        if not HEADER_WRITABLE[r.phase] then
          error("attempt to set ngx.status after sending out response " ..
                "headers", 2)
        end
        v = tonumber(v)
        if not v then
          error("bad status", 2)
        end
        err_p[0] = nil
        if C.gw_ffi_resp_set_status(r.ptr, v, err_p) ~= OK then
          error(errmsg("could not set status"), 2)
        end
      else
        rawset(t, k, v)
      end
    end,
  })

  return ngx
end



return setmetatable(_M, {
  __call = function(_, ...)
    return _M.new(...)
  end,
})
