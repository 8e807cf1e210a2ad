-- rate-limiting's window arithmetic (plugins/rate-limiting/windows.lua):
-- Kong's calendar windows in UTC and windows of any length.
local helpers = require "spec.helpers"

local windows = dofile(helpers.root .. "/plugins/rate-limiting/windows.lua")
local bounds = windows.bounds

-- 2024-02-29T13:45:30Z (a leap day)
local LEAP = 1709214330


describe("rate-limiting windows", function()
  it("counts days from the civil calendar", function()
    assert.equal(0, windows.days_from_civil(1970, 1, 1))
    assert.equal(19782, windows.days_from_civil(2024, 2, 29))
    assert.equal(-1, windows.days_from_civil(1969, 12, 31))
    assert.equal(11016, windows.days_from_civil(2000, 2, 29))
    assert.same({ 2024, 2, 29 }, { windows.civil_from_days(19782) })
    assert.same({ 2024, 3, 1 }, { windows.civil_from_days(19783) })
    assert.same({ 1970, 1, 1 }, { windows.civil_from_days(0) })
    -- round trip over 1000 years
    for z = -200000, 200000, 997 do
      assert.equal(z, windows.days_from_civil(windows.civil_from_days(z)))
    end
  end)

  it("aligns second, minute, hour and day on the epoch (UTC)", function()
    local t = LEAP + 0.25
    assert.same({ LEAP, LEAP + 1 }, { bounds("second", 1, t) })
    assert.same({ 1709214300, 1709214360 }, { bounds("minute", 60, t) })
    assert.same({ 1709211600, 1709215200 }, { bounds("hour", 3600, t) })
    assert.same({ 1709164800, 1709251200 }, { bounds("day", 86400, t) })
  end)

  it("follows the calendar for months and years", function()
    -- February 2024 has 29 days
    assert.same({ 1706745600, 1709251200 }, { bounds("month", 0, LEAP) })
    assert.equal(29 * 86400, 1709251200 - 1706745600)
    -- 2024 is 366 days long
    local s, e = bounds("year", 0, LEAP)
    assert.equal(1704067200, s)
    assert.equal(1735689600, e)
    assert.equal(366 * 86400, e - s)
    -- December rolls into January
    local dec = 1734998400 -- 2024-12-24T00:00:00Z
    assert.same({ 1733011200, 1735689600 }, { bounds("month", 0, dec) })
    -- the first and the last second of a month
    assert.same({ 1709251200, 1711929600 }, { bounds("month", 0, 1709251200) })
    assert.same({ 1706745600, 1709251200 },
                { bounds("month", 0, 1709251200 - 0.001) })
  end)

  it("cuts windows of any length from the epoch", function()
    assert.same({ 1709214300, 1709215200 }, { bounds("window", 900, LEAP) })
    assert.same({ 1709214325, 1709214332 }, { bounds("window", 7, LEAP) })
    local s, e = bounds("window", 7, LEAP)
    assert.equal(0, s % 7)
    assert.equal(7, e - s)
  end)
end)
