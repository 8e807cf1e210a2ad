/* YAML to Lua tables in C (yaml.c): the module "luagate.yaml_c", the fast
 * path of luagate.config.yaml. */
#ifndef GW_YAML_H
#define GW_YAML_H

struct lua_State;

/* Registers the module in package.preload of L. */
void gw_yaml_preload(struct lua_State *L);

int luaopen_luagate_yaml_c(struct lua_State *L);

#endif
