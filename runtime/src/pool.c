#include <stdlib.h>
#include <string.h>

#include "gw/pool.h"

#define BLOCK 4096

struct gw_pool_block {
    struct gw_pool_block *next;
    size_t size;
    char data[];
};

void *gw_pool_alloc(struct gw_pool *p, size_t n)
{
    n = (n + 15) & ~(size_t)15;
    if (n <= p->left) {
        void *r = p->cur;
        p->cur += n;
        p->left -= n;
        return r;
    }
    size_t size = n > BLOCK / 4 ? n : BLOCK - sizeof(struct gw_pool_block);
    struct gw_pool_block *b = malloc(sizeof(*b) + size);
    if (b == NULL)
        return NULL;
    b->size = size;
    if (size == n && p->head) {
        /* a large piece: keep the current block for small ones */
        b->next = p->head->next;
        p->head->next = b;
        return b->data;
    }
    b->next = p->head;
    p->head = b;
    p->cur = b->data + n;
    p->left = size - n;
    return b->data;
}

char *gw_pool_strdup(struct gw_pool *p, const char *s, size_t n)
{
    char *d = gw_pool_alloc(p, n + 1);
    if (d == NULL)
        return NULL;
    memcpy(d, s, n);
    d[n] = '\0';
    return d;
}

void gw_pool_reset(struct gw_pool *p)
{
    struct gw_pool_block *b = p->head;
    while (b) {
        struct gw_pool_block *next = b->next;
        free(b);
        b = next;
    }
    p->head = NULL;
    p->cur = p->first;
    p->left = p->first ? p->first_size : 0;
}
