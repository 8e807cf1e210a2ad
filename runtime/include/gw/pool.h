/* Request memory: a bump allocator released all at once when the request
 * ends (nginx's pools). Nothing in it is freed on its own. */
#ifndef GW_POOL_H
#define GW_POOL_H

#include <stddef.h>

struct gw_pool_block;

struct gw_pool {
    struct gw_pool_block *head;
    char *cur;   /* next free byte of the head block */
    size_t left; /* free bytes there */
    char *first; /* caller-owned first block (may be NULL), used before malloc */
    size_t first_size;
};

/* Gives the pool a first block the caller owns (embedded in the request),
 * so that small requests never call malloc. */
static inline void gw_pool_init(struct gw_pool *p, char *first, size_t size)
{
    p->head = NULL;
    p->first = first;
    p->first_size = size;
    p->cur = first;
    p->left = first ? size : 0;
}

/* n bytes aligned for any type, or NULL when memory is exhausted. */
void *gw_pool_alloc(struct gw_pool *p, size_t n);

/* A copy of s[0..n) with a NUL after it, or NULL. */
char *gw_pool_strdup(struct gw_pool *p, const char *s, size_t n);

/* Releases every block; the pool can be used again. */
void gw_pool_reset(struct gw_pool *p);

#endif
