/* The outline of a JSON document in C (json.c): the module
 * "luagate.json_c", with which a worker's sliced load decodes a large
 * JSON config in pieces (luagate.config). */
#ifndef GW_JSON_H
#define GW_JSON_H

struct lua_State;

/* The module's opener (gw_lua_new registers it in package.preload). */
int luaopen_luagate_json_c(struct lua_State *L);

#endif
