/* Router types. The router is compiled at config load from the entries
 * luagate.router (Lua) produces and matched per request in C. */
#ifndef GW_ROUTER_T_H
#define GW_ROUTER_T_H

#include "gw/core-t.h"

#define GW_ROUTER_MAX_CAPTURES 16

struct gw_router; /* opaque, immutable once built */

/* What the router sees of a request. All views stay valid during the match. */
struct gw_router_req {
    struct gw_str method; /* "GET" */
    struct gw_str host;   /* Host header as sent, may carry ":port", any case */
    struct gw_str path;   /* normalized path, no query string */
    int port;             /* local port the request arrived on */
    int https;            /* it came over TLS */
    struct gw_str sni;    /* the handshake's server name; n == 0: none */
    /* Header lookup: lname is lowercase; returns the idx-th value of that
     * header in *v (0-based) and GW_OK, or GW_DECLINED when there is none. */
    int (*header)(void *ud, const char *lname, size_t lname_len, int idx, struct gw_str *v);
    void *ud;
};

struct gw_router_match {
    int route;        /* 0-based index into config.routes */
    int entry;        /* 0-based index of the matched entry (rank) */
    size_t strip_len; /* bytes at the start of path that strip_path removes */
    int ncap;         /* regex paths: capture pairs in cap, group 0 included: the regex's
                         group count + 1, at most GW_ROUTER_MAX_CAPTURES; 0 for plain */
    size_t cap[2 * GW_ROUTER_MAX_CAPTURES]; /* offsets into req.path; SIZE_MAX = unset */
    const char *const *cap_names; /* NULL when the regex has no named groups, else
                                     cap_names[i] = name of group i or NULL; ncap
                                     entries; owned by the router */
};

#endif
