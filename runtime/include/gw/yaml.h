/* YAML to Lua tables in C (yaml.c): the module "luagate.yaml_c", the fast
 * path of luagate.config.yaml. */
#ifndef GW_YAML_H
#define GW_YAML_H

struct lua_State;

/* The module's opener (gw_lua_new registers it in package.preload). */
int luaopen_luagate_yaml_c(struct lua_State *L);

#endif
