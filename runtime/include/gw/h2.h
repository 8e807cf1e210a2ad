/* HTTP/2 to clients (server side). A connection that negotiated h2 (ALPN
 * on a TLS listener with the http2 flag) or sent the preface on a plain
 * http2 listener becomes a session; each of its streams is bridged, in
 * memory, to an ordinary HTTP/1.1 client connection (gw_conn) without a
 * socket, so the request path (routing, plugins, proxying, logs) serves it
 * unchanged. */
#ifndef GW_H2_H
#define GW_H2_H

#include <stddef.h>
#include <sys/types.h>

struct gw_conn;
struct gw_h2_stream;

/* Whether p[0, n) is the client preface (GW_OK), a proper prefix of it
 * (GW_AGAIN), or something else (GW_DECLINED). */
int gw_h2_preface(const char *p, size_t n);

/* Switches c to HTTP/2 (state GW_C_H2): makes the session, queues the
 * server's SETTINGS and feeds it what c->in holds. On failure c is closed. */
void gw_h2_start(struct gw_conn *c);

/* c->in holds bytes from the client: gives them to the session, then
 * writes what it has. Returns GW_ERROR when c was closed. */
int gw_h2_recv(struct gw_conn *c);

/* Writes what the session has for the client (and flushes c->out).
 * Returns GW_ERROR when c was closed. */
int gw_h2_send(struct gw_conn *c);

/* For gw_conn_update: whether the session reads, and whether it is idle
 * (no open stream: the keepalive timeout applies). */
int gw_h2_wants_read(const struct gw_conn *c);
int gw_h2_idle(const struct gw_conn *c);

/* Whether response bytes wait for the client to open its flow-control
 * windows: the send timeout then applies, as to a client that stops
 * reading. */
int gw_h2_blocked(const struct gw_conn *c);

/* Whether a stream was answered while its request never ended (the client
 * still holds it open): the body timeout then applies. */
int gw_h2_lingering(const struct gw_conn *c);

/* Graceful stop: GOAWAY(NO_ERROR); c closes once its open streams ended
 * (at once when none is open). */
void gw_h2_drain(struct gw_conn *c);

/* The connection's timer fired: idle (no open stream), it says GOAWAY
 * (NO_ERROR) and closes; a client that stopped reading is closed; streams
 * answered whose request never ended are reset with NO_ERROR. */
void gw_h2_timeout(struct gw_conn *c);

/* From gw_conn_close of the HTTP/2 connection: closes every stream's
 * bridge and frees the session (c->h2 becomes NULL). */
void gw_h2_free(struct gw_conn *c);

/* From gw_conn_close of a stream's bridge connection: the stream forgets
 * it; a response it had not finished is cut (RST_STREAM). */
void gw_h2_bridge_closed(struct gw_h2_stream *s);

/* The bridge connection's I/O (conn.c), in place of read(2) and write(2)
 * on a socket; s may be NULL (the stream is gone: EOF both ways).
 * gw_h2_bridge_read: request bytes into dst: > 0, 0 at EOF, -1 none yet.
 * gw_h2_bridge_write: response bytes: how many the stream took, -1 none
 * now (it pokes the connection when it takes more), -2 the stream closed.
 * gw_h2_bridge_ready: which of events (EV_READ, EV_WRITE) would not wait. */
ssize_t gw_h2_bridge_read(struct gw_h2_stream *s, char *dst, size_t room);
ssize_t gw_h2_bridge_write(struct gw_h2_stream *s, const char *p, size_t n);
int gw_h2_bridge_ready(const struct gw_h2_stream *s, int events);

#endif
