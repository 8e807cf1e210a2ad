/* The master: validates the configuration, binds one SO_REUSEPORT socket per
 * listener and worker (kept open here, so a restarted worker inherits the
 * same socket and no queued connection is lost), forks the workers and
 * supervises them. It runs no event loop: it waits for signals with
 * sigtimedwait(). SIGHUP reloads, SIGTERM/SIGINT drain and stop, SIGQUIT
 * stops at once, SIGCHLD restarts a worker that died. SIGUSR1 from a worker
 * says it wrote on its report pipe: "apply <path>" (POST /config), a config
 * the master validates and distributes as a reload, answering the worker
 * "applied <hash>" or "apply-failed <reason>". */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <lua.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "gw/admin.h"
#include "gw/config.h"
#include "gw/log.h"
#include "gw/master.h"
#include "gw/settings-t.h"
#include "gw/health.h"
#include "gw/metrics.h"
#include "gw/shdict.h"
#include "gw/stats.h"
#include "gw/tls.h"
#include "gw/worker.h"

struct slot {
    pid_t pid;
    int ctl;             /* write end of the worker's pipe */
    int report;          /* read end of the worker's report pipe */
    char report_buf[1024];
    size_t report_len;
    double started;      /* when it was forked */
    int quick_deaths;    /* consecutive deaths within a second of starting */
    double respawn_at;   /* 0: not waiting */
    char starting[256];  /* the snapshot it was forked with, until its first report: it
                            may not have opened it yet, so the file stays */
    int ordered;         /* number of the newest snapshot it was forked with or told to
                            load */
};

static int listen_fds[GW_MAX_WORKERS][GW_MAX_LISTEN];
static struct slot slots[GW_MAX_WORKERS];
static char rundir[64];
static char snapshot[256]; /* the last configuration known good: new workers load it */
static int snapshot_gen;
static char kept[3][256]; /* the last snapshots ordered: a worker may still read one */

static double now(void)
{
    struct timeval tv;
    gettimeofday(&tv, NULL);
    return tv.tv_sec + tv.tv_usec / 1e6;
}

static const char *ext_of(const char *path)
{
    const char *dot = strrchr(path, '.');
    const char *slash = strrchr(path, '/');
    if (dot == NULL || (slash && dot < slash))
        return "";
    return dot;
}

/* Copies the configuration file into the run directory, so that every worker
 * loads the same bytes the master validated, whatever happens to the file. */
static int take_snapshot(const char *path, char *out, size_t outlen)
{
    int in = open(path, O_RDONLY | O_CLOEXEC);
    if (in == -1) {
        gw_log(GW_LOG_ERR, "open() \"%s\" failed: %s", path, strerror(errno));
        return -1;
    }
    snprintf(out, outlen, "%s/config-%d%s", rundir, ++snapshot_gen, ext_of(path));
    int fd = open(out, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (fd == -1) {
        gw_log(GW_LOG_ERR, "open() \"%s\" failed: %s", out, strerror(errno));
        close(in);
        return -1;
    }
    char buf[65536];
    ssize_t n;
    int rc = 0;
    while ((n = read(in, buf, sizeof(buf))) > 0)
        if (write(fd, buf, (size_t)n) != n) {
            gw_log(GW_LOG_ERR, "write() \"%s\" failed: %s", out, strerror(errno));
            rc = -1;
            break;
        }
    if (n < 0)
        rc = -1;
    close(in);
    close(fd);
    return rc;
}

/* Validates a snapshot with the master's own Lua state, exactly as workers
 * will load it. Prints errors to the error log. */
static int validate(const char *path, int to_stderr, char *hash, char *why, size_t whylen)
{
    lua_State *L = gw_lua_new();
    if (L == NULL)
        return -1;
    char *errs = NULL;
    struct gw_config *cf = gw_config_load(L, path, &errs);
    if (cf == NULL) {
        if (to_stderr)
            fprintf(stderr, "%s\n", errs ? errs : "invalid configuration");
        else
            gw_log(GW_LOG_ERR, "invalid configuration, keeping the running one:\n%s",
                   errs ? errs : "");
        if (why) {
            snprintf(why, whylen, "%s", errs ? errs : "invalid configuration");
            for (char *q = why; *q; q++)
                if (*q == '\n')
                    *q = ' ';
        }
        free(errs);
        lua_close(L);
        return -1;
    }
    if (hash)
        snprintf(hash, 65, "%s", cf->hash);
    gw_config_release(&cf);
    lua_close(L);
    return 0;
}

static int bind_all(void)
{
    for (int w = 0; w < gw_settings.workers; w++) {
        for (int i = 0; i < gw_settings.nlisten; i++) {
            struct gw_listen *l = &gw_settings.listen[i];
            int fd = socket(l->addr.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
            if (fd == -1) {
                gw_log(GW_LOG_EMERG, "socket() failed: %s", strerror(errno));
                return -1;
            }
            int one = 1;
            setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
            if (setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof(one)) == -1) {
                gw_log(GW_LOG_EMERG, "setsockopt(SO_REUSEPORT) failed: %s", strerror(errno));
                close(fd);
                return -1;
            }
            if (l->addr.ss_family == AF_INET6)
                setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof(one));
            if (bind(fd, (struct sockaddr *)&l->addr, l->addrlen) == -1) {
                gw_log(GW_LOG_EMERG, "bind() to %s failed: %s", l->text, strerror(errno));
                close(fd);
                return -1;
            }
            if (listen(fd, 4096) == -1) {
                gw_log(GW_LOG_EMERG, "listen() on %s failed: %s", l->text, strerror(errno));
                close(fd);
                return -1;
            }
            listen_fds[w][i] = fd;
        }
    }
    return 0;
}

/* The N of a snapshot's path (".../config-N.ext"), or 0. */
static int snapshot_number(const char *path)
{
    const char *base = strrchr(path, '/');
    int n = 0;
    if (base == NULL || sscanf(base + 1, "config-%d", &n) != 1)
        return 0;
    return n;
}

static int spawn(int id)
{
    int p[2], rp[2];
    if (pipe2(p, O_CLOEXEC) == -1) {
        gw_log(GW_LOG_ALERT, "pipe2() failed: %s", strerror(errno));
        return -1;
    }
    if (pipe2(rp, O_CLOEXEC) == -1) {
        gw_log(GW_LOG_ALERT, "pipe2() failed: %s", strerror(errno));
        close(p[0]);
        close(p[1]);
        return -1;
    }
    pid_t pid = fork();
    if (pid == -1) {
        gw_log(GW_LOG_ALERT, "fork() failed: %s", strerror(errno));
        close(p[0]);
        close(p[1]);
        close(rp[0]);
        close(rp[1]);
        return -1;
    }
    if (pid == 0) {
        close(p[1]);
        close(rp[0]);
        for (int w = 0; w < gw_settings.workers; w++) {
            if (w == id)
                continue;
            for (int i = 0; i < gw_settings.nlisten; i++)
                close(listen_fds[w][i]);
            if (slots[w].ctl > 0)
                close(slots[w].ctl);
            if (slots[w].report > 0)
                close(slots[w].report);
        }
        gw_worker_main(id, listen_fds[id], p[0], rp[1], snapshot);
    }
    close(p[0]);
    close(rp[1]);
    fcntl(rp[0], F_SETFL, O_NONBLOCK);
    slots[id].report = rp[0];
    slots[id].report_len = 0;
    fcntl(p[1], F_SETFL, O_NONBLOCK);
    slots[id].pid = pid;
    slots[id].ctl = p[1];
    slots[id].started = now();
    slots[id].respawn_at = 0;
    snprintf(slots[id].starting, sizeof(slots[id].starting), "%s", snapshot);
    slots[id].ordered = snapshot_number(snapshot);
    gw_stats->w[id].pid = pid;
    return 0;
}

static int is_kept(const char *path)
{
    for (int i = 0; i < 3; i++)
        if (strcmp(kept[i], path) == 0)
            return 1;
    return 0;
}

/* Whether a worker may still open the snapshot at path: it is the one
 * known good (restarted workers start with it), one of the last ordered,
 * or the one a worker that has not reported yet was forked with. */
static int in_use(const char *path)
{
    if (strcmp(snapshot, path) == 0 || is_kept(path))
        return 1;
    for (int i = 0; i < gw_settings.workers; i++)
        if (slots[i].pid > 0 && strcmp(slots[i].starting, path) == 0)
            return 1;
    return 0;
}

/* Unlinks the snapshot ref names unless it is still in use (ref is copied
 * first: it may be the slot the caller just cleared). Every place that
 * drops a reference calls it, so the run directory holds the snapshots in
 * use and no others. */
static void drop_snapshot(const char *ref)
{
    char path[256];
    snprintf(path, sizeof(path), "%s", ref);
    if (path[0] && !in_use(path))
        unlink(path);
}

/* The worker in slot id reported something: it has opened the snapshot it
 * was forked with (a worker loads it before it reads any order). */
static void started(int id)
{
    struct slot *s = &slots[id];
    if (s->starting[0] == '\0')
        return;
    char path[256];
    snprintf(path, sizeof(path), "%s", s->starting);
    s->starting[0] = '\0';
    drop_snapshot(path);
}

/* Tells every worker to load path, and keeps path among the last three
 * snapshots ordered: a worker reads a snapshot when it starts loading it,
 * which may come after a newer order (it loads one at a time). The oldest
 * of the three goes, unless still in use (drop_snapshot). */
static void send_reload(const char *path)
{
    char line[300];
    int n = snprintf(line, sizeof(line), "reload %s\n", path);
    for (int i = 0; i < gw_settings.workers; i++) {
        if (slots[i].pid <= 0)
            continue;
        if (write(slots[i].ctl, line, (size_t)n) != n)
            gw_log(GW_LOG_ERR, "could not signal worker %d to reload: %s", i, strerror(errno));
        else
            slots[i].ordered = snapshot_number(path);
    }
    char oldest[256];
    snprintf(oldest, sizeof(oldest), "%s", kept[0]);
    memmove(kept[0], kept[1], sizeof(kept[0]) * 2);
    snprintf(kept[2], sizeof(kept[2]), "%s", path);
    drop_snapshot(oldest);
}

/* Makes path the snapshot new workers load. The one it replaces stays
 * while a worker may still open it (drop_snapshot). */
static void set_snapshot(const char *path)
{
    char old[256];
    snprintf(old, sizeof(old), "%s", snapshot);
    snprintf(snapshot, sizeof(snapshot), "%s", path);
    drop_snapshot(old);
}

/* Makes path, validated here, the running snapshot and tells every worker
 * to load it. */
static void distribute(const char *path)
{
    set_snapshot(path);
    send_reload(path);
}

/* SIGHUP. The workers check the new file as they load it (a worker's
 * sliced load validates exactly what the master's check did) and report
 * the result on their report pipes (worker_loaded): checking it here too
 * would load it twice, on the cores the workers serve requests on. With no
 * worker to load it, the master checks it itself. */
static int alive_count(void)
{
    int n = 0;
    for (int i = 0; i < gw_settings.workers; i++)
        if (slots[i].pid > 0)
            n++;
    return n;
}

static void reload(void)
{
    char path[256];
    if (take_snapshot(gw_settings.config_path, path, sizeof(path)) != 0)
        return;
    if (alive_count() > 0) {
        send_reload(path);
        return;
    }
    if (validate(path, 0, NULL, NULL, 0) != 0) {
        unlink(path);
        return;
    }
    distribute(path);
    gw_log(GW_LOG_NOTICE, "configuration reloaded from %s", gw_settings.config_path);
}

/* A worker's report on a reload order: "loaded <path> <hash>" or
 * "load-failed <path>" (its error log has the reasons). The first worker
 * that loads a snapshot newer than the known good one makes it the one new
 * workers start with. */
static void worker_loaded(int id, const char *path, const char *hash)
{
    int n = snapshot_number(path);
    if (n == 0 || n <= snapshot_number(snapshot))
        return; /* an older order, or one the master checked itself */
    if (hash == NULL) {
        gw_log(GW_LOG_ERR,
               "invalid configuration, keeping the running one: worker %d could not load %s "
               "(snapshot of %s)",
               id, path, gw_settings.config_path);
        return;
    }
    if (!is_kept(path))
        return; /* already replaced by a newer snapshot */
    set_snapshot(path);
    /* a worker restarted after the order went out started with the older
     * snapshot and never got it */
    char line[300];
    int len = snprintf(line, sizeof(line), "reload %s\n", path);
    for (int i = 0; i < gw_settings.workers; i++)
        if (slots[i].pid > 0 && slots[i].ordered < n) {
            if (write(slots[i].ctl, line, (size_t)len) != len)
                gw_log(GW_LOG_ERR, "could not signal worker %d to reload: %s", i,
                       strerror(errno));
            else
                slots[i].ordered = n;
        }
    gw_log(GW_LOG_NOTICE, "configuration %s reloaded from %s", hash, gw_settings.config_path);
}

/* POST /config from worker id: the worker validated the file at path and
 * waits for "applied <hash>" or "apply-failed <reason>" on its pipe. */
static void apply(int id, const char *path)
{
    char snap[256], hash[65] = "", why[2048] = "";
    char answer[2200];
    int n;
    size_t rl = strlen(rundir);
    /* only files a worker wrote in our run directory */
    if (strncmp(path, rundir, rl) != 0 || path[rl] != '/' || strstr(path, "/..") ||
        strchr(path + rl + 1, '/')) {
        gw_log(GW_LOG_ERR, "worker %d asked to apply \"%s\", outside the run directory", id,
               path);
        return;
    }
    if (take_snapshot(path, snap, sizeof(snap)) != 0) {
        unlink(path);
        n = snprintf(answer, sizeof(answer), "apply-failed could not store the configuration\n");
    } else if (validate(snap, 0, hash, why, sizeof(why)) != 0) {
        unlink(path);
        unlink(snap);
        n = snprintf(answer, sizeof(answer), "apply-failed %s\n", why);
    } else {
        unlink(path);
        distribute(snap);
        gw_log(GW_LOG_NOTICE, "configuration %s applied from the admin API (POST /config)", hash);
        n = snprintf(answer, sizeof(answer), "applied %s\n", hash);
    }
    if (n >= (int)sizeof(answer))
        n = (int)sizeof(answer) - 1, answer[n - 1] = '\n';
    if (slots[id].pid > 0 && write(slots[id].ctl, answer, (size_t)n) != n)
        gw_log(GW_LOG_ERR, "could not answer worker %d: %s", id, strerror(errno));
}

/* Reads what workers wrote on their report pipes: "apply <path>" (POST
 * /config), "loaded <path> <hash>" and "load-failed <path>" (a reload). */
static void read_reports(void)
{
    for (int i = 0; i < gw_settings.workers; i++) {
        struct slot *s = &slots[i];
        if (s->pid <= 0 || s->report <= 0)
            continue;
        for (;;) {
            ssize_t n = read(s->report, s->report_buf + s->report_len,
                             sizeof(s->report_buf) - 1 - s->report_len);
            if (n <= 0)
                break;
            s->report_len += (size_t)n;
            s->report_buf[s->report_len] = '\0';
            char *line = s->report_buf, *nl;
            while ((nl = strchr(line, '\n')) != NULL) {
                *nl = '\0';
                if (strncmp(line, "apply ", 6) == 0) {
                    apply(i, line + 6);
                } else if (strncmp(line, "loaded ", 7) == 0) {
                    started(i);
                    char *sp = strchr(line + 7, ' ');
                    if (sp) {
                        *sp = '\0';
                        worker_loaded(i, line + 7, sp + 1);
                    }
                } else if (strncmp(line, "load-failed ", 12) == 0) {
                    started(i);
                    worker_loaded(i, line + 12, NULL);
                }
                line = nl + 1;
            }
            s->report_len = strlen(line);
            memmove(s->report_buf, line, s->report_len);
            if (s->report_len == sizeof(s->report_buf) - 1)
                s->report_len = 0; /* a line too long: drop it */
        }
    }
}

static void cleanup(void)
{
    for (int i = 0; i < 3; i++)
        if (kept[i][0])
            unlink(kept[i]);
    for (int i = 0; i < GW_MAX_WORKERS; i++)
        if (slots[i].starting[0])
            unlink(slots[i].starting);
    if (snapshot[0])
        unlink(snapshot);
    rmdir(rundir);
    if (gw_settings.pid_file)
        unlink(gw_settings.pid_file);
}


static void reap(int stopping)
{
    int status;
    pid_t pid;
    while ((pid = waitpid(-1, &status, WNOHANG)) > 0) {
        for (int i = 0; i < gw_settings.workers; i++) {
            if (slots[i].pid != pid)
                continue;
            slots[i].pid = 0;
            if (slots[i].starting[0]) { /* died before it reported */
                char path[256];
                snprintf(path, sizeof(path), "%s", slots[i].starting);
                slots[i].starting[0] = '\0';
                drop_snapshot(path);
            }
            close(slots[i].ctl);
            slots[i].ctl = -1;
            if (slots[i].report > 0)
                close(slots[i].report);
            slots[i].report = -1;
            gw_stats->w[i].pid = 0;
            gw_stats->w[i].active = 0;
            if (stopping)
                break;
            if (WIFSIGNALED(status))
                gw_log(GW_LOG_ALERT, "worker %d (pid %d) died on signal %d, restarting", i,
                       (int)pid, WTERMSIG(status));
            else
                gw_log(GW_LOG_ALERT, "worker %d (pid %d) exited with code %d, restarting", i,
                       (int)pid, WEXITSTATUS(status));
            double t = now();
            slots[i].quick_deaths = t - slots[i].started < 1.0 ? slots[i].quick_deaths + 1 : 0;
            /* a worker that keeps dying at start-up is restarted once a second */
            slots[i].respawn_at = slots[i].quick_deaths > 3 ? t + 1.0 : t;
            break;
        }
    }
}

static void signal_all(int sig)
{
    for (int i = 0; i < gw_settings.workers; i++)
        if (slots[i].pid > 0)
            kill(slots[i].pid, sig);
}

int gw_master_run(void)
{
    snprintf(rundir, sizeof(rundir), "/tmp/luagate.XXXXXX");
    if (mkdtemp(rundir) == NULL) {
        gw_log(GW_LOG_EMERG, "mkdtemp() failed: %s", strerror(errno));
        return 1;
    }
    if (take_snapshot(gw_settings.config_path, snapshot, sizeof(snapshot)) != 0 ||
        validate(snapshot, 1, NULL, NULL, 0) != 0) {
        cleanup();
        return 1;
    }
    char tls_err[1024];
    if (gw_tls_init(tls_err, sizeof(tls_err)) != 0) {
        fprintf(stderr, "luagate: %s\n", tls_err);
        cleanup();
        return 1;
    }
    for (int i = 0; i < gw_settings.nshdicts; i++)
        if (gw_shdict_create(gw_settings.shdict_name[i], gw_settings.shdict_size[i]) != GW_OK) {
            gw_log(GW_LOG_EMERG, "could not create the shared dictionary \"%s\"",
                   gw_settings.shdict_name[i]);
            cleanup();
            return 1;
        }
    snprintf(kept[2], sizeof(kept[2]), "%s", snapshot);
    if (gw_stats_init(gw_settings.workers) != 0 || gw_health_init(8192) != 0 ||
        gw_admin_shm_init() != 0 ||
        gw_metrics_init(gw_settings.workers, 4096) != 0 || bind_all() != 0) {
        cleanup();
        return 1;
    }
    if (gw_settings.pid_file) {
        FILE *f = fopen(gw_settings.pid_file, "w");
        if (f == NULL) {
            gw_log(GW_LOG_EMERG, "fopen() \"%s\" failed: %s", gw_settings.pid_file,
                   strerror(errno));
            cleanup();
            return 1;
        }
        fprintf(f, "%d\n", (int)getpid());
        fclose(f);
    }
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGCHLD);
    sigaddset(&set, SIGHUP);
    sigaddset(&set, SIGTERM);
    sigaddset(&set, SIGINT);
    sigaddset(&set, SIGQUIT);
    sigaddset(&set, SIGUSR1);
    sigprocmask(SIG_BLOCK, &set, NULL);
    signal(SIGPIPE, SIG_IGN);

    for (int i = 0; i < gw_settings.workers; i++)
        if (spawn(i) != 0) {
            signal_all(SIGKILL);
            cleanup();
            return 1;
        }
    char addrs[512] = "";
    for (int i = 0; i < gw_settings.nlisten; i++) {
        size_t l = strlen(addrs);
        snprintf(addrs + l, sizeof(addrs) - l, "%s%s%s", i ? ", " : "",
                 gw_settings.listen[i].admin ? "admin " : "", gw_settings.listen[i].text);
    }
    gw_log(GW_LOG_NOTICE, "luagate started: %d workers, listening on %s", gw_settings.workers,
           addrs);

    int stopping = 0;
    double deadline = 0;
    for (;;) {
        struct timespec ts = {0, 200 * 1000 * 1000};
        siginfo_t info;
        int sig = sigtimedwait(&set, &info, &ts);
        double t = now();
        if (sig == SIGCHLD) {
            reap(stopping);
        } else if (sig == SIGHUP && !stopping) {
            reload();
        } else if ((sig == SIGTERM || sig == SIGINT) && !stopping) {
            gw_log(GW_LOG_NOTICE, "stopping: draining connections (up to %d ms)",
                   gw_settings.drain_timeout);
            stopping = 1;
            deadline = t + gw_settings.drain_timeout / 1000.0 + 5.0;
            signal_all(SIGTERM);
        } else if (sig == SIGQUIT) {
            gw_log(GW_LOG_NOTICE, "quitting now");
            signal_all(SIGKILL);
            while (alive_count() > 0 && waitpid(-1, NULL, 0) > 0)
                reap(1);
            cleanup();
            return 0;
        }
        reap(stopping);
        if (!stopping)
            read_reports(); /* SIGUSR1, or a signal lost: every 200 ms anyway */
        if (stopping) {
            if (alive_count() == 0)
                break;
            if (t > deadline) {
                gw_log(GW_LOG_WARN, "workers did not stop in time: killing them");
                signal_all(SIGKILL);
            }
            continue;
        }
        for (int i = 0; i < gw_settings.workers; i++)
            if (slots[i].pid == 0 && slots[i].respawn_at && t >= slots[i].respawn_at)
                spawn(i);
    }
    gw_log(GW_LOG_NOTICE, "stopped");
    cleanup();
    return 0;
}
