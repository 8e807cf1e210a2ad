/* The admin API: for now GET /status (the operations issue extends it). */
#include <stdio.h>
#include <string.h>
#include <sys/time.h>

#include "gw/admin.h"
#include "gw/balancer.h"
#include "gw/buf.h"
#include "gw/health.h"
#include "gw/metrics.h"
#include "gw/http.h"
#include "gw/config-t.h"
#include "gw/conn.h"
#include "gw/stats.h"
#include "gw/version.h"
#include "gw/worker-t.h"

static void status(struct gw_conn *c)
{
    struct timeval tv;
    gettimeofday(&tv, NULL);
    double now = tv.tv_sec + tv.tv_usec / 1e6;
    uint64_t accepted = 0, active = 0, requests = 0, reloads = 0;
    int alive = 0;
    for (int i = 0; i < gw_stats->nworkers; i++) {
        struct gw_stats_slot *s = &gw_stats->w[i];
        if (s->pid)
            alive++;
        accepted += s->accepted;
        active += s->active;
        requests += s->requests;
        reloads += s->reloads;
    }
    char body[1024];
    int n = snprintf(body, sizeof(body),
                     "{\"version\":\"%s\",\"uptime\":%.3f,\"workers\":%d,"
                     "\"connections\":{\"active\":%llu,\"accepted\":%llu},"
                     "\"requests\":%llu,\"config_hash\":\"%s\",\"reloads\":%llu,"
                     "\"worker_id\":%d}",
                     GW_VERSION, now - gw_stats->start_time, alive,
                     (unsigned long long)active, (unsigned long long)accepted,
                     (unsigned long long)requests, gw_worker->config->hash,
                     (unsigned long long)reloads, gw_worker->id);
    gw_conn_respond(c, 200, "application/json; charset=utf-8", body, (size_t)n, 0);
}

/* GET /upstreams/{name}/health: Kong's shape, {"data": [{target, weight,
 * health, ...}], "node_id": ...}. */
static void upstream_health(struct gw_conn *c, const char *name, size_t nlen)
{
    const struct gw_config *cf = gw_worker->config;
    for (int i = 0; i < cf->nbalancers; i++) {
        struct gw_balancer *b = &cf->balancers[i];
        if (strlen(b->name) != nlen || memcmp(b->name, name, nlen) != 0)
            continue;
        struct gw_buf out = {0};
        gw_buf_appends(&out, "{\"data\":[");
        for (int j = 0; j < b->ntargets; j++) {
            const struct gw_target *t = &b->targets[j];
            const struct gw_health *h = t->health;
            char item[512];
            int n = snprintf(item, sizeof(item),
                             "%s{\"target\":\"%s\",\"weight\":%d,\"priority\":%d,"
                             "\"health\":\"%s\",\"active_connections\":%d,"
                             "\"ejected_by\":%s,\"upstream\":{\"name\":\"%s\"}}",
                             j ? "," : "", t->name, t->weight, t->priority,
                             gw_balancer_health(b, j), h ? h->active : 0,
                             h && h->unhealthy ? (h->by_active ? "\"active\"" : "\"passive\"")
                                               : "null",
                             b->name);
            gw_buf_append(&out, item, (size_t)n);
        }
        gw_buf_appends(&out, "],\"total\":");
        gw_buf_append_u64(&out, (uint64_t)b->ntargets);
        gw_buf_appends(&out, "}");
        gw_conn_respond(c, 200, "application/json; charset=utf-8", out.data, out.len, 0);
        gw_buf_free(&out);
        return;
    }
    gw_conn_error(c, 404, "Not found");
}

void gw_admin_handle(struct gw_conn *c)
{
    struct gw_req *r = c->req;
    const char *url = c->in.data + r->url_off;
    const char *method = llhttp_method_name((llhttp_method_t)c->parser.method);
    if (r->path_len == 7 && memcmp(url, "/status", 7) == 0) {
        if (strcmp(method, "GET") != 0 && strcmp(method, "HEAD") != 0) {
            gw_conn_error(c, 405, "Method not allowed");
            return;
        }
        status(c);
        return;
    }
    if (r->path_len == 8 && memcmp(url, "/metrics", 8) == 0) {
        struct gw_buf out = {0};
        gw_metrics_render(&out);
        gw_conn_respond(c, 200, "text/plain; version=0.0.4; charset=utf-8",
                        out.data ? out.data : "", out.len, 0);
        gw_buf_free(&out);
        return;
    }
    if (r->path_len > 18 && memcmp(url, "/upstreams/", 11) == 0 &&
        memcmp(url + r->path_len - 7, "/health", 7) == 0) {
        upstream_health(c, url + 11, r->path_len - 18);
        return;
    }
    gw_conn_error(c, 404, "Not found");
}
