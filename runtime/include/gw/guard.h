/* Phase guards (docs/pdk.md, kong.plugin.idle; docs/architecture.md,
 * "Phase guards"): a plugin whose access or log handler found nothing to do
 * for a request, and would find nothing to do for the next ones while some
 * shared-dictionary keys keep their values, says so; the runtime then leaves
 * that phase out of the route's requests, in C and without entering Lua,
 * until one of those keys changes (a store, delete, eviction, flush or
 * expiry of any of them). A log guard also names the upstream statuses
 * that still need the handler. The circuit breaker's closed state is the
 * case it is made for: its access handler reads the state, its log handler
 * counts failures, and while the upstream answers well neither has
 * anything to do.
 *
 * Guards are a worker's own, one per route and phase of a configuration,
 * dropped with the configuration. The runloop sets one only for the plugin
 * that is the route's only handler of that phase. */
#ifndef GW_GUARD_H
#define GW_GUARD_H

#include <stddef.h>
#include <stdint.h>

struct gw_req;
struct gw_route;
struct gw_shdict;

#define GW_GUARD_MAX_KEYS 4
#define GW_GUARD_NSTATUS 1000 /* statuses 0..999 */

enum { GW_GUARD_ACCESS, GW_GUARD_LOG, GW_GUARD_NPHASES };

/* One key the handler's decision was made from, as the handler saw it. */
struct gw_guard_key {
    const char *key;
    size_t klen;
    int present; /* 0: the key was missing */
    uint32_t ver; /* its stamp (dict:get_stamp) when present */
};

/* What kong.plugin.idle passes (pdk/plugin.lua). */
struct gw_guard_args {
    struct gw_shdict *dict; /* every key is in this dictionary */
    const struct gw_guard_key *keys;
    int nkeys;               /* 1..GW_GUARD_MAX_KEYS */
    const uint8_t *statuses; /* log: bitmap of GW_GUARD_NSTATUS statuses that need the
                              * handler, or NULL (none does); access: NULL */
};

/* Sets the guard of the current phase (access or log) of request r's route:
 * that phase is left out of the route's next requests while every key of
 * a still has the stamp given (checked now, under the dictionary's lock:
 * GW_DECLINED, nothing set, when one moved since the handler read it).
 * GW_ERROR with *err: bad arguments or phase. */
int gw_ffi_guard_set(struct gw_req *r, const struct gw_guard_args *a, const char **err);

/* Whether route's guard of phase (GW_GUARD_*) lets its handler be left out
 * for a request; status: the upstream's status (log), else 0. A guard whose
 * keys moved is dropped. */
int gw_guard_idle(const struct gw_route *route, int phase, int status);

/* Frees a route's guards. */
void gw_guard_free(struct gw_route *route);

#endif
