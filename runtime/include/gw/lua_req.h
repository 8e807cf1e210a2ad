/* Lua on the request path: coroutines that run plugin phases, and the
 * operations a coroutine waits for (sleep, timers, I/O). */
#ifndef GW_LUA_REQ_H
#define GW_LUA_REQ_H

#include <ev.h>

#include "gw/list.h"

struct lua_State;
struct gw_conn;
struct gw_req;

/* Something attached to a coroutine until its request (or timer job) ends:
 * an operation it waits for, or a resource it holds (a cosocket). When the
 * request ends or is aborted, cancel is called (unlinked first) for each
 * one still attached: it must stop every watcher that could resume the
 * coroutine and release what it holds; it must not resume anything. The
 * owner embeds the struct and recovers itself with gw_container_of. */
struct gw_lop {
    struct gw_list link; /* in gw_lctx.ops */
    void (*cancel)(struct gw_lop *op);
};

/* A coroutine and what it is running: a request's phases, or a timer. */
struct gw_lctx {
    struct lua_State *co; /* replaced when a handler exits (YIELD_EXIT) */
    int ref;              /* registry reference that keeps co alive */
    struct gw_conn *c;    /* the request's connection; NULL for timers */
    int phase;            /* enum gw_phase running (0 for timers) */
    int waiting;          /* an operation is under way */
    int dead;             /* co cannot be resumed again */
    ev_timer sleep;       /* ngx.sleep, and a parked coroutine's time limit */
    int park;             /* its slot in the park table + 1, or 0 (gw_ffi_park) */
    struct gw_list link;  /* the free list */
    struct gw_list ops;   /* struct gw_lop attached (pending operations, sockets) */
};

/* Attaches op to x (cancelled when x's request or timer job ends). */
void gw_lop_add(struct gw_lctx *x, struct gw_lop *op);

/* Detaches op (it finished, or its owner released it). Safe to call twice. */
void gw_lop_remove(struct gw_lop *op);

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
