-- acl: allows or denies the authenticated consumer by its groups (its
-- `acls` credentials, optionally its consumer groups, or the groups an auth
-- plugin authenticated), as Kong 3.10. docs/plugins/acl.md
local auth = require "luagate.auth"
local db = require "luagate.db"

local kong = kong
local ngx = ngx
local type = type
local ipairs = ipairs
local setmetatable = setmetatable
local concat = table.concat

local ERR_FORBIDDEN = "You cannot consume this service"
local HEADER_CONSUMER_GROUPS = auth.HEADERS.CONSUMER_GROUPS
local HEADER_AUTHENTICATED_GROUPS = auth.HEADERS.AUTHENTICATED_GROUPS

local EMPTY = {}

local ACLHandler = {
  PRIORITY = 950,
  VERSION = "3.10.0",
}


-- Per plugin instance (a conf lives for one config generation): the mode,
-- the configured groups, and the decision per consumer id (`true` when
-- refused, else the groups header value).
local prepared = setmetatable({}, { __mode = "k" })

local function prepare(conf)
  local p = prepared[conf]
  if p then
    return p
  end
  local deny = type(conf.deny) == "table" and conf.deny[1] ~= nil
  p = {
    deny = deny,
    groups = deny and conf.deny or conf.allow or EMPTY,
    by_consumer = {},
  }
  prepared[conf] = p
  return p
end


-- A group list as Kong's acl keeps them: names in order (array part) and
-- each name indexed by itself (hash part).
local function add_group(groups, name)
  if type(name) == "string" and groups[name] == nil then
    groups[#groups + 1] = name
    groups[name] = name
  end
end


-- The groups of a consumer of the config: its acls (a set luagate.db
-- builds when the config loads), then (with include_consumer_groups) the
-- names of its consumer groups.
local function consumer_groups(consumer_id, include_consumer_groups)
  local acls = db.acl_groups(consumer_id) or EMPTY
  local names = include_consumer_groups and
                db.consumer_group_names(consumer_id)
  if not names then
    return acls
  end
  local groups = {}
  for i = 1, #acls do
    add_group(groups, acls[i])
  end
  for _, name in ipairs(names) do
    add_group(groups, name)
  end
  return groups
end


-- The groups an auth plugin authenticated for this request
-- (kong.ctx.shared.authenticated_groups, else ngx.ctx.authenticated_groups),
-- or nil.
local function authenticated_groups()
  local list = kong.ctx.shared.authenticated_groups
  if type(list) ~= "table" then
    list = ngx.ctx.authenticated_groups
    if list == nil then
      return nil
    end
    if type(list) ~= "table" then
      kong.log.warn("invalid authenticated_groups, a table was expected")
      return nil
    end
  end
  local groups = {}
  for i = 1, #list do
    add_group(groups, list[i])
  end
  return groups
end


-- true when `groups` are refused, else the header value (their names).
local function decide(p, conf, groups)
  local in_group = false
  local list = p.groups
  for i = 1, #list do
    if groups[list[i]] then
      in_group = true
      break
    end
  end
  local refused
  if p.deny then
    refused = in_group
  else
    refused = not in_group
  end
  if refused then
    return true
  end
  return conf.hide_groups_header and "" or concat(groups, ", ")
end


-- At each config load, with the configs of every acl instance: prepare
-- them now rather than on their first request.
function ACLHandler:configure(configs)
  for _, conf in ipairs(configs or EMPTY) do
    prepare(conf)
  end
end


function ACLHandler:access(conf)
  local p = prepare(conf)
  local consumer = kong.client.get_consumer()
  local credential = kong.client.get_credential()
  local consumer_id = consumer and consumer.id or
                      (credential and credential.consumer_id)

  local result, header
  if not consumer_id then
    local groups = authenticated_groups()
    if not groups then
      if credential then
        return kong.response.error(403, ERR_FORBIDDEN)
      end
      return kong.response.error(401)
    end
    result = decide(p, conf, groups)
    header = HEADER_AUTHENTICATED_GROUPS

  else
    local groups
    if not credential or conf.always_use_authenticated_groups then
      groups = authenticated_groups()
    end
    if groups then
      result = decide(p, conf, groups)
      header = HEADER_AUTHENTICATED_GROUPS
    else
      result = p.by_consumer[consumer_id]
      if result == nil then
        result = decide(p, conf, consumer_groups(consumer_id,
                                                 conf.include_consumer_groups))
        -- remembered for the consumers of the config only (bounded)
        if db.consumers:select({ id = consumer_id }) then
          p.by_consumer[consumer_id] = result
        end
      end
      header = HEADER_CONSUMER_GROUPS
    end
  end

  if result == true then
    return kong.response.error(403, ERR_FORBIDDEN)
  end
  if not conf.hide_groups_header then
    kong.service.request.set_header(header, result)
  end
end


return ACLHandler
