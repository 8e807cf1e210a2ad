/* libFuzzer target for the upstream HTTP/2 codec (runtime/src/h2_up.c), the
 * part of gRPC proxying that reads what an upstream sends.
 *
 * The input is a script for an HTTP/2 server (an nghttp2 server session)
 * talking to one gw_h2up: each step takes a byte for the operation and more
 * bytes for its arguments, so the server can answer with any status, any
 * header names and values (nghttp2 does not check what is submitted: the
 * codec's session has to), DATA of any size with or without END_STREAM,
 * trailers, RST_STREAM, GOAWAY, raw bytes that are not frames, and can
 * split what it sends at any point. The request is a chunked POST, the
 * shape gRPC calls have through the gateway.
 *
 * Checked for every input, besides ASan/UBSan: whenever gw_h2up_feed says
 * 0 (no error), the HTTP/1.1 the codec wrote so far parses with llhttp as
 * one response (1xx answers first), and nothing follows the final one. That
 * HTTP/1.1 goes on to the proxy's parser and, raw, to clients: a header
 * value with a line break or a chunk the codec framed wrong would be a
 * response splitting bug. */
#include <llhttp.h>
#include <nghttp2/nghttp2.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "gw/buf.h"
#include "gw/h2_up.h"

struct script {
    const uint8_t *p;
    size_t n;
};

static unsigned take(struct script *s)
{
    if (s->n == 0)
        return 0;
    s->n--;
    return *s->p++;
}

/* up to max bytes of the script, as a view */
static size_t take_bytes(struct script *s, size_t max, const uint8_t **out)
{
    size_t n = take(s) % (max + 1);
    if (n > s->n)
        n = s->n;
    *out = s->p;
    s->p += n;
    s->n -= n;
    return n;
}

struct server {
    nghttp2_session *ses;
    int32_t stream;         /* the request's stream once its HEADERS came */
    const uint8_t *data;    /* what the data provider sends next */
    size_t data_len;
    int data_eof;
};

static ssize_t srv_read(nghttp2_session *ses, int32_t id, uint8_t *buf, size_t length,
                        uint32_t *flags, nghttp2_data_source *src, void *ud)
{
    struct server *sv = ud;
    size_t n = sv->data_len < length ? sv->data_len : length;
    memcpy(buf, sv->data, n);
    sv->data += n;
    sv->data_len -= n;
    if (sv->data_len == 0) {
        if (sv->data_eof)
            *flags |= NGHTTP2_DATA_FLAG_EOF;
        else if (n == 0)
            return NGHTTP2_ERR_DEFERRED;
    }
    return (ssize_t)n;
}

static int srv_begin_headers(nghttp2_session *ses, const nghttp2_frame *f, void *ud)
{
    struct server *sv = ud;
    if (f->hd.type == NGHTTP2_HEADERS && f->headers.cat == NGHTTP2_HCAT_REQUEST)
        sv->stream = f->hd.stream_id;
    return 0;
}

/* ---- the invariant: the codec's HTTP/1.1 is one well-formed response ---- */

struct check {
    llhttp_t parser;
    size_t parsed;  /* bytes of resp given to llhttp */
    int final_done; /* the final (non-1xx) response ended */
};

static int chk_message_complete(llhttp_t *p)
{
    struct check *c = p->data;
    if (p->status_code >= 200) {
        c->final_done = 1;
        return HPE_PAUSED;
    }
    return 0;
}

static llhttp_settings_t chk_settings;

static void verify(struct check *c, const struct gw_buf *resp)
{
    size_t n = resp->len - c->parsed;
    if (n == 0)
        return;
    if (c->final_done) {
        fprintf(stderr, "h2up_fuzzer: %zu bytes after the final response\n", n);
        abort();
    }
    const char *start = resp->data + c->parsed;
    llhttp_errno_t e = llhttp_execute(&c->parser, start, n);
    if (e == HPE_PAUSED) {
        size_t used = (size_t)(llhttp_get_error_pos(&c->parser) - start);
        if (used != n) {
            fprintf(stderr, "h2up_fuzzer: %zu bytes after the final response\n", n - used);
            abort();
        }
    } else if (e != HPE_OK) {
        fprintf(stderr, "h2up_fuzzer: the codec wrote HTTP/1.1 llhttp refuses: %s (%s)\n%.*s\n",
                llhttp_errno_name(e), llhttp_get_error_reason(&c->parser),
                (int)(resp->len < 2000 ? resp->len : 2000), resp->data);
        abort();
    }
    c->parsed = resp->len;
}

static nghttp2_session_callbacks *srv_callbacks;

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    llhttp_settings_init(&chk_settings);
    chk_settings.on_message_complete = chk_message_complete;
    if (nghttp2_session_callbacks_new(&srv_callbacks) != 0)
        abort();
    nghttp2_session_callbacks_set_on_begin_headers_callback(srv_callbacks, srv_begin_headers);
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct script sc = {data, size};
    struct gw_h2up *h = gw_h2up_new(take(&sc) & 1);
    if (h == NULL)
        abort();
    gw_h2up_begin(h);
    struct gw_buf req = {0}, resp = {0};
    gw_buf_appends(&req, "POST /luagate.test.Echo/Unary HTTP/1.1\r\nHost: up.test\r\n"
                         "Content-Type: application/grpc\r\nTransfer-Encoding: chunked\r\n"
                         "X-Request-ID: 0123\r\n\r\n5\r\nhello\r\n0\r\n\r\n");
    int failed = gw_h2up_take(h, &req) != 0;

    struct server sv = {0};
    if (nghttp2_session_server_new(&sv.ses, srv_callbacks, &sv) != 0)
        abort();
    nghttp2_submit_settings(sv.ses, NGHTTP2_FLAG_NONE, NULL, 0);
    struct check chk = {0};
    llhttp_init(&chk.parser, HTTP_RESPONSE, &chk_settings);
    chk.parser.data = &chk;

    for (int steps = 0; sc.n && !failed && steps < 256; steps++) {
        unsigned op = take(&sc) % 9;
        const uint8_t *bytes;
        size_t n;
        switch (op) {
        case 0: { /* the client's frames reach the server */
            struct gw_buf *wire = gw_h2up_wire(h);
            nghttp2_session_mem_recv(sv.ses, (const uint8_t *)wire->data + wire->off,
                                     gw_buf_pending(wire));
            wire->off = wire->len = 0;
            break;
        }
        case 1: { /* the server's frames reach the client, split where the script says */
            const uint8_t *out;
            ssize_t k;
            while (!failed && (k = nghttp2_session_mem_send(sv.ses, &out)) > 0) {
                size_t cut = take(&sc) % ((size_t)k + 1);
                failed = gw_h2up_feed(h, (const char *)out, cut, &resp) != 0 ||
                         gw_h2up_feed(h, (const char *)out + cut, (size_t)k - cut, &resp) != 0;
                if (!failed)
                    verify(&chk, &resp);
            }
            break;
        }
        case 2:   /* a response head (or an interim one, or headers after it) */
        case 3: { /* trailers */
            nghttp2_nv nv[8];
            char status[4];
            size_t nnv = 0;
            if (op == 2) {
                unsigned st = 100 + (take(&sc) << 8 | take(&sc)) % 500;
                snprintf(status, sizeof(status), "%03u", st);
                nv[nnv++] = (nghttp2_nv){(uint8_t *)":status", (uint8_t *)status, 7, 3,
                                         NGHTTP2_NV_FLAG_NONE};
            }
            unsigned count = take(&sc) % 6;
            for (unsigned i = 0; i < count; i++) {
                const uint8_t *name, *value;
                size_t nl = take_bytes(&sc, 16, &name), vl = take_bytes(&sc, 24, &value);
                nv[nnv++] = (nghttp2_nv){(uint8_t *)name, (uint8_t *)value, nl, vl,
                                         NGHTTP2_NV_FLAG_NONE};
            }
            if (sv.stream > 0) {
                uint8_t flags = op == 3 || (take(&sc) & 1) ? NGHTTP2_FLAG_END_STREAM
                                                           : NGHTTP2_FLAG_NONE;
                nghttp2_submit_headers(sv.ses, flags, sv.stream, NULL, nv, nnv, NULL);
            }
            break;
        }
        case 4: /* DATA, maybe the last */
            n = take_bytes(&sc, 255, &bytes);
            sv.data = bytes;
            sv.data_len = n;
            sv.data_eof = take(&sc) & 1;
            if (sv.stream > 0) {
                nghttp2_data_provider prd = {.read_callback = srv_read};
                nghttp2_submit_data(sv.ses, sv.data_eof ? NGHTTP2_FLAG_END_STREAM
                                                        : NGHTTP2_FLAG_NONE,
                                    sv.stream, &prd);
            }
            break;
        case 5: /* the stream reset */
            if (sv.stream > 0)
                nghttp2_submit_rst_stream(sv.ses, NGHTTP2_FLAG_NONE, sv.stream, take(&sc) % 14);
            break;
        case 6: /* GOAWAY */
            nghttp2_submit_goaway(sv.ses, NGHTTP2_FLAG_NONE, take(&sc) & 1 ? sv.stream : 0,
                                  take(&sc) % 14, NULL, 0);
            break;
        case 7: /* bytes that need not be frames */
            n = take_bytes(&sc, 64, &bytes);
            failed = gw_h2up_feed(h, (const char *)bytes, n, &resp) != 0;
            if (!failed)
                verify(&chk, &resp);
            break;
        case 8: /* a WINDOW_UPDATE or PING the client must answer */
            if (take(&sc) & 1)
                nghttp2_submit_ping(sv.ses, NGHTTP2_FLAG_NONE, NULL);
            else
                nghttp2_submit_window_update(sv.ses, NGHTTP2_FLAG_NONE, 0,
                                             (int32_t)(take(&sc) << 8 | 1));
            break;
        }
    }
    if (getenv("FUZZ_DEBUG"))
        fprintf(stderr, "h2up_fuzzer: %s; the codec wrote:\n%.*s\n",
                failed ? gw_h2up_error(h) : "no error", (int)resp.len,
                resp.data ? resp.data : "");
    /* the queries the proxy makes at the end of a response */
    (void)gw_h2up_reusable(h);
    (void)gw_h2up_grpc_status(h);
    (void)gw_h2up_error(h);
    nghttp2_session_del(sv.ses);
    gw_h2up_free(h);
    gw_buf_free(&req);
    gw_buf_free(&resp);
    return 0;
}
