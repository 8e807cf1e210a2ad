/* The admin API (admin.c): served on the admin listener by every worker.
 * Most endpoints are answered by lua/luagate/admin (called with lua_pcall);
 * POST /config goes through the master (see gw_admin_applied). */
#ifndef GW_ADMIN_H
#define GW_ADMIN_H

#include "gw/conn-t.h"

/* Largest request body the admin API reads (POST /config). */
#define GW_ADMIN_MAX_BODY (64 * 1024 * 1024)

/* Answers a request that arrived on an admin listener. */
void gw_admin_handle(struct gw_conn *c);

/* conn.c: the body of an admin request was read (rc GW_OK) or could not be
 * (GW_ERROR; r->body_too_large tells why). Answers the request. */
void gw_admin_body_done(struct gw_conn *c, int rc);

/* conn.c: an admin connection closes; forgets a request waiting on it. */
void gw_admin_conn_closed(struct gw_conn *c);

/* An admin request whose answer needs I/O (a proxy-cache purge in Redis):
 * luagate.admin returns the action "defer" and does the work in a timer,
 * which gives the answer with this call (token: the request's req.token).
 * The answer is sent from the next loop turn (never from inside the Lua
 * call). GW_OK, or GW_DECLINED when nobody waits for it any more (the
 * client left, or GW_ADMIN_WAIT_TIMEOUT passed: it got a 504). */
#define GW_ADMIN_WAIT_MAX 16
#define GW_ADMIN_WAIT_TIMEOUT 30.0
int gw_ffi_admin_answer(double token, int status, const char *ctype, const char *body,
                        size_t len);

/* Worker start-up: the run directory where posted configurations are
 * written for the master, and the write end of the worker's report pipe
 * to the master (lines "apply <path>"). */
void gw_admin_worker_init(const char *rundir, int report_fd);

/* The worker swapped its configuration in (load time of GET entities). */
void gw_admin_config_loaded(void);

/* The master's answer to this worker's "apply": ok with the new config
 * hash, or not ok with the reason (one line). */
void gw_admin_applied(int ok, const char *text);

/* Maps the debug-switch table in shared memory; master, before fork. */
int gw_admin_shm_init(void);

/* Per-route debug logging (POST /debug/routes/{route}). The check costs one
 * load and compare while no switch is on. t: the request's start time. */
extern volatile double *gw__admin_debug_until;
int gw__admin_debug_match(const char *route_id, double t);
static inline int gw_admin_debug_on(const char *route_id, double t)
{
    return gw__admin_debug_until && *gw__admin_debug_until > t && route_id &&
           gw__admin_debug_match(route_id, t);
}

/* Writes the debug line of a request to the error log whatever the level. */
void gw_admin_debug_log(struct gw_conn *c, struct gw_req *r);

/* Appends the debug fields (,"debug":{...}) to an access-log line. */
struct gw_buf;
void gw_admin_debug_fields(struct gw_buf *b, struct gw_conn *c, struct gw_req *r);

#endif
