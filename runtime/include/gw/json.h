/* The outline of a JSON document in C (json.c): the module
 * "luagate.json_c", with which a worker's sliced load decodes a large
 * JSON config in pieces (luagate.config). */
#ifndef GW_JSON_H
#define GW_JSON_H

struct lua_State;

/* Registers the module in package.preload of L. */
void gw_json_preload(struct lua_State *L);

int luaopen_luagate_json_c(struct lua_State *L);

#endif
