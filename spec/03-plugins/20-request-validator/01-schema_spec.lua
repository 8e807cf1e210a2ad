-- request-validator: config validation through luagate.config (defaults,
-- schemas as objects or JSON texts compiled at load, invalid schemas
-- reported with their path, content types, parameters, version).
local config = require "luagate.config"
local helpers = require "spec.helpers"

local PLUGINS = { helpers.root .. "/plugins" }


local function load(yaml)
  return config.load_string(yaml, "yaml", "test.yml",
                            { plugins_dirs = PLUGINS })
end


local function plugin_config(yaml)
  local conf, errs = load(yaml)
  assert.is_nil(errs)
  return conf.plugins[1].config
end


local function errors_of(body)
  local conf, errs = load([[
_format_version: "3.0"
plugins:
- name: request-validator
  config:
]] .. body)
  assert.is_nil(conf)
  return errs
end


describe("request-validator schema", function()
  it("fills the defaults", function()
    local c = plugin_config([[
_format_version: "3.0"
plugins:
- name: request-validator
  config:
    body_schema: { type: object }
]])
    assert.same({ type = "object" }, c.body_schema)
    assert.same({ "application/json" }, c.allowed_content_types)
    assert.is_true(c.content_type_parameter_validation)
    assert.is_false(c.verbose_response)
    assert.equal("draft7", c.version)
    assert.is_nil(c.parameter_schema)
  end)

  it("accepts every field, schemas as objects or JSON texts", function()
    local c = plugin_config([[
_format_version: "3.0"
plugins:
- name: request-validator
  config:
    version: draft4
    body_schema: '{"type": "object", "required": ["a"]}'
    allowed_content_types: ["application/json", "application/*+json",
                            "text/plain; charset=UTF-8", "*/*"]
    content_type_parameter_validation: false
    verbose_response: true
    parameter_schema:
    - name: id
      in: path
      required: true
      schema: '{"type": "integer"}'
      style: simple
      explode: false
    - name: tags
      in: query
      required: false
      schema: { type: array, items: { type: string } }
    - name: X-Token
      in: header
      required: true
]])
    assert.equal("draft4", c.version)
    assert.equal('{"type": "object", "required": ["a"]}', c.body_schema)
    assert.same({ "application/json", "application/*+json",
                  "text/plain; charset=UTF-8", "*/*" },
                c.allowed_content_types)
    assert.is_false(c.content_type_parameter_validation)
    assert.is_true(c.verbose_response)
    assert.equal(3, #c.parameter_schema)
    assert.same({ name = "id", ["in"] = "path", required = true,
                  schema = '{"type": "integer"}', style = "simple",
                  explode = false }, c.parameter_schema[1])
    assert.same({ name = "X-Token", ["in"] = "header", required = true },
                c.parameter_schema[3])
  end)

  it("needs body_schema or parameter_schema", function()
    assert.same({ "test.yml:5: plugins[0].config: at least one of these " ..
                  "fields must be non-empty: 'body_schema', " ..
                  "'parameter_schema'" },
                errors_of("    verbose_response: true\n"))
  end)

  it("reports an invalid schema with its path", function()
    local cases = {
      { "{ type: object, properties: { a: { type: strin } } }",
        "invalid JSON Schema at '#/properties/a/type': unknown type 'strin'" },
      { "{ properties: { a: { minLength: -1 } } }",
        "invalid JSON Schema at '#/properties/a/minLength': expected a " ..
        "non-negative integer" },
      { "{ items: [ { type: string }, { pattern: '(a' } ] }",
        "invalid JSON Schema at '#/items/1/pattern': invalid regex '(a': " ..
        "pcre2_compile() failed: missing closing parenthesis in \"(a\"" },
      { "{ $ref: '#/definitions/nope' }",
        "invalid JSON Schema at '#/$ref': cannot resolve $ref " ..
        "'#/definitions/nope'" },
      { "{ $ref: 'http://example.com/s.json' }",
        "invalid JSON Schema at '#/$ref': only references within the " ..
        "schema ('#...') are supported, got 'http://example.com/s.json'" },
      { "{ definitions: { a: { $ref: '#/definitions/b' }, " ..
        "b: { $ref: '#/definitions/a' } } }",
        "invalid JSON Schema at '#/definitions/a': circular $ref " ..
        "'#/definitions/a'" },
      { "{ definitions: { unused: { type: [string, 3] } } }",
        "invalid JSON Schema at '#/definitions/unused/type/1': unknown " ..
        "type '3'" },
      { "{ anyOf: [] }",
        "invalid JSON Schema at '#/anyOf': expected a non-empty array of " ..
        "schemas" },
      { "{ required: a }",
        "invalid JSON Schema at '#/required': expected an array of strings" },
      { "{ multipleOf: 0 }",
        "invalid JSON Schema at '#/multipleOf': expected a number greater " ..
        "than 0" },
      { "[ { name: { type: string, required: true } } ]",
        "invalid JSON Schema at '#': a schema must be an object or a " ..
        "boolean" },
      { "'{\"type\": \"object\",}'",
        "invalid JSON Schema: not valid JSON: expected a string key" },
      { "'{\"properties\": {\"a\": {\"maximum\": \"10\"}}}'",
        "invalid JSON Schema at '#/properties/a/maximum': expected a number" },
      { "12", "expected a JSON Schema (an object, a boolean or a JSON text)" },
    }
    for _, case in ipairs(cases) do
      local errs = errors_of("    body_schema: " .. case[1] .. "\n")
      assert.equal(1, #errs)
      local expected = "test.yml:5: plugins[0].config.body_schema: " .. case[2]
      assert.equal(expected, errs[1]:sub(1, #expected), case[1])
    end
  end)

  it("accepts boolean schemas and draft 4's exclusiveMinimum", function()
    assert.is_true(plugin_config([[
_format_version: "3.0"
plugins:
- name: request-validator
  config:
    body_schema: true
]]).body_schema)
    plugin_config([[
_format_version: "3.0"
plugins:
- name: request-validator
  config:
    version: draft4
    body_schema: { minimum: 1, exclusiveMinimum: true }
]])
  end)

  it("refuses Kong's own schema format", function()
    assert.same({ "test.yml:6: plugins[0].config.version: version 'kong' " ..
                  "(Kong's own schema format) is not supported: use a JSON " ..
                  "Schema draft (draft4, draft6, draft7)" },
                errors_of([[
    body_schema: { type: object }
    version: kong
]]))
    assert.same({ "test.yml:6: plugins[0].config.version: expected one of: " ..
                  "kong, draft4, draft6, draft7" },
                errors_of([[
    body_schema: { type: object }
    version: draft2020
]]))
  end)

  it("checks allowed_content_types", function()
    assert.same({ "test.yml:6: plugins[0].config.allowed_content_types[0]: " ..
                  "invalid content type 'json'" },
                errors_of([[
    body_schema: { type: object }
    allowed_content_types: [json]
]]))
    assert.same({ "test.yml:6: plugins[0].config.allowed_content_types[0]: " ..
                  "invalid content type parameter in 'application/json; " ..
                  "charset'" },
                errors_of([[
    body_schema: { type: object }
    allowed_content_types: ["application/json; charset"]
]]))
  end)

  it("checks parameters", function()
    assert.same({
      "test.yml:6: plugins[0].config.parameter_schema[0].in: required " ..
      "field missing",
      "test.yml:6: plugins[0].config.parameter_schema[0].required: " ..
      "required field missing",
    }, errors_of([[
    parameter_schema:
    - name: a
]]))
    assert.same({ "test.yml:7: plugins[0].config.parameter_schema[0].in: " ..
                  "expected one of: query, header, path" },
                errors_of([[
    parameter_schema:
    - name: a
      in: cookie
      required: true
]]))
    assert.same({ "test.yml:9: plugins[0].config.parameter_schema[0]." ..
                  "schema: " ..
                  "invalid JSON Schema at '#/type': unknown type 'int'" },
                errors_of([[
    parameter_schema:
    - name: a
      in: query
      required: true
      schema: '{"type": "int"}'
]]))
    assert.same({ "test.yml:9: plugins[0].config.parameter_schema[0].style: " ..
                  "expected one of: form, simple, label, matrix, " ..
                  "spaceDelimited, pipeDelimited, deepObject" },
                errors_of([[
    parameter_schema:
    - name: a
      in: query
      required: true
      style: commas
]]))
  end)
end)
