/* Lua on the request path: coroutines that run plugin phases, and the
 * operations a coroutine waits for (sleep, timers, I/O). */
#ifndef GW_LUA_REQ_H
#define GW_LUA_REQ_H

#include <ev.h>

#include "gw/list.h"

struct lua_State;
struct gw_conn;
struct gw_req;

/* A coroutine and what it is running: a request's phases, or a timer. */
struct gw_lctx {
    struct lua_State *co;
    int ref;              /* registry reference that keeps co alive */
    struct gw_conn *c;    /* the request's connection; NULL for timers */
    int phase;            /* enum gw_phase running (0 for timers) */
    int waiting;          /* an operation is under way */
    int dead;             /* co cannot be resumed again */
    ev_timer sleep;       /* ngx.sleep */
    struct gw_list link;  /* the free list */
};

/* Loads luagate.boot in the worker's state: the kong and ngx globals, the
 * coroutine entry point. Returns 0 or -1 (logged). */
int gw_lua_init(struct lua_State *L);

/* Runs a phase of the connection's current request. Returns GW_OK when it
 * finished, GW_AGAIN when it waits (gw_conn_phase_done follows), GW_ERROR
 * when the coroutine failed (logged; the caller answers 500). */
int gw_lua_phase(struct gw_conn *c, int phase);

/* Called when a request ends or is aborted: cancels what its coroutine waits
 * for and returns the coroutine to the pool (or drops a broken one). */
void gw_lua_release(struct gw_req *r);

/* Resumes x with nargs values already pushed on x->co: an operation it
 * waited for has finished. */
void gw_lua_wake(struct gw_lctx *x, int nargs);

/* Fires every pending timer prematurely (graceful stop). */
void gw_lua_timers_stop(void);

/* Defined by conn.c: a phase that waited has finished (GW_OK) or failed
 * (GW_ERROR). */
void gw_conn_phase_done(struct gw_conn *c, int phase, int rc);

#endif
