/* Shared dictionaries (ngx.shared.<name>).
 *
 * A zone is one anonymous MAP_SHARED mapping made by the master before fork:
 *
 *   [struct gw_shdict | bucket array | heap ..................................]
 *
 * The header holds a robust process-shared mutex that guards everything
 * else. The heap is managed by a boundary-tag allocator (header and footer
 * word per block, immediate coalescing, segregated free lists by power of
 * two) so memory is bounded by the zone and nothing is malloc()ed for
 * entries. Entries are chained in a fixed-size hash table and in one LRU
 * list (head = most recently used) that eviction walks from the tail.
 *
 * Pointers inside the zone are plain pointers: the zone is mapped once,
 * before fork, so it sits at the same address in every worker.
 *
 * Expiry times are absolute CLOCK_MONOTONIC milliseconds, a system-wide clock
 * every process reads the same way.
 *
 * A worker that dies holding the lock leaves EOWNERDEAD to the next locker.
 * Each locked section sets `dirty` while it may be rewriting structures; if
 * the dead owner left it set the zone is wiped (its content is lost, never
 * corrupt), else it is kept. */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif

#include "gw/shdict.h"

#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

#define SHD_ALIGN 16            /* block sizes and addresses */
#define SHD_WORD sizeof(size_t) /* block header / footer */
#define SHD_MIN_BLOCK 32        /* header + two free-list links + footer */
#define SHD_NCLASS 48           /* free lists: class c holds sizes in [2^c, 2^(c+1)) */
#define SHD_USED ((size_t)1)    /* low bit of a header/footer word */
#define SHD_EXPIRE_SCAN 64      /* entries eviction looks at for an expired one */
#define SHD_INPLACE_SLACK 256   /* bytes an in-place update may leave unused */
#define SHD_BUCKET_BYTES 256    /* zone bytes per hash bucket */
#define SHD_MAX_TTL_MS ((int64_t)100 * 365 * 24 * 3600 * 1000)

/* A free block: the links live in what would be the payload. */
struct shd_free {
    size_t hdr;
    struct shd_free *next, *prev;
};

/* One list element (GW_SHDICT_TLIST), in its own heap block. */
struct shd_item {
    struct shd_item *prev, *next;
    size_t len;   /* string bytes in data */
    double num;   /* number value */
    uint8_t type; /* GW_SHDICT_TSTRING or GW_SHDICT_TNUMBER */
    char data[];
};

/* One entry, in one heap block: key bytes then the string value in data. */
struct shd_node {
    struct shd_node *hnext;         /* hash chain */
    struct shd_node *lprev, *lnext; /* LRU list, lprev toward the head (MRU) */
    int64_t expires;                /* CLOCK_MONOTONIC ms; 0 = never */
    size_t vlen;                    /* string: value bytes; list: element count */
    union {
        double num; /* number, boolean as 0/1 */
        struct {
            struct shd_item *head, *tail;
        } list;
    } v;
    uint32_t hash;
    uint32_t uflags; /* user flags */
    uint16_t klen;   /* key bytes, 1..65535 */
    uint8_t type;    /* GW_SHDICT_T* */
    uint32_t ver;    /* the zone's seq when the value last changed (stamp) */
    char data[];
};

struct gw_shdict {
    pthread_mutex_t mutex; /* robust, process-shared */
    char name[GW_SHDICT_NAME_MAX + 1];
    size_t size;        /* bytes mapped */
    int dirty;          /* 1 while a locked section may be mid-update */
    unsigned recovered; /* EOWNERDEAD seen */
    uint32_t nbuckets;  /* power of two */
    size_t nentries;    /* entries in the hash table, expired included */
    size_t free_bytes;  /* sum of free block sizes */
    uint64_t seq;       /* changes so far (values, removals, expiry times); never reset;
                         * written under the lock, read without it (gw_shdict_seq) */
    struct shd_node **buckets;
    char *heap, *heap_end; /* 16-aligned */
    struct shd_node *lru_head, *lru_tail;
    struct shd_free *free_lists[SHD_NCLASS];
};

struct shd_reg {
    size_t len;
    char name[GW_SHDICT_NAME_MAX + 1];
    struct gw_shdict *d;
};

static struct shd_reg *shd_registry;
static size_t shd_nreg;

/* time ------------------------------------------------------------------- */

static int64_t shd_now(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* Absolute expiry for a lifetime of s seconds; 0 (never) for s <= 0. A
 * positive lifetime under 1 ms still expires (after 1 ms). */
static int64_t shd_expiry(double s, int64_t now)
{
    int64_t ms;

    if (!(s > 0)) {
        return 0;
    }
    if (s * 1000 >= (double)SHD_MAX_TTL_MS) {
        ms = SHD_MAX_TTL_MS;
    } else {
        ms = (int64_t)(s * 1000);
        if (ms < 1) {
            ms = 1;
        }
    }
    return now + ms;
}

static int shd_expired(const struct shd_node *n, int64_t now)
{
    return n->expires != 0 && n->expires <= now;
}

/* heap ------------------------------------------------------------------- */

static size_t shd_bsize(const void *b)
{
    return *(const size_t *)b & ~SHD_USED;
}

static void shd_bset(char *b, size_t size, size_t used)
{
    *(size_t *)b = size | used;
    *(size_t *)(b + size - SHD_WORD) = size | used;
}

static int shd_class(size_t size)
{
    int c = 63 - __builtin_clzll((unsigned long long)size);

    return c < SHD_NCLASS ? c : SHD_NCLASS - 1;
}

static void shd_flist_add(struct gw_shdict *d, char *b, size_t size)
{
    struct shd_free *f = (struct shd_free *)b;
    int c = shd_class(size);

    shd_bset(b, size, 0);
    f->prev = NULL;
    f->next = d->free_lists[c];
    if (f->next) {
        f->next->prev = f;
    }
    d->free_lists[c] = f;
    d->free_bytes += size;
}

static void shd_flist_del(struct gw_shdict *d, struct shd_free *f)
{
    size_t size = shd_bsize(f);

    if (f->prev) {
        f->prev->next = f->next;
    } else {
        d->free_lists[shd_class(size)] = f->next;
    }
    if (f->next) {
        f->next->prev = f->prev;
    }
    d->free_bytes -= size;
}

/* Block size serving a payload of n bytes. */
static size_t shd_block_for(size_t n)
{
    size_t size = (n + 2 * SHD_WORD + SHD_ALIGN - 1) & ~(size_t)(SHD_ALIGN - 1);

    return size < SHD_MIN_BLOCK ? SHD_MIN_BLOCK : size;
}

/* Payload bytes of the block holding payload p. */
static size_t shd_capacity(const void *p)
{
    return shd_bsize((const char *)p - SHD_WORD) - 2 * SHD_WORD;
}

/* Allocates a payload of n bytes from the zone heap, or NULL. */
static void *shd_alloc(struct gw_shdict *d, size_t n)
{
    size_t want, size;
    struct shd_free *f = NULL;
    char *b;
    int c;

    if (n > (size_t)(d->heap_end - d->heap)) {
        return NULL;
    }
    want = shd_block_for(n);
    c = shd_class(want);
    /* first fit in want's own class, then anything in a bigger one */
    for (f = d->free_lists[c]; f != NULL; f = f->next) {
        if (shd_bsize(f) >= want) {
            break;
        }
    }
    for (c++; f == NULL && c < SHD_NCLASS; c++) {
        f = d->free_lists[c];
    }
    if (f == NULL) {
        return NULL;
    }
    shd_flist_del(d, f);
    b = (char *)f;
    size = shd_bsize(b);
    if (size - want >= SHD_MIN_BLOCK) {
        shd_flist_add(d, b + want, size - want);
        size = want;
    }
    shd_bset(b, size, SHD_USED);
    return b + SHD_WORD;
}

/* Returns payload p to the heap, merged with free neighbours. */
static void shd_free_block(struct gw_shdict *d, void *p)
{
    char *b = (char *)p - SHD_WORD;
    size_t size = shd_bsize(b);
    char *next = b + size;

    if (next < d->heap_end && !(*(size_t *)next & SHD_USED)) {
        size += shd_bsize(next);
        shd_flist_del(d, (struct shd_free *)next);
    }
    if (b > d->heap) {
        size_t prev = *(size_t *)(b - SHD_WORD);

        if (!(prev & SHD_USED)) {
            b -= prev;
            size += prev;
            shd_flist_del(d, (struct shd_free *)b);
        }
    }
    shd_flist_add(d, b, size);
}

/* entries ---------------------------------------------------------------- */

/* Hash of a key, 8 bytes per step (multiply and fold): keys such as the
 * rate-limiting counters' (over 100 bytes) cost a byte-at-a-time hash some
 * 650 instructions. Every process attached to a dictionary runs this same
 * binary, so the buckets agree. */
static uint32_t shd_hash(const char *key, size_t len)
{
    const uint64_t m = 0x9e3779b97f4a7c15u;
    uint64_t h = 0x6a09e667f3bcc908u ^ (len * m);
    uint64_t w;

    while (len >= 8) {
        memcpy(&w, key, 8);
        h = (h ^ w) * m;
        h ^= h >> 29;
        key += 8;
        len -= 8;
    }
    if (len > 0) {
        w = 0;
        memcpy(&w, key, len);
        h = (h ^ w) * m;
        h ^= h >> 29;
    }
    h *= 0xbf58476d1ce4e5b9u; /* spread every bit into the low ones */
    h ^= h >> 32;
    return (uint32_t)h;
}

static struct shd_node *shd_lookup(struct gw_shdict *d, const char *key, size_t klen, uint32_t hash)
{
    struct shd_node *n;

    for (n = d->buckets[hash & (d->nbuckets - 1)]; n != NULL; n = n->hnext) {
        if (n->hash == hash && n->klen == klen && memcmp(n->data, key, klen) == 0) {
            return n;
        }
    }
    return NULL;
}

static void shd_lru_unlink(struct gw_shdict *d, struct shd_node *n)
{
    if (n->lprev) {
        n->lprev->lnext = n->lnext;
    } else {
        d->lru_head = n->lnext;
    }
    if (n->lnext) {
        n->lnext->lprev = n->lprev;
    } else {
        d->lru_tail = n->lprev;
    }
}

static void shd_lru_push(struct gw_shdict *d, struct shd_node *n)
{
    n->lprev = NULL;
    n->lnext = d->lru_head;
    if (d->lru_head) {
        d->lru_head->lprev = n;
    } else {
        d->lru_tail = n;
    }
    d->lru_head = n;
}

static void shd_touch(struct gw_shdict *d, struct shd_node *n)
{
    if (d->lru_head != n) {
        shd_lru_unlink(d, n);
        shd_lru_push(d, n);
    }
}

/* Counts a change of the zone (gw_shdict_seq); returns the new count. */
static uint64_t shd_changed(struct gw_shdict *d)
{
    uint64_t seq = d->seq + 1;

    __atomic_store_n(&d->seq, seq, __ATOMIC_RELEASE);
    return seq;
}

/* Gives n's value a new version (gw_ffi_shdict_stamp). */
static void shd_bump(struct gw_shdict *d, struct shd_node *n)
{
    n->ver = (uint32_t)shd_changed(d);
}

/* Links a filled node into the hash table and at the LRU head. */
static void shd_insert(struct gw_shdict *d, struct shd_node *n)
{
    struct shd_node **bucket = &d->buckets[n->hash & (d->nbuckets - 1)];

    n->hnext = *bucket;
    *bucket = n;
    shd_lru_push(d, n);
    d->nentries++;
}

/* Unlinks n everywhere and frees it with its list elements. */
static void shd_remove(struct gw_shdict *d, struct shd_node *n)
{
    struct shd_node **pp = &d->buckets[n->hash & (d->nbuckets - 1)];
    struct shd_item *it, *next;

    while (*pp != n) {
        pp = &(*pp)->hnext;
    }
    *pp = n->hnext;
    shd_lru_unlink(d, n);
    if (n->type == GW_SHDICT_TLIST) {
        for (it = n->v.list.head; it != NULL; it = next) {
            next = it->next;
            shd_free_block(d, it);
        }
    }
    shd_free_block(d, n);
    d->nentries--;
    shd_changed(d);
}

/* Frees one expired entry among the SHD_EXPIRE_SCAN least recently used
 * ones, never `keep`. Returns 1 if one was freed. */
static int shd_evict_expired(struct gw_shdict *d, int64_t now, const struct shd_node *keep)
{
    struct shd_node *n;
    int i;

    for (n = d->lru_tail, i = 0; n != NULL && i < SHD_EXPIRE_SCAN; n = n->lprev, i++) {
        if (n != keep && shd_expired(n, now)) {
            shd_remove(d, n);
            return 1;
        }
    }
    return 0;
}

/* Allocates n bytes, freeing expired entries and, unless safe, the least
 * recently used live ones (setting *forcible) until it fits. `keep` is never
 * evicted. NULL when it cannot fit. */
static void *shd_alloc_evict(struct gw_shdict *d, size_t n, int safe, int64_t now,
                             const struct shd_node *keep, int *forcible)
{
    void *p;
    struct shd_node *victim;

    /* a couple of expired entries go on every allocation, as in nginx, so
     * that expired data does not linger until memory runs out */
    if (shd_evict_expired(d, now, keep)) {
        shd_evict_expired(d, now, keep);
    }

    for (;;) {
        p = shd_alloc(d, n);
        if (p != NULL || n > (size_t)(d->heap_end - d->heap)) {
            return p;
        }
        if (shd_evict_expired(d, now, keep)) {
            continue;
        }
        if (safe) {
            return NULL;
        }
        victim = d->lru_tail;
        if (victim == keep && victim != NULL) {
            victim = victim->lprev;
        }
        if (victim == NULL) {
            return NULL;
        }
        shd_remove(d, victim);
        *forcible = 1;
    }
}

/* locking ---------------------------------------------------------------- */

static void shd_reset(struct gw_shdict *d)
{
    shd_changed(d);
    memset(d->buckets, 0, d->nbuckets * sizeof(*d->buckets));
    memset(d->free_lists, 0, sizeof(d->free_lists));
    d->lru_head = d->lru_tail = NULL;
    d->nentries = 0;
    d->free_bytes = 0;
    shd_flist_add(d, d->heap, (size_t)(d->heap_end - d->heap));
}

/* Locks the zone for a section that may modify it. On EOWNERDEAD the zone is
 * made consistent again (wiped when the dead owner was mid-update). */
static int shd_lock(struct gw_shdict *d)
{
    int rc = pthread_mutex_lock(&d->mutex);

    if (rc == EOWNERDEAD) {
        d->recovered++;
        if (d->dirty) {
            fprintf(stderr, "shdict \"%s\": a process died while updating it; wiped\n", d->name);
            shd_reset(d);
        }
        rc = pthread_mutex_consistent(&d->mutex);
    }
    if (rc != 0) {
        return GW_ERROR;
    }
    d->dirty = 1;
    return GW_OK;
}

static void shd_unlock(struct gw_shdict *d)
{
    d->dirty = 0;
    pthread_mutex_unlock(&d->mutex);
}

/* checks key and takes the lock; `return` from the caller on failure */
#define SHD_ENTER(d, key, klen, err)                                                               \
    do {                                                                                           \
        if ((klen) == 0 || (key) == NULL) {                                                        \
            *(err) = "empty key";                                                                  \
            return GW_ERROR;                                                                       \
        }                                                                                          \
        if ((klen) > GW_SHDICT_KEY_MAX) {                                                          \
            *(err) = "key too long";                                                               \
            return GW_ERROR;                                                                       \
        }                                                                                          \
        if (shd_lock(d) != GW_OK) {                                                                \
            *(err) = "lock failed";                                                                \
            return GW_ERROR;                                                                       \
        }                                                                                          \
    } while (0)

/* Copies len bytes out to *buf (caller's, capacity *blen) or a malloc()ed
 * buffer when longer. */
static int shd_copy_out(const char *src, size_t len, char **buf, size_t *blen, const char **err)
{
    if (len > *blen) {
        char *p = malloc(len);

        if (p == NULL) {
            *err = "no memory";
            return GW_ERROR;
        }
        *buf = p;
    }
    memcpy(*buf, src, len);
    *blen = len;
    return GW_OK;
}

/* registry --------------------------------------------------------------- */

int gw_shdict_create(const char *name, size_t size)
{
    size_t len = strlen(name), page = (size_t)sysconf(_SC_PAGESIZE), nb, hdr;
    struct shd_reg *reg;
    pthread_mutexattr_t ma;
    struct gw_shdict *d;
    void *p;
    int rc;

    if (len == 0 || len > GW_SHDICT_NAME_MAX || gw_shdict_find(name, len) != NULL) {
        fprintf(stderr, "shdict: bad or duplicate name \"%s\"\n", name);
        return GW_ERROR;
    }
    if (size < GW_SHDICT_MIN_SIZE) {
        size = GW_SHDICT_MIN_SIZE;
    }
    size = (size + page - 1) & ~(page - 1);
    reg = realloc(shd_registry, (shd_nreg + 1) * sizeof(*reg));
    if (reg == NULL) {
        fprintf(stderr, "shdict: realloc() failed\n");
        return GW_ERROR;
    }
    shd_registry = reg;

    p = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    if (p == MAP_FAILED) {
        fprintf(stderr, "shdict \"%s\": mmap() failed: %s\n", name, strerror(errno));
        return GW_ERROR;
    }
    d = p; /* the mapping is zero-filled */
    nb = 16;
    while (nb * SHD_BUCKET_BYTES < size) {
        nb <<= 1;
    }
    hdr = (sizeof(*d) + SHD_ALIGN - 1) & ~(size_t)(SHD_ALIGN - 1);
    d->size = size;
    d->nbuckets = (uint32_t)nb;
    d->buckets = (struct shd_node **)((char *)p + hdr);
    d->heap =
        (char *)p + hdr + ((nb * sizeof(*d->buckets) + SHD_ALIGN - 1) & ~(size_t)(SHD_ALIGN - 1));
    d->heap_end = (char *)p + (size & ~(size_t)(SHD_ALIGN - 1));
    memcpy(d->name, name, len);
    shd_reset(d);

    if ((rc = pthread_mutexattr_init(&ma)) != 0 ||
        (rc = pthread_mutexattr_setpshared(&ma, PTHREAD_PROCESS_SHARED)) != 0 ||
        (rc = pthread_mutexattr_setrobust(&ma, PTHREAD_MUTEX_ROBUST)) != 0 ||
        (rc = pthread_mutex_init(&d->mutex, &ma)) != 0) {
        fprintf(stderr, "shdict \"%s\": pthread mutex setup failed: %s\n", name, strerror(rc));
        munmap(p, size);
        return GW_ERROR;
    }
    pthread_mutexattr_destroy(&ma);

    reg = &shd_registry[shd_nreg++];
    reg->len = len;
    memcpy(reg->name, name, len + 1);
    reg->d = d;
    return GW_OK;
}

struct gw_shdict *gw_shdict_find(const char *name, size_t len)
{
    size_t i;

    for (i = 0; i < shd_nreg; i++) {
        if (shd_registry[i].len == len && memcmp(shd_registry[i].name, name, len) == 0) {
            return shd_registry[i].d;
        }
    }
    return NULL;
}

void gw_shdict_destroy_all(void)
{
    size_t i;

    for (i = 0; i < shd_nreg; i++) {
        pthread_mutex_destroy(&shd_registry[i].d->mutex);
        munmap(shd_registry[i].d, shd_registry[i].d->size);
    }
    free(shd_registry);
    shd_registry = NULL;
    shd_nreg = 0;
}

/* FFI -------------------------------------------------------------------- */

struct gw_shdict *gw_ffi_shdict_find(const char *name, size_t len)
{
    return gw_shdict_find(name, len);
}

void gw_ffi_shdict_free(void *p)
{
    free(p);
}

int gw_ffi_shdict_get(struct gw_shdict *d, const char *key, size_t klen, int *type, char **buf,
                      size_t *len, double *num, uint32_t *flags, int get_stale, int *stale,
                      const char **err)
{
    struct shd_node *n;
    int rc = GW_OK, expired;

    SHD_ENTER(d, key, klen, err);
    *type = GW_SHDICT_TNIL;
    *stale = 0;
    n = shd_lookup(d, key, klen, shd_hash(key, klen));
    if (n == NULL) {
        goto done;
    }
    expired = shd_expired(n, shd_now());
    if (expired && !get_stale) {
        goto done;
    }
    if (n->type == GW_SHDICT_TLIST) {
        *err = "value is a list";
        rc = GW_ERROR;
        goto done;
    }
    if (n->type == GW_SHDICT_TSTRING) {
        rc = shd_copy_out(n->data + n->klen, n->vlen, buf, len, err);
        if (rc != GW_OK) {
            goto done;
        }
    } else {
        *num = n->v.num;
    }
    *type = n->type;
    *flags = n->uflags;
    *stale = expired;
    if (!expired) {
        shd_touch(d, n);
    }
done:
    shd_unlock(d);
    return rc;
}

int gw_ffi_shdict_store(struct gw_shdict *d, int op, const char *key, size_t klen, int type,
                        const char *str, size_t len, double num, double exptime, uint32_t flags,
                        int *forcible, const char **err)
{
    struct shd_node *n;
    uint32_t hash;
    size_t need;
    int64_t now;
    int safe = op == GW_SHDICT_SAFE_SET || op == GW_SHDICT_SAFE_ADD;
    int rc = GW_OK;

    *forcible = 0;
    if (type != GW_SHDICT_TNIL && type != GW_SHDICT_TBOOLEAN && type != GW_SHDICT_TNUMBER &&
        type != GW_SHDICT_TSTRING) {
        *err = "bad value type";
        return GW_ERROR;
    }
    if (type != GW_SHDICT_TSTRING) {
        len = 0;
    }
    SHD_ENTER(d, key, klen, err);
    need = sizeof(struct shd_node) + klen + len;
    hash = shd_hash(key, klen);
    now = shd_now();
    n = shd_lookup(d, key, klen, hash);
    if (n != NULL && shd_expired(n, now) && op != GW_SHDICT_SET && op != GW_SHDICT_SAFE_SET) {
        shd_remove(d, n); /* add/replace treat it as absent */
        n = NULL;
    }
    if (op == GW_SHDICT_ADD || op == GW_SHDICT_SAFE_ADD) {
        if (n != NULL) {
            *err = "exists";
            rc = GW_DECLINED;
            goto done;
        }
    } else if (op == GW_SHDICT_REPLACE && n == NULL) {
        *err = "not found";
        rc = GW_DECLINED;
        goto done;
    }
    if (type == GW_SHDICT_TNIL) {
        if (n != NULL) {
            shd_remove(d, n);
        }
        goto done;
    }
    if (n != NULL && n->type != GW_SHDICT_TLIST && need <= shd_capacity(n) &&
        shd_capacity(n) - need <= SHD_INPLACE_SLACK) {
        shd_touch(d, n);
    } else {
        if (n != NULL) {
            shd_remove(d, n);
        }
        n = shd_alloc_evict(d, need, safe, now, NULL, forcible);
        if (n == NULL) {
            *err = "no memory";
            rc = GW_ERROR;
            goto done;
        }
        n->hash = hash;
        n->klen = (uint16_t)klen;
        memcpy(n->data, key, klen);
        shd_insert(d, n);
    }
    n->type = (uint8_t)type;
    n->uflags = flags;
    n->expires = shd_expiry(exptime, now);
    n->vlen = len;
    shd_bump(d, n);
    if (type == GW_SHDICT_TSTRING) {
        if (len > 0) {
            memcpy(n->data + klen, str, len);
        }
    } else if (type == GW_SHDICT_TBOOLEAN) {
        n->v.num = num != 0;
    } else {
        n->v.num = num;
    }
done:
    shd_unlock(d);
    return rc;
}

int gw_ffi_shdict_incr(struct gw_shdict *d, const char *key, size_t klen, double by, int has_init,
                       double init, double init_ttl, double *out, int *forcible, const char **err)
{
    struct shd_node *n;
    uint32_t hash;
    int64_t now;
    int rc = GW_OK;

    *forcible = 0;
    SHD_ENTER(d, key, klen, err);
    hash = shd_hash(key, klen);
    now = shd_now();
    n = shd_lookup(d, key, klen, hash);
    if (n != NULL && !shd_expired(n, now)) {
        if (n->type != GW_SHDICT_TNUMBER) {
            *err = "not a number";
            rc = GW_ERROR;
            goto done;
        }
        n->v.num += by;
        *out = n->v.num;
        shd_bump(d, n);
        shd_touch(d, n);
        goto done;
    }
    if (!has_init) {
        *err = "not found";
        rc = GW_DECLINED;
        goto done;
    }
    if (n != NULL) {
        shd_remove(d, n);
    }
    n = shd_alloc_evict(d, sizeof(*n) + klen, 0, now, NULL, forcible);
    if (n == NULL) {
        *err = "no memory";
        rc = GW_ERROR;
        goto done;
    }
    n->hash = hash;
    n->klen = (uint16_t)klen;
    memcpy(n->data, key, klen);
    n->type = GW_SHDICT_TNUMBER;
    n->uflags = 0;
    n->vlen = 0;
    n->expires = shd_expiry(init_ttl, now);
    n->v.num = init + by;
    *out = n->v.num;
    shd_bump(d, n);
    shd_insert(d, n);
done:
    shd_unlock(d);
    return rc;
}

int gw_ffi_shdict_flush_all(struct gw_shdict *d)
{
    struct shd_node *n;

    if (shd_lock(d) != GW_OK) {
        return GW_ERROR;
    }
    for (n = d->lru_head; n != NULL; n = n->lnext) {
        n->expires = 1; /* long past on the monotonic clock */
    }
    shd_changed(d);
    shd_unlock(d);
    return GW_OK;
}

int gw_ffi_shdict_flush_expired(struct gw_shdict *d, int max, int *n)
{
    struct shd_node *e, *prev;
    int64_t now;

    *n = 0;
    if (shd_lock(d) != GW_OK) {
        return GW_ERROR;
    }
    now = shd_now();
    for (e = d->lru_tail; e != NULL && (max <= 0 || *n < max); e = prev) {
        prev = e->lprev;
        if (shd_expired(e, now)) {
            shd_remove(d, e);
            (*n)++;
        }
    }
    shd_unlock(d);
    return GW_OK;
}

int gw_ffi_shdict_get_keys(struct gw_shdict *d, int max, char **out, size_t *outlen, int *n)
{
    struct shd_node *e;
    size_t total = 0;
    int64_t now;
    int count = 0;
    char *p;

    *out = NULL;
    *outlen = 0;
    *n = 0;
    if (shd_lock(d) != GW_OK) {
        return GW_ERROR;
    }
    now = shd_now();
    for (e = d->lru_head; e != NULL && (max <= 0 || count < max); e = e->lnext) {
        if (!shd_expired(e, now)) {
            total += 2 + e->klen;
            count++;
        }
    }
    if (count == 0) {
        goto done;
    }
    p = malloc(total);
    if (p == NULL) {
        shd_unlock(d);
        return GW_ERROR;
    }
    *out = p;
    *outlen = total;
    *n = count;
    for (e = d->lru_head; count > 0; e = e->lnext) {
        if (!shd_expired(e, now)) {
            p[0] = (char)(e->klen >> 8);
            p[1] = (char)(e->klen & 0xff);
            memcpy(p + 2, e->data, e->klen);
            p += 2 + e->klen;
            count--;
        }
    }
done:
    shd_unlock(d);
    return GW_OK;
}

int gw_ffi_shdict_ttl(struct gw_shdict *d, const char *key, size_t klen, int64_t *ttl_ms,
                      const char **err)
{
    struct shd_node *n;
    int64_t now;
    int rc = GW_OK;

    SHD_ENTER(d, key, klen, err);
    now = shd_now();
    n = shd_lookup(d, key, klen, shd_hash(key, klen));
    if (n == NULL || shd_expired(n, now)) {
        *err = "not found";
        rc = GW_DECLINED;
    } else {
        *ttl_ms = n->expires == 0 ? 0 : n->expires - now;
    }
    shd_unlock(d);
    return rc;
}

int gw_ffi_shdict_stamp(struct gw_shdict *d, const char *key, size_t klen, uint32_t *ver,
                        int64_t *expires, const char **err)
{
    struct shd_node *n;
    int rc = GW_OK;

    SHD_ENTER(d, key, klen, err);
    n = shd_lookup(d, key, klen, shd_hash(key, klen));
    if (n == NULL || shd_expired(n, shd_now())) {
        *err = "not found";
        rc = GW_DECLINED;
    } else {
        *ver = n->ver;
        *expires = n->expires;
        shd_touch(d, n);
    }
    shd_unlock(d);
    return rc;
}

uint64_t gw_shdict_seq(const struct gw_shdict *d)
{
    return __atomic_load_n(&d->seq, __ATOMIC_ACQUIRE);
}

int64_t gw_shdict_now(void)
{
    return shd_now();
}

int gw_shdict_stamps(struct gw_shdict *d, struct gw_shdict_stamp *q, int n, uint64_t *seq)
{
    int64_t now;

    if (shd_lock(d) != GW_OK) {
        return GW_ERROR;
    }
    now = shd_now();
    for (int i = 0; i < n; i++) {
        struct shd_node *e = shd_lookup(d, q[i].key, q[i].klen, shd_hash(q[i].key, q[i].klen));

        if (e == NULL || shd_expired(e, now)) {
            q[i].present = 0;
            q[i].ver = 0;
            q[i].expires = 0;
        } else {
            q[i].present = 1;
            q[i].ver = e->ver;
            q[i].expires = e->expires;
        }
    }
    *seq = d->seq;
    shd_unlock(d);
    return GW_OK;
}

int gw_ffi_shdict_expire(struct gw_shdict *d, const char *key, size_t klen, double exptime,
                         const char **err)
{
    struct shd_node *n;
    int64_t now;
    int rc = GW_OK;

    SHD_ENTER(d, key, klen, err);
    now = shd_now();
    n = shd_lookup(d, key, klen, shd_hash(key, klen));
    if (n == NULL || shd_expired(n, now)) {
        *err = "not found";
        rc = GW_DECLINED;
    } else {
        n->expires = shd_expiry(exptime, now);
        shd_changed(d);
    }
    shd_unlock(d);
    return rc;
}

size_t gw_ffi_shdict_capacity(struct gw_shdict *d)
{
    return d->size;
}

size_t gw_ffi_shdict_free_space(struct gw_shdict *d)
{
    size_t n;

    if (shd_lock(d) != GW_OK) {
        return 0;
    }
    n = d->free_bytes;
    shd_unlock(d);
    return n;
}

/* lists ------------------------------------------------------------------ */

int gw_ffi_shdict_push(struct gw_shdict *d, int right, const char *key, size_t klen, int type,
                       const char *str, size_t len, double num, size_t *out_len, const char **err)
{
    struct shd_node *n;
    struct shd_item *it;
    uint32_t hash;
    int64_t now;
    int rc = GW_OK, created = 0, forcible = 0;

    if (type != GW_SHDICT_TSTRING && type != GW_SHDICT_TNUMBER) {
        *err = "bad value type";
        return GW_ERROR;
    }
    if (type != GW_SHDICT_TSTRING) {
        len = 0;
    }
    SHD_ENTER(d, key, klen, err);
    hash = shd_hash(key, klen);
    now = shd_now();
    n = shd_lookup(d, key, klen, hash);
    if (n != NULL && shd_expired(n, now)) {
        shd_remove(d, n);
        n = NULL;
    }
    if (n != NULL && n->type != GW_SHDICT_TLIST) {
        *err = "value not a list";
        rc = GW_ERROR;
        goto done;
    }
    if (n == NULL) {
        n = shd_alloc_evict(d, sizeof(*n) + klen, 1, now, NULL, &forcible);
        if (n == NULL) {
            goto nomem;
        }
        n->hash = hash;
        n->klen = (uint16_t)klen;
        memcpy(n->data, key, klen);
        n->type = GW_SHDICT_TLIST;
        n->uflags = 0;
        n->vlen = 0;
        n->expires = 0;
        n->v.list.head = n->v.list.tail = NULL;
        shd_insert(d, n);
        created = 1;
    }
    it = shd_alloc_evict(d, sizeof(*it) + len, 1, now, n, &forcible);
    if (it == NULL) {
        if (created) {
            shd_remove(d, n);
        }
        goto nomem;
    }
    it->type = (uint8_t)type;
    it->len = len;
    it->num = num;
    if (len > 0) {
        memcpy(it->data, str, len);
    }
    if (right) {
        it->next = NULL;
        it->prev = n->v.list.tail;
        if (it->prev) {
            it->prev->next = it;
        } else {
            n->v.list.head = it;
        }
        n->v.list.tail = it;
    } else {
        it->prev = NULL;
        it->next = n->v.list.head;
        if (it->next) {
            it->next->prev = it;
        } else {
            n->v.list.tail = it;
        }
        n->v.list.head = it;
    }
    n->vlen++;
    *out_len = n->vlen;
    shd_bump(d, n);
    shd_touch(d, n);
    goto done;
nomem:
    *err = "no memory";
    rc = GW_ERROR;
done:
    shd_unlock(d);
    return rc;
}

int gw_ffi_shdict_pop(struct gw_shdict *d, int right, const char *key, size_t klen, int *type,
                      char **buf, size_t *len, double *num, const char **err)
{
    struct shd_node *n;
    struct shd_item *it;
    int rc = GW_OK;

    SHD_ENTER(d, key, klen, err);
    *type = GW_SHDICT_TNIL;
    n = shd_lookup(d, key, klen, shd_hash(key, klen));
    if (n == NULL || shd_expired(n, shd_now())) {
        goto done;
    }
    if (n->type != GW_SHDICT_TLIST) {
        *err = "value not a list";
        rc = GW_ERROR;
        goto done;
    }
    it = right ? n->v.list.tail : n->v.list.head;
    if (it->type == GW_SHDICT_TSTRING) {
        rc = shd_copy_out(it->data, it->len, buf, len, err);
        if (rc != GW_OK) {
            goto done; /* nothing popped */
        }
    } else {
        *num = it->num;
    }
    *type = it->type;
    if (it->prev) {
        it->prev->next = it->next;
    } else {
        n->v.list.head = it->next;
    }
    if (it->next) {
        it->next->prev = it->prev;
    } else {
        n->v.list.tail = it->prev;
    }
    shd_free_block(d, it);
    if (--n->vlen == 0) {
        shd_remove(d, n);
    } else {
        shd_bump(d, n);
        shd_touch(d, n);
    }
done:
    shd_unlock(d);
    return rc;
}

int gw_ffi_shdict_llen(struct gw_shdict *d, const char *key, size_t klen, size_t *out_len,
                       const char **err)
{
    struct shd_node *n;
    int rc = GW_OK;

    SHD_ENTER(d, key, klen, err);
    *out_len = 0;
    n = shd_lookup(d, key, klen, shd_hash(key, klen));
    if (n != NULL && !shd_expired(n, shd_now())) {
        if (n->type != GW_SHDICT_TLIST) {
            *err = "value not a list";
            rc = GW_ERROR;
        } else {
            *out_len = n->vlen;
        }
    }
    shd_unlock(d);
    return rc;
}

/* tests ------------------------------------------------------------------ */

int gw__shdict_test_lock(struct gw_shdict *d, int dirty)
{
    if (shd_lock(d) != GW_OK) {
        return GW_ERROR;
    }
    d->dirty = dirty;
    return GW_OK;
}

int gw__shdict_check(struct gw_shdict *d, size_t *nentries, unsigned *recovered, const char **err)
{
    struct shd_node *n, *prev = NULL;
    struct shd_free *f;
    size_t free_sum = 0, free_listed = 0, lru = 0, hashed = 0, i;
    int rc = GW_ERROR, c, prev_free = 0;
    char *b;

    if (shd_lock(d) != GW_OK) {
        *err = "lock failed";
        return GW_ERROR;
    }
    for (b = d->heap; b < d->heap_end; b += shd_bsize(b)) {
        size_t size = shd_bsize(b), used = *(size_t *)b & SHD_USED;

        if (size < SHD_MIN_BLOCK || size % SHD_ALIGN != 0 || b + size > d->heap_end ||
            *(size_t *)(b + size - SHD_WORD) != (size | used)) {
            *err = "bad block header or footer";
            goto done;
        }
        if (!used && prev_free) {
            *err = "two adjacent free blocks";
            goto done;
        }
        prev_free = !used;
        free_sum += used ? 0 : size;
    }
    for (c = 0; c < SHD_NCLASS; c++) {
        for (f = d->free_lists[c]; f != NULL; f = f->next) {
            if (shd_class(shd_bsize(f)) != c || (f->hdr & SHD_USED)) {
                *err = "free list holds a wrong block";
                goto done;
            }
            free_listed += shd_bsize(f);
        }
    }
    if (free_sum != d->free_bytes || free_listed != d->free_bytes) {
        *err = "free byte count mismatch";
        goto done;
    }
    for (n = d->lru_head; n != NULL; prev = n, n = n->lnext) {
        if (n->lprev != prev) {
            *err = "broken LRU links";
            goto done;
        }
        lru++;
    }
    if (prev != d->lru_tail) {
        *err = "bad LRU tail";
        goto done;
    }
    for (i = 0; i < d->nbuckets; i++) {
        for (n = d->buckets[i]; n != NULL; n = n->hnext) {
            if ((n->hash & (d->nbuckets - 1)) != i) {
                *err = "entry in the wrong bucket";
                goto done;
            }
            hashed++;
        }
    }
    if (lru != d->nentries || hashed != d->nentries) {
        *err = "entry count mismatch";
        goto done;
    }
    *nentries = d->nentries;
    *recovered = d->recovered;
    rc = GW_OK;
done:
    shd_unlock(d);
    return rc;
}
