-- acl's configuration (Kong 3.10's fields and defaults).
local typedefs = require "kong.db.schema.typedefs"

return {
  name = "acl",
  fields = {
    { consumer = typedefs.no_consumer },
    { consumer_group = typedefs.no_consumer_group },
    { protocols = typedefs.protocols_http },
    { config = {
        type = "record",
        fields = {
          { allow = {
              type = "array",
              elements = { type = "string" },
              description = "Groups allowed to consume the route or " ..
                            "service (any one of them suffices). No " ..
                            "default; exactly one of allow and deny is set.",
          } },
          { deny = {
              type = "array",
              elements = { type = "string" },
              description = "Groups refused (any one of them refuses). No " ..
                            "default; exactly one of allow and deny is set.",
          } },
          { hide_groups_header = {
              type = "boolean",
              required = true,
              default = false,
              description = "Do not send the X-Consumer-Groups (or " ..
                            "X-Authenticated-Groups) header upstream.",
          } },
          { include_consumer_groups = {
              type = "boolean",
              required = false,
              default = false,
              description = "Count the names of the consumer groups the " ..
                            "consumer belongs to as its groups too.",
          } },
          { always_use_authenticated_groups = {
              type = "boolean",
              required = true,
              default = false,
              description = "Use the groups an auth plugin set for the " ..
                            "request (authenticated groups) even when a " ..
                            "credential authenticated a consumer; by " ..
                            "default they are used only without a " ..
                            "consumer or with the anonymous one.",
          } },
        },
    } },
  },
  entity_checks = {
    { only_one_of = { "config.allow", "config.deny" } },
    { at_least_one_of = { "config.allow", "config.deny" } },
  },
}
