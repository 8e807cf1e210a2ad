/* A fully built configuration: what one generation of the declarative file
 * becomes in a worker. Immutable once built; refcounted so that a request
 * keeps the configuration it started with across a reload. */
#ifndef GW_CONFIG_T_H
#define GW_CONFIG_T_H

#include <stdint.h>
#include <stddef.h>

struct gw_router;
struct gw_dns_entry;

/* Phases a route may run Lua for; a route whose mask is 0 never enters Lua. */
enum gw_phase {
    GW_PHASE_REWRITE = 1 << 0,
    GW_PHASE_ACCESS = 1 << 1,
    GW_PHASE_RESPONSE = 1 << 2,
    GW_PHASE_HEADER_FILTER = 1 << 3,
    GW_PHASE_BODY_FILTER = 1 << 4,
    GW_PHASE_LOG = 1 << 5,
};

struct gw_service {
    char *name;              /* may be NULL */
    char *host;              /* hostname or IP literal */
    int port;
    int https;               /* protocol https (TLS comes with a later issue) */
    char *path;              /* NULL when the service has no path */
    size_t path_len;
    char *host_header;       /* "host" or "host:port" when the port is not the default */
    size_t host_header_len;
    int connect_timeout;     /* ms */
    int write_timeout;       /* ms */
    int read_timeout;        /* ms */
    int retries;
    struct gw_dns_entry *dns; /* per-worker resolver cache entry */
};

struct gw_route {
    char *name;    /* may be NULL */
    char *id;
    int service;   /* index into services, -1 when none */
    int strip_path;
    int preserve_host;
    int path_v1;   /* path_handling v1 */
    uint32_t phases; /* enum gw_phase mask */
};

struct gw_config {
    int refs;
    uint64_t generation;
    struct gw_router *router;
    struct gw_service *services;
    int nservices;
    struct gw_route *routes;
    int nroutes;
    char hash[65];
    int lua_ref;  /* the normalized Lua config table, kept for plugins */
    uint32_t global_phases; /* phases of global plugins (rewrite, and requests no route took) */
};

#endif
