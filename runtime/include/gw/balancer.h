/* Load balancing over an upstream's targets, in C on the request path:
 * smooth weighted round-robin, least connections (counts shared by the
 * workers), consistent hashing (a ring: removing a target moves only its own
 * keys) and latency-aware power-of-two choices over an EWMA. Health comes
 * from the shared table (gw/health.h): passive checks here, active probes
 * from lua/luagate/healthcheck.lua. Failover: only the lowest priority tier
 * that has a healthy target gets traffic. */
#ifndef GW_BALANCER_H
#define GW_BALANCER_H

#include <stdint.h>

#include "gw/config-t.h"

struct gw_req;
struct gw_conn;

#define GW_MAX_TRIES 32

/* Splits target->name ("host:port", "[v6]:port") into host and port. */
int gw_target_parse(struct gw_target *t);

/* Builds what the algorithm needs (the hash ring). 0 or -1. */
int gw_balancer_build(struct gw_balancer *b);
void gw_balancer_free(struct gw_balancer *b);

/* Picks a target for the request, skipping those in tried (bit i: target
 * i). Returns its index, or -1 when no target is healthy. *probe is set when
 * the target is an ejected one let through to test it. */
int gw_balancer_pick(struct gw_balancer *b, struct gw_conn *c, uint32_t tried, int *probe);

/* Outcomes for passive health checks and the balancer's counters. */
enum gw_outcome { GW_OUT_OK, GW_OUT_HTTP, GW_OUT_TCP, GW_OUT_TIMEOUT };
void gw_balancer_report(struct gw_balancer *b, int target, int outcome, int status,
                        double latency_ms);

/* Connection counts for least-connections (shared by the workers). */
void gw_balancer_conn(struct gw_balancer *b, int target, int delta);

/* Health of target i as "healthy", "unhealthy" (with why) for the admin API. */
const char *gw_balancer_health(struct gw_balancer *b, int i);

#endif
