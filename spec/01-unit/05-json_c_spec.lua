-- The outline of a JSON document (runtime/src/json.c, module
-- "luagate.json_c") and the decode in pieces a worker's sliced load uses for
-- large JSON configs (luagate.config): the same tree as one cjson decode
-- for every valid document, and a refusal for every invalid one. The module
-- is built here as a shared object from the same source the gateway links.
local helpers = require "spec.helpers"
local cjson = require "cjson"

local fmt = string.format
local q = helpers.shell_quote

local ROOT = os.getenv("LUAGATE_ROOT") or "."

local jc
do
  local dir = helpers.make_prefix("json_c")
  local rc, out, err = helpers.execute(fmt(
    "mkdir -p %s/luagate && cc -O1 -shared -fPIC -I%s/runtime/include %s " ..
    "-o %s/luagate/json_c.so %s/runtime/src/json.c",
    q(dir), q(ROOT), (io.popen("pkg-config --cflags luajit"):read("*l") or ""),
    q(dir), q(ROOT)))
  assert(rc == 0, "could not build json.c: " .. tostring(out) .. tostring(err))
  local saved = package.cpath
  package.cpath = dir .. "/?.so;" .. saved
  jc = require "luagate.json_c" -- (luagate.config finds it in package.loaded)
  package.cpath = saved
end

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
local function load_sliced(text)
  local co = coroutine.create(function()
    slice.begin()
    local conf, err = config.load_string(text, "json", "big.json")
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
