/* Cosockets (see gw/cosocket.h). Each socket has at most one operation
 * under way; when it finishes, its result goes to the coroutine if it is
 * waiting for that socket (gw_lua_wake), or is kept (done) for the next
 * gw_ffi_sock_wait. A wait is a struct gw_lop attached to the coroutine, so
 * that an aborted request never gets resumed; a socket is one too, so that
 * it is closed with its request. */
#include <errno.h>
#include <ev.h>
#include <lua.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <openssl/ssl.h>
#include <openssl/x509_vfy.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "gw/core-t.h"
#include "gw/cosocket.h"
#include "gw/dns.h"
#include "gw/log.h"
#include "gw/lua_req.h"
#include "gw/settings-t.h"
#include "gw/tls_client.h"
#include "gw/worker-t.h"

#define SLOT_BITS 20
#define SLOT_MAX (1 << SLOT_BITS)
#define GEN_MASK 0x7ff
#define RBUF_SIZE 16384

enum { OP_NONE, OP_CONNECT, OP_SEND, OP_RECV, OP_HANDSHAKE };
enum { S_NEW, S_CONNECTING, S_OPEN };

struct sock_wait;

struct gw_sock {
    int id;
    int fd;                  /* -1 until connect */
    int state;
    int op;                  /* operation under way */
    int done;                /* an operation finished with nobody waiting */
    int rc;                  /* its result (GW_OK, GW_ERROR) */
    const char *err;         /* static text when rc is GW_ERROR */
    struct gw_lctx *owner;
    struct gw_lop lop;       /* closes the socket when the owner's request ends */
    struct sock_wait *w;     /* the wait that includes this socket */
    ev_io io;
    ev_timer timer;          /* timeout of the operation */
    struct gw_dns_waiter dns;
    struct gw_dns_entry *dnse;
    int port;
    const char *sp;          /* unsent bytes: the caller's string */
    size_t sn;
    char *rbuf;              /* RBUF_SIZE bytes once the socket reads */
    char *key;               /* keepalive pool key */
    unsigned reused;         /* times taken from the pool */
    struct ssl_st *ssl;      /* after sslhandshake: all I/O goes through it */
    char *tls_name;          /* its server name ("" when none) */
    int tls_verify;          /* the certificate was verified */
    int want;                /* EV_READ/EV_WRITE the TLS operation waits for */
    char errbuf[160];        /* err text that needs formatting */
};

struct sock_wait {
    struct gw_lop lop;
    struct gw_lctx *x;
    int n;
    int ids[];
};

/* The keepalive pool: buckets by key, idle connections newest first. */
struct pool_bucket {
    struct pool_bucket *next;
    char *key;
    struct gw_list idle;
    int n;
};

struct idle_conn {
    struct gw_list link;
    struct pool_bucket *b;
    int fd;
    unsigned reused;
    struct ssl_st *ssl; /* a TLS connection, pooled under its identity */
    char *tls_name;
    int tls_verify;
    ev_io io;      /* readable while idle: the peer closed (or misbehaves) */
    ev_timer t;    /* idle timeout */
};

static struct gw_sock **slots;
static unsigned short *gens;
static int nslots;
static int *free_slots; /* FIFO ring: a slot's reuse is as late as possible */
static int free_head, free_count, free_cap;
static struct pool_bucket *buckets;
static int nidle;

static const char *errtext(int e)
{
    switch (e) {
    case ECONNREFUSED:
        return "connection refused";
    case ECONNRESET:
    case EPIPE:
        return "closed";
    case ETIMEDOUT:
        return "timeout";
    case ENETUNREACH:
        return "network unreachable";
    case EHOSTUNREACH:
        return "no route to host";
    case EMFILE:
    case ENFILE:
        return "too many open files";
    case ENOMEM:
    case ENOBUFS:
        return "no memory";
    default:
        return strerror(e); /* glibc: static text for known errors */
    }
}

static struct gw_sock *sock_get(int id)
{
    if (id < 0)
        return NULL;
    int slot = id & (SLOT_MAX - 1);
    if (slot >= nslots || slots[slot] == NULL || slots[slot]->id != id)
        return NULL;
    return slots[slot];
}

/* A free slot index, or -1. */
static int slot_alloc(void)
{
    if (free_count > 0) {
        int s = free_slots[free_head];
        free_head = (free_head + 1) % free_cap;
        free_count--;
        return s;
    }
    if (nslots >= SLOT_MAX)
        return -1;
    if (nslots % 256 == 0) {
        int cap = nslots + 256;
        struct gw_sock **ns = realloc(slots, cap * sizeof(*ns));
        if (ns == NULL)
            return -1;
        slots = ns;
        unsigned short *ng = realloc(gens, cap * sizeof(*ng));
        if (ng == NULL)
            return -1;
        gens = ng;
        int *nf = malloc(cap * sizeof(*nf));
        if (nf == NULL)
            return -1;
        for (int i = 0; i < free_count; i++) /* free_count is 0 here */
            nf[i] = free_slots[(free_head + i) % free_cap];
        free(free_slots);
        free_slots = nf;
        free_head = 0;
        free_cap = cap;
    }
    gens[nslots] = 0;
    slots[nslots] = NULL;
    return nslots++;
}

static void slot_release(int slot)
{
    slots[slot] = NULL;
    gens[slot] = (gens[slot] + 1) & GEN_MASK;
    free_slots[(free_head + free_count) % free_cap] = slot;
    free_count++;
}

static void sock_free(struct gw_sock *s)
{
    ev_io_stop(gw_worker->loop, &s->io);
    ev_timer_stop(gw_worker->loop, &s->timer);
    gw_list_remove(&s->dns.link);
    gw_lop_remove(&s->lop);
    gw_tls_client_close(s->ssl);
    free(s->tls_name);
    if (s->fd != -1)
        close(s->fd);
    free(s->rbuf);
    free(s->key);
    slot_release(s->id & (SLOT_MAX - 1));
    free(s);
}

static void sock_cancel(struct gw_lop *op)
{
    sock_free(gw_container_of(op, struct gw_sock, lop));
}

static void wait_detach(struct sock_wait *w)
{
    for (int i = 0; i < w->n; i++) {
        struct gw_sock *s = sock_get(w->ids[i]);
        if (s && s->w == w)
            s->w = NULL;
    }
    gw_lop_remove(&w->lop);
}

static void wait_cancel(struct gw_lop *op)
{
    struct sock_wait *w = gw_container_of(op, struct sock_wait, lop);
    wait_detach(w);
    free(w);
}

/* The operation under way on s finished. Resumes its waiter, if any: the
 * last thing done, since the resumed request may end and free s. */
static void op_done(struct gw_sock *s, int rc, const char *err)
{
    ev_io_stop(gw_worker->loop, &s->io);
    ev_timer_stop(gw_worker->loop, &s->timer);
    gw_list_remove(&s->dns.link);
    s->op = OP_NONE;
    s->sp = NULL;
    s->sn = 0;
    struct sock_wait *w = s->w;
    if (w == NULL) {
        s->done = 1;
        s->rc = rc;
        s->err = err;
        return;
    }
    struct gw_lctx *x = w->x;
    wait_detach(w);
    free(w);
    lua_pushinteger(x->co, s->id);
    lua_pushinteger(x->co, rc);
    if (rc == GW_OK)
        lua_pushnil(x->co);
    else
        lua_pushstring(x->co, err);
    gw_lua_wake(x, 3);
}

static void op_start(struct gw_sock *s, int op, int timeout_ms)
{
    s->op = op;
    s->done = 0;
    if (timeout_ms > 0) {
        ev_timer_set(&s->timer, timeout_ms / 1000.0, 0);
        ev_timer_start(gw_worker->loop, &s->timer);
    }
}

static void timer_cb(struct ev_loop *loop, ev_timer *t, int revents)
{
    struct gw_sock *s = gw_container_of(t, struct gw_sock, timer);
    op_done(s, GW_ERROR, "timeout");
}

static int do_send(struct gw_sock *s, const char **err)
{
    s->want = EV_WRITE;
    while (s->sn > 0) {
        ssize_t k = s->ssl ? gw_tls_client_write(s->ssl, s->sp, s->sn, &s->want)
                           : send(s->fd, s->sp, s->sn, MSG_NOSIGNAL);
        if (k == -1) {
            if (errno == EINTR)
                continue;
            if (errno == EAGAIN || errno == EWOULDBLOCK)
                return GW_AGAIN;
            if (s->ssl && errno == EPROTO) {
                gw_log(GW_LOG_INFO, "cosocket SSL_write() failed: %s", gw_tls_client_error());
                *err = "closed";
                return GW_ERROR;
            }
            *err = errtext(errno);
            return GW_ERROR;
        }
        s->sp += k;
        s->sn -= (size_t)k;
    }
    return GW_OK;
}

/* Watches s->fd for ev only (the TLS wait may change direction). */
static void watch(struct gw_sock *s, int ev)
{
    if (ev_is_active(&s->io) && (s->io.events & (EV_READ | EV_WRITE)) == ev)
        return;
    ev_io_stop(gw_worker->loop, &s->io);
    ev_io_set(&s->io, s->fd, ev);
    ev_io_start(gw_worker->loop, &s->io);
}

/* One step of the handshake: GW_OK, GW_AGAIN (s->want), GW_ERROR with
 * lua-nginx-module's texts: "NN: reason" for a refused certificate,
 * "certificate host mismatch", "handshake failed". */
static int handshake_step(struct gw_sock *s, const char **err)
{
    char what[400];
    long vr;
    int rc = gw_tls_client_handshake(s->ssl, &s->want, what, sizeof(what), &vr);
    if (rc != GW_ERROR)
        return rc;
    gw_log(GW_LOG_INFO, "cosocket TLS handshake with %s failed: %s",
           s->tls_name[0] ? s->tls_name : "(no name)", what);
    if (vr == X509_V_ERR_HOSTNAME_MISMATCH || vr == X509_V_ERR_IP_ADDRESS_MISMATCH)
        *err = "certificate host mismatch";
    else if (vr) {
        snprintf(s->errbuf, sizeof(s->errbuf), "%ld: %s", vr,
                 X509_verify_cert_error_string(vr));
        *err = s->errbuf;
    } else {
        *err = "handshake failed";
    }
    return GW_ERROR;
}

static void io_cb(struct ev_loop *loop, ev_io *io, int revents)
{
    struct gw_sock *s = gw_container_of(io, struct gw_sock, io);
    const char *err = NULL;
    switch (s->op) {
    case OP_CONNECT: {
        int e = 0;
        socklen_t len = sizeof(e);
        if (getsockopt(s->fd, SOL_SOCKET, SO_ERROR, &e, &len) == -1)
            e = errno;
        if (e != 0) {
            op_done(s, GW_ERROR, errtext(e));
            return;
        }
        s->state = S_OPEN;
        op_done(s, GW_OK, NULL);
        return;
    }
    case OP_SEND: {
        int rc = do_send(s, &err);
        if (rc != GW_AGAIN)
            op_done(s, rc, err);
        return;
    }
    case OP_RECV:
        op_done(s, GW_OK, NULL); /* readable: the caller reads */
        return;
    case OP_HANDSHAKE: {
        int rc = handshake_step(s, &err);
        if (rc != GW_AGAIN)
            op_done(s, rc, err);
        else
            watch(s, s->want);
        return;
    }
    default:
        ev_io_stop(loop, io);
    }
}

int gw_ffi_sock_open(struct gw_lctx *x, const char **err)
{
    if (x == NULL || gw_worker == NULL) {
        *err = "no request";
        return GW_ERROR;
    }
    struct gw_sock *s = calloc(1, sizeof(*s));
    int slot = s ? slot_alloc() : -1;
    if (slot == -1) {
        free(s);
        *err = "no memory";
        return GW_ERROR;
    }
    s->id = (gens[slot] << SLOT_BITS) | slot;
    s->fd = -1;
    s->owner = x;
    s->lop.cancel = sock_cancel;
    ev_init(&s->io, io_cb);
    ev_init(&s->timer, timer_cb);
    slots[slot] = s;
    gw_lop_add(x, &s->lop);
    return s->id;
}

/* Starts connecting s to sa: GW_OK, GW_AGAIN (watching), GW_ERROR. */
static int start_connect(struct gw_sock *s, struct sockaddr_storage *sa, socklen_t len,
                         const char **err)
{
    int fd = socket(sa->ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd == -1) {
        *err = errtext(errno);
        gw_log(GW_LOG_ERR, "socket() failed: %s", strerror(errno));
        return GW_ERROR;
    }
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    s->fd = fd;
    s->state = S_CONNECTING;
    if (connect(fd, (struct sockaddr *)sa, len) == 0) {
        s->state = S_OPEN;
        return GW_OK;
    }
    if (errno != EINPROGRESS) {
        *err = errtext(errno);
        return GW_ERROR;
    }
    ev_io_set(&s->io, fd, EV_WRITE);
    ev_io_start(gw_worker->loop, &s->io);
    return GW_AGAIN;
}

static void dns_cb(struct gw_dns_waiter *dw)
{
    struct gw_sock *s = gw_container_of(dw, struct gw_sock, dns);
    struct sockaddr_storage sa;
    socklen_t len;
    const char *err = "host not found";
    int rc = gw_dns_addr(s->dnse, s->port, &sa, &len);
    if (rc == GW_AGAIN) {
        gw_dns_wait_cb(s->dnse, &s->dns);
        return;
    }
    if (rc == GW_OK) {
        rc = start_connect(s, &sa, len, &err);
        if (rc == GW_AGAIN)
            return;
    }
    op_done(s, rc, err);
}

/* The pool key of a TLS connection: the socket's key (the user's pool name
 * or "host:port") with its server name and verification, so that a plain
 * connect never takes a TLS connection and a handshake only reuses one made
 * for the same name with the same verification. 0, or -1 when too long. */
static int tls_pool_key(const char *key, const char *name, int verify, char *out, size_t n)
{
    int k = snprintf(out, n, "%s\x1ftls\x1f%s\x1f%d", key, name ? name : "", verify);
    return k < 0 || (size_t)k >= n ? -1 : 0;
}

/* Moves a pooled connection for key into s: 1 when there was one. */
static int pool_take(struct gw_sock *s, const char *key)
{
    for (struct pool_bucket *b = buckets; b; b = b->next) {
        if (strcmp(b->key, key) != 0)
            continue;
        if (gw_list_empty(&b->idle))
            return 0;
        struct idle_conn *ic = gw_container_of(b->idle.next, struct idle_conn, link);
        gw_list_remove(&ic->link);
        b->n--;
        nidle--;
        ev_io_stop(gw_worker->loop, &ic->io);
        ev_timer_stop(gw_worker->loop, &ic->t);
        s->fd = ic->fd;
        s->reused = ic->reused + 1;
        s->state = S_OPEN;
        s->ssl = ic->ssl;
        s->tls_name = ic->tls_name;
        s->tls_verify = ic->tls_verify;
        free(ic);
        return 1;
    }
    return 0;
}

int gw_ffi_sock_connect(struct gw_lctx *x, int id, const char *host, int port, const char *key,
                        int timeout_ms, int *reused, const char **err)
{
    struct gw_sock *s = sock_get(id);
    *reused = 0;
    if (s == NULL || s->owner != x) {
        *err = "closed";
        return GW_ERROR;
    }
    if (s->state != S_NEW || s->op != OP_NONE) {
        *err = "already connected";
        return GW_ERROR;
    }
    if (port <= 0 || port > 65535) {
        *err = "bad port";
        return GW_ERROR;
    }
    free(s->key);
    s->key = strdup(key);
    if (s->key == NULL) {
        *err = "no memory";
        return GW_ERROR;
    }
    if (pool_take(s, key)) {
        *reused = (int)s->reused;
        return GW_OK;
    }
    s->dnse = gw_dns_get(host);
    if (s->dnse == NULL) {
        *err = "no memory";
        return GW_ERROR;
    }
    s->port = port;
    struct sockaddr_storage sa;
    socklen_t len;
    int rc = gw_dns_addr(s->dnse, port, &sa, &len);
    if (rc == GW_ERROR) {
        *err = "host not found";
        return GW_ERROR;
    }
    if (rc == GW_AGAIN) {
        s->state = S_CONNECTING;
        s->dns.cb = dns_cb;
        gw_dns_wait_cb(s->dnse, &s->dns);
    } else {
        rc = start_connect(s, &sa, len, err);
        if (rc != GW_AGAIN)
            return rc;
    }
    op_start(s, OP_CONNECT, timeout_ms);
    return GW_AGAIN;
}

int gw_ffi_sock_send(struct gw_lctx *x, int id, const char *p, size_t n, int timeout_ms,
                     const char **err)
{
    struct gw_sock *s = sock_get(id);
    if (s == NULL || s->owner != x || s->state != S_OPEN) {
        *err = "closed";
        return GW_ERROR;
    }
    if (s->op != OP_NONE) {
        *err = "socket busy";
        return GW_ERROR;
    }
    s->sp = p;
    s->sn = n;
    int rc = do_send(s, err);
    if (rc != GW_AGAIN) {
        s->sp = NULL;
        s->sn = 0;
        return rc;
    }
    watch(s, s->want);
    op_start(s, OP_SEND, timeout_ms);
    return GW_AGAIN;
}

int gw_ffi_sock_recv(struct gw_lctx *x, int id, size_t max, int timeout_ms, const char **p,
                     size_t *n, const char **err)
{
    struct gw_sock *s = sock_get(id);
    if (s == NULL || s->owner != x || s->state != S_OPEN) {
        *err = "closed";
        return GW_ERROR;
    }
    if (s->op != OP_NONE) {
        *err = "socket busy";
        return GW_ERROR;
    }
    if (s->rbuf == NULL && (s->rbuf = malloc(RBUF_SIZE)) == NULL) {
        *err = "no memory";
        return GW_ERROR;
    }
    if (max == 0 || max > RBUF_SIZE)
        max = RBUF_SIZE;
    s->want = EV_READ;
    for (;;) {
        ssize_t k = s->ssl ? gw_tls_client_read(s->ssl, s->rbuf, max, &s->want)
                           : recv(s->fd, s->rbuf, max, 0);
        if (k > 0) {
            *p = s->rbuf;
            *n = (size_t)k;
            return GW_OK;
        }
        if (k == 0)
            return GW_DONE;
        if (errno == EINTR)
            continue;
        if (errno == EAGAIN || errno == EWOULDBLOCK)
            break;
        if (errno == ECONNRESET)
            return GW_DONE;
        if (s->ssl && errno == EPROTO) {
            gw_log(GW_LOG_INFO, "cosocket SSL_read() failed: %s", gw_tls_client_error());
            *err = "closed";
            return GW_ERROR;
        }
        *err = errtext(errno);
        return GW_ERROR;
    }
    watch(s, s->want);
    op_start(s, OP_RECV, timeout_ms);
    return GW_AGAIN;
}

int gw_ffi_sock_wait(struct gw_lctx *x, const int *ids, int n, int *id, const char **err)
{
    if (x == NULL || x->waiting) {
        *err = "already waiting";
        return GW_ERROR;
    }
    int busy = 0;
    for (int i = 0; i < n; i++) {
        struct gw_sock *s = sock_get(ids[i]);
        if (s == NULL || s->owner != x)
            continue;
        if (s->done) {
            s->done = 0;
            *id = s->id;
            *err = s->err;
            return s->rc == GW_OK ? GW_OK : GW_ERROR;
        }
        if (s->op != OP_NONE)
            busy++;
    }
    if (busy == 0)
        return GW_DECLINED;
    struct sock_wait *w = malloc(sizeof(*w) + (size_t)n * sizeof(int));
    if (w == NULL) {
        *err = "no memory";
        return GW_ERROR;
    }
    w->x = x;
    w->n = n;
    w->lop.cancel = wait_cancel;
    gw_list_init(&w->lop.link);
    memcpy(w->ids, ids, (size_t)n * sizeof(int));
    for (int i = 0; i < n; i++) {
        struct gw_sock *s = sock_get(ids[i]);
        if (s && s->owner == x && s->op != OP_NONE)
            s->w = w;
    }
    gw_lop_add(x, &w->lop);
    x->waiting = 1;
    return GW_AGAIN;
}

int gw_ffi_sock_close(int id)
{
    struct gw_sock *s = sock_get(id);
    if (s == NULL)
        return GW_DECLINED;
    sock_free(s);
    return GW_OK;
}

/* ---- the keepalive pool ---- */

static void idle_free(struct idle_conn *ic)
{
    ev_io_stop(gw_worker->loop, &ic->io);
    ev_timer_stop(gw_worker->loop, &ic->t);
    gw_list_remove(&ic->link);
    ic->b->n--;
    nidle--;
    gw_tls_client_close(ic->ssl);
    free(ic->tls_name);
    close(ic->fd);
    free(ic);
}

static void idle_io_cb(struct ev_loop *loop, ev_io *io, int revents)
{
    idle_free(gw_container_of(io, struct idle_conn, io));
}

static void idle_timer_cb(struct ev_loop *loop, ev_timer *t, int revents)
{
    idle_free(gw_container_of(t, struct idle_conn, t));
}

static struct pool_bucket *bucket_get(const char *key)
{
    for (struct pool_bucket *b = buckets; b; b = b->next)
        if (strcmp(b->key, key) == 0)
            return b;
    struct pool_bucket *b = calloc(1, sizeof(*b));
    if (b == NULL || (b->key = strdup(key)) == NULL) {
        free(b);
        return NULL;
    }
    gw_list_init(&b->idle);
    b->next = buckets;
    buckets = b;
    return b;
}

int gw_ffi_sock_keepalive(int id, int timeout_ms, int pool_size, const char **err)
{
    struct gw_sock *s = sock_get(id);
    if (s == NULL || s->state != S_OPEN || s->fd == -1) {
        *err = "closed";
        return GW_ERROR;
    }
    if (s->op != OP_NONE) {
        *err = "socket busy";
        return GW_ERROR;
    }
    char c;
    int want;
    /* TLS: records that are not data (a late session ticket) are taken in
     * here; data left unread, or the peer's close, refuse the pooling */
    ssize_t k = s->ssl ? gw_tls_client_peek(s->ssl, &c, 1, &want)
                       : recv(s->fd, &c, 1, MSG_PEEK | MSG_DONTWAIT);
    if (k != -1 || (errno != EAGAIN && errno != EWOULDBLOCK)) {
        *err = k > 0 ? "unread data in buffer" : "closed";
        sock_free(s);
        return GW_ERROR;
    }
    /* a TLS connection goes to the pool of its identity, never to the
     * plain one of its key: see tls_pool_key */
    char tkey[1024];
    const char *key = s->key ? s->key : "";
    if (s->ssl) {
        if (tls_pool_key(key, s->tls_name, s->tls_verify, tkey, sizeof(tkey)) != 0) {
            *err = "pool name too long";
            sock_free(s);
            return GW_ERROR;
        }
        key = tkey;
    }
    struct pool_bucket *b = bucket_get(key);
    struct idle_conn *ic = b ? calloc(1, sizeof(*ic)) : NULL;
    if (ic == NULL) {
        *err = "no memory";
        sock_free(s);
        return GW_ERROR;
    }
    if (pool_size < 1)
        pool_size = 1;
    while (b->n >= pool_size) /* the oldest goes */
        idle_free(gw_container_of(b->idle.prev, struct idle_conn, link));
    ic->b = b;
    ic->fd = s->fd;
    ic->reused = s->reused;
    ic->ssl = s->ssl;
    ic->tls_name = s->tls_name;
    ic->tls_verify = s->tls_verify;
    s->ssl = NULL;
    s->tls_name = NULL;
    s->fd = -1;
    sock_free(s);
    ev_io_init(&ic->io, idle_io_cb, ic->fd, EV_READ);
    ev_io_start(gw_worker->loop, &ic->io);
    ev_init(&ic->t, idle_timer_cb);
    if (timeout_ms > 0) {
        ev_timer_set(&ic->t, timeout_ms / 1000.0, 0);
        ev_timer_start(gw_worker->loop, &ic->t);
    }
    gw_list_insert_head(&b->idle, &ic->link);
    b->n++;
    nidle++;
    return GW_OK;
}

int gw_ffi_sock_pool_count(void)
{
    return nidle;
}

/* ---- TLS ---- */

static struct gw_tls_client *lua_tls; /* per worker, made at the first handshake */

/* The cosockets' client context: trusts lua_ssl_trusted_certificate (or the
 * system store); verification is chosen per handshake. NULL with *err. */
static struct gw_tls_client *lua_tls_get(const char **err)
{
    if (lua_tls)
        return lua_tls;
    struct gw_tls_client_conf cc = {0};
    char msg[400];
    cc.verify = 1; /* load the trusted CAs; each handshake sets its own mode */
    cc.depth = gw_settings.lua_ssl_verify_depth;
    cc.ca_file = gw_settings.lua_ssl_trusted_certificate;
    lua_tls = gw_tls_client_new(&cc, msg, sizeof(msg));
    if (lua_tls == NULL) {
        gw_log(GW_LOG_ERR, "cosockets: %s", msg);
        *err = "could not load the trusted CA certificates";
    }
    return lua_tls;
}

int gw_ffi_sock_sslhandshake(struct gw_lctx *x, int id, struct gw_tls_client_sess *sess,
                             const char *server_name, int verify, int status_req, int timeout_ms,
                             int *reused, const char **err)
{
    struct gw_sock *s = sock_get(id);
    const char *name = server_name ? server_name : "";
    *reused = 0;
    if (s == NULL || s->owner != x || s->state != S_OPEN || s->fd == -1) {
        *err = "closed";
        return GW_ERROR;
    }
    if (s->op != OP_NONE) {
        *err = "socket busy";
        return GW_ERROR;
    }
    verify = verify != 0;
    if (s->ssl) {
        /* from the pool of this identity, or a second call */
        if (strcmp(s->tls_name, name) == 0 && s->tls_verify == verify) {
            *reused = (int)s->reused;
            return GW_OK;
        }
        *err = "TLS already established for another server name";
        return GW_ERROR;
    }
    char tkey[1024];
    if (tls_pool_key(s->key ? s->key : "", name, verify, tkey, sizeof(tkey)) != 0) {
        *err = "pool name too long";
        return GW_ERROR;
    }
    /* a fresh connection, and one of this identity is idle in the pool: that
     * one serves (a TLS handshake costs more than the connect just made) */
    if (s->reused == 0) {
        int fd = s->fd;
        if (pool_take(s, tkey)) {
            close(fd);
            *reused = (int)s->reused;
            return GW_OK;
        }
    }
    struct gw_tls_client *t = lua_tls_get(err);
    if (t == NULL)
        return GW_ERROR;
    s->tls_name = strdup(name);
    if (s->tls_name == NULL) {
        *err = "no memory";
        return GW_ERROR;
    }
    s->tls_verify = verify;
    s->ssl = gw_tls_client_ssl(t, s->fd, name, verify, gw_tls_client_session_get(sess), err);
    if (s->ssl == NULL)
        return GW_ERROR;
    if (status_req)
        SSL_set_tlsext_status_type(s->ssl, TLSEXT_STATUSTYPE_ocsp);
    int rc = handshake_step(s, err);
    if (rc != GW_AGAIN)
        return rc;
    watch(s, s->want);
    op_start(s, OP_HANDSHAKE, timeout_ms);
    return GW_AGAIN;
}

struct gw_tls_client_sess *gw_ffi_sock_ssl_session(int id)
{
    struct gw_sock *s = sock_get(id);
    if (s == NULL || s->ssl == NULL)
        return NULL;
    return gw_tls_client_session_box(s->ssl);
}

void gw_ffi_ssl_session_free(struct gw_tls_client_sess *sess)
{
    gw_tls_client_session_release(sess);
}
