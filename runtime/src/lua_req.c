/* Coroutines for plugin code. Each request that runs Lua gets a coroutine
 * from a pool; the coroutine's body (luagate.runloop.thread_main) loops:
 * it runs what it is given (a phase of a request, or a timer job), then
 * yields YIELD_DONE and waits to be given the next one. A plugin call that
 * waits starts an operation in C (gw_ffi_sleep, I/O...) and yields
 * YIELD_AWAIT; the operation's callback pushes the results and resumes the
 * coroutine with gw_lua_wake.
 *
 * kong.response.exit (and ngx.exit) end the calling handler by yielding
 * YIELD_EXIT (luagate.request.stop): that coroutine is never resumed again.
 * lctx_resume gives the gw_lctx a fresh coroutine at once and starts it with
 * KIND_EXITED, which finishes the phase (the handlers after the stopped one)
 * and yields YIELD_DONE as usual; the abandoned one is left to the GC. An
 * error() would cost LuaJIT on x86-64 an unwind through libgcc (about 15,000
 * instructions); the new coroutine costs an allocation. */
#include <lauxlib.h>
#include <lua.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "gw/config-t.h"
#include "gw/conn-t.h"
#include "gw/core-t.h"
#include "gw/ffi.h"
#include "gw/log.h"
#include "gw/lua_req.h"
#include "gw/worker-t.h"

#define YIELD_AWAIT 1
#define YIELD_DONE 2
#define YIELD_EXIT 3
#define KIND_TIMER 0
#define KIND_EXITED (-1)
#define EXITED_STACK 128 /* slots, see lctx_renew_co */
#define MAX_TIMERS 4096
#define POOL_MAX 256

static lua_State *L0;
static int main_ref = LUA_NOREF;
static struct gw_list free_ctx;
static int nfree;

struct timer_job {
    ev_timer t;
    int64_t job;
    struct gw_list link;
};

static struct gw_list timers;
static int ntimers;

int gw_lua_init(lua_State *L)
{
    L0 = L;
    gw_list_init(&free_ctx);
    gw_list_init(&timers);
    lua_getglobal(L, "require");
    lua_pushstring(L, "luagate.boot");
    if (lua_pcall(L, 1, 1, 0) != 0) {
        gw_log(GW_LOG_EMERG, "could not load luagate.boot: %s", lua_tostring(L, -1));
        lua_pop(L, 1);
        return -1;
    }
    lua_getfield(L, -1, "thread_main");
    if (!lua_isfunction(L, -1)) {
        gw_log(GW_LOG_EMERG, "luagate.boot has no thread_main");
        lua_pop(L, 2);
        return -1;
    }
    main_ref = luaL_ref(L, LUA_REGISTRYINDEX);
    lua_pop(L, 1);
    return 0;
}

static void sleep_cb(struct ev_loop *loop, ev_timer *w, int revents);
static void park_clear(struct gw_lctx *x);

/* Gives x a new coroutine, ready to start thread_main. May longjmp on
 * memory errors (lua_newthread), as the state's other allocations. */
static void lctx_new_co(struct gw_lctx *x)
{
    x->co = lua_newthread(L0);
    x->ref = luaL_ref(L0, LUA_REGISTRYINDEX);
    /* the first resume starts thread_main */
    lua_rawgeti(x->co, LUA_REGISTRYINDEX, main_ref);
}

/* Replaces x's coroutine, abandoned in a handler that exited (YIELD_EXIT),
 * by a new one that goes on with the phase; the old one is left to the GC.
 * The new stack is sized at once for the phases that follow: left to grow
 * from LuaJIT's initial size as the handlers need it, it cost a proxy-cache
 * hit some 3,000 instructions more; a larger one costs more to allocate
 * and clear (docs/performance.md). */
static void lctx_renew_co(struct gw_lctx *x)
{
    luaL_unref(L0, LUA_REGISTRYINDEX, x->ref);
    lctx_new_co(x);
    lua_checkstack(x->co, EXITED_STACK);
    lua_pushinteger(x->co, KIND_EXITED);
    lua_pushnil(x->co);
    lua_pushnumber(x->co, (lua_Number)(uintptr_t)x);
}

static struct gw_lctx *lctx_get(void)
{
    if (!gw_list_empty(&free_ctx)) {
        struct gw_list *l = free_ctx.next;
        gw_list_remove(l);
        nfree--;
        return gw_container_of(l, struct gw_lctx, link);
    }
    struct gw_lctx *x = calloc(1, sizeof(*x));
    if (x == NULL)
        return NULL;
    lctx_new_co(x);
    gw_list_init(&x->link);
    gw_list_init(&x->ops);
    ev_init(&x->sleep, sleep_cb);
    return x;
}

void gw_lop_add(struct gw_lctx *x, struct gw_lop *op)
{
    gw_list_insert_tail(&x->ops, &op->link);
}

void gw_lop_remove(struct gw_lop *op)
{
    gw_list_remove(&op->link);
}

/* Cancels what is still attached to x: its request or job has ended. */
static void lctx_cancel_ops(struct gw_lctx *x)
{
    while (!gw_list_empty(&x->ops)) {
        struct gw_lop *op = gw_container_of(x->ops.next, struct gw_lop, link);
        gw_list_remove(&op->link);
        op->cancel(op);
    }
}

static void lctx_drop(struct gw_lctx *x)
{
    ev_timer_stop(gw_worker->loop, &x->sleep);
    park_clear(x);
    lctx_cancel_ops(x);
    luaL_unref(L0, LUA_REGISTRYINDEX, x->ref);
    free(x);
}

static void lctx_put(struct gw_lctx *x)
{
    ev_timer_stop(gw_worker->loop, &x->sleep);
    park_clear(x);
    lctx_cancel_ops(x);
    x->c = NULL;
    x->phase = 0;
    x->waiting = 0;
    if (x->dead || nfree >= POOL_MAX) {
        lctx_drop(x);
        return;
    }
    gw_list_insert_head(&free_ctx, &x->link);
    nfree++;
}

/* Resumes and interprets the outcome: GW_OK (done), GW_AGAIN (waiting),
 * GW_ERROR (the coroutine died; x is marked dead). A handler that exited
 * (YIELD_EXIT) leaves x with a new coroutine, which finishes the phase. */
static int lctx_resume(struct gw_lctx *x, int nargs)
{
    int rc = lua_resume(x->co, nargs);
    while (rc == LUA_YIELD && x->c != NULL && !x->waiting &&
           lua_tointeger(x->co, -1) == YIELD_EXIT) {
        lctx_renew_co(x);
        rc = lua_resume(x->co, 3);
    }
    if (rc == LUA_YIELD) {
        int why = (int)lua_tointeger(x->co, -1);
        lua_settop(x->co, 0);
        if (why == YIELD_DONE)
            return GW_OK;
        if (x->waiting)
            return GW_AGAIN;
        gw_log(GW_LOG_ERR, "a plugin yielded without waiting for anything (coroutine.yield "
                           "outside a coroutine of its own?)");
        x->dead = 1;
        return GW_ERROR;
    }
    const char *msg = rc == 0 ? "the coroutine returned" : lua_tostring(x->co, -1);
    gw_log(GW_LOG_ERR, "Lua coroutine failed: %s", msg ? msg : "unknown error");
    x->dead = 1;
    return GW_ERROR;
}

int gw_lua_phase(struct gw_conn *c, int phase)
{
    struct gw_req *r = c->req;
    struct gw_lctx *x = r->lctx;
    if (x == NULL) {
        x = lctx_get();
        if (x == NULL)
            return GW_ERROR;
        x->c = c;
        r->lctx = x;
    }
    int fresh = 0;
    x->phase = phase;
    r->phase = phase;
    /* pointers go as numbers: LuaJIT compiles ffi.cast from a number, not
     * from a light userdata (x86-64 addresses fit a double exactly) */
    lua_pushinteger(x->co, phase);
    lua_pushnumber(x->co, (lua_Number)(uintptr_t)r);
    lua_pushnumber(x->co, (lua_Number)(uintptr_t)x);
    lua_pushinteger(x->co, r->route ? r->match.route : -1);
    if (!r->lua_started) {
        r->lua_started = 1;
        fresh = 1;
    }
    lua_pushboolean(x->co, fresh);
    if (fresh)
        lua_rawgeti(x->co, LUA_REGISTRYINDEX, r->config->lua_ref);
    else
        lua_pushnil(x->co);
    int rc = lctx_resume(x, 6);
    if (rc != GW_AGAIN)
        r->phase = 0;
    if (rc == GW_ERROR) {
        r->lctx = NULL;
        lctx_drop(x);
    }
    return rc;
}

void gw_lua_release(struct gw_req *r)
{
    struct gw_lctx *x = r->lctx;
    if (x == NULL)
        return;
    r->lctx = NULL;
    if (x->waiting) {
        /* aborted mid-wait: the coroutine's stack is in the middle of a
         * plugin; it cannot be reused */
        x->dead = 1;
    }
    lctx_put(x);
}

void gw_lua_wake(struct gw_lctx *x, int nargs)
{
    x->waiting = 0;
    int rc = lctx_resume(x, nargs);
    if (rc == GW_AGAIN)
        return;
    if (x->c == NULL) { /* a timer */
        lctx_put(x);
        return;
    }
    struct gw_conn *c = x->c;
    int phase = x->phase;
    c->req->phase = 0;
    if (rc == GW_ERROR) {
        c->req->lctx = NULL;
        lctx_drop(x);
    }
    gw_conn_phase_done(c, phase, rc);
}

static void sleep_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
    struct gw_lctx *x = gw_container_of(w, struct gw_lctx, sleep);
    park_clear(x);
    gw_lua_wake(x, 0);
}

/* x waits on its sleep timer: `seconds` (ngx.sleep), or a park's limit. */
static void sleep_start(struct gw_lctx *x, double seconds)
{
    x->waiting = 1;
    ev_timer_set(&x->sleep, seconds > 0 ? seconds : 0, 0);
    ev_timer_start(gw_worker->loop, &x->sleep);
}

/* Parking: a coroutine waits for another one to wake it (gw_ffi_park,
 * gw_ffi_unpark), e.g. requests whose Redis commands go in one batch. The
 * waker holds a ticket, not the gw_lctx, which may be reused or freed
 * when its request ends: a ticket is the park's slot in this table and
 * the slot's generation at the time (low PARK_BITS bits: the slot), exact
 * in a double. The wait is the sleep timer's (its time limit), and the
 * wake an event fed to it: the coroutine resumes in the loop's current
 * round, after the waker's own code has run. */
#define PARK_BITS 20
#define PARK_MAX (1 << PARK_BITS)

struct park_slot {
    struct gw_lctx *x; /* NULL when free */
    uint32_t gen;
    int next_free;     /* index + 1, or 0 */
};

static struct park_slot *parks;
static int nparks, park_free;
static uint32_t park_gen;

static void park_clear(struct gw_lctx *x)
{
    if (x->park == 0)
        return;
    struct park_slot *s = &parks[x->park - 1];
    s->x = NULL;
    s->next_free = park_free;
    park_free = x->park;
    x->park = 0;
}

double gw_ffi_park(struct gw_lctx *x, double seconds)
{
    if (x == NULL || x->waiting || gw_worker == NULL)
        return 0;
    int i;
    if (park_free) {
        i = park_free - 1;
        park_free = parks[i].next_free;
    } else {
        if (nparks == PARK_MAX)
            return 0;
        int n = nparks ? nparks * 2 : 64;
        if (n > PARK_MAX)
            n = PARK_MAX;
        struct park_slot *p = realloc(parks, (size_t)n * sizeof(*p));
        if (p == NULL)
            return 0;
        parks = p;
        for (int k = n - 1; k > nparks; k--) { /* nparks + 1 .. n - 1 free */
            parks[k].x = NULL;
            parks[k].next_free = park_free;
            park_free = k + 1;
        }
        i = nparks;
        nparks = n;
    }
    struct park_slot *s = &parks[i];
    s->x = x;
    if (++park_gen == 0) /* a ticket is never 0 */
        park_gen = 1;
    s->gen = park_gen;
    x->park = i + 1;
    sleep_start(x, seconds);
    return (double)(((uint64_t)s->gen << PARK_BITS) | (uint64_t)i);
}

int gw_ffi_unpark(double ticket)
{
    if (!(ticket > 0) || ticket >= 9007199254740992.0)
        return 0;
    uint64_t t = (uint64_t)ticket;
    uint64_t i = t & (PARK_MAX - 1);
    if (i >= (uint64_t)nparks)
        return 0;
    struct park_slot *s = &parks[i];
    if (s->x == NULL || s->gen != (uint32_t)(t >> PARK_BITS))
        return 0;
    struct gw_lctx *x = s->x;
    park_clear(x);
    ev_timer_stop(gw_worker->loop, &x->sleep);
    ev_feed_event(gw_worker->loop, &x->sleep, EV_TIMER);
    return 1;
}

int gw_ffi_sleep(struct gw_lctx *x, double seconds)
{
    if (x == NULL || x->waiting || gw_worker == NULL)
        return GW_ERROR;
    sleep_start(x, seconds);
    return GW_AGAIN;
}

static void run_timer(int64_t job, int premature)
{
    struct gw_lctx *x = lctx_get();
    if (x == NULL) {
        gw_log(GW_LOG_ERR, "out of memory running a timer");
        return;
    }
    lua_pushinteger(x->co, KIND_TIMER);
    lua_pushnil(x->co);
    lua_pushnumber(x->co, (lua_Number)(uintptr_t)x);
    lua_pushnumber(x->co, (lua_Number)job);
    lua_pushboolean(x->co, premature);
    int rc = lctx_resume(x, 5);
    if (rc == GW_OK)
        lctx_put(x);
    else if (rc == GW_ERROR)
        lctx_drop(x);
}

static void timer_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
    struct timer_job *t = gw_container_of(w, struct timer_job, t);
    gw_list_remove(&t->link);
    ntimers--;
    int64_t job = t->job;
    free(t);
    run_timer(job, 0);
}

int gw_ffi_timer_at(double delay, int64_t job, const char **err)
{
    if (gw_worker == NULL) {
        *err = "timers run in workers only";
        return GW_ERROR;
    }
    if (gw_worker->stopping) {
        *err = "process exiting";
        return GW_ERROR;
    }
    if (ntimers >= MAX_TIMERS) {
        *err = "too many pending timers";
        return GW_ERROR;
    }
    struct timer_job *t = calloc(1, sizeof(*t));
    if (t == NULL) {
        *err = "no memory";
        return GW_ERROR;
    }
    t->job = job;
    ev_timer_init(&t->t, timer_cb, delay < 0 ? 0 : delay, 0);
    ev_timer_start(gw_worker->loop, &t->t);
    gw_list_insert_tail(&timers, &t->link);
    ntimers++;
    return GW_OK;
}

int gw_ffi_timers_pending(void)
{
    return ntimers;
}

int gw_ffi_exiting(void)
{
    return gw_worker ? gw_worker->stopping : 0;
}

void gw_lua_timers_stop(void)
{
    while (!gw_list_empty(&timers)) {
        struct timer_job *t = gw_container_of(timers.next, struct timer_job, link);
        gw_list_remove(&t->link);
        ntimers--;
        ev_timer_stop(gw_worker->loop, &t->t);
        int64_t job = t->job;
        free(t);
        run_timer(job, 1);
    }
}
