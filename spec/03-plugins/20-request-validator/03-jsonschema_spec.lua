-- The request validator's JSON Schema compiler and its JSON decoder, on
-- their own: every keyword, error paths (JSON pointers) and messages, the
-- fast path (no error list), and schema errors.
local helpers = require "spec.helpers"

local DIR = helpers.root .. "/plugins/request-validator/"
local jsonschema = dofile(DIR .. "jsonschema.lua")
local json = require "luagate.json"
local media = dofile(DIR .. "media.lua")


-- validates the JSON text `doc` against `schema` (table or JSON text);
-- returns valid, errors ({ "path: message" ... })
local function check(schema, doc)
  local v = assert(jsonschema.compile(schema))
  local value, err = json.decode(doc)
  assert(value ~= nil, err)
  local ok, errs = v(value, true)
  local out = {}
  for i, e in ipairs(errs) do
    out[i] = e.path .. ": " .. e.message
  end
  -- the fast path agrees
  local fast, none = v(value, false)
  assert.equal(ok, fast)
  assert.is_nil(none)
  return ok, out
end


local function valid(schema, doc)
  local ok, errs = check(schema, doc)
  assert.is_true(ok, doc .. " should be valid: " .. table.concat(errs, "; "))
end


local function invalid(schema, doc, expected)
  local ok, errs = check(schema, doc)
  assert.is_false(ok, doc .. " should be invalid")
  if expected then
    assert.same(expected, errs)
  end
end


describe("request-validator json", function()
  it("tells empty arrays from empty objects", function()
    local v = assert(json.decode('{"a":[],"b":{},"c":[[]],"d":[1]}'))
    assert.is_true(json.is_array(v.a))
    assert.is_false(json.is_array(v.b))
    assert.is_true(json.is_array(v.c[1]))
    assert.is_true(json.is_array(v.d))
    assert.is_true(json.is_array(assert(json.decode("[]"))))
    assert.is_false(json.is_array(assert(json.decode("{}"))))
  end)

  it("decodes escapes, numbers and null", function()
    local v = assert(json.slow_decode(
      '{"s":"a\\"b\\\\c\\u00e9\\ud83d\\ude00\\n","n":-1.5e2,"z":null,' ..
      '"t":true,"f":false,"e":[]}'))
    assert.equal('a"b\\cé😀\n', v.s)
    assert.equal(-150, v.n)
    assert.equal(json.NULL, v.z)
    assert.is_true(v.t)
    assert.is_false(v.f)
  end)

  it("refuses invalid JSON", function()
    for _, doc in ipairs({ "", "{", '{"a":1,}', "[1,]", "01", "1.", "tru",
                           '"\\x"', '"a\tb"', "[1] 2", '{"a" 1}' }) do
      assert.is_nil((json.slow_decode(doc)), doc)
    end
    assert.is_nil((json.decode("{")))
    assert.is_nil((json.decode("[ ]]")))
  end)
end)


describe("request-validator media types", function()
  it("parses and compares as Kong does", function()
    local allowed = {
      assert(media.parse("application/json")),
      assert(media.parse("text/plain; charset=UTF-8")),
      assert(media.parse("application/*+json")),
    }
    local function ok(ct, strict)
      return media.allowed(allowed, assert(media.parse(ct)), strict ~= false)
    end
    assert.is_true(ok("application/json"))
    assert.is_true(ok("Application/JSON"))
    assert.is_false(ok("application/json; charset=utf-8"))
    assert.is_true(ok("application/json; charset=utf-8", false))
    assert.is_true(ok("text/plain; charset=utf-8"))
    assert.is_true(ok('text/plain; CHARSET="utf-8"'))
    assert.is_false(ok("text/plain"))
    assert.is_true(ok("application/merge-patch+json"))
    assert.is_false(ok("application/xml"))
    assert.is_true(media.is_json(assert(media.parse("application/json"))))
    assert.is_true(media.is_json(assert(media.parse("application/x+json"))))
    assert.is_falsy(media.is_json(assert(media.parse("text/json+xml"))))
  end)
end)


describe("request-validator jsonschema", function()
  it("checks types, integer against number", function()
    valid({ type = "integer" }, "1")
    valid({ type = "integer" }, "1.0")
    invalid({ type = "integer" }, "1.5", { ": expected integer, got number" })
    valid({ type = "number" }, "1")
    invalid({ type = "string" }, "1", { ": expected string, got number" })
    invalid({ type = "object" }, "[]", { ": expected object, got array" })
    invalid({ type = "array" }, "{}", { ": expected array, got object" })
    valid({ type = "null" }, "null")
    invalid({ type = "boolean" }, "null", { ": expected boolean, got null" })
    valid({ type = { "string", "null" } }, "null")
    invalid({ type = { "string", "null" } }, "1",
            { ": expected one of string, null, got number" })
  end)

  it("checks properties, required and additionalProperties", function()
    local s = {
      type = "object",
      required = { "name", "age" },
      properties = {
        name = { type = "string" },
        age = { type = "integer", minimum = 0 },
        ["a/b~c"] = { type = "string" },
      },
      additionalProperties = false,
    }
    valid(s, '{"name":"x","age":3}')
    invalid(s, '{"age":-1,"a/b~c":1,"extra":true}', {
      "/name: required property is missing",
      "/a~1b~0c: expected string, got number",
      "/age: value must be >= 0",
      "/extra: additional property is not allowed",
    })
    -- null counts as present
    invalid(s, '{"name":null,"age":1}', { "/name: expected string, got null" })
  end)

  it("checks nested paths and array indexes", function()
    local s = { properties = { items = { type = "array", items = {
      type = "object", properties = { qty = { type = "integer" } } } } } }
    invalid(s, '{"items":[{"qty":1},{"qty":"2"},{"qty":3.5}]}', {
      "/items/1/qty: expected integer, got string",
      "/items/2/qty: expected integer, got number",
    })
  end)

  it("checks patternProperties and additionalProperties schemas", function()
    local s = {
      properties = { id = { type = "integer" } },
      patternProperties = { ["^x-"] = { type = "string" } },
      additionalProperties = { type = "boolean" },
    }
    valid(s, '{"id":1,"x-a":"s","flag":true}')
    invalid(s, '{"x-a":1,"other":"s"}', {
      "/other: expected boolean, got string",
      "/x-a: expected string, got number",
    })
  end)

  it("checks string lengths in code points, pattern and formats", function()
    valid({ minLength = 3, maxLength = 3 }, '"été"')
    invalid({ maxLength = 2 }, '"été"',
            { ": string must be at most 2 characters long" })
    invalid({ minLength = 4 }, '"été"',
            { ": string must be at least 4 characters long" })
    valid({ pattern = "^[a-z]+\\d$" }, '"abc1"')
    invalid({ pattern = "^[a-z]+$" }, '"ab1"',
            { ": string does not match pattern '^[a-z]+$'" })
    valid({ pattern = "b" }, '"abc"') -- unanchored
    valid({ pattern = "^.{3}$" }, '"été"') -- code points
    local formats = {
      ["date-time"] = { { "2024-02-29T23:59:60.123+01:00",
                          "2024-01-01t00:00:00z" },
                        { "2023-02-29T00:00:00Z", "2024-01-01 00:00:00Z",
                          "2024-13-01T00:00:00Z" } },
      date = { { "2024-02-29" }, { "2024-2-1", "2023-02-29" } },
      time = { { "10:20:30Z", "10:20:30.5-05:00" }, { "25:00:00Z", "10:20" } },
      email = { { "a.b+c@example.com" }, { "a@b@c", "a..b@c.com", "@c.com",
                                           "a@-c.com" } },
      uuid = { { "123e4567-e89b-12d3-a456-426614174000" },
               { "123e4567e89b12d3a456426614174000" } },
      ipv4 = { { "192.168.0.1" }, { "256.1.1.1", "1.2.3", "01.2.3.4" } },
      ipv6 = { { "::1", "2001:db8::8a2e:370:7334" }, { "1.2.3.4", "::g" } },
      hostname = { { "a-b.example.com" }, { "-a.com", "a..b" } },
      uri = { { "https://x.y/z?q", "urn:isbn:1" }, { "no scheme", "/rel" } },
    }
    for name, cases in pairs(formats) do
      for _, ok in ipairs(cases[1]) do
        valid({ format = name }, '"' .. ok .. '"')
      end
      for _, bad in ipairs(cases[2]) do
        invalid({ format = name }, '"' .. bad .. '"',
                { ": string is not a valid " .. name })
      end
    end
    valid({ format = "unknown-format" }, '"anything"')
    valid({ format = "email" }, "12") -- formats apply to strings only
  end)

  it("checks numbers", function()
    invalid({ minimum = 5 }, "4", { ": value must be >= 5" })
    valid({ minimum = 5 }, "5")
    invalid({ maximum = 5 }, "6", { ": value must be <= 5" })
    invalid({ exclusiveMinimum = 5 }, "5", { ": value must be > 5" })
    invalid({ exclusiveMaximum = 5 }, "5", { ": value must be < 5" })
    -- draft 4's boolean forms
    invalid({ minimum = 5, exclusiveMinimum = true }, "5",
            { ": value must be > 5" })
    invalid({ maximum = 5, exclusiveMaximum = true }, "5",
            { ": value must be < 5" })
    valid({ multipleOf = 0.01 }, "0.07")
    invalid({ multipleOf = 0.01 }, "0.075",
            { ": value must be a multiple of 0.01" })
    valid({ multipleOf = 3 }, "9")
    invalid({ multipleOf = 3 }, "10", { ": value must be a multiple of 3" })
    valid({ minimum = 5 }, '"not a number"')
  end)

  it("checks arrays", function()
    invalid({ minItems = 2 }, "[1]", { ": array must have at least 2 items" })
    invalid({ maxItems = 1 }, "[1,2]", { ": array must have at most 1 items" })
    valid({ uniqueItems = true }, '[1,"1",[1],{"a":1},{"a":2}]')
    invalid({ uniqueItems = true }, '[{"a":[1,{"b":2}]},{"a":[1,{"b":2}]}]',
            { ": array items must be unique (items 0 and 1 are equal)" })
    local tuple = { items = { { type = "string" }, { type = "integer" } },
                    additionalItems = false }
    valid(tuple, '["a",1]')
    valid(tuple, '["a"]')
    invalid(tuple, '["a",1,2]', { ": array must have at most 2 items" })
    valid({ items = { { type = "string" } },
            additionalItems = { type = "integer" } }, '["a",1,2]')
    invalid({ contains = { const = 3 } }, "[1,2]",
            { ": array must contain at least one item matching 'contains'" })
    valid({ contains = { const = 3 } }, "[1,3]")
    valid({ items = false }, "[]")
    invalid({ items = false }, "[1]", { "/0: no value is allowed here" })
  end)

  it("checks enum and const with deep equality", function()
    local s = { enum = { "a", 1, json.NULL, { x = { 1, 2 } } } }
    valid(s, '"a"')
    valid(s, "null")
    valid(s, '{"x":[1,2]}')
    invalid(s, '{"x":[2,1]}', { ": value must be one of the values of enum" })
    invalid({ const = { a = true } }, '{"a":true,"b":1}',
            { ": value must be equal to const" })
  end)

  it("checks combinators and conditionals", function()
    local one = { oneOf = { { type = "integer" }, { minimum = 2 } } }
    valid(one, "1")
    valid(one, "2.5")
    invalid(one, "3", { ": value must match exactly one schema in oneOf " ..
                        "(matched several)" })
    invalid(one, "1.5", { ": value must match exactly one schema in oneOf " ..
                          "(matched none)" })
    local any = { anyOf = { { type = "string" }, { type = "null" } } }
    valid(any, "null")
    invalid(any, "1", { ": value must match at least one schema in anyOf" })
    -- allOf reports each branch's errors
    invalid({ allOf = { { minimum = 5 }, { multipleOf = 2 } } }, "3", {
      ": value must be >= 5", ": value must be a multiple of 2",
    })
    invalid({ ["not"] = { type = "string" } }, '"x"',
            { ": value must not match the schema in 'not'" })
    local cond = {
      ["if"] = { properties = { kind = { const = "card" } } },
      ["then"] = { required = { "number" } },
      ["else"] = { required = { "iban" } },
    }
    valid(cond, '{"kind":"card","number":"4"}')
    invalid(cond, '{"kind":"card"}',
            { "/number: required property is missing" })
    invalid(cond, '{"kind":"sepa"}', { "/iban: required property is missing" })
  end)

  it("checks dependencies, propertyNames and property counts", function()
    local s = { dependencies = { a = { "b" }, c = { required = { "d" } } } }
    valid(s, '{"x":1}')
    invalid(s, '{"a":1,"c":1}', {
      "/b: property is required when 'a' is present",
      "/d: required property is missing",
    })
    invalid({ propertyNames = { maxLength = 2 } }, '{"abc":1}',
            { "/abc: string must be at most 2 characters long" })
    invalid({ minProperties = 2 }, '{"a":1}',
            { ": object must have at least 2 properties" })
    invalid({ maxProperties = 1 }, '{"a":1,"b":2}',
            { ": object must have at most 1 properties" })
  end)

  it("follows local $refs, recursively", function()
    local s = [[{
      "definitions": {
        "node": { "type": "object", "required": ["v"], "properties": {
          "v": { "$ref": "#/$defs/int" },
          "next": { "$ref": "#/definitions/node" } } }
      },
      "$defs": { "int": { "type": "integer" } },
      "$ref": "#/definitions/node",
      "type": "string"
    }]]
    -- $ref overrides its siblings ("type": "string" is ignored)
    valid(s, '{"v":1,"next":{"v":2}}')
    invalid(s, '{"v":1,"next":{"v":2,"next":{"v":"x"}}}',
            { "/next/next/v: expected integer, got string" })
    invalid(s, '{"v":1,"next":{}}', { "/next/v: required property is missing" })
    valid({ properties = { self = { ["$ref"] = "#" } }, type = "object" },
          '{"self":{"self":{}}}')
    invalid({ properties = { self = { ["$ref"] = "#" } }, type = "object" },
            '{"self":{"self":1}}',
            { "/self/self: expected object, got number" })
    valid({ properties = { a = { type = "integer" },
                           b = { ["$ref"] = "#/properties/a" } } }, '{"b":1}')
  end)

  it("takes boolean schemas", function()
    valid(true, '{"anything":1}')
    invalid(false, "1", { ": no value is allowed here" })
    invalid({ properties = { a = false } }, '{"a":1}',
            { "/a: no value is allowed here" })
  end)

  it("ignores unknown keywords and annotations", function()
    valid({ title = "t", description = "d", default = 1, examples = { 1 },
            ["$comment"] = "c", ["$schema"] = "x", whatever = true }, "1")
  end)

  it("reports schema errors with their path", function()
    local cases = {
      { { type = "strin" }, "#/type", "unknown type 'strin'" },
      { { properties = { a = { items = { { minItems = "2" } } } } },
        "#/properties/a/items/0/minItems", "expected a non-negative integer" },
      { { properties = { a = 1 } }, "#/properties/a",
        "a schema must be an object or a boolean" },
      { { patternProperties = { ["(x"] = {} } }, "#/patternProperties/(x",
        "invalid regex '(x'" },
      { { dependencies = { a = { 1 } } }, "#/dependencies/a/0",
        "expected a string" },
      { { uniqueItems = "yes" }, "#/uniqueItems", "expected a boolean" },
      { { enum = "a" }, "#/enum", "expected an array" },
      { { ["$ref"] = 1 }, "#/$ref", "$ref must be a string" },
      { { ["$ref"] = "#/definitions/x" }, "#/$ref",
        "cannot resolve $ref '#/definitions/x'" },
    }
    for _, c in ipairs(cases) do
      local v, err = jsonschema.compile(c[1])
      assert.is_nil(v)
      local prefix = "invalid JSON Schema at '" .. c[2] .. "': " .. c[3]
      assert.equal(prefix, err:sub(1, #prefix))
    end
  end)

  it("compiles once: the same schema value gives the same validator", function()
    local s = { type = "integer" }
    local a = assert(jsonschema.compile_cached(s))
    assert.equal(a, jsonschema.compile_cached(s))
    assert.not_equal(a, jsonschema.compile_cached({ type = "integer" }))
  end)
end)
