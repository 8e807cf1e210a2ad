-- traffic-split: canary releases and A/B tests. Rules (first match wins)
-- send a request to one of weighted targets: a url, a service of the
-- config, an upstream, or the route's own service.
local typedefs = require "kong.db.schema.typedefs"
local Schema = require "luagate.schema"

local find = string.find


local function validate_regex(s)
  local ok, err = Schema.check_regex(s)
  if not ok then
    return nil, "invalid regex '" .. s .. "': " .. tostring(err)
  end
  return true
end


local function validate_url(s)
  local u, err = typedefs.parse_url(s)
  if not u then
    return nil, err
  end
  if u.scheme ~= "http" and u.scheme ~= "https" then
    return nil, "unsupported scheme '" .. u.scheme .. "' (use http or https)"
  end
  if u.port and u.port > 65535 then
    return nil, "invalid port number"
  end
  if find(s, "[?#]") then
    return nil, "a target url takes no query or fragment"
  end
  return true
end


local function validate_targets(list)
  local total = 0
  for _, t in ipairs(list) do
    total = total + (t.weight or 0)
  end
  if total <= 0 then
    return nil, "the weights of a rule's targets must not all be 0"
  end
  return true
end


-- header, cookie and query conditions: a name, and a value or a regex
-- (neither: the name must be present)
local function condition(what, name_field)
  return {
    description = "Matches a request " .. what .. ": equal to `value`, " ..
                  "or matching `regex`, or only present when neither is " ..
                  "set.",
    type = "record",
    required = false,
    fields = {
      { name = name_field },
      { value = {
          description = "The exact value to match.",
          type = "string",
      } },
      { regex = {
          description = "A PCRE regex the value must match (unanchored).",
          type = "string",
          custom_validator = validate_regex,
      } },
    },
    entity_checks = {
      { mutually_exclusive = { "value", "regex" } },
    },
  }
end


return {
  name = "traffic-split",
  fields = {
    { protocols = typedefs.protocols_http },
    { config = {
        type = "record",
        fields = {
          { rules = {
              description = "Rules tried in order; the first whose " ..
                            "`match` holds picks one of its targets.",
              type = "array",
              required = true,
              len_min = 1,
              elements = {
                type = "record",
                fields = {
                  { match = {
                      description = "Conditions, all of which must hold " ..
                                    "(none: every request matches).",
                      type = "record",
                      required = false,
                      fields = {
                        { header = condition("header",
                            typedefs.header_name {
                              required = true,
                              description = "The header's name.",
                            }) },
                        { cookie = condition("cookie", {
                            type = "string",
                            required = true,
                            description = "The cookie's name.",
                          }) },
                        { query = condition("query argument", {
                            type = "string",
                            required = true,
                            description = "The query argument's name.",
                          }) },
                        { consumer = {
                            description = "The authenticated consumer's " ..
                                          "username or id.",
                            type = "string",
                        } },
                      },
                  } },
                  { targets = {
                      description = "Where matching requests go, chosen " ..
                                    "by weight.",
                      type = "array",
                      required = true,
                      len_min = 1,
                      custom_validator = validate_targets,
                      elements = {
                        type = "record",
                        fields = {
                          { name = {
                              description = "A label for the target, " ..
                                            "sent in `X-Traffic-Split`.",
                              type = "string",
                          } },
                          { url = {
                              description = "Send to this url, as if it " ..
                                            "were the route's service " ..
                                            "url (scheme, host, port, " ..
                                            "path).",
                              type = "string",
                              custom_validator = validate_url,
                          } },
                          { service = {
                              description = "Send to this service of the " ..
                                            "config (name or id): its " ..
                                            "protocol, host, port, path " ..
                                            "and timeouts.",
                              type = "string",
                          } },
                          { upstream = {
                              description = "Send to this upstream of the " ..
                                            "config (a target picked by " ..
                                            "weight).",
                              type = "string",
                          } },
                          { weight = {
                              description = "The target's share, 0 to " ..
                                            "100 (relative to the rule's " ..
                                            "total).",
                              type = "integer",
                              required = true,
                              between = { 0, 100 },
                          } },
                        },
                        entity_checks = {
                          { mutually_exclusive = { "url", "service",
                                                   "upstream" } },
                        },
                      },
                  } },
                },
              },
          } },
          { sticky = {
              description = "Keeps one client on one target: the target " ..
                            "is chosen from a hash of the key instead of " ..
                            "at random.",
              type = "record",
              required = false,
              fields = {
                { by = {
                    description = "The key: the `consumer`, a `header`, " ..
                                  "a `cookie`, or the client `ip`.",
                    type = "string",
                    required = true,
                    one_of = { "consumer", "header", "cookie", "ip" },
                } },
                { name = {
                    description = "The header or cookie name (for `by` " ..
                                  "header or cookie).",
                    type = "string",
                } },
              },
              entity_checks = {
                { conditional = {
                    if_field = "by",
                    if_match = { one_of = { "header", "cookie" } },
                    then_field = "name",
                    then_match = { required = true },
                } },
              },
          } },
          { response_header = {
              description = "Whether to add `X-Traffic-Split: <target>` " ..
                            "to the response (the target's name, or " ..
                            "`<rule>.<target>` positions from 1).",
              type = "boolean",
              required = true,
              default = true,
          } },
        },
      },
    },
  },
}
