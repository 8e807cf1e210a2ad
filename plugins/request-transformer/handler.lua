-- request-transformer: changes the request before it is proxied, as
-- Kong's plugin does. Targets in this order: the URI (replace.uri), the
-- method (http_method), headers, the body (JSON, form-urlencoded,
-- multipart), the querystring; within each: remove, rename, replace (only
-- what is present), add (only what is absent), append (always, making the
-- parameter multi-valued).
--
-- Values are templates (template.lua), compiled once per config table
-- (in configure, or on first use) into a plan; a request only renders
-- them over a snapshot of its headers, query, URI captures, kong.ctx.shared
-- and request id taken before any change. A header value whose rendering
-- holds a control character (CR, LF...) is not set, and the refusal is
-- logged: a template cannot inject headers.

local kong = kong
local ngx = ngx
local template = require "kong.plugins.request-transformer.template"
local multipart = require "kong.plugins.request-transformer.multipart"
local json_object = require "kong.plugins.request-transformer.json_object"

local type = type
local pairs = pairs
local ipairs = ipairs
local next = next
local assert = assert
local setmetatable = setmetatable
local error = error
local find = string.find
local gsub = string.gsub
local match = string.match
local sub = string.sub
local lower = string.lower
local byte = string.byte
local fmt = string.format
local render = template.render

local JSON, FORM, MULTI = 1, 2, 3

-- bytes a header value may not hold (HTAB is allowed)
local BAD_HEADER_VALUE = "[%z\1-\8\10-\31\127]"

-- bytes kept as they are in a path: RFC 3986 pchar and "/" ("%" only as
-- the start of an escape, see escape_path)
local PATH_UNSAFE = "[^%w%-%._~!%$&'%(%)%*%+,;=:@/%%]"

local OPS = { "remove", "rename", "replace", "add", "append" }

local RequestTransformerHandler = {
  PRIORITY = 801,
  VERSION = "3.10.0",
}


-- plans -----------------------------------------------------------------------

-- Kong's split of an entry: the name up to the first ':', the value after
-- the run of ':' that follows.
local function split(entry)
  return match(entry, "^([^:]+):*(.-)$")
end


local function compile(value, uses)
  local t = assert(template.compile(value)) -- validated by the schema
  if t.uses then
    for ns in pairs(t.uses) do
      uses[ns] = true
    end
  end
  return t
end


-- Header adds whose values are constants, prepared for one PDK call per
-- request (kong.service.request.set_prepared_headers, luagate's: each set
-- when the header is absent then, as add_header does); nil when one is not
-- such (a template, a refused value, Host, a name the PDK does not take
-- prepared): add_header then runs for each.
local function prepare_adds(list)
  local entries = {}
  for i = 1, #list do
    local e = list[i]
    local static = e[2].static
    if not static or e.bad or e.is_host then
      return nil
    end
    entries[i] = { e[1], static, if_absent = true }
  end
  return kong.service.request.prepare_headers(entries)
end


-- The operations of one target ("headers", "querystring", "body"):
-- { remove = { name... }, rename = { { old, new_tmpl }... },
--   replace/add/append = { { name, tmpl }... } }, or nil when there is none.
local function build_ops(conf, target, uses, is_headers)
  local ops, n = {}, 0
  for _, op in ipairs(OPS) do
    local list = {}
    for _, entry in ipairs(conf[op][target] or {}) do
      local name, value = split(entry)
      if op == "remove" then
        list[#list + 1] = name or entry
      elseif name and (value ~= "" or not is_headers) then
        -- an empty header value is a no-op, as in Kong
        local e = { name, compile(value, uses) }
        if is_headers then
          e.is_host = lower(name) == "host"
          -- a constant value is checked once, here
          local static = e[2].static
          if static then
            e.bad = find(static, BAD_HEADER_VALUE) ~= nil
          end
        end
        list[#list + 1] = e
      end
    end
    ops[op] = list
    ops["n_" .. op] = #list -- read per request instead of #list
    n = n + #list
  end
  if n == 0 then
    return nil
  end
  if is_headers and n == ops.n_add then
    ops.prepared = prepare_adds(ops.add)
  end
  return ops
end


local function build_plan(conf)
  local uses = {}
  local plan = {
    method = conf.http_method,
    headers = build_ops(conf, "headers", uses, true),
    query = build_ops(conf, "querystring", uses),
    body = build_ops(conf, "body", uses),
  }
  local uri = conf.replace and conf.replace.uri
  if uri then
    plan.uri = compile(uri, uses)
  end
  if next(uses) then
    plan.uses = uses
  end
  return plan
end


local plans = setmetatable({}, { __mode = "k" })

local function plan_of(conf)
  local p = plans[conf]
  if not p then
    p = build_plan(conf)
    plans[conf] = p
  end
  return p
end


function RequestTransformerHandler:configure(configs)
  for _, conf in ipairs(configs or {}) do
    plan_of(conf)
  end
end


-- the template namespaces -----------------------------------------------------

local function uri_captures()
  local c = kong.request.get_uri_captures()
  local t = {}
  for k, v in pairs(c.unnamed) do
    t[k] = v
  end
  for k, v in pairs(c.named) do
    t[k] = v
  end
  return t
end


-- The values templates read, taken once per request before any change.
local function new_env(uses)
  local env = {}
  if uses.headers then
    env.headers = kong.request.get_headers(1000)
  end
  if uses.query_params then
    env.query_params = kong.request.get_query(1000)
  end
  if uses.uri_captures then
    env.uri_captures = uri_captures()
  end
  if uses.shared then
    env.shared = kong.ctx.shared
  end
  if uses.request_id then
    env.request_id = ngx.var.request_id
  end
  return env
end


-- helpers ---------------------------------------------------------------------

-- Adds value to a parameter's values (Kong's append_value; an existing
-- single value is kept as the first one).
local function append_value(cur, value)
  if cur == nil then
    return { value }
  end
  if type(cur) == "table" then
    cur[#cur + 1] = value
    return cur
  end
  return { cur, value }
end


local function escape_byte(c)
  return fmt("%%%02X", byte(c))
end


-- Percent-encodes what may not appear in a path; an existing %XX escape
-- is kept, a "%" that starts none is encoded.
local function escape_path(path)
  path = gsub(path, "%%(%x?%x?)", function(hex)
    if #hex == 2 then
      return nil
    end
    return "%25" .. hex
  end)
  return (gsub(path, PATH_UNSAFE, escape_byte))
end


local function content_kind(ct)
  if type(ct) ~= "string" then
    return nil
  end
  ct = lower(ct)
  if find(ct, "application/json", 1, true) then
    return JSON
  elseif find(ct, "multipart/form-data", 1, true) then
    return MULTI
  elseif find(ct, "application/x-www-form-urlencoded", 1, true) then
    return FORM
  end
  return nil
end


-- targets ---------------------------------------------------------------------

local function transform_uri(plan, env)
  local path = render(plan.uri, env)
  if path == "" then
    return
  end
  if byte(path, 1) ~= 47 then -- "/"
    error(fmt("[request-transformer] the uri '%s' rendered from " ..
              "replace.uri does not start with /", path), 0)
  end
  kong.service.request.set_path(escape_path(path))
end


-- Sets the method; a GET/HEAD/TRACE request with a form body gets the
-- form's arguments in its querystring (Kong's behaviour). Returns the new
-- query table when it changed.
local function transform_method(method)
  kong.service.request.set_method(method)
  if method ~= "GET" and method ~= "HEAD" and method ~= "TRACE" then
    return nil
  end
  if content_kind(kong.request.get_header("Content-Type")) ~= FORM then
    return nil
  end
  local body = kong.request.get_raw_body()
  if not body or body == "" then
    return nil
  end
  local form = ngx.decode_args(body, 0)
  if type(form) ~= "table" or next(form) == nil then
    return nil
  end
  local query = kong.request.get_query(1000)
  for name, value in pairs(form) do
    local cur = query[name]
    if cur == nil then
      query[name] = value
    elseif type(cur) == "table" then
      if type(value) == "table" then
        for _, v in ipairs(value) do
          cur[#cur + 1] = v
        end
      else
        cur[#cur + 1] = value
      end
    else
      local list = { cur }
      if type(value) == "table" then
        for _, v in ipairs(value) do
          list[#list + 1] = v
        end
      else
        list[#list + 1] = value
      end
      query[name] = list
    end
  end
  kong.service.request.set_query(query)
  return query
end


-- A header entry's rendered value, or nil (logged) when it holds a
-- control character: CR/LF would start a new header line.
local function header_value(e, env)
  local t = e[2]
  local v = t.static
  local bad
  if v then
    bad = e.bad
  else
    v = render(t, env)
    bad = find(v, BAD_HEADER_VALUE) ~= nil
  end
  if bad then
    kong.log.warn("refused the value of header '", e[1], "': it contains ",
                  "a control character (CR, LF...); header not set")
    return nil
  end
  return v
end


-- Calls fn(list[i], env) for each entry. The first call is outside the
-- loop, so that the usual list of one entry runs none: the JIT blacklists
-- a loop that is left after one iteration on every request, and aborts
-- every trace through it afterwards (the ops' lists are mostly of zero or
-- one entry).
local function each(list, fn, env)
  local n = #list
  if n == 0 then
    return
  end
  fn(list[1], env)
  for i = 2, n do
    fn(list[i], env)
  end
end


-- Header operations on the upstream request as it is so far:
-- kong.request.get_header sees what kong.service.request changed, so each
-- step sees the previous ones without a table of every header.
local function remove_header(name)
  if lower(name) ~= "host" then
    kong.service.request.clear_header(name)
  end
end


local function rename_header(e, env)
  local old, new = e[1], render(e[2], env)
  local ko = lower(old)
  if ko ~= "host" and old ~= new and kong.request.get_header(old) ~= nil then
    local sreq = kong.service.request
    local v = kong.request.get_headers(1000)[ko]
    sreq.clear_header(old)
    if type(v) == "table" then
      sreq.set_header(new, v[1])
      for i = 2, #v do
        sreq.add_header(new, v[i])
      end
    else
      sreq.set_header(new, v)
    end
  end
end


local function replace_header(e, env)
  local name = e[1]
  if e.is_host or kong.request.get_header(name) ~= nil then
    local v = header_value(e, env)
    if v then
      kong.service.request.set_header(name, v)
    end
  end
end


local function add_header(e, env)
  local name = e[1]
  if not e.is_host and kong.request.get_header(name) == nil then
    local v = header_value(e, env)
    if v then
      kong.service.request.set_header(name, v)
    end
  end
end


local function append_header(e, env)
  if not e.is_host then
    local v = header_value(e, env)
    if v then
      kong.service.request.add_header(e[1], v)
    end
  end
end


local function transform_headers(ops, env)
  local prepared = ops.prepared
  if prepared then
    kong.service.request.set_prepared_headers(prepared)
    return
  end
  -- the counts made with the plan: most lists are empty, and `#list` is a
  -- call (lj_tab_len) in compiled code
  if ops.n_remove > 0 then
    each(ops.remove, remove_header, env)
  end
  if ops.n_rename > 0 then
    each(ops.rename, rename_header, env)
  end
  if ops.n_replace > 0 then
    each(ops.replace, replace_header, env)
  end
  if ops.n_add > 0 then
    each(ops.add, add_header, env)
  end
  if ops.n_append > 0 then
    each(ops.append, append_header, env)
  end
end


-- Applies ops to a table of parameters (a querystring or a form).
-- with_content: remove, rename and replace apply (the body had content).
-- Returns true when something changed.
local function transform_params(ops, params, env, with_content)
  local changed = false
  if with_content then
    for _, name in ipairs(ops.remove) do
      if params[name] ~= nil then
        params[name] = nil
        changed = true
      end
    end
    for _, e in ipairs(ops.rename) do
      local old, new = e[1], render(e[2], env)
      local v = params[old]
      if v ~= nil and old ~= new then
        params[old] = nil
        params[new] = v
        changed = true
      end
    end
    for _, e in ipairs(ops.replace) do
      local name = e[1]
      if params[name] ~= nil then
        params[name] = render(e[2], env)
        changed = true
      end
    end
  end
  for _, e in ipairs(ops.add) do
    local name = e[1]
    if params[name] == nil then
      params[name] = render(e[2], env)
      changed = true
    end
  end
  for _, e in ipairs(ops.append) do
    local name = e[1]
    params[name] = append_value(params[name], render(e[2], env))
    changed = true
  end
  return changed
end


local function transform_query(ops, env, query)
  query = query or kong.request.get_query(1000)
  transform_params(ops, query, env, true)
  kong.service.request.set_query(query)
end


-- JSON bodies: an object's top-level properties (values are strings, as
-- in Kong); the rest of the document is kept as it was (json_object.lua).
local function transform_json(ops, body, env)
  local obj
  if body ~= "" then
    local err
    obj, err = json_object.parse(body)
    if not obj then
      kong.log.debug("JSON body left as is: ", err)
      return nil
    end
  else
    obj = json_object.new()
  end
  local changed = false
  if body ~= "" then
    for _, name in ipairs(ops.remove) do
      changed = obj:remove(name) or changed
    end
    for _, e in ipairs(ops.rename) do
      changed = obj:rename(e[1], render(e[2], env)) or changed
    end
    for _, e in ipairs(ops.replace) do
      if obj:has(e[1]) then
        obj:set(e[1], render(e[2], env))
        changed = true
      end
    end
  end
  for _, e in ipairs(ops.add) do
    if not obj:has(e[1]) then
      obj:set(e[1], render(e[2], env))
      changed = true
    end
  end
  for _, e in ipairs(ops.append) do
    obj:append(e[1], render(e[2], env))
    changed = true
  end
  if changed then
    return obj:tostring()
  end
  return nil
end


local function transform_form(ops, body, env)
  local params = ngx.decode_args(body, 0)
  if transform_params(ops, params, env, body ~= "") then
    return ngx.encode_args(params)
  end
  return nil
end


local function transform_multipart(ops, body, env, ct)
  local lct = lower(ct)
  local at = find(lct, ";%s*boundary=")
  if not at then
    return nil
  end
  local rest = sub(ct, find(ct, "=", at, true) + 1)
  local boundary = match(rest, '^"([^"]+)"') or match(rest, "^([^;%s]+)")
  if not boundary then
    return nil
  end
  local parts, err = multipart.parse(body, boundary)
  if not parts then
    kong.log.warn("could not parse the multipart body: ", err)
    return nil
  end
  local changed = false
  if body ~= "" then
    for _, name in ipairs(ops.remove) do
      changed = parts:remove(name) or changed
    end
    for _, e in ipairs(ops.rename) do
      local old, new = e[1], render(e[2], env)
      if old ~= new then
        changed = parts:rename(old, new) or changed
      end
    end
    for _, e in ipairs(ops.replace) do
      changed = parts:replace(e[1], render(e[2], env)) or changed
    end
  end
  for _, e in ipairs(ops.add) do
    if not parts:get(e[1]) then
      parts:add(e[1], render(e[2], env))
      changed = true
    end
  end
  for _, e in ipairs(ops.append) do
    parts:add(e[1], render(e[2], env))
    changed = true
  end
  if changed then
    return parts:tostring()
  end
  return nil
end


local function transform_body(ops, env)
  local ct = kong.request.get_header("Content-Type")
  local kind = content_kind(ct)
  if not kind then
    return
  end
  local body, err = kong.request.get_raw_body()
  if not body then
    kong.log.warn(err)
    body = ""
  end
  local new
  if kind == JSON then
    new = transform_json(ops, body, env)
  elseif kind == FORM then
    new = transform_form(ops, body, env)
  else
    new = transform_multipart(ops, body, env, ct)
  end
  if new then
    kong.service.request.set_raw_body(new)
  end
end


function RequestTransformerHandler:access(conf)
  local plan = plan_of(conf)
  local env = plan.uses and new_env(plan.uses) or nil

  if plan.uri then
    transform_uri(plan, env)
  end
  local query
  if plan.method then
    query = transform_method(plan.method)
  end
  if plan.headers then
    transform_headers(plan.headers, env)
  end
  if plan.body then
    transform_body(plan.body, env)
  end
  if plan.query then
    transform_query(plan.query, env, query)
  end
end


return RequestTransformerHandler
