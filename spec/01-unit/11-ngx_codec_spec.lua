local codec = require("luagate.ngx.codec")

local hex = codec.to_hex


describe("luagate.ngx.codec", function()

  describe("base64", function()
    -- RFC 4648 section 10
    local vectors = {
      { "", "" },
      { "f", "Zg==" },
      { "fo", "Zm8=" },
      { "foo", "Zm9v" },
      { "foob", "Zm9vYg==" },
      { "fooba", "Zm9vYmE=" },
      { "foobar", "Zm9vYmFy" },
    }

    it("encodes the RFC 4648 vectors", function()
      for _, v in ipairs(vectors) do
        assert.equal(v[2], codec.encode_base64(v[1]))
      end
    end)

    it("encodes without padding on request", function()
      assert.equal("Zg", codec.encode_base64("f", true))
      assert.equal("Zm8", codec.encode_base64("fo", true))
      assert.equal("Zm9v", codec.encode_base64("foo", true))
      assert.equal("Zg==", codec.encode_base64("f", false))
    end)

    it("decodes the RFC 4648 vectors", function()
      for _, v in ipairs(vectors) do
        assert.equal(v[1], codec.decode_base64(v[2]))
      end
    end)

    it("round-trips every byte value", function()
      local t = {}
      for i = 0, 255 do
        t[#t + 1] = string.char(i)
      end
      local all = table.concat(t)
      for len = 0, 7 do
        local s = all:sub(1, 250 + len)
        assert.equal(s, codec.decode_base64(codec.encode_base64(s)))
        assert.equal(s, codec.decode_base64url(codec.encode_base64url(s)))
      end
    end)

    it("decodes as nginx does: padding optional, stops at '='", function()
      assert.equal("hi", codec.decode_base64("aGk"))
      assert.equal("hi", codec.decode_base64("aGk="))
      assert.equal("hi", codec.decode_base64("aGk=anything"))
      assert.equal("f", codec.decode_base64("Zg"))
      assert.equal("", codec.decode_base64("="))
    end)

    it("rejects invalid input with nil", function()
      assert.is_nil(codec.decode_base64("a"))        -- 4k+1 characters
      assert.is_nil(codec.decode_base64("Zm9vY"))
      assert.is_nil(codec.decode_base64("Zm9v\n"))
      assert.is_nil(codec.decode_base64("Zm 9v"))
      assert.is_nil(codec.decode_base64("Zm9v$A=="))
      assert.is_nil(codec.decode_base64("Zm-_"))     -- URL alphabet
    end)

    it("raises on a non-string to decode", function()
      assert.has_error(function() codec.decode_base64(nil) end,
                       "string argument only")
      assert.has_error(function() codec.decode_base64url(1) end,
                       "string argument only")
    end)

    it("coerces encode arguments like lua-nginx-module", function()
      assert.equal("", codec.encode_base64(nil))
      assert.equal("MTIz", codec.encode_base64(123))
      assert.has_error(function() codec.encode_base64("a", 1) end,
                       "boolean argument only")
    end)

    it("uses the URL alphabet without padding for base64url", function()
      assert.equal("-_-_", codec.encode_base64url("\251\255\191"))
      assert.equal("Zg", codec.encode_base64url("f"))
      assert.equal("\251\255\191", codec.decode_base64url("-_-_"))
      assert.equal("f", codec.decode_base64url("Zg=="))
      assert.is_nil(codec.decode_base64url("+/+/"))
      assert.is_nil(codec.decode_base64url("a"))
    end)
  end)


  describe("digests", function()
    it("computes md5", function()
      assert.equal("900150983cd24fb0d6963f7d28e17f72", codec.md5("abc"))
      assert.equal("d41d8cd98f00b204e9800998ecf8427e", codec.md5(""))
      assert.equal("d41d8cd98f00b204e9800998ecf8427e", codec.md5(nil))
      assert.equal("5eb63bbbe01eeed093cb22bb8f5acdc3",
                   codec.md5("hello world"))
      assert.equal(16, #codec.md5_bin("abc"))
      assert.equal("900150983cd24fb0d6963f7d28e17f72",
                   hex(codec.md5_bin("abc")))
    end)

    it("computes sha1 and sha256", function()
      assert.equal("a9993e364706816aba3e25717850c26c9cd0d89d",
                   hex(codec.sha1_bin("abc")))
      assert.equal("da39a3ee5e6b4b0d3255bfef95601890afd80709",
                   hex(codec.sha1_bin("")))
      assert.equal("ba7816bf8f01cfea414140de5dae2223"
                   .. "b00361a396177a9cb410ff61f20015ad",
                   hex(codec.sha256_bin("abc")))
      assert.equal("e3b0c44298fc1c149afbf4c8996fb924"
                   .. "27ae41e4649b934ca495991b7852b855",
                   hex(codec.sha256_bin("")))
    end)

    it("computes HMAC-SHA1 (RFC 2202 vectors)", function()
      local key4 = {}
      for i = 1, 25 do
        key4[i] = string.char(i)
      end
      local vectors = {
        { ("\11"):rep(20), "Hi There",
          "b617318655057264e28bc0b6fb378c8ef146be00" },
        { "Jefe", "what do ya want for nothing?",
          "effcdf6ae5eb2fa2d27416d5f184df9c259a7c79" },
        { ("\170"):rep(20), ("\221"):rep(50),
          "125d7342b9ac11cd91a39af48aa17b4f63f175d3" },
        { table.concat(key4), ("\205"):rep(50),
          "4c9007f4026250c6bc8414f9bf50c86c2d7235da" },
        { ("\12"):rep(20), "Test With Truncation",
          "4c1a03424b55e07fe7f27be1d58bb9324a9a5a04" },
        { ("\170"):rep(80),
          "Test Using Larger Than Block-Size Key - Hash Key First",
          "aa4ae5e15272d00e95705637ce8a3b55ed402112" },
        { ("\170"):rep(80), "Test Using Larger Than Block-Size Key and "
          .. "Larger Than One Block-Size Data",
          "e8e99d0f45237d786d6bbaa7965c7808bbff1a91" },
      }
      for _, v in ipairs(vectors) do
        local mac = codec.hmac_sha1(v[1], v[2])
        assert.equal(20, #mac)
        assert.equal(v[3], hex(mac))
      end
    end)

    it("accepts an empty HMAC key", function()
      assert.equal("fbdb1d1b18aa6c08324b7d64b71fb76370690e1d",
                   hex(codec.hmac_sha1("", "")))
    end)
  end)


  describe("crc32", function()
    it("computes the IEEE CRC-32", function()
      assert.equal(0xCBF43926, codec.crc32_short("123456789"))
      assert.equal(0xCBF43926, codec.crc32_long("123456789"))
      assert.equal(891568578, codec.crc32_short("abc"))
      assert.equal(0, codec.crc32_long(""))
      assert.equal(codec.crc32_short(("x"):rep(10000)),
                   codec.crc32_long(("x"):rep(10000)))
    end)
  end)
end)
