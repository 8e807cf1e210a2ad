/* HTTP/2 to upstreams: see gw/h2_up.h.
 *
 * One stream at a time per connection (the pool keeps connections, not
 * streams: a connection carries its requests one after the other, as an
 * HTTP/1.1 keepalive connection does). The request's HTTP/1.1 head becomes
 * the HEADERS frame (names lowercased, connection-specific headers dropped,
 * Host as :authority, "te: trailers" added as gRPC requires); its body,
 * de-framed by llhttp, goes out as DATA frames, at most H2UP_BODY_HIGH bytes
 * held here. The response comes back as HTTP/1.1: the head, then a chunked
 * body whose last chunk carries the trailers. */
#include <nghttp2/nghttp2.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "gw/buf.h"
#include "gw/core-t.h"
#include "gw/h2_up.h"
#include "gw/http.h"

#define H2UP_BODY_HIGH (64 * 1024)    /* request body bytes held for DATA frames */
#define H2UP_WINDOW (1024 * 1024)     /* response bytes the upstream may send ahead */
#define H2UP_MAX_HEADERS 128

struct hdr {
    uint32_t name, name_len, value, value_len; /* offsets into hbuf */
};

struct gw_h2up {
    nghttp2_session *ses;
    int https;
    struct gw_buf wire;     /* frames to write */
    /* ---- the request ---- */
    llhttp_t req;
    struct gw_buf url;
    struct gw_buf hbuf;     /* header names and values */
    struct hdr hdr[H2UP_MAX_HEADERS];
    int nh;
    int new_hdr;            /* the next field piece starts a header */
    int in_value;           /* value pieces of the last header are coming */
    int32_t stream;         /* the request's stream, -1 before it is submitted */
    struct gw_buf body;     /* request body waiting for DATA frames */
    int req_done;           /* the whole request was taken */
    int deferred;           /* the data provider waits for body bytes */
    /* ---- the response ---- */
    struct gw_buf *resp;    /* where gw_h2up_feed writes the HTTP/1.1 response */
    struct gw_buf rhdrs;    /* "name: value\r\n" of the HEADERS frame being received */
    char clen[24];          /* its content-length, "" when none */
    int status;
    int resp_head;          /* the final response head was written */
    int resp_ended;         /* END_STREAM came and the body's end was written */
    int no_body;            /* a 204 or 304: nothing follows its head */
    int closed;             /* the stream is closed */
    int goaway;
    int grpc_status;
    int failed;
    char err[160];
};

static nghttp2_session_callbacks *callbacks;
static llhttp_settings_t req_settings;

static void fail(struct gw_h2up *h, const char *fmt, const char *arg)
{
    if (h->failed)
        return;
    h->failed = 1;
    snprintf(h->err, sizeof(h->err), fmt, arg);
}

static int emit(struct gw_h2up *h, const void *p, size_t n)
{
    if (h->resp && gw_buf_append(h->resp, p, n) == 0)
        return 0;
    fail(h, "%s", "out of memory");
    return -1;
}

/* ---- the request, parsed from the proxy's HTTP/1.1 ---- */

static struct gw_h2up *of_parser(llhttp_t *p)
{
    return p->data;
}

static int on_url(llhttp_t *p, const char *at, size_t len)
{
    return gw_buf_append(&of_parser(p)->url, at, len) == 0 ? 0 : HPE_USER;
}

static int on_header_field(llhttp_t *p, const char *at, size_t len)
{
    struct gw_h2up *h = of_parser(p);
    if (h->new_hdr) {
        if (h->nh == H2UP_MAX_HEADERS)
            return HPE_USER;
        h->hdr[h->nh++] = (struct hdr){(uint32_t)h->hbuf.len, 0, 0, UINT32_MAX};
        h->new_hdr = 0;
        h->in_value = 0;
    }
    h->hdr[h->nh - 1].name_len += (uint32_t)len;
    return gw_buf_append(&h->hbuf, at, len) == 0 ? 0 : HPE_USER;
}

static int on_header_value(llhttp_t *p, const char *at, size_t len)
{
    struct gw_h2up *h = of_parser(p);
    struct hdr *e = &h->hdr[h->nh - 1];
    if (!h->in_value) {
        e->value = (uint32_t)h->hbuf.len;
        e->value_len = 0;
        h->in_value = 1;
    }
    e->value_len += (uint32_t)len;
    return gw_buf_append(&h->hbuf, at, len) == 0 ? 0 : HPE_USER;
}

static int on_header_value_complete(llhttp_t *p)
{
    struct gw_h2up *h = of_parser(p);
    struct hdr *e = &h->hdr[h->nh - 1];
    if (e->value_len == UINT32_MAX) { /* an empty value: no piece came */
        e->value = (uint32_t)h->hbuf.len;
        e->value_len = 0;
    }
    h->new_hdr = 1;
    h->in_value = 0;
    return 0;
}

static ssize_t body_read(nghttp2_session *ses, int32_t id, uint8_t *buf, size_t length,
                         uint32_t *flags, nghttp2_data_source *src, void *ud)
{
    struct gw_h2up *h = ud;
    size_t n = gw_buf_take(&h->body, buf, length);
    if (gw_buf_pending(&h->body) == 0) {
        gw_buf_free(&h->body);
        if (h->req_done) {
            *flags |= NGHTTP2_DATA_FLAG_EOF;
        } else if (n == 0) {
            h->deferred = 1;
            return NGHTTP2_ERR_DEFERRED;
        }
    }
    return (ssize_t)n;
}

/* Headers a request on HTTP/2 must not carry (RFC 9113 8.2.2), Host
 * (:authority carries it) and TE (only "trailers", added below). */
static int skipped(const char *n, size_t len)
{
    return gw_http_hop_by_hop(n, len) || GW_NAME_IS(n, len, "transfer-encoding") ||
           GW_NAME_IS(n, len, "host");
}

#define NV(n, nl, v, vl) \
    ((nghttp2_nv){(uint8_t *)(n), (uint8_t *)(v), (nl), (vl), NGHTTP2_NV_FLAG_NONE})

static int on_req_headers_complete(llhttp_t *p)
{
    struct gw_h2up *h = of_parser(p);
    nghttp2_nv nv[H2UP_MAX_HEADERS + 5];
    size_t n = 0;
    const char *method = llhttp_method_name((llhttp_method_t)p->method);
    const char *scheme = h->https ? "https" : "http";
    const char *authority = "";
    size_t alen = 0;
    char *base = h->hbuf.data;
    for (int i = 0; i < h->nh; i++)
        if (GW_NAME_IS(base + h->hdr[i].name, h->hdr[i].name_len, "host")) {
            authority = base + h->hdr[i].value;
            alen = h->hdr[i].value_len;
        }
    nv[n++] = NV(":method", 7, method, strlen(method));
    nv[n++] = NV(":scheme", 7, scheme, strlen(scheme));
    nv[n++] = NV(":authority", 10, authority, alen);
    nv[n++] = NV(":path", 5, h->url.data ? h->url.data : "/", h->url.data ? h->url.len : 1);
    for (int i = 0; i < h->nh; i++) {
        char *name = base + h->hdr[i].name;
        size_t nl = h->hdr[i].name_len;
        if (skipped(name, nl))
            continue;
        for (size_t k = 0; k < nl; k++) /* HTTP/2 names are lowercase */
            if (name[k] >= 'A' && name[k] <= 'Z')
                name[k] = (char)(name[k] + 32);
        nv[n++] = NV(name, nl, base + h->hdr[i].value, h->hdr[i].value_len);
    }
    nv[n++] = NV("te", 2, "trailers", 8);
    int body = (p->flags & F_CHUNKED) || ((p->flags & F_CONTENT_LENGTH) && p->content_length);
    nghttp2_data_provider prd = {.read_callback = body_read};
    int32_t id = nghttp2_submit_request(h->ses, NULL, nv, n, body ? &prd : NULL, NULL);
    if (id < 0) {
        fail(h, "could not submit the request: %s", nghttp2_strerror(id));
        return HPE_USER;
    }
    h->stream = id;
    return 0;
}

static int on_req_body(llhttp_t *p, const char *at, size_t len)
{
    struct gw_h2up *h = of_parser(p);
    return gw_buf_append(&h->body, at, len) == 0 ? 0 : HPE_USER;
}

static int on_req_message_complete(llhttp_t *p)
{
    of_parser(p)->req_done = 1;
    return HPE_PAUSED; /* one request per stream: nothing may follow */
}

/* Writes what the session has to send into wire. */
static int pump(struct gw_h2up *h)
{
    for (;;) {
        const uint8_t *data;
        ssize_t n = nghttp2_session_mem_send(h->ses, &data);
        if (n < 0) {
            fail(h, "%s", nghttp2_strerror((int)n));
            return -1;
        }
        if (n == 0)
            return 0;
        if (gw_buf_append(&h->wire, data, (size_t)n) != 0) {
            fail(h, "%s", "out of memory");
            return -1;
        }
    }
}

int gw_h2up_take(struct gw_h2up *h, struct gw_buf *in)
{
    if (h->failed)
        return -1;
    size_t avail = gw_buf_pending(in);
    if (avail && !h->req_done) {
        size_t n = avail;
        if (h->stream >= 0) { /* the head went: body bytes wait for flow control */
            size_t held = gw_buf_pending(&h->body);
            n = held >= H2UP_BODY_HIGH ? 0 : H2UP_BODY_HIGH - held;
            if (n > avail)
                n = avail;
        }
        if (n) {
            const char *start = in->data + in->off;
            llhttp_errno_t e = llhttp_execute(&h->req, start, n);
            size_t used = n;
            if (e == HPE_PAUSED)
                used = (size_t)(llhttp_get_error_pos(&h->req) - start);
            else if (e != HPE_OK) {
                fail(h, "the request could not be framed: %s", llhttp_errno_name(e));
                return -1;
            }
            gw_buf_consume(in, used);
            if (h->deferred && h->stream >= 0 && (gw_buf_pending(&h->body) || h->req_done)) {
                h->deferred = 0;
                nghttp2_session_resume_data(h->ses, h->stream);
            }
        }
    }
    return pump(h);
}

/* ---- the response, written as HTTP/1.1 ---- */

static int on_begin_headers(nghttp2_session *ses, const nghttp2_frame *frame, void *ud)
{
    struct gw_h2up *h = ud;
    if (frame->hd.stream_id == h->stream) {
        h->rhdrs.len = h->rhdrs.off = 0;
        h->clen[0] = '\0';
    }
    return 0;
}

static int on_header(nghttp2_session *ses, const nghttp2_frame *frame, const uint8_t *name,
                     size_t nl, const uint8_t *value, size_t vl, uint8_t flags, void *ud)
{
    struct gw_h2up *h = ud;
    const char *n = (const char *)name;
    if (frame->hd.stream_id != h->stream)
        return 0;
    if (nl == 7 && memcmp(n, ":status", 7) == 0) {
        h->status = 0;
        for (size_t i = 0; i < vl && i < 3; i++)
            h->status = h->status * 10 + (value[i] - '0');
        return 0;
    }
    if (nl && n[0] == ':')
        return 0;
    if (GW_NAME_IS(n, nl, "content-length") && !h->resp_head) {
        snprintf(h->clen, sizeof(h->clen), "%.*s", (int)(vl < 20 ? vl : 20), value);
        return 0;
    }
    if (GW_NAME_IS(n, nl, "grpc-status")) {
        int st = 0;
        for (size_t i = 0; i < vl && i < 4 && value[i] >= '0' && value[i] <= '9'; i++)
            st = st * 10 + (value[i] - '0');
        h->grpc_status = st;
    }
    if (gw_buf_append(&h->rhdrs, n, nl) != 0 || gw_buf_append(&h->rhdrs, ": ", 2) != 0 ||
        gw_buf_append(&h->rhdrs, value, vl) != 0 || gw_buf_append(&h->rhdrs, "\r\n", 2) != 0)
        return NGHTTP2_ERR_CALLBACK_FAILURE;
    return 0;
}

/* The response head, as HTTP/1.1. end: the stream ended with it. */
static int emit_head(struct gw_h2up *h, int end)
{
    char line[64];
    int k = snprintf(line, sizeof(line), "HTTP/1.1 %d %s\r\n", h->status,
                     gw_http_reason(h->status));
    if (emit(h, line, (size_t)k) != 0 ||
        emit(h, h->rhdrs.data ? h->rhdrs.data : "", h->rhdrs.len) != 0)
        return -1;
    if (h->status < 200) /* interim: the final head follows */
        return emit(h, "\r\n", 2);
    h->resp_head = 1;
    if (h->status == 204 || h->status == 304) {
        /* no body whatever follows: DATA is dropped, the end adds nothing */
        h->no_body = 1;
        h->resp_ended = end;
        return emit(h, "\r\n", 2);
    }
    if (!end)
        return emit(h, "Transfer-Encoding: chunked\r\n\r\n", 30);
    h->resp_ended = 1;
    if (h->clen[0]) /* a HEAD request's answer keeps its length */
        k = snprintf(line, sizeof(line), "Content-Length: %s\r\n\r\n", h->clen);
    else
        k = snprintf(line, sizeof(line), "Content-Length: 0\r\n\r\n");
    return emit(h, line, (size_t)k);
}

static int on_frame_recv(nghttp2_session *ses, const nghttp2_frame *frame, void *ud)
{
    struct gw_h2up *h = ud;
    if (frame->hd.type == NGHTTP2_GOAWAY) {
        h->goaway = 1;
        return 0;
    }
    if (frame->hd.stream_id != h->stream || h->resp_ended)
        return 0;
    int end = (frame->hd.flags & NGHTTP2_FLAG_END_STREAM) != 0;
    int rc = 0;
    if (frame->hd.type == NGHTTP2_HEADERS) {
        if (!h->resp_head) {
            rc = emit_head(h, end);
        } else if (h->no_body) { /* a 204's trailers have nowhere to go */
            h->resp_ended = 1;
        } else { /* trailers: the last chunk carries them */
            rc = emit(h, "0\r\n", 3);
            if (rc == 0 && h->rhdrs.len)
                rc = emit(h, h->rhdrs.data, h->rhdrs.len);
            if (rc == 0)
                rc = emit(h, "\r\n", 2);
            h->resp_ended = 1;
        }
    } else if (frame->hd.type == NGHTTP2_DATA && end && h->resp_head) {
        rc = h->no_body ? 0 : emit(h, "0\r\n\r\n", 5);
        h->resp_ended = 1;
    }
    return rc == 0 ? 0 : NGHTTP2_ERR_CALLBACK_FAILURE;
}

static int on_data_chunk(nghttp2_session *ses, uint8_t flags, int32_t id, const uint8_t *data,
                         size_t len, void *ud)
{
    struct gw_h2up *h = ud;
    if (id != h->stream || !h->resp_head || h->resp_ended || h->no_body || len == 0)
        return 0;
    char hex[24];
    int k = snprintf(hex, sizeof(hex), "%zx\r\n", len);
    if (emit(h, hex, (size_t)k) != 0 || emit(h, data, len) != 0 || emit(h, "\r\n", 2) != 0)
        return NGHTTP2_ERR_CALLBACK_FAILURE;
    return 0;
}

static int on_stream_close(nghttp2_session *ses, int32_t id, uint32_t code, void *ud)
{
    struct gw_h2up *h = ud;
    if (id != h->stream)
        return 0;
    h->closed = 1;
    if (!h->resp_ended)
        fail(h, "reset the stream (%s)", nghttp2_http2_strerror(code));
    return 0;
}

static int init_once(void)
{
    if (callbacks)
        return 0;
    llhttp_settings_init(&req_settings);
    req_settings.on_url = on_url;
    req_settings.on_header_field = on_header_field;
    req_settings.on_header_value = on_header_value;
    req_settings.on_header_value_complete = on_header_value_complete;
    req_settings.on_headers_complete = on_req_headers_complete;
    req_settings.on_body = on_req_body;
    req_settings.on_message_complete = on_req_message_complete;
    if (nghttp2_session_callbacks_new(&callbacks) != 0)
        return -1;
    nghttp2_session_callbacks_set_on_begin_headers_callback(callbacks, on_begin_headers);
    nghttp2_session_callbacks_set_on_header_callback(callbacks, on_header);
    nghttp2_session_callbacks_set_on_frame_recv_callback(callbacks, on_frame_recv);
    nghttp2_session_callbacks_set_on_data_chunk_recv_callback(callbacks, on_data_chunk);
    nghttp2_session_callbacks_set_on_stream_close_callback(callbacks, on_stream_close);
    return 0;
}

struct gw_h2up *gw_h2up_new(int https)
{
    struct gw_h2up *h = calloc(1, sizeof(*h));
    if (h == NULL || init_once() != 0 || nghttp2_session_client_new(&h->ses, callbacks, h) != 0) {
        free(h);
        return NULL;
    }
    h->https = https;
    h->stream = -1;
    h->grpc_status = -1;
    nghttp2_settings_entry iv[] = {
        {NGHTTP2_SETTINGS_ENABLE_PUSH, 0},
        {NGHTTP2_SETTINGS_INITIAL_WINDOW_SIZE, H2UP_WINDOW},
    };
    if (nghttp2_submit_settings(h->ses, NGHTTP2_FLAG_NONE, iv, 2) != 0 ||
        nghttp2_session_set_local_window_size(h->ses, NGHTTP2_FLAG_NONE, 0, H2UP_WINDOW) != 0 ||
        pump(h) != 0) {
        gw_h2up_free(h);
        return NULL;
    }
    gw_h2up_begin(h);
    return h;
}

void gw_h2up_free(struct gw_h2up *h)
{
    if (h == NULL)
        return;
    nghttp2_session_del(h->ses);
    gw_buf_free(&h->wire);
    gw_buf_free(&h->url);
    gw_buf_free(&h->hbuf);
    gw_buf_free(&h->body);
    gw_buf_free(&h->rhdrs);
    free(h);
}

void gw_h2up_begin(struct gw_h2up *h)
{
    llhttp_init(&h->req, HTTP_REQUEST, &req_settings);
    h->req.data = h;
    h->url.len = h->url.off = 0;
    h->hbuf.len = h->hbuf.off = 0;
    h->nh = 0;
    h->new_hdr = 1;
    h->in_value = 0;
    h->stream = -1;
    gw_buf_free(&h->body);
    h->req_done = h->deferred = 0;
    h->rhdrs.len = h->rhdrs.off = 0;
    h->clen[0] = '\0';
    h->status = 0;
    h->resp_head = h->resp_ended = h->closed = h->no_body = 0;
    h->grpc_status = -1;
}

struct gw_buf *gw_h2up_wire(struct gw_h2up *h)
{
    return &h->wire;
}

int gw_h2up_feed(struct gw_h2up *h, const char *p, size_t n, struct gw_buf *resp)
{
    h->resp = resp;
    ssize_t rv = nghttp2_session_mem_recv(h->ses, (const uint8_t *)p, n);
    h->resp = NULL;
    if (rv < 0)
        fail(h, "sent invalid HTTP/2: %s", nghttp2_strerror((int)rv));
    if (h->failed || pump(h) != 0)
        return -1;
    return 0;
}

int gw_h2up_reusable(const struct gw_h2up *h)
{
    return !h->failed && !h->goaway && h->closed && gw_buf_pending(&h->wire) == 0 &&
           nghttp2_session_get_next_stream_id(h->ses) < (1u << 30);
}

int gw_h2up_grpc_status(const struct gw_h2up *h)
{
    return h->grpc_status;
}

const char *gw_h2up_error(const struct gw_h2up *h)
{
    return h->failed ? h->err : "no error";
}
