#ifndef GW_BUF_T_H
#define GW_BUF_T_H

#include <stddef.h>

/* A byte buffer: data[off, len) is pending, data[len, cap) is free space.
 * Memory comes from the worker's block cache when cap is GW_BUF_BLOCK. */
struct gw_buf {
    char *data;
    size_t off; /* first unconsumed byte */
    size_t len; /* end of valid bytes */
    size_t cap; /* allocated bytes */
};

#define GW_BUF_BLOCK 16384

#endif
