/* Configurations: the Lua side (luagate.runtime) loads and validates the
 * declarative file and ranks the routes; this module turns the result into
 * the C structures the request path reads, and counts references so that a
 * request keeps the generation it started with. */
#include <lauxlib.h>
#include <lua.h>
#include <lualib.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "gw/balancer.h"
#include "gw/buf.h"
#include "gw/health.h"
#include "gw/config.h"
#include "gw/json.h"
#include "gw/log.h"
#include "gw/guard.h"
#include "gw/memo.h"
#include "gw/router.h"
#include "gw/settings-t.h"
#include "gw/tls.h"
#include "gw/tls_client.h"
#include "gw/yaml.h"
#include "gw/worker-t.h"

static uint64_t generation;

lua_State *gw_lua_new(void)
{
    lua_State *L = luaL_newstate();
    if (L == NULL)
        return NULL;
    luaL_openlibs(L);
    const char *pre = gw_settings.prefix;
    lua_getglobal(L, "package");
    lua_pushfstring(L,
                    "%s/lua/?.lua;%s/lua/?/init.lua;/usr/share/lua/5.1/?.lua;"
                    "/usr/share/lua/5.1/?/init.lua;/usr/share/luajit-2.1.0-beta3/?.lua;"
                    "/usr/share/luajit-2.1/?.lua",
                    pre, pre);
    lua_setfield(L, -2, "path");
    lua_pushstring(L, "/usr/lib/x86_64-linux-gnu/lua/5.1/?.so;/usr/local/lib/lua/5.1/?.so");
    lua_setfield(L, -2, "cpath");
    /* the runtime's C modules */
    lua_getfield(L, -1, "preload");
    lua_pushcfunction(L, luaopen_luagate_yaml_c);
    lua_setfield(L, -2, "luagate.yaml_c");
    lua_pushcfunction(L, luaopen_luagate_json_c);
    lua_setfield(L, -2, "luagate.json_c");
    lua_pop(L, 2);
    return L;
}

static char *dup_field(lua_State *L, int idx, const char *k)
{
    lua_getfield(L, idx, k);
    char *s = NULL;
    if (lua_type(L, -1) == LUA_TSTRING)
        s = strdup(lua_tostring(L, -1));
    lua_pop(L, 1);
    return s;
}

static long int_field(lua_State *L, int idx, const char *k, long dflt)
{
    lua_getfield(L, idx, k);
    long v = lua_isnumber(L, -1) ? (long)lua_tonumber(L, -1) : dflt;
    lua_pop(L, 1);
    return v;
}

static int bool_field(lua_State *L, int idx, const char *k, int dflt)
{
    lua_getfield(L, idx, k);
    int v = lua_isboolean(L, -1) ? lua_toboolean(L, -1) : dflt;
    lua_pop(L, 1);
    return v;
}

/* The Host a service's requests carry: name, with the port when it is not
 * the scheme's default. */
static int set_host_header(struct gw_service *s, const char *name)
{
    size_t hl = strlen(name) + 16;
    char *h = malloc(hl);
    if (h == NULL)
        return -1;
    int dflt = s->port == (s->https ? 443 : 80);
    int is6 = strchr(name, ':') != NULL && name[0] != '[';
    snprintf(h, hl, dflt ? (is6 ? "[%s]" : "%s") : (is6 ? "[%s]:%d" : "%s:%d"), name, s->port);
    free(s->host_header);
    s->host_header = h;
    s->host_header_len = strlen(h);
    return 0;
}

/* The entry of conf[list] whose id is id, pushed (nil when none). */
static void push_by_id(lua_State *L, int conf, const char *list, const char *id)
{
    lua_getfield(L, conf, list);
    int t = lua_gettop(L);
    int n = lua_istable(L, t) ? (int)lua_objlen(L, t) : 0;
    for (int i = 1; i <= n; i++) {
        lua_rawgeti(L, t, i);
        lua_getfield(L, -1, "id");
        const char *eid = lua_tostring(L, -1);
        int found = eid && strcmp(eid, id) == 0;
        lua_pop(L, 1);
        if (found) {
            lua_remove(L, t);
            return;
        }
        lua_pop(L, 1);
    }
    lua_pop(L, 1);
    lua_pushnil(L);
}

#define MAX_SERVICE_CAS 64

/* The TLS client context of the https service at index e (services[i]):
 * one per distinct set of parameters, shared by reference. -1 with err. */
static int read_service_tls(lua_State *L, int conf, int e, struct gw_config *cf, int i,
                            char *err, size_t errlen)
{
    struct gw_service *s = &cf->services[i];
    const char *cas[MAX_SERVICE_CAS];
    struct gw_tls_client_conf cc = {0};
    int top = lua_gettop(L);
    int rc = -1;
    cc.verify = bool_field(L, e, "tls_verify", 0);
    cc.depth = (int)int_field(L, e, "tls_verify_depth", 1);
    cc.h2 = s->grpc;
    cc.ca_pem = cas;
    /* the PEM strings stay on the Lua stack (anchored) until the context is built */
    lua_getfield(L, e, "ca_certificates");
    int list = lua_gettop(L);
    int n = lua_istable(L, list) ? (int)lua_objlen(L, list) : 0;
    if (n > MAX_SERVICE_CAS) {
        snprintf(err, errlen, "more than %d ca_certificates", MAX_SERVICE_CAS);
        goto out;
    }
    for (int k = 1; k <= n; k++) {
        lua_rawgeti(L, list, k);
        const char *id = lua_tostring(L, -1);
        lua_pop(L, 1);
        push_by_id(L, conf, "ca_certificates", id ? id : "");
        lua_getfield(L, -1, "cert");
        if (!lua_isstring(L, -1)) {
            snprintf(err, errlen, "could not find ca_certificate '%s'", id ? id : "?");
            goto out;
        }
        cas[cc.nca++] = lua_tostring(L, -1);
    }
    lua_getfield(L, e, "client_certificate");
    if (lua_istable(L, -1))
        lua_getfield(L, -1, "id");
    if (lua_isstring(L, -1)) {
        const char *id = lua_tostring(L, -1);
        push_by_id(L, conf, "certificates", id);
        int c = lua_gettop(L);
        lua_getfield(L, c, "cert");
        lua_getfield(L, c, "key");
        if (!lua_isstring(L, -2) || !lua_isstring(L, -1)) {
            snprintf(err, errlen, "could not find certificate '%s'", id);
            goto out;
        }
        cc.cert_pem = lua_tostring(L, -2);
        cc.key_pem = lua_tostring(L, -1);
    }
    uint64_t id = gw_tls_client_conf_id(&cc);
    for (int k = 0; k < i; k++)
        if (cf->services[k].tls && gw_tls_client_id(cf->services[k].tls) == id) {
            s->tls = cf->services[k].tls;
            gw_tls_client_retain(s->tls);
            rc = 0;
            goto out;
        }
    s->tls = gw_tls_client_new(&cc, err, errlen);
    rc = s->tls ? 0 : -1;
out:
    lua_settop(L, top);
    return rc;
}

static int read_services(lua_State *L, int conf, struct gw_config *cf, char **errs)
{
    lua_getfield(L, conf, "services");
    int t = lua_gettop(L);
    int n = lua_istable(L, t) ? (int)lua_objlen(L, t) : 0;
    cf->services = calloc(n ? n : 1, sizeof(struct gw_service));
    if (cf->services == NULL)
        return -1;
    cf->nservices = n;
    for (int i = 0; i < n; i++) {
        struct gw_service *s = &cf->services[i];
        lua_rawgeti(L, t, i + 1);
        int e = lua_gettop(L);
        s->name = dup_field(L, e, "name");
        s->host = dup_field(L, e, "host");
        char *proto = dup_field(L, e, "protocol");
        s->https = proto && (strcmp(proto, "https") == 0 || strcmp(proto, "grpcs") == 0);
        s->grpc = proto && (strcmp(proto, "grpc") == 0 || strcmp(proto, "grpcs") == 0);
        free(proto);
        s->port = (int)int_field(L, e, "port", s->https ? 443 : 80);
        s->path = dup_field(L, e, "path");
        s->path_len = s->path ? strlen(s->path) : 0;
        s->connect_timeout = (int)int_field(L, e, "connect_timeout", 60000);
        s->write_timeout = (int)int_field(L, e, "write_timeout", 60000);
        s->read_timeout = (int)int_field(L, e, "read_timeout", 60000);
        s->retries = (int)int_field(L, e, "retries", 5);
        if (s->https) {
            char err[400];
            if (read_service_tls(L, conf, e, cf, i, err, sizeof(err)) != 0) {
                char msg[600];
                snprintf(msg, sizeof(msg), "service '%s': %s",
                         s->name ? s->name : s->host ? s->host : "?", err);
                *errs = strdup(msg);
                lua_pop(L, 2);
                return -1;
            }
        }
        lua_pop(L, 1);
        if (s->host == NULL)
            s->host = strdup("");
        if (s->host == NULL)
            return -1;
        if (set_host_header(s, s->host) != 0)
            return -1;
    }
    lua_pop(L, 1);
    return 0;
}

/* Pushes conf.routes and sizes cf->routes for it. Returns the route count,
 * or -1 when out of memory (the table stays pushed either way). */
static int routes_alloc(lua_State *L, int conf, struct gw_config *cf)
{
    lua_getfield(L, conf, "routes");
    int n = lua_istable(L, -1) ? (int)lua_objlen(L, -1) : 0;
    cf->routes = calloc(n ? n : 1, sizeof(struct gw_route));
    if (cf->routes == NULL)
        return -1;
    cf->nroutes = n;
    return n;
}

/* Reads routes[i + 1] of the routes table at index t into cf->routes[i]. */
static void read_route(lua_State *L, int t, struct gw_config *cf, int i)
{
    struct gw_route *r = &cf->routes[i];
    lua_rawgeti(L, t, i + 1);
    int e = lua_gettop(L);
    r->name = dup_field(L, e, "name");
    r->id = dup_field(L, e, "id");
    r->service = (int)int_field(L, e, "service", 0) - 1;
    if (r->service >= cf->nservices)
        r->service = -1;
    r->strip_path = bool_field(L, e, "strip_path", 1);
    r->preserve_host = bool_field(L, e, "preserve_host", 0);
    char *ph = dup_field(L, e, "path_handling");
    r->path_v1 = ph && strcmp(ph, "v1") == 0;
    free(ph);
    r->phases = (uint32_t)int_field(L, e, "phases", 0);
    r->https_redirect = (int)int_field(L, e, "https_redirect_status_code", 426);
    lua_getfield(L, e, "protocols");
    int np = lua_istable(L, -1) ? (int)lua_objlen(L, -1) : 0, http = 0, https = 0;
    for (int j = 1; j <= np; j++) {
        lua_rawgeti(L, -1, j);
        const char *pr = lua_tostring(L, -1);
        http |= pr && (strcmp(pr, "http") == 0 || strcmp(pr, "grpc") == 0);
        https |= pr && (strcmp(pr, "https") == 0 || strcmp(pr, "grpcs") == 0);
        lua_pop(L, 1);
    }
    lua_pop(L, 1);
    r->https_only = https && !http;
    lua_pop(L, 1);
}

static int algo_of(const char *a)
{
    if (a == NULL || strcmp(a, "round-robin") == 0)
        return GW_ALGO_RR;
    if (strcmp(a, "least-connections") == 0)
        return GW_ALGO_LEAST_CONN;
    if (strcmp(a, "consistent-hashing") == 0)
        return GW_ALGO_HASH;
    return GW_ALGO_LATENCY;
}

static int hash_on_of(const char *h)
{
    static const char *const names[] = {"none", "consumer", "ip", "header",
                                         "cookie", "path", "query_arg", "uri_capture"};
    for (int i = 0; h && i < 8; i++)
        if (strcmp(h, names[i]) == 0)
            return i;
    return GW_HASH_NONE;
}

/* t = the table at the top; reads path "a.b.c" into it, leaving the value on
 * the stack (nil when a step is missing). */
static void get_path(lua_State *L, int idx, const char *path)
{
    lua_pushvalue(L, idx);
    char part[64];
    while (*path) {
        const char *dot = strchr(path, '.');
        size_t n = dot ? (size_t)(dot - path) : strlen(path);
        snprintf(part, sizeof(part), "%.*s", (int)n, path);
        if (!lua_istable(L, -1)) {
            lua_pop(L, 1);
            lua_pushnil(L);
            return;
        }
        lua_getfield(L, -1, part);
        lua_remove(L, -2);
        path += n + (dot ? 1 : 0);
    }
}

static long path_int(lua_State *L, int idx, const char *path, long dflt)
{
    get_path(L, idx, path);
    long v = lua_isnumber(L, -1) ? (long)lua_tonumber(L, -1) : dflt;
    lua_pop(L, 1);
    return v;
}

static double path_num(lua_State *L, int idx, const char *path, double dflt)
{
    get_path(L, idx, path);
    double v = lua_isnumber(L, -1) ? lua_tonumber(L, -1) : dflt;
    lua_pop(L, 1);
    return v;
}

static void path_statuses(lua_State *L, int idx, const char *path, uint8_t *bits)
{
    get_path(L, idx, path);
    if (lua_istable(L, -1)) {
        int n = (int)lua_objlen(L, -1);
        for (int i = 1; i <= n; i++) {
            lua_rawgeti(L, -1, i);
            int st = (int)lua_tointeger(L, -1);
            if (st >= 100 && st < 1000)
                bits[st / 8] |= (uint8_t)(1u << (st % 8));
            lua_pop(L, 1);
        }
    }
    lua_pop(L, 1);
}

static int read_balancers(lua_State *L, int conf, struct gw_config *cf)
{
    lua_getfield(L, conf, "upstreams");
    int t = lua_gettop(L);
    int n = lua_istable(L, t) ? (int)lua_objlen(L, t) : 0;
    cf->balancers = calloc(n ? n : 1, sizeof(struct gw_balancer));
    if (cf->balancers == NULL)
        return -1;
    cf->nbalancers = n;
    for (int i = 0; i < n; i++) {
        struct gw_balancer *b = &cf->balancers[i];
        lua_rawgeti(L, t, i + 1);
        int e = lua_gettop(L);
        b->name = dup_field(L, e, "name");
        char *a = dup_field(L, e, "algorithm");
        b->algo = algo_of(a);
        free(a);
        char *h = dup_field(L, e, "hash_on");
        b->hash_on = hash_on_of(h);
        free(h);
        h = dup_field(L, e, "hash_fallback");
        b->hash_fallback = hash_on_of(h);
        free(h);
        static const char *const name_fields[] = {NULL, NULL, NULL, "header", "cookie", NULL,
                                                  "query_arg", "uri_capture"};
        char field[64];
        if (name_fields[b->hash_on]) {
            snprintf(field, sizeof(field), "hash_on_%s", name_fields[b->hash_on]);
            b->hash_on_name = dup_field(L, e, field);
        }
        if (name_fields[b->hash_fallback]) {
            snprintf(field, sizeof(field), "hash_fallback_%s", name_fields[b->hash_fallback]);
            b->hash_fallback_name = dup_field(L, e, field);
        }
        b->max_ejection_percent = (int)int_field(L, e, "max_ejection_percent", 100);
        b->slots = (int)int_field(L, e, "slots", 10000);
        b->host_header = dup_field(L, e, "host_header");
        struct gw_passive *pv = &b->passive;
        pv->http_failures = (int)path_int(L, e, "healthchecks.passive.unhealthy.http_failures", 0);
        pv->tcp_failures = (int)path_int(L, e, "healthchecks.passive.unhealthy.tcp_failures", 0);
        pv->timeouts = (int)path_int(L, e, "healthchecks.passive.unhealthy.timeouts", 0);
        pv->successes = (int)path_int(L, e, "healthchecks.passive.healthy.successes", 0);
        path_statuses(L, e, "healthchecks.passive.unhealthy.http_statuses", pv->unhealthy_status);
        path_statuses(L, e, "healthchecks.passive.healthy.http_statuses", pv->healthy_status);
        pv->backoff_s = path_num(L, e, "healthchecks.passive.readmission.backoff_s", 10);
        pv->max_backoff_s = path_num(L, e, "healthchecks.passive.readmission.max_backoff_s", 300);
        b->active_checks = path_num(L, e, "healthchecks.active.healthy.interval", 0) > 0 ||
                           path_num(L, e, "healthchecks.active.unhealthy.interval", 0) > 0;
        lua_getfield(L, e, "targets");
        int tt = lua_gettop(L);
        int nt = lua_istable(L, tt) ? (int)lua_objlen(L, tt) : 0;
        b->targets = calloc(nt ? nt : 1, sizeof(struct gw_target));
        if (b->targets == NULL || b->name == NULL)
            return -1;
        b->ntargets = nt;
        for (int j = 0; j < nt; j++) {
            struct gw_target *g = &b->targets[j];
            lua_rawgeti(L, tt, j + 1);
            int te = lua_gettop(L);
            g->name = dup_field(L, te, "target");
            g->weight = (int)int_field(L, te, "weight", 100);
            g->priority = (int)int_field(L, te, "priority", 0);
            g->srv = bool_field(L, te, "srv", 0);
            lua_pop(L, 1);
            if (g->name == NULL || gw_target_parse(g) != 0)
                return -1;
            char key[GW_HEALTH_KEY];
            snprintf(key, sizeof(key), "%s/%s", b->name, g->name);
            g->health = gw_health_slot(key);
        }
        lua_pop(L, 1);
        lua_pop(L, 1);
        if (gw_balancer_build(b) != 0)
            return -1;
    }
    lua_pop(L, 1);
    /* services whose host names an upstream are balanced over it */
    for (int i = 0; i < cf->nservices; i++) {
        cf->services[i].balancer = -1;
        for (int j = 0; j < cf->nbalancers; j++)
            if (strcmp(cf->services[i].host, cf->balancers[j].name) == 0)
                cf->services[i].balancer = j;
        /* the upstream's host_header replaces its name as the Host sent */
        int j = cf->services[i].balancer;
        if (j >= 0 && cf->balancers[j].host_header &&
            set_host_header(&cf->services[i], cf->balancers[j].host_header) != 0)
            return -1;
    }
    return 0;
}

static void config_free(struct gw_config *cf, lua_State *L)
{
    for (int i = 0; i < cf->nservices; i++) {
        free(cf->services[i].name);
        free(cf->services[i].host);
        free(cf->services[i].path);
        free(cf->services[i].host_header);
        gw_tls_client_release(&cf->services[i].tls);
    }
    for (int i = 0; i < cf->nroutes; i++) {
        free(cf->routes[i].name);
        free(cf->routes[i].id);
        gw_guard_free(&cf->routes[i]);
    }
    for (int i = 0; i < cf->nbalancers; i++)
        gw_balancer_free(&cf->balancers[i]);
    free(cf->balancers);
    free(cf->services);
    free(cf->routes);
    gw_router_free(&cf->router);
    gw_tls_config_free(cf);
    gw_memo_free(&cf->memo);
    if (L && cf->lua_ref != LUA_NOREF)
        luaL_unref(L, LUA_REGISTRYINDEX, cf->lua_ref);
    free(cf);
}

static lua_State *owner_L; /* the state that holds lua_ref of live configs */

/* Pushes luagate.runtime[fn] and its two arguments (path, opts). Returns 0,
 * or -1 with the error message pushed. */
static int push_load_call(lua_State *L, const char *fn, const char *path, int collect)
{
    lua_getglobal(L, "require");
    lua_pushstring(L, "luagate.runtime");
    if (lua_pcall(L, 1, 1, 0) != 0)
        return -1;
    lua_getfield(L, -1, fn);
    lua_remove(L, -2);
    lua_pushstring(L, path);
    lua_newtable(L);
    lua_newtable(L);
    for (int i = 0; i < gw_settings.nplugin_dirs; i++) {
        lua_pushstring(L, gw_settings.plugin_dirs[i]);
        lua_rawseti(L, -2, i + 1);
    }
    lua_setfield(L, -2, "plugins_dirs");
    lua_pushstring(L, gw_settings.prefix);
    lua_setfield(L, -2, "prefix");
    lua_pushboolean(L, gw_worker != NULL);
    lua_setfield(L, -2, "worker");
    lua_pushboolean(L, collect);
    lua_setfield(L, -2, "collect");
    return 0;
}

static char *lua_failure(lua_State *L, const char *path)
{
    const char *e = lua_tostring(L, -1);
    char buf[2048];
    snprintf(buf, sizeof(buf), "%s: could not load the configuration: %s", path,
             e ? e : "unknown Lua error");
    return strdup(buf);
}

/* "<path>: <e>" in *errs, freeing e (a malloc'd message or NULL: out of
 * memory). */
static void errs_with_path(char **errs, const char *path, char *e)
{
    if (e == NULL) {
        *errs = strdup("out of memory loading the configuration");
        return;
    }
    size_t n = strlen(path) + strlen(e) + 4;
    *errs = malloc(n);
    if (*errs)
        snprintf(*errs, n, "%s: %s", path, e);
    free(e);
}

/* A new configuration for the luagate.runtime.load results at conf, conf +
 * 1, conf + 2 (conf, entries | nil, errs_text): NULL with *errs when the
 * load refused the file or memory is short. */
static struct gw_config *config_new(lua_State *L, int conf, char **errs)
{
    if (lua_isnil(L, conf)) {
        const char *e = lua_tostring(L, conf + 1);
        *errs = strdup(e ? e : "invalid configuration");
        return NULL;
    }
    struct gw_config *cf = calloc(1, sizeof(*cf));
    if (cf == NULL) {
        *errs = strdup("out of memory loading the configuration");
        return NULL;
    }
    cf->refs = 1;
    cf->lua_ref = LUA_NOREF;
    cf->generation = ++generation;
    lua_getfield(L, conf, "hash");
    snprintf(cf->hash, sizeof(cf->hash), "%s", lua_isstring(L, -1) ? lua_tostring(L, -1) : "");
    lua_pop(L, 1);
    return cf;
}

/* Services, upstreams and TLS of cf (all but routes and router). -1 with
 * *errs. Leaves the stack as it found it. */
static int config_entities(lua_State *L, int conf, struct gw_config *cf, const char *path,
                           char **errs)
{
    int top = lua_gettop(L);
    if (read_services(L, conf, cf, errs) != 0 || read_balancers(L, conf, cf) != 0) {
        lua_settop(L, top);
        errs_with_path(errs, path, *errs);
        return -1;
    }
    lua_settop(L, top);
    cf->global_phases = (uint32_t)int_field(L, conf, "global_phases", 0);
    char terr[512];
    if (gw_tls_config_build(L, conf, cf, terr, sizeof(terr)) != 0) {
        lua_settop(L, top);
        errs_with_path(errs, path, strdup(terr));
        return -1;
    }
    lua_settop(L, top);
    return 0;
}

static void router_failed(char **errs, const char *path, const char *rerr)
{
    char buf[512];
    snprintf(buf, sizeof(buf), "%s: could not build the router: %s", path,
             rerr ? rerr : "unknown error");
    *errs = strdup(buf);
}

/* The C structures of the configuration whose luagate.runtime.load results
 * are the top three values of L (conf, entries | nil, errs_text), in one
 * piece. Pops nothing; the caller restores its stack. */
static struct gw_config *config_build(lua_State *L, const char *path, char **errs)
{
    int conf = lua_gettop(L) - 2;
    struct gw_config *cf = config_new(L, conf, errs);
    if (cf == NULL || config_entities(L, conf, cf, path, errs) != 0)
        goto fail;
    int n = routes_alloc(L, conf, cf);
    if (n < 0) {
        *errs = strdup("out of memory loading the configuration");
        goto fail;
    }
    for (int i = 0; i < n; i++)
        read_route(L, lua_gettop(L), cf, i);
    lua_pop(L, 1);
    const char *rerr = NULL;
    if (gw_router_build(L, conf + 1, &cf->router, &rerr) != GW_OK) {
        router_failed(errs, path, rerr);
        goto fail;
    }
    lua_pushvalue(L, conf);
    cf->lua_ref = luaL_ref(L, LUA_REGISTRYINDEX);
    return cf;
fail:
    if (cf)
        config_free(cf, NULL);
    return NULL;
}

struct gw_config *gw_config_load(lua_State *L, const char *path, char **errs)
{
    *errs = NULL;
    int top = lua_gettop(L);
    if (push_load_call(L, "load", path, 1) != 0 || lua_pcall(L, 2, 3, 0) != 0) {
        *errs = lua_failure(L, path);
        lua_settop(L, top);
        return NULL;
    }
    struct gw_config *cf = config_build(L, path, errs);
    if (cf)
        owner_L = L;
    lua_settop(L, top);
    return cf;
}

/* ---- a load in slices (worker reloads) ---- */

/* Wall time a step of the C build runs before it returns to the loop: the
 * Lua part's slice (luagate.slice's BUDGET). */
#define SLICE_S 0.0001
#define ROUTES_PER_CLOCK 16 /* routes read between two clock reads */

enum job_stage {
    JOB_LUA,      /* luagate.runtime.load_sliced runs in co */
    JOB_ENTITIES, /* services, upstreams, TLS: one piece */
    JOB_ROUTES,   /* cf->routes, a few routes per clock read */
    JOB_ROUTER,   /* the router, gw_router_build_step */
};

struct gw_config_job {
    lua_State *L;  /* the worker's state */
    lua_State *co; /* the load's coroutine; then its results, at 1..3 */
    int co_ref;    /* keeps co alive */
    int nargs;     /* arguments for the first resume, then 0 */
    enum job_stage stage;
    struct gw_config *cf;          /* being built (after JOB_LUA); no request sees it */
    int next_route;                /* JOB_ROUTES: the next route to read */
    struct gw_router_builder *rb;  /* JOB_ROUTER */
    int gc_stopped;                /* the collector is stopped for the C build */
    char path[512];
};

static double mono(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

struct gw_config_job *gw_config_load_start(lua_State *L, const char *path, int collect,
                                           char **errs)
{
    *errs = NULL;
    struct gw_config_job *j = calloc(1, sizeof(*j));
    if (j == NULL) {
        *errs = strdup("out of memory loading the configuration");
        return NULL;
    }
    j->L = L;
    j->stage = JOB_LUA;
    snprintf(j->path, sizeof(j->path), "%s", path);
    j->co = lua_newthread(L);
    j->co_ref = luaL_ref(L, LUA_REGISTRYINDEX);
    if (push_load_call(j->co, "load_sliced", path, collect) != 0) {
        *errs = lua_failure(j->co, path);
        gw_config_load_cancel(j);
        return NULL;
    }
    j->nargs = 2;
    return j;
}

/* One slice of the Lua part. At its end the results stay on co's stack
 * (conf at 1, entries at 2) for the C build. */
static int lua_step(struct gw_config_job *j, char **errs)
{
    int nargs = j->nargs;
    j->nargs = 0;
    int rc = lua_resume(j->co, nargs);
    if (rc == LUA_YIELD) {
        lua_settop(j->co, 0); /* a yield passes nothing we use */
        return GW_AGAIN;
    }
    if (rc != 0) {
        *errs = lua_failure(j->co, j->path);
        return GW_ERROR;
    }
    lua_settop(j->co, 3); /* conf, entries | nil, errs_text (nil-padded) */
    j->cf = config_new(j->co, 1, errs);
    if (j->cf == NULL)
        return GW_ERROR;
    /* The C build makes next to no Lua garbage. Stopped until the swap, the
     * collector's next cycle starts after it, once the replaced config is
     * released: that one cycle frees it (gw_config_load_cancel restarts). */
    lua_gc(j->L, LUA_GCSTOP, 0);
    j->gc_stopped = 1;
    j->stage = JOB_ENTITIES;
    return GW_AGAIN; /* the C build starts with a slice of its own */
}

/* Reads routes until the deadline or the last one. */
static void routes_step(struct gw_config_job *j, double deadline)
{
    lua_State *L = j->co;
    lua_getfield(L, 1, "routes");
    int t = lua_gettop(L);
    while (j->next_route < j->cf->nroutes) {
        read_route(L, t, j->cf, j->next_route++);
        if (j->next_route % ROUTES_PER_CLOCK == 0 && mono() >= deadline)
            break;
    }
    lua_settop(L, t - 1);
}

/* One slice of the C build: stages run until the deadline passes; a stage
 * that cannot be cut (JOB_ENTITIES) runs whole. */
static int build_step(struct gw_config_job *j, double deadline, struct gw_config **out,
                      char **errs)
{
    lua_State *L = j->co;
    const char *rerr = NULL;
    do {
        switch (j->stage) {
        case JOB_LUA:
            return GW_ERROR; /* not reached */
        case JOB_ENTITIES:
            if (config_entities(L, 1, j->cf, j->path, errs) != 0)
                return GW_ERROR;
            if (routes_alloc(L, 1, j->cf) < 0) {
                lua_settop(L, 3);
                *errs = strdup("out of memory loading the configuration");
                return GW_ERROR;
            }
            lua_settop(L, 3);
            j->stage = JOB_ROUTES;
            break;
        case JOB_ROUTES:
            routes_step(j, deadline);
            if (j->next_route < j->cf->nroutes)
                break;
            if (gw_router_build_start(L, 2, &j->rb, &rerr) != GW_OK) {
                router_failed(errs, j->path, rerr);
                return GW_ERROR;
            }
            j->stage = JOB_ROUTER;
            break;
        case JOB_ROUTER: {
            int rc = gw_router_build_step(j->rb, L, 2, deadline, &j->cf->router, &rerr);
            if (rc == GW_AGAIN)
                break;
            if (rc != GW_OK) {
                router_failed(errs, j->path, rerr);
                return GW_ERROR;
            }
            lua_pushvalue(L, 1);
            j->cf->lua_ref = luaL_ref(L, LUA_REGISTRYINDEX);
            *out = j->cf;
            j->cf = NULL;
            return GW_OK;
        }
        }
    } while (mono() < deadline);
    return GW_AGAIN;
}

int gw_config_load_step(struct gw_config_job *j, struct gw_config **out, char **errs)
{
    *out = NULL;
    *errs = NULL;
    int rc = j->stage == JOB_LUA ? lua_step(j, errs) : build_step(j, mono() + SLICE_S, out, errs);
    if (rc == GW_OK)
        owner_L = j->L; /* lua_ref is in the registry every thread shares */
    return rc;
}

void gw_config_load_cancel(struct gw_config_job *j)
{
    if (j == NULL)
        return;
    if (lua_status(j->co) == LUA_YIELD) { /* dropped mid-load: the GC runs again */
        int top = lua_gettop(j->L);
        lua_getglobal(j->L, "require");
        lua_pushstring(j->L, "luagate.runtime");
        if (lua_pcall(j->L, 1, 1, 0) == 0) {
            lua_getfield(j->L, -1, "load_abandoned");
            lua_pcall(j->L, 0, 0, 0);
        }
        lua_settop(j->L, top);
    }
    if (j->cf) /* dropped during the C build: no request ever saw it */
        config_free(j->cf, NULL);
    if (j->gc_stopped)
        lua_gc(j->L, LUA_GCRESTART, 0);
    gw_router_build_free(&j->rb);
    luaL_unref(j->L, LUA_REGISTRYINDEX, j->co_ref);
    free(j);
}

void gw_config_release(struct gw_config **pcf)
{
    struct gw_config *cf = *pcf;
    *pcf = NULL;
    if (cf == NULL || --cf->refs > 0)
        return;
    config_free(cf, owner_L);
}
