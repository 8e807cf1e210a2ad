-- bin/luagate's command line: version, help, check, run with env vars.
local helpers = require "spec.helpers"

describe("CLI", function()
  it("version prints 'luagate X.Y.Z'", function()
    local rc, out = helpers.luagate_exec({ "version" })
    assert.equal(0, rc)
    assert.matches("^luagate %d+%.%d+%.%d+%s*$", out)
  end)

  it("--help documents run, check, version, the flags and env vars",
     function()
    local rc, out, err = helpers.luagate_exec({ "--help" })
    assert.equal(0, rc)
    local text = out .. err
    for _, word in ipairs({ "run", "check", "version", "--listen",
                            "--admin-listen", "--workers", "--plugins-dir",
                            "--log-level", "--access-log", "--error-log",
                            "--pid", "--client-header-timeout",
                            "--client-body-timeout", "--keepalive-timeout",
                            "--max-header-size", "--max-body-size",
                            "--drain-timeout", "LUAGATE_LISTEN",
                            "LUAGATE_WORKERS", "LUAGATE_ACCESS_LOG" }) do
      assert.truthy(text:find(word, 1, true), "--help does not mention " ..
                    word)
    end
  end)

  it("an unknown command or flag exits non-zero", function()
    local rc = helpers.luagate_exec({ "frobnicate" })
    assert.not_equal(0, rc)
    rc = helpers.luagate_exec({ "run", "--no-such-flag" })
    assert.not_equal(0, rc)
  end)

  describe("check", function()
    local dir

    lazy_setup(function()
      dir = helpers.make_prefix("cli")
    end)

    it("exits 0 on a valid config", function()
      local path = helpers.write_file(dir .. "/ok.yml", [[
_format_version: "3.0"
services:
- name: s1
  url: http://127.0.0.1:15555/base
  routes:
  - name: r1
    paths:
    - /demo
]])
      local rc, out, err = helpers.luagate_exec({ "check", "-c", path })
      assert.equal(0, rc, out .. err)
    end)

    it("exits 1 and prints FILE:LINE: path: message for each error",
       function()
      -- line 10: a path that is neither a prefix nor a regex (Kong requires
      -- a leading / or ~); line 13: a method that is not a string
      local path = helpers.write_file(dir .. "/bad.yml", [[
_format_version: "3.0"
services:
- name: s1
  url: http://127.0.0.1:15555
  routes:
  - name: r0
    paths: [/ok]
  - name: r1
    paths:
    - "no-leading-slash"
  - name: r2
    paths: [/fine]
    methods: [7]
]])
      local rc, out, err = helpers.luagate_exec({ "check", "-c", path })
      assert.equal(1, rc, out .. err)
      local first = err:match("[^\n]+") or ""
      local want = path .. ":10: services[0].routes[1].paths[0]: "
      assert.equal(want, first:sub(1, #want))
      assert.truthy(#first > #want, "no message: " .. first)
      assert.truthy(err:find("services[0].routes[2].methods[0]", 1, true),
                    "second error missing: " .. err)
    end)

    it("exits 1 on a file that does not parse", function()
      local path = helpers.write_file(dir .. "/broken.yml",
                                      "_format_version: \"3.0\"\nservices: [\n")
      local rc, out, err = helpers.luagate_exec({ "check", "-c", path })
      assert.equal(1, rc, out .. err)
      assert.truthy(err:find(path, 1, true), err)
    end)

    it("exits 1 on a missing file", function()
      local rc = helpers.luagate_exec({ "check", "-c", dir .. "/nope.yml" })
      assert.equal(1, rc)
    end)

    it("accepts the config in JSON", function()
      local path = helpers.make_config_file(helpers.simple_config(15555), dir)
      local rc, out, err = helpers.luagate_exec({ "check", "-c", path })
      assert.equal(0, rc, out .. err)
    end)
  end)

  describe("run", function()
    local mock
    local gw

    lazy_setup(function()
      mock = helpers.mock_upstream()
    end)

    lazy_teardown(function()
      helpers.stop_luagate(gw)
      mock.stop()
    end)

    it("takes its settings from LUAGATE_* variables", function()
      local dir = helpers.make_prefix("cli-env")
      local cfg = helpers.make_config_file(helpers.simple_config(mock.port),
                                           dir)
      local port = helpers.get_free_port()
      local admin = helpers.get_free_port()
      local err
      gw, err = helpers.start_luagate({
        config = cfg,
        no_listen = true,
        proxy_port = port,
        admin_port = admin,
        env = {
          LUAGATE_LISTEN = "127.0.0.1:" .. port,
          LUAGATE_ADMIN_LISTEN = "127.0.0.1:" .. admin,
          LUAGATE_ACCESS_LOG = dir .. "/env-access.log",
          LUAGATE_ERROR_LOG = dir .. "/env-error.log",
          LUAGATE_WORKERS = "1",
        },
      })
      assert(gw, err)
      local res = assert(helpers.proxy_client(gw):get("/request"))
      assert.res_status(200, res)
      helpers.wait_until(function()
        local data = helpers.read_file(dir .. "/env-access.log") or ""
        return data:find("/request", 1, true)
      end, 5)
      assert.truthy(helpers.read_file(dir .. "/env-error.log"))
      local st = assert(helpers.admin_status(gw))
      assert.equal(1, st.workers)
    end)

    it("exits non-zero when the config is invalid", function()
      local dir = helpers.make_prefix("cli-bad")
      local path = helpers.write_file(dir .. "/bad.yml",
                                      "_format_version: \"3.0\"\nservices: 3\n")
      local g = helpers.start_luagate({ config = path, wait = false })
      local rc = helpers.wait_exit(g, 10)
      assert.is_number(rc)
      assert.not_equal(0, rc)
    end)
  end)
end)
