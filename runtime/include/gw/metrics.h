/* Prometheus metrics counted in C: each worker counts into its own region of
 * a shared-memory table (no locks, no atomics on the request path); the
 * admin API's GET /metrics merges the workers' regions at scrape time.
 * Series are keyed by service, route and status code; a route remembers
 * its slot per status class, so a request costs a few increments. */
#ifndef GW_METRICS_H
#define GW_METRICS_H

#include <stdint.h>

#include "gw/buf-t.h"

#define GW_METRIC_BUCKETS 16 /* latency histogram buckets, in ms, +Inf last */
#define GW_METRIC_KEY 160

struct gw_req;
struct gw_conn;

struct gw_mslot {
    char key[GW_METRIC_KEY];    /* "service\x1froute\x1fcode"; "" = free */
    uint64_t requests;
    uint64_t bytes_in, bytes_out;
    uint64_t lat[3][GW_METRIC_BUCKETS]; /* request, upstream, kong (gateway) */
    double lat_sum[3];                  /* ms */
};

/* Maps the table: slots per worker (master, before fork). 0 or -1. */
int gw_metrics_init(int workers, int slots);

/* Counts a finished request (the worker's own region). */
void gw_metrics_request(struct gw_conn *c, struct gw_req *r);

/* Appends the whole exposition (Prometheus text format 0.0.4). */
void gw_metrics_render(struct gw_buf *out);

#endif
