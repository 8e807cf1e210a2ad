/* Client connections: accept, read and parse request heads, route, hand the
 * request to the proxy, write responses, keepalive and pipelining.
 *
 * A connection owns one request at a time (gw_req, from a free list). The
 * head stays at the start of conn->in for the whole request; body bytes that
 * follow it are forwarded by the proxy and removed; bytes past the end of
 * the request (pipelining) wait there for the next request. */
#include <arpa/inet.h>
#include <errno.h>
#include <openssl/ssl.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "gw/accesslog.h"
#include "gw/admin.h"
#include "gw/buf.h"
#include "gw/compress.h"
#include "gw/config.h"
#include "gw/ffi.h"
#include "gw/guard.h"
#include "gw/h2.h"
#include "gw/conn.h"
#include "gw/hlist.h"
#include "gw/http.h"
#include "gw/log.h"
#include "gw/metrics.h"
#include "gw/lua_req.h"
#include "gw/pool.h"
#include "gw/memo.h"
#include "gw/router.h"
#include "gw/stats.h"
#include "gw/tls.h"
#include "gw/version.h"
#include "gw/worker-t.h"

static llhttp_settings_t req_settings;
static int req_settings_ready;

static void conn_io_cb(struct ev_loop *loop, ev_io *w, int revents);
static void conn_timer_cb(struct ev_loop *loop, ev_timer *w, int revents);
static void conn_parse_head(struct gw_conn *c);

static int on_req_headers_complete(llhttp_t *p)
{
    return HPE_PAUSED;
}

/* A bodyless request's message completes only when the parser runs again,
 * at the start of the next request (head_len still 0): no pause then. */
static int on_req_message_complete(llhttp_t *p)
{
    struct gw_conn *c = gw_container_of(p->data, struct gw_conn, hctx);
    if (c->req == NULL || c->req->head_len == 0)
        return 0;
    c->req->body_done = 1;
    return HPE_PAUSED;
}

static struct gw_req *req_new(struct gw_conn *c)
{
    struct gw_worker *w = gw_worker;
    struct gw_req *r;
    if (!gw_list_empty(&w->free_reqs)) {
        struct gw_list *l = w->free_reqs.next;
        gw_list_remove(l);
        r = gw_container_of(l, struct gw_req, link);
    } else {
        r = malloc(sizeof(*r));
        if (r == NULL)
            return NULL;
    }
    /* everything but the header array (nhdr bounds it) and the pool's first
     * block (raw memory) */
    memset(r, 0, offsetof(struct gw_req, head.hdr));
    size_t after_head = offsetof(struct gw_req, head) + sizeof(r->head);
    memset((char *)r + after_head, 0, offsetof(struct gw_req, pool_first) - after_head);
    gw_list_init(&r->link);
    gw_list_init(&r->dns_link);
    r->host_hdr = -1;
    r->t_start = ev_now(w->loop);
    gw_request_id(r->id, w->rng);
    r->conn = c;
    r->target = -1;
    gw_pool_init(&r->pool, r->pool_first, sizeof(r->pool_first));
    c->hctx.head = &r->head;
    c->hctx.bad_trailer = 0;
    c->hctx.trailer_value_end = NULL;
    c->hctx.trailer_named = 0;
    c->hctx.url_off = &r->url_off;
    c->hctx.url_len = &r->url_len;
    c->req = r;
    return r;
}

static void req_free(struct gw_conn *c)
{
    struct gw_req *r = c->req;
    if (r == NULL)
        return;
    gw_list_remove(&r->dns_link);
    gw_lua_release(r);
    if (r->config)
        gw_config_release(&r->config);
    gw_buf_free(&r->scratch);
    gw_buf_free(&r->body_buf);
    gw_buf_free(&r->resp_body);
    if (r->trailers.data) /* rare (gRPC through body_filter plugins): no call */
        gw_buf_free(&r->trailers);
    gw_buf_free(&r->chunk_out);
    gw_compress_free(&r->zc);
    gw_buf_free(&r->zout);
    gw_pool_reset(&r->pool);
    c->hctx.on_body = NULL;
    c->req = NULL;
    c->hctx.head = NULL;
    gw_list_insert_head(&gw_worker->free_reqs, &r->link);
}

/* The common part of gw_conn_adopt and gw_conn_adopt_stream: tls says
 * whether a TLS session starts on fd. The connection, or NULL (fd closed). */
static struct gw_conn *conn_new(int fd, const struct gw_listen *ls,
                                const struct sockaddr_storage *sa, int tls)
{
    struct gw_worker *wk = gw_worker;
    struct ev_loop *loop = wk->loop;
    if (!req_settings_ready) {
        gw_http_settings_init(&req_settings);
        req_settings_ready = 1;
    }
    struct gw_conn *c = calloc(1, sizeof(*c));
    if (c == NULL) {
        gw_log(GW_LOG_ERR, "out of memory accepting a connection");
        if (fd >= 0)
            close(fd);
        return NULL;
    }
    c->fd = fd;
    c->listen = ls;
    if (sa == NULL) {
        /* an HTTP/2 stream: the caller copies its parent's address */
    } else if (sa->ss_family == AF_INET) {
        const struct sockaddr_in *s4 = (const struct sockaddr_in *)sa;
        inet_ntop(AF_INET, &s4->sin_addr, c->peer_ip, sizeof(c->peer_ip));
        c->peer_port = ntohs(s4->sin_port);
    } else if (sa->ss_family == AF_INET6) {
        const struct sockaddr_in6 *s6 = (const struct sockaddr_in6 *)sa;
        inet_ntop(AF_INET6, &s6->sin6_addr, c->peer_ip, sizeof(c->peer_ip));
        c->peer_port = ntohs(s6->sin6_port);
    } else {
        snprintf(c->peer_ip, sizeof(c->peer_ip), "127.0.0.1");
    }
    llhttp_init(&c->parser, HTTP_REQUEST, &req_settings);
    c->parser.data = &c->hctx;
    c->hctx.on_headers_complete = on_req_headers_complete;
    c->hctx.on_message_complete = on_req_message_complete;
    ev_io_init(&c->io, conn_io_cb, fd, EV_READ);
    if (fd >= 0) { /* a bridge (fd -1) has no socket to watch: it is poked */
        c->events = EV_READ;
        ev_io_start(loop, &c->io);
    }
    ev_init(&c->timer, conn_timer_cb);
    c->state = GW_C_HEAD;
    if (tls) {
        c->ssl = gw_tls_accept(fd, ls);
        if (c->ssl == NULL) {
            gw_log(GW_LOG_ERR, "could not start TLS on a connection from %s", c->peer_ip);
            ev_io_stop(loop, &c->io);
            close(fd);
            free(c);
            return NULL;
        }
        c->state = GW_C_HANDSHAKE;
    }
    c->head_deadline = ev_now(loop) + gw_settings.client_header_timeout / 1000.0;
    gw_list_insert_tail(&wk->conns, &c->link);
    wk->nconns++;
    return c;
}

int gw_conn_adopt(int fd, const struct gw_listen *ls, const struct sockaddr_storage *sa)
{
    struct gw_conn *c = conn_new(fd, ls, sa, ls->ssl);
    if (c == NULL)
        return GW_ERROR;
    gw_worker->stats->accepted++;
    gw_worker->stats->active++;
    gw_conn_update(c);
    return GW_OK;
}

struct gw_conn *gw_conn_adopt_stream(const struct gw_listen *ls, const struct gw_conn *parent,
                                     const char *local_ip, struct ssl_st *tls_info,
                                     struct gw_h2_stream *s)
{
    struct gw_conn *c = conn_new(-1, ls, NULL, 0);
    if (c == NULL)
        return NULL;
    memcpy(c->peer_ip, parent->peer_ip, sizeof(c->peer_ip));
    c->peer_port = parent->peer_port;
    c->http2 = 1;
    c->bridge = calloc(1, sizeof(*c->bridge));
    if (c->bridge == NULL) {
        gw_conn_close(c);
        return NULL;
    }
    c->bridge->stream = s;
    size_t ll = local_ip ? strlen(local_ip) : 0;
    if (ll >= sizeof(c->bridge->local_ip))
        ll = 0;
    memcpy(c->bridge->local_ip, local_ip, ll);
    c->bridge->local_ip[ll] = '\0';
    if (tls_info && SSL_up_ref(tls_info) == 1)
        c->bridge->tls = tls_info;
    gw_conn_update(c);
    return c;
}

void gw_conn_accept_cb(struct ev_loop *loop, ev_io *w, int revents)
{
    const struct gw_listen *ls = w->data;
    struct gw_worker *wk = gw_worker;
    for (int i = 0; i < 64 && !wk->stopping; i++) {
        struct sockaddr_storage sa;
        socklen_t salen = sizeof(sa);
        int fd = accept4(w->fd, (struct sockaddr *)&sa, &salen, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd == -1) {
            if (errno == EAGAIN || errno == EWOULDBLOCK)
                return;
            if (errno == EINTR || errno == ECONNABORTED)
                continue;
            gw_log(GW_LOG_ERR, "accept4() failed: %s", strerror(errno));
            return;
        }
        int one = 1;
        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
        gw_conn_adopt(fd, ls, &sa);
    }
}

void gw_conn_close(struct gw_conn *c)
{
    struct gw_worker *wk = gw_worker;
    if (c->listen->admin)
        gw_admin_conn_closed(c);
    if (c->h2)
        gw_h2_free(c); /* closes its streams' bridges first */
    if (c->bridge && c->bridge->stream)
        gw_h2_bridge_closed(c->bridge->stream);
    gw_proxy_abort(c);
    if (c->req) {
        if (c->req->status == 0)
            c->req->status = 499; /* nginx's "client closed request" */
        if (c->state != GW_C_IDLE && c->state != GW_C_HEAD) {
            c->req->t_end = ev_now(wk->loop);
            gw_conn_log_phase(c);
            gw_access_log(c, c->req);
            gw_metrics_request(c, c->req);
            wk->stats->requests++;
        }
        req_free(c);
    }
    ev_io_stop(wk->loop, &c->io);
    ev_timer_stop(wk->loop, &c->timer);
    if (c->bridge) {
        SSL_free(c->bridge->tls); /* an HTTP/2 stream's reference to its parent's */
        free(c->bridge);
    }
    gw_tls_close(c->ssl);
    if (c->fd >= 0)
        close(c->fd);
    gw_buf_free(&c->in);
    gw_buf_free(&c->out);
    gw_list_remove(&c->link);
    wk->nconns--;
    if (!c->http2)
        wk->stats->active--;
    free(c);
    if (wk->stopping && wk->nconns == 0)
        ev_break(wk->loop, EVBREAK_ALL);
}

int gw_req_header(struct gw_conn *c, const char *lname, size_t len, int idx, struct gw_str *v)
{
    return gw_http_header(&c->req->head, c->in.data, lname, len, idx, v);
}

void gw_conn_update(struct gw_conn *c)
{
    struct ev_loop *loop = gw_worker->loop;
    int ev = 0;
    double after = 0;
    switch (c->state) {
    case GW_C_IDLE:
        ev = EV_READ;
        after = gw_settings.keepalive_timeout / 1000.0;
        break;
    case GW_C_HANDSHAKE:
    case GW_C_HEAD:
        ev = EV_READ;
        after = c->head_deadline - ev_now(loop);
        if (after < 0.001)
            after = 0.001;
        break;
    case GW_C_PROXY:
        /* reading goes on while the request is served: pipelined bytes wait
         * in c->in (bounded), a close is seen at once, and the watcher does
         * not churn per request */
        if (gw_proxy_wants_client_read(c)) {
            ev = EV_READ;
            after = gw_settings.client_body_timeout / 1000.0;
        } else if (c->req && c->req->body_done && c->in.len < c->in.cap) {
            ev = EV_READ;
        }
        break;
    case GW_C_TUNNEL:
        if (gw_proxy_wants_client_read(c))
            ev = EV_READ;
        break;
    case GW_C_CLOSING:
        break;
    case GW_C_H2:
        /* the session is read unless what it wrote piles up unsent */
        if (gw_buf_pending(&c->out) < 4 * GW_HIGH_WATER && gw_h2_wants_read(c))
            ev = EV_READ;
        if (gw_h2_idle(c))
            after = gw_settings.keepalive_timeout / 1000.0;
        else if (gw_h2_blocked(c))
            after = gw_settings.send_timeout / 1000.0;
        else if (gw_h2_lingering(c))
            after = gw_settings.client_body_timeout / 1000.0;
        break;
    }
    if (gw_buf_pending(&c->out)) {
        ev |= EV_WRITE;
        after = gw_settings.send_timeout / 1000.0;
    }
    if (c->ssl && c->tls_want_write && (ev & EV_READ))
        ev = (ev & ~EV_READ) | EV_WRITE; /* TLS: the read waits for a write first */
    if (c->bridge) { /* no socket: what is ready is fed */
        c->events = ev;
        gw_conn_bridge_poke(c);
    } else if (ev != c->events) {
        ev_io_stop(loop, &c->io);
        ev_io_set(&c->io, c->fd, ev);
        if (ev)
            ev_io_start(loop, &c->io);
        c->events = ev;
    }
    if (after > 0) {
        c->timer.repeat = after;
        ev_timer_again(loop, &c->timer);
    } else if (ev_is_active(&c->timer)) {
        ev_timer_stop(loop, &c->timer);
    }
    /* TLS: decrypted bytes held inside OpenSSL do not make the socket
     * readable; they are read now (a stopped watcher lost any fed event) */
    if (c->ssl && (ev & EV_READ) && SSL_pending(c->ssl) > 0)
        ev_feed_event(loop, &c->io, EV_READ);
}

void gw_conn_bridge_poke(struct gw_conn *c)
{
    int ready = gw_h2_bridge_ready(c->bridge->stream, c->events);
    if (ready)
        ev_feed_event(gw_worker->loop, &c->io, ready);
}

/* Ends the request: log, release, then close or wait for the next request.
 * Returns GW_ERROR when the connection was closed. */
static int conn_finish_request(struct gw_conn *c)
{
    struct gw_worker *wk = gw_worker;
    struct gw_req *r = c->req;
    r->t_end = ev_now(wk->loop);
    gw_conn_log_phase(c);
    gw_access_log(c, r);
    gw_metrics_request(c, r);
    wk->stats->requests++;
    c->nrequests++;
    int keep = r->keepalive && !c->closing && !wk->stopping && c->state == GW_C_PROXY;
    req_free(c);
    if (!keep) {
        gw_conn_close(c);
        return GW_ERROR;
    }
    /* what follows the request is the next one (pipelining); the parser
     * starts afresh (an Upgrade that was not switched leaves it paused) */
    llhttp_reset(&c->parser);
    gw_buf_consume(&c->in, c->parsed);
    gw_buf_compact(&c->in);
    c->parsed = 0;
    if (gw_buf_pending(&c->in) == 0) {
        gw_buf_free(&c->in);
        gw_buf_free(&c->out);
        c->state = GW_C_IDLE;
    } else {
        c->state = GW_C_HEAD;
        c->head_deadline = ev_now(wk->loop) + gw_settings.client_header_timeout / 1000.0;
    }
    gw_conn_update(c);
    if (c->state == GW_C_HEAD) /* after the update: stopping a watcher drops fed events */
        ev_feed_event(wk->loop, &c->io, EV_READ);
    return GW_OK;
}

int gw_conn_flush(struct gw_conn *c)
{
    struct gw_buf *b = &c->out;
    while (gw_buf_pending(b)) {
        int ww;
        ssize_t n;
        if (c->bridge) {
            n = gw_h2_bridge_write(c->bridge->stream, b->data + b->off, gw_buf_pending(b));
            if (n < 0)
                errno = n == -1 ? EAGAIN : EPIPE;
            n = n < 0 ? -1 : n;
        } else {
            n = c->ssl ? gw_tls_write(c->ssl, b->data + b->off, gw_buf_pending(b), &ww)
                       : write(c->fd, b->data + b->off, gw_buf_pending(b));
        }
        if (n == -1) {
            if (errno == EAGAIN || errno == EWOULDBLOCK)
                break;
            if (errno == EINTR)
                continue;
            GW_LOG(GW_LOG_INFO, "write() to client %s failed: %s", c->peer_ip, strerror(errno));
            gw_conn_close(c);
            return GW_ERROR;
        }
        if (c->req)
            c->req->bytes_out += (uint64_t)n;
        gw_buf_consume(b, (size_t)n);
    }
    if (gw_buf_pending(b) == 0) {
        if (c->req && c->req->resp_done)
            return conn_finish_request(c);
        if (c->state == GW_C_CLOSING) {
            gw_conn_close(c);
            return GW_ERROR;
        }
        if (c->state == GW_C_PROXY || c->state == GW_C_TUNNEL)
            gw_proxy_on_client_drained(c);
    } else if (gw_buf_pending(b) < GW_HIGH_WATER && (c->state == GW_C_PROXY ||
                                                      c->state == GW_C_TUNNEL)) {
        gw_proxy_on_client_drained(c);
    }
    return GW_OK;
}

int gw_conn_response_done(struct gw_conn *c)
{
    c->req->resp_done = 1;
    if (gw_buf_pending(&c->out) == 0)
        return conn_finish_request(c);
    int rc = gw_conn_flush(c);
    /* what the socket did not take waits for it to be writable: the watcher
     * may not be asking (the buffer was empty at its last update, and the
     * caller, the upstream's last read, has already let go of the request) */
    if (rc == GW_OK && gw_buf_pending(&c->out))
        gw_conn_update(c);
    return rc;
}

/* Reads what the socket has into c->in. Returns bytes read, 0 at EOF, -1
 * when nothing is there, -2 on error. */
static ssize_t conn_read(struct gw_conn *c, size_t max)
{
    if (gw_buf_reserve(&c->in, 4096, max) != 0) {
        if (c->in.cap - c->in.len == 0)
            return -3; /* full */
    }
    for (;;) {
        ssize_t n;
        if (c->ssl) {
            int ww = 0;
            n = gw_tls_read(c->ssl, c->in.data + c->in.len, c->in.cap - c->in.len, &ww);
            c->tls_want_write = ww;
            if (n > 0 && SSL_pending(c->ssl) > 0) /* more than the buffer took */
                ev_feed_event(gw_worker->loop, &c->io, EV_READ);
        } else if (c->bridge) {
            n = gw_h2_bridge_read(c->bridge->stream, c->in.data + c->in.len,
                                  c->in.cap - c->in.len);
            if (n == -1)
                errno = EAGAIN;
        } else {
            n = read(c->fd, c->in.data + c->in.len, c->in.cap - c->in.len);
        }
        if (n >= 0) {
            c->in.len += (size_t)n;
            return n;
        }
        if (errno == EINTR)
            continue;
        if (errno == EAGAIN || errno == EWOULDBLOCK)
            return -1;
        GW_LOG(GW_LOG_INFO, "read() from client %s failed: %s", c->peer_ip, strerror(errno));
        return -2;
    }
}

/* A plain http2 listener's first bytes: the HTTP/2 preface (prior
 * knowledge, h2c) switches the connection to HTTP/2. Returns 1 when it did,
 * 2 when the bytes so far are a prefix of the preface (more must be read),
 * 0: HTTP/1.x. */
static int conn_try_h2c(struct gw_conn *c)
{
    if (!c->listen->http2 || c->http2 || c->ssl || c->plain_on_tls || c->nrequests || c->req ||
        c->in.off)
        return 0;
    int m = gw_h2_preface(c->in.data, c->in.len);
    if (m == GW_AGAIN)
        return 2;
    if (m != GW_OK)
        return 0;
    gw_h2_start(c); /* the session takes what c->in holds */
    return 1;
}

static void conn_head_read(struct gw_conn *c)
{
    int h2c = c->parsed < c->in.len ? conn_try_h2c(c) : 0;
    if (c->parsed < c->in.len && h2c != 2) { /* pipelined bytes wait to be parsed */
        if (h2c == 0)
            conn_parse_head(c);
        return;
    }
    size_t max = gw_settings.max_header_size + 1;
    ssize_t n = conn_read(c, max);
    if (n == -1)
        return;
    if (n == -3) {
        if (c->req == NULL && req_new(c) == NULL) {
            gw_conn_close(c);
            return;
        }
        gw_conn_error(c, 431, "Request header fields too large");
        return;
    }
    if (n <= 0) {
        gw_conn_close(c); /* EOF or error before a whole head: nothing to answer */
        return;
    }
    if (c->state == GW_C_IDLE) {
        c->state = GW_C_HEAD;
        c->head_deadline = ev_now(gw_worker->loop) + gw_settings.client_header_timeout / 1000.0;
        gw_conn_update(c);
    }
    if (conn_try_h2c(c))
        return;
    conn_parse_head(c);
}

static const char *bad_request_reason(llhttp_errno_t e)
{
    switch (e) {
    case HPE_INVALID_CHUNK_SIZE: return "Bad request: invalid chunk size";
    case HPE_INVALID_TRANSFER_ENCODING: return "Bad request: invalid Transfer-Encoding";
    case HPE_UNEXPECTED_CONTENT_LENGTH: return "Bad request: conflicting Content-Length";
    case HPE_INVALID_CONTENT_LENGTH: return "Bad request: invalid Content-Length";
    case HPE_INVALID_HEADER_TOKEN: return "Bad request: invalid header";
    case HPE_INVALID_METHOD: return "Bad request: invalid method";
    case HPE_INVALID_URL: return "Bad request: invalid request target";
    case HPE_INVALID_VERSION: return "Bad request: invalid HTTP version";
    default: return "Bad request";
    }
}

static void conn_bad_request(struct gw_conn *c, llhttp_errno_t e)
{
    if (c->req == NULL && req_new(c) == NULL) {
        gw_conn_close(c);
        return;
    }
    if (e == HPE_USER) {
        gw_conn_error(c, 431, "Request header fields too large");
        return;
    }
    if (c->nrequests == 0 && c->in.len && (unsigned char)c->in.data[0] == 0x16) {
        /* a TLS handshake on a plain port: no answer it could read */
        GW_LOG(GW_LOG_INFO, "client %s started TLS on a plain HTTP port", c->peer_ip);
        gw_conn_close(c);
        return;
    }
    GW_LOG(GW_LOG_INFO, "client %s sent a bad request: %s (%s)", c->peer_ip, llhttp_errno_name(e),
           llhttp_get_error_reason(&c->parser));
    gw_conn_error(c, 400, bad_request_reason(e));
}

static void conn_route(struct gw_conn *c);
static void conn_after_rewrite(struct gw_conn *c);
static void conn_lua_failed(struct gw_conn *c);

static void conn_parse_head(struct gw_conn *c)
{
    if (c->req == NULL && req_new(c) == NULL) {
        gw_conn_close(c);
        return;
    }
    c->hctx.base = c->in.data;
    const char *start = c->in.data + c->parsed;
    llhttp_errno_t e = llhttp_execute(&c->parser, start, c->in.len - c->parsed);
    if (e == HPE_OK) {
        c->parsed = c->in.len;
        if (c->parsed > gw_settings.max_header_size)
            gw_conn_error(c, 431, "Request header fields too large");
        return;
    }
    if (e != HPE_PAUSED) {
        conn_bad_request(c, e);
        return;
    }
    c->parsed = (size_t)(llhttp_get_error_pos(&c->parser) - c->in.data);
    llhttp_resume(&c->parser);
    if (c->parsed > gw_settings.max_header_size) {
        gw_conn_error(c, 431, "Request header fields too large");
        return;
    }
    conn_route(c);
}

/* The head is complete: check it, route it, hand it to the proxy. */
static void conn_route(struct gw_conn *c)
{
    struct gw_worker *wk = gw_worker;
    struct gw_req *r = c->req;
    llhttp_t *p = &c->parser;
    r->head_len = (uint32_t)c->parsed;
    r->http_minor = p->http_minor;
    r->is_head = p->method == HTTP_HEAD;
    r->keepalive = llhttp_should_keep_alive(p);
    r->upgrade = p->upgrade;
    r->has_body = (p->flags & F_CHUNKED) || ((p->flags & F_CONTENT_LENGTH) && p->content_length);
    c->state = GW_C_PROXY;
    if (c->plain_on_tls) {
        gw_conn_error(c, 400, "The plain HTTP request was sent to HTTPS port");
        return;
    }

    int te_seen = 0; /* a Transfer-Encoding header, even an empty one */
    for (int i = 0; i < r->head.nhdr; i++) {
        const struct gw_hdr *h = &r->head.hdr[i];
        const char *name = c->in.data + h->name;
        /* llhttp lets whitespace in a name through (before the colon too);
         * RFC 9112 5.1 says 400, and a smuggler relies on it */
        if (h->name_len == 0 || memchr(name, ' ', h->name_len) || memchr(name, '\t', h->name_len)) {
            gw_conn_error(c, 400, "Bad request: invalid header");
            return;
        }
        /* obs-fold (RFC 9112 5.2) would end the upstream head early */
        if (gw_http_unsafe_value(c->in.data + h->value, h->value_len)) {
            gw_conn_error(c, 400, "Bad request: obsolete line folding");
            return;
        }
        if (GW_NAME_IS(name, h->name_len, "host")) {
            if (r->host_hdr >= 0) {
                gw_conn_error(c, 400, "Bad request: duplicate Host header");
                return;
            }
            r->host_hdr = i;
        } else if (GW_NAME_IS(name, h->name_len, "transfer-encoding")) {
            te_seen = 1;
        } else if (GW_NAME_IS(name, h->name_len, "expect")) {
            r->expect_continue = gw_http_has_token(c->in.data + h->value, h->value_len,
                                                   "100-continue");
        }
    }
    if (p->http_major != 1) {
        gw_conn_error(c, 400, "Bad request: invalid HTTP version");
        return;
    }
    /* llhttp checks this after on_headers_complete, which pauses first; an
     * empty Transfer-Encoding sets no flag there, and would go upstream
     * beside a Content-Length */
    if ((te_seen || (p->flags & F_TRANSFER_ENCODING)) && !(p->flags & F_CHUNKED)) {
        gw_conn_error(c, 400, "Bad request: invalid Transfer-Encoding");
        return;
    }
    if (r->host_hdr < 0 && r->http_minor >= 1 && p->http_major == 1) {
        gw_conn_error(c, 400, "Bad request: missing Host header");
        return;
    }
    if (!r->body_done && !r->has_body)
        r->body_done = 1;
    if (gw_settings.max_body_size && !c->listen->admin && (p->flags & F_CONTENT_LENGTH) &&
        p->content_length > gw_settings.max_body_size) {
        gw_conn_error(c, 413, "Request size limit exceeded");
        return;
    }
    /* origin-form only; absolute-form is for forward proxies */
    const char *url = c->in.data + r->url_off;
    if (r->url_len == 0 || url[0] != '/') {
        gw_conn_error(c, 400, "Bad request: invalid request target");
        return;
    }
    for (uint32_t i = 0; i < r->url_len; i++) {
        unsigned char ch = (unsigned char)url[i];
        /* controls (llhttp lets \t and \f through) and fragments */
        if (ch < 0x21 || ch == 0x7f || ch == '#') {
            gw_conn_error(c, 400, "Bad request: invalid request target");
            return;
        }
    }
    const char *q = memchr(url, '?', r->url_len);
    r->path_len = q ? (uint32_t)(q - url) : r->url_len;

    if (c->listen->admin) {
        gw_admin_handle(c);
        return;
    }

    if (gw_buf_reserve(&r->scratch, r->path_len + 1, 0) != 0) {
        gw_conn_close(c);
        return;
    }
    memcpy(r->scratch.data, url, r->path_len);
    long np = gw_path_normalize(r->scratch.data, r->path_len);
    if (np < 0) {
        gw_conn_error(c, 400, "Bad request: invalid path");
        return;
    }
    r->npath = r->scratch.data;
    r->npath_len = (size_t)np;
    r->scratch.len = (size_t)np;

    r->config = gw_config_ref(wk->config);
    if (r->config->global_phases & GW_PHASE_REWRITE) {
        r->phases = r->config->global_phases;
        int rc = gw_lua_phase(c, GW_PHASE_REWRITE);
        if (rc == GW_AGAIN)
            return;
        if (rc != GW_OK) {
            conn_lua_failed(c);
            return;
        }
    }
    conn_after_rewrite(c);
}

/* Header lookup for the router: sees what rewrite plugins changed. */
static int router_header(void *ud, const char *lname, size_t len, int idx, struct gw_str *v)
{
    struct gw_conn *c = ud;
    return gw_ffi_req_header(c->req, lname, len, idx, &v->p, &v->n);
}

static void conn_after_access(struct gw_conn *c);

/* An https-only route reached over http: Kong's answer, before any plugin's
 * access phase (426 with Upgrade, or a redirect to the same host and URI). */
static void conn_https_redirect(struct gw_conn *c)
{
    struct gw_req *r = c->req;
    int st = r->route->https_redirect;
    if (r->resp_hdrs == NULL && (r->resp_hdrs = gw_hlist_new(&r->pool, 8)) == NULL) {
        gw_conn_close(c);
        return;
    }
    r->has_exit = 1;
    r->exit_status = st;
    if (st == 426) {
        static const char body[] = "{\"message\":\"Please use HTTPS protocol\"}";
        static const char ctype[] = "application/json; charset=utf-8";
        static const char up[] = "TLS/1.2, HTTP/1.1";
        gw_hlist_push(&r->pool, r->resp_hdrs, "Content-Type", 12, ctype, sizeof(ctype) - 1);
        gw_hlist_push(&r->pool, r->resp_hdrs, "Upgrade", 7, up, sizeof(up) - 1);
        r->exit_body = (struct gw_str){body, sizeof(body) - 1};
    } else {
        struct gw_str host = {"", 0};
        int port;
        router_header(c, "host", 4, 0, &host);
        size_t hn = gw_host_split_port(host.p, host.n, &port);
        size_t n = 8 + hn + r->url_len;
        char *loc = gw_pool_alloc(&r->pool, n);
        if (loc == NULL) {
            gw_conn_close(c);
            return;
        }
        memcpy(loc, "https://", 8);
        memcpy(loc + 8, host.p, hn);
        memcpy(loc + 8 + hn, c->in.data + r->url_off, r->url_len);
        gw_hlist_push(&r->pool, r->resp_hdrs, "Location", 8, loc, n);
        r->exit_body = (struct gw_str){NULL, 0};
    }
    gw_conn_send_exit(c);
}

static void conn_after_rewrite(struct gw_conn *c)
{
    struct gw_req *r = c->req;
    if (r->has_exit) {
        gw_conn_send_exit(c);
        return;
    }
    const char *method = llhttp_method_name((llhttp_method_t)c->parser.method);
    struct gw_router_req rr;
    rr.method.p = method;
    rr.method.n = strlen(method);
    if (router_header(c, "host", 4, 0, &rr.host) != GW_OK) {
        rr.host.p = "";
        rr.host.n = 0;
    }
    rr.path.p = r->npath;
    rr.path.n = r->npath_len;
    rr.port = c->listen->port;
    struct ssl_st *tls = gw_conn_tls(c);
    rr.https = tls != NULL;
    rr.sni.p = tls ? SSL_get_servername(tls, TLSEXT_NAMETYPE_host_name) : NULL;
    rr.sni.n = rr.sni.p ? strlen(rr.sni.p) : 0;
    rr.header = router_header;
    rr.ud = c;
    if (r->config->router == NULL || gw_router_match(r->config->router, &rr, &r->match) != GW_OK) {
        r->phases = r->config->global_phases & GW_PHASES_NO_ROUTE;
        gw_conn_error(c, 404, "no Route matched with those values");
        return;
    }
    r->route = &r->config->routes[r->match.route];
    r->phases = r->route->phases;
    if (r->route->https_only && tls == NULL) {
        conn_https_redirect(c);
        return;
    }
    /* a route without a service still runs its plugins (one may answer:
     * request-termination, aggregator); 503 only if none does */
    if (r->route->service >= 0)
        r->service = &r->config->services[r->route->service];
    if (r->config->memo && gw_memo_answer(c))
        return;
    if (r->route->guard[GW_GUARD_ACCESS] && gw_guard_idle(r->route, GW_GUARD_ACCESS, 0))
        r->phases &= ~(uint32_t)GW_PHASE_ACCESS;
    if (r->phases & GW_PHASE_ACCESS) {
        int rc = gw_lua_phase(c, GW_PHASE_ACCESS);
        if (rc == GW_AGAIN)
            return;
        if (rc != GW_OK) {
            conn_lua_failed(c);
            return;
        }
    }
    conn_after_access(c);
}

static void conn_after_access(struct gw_conn *c)
{
    if (c->req->has_exit) {
        gw_conn_send_exit(c);
        return;
    }
    if (c->req->service == NULL) {
        gw_conn_error(c, 503, "no Service found with those values");
        return;
    }
    gw_proxy_start(c);
}

void gw_conn_phase_done(struct gw_conn *c, int phase, int rc)
{
    if (rc != GW_OK) {
        conn_lua_failed(c);
        return;
    }
    switch (phase) {
    case GW_PHASE_REWRITE:
        conn_after_rewrite(c);
        return;
    case GW_PHASE_ACCESS:
        conn_after_access(c);
        return;
    case GW_PHASE_RESPONSE:
        gw_proxy_response_phase_done(c);
        return;
    default:
        gw_log(GW_LOG_ERR, "phase %d cannot wait; request %s failed", phase, c->req->id);
        conn_lua_failed(c);
        return;
    }
}

/* A phase's coroutine failed (already logged): 500 if nothing was sent. */
static void conn_lua_failed(struct gw_conn *c)
{
    struct gw_req *r = c->req;
    r->lua_failed = 1;
    r->phases &= ~(uint32_t)(GW_PHASE_HEADER_FILTER | GW_PHASE_BODY_FILTER);
    if (r->resp_started) {
        gw_conn_close(c);
        return;
    }
    r->resp_source = GW_SRC_ERROR;
    gw_conn_error(c, 500, "An unexpected error occurred");
}

/* Runs the log phase of a request that ends (never waits). */
void gw_conn_log_phase(struct gw_conn *c)
{
    struct gw_req *r = c->req;
    if (!(r->phases & GW_PHASE_LOG) || r->lua_failed)
        return;
    int rc = gw_lua_phase(c, GW_PHASE_LOG);
    if (rc == GW_AGAIN) {
        gw_log(GW_LOG_ERR, "a log handler tried to wait (use ngx.timer.at for I/O in the log "
                           "phase); request %s", r->id);
        gw_lua_release(r);
    }
}

/* Reads the whole request body for a plugin (kong.request.get_raw_body).
 * GW_OK when it is complete, GW_AGAIN when reading goes on (the coroutine
 * is woken when it completes), GW_ERROR. */
static int on_body_collect(llhttp_t *p, const char *at, size_t len)
{
    struct gw_conn *c = gw_container_of(p->data, struct gw_conn, hctx);
    struct gw_req *r = c->req;
    size_t max = c->listen->admin          ? GW_ADMIN_MAX_BODY
                 : gw_settings.max_body_size ? gw_settings.max_body_size
                                             : GW_MAX_BUFFERED_BODY;
    if (r->body_buf.len + len > max) {
        r->body_too_large = 1;
        return HPE_USER;
    }
    return gw_buf_append(&r->body_buf, at, len) == 0 ? 0 : HPE_USER;
}

/* Feeds what c->in holds of the body to the parser in collect mode. */
static int conn_collect_body(struct gw_conn *c)
{
    struct gw_req *r = c->req;
    if (c->parsed < c->in.len && !r->body_done) {
        const char *start = c->in.data + c->parsed;
        size_t avail = c->in.len - c->parsed;
        c->hctx.on_body = on_body_collect;
        c->hctx.base = c->in.data;
        llhttp_errno_t e = llhttp_execute(&c->parser, start, avail);
        c->hctx.on_body = NULL;
        size_t used = avail;
        if (e == HPE_PAUSED) {
            used = (size_t)(llhttp_get_error_pos(&c->parser) - start);
            llhttp_resume(&c->parser);
        } else if (e != HPE_OK) {
            return GW_ERROR;
        }
        r->body_bytes += used;
        memmove((char *)start, start + used, avail - used);
        c->in.len -= used;
    }
    if (r->body_done) {
        r->body_mode = GW_BODY_READ;
        return GW_OK;
    }
    return GW_AGAIN;
}

int gw_conn_read_body(struct gw_conn *c)
{
    struct gw_req *r = c->req;
    if (r->expect_continue && r->http_minor >= 1 && r->body_bytes == 0 && !r->body_done) {
        r->expect_continue = 0;
        gw_buf_appends(&c->out, "HTTP/1.1 100 Continue\r\n\r\n");
        if (gw_conn_flush(c) != GW_OK)
            return GW_ERROR;
    }
    r->body_mode = GW_BODY_READING;
    int rc = conn_collect_body(c);
    if (rc == GW_AGAIN)
        gw_conn_update(c);
    return rc;
}

/* More body bytes arrived while a plugin waits for the whole body. */
static void conn_body_for_lua(struct gw_conn *c)
{
    struct gw_req *r = c->req;
    int rc = conn_collect_body(c);
    if (rc == GW_AGAIN) {
        gw_conn_update(c);
        return;
    }
    if (c->listen->admin) { /* an admin request, not a plugin, waits for it */
        if (rc == GW_ERROR)
            r->body_mode = GW_BODY_STREAM;
        gw_admin_body_done(c, rc);
        return;
    }
    if (rc == GW_ERROR) {
        r->body_mode = GW_BODY_STREAM;
        gw_lua_release(r); /* the waiting coroutine cannot go on */
        if (r->body_too_large)
            gw_conn_error(c, 413, "Request size limit exceeded");
        else
            gw_conn_error(c, 400, "Bad request");
        return;
    }
    gw_lua_wake(r->lctx, 0);
}

/* A TLS listener's first bytes: a handshake record (0x16) goes to OpenSSL;
 * a letter is plain HTTP, read as a request and answered 400 as nginx does
 * (its client reads the message); anything else is closed. */
static void conn_handshake(struct gw_conn *c)
{
    if (!c->tls_started) {
        unsigned char first;
        ssize_t k = recv(c->fd, &first, 1, MSG_PEEK);
        if (k == -1 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR))
            return;
        if (k <= 0) {
            gw_conn_close(c);
            return;
        }
        if (first != 0x16) {
            gw_tls_close(c->ssl);
            c->ssl = NULL;
            if (first < 'A' || first > 'Z') {
                GW_LOG(GW_LOG_INFO, "client %s sent neither TLS nor HTTP to a TLS port",
                       c->peer_ip);
                gw_conn_close(c);
                return;
            }
            c->plain_on_tls = 1;
            c->state = GW_C_HEAD;
            gw_conn_update(c);
            conn_head_read(c);
            return;
        }
        c->tls_started = 1;
    }
    int ww = 0;
    int rc = gw_tls_handshake(c, &ww);
    if (rc < 0) {
        gw_conn_close(c);
        return;
    }
    c->tls_want_write = ww;
    if (rc == 0) {
        gw_conn_update(c);
        return;
    }
    c->tls_want_write = 0;
    if (c->listen->http2 && gw_tls_alpn_h2(c->ssl)) {
        gw_h2_start(c); /* its first read is fed by the watcher */
        return;
    }
    c->state = GW_C_IDLE;
    gw_conn_update(c);
    conn_head_read(c); /* the first request may have come with the last flight */
}

/* An HTTP/2 connection's socket: what is read goes to the session, which
 * then writes what it has (gw_h2_recv flushes). */
static void conn_h2_io(struct gw_conn *c, int revents)
{
    if (revents & EV_READ) {
        ssize_t n = conn_read(c, 64 * 1024);
        if (n == 0 || n == -2) {
            gw_conn_close(c);
            return;
        }
        if (n > 0) {
            gw_h2_recv(c);
            return;
        }
    }
    gw_h2_send(c);
}

static void conn_io_cb(struct ev_loop *loop, ev_io *w, int revents)
{
    struct gw_conn *c = gw_container_of(w, struct gw_conn, io);
    if (c->state == GW_C_HANDSHAKE) {
        conn_handshake(c);
        return;
    }
    if (c->ssl && c->tls_want_write && (revents & EV_WRITE)) {
        c->tls_want_write = 0; /* the read that waited for it goes on */
        revents |= EV_READ;
    }
    if (c->state == GW_C_H2) {
        conn_h2_io(c, revents);
        return;
    }
    if (revents & EV_WRITE) {
        if (gw_conn_flush(c) != GW_OK)
            return;
        gw_conn_update(c);
    }
    if (!(revents & EV_READ))
        return;
    switch (c->state) {
    case GW_C_IDLE:
    case GW_C_HEAD:
        conn_head_read(c);
        return;
    case GW_C_PROXY:
    case GW_C_TUNNEL: {
        size_t max = gw_settings.max_header_size + 2 * GW_BUF_BLOCK;
        int body = gw_proxy_wants_client_read(c);
        if (!body && (c->state == GW_C_TUNNEL || !(c->req && c->req->body_done))) {
            gw_conn_update(c); /* body reading paused: stop watching */
            return;
        }
        ssize_t n = conn_read(c, max);
        if (n == -1)
            return;
        if (n == -3) {
            gw_conn_update(c); /* full: wait until the request is done */
            return;
        }
        if (n <= 0) {
            gw_conn_close(c);
            return;
        }
        if (c->req && c->req->body_mode == GW_BODY_READING) {
            conn_body_for_lua(c);
            return;
        }
        gw_proxy_on_client_data(c);
        return;
    }
    case GW_C_HANDSHAKE: /* handled above */
    case GW_C_H2:
    case GW_C_CLOSING:
        return;
    }
}

static void conn_timer_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
    struct gw_conn *c = gw_container_of(w, struct gw_conn, timer);
    switch (c->state) {
    case GW_C_HANDSHAKE:
        GW_LOG(GW_LOG_INFO, "client %s timed out in the TLS handshake", c->peer_ip);
        gw_conn_close(c);
        return;
    case GW_C_HEAD:
        if (c->in.len > 0 && c->req) {
            GW_LOG(GW_LOG_INFO, "client %s timed out sending its request head", c->peer_ip);
            gw_conn_error(c, 408, "Request timeout");
            return;
        }
        gw_conn_close(c);
        return;
    case GW_C_H2:
        gw_h2_timeout(c);
        return;
    case GW_C_PROXY:
        if (!gw_buf_pending(&c->out) && c->req && !c->req->body_done) {
            GW_LOG(GW_LOG_INFO, "client %s timed out sending its request body", c->peer_ip);
            gw_conn_error(c, 408, "Request timeout");
            return;
        }
        gw_conn_close(c);
        return;
    default:
        gw_conn_close(c);
        return;
    }
}

void gw_conn_drain_all(void)
{
    struct gw_list *l = gw_worker->conns.next;
    while (l != &gw_worker->conns) {
        struct gw_conn *c = gw_container_of(l, struct gw_conn, link);
        l = l->next;
        if (c->state == GW_C_H2) {
            gw_h2_drain(c); /* GOAWAY; closes once its streams are done */
            continue;
        }
        if (c->http2) { /* an HTTP/2 stream's request ends as usual */
            c->closing = 1;
            continue;
        }
        if (c->state == GW_C_IDLE || c->state == GW_C_HANDSHAKE ||
            (c->state == GW_C_HEAD && c->in.len == 0))
            gw_conn_close(c);
        else
            c->closing = 1;
    }
}
