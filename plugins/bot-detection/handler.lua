-- bot-detection: rejects requests by User-Agent, with Kong's behaviour:
-- the (whitespace-trimmed) User-Agent is tried against config.allow (a
-- match lets it through), then config.deny, then the built-in bot list
-- (rules.lua); a deny or bot match gets 403 (kong.response.error's
-- "Forbidden"). A request without User-Agent passes; one with several
-- gets 400 "Only one User-Agent header allowed".
--
-- Verdicts are cached per config in a per-worker LRU of 10,000 User-Agents
-- (weak-keyed by the conf table, so a reload starts afresh). The built-in
-- patterns are one compiled alternation; each regex is compiled once (the
-- "o" option of ngx.re).

local lru_new = require("luagate.pdk.cache").lru_new
local rules = require "kong.plugins.bot-detection.rules"

local kong = kong
local ngx = ngx
local ipairs = ipairs
local setmetatable = setmetatable
local byte = string.byte
local sub = string.sub
local concat = table.concat
local re_find = ngx.re.find

local BAD_REQUEST = 400
local FORBIDDEN = 403
local MSG_MULTIPLE = "Only one User-Agent header allowed"
local UA_CACHE_SIZE = 10000

-- space, \t, \n, \v, \f, \r (Lua's %s)
local SPACE = { [32] = true, [9] = true, [10] = true, [11] = true,
                [12] = true, [13] = true }

local MATCH_EMPTY = 0
local MATCH_ALLOW = 1
local MATCH_DENY = 2
local MATCH_BOT = 3


local BotDetectionHandler = {
  PRIORITY = 2500,
  VERSION = "3.10.0",
}


local BOTS
do
  local parts = {}
  for i, re in ipairs(rules.bots) do
    parts[i] = "(?:" .. re .. ")"
  end
  BOTS = concat(parts, "|")
end


local compiled = setmetatable({}, { __mode = "k" })


local function compile(conf)
  local c = compiled[conf]
  if not c then
    c = { cache = lru_new(UA_CACHE_SIZE) }
    compiled[conf] = c
  end
  return c
end


local function any_match(subject, list)
  if list then
    for i = 1, #list do
      if re_find(subject, list[i], "jo") then
        return true
      end
    end
  end
  return false
end


-- Removes leading and trailing whitespace in linear time (a pattern such
-- as "^%s*(.-)%s*$" is quadratic on long runs of spaces).
local function strip(s)
  local i, j = 1, #s
  while i <= j and SPACE[byte(s, i)] do
    i = i + 1
  end
  while j >= i and SPACE[byte(s, j)] do
    j = j - 1
  end
  if i == 1 and j == #s then
    return s
  end
  return sub(s, i, j)
end


local function examine(ua, conf)
  ua = strip(ua)
  if any_match(ua, conf.allow) then
    return MATCH_ALLOW
  end
  if any_match(ua, conf.deny) then
    return MATCH_DENY
  end
  if re_find(ua, BOTS, "ijo") then
    return MATCH_BOT
  end
  return MATCH_EMPTY
end


function BotDetectionHandler:configure(configs)
  if configs then
    for _, conf in ipairs(configs) do
      compile(conf)
    end
  end
end


function BotDetectionHandler:access(conf)
  local ua = kong.request.get_header("User-Agent")
  if ua == nil then
    return
  end
  -- ngx.var.http_* joins repeated headers with ", ": it differs from the
  -- first value exactly when there are several (cheaper than building
  -- kong.request.get_headers() on every request)
  if ngx.var.http_user_agent ~= ua then
    return kong.response.error(BAD_REQUEST, MSG_MULTIPLE)
  end

  local cache = (compiled[conf] or compile(conf)).cache
  local node = cache:get(ua)
  local verdict
  if node then
    verdict = node.value
  else
    verdict = examine(ua, conf)
    cache:set(ua, verdict)
  end

  if verdict == MATCH_DENY or verdict == MATCH_BOT then
    return kong.response.error(FORBIDDEN)
  end
end


-- for unit specs
BotDetectionHandler._examine = examine

return BotDetectionHandler
