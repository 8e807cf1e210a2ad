/* Redis for plugin code (lua/luagate/redis.lua): hiredis's async API on the
 * worker's libev loop. One multiplexed connection per key
 * (host:port:db:user...), made on first use, AUTH and SELECT queued first,
 * dropped when it fails (the next command reconnects). */
#ifndef GW_REDIS_H
#define GW_REDIS_H

#include <stddef.h>

struct gw_lctx;

/* Sends ncmds commands (command i has argc[i] arguments, taken in order from
 * argv/argvlen) on the connection of key, made to ip:port (an IP address:
 * see gw_ffi_redis_resolve) with AUTH [user] password when password is not
 * NULL, then SELECT db when db > 0. GW_AGAIN: the coroutine waits and is
 * resumed with (replies, err): replies is a table of the ncmds converted
 * replies (string, number, cjson.null light userdata, table; an error reply
 * is {false, "ERR ..."}) or nil when err ("timeout", a connection error)
 * tells why the whole exchange failed. GW_ERROR with *err (static until the
 * next call): the connection could not be made.
 * A timeout closes the connection: the replies still due on it will not
 * come. flags GW_REDIS_DEDICATED: a connection of its own, closed after the
 * reply (blocking commands such as BLPOP must not hold the shared one). */
#define GW_REDIS_DEDICATED 1
int gw_ffi_redis_exec(struct gw_lctx *x, const char *key, const char *ip, int port,
                      const char *user, const char *password, int db, int ncmds,
                      const int *argc, const char **argv, const size_t *argvlen, int timeout_ms,
                      int flags, const char **err);

/* Resolves host to an IP address written to ip (NUL-terminated). GW_OK;
 * GW_AGAIN: wait (resumed with no value), then call again; GW_ERROR. */
int gw_ffi_redis_resolve(struct gw_lctx *x, const char *host, char *ip, size_t iplen,
                         const char **err);

/* Live connections of the worker. */
int gw_ffi_redis_conn_count(void);

#endif
