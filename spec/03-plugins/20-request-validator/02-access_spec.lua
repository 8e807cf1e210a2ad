-- request-validator through the real binary and the mock upstream: valid
-- requests proxied untouched, Content-Type checks, JSON body validation
-- (terse and verbose answers), query / header / path parameters converted
-- to their schema's type, and bad input.
local helpers = require "spec.helpers"

local fmt = string.format

local MSG_BODY = "request body doesn't conform to schema"
local MSG_PARAM = "request param doesn't conform to schema"
local MSG_CT = "specified Content-Type is not allowed"


local ORDER = {
  type = "object",
  required = { "customer", "items" },
  additionalProperties = false,
  properties = {
    customer = { ["$ref"] = "#/definitions/customer" },
    items = {
      type = "array", minItems = 1,
      items = {
        type = "object", required = { "sku", "qty" },
        properties = {
          sku = { type = "string", pattern = "^[A-Z]{3}-\\d+$" },
          qty = { type = "integer", minimum = 1, maximum = 99 },
        },
      },
    },
    note = { type = "string", maxLength = 5 },
    tags = { type = "array", uniqueItems = true },
  },
  definitions = {
    customer = {
      type = "object", required = { "email" },
      properties = {
        email = { type = "string", format = "email" },
        id = { type = "string", format = "uuid" },
      },
    },
  },
}


describe("request-validator", function()
  local mock, gw

  lazy_setup(function()
    mock = helpers.mock_upstream()
    local function route(name, path, conf)
      return { name = name, paths = { path },
               plugins = { { name = "request-validator", config = conf } } }
    end
    gw = assert(helpers.start_luagate({
      config = {
        _format_version = "3.0",
        services = {
          { name = "mock", url = fmt("http://127.0.0.1:%d", mock.port),
            routes = {
              route("terse", "/terse", { body_schema = ORDER }),
              route("verbose", "/verbose", {
                body_schema = ORDER, verbose_response = true,
              }),
              -- Kong's form: the schema as a JSON text
              route("text", "/text", {
                body_schema = '{"type":"object","properties":{"a":' ..
                              '{"type":"array","maxItems":1}}}',
                verbose_response = true,
              }),
              route("types", "/types", {
                body_schema = { type = "object" },
                allowed_content_types = {
                  "application/json", "application/*+json",
                  "text/plain; charset=utf-8",
                  "application/x-www-form-urlencoded",
                },
              }),
              route("loose", "/loose", {
                body_schema = { type = "object" },
                content_type_parameter_validation = false,
              }),
              route("params", "~/params/(?<id>[^/]+)$", {
                verbose_response = true,
                parameter_schema = {
                  { name = "id", ["in"] = "path", required = true,
                    schema = '{"type": "integer", "minimum": 1}' },
                  { name = "limit", ["in"] = "query", required = false,
                    schema = { type = "integer", maximum = 100 } },
                  { name = "tags", ["in"] = "query", required = false,
                    schema = { type = "array", maxItems = 3,
                               items = { type = "integer" } } },
                  { name = "flag", ["in"] = "query", required = false,
                    schema = { type = "boolean" } },
                  { name = "X-Request-Token", ["in"] = "header",
                    required = true,
                    schema = { type = "string", minLength = 8 } },
                  { name = "X-Ratio", ["in"] = "header", required = false,
                    schema = { type = "number", exclusiveMinimum = 0 } },
                  { name = "pipes", ["in"] = "query", required = false,
                    style = "pipeDelimited",
                    schema = { type = "array",
                               items = { enum = { "a", "b" } } } },
                },
              }),
              route("params-terse", "/params-terse", {
                parameter_schema = {
                  { name = "limit", ["in"] = "query", required = true,
                    schema = { type = "integer" } },
                },
              }),
              route("both", "/both", {
                body_schema = { type = "object", required = { "a" } },
                parameter_schema = {
                  { name = "v", ["in"] = "query", required = true },
                },
              }),
            } },
        },
      },
    }))
  end)

  lazy_teardown(function()
    helpers.stop_luagate(gw)
    mock.stop()
  end)

  local function send(method, path, body, headers)
    local h = { ["Content-Type"] = "application/json" }
    for k, v in pairs(headers or {}) do
      h[k] = v
    end
    if h["Content-Type"] == false then
      h["Content-Type"] = nil
    end
    return helpers.request_once(gw.proxy_port, {
      method = method, path = path, body = body, headers = h,
    })
  end

  local function json(res, status)
    return assert(helpers.json_decode(assert.res_status(status, res)))
  end

  local GOOD = '{"customer":{"email":"a@example.com","id":' ..
               '"123e4567-e89b-12d3-a456-426614174000"},' ..
               '"items":[{"sku":"ABC-1","qty":2}],"tags":[]}'

  describe("body", function()
    it("proxies a valid body untouched", function()
      local e = json(send("POST", "/terse", GOOD), 200)
      assert.equal(GOOD, e.body)
      assert.equal("POST", e.method)
    end)

    it("answers 400 with Kong's message", function()
      local body = json(send("POST", "/terse", '{"customer":{}}'), 400)
      assert.same({ message = MSG_BODY }, body)
    end)

    it("lists every failure with its JSON pointer when verbose", function()
      local body = json(send("POST", "/verbose",
        '{"customer":{"email":"nope","id":"x"},' ..
        '"items":[{"sku":"abc","qty":0},' ..
        '{"qty":100}],"note":"too long","tags":[1,1],"extra":1}'), 400)
      assert.equal(MSG_BODY, body.message)
      assert.same({
        { path = "/customer/email", message = "string is not a valid email" },
        { path = "/customer/id", message = "string is not a valid uuid" },
        { path = "/items/0/qty", message = "value must be >= 1" },
        { path = "/items/0/sku",
          message = "string does not match pattern '^[A-Z]{3}-\\d+$'" },
        { path = "/items/1/sku", message = "required property is missing" },
        { path = "/items/1/qty", message = "value must be <= 99" },
        { path = "/note",
          message = "string must be at most 5 characters long" },
        { path = "/tags",
          message = "array items must be unique (items 0 and 1 are equal)" },
        { path = "/extra", message = "additional property is not allowed" },
      }, body.errors)
    end)

    it("tells [] from {}", function()
      local body = json(send("POST", "/verbose", '{"customer":{"email":' ..
                             '"a@b.co"},"items":{}}'), 400)
      assert.same({ { path = "/items",
                      message = "expected array, got object" } },
                  body.errors)
      body = json(send("POST", "/verbose", "[]"), 400)
      assert.same({ { path = "", message = "expected object, got array" } },
                  body.errors)
      body = json(send("POST", "/verbose", '{"customer":{"email":"a@b.co"},' ..
                       '"items":[]}'), 400)
      assert.same({ { path = "/items",
                      message = "array must have at least 1 items" } },
                  body.errors)
    end)

    it("takes the schema as a JSON text", function()
      json(send("POST", "/text", '{"a":[1]}'), 200)
      local body = json(send("POST", "/text", '{"a":[1,2]}'), 400)
      assert.same({ { path = "/a",
                      message = "array must have at most 1 items" } },
                  body.errors)
    end)

    it("refuses a body that is not JSON", function()
      assert.same({ message = MSG_BODY },
                  json(send("POST", "/terse", "{x"), 400))
      local body = json(send("POST", "/verbose", '{"a":1,}'), 400)
      assert.equal(MSG_BODY, body.message)
      assert.equal(1, #body.errors)
      assert.equal("", body.errors[1].path)
      assert.matches("^request body is not valid JSON: ",
                     body.errors[1].message)
      -- no body at all is not a JSON document either
      assert.same({ message = MSG_BODY },
                  json(send("POST", "/terse", nil), 400))
    end)
  end)

  describe("Content-Type", function()
    it("must be allowed", function()
      assert.same({ message = MSG_CT },
                  json(send("POST", "/terse", GOOD,
                            { ["Content-Type"] = "text/plain" }), 400))
      assert.same({ message = MSG_CT },
                  json(send("POST", "/terse", GOOD,
                            { ["Content-Type"] = false }), 400))
      assert.same({ message = MSG_CT },
                  json(send("GET", "/terse", nil,
                            { ["Content-Type"] = false }), 400))
      assert.same({ message = MSG_CT },
                  json(send("POST", "/terse", GOOD,
                            { ["Content-Type"] = "garbage" }), 400))
    end)

    it("compares the type case-insensitively, the parameter strictly",
       function()
      json(send("POST", "/terse", GOOD,
                { ["Content-Type"] = "Application/JSON" }), 200)
      assert.same({ message = MSG_CT },
                  json(send("POST", "/terse", GOOD, {
                    ["Content-Type"] = "application/json; charset=utf-8",
                  }), 400))
      -- content_type_parameter_validation = false: parameters are ignored
      json(send("POST", "/loose", "{}", {
        ["Content-Type"] = "application/json; charset=utf-8",
      }), 200)
    end)

    it("validates +json bodies and skips other allowed types", function()
      json(send("POST", "/types", "{}", {
        ["Content-Type"] = "application/merge-patch+json",
      }), 200)
      assert.same({ message = MSG_BODY }, json(send("POST", "/types", "[]", {
        ["Content-Type"] = "application/merge-patch+json",
      }), 400))
      -- allowed, not JSON: proxied without looking at the body
      local e = json(send("POST", "/types", "not json at all", {
        ["Content-Type"] = "text/plain; charset=UTF-8",
      }), 200)
      assert.equal("not json at all", e.body)
      json(send("POST", "/types", "a=1", {
        ["Content-Type"] = "application/x-www-form-urlencoded",
      }), 200)
    end)
  end)

  describe("parameters", function()
    local TOKEN = { ["X-Request-Token"] = "12345678", ["Content-Type"] = false }

    it("accepts valid parameters, converted to their types", function()
      local e = json(send("GET", "/params/42?limit=10&tags=1,2&flag=true" ..
                          "&pipes=a|b", nil, TOKEN), 200)
      -- validated, not changed: the upstream gets the request's texts
      assert.equal("/params/42", e.headers["x-forwarded-path"])
      assert.equal("10", e.query.limit)
      assert.equal("1,2", e.query.tags)
      assert.equal("true", e.query.flag)
      e = json(send("GET", "/params/7?tags=1&tags=2", nil,
                    { ["X-Request-Token"] = "12345678", ["X-Ratio"] = "0.5",
                      ["Content-Type"] = false }), 200)
      assert.equal("2", e.query.tags[2])
    end)

    it("lists every invalid parameter with its place", function()
      local body = json(send("GET", "/params/0?limit=1000&tags=1,x,3,4" ..
                             "&flag=yes&pipes=a|c", nil,
                             { ["X-Request-Token"] = "short",
                               ["X-Ratio"] = "0", ["Content-Type"] = false }),
                        400)
      assert.equal(MSG_PARAM, body.message)
      assert.same({
        { path = "/path/id", message = "value must be >= 1" },
        { path = "/query/limit", message = "value must be <= 100" },
        { path = "/query/tags", message = "array must have at most 3 items" },
        { path = "/query/tags/1", message = "expected integer, got string" },
        { path = "/query/flag", message = "expected boolean, got string" },
        { path = "/header/X-Request-Token",
          message = "string must be at least 8 characters long" },
        { path = "/header/X-Ratio", message = "value must be > 0" },
        { path = "/query/pipes/1",
          message = "value must be one of the values of enum" },
      }, body.errors)
    end)

    it("refuses a missing required parameter", function()
      local body = json(send("GET", "/params/5", nil,
                             { ["Content-Type"] = false }), 400)
      assert.same({ message = MSG_PARAM, errors = {
        { path = "/header/X-Request-Token",
          message = "required parameter value not found in request" },
      } }, body)
    end)

    it("does not read a non-integer as an integer", function()
      for _, v in ipairs({ "1.5", "0x10", "1e3x", "nan", "" }) do
        local body = json(send("GET", "/params/" .. (v == "" and "%20" or v),
                               nil, TOKEN), 400)
        assert.equal("/path/id", body.errors[1].path, v)
      end
    end)

    it("answers tersely without verbose_response", function()
      assert.same({ message = MSG_PARAM },
                  json(send("GET", "/params-terse?limit=x", nil,
                            { ["Content-Type"] = false }), 400))
      assert.same({ message = MSG_PARAM },
                  json(send("GET", "/params-terse", nil,
                            { ["Content-Type"] = false }), 400))
      json(send("GET", "/params-terse?limit=3", nil,
                { ["Content-Type"] = false }), 200)
    end)

    it("checks parameters before the body", function()
      assert.same({ message = MSG_PARAM },
                  json(send("POST", "/both", "{}"), 400))
      assert.same({ message = MSG_BODY },
                  json(send("POST", "/both?v=1", "{}"), 400))
      json(send("POST", "/both?v=1", '{"a":1}'), 200)
    end)
  end)
end)
