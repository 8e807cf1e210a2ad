-- luacheck: no max line length
-- luacheck: globals ngx kong compat_template_loaded_at
-- The ngx API and the library modules plugins require, checked from a
-- request: access answers a JSON map of check -> value.
local cjson = require "cjson.safe"

local H = { PRIORITY = 400, VERSION = "1.0.0" }

local function try(out, name, fn)
  local ok, v = pcall(fn)
  out[name] = ok and (v == nil and cjson.null or v) or ("ERROR: " .. tostring(v))
end

function H:access(conf)
  local out = {}
  local mock_port = tonumber(kong.request.get_query_arg("mock"))
  try(out, "uri_args", function()
    local a = ngx.req.get_uri_args()
    return a.x .. "," .. type(a.flag) .. "," .. #a.multi
  end)
  try(out, "method", function() return ngx.req.get_method() end)
  try(out, "headers", function()
    return ngx.req.get_headers()["x-test"] .. "," .. ngx.req.get_headers().x_test
  end)
  try(out, "body", function()
    ngx.req.read_body()
    return ngx.req.get_body_data()
  end)
  try(out, "start_time", function() return type(ngx.req.start_time()) end)
  try(out, "set_uri_args", function()
    ngx.req.set_uri_args({ z = "1" })
    ngx.req.set_header("X-Set", "by-ngx")
    return ngx.var.args
  end)
  try(out, "http_time", function() return ngx.http_time(0) end)
  try(out, "cookie_time", function() return ngx.cookie_time(0) end)
  try(out, "parse_http_time", function()
    return ngx.parse_http_time("Thu, 01 Jan 1970 00:01:40 GMT")
  end)
  try(out, "re_match_res", function()
    local res = {}
    local m = ngx.re.match("abc-123", [[(\w+)-(?<num>\d+)]], "jo", nil, res)
    return (m == res) and (res[1] .. ":" .. res.num) or "different table"
  end)
  try(out, "ngx_lua_version", function() return ngx.config.ngx_lua_version end)
  try(out, "phase", function() return ngx.get_phase() end)
  try(out, "vars", function()
    return table.concat({ ngx.var.request_uri, ngx.var.server_port,
      tostring(ngx.var.server_addr), tostring(ngx.var.https),
      tostring(ngx.var.hostname ~= nil), ngx.var.request }, "|")
  end)
  try(out, "shared_dicts", function()
    local names = {}
    for _, n in ipairs({ "kong", "kong_db_cache", "kong_rate_limiting_counters",
                         "kong_core_db_cache", "kong_locks",
                         "kong_cluster_events", "kong_healthchecks" }) do
      names[#names + 1] = ngx.shared[n] and n or ("missing " .. n)
    end
    return table.concat(names, ",")
  end)

  -- cosockets
  if mock_port then
    try(out, "cosocket", function()
      local sock = ngx.socket.tcp()
      sock:settimeouts(1000, 1000, 1000)
      assert(sock:connect("127.0.0.1", mock_port))
      local reused = sock:getreusedtimes()
      assert(sock:send("GET /anything/cosock HTTP/1.1\r\nHost: x\r\n\r\n"))
      local status = assert(sock:receive("*l"))
      local reader = sock:receiveuntil("\r\n\r\n")
      local head = assert(reader())
      local len = tonumber(head:lower():match("content%-length:%s*(%d+)"))
      local first = assert(sock:receive(1))
      local rest = assert(sock:receive(len - 1))
      -- sslhandshake exists; on a socket never connected: nil, "closed"
      local ssl_ok, ssl_err = ngx.socket.tcp():sslhandshake()
      assert(sock:setkeepalive(10000, 5))
      local s2 = ngx.socket.tcp()
      s2:settimeout(1000)
      assert(s2:connect("127.0.0.1", mock_port))
      local reused2 = s2:getreusedtimes()
      s2:close()
      return table.concat({ status, first, tostring(#rest == len - 1),
        tostring(reused), tostring(reused2), tostring(ssl_ok),
        tostring(ssl_err) }, "|")
    end)
  end

  -- library modules
  try(out, "searchpath", function()
    return package.searchpath("resty.lrucache", package.path)
  end)
  try(out, "searchpath_http", function()
    return package.searchpath("resty.http", package.path)
  end)
  try(out, "penlight", function()
    local stringx = require "pl.stringx"
    return stringx.strip("  pl  ") .. "," .. tostring(stringx.startswith("abc", "ab"))
  end)
  try(out, "jwt_parser", function()
    local jwt = require "kong.plugins.jwt.jwt_parser"
    return type(jwt)
  end)
  try(out, "utils", function()
    local utils = require "kong.tools.utils"
    local parts = utils.split("a,b,c", ",")
    return table.concat({ tostring(utils.is_valid_uuid(utils.uuid())),
      #parts, utils.strip("  x "), #utils.random_string(),
      utils.table_merge({ a = 1 }, { b = 2 }).b,
      utils.deep_copy({ t = { 1 } }).t[1],
      utils.shallow_copy({ 5 })[1],
      utils.encode_args({ b = "2", a = "x y" }),
      tostring(utils.load_module_if_exists("no.such.module")) }, "|")
  end)
  try(out, "tools", function()
    local uuid = require "kong.tools.uuid"
    local tbl = require "kong.tools.table"
    local s = require "kong.tools.string"
    return table.concat({ #uuid.uuid(), tostring(tbl.table_contains({ 1, 2 }, 2)),
      s.strip(" y ") }, "|")
  end)
  try(out, "constants", function()
    local constants = require "kong.constants"
    return constants.HEADERS.CONSUMER_ID .. "," ..
           constants.HEADERS.ANONYMOUS .. "," ..
           tostring(constants.BUNDLED_PLUGINS["key-auth"])
  end)
  try(out, "meta", function()
    local meta = require "kong.meta"
    return meta._NAME .. "," .. meta._VERSION .. "," ..
           meta._VERSION_TABLE.major
  end)
  try(out, "sandbox", function()
    local sandbox = require "kong.tools.sandbox"
    local ok = sandbox.validate_function("return function() return 1 end")
    local fn = sandbox.parse("return function(a) return a * 2 end")
    local bad = sandbox.validate_function("return 5")
    return tostring(ok) .. "," .. fn(21) .. "," .. tostring(bad)
  end)
  try(out, "kong_db", function()
    return type(kong.db) .. "," .. type(kong.db.consumers) .. "," ..
           kong.db.consumers:cache_key("abc")
  end)
  try(out, "core_cache", function()
    return tostring(kong.core_cache ~= nil and kong.cache ~= nil)
  end)
  try(out, "events", function()
    return type(kong.worker_events.register) .. "," ..
           type(kong.cluster_events.broadcast)
  end)
  kong.ctx.shared.compat_ngx = out
end

function H:header_filter(conf)
  local h = ngx.resp.get_headers()
  ngx.header["X-Resp-Ctype"] = h["content-type"]
  local out = kong.ctx.shared.compat_ngx
  out.resp_headers = h["content-type"]
  out.upstream_status = ngx.var.upstream_status
  ngx.header["Content-Length"] = nil
  ngx.header["Content-Type"] = "application/json"
end

function H:body_filter(conf)
  -- replace the upstream's body with the checks (with what it received)
  local ctx = ngx.ctx
  ctx.up = (ctx.up or "") .. (ngx.arg[1] or "")
  if not ngx.arg[2] then
    ngx.arg[1] = nil
    return
  end
  local out = kong.ctx.shared.compat_ngx
  out.upstream_echo = cjson.decode(ctx.up)
  ngx.arg[1] = cjson.encode(out)
end

return H
