/* A worker: one process, one thread, one libev loop, one LuaJIT state. It
 * serves its own SO_REUSEPORT sockets, takes reload orders from the master
 * through a pipe, and stops gracefully on SIGTERM (or when the master goes
 * away). */
#include <errno.h>
#include <lua.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>
#include <unistd.h>

#include "gw/accesslog.h"
#include "gw/admin.h"
#include "gw/buf.h"
#include "gw/config.h"
#include "gw/conn.h"
#include "gw/dns.h"
#include "gw/log.h"
#include "gw/lua_req.h"
#include "gw/stats.h"
#include "gw/upstream.h"
#include "gw/worker.h"

struct gw_worker *gw_worker;
static struct gw_worker worker;

static void worker_exit(int code) __attribute__((noreturn));
static void worker_exit(int code)
{
    gw_access_log_flush();
    worker.stats->pid = 0;
    exit(code);
}

static double now_mono(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec / 1e9;
}

static double now_epoch(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (double)ts.tv_sec + ts.tv_nsec / 1e9;
}

/* Reloads run in slices between loop turns (gw_config_load_step): the
 * requests in flight go on while the new configuration is built. One load
 * at a time; an order that comes meanwhile waits for it (the latest wins).
 * While the worker answers requests, a load takes at most about half of the
 * loop's time: after a slice of t seconds, the next one starts t later, and
 * the loop serves (or sleeps) meanwhile. A request waits for a slice at
 * most, and the clients and upstreams sharing the cores keep theirs. With
 * no request answered since the last slice, the next one follows at once. */
static struct gw_config_job *load_job;
static ev_timer load_timer;
static char load_path[512]; /* the file load_job loads */
static char load_next[512];
static double load_started;  /* epoch seconds */
static int load_slices;
static double load_busy;     /* seconds the slices held the loop, in all */
static double load_longest;  /* seconds, the longest slice */
static uint64_t load_served; /* worker.stats->requests after the last slice */

/* LUAGATE_RELOAD_TRACE=1: logs (notice) every reload slice and every loop
 * turn whose callbacks held the loop more than TRACE_MIN seconds, to find
 * what a request waits for during a reload (docs/performance.md, "Config
 * changes"). Off: no watcher, no clock read. */
#define TRACE_MIN 0.002
static int trace;
static ev_check trace_check;     /* the loop woke up: callbacks start */
static ev_prepare trace_prepare; /* callbacks done: the loop goes to sleep */
static double trace_woke;        /* monotonic seconds, at trace_check */

static void swap_in(struct gw_config *cf);

/* After a swap the worker drives the collector's cycle to its end in
 * slices of GC_SLICE_S on the same terms as a load (at most about half of
 * the loop while requests are answered): that cycle, started after the swap,
 * frees the replaced configuration, and a load that follows need not
 * finish it (gw_config_load_start's collect). Left to allocations, the
 * cycle would advance only with the requests' Lua garbage, in steps inside
 * the requests, and the next load would do the rest. */
#define GC_SLICE_S 0.0001
static ev_timer gc_timer;
static int gc_done = 1;     /* a cycle ended since the last swap */
static uint64_t gc_served;  /* worker.stats->requests after the last GC slice */

static int report_pipe = -1; /* the report pipe to the master */
static pid_t master_pid;

/* Tells the master how a reload order ended: "loaded <path> <hash>" or
 * "load-failed <path>" on the report pipe, and SIGUSR1 (the master reads
 * the pipe every 200 ms anyway). The master checks no file a worker will
 * check as it loads it (master.c, reload). */
static void report_load(const char *path, const struct gw_config *cf)
{
    char line[700];
    int n = cf ? snprintf(line, sizeof(line), "loaded %s %s\n", path, cf->hash)
               : snprintf(line, sizeof(line), "load-failed %s\n", path);
    if (report_pipe < 0 || n >= (int)sizeof(line))
        return;
    if (write(report_pipe, line, (size_t)n) != n) {
        gw_log(GW_LOG_ERR, "write() to the master failed: %s", strerror(errno));
        return;
    }
    if (getppid() == master_pid)
        kill(master_pid, SIGUSR1);
}

/* A reload's errors, with the snapshot's path (a copy the master made)
 * written as the configuration file the operator edits: its lines are the
 * file's. */
static void log_reload_failure(const char *snapshot, const char *errs)
{
    const char *file = gw_settings.config_path;
    size_t sl = strlen(snapshot), fl = file ? strlen(file) : 0;
    struct gw_buf b = {0};
    const char *p = errs ? errs : "unknown error";
    for (const char *m; file && sl && (m = strstr(p, snapshot)) != NULL; p = m + sl) {
        if (m > p) /* (an empty buffer takes no empty append: memcpy to NULL) */
            gw_buf_append(&b, p, (size_t)(m - p));
        if (fl)
            gw_buf_append(&b, file, fl);
    }
    if (*p)
        gw_buf_appends(&b, p);
    gw_buf_append(&b, "", 1); /* the terminating NUL */
    gw_log(GW_LOG_ERR, "reload failed, keeping the running configuration: %s",
           b.data ? b.data : "");
    gw_buf_free(&b);
}

static void load_begin(const char *path)
{
    char *errs = NULL;
    snprintf(load_path, sizeof(load_path), "%s", path);
    ev_timer_stop(worker.loop, &gc_timer); /* the load finishes the cycle if needed */
    load_job = gw_config_load_start(worker.L, path, !gc_done, &errs);
    if (load_job == NULL) {
        log_reload_failure(path, errs);
        free(errs);
        report_load(path, NULL);
        return;
    }
    load_started = now_epoch();
    load_slices = 0;
    load_busy = 0;
    load_longest = 0;
    load_served = worker.stats->requests;
    ev_timer_set(&load_timer, 0, 0);
    ev_timer_start(worker.loop, &load_timer);
}

/* Starts w for the next slice of a load or a collector cycle, which took
 * t seconds: after a pause as long as the slice when requests were
 * answered since the last one (*served), so that slices take at most
 * about half of the loop while there are requests; at once otherwise. */
static void next_slice(ev_timer *w, double t, uint64_t *served)
{
    double pause = worker.stats->requests != *served ? t : 0;
    *served = worker.stats->requests;
    ev_now_update(worker.loop); /* the pause counts from the slice's end */
    ev_timer_set(w, pause, 0);
    ev_timer_start(worker.loop, w);
}

static void load_step_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
    struct gw_config *cf = NULL;
    char *errs = NULL;
    double t = now_mono();
    int rc = gw_config_load_step(load_job, &cf, &errs);
    t = now_mono() - t;
    load_slices++;
    load_busy += t;
    if (t > load_longest)
        load_longest = t;
    if (trace && t > TRACE_MIN)
        gw_log(GW_LOG_NOTICE, "reload trace: slice %d took %.1f ms%s", load_slices, t * 1000,
               rc == GW_AGAIN ? "" : " (the last)");
    if (rc == GW_AGAIN) {
        next_slice(w, t, &load_served);
        return;
    }
    if (rc == GW_OK)
        swap_in(cf);
    else
        log_reload_failure(load_path, errs);
    gw_config_load_cancel(load_job); /* after the swap: the collector restarts */
    load_job = NULL;
    if (rc == GW_OK)
        gc_done = 0;
    if (rc == GW_OK && !load_next[0]) {
        gc_served = worker.stats->requests;
        ev_timer_set(&gc_timer, 0, 0);
        ev_timer_start(loop, &gc_timer);
    }
    free(errs);
    report_load(load_path, rc == GW_OK ? cf : NULL);
    if (load_next[0] && !worker.stopping) {
        char path[sizeof(load_next)];
        snprintf(path, sizeof(path), "%s", load_next);
        load_next[0] = '\0';
        load_begin(path);
    }
}

static void gc_step_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
    double t0 = now_mono();
    int done;
    do
        done = lua_gc(worker.L, LUA_GCSTEP, 0);
    while (!done && now_mono() - t0 < GC_SLICE_S);
    double t = now_mono() - t0;
    if (trace && t > TRACE_MIN)
        gw_log(GW_LOG_NOTICE, "reload trace: a collector slice took %.1f ms", t * 1000);
    if (done) {
        gc_done = 1;
        return;
    }
    next_slice(w, t, &gc_served);
}

static void reload(const char *path)
{
    if (load_job) {
        snprintf(load_next, sizeof(load_next), "%s", path);
        return;
    }
    load_begin(path);
}

static void swap_in(struct gw_config *cf)
{
    struct gw_config *old = worker.config;
    worker.config = cf;
    gw_config_release(&old); /* freed when its last request ends */
    worker.stats->reloads++;
    worker.stats->config_at = now_epoch();
    gw_admin_config_loaded();
    snprintf(worker.stats->config_hash, sizeof(worker.stats->config_hash), "%s", cf->hash);
    if (load_slices)
        gw_log(GW_LOG_NOTICE,
               "configuration %s loaded (generation %llu) in %.0f ms, %d slices "
               "(%.0f ms on the loop, the longest %.1f ms)",
               cf->hash, (unsigned long long)cf->generation,
               (now_epoch() - load_started) * 1000, load_slices, load_busy * 1000,
               load_longest * 1000);
    else
        gw_log(GW_LOG_NOTICE, "configuration %s loaded (generation %llu)", cf->hash,
               (unsigned long long)cf->generation);
}

static void begin_stop(void)
{
    ev_timer_stop(worker.loop, &gc_timer);
    if (load_job) { /* a stopping worker takes no new configuration */
        ev_timer_stop(worker.loop, &load_timer);
        gw_config_load_cancel(load_job);
        load_job = NULL;
    }
    if (worker.stopping)
        return;
    worker.stopping = 1;
    for (int i = 0; i < gw_settings.nlisten; i++)
        ev_io_stop(worker.loop, &worker.lio[i]);
    gw_lua_timers_stop();
    gw_upstream_pool_drain();
    gw_conn_drain_all();
    if (worker.nconns == 0) {
        ev_break(worker.loop, EVBREAK_ALL);
        return;
    }
    ev_timer_set(&worker.drain, gw_settings.drain_timeout / 1000.0, 0);
    ev_timer_start(worker.loop, &worker.drain);
}

static void ctl_cb(struct ev_loop *loop, ev_io *w, int revents)
{
    struct gw_buf *b = &worker.ctl_in;
    if (gw_buf_reserve(b, 1024, 64 * 1024) != 0) {
        b->off = b->len = 0;
        return;
    }
    ssize_t n = read(worker.ctl_fd, b->data + b->len, b->cap - b->len);
    if (n == 0) { /* the master is gone */
        ev_io_stop(loop, w);
        begin_stop();
        return;
    }
    if (n < 0)
        return;
    b->len += (size_t)n;
    char *nl;
    while ((nl = memchr(b->data + b->off, '\n', gw_buf_pending(b))) != NULL) {
        *nl = '\0';
        const char *line = b->data + b->off;
        if (strncmp(line, "reload ", 7) == 0)
            reload(line + 7);
        else if (strncmp(line, "applied ", 8) == 0) /* POST /config: the master's answer */
            gw_admin_applied(1, line + 8);
        else if (strncmp(line, "apply-failed ", 13) == 0)
            gw_admin_applied(0, line + 13);
        gw_buf_consume(b, (size_t)(nl - line) + 1);
        if (b->len == 0)
            break;
    }
}

static void sig_cb(struct ev_loop *loop, ev_signal *w, int revents)
{
    if (w->signum == SIGQUIT)
        worker_exit(0);
    gw_log(GW_LOG_NOTICE, "stopping gracefully (%d connections open)", worker.nconns);
    begin_stop();
}

static void drain_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
    gw_log(GW_LOG_WARN, "drain timeout: closing %d connections", worker.nconns);
    worker_exit(0);
}

static void trace_check_cb(struct ev_loop *loop, ev_check *w, int revents)
{
    trace_woke = now_mono();
}

static void trace_prepare_cb(struct ev_loop *loop, ev_prepare *w, int revents)
{
    double t = trace_woke ? now_mono() - trace_woke : 0;
    if (t > TRACE_MIN)
        gw_log(GW_LOG_NOTICE, "reload trace: a loop turn took %.1f ms (%s)", t * 1000,
               load_job ? "during a load" : "no load running");
}

static void trace_start(void)
{
    const char *v = getenv("LUAGATE_RELOAD_TRACE");
    trace = v && *v && strcmp(v, "0") != 0;
    if (!trace)
        return;
    ev_check_init(&trace_check, trace_check_cb);
    ev_check_start(worker.loop, &trace_check);
    ev_unref(worker.loop);
    ev_prepare_init(&trace_prepare, trace_prepare_cb);
    ev_prepare_start(worker.loop, &trace_prepare);
    ev_unref(worker.loop);
}

static void flush_cb(struct ev_loop *loop, ev_prepare *w, int revents)
{
    if (gw_buf_pending(&worker.access_buf))
        gw_access_log_flush();
}

void gw_worker_main(int id, const int *listen_fds, int ctl_fd, int report_fd,
                    const char *config_path)
{
    char role[32];
    snprintf(role, sizeof(role), "worker %d", id);
    gw_log_set_role(role);
    sigset_t all;
    sigemptyset(&all);
    sigprocmask(SIG_SETMASK, &all, NULL);
    signal(SIGPIPE, SIG_IGN);
    signal(SIGHUP, SIG_IGN);

    worker.id = id;
    gw_worker = &worker;
    gw_list_init(&worker.conns);
    gw_list_init(&worker.free_reqs);
    worker.stats = &gw_stats->w[id];
    worker.stats->active = 0;
    worker.stats->pid = getpid();
    if (getrandom(worker.rng, sizeof(worker.rng), 0) != sizeof(worker.rng)) {
        worker.rng[0] = (uint64_t)time(NULL) ^ ((uint64_t)getpid() << 32);
        worker.rng[1] = (uint64_t)clock() | 1;
    }
    worker.loop = ev_default_loop(EVFLAG_AUTO);
    if (worker.loop == NULL) {
        gw_log(GW_LOG_EMERG, "could not create the event loop");
        worker_exit(2);
    }
    worker.L = gw_lua_new();
    if (worker.L == NULL) {
        gw_log(GW_LOG_EMERG, "could not create the Lua state");
        worker_exit(2);
    }
    if (gw_lua_init(worker.L) != 0)
        worker_exit(2);
    char *errs = NULL;
    worker.config = gw_config_load(worker.L, config_path, &errs);
    if (worker.config == NULL) {
        gw_log(GW_LOG_EMERG, "could not load the configuration: %s", errs ? errs : "");
        worker_exit(2);
    }
    snprintf(worker.stats->config_hash, sizeof(worker.stats->config_hash), "%s",
             worker.config->hash);
    worker.stats->config_at = now_epoch();
    /* the master keeps the snapshot a worker starts with until it hears
     * from it (master.c, started) */
    report_pipe = report_fd;
    master_pid = getppid();
    report_load(config_path, worker.config);
    if (gw_access_log_open(gw_settings.access_log) != 0)
        worker_exit(2);
    if (gw_dns_init() != 0)
        worker_exit(2);

    for (int i = 0; i < gw_settings.nlisten; i++) {
        worker.lfd[i] = listen_fds[i];
        ev_io_init(&worker.lio[i], gw_conn_accept_cb, listen_fds[i], EV_READ);
        worker.lio[i].data = &gw_settings.listen[i];
        ev_io_start(worker.loop, &worker.lio[i]);
    }
    worker.ctl_fd = ctl_fd;
    {
        char dir[256];
        snprintf(dir, sizeof(dir), "%s", config_path);
        char *slash = strrchr(dir, '/');
        if (slash)
            *slash = '\0';
        gw_admin_worker_init(slash ? dir : ".", report_fd);
    }
    /* (at the default priority: at EV_MINPRI a slice ran after the loop
     * turn's request callbacks and its pause started after them, which
     * gave the load less than half of the loop: +25 % of wall time per
     * reload, and loads that queued up under load) */
    ev_init(&load_timer, load_step_cb);
    ev_init(&gc_timer, gc_step_cb);
    ev_io_init(&worker.ctl, ctl_cb, ctl_fd, EV_READ);
    ev_io_start(worker.loop, &worker.ctl);
    ev_signal_init(&worker.sigterm, sig_cb, SIGTERM);
    ev_signal_start(worker.loop, &worker.sigterm);
    ev_signal_init(&worker.sigint, sig_cb, SIGINT);
    ev_signal_start(worker.loop, &worker.sigint);
    ev_signal_init(&worker.sigquit, sig_cb, SIGQUIT);
    ev_signal_start(worker.loop, &worker.sigquit);
    ev_init(&worker.drain, drain_cb);
    ev_prepare_init(&worker.flush, flush_cb);
    ev_prepare_start(worker.loop, &worker.flush);
    ev_unref(worker.loop);
    trace_start();

    GW_LOG(GW_LOG_INFO, "started");
    ev_run(worker.loop, 0);
    worker_exit(0);
}
