-- aggregator: answers a route with one JSON document composed from several
-- upstream calls made in parallel (luagate.http.request_multi), the
-- Backend-for-Frontend pattern. The wall time is the slowest call's.
--
--   * each call's url and headers are rendered from templates over the
--     client request (compiled at config load), plus forward_headers;
--   * a call succeeds when it answers 2xx: a JSON answer (application/json
--     or +json, and valid JSON) is placed as is at its path_in_response, any
--     other as a JSON string, an empty one as null;
--   * a failed optional call (required = false) is left out and listed in
--     `_partial` ({name, status} or {name, error});
--   * failed required calls decide the answer by status_policy:
--       first-error  the first in config order: 502 (504 on a timeout)
--       worst        the highest status among them (their own, 502 for a
--                    transport error, 504 for a timeout)
--       ok-if-any    200 with the failures in `_partial` while any call
--                    succeeded; 502 when all failed
--     with {"message": "upstream call '<name>' failed: ...", "call": name}.
--
-- The answer is sent from access with kong.response.exit: the route's
-- service is never contacted (luagate needs one on the route all the same).

local http = require "luagate.http"
local cjson = require "cjson.safe"
local json = require "luagate.json"
local buffer = require "string.buffer"
local template = require "kong.plugins.aggregator.template"

local kong = kong
local type = type
local pairs = pairs
local ipairs = ipairs
local tostring = tostring
local setmetatable = setmetatable
local find = string.find
local lower = string.lower
local fmt = string.format
local sort = table.sort
local encode = cjson.encode

local CONTENT_TYPE = "application/json; charset=utf-8"
local PARTIAL_KEY = '"_partial":'


local AggregatorHandler = {
  PRIORITY = 750,
  VERSION = "1.0.0",
}


-- An answer is placed in the response as it came (no decode / encode: key
-- order, big numbers and empty arrays stay as they are), so it must be
-- exactly one valid JSON value: cjson's decoder accepts more (NaN, hex).
local is_json_text = json.is_valid
AggregatorHandler._is_json_text = is_json_text


-- compiled configs ------------------------------------------------------------

local compiled = setmetatable({}, { __mode = "k" })


-- The response's shape: a tree of objects whose leaves are call indexes.
local function add_path(root, path, index)
  local node = root
  local segs = {}
  for seg in (path .. "."):gmatch("([^.]*)%.") do
    segs[#segs + 1] = seg
  end
  for i, seg in ipairs(segs) do
    local kids = node.kids
    if not kids[seg] then
      node.keys[#node.keys + 1] = seg
      node.enc[seg] = encode(seg) .. ":"
      if i == #segs then
        kids[seg] = index
      else
        kids[seg] = { keys = {}, kids = {}, enc = {} }
      end
    end
    node = kids[seg]
  end
end


local function compile(conf)
  local c = {
    calls = {},
    tree = { keys = {}, kids = {}, enc = {} },
    policy = conf.status_policy,
    forward = conf.forward_headers or {},
  }
  for i, call in ipairs(conf.calls) do
    local headers = {}
    for name, value in pairs(call.headers or {}) do
      headers[#headers + 1] = { name = name,
                                tpl = assert(template.compile(value, false)) }
    end
    sort(headers, function(a, b) return a.name < b.name end)
    c.calls[i] = {
      name = call.name,
      url = assert(template.compile(call.url, true)),
      method = call.method or "GET",
      headers = headers,
      timeout = call.timeout_ms,
      required = call.required ~= false,
    }
    add_path(c.tree, call.path_in_response or call.name, i)
  end
  compiled[conf] = c
  return c
end


function AggregatorHandler:configure(configs)
  for _, conf in ipairs(configs or {}) do
    if not compiled[conf] then
      compile(conf)
    end
  end
end


-- outcomes --------------------------------------------------------------------

local function is_json_type(ct)
  if type(ct) == "table" then
    ct = ct[1]
  end
  if type(ct) ~= "string" then
    return false
  end
  ct = lower(ct)
  local mt = ct:match("^%s*([^;%s]+)")
  return mt == "application/json" or
         (mt ~= nil and find(mt, "^[%w%.%-]+/[%w%.%-]+%+json$") ~= nil)
end


-- The JSON text of a successful answer.
local function answer_text(res)
  local body = res.body or ""
  if body == "" then
    return "null"
  end
  if is_json_type(res.headers["content-type"]) and is_json_text(body) then
    return body
  end
  return encode(body) or "null"
end


-- { name, status = n } for an answer that is not 2xx, or { name, error }
-- for a call that got none; `effective` is the status it stands for.
local function failure(name, res, err)
  if res then
    return { name = name, status = res.status }, res.status
  end
  err = tostring(err)
  local timeout = find(err, "timeout", 1, true) ~= nil
  return { name = name, error = err }, timeout and 504 or 502
end


local function failure_message(f)
  if f.status then
    return fmt("upstream call '%s' failed: status %d", f.name, f.status)
  end
  return fmt("upstream call '%s' failed: %s", f.name, f.error)
end


local function fail_with(status, f)
  return kong.response.exit(status, {
    message = failure_message(f),
    call = f.name,
  })
end


-- Writes "{" and the members of node (the caller closes it, so that the
-- root can take `_partial`); returns true when it wrote no member.
local function emit(buf, node, texts)
  buf:put("{")
  local first = true
  for _, k in ipairs(node.keys) do
    local kid = node.kids[k]
    local text
    if type(kid) == "number" then
      text = texts[kid]
    end
    if type(kid) == "table" or text then
      if not first then
        buf:put(",")
      end
      first = false
      buf:put(node.enc[k])
      if text then
        buf:put(text)
      else
        emit(buf, kid, texts)
        buf:put("}")
      end
    end
  end
  return first
end


-- access ----------------------------------------------------------------------

function AggregatorHandler:access(conf)
  local c = compiled[conf] or compile(conf)
  local calls = c.calls
  local n = #calls

  -- the requests
  local cache = {}
  local forwarded
  for _, name in ipairs(c.forward) do
    local v = kong.request.get_header(name)
    if v ~= nil then
      forwarded = forwarded or {}
      forwarded[name] = v
    end
  end
  local list = {}
  for i = 1, n do
    local call = calls[i]
    local url, err = template.render(call.url, cache)
    if not url then
      return kong.response.exit(400, {
        message = fmt("invalid value for the url of call '%s': %s",
                      call.name, err),
      })
    end
    local headers = {}
    if forwarded then
      for k, v in pairs(forwarded) do
        headers[k] = v
      end
    end
    for _, h in ipairs(call.headers) do
      local v
      v, err = template.render(h.tpl, cache)
      if not v then
        return kong.response.exit(400, {
          message = fmt("invalid value for header '%s' of call '%s': %s",
                        h.name, call.name, err),
        })
      end
      if v ~= "" then
        headers[h.name] = v
      end
    end
    list[i] = { url, { method = call.method, headers = headers,
                       timeout = call.timeout } }
  end

  local results, errs = http.request_multi(list, "all")

  -- the outcomes
  local texts = {}
  local partial
  local worst, worst_status
  local first_failed
  local any_ok = false
  local all_failures
  for i = 1, n do
    local call = calls[i]
    local res = results[i]
    if res and res.status >= 200 and res.status < 300 then
      texts[i] = answer_text(res)
      any_ok = true
    else
      local f, status = failure(call.name, res or nil, errs[i])
      all_failures = all_failures or {}
      all_failures[#all_failures + 1] = { f = f, status = status }
      if call.required and c.policy ~= "ok-if-any" then
        if not first_failed then
          first_failed = { f = f, status = status }
        end
        if not worst_status or status > worst_status then
          worst, worst_status = f, status
        end
      else
        partial = partial or {}
        partial[#partial + 1] = f
      end
    end
  end

  if c.policy == "first-error" and first_failed then
    local s = first_failed.status
    return fail_with(s == 504 and 504 or 502, first_failed.f)
  elseif c.policy == "worst" and worst then
    return fail_with(worst_status, worst)
  elseif c.policy == "ok-if-any" and not any_ok then
    local first = all_failures[1]
    return kong.response.exit(502, {
      message = "every upstream call failed; " .. failure_message(first.f),
      call = first.f.name,
    })
  end

  local buf = buffer.new()
  local empty = emit(buf, c.tree, texts)
  if partial then
    if not empty then
      buf:put(",")
    end
    buf:put(PARTIAL_KEY, "[")
    for i, f in ipairs(partial) do
      buf:put(i > 1 and ',{"name":' or '{"name":', encode(f.name))
      if f.status then
        buf:put(',"status":', f.status, "}")
      else
        buf:put(',"error":', encode(f.error), "}")
      end
    end
    buf:put("]")
  end
  buf:put("}")
  return kong.response.exit(200, buf:get(),
                            { ["Content-Type"] = CONTENT_TYPE })
end


return AggregatorHandler
