/* Prepared header operations (hops.c) unit test: parsing and checking the
 * packed form, and applying it to header lists as gw_hlist_apply would one
 * operation at a time. Prints TAP; exits non-zero on any failure. Run from
 * the repo root with runtime/test/run.sh. */
#include "../src/hlist.c"
#include "../src/hops.c"
#include "../src/pool.c"

#include <stdarg.h>
#include <stdio.h>

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
    if (!cond)
        nfail++;
}

/* Whether h holds exactly want ("name: value\n" lines); prints h as TAP
 * comments when not. */
static int same(const struct gw_hlist *h, const char *want);

/* The list as "name: value\n" lines. */
static const char *dump(const struct gw_hlist *h)
{
    static char out[4096];
    size_t n = 0;
    out[0] = '\0';
    for (int i = 0; i < h->n; i++)
        n += (size_t)snprintf(out + n, sizeof(out) - n, "%.*s: %.*s\n", (int)h->v[i].nlen,
                              h->v[i].name, (int)h->v[i].vlen, h->v[i].value);
    return out;
}

static int same(const struct gw_hlist *h, const char *want)
{
    const char *got = dump(h);
    if (strcmp(got, want) == 0)
        return 1;
    printf("# got:\n");
    for (const char *l = got; *l;) {
        const char *e = strchr(l, '\n');
        printf("#   %.*s\n", (int)(e - l), l);
        l = e + 1;
    }
    return 0;
}

static struct gw_hops *hops(const char *p, size_t len, const char **err)
{
    *err = NULL;
    return gw_hops_new(p, len, err);
}

#define PACKED(s) s, sizeof(s) - 1

static void refused(const char *p, size_t len, const char *want, const char *what)
{
    const char *err;
    struct gw_hops *o = hops(p, len, &err);
    ok(o == NULL && err && strcmp(err, want) == 0, "refuses %s (%s)", what, err ? err : "-");
    gw_hops_free(o);
}

int main(void)
{
    struct gw_pool pool = {0};
    const char *err;

    /* parsing and checking, once */
    refused(PACKED("0X\0v"), "malformed packed headers", "a value without its NUL");
    refused(PACKED("9X\0v\0"), "malformed packed headers", "an unknown op");
    refused(PACKED("0\0v\0"), "invalid header name", "an empty name");
    refused(PACKED("0X Y\0v\0"), "invalid header name", "a name with a space");
    refused(PACKED("0X:\0v\0"), "invalid header name", "a name with a colon");
    refused(PACKED("0X\0a\r\nB: c\0"), "invalid header value: CR, LF and NUL are not allowed",
            "CR LF in a value");
    refused(PACKED("P X\0"
                   "9\0"),
            "invalid header name", "a slot's bad name");
    refused(PACKED("PX\0"
                   "8\0"),
            "malformed packed headers", "slot 8");
    refused(PACKED("PX\0"
                   "12\0"),
            "malformed packed headers", "a slot of two digits");
    refused(PACKED("RX\0"
                   "0\0"),
            "malformed packed headers", "a slot on a clear");

    struct gw_hops *o = hops(PACKED(""), &err);
    ok(o && gw_hops_slots(o) == 0, "an empty list is a list");
    struct gw_hlist *h = gw_hlist_new(&pool, 4);
    ok(gw_hops_apply(o, &pool, h, NULL) == GW_OK && h->n == 0, "that changes nothing");
    gw_hops_free(o);

    /* NAME_OK ('@' = '0' + 16) is taken and ignored: the name is checked */
    refused(PACKED("@X Y\0v\0"), "invalid header name", "a bad name with NAME_OK");

    /* applying: set replaces every value of the name (any case), add
     * appends, clear removes, in order; the slots' integers in decimal */
    o = hops(PACKED("0X-Set\0fixed\0"
                    "1X-Add\0two\0"
                    "2X-Gone\0\0"
                    "PX-Int\0"
                    "0\0"
                    "PX-Neg\0"
                    "1\0"
                    "PX-Again\0"
                    "0\0"
                    "0X-Empty\0\0"),
             &err);
    ok(o != NULL, "parses sets, adds, clears and slots (%s)", err ? err : "-");
    ok(gw_hops_slots(o) == 2, "counts 2 slots (%d)", gw_hops_slots(o));
    ok(!gw_hops_names_host(o), "names no Host");
    h = gw_hlist_new(&pool, 4);
    gw_hlist_push(&pool, h, "x-set", 5, "old1", 4);
    gw_hlist_push(&pool, h, "Keep", 4, "k", 1);
    gw_hlist_push(&pool, h, "X-SET", 5, "old2", 4);
    gw_hlist_push(&pool, h, "X-Add", 5, "one", 3);
    gw_hlist_push(&pool, h, "x-gone", 6, "g", 1);
    int64_t ints[2] = {123456789012345, -42};
    ok(gw_hops_apply(o, &pool, h, ints) == GW_OK, "applies");
    const char *want = "Keep: k\n"
                       "X-Add: one\n"
                       "X-Set: fixed\n"
                       "X-Add: two\n"
                       "X-Int: 123456789012345\n"
                       "X-Neg: -42\n"
                       "X-Again: 123456789012345\n"
                       "X-Empty: \n";
    ok(same(h, want), "as the operations one by one");
    const char *v;
    size_t vlen;
    ok(gw_hlist_get(h, "x-int", 5, 0, &v, &vlen) == GW_OK && vlen == 15 && v[vlen] == '\0',
       "values are NUL-terminated");

    /* the same list on another request: new slot values, the same text */
    struct gw_hlist *h2 = gw_hlist_new(&pool, 4);
    int64_t ints2[2] = {0, 7};
    ok(gw_hops_apply(o, &pool, h2, ints2) == GW_OK, "applies again");
    ok(same(h2, "X-Set: fixed\nX-Add: two\nX-Int: 0\nX-Neg: 7\nX-Again: 0\nX-Empty: \n"),
       "with the new values");
    /* the first list's views live in the pool, not in o */
    gw_hops_free(o);
    ok(same(h, want), "the views outlive the prepared list");

    /* integers at the ends of the range */
    o = hops(PACKED("PA\0"
                    "0\0"
                    "PB\0"
                    "1\0"
                    "PC\0"
                    "2\0"
                    "PD\0"
                    "3\0"),
             &err);
    h = gw_hlist_new(&pool, 4);
    int64_t ext[4] = {INT64_MIN, INT64_MAX, 9, 10};
    gw_hops_apply(o, &pool, h, ext);
    ok(same(h, "A: -9223372036854775808\nB: 9223372036854775807\nC: 9\nD: 10\n"),
       "formats INT64_MIN, INT64_MAX, 9 and 10");
    gw_hops_free(o);

    /* set when absent: seen against the list as it is when the operation
     * comes (an earlier one of the list included), any case */
    o = hops(PACKED("3X-New\0a\0"
                    "3keep\0b\0"
                    "3X-NEW\0c\0"),
             &err);
    ok(o != NULL, "parses sets when absent (%s)", err ? err : "-");
    h = gw_hlist_new(&pool, 4);
    gw_hlist_push(&pool, h, "Keep", 4, "k", 1);
    ok(gw_hops_apply(o, &pool, h, NULL) == GW_OK, "applies sets when absent");
    ok(same(h, "Keep: k\nX-New: a\n"), "only where the name was absent");
    gw_hops_free(o);
    refused(PACKED("3HOST\0h\0"), "Host cannot be set when absent", "Host set when absent");

    /* Host: the last operation naming it says whether it is set */
    o = hops(PACKED("0host\0a\0"), &err);
    ok(gw_hops_names_host(o) && gw_hops_host_set(o), "a set of host sets Host");
    gw_hops_free(o);
    o = hops(PACKED("0Host\0a\0"
                    "2HOST\0\0"),
             &err);
    ok(gw_hops_names_host(o) && !gw_hops_host_set(o), "a set then a clear clears it");
    gw_hops_free(o);

    gw_pool_reset(&pool);
    printf("1..%d\n", ntest);
    return nfail ? 1 : 0;
}
