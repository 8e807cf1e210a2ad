-- Keys and tokens for the jwt specs, made with the openssl CLI so that the
-- plugin's own signing code (jwt_parser.encode) only signs HS* tokens.
--
--   local keys = dofile(helpers.root .. "/spec/03-plugins/04-jwt/keys.lua")
--   local k = keys.generate(dir)  -- k.rsa.private (path), k.rsa.public (PEM)
--   keys.token(claims, "ES256", k.ec256)           -- signed by openssl
--   keys.token(claims, "HS256", "secret", header)  -- signed by jwt_parser
--   keys.jwk(k.rsa, "kid-1")                       -- its public JWK
local helpers = require "spec.helpers"
local cjson = require "cjson"
local codec = require "luagate.ngx.codec"

local fmt = string.format
local q = helpers.shell_quote

local M = {}

-- the module under test, as plugins require it
function M.parser()
  if not package.loaded["kong.plugins.jwt.jwt_parser"] then
    package.loaded["kong.plugins.jwt.jwt_parser"] =
      dofile(helpers.root .. "/plugins/jwt/jwt_parser.lua")
  end
  return package.loaded["kong.plugins.jwt.jwt_parser"]
end

local function run(cmd)
  local rc, out, err = helpers.execute(cmd)
  assert(rc == 0, fmt("%s: exit %s: %s", cmd, tostring(rc), err))
  return out
end

M.run = run

local GENPKEY = {
  rsa = "-algorithm RSA -pkeyopt rsa_keygen_bits:2048",
  rsa2 = "-algorithm RSA -pkeyopt rsa_keygen_bits:2048",
  ec256 = "-algorithm EC -pkeyopt ec_paramgen_curve:P-256",
  ec384 = "-algorithm EC -pkeyopt ec_paramgen_curve:P-384",
  ec521 = "-algorithm EC -pkeyopt ec_paramgen_curve:P-521",
  ed25519 = "-algorithm ed25519",
}

-- Generates the keys in dir: { name = { private = path, public = PEM,
-- private_pem = PEM, dir = dir } }.
function M.generate(dir)
  local out = { dir = dir }
  for name, opts in pairs(GENPKEY) do
    local priv = fmt("%s/%s.pem", dir, name)
    local pub = fmt("%s/%s.pub", dir, name)
    run(fmt("openssl genpkey %s -out %s", opts, q(priv)))
    run(fmt("openssl pkey -in %s -pubout -out %s", q(priv), q(pub)))
    out[name] = {
      name = name,
      private = priv,
      public = assert(helpers.read_file(pub)),
      public_path = pub,
      private_pem = assert(helpers.read_file(priv)),
      dir = dir,
    }
  end
  return out
end

-- ECDSA DER signature -> JWS R || S
local function der_to_raw(sig, size)
  local p = 3
  if sig:byte(2) == 0x81 then
    p = 4
  end
  local function int()
    assert(sig:byte(p) == 2, "not a DER INTEGER")
    local l = sig:byte(p + 1)
    local v = sig:sub(p + 2, p + 1 + l)
    p = p + 2 + l
    v = v:gsub("^%z+", "")
    return string.rep("\0", size - #v) .. v
  end
  local r = int()
  local s = int()
  return r .. s
end

local DGST = {
  RS256 = "-sha256", RS384 = "-sha384", RS512 = "-sha512",
  PS256 = "-sha256", PS384 = "-sha384", PS512 = "-sha512",
  ES256 = "-sha256", ES384 = "-sha384", ES512 = "-sha512",
}
local EC_SIZE = { ES256 = 32, ES384 = 48, ES512 = 66 }

local seq = 0

-- Signs input with the private key k (from generate) for alg, with openssl.
function M.openssl_sign(alg, input, k)
  seq = seq + 1
  local data = fmt("%s/data-%d", k.dir, seq)
  local sigf = fmt("%s/sig-%d", k.dir, seq)
  helpers.write_file(data, input)
  if alg == "EdDSA" then
    run(fmt("openssl pkeyutl -sign -inkey %s -rawin -in %s -out %s",
            q(k.private), q(data), q(sigf)))
  else
    local extra = ""
    if alg:sub(1, 2) == "PS" then
      extra = "-sigopt rsa_padding_mode:pss -sigopt rsa_pss_saltlen:digest"
    end
    run(fmt("openssl dgst %s %s -sign %s -out %s %s", DGST[alg], extra,
            q(k.private), q(sigf), q(data)))
  end
  local sig = assert(helpers.read_file(sigf))
  os.remove(data)
  os.remove(sigf)
  if EC_SIZE[alg] then
    sig = der_to_raw(sig, EC_SIZE[alg])
  end
  return sig
end

local b64 = codec.encode_base64url

-- A token: claims (table), alg, key (the secret for HS*, a generated key
-- otherwise), header (default { typ = "JWT", alg = alg }).
function M.token(claims, alg, key, header)
  header = header or { typ = "JWT", alg = alg }
  if alg:sub(1, 2) == "HS" then
    return M.parser().encode(claims, key, alg, header)
  end
  local input = b64(cjson.encode(header)) .. "." .. b64(cjson.encode(claims))
  return input .. "." .. b64(M.openssl_sign(alg, input, key))
end

-- An unsigned token with any header: { "a.b." }
function M.unsigned(claims, header)
  return b64(cjson.encode(header)) .. "." .. b64(cjson.encode(claims)) .. "."
end

local function hex_to_bin(h)
  return (h:gsub("%x%x", function(x) return string.char(tonumber(x, 16)) end))
end

local CURVE = { ec256 = { "P-256", 32 }, ec384 = { "P-384", 48 },
                ec521 = { "P-521", 66 } }

-- The public JWK of a generated key.
function M.jwk(k, kid, extra)
  local jwk
  if k.name == "rsa" or k.name == "rsa2" then
    local mod = run(fmt("openssl rsa -pubin -in %s -modulus -noout",
                        q(k.public_path))):match("Modulus=(%x+)")
    jwk = { kty = "RSA", n = b64(hex_to_bin(mod)), e = "AQAB" }
  elseif CURVE[k.name] then
    local c = CURVE[k.name]
    local der = run(fmt("openssl pkey -pubin -in %s -outform DER",
                        q(k.public_path)))
    local pt = der:sub(-(2 * c[2] + 1))
    assert(pt:byte(1) == 4, "uncompressed point expected")
    jwk = { kty = "EC", crv = c[1], x = b64(pt:sub(2, c[2] + 1)),
            y = b64(pt:sub(c[2] + 2)) }
  else
    local der = run(fmt("openssl pkey -pubin -in %s -outform DER",
                        q(k.public_path)))
    jwk = { kty = "OKP", crv = "Ed25519", x = b64(der:sub(-32)) }
  end
  jwk.kid = kid
  for name, v in pairs(extra or {}) do
    jwk[name] = v
  end
  return jwk
end

return M
