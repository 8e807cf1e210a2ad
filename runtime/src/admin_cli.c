/* Operator commands against a running node: reload (SIGHUP to the master
 * named by the pid file), health (GET /status), config diff (GET /config
 * compared with a file, in Lua: lua/luagate/admin/diff.lua). They are
 * short-lived processes: blocking sockets with timeouts are fine here. */
#include <arpa/inet.h>
#include <errno.h>
#include <lauxlib.h>
#include <lua.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#include "gw/admin_cli.h"
#include "gw/buf.h"
#include "gw/config.h"
#include "gw/settings-t.h"

struct cli_opts {
    const char *pid_file;
    const char *admin;
    const char *token;
    const char *config;
    const char *plugin_dirs[GW_MAX_PLUGIN_DIRS];
    int nplugin_dirs;
};

static const char *env_or(const char *name, const char *dflt)
{
    const char *v = getenv(name);
    return v && *v ? v : dflt;
}

/* --name VALUE or --name=VALUE at argv[*i]; advances *i. */
static int opt_value(int argc, char **argv, int *i, const char *name, const char **out)
{
    size_t n = strlen(name);
    const char *a = argv[*i];
    if (strncmp(a, name, n) != 0)
        return 0;
    if (a[n] == '=') {
        *out = a + n + 1;
        return 1;
    }
    if (a[n] != '\0')
        return 0;
    if (*i + 1 >= argc) {
        fprintf(stderr, "luagate: %s needs a value\n", name);
        exit(2);
    }
    *out = argv[++*i];
    return 1;
}

static int parse_opts(int argc, char **argv, int first, struct cli_opts *o)
{
    memset(o, 0, sizeof(*o));
    o->pid_file = env_or("LUAGATE_PID", NULL);
    o->admin = env_or("LUAGATE_ADMIN_LISTEN", "127.0.0.1:8001");
    o->token = env_or("LUAGATE_ADMIN_TOKEN", NULL);
    o->config = env_or("LUAGATE_CONFIG", NULL);
    for (int i = first; i < argc; i++) {
        const char *v;
        if (opt_value(argc, argv, &i, "--pid", &o->pid_file) ||
            opt_value(argc, argv, &i, "--admin", &o->admin) ||
            opt_value(argc, argv, &i, "--admin-listen", &o->admin) ||
            opt_value(argc, argv, &i, "--admin-token", &o->token) ||
            opt_value(argc, argv, &i, "--config", &o->config) ||
            opt_value(argc, argv, &i, "-c", &o->config))
            continue;
        if (opt_value(argc, argv, &i, "--plugins-dir", &v)) {
            if (o->nplugin_dirs < GW_MAX_PLUGIN_DIRS)
                o->plugin_dirs[o->nplugin_dirs++] = v;
            continue;
        }
        fprintf(stderr, "luagate: unexpected argument '%s'\n", argv[i]);
        return -1;
    }
    return 0;
}

static int cmd_reload(struct cli_opts *o)
{
    if (o->pid_file == NULL) {
        fprintf(stderr, "luagate reload: no pid file: use --pid FILE (or LUAGATE_PID), the "
                        "file given to `luagate run --pid`\n");
        return 1;
    }
    FILE *f = fopen(o->pid_file, "r");
    if (f == NULL) {
        fprintf(stderr, "luagate reload: cannot read the pid file %s: %s (is luagate "
                        "running?)\n",
                o->pid_file, strerror(errno));
        return 1;
    }
    long pid = 0;
    int ok = fscanf(f, "%ld", &pid) == 1;
    fclose(f);
    if (!ok || pid <= 1) {
        fprintf(stderr, "luagate reload: the pid file %s holds no pid\n", o->pid_file);
        return 1;
    }
    if (kill((pid_t)pid, SIGHUP) == -1) {
        fprintf(stderr, "luagate reload: kill(%ld, SIGHUP) failed: %s (is luagate "
                        "running?)\n",
                pid, strerror(errno));
        return 1;
    }
    printf("luagate reload: sent SIGHUP to the master (pid %ld); an invalid configuration "
           "is refused and logged, the running one stays\n",
           pid);
    return 0;
}

/* GET path on ADDR:PORT. Returns the status (body in out), or -1 with a
 * message on stderr. */
static int http_get(const char *addr, const char *token, const char *path, struct gw_buf *out)
{
    char host[128];
    snprintf(host, sizeof(host), "%s", addr);
    char *port = NULL;
    if (host[0] == '[') {
        char *rb = strchr(host, ']');
        if (rb && rb[1] == ':') {
            *rb = '\0';
            port = rb + 2;
            memmove(host, host + 1, strlen(host));
        }
    } else {
        char *colon = strrchr(host, ':');
        if (colon) {
            *colon = '\0';
            port = colon + 1;
        } else {
            port = host;
        }
    }
    if (port == NULL || *port == '\0') {
        fprintf(stderr, "luagate: invalid admin address '%s' (ADDR:PORT)\n", addr);
        return -1;
    }
    int p = atoi(port);
    const char *h = port == host || host[0] == '\0' || strcmp(host, "0.0.0.0") == 0 ||
                            strcmp(host, "localhost") == 0
                        ? "127.0.0.1"
                    : strcmp(host, "::") == 0 ? "::1"
                                              : host;
    struct sockaddr_storage ss;
    memset(&ss, 0, sizeof(ss));
    socklen_t sl;
    struct sockaddr_in *s4 = (struct sockaddr_in *)&ss;
    struct sockaddr_in6 *s6 = (struct sockaddr_in6 *)&ss;
    if (inet_pton(AF_INET, h, &s4->sin_addr) == 1) {
        s4->sin_family = AF_INET;
        s4->sin_port = htons((uint16_t)p);
        sl = sizeof(*s4);
    } else if (inet_pton(AF_INET6, h, &s6->sin6_addr) == 1) {
        s6->sin6_family = AF_INET6;
        s6->sin6_port = htons((uint16_t)p);
        sl = sizeof(*s6);
    } else {
        fprintf(stderr, "luagate: invalid admin address '%s' (an IP address is needed)\n", addr);
        return -1;
    }
    int fd = socket(ss.ss_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd == -1) {
        fprintf(stderr, "luagate: socket() failed: %s\n", strerror(errno));
        return -1;
    }
    struct timeval tv = {5, 0};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
    setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
    if (connect(fd, (struct sockaddr *)&ss, sl) == -1) {
        fprintf(stderr, "luagate: cannot reach the admin API at %s: %s\n", addr,
                strerror(errno));
        close(fd);
        return -1;
    }
    char req[1024];
    int n = snprintf(req, sizeof(req),
                     "GET %s HTTP/1.1\r\nHost: %s\r\nConnection: close\r\n"
                     "User-Agent: luagate-cli\r\n%s%s%s\r\n",
                     path, addr, token ? "Authorization: Bearer " : "", token ? token : "",
                     token ? "\r\n" : "");
    if (n >= (int)sizeof(req) || write(fd, req, (size_t)n) != n) {
        fprintf(stderr, "luagate: could not send the request to %s\n", addr);
        close(fd);
        return -1;
    }
    struct gw_buf in = {0};
    char buf[65536];
    ssize_t r;
    while ((r = read(fd, buf, sizeof(buf))) > 0)
        gw_buf_append(&in, buf, (size_t)r);
    close(fd);
    int status = 0;
    char *end = in.data ? memmem(in.data, in.len, "\r\n\r\n", 4) : NULL;
    if (r == -1 || end == NULL || sscanf(in.data, "HTTP/1.%*d %d", &status) != 1) {
        fprintf(stderr, "luagate: no valid answer from the admin API at %s%s%s\n", addr,
                r == -1 ? ": " : "", r == -1 ? strerror(errno) : "");
        gw_buf_free(&in);
        return -1;
    }
    end += 4;
    gw_buf_append(out, end, in.len - (size_t)(end - in.data));
    gw_buf_append(out, "", 1); /* NUL-terminated; len counts it */
    out->len--;
    gw_buf_free(&in);
    return status;
}

static int cmd_health(struct cli_opts *o)
{
    struct gw_buf body = {0};
    int status = http_get(o->admin, o->token, "/status", &body);
    if (status < 0)
        return 1;
    const char *w = body.data ? strstr(body.data, "\"workers\":") : NULL;
    int workers = w ? atoi(w + 10) : 0;
    int rc = status == 200 && workers > 0 ? 0 : 1;
    if (rc == 0)
        printf("healthy: %d workers\n", workers);
    else
        fprintf(stderr, "unhealthy: status %d, %d workers: %.*s\n", status, workers,
                (int)(body.len > 300 ? 300 : body.len), body.data ? body.data : "");
    gw_buf_free(&body);
    return rc;
}

static int cmd_diff(struct cli_opts *o)
{
    if (o->config == NULL) {
        fprintf(stderr, "luagate config diff: no configuration file: use -c FILE\n");
        return 2;
    }
    gw_settings.nplugin_dirs = o->nplugin_dirs;
    for (int i = 0; i < o->nplugin_dirs; i++)
        gw_settings.plugin_dirs[i] = o->plugin_dirs[i];
    struct gw_buf body = {0};
    int status = http_get(o->admin, o->token, "/config", &body);
    if (status < 0)
        return 2;
    if (status != 200) {
        fprintf(stderr, "luagate config diff: GET /config answered %d: %.*s\n", status,
                (int)(body.len > 300 ? 300 : body.len), body.data ? body.data : "");
        gw_buf_free(&body);
        return 2;
    }
    lua_State *L = gw_lua_new();
    if (L == NULL)
        return 2;
    int rc = 2;
    lua_getglobal(L, "require");
    lua_pushstring(L, "luagate.runtime");
    if (lua_pcall(L, 1, 1, 0) != 0)
        goto lua_fail;
    lua_getfield(L, -1, "load");
    lua_pushstring(L, o->config);
    lua_newtable(L);
    lua_pushstring(L, gw_settings.prefix);
    lua_setfield(L, -2, "prefix");
    lua_newtable(L);
    for (int i = 0; i < o->nplugin_dirs; i++) {
        lua_pushstring(L, o->plugin_dirs[i]);
        lua_rawseti(L, -2, i + 1);
    }
    lua_setfield(L, -2, "plugins_dirs");
    if (lua_pcall(L, 2, 2, 0) != 0)
        goto lua_fail;
    if (lua_isnil(L, -2)) {
        fprintf(stderr, "%s\n", lua_tostring(L, -1) ? lua_tostring(L, -1) : "invalid config");
        goto done;
    }
    lua_pop(L, 1);
    int conf = lua_gettop(L);
    lua_getglobal(L, "require");
    lua_pushstring(L, "luagate.admin.diff");
    if (lua_pcall(L, 1, 1, 0) != 0)
        goto lua_fail;
    lua_getfield(L, -1, "run");
    lua_pushvalue(L, conf);
    lua_pushlstring(L, body.data ? body.data : "", body.len);
    if (lua_pcall(L, 2, 2, 0) != 0)
        goto lua_fail;
    rc = (int)lua_tointeger(L, -1);
    fprintf(rc == 2 ? stderr : stdout, "%s\n", lua_tostring(L, -2) ? lua_tostring(L, -2) : "");
    goto done;
lua_fail:
    fprintf(stderr, "luagate config diff: %s\n",
            lua_tostring(L, -1) ? lua_tostring(L, -1) : "Lua error");
    rc = 2;
done:
    lua_close(L);
    gw_buf_free(&body);
    return rc;
}

int gw_admin_cli(int argc, char **argv)
{
    struct cli_opts o;
    const char *cmd = argv[1];
    if (strcmp(cmd, "config") == 0) {
        if (argc < 3 || strcmp(argv[2], "diff") != 0) {
            fprintf(stderr, "luagate: usage: luagate config diff -c FILE [--admin ADDR:PORT]\n");
            return 2;
        }
        if (parse_opts(argc, argv, 3, &o) != 0)
            return 2;
        return cmd_diff(&o);
    }
    if (parse_opts(argc, argv, 2, &o) != 0)
        return strcmp(cmd, "reload") == 0 ? 1 : 2;
    if (strcmp(cmd, "reload") == 0)
        return cmd_reload(&o);
    return cmd_health(&o);
}
