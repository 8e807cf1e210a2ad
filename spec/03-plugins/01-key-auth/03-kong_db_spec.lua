-- kong.db (luagate.db) over a loaded declarative config, the jwt_secrets
-- entity it registers (the others: in each plugin's schema spec), and
-- luagate.auth's constant-time comparison.
local db = require "luagate.db"
local auth = require "luagate.auth"
local request = require "luagate.request"
local config = require "luagate.config"
local helpers = require "spec.helpers"

local PLUGINS = { helpers.root .. "/plugins",
                  helpers.root .. "/spec/fixtures/plugins" }

local EC_PUBLIC_KEY = [[
-----BEGIN PUBLIC KEY-----
MFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAEW4jSlN8in1GWuxItfCK0L3rpvzaX
pNRXpKOdlODoV6P/IOYIsGAMElVqjP8Ed1FdApiDz6tAqbmqvZoTGblVmQ==
-----END PUBLIC KEY-----]]

local YAML = [[
_format_version: "3.0"
services:
- name: svc
  url: http://127.0.0.1:1
  routes:
  - name: rt
    paths: [/r]
    plugins:
    - name: key-auth
consumer_groups:
- name: gold
- name: silver
consumers:
- username: alice
  custom_id: A-1
  tags: [team-a]
  groups: [gold, silver]
  keyauth_credentials:
  - key: k-alice
  basicauth_credentials:
  - username: al
    password: s3cret
  acls:
  - group: admins
  - group: users
  jwt_secrets:
  - key: iss-alice
    secret: hs-secret
- username: Bob
  keyauth_credentials:
  - key: k-bob
  - tags: [keyless]
- custom_id: only-custom
plugins:
- name: rt-conf
  consumer_group: gold
  config: { label: gold }
]]


local function load(yaml)
  local conf, errs = config.load_string(yaml, "yaml", "test.yml",
                                        { plugins_dirs = PLUGINS })
  assert.is_nil(errs)
  return conf
end


describe("kong.db", function()
  local conf

  before_each(function()
    conf = load(YAML)
    db.set_current(conf)
  end)

  after_each(function()
    db.set_current(nil)
    request.cur = nil
  end)

  it("is DB-less", function()
    assert.equal("off", db.strategy)
  end)

  it("selects consumers by id, username and custom_id", function()
    local alice = db.consumers:select_by_username("alice")
    assert.equal(conf.consumers[1].id, alice.id)
    assert.equal("A-1", alice.custom_id)
    assert.same({ "team-a" }, alice.tags)
    assert.equal(alice, db.consumers:select({ id = alice.id }))
    assert.equal(alice, db.consumers:select_by_custom_id("A-1"))
    assert.equal("only-custom",
                 db.consumers:select_by_custom_id("only-custom").custom_id)
    assert.is_nil(db.consumers:select_by_username("nobody"))
    assert.is_nil(db.consumers:select({ id = "nope" }))
    -- the same entity every time (built once per config)
    assert.equal(alice, db.consumers:select_by_username("alice"))
  end)

  it("shows consumers without their credentials and groups", function()
    local alice = db.consumers:select_by_username("alice")
    local keys = {}
    for k in pairs(alice) do
      keys[#keys + 1] = k
    end
    table.sort(keys)
    assert.same({ "custom_id", "id", "tags", "username" }, keys)
    -- the runloop finds consumer-scoped plugins through this
    assert.equal(1, alice.__index_in_conf)
    assert.equal(2, db.consumers:select_by_username("Bob").__index_in_conf)
  end)

  it("finds usernames ignoring case", function()
    local list = db.consumers:select_by_username_ignore_case("BOB")
    assert.equal(1, #list)
    assert.equal("Bob", list[1].username)
    assert.same({}, db.consumers:select_by_username_ignore_case("zed"))
  end)

  it("selects credentials linked to their consumer as { id = }", function()
    local alice = db.consumers:select_by_username("alice")
    local k = db.keyauth_credentials:select_by_key("k-alice")
    assert.same({ id = alice.id }, k.consumer)
    assert.equal(conf.consumers[1].keyauth_credentials[1].id, k.id)
    assert.equal(k, db.keyauth_credentials:select({ id = k.id }))
    assert.is_nil(db.keyauth_credentials:select_by_key("k-nope"))
    local b = db.basicauth_credentials:select_by_username("al")
    assert.same({ id = alice.id }, b.consumer)
    local j = db.jwt_secrets:select_by_key("iss-alice")
    assert.equal("HS256", j.algorithm)
    assert.equal("hs-secret", j.secret)
  end)

  it("gives a credential without key a random 32-hex key", function()
    local bob = db.consumers:select_by_username("Bob")
    local keys = {}
    for row in db.keyauth_credentials:each_for_consumer({ id = bob.id }) do
      keys[#keys + 1] = row.key
    end
    assert.equal(2, #keys)
    assert.equal("k-bob", keys[1])
    assert.truthy(keys[2]:match("^%x+$"))
    assert.equal(32, #keys[2])
    assert.equal(db.keyauth_credentials:select_by_key(keys[2]).tags[1],
                 "keyless")
    -- another generation draws another key
    db.set_current(load(YAML))
    local again = db.keyauth_credentials:select_by_key(keys[2])
    assert.is_nil(again)
  end)

  it("stores basic-auth passwords as sha1(password .. consumer id)",
     function()
    local alice = db.consumers:select_by_username("alice")
    local b = db.basicauth_credentials:select_by_username("al")
    local sha1 = require("luagate.ngx.codec").sha1_bin
    local hex = require("luagate.ngx.codec").to_hex
    assert.equal(hex(sha1("s3cret" .. alice.id)), b.password)
    assert.equal(b.password, db.basicauth_hash("s3cret", alice.id))
    -- the config itself keeps what was given
    assert.equal("s3cret",
                 conf.consumers[1].basicauth_credentials[1].password)
  end)

  it("keeps basic-auth passwords as given with _transform: false",
     function()
    local c = load([[
_format_version: "3.0"
_transform: false
consumers:
- username: u
  basicauth_credentials:
  - username: u1
    password: 0123456789abcdef0123456789abcdef01234567
]])
    db.set_current(c)
    assert.equal("0123456789abcdef0123456789abcdef01234567",
                 db.basicauth_credentials:select_by_username("u1").password)
  end)

  it("iterates with each, each_for_consumer and page", function()
    local names = {}
    for row, err, page in db.consumers:each() do
      assert.is_nil(err)
      assert.equal(1, page)
      names[#names + 1] = row.username or row.custom_id
    end
    assert.same({ "alice", "Bob", "only-custom" }, names)

    local pages = {}
    for _, _, page in db.consumers:each(2) do
      pages[#pages + 1] = page
    end
    assert.same({ 1, 1, 2 }, pages)

    local alice = db.consumers:select_by_username("alice")
    local groups = {}
    for row in db.acls:each_for_consumer({ id = alice.id }) do
      groups[#groups + 1] = row.group
    end
    assert.same({ "admins", "users" }, groups)
    assert.is_nil(db.acls:each_for_consumer({ id = "nope" })())

    local rows, err, err_t, offset = db.consumers:page(2)
    assert.is_nil(err)
    assert.is_nil(err_t)
    assert.equal(2, #rows)
    assert.equal("alice", rows[1].username)
    assert.is_string(offset)
    rows, err, err_t, offset = db.consumers:page(2, offset)
    assert.is_nil(err)
    assert.is_nil(err_t)
    assert.equal(1, #rows)
    assert.equal("only-custom", rows[1].custom_id)
    assert.is_nil(offset)

    rows = db.acls:page_for_consumer({ id = alice.id }, 1)
    assert.equal(1, #rows)
    assert.equal(3, db.consumers:count())
  end)

  it("refuses bad arguments as Kong does", function()
    assert.has_error(function() db.consumers:select("id") end,
                     "primary_key must be a table")
    assert.has_error(function() db.consumers:select_by_username(5) end,
                     "username must be a string")
    assert.has_error(function() db.consumers:each("x") end,
                     "size must be a number")
    assert.has_error(function() db.acls:each_for_consumer("id") end,
                     "consumer must be a table")
    local it, err = db.consumers:each(0)
    assert.is_nil(it)
    assert.equal("size must be an integer between 1 and 50000", err)
    local rows
    rows, err = db.consumers:page(10, "zzz")
    assert.is_nil(rows)
    assert.equal("'zzz' is not a valid offset", err)
    rows, err = db.consumers:select({ id = 42 })
    assert.is_nil(rows)
    assert.equal("invalid primary key: 'id' must be a string", err)
  end)

  it("makes Kong's cache keys", function()
    local alice = db.consumers:select_by_username("alice")
    assert.equal("consumers:" .. alice.id .. ":::::",
                 db.consumers:cache_key(alice.id))
    assert.equal("consumers:" .. alice.id .. ":::::",
                 db.consumers:cache_key(alice))
    assert.equal("keyauth_credentials:k-alice:::::",
                 db.keyauth_credentials:cache_key("k-alice"))
    assert.equal("keyauth_credentials:k-alice:::::",
                 db.keyauth_credentials:cache_key(
                   db.keyauth_credentials:select_by_key("k-alice")))
    assert.equal("acls:c1:g1::::",
                 db.acls:cache_key({ consumer = { id = "c1" },
                                     group = "g1" }))
    assert.equal("plugins:acl:r:s:c::", db.plugins:cache_key({
      name = "acl", route = { id = "r" }, service = { id = "s" },
      consumer = { id = "c" } }))
    assert.equal("plugins:a:b:c:d:e:", db.plugins:cache_key("a", "b", "c",
                                                           "d", "e"))
    assert.has_error(function() db.consumers:cache_key(true) end,
                     "key must be a string or an entity table")
  end)

  it("refuses writes", function()
    local ok, err = db.consumers:insert({ username = "x" })
    assert.is_nil(ok)
    assert.equal("cannot modify 'consumers' entities: the configuration " ..
                 "is declarative (DB-less)", err)
    assert.is_nil((db.keyauth_credentials:delete({ id = "x" })))
    assert.is_nil((db.consumers:update_by_username("alice", {})))
  end)

  it("shows routes, services, plugins and consumer groups", function()
    local svc = db.services:select_by_name("svc")
    assert.equal("127.0.0.1", svc.host)
    local rt = db.routes:select_by_name("rt")
    assert.same({ id = svc.id }, rt.service)
    assert.is_nil(rt.phases)
    local list = {}
    for r in db.routes:each_for_service({ id = svc.id }) do
      list[#list + 1] = r.name
    end
    assert.same({ "rt" }, list)

    local gold = db.consumer_groups:select_by_name("gold")
    assert.equal(conf.consumer_groups[1].id, gold.id)
    local plugins = {}
    for p in db.plugins:each() do
      plugins[p.name] = p
    end
    assert.same({ id = rt.id }, plugins["key-auth"].route)
    assert.is_nil(plugins["key-auth"].config.route_id)
    assert.same({ "apikey" }, plugins["key-auth"].config.key_names)
    assert.same({ id = gold.id }, plugins["rt-conf"].consumer_group)
    local scoped = {}
    for p in db.plugins:each_for_consumer_group({ id = gold.id }) do
      scoped[#scoped + 1] = p.name
    end
    assert.same({ "rt-conf" }, scoped)
  end)

  it("names the consumer groups of a consumer", function()
    local alice = db.consumers:select_by_username("alice")
    assert.same({ "gold", "silver" }, db.consumer_group_names(alice.id))
    assert.is_nil(db.consumer_group_names("nope"))
  end)

  it("keeps each consumer's acl groups as a list and a set", function()
    local alice = db.consumers:select_by_username("alice")
    assert.same({ "admins", "users", admins = "admins", users = "users" },
                db.acl_groups(alice.id))
    assert.is_nil(db.acl_groups(db.consumers:select_by_username("Bob").id))
  end)

  it("lets an old config be collected with its indexes", function()
    local probe = setmetatable({}, { __mode = "k" })
    local old = load(YAML)
    db.set_current(old)
    local alice = db.consumers:select_by_username("alice")
    assert.equal(1, alice.__index_in_conf)
    for _ in db.plugins:each() do end
    probe[old] = true
    probe[alice] = true
    old, alice = nil, nil -- luacheck: ignore 311 (drop the references)
    db.set_current(conf)
    collectgarbage()
    collectgarbage()
    assert.is_nil(next(probe))
  end)

  it("reads the running request's config before the current one",
     function()
    local other = load([[
_format_version: "3.0"
consumers:
- username: zed
]])
    request.cur = { conf = other }
    assert.is_nil(db.consumers:select_by_username("alice"))
    assert.equal("zed", db.consumers:select_by_username("zed").username)
    request.cur = { phase = "timer" } -- no conf: the current one
    assert.equal("alice", db.consumers:select_by_username("alice").username)
    request.cur = nil
    db.set_current(nil)
    assert.is_nil(db.consumers:select_by_username("alice"))
    assert.same({}, { db.consumers:each()() })
  end)
end)


describe("jwt_secrets", function()
  local function errors(yaml)
    local _, errs = config.load_string(yaml, "yaml", "test.yml",
                                       { plugins_dirs = PLUGINS })
    return errs
  end

  it("default to HS256 and need a valid public key otherwise", function()
    assert.is_nil(errors([[
_format_version: "3.0"
consumers:
- username: u
  jwt_secrets:
  - key: a
  - key: b
    algorithm: ES256
    rsa_public_key: |
]] .. EC_PUBLIC_KEY:gsub("[^\n]+", "      %0") .. [[

  - key: c
    algorithm: HS512
    secret: s
]]))
    assert.same({
      "test.yml:5: consumers[0].jwt_secrets[0].rsa_public_key: required " ..
        "field missing",
      "test.yml:9: consumers[0].jwt_secrets[1].rsa_public_key: invalid key",
      "test.yml:11: consumers[0].jwt_secrets[2].algorithm: expected one " ..
        "of: HS256, HS384, HS512, RS256, RS384, RS512, ES256, ES384, " ..
        "ES512, PS256, PS384, PS512, EdDSA",
      "test.yml:14: jwt_secrets[0].key: uniqueness violation: " ..
        "'jwt_secrets' entity with key set to 'a' already declared",
    }, errors([[
_format_version: "3.0"
consumers:
- username: u
  jwt_secrets:
  - key: a
    algorithm: RS256
  - key: b
    algorithm: EdDSA
    rsa_public_key: not a key
  - key: c
    algorithm: none
jwt_secrets:
- consumer: u
  key: a
]]))
  end)

  it("get a random key and secret when absent", function()
    local conf = load([[
_format_version: "3.0"
consumers:
- username: u
  jwt_secrets:
  - {}
]])
    db.set_current(conf)
    local row = db.jwt_secrets:each()()
    assert.equal(32, #row.key)
    assert.equal(32, #row.secret)
    assert.not_equal(row.key, row.secret)
    db.set_current(nil)
  end)
end)


describe("auth.constant_time_eq", function()
  it("compares strings", function()
    local eq = auth.constant_time_eq
    assert.is_true(eq("", ""))
    assert.is_true(eq("abc", "abc"))
    assert.is_false(eq("abc", "abd"))
    assert.is_false(eq("abc", "ab"))
    assert.is_false(eq("ab", "abc"))
    assert.is_false(eq("", "a"))
    assert.is_false(eq("a", ""))
    assert.is_false(eq("abc\0", "abc"))
    assert.is_false(eq(nil, "a"))
    assert.is_false(eq("a", nil))
    assert.is_false(eq(1, 1))
    local long = string.rep("x", 4096)
    assert.is_true(eq(long, long .. ""))
    assert.is_false(eq(long, long:sub(1, -2) .. "y"))
  end)
end)
