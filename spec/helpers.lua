-- Helpers for luagate's specs, named after Kong's spec.helpers.
--
-- Processes started here (luagate, the mock upstream, redis) are recorded in
-- a registry and killed when busted exits, even after a failing spec; each
-- also has its own stop function for lazy_teardown. Every process gets its
-- own prefix directory under spec/.tmp/.
--
-- The HTTP client is a small HTTP/1.1 keepalive client over luasocket: it
-- writes exactly what it is told (so specs control framing) and parses
-- Content-Length, chunked and read-until-close responses.

local socket = require "socket"
local cjson = require "cjson.safe"
local luassert = require "luassert"
local say = require "say"

local fmt = string.format
local concat = table.concat
local insert = table.insert
local lower = string.lower

local helpers = {}

local ROOT = os.getenv("LUAGATE_ROOT") or os.getenv("PWD") or "."
helpers.root = ROOT
helpers.bin = os.getenv("LUAGATE_BIN") or (ROOT .. "/bin/luagate")
helpers.python = os.getenv("LUAGATE_PYTHON") or "/usr/bin/python3"
helpers.mock_upstream_script = ROOT .. "/spec/fixtures/mock_upstream.py"
helpers.tmp_root = os.getenv("LUAGATE_SPEC_TMP") or (ROOT .. "/spec/.tmp")

helpers.sleep = socket.sleep
helpers.gettime = socket.gettime

-- tag followed by something no other call of this process gave: the
-- time in ms and a serial (names, paths and cache keys of one test kept
-- apart from the others').
local unique_serial = 0
function helpers.unique(tag)
  unique_serial = unique_serial + 1
  return tag .. math.floor(socket.gettime() * 1000) .. "-" .. unique_serial
end

---------------------------------------------------------------------------
-- small utilities
---------------------------------------------------------------------------

local function shell_quote(s)
  s = tostring(s)
  if s:match("^[%w%-%./_:=,@+]+$") then
    return s
  end
  return "'" .. s:gsub("'", "'\\''") .. "'"
end
helpers.shell_quote = shell_quote

function helpers.read_file(path)
  local f = io.open(path, "rb")
  if not f then
    return nil
  end
  local data = f:read("*a")
  f:close()
  return data
end

function helpers.write_file(path, data)
  local f = assert(io.open(path, "wb"))
  assert(f:write(data))
  f:close()
  return path
end

-- Builds runtime/src/<src>.c as the Lua C module luagate.<src>_c (for
-- specs that run luagate's Lua under plain LuaJIT, where the binary's
-- built-in modules do not exist) and returns it, required; `libs`: extra
-- linker flags. luagate.config finds it in package.loaded afterwards.
function helpers.c_module(src, libs)
  local dir = helpers.make_prefix(src .. "_c")
  local root = os.getenv("LUAGATE_ROOT") or "."
  local rc, out, err = helpers.execute(fmt(
    "mkdir -p %s/luagate && cc -O1 -shared -fPIC -I%s/runtime/include %s " ..
    "-o %s/luagate/%s_c.so %s/runtime/src/%s.c %s",
    shell_quote(dir), shell_quote(root),
    (io.popen("pkg-config --cflags luajit"):read("*l") or ""),
    shell_quote(dir), src, shell_quote(root), src, libs or ""))
  assert(rc == 0, "could not build " .. src .. ".c: " .. tostring(out) ..
         tostring(err))
  local saved = package.cpath
  package.cpath = dir .. "/?.so;" .. saved
  local ok, m = pcall(require, "luagate." .. src .. "_c")
  package.cpath = saved
  assert(ok, m)
  return m
end

-- Writes plugin `name` in plugins directory dir: a handler with PRIORITY 1
-- and no phase, and the schema whose Lua source is `schema`.
function helpers.write_plugin(dir, name, schema)
  assert(os.execute("mkdir -p " .. shell_quote(dir .. "/" .. name)))
  helpers.write_file(dir .. "/" .. name .. "/handler.lua",
                     'return { PRIORITY = 1, VERSION = "0.1.0" }\n')
  helpers.write_file(dir .. "/" .. name .. "/schema.lua", schema)
end

-- Runs a shell command; returns its exit code, stdout and stderr.
function helpers.execute(cmd)
  local base = os.tmpname()
  os.execute(fmt("(%s) >%s.out 2>%s.err; echo $? >%s.rc", cmd, base, base,
                 base))
  local out = helpers.read_file(base .. ".out") or ""
  local err = helpers.read_file(base .. ".err") or ""
  local rc = tonumber((helpers.read_file(base .. ".rc") or ""):match("%d+"))
  os.remove(base .. ".out")
  os.remove(base .. ".err")
  os.remove(base .. ".rc")
  os.remove(base)
  return rc, out, err
end

local prefix_counter = 0
local my_pid
do
  local ffi = require "ffi"
  pcall(ffi.cdef, "int getpid(void);")
  my_pid = ffi.C.getpid()
end

-- Creates a fresh directory under spec/.tmp/ and returns its path. The
-- name carries this process's pid: busted runs one process per spec file,
-- and two of them in the same second must not share a directory (a stale
-- .rc file there would read as "exited").
-- busted reloads this module for every spec file (insulation), so the
-- counter restarts: the directory is made with a plain mkdir, which fails
-- when the name is taken, and another name is tried.
function helpers.make_prefix(name)
  os.execute("mkdir -p " .. shell_quote(helpers.tmp_root))
  for _ = 1, 1000 do
    prefix_counter = prefix_counter + 1
    local dir = fmt("%s/%s-%d-%d-%d", helpers.tmp_root, name or "prefix",
                    my_pid, math.floor(socket.gettime() * 1000), prefix_counter)
    if os.execute("mkdir " .. shell_quote(dir) .. " 2>/dev/null") == 0 then
      return dir
    end
  end
  error("could not make a fresh directory under " .. helpers.tmp_root)
end

-- Returns a TCP port that was free a moment ago.
function helpers.get_free_port()
  local s = assert(socket.bind("127.0.0.1", 0))
  local _, port = s:getsockname()
  s:close()
  return tonumber(port)
end

-- True when something accepts TCP connections on host:port.
function helpers.port_open(port, host)
  local s = socket.tcp()
  s:settimeout(0.5)
  local ok = s:connect(host or "127.0.0.1", port)
  s:close()
  return ok == 1
end

local abort_mt = {
  __tostring = function(self) return tostring(self.message) end,
}

-- Raised inside a wait_until() function, stops the wait at once.
function helpers.abort(message)
  error(setmetatable({ message = message }, abort_mt), 2)
end

-- Calls fn until it returns a truthy value (errors count as falsy, except
-- helpers.abort()); raises after timeout seconds (default 10). Returns fn's
-- values.
function helpers.wait_until(fn, timeout, step)
  timeout = timeout or 10
  step = step or 0.05
  local deadline = socket.gettime() + timeout
  local last_err
  while true do
    local res = { pcall(fn) }
    if res[1] and res[2] then
      return select(2, unpack(res))
    elseif not res[1] then
      last_err = res[2]
      if getmetatable(last_err) == abort_mt then
        error(last_err.message, 2)
      end
    end
    if socket.gettime() > deadline then
      error(fmt("wait_until() timed out after %.1fs%s", timeout,
                last_err and (": " .. tostring(last_err)) or ""), 2)
    end
    socket.sleep(step)
  end
end

---------------------------------------------------------------------------
-- JSON / YAML encoding of configs
---------------------------------------------------------------------------

-- Sentinel for an empty JSON array in configs given as Lua tables.
helpers.empty_array = setmetatable({}, { __name = "empty_array" })

local function is_array(t)
  if t == helpers.empty_array then
    return true
  end
  local n = 0
  for _ in pairs(t) do
    n = n + 1
  end
  return n > 0 and n == #t
end

local function json_encode(v, out)
  local tv = type(v)
  if tv == "table" then
    if is_array(v) then
      out[#out + 1] = "["
      for i = 1, #v do
        if i > 1 then out[#out + 1] = "," end
        json_encode(v[i], out)
      end
      out[#out + 1] = "]"
    else
      local keys = {}
      for k in pairs(v) do keys[#keys + 1] = tostring(k) end
      table.sort(keys)
      out[#out + 1] = "{"
      for i, k in ipairs(keys) do
        if i > 1 then out[#out + 1] = "," end
        out[#out + 1] = cjson.encode(k)
        out[#out + 1] = ":"
        local val = v[k]
        if val == nil then val = v[tonumber(k)] end
        json_encode(val, out)
      end
      out[#out + 1] = "}"
    end
  elseif tv == "string" or tv == "number" or tv == "boolean" then
    out[#out + 1] = cjson.encode(v)
  elseif v == nil or v == cjson.null then
    out[#out + 1] = "null"
  else
    error("cannot encode " .. tv .. " as JSON")
  end
  return out
end

-- Encodes a Lua table as JSON (sorted keys; helpers.empty_array for []).
function helpers.json_encode(v)
  return concat(json_encode(v, {}))
end

function helpers.json_decode(s)
  local v, err = cjson.decode(s)
  if v == nil then
    return nil, err
  end
  return v
end

-- Writes a config (Lua table) to dir as kong.json or kong.yml.
function helpers.make_config_file(config, dir, format)
  dir = dir or helpers.make_prefix("config")
  if format == "yaml" then
    local lyaml = require "lyaml"
    return helpers.write_file(dir .. "/kong.yml", lyaml.dump({ config }))
  end
  return helpers.write_file(dir .. "/kong.json", helpers.json_encode(config))
end

-- A config routing `paths` (default {"/"}) to the mock upstream.
function helpers.simple_config(upstream_port, extra)
  extra = extra or {}
  return {
    _format_version = "3.0",
    services = {
      {
        name = extra.name or "mock",
        url = fmt("http://127.0.0.1:%d%s", upstream_port, extra.path or ""),
        read_timeout = extra.read_timeout,
        routes = {
          {
            name = (extra.name or "mock") .. "-route",
            paths = extra.paths or { "/" },
            strip_path = extra.strip_path,
          },
        },
      },
    },
  }
end

---------------------------------------------------------------------------
-- process registry
---------------------------------------------------------------------------

local registry = {}

local function proc_alive(pid)
  local rc = helpers.execute("kill -0 " .. pid)
  return rc == 0
end
helpers.pid_alive = proc_alive

-- Pids of the direct children of pid.
function helpers.children(pid)
  local _, out = helpers.execute("pgrep -P " .. tonumber(pid))
  local list = {}
  for p in out:gmatch("%d+") do
    list[#list + 1] = tonumber(p)
  end
  table.sort(list)
  return list
end

-- Starts cmd (a shell command line, already quoted) in the background under
-- a bash that waits for it and writes its exit status to dir/name.rc.
-- stdout and stderr go to dir/name.stdout and dir/name.stderr.
-- set -m keeps SIGINT/SIGQUIT at their defaults for the child.
local function spawn(cmd, dir, name)
  local pidf = fmt("%s/%s.bgpid", dir, name)
  local rcf = fmt("%s/%s.rc", dir, name)
  local script = fmt("set -m; %s </dev/null >%s/%s.stdout 2>%s/%s.stderr & " ..
                     "echo $! >%s; wait $!; echo $? >%s",
                     cmd, dir, name, dir, name, pidf, rcf)
  os.execute(fmt("bash -c %s >/dev/null 2>&1 </dev/null &",
                 shell_quote(script)))
  local pid = helpers.wait_until(function()
    return tonumber((helpers.read_file(pidf) or ""):match("%d+"))
  end, 10, 0.01)
  local proc = {
    pid = pid,
    dir = dir,
    name = name,
    rc_file = rcf,
    stdout = fmt("%s/%s.stdout", dir, name),
    stderr = fmt("%s/%s.stderr", dir, name),
  }
  registry[proc] = true
  return proc
end

-- Exit status of a spawned process, or nil while it runs.
local function proc_exit_code(proc)
  return tonumber((helpers.read_file(proc.rc_file) or ""):match("%d+"))
end

-- Waits up to timeout seconds for proc to exit; returns its exit status or
-- nil. A status over 128 means killed by signal (status - 128).
local function proc_wait(proc, timeout)
  local deadline = socket.gettime() + (timeout or 10)
  while socket.gettime() < deadline do
    local rc = proc_exit_code(proc)
    if rc then
      return rc
    end
    socket.sleep(0.02)
  end
  return proc_exit_code(proc)
end

local function proc_kill_tree(proc)
  local kids = helpers.children(proc.pid)
  os.execute(fmt("kill -9 %d >/dev/null 2>&1", proc.pid))
  for _, k in ipairs(kids) do
    os.execute(fmt("kill -9 %d >/dev/null 2>&1", k))
  end
  for _, k in ipairs(proc.extra_pids or {}) do
    os.execute(fmt("kill -9 %d >/dev/null 2>&1", k))
  end
end

-- Sends signal to proc and waits; kills it (and its children) if it
-- outlives timeout. Returns the exit status.
local function proc_stop(proc, signal, timeout)
  if not registry[proc] then
    return proc_exit_code(proc)
  end
  local kids = helpers.children(proc.pid)
  os.execute(fmt("kill -%s %d >/dev/null 2>&1", signal or "TERM", proc.pid))
  local rc = proc_wait(proc, timeout or 10)
  if not rc then
    proc_kill_tree(proc)
    rc = proc_wait(proc, 5)
  end
  -- orphaned workers, if any, must not outlive the spec
  for _, k in ipairs(kids) do
    if proc_alive(k) then
      os.execute(fmt("kill -9 %d >/dev/null 2>&1", k))
    end
  end
  registry[proc] = nil
  return rc
end

-- Kills every process the helpers started. Runs at busted's exit.
function helpers.cleanup()
  for proc in pairs(registry) do
    proc_kill_tree(proc)
    registry[proc] = nil
  end
end

do
  local ok, busted = pcall(require, "busted")
  if ok and type(busted) == "table" and busted.subscribe then
    busted.subscribe({ "exit" }, function()
      helpers.cleanup()
      return nil, true
    end)
  end
  -- also when the Lua state is closed (os.exit(code, true)) or collected
  local sentinel = newproxy(true)
  getmetatable(sentinel).__gc = function() helpers.cleanup() end
  helpers._sentinel = sentinel
end

---------------------------------------------------------------------------
-- luagate
---------------------------------------------------------------------------

local function env_prefix(env)
  if not env then
    return ""
  end
  local parts = {}
  local keys = {}
  for k in pairs(env) do keys[#keys + 1] = k end
  table.sort(keys)
  for _, k in ipairs(keys) do
    parts[#parts + 1] = shell_quote(k .. "=" .. tostring(env[k]))
  end
  return "env " .. concat(parts, " ") .. " "
end

local function args_list(args)
  if type(args) == "string" then
    return { args }
  end
  return args or {}
end

-- Runs `bin/luagate <args>` to completion; returns rc, stdout, stderr.
function helpers.luagate_exec(args, env)
  local parts = {}
  for _, a in ipairs(args_list(args)) do
    parts[#parts + 1] = shell_quote(a)
  end
  return helpers.execute(env_prefix(env) .. shell_quote(helpers.bin) .. " " ..
                         concat(parts, " "))
end

-- Starts `bin/luagate run`. opts:
--   config        Lua table (written as JSON, or YAML with format = "yaml")
--                 or a file path
--   workers       default 1
--   args          extra CLI arguments (list)
--   env           extra environment variables (table)
--   admin         false to pass --admin-listen off
--   log_level     default "info"
--   access_log    default prefix/access.log ("off", "stdout" allowed)
--   no_listen     do not pass --listen/--admin-listen/logs (caller does)
--   wait          false to return without waiting for the ports
-- Returns gw: { pid, proxy_port, admin_port, prefix, config_path,
-- error_log, access_log, pid_file, proc }.
function helpers.start_luagate(opts)
  opts = opts or {}
  local prefix = helpers.make_prefix("luagate")
  local config_path
  if type(opts.config) == "string" then
    config_path = opts.config
  else
    config_path = helpers.make_config_file(opts.config or
                    { _format_version = "3.0" }, prefix, opts.format)
  end
  local gw = {
    prefix = prefix,
    config_path = config_path,
    proxy_port = opts.proxy_port or helpers.get_free_port(),
    admin_port = opts.admin ~= false and
                 (opts.admin_port or helpers.get_free_port()) or nil,
    error_log = prefix .. "/error.log",
    access_log = opts.access_log or (prefix .. "/access.log"),
    pid_file = prefix .. "/luagate.pid",
    format = opts.format,
  }
  local args = { "run", "-c", config_path }
  if not opts.no_listen then
    insert(args, "--listen")
    insert(args, "127.0.0.1:" .. gw.proxy_port)
    insert(args, "--admin-listen")
    insert(args, gw.admin_port and ("127.0.0.1:" .. gw.admin_port) or "off")
    insert(args, "--error-log")
    insert(args, gw.error_log)
    insert(args, "--access-log")
    insert(args, gw.access_log)
    insert(args, "--pid")
    insert(args, gw.pid_file)
  end
  insert(args, "--workers")
  insert(args, tostring(opts.workers or 1))
  insert(args, "--log-level")
  insert(args, opts.log_level or "info")
  for _, a in ipairs(args_list(opts.args)) do
    insert(args, a)
  end
  local quoted = {}
  for i, a in ipairs(args) do quoted[i] = shell_quote(a) end
  gw.cmdline = env_prefix(opts.env) .. shell_quote(helpers.bin) .. " " ..
               concat(quoted, " ")
  gw.proc = spawn(gw.cmdline, prefix, "luagate")
  gw.pid = gw.proc.pid
  gw.stdout = gw.proc.stdout
  gw.stderr = gw.proc.stderr
  if opts.wait == false then
    return gw
  end
  local ok, err = pcall(helpers.wait_until, function()
    if proc_exit_code(gw.proc) then
      helpers.abort("luagate exited with status " ..
                    proc_exit_code(gw.proc))
    end
    return helpers.port_open(gw.proxy_port) and
           (not gw.admin_port or helpers.port_open(gw.admin_port))
  end, opts.timeout or 15)
  if not ok then
    local logs = (helpers.read_file(gw.stderr) or "") ..
                 (helpers.read_file(gw.error_log) or "")
    proc_stop(gw.proc, "KILL", 2)
    return nil, fmt("luagate did not start (%s): %s\n%s", gw.cmdline,
                    tostring(err), logs:sub(-3000))
  end
  return gw
end

-- Stops luagate with signal (default TERM); returns its exit status
-- (128 + n when killed by signal n; nil if it had to be killed... then the
-- KILL status).
function helpers.stop_luagate(gw, signal, timeout)
  if not gw then
    return nil
  end
  return proc_stop(gw.proc, signal, timeout)
end

-- Sends a signal without waiting.
function helpers.signal(gw_or_pid, signal)
  local pid = type(gw_or_pid) == "table" and gw_or_pid.pid or gw_or_pid
  os.execute(fmt("kill -%s %d >/dev/null 2>&1", signal, pid))
end

-- Waits for a process started by the helpers to exit; returns the status.
function helpers.wait_exit(gw, timeout)
  local rc = proc_wait(gw.proc, timeout)
  if rc then
    registry[gw.proc] = nil
  end
  return rc
end

function helpers.exit_code(gw)
  return proc_exit_code(gw.proc)
end

-- Pids of luagate's workers (the master's children).
function helpers.worker_pids(gw)
  return helpers.children(gw.pid)
end

-- GET /status on the admin port, decoded; nil, err on failure.
function helpers.admin_status(gw)
  local c, err = helpers.admin_client(gw, 2)
  if not c then
    return nil, err
  end
  local res, rerr = c:get("/status")
  c:close()
  if not res then
    return nil, rerr
  end
  if res.status ~= 200 then
    return nil, "status " .. res.status
  end
  return helpers.json_decode(res.body)
end

-- Writes new_config (table or path to copy) over gw's config file and sends
-- SIGHUP. With an admin port and opts.wait ~= false, waits (up to 10 s) for
-- /status config_hash to change, and for every worker to have it
-- (worker_config_hashes), and returns true if they did.
function helpers.reload_luagate(gw, new_config, opts)
  opts = opts or {}
  local before = gw.admin_port and helpers.admin_status(gw)
  before = before and before.config_hash
  if type(new_config) == "table" then
    local data
    if gw.format == "yaml" then
      data = require("lyaml").dump({ new_config })
    else
      data = helpers.json_encode(new_config)
    end
    helpers.write_file(gw.config_path, data)
  elseif type(new_config) == "string" then
    helpers.write_file(gw.config_path, assert(helpers.read_file(new_config)))
  end
  helpers.signal(gw, "HUP")
  if opts.wait == false or not gw.admin_port or before == nil then
    return true
  end
  return helpers.wait_new_config(gw, before, opts.timeout)
end

-- Waits (up to timeout s, default 10) until every worker of gw runs a
-- configuration whose hash is not `before` (workers load a reload each at
-- its own pace: /status's worker_config_hashes). Returns true if they do.
function helpers.wait_new_config(gw, before, timeout)
  return (pcall(helpers.wait_until, function()
    local st = helpers.admin_status(gw)
    if not st or st.config_hash == before then
      return false
    end
    for _, h in ipairs(st.worker_config_hashes or {}) do
      if h ~= st.config_hash then
        return false
      end
    end
    return true
  end, timeout or 10))
end

-- Lines of a file (e.g. gw.access_log), as a list.
function helpers.file_lines(path)
  local lines = {}
  local data = helpers.read_file(path) or ""
  for line in data:gmatch("[^\n]+") do
    lines[#lines + 1] = line
  end
  return lines
end

-- Access-log entries (decoded JSON lines) of gw.
function helpers.access_log_entries(gw)
  local list = {}
  for _, line in ipairs(helpers.file_lines(gw.access_log)) do
    list[#list + 1] = helpers.json_decode(line) or { _raw = line }
  end
  return list
end

---------------------------------------------------------------------------
-- HTTP client
---------------------------------------------------------------------------

local header_mt = {
  __index = function(t, k)
    if type(k) == "string" then
      return rawget(t, lower(k))
    end
  end,
}

local function new_headers()
  return setmetatable({}, header_mt)
end

local function read_line(sock)
  local line, err, partial = sock:receive("*l")
  if not line then
    return nil, err, partial
  end
  return line
end

local function read_chunked(sock)
  local parts = {}
  while true do
    local line, err = read_line(sock)
    if not line then
      return nil, "reading chunk size: " .. err
    end
    local size = tonumber(line:match("^%s*(%x+)"), 16)
    if not size then
      return nil, "bad chunk size line: " .. line
    end
    if size == 0 then
      repeat
        line, err = read_line(sock)
        if not line then
          return nil, "reading trailers: " .. err
        end
      until line == ""
      return concat(parts)
    end
    local data
    data, err = sock:receive(size)
    if not data then
      return nil, "reading chunk: " .. err
    end
    parts[#parts + 1] = data
    line, err = read_line(sock)
    if line ~= "" then
      return nil, "bad chunk end: " .. tostring(line or err)
    end
  end
end

local function read_body(self)
  return self.body
end

-- Reads one response from sock. method is the request's method (HEAD has no
-- body). Returns res or nil, err. A 101 response returns right after its
-- head; 100 Continue is skipped.
function helpers.read_response(sock, method)
  local line, err
  local res
  repeat
    line, err = read_line(sock)
    if not line then
      return nil, err
    end
    local version, status, reason = line:match("^(HTTP/%d%.%d) (%d%d%d) ?(.*)$")
    if not version then
      return nil, "bad status line: " .. line
    end
    res = {
      status = tonumber(status),
      reason = reason,
      http_version = version,
      headers = new_headers(),
      raw_headers = {},
      read_body = read_body,
    }
    while true do
      line, err = read_line(sock)
      if not line then
        return nil, "reading headers: " .. err
      end
      if line == "" then
        break
      end
      local name, value = line:match("^([^:]+):%s*(.-)%s*$")
      if not name then
        return nil, "bad header line: " .. line
      end
      res.raw_headers[#res.raw_headers + 1] = { name, value }
      local key = lower(name)
      local old = rawget(res.headers, key)
      if old == nil then
        res.headers[key] = value
      elseif type(old) == "table" then
        old[#old + 1] = value
      else
        res.headers[key] = { old, value }
      end
    end
  until res.status ~= 100

  local status = res.status
  local te = res.headers["transfer-encoding"]
  local cl = res.headers["content-length"]
  local conn = lower(tostring(res.headers["connection"] or ""))
  res.keepalive = not conn:find("close", 1, true) and
                  res.http_version == "HTTP/1.1"
  if status == 101 or method == "HEAD" or status == 204 or status == 304
     or (status >= 100 and status < 200) then
    res.body = ""
  elseif te and lower(tostring(te)):find("chunked", 1, true) then
    res.body, err = read_chunked(sock)
    if not res.body then
      return nil, err
    end
  elseif cl then
    local n = tonumber(type(cl) == "table" and cl[1] or cl)
    if n == 0 then
      res.body = ""
    else
      local partial
      res.body, err, partial = sock:receive(n)
      if not res.body then
        return nil, "reading body: " .. err .. " after " ..
                    #(partial or "") .. " bytes", partial
      end
    end
  else
    local data, _, partial = sock:receive("*a")
    res.body = data or partial
    res.keepalive = false
  end
  return res
end

local Client = {}
Client.__index = Client

-- A keepalive HTTP/1.1 client to host:port. timeout in seconds (default 10).
function helpers.http_client(host, port, timeout)
  local sock = socket.tcp()
  sock:settimeout(timeout or 10)
  sock:setoption("tcp-nodelay", true)
  local ok, err = sock:connect(host, port)
  if not ok then
    return nil, fmt("connect(%s:%d) failed: %s", host, port, err)
  end
  return setmetatable({ sock = sock, host = host, port = port }, Client)
end

function helpers.proxy_client(gw, timeout)
  return assert(helpers.http_client("127.0.0.1", gw.proxy_port, timeout))
end

function helpers.admin_client(gw, timeout)
  if not gw.admin_port then
    return nil, "admin is off"
  end
  return helpers.http_client("127.0.0.1", gw.admin_port, timeout)
end

local function has_header(list, name)
  name = lower(name)
  for _, h in ipairs(list) do
    if lower(h[1]) == name then
      return true
    end
  end
  return false
end

-- Serializes a request. opts: method, path, headers (name -> value or list
-- of values; order of names is sorted), body (string), chunks (list of
-- strings: sent chunked), http_version ("1.1").
function helpers.build_request(opts, default_host)
  local list = {}
  local names = {}
  for name in pairs(opts.headers or {}) do names[#names + 1] = name end
  table.sort(names)
  for _, name in ipairs(names) do
    local v = opts.headers[name]
    if type(v) == "table" then
      for _, one in ipairs(v) do list[#list + 1] = { name, one } end
    else
      list[#list + 1] = { name, tostring(v) }
    end
  end
  if not has_header(list, "host") and default_host then
    insert(list, 1, { "Host", default_host })
  end
  local body = opts.body
  if opts.chunks then
    if not has_header(list, "transfer-encoding") then
      list[#list + 1] = { "Transfer-Encoding", "chunked" }
    end
    local parts = {}
    for _, c in ipairs(opts.chunks) do
      if #c > 0 then
        parts[#parts + 1] = fmt("%x\r\n%s\r\n", #c, c)
      end
    end
    parts[#parts + 1] = "0\r\n\r\n"
    body = concat(parts)
  elseif body and not has_header(list, "content-length")
         and not has_header(list, "transfer-encoding") then
    list[#list + 1] = { "Content-Length", tostring(#body) }
  end
  local out = { fmt("%s %s HTTP/%s\r\n", opts.method or "GET",
                    opts.path or "/", opts.http_version or "1.1") }
  for _, h in ipairs(list) do
    out[#out + 1] = h[1] .. ": " .. h[2] .. "\r\n"
  end
  out[#out + 1] = "\r\n"
  return concat(out), body
end

-- Sends one request and reads its response. Returns res or nil, err.
function Client:send(opts)
  if not self.sock then
    return nil, "closed"
  end
  local head, body = helpers.build_request(opts,
                       opts.host or fmt("%s:%d", self.host, self.port))
  local ok, err = self.sock:send(head)
  if ok and body and #body > 0 then
    ok, err = self.sock:send(body)
  end
  local res, rerr = helpers.read_response(self.sock, opts.method or "GET")
  if not res then
    return nil, rerr or err
  end
  if not ok then
    res.send_error = err
  end
  if not res.keepalive then
    self:close()
  end
  return res
end

for _, m in ipairs({ "get", "post", "put", "patch", "delete", "head",
                     "options" }) do
  Client[m] = function(self, path, opts)
    opts = opts or {}
    local o = {}
    for k, v in pairs(opts) do o[k] = v end
    o.method = m:upper()
    o.path = path
    return self:send(o)
  end
end

function Client:close()
  if self.sock then
    self.sock:close()
    self.sock = nil
  end
end

-- One request on a fresh connection (closed afterwards).
function helpers.request_once(port, opts, timeout)
  local c, err = helpers.http_client("127.0.0.1", port, timeout)
  if not c then
    return nil, err
  end
  local res, rerr = c:send(opts)
  c:close()
  return res, rerr
end

---------------------------------------------------------------------------
-- raw connections
---------------------------------------------------------------------------

local Raw = {}
Raw.__index = Raw

-- A raw TCP connection for hand-written bytes.
function helpers.raw_connect(port, host, timeout)
  local sock = socket.tcp()
  sock:settimeout(timeout or 10)
  local ok, err = sock:connect(host or "127.0.0.1", port)
  if not ok then
    return nil, err
  end
  sock:setoption("tcp-nodelay", true)
  return setmetatable({ sock = sock }, Raw)
end

function Raw:send(data)
  return self.sock:send(data)
end

function Raw:receive(pattern)
  return self.sock:receive(pattern)
end

function Raw:settimeout(t)
  self.sock:settimeout(t)
end

function Raw:read_response(method)
  return helpers.read_response(self.sock, method)
end

-- Everything until the peer closes (or timeout); returns data, err.
function Raw:read_all(timeout)
  self.sock:settimeout(timeout or 10)
  local data, err, partial = self.sock:receive("*a")
  return data or partial, err
end

-- Waits up to timeout seconds for the peer to close the connection.
-- Returns true if closed (any pending bytes are returned second), false if
-- still open at the deadline.
function Raw:wait_closed(timeout)
  self.sock:settimeout(timeout or 5)
  local buf = {}
  while true do
    local data, err, partial = self.sock:receive(65536)
    if data then
      buf[#buf + 1] = data
    else
      buf[#buf + 1] = partial
      if err == "closed" then
        return true, concat(buf)
      end
      if err == "timeout" then
        return false, concat(buf)
      end
      -- connection reset and the like
      return true, concat(buf), err
    end
  end
end

function Raw:close()
  if self.sock then
    self.sock:close()
    self.sock = nil
  end
end

---------------------------------------------------------------------------
-- mock upstream and redis
---------------------------------------------------------------------------

-- Starts spec/fixtures/mock_upstream.py. opts.port (default: a free one);
-- opts.tls = { cert = FILE, key = FILE, client_ca = FILE? } makes it speak
-- TLS (requests() and clear() then cannot be used: they speak plain HTTP);
-- opts.static_dir: files served as /static/NAME.
-- Returns { port, pid, stop(), requests(), clear() }.
function helpers.mock_upstream(opts)
  opts = opts or {}
  local dir = helpers.make_prefix("mock")
  local cmd = fmt("exec %s %s --port %d", shell_quote(helpers.python),
                  shell_quote(helpers.mock_upstream_script), opts.port or 0)
  if opts.tls then
    cmd = cmd .. fmt(" --tls-cert %s --tls-key %s",
                     shell_quote(opts.tls.cert), shell_quote(opts.tls.key))
    if opts.tls.client_ca then
      cmd = cmd .. " --tls-client-ca " .. shell_quote(opts.tls.client_ca)
    end
  end
  if opts.static_dir then
    cmd = cmd .. " --static-dir " .. shell_quote(opts.static_dir)
  end
  local proc = spawn(cmd, dir, "mock")
  local ok, port = pcall(helpers.wait_until, function()
    if proc_exit_code(proc) then
      helpers.abort("mock upstream exited: " ..
                    (helpers.read_file(proc.stderr) or ""))
    end
    return tonumber((helpers.read_file(proc.stdout) or ""):match("(%d+)\n"))
  end, 10)
  if not ok then
    proc_stop(proc, "KILL", 2)
    error(port, 2)
  end
  local mock = { port = port, pid = proc.pid, proc = proc }
  function mock.stop()
    return proc_stop(proc, "TERM", 5)
  end
  -- requests the mock received (last 200), oldest first
  function mock.requests()
    local res = assert(helpers.request_once(port, { path = "/_requests" }))
    return assert(helpers.json_decode(res.body))
  end
  -- how many of those had this path + query
  function mock.count(uri)
    local n = 0
    for _, r in ipairs(mock.requests()) do
      if r.uri == uri then
        n = n + 1
      end
    end
    return n
  end
  function mock.clear()
    assert(helpers.request_once(port, { method = "DELETE",
                                        path = "/_requests" }))
  end
  return mock
end


-- The value of one series of gw's GET /metrics (admin listener), given
-- exactly as it is written (name and labels):
-- helpers.metric(gw, 'luagate_phase_guard_skips_total{phase="log"}')
function helpers.metric(gw, series)
  local res = assert(helpers.request_once(gw.admin_port,
                                          { path = "/metrics" }))
  assert(res.status == 200, "GET /metrics: " .. tostring(res.status))
  local at = res.body:find("\n" .. series .. " ", 1, true)
  assert(at, "no series " .. series .. " in /metrics")
  return assert(tonumber(res.body:match("^(%S+)", at + #series + 2)))
end

-- Starts a helper process (a fixture server) that prints its port on its
-- first stdout line. cmd is a shell command. Returns { port, pid, proc,
-- stop() }; the process is killed at the end of the run if still alive.
function helpers.start_server(cmd, name)
  local dir = helpers.make_prefix(name or "server")
  local proc = spawn("exec " .. cmd, dir, name or "server")
  local ok, port = pcall(helpers.wait_until, function()
    if proc_exit_code(proc) then
      helpers.abort((name or "server") .. " exited: " ..
                    (helpers.read_file(proc.stderr) or ""))
    end
    return tonumber((helpers.read_file(proc.stdout) or ""):match("(%d+)\n"))
  end, 10)
  if not ok then
    proc_stop(proc, "KILL", 2)
    error(port, 2)
  end
  local srv = { port = port, pid = proc.pid, proc = proc }
  function srv.stop()
    return proc_stop(proc, "TERM", 5)
  end
  return srv
end

-- Starts cmd (a shell command) in the background. Returns { pid, stdout,
-- stderr (their files), stop() }; it is killed at the end of the run if
-- still alive.
function helpers.start_process(cmd, name)
  local dir = helpers.make_prefix(name or "process")
  local proc = spawn("exec " .. cmd, dir, name or "process")
  return {
    pid = proc.pid,
    stdout = proc.stdout,
    stderr = proc.stderr,
    stop = function()
      return proc_stop(proc, "TERM", 5)
    end,
  }
end

-- Starts redis-server on a free port (no persistence).
-- Returns { host, port, pid, stop() }.
function helpers.redis(opts)
  opts = opts or {}
  local dir = helpers.make_prefix("redis")
  local port = opts.port or helpers.get_free_port()
  local cmd = fmt("exec redis-server --port %d --bind 127.0.0.1 --save '' " ..
                  "--appendonly no --dir %s --daemonize no", port,
                  shell_quote(dir))
  local proc = spawn(cmd, dir, "redis")
  local ok, err = pcall(helpers.wait_until, function()
    if proc_exit_code(proc) then
      helpers.abort("redis-server exited: " ..
                    (helpers.read_file(proc.stdout) or ""))
    end
    return helpers.port_open(port)
  end, 10)
  if not ok then
    proc_stop(proc, "KILL", 2)
    error(err, 2)
  end
  local r = { host = "127.0.0.1", port = port, pid = proc.pid, proc = proc }
  function r.stop()
    return proc_stop(proc, "TERM", 5)
  end
  return r
end

---------------------------------------------------------------------------
-- assertions
---------------------------------------------------------------------------

local function body_of(res)
  if type(res) ~= "table" then
    return nil
  end
  if res.body ~= nil then
    return res.body
  end
  if type(res.read_body) == "function" then
    return res:read_body()
  end
end

local function excerpt(s)
  s = tostring(s)
  if #s > 600 then
    return s:sub(1, 600) .. "...(" .. #s .. " bytes)"
  end
  return s
end

-- assert.res_status(expected, res): returns the body.
local function res_status(state, args)
  local expected, res = args[1], args[2]
  if type(res) ~= "table" then
    rawset(state, "failure_message",
           "expected a response, got " .. tostring(res) ..
           (args[3] and (" (" .. tostring(args[3]) .. ")") or ""))
    return false
  end
  local body = body_of(res)
  if res.status ~= expected then
    rawset(state, "failure_message",
           fmt("expected status %s, got %s; body: %s", tostring(expected),
               tostring(res.status), excerpt(body)))
    return false
  end
  return true, { body }
end
say:set("assertion.res_status.negative", "Expected status not to be %s")
luassert:register("assertion", "res_status", res_status,
                  "assertion.res_status.positive",
                  "assertion.res_status.negative")

local function modifier_response(state, args)
  rawset(state, "lg_response", args[1])
  rawset(state, "lg_response_err", args[2])
  rawset(state, "lg_mode", "response")
end
luassert:register("modifier", "response", modifier_response)

local function modifier_request(state, args)
  rawset(state, "lg_response", args[1])
  rawset(state, "lg_response_err", args[2])
  rawset(state, "lg_mode", "request")
end
luassert:register("modifier", "request", modifier_request)

local function get_res(state)
  local res = rawget(state, "lg_response")
  if type(res) ~= "table" then
    rawset(state, "failure_message", "no response: " ..
           tostring(rawget(state, "lg_response_err") or res))
    return nil
  end
  return res
end

-- assert.response(res).has.status(n): returns the body.
local function status(state, args)
  local res = get_res(state)
  if not res then
    return false
  end
  local body = body_of(res)
  if res.status ~= args[1] then
    rawset(state, "failure_message",
           fmt("expected status %s, got %s; body: %s", tostring(args[1]),
               tostring(res.status), excerpt(body)))
    return false
  end
  return true, { body }
end
luassert:register("assertion", "status", status)

-- assert.response(res).has.jsonbody(): returns the decoded body.
local function jsonbody(state, args)
  local res = get_res(state)
  if not res then
    return false
  end
  local body = body_of(res)
  local json, err = helpers.json_decode(body or "")
  if type(json) ~= "table" then
    rawset(state, "failure_message",
           "body is not JSON (" .. tostring(err) .. "): " .. excerpt(body))
    return false
  end
  return true, { json }
end
luassert:register("assertion", "jsonbody", jsonbody)

-- The request as the mock upstream echoed it.
local function echoed_request(state)
  local res = get_res(state)
  if not res then
    return nil
  end
  local json = helpers.json_decode(body_of(res) or "")
  if type(json) ~= "table" or type(json.headers) ~= "table" then
    rawset(state, "failure_message",
           "response is not a mock upstream echo: " ..
           excerpt(body_of(res)))
    return nil
  end
  return json
end

-- assert.request(res).has.header(name) -> value (upstream echo);
-- assert.response(res).has.header(name) -> value (response header).
local function header(state, args)
  local name = lower(tostring(args[1]))
  local value
  if rawget(state, "lg_mode") == "request" then
    local echo = echoed_request(state)
    if not echo then
      error(rawget(state, "failure_message"), 3)
    end
    value = echo.headers[name]
    if value == nil then
      rawset(state, "failure_message",
             "upstream request has no header '" .. name .. "'; headers: " ..
             excerpt(helpers.json_encode(echo.headers)))
      return false
    end
  else
    local res = get_res(state)
    if not res then
      error(rawget(state, "failure_message"), 3)
    end
    value = res.headers[name]
    if value == nil then
      rawset(state, "failure_message",
             "response has no header '" .. name .. "'")
      return false
    end
  end
  return true, { value }
end
say:set("assertion.header.negative", "Expected header %s to be absent")
luassert:register("assertion", "header", header,
                  "assertion.header.positive", "assertion.header.negative")

-- assert.request(res).has.queryparam(name) -> value.
local function queryparam(state, args)
  local echo = echoed_request(state)
  if not echo then
    return false
  end
  local value = echo.query[args[1]]
  if value == nil then
    rawset(state, "failure_message",
           "upstream request has no query parameter '" .. tostring(args[1]) ..
           "'")
    return false
  end
  return true, { value }
end
luassert:register("assertion", "queryparam", queryparam)

-- Registers the hooks of a suite that drives one test plugin from
-- spec/fixtures/plugins on the route /io: a backend (`"mock"`, the mock
-- upstream, whose port and a closed port go into the plugin's config; or
-- `"redis"`, a redis-server whose port does; or `"tls"`, the mock upstream
-- plus two TLS mock upstreams, `up` with the test CA's certificate for
-- upstream.test/localhost and `other` with example.test's, given as port,
-- tls_port and tls_other_port, and the test CA as
-- --lua-ssl-trusted-certificate), a gateway, and a proxy client per test.
-- Returns a table filled by the hooks: mock or redis (and up, other, tls:
-- the fixtures), config (the gateway's), gw, client, and call(query):
-- GET /io?query, the decoded JSON of a 200 answer.
function helpers.io_suite(plugin, backend)
  -- busted's hooks live in the calling spec file's environment
  local env = getfenv(2)
  local lazy_setup, lazy_teardown = env.lazy_setup, env.lazy_teardown
  local before_each, after_each = env.before_each, env.after_each
  local s = {}
  lazy_setup(function()
    local url, conf
    local args = { "--plugins-dir", helpers.root .. "/spec/fixtures/plugins" }
    if backend == "redis" then
      s.redis = helpers.redis()
      url = "http://127.0.0.1:" .. helpers.get_free_port()
      conf = { port = s.redis.port }
    elseif backend == "tls" then
      s.tls = require("spec.tls_fixtures").get()
      local up, ex = s.tls.certs.upstream, s.tls.certs["example.test"]
      s.mock = helpers.mock_upstream()
      s.up = helpers.mock_upstream({ tls = { cert = up.cert, key = up.key } })
      s.other = helpers.mock_upstream({ tls = { cert = ex.cert,
                                                key = ex.key } })
      url = fmt("http://127.0.0.1:%d", s.mock.port)
      conf = { port = s.mock.port, tls_port = s.up.port,
               tls_other_port = s.other.port }
      args[#args + 1] = "--lua-ssl-trusted-certificate"
      args[#args + 1] = s.tls.ca.cert
    else
      s.mock = helpers.mock_upstream()
      url = fmt("http://127.0.0.1:%d", s.mock.port)
      conf = { port = s.mock.port, closed_port = helpers.get_free_port() }
    end
    s.config = {
      _format_version = "3.0",
      services = {
        { name = "backend", url = url,
          routes = { { name = "io", paths = { "/io" },
                       plugins = { { name = plugin, config = conf } } } } },
      },
    }
    s.gw = assert(helpers.start_luagate({ config = s.config, args = args,
                                          log_level = "notice" }))
  end)
  lazy_teardown(function()
    if s.gw then helpers.stop_luagate(s.gw) end
    for _, k in ipairs({ "mock", "up", "other", "redis" }) do
      if s[k] then s[k].stop() end
    end
  end)
  before_each(function()
    s.client = helpers.proxy_client(s.gw, 10)
  end)
  after_each(function()
    if s.client then s.client:close() end
  end)
  function s.call(query)
    local res = s.client:get("/io?" .. query)
    return env.assert(helpers.json_decode(env.assert.res_status(200, res)))
  end
  return s
end


return helpers
