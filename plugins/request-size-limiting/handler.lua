-- request-size-limiting: rejects requests whose body is larger than
-- allowed_payload_size (in size_unit), with Kong's answers:
--   * a numeric Content-Length is checked without reading the body;
--   * without one, when require_content_length is set and the body is not
--     chunked: 411 "A valid Content-Length header is required";
--   * otherwise the body is read (kong.request.get_raw_body()) and measured;
--   * too large: 413 "Request size limit exceeded", or 417 with the same
--     message when the client sent "Expect: 100-continue".

local kong = kong
local tonumber = tonumber
local lower = string.lower
local find = string.find
local sub = string.sub

local MSG_TOO_LARGE = "Request size limit exceeded"
local MSG_LENGTH_REQUIRED = "A valid Content-Length header is required"

local UNIT_BYTES = {
  bytes = 1,
  kilobytes = 1024,    -- 2^10
  megabytes = 1048576, -- 2^20
}


local RequestSizeLimitingHandler = {
  PRIORITY = 951,
  VERSION = "3.10.0",
}

RequestSizeLimitingHandler.size_units = { "megabytes", "kilobytes", "bytes" }
RequestSizeLimitingHandler.unit_multiplication_factor = UNIT_BYTES


-- "Expect: 100-continue", in any case and with surrounding whitespace
-- (found without a "^%s*(.-)%s*$" pattern, quadratic on long runs of
-- spaces)
local function expects_continue()
  local expect = kong.request.get_header("Expect")
  if expect == nil then
    return false
  end
  local from = find(lower(expect), "100-continue", 1, true)
  return from ~= nil and
         find(expect, "^%s*$", from + 12) ~= nil and
         (from == 1 or find(sub(expect, 1, from - 1), "^%s*$") ~= nil)
end


local function check_size(length, conf)
  local allowed = conf.allowed_payload_size * UNIT_BYTES[conf.size_unit]
  if length > allowed then
    if expects_continue() then
      return kong.response.error(417, MSG_TOO_LARGE)
    end
    return kong.response.error(413, MSG_TOO_LARGE)
  end
end


function RequestSizeLimitingHandler:access(conf)
  local cl = kong.request.get_header("Content-Length")
  local length = cl and tonumber(cl)
  if length then
    return check_size(length, conf)
  end

  if conf.require_content_length then
    local te = kong.request.get_header("Transfer-Encoding")
    if te == nil or lower(te) ~= "chunked" then
      return kong.response.error(411, MSG_LENGTH_REQUIRED)
    end
  end

  local body, err = kong.request.get_raw_body()
  if not body then
    kong.log.warn("could not read the request body: ", err)
    return
  end
  return check_size(#body, conf)
end


return RequestSizeLimitingHandler
