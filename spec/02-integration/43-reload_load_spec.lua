-- Reloads under load: requests on keepalive connections across 20 SIGHUP
-- reloads of a medium config (2,000 routes, 200 consumers with key-auth
-- credentials) all succeed. spec/bench/config_swap.sh measures the latency.
local helpers = require "spec.helpers"

local fmt = string.format

local RELOADS = 20
local PER_RELOAD = 30 -- requests per client between two reloads
local CLIENTS = 3

local function config(mock_port)
  local services = {}
  for s = 1, 20 do
    local routes = {}
    for r = 1, 100 do
      routes[r] = { name = fmt("s%d-r%d", s, r),
                    paths = { fmt("/s%d/r%d", s, r) } }
      if r % 25 == 1 then
        routes[r].paths = { fmt("~/s%d/re%d/\\d+$", s, r) }
      end
    end
    if s == 1 then
      routes[#routes + 1] = { name = "load", paths = { "/load" } }
    end
    services[s] = { name = "svc-" .. s,
                    url = fmt("http://127.0.0.1:%d", mock_port),
                    routes = routes }
  end
  services[2].plugins = { { name = "key-auth" } }
  local consumers = {}
  for c = 1, 200 do
    consumers[c] = { username = "u" .. c,
                     keyauth_credentials = { { key = "k" .. c } } }
  end
  return { _format_version = "3.0", services = services,
           consumers = consumers }
end

-- The same config as JSON text written in a fixed order (a worker reuses
-- the entities of elements whose text did not change): `edit` gives route
-- 7 of service 5 another path; `terminate` puts request-termination (418)
-- on route s3-r2 at the top level; `broken` makes service 7 invalid;
-- `yaml`: as YAML text, in block style.
local function config_text(mock_port, opts)
  if opts.yaml then
    local out = { '_format_version: "3.0"\nservices:\n' }
    for s = 1, 20 do
      out[#out + 1] = fmt("- name: svc-%d\n  url: http://127.0.0.1:%s\n" ..
                          "  routes:\n", s,
                          (opts.broken and s == 7) and "x" or mock_port)
      for r = 1, 100 do
        local path = fmt("/s%d/r%d", s, r)
        if opts.edit and s == 5 and r == 7 then
          path = "/edited/s5r7"
        end
        out[#out + 1] = fmt("  - name: s%d-r%d\n    paths:\n    - %s\n",
                            s, r, path)
      end
    end
    if opts.terminate then
      out[#out + 1] = "plugins:\n- name: request-termination\n" ..
                      "  route: s3-r2\n  config:\n    status_code: 418\n"
    end
    return table.concat(out)
  end
  local services = {}
  for s = 1, 20 do
    local routes = {}
    for r = 1, 100 do
      local path = fmt("/s%d/r%d", s, r)
      if opts.edit and s == 5 and r == 7 then
        path = "/edited/s5r7"
      end
      routes[r] = fmt('{"name":"s%d-r%d","paths":["%s"]}', s, r, path)
    end
    services[s] = fmt('{"name":"svc-%d","url":"http://127.0.0.1:%s",' ..
                      '"routes":[%s]}', s,
                      (opts.broken and s == 7) and "x" or mock_port,
                      table.concat(routes, ","))
  end
  local plugins = opts.terminate and
    ',"plugins":[{"name":"request-termination","route":"s3-r2",' ..
    '"config":{"status_code":418}}]' or ""
  return fmt('{"_format_version":"3.0","services":[%s]%s}',
             table.concat(services, ","), plugins)
end


local function count_loads(gw)
  local n = 0
  for _, line in ipairs(helpers.file_lines(gw.error_log)) do
    if line:find("configuration %x+ loaded") then
      n = n + 1
    end
  end
  return n
end

-- Reloads of the file with an edit, a plugin on a route whose element did
-- not change, a refused file and back (config_text; `yaml`: the YAML
-- text): the worker reuses what did not change and serves what did.
local function reuse_across_reloads(gw, mock_port, yaml)
  local function status(path)
    return helpers.request_once(gw.proxy_port, { path = path }).status
  end
  local function reload(text)
    local before = helpers.admin_status(gw).config_hash
    helpers.write_file(gw.config_path, text)
    helpers.signal(gw, "HUP")
    return helpers.wait_new_config(gw, before, 30)
  end
  -- the reuse lines the worker logged, and the last one's counts
  local function reused_lines()
    local n, reused, of = 0, nil, nil
    for _, line in ipairs(helpers.file_lines(gw.error_log)) do
      local a, b = line:match("(%d+) of (%d+) entities validated by " ..
                              "the last reload, reused")
      if a then
        n, reused, of = n + 1, tonumber(a), tonumber(b)
      end
    end
    return n, reused, of
  end
  local plain = config_text(mock_port, { yaml = yaml })
  assert.is_true(#plain >= 64 * 1024) -- (decoded in pieces)
  assert.is_true(reload(plain))
  assert.equal(200, status("/s3/r2"))
  local reused = reused_lines()
  -- a plugin on a route whose element did not change: the route's
  -- phases change (the runloop's copy of a reused route)
  assert.is_true(reload(config_text(mock_port, { terminate = true,
                                                 edit = true, yaml = yaml })))
  local n, got, of = reused_lines()
  assert.is_true(n > reused)
  -- all but service 5 with its 100 routes, and the new plugin
  assert.equal(2021, of)
  assert.equal(2021 - 102, got)
  assert.equal(418, status("/s3/r2"))
  assert.equal(200, status("/s3/r3"))
  assert.equal(200, status("/edited/s5r7"))
  assert.equal(404, status("/s5/r7"))
  assert.is_true(reload(plain))
  assert.equal(200, status("/s3/r2"))
  assert.equal(200, status("/s5/r7"))
  assert.equal(404, status("/edited/s5r7"))
  -- a file refused: the running configuration stays
  local function count_failures()
    local n = 0
    for _, line in ipairs(helpers.file_lines(gw.error_log)) do
      if line:find("reload failed, keeping the running configuration", 1,
                   true) then
        n = n + 1
      end
    end
    return n
  end
  local failures = count_failures()
  helpers.write_file(gw.config_path, config_text(mock_port,
    { terminate = true, edit = true, broken = true, yaml = yaml }))
  helpers.signal(gw, "HUP")
  helpers.wait_until(function()
    return count_failures() > failures
  end, 30)
  assert.equal(200, status("/s3/r2"))
  assert.equal(200, status("/s5/r7"))
  assert.is_true(reload(config_text(mock_port, { terminate = true,
                                                 yaml = yaml })))
  assert.equal(418, status("/s3/r2"))
  assert.equal(200, status("/s5/r7"))
end

describe("reloads under load", function()
  local mock, gw

  lazy_setup(function()
    mock = helpers.mock_upstream()
    local err
    gw, err = helpers.start_luagate({ config = config(mock.port),
                                      format = "json" })
    assert(gw, err)
  end)

  lazy_teardown(function()
    if gw then helpers.stop_luagate(gw) end
    if mock then mock.stop() end
  end)

  it("serves every request on keepalive connections across 20 reloads",
     function()
    local clients = {}
    for i = 1, CLIENTS do
      clients[i] = helpers.proxy_client(gw, 10)
    end
    local before = count_loads(gw)
    local sent, failed, errors = 0, 0, {}
    local function round()
      for _ = 1, PER_RELOAD do
        for i = 1, CLIENTS do
          local res, err = clients[i]:send({ path = "/load" })
          sent = sent + 1
          if not res or res.status ~= 200 then
            failed = failed + 1
            errors[#errors + 1] = res and ("status " .. res.status) or err
            clients[i]:close()
            clients[i] = helpers.proxy_client(gw, 10)
          end
        end
      end
    end
    round()
    for r = 1, RELOADS do
      helpers.signal(gw, "HUP")
      -- keep the clients busy until the worker took this reload (signals
      -- sent while the master validates would merge)
      local deadline = os.time() + 30
      repeat
        round()
      until count_loads(gw) - before >= r or os.time() > deadline
      assert.equal(r, count_loads(gw) - before)
    end
    round()
    for _, c in ipairs(clients) do c:close() end
    assert.is_true(sent >= CLIENTS * PER_RELOAD * (RELOADS + 2))
    assert.same({}, errors)
    assert.equal(0, failed)
  end)

  it("ends on the latest of reloads ordered while one is loading", function()
    local a, b = config(mock.port), config(mock.port)
    a.services[1].routes[1] = { name = "only-a", paths = { "/only-a" } }
    b.services[1].routes[1] = { name = "only-b", paths = { "/only-b" } }
    -- a slow-to-load config, then another at once: the worker takes the
    -- second while (or after) it loads the first, never the other way
    assert(helpers.reload_luagate(gw, a, { wait = false }))
    helpers.sleep(0.05)
    assert(helpers.reload_luagate(gw, b, { wait = false }))
    helpers.wait_until(function()
      local res = helpers.request_once(gw.proxy_port, { path = "/only-b" })
      return res and res.status == 200
    end, 30)
    helpers.sleep(1) -- anything still queued would have landed by now
    assert.equal(200, helpers.request_once(gw.proxy_port, { path = "/only-b" }).status)
    assert.equal(404, helpers.request_once(gw.proxy_port, { path = "/only-a" }).status)
  end)
  it("reuses what did not change across reloads, and serves what did",
     function()
    reuse_across_reloads(gw, mock.port)
  end)
end)

describe("reloads of a YAML file", function()
  local mock, gw

  lazy_setup(function()
    mock = helpers.mock_upstream()
    local err
    gw, err = helpers.start_luagate({ config = config(mock.port),
                                      format = "yaml" })
    assert(gw, err)
  end)

  lazy_teardown(function()
    if gw then helpers.stop_luagate(gw) end
    if mock then mock.stop() end
  end)

  it("reuse what did not change across reloads, and serve what did",
     function()
    reuse_across_reloads(gw, mock.port, true)
  end)
end)
