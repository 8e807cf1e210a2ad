-- kong.service, kong.service.request, kong.service.response: the upstream
-- side of the request. Phases and errors follow Kong's kong/pdk/service.lua,
-- service/request.lua and service/response.lua documentation.

local ffi = require "ffi"
local cjson = require "cjson.safe"
local gw = require "luagate.ffi"
local private = require "luagate.pdk.private"

local type = type
local error = error
local pairs = pairs
local ipairs = ipairs
local tonumber = tonumber
local floor = math.floor
local random = math.random
local fmt = string.format
local find = string.find
local match = string.match
local char = string.char
local concat = table.concat
local sort = table.sort
local ffi_string = ffi.string

local C = gw.C
local str_p, len_p = gw.str_p, gw.len_p
local err_p = gw.err_p
local OK = gw.OK
local HDR_SET, HDR_ADD, HDR_CLEAR = gw.HDR_SET, gw.HDR_ADD, gw.HDR_CLEAR
local HDR_SET_ABSENT = gw.HDR_SET_ABSENT

local check = private.check
local PHASES = private.PHASES
local errmsg = private.errmsg
local normalize_value = private.normalize_value
local normalize_header_name = private.normalize_header_name
local validate_header = private.validate_header
local header_types = private.header_types
local name_flag = private.name_flag
local name_accepted = private.name_accepted
local validate_headers = private.validate_headers
local header_value = private.header_value
local build_headers = private.build_headers

local ACCESS = PHASES.access
local REWRITE_ACCESS = PHASES.rewrite_access
local HEADER_BODY_LOG = PHASES.header_body_log

local ACCEPTED_METHODS = {
  GET = true, HEAD = true, PUT = true, POST = true, DELETE = true,
  OPTIONS = true, MKCOL = true, COPY = true, MOVE = true, PROPFIND = true,
  PROPPATCH = true, LOCK = true, UNLOCK = true, PATCH = true, TRACE = true,
  CONNECT = true,
}

local MAX_PORT = 65535
local MAX_TIMEOUT = 2147483646
local MAX_RETRIES = 32767


local function is_integer(v)
  return type(v) == "number" and v == floor(v) and v == v and
         v ~= math.huge and v ~= -math.huge
end


local function call_or_raise(rc, what)
  if rc ~= OK then
    error(errmsg("could not set " .. what), 3)
  end
end


-- kong.service ---------------------------------------------------------------

local service = {}


-- Weighted random pick among an upstream's targets ("host:port").
local function pick_target(up)
  local total = 0
  for _, t in ipairs(up.targets or {}) do
    total = total + (t.weight or 100)
  end
  if total <= 0 then
    return nil
  end
  local x = random() * total
  for _, t in ipairs(up.targets) do
    x = x - (t.weight or 100)
    if x < 0 then
      return t
    end
  end
  return up.targets[#up.targets]
end


local function split_target(target)
  local host, port = match(target, "^%[(.+)%]:(%d+)$")
  if not host then
    host, port = match(target, "^([^:]+):(%d+)$")
  end
  if not host then
    return target, 8000
  end
  return host, tonumber(port)
end


-- Partial: no balancer yet. Picks one target of the named upstream
-- (weighted random) and routes to it with set_target.
function service.set_upstream(host)
  local r = check(ACCESS)
  if type(host) ~= "string" then
    error("host must be a string", 2)
  end
  local up
  for _, u in ipairs(r.conf and r.conf.upstreams or {}) do
    if u.name == host then
      up = u
      break
    end
  end
  if not up then
    return nil, "could not find an Upstream named '" .. host .. "'"
  end
  local t = pick_target(up)
  if not t then
    return nil, "no healthy targets in Upstream '" .. host .. "'"
  end
  local thost, tport = split_target(t.target)
  err_p[0] = nil
  if C.gw_ffi_upstream_target(r.ptr, thost, #thost, tport, err_p) ~= OK then
    return nil, errmsg("not supported yet")
  end
  r.upstream_name = host
  return true
end


function service.set_target(host, port)
  local r = check(ACCESS)
  if type(host) ~= "string" then
    error("host must be a string", 2)
  end
  if type(port) ~= "number" or floor(port) ~= port then
    error("port must be an integer", 2)
  end
  if port < 0 or port > MAX_PORT then
    error("port must be an integer between 0 and 65535: given " .. port, 2)
  end
  err_p[0] = nil
  call_or_raise(C.gw_ffi_upstream_target(r.ptr, host, #host, port, err_p),
                "the target")
end


function service.set_retries(retries)
  local r = check(ACCESS)
  if not is_integer(retries) then
    error("retries must be an integer", 2)
  end
  if retries < 0 or retries > MAX_RETRIES then
    error("retries must be an integer between 0 and " .. MAX_RETRIES, 2)
  end
  -- no retries in the runtime yet: kept for kong.log.serialize and
  -- plugins reading ngx.ctx.balancer_data
  r.retries = retries
  local ctx = r.ctx
  if ctx then
    local bd = ctx.balancer_data
    if type(bd) ~= "table" then
      bd = {}
      ctx.balancer_data = bd
    end
    bd.retries = retries
  end
end


function service.set_timeouts(connect_timeout, write_timeout, read_timeout)
  local r = check(ACCESS)
  local function valid(v, name)
    if not is_integer(v) then
      error(name .. " must be an integer", 3)
    end
    if v < 1 or v > MAX_TIMEOUT then
      error(name .. " must be an integer between 1 and " .. MAX_TIMEOUT, 3)
    end
  end
  valid(connect_timeout, "connect_timeout")
  valid(write_timeout, "write_timeout")
  valid(read_timeout, "read_timeout")
  C.gw_ffi_upstream_timeouts(r.ptr, connect_timeout, write_timeout,
                             read_timeout)
end


function service.set_target_retry_callback()
  check(ACCESS)
  error("not supported yet", 2)
end


function service.set_tls_verify()
  check(REWRITE_ACCESS)
  return nil, "not supported yet"
end


-- kong.service.request ------------------------------------------------------

local sreq = {}


local function upstream_header(r, op, name, value)
  err_p[0] = nil
  local flag = name_flag(name)
  local rc = C.gw_ffi_upstream_header(r.ptr, op + flag, name, #name, value,
                                      value and #value or 0, err_p)
  if rc == OK and flag == 0 then
    name_accepted(name)
  end
  return rc
end


local function set_one_header(r, name, value, level)
  if type(value) == "table" then
    local first = true
    for _, v in ipairs(value) do
      v = normalize_value(v)
      if upstream_header(r, first and HDR_SET or HDR_ADD, name, v) ~= OK then
        error(errmsg("could not set header"), level + 1)
      end
      first = false
    end
    if first then
      upstream_header(r, HDR_CLEAR, name, nil)
    end
    return
  end
  value = normalize_value(value)
  if upstream_header(r, HDR_SET, name, value) ~= OK then
    -- refused by the runtime: Kong's message when it is CR or LF
    validate_header(name, value, level + 1)
    error(errmsg("could not set header"), level + 1)
  end
end


function sreq.enable_buffering()
  check(REWRITE_ACCESS)
end


function sreq.set_scheme(scheme)
  local r = check(REWRITE_ACCESS)
  if type(scheme) ~= "string" then
    error("scheme must be a string", 2)
  end
  if scheme ~= "http" and scheme ~= "https" then
    error("invalid scheme: " .. scheme, 2)
  end
  err_p[0] = nil
  call_or_raise(C.gw_ffi_upstream_scheme(r.ptr, scheme, #scheme, err_p),
                "the scheme")
end


local function set_path(r, path, level)
  err_p[0] = nil
  if C.gw_ffi_upstream_path(r.ptr, path, #path, err_p) ~= OK then
    error(errmsg("could not set the path"), level + 1)
  end
  r.upstream_path = path
end
sreq._set_path = set_path


function sreq.set_path(path)
  local r = check(REWRITE_ACCESS)
  if type(path) ~= "string" then
    error("path must be a string", 2)
  end
  if path:sub(1, 1) ~= "/" then
    error("path must start with /", 2)
  end
  if find(path, "[%z\r\n ?#]") then
    error("invalid path: '" .. path .. "'", 2)
  end
  set_path(r, path, 2)
end


local function set_query(r, query, level)
  err_p[0] = nil
  if C.gw_ffi_upstream_query(r.ptr, query, #query, err_p) ~= OK then
    error(errmsg("could not set the query"), level + 1)
  end
  r.upstream_query = query
end
sreq._set_query = set_query


function sreq.set_raw_query(query)
  local r = check(REWRITE_ACCESS)
  if type(query) ~= "string" then
    error("query must be a string", 2)
  end
  set_query(r, query, 2)
end


function sreq.set_method(method)
  local r = check(REWRITE_ACCESS)
  if type(method) ~= "string" then
    error("method must be a string", 2)
  end
  if not ACCEPTED_METHODS[method] then
    error("invalid method: " .. method, 2)
  end
  err_p[0] = nil
  call_or_raise(C.gw_ffi_upstream_method(r.ptr, method, #method, err_p),
                "the method")
end


function sreq.set_query(args)
  local r = check(REWRITE_ACCESS)
  if type(args) ~= "table" then
    error("args must be a table", 2)
  end
  for k, v in pairs(args) do
    if type(k) ~= "string" then
      error("query argument names must be strings", 2)
    end
    local tv = type(v)
    if tv == "table" then
      for _, vv in ipairs(v) do
        local tvv = type(vv)
        if tvv ~= "string" and tvv ~= "number" and tvv ~= "boolean" then
          error("attempt to use " .. tvv .. " as query arg value", 2)
        end
      end
    elseif tv ~= "string" and tv ~= "number" and tv ~= "boolean" then
      error("attempt to use " .. tv .. " as query arg value", 2)
    end
  end
  set_query(r, private.encode_args(args), 2)
end


-- The query the upstream gets so far.
local function current_query(r)
  if r.upstream_query then
    return r.upstream_query
  end
  return private.ffi_str(C.gw_ffi_req_query, r.ptr) or ""
end
sreq._current_query = current_query


function sreq.clear_query_arg(name)
  local r = check(REWRITE_ACCESS)
  if type(name) ~= "string" then
    error("query argument name must be a string", 2)
  end
  local args = private.decode_args(current_query(r), 0)
  if args[name] == nil then
    return
  end
  args[name] = nil
  set_query(r, private.encode_args(args), 2)
end


function sreq.set_header(header, value)
  local r = check(REWRITE_ACCESS)
  value = header_types(header, value)
  set_one_header(r, header, value, 2)
end


function sreq.add_header(header, value)
  local r = check(REWRITE_ACCESS)
  value = normalize_value(header_types(header, value))
  if upstream_header(r, HDR_ADD, header, value) ~= OK then
    validate_header(header, value, 2)
    error(errmsg("could not add header"), 2)
  end
end


function sreq.clear_header(header)
  local r = check(REWRITE_ACCESS)
  if type(header) ~= "string" then
    error("header name must be a string", 2)
  end
  upstream_header(r, HDR_CLEAR, header, nil)
end


-- luagate's: upstream headers set together on many requests, with their
-- names and values checked once (request-transformer's constant adds).
-- list is an array of { name, value }, value a string, number or boolean
-- as set_header takes it; with `if_absent = true` the entry is set only
-- when the request has no header of that name then (as
-- `if kong.request.get_header(name) == nil then set_header(name, value)
-- end`; not for Host, nor for a name with "_", which get_header also
-- matches with "-"). nil when an entry is not one set_header would take
-- as it is (a name that is not a token, CR or LF, another type): then
-- set_header is the way, with its errors.
function sreq.prepare_headers(list)
  if type(list) ~= "table" then
    return nil
  end
  local parts = {}
  for i = 1, #list do
    local e = list[i]
    if type(e) ~= "table" then
      return nil
    end
    local name, value = e[1], e[2]
    local tv = type(value)
    if type(name) ~= "string" or
       (tv ~= "string" and tv ~= "number" and tv ~= "boolean") then
      return nil
    end
    local op = HDR_SET
    if e.if_absent then
      if find(name, "_", 1, true) then
        return nil
      end
      op = HDR_SET_ABSENT -- the runtime refuses Host
    end
    parts[i] = char(48 + op) .. name .. "\0" .. normalize_value(value) ..
               "\0"
  end
  local hops = private.hops(concat(parts))
  if not hops then
    return nil
  end
  return { hops = hops }
end


-- set_header (or its when-absent form) for each entry of prepared
-- (prepare_headers), in order, in one runtime call. Phases as
-- set_header's.
function sreq.set_prepared_headers(prepared)
  local r = check(REWRITE_ACCESS)
  if type(prepared) ~= "table" or prepared.hops == nil then
    error("prepared headers expected " ..
          "(kong.service.request.prepare_headers)", 2)
  end
  err_p[0] = nil
  if C.gw_ffi_upstream_set_hops(r.ptr, prepared.hops, nil, err_p) ~= OK then
    error(errmsg("could not set header"), 2)
  end
end


function sreq.set_headers(headers)
  local r = check(REWRITE_ACCESS)
  validate_headers(headers)
  local names = {}
  for name in pairs(headers) do
    names[#names + 1] = name
  end
  sort(names)
  for _, name in ipairs(names) do
    set_one_header(r, name, headers[name], 2)
  end
end


local function set_body(r, body, level)
  err_p[0] = nil
  if C.gw_ffi_upstream_body(r.ptr, body, #body, err_p) ~= OK then
    error(errmsg("could not set the body"), level + 1)
  end
end
sreq._set_body = set_body


function sreq.set_raw_body(body)
  local r = check(REWRITE_ACCESS)
  if type(body) ~= "string" then
    error("body must be a string", 2)
  end
  set_body(r, body, 2)
end


function sreq.set_body(args, mimetype)
  local r = check(REWRITE_ACCESS)
  if type(args) ~= "table" then
    error("args must be a table", 2)
  end
  if mimetype ~= nil and type(mimetype) ~= "string" then
    error("mime must be a string", 2)
  end
  local header = header_value(r.ptr, C.gw_ffi_req_header, "content-type")
  local ctype = mimetype or header
  if not ctype then
    return nil, "content type was neither explicitly given as an argument " ..
                "or received as a header"
  end
  local mime = private.mime_of(ctype)
  local body
  if mime == private.CONTENT_TYPE_POST then
    for k, v in pairs(args) do
      if type(k) ~= "string" then
        error("arg keys must be strings", 2)
      end
      local tv = type(v)
      if tv ~= "string" and tv ~= "number" and tv ~= "boolean" and
         tv ~= "table" then
        error("arg values must be strings, numbers, booleans or tables", 2)
      end
    end
    body = private.encode_args(args)

  elseif mime == private.CONTENT_TYPE_JSON then
    local err
    body, err = cjson.encode(args)
    if not body then
      return nil, "could not encode the body as JSON: " .. err
    end

  elseif mime == private.CONTENT_TYPE_FORM_DATA then
    local boundary = private.boundary_of(ctype)
    if not boundary then
      boundary = fmt("%x%x", random(0x7fffffff), random(0x7fffffff))
      ctype = private.CONTENT_TYPE_FORM_DATA .. "; boundary=" .. boundary
    end
    body = private.encode_multipart(args, boundary)

  else
    return nil, "unsupported content type '" .. ctype .. "'"
  end

  if mimetype or mime == private.CONTENT_TYPE_FORM_DATA then
    if upstream_header(r, HDR_SET, "Content-Type", ctype) ~= OK then
      error(errmsg("could not set header"), 2)
    end
  end
  set_body(r, body, 2)
  return true
end


-- kong.service.response ------------------------------------------------------

local sresp = {}


function sresp.get_status()
  local r = check(HEADER_BODY_LOG)
  local s = C.gw_ffi_upstream_status(r.ptr)
  if s <= 0 then
    return nil
  end
  return s
end


function sresp.get_headers(max_headers)
  local r = check(HEADER_BODY_LOG)
  if max_headers == nil then
    max_headers = 100
  elseif type(max_headers) ~= "number" then
    error("max_headers must be a number", 2)
  elseif max_headers < 1 then
    error("max_headers must be >= 1", 2)
  elseif max_headers > 1000 then
    error("max_headers must be <= 1000", 2)
  end
  return build_headers(r.ptr, C.gw_ffi_upstream_resp_header_count,
                       C.gw_ffi_upstream_resp_header_at, max_headers)
end


function sresp.get_header(name)
  local r = check(HEADER_BODY_LOG)
  if type(name) ~= "string" then
    error("header name must be a string", 2)
  end
  return header_value(r.ptr, C.gw_ffi_upstream_resp_header,
                      normalize_header_name(name))
end


-- The buffered upstream body (response phase, or later when the route
-- used buffered proxying); nil otherwise.
local function raw_body(r)
  if C.gw_ffi_resp_body(r.ptr, str_p, len_p) == OK then
    return ffi_string(str_p[0], len_p[0])
  end
  return nil
end


function sresp.get_raw_body()
  return raw_body(check(HEADER_BODY_LOG))
end


function sresp.get_body(mimetype, max_args)
  local r = check(HEADER_BODY_LOG)
  local ctype = mimetype or
                header_value(r.ptr, C.gw_ffi_upstream_resp_header,
                             "content-type")
  if not ctype then
    return nil, "missing content type"
  end
  local body = raw_body(r)
  if not body then
    return nil, "the body was not buffered"
  end
  local mime = private.mime_of(ctype)
  if mime == private.CONTENT_TYPE_POST then
    return private.decode_args(body, max_args or 100), nil, mime
  elseif mime == private.CONTENT_TYPE_JSON then
    local json, err = private.decode_json(body)
    return json, err, mime
  elseif mime == private.CONTENT_TYPE_FORM_DATA then
    local args, err = private.parse_multipart(body,
                                              private.boundary_of(ctype))
    return args, err, mime
  end
  return nil, "unsupported content type '" .. ctype .. "'", mime
end


service.request = sreq
service.response = sresp

-- helpers for luagate.ngx
service._set_one_header = set_one_header
service._upstream_header = upstream_header

return service
