/* HTTP/2 to upstreams (services with protocol grpc or grpcs), as a codec
 * between the HTTP/1.1 the proxy speaks and the frames on the socket.
 *
 * proxy.c keeps writing an HTTP/1.1 request (head and body, with its own
 * framing) into the upstream's output and parsing an HTTP/1.1 response from
 * its input; for an HTTP/2 connection the request bytes go through
 * gw_h2up_take (one stream per request) and gw_h2up_wire holds the frames
 * to write, and what the socket gives goes through gw_h2up_feed, which
 * writes the response back as HTTP/1.1: a chunked body whose last chunk
 * carries the HTTP/2 trailers (grpc-status...), or Content-Length: 0 for a
 * response that ended with its head (gRPC's trailers-only answers). The
 * proxy, the pool, retries, timeouts and plugins stay as they are. */
#ifndef GW_H2_UP_H
#define GW_H2_UP_H

#include <stddef.h>

#include "gw/buf-t.h"

struct gw_h2up;

/* A client session for a new connection (SETTINGS queued). https: the
 * :scheme sent. NULL when out of memory. */
struct gw_h2up *gw_h2up_new(int https);

void gw_h2up_free(struct gw_h2up *h);

/* A new request begins on the connection (its HTTP/1.1 bytes follow). */
void gw_h2up_begin(struct gw_h2up *h);

/* Takes HTTP/1.1 request bytes from in, as many as the stream can hold
 * (the rest stays in in: the proxy's high-water mark then stops reading
 * the client), and queues frames. 0, or -1 (gw_h2up_error says why). */
int gw_h2up_take(struct gw_h2up *h, struct gw_buf *in);

/* The frames to write: gw_h2up_take and gw_h2up_feed add to it. */
struct gw_buf *gw_h2up_wire(struct gw_h2up *h);

/* Bytes read from the socket; the response, as HTTP/1.1, is appended to
 * resp. 0, or -1: a protocol error or the stream was reset (gw_h2up_error
 * says which). */
int gw_h2up_feed(struct gw_h2up *h, const char *p, size_t n, struct gw_buf *resp);

/* Whether the connection can carry another request: its stream ended both
 * ways, no GOAWAY, stream ids left. */
int gw_h2up_reusable(const struct gw_h2up *h);

/* The grpc-status of the last response (trailers or a trailers-only head),
 * -1 when it had none. */
int gw_h2up_grpc_status(const struct gw_h2up *h);

/* What went wrong, for the logs. */
const char *gw_h2up_error(const struct gw_h2up *h);

#endif
