-- The outline of a JSON document (runtime/src/json.c, module
-- "luagate.json_c") and the decode in pieces a worker's sliced load uses for
-- large JSON configs (luagate.config): the same tree as one cjson decode
-- for every valid document, and a refusal for every invalid one. The module
-- is built here as a shared object from the same source the gateway links.
local helpers = require "spec.helpers"
local cjson = require "cjson"

local fmt = string.format
local jc = helpers.c_module("json") -- luagate.config finds it loaded

local config = require "luagate.config"
local slice = require "luagate.slice"
local decode_pieces = config._decode_pieces

local same = require("luagate.admin.diff").equal

local function pieces(text)
  return decode_pieces(text, jc.outline)
end

-- counts the outlines luagate.config asks for while f runs
local function outlines_during(f)
  local outline, n = jc.outline, 0
  jc.outline = function(text)
    n = n + 1
    return outline(text)
  end
  local ok, a, b = pcall(f)
  jc.outline = outline
  assert(ok, a)
  return n, a, b
end

-- config.load_string(text) run as a worker's sliced load runs it
local function load_sliced(text, opts)
  local co = coroutine.create(function()
    slice.begin()
    local conf, err = config.load_string(text, "json", "big.json", opts)
    slice.finish()
    return conf, err
  end)
  local ok, conf, err = coroutine.resume(co)
  while ok and coroutine.status(co) == "suspended" do
    ok, conf, err = coroutine.resume(co)
  end
  assert(ok, conf)
  return conf, err
end

-- what one decode gives, or nil when cjson refuses the text
local function whole(text)
  local ok, doc = pcall(cjson.decode, text)
  return ok and doc or nil
end

local VALID = {
  '{}',
  ' \n{ } \t',
  '{"a":1}',
  '{"a":[]}',
  '{"a":[ ] , "b" : [1 ,2, 3 ] }',
  '{"a":[1],"a":[2,3]}', -- a repeated key keeps its last value
  '{"a":{"x":[1,{"y":"]}"}]},"b":null,"c":true,"d":false,"e":-1.5e3}',
  '{"a\\"b":"c\\\\","k\\u00e9y":["\\"[{","}]\\\\"]}',
  '{"a":[null,null,{"b":[[],[[]]]}],"":""}',
  '{"_format_version":"3.0",' ..
    '"services":[{"name":"s","routes":[{"paths":["/"]}]}],' ..
    '"consumers":[{"username":"u1"},{"username":"u2"}]}',
}

-- not an object: no outline, the caller decodes the text whole
local NOT_OBJECT = { '', '[]', '"a"', '  null ', '1' }

local INVALID = {
  '{"a":1,}',
  '{"a":1 "b":2}',
  '{"a" 1}',
  '{a:1}',
  '{"a":[1,]}',
  '{"a":[1 2]}',
  '{"a":[1}',
  '{"a":"unterminated}',
  '{"a":1} x',
  '{"a":1}}',
  '{"a":{"b":1]}',
  '{"a":[{"b":1]]}',
  '{"a":tru}',
  '{"a":[1,[2,}]]}',
}

describe("luagate.json_c", function()
  it("outlines the top-level members and their arrays' elements", function()
    local text = '{"a": [1, "x,]"], "b" :{"c":[2]}}'
    local o = jc.outline(text)
    assert.same({ 2, 4, 7, 16, 2, 8, 8, 11, 15, 19, 21, 24, 32, -1 }, o)
    assert.equal('"a"', text:sub(o[1], o[2]))
    assert.equal('[1, "x,]"]', text:sub(o[3], o[4]))
    assert.equal('"x,]"', text:sub(o[8], o[9]))
    assert.equal('"b"', text:sub(o[10], o[11]))
    assert.equal('{"c":[2]}', text:sub(o[12], o[13]))
  end)

  it("decodes in pieces to what one decode gives", function()
    for _, text in ipairs(VALID) do
      local want = whole(text)
      assert.is_table(want, text)
      local ok, got = pcall(pieces, text)
      assert.is_true(ok, text .. ": " .. tostring(got))
      assert.is_true(same(want, got), text)
    end
  end)

  it("refuses what one decode refuses", function()
    for _, text in ipairs(INVALID) do
      assert.is_nil(whole(text), text)
      local ok, got = pcall(pieces, text)
      assert.is_true(not ok or got == nil, text)
    end
    for _, text in ipairs(NOT_OBJECT) do
      assert.is_nil(jc.outline(text), text)
    end
  end)

  it("gives a sliced config load the tree of a load in one piece", function()
    local parts = { '{"_format_version":"3.0","services":[' }
    for s = 1, 60 do
      local routes = {}
      for r = 1, 30 do
        routes[r] = fmt('{"name":"s%d-r%d","paths":["/s%d/r%d"],' ..
                        '"tags":["\\u00e9"]}', s, r, s, r)
      end
      parts[#parts + 1] = fmt(
        '%s{"name":"s%d","url":"http://127.0.0.1:%d","routes":[%s]}',
        s > 1 and "," or "", s, 9000 + s, table.concat(routes, ","))
    end
    parts[#parts + 1] = '],"consumers":[{"username":"u1"},{"username":"u2"}]}'
    local text = table.concat(parts)
    assert.is_true(#text >= 64 * 1024, "large enough to be decoded in pieces")
    assert.is_table(jc.outline(text))
    local n1, one = outlines_during(function()
      return config.load_string(text, "json", "big.json")
    end)
    assert.is_table(one)
    assert.equal(0, n1) -- in one piece: one decode
    local n2, conf, err = outlines_during(function()
      return load_sliced(text)
    end)
    assert.equal(1, n2) -- sliced: in pieces
    assert.is_table(conf, err)
    assert.equal(1800, #conf.routes)
    assert.equal(#one.routes, #conf.routes)
    for i = 1, #one.routes, 97 do
      assert.equal(one.routes[i].id, conf.routes[i].id)
      assert.same(one.routes[i].paths, conf.routes[i].paths)
    end
    assert.equal(2, #conf.consumers)
    assert.equal(one.hash, conf.hash)
  end)

  it("leaves a sliced load's errors as they were", function()
    local text = '{"_format_version":"3.0","services":[' ..
                 string.rep('{"name":"s","url":"http://127.0.0.1:1"},', 2000) ..
                 '{"name":"bad","url":5}]}'
    assert.is_true(#text >= 64 * 1024)
    local _, one = config.load_string(text, "json", "big.json")
    local n, conf, err = outlines_during(function()
      return load_sliced(text)
    end)
    assert.equal(1, n)
    assert.is_nil(conf)
    assert.is_not_nil(one)
    assert.same(one, err)
  end)
end)


-- A config of 30 services of 50 routes, 300 consumers with a key-auth
-- credential each, a top-level route naming its service, and plugins of
-- `opts.plugin` (a fake plugin) on a service and at the top level.
-- opts: path = { s, r, path } (route r of service s gets `path`), first
-- (a consumer inserted first), rename = { s, name } (service s's name),
-- version (_format_version), plugin_conf (the service plugin's config),
-- skip (a service left out: the ones after it move).
local function big_config(opts)
  local parts = {}
  for s = 1, 30 do
    local routes = {}
    for r = 1, 50 do
      local path = fmt("/s%d/r%d", s, r)
      if opts.path and opts.path[1] == s and opts.path[2] == r then
        path = opts.path[3]
      end
      routes[r] = fmt('{"name":"s%d-r%d","paths":["%s"]}', s, r, path)
    end
    local name = fmt("svc-%d", s)
    if opts.rename and opts.rename[1] == s then
      name = opts.rename[2]
    end
    local plugins = ""
    if s == 5 and opts.plugin then
      plugins = fmt(',"plugins":[{"name":"%s","config":%s}]', opts.plugin,
                    opts.plugin_conf or "{}")
    end
    parts[#parts + 1] = fmt(
      '{"name":"%s","url":"http://127.0.0.1:%d","routes":[%s]%s}',
      name, 9000 + s, table.concat(routes, ","), plugins)
    if opts.skip == s then
      parts[#parts] = nil
    end
  end
  local consumers = {}
  if opts.first then
    consumers[1] = '{"username":"first","keyauth_credentials":[{}]}'
  end
  for c = 1, 300 do
    consumers[#consumers + 1] = fmt('{"username":"u%d",' ..
      '"keyauth_credentials":[{"key":"k%d"}]}', c, c)
  end
  local top_plugins = opts.plugin and
    fmt(',"plugins":[{"name":"%s","route":"top"}]', opts.plugin) or ""
  return fmt('{"_format_version":"%s","services":[%s],"consumers":[%s],' ..
             '"routes":[{"name":"top","service":"svc-2","paths":["/top"]}]%s}',
             opts.version or "3.0", table.concat(parts, ","),
             table.concat(consumers, ","), top_plugins)
end

-- a plugin directory with plugin "fake": `default` is the default of its
-- config field `mode`
local function fake_plugin_dir(dir, default)
  helpers.write_plugin(dir, "fake", fmt([[
return { name = "fake", fields = { { config = { type = "record", fields = {
  { mode = { type = "string", default = %q } },
  { level = { type = "number" } },
} } } } }
]], default))
end

describe("a sliced load after another", function()
  local dir = helpers.make_prefix("reuse") .. "/plugins"
  local opts = { plugins_dirs = { dir } }

  before_each(function()
    fake_plugin_dir(dir, "a")
  end)

  -- what a load in one piece gives: conf, or nil and the errors
  local function one(text)
    return config.load_string(text, "json", "big.json", opts)
  end

  local function route(conf, s, r)
    return conf.routes[(s - 1) * 50 + r]
  end

  it("takes the unchanged elements' entities from the load before",
     function()
    local base = big_config({ plugin = "fake" })
    assert.is_true(#base >= 64 * 1024, "large enough to be decoded in pieces")
    local a = assert(load_sliced(base, opts))
    local edited = big_config({ plugin = "fake", path = { 7, 3, "/new" } })
    local b = assert(load_sliced(edited, opts))
    assert.is_true(same(assert(one(edited)), b))
    -- the edited element's entities are new...
    assert.same({ "/new" }, route(b, 7, 3).paths)
    assert.not_equal(route(a, 7, 4).paths, route(b, 7, 4).paths)
    -- ...the others are the load before's: the same route tables, as
    -- their ids, services and phases are the same
    assert.equal(route(a, 8, 3), route(b, 8, 3))
    assert.equal(a.consumers[9].keyauth_credentials[1].key,
                 b.consumers[9].keyauth_credentials[1].key)
    assert.not_equal(a.plugins[1].config, b.plugins[1].config)
  end)

  it("gives what loads in one piece give, load after load", function()
    local texts = {
      big_config({ plugin = "fake" }),
      big_config({ plugin = "fake", path = { 7, 3, "/new" } }),
      -- every consumer moves one place: credential ids follow their paths
      big_config({ plugin = "fake", path = { 7, 3, "/new" }, first = true }),
      -- the top-level route names a service that is gone
      big_config({ plugin = "fake", first = true, rename = { 2, "other" } }),
      big_config({ plugin = "fake", first = true }),
      -- 1.1: regex-looking paths get "~"
      big_config({ plugin = "fake", first = true, version = "1.1",
                   path = { 3, 3, "/x(y)?" } }),
      big_config({ plugin = "fake", first = true, version = "3.0",
                   path = { 3, 3, "/x(y)?" } }),
      -- every service after the first moves: its routes' links change
      big_config({ plugin = "fake", first = true, skip = 1 }),
      -- an invalid plugin config in an element otherwise unchanged
      big_config({ plugin = "fake", plugin_conf = '{"level":"high"}' }),
      big_config({ plugin = "fake" }),
    }
    for i, text in ipairs(texts) do
      assert.is_true(#text >= 64 * 1024, "large enough to be decoded in pieces")
      local want, want_errs = one(text)
      local got, errs = load_sliced(text, opts)
      if want then
        assert.is_true(same(want, got), "load " .. i .. " differs: " ..
                       tostring(errs and errs[1]))
      else
        assert.is_nil(got, "load " .. i)
        assert.same(want_errs, errs)
      end
    end
    assert.is_nil((one(texts[4])))
    assert.is_nil((one(texts[9])))
  end)

  it("leaves the configuration it replaces as it was", function()
    local deep_copy = require("luagate.schema").deep_copy
    local a = assert(load_sliced(big_config({ plugin = "fake" }), opts))
    local before = deep_copy(a)
    -- positions, links and ids of the reused entities change
    local text = big_config({ plugin = "fake", first = true, skip = 1,
                              path = { 2, 2, "/new" } })
    assert.is_true(#text >= 64 * 1024, "large enough to be decoded in pieces")
    local b = assert(load_sliced(text, opts))
    assert.is_true(same(before, a))
    assert.equal(301, #b.consumers)
    -- a route of a service that moved: its own table, with its service
    assert.not_equal(route(a, 3, 1), route(b, 2, 1))
    assert.equal(2, route(b, 2, 1).service)
    assert.equal(3, route(a, 3, 1).service)
  end)

  it("validates again the plugins whose schema changed", function()
    local text = big_config({ plugin = "fake" })
    local a = assert(load_sliced(text, opts))
    assert.equal("a", a.plugins[1].config.mode)
    fake_plugin_dir(dir, "b")
    local b = assert(load_sliced(text, opts))
    assert.equal("b", b.plugins[1].config.mode)
    assert.equal("b", b.plugins[2].config.mode)
    assert.is_true(same(assert(one(text)), b))
    assert.not_equal(a.hash, b.hash)
  end)
end)
