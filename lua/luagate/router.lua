-- Router compilation, Lua half: turns config.routes into the flat list of
-- router entries, in rank order, that runtime/src/router.c builds its match
-- structures from (gw_router_build). Entry 1 beats entry 2 when both match.
--
-- Ranking follows Kong's `traditional_compatible` flavor, as documented in
-- Kong's routing guide ("Route priority", gateway/routing/traditional) and
-- kong/router/transform.lua get_priority. Most significant first:
--
--   1. match weight: one point per set field among methods, hosts, headers,
--      paths, snis (Kong also counts sources, destinations: stream only).
--      The docs list "methods, host, headers, snis"; transform.lua also
--      counts paths, and a route with more fields must not be shadowed by a
--      looser one, so paths count here too.
--   2. routes with hosts, all plain, before the others: routes with a
--      wildcard host ("*.example.com", "example.*") and routes without
--      hosts (transform.lua's PLAIN_HOST_ONLY bit is set only for a route
--      that has hosts: a host-only route beats a path-only route).
--   3. more headers first.
--   4. regex paths before plain ones; regexes by regex_priority, higher
--      first; plain paths by length, longer first (a route without paths
--      ranks as a plain path of length 0).
--   5. Kong's docs say equal priorities are resolved in an undefined order
--      ("not defined which of the matching routes will be used"); unlike the
--      `traditional` flavor there is no created_at tie-break. We make the
--      order total and stable: route order in the file, then path order.
--
-- Each route becomes one entry per path ("if a route contains prefix or
-- regular expression paths, the priority of the route will be calculated
-- separately for each of the paths"); a route without paths gives one entry
-- whose path is nil. Paths starting with "~" are PCRE regexes anchored at the
-- start of the path; the "~" is stripped here.
--
-- Entry shape (all arrays are fresh tables, never shared with config):
--   { route = <0-based index into config.routes>, path = "/x" | nil,
--     regex = bool, hosts = { "a.com", "*.b.com", "c.*", "d.com:8000" } | nil,
--     methods = { "GET", ... } | nil,
--     headers = { { name = "x-foo", values = { "a", "b" } }, ... } | nil,
--     snis = { "a.com", "*.b.com", "c.*" } | nil (lowercase; TLS only),
--     http_only = true | nil (protocols without https: TLS requests skip it) }
-- A field is nil when the route does not constrain it. A non-nil but empty
-- array (every value of the field was unusable) never matches; a route whose
-- paths are all unusable gets no entry. Regexes are not validated here (the
-- config schema does it; gw_router_build fails on one that does not compile).

local type = type
local ipairs = ipairs
local pairs = pairs
local next = next
local sort = table.sort
local byte = string.byte
local sub = string.sub
local find = string.find
local upper = string.upper
local lower = string.lower

local unpack = unpack

local TILDE = byte("~")
local slice = require "luagate.slice"
local slice_point = slice.point

local _M = {}

-- A table with at least one element, or nil (empty tables mean "absent").
local function nonempty(t)
  if type(t) == "table" and next(t) ~= nil then
    return t
  end
  return nil
end

-- Copies the string values of an array, transformed by fn; skips the rest.
local function strings(arr, fn)
  local out = {}
  for _, v in ipairs(arr) do
    if type(v) == "string" and v ~= "" then
      out[#out + 1] = fn and fn(v) or v
    end
  end
  return out
end

local function has_wildcard(hosts)
  for _, h in ipairs(hosts) do
    if find(h, "*", 1, true) then
      return true
    end
  end
  return false
end

-- headers map { name = { values } } -> sorted list of { name=, values= }.
local function header_list(map)
  local list = {}
  for name, v in pairs(map) do
    if type(name) == "string" and name ~= "" then
      if type(v) == "string" then
        v = { v }
      end
      list[#list + 1] = {
        name = lower(name),
        values = type(v) == "table" and strings(v) or {},
      }
    end
  end
  sort(list, function(a, b) return a.name < b.name end)
  return list
end

-- The sort keys of the entries being ranked, by entry number: the
-- arrays of the compile running (a compile outside a sliced load runs
-- whole, and puts back those of a sliced one it interrupted).
local W, PH, NH, RX, RP, PL, RI, PI

-- Strict total order of entry numbers on the sort keys described at the
-- top of the file (a route and its path are unique).
local function before(a, b)
  if W[a] ~= W[b] then
    return W[a] > W[b]
  end
  if PH[a] ~= PH[b] then
    return PH[a]
  end
  if NH[a] ~= NH[b] then
    return NH[a] > NH[b]
  end
  if RX[a] ~= RX[b] then
    return RX[a]
  end
  if RX[a] then
    if RP[a] ~= RP[b] then
      return RP[a] > RP[b]
    end
  elseif PL[a] ~= PL[b] then
    return PL[a] > PL[b]
  end
  if RI[a] ~= RI[b] then
    return RI[a] < RI[b]
  end
  return PI[a] < PI[b]
end

-- Appends to `entries` the entry of one path of route `r` (compile's
-- scratch: the route's fields), its sort keys under its number. (A plain
-- function: a closure made per route kept the route loop out of the JIT
-- compiler.)
local function add(entries, r, path, regex, pidx)
  local hosts, methods, headers, snis = r.hosts, r.methods, r.headers, r.snis
  local k = #entries + 1
  W[k], PH[k], NH[k], RX[k] = r.weight, r.plain_hosts, r.nheaders, regex
  RP[k], PL[k] = r.rp, (not regex and path) and #path or 0
  RI[k], PI[k] = r.ridx, pidx
  entries[k] = {
    route = r.ridx - 1,
    path = path,
    regex = regex,
    -- each entry gets its own copies so C never sees shared tables
    hosts = hosts and strings(hosts),
    methods = methods and strings(methods),
    headers = headers and header_list(r.route_headers),
    http_only = r.http_only or nil,
    snis = snis and strings(snis),
  }
end

-- Compiles config.routes into router entries in rank order (see the top of
-- the file). Never raises on odd input: routes or fields of the wrong type
-- are skipped. Returns the array of entries (possibly empty).
function _M.compile(config)
  local routes = type(config) == "table" and config.routes
  if type(routes) ~= "table" then
    return {}
  end
  local saved = { W, PH, NH, RX, RP, PL, RI, PI }
  W, PH, NH, RX, RP, PL, RI, PI = {}, {}, {}, {}, {}, {}, {}, {}
  local entries = {}
  local r = {} -- the route's fields that add reads

  for i, route in ipairs(routes) do
    slice_point()
    if type(route) == "table" then
      local methods = nonempty(route.methods)
      local hosts = nonempty(route.hosts)
      local headers = nonempty(route.headers)
      local paths = nonempty(route.paths)
      local snis = nonempty(route.snis)
      snis = snis and strings(snis, lower)

      methods = methods and strings(methods, upper)
      hosts = hosts and strings(hosts, lower)
      headers = headers and header_list(headers)

      local weight = (methods and 1 or 0) + (hosts and 1 or 0)
                     + (headers and 1 or 0) + (paths and 1 or 0)
                     + (snis and 1 or 0)
      local plain_hosts = hosts ~= nil and not has_wildcard(hosts)
      local nheaders = headers and #headers or 0
      local rp = route.regex_priority
      rp = type(rp) == "number" and rp or 0
      -- https requests skip routes without https; http requests still
      -- match https-only routes, which answer with their redirect (Kong)
      local http_only = false
      if type(route.protocols) == "table" then
        http_only = true
        for _, proto in ipairs(route.protocols) do
          if proto == "https" or proto == "grpcs" then
            http_only = false
          end
        end
      end

      -- (a route's shared fields once: add copies its arrays per entry)
      r.weight, r.plain_hosts, r.nheaders, r.rp = weight, plain_hosts,
                                                 nheaders, rp
      r.ridx, r.hosts, r.methods, r.headers = i, hosts, methods, headers
      r.route_headers, r.http_only, r.snis = route.headers, http_only, snis
      if paths then
        for j, p in ipairs(paths) do
          if type(p) == "string" and p ~= "" then
            if byte(p, 1) == TILDE then
              add(entries, r, sub(p, 2), true, j)
            else
              add(entries, r, p, false, j)
            end
          end
        end
        -- paths set but none usable: the route gets no entry (it never
        -- matches) rather than silently widening to every path
      else
        add(entries, r, nil, false, 1)
      end
    end
  end

  local n = #entries
  local order = {}
  for k = 1, n do
    order[k] = k
  end
  slice.sort(order, before)
  local out = {}
  for k = 1, n do
    out[k] = entries[order[k]]
  end
  W, PH, NH, RX, RP, PL, RI, PI = unpack(saved, 1, 8)
  return out
end

return _M
