/* Shared dictionaries: functions. See shdict-t.h for the model and
 * docs/shared-dict.md for the Lua API built on top (luagate.shdict).
 *
 * Conventions of the gw_ffi_shdict_* functions (called from Lua through the
 * FFI): plain C types, results in out-parameters, return GW_OK, GW_DECLINED
 * (a "not found"/"exists" outcome, reason in *err) or GW_ERROR (reason in
 * *err); *err is always static text. They never longjmp, never touch a
 * lua_State and take the zone lock for their whole duration. Keys are
 * binary-safe (pointer + length, 1..GW_SHDICT_KEY_MAX bytes). Expiry times
 * are seconds from now (millisecond resolution); 0 means never. */
#ifndef GW_SHDICT_H
#define GW_SHDICT_H

#include <stddef.h>
#include <stdint.h>

#include "gw/shdict-t.h"

/* Maps a zone of `size` bytes (rounded up to GW_SHDICT_MIN_SIZE and to the
 * page size) and registers it under `name`. Called by the master before
 * fork; the registry is a process-global table the workers inherit. Not
 * thread-safe. Returns GW_OK, or GW_ERROR on a bad or duplicate name or a
 * failed mmap() (logged to stderr with errno). */
int gw_shdict_create(const char *name, size_t size);

/* The dictionary registered under name[0..len), or NULL. */
struct gw_shdict *gw_shdict_find(const char *name, size_t len);

/* Unmaps every zone and empties the registry (tests, master shutdown). Any
 * gw_shdict pointer obtained before becomes invalid. */
void gw_shdict_destroy_all(void);

/* FFI ------------------------------------------------------------------- */

/* Same as gw_shdict_find. */
struct gw_shdict *gw_ffi_shdict_find(const char *name, size_t len);

/* Frees a buffer that a gw_ffi_shdict_* function malloc()ed (values larger
 * than the caller's buffer, get_keys). NULL is fine. */
void gw_ffi_shdict_free(void *p);

/* Reads key. On GW_OK *type is GW_SHDICT_TNIL when there is no such key (or
 * it expired and get_stale is 0), else the value is in *num (number; boolean
 * as 0/1) or *buf and *len (string) and the user flags in *flags; *stale is 1 when
 * the entry has expired (only with get_stale). On entry *buf and *len describe a
 * caller buffer; a longer string is copied into a malloc()ed buffer that
 * replaces *buf and that the caller frees with gw_ffi_shdict_free. A live
 * entry becomes the most recently used. GW_ERROR: "value is a list",
 * "no memory" (malloc failed), key errors. */
int gw_ffi_shdict_get(struct gw_shdict *d, const char *key, size_t klen, int *type, char **buf,
                      size_t *len, double *num, uint32_t *flags, int get_stale, int *stale,
                      const char **err);

/* Stores a value with op GW_SHDICT_SET/ADD/REPLACE/SAFE_SET/SAFE_ADD. type
 * GW_SHDICT_TNIL deletes. *forcible is set to 1 when unexpired entries were
 * evicted to make room. GW_DECLINED: "exists" (add), "not found" (replace);
 * GW_ERROR: "no memory", "bad value type", key errors. As in nginx, a store
 * that needs a bigger block first frees the old entry, so a failed store of
 * an existing key leaves the key absent. */
int gw_ffi_shdict_store(struct gw_shdict *d, int op, const char *key, size_t klen, int type,
                        const char *str, size_t len, double num, double exptime, uint32_t flags,
                        int *forcible, const char **err);

/* Adds `by` to a number. A missing or expired key is created as init + by
 * with expiry init_ttl when has_init, else GW_DECLINED "not found". The new
 * value goes to *out. GW_ERROR: "not a number", "no memory". */
int gw_ffi_shdict_incr(struct gw_shdict *d, const char *key, size_t klen, double by, int has_init,
                       double init, double init_ttl, double *out, int *forcible, const char **err);

/* Marks every entry expired (they stay readable with get_stale until they
 * are reused or flushed). */
int gw_ffi_shdict_flush_all(struct gw_shdict *d);

/* Frees up to max expired entries (0: all); their count goes to *n. */
int gw_ffi_shdict_flush_expired(struct gw_shdict *d, int max, int *n);

/* Collects up to max (0: all) live keys, most recently used first, into one
 * malloc()ed buffer *out (NULL when none) that the caller frees with
 * gw_ffi_shdict_free: each key is a 2-byte big-endian length followed by
 * its bytes. *n = number of keys, *outlen = bytes. GW_ERROR:
 * "no memory". */
int gw_ffi_shdict_get_keys(struct gw_shdict *d, int max, char **out, size_t *outlen, int *n);

/* Remaining lifetime of key in *ttl_ms (0 = never expires). GW_DECLINED
 * "not found" for a missing or expired key. */
int gw_ffi_shdict_ttl(struct gw_shdict *d, const char *key, size_t klen, int64_t *ttl_ms,
                      const char **err);

/* What identifies key's current value without copying it: *ver, the zone's
 * count of value changes when the value was last stored (set, incr, push,
 * pop; a key deleted and stored again gets a new one; it wraps at 2^32), and
 * *expires, its absolute CLOCK_MONOTONIC expiry in ms (0 = never). A cache
 * of the value elsewhere is current while both are unchanged. A live entry
 * becomes the most recently used, as with get. GW_DECLINED "not found" for a
 * missing or expired key. */
int gw_ffi_shdict_stamp(struct gw_shdict *d, const char *key, size_t klen, uint32_t *ver,
                        int64_t *expires, const char **err);

/* Sets key's expiry to exptime seconds from now (0: never). GW_DECLINED
 * "not found" for a missing or expired key. */
int gw_ffi_shdict_expire(struct gw_shdict *d, const char *key, size_t klen, double exptime,
                         const char **err);

/* Change watching (C callers: gw/guard.h) -------------------------------- */

/* The zone's change count (64 bits: it never comes back to a value it had):
 * it moves on every store, removal (delete,
 * eviction, the freeing of an expired entry), flush and expire() of any of
 * its keys, and only then. Read without the lock: a caller that saw the
 * same count twice knows no key changed in between, except by reaching its
 * expiry time. */
uint64_t gw_shdict_seq(const struct gw_shdict *d);

/* The dictionaries' clock: CLOCK_MONOTONIC in ms (expiry times). */
int64_t gw_shdict_now(void);

/* A key and its stamp (gw_shdict_stamps fills present, ver, expires). */
struct gw_shdict_stamp {
    const char *key;
    size_t klen; /* 1..GW_SHDICT_KEY_MAX */
    int present; /* 0: missing or expired (ver and expires are then 0) */
    uint32_t ver;
    int64_t expires;
};

/* Under one hold of the lock: the stamp of each of the n keys of q (as
 * gw_ffi_shdict_stamp, without making them recently used) and the zone's
 * change count then (*seq). GW_ERROR when the lock fails. */
int gw_shdict_stamps(struct gw_shdict *d, struct gw_shdict_stamp *q, int n, uint64_t *seq);

/* Zone size in bytes (what was mapped). */
size_t gw_ffi_shdict_capacity(struct gw_shdict *d);

/* Bytes currently free in the zone's heap (fragmented or not). */
size_t gw_ffi_shdict_free_space(struct gw_shdict *d);

/* Pushes a string or number at the head (right = 0) or tail of the list at
 * key, creating it (no expiry) when missing or expired. New length in
 * *out_len. Never evicts unexpired entries. GW_ERROR: "value not a list",
 * "bad value type", "no memory". */
int gw_ffi_shdict_push(struct gw_shdict *d, int right, const char *key, size_t klen, int type,
                       const char *str, size_t len, double num, size_t *out_len, const char **err);

/* Pops from the head (right = 0) or tail of the list at key; the value comes
 * back as in gw_ffi_shdict_get (same buffer contract); *type is
 * GW_SHDICT_TNIL when the key is missing or expired. An emptied list is
 * deleted. GW_ERROR: "value not a list", "no memory". */
int gw_ffi_shdict_pop(struct gw_shdict *d, int right, const char *key, size_t klen, int *type,
                      char **buf, size_t *len, double *num, const char **err);

/* Length of the list at key into *out_len (0 when missing or expired).
 * GW_ERROR: "value not a list". */
int gw_ffi_shdict_llen(struct gw_shdict *d, const char *key, size_t klen, size_t *out_len,
                       const char **err);

/* Internal (tests) ------------------------------------------------------ */

/* Takes the zone lock and returns with it held, as a writer (dirty = 1) or
 * not. A process that then dies leaves the robust mutex to the next locker,
 * which wipes the zone when dirty was set. */
int gw__shdict_test_lock(struct gw_shdict *d, int dirty);

/* Walks the heap, hash table and LRU list and checks they agree. Returns
 * GW_OK or GW_ERROR with the broken invariant in *err. *nentries = live and
 * expired entries, *recovered = lock recoveries (EOWNERDEAD) so far. */
int gw__shdict_check(struct gw_shdict *d, size_t *nentries, unsigned *recovered, const char **err);

#endif
