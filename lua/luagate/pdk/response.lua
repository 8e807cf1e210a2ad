-- kong.response: the response the client gets. Phases and errors follow
-- Kong's kong/pdk/response.lua documentation.
--
-- exit() and error() register the response through gw_ffi_resp_exit and
-- then end the calling handler (request.stop: a yield the runtime does not
-- resume); the runloop skips the rest of the phase and the runtime sends
-- the response. Headers
-- set with set_header() before exit() stay in the response (as in Kong,
-- where ngx.header survives ngx.exit); the ones given to exit() override
-- them.

local ffi = require "ffi"
local cjson = require "cjson.safe"
local buffer = require "string.buffer"
local gw = require "luagate.ffi"
local request = require "luagate.request"
local private = require "luagate.pdk.private"

local type = type
local tostring = tostring
local error = error
local pairs = pairs
local ipairs = ipairs
local fmt = string.format
local lower = string.lower
local gsub = string.gsub
local byte = string.byte
local find = string.find
local char = string.char
local concat = table.concat
local ffi_string = ffi.string

local C = gw.C
local str_p, len_p = gw.str_p, gw.len_p
local err_p, int_p = gw.err_p, gw.int_p
local OK, ERROR = gw.OK, gw.ERROR
local HDR_SET, HDR_ADD, HDR_CLEAR = gw.HDR_SET, gw.HDR_ADD, gw.HDR_CLEAR
local HDR_SLOT = gw.HDR_SLOT

local check = private.check
local PHASES = private.PHASES
local normalize_header_name = private.normalize_header_name
local normalize_value = private.normalize_value
local validate_header = private.validate_header
local header_types = private.header_types
local name_flag = private.name_flag
local name_accepted = private.name_accepted
local validate_headers = private.validate_headers
local header_value = private.header_value
local build_headers = private.build_headers
local errmsg = private.errmsg
local register_exit = private.register_exit

local ACCESS = PHASES.access
local HEADER_BODY_LOG = PHASES.header_body_log
local REWRITE_ACCESS_HEADER = PHASES.rewrite_access_header
local BODY_FILTER = PHASES.body_filter

local MIN_STATUS_CODE, MAX_STATUS_CODE = 100, 599
local MIN_ERR_STATUS_CODE = 400
local MIN_HEADERS, MAX_HEADERS = 1, 1000
local DEFAULT_MAX_HEADERS = 100
local CONTENT_TYPE_JSON = "application/json; charset=utf-8"
local CONTENT_TYPE_GRPC = "application/grpc"

local stop = request.stop


local _M = {}

-- set by luagate.pdk (kong.log), for the Transfer-Encoding warning
_M.log = nil


local function warn(msg)
  local log = _M.log
  if log then
    log.warn(msg)
  end
end


local function is_transfer_encoding(name)
  if #name ~= 17 then -- both spellings: no lower() for every other name
    return false
  end
  local l = lower(name)
  return l == "transfer-encoding" or l == "transfer_encoding"
end


-- Sets (op HDR_SET) or adds one header value or an array of values.
-- Raises at level on a runtime refusal.
local function put_header(r, op, name, value, level)
  if type(value) == "table" then
    local first = true
    for _, v in ipairs(value) do
      v = normalize_value(v)
      err_p[0] = nil
      if C.gw_ffi_resp_set_header(r.ptr, first and op or HDR_ADD, name,
                                  #name, v, #v, err_p) ~= OK then
        error(errmsg("could not set header"), level + 1)
      end
      first = false
    end
    if first then -- empty array: clears
      C.gw_ffi_resp_set_header(r.ptr, HDR_CLEAR, name, #name, nil, 0, err_p)
    end
    return
  end
  err_p[0] = nil
  local flag = name_flag(name)
  if type(value) == "number" and value % 1 == 0 and
     ((value >= 1 and value < 1e14) or (value <= -1 and value > -1e14)) then
    -- an integer whose tostring() is its decimal digits: the runtime
    -- writes them (no string made and collected per request)
    if C.gw_ffi_resp_set_header_int(r.ptr, op + flag, name, #name, value,
                                    err_p) ~= OK then
      error(errmsg("could not set header"), level + 1)
    end
    if flag == 0 then
      name_accepted(name)
    end
    return
  end
  value = normalize_value(value)
  if C.gw_ffi_resp_set_header(r.ptr, op + flag, name, #name, value, #value,
                              err_p) ~= OK then
    -- refused by the runtime: Kong's message when it is CR or LF
    validate_header(name, value, level + 1)
    error(errmsg("could not set header"), level + 1)
  end
  if flag == 0 then
    name_accepted(name)
  end
end
_M._put_header = put_header


local function check_status(status, min)
  if type(status) ~= "number" then
    error("code must be a number", 3)
  elseif status < min or status > MAX_STATUS_CODE then
    error(fmt("code must be a number between %u and %u", min,
              MAX_STATUS_CODE), 3)
  end
end


function _M.get_status()
  local r = check(HEADER_BODY_LOG)
  return C.gw_ffi_resp_status(r.ptr)
end


function _M.get_header(name)
  local r = check(HEADER_BODY_LOG)
  if type(name) ~= "string" then
    error("header name must be a string", 2)
  end
  return header_value(r.ptr, C.gw_ffi_resp_header,
                      normalize_header_name(name))
end


function _M.get_headers(max_headers)
  local r = check(HEADER_BODY_LOG)
  if max_headers == nil then
    max_headers = DEFAULT_MAX_HEADERS
  elseif type(max_headers) ~= "number" then
    error("max_headers must be a number", 2)
  elseif max_headers < MIN_HEADERS then
    error("max_headers must be >= " .. MIN_HEADERS, 2)
  elseif max_headers > MAX_HEADERS then
    error("max_headers must be <= " .. MAX_HEADERS, 2)
  end
  return build_headers(r.ptr, C.gw_ffi_resp_header_count,
                       C.gw_ffi_resp_header_at, max_headers)
end


function _M.get_source()
  local r = check(HEADER_BODY_LOG)
  local s = C.gw_ffi_resp_source(r.ptr)
  if s == nil then
    return "error"
  end
  return ffi_string(s)
end


function _M.set_status(status)
  local r = check(REWRITE_ACCESS_HEADER)
  check_status(status, MIN_STATUS_CODE)
  err_p[0] = nil
  if C.gw_ffi_resp_set_status(r.ptr, status, err_p) ~= OK then
    error(errmsg("could not set status"), 2)
  end
end


function _M.set_header(name, value)
  local r = check(REWRITE_ACCESS_HEADER)
  -- CR and LF: the runtime refuses them (put_header raises Kong's message)
  header_types(name, value)
  if is_transfer_encoding(name) then
    validate_header(name, value)
    warn("manually setting Transfer-Encoding. Ignored.")
    return
  end
  put_header(r, HDR_SET, name, value, 2)
end


function _M.add_header(name, value)
  local r = check(REWRITE_ACCESS_HEADER)
  header_types(name, value)
  put_header(r, HDR_ADD, name, value, 2)
end


function _M.clear_header(name)
  local r = check(REWRITE_ACCESS_HEADER)
  if type(name) ~= "string" then
    error("header name must be a string", 2)
  end
  C.gw_ffi_resp_set_header(r.ptr, HDR_CLEAR, name, #name, nil, 0, err_p)
end


local function set_headers(r, headers, level)
  for name, value in pairs(headers) do
    if is_transfer_encoding(name) then
      warn("manually setting Transfer-Encoding. Ignored.")
    else
      put_header(r, HDR_SET, name, value, level + 1)
    end
  end
end


function _M.set_headers(headers)
  local r = check(REWRITE_ACCESS_HEADER)
  validate_headers(headers)
  set_headers(r, headers, 2)
end


function _M.get_raw_body()
  local r = check(BODY_FILTER)
  C.gw_ffi_resp_chunk(r.ptr, str_p, len_p, int_p)
  local chunk = ffi_string(str_p[0], len_p[0])
  local eof = int_p[0] ~= 0
  local buf = r.resp_body_buffer
  if eof and not buf then
    return chunk
  end
  if chunk ~= "" then
    if not buf then
      buf = buffer.new()
      r.resp_body_buffer = buf
    end
    buf:put(chunk)
  end
  if eof then
    local body = buf and buf:get() or ""
    r.resp_body_buffer = nil
    C.gw_ffi_resp_set_chunk(r.ptr, body, #body, 1, err_p)
    return body
  end
  -- hold the chunk back until the last one
  C.gw_ffi_resp_set_chunk(r.ptr, "", 0, 0, err_p)
  return nil
end


function _M.set_raw_body(body)
  local r = check(BODY_FILTER)
  if type(body) ~= "string" then
    error("body must be a string", 2)
  end
  err_p[0] = nil
  if C.gw_ffi_resp_set_chunk(r.ptr, body, #body, 1, err_p) ~= OK then
    error(errmsg("could not set the body"), 2)
  end
  r.resp_body_buffer = nil
end


local function set_one(r, name, value)
  C.gw_ffi_resp_set_header(r.ptr, HDR_SET, name, #name, value, #value, err_p)
end


-- grpc-message's percent-encoding of one byte (a module-level function: a
-- closure made in grpc_body would keep every exit out of LuaJIT's traces,
-- which cannot close upvalues there)
local function percent_byte(ch)
  return fmt("%%%02X", byte(ch))
end


-- Kong's gRPC rules for exit() and error(): when the response is gRPC
-- (its Content-Type, or none and the request is gRPC over HTTP/2), the
-- HTTP status stays, grpc-status is set from it unless a plugin set one,
-- and a message goes in grpc-message (percent-encoded) instead of a body,
-- unless the plugin gave a gRPC body of its own. Returns the body to send.
local function grpc_body(r, status, body, level)
  local kind = C.gw_ffi_resp_grpc(r.ptr) -- one call: no string per exit
  if kind == 0 then
    return body
  end
  local grpc_output = kind == 2
  local code
  if header_value(r.ptr, C.gw_ffi_resp_header, "grpc-status") == nil then
    code = C.gw_ffi_grpc_status_of(status)
    set_one(r, "grpc-status", tostring(code))
  end
  if type(body) == "table" then
    if grpc_output then
      error("table body encoding with gRPC is not supported", level + 1)
    end
    if type(body.message) == "string" then
      body = body.message
    else
      warn("body was removed because table body encoding with gRPC is " ..
           "not supported")
      body = nil
    end
  end
  if body ~= nil and not grpc_output then
    set_one(r, "grpc-message", (gsub(body, "[%%%c\128-\255]", percent_byte)))
    return nil
  end
  if code and
     header_value(r.ptr, C.gw_ffi_resp_header, "grpc-message") == nil then
    set_one(r, "grpc-message", ffi_string(C.gw_ffi_grpc_status_name(code)))
  end
  return body
end


-- Registers the response and stops the handler.
local function send(r, status, body, headers, level)
  local has_content_type
  if headers ~= nil then
    for name in pairs(headers) do
      local l = lower(name)
      if l == "content-type" or l == "content_type" then
        has_content_type = true
      end
    end
    set_headers(r, headers, level + 1)
  end
  body = grpc_body(r, status, body, level + 1)

  if type(body) == "table" then
    local json, err = cjson.encode(body)
    if not json then
      error("body encoding failed while flushing response: " .. err,
            level + 1)
    end
    body = json
    if not has_content_type then
      C.gw_ffi_resp_set_header(r.ptr, HDR_SET, "Content-Type", 12,
                               CONTENT_TYPE_JSON, #CONTENT_TYPE_JSON, err_p)
    end
  end

  register_exit(r, status, body, level + 1)
  stop(r)
end


function _M.exit(status, body, headers)
  local r = check(REWRITE_ACCESS_HEADER)
  check_status(status, MIN_STATUS_CODE)
  if body ~= nil and type(body) ~= "string" and type(body) ~= "table" then
    error("body must be a nil, string or table", 2)
  end
  if headers ~= nil then
    if type(headers) ~= "table" then
      error("headers must be a nil or table", 2)
    end
    validate_headers(headers)
  end
  send(r, status, body, headers, 2)
end


-- luagate's own, for bundled plugins' hot paths (proxy-cache hits) ------

-- The headers table of an exit() in the runtime's packed form
-- (gw_ffi_resp_set_packed), built once for many responses; nil when a
-- header is not one exit() would take as it is (not a string name, a
-- value that is not a string, number, boolean or array of strings, CR or
-- LF, Transfer-Encoding): exit() is then the way, with its errors.
function _M.pack_headers(headers)
  local buf = buffer.new()
  for name, value in pairs(headers) do
    if type(name) ~= "string" or is_transfer_encoding(name) then
      return nil
    end
    if type(value) == "table" then
      local op = "0"
      for _, v in ipairs(value) do
        if type(v) ~= "string" then
          return nil
        end
        v = normalize_value(v)
        if private.has_cr_lf(v) then
          return nil
        end
        buf:put(op, name, "\0", v, "\0")
        op = "1"
      end
      if op == "0" then -- an empty array clears: not packed
        return nil
      end
    else
      local tv = type(value)
      if tv ~= "string" and tv ~= "number" and tv ~= "boolean" then
        return nil
      end
      value = normalize_value(value)
      if private.has_cr_lf(value) then
        return nil
      end
      buf:put("0", name, "\0", value, "\0")
    end
  end
  return buf:tostring()
end


-- Response headers set together on many requests (rate-limiting's), with
-- their names and fixed values checked once: list is an array of
-- { name, value }, value a string, number or boolean (as set_header takes
-- it), or { slot = i } (1 to MAX_SLOTS): a value given to each
-- set_prepared_headers call. nil when an entry is not one set_header would
-- take as it is (a name that is not a token, Transfer-Encoding, CR or LF,
-- a value of another type): set_header is then the way, with its errors.
local MAX_SLOTS = 4

function _M.prepare_headers(list)
  if type(list) ~= "table" then
    return nil
  end
  local buf = buffer.new()
  local slots, entries = 0, {}
  for i = 1, #list do
    local e = list[i]
    local name, value = type(e) == "table" and e[1], type(e) == "table" and e[2]
    if type(name) ~= "string" or is_transfer_encoding(name) then
      return nil
    end
    local tv = type(value)
    if tv == "table" then
      local k = value.slot
      if type(k) ~= "number" or k % 1 ~= 0 or k < 1 or k > MAX_SLOTS then
        return nil
      end
      if k > slots then
        slots = k
      end
      buf:put(char(48 + HDR_SET + HDR_SLOT), name, "\0", k - 1, "\0")
      entries[i] = { name, slot = k }
    elseif tv == "string" or tv == "number" or tv == "boolean" then
      value = normalize_value(value)
      buf:put(char(48 + HDR_SET), name, "\0", value, "\0")
      entries[i] = { name, value }
    else
      return nil
    end
  end
  local hops = private.hops(buf:tostring())
  if not hops then
    return nil
  end
  return {
    hops = hops,
    slots = slots,
    ints = ffi.new("int64_t[?]", MAX_SLOTS),
    entries = entries,
  }
end


-- A value the runtime writes as set_header writes it: an integer whose
-- tostring() is its decimal digits (not -0).
local function slot_value(v)
  return type(v) == "number" and v % 1 == 0 and v > -1e14 and v < 1e14 and
         (v ~= 0 or 1 / v > 0)
end


-- set_header(name, value) for each entry of prepared (prepare_headers), in
-- order, in one runtime call; a, b, c, d: the values of slots 1 to 4.
-- Phases and errors as set_header's.
function _M.set_prepared_headers(prepared, a, b, c, d)
  local r = check(REWRITE_ACCESS_HEADER)
  if type(prepared) ~= "table" or prepared.hops == nil then
    error("prepared headers expected (kong.response.prepare_headers)", 2)
  end
  local n = prepared.slots
  if n == 0 or (slot_value(a) and (n < 2 or (slot_value(b) and
     (n < 3 or (slot_value(c) and (n < 4 or slot_value(d)))))))
  then
    local ints = prepared.ints
    if n > 0 then
      ints[0] = a
    end
    if n > 1 then
      ints[1] = b
    end
    if n > 2 then
      ints[2] = c
    end
    if n > 3 then
      ints[3] = d
    end
    err_p[0] = nil
    if C.gw_ffi_resp_set_hops(r.ptr, prepared.hops, ints, err_p) ~= OK then
      error(errmsg("could not set header"), 2)
    end
    return
  end
  -- a slot's value the runtime does not write: header by header, as
  -- set_header does (a table only on this path)
  local args = { a, b, c, d }
  local entries = prepared.entries
  for i = 1, #entries do
    local e = entries[i]
    local name, value = e[1], e[2]
    if e.slot then
      value = args[e.slot]
    end
    header_types(name, value, 2)
    put_header(r, HDR_SET, name, value, 2)
  end
end


-- exit(status, body, headers) for an access handler that answers from its
-- own data and returns right after this call, the headers packed by
-- pack_headers: the response is registered as exit() registers it, the
-- runloop runs no later access handler, and the calling plugin is done
-- with the request (runloop.plugin_done: its header_filter, body_filter
-- and log handlers do not run). The caller is not stopped, which spares
-- exit()'s new coroutine (request.stop). body: a string or nil. Raises as
-- exit() does.
--
-- memo (optional): lets the runtime repeat this answer itself, without
-- running Lua, to the next requests of the route with the same method,
-- request target and values of memo.headers (gw/memo.h; docs/pdk.md):
--   deadline    gw time (ngx.now()) from which the answer is not repeated
--   deps        1 to 4 { dict = ngx.shared.x, key = k, version = v,
--               expires = e }: the dictionary values the answer was made
--               from, with their stamps (dict:get_stamp); any change of
--               one ends the memo
--   headers     lowercase names of the request headers the answer depends
--               on (nil: none)
--   age_origin  when set, the answer's Age header becomes
--               floor(now - age_origin) at each use
-- Kept only when the plugin is the only one on the route and the request
-- can be answered that way (no body, HTTP/1.x); otherwise ignored (and,
-- on a route with other plugins, not even checked).
local runloop -- required on first use (it requires the PDK's users)

local memo_args = ffi.new("struct gw_memo_args")
local memo_deps = ffi.new("struct gw_memo_dep[4]")
local MAX_MEMO_DEPS = 4

local function check_memo(memo)
  if type(memo) ~= "table" then
    error("memo must be a table", 3)
  end
  if type(memo.deadline) ~= "number" then
    error("memo.deadline must be a number", 3)
  end
  if memo.age_origin ~= nil and type(memo.age_origin) ~= "number" then
    error("memo.age_origin must be a number", 3)
  end
  local deps = memo.deps
  if type(deps) ~= "table" or #deps < 1 or #deps > MAX_MEMO_DEPS then
    error("memo.deps must hold 1 to " .. MAX_MEMO_DEPS .. " values", 3)
  end
  for i = 1, #deps do
    local d = deps[i]
    if type(d) ~= "table" or type(d.dict) ~= "table" or
       type(d.dict[1]) ~= "cdata" or type(d.key) ~= "string" or d.key == "" or
       type(d.version) ~= "number" or type(d.expires) ~= "number" then
      error("memo.deps[" .. i .. "] must be { dict = a shared dictionary, " ..
            "key = a string, version = a number, expires = a number }", 3)
    end
  end
  local headers = memo.headers
  if headers ~= nil then
    if type(headers) ~= "table" then
      error("memo.headers must be a nil or table", 3)
    end
    for i = 1, #headers do
      if type(headers[i]) ~= "string" or headers[i] == "" or
         find(headers[i], "\0", 1, true) then
        error("memo.headers[" .. i .. "] must be a header name", 3)
      end
    end
  end
end

local function store_memo(r, memo)
  local deps = memo.deps
  for i = 1, #deps do
    local d, dep = deps[i], memo_deps[i - 1]
    dep.dict = d.dict[1]
    dep.key = d.key
    dep.klen = #d.key
    dep.ver = d.version
    dep.expires = d.expires
  end
  local hnames = ""
  local headers = memo.headers
  if headers and headers[1] then
    local names = {}
    for i = 1, #headers do
      names[i] = lower(headers[i])
    end
    hnames = concat(names, "\0") .. "\0"
  end
  memo_args.deadline = memo.deadline
  memo_args.age_origin = memo.age_origin or 0
  memo_args.has_age = memo.age_origin and 1 or 0
  memo_args.hnames = hnames
  memo_args.hnames_len = #hnames
  memo_args.deps = memo_deps
  memo_args.ndeps = #deps
  err_p[0] = nil
  local rc = C.gw_ffi_memo_store(r.ptr, memo_args, err_p)
  memo_args.hnames = nil
  for i = 0, #deps - 1 do
    memo_deps[i].key = nil
  end
  if rc == ERROR then
    error(errmsg("could not keep the memo"), 3)
  end
end

function _M.exit_packed(status, body, packed, memo)
  local r = check(ACCESS)
  check_status(status, MIN_STATUS_CODE)
  if body ~= nil and type(body) ~= "string" then
    error("body must be a nil or string", 2)
  end
  if type(packed) ~= "string" then
    error("packed headers must be a string (kong.response.pack_headers)", 2)
  end
  runloop = runloop or require("luagate.runloop")
  -- a memo the runtime would not keep is not read (on a route with other
  -- plugins, every hit would check it for nothing)
  local keep = memo ~= nil and runloop.alone(r)
  if keep then
    check_memo(memo)
  end
  err_p[0] = nil
  if C.gw_ffi_resp_set_packed(r.ptr, packed, #packed, err_p) ~= OK then
    error(errmsg("could not set header"), 2)
  end
  if C.gw_ffi_resp_grpc(r.ptr) ~= 0 then
    body = grpc_body(r, status, body, 2)
  end
  register_exit(r, status, body, 2)
  if keep then
    store_memo(r, memo)
  end
  runloop.plugin_done(r)
end


function _M.error(status, message, headers)
  local r = check(REWRITE_ACCESS_HEADER)
  check_status(status, MIN_ERR_STATUS_CODE)
  if message ~= nil then
    if type(message) == "table" then
      local err
      message, err = cjson.encode(message)
      if not message then
        error("could not JSON encode the error message: " .. err, 2)
      end
    end
    if type(message) ~= "string" then
      error("message must be a nil, a string or a table", 2)
    end
  end
  if headers ~= nil then
    if type(headers) ~= "table" then
      error("headers must be a nil or table", 2)
    end
    validate_headers(headers)
    -- the caller's table stays as it was (plugins reuse theirs)
    local copy = {}
    for k, v in pairs(headers) do
      copy[k] = v
    end
    headers = copy
  else
    headers = {}
  end

  local ct = headers["Content-Type"]
  local content_type = type(ct) == "table" and ct[1] or ct
  if ct == nil then
    if C.gw_ffi_req_grpc(r.ptr) ~= 0 then
      content_type = CONTENT_TYPE_GRPC
    else
      local accept = header_value(r.ptr, C.gw_ffi_req_header, "accept", true)
      content_type = private.response_type(accept)
    end
  end
  headers["Content-Type"] = content_type

  local body
  if content_type ~= CONTENT_TYPE_GRPC then
    local rid = private.ffi_str(C.gw_ffi_req_id, r.ptr) or ""
    body = private.error_body(content_type,
                              message or private.error_message(status), rid)
  end
  send(r, status, body, headers, 2)
end


return _M
