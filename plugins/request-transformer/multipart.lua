-- multipart/form-data bodies for request-transformer: parsed into parts
-- that keep their own headers and content, so that parts the config does
-- not touch (file uploads included) are sent on byte for byte.
--
-- local body = multipart.parse(raw, boundary)   -- or nil, err
-- body:get(name) / body:remove(name) / body:rename(old, new)
-- body:replace(name, value) / body:add(name, value)
-- body:tostring()

local ipairs = ipairs
local find = string.find
local sub = string.sub
local gsub = string.gsub
local match = string.match
local lower = string.lower
local concat = table.concat
local remove = table.remove
local insert = table.insert
local setmetatable = setmetatable

local _M = {}

local Body = {}
Body.__index = Body


-- The name parameter of a part's Content-Disposition header, and where
-- it sits in the head ({ first, last } of the value, quotes excluded).
local function disposition_name(head)
  local lhead = lower(head)
  local at = find(lhead, "content%-disposition%s*:")
  if not at then
    return nil
  end
  local line_end = find(head, "\r?\n", at) or (#head + 1)
  -- the `name` parameter, not `filename`
  local s, e = find(lhead, ";%s*name%s*=%s*", at)
  if not s or s > line_end then
    return nil
  end
  local vs = e + 1
  if sub(head, vs, vs) == '"' then
    local ve = find(head, '"', vs + 1, true)
    if not ve or ve > line_end then
      return nil
    end
    return sub(head, vs + 1, ve - 1), vs + 1, ve - 1
  end
  local v = match(head, "^[^;%s\r\n]*", vs)
  return v, vs, vs + #v - 1
end


-- Parses a body. Returns the Body, or nil and an error.
function _M.parse(raw, boundary)
  local self = setmetatable({ boundary = boundary, parts = {} }, Body)
  if raw == nil or raw == "" then
    return self
  end
  local delim = "--" .. boundary
  local pos = find(raw, delim, 1, true)
  if not pos then
    return nil, "no boundary in the body"
  end
  pos = pos + #delim
  while true do
    if sub(raw, pos, pos + 1) == "--" then
      return self -- closing delimiter; the epilogue is dropped
    end
    local eol = match(raw, "^[ \t]*\r?\n()", pos)
    if not eol then
      return nil, "invalid multipart body"
    end
    pos = eol
    local next_delim = find(raw, "\r\n" .. delim, pos - 2, true)
    local skip = 2
    if not next_delim then
      next_delim = find(raw, "\n" .. delim, pos - 1, true)
      skip = 1
    end
    if not next_delim then
      return nil, "invalid multipart body"
    end
    local part = sub(raw, pos, next_delim - 1)
    local hs, he = find(part, "\r?\n\r?\n")
    local head, content
    if find(part, "^\r?\n") then
      head, content = "", gsub(part, "^\r?\n", "", 1)
    elseif hs then
      head, content = sub(part, 1, hs - 1), sub(part, he + 1)
    else
      return nil, "invalid multipart body"
    end
    self.parts[#self.parts + 1] = {
      name = (disposition_name(head)),
      head = head,
      content = content,
    }
    pos = next_delim + skip + #delim
  end
end


local function quote_name(name)
  return (gsub(name, '[\r\n"]', { ['"'] = "%22", ["\r"] = "%0D",
                                  ["\n"] = "%0A" }))
end


local function simple_part(name, value)
  return {
    name = name,
    head = 'Content-Disposition: form-data; name="' .. quote_name(name) ..
           '"',
    content = value,
  }
end


function Body:get(name)
  for _, p in ipairs(self.parts) do
    if p.name == name then
      return p
    end
  end
  return nil
end


-- Removes every part named name; true if there was one.
function Body:remove(name)
  local parts = self.parts
  local found = false
  for i = #parts, 1, -1 do
    if parts[i].name == name then
      remove(parts, i)
      found = true
    end
  end
  return found
end


-- Renames the parts named old (their other headers and content kept).
function Body:rename(old, new)
  local found = false
  for _, p in ipairs(self.parts) do
    if p.name == old then
      local _, vs, ve = disposition_name(p.head)
      local q = quote_name(new)
      if sub(p.head, vs - 1, vs - 1) == '"' then
        p.head = sub(p.head, 1, vs - 1) .. q .. sub(p.head, ve + 1)
      else
        p.head = sub(p.head, 1, vs - 1) .. '"' .. q .. '"' ..
                 sub(p.head, ve + 1)
      end
      p.name = new
      found = true
    end
  end
  return found
end


-- Replaces the parts named name by one simple part with value, where the
-- first of them was; true if there was one.
function Body:replace(name, value)
  local parts = self.parts
  local first
  for i = #parts, 1, -1 do
    if parts[i].name == name then
      remove(parts, i)
      first = i
    end
  end
  if not first then
    return false
  end
  insert(parts, first, simple_part(name, value))
  return true
end


function Body:add(name, value)
  self.parts[#self.parts + 1] = simple_part(name, value)
end


function Body:tostring()
  local delim = "--" .. self.boundary
  local out = {}
  for _, p in ipairs(self.parts) do
    out[#out + 1] = delim
    out[#out + 1] = "\r\n"
    if p.head ~= "" then
      out[#out + 1] = p.head
      out[#out + 1] = "\r\n"
    end
    out[#out + 1] = "\r\n"
    out[#out + 1] = p.content
    out[#out + 1] = "\r\n"
  end
  out[#out + 1] = delim
  out[#out + 1] = "--\r\n"
  return concat(out)
end


return _M
