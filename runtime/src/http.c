/* HTTP helpers: head recording callbacks for llhttp, header predicates,
 * reason phrases, request ids, JSON escaping. */
#include <string.h>
#include <strings.h>

#include "gw/buf.h"
#include "gw/http.h"

#define CTX(p) ((struct gw_head_ctx *)(p)->data)

static int on_url(llhttp_t *p, const char *at, size_t len)
{
    struct gw_head_ctx *x = CTX(p);
    if (x->url_off == NULL)
        return 0;
    if (*x->url_len == 0)
        *x->url_off = (uint32_t)(at - x->base);
    *x->url_len += (uint32_t)len;
    return 0;
}

static int on_status(llhttp_t *p, const char *at, size_t len)
{
    struct gw_head_ctx *x = CTX(p);
    if (x->status_off == NULL)
        return 0;
    if (*x->status_len == 0)
        *x->status_off = (uint32_t)(at - x->base);
    *x->status_len += (uint32_t)len;
    return 0;
}

/* Trailers of a chunked body are forwarded raw (and recorded into
 * x->trailers when the parser's owner asked for them): the shapes refused
 * in heads are refused there too. */
static int bad_trailer(llhttp_t *p, const char *at, size_t len, int value)
{
    for (size_t i = 0; i < len; i++) {
        char ch = at[i];
        if (value ? (ch == '\r' || ch == '\n' || ch == '\0') : (ch == ' ' || ch == '\t')) {
            CTX(p)->bad_trailer = 1;
            return HPE_USER;
        }
    }
    return 0;
}

/* Appends to the recorded trailers; -1 past GW_MAX_TRAILERS bytes (the
 * head's limit is no help there) or out of memory. */
#define GW_MAX_TRAILERS (64 * 1024)
static int record_trailer(struct gw_head_ctx *x, const char *p, size_t n)
{
    if (x->trailers->len + n > GW_MAX_TRAILERS) {
        x->bad_trailer = 1;
        return -1;
    }
    return gw_buf_append(x->trailers, p, n);
}

/* The trailer halves of the three callbacks below, out of line: the heads'
 * path stays short. */
#define COLD __attribute__((noinline, cold))

static COLD int trailer_field(llhttp_t *p, const char *at, size_t len)
{
    struct gw_head_ctx *x = CTX(p);
    if (len > 0) /* llhttp calls this with no bytes for an empty name */
        x->trailer_named = 1;
    if (x->trailers && record_trailer(x, at, len) != 0)
        return HPE_USER;
    return bad_trailer(p, at, len, 0);
}

static COLD int trailer_value(llhttp_t *p, const char *at, size_t len)
{
    struct gw_head_ctx *x = CTX(p);
    /* a value that does not continue where its last piece ended was folded
     * onto a new line (obs-fold) */
    if (x->trailer_value_end && at != x->trailer_value_end) {
        x->bad_trailer = 1;
        return HPE_USER;
    }
    if (x->trailers && ((x->trailer_value_end == NULL && record_trailer(x, ": ", 2)) ||
                        record_trailer(x, at, len)))
        return HPE_USER;
    x->trailer_value_end = at + len;
    return bad_trailer(p, at, len, 1);
}

static COLD int trailer_value_complete(llhttp_t *p)
{
    struct gw_head_ctx *x = CTX(p);
    int had_value = x->trailer_value_end != NULL;
    x->trailer_value_end = NULL;
    /* a trailer line with an empty name (llhttp lets it through there) */
    if (!x->trailer_named) {
        x->bad_trailer = 1;
        return HPE_USER;
    }
    x->trailer_named = 0;
    if (x->trailers &&
        ((!had_value && record_trailer(x, ": ", 2)) || record_trailer(x, "\r\n", 2)))
        return HPE_USER;
    return 0;
}

static int on_header_field(llhttp_t *p, const char *at, size_t len)
{
    struct gw_head_ctx *x = CTX(p);
    struct gw_head *h = x->head;
    if (h == NULL || h->complete) /* trailers: not part of the head */
        return trailer_field(p, at, len);
    if (!h->parsing_value) {
        if (h->nhdr == GW_MAX_HEADERS)
            return HPE_USER; /* too many headers: answered 431 */
        struct gw_hdr *e = &h->hdr[h->nhdr];
        e->name = (uint32_t)(at - x->base);
        e->name_len = 0;
        e->value = e->name;
        e->value_len = 0;
        h->parsing_value = 1;
    }
    h->hdr[h->nhdr].name_len += (uint32_t)len;
    return 0;
}

static int on_header_value(llhttp_t *p, const char *at, size_t len)
{
    struct gw_head_ctx *x = CTX(p);
    if (x->head == NULL || x->head->complete)
        return trailer_value(p, at, len);
    struct gw_hdr *e = &x->head->hdr[x->head->nhdr];
    if (e->value_len == 0)
        e->value = (uint32_t)(at - x->base);
    e->value_len += (uint32_t)len;
    return 0;
}

static int on_header_value_complete(llhttp_t *p)
{
    struct gw_head *h = CTX(p)->head;
    if (h == NULL || h->complete)
        return trailer_value_complete(p);
    struct gw_hdr *e = &h->hdr[h->nhdr];
    const char *base = CTX(p)->base;
    while (e->value_len > 0 &&
           (base[e->value + e->value_len - 1] == ' ' || base[e->value + e->value_len - 1] == '\t'))
        e->value_len--;
    h->nhdr++;
    h->parsing_value = 0;
    return 0;
}

static int on_headers_complete(llhttp_t *p)
{
    if (CTX(p)->head)
        CTX(p)->head->complete = 1;
    return CTX(p)->on_headers_complete(p);
}

static int on_message_complete(llhttp_t *p)
{
    return CTX(p)->on_message_complete(p);
}

static int on_body(llhttp_t *p, const char *at, size_t len)
{
    struct gw_head_ctx *x = CTX(p);
    return x->on_body ? x->on_body(p, at, len) : 0;
}

void gw_http_settings_init(llhttp_settings_t *s)
{
    llhttp_settings_init(s);
    s->on_url = on_url;
    s->on_status = on_status;
    s->on_header_field = on_header_field;
    s->on_header_value = on_header_value;
    s->on_header_value_complete = on_header_value_complete;
    s->on_headers_complete = on_headers_complete;
    s->on_message_complete = on_message_complete;
    s->on_body = on_body;
}

const char *gw_http_reason(int status)
{
    switch (status) {
    case 100: return "Continue";
    case 101: return "Switching Protocols";
    case 200: return "OK";
    case 201: return "Created";
    case 203: return "Non-Authoritative Information";
    case 205: return "Reset Content";
    case 207: return "Multi-Status";
    case 202: return "Accepted";
    case 204: return "No Content";
    case 206: return "Partial Content";
    case 301: return "Moved Permanently";
    case 302: return "Found";
    case 303: return "See Other";
    case 304: return "Not Modified";
    case 307: return "Temporary Redirect";
    case 308: return "Permanent Redirect";
    case 400: return "Bad Request";
    case 401: return "Unauthorized";
    case 403: return "Forbidden";
    case 404: return "Not Found";
    case 402: return "Payment Required";
    case 405: return "Method Not Allowed";
    case 406: return "Not Acceptable";
    case 407: return "Proxy Authentication Required";
    case 408: return "Request Timeout";
    case 409: return "Conflict";
    case 413: return "Content Too Large";
    case 410: return "Gone";
    case 411: return "Length Required";
    case 412: return "Precondition Failed";
    case 414: return "URI Too Long";
    case 415: return "Unsupported Media Type";
    case 416: return "Range Not Satisfiable";
    case 417: return "Expectation Failed";
    case 418: return "I'm a teapot";
    case 421: return "Misdirected Request";
    case 422: return "Unprocessable Content";
    case 423: return "Locked";
    case 424: return "Failed Dependency";
    case 425: return "Too Early";
    case 428: return "Precondition Required";
    case 426: return "Upgrade Required";
    case 429: return "Too Many Requests";
    case 431: return "Request Header Fields Too Large";
    case 500: return "Internal Server Error";
    case 501: return "Not Implemented";
    case 502: return "Bad Gateway";
    case 503: return "Service Unavailable";
    case 504: return "Gateway Timeout";
    case 505: return "HTTP Version Not Supported";
    case 507: return "Insufficient Storage";
    case 511: return "Network Authentication Required";
    default: return "Unknown";
    }
}

int gw_http_name_is(const char *name, size_t len, const char *lower, size_t lower_len)
{
    if (len != lower_len)
        return 0;
    for (size_t i = 0; i < len; i++) {
        char ch = name[i];
        if (ch >= 'A' && ch <= 'Z')
            ch += 32;
        if (ch != lower[i])
            return 0;
    }
    return 1;
}

int gw_http_unsafe_value(const char *v, size_t len)
{
    for (size_t i = 0; i < len; i++)
        if (v[i] == '\r' || v[i] == '\n' || v[i] == '\0')
            return 1;
    return 0;
}

int gw_http_is_token(const char *p, size_t n)
{
    if (n == 0)
        return 0;
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)p[i];
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              (c != 0 && strchr("!#$%&'*+-.^_`|~", c) != NULL)))
            return 0;
    }
    return 1;
}

int gw_http_hop_by_hop(const char *n, size_t len)
{
    switch (len) {
    case 2: return GW_NAME_IS(n, len, "te");
    case 7: return GW_NAME_IS(n, len, "trailer") || GW_NAME_IS(n, len, "upgrade");
    case 10: return GW_NAME_IS(n, len, "connection") || GW_NAME_IS(n, len, "keep-alive");
    case 16: return GW_NAME_IS(n, len, "proxy-connection");
    default: return 0;
    }
}

int gw_http_has_token(const char *v, size_t len, const char *token)
{
    size_t tl = strlen(token);
    size_t i = 0;
    while (i < len) {
        while (i < len && (v[i] == ' ' || v[i] == '\t' || v[i] == ','))
            i++;
        size_t s = i;
        while (i < len && v[i] != ',')
            i++;
        size_t e = i;
        while (e > s && (v[e - 1] == ' ' || v[e - 1] == '\t'))
            e--;
        if (e - s == tl && strncasecmp(v + s, token, tl) == 0)
            return 1;
    }
    return 0;
}

int gw_http_header(const struct gw_head *h, const char *base, const char *lname, size_t lname_len,
                   int idx, struct gw_str *v)
{
    for (int i = 0; i < h->nhdr; i++) {
        const struct gw_hdr *e = &h->hdr[i];
        if (gw_http_name_is(base + e->name, e->name_len, lname, lname_len) && idx-- == 0) {
            v->p = base + e->value;
            v->n = e->value_len;
            return GW_OK;
        }
    }
    return GW_DECLINED;
}

int gw_json_escape(struct gw_buf *b, const char *s, size_t n)
{
    static const char hex[] = "0123456789abcdef";
    if (gw_buf_reserve(b, n * 6, 0) != 0)
        return -1;
    char *o = b->data + b->len;
    for (size_t i = 0; i < n; i++) {
        unsigned char ch = (unsigned char)s[i];
        if (ch == '"' || ch == '\\') {
            *o++ = '\\';
            *o++ = (char)ch;
        } else if (ch < 0x20 || ch == 0x7f) {
            *o++ = '\\';
            *o++ = 'u';
            *o++ = '0';
            *o++ = '0';
            *o++ = hex[ch >> 4];
            *o++ = hex[ch & 15];
        } else {
            *o++ = (char)ch;
        }
    }
    b->len = (size_t)(o - b->data);
    return 0;
}

static uint64_t xorshift128p(uint64_t s[2])
{
    uint64_t a = s[0], b = s[1];
    s[0] = b;
    a ^= a << 23;
    s[1] = a ^ b ^ (a >> 17) ^ (b >> 26);
    return s[1] + b;
}

void gw_request_id(char *id, uint64_t rng[2])
{
    static const char hex[] = "0123456789abcdef";
    uint64_t a = xorshift128p(rng), b = xorshift128p(rng);
    for (int i = 0; i < 16; i++) {
        id[i] = hex[a & 15];
        a >>= 4;
        id[16 + i] = hex[b & 15];
        b >>= 4;
    }
    id[GW_REQUEST_ID_LEN] = '\0';
}

int gw_buf_append_u64(struct gw_buf *b, uint64_t v)
{
    char tmp[24];
    int n = 0;
    do {
        tmp[sizeof(tmp) - 1 - n++] = (char)('0' + v % 10);
        v /= 10;
    } while (v);
    return gw_buf_append(b, tmp + sizeof(tmp) - n, (size_t)n);
}
