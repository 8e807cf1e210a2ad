-- syslog through the real binary, against a unix datagram socket the spec
-- binds (config.socket_path): RFC 3164 messages as syslog(3) writes them
-- ("<PRI>Mmm dd hh:mm:ss kong[pid]: <json>"), the severity of each class
-- of status, log_level filtering, facilities, custom fields, redaction, a
-- missing socket.
local helpers = require "spec.helpers"
local unix = require "socket.unix"

local fmt = string.format

local LINE = "^<(%d+)>(%u%l%l [ %d]%d %d%d:%d%d:%d%d) kong%[(%d+)%]: (.*)$"


local function syslog_server(path)
  local sock = assert(unix.dgram())
  assert(sock:bind(path))
  sock:settimeout(0)
  local srv = { path = path, received = {} }
  function srv.poll()
    while true do
      local data = sock:receive()
      if not data then
        break
      end
      srv.received[#srv.received + 1] = data
    end
    return srv.received
  end
  -- waits for a message whose JSON request.uri is uri; returns
  -- pri, timestamp, pid, entry, raw
  function srv.wait_for(uri, timeout)
    return helpers.wait_until(function()
      for _, m in ipairs(srv.poll()) do
        local pri, ts, pid, json = m:match(LINE)
        local e = json and helpers.json_decode(json)
        if e and e.request.uri == uri then
          return tonumber(pri), ts, tonumber(pid), e, m
        end
      end
    end, timeout or 10)
  end
  -- true when a message for uri came
  function srv.has(uri)
    for _, m in ipairs(srv.poll()) do
      local json = select(4, m:match(LINE))
      local e = json and helpers.json_decode(json)
      if e and e.request.uri == uri then
        return true
      end
    end
    return false
  end
  function srv.close()
    sock:close()
    os.remove(path)
  end
  return srv
end


describe("syslog", function()
  local mock, srv, gw, client, dir

  lazy_setup(function()
    mock = helpers.mock_upstream()
    dir = helpers.make_prefix("syslog")
    srv = syslog_server(dir .. "/log.sock")

    local function route(name, conf)
      conf.socket_path = conf.socket_path or srv.path
      return { name = name, paths = { "/" .. name },
               plugins = { { name = "syslog", config = conf } } }
    end

    gw = assert(helpers.start_luagate({
      config = {
        _format_version = "3.0",
        services = {
          { name = "mock-svc", url = fmt("http://127.0.0.1:%d", mock.port),
            routes = {
              route("default", {}),
              route("classes", {
                log_level = "debug",
                successful_severity = "notice",
                client_errors_severity = "warning",
                server_errors_severity = "crit",
                facility = "local3",
              }),
              route("filtered", {
                log_level = "warning",
                successful_severity = "info",
                client_errors_severity = "warning",
                server_errors_severity = "err",
              }),
              route("custom", {
                custom_fields_by_lua = {
                  ["tags.env"] = "return 'spec'",
                  latencies = "return nil",
                },
              }),
              route("nosocket", { socket_path = dir .. "/missing.sock" }),
            } },
        },
      },
    }))
  end)

  lazy_teardown(function()
    if gw then helpers.stop_luagate(gw) end
    if srv then srv.close() end
    if mock then mock.stop() end
  end)

  before_each(function()
    client = helpers.proxy_client(gw)
  end)

  after_each(function()
    if client then client:close() end
  end)

  it("sends RFC 3164 messages with the log object as JSON", function()
    local res = client:get("/default/x", {
      headers = { Authorization = "Basic c3lzbG9nOnNlY3JldA==" },
    })
    assert.res_status(200, res)
    local pri, ts, pid, e, raw = srv.wait_for("/default/x")
    assert.equal(1 * 8 + 6, pri) -- user.info
    local month = os.date("%b")
    assert.equal(month, ts:sub(1, 3))
    local workers = helpers.worker_pids(gw)
    local found = false
    for _, w in ipairs(workers) do
      found = found or tonumber(w) == pid
    end
    assert.is_true(found, pid)
    assert.equal(200, e.response.status)
    assert.equal("default", e.route.name)
    assert.equal("REDACTED", e.request.headers.authorization)
    assert.is_nil(raw:find("c3lzbG9nOnNlY3JldA", 1, true))
  end)

  it("picks the severity by status class, at the facility", function()
    assert.res_status(200, client:get("/classes/status/200"))
    assert.res_status(404, client:get("/classes/status/404"))
    assert.res_status(503, client:get("/classes/status/503"))
    local local3 = 19 * 8
    assert.equal(local3 + 5, (srv.wait_for("/classes/status/200"))) -- notice
    assert.equal(local3 + 4, (srv.wait_for("/classes/status/404"))) -- warning
    assert.equal(local3 + 2, (srv.wait_for("/classes/status/503"))) -- crit
  end)

  it("sends nothing less severe than log_level", function()
    assert.res_status(200, client:get("/filtered/status/200")) -- info
    assert.res_status(404, client:get("/filtered/status/404")) -- warning
    assert.res_status(500, client:get("/filtered/status/500")) -- err
    assert.equal(1 * 8 + 4, (srv.wait_for("/filtered/status/404")))
    assert.equal(1 * 8 + 3, (srv.wait_for("/filtered/status/500")))
    -- one worker, one timer, in order: the 200 would have come first
    assert.is_false(srv.has("/filtered/status/200"))
  end)

  it("applies custom_fields_by_lua", function()
    assert.res_status(200, client:get("/custom/1"))
    local _, _, _, e = srv.wait_for("/custom/1")
    assert.same({ env = "spec" }, e.tags)
    assert.is_nil(e.latencies)
  end)

  it("logs a socket it cannot send to; requests go on", function()
    assert.res_status(200, client:get("/nosocket"))
    helpers.wait_until(function()
      local data = helpers.read_file(gw.error_log) or ""
      return data:find("[syslog] could not send to " .. dir ..
                       "/missing.sock: No such file or directory (1 of 1 " ..
                       "log entries lost)", 1, true)
    end, 10)
  end)
end)
