/* TLS for client connections: the server contexts (the default certificate
 * and the config's `certificates` chosen by SNI), session tickets shared by
 * all workers, the non-blocking handshake and record I/O. */
#ifndef GW_TLS_H
#define GW_TLS_H

#include <stddef.h>
#include <sys/types.h>

#include "gw/tls-t.h"

struct lua_State;
struct gw_config;
struct gw_conn;

/* Once in the master, before fork: the ticket secret (workers inherit it,
 * so a ticket from one worker resumes on another) and the default
 * certificate: --ssl-cert/--ssl-key, or a self-signed one made now when a
 * TLS listener has none. Returns 0, or -1 with a message in err. */
int gw_tls_init(char *err, size_t errlen);

/* Builds the config's certificate table from conf.certificates (the Lua
 * table at index conf). Returns 0; or -1 with err set to a config error
 * naming the entity ("certificates[2]: ..."). */
int gw_tls_config_build(struct lua_State *L, int conf, struct gw_config *cf, char *err,
                        size_t errlen);
void gw_tls_config_free(struct gw_config *cf);

/* A new server-side TLS object for a socket accepted on ls (which must
 * outlive it: ALPN offers h2 when ls has the http2 flag), or NULL. */
struct gw_listen;
SSL *gw_tls_accept(int fd, const struct gw_listen *ls);

/* The protocol ALPN selected: 1 for h2, 0 for anything else or none. */
int gw_tls_alpn_h2(SSL *ssl);

/* Drives the handshake. Returns 1 when done, 0 when it waits for the
 * socket (*want_write set when it waits to write), -1 when it failed
 * (logged at info with the peer's address). */
int gw_tls_handshake(struct gw_conn *c, int *want_write);

/* Record I/O with read()/write()'s conventions: bytes moved; 0 at EOF
 * (reads); -1 with errno EAGAIN when the socket must be waited for
 * (*want_write set when it must become writable); -1 with another errno
 * on failure. */
ssize_t gw_tls_read(SSL *ssl, void *buf, size_t n, int *want_write);
ssize_t gw_tls_write(SSL *ssl, const void *buf, size_t n, int *want_write);

/* Sends close_notify without waiting and frees. */
void gw_tls_close(SSL *ssl);

#endif
