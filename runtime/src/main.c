/* The command line: luagate run | check | reload | health | config diff |
 * version | help. Every option of `run` has a LUAGATE_* environment
 * variable; the command line wins. */
#include <arpa/inet.h>
#include <getopt.h>
#include <libgen.h>
#include <limits.h>
#include <lua.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "gw/admin_cli.h"
#include "gw/config.h"
#include "gw/log.h"
#include "gw/master.h"
#include "gw/settings-t.h"
#include "gw/version.h"

struct gw_settings gw_settings;

static const char usage[] =
    "usage: luagate <command> [options]\n"
    "\n"
    "commands:\n"
    "  run       start the gateway (master and workers) in the foreground\n"
    "  check     validate a configuration file and exit: 0 when valid, 1 with\n"
    "            one error per line (FILE:LINE: path: message) otherwise\n"
    "  reload    [--pid FILE] send SIGHUP to the running master (its pid file):\n"
    "            exit 0, or 1 with the reason\n"
    "  health    [--admin ADDR:PORT] [--admin-token T] GET /status: exit 0 when it\n"
    "            answers with workers > 0, 1 otherwise (container health checks)\n"
    "  config diff -c FILE [--admin ADDR:PORT] [--admin-token T] [--plugins-dir DIR]\n"
    "            compare FILE with the running configuration (GET /config) by\n"
    "            entity: exit 0 when equal, 1 when different, 2 on error\n"
    "  version   print the version\n"
    "  help      print this text\n"
    "\n"
    "options (each has an environment variable; the command line wins):\n"
    "  -c, --config FILE              declarative config, Kong's format (.yml, .yaml,\n"
    "                                 .json or .lua)                  LUAGATE_CONFIG\n"
    "  --listen \"ADDR:PORT [ssl] [http2]\"  proxy listener, repeatable; ssl: TLS; http2:\n"
    "                                 HTTP/2 too (ALPN h2 with ssl, prior knowledge\n"
    "                                 without) (default 0.0.0.0:8000)\n"
    "                                                                 LUAGATE_LISTEN (comma-separated)\n"
    "  --admin-listen ADDR:PORT|off   admin API listener (default 127.0.0.1:8001)\n"
    "                                                                 LUAGATE_ADMIN_LISTEN\n"
    "  --workers N                    worker processes (default: number of CPUs)\n"
    "                                                                 LUAGATE_WORKERS\n"
    "  --plugins-dir DIR              extra plugin directory, repeatable\n"
    "                                                                 LUAGATE_PLUGINS_DIR (colon-separated)\n"
    "  --log-level LEVEL              debug|info|notice|warn|error|crit|alert|emerg\n"
    "                                 (default notice)                LUAGATE_LOG_LEVEL\n"
    "  --error-log PATH|stderr        error log (default stderr)      LUAGATE_ERROR_LOG\n"
    "  --access-log PATH|stdout|off   JSON access log (default stdout) LUAGATE_ACCESS_LOG\n"
    "  --admin-token TOKEN            token the admin API asks for (Authorization:\n"
    "                                 Bearer TOKEN or Kong-Admin-Token: TOKEN); required\n"
    "                                 when --admin-listen is not a loopback address\n"
    "                                                                 LUAGATE_ADMIN_TOKEN\n"
    "  --metrics on|off               per-request Prometheus series (requests, latency,\n"
    "                                 bytes by service and route; default on)\n"
    "                                                                 LUAGATE_METRICS\n"
    "  --metrics-consumers on|off     a consumer label (username) on request counts; one\n"
    "                                 series per consumer, so off by default\n"
    "                                                                 LUAGATE_METRICS_CONSUMERS\n"
    "  --pid FILE                     write the master's pid          LUAGATE_PID\n"
    "  --client-header-timeout MS     time to receive a request head (default 60000)\n"
    "                                                                 LUAGATE_CLIENT_HEADER_TIMEOUT\n"
    "  --client-body-timeout MS       time between two body reads (default 60000)\n"
    "                                                                 LUAGATE_CLIENT_BODY_TIMEOUT\n"
    "  --keepalive-timeout MS         idle client keepalive (default 75000)\n"
    "                                                                 LUAGATE_KEEPALIVE_TIMEOUT\n"
    "  --send-timeout MS              time between two writes to a client (default 60000)\n"
    "                                                                 LUAGATE_SEND_TIMEOUT\n"
    "  --max-header-size BYTES        request head limit, 431 beyond (default 32768)\n"
    "                                                                 LUAGATE_MAX_HEADER_SIZE\n"
    "  --max-body-size BYTES          request body limit, 413 beyond (default 0: none)\n"
    "                                                                 LUAGATE_MAX_BODY_SIZE\n"
    "  --drain-timeout MS             graceful stop: time for in-flight requests\n"
    "                                 (default 30000)                 LUAGATE_DRAIN_TIMEOUT\n"
    "  --upstream-keepalive N         idle upstream connections kept per address\n"
    "                                 (default 512)                   LUAGATE_UPSTREAM_KEEPALIVE\n"
    "  --upstream-keepalive-timeout MS idle upstream connection lifetime (default 60000)\n"
    "                                                                 LUAGATE_UPSTREAM_KEEPALIVE_TIMEOUT\n"
    "  --shared-dict NAME=SIZE        a shared dictionary (ngx.shared.NAME), SIZE in bytes\n"
    "                                 or with k/m/g; repeatable; Kong's dictionaries exist by\n"
    "                                 default (kong, kong_db_cache, kong_rate_limiting_counters,\n"
    "                                 ...)                            LUAGATE_SHARED_DICTS (comma-separated)\n"
    "  --dns-resolver ADDR[:PORT]     DNS server for upstream names (default: resolv.conf;\n"
    "                                 /etc/hosts is read first)     LUAGATE_DNS_RESOLVER\n"
    "  --ssl-cert FILE                default certificate (PEM, leaf then chain) of the\n"
    "                                 listeners with the ssl flag (--listen \"ADDR:PORT ssl\");\n"
    "                                 without it they use a self-signed one for localhost\n"
    "                                                                 LUAGATE_SSL_CERT\n"
    "  --ssl-key FILE                 its private key (PEM)           LUAGATE_SSL_CERT_KEY\n"
    "  --lua-ssl-trusted-certificate FILE  CAs (PEM) that cosockets' sslhandshake and\n"
    "                                 luagate.http verify servers with (default: the system\n"
    "                                 store)                          LUAGATE_LUA_SSL_TRUSTED_CERTIFICATE\n"
    "  --lua-ssl-verify-depth N       their verification depth (default 1, Kong's)\n"
    "                                                                 LUAGATE_LUA_SSL_VERIFY_DEPTH\n"
    "  -h, --help                     this text\n"
    "\n"
    "signals (to the master): HUP reloads the configuration (an invalid one is refused\n"
    "and the running one stays), TERM/INT stop gracefully, QUIT stops at once.\n"
    "The admin API (POST /config, GET /config, entities, debug switches) is described\n"
    "in docs/admin-api.md; running in production in docs/operations.md.\n";

enum {
    O_LISTEN = 256,
    O_ADMIN,
    O_WORKERS,
    O_PLUGINS,
    O_LOGLEVEL,
    O_ERRLOG,
    O_ACCLOG,
    O_PID,
    O_HDR_TO,
    O_BODY_TO,
    O_KA_TO,
    O_SEND_TO,
    O_MAX_HDR,
    O_MAX_BODY,
    O_DRAIN,
    O_UP_KA,
    O_UP_KA_TO,
    O_SHDICT,
    O_DNS,
    O_ADMIN_TOKEN,
    O_METRICS,
    O_METRICS_CONSUMERS,
    O_SSL_CERT,
    O_SSL_KEY,
    O_LUA_SSL_CA,
    O_LUA_SSL_DEPTH,
};

static const struct option options[] = {
    {"config", required_argument, NULL, 'c'},
    {"listen", required_argument, NULL, O_LISTEN},
    {"admin-listen", required_argument, NULL, O_ADMIN},
    {"workers", required_argument, NULL, O_WORKERS},
    {"plugins-dir", required_argument, NULL, O_PLUGINS},
    {"log-level", required_argument, NULL, O_LOGLEVEL},
    {"error-log", required_argument, NULL, O_ERRLOG},
    {"access-log", required_argument, NULL, O_ACCLOG},
    {"pid", required_argument, NULL, O_PID},
    {"client-header-timeout", required_argument, NULL, O_HDR_TO},
    {"client-body-timeout", required_argument, NULL, O_BODY_TO},
    {"keepalive-timeout", required_argument, NULL, O_KA_TO},
    {"send-timeout", required_argument, NULL, O_SEND_TO},
    {"max-header-size", required_argument, NULL, O_MAX_HDR},
    {"max-body-size", required_argument, NULL, O_MAX_BODY},
    {"drain-timeout", required_argument, NULL, O_DRAIN},
    {"upstream-keepalive", required_argument, NULL, O_UP_KA},
    {"upstream-keepalive-timeout", required_argument, NULL, O_UP_KA_TO},
    {"shared-dict", required_argument, NULL, O_SHDICT},
    {"dns-resolver", required_argument, NULL, O_DNS},
    {"admin-token", required_argument, NULL, O_ADMIN_TOKEN},
    {"metrics", required_argument, NULL, O_METRICS},
    {"metrics-consumers", required_argument, NULL, O_METRICS_CONSUMERS},
    {"ssl-cert", required_argument, NULL, O_SSL_CERT},
    {"ssl-key", required_argument, NULL, O_SSL_KEY},
    {"lua-ssl-trusted-certificate", required_argument, NULL, O_LUA_SSL_CA},
    {"lua-ssl-verify-depth", required_argument, NULL, O_LUA_SSL_DEPTH},
    {"help", no_argument, NULL, 'h'},
    {NULL, 0, NULL, 0},
};

static const struct {
    int opt;
    const char *env;
} envs[] = {
    {'c', "LUAGATE_CONFIG"},
    {O_LISTEN, "LUAGATE_LISTEN"},
    {O_ADMIN, "LUAGATE_ADMIN_LISTEN"},
    {O_WORKERS, "LUAGATE_WORKERS"},
    {O_PLUGINS, "LUAGATE_PLUGINS_DIR"},
    {O_LOGLEVEL, "LUAGATE_LOG_LEVEL"},
    {O_ERRLOG, "LUAGATE_ERROR_LOG"},
    {O_ACCLOG, "LUAGATE_ACCESS_LOG"},
    {O_PID, "LUAGATE_PID"},
    {O_HDR_TO, "LUAGATE_CLIENT_HEADER_TIMEOUT"},
    {O_BODY_TO, "LUAGATE_CLIENT_BODY_TIMEOUT"},
    {O_KA_TO, "LUAGATE_KEEPALIVE_TIMEOUT"},
    {O_SEND_TO, "LUAGATE_SEND_TIMEOUT"},
    {O_MAX_HDR, "LUAGATE_MAX_HEADER_SIZE"},
    {O_MAX_BODY, "LUAGATE_MAX_BODY_SIZE"},
    {O_DRAIN, "LUAGATE_DRAIN_TIMEOUT"},
    {O_UP_KA, "LUAGATE_UPSTREAM_KEEPALIVE"},
    {O_UP_KA_TO, "LUAGATE_UPSTREAM_KEEPALIVE_TIMEOUT"},
    {O_SHDICT, "LUAGATE_SHARED_DICTS"},
    {O_DNS, "LUAGATE_DNS_RESOLVER"},
    {O_ADMIN_TOKEN, "LUAGATE_ADMIN_TOKEN"},
    {O_METRICS, "LUAGATE_METRICS"},
    {O_METRICS_CONSUMERS, "LUAGATE_METRICS_CONSUMERS"},
    {O_SSL_CERT, "LUAGATE_SSL_CERT"},
    {O_SSL_KEY, "LUAGATE_SSL_CERT_KEY"},
    {O_LUA_SSL_CA, "LUAGATE_LUA_SSL_TRUSTED_CERTIFICATE"},
    {O_LUA_SSL_DEPTH, "LUAGATE_LUA_SSL_VERIFY_DEPTH"},
};

/* The listeners given by flags replace those given by environment, which
 * replace the defaults: count who set them. */
static int listen_from_cli, admin_from_cli, plugins_from_cli;
static const char *admin_spec = "127.0.0.1:8001";

static int fail(const char *fmt, const char *arg)
{
    fprintf(stderr, "luagate: ");
    fprintf(stderr, fmt, arg);
    fprintf(stderr, "\n");
    return -1;
}

/* Parses "ADDR:PORT", "[v6]:PORT", ":PORT" or "PORT", with Kong's optional
 * flags after a space ("reuseport", "backlog=N" are accepted and ignored). */
static int parse_listen(const char *spec, int admin)
{
    if (gw_settings.nlisten == GW_MAX_LISTEN)
        return fail("too many listeners (at most %s)", "16");
    struct gw_listen *l = &gw_settings.listen[gw_settings.nlisten];
    memset(l, 0, sizeof(*l));
    char text[128];
    snprintf(text, sizeof(text), "%s", spec);
    char *sp = strchr(text, ' ');
    if (sp) {
        *sp = '\0';
        for (char *f = strtok(sp + 1, " "); f; f = strtok(NULL, " ")) {
            if (strcmp(f, "reuseport") == 0 || strncmp(f, "backlog=", 8) == 0)
                continue;
            if (strcmp(f, "ssl") == 0 && !admin) {
                l->ssl = 1;
                continue;
            }
            if (strcmp(f, "ssl") == 0)
                return fail("listener flag '%s' is not supported on the admin listener "
                            "(put it behind a TLS proxy or keep it on loopback)", f);
            if (strcmp(f, "http2") == 0 && !admin) {
                l->http2 = 1;
                continue;
            }
            if (strcmp(f, "http2") == 0)
                return fail("listener flag '%s' is not supported on the admin listener", f);
            return fail("unknown listener flag '%s'", f);
        }
    }
    snprintf(l->text, sizeof(l->text), "%s", text);
    char host[128] = "0.0.0.0";
    const char *port;
    if (text[0] == '[') {
        char *rb = strchr(text, ']');
        if (rb == NULL || rb[1] != ':')
            return fail("invalid listen address '%s'", spec);
        *rb = '\0';
        snprintf(host, sizeof(host), "%s", text + 1);
        port = rb + 2;
    } else {
        char *colon = strrchr(text, ':');
        if (colon) {
            *colon = '\0';
            if (colon != text)
                snprintf(host, sizeof(host), "%s", text);
            port = colon + 1;
        } else {
            port = text;
        }
    }
    char *end;
    long p = strtol(port, &end, 10);
    if (*port == '\0' || *end != '\0' || p < 0 || p > 65535)
        return fail("invalid port in listen address '%s'", spec);
    if (strcmp(host, "localhost") == 0)
        snprintf(host, sizeof(host), "127.0.0.1");
    struct sockaddr_in *s4 = (struct sockaddr_in *)&l->addr;
    struct sockaddr_in6 *s6 = (struct sockaddr_in6 *)&l->addr;
    if (inet_pton(AF_INET, host, &s4->sin_addr) == 1) {
        s4->sin_family = AF_INET;
        s4->sin_port = htons((uint16_t)p);
        l->addrlen = sizeof(*s4);
    } else if (inet_pton(AF_INET6, host, &s6->sin6_addr) == 1) {
        s6->sin6_family = AF_INET6;
        s6->sin6_port = htons((uint16_t)p);
        l->addrlen = sizeof(*s6);
    } else {
        return fail("invalid address in listen address '%s' (an IP address is needed)", spec);
    }
    l->port = (int)p;
    l->admin = admin;
    gw_settings.nlisten++;
    return 0;
}

/* "NAME=SIZE" with SIZE in bytes or with a k, m or g suffix; a name given
 * again replaces the earlier size (so defaults can be resized). */
static int add_shdict(const char *spec)
{
    const char *eq = strchr(spec, '=');
    if (eq == NULL || eq == spec || eq - spec > 63)
        return fail("invalid shared dictionary '%s' (NAME=SIZE expected)", spec);
    char *end;
    double n = strtod(eq + 1, &end);
    double mult = 1;
    if (*end == 'k' || *end == 'K')
        mult = 1024, end++;
    else if (*end == 'm' || *end == 'M')
        mult = 1024 * 1024, end++;
    else if (*end == 'g' || *end == 'G')
        mult = 1024.0 * 1024 * 1024, end++;
    if (end == eq + 1 || *end != '\0' || n <= 0)
        return fail("invalid size in shared dictionary '%s'", spec);
    size_t size = (size_t)(n * mult);
    char *name = strndup(spec, (size_t)(eq - spec));
    for (int i = 0; i < gw_settings.nshdicts; i++)
        if (strcmp(gw_settings.shdict_name[i], name) == 0) {
            gw_settings.shdict_size[i] = size;
            free(name);
            return 0;
        }
    if (gw_settings.nshdicts == GW_MAX_SHDICTS)
        return fail("too many shared dictionaries (at most %s)", "64");
    gw_settings.shdict_name[gw_settings.nshdicts] = name;
    gw_settings.shdict_size[gw_settings.nshdicts++] = size;
    return 0;
}

static int parse_int(const char *name, const char *v, long min, long max, long *out)
{
    char *end;
    long n = strtol(v, &end, 10);
    if (*v == '\0' || *end != '\0' || n < min || n > max) {
        fprintf(stderr, "luagate: invalid value '%s' for %s\n", v, name);
        return -1;
    }
    *out = n;
    return 0;
}

/* Proxy listeners are collected first, the admin listener is added last. */
static char *proxy_specs[GW_MAX_LISTEN];
static int nproxy_specs;

static int apply(int opt, const char *v, int from_cli)
{
    long n;
    switch (opt) {
    case 'c':
        gw_settings.config_path = v;
        return 0;
    case O_LISTEN: {
        if (from_cli && !listen_from_cli) {
            nproxy_specs = 0;
            listen_from_cli = 1;
        }
        char *copy = strdup(v);
        for (char *s = strtok(copy, ","); s; s = strtok(NULL, ",")) {
            while (*s == ' ')
                s++;
            if (nproxy_specs == GW_MAX_LISTEN - 1)
                return fail("too many listeners (at most %s)", "15");
            proxy_specs[nproxy_specs++] = strdup(s);
        }
        free(copy);
        return 0;
    }
    case O_ADMIN:
        if (!from_cli && admin_from_cli)
            return 0;
        admin_from_cli |= from_cli;
        admin_spec = v;
        return 0;
    case O_WORKERS:
        if (parse_int("--workers", v, 1, GW_MAX_WORKERS, &n) != 0)
            return -1;
        gw_settings.workers = (int)n;
        return 0;
    case O_PLUGINS: {
        if (from_cli && !plugins_from_cli) {
            gw_settings.nplugin_dirs = 0;
            plugins_from_cli = 1;
        }
        char *copy = strdup(v);
        for (char *s = strtok(copy, from_cli ? "" : ":"); s; s = strtok(NULL, ":")) {
            if (gw_settings.nplugin_dirs == GW_MAX_PLUGIN_DIRS)
                return fail("too many plugin directories (at most %s)", "16");
            char real[PATH_MAX];
            gw_settings.plugin_dirs[gw_settings.nplugin_dirs++] =
                strdup(realpath(s, real) ? real : s);
        }
        free(copy);
        return 0;
    }
    case O_LOGLEVEL:
        if ((gw_settings.log_level = gw_log_level_parse(v)) < 0)
            return fail("unknown log level '%s'", v);
        return 0;
    case O_ERRLOG:
        gw_settings.error_log = v;
        return 0;
    case O_ACCLOG:
        gw_settings.access_log = v;
        return 0;
    case O_METRICS_CONSUMERS:
        if (strcmp(v, "on") == 0)
            gw_settings.metrics_consumers = 1;
        else if (strcmp(v, "off") == 0)
            gw_settings.metrics_consumers = 0;
        else
            return fail("--metrics-consumers takes on or off, not '%s'", v);
        return 0;
    case O_METRICS:
        if (strcmp(v, "on") == 0)
            gw_settings.metrics_off = 0;
        else if (strcmp(v, "off") == 0)
            gw_settings.metrics_off = 1;
        else
            return fail("--metrics takes on or off, not '%s'", v);
        return 0;
    case O_ADMIN_TOKEN:
        gw_settings.admin_token = *v ? v : NULL;
        return 0;
    case O_PID:
        gw_settings.pid_file = v;
        return 0;
    case O_SSL_CERT:
        gw_settings.ssl_cert = v;
        return 0;
    case O_SSL_KEY:
        gw_settings.ssl_key = v;
        return 0;
    case O_HDR_TO:
    case O_BODY_TO:
    case O_KA_TO:
    case O_SEND_TO:
    case O_DRAIN:
    case O_UP_KA_TO:
        if (parse_int("a timeout", v, 1, 86400000, &n) != 0)
            return -1;
        if (opt == O_HDR_TO)
            gw_settings.client_header_timeout = (int)n;
        else if (opt == O_BODY_TO)
            gw_settings.client_body_timeout = (int)n;
        else if (opt == O_KA_TO)
            gw_settings.keepalive_timeout = (int)n;
        else if (opt == O_SEND_TO)
            gw_settings.send_timeout = (int)n;
        else if (opt == O_DRAIN)
            gw_settings.drain_timeout = (int)n;
        else
            gw_settings.upstream_keepalive_timeout = (int)n;
        return 0;
    case O_MAX_HDR:
        if (parse_int("--max-header-size", v, 1024, 1024 * 1024, &n) != 0)
            return -1;
        gw_settings.max_header_size = (size_t)n;
        return 0;
    case O_MAX_BODY:
        if (parse_int("--max-body-size", v, 0, LONG_MAX, &n) != 0)
            return -1;
        gw_settings.max_body_size = (size_t)n;
        return 0;
    case O_SHDICT: {
        char *copy = strdup(v);
        for (char *spec = strtok(copy, ","); spec; spec = strtok(NULL, ",")) {
            while (*spec == ' ')
                spec++;
            if (add_shdict(spec) != 0) {
                free(copy);
                return -1;
            }
        }
        free(copy);
        return 0;
    }
    case O_DNS: {
        char host[64];
        snprintf(host, sizeof(host), "%s", v);
        char *colon = strrchr(host, ':');
        if (colon)
            *colon = '\0';
        struct in_addr a;
        if (inet_pton(AF_INET, host, &a) != 1)
            return fail("invalid --dns-resolver '%s' (an IPv4 address[:port])", v);
        snprintf(gw_settings.dns_resolver, sizeof(gw_settings.dns_resolver), "%s", v);
        return 0;
    }
    case O_UP_KA:
        if (parse_int("--upstream-keepalive", v, 0, 100000, &n) != 0)
            return -1;
        gw_settings.upstream_keepalive = (int)n;
        return 0;
    case O_LUA_SSL_CA:
        /* checked here so that a typo fails at start, not at the first handshake */
        if (access(v, R_OK) != 0)
            return fail("--lua-ssl-trusted-certificate: cannot read '%s'", v);
        gw_settings.lua_ssl_trusted_certificate = v;
        return 0;
    case O_LUA_SSL_DEPTH:
        if (parse_int("--lua-ssl-verify-depth", v, 0, 100, &n) != 0)
            return -1;
        gw_settings.lua_ssl_verify_depth = (int)n;
        return 0;
    }
    return -1;
}

static void defaults(void)
{
    long ncpu = sysconf(_SC_NPROCESSORS_ONLN);
    gw_settings.workers = ncpu > 0 ? (int)(ncpu > GW_MAX_WORKERS ? GW_MAX_WORKERS : ncpu) : 1;
    gw_settings.log_level = GW_LOG_NOTICE;
    gw_settings.access_log = "stdout";
    gw_settings.error_log = "stderr";
    gw_settings.client_header_timeout = 60000;
    gw_settings.client_body_timeout = 60000;
    gw_settings.keepalive_timeout = 75000;
    gw_settings.send_timeout = 60000;
    gw_settings.drain_timeout = 30000;
    gw_settings.max_header_size = 32768;
    gw_settings.upstream_keepalive = 512;
    gw_settings.upstream_keepalive_timeout = 60000;
    gw_settings.upstream_keepalive_requests = 10000;
    gw_settings.lua_ssl_verify_depth = 1;
    /* Kong's dictionaries, so that plugins that use them find them */
    static const char *const kong_dicts[] = {
        "kong=5m", "kong_locks=8m", "kong_healthchecks=5m", "kong_cluster_events=5m",
        "kong_rate_limiting_counters=12m", "kong_core_db_cache=32m",
        "kong_core_db_cache_miss=12m", "kong_db_cache=32m", "kong_db_cache_miss=12m",
        "kong_secrets=5m", "prometheus_metrics=5m",
    };
    for (size_t i = 0; i < sizeof(kong_dicts) / sizeof(kong_dicts[0]); i++)
        add_shdict(kong_dicts[i]);
    proxy_specs[0] = "0.0.0.0:8000";
    nproxy_specs = 1;

    const char *pre = getenv("LUAGATE_PREFIX");
    static char buf[PATH_MAX];
    if (pre == NULL) {
        ssize_t n = readlink("/proc/self/exe", buf, sizeof(buf) - 1);
        pre = ".";
        if (n > 0) {
            /* <prefix>/bin/luagate, or deeper (build/address/luagate): the
             * nearest parent that holds lua/luagate/runtime.lua */
            buf[n] = '\0';
            char *d = dirname(buf);
            for (int depth = 0; depth < 4 && strcmp(d, "/") != 0; depth++) {
                d = dirname(d);
                char probe[PATH_MAX + 32];
                snprintf(probe, sizeof(probe), "%s/lua/luagate/runtime.lua", d);
                if (access(probe, R_OK) == 0) {
                    pre = d;
                    break;
                }
            }
        }
    }
    gw_settings.prefix = pre;
}

static int load_options(int argc, char **argv)
{
    for (size_t i = 0; i < sizeof(envs) / sizeof(envs[0]); i++) {
        const char *v = getenv(envs[i].env);
        if (v && *v && apply(envs[i].opt, v, 0) != 0)
            return -1;
    }
    int opt;
    optind = 2;
    while ((opt = getopt_long(argc, argv, "c:h", options, NULL)) != -1) {
        if (opt == 'h') {
            fputs(usage, stdout);
            exit(0);
        }
        if (opt == '?') {
            fprintf(stderr, "run 'luagate help' for the options\n");
            return -1;
        }
        if (apply(opt, optarg, 1) != 0)
            return -1;
    }
    if (optind < argc) {
        fprintf(stderr, "luagate: unexpected argument '%s'\n", argv[optind]);
        return -1;
    }
    for (int i = 0; i < nproxy_specs; i++)
        if (parse_listen(proxy_specs[i], 0) != 0)
            return -1;
    if (strcmp(admin_spec, "off") != 0) {
        if (parse_listen(admin_spec, 1) != 0)
            return -1;
        /* an admin API others can reach must ask for a token */
        const struct gw_listen *l = &gw_settings.listen[gw_settings.nlisten - 1];
        const struct sockaddr_in *s4 = (const struct sockaddr_in *)&l->addr;
        const struct sockaddr_in6 *s6 = (const struct sockaddr_in6 *)&l->addr;
        int loopback = l->addr.ss_family == AF_INET
                           ? (ntohl(s4->sin_addr.s_addr) >> 24) == 127
                           : IN6_IS_ADDR_LOOPBACK(&s6->sin6_addr);
        if (!loopback && gw_settings.admin_token == NULL)
            return fail("the admin API would listen on %s, which is not a loopback address: "
                        "set a token with --admin-token TOKEN (or LUAGATE_ADMIN_TOKEN), or "
                        "listen on 127.0.0.1",
                        l->text);
    }
    if ((gw_settings.ssl_cert == NULL) != (gw_settings.ssl_key == NULL)) {
        fprintf(stderr, "luagate: --ssl-cert and --ssl-key go together\n");
        return -1;
    }
    if (gw_settings.config_path == NULL) {
        fprintf(stderr, "luagate: no configuration file: use -c FILE (or LUAGATE_CONFIG)\n");
        return -1;
    }
    gw_log_level_current = gw_settings.log_level;
    return 0;
}

static int cmd_check(void)
{
    lua_State *L = gw_lua_new();
    if (L == NULL)
        return 2;
    char *errs = NULL;
    struct gw_config *cf = gw_config_load(L, gw_settings.config_path, &errs);
    if (cf == NULL) {
        fprintf(stderr, "%s\n", errs ? errs : "invalid configuration");
        free(errs);
        return 1;
    }
    printf("configuration %s is valid (%d services, %d routes)\n", gw_settings.config_path,
           cf->nservices, cf->nroutes);
    gw_config_release(&cf);
    lua_close(L);
    return 0;
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        fputs(usage, stderr);
        return 2;
    }
    const char *cmd = argv[1];
    if (strcmp(cmd, "version") == 0 || strcmp(cmd, "--version") == 0 ||
        strcmp(cmd, "-v") == 0) {
        printf("luagate %s\n", GW_VERSION);
        return 0;
    }
    if (strcmp(cmd, "help") == 0 || strcmp(cmd, "--help") == 0 || strcmp(cmd, "-h") == 0) {
        fputs(usage, stdout);
        return 0;
    }
    if (strcmp(cmd, "reload") == 0 || strcmp(cmd, "health") == 0 ||
        strcmp(cmd, "config") == 0) {
        defaults();
        return gw_admin_cli(argc, argv);
    }
    if (strcmp(cmd, "run") != 0 && strcmp(cmd, "check") != 0) {
        fprintf(stderr, "luagate: unknown command '%s'\n\n%s", cmd, usage);
        return 2;
    }
    defaults();
    if (load_options(argc, argv) != 0)
        return 2;
    if (strcmp(cmd, "check") == 0)
        return cmd_check();
    if (gw_log_open(gw_settings.error_log) != 0) {
        fprintf(stderr, "luagate: cannot open the error log '%s'\n", gw_settings.error_log);
        return 2;
    }
    return gw_master_run();
}
