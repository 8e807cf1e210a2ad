/* Shared dictionary unit test: the C API of runtime/src/shdict.c, across
 * forked processes like the workers use it. Prints TAP; exits non-zero on
 * any failure. Run with runtime/test/shdict_run.sh. */
#include "../src/shdict.c"

#include <signal.h>
#include <stdarg.h>
#include <sys/wait.h>

static int ntest, nfail;

static void ok(int cond, const char *fmt, ...)
{
    va_list ap;

    ntest++;
    printf("%s %d - ", cond ? "ok" : "not ok", ntest);
    va_start(ap, fmt);
    vprintf(fmt, ap);
    va_end(ap);
    printf("\n");
    fflush(stdout);
    if (!cond) {
        nfail++;
    }
}

static void msleep(int ms)
{
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000};

    nanosleep(&ts, NULL);
}

/* helpers over the FFI functions, keys as C strings */

static int set(struct gw_shdict *d, int op, const char *k, const char *v, double exptime,
               uint32_t flags, int *forcible, const char **err)
{
    return gw_ffi_shdict_store(d, op, k, strlen(k), GW_SHDICT_TSTRING, v, strlen(v), 0, exptime,
                               flags, forcible, err);
}

static int setnum(struct gw_shdict *d, const char *k, double v, double exptime)
{
    int forcible;
    const char *err;

    return gw_ffi_shdict_store(d, GW_SHDICT_SET, k, strlen(k), GW_SHDICT_TNUMBER, NULL, 0, v,
                               exptime, 0, &forcible, &err);
}

static int del(struct gw_shdict *d, const char *k)
{
    int forcible;
    const char *err;

    return gw_ffi_shdict_store(d, GW_SHDICT_SET, k, strlen(k), GW_SHDICT_TNIL, NULL, 0, 0, 0, 0,
                               &forcible, &err);
}

struct val {
    int rc, type, stale;
    double num;
    uint32_t flags;
    size_t len;
    char *buf;
    char small[16];
    const char *err;
};

/* gets k into v with a 16-byte caller buffer; frees a malloc()ed one at the
 * next call */
static struct val *get(struct gw_shdict *d, const char *k, int stale)
{
    static struct val v;

    if (v.buf != v.small) {
        free(v.buf);
    }
    memset(&v, 0, sizeof(v));
    v.buf = v.small;
    v.len = sizeof(v.small);
    v.rc = gw_ffi_shdict_get(d, k, strlen(k), &v.type, &v.buf, &v.len, &v.num, &v.flags, stale,
                             &v.stale, &v.err);
    return &v;
}

static int is_str(struct val *v, const char *s)
{
    return v->rc == GW_OK && v->type == GW_SHDICT_TSTRING && v->len == strlen(s) &&
           memcmp(v->buf, s, v->len) == 0;
}

static int check(struct gw_shdict *d, size_t *nentries, unsigned *recovered)
{
    const char *err = "";
    size_t n;
    unsigned r;
    int rc = gw__shdict_check(d, nentries ? nentries : &n, recovered ? recovered : &r, &err);

    if (rc != GW_OK) {
        printf("# check: %s\n", err);
    }
    return rc == GW_OK;
}

static void test_registry(void)
{
    struct gw_shdict *d;

    ok(gw_shdict_create("basic", 1024 * 1024) == GW_OK, "create basic");
    ok(gw_shdict_create("tiny", 1) == GW_OK, "create tiny (rounded up)");
    ok(gw_shdict_create("basic", 4096) == GW_ERROR, "duplicate name refused");
    ok(gw_shdict_create("", 4096) == GW_ERROR, "empty name refused");
    d = gw_shdict_find("basic", 5);
    ok(d != NULL && gw_ffi_shdict_find("basic", 5) == d, "find basic");
    ok(gw_shdict_find("bas", 3) == NULL && gw_shdict_find("nope", 4) == NULL, "find unknown");
    ok(gw_ffi_shdict_capacity(d) == 1024 * 1024, "capacity is the mapped size");
    ok(gw_ffi_shdict_capacity(gw_shdict_find("tiny", 4)) == GW_SHDICT_MIN_SIZE,
       "tiny zone has the minimum size");
    ok(gw_ffi_shdict_free_space(d) > 900 * 1024, "free space of an empty zone");
}

static void test_values(void)
{
    struct gw_shdict *d = gw_shdict_find("basic", 5);
    const char *err = NULL;
    char big[3000], bin[5] = {'a', 0, 'b', 0, 'c'};
    int forcible = 7, rc;
    struct val *v;

    rc = set(d, GW_SHDICT_SET, "k", "hello", 0, 42, &forcible, &err);
    ok(rc == GW_OK && forcible == 0, "set string");
    v = get(d, "k", 0);
    ok(is_str(v, "hello") && v->flags == 42 && v->stale == 0, "get string and flags");
    setnum(d, "n", 3.5, 0);
    v = get(d, "n", 0);
    ok(v->type == GW_SHDICT_TNUMBER && v->num == 3.5 && v->flags == 0, "number");
    rc = gw_ffi_shdict_store(d, GW_SHDICT_SET, "b", 1, GW_SHDICT_TBOOLEAN, NULL, 0, 1, 0, 0,
                             &forcible, &err);
    v = get(d, "b", 0);
    ok(rc == GW_OK && v->type == GW_SHDICT_TBOOLEAN && v->num == 1, "boolean");
    v = get(d, "missing", 0);
    ok(v->rc == GW_OK && v->type == GW_SHDICT_TNIL, "missing key is nil");

    rc = gw_ffi_shdict_store(d, GW_SHDICT_SET, "bin", 3, GW_SHDICT_TSTRING, bin, 5, 0, 0, 0,
                             &forcible, &err);
    v = get(d, "bin", 0);
    ok(rc == GW_OK && v->len == 5 && memcmp(v->buf, bin, 5) == 0, "binary-safe value");
    rc = gw_ffi_shdict_store(d, GW_SHDICT_SET, bin, 5, GW_SHDICT_TSTRING, "x", 1, 0, 0, 0,
                             &forcible, &err);
    ok(rc == GW_OK, "binary key stored");
    {
        int type, stale;
        char sb[8], *b = sb;
        size_t len = sizeof(sb);
        double num;
        uint32_t fl;

        rc = gw_ffi_shdict_get(d, bin, 5, &type, &b, &len, &num, &fl, 0, &stale, &err);
        ok(rc == GW_OK && len == 1 && b[0] == 'x', "binary key found");
        rc = gw_ffi_shdict_get(d, bin, 3, &type, &b, &len, &num, &fl, 0, &stale, &err);
        ok(rc == GW_OK && type == GW_SHDICT_TNIL, "key prefix is another key");
    }

    memset(big, 'z', sizeof(big) - 1);
    big[sizeof(big) - 1] = '\0';
    set(d, GW_SHDICT_SET, "big", big, 0, 0, &forcible, &err);
    v = get(d, "big", 0);
    ok(is_str(v, big) && v->buf != v->small, "value larger than the caller buffer is malloc()ed");
    set(d, GW_SHDICT_SET, "big", "small now", 0, 0, &forcible, &err);
    ok(is_str(get(d, "big", 0), "small now"), "overwrite with a smaller value");
    set(d, GW_SHDICT_SET, "k", big, 0, 0, &forcible, &err);
    ok(is_str(get(d, "k", 0), big), "overwrite with a bigger value");

    rc = set(d, GW_SHDICT_ADD, "k", "x", 0, 0, &forcible, &err);
    ok(rc == GW_DECLINED && strcmp(err, "exists") == 0, "add on existing: exists");
    rc = set(d, GW_SHDICT_SAFE_ADD, "k", "x", 0, 0, &forcible, &err);
    ok(rc == GW_DECLINED && strcmp(err, "exists") == 0, "safe_add on existing: exists");
    rc = set(d, GW_SHDICT_ADD, "new", "x", 0, 0, &forcible, &err);
    ok(rc == GW_OK && is_str(get(d, "new", 0), "x"), "add new key");
    rc = set(d, GW_SHDICT_REPLACE, "nokey", "x", 0, 0, &forcible, &err);
    ok(rc == GW_DECLINED && strcmp(err, "not found") == 0, "replace missing: not found");
    rc = set(d, GW_SHDICT_REPLACE, "new", "y", 0, 9, &forcible, &err);
    ok(rc == GW_OK && is_str(get(d, "new", 0), "y") && get(d, "new", 0)->flags == 9,
       "replace existing");
    ok(del(d, "new") == GW_OK && get(d, "new", 0)->type == GW_SHDICT_TNIL, "delete");
    ok(del(d, "new") == GW_OK, "delete missing is fine");

    rc = gw_ffi_shdict_store(d, GW_SHDICT_SET, "k", 1, 9, NULL, 0, 0, 0, 0, &forcible, &err);
    ok(rc == GW_ERROR && strcmp(err, "bad value type") == 0, "bad value type");
    rc = gw_ffi_shdict_store(d, GW_SHDICT_SET, "", 0, GW_SHDICT_TNUMBER, NULL, 0, 1, 0, 0,
                             &forcible, &err);
    ok(rc == GW_ERROR && strcmp(err, "empty key") == 0, "empty key");
    rc = gw_ffi_shdict_store(d, GW_SHDICT_SET, big, 70000, GW_SHDICT_TNUMBER, NULL, 0, 1, 0, 0,
                             &forcible, &err);
    ok(rc == GW_ERROR && strcmp(err, "key too long") == 0, "key too long");
    ok(check(d, NULL, NULL), "zone consistent");
}

static void test_incr(void)
{
    struct gw_shdict *d = gw_shdict_find("basic", 5);
    const char *err = NULL;
    double out = 0;
    int forcible, rc;

    rc = gw_ffi_shdict_incr(d, "c", 1, 1, 0, 0, 0, &out, &forcible, &err);
    ok(rc == GW_DECLINED && strcmp(err, "not found") == 0, "incr missing: not found");
    rc = gw_ffi_shdict_incr(d, "c", 1, 2, 1, 10, 0, &out, &forcible, &err);
    ok(rc == GW_OK && out == 12 && forcible == 0, "incr with init");
    rc = gw_ffi_shdict_incr(d, "c", 1, -0.5, 1, 100, 0, &out, &forcible, &err);
    ok(rc == GW_OK && out == 11.5, "incr existing ignores init, floats work");
    rc = gw_ffi_shdict_incr(d, "k", 1, 1, 1, 0, 0, &out, &forcible, &err);
    ok(rc == GW_ERROR && strcmp(err, "not a number") == 0, "incr string: not a number");
    rc = gw_ffi_shdict_incr(d, "ci", 2, 1, 1, 0, 0.05, &out, &forcible, &err);
    ok(rc == GW_OK && out == 1, "incr with init_ttl");
    msleep(80);
    rc = gw_ffi_shdict_incr(d, "ci", 2, 1, 0, 0, 0, &out, &forcible, &err);
    ok(rc == GW_DECLINED, "init_ttl expired the counter");
    rc = gw_ffi_shdict_incr(d, "ci", 2, 5, 1, 1, 0, &out, &forcible, &err);
    ok(rc == GW_OK && out == 6, "expired counter is re-created from init");
}

static void test_stamp(void)
{
    struct gw_shdict *d = gw_shdict_find("basic", 5);
    const char *err = NULL;
    uint32_t v1 = 0, v2 = 0, v3 = 0;
    int64_t e1 = -1, e2 = -1;
    int forcible, rc, status;
    pid_t pid;

    rc = gw_ffi_shdict_stamp(d, "st", 2, &v1, &e1, &err);
    ok(rc == GW_DECLINED && strcmp(err, "not found") == 0, "stamp of a missing key");
    set(d, GW_SHDICT_SET, "st", "a", 10, 0, &forcible, &err);
    rc = gw_ffi_shdict_stamp(d, "st", 2, &v1, &e1, &err);
    ok(rc == GW_OK && e1 > 0, "stamp: version and absolute expiry");
    get(d, "st", 0);
    rc = gw_ffi_shdict_stamp(d, "st", 2, &v2, &e2, &err);
    ok(rc == GW_OK && v2 == v1 && e2 == e1, "a read keeps the stamp");
    pid = fork();
    if (pid == 0) {
        set(d, GW_SHDICT_SET, "st", "a", 10, 0, &forcible, &err);
        _exit(0);
    }
    waitpid(pid, &status, 0);
    rc = gw_ffi_shdict_stamp(d, "st", 2, &v2, &e2, &err);
    ok(rc == GW_OK && v2 != v1, "a store by another process changes the version");
    del(d, "st");
    set(d, GW_SHDICT_SET, "st", "a", 10, 0, &forcible, &err);
    rc = gw_ffi_shdict_stamp(d, "st", 2, &v3, &e2, &err);
    ok(rc == GW_OK && v3 != v2 && v3 != v1, "deleted and stored again: a new version");
    set(d, GW_SHDICT_SET, "st", "b", 0.02, 0, &forcible, &err);
    msleep(40);
    rc = gw_ffi_shdict_stamp(d, "st", 2, &v1, &e1, &err);
    ok(rc == GW_DECLINED, "stamp of an expired key: not found");
    ok(check(d, NULL, NULL), "zone consistent");
}

static void test_expiry(void)
{
    struct gw_shdict *d = gw_shdict_find("basic", 5);
    const char *err = NULL;
    int64_t ttl = -1;
    int forcible, n = -1, rc;
    struct val *v;

    set(d, GW_SHDICT_SET, "e", "soon", 0.05, 3, &forcible, &err);
    set(d, GW_SHDICT_SET, "p", "forever", 0, 0, &forcible, &err);
    ok(is_str(get(d, "e", 0), "soon"), "value before expiry");
    rc = gw_ffi_shdict_ttl(d, "e", 1, &ttl, &err);
    ok(rc == GW_OK && ttl > 0 && ttl <= 50, "ttl in ms (%lld)", (long long)ttl);
    rc = gw_ffi_shdict_ttl(d, "p", 1, &ttl, &err);
    ok(rc == GW_OK && ttl == 0, "ttl 0 without expiry");
    msleep(80);
    v = get(d, "e", 0);
    ok(v->rc == GW_OK && v->type == GW_SHDICT_TNIL, "expired value is nil");
    v = get(d, "e", 1);
    ok(is_str(v, "soon") && v->stale == 1 && v->flags == 3, "get_stale returns it, stale");
    rc = gw_ffi_shdict_ttl(d, "e", 1, &ttl, &err);
    ok(rc == GW_DECLINED && strcmp(err, "not found") == 0, "ttl of expired: not found");
    rc = gw_ffi_shdict_expire(d, "e", 1, 10, &err);
    ok(rc == GW_DECLINED && strcmp(err, "not found") == 0, "expire of expired: not found");
    rc = set(d, GW_SHDICT_ADD, "e", "again", 0, 0, &forcible, &err);
    ok(rc == GW_OK && is_str(get(d, "e", 0), "again"), "add over an expired key");
    rc = gw_ffi_shdict_expire(d, "p", 1, 0.03, &err);
    ok(rc == GW_OK, "expire sets a ttl");
    msleep(50);
    ok(get(d, "p", 0)->type == GW_SHDICT_TNIL, "expire took effect");
    set(d, GW_SHDICT_SET, "p", "x", 0.03, 0, &forcible, &err);
    rc = gw_ffi_shdict_expire(d, "p", 1, 0, &err);
    msleep(50);
    ok(rc == GW_OK && is_str(get(d, "p", 0), "x"), "expire 0 removes the ttl");

    gw_ffi_shdict_flush_all(d);
    ok(get(d, "p", 0)->type == GW_SHDICT_TNIL, "flush_all expires everything");
    v = get(d, "p", 1);
    ok(is_str(v, "x") && v->stale, "flushed values are stale");
    set(d, GW_SHDICT_SET, "live1", "a", 0, 0, &forcible, &err);
    set(d, GW_SHDICT_SET, "live2", "b", 0, 0, &forcible, &err);
    gw_ffi_shdict_flush_expired(d, 2, &n);
    ok(n == 2, "flush_expired max 2 frees 2");
    gw_ffi_shdict_flush_expired(d, 0, &n);
    {
        size_t entries = 0;

        ok(n > 0 && check(d, &entries, NULL) && entries == 2,
           "flush_expired 0 frees the rest (%d), 2 live left", n);
    }
    gw_ffi_shdict_flush_expired(d, 0, &n);
    ok(n == 0, "nothing left to flush");
}

static void test_keys(void)
{
    struct gw_shdict *d = gw_shdict_find("basic", 5);
    const char *err = NULL;
    char *out = NULL;
    size_t outlen = 0;
    int forcible, n = 0, rc;
    uint16_t l;

    gw_ffi_shdict_flush_all(d);
    gw_ffi_shdict_flush_expired(d, 0, &n);
    rc = gw_ffi_shdict_get_keys(d, 0, &out, &outlen, &n);
    ok(rc == GW_OK && n == 0 && out == NULL, "no keys");
    set(d, GW_SHDICT_SET, "one", "1", 0, 0, &forcible, &err);
    set(d, GW_SHDICT_SET, "two", "2", 0, 0, &forcible, &err);
    set(d, GW_SHDICT_SET, "gone", "3", 0.001, 0, &forcible, &err);
    msleep(5);
    rc = gw_ffi_shdict_get_keys(d, 0, &out, &outlen, &n);
    l = (uint16_t)((unsigned char)out[0] << 8 | (unsigned char)out[1]);
    ok(rc == GW_OK && n == 2 && outlen == 2 * (2 + 3) && l == 3 && memcmp(out + 2, "two", 3) == 0,
       "get_keys: live keys, most recent first");
    gw_ffi_shdict_free(out);
    rc = gw_ffi_shdict_get_keys(d, 1, &out, &outlen, &n);
    ok(rc == GW_OK && n == 1 && outlen == 5, "get_keys max 1");
    gw_ffi_shdict_free(out);
}

static void test_lists(void)
{
    struct gw_shdict *d = gw_shdict_find("basic", 5);
    const char *err = NULL;
    size_t len = 0;
    int forcible, rc, type;
    char sb[4], *b = sb;
    size_t blen = sizeof(sb);
    double num = 0;

    rc = gw_ffi_shdict_push(d, 0, "l", 1, GW_SHDICT_TSTRING, "a", 1, 0, &len, &err);
    ok(rc == GW_OK && len == 1, "lpush creates a list");
    gw_ffi_shdict_push(d, 0, "l", 1, GW_SHDICT_TNUMBER, NULL, 0, 2, &len, &err);
    rc = gw_ffi_shdict_push(d, 1, "l", 1, GW_SHDICT_TSTRING, "long value", 10, 0, &len, &err);
    ok(rc == GW_OK && len == 3, "lpush + rpush");
    rc = gw_ffi_shdict_llen(d, "l", 1, &len, &err);
    ok(rc == GW_OK && len == 3, "llen");
    ok(get(d, "l", 0)->rc == GW_ERROR && strcmp(get(d, "l", 0)->err, "value is a list") == 0,
       "get on a list: value is a list");
    rc = gw_ffi_shdict_pop(d, 0, "l", 1, &type, &b, &blen, &num, &err);
    ok(rc == GW_OK && type == GW_SHDICT_TNUMBER && num == 2, "lpop number");
    rc = gw_ffi_shdict_pop(d, 1, "l", 1, &type, &b, &blen, &num, &err);
    ok(rc == GW_OK && type == GW_SHDICT_TSTRING && blen == 10 && b != sb &&
           memcmp(b, "long value", 10) == 0,
       "rpop long string into a malloc()ed buffer");
    gw_ffi_shdict_free(b);
    b = sb;
    blen = sizeof(sb);
    rc = gw_ffi_shdict_pop(d, 1, "l", 1, &type, &b, &blen, &num, &err);
    ok(rc == GW_OK && type == GW_SHDICT_TSTRING && blen == 1 && b[0] == 'a', "rpop last");
    rc = gw_ffi_shdict_pop(d, 1, "l", 1, &type, &b, &blen, &num, &err);
    ok(rc == GW_OK && type == GW_SHDICT_TNIL, "pop empty: nil");
    rc = gw_ffi_shdict_llen(d, "l", 1, &len, &err);
    ok(rc == GW_OK && len == 0 && get(d, "l", 0)->type == GW_SHDICT_TNIL,
       "emptied list is deleted");
    set(d, GW_SHDICT_SET, "s", "x", 0, 0, &forcible, &err);
    rc = gw_ffi_shdict_push(d, 0, "s", 1, GW_SHDICT_TSTRING, "a", 1, 0, &len, &err);
    ok(rc == GW_ERROR && strcmp(err, "value not a list") == 0, "push on a string");
    rc = gw_ffi_shdict_llen(d, "s", 1, &len, &err);
    ok(rc == GW_ERROR && strcmp(err, "value not a list") == 0, "llen on a string");
    rc = gw_ffi_shdict_push(d, 0, "l2", 2, GW_SHDICT_TBOOLEAN, NULL, 0, 1, &len, &err);
    ok(rc == GW_ERROR && strcmp(err, "bad value type") == 0, "push boolean: bad value type");
    gw_ffi_shdict_push(d, 0, "l2", 2, GW_SHDICT_TSTRING, "a", 1, 0, &len, &err);
    gw_ffi_shdict_push(d, 0, "l2", 2, GW_SHDICT_TSTRING, "b", 1, 0, &len, &err);
    rc = set(d, GW_SHDICT_SET, "l2", "replaced", 0, 0, &forcible, &err);
    ok(rc == GW_OK && is_str(get(d, "l2", 0), "replaced"), "set replaces a list");
    ok(check(d, NULL, NULL), "zone consistent after lists");
}

/* 4 processes x 50,000 increments of one key: the total must be exact. */
static void test_concurrent_incr(void)
{
    struct gw_shdict *d = gw_shdict_find("basic", 5);
    const int nproc = 4, per = 50000;
    const char *err;
    double out = 0;
    int i, status, forcible, fails = 0;
    pid_t pids[4];

    del(d, "ctr");
    for (i = 0; i < nproc; i++) {
        pids[i] = fork();
        if (pids[i] == 0) {
            int j, bad = 0;
            char key[32];

            for (j = 0; j < per; j++) {
                if (gw_ffi_shdict_incr(d, "ctr", 3, 1, 1, 0, 0, &out, &forcible, &err) != GW_OK) {
                    bad++;
                }
                /* some churn on other keys meanwhile */
                if (j % 16 == 0) {
                    snprintf(key, sizeof(key), "w%d-%d", i, j % 512);
                    setnum(d, key, j, 0);
                }
            }
            _exit(bad ? 1 : 0);
        }
    }
    for (i = 0; i < nproc; i++) {
        waitpid(pids[i], &status, 0);
        if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
            fails++;
        }
    }
    gw_ffi_shdict_incr(d, "ctr", 3, 0, 0, 0, 0, &out, &forcible, &err);
    ok(fails == 0 && out == nproc * per, "4 x 50000 concurrent incr = %.0f", out);
    ok(check(d, NULL, NULL), "zone consistent after concurrent use");
}

/* A child writes, the parent reads: one zone, every process. */
static void test_cross_process(void)
{
    struct gw_shdict *d = gw_shdict_find("basic", 5);
    const char *err;
    int forcible, status;
    pid_t pid = fork();

    if (pid == 0) {
        set(d, GW_SHDICT_SET, "from-child", "hi", 0.05, 5, &forcible, &err);
        _exit(0);
    }
    waitpid(pid, &status, 0);
    ok(is_str(get(d, "from-child", 0), "hi") && get(d, "from-child", 0)->flags == 5,
       "value set in a child is seen by the parent");
    msleep(80);
    ok(get(d, "from-child", 0)->type == GW_SHDICT_TNIL,
       "expiry set in a child applies in the parent");
}

static void test_lru(void)
{
    struct gw_shdict *d = gw_shdict_find("tiny", 4);
    const char *err = NULL;
    char key[32], val[1001];
    int i, rc, forcible = 0, first_forced = -1;
    size_t entries = 0;

    memset(val, 'v', 1000);
    val[1000] = '\0';
    for (i = 0; i < 200; i++) {
        snprintf(key, sizeof(key), "key%d", i);
        rc = set(d, GW_SHDICT_SET, key, val, 0, 0, &forcible, &err);
        if (rc != GW_OK) {
            break;
        }
        if (forcible && first_forced < 0) {
            first_forced = i;
        }
        if (i >= 5) {
            get(d, "key0", 0); /* keep key0 recently used */
        }
    }
    ok(i == 200 && first_forced > 10 && first_forced < 40,
       "set keeps working in a full zone, forcible from key%d", first_forced);
    ok(get(d, "key1", 0)->type == GW_SHDICT_TNIL && is_str(get(d, "key199", 0), val),
       "least recently used evicted, newest kept");
    ok(is_str(get(d, "key0", 0), val), "recently read key survived");
    rc = check(d, &entries, NULL);
    ok(rc && entries > 10, "zone consistent after eviction (%zu entries)", entries);

    rc = set(d, GW_SHDICT_SAFE_SET, "safe", val, 0, 0, &forcible, &err);
    ok(rc == GW_ERROR && strcmp(err, "no memory") == 0 && forcible == 0,
       "safe_set in a full zone: no memory");
    rc = set(d, GW_SHDICT_SAFE_ADD, "safe", val, 0, 0, &forcible, &err);
    ok(rc == GW_ERROR && strcmp(err, "no memory") == 0, "safe_add in a full zone: no memory");
    {
        size_t after = 0;

        check(d, &after, NULL);
        ok(after == entries, "safe ops evicted nothing");
    }
    {
        size_t len;

        rc = gw_ffi_shdict_push(d, 0, "list", 4, GW_SHDICT_TSTRING, val, 1000, 0, &len, &err);
        ok(rc == GW_ERROR && strcmp(err, "no memory") == 0, "push never evicts live entries");
    }

    /* expired entries go before live ones, and without forcible */
    gw_ffi_shdict_flush_all(d);
    rc = set(d, GW_SHDICT_SAFE_SET, "safe", val, 0, 0, &forcible, &err);
    ok(rc == GW_OK && forcible == 0, "safe_set reuses expired entries");
    rc = set(d, GW_SHDICT_SET, "k2", val, 0, 0, &forcible, &err);
    ok(rc == GW_OK && forcible == 0, "set over expired entries is not forcible");

    {
        static char huge[64 * 1024];

        memset(huge, 'h', sizeof(huge) - 1);
        rc = set(d, GW_SHDICT_SET, "huge", huge, 0, 0, &forcible, &err);
        ok(rc == GW_ERROR && strcmp(err, "no memory") == 0 && is_str(get(d, "safe", 0), val),
           "value larger than the zone: no memory, nothing evicted");
    }
    ok(check(d, NULL, NULL), "zone consistent");

    /* random churn with mixed sizes: the allocator must coalesce */
    srand(7);
    for (i = 0; i < 20000; i++) {
        size_t n = (size_t)(rand() % 900) + 1;

        snprintf(key, sizeof(key), "r%d", rand() % 300);
        if (rand() % 4 == 0) {
            del(d, key);
        } else {
            val[n] = '\0';
            rc = set(d, GW_SHDICT_SET, key, val, rand() % 8 == 0 ? 0.001 : 0, 0, &forcible, &err);
            val[n] = 'v';
            if (rc != GW_OK) {
                break;
            }
        }
    }
    ok(i == 20000, "20000 random sets/deletes in a 32 KiB zone");
    ok(check(d, NULL, NULL), "zone consistent after churn");
    gw_ffi_shdict_flush_all(d);
    gw_ffi_shdict_flush_expired(d, 0, &i);
    ok(gw_ffi_shdict_free_space(d) == (size_t)(d->heap_end - d->heap),
       "everything freed coalesces back into one block");
}

/* A child that dies holding the lock: the next locker recovers. */
static void test_robust(void)
{
    struct gw_shdict *d = gw_shdict_find("basic", 5);
    const char *err = NULL;
    int forcible, status;
    unsigned rec0 = 0, rec = 0;
    size_t entries = 0;
    pid_t pid;

    set(d, GW_SHDICT_SET, "keep", "me", 0, 0, &forcible, &err);
    check(d, NULL, &rec0);
    pid = fork();
    if (pid == 0) {
        gw__shdict_test_lock(d, 0);
        _exit(0);
    }
    waitpid(pid, &status, 0);
    ok(is_str(get(d, "keep", 0), "me"), "lock of a dead reader recovered, data kept");
    check(d, NULL, &rec);
    ok(rec == rec0 + 1, "one recovery counted");

    pid = fork();
    if (pid == 0) {
        gw__shdict_test_lock(d, 1);
        _exit(0);
    }
    waitpid(pid, &status, 0);
    ok(get(d, "keep", 0)->type == GW_SHDICT_TNIL, "dead writer: zone wiped");
    ok(check(d, &entries, &rec) && entries == 0 && rec == rec0 + 2, "wiped zone is consistent");
    ok(set(d, GW_SHDICT_SET, "keep", "again", 0, 0, &forcible, &err) == GW_OK &&
           is_str(get(d, "keep", 0), "again"),
       "zone usable after recovery");

    /* killed by a signal while holding the lock */
    pid = fork();
    if (pid == 0) {
        gw__shdict_test_lock(d, 0);
        raise(SIGKILL);
        _exit(1);
    }
    waitpid(pid, &status, 0);
    ok(WIFSIGNALED(status) && is_str(get(d, "keep", 0), "again"),
       "holder killed by SIGKILL: recovered");
}

int main(void)
{
    setvbuf(stdout, NULL, _IOLBF, 0);
    test_registry();
    test_values();
    test_incr();
    test_stamp();
    test_expiry();
    test_keys();
    test_lists();
    test_concurrent_incr();
    test_cross_process();
    test_lru();
    test_robust();
    get(gw_shdict_find("basic", 5), "x", 0); /* frees the last malloc()ed value */
    gw_shdict_destroy_all();
    printf("1..%d\n", ntest);
    return nfail ? 1 : 0;
}
