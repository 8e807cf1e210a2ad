-- proxy-cache: Kong's schema (3.10 field names and defaults) plus luagate's
-- additions: the redis strategy (`redis` record) and request coalescing
-- (`coalesce_timeout`). See docs/plugins/proxy-cache.md.

local typedefs = require "kong.db.schema.typedefs"


local STRATEGIES = { "memory", "redis" }


local function response_header_flag(name)
  return {
    description = "Whether the " .. name .. " header is added to the " ..
                  "responses the plugin handles.",
    type = "boolean",
    required = true,
    default = true,
  }
end


return {
  name = "proxy-cache",
  fields = {
    { protocols = typedefs.protocols },
    { config = {
        type = "record",
        fields = {
          { response_code = {
              description = "Upstream response status code considered " ..
                            "cacheable.",
              type = "array",
              default = { 200, 301, 404 },
              elements = { type = "integer", between = { 100, 900 } },
              len_min = 1,
              required = true,
          } },
          { request_method = {
              description = "Downstream request methods considered " ..
                            "cacheable.",
              type = "array",
              default = { "GET", "HEAD" },
              elements = {
                type = "string",
                one_of = { "HEAD", "GET", "POST", "PATCH", "PUT" },
              },
              required = true,
          } },
          { content_type = {
              description = "Upstream response content types considered " ..
                            "cacheable. The plugin performs an exact " ..
                            "match of type, subtype and parameters " ..
                            "against each value; `*` matches any type or " ..
                            "subtype.",
              type = "array",
              default = { "text/plain", "application/json" },
              elements = { type = "string" },
              required = true,
          } },
          { cache_ttl = {
              description = "TTL, in seconds, of cache entities.",
              type = "integer",
              default = 300,
              gt = 0,
          } },
          { strategy = {
              description = "The backing data store in which to hold " ..
                            "cache entities: memory (a shared dictionary " ..
                            "of this node) or redis (luagate).",
              type = "string",
              one_of = STRATEGIES,
              required = true,
          } },
          { cache_control = {
              description = "When enabled, respect the Cache-Control " ..
                            "behaviors defined in RFC 9111 (freshness, " ..
                            "no-store, private, no-cache, Vary, " ..
                            "stale-if-error).",
              type = "boolean",
              default = false,
              required = true,
          } },
          { ignore_uri_case = {
              description = "Lowercase the request path before it goes " ..
                            "into the cache key.",
              type = "boolean",
              default = false,
              required = false,
          } },
          { storage_ttl = {
              description = "Number of seconds to keep resources in the " ..
                            "storage backend. This value is independent " ..
                            "of `cache_ttl` or resource TTLs defined by " ..
                            "Cache-Control behaviors.",
              type = "integer",
          } },
          { memory = {
              description = "Options of the memory strategy.",
              type = "record",
              required = true,
              fields = {
                { dictionary_name = {
                    description = "The name of the shared dictionary in " ..
                                  "which to hold cache entities when the " ..
                                  "memory strategy is selected " ..
                                  "(`--shared-dict NAME=SIZE` creates one).",
                    type = "string",
                    required = true,
                    default = "kong_db_cache",
                } },
              },
          } },
          { redis = {
              description = "luagate: options of the redis strategy.",
              type = "record",
              required = true,
              fields = {
                { host = typedefs.host {
                    description = "A string representing a host name, " ..
                                  "such as example.com: the Redis server.",
                } },
                { port = typedefs.port {
                    description = "An integer representing a port number " ..
                                  "between 0 and 65535, inclusive: the " ..
                                  "Redis server's port.",
                    default = 6379,
                } },
                { username = {
                    description = "Username to use for Redis connections " ..
                                  "(ACL authentication, Redis 6+). If " ..
                                  "undefined, only the password is sent.",
                    type = "string",
                    referenceable = true,
                } },
                { password = {
                    description = "Password to use for Redis connections. " ..
                                  "If undefined, no AUTH commands are sent " ..
                                  "to Redis.",
                    type = "string",
                    encrypted = true,
                    referenceable = true,
                    len_min = 0,
                } },
                { database = {
                    description = "Database to use for the Redis " ..
                                  "connection.",
                    type = "integer",
                    default = 0,
                    between = { 0, 65535 },
                } },
                { timeout = typedefs.timeout {
                    description = "An integer representing a timeout in " ..
                                  "milliseconds: how long a Redis command " ..
                                  "may take.",
                    default = 2000,
                } },
              },
          } },
          { vary_query_params = {
              description = "Relevant query parameters considered for the " ..
                            "cache key. If undefined, all params are taken " ..
                            "into consideration.",
              type = "array",
              elements = { type = "string" },
          } },
          { vary_headers = {
              description = "Relevant headers considered for the cache " ..
                            "key. If undefined, none of the headers are " ..
                            "taken into consideration.",
              type = "array",
              elements = { type = "string" },
          } },
          { response_headers = {
              description = "Caching related diagnostic headers that " ..
                            "should be included in cached responses.",
              type = "record",
              required = true,
              fields = {
                { age = response_header_flag("Age") },
                { ["X-Cache-Status"] = response_header_flag("X-Cache-Status") },
                { ["X-Cache-Key"] = response_header_flag("X-Cache-Key") },
              },
          } },
          { coalesce_timeout = {
              description = "luagate: concurrent misses of one key on this " ..
                            "node reach the upstream once; the others wait " ..
                            "up to this many seconds for the response to " ..
                            "be stored, then serve it. 0 turns this off.",
              type = "number",
              default = 5,
              between = { 0, 600 },
          } },
        },
      },
    },
  },
  entity_checks = {
    { conditional = {
        if_field = "config.strategy", if_match = { eq = "redis" },
        then_field = "config.redis.host", then_match = { required = true },
    } },
  },
}
