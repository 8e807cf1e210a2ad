/* Answer memos (gw/memo.h): answers a plugin gave alone, repeated in C to
 * the next requests that are the same for them. One direct-mapped table per
 * configuration and worker: a slot holds one memo, a new memo takes its
 * slot's place. A memo is one allocation: the struct, then its bytes (the
 * request target, the header names and the values they had, the answer's
 * head in two parts around its Age header, the body, the dictionary keys). */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "gw/buf.h"
#include "gw/config-t.h"
#include "gw/conn.h"
#include "gw/core-t.h"
#include "gw/http.h"
#include "gw/memo.h"
#include "gw/shdict.h"
#include "gw/stats.h"
#include "gw/version.h"
#include "gw/worker-t.h"

struct gw_memo {
    uint32_t hash;
    int route;
    int method;           /* llhttp's */
    int status;
    int has_age;
    int ndeps;
    double deadline;
    double age_origin;
    size_t bytes;         /* the allocation */
    uint32_t tlen;        /* request target */
    uint32_t hnames_len;  /* header names, each ended by '\0' */
    uint32_t hvals_len;   /* the values the request had (hvals_put) */
    uint32_t head1_len;   /* status line and the header lines before Age */
    uint32_t head2_len;   /* the header lines after Age */
    size_t body_len;
    const char *target, *hnames, *hvals, *head1, *head2, *body;
    struct gw_memo_dep deps[GW_MEMO_MAX_DEPS]; /* keys in data */
    int one_dict;         /* all deps are in deps[0].dict */
    uint64_t seq;         /* that dictionary's change count when deps were last current; 0: never */
    int64_t until;        /* the first expiry time of a dep (gw_shdict_now), INT64_MAX: none */
    unsigned uses;        /* uses since the stamps were last read */
    char data[];
};

struct gw_memo_table {
    size_t bytes;       /* held by the memos */
    int nroutes;
    uint32_t *per_route; /* memos per route index */
    struct gw_memo *slot[GW_MEMO_SLOTS];
};

static uint32_t memo_hash(int route, int method, const char *target, size_t len)
{
    uint32_t h = 2166136261u ^ (uint32_t)route * 16777619u ^ (uint32_t)method;
    for (size_t i = 0; i < len; i++)
        h = (h ^ (unsigned char)target[i]) * 16777619u;
    return h;
}

/* The values the request's headers named in names have, in a form that two
 * requests share only when the values are the same: per name, the count of
 * headers of that name (one byte), then each value's length (two bytes) and
 * bytes. Returns the length, or -1 when it would not fit in max (or a name
 * repeats more than 255 times, or a value is longer than 65535). */
static long hvals_put(const struct gw_conn *c, const struct gw_req *r, const char *names,
                      size_t names_len, char *out, size_t max)
{
    size_t n = 0;
    for (const char *nm = names; nm < names + names_len; nm += strlen(nm) + 1) {
        size_t nl = strlen(nm);
        size_t count_at = n;
        unsigned count = 0;
        if (n + 1 > max)
            return -1;
        n++;
        for (int i = 0; i < r->head.nhdr; i++) {
            const struct gw_hdr *h = &r->head.hdr[i];
            if (!gw_http_name_is(c->in.data + h->name, h->name_len, nm, nl))
                continue;
            if (++count > 255 || h->value_len > 65535 || n + 2 + h->value_len > max)
                return -1;
            out[n++] = (char)(h->value_len >> 8);
            out[n++] = (char)(h->value_len & 0xff);
            memcpy(out + n, c->in.data + h->value, h->value_len);
            n += h->value_len;
        }
        out[count_at] = (char)count;
    }
    return (long)n;
}

static void memo_drop(struct gw_memo_table *t, uint32_t i)
{
    struct gw_memo *m = t->slot[i];
    if (m == NULL)
        return;
    t->slot[i] = NULL;
    t->bytes -= m->bytes;
    t->per_route[m->route]--;
    free(m);
}

void gw_memo_free(struct gw_memo_table **pt)
{
    struct gw_memo_table *t = *pt;
    *pt = NULL;
    if (t == NULL)
        return;
    for (uint32_t i = 0; i < GW_MEMO_SLOTS; i++)
        free(t->slot[i]);
    free(t->per_route);
    free(t);
}

static struct gw_memo_table *table_of(struct gw_config *cf)
{
    if (cf->memo)
        return cf->memo;
    struct gw_memo_table *t = calloc(1, sizeof(*t));
    if (t == NULL)
        return NULL;
    t->nroutes = cf->nroutes;
    t->per_route = calloc((size_t)(cf->nroutes > 0 ? cf->nroutes : 1), sizeof(uint32_t));
    if (t->per_route == NULL) {
        free(t);
        return NULL;
    }
    cf->memo = t;
    return t;
}

/* The answer's head (r->resp_hdrs as gw_conn_send_exit sends them: a
 * Server header added when there is none) into b: head1 ends where the
 * first Age header was (has_age), head2 is the rest; Content-Length and the
 * blank line are added at each use. Returns head1's length, -1 without
 * memory or for an answer with grpc-status (the exit path reads it for the
 * logs). *has_age is cleared when there is no Age header to replace. */
static long head_parts(struct gw_req *r, struct gw_buf *b, int *has_age)
{
    static const char server_line[] = "Server: luagate/" GW_VERSION "\r\n";
    const struct gw_hlist *h = r->resp_hdrs;
    int n = h ? h->n : 0, age = -1, server = 0;
    size_t room = 64 + sizeof(server_line); /* status line, Server */
    for (int i = 0; i < n; i++) {
        if (age < 0 && *has_age && GW_NAME_IS(h->v[i].name, h->v[i].nlen, "age"))
            age = i;
        if (GW_NAME_IS(h->v[i].name, h->v[i].nlen, "server"))
            server = 1;
        /* gw_conn_send_exit reads it for the logs and metrics */
        if (GW_NAME_IS(h->v[i].name, h->v[i].nlen, "grpc-status"))
            return -1;
        room += h->v[i].nlen + h->v[i].vlen + 4;
    }
    /* room for everything: the appends below cannot fail */
    if (gw_buf_reserve(b, room, 0) != 0)
        return -1;
    *has_age = age >= 0;
    gw_write_status_line(b, r->exit_status);
    long head1 = -1;
    if (age >= 0) {
        gw_write_header_lines(b, r->exit_status, h->v, age, 1);
        head1 = (long)b->len;
        gw_write_header_lines(b, r->exit_status, h->v + age + 1, n - age - 1, 1);
    } else if (n) {
        gw_write_header_lines(b, r->exit_status, h->v, n, 1);
    }
    if (!server)
        gw_buf_append(b, server_line, sizeof(server_line) - 1);
    return head1 >= 0 ? head1 : (long)b->len;
}

int gw_ffi_memo_store(struct gw_req *r, const struct gw_memo_args *a, const char **err)
{
    if (a->ndeps < 1 || a->ndeps > GW_MEMO_MAX_DEPS) {
        *err = "a memo depends on 1 to 4 dictionary values";
        return GW_ERROR;
    }
    if (a->hnames_len > GW_MEMO_MAX_HDEPS ||
        (a->hnames_len && a->hnames[a->hnames_len - 1] != '\0')) {
        *err = "bad header names";
        return GW_ERROR;
    }
    for (int i = 0; i < a->ndeps; i++)
        if (a->deps[i].dict == NULL || a->deps[i].klen == 0 || a->deps[i].klen > 65535) {
            *err = "bad dictionary value";
            return GW_ERROR;
        }
    struct gw_conn *c = r->conn;
    if (c == NULL || c->http2 || c->bridge || r->phase != GW_PHASE_ACCESS || !r->has_exit ||
        r->route == NULL || r->config == NULL || r->has_body || r->resp_started ||
        (r->config->global_phases & GW_PHASE_REWRITE) || /* it may change the request */
        r->exit_body.n > GW_MEMO_MAX_BODY || !(ev_now(gw_worker->loop) < a->deadline))
        return GW_DECLINED;

    char hvals[GW_MEMO_MAX_HDEPS];
    long hvlen = hvals_put(c, r, a->hnames, a->hnames_len, hvals, sizeof(hvals));
    if (hvlen < 0)
        return GW_DECLINED;

    static struct gw_buf head; /* the worker's, reused */
    head.len = 0;
    head.off = 0;
    int has_age = a->has_age;
    long head1 = head_parts(r, &head, &has_age);
    if (head1 < 0)
        return GW_DECLINED;

    size_t keys = 0;
    for (int i = 0; i < a->ndeps; i++)
        keys += a->deps[i].klen;
    size_t bytes = sizeof(struct gw_memo) + r->url_len + a->hnames_len + (size_t)hvlen +
                   head.len + r->exit_body.n + keys;
    struct gw_memo_table *t = table_of(r->config);
    if (t == NULL || bytes > GW_MEMO_MAX_BYTES)
        return GW_DECLINED;
    struct gw_memo *m = malloc(bytes);
    if (m == NULL)
        return GW_DECLINED;

    m->route = r->match.route;
    m->method = c->parser.method;
    m->status = r->exit_status;
    m->has_age = has_age;
    m->deadline = a->deadline;
    m->age_origin = a->age_origin;
    m->bytes = bytes;
    m->tlen = r->url_len;
    m->hnames_len = (uint32_t)a->hnames_len;
    m->hvals_len = (uint32_t)hvlen;
    m->head1_len = (uint32_t)head1;
    m->head2_len = (uint32_t)(head.len - (size_t)head1);
    m->body_len = r->exit_body.n;
    char *p = m->data;
    m->target = p;
    memcpy(p, c->in.data + r->url_off, r->url_len);
    p += r->url_len;
    m->hnames = p;
    if (a->hnames_len)
        memcpy(p, a->hnames, a->hnames_len);
    p += a->hnames_len;
    m->hvals = p;
    memcpy(p, hvals, (size_t)hvlen);
    p += hvlen;
    m->head1 = p;
    m->head2 = p + head1;
    memcpy(p, head.data, head.len);
    p += head.len;
    m->body = p;
    if (r->exit_body.n)
        memcpy(p, r->exit_body.p, r->exit_body.n);
    p += r->exit_body.n;
    m->ndeps = a->ndeps;
    m->one_dict = 1;
    m->seq = 0;
    m->until = INT64_MAX;
    m->uses = 0;
    for (int i = 0; i < a->ndeps; i++) {
        m->deps[i] = a->deps[i];
        memcpy(p, a->deps[i].key, a->deps[i].klen);
        m->deps[i].key = p;
        p += a->deps[i].klen;
        if (a->deps[i].dict != a->deps[0].dict)
            m->one_dict = 0;
        if (a->deps[i].expires != 0 && a->deps[i].expires < m->until)
            m->until = a->deps[i].expires;
    }
    m->hash = memo_hash(m->route, m->method, m->target, m->tlen);

    uint32_t i = m->hash & (GW_MEMO_SLOTS - 1);
    memo_drop(t, i);
    if (t->bytes + bytes > GW_MEMO_MAX_BYTES) {
        free(m);
        return GW_DECLINED;
    }
    t->slot[i] = m;
    t->bytes += bytes;
    t->per_route[m->route]++;
    return GW_OK;
}

/* Whether every dictionary value m was made from still has its stamp.
 * When they are all in one dictionary whose change count has not moved
 * since they were last found current (gw_shdict_seq, read without the
 * lock) and none has reached its expiry time, they are; their stamps are
 * still read on every 64th use, which makes the entries recently used in
 * the dictionary's LRU (a hot memo must not let its entry be evicted). */
static int deps_current(struct gw_memo *m)
{
    uint64_t seq = 0;
    if (m->one_dict) {
        seq = gw_shdict_seq(m->deps[0].dict);
        if (seq == m->seq && (++m->uses & 63) != 0 &&
            (m->until == INT64_MAX || gw_shdict_now() < m->until))
            return 1;
    }
    for (int i = 0; i < m->ndeps; i++) {
        const struct gw_memo_dep *d = &m->deps[i];
        uint32_t ver;
        int64_t expires;
        const char *err;
        if (gw_ffi_shdict_stamp(d->dict, d->key, d->klen, &ver, &expires, &err) != GW_OK ||
            ver != d->ver || expires != d->expires)
            return 0;
    }
    m->seq = seq; /* read before the stamps: a change since moves it */
    m->uses = 0;
    return 1;
}

int gw_memo_answer(struct gw_conn *c)
{
    struct gw_req *r = c->req;
    struct gw_memo_table *t = r->config->memo;
    int route = r->match.route;
    if (t == NULL || route < 0 || route >= t->nroutes || t->per_route[route] == 0 ||
        r->has_body || c->http2 || c->bridge)
        return 0;
    const char *target = c->in.data + r->url_off;
    uint32_t h = memo_hash(route, c->parser.method, target, r->url_len);
    uint32_t i = h & (GW_MEMO_SLOTS - 1);
    struct gw_memo *m = t->slot[i];
    if (m == NULL || m->hash != h || m->route != route || m->method != c->parser.method ||
        m->tlen != r->url_len || memcmp(m->target, target, r->url_len) != 0)
        return 0;
    double now = ev_now(gw_worker->loop);
    if (!(now < m->deadline)) {
        memo_drop(t, i);
        return 0;
    }
    if (m->hnames_len) {
        char hvals[GW_MEMO_MAX_HDEPS];
        long n = hvals_put(c, r, m->hnames, m->hnames_len, hvals, sizeof(hvals));
        /* other values: another answer, which the plugin gives */
        if (n != (long)m->hvals_len || memcmp(hvals, m->hvals, (size_t)n) != 0)
            return 0;
    }
    if (!deps_current(m)) {
        memo_drop(t, i);
        return 0;
    }

    /* what gw_conn_send_exit would have recorded */
    r->phases = 0;
    r->has_exit = 1;
    r->exit_status = m->status;
    r->resp_source = GW_SRC_EXIT;
    r->status = m->status;
    r->resp_started = 1;
    struct gw_buf *b = &c->out;
    gw_buf_append(b, m->head1, m->head1_len);
    if (m->has_age) {
        double age = floor(now - m->age_origin);
        gw_buf_append(b, "Age: ", 5);
        gw_buf_append_u64(b, age > 0 ? (uint64_t)age : 0);
        gw_buf_append(b, "\r\n", 2);
    }
    gw_buf_append(b, m->head2, m->head2_len);
    gw_buf_append(b, "Content-Length: ", 16);
    gw_buf_append_u64(b, m->body_len);
    if (!r->keepalive) { /* as gw_conn_send_exit */
        gw_buf_append(b, "\r\nConnection: close", 19);
        c->closing = 1;
    }
    if (gw_buf_append(b, "\r\n\r\n", 4) != 0 ||
        (!r->is_head && m->body_len && gw_buf_append(b, m->body, m->body_len) != 0)) {
        gw_conn_close(c);
        return 1;
    }
    gw_worker->stats->memo_answers++;
    gw_conn_response_done(c);
    return 1;
}
