-- rate-limiting's counter keys (plugins/rate-limiting/policies.lua): built
-- once per client and window, never reused across windows.
local helpers = require "spec.helpers"
local recent = require "luagate.recent"

local function load_policies()
  -- what policies.lua needs when it loads outside the runtime (insulate
  -- restores the globals afterwards)
  local ngx_ = rawget(_G, "ngx") or {}
  if not ngx_.sha1_bin then
    rawset(ngx_, "sha1_bin", function() return ("\0"):rep(20) end)
  end
  rawset(_G, "ngx", ngx_)
  package.loaded["kong.plugins.rate-limiting.windows"] =
    dofile(helpers.root .. "/plugins/rate-limiting/windows.lua")
  return dofile(helpers.root .. "/plugins/rate-limiting/policies.lua")
end


local function limiter()
  return {
    period = "minute", kind = "minute", size = 60,
    w_start = 0, w_end = -1, w_len = 1, next_len = 1, weight = 0,
    keys = recent.new(1024),
  }
end


insulate("rate-limiting counter keys", function()
  local policies = load_policies()

  it("are Kong's keys of the window that holds now", function()
    local lim = limiter()
    local plan = { n = 1, lims = { lim } }
    policies.prepare(plan, 120.5)
    assert.equal("ratelimit:r:s:c:120000:minute",
                 policies.window_key(lim, "ratelimit:r:s:c"))
    -- the same string for the next request of that client
    assert.equal("ratelimit:r:s:c:120000:minute",
                 policies.window_key(lim, "ratelimit:r:s:c"))
    assert.equal("ratelimit:r:s:d:120000:minute",
                 policies.window_key(lim, "ratelimit:r:s:d"))
    assert.equal(2, lim.keys.n)
  end)

  it("change with the window", function()
    local lim = limiter()
    local plan = { n = 1, lims = { lim } }
    policies.prepare(plan, 120.5)
    policies.window_key(lim, "b")
    policies.prepare(plan, 179.9) -- same window: kept
    assert.equal(1, lim.keys.n)
    policies.prepare(plan, 180)
    assert.equal(0, lim.keys.n)
    assert.equal("b:180000:minute", policies.window_key(lim, "b"))
  end)

  it("start a new generation past 1,024 clients", function()
    local lim = limiter()
    local plan = { n = 1, lims = { lim } }
    policies.prepare(plan, 60)
    for i = 1, 1024 do
      policies.window_key(lim, "c" .. i)
    end
    assert.equal(1024, lim.keys.n)
    assert.equal("c1025:60000:minute", policies.window_key(lim, "c1025"))
    assert.equal(1, lim.keys.n)
    assert.equal("c1:60000:minute", policies.window_key(lim, "c1"))
  end)
end)
