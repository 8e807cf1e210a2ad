#include <arpa/inet.h>
#include <errno.h>
#include <ev.h>
#include <netdb.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "gw/core-t.h"
#include "gw/dns.h"
#include "gw/log.h"
#include "gw/worker-t.h"

#define MAX_ADDRS 8

enum { DNS_NEW, DNS_PENDING, DNS_OK, DNS_FAILED };

struct gw_dns_entry {
    struct gw_dns_entry *next;     /* cache chain */
    struct gw_dns_entry *job_next; /* resolver queue */
    char *name;
    int state;
    int refreshing;
    int literal;
    struct sockaddr_storage addr[MAX_ADDRS];
    socklen_t addrlen[MAX_ADDRS];
    int naddrs;
    unsigned rr;
    double resolved_at;
    /* filled by the resolver thread, read by the loop after the async */
    struct sockaddr_storage r_addr[MAX_ADDRS];
    socklen_t r_addrlen[MAX_ADDRS];
    int r_naddrs;
    int r_error;
    struct gw_list waiters;    /* the proxy's (gw_dns_ready_cb) */
    struct gw_list cb_waiters; /* struct gw_dns_waiter */
};

static struct gw_dns_entry *cache;
static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t cv = PTHREAD_COND_INITIALIZER;
static struct gw_dns_entry *jobs, *done;
static ev_async notify;
static int started;

static void *resolver_main(void *arg)
{
    for (;;) {
        pthread_mutex_lock(&mu);
        while (jobs == NULL)
            pthread_cond_wait(&cv, &mu);
        struct gw_dns_entry *e = jobs;
        jobs = e->job_next;
        pthread_mutex_unlock(&mu);

        struct addrinfo hints, *res = NULL;
        memset(&hints, 0, sizeof(hints));
        hints.ai_family = AF_UNSPEC;
        hints.ai_socktype = SOCK_STREAM;
        int rc = getaddrinfo(e->name, NULL, &hints, &res);
        e->r_naddrs = 0;
        e->r_error = rc;
        for (struct addrinfo *ai = res; ai && e->r_naddrs < MAX_ADDRS; ai = ai->ai_next) {
            memcpy(&e->r_addr[e->r_naddrs], ai->ai_addr, ai->ai_addrlen);
            e->r_addrlen[e->r_naddrs++] = ai->ai_addrlen;
        }
        if (res)
            freeaddrinfo(res);

        pthread_mutex_lock(&mu);
        e->job_next = done;
        done = e;
        pthread_mutex_unlock(&mu);
        ev_async_send(gw_worker->loop, &notify);
    }
    return NULL;
}

static void finish(struct gw_dns_entry *e)
{
    e->refreshing = 0;
    if (e->r_error == 0 && e->r_naddrs > 0) {
        memcpy(e->addr, e->r_addr, sizeof(e->addr));
        memcpy(e->addrlen, e->r_addrlen, sizeof(e->addrlen));
        e->naddrs = e->r_naddrs;
        e->state = DNS_OK;
    } else {
        gw_log(GW_LOG_ERR, "could not resolve \"%s\": %s%s", e->name, gai_strerror(e->r_error),
               e->naddrs ? " (keeping the last good addresses)" : "");
        e->state = e->naddrs ? DNS_OK : DNS_FAILED;
    }
    e->resolved_at = ev_now(gw_worker->loop);
    while (!gw_list_empty(&e->waiters)) {
        struct gw_list *l = e->waiters.next;
        gw_list_remove(l);
        gw_dns_ready_cb(l);
    }
    while (!gw_list_empty(&e->cb_waiters)) {
        struct gw_dns_waiter *w = gw_container_of(e->cb_waiters.next, struct gw_dns_waiter, link);
        gw_list_remove(&w->link);
        w->cb(w);
    }
}

static void notify_cb(struct ev_loop *loop, ev_async *w, int revents)
{
    pthread_mutex_lock(&mu);
    struct gw_dns_entry *list = done;
    done = NULL;
    pthread_mutex_unlock(&mu);
    while (list) {
        struct gw_dns_entry *e = list;
        list = e->job_next;
        finish(e);
    }
}

int gw_dns_init(void)
{
    ev_async_init(&notify, notify_cb);
    ev_async_start(gw_worker->loop, &notify);
    ev_unref(gw_worker->loop); /* the resolver alone does not keep the loop alive */
    pthread_t t;
    pthread_attr_t attr;
    pthread_attr_init(&attr);
    pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
    pthread_attr_setstacksize(&attr, 256 * 1024);
    int rc = pthread_create(&t, &attr, resolver_main, NULL);
    pthread_attr_destroy(&attr);
    if (rc != 0) {
        gw_log(GW_LOG_EMERG, "pthread_create() failed for the resolver: %s", strerror(rc));
        return -1;
    }
    started = 1;
    return 0;
}

static void submit(struct gw_dns_entry *e)
{
    pthread_mutex_lock(&mu);
    e->job_next = jobs;
    jobs = e;
    pthread_cond_signal(&cv);
    pthread_mutex_unlock(&mu);
}

struct gw_dns_entry *gw_dns_get(const char *host)
{
    for (struct gw_dns_entry *e = cache; e; e = e->next)
        if (strcmp(e->name, host) == 0)
            return e;
    struct gw_dns_entry *e = calloc(1, sizeof(*e));
    if (e == NULL)
        return NULL;
    e->name = strdup(host);
    if (e->name == NULL) {
        free(e);
        return NULL;
    }
    gw_list_init(&e->waiters);
    gw_list_init(&e->cb_waiters);
    struct sockaddr_in *s4 = (struct sockaddr_in *)&e->addr[0];
    struct sockaddr_in6 *s6 = (struct sockaddr_in6 *)&e->addr[0];
    const char *h = host;
    char tmp[64];
    size_t hl = strlen(host);
    if (hl > 2 && hl < sizeof(tmp) && host[0] == '[' && host[hl - 1] == ']') {
        memcpy(tmp, host + 1, hl - 2);
        tmp[hl - 2] = '\0';
        h = tmp;
    }
    if (inet_pton(AF_INET, h, &s4->sin_addr) == 1) {
        s4->sin_family = AF_INET;
        e->addrlen[0] = sizeof(*s4);
        e->naddrs = 1;
        e->literal = 1;
        e->state = DNS_OK;
    } else if (inet_pton(AF_INET6, h, &s6->sin6_addr) == 1) {
        s6->sin6_family = AF_INET6;
        e->addrlen[0] = sizeof(*s6);
        e->naddrs = 1;
        e->literal = 1;
        e->state = DNS_OK;
    }
    e->next = cache;
    cache = e;
    return e;
}

int gw_dns_addr(struct gw_dns_entry *e, int port, struct sockaddr_storage *out, socklen_t *len)
{
    if (!e->literal && started) {
        if (e->state == DNS_NEW || e->state == DNS_FAILED) {
            if (e->state == DNS_NEW ||
                ev_now(gw_worker->loop) - e->resolved_at > 1.0) { /* retry failures each second */
                e->state = DNS_PENDING;
                e->refreshing = 1;
                submit(e);
                return GW_AGAIN;
            }
            return GW_ERROR;
        }
        if (e->state == DNS_PENDING)
            return GW_AGAIN;
        if (!e->refreshing && ev_now(gw_worker->loop) - e->resolved_at > GW_DNS_TTL) {
            e->refreshing = 1; /* keep serving the current addresses meanwhile */
            submit(e);
        }
    }
    if (e->naddrs == 0)
        return GW_ERROR;
    int i = (int)(e->rr++ % (unsigned)e->naddrs);
    memcpy(out, &e->addr[i], e->addrlen[i]);
    *len = e->addrlen[i];
    if (out->ss_family == AF_INET)
        ((struct sockaddr_in *)out)->sin_port = htons((uint16_t)port);
    else
        ((struct sockaddr_in6 *)out)->sin6_port = htons((uint16_t)port);
    return GW_OK;
}

void gw_dns_wait(struct gw_dns_entry *e, struct gw_list *link)
{
    gw_list_insert_tail(&e->waiters, link);
}

void gw_dns_wait_cb(struct gw_dns_entry *e, struct gw_dns_waiter *w)
{
    gw_list_insert_tail(&e->cb_waiters, &w->link);
}
