-- The C YAML reader (runtime/src/yaml.c, module "luagate.yaml_c") against
-- the Lua one (luagate.config.yaml over lyaml's events): the same document
-- for every text the C reader takes, and nothing (the caller then uses the
-- Lua reader) for what it leaves to it. The module is built here as a
-- shared object from the same source the gateway links.
local helpers = require "spec.helpers"

local fmt = string.format
local q = helpers.shell_quote

local ROOT = os.getenv("LUAGATE_ROOT") or "."

local yaml_reader = require "luagate.config.yaml"
local NULL = require("luagate.schema").NULL

local parse_events = yaml_reader._parse_events
local resolve_plain = yaml_reader._resolve_plain

local yc = helpers.c_module("yaml", "-lyaml")

-- deep equality where NaN equals NaN and NULL is NULL (the config diff's)
local same = require("luagate.admin.diff").equal

-- The stepped decoder (yaml_c.decoder, a worker's sliced load) with n
-- events per step: the document, or nil.
local function step_read(text, n)
  local dec = yc.decoder(text, resolve_plain, NULL)
  local r = dec:step(n)
  local steps = 1
  while r == true do
    r = dec:step(n)
    steps = steps + 1
  end
  assert.is_nil(dec:step(n), "a finished decoder reads nothing more")
  return r, steps
end

-- decode's document, checked against the stepped decoder's with steps of
-- 1, 7 and 1,000 events
local function c_read(text)
  local doc = yc.decode(text, resolve_plain, NULL)
  for _, n in ipairs({ 1, 7, 1000 }) do
    local stepped = step_read(text, n)
    if doc == nil then
      assert.is_nil(stepped, "the stepped decoder read what decode leaves")
    else
      assert.is_true(same(doc, stepped), "the stepped decoder (" .. n ..
                     " events a step) read differently")
    end
  end
  return doc
end

local function lua_read(text)
  local doc = parse_events(text, true)
  return doc
end

describe("luagate.yaml_c", function()
  it("reads configs as the Lua reader does", function()
    local texts = {
      assert(helpers.read_file(ROOT .. "/spec/fixtures/config/users-example.yml")),
      assert(helpers.read_file(ROOT .. "/spec/fixtures/config/legacy-2.1.yml")),
      [[
_format_version: "3.0"
services:
- name: s1
  url: http://127.0.0.1:8080/base
  retries: 3
  connect_timeout: 6e4
  enabled: yes
  tags: [a, "b", 'c', 1, 1.5, ~, null, true, Off]
  routes:
  - name: r1
    paths: ["/x", /y]
    strip_path: false
    methods: [GET, POST]
    headers: {x-a: [v1, v2]}
    regex_priority: -10
plugins:
- name: rate-limiting
  config: {minute: 0x10, hour: 0o17, day: 017, second: 1_000, year: 1:30}
- name: cors
  config:
    origins:
    - "*"
    max_age: .5
    credentials: TRUE
    exposed_headers: []
    headers: {}
]],
      "key: |\n  line one\n  line two\nfolded: >\n  a\n  b\nquoted: \"tab\\tend\"\n",
      "- 1\n- -2\n- +3\n- 4.5e3\n- .inf\n- -.Inf\n- .NaN\n- 0b101\n- 190:20:30\n",
      "nul: \nempty: ''\nsq: 'it''s'\nunicode: \"\\u00e9t\\u00e9\"\nraw: été\n",
      "1: one\n2.5: two\ntrue: three\n~: four\nyes: five\n",
      "a: 1\na: 2\n",            -- duplicate key: the last wins in both
      "",                        -- no document
      "---\n...\n",              -- an empty document
      "--- 42\n--- second\n",    -- only the first document
      "just a string\n",
      "[1, [2, [3, {a: [4]}]]]\n",
    }
    for i, text in ipairs(texts) do
      local c = c_read(text)
      assert.is_not_nil(c, "the C reader left text #" .. i .. " to the Lua one")
      assert.is_true(same(c, lua_read(text)), "text #" .. i .. " read differently")
    end
  end)

  it("reads the benchmark's 1 MB config as the Lua reader does", function()
    local dir = helpers.make_prefix("yaml_c_big")
    local path = dir .. "/big.yml"
    local rc = helpers.execute(fmt("luajit %s/spec/bench/config_swap_gen.lua %s 20 20 200",
                                   q(ROOT), q(path)))
    assert.equal(0, rc)
    local text = helpers.read_file(path)
    local c = c_read(text)
    assert.is_table(c)
    local _, steps = step_read(text, 200)
    assert.is_true(steps > 10, "steps: " .. steps) -- it did stop and go on
    assert.is_true(same(c, lua_read(text)))
    assert.equal(20, #c.services)
    assert.equal(200, #c.consumers)
  end)

  it("leaves to the Lua reader what it does not handle", function()
    local texts = {
      "a: &x {b: 1}\nc: *x\n",            -- anchors and aliases
      "base: {a: 1}\nm:\n  <<: {b: 2}\n", -- a merge key
      "a: !!str 123\n",                   -- a tag
      "? [a, b]\n: 1\n",                  -- a complex key
      "a: [1, 2\n",                       -- a syntax error
      "a: 1\n b: 2\n",                    -- a syntax error
      ".nan: 1\n",                        -- a NaN key (a Lua error)
    }
    for i, text in ipairs(texts) do
      assert.is_nil(c_read(text), "text #" .. i .. " should be left to the Lua reader")
    end
    -- and the Lua reader still reads the ones that are valid
    assert.same({ a = { b = 1 }, c = { b = 1 } }, lua_read(texts[1]))
    assert.equal("123", lua_read(texts[3]).a)
  end)

  it("gives null for nulls and the string 'null' for a null key", function()
    local doc = c_read("a: ~\nb: null\n~: x\n")
    assert.equal(NULL, doc.a)
    assert.equal(NULL, doc.b)
    assert.equal("x", doc["null"])
  end)

  it("refuses a nesting deeper than 500 levels (the Lua reader decides)", function()
    local deep = string.rep("[", 600) .. string.rep("]", 600)
    assert.is_nil(c_read(deep))
    local ok = string.rep("[", 100) .. string.rep("]", 100)
    assert.is_table(c_read(ok))
  end)
end)


-- The stepped decoder with `record` (a worker's sliced load): the texts of
-- the elements of the top-level sequences, raws[key][i], each with a head
-- that says where it stands ("bb0:2:" block root, block sequence, "-" at
-- column 0, element at column 2).
local function record_read(text, n)
  local dec = yc.decoder(text, resolve_plain, NULL, true)
  local r, raws = dec:step(n or 1000)
  while r == true do
    r, raws = dec:step(n or 1000)
  end
  return r, raws
end

-- the text of a key, without its head
local function body(key)
  return (key:match("^[bf][bf]%d+:%d+:(.*)$"))
end

describe("luagate.yaml_c's texts of top-level elements", function()
  it("gives the text of each element of a top-level sequence", function()
    local text = "a:\n- name: \195\169t\195\169\n  x: 1\n\n# c\n" ..
                 "- |+\n  k\n\n" ..
                 "- {b: 2}\nz: 1\nb: [x, {y: 1}, 3]\nc: {d: [1]}\ne: []\n"
    local doc, raws = record_read(text)
    assert.equal(1, doc.a[2 - 1].x)
    assert.same({ "a", "b", "e" }, (function()
      local keys = {}
      for k in pairs(raws) do keys[#keys + 1] = k end
      table.sort(keys)
      return keys
    end)())
    -- a block mapping runs to the next token (comments and blank lines in)
    assert.equal("bb0:2:name: \195\169t\195\169\n  x: 1\n\n# c\n", raws.a[1])
    assert.equal("bb0:2:|+\n  k\n\n", raws.a[2]) -- (kept trailing lines)
    assert.equal("bb0:2:{b: 2}", raws.a[3])
    assert.same({ "bf3:4:x", "bf3:7:{y: 1}", "bf3:15:3" }, raws.b)
    assert.same({}, raws.e)
    for _, n in ipairs({ 1, 7 }) do
      local d2, r2 = record_read(text, n)
      assert.is_true(same(doc, d2))
      assert.same(raws, r2)
    end
    -- decode, and the decoder without `record`, give no texts
    assert.equal(1, select("#", yc.decode(text, resolve_plain, NULL)))
    local dec = yc.decoder(text, resolve_plain, NULL)
    assert.equal(1, select("#", dec:step(100000)))
  end)

  it("keeps the texts of a repeated key's last value, and only the first " ..
     "document's", function()
    local _, raws = record_read("a: [1, 2]\na: x\n")
    assert.is_nil(raws.a)
    _, raws = record_read("a: x\na: [1]\n")
    assert.same({ "bf3:4:1" }, raws.a)
    _, raws = record_read("a: [1, 2]\na:\n- 3\n")
    assert.same({ "bb0:2:3" }, raws.a)
    local doc
    doc, raws = record_read("a:\n- 1\n--- \na:\n- 2\n- 3\n")
    assert.same({ 1 }, doc.a)
    assert.same({ "bb0:2:1" }, raws.a)
  end)

  it("gives no texts when the root is not a mapping or has a byte order " ..
     "mark", function()
    local doc, raws = record_read("- a\n- [b]\n")
    assert.same({ "a", { "b" } }, doc)
    assert.same({}, raws)
    doc, raws = record_read("[1, [2, 3]]\n")
    assert.same({ 1, { 2, 3 } }, doc)
    assert.same({}, raws)
    doc, raws = record_read("just a string\n")
    assert.equal("just a string", doc)
    assert.same({}, raws)
    doc, raws = record_read("\239\187\191a: [1]\n")
    assert.same({ 1 }, doc.a)
    assert.is_nil(raws)
    -- what the Lua reader reads: nothing from this one
    doc, raws = record_read("a: &x [1]\nb: *x\n")
    assert.is_nil(doc)
    assert.is_nil(raws)
  end)

  it("leaves out the elements whose text is known", function()
    local text = "a:\n- {x: 1}\n- y: [2]\n  z: 3\n- 4\n- [6, {x: 1}]\n" ..
                 "b: [{x: 1}, [5]]\nc: {d: [{x: 1}]}\n"
    local doc, raws = record_read(text)
    local REUSED = {}
    local known = { a = { [raws.a[2]] = true, [raws.a[3]] = true },
                    b = { [raws.a[1]] = true, [raws.b[2]] = true } }
    for _, n in ipairs({ 1, 2, 7, 1000 }) do
      local dec = yc.decoder(text, resolve_plain, NULL, true, known, REUSED)
      local r, raws2 = dec:step(n)
      while r == true do
        r, raws2 = dec:step(n)
      end
      assert.same(raws, raws2)
      assert.same({ x = 1 }, r.a[1])
      assert.equal(REUSED, r.a[2])
      assert.equal(4, r.a[3]) -- (a scalar is built)
      assert.same({ 6, { x = 1 } }, r.a[4])
      assert.same({ x = 1 }, r.b[1]) -- (a's text, not b's)
      assert.equal(REUSED, r.b[2])
      assert.same(doc.c, r.c)
      assert.equal(4, #r.a)
      assert.equal(2, #r.b)
    end
    -- a known text with an anchor: read, and left to the Lua reader
    text = "a:\n- &x {y: 1}\n"
    known = { a = { ["bb0:2:&x {y: 1}"] = true } }
    local dec = yc.decoder(text, resolve_plain, NULL, true, known, REUSED)
    assert.is_nil(dec:step(1000))
    known = { a = { ["bb0:2:{y: 1}"] = true } }
    dec = yc.decoder("a:\n- {y: 1}\n", resolve_plain, NULL, true, known,
                     REUSED)
    assert.equal(REUSED, dec:step(1000).a[1])
  end)

  it("gives the same text for the same element only", function()
    -- elements whose text from their first to their last event is the
    -- same, but not their value: a block scalar's indentation counts from
    -- the "-" indicators' column; the same words in flow and block style
    local texts = {
      "a:\n-   |2\n    x\n",   -- "  x\n"
      "a:\n  - |2\n    x\n",   -- "x\n"
      "a:\n-\n  |2\n    x\n",  -- "  x\n"
      "a:\n  -\n  |2\n    x\n", -- "x\n"
      "a:\n- foo\n  bar\n- foo\n- - foo\n  - bar\n",
      "a: [foo, [foo, bar], {foo: bar}]\n",
      "a:\n- foo: bar\n- [foo, bar]\n- >-\n  x\n\n  y\n- |-\n  x\n\n  y\n",
      "{a: [foo, {foo: bar}], b: [1]}\n",
      "a:\r\n- x: 1\r\n  y: \"\195\169\"\r\n- x: 1\r\n",
      "b:\n  - 1\n  - '1'\n  - \"1\"\n  - 1.0\n  - yes\n",
      "b: [1, '1', \"1\", 1.0, yes]\n",
      "a:\n- name: x # comment\n  v: 1\n- name: x\n  v: 1\n",
    }
    local seen, seen_in = {}, {}
    local n = 0
    for i, text in ipairs(texts) do
      local doc, raws = record_read(text)
      assert.is_table(doc, "text #" .. i)
      assert.is_true(same(doc, lua_read(text)), "text #" .. i)
      for key, list in pairs(raws) do
        assert.equal(#doc[key], #list, "text #" .. i .. ", " .. key)
        for e, t in ipairs(list) do
          assert.is_string(body(t))
          n = n + 1
          local value = doc[key][e]
          if seen[t] == nil then
            seen[t], seen_in[t] = value, i
          else
            assert.is_true(same(seen[t], value), ("%q: in text #%d and #%d")
                           :format(t, seen_in[t], i))
          end
        end
      end
    end
    assert.is_true(n >= 30)
    -- and the ones the comments above say differ do
    assert.equal("  x\n", record_read(texts[1]).a[1])
    assert.equal("x\n", record_read(texts[2]).a[1])
    assert.equal("  x\n", record_read(texts[3]).a[1])
    assert.equal("x\n", record_read(texts[4]).a[1])
    assert.equal(body(select(2, record_read(texts[1])).a[1]),
                 body(select(2, record_read(texts[2])).a[1]))
  end)
end)


-- Sliced YAML loads after one another (luagate.config, "Reuse across a
-- worker's reloads"): what the JSON ones in 05-json_c_spec.lua check, on
-- YAML files, and what only YAML has.
local config = require "luagate.config"
local slice = require "luagate.slice"

-- the JSON outline too, for loads that switch formats
helpers.c_module("json")

-- config.load_string(text) run as a worker's sliced load runs it
local function load_sliced(text, opts, format)
  local co = coroutine.create(function()
    slice.begin()
    config.last_reuse = nil
    local conf, err = config.load_string(text, format or "yaml",
                                         "big." .. (format or "yml"), opts)
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

-- The config of 05-json_c_spec.lua's big_config, in block style: 30
-- services of 50 routes, 300 consumers with a key-auth credential, a
-- top-level route naming its service, plugins of `opts.plugin` on a
-- service and at the top level. opts as there (path, first, rename,
-- version, plugin_conf, skip), and: indent (the sequences indented by
-- two), json (the same config in JSON, big_config's text), extra (text
-- appended).
local function big_yaml(opts)
  local out = {}
  local function add(...)
    out[#out + 1] = fmt(...)
  end
  if opts.json then
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
      parts[#parts + 1] = fmt('{"name":"svc-%d","url":"http://127.0.0.1:%d",' ..
                              '"routes":[%s]}', s, 9000 + s,
                              table.concat(routes, ","))
    end
    local consumers = {}
    for c = 1, 300 do
      consumers[c] = fmt('{"username":"u%d","keyauth_credentials":' ..
                         '[{"key":"k%d"}]}', c, c)
    end
    return fmt('{"_format_version":"3.0","services":[%s],\n"consumers":[%s]}',
               table.concat(parts, ",\n"), table.concat(consumers, ",\n"))
  end
  local i = opts.indent and "  " or ""
  add('_format_version: "%s"\nservices:\n', opts.version or "3.0")
  for s = 1, 30 do
    if opts.skip ~= s then
      local name = fmt("svc-%d", s)
      if opts.rename and opts.rename[1] == s then
        name = opts.rename[2]
      end
      add("%s- name: %s\n%s  url: http://127.0.0.1:%d\n%s  routes:\n", i,
          name, i, 9000 + s, i)
      for r = 1, 50 do
        local path = fmt("/s%d/r%d", s, r)
        if opts.path and opts.path[1] == s and opts.path[2] == r then
          path = opts.path[3]
        end
        add("%s  - name: s%d-r%d\n%s    paths:\n%s    - \"%s\"\n", i, s, r, i,
            i, path)
      end
      if s == 5 and opts.plugin then
        add("%s  plugins:\n%s  - name: %s\n%s    config: %s\n", i, i,
            opts.plugin, i, opts.plugin_conf or "{}")
      end
    end
  end
  add("consumers:\n")
  if opts.first then
    add("%s- username: first\n%s  keyauth_credentials:\n%s  - {}\n", i, i, i)
  end
  for c = 1, 300 do
    add("%s-\n%s  username: u%d\n%s  keyauth_credentials:\n%s  - key: k%d\n",
        i, i, c, i, i, c)
  end
  add("routes:\n%s- {name: top, service: svc-2, paths: [/top]}\n", i)
  if opts.plugin then
    add("plugins: [{name: %s, route: top}]\n", opts.plugin)
  end
  add("%s", opts.extra or "")
  return table.concat(out)
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

describe("a sliced YAML load after another", function()
  local dir = helpers.make_prefix("yaml_reuse") .. "/plugins"
  local opts = { plugins_dirs = { dir } }

  before_each(function()
    fake_plugin_dir(dir, "a")
  end)

  -- what a load in one piece gives: conf, or nil and the errors
  local function one(text, format)
    return config.load_string(text, format or "yaml",
                              "big." .. (format or "yml"), opts)
  end

  local function route(conf, s, r)
    return conf.routes[(s - 1) * 50 + r]
  end

  it("takes the unchanged elements' entities from the load before",
     function()
    local base = big_yaml({ plugin = "fake" })
    assert.is_true(#base >= 64 * 1024, "large enough to be read in steps")
    local a = assert(load_sliced(base, opts))
    assert.equal(0, config.last_reuse.reused)
    local edited = big_yaml({ plugin = "fake", path = { 7, 3, "/new" } })
    local b = assert(load_sliced(edited, opts))
    assert.is_true(same(assert(one(edited)), b))
    -- every entity but service 7's 51 (the service and its routes)
    local n = config.last_reuse.entities
    assert.equal(n - 51, config.last_reuse.reused)
    assert.same({ "/new" }, route(b, 7, 3).paths)
    assert.not_equal(route(a, 7, 4).paths, route(b, 7, 4).paths)
    assert.equal(route(a, 8, 3), route(b, 8, 3))
    assert.not_equal(a.plugins[1].config, b.plugins[1].config)
    -- the same file in one piece (`luagate check`, the master) reuses
    -- nothing and leaves the worker's templates alone
    config.last_reuse = nil
    assert(one(edited))
    assert.is_nil(config.last_reuse)
    local c = assert(load_sliced(edited, opts))
    assert.equal(n, config.last_reuse.reused)
    assert.equal(route(b, 8, 3), route(c, 8, 3))
  end)

  it("gives what loads in one piece give, load after load", function()
    local loads = {
      { big_yaml({ plugin = "fake" }) },
      { big_yaml({ plugin = "fake", path = { 7, 3, "/new" } }) },
      -- every consumer moves one place: credential ids follow their paths
      { big_yaml({ plugin = "fake", path = { 7, 3, "/new" }, first = true }) },
      -- the top-level route names a service that is gone
      { big_yaml({ plugin = "fake", first = true, rename = { 2, "other" } }) },
      { big_yaml({ plugin = "fake", first = true }) },
      -- 1.1: regex-looking paths get "~"
      { big_yaml({ plugin = "fake", first = true, version = "1.1",
                   path = { 3, 3, "/x(y)?" } }) },
      { big_yaml({ plugin = "fake", first = true, version = "3.0",
                   path = { 3, 3, "/x(y)?" } }) },
      -- every service after the first moves: its routes' links change
      { big_yaml({ plugin = "fake", first = true, skip = 1 }) },
      -- an invalid plugin config in an element otherwise unchanged
      { big_yaml({ plugin = "fake", plugin_conf = "{level: high}" }) },
      { big_yaml({ plugin = "fake" }) },
      -- the same elements indented: other texts
      { big_yaml({ plugin = "fake", indent = true }) },
      -- a repeated top-level key: its last value
      { big_yaml({ plugin = "fake",
                   extra = "consumers:\n- username: last\n" }) },
      { big_yaml({ plugin = "fake", extra = "consumers: []\n" }) },
      { big_yaml({ plugin = "fake" }) },
      -- an anchor: the Lua reader reads it (no texts, nothing reused after)
      { big_yaml({ plugin = "fake",
                   extra = "tags_unused: &t [a]\n" }) },
      { big_yaml({ plugin = "fake", path = { 1, 1, "/anchor" },
                   extra = "x: &t [a]\n" }) },
      { big_yaml({ plugin = "fake" }) },
      -- a second document is not read
      { big_yaml({ plugin = "fake", extra = "---\nservices: [{name: x}]\n" }) },
      -- JSON, then the same text read as YAML (flow style), then YAML
      { big_yaml({ json = true }), "json" },
      { big_yaml({ json = true }) },
      { big_yaml({ json = true, path = { 4, 4, "/json" } }), "json" },
      { big_yaml({ json = true, path = { 4, 4, "/json" } }) },
      { big_yaml({ plugin = "fake" }) },
    }
    local reused = 0
    for i, l in ipairs(loads) do
      local text, format = l[1], l[2]
      assert.is_true(#text >= 64 * 1024, "large enough to be read in steps")
      local want, want_errs = one(text, format)
      local got, errs = load_sliced(text, opts, format)
      if want then
        assert.is_true(same(want, got), "load " .. i .. " differs: " ..
                       tostring(errs and errs[1]))
        reused = reused + config.last_reuse.reused
      else
        assert.is_nil(got, "load " .. i)
        assert.same(want_errs, errs)
      end
    end
    assert.is_true(reused > 10000)
    assert.is_nil((one(loads[4][1])))
    assert.is_nil((one(loads[9][1])))
    assert.is_nil((one(loads[15][1]))) -- (an unknown top-level key)
    assert.equal(1, #one(loads[12][1]).consumers)
    assert.equal(0, #one(loads[13][1]).consumers)
  end)

  it("reuses nothing after the Lua reader's load, nor across formats",
     function()
    local text = big_yaml({ json = true })
    assert(load_sliced(text, opts, "json"))
    assert(load_sliced(text, opts)) -- the same text, as YAML
    assert.equal(0, config.last_reuse.reused)
    assert(load_sliced(text, opts, "json"))
    assert.equal(0, config.last_reuse.reused)
    assert(load_sliced(text, opts, "json"))
    assert.is_true(config.last_reuse.reused > 1500)
    local plain = big_yaml({})
    assert(load_sliced(plain, opts))
    assert(load_sliced(plain, opts))
    assert.is_true(config.last_reuse.reused > 1500)
    -- an alias somewhere: the Lua reader, and nothing to reuse after it
    local anchored = big_yaml({ extra = "routes: [{name: &n top, " ..
                                        "service: svc-2, paths: [/top]}]\n" ..
                                        "tags_of: *n\n" })
    local _, errs = load_sliced(anchored, opts)
    assert.matches("tags_of", errs[1])
    anchored = big_yaml({ extra = "routes: [{name: top, service: svc-2, " ..
                                  "paths: [/top], tags: &t [a], " ..
                                  "hosts: [h], snis: *t}]\n" })
    assert(load_sliced(anchored, opts))
    assert.equal(nil, config.last_reuse) -- (no texts: no count)
    assert(load_sliced(plain, opts))
    assert.equal(0, config.last_reuse.reused)
  end)

  it("leaves the configuration it replaces as it was", function()
    local deep_copy = require("luagate.schema").deep_copy
    local a = assert(load_sliced(big_yaml({ plugin = "fake" }), opts))
    local before = deep_copy(a)
    local text = big_yaml({ plugin = "fake", first = true, skip = 1,
                            path = { 2, 2, "/new" } })
    local b = assert(load_sliced(text, opts))
    assert.is_true(same(before, a))
    assert.equal(301, #b.consumers)
    assert.not_equal(route(a, 3, 1), route(b, 2, 1))
    assert.equal(2, route(b, 2, 1).service)
    assert.equal(3, route(a, 3, 1).service)
  end)

  it("validates again the plugins whose schema changed", function()
    local text = big_yaml({ plugin = "fake" })
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
