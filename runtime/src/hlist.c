#include <string.h>
#include <strings.h>

#include "gw/core-t.h"
#include "gw/ffi.h"
#include "gw/hlist.h"
#include "gw/pool.h"

struct gw_hlist *gw_hlist_new(struct gw_pool *p, int cap)
{
    struct gw_hlist *h = gw_pool_alloc(p, sizeof(*h));
    if (h == NULL)
        return NULL;
    h->n = 0;
    h->lens = 0;
    h->cap = cap < 4 ? 4 : cap;
    h->v = gw_pool_alloc(p, (size_t)h->cap * sizeof(struct gw_hview));
    return h->v ? h : NULL;
}

int gw_hlist_push(struct gw_pool *p, struct gw_hlist *h, const char *name, size_t nlen,
                  const char *value, size_t vlen)
{
    if (h->n == h->cap) {
        struct gw_hview *v = gw_pool_alloc(p, (size_t)h->cap * 2 * sizeof(*v));
        if (v == NULL)
            return GW_ERROR;
        memcpy(v, h->v, (size_t)h->n * sizeof(*v));
        h->v = v;
        h->cap *= 2;
    }
    h->lens |= (uint64_t)1 << (nlen & 63);
    struct gw_hview *e = &h->v[h->n++];
    e->name = name;
    e->nlen = (uint32_t)nlen;
    e->value = value;
    e->vlen = (uint32_t)vlen;
    return GW_OK;
}

struct gw_hlist *gw_hlist_from_head(struct gw_pool *p, const struct gw_head *head,
                                    const char *base, size_t head_len)
{
    struct gw_hlist *h = gw_hlist_new(p, head->nhdr + 8);
    if (h == NULL)
        return NULL;
    /* one copy of the whole head; the views point into it */
    char *copy = gw_pool_alloc(p, head_len ? head_len : 1);
    if (copy == NULL)
        return NULL;
    memcpy(copy, base, head_len);
    for (int i = 0; i < head->nhdr; i++) {
        const struct gw_hdr *e = &head->hdr[i];
        if (gw_hlist_push(p, h, copy + e->name, e->name_len, copy + e->value, e->value_len) !=
            GW_OK)
            return NULL;
    }
    return h;
}

int gw_hlist_get(const struct gw_hlist *h, const char *name, size_t nlen, int idx,
                 const char **v, size_t *vlen)
{
    if (!(h->lens >> (nlen & 63) & 1))
        return GW_DECLINED;
    for (int i = 0; i < h->n; i++) {
        const struct gw_hview *e = &h->v[i];
        if (e->nlen == nlen && strncasecmp(e->name, name, nlen) == 0 && idx-- == 0) {
            *v = e->value;
            *vlen = e->vlen;
            return GW_OK;
        }
    }
    return GW_DECLINED;
}

void gw_hlist_remove(struct gw_hlist *h, const char *name, size_t nlen)
{
    /* a name whose length bit is clear is not in the list */
    if (!(h->lens >> (nlen & 63) & 1))
        return;
    /* find the first entry of that name (most names set are new: no
     * copying then), and compact the list from there */
    int i = 0;
    while (i < h->n && !(h->v[i].nlen == nlen && strncasecmp(h->v[i].name, name, nlen) == 0))
        i++;
    if (i < h->n) {
        int j = i;
        for (i++; i < h->n; i++) {
            struct gw_hview *e = &h->v[i];
            if (e->nlen == nlen && strncasecmp(e->name, name, nlen) == 0)
                continue;
            h->v[j++] = *e;
        }
        h->n = j;
    }
}

int gw_hlist_apply(struct gw_pool *p, struct gw_hlist *h, int op, const char *name, size_t nlen,
                   const char *value, size_t vlen)
{
    if (op == GW_HDR_SET || op == GW_HDR_CLEAR) {
        gw_hlist_remove(h, name, nlen);
        if (op == GW_HDR_CLEAR)
            return GW_OK;
    }
    /* name and value in one allocation, each NUL-terminated */
    char *n = gw_pool_alloc(p, nlen + vlen + 2);
    if (n == NULL)
        return GW_ERROR;
    memcpy(n, name, nlen);
    n[nlen] = '\0';
    char *v = n + nlen + 1;
    if (vlen)
        memcpy(v, value, vlen);
    v[vlen] = '\0';
    return gw_hlist_push(p, h, n, nlen, v, vlen);
}
