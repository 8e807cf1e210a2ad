-- aggregator: config validation through luagate.config (defaults, call
-- templates compiled at load, names and response paths, policies).
local config = require "luagate.config"
local helpers = require "spec.helpers"

local PLUGINS = { helpers.root .. "/plugins" }


local function load(yaml)
  return config.load_string(yaml, "yaml", "test.yml",
                            { plugins_dirs = PLUGINS })
end


local function plugin_config(yaml)
  local conf, errs = load(yaml)
  assert.is_nil(errs)
  return conf.plugins[1].config
end


-- the errors of a config whose plugin config is `body` (YAML lines
-- indented under "config:")
local function errors_of(body)
  local conf, errs = load([[
_format_version: "3.0"
plugins:
- name: aggregator
  config:
]] .. body)
  assert.is_nil(conf)
  return errs
end


describe("aggregator schema", function()
  it("fills the defaults", function()
    local c = plugin_config([[
_format_version: "3.0"
plugins:
- name: aggregator
  config:
    calls:
    - name: users
      url: http://127.0.0.1:1/users
]])
    assert.equal("first-error", c.status_policy)
    assert.same({}, c.forward_headers)
    assert.equal(1, #c.calls)
    local call = c.calls[1]
    assert.equal("users", call.name)
    assert.equal("http://127.0.0.1:1/users", call.url)
    assert.equal("GET", call.method)
    assert.equal(5000, call.timeout_ms)
    assert.is_true(call.required)
    assert.is_nil(call.path_in_response)
    assert.is_nil(call.headers)
  end)

  it("accepts every field", function()
    local c = plugin_config([[
_format_version: "3.0"
plugins:
- name: aggregator
  config:
    status_policy: ok-if-any
    forward_headers: [Authorization, X-Trace-Id]
    calls:
    - name: user
      url: "http://users.internal:8080/u/$(uri_captures.id)\
        ?lang=$(query_params.lang or 'en')"
      method: POST
      headers:
        X-User: $(headers.x_user)
        X-Tenant: $(shared.tenant.id)
        X-Req: $(request_id)
        X-Static: "static"
      timeout_ms: 250
      required: false
      path_in_response: data.user
    - name: orders
      url: "http://orders.internal/o?user=$(headers[\"X-User\"])\
        &n=$(uri_captures[1])"
]])
    assert.equal("ok-if-any", c.status_policy)
    assert.same({ "Authorization", "X-Trace-Id" }, c.forward_headers)
    local u = c.calls[1]
    assert.equal("POST", u.method)
    assert.equal(250, u.timeout_ms)
    assert.is_false(u.required)
    assert.equal("data.user", u.path_in_response)
    assert.same({
      ["X-User"] = "$(headers.x_user)",
      ["X-Tenant"] = "$(shared.tenant.id)",
      ["X-Req"] = "$(request_id)",
      ["X-Static"] = "static",
    }, u.headers)
  end)

  it("requires calls, with at least one", function()
    assert.same({ "test.yml:5: plugins[0].config.calls: required field " ..
                  "missing" },
                errors_of("    status_policy: worst\n"))
    assert.same({ "test.yml:5: plugins[0].config.calls: length must be " ..
                  "at least 1" },
                errors_of("    calls: []\n"))
  end)

  it("requires a name and a url per call", function()
    assert.same({
      "test.yml:6: plugins[0].config.calls[0].url: required field missing",
      "test.yml:7: plugins[0].config.calls[1].name: required field missing",
    }, errors_of([[
    calls:
    - name: a
    - url: http://h/x
]]))
  end)

  it("refuses templates outside the path and query of a url", function()
    assert.same({ "test.yml:5: plugins[0].config.calls[0].url: templates " ..
                  "are only allowed in the path and query of a url" },
                errors_of([[
    calls: [ { name: a, url: "http://$(headers.host)/x" } ]
]]))
    assert.same({ "test.yml:5: plugins[0].config.calls[0].url: templates " ..
                  "are only allowed in the path and query of a url" },
                errors_of([[
    calls: [ { name: a, url: "http://h:80$(headers.p)/x" } ]
]]))
  end)

  it("refuses unknown names, bad syntax and Lua code in templates", function()
    local cases = {
      { "http://h/$(nope.x)", "invalid template '$(nope.x)': unknown name " ..
        "'nope' (use headers, query_params, uri_captures, shared or " ..
        "request_id)" },
      { "http://h/$(headers)", "invalid template '$(headers)': 'headers' " ..
        "needs a key, such as headers.name" },
      { "http://h/$(headers.a.b)", "invalid template '$(headers.a.b)': " ..
        "'headers' takes one key" },
      { "http://h/$(query_params[1])", "invalid template " ..
        "'$(query_params[1])': 'query_params' takes a name, not a number" },
      { "http://h/$(headers.a or)", "invalid template '$(headers.a or)': " ..
        "expected a string or a number after 'or'" },
      -- no Lua: a call is not an expression
      { "http://h/$(os.execute('x'))", "invalid template " ..
        "'$(os.execute('x')': unexpected character '('" },
      { "http://h/$(headers.a:lower())", "invalid template " ..
        "'$(headers.a:lower()': unexpected character ':'" },
      { "http://h/$(headers.a .. 'x')", "invalid template " ..
        "'$(headers.a .. 'x')': expected a name after '.'" },
      { "http://h/$(headers.a", "unterminated '$(' at position 10" },
      { "http://h/$(headers[\"a\"]", "unterminated '$(' at position 10" },
    }
    for _, case in ipairs(cases) do
      assert.same({ "test.yml:5: plugins[0].config.calls[0].url: " ..
                    case[2] },
                  errors_of("    calls: [ { name: a, url: '" ..
                            case[1]:gsub("'", "''") .. "' } ]\n"))
    end
  end)

  it("checks the url's scheme, host and port at load", function()
    assert.same({ "test.yml:5: plugins[0].config.calls[0].url: https " ..
                  "upstreams are not supported by luagate's HTTP client yet" },
                errors_of("    calls: [ { name: a, url: 'https://h/x' } ]\n"))
    assert.same({ "test.yml:5: plugins[0].config.calls[0].url: " ..
                  "unsupported scheme 'ftp' (use http)" },
                errors_of("    calls: [ { name: a, url: 'ftp://h/x' } ]\n"))
    assert.same({ "test.yml:5: plugins[0].config.calls[0].url: templates " ..
                  "are only allowed in the path and query of a url" },
                errors_of("    calls: [ { name: a, " ..
                          "url: '/x/$(headers.a)' } ]\n"))
    assert.same({ "test.yml:5: plugins[0].config.calls[0].url: missing " ..
                  "scheme in url" },
                errors_of("    calls: [ { name: a, url: '/x/y' } ]\n"))
    assert.same({ "test.yml:5: plugins[0].config.calls[0].url: invalid " ..
                  "port number" },
                errors_of("    calls: [ { name: a, " ..
                          "url: 'http://h:99999/x' } ]\n"))
  end)

  it("checks header templates and names", function()
    assert.same({ "test.yml:8: plugins[0].config.calls[0].headers.X-A: " ..
                  "invalid template '$(cookies.a)': unknown name 'cookies' " ..
                  "(use headers, query_params, uri_captures, shared or " ..
                  "request_id)" },
                errors_of([[
    calls:
    - name: a
      url: http://h/x
      headers: { X-A: "$(cookies.a)" }
]]))
    assert.same({ "test.yml:8: plugins[0].config.calls[0].headers.X-A: " ..
                  "header values must not contain CR or LF" },
                errors_of([[
    calls:
    - name: a
      url: http://h/x
      headers: { X-A: "a\r\nX-Injected: 1" }
]]))
    assert.same({ "test.yml:8: plugins[0].config.calls[0].headers.X A: " ..
                  "bad header name 'X A', allowed characters are A-Z, a-z, " ..
                  "0-9, '_', and '-'" },
                errors_of([[
    calls:
    - name: a
      url: http://h/x
      headers: { "X A": "1" }
]]))
  end)

  it("refuses duplicate names and overlapping response paths", function()
    assert.same({ "test.yml:6: plugins[0].config.calls: calls[1]: " ..
                  "duplicate call name 'a'" },
                errors_of([[
    calls:
    - { name: a, url: "http://h/1" }
    - { name: a, url: "http://h/2", path_in_response: b }
]]))
    assert.same({ "test.yml:6: plugins[0].config.calls: calls[1]: " ..
                  "response path 'data.user' of call 'b' overlaps 'data' " ..
                  "of call 'a'" },
                errors_of([[
    calls:
    - { name: a, url: "http://h/1", path_in_response: data }
    - { name: b, url: "http://h/2", path_in_response: data.user }
]]))
    assert.same({ "test.yml:6: plugins[0].config.calls: calls[1]: " ..
                  "response path 'x' of call 'b' overlaps 'x' of call 'x'" },
                errors_of([[
    calls:
    - { name: x, url: "http://h/1" }
    - { name: b, url: "http://h/2", path_in_response: x }
]]))
    assert.same({ "test.yml:6: plugins[0].config.calls: calls[0]: " ..
                  "'_partial' is reserved for the list of failed optional " ..
                  "calls" },
                errors_of([[
    calls:
    - { name: _partial, url: "http://h/1" }
]]))
    assert.same({ "test.yml:6: plugins[0].config.calls[0]." ..
                  "path_in_response: invalid path 'a..b': empty segment" },
                errors_of([[
    calls:
    - { name: x, url: "http://h/1", path_in_response: "a..b" }
]]))
    -- siblings under one parent are fine
    plugin_config([[
_format_version: "3.0"
plugins:
- name: aggregator
  config:
    calls:
    - { name: a, url: "http://h/1", path_in_response: data.a }
    - { name: b, url: "http://h/2", path_in_response: data.ab }
]])
  end)

  it("checks status_policy, timeout_ms, method and forward_headers", function()
    assert.same({ "test.yml:5: plugins[0].config.status_policy: expected " ..
                  "one of: first-error, worst, ok-if-any" },
                errors_of([[
    status_policy: best
    calls: [ { name: a, url: "http://h/1" } ]
]]))
    assert.same({ "test.yml:5: plugins[0].config.calls[0].timeout_ms: " ..
                  "value should be between 1 and 2147483646" },
                errors_of([[
    calls: [ { name: a, url: "http://h/1", timeout_ms: 0 } ]
]]))
    assert.same({ "test.yml:5: plugins[0].config.calls[0].method: invalid " ..
                  "value: get" },
                errors_of([[
    calls: [ { name: a, url: "http://h/1", method: get } ]
]]))
    assert.same({ "test.yml:5: plugins[0].config.forward_headers[0]: bad " ..
                  "header name 'a b', allowed characters are A-Z, a-z, " ..
                  "0-9, '_', and '-'" },
                errors_of([[
    forward_headers: ["a b"]
    calls: [ { name: a, url: "http://h/1" } ]
]]))
  end)
end)


describe("aggregator templates", function()
  local template = dofile(helpers.root .. "/plugins/aggregator/template.lua")

  it("compiles plain text to a static template", function()
    local t = assert(template.compile("http://h/x?y=1", true))
    assert.equal("http://h/x?y=1", t.static)
    assert.equal("http://h/x?y=1", template.render(t, {}))
  end)

  it("keeps the literal text around lookups", function()
    local t = assert(template.compile("a$(headers.x)b$(request_id)c"))
    assert.is_nil(t.static)
    assert.equal(5, #t.parts)
    assert.equal("a", t.parts[1])
    assert.equal("headers", t.parts[2].ns)
    assert.same({ "x" }, t.parts[2].keys)
    assert.equal("request_id", t.parts[4].ns)
    assert.equal("c", t.parts[5])
  end)

  it("parses bracket keys, numbers and defaults", function()
    local t = assert(template.compile([[$(headers["X-A"] or 'd\'q')]]))
    assert.same({ "X-A" }, t.parts[1].keys)
    assert.equal("d'q", t.parts[1].default)
    t = assert(template.compile("$(uri_captures[2] or 7)"))
    assert.same({ 2 }, t.parts[1].keys)
    assert.equal("7", t.parts[1].default)
    t = assert(template.compile("$( shared.a.b [\"c\"] )"))
    assert.same({ "a", "b", "c" }, t.parts[1].keys)
  end)
end)
