-- mtls-auth's configuration: Kong Enterprise 3.10's fields and defaults.
-- The fields for fetching revocation data (OCSP, CRL distribution points)
-- are accepted and have no effect: luagate checks only the CRLs given in
-- the CA certificates' PEM text. docs/plugins/mtls-auth.md
local typedefs = require "kong.db.schema.typedefs"

return {
  name = "mtls-auth",
  fields = {
    { consumer = typedefs.no_consumer },
    { consumer_group = typedefs.no_consumer_group },
    { protocols = typedefs.protocols_http },
    { config = {
        type = "record",
        fields = {
          { anonymous = {
              type = "string",
              description = "Consumer (id or username) to use when " ..
                            "authentication fails, instead of a 401. No " ..
                            "default. A credential set by an earlier auth " ..
                            "plugin then skips this one (logical OR).",
          } },
          { consumer_by = {
              type = "array",
              elements = { type = "string",
                           one_of = { "username", "custom_id" } },
              required = false,
              default = { "username", "custom_id" },
              description = "Consumer fields matched against the " ..
                            "certificate's names (SANs, then the CN), in " ..
                            "order; [] turns automatic matching off.",
          } },
          { default_consumer = {
              type = "string",
              description = "Consumer (id or username) to authenticate " ..
                            "when a trusted certificate matches no " ..
                            "consumer. No default: a 401 then.",
          } },
          { ca_certificates = {
              type = "array",
              required = true,
              len_min = 1,
              elements = typedefs.uuid,
              -- luagate: each id must name a ca_certificates entity
              reference = "ca_certificates",
              description = "Ids of the ca_certificates entities that " ..
                            "client certificates must chain to (their PEM " ..
                            "may also hold CRLs); at least one.",
          } },
          { cache_ttl = {
              type = "number",
              required = true,
              default = 60,
              description = "Kong's consumer lookup cache time in " ..
                            "seconds; accepted, no effect (consumers are " ..
                            "indexed at config load).",
          } },
          { skip_consumer_lookup = {
              type = "boolean",
              required = true,
              default = false,
              description = "Do not look for a consumer: any trusted " ..
                            "certificate passes, its identity goes " ..
                            "upstream in X-Client-Cert-DN and " ..
                            "X-Client-Cert-SAN.",
          } },
          { authenticated_group_by = {
              type = "string",
              required = false,
              one_of = { "CN", "DN" },
              default = "CN",
              description = "With skip_consumer_lookup, the certificate " ..
                            "property that becomes the authenticated " ..
                            "group (for acl): its CN or its subject DN.",
          } },
          { revocation_check_mode = {
              type = "string",
              required = false,
              one_of = { "SKIP", "IGNORE_CA_ERROR", "STRICT" },
              default = "IGNORE_CA_ERROR",
              description = "SKIP: no revocation check. IGNORE_CA_ERROR: " ..
                            "the leaf is checked against its CA's CRL when " ..
                            "the CA PEM holds one. STRICT: a CRL of the " ..
                            "leaf's CA is required.",
          } },
          { http_timeout = {
              type = "number",
              default = 30000,
              description = "Kong's timeout (ms) for OCSP and CRL " ..
                            "downloads; accepted, no effect.",
          } },
          { cert_cache_ttl = {
              type = "number",
              default = 60000,
              description = "Kong's revocation status cache time; " ..
                            "accepted, no effect (CRLs are checked " ..
                            "locally on each request).",
          } },
          { send_ca_dn = {
              type = "boolean",
              default = false,
              description = "Kong sends the CA names in the TLS " ..
                            "CertificateRequest; accepted, no effect " ..
                            "(luagate sends an empty list).",
          } },
          { allow_partial_chain = {
              type = "boolean",
              default = false,
              description = "Accept a chain that ends at an intermediate " ..
                            "CA of ca_certificates (no root needed).",
          } },
          { http_proxy_host = typedefs.host { description =
              "Kong's proxy for OCSP/CRL downloads; accepted, no effect." } },
          { http_proxy_port = typedefs.port { description =
              "Kong's proxy for OCSP/CRL downloads; accepted, no effect." } },
          { https_proxy_host = typedefs.host { description =
              "Kong's proxy for OCSP/CRL downloads; accepted, no effect." } },
          { https_proxy_port = typedefs.port { description =
              "Kong's proxy for OCSP/CRL downloads; accepted, no effect." } },
          { ssl_verify = {
              type = "boolean",
              default = true,
              description = "Kong verifies OCSP/CRL servers' " ..
                            "certificates; accepted, no effect.",
          } },
        },
        entity_checks = {
          { mutually_required = { "http_proxy_host", "http_proxy_port" } },
          { mutually_required = { "https_proxy_host", "https_proxy_port" } },
        },
    } },
  },
}
