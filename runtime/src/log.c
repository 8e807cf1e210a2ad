/* The error log: one line per event, written with a single write(2) so lines
 * from several workers appending to one file never interleave. */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

#include "gw/log.h"

int gw_log_level_current = GW_LOG_NOTICE;
static int log_fd = 2;
static char role[32] = "master";

static const char *const names[] = {"",     "emerg",  "alert", "crit", "error",
                                    "warn", "notice", "info",  "debug"};

int gw_log_level_parse(const char *s)
{
    for (int i = 1; i <= GW_LOG_DEBUG; i++)
        if (strcasecmp(s, names[i]) == 0)
            return i;
    if (strcasecmp(s, "err") == 0)
        return GW_LOG_ERR;
    if (strcasecmp(s, "warning") == 0)
        return GW_LOG_WARN;
    return -1;
}

int gw_log_open(const char *path)
{
    if (path == NULL || strcmp(path, "stderr") == 0) {
        log_fd = 2;
        return 0;
    }
    int fd = open(path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
    if (fd == -1)
        return -1;
    log_fd = fd;
    return 0;
}

void gw_log_set_role(const char *r)
{
    snprintf(role, sizeof(role), "%s", r);
}

void gw_vlog(int level, const char *fmt, va_list ap)
{
    if (level > gw_log_level_current)
        return;
    char line[4096];
    struct timeval tv;
    struct tm tm;
    gettimeofday(&tv, NULL);
    localtime_r(&tv.tv_sec, &tm);
    int n = (int)strftime(line, sizeof(line), "%Y/%m/%d %H:%M:%S", &tm);
    n += snprintf(line + n, sizeof(line) - n, " [%s] %d#%s: ", names[level], (int)getpid(), role);
    int m = vsnprintf(line + n, sizeof(line) - n - 1, fmt, ap);
    if (m < 0)
        m = 0;
    n += m;
    if (n > (int)sizeof(line) - 2)
        n = (int)sizeof(line) - 2;
    line[n++] = '\n';
    int saved = errno;
    ssize_t w = write(log_fd, line, n);
    (void)w;
    errno = saved;
}

void gw_log(int level, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    gw_vlog(level, fmt, ap);
    va_end(ap);
}
