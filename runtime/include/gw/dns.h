/* Name resolution off the event loop: a resolver thread per worker runs
 * getaddrinfo() and hands results back through an ev_async. Results are
 * cached per name; a refresh runs in the background when the answer's TTL
 * ends (GW_DNS_TTL when it has none) and a
 * failed refresh keeps the last good addresses. */
#ifndef GW_DNS_H
#define GW_DNS_H

#include <sys/socket.h>

#include "gw/list.h"

#define GW_DNS_TTL 30.0 /* seconds, when an answer has no TTL (hosts file, nsswitch) */

struct gw_dns_entry;

/* Starts the resolver of this worker. Returns 0 or -1. */
int gw_dns_init(void);

/* The cache entry for a host name or IP literal (created on first use; it
 * lives as long as the worker). NULL only when out of memory. */
struct gw_dns_entry *gw_dns_get(const char *host);

/* The cache entry for an SRV name (targets given without a port): the
 * lowest-priority SRV targets' addresses with their ports, or, when the name
 * has no SRV records, its A/AAAA addresses (the caller's port applies). */
struct gw_dns_entry *gw_dns_get_srv(const char *host);

/* An address for entry with port set: GW_OK, GW_AGAIN (resolution under way:
 * wait with gw_dns_wait), or GW_ERROR (the name does not resolve). Rotates
 * over the addresses. */
int gw_dns_addr(struct gw_dns_entry *e, int port, struct sockaddr_storage *out, socklen_t *len);

/* Queues link to be passed to gw_dns_ready_cb when the entry resolves (or
 * fails). Unlink it to stop waiting. */
void gw_dns_wait(struct gw_dns_entry *e, struct gw_list *link);

/* Defined by the proxy: a waiter's resolution finished. */
void gw_dns_ready_cb(struct gw_list *link);

/* A waiter with its own callback (cosockets, redis). cb runs from the loop
 * when the entry resolves or fails: call gw_dns_addr again to know which.
 * The waiter is unlinked before cb; unlink it (gw_list_remove(&w->link)) to
 * stop waiting. */
struct gw_dns_waiter {
    struct gw_list link;
    void (*cb)(struct gw_dns_waiter *w);
};

/* Queues w (w->cb set by the caller) on entry e. */
void gw_dns_wait_cb(struct gw_dns_entry *e, struct gw_dns_waiter *w);

#endif
