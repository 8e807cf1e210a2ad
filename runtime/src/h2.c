/* HTTP/2 to clients, bridged to the HTTP/1.1 request path.
 *
 * The HTTP/2 connection (state GW_C_H2) owns an nghttp2 server session:
 * what conn.c reads from the socket or TLS goes to nghttp2_session_mem_recv,
 * and nghttp2_session_mem_send output is appended to c->out and flushed by
 * gw_conn_flush. Each request stream gets a bridge: an ordinary client
 * connection without a socket (gw_conn_adopt_stream), which routes, runs
 * plugins, proxies, logs and counts metrics exactly as for HTTP/1.1. The
 * stream queues an HTTP/1.1 request in s->req, which the connection reads
 * (gw_h2_bridge_read), and the connection's writes (gw_h2_bridge_write)
 * are the HTTP/1.1 response, parsed at once into HEADERS and DATA frames.
 * Nothing of the request path had to learn HTTP/2; the price is one extra
 * copy each way and a second parse of the heads, no system call: readiness
 * is fed to the connection's watcher (gw_conn_bridge_poke).
 *
 * Memory is bounded both ways. Request DATA is given back to flow control
 * (nghttp2_session_consume; automatic window updates are off) only once it
 * was written into the bridge, so a client cannot queue more than its
 * windows. A stream stops reading its bridge while more than
 * H2_BODY_HIGH bytes of response wait for DATA frames; the bridged
 * connection then stops at its own high-water mark, and so on upstream.
 *
 * nghttp2 callbacks never close or free the HTTP/2 connection: they only
 * queue frames and mark state; closing happens in gw_h2_send, after the
 * session returned. */
#include <arpa/inet.h>
#include <nghttp2/nghttp2.h>
#include <openssl/ssl.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include "gw/buf.h"
#include "gw/conn.h"
#include "gw/h2.h"
#include "gw/http.h"
#include "gw/log.h"
#include "gw/settings-t.h"
#include "gw/worker-t.h"

#define H2_MAX_STREAMS 128             /* SETTINGS_MAX_CONCURRENT_STREAMS */
#define H2_STREAM_WINDOW (256 * 1024)  /* request bytes a stream may have in flight */
#define H2_CONN_WINDOW (1024 * 1024)   /* request bytes a connection may have in flight */
#define H2_BODY_HIGH (64 * 1024)       /* response bytes a stream holds before pausing */
#define H2_RST_LIMIT 200               /* RST_STREAM frames a client may send per second */
#define H2_MAX_RESP_HEAD (256 * 1024)  /* a bridged response head never gets this large */

static const char preface[] = "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

struct gw_h2 {
    struct gw_conn *conn;
    nghttp2_session *ses;
    struct gw_list streams;        /* struct gw_h2_stream.link: every live stream */
    int nstreams;
    char local_ip[INET6_ADDRSTRLEN]; /* the address the client connected to ("": unknown) */
    int draining;                  /* GOAWAY(NO_ERROR) sent: close when no stream is left */
    int nlinger;                   /* streams answered whose request did not end */
    ev_prepare send_w;             /* writes what streams queued, once per loop turn */
    double rst_window;             /* start of the current 1 s window (ev_now) */
    int rst_count;                 /* RST_STREAM frames received in it */
};

struct gw_h2_stream {
    struct gw_list link;
    struct gw_h2 *h2;
    int32_t id;
    int open;               /* the bridge carries bytes both ways (0 before and once closed) */
    int paused;             /* the bridge's last write waited for body to drain */
    ev_io io;               /* never started: the bridge's close is fed to it */
    struct gw_conn *bridge; /* the bridged client connection; NULL once it closed */
    /* ---- the request, as HTTP/1.1 ---- */
    char *method, *path, *authority; /* pseudo-headers (malloc) */
    struct gw_buf hdrs;     /* "name: value\r\n" of the regular headers */
    struct gw_buf cookie;   /* cookie crumbs joined with "; " (RFC 9113 8.2.3) */
    size_t hdr_bytes;       /* header list size as SETTINGS_MAX_HEADER_LIST_SIZE counts it */
    int too_large;          /* the header list went past gw_settings.max_header_size */
    int expect100;          /* Expect: 100-continue: answered here, not forwarded */
    int has_clen;           /* the client gave Content-Length: the body goes as is */
    int chunked;            /* no Content-Length: DATA frames become chunks */
    int ended;              /* the client's END_STREAM arrived */
    int wdead;              /* the bridge takes no more request bytes: DATA is dropped */
    struct gw_buf req;      /* bytes for the bridge */
    size_t unconsumed;      /* DATA payload in req, not yet given back to flow control */
    /* ---- the response ---- */
    llhttp_t parser;
    struct gw_head_ctx hctx;
    struct gw_head head;
    uint32_t status_off, status_len;
    struct gw_buf in;       /* bridge bytes; the head stays at its start until submitted */
    struct gw_buf body;     /* response body waiting for DATA frames */
    struct gw_buf trailers; /* the bridged response's trailer lines ("name: value\r\n") */
    int is_head;            /* a HEAD request: the response has no body */
    int informational;      /* the message being parsed is a 1xx */
    int submitted;          /* the response head was submitted */
    int msg_done;           /* the whole body is in body */
    int deferred;           /* the data provider said DEFERRED: resume when bytes come */
    int failed;             /* RST_STREAM was submitted */
    int lingering;          /* the response ended, the client's request did not */
};

static llhttp_settings_t resp_settings;
static ssize_t data_read(nghttp2_session *ses, int32_t id, uint8_t *buf, size_t length,
                         uint32_t *flags, nghttp2_data_source *src, void *ud);
static nghttp2_session_callbacks *callbacks;
static nghttp2_option *options;

int gw_h2_preface(const char *p, size_t n)
{
    size_t k = n < sizeof(preface) - 1 ? n : sizeof(preface) - 1;
    if (memcmp(p, preface, k) != 0)
        return GW_DECLINED;
    return k == sizeof(preface) - 1 ? GW_OK : GW_AGAIN;
}

/* ---- flow control ---- */

/* Gives n request bytes of stream id back to the client's windows. */
static void h2_consume(struct gw_h2 *h2, int32_t id, size_t n)
{
    if (n == 0)
        return;
    nghttp2_session_consume_connection(h2->ses, n);
    nghttp2_session_consume_stream(h2->ses, id, n); /* fails harmlessly once it closed */
}

/* ---- streams ---- */

/* The frames streams queued go out before the loop polls again. */
static void schedule_send(struct gw_h2 *h2)
{
    if (!ev_is_active(&h2->send_w))
        ev_prepare_start(gw_worker->loop, &h2->send_w);
}

/* What the bridged connection waits for may be there: tell it. */
static void stream_update(struct gw_h2_stream *s)
{
    if (s->bridge)
        gw_conn_bridge_poke(s->bridge);
}

static void stream_close_bridge(struct gw_h2_stream *s)
{
    if (!s->open)
        return;
    s->open = 0;
    stream_update(s); /* the bridged connection sees EOF: it aborts what it still does */
}

/* Frees a stream. live: the session still exists (flow control is
 * settled); 0 when the whole session goes. */
static void stream_free(struct gw_h2_stream *s, int live)
{
    struct gw_h2 *h2 = s->h2;
    stream_close_bridge(s);
    ev_io_stop(gw_worker->loop, &s->io); /* a fed event must not outlive s */
    if (s->bridge && s->bridge->bridge)
        s->bridge->bridge->stream = NULL;
    if (live) {
        if (s->unconsumed)
            nghttp2_session_consume_connection(h2->ses, s->unconsumed);
        nghttp2_session_set_stream_user_data(h2->ses, s->id, NULL);
    }
    free(s->method);
    free(s->path);
    free(s->authority);
    gw_buf_free(&s->hdrs);
    gw_buf_free(&s->cookie);
    gw_buf_free(&s->req);
    gw_buf_free(&s->in);
    gw_buf_free(&s->body);
    gw_buf_free(&s->trailers);
    gw_list_remove(&s->link);
    h2->nstreams--;
    if (s->lingering)
        h2->nlinger--;
    free(s);
}

void gw_h2_bridge_closed(struct gw_h2_stream *s)
{
    s->bridge = NULL;
    if (s->open) { /* its EOF: the response ends here, or is cut (stream_read) */
        s->open = 0;
        ev_feed_event(gw_worker->loop, &s->io, EV_READ);
    }
}

ssize_t gw_h2_bridge_read(struct gw_h2_stream *s, char *dst, size_t room)
{
    if (s == NULL || !s->open)
        return 0;
    size_t n = gw_buf_take(&s->req, dst, room);
    if (n == 0)
        return -1;
    if (gw_buf_pending(&s->req) == 0) { /* all of it went: flow control gets it back */
        h2_consume(s->h2, s->id, s->unconsumed);
        s->unconsumed = 0;
        gw_buf_free(&s->req);
        schedule_send(s->h2);
    }
    return (ssize_t)n;
}

static void stream_parse(struct gw_h2_stream *s, size_t from);
static void stream_fail(struct gw_h2_stream *s, const char *why);

ssize_t gw_h2_bridge_write(struct gw_h2_stream *s, const char *p, size_t n)
{
    if (s == NULL || !s->open || s->failed || s->msg_done)
        return -2;
    if (gw_buf_pending(&s->body) >= H2_BODY_HIGH) { /* data_read pokes once it drained */
        s->paused = 1;
        return -1;
    }
    if (n > H2_BODY_HIGH)
        n = H2_BODY_HIGH;
    if (gw_buf_reserve(&s->in, n, 0) != 0) {
        stream_fail(s, "out of memory");
        return -2;
    }
    size_t from = s->in.len;
    memcpy(s->in.data + s->in.len, p, n);
    s->in.len += n;
    stream_parse(s, from);
    schedule_send(s->h2);
    return (ssize_t)n;
}

int gw_h2_bridge_ready(const struct gw_h2_stream *s, int events)
{
    int ready = 0;
    int closed = s == NULL || !s->open;
    if ((events & EV_READ) && (closed || gw_buf_pending(&s->req)))
        ready |= EV_READ;
    if ((events & EV_WRITE) && (closed || s->failed || s->msg_done ||
                                gw_buf_pending(&s->body) < H2_BODY_HIGH))
        ready |= EV_WRITE;
    return ready;
}

/* The stream cannot be served: RST_STREAM(INTERNAL_ERROR). The stream is
 * freed when nghttp2 closes it. */
static void stream_fail(struct gw_h2_stream *s, const char *why)
{
    if (s->failed)
        return;
    GW_LOG(GW_LOG_INFO, "HTTP/2 stream %d of %s reset: %s", (int)s->id, s->h2->conn->peer_ip,
           why);
    s->failed = 1;
    s->wdead = 1;
    nghttp2_submit_rst_stream(s->h2->ses, NGHTTP2_FLAG_NONE, s->id, NGHTTP2_INTERNAL_ERROR);
    stream_close_bridge(s);
}

/* Queued request bytes wait in s->req for the bridged connection to read
 * them (gw_h2_bridge_read gives their DATA payload back to flow control);
 * a bridge that closed takes no more: the rest of the body has nowhere to
 * go. */
static void stream_write(struct gw_h2_stream *s)
{
    if (!s->open && !s->wdead)
        s->wdead = 1;
    if (s->wdead && gw_buf_pending(&s->req)) {
        s->req.off = s->req.len = 0;
        h2_consume(s->h2, s->id, s->unconsumed);
        s->unconsumed = 0;
        gw_buf_free(&s->req);
    }
    stream_update(s);
}

/* Appends one request line or header line piece by piece. */
static int req_append(struct gw_h2_stream *s, const char *p, size_t n)
{
    return gw_buf_append(&s->req, p, n);
}

/* A response made here, not by the request path (431, 405): Kong's JSON
 * body, no bridge. */
static void stream_answer(struct gw_h2_stream *s, int status, const char *msg)
{
    char st[8], len[24];
    gw_buf_free(&s->body);
    if (gw_buf_appends(&s->body, "{\"message\":\"") != 0 || gw_buf_appends(&s->body, msg) != 0 ||
        gw_buf_appends(&s->body, "\"}") != 0) {
        stream_fail(s, "out of memory");
        return;
    }
    snprintf(st, sizeof(st), "%d", status);
    snprintf(len, sizeof(len), "%zu", gw_buf_pending(&s->body));
    static const char ctype[] = "application/json; charset=utf-8";
    nghttp2_nv nv[] = {
        {(uint8_t *)":status", (uint8_t *)st, 7, strlen(st), NGHTTP2_NV_FLAG_NONE},
        {(uint8_t *)"content-type", (uint8_t *)ctype, 12, sizeof(ctype) - 1,
         NGHTTP2_NV_FLAG_NONE},
        {(uint8_t *)"content-length", (uint8_t *)len, 14, strlen(len), NGHTTP2_NV_FLAG_NONE},
    };
    s->wdead = 1;
    s->msg_done = 1;
    s->submitted = 1;
    nghttp2_data_provider prd = {.source.ptr = s, .read_callback = data_read};
    if (nghttp2_submit_response(s->h2->ses, s->id, nv, 3, &prd) != 0)
        stream_fail(s, "could not submit a response");
}

static void stream_io_cb(struct ev_loop *loop, ev_io *w, int revents);

/* The request head is complete: write it as HTTP/1.1 and start the bridge. */
static void stream_begin(struct gw_h2_stream *s, int end_stream)
{
    struct gw_h2 *h2 = s->h2;
    s->ended = end_stream;
    if (s->too_large) {
        stream_answer(s, 431, "Request header fields too large");
        return;
    }
    if (s->method == NULL || s->path == NULL) { /* CONNECT: no tunnels here */
        stream_answer(s, 405, "Method not allowed");
        return;
    }
    s->is_head = strcmp(s->method, "HEAD") == 0;
    int ok = req_append(s, s->method, strlen(s->method)) == 0 && req_append(s, " ", 1) == 0 &&
             req_append(s, s->path, strlen(s->path)) == 0 &&
             req_append(s, " HTTP/1.1\r\n", 11) == 0;
    if (ok && s->authority)
        ok = req_append(s, "Host: ", 6) == 0 &&
             req_append(s, s->authority, strlen(s->authority)) == 0 &&
             req_append(s, "\r\n", 2) == 0;
    if (ok && gw_buf_pending(&s->hdrs))
        ok = req_append(s, s->hdrs.data + s->hdrs.off, gw_buf_pending(&s->hdrs)) == 0;
    if (ok && gw_buf_pending(&s->cookie))
        ok = req_append(s, "Cookie: ", 8) == 0 &&
             req_append(s, s->cookie.data + s->cookie.off, gw_buf_pending(&s->cookie)) == 0 &&
             req_append(s, "\r\n", 2) == 0;
    if (ok && !end_stream && !s->has_clen) {
        s->chunked = 1;
        ok = req_append(s, "Transfer-Encoding: chunked\r\n", 28) == 0;
    }
    if (ok)
        ok = req_append(s, "Connection: close\r\n\r\n", 21) == 0;
    gw_buf_free(&s->hdrs);
    gw_buf_free(&s->cookie);
    if (!ok) {
        stream_fail(s, "out of memory");
        return;
    }

    s->open = 1;
    s->bridge = gw_conn_adopt_stream(h2->conn->listen, h2->conn, h2->local_ip,
                                     gw_conn_tls(h2->conn), s);
    if (s->bridge == NULL) {
        s->open = 0;
        stream_fail(s, "could not adopt the bridge");
        return;
    }
    llhttp_init(&s->parser, HTTP_RESPONSE, &resp_settings);
    s->parser.data = &s->hctx;
    if (s->expect100 && !end_stream) {
        /* the body is wanted: say so now rather than make the client wait */
        nghttp2_nv nv = {(uint8_t *)":status", (uint8_t *)"100", 7, 3, NGHTTP2_NV_FLAG_NONE};
        nghttp2_submit_headers(h2->ses, NGHTTP2_FLAG_NONE, s->id, NULL, &nv, 1, NULL);
    }
    stream_write(s);
}

/* The client's END_STREAM: a chunked body gets its last chunk. */
static void stream_req_end(struct gw_h2_stream *s)
{
    if (s->ended)
        return;
    s->ended = 1;
    if (s->chunked && !s->wdead && s->open) {
        if (gw_buf_appends(&s->req, "0\r\n\r\n") != 0) {
            stream_fail(s, "out of memory");
            return;
        }
        stream_write(s);
    }
}

/* ---- the response coming back from the bridge ---- */

/* The trailer lines the bridged response ended with, as a HEADERS frame
 * that ends the stream (gRPC's grpc-status travels there). 0, or -1. */
static int stream_submit_trailers(struct gw_h2_stream *s)
{
    nghttp2_nv nv[GW_MAX_HEADERS];
    size_t n = 0;
    char *p = s->trailers.data, *end = p + s->trailers.len;
    while (p < end && n < GW_MAX_HEADERS) {
        char *eol = memchr(p, '\r', (size_t)(end - p));
        char *colon = memchr(p, ':', (size_t)(end - p));
        if (eol == NULL || colon == NULL || colon > eol)
            break;
        char *v = colon + 1;
        while (v < eol && (*v == ' ' || *v == '\t'))
            v++;
        size_t nl = (size_t)(colon - p);
        for (size_t k = 0; k < nl; k++) /* HTTP/2 names are lowercase */
            if (p[k] >= 'A' && p[k] <= 'Z')
                p[k] = (char)(p[k] + 32);
        if (!gw_http_hop_by_hop(p, nl) && !GW_NAME_IS(p, nl, "transfer-encoding") &&
            !GW_NAME_IS(p, nl, "content-length"))
            nv[n++] = (nghttp2_nv){(uint8_t *)p, (uint8_t *)v, nl, (size_t)(eol - v),
                                   NGHTTP2_NV_FLAG_NONE};
        p = eol + 2;
    }
    return nghttp2_submit_trailer(s->h2->ses, s->id, nv, n) == 0 ? 0 : -1;
}

static ssize_t data_read(nghttp2_session *ses, int32_t id, uint8_t *buf, size_t length,
                         uint32_t *flags, nghttp2_data_source *src, void *ud)
{
    /* the response body for DATA frames: DEFERRED while the bridge has not
     * sent more (stream_parse resumes it), EOF once the message ended */
    struct gw_h2_stream *s = src->ptr;
    size_t n = gw_buf_take(&s->body, buf, length);
    if (gw_buf_pending(&s->body) == 0 && s->msg_done) {
        *flags |= NGHTTP2_DATA_FLAG_EOF;
        gw_buf_free(&s->body);
        if (s->trailers.len) { /* the trailers end the stream, not this frame */
            *flags |= NGHTTP2_DATA_FLAG_NO_END_STREAM;
            if (stream_submit_trailers(s) != 0)
                return NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE;
        }
    } else if (n == 0) {
        s->deferred = 1;
        return NGHTTP2_ERR_DEFERRED;
    }
    if (s->paused && gw_buf_pending(&s->body) < H2_BODY_HIGH) {
        s->paused = 0;
        stream_update(s); /* below the mark again: the bridge may write */
    }
    return (ssize_t)n;
}

static struct gw_h2_stream *stream_of_parser(llhttp_t *p)
{
    return gw_container_of(p->data, struct gw_h2_stream, hctx);
}

/* Submits the response head the bridge sent, without its hop-by-hop
 * headers (RFC 9113 8.2.2). Returns 0, or -1. */
static int stream_submit_head(struct gw_h2_stream *s, int status, int body, int empty)
{
    nghttp2_nv nv[GW_MAX_HEADERS + 1];
    char st[3] = {(char)('0' + status / 100 % 10), (char)('0' + status / 10 % 10),
                  (char)('0' + status % 10)}; /* llhttp gives 100..999 */
    nv[0] = (nghttp2_nv){(uint8_t *)":status", (uint8_t *)st, 7, 3, NGHTTP2_NV_FLAG_NONE};
    size_t nnv = 1;
    for (int i = 0; i < s->head.nhdr; i++) {
        const struct gw_hdr *h = &s->head.hdr[i];
        char *name = s->in.data + h->name;
        if (gw_http_hop_by_hop(name, h->name_len) ||
            GW_NAME_IS(name, h->name_len, "transfer-encoding") ||
            (empty && GW_NAME_IS(name, h->name_len, "content-length")))
            continue; /* an empty body's length: the stream ends with the head */
        for (uint32_t k = 0; k < h->name_len; k++) /* HTTP/2 names are lowercase */
            if (name[k] >= 'A' && name[k] <= 'Z')
                name[k] = (char)(name[k] + 32);
        nv[nnv++] = (nghttp2_nv){(uint8_t *)name, (uint8_t *)s->in.data + h->value, h->name_len,
                                 h->value_len, NGHTTP2_NV_FLAG_NONE};
    }
    nghttp2_data_provider prd = {.source.ptr = s, .read_callback = data_read};
    s->submitted = 1;
    return nghttp2_submit_response(s->h2->ses, s->id, nv, nnv, body ? &prd : NULL) == 0 ? 0 : -1;
}

static int on_resp_headers_complete(llhttp_t *p)
{
    struct gw_h2_stream *s = stream_of_parser(p);
    int st = p->status_code;
    if (st >= 100 && st < 200) { /* 1xx: not forwarded (100 was answered here) */
        s->informational = 1;
        return 0;
    }
    /* Content-Length: 0 ends the stream with the head (gRPC's trailers-only
     * answers must come that way) */
    int empty = (p->flags & F_CONTENT_LENGTH) && p->content_length == 0 &&
                !(p->flags & F_CHUNKED);
    int body = !s->is_head && st != 204 && st != 304 && !empty;
    if (stream_submit_head(s, st, body, empty && !s->is_head) != 0)
        return HPE_USER;
    return s->is_head ? 1 : 0; /* 1: no body follows */
}

static int on_resp_message_complete(llhttp_t *p)
{
    struct gw_h2_stream *s = stream_of_parser(p);
    if (s->informational) { /* the final response follows */
        s->informational = 0;
        s->head.nhdr = 0;
        s->head.complete = 0;
        s->head.parsing_value = 0;
        s->status_len = 0;
        return 0;
    }
    s->msg_done = 1;
    return HPE_PAUSED; /* nothing may follow: the bridge said Connection: close */
}

static int on_resp_body(llhttp_t *p, const char *at, size_t len)
{
    struct gw_h2_stream *s = stream_of_parser(p);
    return gw_buf_append(&s->body, at, len) == 0 ? 0 : HPE_USER;
}

/* What parsing produced goes on: a deferred DATA provider is resumed, and
 * the bridge is closed once the message is complete. */
static void stream_parsed(struct gw_h2_stream *s)
{
    if (s->deferred && (gw_buf_pending(&s->body) || s->msg_done)) {
        s->deferred = 0;
        nghttp2_session_resume_data(s->h2->ses, s->id);
    }
    if (s->msg_done)
        stream_close_bridge(s); /* the bridged connection already finished its request */
}

/* Parses what s->in holds past what was parsed. */
static void stream_parse(struct gw_h2_stream *s, size_t from)
{
    s->hctx.base = s->in.data;
    llhttp_errno_t e = llhttp_execute(&s->parser, s->in.data + from, s->in.len - from);
    if (e != HPE_OK && e != HPE_PAUSED) {
        stream_fail(s, "the bridged response could not be parsed");
        return;
    }
    if (s->submitted) { /* the head went out: body bytes were copied */
        s->in.off = s->in.len = 0;
    } else if (s->in.len > H2_MAX_RESP_HEAD) {
        stream_fail(s, "the bridged response head is too large");
        return;
    }
    stream_parsed(s);
}

/* The bridged connection closed: a response without length ends here,
 * any other is cut. */
static void stream_read(struct gw_h2_stream *s)
{
    if (s->open || s->failed || s->msg_done)
        return;
    if (llhttp_get_errno(&s->parser) == HPE_OK)
        llhttp_finish(&s->parser);
    if (!s->msg_done) {
        stream_fail(s, "the bridged response ended early");
        return;
    }
    stream_parsed(s);
}

/* Runs before the loop polls again: the frames of every stream that got
 * bytes in this turn go out together (fewer, larger writes and TLS records
 * than one flush per stream event). */
static void send_prepare_cb(struct ev_loop *loop, ev_prepare *w, int revents)
{
    struct gw_h2 *h2 = gw_container_of(w, struct gw_h2, send_w);
    ev_prepare_stop(loop, w);
    gw_h2_send(h2->conn);
}

static void stream_io_cb(struct ev_loop *loop, ev_io *w, int revents)
{
    struct gw_h2_stream *s = gw_container_of(w, struct gw_h2_stream, io);
    if (revents & EV_READ)
        stream_read(s);
    schedule_send(s->h2);
}

/* ---- session callbacks ---- */

static int on_begin_headers(nghttp2_session *ses, const nghttp2_frame *frame, void *ud)
{
    struct gw_h2 *h2 = ud;
    if (frame->hd.type != NGHTTP2_HEADERS || frame->headers.cat != NGHTTP2_HCAT_REQUEST)
        return 0;
    /* zeroed but for the response head's header array (nhdr bounds it) */
    struct gw_h2_stream *s = malloc(sizeof(*s));
    if (s == NULL)
        return NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE; /* RST_STREAM for this stream */
    size_t after = offsetof(struct gw_h2_stream, head) + sizeof(s->head);
    memset(s, 0, offsetof(struct gw_h2_stream, head.hdr));
    memset((char *)s + after, 0, sizeof(*s) - after);
    s->h2 = h2;
    s->id = frame->hd.stream_id;
    ev_init(&s->io, stream_io_cb);
    s->hctx.head = &s->head;
    s->hctx.status_off = &s->status_off;
    s->hctx.status_len = &s->status_len;
    s->hctx.on_headers_complete = on_resp_headers_complete;
    s->hctx.on_message_complete = on_resp_message_complete;
    s->hctx.on_body = on_resp_body;
    s->hctx.trailers = &s->trailers;
    gw_list_insert_tail(&h2->streams, &s->link);
    h2->nstreams++;
    nghttp2_session_set_stream_user_data(ses, s->id, s);
    return 0;
}

static char *dup_n(const uint8_t *p, size_t n)
{
    char *d = malloc(n + 1);
    if (d) {
        memcpy(d, p, n);
        d[n] = '\0';
    }
    return d;
}

#define IS(lit) (namelen == sizeof(lit) - 1 && memcmp(name, lit, namelen) == 0)

/* One request header (nghttp2 checked its syntax: lowercase names, no CR,
 * LF or NUL in values, pseudo-headers first and known, no
 * connection-specific headers). */
static int on_header(nghttp2_session *ses, const nghttp2_frame *frame, const uint8_t *name,
                     size_t namelen, const uint8_t *value, size_t valuelen, uint8_t flags,
                     void *ud)
{
    if (frame->hd.type != NGHTTP2_HEADERS || frame->headers.cat != NGHTTP2_HCAT_REQUEST)
        return 0; /* trailers: not forwarded */
    struct gw_h2_stream *s = nghttp2_session_get_stream_user_data(ses, frame->hd.stream_id);
    if (s == NULL || s->too_large)
        return 0;
    s->hdr_bytes += namelen + valuelen + 32;
    if (s->hdr_bytes > gw_settings.max_header_size) {
        s->too_large = 1; /* answered 431 at the end of the head */
        return 0;
    }
    char **pseudo = NULL;
    if (IS(":method"))
        pseudo = &s->method;
    else if (IS(":path"))
        pseudo = &s->path;
    else if (IS(":authority"))
        pseudo = &s->authority;
    else if (namelen && name[0] == ':')
        return 0; /* :scheme: the listener decides what the scheme is */
    else if (IS("host") && s->authority == NULL)
        pseudo = &s->authority; /* without :authority, Host names the host */
    if (pseudo) {
        if (*pseudo == NULL && (*pseudo = dup_n(value, valuelen)) == NULL)
            return NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE;
        return 0;
    }
    if (IS("host"))
        return 0; /* :authority wins */
    if (IS("te"))
        return 0; /* "trailers" at most: hop-by-hop */
    if (IS("expect")) {
        s->expect100 = gw_http_has_token((const char *)value, valuelen, "100-continue");
        return 0;
    }
    if (IS("cookie")) {
        if ((gw_buf_pending(&s->cookie) && gw_buf_append(&s->cookie, "; ", 2) != 0) ||
            gw_buf_append(&s->cookie, value, valuelen) != 0)
            return NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE;
        return 0;
    }
    if (IS("content-length"))
        s->has_clen = 1;
    if (gw_buf_append(&s->hdrs, name, namelen) != 0 || gw_buf_append(&s->hdrs, ": ", 2) != 0 ||
        gw_buf_append(&s->hdrs, value, valuelen) != 0 || gw_buf_append(&s->hdrs, "\r\n", 2) != 0)
        return NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE;
    return 0;
}

#undef IS

/* Request body bytes: into the bridge, framed as the head said. */
static int on_data_chunk(nghttp2_session *ses, uint8_t flags, int32_t id, const uint8_t *data,
                         size_t len, void *ud)
{
    struct gw_h2 *h2 = ud;
    struct gw_h2_stream *s = nghttp2_session_get_stream_user_data(ses, id);
    if (s == NULL || !s->open || s->wdead) {
        h2_consume(h2, id, len); /* nobody reads it: the window opens again at once */
        return 0;
    }
    if (s->chunked) {
        char line[24];
        int n = snprintf(line, sizeof(line), "%zx\r\n", len);
        if (gw_buf_append(&s->req, line, (size_t)n) != 0)
            return NGHTTP2_ERR_CALLBACK_FAILURE;
    }
    if (gw_buf_append(&s->req, data, len) != 0 ||
        (s->chunked && gw_buf_append(&s->req, "\r\n", 2) != 0))
        return NGHTTP2_ERR_CALLBACK_FAILURE;
    s->unconsumed += len;
    stream_write(s);
    return 0;
}

static int on_frame_recv(nghttp2_session *ses, const nghttp2_frame *frame, void *ud)
{
    struct gw_h2 *h2 = ud;
    struct gw_h2_stream *s;
    switch (frame->hd.type) {
    case NGHTTP2_HEADERS:
        s = nghttp2_session_get_stream_user_data(ses, frame->hd.stream_id);
        if (s == NULL)
            break;
        if (frame->headers.cat == NGHTTP2_HCAT_REQUEST)
            stream_begin(s, (frame->hd.flags & NGHTTP2_FLAG_END_STREAM) != 0);
        else if (frame->hd.flags & NGHTTP2_FLAG_END_STREAM)
            stream_req_end(s);
        break;
    case NGHTTP2_DATA:
        s = nghttp2_session_get_stream_user_data(ses, frame->hd.stream_id);
        if (s && (frame->hd.flags & NGHTTP2_FLAG_END_STREAM))
            stream_req_end(s);
        break;
    case NGHTTP2_RST_STREAM: {
        /* rapid reset (CVE-2023-44487): streams opened and cancelled at
         * once cost us work the concurrency limit never sees */
        double now = ev_now(gw_worker->loop);
        if (now - h2->rst_window >= 1.0) {
            h2->rst_window = now;
            h2->rst_count = 0;
        }
        if (++h2->rst_count > H2_RST_LIMIT) {
            GW_LOG(GW_LOG_WARN, "HTTP/2 client %s reset more than %d streams in a second: "
                   "closing the connection", h2->conn->peer_ip, H2_RST_LIMIT);
            nghttp2_session_terminate_session(ses, NGHTTP2_ENHANCE_YOUR_CALM);
        }
        break;
    }
    default:
        break;
    }
    return 0;
}

/* A response that ended while the client still sends its request (an
 * early 404 or 413): the stream lingers half-open, its DATA dropped. It is
 * not reset at once (curl 7.x fails a request whose stream gets
 * RST_STREAM(NO_ERROR) while it uploads); a client that leaves it open
 * without sending gets RST_STREAM(NO_ERROR) after the body timeout
 * (gw_h2_timeout). */
static int on_frame_send(nghttp2_session *ses, const nghttp2_frame *frame, void *ud)
{
    struct gw_h2 *h2 = ud;
    if ((frame->hd.type != NGHTTP2_DATA && frame->hd.type != NGHTTP2_HEADERS) ||
        !(frame->hd.flags & NGHTTP2_FLAG_END_STREAM))
        return 0;
    struct gw_h2_stream *s = nghttp2_session_get_stream_user_data(ses, frame->hd.stream_id);
    if (s && !s->ended && !s->lingering) {
        s->lingering = 1;
        h2->nlinger++;
    }
    return 0;
}

static int on_stream_close(nghttp2_session *ses, int32_t id, uint32_t error_code, void *ud)
{
    struct gw_h2_stream *s = nghttp2_session_get_stream_user_data(ses, id);
    if (s)
        stream_free(s, 1);
    return 0;
}

/* ---- the connection ---- */

static int h2_init_once(void)
{
    if (callbacks)
        return 0;
    gw_http_settings_init(&resp_settings);
    if (nghttp2_session_callbacks_new(&callbacks) != 0)
        return -1;
    nghttp2_session_callbacks_set_on_begin_headers_callback(callbacks, on_begin_headers);
    nghttp2_session_callbacks_set_on_header_callback(callbacks, on_header);
    nghttp2_session_callbacks_set_on_data_chunk_recv_callback(callbacks, on_data_chunk);
    nghttp2_session_callbacks_set_on_frame_recv_callback(callbacks, on_frame_recv);
    nghttp2_session_callbacks_set_on_stream_close_callback(callbacks, on_stream_close);
    nghttp2_session_callbacks_set_on_frame_send_callback(callbacks, on_frame_send);
    if (nghttp2_option_new(&options) != 0)
        return -1;
    /* request DATA is acknowledged only once the bridge took it */
    nghttp2_option_set_no_auto_window_update(options, 1);
    return 0;
}

void gw_h2_start(struct gw_conn *c)
{
    struct gw_h2 *h2 = calloc(1, sizeof(*h2));
    if (h2 == NULL || h2_init_once() != 0 ||
        nghttp2_session_server_new2(&h2->ses, callbacks, h2, options) != 0) {
        gw_log(GW_LOG_ERR, "could not start an HTTP/2 session for %s", c->peer_ip);
        free(h2);
        gw_conn_close(c);
        return;
    }
    h2->conn = c;
    gw_list_init(&h2->streams);
    ev_prepare_init(&h2->send_w, send_prepare_cb);
    h2->rst_window = ev_now(gw_worker->loop);
    struct sockaddr_storage local;
    socklen_t llen = sizeof(local);
    if (getsockname(c->fd, (struct sockaddr *)&local, &llen) == 0) {
        const void *a = local.ss_family == AF_INET6
                            ? (const void *)&((struct sockaddr_in6 *)&local)->sin6_addr
                            : (const void *)&((struct sockaddr_in *)&local)->sin_addr;
        if ((local.ss_family == AF_INET || local.ss_family == AF_INET6) &&
            inet_ntop(local.ss_family, a, h2->local_ip, sizeof(h2->local_ip)) == NULL)
            h2->local_ip[0] = '\0';
    }
    nghttp2_settings_entry iv[] = {
        {NGHTTP2_SETTINGS_MAX_CONCURRENT_STREAMS, H2_MAX_STREAMS},
        {NGHTTP2_SETTINGS_INITIAL_WINDOW_SIZE, H2_STREAM_WINDOW},
        {NGHTTP2_SETTINGS_MAX_HEADER_LIST_SIZE, (uint32_t)gw_settings.max_header_size},
    };
    c->h2 = h2;
    c->state = GW_C_H2;
    if (nghttp2_submit_settings(h2->ses, NGHTTP2_FLAG_NONE, iv, 3) != 0 ||
        nghttp2_session_set_local_window_size(h2->ses, NGHTTP2_FLAG_NONE, 0, H2_CONN_WINDOW) != 0) {
        gw_log(GW_LOG_ERR, "could not start an HTTP/2 session for %s", c->peer_ip);
        gw_conn_close(c);
        return;
    }
    if (gw_buf_pending(&c->in))
        gw_h2_recv(c);
    else
        gw_h2_send(c);
}

int gw_h2_recv(struct gw_conn *c)
{
    struct gw_h2 *h2 = c->h2;
    ssize_t n = nghttp2_session_mem_recv(h2->ses, (const uint8_t *)c->in.data + c->in.off,
                                         gw_buf_pending(&c->in));
    c->in.off = c->in.len = 0;
    if (n < 0) {
        GW_LOG(GW_LOG_INFO, "HTTP/2 client %s: %s", c->peer_ip, nghttp2_strerror((int)n));
        gw_conn_close(c);
        return GW_ERROR;
    }
    return gw_h2_send(c);
}

int gw_h2_send(struct gw_conn *c)
{
    struct gw_h2 *h2 = c->h2;
    for (;;) {
        int produced = 0;
        while (gw_buf_pending(&c->out) < GW_HIGH_WATER) {
            const uint8_t *data;
            ssize_t n = nghttp2_session_mem_send(h2->ses, &data);
            if (n < 0) {
                GW_LOG(GW_LOG_INFO, "HTTP/2 client %s: %s", c->peer_ip, nghttp2_strerror((int)n));
                gw_conn_close(c);
                return GW_ERROR;
            }
            if (n == 0)
                break;
            if (gw_buf_append(&c->out, data, (size_t)n) != 0) {
                gw_conn_close(c);
                return GW_ERROR;
            }
            produced = 1;
        }
        if (gw_buf_pending(&c->out) == 0)
            break;
        if (gw_conn_flush(c) != GW_OK)
            return GW_ERROR;
        if (gw_buf_pending(&c->out) || !produced)
            break; /* the socket is full: EV_WRITE brings us back */
    }
    if (gw_buf_pending(&c->out) == 0 &&
        ((!nghttp2_session_want_read(h2->ses) && !nghttp2_session_want_write(h2->ses)) ||
         (h2->draining && h2->nstreams == 0))) {
        gw_conn_close(c);
        return GW_ERROR;
    }
    gw_conn_update(c);
    return GW_OK;
}

int gw_h2_wants_read(const struct gw_conn *c)
{
    return c->h2 && nghttp2_session_want_read(c->h2->ses);
}

int gw_h2_idle(const struct gw_conn *c)
{
    return c->h2 && c->h2->nstreams == 0;
}

int gw_h2_blocked(const struct gw_conn *c)
{
    const struct gw_h2 *h2 = c->h2;
    if (h2 == NULL)
        return 0;
    int conn_closed = nghttp2_session_get_remote_window_size(h2->ses) <= 0;
    for (const struct gw_list *l = h2->streams.next; l != &h2->streams; l = l->next) {
        const struct gw_h2_stream *s = gw_container_of(l, struct gw_h2_stream, link);
        if (!s->submitted || s->failed || gw_buf_pending(&s->body) == 0)
            continue;
        if (conn_closed || nghttp2_session_get_stream_remote_window_size(h2->ses, s->id) <= 0)
            return 1;
    }
    return 0;
}

void gw_h2_drain(struct gw_conn *c)
{
    struct gw_h2 *h2 = c->h2;
    if (h2->draining)
        return;
    h2->draining = 1;
    nghttp2_submit_goaway(h2->ses, NGHTTP2_FLAG_NONE,
                          nghttp2_session_get_last_proc_stream_id(h2->ses), NGHTTP2_NO_ERROR,
                          NULL, 0);
    gw_h2_send(c);
}

int gw_h2_lingering(const struct gw_conn *c)
{
    return c->h2 && c->h2->nlinger > 0;
}

void gw_h2_timeout(struct gw_conn *c)
{
    struct gw_h2 *h2 = c->h2;
    if (gw_buf_pending(&c->out) || gw_h2_blocked(c) || (h2->draining && h2->nstreams == 0)) {
        gw_conn_close(c); /* the send timeout, or a GOAWAY the client never read */
        return;
    }
    if (h2->nstreams == 0) {
        gw_h2_drain(c); /* idle: closes as soon as the GOAWAY is written */
        return;
    }
    for (struct gw_list *l = h2->streams.next; l != &h2->streams; l = l->next) {
        struct gw_h2_stream *s = gw_container_of(l, struct gw_h2_stream, link);
        if (s->lingering && !s->failed) {
            s->failed = 1;
            nghttp2_submit_rst_stream(h2->ses, NGHTTP2_FLAG_NONE, s->id, NGHTTP2_NO_ERROR);
        }
    }
    gw_h2_send(c);
}

void gw_h2_free(struct gw_conn *c)
{
    struct gw_h2 *h2 = c->h2;
    ev_prepare_stop(gw_worker->loop, &h2->send_w);
    while (!gw_list_empty(&h2->streams))
        stream_free(gw_container_of(h2->streams.next, struct gw_h2_stream, link), 0);
    nghttp2_session_del(h2->ses);
    free(h2);
    c->h2 = NULL;
}
