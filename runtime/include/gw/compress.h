/* Response compression on the streaming path: gzip (zlib) and brotli. */
#ifndef GW_COMPRESS_H
#define GW_COMPRESS_H

#include <stddef.h>

#include "gw/buf-t.h"

#define GW_COMPRESS_GZIP 1
#define GW_COMPRESS_BROTLI 2

struct gw_compress; /* one per response, malloc'd */

/* A compressor for algo at level (gzip 1..9, brotli 0..11), or NULL. */
struct gw_compress *gw_compress_new(int algo, int level);

/* Compresses n bytes (finish: the last call, with n possibly 0) and
 * appends the output to out. Returns 0, or -1 on failure. */
int gw_compress_feed(struct gw_compress *z, const char *p, size_t n, int finish,
                     struct gw_buf *out);

void gw_compress_free(struct gw_compress **z);

/* GW_COMPRESS_GZIP or GW_COMPRESS_BROTLI. */
int gw_compress_algo(const struct gw_compress *z);

/* The best algorithm the Accept-Encoding value allows (q-values honoured):
 * GW_COMPRESS_BROTLI when allow_br, else GW_COMPRESS_GZIP, or 0. */
int gw_compress_negotiate(const char *accept, size_t len, int allow_br);

#endif
