-- ngx.shared: shared-memory dictionaries visible to every worker.
--
-- `require("luagate.shdict")` returns the table a worker installs as
-- `ngx.shared`: `shared.<name>` is the dictionary created by the master
-- (gw_shdict_create) under that name, or nil. Dictionary objects are cached
-- and their methods follow lua-nginx-module's ngx.shared.DICT (with
-- lua-resty-core's return values); see docs/shared-dict.md.
--
-- The C side is runtime/src/shdict.c, reached through the FFI: ffi.C inside
-- the luagate binary, else the library named by LUAGATE_SHDICT_LIB or
-- build/test/libgwshdict.so (unit specs; runtime/test/shdict_run.sh builds it).

local ffi = require("ffi")

local ffi_new = ffi.new
local ffi_str = ffi.string
local ffi_cast = ffi.cast
local type = type
local tostring = tostring
local tonumber = tonumber
local error = error
local setmetatable = setmetatable
local rawset = rawset
local getenv = os.getenv

local ok_new_tab, new_tab = pcall(require, "table.new")
if not ok_new_tab then
  new_tab = function() return {} end
end


pcall(ffi.cdef, [[
  struct gw_shdict;
  struct gw_shdict *gw_ffi_shdict_find(const char *name, size_t len);
  void gw_ffi_shdict_free(void *p);
  int gw_ffi_shdict_get(struct gw_shdict *d, const char *key, size_t klen,
                        int *type, char **buf, size_t *len, double *num,
                        uint32_t *flags, int get_stale, int *stale,
                        const char **err);
  int gw_ffi_shdict_store(struct gw_shdict *d, int op, const char *key,
                          size_t klen, int type, const char *str, size_t len,
                          double num, double exptime, uint32_t flags,
                          int *forcible, const char **err);
  int gw_ffi_shdict_incr(struct gw_shdict *d, const char *key, size_t klen,
                         double by, int has_init, double init,
                         double init_ttl, double *out, int *forcible,
                         const char **err);
  int gw_ffi_shdict_flush_all(struct gw_shdict *d);
  int gw_ffi_shdict_flush_expired(struct gw_shdict *d, int max, int *n);
  int gw_ffi_shdict_get_keys(struct gw_shdict *d, int max, char **out,
                             size_t *outlen, int *n);
  int gw_ffi_shdict_ttl(struct gw_shdict *d, const char *key, size_t klen,
                        int64_t *ttl_ms, const char **err);
  int gw_ffi_shdict_expire(struct gw_shdict *d, const char *key, size_t klen,
                           double exptime, const char **err);
  int gw_ffi_shdict_stamp(struct gw_shdict *d, const char *key, size_t klen,
                          uint32_t *ver, int64_t *expires, const char **err);
  size_t gw_ffi_shdict_capacity(struct gw_shdict *d);
  size_t gw_ffi_shdict_free_space(struct gw_shdict *d);
  int gw_ffi_shdict_push(struct gw_shdict *d, int right, const char *key,
                         size_t klen, int type, const char *str, size_t len,
                         double num, size_t *out_len, const char **err);
  int gw_ffi_shdict_pop(struct gw_shdict *d, int right, const char *key,
                        size_t klen, int *type, char **buf, size_t *len,
                        double *num, const char **err);
  int gw_ffi_shdict_llen(struct gw_shdict *d, const char *key, size_t klen,
                         size_t *out_len, const char **err);
]])


local C
do
  local in_process = pcall(function()
    return ffi.C.gw_ffi_shdict_find
  end)
  if in_process then
    C = ffi.C
  else
    local path = getenv("LUAGATE_SHDICT_LIB") or "build/test/libgwshdict.so"
    local ok, lib = pcall(ffi.load, path)
    if not ok then
      error("luagate.shdict: the gw_ffi_shdict_* functions are not in this "
            .. "process and " .. path .. " does not load (build it with "
            .. "runtime/test/shdict_run.sh --lib): " .. tostring(lib), 2)
    end
    C = lib
  end
end


local OK = 0
local DEFAULT_MAX_KEYS = 1024
local MAX_KEY_LEN = 65535

-- value types (Lua's type tags) and store operations, as in shdict-t.h
local T_NIL = 0
local T_BOOLEAN = 1
local T_NUMBER = 3
local T_STRING = 4

local OP_SET = 0
local OP_ADD = 1
local OP_REPLACE = 2
local OP_SAFE_SET = 3
local OP_SAFE_ADD = 4

-- reusable out-parameters: one worker = one thread, and no call yields
local type_out = ffi_new("int[1]")
local stale_out = ffi_new("int[1]")
local forcible_out = ffi_new("int[1]")
local n_out = ffi_new("int[1]")
local num_out = ffi_new("double[1]")
local flags_out = ffi_new("uint32_t[1]")
local size_out = ffi_new("size_t[1]")
local ttl_out = ffi_new("int64_t[1]")
local ver_out = ffi_new("uint32_t[1]")
local err_out = ffi_new("const char *[1]")
local buf_out = ffi_new("char *[1]")
local u8p = ffi.typeof("const uint8_t *")

-- value buffer: strings up to its size are copied here; longer ones come
-- back malloc()ed, and the buffer then grows (up to MAX_VALBUF) so that a
-- dictionary of large values stops allocating
local MAX_VALBUF = 64 * 1024
local valbuf_size = 4096
local valbuf = ffi_new("char[?]", valbuf_size)
local valbuf_ptr = ffi_cast("char *", valbuf)


-- Makes a Lua string of the value a get/pop left in buf_out/size_out.
local function take_string()
  local buf = buf_out[0]
  local len = tonumber(size_out[0])
  local s = ffi_str(buf, len)
  if buf ~= valbuf_ptr then
    C.gw_ffi_shdict_free(buf)
    if len <= MAX_VALBUF then
      local size = valbuf_size
      while size < len do
        size = size * 2
      end
      valbuf_size = size
      valbuf = ffi_new("char[?]", size)
      valbuf_ptr = ffi_cast("char *", valbuf)
    end
  end
  return s
end


local function check_zone(self)
  local zone = type(self) == "table" and self[1]
  if type(zone) ~= "cdata" then
    error("bad \"zone\" argument", 3)
  end
  return zone
end


-- Returns key, length or nil, error message.
local function check_key(key)
  if key == nil then
    return nil, "nil key"
  end
  if type(key) ~= "string" then
    key = tostring(key)
  end
  local len = #key
  if len == 0 then
    return nil, "empty key"
  end
  if len > MAX_KEY_LEN then
    return nil, "key too long"
  end
  return key, len
end


local dict = {}
local dict_mt = { __index = dict }


local function get(self, key, stale)
  local zone = check_zone(self)
  local k, klen = check_key(key)
  if not k then
    return nil, klen
  end
  buf_out[0] = valbuf_ptr
  size_out[0] = valbuf_size
  local rc = C.gw_ffi_shdict_get(zone, k, klen, type_out, buf_out, size_out,
                                 num_out, flags_out, stale and 1 or 0,
                                 stale_out, err_out)
  if rc ~= OK then
    return nil, ffi_str(err_out[0])
  end
  local typ = type_out[0]
  local val
  if typ == T_STRING then
    val = take_string()
  elseif typ == T_NUMBER then
    val = num_out[0]
  elseif typ == T_BOOLEAN then
    val = num_out[0] ~= 0
  else
    return nil
  end
  local flags = flags_out[0]
  if stale then
    if flags ~= 0 then
      return val, flags, stale_out[0] == 1
    end
    return val, nil, stale_out[0] == 1
  end
  if flags ~= 0 then
    return val, flags
  end
  return val
end


-- value, flags = dict:get(key)
function dict.get(self, key)
  return get(self, key, false)
end


-- value, flags, stale = dict:get_stale(key)
function dict.get_stale(self, key)
  return get(self, key, true)
end


local function store(self, op, key, value, exptime, flags)
  local zone = check_zone(self)
  if not exptime then
    exptime = 0
  elseif type(exptime) ~= "number" or exptime < 0 then
    error("bad \"exptime\" argument", 3)
  end
  if not flags then
    flags = 0
  elseif type(flags) ~= "number" then
    error("bad \"flags\" argument", 3)
  end
  local k, klen = check_key(key)
  if not k then
    return nil, klen
  end

  local typ, str, len, num
  local vt = type(value)
  if vt == "string" then
    typ, str, len, num = T_STRING, value, #value, 0
  elseif vt == "number" then
    typ, str, len, num = T_NUMBER, nil, 0, value
  elseif value == nil then
    typ, str, len, num = T_NIL, nil, 0, 0
  elseif vt == "boolean" then
    typ, str, len, num = T_BOOLEAN, nil, 0, value and 1 or 0
  else
    return nil, "bad value type"
  end

  local rc = C.gw_ffi_shdict_store(zone, op, k, klen, typ, str, len, num,
                                   exptime, flags, forcible_out, err_out)
  if rc == OK then
    return true, nil, forcible_out[0] == 1
  end
  return false, ffi_str(err_out[0]), forcible_out[0] == 1
end


-- ok, err, forcible = dict:set(key, value, exptime?, flags?)
function dict.set(self, key, value, exptime, flags)
  return store(self, OP_SET, key, value, exptime, flags)
end


function dict.safe_set(self, key, value, exptime, flags)
  return store(self, OP_SAFE_SET, key, value, exptime, flags)
end


function dict.add(self, key, value, exptime, flags)
  return store(self, OP_ADD, key, value, exptime, flags)
end


function dict.safe_add(self, key, value, exptime, flags)
  return store(self, OP_SAFE_ADD, key, value, exptime, flags)
end


function dict.replace(self, key, value, exptime, flags)
  return store(self, OP_REPLACE, key, value, exptime, flags)
end


function dict.delete(self, key)
  return store(self, OP_SET, key, nil)
end


-- newval, err, forcible = dict:incr(key, value, init?, init_ttl?)
function dict.incr(self, key, value, init, init_ttl)
  local zone = check_zone(self)
  local k, klen = check_key(key)
  if not k then
    return nil, klen
  end
  if type(value) ~= "number" then
    local v = tonumber(value)
    if not v then
      error("bad value arg: number expected, got " .. type(value), 2)
    end
    value = v
  end
  if init ~= nil and type(init) ~= "number" then
    local v = tonumber(init)
    if not v then
      error("bad init arg: number expected, got " .. type(init), 2)
    end
    init = v
  end
  if init_ttl ~= nil then
    if type(init_ttl) ~= "number" then
      local v = tonumber(init_ttl)
      if not v then
        error("bad init_ttl arg: number expected, got " .. type(init_ttl), 2)
      end
      init_ttl = v
    end
    if init_ttl < 0 then
      error("bad \"init_ttl\" argument", 2)
    end
    if init == nil then
      error("must provide \"init\" when providing \"init_ttl\"", 2)
    end
  else
    init_ttl = 0
  end

  local rc = C.gw_ffi_shdict_incr(zone, k, klen, value, init and 1 or 0,
                                  init or 0, init_ttl, num_out, forcible_out,
                                  err_out)
  if rc ~= OK then
    return nil, ffi_str(err_out[0])
  end
  if init == nil then
    return num_out[0]
  end
  return num_out[0], nil, forcible_out[0] == 1
end


function dict.flush_all(self)
  C.gw_ffi_shdict_flush_all(check_zone(self))
end


-- flushed = dict:flush_expired(max_count?)
function dict.flush_expired(self, max_count)
  local zone = check_zone(self)
  max_count = tonumber(max_count) or 0
  C.gw_ffi_shdict_flush_expired(zone, max_count, n_out)
  return n_out[0]
end


-- keys = dict:get_keys(max_count?): max_count 1024 by default, 0 for all.
-- Not for hot paths: it walks the whole dictionary under its lock.
function dict.get_keys(self, max_count)
  local zone = check_zone(self)
  max_count = tonumber(max_count) or DEFAULT_MAX_KEYS
  local rc = C.gw_ffi_shdict_get_keys(zone, max_count, buf_out, size_out,
                                      n_out)
  if rc ~= OK then
    return nil, "no memory"
  end
  local n = n_out[0]
  local keys = new_tab(n, 0)
  if n == 0 then
    return keys
  end
  local buf = buf_out[0]
  local p = ffi_cast(u8p, buf)
  local off = 0
  for i = 1, n do
    local len = p[off] * 256 + p[off + 1]
    keys[i] = ffi_str(p + off + 2, len)
    off = off + 2 + len
  end
  C.gw_ffi_shdict_free(buf)
  return keys
end


-- ttl, err = dict:ttl(key): seconds left, 0 when the key never expires
function dict.ttl(self, key)
  local zone = check_zone(self)
  local k, klen = check_key(key)
  if not k then
    return nil, klen
  end
  if C.gw_ffi_shdict_ttl(zone, k, klen, ttl_out, err_out) ~= OK then
    return nil, ffi_str(err_out[0])
  end
  return tonumber(ttl_out[0]) / 1000
end


-- version, expires = dict:get_stamp(key) (luagate): what identifies the
-- key's current value, without copying it: a number that changes whenever
-- the value is stored (set, incr, push, pop) and the absolute expiry
-- (CLOCK_MONOTONIC ms, 0 = never); a copy of the value kept elsewhere is
-- current while both are the same. nil when missing or expired. Makes the
-- entry the most recently used, as get does.
function dict.get_stamp(self, key)
  local zone = check_zone(self)
  local k, klen = check_key(key)
  if not k then
    return nil, klen
  end
  if C.gw_ffi_shdict_stamp(zone, k, klen, ver_out, ttl_out, err_out) ~= OK then
    return nil
  end
  return tonumber(ver_out[0]), tonumber(ttl_out[0])
end


-- ok, err = dict:expire(key, exptime)
function dict.expire(self, key, exptime)
  local zone = check_zone(self)
  if type(exptime) ~= "number" or exptime < 0 then
    error("bad \"exptime\" argument", 2)
  end
  local k, klen = check_key(key)
  if not k then
    return nil, klen
  end
  if C.gw_ffi_shdict_expire(zone, k, klen, exptime, err_out) ~= OK then
    return nil, ffi_str(err_out[0])
  end
  return true
end


function dict.capacity(self)
  return tonumber(C.gw_ffi_shdict_capacity(check_zone(self)))
end


function dict.free_space(self)
  return tonumber(C.gw_ffi_shdict_free_space(check_zone(self)))
end


-- lists ----------------------------------------------------------------------

local function push(self, right, key, value)
  local zone = check_zone(self)
  local k, klen = check_key(key)
  if not k then
    return nil, klen
  end
  local typ, str, len, num
  local vt = type(value)
  if vt == "string" then
    typ, str, len, num = T_STRING, value, #value, 0
  elseif vt == "number" then
    typ, str, len, num = T_NUMBER, nil, 0, value
  else
    return nil, "bad value type"
  end
  local rc = C.gw_ffi_shdict_push(zone, right, k, klen, typ, str, len, num,
                                  size_out, err_out)
  if rc ~= OK then
    return nil, ffi_str(err_out[0])
  end
  return tonumber(size_out[0])
end


local function pop(self, right, key)
  local zone = check_zone(self)
  local k, klen = check_key(key)
  if not k then
    return nil, klen
  end
  buf_out[0] = valbuf_ptr
  size_out[0] = valbuf_size
  local rc = C.gw_ffi_shdict_pop(zone, right, k, klen, type_out, buf_out,
                                 size_out, num_out, err_out)
  if rc ~= OK then
    return nil, ffi_str(err_out[0])
  end
  local typ = type_out[0]
  if typ == T_STRING then
    return take_string()
  elseif typ == T_NUMBER then
    return num_out[0]
  end
  return nil
end


-- len, err = dict:lpush(key, value)
function dict.lpush(self, key, value)
  return push(self, 0, key, value)
end


function dict.rpush(self, key, value)
  return push(self, 1, key, value)
end


-- value, err = dict:lpop(key)
function dict.lpop(self, key)
  return pop(self, 0, key)
end


function dict.rpop(self, key)
  return pop(self, 1, key)
end


-- len, err = dict:llen(key)
function dict.llen(self, key)
  local zone = check_zone(self)
  local k, klen = check_key(key)
  if not k then
    return nil, klen
  end
  if C.gw_ffi_shdict_llen(zone, k, klen, size_out, err_out) ~= OK then
    return nil, ffi_str(err_out[0])
  end
  return tonumber(size_out[0])
end


-- ngx.shared -----------------------------------------------------------------

local shared = setmetatable({}, {
  __index = function(self, name)
    if type(name) ~= "string" then
      return nil
    end
    local zone = C.gw_ffi_shdict_find(name, #name)
    if zone == nil then
      return nil
    end
    local d = setmetatable({ zone, name = name }, dict_mt)
    rawset(self, name, d)
    return d
  end,
})


return shared
