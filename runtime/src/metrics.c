#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/time.h>

#include "gw/balancer.h"
#include "gw/buf.h"
#include "gw/config-t.h"
#include "gw/conn-t.h"
#include "gw/health.h"
#include "gw/http.h"
#include "gw/log.h"
#include "gw/metrics.h"
#include "gw/settings-t.h"
#include "gw/shdict.h"
#include "gw/stats.h"
#include "gw/worker-t.h"

static const double bucket_ms[GW_METRIC_BUCKETS - 1] = {1,   2,    5,    10,   25,   50,   100, 250,
                                                        500, 1000, 2500, 5000, 10000, 30000, 60000};

/* Series keys that count gRPC statuses start with this (their only
 * counter is requests). */
#define GRPC_KEY "\x01"

struct region {
    int nslots;
    int used;      /* slots taken (for the scrape's loop bound) */
    uint64_t dropped; /* series that found no free slot */
    struct gw_mslot slot[];
};

static char *base;
static size_t region_size;
static int nregions, slots_per;

int gw_metrics_init(int workers, int slots)
{
    region_size = sizeof(struct region) + (size_t)slots * sizeof(struct gw_mslot);
    size_t size = region_size * (size_t)workers;
    void *p = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    if (p == MAP_FAILED) {
        gw_log(GW_LOG_EMERG, "mmap() failed for the metrics table");
        return -1;
    }
    base = p;
    nregions = workers;
    slots_per = slots;
    for (int i = 0; i < workers; i++)
        ((struct region *)(base + region_size * (size_t)i))->nslots = slots;
    return 0;
}

static struct region *region_of(int w)
{
    return (struct region *)(base + region_size * (size_t)w);
}

static uint32_t hash(const char *s)
{
    uint32_t h = 2166136261u;
    for (; *s; s++)
        h = (h ^ (unsigned char)*s) * 16777619u;
    return h;
}

/* The slot of key in this worker's region, created when absent. Only this
 * worker writes its region; the scrape reads it (a torn read of a counter
 * is one scrape slightly off, never a crash). */
static struct gw_mslot *slot_of(const char *key)
{
    struct region *rg = region_of(gw_worker->id);
    uint32_t h = hash(key);
    for (int i = 0; i < rg->nslots; i++) {
        struct gw_mslot *s = &rg->slot[(h + (uint32_t)i) % (uint32_t)rg->nslots];
        if (s->key[0] == '\0') {
            snprintf(s->key, sizeof(s->key), "%s", key);
            rg->used++;
            return s;
        }
        if (strcmp(s->key, key) == 0)
            return s;
    }
    rg->dropped++;
    return NULL;
}

static void observe(struct gw_mslot *s, int which, double ms)
{
    if (ms < 0)
        ms = 0;
    int b = 0;
    while (b < GW_METRIC_BUCKETS - 1 && ms > bucket_ms[b])
        b++;
    s->lat[which][b]++;
    s->lat_sum[which] += ms;
}

void gw_metrics_request(struct gw_conn *c, struct gw_req *r)
{
    if (base == NULL || gw_worker == NULL || c->listen->admin || gw_settings.metrics_off)
        return;
    int status = r->status;
    int cls = status >= 100 && status < 600 ? status / 100 : 0;
    struct gw_route *rt = (struct gw_route *)r->route;
    struct gw_mslot *s = NULL;
    if (gw_settings.metrics_consumers) {
        /* one series per consumer too: no per-route cache */
        char key[GW_METRIC_KEY];
        const char *svc = r->service && r->service->name ? r->service->name : "";
        const char *route = rt ? (rt->name ? rt->name : rt->id) : "";
        snprintf(key, sizeof(key), "%s\x1f%s\x1f%d\x1f%s", svc, route ? route : "", status,
                 r->consumer_name ? r->consumer_name : "");
        s = slot_of(key);
    } else if (rt && rt->mslot[cls] && rt->mslot_code[cls] == status) {
        s = rt->mslot[cls];
    } else {
        char key[GW_METRIC_KEY];
        const char *svc = r->service && r->service->name ? r->service->name : "";
        const char *route = rt ? (rt->name ? rt->name : rt->id) : "";
        snprintf(key, sizeof(key), "%s\x1f%s\x1f%d", svc, route ? route : "", status);
        s = slot_of(key);
        if (rt) {
            rt->mslot[cls] = s;
            rt->mslot_code[cls] = status;
        }
    }
    if (r->has_grpc_status) { /* gRPC: a count by gRPC status too */
        char key[GW_METRIC_KEY];
        const char *svc = r->service && r->service->name ? r->service->name : "";
        const char *route = rt ? (rt->name ? rt->name : rt->id) : "";
        snprintf(key, sizeof(key), GRPC_KEY "%s\x1f%s\x1f%d", svc, route ? route : "",
                 r->grpc_status);
        struct gw_mslot *g = slot_of(key);
        if (g)
            g->requests++;
    }
    if (s == NULL)
        return;
    s->requests++;
    s->bytes_in += (uint64_t)r->head_len + r->body_bytes;
    s->bytes_out += r->bytes_out;
    double end = r->t_end ? r->t_end : r->t_start;
    observe(s, 0, (end - r->t_start) * 1000);
    if (r->t_upstream_start && r->t_upstream_first)
        observe(s, 1, (r->t_upstream_first - r->t_upstream_start) * 1000);
    observe(s, 2, ((r->t_upstream_start ? r->t_upstream_start : end) - r->t_start) * 1000);
}

/* ---- the scrape ---- */

struct series {
    char key[GW_METRIC_KEY];
    struct gw_mslot sum;
};

static void label(struct gw_buf *b, const char *name, const char *v, size_t n, int comma)
{
    if (comma)
        gw_buf_append(b, ",", 1);
    gw_buf_appends(b, name);
    gw_buf_appends(b, "=\"");
    for (size_t i = 0; i < n; i++) {
        char ch = v[i];
        if (ch == '"' || ch == '\\')
            gw_buf_append(b, "\\", 1);
        if (ch == '\n') {
            gw_buf_appends(b, "\\n");
            continue;
        }
        gw_buf_append(b, &ch, 1);
    }
    gw_buf_append(b, "\"", 1);
}

/* "service\x1froute\x1fcode[\x1fconsumer]" as labels (the consumer with
 * --metrics-consumers on, on request counts only); code_label NULL: no
 * code label. */
static void key_labels(struct gw_buf *b, const char *key, const char *code_label)
{
    const char *s1 = strchr(key, '\x1f');
    const char *s2 = s1 ? strchr(s1 + 1, '\x1f') : NULL;
    if (s1 == NULL || s2 == NULL)
        return;
    label(b, "service", key, (size_t)(s1 - key), 0);
    label(b, "route", s1 + 1, (size_t)(s2 - s1 - 1), 1);
    if (code_label == NULL)
        return;
    const char *s3 = strchr(s2 + 1, '\x1f');
    label(b, code_label, s2 + 1, s3 ? (size_t)(s3 - s2 - 1) : strlen(s2 + 1), 1);
    if (s3)
        label(b, "consumer", s3 + 1, strlen(s3 + 1), 1);
}

/* Length of "service\x1froute" in a series key. */
static size_t route_prefix_len(const char *key)
{
    const char *s1 = strchr(key, '\x1f');
    const char *s2 = s1 ? strchr(s1 + 1, '\x1f') : NULL;
    return s2 ? (size_t)(s2 - key) : strlen(key);
}

static void printf_buf(struct gw_buf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void printf_buf(struct gw_buf *b, const char *fmt, ...)
{
    char tmp[2048];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(tmp, sizeof(tmp), fmt, ap);
    va_end(ap);
    if (n > 0)
        gw_buf_append(b, tmp, (size_t)(n < (int)sizeof(tmp) ? n : (int)sizeof(tmp) - 1));
}

static void histogram(struct gw_buf *b, const char *name, const char *help, struct series *all,
                      int n, int which)
{
    printf_buf(b, "# HELP %s %s\n# TYPE %s histogram\n", name, help, name);
    /* per service: merge the routes and codes of each service */
    for (int i = 0; i < n; i++) {
        const char *k = all[i].key;
        const char *s1 = strchr(k, '\x1f');
        if (s1 == NULL)
            continue;
        size_t sl = (size_t)(s1 - k);
        int first = 1;
        for (int j = 0; j < i; j++)
            if (strncmp(all[j].key, k, sl) == 0 && all[j].key[sl] == '\x1f')
                first = 0;
        if (!first)
            continue;
        uint64_t buckets[GW_METRIC_BUCKETS] = {0};
        double sum = 0;
        for (int j = i; j < n; j++) {
            if (strncmp(all[j].key, k, sl) != 0 || all[j].key[sl] != '\x1f')
                continue;
            for (int q = 0; q < GW_METRIC_BUCKETS; q++)
                buckets[q] += all[j].sum.lat[which][q];
            sum += all[j].sum.lat_sum[which];
        }
        uint64_t cum = 0;
        for (int q = 0; q < GW_METRIC_BUCKETS; q++) {
            cum += buckets[q];
            gw_buf_appends(b, name);
            gw_buf_appends(b, "_bucket{");
            label(b, "service", k, sl, 0);
            if (q < GW_METRIC_BUCKETS - 1)
                printf_buf(b, ",le=\"%g\"} %llu\n", bucket_ms[q], (unsigned long long)cum);
            else
                printf_buf(b, ",le=\"+Inf\"} %llu\n", (unsigned long long)cum);
        }
        gw_buf_appends(b, name);
        gw_buf_appends(b, "_count{");
        label(b, "service", k, sl, 0);
        printf_buf(b, "} %llu\n", (unsigned long long)cum);
        gw_buf_appends(b, name);
        gw_buf_appends(b, "_sum{");
        label(b, "service", k, sl, 0);
        printf_buf(b, "} %.3f\n", sum);
    }
}

void gw_metrics_render(struct gw_buf *b)
{
    int cap = 0;
    for (int w = 0; w < nregions; w++)
        cap += region_of(w)->used;
    struct series *all = calloc((size_t)(cap ? cap : 1), sizeof(*all));
    int n = 0;
    uint64_t dropped = 0;
    for (int w = 0; all && w < nregions; w++) {
        struct region *rg = region_of(w);
        dropped += rg->dropped;
        for (int i = 0; i < rg->nslots; i++) {
            struct gw_mslot *s = &rg->slot[i];
            if (s->key[0] == '\0')
                continue;
            int j = 0;
            while (j < n && strcmp(all[j].key, s->key) != 0)
                j++;
            if (j == n) {
                if (n == cap)
                    continue;
                snprintf(all[n].key, sizeof(all[n].key), "%s", s->key);
                n++;
            }
            struct gw_mslot *d = &all[j].sum;
            d->requests += s->requests;
            d->bytes_in += s->bytes_in;
            d->bytes_out += s->bytes_out;
            for (int q = 0; q < 3; q++) {
                d->lat_sum[q] += s->lat_sum[q];
                for (int k = 0; k < GW_METRIC_BUCKETS; k++)
                    d->lat[q][k] += s->lat[q][k];
            }
        }
    }
    /* the gRPC series go to the end: ngrpc of them, after n HTTP ones */
    int ngrpc = 0;
    for (int i = n - 1; i >= 0; i--)
        if (all[i].key[0] == GRPC_KEY[0]) {
            struct series t = all[i];
            all[i] = all[n - 1 - ngrpc];
            all[n - 1 - ngrpc] = t;
            ngrpc++;
        }
    n -= ngrpc;
    gw_buf_appends(b, "# HELP luagate_grpc_responses_total gRPC responses by service, route and "
                      "gRPC status (the upstream's, or the gateway's own)\n"
                      "# TYPE luagate_grpc_responses_total counter\n");
    for (int i = n; i < n + ngrpc; i++) {
        gw_buf_appends(b, "luagate_grpc_responses_total{");
        key_labels(b, all[i].key + 1, "grpc_status");
        printf_buf(b, "} %llu\n", (unsigned long long)all[i].sum.requests);
    }
    gw_buf_appends(b, "# HELP kong_http_requests_total HTTP requests by service, route and status"
                      " code\n# TYPE kong_http_requests_total counter\n");
    for (int i = 0; i < n; i++) {
        gw_buf_appends(b, "kong_http_requests_total{");
        key_labels(b, all[i].key, "code");
        printf_buf(b, "} %llu\n", (unsigned long long)all[i].sum.requests);
    }
    gw_buf_appends(b, "# HELP kong_bandwidth_bytes Bytes received and sent, by service and route\n"
                      "# TYPE kong_bandwidth_bytes counter\n");
    for (int i = 0; i < n; i++) {
        /* one series per service and route: sum its status codes */
        size_t pl = route_prefix_len(all[i].key);
        int first = 1;
        for (int j = 0; j < i && first; j++)
            if (route_prefix_len(all[j].key) == pl && strncmp(all[j].key, all[i].key, pl) == 0)
                first = 0;
        if (!first)
            continue;
        uint64_t in = 0, out = 0;
        for (int j = i; j < n; j++)
            if (route_prefix_len(all[j].key) == pl && strncmp(all[j].key, all[i].key, pl) == 0) {
                in += all[j].sum.bytes_in;
                out += all[j].sum.bytes_out;
            }
        for (int dir = 0; dir < 2; dir++) {
            gw_buf_appends(b, "kong_bandwidth_bytes{");
            key_labels(b, all[i].key, NULL);
            printf_buf(b, ",direction=\"%s\"} %llu\n", dir ? "egress" : "ingress",
                       (unsigned long long)(dir ? out : in));
        }
    }
    histogram(b, "kong_request_latency_ms", "Total request latency per service, ms", all, n, 0);
    histogram(b, "kong_upstream_latency_ms",
              "Time to the upstream's first response byte per service, ms", all, n, 1);
    histogram(b, "kong_kong_latency_ms", "Time spent in the gateway before proxying, ms", all,
              n, 2);
    free(all);

    /* connections, requests, workers */
    uint64_t active = 0, accepted = 0, requests = 0, reloads = 0, memo = 0;
    uint64_t gskip[2] = {0, 0};
    int alive = 0;
    double config_at = 0;
    for (int i = 0; i < gw_stats->nworkers; i++) {
        struct gw_stats_slot *s = &gw_stats->w[i];
        alive += s->pid != 0;
        if (s->pid != 0 && s->config_at > config_at)
            config_at = s->config_at;
        active += s->active;
        accepted += s->accepted;
        requests += s->requests;
        reloads += s->reloads;
        memo += s->memo_answers;
        gskip[0] += s->guard_skips[0];
        gskip[1] += s->guard_skips[1];
    }
    printf_buf(b,
               "# HELP kong_nginx_connections_total Client connections\n"
               "# TYPE kong_nginx_connections_total gauge\n"
               "kong_nginx_connections_total{state=\"active\"} %llu\n"
               "kong_nginx_connections_total{state=\"accepted\"} %llu\n"
               "# HELP kong_nginx_requests_total Requests served\n"
               "# TYPE kong_nginx_requests_total counter\n"
               "kong_nginx_requests_total %llu\n"
               "# HELP luagate_workers Worker processes alive\n# TYPE luagate_workers gauge\n"
               "luagate_workers %d\n"
               "# HELP luagate_config_reloads_total Configurations swapped in, all workers\n"
               "# TYPE luagate_config_reloads_total counter\nluagate_config_reloads_total %llu\n"
               "# HELP luagate_metrics_series_dropped_total Series that found no free slot\n"
               "# TYPE luagate_metrics_series_dropped_total counter\n"
               "luagate_metrics_series_dropped_total %llu\n"
               "# HELP luagate_memo_answers_total Requests answered from answer memos, "
               "without plugins running (proxy-cache hits)\n"
               "# TYPE luagate_memo_answers_total counter\nluagate_memo_answers_total %llu\n"
               "# HELP luagate_phase_guard_skips_total Plugin phases left out by phase "
               "guards (kong.plugin.idle)\n"
               "# TYPE luagate_phase_guard_skips_total counter\n"
               "luagate_phase_guard_skips_total{phase=\"access\"} %llu\n"
               "luagate_phase_guard_skips_total{phase=\"log\"} %llu\n",
               (unsigned long long)active, (unsigned long long)accepted,
               (unsigned long long)requests, alive, (unsigned long long)reloads,
               (unsigned long long)dropped, (unsigned long long)memo,
               (unsigned long long)gskip[0], (unsigned long long)gskip[1]);
    const struct gw_config *cf = gw_worker->config;
    printf_buf(b, "# HELP kong_data_plane_config_hash Hash of the running configuration\n"
                  "# TYPE kong_data_plane_config_hash gauge\n"
                  "kong_data_plane_config_hash{hash=\"%s\"} 1\n"
                  "# HELP luagate_config_last_reload_timestamp_seconds When the running "
                  "configuration was swapped in (the latest worker), epoch seconds\n"
                  "# TYPE luagate_config_last_reload_timestamp_seconds gauge\n"
                  "luagate_config_last_reload_timestamp_seconds %.3f\n",
               cf->hash, config_at);
    /* upstream target health */
    gw_buf_appends(b, "# HELP kong_upstream_target_health Health of each target (1 = in that "
                      "state)\n# TYPE kong_upstream_target_health gauge\n");
    for (int i = 0; i < cf->nbalancers; i++) {
        struct gw_balancer *bl = &cf->balancers[i];
        for (int j = 0; j < bl->ntargets; j++) {
            const char *h = gw_balancer_health(bl, j);
            static const char *const states[] = {"healthy", "unhealthy"};
            for (int st = 0; st < 2; st++) {
                gw_buf_appends(b, "kong_upstream_target_health{");
                label(b, "upstream", bl->name, strlen(bl->name), 0);
                label(b, "target", bl->targets[j].name, strlen(bl->targets[j].name), 1);
                printf_buf(b, ",state=\"%s\"} %d\n", states[st],
                           (st == 0) == (strcmp(h, "HEALTHY") == 0));
            }
        }
    }
    /* shared dictionaries */
    gw_buf_appends(b, "# HELP kong_memory_lua_shared_dict_bytes Bytes used in each shared "
                      "dictionary\n# TYPE kong_memory_lua_shared_dict_bytes gauge\n"
                      "# HELP kong_memory_lua_shared_dict_total_bytes Size of each shared "
                      "dictionary\n# TYPE kong_memory_lua_shared_dict_total_bytes gauge\n");
    for (int i = 0; i < gw_settings.nshdicts; i++) {
        const char *name = gw_settings.shdict_name[i];
        struct gw_shdict *d = gw_shdict_find(name, strlen(name));
        if (d == NULL)
            continue;
        size_t total = gw_ffi_shdict_capacity(d), free_b = gw_ffi_shdict_free_space(d);
        printf_buf(b, "kong_memory_lua_shared_dict_bytes{shared_dict=\"%s\"} %zu\n", name,
                   total - free_b);
        printf_buf(b, "kong_memory_lua_shared_dict_total_bytes{shared_dict=\"%s\"} %zu\n", name,
                   total);
    }
}
