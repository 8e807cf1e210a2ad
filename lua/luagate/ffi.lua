-- The FFI boundary on the Lua side: the cdefs of runtime/include/gw/ffi.h
-- (the one place they are declared), the status codes, and out-parameter
-- cdata shared by the PDK so that hot calls allocate nothing.
--
--   local gw = require "luagate.ffi"
--   local C = gw.C
--   if C.gw_ffi_req_method(r.ptr, gw.str_p, gw.len_p) == gw.OK then
--     local method = ffi.string(gw.str_p[0], gw.len_p[0])
--   end
--
-- The shared out-parameters are safe because nothing re-enters between an
-- FFI call and the copy of its results (ffi.string / tonumber): the caller
-- reads them at once. `gw.available` is false when the gw_ffi_* symbols are
-- not in the process (unit specs run by plain luajit): the declarations are
-- still made, only calling them would fail.
--
-- The helper modules' own cdefs (luagate.ngx.cdefs: PCRE2, libcrypto, zlib;
-- luagate.shdict) are loaded here too, each under pcall, so that requiring
-- this file gives the whole boundary.

local ffi = require "ffi"

local pcall = pcall
local ffi_cdef = ffi.cdef
local ffi_new = ffi.new

local DECLS = [[
struct gw_req;
struct gw_lctx;

int gw_ffi_req_method(struct gw_req *r, const char **p, size_t *n);
int gw_ffi_req_raw_path(struct gw_req *r, const char **p, size_t *n);
int gw_ffi_req_path(struct gw_req *r, const char **p, size_t *n);
int gw_ffi_req_query(struct gw_req *r, const char **p, size_t *n);
int gw_ffi_req_http_version(struct gw_req *r, double *v);
int gw_ffi_req_id(struct gw_req *r, const char **p, size_t *n);
double gw_ffi_req_start_time(struct gw_req *r);
int gw_ffi_req_client(struct gw_req *r, const char **ip, size_t *iplen,
                      int *port);
int gw_ffi_req_server_port(struct gw_req *r);
int gw_ffi_req_tls(struct gw_req *r);
int gw_ffi_tls_var(struct gw_req *r, int which, const char **p, size_t *n);
int gw_ffi_tls_client_chain(struct gw_req *r, const char **p, size_t *n);
int gw_ffi_tls_client_info(struct gw_req *r, const char **p, size_t *n);
void *gw_ffi_tls_store_new(const char *pem, size_t n, const char **err);
void gw_ffi_tls_store_free(void *store);
int gw_ffi_tls_verify_client(struct gw_req *r, void *store, int depth,
                             int flags, const char **err);
int gw_ffi_req_header(struct gw_req *r, const char *name, size_t nlen,
                      int idx, const char **p, size_t *n);
int gw_ffi_req_header_count(struct gw_req *r);
int gw_ffi_req_header_at(struct gw_req *r, int i, const char **name,
                         size_t *nlen, const char **value, size_t *vlen);
int gw_ffi_req_route(struct gw_req *r);
int gw_ffi_req_capture_count(struct gw_req *r);
int gw_ffi_req_capture(struct gw_req *r, int i, const char **p, size_t *n);
const char *gw_ffi_req_capture_name(struct gw_req *r, int i);
int gw_ffi_req_read_body(struct gw_req *r, const char **err);
int gw_ffi_req_body(struct gw_req *r, const char **p, size_t *n);

int gw_ffi_upstream_header(struct gw_req *r, int op, const char *name,
                           size_t nlen, const char *value, size_t vlen,
                           const char **err);
struct gw_hops;
struct gw_hops *gw_ffi_hops_new(const char *p, size_t len, const char **err);
void gw_ffi_hops_free(struct gw_hops *o);
int gw_ffi_hops_slots(const struct gw_hops *o);
int gw_ffi_upstream_set_hops(struct gw_req *r, const struct gw_hops *o,
                             const int64_t *ints, const char **err);
int gw_ffi_upstream_path(struct gw_req *r, const char *p, size_t n,
                         const char **err);
int gw_ffi_upstream_query(struct gw_req *r, const char *p, size_t n,
                          const char **err);
int gw_ffi_upstream_method(struct gw_req *r, const char *p, size_t n,
                           const char **err);
int gw_ffi_upstream_scheme(struct gw_req *r, const char *p, size_t n,
                           const char **err);
int gw_ffi_upstream_body(struct gw_req *r, const char *p, size_t n,
                         const char **err);
int gw_ffi_upstream_target(struct gw_req *r, const char *host, size_t hlen,
                           int port, const char **err);
int gw_ffi_upstream_timeouts(struct gw_req *r, int connect_ms, int write_ms,
                             int read_ms);
int gw_ffi_upstream_status(struct gw_req *r);
int gw_ffi_upstream_uri(struct gw_req *r, const char **p, size_t *n);
int gw_ffi_req_set_consumer(struct gw_req *r, const char *id, size_t len);
int gw_ffi_metrics_consumers(void);
int gw_ffi_req_set_consumer_name(struct gw_req *r, const char *name,
                                 size_t len);
int gw_ffi_req_target(struct gw_req *r, const char **p, size_t *n);
int gw_ffi_req_server_addr(struct gw_req *r, const char **p, size_t *n);
int gw_ffi_upstream_xfwd(struct gw_req *r, int which, const char *v, size_t n,
                         const char **err);
int gw_ffi_health_set(const char *key, int unhealthy);
int gw_ffi_health_get(const char *key);
int gw_ffi_resp_compress(struct gw_req *r, int allow_br, int gzip_level,
                         int br_level, const char **err);

int gw_ffi_resp_status(struct gw_req *r);
int gw_ffi_resp_set_status(struct gw_req *r, int status, const char **err);
int gw_ffi_resp_header(struct gw_req *r, const char *name, size_t nlen,
                       int idx, const char **p, size_t *n);
int gw_ffi_resp_header_count(struct gw_req *r);
int gw_ffi_resp_header_at(struct gw_req *r, int i, const char **name,
                          size_t *nlen, const char **value, size_t *vlen);
int gw_ffi_resp_set_header(struct gw_req *r, int op, const char *name,
                           size_t nlen, const char *value, size_t vlen,
                           const char **err);
int gw_ffi_resp_set_header_int(struct gw_req *r, int op, const char *name,
                               size_t nlen, int64_t value, const char **err);
int gw_ffi_resp_set_hops(struct gw_req *r, const struct gw_hops *o,
                         const int64_t *ints, const char **err);
int gw_ffi_resp_set_packed(struct gw_req *r, const char *p, size_t len,
                           const char **err);
int gw_ffi_upstream_resp_header(struct gw_req *r, const char *name,
                                size_t nlen, int idx, const char **p,
                                size_t *n);
int gw_ffi_upstream_resp_header_count(struct gw_req *r);
int gw_ffi_upstream_resp_header_at(struct gw_req *r, int i,
                                   const char **name, size_t *nlen,
                                   const char **value, size_t *vlen);
const char *gw_ffi_resp_source(struct gw_req *r);
int gw_ffi_req_skip_phases(struct gw_req *r, int mask);
struct gw_memo_dep {
  struct gw_shdict *dict;
  const char *key;
  size_t klen;
  uint32_t ver;
  int64_t expires;
};
struct gw_memo_args {
  double deadline;
  double age_origin;
  int has_age;
  const char *hnames;
  size_t hnames_len;
  const struct gw_memo_dep *deps;
  int ndeps;
};
int gw_ffi_memo_store(struct gw_req *r, const struct gw_memo_args *a,
                      const char **err);
struct gw_guard_key {
  const char *key;
  size_t klen;
  int present;
  uint32_t ver;
};
struct gw_guard_args {
  struct gw_shdict *dict;
  const struct gw_guard_key *keys;
  int nkeys;
  const uint8_t *statuses;
};
int gw_ffi_guard_set(struct gw_req *r, const struct gw_guard_args *a,
                     const char **err);
int gw_ffi_admin_answer(double token, int status, const char *ctype,
                        const char *body, size_t len);
int gw_ffi_req_grpc(struct gw_req *r);
int gw_ffi_resp_grpc_status(struct gw_req *r);
int gw_ffi_resp_grpc(struct gw_req *r);
int gw_ffi_grpc_status_of(int http_status);
const char *gw_ffi_grpc_status_name(int code);
int gw_ffi_resp_exit(struct gw_req *r, int status, const char *body,
                     size_t len, const char **err);
int gw_ffi_resp_reset_headers(struct gw_req *r);
int gw_ffi_resp_body(struct gw_req *r, const char **p, size_t *n);
int gw_ffi_resp_set_body(struct gw_req *r, const char *p, size_t n,
                         const char **err);
int gw_ffi_resp_chunk(struct gw_req *r, const char **p, size_t *n, int *eof);
int gw_ffi_resp_set_chunk(struct gw_req *r, const char *p, size_t n,
                          int eof, const char **err);

int gw_ffi_log_info(struct gw_req *r, double *latency_total,
                    double *latency_upstream, double *latency_gateway,
                    uint64_t *bytes_in, uint64_t *bytes_out, int *tries);

double gw_ffi_now(void);
double gw_ffi_update_time(void);
double gw_ffi_monotonic(void);
int gw_ffi_worker_id(void);
int gw_ffi_worker_count(void);
int gw_ffi_worker_pid(void);
void gw_ffi_log(int level, const char *msg, size_t len);
int gw_ffi_log_level(void);

int gw_ffi_sleep(struct gw_lctx *x, double seconds);
double gw_ffi_park(struct gw_lctx *x, double seconds);
int gw_ffi_unpark(double ticket);
int gw_ffi_timer_at(double delay, int64_t job, const char **err);
int gw_ffi_timers_pending(void);
int gw_ffi_exiting(void);
]]

-- libc, for kong.node.get_hostname
local LIBC_DECLS = [[
int gethostname(char *name, size_t len);
int getpid(void);
]]

pcall(ffi_cdef, DECLS)
pcall(ffi_cdef, LIBC_DECLS)

-- the helper modules keep their declarations with them; load them so that
-- this file is the whole boundary (each may be missing in a unit run)
pcall(require, "luagate.ngx.cdefs")
pcall(require, "luagate.io_cdefs")


local C = ffi.C

local available = pcall(function()
  return C.gw_ffi_now
end)


local _M = {
  C = C,
  available = available,

  -- status codes (runtime/include/gw/core-t.h)
  OK = 0,
  ERROR = -1,
  AGAIN = -2,
  DONE = -4,
  DECLINED = -5,

  -- gw_ffi_*_header operations
  HDR_SET = 0,
  HDR_ADD = 1,
  HDR_CLEAR = 2,
  HDR_SET_ABSENT = 3, -- prepared lists only (gw_ffi_hops_new)
  HDR_NAME_OK = 16, -- or'ed into the op: a name the runtime accepted before
  HDR_SLOT = 32, -- or'ed into an op of gw_ffi_hops_new: an integer slot

  -- enum gw_log_level (runtime/include/gw/log.h), nginx's numbers
  LOG_EMERG = 1,
  LOG_ALERT = 2,
  LOG_CRIT = 3,
  LOG_ERR = 4,
  LOG_WARN = 5,
  LOG_NOTICE = 6,
  LOG_INFO = 7,
  LOG_DEBUG = 8,

  -- shared out-parameters; read them right after the call
  str_p = ffi_new("const char *[1]"),
  len_p = ffi_new("size_t[1]"),
  str2_p = ffi_new("const char *[1]"),
  len2_p = ffi_new("size_t[1]"),
  err_p = ffi_new("const char *[1]"),
  int_p = ffi_new("int[1]"),
  dbl_p = ffi_new("double[1]"),
  -- gw_ffi_log_info
  dbl3 = ffi_new("double[3]"),
  u64_2 = ffi_new("uint64_t[2]"),
}

_M.GW_OK = _M.OK
_M.GW_ERROR = _M.ERROR
_M.GW_AGAIN = _M.AGAIN
_M.GW_DONE = _M.DONE
_M.GW_DECLINED = _M.DECLINED
_M.GW_HDR_SET = _M.HDR_SET
_M.GW_HDR_ADD = _M.HDR_ADD
_M.GW_HDR_CLEAR = _M.HDR_CLEAR

_M.decls = DECLS


-- The static error text an FFI call left in err_p, or `default`.
function _M.errmsg(default)
  local e = _M.err_p[0]
  if e ~= nil then
    return ffi.string(e)
  end
  return default or "unknown error"
end


return _M
