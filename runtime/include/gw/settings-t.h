/* Process-wide settings from the command line and LUAGATE_* variables.
 * Filled once by main() before the master starts; read-only afterwards. */
#ifndef GW_SETTINGS_T_H
#define GW_SETTINGS_T_H

#include <sys/socket.h>

#define GW_MAX_LISTEN 16
#define GW_MAX_PLUGIN_DIRS 16
#define GW_MAX_WORKERS 64
#define GW_MAX_SHDICTS 64

struct gw_listen {
    char text[128]; /* as given: "0.0.0.0:8000" */
    struct sockaddr_storage addr;
    socklen_t addrlen;
    int port;
    int admin; /* serves the admin API instead of the proxy */
    int ssl;   /* the "ssl" flag: TLS on accept */
    int http2; /* the "http2" flag: ALPN h2 on TLS, h2c prior knowledge on plain */
};

struct gw_settings {
    const char *config_path;
    const char *prefix; /* the install root that holds lua/ and plugins/ */
    struct gw_listen listen[GW_MAX_LISTEN];
    int nlisten; /* proxy and admin listeners together */
    int workers;
    const char *plugin_dirs[GW_MAX_PLUGIN_DIRS];
    int nplugin_dirs;
    int log_level;
    const char *access_log; /* path, "stdout" or "off" */
    const char *error_log;  /* path or "stderr" */
    const char *pid_file;   /* NULL: none */
    const char *admin_token; /* NULL: the admin API asks for none */
    int metrics_off; /* --metrics off: no per-request series */
    int metrics_consumers; /* --metrics-consumers on: a consumer label on request counts */
    const char *ssl_cert; /* default certificate (chain) of TLS listeners, PEM file */
    const char *ssl_key;
    /* limits, in milliseconds or bytes */
    int client_header_timeout;
    int client_body_timeout;
    int keepalive_timeout;
    int send_timeout;
    int drain_timeout;
    size_t max_header_size;
    size_t max_body_size; /* 0: unlimited */
    int upstream_keepalive; /* idle connections kept per upstream address */
    int upstream_keepalive_timeout;
    int upstream_keepalive_requests;
    char dns_resolver[64];  /* "ADDR[:PORT]" of the DNS server; "" = resolv.conf */
    /* shared dictionaries (ngx.shared), created by the master before fork */
    const char *shdict_name[GW_MAX_SHDICTS];
    size_t shdict_size[GW_MAX_SHDICTS];
    int nshdicts;
    /* cosockets' TLS (Kong's lua_ssl_trusted_certificate, lua_ssl_verify_depth) */
    const char *lua_ssl_trusted_certificate; /* PEM file; NULL: the system store */
    int lua_ssl_verify_depth;
};

extern struct gw_settings gw_settings;

#endif
