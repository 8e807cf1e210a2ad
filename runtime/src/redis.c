/* Redis through hiredis's async API (see gw/redis.h). A request (struct
 * rreq) is a batch of commands on one connection; hiredis calls each
 * command's callback exactly once, with the reply or with NULL when the
 * connection goes, so a request lives until its last callback, even after
 * its coroutine stopped waiting (timeout) or went away (cancel). Replies are
 * converted into a table on the waiting coroutine's stack as they come. */
#include <arpa/inet.h>
#include <ev.h>
#include <hiredis/adapters/libev.h>
#include <hiredis/async.h>
#include <hiredis/hiredis.h>
#include <lua.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "gw/core-t.h"
#include "gw/dns.h"
#include "gw/log.h"
#include "gw/lua_req.h"
#include "gw/redis.h"
#include "gw/worker-t.h"

#define MAX_DEPTH 16

struct rconn {
    struct rconn *next, *prev; /* the live connections */
    char *key;
    redisAsyncContext *ac;     /* NULL once hiredis freed it */
    int refs;                  /* one while ac lives, one per request */
    int listed;                /* in conns (shared); else dedicated */
};

struct rreq {
    struct gw_lop lop;
    struct gw_lctx *x;  /* NULL once resumed or cancelled */
    struct rconn *conn;
    ev_timer timer;
    int ncmds;
    int pending;        /* callbacks still due */
    int tidx;           /* stack index of the replies table on x->co, or 0 */
    char err[128];      /* why the whole batch failed */
};

struct resolve_op {
    struct gw_lop lop;
    struct gw_dns_waiter dw;
    struct gw_lctx *x;
};

static struct rconn *conns;
static int nconns;
static char errbuf[160];

/* Reply objects. hiredis's own functions make one malloc()ed object per
 * reply element and free them one by one once the reply's callback has
 * run (the rate limiter's reply of three integers: four allocations and
 * four frees per request). These make hiredis's same redisReply objects in
 * an arena per connection, emptied when hiredis frees the reply; the arena
 * goes with the connection's hiredis context (its event cleanup hook), or
 * with the reply a context being freed still held. */
struct rblock {
    struct rblock *next;
    size_t size;
    char data[];
};

struct rarena {
    char *cur, *end;
    struct rblock *blocks; /* beyond first, freed when the arena is emptied */
    int live;              /* a reply is being built or delivered */
    int orphan;            /* its context is gone: free it with the reply */
    _Alignas(16) char first[1024];
};

struct robj {
    redisReply r; /* first: hiredis and the callbacks see a redisReply */
    struct rarena *a;
};

/* Requests kept for reuse (an allocation and a free less per command). */
#define RREQ_KEEP 64
static struct rreq *rreq_free_list[RREQ_KEEP];
static int rreq_nfree;

static void conn_unref(struct rconn *c)
{
    if (--c->refs > 0)
        return;
    free(c->key);
    free(c);
}

/* Takes c out of the list (new requests make a new connection). */
static void conn_unlink(struct rconn *c)
{
    if (!c->listed)
        return;
    c->listed = 0;
    if (c->prev)
        c->prev->next = c->next;
    else
        conns = c->next;
    if (c->next)
        c->next->prev = c->prev;
    c->next = c->prev = NULL;
    nconns--;
}

/* Forgets c's hiredis context (gone, or being closed by us) and the
 * reference it held. The caller must hold its own reference to use c. */
static void conn_detach(struct rconn *c)
{
    if (c->ac)
        c->ac->data = NULL;
    c->ac = NULL;
    conn_unlink(c);
    conn_unref(c);
}

/* hiredis is done with ac (connect failed, or disconnected). */
static void conn_gone(const redisAsyncContext *ac)
{
    struct rconn *c = ac->data;
    if (c != NULL)
        conn_detach(c);
}

static void connect_cb(const redisAsyncContext *ac, int status)
{
    if (status != REDIS_OK) {
        gw_log(GW_LOG_ERR, "redis connect failed: %s", ac->errstr);
        conn_gone(ac);
    }
}

static void disconnect_cb(const redisAsyncContext *ac, int status)
{
    if (status != REDIS_OK)
        gw_log(GW_LOG_WARN, "redis connection lost: %s", ac->errstr);
    conn_gone(ac);
}

/* Closes c now: every callback still due runs with a NULL reply. The caller
 * holds a reference to c. */
static void conn_kill(struct rconn *c)
{
    redisAsyncContext *ac = c->ac;
    if (ac == NULL)
        return;
    conn_detach(c);
    redisAsyncFree(ac);
}

static void setup_cb(redisAsyncContext *ac, void *r, void *privdata)
{
    redisReply *reply = r;
    if (reply && reply->type == REDIS_REPLY_ERROR) {
        gw_log(GW_LOG_ERR, "redis %s failed: %s", (const char *)privdata, reply->str);
        struct rconn *c = ac->data;
        if (c) { /* the next request reconnects */
            conn_detach(c);
            redisAsyncDisconnect(ac); /* after the replies already due */
        }
    }
}

static void arena_empty(struct rarena *a)
{
    while (a->blocks != NULL) {
        struct rblock *b = a->blocks;
        a->blocks = b->next;
        free(b);
    }
    a->cur = a->first;
    a->end = a->first + sizeof(a->first);
    a->live = 0;
}

static void *arena_alloc(struct rarena *a, size_t n)
{
    n = (n + 15) & ~(size_t)15;
    if ((size_t)(a->end - a->cur) < n) {
        size_t size = n > 4096 ? n : 4096;
        struct rblock *b = malloc(sizeof(*b) + size);
        if (b == NULL)
            return NULL;
        b->next = a->blocks;
        b->size = size;
        a->blocks = b;
        a->cur = b->data;
        a->end = b->data + size;
    }
    void *p = a->cur;
    a->cur += n;
    return p;
}

/* A reply object of the task's reply, linked into its parent array. */
static redisReply *reply_obj(const redisReadTask *task, int type)
{
    struct rarena *a = task->privdata;
    struct robj *o = arena_alloc(a, sizeof(*o));
    if (o == NULL)
        return NULL;
    memset(o, 0, sizeof(*o));
    o->a = a;
    o->r.type = type;
    a->live = 1;
    if (task->parent != NULL) {
        redisReply *parent = task->parent->obj;
        parent->element[task->idx] = &o->r;
    }
    return &o->r;
}

static void *reply_string(const redisReadTask *task, char *str, size_t len)
{
    redisReply *r = reply_obj(task, task->type); /* string, status or error */
    char *buf = r ? arena_alloc(task->privdata, len + 1) : NULL;
    if (buf == NULL)
        return NULL;
    memcpy(buf, str, len);
    buf[len] = '\0';
    r->str = buf;
    r->len = len;
    return r;
}

static void *reply_array(const redisReadTask *task, int elements)
{
    redisReply *r = reply_obj(task, REDIS_REPLY_ARRAY);
    if (r == NULL)
        return NULL;
    if (elements > 0) {
        r->element = arena_alloc(task->privdata, (size_t)elements * sizeof(*r->element));
        if (r->element == NULL)
            return NULL;
        memset(r->element, 0, (size_t)elements * sizeof(*r->element));
        r->elements = (size_t)elements;
    }
    return r;
}

static void *reply_integer(const redisReadTask *task, long long value)
{
    redisReply *r = reply_obj(task, REDIS_REPLY_INTEGER);
    if (r != NULL)
        r->integer = value;
    return r;
}

static void *reply_nil(const redisReadTask *task)
{
    return reply_obj(task, REDIS_REPLY_NIL);
}

/* hiredis frees a whole reply (its root): the arena is emptied. */
static void reply_free(void *obj)
{
    struct rarena *a = ((struct robj *)obj)->a;
    arena_empty(a);
    if (a->orphan)
        free(a);
}

static redisReplyObjectFunctions reply_fns = {
    reply_string, reply_array, reply_integer, reply_nil, reply_free,
};

/* The context's event cleanup, which hiredis calls as it frees the context
 * (nothing is read after it): the arena goes now, or with the reply the
 * context still holds. */
static void events_cleanup(void *privdata)
{
    redisLibevEvents *e = privdata;
    redisReader *reader = e->context->c.reader;
    struct rarena *a = reader ? reader->privdata : NULL;
    redisLibevCleanup(privdata);
    if (a == NULL)
        return;
    reader->privdata = NULL;
    a->orphan = 1;
    if (!a->live)
        free(a);
}

static struct rconn *conn_get(const char *key, const char *ip, int port, const char *user,
                              const char *password, int db, int dedicated)
{
    for (struct rconn *c = conns; c && !dedicated; c = c->next)
        if (c->ac && strcmp(c->key, key) == 0)
            return c;
    struct rconn *c = calloc(1, sizeof(*c));
    if (c == NULL || (c->key = strdup(key)) == NULL) {
        free(c);
        snprintf(errbuf, sizeof(errbuf), "no memory");
        return NULL;
    }
    redisAsyncContext *ac = redisAsyncConnect(ip, port);
    if (ac == NULL || ac->err) {
        snprintf(errbuf, sizeof(errbuf), "%s", ac ? ac->errstr : "no memory");
        if (ac)
            redisAsyncFree(ac);
        free(c->key);
        free(c);
        return NULL;
    }
    struct rarena *a = malloc(sizeof(*a));
    if (a == NULL || redisLibevAttach(gw_worker->loop, ac) != REDIS_OK) {
        snprintf(errbuf, sizeof(errbuf), a ? "could not attach to the loop" : "no memory");
        free(a);
        redisAsyncFree(ac);
        free(c->key);
        free(c);
        return NULL;
    }
    a->blocks = NULL;
    a->orphan = 0;
    arena_empty(a);
    ac->c.reader->fn = &reply_fns;
    ac->c.reader->privdata = a;
    ac->ev.cleanup = events_cleanup;
    ac->data = c;
    redisAsyncSetConnectCallback(ac, connect_cb);
    redisAsyncSetDisconnectCallback(ac, disconnect_cb);
    c->ac = ac;
    c->refs = 1;
    if (!dedicated) {
        c->listed = 1;
        c->next = conns;
        if (conns)
            conns->prev = c;
        conns = c;
        nconns++;
    }
    if (password && user && *user)
        redisAsyncCommand(ac, setup_cb, (void *)"AUTH", "AUTH %s %s", user, password);
    else if (password)
        redisAsyncCommand(ac, setup_cb, (void *)"AUTH", "AUTH %s", password);
    if (db > 0)
        redisAsyncCommand(ac, setup_cb, (void *)"SELECT", "SELECT %d", db);
    return c;
}

/* Pushes reply converted on L; returns 0, or -1 when too deep. */
static int push_reply(lua_State *L, redisReply *r, int depth)
{
    if (depth > MAX_DEPTH || !lua_checkstack(L, 4))
        return -1;
    switch (r->type) {
    case REDIS_REPLY_STRING:
    case REDIS_REPLY_STATUS:
        lua_pushlstring(L, r->str, r->len);
        return 0;
    case REDIS_REPLY_INTEGER:
        lua_pushnumber(L, (lua_Number)r->integer);
        return 0;
    case REDIS_REPLY_NIL:
        lua_pushlightuserdata(L, NULL); /* cjson.null, ngx.null */
        return 0;
    case REDIS_REPLY_ERROR:
        lua_createtable(L, 2, 0);
        lua_pushboolean(L, 0);
        lua_rawseti(L, -2, 1);
        lua_pushlstring(L, r->str, r->len);
        lua_rawseti(L, -2, 2);
        return 0;
    case REDIS_REPLY_ARRAY:
        lua_createtable(L, (int)r->elements, 0);
        for (size_t i = 0; i < r->elements; i++) {
            if (push_reply(L, r->element[i], depth + 1) != 0)
                return -1;
            lua_rawseti(L, -2, (int)i + 1);
        }
        return 0;
    default:
        lua_pushnil(L);
        return 0;
    }
}

static void rreq_free(struct rreq *rq)
{
    struct rconn *c = rq->conn;
    ev_timer_stop(gw_worker->loop, &rq->timer);
    gw_lop_remove(&rq->lop);
    if (!c->listed && c->ac) { /* a dedicated connection ends with its request */
        redisAsyncContext *ac = c->ac;
        conn_detach(c);
        redisAsyncDisconnect(ac);
    }
    conn_unref(c);
    if (rreq_nfree < RREQ_KEEP)
        rreq_free_list[rreq_nfree++] = rq;
    else
        free(rq);
}

/* Resumes rq's coroutine with (replies or nil, err or nil); frees rq when
 * no callback is due. The wake is the last thing done. */
static void rreq_finish(struct rreq *rq, const char *err)
{
    struct gw_lctx *x = rq->x;
    rq->x = NULL;
    ev_timer_stop(gw_worker->loop, &rq->timer);
    gw_lop_remove(&rq->lop);
    lua_State *co = x->co;
    if (err) {
        if (rq->tidx)
            lua_settop(co, rq->tidx - 1);
        lua_pushnil(co);
        lua_pushstring(co, err);
    } else {
        if (!rq->tidx)
            lua_createtable(co, 0, 0);
        lua_pushnil(co);
    }
    if (rq->pending == 0)
        rreq_free(rq);
    gw_lua_wake(x, 2);
}

static void reply_cb(redisAsyncContext *ac, void *r, void *privdata)
{
    struct rreq *rq = privdata;
    int idx = rq->ncmds - rq->pending + 1;
    rq->pending--;
    if (rq->x == NULL) {
        if (rq->pending == 0)
            rreq_free(rq);
        return;
    }
    redisReply *reply = r;
    if (reply == NULL) {
        if (rq->err[0] == '\0')
            snprintf(rq->err, sizeof(rq->err), "%s", ac->err ? ac->errstr : "closed");
    } else if (rq->err[0] == '\0') {
        lua_State *co = rq->x->co;
        if (!rq->tidx) {
            lua_createtable(co, rq->ncmds, 0);
            rq->tidx = lua_gettop(co);
        }
        if (push_reply(co, reply, 0) != 0) {
            snprintf(rq->err, sizeof(rq->err), "reply too deep");
            lua_settop(co, rq->tidx);
        } else {
            lua_rawseti(co, rq->tidx, idx);
        }
    }
    if (rq->pending == 0)
        rreq_finish(rq, rq->err[0] ? rq->err : NULL);
}

static void timeout_cb(struct ev_loop *loop, ev_timer *t, int revents)
{
    struct rreq *rq = gw_container_of(t, struct rreq, timer);
    struct gw_lctx *x = rq->x;
    struct rconn *c = rq->conn;
    int tidx = rq->tidx;
    rq->x = NULL;
    gw_lop_remove(&rq->lop);
    c->refs++;
    conn_kill(c); /* runs the callbacks due: rq is freed by its last one */
    conn_unref(c);
    if (tidx)
        lua_settop(x->co, tidx - 1);
    lua_pushnil(x->co);
    lua_pushstring(x->co, "timeout");
    gw_lua_wake(x, 2);
}

static void rreq_cancel(struct gw_lop *op)
{
    struct rreq *rq = gw_container_of(op, struct rreq, lop);
    rq->x = NULL; /* freed by its last callback */
    ev_timer_stop(gw_worker->loop, &rq->timer);
}

/* The RESP encoding of one command (*argc, then $len and the bytes of each
 * argument) in fmt_buf, grown as needed and kept: hiredis's own formatting
 * (redisFormatSdsCommandArgv) runs a printf-like sdscatfmt per argument,
 * about 4,500 instructions for the rate limiter's 9-argument EVALSHA. */
static char *fmt_buf;
static size_t fmt_cap;

static char *put_uint(char *p, size_t v)
{
    char tmp[24];
    int n = 0;
    do {
        tmp[n++] = (char)('0' + v % 10);
        v /= 10;
    } while (v);
    while (n)
        *p++ = tmp[--n];
    return p;
}

static long format_command(int argc, const char **argv, const size_t *argvlen)
{
    size_t need = 16;
    for (int i = 0; i < argc; i++)
        need += argvlen[i] + 26; /* $, up to 20 digits, two CRLF */
    if (need > fmt_cap) {
        size_t cap = need < 1024 ? 1024 : need * 2;
        char *b = realloc(fmt_buf, cap);
        if (b == NULL)
            return -1;
        fmt_buf = b;
        fmt_cap = cap;
    }
    char *p = fmt_buf;
    *p++ = '*';
    p = put_uint(p, (size_t)argc);
    *p++ = '\r';
    *p++ = '\n';
    for (int i = 0; i < argc; i++) {
        *p++ = '$';
        p = put_uint(p, argvlen[i]);
        *p++ = '\r';
        *p++ = '\n';
        memcpy(p, argv[i], argvlen[i]);
        p += argvlen[i];
        *p++ = '\r';
        *p++ = '\n';
    }
    return (long)(p - fmt_buf);
}

int gw_ffi_redis_exec(struct gw_lctx *x, const char *key, const char *ip, int port,
                      const char *user, const char *password, int db, int ncmds,
                      const int *argc, const char **argv, const size_t *argvlen, int timeout_ms,
                      int flags, const char **err)
{
    if (x == NULL || x->waiting || gw_worker == NULL) {
        *err = "no request";
        return GW_ERROR;
    }
    if (ncmds <= 0) {
        *err = "no command";
        return GW_ERROR;
    }
    for (int i = 0; i < ncmds; i++)
        if (argc[i] <= 0) { /* Redis would not answer an empty command */
            *err = "empty command";
            return GW_ERROR;
        }
    struct rconn *c = conn_get(key, ip, port, user, password, db, flags & GW_REDIS_DEDICATED);
    if (c == NULL) {
        *err = errbuf;
        return GW_ERROR;
    }
    struct rreq *rq = rreq_nfree > 0 ? rreq_free_list[--rreq_nfree] : malloc(sizeof(*rq));
    if (rq == NULL) {
        *err = "no memory";
        return GW_ERROR;
    }
    memset(rq, 0, sizeof(*rq));
    rq->x = x;
    rq->conn = c;
    c->refs++;
    rq->lop.cancel = rreq_cancel;
    gw_list_init(&rq->lop.link);
    ev_init(&rq->timer, timeout_cb);
    int off = 0;
    for (int i = 0; i < ncmds; i++) {
        long len = c->ac ? format_command(argc[i], argv + off, argvlen + off) : -1;
        if (len < 0 ||
            redisAsyncFormattedCommand(c->ac, reply_cb, rq, fmt_buf, (size_t)len) != REDIS_OK)
            break;
        rq->pending++;
        rq->ncmds++;
        off += argc[i];
    }
    if (rq->pending == 0) {
        rreq_free(rq);
        *err = "closed";
        return GW_ERROR;
    }
    /* commands that could not be queued (connection failing) are not
     * counted: the ones queued get NULL replies and the batch fails */
    gw_lop_add(x, &rq->lop);
    if (timeout_ms > 0) {
        ev_timer_set(&rq->timer, timeout_ms / 1000.0, 0);
        ev_timer_start(gw_worker->loop, &rq->timer);
    }
    x->waiting = 1;
    return GW_AGAIN;
}

static void resolve_cancel(struct gw_lop *op)
{
    struct resolve_op *ro = gw_container_of(op, struct resolve_op, lop);
    gw_list_remove(&ro->dw.link);
    free(ro);
}

static void resolve_cb(struct gw_dns_waiter *dw)
{
    struct resolve_op *ro = gw_container_of(dw, struct resolve_op, dw);
    struct gw_lctx *x = ro->x;
    gw_lop_remove(&ro->lop);
    free(ro);
    gw_lua_wake(x, 0);
}

int gw_ffi_redis_resolve(struct gw_lctx *x, const char *host, char *ip, size_t iplen,
                         const char **err)
{
    struct gw_dns_entry *e = gw_dns_get(host);
    if (e == NULL) {
        *err = "no memory";
        return GW_ERROR;
    }
    struct sockaddr_storage sa;
    socklen_t len;
    int rc = gw_dns_addr(e, 0, &sa, &len);
    if (rc == GW_ERROR) {
        *err = "host not found";
        return GW_ERROR;
    }
    if (rc == GW_OK) {
        /* the last address's text is kept: inet_ntop formats with sprintf,
         * 1,700 instructions on every command to the same Redis */
        static int last_family;
        static unsigned char last_addr[16];
        static char last_ip[INET6_ADDRSTRLEN];
        const void *a = sa.ss_family == AF_INET
                            ? (const void *)&((struct sockaddr_in *)&sa)->sin_addr
                            : (const void *)&((struct sockaddr_in6 *)&sa)->sin6_addr;
        size_t alen = sa.ss_family == AF_INET ? 4 : 16;
        if (sa.ss_family != last_family || memcmp(a, last_addr, alen) != 0) {
            if (inet_ntop(sa.ss_family, a, last_ip, sizeof(last_ip)) == NULL) {
                last_family = 0;
                *err = "bad address";
                return GW_ERROR;
            }
            memcpy(last_addr, a, alen);
            last_family = sa.ss_family;
        }
        size_t n = strlen(last_ip);
        if (n >= iplen) {
            *err = "bad address";
            return GW_ERROR;
        }
        memcpy(ip, last_ip, n + 1);
        return GW_OK;
    }
    if (x == NULL || x->waiting) {
        *err = "no request";
        return GW_ERROR;
    }
    struct resolve_op *ro = calloc(1, sizeof(*ro));
    if (ro == NULL) {
        *err = "no memory";
        return GW_ERROR;
    }
    ro->x = x;
    ro->lop.cancel = resolve_cancel;
    ro->dw.cb = resolve_cb;
    gw_dns_wait_cb(e, &ro->dw);
    gw_lop_add(x, &ro->lop);
    x->waiting = 1;
    return GW_AGAIN;
}

int gw_ffi_redis_conn_count(void)
{
    return nconns;
}
