/* A fully built configuration: what one generation of the declarative file
 * becomes in a worker. Immutable once built; refcounted so that a request
 * keeps the configuration it started with across a reload. */
#ifndef GW_CONFIG_T_H
#define GW_CONFIG_T_H

#include <stdint.h>
#include <stddef.h>

struct gw_router;
struct gw_dns_entry;
struct gw_health;
struct gw_mslot;
struct gw_tls_certs;
struct gw_memo_table;
struct gw_tls_client;
struct gw_guard;

/* Phases a route may run Lua for; a route whose mask is 0 never enters Lua. */
enum gw_phase {
    GW_PHASE_REWRITE = 1 << 0,
    GW_PHASE_ACCESS = 1 << 1,
    GW_PHASE_RESPONSE = 1 << 2,
    GW_PHASE_HEADER_FILTER = 1 << 3,
    GW_PHASE_BODY_FILTER = 1 << 4,
    GW_PHASE_LOG = 1 << 5,
};

/* A target of an upstream (Kong's targets entity). */
struct gw_target {
    char *name;              /* "host:port" as configured */
    char *host;
    int port;
    int weight;              /* 0: disabled */
    int priority;            /* failover tier: lowest with a healthy target wins */
    int srv;                 /* given without a port: SRV lookup first */
    struct gw_dns_entry *dns;
    struct gw_health *health; /* shared by all workers */
    double ewma_ms;          /* latency (this worker), for the latency algorithm */
    int cw;                  /* smooth weighted round-robin: current weight */
};

enum gw_algo { GW_ALGO_RR, GW_ALGO_LEAST_CONN, GW_ALGO_HASH, GW_ALGO_LATENCY };
enum gw_hash_on {
    GW_HASH_NONE, GW_HASH_CONSUMER, GW_HASH_IP, GW_HASH_HEADER, GW_HASH_COOKIE,
    GW_HASH_PATH, GW_HASH_QUERY_ARG, GW_HASH_URI_CAPTURE,
};

/* Passive health-check thresholds (0 disables a counter) and statuses. */
struct gw_passive {
    int http_failures, tcp_failures, timeouts; /* to eject */
    int successes;                             /* healthy statuses that readmit */
    uint8_t unhealthy_status[1000 / 8];        /* bitmap of statuses */
    uint8_t healthy_status[1000 / 8];
    double backoff_s, max_backoff_s;           /* self-readmission */
};

/* An upstream (Kong's upstreams entity), the balancer of its targets. */
struct gw_balancer {
    char *name;
    int algo;                /* enum gw_algo */
    int slots;               /* consistent hashing: ring density (points = weight * slots / 6250) */
    char *host_header;       /* Host sent to its targets instead of its name; NULL: none */
    int hash_on, hash_fallback;            /* enum gw_hash_on */
    char *hash_on_name, *hash_fallback_name; /* header, cookie, query arg or capture name */
    struct gw_target *targets;
    int ntargets;
    uint32_t *ring;          /* consistent hashing: sorted points */
    uint16_t *ring_target;   /* target of each point */
    int nring;
    int max_ejection_percent;
    int active_checks;       /* active probes configured (Lua runs them) */
    uint64_t health_seen;    /* gw_health_version when healthy_mask was computed */
    uint32_t healthy_mask;   /* targets with weight when none is unhealthy, else 0 */
    int health_cached;
    uint32_t first_ok;       /* targets with weight in the best tier: a first try when all are healthy */
    uint16_t *sched;         /* round-robin: smooth WRR order over first_ok, precomputed */
    int nsched;              /* 0: none (too long a cycle), pick by the scan */
    int sched_pos;
    struct gw_passive passive;
};

struct gw_service {
    char *name;              /* may be NULL */
    char *host;              /* hostname or IP literal */
    int port;
    int https;               /* protocol https or grpcs: tls is set */
    int grpc;                /* protocol grpc or grpcs: HTTP/2 to the upstream (h2_up.c) */
    char *path;              /* NULL when the service has no path */
    size_t path_len;
    char *host_header;       /* "host" or "host:port" when the port is not the default */
    size_t host_header_len;
    int connect_timeout;     /* ms */
    int write_timeout;       /* ms */
    int read_timeout;        /* ms */
    int retries;
    struct gw_dns_entry *dns; /* per-worker resolver cache entry */
    int balancer;            /* index into config balancers when host names an upstream, -1 */
    struct gw_tls_client *tls; /* https: the client context (held reference), else NULL */
};

struct gw_route {
    char *name;    /* may be NULL */
    char *id;
    int service;   /* index into services, -1 when none */
    int strip_path;
    int preserve_host;
    int path_v1;   /* path_handling v1 */
    int https_only;     /* protocols has https and not http: http gets redirected */
    int https_redirect; /* https_redirect_status_code (426 by default) */
    uint32_t phases; /* enum gw_phase mask */
    struct gw_mslot *mslot[6]; /* metrics: series of the last status seen per class */
    int mslot_code[6];
    struct gw_guard *guard[2]; /* phase guards (gw/guard.h), the worker's own; NULL: none */
};

struct gw_config {
    int refs;
    uint64_t generation;
    struct gw_router *router;
    struct gw_service *services;
    int nservices;
    struct gw_route *routes;
    int nroutes;
    struct gw_balancer *balancers;
    int nbalancers;
    char hash[65];
    int lua_ref;  /* the normalized Lua config table, kept for plugins */
    uint32_t global_phases; /* phases of global plugins (rewrite, and requests no route took) */
    struct gw_tls_certs *tls; /* certificates by SNI (tls.c) */
    struct gw_memo_table *memo; /* answer memos (memo.c), made on first use */
};

#endif
