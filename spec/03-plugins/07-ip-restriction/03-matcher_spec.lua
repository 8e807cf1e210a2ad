-- ip-restriction's prefix matchers, without the gateway: every prefix
-- length, IPv4 and IPv6, IPv4-mapped addresses, boundaries of ranges.
local helpers = require "spec.helpers"

local handler


local function matcher(list)
  return assert(handler._new_matcher(list))
end


local function hit(m, ip)
  local family, a, b, c, d = handler._client_words(ip)
  assert(family, "not an ip: " .. ip)
  return handler._matches(m, family, a, b, c, d)
end


describe("ip-restriction matcher", function()
  lazy_setup(function()
    handler = dofile(helpers.root .. "/plugins/ip-restriction/handler.lua")
  end)

  it("matches IPv4 addresses and ranges at their boundaries", function()
    local m = matcher({ "10.1.2.3", "192.168.0.0/16", "172.16.0.0/12",
                        "100.64.0.0/10" })
    assert.is_true(hit(m, "10.1.2.3"))
    assert.is_false(hit(m, "10.1.2.4"))
    assert.is_true(hit(m, "192.168.0.0"))
    assert.is_true(hit(m, "192.168.255.255"))
    assert.is_false(hit(m, "192.169.0.0"))
    assert.is_false(hit(m, "192.167.255.255"))
    assert.is_true(hit(m, "172.31.255.255"))
    assert.is_false(hit(m, "172.32.0.0"))
    assert.is_true(hit(m, "100.127.255.255"))
    assert.is_false(hit(m, "100.128.0.0"))
  end)

  it("handles /0, /1, /31 and /32 and host bits in the range", function()
    assert.is_true(hit(matcher({ "0.0.0.0/0" }), "255.255.255.255"))
    assert.is_true(hit(matcher({ "1.2.3.4/0" }), "9.9.9.9"))
    local high = matcher({ "128.0.0.0/1" })
    assert.is_true(hit(high, "200.1.1.1"))
    assert.is_false(hit(high, "127.255.255.255"))
    local pair = matcher({ "10.0.0.7/31" }) -- host bit set: 10.0.0.6/31
    assert.is_true(hit(pair, "10.0.0.6"))
    assert.is_true(hit(pair, "10.0.0.7"))
    assert.is_false(hit(pair, "10.0.0.8"))
    assert.is_true(hit(matcher({ "255.255.255.255/32" }), "255.255.255.255"))
    assert.is_false(hit(matcher({ "255.255.255.255/32" }), "255.255.255.254"))
  end)

  it("matches every IPv4 prefix length", function()
    for len = 0, 32 do
      local m = matcher({ "203.0.113.77/" .. len })
      assert.is_true(hit(m, "203.0.113.77"), len)
      -- flipping the bit just past the prefix stays inside, flipping the
      -- last prefix bit leaves the range
      if len > 0 then
        local bit = require "bit"
        local base = 203 * 2^24 + 113 * 256 + 77
        local flipped = bit.bxor(base, bit.lshift(1, 32 - len))
        local u = flipped % 2^32
        local ip = string.format("%d.%d.%d.%d", math.floor(u / 2^24) % 256,
                                 math.floor(u / 2^16) % 256,
                                 math.floor(u / 2^8) % 256, u % 256)
        assert.is_false(hit(m, ip), len .. " " .. ip)
      end
    end
  end)

  it("matches IPv6 addresses and ranges", function()
    local m = matcher({ "2001:db8::/32", "fe80::1", "2001:db8:1234::/48",
                        "::1/128", "2600:1f00::/24" })
    assert.is_true(hit(m, "2001:db8::"))
    assert.is_true(hit(m, "2001:db8:ffff:ffff:ffff:ffff:ffff:ffff"))
    assert.is_false(hit(m, "2001:db9::"))
    assert.is_true(hit(m, "fe80::1"))
    assert.is_false(hit(m, "fe80::2"))
    assert.is_true(hit(m, "::1"))
    assert.is_false(hit(m, "::"))
    assert.is_true(hit(m, "2600:1fff::1"))
    assert.is_false(hit(m, "2600:2000::1"))
    assert.is_true(hit(matcher({ "::/0" }), "ffff::1"))
  end)

  it("matches every IPv6 prefix length", function()
    local addr = "2001:db8:85a3:8d3:1319:8a2e:370:7348"
    for len = 1, 128 do
      assert.is_true(hit(matcher({ addr .. "/" .. len }), addr), len)
    end
    -- the last bit of a /127 range
    local m = matcher({ "2001:db8::4/127" })
    assert.is_true(hit(m, "2001:db8::5"))
    assert.is_false(hit(m, "2001:db8::6"))
    -- ranges crossing 32-bit words
    m = matcher({ "2001:db8:aaaa:bb00::/56" })
    assert.is_true(hit(m, "2001:db8:aaaa:bbff:1::"))
    assert.is_false(hit(m, "2001:db8:aaaa:bc00::"))
  end)

  it("keeps the families apart, except IPv4-mapped addresses", function()
    local v4 = matcher({ "0.0.0.0/0" })
    assert.is_false(hit(v4, "::1"))
    assert.is_true(hit(v4, "::ffff:10.0.0.1"))
    local v6 = matcher({ "::/0" })
    assert.is_false(hit(v6, "10.0.0.1"))
    local mapped = matcher({ "::ffff:10.0.0.0/104", "::ffff:1.2.3.4" })
    assert.is_true(hit(mapped, "10.200.0.1"))
    assert.is_true(hit(mapped, "1.2.3.4"))
    assert.is_false(hit(mapped, "11.0.0.1"))
  end)

  it("parses the IPv6 notations the schema accepts", function()
    local w = handler._parse_v6("2001:db8::1.2.3.4")
    assert.same({ 0x20010db8, 0, 0, 0x01020304 }, w)
    assert.same({ 0, 0, 0, 1 }, handler._parse_v6("::1"))
    assert.same({ 0x00010000, 0, 0, 0 }, handler._parse_v6("1::"))
    assert.same({ 0x00010002, 0x00030004, 0x00050006, 0x00070008 },
                handler._parse_v6("1:2:3:4:5:6:7:8"))
    assert.is_nil(handler._parse_v6("1::2::3"))
    assert.is_nil(handler._parse_v6("1:2:3:4:5:6:7:8:9"))
  end)

  it("does not take a non-IP peer for an address", function()
    assert.is_nil(handler._client_words("unix:/tmp/sock"))
    assert.is_nil(handler._client_words(""))
    assert.equal(6, handler._client_words("fe80::1%eth0"))
  end)
end)
