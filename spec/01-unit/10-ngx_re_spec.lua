local re = require("luagate.ngx.re")


describe("luagate.ngx.re", function()

  describe("match()", function()
    it("returns the whole match and numbered groups", function()
      local m, err = re.match("hello, 1234", "([0-9])[0-9]+")
      assert.is_nil(err)
      assert.same({ [0] = "1234", "1" }, m)
    end)

    it("returns nil without error when nothing matches", function()
      local m, err = re.match("hello", "[0-9]+")
      assert.is_nil(m)
      assert.is_nil(err)
    end)

    it("returns named groups by name and by number", function()
      local m = re.match("hello, 1234", "([0-9])(?<remaining>[0-9]+)")
      assert.same({ [0] = "1234", "1", "234", remaining = "234" }, m)
    end)

    it("gives false for groups that did not take part", function()
      local m = re.match("hello, world", "(world)|(hello)|(?<named>howdy)")
      assert.equal("hello", m[0])
      assert.is_false(m[1])
      assert.equal("hello", m[2])
      assert.is_false(m[3])
      assert.is_false(m.named)
    end)

    it("collects duplicate names into arrays with D", function()
      local m = re.match("hello, world", "(?<named>\\w+), (?<named>\\w+)",
                         "D")
      assert.same({ "hello", "world" }, m.named)
      assert.equal("hello", m[1])
    end)

    it("rejects duplicate names without D", function()
      local m, err = re.match("a", "(?<n>a)|(?<n>b)")
      assert.is_nil(m)
      assert.matches("^pcre2_compile%(%) failed: ", err)
    end)

    it("applies options i, m, s, x, a, u", function()
      assert.equal("HeLLo", re.match("HeLLo", "hello", "i")[0])
      assert.is_nil(re.match("HeLLo", "hello"))
      assert.equal("b", re.match("a\nb", "^b$", "m")[0])
      assert.is_nil(re.match("a\nb", "^b$"))
      assert.equal("a\nb", re.match("a\nb", "a.b", "s")[0])
      assert.is_nil(re.match("a\nb", "a.b"))
      assert.equal("ab", re.match("ab", "a b # comment", "x")[0])
      assert.is_nil(re.match("xab", "ab", "a"))
      assert.equal("ab", re.match("abx", "ab", "a")[0])
      assert.equal("é", re.match("é", "^.$", "u")[0])
      assert.is_nil(re.match("é", "^.$"))
      assert.equal("é", re.match("é", "^.$", "U")[0])
      assert.equal("x", re.match("x", "x", "jo")[0])
      assert.equal("x", re.match("x", "x", "J")[0])
    end)

    it("reports invalid UTF-8 subjects with u", function()
      local m, err = re.match("\255", ".", "u")
      assert.is_nil(m)
      assert.matches("^pcre2_match%(%) failed: %-%d+$", err)
    end)

    it("finds the longest match with d (DFA)", function()
      local m = re.match("aaa", "a|aa|aaa", "d")
      assert.same({ [0] = "aaa" }, m)
      assert.equal("a", re.match("aaa", "a|aa|aaa")[0])
    end)

    it("starts at ctx.pos and moves it past the match", function()
      local ctx = { pos = 2 }
      local m = re.match("abcabc", "abc", nil, ctx)
      assert.equal("abc", m[0])
      assert.equal(7, ctx.pos)
      assert.is_nil(re.match("abcabc", "abc", nil, ctx))
      assert.equal(7, ctx.pos)   -- unchanged on no match

      ctx = { pos = 0 }
      assert.equal("a", re.match("ab", "a", nil, ctx)[0])
      assert.equal(2, ctx.pos)

      ctx = {}
      assert.equal("b", re.match("ab", "b", nil, ctx)[0])
      assert.equal(3, ctx.pos)

      assert.is_nil(re.match("ab", "", nil, { pos = 4 }))
      assert.equal("", re.match("ab", "", nil, { pos = 3 })[0])
    end)

    it("fills res_table when given", function()
      local res = { "stale" }
      local m = re.match("k=v", "(\\w)=(\\w)", nil, nil, res)
      assert.equal(res, m)
      assert.same({ [0] = "k=v", "k", "v" }, res)
    end)

    it("converts a non-string subject with tostring()", function()
      assert.equal("123", re.match(123, "\\d+")[0])
    end)

    it("returns compile errors in lua-nginx-module's format", function()
      local m, err = re.match("hello", "(abc")
      assert.is_nil(m)
      assert.equal("pcre2_compile() failed: missing closing parenthesis in "
                   .. "\"(abc\" at \"\"", err)
      local _, err2 = re.match("x", "a[b")
      assert.equal("pcre2_compile() failed: missing terminating ] for "
                   .. "character class in \"a[b\" at \"\"", err2)
      local _, err3 = re.match("x", "a)b")
      assert.equal("pcre2_compile() failed: unmatched closing parenthesis "
                   .. "in \"a)b\" at \")b\"", err3)
    end)

    it("raises on an unknown option", function()
      assert.has_error(function() re.match("a", "a", "Z") end,
                       "unknown flag \"Z\" (flags \"Z\")")
    end)

    it("raises on a non-string regex", function()
      assert.has_error(function() re.match("a", nil) end)
    end)
  end)


  describe("find()", function()
    it("returns 1-based inclusive offsets", function()
      local from, to, err = re.find("hello, 1234", "([0-9]+)")
      assert.same({ 8, 11 }, { from, to })
      assert.is_nil(err)
    end)

    it("returns the offsets of the nth group", function()
      local from, to = re.find("hello, 1234", "([0-9])([0-9]+)", "jo", nil,
                               2)
      assert.same({ 9, 11 }, { from, to })
    end)

    it("returns nil for an unmatched nth group", function()
      local from, to, err = re.find("b", "(a)?b", nil, nil, 1)
      assert.is_nil(from)
      assert.is_nil(to)
      assert.is_nil(err)
    end)

    it("rejects nth beyond the group count", function()
      local from, to, err = re.find("ab", "(a)b", nil, nil, 2)
      assert.is_nil(from)
      assert.is_nil(to)
      assert.equal("nth out of bound", err)
    end)

    it("reports an empty match as from = to + 1", function()
      assert.same({ 1, 0 }, { re.find("abc", "x*") })
    end)

    it("returns nil when nothing matches", function()
      assert.same({}, { re.find("abc", "x") })
    end)

    it("honours and updates ctx.pos", function()
      local ctx = { pos = 3 }
      local from, to = re.find("a1a2a3", "a\\d", nil, ctx)
      assert.same({ 3, 4 }, { from, to })
      assert.equal(5, ctx.pos)
    end)

    it("returns compile errors as the third value", function()
      local from, to, err = re.find("a", "(")
      assert.is_nil(from)
      assert.is_nil(to)
      assert.matches("^pcre2_compile%(%) failed", err)
    end)
  end)


  describe("gmatch()", function()
    local function all(it)
      local out = {}
      for m in it do
        out[#out + 1] = m[0]
      end
      return out
    end

    it("iterates over every match", function()
      local it = re.gmatch("hello, world", "([a-z])[a-z]+")
      local m = it()
      assert.same({ [0] = "hello", "h" }, m)
      m = it()
      assert.same({ [0] = "world", "w" }, m)
      assert.is_nil(it())
      assert.is_nil(it())
    end)

    it("advances one character after an empty match", function()
      assert.same({ "", "", "", "" }, all(re.gmatch("abc", "")))
      assert.same({ "", "b", "", "" }, all(re.gmatch("abc", "b*")))
      assert.same({ "", "", "" }, all(re.gmatch("éa", "", "u")))
    end)

    it("returns compile errors", function()
      local it, err = re.gmatch("a", "(")
      assert.is_nil(it)
      assert.matches("^pcre2_compile%(%) failed", err)
    end)

    it("returns named groups", function()
      local it = re.gmatch("a=1, b=2", "(?<k>\\w)=(?<v>\\d)")
      local m1, m2 = it(), it()
      assert.same({ "a", "1" }, { m1.k, m1.v })
      assert.same({ "b", "2" }, { m2.k, m2.v })
    end)
  end)


  describe("sub() and gsub()", function()
    it("replace the first match only with sub()", function()
      assert.same({ "hello, [1][1]234", 1 },
                  { re.sub("hello, 1234", "([0-9])", "[$0][$1]") })
      assert.same({ "hello, 100234", 1 },
                  { re.sub("hello, 1234", "[0-9]", "${0}00") })
    end)

    it("replace every match with gsub()", function()
      assert.same({ "[hello,h], [world,w]", 2 },
                  { re.gsub("hello, world", "([a-z])[a-z]+", "[$0,$1]") })
    end)

    it("return the subject and 0 when nothing matches", function()
      assert.same({ "hello", 0 }, { re.gsub("hello", "x", "y") })
      assert.same({ "hello", 0 }, { re.sub("hello", "x", "y") })
    end)

    it("expand $$, ${name}, missing and unmatched groups", function()
      assert.same({ "h$h, w$w", 2 },
                  { re.gsub("hello, world", "(?<w>[a-z])[a-z]+",
                            "${w}$$${1}") })
      assert.same({ "<>", 1 }, { re.sub("b", "(a)?b", "<$1>") })
      assert.same({ "<>", 1 }, { re.sub("b", "b", "<$5>") })
      assert.same({ "<b>", 1 }, { re.sub("b", "(b)", "<$01>") })
    end)

    it("handle empty matches like Perl", function()
      assert.same({ "-h-e-l-l-o-", 6 }, { re.gsub("hello", "", "-") })
      assert.same({ "-a--c-", 4 }, { re.gsub("abc", "b*", "-") })
      assert.same({ "-abc", 1 }, { re.sub("abc", "x*", "-") })
      assert.same({ "-é-a-", 3 }, { re.gsub("éa", "", "-", "u") })
    end)

    it("call a replacement function with the captures", function()
      local seen = {}
      local s, n = re.gsub("a1 b2", "(?<l>[a-z])(\\d)", function(m)
        seen[#seen + 1] = m
        return m[2] .. m.l
      end)
      assert.equal("1a 2b", s)
      assert.equal(2, n)
      assert.same({ [0] = "a1", "a", "1", l = "a" }, seen[1])
    end)

    it("accept numbers from the replacement function and template", function()
      assert.equal("x7y", (re.gsub("x1y", "\\d", function() return 7 end)))
      assert.equal("x7y", (re.gsub("x1y", "\\d", 7)))
    end)

    it("allow the replacement function to reuse the regex", function()
      local s = re.gsub("a1 b2", "[a-z]\\d", function(m)
        return (re.gsub(m[0], "[a-z]\\d", "<$0>"))
      end)
      assert.equal("<a1> <b2>", s)
    end)

    it("raise when the function returns a bad value", function()
      assert.has_error(function()
        re.gsub("a", "a", function() return {} end)
      end, "attempt to use table as the replacement value")
    end)

    it("reject bad templates", function()
      local s, n, err = re.gsub("a", "a", "$x")
      assert.is_nil(s)
      assert.is_nil(n)
      assert.matches("^failed to compile the replacement template", err)
      assert.is_nil((re.gsub("a", "a", "${1")))
      assert.is_nil((re.gsub("a", "a", "x$")))
    end)

    it("return compile errors as the third value", function()
      local s, n, err = re.gsub("a", "(", "x")
      assert.is_nil(s)
      assert.is_nil(n)
      assert.matches("^pcre2_compile%(%) failed", err)
    end)
  end)


  describe("cache", function()
    it("stays bounded", function()
      for i = 1, 1100 do
        assert.truthy(re.match("x" .. i, "x" .. i))
      end
      assert.is_true(re.cache_size() <= 1024)
      assert.equal("x5", re.match("x5", "x5")[0])
    end)
  end)


  describe("JIT", function()
    it("compiles a match() loop without NYI aborts", function()
      local vmdef = require("jit.vmdef")
      local stops, nyi = 0, {}
      local function on_trace(what, _, _, _, otr, oex)
        if what == "stop" then
          stops = stops + 1
        elseif what == "abort" then
          local msg = vmdef.traceerr[otr]
          if msg and type(oex) ~= "nil" then
            msg = msg:format(oex)
          end
          if msg and msg:find("NYI", 1, true) then
            nyi[#nyi + 1] = msg
          end
        end
      end
      jit.on()
      jit.flush()
      jit.attach(on_trace, "trace")
      local n = 0
      for _ = 1, 1000 do
        local m = re.match("hello, 1234", "([0-9])(?<rest>[0-9]+)", "jo")
        n = n + #m.rest
        local from = re.find("hello, 1234", "[0-9]+", "jo")
        n = n + from
      end
      jit.attach(on_trace)
      assert.equal(11000, n)
      assert.same({}, nyi)
      assert.is_true(stops > 0)
    end)
  end)
end)
