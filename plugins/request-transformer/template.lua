-- Templates of request-transformer values: literal text with `$(expr)`
-- placeholders, as Kong's (penlight) templates, but the placeholders are
-- not Lua. An expression is one of
--
--   ns.name   ns["name"]   ns[1]   ns.a.b        a lookup path
--   "text"    'text'       42                    a literal
--   expr or expr or ...                          the first truthy value
--   ( expr )
--
-- where ns is one of headers, query_params, uri_captures, shared (a lookup
-- needs at least one key) or request_id (no key). Templates are compiled
-- once, when a config is loaded; rendering only looks values up in the
-- namespace tables of the request. Nothing from the config or the request
-- is ever run as code.
--
-- A placeholder renders as in penlight: a nil or false value gives "",
-- a string itself, a number or true its tostring; a multi-value header or
-- query argument (an array) gives its values joined with ", ". Other
-- values (tables, userdata) give "".
--
-- Text that is not a well-formed placeholder is kept literally (`$(` with
-- no closing parenthesis, a lone `$`). To write `$(...)` literally, quote
-- it in a placeholder, as Kong documents: `$('$(not a template)')`.

local type = type
local ipairs = ipairs
local concat = table.concat
local tostring = tostring
local tonumber = tonumber
local byte = string.byte
local sub = string.sub
local find = string.find
local match = string.match
local fmt = string.format

local _M = {}

-- namespaces a path may start with; true = needs at least one key
local NAMESPACES = {
  headers = true,
  query_params = true,
  uri_captures = true,
  shared = true,
  request_id = false,
}
_M.NAMESPACES = NAMESPACES

local NS_LIST = "headers, query_params, uri_captures, shared, request_id"

local B_QUOTE, B_DQUOTE = byte("'"), byte('"')
local B_LPAREN, B_RPAREN = byte("("), byte(")")
local B_BACKSLASH = byte("\\")

local ESCAPES = {
  n = "\n", t = "\t", r = "\r", a = "\a", b = "\b", f = "\f", v = "\v",
  ["\\"] = "\\", ['"'] = '"', ["'"] = "'", ["\n"] = "\n",
}


-- tokenizer -------------------------------------------------------------------

-- Reads a quoted string starting at i (the quote). Returns the value and
-- the position after the closing quote, or nil, err.
local function read_string(s, i)
  local q = byte(s, i)
  local out = {}
  local j = i + 1
  local n = #s
  while j <= n do
    local c = byte(s, j)
    if c == q then
      return concat(out), j + 1
    elseif c == B_BACKSLASH then
      local e = sub(s, j + 1, j + 1)
      local d = match(s, "^%d%d?%d?", j + 1)
      if d then
        local v = tonumber(d)
        if v > 255 then
          return nil, "invalid escape sequence '\\" .. d .. "'"
        end
        out[#out + 1] = string.char(v)
        j = j + 1 + #d
      elseif ESCAPES[e] then
        out[#out + 1] = ESCAPES[e]
        j = j + 2
      else
        return nil, "invalid escape sequence '\\" .. e .. "'"
      end
    elseif c == 10 or c == 13 then
      return nil, "unfinished string"
    else
      local k = j
      while k <= n do
        local ck = byte(s, k)
        if ck == q or ck == B_BACKSLASH or ck == 10 or ck == 13 then
          break
        end
        k = k + 1
      end
      out[#out + 1] = sub(s, j, k - 1)
      j = k
    end
  end
  return nil, "unfinished string"
end


-- Splits an expression into tokens: { type, value, pos }. Types: name,
-- string, number, and the punctuation itself (".", "[", "]", "(", ")").
local function tokenize(s)
  local toks = {}
  local i, n = 1, #s
  while i <= n do
    local c = sub(s, i, i)
    if find(c, "^%s") then
      i = i + 1
    elseif find(c, "^[%a_]") then
      local name = match(s, "^[%w_]+", i)
      toks[#toks + 1] = { "name", name, i }
      i = i + #name
    elseif find(c, "^%d") then
      local num = match(s, "^%d+%.?%d*", i)
      if find(s, "^[%w_]", i + #num) then
        return nil, fmt("malformed number near '%s'",
                        match(s, "^[%w_%.]+", i))
      end
      toks[#toks + 1] = { "number", tonumber(num), i }
      i = i + #num
    elseif c == "'" or c == '"' then
      local v, after = read_string(s, i)
      if not v then
        return nil, after .. " at position " .. i
      end
      toks[#toks + 1] = { "string", v, i }
      i = after
    elseif c == "." or c == "[" or c == "]" or c == "(" or c == ")" then
      toks[#toks + 1] = { c, c, i }
      i = i + 1
    else
      return nil, fmt("unexpected '%s' at position %d", c, i)
    end
  end
  return toks
end


-- parser ----------------------------------------------------------------------

local parse_expr -- forward

local function describe(tok)
  if not tok then
    return "end of expression"
  end
  if tok[1] == "string" then
    return "string at position " .. tok[3]
  end
  return fmt("'%s' at position %d", tostring(tok[2]), tok[3])
end


local function parse_path(toks, i)
  local tok = toks[i]
  local ns = tok[2]
  local needs_key = NAMESPACES[ns]
  if needs_key == nil then
    return nil, fmt("unknown name '%s' at position %d (use one of: %s)",
                    ns, tok[3], NS_LIST)
  end
  local keys = {}
  i = i + 1
  while true do
    local t = toks[i]
    if t and t[1] == "." then
      local k = toks[i + 1]
      if not k or k[1] ~= "name" or k[2] == "or" then
        return nil, "expected a name after '.' at position " .. t[3]
      end
      keys[#keys + 1] = k[2]
      i = i + 2
    elseif t and t[1] == "[" then
      local k = toks[i + 1]
      if not k or (k[1] ~= "string" and k[1] ~= "number") then
        return nil, "expected a string or a number after '[' at " ..
                    "position " .. t[3]
      end
      local close = toks[i + 2]
      if not close or close[1] ~= "]" then
        return nil, "expected ']' instead of " .. describe(close)
      end
      keys[#keys + 1] = k[2]
      i = i + 3
    else
      break
    end
  end
  if needs_key and #keys == 0 then
    return nil, fmt("'%s' needs a key (%s.<name> or %s[\"<name>\"])", ns,
                    ns, ns)
  end
  if not needs_key and #keys > 0 then
    return nil, fmt("'%s' takes no key", ns)
  end
  return { ns = ns, keys = keys }, i
end


local function parse_term(toks, i)
  local tok = toks[i]
  if not tok then
    return nil, "expected a value instead of end of expression"
  end
  local kind = tok[1]
  if kind == "string" or kind == "number" then
    return { value = tok[2] }, i + 1
  elseif kind == "(" then
    local e, j = parse_expr(toks, i + 1)
    if not e then
      return nil, j
    end
    local close = toks[j]
    if not close or close[1] ~= ")" then
      return nil, "expected ')' instead of " .. describe(close)
    end
    return e, j + 1
  elseif kind == "name" and tok[2] ~= "or" then
    return parse_path(toks, i)
  end
  return nil, "unexpected " .. describe(tok)
end


-- expr := term { "or" term }. Returns the node and the next token index.
parse_expr = function(toks, i)
  local first, j = parse_term(toks, i)
  if not first then
    return nil, j
  end
  local terms
  while toks[j] and toks[j][1] == "name" and toks[j][2] == "or" do
    local t, k = parse_term(toks, j + 1)
    if not t then
      return nil, k
    end
    terms = terms or { first }
    terms[#terms + 1] = t
    j = k
  end
  if terms then
    return { any = terms }, j
  end
  return first, j
end


local function compile_expr(src)
  local toks, err = tokenize(src)
  if not toks then
    return nil, err
  end
  if #toks == 0 then
    return nil, "empty expression"
  end
  local e, j = parse_expr(toks, 1)
  if not e then
    return nil, j
  end
  if toks[j] then
    return nil, "unexpected " .. describe(toks[j])
  end
  return e
end


-- Where the placeholder whose "(" is at i closes: the index of its ")"
-- (parentheses balanced, quoted strings skipped); nil when it does not
-- close (the text is then literal), or nil, err for an unfinished string.
local function closing(s, i)
  local depth = 0
  local j, n = i, #s
  while j <= n do
    local c = byte(s, j)
    if c == B_LPAREN then
      depth = depth + 1
    elseif c == B_RPAREN then
      depth = depth - 1
      if depth == 0 then
        return j
      end
    elseif c == B_QUOTE or c == B_DQUOTE then
      local v, after = read_string(s, j)
      if not v then
        return nil, after .. " at position " .. (j - i)
      end
      j = after - 1
    end
    j = j + 1
  end
  return nil
end


-- Compiles template text. Returns the compiled template, or nil and an
-- error. A compiled template is { static = text } when it has no
-- placeholder, else { parts = { "text" | node, ... }, uses = { ns = true } }.
function _M.compile(s)
  if type(s) ~= "string" then
    return nil, "template must be a string"
  end
  local start = find(s, "$(", 1, true)
  if not start then
    return { static = s }
  end
  local parts, uses = {}, {}
  local pos = 1
  while start do
    local close, cerr = closing(s, start + 1)
    if cerr then
      return nil, fmt("in '%s': %s", sub(s, start), cerr)
    end
    if not close then
      break -- not a placeholder: the rest is text
    end
    if start > pos then
      parts[#parts + 1] = sub(s, pos, start - 1)
    end
    local src = sub(s, start + 2, close - 1)
    local node, err = compile_expr(src)
    if not node then
      return nil, fmt("in '$(%s)': %s", src, err)
    end
    local function collect(nd)
      if nd.any then
        for _, t in ipairs(nd.any) do
          collect(t)
        end
      elseif nd.ns then
        uses[nd.ns] = true
      end
    end
    collect(node)
    if node.value ~= nil then
      parts[#parts + 1] = tostring(node.value) -- a constant
    else
      parts[#parts + 1] = node
    end
    pos = close + 1
    start = find(s, "$(", pos, true)
  end
  if pos <= #s then
    parts[#parts + 1] = sub(s, pos)
  end
  -- merge neighbouring constant text
  local merged = {}
  for _, p in ipairs(parts) do
    local last = merged[#merged]
    if type(p) == "string" and type(last) == "string" then
      merged[#merged] = last .. p
    else
      merged[#merged + 1] = p
    end
  end
  if #merged == 0 then
    return { static = "" }
  end
  if #merged == 1 and type(merged[1]) == "string" then
    return { static = merged[1] }
  end
  return { parts = merged, uses = uses }
end


-- rendering -------------------------------------------------------------------

local function lookup(node, env)
  local v = env[node.ns]
  local keys = node.keys
  for i = 1, #keys do
    if type(v) ~= "table" then
      return nil
    end
    v = v[keys[i]]
  end
  return v
end


local function eval(node, env)
  if node.ns then
    return lookup(node, env)
  end
  local any = node.any
  if any then
    local v
    for i = 1, #any do
      v = eval(any[i], env)
      if v then
        return v
      end
    end
    return v
  end
  return node.value
end


local function is_string_list(t)
  local n = #t
  if n == 0 then
    return false
  end
  for i = 1, n do
    local tv = type(t[i])
    if tv ~= "string" and tv ~= "number" then
      return false
    end
  end
  return true
end


local function to_text(v)
  local tv = type(v)
  if tv == "string" then
    return v
  elseif tv == "number" or v == true then
    return tostring(v)
  elseif tv == "table" and is_string_list(v) then
    return concat(v, ", ")
  end
  return ""
end


-- Renders a compiled template with env, a table of the namespaces
-- (headers, query_params, uri_captures, shared, request_id).
function _M.render(t, env)
  local static = t.static
  if static then
    return static
  end
  local parts = t.parts
  local n = #parts
  if n == 1 then
    return to_text(eval(parts[1], env))
  end
  local out = {}
  for i = 1, n do
    local p = parts[i]
    if type(p) == "string" then
      out[i] = p
    else
      out[i] = to_text(eval(p, env))
    end
  end
  return concat(out)
end


return _M
