/* HTTP helpers shared by the client and upstream sides. */
#ifndef GW_HTTP_H
#define GW_HTTP_H

#include <stddef.h>
#include <stdint.h>

#include "gw/buf-t.h"
#include "gw/conn-t.h"
#include "gw/core-t.h"

/* Callback wiring for a parser whose data is a struct gw_head_ctx. */

void gw_http_settings_init(llhttp_settings_t *s);

/* Standard reason phrase for status, "Unknown" when none. */
const char *gw_http_reason(int status);

/* Case-insensitive compare of a header name with a lowercase literal. */
int gw_http_name_is(const char *name, size_t len, const char *lower, size_t lower_len);
/* The length test is inline: most names compared have another length, and
 * the call is left out then (n is evaluated twice: no side effects). */
#define GW_NAME_IS(p, n, lit)                                                                      \
    ((n) == sizeof(lit) - 1 && gw_http_name_is((p), (n), (lit), sizeof(lit) - 1))

/* Whether a header never crosses the proxy: Connection and the headers of
 * RFC 9110 7.6.1 (Keep-Alive, Proxy-Connection, TE, Trailer, Upgrade).
 * Proxy-Authorization and Proxy-Authenticate pass, as nginx and Kong pass
 * them (basic-auth reads Proxy-Authorization). */
int gw_http_hop_by_hop(const char *name, size_t len);

/* Whether a header value holds CR, LF or NUL: what obsolete line folding
 * (which llhttp accepts) leaves in it, and what must never be forwarded. */
int gw_http_unsafe_value(const char *v, size_t len);

/* Whether p[0..n) is an RFC 9110 token (a valid header name): not empty. */
int gw_http_is_token(const char *p, size_t n);

/* Whether the comma-separated header value contains token (case-insensitive). */
int gw_http_has_token(const char *value, size_t len, const char *token);

/* Finds header idx-th value named lname (lowercase) in head parsed from base.
 * Returns GW_OK with *v set, or GW_DECLINED. */
int gw_http_header(const struct gw_head *h, const char *base, const char *lname, size_t lname_len,
                   int idx, struct gw_str *v);

/* Appends s to b with JSON string escaping (no quotes added). */
int gw_json_escape(struct gw_buf *b, const char *s, size_t n);

/* Fills id with GW_REQUEST_ID_LEN lowercase hex characters and a NUL. */
void gw_request_id(char *id, uint64_t rng[2]);

/* Appends an unsigned decimal number. */
int gw_buf_append_u64(struct gw_buf *b, uint64_t v);

#endif
