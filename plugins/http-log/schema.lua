-- http-log: Kong's configuration (the log server's URL, the HTTP request
-- made to it, the queue that batches entries, custom fields).
local typedefs = require "kong.db.schema.typedefs"

local type = type
local lower = string.lower
local match = string.match

-- the queue and custom_fields modules are shared with the other logging
-- plugins; the config loader may load this file before `kong.plugins.*`
-- is requirable
local function load_module(name)
  local ok, m = pcall(require, "kong.plugins.http-log." .. name)
  if ok then
    return m
  end
  local src = debug.getinfo(1, "S").source
  local dir = src:match("^@(.*)/[^/]*$") or "."
  return dofile(dir .. "/" .. name .. ".lua")
end

local custom_fields = load_module("custom_fields")
local Queue = load_module("queue")


local function validate_endpoint(url)
  local scheme = match(url, "^(%a[%w+%-.]*)://")
  scheme = scheme and lower(scheme)
  if scheme == "https" then
    return nil, "https is not supported yet (luagate has no TLS " ..
                "client): use an http:// endpoint"
  end
  if scheme ~= "http" then
    return nil, "unsupported scheme '" .. tostring(scheme) ..
                "': expected http"
  end
  return true
end


local FORBIDDEN_HEADERS = {
  host = "cannot contain 'Host' header",
  ["content-length"] = "cannot contain 'Content-Length' header",
  ["content-type"] = "cannot contain 'Content-Type' header",
}


local function validate_header_name(name)
  local ok, err = typedefs.validate_header_name(name)
  if not ok then
    return nil, err
  end
  local forbidden = FORBIDDEN_HEADERS[lower(name)]
  if forbidden then
    return nil, forbidden
  end
  return true
end


return {
  name = "http-log",
  fields = {
    { protocols = typedefs.protocols },
    { config = {
        type = "record",
        fields = {
          { http_endpoint = typedefs.url {
              description = "The HTTP URL the log entries are sent to " ..
                            "(http only). A user and password in the URL " ..
                            "are sent as Basic authentication.",
              required = true,
              encrypted = true,
              referenceable = true,
              custom_validator = function(url)
                local ok, err = typedefs.url.custom_validator(url)
                if not ok then
                  return nil, err
                end
                return validate_endpoint(url)
              end,
          } },
          { method = {
              description = "The method of the HTTP requests made to " ..
                            "the log server: `POST` (default), `PUT` or " ..
                            "`PATCH`.",
              type = "string",
              default = "POST",
              one_of = { "POST", "PUT", "PATCH" },
          } },
          { content_type = {
              description = "The Content-Type of the requests: " ..
                            "`application/json` or `application/json; " ..
                            "charset=utf-8`.",
              type = "string",
              default = "application/json",
              one_of = { "application/json",
                         "application/json; charset=utf-8" },
          } },
          { timeout = {
              description = "Timeout in milliseconds of each request to " ..
                            "the log server (connect, send and read).",
              type = "number",
              default = 10000,
          } },
          { keepalive = {
              description = "How long, in milliseconds, an idle " ..
                            "connection to the log server is kept open.",
              type = "number",
              default = 60000,
          } },
          { headers = {
              description = "Headers added to the requests made to the " ..
                            "log server, one string value per name " ..
                            "(Host, Content-Type and Content-Length are " ..
                            "set by the plugin).",
              type = "map",
              keys = typedefs.header_name {
                custom_validator = validate_header_name,
              },
              values = {
                type = "string",
                referenceable = true,
              },
          } },
          { queue = Queue.schema_field() },
          { custom_fields_by_lua = custom_fields.field() },
        },
        shorthand_fields = {
          { retry_count = {
              description = "Deprecated and without effect: use " ..
                            "`queue.max_retry_time`.",
              type = "integer",
              deprecation = {
                message = "http-log: config.retry_count no longer works, " ..
                          "please use config.queue.max_retry_time instead",
                removal_in_version = "4.0",
              },
              func = function()
                return nil
              end,
          } },
          { queue_size = {
              description = "Deprecated: the number of entries per " ..
                            "request; use `queue.max_batch_size`.",
              type = "integer",
              deprecation = {
                message = "http-log: config.queue_size is deprecated, " ..
                          "please use config.queue.max_batch_size instead",
                removal_in_version = "4.0",
                replaced_with = { { path = { "queue", "max_batch_size" } } },
              },
              func = function(value)
                if type(value) == "number" then
                  return { queue = { max_batch_size = value } }
                end
              end,
          } },
          { flush_timeout = {
              description = "Deprecated: the longest wait before a " ..
                            "partial batch is sent, in seconds; use " ..
                            "`queue.max_coalescing_delay`.",
              type = "number",
              deprecation = {
                message = "http-log: config.flush_timeout is deprecated, " ..
                          "please use config.queue.max_coalescing_delay " ..
                          "instead",
                removal_in_version = "4.0",
                replaced_with = {
                  { path = { "queue", "max_coalescing_delay" } },
                },
              },
              func = function(value)
                if type(value) == "number" then
                  return { queue = { max_coalescing_delay = value } }
                end
              end,
          } },
        },
      },
    },
  },
}
