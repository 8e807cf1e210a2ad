-- YAML reader that keeps line numbers: builds the document from libyaml's
-- event stream (lyaml's low-level `yaml.parser`) and records, for every
-- node, the 1-based line where it starts, keyed by its path
-- ("services[0].routes[1].paths[0]"; map keys dotted, indexes 0-based).
-- Without lines (the fast path), luagate's own Lua states build the
-- document in C instead (runtime/src/yaml.c, ten times faster), falling
-- back to this reader for what the C one leaves to it.
--
-- Scalars resolve like lyaml.load (YAML 1.1 implicit types: null, bool,
-- int, float...); quoted scalars stay strings; `!!str`/`!!int`/... tags are
-- honoured; anchors, aliases and `<<` merge keys are supported. Nulls are
-- returned as `luagate.schema`'s NULL (cjson.null).

local type = type
local pairs = pairs
local ipairs = ipairs
local pcall = pcall
local tostring = tostring
local tonumber = tonumber
local match = string.match
local gsub = string.gsub
local find = string.find
local lower = string.lower

local yaml = require "yaml"
local implicit = require "lyaml.implicit"
-- the C reader (runtime/src/yaml.c), in luagate's own Lua states (and in
-- plain LuaJIT once something required it: the specs)
local has_c, yaml_c = pcall(require, "luagate.yaml_c")
yaml_c = has_c and yaml_c or nil
local loaded = package.loaded
local Schema = require "luagate.schema"
local slice_point = require("luagate.slice").point

local NULL = Schema.NULL


local _M = {}


local RESOLVERS = {
  implicit.null,
  implicit.octal,
  implicit.decimal,
  implicit.float,
  implicit.bool,
  implicit.inf,
  implicit.nan,
  implicit.hexadecimal,
  implicit.binary,
  implicit.sexagesimal,
  implicit.sexfloat,
}

local TAG_PREFIX = "tag:yaml.org,2002:"

-- words the implicit resolvers turn into null or a boolean (lowercased)
local WORDS = {
  null = true, ["true"] = true, ["false"] = true, yes = true, no = true,
  on = true, off = true, y = true, n = true,
}


-- A plain, untagged scalar that is not a simple word: YAML 1.1's implicit
-- types, in lyaml.load's order (also the C reader's resolver).
local function resolve_plain(value)
  for _, r in ipairs(RESOLVERS) do
    local v = r(value)
    if v ~= nil then
      if type(v) ~= "boolean" and type(v) ~= "number" then
        return NULL -- lyaml's own null
      end
      return v
    end
  end
  return value
end


local function resolve_scalar(ev)
  local value = ev.value
  local tag = ev.tag
  if tag then
    local t = tag:sub(#TAG_PREFIX + 1)
    if t == "str" then
      return value
    elseif t == "int" or t == "float" then
      return tonumber(value) or value
    elseif t == "bool" then
      return implicit.bool(value) or value == "true"
    elseif t == "null" then
      return NULL
    end
  end
  if ev.style ~= "PLAIN" then
    return value
  end
  -- a word (map keys mostly) is a string unless it spells null or a bool
  if find(value, "^[%a_][%w_]*$") and not WORDS[lower(value)] then
    return value
  end
  return resolve_plain(value)
end


local function child_path(prefix, key)
  if type(key) == "number" then
    return prefix .. "[" .. key .. "]"
  end
  key = tostring(key)
  if prefix == "" then
    return key
  end
  return prefix .. "." .. key
end
_M.child_path = child_path


local function merge_into(map, src)
  if type(src) ~= "table" then
    return
  end
  if src[1] ~= nil then
    for _, s in ipairs(src) do
      merge_into(map, s)
    end
    return
  end
  for k, v in pairs(src) do
    if map[k] == nil then
      map[k] = v
    end
  end
end


-- The reader over lyaml's events (see _M.parse).
local function parse_events(text, no_lines)
  local next_event = yaml.parser(text)
  local anchors = {}
  local lines = {}
  local track = not no_lines
  local doc
  local done = false

  local function fail(msg)
    error({ yaml_error = msg }, 0)
  end

  local read_node -- forward

  -- reads the node that begins with event `ev` at `path`
  read_node = function(ev, path)
    local line = ev.start_mark.line + 1
    if track and lines[path] == nil then
      lines[path] = line
    end
    local t = ev.type
    if t == "SCALAR" then
      local v = resolve_scalar(ev)
      if ev.anchor then
        anchors[ev.anchor] = v
      end
      return v
    elseif t == "ALIAS" then
      local v = anchors[ev.anchor]
      if v == nil then
        fail("unknown anchor '" .. tostring(ev.anchor) .. "' at line " ..
             line)
      end
      return v
    elseif t == "SEQUENCE_START" then
      local seq = {}
      if ev.anchor then
        anchors[ev.anchor] = seq
      end
      local i = 0
      while true do
        local e = next_event()
        if e.type == "SEQUENCE_END" then
          break
        end
        seq[i + 1] = read_node(e, track and child_path(path, i) or path)
        i = i + 1
      end
      return seq
    elseif t == "MAPPING_START" then
      slice_point() -- a worker's sliced reload may yield here
      local map = {}
      if ev.anchor then
        anchors[ev.anchor] = map
      end
      local merges
      while true do
        local e = next_event()
        if e.type == "MAPPING_END" then
          break
        end
        local key
        if e.type == "SCALAR" then
          key = resolve_scalar(e)
          if key == NULL then
            key = "null"
          end
        else
          key = read_node(e, path .. "?key")
          if type(key) == "table" then
            fail("complex mapping keys are not supported (line " ..
                 (e.start_mark.line + 1) .. ")")
          end
        end
        local vev = next_event()
        if key == "<<" and (e.style == "PLAIN") then
          merges = merges or {}
          merges[#merges + 1] = read_node(vev, path)
        else
          if track then
            local kpath = child_path(path, key)
            lines[kpath .. "?key"] = e.start_mark.line + 1
            map[key] = read_node(vev, kpath)
          else
            map[key] = read_node(vev, path)
          end
        end
      end
      if merges then
        for _, m in ipairs(merges) do
          merge_into(map, m)
        end
      end
      return map
    end
    fail("unexpected event " .. tostring(t))
  end

  local ok, err = pcall(function()
    while not done do
      local ev = next_event()
      if ev == nil or ev.type == "STREAM_END" then
        done = true
      elseif ev.type == "DOCUMENT_START" then
        local e = next_event()
        if e.type ~= "DOCUMENT_END" then
          doc = read_node(e, "")
          next_event() -- DOCUMENT_END
        end
        done = true -- only the first document is read
      end
    end
  end)

  if not ok then
    local msg = type(err) == "table" and err.yaml_error or tostring(err)
    local line = tonumber(match(msg, "line: (%d+)")) or
                 tonumber(match(msg, "line (%d+)"))
    msg = gsub(msg, " at document: %d+, line: %d+, column: %d+", "")
    msg = gsub(gsub(msg, "%s+$", ""), "\n", "; ")
    msg = gsub(msg, "line: (%d+), column: (%d+)", "line %1, column %2")
    return nil, line, msg
  end

  if doc == nil then
    doc = NULL
  end
  return doc, lines
end


-- for the specs: both readers, and the resolver they share
_M._parse_events = parse_events
_M._resolve_plain = resolve_plain


-- Parses `text`. Returns doc, lines; or nil, line, message on a syntax
-- error. With `no_lines`, `lines` stays empty (no paths are built: the
-- fast path of a config that turns out valid; see luagate.config), and in
-- luagate's own Lua states the C reader builds the document when it can
-- (runtime/src/yaml.c: plain configs without anchors, merge keys or tags).
-- Events the C reader reads between two slice points (a large file in a
-- worker's sliced load: a 1.5 MB config is about 40 ms of events).
local STEP_EVENTS = 200
local STEP_MIN_BYTES = 65536

local function decode_c(yaml_c, text, record, known, reused)
  if #text < STEP_MIN_BYTES or not yaml_c.decoder then
    return yaml_c.decode(text, resolve_plain, NULL)
  end
  local dec = yaml_c.decoder(text, resolve_plain, NULL, record, known, reused)
  local r, raws = dec and dec:step(STEP_EVENTS)
  while r == true do
    slice_point()
    r, raws = dec:step(STEP_EVENTS)
  end
  return r, raws
end


-- With `record` as well (a worker's sliced load of a text of 64 KB or
-- more), a document the C reader read comes with the texts of the
-- elements of its top-level sequences: raws[key][i] (runtime/src/yaml.c,
-- "record"); the same text gives the same element. The Lua reader gives
-- none. With `known` (known[key][text] for the elements the caller has)
-- and `reused`, such an element whose text is known is not built: it is
-- `reused` in the document.
function _M.parse(text, no_lines, record, known, reused)
  local c = no_lines and (yaml_c or loaded["luagate.yaml_c"])
  if c then
    local doc, raws = decode_c(c, text, record, known, reused)
    if doc ~= nil then
      return doc, {}, raws
    end
  end
  return parse_events(text, no_lines)
end


return _M
