-- xml-json: JSON clients in front of XML / SOAP services. JSON request
-- bodies become XML (optionally in a SOAP envelope); XML and SOAP responses
-- become JSON, SOAP faults a 502 with {"fault": {...}}.
local typedefs = require "kong.db.schema.typedefs"

local find = string.find


-- An XML 1.0 Name (as xml.lua's is_name)
local function validate_xml_name(s)
  if find(s, "^[%a_\128-\255][%w%.%-_:\128-\255]*$") then
    return true
  end
  return nil, "'" .. s .. "' is not a valid XML element name"
end


local function validate_no_crlf_quote(s)
  if find(s, "[\r\n\"]") then
    return nil, "must not contain CR, LF or '\"'"
  end
  return true
end


return {
  name = "xml-json",
  fields = {
    { protocols = typedefs.protocols_http },
    { config = {
        type = "record",
        fields = {
          { request = {
              description = "Conversion of JSON request bodies to XML.",
              type = "record",
              fields = {
                { to_xml = {
                    description = "Whether to convert JSON request bodies " ..
                                  "(`application/json`, `+json`) to XML.",
                    type = "boolean",
                    required = true,
                    default = true,
                } },
                { root = {
                    description = "The name of the XML root element (with " ..
                                  "`soap`, the element in the SOAP Body: " ..
                                  "the operation).",
                    type = "string",
                    required = true,
                    default = "request",
                    custom_validator = validate_xml_name,
                } },
                { soap = {
                    description = "When set, the XML is wrapped in a SOAP " ..
                                  "envelope, with the SOAP Content-Type " ..
                                  "(and SOAPAction for 1.1).",
                    type = "record",
                    required = false,
                    fields = {
                      { version = {
                          description = "The SOAP version: `1.1` or `1.2`.",
                          type = "string",
                          required = true,
                          default = "1.1",
                          one_of = { "1.1", "1.2" },
                      } },
                      { action = {
                          description = "The SOAP action: the `SOAPAction` " ..
                                        "header (1.1) or the Content-Type's " ..
                                        "`action` parameter (1.2).",
                          type = "string",
                          custom_validator = validate_no_crlf_quote,
                      } },
                      { namespace = {
                          description = "The namespace of the operation " ..
                                        "element (its default `xmlns`).",
                          type = "string",
                          custom_validator = validate_no_crlf_quote,
                      } },
                    },
                } },
              },
          } },
          { response = {
              description = "Conversion of XML and SOAP responses to JSON.",
              type = "record",
              fields = {
                { to_json = {
                    description = "Whether to convert XML responses " ..
                                  "(`text/xml`, `application/xml`, " ..
                                  "`application/soap+xml`, `+xml`) to JSON.",
                    type = "boolean",
                    required = true,
                    default = true,
                } },
                { strip_namespaces = {
                    description = "Whether to drop namespace prefixes from " ..
                                  "names (and the `xmlns` attributes).",
                    type = "boolean",
                    required = true,
                    default = true,
                } },
                { unwrap_soap = {
                    description = "Whether a SOAP response gives the " ..
                                  "content of its Body rather than the " ..
                                  "whole envelope.",
                    type = "boolean",
                    required = true,
                    default = true,
                } },
              },
          } },
        },
      },
    },
  },
}
