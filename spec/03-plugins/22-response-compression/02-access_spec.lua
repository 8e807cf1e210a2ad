-- response-compression through the real binary: gzip and brotli on the
-- streaming path, negotiation, media types, minimum size.
local helpers = require "spec.helpers"
local ffi = require "ffi"

local fmt = string.format

ffi.cdef [[
  typedef struct {
    const unsigned char *next_in; unsigned avail_in; unsigned long total_in;
    unsigned char *next_out; unsigned avail_out; unsigned long total_out;
    const char *msg; void *state; void *zalloc; void *zfree; void *opaque;
    int data_type; unsigned long adler; unsigned long reserved;
  } lg_z_stream;
  int inflateInit2_(lg_z_stream *strm, int windowBits, const char *version, int stream_size);
  int inflate(lg_z_stream *strm, int flush);
  int inflateEnd(lg_z_stream *strm);
  int BrotliDecoderDecompress(size_t encoded_size, const uint8_t *encoded_buffer,
                              size_t *decoded_size, uint8_t *decoded_buffer);
]]
local z = ffi.load("z")
local brdec = ffi.load("brotlidec")

-- gunzip with zlib (window bits 31 = gzip wrapper); nil when invalid
local function gunzip(data)
  local s = ffi.new("lg_z_stream")
  assert(z.inflateInit2_(s, 31, "1.2.13", ffi.sizeof(s)) == 0)
  local cap = #data * 20 + 1024
  local out = ffi.new("unsigned char[?]", cap)
  s.next_in, s.avail_in = data, #data
  s.next_out, s.avail_out = out, cap
  local rc = z.inflate(s, 4) -- Z_FINISH
  local n = tonumber(s.total_out)
  z.inflateEnd(s)
  if rc ~= 1 then -- Z_STREAM_END
    return nil
  end
  return ffi.string(out, n)
end

local function unbrotli(data)
  local cap = #data * 50 + 4096
  local out = ffi.new("uint8_t[?]", cap)
  local n = ffi.new("size_t[1]", cap)
  if brdec.BrotliDecoderDecompress(#data, data, n, out) ~= 1 then
    return nil
  end
  return ffi.string(out, n[0])
end

describe("response-compression", function()
  local mock, gw

  lazy_setup(function()
    mock = helpers.mock_upstream()
    gw = assert(helpers.start_luagate({
      config = {
        _format_version = "3.0",
        services = {
          { name = "mock", url = fmt("http://127.0.0.1:%d", mock.port),
            routes = {
              { name = "z", paths = { "/z" },
                plugins = { { name = "response-compression",
                              config = { min_size = 100 } } } },
              { name = "json-only", paths = { "/text" },
                plugins = { { name = "response-compression",
                              config = { min_size = 0, types = { "text/plain" } } } } },
              { name = "gzip-only", paths = { "/gz" },
                plugins = { { name = "response-compression",
                              config = { min_size = 0, brotli = false } } } },
            } },
        },
      },
    }))
  end)

  lazy_teardown(function()
    if gw then helpers.stop_luagate(gw) end
    if mock then mock.stop() end
  end)

  it("gzips a JSON response for a client that accepts gzip", function()
    local client = helpers.proxy_client(gw)
    local res = assert(client:get("/z/anything", { headers = { ["Accept-Encoding"] = "gzip" } }))
    assert.equal(200, res.status)
    assert.equal("gzip", res.headers["content-encoding"])
    assert.matches("Accept-Encoding", res.headers["vary"], 1, true)
    assert.is_nil(res.headers["content-length"])
    local plain = assert(gunzip(res.body), "not valid gzip")
    assert.equal("/anything", helpers.json_decode(plain).path)
    client:close()
  end)

  it("compresses a chunked upstream body chunk by chunk with brotli", function()
    local client = helpers.proxy_client(gw)
    local res = assert(client:get("/z/stream/20", {
      headers = { ["Accept-Encoding"] = "gzip;q=0.5, br" } }))
    assert.equal(200, res.status)
    assert.equal("br", res.headers["content-encoding"])
    local plain = assert(unbrotli(res.body), "not valid brotli")
    local direct = assert(helpers.request_once(mock.port, { path = "/stream/20" }))
    assert.equal(#direct.body, #plain)
    client:close()
  end)

  it("uses gzip when brotli is off, even if the client prefers br", function()
    local client = helpers.proxy_client(gw)
    local res = assert(client:get("/gz/anything", { headers = { ["Accept-Encoding"] = "br, gzip" } }))
    assert.equal("gzip", res.headers["content-encoding"])
    assert.truthy(gunzip(res.body))
    client:close()
  end)

  it("leaves the body alone for a client that accepts no compression", function()
    local client = helpers.proxy_client(gw)
    for _, ae in ipairs({ false, "identity", "gzip;q=0", "compress" }) do
      local res = assert(client:get("/z/anything",
                                    { headers = { ["Accept-Encoding"] = ae or nil } }))
      assert.is_nil(res.headers["content-encoding"], tostring(ae))
      assert.equal("/anything", helpers.json_decode(res.body).path)
    end
    client:close()
  end)

  it("leaves media types that are not listed alone", function()
    local client = helpers.proxy_client(gw)
    local res = assert(client:get("/text/anything", { headers = { ["Accept-Encoding"] = "gzip" } }))
    assert.equal("application/json", res.headers["content-type"])
    assert.is_nil(res.headers["content-encoding"])
    client:close()
  end)

  it("leaves responses under min_size alone", function()
    local client = helpers.proxy_client(gw)
    local res = assert(client:get("/z/bytes/50", { headers = { ["Accept-Encoding"] = "gzip" } }))
    assert.equal(200, res.status)
    assert.is_nil(res.headers["content-encoding"])
    assert.equal(50, #res.body)
    client:close()
  end)

  it("keeps the connection usable for the next request", function()
    local client = helpers.proxy_client(gw)
    for i = 1, 3 do
      local res = assert(client:get("/z/anything?i=" .. i,
                                    { headers = { ["Accept-Encoding"] = "gzip" } }))
      assert.equal(200, res.status)
      assert.equal(tostring(i), helpers.json_decode(gunzip(res.body)).query.i)
    end
    client:close()
  end)
end)
