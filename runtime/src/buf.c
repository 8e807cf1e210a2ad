/* Byte buffers with a per-process cache of fixed-size blocks, so that the
 * request path does not call malloc for its common buffers. Each worker is
 * one thread and one process, so the cache needs no lock. */
#include <stdlib.h>
#include <string.h>

#include "gw/buf.h"

#define CACHE_MAX 256

static char *cache[CACHE_MAX];
static int ncache;

static char *block_get(void)
{
    if (ncache > 0)
        return cache[--ncache];
    return malloc(GW_BUF_BLOCK);
}

static void block_put(char *p)
{
    if (ncache < CACHE_MAX)
        cache[ncache++] = p;
    else
        free(p);
}

int gw_buf_reserve(struct gw_buf *b, size_t n, size_t max)
{
    if (b->cap - b->len >= n)
        return 0;
    if (b->off > 0 && b->cap - (b->len - b->off) >= n) {
        gw_buf_compact(b);
        return 0;
    }
    size_t need = b->len - b->off + n;
    if (max && need > max)
        return -1;
    size_t cap = b->cap ? b->cap : GW_BUF_BLOCK;
    while (cap < need)
        cap *= 2;
    if (max && cap > max)
        cap = max;
    char *p;
    if (cap == GW_BUF_BLOCK) {
        p = block_get();
        if (p == NULL)
            return -1;
        if (b->data) { /* only reachable when cap was smaller: never */
            memcpy(p, b->data + b->off, b->len - b->off);
            free(b->data);
        }
    } else {
        p = malloc(cap);
        if (p == NULL)
            return -1;
        if (b->data) {
            memcpy(p, b->data + b->off, b->len - b->off);
            if (b->cap == GW_BUF_BLOCK)
                block_put(b->data);
            else
                free(b->data);
        }
    }
    b->len -= b->off;
    b->off = 0;
    b->data = p;
    b->cap = cap;
    return 0;
}

int gw__buf_append_slow(struct gw_buf *b, const void *p, size_t n)
{
    if (gw_buf_reserve(b, n, 0) != 0)
        return -1;
    memcpy(b->data + b->len, p, n);
    b->len += n;
    return 0;
}

void gw_buf_free(struct gw_buf *b)
{
    if (b->data) {
        if (b->cap == GW_BUF_BLOCK)
            block_put(b->data);
        else
            free(b->data);
    }
    b->data = NULL;
    b->off = b->len = b->cap = 0;
}

void gw_buf_compact(struct gw_buf *b)
{
    if (b->off == 0)
        return;
    memmove(b->data, b->data + b->off, b->len - b->off);
    b->len -= b->off;
    b->off = 0;
}
