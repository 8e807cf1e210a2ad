-- Helpers shared by the PDK modules (kong.*) and the ngx API (luagate.ngx):
-- phase checks, argument validation with Kong's error messages, reading
-- strings and header lists through the FFI, query-string and body
-- decoding, error-page selection. Everything here that needs no request is
-- covered by spec/01-unit/30-pdk_args_spec.lua.

local ffi = require "ffi"
local cjson = require "cjson.safe"
local request = require "luagate.request"
local gw = require "luagate.ffi"

local type = type
local error = error
local pairs = pairs
local next = next
local ipairs = ipairs
local tostring = tostring
local tonumber = tonumber
local rawget = rawget
local setmetatable = setmetatable
local fmt = string.format
local find = string.find
local sub = string.sub
local lower = string.lower
local gsub = string.gsub
local byte = string.byte
local match = string.match
local concat = table.concat
local sort = table.sort
local ffi_string = ffi.string
local clear_tab = require "table.clear"

local str_p, len_p = gw.str_p, gw.len_p
local str2_p, len2_p = gw.str2_p, gw.len2_p
local err_p = gw.err_p
local C = gw.C
local OK = gw.OK

local uri_ok, uri = pcall(require, "luagate.ngx.uri")
if not uri_ok then
  uri = nil
end

local _M = {}


-- phases ------------------------------------------------------------------

-- Kong's order (kong/pdk/private/phases.lua bit order), for error messages
local PHASE_ORDER = {
  "init_worker", "rewrite", "access", "response", "header_filter",
  "body_filter", "log", "timer",
}

_M.PHASE_ORDER = PHASE_ORDER

local function phase_set(...)
  local set = {}
  local list = { ... }
  for _, p in ipairs(list) do
    set[p] = true
  end
  local names = {}
  for _, p in ipairs(PHASE_ORDER) do
    if set[p] then
      names[#names + 1] = p
    end
  end
  set.__names = concat(names, ", ")
  return set
end
_M.phase_set = phase_set

-- The sets the PDK uses (Kong's @phases lists, minus balancer, certificate,
-- preread, error and admin_api which luagate has not).
_M.PHASES = {
  request = phase_set("rewrite", "access", "response", "header_filter",
                      "body_filter", "log"),
  rewrite_access = phase_set("rewrite", "access"),
  rewrite_access_response = phase_set("rewrite", "access", "response"),
  access = phase_set("access"),
  access_and_after = phase_set("access", "response", "header_filter",
                               "body_filter", "log"),
  rewrite_access_header = phase_set("rewrite", "access", "response",
                                    "header_filter"),
  header_body_log = phase_set("response", "header_filter", "body_filter",
                              "log"),
  body_filter = phase_set("body_filter"),
  log = phase_set("log"),
}


-- The running request, checked against `allowed` (a phase_set). Raises
-- Kong's "function cannot be called in X phase (only in: ...)" at `level`
-- (default: the caller of the PDK function), or "no request found" when no
-- request runs (timers, init_worker).
function _M.check(allowed, level)
  local r = request.cur
  if r == nil or r.ptr == nil then
    if r and not allowed[r.phase] then
      error(fmt("function cannot be called in %s phase (only in: %s)",
                tostring(r.phase), allowed.__names), (level or 2) + 1)
    end
    error("no request found", (level or 2) + 1)
  end
  if not allowed[r.phase] then
    error(fmt("function cannot be called in %s phase (only in: %s)",
              tostring(r.phase), allowed.__names), (level or 2) + 1)
  end
  return r
end


-- The running request or nil (no phase check).
function _M.cur()
  local r = request.cur
  if r and r.ptr ~= nil then
    return r
  end
  return nil
end


-- FFI string reads ----------------------------------------------------------

-- Calls fn(ptr, str_p, len_p); the string on GW_OK, else nil.
function _M.ffi_str(fn, ptr)
  if fn(ptr, str_p, len_p) == 0 then
    return ffi_string(str_p[0], len_p[0])
  end
  return nil
end


-- The static error text of the last call (err_p), or default.
local function errmsg(default)
  local e = err_p[0]
  if e ~= nil then
    return ffi_string(e)
  end
  return default or "unknown error"
end
_M.errmsg = errmsg

-- Marks r as exited (kong.response.exit and friends, ngx.exit) and
-- registers its response with the runtime. ngx.ctx, when it exists, gets
-- KONG_EXITED; one made later copies it from r.kong_exited. Raises at level.
function _M.register_exit(r, status, body, level)
  local ctx = rawget(r, "ctx")
  if ctx then
    ctx.KONG_EXITED = true
  end
  r.kong_exited = true
  r.exited = true
  err_p[0] = nil
  if C.gw_ffi_resp_exit(r.ptr, status, body, body and #body or 0,
                        err_p) ~= OK then
    error(errmsg("could not send the response"), level + 1)
  end
end


function _M.clear_err()
  err_p[0] = nil
end


-- header names and values ------------------------------------------------

-- "X_Foo_Bar" -> "x-foo-bar". Plugins look up the same few names on every
-- request: the results are kept, by name (up to NORMALIZED_MAX names, then
-- the cache starts again).
local NORMALIZED_MAX = 1024
local normalized, n_normalized = {}, 0

local function normalize_header_name(name)
  local n = normalized[name]
  if n then
    return n
  end
  n = lower(name)
  if find(n, "_", 1, true) then
    n = gsub(n, "_", "-")
  end
  if n_normalized >= NORMALIZED_MAX then
    clear_tab(normalized)
    n_normalized = 0
  end
  normalized[name] = n
  n_normalized = n_normalized + 1
  return n
end
_M.normalize_header_name = normalize_header_name


-- The type checks of Kong's validate_header: returns the value as a
-- string. Raises at level. The runtime refuses CR, LF (and NUL) in the
-- values the PDK sets, without changing anything: the PDK's setters call
-- only this, and validate_header (Kong's message) once the runtime refused.
local function header_types(name, value, level)
  local tname = type(name)
  if tname ~= "string" then
    error(fmt("invalid header name %q: got %s, expected string",
              tostring(name), tname), level + 1)
  end
  local tvalue = type(value)
  if tvalue ~= "string" then
    if tvalue == "number" or tvalue == "boolean" then
      value = tostring(value)
    else
      error(fmt("invalid header value for %q: got %s, expected " ..
                "string, number or boolean", name, tvalue), level + 1)
    end
  end
  return value
end


function _M.header_types(name, value, level)
  -- not a tail call: the error level counts this frame
  local v = header_types(name, value, (level or 2) + 1)
  return v
end


-- Whether s holds CR or LF. Two plain finds: a pattern class ("[\r\n]")
-- is matched byte by byte in the interpreter (string.find with a pattern
-- is not compiled by LuaJIT), about 125 instructions a byte, more than the
-- rest of setting a header.
local function has_cr_lf(s)
  return find(s, "\n", 1, true) ~= nil or find(s, "\r", 1, true) ~= nil
end
_M.has_cr_lf = has_cr_lf


-- Kong's validate_header: returns the value as a string. Raises at level.
function _M.validate_header(name, value, level)
  level = (level or 2) + 1
  value = header_types(name, value, level)
  if has_cr_lf(value) then
    error(fmt("invalid header value for %q: contains CR or LF", name),
          level)
  end
  return value
end


-- Header names the runtime accepted (tokens), by content: the next
-- calls with one of them pass GW_HDR_NAME_OK and the runtime checks only
-- the value. Plugins set the same few names on every request; the set
-- stops growing at NAMES_OK_MAX names (the others are checked each time).
local NAMES_OK_MAX = 4096
local HDR_NAME_OK = gw.HDR_NAME_OK
local names_ok, n_names_ok = {}, 0

-- The flag for name: HDR_NAME_OK or 0.
function _M.name_flag(name)
  return names_ok[name] or 0
end

-- Remembers name after the runtime accepted it.
function _M.name_accepted(name)
  if n_names_ok < NAMES_OK_MAX and not names_ok[name] then
    names_ok[name] = HDR_NAME_OK
    n_names_ok = n_names_ok + 1
  end
end


-- Kong's validate_headers (table of name -> value or array of strings).
function _M.validate_headers(headers, level)
  level = (level or 2) + 1
  if type(headers) ~= "table" then
    error("headers must be a table", level)
  end
  for k, v in pairs(headers) do
    local tk = type(k)
    if tk ~= "string" then
      error(fmt("invalid header name %q: got %s, expected string",
                tostring(k), tk), level)
    end
    local tv = type(v)
    if tv == "table" then
      for _, vv in ipairs(v) do
        local tvv = type(vv)
        if tvv ~= "string" then
          error(fmt("invalid header value in array %q: got %s, " ..
                    "expected string", k, tvv), level)
        end
        if has_cr_lf(vv) then
          error(fmt("invalid header value for %q: contains CR or LF", k),
                level)
        end
      end
    elseif tv == "string" then
      if has_cr_lf(v) then
        error(fmt("invalid header value for %q: contains CR or LF", k),
              level)
      end
    elseif tv ~= "number" and tv ~= "boolean" then
      error(fmt("invalid header value for %q: got %s, expected string, " ..
                "number, boolean or array of strings", k, tv), level)
    end
  end
end


-- Header operations prepared once (gw_ffi_hops_new, gw/hops.h) from their
-- packed form: the cdata, freed when collected; nil and the runtime's
-- reason when it refused them (a name that is not a token, CR, LF or NUL in
-- a value, a malformed list).
function _M.hops(packed)
  err_p[0] = nil
  local o = C.gw_ffi_hops_new(packed, #packed, err_p)
  if o == nil then
    return nil, _M.errmsg("could not prepare the headers")
  end
  return ffi.gc(o, C.gw_ffi_hops_free)
end


-- Kong's normalize_multi_header: "" becomes " " (nginx drops empty values)
function _M.normalize_value(v)
  local tv = type(v)
  if tv == "string" then
    return v == "" and " " or v
  end
  return tostring(v)
end


-- header tables -------------------------------------------------------------

-- Lookups on a headers table are case-insensitive and accept "_" for "-"
-- (as ngx.req.get_headers); the keys stored are lowercase.
local headers_mt = {
  __index = function(t, k)
    if type(k) ~= "string" then
      return nil
    end
    local n = normalize_header_name(k)
    if n ~= k then
      return rawget(t, n)
    end
    return nil
  end,
}
_M.headers_mt = headers_mt


-- Builds a headers table through count_fn / at_fn (gw_ffi_*_header_count /
-- _header_at). max: at most that many header lines (0 = all); raw: keep
-- the names as sent and no metatable. Returns t[, "truncated"].
function _M.build_headers(ptr, count_fn, at_fn, max, raw)
  local n = count_fn(ptr)
  local truncated
  if max and max > 0 and n > max then
    n = max
    truncated = "truncated"
  end
  local t = {}
  for i = 0, n - 1 do
    if at_fn(ptr, i, str_p, len_p, str2_p, len2_p) == 0 then
      local name = ffi_string(str_p[0], len_p[0])
      if not raw then
        name = lower(name)
      end
      local value = ffi_string(str2_p[0], len2_p[0])
      local cur = rawget(t, name)
      if cur == nil then
        t[name] = value
      elseif type(cur) == "table" then
        cur[#cur + 1] = value
      else
        t[name] = { cur, value }
      end
    end
  end
  if not raw then
    setmetatable(t, headers_mt)
  end
  return t, truncated
end


-- The first value (or all values as an array when several) of header name
-- through lookup_fn (gw_ffi_req_header and friends); nil when absent.
function _M.header_value(ptr, lookup_fn, name, all)
  local n = #name
  if lookup_fn(ptr, name, n, 0, str_p, len_p) ~= 0 then
    return nil
  end
  local first = ffi_string(str_p[0], len_p[0])
  if not all then
    return first
  end
  if lookup_fn(ptr, name, n, 1, str_p, len_p) ~= 0 then
    return first
  end
  local list = { first, ffi_string(str_p[0], len_p[0]) }
  local i = 2
  while lookup_fn(ptr, name, n, i, str_p, len_p) == 0 do
    i = i + 1
    list[i] = ffi_string(str_p[0], len_p[0])
  end
  return list
end


-- query strings -------------------------------------------------------------

local function hexval(c)
  if c >= 48 and c <= 57 then return c - 48 end
  if c >= 65 and c <= 70 then return c - 55 end
  if c >= 97 and c <= 102 then return c - 87 end
  return nil
end

-- unescape_uri ("+" is a space), used when luagate.ngx.uri is absent
local function unescape(s)
  if not find(s, "[%%+]") then
    return s
  end
  s = gsub(s, "+", " ")
  return (gsub(s, "%%(%x%x)", function(h)
    return string.char(hexval(byte(h, 1)) * 16 + hexval(byte(h, 2)))
  end))
end
_M.unescape = uri and uri.unescape_uri or unescape

local function escape(s)
  return (gsub(s, "[^%w%-%._~]", function(c)
    return fmt("%%%02X", byte(c))
  end))
end
_M.escape = uri and function(s) return uri.escape_uri(s) end or escape


local function decode_args_fallback(s, max_args)
  max_args = max_args or 100
  local args = {}
  local count = 0
  for pair in string.gmatch(s, "[^&]+") do
    if max_args > 0 and count >= max_args then
      return args, "truncated"
    end
    local eq = find(pair, "=", 1, true)
    local k, v
    if eq then
      k = unescape(sub(pair, 1, eq - 1))
      v = unescape(sub(pair, eq + 1))
    else
      k = unescape(pair)
      v = true
    end
    if k ~= "" then
      count = count + 1
      local cur = args[k]
      if cur == nil then
        args[k] = v
      elseif type(cur) == "table" then
        cur[#cur + 1] = v
      else
        args[k] = { cur, v }
      end
    end
  end
  return args
end

-- ngx.decode_args semantics; returns args[, "truncated"]
_M.decode_args = uri and uri.decode_args or decode_args_fallback


local function encode_args_fallback(args)
  local keys = {}
  for k in pairs(args) do
    keys[#keys + 1] = k
  end
  sort(keys)
  local out = {}
  local function put(k, v)
    if v == true then
      out[#out + 1] = k
    elseif v ~= false and v ~= nil then
      out[#out + 1] = k .. "=" .. escape(tostring(v))
    end
  end
  for _, k in ipairs(keys) do
    local v = args[k]
    local ek = escape(k)
    if type(v) == "table" then
      for _, vv in ipairs(v) do
        put(ek, vv)
      end
    else
      put(ek, v)
    end
  end
  return concat(out, "&")
end

-- ngx.encode_args semantics (keys sorted)
_M.encode_args = uri and uri.encode_args or encode_args_fallback


-- bodies ------------------------------------------------------------------

_M.CONTENT_TYPE_POST = "application/x-www-form-urlencoded"
_M.CONTENT_TYPE_JSON = "application/json"
_M.CONTENT_TYPE_FORM_DATA = "multipart/form-data"


-- The mime type of a Content-Type value, lowercase, without parameters.
function _M.mime_of(content_type)
  if type(content_type) == "table" then
    content_type = content_type[1]
  end
  if type(content_type) ~= "string" then
    return nil
  end
  local m = match(content_type, "^%s*([^;%s]+)")
  return m and lower(m) or nil
end


-- The boundary parameter of a multipart Content-Type, or nil.
function _M.boundary_of(content_type)
  if type(content_type) ~= "string" then
    return nil
  end
  local params = lower(content_type)
  local i = find(params, ";%s*boundary=")
  if not i then
    return nil
  end
  local rest = sub(content_type, (find(content_type, "=", i, true)) + 1)
  return match(rest, '^"([^"]+)"') or match(rest, "^([^;%s]+)")
end


-- A simple multipart/form-data parser: returns { name = value } for the
-- parts that have a name (file parts give their content too; repeated
-- names collect in arrays), or nil, err.
function _M.parse_multipart(body, boundary)
  if not boundary or boundary == "" then
    return nil, "missing boundary"
  end
  local delim = "--" .. boundary
  local args = {}
  local pos = find(body, delim, 1, true)
  if not pos then
    return nil, "invalid multipart body"
  end
  pos = pos + #delim
  while true do
    if sub(body, pos, pos + 1) == "--" then
      break
    end
    -- skip the CRLF after the delimiter
    if sub(body, pos, pos + 1) == "\r\n" then
      pos = pos + 2
    elseif sub(body, pos, pos) == "\n" then
      pos = pos + 1
    end
    local head_end, body_start = find(body, "\r?\n\r?\n", pos)
    if not head_end then
      return nil, "invalid multipart body"
    end
    local head = sub(body, pos, head_end - 1)
    local next_delim = find(body, delim, body_start + 1, true)
    if not next_delim then
      return nil, "invalid multipart body"
    end
    local value_end = next_delim - 1
    if sub(body, value_end - 1, value_end) == "\r\n" then
      value_end = value_end - 2
    elseif sub(body, value_end, value_end) == "\n" then
      value_end = value_end - 1
    end
    local value = sub(body, body_start + 1, value_end)
    local disp = match(lower(head), "content%-disposition:([^\r\n]*)")
    local name
    if disp then
      local at = find(lower(head), "content-disposition:", 1, true)
      local line = match(sub(head, at), "^[^:]*:([^\r\n]*)")
      name = match(line, ';%s*[Nn][Aa][Mm][Ee]="([^"]*)"') or
             match(line, ";%s*[Nn][Aa][Mm][Ee]=([^;%s]+)")
    end
    if name then
      local cur = args[name]
      if cur == nil then
        args[name] = value
      elseif type(cur) == "table" then
        cur[#cur + 1] = value
      else
        args[name] = { cur, value }
      end
    end
    pos = next_delim + #delim
  end
  return args
end


-- Encodes args as a multipart/form-data body with `boundary`.
function _M.encode_multipart(args, boundary)
  local keys = {}
  for k in pairs(args) do
    keys[#keys + 1] = k
  end
  sort(keys)
  local out = {}
  local function part(k, v)
    out[#out + 1] = "--" .. boundary .. "\r\n"
    out[#out + 1] = "Content-Disposition: form-data; name=\"" .. k ..
                    "\"\r\n\r\n"
    out[#out + 1] = tostring(v) .. "\r\n"
  end
  for _, k in ipairs(keys) do
    local v = args[k]
    if type(v) == "table" then
      for _, vv in ipairs(v) do
        part(k, vv)
      end
    else
      part(k, v)
    end
  end
  out[#out + 1] = "--" .. boundary .. "--\r\n"
  return concat(out)
end


-- Kong's body for a parsed JSON value: tables only.
function _M.decode_json(body)
  local json = cjson.decode(body)
  if type(json) ~= "table" then
    return nil, "invalid json body"
  end
  return json
end


-- error pages (kong.response.error) ------------------------------------------

local MIME_TYPES = {
  ["text/html"] = "text/html; charset=utf-8",
  ["application/json"] = "application/json; charset=utf-8",
  ["text/plain"] = "text/plain; charset=utf-8",
  ["application/xml"] = "application/xml; charset=utf-8",
  ["application"] = "application/json; charset=utf-8",
  ["text"] = "text/plain; charset=utf-8",
  ["default"] = "application/json; charset=utf-8",
}
_M.MIME_TYPES = MIME_TYPES


-- The Content-Type for a media range ("text/*", "*/*", "text/html").
local function mime_type_for(media)
  media = lower(media)
  local a, b = match(media, "^([^/]+)/(.+)$")
  if not a then
    return nil
  end
  if b == "*" then
    if a == "*" then
      return MIME_TYPES.default
    end
    return MIME_TYPES[a]
  end
  return MIME_TYPES[media]
end
_M.mime_type_for = mime_type_for


-- Kong's content negotiation: the Content-Type of the error page for an
-- Accept header value (string or array of strings): the supported type
-- with the highest q (first wins on ties); JSON by default.
local MEDIA_RANGE = "^%s*([%w%-!#%$&%^_%+%.%*]+/[%w%-!#%$&%^_%+%.%*]+)" ..
                    "%s*(.*)$"

function _M.response_type(accept)
  local ctype = MIME_TYPES.default
  if type(accept) == "table" then
    accept = concat(accept, ",")
  end
  if type(accept) ~= "string" then
    return ctype
  end
  local max_q = 0
  for item in string.gmatch(accept, "[^,]+") do
    local media, params = match(item, MEDIA_RANGE)
    if media then
      local q = 1
      local qs = match(params, ";%s*[qQ]%s*=%s*([%d%.]+)")
      if qs then
        q = tonumber(qs) or 0
      end
      if q > max_q then
        max_q = q
        ctype = mime_type_for(media) or ctype
      end
    end
  end
  return ctype
end


local HTML_TEMPLATE = [[
<!doctype html>
<html>
  <head>
    <meta charset="utf-8">
    <title>Error</title>
  </head>
  <body>
    <h1>Error</h1>
    <p>%s.</p>
    <p>request_id: %s</p>
  </body>
</html>
]]

local JSON_TEMPLATE = [[
{
  "message":"%s",
  "request_id":"%s"
}]]

local XML_TEMPLATE = [[
<?xml version="1.0" encoding="UTF-8"?>
<error>
  <message>%s</message>
  <requestid>%s</requestid>
</error>
]]

local PLAIN_TEMPLATE = "%s\nrequest_id: %s\n"


local function json_escape(s)
  local enc = cjson.encode(s)
  return sub(enc, 2, -2)
end


-- The error page for a Content-Type (Kong's ERROR_TEMPLATES), message and
-- request id. An unknown type gets the JSON page.
function _M.error_body(content_type, message, request_id)
  local mime = _M.mime_of(content_type) or "application/json"
  if mime == "text/html" then
    return fmt(HTML_TEMPLATE, message, request_id)
  elseif mime == "application/xml" then
    return fmt(XML_TEMPLATE, message, request_id)
  elseif mime == "text/plain" then
    return fmt(PLAIN_TEMPLATE, message, request_id)
  end
  return fmt(JSON_TEMPLATE, json_escape(message), json_escape(request_id))
end


local HTTP_ERROR_MESSAGES = {
  [400] = "Bad request",
  [401] = "Unauthorized",
  [402] = "Payment required",
  [403] = "Forbidden",
  [404] = "Not found",
  [405] = "Method not allowed",
  [406] = "Not acceptable",
  [407] = "Proxy authentication required",
  [408] = "Request timeout",
  [409] = "Conflict",
  [410] = "Gone",
  [411] = "Length required",
  [412] = "Precondition failed",
  [413] = "Payload too large",
  [414] = "URI too long",
  [415] = "Unsupported media type",
  [416] = "Range not satisfiable",
  [417] = "Expectation failed",
  [418] = "I'm a teapot",
  [421] = "Misdirected request",
  [422] = "Unprocessable entity",
  [423] = "Locked",
  [424] = "Failed dependency",
  [425] = "Too early",
  [426] = "Upgrade required",
  [428] = "Precondition required",
  [429] = "Too many requests",
  [431] = "Request header fields too large",
  [451] = "Unavailable for legal reasons",
  [494] = "Request header or cookie too large",
  [500] = "An unexpected error occurred",
  [501] = "Not implemented",
  [502] = "An invalid response was received from the upstream server",
  [503] = "The upstream server is currently unavailable",
  [504] = "The upstream server is timing out",
  [505] = "HTTP version not supported",
  [506] = "Variant also negotiates",
  [507] = "Insufficient storage",
  [508] = "Loop detected",
  [510] = "Not extended",
  [511] = "Network authentication required",
}


-- kong.response.error's default message for a status.
function _M.error_message(status)
  return HTTP_ERROR_MESSAGES[status] or
         fmt("The upstream server responded with %d", status)
end


-- misc --------------------------------------------------------------------

-- A read-only view of t (writes raise).
function _M.read_only(t)
  return setmetatable({}, {
    __index = t,
    __newindex = function()
      error("attempt to modify a read-only table", 2)
    end,
    __pairs = function()
      return next, t, nil
    end,
    __len = function()
      return #t
    end,
  })
end


-- Copies a plain table one level deep, leaving out keys in `skip`.
function _M.shallow_copy(t, skip)
  if type(t) ~= "table" then
    return t
  end
  local c = {}
  for k, v in pairs(t) do
    if not (skip and skip[k]) then
      c[k] = v
    end
  end
  return c
end


return _M
