#ifndef GW_LOG_H
#define GW_LOG_H

#include <stdarg.h>

/* nginx's levels, most severe first. */
enum gw_log_level {
    GW_LOG_EMERG = 1,
    GW_LOG_ALERT,
    GW_LOG_CRIT,
    GW_LOG_ERR,
    GW_LOG_WARN,
    GW_LOG_NOTICE,
    GW_LOG_INFO,
    GW_LOG_DEBUG,
};

extern int gw_log_level_current;

/* Parses "debug".."emerg" (also "error", "warning"); -1 when unknown. */
int gw_log_level_parse(const char *s);

/* Opens the error log: "stderr" or a path (O_APPEND). Returns 0 or -1. */
int gw_log_open(const char *path);

/* Sets the process tag written in each line ("master", "worker 0"). */
void gw_log_set_role(const char *role);

/* Writes one line: "2026/11/28 18:00:00 [error] 123#worker 0: msg". The
 * caller never logs credentials; gw_log does not redact. */
void gw_log(int level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void gw_vlog(int level, const char *fmt, va_list ap);

#define gw_log_enabled(level) ((level) <= gw_log_level_current)
#define GW_LOG(level, ...)                                                                         \
    do {                                                                                           \
        if (gw_log_enabled(level))                                                                 \
            gw_log(level, __VA_ARGS__);                                                            \
    } while (0)

#endif
