/* YAML to Lua tables in C: the fast path of luagate.config.yaml.
 *
 * Walking libyaml's events from Lua (lyaml's parser makes a table per event,
 * with its marks) took a 1 MB config about 200 ms, against 10 ms for cjson
 * on the same config in JSON. Here the same events build the tables
 * directly. It handles what configs are made of: mappings with scalar keys,
 * sequences, plain and quoted scalars. Plain scalars that are words (not
 * null or bool spellings) are strings; the others are resolved by the Lua
 * function the caller gives (the YAML 1.1 implicit types of the Lua
 * reader), so both readers agree on every value. Anything else (tags,
 * anchors and aliases, merge keys, complex keys, a syntax error, a Lua
 * error such as a NaN key) returns nothing: the caller then reads the text
 * with the Lua reader, which also gives the errors with their lines.
 *
 *   local doc = require("luagate.yaml_c").decode(text, resolve, null)
 *   -- doc, or nil: use the Lua reader */
#include <lauxlib.h>
#include <lua.h>
#include <string.h>
#include <yaml.h>

#include "gw/yaml.h"

#define MAX_DEPTH 500

struct ydec {
    yaml_parser_t parser;
    yaml_event_t ev;
    int has_ev;
    const char *text;
    size_t len;
};

#define RESOLVE 2 /* stack slots of decode's arguments */
#define NULLV 3

/* Reads the next event; 0, or -1 on a syntax error. */
static int next(struct ydec *d)
{
    if (d->has_ev)
        yaml_event_delete(&d->ev);
    d->has_ev = 0;
    if (!yaml_parser_parse(&d->parser, &d->ev))
        return -1;
    d->has_ev = 1;
    return 0;
}

/* The Lua reader's test: ^[%a_][%w_]*$ and not a null or bool spelling. */
static int plain_word(const char *s, size_t n)
{
    static const char *const words[] = {"null", "true", "false", "yes", "no",
                                        "on",   "off",  "y",     "n"};
    if (n == 0 || !((s[0] >= 'a' && s[0] <= 'z') || (s[0] >= 'A' && s[0] <= 'Z') || s[0] == '_'))
        return 0;
    for (size_t i = 1; i < n; i++) {
        char c = s[i];
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              c == '_'))
            return 0;
    }
    if (n > 5)
        return 1;
    for (size_t w = 0; w < sizeof(words) / sizeof(words[0]); w++)
        if (strlen(words[w]) == n && strncasecmp(s, words[w], n) == 0)
            return 0;
    return 1;
}

/* Pushes the scalar of the current event; -1: not for this reader. */
static int push_scalar(lua_State *L, struct ydec *d)
{
    const yaml_event_t *e = &d->ev;
    if (e->data.scalar.tag || e->data.scalar.anchor)
        return -1;
    const char *v = (const char *)e->data.scalar.value;
    size_t n = e->data.scalar.length;
    if (e->data.scalar.style != YAML_PLAIN_SCALAR_STYLE || plain_word(v, n)) {
        lua_pushlstring(L, v, n);
        return 0;
    }
    lua_pushvalue(L, RESOLVE);
    lua_pushlstring(L, v, n);
    lua_call(L, 1, 1);
    return 0;
}

/* Pushes the node that starts with the current event; -1: not for this
 * reader (or a syntax error). */
static int push_node(lua_State *L, struct ydec *d, int depth)
{
    if (depth > MAX_DEPTH || !lua_checkstack(L, 6))
        return -1;
    switch (d->ev.type) {
    case YAML_SCALAR_EVENT:
        return push_scalar(L, d);
    case YAML_SEQUENCE_START_EVENT: {
        if (d->ev.data.sequence_start.anchor || d->ev.data.sequence_start.tag)
            return -1;
        lua_newtable(L);
        for (int i = 1;; i++) {
            if (next(d) != 0)
                return -1;
            if (d->ev.type == YAML_SEQUENCE_END_EVENT)
                return 0;
            if (push_node(L, d, depth + 1) != 0)
                return -1;
            lua_rawseti(L, -2, i);
        }
    }
    case YAML_MAPPING_START_EVENT: {
        if (d->ev.data.mapping_start.anchor || d->ev.data.mapping_start.tag)
            return -1;
        lua_newtable(L);
        for (;;) {
            if (next(d) != 0)
                return -1;
            if (d->ev.type == YAML_MAPPING_END_EVENT)
                return 0;
            if (d->ev.type != YAML_SCALAR_EVENT)
                return -1; /* a complex key */
            if (d->ev.data.scalar.style == YAML_PLAIN_SCALAR_STYLE &&
                d->ev.data.scalar.length == 2 && memcmp(d->ev.data.scalar.value, "<<", 2) == 0)
                return -1; /* a merge key */
            if (push_scalar(L, d) != 0)
                return -1;
            if (lua_rawequal(L, -1, NULLV)) { /* a null key is the string "null" */
                lua_pop(L, 1);
                lua_pushliteral(L, "null");
            }
            if (next(d) != 0 || push_node(L, d, depth + 1) != 0)
                return -1;
            lua_rawset(L, -3);
        }
    }
    default: /* an alias */
        return -1;
    }
}

/* Under lua_pcall: pushes the first document, or returns -1 in a number. */
static int build(lua_State *L)
{
    struct ydec *d = lua_touserdata(L, 1);
    lua_settop(L, 0);
    lua_pushnil(L); /* slot 1: unused */
    lua_pushvalue(L, lua_upvalueindex(1)); /* RESOLVE */
    lua_pushvalue(L, lua_upvalueindex(2)); /* NULLV */
    for (;;) {
        if (next(d) != 0)
            return 0;
        if (d->ev.type == YAML_STREAM_END_EVENT) {
            lua_pushvalue(L, NULLV); /* no document */
            return 1;
        }
        if (d->ev.type != YAML_DOCUMENT_START_EVENT)
            continue;
        if (next(d) != 0)
            return 0;
        if (d->ev.type == YAML_DOCUMENT_END_EVENT) {
            lua_pushvalue(L, NULLV);
            return 1;
        }
        if (push_node(L, d, 0) != 0 || next(d) != 0) /* the node, then DOCUMENT_END */
            return 0;
        return 1; /* only the first document is read, as the Lua reader does */
    }
}

static int decode(lua_State *L)
{
    size_t len;
    const char *text = luaL_checklstring(L, 1, &len);
    luaL_checktype(L, 2, LUA_TFUNCTION);
    luaL_checkany(L, 3);
    struct ydec d;
    memset(&d, 0, sizeof(d));
    if (!yaml_parser_initialize(&d.parser))
        return 0;
    yaml_parser_set_input_string(&d.parser, (const unsigned char *)text, len);
    lua_pushvalue(L, 2);
    lua_pushvalue(L, 3);
    lua_pushcclosure(L, build, 2);
    lua_pushlightuserdata(L, &d);
    int rc = lua_pcall(L, 1, 1, 0); /* a resolver's error or a NaN key: the Lua reader */
    if (d.has_ev)
        yaml_event_delete(&d.ev);
    yaml_parser_delete(&d.parser);
    if (rc != 0 || lua_isnil(L, -1))
        return 0;
    return 1;
}

int luaopen_luagate_yaml_c(lua_State *L)
{
    lua_newtable(L);
    lua_pushcfunction(L, decode);
    lua_setfield(L, -2, "decode");
    return 1;
}
