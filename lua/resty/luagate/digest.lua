-- Incremental message digests over OpenSSL 3's EVP_MD_CTX, the shared code
-- of resty.md5, resty.sha1, resty.sha256 (and sha224/384/512): objects with
-- :update(s), :final() (the raw digest), :reset().
local ffi = require "ffi"

local ffi_new = ffi.new
local ffi_gc = ffi.gc
local ffi_str = ffi.string
local setmetatable = setmetatable
local type = type
local tostring = tostring

local decls = {
  "typedef struct evp_md_st EVP_MD;",
  "typedef struct evp_md_ctx_st EVP_MD_CTX;",
  "typedef struct engine_st ENGINE;",
  "EVP_MD_CTX *EVP_MD_CTX_new(void);",
  "void EVP_MD_CTX_free(EVP_MD_CTX *ctx);",
  "int EVP_DigestInit_ex(EVP_MD_CTX *ctx, const EVP_MD *type, void *impl);",
  "int EVP_DigestUpdate(EVP_MD_CTX *ctx, const void *d, size_t cnt);",
  [[int EVP_DigestFinal_ex(EVP_MD_CTX *ctx, unsigned char *md,
      unsigned int *s);]],
  "const EVP_MD *EVP_md5(void);",
  "const EVP_MD *EVP_sha1(void);",
  "const EVP_MD *EVP_sha224(void);",
  "const EVP_MD *EVP_sha256(void);",
  "const EVP_MD *EVP_sha384(void);",
  "const EVP_MD *EVP_sha512(void);",
  "int RAND_bytes(unsigned char *buf, int num);",
  "int RAND_priv_bytes(unsigned char *buf, int num);",
}
for _, d in ipairs(decls) do
  pcall(ffi.cdef, d) -- another module may have declared it already
end

local _M = {}

local crypto
do
  local ok, lib = pcall(ffi.load, "crypto")
  if not ok then
    ok, lib = pcall(ffi.load, "libcrypto.so.3")
  end
  crypto = ok and lib or nil
  _M.load_error = not ok and tostring(lib) or nil
end
_M.crypto = crypto

local md_buf = ffi_new("unsigned char[64]")
local md_len = ffi_new("unsigned int[1]")


-- A class for one algorithm: `name` is the EVP function suffix ("sha256").
function _M.class(name)
  local class = {}
  class.__index = class

  local function md()
    return crypto["EVP_" .. name]()
  end

  function class.new(_)
    if not crypto then
      return nil, "libcrypto not available: " .. tostring(_M.load_error)
    end
    local ctx = crypto.EVP_MD_CTX_new()
    if ctx == nil then
      return nil, "EVP_MD_CTX_new() failed"
    end
    ffi_gc(ctx, crypto.EVP_MD_CTX_free)
    if crypto.EVP_DigestInit_ex(ctx, md(), nil) ~= 1 then
      return nil, "EVP_DigestInit_ex() failed"
    end
    return setmetatable({ _ctx = ctx }, class)
  end

  function class:update(s)
    if type(s) ~= "string" then
      s = tostring(s)
    end
    return crypto.EVP_DigestUpdate(self._ctx, s, #s) == 1
  end

  function class:final()
    if crypto.EVP_DigestFinal_ex(self._ctx, md_buf, md_len) ~= 1 then
      return nil
    end
    return ffi_str(md_buf, md_len[0])
  end

  function class:reset()
    return crypto.EVP_DigestInit_ex(self._ctx, md(), nil) == 1
  end

  return setmetatable({ _VERSION = "0.1", new = class.new },
                      { __index = class })
end


-- `n` random bytes from OpenSSL (RAND_priv_bytes when `strong`), or nil.
function _M.random(n, strong)
  if not crypto then
    return nil
  end
  local buf = ffi_new("unsigned char[?]", n)
  local f = strong and crypto.RAND_priv_bytes or crypto.RAND_bytes
  if f(buf, n) ~= 1 then
    return nil
  end
  return ffi_str(buf, n)
end


return _M
