#ifndef GW_ROUTER_H
#define GW_ROUTER_H

#include "gw/router-t.h"

struct lua_State;

/* Builds a router from the array of entries at stack index idx (the result
 * of require("luagate.router").compile(config)), in rank order: entry 1
 * wins over entry 2 when both match. On failure (a regex path that does not
 * compile, out of memory, idx not a table) returns GW_ERROR, sets *out to
 * NULL and *err to static text. Reads with raw accesses and never raises;
 * leaves the Lua stack as it found it. The router owns all its memory and
 * keeps no references into the Lua state; free it with gw_router_free. */
int gw_router_build(struct lua_State *L, int idx, struct gw_router **out, const char **err);

/* The same build in steps, for a worker's reload: each step returns once
 * the monotonic clock (CLOCK_MONOTONIC, seconds) passes deadline, after one
 * unit of work at least (an entry counted, or read, compiled and placed);
 * deadline <= 0: no limit. gw_router_build_start makes the builder (GW_OK,
 * or GW_ERROR with *err); gw_router_build_step, given the same entries
 * table at idx each time (it must not change in between), returns GW_AGAIN
 * (call again), GW_OK with the complete router in *out (the caller owns it),
 * or GW_ERROR with *err (static text). No router exists for a caller before
 * GW_OK: a half-built one is never seen. gw_router_build_free frees the
 * builder and what it built so far (after GW_OK: only the builder);
 * *b = NULL. None of them raise or leave values on the Lua stack. */
struct gw_router_builder;
int gw_router_build_start(struct lua_State *L, int idx, struct gw_router_builder **b,
                          const char **err);
int gw_router_build_step(struct gw_router_builder *b, struct lua_State *L, int idx,
                         double deadline, struct gw_router **out, const char **err);
void gw_router_build_free(struct gw_router_builder **b);

/* Matches a request. Returns GW_OK and fills *m, or GW_DECLINED when no
 * route matches. The Host may carry ":port"; without one, req->port is used,
 * so a route host "a.com:8000" matches "Host: a.com" on local port 8000,
 * while a route host without a port matches any port. m->cap/ncap/cap_names
 * are set for regex matches only (ncap = 0 otherwise). Never allocates; not
 * reentrant for one router (regexes share one match data block), so each
 * worker thread must use its own router. */
int gw_router_match(const struct gw_router *r, const struct gw_router_req *req,
                    struct gw_router_match *m);

/* Frees a router built by gw_router_build; *r is set to NULL. */
void gw_router_free(struct gw_router **r);

/* Normalizes a request path in place as Kong does before routing: decodes
 * percent-encoded unreserved characters (ALPHA DIGIT - . _ ~), upper-cases
 * the hex digits of the remaining escapes ("%2f" -> "%2F", which stays
 * encoded), then removes dot segments (RFC 3986 5.2.4). Duplicate slashes
 * are kept, as Kong keeps them. The result is never longer than the input.
 * Returns the new length, or -1 when the path is invalid (empty, does not
 * start with '/', '%' not followed by two hex digits, a NUL byte). */
long gw_path_normalize(char *path, size_t len);

/* Builds the upstream path as Kong does for strip_path/path_handling
 * (v0 and v1; the rules and Kong's table are in runtime/src/path.c) from the
 * service path (NULL or empty means "/"), the normalized request path and
 * strip_len: m->strip_len when the route has strip_path, 0 when it does not
 * (v1 tells "no strip" from "stripped nothing" by strip_len == 0). Writes at
 * most cap bytes to out, not NUL-terminated, and returns the length, or -1
 * when out is too small. */
long gw_upstream_path(const char *svc_path, size_t svc_len, const char *req_path, size_t req_len,
                      size_t strip_len, int path_handling_v1, char *out, size_t cap);

/* Splits a Host value, "host:port" or "[v6]:port": returns the host part's
 * length (brackets kept) and sets *port, or returns n with *port 0 when
 * there is no port (1 to 5 digits, 1..65535) to split off. */
size_t gw_host_split_port(const char *s, size_t n, int *port);

#endif
