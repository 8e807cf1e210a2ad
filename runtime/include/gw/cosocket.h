/* Cosockets: non-blocking TCP client sockets for plugin code
 * (ngx.socket.tcp, luagate.http). C gives primitive operations; the Lua side
 * (lua/luagate/socket.lua) builds the receive patterns on top with its own
 * buffer.
 *
 * A socket is named by an integer id (slot and generation: a stale id from
 * a finished request is simply unknown). It belongs to the coroutine that
 * opened it and is closed when that coroutine's request or timer job ends,
 * unless it went to the keepalive pool first.
 *
 * Operations (connect, send, recv) finish at once (GW_OK, GW_DONE,
 * GW_ERROR) or start (GW_AGAIN): the socket then has an operation under way,
 * with its own timeout, and the coroutine waits for it, or for the first of
 * several sockets, with gw_ffi_sock_wait. One operation per socket at a
 * time. Error texts are static: "timeout", "closed", "connection refused",
 * "host not found"... */
#ifndef GW_COSOCKET_H
#define GW_COSOCKET_H

#include <stddef.h>

struct gw_lctx;
struct gw_tls_client_sess;

/* A new, unconnected socket owned by x: its id (>= 0), or GW_ERROR. */
int gw_ffi_sock_open(struct gw_lctx *x, const char **err);

/* Connects id to host:port (name resolved by gw_dns) within timeout_ms
 * (<= 0: none). key names the keepalive pool to take a connection from and
 * to put it back to later (NUL-terminated; "host:port" by convention).
 * GW_OK: connected (*reused > 0 when it came from the pool: the number of
 * times it was reused); GW_AGAIN: wait; GW_ERROR with *err. */
int gw_ffi_sock_connect(struct gw_lctx *x, int id, const char *host, int port, const char *key,
                        int timeout_ms, int *reused, const char **err);

/* Sends n bytes at p. GW_OK: all were written; GW_AGAIN: the rest is being
 * written (p must stay valid until the wait ends: the Lua string is kept by
 * the caller); GW_ERROR with *err ("closed" when the peer is gone). */
int gw_ffi_sock_send(struct gw_lctx *x, int id, const char *p, size_t n, int timeout_ms,
                     const char **err);

/* Reads at most max bytes. GW_OK: *p, *n is a view into the socket's buffer,
 * valid until its next call; GW_DONE: the peer closed; GW_AGAIN: wait for
 * data, then call again; GW_ERROR with *err. */
int gw_ffi_sock_recv(struct gw_lctx *x, int id, size_t max, int timeout_ms, const char **p,
                     size_t *n, const char **err);

/* Waits for the first of ids[0..n-1] whose operation finishes. GW_OK or
 * GW_ERROR (with *err): *id finished already (nothing to wait for);
 * GW_AGAIN: the coroutine must yield, and is resumed with three values
 * (id, rc, err); GW_DECLINED: none of them has an operation under way. */
int gw_ffi_sock_wait(struct gw_lctx *x, const int *ids, int n, int *id, const char **err);

/* Closes id (cancels its operation). GW_OK, or GW_DECLINED when unknown. */
int gw_ffi_sock_close(int id);

/* Puts id's connection into the keepalive pool of its key and frees id:
 * it is closed after timeout_ms idle (<= 0: never) or when the pool already
 * holds pool_size connections of that key (the oldest goes). GW_ERROR with
 * *err when the connection cannot be reused (it is closed then). */
int gw_ffi_sock_keepalive(int id, int timeout_ms, int pool_size, const char **err);

/* Starts TLS on the connected socket id (lua-nginx-module's sslhandshake):
 * server_name (may be NULL) is sent as SNI and, when verify, checked
 * against the certificate, which must chain to lua_ssl_trusted_certificate
 * (or the system store) within lua_ssl_verify_depth. sess (an SSL_SESSION
 * from gw_ffi_sock_ssl_session, or NULL) is offered for resumption;
 * status_req asks for OCSP stapling. When a fresh connection's pool holds
 * an idle TLS connection of the same identity, that one replaces it
 * (*reused > 0). GW_OK, GW_AGAIN (wait, bounded by timeout_ms), GW_ERROR
 * with *err ("NN: reason" for a refused certificate, "certificate host
 * mismatch", "handshake failed", "closed"). */
int gw_ffi_sock_sslhandshake(struct gw_lctx *x, int id, struct gw_tls_client_sess *sess,
                             const char *server_name, int verify, int status_req, int timeout_ms,
                             int *reused, const char **err);

/* A reference to id's TLS session (NULL when none), which follows the
 * connection's newest session (TLS 1.3 tickets), for a later handshake's
 * resumption; released with gw_ffi_ssl_session_free. */
struct gw_tls_client_sess *gw_ffi_sock_ssl_session(int id);

void gw_ffi_ssl_session_free(struct gw_tls_client_sess *sess);

/* Idle pooled connections of the worker (for specs and stats). */
int gw_ffi_sock_pool_count(void);

#endif
