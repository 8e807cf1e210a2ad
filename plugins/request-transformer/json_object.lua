-- A JSON object edited at its top level, keeping everything else as it
-- was: the order of the properties, and the text of every value the
-- transformation does not touch (numbers keep their precision, empty
-- arrays stay arrays, nested documents are not re-encoded). Used by
-- request-transformer (request bodies) and response-transformer
-- (response bodies).
--
-- local obj = json_object.parse(text)   -- nil, err unless a JSON object
-- obj:has(name); obj:remove(name); obj:rename(old, new)
-- obj:set(name, value); obj:append(name, value)   -- value: string,
--                                                 -- number or boolean
-- obj:tostring()

local cjson = require "cjson.safe"

local type = type
local byte = string.byte
local sub = string.sub
local find = string.find
local concat = table.concat
local remove = table.remove
local setmetatable = setmetatable

local decode = cjson.decode
local encode = cjson.encode

local B_LBRACE, B_RBRACE = byte("{"), byte("}")
local B_LBRACKET = byte("[")
local B_QUOTE = byte('"')
local B_COMMA, B_COLON = byte(","), byte(":")

local _M = {}

local Object = {}
Object.__index = Object


local function skip_ws(s, i)
  return (find(s, "[^ \t\r\n]", i)) or (#s + 1)
end


-- The end (inclusive) of the string starting at i (its opening quote).
local function string_end(s, i)
  local j = i + 1
  while true do
    local q = find(s, '["\\]', j)
    if not q then
      return nil
    end
    if byte(s, q) == B_QUOTE then
      return q
    end
    j = q + 2 -- skip the escaped character
  end
end


-- The end (inclusive) of the value starting at i.
local function value_end(s, i)
  local c = byte(s, i)
  if c == B_QUOTE then
    return string_end(s, i)
  elseif c == B_LBRACE or c == B_LBRACKET then
    local depth = 0
    local j = i
    while true do
      local k = find(s, '[][{}"]', j)
      if not k then
        return nil
      end
      local ck = byte(s, k)
      if ck == B_QUOTE then
        k = string_end(s, k)
        if not k then
          return nil
        end
      elseif ck == B_LBRACE or ck == B_LBRACKET then
        depth = depth + 1
      else
        depth = depth - 1
        if depth == 0 then
          return k
        end
      end
      j = k + 1
    end
  end
  -- number, true, false, null
  local e = find(s, "[ \t\r\n,}%]]", i)
  return (e or (#s + 1)) - 1
end


-- Parses text that must be a JSON object. Returns the Object, or nil and
-- an error.
function _M.parse(text)
  local doc, err = decode(text) -- validates the whole document
  if doc == nil then
    return nil, err or "not JSON"
  end
  local i = skip_ws(text, 1)
  if type(doc) ~= "table" or byte(text, i) ~= B_LBRACE then
    return nil, "not a JSON object"
  end
  local self = setmetatable({ keys = {}, raw_keys = {}, values = {} },
                            Object)
  i = skip_ws(text, i + 1)
  if byte(text, i) == B_RBRACE then
    return self
  end
  while true do
    local ke = string_end(text, i)
    local raw_key = sub(text, i, ke)
    local key = decode(raw_key)
    i = skip_ws(text, ke + 1)
    if byte(text, i) ~= B_COLON then
      return nil, "invalid JSON object"
    end
    i = skip_ws(text, i + 1)
    local ve = value_end(text, i)
    if not ve then
      return nil, "invalid JSON object"
    end
    local value = sub(text, i, ve)
    if self.values[key] ~= nil then
      -- a repeated key: the last one wins, as when decoded
      self:remove(key)
    end
    local keys = self.keys
    keys[#keys + 1] = key
    self.raw_keys[key] = raw_key
    self.values[key] = value
    i = skip_ws(text, ve + 1)
    local c = byte(text, i)
    if c == B_RBRACE then
      return self
    elseif c ~= B_COMMA then
      return nil, "invalid JSON object"
    end
    i = skip_ws(text, i + 1)
  end
end


-- An empty object, for bodies that had none.
function _M.new()
  return setmetatable({ keys = {}, raw_keys = {}, values = {} }, Object)
end


local function index_of(keys, name)
  for i = 1, #keys do
    if keys[i] == name then
      return i
    end
  end
  return nil
end


function Object:has(name)
  return self.values[name] ~= nil
end


function Object:remove(name)
  if self.values[name] == nil then
    return false
  end
  remove(self.keys, index_of(self.keys, name))
  self.values[name] = nil
  self.raw_keys[name] = nil
  return true
end


-- Renames old to new where old was (a property named new goes away).
function Object:rename(old, new)
  local v = self.values[old]
  if v == nil or old == new then
    return false
  end
  self:remove(new)
  local keys = self.keys
  keys[index_of(keys, old)] = new
  self.values[old], self.raw_keys[old] = nil, nil
  self.values[new] = v
  return true
end


-- Sets name to value (a string, number or boolean), in place when it
-- exists, else at the end.
function Object:set(name, value)
  if self.values[name] == nil then
    local keys = self.keys
    keys[#keys + 1] = name
  end
  self.values[name] = encode(value)
end


-- Adds value to name's values: an array gets it at its end, another value
-- becomes an array of both, an absent one an array of value.
function Object:append(name, value)
  local v = encode(value)
  local cur = self.values[name]
  if cur == nil then
    local keys = self.keys
    keys[#keys + 1] = name
    self.values[name] = "[" .. v .. "]"
  elseif byte(cur, 1) == B_LBRACKET then
    local inner = sub(cur, 2, -2)
    if find(inner, "^[ \t\r\n]*$") then
      self.values[name] = "[" .. v .. "]"
    else
      self.values[name] = sub(cur, 1, -2) .. "," .. v .. "]"
    end
  else
    self.values[name] = "[" .. cur .. "," .. v .. "]"
  end
end


function Object:tostring()
  local out = {}
  local keys, raw_keys, values = self.keys, self.raw_keys, self.values
  for i = 1, #keys do
    local k = keys[i]
    out[i] = (raw_keys[k] or encode(k)) .. ":" .. values[k]
  end
  return "{" .. concat(out, ",") .. "}"
end


return _M
