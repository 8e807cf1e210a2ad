/* The upstream side of a request: pick an address, take a pooled connection
 * or connect, send the rewritten head and stream the body, parse the
 * response head, rewrite it for the client and stream the body back.
 *
 * Bodies pass through with their own framing (Content-Length or chunked):
 * llhttp only finds where a message ends. Each direction stops reading from
 * its source while the destination has GW_HIGH_WATER bytes queued. */
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "gw/buf.h"
#include "gw/config.h"
#include "gw/conn.h"
#include "gw/dns.h"
#include "gw/http.h"
#include "gw/log.h"
#include "gw/router.h"
#include "gw/upstream.h"
#include "gw/worker-t.h"

#define MSG_502 "An invalid response was received from the upstream server"
#define MSG_504 "The upstream server is timing out"
#define MAX_UPSTREAM_HEAD (64 * 1024)
#define MAX_STALE_RETRIES 2

static llhttp_settings_t resp_settings;
static int resp_settings_ready;

static void up_io_cb(struct ev_loop *loop, ev_io *w, int revents);
static void up_timer_cb(struct ev_loop *loop, ev_timer *w, int revents);
static void up_update(struct gw_upstream *u);
static int up_flush(struct gw_upstream *u);
static void proxy_connect(struct gw_conn *c);

static int on_resp_headers_complete(llhttp_t *p)
{
    struct gw_upstream *u = gw_container_of(p->data, struct gw_upstream, hctx);
    u->head_done = 1;
    int st = p->status_code;
    if (st >= 100 && st < 200 && st != 101) {
        u->informational = 1;
        return 0;
    }
    if (u->client && u->client->req && u->client->req->is_head)
        return 1; /* no body follows; the parser pauses at message complete */
    if (st == 101 || st == 204 || st == 304 ||
        ((p->flags & F_CONTENT_LENGTH) && p->content_length == 0 && !(p->flags & F_CHUNKED)))
        return 0; /* no body: the parser pauses at message complete */
    return HPE_PAUSED;
}

static int on_resp_message_complete(llhttp_t *p)
{
    struct gw_upstream *u = gw_container_of(p->data, struct gw_upstream, hctx);
    u->msg_done = 1;
    return HPE_PAUSED;
}

int gw_proxy_wants_client_read(const struct gw_conn *c)
{
    const struct gw_req *r = c->req;
    if (c->state == GW_C_TUNNEL)
        return r && r->up && gw_buf_pending(&r->up->out) < GW_HIGH_WATER;
    if (r == NULL || r->body_done || r->up == NULL)
        return 0;
    return gw_buf_pending(&r->up->out) < GW_HIGH_WATER;
}

/* Fails the request with a gateway error, or closes the client connection
 * when the response has already started. */
static void proxy_fail(struct gw_conn *c, int status, const char *msg)
{
    struct gw_req *r = c->req;
    if (r->up) {
        gw_upstream_free(r->up);
        r->up = NULL;
    }
    if (r->resp_started) {
        gw_conn_close(c);
        return;
    }
    gw_conn_error(c, status, msg);
}

void gw_proxy_abort(struct gw_conn *c)
{
    struct gw_req *r = c->req;
    if (r == NULL)
        return;
    gw_list_remove(&r->dns_link);
    if (r->up) {
        gw_upstream_free(r->up);
        r->up = NULL;
    }
}

void gw_dns_ready_cb(struct gw_list *link)
{
    struct gw_req *r = gw_container_of(link, struct gw_req, dns_link);
    struct gw_list *l;
    /* find the connection that owns r */
    for (l = gw_worker->conns.next; l != &gw_worker->conns; l = l->next) {
        struct gw_conn *c = gw_container_of(l, struct gw_conn, link);
        if (c->req == r) {
            proxy_connect(c);
            return;
        }
    }
}

/* Appends the request head as the upstream must see it. */
static int build_head(struct gw_conn *c, struct gw_upstream *u)
{
    struct gw_req *r = c->req;
    const struct gw_route *rt = r->route;
    const struct gw_service *s = r->service;
    const char *base = c->in.data;
    struct gw_buf *b = &u->out;
    const char *method = llhttp_method_name((llhttp_method_t)c->parser.method);
    size_t need = r->head_len + s->path_len + r->npath_len + 512 + strlen(c->peer_ip) * 2;
    if (gw_buf_reserve(b, need, 0) != 0)
        return -1;

    gw_buf_appends(b, method);
    gw_buf_append(b, " ", 1);
    long n = gw_upstream_path(s->path, s->path_len, r->npath, r->npath_len,
                              rt->strip_path ? r->match.strip_len : 0, rt->path_v1,
                              b->data + b->len, b->cap - b->len);
    if (n < 0)
        return -1;
    b->len += (size_t)n;
    gw_buf_append(b, base + r->url_off + r->path_len, r->url_len - r->path_len); /* ?query */
    gw_buf_appends(b, r->http_minor == 0 ? " HTTP/1.0\r\nHost: " : " HTTP/1.1\r\nHost: ");
    struct gw_str host = {"", 0};
    if (r->host_hdr >= 0) {
        host.p = base + r->head.hdr[r->host_hdr].value;
        host.n = r->head.hdr[r->host_hdr].value_len;
    }
    if (rt->preserve_host && host.n)
        gw_buf_append(b, host.p, host.n);
    else
        gw_buf_append(b, s->host_header, s->host_header_len);
    gw_buf_append(b, "\r\n", 2);

    /* tokens of Connection name further hop-by-hop headers */
    struct gw_str ctok[8];
    int nctok = 0;
    struct gw_str xff[8];
    int nxff = 0;
    for (int i = 0; i < r->head.nhdr; i++) {
        const struct gw_hdr *h = &r->head.hdr[i];
        const char *v = base + h->value;
        if (GW_NAME_IS(base + h->name, h->name_len, "connection")) {
            size_t k = 0;
            while (k < h->value_len && nctok < 8) {
                while (k < h->value_len && (v[k] == ' ' || v[k] == ','))
                    k++;
                size_t st = k;
                while (k < h->value_len && v[k] != ',' && v[k] != ' ')
                    k++;
                if (k > st)
                    ctok[nctok++] = (struct gw_str){v + st, k - st};
            }
        } else if (GW_NAME_IS(base + h->name, h->name_len, "x-forwarded-for") && nxff < 8) {
            xff[nxff++] = (struct gw_str){v, h->value_len};
        }
    }
    for (int i = 0; i < r->head.nhdr; i++) {
        const struct gw_hdr *h = &r->head.hdr[i];
        const char *name = base + h->name;
        size_t nl = h->name_len;
        if (gw_http_hop_by_hop(name, nl)) {
            if (!(r->upgrade && GW_NAME_IS(name, nl, "upgrade")))
                continue;
        }
        if (nl >= 9 && (name[0] == 'x' || name[0] == 'X') && name[1] == '-') {
            if ((nl > 12 && gw_http_name_is(name, 12, "x-forwarded-", 12)) ||
                GW_NAME_IS(name, nl, "x-real-ip") || GW_NAME_IS(name, nl, "x-request-id"))
                continue;
        }
        if (i == r->host_hdr || GW_NAME_IS(name, nl, "expect"))
            continue;
        int named = 0;
        for (int t = 0; t < nctok; t++)
            if (gw_http_name_is(name, nl, ctok[t].p, ctok[t].n) ||
                (ctok[t].n == nl && strncasecmp(name, ctok[t].p, nl) == 0))
                named = 1;
        if (named && !(r->upgrade && GW_NAME_IS(name, nl, "upgrade")))
            continue;
        gw_buf_append(b, name, nl);
        gw_buf_append(b, ": ", 2);
        gw_buf_append(b, base + h->value, h->value_len);
        gw_buf_append(b, "\r\n", 2);
    }
    gw_buf_appends(b, "X-Forwarded-For: ");
    for (int i = 0; i < nxff; i++) {
        gw_buf_append(b, xff[i].p, xff[i].n);
        gw_buf_append(b, ", ", 2);
    }
    gw_buf_appends(b, c->peer_ip);
    gw_buf_appends(b, "\r\nX-Forwarded-Proto: http\r\nX-Forwarded-Host: ");
    const char *colon = host.n && host.p[0] != '[' ? memchr(host.p, ':', host.n) : NULL;
    if (host.n && host.p[0] == '[') {
        const char *rb = memchr(host.p, ']', host.n);
        gw_buf_append(b, host.p, rb ? (size_t)(rb - host.p) + 1 : host.n);
    } else {
        gw_buf_append(b, host.p, colon ? (size_t)(colon - host.p) : host.n);
    }
    gw_buf_appends(b, "\r\nX-Forwarded-Port: ");
    gw_buf_append_u64(b, (uint64_t)c->listen->port);
    gw_buf_appends(b, "\r\nX-Forwarded-Path: ");
    gw_buf_append(b, base + r->url_off, r->path_len);
    gw_buf_appends(b, "\r\nX-Real-IP: ");
    gw_buf_appends(b, c->peer_ip);
    gw_buf_appends(b, "\r\nX-Request-ID: ");
    gw_buf_append(b, r->id, GW_REQUEST_ID_LEN);
    if (r->upgrade)
        gw_buf_appends(b, "\r\nConnection: upgrade");
    else if (r->http_minor == 0)
        gw_buf_appends(b, "\r\nConnection: close");
    return gw_buf_append(b, "\r\n\r\n", 4);
}

/* Moves request body bytes that arrived from the client to the upstream
 * output. Returns GW_ERROR when the request failed (and was answered). */
static int forward_body(struct gw_conn *c)
{
    struct gw_req *r = c->req;
    struct gw_upstream *u = r->up;
    if (c->state == GW_C_TUNNEL) {
        size_t n = c->in.len - c->parsed;
        if (n && gw_buf_append(&u->out, c->in.data + c->parsed, n) != 0)
            return GW_ERROR;
        c->in.len = c->parsed;
        return GW_OK;
    }
    if (r->body_done || c->parsed >= c->in.len)
        return GW_OK;
    const char *start = c->in.data + c->parsed;
    size_t avail = c->in.len - c->parsed;
    llhttp_errno_t e = llhttp_execute(&c->parser, start, avail);
    size_t used = avail;
    if (e == HPE_PAUSED) {
        used = (size_t)(llhttp_get_error_pos(&c->parser) - start);
        llhttp_resume(&c->parser);
    } else if (e != HPE_OK) {
        GW_LOG(GW_LOG_INFO, "client %s sent a bad request body: %s", c->peer_ip,
               llhttp_errno_name(e));
        proxy_fail(c, 400, e == HPE_INVALID_CHUNK_SIZE ? "Bad request: invalid chunk size"
                                                       : "Bad request");
        return GW_ERROR;
    }
    r->body_bytes += used;
    if (gw_settings.max_body_size && r->body_bytes > gw_settings.max_body_size + 64) {
        proxy_fail(c, 413, "Request size limit exceeded");
        return GW_ERROR;
    }
    if (gw_buf_append(&u->out, start, used) != 0)
        return GW_ERROR;
    memmove((char *)start, start + used, avail - used);
    c->in.len -= used;
    return GW_OK;
}

static void proxy_send(struct gw_conn *c)
{
    struct gw_upstream *u = c->req->up;
    if (forward_body(c) != GW_OK)
        return;
    if (u->state == GW_U_ACTIVE && up_flush(u) != GW_OK)
        return;
    up_update(u);
    gw_conn_update(c);
}

static void proxy_connect(struct gw_conn *c)
{
    struct gw_req *r = c->req;
    struct gw_service *s = r->service;
    struct sockaddr_storage sa;
    socklen_t salen;
    if (s->dns == NULL && (s->dns = gw_dns_get(s->host)) == NULL) {
        proxy_fail(c, 500, "An unexpected error occurred");
        return;
    }
    int rc = gw_dns_addr(s->dns, s->port, &sa, &salen);
    if (rc == GW_AGAIN) {
        gw_dns_wait(s->dns, &r->dns_link);
        return;
    }
    if (rc != GW_OK) {
        proxy_fail(c, 503, "name resolution failed");
        return;
    }
    struct gw_upstream *u = NULL;
    if (r->tries == 0)
        u = gw_upstream_pool_get((struct sockaddr *)&sa, salen);
    if (u == NULL) {
        u = gw_upstream_connect((struct sockaddr *)&sa, salen);
        if (u == NULL) {
            gw_log(GW_LOG_ERR, "connect() to %s:%d failed: %s", s->host, s->port,
                   strerror(errno));
            proxy_fail(c, 502, MSG_502);
            return;
        }
    }
    r->tries++;
    r->up = u;
    u->client = c;
    u->requests++;
    u->head_done = u->msg_done = u->informational = 0;
    u->resp_bytes = 0;
    u->parsed = 0;
    u->status_off = u->status_len = 0;
    u->head.nhdr = 0;
    u->head.parsing_value = 0;
    if (!resp_settings_ready) {
        gw_http_settings_init(&resp_settings);
        resp_settings_ready = 1;
    }
    llhttp_init(&u->parser, HTTP_RESPONSE, &resp_settings);
    u->parser.data = &u->hctx;
    u->hctx.head = &u->head;
    u->hctx.status_off = &u->status_off;
    u->hctx.status_len = &u->status_len;
    u->hctx.url_off = u->hctx.url_len = NULL;
    u->hctx.on_headers_complete = on_resp_headers_complete;
    u->hctx.on_message_complete = on_resp_message_complete;
    ev_set_cb(&u->io, up_io_cb);
    ev_set_cb(&u->timer, up_timer_cb);
    if (r->t_upstream_start == 0)
        r->t_upstream_start = ev_now(gw_worker->loop);
    if (build_head(c, u) != 0) {
        proxy_fail(c, 500, "An unexpected error occurred");
        return;
    }
    proxy_send(c);
}

void gw_proxy_start(struct gw_conn *c)
{
    struct gw_req *r = c->req;
    if (r->expect_continue && r->has_body && !r->body_done && r->http_minor >= 1)
        gw_buf_appends(&c->out, "HTTP/1.1 100 Continue\r\n\r\n");
    proxy_connect(c);
}

void gw_proxy_on_client_data(struct gw_conn *c)
{
    if (c->req && c->req->up)
        proxy_send(c);
}

void gw_proxy_on_client_drained(struct gw_conn *c)
{
    if (c->req && c->req->up)
        up_update(c->req->up);
}

static void up_update(struct gw_upstream *u)
{
    struct gw_conn *c = u->client;
    struct ev_loop *loop = gw_worker->loop;
    const struct gw_service *s = c->req->service;
    int ev = 0;
    double after;
    if (u->state == GW_U_CONNECTING) {
        ev = EV_WRITE;
        after = s->connect_timeout / 1000.0;
    } else {
        if (gw_buf_pending(&c->out) < GW_HIGH_WATER)
            ev |= EV_READ;
        if (gw_buf_pending(&u->out)) {
            ev |= EV_WRITE;
            after = s->write_timeout / 1000.0;
        } else {
            after = s->read_timeout / 1000.0;
        }
    }
    if (ev != u->events) {
        ev_io_stop(loop, &u->io);
        ev_io_set(&u->io, u->fd, ev);
        if (ev)
            ev_io_start(loop, &u->io);
        u->events = ev;
    }
    if (!(ev & EV_READ) && !(ev & EV_WRITE)) {
        ev_timer_stop(loop, &u->timer); /* waiting for the client to drain */
        return;
    }
    u->timer.repeat = after;
    ev_timer_again(loop, &u->timer);
}

/* Whether a failed try may go again on a fresh connection: only a reused
 * connection that the peer closed before answering, for a request whose
 * bytes can all be sent again. */
static int retryable(struct gw_conn *c, struct gw_upstream *u)
{
    struct gw_req *r = c->req;
    return u->reused && u->resp_bytes == 0 && !r->has_body && !r->upgrade &&
           r->tries <= MAX_STALE_RETRIES;
}

static void up_failed(struct gw_upstream *u, int status, const char *msg, const char *what)
{
    struct gw_conn *c = u->client;
    struct gw_req *r = c->req;
    if (retryable(c, u)) {
        GW_LOG(GW_LOG_INFO, "pooled upstream connection closed (%s), retrying", what);
        gw_upstream_free(u);
        r->up = NULL;
        proxy_connect(c);
        return;
    }
    gw_log(GW_LOG_ERR, "upstream %s:%d %s (request %s)", r->service->host, r->service->port,
           what, r->id);
    proxy_fail(c, status, msg);
}

static int up_flush(struct gw_upstream *u)
{
    struct gw_buf *b = &u->out;
    while (gw_buf_pending(b)) {
        ssize_t n = send(u->fd, b->data + b->off, gw_buf_pending(b), MSG_NOSIGNAL);
        if (n == -1) {
            if (errno == EAGAIN || errno == EWOULDBLOCK)
                break;
            if (errno == EINTR)
                continue;
            char what[128];
            snprintf(what, sizeof(what), "send() failed: %s", strerror(errno));
            up_failed(u, 502, MSG_502, what);
            return GW_ERROR;
        }
        gw_buf_consume(b, (size_t)n);
    }
    return GW_OK;
}

/* Appends the client's response head, rewritten from the upstream's. */
static int build_resp_head(struct gw_conn *c, struct gw_upstream *u)
{
    struct gw_req *r = c->req;
    const char *base = u->in.data + u->in.off;
    struct gw_buf *b = &c->out;
    int status = u->parser.status_code;
    int tunnel = status == 101 && r->upgrade;
    if (llhttp_message_needs_eof(&u->parser) || !r->keepalive)
        c->closing = 1; /* the body ends when the upstream closes */
    if (gw_buf_reserve(b, u->head_len + 64, 0) != 0)
        return -1;
    gw_buf_appends(b, "HTTP/1.1 ");
    gw_buf_append_u64(b, (uint64_t)status);
    gw_buf_append(b, " ", 1);
    if (u->status_len)
        gw_buf_append(b, base + u->status_off, u->status_len);
    else
        gw_buf_appends(b, gw_http_reason(status));
    gw_buf_append(b, "\r\n", 2);
    for (int i = 0; i < u->head.nhdr; i++) {
        const struct gw_hdr *h = &u->head.hdr[i];
        const char *name = base + h->name;
        if (gw_http_hop_by_hop(name, h->name_len) &&
            !(tunnel && GW_NAME_IS(name, h->name_len, "upgrade")))
            continue;
        gw_buf_append(b, name, h->name_len);
        gw_buf_append(b, ": ", 2);
        gw_buf_append(b, base + h->value, h->value_len);
        gw_buf_append(b, "\r\n", 2);
    }
    if (tunnel)
        gw_buf_appends(b, "Connection: upgrade\r\n");
    else if (c->closing)
        gw_buf_appends(b, "Connection: close\r\n");
    else if (r->http_minor == 0)
        gw_buf_appends(b, "Connection: keep-alive\r\n");
    return gw_buf_append(b, "\r\n", 2);
}

static void start_tunnel(struct gw_conn *c, struct gw_upstream *u)
{
    c->state = GW_C_TUNNEL;
    u->reusable = 0;
    /* bytes the client sent after its head belong to the new protocol */
    c->parsed = c->req->head_len;
}

/* Response complete: the upstream connection goes back to the pool or is
 * closed; the client connection finishes the request once flushed. */
static void response_complete(struct gw_conn *c, struct gw_upstream *u)
{
    struct gw_req *r = c->req;
    int keep = llhttp_should_keep_alive(&u->parser) && r->body_done &&
               gw_buf_pending(&u->in) == 0 && gw_buf_pending(&u->out) == 0;
    r->up = NULL;
    if (keep)
        gw_upstream_keep(u);
    else
        gw_upstream_free(u);
    if (!r->body_done)
        c->closing = 1; /* the upstream answered before the body ended */
    gw_conn_response_done(c);
}

/* Parses what the upstream sent. Returns GW_ERROR when the request or the
 * connection ended. */
static int up_parse(struct gw_upstream *u)
{
    struct gw_conn *c = u->client;
    struct gw_req *r = c->req;
    while (gw_buf_pending(&u->in)) {
        const char *start = u->in.data + u->in.off;
        size_t avail = gw_buf_pending(&u->in);
        if (c->state == GW_C_TUNNEL) {
            if (gw_buf_append(&c->out, start, avail) != 0)
                return GW_ERROR;
            gw_buf_consume(&u->in, avail);
            break;
        }
        if (!u->head_done || u->informational) {
            u->hctx.base = start;
            llhttp_errno_t e = llhttp_execute(&u->parser, start + u->parsed, avail - u->parsed);
            if (e == HPE_OK) {
                u->parsed = avail;
                if (avail > MAX_UPSTREAM_HEAD) {
                    up_failed(u, 502, MSG_502, "sent a head that is too large");
                    return GW_ERROR;
                }
                return GW_OK;
            }
            if (e != HPE_PAUSED && e != HPE_PAUSED_UPGRADE) {
                char what[160];
                snprintf(what, sizeof(what), "sent an invalid response: %s",
                         llhttp_errno_name(e));
                up_failed(u, 502, MSG_502, what);
                return GW_ERROR;
            }
            size_t pos = (size_t)(llhttp_get_error_pos(&u->parser) - start);
            llhttp_resume(&u->parser);
            if (u->informational) { /* 1xx: not for the client */
                gw_buf_consume(&u->in, pos);
                u->head_done = u->msg_done = u->informational = 0;
                u->head.nhdr = 0;
                u->status_len = 0;
                u->parsed = 0;
                continue;
            }
            u->head_len = (uint32_t)pos;
            r->upstream_status = u->parser.status_code;
            r->status = r->upstream_status;
            r->t_upstream_first = ev_now(gw_worker->loop);
            if (build_resp_head(c, u) != 0)
                return GW_ERROR;
            r->resp_started = 1;
            gw_buf_consume(&u->in, pos);
            u->parsed = 0;
            if (r->upstream_status == 101 && r->upgrade) {
                start_tunnel(c, u);
                if (forward_body(c) != GW_OK)
                    return GW_ERROR;
                continue;
            }
            if (u->msg_done) {
                response_complete(c, u);
                return GW_ERROR; /* the request is over; callers stop here */
            }
            continue;
        }
        /* body */
        llhttp_errno_t e = llhttp_execute(&u->parser, start, avail);
        size_t used = avail;
        if (e == HPE_PAUSED) {
            used = (size_t)(llhttp_get_error_pos(&u->parser) - start);
            llhttp_resume(&u->parser);
        } else if (e != HPE_OK) {
            gw_log(GW_LOG_ERR, "upstream sent an invalid body: %s (request %s)",
                   llhttp_errno_name(e), r->id);
            gw_conn_close(c);
            return GW_ERROR;
        }
        if (gw_buf_append(&c->out, start, used) != 0)
            return GW_ERROR;
        gw_buf_consume(&u->in, used);
        if (u->msg_done) {
            response_complete(c, u);
            return GW_ERROR;
        }
    }
    return GW_OK;
}

static void up_read(struct gw_upstream *u)
{
    struct gw_conn *c = u->client;
    for (int rounds = 0; rounds < 4; rounds++) {
        if (gw_buf_pending(&c->out) >= GW_HIGH_WATER)
            break;
        if (gw_buf_reserve(&u->in, 4096, 0) != 0) {
            gw_conn_close(c);
            return;
        }
        ssize_t n = read(u->fd, u->in.data + u->in.len, u->in.cap - u->in.len);
        if (n == -1) {
            if (errno == EINTR)
                continue;
            if (errno == EAGAIN || errno == EWOULDBLOCK)
                break;
            char what[128];
            snprintf(what, sizeof(what), "read() failed: %s", strerror(errno));
            if (!c->req->resp_started) {
                up_failed(u, 502, MSG_502, what);
            } else {
                gw_log(GW_LOG_ERR, "upstream %s (request %s)", what, c->req->id);
                gw_conn_close(c);
            }
            return;
        }
        if (n == 0) {
            if (c->state == GW_C_TUNNEL) {
                c->state = GW_C_CLOSING;
                c->req->up = NULL;
                gw_upstream_free(u);
                if (gw_buf_pending(&c->out) == 0)
                    gw_conn_close(c);
                else
                    gw_conn_update(c);
                return;
            }
            if (!u->head_done) {
                up_failed(u, 502, MSG_502, "closed the connection before answering");
                return;
            }
            /* a body delimited by the close ends here */
            if (llhttp_finish(&u->parser) == HPE_OK && u->msg_done) {
                u->parser.flags |= 0; /* not reusable: it closed */
                c->req->up = NULL;
                gw_upstream_free(u);
                gw_conn_response_done(c);
                return;
            }
            gw_log(GW_LOG_ERR, "upstream closed the connection mid-response (request %s)",
                   c->req->id);
            gw_conn_close(c);
            return;
        }
        u->in.len += (size_t)n;
        u->resp_bytes += (uint64_t)n;
        if (up_parse(u) != GW_OK)
            return;
        if ((size_t)n < 4096)
            break;
    }
    if (gw_conn_flush(c) != GW_OK)
        return;
    if (c->req && c->req->up == u) {
        up_update(u);
        gw_conn_update(c);
    }
}

static void up_io_cb(struct ev_loop *loop, ev_io *w, int revents)
{
    struct gw_upstream *u = gw_container_of(w, struct gw_upstream, io);
    struct gw_conn *c = u->client;
    if (u->state == GW_U_CONNECTING) {
        int err = 0;
        socklen_t len = sizeof(err);
        if (getsockopt(u->fd, SOL_SOCKET, SO_ERROR, &err, &len) == -1)
            err = errno;
        if (err) {
            char what[128];
            snprintf(what, sizeof(what), "connect() failed: %s", strerror(err));
            up_failed(u, 502, MSG_502, what);
            return;
        }
        u->state = GW_U_ACTIVE;
        revents |= EV_WRITE;
    }
    if (revents & EV_WRITE) {
        if (up_flush(u) != GW_OK)
            return;
        if (gw_buf_pending(&u->out) < GW_HIGH_WATER && c->req->up == u)
            gw_conn_update(c); /* the client may send more body now */
    }
    if (revents & EV_READ) {
        up_read(u);
        return;
    }
    up_update(u);
}

static void up_timer_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
    struct gw_upstream *u = gw_container_of(w, struct gw_upstream, timer);
    struct gw_conn *c = u->client;
    const char *what = u->state == GW_U_CONNECTING ? "timed out connecting"
                       : gw_buf_pending(&u->out) ? "timed out receiving the request"
                                                 : "timed out sending the response";
    if (c->state == GW_C_TUNNEL) {
        gw_conn_close(c);
        return;
    }
    if (c->req->resp_started) {
        gw_log(GW_LOG_ERR, "upstream %s (request %s)", what, c->req->id);
        gw_conn_close(c);
        return;
    }
    u->reused = 0; /* a timeout is never retried */
    up_failed(u, 504, MSG_504, what);
}
