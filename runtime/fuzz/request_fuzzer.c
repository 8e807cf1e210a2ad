/* libFuzzer target for the whole request path, end to end, over the real
 * code: every .c of runtime/src but main.c is linked in, and one input is what
 * one client sends on one connection.
 *
 * LLVMFuzzerInitialize sets up a worker as gw_worker_main does (settings,
 * shared dicts and stats, the default ev loop, a Lua state, a configuration
 * loaded from a file written to a temporary directory, the resolver) and a
 * fake upstream: a listening socket on 127.0.0.1 served in the same loop by
 * this file's callbacks. Every service of the configuration points at it.
 *
 * Per input: a socketpair; one end goes to gw_conn_adopt, the harness writes
 * the input to the other end in slices, runs the loop until nothing moves,
 * half-closes, runs the loop until the gateway closed the connection (or a
 * watchdog fires), then checks what the client received and what the fake
 * upstream received, and drains the upstream keepalive pool.
 *
 * Input layout:
 *   byte 0   slicing: 0 writes everything at once; N in 1..255 writes
 *            pseudo-random slices of 1..N bytes, one loop pass between two
 *   byte 1   the fake upstream's answers: request k (0, 1, ... in the order
 *            the upstream receives them) gets answer (b1 + k * (b1 >> 3 | 1))
 *            % 8 (see fz_answer)
 *   byte 2.. the client's bytes
 *
 * The listener has the http2 flag: an input that starts with the HTTP/2
 * client preface is an h2c connection (h2.c, its streams bridged to the
 * same request path). Its answers are HTTP/2 frames, so the checks on what
 * the client received and the ones that pair client requests with upstream
 * ones are skipped for it; the upstream checks and the others stay.
 *
 * Checks beyond the sanitizers trap with "request_fuzzer: check '<name>'
 * failed"; FUZZ_SKIP_CHECKS=name,name disables some (to fuzz past a known
 * bug). The table is in docs/fuzzing.md. */
#include <arpa/inet.h>
#include <errno.h>
#include <limits.h>
#include <lua.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <unistd.h>

#include <llhttp.h>

#include "gw/accesslog.h"
#include "gw/buf.h"
#include "gw/config.h"
#include "gw/conn.h"
#include "gw/dns.h"
#include "gw/h2.h"
#include "gw/log.h"
#include "gw/lua_req.h"
#include "gw/settings-t.h"
#include "gw/shdict.h"
#include "gw/stats.h"
#include "gw/upstream.h"
#include "gw/worker-t.h"

/* main.c, which defines it, is not linked */
struct gw_settings gw_settings;

#define FZ_PORT 8000          /* the port the client connected to */
#define FZ_MAX_REQS 512       /* requests tracked per input, each side */
#define FZ_CLIENT_MAX (4 << 20) /* bytes of responses kept for the checks */
#define FZ_WATCHDOG 3.0       /* s: the gateway's own timeouts are 0.3 s */
#define FZ_BIG_BODY 70000     /* answer 7: above GW_HIGH_WATER */

/* ---- checks ------------------------------------------------------------ */

static char fz_skip[512];
static int fz_debug;

static void fz_fail(const char *name, const char *what, int line)
{
    char key[64];
    snprintf(key, sizeof(key), ",%s,", name);
    if (strstr(fz_skip, key) != NULL)
        return;
    fprintf(stderr, "request_fuzzer: check '%s' failed (line %d): %s\n", name, line, what);
    __builtin_trap();
}

#define fz_check(name, cond)                                                                       \
    do {                                                                                           \
        if (!(cond))                                                                               \
            fz_fail((name), #cond, __LINE__);                                                      \
    } while (0)

/* cjson keeps a module-wide encode buffer for the life of the Lua state,
 * which the harness never closes: not a per-request leak. */
const char *__lsan_default_suppressions(void);
const char *__lsan_default_suppressions(void)
{
    return "leak:cjson.so\n";
}

/* ---- the worker --------------------------------------------------------- */

static struct gw_worker fz_wk;
static struct gw_listen fz_listen;
static struct ev_loop *fz_loop;
static char fz_dir[64]; /* temporary directory of the configuration */
static uint64_t fz_moved; /* bytes moved by the harness: progress of the loop */

/* ---- what the client sent: a reference parse of the input ---------------- */

struct fz_creq {
    uint64_t body_len;
    int is_head;
    int after_upgrade; /* follows an upgrade request: the gateway may tunnel it */
};

static struct {
    struct fz_creq req[FZ_MAX_REQS];
    int nreq;   /* complete heads */
    int tail;   /* an incomplete or invalid request ends the input */
    int in_msg;
    int upgraded;
} fz_ref;

static int ref_on_message_begin(llhttp_t *p)
{
    fz_ref.in_msg = 1;
    return 0;
}

static int ref_on_headers_complete(llhttp_t *p)
{
    if (fz_ref.nreq < FZ_MAX_REQS) {
        struct fz_creq *r = &fz_ref.req[fz_ref.nreq];
        memset(r, 0, sizeof(*r));
        r->is_head = p->method == HTTP_HEAD;
        r->after_upgrade = fz_ref.upgraded;
    }
    fz_ref.nreq++;
    return 0;
}

static int ref_on_body(llhttp_t *p, const char *at, size_t len)
{
    if (fz_ref.nreq - 1 < FZ_MAX_REQS)
        fz_ref.req[fz_ref.nreq - 1].body_len += len;
    return 0;
}

static int ref_on_message_complete(llhttp_t *p)
{
    fz_ref.in_msg = 0;
    return 0;
}

static void fz_ref_parse(const char *in, size_t n)
{
    static llhttp_settings_t s;
    static int ready;
    if (!ready) {
        llhttp_settings_init(&s);
        s.on_message_begin = ref_on_message_begin;
        s.on_headers_complete = ref_on_headers_complete;
        s.on_body = ref_on_body;
        s.on_message_complete = ref_on_message_complete;
        ready = 1;
    }
    memset(&fz_ref, 0, sizeof(fz_ref));
    llhttp_t p;
    llhttp_init(&p, HTTP_REQUEST, &s);
    const char *at = in;
    while (at < in + n) {
        llhttp_errno_t e = llhttp_execute(&p, at, (size_t)(in + n - at));
        if (e == HPE_OK)
            break;
        if (e == HPE_PAUSED_UPGRADE) {
            /* switched or not: what follows is either tunnel bytes or the
             * next request (conn.c resets its parser after a refused
             * upgrade); count it as requests, an upper bound either way */
            at = llhttp_get_error_pos(&p);
            llhttp_init(&p, HTTP_REQUEST, &s);
            fz_ref.upgraded = 1;
            continue;
        }
        fz_ref.tail = 1; /* invalid: the gateway may answer it 400 */
        return;
    }
    if (fz_ref.in_msg)
        fz_ref.tail = 1;
}

/* ---- the fake upstream -------------------------------------------------- */

struct fz_ureq { /* one request the upstream received, in arrival order */
    uint64_t body_len;
    int body_changed; /* a plugin replaced the body (X-Fz-Body-Changed) */
};

struct fz_up {
    ev_io io;
    int fd;
    int events;
    struct fz_up *next;
    llhttp_t p;
    struct gw_buf in;  /* every byte received (offsets stay valid) */
    size_t parsed;
    struct gw_buf out; /* answers not written yet */
    int shut;          /* answered with a closing answer: write side shut after out */
    int tunnel;        /* answered 101: echo everything */
    int stopped;       /* no more parsing (error, close answer, tunnel) */
    int eof;           /* the gateway closed */
    int nrecv, nsent;  /* requests received, answers queued */
    /* the message being parsed */
    int in_msg;
    int in_trailers;   /* header callbacks now are a chunked body's trailers */
    char name[64];
    size_t name_len;
    int name_ws;       /* whitespace anywhere in the name (name[] is cut at 63) */
    int in_value;
    size_t vstart, vend; /* value range in in (vstart == SIZE_MAX: empty) */
    char value[256];
    size_t value_len;
    int n_host, n_xff, n_xfp, n_xfh, n_xfport, n_xrip, n_xrid;
    int has_cl, has_te, has_upgrade, conn_upgrade, body_changed, is_head;
    uint64_t body_len;
};

static int fz_up_lfd;
static int fz_up_port;
static ev_io fz_up_lio;
static struct fz_up *fz_ups;
static struct fz_ureq fz_ureq[FZ_MAX_REQS];
static int fz_nureq;
static uint8_t fz_answers; /* input byte 1 */
static llhttp_settings_t fz_up_settings;

static void fz_up_io_cb(struct ev_loop *loop, ev_io *w, int revents);

static void fz_up_watch(struct fz_up *u)
{
    int ev = u->eof ? 0 : EV_READ;
    if (gw_buf_pending(&u->out))
        ev |= EV_WRITE;
    if (ev == u->events)
        return;
    ev_io_stop(fz_loop, &u->io);
    ev_io_set(&u->io, u->fd, ev);
    if (ev)
        ev_io_start(fz_loop, &u->io);
    u->events = ev;
}

static void fz_up_free(struct fz_up *u)
{
    if (fz_debug)
        fprintf(stderr, "--- fake upstream connection got %zu bytes:\n%.*s\n---\n", u->in.len,
                u->in.len > 3000 ? 3000 : (int)u->in.len, u->in.data);
    for (struct fz_up **pp = &fz_ups; *pp; pp = &(*pp)->next)
        if (*pp == u) {
            *pp = u->next;
            break;
        }
    ev_io_stop(fz_loop, &u->io);
    close(u->fd);
    gw_buf_free(&u->in);
    gw_buf_free(&u->out);
    free(u);
}

#define UP(p) ((struct fz_up *)(p)->data)

static int lc_is(const char *a, size_t n, const char *lit)
{
    return strlen(lit) == n && strncasecmp(a, lit, n) == 0;
}

static int up_on_message_begin(llhttp_t *p)
{
    struct fz_up *u = UP(p);
    u->in_msg = 1;
    u->in_trailers = 0;
    u->name_len = 0;
    u->name_ws = 0;
    u->in_value = 0;
    u->n_host = u->n_xff = u->n_xfp = u->n_xfh = u->n_xfport = u->n_xrip = u->n_xrid = 0;
    u->has_cl = u->has_te = u->has_upgrade = u->conn_upgrade = u->body_changed = 0;
    u->body_len = 0;
    return 0;
}

static int up_on_header_field(llhttp_t *p, const char *at, size_t len)
{
    struct fz_up *u = UP(p);
    if (u->in_value) { /* a new header */
        u->in_value = 0;
        u->name_len = 0;
        u->name_ws = 0;
    }
    if (memchr(at, ' ', len) || memchr(at, '\t', len))
        u->name_ws = 1;
    for (size_t i = 0; i < len && u->name_len < sizeof(u->name) - 1; i++)
        u->name[u->name_len++] = at[i];
    u->vstart = SIZE_MAX;
    u->value_len = 0;
    return 0;
}

static int up_on_header_value(llhttp_t *p, const char *at, size_t len)
{
    struct fz_up *u = UP(p);
    u->in_value = 1;
    size_t off = (size_t)(at - u->in.data);
    if (u->vstart == SIZE_MAX)
        u->vstart = off;
    u->vend = off + len;
    for (size_t i = 0; i < len && u->value_len < sizeof(u->value) - 1; i++)
        u->value[u->value_len++] = at[i];
    return 0;
}

/* Whether every comma-separated token of v is one of the allowed ones. */
static int conn_tokens_ok(const char *v, size_t n, int *upgrade)
{
    size_t i = 0;
    while (i < n) {
        while (i < n && (v[i] == ' ' || v[i] == '\t' || v[i] == ','))
            i++;
        size_t s = i;
        while (i < n && v[i] != ',')
            i++;
        size_t e = i;
        while (e > s && (v[e - 1] == ' ' || v[e - 1] == '\t'))
            e--;
        if (e == s)
            continue;
        if (lc_is(v + s, e - s, "upgrade"))
            *upgrade = 1;
        else if (!lc_is(v + s, e - s, "close"))
            return 0;
    }
    return 1;
}

static int up_on_header_value_complete(llhttp_t *p)
{
    struct fz_up *u = UP(p);
    const char *n = u->name;
    size_t nl = u->name_len;
    u->in_value = 1;
    int crlf = 0;
    if (u->vstart != SIZE_MAX) {
        const char *v = u->in.data + u->vstart;
        size_t vl = u->vend - u->vstart;
        crlf = memchr(v, '\r', vl) || memchr(v, '\n', vl) || memchr(v, '\0', vl);
    }
    int ws = nl == 0 || u->name_ws;
    if (u->in_trailers) {
        /* the body passes through raw, trailers included: only what the
         * gateway refuses in a head is checked here */
        fz_check("upstream-trailer-crlf", !crlf);
        fz_check("upstream-trailer-name", !ws);
        return 0;
    }
    fz_check("upstream-value-crlf", !crlf);
    fz_check("upstream-name", !ws);
    if (lc_is(n, nl, "host"))
        u->n_host++;
    else if (lc_is(n, nl, "x-forwarded-for"))
        u->n_xff++;
    else if (lc_is(n, nl, "x-forwarded-proto"))
        u->n_xfp++;
    else if (lc_is(n, nl, "x-forwarded-host"))
        u->n_xfh++;
    else if (lc_is(n, nl, "x-forwarded-port"))
        u->n_xfport++;
    else if (lc_is(n, nl, "x-real-ip"))
        u->n_xrip++;
    else if (lc_is(n, nl, "x-request-id"))
        u->n_xrid++;
    else if (lc_is(n, nl, "content-length"))
        u->has_cl = 1;
    else if (lc_is(n, nl, "transfer-encoding"))
        u->has_te = 1;
    else if (lc_is(n, nl, "upgrade"))
        u->has_upgrade = 1;
    else if (lc_is(n, nl, "x-fz-body-changed"))
        u->body_changed = 1;
    else if (lc_is(n, nl, "connection"))
        fz_check("upstream-hop-by-hop",
                 conn_tokens_ok(u->value, u->value_len, &u->conn_upgrade));
    else
        /* Proxy-Authorization/-Authenticate pass, as under nginx and Kong */
        fz_check("upstream-hop-by-hop",
                 !lc_is(n, nl, "keep-alive") && !lc_is(n, nl, "te") &&
                     !lc_is(n, nl, "trailer") && !lc_is(n, nl, "proxy-connection"));
    return 0;
}

static int up_on_headers_complete(llhttp_t *p)
{
    struct fz_up *u = UP(p);
    u->is_head = p->method == HTTP_HEAD;
    u->in_trailers = 1;
    fz_check("upstream-host-once", u->n_host == 1);
    fz_check("upstream-forwarded-once", u->n_xff == 1 && u->n_xfp == 1 && u->n_xfh == 1 &&
                                            u->n_xfport == 1);
    fz_check("upstream-real-ip-once", u->n_xrip == 1);
    fz_check("upstream-request-id-once", u->n_xrid == 1);
    fz_check("upstream-framing", !(u->has_cl && u->has_te));
    fz_check("upstream-hop-by-hop", !u->has_upgrade || u->conn_upgrade);
    return 0;
}

static int up_on_body(llhttp_t *p, const char *at, size_t len)
{
    UP(p)->body_len += len;
    return 0;
}

/* The answer for the k-th request the upstream received. */
static int fz_answer(int k)
{
    return (int)((fz_answers + (unsigned)k * ((fz_answers >> 3) | 1u)) % 8u);
}

static void fz_up_answer(struct fz_up *u, int upgrade)
{
    int k = fz_nureq - 1;
    int a = fz_answer(k);
    struct gw_buf *b = &u->out;
    char tag[48];
    snprintf(tag, sizeof(tag), "X-Fz-Up: %d\r\n", k);
    int head_only = u->is_head;
    if (a == 3 && !upgrade)
        a = 0; /* 101 only answers an upgrade request */
    if (upgrade && a != 3)
        u->shut = 1; /* a refused upgrade: the connection is not reused */
    switch (a) {
    case 0:
        gw_buf_appends(b, "HTTP/1.1 200 OK\r\n");
        gw_buf_appends(b, tag);
        gw_buf_appends(b, "Content-Type: text/plain\r\nContent-Length: 6\r\n\r\n");
        if (!head_only)
            gw_buf_appends(b, "hello\n");
        break;
    case 1:
        gw_buf_appends(b, "HTTP/1.1 200 OK\r\n");
        gw_buf_appends(b, tag);
        gw_buf_appends(b, "Transfer-Encoding: chunked\r\nTrailer: X-T\r\n\r\n");
        if (!head_only)
            gw_buf_appends(b, "5\r\nhello\r\n3;ext=1\r\n ok\r\n0\r\nX-T: 1\r\n\r\n");
        break;
    case 2:
        gw_buf_appends(b, "HTTP/1.1 204 No Content\r\n");
        gw_buf_appends(b, tag);
        gw_buf_appends(b, "\r\n");
        break;
    case 3:
        gw_buf_appends(b, "HTTP/1.1 101 Switching Protocols\r\n");
        gw_buf_appends(b, tag);
        gw_buf_appends(b, "Connection: Upgrade\r\nUpgrade: websocket\r\n\r\n");
        u->tunnel = 1;
        u->stopped = 1;
        break;
    case 4: /* delimited by the close */
        gw_buf_appends(b, "HTTP/1.1 200 OK\r\n");
        gw_buf_appends(b, tag);
        gw_buf_appends(b, "Connection: close\r\n\r\n");
        if (!head_only)
            gw_buf_appends(b, "until the close\n");
        u->shut = 1;
        break;
    case 5: { /* malformed, then the close */
        static const char *const bad[] = {
            "HTTP/1.1 200 OK\r\nContent-Length: 5\r\nContent-Length: 7\r\n\r\nhello",
            "HTTP/1.1 2x0 OK\r\n\r\n",
            "HTTP/1.1 200 OK\r\nX-Bad : 1\r\nContent-Length: 0\r\n\r\n",
            "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
            "HTTP/1.1 200 OK\r\nX-Fold: a\r\n b\r\nContent-Length: 0\r\n\r\n",
            "garbage\r\n\r\n",
        };
        gw_buf_appends(b, bad[(unsigned)k % (sizeof(bad) / sizeof(bad[0]))]);
        u->shut = 1;
        break;
    }
    case 6: /* an informational answer first */
        gw_buf_appends(b, "HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\n");
        gw_buf_appends(b, tag);
        gw_buf_appends(b, "Content-Length: 2\r\n\r\n");
        if (!head_only)
            gw_buf_appends(b, "ok");
        break;
    default: /* a body above the high-water mark */
        gw_buf_appends(b, "HTTP/1.1 200 OK\r\n");
        gw_buf_appends(b, tag);
        gw_buf_appends(b, "Content-Length: 70000\r\n\r\n");
        if (!head_only && gw_buf_reserve(b, FZ_BIG_BODY, 0) == 0) {
            memset(b->data + b->len, 'x', FZ_BIG_BODY);
            b->len += FZ_BIG_BODY;
        }
        break;
    }
    if (u->shut)
        u->stopped = 1;
    u->nsent++;
}

static int up_on_message_complete(llhttp_t *p)
{
    struct fz_up *u = UP(p);
    u->in_msg = 0;
    u->nrecv++;
    if (fz_nureq < FZ_MAX_REQS) {
        fz_ureq[fz_nureq].body_len = u->body_len;
        fz_ureq[fz_nureq].body_changed = u->body_changed;
    }
    fz_nureq++;
    fz_up_answer(u, p->upgrade);
    return u->stopped ? HPE_PAUSED : 0;
}

static void fz_up_parse(struct fz_up *u)
{
    if (u->tunnel) { /* echo */
        size_t n = u->in.len - u->parsed;
        if (n)
            gw_buf_append(&u->out, u->in.data + u->parsed, n);
        u->parsed = u->in.len;
        return;
    }
    if (u->stopped || u->parsed == u->in.len)
        return;
    const char *start = u->in.data + u->parsed;
    llhttp_errno_t e = llhttp_execute(&u->p, start, u->in.len - u->parsed);
    if (e == HPE_OK) {
        u->parsed = u->in.len;
        return;
    }
    if (e == HPE_PAUSED || e == HPE_PAUSED_UPGRADE) {
        u->parsed = (size_t)(llhttp_get_error_pos(&u->p) - u->in.data);
        if (u->tunnel) {
            fz_up_parse(u);
            return;
        }
        /* stopped after a closing answer: the gateway must not send more */
        fz_check("upstream-after-close", u->parsed == u->in.len);
        return;
    }
    if (fz_debug)
        fprintf(stderr, "fake upstream: %s (%s) at %zu of:\n%.*s\n", llhttp_errno_name(e),
                llhttp_get_error_reason(&u->p),
                (size_t)(llhttp_get_error_pos(&u->p) - u->in.data), (int)u->in.len,
                u->in.data);
    /* name the known shape apart, so that FUZZ_SKIP_CHECKS can skip it alone:
     * a control character of the request target copied into X-Forwarded-Path */
    const char *ep = llhttp_get_error_pos(&u->p);
    const char *bol = ep;
    while (bol > u->in.data && bol[-1] != '\n')
        bol--;
    if (e == HPE_INVALID_HEADER_TOKEN && ep - bol > 17 &&
        strncasecmp(bol, "x-forwarded-path:", 17) == 0)
        fz_fail("upstream-forwarded-path-ctl", llhttp_errno_name(e), __LINE__);
    else
        fz_fail("upstream-parses", llhttp_errno_name(e), __LINE__);
    u->stopped = 1;
    u->shut = 1;
}

static void fz_up_io_cb(struct ev_loop *loop, ev_io *w, int revents)
{
    struct fz_up *u = (struct fz_up *)w;
    if (revents & EV_READ) {
        for (;;) {
            if (gw_buf_reserve(&u->in, 16384, 0) != 0)
                abort();
            ssize_t n = read(u->fd, u->in.data + u->in.len, u->in.cap - u->in.len);
            if (n > 0) {
                u->in.len += (size_t)n;
                fz_moved += (uint64_t)n;
                continue;
            }
            if (n == 0 || (errno != EAGAIN && errno != EINTR))
                u->eof = 1;
            if (n == -1 && errno == EINTR)
                continue;
            break;
        }
        fz_up_parse(u);
    }
    while (gw_buf_pending(&u->out)) {
        ssize_t n = write(u->fd, u->out.data + u->out.off, gw_buf_pending(&u->out));
        if (n <= 0)
            break;
        fz_moved += (uint64_t)n;
        gw_buf_consume(&u->out, (size_t)n);
    }
    if (gw_buf_pending(&u->out) == 0 && u->shut && !u->tunnel && u->shut != 2) {
        shutdown(u->fd, SHUT_WR);
        u->shut = 2;
    }
    if (u->eof && gw_buf_pending(&u->out) == 0) {
        /* a partial request is fine here: the gateway closes the upstream
         * connection of a request it aborts (pool-clean checks the rest) */
        fz_up_free(u);
        return;
    }
    if (u->eof && gw_buf_pending(&u->out)) {
        fz_up_free(u); /* nobody reads what is left */
        return;
    }
    fz_up_watch(u);
}

static void fz_up_accept_cb(struct ev_loop *loop, ev_io *w, int revents)
{
    for (;;) {
        int fd = accept4(fz_up_lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd == -1)
            return;
        struct fz_up *u = calloc(1, sizeof(*u));
        if (u == NULL)
            abort();
        u->fd = fd;
        llhttp_init(&u->p, HTTP_REQUEST, &fz_up_settings);
        u->p.data = u;
        ev_io_init(&u->io, fz_up_io_cb, fd, EV_READ);
        u->events = EV_READ;
        ev_io_start(loop, &u->io);
        u->next = fz_ups;
        fz_ups = u;
        fz_moved++;
    }
}

/* ---- the client side ---------------------------------------------------- */

static struct {
    ev_io io;
    int fd;
    int eof;
    struct gw_buf got;
    int overflow;
} fz_cli;

static void fz_cli_cb(struct ev_loop *loop, ev_io *w, int revents)
{
    for (;;) {
        char tmp[65536];
        ssize_t n = read(fz_cli.fd, tmp, sizeof(tmp));
        if (n > 0) {
            fz_moved += (uint64_t)n;
            if (fz_cli.got.len + (size_t)n > FZ_CLIENT_MAX)
                fz_cli.overflow = 1;
            else
                gw_buf_append(&fz_cli.got, tmp, (size_t)n);
            continue;
        }
        if (n == -1 && errno == EINTR)
            continue;
        if (n == 0 || errno != EAGAIN) {
            fz_cli.eof = 1;
            ev_io_stop(loop, w);
        }
        return;
    }
}

/* Checks of the responses the client received, parsed strictly. */
static struct {
    int nfinal;    /* final (non-1xx) responses */
    int status;
    int is_head;
    int up_tag;    /* X-Fz-Up value, -1 */
    int hdr_is_tag;
    char body[1024];
    size_t body_len;
    int stop;      /* a 101: what follows is tunnel bytes */
} fz_resp;

static int cr_on_message_begin(llhttp_t *p)
{
    fz_resp.up_tag = -1;
    fz_resp.body_len = 0;
    fz_resp.hdr_is_tag = 0;
    return 0;
}

static int cr_on_header_field(llhttp_t *p, const char *at, size_t len)
{
    fz_resp.hdr_is_tag = lc_is(at, len, "x-fz-up");
    return 0;
}

static int cr_on_header_value(llhttp_t *p, const char *at, size_t len)
{
    if (fz_resp.hdr_is_tag) {
        fz_resp.up_tag = 0;
        for (size_t i = 0; i < len && at[i] >= '0' && at[i] <= '9'; i++)
            fz_resp.up_tag = fz_resp.up_tag * 10 + (at[i] - '0');
        fz_resp.hdr_is_tag = 0;
    }
    return 0;
}

static int cr_on_headers_complete(llhttp_t *p)
{
    fz_resp.status = p->status_code;
    fz_check("client-version", p->http_major == 1 && p->http_minor == 1);
    int i = fz_resp.nfinal;
    fz_resp.is_head = i < fz_ref.nreq && i < FZ_MAX_REQS && fz_ref.req[i].is_head;
    if (p->status_code < 200)
        return 0;
    return fz_resp.is_head ? 1 : 0;
}

static int cr_on_body(llhttp_t *p, const char *at, size_t len)
{
    size_t room = sizeof(fz_resp.body) - 1 - fz_resp.body_len;
    if (len > room)
        len = room;
    memcpy(fz_resp.body + fz_resp.body_len, at, len);
    fz_resp.body_len += len;
    return 0;
}

static int cr_on_message_complete(llhttp_t *p)
{
    int st = fz_resp.status;
    if (st == 101) {
        fz_resp.nfinal++;
        fz_resp.stop = 1;
        return HPE_PAUSED;
    }
    if (st < 200)
        return 0;
    int i = fz_resp.nfinal++;
    fz_check("client-response-count", fz_resp.nfinal <= fz_ref.nreq + fz_ref.tail);
    if (st >= 400 && st < 500 && fz_resp.up_tag < 0 && !fz_resp.is_head) {
        fz_resp.body[fz_resp.body_len] = '\0';
        fz_check("client-error-json", strcasestr(fz_resp.body, "\"message\"") != NULL);
    }
    if (fz_resp.up_tag >= 0) {
        int k = fz_resp.up_tag;
        fz_check("client-upstream-tag", k < fz_nureq);
        if (k < FZ_MAX_REQS && i < fz_ref.nreq && i < FZ_MAX_REQS && !fz_ureq[k].body_changed &&
            !fz_ref.req[i].after_upgrade)
            fz_check("upstream-body-len", fz_ureq[k].body_len == fz_ref.req[i].body_len);
    }
    return 0;
}

static int fz_h2; /* the input is an HTTP/2 connection: the client checks do not apply */

static void fz_check_client(void)
{
    static llhttp_settings_t s;
    static int ready;
    if (!ready) {
        llhttp_settings_init(&s);
        s.on_message_begin = cr_on_message_begin;
        s.on_header_field = cr_on_header_field;
        s.on_header_value = cr_on_header_value;
        s.on_headers_complete = cr_on_headers_complete;
        s.on_body = cr_on_body;
        s.on_message_complete = cr_on_message_complete;
        ready = 1;
    }
    memset(&fz_resp, 0, sizeof(fz_resp));
    if (fz_h2 || fz_cli.overflow || fz_cli.got.len == 0)
        return;
    llhttp_t p;
    llhttp_init(&p, HTTP_RESPONSE, &s);
    llhttp_errno_t e = llhttp_execute(&p, fz_cli.got.data, fz_cli.got.len);
    if (e == HPE_PAUSED || e == HPE_PAUSED_UPGRADE) {
        if (fz_resp.stop)
            return;
    }
    if (e != HPE_OK && fz_debug)
        fprintf(stderr, "client got (%s: %s):\n%.*s\n", llhttp_errno_name(e),
                llhttp_get_error_reason(&p), (int)fz_cli.got.len, fz_cli.got.data);
    fz_check("client-response-parses", e == HPE_OK);
}

/* ---- the loop ------------------------------------------------------------ */

static int fz_expired;
static ev_timer fz_watchdog;

static void fz_watchdog_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
    fz_expired = 1;
}

/* Runs loop passes until three in a row move no byte and no timer is due. */
static void fz_pump(void)
{
    int idle = 0;
    for (int i = 0; i < 10000 && idle < 3; i++) {
        uint64_t before = fz_moved;
        ev_run(fz_loop, EVRUN_NOWAIT);
        idle = fz_moved == before ? idle + 1 : 0;
    }
}

static uint32_t fz_rand(uint32_t *s)
{
    *s ^= *s << 13;
    *s ^= *s >> 17;
    *s ^= *s << 5;
    return *s;
}

/* ---- setup --------------------------------------------------------------- */

static const char fz_config_fmt[] =
    "local port = %d\n"
    "local function svc(s)\n"
    "  s.host = '127.0.0.1'; s.port = port; s.retries = 1\n"
    "  s.connect_timeout = 300; s.read_timeout = 300; s.write_timeout = 300\n"
    "  return s\n"
    "end\n"
    "local s1 = svc({ name = 's1', routes = {\n"
    "  { name = 'root', paths = { '/' } },\n"
    "  { name = 'host', hosts = { 'example.com', 'example.com:8000' }, paths = { '/h' },\n"
    "    preserve_host = true },\n"
    "  { name = 'tenant', headers = { ['x-tenant'] = { 'a', 'b' } }, paths = { '/t' } },\n"
    "  { name = 'ws', paths = { '/ws' }, strip_path = false },\n"
    "  { name = 'plug', paths = { '/plug' }, plugins = { { name = 'fz-edit' } } },\n"
    "  { name = 'stream', paths = { '/stream' },\n"
    "    plugins = { { name = 'rt-body', config = { mode = 'arg' } } } },\n"
    "  { name = 'raw', paths = { '/raw' },\n"
    "    plugins = { { name = 'rt-body', config = { mode = 'raw' } } } },\n"
    "  { name = 'buffer', paths = { '/buffer' }, plugins = { { name = 'rt-buffer' } } },\n"
    "} })\n"
    "local s2 = svc({ name = 's2', path = '/base', routes = {\n"
    "  { name = 'api', paths = { '/api' }, strip_path = false },\n"
    "  { name = 'users', paths = { [[~/users/(?<id>\\d+)/(\\w+)$]] }, regex_priority = 3 },\n"
    "  { name = 'methods', methods = { 'POST', 'PUT' }, paths = { '/m' } },\n"
    "  { name = 'v1', paths = { '/v1/' }, path_handling = 'v1' },\n"
    "  { name = 'plug2', paths = { '/plug2' }, preserve_host = true,\n"
    "    plugins = { { name = 'fz-edit' } } },\n"
    "} })\n"
    "local s3 = svc({ name = 's3', path = '/p/', routes = {\n"
    "  { name = 'wild', hosts = { '*.example.org', 'api.*' } },\n"
    "  { name = 'files', paths = { [[~/files/(.*)\\.(png|jpg)]] }, strip_path = false },\n"
    "} , plugins = { { name = 'fz-edit' } } })\n"
    "return { _format_version = '3.0', services = { s1, s2, s3 } }\n";

static void fz_die(const char *what)
{
    fprintf(stderr, "request_fuzzer: setup failed: %s\n", what);
    exit(2);
}

static void fz_setup_upstream(void)
{
    fz_up_lfd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fz_up_lfd == -1)
        fz_die("socket()");
    struct sockaddr_in sa = {.sin_family = AF_INET};
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t len = sizeof(sa);
    if (bind(fz_up_lfd, (struct sockaddr *)&sa, sizeof(sa)) == -1 ||
        listen(fz_up_lfd, 128) == -1 ||
        getsockname(fz_up_lfd, (struct sockaddr *)&sa, &len) == -1)
        fz_die("bind()/listen() of the fake upstream");
    fz_up_port = ntohs(sa.sin_port);
    llhttp_settings_init(&fz_up_settings);
    fz_up_settings.on_message_begin = up_on_message_begin;
    fz_up_settings.on_header_field = up_on_header_field;
    fz_up_settings.on_header_value = up_on_header_value;
    fz_up_settings.on_header_value_complete = up_on_header_value_complete;
    fz_up_settings.on_headers_complete = up_on_headers_complete;
    fz_up_settings.on_body = up_on_body;
    fz_up_settings.on_message_complete = up_on_message_complete;
    ev_io_init(&fz_up_lio, fz_up_accept_cb, fz_up_lfd, EV_READ);
    ev_io_start(fz_loop, &fz_up_lio);
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    signal(SIGPIPE, SIG_IGN);
    const char *skip = getenv("FUZZ_SKIP_CHECKS");
    snprintf(fz_skip, sizeof(fz_skip), ",%s,", skip ? skip : "");
    fz_debug = getenv("FUZZ_DEBUG") != NULL && *getenv("FUZZ_DEBUG") != '\0';

    static char root[PATH_MAX], pdir[PATH_MAX + 32], fdir[PATH_MAX + 32];
    if (getcwd(root, sizeof(root)) == NULL)
        fz_die("getcwd()");
    snprintf(pdir, sizeof(pdir), "%s/runtime/fuzz/plugins", root);
    snprintf(fdir, sizeof(fdir), "%s/spec/fixtures/plugins", root);
    gw_settings.prefix = root;
    gw_settings.plugin_dirs[0] = pdir;
    gw_settings.plugin_dirs[1] = fdir;
    gw_settings.nplugin_dirs = 2;
    gw_settings.workers = 1;
    gw_settings.log_level = fz_debug ? GW_LOG_INFO : GW_LOG_ALERT;
    gw_log_level_current = gw_settings.log_level;
    gw_settings.access_log = "/dev/null"; /* the JSON lines are built, then dropped */
    gw_settings.error_log = "stderr";
    gw_settings.client_header_timeout = 300;
    gw_settings.client_body_timeout = 300;
    gw_settings.keepalive_timeout = 300;
    gw_settings.send_timeout = 300;
    gw_settings.drain_timeout = 300;
    gw_settings.max_header_size = 8192;
    gw_settings.max_body_size = 65536;
    gw_settings.upstream_keepalive = 4;
    gw_settings.upstream_keepalive_timeout = 1000;
    gw_settings.upstream_keepalive_requests = 100;
    static const char *const dicts[] = {"kong", "kong_db_cache", "kong_locks",
                                        "kong_rate_limiting_counters"};
    for (int i = 0; i < 4; i++) {
        gw_settings.shdict_name[i] = dicts[i];
        gw_settings.shdict_size[i] = 256 * 1024;
        if (gw_shdict_create(dicts[i], 256 * 1024) != GW_OK)
            fz_die("gw_shdict_create()");
    }
    gw_settings.nshdicts = 4;
    if (gw_stats_init(1) != 0)
        fz_die("gw_stats_init()");

    snprintf(fz_listen.text, sizeof(fz_listen.text), "127.0.0.1:%d", FZ_PORT);
    struct sockaddr_in *la = (struct sockaddr_in *)&fz_listen.addr;
    la->sin_family = AF_INET;
    la->sin_port = htons(FZ_PORT);
    la->sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    fz_listen.addrlen = sizeof(*la);
    fz_listen.port = FZ_PORT;
    fz_listen.http2 = 1; /* h2c by prior knowledge, beside HTTP/1.1 */
    gw_settings.listen[0] = fz_listen;
    gw_settings.nlisten = 1;

    /* what gw_worker_main does, minus the listeners, signals and control pipe */
    fz_wk.id = 0;
    gw_worker = &fz_wk;
    gw_list_init(&fz_wk.conns);
    gw_list_init(&fz_wk.free_reqs);
    fz_wk.stats = &gw_stats->w[0];
    fz_wk.stats->pid = getpid();
    fz_wk.loop = fz_loop = ev_default_loop(EVFLAG_AUTO);
    if (fz_loop == NULL)
        fz_die("ev_default_loop()");
    fz_setup_upstream();
    fz_wk.L = gw_lua_new();
    if (fz_wk.L == NULL || gw_lua_init(fz_wk.L) != 0)
        fz_die("gw_lua_new()/gw_lua_init()");

    snprintf(fz_dir, sizeof(fz_dir), "/tmp/luagate-fuzz-XXXXXX");
    if (mkdtemp(fz_dir) == NULL)
        fz_die("mkdtemp()");
    char path[128];
    snprintf(path, sizeof(path), "%s/config.lua", fz_dir);
    FILE *f = fopen(path, "w");
    if (f == NULL)
        fz_die("fopen() of the configuration");
    fprintf(f, fz_config_fmt, fz_up_port);
    fclose(f);
    char *errs = NULL;
    fz_wk.config = gw_config_load(fz_wk.L, path, &errs);
    unlink(path);
    rmdir(fz_dir);
    if (fz_wk.config == NULL) {
        fprintf(stderr, "request_fuzzer: %s\n", errs ? errs : "");
        fz_die("gw_config_load()");
    }
    if (gw_access_log_open(gw_settings.access_log) != 0 || gw_dns_init() != 0)
        fz_die("gw_access_log_open()/gw_dns_init()");
    ev_init(&fz_watchdog, fz_watchdog_cb);
    return 0;
}

/* ---- one input ------------------------------------------------------------ */

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 2)
        return 0;
    const char *in = (const char *)data + 2;
    size_t n = size - 2;
    uint32_t rs = 0x9e3779b9u ^ (uint32_t)size;
    for (size_t i = 0; i < size && i < 64; i++)
        rs = (rs ^ data[i]) * 16777619u;
    if (rs == 0)
        rs = 1;
    fz_answers = data[1];
    fz_nureq = 0;
    fz_wk.rng[0] = 0x0123456789abcdefULL; /* the same request ids on replay */
    fz_wk.rng[1] = 0xfedcba9876543210ULL;
    fz_h2 = gw_h2_preface(in, n) != GW_DECLINED;
    fz_ref_parse(in, fz_h2 ? 0 : n);

    int sv[2];
    if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, sv) == -1)
        fz_die("socketpair()");
    struct sockaddr_storage peer;
    memset(&peer, 0, sizeof(peer));
    struct sockaddr_in *p4 = (struct sockaddr_in *)&peer;
    p4->sin_family = AF_INET;
    p4->sin_port = htons(40000);
    p4->sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    memset(&fz_cli, 0, sizeof(fz_cli));
    fz_cli.fd = sv[1];
    ev_io_init(&fz_cli.io, fz_cli_cb, sv[1], EV_READ);
    ev_io_start(fz_loop, &fz_cli.io);
    if (gw_conn_adopt(sv[0], &fz_listen, &peer) != GW_OK)
        fz_die("gw_conn_adopt()");

    fz_expired = 0;
    ev_timer_set(&fz_watchdog, FZ_WATCHDOG, 0);
    ev_now_update(fz_loop);
    ev_timer_start(fz_loop, &fz_watchdog);

    /* the client writes its bytes in slices, one loop pass between two */
    size_t off = 0;
    while (off < n && !fz_expired) {
        size_t k = n - off;
        if (data[0] && k > 1) {
            size_t s = 1 + fz_rand(&rs) % data[0];
            if (s < k)
                k = s;
        }
        ssize_t w = write(sv[1], in + off, k);
        if (w > 0) {
            off += (size_t)w;
            ev_run(fz_loop, EVRUN_NOWAIT);
        } else if (w == -1 && (errno == EAGAIN || errno == EINTR)) {
            ev_run(fz_loop, EVRUN_ONCE); /* the gateway reads, or the watchdog fires */
        } else {
            break; /* the gateway closed */
        }
    }
    fz_pump(); /* let every answer come back before the client stops sending */
    shutdown(sv[1], SHUT_WR);
    while (fz_wk.nconns > 0 && !fz_expired)
        ev_run(fz_loop, EVRUN_ONCE);
    int hung = fz_wk.nconns > 0;
    while (!gw_list_empty(&fz_wk.conns)) /* the harness stopped early */
        gw_conn_close(gw_container_of(fz_wk.conns.next, struct gw_conn, link));
    ev_timer_stop(fz_loop, &fz_watchdog);
    fz_pump();
    fz_cli_cb(fz_loop, &fz_cli.io, EV_READ);
    ev_io_stop(fz_loop, &fz_cli.io);
    close(sv[1]);
    gw_access_log_flush();

    /* the client connection is gone: what the fake upstream still has open
     * is in the gateway's keepalive pool, and must be reusable */
    for (struct fz_up *u = fz_ups; u; u = u->next) {
        fz_check("pool-clean", !u->in_msg && !u->tunnel && !u->shut && !u->stopped &&
                                   u->nsent == u->nrecv && u->parsed == u->in.len &&
                                   gw_buf_pending(&u->out) == 0);
    }
    gw_upstream_pool_drain();
    fz_pump();
    while (fz_ups)
        fz_up_free(fz_ups);

    if (fz_debug)
        fprintf(stderr, "=== client got %zu bytes (%d upstream requests%s):\n%.*s\n===\n",
                fz_cli.got.len, fz_nureq, hung ? ", connection hung" : "",
                fz_cli.got.len > 3000 ? 3000 : (int)fz_cli.got.len,
                fz_cli.got.data);
    fz_check("conn-hang", !hung);
    fz_check_client();
    gw_buf_free(&fz_cli.got);
    return 0;
}
