#include <arpa/inet.h>
#include <errno.h>
#include <ev.h>
#include <arpa/nameser.h>
#include <netdb.h>
#include <resolv.h>
#include <stdio.h>
#include <strings.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "gw/core-t.h"
#include "gw/dns.h"
#include "gw/log.h"
#include "gw/settings-t.h"
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
    int srv;                       /* SRV lookup: addresses carry their own ports */
    int srv_found;                 /* the last lookup found SRV records */
    double ttl;                    /* seconds until a refresh */
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
    double r_ttl;
    int r_srv_found;
    char r_errmsg[96];
    struct gw_list waiters;    /* the proxy's (gw_dns_ready_cb) */
    struct gw_list cb_waiters; /* struct gw_dns_waiter */
};

static struct gw_dns_entry *cache;
static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t cv = PTHREAD_COND_INITIALIZER;
static struct gw_dns_entry *jobs, *done;
static ev_async notify;
static int started;

/* ---- the resolver thread ----
 * Names are looked up in /etc/hosts first (through getaddrinfo with the
 * hosts database only is not available, so a small parser), then with DNS
 * queries (res_nquery) that give TTLs: A and AAAA, or SRV for targets given
 * without a port. When DNS gives nothing, getaddrinfo() has the last word
 * (nsswitch), with the default TTL. --dns-resolver picks the server. */

static struct __res_state rs;
static int rs_ready;

static void rs_init(void)
{
    if (rs_ready)
        return;
    memset(&rs, 0, sizeof(rs));
    res_ninit(&rs);
    rs.retrans = 1; /* seconds; a dead server must not hold names for long */
    rs.retry = 2;
    if (gw_settings.dns_resolver[0]) {
        struct sockaddr_in sa;
        memset(&sa, 0, sizeof(sa));
        sa.sin_family = AF_INET;
        char host[64];
        snprintf(host, sizeof(host), "%s", gw_settings.dns_resolver);
        char *colon = strrchr(host, ':');
        int port = 53;
        if (colon) {
            *colon = '\0';
            port = atoi(colon + 1);
        }
        if (inet_pton(AF_INET, host, &sa.sin_addr) == 1) {
            sa.sin_port = htons((uint16_t)port);
            rs.nsaddr_list[0] = sa;
            rs.nscount = 1;
        }
    }
    rs_ready = 1;
}

static void add_addr(struct gw_dns_entry *e, int family, const void *a, int port)
{
    if (e->r_naddrs >= MAX_ADDRS)
        return;
    struct sockaddr_storage *ss = &e->r_addr[e->r_naddrs];
    memset(ss, 0, sizeof(*ss));
    if (family == AF_INET) {
        struct sockaddr_in *s4 = (struct sockaddr_in *)ss;
        s4->sin_family = AF_INET;
        memcpy(&s4->sin_addr, a, 4);
        s4->sin_port = htons((uint16_t)port);
        e->r_addrlen[e->r_naddrs++] = sizeof(*s4);
    } else {
        struct sockaddr_in6 *s6 = (struct sockaddr_in6 *)ss;
        s6->sin6_family = AF_INET6;
        memcpy(&s6->sin6_addr, a, 16);
        s6->sin6_port = htons((uint16_t)port);
        e->r_addrlen[e->r_naddrs++] = sizeof(*s6);
    }
}

/* /etc/hosts: 1 when name is there (addresses added). */
static int hosts_lookup(struct gw_dns_entry *e, const char *name, int port)
{
    FILE *f = fopen("/etc/hosts", "re");
    if (f == NULL)
        return 0;
    char line[512];
    int found = 0;
    while (fgets(line, sizeof(line), f)) {
        char *hash = strchr(line, '#');
        if (hash)
            *hash = '\0';
        char *save = NULL;
        char *addr = strtok_r(line, " \t\r\n", &save);
        if (addr == NULL)
            continue;
        for (char *n = strtok_r(NULL, " \t\r\n", &save); n; n = strtok_r(NULL, " \t\r\n", &save)) {
            if (strcasecmp(n, name) != 0)
                continue;
            unsigned char buf[16];
            if (inet_pton(AF_INET, addr, buf) == 1)
                add_addr(e, AF_INET, buf, port), found = 1;
            else if (inet_pton(AF_INET6, addr, buf) == 1)
                add_addr(e, AF_INET6, buf, port), found = 1;
        }
    }
    fclose(f);
    return found;
}

/* One DNS query of type (ns_t_a, ns_t_aaaa): addresses with port. Returns
 * the smallest TTL seen, or -1 when nothing came back. */
static long query_addrs(struct gw_dns_entry *e, const char *name, int type, int port)
{
    unsigned char ans[4096];
    int n = res_nquery(&rs, name, ns_c_in, type, ans, sizeof(ans));
    if (n < 0)
        return -1;
    ns_msg msg;
    if (ns_initparse(ans, n, &msg) < 0)
        return -1;
    long ttl = -1;
    int count = ns_msg_count(msg, ns_s_an);
    for (int i = 0; i < count; i++) {
        ns_rr rr;
        if (ns_parserr(&msg, ns_s_an, i, &rr) < 0)
            continue;
        if (ns_rr_type(rr) == ns_t_a && ns_rr_rdlen(rr) == 4)
            add_addr(e, AF_INET, ns_rr_rdata(rr), port);
        else if (ns_rr_type(rr) == ns_t_aaaa && ns_rr_rdlen(rr) == 16)
            add_addr(e, AF_INET6, ns_rr_rdata(rr), port);
        else
            continue;
        if (ttl < 0 || (long)ns_rr_ttl(rr) < ttl)
            ttl = (long)ns_rr_ttl(rr);
    }
    return ttl;
}

/* SRV records of name: the lowest priority's targets, each resolved. */
static long query_srv(struct gw_dns_entry *e, const char *name)
{
    unsigned char ans[4096];
    int n = res_nquery(&rs, name, ns_c_in, ns_t_srv, ans, sizeof(ans));
    if (n < 0)
        return -1;
    ns_msg msg;
    if (ns_initparse(ans, n, &msg) < 0)
        return -1;
    int count = ns_msg_count(msg, ns_s_an);
    int best = 1 << 30;
    for (int pass = 0; pass < 2; pass++) {
        for (int i = 0; i < count; i++) {
            ns_rr rr;
            if (ns_parserr(&msg, ns_s_an, i, &rr) < 0 || ns_rr_type(rr) != ns_t_srv ||
                ns_rr_rdlen(rr) < 7)
                continue;
            const unsigned char *d = ns_rr_rdata(rr);
            int prio = (d[0] << 8) | d[1];
            if (pass == 0) {
                if (prio < best)
                    best = prio;
                continue;
            }
            if (prio != best)
                continue;
            int port = (d[4] << 8) | d[5];
            char target[NS_MAXDNAME];
            if (ns_name_uncompress(ns_msg_base(msg), ns_msg_end(msg), d + 6, target,
                                   sizeof(target)) < 0)
                continue;
            if (!hosts_lookup(e, target, port)) {
                query_addrs(e, target, ns_t_a, port);
                query_addrs(e, target, ns_t_aaaa, port);
            }
        }
    }
    return e->r_naddrs ? (long)GW_DNS_TTL : -1;
}

static void lookup(struct gw_dns_entry *e)
{
    rs_init();
    e->r_naddrs = 0;
    e->r_error = 0;
    e->r_ttl = GW_DNS_TTL;
    e->r_srv_found = 0;
    e->r_errmsg[0] = '\0';
    if (e->srv) {
        long ttl = query_srv(e, e->name);
        if (e->r_naddrs) {
            e->r_srv_found = 1;
            e->r_ttl = ttl > 0 ? (double)ttl : GW_DNS_TTL;
            return;
        }
    }
    if (hosts_lookup(e, e->name, 0))
        return;
    long t4 = query_addrs(e, e->name, ns_t_a, 0);
    long t6 = query_addrs(e, e->name, ns_t_aaaa, 0);
    if (e->r_naddrs) {
        long ttl = t4 >= 0 && (t6 < 0 || t4 < t6) ? t4 : t6;
        e->r_ttl = ttl >= 0 ? (double)ttl : GW_DNS_TTL;
        return;
    }
    if (gw_settings.dns_resolver[0]) { /* the operator's server had the last word */
        e->r_error = EAI_NONAME;
        snprintf(e->r_errmsg, sizeof(e->r_errmsg), "no answer from %s",
                 gw_settings.dns_resolver);
        return;
    }
    /* nsswitch's answer (mdns, ...) when DNS had none */
    struct addrinfo hints, *res = NULL;
    memset(&hints, 0, sizeof(hints));
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    int rc = getaddrinfo(e->name, NULL, &hints, &res);
    for (struct addrinfo *ai = res; ai && e->r_naddrs < MAX_ADDRS; ai = ai->ai_next) {
        memcpy(&e->r_addr[e->r_naddrs], ai->ai_addr, ai->ai_addrlen);
        e->r_addrlen[e->r_naddrs++] = ai->ai_addrlen;
    }
    if (res)
        freeaddrinfo(res);
    if (e->r_naddrs == 0) {
        e->r_error = rc ? rc : EAI_NONAME;
        snprintf(e->r_errmsg, sizeof(e->r_errmsg), "%s", gai_strerror(e->r_error));
    }
}

static void *resolver_main(void *arg)
{
    for (;;) {
        pthread_mutex_lock(&mu);
        while (jobs == NULL)
            pthread_cond_wait(&cv, &mu);
        struct gw_dns_entry *e = jobs;
        jobs = e->job_next;
        pthread_mutex_unlock(&mu);

        lookup(e);

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
        e->srv_found = e->r_srv_found;
        e->ttl = e->r_ttl < 1 ? 1 : e->r_ttl > 3600 ? 3600 : e->r_ttl;
        e->state = DNS_OK;
    } else {
        gw_log(GW_LOG_ERR, "could not resolve \"%s\": %s%s", e->name,
               e->r_errmsg[0] ? e->r_errmsg : "no address",
               e->naddrs ? " (keeping the last good addresses)" : "");
        e->state = e->naddrs ? DNS_OK : DNS_FAILED;
        e->ttl = 1; /* try again soon */
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

static struct gw_dns_entry *get(const char *host, int srv)
{
    for (struct gw_dns_entry *e = cache; e; e = e->next)
        if (e->srv == srv && strcmp(e->name, host) == 0)
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
    e->srv = srv;
    e->ttl = GW_DNS_TTL;
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
    if (e->literal)
        e->srv = 0;
    e->next = cache;
    cache = e;
    return e;
}

struct gw_dns_entry *gw_dns_get(const char *host)
{
    return get(host, 0);
}

struct gw_dns_entry *gw_dns_get_srv(const char *host)
{
    return get(host, 1);
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
        if (!e->refreshing && ev_now(gw_worker->loop) - e->resolved_at > e->ttl) {
            e->refreshing = 1; /* keep serving the current addresses meanwhile */
            submit(e);
        }
    }
    if (e->naddrs == 0)
        return GW_ERROR;
    int i = (int)(e->rr++ % (unsigned)e->naddrs);
    memcpy(out, &e->addr[i], e->addrlen[i]);
    *len = e->addrlen[i];
    if (e->srv_found)
        return GW_OK; /* SRV addresses carry their ports */
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
