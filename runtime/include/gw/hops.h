/* Prepared header operations: a list of header sets, adds and clears that
 * a plugin applies to many requests (the X-Consumer-* headers of a
 * credential, rate-limiting's response headers), parsed and checked once,
 * then applied to a request's header list in one pass. A value may be an
 * integer slot, given at each application and written in decimal. */
#ifndef GW_HOPS_H
#define GW_HOPS_H

#include <stddef.h>
#include <stdint.h>

#define GW_HOPS_MAX_SLOTS 8

struct gw_hlist;
struct gw_pool;
struct gw_hops;

/* Parses the packed form of gw_ffi_hops_new (gw/ffi.h): per
 * operation '0' + op (GW_HDR_SET, GW_HDR_ADD, GW_HDR_CLEAR or
 * GW_HDR_SET_ABSENT: a set when the list has no header of that name, when
 * the operation comes; not for Host), possibly or'ed
 * with GW_HDR_NAME_OK, which is ignored: every name is checked here, or
 * with GW_HDR_SLOT: the value is the slot's index in decimal, 0 to
 * GW_HOPS_MAX_SLOTS - 1), the name, a NUL, the value, a NUL. Refuses
 * (NULL, static text in *err) a malformed list, a name that is not an RFC
 * 9110 token, a value with CR, LF or NUL, more than GW_HOPS_MAX_OPS
 * operations. The caller owns the result: gw_hops_free. */
struct gw_hops *gw_hops_new(const char *p, size_t len, const char **err);

void gw_hops_free(struct gw_hops *o);

/* The number of integer slots o reads (its highest slot index + 1). */
int gw_hops_slots(const struct gw_hops *o);

/* Whether an operation of o names Host. */
int gw_hops_names_host(const struct gw_hops *o);

/* Whether o's last operation naming Host sets or adds it (not a clear). */
int gw_hops_host_set(const struct gw_hops *o);

/* Applies o's operations in order to h, as gw_hlist_apply would one by one;
 * names and values are copied into pool p (o may be freed before h). ints
 * holds the slots' values (at least gw_hops_slots(o) of them; NULL when
 * there are none). GW_OK or GW_ERROR (no memory). */
int gw_hops_apply(const struct gw_hops *o, struct gw_pool *p, struct gw_hlist *h,
                  const int64_t *ints);

#endif
