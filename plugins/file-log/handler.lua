-- file-log: appends each request's log object (kong.log.serialize(), one
-- JSON object per line) to a file, with Kong's behaviour and without
-- writing on the request's path:
--
-- * log phase: custom_fields_by_lua are applied, the line is encoded and
--   added to the worker's buffer for that path; a timer (ngx.timer.at(0))
--   is started if none is pending (kong.plugins.http-log.sink).
-- * the timer writes every buffered line of a path with one write(2) on a
--   descriptor opened O_WRONLY|O_CREAT|O_APPEND (mode 0644) and kept open
--   (one per path and worker, as Kong's); O_APPEND keeps the lines of
--   several workers whole.
-- * `reopen`: the file is closed and opened again before each write, so
--   that a rotated file is followed (Kong reopens it for every request).
-- * a file that cannot be opened or written loses that batch; the error
--   is logged ("[file-log] failed to open the file ...").

local ffi = require "ffi"
local sink = require "kong.plugins.http-log.sink"

local kong = kong
local tonumber = tonumber
local concat = table.concat
local C = ffi.C

pcall(ffi.cdef, [[
int open(const char *pathname, int flags, int mode);
int close(int fd);
char *strerror(int errnum);
]])
pcall(ffi.cdef, [[
long write(int fd, const void *buf, size_t count);
]])

-- <fcntl.h> on Linux (x86-64, arm64)
local O_WRONLY = 0x1
local O_CREAT = 0x40
local O_APPEND = 0x400
local O_CLOEXEC = 0x80000
-- int cdata: right even if open() was declared variadic elsewhere
local FLAGS = ffi.new("int", O_WRONLY + O_CREAT + O_APPEND + O_CLOEXEC)
local MODE = ffi.new("int", 420) -- 0644
local EINTR = 4


local FileLogHandler = {
  PRIORITY = 9,
  VERSION = "3.10.0",
}


-- path -> { fd, reopen }: the open file of a path
local files = {}


local function errno_string()
  return ffi.string(C.strerror(ffi.errno()))
end


-- Appends lines[1..n] to conf.path with one write.
local function write(conf, lines, n)
  local path = conf.path
  local f = files[path]
  local data = concat(lines, "\n", 1, n) .. "\n"

  if f.reopen and f.fd then
    C.close(f.fd)
    f.fd = nil
  end
  f.reopen = false
  if not f.fd then
    local fd = C.open(path, FLAGS, MODE)
    if fd < 0 then
      kong.log.err("[file-log] failed to open the file '", path, "': ",
                   errno_string(), " (", n, " log lines lost)")
      return
    end
    f.fd = fd
  end

  local off, len = 0, #data
  local buf = ffi.cast("const char *", data)
  while off < len do
    local w = tonumber(C.write(f.fd, buf + off, len - off))
    if w < 0 then
      if ffi.errno() ~= EINTR then
        kong.log.err("[file-log] failed to write to the file '", path,
                     "': ", errno_string())
        C.close(f.fd)
        f.fd = nil -- opened again next time
        return
      end
    else
      off = off + w
    end
  end
end


-- path -> its waiting lines (no limit: a write never waits)
local buffers = sink.new("file-log", write)

FileLogHandler.configure = sink.configure


function FileLogHandler:log(conf)
  local line = sink.encode(sink.serialize(conf))
  if not line then
    return
  end
  local path = conf.path
  local f = files[path]
  if not f then
    f = { fd = nil, reopen = false }
    files[path] = f
  end
  if conf.reopen then
    f.reopen = true
  end
  buffers:push(path, conf, line)
end


-- for specs
FileLogHandler._files = files

return FileLogHandler
