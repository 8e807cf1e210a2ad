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

#include "gw/buf.h"
#include "gw/config.h"
#include "gw/log.h"
#include "gw/router.h"
#include "gw/settings-t.h"
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
    lua_pop(L, 1);
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

static int read_services(lua_State *L, int conf, struct gw_config *cf)
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
        free(proto);
        s->port = (int)int_field(L, e, "port", s->https ? 443 : 80);
        s->path = dup_field(L, e, "path");
        s->path_len = s->path ? strlen(s->path) : 0;
        s->connect_timeout = (int)int_field(L, e, "connect_timeout", 60000);
        s->write_timeout = (int)int_field(L, e, "write_timeout", 60000);
        s->read_timeout = (int)int_field(L, e, "read_timeout", 60000);
        s->retries = (int)int_field(L, e, "retries", 5);
        lua_pop(L, 1);
        if (s->host == NULL)
            s->host = strdup("");
        if (s->host == NULL)
            return -1;
        size_t hl = strlen(s->host) + 16;
        s->host_header = malloc(hl);
        if (s->host_header == NULL)
            return -1;
        int dflt = s->port == (s->https ? 443 : 80);
        int is6 = strchr(s->host, ':') != NULL && s->host[0] != '[';
        snprintf(s->host_header, hl, dflt ? (is6 ? "[%s]" : "%s") : (is6 ? "[%s]:%d" : "%s:%d"),
                 s->host, s->port);
        s->host_header_len = strlen(s->host_header);
    }
    lua_pop(L, 1);
    return 0;
}

static int read_routes(lua_State *L, int conf, struct gw_config *cf)
{
    lua_getfield(L, conf, "routes");
    int t = lua_gettop(L);
    int n = lua_istable(L, t) ? (int)lua_objlen(L, t) : 0;
    cf->routes = calloc(n ? n : 1, sizeof(struct gw_route));
    if (cf->routes == NULL)
        return -1;
    cf->nroutes = n;
    for (int i = 0; i < n; i++) {
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
        lua_pop(L, 1);
    }
    lua_pop(L, 1);
    return 0;
}

static void config_free(struct gw_config *cf, lua_State *L)
{
    for (int i = 0; i < cf->nservices; i++) {
        free(cf->services[i].name);
        free(cf->services[i].host);
        free(cf->services[i].path);
        free(cf->services[i].host_header);
    }
    for (int i = 0; i < cf->nroutes; i++) {
        free(cf->routes[i].name);
        free(cf->routes[i].id);
    }
    free(cf->services);
    free(cf->routes);
    gw_router_free(&cf->router);
    if (L && cf->lua_ref != LUA_NOREF)
        luaL_unref(L, LUA_REGISTRYINDEX, cf->lua_ref);
    free(cf);
}

static lua_State *owner_L; /* the state that holds lua_ref of live configs */

struct gw_config *gw_config_load(lua_State *L, const char *path, char **errs)
{
    *errs = NULL;
    int top = lua_gettop(L);
    struct gw_config *cf = NULL;
    lua_getglobal(L, "require");
    lua_pushstring(L, "luagate.runtime");
    if (lua_pcall(L, 1, 1, 0) != 0)
        goto lua_fail;
    lua_getfield(L, -1, "load");
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
    if (lua_pcall(L, 2, 3, 0) != 0)
        goto lua_fail;
    /* conf, entries | nil, errs_text */
    if (lua_isnil(L, -3)) {
        const char *e = lua_tostring(L, -2);
        *errs = strdup(e ? e : "invalid configuration");
        lua_settop(L, top);
        return NULL;
    }
    int conf = lua_gettop(L) - 2;
    int entries = conf + 1;
    cf = calloc(1, sizeof(*cf));
    if (cf == NULL)
        goto oom;
    cf->refs = 1;
    cf->lua_ref = LUA_NOREF;
    cf->generation = ++generation;
    lua_getfield(L, conf, "hash");
    snprintf(cf->hash, sizeof(cf->hash), "%s", lua_isstring(L, -1) ? lua_tostring(L, -1) : "");
    lua_pop(L, 1);
    if (read_services(L, conf, cf) != 0 || read_routes(L, conf, cf) != 0)
        goto oom;
    cf->global_phases = (uint32_t)int_field(L, conf, "global_phases", 0);
    const char *rerr = NULL;
    if (gw_router_build(L, entries, &cf->router, &rerr) != GW_OK) {
        char buf[512];
        snprintf(buf, sizeof(buf), "%s: could not build the router: %s", path,
                 rerr ? rerr : "unknown error");
        *errs = strdup(buf);
        config_free(cf, NULL);
        lua_settop(L, top);
        return NULL;
    }
    lua_pushvalue(L, conf);
    cf->lua_ref = luaL_ref(L, LUA_REGISTRYINDEX);
    owner_L = L;
    lua_settop(L, top);
    return cf;

lua_fail: {
        const char *e = lua_tostring(L, -1);
        char buf[2048];
        snprintf(buf, sizeof(buf), "%s: could not load the configuration: %s", path,
                 e ? e : "unknown Lua error");
        *errs = strdup(buf);
        lua_settop(L, top);
        return NULL;
    }
oom:
    if (cf)
        config_free(cf, NULL);
    *errs = strdup("out of memory loading the configuration");
    lua_settop(L, top);
    return NULL;
}

void gw_config_release(struct gw_config **pcf)
{
    struct gw_config *cf = *pcf;
    *pcf = NULL;
    if (cf == NULL || --cf->refs > 0)
        return;
    config_free(cf, owner_L);
}
