-- Window arithmetic for rate-limiting: Kong's calendar-aligned windows in
-- UTC (second, minute, hour, day: multiples since the epoch; month and year
-- by the calendar) and luagate's windows of any length (multiples of
-- window_size since the epoch).

local floor = math.floor

local _M = {}

-- nominal lengths, Kong's EXPIRATION table (month = 30 days, year = 365)
_M.SIZES = {
  second = 1,
  minute = 60,
  hour = 3600,
  day = 86400,
  month = 2592000,
  year = 31536000,
}


-- Days since 1970-01-01 of the proleptic Gregorian date y-m-d (the
-- "days from civil" algorithm, eras of 400 years).
local function days_from_civil(y, m, d)
  if m <= 2 then
    y = y - 1
  end
  local era = floor(y / 400)
  local yoe = y - era * 400
  local mp = (m + 9) % 12 -- March = 0
  local doy = floor((153 * mp + 2) / 5) + d - 1
  local doe = yoe * 365 + floor(yoe / 4) - floor(yoe / 100) + doy
  return era * 146097 + doe - 719468
end
_M.days_from_civil = days_from_civil


-- The date (y, m, d) of day z since 1970-01-01.
local function civil_from_days(z)
  z = z + 719468
  local era = floor(z / 146097)
  local doe = z - era * 146097
  local yoe = floor((doe - floor(doe / 1460) + floor(doe / 36524) -
                     floor(doe / 146096)) / 365)
  local y = yoe + era * 400
  local doy = doe - (365 * yoe + floor(yoe / 4) - floor(yoe / 100))
  local mp = floor((5 * doy + 2) / 153)
  local d = doy - floor((153 * mp + 2) / 5) + 1
  local m = mp < 10 and mp + 3 or mp - 9
  if m <= 2 then
    y = y + 1
  end
  return y, m, d
end
_M.civil_from_days = civil_from_days


-- The window of kind `kind` ("month", "year", or anything else for a
-- window of `size` seconds) holding time t (seconds since the epoch, may
-- be fractional). Returns its start and end (integer seconds, end
-- excluded).
function _M.bounds(kind, size, t)
  if kind == "month" then
    local y, m = civil_from_days(floor(t / 86400))
    local start = days_from_civil(y, m, 1) * 86400
    if m == 12 then
      y, m = y + 1, 1
    else
      m = m + 1
    end
    return start, days_from_civil(y, m, 1) * 86400
  elseif kind == "year" then
    local y = civil_from_days(floor(t / 86400))
    return days_from_civil(y, 1, 1) * 86400,
           days_from_civil(y + 1, 1, 1) * 86400
  end
  local start = floor(t / size) * size
  return start, start + size
end


return _M
