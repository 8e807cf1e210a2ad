-- syslog: config validation through luagate.config.
local config = require "luagate.config"
local helpers = require "spec.helpers"

local PLUGINS = { helpers.root .. "/plugins" }

local SEVERITIES = "debug, info, notice, warning, err, crit, alert, emerg"


local function load(config_yaml)
  return config.load_string([[
_format_version: "3.0"
plugins:
- name: syslog
]] .. config_yaml, "yaml", "test.yml", { plugins_dirs = PLUGINS })
end


describe("syslog schema", function()
  it("fills Kong's defaults (and luagate's socket_path)", function()
    for _, y in ipairs({ "", "  config: {}\n" }) do
      local conf, errs = load(y)
      assert.is_nil(errs)
      assert.same({
        log_level = "info",
        successful_severity = "info",
        client_errors_severity = "info",
        server_errors_severity = "info",
        facility = "user",
        socket_path = "/dev/log",
      }, conf.plugins[1].config)
    end
  end)

  it("accepts every severity and facility", function()
    for _, sev in ipairs({ "debug", "info", "notice", "warning", "err",
                           "crit", "alert", "emerg" }) do
      local conf, errs = load(("  config:\n    log_level: %s\n" ..
                               "    successful_severity: %s\n" ..
                               "    client_errors_severity: %s\n" ..
                               "    server_errors_severity: %s\n")
                              :format(sev, sev, sev, sev))
      assert.is_nil(errs, sev)
      assert.equal(sev, conf.plugins[1].config.server_errors_severity)
    end
    for _, fac in ipairs({ "auth", "authpriv", "cron", "daemon", "ftp",
                           "kern", "lpr", "mail", "news", "syslog", "user",
                           "uucp", "local0", "local7" }) do
      local conf, errs = load("  config:\n    facility: " .. fac .. "\n")
      assert.is_nil(errs, fac)
      assert.equal(fac, conf.plugins[1].config.facility)
    end
  end)

  it("refuses bad values", function()
    local conf, errs = load([[
  config:
    log_level: warn
    successful_severity: x
    client_errors_severity: 1
    server_errors_severity: error
    facility: local8
    socket_path: dev/log
    custom_fields_by_lua:
      a: "retur 1"
]])
    assert.is_nil(conf)
    assert.same({
      "test.yml:5: plugins[0].config.log_level: expected one of: " ..
        SEVERITIES,
      "test.yml:6: plugins[0].config.successful_severity: expected one " ..
        "of: " .. SEVERITIES,
      "test.yml:7: plugins[0].config.client_errors_severity: expected a " ..
        "string",
      "test.yml:8: plugins[0].config.server_errors_severity: expected " ..
        "one of: " .. SEVERITIES,
      "test.yml:9: plugins[0].config.facility: expected one of: auth, " ..
        "authpriv, cron, daemon, ftp, kern, lpr, mail, news, syslog, " ..
        "user, uucp, local0, local1, local2, local3, local4, local5, " ..
        "local6, local7",
      "test.yml:10: plugins[0].config.socket_path: should start with: /",
      "test.yml:12: plugins[0].config.custom_fields_by_lua.a: error " ..
        "parsing custom_fields_by_lua: custom_fields_by_lua:1: '=' " ..
        "expected near '1'",
    }, errs)
    conf, errs = load("  config:\n    socket_path: /" .. ("a"):rep(107) ..
                      "\n")
    assert.is_nil(conf)
    assert.same({ "test.yml:5: plugins[0].config.socket_path: length must " ..
                  "not exceed 107" }, errs)
  end)

  it("describes every config field", function()
    local schema = dofile(helpers.root .. "/plugins/syslog/schema.lua")
    for _, item in ipairs(schema.fields) do
      local name, f = next(item)
      if name == "config" then
        for _, fi in ipairs(f.fields) do
          local fname, fdef = next(fi)
          assert.is_string(fdef.description, fname)
          assert.truthy(#fdef.description >= 10, fname)
          assert.truthy(#fdef.description <= 500, fname)
        end
      end
    end
  end)
end)
