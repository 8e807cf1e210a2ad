/* Header lists as views, for heads that plugins change. */
#ifndef GW_HLIST_H
#define GW_HLIST_H

#include <stddef.h>

#include "gw/conn-t.h"

/* An empty list with room for cap headers, in the pool; NULL: no memory. */
struct gw_hlist *gw_hlist_new(struct gw_pool *p, int cap);

/* A list over a copy (in the pool) of the head_len bytes at base that hold
 * head (its offsets are into base). */
struct gw_hlist *gw_hlist_from_head(struct gw_pool *p, const struct gw_head *head,
                                    const char *base, size_t head_len);

/* idx-th value of name (case-insensitive): GW_OK or GW_DECLINED. */
int gw_hlist_get(const struct gw_hlist *h, const char *name, size_t nlen, int idx,
                 const char **v, size_t *vlen);

/* GW_HDR_SET (replace all values), GW_HDR_ADD (append) or GW_HDR_CLEAR;
 * strings are copied into the pool. GW_OK or GW_ERROR (no memory). */
int gw_hlist_apply(struct gw_pool *p, struct gw_hlist *h, int op, const char *name, size_t nlen,
                   const char *value, size_t vlen);

/* Removes every entry named name (case-insensitive). */
void gw_hlist_remove(struct gw_hlist *h, const char *name, size_t nlen);

/* Appends name: value as given (no copy: the caller keeps them alive). */
int gw_hlist_push(struct gw_pool *p, struct gw_hlist *h, const char *name, size_t nlen,
                  const char *value, size_t vlen);

#endif
