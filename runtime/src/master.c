/* The master: validates the configuration, binds one SO_REUSEPORT socket per
 * listener and worker (kept open here, so a restarted worker inherits the
 * same socket and no queued connection is lost), forks the workers and
 * supervises them. It runs no event loop: it waits for signals with
 * sigtimedwait(). SIGHUP reloads, SIGTERM/SIGINT drain and stop, SIGQUIT
 * stops at once, SIGCHLD restarts a worker that died. */
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

#include "gw/config.h"
#include "gw/log.h"
#include "gw/master.h"
#include "gw/settings-t.h"
#include "gw/health.h"
#include "gw/metrics.h"
#include "gw/shdict.h"
#include "gw/stats.h"
#include "gw/worker.h"

struct slot {
    pid_t pid;
    int ctl;             /* write end of the worker's pipe */
    double started;      /* when it was forked */
    int quick_deaths;    /* consecutive deaths within a second of starting */
    double respawn_at;   /* 0: not waiting */
};

static int listen_fds[GW_MAX_WORKERS][GW_MAX_LISTEN];
static struct slot slots[GW_MAX_WORKERS];
static char rundir[64];
static char snapshot[256];
static int snapshot_gen;

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
static int validate(const char *path, int to_stderr)
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
        free(errs);
        lua_close(L);
        return -1;
    }
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

static int spawn(int id)
{
    int p[2];
    if (pipe2(p, O_CLOEXEC) == -1) {
        gw_log(GW_LOG_ALERT, "pipe2() failed: %s", strerror(errno));
        return -1;
    }
    pid_t pid = fork();
    if (pid == -1) {
        gw_log(GW_LOG_ALERT, "fork() failed: %s", strerror(errno));
        close(p[0]);
        close(p[1]);
        return -1;
    }
    if (pid == 0) {
        close(p[1]);
        for (int w = 0; w < gw_settings.workers; w++) {
            if (w == id)
                continue;
            for (int i = 0; i < gw_settings.nlisten; i++)
                close(listen_fds[w][i]);
            if (slots[w].ctl > 0)
                close(slots[w].ctl);
        }
        gw_worker_main(id, listen_fds[id], p[0], snapshot);
    }
    close(p[0]);
    fcntl(p[1], F_SETFL, O_NONBLOCK);
    slots[id].pid = pid;
    slots[id].ctl = p[1];
    slots[id].started = now();
    slots[id].respawn_at = 0;
    gw_stats->w[id].pid = pid;
    return 0;
}

static void reload(void)
{
    char path[256];
    if (take_snapshot(gw_settings.config_path, path, sizeof(path)) != 0)
        return;
    if (validate(path, 0) != 0) {
        unlink(path);
        return;
    }
    char old[256];
    snprintf(old, sizeof(old), "%s", snapshot);
    snprintf(snapshot, sizeof(snapshot), "%s", path);
    char line[300];
    int n = snprintf(line, sizeof(line), "reload %s\n", snapshot);
    for (int i = 0; i < gw_settings.workers; i++)
        if (slots[i].pid > 0 && write(slots[i].ctl, line, (size_t)n) != n)
            gw_log(GW_LOG_ERR, "could not signal worker %d to reload: %s", i, strerror(errno));
    gw_log(GW_LOG_NOTICE, "configuration reloaded from %s", gw_settings.config_path);
    /* workers read the new snapshot at once; the one before it may still be in
     * use by a worker that is starting: drop the one before that */
    (void)old;
    char older[300];
    snprintf(older, sizeof(older), "%s/config-%d%s", rundir, snapshot_gen - 2,
             ext_of(gw_settings.config_path));
    unlink(older);
}

static void cleanup(void)
{
    char p[300];
    for (int g = snapshot_gen - 2; g <= snapshot_gen; g++) {
        snprintf(p, sizeof(p), "%s/config-%d%s", rundir, g, ext_of(gw_settings.config_path));
        unlink(p);
    }
    rmdir(rundir);
    if (gw_settings.pid_file)
        unlink(gw_settings.pid_file);
}

static int alive_count(void)
{
    int n = 0;
    for (int i = 0; i < gw_settings.workers; i++)
        if (slots[i].pid > 0)
            n++;
    return n;
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
            close(slots[i].ctl);
            slots[i].ctl = -1;
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
        validate(snapshot, 1) != 0) {
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
    if (gw_stats_init(gw_settings.workers) != 0 || gw_health_init(8192) != 0 ||
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
