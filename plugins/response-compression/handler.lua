-- response-compression: compresses upstream responses for clients that
-- accept it, by media type and minimum size. The decision is made here in
-- header_filter; the bytes are compressed in C as they stream
-- (runtime/src/compress.c), so the body is never buffered whole.

local lffi = require "luagate.ffi"
local request = require "luagate.request"

local C = lffi.C
local lower = string.lower
local match = string.match
local tonumber = tonumber
local setmetatable = setmetatable
local ipairs = ipairs

local ResponseCompression = {
  PRIORITY = 5, -- after the other header_filter plugins changed the headers
  VERSION = "1.0.0",
}

-- per conf table: the media types as a set
local type_sets = setmetatable({}, { __mode = "k" })

local function type_set(conf)
  local set = type_sets[conf]
  if not set then
    set = {}
    for _, t in ipairs(conf.types) do
      set[lower(t)] = true
    end
    type_sets[conf] = set
  end
  return set
end


function ResponseCompression:header_filter(conf)
  local ctype = kong.response.get_header("Content-Type")
  if not ctype then
    return
  end
  local mtype = lower(match(ctype, "^%s*([^;%s]+)") or "")
  local set = type_set(conf)
  if not set[mtype] and not set["*"] then
    return
  end
  local clen = tonumber(kong.response.get_header("Content-Length") or "")
  if clen and clen < conf.min_size then
    return
  end
  local r = request.cur
  local rc = C.gw_ffi_resp_compress(r.ptr, conf.brotli and 1 or 0, conf.gzip_level,
                                    conf.brotli_level, lffi.err_p)
  if rc == lffi.ERROR then
    kong.log.err("could not compress: ", lffi.errmsg())
  end
end


return ResponseCompression
