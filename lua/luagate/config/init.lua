-- Declarative config loading (Kong 3.x DB-less format) in YAML, JSON or
-- Lua: parse with line numbers, validate every entity and plugin config
-- with luagate.schema, resolve references, and return the normalized
-- config the C runtime reads. See docs/configuration.md.
--
--   local config = require "luagate.config"
--   local conf, errs = config.load_file("kong.yml", { plugins_dirs = {...} })
--
-- `errs` is an array of "FILE:LINE: path: message" strings, every error
-- found, in file order.

local type = type
local pairs = pairs
local ipairs = ipairs
local next = next
local tostring = tostring
local tonumber = tonumber
local load = load
local pcall = pcall
local select = select
local setmetatable = setmetatable
local getmetatable = getmetatable
local min = math.min
local open = io.open
local fmt = string.format
local find = string.find
local sub = string.sub
local match = string.match
local gsub = string.gsub
local lower = string.lower
local concat = table.concat
local sort = table.sort

local ffi = require "ffi"
local rshift = require("bit").rshift
local clone = require "table.clone" -- (OpenResty's LuaJIT: a shallow copy)

local Schema = require "luagate.schema"
local entities = require "luagate.config.entities"
local slice = require "luagate.slice"
local slice_point = slice.point
local plugins_registry = require "luagate.config.plugins"
local yaml_reader = require "luagate.config.yaml"
local json_reader = require "luagate.config.json"

local is_null = Schema.is_null
local deep_copy = Schema.deep_copy
local is_array = Schema.is_array
local child_path = yaml_reader.child_path


local _M = {}

_M.FORMAT_VERSIONS = { "1.1", "2.1", "3.0" }


-- Registers an entity kind (for plugin daos): see
-- luagate.config.entities.register. `schema` is a Kong-format schema
-- table or nil (kept as given); `parent` the kind it nests under.
function _M.register_entity(name, schema, parent, extra)
  return entities.register(name, schema, parent, extra)
end


-- digests --------------------------------------------------------------------

local crypto
do
  pcall(ffi.cdef, [[
    typedef struct evp_md_st EVP_MD;
    const EVP_MD *EVP_md5(void);
    int EVP_Digest(const void *data, size_t count, unsigned char *md,
                   unsigned int *size, const EVP_MD *type, void *impl);
  ]])
  pcall(ffi.cdef, [[
    typedef struct evp_md_ctx_st EVP_MD_CTX;
    EVP_MD_CTX *EVP_MD_CTX_new(void);
    void EVP_MD_CTX_free(EVP_MD_CTX *ctx);
    int EVP_DigestInit_ex(EVP_MD_CTX *ctx, const EVP_MD *type, void *impl);
    int EVP_DigestUpdate(EVP_MD_CTX *ctx, const void *d, size_t cnt);
    int EVP_DigestFinal_ex(EVP_MD_CTX *ctx, unsigned char *md, unsigned int *s);
  ]])
  local ok, lib = pcall(ffi.load, "crypto")
  if not ok then
    ok, lib = pcall(ffi.load, "libcrypto.so.3")
  end
  if ok then
    crypto = lib
  end
end


local HEX = {}
for i = 0, 255 do
  HEX[i] = fmt("%02x", i)
end
local md_buf = ffi.new("unsigned char[16]")
local md_size = ffi.new("unsigned int[1]")
local md_hex = {}
local md5_type


-- The 16 bytes of md_buf as 32 lowercase hex digits.
local function digest_hex()
  for i = 0, 15 do
    md_hex[i + 1] = HEX[md_buf[i]]
  end
  return concat(md_hex)
end


-- md5 of `s`, 32 lowercase hex digits. The output buffers are shared: no
-- allocation but the result (ids are derived with it, one per entity).
local function md5_hex(s)
  if not crypto then
    error("libcrypto is not available", 2)
  end
  md5_type = md5_type or crypto.EVP_md5()
  if crypto.EVP_Digest(s, #s, md_buf, md_size, md5_type, nil) ~= 1 then
    error("EVP_Digest() failed", 2)
  end
  return digest_hex()
end
_M.md5_hex = md5_hex


local HASH_RUN = 64 * 1024 -- bytes digested between two slice points

-- md5_hex of the concatenation of the strings given, digested in runs of
-- HASH_RUN bytes with a slice point between two (a 1 MB config file takes
-- about 2 ms in one piece), without the concatenation.
local function md5_hex_parts(...)
  if not crypto then
    error("libcrypto is not available", 2)
  end
  md5_type = md5_type or crypto.EVP_md5()
  local ctx = ffi.gc(crypto.EVP_MD_CTX_new(), crypto.EVP_MD_CTX_free)
  if ctx == nil or crypto.EVP_DigestInit_ex(ctx, md5_type, nil) ~= 1 then
    error("EVP_DigestInit_ex() failed", 2)
  end
  for i = 1, select("#", ...) do
    local part = select(i, ...)
    local p, n = ffi.cast("const char *", part), #part
    for off = 0, n - 1, HASH_RUN do
      if crypto.EVP_DigestUpdate(ctx, p + off, min(HASH_RUN, n - off)) ~= 1 then
        error("EVP_DigestUpdate() failed", 2)
      end
      slice_point()
    end
  end
  if crypto.EVP_DigestFinal_ex(ctx, md_buf, md_size) ~= 1 then
    error("EVP_DigestFinal_ex() failed", 2)
  end
  return digest_hex()
end
_M._md5_hex_parts = md5_hex_parts


-- A UUID-shaped id derived from `key` (name-based, version 3 layout), so
-- reloads of the same config keep the same ids.
-- (the digest's hex digits 1-12, "3", 14-16, the variant 8 + (digit 17
-- mod 4), 18-32, read straight from the digest's bytes)
local NIBBLE = {}
for i = 0, 15 do
  NIBBLE[i] = fmt("%x", i)
end
local id_parts = {}

local function derive_id(key)
  if not crypto then
    error("libcrypto is not available", 2)
  end
  key = "luagate:" .. key
  md5_type = md5_type or crypto.EVP_md5()
  if crypto.EVP_Digest(key, #key, md_buf, md_size, md5_type, nil) ~= 1 then
    error("EVP_Digest() failed", 2)
  end
  local b, p = md_buf, id_parts
  p[1], p[2], p[3], p[4] = HEX[b[0]], HEX[b[1]], HEX[b[2]], HEX[b[3]]
  p[5], p[6], p[7] = "-", HEX[b[4]], HEX[b[5]]
  p[8], p[9], p[10] = "-3", NIBBLE[b[6] % 16], HEX[b[7]]
  p[11], p[12] = "-", NIBBLE[8 + rshift(b[8], 4) % 4]
  p[13], p[14] = NIBBLE[b[8] % 16], HEX[b[9]]
  p[15] = "-"
  for i = 10, 15 do
    p[i + 6] = HEX[b[i]]
  end
  return concat(p, "", 1, 21)
end
_M.derive_id = derive_id


-- errors -------------------------------------------------------------------

local function new_errors(name, lines)
  local self = { name = name, lines = lines or {}, list = {} }

  -- the line of `path`, or of its nearest parent with a known line
  function self.line_of(path)
    local lines_ = self.lines
    local p = path
    while true do
      local l = lines_[p]
      if l then
        return l
      end
      if p == "" then
        return nil
      end
      local parent = match(p, "^(.*)%[%d+%]$") or match(p, "^(.*)%.[^%.]*$")
      p = parent or ""
    end
  end

  function self.add(path, msg, line)
    self.list[#self.list + 1] = {
      path = path,
      msg = msg,
      line = line or self.line_of(path),
      seq = #self.list + 1,
    }
  end

  function self.add_tree(prefix, tree)
    for _, e in ipairs(Schema.flatten_errors(tree, prefix)) do
      self.add(e.path, e.msg)
    end
  end

  function self.strings()
    local list = self.list
    sort(list, function(a, b)
      local la, lb = a.line or 0, b.line or 0
      if la ~= lb then
        return la < lb
      end
      return a.seq < b.seq
    end)
    local out = {}
    for i, e in ipairs(list) do
      local loc = self.name
      if e.line then
        loc = loc .. ":" .. e.line
      end
      if e.path and e.path ~= "" then
        out[i] = loc .. ": " .. e.path .. ": " .. e.msg
      else
        out[i] = loc .. ": " .. e.msg
      end
    end
    return out
  end

  return self
end


-- parsing --------------------------------------------------------------------

local function parse_lua(text, name)
  local chunk, err = load(text, "=" .. name, "t", {})
  if not chunk then
    return nil, tonumber(match(err, ":(%d+):")), gsub(err, "^[^:]*:%d+: ", "")
  end
  local ok, res = pcall(chunk)
  if not ok then
    res = tostring(res)
    return nil, tonumber(match(res, ":(%d+):")),
           (gsub(res, "^[^:]*:%d+: ", ""))
  end
  return res, {}
end


local function parse(text, format, name)
  if format == "yaml" then
    return yaml_reader.parse(text)
  elseif format == "json" then
    return json_reader.parse(text)
  elseif format == "lua" then
    return parse_lua(text, name)
  end
  -- unknown: JSON first, then YAML
  local doc, lines, msg = json_reader.parse(text)
  if doc ~= nil then
    return doc, lines
  end
  local ydoc, ylines, ymsg = yaml_reader.parse(text)
  if ydoc ~= nil then
    return ydoc, ylines
  end
  return nil, ylines or lines, ymsg or msg
end


-- The fast path of JSON: lua-cjson, in C. It accepts a few inputs our own
-- reader rejects (control characters in strings, "-.5"); those texts, and
-- anything cjson rejects, take the reader (which gives the error message
-- with its line). A decoded string with a control character may come from
-- a raw one (rejected) or an escape (accepted): the reader decides.
local cjson_fast
do
  local ok, cjson = pcall(require, "cjson")
  if ok and cjson.new then
    cjson_fast = cjson.new()
    cjson_fast.decode_invalid_numbers(false)
    pcall(cjson_fast.decode_max_depth, 1000)
  end
end

local CONTROL = "[%z\1-\31]"


-- In a worker's sliced load, a large document is decoded in pieces, a
-- slice point between two: the members of the top-level object and the
-- elements of their arrays, which luagate.json_c (runtime/src/json.c)
-- finds; cjson decodes each. A valid document gives the same tree as one
-- decode (json.c says why); nil means: decode it whole.
local json_c -- (in plain LuaJIT, once something required it: the specs)
do
  local ok, m = pcall(require, "luagate.json_c")
  json_c = ok and m or nil
end
local loaded = package.loaded
local PIECES_FROM = 64 * 1024 -- bytes: below, one decode is a slice anyway
local cjson_piece -- cjson_fast's settings; depth 2 less (the pieces' parents)
if cjson_fast then
  local cjson = require "cjson"
  cjson_piece = cjson.new()
  cjson_piece.decode_invalid_numbers(false)
  pcall(cjson_piece.decode_max_depth, 998)
end

-- An array element of the document whose text is the text of an element
-- the last load validated (`reusable[key][text]`, below): decode_pieces
-- and the YAML reader leave it undecoded, and the loader takes that load's
-- validated entities for it (Loader:reuse). An empty table: the walks of
-- the document pass it.
local REUSED = setmetatable({}, { __newindex = function() end })

local function decode_pieces(text, outline, reusable)
  local o = outline(text)
  if not o then
    return nil
  end
  slice_point()
  local decode = cjson_piece.decode
  local doc, raws = {}, {}
  local i = 1
  while o[i] do
    local key = decode(sub(text, o[i], o[i + 1]))
    local n = o[i + 4]
    local value
    if n < 0 then
      value = decode(sub(text, o[i + 2], o[i + 3]))
      i = i + 5
    else
      value = {}
      local texts = {}
      local known = reusable and type(key) == "string" and reusable[key]
      local e = i + 5
      for k = 1, n do
        local piece = sub(text, o[e], o[e + 1])
        texts[k] = piece
        if known and known[piece] then
          value[k] = REUSED
        else
          value[k] = decode(piece)
        end
        e = e + 2
        slice_point()
      end
      raws[key] = texts
      i = e
    end
    doc[key] = value
    slice_point()
  end
  return doc, raws
end


-- Whether every string of `v` (keys and values) is free of control
-- characters. (A slice point per table: it walks the whole document.)
local function plain_strings(v)
  slice_point()
  for k, x in pairs(v) do
    if type(k) == "string" and find(k, CONTROL) then
      return false
    end
    local t = type(x)
    if t == "string" then
      if find(x, CONTROL) then
        return false
      end
    elseif t == "table" and not plain_strings(x) then
      return false
    end
  end
  return true
end


_M._decode_pieces = decode_pieces


-- Returns the document, or nil (the reader decides); and, when decoded in
-- pieces, the pieces' texts: raws[member][i] (`reusable`: decode_pieces).
local function parse_json_fast(text, reusable)
  -- (a raw control character outside strings fails cjson, inside one it
  -- shows in the decoded string; "-." is searched plainly first: patterns
  -- scan slowly)
  if not cjson_fast or (find(text, "-.", 1, true) and
     (find(text, "^%s*%-%.") or find(text, "[%[,:%s]%-%."))) then
    return nil
  end
  local ok, doc, raws
  local jc = json_c or loaded["luagate.json_c"]
  if jc and cjson_piece and #text >= PIECES_FROM and slice.active() then
    ok, doc, raws = pcall(decode_pieces, text, jc.outline, reusable)
    if ok and doc == nil then -- not an object
      ok, doc = pcall(cjson_fast.decode, text)
    end
  else
    ok, doc = pcall(cjson_fast.decode, text)
  end
  if not ok or doc == nil then
    return nil
  end
  if type(doc) == "table" and not plain_strings(doc) then
    return nil
  end
  if type(doc) == "string" and find(doc, CONTROL) then
    return nil
  end
  return doc, raws
end


-- Parses without recording lines when that is faster: returns doc, lines,
-- msg, tracked (false: `lines` is empty; parse again with `parse` for the
-- lines of errors), raws (parse_json_fast; for YAML, the C reader's texts
-- of the top-level elements, luagate.config.yaml). Same documents and
-- syntax errors as `parse`. `reusable`: what the last sliced load
-- validated, below.
local function parse_fast(text, format, name, reusable)
  if format == "yaml" then
    -- (the texts of a large file's top-level elements, as JSON's pieces;
    -- the elements whose text is known are REUSED)
    local record = #text >= PIECES_FROM and slice.active()
    local known = reusable and reusable.format == "yaml" and reusable.kinds
    local doc, lines, more = yaml_reader.parse(text, true, record, known,
                                               REUSED)
    if doc == nil then
      return nil, lines, more, true -- (more: the message)
    end
    return doc, lines, nil, false, more
  elseif format == "json" or format == nil then
    local doc, raws = parse_json_fast(text, reusable and
                                      reusable.format == "json" and
                                      reusable.kinds)
    if doc ~= nil then
      return doc, {}, nil, false, raws
    end
  end
  local doc, lines, msg = parse(text, format, name)
  return doc, lines, msg, true
end


-- removes `_comment` and `_ignore` at every level
local function strip_meta(v)
  if type(v) ~= "table" or is_null(v) then
    return v
  end
  slice_point()
  v._comment = nil
  v._ignore = nil
  for _, x in pairs(v) do
    strip_meta(x)
  end
  return v
end


-- 1.1 / 2.1 configs: a plain path that looks like a regex gets "~"
-- (everything but unreserved characters, "/" and "%" is regex syntax)
local function migrate_paths(route)
  local paths = route.paths
  if type(paths) ~= "table" then
    return
  end
  local out = {}
  for i, p in ipairs(paths) do
    if type(p) == "string" and sub(p, 1, 1) ~= "~" and
       not find(p, "^[%w%.%-_~/%%]*$") then
      p = "~" .. p
    end
    out[i] = p
  end
  route.paths = out
end


-- loading --------------------------------------------------------------------

local SINGULAR = {
  services = "service", routes = "route", consumers = "consumer",
  consumer_groups = "consumer_group", upstreams = "upstream",
  certificates = "certificate", ca_certificates = "ca_certificate",
  plugins = "plugin", targets = "target", snis = "sni",
}

local TOP_LEVEL_META = {
  _format_version = true, _transform = true, _comment = true, _ignore = true,
  _luagate = true, -- luagate's own settings (LUAGATE_KEYS)
}

-- `_luagate: { plugins_legacy: true }`: settings that are luagate's, not
-- Kong's (docs/configuration.md, docs/kong-compatibility.md)
local LUAGATE_KEYS = {
  plugins_legacy = "boolean",
}


local function ref_value(v)
  if type(v) == "string" or type(v) == "number" then
    return tostring(v)
  end
  if type(v) == "table" then
    local x = v.id or v.name or v.username
    if type(x) == "string" then
      return x
    end
  end
  return nil
end


local Loader = {}
Loader.__index = Loader


function Loader:collect(kind, item, path, parent)
  slice_point()
  local entry = entities.registry[kind]
  local errs = self.errs
  if type(item) ~= "table" or is_null(item) or
     (next(item) ~= nil and is_array(item)) then
    errs.add(path, "expected a record")
    return
  end
  local input = {}
  for k, v in pairs(item) do
    input[k] = v
  end

  local rec = { kind = kind, path = path, parent = parent, links = {},
                refs = {} }

  local children = {}
  for _, child in ipairs(entities.children_of(kind)) do
    if input[child] ~= nil then
      children[#children + 1] = { kind = child, list = input[child] }
      input[child] = nil
    end
  end

  -- memberships between consumers and consumer groups
  if kind == "consumer_groups" and input.consumers ~= nil then
    rec.members = input.consumers
    input.consumers = nil
  elseif kind == "consumers" and input.groups ~= nil then
    rec.groups = input.groups
    input.groups = nil
  end

  for field, target in pairs(entry.refs) do
    local v = input[field]
    input[field] = nil
    if parent and parent.kind == target and entry.parents[target] == field then
      rec.links[field] = parent
    elseif not is_null(v) then
      rec.refs[field] = { value = v, path = child_path(path, field),
                          target = target }
    end
  end

  if kind == "routes" and self.migrate then
    migrate_paths(input)
  end
  if entry.pre then
    entry.pre(input)
  end

  if entry.key then
    local k = input[entry.key]
    if type(k) == "string" then
      rec.key = k
    end
  end
  if kind == "consumers" and not rec.key and type(input.custom_id) ==
     "string" then
    rec.custom_id = input.custom_id
  end
  if type(input.id) == "string" then
    rec.given_id = input.id
  end

  if kind == "plugins" then
    self:validate_plugin(rec, input)
  elseif entry.schema then
    local out, tree = entry.schema:validate(input)
    if tree then
      errs.add_tree(path, tree)
    else
      if entry.post then
        entry.post(out)
      end
      rec.out = out
    end
  else
    rec.out = deep_copy(input)
  end

  local list = self.recs[kind]
  list[#list + 1] = rec
  local captured = self.captured
  if captured then
    captured[#captured + 1] = rec
  end

  for _, c in ipairs(children) do
    local cpath = child_path(path, c.kind)
    if type(c.list) ~= "table" or is_null(c.list) or not is_array(c.list) then
      errs.add(cpath, "expected an array")
    else
      for i, x in ipairs(c.list) do
        self:collect(c.kind, x, child_path(cpath, i - 1), rec)
      end
    end
  end
end


-- Reuse across a worker's reloads -------------------------------------------
--
-- A worker's reload decodes a large JSON file in pieces (decode_pieces),
-- and reads a large YAML file with the texts of its top-level sequences'
-- elements (luagate.config.yaml, runtime/src/yaml.c: each behind a head
-- that says where it stands, so that the same text is the same element);
-- the entities of a top-level array element whose text is byte-identical
-- to one the last such load validated are that load's: the recs are made
-- again (paths, links to their parent, references) around the same
-- validated tables (rec.out). A template is what collect computed from the
-- element's text alone, given the format version, the registered entity
-- kinds (entities.generation) and, for plugins, the plugin's schema
-- source; an element whose collect added an error makes none. References,
-- ids, duplicates and everything after are resolved again for every
-- entity. The build copies the validated tables (output), but for routes
-- and services: a template's `out` is the entity the last build made,
-- which the running configuration holds, and `set` copies it before a
-- value the build sets differs. (What a template keeps besides its
-- element's validation, `out` and the id derived from a key, is recomputed
-- by every load, so a load that fails midway leaves nothing wrong behind.)

-- { format =, version =, generation =,
--   kinds = { [kind] = { [text] = templates } } }:
-- what the last sliced load with texts (a JSON file in pieces, a YAML file
-- the C reader read) validated
local reusable
local derived_ids -- { [id_key] = id } of that load

-- the refs of a reused rec without references (nothing adds to a rec's
-- refs after collect)
local NO_REFS = setmetatable({}, { __newindex = function()
  error("NO_REFS is read-only", 2)
end })

local REC_FIELDS = { "kind", "key", "custom_id", "given_id", "members",
                     "groups", "out", "plugin_name", "forbidden",
                     "config_refs" }


-- The templates of the recs collect made for one top-level element (in
-- the order it made them), `path` the element's path: each the rec's
-- fields but its path, parent, links and refs, and t_suffix (of its
-- path), t_parent (index), t_parent_field, t_refs, t_source (the plugin's
-- schema), t_id (a keyed entity's id, once derived). The fields a load
-- sets later are there as false, so that a clone of the template is a rec
-- of its final size.
local function templates(captured, path, registry)
  local n = #path
  local at = {}
  local list = {}
  for i, rec in ipairs(captured) do
    at[rec] = i
    local t = { t_suffix = sub(rec.path, n + 1), path = false, parent = false,
                links = false, refs = false, id = false, pos = false,
                e = false, reused = false, t = false, t_id = false }
    rec.t = t
    for _, f in ipairs(REC_FIELDS) do
      t[f] = rec[f]
    end
    local parent = rec.parent
    if parent then
      t.t_parent = at[parent]
      for field, l in pairs(rec.links) do
        if l == parent then
          t.t_parent_field = field
        end
      end
    end
    for field, ref in pairs(rec.refs) do
      t.t_refs = t.t_refs or {}
      t.t_refs[field] = ref
    end
    if rec.plugin_name ~= nil then
      t.t_source = registry.sources[rec.plugin_name]
    end
    list[i] = t
  end
  return list
end


-- Makes the recs of the top-level element `text` of `kind` at `path` from
-- the last load's templates. false when there are none or they no longer
-- apply (a plugin's schema changed): collect it.
function Loader:reuse(kind, text, path)
  local prev = self.reusable
  local list = prev and prev.kinds[kind] and prev.kinds[kind][text]
  if not list then
    return false
  end
  local registry = self.plugins
  for _, t in ipairs(list) do
    local name = t.plugin_name
    if name ~= nil and (not registry:schema(name) or
       registry.sources[name] ~= t.t_source) then
      return false
    end
  end
  local made = {}
  local recs = self.recs
  for i, t in ipairs(list) do
    slice_point()
    local rec = clone(t)
    rec.reused, rec.t = true, t
    rec.path = path .. t.t_suffix
    local links, refs = {}, t.t_refs and {} or NO_REFS
    rec.links, rec.refs = links, refs
    if t.t_parent then
      local parent = made[t.t_parent]
      rec.parent = parent
      links[t.t_parent_field] = parent
    end
    if t.t_refs then
      for field, ref in pairs(t.t_refs) do
        refs[field] = { value = ref.value, target = ref.target,
                        path = child_path(rec.path, field) }
      end
    end
    made[i] = rec
    local same = recs[rec.kind]
    same[#same + 1] = rec
  end
  self.reused[kind][text] = list
  self.nreused = self.nreused + #list
  return true
end


-- Element i of `kind`, of text `text`, which the document has as REUSED:
-- a JSON element decodes alone; a YAML one is read in the whole text
-- again, read once per load (only when the last load's templates no
-- longer apply, as after a change of a plugin's schema or of the format
-- version).
function Loader:element(kind, i, text)
  if self.format ~= "yaml" then
    return cjson_piece.decode(text)
  end
  if not self.whole then
    self.whole = assert(yaml_reader.parse(self.text, true))
  end
  return self.whole[kind][i]
end


-- Collects the top-level elements of `kind`; `texts` their texts when
-- the document was decoded in pieces.
function Loader:collect_list(kind, list, texts)
  local errs = self.errs
  local reused = texts and self.reused[kind]
  for i, item in ipairs(list) do
    local path = child_path(kind, i - 1)
    local text = texts and texts[i]
    if not (text and self:reuse(kind, text, path)) then
      if item == REUSED then -- (decoded in the load that made the templates)
        item = strip_meta(self:element(kind, i, text))
      end
      local keep = text and reused
      if keep then
        self.captured = {}
      end
      local nerrs = #errs.list
      self:collect(kind, item, path, nil)
      if keep then
        if #errs.list == nerrs and self.captured[1] then
          keep[text] = templates(self.captured, path, self.plugins)
        end
        self.captured = nil
      end
    end
  end
end


local BASE_PLUGIN_SCHEMA = Schema.new({
  name = "plugins",
  fields = entities.PLUGIN_BASE_FIELDS,
})


-- The config fields of a plugin that name entities of another kind:
-- luagate's `reference = "<kind>"` on a string field or an array of
-- strings directly under `config` (mtls-auth's ca_certificates), as
-- { field, kind } pairs, computed once per plugin schema.
local function config_references(pentry)
  local refs = pentry.config_refs
  if refs then
    return refs
  end
  refs = {}
  for _, item in ipairs(pentry.def.fields) do
    local fname, f = next(item)
    if fname == "config" and type(f.fields) == "table" then
      for _, citem in ipairs(f.fields) do
        local cname, cf = next(citem)
        if type(cf) == "table" and cf.type ~= "foreign" and
           type(cf.reference) == "string" then
          refs[#refs + 1] = { field = cname, kind = cf.reference }
        end
      end
    end
  end
  pentry.config_refs = refs
  return refs
end


function Loader:validate_plugin(rec, input)
  local errs = self.errs
  local name = input.name
  rec.plugin_name = name
  local pentry, perr
  if type(name) == "string" then
    pentry, perr = self.plugins:schema(name)
    if not pentry then
      errs.add(child_path(rec.path, "name"), perr)
    end
  end
  if pentry then
    rec.forbidden = pentry.forbidden
    rec.config_refs = config_references(pentry)
    local out, tree = pentry.schema:validate(input)
    if tree then
      errs.add_tree(rec.path, tree)
    else
      rec.out = out
    end
    return
  end
  -- unknown plugin: still check the entity fields
  local out, tree = BASE_PLUGIN_SCHEMA:validate(input)
  if tree then
    errs.add_tree(rec.path, tree)
  end
  local config = input.config
  if not is_null(config) and (type(config) ~= "table" or
     (next(config) ~= nil and is_array(config))) then
    errs.add(child_path(rec.path, "config"), "expected a record")
  end
  if pentry == nil and perr == nil and out then
    rec.out = out
  end
end


function Loader:index(kind, rec)
  local idx = self.index_of[kind]
  if rec.id then
    idx.by_id[rec.id] = idx.by_id[rec.id] or rec
  end
  if rec.key then
    idx.by_key[rec.key] = idx.by_key[rec.key] or rec
  end
  if rec.custom_id then
    idx.by_custom_id[rec.custom_id] = idx.by_custom_id[rec.custom_id] or rec
  end
end


function Loader:lookup(kind, v)
  local idx = self.index_of[kind]
  if type(v) == "table" then
    local id = v.id
    if type(id) == "string" then
      return idx.by_id[id]
    end
    local key = v.name or v.username
    if type(key) == "string" then
      return idx.by_key[key]
    end
    return nil
  end
  v = tostring(v)
  return idx.by_key[v] or idx.by_id[v]
end


-- natural key for ids of entities without a name
local function id_key(rec)
  local out = rec.out or {}
  local kind = rec.kind
  if rec.key then
    return kind .. ":" .. rec.key
  end
  local parent_id = ""
  for _, field in ipairs({ "service", "route", "consumer", "consumer_group",
                           "upstream", "certificate" }) do
    local l = rec.links[field]
    parent_id = parent_id .. ":" .. (l and l.id or "")
  end
  if rec.key then
    return kind .. ":" .. rec.key
  end
  if kind == "consumers" and rec.custom_id then
    return kind .. ":custom_id:" .. rec.custom_id
  end
  if kind == "plugins" then
    return kind .. ":" .. tostring(rec.plugin_name) .. parent_id .. ":" ..
           tostring(out.instance_name or "")
  end
  if kind == "targets" and type(out.target) == "string" then
    return kind .. parent_id .. ":" .. out.target
  end
  if (kind == "certificates" or kind == "ca_certificates") and
     type(out.cert) == "string" then
    return kind .. ":" .. md5_hex(out.cert)
  end
  -- never derive an id from a secret: it goes upstream (X-Credential-Identifier)
  if kind == "keyauth_credentials" or kind == "oauth2_credentials" or
     kind == "hmacauth_credentials" then
    return kind .. parent_id .. ":" .. rec.path
  end
  for _, f in ipairs({ "key", "username", "group", "client_id", "name" }) do
    if type(out[f]) == "string" then
      return kind .. parent_id .. ":" .. f .. ":" .. out[f]
    end
  end
  return kind .. ":" .. rec.path
end


function Loader:resolve()
  local errs = self.errs
  -- a sliced load in pieces takes the ids derived by the last one (an md5
  -- each) and keeps its own for the next
  local ids_before = self.reused and derived_ids
  local ids = self.reused and {}
  self.derived_ids = ids
  for _, kind in ipairs(entities.order) do
    local entry = entities.registry[kind]
    local seen_key, seen_id = {}, {}
    for _, rec in ipairs(self.recs[kind]) do
      slice_point()
      -- a credential (any kind under consumers but plugins) or a target
      -- given at the top level must name its consumer or upstream
      local owner = kind ~= "plugins" and (entry.parents.consumers or
                                           entry.parents.upstreams)
      if owner and not rec.links[owner] and not rec.refs[owner] then
        errs.add(child_path(rec.path, owner), "required field missing")
      end

      -- references to other entities
      for field, ref in pairs(rec.refs) do
        local target = self:lookup(ref.target, ref.value)
        if target then
          rec.links[field] = target
        else
          local shown = ref_value(ref.value) or "?"
          errs.add(ref.path, "could not find " .. (SINGULAR[ref.target] or
                             ref.target) .. " '" .. shown .. "'")
        end
      end

      -- duplicates
      if rec.key and entry.key then
        local other = seen_key[rec.key]
        if other then
          errs.add(child_path(rec.path, entry.key),
                   fmt("uniqueness violation: '%s' entity with %s set to " ..
                       "'%s' already declared", kind, entry.key, rec.key))
        else
          seen_key[rec.key] = rec
        end
      end

      -- (a keyed entity's id follows from its key alone: its template
      -- keeps it, t_id)
      local id = rec.given_id or rec.t_id
      if not id then
        local key = id_key(rec)
        id = ids_before and ids_before[key] or derive_id(key)
        if ids then
          ids[key] = id
        end
        if rec.key and rec.t then
          rec.t.t_id = id
        end
      end
      rec.id = id
      if seen_id[rec.id] then
        if rec.given_id then
          errs.add(child_path(rec.path, "id"),
                   fmt("uniqueness violation: '%s' entity with primary key " ..
                       "set to '%s' already declared", kind, rec.id))
        elseif kind == "plugins" then
          errs.add(rec.path, fmt("plugin '%s' is already configured for " ..
                                 "this scope (see %s)", tostring(
                                 rec.plugin_name), seen_id[rec.id].path))
        elseif not (rec.key and entry.key) then
          errs.add(rec.path, fmt("uniqueness violation: '%s' entity " ..
                                 "already declared (see %s)", kind,
                                 seen_id[rec.id].path))
        end
      else
        seen_id[rec.id] = rec
      end
      self:index(kind, rec)

      if kind == "plugins" and rec.out and rec.config_refs and
         rec.config_refs[1] then
        self:check_config_references(rec)
      end

      -- scope restrictions of plugins (typedefs.no_consumer...)
      if kind == "plugins" and rec.forbidden then
        for field in pairs(rec.forbidden) do
          if rec.links[field] then
            local p = rec.refs[field] and rec.refs[field].path or rec.path
            errs.add(p, fmt("value must be null: plugin '%s' cannot be " ..
                            "configured on a %s", tostring(rec.plugin_name),
                            gsub(field, "_", " ")))
          end
        end
      end
    end
  end

  -- services' ca_certificates name entities (Kong checks them when the
  -- service is saved)
  for _, rec in ipairs(self.recs.services) do
    local cas = rec.out and rec.out.ca_certificates
    if type(cas) == "table" then
      for i, id in ipairs(cas) do
        if not self:lookup("ca_certificates", id) then
          errs.add(child_path(child_path(rec.path, "ca_certificates"), i - 1),
                   "could not find ca_certificate '" .. tostring(id) .. "'")
        end
      end
    end
  end

  -- memberships
  for _, g in ipairs(self.recs.consumer_groups) do
    if g.members ~= nil then
      local mpath = child_path(g.path, "consumers")
      if type(g.members) ~= "table" or not is_array(g.members) then
        errs.add(mpath, "expected an array")
      else
        for i, m in ipairs(g.members) do
          local c = self:lookup("consumers", m)
          if c then
            self.memberships[#self.memberships + 1] = { g, c }
          else
            errs.add(child_path(mpath, i - 1), "could not find consumer '" ..
                     (ref_value(m) or "?") .. "'")
          end
        end
      end
    end
  end
  for _, c in ipairs(self.recs.consumers) do
    if c.groups ~= nil then
      local gpath = child_path(c.path, "groups")
      if type(c.groups) ~= "table" or not is_array(c.groups) then
        errs.add(gpath, "expected an array")
      else
        for i, m in ipairs(c.groups) do
          local g = self:lookup("consumer_groups", m)
          if g then
            self.memberships[#self.memberships + 1] = { g, c }
          else
            errs.add(child_path(gpath, i - 1),
                     "could not find consumer_group '" ..
                     (ref_value(m) or "?") .. "'")
          end
        end
      end
    end
  end
end


-- Every id a plugin's config names through a `reference` field must be
-- an entity of that kind in this config (those kinds are resolved before
-- plugins), else an error at the element's path.
function Loader:check_config_references(rec)
  local config = rec.out.config
  if type(config) ~= "table" then
    return
  end
  local cpath = child_path(rec.path, "config")
  for _, r in ipairs(rec.config_refs) do
    local idx = self.index_of[r.kind]
    local v = config[r.field]
    local fpath = child_path(cpath, r.field)
    local list = type(v) == "table" and v or { v }
    for i, x in ipairs(list) do
      if type(x) == "string" and not (idx and idx.by_id[x]) then
        self.errs.add(type(v) == "table" and child_path(fpath, i - 1) or
                      fpath, "could not find " .. (SINGULAR[r.kind] or
                      r.kind) .. " '" .. x .. "'")
      end
    end
  end
end


local CREDENTIAL_PARENT = "consumers"


-- A shallow copy of `t`.
local function copy(t)
  local c = clone(t)
  local mt = getmetatable(t)
  if mt then
    setmetatable(c, mt)
  end
  return c
end


-- Kinds whose entity is the validated table itself, completed in place
-- (id, positions; the runloop adds a route's phases): an entity reused
-- from an earlier load is the one that load built, shared with the
-- configuration it built as long as the values the build sets are the same
-- (set). The entities of other kinds are always copies of their validated
-- table, whose nested tables (groups, credentials, targets, a plugin's
-- config) the build fills again.
local IN_PLACE = { routes = true, services = true }


-- The entities of `recs` as a list (rec.e each); each rec learns its
-- position in it (rec.pos), which links name. (Plain functions, not
-- closures over the load: a trace through a closure keeps it as a
-- constant, and with it everything it reaches, the replaced configuration
-- included, until the trace is flushed.)
local function output(recs, kind)
  local list = {}
  local in_place = IN_PLACE[kind]
  for _, rec in ipairs(recs) do
    slice_point()
    local e = in_place and rec.out or copy(rec.out)
    list[#list + 1] = e
    rec.pos = #list
    rec.e = e
  end
  return list
end


-- Sets field `k` of the entity of `rec` (in `list`) to `v`. An entity
-- reused from an earlier load (the configuration that load built holds it
-- too) is copied first, unless it has `v` already; the copy is what the
-- next load compares with. (Two recs of one load may come from one
-- template, identical elements of a list: each compares with rec.out.)
local function set(list, rec, k, v)
  local e = rec.e
  if e[k] == v then
    return
  end
  if rec.reused and e == rec.out then
    e = copy(e)
    rec.e = e
    list[rec.pos] = e
    rec.t.out = e
  end
  e[k] = v
end


-- conf -> { [route position] = true when an earlier configuration holds
-- that route too } (the runloop copies such a route to change its phases)
_M.shared = setmetatable({}, { __mode = "k" })


-- The position of the entity `rec` links to by `field`, or nil.
local function link(rec, field)
  local l = rec.links[field]
  return l and l.pos or nil
end


function Loader:build()
  local conf = {
    format_version = self.format_version,
    transform = self.transform,
  }
  local recs = self.recs

  for _, kind in ipairs({ "certificates", "snis", "ca_certificates",
                          "services", "routes", "consumers",
                          "consumer_groups", "upstreams", "plugins" }) do
    local list = output(recs[kind], kind)
    conf[kind] = list
    if IN_PLACE[kind] then
      for _, rec in ipairs(recs[kind]) do
        set(list, rec, "id", rec.id)
      end
    else
      for _, rec in ipairs(recs[kind]) do
        rec.e.id = rec.id
      end
    end
  end

  for _, rec in ipairs(self.recs.snis) do
    rec.e.certificate = link(rec, "certificate")
    local cert = rec.e.certificate and conf.certificates[rec.e.certificate]
    if cert then
      cert.snis = cert.snis or {}
      cert.snis[#cert.snis + 1] = rec.e.name
    end
  end

  for _, rec in ipairs(self.recs.routes) do
    slice_point()
    set(conf.routes, rec, "service", link(rec, "service"))
  end
  local shared
  for i, rec in ipairs(self.recs.routes) do
    if rec.reused and rec.e == rec.out then
      shared = shared or {}
      shared[i] = true
    end
  end
  if shared then -- (for the runloop's phases)
    _M.shared[conf] = shared
  end

  -- a service's client certificate keeps Kong's shape ({ id = ... }); the
  -- runtime finds its PEM texts in conf.certificates by id
  for _, rec in ipairs(self.recs.services) do
    local l = rec.links.client_certificate
    local cc = rec.e.client_certificate
    if not (l and type(cc) == "table" and cc.id == l.id) then
      set(conf.services, rec, "client_certificate",
          l and { id = l.id } or nil)
    end
  end

  for _, up in ipairs(conf.upstreams) do
    up.targets = {}
  end
  for _, rec in ipairs(self.recs.targets) do
    local t = copy(rec.out)
    t.id = rec.id
    local u = link(rec, "upstream")
    t.upstream = u
    if u then
      local list = conf.upstreams[u].targets
      list[#list + 1] = t
    end
  end

  for _, g in ipairs(conf.consumer_groups) do
    g.consumers = {}
  end
  for _, c in ipairs(conf.consumers) do
    c.groups = {}
  end
  for _, m in ipairs(self.memberships) do
    local gi, ci = m[1].pos, m[2].pos
    local g, c = conf.consumer_groups[gi], conf.consumers[ci]
    if g and c then
      g.consumers[#g.consumers + 1] = ci
      c.groups[#c.groups + 1] = gi
    end
  end

  -- credentials (and any registered kind under consumers) stay with
  -- their consumer
  for _, kind in ipairs(entities.order) do
    local entry = entities.registry[kind]
    if kind ~= "plugins" and entry.parents[CREDENTIAL_PARENT] then
      for _, rec in ipairs(self.recs[kind]) do
        slice_point()
        local ci = link(rec, entry.parents[CREDENTIAL_PARENT])
        local e = copy(rec.out)
        e.id = rec.id
        e.consumer = nil
        if ci then
          local c = conf.consumers[ci]
          c[kind] = c[kind] or {}
          c[kind][#c[kind] + 1] = e
        end
      end
    end
  end

  for i, rec in ipairs(self.recs.plugins) do
    local p = conf.plugins[i]
    p.service = link(rec, "service")
    p.route = link(rec, "route")
    p.consumer = link(rec, "consumer")
    p.consumer_group = link(rec, "consumer_group")
    -- (the runloop adds the scope's ids to it)
    p.config = p.config and copy(p.config) or {}
  end

  -- the hash names the source: the file's bytes and the code of the
  -- plugin schemas that normalized it (a schema's new default changes the
  -- config as much as an edit of the file)
  conf.hash = md5_hex_parts(self.text, "\0", self.plugins:signature())
  return conf
end


-- Validates and normalizes a parsed document. Returns conf, or nil and
-- the error strings.
local function load_document(doc, lines, name, opts, text, copy, raws, format)
  local errs = new_errors(name, lines)
  if type(doc) ~= "table" or is_null(doc) or
     (next(doc) ~= nil and is_array(doc)) then
    errs.add("", "expected a record at the top level of the config")
    return nil, errs.strings()
  end
  -- parsed documents are ours: only a Lua config's tables are copied
  doc = strip_meta(copy and deep_copy(doc) or doc)

  local self = setmetatable({
    text = text,
    format = format,
    errs = errs,
    recs = {},
    index_of = {},
    memberships = {},
    plugins = plugins_registry.new(opts.plugins_dirs),
    transform = true,
    reused = raws and {}, -- the templates of this load, by kind and text
    nreused = 0, -- recs made from the last load's templates
  }, Loader)
  for _, kind in ipairs(entities.order) do
    if raws then
      self.reused[kind] = {}
    end
    self.recs[kind] = {}
    self.index_of[kind] = { by_id = {}, by_key = {}, by_custom_id = {} }
  end

  local version = doc._format_version
  if is_null(version) then
    errs.add("_format_version", Schema.MSG.REQUIRED, 1)
  elseif version ~= "1.1" and version ~= "2.1" and version ~= "3.0" then
    errs.add("_format_version", "expected one of: " ..
             concat(_M.FORMAT_VERSIONS, ", ") ..
             (type(version) ~= "string" and " (as a string)" or ""))
  else
    self.format_version = version
    self.migrate = version ~= "3.0"
    local r = raws and reusable
    if r and r.format == format and r.version == version and
       r.generation == entities.generation then
      self.reusable = r
    end
  end
  if not is_null(doc._transform) then
    if type(doc._transform) ~= "boolean" then
      errs.add("_transform", "expected a boolean")
    else
      self.transform = doc._transform
    end
  end

  local lg = doc._luagate
  local lg_out = {}
  if not is_null(lg) then
    if type(lg) ~= "table" or (next(lg) ~= nil and is_array(lg)) then
      errs.add("_luagate", "expected a record")
    else
      for k, v in pairs(lg) do
        local want = LUAGATE_KEYS[k]
        if not want then
          errs.add("_luagate." .. tostring(k), Schema.MSG.UNKNOWN)
        elseif type(v) ~= want then
          errs.add("_luagate." .. k, "expected a " .. want)
        else
          lg_out[k] = v
        end
      end
    end
  end

  local keys = {}
  for k in pairs(doc) do
    keys[#keys + 1] = tostring(k)
  end
  sort(keys)
  for _, k in ipairs(keys) do
    if not TOP_LEVEL_META[k] and not entities.registry[k] then
      errs.add(k, Schema.MSG.UNKNOWN, lines[k .. "?key"])
    end
  end

  for _, kind in ipairs(entities.order) do
    local list = doc[kind]
    if not is_null(list) then
      if type(list) ~= "table" or not is_array(list) then
        errs.add(kind, "expected an array")
      else
        self:collect_list(kind, list, raws and raws[kind])
      end
    end
  end

  self:resolve()

  if #errs.list > 0 then
    return nil, errs.strings()
  end
  local conf, berrs = self:build()
  if conf then
    conf.luagate = lg_out
    if raws then
      reusable = { format = format, version = self.format_version,
                   generation = entities.generation, kinds = self.reused }
      derived_ids = self.derived_ids
      local n = 0
      for _, list in pairs(self.recs) do
        n = n + #list
      end
      _M.last_reuse = { reused = self.nreused, entities = n }
    end
  end
  return conf, berrs
end


-- Loads a config from `text`. `format` is "yaml", "json", "lua" or nil
-- (JSON, then YAML); `name` names the source in errors. Returns conf, or
-- nil and an array of error strings.
function _M.load_string(text, format, name, opts)
  name = name or "config"
  opts = opts or {}
  if type(text) ~= "string" then
    return nil, { name .. ": could not load config: expected a string" }
  end
  if format == "yml" then
    format = "yaml"
  end
  local doc, lines, msg, tracked, raws = parse_fast(text, format, name,
                                                    reusable)
  if doc == nil then
    local loc = lines and (name .. ":" .. tostring(lines)) or name
    return nil, { loc .. ": syntax error: " .. tostring(msg) }
  end
  local copy = format == "lua"
  local conf, errs = load_document(doc, lines, name, opts, text, copy, raws,
                                   format or "json")
  if conf and not raws and slice.active() then
    reusable, derived_ids = nil, nil -- (the running config: not in pieces)
  end
  if conf or tracked then
    return conf, errs
  end
  -- invalid: parse again, recording the lines the errors cite
  doc, lines = parse(text, format, name)
  return load_document(doc, lines, name, opts, text, copy)
end


local EXTENSIONS = {
  yml = "yaml", yaml = "yaml", json = "json", lua = "lua",
}


-- Loads a config file; the format follows the extension (.yml/.yaml,
-- .json, .lua; others: JSON, then YAML).
function _M.load_file(path, opts)
  local f, err = open(path, "rb")
  if not f then
    return nil, { path .. ": could not open config: " .. tostring(err) }
  end
  local text = f:read("*a")
  f:close()
  local ext = match(path, "%.([%w]+)$")
  return _M.load_string(text, ext and EXTENSIONS[lower(ext)], path, opts)
end


return _M
