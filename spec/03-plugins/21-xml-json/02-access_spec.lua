-- xml-json through the real binary, with an XML / SOAP upstream
-- (spec/fixtures/xml_upstream.py, started here): JSON request bodies to
-- XML and SOAP envelopes, XML and SOAP responses to JSON, faults as 502,
-- malformed XML from the upstream, malformed JSON from the client, other
-- content types untouched, a slow and a missing upstream.
local helpers = require "spec.helpers"

local fmt = string.format

local CT_JSON = "application/json; charset=utf-8"


-- Starts the XML upstream in a helpers prefix directory (its pid file is
-- named *.bgpid, so spec/run.sh kills it even if the spec dies). Returns
-- { port, stop() }.
local function xml_upstream()
  local dir = helpers.make_prefix("xml-upstream")
  local script = helpers.root .. "/spec/fixtures/xml_upstream.py"
  os.execute(fmt("%s %s --port 0 </dev/null >%s/xml.stdout " ..
                 "2>%s/xml.stderr & echo $! >%s/xml.bgpid",
                 helpers.shell_quote(helpers.python),
                 helpers.shell_quote(script), dir, dir, dir))
  local pid = helpers.wait_until(function()
    return tonumber((helpers.read_file(dir .. "/xml.bgpid") or ""):match("%d+"))
  end, 10)
  local port = helpers.wait_until(function()
    return tonumber((helpers.read_file(dir .. "/xml.stdout") or "")
                    :match("(%d+)\n"))
  end, 10)
  return {
    port = port,
    stop = function()
      os.execute("kill " .. pid .. " 2>/dev/null")
    end,
  }
end


describe("xml-json", function()
  local up, gw

  lazy_setup(function()
    up = xml_upstream()
    local url = fmt("http://127.0.0.1:%d", up.port)
    local function route(name, conf, extra)
      local r = { name = name, paths = { "/" .. name },
                  plugins = { { name = "xml-json", config = conf } } }
      for k, v in pairs(extra or {}) do
        r[k] = v
      end
      return r
    end
    gw = assert(helpers.start_luagate({
      config = {
        _format_version = "3.0",
        services = {
          { name = "xml", url = url, routes = {
            route("plain", {}),
            route("keep-ns", { response = { strip_namespaces = false,
                                            unwrap_soap = false } }),
            route("envelope", { response = { unwrap_soap = false } }),
            route("no-json", { response = { to_json = false } }),
            -- JSON -> XML, XML back unconverted (what the upstream got)
            route("to-xml", { request = { root = "order" },
                              response = { to_json = false } }),
            route("no-xml", { request = { to_xml = false },
                              response = { to_json = false } }),
            route("soap11", { request = { root = "GetPrice", soap = {
              version = "1.1", action = "urn:prices#GetPrice",
              namespace = "urn:prices" } }, response = { to_json = false } }),
            route("soap12", { request = { root = "GetPrice", soap = {
              version = "1.2", action = "urn:prices#GetPrice" } },
              response = { to_json = false } }),
            route("soap11-noaction", { request = { root = "Ping",
              soap = {} }, response = { to_json = false } }),
            -- both ways: JSON -> XML -> upstream echo -> JSON
            route("roundtrip", { request = { root = "doc" } }),
          } },
          { name = "slow", url = url, read_timeout = 500, routes = {
            route("slow", {}),
          } },
          { name = "down", url = fmt("http://127.0.0.1:%d",
                                     helpers.get_free_port()), routes = {
            route("down", {}),
          } },
        },
      },
    }))
  end)

  lazy_teardown(function()
    helpers.stop_luagate(gw)
    up.stop()
  end)

  local function get(path, opts)
    opts = opts or {}
    opts.path = path
    return helpers.request_once(gw.proxy_port, opts)
  end

  local function post(path, body, ct)
    return helpers.request_once(gw.proxy_port, {
      method = "POST", path = path, body = body,
      headers = { ["Content-Type"] = ct or "application/json" },
    })
  end

  local function json_text(res, status)
    local body = assert.res_status(status, res)
    assert.equal(CT_JSON, res.headers["content-type"])
    if res.headers["content-length"] then
      assert.equal(tostring(#body), res.headers["content-length"])
    end
    return body
  end


  describe("XML responses", function()
    it("become JSON: attributes, repeats, text, empty elements", function()
      assert.equal('{"catalog":{"@version":"2","book":[' ..
        '{"@id":"b1","@lang":"en","title":"Lua & You",' ..
        '"author":["Ann","Bob"],"price":{"@currency":"EUR","#text":"12.50"},' ..
        '"note":{"b":"bold","#text":"mixed  text"},"summary":"1 < 2",' ..
        '"empty":null},{"@id":"b2","title":"Second"}]}}',
        json_text(get("/plain/xml"), 200))
    end)

    it("keep namespace prefixes and xmlns without strip_namespaces", function()
      local body = assert(helpers.json_decode(json_text(get("/keep-ns/xml"),
                                                        200)))
      local catalog = body.catalog
      assert.equal("urn:catalog", catalog["@xmlns"])
      assert.equal("urn:extra", catalog["@xmlns:x"])
      assert.equal("en", catalog.book[1]["@x:lang"])
      assert.equal("bold", catalog.book[1]["x:note"].b)
    end)

    it("keep UTF-8 text", function()
      assert.equal('{"greeting":{"@lang":"fr","#text":"héllo à tous"}}',
                   json_text(get("/plain/xml-utf8"), 200))
    end)

    it("keep the upstream's status", function()
      assert.equal('{"error":{"code":"NOT_FOUND"}}',
                   json_text(get("/plain/status-xml"), 404))
    end)

    it("pass through when not XML, empty, or with to_json = false", function()
      local res = get("/plain/json")
      assert.equal('{"plain": "json", "n": [1, 2]}',
                   assert.res_status(200, res))
      assert.equal("application/json", res.headers["content-type"])
      res = get("/plain/empty")
      assert.equal("", assert.res_status(200, res))
      assert.equal("application/xml", res.headers["content-type"])
      res = get("/no-json/xml")
      assert.matches("^<%?xml", assert.res_status(200, res))
      assert.equal("application/xml", res.headers["content-type"])
    end)
  end)

  describe("SOAP responses", function()
    it("give the Body's content (1.1 and 1.2)", function()
      assert.equal('{"GetPriceResponse":{"Price":"1.90","Currency":"USD"}}',
                   json_text(get("/plain/soap11"), 200))
      assert.equal('{"GetPriceResponse":{"Price":"2.50"}}',
                   json_text(get("/plain/soap12"), 200))
    end)

    it("give the whole envelope with unwrap_soap = false", function()
      assert.equal('{"Envelope":{"Header":{"Trans":"5"},"Body":' ..
                   '{"GetPriceResponse":{"Price":"1.90","Currency":"USD"}}}}',
                   json_text(get("/envelope/soap11"), 200))
    end)

    it("turn a 1.1 fault into 502 {fault}", function()
      assert.equal('{"fault":{"code":"Server","message":"Item not found"}}',
                   json_text(get("/plain/soap11-fault"), 502))
      assert.equal('{"fault":{"code":"soap:Server","message":' ..
                   '"Item not found"}}',
                   json_text(get("/keep-ns/soap11-fault"), 502))
    end)

    it("turn a 1.2 fault into 502 {fault} with its detail", function()
      assert.equal('{"fault":{"code":"Sender","message":"Bad item id",' ..
                   '"detail":{"Err":{"Id":"42"}}}}',
                   json_text(get("/plain/soap12-fault"), 502))
    end)
  end)

  describe("bad upstream XML", function()
    it("answers 502 on malformed XML", function()
      assert.same({ message = "upstream returned malformed XML: mismatched " ..
                              "tag (line 1, column 13)" },
                  helpers.json_decode(json_text(get("/plain/malformed"), 502)))
    end)

    it("refuses DOCTYPE declarations (entity expansion)", function()
      assert.same({ message = "upstream returned malformed XML: DOCTYPE " ..
                              "declarations are not allowed" },
                  helpers.json_decode(json_text(get("/plain/doctype"), 502)))
    end)

    it("refuses documents nested too deeply", function()
      assert.same({ message = "upstream returned malformed XML: the " ..
                              "document is too deeply nested" },
                  helpers.json_decode(json_text(get("/plain/deep"), 502)))
    end)
  end)

  describe("upstream failures", function()
    it("gives the gateway's 504 for a slow upstream", function()
      local t0 = helpers.gettime()
      local res = get("/slow/slow?s=2")
      assert.res_status(504, res)
      assert.is_true(helpers.gettime() - t0 < 1.8)
      assert.res_status(200, get("/slow/slow?s=0.1"))
    end)

    it("gives the gateway's 502 for an upstream that is down", function()
      assert.res_status(502, get("/down/xml"))
    end)
  end)

  describe("JSON requests", function()
    it("become XML, keys in order", function()
      local res = post("/to-xml/echo", '{"id":7,"items":[{"sku":"A-1",' ..
        '"qty":2},{"sku":"B&2","qty":1.50}],"note":null,"gift":false,' ..
        '"customer":{"@vip":true,"@since":2020,"#text":"Ann <a@b.c>"},' ..
        '"empty":{},"list":[]}')
      assert.equal('<?xml version="1.0" encoding="UTF-8"?><order><id>7</id>' ..
        '<items><sku>A-1</sku><qty>2</qty></items>' ..
        '<items><sku>B&amp;2</sku><qty>1.50</qty></items><note/>' ..
        '<gift>false</gift><customer vip="true" since="2020">Ann ' ..
        '&lt;a@b.c&gt;</customer><empty/></order>',
        assert.res_status(200, res))
      assert.equal("application/xml; charset=utf-8",
                   res.headers["x-got-content-type"])
      assert.equal("", res.headers["x-got-soapaction"])
    end)

    it("put a top-level array in <item>s and a scalar in the root", function()
      assert.equal('<?xml version="1.0" encoding="UTF-8"?><order>' ..
                   '<item>1</item><item><a>x</a></item></order>',
                   assert.res_status(200,
                                     post("/to-xml/echo", '[1,{"a":"x"}]')))
      assert.equal('<?xml version="1.0" encoding="UTF-8"?><order>a"b</order>',
                   assert.res_status(200, post("/to-xml/echo", '"a\\"b"')))
    end)

    it("escape attribute values", function()
      assert.equal('<?xml version="1.0" encoding="UTF-8"?><order ' ..
                   'a="&quot;&lt;&amp;&#10;"/>',
                   assert.res_status(200, post("/to-xml/echo",
                                               '{"@a":"\\"<&\\n"}')))
    end)

    it("come back as JSON through an XML upstream", function()
      local res = post("/roundtrip/echo", '{"a":{"@id":"1","b":["x","y"]},' ..
                                          '"c":"z"}',
                       "application/vnd.x+json")
      assert.equal('{"doc":{"a":{"@id":"1","b":["x","y"]},"c":"z"}}',
                   json_text(res, 200))
    end)

    it("go in a SOAP 1.1 envelope with SOAPAction", function()
      local res = post("/soap11/echo", '{"Item":"x1","Qty":2}')
      assert.equal('<?xml version="1.0" encoding="UTF-8"?><soap:Envelope ' ..
        'xmlns:soap="http://schemas.xmlsoap.org/soap/envelope/"><soap:Body>' ..
        '<GetPrice xmlns="urn:prices"><Item>x1</Item><Qty>2</Qty></GetPrice>' ..
        '</soap:Body></soap:Envelope>', assert.res_status(200, res))
      assert.equal("text/xml; charset=utf-8", res.headers["x-got-content-type"])
      assert.equal('"urn:prices#GetPrice"', res.headers["x-got-soapaction"])
      assert.equal("POST", res.headers["x-got-method"])
    end)

    it("send an empty SOAPAction when none is set", function()
      local res = post("/soap11-noaction/echo", "{}")
      assert.equal('<?xml version="1.0" encoding="UTF-8"?><soap:Envelope ' ..
        'xmlns:soap="http://schemas.xmlsoap.org/soap/envelope/"><soap:Body>' ..
        '<Ping/></soap:Body></soap:Envelope>', assert.res_status(200, res))
      assert.equal('""', res.headers["x-got-soapaction"])
    end)

    it("go in a SOAP 1.2 envelope, the action in the Content-Type",
       function()
      local res = post("/soap12/echo", '{"Item":"x1"}')
      assert.equal('<?xml version="1.0" encoding="UTF-8"?><soap:Envelope ' ..
        'xmlns:soap="http://www.w3.org/2003/05/soap-envelope"><soap:Body>' ..
        '<GetPrice><Item>x1</Item></GetPrice></soap:Body></soap:Envelope>',
        assert.res_status(200, res))
      assert.equal('application/soap+xml; charset=utf-8; ' ..
                   'action="urn:prices#GetPrice"',
                   res.headers["x-got-content-type"])
      assert.equal("", res.headers["x-got-soapaction"])
    end)

    it("answer 400 on malformed JSON", function()
      for body, err in pairs({
        ['{"a":'] = "unexpected end of input",
        ['{"a":1,}'] = "expected a string key",
        ['{"a":1} x'] = "unexpected data after the value at position 9",
        ["nul"] = "unexpected character 'n' at position 1",
      }) do
        assert.same({ message = "request body is not valid JSON: " .. err },
                    helpers.json_decode(assert.res_status(400,
                                          post("/to-xml/echo", body))))
      end
    end)

    it("answer 400 when JSON cannot be XML", function()
      local cases = {
        ['{"a b":1}'] = "'a b' is not a valid XML element name",
        ['{"1a":1}'] = "'1a' is not a valid XML element name",
        ['{"@x y":1}'] = "'x y' is not a valid XML attribute name",
        ['{"@a":{"b":1}}'] = "attribute 'a' must be a string, a number or " ..
                             "a boolean",
        ['{"@a":1,"@a":2}'] = "attribute 'a' is given twice",
        ['{"a":"\\u0001"}'] = "a string holds a control character XML " ..
                              "cannot represent",
      }
      for body, err in pairs(cases) do
        assert.same({ message = "cannot convert the request body to XML: " ..
                                err },
                    helpers.json_decode(assert.res_status(400,
                                          post("/to-xml/echo", body))), body)
      end
    end)

    it("pass through when not JSON, empty, or with to_xml = false", function()
      local res = post("/to-xml/echo", "a=1",
                       "application/x-www-form-urlencoded")
      assert.equal("a=1", assert.res_status(200, res))
      assert.equal("application/x-www-form-urlencoded",
                   res.headers["x-got-content-type"])
      res = post("/to-xml/echo", nil)
      assert.equal("", assert.res_status(200, res))
      res = post("/no-xml/echo", '{"a":1}')
      assert.equal('{"a":1}', assert.res_status(200, res))
      assert.equal("application/json", res.headers["x-got-content-type"])
    end)
  end)
end)
