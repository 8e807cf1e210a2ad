-- Writes a large declarative config for the config-swap benchmark:
--   luajit spec/bench/config_swap_gen.lua OUT.json|OUT.yml [SERVICES]
--          [ROUTES_PER_SERVICE] [CONSUMERS] [UPSTREAM_HOST:PORT]
-- SERVICES x ROUTES_PER_SERVICE routes (defaults 100 x 100), CONSUMERS
-- consumers (default 1,000) each with a key-auth credential, key-auth on
-- every tenth service, a global correlation-id, and a catch-all route
-- "/" on the first service (what the benchmark's clients request). The
-- format follows OUT's extension.
local out, nsvc, nroutes, ncons, upstream = ...
nsvc = tonumber(nsvc) or 100
nroutes = tonumber(nroutes) or 100
ncons = tonumber(ncons) or 1000
upstream = upstream or "127.0.0.1:1"
local uhost, uport = upstream:match("^(.-):(%d+)$")
assert(out, "usage: config_swap_gen.lua OUT.json|OUT.yml [S] [R] [C] [HOST:PORT]")

local doc = { services = {}, consumers = {}, plugins = {} }
for s = 1, nsvc do
  local svc = {
    name = "svc-" .. s, host = uhost, port = tonumber(uport),
    protocol = "http", routes = {},
  }
  for r = 1, nroutes do
    local route = {
      name = ("svc-%d-route-%d"):format(s, r),
      paths = { ("/s%d/r%d"):format(s, r) },
    }
    if r % 10 == 0 then
      route.hosts = { ("h%d.example.com"):format(r) }
      route.methods = { "GET", "POST" }
    elseif r % 25 == 1 then
      route.paths = { ("~/s%d/re%d/(?<id>\\d+)$"):format(s, r) }
    end
    svc.routes[#svc.routes + 1] = route
  end
  if s % 10 == 0 then
    svc.plugins = { { name = "key-auth", config = { key_names = { "apikey" } } } }
  end
  doc.services[#doc.services + 1] = svc
end
table.insert(doc.services[1].routes, { name = "root", paths = { "/" } })
for c = 1, ncons do
  doc.consumers[c] = {
    username = "user-" .. c,
    keyauth_credentials = { { key = ("key-%06d-secret"):format(c) } },
  }
end
doc.plugins[1] = { name = "correlation-id",
                   config = { header_name = "X-Req-Id", generator = "uuid#counter" } }

local function q(s) return '"' .. s:gsub('[\\"]', "\\%0") .. '"' end
local function is_arr(t) return t[1] ~= nil end
local function keys(t)
  local ks = {}
  for k in pairs(t) do ks[#ks + 1] = k end
  table.sort(ks)
  return ks
end

local buf = {}
local function w(s) buf[#buf + 1] = s end

local function json(v, ind)
  local t = type(v)
  if t == "table" then
    local pad = ("  "):rep(ind + 1)
    if is_arr(v) then
      w("[\n")
      for i, x in ipairs(v) do
        w(pad) json(x, ind + 1) w(i < #v and ",\n" or "\n")
      end
      w(("  "):rep(ind) .. "]")
    else
      w("{\n")
      local ks = keys(v)
      for i, k in ipairs(ks) do
        w(pad .. q(k) .. ": ") json(v[k], ind + 1) w(i < #ks and ",\n" or "\n")
      end
      w(("  "):rep(ind) .. "}")
    end
  elseif t == "string" then
    w(q(v))
  else
    w(tostring(v))
  end
end

local function yaml(v, ind)
  local pad = ("  "):rep(ind)
  if is_arr(v) then
    for _, x in ipairs(v) do
      if type(x) == "table" then
        w(pad .. "-\n") yaml(x, ind + 1)
      else
        w(pad .. "- " .. (type(x) == "string" and q(x) or tostring(x)) .. "\n")
      end
    end
  else
    for _, k in ipairs(keys(v)) do
      local x = v[k]
      if type(x) == "table" then
        w(pad .. k .. ":\n") yaml(x, ind + 1)
      else
        w(pad .. k .. ": " .. (type(x) == "string" and q(x) or tostring(x)) .. "\n")
      end
    end
  end
end

if out:match("%.ya?ml$") then
  w('_format_version: "3.0"\n')
  yaml(doc, 0)
else
  doc._format_version = "3.0"
  json(doc, 0) w("\n")
end
local f = assert(io.open(out, "w"))
f:write(table.concat(buf))
f:close()
