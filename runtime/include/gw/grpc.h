/* gRPC on the HTTP request path: how a gRPC client is told about the
 * responses the gateway makes (Kong's rules: the HTTP status stays, the
 * gRPC status and message go in grpc-status and grpc-message, no body).
 * Proxying gRPC itself is HTTP/2 to the upstream (h2_up.c) and trailers
 * carried through (h2.c). */
#ifndef GW_GRPC_H
#define GW_GRPC_H

#include <stddef.h>

struct gw_conn;

/* Whether the connection's request is a gRPC one: HTTP/2 and a
 * Content-Type that starts with application/grpc (Kong's test). */
int gw_grpc_request(struct gw_conn *c);

/* The gRPC status a response with this HTTP status means (Kong's table:
 * 401 -> 16 UNAUTHENTICATED, 429 -> 8, 503 -> 14...; other 4xx -> 3,
 * 5xx -> 13, 2xx -> 0, else 2 UNKNOWN). */
int gw_grpc_status_of(int http_status);

/* Kong's short name of a gRPC status ("Unauthenticated"), "Unknown" for
 * codes outside 0..16. */
const char *gw_grpc_status_name(int code);

/* grpc-message's percent-encoding (gRPC over HTTP/2: bytes outside
 * 0x20..0x7E and '%' become %XX) of n bytes into out (cap bytes, NUL
 * terminated, cut at a whole character). Returns the length written. */
size_t gw_grpc_message_encode(const char *in, size_t n, char *out, size_t cap);

#endif
