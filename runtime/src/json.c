/* The outline of a JSON document: where the members of its top-level object
 * and the elements of their arrays begin and end, so that a worker's
 * sliced load decodes a large config in pieces with cjson, a slice each,
 * instead of one uncut 10-20 ms decode (docs/performance.md, "Config
 * changes").
 *
 * Only the outline is checked here: the top-level object, its keys, the
 * colons and commas, and the arrays that are member values. Everything
 * between (keys, values, elements) is found by bracket depth and string
 * quotes and left to cjson, which refuses a piece that is not valid JSON.
 * A document is valid JSON exactly when its outline is and every piece is,
 * so the pieces decode to what the whole would (the caller assigns the
 * members in order: a repeated key keeps its last value, as cjson does).
 *
 *   local o = require("luagate.json_c").outline(text)
 *   -- nil when the text is not an object with a valid outline; else a flat
 *   -- array, per member: key_from, key_to, value_from, value_to, n, then,
 *   -- when the value is an array (n >= 0), n pairs element_from,
 *   -- element_to; n = -1 otherwise. Offsets are string.sub's (1-based,
 *   -- inclusive); a key's range has its quotes. */
#include <lauxlib.h>
#include <lua.h>
#include <stddef.h>

#include "gw/json.h"

struct jscan {
    const char *p;   /* the text */
    size_t len;
    size_t i;        /* the next byte */
    lua_State *L;
    int out;         /* stack index of the result array */
    int n;           /* values in it */
};

static void skip_ws(struct jscan *s)
{
    while (s->i < s->len) {
        char c = s->p[s->i];
        if (c != ' ' && c != '\t' && c != '\n' && c != '\r')
            return;
        s->i++;
    }
}

/* Skips the string that starts at s->i (a quote). -1 when unterminated. */
static int skip_string(struct jscan *s)
{
    for (s->i++; s->i < s->len; s->i++) {
        char c = s->p[s->i];
        if (c == '\\')
            s->i++;
        else if (c == '"') {
            s->i++;
            return 0;
        }
    }
    return -1;
}

/* Skips one value: a string, a bracketed value (by depth, strings
 * skipped), or a scalar up to the next delimiter. -1 at the end of the text
 * or when nothing is there. */
static int skip_value(struct jscan *s)
{
    size_t from = s->i;
    if (s->i >= s->len)
        return -1;
    char c = s->p[s->i];
    if (c == '"')
        return skip_string(s);
    if (c == '{' || c == '[') {
        size_t depth = 0;
        while (s->i < s->len) {
            c = s->p[s->i];
            if (c == '"') {
                if (skip_string(s) != 0)
                    return -1;
                continue;
            }
            if (c == '{' || c == '[')
                depth++;
            else if ((c == '}' || c == ']') && --depth == 0) {
                s->i++;
                return 0;
            }
            s->i++;
        }
        return -1;
    }
    while (s->i < s->len) {
        c = s->p[s->i];
        if (c == ',' || c == ']' || c == '}' || c == ' ' || c == '\t' || c == '\n' ||
            c == '\r')
            break;
        s->i++;
    }
    return s->i > from ? 0 : -1;
}

static void emit(struct jscan *s, lua_Number v)
{
    lua_pushnumber(s->L, v);
    lua_rawseti(s->L, s->out, ++s->n);
}

/* The elements of the array at s->i ('['): n, then their ranges, emitted
 * at slot `count`, reserved by the caller. -1 on a bad outline. */
static int scan_array(struct jscan *s, int count)
{
    int n = 0;
    s->i++;
    skip_ws(s);
    if (s->i < s->len && s->p[s->i] == ']') {
        s->i++;
        goto done;
    }
    for (;;) {
        size_t from = s->i;
        if (skip_value(s) != 0)
            return -1;
        emit(s, (lua_Number)from + 1);
        emit(s, (lua_Number)s->i);
        n++;
        skip_ws(s);
        if (s->i >= s->len)
            return -1;
        char c = s->p[s->i++];
        if (c == ']')
            break;
        if (c != ',')
            return -1;
        skip_ws(s);
    }
done:
    lua_pushnumber(s->L, n);
    lua_rawseti(s->L, s->out, count);
    return 0;
}

/* One member "key": value at s->i. -1 on a bad outline. */
static int scan_member(struct jscan *s)
{
    if (s->i >= s->len || s->p[s->i] != '"')
        return -1;
    size_t from = s->i;
    if (skip_string(s) != 0)
        return -1;
    emit(s, (lua_Number)from + 1);
    emit(s, (lua_Number)s->i);
    skip_ws(s);
    if (s->i >= s->len || s->p[s->i] != ':')
        return -1;
    s->i++;
    skip_ws(s);
    from = s->i;
    emit(s, (lua_Number)from + 1);
    if (s->i >= s->len || s->p[s->i] != '[') {
        if (skip_value(s) != 0)
            return -1;
        emit(s, (lua_Number)s->i);
        emit(s, -1);
        return 0;
    }
    int to = ++s->n, count = ++s->n; /* filled once the array is scanned */
    if (scan_array(s, count) != 0)
        return -1;
    lua_pushnumber(s->L, (lua_Number)s->i);
    lua_rawseti(s->L, s->out, to);
    return 0;
}

static int scan_object(struct jscan *s)
{
    skip_ws(s);
    if (s->i >= s->len || s->p[s->i] != '{')
        return -1;
    s->i++;
    skip_ws(s);
    if (s->i < s->len && s->p[s->i] == '}') {
        s->i++;
    } else {
        for (;;) {
            if (scan_member(s) != 0)
                return -1;
            skip_ws(s);
            if (s->i >= s->len)
                return -1;
            char c = s->p[s->i++];
            if (c == '}')
                break;
            if (c != ',')
                return -1;
            skip_ws(s);
        }
    }
    skip_ws(s);
    return s->i == s->len ? 0 : -1;
}

static int outline(lua_State *L)
{
    struct jscan s = {0};
    s.p = luaL_checklstring(L, 1, &s.len);
    s.L = L;
    lua_settop(L, 1);
    lua_newtable(L);
    s.out = 2;
    if (scan_object(&s) != 0)
        lua_pushnil(L);
    else
        lua_pushvalue(L, s.out);
    return 1;
}

int luaopen_luagate_json_c(lua_State *L)
{
    lua_newtable(L);
    lua_pushcfunction(L, outline);
    lua_setfield(L, -2, "outline");
    return 1;
}
