/* FFI functions over a request: what the PDK reads and changes. See
 * gw/ffi.h for the rules. Changes are recorded in the request (header lists
 * copied into the request pool on first change, overrides for path, query,
 * method, body, target) and applied when the upstream head is built or the
 * response head is written. */
#include <arpa/inet.h>
#include <ctype.h>
#include <sys/socket.h>
#include <lua.h>
#include <string.h>
#include <strings.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

#include "gw/buf.h"
#include "gw/compress.h"
#include "gw/config-t.h"
#include "gw/conn.h"
#include "gw/ffi.h"
#include "gw/grpc.h"
#include "gw/health.h"
#include "gw/hlist.h"
#include "gw/hops.h"
#include "gw/http.h"
#include "gw/log.h"
#include "gw/lua_req.h"
#include "gw/pool.h"
#include "gw/settings-t.h"
#include "gw/stats.h"
#include "gw/worker-t.h"

static struct gw_conn *conn_of(struct gw_req *r)
{
    return r->conn;
}

static int view(const char *p, size_t n, const char **op, size_t *on)
{
    *op = p;
    *on = n;
    return GW_OK;
}

/* Refuses header names that are not tokens and values with CR, LF or NUL:
 * nothing a plugin sets can split a head. */
/* RFC 9110 token characters (header names): one table look-up per byte,
 * plugins set several headers per request */
static const uint8_t token_char[256] = {
    ['!'] = 1, ['#'] = 1, ['$'] = 1, ['%'] = 1, ['&'] = 1, ['\''] = 1, ['*'] = 1, ['+'] = 1,
    ['-'] = 1, ['.'] = 1, ['^'] = 1, ['_'] = 1, ['`'] = 1, ['|'] = 1, ['~'] = 1,
    ['0'] = 1, ['1'] = 1, ['2'] = 1, ['3'] = 1, ['4'] = 1, ['5'] = 1, ['6'] = 1, ['7'] = 1,
    ['8'] = 1, ['9'] = 1,
    ['A'] = 1, ['B'] = 1, ['C'] = 1, ['D'] = 1, ['E'] = 1, ['F'] = 1, ['G'] = 1, ['H'] = 1,
    ['I'] = 1, ['J'] = 1, ['K'] = 1, ['L'] = 1, ['M'] = 1, ['N'] = 1, ['O'] = 1, ['P'] = 1,
    ['Q'] = 1, ['R'] = 1, ['S'] = 1, ['T'] = 1, ['U'] = 1, ['V'] = 1, ['W'] = 1, ['X'] = 1,
    ['Y'] = 1, ['Z'] = 1,
    ['a'] = 1, ['b'] = 1, ['c'] = 1, ['d'] = 1, ['e'] = 1, ['f'] = 1, ['g'] = 1, ['h'] = 1,
    ['i'] = 1, ['j'] = 1, ['k'] = 1, ['l'] = 1, ['m'] = 1, ['n'] = 1, ['o'] = 1, ['p'] = 1,
    ['q'] = 1, ['r'] = 1, ['s'] = 1, ['t'] = 1, ['u'] = 1, ['v'] = 1, ['w'] = 1, ['x'] = 1,
    ['y'] = 1, ['z'] = 1,
};

/* Whether p[0..n) holds a CR, LF or NUL byte: 8 bytes per step (a word
 * has a zero byte when (w - 0x01..) & ~w & 0x80.. is not 0; xor with 0x0a..
 * and 0x0d.. makes LF and CR bytes zero). One pass where three memchr()
 * calls cost more than the scan for the short values plugins set. */
static int has_cr_lf_nul(const char *p, size_t n)
{
    const uint64_t ones = 0x0101010101010101u, high = 0x8080808080808080u;
    const uint64_t lf = 0x0a0a0a0a0a0a0a0au, cr = 0x0d0d0d0d0d0d0d0du;
    uint64_t w, a, b;

    while (n >= 8) {
        memcpy(&w, p, 8);
        a = w ^ lf;
        b = w ^ cr;
        if (((w - ones) & ~w & high) | ((a - ones) & ~a & high) | ((b - ones) & ~b & high))
            return 1;
        p += 8;
        n -= 8;
    }
    while (n > 0) {
        unsigned char c = (unsigned char)*p++;
        if (c == '\n' || c == '\r' || c == '\0')
            return 1;
        n--;
    }
    return 0;
}

/* No CR, LF or NUL in a value: they would split or end the header line. */
static int valid_value(const char *value, size_t vlen, const char **err)
{
    if (vlen && has_cr_lf_nul(value, vlen)) {
        *err = "invalid header value: CR, LF and NUL are not allowed";
        return 0;
    }
    return 1;
}

static int valid_header(const char *name, size_t nlen, const char *value, size_t vlen,
                        const char **err)
{
    unsigned char bad = nlen == 0;
    for (size_t i = 0; i < nlen; i++)
        bad |= !token_char[(unsigned char)name[i]];
    if (bad) {
        *err = "invalid header name";
        return 0;
    }
    return valid_value(value, vlen, err);
}

/* Strips GW_HDR_NAME_OK from *op; whether the name (unless the flag was
 * set) and the value (unless the op clears) pass. */
static int header_op(int *op, const char *name, size_t nlen, const char *value, size_t vlen,
                     const char **err)
{
    int name_ok = *op & GW_HDR_NAME_OK;
    *op &= ~GW_HDR_NAME_OK;
    if (*op == GW_HDR_CLEAR)
        vlen = 0;
    if (name_ok && nlen > 0)
        return valid_value(value, vlen, err);
    return valid_header(name, nlen, value, vlen, err);
}

/* ---------------------------------------------------------------- request */

int gw_ffi_req_method(struct gw_req *r, const char **p, size_t *n)
{
    struct gw_conn *c = conn_of(r);
    if (c == NULL)
        return GW_ERROR;
    const char *m = llhttp_method_name((llhttp_method_t)c->parser.method);
    return view(m, strlen(m), p, n);
}

int gw_ffi_req_raw_path(struct gw_req *r, const char **p, size_t *n)
{
    struct gw_conn *c = conn_of(r);
    if (c == NULL)
        return GW_ERROR;
    return view(c->in.data + r->url_off, r->path_len, p, n);
}

int gw_ffi_req_path(struct gw_req *r, const char **p, size_t *n)
{
    if (r->npath == NULL)
        return gw_ffi_req_raw_path(r, p, n);
    return view(r->npath, r->npath_len, p, n);
}

int gw_ffi_req_query(struct gw_req *r, const char **p, size_t *n)
{
    struct gw_conn *c = conn_of(r);
    if (c == NULL)
        return GW_ERROR;
    if (r->has_up_query) /* as nginx's $args: the query plugins set (Kong) */
        return view(r->up_query.p ? r->up_query.p : "", r->up_query.n, p, n);
    if (r->url_len <= r->path_len)
        return view("", 0, p, n);
    return view(c->in.data + r->url_off + r->path_len + 1, r->url_len - r->path_len - 1, p, n);
}

int gw_ffi_req_target(struct gw_req *r, const char **p, size_t *n)
{
    struct gw_conn *c = conn_of(r);
    if (c == NULL)
        return GW_ERROR;
    return view(c->in.data + r->url_off, r->url_len, p, n);
}

int gw_ffi_req_server_addr(struct gw_req *r, const char **p, size_t *n)
{
    struct gw_conn *c = conn_of(r);
    struct sockaddr_storage sa;
    socklen_t len = sizeof(sa);
    if (c && c->bridge && c->bridge->local_ip[0]) /* an HTTP/2 stream: its socket is the bridge's */
        return view(c->bridge->local_ip, strlen(c->bridge->local_ip), p, n);
    if (c == NULL || getsockname(c->fd, (struct sockaddr *)&sa, &len) == -1)
        return GW_ERROR;
    char *buf = gw_pool_alloc(&r->pool, INET6_ADDRSTRLEN);
    if (buf == NULL)
        return GW_ERROR;
    const void *a = sa.ss_family == AF_INET6 ? (const void *)&((struct sockaddr_in6 *)&sa)->sin6_addr
                                             : (const void *)&((struct sockaddr_in *)&sa)->sin_addr;
    if (inet_ntop(sa.ss_family, a, buf, INET6_ADDRSTRLEN) == NULL)
        return GW_ERROR;
    return view(buf, strlen(buf), p, n);
}

int gw_ffi_req_http_version(struct gw_req *r, double *v)
{
    struct gw_conn *c = conn_of(r);
    if (c == NULL)
        return GW_ERROR;
    /* an HTTP/2 stream reaches us as HTTP/1.1 through its bridge (h2.c) */
    *v = c->http2 ? 2.0 : c->parser.http_major + c->parser.http_minor / 10.0;
    return GW_OK;
}

int gw_ffi_req_id(struct gw_req *r, const char **p, size_t *n)
{
    return view(r->id, GW_REQUEST_ID_LEN, p, n);
}

double gw_ffi_req_start_time(struct gw_req *r)
{
    return r->t_start;
}

int gw_ffi_req_client(struct gw_req *r, const char **ip, size_t *iplen, int *port)
{
    struct gw_conn *c = conn_of(r);
    if (c == NULL)
        return GW_ERROR;
    *ip = c->peer_ip;
    *iplen = strlen(c->peer_ip);
    *port = c->peer_port;
    return GW_OK;
}

int gw_ffi_req_server_port(struct gw_req *r)
{
    struct gw_conn *c = conn_of(r);
    return c ? c->listen->port : 0;
}

/* The client's headers as views: the pool copy once a plugin changed them. */
static int req_hlist(struct gw_req *r, struct gw_conn *c, struct gw_hlist **out)
{
    if (r->up_hdrs == NULL) {
        struct gw_hlist *h = gw_hlist_from_head(&r->pool, &r->head, c->in.data, r->head_len);
        if (h == NULL)
            return GW_ERROR;
        r->up_hdrs = h;
    }
    *out = r->up_hdrs;
    return GW_OK;
}

int gw_ffi_req_header(struct gw_req *r, const char *name, size_t nlen, int idx, const char **p,
                      size_t *n)
{
    struct gw_conn *c = conn_of(r);
    if (c == NULL)
        return GW_ERROR;
    if (r->up_hdrs)
        return gw_hlist_get(r->up_hdrs, name, nlen, idx, p, n);
    for (int i = 0; i < r->head.nhdr; i++) {
        const struct gw_hdr *h = &r->head.hdr[i];
        if (h->name_len == nlen && strncasecmp(c->in.data + h->name, name, nlen) == 0 &&
            idx-- == 0)
            return view(c->in.data + h->value, h->value_len, p, n);
    }
    return GW_DECLINED;
}

int gw_ffi_req_header_count(struct gw_req *r)
{
    return r->up_hdrs ? r->up_hdrs->n : r->head.nhdr;
}

int gw_ffi_req_header_at(struct gw_req *r, int i, const char **name, size_t *nlen,
                         const char **value, size_t *vlen)
{
    struct gw_conn *c = conn_of(r);
    if (c == NULL)
        return GW_ERROR;
    if (r->up_hdrs) {
        if (i < 0 || i >= r->up_hdrs->n)
            return GW_DECLINED;
        const struct gw_hview *v = &r->up_hdrs->v[i];
        *name = v->name;
        *nlen = v->nlen;
        *value = v->value;
        *vlen = v->vlen;
        return GW_OK;
    }
    if (i < 0 || i >= r->head.nhdr)
        return GW_DECLINED;
    const struct gw_hdr *h = &r->head.hdr[i];
    *name = c->in.data + h->name;
    *nlen = h->name_len;
    *value = c->in.data + h->value;
    *vlen = h->value_len;
    return GW_OK;
}

int gw_ffi_req_set_consumer(struct gw_req *r, const char *id, size_t len)
{
    if (id == NULL || len == 0) {
        r->consumer_id = NULL;
        return GW_OK;
    }
    r->consumer_id = gw_pool_strdup(&r->pool, id, len);
    return r->consumer_id ? GW_OK : GW_ERROR;
}

int gw_ffi_metrics_consumers(void)
{
    return gw_settings.metrics_consumers;
}

int gw_ffi_req_set_consumer_name(struct gw_req *r, const char *name, size_t len)
{
    r->consumer_name = name && len ? gw_pool_strdup(&r->pool, name, len) : NULL;
    return GW_OK;
}

int gw_ffi_req_route(struct gw_req *r)
{
    return r->route ? r->match.route : -1;
}

int gw_ffi_req_capture_count(struct gw_req *r)
{
    return r->route ? r->match.ncap : 0;
}

int gw_ffi_req_capture(struct gw_req *r, int i, const char **p, size_t *n)
{
    if (r->route == NULL || i < 0 || i >= r->match.ncap || r->match.cap[2 * i] == SIZE_MAX)
        return GW_DECLINED;
    size_t s = r->match.cap[2 * i], e = r->match.cap[2 * i + 1];
    return view(r->npath + s, e - s, p, n);
}

const char *gw_ffi_req_capture_name(struct gw_req *r, int i)
{
    if (r->route == NULL || r->match.cap_names == NULL || i < 0 || i >= r->match.ncap)
        return NULL;
    return r->match.cap_names[i];
}

int gw_ffi_req_read_body(struct gw_req *r, const char **err)
{
    struct gw_conn *c = conn_of(r);
    if (c == NULL) {
        *err = "no request";
        return GW_ERROR;
    }
    if (!r->has_body || r->body_mode == GW_BODY_READ)
        return GW_OK;
    if (r->body_mode == GW_BODY_DISCARD) {
        *err = "the body was replaced";
        return GW_ERROR;
    }
    if (r->lctx == NULL || r->lctx->waiting) {
        *err = "cannot wait here";
        return GW_ERROR;
    }
    if (r->phase != GW_PHASE_ACCESS && r->phase != GW_PHASE_REWRITE) {
        *err = "the body can only be read in rewrite and access";
        return GW_ERROR;
    }
    int rc = gw_conn_read_body(c);
    if (rc == GW_AGAIN)
        r->lctx->waiting = 1;
    else if (rc == GW_ERROR)
        *err = r->body_too_large ? "request body too large" : "could not read the request body";
    return rc;
}

int gw_ffi_req_body(struct gw_req *r, const char **p, size_t *n)
{
    if (!r->has_body)
        return view("", 0, p, n);
    if (r->body_mode != GW_BODY_READ)
        return GW_DECLINED;
    return view(r->body_buf.data ? r->body_buf.data : "", r->body_buf.len, p, n);
}

/* ------------------------------------------------------- upstream request */

int gw_ffi_upstream_header(struct gw_req *r, int op, const char *name, size_t nlen,
                           const char *value, size_t vlen, const char **err)
{
    struct gw_conn *c = conn_of(r);
    struct gw_hlist *h;
    if (c == NULL || !header_op(&op, name, nlen, value, vlen, err))
        return GW_ERROR;
    if (req_hlist(r, c, &h) != GW_OK) {
        *err = "no memory";
        return GW_ERROR;
    }
    if (gw_hlist_apply(&r->pool, h, op, name, nlen, value, vlen) != GW_OK) {
        *err = "no memory";
        return GW_ERROR;
    }
    if (nlen == 4 && strncasecmp(name, "host", 4) == 0)
        r->host_changed = op != GW_HDR_CLEAR;
    return GW_OK;
}

/* Packed headers (kong.response.pack_headers): per header an op
 * digit, the name, NUL, the value, NUL. Applies set(r, op, ...) to each; an
 * op outside allowed (a mask of 1 << op) makes them malformed. */
static int apply_packed(struct gw_req *r, const char *p, size_t len, uint32_t allowed,
                        int (*set)(struct gw_req *, int, const char *, size_t, const char *,
                                   size_t, const char **),
                        const char **err)
{
    const char *end = p + len;
    while (p < end) {
        int op = *p++ - '0';
        const char *name = p;
        const char *nend = memchr(name, '\0', (size_t)(end - name));
        const char *value = nend ? nend + 1 : NULL;
        const char *vend = value ? memchr(value, '\0', (size_t)(end - value)) : NULL;
        if (vend == NULL || op < 0 || op > 31 || !(allowed & (1u << op))) {
            *err = "malformed packed headers";
            return GW_ERROR;
        }
        if (set(r, op, name, (size_t)(nend - name), value, (size_t)(vend - value), err) != GW_OK)
            return GW_ERROR;
        p = vend + 1;
    }
    return GW_OK;
}

struct gw_hops *gw_ffi_hops_new(const char *p, size_t len, const char **err)
{
    return gw_hops_new(p, len, err);
}

void gw_ffi_hops_free(struct gw_hops *o)
{
    gw_hops_free(o);
}

int gw_ffi_hops_slots(const struct gw_hops *o)
{
    return gw_hops_slots(o);
}

int gw_ffi_upstream_set_hops(struct gw_req *r, const struct gw_hops *o, const int64_t *ints,
                             const char **err)
{
    struct gw_conn *c = conn_of(r);
    struct gw_hlist *h;
    if (c == NULL || o == NULL || (ints == NULL && gw_hops_slots(o) > 0)) {
        *err = c == NULL ? "no request" : "no prepared headers or slot values";
        return GW_ERROR;
    }
    if (req_hlist(r, c, &h) != GW_OK || gw_hops_apply(o, &r->pool, h, ints) != GW_OK) {
        *err = "no memory";
        return GW_ERROR;
    }
    if (gw_hops_names_host(o))
        r->host_changed = gw_hops_host_set(o);
    return GW_OK;
}

static int set_str(struct gw_req *r, struct gw_str *s, const char *p, size_t n, const char **err)
{
    char *d = gw_pool_strdup(&r->pool, p, n);
    if (d == NULL) {
        *err = "no memory";
        return GW_ERROR;
    }
    s->p = d;
    s->n = n;
    return GW_OK;
}

int gw_ffi_upstream_path(struct gw_req *r, const char *p, size_t n, const char **err)
{
    if (n == 0 || p[0] != '/') {
        *err = "path must start with /";
        return GW_ERROR;
    }
    for (size_t i = 0; i < n; i++)
        if ((unsigned char)p[i] <= ' ' || p[i] == '?' || p[i] == 127) {
            *err = "invalid character in path";
            return GW_ERROR;
        }
    return set_str(r, &r->up_path, p, n, err);
}

int gw_ffi_upstream_query(struct gw_req *r, const char *p, size_t n, const char **err)
{
    for (size_t i = 0; i < n; i++)
        if ((unsigned char)p[i] <= ' ' || p[i] == 127 || p[i] == '#') {
            *err = "invalid character in query";
            return GW_ERROR;
        }
    r->has_up_query = 1;
    return set_str(r, &r->up_query, p, n, err);
}

int gw_ffi_upstream_method(struct gw_req *r, const char *p, size_t n, const char **err)
{
    if (n == 0 || n > 32) {
        *err = "invalid method";
        return GW_ERROR;
    }
    for (size_t i = 0; i < n; i++)
        if (!(p[i] >= 'A' && p[i] <= 'Z') && p[i] != '-' && p[i] != '_') {
            *err = "invalid method";
            return GW_ERROR;
        }
    return set_str(r, &r->up_method, p, n, err);
}

int gw_ffi_upstream_scheme(struct gw_req *r, const char *p, size_t n, const char **err)
{
    if (n == 4 && memcmp(p, "http", 4) == 0)
        return GW_OK;
    *err = n == 5 && memcmp(p, "https", 5) == 0 ? "https upstreams are not supported yet"
                                                : "invalid scheme";
    return GW_ERROR;
}

int gw_ffi_upstream_body(struct gw_req *r, const char *p, size_t n, const char **err)
{
    if (set_str(r, &r->up_body, p, n, err) != GW_OK)
        return GW_ERROR;
    r->has_up_body = 1;
    if (r->has_body && r->body_mode == GW_BODY_STREAM)
        r->body_mode = GW_BODY_DISCARD; /* the client's body is read and dropped */
    return GW_OK;
}

int gw_ffi_upstream_target(struct gw_req *r, const char *host, size_t hlen, int port,
                           const char **err)
{
    if (hlen == 0 || port < 1 || port > 65535) {
        *err = "invalid target";
        return GW_ERROR;
    }
    char *h = gw_pool_strdup(&r->pool, host, hlen);
    if (h == NULL) {
        *err = "no memory";
        return GW_ERROR;
    }
    r->up_target_host = h;
    r->up_target_port = port;
    return GW_OK;
}

int gw_ffi_upstream_xfwd(struct gw_req *r, int which, const char *v, size_t n, const char **err)
{
    if (which < 0 || which > 5) {
        *err = "invalid X-Forwarded header";
        return GW_ERROR;
    }
    if (!valid_header("X-Forwarded", 11, v, n, err))
        return GW_ERROR;
    return set_str(r, &r->xfwd[which], v, n, err);
}

int gw_ffi_upstream_timeouts(struct gw_req *r, int connect_ms, int write_ms, int read_ms)
{
    if (connect_ms > 0)
        r->up_connect_timeout = connect_ms;
    if (write_ms > 0)
        r->up_write_timeout = write_ms;
    if (read_ms > 0)
        r->up_read_timeout = read_ms;
    return GW_OK;
}

int gw_ffi_upstream_status(struct gw_req *r)
{
    return r->upstream_status;
}

/* --------------------------------------------------------------- response */

int gw_ffi_resp_status(struct gw_req *r)
{
    if (r->resp_status)
        return r->resp_status;
    return r->status;
}

int gw_ffi_resp_set_status(struct gw_req *r, int status, const char **err)
{
    if (status < 100 || status > 999) {
        *err = "invalid status";
        return GW_ERROR;
    }
    if (r->resp_started && r->phase != GW_PHASE_HEADER_FILTER) {
        *err = "headers already sent";
        return GW_ERROR;
    }
    r->resp_status = status;
    return GW_OK;
}

static int resp_list(struct gw_req *r, struct gw_hlist **out)
{
    if (r->resp_hdrs == NULL) {
        r->resp_hdrs = gw_hlist_new(&r->pool, 16);
        if (r->resp_hdrs == NULL)
            return GW_ERROR;
    }
    *out = r->resp_hdrs;
    return GW_OK;
}

int gw_ffi_resp_header(struct gw_req *r, const char *name, size_t nlen, int idx, const char **p,
                       size_t *n)
{
    if (r->resp_hdrs == NULL)
        return GW_DECLINED;
    return gw_hlist_get(r->resp_hdrs, name, nlen, idx, p, n);
}

int gw_ffi_resp_header_count(struct gw_req *r)
{
    return r->resp_hdrs ? r->resp_hdrs->n : 0;
}

int gw_ffi_resp_header_at(struct gw_req *r, int i, const char **name, size_t *nlen,
                          const char **value, size_t *vlen)
{
    if (r->resp_hdrs == NULL || i < 0 || i >= r->resp_hdrs->n)
        return GW_DECLINED;
    const struct gw_hview *v = &r->resp_hdrs->v[i];
    *name = v->name;
    *nlen = v->nlen;
    *value = v->value;
    *vlen = v->vlen;
    return GW_OK;
}

int gw_ffi_resp_set_header(struct gw_req *r, int op, const char *name, size_t nlen,
                           const char *value, size_t vlen, const char **err)
{
    struct gw_hlist *h;
    if (!header_op(&op, name, nlen, value, vlen, err))
        return GW_ERROR;
    if (r->resp_started && r->phase != GW_PHASE_HEADER_FILTER) {
        *err = "headers already sent";
        return GW_ERROR;
    }
    if (resp_list(r, &h) != GW_OK ||
        gw_hlist_apply(&r->pool, h, op, name, nlen, value, vlen) != GW_OK) {
        *err = "no memory";
        return GW_ERROR;
    }
    return GW_OK;
}

int gw_ffi_resp_set_header_int(struct gw_req *r, int op, const char *name, size_t nlen,
                               int64_t value, const char **err)
{
    char tmp[24];
    size_t n = 0;
    uint64_t v = value < 0 ? 0 - (uint64_t)value : (uint64_t)value;
    do {
        tmp[sizeof(tmp) - 1 - n++] = (char)('0' + v % 10);
        v /= 10;
    } while (v);
    if (value < 0)
        tmp[sizeof(tmp) - 1 - n++] = '-';
    return gw_ffi_resp_set_header(r, op, name, nlen, tmp + sizeof(tmp) - n, n, err);
}

int gw_ffi_resp_set_packed(struct gw_req *r, const char *p, size_t len, const char **err)
{
    return apply_packed(r, p, len, 1u << GW_HDR_SET | 1u << GW_HDR_ADD, gw_ffi_resp_set_header,
                        err);
}

int gw_ffi_resp_set_hops(struct gw_req *r, const struct gw_hops *o, const int64_t *ints,
                         const char **err)
{
    struct gw_hlist *h;
    if (o == NULL || (ints == NULL && gw_hops_slots(o) > 0)) {
        *err = "no prepared headers or slot values";
        return GW_ERROR;
    }
    if (r->resp_started && r->phase != GW_PHASE_HEADER_FILTER) {
        *err = "headers already sent";
        return GW_ERROR;
    }
    if (resp_list(r, &h) != GW_OK || gw_hops_apply(o, &r->pool, h, ints) != GW_OK) {
        *err = "no memory";
        return GW_ERROR;
    }
    return GW_OK;
}

int gw_ffi_upstream_resp_header(struct gw_req *r, const char *name, size_t nlen, int idx,
                                const char **p, size_t *n)
{
    if (r->up_resp_hdrs == NULL)
        return GW_DECLINED;
    return gw_hlist_get(r->up_resp_hdrs, name, nlen, idx, p, n);
}

int gw_ffi_upstream_resp_header_count(struct gw_req *r)
{
    return r->up_resp_hdrs ? r->up_resp_hdrs->n : 0;
}

int gw_ffi_upstream_resp_header_at(struct gw_req *r, int i, const char **name, size_t *nlen,
                                   const char **value, size_t *vlen)
{
    if (r->up_resp_hdrs == NULL || i < 0 || i >= r->up_resp_hdrs->n)
        return GW_DECLINED;
    const struct gw_hview *v = &r->up_resp_hdrs->v[i];
    *name = v->name;
    *nlen = v->nlen;
    *value = v->value;
    *vlen = v->vlen;
    return GW_OK;
}

const char *gw_ffi_resp_source(struct gw_req *r)
{
    switch (r->resp_source) {
    case GW_SRC_EXIT: return "exit";
    case GW_SRC_ERROR: return "error";
    default: return r->upstream_status ? "service" : "error";
    }
}

int gw_ffi_req_skip_phases(struct gw_req *r, int mask)
{
    /* only the phases after access: the others have run or are running */
    r->phases &= ~((uint32_t)mask & (GW_PHASE_HEADER_FILTER | GW_PHASE_BODY_FILTER | GW_PHASE_LOG));
    return GW_OK;
}

int gw_ffi_req_grpc(struct gw_req *r)
{
    struct gw_conn *c = conn_of(r);
    return c && gw_grpc_request(c);
}

int gw_ffi_resp_grpc(struct gw_req *r)
{
    static const char grpc[] = "application/grpc";
    const char *v;
    size_t n;
    if (r->resp_hdrs && gw_hlist_get(r->resp_hdrs, "content-type", 12, 0, &v, &n) == GW_OK)
        return n >= sizeof(grpc) - 1 && strncasecmp(v, grpc, sizeof(grpc) - 1) == 0 ? 2 : 0;
    return gw_ffi_req_grpc(r);
}

int gw_ffi_resp_grpc_status(struct gw_req *r)
{
    return r->has_grpc_status ? r->grpc_status : -1;
}

int gw_ffi_grpc_status_of(int http_status)
{
    return gw_grpc_status_of(http_status);
}

const char *gw_ffi_grpc_status_name(int code)
{
    return gw_grpc_status_name(code);
}

int gw_ffi_resp_exit(struct gw_req *r, int status, const char *body, size_t len,
                     const char **err)
{
    if (status < 100 || status > 999) {
        *err = "invalid status";
        return GW_ERROR;
    }
    if (r->resp_started) {
        *err = "response already sent";
        return GW_ERROR;
    }
    if (len && set_str(r, &r->exit_body, body, len, err) != GW_OK)
        return GW_ERROR;
    if (len == 0)
        r->exit_body = (struct gw_str){NULL, 0};
    r->has_exit = 1;
    r->exit_status = status;
    r->resp_source = GW_SRC_EXIT;
    return GW_OK;
}

int gw_ffi_resp_reset_headers(struct gw_req *r)
{
    if (r->resp_hdrs)
        r->resp_hdrs->n = 0;
    return GW_OK;
}

int gw_ffi_resp_body(struct gw_req *r, const char **p, size_t *n)
{
    if (r->phase != GW_PHASE_RESPONSE && !(r->phase == GW_PHASE_LOG && r->resp_body.data))
        return GW_DECLINED;
    return view(r->resp_body.data ? r->resp_body.data : "", r->resp_body.len, p, n);
}

int gw_ffi_resp_set_body(struct gw_req *r, const char *p, size_t n, const char **err)
{
    if (r->phase != GW_PHASE_RESPONSE) {
        *err = "the body can only be set in the response phase";
        return GW_ERROR;
    }
    r->resp_body.len = 0;
    r->resp_body.off = 0;
    if (gw_buf_append(&r->resp_body, p, n) != 0) {
        *err = "no memory";
        return GW_ERROR;
    }
    return GW_OK;
}

int gw_ffi_resp_chunk(struct gw_req *r, const char **p, size_t *n, int *eof)
{
    if (r->phase != GW_PHASE_BODY_FILTER)
        return GW_DECLINED;
    *p = r->chunk ? r->chunk : "";
    *n = r->chunk_len;
    *eof = r->chunk_eof;
    return GW_OK;
}

int gw_ffi_resp_set_chunk(struct gw_req *r, const char *p, size_t n, int eof, const char **err)
{
    if (r->phase != GW_PHASE_BODY_FILTER) {
        *err = "the chunk can only be set in body_filter";
        return GW_ERROR;
    }
    r->chunk_out.len = r->chunk_out.off = 0;
    if (n && gw_buf_append(&r->chunk_out, p, n) != 0) {
        *err = "no memory";
        return GW_ERROR;
    }
    r->chunk = r->chunk_out.data;
    r->chunk_len = n;
    if (eof)
        r->chunk_eof = 1;
    return GW_OK;
}

int gw_ffi_resp_compress(struct gw_req *r, int allow_br, int gzip_level, int br_level,
                         const char **err)
{
    if (r->phase != GW_PHASE_HEADER_FILTER) {
        *err = "compression is chosen in header_filter";
        return GW_ERROR;
    }
    if (r->resp_source != GW_SRC_SERVICE || r->upstream_status == 0 || r->is_head ||
        r->status == 204 || r->status == 304 || r->status < 200 || r->zc)
        return GW_DECLINED;
    const char *v;
    size_t n;
    if (r->resp_hdrs && gw_hlist_get(r->resp_hdrs, "content-encoding", 16, 0, &v, &n) == GW_OK)
        return GW_DECLINED;
    if (gw_ffi_req_header(r, "accept-encoding", 15, 0, &v, &n) != GW_OK)
        return 0;
    int algo = gw_compress_negotiate(v, n, allow_br);
    if (algo == 0)
        return 0;
    r->zc = gw_compress_new(algo, algo == GW_COMPRESS_GZIP ? gzip_level : br_level);
    if (r->zc == NULL) {
        *err = "could not start the compressor";
        return GW_ERROR;
    }
    return algo;
}

int gw_ffi_health_set(const char *key, int unhealthy)
{
    struct gw_health *h = gw_health_slot(key);
    if (h == NULL)
        return GW_DECLINED;
    if (!unhealthy && h->unhealthy && !h->by_active)
        return GW_OK; /* passive ejections end with their own readmission */
    if ((h->unhealthy != 0) != (unhealthy != 0)) {
        h->by_active = unhealthy ? 1 : 0;
        __atomic_store_n(&h->probing, 0, __ATOMIC_RELEASE);
        h->backoff_ms = 0;
        gw_health_changed(h, unhealthy ? 1 : 0);
        gw_log(unhealthy ? GW_LOG_WARN : GW_LOG_NOTICE, "target %s is %s (active health check)",
               key, unhealthy ? "unhealthy" : "healthy again");
    }
    return GW_OK;
}

int gw_ffi_health_get(const char *key)
{
    struct gw_health *h = gw_health_slot(key);
    return h ? (h->unhealthy ? 1 : 0) : -1;
}

int gw_ffi_log_info(struct gw_req *r, double *total, double *upstream, double *gateway,
                    uint64_t *bytes_in, uint64_t *bytes_out, int *tries)
{
    double end = r->t_end ? r->t_end : gw_ffi_now();
    *total = end - r->t_start;
    *upstream = r->t_upstream_start && r->t_upstream_first
                    ? r->t_upstream_first - r->t_upstream_start
                    : 0;
    *gateway = r->t_upstream_start ? r->t_upstream_start - r->t_start : *total;
    *bytes_in = (uint64_t)r->head_len + r->body_bytes;
    *bytes_out = r->bytes_out;
    *tries = r->tries;
    return GW_OK;
}

/* --------------------------------------------------------- time, worker */

static double wall(void)
{
    struct timeval tv;
    gettimeofday(&tv, NULL);
    return tv.tv_sec + tv.tv_usec / 1e6;
}

/* Outside a worker (the master validating, `luagate check`) there is no
 * loop: time is the wall clock. */
double gw_ffi_now(void)
{
    return gw_worker ? ev_now(gw_worker->loop) : wall();
}

double gw_ffi_update_time(void)
{
    if (gw_worker == NULL)
        return wall();
    ev_now_update(gw_worker->loop);
    return ev_now(gw_worker->loop);
}

double gw_ffi_monotonic(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec / 1e9;
}

int gw_ffi_worker_id(void)
{
    return gw_worker ? gw_worker->id : -1;
}

int gw_ffi_worker_count(void)
{
    return gw_settings.workers;
}

int gw_ffi_worker_pid(void)
{
    return (int)getpid();
}

void gw_ffi_log(int level, const char *msg, size_t len)
{
    if (level < GW_LOG_EMERG)
        level = GW_LOG_EMERG;
    if (level > GW_LOG_DEBUG)
        level = GW_LOG_DEBUG;
    if (gw_log_enabled(level))
        gw_log(level, "%.*s", (int)len, msg);
}

int gw_ffi_log_level(void)
{
    return gw_log_level_current;
}
