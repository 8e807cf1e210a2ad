-- xml-json: puts a JSON API in front of XML and SOAP services.
--
--   access    a JSON request body (application/json or +json) becomes XML
--             under `request.root`, optionally in a SOAP 1.1 / 1.2 envelope
--             (Content-Type, SOAPAction); malformed JSON gives 400;
--   response  an XML response (text/xml, application/xml,
--             application/soap+xml, +xml) becomes JSON; a SOAP fault becomes
--             502 {"fault": {"code", "message"[, "detail"]}}; malformed XML
--             gives 502 {"message": "upstream returned malformed XML: ..."}.
--
-- The response side uses the `response` phase (buffered proxying: the whole
-- upstream body first) rather than header_filter + body_filter, because a
-- fault or malformed XML changes the status, which is sent before the body
-- filters run. Other content types pass through unchanged.

local cjson = require "cjson.safe"
local json = require "luagate.json"
local xml = require "kong.plugins.xml-json.xml"

local kong = kong
local type = type
local find = string.find
local lower = string.lower
local match = string.match
local sub = string.sub

local CT_JSON = "application/json; charset=utf-8"
local CT_XML = "application/xml; charset=utf-8"
local CT_SOAP11 = "text/xml; charset=utf-8"
local CT_SOAP12 = "application/soap+xml; charset=utf-8"

local MSG_BAD_JSON = "request body is not valid JSON"
local MSG_CONVERT = "cannot convert the request body to XML"
local MSG_BAD_XML = "upstream returned malformed XML"


local XmlJsonHandler = {
  PRIORITY = 790,
  VERSION = "1.0.0",
}


local function media_type(ct)
  if type(ct) == "table" then
    ct = ct[1]
  end
  if type(ct) ~= "string" then
    return nil
  end
  return match(lower(ct), "^%s*([^;%s]+)")
end


local function is_json(mt)
  return mt == "application/json" or
         (mt ~= nil and sub(mt, -5) == "+json" and find(mt, "/", 1, true))
end


local function is_xml(mt)
  return mt == "text/xml" or mt == "application/xml" or
         (mt ~= nil and sub(mt, -4) == "+xml" and find(mt, "/", 1, true))
end


-- request ---------------------------------------------------------------------

function XmlJsonHandler:access(conf)
  local rq = conf.request
  if not rq or not rq.to_xml then
    return
  end
  if not is_json(media_type(kong.request.get_header("Content-Type"))) then
    return
  end
  local body, err = kong.request.get_raw_body()
  if not body then
    kong.log.err("could not read the request body: ", err)
    return kong.response.exit(500, { message = "An unexpected error occurred" })
  end
  if body == "" then
    return
  end
  local value
  value, err = json.decode_ordered(body)
  if value == nil then
    return kong.response.exit(400, { message = MSG_BAD_JSON .. ": " .. err })
  end
  local soap = rq.soap
  local text
  text, err = xml.from_json(value, json, { root = rq.root, soap = soap })
  if not text then
    return kong.response.exit(400, { message = MSG_CONVERT .. ": " .. err })
  end
  kong.service.request.set_raw_body(text)
  if soap then
    local action = soap.action
    if soap.version == "1.2" then
      kong.service.request.set_header("Content-Type", action and
        (CT_SOAP12 .. '; action="' .. action .. '"') or CT_SOAP12)
      kong.service.request.clear_header("SOAPAction")
    else
      kong.service.request.set_header("Content-Type", CT_SOAP11)
      kong.service.request.set_header("SOAPAction",
                                      '"' .. (action or "") .. '"')
    end
  else
    kong.service.request.set_header("Content-Type", CT_XML)
  end
end


-- response --------------------------------------------------------------------

function XmlJsonHandler:response(conf)
  local rs = conf.response
  if not rs or not rs.to_json then
    return
  end
  local mt = media_type(kong.service.response.get_header("Content-Type"))
  if not is_xml(mt) then
    return
  end
  local body = kong.service.response.get_raw_body()
  if not body or body == "" then
    return
  end
  local headers = { ["Content-Type"] = CT_JSON }
  local root, err = xml.parse(body)
  if not root then
    return kong.response.exit(502, { message = MSG_BAD_XML .. ": " .. err },
                              headers)
  end
  local strip = rs.strip_namespaces
  local version, soap_body = xml.soap_body(root)
  if version and soap_body then
    local fault = xml.soap_fault(version, soap_body, strip)
    if fault then
      local encode = cjson.encode
      local out = '{"fault":{"code":' ..
                  (fault.code and encode(fault.code) or "null") ..
                  ',"message":' ..
                  (fault.message and encode(fault.message) or "null") ..
                  (fault.detail and (',"detail":' ..
                    xml.value_json(fault.detail, strip)) or "") .. "}}"
      return kong.response.exit(502, out, headers)
    end
    if rs.unwrap_soap then
      return kong.response.exit(kong.service.response.get_status(),
                                xml.value_json(soap_body, strip), headers)
    end
  end
  return kong.response.exit(kong.service.response.get_status(),
                            xml.document_json(root, strip), headers)
end


return XmlJsonHandler
