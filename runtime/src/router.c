/* Router: built at config load from the ranked entries luagate.router
 * compiles (lower index = higher rank), matched per request without
 * allocating.
 *
 * Layout. Entries are grouped by host: a hash table of exact hosts ("a.com"
 * and "a.com:8000" are different keys), a list of wildcard hosts
 * ("*.b.com" suffix, "c.*" prefix, each optionally with a port), and one
 * group for entries without hosts. An entry with several hosts sits in
 * several groups. Within a group, plain path prefixes live in a radix tree
 * whose nodes keep their entries in rank order (path-less entries at the
 * root), and regex paths in a rank-ordered list.
 *
 * Matching looks up at most: the exact host with port, the exact host
 * without port, the wildcard list and the host-less group. In each group it
 * walks the radix tree along the request path, then tries regexes, always
 * stopping as soon as an entry cannot beat the best rank found so far. Cost
 * depends on path length, on the number of wildcard host patterns and on
 * how many entries share one host+path (they differ only by methods or
 * headers), not on the total number of routes. */
#include <ctype.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define PCRE2_CODE_UNIT_WIDTH 8
#include <lua.h>
#include <pcre2.h>

#include "gw/router.h"

#ifdef GW_ROUTER_TEST
/* Test-only: number of candidate entries examined by gw_router_match. */
static unsigned long gw__router_checks;
#define GW_ROUTER_COUNT() (gw__router_checks++)
#else
#define GW_ROUTER_COUNT() ((void)0)
#endif

#define GW_ROUTER_MAX_HOST 512 /* longest Host (with port) looked up exactly */
#define GW_ROUTER_MAX_GROUPS 3 /* exact host:port, exact host, host-less */

struct gw_rheader {
    struct gw_str name;    /* lowercase, owned */
    struct gw_str *values; /* owned; compared case-insensitively */
    size_t nvalues;
};

struct gw_rentry {
    int route;          /* 0-based index into config.routes */
    int rank;           /* index in the entry array; lower wins */
    int regex;          /* path is a regex */
    struct gw_str path; /* owned; p == NULL when the entry has no path */
    pcre2_code *re;     /* regex entries only */
    char *lit;          /* regex entries: the text every match starts with, owned */
    size_t lit_len;
    int ncap;           /* capture pairs reported (incl. group 0), <= MAX */
    char **cap_names;   /* ncap slots, NULL when the regex has no names */
    int has_methods;    /* methods constrained (possibly to nothing) */
    struct gw_str *methods;
    size_t nmethods;
    struct gw_rheader *headers;
    size_t nheaders;
    int http_only;      /* the route's protocols exclude https */
    int has_snis;       /* snis constrained: TLS requests with one of them */
    struct gw_str *snis; /* lowercase; "*.b.com" and "c.*" are wildcards */
    size_t nsnis;
};

struct gw_rnode {
    char *label; /* owned edge label from the parent */
    size_t label_len;
    struct gw_rnode **kids; /* sorted by label[0], all first bytes distinct */
    size_t nkids, kcap;
    struct gw_rentry **ents; /* entries whose path ends here, rank order */
    size_t nents, ecap;
};

struct gw_rgroup {
    struct gw_rnode root;
    struct gw_rentry **regex; /* rank order */
    size_t nregex, rcap;
};

struct gw_rwild {
    struct gw_str fix; /* ".b.com" for "*.b.com", "c." for "c.*"; owned */
    int suffix;        /* 1: request host ends with fix; 0: starts with it */
    int port;          /* 0: any port */
    struct gw_rgroup *group;
};

struct gw_rhslot {
    struct gw_str key; /* lowercase "host" or "host:port"; p NULL = empty */
    uint32_t hash;
    struct gw_rgroup *group;
};

struct gw_router {
    struct gw_rentry *entries;
    size_t nentries;
    struct gw_rhslot *hosts; /* open addressing, hcap is a power of two */
    size_t hcap, hcount;
    struct gw_rwild *wild;
    size_t nwild, wcap;
    struct gw_rgroup *any; /* entries without hosts */
    pcre2_match_data *md;  /* shared by all regexes; the router is per thread */
};

/* ---- small helpers ---------------------------------------------------- */

static int grow(void *arrp, size_t *cap, size_t n, size_t elsize)
{
    void **arr = arrp;
    size_t ncap;
    void *p;

    if (n < *cap) {
        return GW_OK;
    }
    ncap = *cap ? *cap * 2 : 4;
    p = realloc(*arr, ncap * elsize);
    if (p == NULL) {
        return GW_ERROR;
    }
    *arr = p;
    *cap = ncap;
    return GW_OK;
}

static char *dup_mem(const char *s, size_t n)
{
    char *p = malloc(n + 1);

    if (p != NULL) {
        memcpy(p, s, n);
        p[n] = '\0';
    }
    return p;
}

static uint32_t hash_lower(const char *s, size_t n)
{
    uint32_t h = 2166136261u;

    for (size_t i = 0; i < n; i++) {
        h ^= (uint32_t)tolower((unsigned char)s[i]);
        h *= 16777619u;
    }
    return h;
}

static int eq_nocase(const char *a, size_t an, const char *b, size_t bn)
{
    if (an != bn) {
        return 0;
    }
    for (size_t i = 0; i < an; i++) {
        if (tolower((unsigned char)a[i]) != tolower((unsigned char)b[i])) {
            return 0;
        }
    }
    return 1;
}

/* ---- radix tree ------------------------------------------------------- */

static struct gw_rnode *rnode_new(const char *label, size_t len)
{
    struct gw_rnode *n = calloc(1, sizeof(*n));

    if (n == NULL) {
        return NULL;
    }
    n->label = dup_mem(label, len);
    if (n->label == NULL) {
        free(n);
        return NULL;
    }
    n->label_len = len;
    return n;
}

static void rnode_free(struct gw_rnode *n, int self)
{
    for (size_t i = 0; i < n->nkids; i++) {
        rnode_free(n->kids[i], 1);
    }
    free(n->kids);
    free(n->ents);
    free(n->label);
    if (self) {
        free(n);
    }
}

/* Index of the kid whose label starts with c, or of the slot to insert it
 * at (then *found = 0). */
static size_t rnode_find(const struct gw_rnode *n, unsigned char c, int *found)
{
    size_t lo = 0, hi = n->nkids;

    while (lo < hi) {
        size_t mid = (lo + hi) / 2;
        unsigned char k = (unsigned char)n->kids[mid]->label[0];

        if (k == c) {
            *found = 1;
            return mid;
        }
        if (k < c) {
            lo = mid + 1;
        } else {
            hi = mid;
        }
    }
    *found = 0;
    return lo;
}

/* Returns the node where path p ends, creating and splitting nodes as
 * needed; NULL when out of memory. */
static struct gw_rnode *rnode_insert(struct gw_rnode *n, const char *p, size_t len)
{
    while (len > 0) {
        int found;
        size_t i = rnode_find(n, (unsigned char)p[0], &found);
        struct gw_rnode *k, *mid;
        size_t common = 0;

        if (!found) {
            if (grow(&n->kids, &n->kcap, n->nkids, sizeof(*n->kids)) != GW_OK) {
                return NULL;
            }
            k = rnode_new(p, len);
            if (k == NULL) {
                return NULL;
            }
            memmove(&n->kids[i + 1], &n->kids[i], (n->nkids - i) * sizeof(*n->kids));
            n->kids[i] = k;
            n->nkids++;
            return k;
        }

        k = n->kids[i];
        while (common < k->label_len && common < len && k->label[common] == p[common]) {
            common++;
        }
        if (common < k->label_len) {
            /* split k: mid takes the common part, k keeps the tail */
            mid = rnode_new(k->label, common);
            if (mid == NULL) {
                return NULL;
            }
            mid->kids = malloc(sizeof(*mid->kids));
            if (mid->kids == NULL) {
                rnode_free(mid, 1);
                return NULL;
            }
            mid->kids[0] = k;
            mid->nkids = mid->kcap = 1;
            memmove(k->label, k->label + common, k->label_len - common + 1);
            k->label_len -= common;
            n->kids[i] = mid;
            k = mid;
        }
        n = k;
        p += common;
        len -= common;
    }
    return n;
}

/* ---- groups ----------------------------------------------------------- */

static struct gw_rgroup *group_new(void) { return calloc(1, sizeof(struct gw_rgroup)); }

static void group_free(struct gw_rgroup *g)
{
    if (g == NULL) {
        return;
    }
    rnode_free(&g->root, 0);
    free(g->regex);
    free(g);
}

/* Adds e to g. Entries are added in rank order, so every list stays sorted. */
static int group_add(struct gw_rgroup *g, struct gw_rentry *e)
{
    struct gw_rnode *n;

    if (e->regex) {
        if (grow(&g->regex, &g->rcap, g->nregex, sizeof(*g->regex)) != GW_OK) {
            return GW_ERROR;
        }
        g->regex[g->nregex++] = e;
        return GW_OK;
    }
    n = e->path.p ? rnode_insert(&g->root, e->path.p, e->path.n) : &g->root;
    if (n == NULL || grow(&n->ents, &n->ecap, n->nents, sizeof(*n->ents)) != GW_OK) {
        return GW_ERROR;
    }
    n->ents[n->nents++] = e;
    return GW_OK;
}

static struct gw_rgroup *host_lookup(const struct gw_router *r, const char *h, size_t n)
{
    uint32_t hash;
    size_t i;

    if (r->hcap == 0) {
        return NULL;
    }
    hash = hash_lower(h, n);
    for (i = hash & (r->hcap - 1);; i = (i + 1) & (r->hcap - 1)) {
        const struct gw_rhslot *s = &r->hosts[i];

        if (s->key.p == NULL) {
            return NULL;
        }
        if (s->hash == hash && eq_nocase(s->key.p, s->key.n, h, n)) {
            return s->group;
        }
    }
}

/* Finds or creates the group of exact host h (lowercase). The table is
 * sized at build time, before any insertion, so it never fills up. */
static struct gw_rgroup *host_group(struct gw_router *r, const char *h, size_t n)
{
    uint32_t hash = hash_lower(h, n);
    size_t i;

    for (i = hash & (r->hcap - 1);; i = (i + 1) & (r->hcap - 1)) {
        struct gw_rhslot *s = &r->hosts[i];

        if (s->key.p == NULL) {
            s->key.p = dup_mem(h, n);
            if (s->key.p == NULL) {
                return NULL;
            }
            s->group = group_new();
            if (s->group == NULL) {
                free((char *)s->key.p);
                s->key.p = NULL;
                return NULL;
            }
            s->key.n = n;
            s->hash = hash;
            r->hcount++;
            return s->group;
        }
        if (s->hash == hash && eq_nocase(s->key.p, s->key.n, h, n)) {
            return s->group;
        }
    }
}

/* "*.b.com" or "c.*", either optionally followed by ":port". */
static int is_wildcard(const char *h, size_t n)
{
    int port;
    size_t hn = gw_host_split_port(h, n, &port);

    return hn > 1 && (h[0] == '*' || h[hn - 1] == '*');
}

static struct gw_rgroup *wild_group(struct gw_router *r, const char *h, size_t n)
{
    struct gw_rwild *w;
    int port, suffix;
    size_t hn = gw_host_split_port(h, n, &port);

    suffix = h[0] == '*';
    h = suffix ? h + 1 : h;
    hn--;
    for (size_t i = 0; i < r->nwild; i++) {
        w = &r->wild[i];
        if (w->suffix == suffix && w->port == port && eq_nocase(w->fix.p, w->fix.n, h, hn)) {
            return w->group;
        }
    }
    if (grow(&r->wild, &r->wcap, r->nwild, sizeof(*r->wild)) != GW_OK) {
        return NULL;
    }
    w = &r->wild[r->nwild];
    w->fix.p = dup_mem(h, hn);
    w->group = group_new();
    if (w->fix.p == NULL || w->group == NULL) {
        free((char *)w->fix.p);
        free(w->group);
        return NULL;
    }
    w->fix.n = hn;
    w->suffix = suffix;
    w->port = port;
    r->nwild++;
    return w->group;
}

/* ---- reading entries from Lua ----------------------------------------- */

/* Pushes t[k] (raw) for the table at absolute index t. */
static int raw_field(lua_State *L, int t, const char *k)
{
    lua_pushstring(L, k);
    lua_rawget(L, t);
    return lua_type(L, -1);
}

/* Reads the array of strings at the top of the stack into *out. */
static int read_strings(lua_State *L, struct gw_str **out, size_t *n)
{
    int t = lua_gettop(L);
    size_t len = lua_objlen(L, t);

    *n = 0;
    *out = calloc(len ? len : 1, sizeof(**out));
    if (*out == NULL) {
        return GW_ERROR;
    }
    for (size_t i = 1; i <= len; i++) {
        size_t sl;
        const char *s;

        lua_rawgeti(L, t, (int)i);
        if (lua_type(L, -1) == LUA_TSTRING) {
            s = lua_tolstring(L, -1, &sl);
            (*out)[*n].p = dup_mem(s, sl);
            if ((*out)[*n].p == NULL) {
                lua_pop(L, 1);
                return GW_ERROR;
            }
            (*out)[*n].n = sl;
            (*n)++;
        }
        lua_pop(L, 1);
    }
    return GW_OK;
}

static void free_strings(struct gw_str *s, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        free((char *)s[i].p);
    }
    free(s);
}

static int read_headers(lua_State *L, struct gw_rentry *e)
{
    int t = lua_gettop(L);
    size_t len = lua_objlen(L, t);

    e->headers = calloc(len ? len : 1, sizeof(*e->headers));
    if (e->headers == NULL) {
        return GW_ERROR;
    }
    for (size_t i = 1; i <= len; i++) {
        struct gw_rheader *h = &e->headers[e->nheaders];
        int h_idx, rc = GW_OK;

        lua_rawgeti(L, t, (int)i);
        h_idx = lua_gettop(L);
        if (lua_type(L, h_idx) != LUA_TTABLE || raw_field(L, h_idx, "name") != LUA_TSTRING) {
            lua_settop(L, t);
            continue;
        }
        h->name.p = dup_mem(lua_tostring(L, -1), lua_objlen(L, -1));
        h->name.n = lua_objlen(L, -1);
        e->nheaders++;
        lua_pop(L, 1);
        if (h->name.p == NULL) {
            rc = GW_ERROR;
        } else if (raw_field(L, h_idx, "values") == LUA_TTABLE) {
            rc = read_strings(L, &h->values, &h->nvalues);
        }
        lua_settop(L, t);
        if (rc != GW_OK) {
            return GW_ERROR;
        }
    }
    return GW_OK;
}

/* The length of the literal text every match of the anchored regex re
 * (len bytes) starts with, for a check before the regex runs: a path that
 * does not start with it cannot match. Conservative: plain characters and
 * escaped punctuation up to the first other metacharacter; a character a
 * quantifier follows is left out; a pattern with an alternation anywhere
 * gets 0 (an alternative may start otherwise). */
static size_t literal_prefix(const char *re, size_t len, char *out)
{
    static const char meta[] = "\\^$.|?*+()[]{}";
    size_t n = 0;

    if (memchr(re, '|', len) != NULL)
        return 0;
    for (size_t i = 0; i < len;) {
        char c = re[i];
        size_t next = i + 1;
        if (c == '\\') {
            /* \/ \. \- ...: the character itself; \d \Q \1 ...: stop */
            if (i + 1 >= len || !ispunct((unsigned char)re[i + 1]))
                break;
            c = re[i + 1];
            next = i + 2;
        } else if (strchr(meta, c) != NULL || c == '#' || (unsigned char)c < 0x20) {
            break;
        }
        if (next < len && strchr("?*+{", re[next]) != NULL)
            break; /* c may repeat or be absent */
        out[n++] = c;
        i = next;
    }
    return n;
}

/* Compiles e->path as an anchored regex with JIT and records capture names. */
static int compile_regex(struct gw_rentry *e, uint32_t *maxcap, const char **err)
{
    int errcode;
    PCRE2_SIZE erroff;
    uint32_t capcount = 0, namecount = 0, entsize = 0;
    PCRE2_SPTR table = NULL;

    e->re =
        pcre2_compile((PCRE2_SPTR)e->path.p, e->path.n, PCRE2_ANCHORED, &errcode, &erroff, NULL);
    if (e->re == NULL) {
        *err = "router: invalid regex path";
        return GW_ERROR;
    }
    /* JIT is an optimisation: when unavailable pcre2_match interprets. */
    (void)pcre2_jit_compile(e->re, PCRE2_JIT_COMPLETE);
    /* the literal text every match starts with, unescaped */
    e->lit = malloc(e->path.n + 1);
    if (e->lit == NULL) {
        *err = "router: out of memory";
        return GW_ERROR;
    }
    e->lit_len = literal_prefix(e->path.p, e->path.n, e->lit);

    pcre2_pattern_info(e->re, PCRE2_INFO_CAPTURECOUNT, &capcount);
    pcre2_pattern_info(e->re, PCRE2_INFO_NAMECOUNT, &namecount);
    if (capcount + 1 > *maxcap) {
        *maxcap = capcount + 1;
    }
    e->ncap = capcount + 1 > GW_ROUTER_MAX_CAPTURES ? GW_ROUTER_MAX_CAPTURES : (int)capcount + 1;
    if (namecount == 0) {
        return GW_OK;
    }

    pcre2_pattern_info(e->re, PCRE2_INFO_NAMEENTRYSIZE, &entsize);
    pcre2_pattern_info(e->re, PCRE2_INFO_NAMETABLE, &table);
    e->cap_names = calloc((size_t)e->ncap, sizeof(*e->cap_names));
    if (e->cap_names == NULL) {
        *err = "router: out of memory";
        return GW_ERROR;
    }
    for (uint32_t i = 0; i < namecount; i++) {
        PCRE2_SPTR ent = table + (size_t)i * entsize;
        int group = (ent[0] << 8) | ent[1];

        if (group < e->ncap) {
            e->cap_names[group] = dup_mem((const char *)ent + 2, strlen((const char *)ent + 2));
            if (e->cap_names[group] == NULL) {
                *err = "router: out of memory";
                return GW_ERROR;
            }
        }
    }
    return GW_OK;
}

/* Reads the entry table at index t into e. */
static int read_entry(lua_State *L, int t, struct gw_rentry *e, uint32_t *maxcap, const char **err)
{
    int top = lua_gettop(L), rc = GW_OK;

    *err = "router: out of memory";
    if (lua_type(L, t) != LUA_TTABLE || raw_field(L, t, "route") != LUA_TNUMBER) {
        *err = "router: entry without a route index";
        rc = GW_ERROR;
        goto done;
    }
    e->route = (int)lua_tointeger(L, -1);
    lua_settop(L, top);

    if (raw_field(L, t, "path") == LUA_TSTRING) {
        e->path.n = lua_objlen(L, -1);
        e->path.p = dup_mem(lua_tostring(L, -1), e->path.n);
        if (e->path.p == NULL) {
            rc = GW_ERROR;
            goto done;
        }
    }
    lua_settop(L, top);

    raw_field(L, t, "regex");
    e->regex = lua_toboolean(L, -1) && e->path.p != NULL;
    lua_settop(L, top);

    raw_field(L, t, "http_only");
    e->http_only = lua_toboolean(L, -1);
    lua_settop(L, top);

    if (raw_field(L, t, "snis") == LUA_TTABLE) {
        e->has_snis = 1;
        if (read_strings(L, &e->snis, &e->nsnis) != GW_OK) {
            rc = GW_ERROR;
            goto done;
        }
    }
    lua_settop(L, top);

    if (raw_field(L, t, "methods") == LUA_TTABLE) {
        e->has_methods = 1;
        if (read_strings(L, &e->methods, &e->nmethods) != GW_OK) {
            rc = GW_ERROR;
            goto done;
        }
    }
    lua_settop(L, top);

    if (raw_field(L, t, "headers") == LUA_TTABLE && read_headers(L, e) != GW_OK) {
        rc = GW_ERROR;
        goto done;
    }
    lua_settop(L, top);

    if (e->regex) {
        rc = compile_regex(e, maxcap, err);
    }

done:
    lua_settop(L, top);
    return rc;
}

/* Inserts entry e into the group of every host of the entry table at t, or
 * into the host-less group when it has no hosts field. */
static int place_entry(lua_State *L, int t, struct gw_router *r, struct gw_rentry *e)
{
    int top = lua_gettop(L), rc = GW_OK;
    size_t len;

    if (raw_field(L, t, "hosts") != LUA_TTABLE) {
        lua_settop(L, top);
        return group_add(r->any, e);
    }
    len = lua_objlen(L, -1);
    for (size_t i = 1; i <= len && rc == GW_OK; i++) {
        struct gw_rgroup *g = NULL;
        const char *h;
        size_t hn;

        lua_rawgeti(L, top + 1, (int)i);
        if (lua_type(L, -1) != LUA_TSTRING || lua_objlen(L, -1) == 0) {
            lua_pop(L, 1);
            continue;
        }
        h = lua_tolstring(L, -1, &hn);
        g = is_wildcard(h, hn) ? wild_group(r, h, hn) : host_group(r, h, hn);
        rc = g != NULL ? group_add(g, e) : GW_ERROR;
        lua_pop(L, 1);
    }
    lua_settop(L, top);
    return rc;
}

/* ---- public API ------------------------------------------------------- */

/* A build in steps (see router.h): the entries are first counted for their
 * hosts (the exact-host table is sized before any insertion), then read and
 * placed one by one. The router stays private to the builder until it is
 * complete. */
struct gw_router_builder {
    struct gw_router *r; /* being built; entries [0, r->nentries) are placed */
    size_t n;            /* entries in the Lua array */
    size_t next;         /* 0-based: the next entry to count, then to place */
    size_t nhosts;       /* hosts counted so far */
    int counting;        /* 1 while the hosts are counted */
    uint32_t maxcap;     /* capture pairs of the largest regex */
};

static double router_clock(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* Absolute index of the entries table at idx, or 0 when it is not a table. */
static int entries_index(lua_State *L, int idx)
{
    if (idx < 0 && idx > LUA_REGISTRYINDEX) {
        idx = lua_gettop(L) + idx + 1;
    }
    return lua_type(L, idx) == LUA_TTABLE ? idx : 0;
}

/* See router.h. */
int gw_router_build_start(lua_State *L, int idx, struct gw_router_builder **out, const char **err)
{
    struct gw_router_builder *b;
    int entries = entries_index(L, idx);

    *out = NULL;
    if (entries == 0) {
        *err = "router: entries must be a table";
        return GW_ERROR;
    }
    *err = "router: out of memory";
    b = calloc(1, sizeof(*b));
    if (b == NULL) {
        return GW_ERROR;
    }
    b->n = lua_objlen(L, entries);
    b->counting = 1;
    b->maxcap = 1;
    b->r = calloc(1, sizeof(*b->r));
    if (b->r != NULL) {
        b->r->entries = calloc(b->n ? b->n : 1, sizeof(*b->r->entries));
        b->r->any = group_new();
    }
    if (b->r == NULL || b->r->entries == NULL || b->r->any == NULL) {
        gw_router_build_free(&b);
        return GW_ERROR;
    }
    *out = b;
    return GW_OK;
}

/* Counts the hosts of entry b->next (1 unit of work). */
static void count_step(lua_State *L, int entries, struct gw_router_builder *b)
{
    lua_rawgeti(L, entries, (int)b->next + 1);
    if (lua_type(L, -1) == LUA_TTABLE && raw_field(L, lua_gettop(L), "hosts") == LUA_TTABLE) {
        b->nhosts += lua_objlen(L, -1);
    }
    lua_settop(L, entries);
}

/* Sizes the exact-host table once every entry was counted. */
static int size_hosts(struct gw_router_builder *b)
{
    struct gw_router *r = b->r;

    for (r->hcap = 16; r->hcap < b->nhosts * 2; r->hcap *= 2) {
    }
    r->hosts = calloc(r->hcap, sizeof(*r->hosts));
    return r->hosts ? GW_OK : GW_ERROR;
}

/* Reads and places entry b->next. */
static int place_step(lua_State *L, int entries, struct gw_router_builder *b, const char **err)
{
    struct gw_router *r = b->r;
    struct gw_rentry *e = &r->entries[b->next];
    int rc;

    lua_rawgeti(L, entries, (int)b->next + 1);
    r->nentries++; /* counted before reading: gw_router_free frees what was read */
    e->rank = (int)b->next;
    rc = read_entry(L, entries + 1, e, &b->maxcap, err);
    if (rc == GW_OK && place_entry(L, entries + 1, r, e) != GW_OK) {
        *err = "router: out of memory";
        rc = GW_ERROR;
    }
    lua_settop(L, entries);
    return rc;
}

/* See router.h. */
int gw_router_build_step(struct gw_router_builder *b, lua_State *L, int idx, double deadline,
                         struct gw_router **out, const char **err)
{
    int top = lua_gettop(L), entries = entries_index(L, idx);
    int rc = GW_AGAIN;

    *out = NULL;
    if (entries == 0 || lua_objlen(L, entries) != b->n) {
        *err = "router: the entries changed during the build";
        return GW_ERROR;
    }
    lua_pushvalue(L, entries);
    entries = lua_gettop(L);
    do {
        if (b->counting && b->next < b->n) {
            count_step(L, entries, b);
            b->next++;
        } else if (b->counting) {
            b->counting = 0;
            b->next = 0;
            if (size_hosts(b) != GW_OK) {
                *err = "router: out of memory";
                rc = GW_ERROR;
            }
        } else if (b->next < b->n) {
            if (place_step(L, entries, b, err) != GW_OK) {
                rc = GW_ERROR;
            }
            b->next++;
        } else {
            b->r->md = pcre2_match_data_create(b->maxcap, NULL);
            if (b->r->md == NULL) {
                *err = "router: out of memory";
                rc = GW_ERROR;
                break;
            }
            *out = b->r;
            b->r = NULL;
            rc = GW_OK;
        }
    } while (rc == GW_AGAIN && (deadline <= 0 || router_clock() < deadline));
    lua_settop(L, top);
    return rc;
}

/* See router.h. */
void gw_router_build_free(struct gw_router_builder **bp)
{
    struct gw_router_builder *b = *bp;

    if (b == NULL) {
        return;
    }
    gw_router_free(&b->r);
    free(b);
    *bp = NULL;
}

/* See router.h. Does not raise: the entries are read with raw accesses. */
int gw_router_build(lua_State *L, int idx, struct gw_router **out, const char **err)
{
    struct gw_router_builder *b = NULL;
    int rc;

    *out = NULL;
    if (idx < 0 && idx > LUA_REGISTRYINDEX) {
        idx = lua_gettop(L) + idx + 1;
    }
    rc = gw_router_build_start(L, idx, &b, err);
    if (rc == GW_OK) {
        rc = gw_router_build_step(b, L, idx, 0, out, err);
    }
    gw_router_build_free(&b);
    return rc;
}

/* See router.h. */
void gw_router_free(struct gw_router **rp)
{
    struct gw_router *r = *rp;

    if (r == NULL) {
        return;
    }
    for (size_t i = 0; i < r->nentries; i++) {
        struct gw_rentry *e = &r->entries[i];

        free((char *)e->path.p);
        pcre2_code_free(e->re);
        free(e->lit);
        for (int j = 0; e->cap_names && j < e->ncap; j++) {
            free(e->cap_names[j]);
        }
        free(e->cap_names);
        free_strings(e->methods, e->nmethods);
        free_strings(e->snis, e->nsnis);
        for (size_t j = 0; j < e->nheaders; j++) {
            free((char *)e->headers[j].name.p);
            free_strings(e->headers[j].values, e->headers[j].nvalues);
        }
        free(e->headers);
    }
    free(r->entries);
    for (size_t i = 0; i < r->hcap; i++) {
        free((char *)r->hosts[i].key.p);
        group_free(r->hosts[i].group);
    }
    free(r->hosts);
    for (size_t i = 0; i < r->nwild; i++) {
        free((char *)r->wild[i].fix.p);
        group_free(r->wild[i].group);
    }
    free(r->wild);
    group_free(r->any);
    pcre2_match_data_free(r->md);
    free(r);
    *rp = NULL;
}

/* ---- matching --------------------------------------------------------- */

struct gw_rbest {
    int rank; /* best rank so far; r->nentries when none yet */
    const struct gw_rentry *e;
    size_t strip_len;
};

/* Methods and headers: the constraints not decided by the group. */
/* A route's sni against the handshake's: exact, "*.b.com" (one label) or
 * "c.*", as certificates are chosen. */
static int sni_matches(const struct gw_str *pat, const struct gw_str *sni)
{
    if (pat->n > 2 && pat->p[0] == '*' && pat->p[1] == '.') {
        const char *dot = memchr(sni->p, '.', sni->n);
        return dot && eq_nocase(pat->p + 1, pat->n - 1, dot, sni->n - (size_t)(dot - sni->p));
    }
    if (pat->n > 2 && pat->p[pat->n - 1] == '*' && pat->p[pat->n - 2] == '.') {
        size_t k = sni->n;
        while (k > 0 && sni->p[k - 1] != '.')
            k--;
        return k > 0 && eq_nocase(pat->p, pat->n - 1, sni->p, k);
    }
    return eq_nocase(pat->p, pat->n, sni->p, sni->n);
}

static int entry_filters(const struct gw_rentry *e, const struct gw_router_req *req)
{
    if (e->http_only && req->https)
        return 0;
    if (e->has_snis) {
        size_t i;
        for (i = 0; req->sni.n && i < e->nsnis; i++)
            if (sni_matches(&e->snis[i], &req->sni))
                break;
        if (req->sni.n == 0 || i == e->nsnis)
            return 0;
    }
    if (e->has_methods) {
        size_t i;

        for (i = 0; i < e->nmethods; i++) {
            if (e->methods[i].n == req->method.n &&
                memcmp(e->methods[i].p, req->method.p, req->method.n) == 0) {
                break;
            }
        }
        if (i == e->nmethods) {
            return 0;
        }
    }
    for (size_t i = 0; i < e->nheaders; i++) {
        const struct gw_rheader *h = &e->headers[i];
        struct gw_str v;
        int ok = 0;

        if (req->header == NULL) {
            return 0;
        }
        for (int k = 0; !ok && req->header(req->ud, h->name.p, h->name.n, k, &v) == GW_OK; k++) {
            for (size_t j = 0; !ok && j < h->nvalues; j++) {
                ok = eq_nocase(h->values[j].p, h->values[j].n, v.p, v.n);
            }
        }
        if (!ok) {
            return 0;
        }
    }
    return 1;
}

/* Takes the first entry of a rank-ordered list that beats best and passes
 * the filters. */
static void try_list(struct gw_rentry *const *ents, size_t n, size_t strip_len,
                     const struct gw_router_req *req, struct gw_rbest *best)
{
    for (size_t i = 0; i < n && ents[i]->rank < best->rank; i++) {
        GW_ROUTER_COUNT();
        if (entry_filters(ents[i], req)) {
            best->rank = ents[i]->rank;
            best->e = ents[i];
            best->strip_len = strip_len;
            return;
        }
    }
}

static void match_prefixes(const struct gw_rgroup *g, const struct gw_router_req *req,
                           struct gw_rbest *best)
{
    const struct gw_rnode *n = &g->root;
    const char *p = req->path.p;
    size_t len = req->path.n, pos = 0;

    try_list(n->ents, n->nents, 0, req, best);
    while (pos < len) {
        int found;
        size_t i = rnode_find(n, (unsigned char)p[pos], &found);
        const struct gw_rnode *k;

        if (!found) {
            break;
        }
        k = n->kids[i];
        if (k->label_len > len - pos || memcmp(k->label, p + pos, k->label_len) != 0) {
            break;
        }
        pos += k->label_len;
        n = k;
        try_list(n->ents, n->nents, pos, req, best);
    }
}

static void match_regexes(const struct gw_router *r, const struct gw_rgroup *g,
                          const struct gw_router_req *req, struct gw_rbest *best,
                          struct gw_router_match *m)
{
    for (size_t i = 0; i < g->nregex && g->regex[i]->rank < best->rank; i++) {
        const struct gw_rentry *e = g->regex[i];
        PCRE2_SIZE *ov;
        int rc;

        GW_ROUTER_COUNT();
        if (e->lit_len > 0 &&
            (req->path.n < e->lit_len || memcmp(req->path.p, e->lit, e->lit_len) != 0)) {
            continue;
        }
        if (!entry_filters(e, req)) {
            continue;
        }
        rc = pcre2_match(e->re, (PCRE2_SPTR)(req->path.p ? req->path.p : ""), req->path.n, 0, 0,
                         r->md, NULL);
        if (rc < 0) {
            continue;
        }
        ov = pcre2_get_ovector_pointer(r->md);
        best->rank = e->rank;
        best->e = e;
        best->strip_len = ov[1];
        m->ncap = e->ncap;
        for (int j = 0; j < e->ncap; j++) {
            /* groups past rc did not participate; PCRE2_UNSET is ~0 */
            m->cap[2 * j] = j < rc ? ov[2 * j] : SIZE_MAX;
            m->cap[2 * j + 1] = j < rc ? ov[2 * j + 1] : SIZE_MAX;
        }
        m->cap_names = (const char *const *)e->cap_names;
        return;
    }
}

/* Writes ":port" (port in 1..65535) to buf; returns its length. */
static size_t put_port(char *buf, int port)
{
    char digits[5];
    size_t n = 0, len = 0;

    do {
        digits[n++] = (char)('0' + port % 10);
        port /= 10;
    } while (port > 0 && n < sizeof(digits));
    buf[len++] = ':';
    while (n > 0) {
        buf[len++] = digits[--n];
    }
    return len;
}

/* Request host part h (hn bytes, no port) against a wildcard; the
 * wildcard covers at least one character. */
static int wild_matches(const struct gw_rwild *w, const char *h, size_t hn, int port)
{
    if ((w->port != 0 && w->port != port) || hn <= w->fix.n) {
        return 0;
    }
    return eq_nocase(w->suffix ? h + hn - w->fix.n : h, w->fix.n, w->fix.p, w->fix.n);
}

/* See router.h. The request host may carry a port; without one, req->port
 * is used to find routes whose host names a port. Captures are reported
 * for regex matches only (ncap = 0 otherwise); unset groups are SIZE_MAX. */
int gw_router_match(const struct gw_router *r, const struct gw_router_req *req,
                    struct gw_router_match *m)
{
    const struct gw_rgroup *groups[GW_ROUTER_MAX_GROUPS];
    struct gw_rbest best = {.rank = (int)r->nentries, .e = NULL, .strip_len = 0};
    size_t ng = 0, hn = 0;
    int port = 0;

    m->ncap = 0;
    m->cap_names = NULL;

    if (req->host.n > 0) {
        char key[GW_ROUTER_MAX_HOST];
        const struct gw_rgroup *g;
        size_t len;

        hn = gw_host_split_port(req->host.p, req->host.n, &port);
        if (port == 0) {
            port = req->port;
        }
        if (port > 0 && port <= 65535 && hn + 7 <= sizeof(key)) {
            memcpy(key, req->host.p, hn);
            len = put_port(key + hn, port);
            if ((g = host_lookup(r, key, hn + len)) != NULL) {
                groups[ng++] = g;
            }
        }
        if ((g = host_lookup(r, req->host.p, hn)) != NULL) {
            groups[ng++] = g;
        }
    }
    groups[ng++] = r->any;

    /* all prefix walks first: they are cheap and lower the bar regexes
     * must beat */
    for (size_t i = 0; i < ng; i++) {
        match_prefixes(groups[i], req, &best);
    }
    for (size_t i = 0; hn > 0 && i < r->nwild; i++) {
        if (wild_matches(&r->wild[i], req->host.p, hn, port)) {
            match_prefixes(r->wild[i].group, req, &best);
        }
    }
    for (size_t i = 0; i < ng; i++) {
        match_regexes(r, groups[i], req, &best, m);
    }
    for (size_t i = 0; hn > 0 && i < r->nwild; i++) {
        if (wild_matches(&r->wild[i], req->host.p, hn, port)) {
            match_regexes(r, r->wild[i].group, req, &best, m);
        }
    }

    if (best.e == NULL) {
        return GW_DECLINED;
    }
    if (!best.e->regex) {
        m->ncap = 0;
        m->cap_names = NULL;
    }
    m->route = best.e->route;
    m->entry = best.e->rank;
    m->strip_len = best.strip_len;
    return GW_OK;
}
