/* libFuzzer target for the request path: raw client bytes -> llhttp (as
 * runtime/src/conn.c drives it) -> header lookups -> gw_path_normalize ->
 * gw_router_match -> gw_upstream_path, then the next pipelined request.
 *
 * No sockets and no event loop: the harness replays, in one function call,
 * what conn.c and proxy.c do with the bytes of one client connection. The
 * input is split into reads of 1..N bytes, N taken from the first input byte
 * (0: as large as the buffer allows), so requests, headers and chunk sizes
 * straddle llhttp_execute calls the way short socket reads make them. The
 * buffer grows with gw_buf_reserve as conn_read does, so it moves in memory
 * between reads as it does in the runtime.
 *
 * Beyond what the sanitizers catch, the harness checks invariants with
 * __builtin_trap() (see fz_check): header and URL offsets inside the head,
 * normalized path shorter than the raw one and free of dot segments,
 * capture offsets and strip_len inside the path, upstream paths within the
 * size the proxy reserves, the router's answer equal to a brute-force scan
 * of the same ranked entries, and the head sent upstream (rebuilt as
 * proxy.c build_head does) parsing as one request with the same framing.
 * FUZZ_SKIP_CHECKS=name,name disables named checks, to keep fuzzing past a
 * known bug; run.sh passes it through.
 *
 * Mirrors conn.c and proxy.c at the commit it was written for: when they
 * change, fz_parse_head, fz_route, fz_forward_body and fz_build_head must
 * follow (they are static there, so they are replayed here). */
#include <lauxlib.h>
#include <lua.h>
#include <lualib.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>

#include "gw/buf.h"
#include "gw/conn-t.h"
#include "gw/http.h"
#include "gw/list.h"
#include "gw/router.h"

#define FZ_MAX_HEADER_SIZE 32768 /* gw_settings.max_header_size default (main.c) */
#define FZ_PORT 8000             /* local port the connection arrived on */
#define FZ_MAX_REQUESTS 64       /* pipelined requests per input */

/* ---- checks ------------------------------------------------------------ */

static char fz_skip[512];

static void fz_fail(const char *name, const char *expr, int line)
{
    char key[64];

    snprintf(key, sizeof(key), ",%s,", name);
    if (strstr(fz_skip, key) != NULL)
        return;
    fprintf(stderr, "request_fuzzer: check '%s' failed (line %d): %s\n", name, line, expr);
    __builtin_trap();
}

#define fz_check(name, cond)                                                                       \
    do {                                                                                           \
        if (!(cond))                                                                               \
            fz_fail((name), #cond, __LINE__);                                                      \
    } while (0)

/* ---- the router and a brute-force reference of it ----------------------- */

/* One compiled entry as the Lua half produced it, for the reference. */
struct fz_entry {
    int route;
    int regex;
    char *path; /* NULL: no path */
    size_t path_len;
    pcre2_code *re;
    char **hosts; /* NULL: no host constraint */
    size_t nhosts;
    char **methods; /* NULL: no method constraint */
    size_t nmethods;
    char **hnames;   /* header names, lowercase */
    char ***hvalues; /* per header, NULL-terminated values */
    size_t nheaders;
};

static struct gw_router *fz_router;
static struct fz_entry *fz_entries;
static size_t fz_nentries;
static int fz_nroutes;
static pcre2_match_data *fz_md;

/* Service paths the upstream path is built with, as config services have. */
static const char *const fz_svc_paths[] = {NULL, "/", "/s", "/s/", "/a/b", "/%2F/x/"};

/* ~30 routes: prefixes sharing radix nodes, regexes with plain, named,
 * optional and too many groups, exact, ported, IPv6 and wildcard hosts,
 * methods, headers, and ranks that make groups compete. */
static const char fz_config[] =
    "local long = 'long' .. string.rep('x', 200) .. '.com'\n"
    "return { routes = {\n"
    " { paths = { '/' } },\n"
    " { paths = { '/api' } },\n"
    " { paths = { '/api/v1/' }, methods = { 'GET', 'HEAD' } },\n"
    " { paths = { '/api/v1/users' }, methods = { 'POST' } },\n"
    " { paths = { '/api/v1/users' }, headers = { ['X-Version'] = { '2', '3' } } },\n"
    " { paths = { [[~/users/(?<id>\\d+)$]] } },\n"
    " { paths = { [[~/items/(\\w+)/(\\w+)?]] }, regex_priority = 5 },\n"
    " { paths = { [[~/files/(.*)\\.(png|jpg)]] }, regex_priority = 1 },\n"
    " { paths = { '~/(a)(b)(c)(d)(e)(f)(g)(h)(i)(j)(k)(l)(m)(n)(o)(p)(q)(r)' } },\n"
    " { hosts = { 'example.com' }, paths = { '/ex' } },\n"
    " { hosts = { 'example.com:8000' }, paths = { '/ex' } },\n"
    " { hosts = { 'example.com:9000' }, paths = { '/ex/nine' } },\n"
    " { hosts = { '*.example.com' }, paths = { '/w' } },\n"
    " { hosts = { '*.example.com:8443' } },\n"
    " { hosts = { 'api.*' }, paths = { '/' } },\n"
    " { hosts = { 'api.*:8000' }, methods = { 'DELETE' } },\n"
    " { hosts = { '[::1]:8000', '[::1]', '127.0.0.1' }, paths = { '/v6' } },\n"
    " { hosts = { 'Mixed.Case.COM' } },\n"
    " { methods = { 'put' }, paths = { '/put' } },\n"
    " { methods = { 'CONNECT', 'OPTIONS' } },\n"
    " { headers = { ['x-tenant'] = { 'a', 'B' } }, paths = { '/t' } },\n"
    " { headers = { ['x-tenant'] = 'c', ['x-region'] = { 'eu' } } },\n"
    " { paths = { '/a', '/ab', '/abc', '/abd', '/b/c/d' } },\n"
    " { paths = { '/%2F', '/caf%C3%A9', '/~user', '/a//b' } },\n"
    " { hosts = { '*.example.com', 'api.*' },\n"
    "   paths = { [[~/regex/[a-z]+/(?<tail>.*)]] } },\n"
    " { paths = { '~/opt(/(?<x>x))?(/(?<y>y))?' }, regex_priority = 2 },\n"
    " { paths = { '~(?i)/CASE/(.+)' } },\n"
    " { paths = { '~/empty()/' }, methods = { 'GET' } },\n"
    " { paths = { '/ws' }, headers = { upgrade = { 'websocket' } } },\n"
    " { hosts = { long }, methods = { 'GET' } },\n"
    " { paths = { '~/$', '/prefix' }, regex_priority = -1 },\n"
    " { hosts = { 'example.com', 'other.org' }, methods = { 'GET' },\n"
    "   headers = { accept = { 'application/json' } }, paths = { '/ex/j', '~/ex/(r)' } },\n"
    "} }\n";

static char *fz_strdup_lua(lua_State *L, int idx)
{
    size_t n;
    const char *s = lua_tolstring(L, idx, &n);
    char *p = malloc(n + 1);

    if (p == NULL)
        abort();
    memcpy(p, s, n);
    p[n] = '\0';
    return p;
}

/* Reads the array of strings at the top of the stack (NULL-terminated). */
static char **fz_strings(lua_State *L, size_t *n)
{
    int t = lua_gettop(L);
    size_t len = lua_objlen(L, t);
    char **v = calloc(len + 1, sizeof(*v));

    *n = 0;
    for (size_t i = 1; i <= len; i++) {
        lua_rawgeti(L, t, (int)i);
        if (lua_type(L, -1) == LUA_TSTRING)
            v[(*n)++] = fz_strdup_lua(L, -1);
        lua_pop(L, 1);
    }
    return v;
}

/* Copies the compiled entries at the top of the stack for the reference. */
static void fz_read_entries(lua_State *L)
{
    int t = lua_gettop(L);

    fz_nentries = lua_objlen(L, t);
    fz_entries = calloc(fz_nentries + 1, sizeof(*fz_entries));
    for (size_t i = 0; i < fz_nentries; i++) {
        struct fz_entry *e = &fz_entries[i];
        int et;

        lua_rawgeti(L, t, (int)i + 1);
        et = lua_gettop(L);
        lua_getfield(L, et, "route");
        e->route = (int)lua_tointeger(L, -1);
        if (e->route + 1 > fz_nroutes)
            fz_nroutes = e->route + 1;
        lua_getfield(L, et, "path");
        if (lua_type(L, -1) == LUA_TSTRING) {
            e->path = fz_strdup_lua(L, -1);
            e->path_len = lua_objlen(L, -1);
        }
        lua_getfield(L, et, "regex");
        e->regex = lua_toboolean(L, -1) && e->path != NULL;
        lua_settop(L, et);
        if (e->regex) {
            int ec;
            PCRE2_SIZE eo;

            e->re = pcre2_compile((PCRE2_SPTR)e->path, e->path_len, PCRE2_ANCHORED, &ec, &eo,
                                  NULL);
            if (e->re == NULL)
                abort();
        }
        lua_getfield(L, et, "hosts");
        if (lua_type(L, -1) == LUA_TTABLE)
            e->hosts = fz_strings(L, &e->nhosts);
        lua_settop(L, et);
        lua_getfield(L, et, "methods");
        if (lua_type(L, -1) == LUA_TTABLE)
            e->methods = fz_strings(L, &e->nmethods);
        lua_settop(L, et);
        lua_getfield(L, et, "headers");
        if (lua_type(L, -1) == LUA_TTABLE) {
            int ht = lua_gettop(L);
            size_t nh = lua_objlen(L, ht);

            e->hnames = calloc(nh + 1, sizeof(*e->hnames));
            e->hvalues = calloc(nh + 1, sizeof(*e->hvalues));
            for (size_t k = 1; k <= nh; k++) {
                size_t nv;

                lua_rawgeti(L, ht, (int)k);
                lua_getfield(L, -1, "name");
                e->hnames[e->nheaders] = fz_strdup_lua(L, -1);
                lua_pop(L, 1);
                lua_getfield(L, -1, "values");
                e->hvalues[e->nheaders++] = fz_strings(L, &nv);
                lua_settop(L, ht);
            }
        }
        lua_settop(L, t);
    }
}

static int fz_eq_nocase(const char *a, size_t an, const char *b, size_t bn)
{
    return an == bn && (an == 0 || strncasecmp(a, b, an) == 0);
}

/* "host:port" as router.h describes it, written independently of
 * router.c's split_port: a port is 1..5 digits after the last ':', in
 * 1..65535, and the host is not a bare IPv6 address. */
static size_t fz_split_port(const char *s, size_t n, int *port)
{
    const char *colon = NULL;
    long v = 0;

    *port = 0;
    for (size_t i = n; i > 0; i--) {
        if (s[i - 1] == ':') {
            colon = s + i - 1;
            break;
        }
    }
    if (colon == NULL || colon == s || (size_t)(s + n - colon - 1) < 1 ||
        (size_t)(s + n - colon - 1) > 5)
        return n;
    for (const char *d = colon + 1; d < s + n; d++) {
        if (*d < '0' || *d > '9')
            return n;
        v = v * 10 + (*d - '0');
    }
    if (v < 1 || v > 65535)
        return n;
    if (s[0] == '[' ? colon[-1] != ']' : memchr(s, ':', (size_t)(colon - s)) != NULL)
        return n;
    *port = (int)v;
    return (size_t)(colon - s);
}

static int fz_host_ok(const struct fz_entry *e, const struct gw_router_req *req)
{
    int port;
    size_t hn;
    char key[600];
    size_t klen = 0;

    if (e->hosts == NULL)
        return 1;
    if (req->host.n == 0)
        return 0;
    hn = fz_split_port(req->host.p, req->host.n, &port);
    if (port == 0)
        port = req->port;
    if (hn + 7 <= 512) { /* router.c: GW_ROUTER_MAX_HOST */
        memcpy(key, req->host.p, hn);
        klen = hn + (size_t)sprintf(key + hn, ":%d", port);
    }
    for (size_t i = 0; i < e->nhosts; i++) {
        const char *h = e->hosts[i];
        size_t n = strlen(h);
        int rport;
        size_t rn = fz_split_port(h, n, &rport);

        if (n == 0)
            continue;
        if (rn > 1 && (h[0] == '*' || h[rn - 1] == '*')) {
            int suffix = h[0] == '*';
            const char *fix = suffix ? h + 1 : h;
            size_t fn = rn - 1;

            if ((rport == 0 || rport == port) && hn > fn &&
                fz_eq_nocase(suffix ? req->host.p + hn - fn : req->host.p, fn, fix, fn))
                return 1;
            continue;
        }
        if (fz_eq_nocase(h, n, req->host.p, hn) || (klen && fz_eq_nocase(h, n, key, klen)))
            return 1;
    }
    return 0;
}

static int fz_filters_ok(const struct fz_entry *e, const struct gw_router_req *req)
{
    if (e->methods != NULL) {
        size_t i;

        for (i = 0; i < e->nmethods; i++)
            if (strlen(e->methods[i]) == req->method.n &&
                memcmp(e->methods[i], req->method.p, req->method.n) == 0)
                break;
        if (i == e->nmethods)
            return 0;
    }
    for (size_t i = 0; i < e->nheaders; i++) {
        struct gw_str v;
        int ok = 0;

        for (int k = 0; !ok && req->header(req->ud, e->hnames[i], strlen(e->hnames[i]), k, &v) ==
                                   GW_OK;
             k++)
            for (char **val = e->hvalues[i]; !ok && *val; val++)
                ok = fz_eq_nocase(*val, strlen(*val), v.p, v.n);
        if (!ok)
            return 0;
    }
    return 1;
}

/* The first entry, in rank order, that matches: what gw_router_match must
 * return. Returns the rank or -1; sets *strip. */
static int fz_reference_match(const struct gw_router_req *req, size_t *strip)
{
    for (size_t i = 0; i < fz_nentries; i++) {
        const struct fz_entry *e = &fz_entries[i];

        if (!fz_host_ok(e, req) || !fz_filters_ok(e, req))
            continue;
        if (e->path == NULL) {
            *strip = 0;
            return (int)i;
        }
        if (!e->regex) {
            if (req->path.n >= e->path_len && memcmp(req->path.p, e->path, e->path_len) == 0) {
                *strip = e->path_len;
                return (int)i;
            }
            continue;
        }
        if (pcre2_match(e->re, (PCRE2_SPTR)req->path.p, req->path.n, 0, 0, fz_md, NULL) >= 0) {
            *strip = pcre2_get_ovector_pointer(fz_md)[1];
            return (int)i;
        }
    }
    return -1;
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    lua_State *L = luaL_newstate();
    const char *err = NULL;
    const char *skip = getenv("FUZZ_SKIP_CHECKS");

    snprintf(fz_skip, sizeof(fz_skip), ",%s,", skip ? skip : "");
    luaL_openlibs(L);
    lua_getglobal(L, "package");
    lua_pushstring(L, "./lua/?.lua;./lua/?/init.lua;");
    lua_setfield(L, -2, "path");
    lua_settop(L, 0);
    lua_getglobal(L, "require");
    lua_pushstring(L, "luagate.router");
    if (lua_pcall(L, 1, 1, 0) != 0)
        goto fail;
    lua_getfield(L, -1, "compile");
    if (luaL_loadstring(L, fz_config) != 0 || lua_pcall(L, 0, 1, 0) != 0 ||
        lua_pcall(L, 1, 1, 0) != 0)
        goto fail;
    if (gw_router_build(L, -1, &fz_router, &err) != GW_OK) {
        fprintf(stderr, "request_fuzzer: gw_router_build: %s\n", err);
        exit(1);
    }
    fz_read_entries(L);
    fz_md = pcre2_match_data_create(64, NULL);
    lua_close(L); /* the router keeps no references into the state */
    return 0;

fail:
    fprintf(stderr, "request_fuzzer: %s (run from the repository root)\n", lua_tostring(L, -1));
    exit(1);
}

/* ---- one client connection, replayed ------------------------------------ */

struct fz_conn {
    llhttp_t parser;
    struct gw_head_ctx hctx;
    struct gw_buf in;
    size_t parsed;
    struct gw_req *req;
    int closed;
    /* the socket: what is left of the input and how reads are cut */
    const uint8_t *src;
    size_t src_len;
    uint8_t slice_max; /* 0: reads take all the buffer can hold */
    uint64_t rng;
};

static llhttp_settings_t fz_settings;
static struct gw_req fz_req_store;

/* conn.c on_req_headers_complete */
static int fz_on_headers_complete(llhttp_t *p)
{
    return HPE_PAUSED;
}

/* conn.c on_req_message_complete */
static int fz_on_message_complete(llhttp_t *p)
{
    struct fz_conn *c = gw_container_of(p->data, struct fz_conn, hctx);

    if (c->req == NULL || c->req->head_len == 0)
        return 0;
    c->req->body_done = 1;
    return HPE_PAUSED;
}

/* conn.c req_new, without the worker: one request object reused. */
static void fz_req_new(struct fz_conn *c)
{
    struct gw_req *r = &fz_req_store;

    memset(r, 0, offsetof(struct gw_req, head.hdr));
    memset((char *)r + offsetof(struct gw_req, head) + sizeof(r->head), 0,
           sizeof(*r) - offsetof(struct gw_req, head) - sizeof(r->head));
    r->host_hdr = -1;
    c->hctx.head = &r->head;
    c->hctx.url_off = &r->url_off;
    c->hctx.url_len = &r->url_len;
    c->req = r;
}

static void fz_req_free(struct fz_conn *c)
{
    if (c->req == NULL)
        return;
    gw_buf_free(&c->req->scratch);
    c->req = NULL;
    c->hctx.head = NULL;
}

static void fz_close(struct fz_conn *c)
{
    fz_req_free(c);
    c->closed = 1;
}

/* conn.c conn_read: 1 bytes read, 0 EOF, -3 buffer full. */
static int fz_read(struct fz_conn *c, size_t max)
{
    size_t n;

    if (gw_buf_reserve(&c->in, 4096, max) != 0 && c->in.cap - c->in.len == 0)
        return -3;
    if (c->src_len == 0)
        return 0;
    n = c->in.cap - c->in.len;
    if (c->slice_max) {
        size_t s;

        c->rng ^= c->rng << 13;
        c->rng ^= c->rng >> 7;
        c->rng ^= c->rng << 17;
        s = 1 + (size_t)(c->rng % c->slice_max);
        if (s < n)
            n = s;
    }
    if (n > c->src_len)
        n = c->src_len;
    memcpy(c->in.data + c->in.len, c->src, n);
    c->in.len += n;
    c->src += n;
    c->src_len -= n;
    return 1;
}

/* Every recorded header and the target lie inside the head: the proxy and
 * the PDK read them as base + offset for the whole request. */
static void fz_check_head(const struct fz_conn *c, const char *name)
{
    const struct gw_req *r = c->req;

    fz_check("head-nhdr", r->head.nhdr >= 0 && r->head.nhdr <= GW_MAX_HEADERS);
    for (int i = 0; i < r->head.nhdr; i++) {
        const struct gw_hdr *h = &r->head.hdr[i];

        fz_check(name, (uint64_t)h->name + h->name_len <= r->head_len);
        fz_check(name, (uint64_t)h->value + h->value_len <= r->head_len);
    }
}

/* gw_http_header and gw_http_has_token over the head, as conn.c, proxy.c
 * and the PDK call them. */
static void fz_lookups(const struct fz_conn *c)
{
    static const char *const names[] = {"host", "content-length", "transfer-encoding",
                                        "connection", "expect", "upgrade", "x-tenant"};
    const struct gw_req *r = c->req;
    const char *base = c->in.data;

    for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
        struct gw_str v;

        for (int k = 0; gw_http_header(&r->head, base, names[i], strlen(names[i]), k, &v) == GW_OK;
             k++) {
            fz_check("header-in-head", v.p >= base && v.p + v.n <= base + r->head_len);
            (void)gw_http_has_token(v.p, v.n, "close");
            (void)gw_http_has_token(v.p, v.n, "100-continue");
            (void)gw_http_has_token(v.p, v.n, "chunked");
        }
    }
}

static int fz_header_cb(void *ud, const char *lname, size_t len, int idx, struct gw_str *v)
{
    const struct fz_conn *c = ud;

    return gw_http_header(&c->req->head, c->in.data, lname, len, idx, v);
}

/* The normalized path: no longer than the raw one, starts with '/', has no
 * "." or ".." segment, and normalizing it again changes nothing. */
static void fz_check_npath(const char *raw, size_t raw_len, const char *np, size_t n)
{
    char *again;
    long n2;

    fz_check("npath-len", n <= raw_len);
    fz_check("npath-slash", n > 0 && np[0] == '/');
    for (size_t i = 0; i < n;) {
        size_t j = i + 1;

        while (j < n && np[j] != '/')
            j++;
        fz_check("npath-dot-segment",
                 !(j - i == 2 && np[i + 1] == '.') &&
                     !(j - i == 3 && np[i + 1] == '.' && np[i + 2] == '.'));
        i = j;
    }
    again = malloc(n ? n : 1);
    memcpy(again, np, n);
    n2 = gw_path_normalize(again, n);
    fz_check("npath-idempotent", n2 == (long)n && memcmp(again, np, n) == 0);
    free(again);
}

static void fz_check_match(const struct gw_router_req *rr, const struct gw_router_match *m, int rc)
{
    size_t ref_strip = 0;
    int ref = fz_reference_match(rr, &ref_strip);

    fz_check("router-vs-reference", rc == GW_OK ? ref == m->entry : ref < 0);
    if (rc != GW_OK)
        return;
    fz_check("router-entry", m->entry >= 0 && (size_t)m->entry < fz_nentries);
    fz_check("router-route", m->route >= 0 && m->route < fz_nroutes &&
                                 m->route == fz_entries[m->entry].route);
    fz_check("router-strip", m->strip_len <= rr->path.n && m->strip_len == ref_strip);
    fz_check("router-ncap", m->ncap >= 0 && m->ncap <= GW_ROUTER_MAX_CAPTURES);
    fz_check("router-ncap", fz_entries[m->entry].regex || m->ncap == 0);
    for (int j = 0; j < m->ncap; j++) {
        size_t s = m->cap[2 * j], e = m->cap[2 * j + 1];

        fz_check("router-capture", (s == SIZE_MAX) == (e == SIZE_MAX));
        fz_check("router-capture", s == SIZE_MAX || (s <= e && e <= rr->path.n));
        if (m->cap_names && m->cap_names[j])
            fz_check("router-capture-name", strlen(m->cap_names[j]) > 0);
    }
    if (m->ncap > 0)
        fz_check("router-capture", m->cap[0] == 0 && m->cap[1] == m->strip_len);
}

/* gw_upstream_path for every service path, v0 and v1, strip on and off,
 * into a buffer of exactly the size needed (and one byte less, which must
 * fail without writing past it). */
static void fz_upstream_paths(const char *np, size_t n, size_t strip_len)
{
    for (size_t s = 0; s < sizeof(fz_svc_paths) / sizeof(fz_svc_paths[0]); s++) {
        const char *svc = fz_svc_paths[s];
        size_t svc_len = svc ? strlen(svc) : 0;
        size_t cap = (svc_len ? svc_len : 1) + n + 1; /* at most one '/' added */

        for (int v1 = 0; v1 < 2; v1++) {
            for (int strip = 0; strip < 2; strip++) {
                size_t sl = strip ? strip_len : 0;
                char *out = malloc(cap);
                long len = gw_upstream_path(svc, svc_len, np, n, sl, v1, out, cap);
                char *exact;

                fz_check("upstream-path-len", len >= 0 && (size_t)len <= cap);
                fz_check("upstream-path-slash", len > 0 && out[0] == '/');
                /* the remainder of the request path ends the upstream path */
                if (len > 0 && n - sl > 1)
                    fz_check("upstream-path-tail",
                             memcmp(out + len - (n - sl - 1), np + n - (n - sl - 1),
                                    n - sl - 1) == 0);
                exact = malloc(len > 0 ? (size_t)len : 1);
                fz_check("upstream-path-exact",
                         gw_upstream_path(svc, svc_len, np, n, sl, v1, exact, (size_t)len) ==
                             len);
                fz_check("upstream-path-exact", memcmp(exact, out, (size_t)len) == 0);
                if (len > 0) {
                    char *small = malloc((size_t)len - 1 ? (size_t)len - 1 : 1);

                    fz_check("upstream-path-small", gw_upstream_path(svc, svc_len, np, n, sl, v1,
                                                                     small, (size_t)len - 1) < 0);
                    free(small);
                }
                free(exact);
                free(out);
            }
        }
    }
}

/* ---- the head sent upstream --------------------------------------------- */

struct fz_up {
    int nhdr;
    int complete;
    int url_calls;
};

static int fz_up_field(llhttp_t *p, const char *at, size_t len)
{
    return 0;
}

static int fz_up_value_complete(llhttp_t *p)
{
    ((struct fz_up *)p->data)->nhdr++;
    return 0;
}

static int fz_up_headers_complete(llhttp_t *p)
{
    ((struct fz_up *)p->data)->complete = 1;
    return HPE_PAUSED;
}

/* proxy.c build_head, replayed with a route of strip_path on, v0, service
 * path "/s", preserve_host off, peer 192.0.2.1. */
static void fz_build_head(const struct fz_conn *c, struct gw_buf *b)
{
    const struct gw_req *r = c->req;
    const char *base = c->in.data;
    const char *method = llhttp_method_name((llhttp_method_t)c->parser.method);
    struct gw_str ctok[8], xff[8];
    int nctok = 0, nxff = 0;
    long n;

    if (gw_buf_reserve(b, r->head_len + 2 + r->npath_len + 512 + 2 * 16, 0) != 0)
        abort();
    gw_buf_appends(b, method);
    gw_buf_append(b, " ", 1);
    n = gw_upstream_path("/s", 2, r->npath, r->npath_len, r->match.strip_len, 0, b->data + b->len,
                         b->cap - b->len);
    fz_check("build-head-path", n >= 0);
    b->len += (size_t)n;
    gw_buf_append(b, base + r->url_off + r->path_len, r->url_len - r->path_len);
    gw_buf_appends(b, r->http_minor == 0 ? " HTTP/1.0\r\nHost: " : " HTTP/1.1\r\nHost: ");
    gw_buf_appends(b, "upstream.internal");
    gw_buf_append(b, "\r\n", 2);
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
        int named = 0;

        if (gw_http_hop_by_hop(name, nl) && !(r->upgrade && GW_NAME_IS(name, nl, "upgrade")))
            continue;
        if (nl >= 9 && (name[0] == 'x' || name[0] == 'X') && name[1] == '-') {
            if ((nl > 12 && gw_http_name_is(name, 12, "x-forwarded-", 12)) ||
                GW_NAME_IS(name, nl, "x-real-ip") || GW_NAME_IS(name, nl, "x-request-id"))
                continue;
        }
        if (i == r->host_hdr || GW_NAME_IS(name, nl, "expect"))
            continue;
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
    gw_buf_appends(b, "192.0.2.1\r\nX-Forwarded-Proto: http\r\nX-Forwarded-Host: h");
    gw_buf_appends(b, "\r\nX-Forwarded-Port: 8000\r\nX-Forwarded-Path: ");
    gw_buf_append(b, base + r->url_off, r->path_len);
    gw_buf_appends(b, "\r\nX-Real-IP: 192.0.2.1\r\nX-Request-ID: ");
    gw_buf_appends(b, "00000000000000000000000000000000");
    if (r->upgrade)
        gw_buf_appends(b, "\r\nConnection: upgrade");
    else if (r->http_minor == 0)
        gw_buf_appends(b, "\r\nConnection: close");
    gw_buf_append(b, "\r\n\r\n", 4);
}

/* The upstream must read the rebuilt head as exactly one request head, with
 * the method and body framing the gateway acted on (has_body): otherwise
 * the two disagree on where the request ends. */
static void fz_check_upstream_head(const struct fz_conn *c)
{
    static llhttp_settings_t s;
    static int ready;
    struct gw_buf b = {0};
    struct fz_up u = {0};
    llhttp_t p;
    llhttp_errno_t e;
    const struct gw_req *r = c->req;
    int up_body;

    if (!ready) {
        llhttp_settings_init(&s);
        s.on_header_field = fz_up_field;
        s.on_header_value_complete = fz_up_value_complete;
        s.on_headers_complete = fz_up_headers_complete;
        ready = 1;
    }
    fz_build_head(c, &b);
    llhttp_init(&p, HTTP_REQUEST, &s);
    p.data = &u;
    e = llhttp_execute(&p, b.data, b.len);
    /* the head ends where the gateway ended it, not at a CRLF CRLF that a
     * header value carried */
    if (e == HPE_PAUSED && llhttp_get_error_pos(&p) != b.data + b.len) {
        fz_check("upstream-head-end", 0);
        goto done; /* what follows would compare another request */
    }
    if (e == HPE_PAUSED) {
        llhttp_resume(&p);
        /* after_headers_complete runs now: it rejects what the pause hid */
        e = llhttp_execute(&p, b.data + b.len, 0);
    }
    if (getenv("FUZZ_DEBUG") != NULL) {
        fprintf(stderr, "--- upstream head (%s, client flags 0x%x, has_body %d):\n%.*s---\n",
                llhttp_errno_name(e), c->parser.flags, r->has_body, (int)b.len, b.data);
    }
    if (!u.complete || (e != HPE_OK && e != HPE_PAUSED_UPGRADE)) {
        fz_check("upstream-head-parses", 0);
        goto done;
    }
    fz_check("upstream-head-method", p.method == c->parser.method);
    up_body = (p.flags & F_CHUNKED) || ((p.flags & F_CONTENT_LENGTH) && p.content_length);
    fz_check("upstream-head-framing", up_body == r->has_body);
    if ((p.flags & F_CONTENT_LENGTH) && !(p.flags & F_CHUNKED))
        fz_check("upstream-head-framing", p.content_length == c->parser.content_length);
done:
    gw_buf_free(&b);
}

/* ---- conn.c / proxy.c, replayed ------------------------------------------ */

/* proxy.c forward_body, to the end of the body or of the input. Returns 0,
 * or -1 when the connection ends. */
static int fz_forward_body(struct fz_conn *c)
{
    struct gw_req *r = c->req;

    while (!r->body_done) {
        if (c->parsed >= c->in.len) {
            int n = fz_read(c, FZ_MAX_HEADER_SIZE + 2 * GW_BUF_BLOCK);

            if (n == -3)
                fz_check("body-buffer-full", 0); /* forward_body always drains */
            if (n <= 0)
                return -1; /* EOF mid-body: the connection closes */
            continue;
        }
        const char *start = c->in.data + c->parsed;
        size_t avail = c->in.len - c->parsed;
        llhttp_errno_t e = llhttp_execute(&c->parser, start, avail);
        size_t used = avail;

        if (e == HPE_PAUSED) {
            used = (size_t)(llhttp_get_error_pos(&c->parser) - start);
            llhttp_resume(&c->parser);
        } else if (e != HPE_OK) {
            return -1; /* 400 and close */
        }
        fz_check("body-used", used <= avail);
        r->body_bytes += used;
        memmove((char *)start, start + used, avail - used);
        c->in.len -= used;
    }
    return 0;
}

/* conn.c conn_route, then the proxy. Returns 0 when the connection may
 * carry the next request, -1 when it closes. */
static int fz_route(struct fz_conn *c)
{
    struct gw_req *r = c->req;
    llhttp_t *p = &c->parser;
    const char *method;
    struct gw_router_req rr;
    int rc, keep;

    r->head_len = (uint32_t)c->parsed;
    r->http_minor = p->http_minor;
    r->is_head = p->method == HTTP_HEAD;
    r->keepalive = llhttp_should_keep_alive(p);
    r->upgrade = p->upgrade;
    r->has_body = (p->flags & F_CHUNKED) || ((p->flags & F_CONTENT_LENGTH) && p->content_length);
    method = llhttp_method_name((llhttp_method_t)p->method);

    if (getenv("FUZZ_DEBUG") != NULL) {
        fprintf(stderr, "--- head: %u bytes, url %u+%u, %d headers\n", r->head_len, r->url_off,
                r->url_len, r->head.nhdr);
        for (int i = 0; i < r->head.nhdr; i++) {
            const struct gw_hdr *h = &r->head.hdr[i];

            fprintf(stderr, "  [%d] name %u+%u value %u+%u\n", i, h->name, h->name_len, h->value,
                    h->value_len);
        }
    }
    fz_check("head-len", r->head_len > 0 && r->head_len <= c->in.len);
    fz_check("head-in-head", (uint64_t)r->url_off + r->url_len <= r->head_len);
    fz_check_head(c, "head-in-head");
    fz_lookups(c);

    for (int i = 0; i < r->head.nhdr; i++) {
        const struct gw_hdr *h = &r->head.hdr[i];
        const char *name = c->in.data + h->name;

        if (GW_NAME_IS(name, h->name_len, "host")) {
            if (r->host_hdr >= 0)
                return -1; /* 400 duplicate Host */
            r->host_hdr = i;
        } else if (GW_NAME_IS(name, h->name_len, "expect")) {
            r->expect_continue =
                gw_http_has_token(c->in.data + h->value, h->value_len, "100-continue");
        }
    }
    if (r->host_hdr < 0 && r->http_minor >= 1 && p->http_major == 1)
        return -1; /* 400 missing Host */
    if (!r->body_done && !r->has_body)
        r->body_done = 1;
    const char *url = c->in.data + r->url_off;
    if (r->url_len == 0 || url[0] != '/')
        return -1; /* 400 invalid target */
    const char *q = memchr(url, '?', r->url_len);
    r->path_len = q ? (uint32_t)(q - url) : r->url_len;
    fz_check("path-len", r->path_len <= r->url_len);

    if (gw_buf_reserve(&r->scratch, r->path_len + 1, 0) != 0)
        abort();
    memcpy(r->scratch.data, url, r->path_len);
    long np = gw_path_normalize(r->scratch.data, r->path_len);
    if (np < 0)
        return -1; /* 400 invalid path */
    r->npath = r->scratch.data;
    r->npath_len = (size_t)np;
    r->scratch.len = (size_t)np;
    fz_check_npath(url, r->path_len, r->npath, r->npath_len);

    rr.method.p = method;
    rr.method.n = strlen(method);
    if (r->host_hdr >= 0) {
        rr.host.p = c->in.data + r->head.hdr[r->host_hdr].value;
        rr.host.n = r->head.hdr[r->host_hdr].value_len;
    } else {
        rr.host.p = "";
        rr.host.n = 0;
    }
    rr.path.p = r->npath;
    rr.path.n = r->npath_len;
    rr.port = FZ_PORT;
    rr.header = fz_header_cb;
    rr.ud = c;
    memset(&r->match, 0xa5, sizeof(r->match)); /* stale values must not leak through */
    rc = gw_router_match(fz_router, &rr, &r->match);
    fz_check_match(&rr, &r->match, rc);
    if (rc != GW_OK) {
        /* 404: gw_conn_respond closes when a body is still coming */
        if (r->has_body && !r->body_done)
            return -1;
        return r->keepalive ? 0 : -1;
    }
    fz_upstream_paths(r->npath, r->npath_len, r->match.strip_len);
    fz_check_upstream_head(c);

    /* the upstream answers once the body is in; 101 is not simulated */
    if (fz_forward_body(c) != 0)
        return -1;
    fz_check_head(c, "head-after-body");
    fz_lookups(c); /* the log phase and plugins read headers after the body */
    keep = r->keepalive;
    return keep ? 0 : -1;
}

/* conn.c conn_parse_head. Returns 1 when a head is complete, 0 when more
 * bytes are needed, -1 when the connection closes. */
static int fz_parse_head(struct fz_conn *c)
{
    llhttp_errno_t e;

    if (c->req == NULL)
        fz_req_new(c);
    c->hctx.base = c->in.data;
    e = llhttp_execute(&c->parser, c->in.data + c->parsed, c->in.len - c->parsed);
    if (e == HPE_OK) {
        c->parsed = c->in.len;
        return c->parsed > FZ_MAX_HEADER_SIZE ? -1 : 0; /* 431 */
    }
    if (e != HPE_PAUSED)
        return -1; /* 400 or 431 (HPE_USER) */
    c->parsed = (size_t)(llhttp_get_error_pos(&c->parser) - c->in.data);
    fz_check("parsed-in-buffer", c->parsed <= c->in.len);
    llhttp_resume(&c->parser);
    if (c->parsed > FZ_MAX_HEADER_SIZE)
        return -1; /* 431 */
    return 1;
}

/* conn.c conn_finish_request with keepalive: what follows is the next
 * request. */
static void fz_next_request(struct fz_conn *c)
{
    fz_req_free(c);
    gw_buf_consume(&c->in, c->parsed);
    gw_buf_compact(&c->in);
    c->parsed = 0;
    if (gw_buf_pending(&c->in) == 0)
        gw_buf_free(&c->in);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static struct fz_conn conn;
    struct fz_conn *c = &conn;
    int nreq = 0;

    if (size < 1)
        return 0;
    if (!fz_settings.on_url)
        gw_http_settings_init(&fz_settings);
    memset(c, 0, sizeof(*c));
    c->slice_max = data[0];
    c->rng = 0x9e3779b97f4a7c15ULL ^ data[0];
    c->src = data + 1;
    c->src_len = size - 1;
    llhttp_init(&c->parser, HTTP_REQUEST, &fz_settings);
    c->parser.data = &c->hctx;
    c->hctx.on_headers_complete = fz_on_headers_complete;
    c->hctx.on_message_complete = fz_on_message_complete;

    while (!c->closed && nreq < FZ_MAX_REQUESTS) {
        int rc;

        if (c->parsed >= c->in.len) {
            rc = fz_read(c, FZ_MAX_HEADER_SIZE + 1);
            if (rc <= 0) { /* EOF, or 431 on a full buffer */
                fz_close(c);
                break;
            }
        }
        rc = fz_parse_head(c);
        if (rc < 0) {
            fz_close(c);
            break;
        }
        if (rc == 0)
            continue;
        nreq++;
        if (fz_route(c) != 0) {
            fz_close(c);
            break;
        }
        fz_next_request(c);
    }
    fz_req_free(c);
    gw_buf_free(&c->in);
    return 0;
}
