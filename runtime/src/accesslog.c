#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "gw/accesslog.h"
#include "gw/admin.h"
#include "gw/buf.h"
#include "gw/config-t.h"
#include "gw/config-t.h"
#include "gw/http.h"
#include "gw/log.h"
#include "gw/settings-t.h"
#include "gw/worker-t.h"

#define FLUSH_AT (32 * 1024)

int gw_access_log_open(const char *spec)
{
    struct gw_worker *w = gw_worker;
    if (spec == NULL || strcmp(spec, "off") == 0) {
        w->access_fd = -1;
        return 0;
    }
    if (strcmp(spec, "stdout") == 0) {
        w->access_fd = 1;
        return 0;
    }
    w->access_fd = open(spec, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
    if (w->access_fd == -1) {
        gw_log(GW_LOG_ERR, "open() \"%s\" failed: %s", spec, strerror(errno));
        return -1;
    }
    return 0;
}

void gw_access_log_flush(void)
{
    struct gw_worker *w = gw_worker;
    struct gw_buf *b = &w->access_buf;
    while (gw_buf_pending(b)) {
        ssize_t n = write(w->access_fd, b->data + b->off, gw_buf_pending(b));
        if (n == -1) {
            if (errno == EINTR)
                continue;
            break; /* a full disk or closed pipe must not stop the worker */
        }
        gw_buf_consume(b, (size_t)n);
    }
    b->off = b->len = 0;
}

static void str_field(struct gw_buf *b, const char *key, const char *v)
{
    gw_buf_appends(b, key);
    if (v == NULL) {
        gw_buf_appends(b, "null");
        return;
    }
    gw_buf_append(b, "\"", 1);
    gw_json_escape(b, v, strlen(v));
    gw_buf_append(b, "\"", 1);
}

static void ms_field(struct gw_buf *b, const char *key, double sec)
{
    gw_buf_appends(b, key);
    if (sec < 0)
        sec = 0;
    gw_buf_append_u64(b, (uint64_t)(sec * 1000.0 + 0.5));
}

void gw_access_log(struct gw_conn *c, struct gw_req *r)
{
    struct gw_worker *w = gw_worker;
    if (c->listen->admin) /* admin calls are not proxy traffic */
        return;
    /* POST /debug/routes/{route}: nothing to pay while no switch is on */
    int debug = r->route && gw_admin_debug_on(r->route->id, r->t_start);
    if (debug)
        gw_admin_debug_log(c, r);
    if (w->access_fd < 0)
        return;
    struct gw_buf *b = &w->access_buf;
    /* the date part is formatted once a second */
    static time_t ts_sec = -1;
    static char ts[32];
    double now = r->t_start;
    time_t sec = (time_t)now;
    if (sec != ts_sec) {
        struct tm tm;
        gmtime_r(&sec, &tm);
        strftime(ts, sizeof(ts), "%Y-%m-%dT%H:%M:%S.", &tm);
        ts_sec = sec;
    }
    int ms = (int)((now - (double)sec) * 1000) % 1000;
    char msz[5] = {(char)('0' + ms / 100), (char)('0' + ms / 10 % 10), (char)('0' + ms % 10), 'Z',
                   '"'};

    gw_buf_appends(b, "{\"time\":\"");
    gw_buf_append(b, ts, 20);
    gw_buf_append(b, msz, 5);
    gw_buf_appends(b, ",\"request_id\":\"");
    gw_buf_append(b, r->id, GW_REQUEST_ID_LEN);
    gw_buf_appends(b, "\",\"client_ip\":\"");
    gw_buf_appends(b, c->peer_ip);
    gw_buf_appends(b, "\",\"method\":\"");
    gw_buf_appends(b, llhttp_method_name((llhttp_method_t)c->parser.method));
    gw_buf_appends(b, "\",\"path\":\"");
    if (r->url_len && c->in.data)
        gw_json_escape(b, c->in.data + r->url_off, r->path_len ? r->path_len : r->url_len);
    gw_buf_appends(b, "\",\"status\":");
    gw_buf_append_u64(b, (uint64_t)r->status);
    gw_buf_appends(b, ",\"bytes_in\":");
    gw_buf_append_u64(b, (uint64_t)r->head_len + r->body_bytes);
    gw_buf_appends(b, ",\"bytes_out\":");
    gw_buf_append_u64(b, r->bytes_out);
    double end = r->t_end ? r->t_end : r->t_start;
    ms_field(b, ",\"latency_ms\":{\"total\":", end - r->t_start);
    double up = r->t_upstream_start && r->t_upstream_first ? r->t_upstream_first - r->t_upstream_start
                                                           : 0;
    ms_field(b, ",\"upstream\":", up);
    ms_field(b, ",\"gateway\":", r->t_upstream_start ? r->t_upstream_start - r->t_start
                                                     : end - r->t_start);
    gw_buf_appends(b, "}");
    str_field(b, ",\"route\":", r->route ? (r->route->name ? r->route->name : r->route->id) : NULL);
    str_field(b, ",\"service\":", r->service ? r->service->name : NULL);
    gw_buf_appends(b, ",\"upstream_status\":");
    if (r->upstream_status)
        gw_buf_append_u64(b, (uint64_t)r->upstream_status);
    else
        gw_buf_appends(b, "null");
    if (r->has_grpc_status) {
        gw_buf_appends(b, ",\"grpc_status\":");
        gw_buf_append_u64(b, (uint64_t)r->grpc_status);
    }
    gw_buf_appends(b, ",\"tries\":");
    gw_buf_append_u64(b, (uint64_t)r->tries);
    if (r->service && r->service->balancer >= 0 && r->tries > 0) {
        /* each try: the target and its status (0: no answer) */
        const struct gw_balancer *bl = &r->config->balancers[r->service->balancer];
        gw_buf_appends(b, ",\"upstream_tries\":[");
        for (int i = 0; i < r->tries && i < 8; i++) {
            int t = r->try_target[i];
            gw_buf_appends(b, i ? ",{\"target\":\"" : "{\"target\":\"");
            if (t >= 0 && t < bl->ntargets)
                gw_json_escape(b, bl->targets[t].name, strlen(bl->targets[t].name));
            gw_buf_appends(b, "\",\"status\":");
            gw_buf_append_u64(b, (uint64_t)(r->try_status[i] > 0 ? r->try_status[i] : 0));
            gw_buf_append(b, "}", 1);
        }
        gw_buf_append(b, "]", 1);
    }
    str_field(b, ",\"consumer\":", r->consumer_id);
    if (debug)
        gw_admin_debug_fields(b, c, r);
    gw_buf_appends(b, "}\n");
    if (gw_buf_pending(b) >= FLUSH_AT)
        gw_access_log_flush();
}
