#include <arpa/inet.h>
#include <stdlib.h>
#include <string.h>

#include "gw/balancer.h"
#include "gw/conn-t.h"
#include "gw/ffi.h"
#include "gw/health.h"
#include "gw/http.h"
#include "gw/log.h"
#include "gw/worker-t.h"


int gw_target_parse(struct gw_target *t)
{
    const char *n = t->name;
    const char *colon;
    if (n[0] == '[') {
        const char *rb = strchr(n, ']');
        if (rb == NULL)
            return -1;
        t->host = strndup(n + 1, (size_t)(rb - n - 1));
        colon = rb[1] == ':' ? rb + 1 : NULL;
    } else {
        colon = strrchr(n, ':');
        t->host = colon ? strndup(n, (size_t)(colon - n)) : strdup(n);
    }
    t->port = colon ? atoi(colon + 1) : 8000;
    return t->host ? 0 : -1;
}

static uint32_t fnv1a(const void *p, size_t n, uint32_t h)
{
    const unsigned char *s = p;
    for (size_t i = 0; i < n; i++)
        h = (h ^ s[i]) * 16777619u;
    /* final avalanche (murmur3 fmix) so close keys spread over the ring */
    h ^= h >> 16;
    h *= 0x85ebca6bu;
    h ^= h >> 13;
    h *= 0xc2b2ae35u;
    h ^= h >> 16;
    return h;
}

struct point {
    uint32_t hash;
    uint16_t target;
};

static int point_cmp(const void *a, const void *b)
{
    const struct point *x = a, *y = b;
    return x->hash < y->hash ? -1 : x->hash > y->hash;
}

static int gcd(int a, int b)
{
    while (b) {
        int t = a % b;
        a = b;
        b = t;
    }
    return a;
}

/* The first try when every target is healthy (the common case) needs no
 * scan: the candidates (first_ok) are known at config load and, for
 * round-robin, so is the smooth weighted order over them (one cycle of at
 * most 4,096 picks; longer cycles keep the scan). */
static int build_first(struct gw_balancer *b)
{
    int nt = b->ntargets > GW_MAX_TRIES ? GW_MAX_TRIES : b->ntargets;
    int tier = 1 << 30, g = 0, len = 0;
    for (int i = 0; i < nt; i++)
        if (b->targets[i].weight > 0 && b->targets[i].priority < tier)
            tier = b->targets[i].priority;
    b->first_ok = 0;
    for (int i = 0; i < nt; i++)
        if (b->targets[i].weight > 0 && b->targets[i].priority == tier) {
            b->first_ok |= 1u << i;
            g = gcd(g, b->targets[i].weight);
        }
    if (b->algo != GW_ALGO_RR || b->first_ok == 0)
        return 0;
    for (int i = 0; i < nt; i++)
        if (b->first_ok & (1u << i))
            len += b->targets[i].weight / g;
    if (len > 4096)
        return 0;
    b->sched = malloc((size_t)len * sizeof(*b->sched));
    if (b->sched == NULL)
        return -1;
    int cw[GW_MAX_TRIES] = {0};
    for (int k = 0; k < len; k++) {
        int pick = -1;
        for (int i = 0; i < nt; i++) {
            if (!(b->first_ok & (1u << i)))
                continue;
            cw[i] += b->targets[i].weight / g;
            if (pick < 0 || cw[i] > cw[pick])
                pick = i;
        }
        cw[pick] -= len;
        b->sched[k] = (uint16_t)pick;
    }
    b->nsched = len;
    return 0;
}

/* Also, for consistent hashing, points per target in proportion to its
 * weight and to the upstream's slots (slots / 62.5 per weight 100: 160 with
 * Kong's default 10000); each point's hash depends only on the target's name
 * and its number, and a target's count only on its own weight, so adding or
 * removing a target leaves every other point where it was. */
static int ring_points(const struct gw_balancer *b, int weight)
{
    if (weight <= 0)
        return 0;
    long long slots = b->slots > 0 ? b->slots : 10000;
    long long n = ((long long)weight * slots * 16 + 99999) / 100000;
    return n < 1 ? 1 : (int)n;
}

int gw_balancer_build(struct gw_balancer *b)
{
    if (build_first(b) != 0)
        return -1;
    if (b->algo != GW_ALGO_HASH)
        return 0;
    int total = 0;
    for (int i = 0; i < b->ntargets; i++)
        total += ring_points(b, b->targets[i].weight);
    if (total == 0)
        return 0;
    struct point *pts = malloc((size_t)total * sizeof(*pts));
    if (pts == NULL)
        return -1;
    int k = 0;
    for (int i = 0; i < b->ntargets; i++) {
        struct gw_target *t = &b->targets[i];
        int np = ring_points(b, t->weight);
        for (int j = 0; j < np; j++) {
            uint32_t h = fnv1a(t->name, strlen(t->name), 2166136261u);
            pts[k].hash = fnv1a(&j, sizeof(j), h);
            pts[k++].target = (uint16_t)i;
        }
    }
    qsort(pts, (size_t)k, sizeof(*pts), point_cmp);
    b->ring = malloc((size_t)k * sizeof(uint32_t));
    b->ring_target = malloc((size_t)k * sizeof(uint16_t));
    if (b->ring == NULL || b->ring_target == NULL) {
        free(pts);
        return -1;
    }
    for (int i = 0; i < k; i++) {
        b->ring[i] = pts[i].hash;
        b->ring_target[i] = pts[i].target;
    }
    b->nring = k;
    free(pts);
    return 0;
}

void gw_balancer_free(struct gw_balancer *b)
{
    for (int i = 0; i < b->ntargets; i++) {
        free(b->targets[i].name);
        free(b->targets[i].host);
    }
    free(b->targets);
    free(b->ring);
    free(b->ring_target);
    free(b->sched);
    free(b->name);
    free(b->hash_on_name);
    free(b->hash_fallback_name);
    free(b->host_header);
}

/* Whether target i can take the request now. An ejected target whose
 * back-off is over takes exactly one request (the readmission probe): the
 * first worker to flip `probing` gets it. */
static int available(struct gw_balancer *b, int i, int64_t now, int *probe)
{
    struct gw_target *t = &b->targets[i];
    if (t->weight <= 0)
        return 0;
    struct gw_health *h = t->health;
    if (h == NULL || !__atomic_load_n(&h->unhealthy, __ATOMIC_ACQUIRE))
        return 1;
    if (h->by_active || now < __atomic_load_n(&h->readmit_at_ms, __ATOMIC_RELAXED))
        return 0;
    int expected = 0;
    if (__atomic_compare_exchange_n(&h->probing, &expected, 1, 0, __ATOMIC_ACQ_REL,
                                    __ATOMIC_ACQUIRE)) {
        *probe = 1;
        return 1;
    }
    return 0;
}

/* The hash key of the request for hash_on, into buf; its length or -1. */
static long hash_key(struct gw_balancer *b, int on, const char *name, struct gw_conn *c,
                     const char **key)
{
    struct gw_req *r = c->req;
    const char *p;
    size_t n;
    switch (on) {
    case GW_HASH_CONSUMER:
        if (r->consumer_id == NULL)
            return -1;
        *key = r->consumer_id;
        return (long)strlen(r->consumer_id);
    case GW_HASH_IP:
        *key = c->peer_ip;
        return (long)strlen(c->peer_ip);
    case GW_HASH_HEADER:
        if (name == NULL || gw_ffi_req_header(r, name, strlen(name), 0, &p, &n) != GW_OK)
            return -1;
        *key = p;
        return (long)n;
    case GW_HASH_COOKIE: {
        if (name == NULL || gw_ffi_req_header(r, "cookie", 6, 0, &p, &n) != GW_OK)
            return -1;
        size_t nl = strlen(name);
        for (size_t i = 0; i + nl < n; i++) {
            if ((i == 0 || p[i - 1] == ' ' || p[i - 1] == ';') &&
                strncmp(p + i, name, nl) == 0 && p[i + nl] == '=') {
                const char *v = p + i + nl + 1;
                const char *end = memchr(v, ';', n - (size_t)(v - p));
                *key = v;
                return end ? end - v : (long)(n - (size_t)(v - p));
            }
        }
        return -1;
    }
    case GW_HASH_PATH:
        *key = r->npath;
        return (long)r->npath_len;
    case GW_HASH_QUERY_ARG: {
        if (name == NULL || gw_ffi_req_query(r, &p, &n) != GW_OK)
            return -1;
        size_t nl = strlen(name);
        for (size_t i = 0; i + nl < n; i++) {
            if ((i == 0 || p[i - 1] == '&') && strncmp(p + i, name, nl) == 0 &&
                p[i + nl] == '=') {
                const char *v = p + i + nl + 1;
                const char *end = memchr(v, '&', n - (size_t)(v - p));
                *key = v;
                return end ? end - v : (long)(n - (size_t)(v - p));
            }
        }
        return -1;
    }
    case GW_HASH_URI_CAPTURE:
        for (int i = 0; name && i < r->match.ncap; i++) {
            const char *cn = r->match.cap_names ? r->match.cap_names[i] : NULL;
            if (cn && strcmp(cn, name) == 0 && r->match.cap[2 * i] != SIZE_MAX) {
                *key = r->npath + r->match.cap[2 * i];
                return (long)(r->match.cap[2 * i + 1] - r->match.cap[2 * i]);
            }
        }
        return -1;
    default:
        return -1;
    }
}

/* When no target of b is unhealthy (the common case), which targets can take
 * a request depends only on their weights: computed once per health change
 * (gw_health_version), not per request. Returns the mask, or 0 when some
 * target is unhealthy and the full scan must run. */
static uint32_t all_healthy_mask(struct gw_balancer *b, int nt)
{
    uint64_t v = gw_health_version();
    if (v != b->health_seen || !b->health_cached) {
        uint32_t mask = 0;
        int healthy = 1;
        for (int i = 0; i < nt; i++) {
            struct gw_health *h = b->targets[i].health;
            if (h && __atomic_load_n(&h->unhealthy, __ATOMIC_ACQUIRE))
                healthy = 0;
            if (b->targets[i].weight > 0)
                mask |= 1u << i;
        }
        b->healthy_mask = healthy ? mask : 0;
        b->health_seen = v;
        b->health_cached = 1;
    }
    return b->healthy_mask;
}

int gw_balancer_pick(struct gw_balancer *b, struct gw_conn *c, uint32_t tried, int *probe)
{
    uint32_t ok = 0; /* bit i: target i can take the request */
    int tier = 1 << 30;
    int nt = b->ntargets > GW_MAX_TRIES ? GW_MAX_TRIES : b->ntargets;
    int probe_of = -1;
    *probe = 0;
    uint32_t fast = all_healthy_mask(b, nt);
    if (fast && tried == 0) { /* a first try, every target healthy */
        if (b->nsched) {
            int k = b->sched_pos;
            b->sched_pos = k + 1 == b->nsched ? 0 : k + 1;
            return b->sched[k];
        }
        ok = b->first_ok;
        goto pick;
    }
    if (fast) {
        ok = fast & ~tried;
        if (ok == 0)
            return -1;
        for (int i = 0; i < nt; i++)
            if ((ok & (1u << i)) && b->targets[i].priority < tier)
                tier = b->targets[i].priority;
        goto tiers;
    }
    int64_t now = gw_health_now_ms();
    for (int i = 0; i < nt; i++) {
        if (tried & (1u << i))
            continue;
        int pr = 0;
        if (!available(b, i, now, &pr))
            continue;
        if (pr) {
            if (probe_of >= 0) { /* one probe per pick is enough */
                __atomic_store_n(&b->targets[i].health->probing, 0, __ATOMIC_RELEASE);
                continue;
            }
            probe_of = i;
        }
        ok |= 1u << i;
        if (b->targets[i].priority < tier)
            tier = b->targets[i].priority;
    }
    if (ok == 0)
        return -1;
tiers:
    /* failover: the best tier with a target that can take it */
    for (int i = 0; i < nt; i++)
        if ((ok & (1u << i)) && b->targets[i].priority != tier)
            ok &= ~(1u << i);
    if (probe_of >= 0 && (ok & (1u << probe_of))) {
        *probe = 1;
        return probe_of;
    }
    if (probe_of >= 0) /* the probe's tier lost: give the probe back */
        __atomic_store_n(&b->targets[probe_of].health->probing, 0, __ATOMIC_RELEASE);

pick:;
    int pick = -1;
    switch (b->algo) {
    case GW_ALGO_HASH: {
        const char *key = NULL;
        long klen = hash_key(b, b->hash_on, b->hash_on_name, c, &key);
        if (klen < 0)
            klen = hash_key(b, b->hash_fallback, b->hash_fallback_name, c, &key);
        if (klen >= 0 && b->nring > 0) {
            uint32_t h = fnv1a(key, (size_t)klen, 2166136261u);
            int lo = 0, hi = b->nring;
            while (lo < hi) {
                int mid = (lo + hi) / 2;
                if (b->ring[mid] < h)
                    lo = mid + 1;
                else
                    hi = mid;
            }
            for (int k = 0; k < b->nring; k++) {
                int t = b->ring_target[(lo + k) % b->nring];
                if (ok & (1u << t)) {
                    pick = t;
                    break;
                }
            }
            if (pick >= 0)
                break;
        }
    }
        /* no key: round-robin */
        /* fall through */
    case GW_ALGO_RR: {
        int total = 0;
        for (int i = 0; i < nt; i++) {
            if (!(ok & (1u << i)))
                continue;
            struct gw_target *t = &b->targets[i];
            t->cw += t->weight;
            total += t->weight;
            if (pick < 0 || t->cw > b->targets[pick].cw)
                pick = i;
        }
        b->targets[pick].cw -= total;
        break;
    }
    case GW_ALGO_LEAST_CONN: {
        double best = 0;
        for (int i = 0; i < nt; i++) {
            if (!(ok & (1u << i)))
                continue;
            struct gw_target *t = &b->targets[i];
            int active = t->health ? __atomic_load_n(&t->health->active, __ATOMIC_RELAXED) : 0;
            double score = (active + 1.0) / t->weight;
            if (pick < 0 || score < best) {
                best = score;
                pick = i;
            }
        }
        break;
    }
    case GW_ALGO_LATENCY: {
        /* power of two choices over EWMA latency x (connections + 1) */
        int cand[GW_MAX_TRIES], n = 0;
        for (int i = 0; i < nt; i++)
            if (ok & (1u << i))
                cand[n++] = i;
        uint64_t *rng = gw_worker->rng;
        uint64_t x = rng[0] ^ (rng[1] << 7);
        rng[0] = rng[1];
        rng[1] = x ^ (x >> 11);
        int a = cand[x % (uint64_t)n], bb = cand[(x >> 32) % (uint64_t)n];
        struct gw_target *ta = &b->targets[a], *tb = &b->targets[bb];
        int aa = ta->health ? ta->health->active : 0, ab = tb->health ? tb->health->active : 0;
        double sa = (ta->ewma_ms + 1) * (aa + 1), sb = (tb->ewma_ms + 1) * (ab + 1);
        pick = sa <= sb ? a : bb;
        break;
    }
    }
    return pick;
}

void gw_balancer_conn(struct gw_balancer *b, int target, int delta)
{
    struct gw_health *h = b->targets[target].health;
    if (h)
        __atomic_add_fetch(&h->active, delta, __ATOMIC_RELAXED);
}

static int bit(const uint8_t *bits, int status)
{
    return status >= 100 && status < 1000 && (bits[status / 8] & (1u << (status % 8)));
}

/* Ejects t unless that would eject more than max_ejection_percent. */
static void eject(struct gw_balancer *b, struct gw_target *t, const char *why)
{
    struct gw_health *h = t->health;
    int ejected = 0;
    for (int i = 0; i < b->ntargets; i++)
        if (b->targets[i].health && b->targets[i].health->unhealthy)
            ejected++;
    if ((ejected + 1) * 100 > b->max_ejection_percent * b->ntargets) {
        GW_LOG(GW_LOG_WARN, "upstream %s: not ejecting %s (%s): max_ejection_percent %d reached",
               b->name, t->name, why, b->max_ejection_percent);
        return;
    }
    int backoff = h->backoff_ms ? h->backoff_ms : (int)(b->passive.backoff_s * 1000);
    __atomic_store_n(&h->readmit_at_ms, gw_health_now_ms() + backoff, __ATOMIC_RELAXED);
    int next = backoff * 2;
    if (next > (int)(b->passive.max_backoff_s * 1000))
        next = (int)(b->passive.max_backoff_s * 1000);
    h->backoff_ms = next;
    h->by_active = 0;
    gw_health_changed(h, 1);
    gw_log(GW_LOG_WARN, "upstream %s: target %s is unhealthy (%s); a request will test it "
                        "again in %d ms", b->name, t->name, why, backoff);
}

void gw_balancer_report(struct gw_balancer *b, int target, int outcome, int status,
                        double latency_ms)
{
    struct gw_target *t = &b->targets[target];
    struct gw_health *h = t->health;
    if (latency_ms >= 0)
        t->ewma_ms = t->ewma_ms == 0 ? latency_ms : 0.8 * t->ewma_ms + 0.2 * latency_ms;
    if (h == NULL)
        return;
    const struct gw_passive *pv = &b->passive;
    int probing = __atomic_load_n(&h->probing, __ATOMIC_ACQUIRE);
    int failure = outcome != GW_OUT_OK || bit(pv->unhealthy_status, status);
    if (!failure) {
        __atomic_store_n(&h->http_failures, 0, __ATOMIC_RELAXED);
        __atomic_store_n(&h->tcp_failures, 0, __ATOMIC_RELAXED);
        __atomic_store_n(&h->timeouts, 0, __ATOMIC_RELAXED);
        int ok = __atomic_add_fetch(&h->successes, 1, __ATOMIC_RELAXED);
        if (h->unhealthy && !h->by_active &&
            (probing || (pv->successes && ok >= pv->successes))) {
            h->backoff_ms = 0;
            __atomic_store_n(&h->probing, 0, __ATOMIC_RELEASE);
            gw_health_changed(h, 0);
            gw_log(GW_LOG_NOTICE, "upstream %s: target %s is healthy again", b->name, t->name);
        }
        return;
    }
    __atomic_store_n(&h->successes, 0, __ATOMIC_RELAXED);
    if (probing) { /* the probe failed: back off longer */
        __atomic_store_n(&h->probing, 0, __ATOMIC_RELEASE);
        eject(b, t, "readmission probe failed");
        return;
    }
    if (h->unhealthy)
        return;
    int n;
    switch (outcome) {
    case GW_OUT_TCP:
        n = __atomic_add_fetch(&h->tcp_failures, 1, __ATOMIC_RELAXED);
        if (pv->tcp_failures && n >= pv->tcp_failures)
            eject(b, t, "TCP failures");
        break;
    case GW_OUT_TIMEOUT:
        n = __atomic_add_fetch(&h->timeouts, 1, __ATOMIC_RELAXED);
        if (pv->timeouts && n >= pv->timeouts)
            eject(b, t, "timeouts");
        break;
    default:
        n = __atomic_add_fetch(&h->http_failures, 1, __ATOMIC_RELAXED);
        if (pv->http_failures && n >= pv->http_failures)
            eject(b, t, "HTTP failures");
        break;
    }
}

const char *gw_balancer_health(struct gw_balancer *b, int i)
{
    struct gw_target *t = &b->targets[i];
    if (t->weight <= 0)
        return "DISABLED";
    if (t->health == NULL || !t->health->unhealthy)
        return "HEALTHY";
    return "UNHEALTHY";
}
