/* The admin API. C answers what reads shared memory (/status, /metrics,
 * /upstreams/{name}/health, GET /debug/routes) and /dashboard; the rest goes
 * to lua/luagate/admin (handle(), called with lua_pcall: it may not yield).
 * A valid POST /config is written to the run directory and handed to the
 * master, which distributes it as a SIGHUP reload does; the request is
 * answered once every worker runs the new configuration. See
 * docs/admin-api.md. */
#include <errno.h>
#include <fcntl.h>
#include <lauxlib.h>
#include <lua.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <unistd.h>

#include "gw/admin.h"
#include "gw/balancer.h"
#include "gw/buf.h"
#include "gw/config-t.h"
#include "gw/conn.h"
#include "gw/health.h"
#include "gw/http.h"
#include "gw/log.h"
#include "gw/metrics.h"
#include "gw/settings-t.h"
#include "gw/stats.h"
#include "gw/version.h"
#include "gw/worker-t.h"

#define JSON_CT "application/json; charset=utf-8"
#define APPLY_MASTER_TIMEOUT 30.0 /* s: the master validates and answers */
#define APPLY_WORKERS_TIMEOUT 10.0 /* s: then every worker loads it */
#define DEBUG_SLOTS 64

static double now(void)
{
    struct timeval tv;
    gettimeofday(&tv, NULL);
    return tv.tv_sec + tv.tv_usec / 1e6;
}

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
    struct gw_buf b = {0};
    char head[1024];
    int n = snprintf(head, sizeof(head),
                     "{\"version\":\"%s\",\"uptime\":%.3f,\"workers\":%d,"
                     "\"connections\":{\"active\":%llu,\"accepted\":%llu},"
                     "\"requests\":%llu,\"config_hash\":\"%s\",\"reloads\":%llu,"
                     "\"worker_id\":%d,\"worker_config_hashes\":[",
                     GW_VERSION, now - gw_stats->start_time, alive,
                     (unsigned long long)active, (unsigned long long)accepted,
                     (unsigned long long)requests, gw_worker->config->hash,
                     (unsigned long long)reloads, gw_worker->id);
    /* each live worker's configuration: a reload has reached every worker
     * once they are all the same (workers load in slices, each at its pace) */
    int first = 1;
    gw_buf_append(&b, head, (size_t)n);
    for (int i = 0; i < gw_stats->nworkers; i++) {
        struct gw_stats_slot *s = &gw_stats->w[i];
        if (!s->pid)
            continue;
        char h[80];
        int k = snprintf(h, sizeof(h), "%s\"%.*s\"", first ? "" : ",",
                         (int)sizeof(s->config_hash), s->config_hash);
        gw_buf_append(&b, h, (size_t)k);
        first = 0;
    }
    if (gw_buf_appends(&b, "]}") != 0) {
        gw_buf_free(&b);
        gw_conn_error(c, 500, "An unexpected error occurred");
        return;
    }
    gw_conn_respond(c, 200, "application/json; charset=utf-8", b.data, b.len, 0);
    gw_buf_free(&b);
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

/* The series plugins keep in shared dictionaries (circuit breakers,
 * throttling queues), rendered by luagate.admin.metrics; a failure there
 * is logged and the rest of the scrape still answers. */
static void metrics_lua(struct gw_buf *out)
{
    lua_State *L = gw_worker->L;
    int top = lua_gettop(L);
    lua_getglobal(L, "require");
    lua_pushstring(L, "luagate.admin.metrics");
    if (lua_pcall(L, 1, 1, 0) == 0) {
        lua_getfield(L, -1, "render");
        if (lua_pcall(L, 0, 1, 0) == 0) {
            size_t n;
            const char *s = lua_tolstring(L, -1, &n);
            if (s)
                gw_buf_append(out, s, n);
            lua_settop(L, top);
            return;
        }
    }
    gw_log(GW_LOG_ERR, "metrics: %s", lua_tostring(L, -1) ? lua_tostring(L, -1) : "Lua error");
    lua_settop(L, top);
}

/* PUT (or POST) /upstreams/{name}/targets/{target}/healthy|unhealthy:
 * Kong's manual override, 204. Healthy clears any ejection and the counters;
 * unhealthy ejects the target until this API or an active probe readmits
 * it (passive readmission probes do not). The state is shared memory: every
 * worker sees it at once. */
static void target_set_health(struct gw_conn *c, const char *path, size_t plen)
{
    const char *up = path + 11; /* after "/upstreams/" */
    const char *end = path + plen;
    const char *sep = memchr(up, '/', (size_t)(end - up));
    if (sep == NULL || (size_t)(end - sep) < 9 || memcmp(sep, "/targets/", 9) != 0) {
        gw_conn_error(c, 404, "Not found");
        return;
    }
    const char *tg = sep + 9;
    const char *last = end;
    while (last > tg && last[-1] != '/')
        last--;
    int healthy;
    if ((size_t)(end - last) == 7 && memcmp(last, "healthy", 7) == 0)
        healthy = 1;
    else if ((size_t)(end - last) == 9 && memcmp(last, "unhealthy", 9) == 0)
        healthy = 0;
    else {
        gw_conn_error(c, 404, "Not found");
        return;
    }
    size_t ulen = (size_t)(sep - up), tlen = last > tg ? (size_t)(last - 1 - tg) : 0;
    const struct gw_config *cf = gw_worker->config;
    for (int i = 0; i < cf->nbalancers; i++) {
        struct gw_balancer *b = &cf->balancers[i];
        if (strlen(b->name) != ulen || memcmp(b->name, up, ulen) != 0)
            continue;
        for (int j = 0; j < b->ntargets; j++) {
            struct gw_target *t = &b->targets[j];
            struct gw_health *h = t->health;
            if (strlen(t->name) != tlen || memcmp(t->name, tg, tlen) != 0 || h == NULL)
                continue;
            h->http_failures = h->tcp_failures = h->timeouts = h->successes = 0;
            h->backoff_ms = 0;
            h->readmit_at_ms = 0;
            __atomic_store_n(&h->probing, 0, __ATOMIC_RELEASE);
            h->by_active = healthy ? 0 : 1;
            if ((h->unhealthy != 0) == healthy)
                gw_health_changed(h, healthy ? 0 : 1);
            gw_log(healthy ? GW_LOG_NOTICE : GW_LOG_WARN,
                   "target %s/%s set %s through the admin API", b->name, t->name,
                   healthy ? "healthy" : "unhealthy");
            gw_conn_respond(c, 204, "application/json; charset=utf-8", "", 0, 0);
            return;
        }
        break;
    }
    gw_conn_error(c, 404, "Not found");
}

/* ---- the debug switches (shared memory, written by any worker) ---- */

struct debug_table {
    volatile int lock;
    volatile double until; /* the latest expiry of any switch: 0 when none */
    struct {
        char route_id[64];
        double until; /* epoch seconds; 0: free */
    } slot[DEBUG_SLOTS];
};

static struct debug_table *dbg;
volatile double *gw__admin_debug_until;

int gw_admin_shm_init(void)
{
    void *p = mmap(NULL, sizeof(struct debug_table), PROT_READ | PROT_WRITE,
                   MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    if (p == MAP_FAILED) {
        gw_log(GW_LOG_EMERG, "mmap() of the debug switches failed: %s", strerror(errno));
        return -1;
    }
    dbg = p;
    gw__admin_debug_until = &dbg->until;
    return 0;
}

static void dbg_lock(void)
{
    while (__atomic_exchange_n(&dbg->lock, 1, __ATOMIC_ACQUIRE))
        ;
}

static void dbg_unlock(void)
{
    __atomic_store_n(&dbg->lock, 0, __ATOMIC_RELEASE);
}

int gw__admin_debug_match(const char *route_id, double t)
{
    for (int i = 0; i < DEBUG_SLOTS; i++)
        if (dbg->slot[i].until > t && strcmp(dbg->slot[i].route_id, route_id) == 0)
            return 1;
    return 0;
}

/* Sets (seconds > 0) or clears (0) the switch of a route. */
static int debug_set(const char *route_id, int seconds)
{
    if (dbg == NULL || strlen(route_id) >= sizeof(dbg->slot[0].route_id))
        return -1;
    double t = now();
    int rc = -1;
    dbg_lock();
    int free_slot = -1, found = -1;
    for (int i = 0; i < DEBUG_SLOTS; i++) {
        if (dbg->slot[i].until > t && strcmp(dbg->slot[i].route_id, route_id) == 0)
            found = i;
        else if (dbg->slot[i].until <= t && free_slot < 0)
            free_slot = i;
    }
    int i = found >= 0 ? found : free_slot;
    if (seconds == 0) {
        if (found >= 0)
            dbg->slot[found].until = 0;
        rc = 0;
    } else if (i >= 0) {
        snprintf(dbg->slot[i].route_id, sizeof(dbg->slot[i].route_id), "%s", route_id);
        dbg->slot[i].until = t + seconds;
        rc = 0;
    }
    double max = 0;
    for (int j = 0; j < DEBUG_SLOTS; j++)
        if (dbg->slot[j].until > t && dbg->slot[j].until > max)
            max = dbg->slot[j].until;
    dbg->until = max;
    dbg_unlock();
    return rc;
}

static void debug_list(struct gw_conn *c)
{
    struct gw_buf out = {0};
    double t = now();
    gw_buf_appends(&out, "{\"data\":[");
    int n = 0;
    if (dbg) {
        dbg_lock();
        for (int i = 0; i < DEBUG_SLOTS; i++) {
            if (dbg->slot[i].until <= t)
                continue;
            char item[160];
            int k = snprintf(item, sizeof(item),
                             "%s{\"route\":{\"id\":\"%s\"},\"expires_at\":%.0f,\"seconds_left\":%.0f}",
                             n++ ? "," : "", dbg->slot[i].route_id, dbg->slot[i].until,
                             dbg->slot[i].until - t);
            gw_buf_append(&out, item, (size_t)k);
        }
        dbg_unlock();
    }
    gw_buf_appends(&out, "],\"next\":null}");
    gw_conn_respond(c, 200, JSON_CT, out.data, out.len, 0);
    gw_buf_free(&out);
}

/* Request headers that carry credentials are logged as "<redacted>". */
static int secret_header(const char *name, size_t n)
{
    char l[64];
    if (n >= sizeof(l))
        n = sizeof(l) - 1;
    for (size_t i = 0; i < n; i++)
        l[i] = (char)((name[i] >= 'A' && name[i] <= 'Z') ? name[i] + 32 : name[i]);
    l[n] = '\0';
    static const char *const words[] = {"auth", "cookie", "key", "token", "secret",
                                        "password", "signature", "session"};
    for (size_t i = 0; i < sizeof(words) / sizeof(words[0]); i++)
        if (strstr(l, words[i]))
            return 1;
    return 0;
}

static void upstream_addr(struct gw_buf *b, struct gw_req *r)
{
    if (r->service && r->service->balancer >= 0 && r->tries > 0) {
        const struct gw_balancer *bl = &r->config->balancers[r->service->balancer];
        int i = r->tries <= 8 ? r->tries - 1 : 7;
        int t = r->try_target[i];
        if (t >= 0 && t < bl->ntargets) {
            gw_json_escape(b, bl->targets[t].name, strlen(bl->targets[t].name));
            return;
        }
    }
    if (r->up_target_host) {
        gw_json_escape(b, r->up_target_host, strlen(r->up_target_host));
        char p[16];
        gw_buf_append(b, p, (size_t)snprintf(p, sizeof(p), ":%d", r->up_target_port));
        return;
    }
    if (r->service) {
        gw_json_escape(b, r->service->host, strlen(r->service->host));
        char p[16];
        gw_buf_append(b, p, (size_t)snprintf(p, sizeof(p), ":%d", r->service->port));
    }
}

static void ms(struct gw_buf *b, const char *key, double from, double to)
{
    gw_buf_appends(b, key);
    if (from <= 0 || to <= 0) {
        gw_buf_appends(b, "null");
        return;
    }
    char v[32];
    gw_buf_append(b, v, (size_t)snprintf(v, sizeof(v), "%.3f", (to - from) * 1000.0));
}

void gw_admin_debug_fields(struct gw_buf *b, struct gw_conn *c, struct gw_req *r)
{
    gw_buf_appends(b, ",\"debug\":{\"request_headers\":{");
    for (int i = 0; i < r->head.nhdr && c->in.data; i++) {
        const struct gw_hdr *h = &r->head.hdr[i];
        if (h->name + h->name_len > r->head_len || h->value + h->value_len > r->head_len)
            continue;
        const char *name = c->in.data + h->name;
        gw_buf_appends(b, i ? ",\"" : "\"");
        gw_json_escape(b, name, h->name_len);
        gw_buf_appends(b, "\":\"");
        if (secret_header(name, h->name_len))
            gw_buf_appends(b, "<redacted>");
        else
            gw_json_escape(b, c->in.data + h->value, h->value_len);
        gw_buf_appends(b, "\"");
    }
    gw_buf_appends(b, "},\"upstream_addr\":\"");
    upstream_addr(b, r);
    gw_buf_appends(b, "\",\"timings_ms\":{");
    double end = r->t_end ? r->t_end : r->t_start;
    ms(b, "\"total\":", r->t_start, end);
    ms(b, ",\"before_upstream\":", r->t_start, r->t_upstream_start);
    ms(b, ",\"upstream_first_byte\":", r->t_upstream_start, r->t_upstream_first);
    ms(b, ",\"upstream_to_end\":", r->t_upstream_start, end);
    gw_buf_appends(b, "}}");
}

void gw_admin_debug_log(struct gw_conn *c, struct gw_req *r)
{
    struct gw_buf b = {0};
    gw_buf_appends(&b, "{\"request_id\":\"");
    gw_buf_append(&b, r->id, strlen(r->id));
    gw_buf_appends(&b, "\",\"route\":\"");
    const char *rn = r->route->name ? r->route->name : r->route->id;
    gw_json_escape(&b, rn, strlen(rn));
    gw_buf_appends(&b, "\",\"path\":\"");
    if (r->url_len && c->in.data)
        gw_json_escape(&b, c->in.data + r->url_off, r->path_len ? r->path_len : r->url_len);
    char st[64];
    gw_buf_append(&b, st,
                  (size_t)snprintf(st, sizeof(st), "\",\"status\":%d,\"upstream_status\":%d",
                                   r->status, r->upstream_status));
    gw_admin_debug_fields(&b, c, r);
    gw_buf_appends(&b, "}");
    int saved = gw_log_level_current;
    gw_log_level_current = GW_LOG_DEBUG;
    gw_log(GW_LOG_DEBUG, "route debug: %.*s", (int)b.len, b.data ? b.data : "");
    gw_log_level_current = saved;
    gw_buf_free(&b);
}

/* ---- POST /config: the worker's side ---- */

static char rundir[256];
static int report_fd = -1;
static double loaded_at;

static struct {
    struct gw_conn *conn; /* the request waiting for the master, or NULL */
    char hash[65];
    int waiting_workers;  /* the master answered: wait for every worker */
    double deadline;
    ev_timer timer;
} apply;

static int apply_seq;

void gw_admin_worker_init(const char *dir, int fd)
{
    snprintf(rundir, sizeof(rundir), "%s", dir);
    report_fd = fd;
    loaded_at = now();
}

void gw_admin_config_loaded(void)
{
    loaded_at = now();
}

static void apply_finish(int status, const char *msg)
{
    struct gw_conn *c = apply.conn;
    apply.conn = NULL;
    ev_timer_stop(gw_worker->loop, &apply.timer);
    if (c == NULL)
        return;
    if (status != 201) {
        gw_conn_error(c, status, msg);
        return;
    }
    char body[256];
    int alive = 0;
    for (int i = 0; i < gw_stats->nworkers; i++)
        if (gw_stats->w[i].pid)
            alive++;
    int n = snprintf(body, sizeof(body), "{\"config_hash\":\"%s\",\"workers\":%d}", apply.hash,
                     alive);
    gw_conn_respond(c, 201, JSON_CT, body, (size_t)n, 0);
}

static int workers_caught_up(void)
{
    for (int i = 0; i < gw_stats->nworkers; i++)
        if (gw_stats->w[i].pid && strcmp(gw_stats->w[i].config_hash, apply.hash) != 0)
            return 0;
    return 1;
}

static void apply_timer_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
    if (!apply.waiting_workers) {
        gw_log(GW_LOG_ERR, "POST /config: the master did not answer in %.0f s",
               APPLY_MASTER_TIMEOUT);
        apply_finish(500, "the master did not confirm the new configuration in time");
        return;
    }
    if (workers_caught_up()) {
        apply_finish(201, NULL);
        return;
    }
    if (now() > apply.deadline) {
        gw_log(GW_LOG_WARN, "POST /config: not every worker runs %s after %.0f s", apply.hash,
               APPLY_WORKERS_TIMEOUT);
        apply_finish(201, NULL);
        return;
    }
    ev_timer_set(w, 0.005, 0);
    ev_timer_start(loop, w);
}

void gw_admin_applied(int ok, const char *text)
{
    if (apply.conn == NULL)
        return;
    ev_timer_stop(gw_worker->loop, &apply.timer);
    if (!ok) {
        char msg[1024];
        snprintf(msg, sizeof(msg), "declarative config is invalid: %s", text);
        apply_finish(400, msg);
        return;
    }
    snprintf(apply.hash, sizeof(apply.hash), "%s", text);
    apply.waiting_workers = 1;
    apply.deadline = now() + APPLY_WORKERS_TIMEOUT;
    apply_timer_cb(gw_worker->loop, &apply.timer, 0);
}

/* Requests waiting for a Lua timer's answer (gw_ffi_admin_answer). */
static struct admin_wait {
    struct gw_conn *conn; /* NULL: free slot */
    double token;
    int status;           /* > 0: the answer came, sent by the timer */
    char *ctype, *body;   /* malloc'd */
    size_t len;
    ev_timer timer;       /* the timeout, then the answer's turn */
} waits[GW_ADMIN_WAIT_MAX];

static double wait_seq; /* tokens are doubles: Lua numbers, exact below 2^53 */

static void wait_clear(struct admin_wait *w)
{
    ev_timer_stop(gw_worker->loop, &w->timer);
    w->conn = NULL;
    w->status = 0;
    free(w->ctype);
    free(w->body);
    w->ctype = w->body = NULL;
}

static void wait_timer_cb(struct ev_loop *loop, ev_timer *t, int revents)
{
    struct admin_wait *w = t->data;
    struct gw_conn *c = w->conn;
    if (w->status == 0) {
        wait_clear(w);
        gw_conn_error(c, 504, "the admin operation did not finish in time");
        return;
    }
    int status = w->status;
    char *ctype = w->ctype, *body = w->body;
    size_t len = w->len;
    w->ctype = w->body = NULL;
    wait_clear(w);
    gw_conn_respond(c, status, ctype, body ? body : "", len, 0);
    free(ctype);
    free(body);
}

static int wait_start(struct gw_conn *c, double token)
{
    for (int i = 0; i < GW_ADMIN_WAIT_MAX; i++) {
        struct admin_wait *w = &waits[i];
        if (w->conn)
            continue;
        w->conn = c;
        w->token = token;
        w->status = 0;
        ev_init(&w->timer, wait_timer_cb);
        w->timer.data = w;
        ev_timer_set(&w->timer, GW_ADMIN_WAIT_TIMEOUT, 0);
        ev_timer_start(gw_worker->loop, &w->timer);
        return GW_OK;
    }
    return GW_ERROR;
}

int gw_ffi_admin_answer(double token, int status, const char *ctype, const char *body,
                        size_t len)
{
    for (int i = 0; i < GW_ADMIN_WAIT_MAX; i++) {
        struct admin_wait *w = &waits[i];
        if (w->conn == NULL || w->token != token || w->status)
            continue;
        w->ctype = strdup(ctype && *ctype ? ctype : JSON_CT);
        w->body = malloc(len ? len : 1);
        if (w->ctype == NULL || w->body == NULL) {
            free(w->ctype);
            free(w->body);
            w->ctype = w->body = NULL;
            status = 500; /* no memory: an error rather than nothing */
            len = 0;
        } else if (len) {
            memcpy(w->body, body, len);
        }
        w->status = status >= 100 && status <= 599 ? status : 500;
        w->len = len;
        ev_timer_stop(gw_worker->loop, &w->timer);
        ev_timer_set(&w->timer, 0, 0);
        ev_timer_start(gw_worker->loop, &w->timer);
        return GW_OK;
    }
    return GW_DECLINED;
}

void gw_admin_conn_closed(struct gw_conn *c)
{
    for (int i = 0; i < GW_ADMIN_WAIT_MAX; i++)
        if (waits[i].conn == c)
            wait_clear(&waits[i]); /* the timer's answer finds no one */
    if (apply.conn == c) {
        apply.conn = NULL; /* the master's answer is still applied; nobody hears it */
        ev_timer_stop(gw_worker->loop, &apply.timer);
    }
}

/* Writes the posted configuration for the master and asks it to apply it. */
static void apply_start(struct gw_conn *c, const char *body, size_t len, const char *format)
{
    if (apply.conn) {
        gw_conn_error(c, 409, "another configuration is being applied: retry");
        return;
    }
    if (report_fd < 0 || rundir[0] == '\0') {
        gw_conn_error(c, 500, "this worker cannot reach the master");
        return;
    }
    char path[400];
    snprintf(path, sizeof(path), "%s/post-%d-%d.%s", rundir, (int)getpid(), ++apply_seq,
             strcmp(format, "json") == 0 ? "json" : "yml");
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (fd == -1) {
        gw_log(GW_LOG_ERR, "open() \"%s\" failed: %s", path, strerror(errno));
        gw_conn_error(c, 500, "could not store the configuration");
        return;
    }
    size_t off = 0;
    while (off < len) {
        ssize_t n = write(fd, body + off, len - off);
        if (n == -1) {
            if (errno == EINTR)
                continue;
            gw_log(GW_LOG_ERR, "write() \"%s\" failed: %s", path, strerror(errno));
            close(fd);
            unlink(path);
            gw_conn_error(c, 500, "could not store the configuration");
            return;
        }
        off += (size_t)n;
    }
    close(fd);
    char line[512];
    int n = snprintf(line, sizeof(line), "apply %s\n", path);
    if (write(report_fd, line, (size_t)n) != n) {
        gw_log(GW_LOG_ERR, "write() to the master failed: %s", strerror(errno));
        unlink(path);
        gw_conn_error(c, 500, "this worker cannot reach the master");
        return;
    }
    kill(getppid(), SIGUSR1);
    apply.conn = c;
    apply.waiting_workers = 0;
    ev_init(&apply.timer, apply_timer_cb);
    ev_timer_set(&apply.timer, APPLY_MASTER_TIMEOUT, 0);
    ev_timer_start(gw_worker->loop, &apply.timer);
}

/* ---- the Lua side ---- */

static void set_str(lua_State *L, const char *k, const char *v, size_t n)
{
    lua_pushlstring(L, v, n);
    lua_setfield(L, -2, k);
}

/* Calls luagate.admin.handle(req) and answers with what it returns. */
static void lua_handle(struct gw_conn *c)
{
    struct gw_req *r = c->req;
    lua_State *L = gw_worker->L;
    int top = lua_gettop(L);
    const char *url = c->in.data + r->url_off;
    const char *method = llhttp_method_name((llhttp_method_t)c->parser.method);
    lua_getglobal(L, "require");
    lua_pushstring(L, "luagate.admin");
    if (lua_pcall(L, 1, 1, 0) != 0)
        goto fail;
    lua_getfield(L, -1, "handle");
    lua_createtable(L, 0, 12);
    set_str(L, "method", method, strlen(method));
    set_str(L, "path", url, r->path_len);
    if (r->url_len > r->path_len + 1)
        set_str(L, "query", url + r->path_len + 1, r->url_len - r->path_len - 1);
    if (r->body_mode == GW_BODY_READ)
        set_str(L, "body", r->body_buf.data ? r->body_buf.data : "", r->body_buf.len);
    struct gw_str ct;
    if (gw_req_header(c, "content-type", 12, 0, &ct) == GW_OK)
        set_str(L, "content_type", ct.p, ct.n);
    struct gw_config *cf = gw_worker->config;
    lua_rawgeti(L, LUA_REGISTRYINDEX, cf->lua_ref);
    lua_setfield(L, -2, "conf");
    set_str(L, "hash", cf->hash, strlen(cf->hash));
    lua_pushnumber(L, (lua_Number)(long long)loaded_at);
    lua_setfield(L, -2, "loaded_at");
    set_str(L, "prefix", gw_settings.prefix, strlen(gw_settings.prefix));
    lua_createtable(L, gw_settings.nplugin_dirs, 0);
    for (int i = 0; i < gw_settings.nplugin_dirs; i++) {
        lua_pushstring(L, gw_settings.plugin_dirs[i]);
        lua_rawseti(L, -2, i + 1);
    }
    lua_setfield(L, -2, "plugins_dirs");
    double token = ++wait_seq;
    lua_pushnumber(L, token);
    lua_setfield(L, -2, "token");
    if (lua_pcall(L, 1, 6, 0) != 0)
        goto fail;
    int base = lua_gettop(L) - 5;
    int status = (int)lua_tointeger(L, base);
    const char *ctype = lua_tostring(L, base + 1);
    size_t blen = 0;
    const char *body = lua_tolstring(L, base + 2, &blen);
    const char *action = lua_tostring(L, base + 3);
    if (status < 100 || status > 599 || ctype == NULL || body == NULL) {
        lua_settop(L, top);
        gw_conn_error(c, 500, "An unexpected error occurred");
        return;
    }
    if (action && strcmp(action, "defer") == 0) {
        /* a timer of luagate.admin answers (gw_ffi_admin_answer) */
        if (wait_start(c, token) != GW_OK)
            gw_conn_error(c, 503, "too many admin requests are waiting: retry");
    } else if (action && strcmp(action, "apply") == 0) {
        const char *format = lua_tostring(L, base + 4);
        apply_start(c, body, blen, format ? format : "yaml");
    } else if (action && strcmp(action, "debug_on") == 0) {
        if (debug_set(lua_tostring(L, base + 4), (int)lua_tointeger(L, base + 5)) != 0)
            gw_conn_error(c, 503, "too many debug switches are on");
        else
            gw_conn_respond(c, status, ctype, body, blen, 0);
    } else if (action && strcmp(action, "debug_off") == 0) {
        debug_set(lua_tostring(L, base + 4), 0);
        gw_conn_respond(c, status, ctype, body, blen, 0);
    } else {
        gw_conn_respond(c, status, ctype, body, blen, 0);
    }
    lua_settop(L, top);
    return;
fail:
    gw_log(GW_LOG_ERR, "admin API: %s", lua_tostring(L, -1) ? lua_tostring(L, -1) : "?");
    lua_settop(L, top);
    gw_conn_error(c, 500, "An unexpected error occurred");
}

static void dashboard(struct gw_conn *c)
{
    char path[4200];
    snprintf(path, sizeof(path), "%s/lua/luagate/admin/dashboard.html", gw_settings.prefix);
    FILE *f = fopen(path, "rb");
    if (f == NULL) {
        gw_conn_error(c, 404, "Not found");
        return;
    }
    struct gw_buf out = {0};
    char buf[16384];
    size_t n;
    while ((n = fread(buf, 1, sizeof(buf), f)) > 0)
        if (gw_buf_append(&out, buf, n) != 0)
            break;
    fclose(f);
    gw_conn_respond(c, 200, "text/html; charset=utf-8", out.data ? out.data : "", out.len, 0);
    gw_buf_free(&out);
}

/* Constant-time comparison of a presented token with the configured one. */
static int token_ok(const char *p, size_t n)
{
    const char *t = gw_settings.admin_token;
    size_t tn = strlen(t);
    unsigned char d = (unsigned char)(n != tn);
    for (size_t i = 0; i < tn; i++)
        d |= (unsigned char)(t[i] ^ (i < n ? p[i] : 0));
    return d == 0;
}

static int authorized(struct gw_conn *c)
{
    if (gw_settings.admin_token == NULL || gw_settings.admin_token[0] == '\0')
        return 1;
    struct gw_str v;
    if (gw_req_header(c, "kong-admin-token", 16, 0, &v) == GW_OK && token_ok(v.p, v.n))
        return 1;
    if (gw_req_header(c, "authorization", 13, 0, &v) == GW_OK && v.n > 7 &&
        strncasecmp(v.p, "Bearer ", 7) == 0) {
        const char *p = v.p + 7;
        size_t n = v.n - 7;
        while (n && *p == ' ')
            p++, n--;
        if (token_ok(p, n))
            return 1;
    }
    return 0;
}

static int path_is(const char *url, size_t len, const char *p)
{
    return strlen(p) == len && memcmp(url, p, len) == 0;
}

void gw_admin_body_done(struct gw_conn *c, int rc)
{
    struct gw_req *r = c->req;
    if (rc != GW_OK) {
        if (r->body_too_large)
            gw_conn_error(c, 413, "Request size limit exceeded (the admin API reads up to 64 MB)");
        else
            gw_conn_error(c, 400, "Bad request: invalid body");
        return;
    }
    lua_handle(c);
}

void gw_admin_handle(struct gw_conn *c)
{
    struct gw_req *r = c->req;
    const char *url = c->in.data + r->url_off;
    size_t plen = r->path_len;
    const char *method = llhttp_method_name((llhttp_method_t)c->parser.method);
    int get = strcmp(method, "GET") == 0 || strcmp(method, "HEAD") == 0;
    if (!authorized(c)) {
        gw_conn_error(c, 401, "Unauthorized: send Authorization: Bearer <token> or "
                              "Kong-Admin-Token: <token>");
        return;
    }
    if (path_is(url, plen, "/status")) {
        if (!get) {
            gw_conn_error(c, 405, "Method not allowed");
            return;
        }
        status(c);
        return;
    }
    if (path_is(url, plen, "/metrics")) {
        struct gw_buf out = {0};
        gw_metrics_render(&out);
        metrics_lua(&out);
        gw_conn_respond(c, 200, "text/plain; version=0.0.4; charset=utf-8",
                        out.data ? out.data : "", out.len, 0);
        gw_buf_free(&out);
        return;
    }
    if (plen > 18 && memcmp(url, "/upstreams/", 11) == 0 &&
        memcmp(url + plen - 7, "/health", 7) == 0) {
        upstream_health(c, url + 11, plen - 18);
        return;
    }
    if (plen > 18 && memcmp(url, "/upstreams/", 11) == 0 && memmem(url, plen, "/targets/", 9) &&
        ((plen > 8 && memcmp(url + plen - 8, "/healthy", 8) == 0) ||
         (plen > 10 && memcmp(url + plen - 10, "/unhealthy", 10) == 0))) {
        if (strcmp(method, "PUT") != 0 && strcmp(method, "POST") != 0) {
            gw_conn_error(c, 405, "Method not allowed");
            return;
        }
        target_set_health(c, url, plen);
        return;
    }
    if (path_is(url, plen, "/dashboard") || path_is(url, plen, "/dashboard/")) {
        dashboard(c);
        return;
    }
    if (get && (path_is(url, plen, "/debug/routes") || path_is(url, plen, "/debug/routes/"))) {
        debug_list(c);
        return;
    }
    if (r->has_body) {
        llhttp_t *p = &c->parser;
        if ((p->flags & F_CONTENT_LENGTH) && p->content_length > GW_ADMIN_MAX_BODY) {
            gw_conn_error(c, 413, "Request size limit exceeded (the admin API reads up to 64 MB)");
            return;
        }
        int rc = gw_conn_read_body(c);
        if (rc == GW_AGAIN)
            return; /* gw_admin_body_done follows */
        gw_admin_body_done(c, rc);
        return;
    }
    lua_handle(c);
}
