#ifndef GW_BUF_H
#define GW_BUF_H

#include <string.h>
#include "gw/buf-t.h"

/* Makes room for at least n free bytes after len; keeps data. Returns 0, or
 * -1 when memory is exhausted or the buffer would exceed max bytes. */
int gw_buf_reserve(struct gw_buf *b, size_t n, size_t max);

int gw__buf_append_slow(struct gw_buf *b, const void *p, size_t n);

/* Appends n bytes (no limit); returns 0 or -1 on allocation failure. */
static inline int gw_buf_append(struct gw_buf *b, const void *p, size_t n)
{
    if (b->cap - b->len >= n) {
        memcpy(b->data + b->len, p, n);
        b->len += n;
        return 0;
    }
    return gw__buf_append_slow(b, p, n);
}

/* Appends the header line "name: value\r\n" with one room check (heads
 * are written a line at a time); returns 0 or -1 on allocation failure,
 * when nothing is appended. */
static inline int gw_buf_append_field(struct gw_buf *b, const char *name, size_t nlen,
                                      const char *value, size_t vlen)
{
    size_t len = nlen + vlen + 4;
    if (b->cap - b->len < len && gw_buf_reserve(b, len, 0) != 0)
        return -1;
    char *d = b->data + b->len;
    memcpy(d, name, nlen);
    d += nlen;
    d[0] = ':';
    d[1] = ' ';
    memcpy(d + 2, value, vlen);
    d += 2 + vlen;
    d[0] = '\r';
    d[1] = '\n';
    b->len += len;
    return 0;
}

/* Releases the memory (back to the block cache when it is a block). */
void gw_buf_free(struct gw_buf *b);

/* Moves pending bytes to the start of the buffer. */
void gw_buf_compact(struct gw_buf *b);

static inline size_t gw_buf_pending(const struct gw_buf *b)
{
    return b->len - b->off;
}

static inline void gw_buf_consume(struct gw_buf *b, size_t n)
{
    b->off += n;
    if (b->off == b->len)
        b->off = b->len = 0;
}

/* Moves up to max pending bytes to dst; returns how many. */
static inline size_t gw_buf_take(struct gw_buf *b, void *dst, size_t max)
{
    size_t n = gw_buf_pending(b);
    if (n > max)
        n = max;
    if (n) {
        memcpy(dst, b->data + b->off, n);
        gw_buf_consume(b, n);
    }
    return n;
}

static inline int gw_buf_appends(struct gw_buf *b, const char *s)
{
    return gw_buf_append(b, s, strlen(s));
}

#endif
