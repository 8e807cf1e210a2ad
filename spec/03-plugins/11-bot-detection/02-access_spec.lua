-- bot-detection through the real binary: the built-in bot list, allow and
-- deny regexes, their order, several User-Agent headers, and a reload
-- giving fresh verdicts (the cache is per config).
local helpers = require "spec.helpers"

local fmt = string.format

local CHROME = "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_11_5) " ..
               "AppleWebKit/537.36 (KHTML, like Gecko) " ..
               "Chrome/50.0.2661.102 Safari/537.36"
local FACEBOOK = "facebookexternalhit/1.1"
local GOOGLEBOT = "Googlebot/2.1 (+http://www.google.com/bot.html)"


local function config(mock_port, routes)
  local list = {}
  for i, rt in ipairs(routes) do
    list[i] = {
      name = "route-" .. i,
      paths = { rt.path },
      plugins = { { name = "bot-detection", config = rt.config } },
    }
  end
  return {
    _format_version = "3.0",
    services = {
      { name = "mock", url = fmt("http://127.0.0.1:%d", mock_port),
        routes = list },
    },
  }
end


local ROUTES = {
  { path = "/default", config = {} },
  { path = "/deny", config = { deny = { "HelloWorld", "^curl/" } } },
  { path = "/allow", config = { allow = { FACEBOOK, "^MyCrawler/" } } },
  { path = "/both", config = { allow = { "^good" }, deny = { "bot" } } },
  { path = "/reload", config = { allow = { "HelloWorld" } } },
}


describe("bot-detection", function()
  local mock, gw, client

  local function status(path, ua)
    local headers = {}
    if ua then
      headers["User-Agent"] = ua
    end
    local res = client:get(path, { headers = headers })
    assert(res, "no response")
    return res.status, res
  end

  lazy_setup(function()
    mock = helpers.mock_upstream()
    gw = assert(helpers.start_luagate({ config = config(mock.port, ROUTES) }))
  end)

  lazy_teardown(function()
    if gw then helpers.stop_luagate(gw) end
    if mock then mock.stop() end
  end)

  before_each(function()
    client = helpers.proxy_client(gw)
  end)

  after_each(function()
    if client then client:close() end
  end)

  it("lets regular clients through", function()
    local res = client:get("/default/request", {
      headers = { ["User-Agent"] = CHROME },
    })
    local echo = assert(helpers.json_decode(assert.res_status(200, res)))
    assert.equal(CHROME, echo.headers["user-agent"])
    for _, ua in ipairs({ "HelloWorld", "curl/7.43.0",
                          "python-requests/2.31.0", "okhttp/4.9.0",
                          "Go-http-client/1.1",
                          "Mozilla/5.0 (Linux; Android 10; CUBOT X30) " ..
                          "AppleWebKit/537.36 Chrome/90 Mobile Safari" }) do
      assert.equal(200, (status("/default", ua)), ua)
    end
  end)

  it("lets requests without User-Agent through", function()
    assert.equal(200, (status("/default")))
    assert.equal(200, (status("/default", "")))
  end)

  it("blocks common bots with 403 Forbidden", function()
    mock.clear()
    local code, res = status("/default", GOOGLEBOT)
    assert.equal(403, code)
    local body = assert(helpers.json_decode(res.body))
    assert.equal("Forbidden", body.message)
    assert.matches("^%x+$", body.request_id)
    for _, ua in ipairs({
      FACEBOOK,
      "Mozilla/5.0 (compatible; bingbot/2.0; " ..
        "+http://www.bing.com/bingbot.htm)",
      "Mozilla/5.0 (compatible; Yahoo! Slurp; " ..
        "http://help.yahoo.com/help/us/ysearch/slurp)",
      "Mozilla/5.0 AppleWebKit/537.36 (KHTML, like Gecko; compatible; " ..
        "GPTBot/1.0; +https://openai.com/gptbot)",
      "Mozilla/5.0 (compatible; Baiduspider/2.0; " ..
        "+http://www.baidu.com/search/spider.html)",
      "ia_archiver", "Scrapy/2.11.0 (+https://scrapy.org)",
      "sqlmap/1.5.2#stable (http://sqlmap.org)",
      "GOOGLEBOT/2.1",
    }) do
      assert.equal(403, (status("/default", ua)), ua)
    end
    assert.same({}, mock.requests())
  end)

  it("blocks denied User-Agents (case-sensitive regexes)", function()
    assert.equal(403, (status("/deny", "HelloWorld")))
    assert.equal(403, (status("/deny", "Say HelloWorld 1.0")))
    assert.equal(403, (status("/deny", "curl/7.43.0")))
    assert.equal(200, (status("/deny", "helloworld")))
    assert.equal(200, (status("/deny", "libcurl/7.43.0")))
    assert.equal(200, (status("/deny", CHROME)))
    -- the built-in list still applies
    assert.equal(403, (status("/deny", GOOGLEBOT)))
  end)

  it("lets allowed User-Agents through, bots included", function()
    assert.equal(200, (status("/allow", FACEBOOK)))
    assert.equal(200, (status("/allow", "MyCrawler/1.0")))
    assert.equal(403, (status("/allow", GOOGLEBOT)))
    assert.equal(403, (status("/default", FACEBOOK)))
  end)

  it("checks allow before deny", function()
    assert.equal(200, (status("/both", "goodbot")))
    assert.equal(403, (status("/both", "badbot")))
    assert.equal(403, (status("/both", "robot")))
    assert.equal(200, (status("/both", "HelloWorld")))
  end)

  it("gives the same verdict again (cached)", function()
    for _ = 1, 3 do
      assert.equal(403, (status("/default", GOOGLEBOT)))
      assert.equal(200, (status("/default", CHROME)))
    end
  end)

  it("examines long User-Agents in linear time", function()
    -- 30,000 bytes (the head limit is 32 KiB): quadratic trimming or
    -- backtracking would take seconds here
    for _, ua in ipairs({ "a" .. string.rep(" ", 30000) .. "b",
                          string.rep("1", 30000),
                          string.rep("cubo", 7500),
                          "x" .. string.rep(" ", 30000) .. "bot" }) do
      local t0 = helpers.gettime()
      local code = status("/default", ua)
      local elapsed = helpers.gettime() - t0
      assert.truthy(elapsed < 1.5,
                    ("%.2fs for %q..."):format(elapsed, ua:sub(1, 8)))
      assert.equal(ua:find("bot$") and 403 or 200, code)
    end
  end)

  it("answers 400 to several User-Agent headers", function()
    local res = client:get("/default", {
      headers = { ["User-Agent"] = { CHROME, "HelloWorld" } },
    })
    local body = assert(helpers.json_decode(assert.res_status(400, res)))
    assert.equal("Only one User-Agent header allowed", body.message)
    -- a single value with a comma is one header
    assert.equal(200, (status("/default", "a, b")))
  end)

  it("uses a reloaded config's lists, not the old verdicts", function()
    assert.equal(200, (status("/reload", "HelloWorld")))
    client:close()
    client = nil
    local routes = {}
    for i, rt in ipairs(ROUTES) do
      routes[i] = rt
    end
    routes[5] = { path = "/reload", config = { deny = { "HelloWorld" } } }
    assert.is_true(helpers.reload_luagate(gw, config(mock.port, routes)))
    helpers.wait_until(function()
      local res = helpers.request_once(gw.proxy_port, {
        path = "/reload", headers = { ["User-Agent"] = "HelloWorld" },
      })
      return res and res.status == 403
    end, 10)
  end)
end)
