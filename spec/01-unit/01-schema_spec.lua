local Schema = require "luagate.schema"
local typedefs = require "kong.db.schema.typedefs"
local cjson = require "cjson"


local function new(fields, extra)
  local def = { name = "test", fields = fields }
  for k, v in pairs(extra or {}) do
    def[k] = v
  end
  return Schema.new(def)
end


describe("luagate.schema", function()

  describe("types", function()
    local s = new({
      { s = { type = "string" } },
      { n = { type = "number" } },
      { i = { type = "integer" } },
      { b = { type = "boolean" } },
      { a = { type = "array", elements = { type = "integer" } } },
      { set = { type = "set", elements = { type = "string" } } },
      { m = { type = "map", keys = { type = "string" },
              values = { type = "number" } } },
      { r = { type = "record", fields = { { x = { type = "string" } } } } },
      { f = { type = "function" } },
      { j = { type = "json" } },
    })

    it("accepts well-typed values", function()
      local out, err = s:validate({
        s = "x", n = 1.5, i = 3, b = false, a = { 1, 2 },
        set = { "a", "b", "a" }, m = { k = 1 }, r = { x = "y" },
        f = print, j = { any = { 1 } },
      })
      assert.is_nil(err)
      assert.same({ "a", "b" }, out.set)
      assert.same({ k = 1 }, out.m)
      assert.same({ x = "y" }, out.r)
    end)

    it("reports Kong-like type errors for every field", function()
      local _, err = s:validate({
        s = 1, n = "1", i = 1.5, b = "yes", a = { x = 1 }, set = "a",
        m = "m", r = { "x" }, f = 1,
      })
      assert.same({
        s = "expected a string",
        n = "expected a number",
        i = "expected an integer",
        b = "expected a boolean",
        a = "expected an array",
        set = "expected a set",
        m = "expected a map",
        r = "expected a record",
        f = "expected a function",
      }, err)
    end)

    it("reports element errors by index", function()
      local _, err = s:validate({ a = { 1, "two", 3, 4.5 } })
      assert.same({ a = { [2] = "expected an integer",
                          [4] = "expected an integer" } }, err)
    end)

    it("reports unknown fields", function()
      local _, err = s:validate({ nope = 1, r = { x = "a", y = 2 } })
      assert.same({ nope = "unknown field", r = { y = "unknown field" } },
                  err)
    end)

    it("rejects empty strings by default", function()
      local _, err = s:validate({ s = "" })
      assert.same({ s = "length must be at least 1" }, err)
    end)

    it("treats nulls as absent", function()
      local out, err = s:validate({ s = cjson.null, r = cjson.null })
      assert.is_nil(err)
      assert.is_nil(out.s)
    end)
  end)

  describe("required and defaults", function()
    local s = new({
      { name = { type = "string", required = true } },
      { port = { type = "integer", default = 80 } },
      { list = { type = "array", default = { "a" },
                 elements = { type = "string" } } },
      { rec = { type = "record", fields = {
          { host = { type = "string", default = "localhost" } },
          { port = { type = "integer", default = 6379 } },
      } } },
    })

    it("fills defaults, including nested records", function()
      local out, err = s:validate({ name = "x" })
      assert.is_nil(err)
      assert.same({ name = "x", port = 80, list = { "a" },
                    rec = { host = "localhost", port = 6379 } }, out)
    end)

    it("fills defaults inside given records", function()
      local out = s:validate({ name = "x", rec = { port = 1 } })
      assert.same({ host = "localhost", port = 1 }, out.rec)
    end)

    it("reports missing required fields", function()
      local _, err = s:validate({})
      assert.same({ name = "required field missing" }, err)
    end)

    it("does not share default tables between results", function()
      local a = s:validate({ name = "a" })
      a.list[1] = "changed"
      local b = s:validate({ name = "b" })
      assert.same({ "a" }, b.list)
    end)
  end)

  describe("validators", function()
    local function check(field, value)
      local _, err = new({ { v = field } }):validate({ v = value })
      return err and err.v
    end

    it("between", function()
      assert.equal("value should be between 0 and 100",
                   check({ type = "integer", between = { 0, 100 } }, 101))
      assert.is_nil(check({ type = "integer", between = { 0, 100 } }, 100))
    end)

    it("eq, ne, gt", function()
      assert.equal("value must be 1", check({ type = "number", eq = 1 }, 2))
      assert.equal("value must not be 2",
                   check({ type = "number", ne = 2 }, 2))
      assert.equal("value must be greater than 0",
                   check({ type = "number", gt = 0 }, 0))
    end)

    it("lengths", function()
      assert.equal("length must be 2",
                   check({ type = "string", len_eq = 2 }, "abc"))
      assert.equal("length must be at least 3",
                   check({ type = "string", len_min = 3 }, "ab"))
      assert.equal("length must not exceed 1",
                   check({ type = "array", len_max = 1,
                           elements = { type = "number" } }, { 1, 2 }))
      assert.is_nil(check({ type = "string", len_min = 0 }, ""))
    end)

    it("match family (Lua patterns)", function()
      assert.equal("invalid value: ab1",
                   check({ type = "string", match = "^%a+$" }, "ab1"))
      assert.equal("invalid value: abc",
                   check({ type = "string", not_match = "b" }, "abc"))
      assert.equal("no digits",
                   check({ type = "string", match_all = {
                     { pattern = "%d", err = "no digits" } } }, "abc"))
      assert.equal("has a space",
                   check({ type = "string", match_none = {
                     { pattern = " ", err = "has a space" } } }, "a b"))
      assert.equal("bad start",
                   check({ type = "string", match_any = {
                     patterns = { "^a", "^b" }, err = "bad start" } }, "c"))
      assert.equal("should start with: /",
                   check({ type = "string", starts_with = "/" }, "x"))
    end)

    it("one_of, not_one_of, contains", function()
      assert.equal("expected one of: x, y",
                   check({ type = "string", one_of = { "x", "y" } }, "z"))
      assert.equal("must not be one of: x, y",
                   check({ type = "string", not_one_of = { "x", "y" } }, "x"))
      assert.equal("expected to contain: a",
                   check({ type = "array", elements = { type = "string" },
                           contains = "a" }, { "b" }))
    end)

    it("is_regex, uuid, timestamp", function()
      assert.matches("not a valid regex: a%(",
                     check({ type = "string", is_regex = true }, "a("))
      assert.is_nil(check({ type = "string", is_regex = true }, "a(b)+"))
      assert.equal("expected a valid UUID",
                   check({ type = "string", uuid = true }, "nope"))
      assert.is_nil(check(typedefs.uuid,
                          "6f1d7e2a-1b2c-4d3e-8f9a-0b1c2d3e4f5a"))
      assert.equal("expected a valid timestamp",
                   check({ type = "number", timestamp = true }, -1))
    end)

    it("custom_validator", function()
      local f = { type = "string", custom_validator = function(v)
        if v == "bad" then
          return nil, "is bad"
        end
        return true
      end }
      assert.equal("is bad", check(f, "bad"))
      assert.is_nil(check(f, "good"))
    end)
  end)

  describe("entity checks", function()
    local fields = {
      { a = { type = "string" } },
      { b = { type = "string" } },
      { c = { type = "string" } },
    }
    local function check(ec, input)
      local _, err = new(fields, { entity_checks = { ec } }):validate(input)
      return err
    end

    it("at_least_one_of", function()
      assert.same({ ["@entity"] = {
        "at least one of these fields must be non-empty: 'a', 'b'" } },
        check({ at_least_one_of = { "a", "b" } }, { c = "x" }))
      assert.is_nil(check({ at_least_one_of = { "a", "b" } }, { b = "x" }))
    end)

    it("only_one_of", function()
      assert.same({ ["@entity"] = {
        "only one of these fields must be non-empty: 'a', 'b'" } },
        check({ only_one_of = { "a", "b" } }, { a = "x", b = "y" }))
    end)

    it("mutually_required and mutually_exclusive", function()
      assert.same({ ["@entity"] = {
        "all or none of these fields must be set: 'a', 'b'" } },
        check({ mutually_required = { "a", "b" } }, { a = "x" }))
      assert.same({ ["@entity"] = {
        "only one or none of these fields must be set: 'a', 'b'" } },
        check({ mutually_exclusive = { "a", "b" } }, { a = "x", b = "y" }))
    end)

    it("distinct", function()
      assert.same({ ["@entity"] = {
        "values of these fields must be distinct: 'a', 'b'" } },
        check({ distinct = { "a", "b" } }, { a = "x", b = "x" }))
    end)

    it("conditional puts the error on then_field", function()
      local ec = { conditional = { if_field = "a", if_match = { eq = "on" },
                                   then_field = "b",
                                   then_match = { required = true } } }
      assert.same({ b = "required field missing" }, check(ec, { a = "on" }))
      assert.is_nil(check(ec, { a = "off" }))
    end)

    it("conditional_at_least_one_of", function()
      local ec = { conditional_at_least_one_of = {
        if_field = "a", if_match = { eq = "on" },
        then_at_least_one_of = { "b", "c" },
        then_err = "must set one of %s when 'a' is 'on'",
      } }
      assert.same({ ["@entity"] = {
        "must set one of 'b', 'c' when 'a' is 'on'" } },
        check(ec, { a = "on" }))
      assert.is_nil(check(ec, { a = "on", c = "x" }))
    end)

    it("custom_entity_check", function()
      local ec = { custom_entity_check = {
        field_sources = { "a" },
        fn = function(e)
          return e.a ~= "no", "a says no"
        end,
      } }
      assert.same({ ["@entity"] = { "a says no" } }, check(ec, { a = "no" }))
    end)

    it("supports dotted paths into records", function()
      local s = Schema.new({
        name = "plugin",
        fields = { { config = { type = "record", fields = {
          { policy = { type = "string", default = "local" } },
          { redis = { type = "record", fields = {
            { host = { type = "string" } } } } },
        } } } },
        entity_checks = { { conditional = {
          if_field = "config.policy", if_match = { eq = "redis" },
          then_field = "config.redis.host",
          then_match = { required = true } } } },
      })
      local _, err = s:validate({ config = { policy = "redis" } })
      assert.same({ config = { redis = { host = "required field missing" } } },
                  err)
    end)
  end)

  describe("shorthand_fields", function()
    local s = new({
      { redis = { type = "record", fields = {
        { host = { type = "string" } },
        { port = { type = "integer", default = 6379 } },
      } } },
    }, { shorthand_fields = { { redis_host = {
      type = "string",
      func = function(v)
        return { redis = { host = v } }
      end,
    } } } })

    it("maps the shorthand to canonical fields", function()
      local out, err = s:validate({ redis_host = "r1" })
      assert.is_nil(err)
      assert.same({ redis = { host = "r1", port = 6379 } }, out)
    end)

    it("lets explicit fields win", function()
      local out = s:validate({ redis_host = "r1", redis = { host = "r2" } })
      assert.equal("r2", out.redis.host)
    end)

    it("validates the shorthand value", function()
      local _, err = s:validate({ redis_host = 1 })
      assert.same({ redis_host = "expected a string" }, err)
    end)
  end)

  describe("flatten_errors", function()
    it("gives 0-based paths and entity errors on the parent", function()
      local flat = Schema.flatten_errors({
        paths = { [2] = "bad" },
        ["@entity"] = { "whole" },
        r = { x = "nested" },
      }, "routes[0]")
      assert.same({
        { path = "routes[0]", msg = "whole" },
        { path = "routes[0].paths[1]", msg = "bad" },
        { path = "routes[0].r.x", msg = "nested" },
      }, flat)
    end)
  end)

  describe("typedefs", function()
    it("are callable with overrides and leave the original alone", function()
      local h = typedefs.host { required = true }
      assert.is_true(h.required)
      assert.is_nil(typedefs.host.required)
    end)

    it("validate hosts, ports, paths, ips", function()
      local s = new({
        { host = typedefs.host }, { port = typedefs.port },
        { path = typedefs.path }, { ip = typedefs.ip },
        { cidr = typedefs.cidr }, { either = typedefs.ip_or_cidr },
        { header = typedefs.header_name }, { method = typedefs.http_method },
        { url = typedefs.url },
      })
      local _, err = s:validate({
        host = "bad host", port = 70000, path = "/a//b", ip = "1.2.3.400",
        cidr = "10.0.0.0/33", either = "x", header = "bad header",
        method = "get", url = "nope",
      })
      assert.same({
        host = "invalid hostname: bad host",
        port = "value should be between 0 and 65535",
        path = "must not have empty segments",
        ip = "not an ip address: 1.2.3.400",
        cidr = "invalid cidr range: 10.0.0.0/33",
        either = "invalid ip or cidr range: 'x'",
        header = "bad header name 'bad header', allowed characters are " ..
                 "A-Z, a-z, 0-9, '_', and '-'",
        method = "invalid value: get",
        url = "missing scheme in url",
      }, err)
      local out, err2 = s:validate({
        host = "a.example.com", port = 8080, path = "/a/b", ip = "::1",
        cidr = "10.0.0.0/8", either = "2001:db8::/32", header = "X-Foo",
        method = "GET", url = "https://x.example.com:8443/p",
      })
      assert.is_nil(err2)
      assert.equal("::1", out.ip)
    end)

    it("no_consumer forbids a value", function()
      local s = new({ { consumer = typedefs.no_consumer } })
      assert.is_nil(select(2, s:validate({})))
      local _, err = s:validate({ consumer = { id = "x" } })
      assert.same({ consumer = "value must be null" }, err)
    end)

    it("protocols_http has Kong's default", function()
      local out = new({ { protocols = typedefs.protocols_http } }):validate({})
      assert.same({ "grpc", "grpcs", "http", "https" }, out.protocols)
    end)
  end)
end)
