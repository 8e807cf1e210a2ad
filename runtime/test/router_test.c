/* Router unit test: builds routers from Lua configs through
 * luagate.router.compile in a real lua_State, so both halves are tested
 * together. Prints TAP; exits non-zero on any failure. Run from the repo
 * root with runtime/test/run.sh. */
#define GW_ROUTER_TEST 1
#include "../src/path.c"
#include "../src/router.c"

#include <lauxlib.h>
#include <lualib.h>
#include <stdarg.h>

static int ntest, nfail;
static lua_State *L;
/* 1: build() builds in steps of one unit (a deadline already past), as a
 * worker's reload does, and the whole test runs again that way */
static int stepped;
static int stepped_builds, stepped_odd; /* builds in steps; those not in 2n + 2 steps */

static void ok(int cond, const char *fmt, ...)
{
    va_list ap;

    ntest++;
    printf("%s %d - ", cond ? "ok" : "not ok", ntest);
    va_start(ap, fmt);
    vprintf(fmt, ap);
    va_end(ap);
    printf("\n");
    if (!cond) {
        nfail++;
    }
}

/* Builds a router from a Lua chunk returning the normalized config. */
static struct gw_router *build(const char *config)
{
    struct gw_router *r = NULL;
    const char *err = NULL;
    int top = lua_gettop(L);

    lua_getglobal(L, "require");
    lua_pushstring(L, "luagate.router");
    if (lua_pcall(L, 1, 1, 0) != 0) {
        printf("# require: %s\n", lua_tostring(L, -1));
        exit(1);
    }
    lua_getfield(L, -1, "compile");
    if (luaL_loadstring(L, config) != 0 || lua_pcall(L, 0, 1, 0) != 0 ||
        lua_pcall(L, 1, 1, 0) != 0) {
        printf("# compile: %s\n", lua_tostring(L, -1));
        exit(1);
    }
    if (stepped) {
        struct gw_router_builder *b = NULL;
        size_t n = lua_objlen(L, -1), steps = 0;
        int rc = gw_router_build_start(L, -1, &b, &err), depth = lua_gettop(L);

        while (rc == GW_OK || rc == GW_AGAIN) {
            rc = gw_router_build_step(b, L, -1, 1e-9, &r, &err);
            steps++;
            if (rc != GW_AGAIN || lua_gettop(L) != depth) {
                break;
            }
        }
        gw_router_build_free(&b);
        stepped_builds++;
        /* each entry counted, then placed, one per step; sizing; the end */
        if (r == NULL || steps != 2 * n + 2 || lua_gettop(L) != depth) {
            stepped_odd++;
        }
        if (r == NULL) {
            printf("# gw_router_build_step: %s\n", err);
        }
    } else if (gw_router_build(L, -1, &r, &err) != GW_OK) {
        printf("# gw_router_build: %s\n", err);
    }
    lua_settop(L, top);
    return r;
}

/* Request headers for a test: "name: value" strings, NULL terminated. */
static int test_header(void *ud, const char *lname, size_t n, int idx, struct gw_str *v)
{
    const char *const *h = ud;

    for (; h && *h; h++) {
        const char *colon = strchr(*h, ':');

        if ((size_t)(colon - *h) == n && memcmp(*h, lname, n) == 0 && idx-- == 0) {
            v->p = colon + 2;
            v->n = strlen(colon + 2);
            return GW_OK;
        }
    }
    return GW_DECLINED;
}

/* Returns the matched route index or -1. */
static int match_full(struct gw_router *r, const char *method, const char *host, int port,
                      const char *path, const char *const *headers, struct gw_router_match *m)
{
    struct gw_router_req req = {
        .method = {method, strlen(method)},
        .host = {host, host ? strlen(host) : 0},
        .path = {path, strlen(path)},
        .port = port,
        .header = test_header,
        .ud = (void *)headers,
    };

    return gw_router_match(r, &req, m) == GW_OK ? m->route : -1;
}

static int match(struct gw_router *r, const char *method, const char *host, const char *path)
{
    struct gw_router_match m;

    return match_full(r, method, host, 80, path, NULL, &m);
}

static int matchh(struct gw_router *r, const char *path, const char *const *headers)
{
    struct gw_router_match m;

    return match_full(r, "GET", "x.com", 80, path, headers, &m);
}

static void test_prefix(void)
{
    struct gw_router *r = build("return { routes = {"
                                "  { paths = { '/a' } },"
                                "  { paths = { '/a/b' } },"
                                "  { paths = { '/' } },"
                                "} }");

    ok(match(r, "GET", "x.com", "/a/b/c") == 1, "prefix: longest prefix wins");
    ok(match(r, "GET", "x.com", "/a/x") == 0, "prefix: shorter prefix when longer fails");
    ok(match(r, "GET", "x.com", "/ab") == 0, "prefix: byte prefix, not segment");
    ok(match(r, "GET", "x.com", "/zzz") == 2, "prefix: / catches the rest");
    ok(match(r, "GET", NULL, "/a") == 0, "prefix: no Host header");
    gw_router_free(&r);
    ok(r == NULL, "free clears the pointer");

    r = build("return { routes = { { paths = { '/a' } } } }");
    ok(match(r, "GET", "x.com", "/b") == -1, "no match: GW_DECLINED");
    ok(match(r, "GET", "x.com", "/") == -1, "no match: shorter than prefix");
    gw_router_free(&r);

    r = build("return { routes = { { methods = { 'GET' } } } }");
    {
        struct gw_router_match m;

        ok(match_full(r, "GET", "x.com", 80, "/any/thing", NULL, &m) == 0 && m.strip_len == 0,
           "route without paths matches any path, strip_len 0");
    }
    gw_router_free(&r);
}

static void test_regex(void)
{
    struct gw_router_match m;
    struct gw_router *r = build("return { routes = {"
                                "  { paths = { '/users' } },"
                                "  { paths = { [[~/users/\\d+$]] } },"
                                "  { paths = { [[~/a/(\\d+)]] }, regex_priority = 1 },"
                                "  { paths = { [[~/a/\\d+]] }, regex_priority = 5 },"
                                "  { paths = { [[~/b/\\d+]] } },"
                                "  { paths = { [[~/b/(\\d+)]] } },"
                                "  { paths = { [[~/c]] } },"
                                "} }");

    ok(match(r, "GET", "x.com", "/users/12") == 1, "regex beats plain prefix at equal weight");
    ok(match(r, "GET", "x.com", "/users/12/x") == 0, "regex is anchored at end when asked ($)");
    ok(match(r, "GET", "x.com", "/users") == 0, "plain prefix when regex does not match");
    ok(match(r, "GET", "x.com", "/a/7") == 3, "higher regex_priority wins");
    ok(match(r, "GET", "x.com", "/b/7") == 4, "equal regex_priority: file order");
    ok(match(r, "GET", "x.com", "/x/c") == -1, "regex anchored at the start");
    ok(match_full(r, "GET", "x.com", 80, "/c/d", NULL, &m) == 6 && m.strip_len == 2 &&
           m.ncap == 1 && m.cap[0] == 0 && m.cap[1] == 2,
       "regex strip_len = end of whole match, group 0 reported");
    gw_router_free(&r);

    r = build("return { routes = {"
              "  { paths = { [[~/u/(\\d+)/(?<name>[a-z]+)(x)?]] } },"
              "  { paths = { '/api' } },"
              "} }");
    ok(match_full(r, "GET", "x.com", 80, "/u/42/bob/rest", NULL, &m) == 0, "captures: match");
    ok(m.ncap == 4, "captures: ncap counts group 0 and all groups (%d)", m.ncap);
    ok(m.cap[2] == 3 && m.cap[3] == 5, "captures: numbered group 1 = 42");
    ok(m.cap[4] == 6 && m.cap[5] == 9, "captures: named group 2 = bob");
    ok(m.cap[6] == SIZE_MAX && m.cap[7] == SIZE_MAX, "captures: unset group is SIZE_MAX");
    ok(m.cap_names && m.cap_names[0] == NULL && m.cap_names[1] == NULL && m.cap_names[2] &&
           strcmp(m.cap_names[2], "name") == 0 && m.cap_names[3] == NULL,
       "captures: names from the pcre2 name table");
    ok(m.strip_len == 9, "captures: strip_len = end of match (%zu)", m.strip_len);
    {
        size_t jitsize = 0;

        pcre2_pattern_info(r->entries[0].re, PCRE2_INFO_JITSIZE, &jitsize);
        ok(jitsize > 0, "regex paths are JIT-compiled (%zu bytes)", jitsize);
    }
    ok(match_full(r, "GET", "x.com", 80, "/api/x", NULL, &m) == 1 && m.strip_len == 4 &&
           m.ncap == 0 && m.cap_names == NULL,
       "plain match: strip_len = prefix length, no captures");
    gw_router_free(&r);

    {
        const char *err = NULL;

        lua_getglobal(L, "require");
        lua_pushstring(L, "luagate.router");
        lua_call(L, 1, 1);
        lua_getfield(L, -1, "compile");
        (void)luaL_dostring(L, "return { routes = { { paths = { '~/(' } } } }");
        lua_call(L, 1, 1);
        ok(gw_router_build(L, -1, &r, &err) == GW_ERROR && r == NULL && err != NULL,
           "invalid regex: GW_ERROR with a reason (%s)", err ? err : "");
        lua_settop(L, 0);
        lua_pushnumber(L, 1);
        ok(gw_router_build(L, -1, &r, &err) == GW_ERROR, "non-table entries: GW_ERROR");
        lua_settop(L, 0);
    }
}

/* Regexes are only run on paths that start with their literal text: the
 * text found, and the regexes' own meaning kept where a quantifier, an
 * escape, a class, inline flags or an alternation ends it. */
static void test_regex_literal(void)
{
    struct gw_router *r = build("return { routes = {"
                                "  { paths = { [[~/v1\\.0/items/\\d+]] } },"
                                "  { paths = { [[~/ab?c$]] } },"
                                "  { paths = { [[~/xx|/yy]] } },"
                                "  { paths = { [[~/(?i)case$]] } },"
                                "  { paths = { [[~/k+/z]] } },"
                                "  { paths = { [[~/d{2}x]] } },"
                                "  { paths = { [[~/p\\d]] } },"
                                "  { paths = { [[~/q[ab]$]] } },"
                                "  { paths = { [[~/w\\/s]] } },"
                                "} }");
    static const struct {
        const char *path;
        size_t lit_len;
    } lits[] = {{"/v1.0/items/", 12}, {"/a", 2},  {"", 0}, {"/", 1}, {"/", 1},
                {"/", 1},             {"/p", 2},  {"/q", 2}, {"/w/s", 4}};
    int lit_ok = 1;
    for (size_t i = 0; i < sizeof(lits) / sizeof(lits[0]); i++) {
        const struct gw_rentry *e = NULL;
        for (size_t j = 0; j < r->nentries; j++)
            if (r->entries[j].route == (int)i)
                e = &r->entries[j];
        if (e == NULL || e->lit_len != lits[i].lit_len ||
            memcmp(e->lit, lits[i].path, lits[i].lit_len) != 0) {
            printf("# route %zu: literal %.*s (%zu)\n", i, e ? (int)e->lit_len : 0,
                 e ? e->lit : "", e ? e->lit_len : 0);
            lit_ok = 0;
        }
    }
    ok(lit_ok, "regex literal starts: escapes unescaped, cut before ?*+{, none with |");
    ok(match(r, "GET", "x.com", "/v1.0/items/3") == 0, "literal start with an escaped dot");
    ok(match(r, "GET", "x.com", "/v1x0/items/3") == -1, "an escaped dot is a dot");
    ok(match(r, "GET", "x.com", "/ac") == 1 && match(r, "GET", "x.com", "/abc") == 1,
       "a character a ? follows is optional");
    ok(match(r, "GET", "x.com", "/yy") == 2, "an alternation's other branch");
    ok(match(r, "GET", "x.com", "/CaSe") == 3, "inline (?i) after the literal start");
    ok(match(r, "GET", "x.com", "/kkk/z") == 4, "a character + follows repeats");
    ok(match(r, "GET", "x.com", "/ddx") == 5, "a character {n} follows repeats");
    ok(match(r, "GET", "x.com", "/p7") == 6, "an escape class ends the literal start");
    ok(match(r, "GET", "x.com", "/qb") == 7, "a character class ends the literal start");
    ok(match(r, "GET", "x.com", "/w/s") == 8, "an escaped slash");
    ok(match(r, "GET", "x.com", "/zz") == -1, "no route for other paths");
    gw_router_free(&r);
}

static void test_hosts(void)
{
    struct gw_router_match m;
    struct gw_router *r = build("return { routes = {"
                                "  { hosts = { '*.example.com' } },"
                                "  { hosts = { 'example.*' } },"
                                "  { hosts = { 'api.example.com' } },"
                                "  { hosts = { 'd.com:8000' } },"
                                "  { hosts = { 'E.com' } },"
                                "  { hosts = { '*.w.com:9000' } },"
                                "} }");

    ok(match(r, "GET", "foo.example.com", "/") == 0, "wildcard *.example.com");
    ok(match(r, "GET", "a.b.example.com", "/") == 0, "wildcard suffix spans labels");
    ok(match(r, "GET", "FOO.Example.COM:8080", "/") == 0, "wildcard: case and port ignored");
    ok(match(r, "GET", "example.com", "/") == 1, "example.com: not *.example.com, is example.*");
    ok(match(r, "GET", ".example.com", "/") == -1, "wildcard needs a label before the suffix");
    ok(match(r, "GET", "example.", "/") == -1, "wildcard needs a label after the prefix");
    ok(match(r, "GET", "example.org", "/") == 1, "wildcard example.*");
    ok(match(r, "GET", "api.example.com", "/") == 2, "plain host beats wildcard (same weight)");
    ok(match(r, "GET", "d.com:8000", "/") == 3, "host:port with matching port");
    ok(match_full(r, "GET", "d.com", 8000, "/", NULL, &m) == 3,
       "host:port uses the local port when Host has none");
    ok(match(r, "GET", "d.com:9000", "/") == -1, "host:port with another port");
    ok(match(r, "GET", "d.com", "/") == -1, "host:port, Host without port, other local port");
    ok(match(r, "GET", "e.COM:1234", "/") == 4, "host without port matches any port, any case");
    ok(match(r, "GET", "x.w.com:9000", "/") == 5, "wildcard with port");
    ok(match(r, "GET", "x.w.com:9001", "/") == -1, "wildcard with port, other port");
    ok(match(r, "GET", "unknown.org", "/") == -1, "unknown host");
    gw_router_free(&r);
}

static void test_methods_headers(void)
{
    const char *h_b[] = {"x-v: B", NULL};
    const char *h_c[] = {"x-v: c", NULL};
    const char *h_two[] = {"x-v: c", "x-v: a", NULL};
    const char *h_both[] = {"x-v: a", "x-w: 1", NULL};
    struct gw_router *r = build("return { routes = {"
                                "  { paths = { '/m' } },"
                                "  { paths = { '/m' }, methods = { 'GET', 'HEAD' } },"
                                "  { paths = { '/h' } },"
                                "  { paths = { '/h' }, headers = { ['x-v'] = { 'a', 'b' } } },"
                                "  { paths = { '/h' }, headers = { ['x-v'] = { 'a' },"
                                "                                  ['x-w'] = { '1' } } },"
                                "} }");

    ok(match(r, "GET", "x.com", "/m") == 1, "methods: GET matches");
    ok(match(r, "HEAD", "x.com", "/m") == 1, "methods: any listed method matches");
    ok(match(r, "POST", "x.com", "/m") == 0, "methods: POST falls back");
    ok(match(r, "get", "x.com", "/m") == 0, "methods: exact (uppercase) compare");
    ok(matchh(r, "/h", h_b) == 3, "headers: value compare is case-insensitive");
    ok(matchh(r, "/h", h_c) == 2, "headers: other value falls back");
    ok(matchh(r, "/h", NULL) == 2, "headers: missing header falls back");
    ok(matchh(r, "/h", h_two) == 3, "headers: any occurrence of the header may match");
    ok(matchh(r, "/h", h_both) == 4, "headers: more headers rank first");
    gw_router_free(&r);
}

static void test_ranking(void)
{
    struct gw_router *r = build("return { routes = {"
                                "  { paths = { '/long/path/here' } },"
                                "  { paths = { '/' }, methods = { 'GET' } },"
                                "  { paths = { '~/long' }, regex_priority = 100 },"
                                "  { hosts = { '*.x.com' }, paths = { '/long' } },"
                                "  { hosts = { 'a.x.com' }, paths = { '/' } },"
                                "} }");

    ok(match(r, "GET", "q.com", "/long/path/here") == 1, "weight 2 beats a longer prefix");
    ok(match(r, "POST", "q.com", "/long/path/here") == 2,
       "regex beats longer plain prefix at equal weight");
    ok(match(r, "POST", "q.com", "/long/path/her") == 2, "regex");
    ok(match(r, "POST", "b.x.com", "/long") == 3, "hosts+paths weight beats regex");
    ok(match(r, "POST", "a.x.com", "/long") == 4, "plain host beats wildcard + longer path");
    gw_router_free(&r);
}

static void test_scale(void)
{
    struct gw_router_match m;
    struct gw_router *r;
    char host[64], path[64];
    unsigned long before;

    r = build("local routes = {}\n"
              "for i = 1, 10000 do\n"
              "  routes[i] = { hosts = { 'h' .. i .. '.com' }, paths = { '/p' .. i } }\n"
              "end\n"
              "for i = 1, 10000 do\n"
              "  routes[#routes + 1] = { paths = { '/q/' .. i .. '/' }, methods = { 'GET' } }\n"
              "end\n"
              "for i = 1, 100 do\n"
              "  routes[#routes + 1] = { paths = { '~/r/' .. i .. '/\\\\d+$' } }\n"
              "end\n"
              "return { routes = routes }");
    ok(r != NULL, "scale: built 20,100 routes");

    before = gw__router_checks;
    ok(match_full(r, "GET", "h5000.com", 80, "/p5000/x", NULL, &m) == 4999,
       "scale: host + prefix match among 10,000");
    ok(gw__router_checks - before <= 2, "scale: %lu candidate checks for a host match",
       gw__router_checks - before);

    before = gw__router_checks;
    ok(match_full(r, "GET", "nohost.com", 80, "/q/7777/z", NULL, &m) == 10000 + 7776,
       "scale: host-less prefix match among 10,000");
    ok(gw__router_checks - before <= 2, "scale: %lu candidate checks for a prefix match",
       gw__router_checks - before);

    before = gw__router_checks;
    ok(match_full(r, "GET", "h1.com", 80, "/p10", NULL, &m) == 0 && m.strip_len == 3,
       "scale: /p10 on h1.com is /p1 of route 0");
    ok(gw__router_checks - before <= 2, "scale: %lu checks", gw__router_checks - before);

    snprintf(host, sizeof(host), "h%d.com", 123);
    snprintf(path, sizeof(path), "/r/%d/55", 50);
    before = gw__router_checks;
    ok(match_full(r, "GET", host, 80, path, NULL, &m) == 20049,
       "scale: regex reached when nothing plain matches");
    ok(gw__router_checks - before <= 101, "scale: %lu checks (regexes are tried in order)",
       gw__router_checks - before);
    gw_router_free(&r);
}

static void test_normalize(void)
{
    static const struct {
        const char *in, *out; /* out NULL: invalid */
    } t[] = {
        {"/%41", "/A"},
        {"/a%2Fb", "/a%2Fb"},
        {"/a%2fb", "/a%2Fb"},
        {"/%7e%2D%2e%5F", "/~-._"},
        {"/a/../b", "/b"},
        {"/a/./b", "/a/b"},
        {"/./", "/"},
        {"/.", "/"},
        {"/..", "/"},
        {"/../../a", "/a"},
        {"/a/b/..", "/a/"},
        {"/a/b/../", "/a/"},
        {"/a/%2E%2E/b", "/b"},
        {"/a/.../b", "/a/.../b"},
        {"/a/..b/c", "/a/..b/c"},
        {"//a//b", "//a//b"},
        {"/a/b/c/./../../g", "/a/g"},
        {"/mid/content=5/../6", "/mid/6"},
        {"/%zz", NULL},
        {"/%4", NULL},
        {"/%", NULL},
        {"a/b", NULL},
        {"", NULL},
        {"/%20", "/%20"},
        {"/%00", "/%00"},
    };
    char buf[128];

    for (size_t i = 0; i < sizeof(t) / sizeof(t[0]); i++) {
        size_t n = strlen(t[i].in);
        long rc;

        memcpy(buf, t[i].in, n + 1);
        rc = gw_path_normalize(buf, n);
        if (t[i].out == NULL) {
            ok(rc == -1, "normalize '%s' is invalid", t[i].in);
        } else {
            ok(rc == (long)strlen(t[i].out) && memcmp(buf, t[i].out, (size_t)rc) == 0,
               "normalize '%s' -> '%s' (got '%.*s')", t[i].in, t[i].out, rc < 0 ? 0 : (int)rc, buf);
        }
    }
    memcpy(buf, "/a\0b", 4);
    ok(gw_path_normalize(buf, 4) == -1, "normalize: NUL byte is invalid");
}

/* Kong's table (route entity docs, path_handling), service path "/s";
 * strip_len is what the router reports for the route path (0 when
 * strip_path is off). */
static void test_upstream(void)
{
    static const struct {
        const char *svc, *route, *req;
        int strip, v1;
        const char *out;
    } t[] = {
        {"/s", "/fv0", "/fv0/req", 0, 0, "/s/fv0/req"},
        {"/s", "/fv0", "/fv0", 0, 0, "/s/fv0"},
        {"/s", "/fv1", "/fv1/req", 0, 1, "/sfv1/req"},
        {"/s", "/fv1", "/fv1", 0, 1, "/sfv1"},
        {"/s", "/tv0", "/tv0/req", 1, 0, "/s/req"},
        {"/s", "/tv0", "/tv0", 1, 0, "/s"},
        {"/s", "/tv1", "/tv1/req", 1, 1, "/s/req"},
        {"/s", "/tv1", "/tv1", 1, 1, "/s"},
        {"/s", "/fv0/", "/fv0/req", 0, 0, "/s/fv0/req"},
        {"/s", "/fv0/", "/fv0/", 0, 0, "/s/fv0/"},
        {"/s", "/fv1/", "/fv1/req", 0, 1, "/sfv1/req"},
        {"/s", "/fv1/", "/fv1/", 0, 1, "/sfv1/"},
        {"/s", "/tv0/", "/tv0/req", 1, 0, "/s/req"},
        {"/s", "/tv0/", "/tv0/", 1, 0, "/s/"},
        {"/s", "/tv1/", "/tv1/req", 1, 1, "/sreq"},
        {"/s", "/tv1/", "/tv1/", 1, 1, "/s"},
        /* older docs table: request path glued to the route path */
        {"/s", "/fv0", "/fv0req", 0, 0, "/s/fv0req"},
        {"/s", "/fv1", "/fv1req", 0, 1, "/sfv1req"},
        {"/s", "/tv0", "/tv0req", 1, 0, "/s/req"},
        {"/s", "/tv1", "/tv1req", 1, 1, "/sreq"},
        /* service path edge cases */
        {NULL, "/a", "/a/b", 1, 0, "/b"},
        {NULL, "/a", "/a", 1, 0, "/"},
        {NULL, "/a", "/a/b", 0, 0, "/a/b"},
        {"/", "/a", "/a/b", 0, 1, "/a/b"},
        {"/s/", "/a", "/a/b", 1, 0, "/s/b"},
        {"/s/", "/a", "/a", 1, 0, "/s"},
        {"/s/", "/a", "/a/b", 0, 0, "/s/a/b"},
        {"/s", "/", "/", 0, 0, "/s"},
        {"/s/", "/a", "/a/b", 1, 1, "/s/b"},
    };
    char out[64];

    for (size_t i = 0; i < sizeof(t) / sizeof(t[0]); i++) {
        size_t strip = t[i].strip ? strlen(t[i].route) : 0;
        long n = gw_upstream_path(t[i].svc, t[i].svc ? strlen(t[i].svc) : 0, t[i].req,
                                  strlen(t[i].req), strip, t[i].v1, out, sizeof(out));

        ok(n == (long)strlen(t[i].out) && memcmp(out, t[i].out, (size_t)n) == 0,
           "upstream %s svc=%s route=%s strip=%d req=%s -> %s (got %.*s)", t[i].v1 ? "v1" : "v0",
           t[i].svc ? t[i].svc : "nil", t[i].route, t[i].strip, t[i].req, t[i].out,
           n < 0 ? 0 : (int)n, out);
    }
    ok(gw_upstream_path("/s", 2, "/tv0/req", 8, 4, 0, out, 5) == -1, "upstream: cap too small");
    ok(gw_upstream_path("/s", 2, "/tv0/req", 8, 4, 0, out, 6) == 6, "upstream: exact cap fits");
}

int main(void)
{
    L = luaL_newstate();
    luaL_openlibs(L);
    if (luaL_dostring(L, "package.path = './lua/?.lua;./lua/?/init.lua;' .. package.path") != 0) {
        return 1;
    }

    test_normalize();
    test_upstream();
    /* the router's cases with every router built at once, then in steps */
    for (stepped = 0; stepped <= 1; stepped++) {
        test_prefix();
        test_regex();
        test_regex_literal();
        test_hosts();
        test_methods_headers();
        test_ranking();
        test_scale();
    }
    ok(stepped_builds >= 8 && stepped_odd == 0,
       "stepped builds: %d, each in one step per unit of work (%d were not)", stepped_builds,
       stepped_odd);
    {
        struct gw_router_builder *b = NULL;
        struct gw_router *r = NULL;
        const char *err = NULL;

        /* a builder dropped half-way frees what it built (ASan/valgrind see it) */
        (void)luaL_dostring(L, "return require('luagate.router').compile({ routes = {"
                               " { paths = { '~/a/(?<x>\\\\d+)$' }, hosts = { 'a.com' } },"
                               " { paths = { '/b' } } } })");
        ok(gw_router_build_start(L, -1, &b, &err) == GW_OK &&
               gw_router_build_step(b, L, -1, 1e-9, &r, &err) == GW_AGAIN &&
               gw_router_build_step(b, L, -1, 1e-9, &r, &err) == GW_AGAIN &&
               gw_router_build_step(b, L, -1, 1e-9, &r, &err) == GW_AGAIN &&
               gw_router_build_step(b, L, -1, 1e-9, &r, &err) == GW_AGAIN && r == NULL,
           "stepped build: no router before the last step");
        lua_pushnumber(L, 1);
        lua_rawseti(L, -2, 3); /* the entries table grows under the builder */
        int rc = gw_router_build_step(b, L, -1, 1e-9, &r, &err);
        ok(rc == GW_ERROR && r == NULL, "stepped build: entries that changed are refused (%s)",
           err ? err : "");
        gw_router_build_free(&b);
        ok(b == NULL, "gw_router_build_free clears the pointer");
        lua_settop(L, 0);
    }

    lua_close(L);
    printf("1..%d\n", ntest);
    if (nfail) {
        printf("# %d of %d failed\n", nfail, ntest);
    }
    return nfail ? 1 : 0;
}
