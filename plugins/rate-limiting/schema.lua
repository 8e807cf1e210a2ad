-- rate-limiting: Kong's schema (3.10) plus luagate's extensions
-- (algorithm, limit + window_size, burst, throttle). See
-- docs/plugins/rate-limiting.md.

local typedefs = require "kong.db.schema.typedefs"

local type = type
local ipairs = ipairs
local pairs = pairs
local fmt = string.format

local SYNC_RATE_REALTIME = -1

local ORDERED_PERIODS = {
  "second", "minute", "hour", "day", "month", "year",
}

-- seconds of each period, as Kong's EXPIRATION table counts them
local PERIOD_SIZES = {
  second = 1, minute = 60, hour = 3600, day = 86400, month = 2592000,
  year = 31536000,
}


-- Kong's checks on the config record: periods in order, sync_rate.
local function validate_config(config)
  for i, lower_period in ipairs(ORDERED_PERIODS) do
    local v1 = config[lower_period]
    if type(v1) == "number" then
      for j = i + 1, #ORDERED_PERIODS do
        local upper_period = ORDERED_PERIODS[j]
        local v2 = config[upper_period]
        if type(v2) == "number" and v2 < v1 then
          return nil, fmt("The limit for %s(%.1f) cannot be lower than " ..
                          "the limit for %s(%.1f)", upper_period, v2,
                          lower_period, v1)
        end
      end
    end
  end

  if config.policy ~= "redis" and config.sync_rate ~= SYNC_RATE_REALTIME then
    return nil, "sync_rate can only be used with the redis policy"
  end

  if config.policy == "redis" and config.sync_rate ~= SYNC_RATE_REALTIME
     and config.sync_rate < 0.02 then
    return nil, "sync_rate must be greater than 0.02, or -1 to disable"
  end

  return true
end


-- luagate's extensions: checks between the new fields.
local function validate_extensions(config)
  local ws = config.window_size
  if type(ws) == "number" then
    for _, period in ipairs(ORDERED_PERIODS) do
      if PERIOD_SIZES[period] == ws and type(config[period]) == "number" then
        return nil, fmt("window_size %d is the '%s' window, which is " ..
                        "already limited: set one of them", ws, period)
      end
    end
  end
  if type(config.burst) == "number" and config.algorithm ~= "gcra" then
    return nil, "burst is only used with algorithm 'gcra'"
  end
  return true
end


local function refuse_cluster(policy)
  if policy == "cluster" then
    return nil, "the 'cluster' policy keeps counters in Kong's database " ..
                "and luagate has none: use 'local' or 'redis'"
  end
  return true
end


local function refuse_ssl(ssl)
  if ssl == true then
    return nil, "TLS to Redis is not supported yet (luagate.redis " ..
                "connects over plain TCP): set ssl to false"
  end
  return true
end


-- Kong's at_least_one_of over the six periods, satisfied by limit too.
local function check_some_limit(entity)
  local config = entity.config
  if type(config) ~= "table" then
    return true
  end
  if type(config.limit) == "number" then
    return true
  end
  for _, period in ipairs(ORDERED_PERIODS) do
    if type(config[period]) == "number" then
      return true
    end
  end
  return nil, "at least one of these fields must be non-empty: " ..
              "'config.second', 'config.minute', 'config.hour', " ..
              "'config.day', 'config.month', 'config.year'"
end


local function period_field(period)
  return {
    description = "The number of HTTP requests that can be made per " ..
                  period .. ".",
    type = "number",
    gt = 0,
  }
end


local redis_record = {
  description = "Redis configuration, used by the redis policy.",
  type = "record",
  fields = {
    { host = typedefs.host {
        description = "A string representing a host name, such as " ..
                      "example.com: the Redis server.",
    } },
    { port = typedefs.port {
        description = "An integer representing a port number between 0 " ..
                      "and 65535, inclusive: the Redis server's port.",
        default = 6379,
    } },
    { timeout = typedefs.timeout {
        description = "An integer representing a timeout in " ..
                      "milliseconds: how long a Redis command may take.",
        default = 2000,
    } },
    { username = {
        description = "Username to use for Redis connections. If " ..
                      "undefined, ACL authentication won't be performed. " ..
                      "This requires Redis v6.0.0+.",
        type = "string",
        referenceable = true,
    } },
    { password = {
        description = "Password to use for Redis connections. If " ..
                      "undefined, no AUTH commands are sent to Redis.",
        type = "string",
        encrypted = true,
        referenceable = true,
        len_min = 0,
    } },
    { database = {
        description = "Database to use for the Redis connection when " ..
                      "using the `redis` strategy.",
        type = "integer",
        default = 0,
    } },
    { ssl = {
        description = "If set to true, uses SSL to connect to Redis. " ..
                      "Not supported by luagate yet: only false is " ..
                      "accepted.",
        type = "boolean",
        required = false,
        default = false,
        custom_validator = refuse_ssl,
    } },
    { ssl_verify = {
        description = "If set to true, verifies the validity of the " ..
                      "server SSL certificate (unused while ssl is " ..
                      "not supported).",
        type = "boolean",
        required = false,
        default = false,
    } },
    { server_name = typedefs.sni {
        description = "A string representing an SNI (server name " ..
                      "indication) value for TLS (unused while ssl is " ..
                      "not supported).",
        required = false,
    } },
  },
}


-- Kong's deprecated flat redis_* fields, turned into redis.* on input.
local function shorthand(name, field_type, extra)
  local f = {
    type = field_type,
    description = "Deprecated: use config.redis." .. name .. ".",
    deprecation = {
      message = "rate-limiting: config.redis_" .. name .. " is " ..
                "deprecated, please use config.redis." .. name ..
                " instead",
      removal_in_version = "4.0",
    },
    func = function(value)
      return { redis = { [name] = value } }
    end,
  }
  for k, v in pairs(extra or {}) do
    f[k] = v
  end
  return { ["redis_" .. name] = f }
end


return {
  name = "rate-limiting",
  fields = {
    { protocols = typedefs.protocols_http },
    { config = {
        type = "record",
        fields = {
          { second = period_field("second") },
          { minute = period_field("minute") },
          { hour = period_field("hour") },
          { day = period_field("day") },
          { month = period_field("month") },
          { year = period_field("year") },
          { limit_by = {
              description = "The entity that is used when aggregating " ..
                            "the limits.",
              type = "string",
              default = "consumer",
              one_of = { "consumer", "credential", "ip", "service",
                         "header", "path" },
          } },
          { header_name = typedefs.header_name {
              description = "A string representing an HTTP header " ..
                            "name: the header whose value identifies " ..
                            "the client with limit_by = header.",
          } },
          { path = typedefs.path {
              description = "A string representing a URL path, such as " ..
                            "/path/to/resource: counted apart with " ..
                            "limit_by = path.",
          } },
          { policy = {
              description = "The rate-limiting policies to use for " ..
                            "retrieving and incrementing the limits.",
              type = "string",
              default = "local",
              len_min = 0,
              one_of = { "local", "cluster", "redis" },
              custom_validator = refuse_cluster,
          } },
          { fault_tolerant = {
              description = "A boolean value that determines if the " ..
                            "requests should be proxied even if the " ..
                            "counters' store (Redis) cannot be reached. " ..
                            "If `false`, then the clients will see `500` " ..
                            "errors.",
              type = "boolean",
              required = true,
              default = true,
          } },
          { redis = redis_record },
          { hide_client_headers = {
              description = "Optionally hide informative response headers.",
              type = "boolean",
              required = true,
              default = false,
          } },
          { error_code = {
              description = "Set a custom error code to return when the " ..
                            "rate limit is exceeded.",
              type = "number",
              default = 429,
              gt = 0,
          } },
          { error_message = {
              description = "Set a custom error message to return when " ..
                            "the rate limit is exceeded.",
              type = "string",
              default = "API rate limit exceeded",
          } },
          { sync_rate = {
              description = "How often to sync counter data to the " ..
                            "central data store. A value of -1 results in " ..
                            "synchronous behavior (luagate is always " ..
                            "synchronous).",
              type = "number",
              required = true,
              default = -1,
          } },
          -- luagate's extensions
          { algorithm = {
              description = "luagate: how requests are counted: " ..
                            "fixed-window (Kong's calendar windows), " ..
                            "sliding-window (weighted previous + current " ..
                            "window) or gcra (generic cell rate: limit " ..
                            "per window as an even rate with a burst).",
              type = "string",
              default = "fixed-window",
              one_of = { "fixed-window", "sliding-window", "gcra" },
          } },
          { limit = {
              description = "luagate: the number of HTTP requests that " ..
                            "can be made per window_size seconds.",
              type = "number",
              gt = 0,
          } },
          { window_size = {
              description = "luagate: the length in seconds of the " ..
                            "window of `limit` (windows start at multiples " ..
                            "of it since the epoch).",
              type = "integer",
              between = { 1, 31536000 },
          } },
          { burst = {
              description = "luagate, gcra only: how many requests may " ..
                            "arrive at once after a quiet period; default: " ..
                            "each limit's own value.",
              type = "integer",
              gt = 0,
          } },
          { throttle = {
              description = "luagate: hold an over-limit request until it " ..
                            "fits the rate instead of refusing it, within " ..
                            "max_wait_ms and max_queue.",
              type = "record",
              required = false,
              fields = {
                { max_wait_ms = {
                    description = "The longest a request may be held, in " ..
                                  "milliseconds; a longer wait is refused.",
                    type = "integer",
                    default = 1000,
                    between = { 1, 600000 },
                } },
                { max_queue = {
                    description = "How many requests of one client " ..
                                  "(identifier) may wait at once on this " ..
                                  "node; more are refused.",
                    type = "integer",
                    default = 100,
                    between = { 1, 1000000 },
                } },
              },
          } },
        },
        custom_validator = validate_config,
        entity_checks = {
          { mutually_required = { "limit", "window_size" } },
          { custom_entity_check = {
              field_sources = { "window_size", "burst", "algorithm" },
              fn = validate_extensions,
          } },
        },
        shorthand_fields = {
          shorthand("host", "string"),
          shorthand("port", "integer"),
          shorthand("password", "string", { len_min = 0 }),
          shorthand("username", "string"),
          shorthand("ssl", "boolean"),
          shorthand("ssl_verify", "boolean"),
          shorthand("server_name", "string"),
          shorthand("timeout", "integer"),
          shorthand("database", "integer"),
        },
      },
    },
  },
  entity_checks = {
    { custom_entity_check = {
        field_sources = { "config" },
        fn = check_some_limit,
    } },
    { conditional = {
        if_field = "config.policy", if_match = { eq = "redis" },
        then_field = "config.redis.host", then_match = { required = true },
    } },
    { conditional = {
        if_field = "config.policy", if_match = { eq = "redis" },
        then_field = "config.redis.port", then_match = { required = true },
    } },
    { conditional = {
        if_field = "config.policy", if_match = { eq = "redis" },
        then_field = "config.redis.timeout", then_match = { required = true },
    } },
    { conditional = {
        if_field = "config.limit_by", if_match = { eq = "header" },
        then_field = "config.header_name", then_match = { required = true },
    } },
    { conditional = {
        if_field = "config.limit_by", if_match = { eq = "path" },
        then_field = "config.path", then_match = { required = true },
    } },
  },
}
