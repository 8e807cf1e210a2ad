-- kong.request: the client request as received (with the header changes
-- plugins made through kong.service.request). Phases and errors follow
-- Kong's kong/pdk/request.lua documentation.

local ffi = require "ffi"
local gw = require "luagate.ffi"
local request = require "luagate.request"
local private = require "luagate.pdk.private"

local type = type
local error = error
local tonumber = tonumber
local lower = string.lower
local find = string.find
local sub = string.sub
local match = string.match
local byte = string.byte
local ffi_string = ffi.string

local C = gw.C
local str_p, len_p = gw.str_p, gw.len_p
local err_p, dbl_p = gw.err_p, gw.dbl_p
local OK, AGAIN, ERROR = gw.OK, gw.AGAIN, gw.ERROR

local check = private.check
local PHASES = private.PHASES
local ffi_str = private.ffi_str
local decode_args = private.decode_args
local normalize_header_name = private.normalize_header_name
local header_value = private.header_value
local build_headers = private.build_headers
local mime_of = private.mime_of

local REQUEST = PHASES.request
local BODY = PHASES.rewrite_access_response

local MIN_HEADERS, MAX_HEADERS = 1, 1000
local DEFAULT_MAX_HEADERS = 100
local MIN_QUERY_ARGS, MAX_QUERY_ARGS = 1, 1000
local DEFAULT_MAX_QUERY_ARGS = 100
local DEFAULT_MAX_POST_ARGS = 100


local _M = {}


local function get_host(r)
  local host = header_value(r.ptr, C.gw_ffi_req_header, "host")
  if not host or host == "" then
    return ""
  end
  if byte(host, 1) == 91 then -- "[" IPv6 literal
    local h = match(host, "^(%b[])")
    return lower(h or host)
  end
  local colon = find(host, ":", 1, true)
  if colon then
    host = sub(host, 1, colon - 1)
  end
  return lower(host)
end
_M._get_host = get_host


local function raw_query(r)
  return ffi_str(C.gw_ffi_req_query, r.ptr) or ""
end
_M._raw_query = raw_query


local function path(r)
  return ffi_str(C.gw_ffi_req_path, r.ptr) or "/"
end


-- Reads the whole request body (waiting for it); returns the body ("" when
-- there is none) or nil, err.
local function read_body(r)
  err_p[0] = nil
  local rc = C.gw_ffi_req_read_body(r.ptr, err_p)
  while rc == AGAIN do
    request.await(r)
    err_p[0] = nil
    rc = C.gw_ffi_req_read_body(r.ptr, err_p)
  end
  if rc == ERROR then
    return nil, private.errmsg("could not read the request body")
  end
  if C.gw_ffi_req_body(r.ptr, str_p, len_p) == OK then
    return ffi_string(str_p[0], len_p[0])
  end
  return ""
end
_M._read_body = read_body


local function check_max(v, what, min, max)
  if type(v) ~= "number" then
    error(what .. " must be a number", 3)
  elseif v < min then
    error(what .. " must be >= " .. min, 3)
  elseif v > max then
    error(what .. " must be <= " .. max, 3)
  end
end


function _M.get_scheme()
  local r = check(REQUEST)
  return C.gw_ffi_req_tls(r.ptr) == 1 and "https" or "http"
end


function _M.get_host()
  return get_host(check(REQUEST))
end


function _M.get_port()
  local r = check(REQUEST)
  return C.gw_ffi_req_server_port(r.ptr)
end


-- no trusted_ips yet: the forwarded values are the direct ones
function _M.get_forwarded_scheme()
  local r = check(REQUEST)
  return C.gw_ffi_req_tls(r.ptr) == 1 and "https" or "http"
end


function _M.get_forwarded_host()
  return get_host(check(REQUEST))
end


function _M.get_forwarded_port()
  local r = check(REQUEST)
  return C.gw_ffi_req_server_port(r.ptr)
end


function _M.get_forwarded_path()
  return path(check(REQUEST))
end


function _M.get_forwarded_prefix()
  check(REQUEST)
  return nil
end


function _M.get_http_version()
  local r = check(REQUEST)
  if C.gw_ffi_req_http_version(r.ptr, dbl_p) == OK then
    return tonumber(dbl_p[0])
  end
  return nil
end


function _M.get_method()
  local r = check(REQUEST)
  return ffi_str(C.gw_ffi_req_method, r.ptr)
end


function _M.get_path()
  return path(check(REQUEST))
end


function _M.get_raw_path()
  local r = check(REQUEST)
  return ffi_str(C.gw_ffi_req_raw_path, r.ptr) or "/"
end


function _M.get_path_with_query()
  local r = check(REQUEST)
  local q = raw_query(r)
  if q == "" then
    return path(r)
  end
  return path(r) .. "?" .. q
end


function _M.get_raw_query()
  return raw_query(check(REQUEST))
end


function _M.get_query_arg(name)
  local r = check(REQUEST)
  if type(name) ~= "string" then
    error("query argument name must be a string", 2)
  end
  local v = decode_args(raw_query(r), DEFAULT_MAX_QUERY_ARGS)[name]
  if type(v) == "table" then
    return v[1]
  end
  return v
end


function _M.get_query(max_args)
  local r = check(REQUEST)
  if max_args == nil then
    max_args = DEFAULT_MAX_QUERY_ARGS
  else
    check_max(max_args, "max_args", MIN_QUERY_ARGS, MAX_QUERY_ARGS)
  end
  return decode_args(raw_query(r), max_args)
end


function _M.get_header(name)
  local r = check(REQUEST)
  if type(name) ~= "string" then
    error("header name must be a string", 2)
  end
  return header_value(r.ptr, C.gw_ffi_req_header,
                      normalize_header_name(name))
end


function _M.get_headers(max_headers)
  local r = check(REQUEST)
  if max_headers == nil then
    max_headers = DEFAULT_MAX_HEADERS
  else
    check_max(max_headers, "max_headers", MIN_HEADERS, MAX_HEADERS)
  end
  return build_headers(r.ptr, C.gw_ffi_req_header_count,
                       C.gw_ffi_req_header_at, max_headers)
end


function _M.get_start_time()
  local r = check(REQUEST)
  local ctx = r.ctx
  local t = ctx and ctx.KONG_PROCESSING_START
  if t then
    return t
  end
  return C.gw_ffi_req_start_time(r.ptr) * 1000
end


function _M.get_uri_captures()
  local r = check(REQUEST)
  local unnamed, named = {}, {}
  local n = C.gw_ffi_req_capture_count(r.ptr)
  for i = 0, n - 1 do
    if C.gw_ffi_req_capture(r.ptr, i, str_p, len_p) == OK then
      local v = ffi_string(str_p[0], len_p[0])
      unnamed[i] = v
      local name = C.gw_ffi_req_capture_name(r.ptr, i)
      if name ~= nil then
        named[ffi_string(name)] = v
      end
    end
  end
  return { unnamed = unnamed, named = named }
end


function _M.get_raw_body()
  return read_body(check(BODY))
end


function _M.get_body(mimetype, max_args, max_allowed_file_size)
  local r = check(BODY)
  local header = header_value(r.ptr, C.gw_ffi_req_header, "content-type")
  local content_type = mimetype or header
  if not content_type then
    return nil, "missing content type"
  end
  local mime = mime_of(content_type)
  if mime == private.CONTENT_TYPE_POST then
    if max_args ~= nil then
      check_max(max_args, "max_args", 1, MAX_QUERY_ARGS)
    end
    local body, err = read_body(r)
    if not body then
      return nil, err, private.CONTENT_TYPE_POST
    end
    local args = decode_args(body, max_args or DEFAULT_MAX_POST_ARGS)
    return args, nil, private.CONTENT_TYPE_POST

  elseif mime == private.CONTENT_TYPE_JSON then
    local body, err = read_body(r)
    if not body then
      return nil, err, private.CONTENT_TYPE_JSON
    end
    local json, jerr = private.decode_json(body)
    if not json then
      return nil, jerr, private.CONTENT_TYPE_JSON
    end
    return json, nil, private.CONTENT_TYPE_JSON

  elseif mime == private.CONTENT_TYPE_FORM_DATA then
    local body, err = read_body(r)
    if not body then
      return nil, err, private.CONTENT_TYPE_FORM_DATA
    end
    local boundary = private.boundary_of(header) or
                     private.boundary_of(content_type)
    local args, perr = private.parse_multipart(body, boundary)
    if not args then
      return nil, perr, private.CONTENT_TYPE_FORM_DATA
    end
    return args, nil, private.CONTENT_TYPE_FORM_DATA
  end

  return nil, "unsupported content type '" .. content_type .. "'", mime
end


return _M
