local config = require "luagate.config"

local FIXTURES = "spec/fixtures/config/"
local BUNDLED = { "plugins" }
-- the loader's own behaviour is tested with no plugin at all: an empty dir
local NO_PLUGINS
do
  local dir = os.tmpname()
  os.remove(dir)
  assert(os.execute("mkdir -p " .. dir))
  NO_PLUGINS = { dir }
end


local function fixture(name)
  return FIXTURES .. name
end


local function load(name, dirs)
  return config.load_file(fixture(name), { plugins_dirs = dirs or NO_PLUGINS })
end


local function yaml(text, dirs)
  return config.load_string(text, "yaml", "t.yml",
                            { plugins_dirs = dirs or NO_PLUGINS })
end


local temp_dirs = {}

-- a temp dir of fake plugins with permissive schemas
local function fake_plugins(names)
  local dir = os.tmpname()
  os.remove(dir)
  temp_dirs[#temp_dirs + 1] = dir
  assert(os.execute("mkdir -p " .. dir))
  for _, name in ipairs(names) do
    assert(os.execute("mkdir -p " .. dir .. "/" .. name))
    local h = assert(io.open(dir .. "/" .. name .. "/handler.lua", "w"))
    h:write('return { PRIORITY = 1000, VERSION = "0.1.0" }\n')
    h:close()
    local s = assert(io.open(dir .. "/" .. name .. "/schema.lua", "w"))
    s:write([[
local typedefs = require "kong.db.schema.typedefs"
return {
  name = "]] .. name .. [[",
  fields = {
    { protocols = typedefs.protocols_http },
    { config = { type = "record", fields = {
      { minute = { type = "number" } },
      { hour = { type = "number" } },
      { policy = { type = "string", default = "local" } },
      { redis = { type = "json" } },
      { claims_to_verify = { type = "set", elements = { type = "string" } } },
      { origins = { type = "array", elements = { type = "string" } } },
      { methods = { type = "array", elements = typedefs.http_method } },
      { max_age = { type = "number" } },
      { add = { type = "json" } },
    } } },
  },
}
]])
    s:close()
  end
  return dir
end


describe("luagate.config", function()
  lazy_teardown(function()
    os.execute("rm -rf " .. NO_PLUGINS[1])
    for _, dir in ipairs(temp_dirs) do
      os.execute("rm -rf " .. dir)
    end
  end)

  describe("users' example", function()
    it("with the bundled plugins, fails only for plugins not bundled yet", function()
      local conf, errs = load("users-example.yml", BUNDLED)
      local lfs = require "lfs"
      for _, e in ipairs(errs or {}) do
        local name = e:match("plugin '([^']+)' not enabled")
        assert.is_string(name, "an error other than a missing plugin: " .. e)
        assert.is_nil(lfs.attributes("plugins/" .. name),
                      "bundled, yet reported missing: " .. e)
      end
      if not errs then
        assert.is_table(conf)
      end
    end)

    it("reports each missing plugin at its path and line", function()
      local conf, errs = load("users-example.yml")
      assert.is_nil(conf)
      local f = fixture("users-example.yml")
      local none = "not enabled; known plugins: none found"
      assert.same({
        f .. ":10: services[0].plugins[0].name: plugin 'rate-limiting' "
          .. none,
        f .. ":12: services[0].plugins[1].name: plugin 'jwt' " .. none,
        f .. ":14: services[0].plugins[2].name: plugin 'cors' " .. none,
        f .. ":22: services[1].plugins[0].name: plugin 'rate-limiting' "
          .. none,
        f .. ":24: services[1].plugins[1].name: plugin 'key-auth' " .. none,
        f .. ":25: services[1].plugins[2].name: plugin 'request-transformer' "
          .. none,
      }, errs)
    end)

    describe("with the plugins present", function()
      local dir
      lazy_setup(function()
        dir = fake_plugins({ "rate-limiting", "jwt", "cors", "key-auth",
                             "request-transformer" })
      end)
      lazy_teardown(function()
        os.execute("rm -rf " .. dir)
      end)

      it("loads cleanly and normalizes", function()
        local conf, errs = load("users-example.yml", { dir })
        assert.is_nil(errs)
        assert.equal(2, #conf.services)
        local s1 = conf.services[1]
        assert.equal("user-service", s1.name)
        assert.equal("http", s1.protocol)
        assert.equal("user-service", s1.host)
        assert.equal(3000, s1.port)
        assert.is_nil(s1.path)
        assert.equal(5, s1.retries)
        assert.equal(60000, s1.connect_timeout)
        assert.equal(60000, s1.read_timeout)
        assert.equal(60000, s1.write_timeout)
        assert.is_true(s1.enabled)
        assert.matches("^%x+%-%x+%-%x+%-%x+%-%x+$", s1.id)

        assert.equal(2, #conf.routes)
        local r1, r2 = conf.routes[1], conf.routes[2]
        assert.equal(1, r1.service)
        assert.equal(2, r2.service)
        assert.same({ "/api/v1/users" }, r1.paths)
        assert.is_false(r1.strip_path)
        assert.is_true(r2.strip_path)
        assert.same({ "http", "https" }, r1.protocols)
        assert.equal(426, r1.https_redirect_status_code)
        assert.equal("v0", r1.path_handling)
        assert.equal(0, r1.regex_priority)
        assert.is_false(r1.preserve_host)

        assert.equal(6, #conf.plugins)
        local rl = conf.plugins[1]
        assert.equal("rate-limiting", rl.name)
        assert.equal(1, rl.service)
        assert.is_nil(rl.route)
        assert.is_nil(rl.consumer)
        assert.is_true(rl.enabled)
        assert.equal(100, rl.config.minute)
        assert.equal("redis", rl.config.policy)
        assert.same({ host = "redis", port = 6379 }, rl.config.redis)
        local ka = conf.plugins[5]
        assert.equal("key-auth", ka.name)
        assert.equal(2, ka.service)
        assert.equal("local", ka.config.policy) -- defaults filled
        assert.matches("^%x+$", conf.hash)
      end)

      it("lists known plugins when one is missing", function()
        local _, errs = yaml([[
_format_version: "3.0"
plugins:
  - name: nope
]], { dir })
        assert.same({ "t.yml:3: plugins[0].name: plugin 'nope' not enabled;"
                      .. " known plugins: cors, jwt, key-auth, rate-limiting,"
                      .. " request-transformer" }, errs)
      end)

      it("validates config with the plugin schema", function()
        local _, errs = yaml([[
_format_version: "3.0"
plugins:
  - name: cors
    config:
      max_age: soon
      methods: [get]
      extra: 1
]], { dir })
        assert.same({
          "t.yml:5: plugins[0].config.max_age: expected a number",
          "t.yml:6: plugins[0].config.methods[0]: invalid value: get",
          "t.yml:7: plugins[0].config.extra: unknown field",
        }, errs)
      end)
    end)
  end)

  describe("ids and hash", function()
    it("are stable across loads and change with the content", function()
      local a = assert(load("valid.lua"))
      local b = assert(load("valid.lua"))
      assert.equal(a.hash, b.hash)
      assert.equal(a.services[1].id, b.services[1].id)
      assert.equal(a.routes[1].id, b.routes[1].id)
      local c = assert(config.load_string([[
return { _format_version = "3.0",
  services = { { name = "lua-svc", host = "other.internal" } } }
]], "lua", "x.lua"))
      assert.not_equal(a.hash, c.hash)
      assert.equal(a.services[1].id, c.services[1].id) -- same name
    end)

    it("digests the file in runs (a slice point between two) as a whole",
       function()
      -- 5 runs of 64 KB and a bit
      local text = string.rep("0123456789abcdef", 20000) .. "tail"
      assert.equal(config.md5_hex(text .. "\0" .. "signature"),
                   config._md5_hex_parts(text, "\0", "signature"))
      assert.equal("900150983cd24fb0d6963f7d28e17f72",
                   config._md5_hex_parts("a", "", "bc"))
      assert.equal(config.md5_hex(""), config._md5_hex_parts(""))
    end)

    it("keeps given ids", function()
      local id = "6f1d7e2a-1b2c-4d3e-8f9a-0b1c2d3e4f5a"
      local conf = assert(yaml([[
_format_version: "3.0"
services:
  - id: ]] .. id .. [[

    host: a.example.com
]]))
      assert.equal(id, conf.services[1].id)
    end)
  end)

  describe("invalid configs report every error with its line", function()
    it("routes and services", function()
      local _, errs = load("invalid-routes.yml")
      local f = fixture("invalid-routes.yml")
      assert.same({
        f .. ":5: services[0].port: value should be between 0 and 65535",
        f .. ":6: services[0].retries: expected an integer",
        f .. ":13: services[0].routes[1].paths[1]: should start with: / " ..
          "(fixed path) or ~/ (regex path)",
        f .. ":14: services[0].routes[1].paths[2]: invalid regex: " ..
          "'/broken(regex' (PCRE returned: missing closing parenthesis " ..
          "at offset 13)",
        f .. ":15: services[0].routes[1].methods[0]: invalid value: get",
        f .. ":16: services[0].routes[1].hosts[0]: invalid wildcard: must " ..
          "have at most one wildcard",
        f .. ":18: services[0].routes[1].headers.Host: cannot contain " ..
          "'host' header, which must be specified in the 'hosts' attribute",
        f .. ":19: services[0].routes[1].https_redirect_status_code: " ..
          "expected one of: 426, 301, 302, 307, 308",
        f .. ":20: services[0].routes[1].bogus: unknown field",
        f .. ":21: services[0].routes[2]: must set one of 'methods', " ..
          "'hosts', 'headers', 'paths' when 'protocols' is 'http'",
        f .. ":25: routes[0].service: could not find service 'nope'",
        f .. ":27: routes[1].name: uniqueness violation: 'routes' entity " ..
          "with name set to 'ok-route' already declared",
        f .. ":30: unknown_entities: unknown field",
      }, errs)
    end)

    it("consumers, groups, upstreams, references", function()
      local _, errs = load("invalid-misc.yml")
      local f = fixture("invalid-misc.yml")
      assert.same({
        f .. ":3: services[0].name: invalid value 'bad name!': the only " ..
          "accepted ascii characters are alphanumerics or ., -, _, and ~",
        f .. ":5: services[1].host: required field missing",
        f .. ":8: consumers[0]: at least one of these fields must be " ..
          "non-empty: 'custom_id', 'username'",
        f .. ":10: consumers[2].username: uniqueness violation: " ..
          "'consumers' entity with username set to 'alice' already declared",
        f .. ":13: consumer_groups[0].consumers[1]: could not find " ..
          "consumer 'bob'",
        f .. ":15: plugins[0].name: plugin 'request-termination' not " ..
          "enabled; known plugins: none found",
        f .. ":16: plugins[0].route: could not find route 'missing-route'",
        f .. ":19: upstreams[0].algorithm: expected one of: " ..
          "consistent-hashing, least-connections, round-robin, latency",
        f .. ":21: upstreams[0].targets[0].target: Invalid target " ..
          "('10.0.0.1:99999'); invalid port number",
        f .. ":22: upstreams[0].targets[1].target: required field missing",
      }, errs)
    end)

    it("JSON", function()
      local _, errs = load("invalid.json")
      local f = fixture("invalid.json")
      assert.same({
        f .. ":7: services[0].port: expected an integer",
        f .. ":9: services[0].routes[0].paths[0]: should start with: / " ..
          "(fixed path) or ~/ (regex path)",
      }, errs)
    end)

    it("Lua (no lines)", function()
      local _, errs = load("invalid.lua")
      assert.same({ fixture("invalid.lua") ..
                    ": services[0].host: required field missing" }, errs)
    end)

    it("syntax errors", function()
      local _, errs = load("bad-syntax.yml")
      assert.same({ fixture("bad-syntax.yml") .. ":5: syntax error: did " ..
                    "not find expected ',' or ']'; while parsing a flow " ..
                    "sequence at line 4, column 12" }, errs)
      _, errs = load("bad-syntax.json")
      assert.same({ fixture("bad-syntax.json") .. ":5: syntax error: " ..
                    "unexpected character '\"', expected ',' or '}'" }, errs)
      _, errs = config.load_string("return {", "lua", "x.lua")
      assert.matches("^x.lua:1: syntax error: ", errs[1])
    end)

    it("_format_version", function()
      local _, errs = yaml("services: []\n")
      assert.same({ "t.yml:1: _format_version: required field missing" },
                  errs)
      _, errs = yaml("_format_version: 3.0\n")
      assert.same({ "t.yml:1: _format_version: expected one of: 1.1, 2.1, " ..
                    "3.0 (as a string)" }, errs)
    end)

    it("a missing file", function()
      local _, errs = config.load_file("/nonexistent.yml")
      assert.matches("^/nonexistent.yml: could not open config", errs[1])
    end)
  end)

  describe("formats", function()
    it("JSON with escapes and nested entities", function()
      local conf, errs = load("valid.json")
      assert.is_nil(errs)
      local s = conf.services[1]
      assert.same({ "caf\195\169", 'say "hi"' }, s.tags)
      assert.equal("https", s.protocol)
      assert.equal(443, s.port)
      assert.equal("/v1", s.path)
      local r = conf.routes[1]
      assert.same({ "~/items/(?<id>\\d+)$", "/items" }, r.paths)
      assert.same({ ["x-version"] = { "1", "2" } }, r.headers)
      assert.same({ { key = "s3cr3t", id = conf.consumers[1]
                      .keyauth_credentials[1].id } },
                  conf.consumers[1].keyauth_credentials)
      local up = conf.upstreams[1]
      assert.equal("10.0.0.1:8000", up.targets[1].target)
      assert.equal(100, up.targets[1].weight)
      assert.equal(50, up.targets[2].weight)
      assert.equal("round-robin", up.algorithm)
    end)

    it("Lua", function()
      local conf = assert(load("valid.lua"))
      assert.equal("/base", conf.services[1].path)
      assert.is_true(conf.routes[1].preserve_host)
      assert.same({ 1 }, conf.consumer_groups[1].consumers)
      assert.same({ 1 }, conf.consumers[1].groups)
    end)

    it("unknown extension: JSON then YAML", function()
      local conf = assert(config.load_string('{"_format_version": "3.0"}',
                                             nil, "x"))
      assert.equal("3.0", conf.format_version)
      conf = assert(config.load_string('_format_version: "3.0"\n', nil, "x"))
      assert.equal("3.0", conf.format_version)
    end)

    it("YAML anchors and merge keys", function()
      local conf = assert(yaml([[
_format_version: "3.0"
services:
  - &base {name: a, host: a.internal, retries: 1, read_timeout: 5}
  - <<: *base
    name: b
]]))
      assert.equal(1, conf.services[2].retries)
      assert.equal(5, conf.services[2].read_timeout)
      assert.equal("b", conf.services[2].name)
    end)

    it("1.1 / 2.1: regex-looking plain paths get ~", function()
      local conf = assert(load("legacy-2.1.yml"))
      assert.same({ "/plain/path-1.0_~x", "~/users/\\d+", "~/already" },
                  conf.routes[1].paths)
    end)

    it("_comment and _ignore at any level", function()
      local conf, errs = yaml([[
_format_version: "3.0"
_comment: top
services:
  - name: a
    _comment: here too
    _ignore: [anything]
    host: a.internal
]])
      assert.is_nil(errs)
      assert.is_nil(conf.services[1]._comment)
    end)
  end)

  describe("entities", function()
    it("top-level routes and plugins refer by name or id", function()
      local conf = assert(yaml([[
_format_version: "3.0"
services:
  - name: s
    host: s.internal
routes:
  - name: r
    service: s
    hosts: [example.com]
plugins:
  - name: x
    route: r
]], { fake_plugins({ "x" }) }))
      assert.equal(1, conf.routes[1].service)
      assert.equal(1, conf.plugins[1].route)
      assert.is_nil(conf.plugins[1].service)
    end)

    it("rejects a duplicate plugin on the same scope", function()
      local _, errs = yaml([[
_format_version: "3.0"
services:
  - name: s
    host: s.internal
    plugins:
      - name: x
      - name: x
]], { fake_plugins({ "x" }) })
      assert.same({ "t.yml:7: services[0].plugins[1]: plugin 'x' is already "
                    .. "configured for this scope (see services[0].plugins[0])"
                  }, errs)
    end)

    it("applies plugin scope restrictions (no_consumer)", function()
      local dir = fake_plugins({})
      os.execute("mkdir -p " .. dir .. "/auth")
      local f = io.open(dir .. "/auth.lua", "w")
      f:write([[
local typedefs = require "kong.db.schema.typedefs"
return { PRIORITY = 1, VERSION = "1.0", SCHEMA = { name = "auth",
  fields = { { consumer = typedefs.no_consumer },
             { config = { type = "record", fields = {} } } } } }
]])
      f:close()
      local _, errs = yaml([[
_format_version: "3.0"
consumers:
  - username: u
    plugins:
      - name: auth
]], { dir })
      assert.same({ "t.yml:5: consumers[0].plugins[0]: value must be null: "
                    .. "plugin 'auth' cannot be configured on a consumer" },
                  errs)
    end)

    it("service defaults follow the protocol", function()
      local conf = assert(yaml([[
_format_version: "3.0"
services:
  - {name: a, host: a.internal, protocol: https}
  - {name: b, url: "https://b.internal:8443/x"}
  - {name: c, url: "http://c.internal"}
]]))
      assert.equal(443, conf.services[1].port)
      assert.equal(8443, conf.services[2].port)
      assert.equal("/x", conf.services[2].path)
      assert.equal(80, conf.services[3].port)
    end)

    it("routes: hosts, headers, snis, methods", function()
      local conf, errs = yaml([[
_format_version: "3.0"
services:
  - name: a
    host: a.internal
    routes:
      - hosts: ["*.example.com", "example.*", "a.example.com:8080"]
        headers: {X-Foo: [a], x-foo: [b]}
        methods: [GET, POST]
        snis: [example.com]
        regex_priority: 5
]])
      assert.is_nil(errs)
      local r = conf.routes[1]
      assert.same({ "a", "b" }, r.headers["x-foo"])
      assert.equal(5, r.regex_priority)
      local _
      _, errs = yaml([[
_format_version: "3.0"
routes:
  - hosts: ["a.*.com"]
  - hosts: [a.com]
    protocols: [http]
    snis: [x.com]
]])
      assert.same({
        "t.yml:3: routes[0].hosts[0]: invalid wildcard: must be placed at "
          .. "leftmost or rightmost label",
        "t.yml:4: routes[1]: 'snis' can only be set when 'protocols' is "
          .. "'grpcs', 'https', 'tls' or 'tls_passthrough'",
      }, errs)
    end)

    it("register_entity validates a plugin dao nested under consumers",
       function()
      config.register_entity("test_credentials", {
        name = "test_credentials",
        fields = { { id = { type = "string" } },
                   { secret = { type = "string", required = true } } },
      }, "consumers")
      local _, errs = yaml([[
_format_version: "3.0"
consumers:
  - username: u
    test_credentials:
      - secret: s
      - {}
test_credentials:
  - consumer: u
    secret: t
  - consumer: ghost
    secret: t
]])
      assert.same({
        "t.yml:6: consumers[0].test_credentials[1].secret: required field "
          .. "missing",
        "t.yml:10: test_credentials[1].consumer: could not find consumer "
          .. "'ghost'",
      }, errs)
    end)

    it("refuses a top-level credential or target that names no owner",
       function()
      local _, errs = yaml([[
_format_version: "3.0"
consumers:
  - username: u
    keyauth_credentials:
      - key: nested
keyauth_credentials:
  - key: orphan
upstreams:
  - name: up
    targets:
      - target: 127.0.0.1:80
targets:
  - target: 127.0.0.1:81
]])
      assert.same({
        "t.yml:7: keyauth_credentials[0].consumer: required field missing",
        "t.yml:13: targets[0].upstream: required field missing",
      }, errs)
    end)
  end)
  describe("memory", function()
    it("a configuration is garbage once nothing references it", function()
      -- (a trace through a closure over one load keeps that closure, and
      -- what it reaches, as a constant: the loader's closures held every
      -- replaced configuration until their traces were flushed.) In a
      -- LuaJIT of its own: the specs above leave traces and blacklisted
      -- loops behind.
      local script = os.tmpname()
      local f = assert(io.open(script, "w"))
      f:write([=[
package.path = "./lua/?.lua;./lua/?/init.lua;" .. package.path
local config = require "luagate.config"
local routes, consumers = {}, {}
for i = 1, 400 do
  routes[i] = ('{"name": "r%d", "paths": ["/r%d"]}'):format(i, i)
end
for i = 1, 200 do
  consumers[i] = ('{"username": "u%d", "keyauth_credentials": ' ..
                  '[{"key": "k%d"}]}'):format(i, i)
end
local text = '{"_format_version": "3.0", "services": [{"name": "s", ' ..
  '"host": "example.com", "routes": [' .. table.concat(routes, ",") ..
  ']}], "consumers": [' .. table.concat(consumers, ",") .. ']}'
local weak = setmetatable({}, { __mode = "v" })
for i = 1, 3 do
  local conf = assert(config.load_string(text, "json", "t.json",
                                         { plugins_dirs = { arg[1] } }))
  weak[#weak + 1] = conf.routes[1]
  weak[#weak + 1] = conf.consumers[1]
end
collectgarbage()
collectgarbage()
local n = 0
for _ in pairs(weak) do
  n = n + 1
end
print("alive " .. n)
]=])
      f:close()
      local p = io.popen("luajit " .. script .. " " .. NO_PLUGINS[1] .. " 2>&1")
      local out = p:read("*a")
      p:close()
      os.remove(script)
      assert.equal("alive 0\n", out)
    end)
  end)
end)
