-- C declarations for the pure `ngx` API modules (luagate.ngx.re, .codec,
-- .uri), kept in one place so the plugin runtime can merge them into its
-- single cdef file later.
--
-- Every declaration is given to ffi.cdef on its own under pcall: another
-- module (luagate.schema, luagate.config) may already have declared the same
-- function with a compatible signature (e.g. `void *ccontext`), and one
-- failed declaration must not keep the others from being defined. Callers
-- therefore pass only values that fit every declared variant (nil for the
-- context pointers, Lua strings for `const unsigned char *`).
--
-- Fields:
--   decls            array of declaration strings, in definition order
--   pcre2, crypto, z the loaded libraries, or nil when missing
--   load_errors      { pcre2 = "msg", ... } for the libraries that failed

local ffi = require("ffi")

local pcall = pcall
local ipairs = ipairs
local ffi_cdef = ffi.cdef
local ffi_load = ffi.load

local _M = {}


local DECLS = {
  -- PCRE2, 8-bit code unit width (symbols carry the _8 suffix)
  "typedef struct pcre2_real_code_8 pcre2_code_8;",
  "typedef struct pcre2_real_match_data_8 pcre2_match_data_8;",
  [[pcre2_code_8 *pcre2_compile_8(const unsigned char *pattern,
      size_t length, uint32_t options, int *errorcode, size_t *erroroffset,
      void *ccontext);]],
  "void pcre2_code_free_8(pcre2_code_8 *code);",
  "int pcre2_jit_compile_8(pcre2_code_8 *code, uint32_t options);",
  [[int pcre2_pattern_info_8(const pcre2_code_8 *code, uint32_t what,
      void *where);]],
  [[pcre2_match_data_8 *pcre2_match_data_create_8(uint32_t ovecsize,
      void *gcontext);]],
  "void pcre2_match_data_free_8(pcre2_match_data_8 *match_data);",
  "size_t *pcre2_get_ovector_pointer_8(pcre2_match_data_8 *match_data);",
  [[int pcre2_match_8(const pcre2_code_8 *code, const unsigned char *subject,
      size_t length, size_t startoffset, uint32_t options,
      pcre2_match_data_8 *match_data, void *mcontext);]],
  [[int pcre2_dfa_match_8(const pcre2_code_8 *code,
      const unsigned char *subject, size_t length, size_t startoffset,
      uint32_t options, pcre2_match_data_8 *match_data, void *mcontext,
      int *workspace, size_t wscount);]],
  [[int pcre2_get_error_message_8(int errorcode, unsigned char *buffer,
      size_t bufflen);]],

  -- OpenSSL 3 libcrypto
  "typedef struct evp_md_st EVP_MD;",
  "const EVP_MD *EVP_md5(void);",
  "const EVP_MD *EVP_sha1(void);",
  "const EVP_MD *EVP_sha256(void);",
  [[int EVP_Digest(const void *data, size_t count, unsigned char *md,
      unsigned int *size, const EVP_MD *type, void *impl);]],
  [[unsigned char *HMAC(const EVP_MD *evp_md, const void *key, int key_len,
      const unsigned char *data, size_t data_len, unsigned char *md,
      unsigned int *md_len);]],

  -- zlib
  [[unsigned long crc32(unsigned long crc, const unsigned char *buf,
      unsigned int len);]],
}

_M.decls = DECLS

for _, decl in ipairs(DECLS) do
  pcall(ffi_cdef, decl)
end


local load_errors = {}
_M.load_errors = load_errors

-- Loads the first of `names` that ffi.load accepts.
local function load(key, names)
  local err
  for _, name in ipairs(names) do
    local ok, lib = pcall(ffi_load, name)
    if ok then
      return lib
    end
    err = lib
  end
  load_errors[key] = err
  return nil
end

_M.pcre2 = load("pcre2", { "pcre2-8", "libpcre2-8.so.0" })
_M.crypto = load("crypto", { "crypto", "libcrypto.so.3" })
_M.z = load("z", { "z", "libz.so.1" })


return _M
