-- Templates of the aggregator's call urls and headers: text with `$(...)`
-- lookups into the client request, compiled once at config load into a list
-- of parts. The lookup language is deliberately tiny (no Lua code is ever
-- run from a config or a request):
--
--   $(headers.x_user_id)          a request header (`_` = `-`, any case)
--   $(headers["X-User-Id"])       the same, any name
--   $(query_params.page)          a query argument (its first value)
--   $(uri_captures.id)            a named capture of the route's regex path
--   $(uri_captures[1])            a numbered one
--   $(shared.tenant)              kong.ctx.shared.tenant (dotted: deeper)
--   $(request_id)                 the request's id
--   $(query_params.page or "1")   a default when the value is missing
--
-- A missing value without a default renders as "". A value with CR or LF
-- is refused (header injection). In urls, values are percent-encoded (all
-- but A-Z a-z 0-9 - . _ ~), so a value can never add path segments or
-- query arguments; uri captures, which are raw path text, keep their valid
-- %XX escapes.
--
--   local t = assert(template.compile("/users/$(uri_captures.id)", true))
--   local s, err = template.render(t, cache)   -- cache: {} per request

local kong = kong
local type = type
local ipairs = ipairs
local tostring = tostring
local tonumber = tonumber
local error = error
local pcall = pcall
local floor = math.floor
local find = string.find
local sub = string.sub
local byte = string.byte
local fmt = string.format
local gsub = string.gsub
local match = string.match
local concat = table.concat

local _M = {}

local NAMESPACES = {
  headers = true, query_params = true, uri_captures = true, shared = true,
}


-- parsing ---------------------------------------------------------------------

local function perr(msg)
  error({ template_error = msg }, 0)
end


-- Tokenizes an expression: identifiers, strings, integers, and the
-- punctuation . [ ]. Returns an array of { kind, value }.
local function tokenize(expr)
  local toks = {}
  local i, n = 1, #expr
  while i <= n do
    local c = sub(expr, i, i)
    if find(c, "%s") then
      i = i + 1
    elseif c == "." or c == "[" or c == "]" then
      toks[#toks + 1] = { c }
      i = i + 1
    elseif c == '"' or c == "'" then
      local j = i + 1
      local parts = {}
      while true do
        local d = sub(expr, j, j)
        if d == "" then
          perr("unterminated string")
        elseif d == "\\" then
          local e = sub(expr, j + 1, j + 1)
          if e ~= "\\" and e ~= '"' and e ~= "'" then
            perr("invalid escape '\\" .. e .. "' (only \\\\, \\\" and " ..
                 "\\' are allowed)")
          end
          parts[#parts + 1] = e
          j = j + 2
        elseif d == c then
          break
        else
          parts[#parts + 1] = d
          j = j + 1
        end
      end
      toks[#toks + 1] = { "string", concat(parts) }
      i = j + 1
    elseif find(c, "%d") then
      local num = match(expr, "^%d+", i)
      toks[#toks + 1] = { "number", tonumber(num) }
      i = i + #num
    elseif find(c, "[%a_]") then
      local id = match(expr, "^[%w_]+", i)
      toks[#toks + 1] = { id == "or" and "or" or "ident", id }
      i = i + #id
    else
      perr("unexpected character '" .. c .. "'")
    end
  end
  return toks
end


-- Parses `ns.key`, `ns["key"]`, `ns[1]`, `request_id`, with an optional
-- `or "default"`. Returns { ns, keys (array), default }.
local function parse_expr(expr)
  local toks = tokenize(expr)
  local pos = 1
  local function peek()
    return toks[pos]
  end
  local function take()
    pos = pos + 1
    return toks[pos - 1]
  end

  local first = take()
  if not first or first[1] ~= "ident" then
    perr("expected a name such as headers.x")
  end
  local ns = first[2]
  local keys = {}
  if ns ~= "request_id" then
    if not NAMESPACES[ns] then
      perr("unknown name '" .. ns .. "' (use headers, query_params, " ..
           "uri_captures, shared or request_id)")
    end
    while peek() and (peek()[1] == "." or peek()[1] == "[") do
      local t = take()
      if t[1] == "." then
        local k = take()
        if not k or k[1] ~= "ident" then
          perr("expected a name after '.'")
        end
        keys[#keys + 1] = k[2]
      else
        local k = take()
        if not k or (k[1] ~= "string" and k[1] ~= "number") then
          perr("expected a string or an integer in '[...]'")
        end
        local close = take()
        if not close or close[1] ~= "]" then
          perr("expected ']'")
        end
        keys[#keys + 1] = k[2]
      end
    end
    if #keys == 0 then
      perr("'" .. ns .. "' needs a key, such as " .. ns .. ".name")
    end
    if #keys > 1 and ns ~= "shared" then
      perr("'" .. ns .. "' takes one key")
    end
    if ns ~= "uri_captures" then
      for _, k in ipairs(keys) do
        if type(k) ~= "string" then
          perr("'" .. ns .. "' takes a name, not a number")
        end
      end
    end
  end

  local default
  if peek() and peek()[1] == "or" then
    take()
    local d = take()
    if not d or (d[1] ~= "string" and d[1] ~= "number") then
      perr("expected a string or a number after 'or'")
    end
    default = tostring(d[2])
  end
  if peek() then
    perr("unexpected '" .. tostring(peek()[2] or peek()[1]) .. "'")
  end
  return { ns = ns, keys = keys, default = default }
end


-- Finds the ")" closing the "$(" at i (skipping quoted strings). Returns
-- its position or nil.
local function closing(s, i)
  local j = i + 2
  local quote
  while j <= #s do
    local c = sub(s, j, j)
    if quote then
      if c == "\\" then
        j = j + 1
      elseif c == quote then
        quote = nil
      end
    elseif c == '"' or c == "'" then
      quote = c
    elseif c == ")" then
      return j
    end
    j = j + 1
  end
  return nil
end


-- evaluating ------------------------------------------------------------------

local function as_text(v)
  local t = type(v)
  if t == "string" then
    return v
  elseif t == "number" then
    if v == floor(v) and v > -1e15 and v < 1e15 then
      return fmt("%d", v)
    end
    return tostring(v)
  elseif t == "boolean" then
    return v and "" or nil -- `?flag` without a value
  elseif t == "table" then
    return as_text(v[1]) -- repeated header or argument: the first
  end
  return nil
end


local function getter(e)
  local ns, keys = e.ns, e.keys
  local key = keys[1]
  if ns == "request_id" then
    return function()
      return ngx.var.request_id
    end
  elseif ns == "headers" then
    return function()
      return kong.request.get_header(key)
    end
  elseif ns == "query_params" then
    return function()
      return kong.request.get_query_arg(key)
    end
  elseif ns == "uri_captures" then
    return function(cache)
      local caps = cache.uri_captures
      if not caps then
        caps = kong.request.get_uri_captures()
        cache.uri_captures = caps
      end
      if type(key) == "number" then
        return caps.unnamed[key]
      end
      return caps.named[key]
    end
  end
  -- shared
  local n = #keys
  return function()
    local v = kong.ctx.shared
    for i = 1, n do
      if type(v) ~= "table" then
        return nil
      end
      v = v[keys[i]]
    end
    return v
  end
end


local function escape_char(c)
  return fmt("%%%02X", byte(c))
end

local function url_escape(s)
  return (gsub(s, "[^%w%-%._~]", escape_char))
end

-- uri captures are text of the request path, percent-encoding included: a
-- valid %XX stays as it is (a path segment stays one segment: "/" is not
-- in a capture's text unless the route's regex lets it in, and then it is
-- encoded)
local function url_escape_raw(s)
  s = gsub(s, "%%(%x?%x?)", function(h)
    if #h == 2 then
      return "%" .. h
    end
    return "%25" .. h
  end)
  return (gsub(s, "[^%w%-%._~%%]", escape_char))
end


-- Compiles a template. `url`: escape values (and check that the scheme and
-- host are plain text). Returns the compiled template or nil, err.
function _M.compile(s, url)
  if type(s) ~= "string" then
    return nil, "expected a string"
  end
  local parts = {}
  local i = 1
  local first_expr
  while true do
    local j = find(s, "$(", i, true)
    if not j then
      if i <= #s then
        parts[#parts + 1] = sub(s, i)
      end
      break
    end
    if j > i then
      parts[#parts + 1] = sub(s, i, j - 1)
    end
    first_expr = first_expr or j
    local k = closing(s, j)
    if not k then
      return nil, "unterminated '$(' at position " .. j
    end
    local src = sub(s, j + 2, k - 1)
    local ok, e = pcall(parse_expr, src)
    if not ok then
      if type(e) == "table" and e.template_error then
        return nil, "invalid template '$(" .. src .. ")': " .. e.template_error
      end
      error(e, 0)
    end
    e.get = getter(e)
    e.src = src
    parts[#parts + 1] = e
    i = k + 1
  end
  if url and first_expr then
    local prefix = sub(s, 1, first_expr - 1)
    if not find(prefix, "^%a[%w+.%-]*://[^/?#]+[/?]") then
      return nil, "templates are only allowed in the path and query of a url"
    end
  end
  local t = { parts = parts, url = url, source = s }
  if #parts == 0 then
    t.static = ""
  elseif #parts == 1 and type(parts[1]) == "string" then
    t.static = parts[1]
  end
  return t
end


-- Renders a compiled template for the current request. `cache` is a table
-- kept for the request (lookups shared by the templates). Returns the text,
-- or nil and an error naming the lookup.
function _M.render(t, cache)
  if t.static then
    return t.static
  end
  local parts = t.parts
  local out = {}
  for i = 1, #parts do
    local p = parts[i]
    if type(p) == "string" then
      out[i] = p
    else
      local v = as_text(p.get(cache))
      if v == nil then
        v = p.default or ""
      end
      if find(v, "\n", 1, true) or find(v, "\r", 1, true) then
        return nil, "the value of $(" .. p.src .. ") contains CR or LF"
      end
      if t.url then
        v = p.ns == "uri_captures" and url_escape_raw(v) or url_escape(v)
      end
      out[i] = v
    end
  end
  return concat(out)
end


return _M
