-- aggregator: a route answered by composing several upstream calls made in
-- parallel (Backend-for-Frontend). Urls and header values are templates,
-- compiled here so that a bad one is a config error.
local typedefs = require "kong.db.schema.typedefs"


-- siblings load through the plugin searcher in a worker; the config loader
-- (luagate check, specs) loads plugin schemas without it
local function sibling(name)
  local modname = "kong.plugins.aggregator." .. name
  local ok, m = pcall(require, modname)
  if ok then
    return m
  end
  local dir = debug.getinfo(1, "S").source:match("^@(.*)/[^/]*$") or "."
  m = dofile(dir .. "/" .. name .. ".lua")
  package.loaded[modname] = m
  return m
end

local template = sibling("template")

local fmt = string.format
local find = string.find
local sub = string.sub

local RESERVED = "_partial"


local function validate_url(s)
  local t, err = template.compile(s, true)
  if not t then
    return nil, err
  end
  -- the scheme, host and port are plain text: check them now
  local static = s
  local first = find(s, "$(", 1, true)
  if first then
    static = sub(s, 1, first - 1)
  end
  local u, uerr = typedefs.parse_url(static)
  if not u then
    return nil, uerr
  end
  if u.scheme ~= "http" then
    if u.scheme == "https" then
      return nil, "https upstreams are not supported by luagate's HTTP " ..
                  "client yet"
    end
    return nil, "unsupported scheme '" .. u.scheme .. "' (use http)"
  end
  if u.port and u.port > 65535 then
    return nil, "invalid port number"
  end
  return true
end


local function validate_header_value(s)
  local t, err = template.compile(s, false)
  if not t then
    return nil, err
  end
  if find(s, "[\r\n]") then
    return nil, "header values must not contain CR or LF"
  end
  return true
end


-- path_in_response: dot-separated non-empty segments
local function validate_path(s)
  if find(s, "^%.") or find(s, "%.$") or find(s, "%.%.") then
    return nil, "invalid path '" .. s .. "': empty segment"
  end
  return true
end


local function segments(s)
  local list = {}
  for seg in (s .. "."):gmatch("([^.]*)%.") do
    list[#list + 1] = seg
  end
  return list
end


-- Names unique; response paths neither equal nor one inside another.
local function validate_calls(calls)
  local names, paths = {}, {}
  for i, c in ipairs(calls) do
    if names[c.name] then
      return nil, fmt("calls[%d]: duplicate call name '%s'", i - 1, c.name)
    end
    names[c.name] = true
    local p = c.path_in_response or c.name
    local segs = segments(p)
    if segs[1] == RESERVED then
      return nil, fmt("calls[%d]: '%s' is reserved for the list of " ..
                      "failed optional calls", i - 1, RESERVED)
    end
    for _, other in ipairs(paths) do
      local a, b = p, other.path
      if a == b or sub(a, 1, #b + 1) == b .. "." or
         sub(b, 1, #a + 1) == a .. "." then
        return nil, fmt("calls[%d]: response path '%s' of call '%s' " ..
                        "overlaps '%s' of call '%s'", i - 1, a, c.name, b,
                        other.name)
      end
    end
    paths[#paths + 1] = { path = p, name = c.name }
  end
  return true
end


return {
  name = "aggregator",
  fields = {
    { protocols = typedefs.protocols_http },
    { config = {
        type = "record",
        fields = {
          { calls = {
              description = "The upstream calls made in parallel; their " ..
                            "answers compose the response.",
              type = "array",
              required = true,
              len_min = 1,
              custom_validator = validate_calls,
              elements = {
                type = "record",
                fields = {
                  { name = {
                      description = "The call's name: its key in the " ..
                                    "response (unless path_in_response " ..
                                    "is set) and in error messages.",
                      type = "string",
                      required = true,
                  } },
                  { url = {
                      description = "The url to call (http). The path " ..
                                    "and query may hold `$(...)` " ..
                                    "templates over headers, " ..
                                    "query_params, uri_captures, shared " ..
                                    "and request_id.",
                      type = "string",
                      required = true,
                      custom_validator = validate_url,
                  } },
                  { method = typedefs.http_method {
                      description = "The HTTP method of the call.",
                      required = true,
                      default = "GET",
                  } },
                  { headers = {
                      description = "Headers sent with the call (values " ..
                                    "may be templates); they override " ..
                                    "forwarded ones.",
                      type = "map",
                      keys = typedefs.header_name,
                      values = {
                        type = "string",
                        custom_validator = validate_header_value,
                      },
                  } },
                  { timeout_ms = {
                      description = "Timeout of the call (connect, send " ..
                                    "and read), in milliseconds.",
                      type = "integer",
                      required = true,
                      default = 5000,
                      between = { 1, 2147483646 },
                  } },
                  { required = {
                      description = "Whether a failure of this call fails " ..
                                    "the response (see status_policy); an " ..
                                    "optional call that fails is listed " ..
                                    "in `_partial`.",
                      type = "boolean",
                      required = true,
                      default = true,
                  } },
                  { path_in_response = {
                      description = "Dotted path of the call's answer in " ..
                                    "the response (`user.profile`); " ..
                                    "default: the call's name.",
                      type = "string",
                      custom_validator = validate_path,
                  } },
                },
              },
          } },
          { status_policy = {
              description = "How failed required calls decide the " ..
                            "response: `first-error` (the first in " ..
                            "order: 502, or 504 on a timeout), `worst` " ..
                            "(the highest status among them), " ..
                            "`ok-if-any` (200 while any call succeeded).",
              type = "string",
              required = true,
              default = "first-error",
              one_of = { "first-error", "worst", "ok-if-any" },
          } },
          { forward_headers = {
              description = "Client request headers passed on to every " ..
                            "call.",
              type = "array",
              default = {},
              elements = typedefs.header_name,
          } },
        },
      },
    },
  },
}
