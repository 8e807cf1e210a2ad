/* Phase guards (gw/guard.h). A guard holds the keys a handler's "nothing to
 * do" was decided from, with their stamps, and the dictionary's change
 * count when they were last seen so: while the count has not moved (one
 * load, no lock) and no key has reached its expiry time, the phase is left
 * out. When the count moved (some key of the dictionary changed), the keys
 * are looked up under the lock: all the same, and the guard holds on at
 * the new count; one moved, and the guard is dropped until the handler
 * sets it again. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "gw/config-t.h"
#include "gw/conn.h"
#include "gw/core-t.h"
#include "gw/guard.h"
#include "gw/shdict.h"
#include "gw/stats.h"
#include "gw/worker-t.h"

struct gw_guard {
    int armed;
    struct gw_shdict *dict;
    uint64_t seq;  /* the dictionary's change count when the keys were last as recorded */
    int64_t until; /* the first expiry time among the present keys (gw_shdict_now); INT64_MAX: none */
    int nkeys;
    int has_statuses;
    struct gw_shdict_stamp keys[GW_GUARD_MAX_KEYS]; /* key bytes in keybuf */
    uint8_t statuses[GW_GUARD_NSTATUS / 8];
    char *keybuf;
    size_t keybuf_cap;
};

static int64_t first_expiry(const struct gw_shdict_stamp *q, int n)
{
    int64_t until = INT64_MAX;
    for (int i = 0; i < n; i++)
        if (q[i].present && q[i].expires != 0 && q[i].expires < until)
            until = q[i].expires;
    return until;
}

int gw_ffi_guard_set(struct gw_req *r, const struct gw_guard_args *a, const char **err)
{
    if (a->dict == NULL || a->nkeys < 1 || a->nkeys > GW_GUARD_MAX_KEYS) {
        *err = "a guard watches 1 to 4 keys of one shared dictionary";
        return GW_ERROR;
    }
    size_t total = 0;
    for (int i = 0; i < a->nkeys; i++) {
        if (a->keys[i].key == NULL || a->keys[i].klen == 0 ||
            a->keys[i].klen > GW_SHDICT_KEY_MAX) {
            *err = "bad key";
            return GW_ERROR;
        }
        total += a->keys[i].klen;
    }
    int phase;
    if (r->phase == GW_PHASE_ACCESS) {
        phase = GW_GUARD_ACCESS;
        if (a->statuses != NULL) {
            *err = "statuses are for the log phase";
            return GW_ERROR;
        }
    } else if (r->phase == GW_PHASE_LOG) {
        phase = GW_GUARD_LOG;
    } else {
        *err = "a guard is set in the access or log phase";
        return GW_ERROR;
    }
    if (r->route == NULL || r->config == NULL)
        return GW_DECLINED;

    /* the route, writable through its configuration (guards are the
     * worker's own state, like the balancers') */
    struct gw_route *route = &r->config->routes[r->route - r->config->routes];
    struct gw_guard *g = route->guard[phase];
    if (g == NULL) {
        g = calloc(1, sizeof(*g));
        if (g == NULL)
            return GW_DECLINED;
        route->guard[phase] = g;
    }
    g->armed = 0;
    if (total > g->keybuf_cap) {
        char *p = realloc(g->keybuf, total);
        if (p == NULL)
            return GW_DECLINED;
        g->keybuf = p;
        g->keybuf_cap = total;
    }
    size_t off = 0;
    for (int i = 0; i < a->nkeys; i++) {
        memcpy(g->keybuf + off, a->keys[i].key, a->keys[i].klen);
        g->keys[i].key = g->keybuf + off;
        g->keys[i].klen = a->keys[i].klen;
        off += a->keys[i].klen;
    }
    g->nkeys = a->nkeys;
    uint64_t seq;
    if (gw_shdict_stamps(a->dict, g->keys, g->nkeys, &seq) != GW_OK)
        return GW_DECLINED;
    for (int i = 0; i < a->nkeys; i++)
        if (g->keys[i].present != (a->keys[i].present != 0) ||
            (g->keys[i].present && g->keys[i].ver != a->keys[i].ver))
            return GW_DECLINED; /* it moved since the handler read it */
    g->dict = a->dict;
    g->seq = seq;
    g->until = first_expiry(g->keys, g->nkeys);
    g->has_statuses = a->statuses != NULL;
    if (a->statuses != NULL)
        memcpy(g->statuses, a->statuses, sizeof(g->statuses));
    g->armed = 1;
    return GW_OK;
}

/* The keys as they are now, compared with the recorded stamps. */
static int guard_still(struct gw_guard *g)
{
    struct gw_shdict_stamp now[GW_GUARD_MAX_KEYS];
    uint64_t seq;

    memcpy(now, g->keys, sizeof(now[0]) * (size_t)g->nkeys);
    if (gw_shdict_stamps(g->dict, now, g->nkeys, &seq) != GW_OK)
        return 0;
    for (int i = 0; i < g->nkeys; i++)
        if (now[i].present != g->keys[i].present ||
            (now[i].present && now[i].ver != g->keys[i].ver))
            return 0;
    g->seq = seq;
    g->until = first_expiry(now, g->nkeys); /* expire() may have moved them */
    return 1;
}

static int guard_check(struct gw_guard *g, int status)
{
    if (g == NULL || !g->armed)
        return 0;
    if (g->has_statuses && status >= 0 && status < GW_GUARD_NSTATUS &&
        (g->statuses[status >> 3] & (1u << (status & 7))))
        return 0; /* this status needs the handler; the guard stays */
    if (g->until != INT64_MAX && gw_shdict_now() >= g->until) {
        g->armed = 0;
        return 0;
    }
    if (gw_shdict_seq(g->dict) == g->seq)
        return 1;
    if (guard_still(g))
        return 1;
    g->armed = 0;
    return 0;
}

int gw_guard_idle(const struct gw_route *route, int phase, int status)
{
    if (!guard_check(route->guard[phase], status))
        return 0;
    gw_worker->stats->guard_skips[phase]++;
    return 1;
}

void gw_guard_free(struct gw_route *route)
{
    for (int i = 0; i < GW_GUARD_NPHASES; i++) {
        struct gw_guard *g = route->guard[i];
        if (g != NULL) {
            free(g->keybuf);
            free(g);
            route->guard[i] = NULL;
        }
    }
}
