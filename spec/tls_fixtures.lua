-- Test certificates for the TLS specs and benchmarks, made with the openssl
-- command line the first time a run asks for them and kept for the rest of
-- the run (under the spec tmp directory; a mkdir lock makes the first
-- asker build them while the others wait).
--
--   local tls = require("spec.tls_fixtures").get()
--   tls.ca.cert            path of the test CA's certificate (PEM)
--   tls.certs.localhost    { cert, key, cert_pem, key_pem }: CN localhost,
--                          SAN DNS:localhost, IP:127.0.0.1, signed by the CA
--   tls.certs["example.test"], tls.certs["wild.test"] (SAN *.wild.test),
--   tls.certs["other.test"]                   server certificates for SNI
--   tls.client_ca.cert     a second CA that signs the client certificates
--   tls.certs.alice        client: CN alice, SAN DNS:alice.clients.test,
--                          email:alice@clients.test
--   tls.certs.bob          client: CN bob-cn, SAN DNS:bob
--   tls.certs.expired      client: CN alice, valid in 2020 only
--   tls.certs.untrusted    client: CN alice, signed by a CA nobody trusts
--   tls.certs.upstream     server: CN upstream.test, SAN DNS:upstream.test,
--                          DNS:localhost, IP:127.0.0.1 (signed by the CA)
--   tls.certs.revoked      client: CN carol, SAN DNS:carol.clients.test,
--                          signed by the client CA and revoked
--   tls.client_ca.crl_pem  the client CA's CRL (PEM) listing `revoked`
--   tls.ca.crl_pem         the test CA's CRL (PEM), empty
--                          (CRLs: made on first use, in crl/)
-- Every key is ECDSA P-256.

local _M = {}

local fmt = string.format

local function sh(cmd)
  local ok = os.execute(cmd .. " >/dev/null 2>&1")
  if ok ~= 0 and ok ~= true then
    error("command failed: " .. cmd, 2)
  end
end

local function read(path)
  local f = assert(io.open(path, "rb"))
  local s = f:read("*a")
  f:close()
  return s
end

local function write(path, s)
  local f = assert(io.open(path, "wb"))
  f:write(s)
  f:close()
end

local function exists(path)
  local f = io.open(path, "rb")
  if f then
    f:close()
    return true
  end
  return false
end

local KEY = "-newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes"

local function make_ca(dir, name, cn)
  sh(fmt("openssl req -x509 %s -keyout %s/%s.key -out %s/%s.crt -days 3650 " ..
         "-subj '/CN=%s' -addext basicConstraints=critical,CA:TRUE " ..
         "-addext keyUsage=critical,keyCertSign,cRLSign",
         KEY, dir, name, dir, name, cn))
end

-- a leaf signed by `ca` (a name made by make_ca); `san` is the
-- subjectAltName value; dates = { start, end } in openssl ca's format
local function make_leaf(dir, name, ca, cn, san, usage, dates)
  local ext = fmt("%s/%s.ext", dir, name)
  write(ext, fmt("subjectAltName=%s\nbasicConstraints=CA:FALSE\n" ..
                 "extendedKeyUsage=%s\n", san, usage))
  sh(fmt("openssl req -new %s -keyout %s/%s.key -out %s/%s.csr -subj '/CN=%s'",
         KEY, dir, name, dir, name, cn))
  if dates then
    -- `openssl ca` is the only stock way to set both dates
    local db = fmt("%s/%s-ca", dir, name)
    sh(fmt("mkdir -p %s", db))
    write(db .. "/index.txt", "")
    write(db .. "/serial", "1000\n")
    write(db .. "/ca.cnf", fmt([[
[ca]
default_ca = d
[d]
dir = %s
database = $dir/index.txt
serial = $dir/serial
new_certs_dir = $dir
default_md = sha256
policy = p
copy_extensions = none
[p]
commonName = supplied
]], db))
    sh(fmt("openssl ca -batch -config %s/ca.cnf -cert %s/%s.crt -keyfile " ..
           "%s/%s.key -in %s/%s.csr -out %s/%s.crt -startdate %s " ..
           "-enddate %s -extfile %s -notext",
           db, dir, ca, dir, ca, dir, name, dir, name, dates[1], dates[2], ext))
  else
    sh(fmt("openssl x509 -req -in %s/%s.csr -CA %s/%s.crt -CAkey %s/%s.key " ..
           "-CAcreateserial -out %s/%s.crt -days 825 -sha256 -extfile %s",
           dir, name, dir, ca, dir, ca, dir, name, ext))
  end
end

local SERVER = "serverAuth"
local CLIENT = "clientAuth"

local function build(dir)
  make_ca(dir, "ca", "luagate test CA")
  make_ca(dir, "client_ca", "luagate test client CA")
  make_ca(dir, "rogue_ca", "rogue CA")
  make_leaf(dir, "localhost", "ca", "localhost", "DNS:localhost,IP:127.0.0.1",
            SERVER)
  make_leaf(dir, "example.test", "ca", "example.test", "DNS:example.test",
            SERVER)
  make_leaf(dir, "wild.test", "ca", "*.wild.test", "DNS:*.wild.test", SERVER)
  make_leaf(dir, "other.test", "ca", "other.test", "DNS:other.test", SERVER)
  make_leaf(dir, "upstream", "ca", "upstream.test",
            "DNS:upstream.test,DNS:localhost,IP:127.0.0.1", SERVER)
  make_leaf(dir, "alice", "client_ca", "alice",
            "DNS:alice.clients.test,email:alice@clients.test", CLIENT)
  make_leaf(dir, "bob", "client_ca", "bob-cn", "DNS:bob", CLIENT)
  make_leaf(dir, "expired", "client_ca", "alice", "DNS:alice.clients.test",
            CLIENT, { "200101000000Z", "200102000000Z" })
  make_leaf(dir, "untrusted", "rogue_ca", "alice", "DNS:alice.clients.test",
            CLIENT)
  -- chains: leaf followed by its CA, for servers that send the chain
  write(dir .. "/localhost-chain.crt",
        read(dir .. "/localhost.crt") .. read(dir .. "/ca.crt"))
  write(dir .. "/done", "1")
end

-- crl/<ca>.crl: the CRL of CA `ca` (a make_ca name) revoking the leaves
-- named in `revoke` (`openssl ca` keeps them in a CA database)
local function make_crl(dir, ca, revoke)
  local db = fmt("%s/crl/%s", dir, ca)
  sh(fmt("mkdir -p %s", db))
  write(db .. "/index.txt", "")
  write(db .. "/crlnumber", "1000\n")
  write(db .. "/ca.cnf", fmt([[
[ca]
default_ca = d
[d]
dir = %s
database = $dir/index.txt
crlnumber = $dir/crlnumber
default_md = sha256
default_crl_days = 3650
]], db))
  local opts = fmt("-config %s/ca.cnf -cert %s/%s.crt -keyfile %s/%s.key",
                   db, dir, ca, dir, ca)
  for _, leaf in ipairs(revoke) do
    sh(fmt("openssl ca -batch %s -revoke %s/%s.crt", opts, dir, leaf))
  end
  sh(fmt("openssl ca -batch %s -gencrl -out %s/crl/%s.crl", opts, dir, ca))
end

-- the revoked client certificate, the client CA's CRL listing it and an
-- empty CRL of the (server) test CA
local function build_crl(dir)
  make_leaf(dir, "revoked", "client_ca", "carol", "DNS:carol.clients.test",
            CLIENT)
  make_crl(dir, "client_ca", { "revoked" })
  make_crl(dir, "ca", {})
  write(dir .. "/crl/done", "1")
end

local NAMES = { "localhost", "example.test", "wild.test", "other.test",
                "upstream", "alice", "bob", "expired", "untrusted" }

local cached

-- Runs build(dir) once across spec processes: the first to make
-- lock_dir builds and writes done_file, the others wait for it.
local function once(lock_dir, done_file, build_fn, dir)
  if exists(done_file) then
    return
  end
  if os.execute("mkdir '" .. lock_dir .. "' 2>/dev/null") == 0 then
    local ok, err = pcall(build_fn, dir)
    if not ok then
      os.execute("rm -rf '" .. lock_dir .. "'")
      error(err)
    end
  else
    -- another spec process builds them: wait for it
    local socket = require "socket"
    local deadline = socket.gettime() + 60
    while not exists(done_file) do
      if socket.gettime() > deadline then
        error("timed out waiting for " .. done_file)
      end
      socket.sleep(0.1)
    end
  end
end

-- Returns the fixture table (see the top of this file). root: where to
-- keep them (default: the spec tmp directory).
function _M.get(root)
  if cached then
    return cached
  end
  root = root or os.getenv("LUAGATE_SPEC_TMP") or
         ((os.getenv("LUAGATE_ROOT") or os.getenv("PWD") or ".") .. "/spec/.tmp")
  os.execute("mkdir -p '" .. root .. "'")
  local dir = root .. "/tls-fixtures"
  once(dir, dir .. "/done", build, dir)
  -- a later addition: fixtures made before it lack crl/
  once(dir .. "/crl", dir .. "/crl/done", build_crl, dir)
  local t = { dir = dir, certs = {} }
  for _, ca in ipairs({ "ca", "client_ca", "rogue_ca" }) do
    t[ca] = { cert = fmt("%s/%s.crt", dir, ca), key = fmt("%s/%s.key", dir, ca),
              cert_pem = read(fmt("%s/%s.crt", dir, ca)) }
  end
  for _, n in ipairs(NAMES) do
    local c = { cert = fmt("%s/%s.crt", dir, n), key = fmt("%s/%s.key", dir, n) }
    c.cert_pem = read(c.cert)
    c.key_pem = read(c.key)
    t.certs[n] = c
  end
  t.certs.localhost.chain = dir .. "/localhost-chain.crt"
  local revoked = { cert = dir .. "/revoked.crt", key = dir .. "/revoked.key" }
  revoked.cert_pem = read(revoked.cert)
  revoked.key_pem = read(revoked.key)
  t.certs.revoked = revoked
  for _, ca in ipairs({ "ca", "client_ca" }) do
    t[ca].crl = fmt("%s/crl/%s.crl", dir, ca)
    t[ca].crl_pem = read(t[ca].crl)
  end
  cached = t
  return t
end

return _M
