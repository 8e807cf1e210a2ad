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

#include "gw/balancer.h"
#include "gw/buf.h"
#include "gw/compress.h"
#include "gw/config.h"
#include "gw/conn.h"
#include "gw/dns.h"
#include "gw/guard.h"
#include "gw/h2_up.h"
#include "gw/ffi.h"
#include "gw/hlist.h"
#include "gw/lua_req.h"
#include "gw/http.h"
#include "gw/log.h"
#include "gw/pool.h"
#include "gw/router.h"
#include "gw/tls_client.h"
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
    if (r && r->body_mode == GW_BODY_READING)
        return !r->body_done;
    if (r == NULL || r->body_done || r->up == NULL)
        return 0;
    return gw_buf_pending(&r->up->out) < GW_HIGH_WATER;
}

/* Fails the request with a gateway error, or closes the client connection
 * when the response has already started. */
static void target_release(struct gw_req *r);

static void proxy_fail(struct gw_conn *c, int status, const char *msg)
{
    struct gw_req *r = c->req;
    target_release(r);
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
    if (r->service)
        target_release(r);
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

/* The i-th client header as a view: from the plugins' list once they
 * changed it, else from the head as received. */
static int req_hdr(struct gw_conn *c, int i, struct gw_hview *out)
{
    struct gw_req *r = c->req;
    if (r->up_hdrs) {
        if (i >= r->up_hdrs->n)
            return 0;
        *out = r->up_hdrs->v[i];
        return 1;
    }
    if (i >= r->head.nhdr)
        return 0;
    const struct gw_hdr *h = &r->head.hdr[i];
    out->name = c->in.data + h->name;
    out->nlen = h->name_len;
    out->value = c->in.data + h->value;
    out->vlen = h->value_len;
    return 1;
}

/* The path (and ?query) the upstream gets, into the request pool. */
int gw_ffi_upstream_uri(struct gw_req *r, const char **p, size_t *n)
{
    struct gw_conn *c = r->conn;
    if (r->route == NULL || r->service == NULL)
        return GW_DECLINED;
    const struct gw_service *s = r->service;
    size_t cap = s->path_len + r->npath_len + r->url_len + r->up_path.n + r->up_query.n + 4;
    char *out = gw_pool_alloc(&r->pool, cap);
    if (out == NULL)
        return GW_ERROR;
    size_t len;
    if (r->up_path.p) {
        memcpy(out, r->up_path.p, r->up_path.n);
        len = r->up_path.n;
    } else {
        long k = gw_upstream_path(s->path, s->path_len, r->npath, r->npath_len,
                                  r->route->strip_path ? r->match.strip_len : 0,
                                  r->route->path_v1, out, cap);
        if (k < 0)
            return GW_ERROR;
        len = (size_t)k;
    }
    if (r->has_up_query) {
        if (r->up_query.n) {
            out[len++] = '?';
            memcpy(out + len, r->up_query.p, r->up_query.n);
            len += r->up_query.n;
        }
    } else if (r->url_len > r->path_len) {
        memcpy(out + len, c->in.data + r->url_off + r->path_len, r->url_len - r->path_len);
        len += r->url_len - r->path_len;
    }
    *p = out;
    *n = len;
    return GW_OK;
}

/* Appends the request head as the upstream must see it. */
static int build_head(struct gw_conn *c, struct gw_upstream *u)
{
    struct gw_req *r = c->req;
    const struct gw_route *rt = r->route;
    const struct gw_service *s = r->service;
    const char *base = c->in.data;
    struct gw_buf *b = &u->out;
    struct gw_hview hv;
    int buffered = r->has_up_body || r->body_mode == GW_BODY_READ;
    size_t need = r->head_len + s->path_len + r->npath_len + 512 + strlen(c->peer_ip) * 2 +
                  r->up_path.n + r->up_query.n;
    if (gw_buf_reserve(b, need, 0) != 0)
        return -1;

    if (r->up_method.p)
        gw_buf_append(b, r->up_method.p, r->up_method.n);
    else
        gw_buf_appends(b, llhttp_method_name((llhttp_method_t)c->parser.method));
    gw_buf_append(b, " ", 1);
    if (r->up_path.p) {
        gw_buf_append(b, r->up_path.p, r->up_path.n);
    } else {
        long n = gw_upstream_path(s->path, s->path_len, r->npath, r->npath_len,
                                  rt->strip_path ? r->match.strip_len : 0, rt->path_v1,
                                  b->data + b->len, b->cap - b->len);
        if (n < 0)
            return -1;
        b->len += (size_t)n;
    }
    if (r->has_up_query) {
        if (r->up_query.n) {
            gw_buf_append(b, "?", 1);
            gw_buf_append(b, r->up_query.p, r->up_query.n);
        }
    } else {
        gw_buf_append(b, base + r->url_off + r->path_len, r->url_len - r->path_len); /* ?query */
    }
    gw_buf_appends(b, r->http_minor == 0 ? " HTTP/1.0\r\nHost: " : " HTTP/1.1\r\nHost: ");
    struct gw_str host = {"", 0};
    if (gw_ffi_req_header(r, "host", 4, 0, &host.p, &host.n) != GW_OK)
        host = (struct gw_str){"", 0};
    if ((rt->preserve_host || r->host_changed) && host.n)
        gw_buf_append(b, host.p, host.n);
    else if (r->up_target_host)
        gw_buf_appends(b, r->up_target_host);
    else
        gw_buf_append(b, s->host_header, s->host_header_len);
    gw_buf_append(b, "\r\n", 2);

    /* tokens of Connection name further hop-by-hop headers */
    struct gw_str ctok[8];
    int nctok = 0;
    struct gw_str xff[8];
    int nxff = 0;
    for (int i = 0; req_hdr(c, i, &hv); i++) {
        const char *v = hv.value;
        if (GW_NAME_IS(hv.name, hv.nlen, "connection")) {
            size_t k = 0;
            while (k < hv.vlen && nctok < 8) {
                while (k < hv.vlen && (v[k] == ' ' || v[k] == ','))
                    k++;
                size_t st = k;
                while (k < hv.vlen && v[k] != ',' && v[k] != ' ')
                    k++;
                if (k > st)
                    ctok[nctok++] = (struct gw_str){v + st, k - st};
            }
        } else if (GW_NAME_IS(hv.name, hv.nlen, "x-forwarded-for") && nxff < 8) {
            xff[nxff++] = (struct gw_str){v, hv.vlen};
        }
    }
    for (int i = 0; req_hdr(c, i, &hv); i++) {
        const char *name = hv.name;
        size_t nl = hv.nlen;
        if (gw_http_hop_by_hop(name, nl)) {
            if (!(r->upgrade && GW_NAME_IS(name, nl, "upgrade")))
                continue;
        }
        if (nl >= 9 && (name[0] == 'x' || name[0] == 'X') && name[1] == '-') {
            if ((nl > 12 && gw_http_name_is(name, 12, "x-forwarded-", 12)) ||
                GW_NAME_IS(name, nl, "x-real-ip") || GW_NAME_IS(name, nl, "x-request-id"))
                continue;
        }
        if (GW_NAME_IS(name, nl, "host") || GW_NAME_IS(name, nl, "expect"))
            continue;
        if (buffered && (GW_NAME_IS(name, nl, "content-length") ||
                         GW_NAME_IS(name, nl, "transfer-encoding")))
            continue;
        /* headers a Connection token names are hop-by-hop (RFC 9110 7.6.1),
         * except the body's framing: a client must not be able to make the
         * gateway drop Content-Length or Transfer-Encoding (smuggling) */
        int named = 0;
        for (int t = 0; t < nctok; t++)
            if (ctok[t].n == nl && strncasecmp(name, ctok[t].p, nl) == 0)
                named = 1;
        if (named && (GW_NAME_IS(name, nl, "content-length") ||
                      GW_NAME_IS(name, nl, "transfer-encoding")))
            named = 0;
        if (named && !(r->upgrade && GW_NAME_IS(name, nl, "upgrade")))
            continue;
        gw_buf_append_field(b, name, nl, hv.value, hv.vlen);
    }
    /* Kong's X-Forwarded-*: computed here unless a plugin set them through
     * ngx.var.upstream_x_forwarded_* (r->xfwd) */
    const struct gw_str *xf = r->xfwd;
    gw_buf_appends(b, "X-Forwarded-For: ");
    if (xf[0].p) {
        gw_buf_append(b, xf[0].p, xf[0].n);
    } else {
        for (int i = 0; i < nxff; i++) {
            gw_buf_append(b, xff[i].p, xff[i].n);
            gw_buf_append(b, ", ", 2);
        }
        gw_buf_appends(b, c->peer_ip);
    }
    gw_buf_appends(b, "\r\nX-Forwarded-Proto: ");
    if (xf[1].p)
        gw_buf_append(b, xf[1].p, xf[1].n);
    else
        gw_buf_appends(b, gw_conn_tls(c) ? "https" : "http");
    gw_buf_appends(b, "\r\nX-Forwarded-Host: ");
    if (xf[2].p) {
        gw_buf_append(b, xf[2].p, xf[2].n);
    } else {
        int port;
        gw_buf_append(b, host.p, gw_host_split_port(host.p, host.n, &port));
    }
    gw_buf_appends(b, "\r\nX-Forwarded-Port: ");
    if (xf[3].p)
        gw_buf_append(b, xf[3].p, xf[3].n);
    else
        gw_buf_append_u64(b, (uint64_t)c->listen->port);
    gw_buf_appends(b, "\r\nX-Forwarded-Path: ");
    if (xf[4].p)
        gw_buf_append(b, xf[4].p, xf[4].n);
    else
        gw_buf_append(b, base + r->url_off, r->path_len);
    if (xf[5].p) {
        gw_buf_appends(b, "\r\nX-Forwarded-Prefix: ");
        gw_buf_append(b, xf[5].p, xf[5].n);
    }
    gw_buf_appends(b, "\r\nX-Real-IP: ");
    gw_buf_appends(b, c->peer_ip);
    gw_buf_appends(b, "\r\nX-Request-ID: ");
    gw_buf_append(b, r->id, GW_REQUEST_ID_LEN);
    if (r->upgrade)
        gw_buf_appends(b, "\r\nConnection: upgrade");
    else if (r->http_minor == 0)
        gw_buf_appends(b, "\r\nConnection: close");
    if (buffered) {
        const struct gw_str body = r->has_up_body
                                       ? r->up_body
                                       : (struct gw_str){r->body_buf.data, r->body_buf.len};
        gw_buf_appends(b, "\r\nContent-Length: ");
        gw_buf_append_u64(b, body.n);
        gw_buf_append(b, "\r\n\r\n", 4);
        return body.n ? gw_buf_append(b, body.p, body.n) : 0;
    }
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
    if (r->body_done || c->parsed >= c->in.len || r->body_mode == GW_BODY_READ)
        return GW_OK;
    const char *start = c->in.data + c->parsed;
    size_t avail = c->in.len - c->parsed;
    c->hctx.base = c->in.data;
    llhttp_errno_t e = llhttp_execute(&c->parser, start, avail);
    size_t used = avail;
    if (e == HPE_PAUSED) {
        used = (size_t)(llhttp_get_error_pos(&c->parser) - start);
        llhttp_resume(&c->parser);
    } else if (e != HPE_OK) {
        GW_LOG(GW_LOG_INFO, "client %s sent a bad request body: %s", c->peer_ip,
               llhttp_errno_name(e));
        proxy_fail(c, 400, e == HPE_INVALID_CHUNK_SIZE ? "Bad request: invalid chunk size"
                           : c->hctx.bad_trailer             ? "Bad request: invalid trailer"
                                                             : "Bad request");
        return GW_ERROR;
    }
    r->body_bytes += used;
    if (gw_settings.max_body_size && r->body_bytes > gw_settings.max_body_size + 64) {
        proxy_fail(c, 413, "Request size limit exceeded");
        return GW_ERROR;
    }
    /* a body a plugin replaced is read and dropped */
    if (r->body_mode != GW_BODY_DISCARD && gw_buf_append(&u->out, start, used) != 0)
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

static struct gw_balancer *balancer_of(struct gw_req *r)
{
    if (r->service->balancer < 0 || r->up_target_host)
        return NULL;
    return &r->config->balancers[r->service->balancer];
}

/* The try is over (its connection ended or failed): give back the target's
 * connection count. */
static void target_release(struct gw_req *r)
{
    struct gw_balancer *b = balancer_of(r);
    if (b && r->target >= 0 && r->target_counted) {
        gw_balancer_conn(b, r->target, -1);
        r->target_counted = 0;
    }
}

/* Makes the new connection u a TLS one: the handshake starts once the TCP
 * connect is done (up_io_cb). GW_ERROR when the request failed. */
static int tls_start(struct gw_conn *c, struct gw_upstream *u, struct gw_tls_client *t,
                     const char *name)
{
    const char *err = NULL;
    struct ssl_st *ssl = gw_tls_client_ssl(t, u->fd, name, -1, NULL, &err);
    if (ssl == NULL || gw_upstream_set_tls(u, ssl, gw_tls_client_id(t), name) != GW_OK) {
        gw_log(GW_LOG_ERR, "upstream %s: could not start TLS: %s (request %s)", name,
               err ? err : "no memory", c->req->id);
        gw_upstream_free(u);
        proxy_fail(c, 500, "An unexpected error occurred");
        return GW_ERROR;
    }
    /* even a connect that finished at once goes through the handshake */
    u->state = GW_U_CONNECTING;
    return GW_OK;
}

static void proxy_connect(struct gw_conn *c)
{
    struct gw_req *r = c->req;
    struct gw_service *s = r->service;
    struct sockaddr_storage sa;
    socklen_t salen;
    struct gw_dns_entry *dns = s->dns;
    int port = s->port;
    struct gw_balancer *b = balancer_of(r);
    const char *tls_name = s->host; /* SNI and the name verified (https) */
    if (r->up_target_host) { /* kong.service.set_target */
        dns = gw_dns_get(r->up_target_host);
        port = r->up_target_port;
        tls_name = r->up_target_host;
    } else if (b) {
        if (r->target < 0) {
            int probe = 0;
            int t = gw_balancer_pick(b, c, r->tried, &probe);
            if (t < 0) {
                gw_log(GW_LOG_ERR, "upstream %s: no healthy target (request %s)", b->name,
                       r->id);
                proxy_fail(c, 503, "failure to get a peer from the ring-balancer");
                return;
            }
            r->target = t;
            r->target_probe = probe;
            r->tried |= 1u << t;
            if (r->tries < 8)
                r->try_target[r->tries] = (int8_t)t;
        }
        struct gw_target *t = &b->targets[r->target];
        if (t->dns == NULL)
            t->dns = t->srv ? gw_dns_get_srv(t->host) : gw_dns_get(t->host);
        dns = t->dns;
        port = t->port;
        tls_name = t->host;
    } else if (dns == NULL) {
        dns = s->dns = gw_dns_get(s->host);
    }
    if (dns == NULL) {
        proxy_fail(c, 500, "An unexpected error occurred");
        return;
    }
    int rc = gw_dns_addr(dns, port, &sa, &salen);
    if (rc == GW_AGAIN) {
        gw_dns_wait(dns, &r->dns_link);
        return;
    }
    if (rc != GW_OK) {
        proxy_fail(c, 503, "name resolution failed");
        return;
    }
    struct gw_upstream *u = NULL;
    uint64_t tls_id = s->tls ? gw_tls_client_id(s->tls) : 0;
    if (r->tries == 0)
        u = gw_upstream_pool_get((struct sockaddr *)&sa, salen, tls_id, tls_name, s->grpc);
    if (u == NULL) {
        u = gw_upstream_connect((struct sockaddr *)&sa, salen);
        if (u && s->tls && tls_start(c, u, s->tls, tls_name) != GW_OK)
            return;
        if (u == NULL) {
            gw_log(GW_LOG_ERR, "connect() to %s:%d failed: %s", s->host, port, strerror(errno));
            if (b && r->target >= 0) {
                gw_balancer_report(b, r->target, GW_OUT_TCP, 0, -1);
                r->tries++;
                if (r->tries <= s->retries && r->body_bytes == 0) {
                    r->target = -1;
                    proxy_connect(c); /* another target; tried ones are skipped */
                    return;
                }
            }
            proxy_fail(c, 502, MSG_502);
            return;
        }
        if (s->grpc && (u->h2 = gw_h2up_new(s->https)) == NULL) {
            gw_upstream_free(u);
            proxy_fail(c, 500, "An unexpected error occurred");
            return;
        }
    }
    if (u->h2)
        gw_h2up_begin(u->h2); /* one stream per request */
    r->tries++;
    if (b && r->target >= 0 && !r->target_counted) {
        gw_balancer_conn(b, r->target, 1);
        r->target_counted = 1;
    }
    r->up = u;
    u->client = c;
    u->requests++;
    u->head_done = u->msg_done = u->informational = 0;
    u->resp_bytes = 0;
    u->parsed = 0;
    u->status_off = u->status_len = 0;
    u->head.nhdr = 0;
    u->head.parsing_value = 0;
    u->head.complete = 0;
    if (!resp_settings_ready) {
        gw_http_settings_init(&resp_settings);
        resp_settings_ready = 1;
    }
    llhttp_init(&u->parser, HTTP_RESPONSE, &resp_settings);
    u->parser.data = &u->hctx;
    u->hctx.head = &u->head;
    u->hctx.status_off = &u->status_off;
    u->hctx.status_len = &u->status_len;
    u->hctx.on_headers_complete = on_resp_headers_complete;
    u->hctx.on_body = NULL;
    u->hctx.trailers = NULL;
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
    const struct gw_req *r = c->req;
    if (u->state == GW_U_CONNECTING) {
        /* the TLS handshake is bounded by the connect timeout too (nginx) */
        ev = u->tls_handshake ? u->tls_want : EV_WRITE;
        after = (r->up_connect_timeout ? r->up_connect_timeout : s->connect_timeout) / 1000.0;
    } else {
        if (gw_buf_pending(&c->out) < GW_HIGH_WATER)
            ev |= EV_READ;
        /* HTTP/2: frames are what is written; request bytes it could not
         * take yet wait for a WINDOW_UPDATE, which comes with a read */
        if (gw_buf_pending(u->h2 ? gw_h2up_wire(u->h2) : &u->out)) {
            ev |= EV_WRITE;
            after = (r->up_write_timeout ? r->up_write_timeout : s->write_timeout) / 1000.0;
        } else {
            after = (r->up_read_timeout ? r->up_read_timeout : s->read_timeout) / 1000.0;
        }
        if (u->ssl) {
            ev |= u->tls_want; /* a read that waits for a write, or the reverse */
            /* bytes OpenSSL already holds never make the socket readable */
            if ((ev & EV_READ) && gw_tls_client_pending(u->ssl))
                ev_feed_event(loop, &u->io, EV_READ);
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

static int idempotent(const struct gw_conn *c)
{
    switch (c->parser.method) {
    case HTTP_GET: case HTTP_HEAD: case HTTP_PUT: case HTTP_DELETE: case HTTP_OPTIONS:
    case HTTP_TRACE:
        return 1;
    default:
        return 0;
    }
}

/* Whether a failed try may go to another target (Kong's retries): a connect
 * failure always; after bytes went out, only an idempotent request whose
 * body (if any) is in memory, never one whose body was streamed. */
static int retry_elsewhere(struct gw_conn *c, struct gw_upstream *u, int connect_failed)
{
    struct gw_req *r = c->req;
    struct gw_balancer *b = balancer_of(r);
    if (b == NULL || r->upgrade || u->resp_bytes || r->tries > r->service->retries)
        return 0;
    if (connect_failed)
        return r->body_bytes == 0 || r->body_mode == GW_BODY_READ || r->has_up_body;
    int body_in_memory = !r->has_body || r->body_mode == GW_BODY_READ || r->has_up_body;
    return idempotent(c) && body_in_memory;
}

static void up_failed_kind(struct gw_upstream *u, int status, const char *msg, const char *what,
                           int outcome, int connect_failed)
{
    struct gw_conn *c = u->client;
    struct gw_req *r = c->req;
    struct gw_balancer *b = balancer_of(r);
    if (retryable(c, u)) {
        GW_LOG(GW_LOG_INFO, "pooled upstream connection closed (%s), retrying", what);
        gw_upstream_free(u);
        r->up = NULL;
        proxy_connect(c);
        return;
    }
    if (b && r->target >= 0) {
        gw_log(GW_LOG_ERR, "upstream %s: target %s %s (request %s, try %d)", b->name,
               b->targets[r->target].name, what, r->id, r->tries);
        gw_balancer_report(b, r->target, outcome, 0, -1);
        target_release(r);
        if (retry_elsewhere(c, u, connect_failed)) {
            gw_upstream_free(u);
            r->up = NULL;
            r->target = -1;
            proxy_connect(c);
            return;
        }
    } else {
        gw_log(GW_LOG_ERR, "upstream %s:%d %s (request %s)", r->service->host,
               r->service->port, what, r->id);
    }
    proxy_fail(c, status, msg);
}

static void up_failed(struct gw_upstream *u, int status, const char *msg, const char *what)
{
    up_failed_kind(u, status, msg, what, status == 504 ? GW_OUT_TIMEOUT : GW_OUT_TCP, 0);
}

/* An HTTP/2 connection failed (a protocol error, the stream was reset):
 * the request fails, or the client connection closes once the response
 * started. */
static void h2_failed(struct gw_upstream *u)
{
    struct gw_conn *c = u->client;
    char what[200];
    snprintf(what, sizeof(what), "HTTP/2: %s", gw_h2up_error(u->h2));
    if (c->req->resp_started) {
        gw_log(GW_LOG_ERR, "upstream %s (request %s)", what, c->req->id);
        gw_conn_close(c);
        return;
    }
    up_failed(u, 502, MSG_502, what);
}

static int up_flush(struct gw_upstream *u)
{
    struct gw_buf *b = &u->out;
    if (u->h2) {
        if (gw_h2up_take(u->h2, &u->out) != 0) {
            h2_failed(u);
            return GW_ERROR;
        }
        b = gw_h2up_wire(u->h2);
    }
    while (gw_buf_pending(b)) {
        int want = 0;
        ssize_t n = u->ssl ? gw_tls_client_write(u->ssl, b->data + b->off, gw_buf_pending(b), &want)
                           : send(u->fd, b->data + b->off, gw_buf_pending(b), MSG_NOSIGNAL);
        if (n == -1) {
            if (errno == EAGAIN || errno == EWOULDBLOCK) {
                if (want == EV_READ)
                    u->tls_want = EV_READ; /* a write that waits for a read */
                break;
            }
            if (errno == EINTR)
                continue;
            char what[600];
            if (u->ssl && errno == EPROTO)
                snprintf(what, sizeof(what), "SSL_write() failed: %s", gw_tls_client_error());
            else
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
        gw_buf_append_field(b, name, h->name_len, base + h->value, h->value_len);
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
static void run_response_phase(struct gw_conn *c);

/* Runs body_filter over one decoded chunk (eof: the last call) and queues
 * what it made, chunk-encoded when the client gets chunks. */
static int filter_chunk(struct gw_conn *c, const char *p, size_t n, int eof)
{
    struct gw_req *r = c->req;
    r->chunk = p;
    r->chunk_len = n;
    r->chunk_eof = eof;
    if (r->phases & GW_PHASE_BODY_FILTER) {
        int rc = gw_lua_phase(c, GW_PHASE_BODY_FILTER);
        if (rc == GW_AGAIN) {
            gw_log(GW_LOG_ERR, "a body_filter handler tried to wait; request %s", r->id);
            gw_lua_release(r);
        }
    }
    if (r->zc) { /* compression comes after the plugins' filters */
        r->zout.len = r->zout.off = 0;
        if (gw_compress_feed(r->zc, r->chunk ? r->chunk : "", r->chunk_len, eof, &r->zout) != 0)
            return HPE_USER;
        r->chunk = r->zout.data;
        r->chunk_len = r->zout.len;
    }
    struct gw_buf *b = &c->out;
    if (r->chunk_len) {
        if (r->resp_chunked_out) {
            char hex[24];
            int k = snprintf(hex, sizeof(hex), "%zx\r\n", r->chunk_len);
            gw_buf_append(b, hex, (size_t)k);
        }
        gw_buf_append(b, r->chunk, r->chunk_len);
        if (r->resp_chunked_out)
            gw_buf_append(b, "\r\n", 2);
    }
    if (eof && r->resp_chunked_out) { /* the upstream's trailers (gRPC's status) stay */
        gw_buf_appends(b, "0\r\n");
        if (r->trailers.len)
            gw_buf_append(b, r->trailers.data, r->trailers.len);
        gw_buf_appends(b, "\r\n");
    }
    return 0;
}

static int on_body_filter(llhttp_t *p, const char *at, size_t len)
{
    struct gw_upstream *u = gw_container_of(p->data, struct gw_upstream, hctx);
    return filter_chunk(u->client, at, len, 0);
}

static int on_body_buffer(llhttp_t *p, const char *at, size_t len)
{
    struct gw_upstream *u = gw_container_of(p->data, struct gw_upstream, hctx);
    struct gw_req *r = u->client->req;
    if (r->resp_body.len + len > GW_MAX_BUFFERED_BODY)
        return HPE_USER;
    return gw_buf_append(&r->resp_body, at, len) == 0 ? 0 : HPE_USER;
}

/* Response complete: the upstream connection goes back to the pool or is
 * closed; the client connection finishes the request once flushed. eof:
 * the upstream closed to end the body. */
static void response_complete(struct gw_conn *c, struct gw_upstream *u, int eof)
{
    struct gw_req *r = c->req;
    int keep = !eof && llhttp_should_keep_alive(&u->parser) && r->body_done &&
               gw_buf_pending(&u->in) == 0 && gw_buf_pending(&u->out) == 0 &&
               (u->h2 == NULL || gw_h2up_reusable(u->h2));
    if (u->h2 && gw_h2up_grpc_status(u->h2) >= 0) {
        r->has_grpc_status = 1;
        r->grpc_status = gw_h2up_grpc_status(u->h2);
    }
    target_release(r);
    r->up = NULL;
    if (keep)
        gw_upstream_keep(u);
    else
        gw_upstream_free(u);
    if (!r->body_done)
        c->closing = 1; /* the upstream answered before the body ended */
    if (r->resp_decode == GW_DECODE_BUFFER) {
        if (r->phases & GW_PHASE_RESPONSE)
            run_response_phase(c);
        else
            gw_proxy_response_phase_done(c);
        return;
    }
    if (r->resp_decode == GW_DECODE_FILTER)
        filter_chunk(c, "", 0, 1);
    gw_conn_response_done(c);
}

/* Copies the upstream's response head into the request's lists so that
 * plugins can read and change it. */
static int copy_resp_head(struct gw_conn *c, struct gw_upstream *u)
{
    struct gw_req *r = c->req;
    const char *base = u->in.data + u->in.off;
    struct gw_hlist *early = r->resp_hdrs; /* set by plugins before the response came */
    r->up_resp_hdrs = gw_hlist_from_head(&r->pool, &u->head, base, u->head_len);
    if (r->up_resp_hdrs == NULL)
        return -1;
    r->resp_hdrs = gw_hlist_new(&r->pool, r->up_resp_hdrs->n + 8 + (early ? early->n : 0));
    if (r->resp_hdrs == NULL)
        return -1;
    for (int i = 0; i < r->up_resp_hdrs->n; i++) {
        const struct gw_hview *v = &r->up_resp_hdrs->v[i];
        if (!gw_http_hop_by_hop(v->name, v->nlen) &&
            gw_hlist_push(&r->pool, r->resp_hdrs, v->name, v->nlen, v->value, v->vlen) != 0)
            return -1;
    }
    /* what plugins set in rewrite/access replaces the upstream's (Kong) */
    for (int i = 0; early && i < early->n; i++)
        gw_hlist_apply(&r->pool, r->resp_hdrs, GW_HDR_CLEAR, early->v[i].name, early->v[i].nlen,
                       "", 0);
    for (int i = 0; early && i < early->n; i++)
        if (gw_hlist_push(&r->pool, r->resp_hdrs, early->v[i].name, early->v[i].nlen,
                          early->v[i].value, early->v[i].vlen) != 0)
            return -1;
    return 0;
}

/* Whether early (the headers plugins set before the response came) holds
 * a header named name. */
static int early_has(const struct gw_hlist *early, const char *name, size_t nlen)
{
    if (!(early->lens >> (nlen & 63) & 1)) /* no name of that length */
        return 0;
    for (int i = 0; i < early->n; i++)
        if (early->v[i].nlen == nlen && strncasecmp(early->v[i].name, name, nlen) == 0)
            return 1;
    return 0;
}

/* The response head of a request whose plugins set response headers in
 * rewrite/access and have no phase that reads the response (no
 * header_filter, body_filter, response or log handler, no status set):
 * the same bytes copy_resp_head and write_filtered_head would make (the
 * upstream's headers without hop-by-hop ones and without the names the
 * plugins set, then the plugins' headers, the status's own reason
 * phrase), written straight from the upstream's head without building
 * the two header lists. */
static int write_early_head(struct gw_conn *c, struct gw_upstream *u)
{
    struct gw_req *r = c->req;
    const struct gw_hlist *early = r->resp_hdrs;
    const char *base = u->in.data + u->in.off;
    struct gw_buf *b = &c->out;
    int status = r->status;
    if (llhttp_message_needs_eof(&u->parser) || !r->keepalive)
        c->closing = 1;
    size_t need = u->head_len + 96;
    for (int i = 0; i < early->n; i++)
        need += early->v[i].nlen + early->v[i].vlen + 4;
    if (gw_buf_reserve(b, need, 0) != 0)
        return -1;
    gw_write_status_line(b, status);
    for (int i = 0; i < u->head.nhdr; i++) {
        const struct gw_hdr *h = &u->head.hdr[i];
        const char *name = base + h->name;
        if (gw_http_hop_by_hop(name, h->name_len) || early_has(early, name, h->name_len))
            continue;
        gw_buf_append_field(b, name, h->name_len, base + h->value, h->value_len);
    }
    gw_write_header_lines(b, status, early->v, early->n, 0); /* as gw_conn_write_head */
    if (c->closing)
        gw_buf_appends(b, "Connection: close\r\n");
    else if (status == 426)
        gw_buf_appends(b, "Connection: Upgrade\r\n");
    r->resp_started = 1;
    return gw_buf_append(b, "\r\n", 2);
}

/* The response head went through header_filter: write it. body_filter
 * plugins get the decoded body and the client gets it chunked. */
static int write_filtered_head(struct gw_conn *c, struct gw_upstream *u)
{
    struct gw_req *r = c->req;
    if (r->resp_status)
        r->status = r->resp_status;
    if (llhttp_message_needs_eof(&u->parser) || !r->keepalive)
        c->closing = 1;
    int chunked = 0;
    if (((r->phases & GW_PHASE_BODY_FILTER) || r->zc) && !r->is_head && r->status != 204 &&
        r->status != 304) {
        if (r->zc) {
            gw_hlist_apply(&r->pool, r->resp_hdrs, GW_HDR_SET, "Content-Encoding", 16,
                           gw_compress_algo(r->zc) == GW_COMPRESS_GZIP ? "gzip" : "br",
                           gw_compress_algo(r->zc) == GW_COMPRESS_GZIP ? 4 : 2);
            gw_hlist_apply(&r->pool, r->resp_hdrs, GW_HDR_ADD, "Vary", 4, "Accept-Encoding", 15);
        }
        r->resp_decode = GW_DECODE_FILTER;
        u->hctx.on_body = on_body_filter;
        /* body_filter may change the body's length, so the body is always
         * re-framed (chunked, or closed for HTTP/1.0): a Content-Length a
         * plugin forgot to clear can never desynchronise the connection.
         * nginx keeps it unless a filter clears it: a documented difference. */
        gw_hlist_apply(&r->pool, r->resp_hdrs, GW_HDR_CLEAR, "Content-Length", 14, "", 0);
        gw_hlist_apply(&r->pool, r->resp_hdrs, GW_HDR_CLEAR, "Transfer-Encoding", 17, "", 0);
        if (r->http_minor >= 1) {
            chunked = r->resp_chunked_out = 1;
            u->hctx.trailers = &r->trailers;
        } else {
            c->closing = 1;
        }
    }
    r->resp_started = 1;
    return gw_conn_write_head(c, r->status, r->resp_hdrs, -1, chunked, c->closing);
}

static void run_header_filter(struct gw_conn *c)
{
    struct gw_req *r = c->req;
    if (!(r->phases & GW_PHASE_HEADER_FILTER))
        return;
    int rc = gw_lua_phase(c, GW_PHASE_HEADER_FILTER);
    if (rc == GW_AGAIN) {
        gw_log(GW_LOG_ERR, "a header_filter handler tried to wait; request %s", r->id);
        gw_lua_release(r);
    }
}

/* The whole upstream body is buffered: the response phase runs (it may
 * wait), then header_filter and body_filter, then the response goes out. */
static void run_response_phase(struct gw_conn *c)
{
    int rc = gw_lua_phase(c, GW_PHASE_RESPONSE);
    if (rc == GW_AGAIN)
        return; /* gw_conn_phase_done calls gw_proxy_response_phase_done */
    if (rc != GW_OK) {
        gw_conn_phase_done(c, GW_PHASE_RESPONSE, rc);
        return;
    }
    gw_proxy_response_phase_done(c);
}

void gw_proxy_response_phase_done(struct gw_conn *c)
{
    struct gw_req *r = c->req;
    if (r->has_exit) {
        gw_conn_send_exit(c);
        return;
    }
    run_header_filter(c);
    if (r->resp_status)
        r->status = r->resp_status;
    const char *body = r->resp_body.data ? r->resp_body.data : "";
    size_t len = r->resp_body.len;
    if ((r->phases & GW_PHASE_BODY_FILTER) && !r->is_head) {
        r->chunk = body;
        r->chunk_len = len;
        r->chunk_eof = 1;
        int rc = gw_lua_phase(c, GW_PHASE_BODY_FILTER);
        if (rc == GW_AGAIN) {
            gw_log(GW_LOG_ERR, "a body_filter handler tried to wait; request %s", r->id);
            gw_lua_release(r);
        }
        body = r->chunk;
        len = r->chunk_len;
    }
    if (r->zc && !r->is_head) {
        r->zout.len = r->zout.off = 0;
        if (gw_compress_feed(r->zc, body, len, 1, &r->zout) == 0) {
            body = r->zout.data ? r->zout.data : "";
            len = r->zout.len;
            int gz = gw_compress_algo(r->zc) == GW_COMPRESS_GZIP;
            gw_hlist_apply(&r->pool, r->resp_hdrs, GW_HDR_SET, "Content-Encoding", 16,
                           gz ? "gzip" : "br", gz ? 4 : 2);
            gw_hlist_apply(&r->pool, r->resp_hdrs, GW_HDR_ADD, "Vary", 4, "Accept-Encoding", 15);
        }
    }
    r->resp_started = 1;
    if (gw_conn_write_head(c, r->status, r->resp_hdrs, (long long)len, 0, c->closing) != 0 ||
        (!r->is_head && len && gw_buf_append(&c->out, body, len) != 0)) {
        gw_conn_close(c);
        return;
    }
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
                u->head.complete = 0;
                u->status_len = 0;
                u->parsed = 0;
                continue;
            }
            for (int i = 0; i < u->head.nhdr; i++)
                if (gw_http_unsafe_value(start + u->head.hdr[i].value, u->head.hdr[i].value_len)) {
                    up_failed(u, 502, MSG_502, "sent a folded header line");
                    return GW_ERROR;
                }
            u->head_len = (uint32_t)pos;
            r->upstream_status = u->parser.status_code;
            r->status = r->upstream_status;
            r->t_upstream_first = ev_now(gw_worker->loop);
            struct gw_balancer *b = balancer_of(r);
            if (b && r->target >= 0) {
                int st = r->upstream_status;
                gw_balancer_report(b, r->target, GW_OUT_OK, st,
                                   (r->t_upstream_first - r->t_upstream_start) * 1000);
                if (r->tries - 1 < 8 && r->tries > 0)
                    r->try_status[r->tries - 1] = (int16_t)st;
            }
            int tunnel = r->upstream_status == 101 && r->upgrade;
            /* the log handler's guard (gw/guard.h) may leave it out now
             * that the status is known, and the head then goes the direct way */
            if ((r->phases & GW_PHASE_LOG) && r->route && r->route->guard[GW_GUARD_LOG] &&
                gw_guard_idle(r->route, GW_GUARD_LOG, r->upstream_status))
                r->phases &= ~(uint32_t)GW_PHASE_LOG;
            /* a response that ended with its head goes the buffered way
             * (below): its body gets an exact Content-Length */
            int empty = u->msg_done && r->upstream_status != 204 && r->upstream_status != 304;
            if (!tunnel && r->resp_hdrs && !(r->phases & GW_PHASES_RESPONSE_LUA) &&
                !r->resp_status && !r->has_exit && (!empty || r->is_head)) {
                if (write_early_head(c, u) != 0)
                    return GW_ERROR;
            } else if (!tunnel && ((r->phases & GW_PHASES_RESPONSE_LUA) || r->resp_hdrs ||
                                   r->resp_status)) {
                if (copy_resp_head(c, u) != 0)
                    return GW_ERROR;
                /* a response that ended with its head goes the buffered
                 * way too: its filtered body gets an exact Content-Length
                 * instead of chunks (a gRPC trailers-only answer must stay
                 * one HEADERS frame) */
                if (((r->phases & GW_PHASE_RESPONSE) || empty) && !r->is_head) {
                    r->resp_decode = GW_DECODE_BUFFER;
                    u->hctx.on_body = on_body_buffer;
                    if (llhttp_message_needs_eof(&u->parser) || !r->keepalive)
                        c->closing = 1;
                } else {
                    run_header_filter(c);
                    if (c->req != r || r->resp_started)
                        return GW_ERROR;
                    if (r->has_exit) /* kong.response.exit in header_filter: its status */
                        r->resp_status = r->exit_status;
                    if (write_filtered_head(c, u) != 0)
                        return GW_ERROR;
                }
            } else {
                if (build_resp_head(c, u) != 0)
                    return GW_ERROR;
                r->resp_started = 1;
            }
            gw_buf_consume(&u->in, pos);
            u->parsed = 0;
            if (r->upstream_status == 101 && r->upgrade) {
                start_tunnel(c, u);
                if (forward_body(c) != GW_OK)
                    return GW_ERROR;
                continue;
            }
            if (u->msg_done) {
                response_complete(c, u, 0);
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
        if (!r->resp_decode && gw_buf_append(&c->out, start, used) != 0)
            return GW_ERROR;
        gw_buf_consume(&u->in, used);
        if (u->msg_done) {
            response_complete(c, u, 0);
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
        int want = 0;
        char frames[16384]; /* HTTP/2: read here, decoded into u->in */
        char *at = u->h2 ? frames : u->in.data + u->in.len;
        size_t room = u->h2 ? sizeof(frames) : u->in.cap - u->in.len;
        ssize_t n = u->ssl ? gw_tls_client_read(u->ssl, at, room, &want) : read(u->fd, at, room);
        if (n == -1) {
            if (errno == EINTR)
                continue;
            if (errno == EAGAIN || errno == EWOULDBLOCK) {
                if (want == EV_WRITE)
                    u->tls_want = EV_WRITE; /* a read that waits for a write */
                break;
            }
            char what[600];
            if (u->ssl && errno == EPROTO)
                snprintf(what, sizeof(what), "SSL_read() failed: %s", gw_tls_client_error());
            else
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
                response_complete(c, u, 1);
                return;
            }
            gw_log(GW_LOG_ERR, "upstream closed the connection mid-response (request %s)",
                   c->req->id);
            gw_conn_close(c);
            return;
        }
        u->resp_bytes += (uint64_t)n;
        if (u->h2) {
            if (gw_h2up_feed(u->h2, frames, (size_t)n, &u->in) != 0) {
                h2_failed(u);
                return;
            }
            if (up_flush(u) != GW_OK) /* acknowledgements, body the window lets out */
                return;
        } else {
            u->in.len += (size_t)n;
        }
        if (up_parse(u) != GW_OK)
            return;
        if ((size_t)n < (u->h2 ? sizeof(frames) : 4096))
            break;
    }
    if (gw_conn_flush(c) != GW_OK)
        return;
    if (c->req && c->req->up == u) {
        up_update(u);
        gw_conn_update(c);
    }
}

/* One step of the TLS handshake: GW_OK when it is done; GW_AGAIN when it
 * waits (watchers updated); GW_ERROR when the try failed: a refused
 * certificate counts as a connect failure (nginx: the next upstream). */
static int up_handshake(struct gw_upstream *u)
{
    char what[400];
    long vr;
    int rc = gw_tls_client_handshake(u->ssl, &u->tls_want, what, sizeof(what), &vr);
    if (rc == GW_AGAIN) {
        up_update(u);
        return GW_AGAIN;
    }
    if (rc != GW_OK) {
        u->reused = 0; /* never a stale pooled connection: not retried as one */
        up_failed_kind(u, 502, MSG_502, what, GW_OUT_TCP, 1);
        return GW_ERROR;
    }
    u->tls_handshake = 0;
    return GW_OK;
}

static void up_io_cb(struct ev_loop *loop, ev_io *w, int revents)
{
    struct gw_upstream *u = gw_container_of(w, struct gw_upstream, io);
    struct gw_conn *c = u->client;
    if (u->state == GW_U_CONNECTING) {
        if (!u->tls_handshake) {
            int err = 0;
            socklen_t len = sizeof(err);
            if (getsockopt(u->fd, SOL_SOCKET, SO_ERROR, &err, &len) == -1)
                err = errno;
            if (err) {
                char what[128];
                snprintf(what, sizeof(what), "connect() failed: %s", strerror(err));
                up_failed_kind(u, 502, MSG_502, what, GW_OUT_TCP, 1);
                return;
            }
            u->tls_handshake = u->ssl != NULL;
        }
        if (u->tls_handshake && up_handshake(u) != GW_OK)
            return;
        u->state = GW_U_ACTIVE;
        revents |= EV_WRITE;
    } else if (u->ssl && u->tls_want) {
        revents |= EV_READ | EV_WRITE; /* retry both: one waited for the other */
        u->tls_want = 0;
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
    const char *what = u->state == GW_U_CONNECTING
                           ? (u->tls_handshake ? "timed out in the TLS handshake"
                                               : "timed out connecting")
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
    u->reused = 0; /* a stale-connection retry is not for timeouts */
    up_failed_kind(u, 504, MSG_504, what, GW_OUT_TIMEOUT, u->state == GW_U_CONNECTING);
}
