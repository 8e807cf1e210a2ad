#ifndef GW_CONFIG_H
#define GW_CONFIG_H

#include "gw/config-t.h"

struct lua_State;

/* A Lua state with package paths for <prefix>/lua, the plugin dirs and
 * Debian's Lua 5.1 modules. NULL when out of memory. */
struct lua_State *gw_lua_new(void);

/* Loads, validates and compiles the declarative file at path with L.
 * Returns a configuration holding one reference, or NULL; then *errs is a
 * malloc'd text with one error per line (FILE:LINE: path: message), which
 * the caller frees. */
struct gw_config *gw_config_load(struct lua_State *L, const char *path, char **errs);

/* The same load in slices, for a worker's reload: the Lua part runs in a
 * coroutine that yields every 0.1 ms or so (luagate.slice), then the C
 * structures are built in steps of about 0.1 ms, so the event loop serves
 * requests between two steps. collect: first finish the collector's cycle
 * in progress (in slices; 0 when the caller just completed one).
 * gw_config_load_step runs one slice: GW_AGAIN (call it again on a later
 * loop turn), GW_OK with *out, or GW_ERROR with *errs (malloc'd). The
 * collector stays stopped from the end of the Lua part until the job is
 * released with gw_config_load_cancel (finished or abandoned): release it
 * after swapping *out in, so that the next cycle frees the replaced one. */
struct gw_config_job;
struct gw_config_job *gw_config_load_start(struct lua_State *L, const char *path, int collect,
                                           char **errs);
int gw_config_load_step(struct gw_config_job *j, struct gw_config **out, char **errs);
void gw_config_load_cancel(struct gw_config_job *j);

static inline struct gw_config *gw_config_ref(struct gw_config *cf)
{
    cf->refs++;
    return cf;
}

/* Drops a reference; frees the configuration with the last one. *cf = NULL. */
void gw_config_release(struct gw_config **cf);

#endif
