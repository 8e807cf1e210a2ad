-- kong.log: leveled logging into the error log through gw_ffi_log, with
-- Kong's line format `[kong] file.lua:N [plugin] message`, plus inspect,
-- deprecation, set_serialize_value and serialize (Kong's log object, the
-- one the log plugins send).
--
--   local log = require("luagate.pdk.log").new()
--   log.err("could not do x: ", err)      -- kong.log.err
--   log("hello")                           -- notice

local gw = require "luagate.ffi"
local request = require "luagate.request"
local private = require "luagate.pdk.private"

local type = type
local error = error
local pairs = pairs
local ipairs = ipairs
local select = select
local tostring = tostring
local tonumber = tonumber
local setmetatable = setmetatable
local getinfo = debug.getinfo
local floor = math.floor
local fmt = string.format
local match = string.match
local find = string.find
local rep = string.rep
local concat = table.concat
local sort = table.sort

local C = gw.C
local available = gw.available

local LEVELS = {
  debug = gw.LOG_DEBUG,
  info = gw.LOG_INFO,
  notice = gw.LOG_NOTICE,
  warn = gw.LOG_WARN,
  err = gw.LOG_ERR,
  crit = gw.LOG_CRIT,
  alert = gw.LOG_ALERT,
  emerg = gw.LOG_EMERG,
}


local _M = {}

_M.LEVELS = LEVELS

-- where lines go when the gw_ffi symbols are absent (unit specs): a
-- function(level, line) or nil to drop them
_M.sink = nil


local function write(level, line)
  if available then
    C.gw_ffi_log(level, line, #line)
  elseif _M.sink then
    _M.sink(level, line)
  end
end
_M.write = write


local function enabled(level)
  if available then
    return level <= C.gw_ffi_log_level()
  end
  return _M.sink ~= nil
end
_M.enabled = enabled


-- "file.lua:N" of the function `stack_level` frames up from the caller.
local function location(stack_level)
  local info = getinfo(stack_level + 1, "Sl")
  if not info then
    return "?:0"
  end
  local src = info.short_src or "?"
  return (match(src, "[^/]+$") or src) .. ":" .. (info.currentline or 0)
end
_M.location = location


local function concat_args(...)
  local n = select("#", ...)
  if n == 1 then
    return tostring((...))
  end
  local buf = {}
  for i = 1, n do
    buf[i] = tostring((select(i, ...)))
  end
  return concat(buf)
end
_M.concat_args = concat_args


-- the prefix of the line: "[kong] file.lua:N [plugin] "
local function prefix(stack_level)
  local r = request.cur
  local plugin = r and r.plugin
  if plugin then
    return "[kong] " .. location(stack_level + 1) .. " [" .. plugin .. "] "
  end
  return "[kong] " .. location(stack_level + 1) .. " "
end
_M.prefix = prefix


-- Logs at level; stack_level = frames between emit's caller and the code
-- to name (1: emit's caller).
local function emit(level, stack_level, ...)
  if not enabled(level) then
    return
  end
  local line = prefix(stack_level + 1) .. concat_args(...)
  write(level, line)
end


-- inspect ---------------------------------------------------------------------

local function is_ident(k)
  return type(k) == "string" and find(k, "^[%a_][%w_]*$") ~= nil
end


local function pretty(v, indent, seen, out)
  local tv = type(v)
  if tv == "string" then
    out[#out + 1] = fmt("%q", v)
    return
  end
  if tv ~= "table" then
    out[#out + 1] = tostring(v)
    return
  end
  if seen[v] then
    out[#out + 1] = "<cycle>"
    return
  end
  seen[v] = true
  local keys = {}
  for k in pairs(v) do
    keys[#keys + 1] = k
  end
  sort(keys, function(a, b)
    local ta, tb = type(a), type(b)
    if ta ~= tb then
      return ta < tb
    end
    if ta == "number" or ta == "string" then
      return a < b
    end
    return tostring(a) < tostring(b)
  end)
  if #keys == 0 then
    out[#out + 1] = "{}"
    seen[v] = nil
    return
  end
  local pad = rep("  ", indent + 1)
  local n = #v
  out[#out + 1] = "{\n"
  for i, k in ipairs(keys) do
    out[#out + 1] = pad
    local in_array = type(k) == "number" and k >= 1 and k <= n and
                     k == floor(k)
    if in_array then
      out[#out + 1] = ""
    elseif is_ident(k) then
      out[#out + 1] = k .. " = "
    else
      out[#out + 1] = "["
      pretty(k, indent + 1, seen, out)
      out[#out + 1] = "] = "
    end
    pretty(v[k], indent + 1, seen, out)
    out[#out + 1] = i < #keys and ",\n" or "\n"
  end
  out[#out + 1] = rep("  ", indent) .. "}"
  seen[v] = nil
end


-- A readable representation of v (tables over several lines).
function _M.inspect_value(v)
  local out = {}
  pretty(v, 0, {}, out)
  return concat(out)
end


-- serialize ---------------------------------------------------------------

local CREDENTIAL_KEYS = {
  keyauth_credentials = true, basicauth_credentials = true,
  jwt_secrets = true, acls = true, hmacauth_credentials = true,
  oauth2_credentials = true, credentials = true,
}

local REDACTED_HEADERS = {
  authorization = true, ["proxy-authorization"] = true, cookie = true,
}


-- The consumer as a log object shows it: without its credentials.
local function consumer_view(c)
  if type(c) ~= "table" then
    return nil
  end
  local v = {}
  for k, val in pairs(c) do
    if not (CREDENTIAL_KEYS[k] or (type(k) == "string" and type(val) ==
            "table" and (find(k, "_credentials$") or
                         find(k, "_secrets$")))) then
      v[k] = val
    end
  end
  return v
end
_M.consumer_view = consumer_view


local function redact(headers)
  for name in pairs(REDACTED_HEADERS) do
    if headers[name] ~= nil then
      headers[name] = "REDACTED"
    end
  end
  return headers
end
_M.redact = redact


-- Applies the set_serialize_value entries to the log object.
local function apply_values(obj, entries)
  for _, e in ipairs(entries) do
    local t = obj
    local key = e.key
    local parts = {}
    for part in key:gmatch("[^%.]+") do
      parts[#parts + 1] = part
    end
    for i = 1, #parts - 1 do
      local nxt = t[parts[i]]
      if type(nxt) ~= "table" then
        if e.mode == "replace" then
          t = nil
          break
        end
        nxt = {}
        t[parts[i]] = nxt
      end
      t = nxt
    end
    if t then
      local last = parts[#parts]
      if e.mode == "set" or
         (e.mode == "add" and t[last] == nil) or
         (e.mode == "replace" and t[last] ~= nil) then
        t[last] = e.value
      end
    end
  end
  return obj
end
_M.apply_values = apply_values


function _M.new()
  local log = {}
  local inspect_enabled = true

  for name, level in pairs(LEVELS) do
    log[name] = function(...)
      emit(level, 2, ...)
    end
  end

  setmetatable(log, {
    __call = function(_, ...)
      emit(gw.LOG_NOTICE, 2, ...)
    end,
  })

  local inspect = setmetatable({}, {
    __call = function(_, ...)
      if not inspect_enabled or not enabled(gw.LOG_NOTICE) then
        return
      end
      local n = select("#", ...)
      local parts = {}
      for i = 1, n do
        parts[i] = _M.inspect_value((select(i, ...)))
      end
      write(gw.LOG_NOTICE, prefix(2) .. concat(parts, " "))
    end,
  })
  function inspect.on()
    inspect_enabled = true
  end
  function inspect.off()
    inspect_enabled = false
  end
  log.inspect = inspect

  function log.deprecation(...)
    local n = select("#", ...)
    local opts = n > 1 and select(n, ...) or nil
    local msg
    if type(opts) == "table" then
      -- drop the options from the message
      local parts = {}
      for i = 1, n - 1 do
        parts[i] = tostring((select(i, ...)))
      end
      msg = concat(parts)
      local extra = {}
      if opts.after then
        extra[#extra + 1] = "deprecated after " .. opts.after
      end
      if opts.removal then
        extra[#extra + 1] = "scheduled for removal in " .. opts.removal
      end
      if #extra > 0 then
        msg = msg .. " (" .. concat(extra, ", ") .. ")"
      end
    else
      msg = concat_args(...)
    end
    emit(gw.LOG_WARN, 2, msg)
  end

  function log.set_serialize_value(key, value, options)
    local r = private.check(private.PHASES.request)
    if type(key) ~= "string" then
      error("key must be a string", 2)
    end
    local tv = type(value)
    if not (tv == "number" or tv == "string" or tv == "boolean" or
            tv == "table" or tv == "nil") then
      error("value must be a number, string, boolean, table or nil", 2)
    end
    local mode = options and options.mode or "set"
    if mode ~= "set" and mode ~= "add" and mode ~= "replace" then
      error("mode must be 'set', 'add' or 'replace'", 2)
    end
    local list = r.serialize_values
    if not list then
      list = {}
      r.serialize_values = list
    end
    list[#list + 1] = { key = key, value = value, mode = mode }
  end

  -- set by luagate.pdk.new (needs kong.request / kong.response)
  log.serialize = nil

  return log
end


-- Builds kong.log.serialize from the kong table's modules.
function _M.make_serialize(kong)
  local kreq, kresp = kong.request, kong.response
  local dbl3 = gw.dbl3
  local u64 = gw.u64_2
  local int_p = gw.int_p

  return function(options)
    local r = private.check(private.PHASES.log)
    local ptr = r.ptr
    local ctx = r.ctx or {}

    local total, upstream, gateway = 0, 0, 0
    local bytes_in, bytes_out, tries = 0, 0, 0
    if C.gw_ffi_log_info(ptr, dbl3, dbl3 + 1, dbl3 + 2, u64, u64 + 1,
                         int_p) == gw.OK then
      total, upstream, gateway = dbl3[0], dbl3[1], dbl3[2]
      bytes_in, bytes_out = tonumber(u64[0]), tonumber(u64[1])
      tries = int_p[0]
    end

    local path = kreq.get_path()
    local raw_path = kreq.get_raw_path()
    local query = kreq.get_raw_query()
    -- the target as the client sent it (Kong: ngx.var.request_uri)
    local request_uri = require("luagate.pdk.private").ffi_str(C.gw_ffi_req_target, ptr)
                        or (query ~= "" and (raw_path .. "?" .. query) or raw_path)
    local host = kreq.get_host()
    local port = kreq.get_port()

    local upstream_uri = r.upstream_uri
    if not upstream_uri then
      upstream_uri = require("luagate.pdk.private").ffi_str(C.gw_ffi_upstream_uri, ptr)
    end
    if not upstream_uri then
      local up_path = r.upstream_path or path
      local up_query = r.upstream_query or query
      upstream_uri = up_query ~= "" and (up_path .. "?" .. up_query) or
                     up_path
    end

    local req_headers = redact(kreq.get_headers())
    local resp_headers = kresp.get_headers()

    local status = C.gw_ffi_resp_status(ptr)
    local up_status = C.gw_ffi_upstream_status(ptr)
    local grpc_status = C.gw_ffi_resp_grpc_status(ptr)

    local tries_list = ctx.balancer_data and ctx.balancer_data.tries
    if type(tries_list) ~= "table" then
      tries_list = {}
      for i = 1, tries do
        tries_list[i] = {}
      end
    end

    local ip, cport = kong.client.get_ip(), kong.client.get_port()

    local cred = r.credential
    local authenticated_entity
    if type(cred) == "table" then
      authenticated_entity = {
        id = cred.id,
        consumer_id = type(cred.consumer) == "table" and cred.consumer.id
                      or cred.consumer_id,
      }
    end

    local obj = {
      request = {
        id = private.ffi_str(C.gw_ffi_req_id, ptr),
        uri = request_uri,
        url = "http://" .. host .. ":" .. port .. request_uri,
        querystring = kreq.get_query(),
        method = kreq.get_method(),
        headers = req_headers,
        size = bytes_in,
      },
      upstream_uri = upstream_uri,
      upstream_status = up_status > 0 and tostring(up_status) or nil,
      response = {
        status = status,
        headers = resp_headers,
        size = bytes_out,
        -- beyond Kong: a gRPC response's status (trailers or the gateway's)
        grpc_status = grpc_status >= 0 and grpc_status or nil,
      },
      tries = tries_list,
      latencies = {
        kong = floor(gateway + 0.5),
        proxy = up_status > 0 and floor(upstream + 0.5) or -1,
        request = floor(total + 0.5),
        receive = 0,
      },
      authenticated_entity = authenticated_entity,
      route = r.route,
      service = r.service,
      consumer = consumer_view(r.consumer),
      client_ip = ip,
      client_port = cport,
      started_at = floor(C.gw_ffi_req_start_time(ptr) * 1000),
      source = kresp.get_source(),
    }
    if r.serialize_values then
      apply_values(obj, r.serialize_values)
    end
    return obj
  end
end



return _M
