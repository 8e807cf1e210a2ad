-- kong.constants: the names plugins import from Kong (headers, bundled
-- plugin names, protocols...). Values are Kong 3.x's.
local plugins = {
  "jwt", "acl", "correlation-id", "cors", "oauth2", "tcp-log", "udp-log",
  "file-log", "http-log", "key-auth", "hmac-auth", "basic-auth",
  "ip-restriction", "request-transformer", "response-transformer",
  "request-size-limiting", "rate-limiting", "response-ratelimiting",
  "syslog", "loggly", "datadog", "ldap-auth", "statsd", "bot-detection",
  "aws-lambda", "request-termination", "prometheus", "proxy-cache",
  "session", "acme", "grpc-gateway", "grpc-web", "pre-function",
  "post-function", "azure-functions", "zipkin", "opentelemetry",
  "ai-proxy", "ai-prompt-decorator", "ai-prompt-template",
  "ai-prompt-guard", "ai-request-transformer", "ai-response-transformer",
  "standard-webhooks", "redirect",
}
local bundled = {}
for _, p in ipairs(plugins) do
  bundled[p] = true
end

local protocols = {
  "grpc", "grpcs", "http", "https", "tcp", "tls", "tls_passthrough", "udp",
  "ws", "wss",
}
local protocols_set = {}
for _, p in ipairs(protocols) do
  protocols_set[p] = true
end

return {
  BUNDLED_PLUGINS = bundled,
  DEPRECATED_PLUGINS = {},
  PROTOCOLS = protocols,
  PROTOCOLS_WITH_SUBSYSTEM = {
    http = "http", https = "http", grpc = "http", grpcs = "http",
    ws = "http", wss = "http",
    tcp = "stream", tls = "stream", tls_passthrough = "stream",
    udp = "stream",
  },
  PROTOCOLS_SET = protocols_set,
  HEADERS = {
    HOST_OVERRIDE = "X-Host-Override",
    PROXY_LATENCY = "X-Kong-Proxy-Latency",
    RESPONSE_LATENCY = "X-Kong-Response-Latency",
    ADMIN_LATENCY = "X-Kong-Admin-Latency",
    UPSTREAM_LATENCY = "X-Kong-Upstream-Latency",
    UPSTREAM_STATUS = "X-Kong-Upstream-Status",
    CONSUMER_ID = "X-Consumer-ID",
    CONSUMER_CUSTOM_ID = "X-Consumer-Custom-ID",
    CONSUMER_USERNAME = "X-Consumer-Username",
    CREDENTIAL_USERNAME = "X-Credential-Username",
    CREDENTIAL_IDENTIFIER = "X-Credential-Identifier",
    RATELIMIT_LIMIT = "X-RateLimit-Limit",
    RATELIMIT_REMAINING = "X-RateLimit-Remaining",
    CONSUMER_GROUPS = "X-Consumer-Groups",
    AUTHENTICATED_GROUPS = "X-Authenticated-Groups",
    FORWARDED_HOST = "X-Forwarded-Host",
    FORWARDED_PREFIX = "X-Forwarded-Prefix",
    ANONYMOUS = "X-Anonymous-Consumer",
    VIA = "Via",
    SERVER = "Server",
    REQUEST_ID = "X-Kong-Request-Id",
  },
  RATELIMIT = {
    PERIODS = { "second", "minute", "hour", "day", "month", "year" },
  },
  CORE_ENTITIES = {
    "workspaces", "consumers", "certificates", "services", "routes", "snis",
    "upstreams", "targets", "plugins", "tags", "ca_certificates",
    "clustering_data_planes", "parameters", "vaults", "key_sets", "keys",
    "filter_chains",
  },
  ENTITY_CACHE_STORE = setmetatable({
    consumers = "cache",
    certificates = "core_cache",
    services = "core_cache",
    routes = "core_cache",
    snis = "core_cache",
    upstreams = "core_cache",
    targets = "core_cache",
    plugins = "core_cache",
    tags = "cache",
    ca_certificates = "core_cache",
    keys = "core_cache",
    key_sets = "core_cache",
  }, {
    __index = function()
      return "cache"
    end,
  }),
  DICTS = {
    "kong", "kong_locks", "kong_db_cache", "kong_db_cache_miss",
    "kong_core_db_cache", "kong_core_db_cache_miss", "kong_secrets",
    "kong_cluster_events", "kong_healthchecks",
    "kong_rate_limiting_counters",
  },
  DATABASE = {
    POSTGRES = { MIN = "9.5" },
  },
  DECLARATIVE_LOAD_KEY = "declarative_config:loaded",
  DECLARATIVE_HASH_KEY = "declarative_config:hash",
  CLUSTERING_SYNC_STATUS = {},
  KEY_FORMATS = { "jwk", "pem" },
  LOG_LEVELS = {
    debug = 8, info = 7, notice = 6, warn = 5, error = 4, crit = 3,
    alert = 2, emerg = 1,
  },
  REPORTS = {
    ADDRESS = "kong-hf.konghq.com",
    STATS_TLS_PORT = 61831,
  },
}
