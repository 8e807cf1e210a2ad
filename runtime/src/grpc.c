/* gRPC statuses of gateway responses: see gw/grpc.h. */
#include <stdio.h>
#include <string.h>
#include <strings.h>

#include "gw/conn.h"
#include "gw/ffi.h"
#include "gw/grpc.h"

static const char *const names[] = {
    "OK", "Canceled", "Unknown", "InvalidArgument", "DeadlineExceeded", "NotFound",
    "AlreadyExists", "PermissionDenied", "ResourceExhausted", "FailedPrecondition", "Aborted",
    "OutOfRange", "Unimplemented", "Internal", "Unavailable", "DataLoss", "Unauthenticated",
};

int gw_grpc_request(struct gw_conn *c)
{
    const char *ct;
    size_t n;
    static const char grpc[] = "application/grpc";
    return c->http2 && c->req &&
           gw_ffi_req_header(c->req, "content-type", 12, 0, &ct, &n) == GW_OK &&
           n >= sizeof(grpc) - 1 && strncasecmp(ct, grpc, sizeof(grpc) - 1) == 0;
}

int gw_grpc_status_of(int st)
{
    switch (st) {
    case 200: return 0;
    case 400: return 3;
    case 401: return 16;
    case 403: return 7;
    case 404: return 5;
    case 409: return 6;
    case 429: return 8;
    case 499: return 1;
    case 500: return 13;
    case 501: return 12;
    case 503: return 14;
    case 504: return 4;
    default:
        return st >= 500 && st <= 599 ? 13 : st >= 400 && st <= 499 ? 3
               : st >= 200 && st <= 299 ? 0 : 2;
    }
}

const char *gw_grpc_status_name(int code)
{
    return code >= 0 && code < (int)(sizeof(names) / sizeof(names[0])) ? names[code] : "Unknown";
}

size_t gw_grpc_message_encode(const char *in, size_t n, char *out, size_t cap)
{
    size_t k = 0;
    for (size_t i = 0; i < n; i++) {
        unsigned char ch = (unsigned char)in[i];
        if (ch >= 0x20 && ch <= 0x7e && ch != '%') {
            if (k + 1 >= cap)
                break;
            out[k++] = (char)ch;
        } else {
            if (k + 3 >= cap)
                break;
            snprintf(out + k, 4, "%%%02X", ch);
            k += 3;
        }
    }
    if (cap)
        out[k] = '\0';
    return k;
}
