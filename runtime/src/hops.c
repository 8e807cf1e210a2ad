/* Prepared header operations (gw/hops.h). One allocation: the struct, its
 * operations, then the names and values, each ended by a NUL. Applying
 * copies that text into the request's pool once (one allocation for all
 * the names and values), formats the slots' integers there, and pushes the
 * views: against one gw_hlist_apply per header, no copy per header and no
 * check of names and values per request. */
#include <stdlib.h>
#include <string.h>

#include "gw/conn-t.h"
#include "gw/core-t.h"
#include "gw/ffi.h"
#include "gw/hlist.h"
#include "gw/hops.h"
#include "gw/http.h"
#include "gw/pool.h"

#define GW_HOPS_MAX_OPS 64
#define INT_LEN 21 /* "-9223372036854775808" and a NUL */

struct gw_hops_op {
    uint8_t op;    /* GW_HDR_SET, GW_HDR_ADD or GW_HDR_CLEAR */
    int8_t slot;   /* -1, or the index in ints of the value */
    uint16_t nlen; /* bytes of the name */
    uint32_t name; /* offset of the name in text */
    uint32_t value;
    uint32_t vlen;
};

struct gw_hops {
    int n;       /* operations */
    int slots;   /* highest slot index + 1 */
    int host;    /* an operation names Host: 0, 1 (last one sets or adds), 2 (clears) */
    size_t tlen; /* bytes of text */
    char *text;  /* names and values, each NUL-terminated */
    struct gw_hops_op op[];
};

static int op_ok(int op)
{
    return op == GW_HDR_SET || op == GW_HDR_ADD || op == GW_HDR_CLEAR || op == GW_HDR_SET_ABSENT;
}

struct gw_hops *gw_hops_new(const char *p, size_t len, const char **err)
{
    const char *end = p + len;
    int n = 0;
    /* a first pass counts and checks the operations */
    for (const char *q = p; q < end; n++) {
        int op = *q++ - '0';
        const char *name = q;
        const char *nend = memchr(name, '\0', (size_t)(end - name));
        const char *value = nend ? nend + 1 : NULL;
        const char *vend = value ? memchr(value, '\0', (size_t)(end - value)) : NULL;
        if (vend == NULL || op < 0 || op > 63 || n == GW_HOPS_MAX_OPS) {
            *err = "malformed packed headers";
            return NULL;
        }
        int base = op & ~(GW_HDR_NAME_OK | GW_HDR_SLOT);
        size_t nlen = (size_t)(nend - name), vlen = (size_t)(vend - value);
        if (!op_ok(base) || nlen > UINT16_MAX || !gw_http_is_token(name, nlen)) {
            *err = op_ok(base) ? "invalid header name" : "malformed packed headers";
            return NULL;
        }
        if (base == GW_HDR_SET_ABSENT && GW_NAME_IS(name, nlen, "host")) {
            /* whether the upstream gets the client's Host would depend on it */
            *err = "Host cannot be set when absent";
            return NULL;
        }
        if (op & GW_HDR_SLOT) {
            if (base == GW_HDR_CLEAR || vlen != 1 || value[0] < '0' ||
                value[0] >= '0' + GW_HOPS_MAX_SLOTS) {
                *err = "malformed packed headers";
                return NULL;
            }
        } else if (gw_http_unsafe_value(value, vlen)) {
            *err = "invalid header value: CR, LF and NUL are not allowed";
            return NULL;
        }
        q = vend + 1;
    }
    struct gw_hops *o = malloc(sizeof(*o) + (size_t)n * sizeof(o->op[0]) + len);
    if (o == NULL) {
        *err = "no memory";
        return NULL;
    }
    o->n = n;
    o->slots = 0;
    o->host = 0;
    o->text = (char *)&o->op[n];
    o->tlen = len;
    memcpy(o->text, p, len);
    const char *q = p;
    for (int i = 0; i < n; i++) {
        struct gw_hops_op *e = &o->op[i];
        int op = *q++ - '0';
        const char *nend = memchr(q, '\0', (size_t)(end - q));
        const char *value = nend + 1;
        const char *vend = memchr(value, '\0', (size_t)(end - value));
        e->op = (uint8_t)(op & ~(GW_HDR_NAME_OK | GW_HDR_SLOT));
        e->slot = (op & GW_HDR_SLOT) ? (int8_t)(value[0] - '0') : -1;
        e->name = (uint32_t)(q - p);
        e->nlen = (uint16_t)(nend - q);
        e->value = (uint32_t)(value - p);
        e->vlen = (uint32_t)(vend - value);
        if (e->slot >= o->slots)
            o->slots = e->slot + 1;
        if (GW_NAME_IS(q, e->nlen, "host"))
            o->host = e->op == GW_HDR_CLEAR ? 2 : 1;
        q = vend + 1;
    }
    return o;
}

void gw_hops_free(struct gw_hops *o)
{
    free(o);
}

int gw_hops_slots(const struct gw_hops *o)
{
    return o->slots;
}

int gw_hops_names_host(const struct gw_hops *o)
{
    return o->host != 0;
}

int gw_hops_host_set(const struct gw_hops *o)
{
    return o->host == 1;
}

/* Writes v in decimal ending at end (exclusive), two digits a division;
 * returns its first byte. */
static char *format_int(char *end, int64_t v)
{
    static const char pairs[] = "00010203040506070809101112131415161718192021222324"
                                "25262728293031323334353637383940414243444546474849"
                                "50515253545556575859606162636465666768697071727374"
                                "75767778798081828384858687888990919293949596979899";
    uint64_t u = v < 0 ? 0 - (uint64_t)v : (uint64_t)v;
    char *s = end;
    while (u >= 100) {
        const char *d = pairs + 2 * (u % 100);
        u /= 100;
        *--s = d[1];
        *--s = d[0];
    }
    if (u >= 10) {
        *--s = pairs[2 * u + 1];
        *--s = pairs[2 * u];
    } else {
        *--s = (char)('0' + u);
    }
    if (v < 0)
        *--s = '-';
    return s;
}

int gw_hops_apply(const struct gw_hops *o, struct gw_pool *p, struct gw_hlist *h,
                  const int64_t *ints)
{
    char *text = gw_pool_alloc(p, o->tlen + (size_t)o->slots * INT_LEN);
    if (text == NULL)
        return GW_ERROR;
    memcpy(text, o->text, o->tlen);
    /* each slot's digits once, however many values use it */
    const char *num[GW_HOPS_MAX_SLOTS];
    uint32_t num_len[GW_HOPS_MAX_SLOTS];
    char *vend = text + o->tlen;
    for (int k = 0; k < o->slots; k++) {
        vend += INT_LEN;
        vend[-1] = '\0';
        num[k] = format_int(vend - 1, ints[k]);
        num_len[k] = (uint32_t)(vend - 1 - num[k]);
    }
    for (int i = 0; i < o->n; i++) {
        const struct gw_hops_op *e = &o->op[i];
        const char *name = text + e->name;
        /* the length bit first: most names set are not in the list */
        if (e->op == GW_HDR_SET_ABSENT) {
            const char *v;
            size_t vl;
            if ((h->lens >> (e->nlen & 63) & 1) &&
                gw_hlist_get(h, name, e->nlen, 0, &v, &vl) == GW_OK)
                continue;
        } else if (e->op != GW_HDR_ADD && (h->lens >> (e->nlen & 63) & 1)) {
            gw_hlist_remove(h, name, e->nlen);
        }
        if (e->op == GW_HDR_CLEAR)
            continue;
        int k = e->slot;
        const char *value = k < 0 ? text + e->value : num[k];
        uint32_t vlen = k < 0 ? e->vlen : num_len[k];
        if (h->n == h->cap) {
            if (gw_hlist_push(p, h, name, e->nlen, value, vlen) != GW_OK)
                return GW_ERROR;
            continue;
        }
        /* gw_hlist_push's work, with room in the list */
        h->lens |= (uint64_t)1 << (e->nlen & 63);
        struct gw_hview *v = &h->v[h->n++];
        v->name = name;
        v->nlen = e->nlen;
        v->value = value;
        v->vlen = vlen;
    }
    return GW_OK;
}
