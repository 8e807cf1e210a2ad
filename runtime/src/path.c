/* Request path normalization before routing and upstream path building
 * after it, both as Kong does them (declared in gw/router.h). */
#include <string.h>

#include "gw/router.h"

static int hexval(unsigned char c)
{
    if (c >= '0' && c <= '9') {
        return c - '0';
    }
    if (c >= 'a' && c <= 'f') {
        return c - 'a' + 10;
    }
    if (c >= 'A' && c <= 'F') {
        return c - 'A' + 10;
    }
    return -1;
}

/* RFC 3986 2.3: ALPHA / DIGIT / "-" / "." / "_" / "~" */
static int unreserved(unsigned char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '-' ||
           c == '.' || c == '_' || c == '~';
}

/* RFC 3986 5.2.4 on an absolute path, in place; returns the new length.
 * The output never outruns the input, so one buffer is enough. */
static size_t remove_dot_segments(char *p, size_t n)
{
    size_t i = 0, o = 0;

    while (i < n) {
        /* p[i] is always '/' here */
        if (i + 1 < n && p[i + 1] == '.') {
            if (i + 2 == n) { /* "/." at the end -> "/" */
                p[o++] = '/';
                break;
            }
            if (p[i + 2] == '/') { /* "/./" -> "/" */
                i += 2;
                continue;
            }
            if (p[i + 2] == '.' && (i + 3 == n || p[i + 3] == '/')) {
                /* "/../" or "/.." at the end: drop the last output segment */
                while (o > 0 && p[--o] != '/') {
                }
                if (i + 3 == n) {
                    p[o++] = '/';
                    break;
                }
                i += 3;
                continue;
            }
        }
        /* move one segment, with its leading '/', to the output */
        do {
            p[o++] = p[i++];
        } while (i < n && p[i] != '/');
    }
    return o;
}

/* See router.h. Order follows RFC 3986 6.2.2: percent-encoding
 * normalization first (so "%2E%2E" counts as ".."), then dot segments.
 * "%2F" stays encoded: it is reserved and decoding it would change the
 * path's segments. */
long gw_path_normalize(char *path, size_t len)
{
    size_t i = 0, o = 0;

    if (len == 0 || path[0] != '/') {
        return -1;
    }
    while (i < len) {
        unsigned char c = (unsigned char)path[i];

        if (c == '\0') {
            return -1;
        }
        if (c != '%') {
            path[o++] = (char)c;
            i++;
            continue;
        }
        if (i + 2 >= len || hexval(path[i + 1]) < 0 || hexval(path[i + 2]) < 0) {
            return -1;
        }
        c = (unsigned char)(hexval(path[i + 1]) * 16 + hexval(path[i + 2]));
        if (unreserved(c)) {
            path[o++] = (char)c;
        } else {
            static const char hex[] = "0123456789ABCDEF";

            path[o++] = '%';
            path[o++] = hex[c >> 4];
            path[o++] = hex[c & 15];
        }
        i += 3;
    }
    return (long)remove_dot_segments(path, o);
}

/* Appends n bytes to out at *o; returns -1 when cap would be exceeded. */
static int put(char *out, size_t cap, size_t *o, const char *s, size_t n)
{
    if (n > cap - *o) {
        return -1;
    }
    memcpy(out + *o, s, n);
    *o += n;
    return 0;
}

/* See router.h. Kong's documented behaviour (route entity docs,
 * "path_handling"), service.path = /s throughout:
 *
 *   route.path  request    strip  handling  upstream path
 *   /fv0        /fv0/req   false  v0        /s/fv0/req
 *   /fv0        /fv0       false  v0        /s/fv0
 *   /fv1        /fv1/req   false  v1        /sfv1/req
 *   /fv1        /fv1       false  v1        /sfv1
 *   /tv0        /tv0/req   true   v0        /s/req
 *   /tv0        /tv0       true   v0        /s
 *   /tv1        /tv1/req   true   v1        /s/req
 *   /tv1        /tv1       true   v1        /s
 *   /fv0/       /fv0/req   false  v0        /s/fv0/req
 *   /fv0/       /fv0/      false  v0        /s/fv0/    (docs misprint "/s/fv01/")
 *   /fv1/       /fv1/req   false  v1        /sfv1/req
 *   /fv1/       /fv1/      false  v1        /sfv1/
 *   /tv0/       /tv0/req   true   v0        /s/req
 *   /tv0/       /tv0/      true   v0        /s/
 *   /tv1/       /tv1/req   true   v1        /sreq
 *   /tv1/       /tv1/      true   v1        /s
 *   (older docs) /tv1 + /tv1req -> /sreq, /tv0 + /tv0req -> /s/req,
 *                /fv0 + /fv0req -> /s/fv0req, /fv1 + /fv1req -> /sfv1req
 *
 * Rules that give exactly this table. The remainder is the request path
 * minus its first strip_len bytes (strip_len is 0 without strip_path).
 *  - v0 joins service path and remainder as URL segments with exactly one
 *    '/' between them. An empty remainder (or the request "/" unstripped)
 *    gives the service path, keeping one trailing '/' only when the request
 *    path (longer than "/") ended with '/'.
 *  - v1 treats the service path as a plain prefix: without stripping, the
 *    request's leading '/' is dropped (/s + /fv1/req = /sfv1/req); with
 *    stripping the remainder is appended as is (/s + /req, /s + req).
 *  - Both collapse the double slash a join would create. A missing or
 *    empty service path means "/". */
long gw_upstream_path(const char *svc_path, size_t svc_len, const char *req_path, size_t req_len,
                      size_t strip_len, int path_handling_v1, char *out, size_t cap)
{
    const char *rem;
    size_t rlen, o = 0;

    if (svc_path == NULL || svc_len == 0) {
        svc_path = "/";
        svc_len = 1;
    }
    if (strip_len > req_len) {
        strip_len = req_len;
    }
    rem = req_path + strip_len;
    rlen = req_len - strip_len;

    if (path_handling_v1) {
        if (strip_len == 0 && rlen > 0 && rem[0] == '/') {
            rem++;
            rlen--;
        }
        if (put(out, cap, &o, svc_path, svc_len) != 0) {
            return -1;
        }
        if (rlen > 0 && rem[0] == '/' && out[o - 1] == '/') {
            rem++;
            rlen--;
        }
        return put(out, cap, &o, rem, rlen) == 0 ? (long)o : -1;
    }

    if (strip_len == 0 && req_len == 1 && req_path[0] == '/') {
        rlen = 0; /* "/" unstripped adds nothing to the service path */
    }
    if (rlen == 0) {
        int slash = req_len > 1 && req_path[req_len - 1] == '/';

        if (svc_len > 1 && svc_path[svc_len - 1] == '/' && !slash && req_len > 1) {
            svc_len--; /* "/s/" + request "/x" stripped to "" -> "/s" */
        }
        if (put(out, cap, &o, svc_path, svc_len) != 0) {
            return -1;
        }
        if (slash && out[o - 1] != '/') {
            return put(out, cap, &o, "/", 1) == 0 ? (long)o : -1;
        }
        return (long)o;
    }
    if (put(out, cap, &o, svc_path, svc_len) != 0) {
        return -1;
    }
    if (out[o - 1] == '/' && rem[0] == '/') {
        rem++;
        rlen--;
    } else if (out[o - 1] != '/' && rem[0] != '/' && put(out, cap, &o, "/", 1) != 0) {
        return -1;
    }
    return put(out, cap, &o, rem, rlen) == 0 ? (long)o : -1;
}

size_t gw_host_split_port(const char *s, size_t n, int *port)
{
    size_t i = n;
    long v = 0;

    *port = 0;
    while (i > 0 && s[i - 1] >= '0' && s[i - 1] <= '9')
        i--;
    if (i == 0 || i == n || s[i - 1] != ':' || n - i > 5)
        return n;
    if (s[0] == '[' ? i < 2 || s[i - 2] != ']' : memchr(s, ':', i - 1) != NULL)
        return n; /* a bare IPv6 address, not a port */
    for (size_t j = i; j < n; j++)
        v = v * 10 + (s[j] - '0');
    if (v < 1 || v > 65535)
        return n;
    *port = (int)v;
    return i - 1;
}
