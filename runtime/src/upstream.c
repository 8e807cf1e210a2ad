/* Upstream connections and their keepalive pool. The pool is a hash of
 * address (and TLS identity) -> most-recently-used list of idle connections. An idle connection
 * watches for readability (the peer closed it, or sent bytes it should not
 * have) and for its idle timeout, and is closed on either. */
#include <errno.h>
#include <netinet/tcp.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "gw/buf.h"
#include "gw/core-t.h"
#include "gw/h2_up.h"
#include "gw/log.h"
#include "gw/settings-t.h"
#include "gw/tls_client.h"
#include "gw/upstream.h"
#include "gw/worker-t.h"

#define POOL_BUCKETS 256

static struct gw_list pool[POOL_BUCKETS];
static int pool_count[POOL_BUCKETS];
static int pool_ready;

static uint32_t addr_hash(const struct sockaddr *a, socklen_t len)
{
    const unsigned char *p = (const unsigned char *)a;
    uint32_t h = 2166136261u;
    for (socklen_t i = 0; i < len; i++)
        h = (h ^ p[i]) * 16777619u;
    return h;
}

/* The pool key of a TLS connection: its address's, mixed with the context
 * fingerprint (names are compared, not hashed: they are rarely distinct
 * for one address). */
static uint32_t tls_key(uint32_t key, uint64_t tls_id)
{
    return tls_id ? key ^ (uint32_t)(tls_id ^ (tls_id >> 32)) : key;
}

static int same_name(const char *a, const char *b)
{
    return a == b || (a && b && strcmp(a, b) == 0);
}

static void pool_init(void)
{
    for (int i = 0; i < POOL_BUCKETS; i++)
        gw_list_init(&pool[i]);
    pool_ready = 1;
}

void gw_upstream_free(struct gw_upstream *u)
{
    struct ev_loop *loop = gw_worker->loop;
    if (u->state == GW_U_IDLE) {
        gw_list_remove(&u->link);
        pool_count[u->key % POOL_BUCKETS]--;
    }
    ev_io_stop(loop, &u->io);
    ev_timer_stop(loop, &u->timer);
    if (u->ssl) {
        gw_tls_client_close(u->ssl);
        free(u->tls_name);
    }
    gw_h2up_free(u->h2);
    close(u->fd);
    gw_buf_free(&u->in);
    gw_buf_free(&u->out);
    free(u);
}

static void idle_io_cb(struct ev_loop *loop, ev_io *w, int revents)
{
    gw_upstream_free(gw_container_of(w, struct gw_upstream, io));
}

static void idle_timer_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
    gw_upstream_free(gw_container_of(w, struct gw_upstream, timer));
}

struct gw_upstream *gw_upstream_pool_get(const struct sockaddr *addr, socklen_t len,
                                         uint64_t tls_id, const char *tls_name, int h2)
{
    if (!pool_ready)
        pool_init();
    uint32_t key = tls_key(addr_hash(addr, len), tls_id);
    struct gw_list *h = &pool[key % POOL_BUCKETS];
    for (struct gw_list *l = h->next; l != h; l = l->next) {
        struct gw_upstream *u = gw_container_of(l, struct gw_upstream, link);
        if (u->key == key && u->addrlen == len && memcmp(&u->addr, addr, len) == 0 &&
            u->tls_id == tls_id && (tls_id == 0 || same_name(u->tls_name, tls_name)) &&
            (u->h2 != NULL) == (h2 != 0)) {
            gw_list_remove(l);
            pool_count[key % POOL_BUCKETS]--;
            /* the read watcher stays on (no epoll_ctl churn); the new owner
             * sets its callbacks and timer */
            u->state = GW_U_ACTIVE;
            u->reused = 1;
            return u;
        }
    }
    return NULL;
}

struct gw_upstream *gw_upstream_connect(const struct sockaddr *addr, socklen_t len)
{
    if (!pool_ready)
        pool_init();
    int fd = socket(addr->sa_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd == -1)
        return NULL;
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    struct gw_upstream *u = calloc(1, sizeof(*u));
    if (u == NULL) {
        close(fd);
        errno = ENOMEM;
        return NULL;
    }
    u->fd = fd;
    memcpy(&u->addr, addr, len);
    u->addrlen = len;
    u->key = addr_hash(addr, len);
    gw_list_init(&u->link);
    ev_io_init(&u->io, idle_io_cb, fd, 0);
    ev_init(&u->timer, idle_timer_cb);
    if (connect(fd, addr, len) == 0) {
        u->state = GW_U_ACTIVE;
    } else if (errno == EINPROGRESS) {
        u->state = GW_U_CONNECTING;
    } else {
        int saved = errno;
        close(fd);
        free(u);
        errno = saved;
        return NULL;
    }
    return u;
}

int gw_upstream_set_tls(struct gw_upstream *u, struct ssl_st *ssl, uint64_t tls_id,
                        const char *tls_name)
{
    u->ssl = ssl;
    u->tls_id = tls_id;
    u->key = tls_key(addr_hash((const struct sockaddr *)&u->addr, u->addrlen), tls_id);
    if (tls_name && (u->tls_name = strdup(tls_name)) == NULL)
        return GW_ERROR;
    return GW_OK;
}

void gw_upstream_keep(struct gw_upstream *u)
{
    struct ev_loop *loop = gw_worker->loop;
    int b = u->key % POOL_BUCKETS;
    u->client = NULL;
    if (gw_worker->stopping || pool_count[b] >= gw_settings.upstream_keepalive ||
        u->requests >= gw_settings.upstream_keepalive_requests ||
        (u->ssl && (u->tls_want || gw_tls_client_pending(u->ssl)))) {
        gw_upstream_free(u);
        return;
    }
    gw_buf_free(&u->in);
    gw_buf_free(&u->out);
    u->state = GW_U_IDLE;
    ev_set_cb(&u->io, idle_io_cb);
    if (u->events != EV_READ) {
        ev_io_stop(loop, &u->io);
        ev_io_set(&u->io, u->fd, EV_READ);
        ev_io_start(loop, &u->io);
        u->events = EV_READ;
    }
    ev_set_cb(&u->timer, idle_timer_cb);
    u->timer.repeat = gw_settings.upstream_keepalive_timeout / 1000.0;
    ev_timer_again(loop, &u->timer);
    gw_list_insert_head(&pool[b], &u->link);
    pool_count[b]++;
}

void gw_upstream_pool_drain(void)
{
    if (!pool_ready)
        return;
    for (int i = 0; i < POOL_BUCKETS; i++)
        while (!gw_list_empty(&pool[i]))
            gw_upstream_free(gw_container_of(pool[i].next, struct gw_upstream, link));
}
