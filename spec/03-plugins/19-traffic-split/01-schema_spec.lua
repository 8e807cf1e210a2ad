-- traffic-split: config validation through luagate.config (defaults, rules,
-- conditions, targets and weights, sticky).
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


local function errors_of(body)
  local conf, errs = load([[
_format_version: "3.0"
plugins:
- name: traffic-split
  config:
]] .. body)
  assert.is_nil(conf)
  return errs
end


describe("traffic-split schema", function()
  it("fills the defaults", function()
    local c = plugin_config([[
_format_version: "3.0"
plugins:
- name: traffic-split
  config:
    rules:
    - targets: [ { url: "http://canary:8080", weight: 5 }, { weight: 95 } ]
]])
    assert.is_true(c.response_header)
    assert.is_nil(c.sticky)
    assert.equal(1, #c.rules)
    assert.is_nil(c.rules[1].match)
    assert.same({ { url = "http://canary:8080", weight = 5 }, { weight = 95 } },
                c.rules[1].targets)
  end)

  it("accepts every field", function()
    local c = plugin_config([[
_format_version: "3.0"
plugins:
- name: traffic-split
  config:
    response_header: false
    sticky: { by: header, name: X-User-Id }
    rules:
    - match:
        header: { name: X-Beta, value: "1" }
        cookie: { name: group, regex: "^b" }
        query: { name: v }
        consumer: alice
      targets:
      - { name: beta, service: beta-svc, weight: 100 }
    - targets:
      - { name: old, upstream: pool, weight: 90 }
      - { name: new, url: "https://new.internal:8443/v2", weight: 10 }
]])
    assert.is_false(c.response_header)
    assert.same({ by = "header", name = "X-User-Id" }, c.sticky)
    assert.same({
      header = { name = "X-Beta", value = "1" },
      cookie = { name = "group", regex = "^b" },
      query = { name = "v" },
      consumer = "alice",
    }, c.rules[1].match)
    assert.same({ name = "new", url = "https://new.internal:8443/v2",
                  weight = 10 }, c.rules[2].targets[2])
  end)

  it("requires rules and targets", function()
    assert.same({ "test.yml:5: plugins[0].config.rules: required field " ..
                  "missing" }, errors_of("    response_header: true\n"))
    assert.same({ "test.yml:5: plugins[0].config.rules: length must be at " ..
                  "least 1" }, errors_of("    rules: []\n"))
    assert.same({ "test.yml:6: plugins[0].config.rules[0].targets: " ..
                  "required field missing" },
                errors_of("    rules:\n    - match: { consumer: a }\n"))
    assert.same({ "test.yml:6: plugins[0].config.rules[0].targets: length " ..
                  "must be at least 1" },
                errors_of("    rules:\n    - targets: []\n"))
  end)

  it("checks weights", function()
    assert.same({ "test.yml:6: plugins[0].config.rules[0].targets[0]." ..
                  "weight: required field missing" },
                errors_of("    rules:\n" ..
                          "    - targets: [ { url: 'http://a' } ]\n"))
    assert.same({ "test.yml:6: plugins[0].config.rules[0].targets[0]." ..
                  "weight: value should be between 0 and 100" },
                errors_of("    rules:\n    - targets: [ { weight: 101 } ]\n"))
    assert.same({ "test.yml:6: plugins[0].config.rules[0].targets[0]." ..
                  "weight: expected an integer" },
                errors_of("    rules:\n    - targets: [ { weight: 2.5 } ]\n"))
    assert.same({ "test.yml:6: plugins[0].config.rules[0].targets: the " ..
                  "weights of a rule's targets must not all be 0" },
                errors_of("    rules:\n    - targets: [ { weight: 0 }, " ..
                          "{ url: 'http://a', weight: 0 } ]\n"))
  end)

  it("checks targets", function()
    assert.same({ "test.yml:6: plugins[0].config.rules[0].targets[0]: only " ..
                  "one or none of these fields must be set: 'url', " ..
                  "'service', 'upstream'" },
                errors_of("    rules:\n    - targets: [ { url: 'http://a', " ..
                          "service: s, weight: 1 } ]\n"))
    assert.same({ "test.yml:6: plugins[0].config.rules[0].targets[0].url: " ..
                  "missing scheme in url" },
                errors_of("    rules:\n    - targets: [ { url: 'canary:80', " ..
                          "weight: 1 } ]\n"))
    assert.same({ "test.yml:6: plugins[0].config.rules[0].targets[0].url: " ..
                  "unsupported scheme 'grpc' (use http or https)" },
                errors_of("    rules:\n    - targets: [ { url: 'grpc://a', " ..
                          "weight: 1 } ]\n"))
    assert.same({ "test.yml:6: plugins[0].config.rules[0].targets[0].url: " ..
                  "a target url takes no query or fragment" },
                errors_of("    rules:\n" ..
                          "    - targets: [ { url: 'http://a/?x=1', " ..
                          "weight: 1 } ]\n"))
    assert.same({ "test.yml:6: plugins[0].config.rules[0].targets[0].url: " ..
                  "invalid port number" },
                errors_of("    rules:\n" ..
                          "    - targets: [ { url: 'http://a:70000', " ..
                          "weight: 1 } ]\n"))
  end)

  it("checks match conditions", function()
    assert.same({ "test.yml:6: plugins[0].config.rules[0].match.header: " ..
                  "only one or none of these fields must be set: 'value', " ..
                  "'regex'" },
                errors_of([[
    rules:
    - match: { header: { name: X-A, value: a, regex: b } }
      targets: [ { weight: 1 } ]
]]))
    assert.same({ "test.yml:6: plugins[0].config.rules[0].match.cookie." ..
                  "regex: invalid regex '(a': missing closing parenthesis " ..
                  "at offset 2" },
                errors_of([[
    rules:
    - match: { cookie: { name: c, regex: "(a" } }
      targets: [ { weight: 1 } ]
]]))
    assert.same({ "test.yml:6: plugins[0].config.rules[0].match.header." ..
                  "name: bad header name 'X A', allowed characters are " ..
                  "A-Z, a-z, 0-9, '_', and '-'" },
                errors_of([[
    rules:
    - match: { header: { name: "X A" } }
      targets: [ { weight: 1 } ]
]]))
    assert.same({ "test.yml:6: plugins[0].config.rules[0].match.query." ..
                  "name: required field missing" },
                errors_of([[
    rules:
    - match: { query: { value: a } }
      targets: [ { weight: 1 } ]
]]))
    assert.same({ "test.yml:6: plugins[0].config.rules[0].match.ip: " ..
                  "unknown field" },
                errors_of([[
    rules:
    - match: { ip: 127.0.0.1 }
      targets: [ { weight: 1 } ]
]]))
  end)

  it("checks sticky", function()
    assert.same({ "test.yml:5: plugins[0].config.sticky.name: required " ..
                  "field missing" },
                errors_of([[
    sticky: { by: cookie }
    rules: [ { targets: [ { weight: 1 } ] } ]
]]))
    assert.same({ "test.yml:5: plugins[0].config.sticky.by: expected one " ..
                  "of: consumer, header, cookie, ip" },
                errors_of([[
    sticky: { by: session }
    rules: [ { targets: [ { weight: 1 } ] } ]
]]))
    assert.same({ by = "ip" }, plugin_config([[
_format_version: "3.0"
plugins:
- name: traffic-split
  config:
    sticky: { by: ip }
    rules: [ { targets: [ { weight: 1 } ] } ]
]]).sticky)
  end)
end)
