/* Upstream target health and connection counts, shared by all workers
 * through a table in shared memory that the master maps before fork. Slots
 * are found by "upstream/target" key; fields are updated with atomics, so
 * the request path takes no lock. */
#ifndef GW_HEALTH_H
#define GW_HEALTH_H

#include <stdint.h>

#define GW_HEALTH_KEY 128

struct gw_health {
    char key[GW_HEALTH_KEY];  /* "upstream/target"; "" = free */
    int32_t unhealthy;        /* 1: ejected (passive) or failed probes (active) */
    int32_t active;           /* connections in flight to it, all workers */
    int32_t http_failures;    /* consecutive, since the last success */
    int32_t tcp_failures;
    int32_t timeouts;
    int32_t successes;        /* consecutive, since the last failure */
    int64_t readmit_at_ms;    /* passive ejection: when a probe request may go */
    int32_t backoff_ms;       /* the next ejection's back-off */
    int32_t probing;          /* a readmission probe is in flight */
    int64_t changed_ms;       /* last state change (CLOCK_REALTIME ms) */
    int32_t by_active;        /* the state was set by active checks */
};

/* Maps the table (master, before fork). Returns 0 or -1. */
int gw_health_init(int slots);

/* The slot of key, created when absent; NULL when the table is full. */
struct gw_health *gw_health_slot(const char *key);

/* Bumped whenever a target's health changes. */
uint64_t gw_health_version(void);
void gw_health_changed(struct gw_health *h, int unhealthy);

int64_t gw_health_now_ms(void);

#endif
