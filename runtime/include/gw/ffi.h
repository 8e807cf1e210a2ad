/* The FFI boundary: plain C functions the Lua side (lua/luagate/ffi.lua holds
 * the same declarations as cdefs) calls per request. Rules: plain C types and
 * out-parameters, integer status (GW_OK, GW_ERROR, GW_AGAIN, GW_DECLINED),
 * static error text in *err, never raise, never touch a lua_State.
 *
 * Strings returned through (const char **p, size_t *n) are views valid until
 * the request's next modification call or its end: the Lua side copies them
 * (ffi.string) when it needs a Lua string.
 *
 * Phases (enum gw_phase in config-t.h) are checked by the Lua side. */
#ifndef GW_FFI_H
#define GW_FFI_H

#include <stddef.h>
#include <stdint.h>

struct gw_req;
struct gw_lctx;

/* ---- the client request (as received, with the changes plugins made) ---- */
int gw_ffi_req_method(struct gw_req *r, const char **p, size_t *n);
int gw_ffi_req_raw_path(struct gw_req *r, const char **p, size_t *n);  /* as sent, no query */
int gw_ffi_req_path(struct gw_req *r, const char **p, size_t *n);      /* normalized */
int gw_ffi_req_query(struct gw_req *r, const char **p, size_t *n); /* no '?'; plugins' changes */
int gw_ffi_req_target(struct gw_req *r, const char **p, size_t *n); /* as received */
int gw_ffi_req_server_addr(struct gw_req *r, const char **p, size_t *n); /* local address */
int gw_ffi_req_http_version(struct gw_req *r, double *v);
int gw_ffi_req_id(struct gw_req *r, const char **p, size_t *n);
double gw_ffi_req_start_time(struct gw_req *r);                        /* epoch seconds */
int gw_ffi_req_client(struct gw_req *r, const char **ip, size_t *iplen, int *port);
int gw_ffi_req_server_port(struct gw_req *r);
/* Header lookup, case-insensitive on name; idx-th value (0-based).
 * GW_DECLINED when absent. Sees the changes made through
 * gw_ffi_upstream_header (kong.service.request.set_header). */
int gw_ffi_req_header(struct gw_req *r, const char *name, size_t nlen, int idx, const char **p,
                      size_t *n);
int gw_ffi_req_header_count(struct gw_req *r);
int gw_ffi_req_header_at(struct gw_req *r, int i, const char **name, size_t *nlen,
                         const char **value, size_t *vlen);
/* The authenticated consumer's id (kong.client.authenticate), for
 * hashing and the access log; NULL/0 clears it. */
int gw_ffi_req_set_consumer(struct gw_req *r, const char *id, size_t len);
int gw_ffi_metrics_consumers(void); /* --metrics-consumers on */
int gw_ffi_req_set_consumer_name(struct gw_req *r, const char *name, size_t len);

/* Route match data: the matched route (0-based index into config.routes, -1
 * when none) and the regex captures (0-based group index; GW_DECLINED when
 * unset). Named groups through gw_ffi_req_capture_name. */
int gw_ffi_req_route(struct gw_req *r);
int gw_ffi_req_capture_count(struct gw_req *r);
int gw_ffi_req_capture(struct gw_req *r, int i, const char **p, size_t *n);
const char *gw_ffi_req_capture_name(struct gw_req *r, int i); /* NULL when unnamed */
/* Request body: read it whole (access/rewrite). GW_OK when it is there (also
 * when there is none), GW_AGAIN when a read started: wait with the ctx's
 * await, then call again; GW_ERROR with *err (too large, client gone). */
int gw_ffi_req_read_body(struct gw_req *r, const char **err);
int gw_ffi_req_body(struct gw_req *r, const char **p, size_t *n); /* GW_DECLINED: not read */

/* ---- the upstream request (kong.service.request) ---- */
#define GW_HDR_SET 0   /* replace every value */
#define GW_HDR_ADD 1   /* append a value */
#define GW_HDR_CLEAR 2 /* remove */
#define GW_HDR_SET_ABSENT 3 /* prepared lists only: set when the name is absent */
/* or'ed into op: the caller had this name accepted by an earlier call (it
 * remembers names by content), so it is not checked again; the value is */
#define GW_HDR_NAME_OK 16
/* or'ed into an op of a prepared list (gw_ffi_hops_new): the value is an
 * integer slot's index, the integer given at each application */
#define GW_HDR_SLOT 32
int gw_ffi_upstream_header(struct gw_req *r, int op, const char *name, size_t nlen,
                           const char *value, size_t vlen, const char **err);
/* Prepared header operations (gw/hops.h), given packed: for each, the op as
 * '0' + op (GW_HDR_SET, GW_HDR_ADD, GW_HDR_CLEAR or GW_HDR_SET_ABSENT (not
 * for Host), possibly or'ed with
 * GW_HDR_SLOT; GW_HDR_NAME_OK is ignored: every name and value is checked
 * here), the name, a NUL, the value, a NUL (empty for a clear; the slot's
 * index for a slot), parsed and checked once. NULL with *err when refused or out of memory;
 * the caller frees it with gw_ffi_hops_free (an ffi.gc finalizer). */
struct gw_hops;
struct gw_hops *gw_ffi_hops_new(const char *p, size_t len, const char **err);
void gw_ffi_hops_free(struct gw_hops *o);
int gw_ffi_hops_slots(const struct gw_hops *o); /* the ints an application reads */
/* Applies o to the upstream request's headers, as its operations would one
 * by one through gw_ffi_upstream_header; ints: the slots' values (NULL when
 * o has none). GW_OK, or GW_ERROR with *err (no memory). */
int gw_ffi_upstream_set_hops(struct gw_req *r, const struct gw_hops *o, const int64_t *ints,
                             const char **err);
int gw_ffi_upstream_path(struct gw_req *r, const char *p, size_t n, const char **err);
int gw_ffi_upstream_query(struct gw_req *r, const char *p, size_t n, const char **err);
int gw_ffi_upstream_method(struct gw_req *r, const char *p, size_t n, const char **err);
int gw_ffi_upstream_scheme(struct gw_req *r, const char *p, size_t n, const char **err);
int gw_ffi_upstream_body(struct gw_req *r, const char *p, size_t n, const char **err);
int gw_ffi_upstream_target(struct gw_req *r, const char *host, size_t hlen, int port,
                           const char **err);
int gw_ffi_upstream_timeouts(struct gw_req *r, int connect_ms, int write_ms, int read_ms);
/* The path and ?query the upstream gets (or got): the route's strip_path
 * and the service path applied, or what a plugin set. GW_DECLINED when the
 * request has no service. */
int gw_ffi_upstream_uri(struct gw_req *r, const char **p, size_t *n);
/* Overrides an X-Forwarded-* header the gateway sends upstream (Kong's
 * ngx.var.upstream_x_forwarded_*): which = 0 For, 1 Proto, 2 Host, 3 Port,
 * 4 Path, 5 Prefix (Prefix is only sent when set). */
int gw_ffi_upstream_xfwd(struct gw_req *r, int which, const char *v, size_t n, const char **err);
/* What was sent upstream (log phase): status of the try, address. */
int gw_ffi_upstream_status(struct gw_req *r);

/* ---- the response (kong.response / kong.service.response) ---- */
int gw_ffi_resp_status(struct gw_req *r);
int gw_ffi_resp_set_status(struct gw_req *r, int status, const char **err);
/* Response headers as the client will get them (upstream's, or the exit
 * response's, with the changes made so far). */
int gw_ffi_resp_header(struct gw_req *r, const char *name, size_t nlen, int idx, const char **p,
                       size_t *n);
int gw_ffi_resp_header_count(struct gw_req *r);
int gw_ffi_resp_header_at(struct gw_req *r, int i, const char **name, size_t *nlen,
                          const char **value, size_t *vlen);
int gw_ffi_resp_set_header(struct gw_req *r, int op, const char *name, size_t nlen,
                           const char *value, size_t vlen, const char **err);
/* gw_ffi_resp_set_header with an integer value, written in decimal by the
 * runtime (kong.response.set_header with a number: the Lua side passes
 * the integers whose tostring() is that decimal, |v| < 1e14). */
int gw_ffi_resp_set_header_int(struct gw_req *r, int op, const char *name, size_t nlen,
                               int64_t value, const char **err);
/* Sets headers given packed: for each, the op as a digit ('0' GW_HDR_SET,
 * '1' GW_HDR_ADD), the name, a NUL, the value, a NUL. One call for a list
 * the caller built once (proxy-cache's stored headers); each header is
 * checked as gw_ffi_resp_set_header checks it. */
int gw_ffi_resp_set_packed(struct gw_req *r, const char *p, size_t len, const char **err);
/* Applies prepared operations (gw_ffi_hops_new) to the response headers, as
 * gw_ffi_resp_set_header would one by one. GW_ERROR with *err: headers
 * already sent, no memory. */
int gw_ffi_resp_set_hops(struct gw_req *r, const struct gw_hops *o, const int64_t *ints,
                         const char **err);
/* The upstream's own response headers (kong.service.response.get_header). */
int gw_ffi_upstream_resp_header(struct gw_req *r, const char *name, size_t nlen, int idx,
                                const char **p, size_t *n);
int gw_ffi_upstream_resp_header_count(struct gw_req *r);
int gw_ffi_upstream_resp_header_at(struct gw_req *r, int i, const char **name, size_t *nlen,
                                   const char **value, size_t *vlen);
/* "service" when the response came from the upstream, "exit" when a plugin
 * produced it, "error" when the gateway did. */
const char *gw_ffi_resp_source(struct gw_req *r);
/* Leaves out the request's header_filter, body_filter and log phases in
 * mask (GW_PHASE_* bits; others are ignored): the runloop's when no
 * handler is left to run in them (luagate.runloop.plugin_done). */
int gw_ffi_req_skip_phases(struct gw_req *r, int mask);
/* gRPC (gw/grpc.h): whether the request is a gRPC one; Kong's gRPC status
 * of an HTTP status and its short name */
int gw_ffi_req_grpc(struct gw_req *r);
int gw_ffi_resp_grpc_status(struct gw_req *r); /* the response's grpc-status, -1: none */
/* Whether an exit's response is gRPC (Kong's test): 2 its Content-Type is
 * application/grpc..., 1 it has none and the request is gRPC, 0 neither */
int gw_ffi_resp_grpc(struct gw_req *r);
int gw_ffi_grpc_status_of(int http_status);
const char *gw_ffi_grpc_status_name(int code);
/* Ends the request with this response (access, rewrite, response phases; and
 * header_filter with no body). Headers are those set with
 * gw_ffi_resp_set_header after the call's reset (see below). */
int gw_ffi_resp_exit(struct gw_req *r, int status, const char *body, size_t len,
                     const char **err);
/* Forgets response headers set so far (kong.response.exit starts clean). */
int gw_ffi_resp_reset_headers(struct gw_req *r);
/* The whole upstream body, in the response phase (buffered proxying). */
int gw_ffi_resp_body(struct gw_req *r, const char **p, size_t *n);
int gw_ffi_resp_set_body(struct gw_req *r, const char *p, size_t n, const char **err);
/* Body filter: the current chunk and whether it is the last one; replace it. */
int gw_ffi_resp_chunk(struct gw_req *r, const char **p, size_t *n, int *eof);
int gw_ffi_resp_set_chunk(struct gw_req *r, const char *p, size_t n, int eof, const char **err);

/* Compresses the response body on its way to the client (header_filter):
 * gzip at gzip_level, or brotli at br_level when allow_br and the client
 * prefers it. Returns the algorithm chosen (1 gzip, 2 brotli), 0 when the
 * client accepts neither, GW_DECLINED when the response cannot be
 * compressed (no body, already encoded), GW_ERROR with *err. */
int gw_ffi_resp_compress(struct gw_req *r, int allow_br, int gzip_level, int br_level,
                         const char **err);

/* ---- upstream health (active checks run in Lua, in worker 0) ---- */
/* Sets the health of target "upstream/target" as found by active probes.
 * GW_OK, or GW_DECLINED when no such target is known. */
int gw_ffi_health_set(const char *key, int unhealthy);
/* 1 unhealthy, 0 healthy, -1 unknown. */
int gw_ffi_health_get(const char *key);

/* ---- the log phase ---- */
int gw_ffi_log_info(struct gw_req *r, double *latency_total, double *latency_upstream,
                    double *latency_gateway, uint64_t *bytes_in, uint64_t *bytes_out,
                    int *tries);

/* ---- time and the worker ---- */
double gw_ffi_now(void);        /* the loop's cached time, epoch seconds (ms precision) */
double gw_ffi_update_time(void); /* refreshes it */
double gw_ffi_monotonic(void);
int gw_ffi_worker_id(void);
int gw_ffi_worker_count(void);
int gw_ffi_worker_pid(void);
/* Writes one error-log line at level (enum gw_log_level) if enabled. */
void gw_ffi_log(int level, const char *msg, size_t len);
int gw_ffi_log_level(void);

/* ---- waiting (see lua_req.c): an operation started by the running
 * coroutine; the coroutine then yields and is resumed with the results. ---- */
int gw_ffi_sleep(struct gw_lctx *x, double seconds);
/* Parks x until gw_ffi_unpark(ticket) or `seconds` pass (the coroutine
 * then yields as for any wait, and is resumed with no value): the ticket
 * (> 0), or 0 when x cannot wait. A ticket names one park only: waking a
 * coroutine that already woke up, or whose request ended, does nothing. */
double gw_ffi_park(struct gw_lctx *x, double seconds);
/* Wakes the coroutine parked with ticket, in the loop's current round (not
 * from within this call): 1, or 0 when it is no longer parked. */
int gw_ffi_unpark(double ticket);
/* ngx.timer.at: schedules job id (a key of the Lua timer table) in delay
 * seconds; GW_ERROR when too many timers are pending. */
int gw_ffi_timer_at(double delay, int64_t job, const char **err);
int gw_ffi_timers_pending(void);
int gw_ffi_exiting(void);

/* ---- TLS (tls.c): the connection, the client certificate ---- */
int gw_ffi_req_tls(struct gw_req *r); /* 1: the request came over TLS */
/* which: 1 protocol ("TLSv1.3"), 2 cipher, 3 server name (SNI), 4 session
 * reused ("r" or "."); GW_DECLINED on a plain connection or when unset */
int gw_ffi_tls_var(struct gw_req *r, int which, const char **p, size_t *n);
int gw_ffi_tls_client_chain(struct gw_req *r, const char **p, size_t *n);
int gw_ffi_tls_client_info(struct gw_req *r, const char **p, size_t *n);
void *gw_ffi_tls_store_new(const char *pem, size_t n, const char **err);
void gw_ffi_tls_store_free(void *store);
int gw_ffi_tls_verify_client(struct gw_req *r, void *store, int depth, int flags,
                             const char **err);

#endif
