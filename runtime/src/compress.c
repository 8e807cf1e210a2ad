/* gzip through zlib's deflate with a gzip wrapper, brotli through
 * libbrotlienc's streaming API. Output goes straight into a gw_buf. */
#include <brotli/encode.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <zlib.h>

#include "gw/buf.h"
#include "gw/compress.h"

struct gw_compress {
    int algo;
    z_stream zs;
    BrotliEncoderState *br;
};

struct gw_compress *gw_compress_new(int algo, int level)
{
    struct gw_compress *z = calloc(1, sizeof(*z));
    if (z == NULL)
        return NULL;
    z->algo = algo;
    if (algo == GW_COMPRESS_GZIP) {
        if (level < 1 || level > 9)
            level = 6;
        /* 15 window bits + 16: a gzip header and trailer; memLevel 8 */
        if (deflateInit2(&z->zs, level, Z_DEFLATED, 15 + 16, 8, Z_DEFAULT_STRATEGY) != Z_OK) {
            free(z);
            return NULL;
        }
        return z;
    }
    if (algo == GW_COMPRESS_BROTLI) {
        z->br = BrotliEncoderCreateInstance(NULL, NULL, NULL);
        if (z->br == NULL) {
            free(z);
            return NULL;
        }
        if (level < 0 || level > 11)
            level = 4;
        BrotliEncoderSetParameter(z->br, BROTLI_PARAM_QUALITY, (uint32_t)level);
        return z;
    }
    free(z);
    return NULL;
}

static int gzip_feed(struct gw_compress *z, const char *p, size_t n, int finish,
                     struct gw_buf *out)
{
    z->zs.next_in = (Bytef *)p;
    z->zs.avail_in = (uInt)n;
    int flush = finish ? Z_FINISH : Z_SYNC_FLUSH;
    for (;;) {
        if (gw_buf_reserve(out, 4096, 0) != 0)
            return -1;
        size_t room = out->cap - out->len;
        z->zs.next_out = (Bytef *)(out->data + out->len);
        z->zs.avail_out = (uInt)room;
        int rc = deflate(&z->zs, flush);
        out->len += room - z->zs.avail_out;
        if (rc == Z_STREAM_END)
            return 0;
        if (rc != Z_OK && rc != Z_BUF_ERROR)
            return -1;
        if (z->zs.avail_out != 0 && z->zs.avail_in == 0)
            return 0; /* all input taken and flushed */
    }
}

static int brotli_feed(struct gw_compress *z, const char *p, size_t n, int finish,
                       struct gw_buf *out)
{
    const uint8_t *next_in = (const uint8_t *)p;
    size_t avail_in = n;
    BrotliEncoderOperation op = finish ? BROTLI_OPERATION_FINISH : BROTLI_OPERATION_FLUSH;
    for (;;) {
        if (gw_buf_reserve(out, 4096, 0) != 0)
            return -1;
        size_t avail_out = out->cap - out->len;
        uint8_t *next_out = (uint8_t *)(out->data + out->len);
        if (!BrotliEncoderCompressStream(z->br, op, &avail_in, &next_in, &avail_out, &next_out,
                                         NULL))
            return -1;
        out->len = (size_t)((char *)next_out - out->data);
        if (avail_in == 0 && !BrotliEncoderHasMoreOutput(z->br) &&
            (!finish || BrotliEncoderIsFinished(z->br)))
            return 0;
    }
}

int gw_compress_feed(struct gw_compress *z, const char *p, size_t n, int finish,
                     struct gw_buf *out)
{
    return z->algo == GW_COMPRESS_GZIP ? gzip_feed(z, p, n, finish, out)
                                       : brotli_feed(z, p, n, finish, out);
}

int gw_compress_algo(const struct gw_compress *z)
{
    return z->algo;
}

void gw_compress_free(struct gw_compress **pz)
{
    struct gw_compress *z = *pz;
    if (z == NULL)
        return;
    if (z->algo == GW_COMPRESS_GZIP)
        deflateEnd(&z->zs);
    else if (z->br)
        BrotliEncoderDestroyInstance(z->br);
    free(z);
    *pz = NULL;
}

/* q-value of coding in an Accept-Encoding value: -1 when absent. */
static double qvalue(const char *v, size_t len, const char *coding)
{
    size_t cl = strlen(coding);
    double star = -1;
    size_t i = 0;
    while (i < len) {
        while (i < len && (v[i] == ' ' || v[i] == '\t' || v[i] == ','))
            i++;
        size_t s = i;
        while (i < len && v[i] != ',' && v[i] != ';' && v[i] != ' ')
            i++;
        size_t e = i;
        double q = 1;
        while (i < len && v[i] != ',') {
            if (v[i] == 'q' && i + 1 < len && v[i + 1] == '=') {
                char tmp[8] = {0};
                size_t k = 0;
                i += 2;
                while (i < len && k < 7 && ((v[i] >= '0' && v[i] <= '9') || v[i] == '.'))
                    tmp[k++] = v[i++];
                q = atof(tmp);
                continue;
            }
            i++;
        }
        if (e - s == cl && strncasecmp(v + s, coding, cl) == 0)
            return q;
        if (e - s == 1 && v[s] == '*')
            star = q;
    }
    return star;
}

int gw_compress_negotiate(const char *accept, size_t len, int allow_br)
{
    double br = allow_br ? qvalue(accept, len, "br") : -1;
    double gz = qvalue(accept, len, "gzip");
    if (br > 0 && br >= gz)
        return GW_COMPRESS_BROTLI;
    if (gz > 0)
        return GW_COMPRESS_GZIP;
    return 0;
}
