-- request-transformer: config validation through luagate.config (Kong's
-- fields and defaults, "name:value" entries, header names and values,
-- templates compiled at load, http_method).
local config = require "luagate.config"
local helpers = require "spec.helpers"

local PLUGINS = { helpers.root .. "/plugins" }


local function load(config_yaml)
  return config.load_string([[
_format_version: "3.0"
plugins:
- name: request-transformer
]] .. config_yaml, "yaml", "test.yml", { plugins_dirs = PLUGINS })
end


local function errors_of(config_yaml)
  local conf, errs = load(config_yaml)
  assert.is_nil(conf)
  return errs
end


local function config_of(config_yaml)
  local conf, errs = load(config_yaml)
  assert.is_nil(errs)
  return conf.plugins[1].config
end


local TEMPLATE_ERR = "is not in supported format, error: "


describe("request-transformer schema", function()
  it("fills Kong's defaults: every list empty", function()
    local c = config_of("")
    assert.is_nil(c.http_method)
    for _, op in ipairs({ "remove", "rename", "replace", "add", "append" }) do
      assert.same({}, c[op].headers, op)
      assert.same({}, c[op].querystring, op)
      assert.same({}, c[op].body, op)
    end
    assert.is_nil(c.replace.uri)
  end)

  it("accepts a full config", function()
    local c = config_of([[
  config:
    http_method: POST
    remove:
      headers: [X-A, "x-b:ignored"]
      querystring: [q1]
      body: [p1]
    rename:
      headers: ["X-Old:X-New"]
      querystring: ["a:b"]
      body: ["c:d"]
    replace:
      uri: "/users/$(uri_captures.id)"
      headers: ["X-R:$(headers.host)", "Host:example.com"]
      querystring: ["q:$(query_params['q'] or 'none')"]
      body: ["p:v"]
    add:
      headers: ["X-Request-ID:$(request_id)", "X-S:$(shared.user)"]
      querystring: ["n:1"]
      body: ["k:$(uri_captures[1])"]
    append:
      headers: ["X-M:a", "X-M:b"]
      querystring: ["m:1"]
      body: ["m:2"]
]])
    assert.equal("POST", c.http_method)
    assert.same({ "X-A", "x-b:ignored" }, c.remove.headers)
    assert.same({ "X-Old:X-New" }, c.rename.headers)
    assert.equal("/users/$(uri_captures.id)", c.replace.uri)
    assert.same({ "X-Request-ID:$(request_id)", "X-S:$(shared.user)" },
                c.add.headers)
    assert.same({ "X-M:a", "X-M:b" }, c.append.headers)
  end)

  it("wants an uppercase http_method", function()
    assert.same({ "test.yml:5: plugins[0].config.http_method: invalid " ..
                  "value: post" },
                errors_of("  config:\n    http_method: post\n"))
    assert.same({ "test.yml:5: plugins[0].config.http_method: expected a " ..
                  "string" }, errors_of("  config:\n    http_method: 1\n"))
  end)

  it("wants name:value entries", function()
    assert.same({
      "test.yml:6: plugins[0].config.add.headers[0]: invalid value: X-A",
      "test.yml:7: plugins[0].config.add.querystring[0]: key 'q' has no " ..
      "value",
      "test.yml:8: plugins[0].config.add.body[0]: key 'b' has no value",
    }, errors_of([[
  config:
    add:
      headers: [X-A]
      querystring: ["q:"]
      body: [b]
]]))
    assert.same({
      "test.yml:6: plugins[0].config.rename.headers[0]: invalid value: X-A",
      "test.yml:7: plugins[0].config.rename.querystring[0]: invalid value: " ..
      ":x",
    }, errors_of([[
  config:
    rename:
      headers: [X-A]
      querystring: [":x"]
]]))
  end)

  it("checks header names and values", function()
    assert.same({
      "test.yml:6: plugins[0].config.remove.headers[0]: 'X A' is not a " ..
      "valid header",
      "test.yml:8: plugins[0].config.rename.headers[0]: 'b c' is not a " ..
      "valid header",
      "test.yml:10: plugins[0].config.add.headers[0]: 'X@' is not a " ..
      "valid header",
      "test.yml:12: plugins[0].config.append.headers[0]: 'a\rb' is not a " ..
      "valid header",
    }, errors_of([[
  config:
    remove:
      headers: ["X A"]
    rename:
      headers: ["a:b c"]
    add:
      headers: ["X@:1"]
    append:
      headers: ["X-V:a\rb"]
]]))
  end)

  it("compiles templates at load and refuses bad ones", function()
    assert.same({
      "test.yml:6: plugins[0].config.add.headers[0]: value " ..
      "'$(this does not work)' " .. TEMPLATE_ERR .. "in '$(this does not " ..
      "work)': unknown name 'this' at position 1 (use one of: headers, " ..
      "query_params, uri_captures, shared, request_id)",
      "test.yml:7: plugins[0].config.add.querystring[0]: value " ..
      "'$(os.execute(\"id\"))' " .. TEMPLATE_ERR .. "in " ..
      "'$(os.execute(\"id\"))': unknown name 'os' at position 1 (use one " ..
      "of: headers, query_params, uri_captures, shared, request_id)",
      "test.yml:8: plugins[0].config.add.body[0]: value '$(headers)' " ..
      TEMPLATE_ERR .. "in '$(headers)': 'headers' needs a key " ..
      "(headers.<name> or headers[\"<name>\"])",
      "test.yml:10: plugins[0].config.replace.uri: value " ..
      "'/x/$((function() return 1 end)())' " .. TEMPLATE_ERR .. "in " ..
      "'$((function() return 1 end)())': unknown name 'function' at " ..
      "position 2 (use one of: headers, query_params, uri_captures, " ..
      "shared, request_id)",
    }, errors_of([[
  config:
    add:
      headers: ["X-A:$(this does not work)"]
      querystring: ["q:$(os.execute(\"id\"))"]
      body: ["b:$(headers)"]
    replace:
      uri: "/x/$((function() return 1 end)())"
]]))
  end)

  it("refuses malformed expressions", function()
    local cases = {
      ["$(request_id.x)"] = "'request_id' takes no key",
      ["$(headers.host or)"] = "expected a value instead of end of " ..
                               "expression",
      ["$(headers[1 + 1])"] = "unexpected '+' at position 11",
      ["$(\"abc)"] = "unfinished string at position 1",
      ["$(headers.host headers.x)"] = "unexpected 'headers' at position 14",
      ["$(headers..x)"] = "expected a name after '.' at position 8",
      ["$(query_params[x])"] = "expected a string or a number after '[' " ..
                               "at position 13",
      ["$()"] = "empty expression",
      ["$(shared.a; x)"] = "unexpected ';' at position 9",
    }
    for tmpl, msg in pairs(cases) do
      local errs = errors_of("  config:\n    add:\n      querystring: " ..
                             "['q:" .. tmpl .. "']\n")
      assert.equal(1, #errs, tmpl)
      assert.truthy(errs[1]:find(msg, 1, true), tmpl .. ": " .. errs[1])
    end
  end)

  it("accepts the documented template forms", function()
    local c = config_of([[
  config:
    add:
      querystring:
      - "a:$(headers.host)"
      - "b:$(headers[\"x-user\"])"
      - "c:$(query_params.page or \"1\")"
      - "d:$(uri_captures[\"user-id\"] or query_params[\"user\"] or
        \"unknown\")"
      - "e:$(uri_captures[1])"
      - "f:$(shared.user.name)"
      - "g:Basic $(query_params[\"auth\"])"
      - "h:$('$(not a template)')"
      - "i:$(request_id)"
      - "j:plain text with a $ sign and $( unclosed"
      - "k:$( ( headers.host ) )"
]])
    assert.equal(11, #c.add.querystring)
  end)

  it("can be scoped to a consumer, a route or a service", function()
    local conf, errs = config.load_string([[
_format_version: "3.0"
consumers:
- username: bob
  plugins:
  - name: request-transformer
    config:
      add:
        headers: ["X-Bob:1"]
]], "yaml", "test.yml", { plugins_dirs = PLUGINS })
    assert.is_nil(errs)
    assert.equal(1, #conf.plugins)
  end)

  it("describes every config field", function()
    local schema = dofile(helpers.root ..
                          "/plugins/request-transformer/schema.lua")
    local function check(fields, path)
      for _, fi in ipairs(fields) do
        local fname, fdef = next(fi)
        local p = path .. "." .. fname
        assert.is_string(fdef.description, p)
        assert.truthy(#fdef.description >= 10, p)
        assert.truthy(#fdef.description <= 500, p)
        if fdef.type == "record" then
          check(fdef.fields, p)
        end
      end
    end
    for _, item in ipairs(schema.fields) do
      local name, f = next(item)
      if name == "config" then
        check(f.fields, "config")
      end
    end
  end)
end)
