local uri = require("luagate.ngx.uri")


describe("luagate.ngx.uri", function()

  describe("escape_uri()", function()
    it("escapes a URI component by default (type 2)", function()
      assert.equal("a%20b%2Fc%3Fd%23e%25f%26g%3Dh%2Bi",
                   uri.escape_uri("a b/c?d#e%f&g=h+i"))
      assert.equal("%7C%60%40%5B%5D%7B%7D%22%3C%3E%5C%5E%2C%3B%3A%24",
                   uri.escape_uri("|`@[]{}\"<>\\^,;:$"))
      assert.equal("%C3%A9%00%7F%FF", uri.escape_uri("é\0\127\255"))
      assert.equal("%C3%A9", uri.escape_uri("é", 2))
    end)

    it("keeps unreserved characters and ! * ' ( )", function()
      local keep = "AZaz09-._~!*'()"
      assert.equal(keep, uri.escape_uri(keep))
    end)

    it("escapes only space # % ? and controls / high bytes with type 0",
       function()
      assert.equal("/a%20b/c%3Fd%23e%25f&g=h+i|@:",
                   uri.escape_uri("/a b/c?d#e%f&g=h+i|@:", 0))
      assert.equal("%00%1F%7F%C3%A9", uri.escape_uri("\0\31\127é", 0))
    end)

    it("coerces non-strings", function()
      assert.equal("", uri.escape_uri(nil))
      assert.equal("12", uri.escape_uri(12))
    end)

    it("raises on a bad type", function()
      assert.has_error(function() uri.escape_uri("a", 10) end,
                       "\"type\" 10 out of range")
      assert.has_error(function() uri.escape_uri("a", true) end,
                       "\"type\" is not a number")
    end)
  end)


  describe("unescape_uri()", function()
    it("decodes %XX and +", function()
      assert.equal("b r56 7", uri.unescape_uri("b%20r56+7"))
      assert.equal("AJJ/é", uri.unescape_uri("%41%4a%4A%2F%C3%A9"))
      assert.equal("plain", uri.unescape_uri("plain"))
    end)

    it("keeps invalid escapes as they are", function()
      assert.equal("try %search% %again%",
                   uri.unescape_uri("try %search%%20%again%"))
      assert.equal("%ua% %au", uri.unescape_uri("%ua%%20%au"))
      assert.equal("%a", uri.unescape_uri("%a"))
      assert.equal("%u", uri.unescape_uri("%u"))
      assert.equal("%", uri.unescape_uri("%"))
      assert.equal("good job%", uri.unescape_uri("good%20job%"))
    end)

    it("round-trips escape_uri", function()
      local t = {}
      for i = 0, 255 do
        t[#t + 1] = string.char(i)
      end
      local all = table.concat(t)
      assert.equal(all, uri.unescape_uri(uri.escape_uri(all)))
    end)

    it("coerces non-strings", function()
      assert.equal("", uri.unescape_uri(nil))
      assert.equal("1", uri.unescape_uri(1))
    end)
  end)


  describe("encode_args()", function()
    it("encodes keys and values as URI components", function()
      assert.equal("b%20r=hello%20world&foo=3",
                   uri.encode_args({ foo = 3, ["b r"] = "hello world" }))
    end)

    it("repeats a key for array values", function()
      assert.equal("baz=32&baz=hello",
                   uri.encode_args({ baz = { 32, "hello" } }))
    end)

    it("writes true as a bare key and skips false and {}", function()
      assert.equal("a&b=1", uri.encode_args({ a = true, b = 1 }))
      assert.equal("b=1", uri.encode_args({ a = false, b = 1, c = {} }))
      assert.equal("a&a=x", uri.encode_args({ a = { true, false, "x" } }))
      assert.equal("", uri.encode_args({}))
    end)

    it("sorts keys for a deterministic output", function()
      assert.equal("a=1&b=2&c=3", uri.encode_args({ c = 3, a = 1, b = 2 }))
    end)

    it("raises on bad keys and values", function()
      assert.has_error(function() uri.encode_args("x") end)
      assert.has_error(function() uri.encode_args({ [1] = "a" }) end,
                       "attempt to use number as query arg key")
      assert.has_error(function() uri.encode_args({ a = print }) end,
                       "attempt to use function as query arg value")
    end)
  end)


  describe("decode_args()", function()
    it("decodes pairs, bare keys and empty values", function()
      assert.same({ a = "1", b = true, c = "" },
                  uri.decode_args("a=1&b&c="))
    end)

    it("collects repeated keys into arrays", function()
      assert.same({ a = { "1", true, "3" } },
                  uri.decode_args("a=1&a&a=3"))
    end)

    it("unescapes keys and values", function()
      assert.same({ ["a b"] = "1a 2", e = "x=y" },
                  uri.decode_args("a%20b=1%61+2&e=x=y"))
    end)

    it("ignores empty keys and empty pairs", function()
      assert.same({ x = "1" }, uri.decode_args("=hello&&=world&x=1&"))
      assert.same({}, uri.decode_args(""))
    end)

    it("is the inverse of encode_args", function()
      local t = { a = { "1", "2" }, ["k y"] = "v&=%", flag = true }
      assert.same(t, uri.decode_args(uri.encode_args(t)))
    end)

    it("stops after max_args (default 100, 0 = no limit)", function()
      local parts = {}
      for i = 1, 150 do
        parts[i] = "k" .. i .. "=" .. i
      end
      local s = table.concat(parts, "&")
      local n = 0
      local args, err = uri.decode_args(s)
      for _ in pairs(args) do
        n = n + 1
      end
      assert.equal(100, n)
      assert.equal("truncated", err)

      args, err = uri.decode_args(s, 0)
      n = 0
      for _ in pairs(args) do
        n = n + 1
      end
      assert.equal(150, n)
      assert.is_nil(err)

      args, err = uri.decode_args("a=1&b=2&c=3", 2)
      assert.same({ a = "1", b = "2" }, args)
      assert.equal("truncated", err)
      assert.same({ a = "1", b = "2" }, (uri.decode_args("a=1&b=2", 2)))
      assert.is_nil(select(2, uri.decode_args("a=1&b=2", 2)))
    end)
  end)


  describe("HTTP dates", function()
    it("formats http_time and cookie_time", function()
      assert.equal("Thu, 18 Nov 2010 11:27:35 GMT", uri.http_time(1290079655))
      assert.equal("Thu, 01 Jan 1970 00:00:00 GMT", uri.http_time(0))
      assert.equal("Tue, 29 Feb 2000 00:00:00 GMT", uri.http_time(951782400))
      assert.equal("Thu, 18-Nov-10 11:27:35 GMT",
                   uri.cookie_time(1290079655))
      assert.equal("Sun, 07-Feb-2106 06:28:16 GMT",
                   uri.cookie_time(4294967296))
      assert.has_error(function() uri.http_time("x") end)
    end)

    it("parses the three HTTP date forms", function()
      assert.equal(1290079655,
                   uri.parse_http_time("Thu, 18 Nov 2010 11:27:35 GMT"))
      assert.equal(784111777,
                   uri.parse_http_time("Sunday, 06-Nov-94 08:49:37 GMT"))
      assert.equal(784111777,
                   uri.parse_http_time("Sun Nov  6 08:49:37 1994"))
      assert.equal(1290079655,
                   uri.parse_http_time("Thu Nov 18 11:27:35 2010"))
      assert.equal(1330514855,
                   uri.parse_http_time("Wed, 29 Feb 2012 11:27:35 GMT"))
    end)

    it("round-trips http_time", function()
      for _, t in ipairs({ 0, 1, 86399, 951782400, 1290079655, 4102444800 })
      do
        assert.equal(t, uri.parse_http_time(uri.http_time(t)))
      end
    end)

    it("returns nil for invalid dates", function()
      assert.is_nil(uri.parse_http_time("junk"))
      assert.is_nil(uri.parse_http_time(""))
      assert.is_nil(uri.parse_http_time("Tue, 29 Feb 2011 11:27:35 GMT"))
      assert.is_nil(uri.parse_http_time("Thu, 31 Nov 2010 11:27:35 GMT"))
      assert.is_nil(uri.parse_http_time("Thu, 18 Nox 2010 11:27:35 GMT"))
      assert.is_nil(uri.parse_http_time("Thu, 18 Nov 2010 24:27:35 GMT"))
      assert.is_nil(uri.parse_http_time("Thu, 18 Nov 2010 11:60:35 GMT"))
      assert.is_nil(uri.parse_http_time("Thu, 18 Nov 2010 11-27-35 GMT"))
    end)
  end)
end)
