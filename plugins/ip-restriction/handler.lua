-- ip-restriction: rejects clients by IP address, with Kong's contract: the
-- deny list is checked first, then the allow list (when one is set, an IP
-- it does not hold is rejected); a rejection is
-- kong.response.error(conf.status or 403, conf.message or
-- "IP address not allowed: <ip>").
--
-- The lists are parsed once per config into prefix matchers (weak-keyed by
-- the conf table, built in configure() or on first use):
--   IPv4: one hash set per prefix length, keyed by the masked address as a
--         32-bit integer; a lookup is one band() and one table index per
--         distinct prefix length.
--   IPv6: one tree per prefix length, four 32-bit words deep at most.
-- Per request the client address (kong.client.get_ip()) is converted by
-- inet_pton(3) into a reused buffer; no Lua string is parsed. IPv4-mapped
-- IPv6 addresses (::ffff:a.b.c.d), in the lists or as the client, are
-- matched as IPv4.

local ffi = require "ffi"
local bit = require "bit"

local kong = kong
local type = type
local error = error
local pcall = pcall
local ipairs = ipairs
local tostring = tostring
local tonumber = tonumber
local setmetatable = setmetatable
local find = string.find
local sub = string.sub
local match = string.match
local gmatch = string.gmatch
local band = bit.band
local bor = bit.bor
local lshift = bit.lshift
local rshift = bit.rshift
local tobit = bit.tobit
local ceil = math.ceil

pcall(ffi.cdef, [[
int inet_pton(int af, const char *src, void *dst);
]])

local C = ffi.C
local AF_INET = 2
local AF_INET6 = 10

local DEFAULT_STATUS = 403
local MSG_NOT_ALLOWED = "IP address not allowed: "
local MSG_NO_IP = "Cannot identify the client IP address, unix domain " ..
                  "sockets are not supported."


local IpRestrictionHandler = {
  PRIORITY = 990,
  VERSION = "3.10.0",
}


-- config parsing (once per config) -----------------------------------------

-- "a.b.c.d" -> 32-bit integer (bit.tobit range), or nil
local function parse_v4(s)
  local a, b, c, d = match(s, "^(%d+)%.(%d+)%.(%d+)%.(%d+)$")
  if not a then
    return nil
  end
  a, b, c, d = tonumber(a), tonumber(b), tonumber(c), tonumber(d)
  if a > 255 or b > 255 or c > 255 or d > 255 then
    return nil
  end
  return tobit(bor(lshift(a, 24), lshift(b, 16), lshift(c, 8), d))
end


-- appends the 16-bit groups of a colon-separated part (the last group may
-- be a dotted IPv4 address when `last`) to `out`; false when malformed
local function v6_groups(part, out, last)
  if part == "" then
    return true
  end
  local n = 0
  local items = {}
  for g in gmatch(part .. ":", "([^:]*):") do
    n = n + 1
    items[n] = g
  end
  for i = 1, n do
    local g = items[i]
    if last and i == n and find(g, ".", 1, true) then
      local w = parse_v4(g)
      if not w then
        return false
      end
      out[#out + 1] = band(rshift(w, 16), 0xffff)
      out[#out + 1] = band(w, 0xffff)
    elseif find(g, "^%x%x?%x?%x?$") then
      out[#out + 1] = tonumber(g, 16)
    else
      return false
    end
  end
  return true
end


-- IPv6 text -> four 32-bit words, or nil
local function parse_v6(s)
  local head, tail = s, nil
  local dc = find(s, "::", 1, true)
  if dc then
    head, tail = sub(s, 1, dc - 1), sub(s, dc + 2)
  end
  local g1, g2 = {}, {}
  if not v6_groups(head, g1, tail == nil) then
    return nil
  end
  if tail and not v6_groups(tail, g2, true) then
    return nil
  end
  local fill = 8 - #g1 - #g2
  if (tail and fill < 1) or (not tail and fill ~= 0) then
    return nil
  end
  local g = g1
  for _ = 1, fill do
    g[#g + 1] = 0
  end
  for i = 1, #g2 do
    g[#g + 1] = g2[i]
  end
  local w = {}
  for i = 1, 4 do
    w[i] = tobit(bor(lshift(g[2 * i - 1], 16), g[2 * i]))
  end
  return w
end


-- mask of the `len` leading bits of a 32-bit word (0..32)
local function mask_of(len)
  if len <= 0 then
    return 0
  end
  return tobit(lshift(-1, 32 - len))
end


local function add_v4(m, addr, len)
  local idx = m.v4_index[len]
  if not idx then
    idx = #m.v4_masks + 1
    m.v4_index[len] = idx
    m.v4_masks[idx] = mask_of(len)
    m.v4_sets[idx] = {}
  end
  m.v4_sets[idx][band(addr, m.v4_masks[idx])] = true
end


local function add_v6(m, w, len)
  if len == 0 then
    m.v6_any = true
    return
  end
  local group = m.v6_index[len]
  if not group then
    local depth = ceil(len / 32)
    group = {
      depth = depth,
      last_mask = mask_of(len - (depth - 1) * 32),
      root = {},
    }
    m.v6_index[len] = group
    m.v6[#m.v6 + 1] = group
  end
  local node = group.root
  for d = 1, group.depth - 1 do
    local nxt = node[w[d]]
    if not nxt then
      nxt = {}
      node[w[d]] = nxt
    end
    node = nxt
  end
  node[band(w[group.depth], group.last_mask)] = true
end


-- Builds a matcher from a list of "ip" / "ip/len" strings (validated by the
-- schema). Returns the matcher, or nil and the entry it could not parse.
local function new_matcher(list)
  local m = {
    v4_index = {}, v4_masks = {}, v4_sets = {},
    v6_index = {}, v6 = {}, v6_any = false,
  }
  for _, entry in ipairs(list) do
    local ip, len = match(entry, "^(.-)/(%d+)$")
    if ip then
      len = tonumber(len)
    else
      ip = entry
    end
    local v4 = parse_v4(ip)
    if v4 then
      add_v4(m, v4, len or 32)
    else
      local w = parse_v6(ip)
      if not w then
        return nil, entry
      end
      len = len or 128
      if w[1] == 0 and w[2] == 0 and w[3] == 0xffff and len >= 96 then
        add_v4(m, w[4], len - 96) -- ::ffff:a.b.c.d/len
      else
        add_v6(m, w, len)
      end
    end
  end
  m.n4 = #m.v4_masks
  m.n6 = #m.v6
  return m
end


local compiled = setmetatable({}, { __mode = "k" })


local function compile(conf)
  local c = compiled[conf]
  if c then
    return c
  end
  c = { allow = false, deny = false }
  for _, name in ipairs({ "deny", "allow" }) do
    local list = conf[name]
    if type(list) == "table" and #list > 0 then
      local m, bad = new_matcher(list)
      if not m then
        error("invalid ip or cidr range in config." .. name .. ": '" ..
              tostring(bad) .. "'")
      end
      c[name] = m
    end
  end
  compiled[conf] = c
  return c
end


-- per request ---------------------------------------------------------------

local addr = ffi.new("uint8_t[16]")


local function word_at(i)
  return bor(lshift(addr[i], 24), lshift(addr[i + 1], 16),
             lshift(addr[i + 2], 8), addr[i + 3])
end


-- The family (4 or 6) of `ip` and its words, or nil when it is not an IP
-- address (a unix socket peer).
local function client_words(ip)
  if C.inet_pton(AF_INET, ip, addr) == 1 then
    return 4, word_at(0)
  end
  local pct = find(ip, "%", 1, true)
  if pct then
    ip = sub(ip, 1, pct - 1) -- link-local zone ("fe80::1%eth0")
  end
  if C.inet_pton(AF_INET6, ip, addr) ~= 1 then
    return nil
  end
  local w1, w2, w3, w4 = word_at(0), word_at(4), word_at(8), word_at(12)
  if w1 == 0 and w2 == 0 and w3 == 0xffff then
    return 4, w4
  end
  return 6, w1, w2, w3, w4
end


local function match_v4(m, a)
  local masks, sets = m.v4_masks, m.v4_sets
  for i = 1, m.n4 do
    if sets[i][band(a, masks[i])] then
      return true
    end
  end
  return false
end


local words = { 0, 0, 0, 0 }

local function match_v6(m, w1, w2, w3, w4)
  if m.v6_any then
    return true
  end
  words[1], words[2], words[3], words[4] = w1, w2, w3, w4
  local groups = m.v6
  for i = 1, m.n6 do
    local g = groups[i]
    local node = g.root
    local depth = g.depth
    for d = 1, depth - 1 do
      node = node[words[d]]
      if not node then
        break
      end
    end
    if node and node[band(words[depth], g.last_mask)] then
      return true
    end
  end
  return false
end


local function matches(m, family, a, b, c, d)
  if family == 4 then
    return match_v4(m, a)
  end
  return match_v6(m, a, b, c, d)
end


function IpRestrictionHandler:configure(configs)
  if configs then
    for _, conf in ipairs(configs) do
      compile(conf)
    end
  end
end


function IpRestrictionHandler:access(conf)
  local c = compiled[conf] or compile(conf)
  local ip = kong.client.get_ip()
  local family, a, b, cc, d
  if ip then
    family, a, b, cc, d = client_words(ip)
  end
  if not family then
    return kong.response.error(DEFAULT_STATUS, MSG_NO_IP)
  end

  local deny = c.deny
  if deny and matches(deny, family, a, b, cc, d) then
    return kong.response.error(conf.status or DEFAULT_STATUS,
                               conf.message or (MSG_NOT_ALLOWED .. ip))
  end

  local allow = c.allow
  if allow and not matches(allow, family, a, b, cc, d) then
    return kong.response.error(conf.status or DEFAULT_STATUS,
                               conf.message or (MSG_NOT_ALLOWED .. ip))
  end
end


-- for unit specs
IpRestrictionHandler._new_matcher = new_matcher
IpRestrictionHandler._parse_v6 = parse_v6
IpRestrictionHandler._client_words = client_words
IpRestrictionHandler._matches = matches

return IpRestrictionHandler
