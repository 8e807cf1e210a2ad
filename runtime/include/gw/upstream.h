/* Upstream connections: non-blocking connect and a keepalive pool per
 * upstream address, per worker. */
#ifndef GW_UPSTREAM_H
#define GW_UPSTREAM_H

#include <stdint.h>
#include <sys/socket.h>

#include "gw/conn-t.h"

struct ssl_st;

/* An idle pooled connection to addr, detached from the pool (its watchers
 * stopped), or NULL when there is none. tls_id (0: plain) and tls_name
 * (may be NULL) are the TLS identity the connection must have been made
 * with: a connection is never handed to another identity. h2: an HTTP/2
 * connection is wanted (never an HTTP/1.1 one, nor the reverse). */
struct gw_upstream *gw_upstream_pool_get(const struct sockaddr *addr, socklen_t len,
                                         uint64_t tls_id, const char *tls_name, int h2);

/* Starts a non-blocking connect. Returns the connection in state
 * GW_U_CONNECTING (or GW_U_ACTIVE when it connected at once), or NULL with
 * errno set. The caller sets up its watchers. */
struct gw_upstream *gw_upstream_connect(const struct sockaddr *addr, socklen_t len);

/* Makes u (just connected, or connecting) a TLS connection: it owns ssl
 * from now on, even on failure, and goes to the pool of its TLS identity
 * (tls_id, a copy of tls_name). GW_OK, or GW_ERROR when out of memory. */
int gw_upstream_set_tls(struct gw_upstream *u, struct ssl_st *ssl, uint64_t tls_id,
                        const char *tls_name);

/* Puts a connection whose response was fully read back into the pool, or
 * closes it when the pool for its address is full. */
void gw_upstream_keep(struct gw_upstream *u);

/* Closes and frees. */
void gw_upstream_free(struct gw_upstream *u);

/* Closes every pooled connection (graceful stop). */
void gw_upstream_pool_drain(void);

#endif
