/* Upstream connections: non-blocking connect and a keepalive pool per
 * upstream address, per worker. */
#ifndef GW_UPSTREAM_H
#define GW_UPSTREAM_H

#include <sys/socket.h>

#include "gw/conn-t.h"

/* An idle pooled connection to addr, detached from the pool (its watchers
 * stopped), or NULL when there is none. */
struct gw_upstream *gw_upstream_pool_get(const struct sockaddr *addr, socklen_t len);

/* Starts a non-blocking connect. Returns the connection in state
 * GW_U_CONNECTING (or GW_U_ACTIVE when it connected at once), or NULL with
 * errno set. The caller sets up its watchers. */
struct gw_upstream *gw_upstream_connect(const struct sockaddr *addr, socklen_t len);

/* Puts a connection whose response was fully read back into the pool, or
 * closes it when the pool for its address is full. */
void gw_upstream_keep(struct gw_upstream *u);

/* Closes and frees. */
void gw_upstream_free(struct gw_upstream *u);

/* Closes every pooled connection (graceful stop). */
void gw_upstream_pool_drain(void);

#endif
