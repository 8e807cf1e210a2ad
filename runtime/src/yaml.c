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
 *   -- doc, or nil: use the Lua reader
 *
 * The stepped decoder (below) can also give the text of each element of a
 * sequence that is the value of a top-level mapping key (a worker's reload
 * reuses what an element whose text it validated last time gave: "Reuse
 * across a worker's reloads" in luagate/config/init.lua). */
#include <lauxlib.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
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

#define RESOLVE 2 /* stack slots of step_body's arguments (below) */
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

/* Pushes the scalar of event e; -1: not for this reader. */
static int push_scalar(lua_State *L, const yaml_event_t *e)
{
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

/* A decode in steps, for a worker's sliced load (a 1.5 MB config is 40 ms
 * of events in one piece):
 *
 *   local dec = yaml_c.decoder(text, resolve, null[, record[, known, reused]])
 *   local r, raws = dec:step(n) -- true: more to read; else the document,
 *                               -- or nil (not for this reader, as
 *                               -- decode's nothing)
 *
 * With `record`, the document comes with raws: raws[key][i] is the text of
 * element i of the sequence that is the root mapping's value of `key`,
 * with a head that says where it stands (elem_start); same text, same
 * element. (Empty when the root is not a mapping; none for a text with a
 * byte order mark.) With `known` as well (known[key][text] true for the
 * texts whose elements the caller has), an element of a mapping or a
 * sequence whose text is known is not built: the document holds `reused`
 * in its place (its text is in raws all the same).
 *
 * decode is this decoder run to the end. No recursion: the
 * open containers, and a map's key waiting for its value, live in the
 * decoder's environment table between steps (E[k] the k-th open
 * container, E[-k] its pending key), with the text, resolve and null. */
#define YSTEP_MT "luagate.yaml_c.decoder"
#define ENV 4 /* step_body's stack: 1 the decoder, RESOLVE, NULLV, ENV, 5 n */

struct ystep {
    struct ydec d;
    int live;      /* the parser is initialised */
    int record;    /* keep the texts of the top-level sequences' elements */
    int top_seq;   /* the container at depth 2 is such a sequence */
    int elem_open; /* an element of it (a container) is being read */
    int elem_i;    /* its index */
    size_t elem_from;                 /* its start (a character index) */
    char head[64];                    /* its key's head (elem_start) */
    size_t seq_col, cur_char, cur_byte; /* byte_at's cursor */
    int seq_flow, root_flow;
    /* With known texts (E.known[key][text], for the sequence E.known_cur),
     * a container element's events are kept (keep) until its end: when its
     * text is known, they are dropped and the element is E.reused; else
     * they are read again (replay) and the element is built. */
    int skip_ok;     /* the top-level sequence being read has known texts */
    int keeping;     /* its element's events are being kept */
    int kdepth;      /* open containers among them */
    int kplain;      /* none of them has an anchor, a tag or an alias */
    int replay;      /* the kept events are being read again */
    yaml_event_t *kept;
    size_t nkept, cap, rpos;
    int state;     /* 0 before the document, 1 in it, 2 root complete */
    int depth;     /* open containers */
    int has_root;
    unsigned char kind[MAX_DEPTH + 1]; /* 1: mapping, 0: sequence */
    unsigned char has_key[MAX_DEPTH + 1];
    int idx[MAX_DEPTH + 1];
};

static void drop_kept(struct ystep *s)
{
    for (size_t i = 0; i < s->nkept; i++)
        yaml_event_delete(&s->kept[i]);
    s->nkept = s->rpos = 0;
    s->replay = 0;
}

static void ystep_close(struct ystep *s)
{
    drop_kept(s);
    free(s->kept);
    s->kept = NULL;
    s->cap = 0;
    if (s->d.has_ev)
        yaml_event_delete(&s->d.ev);
    s->d.has_ev = 0;
    if (s->live)
        yaml_parser_delete(&s->d.parser);
    s->live = 0;
}

/* Puts the value on top of the stack into the innermost open container
 * (popping it); -1: a complex or merge key. */
static int ystep_attach(lua_State *L, struct ystep *s, int is_scalar, int plain_merge)
{
    int k = s->depth;
    lua_rawgeti(L, ENV, k); /* the container */
    lua_insert(L, -2);
    if (!s->kind[k]) {
        lua_rawseti(L, -2, s->idx[k]++);
    } else if (!s->has_key[k]) {
        if (!is_scalar || plain_merge)
            return -1;
        if (lua_rawequal(L, -1, NULLV)) { /* a null key is the string "null" */
            lua_pop(L, 1);
            lua_pushliteral(L, "null");
        }
        lua_rawseti(L, ENV, -k);
        s->has_key[k] = 1;
    } else {
        lua_rawgeti(L, ENV, -k);
        lua_insert(L, -2);
        lua_rawset(L, -3); /* a NaN key raises: the caller's pcall */
        lua_pushnil(L);
        lua_rawseti(L, ENV, -k);
        s->has_key[k] = 0;
    }
    lua_pop(L, 1);
    return 0;
}

/* The byte offset of libyaml's mark index `c` (it counts characters, a
 * CRLF two) in the UTF-8 text: a cursor that moves forward, as the marks
 * asked for do. */
static size_t byte_at(struct ystep *s, size_t c)
{
    const unsigned char *t = (const unsigned char *)s->d.text;
    if (c < s->cur_char)
        s->cur_char = s->cur_byte = 0;
    while (s->cur_char < c && s->cur_byte < s->d.len) {
        unsigned char b = t[s->cur_byte];
        s->cur_byte += b < 0xC0 ? 1 : b < 0xE0 ? 2 : b < 0xF0 ? 3 : 4;
        s->cur_char++;
    }
    return s->cur_byte < s->d.len ? s->cur_byte : s->d.len;
}

/* Recording: at the start of a value of the root mapping (its key pending
 * at E[-1]): raws[key] = a new table of texts when the value is a sequence,
 * else nil (a repeated key keeps its last value, as the document does). */
static void record_value(lua_State *L, struct ystep *s, const yaml_event_t *e)
{
    lua_getfield(L, ENV, "raws");
    lua_rawgeti(L, ENV, -1);
    if (e->type == YAML_SEQUENCE_START_EVENT) {
        lua_newtable(L);
        lua_pushvalue(L, -1);
        lua_setfield(L, ENV, "texts");
        s->top_seq = 1;
        s->seq_col = e->start_mark.column;
        s->seq_flow = e->data.sequence_start.style == YAML_FLOW_SEQUENCE_STYLE;
        lua_getfield(L, ENV, "known");
        if (lua_istable(L, -1)) {
            lua_pushvalue(L, -3); /* the key */
            lua_rawget(L, -2);
            lua_remove(L, -2);
        }
        s->skip_ok = lua_istable(L, -1);
        lua_setfield(L, ENV, "known_cur");
    } else {
        lua_pushnil(L);
    }
    lua_rawset(L, -3); /* a NaN key raises: the caller's pcall */
    lua_pop(L, 1);
}

/* Recording: an element of a top-level sequence starts (event e). Its
 * text will be the key of what it gives: the same text at the same place
 * gives the same value. So the key's head is the styles of the root
 * mapping and the sequence (block or flow), the column of the sequence's
 * "-" indicators (a block scalar's indentation is counted from it) and the
 * element's start column; then the text from the element's first event to
 * its last (for a block collection, up to the next token: trailing
 * comments and blank lines are in, which only makes texts differ). */
static void elem_start(struct ystep *s, const yaml_event_t *e, int i)
{
    s->elem_from = e->start_mark.index;
    s->elem_i = i;
    snprintf(s->head, sizeof(s->head), "%c%c%zu:%zu:", s->root_flow ? 'f' : 'b',
             s->seq_flow ? 'f' : 'b', s->seq_col, e->start_mark.column);
}

/* Recording: the element that elem_start saw ends at mark index `to`:
 * texts[i] = its key, left on the stack. */
static void elem_end(lua_State *L, struct ystep *s, size_t to)
{
    size_t a = byte_at(s, s->elem_from), b = byte_at(s, to);
    luaL_Buffer buf;
    lua_getfield(L, ENV, "texts");
    luaL_buffinit(L, &buf);
    luaL_addstring(&buf, s->head);
    if (b > a)
        luaL_addlstring(&buf, s->d.text + a, b - a);
    luaL_pushresult(&buf);
    lua_pushvalue(L, -1);
    lua_rawseti(L, -3, s->elem_i);
    lua_remove(L, -2);
}

static int ystep_attach(lua_State *L, struct ystep *s, int is_scalar, int plain_merge);

/* Keeps the parser's event (the decoder's own now), an event of a
 * container element of a sequence with known texts; at the element's end,
 * drops them and attaches E.reused when its text is known, else starts
 * their replay. -1 when out of memory. */
static int keep(lua_State *L, struct ystep *s)
{
    if (s->nkept == s->cap) {
        size_t cap = s->cap ? s->cap * 2 : 256;
        yaml_event_t *k = realloc(s->kept, cap * sizeof(*k));
        if (!k)
            return -1;
        s->kept = k;
        s->cap = cap;
    }
    yaml_event_t *e = &s->kept[s->nkept++];
    *e = s->d.ev;
    s->d.has_ev = 0;
    switch (e->type) {
    case YAML_SEQUENCE_START_EVENT:
    case YAML_MAPPING_START_EVENT:
        if (s->kdepth++ == 0) {
            elem_start(s, e, s->idx[2]);
            s->keeping = s->kplain = 1;
        }
        if (e->type == YAML_MAPPING_START_EVENT
                ? (e->data.mapping_start.anchor || e->data.mapping_start.tag)
                : (e->data.sequence_start.anchor || e->data.sequence_start.tag))
            s->kplain = 0;
        break;
    case YAML_SEQUENCE_END_EVENT:
    case YAML_MAPPING_END_EVENT:
        s->kdepth--;
        break;
    case YAML_SCALAR_EVENT:
        if (e->data.scalar.anchor || e->data.scalar.tag)
            s->kplain = 0;
        break;
    default: /* an alias: the replay refuses it */
        s->kplain = 0;
        break;
    }
    if (s->kdepth > 0)
        return 0;
    s->keeping = 0;
    elem_end(L, s, e->end_mark.index);
    lua_getfield(L, ENV, "known_cur");
    lua_insert(L, -2);
    lua_rawget(L, -2);
    int known = lua_toboolean(L, -1);
    lua_pop(L, 2);
    if (!(known && s->kplain)) {
        s->replay = 1; /* (the text is in raws already) */
        return 0;
    }
    drop_kept(s);
    lua_getfield(L, ENV, "reused");
    return ystep_attach(L, s, 0, 0);
}

/* Under lua_pcall: up to n events; pushes true (more), the document, or
 * nothing on a failure. */
static int step_body(lua_State *L)
{
    struct ystep *s = lua_touserdata(L, 1);
    int n = (int)lua_tointeger(L, 2);
    struct ydec *d = &s->d;
    lua_settop(L, 1);
    lua_getfenv(L, 1);
    lua_getfield(L, -1, "resolve"); /* 3 */
    lua_getfield(L, -2, "null");    /* 4 */
    lua_insert(L, 2);               /* 1 dec, 2 null, 3 env, 4 resolve */
    lua_insert(L, 2);               /* 1 dec, 2 resolve, 3 null, 4 env */
    if (!lua_checkstack(L, 24)) /* (elem_end's luaL_Buffer takes up to 11) */
        return 0;
    for (int i = 0; i < n; i++) {
        const yaml_event_t *e;
        if (s->replay && s->rpos == s->nkept)
            drop_kept(s); /* (the last one was read) */
        if (s->replay) {
            e = &s->kept[s->rpos++];
        } else {
            if (next(d) != 0)
                return 0;
            e = &d->ev;
            if (s->keeping ||
                (s->skip_ok && s->top_seq && s->depth == 2 &&
                 (e->type == YAML_MAPPING_START_EVENT || e->type == YAML_SEQUENCE_START_EVENT))) {
                if (keep(L, s) != 0)
                    return 0;
                continue;
            }
        }
        switch (e->type) {
        case YAML_STREAM_START_EVENT:
            continue;
        case YAML_STREAM_END_EVENT:
            if (s->state != 0)
                return 0;
            lua_pushvalue(L, NULLV); /* no document */
            return 1;
        case YAML_DOCUMENT_START_EVENT:
            if (s->state != 0)
                return 0;
            s->state = 1;
            continue;
        case YAML_DOCUMENT_END_EVENT:
            if (s->state == 1 && s->has_root == 0) {
                lua_pushvalue(L, NULLV); /* an empty document */
                return 1;
            }
            if (s->state != 2)
                return 0;
            lua_getfield(L, ENV, "root"); /* only the first document is read */
            return 1;
        case YAML_SCALAR_EVENT: {
            if (s->state != 1)
                return 0;
            int merge = e->data.scalar.style == YAML_PLAIN_SCALAR_STYLE &&
                        e->data.scalar.length == 2 &&
                        memcmp(e->data.scalar.value, "<<", 2) == 0;
            if (s->record && s->depth == 1 && s->kind[1] && s->has_key[1])
                record_value(L, s, e);
            if (s->top_seq && s->depth == 2) {
                elem_start(s, e, s->idx[2]);
                elem_end(L, s, e->end_mark.index);
                lua_pop(L, 1);
            }
            if (push_scalar(L, e) != 0)
                return 0;
            if (s->depth == 0) {
                lua_setfield(L, ENV, "root");
                s->has_root = 1;
                s->state = 2;
            } else if (ystep_attach(L, s, 1, merge) != 0) {
                return 0;
            }
            continue;
        }
        case YAML_SEQUENCE_START_EVENT:
        case YAML_MAPPING_START_EVENT: {
            int map = e->type == YAML_MAPPING_START_EVENT;
            if (s->state != 1 || s->depth >= MAX_DEPTH ||
                (map ? (e->data.mapping_start.anchor || e->data.mapping_start.tag)
                     : (e->data.sequence_start.anchor || e->data.sequence_start.tag)))
                return 0;
            if (s->record) {
                if (s->depth == 0) {
                    s->root_flow = map && e->data.mapping_start.style == YAML_FLOW_MAPPING_STYLE;
                } else if (s->depth == 1 && s->kind[1] && s->has_key[1]) {
                    record_value(L, s, e);
                } else if (s->top_seq && s->depth == 2 && !s->replay) {
                    elem_start(s, e, s->idx[2]);
                    s->elem_open = 1;
                }
            }
            lua_newtable(L);
            if (s->depth == 0) {
                lua_pushvalue(L, -1);
                lua_setfield(L, ENV, "root");
                s->has_root = 1;
            } else {
                lua_pushvalue(L, -1);
                if (ystep_attach(L, s, 0, 0) != 0)
                    return 0; /* a complex key */
            }
            int k = ++s->depth;
            lua_rawseti(L, ENV, k);
            s->kind[k] = (unsigned char)map;
            s->has_key[k] = 0;
            s->idx[k] = 1;
            continue;
        }
        case YAML_SEQUENCE_END_EVENT:
        case YAML_MAPPING_END_EVENT:
            if (s->depth == 0)
                return 0;
            if (s->top_seq && s->depth == 3 && s->elem_open) {
                elem_end(L, s, e->end_mark.index);
                lua_pop(L, 1);
                s->elem_open = 0;
            } else if (s->top_seq && s->depth == 2) {
                s->top_seq = s->skip_ok = 0;
            }
            lua_pushnil(L);
            lua_rawseti(L, ENV, s->depth);
            if (--s->depth == 0)
                s->state = 2;
            continue;
        default: /* an alias */
            return 0;
        }
    }
    lua_pushboolean(L, 1);
    return 1;
}

static int ystep_step(lua_State *L)
{
    struct ystep *s = luaL_checkudata(L, 1, YSTEP_MT);
    lua_Integer n = luaL_optinteger(L, 2, 1000);
    if (!s->live)
        return 0;
    lua_pushcfunction(L, step_body);
    lua_pushvalue(L, 1);
    lua_pushinteger(L, n > 0 ? n : 1);
    int rc = lua_pcall(L, 2, 1, 0); /* a resolver's error or a NaN key: the Lua reader */
    if (rc != 0 || lua_isnil(L, -1)) {
        ystep_close(s);
        return 0;
    }
    if (lua_type(L, -1) == LUA_TBOOLEAN && lua_toboolean(L, -1))
        return 1;
    ystep_close(s); /* the document */
    if (!s->record)
        return 1;
    lua_getfenv(L, 1);
    lua_getfield(L, -1, "raws");
    lua_remove(L, -2);
    return 2;
}

static int ystep_gc(lua_State *L)
{
    ystep_close(luaL_checkudata(L, 1, YSTEP_MT));
    return 0;
}

static int decoder(lua_State *L)
{
    luaL_checkstring(L, 1);
    luaL_checktype(L, 2, LUA_TFUNCTION);
    luaL_checkany(L, 3);
    int nargs = lua_gettop(L);
    int record = nargs >= 4 && lua_toboolean(L, 4);
    int known = record && nargs >= 5 && lua_istable(L, 5);
    struct ystep *s = lua_newuserdata(L, sizeof(*s));
    memset(s, 0, sizeof(*s));
    luaL_getmetatable(L, YSTEP_MT);
    lua_setmetatable(L, -2);
    lua_createtable(L, 8, 4);
    lua_pushvalue(L, 1);
    lua_setfield(L, -2, "text"); /* the parser reads it in place */
    lua_pushvalue(L, 2);
    lua_setfield(L, -2, "resolve");
    lua_pushvalue(L, 3);
    lua_setfield(L, -2, "null");
    size_t len;
    const char *text = lua_tolstring(L, 1, &len);
    /* (a byte order mark, or UTF-16: no texts; the marks count characters
     * from after the mark) */
    const unsigned char *u = (const unsigned char *)text;
    s->record = record &&
                !(len >= 2 && ((u[0] == 0xFE && u[1] == 0xFF) || (u[0] == 0xFF && u[1] == 0xFE) ||
                               (len >= 3 && u[0] == 0xEF && u[1] == 0xBB && u[2] == 0xBF)));
    if (s->record) {
        lua_newtable(L);
        lua_setfield(L, -2, "raws");
        if (known) {
            lua_pushvalue(L, 5);
            lua_setfield(L, -2, "known");
            lua_pushvalue(L, 6);
            lua_setfield(L, -2, "reused");
        }
    }
    lua_setfenv(L, -2);
    if (!yaml_parser_initialize(&s->d.parser))
        return 0;
    s->live = 1;
    s->d.text = text;
    s->d.len = len;
    yaml_parser_set_input_string(&s->d.parser, (const unsigned char *)text, len);
    return 1;
}

/* decode(text, resolve, null): the whole document at once, or nothing (the
 * Lua reader's turn): the stepped decoder, run to the end. */
static int decode(lua_State *L)
{
    lua_settop(L, 3);
    if (decoder(L) == 0)
        return 0;
    lua_replace(L, 1); /* the decoder keeps the text */
    lua_pushinteger(L, INT_MAX);
    lua_replace(L, 2);
    lua_settop(L, 2);
    return ystep_step(L);
}

int luaopen_luagate_yaml_c(lua_State *L)
{
    if (luaL_newmetatable(L, YSTEP_MT)) {
        lua_pushcfunction(L, ystep_gc);
        lua_setfield(L, -2, "__gc");
        lua_newtable(L);
        lua_pushcfunction(L, ystep_step);
        lua_setfield(L, -2, "step");
        lua_setfield(L, -2, "__index");
    }
    lua_pop(L, 1);
    lua_newtable(L);
    lua_pushcfunction(L, decode);
    lua_setfield(L, -2, "decode");
    lua_pushcfunction(L, decoder);
    lua_setfield(L, -2, "decoder");
    return 1;
}
