-- JWT parsing, signing and verification (kong.plugins.jwt.jwt_parser).
--
-- Kong's module API, which third-party plugins require:
--
--   local jwt_decoder = require "kong.plugins.jwt.jwt_parser"
--   local jwt, err = jwt_decoder:new(token)   -- nil, "invalid JSON" ...
--   jwt.header, jwt.claims, jwt.signature     -- decoded parts
--   jwt.header_64, jwt.claims_64, jwt.signature_64, jwt.token
--   jwt:verify_signature(key)                 -- true | false
--   jwt:verify_registered_claims({ "exp", "nbf" })  -- ok, errors
--   jwt:check_maximum_expiration(seconds)     -- ok, errors
--   jwt:base64_check()                        -- segments are base64url
--   jwt_decoder:base64_decode(s)              -- base64 or base64url
--   jwt_decoder.encode(claims, key, alg?, header?)  -- a signed token
--
-- `key` is the HMAC secret for HS*, a PEM public key (or certificate) for
-- the others; verify_signature also takes a key object from
-- load_public_key() or jwk_to_key(). encode() takes a PEM private key for
-- the asymmetric algorithms.
--
-- Algorithms: HS256/384/512, RS256/384/512 (RSASSA-PKCS1-v1_5),
-- PS256/384/512 (RSASSA-PSS, MGF1 with the same hash, salt length = hash
-- length), ES256/384/512 (ECDSA P-256/P-384/P-521, signatures as the raw
-- R || S of RFC 7518 §3.4), EdDSA (Ed25519, Ed448). `none` is refused.
-- All of it through OpenSSL 3's libcrypto over the FFI. Parsed public keys
-- are cached by their PEM text, so verifying does no PEM parsing.

local ffi = require "ffi"
local cjson = require "cjson.safe"
local codec = require "luagate.ngx.codec"

local type = type
local ipairs = ipairs
local error = error
local pcall = pcall
local tostring = tostring
local setmetatable = setmetatable
local getmetatable = getmetatable
local assert = assert
local byte = string.byte
local char = string.char
local sub = string.sub
local find = string.find
local gsub = string.gsub
local upper = string.upper
local rep = string.rep
local bxor = require("bit").bxor
local bor = require("bit").bor
local band = require("bit").band
local rshift = require("bit").rshift
local ffi_new = ffi.new
local ffi_gc = ffi.gc
local ffi_string = ffi.string
local ffi_copy = ffi.copy
local json_decode = cjson.decode
local json_encode = cjson.encode
local b64url_encode = codec.encode_base64url
local b64url_decode = codec.decode_base64url
local b64_decode = codec.decode_base64


-- libcrypto -----------------------------------------------------------------

-- Each declaration on its own: other modules declare some of the same
-- names (luagate.ngx.cdefs: EVP_MD, HMAC) with compatible signatures.
for _, decl in ipairs({
  "typedef struct evp_md_st EVP_MD;",
  "typedef struct bio_st BIO;",
  "typedef struct evp_pkey_st EVP_PKEY;",
  "typedef struct evp_md_ctx_st EVP_MD_CTX;",
  "typedef struct evp_pkey_ctx_st EVP_PKEY_CTX;",
  "typedef struct x509_st X509;",
  "const EVP_MD *EVP_sha256(void);",
  "const EVP_MD *EVP_sha384(void);",
  "const EVP_MD *EVP_sha512(void);",
  [[unsigned char *HMAC(const EVP_MD *evp_md, const void *key, int key_len,
      const unsigned char *data, size_t data_len, unsigned char *md,
      unsigned int *md_len);]],
  "BIO *BIO_new_mem_buf(const void *buf, int len);",
  "int BIO_free(BIO *a);",
  "EVP_PKEY *PEM_read_bio_PUBKEY(BIO *bp, EVP_PKEY **x, void *cb, void *u);",
  [[EVP_PKEY *PEM_read_bio_PrivateKey(BIO *bp, EVP_PKEY **x, void *cb,
      void *u);]],
  "X509 *PEM_read_bio_X509(BIO *bp, X509 **x, void *cb, void *u);",
  "X509 *d2i_X509(X509 **a, const unsigned char **in, long len);",
  "EVP_PKEY *X509_get_pubkey(X509 *x);",
  "void X509_free(X509 *a);",
  "EVP_PKEY *d2i_PUBKEY(EVP_PKEY **a, const unsigned char **pp, long len);",
  "void EVP_PKEY_free(EVP_PKEY *pkey);",
  "int EVP_PKEY_get_base_id(const EVP_PKEY *pkey);",
  "int EVP_PKEY_get_bits(const EVP_PKEY *pkey);",
  "EVP_MD_CTX *EVP_MD_CTX_new(void);",
  "void EVP_MD_CTX_free(EVP_MD_CTX *ctx);",
  "int EVP_MD_CTX_reset(EVP_MD_CTX *ctx);",
  [[int EVP_DigestVerifyInit(EVP_MD_CTX *ctx, EVP_PKEY_CTX **pctx,
      const EVP_MD *type, void *e, EVP_PKEY *pkey);]],
  [[int EVP_DigestVerify(EVP_MD_CTX *ctx, const unsigned char *sig,
      size_t siglen, const unsigned char *tbs, size_t tbslen);]],
  [[int EVP_DigestSignInit(EVP_MD_CTX *ctx, EVP_PKEY_CTX **pctx,
      const EVP_MD *type, void *e, EVP_PKEY *pkey);]],
  [[int EVP_DigestSign(EVP_MD_CTX *ctx, unsigned char *sig, size_t *siglen,
      const unsigned char *tbs, size_t tbslen);]],
  "int EVP_PKEY_CTX_set_rsa_padding(EVP_PKEY_CTX *ctx, int pad);",
  "int EVP_PKEY_CTX_set_rsa_pss_saltlen(EVP_PKEY_CTX *ctx, int len);",
  "void ERR_clear_error(void);",
}) do
  pcall(ffi.cdef, decl)
end

local C
do
  local ok, lib = pcall(ffi.load, "crypto")
  if not ok then
    ok, lib = pcall(ffi.load, "libcrypto.so.3")
  end
  if not ok then
    error("jwt_parser: libcrypto is not available: " .. tostring(lib))
  end
  C = lib
end

-- <openssl/evp.h>, <openssl/rsa.h>, <openssl/obj_mac.h>
local EVP_PKEY_RSA = 6
local EVP_PKEY_RSA_PSS = 912
local EVP_PKEY_EC = 408
local EVP_PKEY_ED25519 = 1087
local EVP_PKEY_ED448 = 1088
local RSA_PKCS1_PADDING = 1
local RSA_PKCS1_PSS_PADDING = 6
local RSA_PSS_SALTLEN_DIGEST = -1

local MD = {
  sha256 = C.EVP_sha256(),
  sha384 = C.EVP_sha384(),
  sha512 = C.EVP_sha512(),
}

-- kind: hmac | rsa (PKCS#1 v1.5) | pss | ec | eddsa
-- size: bytes of R and S for ECDSA; bits: the curve's order size
local ALGS = {
  HS256 = { kind = "hmac", md = MD.sha256, len = 32 },
  HS384 = { kind = "hmac", md = MD.sha384, len = 48 },
  HS512 = { kind = "hmac", md = MD.sha512, len = 64 },
  RS256 = { kind = "rsa", md = MD.sha256 },
  RS384 = { kind = "rsa", md = MD.sha384 },
  RS512 = { kind = "rsa", md = MD.sha512 },
  PS256 = { kind = "pss", md = MD.sha256 },
  PS384 = { kind = "pss", md = MD.sha384 },
  PS512 = { kind = "pss", md = MD.sha512 },
  ES256 = { kind = "ec", md = MD.sha256, size = 32, bits = 256 },
  ES384 = { kind = "ec", md = MD.sha384, size = 48, bits = 384 },
  ES512 = { kind = "ec", md = MD.sha512, size = 66, bits = 521 },
  EdDSA = { kind = "eddsa" },
}


local md_ctx -- one EVP_MD_CTX, reset before each use (nothing yields)
local function get_md_ctx()
  if not md_ctx then
    md_ctx = ffi_gc(C.EVP_MD_CTX_new(), C.EVP_MD_CTX_free)
  else
    C.EVP_MD_CTX_reset(md_ctx)
  end
  return md_ctx
end

local pctx_p = ffi_new("EVP_PKEY_CTX *[1]")
local hmac_buf = ffi_new("unsigned char[64]")
local hmac_len = ffi_new("unsigned int[1]")
local siglen_p = ffi_new("size_t[1]")


-- DER -----------------------------------------------------------------------

local function der_len(n)
  if n < 0x80 then
    return char(n)
  elseif n < 0x100 then
    return "\129" .. char(n)
  end
  return "\130" .. char(rshift(n, 8), band(n, 0xff))
end

local function der(tag, body)
  return tag .. der_len(#body) .. body
end

-- a DER INTEGER from unsigned big-endian bytes
local function der_uint(b)
  local i = 1
  while i < #b and byte(b, i) == 0 do
    i = i + 1
  end
  b = sub(b, i)
  if byte(b, 1) >= 0x80 then
    b = "\0" .. b
  end
  return der("\2", b)
end

-- Reads the DER element at pos: tag, body, next position; nil if malformed.
local function der_read(s, pos)
  local tag, l = byte(s, pos, pos + 1)
  if not l then
    return nil
  end
  pos = pos + 2
  if l >= 0x80 then
    local n = l - 0x80
    if n < 1 or n > 2 then
      return nil
    end
    l = 0
    for k = 0, n - 1 do
      local b = byte(s, pos + k)
      if not b then
        return nil
      end
      l = l * 256 + b
    end
    pos = pos + n
  end
  if pos + l - 1 > #s then
    return nil
  end
  return tag, sub(s, pos, pos + l - 1), pos + l
end

local function left_pad(b, size)
  local i = 1
  while i < #b and byte(b, i) == 0 do
    i = i + 1
  end
  b = sub(b, i)
  if #b > size then
    return nil
  end
  return rep("\0", size - #b) .. b
end

-- ECDSA: JWS raw R || S <-> DER Ecdsa-Sig-Value
local function raw_to_der(sig, size)
  if #sig ~= size * 2 then
    return nil
  end
  return der("\48", der_uint(sub(sig, 1, size)) ..
                    der_uint(sub(sig, size + 1)))
end

local function der_to_raw(sig, size)
  local tag, body = der_read(sig, 1)
  if tag ~= 0x30 then
    return nil
  end
  local t1, r, pos = der_read(body, 1)
  local t2, s = der_read(body, pos or 1)
  if t1 ~= 2 or t2 ~= 2 then
    return nil
  end
  r, s = left_pad(r, size), left_pad(s, size)
  if not r or not s then
    return nil
  end
  return r .. s
end


-- keys ----------------------------------------------------------------------

-- A key object: { pkey = EVP_PKEY* (gc'd), type = base id, bits = n }
local key_mt = { __name = "jwt public key" }

local function wrap_pkey(pkey)
  if pkey == nil then
    C.ERR_clear_error()
    return nil
  end
  pkey = ffi_gc(pkey, C.EVP_PKEY_free)
  return setmetatable({
    pkey = pkey,
    type = C.EVP_PKEY_get_base_id(pkey),
    bits = C.EVP_PKEY_get_bits(pkey),
  }, key_mt)
end

local function is_key(k)
  return type(k) == "table" and getmetatable(k) == key_mt
end

local function pkey_from_der(d)
  local n = #d
  local buf = ffi_new("unsigned char[?]", n)
  ffi_copy(buf, d, n)
  local pp = ffi_new("const unsigned char *[1]", buf)
  return wrap_pkey(C.d2i_PUBKEY(nil, pp, n))
end

local function cert_pubkey(x509)
  if x509 == nil then
    C.ERR_clear_error()
    return nil
  end
  local k = C.X509_get_pubkey(x509)
  C.X509_free(x509)
  return wrap_pkey(k)
end

local function pem_body(pem, label)
  local body = pem:match("%-%-%-%-%-BEGIN " .. label ..
                         "%-%-%-%-%-(.-)%-%-%-%-%-END " .. label)
  if not body then
    return nil
  end
  return b64_decode((gsub(body, "%s", "")))
end

local OID_RSA = "\6\9\42\134\72\134\247\13\1\1\1\5\0" -- rsaEncryption, NULL
local OID_EC = "\6\7\42\134\72\206\61\2\1"            -- id-ecPublicKey
local OID_CURVE = {
  ["P-256"] = { "\6\8\42\134\72\206\61\3\1\7", 32 },
  ["P-384"] = { "\6\5\43\129\4\0\34", 48 },
  ["P-521"] = { "\6\5\43\129\4\0\35", 66 },
}
local OID_OKP = {
  Ed25519 = { "\6\3\43\101\112", 32 },
  Ed448 = { "\6\3\43\101\113", 57 },
}

local function spki(algid, public_key)
  return der("\48", der("\48", algid) .. der("\3", "\0" .. public_key))
end

-- PEM text -> key object (uncached). Accepts "PUBLIC KEY" (SPKI), "RSA
-- PUBLIC KEY" (PKCS#1), "CERTIFICATE", and private keys (their public
-- half verifies).
local function parse_public_pem(pem)
  local bio = C.BIO_new_mem_buf(pem, #pem)
  if bio == nil then
    return nil, "out of memory"
  end
  local k = wrap_pkey(C.PEM_read_bio_PUBKEY(bio, nil, nil, nil))
  C.BIO_free(bio)
  if k then
    return k
  end
  local pkcs1 = pem_body(pem, "RSA PUBLIC KEY")
  if pkcs1 then
    k = pkey_from_der(spki(OID_RSA, pkcs1))
    if k then
      return k
    end
  end
  if find(pem, "BEGIN CERTIFICATE", 1, true) then
    bio = C.BIO_new_mem_buf(pem, #pem)
    k = cert_pubkey(C.PEM_read_bio_X509(bio, nil, nil, nil))
    C.BIO_free(bio)
    if k then
      return k
    end
  end
  if find(pem, "PRIVATE KEY", 1, true) then
    -- Kong (resty.openssl) verifies with a private key as well
    bio = C.BIO_new_mem_buf(pem, #pem)
    k = wrap_pkey(C.PEM_read_bio_PrivateKey(bio, nil, nil, nil))
    C.BIO_free(bio)
    if k then
      return k
    end
  end
  return nil, "invalid key"
end


-- PEM text -> key object, cached per PEM text (bounded: a config full of
-- distinct keys just parses again after the cache is cleared).
local KEY_CACHE_MAX = 1024
local key_cache = {}
local key_cache_n = 0

local function load_public_key(pem)
  if type(pem) ~= "string" or pem == "" then
    return nil, "invalid key"
  end
  local k = key_cache[pem]
  if k then
    return k
  end
  local err
  k, err = parse_public_pem(pem)
  if not k then
    return nil, err
  end
  if key_cache_n >= KEY_CACHE_MAX then
    key_cache = {}
    key_cache_n = 0
  end
  key_cache[pem] = k
  key_cache_n = key_cache_n + 1
  return k
end


local function load_private_key(pem)
  local bio = C.BIO_new_mem_buf(pem, #pem)
  if bio == nil then
    return nil, "out of memory"
  end
  local k = wrap_pkey(C.PEM_read_bio_PrivateKey(bio, nil, nil, nil))
  C.BIO_free(bio)
  if not k then
    return nil, "invalid private key"
  end
  return k
end


-- base64url without padding, as JWK members are
local function jwk_bytes(v)
  if type(v) ~= "string" or v == "" or find(v, "[^%w%-_=]") then
    return nil
  end
  return b64url_decode(v)
end

-- A JWK (decoded JSON table) -> key object, or nil, err. RSA (n, e), EC
-- (crv P-256/384/521, x, y), OKP (crv Ed25519/Ed448, x); or the first
-- certificate of x5c.
local function jwk_to_key(jwk)
  if type(jwk) ~= "table" then
    return nil, "JWK is not an object"
  end
  local kty = jwk.kty
  local d
  if kty == "RSA" then
    local n, e = jwk_bytes(jwk.n), jwk_bytes(jwk.e)
    if n and e then
      d = spki(OID_RSA, der("\48", der_uint(n) .. der_uint(e)))
    end
  elseif kty == "EC" then
    local curve = OID_CURVE[jwk.crv]
    if not curve then
      return nil, "unsupported curve: " .. tostring(jwk.crv)
    end
    local x, y = jwk_bytes(jwk.x), jwk_bytes(jwk.y)
    x = x and left_pad(x, curve[2])
    y = y and left_pad(y, curve[2])
    if x and y then
      d = spki(OID_EC .. curve[1], "\4" .. x .. y)
    end
  elseif kty == "OKP" then
    local okp = OID_OKP[jwk.crv]
    if not okp then
      return nil, "unsupported curve: " .. tostring(jwk.crv)
    end
    local x = jwk_bytes(jwk.x)
    if x and #x == okp[2] then
      d = spki(okp[1], x)
    end
  else
    return nil, "unsupported key type: " .. tostring(kty)
  end
  local k = d and pkey_from_der(d)
  if not k and type(jwk.x5c) == "table" and type(jwk.x5c[1]) == "string" then
    local cert = b64_decode(jwk.x5c[1])
    if cert then
      local n = #cert
      local buf = ffi_new("unsigned char[?]", n)
      ffi_copy(buf, cert, n)
      local pp = ffi_new("const unsigned char *[1]", buf)
      k = cert_pubkey(C.d2i_X509(nil, pp, n))
    end
  end
  if not k then
    return nil, "invalid " .. kty .. " key"
  end
  return k
end


-- Whether key object k can verify alg (type and curve).
local function key_fits(alg, k)
  local a = ALGS[alg]
  if not a or not is_key(k) then
    return false
  end
  local kind, t = a.kind, k.type
  if kind == "rsa" then
    return t == EVP_PKEY_RSA
  elseif kind == "pss" then
    return t == EVP_PKEY_RSA or t == EVP_PKEY_RSA_PSS
  elseif kind == "ec" then
    return t == EVP_PKEY_EC and k.bits == a.bits
  elseif kind == "eddsa" then
    return t == EVP_PKEY_ED25519 or t == EVP_PKEY_ED448
  end
  return false
end


-- signing and verifying -----------------------------------------------------

local function hmac(a, data, key)
  if C.HMAC(a.md, key, #key, data, #data, hmac_buf, hmac_len) == nil then
    C.ERR_clear_error()
    return nil
  end
  return ffi_string(hmac_buf, hmac_len[0])
end

-- Compares two strings in time that depends on their length only.
local function constant_time_eq(a, b)
  if #a ~= #b then
    return false
  end
  local d = 0
  for i = 1, #a do
    d = bor(d, bxor(byte(a, i), byte(b, i)))
  end
  return d == 0
end

local function init_pctx(a, pctx)
  if a.kind == "pss" then
    return C.EVP_PKEY_CTX_set_rsa_padding(pctx, RSA_PKCS1_PSS_PADDING) > 0
       and C.EVP_PKEY_CTX_set_rsa_pss_saltlen(pctx, RSA_PSS_SALTLEN_DIGEST) > 0
  elseif a.kind == "rsa" then
    return C.EVP_PKEY_CTX_set_rsa_padding(pctx, RSA_PKCS1_PADDING) > 0
  end
  return true
end

-- Verifies signature over data with key (secret string for HMAC, key
-- object or PEM text otherwise). Returns true or false, reason.
local function verify(alg, data, signature, key)
  local a = ALGS[alg]
  if not a then
    return false, "unsupported algorithm"
  end
  if type(signature) ~= "string" then
    return false, "no signature"
  end
  if a.kind == "hmac" then
    if type(key) ~= "string" then
      return false, "invalid key"
    end
    local mac = hmac(a, data, key)
    return mac ~= nil and constant_time_eq(mac, signature)
  end
  local k = key
  if type(key) == "string" then
    local err
    k, err = load_public_key(key)
    if not k then
      return false, err
    end
  end
  if not key_fits(alg, k) then
    return false, "key does not fit the algorithm"
  end
  local sig = signature
  if a.kind == "ec" then
    sig = raw_to_der(signature, a.size)
    if not sig then
      return false, "bad signature size"
    end
  end
  local ctx = get_md_ctx()
  pctx_p[0] = nil
  if C.EVP_DigestVerifyInit(ctx, pctx_p, a.md, nil, k.pkey) ~= 1
     or not init_pctx(a, pctx_p[0]) then
    C.ERR_clear_error()
    return false, "could not initialize verification"
  end
  local rc = C.EVP_DigestVerify(ctx, sig, #sig, data, #data)
  if rc ~= 1 then
    C.ERR_clear_error()
    return false
  end
  return true
end


-- Signs data with key (secret or PEM private key); raises on failure.
local function sign(alg, data, key)
  local a = ALGS[alg]
  if a.kind == "hmac" then
    return (assert(hmac(a, data, key), "HMAC() failed"))
  end
  local k = assert(load_private_key(key))
  local ctx = get_md_ctx()
  pctx_p[0] = nil
  if C.EVP_DigestSignInit(ctx, pctx_p, a.md, nil, k.pkey) ~= 1
     or not init_pctx(a, pctx_p[0]) then
    C.ERR_clear_error()
    error("could not initialize signing with this key", 3)
  end
  siglen_p[0] = 0
  if C.EVP_DigestSign(ctx, nil, siglen_p, data, #data) ~= 1 then
    C.ERR_clear_error()
    error("EVP_DigestSign() failed", 3)
  end
  local buf = ffi_new("unsigned char[?]", siglen_p[0])
  if C.EVP_DigestSign(ctx, buf, siglen_p, data, #data) ~= 1 then
    C.ERR_clear_error()
    error("EVP_DigestSign() failed", 3)
  end
  local sig = ffi_string(buf, siglen_p[0])
  if a.kind == "ec" then
    sig = assert(der_to_raw(sig, a.size), "bad ECDSA signature")
  end
  return sig
end


-- tokens --------------------------------------------------------------------

-- Base64 or base64url, padded or not: secrets and third-party callers.
local function base64_decode(input)
  if type(input) ~= "string" then
    return nil
  end
  return b64url_decode((gsub(gsub(input, "%+", "-"), "/", "_")))
end


local function decode_token(token)
  local d1 = find(token, ".", 1, true)
  local d2 = d1 and find(token, ".", d1 + 1, true)
  if not d2 then
    return nil, "invalid JSON"
  end
  local header_64 = sub(token, 1, d1 - 1)
  local claims_64 = sub(token, d1 + 1, d2 - 1)
  local signature_64 = sub(token, d2 + 1)

  local h = b64url_decode(header_64)
  local header = h and json_decode(h)
  local c = b64url_decode(claims_64)
  local claims = c and json_decode(c)
  if type(header) ~= "table" or claims == nil then
    return nil, "invalid JSON"
  end
  local typ = header.typ
  if typ ~= nil then
    local t = type(typ) == "string" and upper(typ)
    if t ~= "JWT" and t ~= "AT+JWT" and t ~= "APPLICATION/AT+JWT" then
      return nil, "invalid typ"
    end
  end
  local alg = header.alg
  if type(alg) ~= "string" or not ALGS[alg] then
    return nil, "invalid alg"
  end
  if type(claims) ~= "table" then
    return nil, "invalid claims"
  end
  local signature = b64url_decode(signature_64)
  if not signature then
    return nil, "invalid signature"
  end
  return {
    token = token,
    header_64 = header_64,
    claims_64 = claims_64,
    signature_64 = signature_64,
    header = header,
    claims = claims,
    signature = signature,
  }
end


local function time_now()
  local ngx = _G.ngx
  if type(ngx) == "table" and ngx.time then
    return ngx.time()
  end
  return os.time()
end


local REGISTERED_CLAIMS = {
  exp = function(v, now)
    if v <= now then
      return "token expired"
    end
  end,
  nbf = function(v, now)
    if v > now then
      return "token not valid yet"
    end
  end,
}


local _M = {
  ALGORITHMS = ALGS,
  load_public_key = load_public_key,
  jwk_to_key = jwk_to_key,
  key_fits = key_fits,
  verify = verify,
  is_key = is_key,
  constant_time_eq = constant_time_eq,
}
_M.__index = _M


-- jwt_decoder:new(token) -> jwt object, or nil and "invalid JSON",
-- "invalid typ", "invalid alg", "invalid claims", "invalid signature".
function _M:new(token)
  if type(token) ~= "string" then
    error("Token must be a string, got " .. tostring(token), 2)
  end
  local jwt, err = decode_token(token)
  if not jwt then
    return nil, err
  end
  return setmetatable(jwt, _M)
end


-- True when the signature verifies with key (the secret for HS*, a PEM
-- public key or key object otherwise) under the token's own `alg`.
-- Callers choose the key, and must check that `alg` is the one the key is
-- meant for (the plugin does: "Invalid algorithm").
function _M:verify_signature(key)
  return (verify(self.header.alg, self.header_64 .. "." .. self.claims_64,
                 self.signature, key))
end


-- True when the three segments use the base64url alphabet only (RFC 7515:
-- no padding, no "+" or "/").
function _M:base64_check()
  for _, s in ipairs({ self.header_64, self.claims_64, self.signature_64 }) do
    if type(s) ~= "string" or find(s, "[^%w%-_]") then
      return false
    end
  end
  return true
end


function _M:base64_decode(input)
  return base64_decode(input)
end


-- Checks the registered claims named in claims_to_verify ("exp", "nbf").
-- Returns true, or false and { claim = "message" }.
function _M:verify_registered_claims(claims_to_verify)
  local errors
  local now = time_now()
  for _, name in ipairs(claims_to_verify or {}) do
    local check = REGISTERED_CLAIMS[name]
    if check then
      local v = self.claims[name]
      local err
      if type(v) ~= "number" then
        err = "must be a number"
      else
        err = check(v, now)
      end
      if err then
        errors = errors or {}
        errors[name] = err
      end
    end
  end
  return errors == nil, errors
end


-- With maximum_expiration > 0, the token's exp may be at most that many
-- seconds ahead. Returns true, or false and { exp = "..." }.
function _M:check_maximum_expiration(maximum_expiration)
  if not maximum_expiration or maximum_expiration <= 0 then
    return true
  end
  local exp = self.claims.exp
  if type(exp) ~= "number" or exp - time_now() > maximum_expiration then
    return false, { exp = "exceeds maximum allowed expiration" }
  end
  return true
end


-- jwt_decoder.encode(claims, key, alg?, header?) -> token. key: the secret
-- (HS*) or a PEM private key. Raises on bad arguments.
function _M.encode(data, key, alg, header)
  if type(data) ~= "table" then
    error("Argument #1 must be table", 2)
  end
  if type(key) ~= "string" then
    error("Argument #2 must be string", 2)
  end
  if header ~= nil and type(header) ~= "table" then
    error("Argument #4 must be a table", 2)
  end
  alg = alg or "HS256"
  if not ALGS[alg] then
    error("Algorithm not supported", 2)
  end
  header = header or { typ = "JWT", alg = alg }
  local signing_input = b64url_encode(json_encode(header)) .. "." ..
                        b64url_encode(json_encode(data))
  return signing_input .. "." .. b64url_encode(sign(alg, signing_input, key))
end


_M.base64_encode = b64url_encode
_M.sign = sign


return _M
