-- HTTP/2 to clients: h2 by ALPN on "ssl http2" listeners, prior knowledge
-- (h2c) on plain "http2" listeners beside HTTP/1.1, each stream through the
-- ordinary request path (plugins, X-Forwarded-*, bodies both ways), many
-- streams on one connection, resets, the rapid-reset defence, header limits,
-- idle and graceful close. Clients: curl, h2load, and spec/fixtures/h2_raw.py
-- for frames curl would never send.
local helpers = require "spec.helpers"
local tls = require("spec.tls_fixtures").get()

local fmt = string.format

local RAW = (os.getenv("LUAGATE_ROOT") or ".") .. "/spec/fixtures/h2_raw.py"

local q = helpers.shell_quote

-- curl; returns http_version (string), status (number), body, curl's exit
-- code, stderr. opts: scheme ("https"), h2 ("alpn", "prior", false),
-- path, extra (string)
local function curl(port, opts)
  opts = opts or {}
  local scheme = opts.scheme or "https"
  local mode = ""
  if opts.h2 == "prior" then
    mode = "--http2-prior-knowledge"
  elseif opts.h2 ~= false then
    mode = "--http2"
  end
  local cmd = fmt("curl -sS --max-time 20 %s --cacert %s " ..
                  "-w '\\n%%{http_version} %%{http_code}' %s %s",
                  mode, q(tls.ca.cert),
                  q(fmt("%s://127.0.0.1:%d%s", scheme, port,
                        opts.path or "/echo")),
                  opts.extra or "")
  local rc, out, err = helpers.execute(cmd)
  local body, version, code = out:match("^(.*)\n(%S+) (%d+)$")
  return version, tonumber(code), body, rc, err
end

local function raw(port, ...)
  local args = { ... }
  for i, a in ipairs(args) do args[i] = q(a) end
  local rc, out, err = helpers.execute(fmt("timeout 30 %s %s %d %s",
    q(helpers.python), q(RAW), port, table.concat(args, " ")))
  return out, rc, err
end

local function sha1_of(path)
  local _, out = helpers.execute("sha1sum " .. q(path))
  return out:match("^(%x+)")
end

describe("HTTP/2", function()
  local mock, gw, tls_port, h2c_port, h11_tls_port, dir

  lazy_setup(function()
    mock = helpers.mock_upstream()
    tls_port = helpers.get_free_port()
    h2c_port = helpers.get_free_port()
    h11_tls_port = helpers.get_free_port()
    dir = helpers.make_prefix("h2data")
    local err
    gw, err = helpers.start_luagate({
      workers = 1,
      config = {
        _format_version = "3.0",
        services = {
          { name = "echo", url = fmt("http://127.0.0.1:%d", mock.port),
            routes = {
              { name = "echo", paths = { "/echo", "/bytes", "/delay" },
                strip_path = false },
              { name = "plug", paths = { "/plug" }, strip_path = false,
                plugins = {
                { name = "request-transformer",
                  config = { add = { headers = { "x-h2-added:yes" } } } },
                { name = "response-transformer",
                  config = { add = { headers = { "x-resp-added:yes" } } } },
                { name = "pre-function", config = { access = { [[
                  kong.service.request.set_header("x-seen-version",
                    tostring(kong.request.get_http_version()))
                  kong.service.request.set_header("x-seen-scheme",
                    kong.request.get_scheme())
                  kong.service.request.set_header("x-seen-ip",
                    kong.client.get_ip())
                  kong.service.request.set_header("x-seen-protocol",
                    ngx.var.server_protocol)
                  kong.service.request.set_header("x-seen-server",
                    ngx.var.server_addr .. ":" .. ngx.var.server_port)
                ]] } } },
              } },
            } },
        },
      },
      args = { "--listen", fmt("127.0.0.1:%d ssl http2", tls_port),
               "--listen", fmt("127.0.0.1:%d http2", h2c_port),
               "--listen", fmt("127.0.0.1:%d ssl", h11_tls_port),
               "--ssl-cert", tls.certs.localhost.chain,
               "--ssl-key", tls.certs.localhost.key,
               "--keepalive-timeout", "1500", "--send-timeout", "2000",
               "--client-body-timeout", "2000" },
    })
    assert(gw, err)
    helpers.wait_until(function()
      return helpers.port_open(tls_port) and helpers.port_open(h2c_port) and
             helpers.port_open(h11_tls_port)
    end, 10)
  end)

  lazy_teardown(function()
    helpers.stop_luagate(gw)
    if mock then mock.stop() end
  end)

  describe("negotiation", function()
    it("speaks h2 over TLS when ALPN offers it", function()
      local version, status, body, rc, err = curl(tls_port)
      assert.equal(0, rc, err)
      assert.equal("2", version)
      assert.equal(200, status)
      local echo = helpers.json_decode(body)
      assert.equal("https", echo.headers["x-forwarded-proto"])
      assert.equal("127.0.0.1", echo.headers["x-forwarded-for"])
      -- the upstream request is HTTP/1.1, with a Host from :authority
      assert.equal("HTTP/1.1", echo.http_version)
      assert.equal("/echo", echo.path)
    end)

    it("speaks h2c with prior knowledge on a plain http2 listener", function()
      local version, status, body, rc, err = curl(h2c_port,
        { scheme = "http", h2 = "prior", path = "/echo?a=1&b=2" })
      assert.equal(0, rc, err)
      assert.equal("2", version)
      assert.equal(200, status)
      local echo = helpers.json_decode(body)
      assert.equal("http", echo.headers["x-forwarded-proto"])
      assert.same({ a = "1", b = "2" }, echo.query)
    end)

    it("keeps HTTP/1.1 working on the same plain http2 listener", function()
      local version, status, body, rc, err = curl(h2c_port,
        { scheme = "http", h2 = false })
      assert.equal(0, rc, err)
      assert.equal("1.1", version)
      assert.equal(200, status)
      assert.equal("/echo", helpers.json_decode(body).path)
    end)

    it("keeps http/1.1 on an ssl listener without http2", function()
      local version, status, _, rc, err = curl(h11_tls_port)
      assert.equal(0, rc, err)
      assert.equal("1.1", version)
      assert.equal(200, status)
      local _, out = helpers.execute(fmt(
        "echo | timeout 10 openssl s_client -connect 127.0.0.1:%d " ..
        "-alpn h2,http/1.1 2>&1", h11_tls_port))
      assert.matches("ALPN protocol: http/1.1", out, 1, true)
      local _, out2 = helpers.execute(fmt(
        "echo | timeout 10 openssl s_client -connect 127.0.0.1:%d " ..
        "-alpn http/1.1,h2 2>&1", tls_port))
      assert.matches("ALPN protocol: h2", out2, 1, true)
    end)
  end)

  describe("the request path", function()
    it("runs the route's plugins on h2 requests", function()
      local version, status, body, rc, err = curl(tls_port,
        { path = "/plug", extra = "-D " .. q(dir .. "/plug.h") })
      assert.equal(0, rc, err)
      assert.equal("2", version)
      assert.equal(200, status)
      local echo = helpers.json_decode(body)
      assert.equal("yes", echo.headers["x-h2-added"])
      assert.equal("2", echo.headers["x-seen-version"])
      assert.equal("https", echo.headers["x-seen-scheme"])
      assert.equal("127.0.0.1", echo.headers["x-seen-ip"])
      assert.equal("HTTP/2.0", echo.headers["x-seen-protocol"])
      assert.equal("127.0.0.1:" .. tls_port, echo.headers["x-seen-server"])
      local head = helpers.read_file(dir .. "/plug.h")
      assert.matches("\nx%-resp%-added: yes\r?\n", head)
    end)

    it("reports version 1.1 to plugins on an HTTP/1.1 request", function()
      local version, status, body = curl(h2c_port,
        { scheme = "http", h2 = false, path = "/plug" })
      assert.equal("1.1", version)
      assert.equal(200, status)
      local echo = helpers.json_decode(body)
      assert.equal("1.1", echo.headers["x-seen-version"])
      assert.equal("HTTP/1.1", echo.headers["x-seen-protocol"])
      assert.equal("127.0.0.1:" .. h2c_port, echo.headers["x-seen-server"])
      assert.equal("http", echo.headers["x-seen-scheme"])
    end)

    it("answers 404 for an unknown route", function()
      local version, status, body, rc, err = curl(tls_port,
        { path = "/nowhere" })
      assert.equal(0, rc, err)
      assert.equal("2", version)
      assert.equal(404, status)
      assert.equal("no Route matched with those values",
                   helpers.json_decode(body).message)
    end)

    it("logs h2 requests with the client's address", function()
      local version, status = curl(tls_port, { path = "/echo/logged-h2" })
      assert.equal("2", version)
      assert.equal(200, status)
      local found
      helpers.wait_until(function()
        for _, e in ipairs(helpers.access_log_entries(gw)) do
          if e.path == "/echo/logged-h2" then
            found = e
          end
        end
        return found
      end, 5)
      assert.equal("127.0.0.1", found.client_ip)
      assert.equal(200, found.status)
      assert.equal("echo", found.route)
    end)
  end)

  describe("bodies", function()
    local small = "field=value&other=1"

    lazy_setup(function()
      helpers.write_file(dir .. "/small.txt", small)
      helpers.execute("head -c 2097152 /dev/urandom > " .. q(dir .. "/big.bin"))
    end)

    it("forwards a small POST body with Content-Length", function()
      local version, status, body = curl(tls_port, { extra =
        "--data-binary @" .. q(dir .. "/small.txt") })
      assert.equal("2", version)
      assert.equal(200, status)
      local echo = helpers.json_decode(body)
      assert.equal(small, echo.body)
      assert.equal(tostring(#small), echo.headers["content-length"])
      assert.falsy(echo.body_chunked)
    end)

    it("forwards a small POST body without Content-Length", function()
      local version, status, body = curl(tls_port, { extra =
        "-X POST -T - < " .. q(dir .. "/small.txt") })
      assert.equal("2", version)
      assert.equal(200, status)
      local echo = helpers.json_decode(body)
      assert.equal(small, echo.body)
      assert.is_nil(echo.headers["content-length"])
      assert.truthy(echo.body_chunked)
    end)

    it("forwards a 2 MiB body with Content-Length", function()
      local version, status, body = curl(tls_port, { extra =
        "--data-binary @" .. q(dir .. "/big.bin") })
      assert.equal("2", version)
      assert.equal(200, status)
      local echo = helpers.json_decode(body)
      assert.equal(2097152, echo.body_size)
      assert.equal(sha1_of(dir .. "/big.bin"), echo.body_sha1)
      assert.falsy(echo.body_chunked)
    end)

    it("forwards a 2 MiB body without Content-Length (h2c)", function()
      local version, status, body = curl(h2c_port, { scheme = "http",
        h2 = "prior", extra = "-X POST -T - < " .. q(dir .. "/big.bin") })
      assert.equal("2", version)
      assert.equal(200, status)
      local echo = helpers.json_decode(body)
      assert.equal(2097152, echo.body_size)
      assert.equal(sha1_of(dir .. "/big.bin"), echo.body_sha1)
      assert.truthy(echo.body_chunked)
    end)

    it("answers Expect: 100-continue at once", function()
      local _, out, err = helpers.execute(fmt(
        "curl -sS -v --http2 --max-time 20 --cacert %s -o /dev/null " ..
        "-H 'Expect: 100-continue' --data-binary @%s " ..
        "-w '%%{http_version} %%{http_code}' https://127.0.0.1:%d/echo",
        q(tls.ca.cert), q(dir .. "/big.bin"), tls_port))
      assert.equal("2 200", out)
      assert.matches("< HTTP/2 100", err, 1, true)
    end)

    it("sends a 3 MB response whole", function()
      local out = dir .. "/resp.bin"
      local version, status, _, rc, err = curl(tls_port, { path =
        "/bytes/3000000", extra = "-o " .. q(out) })
      assert.equal(0, rc, err)
      assert.equal("2", version)
      assert.equal(200, status)
      local data = helpers.read_file(out)
      assert.equal(3000000, #data)
    end)

    it("answers HEAD without a body", function()
      local version, status, _, rc, err = curl(tls_port, { path =
        "/bytes/100", extra = "-I" })
      assert.equal(0, rc, err)
      assert.equal("2", version)
      assert.equal(200, status)
    end)
  end)

  describe("streams", function()
    it("serves 1000 requests on one connection, 50 at a time", function()
      local rc, out = helpers.execute(fmt(
        "h2load -n 1000 -c 1 -m 50 https://127.0.0.1:%d/echo 2>&1", tls_port))
      assert.equal(0, rc, out)
      assert.matches("status codes: 1000 2xx, 0 3xx, 0 4xx, 0 5xx", out, 1,
                     true)
      assert.matches("1000 succeeded, 0 failed, 0 errored", out, 1, true)
    end)

    it("serves many concurrent streams over h2c too", function()
      local rc, out = helpers.execute(fmt(
        "h2load -n 400 -c 2 -m 100 http://127.0.0.1:%d/echo 2>&1", h2c_port))
      assert.equal(0, rc, out)
      assert.matches("status codes: 400 2xx, 0 3xx, 0 4xx, 0 5xx", out, 1,
                     true)
    end)

    it("a stream reset by the client does not disturb the others", function()
      local out = raw(h2c_port, "reset-one")
      assert.matches("^stream 3 200 %d+\n$", out)
      assert.not_matches("stream 1 answered", out, 1, true)
    end)

    it("refuses streams over the concurrency limit of 128", function()
      -- before the client acknowledged SETTINGS: REFUSED_STREAM (it may retry)
      assert.equal("ok 128 refused 12 other 0\n",
                   raw(h2c_port, "over-limit", "140"))
      -- after: the client broke the limit it agreed to (nghttp2 then ends
      -- the connection with PROTOCOL_ERROR)
      assert.matches("^goaway 1\n", raw(h2c_port, "over-limit", "140",
                                          "acked"))
      -- at the limit, all of them are served
      assert.equal("ok 128 refused 0 other 0\n",
                   raw(h2c_port, "over-limit", "128", "acked"))
    end)

    it("answers 431 to a header list over the limit", function()
      assert.equal("status 431\n", raw(h2c_port, "big-headers", "40000"))
      assert.equal("status 200\n", raw(h2c_port, "big-headers", "1000"))
    end)

    it("closes a client that resets streams in a burst", function()
      local out = raw(h2c_port, "rapid-reset", "500")
      assert.matches("goaway 11\n", out, 1, true) -- ENHANCE_YOUR_CALM
      assert.matches("closed\n", out, 1, true)
      -- a client within the bound is left alone (until the idle timeout,
      -- which says NO_ERROR)
      local ok = raw(h2c_port, "rapid-reset", "100")
      assert.matches("^goaway [0n]", ok)
      -- and other connections never noticed
      local version, status = curl(tls_port)
      assert.equal("2", version)
      assert.equal(200, status)
    end)

    it("closes a client that never opens its window after the send timeout",
       function()
      local out = raw(h2c_port, "stall")
      local secs = tonumber(out:match("^closed (%S+)\n$"))
      assert.truthy(secs, out)
      assert.truthy(secs >= 1.5 and secs < 6, out)
    end)

    it("resets a stream answered early whose request never ends", function()
      local out = raw(h2c_port, "linger")
      local status, code, secs = out:match("^status (%d+)\nrst (%d+) (%S+)\n$")
      assert.equal("404", status, out)
      assert.equal("0", code, out) -- NO_ERROR
      secs = tonumber(secs)
      assert.truthy(secs >= 1.5 and secs < 6, out)
    end)

    it("closes an idle connection after the keepalive timeout", function()
      local out = raw(h2c_port, "idle")
      local secs = tonumber(out:match("^closed (%S+)"))
      assert.truthy(secs, out)
      assert.truthy(secs >= 1.0 and secs < 5, out)
    end)
  end)
end)

describe("HTTP/2 listeners", function()
  it("refuses http2 on the admin listener", function()
    local rc, _, err = helpers.luagate_exec({ "run", "-c", "/dev/null",
      "--admin-listen", "127.0.0.1:0 http2" })
    assert.equal(2, rc)
    assert.matches("'http2' is not supported on the admin listener", err, 1,
                   true)
  end)

  it("lets open streams finish on a graceful stop", function()
    local mock = helpers.mock_upstream()
    local port = helpers.get_free_port()
    local gw = assert(helpers.start_luagate({
      config = {
        _format_version = "3.0",
        services = { { name = "s", url = fmt("http://127.0.0.1:%d", mock.port),
                       routes = { { name = "r", paths = { "/" } } } } },
      },
      args = { "--listen", fmt("127.0.0.1:%d ssl http2", port),
               "--ssl-cert", tls.certs.localhost.chain,
               "--ssl-key", tls.certs.localhost.key },
    }))
    helpers.wait_until(function() return helpers.port_open(port) end, 10)
    local out = gw.prefix .. "/slow.out"
    os.execute(fmt("curl -sS --http2 --cacert %s -o /dev/null " ..
                   "-w '%%{http_version} %%{http_code}' " ..
                   "https://127.0.0.1:%d/delay/1 > %s 2>&1 &",
                   q(tls.ca.cert), port, q(out)))
    helpers.wait_until(function()
      return #mock.requests() > 0
    end, 5)
    helpers.signal(gw, "TERM")
    assert.equal(0, helpers.wait_exit(gw, 10))
    helpers.wait_until(function()
      return (helpers.read_file(out) or "") ~= ""
    end, 5)
    assert.equal("2 200", helpers.read_file(out))
    mock.stop()
  end)
end)
