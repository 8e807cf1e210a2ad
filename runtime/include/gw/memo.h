/* Answer memos (docs/architecture.md, "Answer memos"): a plugin that
 * answers a request alone, from data in a shared dictionary (a proxy-cache
 * hit), lets the runtime repeat that answer in C, without running Lua, to
 * the next requests of the same route that are the same for the answer:
 * same method and request target, same values of the request headers the
 * plugin names. A memo is used while the dictionary values it was made
 * from keep the stamps they had (gw_ffi_shdict_stamp: any store, delete,
 * expiry, eviction or flush ends it) and before its deadline; otherwise
 * the request goes to the plugins as any other. Each worker keeps one table
 * per configuration, dropped with the configuration. */
#ifndef GW_MEMO_H
#define GW_MEMO_H

#include <stddef.h>
#include <stdint.h>

struct gw_conn;
struct gw_req;
struct gw_shdict;
struct gw_memo_table;

#define GW_MEMO_SLOTS 1024               /* per configuration, direct-mapped */
#define GW_MEMO_MAX_DEPS 4               /* dictionary values per memo */
#define GW_MEMO_MAX_BODY (256 * 1024)    /* larger answers are not kept */
#define GW_MEMO_MAX_BYTES (16 * 1024 * 1024) /* per configuration and worker */
#define GW_MEMO_MAX_HDEPS 1024           /* bytes of header names and values */

/* A dictionary value the answer was made from, with the stamp it had. */
struct gw_memo_dep {
    struct gw_shdict *dict;
    const char *key;
    size_t klen;
    uint32_t ver;
    int64_t expires;
};

/* What kong.response.exit_packed's memo argument becomes (pdk/response.lua). */
struct gw_memo_args {
    double deadline;   /* gw_ffi_now() time: used while now < deadline */
    double age_origin; /* has_age: the answer's Age header becomes floor(now - age_origin) */
    int has_age;
    const char *hnames; /* lowercase request header names, each ended by '\0' */
    size_t hnames_len;
    const struct gw_memo_dep *deps;
    int ndeps;          /* 1..GW_MEMO_MAX_DEPS */
};

/* Keeps the response the current request's access handler registered (an
 * exit, headers set) as the memo of requests like this one. GW_OK: kept;
 * GW_DECLINED: the request or the answer cannot be repeated (a request
 * body, gRPC, HTTP/2, a large body, a deadline passed, no memory) and
 * nothing is kept; GW_ERROR with *err: bad arguments. */
int gw_ffi_memo_store(struct gw_req *r, const struct gw_memo_args *a, const char **err);

/* Called with a routed request before its access phase: answers it from a
 * memo and returns 1, or returns 0 (the request goes on as before). */
int gw_memo_answer(struct gw_conn *c);

/* Frees a configuration's table. *t = NULL. */
void gw_memo_free(struct gw_memo_table **t);

#endif
