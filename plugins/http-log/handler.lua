-- http-log: sends each request's log object (kong.log.serialize(), as
-- JSON) to an HTTP server, with Kong's behaviour:
--
-- * log phase: custom_fields_by_lua are applied, the entry is encoded and
--   queued; nothing waits on the request's path.
-- * a queue per worker (kong.tools.queue when it has Kong's whole API,
--   get_plugin_params included; else kong.plugins.http-log.queue, which
--   has it) batches the entries and
--   sends them from a timer with luagate.http: one JSON object per
--   request when queue.max_batch_size is 1, a JSON array of them
--   otherwise; a failed request (connection error or status >= 400) is
--   retried with exponential backoff until queue.max_retry_time.
-- * instances with the same endpoint, method, content type, timeout,
--   keepalive and headers share one queue (Kong: the first five).
-- * a user and password in http_endpoint become a Basic Authorization
--   header (over a configured one); `headers` are added to every request.

local cjson = require "cjson.safe"
local http = require "luagate.http"
local custom_fields = require "kong.plugins.http-log.custom_fields"

local type = type

local Queue
do
  local ok, m = pcall(require, "kong.tools.queue")
  if ok and type(m) == "table" and type(m.enqueue) == "function" and
     type(m.get_plugin_params) == "function" then
    Queue = m
  else
    Queue = require "kong.plugins.http-log.queue"
  end
end

local kong = kong
local ngx = ngx
local pairs = pairs
local tostring = tostring
local tonumber = tonumber
local setmetatable = setmetatable
local concat = table.concat
local sort = table.sort
local lower = string.lower
local char = string.char
local match = string.match
local fmt = string.format
local encode = cjson.encode


local HttpLogHandler = {
  PRIORITY = 12,
  VERSION = "3.10.0",
}

HttpLogHandler.Queue = Queue -- for specs


-- per conf: { url, host, port, name, headers } built once
local prepared = setmetatable({}, { __mode = "k" })


local function unescape(s)
  return (s:gsub("%%(%x%x)", function(h)
    return char(tonumber(h, 16))
  end))
end


local function prepare(conf)
  local p = prepared[conf]
  if p then
    return p
  end
  local url = conf.http_endpoint
  local userinfo = match(url, "^%a[%w+%-.]*://([^/?#@]*)@")
  local _, host, port = http.parse_url(url)
  local headers = {}
  local names = {}
  for name, value in pairs(conf.headers or {}) do
    -- credentials in the URL win over a configured Authorization
    if not (userinfo and lower(name) == "authorization") then
      headers[name] = value
    end
    names[#names + 1] = lower(name) .. "=" .. value
  end
  sort(names)
  if userinfo then
    headers["Authorization"] = "Basic " ..
                               ngx.encode_base64(unescape(userinfo))
  end
  headers["Content-Type"] = conf.content_type
  -- the queue's name shows in logs: no credentials in it
  local shown = url:gsub("^(%a[%w+%-.]*://)[^/?#@]*@", "%1")
  local key = fmt("%s %s %s %s %s %s", url, conf.method, conf.content_type,
                  tostring(conf.timeout), tostring(conf.keepalive),
                  concat(names, "&"))
  p = {
    url = url,
    host = host or "?",
    port = port or 80,
    headers = headers,
    -- Kong's queues are known by name only: the name carries the key
    name = fmt("http-log %s %s [%s]", conf.method, shown,
               ngx.md5(key):sub(1, 8)),
  }
  prepared[conf] = p
  return p
end


-- Queue handler: sends a batch; returns true or nil, err.
local function send_entries(conf, entries)
  local p = prepare(conf)
  local payload
  if conf.queue and conf.queue.max_batch_size == 1 and #entries == 1 then
    payload = entries[1]
  else
    payload = "[" .. concat(entries, ",") .. "]"
  end
  local res, err = http.request(p.url, {
    method = conf.method,
    headers = p.headers,
    body = payload,
    timeout = conf.timeout,
    keepalive = true,
    keepalive_timeout = conf.keepalive,
  })
  if not res then
    return nil, fmt("failed request to %s:%s: %s", p.host, tostring(p.port),
                    tostring(err))
  end
  if res.status >= 400 then
    return nil, fmt("request to %s:%s returned status code %d and body %s",
                    p.host, tostring(p.port), res.status,
                    tostring(res.body or ""))
  end
  return true
end

HttpLogHandler.send_entries = send_entries -- for specs


function HttpLogHandler:configure(configs)
  custom_fields.prepare(configs)
end


function HttpLogHandler:log(conf)
  custom_fields.apply(conf)

  local entry, err = encode(kong.log.serialize())
  if not entry then
    kong.log.err("could not encode the log entry: ", err)
    return
  end

  local p = prepare(conf)
  local queue_conf = Queue.get_plugin_params("http-log", conf, p.name)
  local ok
  ok, err = Queue.enqueue(queue_conf, send_entries, conf, entry)
  if not ok then
    kong.log.err("failed to enqueue log entry to log server: ", err)
  end
end


return HttpLogHandler
