-- XML <-> JSON for the xml-json plugin, with a real XML parser (Expat,
-- through lua-expat's `lxp`).
--
-- JSON -> XML (to_xml): an object's keys are child elements, in order; an
-- array value repeats its key's element; "@name" keys are attributes,
-- "#text" the element's text; null is an empty element; numbers keep their
-- JSON text. A top-level array gives <item> children, a scalar the root's
-- text.
--
-- XML -> JSON (parse, then to_json): the mirror image, as xmltodict does:
-- attributes "@name", text "#text" when the element also has attributes or
-- children (else the element is its text), repeated elements an array,
-- empty elements null, whitespace-only text ignored; every text is a JSON
-- string. Namespace prefixes are dropped with strip_namespaces (and so are
-- the xmlns attributes).

local lxp = require "lxp"
local cjson = require "cjson.safe"
local buffer = require "string.buffer"

local type = type
local error = error
local pcall = pcall
local ipairs = ipairs
local tostring = tostring
local getmetatable = getmetatable
local find = string.find
local sub = string.sub
local gsub = string.gsub
local match = string.match
local concat = table.concat
local fmt = string.format
local encode_string = cjson.encode

local _M = {
  SOAP11_NS = "http://schemas.xmlsoap.org/soap/envelope/",
  SOAP12_NS = "http://www.w3.org/2003/05/soap-envelope",
}

local MAX_DEPTH = 512


-- names -----------------------------------------------------------------------

-- An XML name (ASCII letters, digits, . - _ :, and any non-ASCII byte,
-- not starting with a digit, ".", "-" or ":").
local function is_name(s)
  return type(s) == "string" and
         find(s, "^[%a_\128-\255][%w%.%-_:\128-\255]*$") ~= nil
end
_M.is_name = is_name


local function local_name(q)
  local i = find(q, ":", 1, true)
  if i then
    return sub(q, i + 1), sub(q, 1, i - 1)
  end
  return q, nil
end


-- JSON -> XML -----------------------------------------------------------------

local function conv_error(msg)
  error({ conversion_error = msg }, 0)
end


local TEXT_ESC = { ["&"] = "&amp;", ["<"] = "&lt;", [">"] = "&gt;" }
local ATTR_ESC = {
  ["&"] = "&amp;", ["<"] = "&lt;", [">"] = "&gt;", ['"'] = "&quot;",
  ["\t"] = "&#9;", ["\n"] = "&#10;", ["\r"] = "&#13;",
}

local function check_chars(s)
  -- characters XML 1.0 cannot carry at all
  if find(s, "[%z\1-\8\11\12\14-\31]") then
    conv_error("a string holds a control character XML cannot represent")
  end
end

local function text_escape(s)
  check_chars(s)
  return (gsub(s, "[&<>]", TEXT_ESC))
end

local function attr_escape(s)
  check_chars(s)
  return (gsub(s, "[&<>\"\t\n\r]", ATTR_ESC))
end


-- The text of a scalar (string, boolean, number); nil for other kinds.
local function scalar_text(v, ojson)
  local t = type(v)
  if t == "string" then
    return v
  elseif t == "boolean" then
    return v and "true" or "false"
  elseif t == "table" and getmetatable(v) == ojson.NUMBER_MT then
    return v.text
  end
  return nil
end


local write_element -- forward

local function write_children(buf, v, ojson, depth)
  -- v: an object's children (attributes already written)
  for i, k in ipairs(v.keys) do
    local first = sub(k, 1, 1)
    if first ~= "@" and k ~= "#text" then
      local x = v.vals[i]
      if getmetatable(x) == ojson.ARRAY_MT then
        for _, item in ipairs(x) do
          write_element(buf, k, item, ojson, depth + 1)
        end
      else
        write_element(buf, k, x, ojson, depth + 1)
      end
    end
  end
end


-- Writes <name ...>value</name>. `extra` is an attribute string (the
-- namespace declaration of the root).
write_element = function(buf, name, v, ojson, depth, extra)
  if depth > MAX_DEPTH then
    conv_error("the body is too deeply nested")
  end
  if not is_name(name) then
    conv_error("'" .. name .. "' is not a valid XML element name")
  end
  buf:put("<", name)
  if extra then
    buf:put(extra)
  end
  local mt = type(v) == "table" and getmetatable(v)
  if mt == ojson.OBJECT_MT then
    local text
    local seen = {}
    local has_children = false
    for i, k in ipairs(v.keys) do
      local x = v.vals[i]
      if sub(k, 1, 1) == "@" then
        local an = sub(k, 2)
        if not is_name(an) then
          conv_error("'" .. an .. "' is not a valid XML attribute name")
        end
        local at = scalar_text(x, ojson)
        if x == ojson.NULL then
          at = ""
        elseif at == nil then
          conv_error("attribute '" .. an .. "' must be a string, a " ..
                     "number or a boolean")
        end
        if seen[an] then
          conv_error("attribute '" .. an .. "' is given twice")
        end
        seen[an] = true
        buf:put(" ", an, '="', attr_escape(at), '"')
      elseif k == "#text" then
        text = scalar_text(x, ojson)
        if text == nil and x ~= ojson.NULL then
          conv_error("'#text' must be a string, a number or a boolean")
        end
      else
        has_children = true
      end
    end
    if not has_children and (text == nil or text == "") then
      buf:put("/>")
      return
    end
    buf:put(">")
    if text then
      buf:put(text_escape(text))
    end
    write_children(buf, v, ojson, depth)
    buf:put("</", name, ">")
  elseif mt == ojson.ARRAY_MT then
    if #v == 0 then
      buf:put("/>")
      return
    end
    buf:put(">")
    for _, item in ipairs(v) do
      write_element(buf, "item", item, ojson, depth + 1)
    end
    buf:put("</", name, ">")
  elseif v == ojson.NULL then
    buf:put("/>")
  else
    local text = scalar_text(v, ojson)
    if text == "" then
      buf:put("/>")
      return
    end
    buf:put(">", text_escape(text), "</", name, ">")
  end
end


-- Converts a value from luagate.json's decode_ordered (`ojson` is that
-- module) to an XML document. opts: root (element name), soap = { version,
-- namespace } (optional), namespace. Returns the text, or nil and an error
-- message.
function _M.from_json(v, ojson, opts)
  local buf = buffer.new()
  buf:put('<?xml version="1.0" encoding="UTF-8"?>')
  local soap = opts.soap
  local extra
  if soap and soap.namespace then
    extra = ' xmlns="' .. attr_escape(soap.namespace) .. '"'
  end
  local ok, err = pcall(function()
    if soap then
      local ns = soap.version == "1.2" and _M.SOAP12_NS or _M.SOAP11_NS
      buf:put('<soap:Envelope xmlns:soap="', ns, '"><soap:Body>')
      write_element(buf, opts.root, v, ojson, 1, extra)
      buf:put("</soap:Body></soap:Envelope>")
    else
      write_element(buf, opts.root, v, ojson, 1, extra)
    end
  end)
  if not ok then
    if type(err) == "table" and err.conversion_error then
      return nil, err.conversion_error
    end
    error(err, 0)
  end
  return buf:get()
end


-- XML -> tree -----------------------------------------------------------------
-- An element: { q = qualified name, l = local name, ns = namespace URI or
-- nil, attrs = { { q, l, v }... } (in order, xmlns ones flagged `decl`),
-- kids = { elements... }, text = { parts... } }.

-- Parses a document. Returns the root element, or nil and a message.
function _M.parse(s)
  local root
  local stack, n = {}, 0
  local scopes = {} -- per depth: prefix -> uri declared there
  local failure

  local parser
  local function lookup(prefix, depth)
    for d = depth, 1, -1 do
      local sc = scopes[d]
      if sc and sc[prefix or ""] ~= nil then
        return sc[prefix or ""]
      end
    end
    if prefix == "xml" then
      return "http://www.w3.org/XML/1998/namespace"
    end
    return nil
  end

  local callbacks = {
    StartDoctypeDecl = function(p)
      failure = "DOCTYPE declarations are not allowed"
      p:stop()
    end,
    StartElement = function(p, name, attrs)
      if n >= MAX_DEPTH then
        failure = "the document is too deeply nested"
        p:stop()
        return
      end
      n = n + 1
      local list = {}
      local decls
      for _, an in ipairs(attrs) do
        local v = attrs[an]
        local l, prefix = local_name(an)
        local a = { q = an, l = l, v = v }
        if an == "xmlns" or prefix == "xmlns" then
          a.decl = true
          decls = decls or {}
          decls[an == "xmlns" and "" or l] = v
        end
        list[#list + 1] = a
      end
      scopes[n] = decls
      local l, prefix = local_name(name)
      local e = {
        q = name, l = l, ns = lookup(prefix, n), attrs = list, kids = {},
        text = {},
      }
      local parent = stack[n - 1]
      if parent then
        parent.kids[#parent.kids + 1] = e
      else
        root = e
      end
      stack[n] = e
    end,
    EndElement = function()
      stack[n] = nil
      scopes[n] = nil
      n = n - 1
    end,
    CharacterData = function(p, text)
      local e = stack[n]
      if e then
        e.text[#e.text + 1] = text
      end
    end,
  }

  parser = lxp.new(callbacks)
  local ok, msg, line, col = parser:parse(s)
  if ok then
    ok, msg, line, col = parser:parse()
  end
  pcall(parser.close, parser) -- raises when the parse failed
  if failure then
    return nil, failure
  end
  if not ok then
    return nil, fmt("%s (line %s, column %s)", tostring(msg), tostring(line),
                    tostring(col))
  end
  if not root then
    return nil, "no root element"
  end
  return root
end


-- tree -> JSON ----------------------------------------------------------------

local function trim(s)
  return match(s, "^%s*(.-)%s*$")
end


local function text_of(e)
  local t = e.text
  if #t == 0 then
    return ""
  end
  return trim(concat(t))
end
_M.text_of = text_of


-- The JSON text of an element's value (see the header).
local function write_value(buf, e, strip)
  local attrs = {}
  for _, a in ipairs(e.attrs) do
    if not (strip and a.decl) then
      attrs[#attrs + 1] = a
    end
  end
  local kids = e.kids
  local text = text_of(e)
  if #attrs == 0 and #kids == 0 then
    if text == "" then
      buf:put("null")
    else
      buf:put(encode_string(text))
    end
    return
  end
  buf:put("{")
  local first = true
  local seen = {}
  for _, a in ipairs(attrs) do
    local key = "@" .. (strip and a.l or a.q)
    if not seen[key] then
      seen[key] = true
      if not first then
        buf:put(",")
      end
      first = false
      buf:put(encode_string(key), ":", encode_string(a.v))
    end
  end
  -- children grouped by name, in order of first appearance
  local order, groups = {}, {}
  for _, k in ipairs(kids) do
    local key = strip and k.l or k.q
    local g = groups[key]
    if not g then
      g = {}
      groups[key] = g
      order[#order + 1] = key
    end
    g[#g + 1] = k
  end
  for _, key in ipairs(order) do
    if not seen[key] then
      seen[key] = true
      if not first then
        buf:put(",")
      end
      first = false
      buf:put(encode_string(key), ":")
      local g = groups[key]
      if #g == 1 then
        write_value(buf, g[1], strip)
      else
        buf:put("[")
        for i, k in ipairs(g) do
          if i > 1 then
            buf:put(",")
          end
          write_value(buf, k, strip)
        end
        buf:put("]")
      end
    end
  end
  if text ~= "" then
    if not first then
      buf:put(",")
    end
    buf:put('"#text":', encode_string(text))
  end
  buf:put("}")
end


-- {"<root name>": value}
function _M.document_json(root, strip)
  local buf = buffer.new()
  buf:put("{", encode_string(strip and root.l or root.q), ":")
  write_value(buf, root, strip)
  buf:put("}")
  return buf:get()
end


-- The value of an element alone (e.g. a SOAP Body: its children).
function _M.value_json(e, strip)
  local buf = buffer.new()
  write_value(buf, e, strip)
  return buf:get()
end


-- SOAP ------------------------------------------------------------------------

local function child(e, lname, ns)
  for _, k in ipairs(e.kids) do
    if k.l == lname and (ns == false or k.ns == ns) then
      return k
    end
  end
  return nil
end


-- For a SOAP envelope: version ("1.1" / "1.2"), its Body element (or nil).
function _M.soap_body(root)
  if root.l ~= "Envelope" then
    return nil
  end
  local ns = root.ns
  local version = ns == _M.SOAP11_NS and "1.1" or
                  ns == _M.SOAP12_NS and "1.2" or nil
  if not version then
    return nil
  end
  return version, child(root, "Body", ns)
end


-- The fault of a SOAP Body, as { code, message, detail (element) }, or nil.
function _M.soap_fault(version, body, strip)
  local ns = version == "1.2" and _M.SOAP12_NS or _M.SOAP11_NS
  local fault = child(body, "Fault", ns)
  if not fault then
    return nil
  end
  local code, message, detail
  if version == "1.1" then
    -- faultcode, faultstring and detail are unqualified
    local c = child(fault, "faultcode", false)
    local m = child(fault, "faultstring", false)
    code = c and text_of(c)
    message = m and text_of(m)
    detail = child(fault, "detail", false)
  else
    local c = child(fault, "Code", ns)
    local v = c and child(c, "Value", ns)
    code = v and text_of(v)
    local r = child(fault, "Reason", ns)
    local t = r and child(r, "Text", ns)
    message = t and text_of(t)
    detail = child(fault, "Detail", ns)
  end
  if code and strip then
    code = (local_name(code))
  end
  return { code = code, message = message, detail = detail }
end


return _M
