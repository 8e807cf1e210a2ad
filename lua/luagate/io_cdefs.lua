-- The cdefs of the I/O modules (runtime/include/gw/cosocket.h and
-- gw/redis.h), loaded by luagate.socket and luagate.redis. They belong in
-- luagate.ffi (the one file of cdefs): until they move there, they are
-- declared here, each block under pcall so that a second declaration does
-- not fail.

local ffi = require "ffi"

local pcall = pcall

local COSOCKET = [[
struct gw_lctx;
int gw_ffi_sock_open(struct gw_lctx *x, const char **err);
int gw_ffi_sock_connect(struct gw_lctx *x, int id, const char *host,
                        int port, const char *key, int timeout_ms,
                        int *reused, const char **err);
int gw_ffi_sock_send(struct gw_lctx *x, int id, const char *p, size_t n,
                     int timeout_ms, const char **err);
int gw_ffi_sock_recv(struct gw_lctx *x, int id, size_t max, int timeout_ms,
                     const char **p, size_t *n, const char **err);
int gw_ffi_sock_wait(struct gw_lctx *x, const int *ids, int n, int *id,
                     const char **err);
int gw_ffi_sock_close(int id);
int gw_ffi_sock_keepalive(int id, int timeout_ms, int pool_size,
                          const char **err);
int gw_ffi_sock_pool_count(void);
struct gw_tls_client_sess;
int gw_ffi_sock_sslhandshake(struct gw_lctx *x, int id,
                             struct gw_tls_client_sess *sess,
                             const char *server_name, int verify,
                             int status_req, int timeout_ms, int *reused,
                             const char **err);
struct gw_tls_client_sess *gw_ffi_sock_ssl_session(int id);
void gw_ffi_ssl_session_free(struct gw_tls_client_sess *sess);
]]

local REDIS = [[
struct gw_lctx;
int gw_ffi_redis_exec(struct gw_lctx *x, const char *key, const char *host,
                      int port, const char *user, const char *password,
                      int db, int ncmds, const int *argc, const char **argv,
                      const size_t *argvlen, int timeout_ms, int flags,
                      const char **err);
int gw_ffi_redis_resolve(struct gw_lctx *x, const char *host, char *ip,
                         size_t iplen, const char **err);
int gw_ffi_redis_conn_count(void);
]]

local LIBC = [[
void *memchr(const void *s, int c, size_t n);
void *memmem(const void *h, size_t hn, const void *n, size_t nn);
]]

pcall(ffi.cdef, COSOCKET)
pcall(ffi.cdef, REDIS)
pcall(ffi.cdef, LIBC)

return {
  COSOCKET = COSOCKET,
  REDIS = REDIS,
}
