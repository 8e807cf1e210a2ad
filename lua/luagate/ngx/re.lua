-- ngx.re: PCRE2 regexes through the FFI with lua-nginx-module semantics.
--
--   captures, err      = match(subject, regex, options?, ctx?, res_table?)
--   from, to, err      = find(subject, regex, options?, ctx?, nth?)
--   iterator, err      = gmatch(subject, regex, options?)
--     captures, err    = iterator()
--   newstr, n, err     = sub(subject, regex, replace, options?)
--   newstr, n, err     = gsub(subject, regex, replace, options?)
--
-- Captures tables: [0] is the whole match, [1]..[n] the groups, named groups
-- also by name; a group that did not take part is `false`. With the "D"
-- option a name used by several groups maps to an array of their values.
-- No match: match/find return nil (no error), the iterator returns nil,
-- sub/gsub return the subject and 0. Failures (bad regex, match error)
-- return nil plus a message, as `nil, err`, `nil, nil, err` (find, sub,
-- gsub). Misuse (unknown option, wrong argument type) raises.
--
-- Options: a anchored, d DFA (longest leftmost match, only [0] captured),
-- D duplicate names, i caseless, j PCRE2 JIT, J JavaScript compatibility,
-- m multiline, o compile once (accepted: every compiled regex is cached),
-- s dotall, u UTF-8, U UTF-8 without subject validity check, x extended.
--
-- ctx.pos (match, find): 1-based offset to start at (<= 0 means 1); after a
-- match it is set to the offset just past the whole match; left unchanged
-- when nothing matches. A start beyond #subject + 1 never matches.
--
-- Replacements: a string template where $0 / ${0} is the whole match, $N /
-- ${N} group N (any number of digits), ${name} a named group and $$ a
-- literal dollar; a group that did not match or does not exist expands to
-- "". Any other use of "$" is an error. Or a function called with the
-- captures table, returning a string or number.
--
-- Empty matches (gmatch, gsub): after an empty match the scan moves on by
-- one character (one UTF-8 sequence with u/U), so "" against "abc" matches
-- at offsets 0, 1, 2 and 3; an empty match right after a non-empty one is
-- kept ("b*" on "abc" with "-" gives "-a--c-", as Perl does).
--
-- Compiled regexes live in an LRU of CACHE_MAX entries keyed by regex and
-- options; each owns one pcre2_match_data reused by every call (the values
-- needed from it are read before any user callback runs, so a replacement
-- function may use the same regex again).

local ffi = require("ffi")
local bit = require("bit")
local cdefs = require("luagate.ngx.cdefs")
local new_tab = require("table.new")
local buffer = require("string.buffer")

local type = type
local error = error
local tostring = tostring
local tonumber = tonumber
local byte = string.byte
local sub = string.sub
local find = string.find
local fmt = string.format
local bor = bit.bor
local band = bit.band
local lshift = bit.lshift
local ffi_new = ffi.new
local ffi_cast = ffi.cast
local ffi_gc = ffi.gc
local ffi_string = ffi.string

local pcre2 = cdefs.pcre2

local _M = {}


local CACHE_MAX = 1024        -- compiled regexes kept (LRU)
local TEMPLATE_CACHE_MAX = 1024
local DFA_WORKSPACE = 100     -- ints, per compiled DFA regex

local PCRE2_ANCHORED = 0x80000000
local PCRE2_NO_UTF_CHECK = 0x40000000
local PCRE2_ALLOW_EMPTY_CLASS = 0x00000001
local PCRE2_ALT_BSUX = 0x00000002
local PCRE2_CASELESS = 0x00000008
local PCRE2_DOTALL = 0x00000020
local PCRE2_DUPNAMES = 0x00000040
local PCRE2_EXTENDED = 0x00000080
local PCRE2_MATCH_UNSET_BACKREF = 0x00000200
local PCRE2_MULTILINE = 0x00000400
local PCRE2_UTF = 0x00080000
local PCRE2_JIT_COMPLETE = 0x00000001
local PCRE2_INFO_CAPTURECOUNT = 4
local PCRE2_INFO_NAMECOUNT = 17
local PCRE2_INFO_NAMEENTRYSIZE = 18
local PCRE2_INFO_NAMETABLE = 19
local PCRE2_ERROR_NOMATCH = -1

local int_out = ffi_new("int[1]")
local size_out = ffi_new("size_t[1]")
local u32_out = ffi_new("uint32_t[1]")
local ptr_out = ffi_new("const unsigned char *[1]")
local errbuf = ffi_new("unsigned char[256]")


local function pcre2_error(code)
  local n = pcre2.pcre2_get_error_message_8(code, errbuf, 256)
  if n < 0 then
    return "error " .. code
  end
  return ffi_string(errbuf, n)
end


-- options -------------------------------------------------------------------

-- flags[opts] = { compile = uint32, match = uint32, jit, dfa, utf8 }
local flags_cache = {}
local flags_count = 0

local function parse_options(opts, level)
  local f = flags_cache[opts]
  if f then
    return f
  end
  local cflags, mflags = 0, 0
  local jit, dfa, utf8 = false, false, false
  for i = 1, #opts do
    local c = sub(opts, i, i)
    if c == "a" then
      cflags = bor(cflags, PCRE2_ANCHORED)
    elseif c == "d" then
      dfa = true
    elseif c == "D" then
      cflags = bor(cflags, PCRE2_DUPNAMES)
    elseif c == "i" then
      cflags = bor(cflags, PCRE2_CASELESS)
    elseif c == "j" then
      jit = true
    elseif c == "J" then
      cflags = bor(cflags, PCRE2_ALT_BSUX, PCRE2_ALLOW_EMPTY_CLASS,
                   PCRE2_MATCH_UNSET_BACKREF)
    elseif c == "m" then
      cflags = bor(cflags, PCRE2_MULTILINE)
    elseif c == "o" then -- luacheck: ignore 542
      -- compile once: every regex is cached anyway
    elseif c == "s" then
      cflags = bor(cflags, PCRE2_DOTALL)
    elseif c == "u" then
      cflags = bor(cflags, PCRE2_UTF)
      utf8 = true
    elseif c == "U" then
      cflags = bor(cflags, PCRE2_UTF)
      mflags = bor(mflags, PCRE2_NO_UTF_CHECK)
      utf8 = true
    elseif c == "x" then
      cflags = bor(cflags, PCRE2_EXTENDED)
    else
      error(fmt("unknown flag \"%s\" (flags \"%s\")", c, opts), level + 1)
    end
  end
  f = { compile = cflags, match = mflags, jit = jit, dfa = dfa, utf8 = utf8 }
  if flags_count >= 256 then
    flags_cache = {}
    flags_count = 0
  end
  flags_cache[opts] = f
  flags_count = flags_count + 1
  return f
end


-- compilation and the LRU ---------------------------------------------------

local function compile(regex, f)
  local code = pcre2.pcre2_compile_8(regex, #regex, f.compile, int_out,
                                     size_out, nil)
  if code == nil then
    local off = tonumber(size_out[0])
    return nil, fmt("pcre2_compile() failed: %s in \"%s\" at \"%s\"",
                    pcre2_error(int_out[0]), regex, sub(regex, off + 1))
  end
  code = ffi_gc(code, pcre2.pcre2_code_free_8)

  if f.jit then
    -- a failure only means the interpreter is used
    pcre2.pcre2_jit_compile_8(code, PCRE2_JIT_COMPLETE)
  end

  local ncap, names, nnames = 0, nil, 0
  if not f.dfa then
    pcre2.pcre2_pattern_info_8(code, PCRE2_INFO_CAPTURECOUNT, u32_out)
    ncap = tonumber(u32_out[0])
    pcre2.pcre2_pattern_info_8(code, PCRE2_INFO_NAMECOUNT, u32_out)
    nnames = tonumber(u32_out[0])
    if nnames > 0 then
      pcre2.pcre2_pattern_info_8(code, PCRE2_INFO_NAMEENTRYSIZE, u32_out)
      local size = tonumber(u32_out[0])
      pcre2.pcre2_pattern_info_8(code, PCRE2_INFO_NAMETABLE, ptr_out)
      local p = ptr_out[0]
      names = new_tab(nnames * 2, 0)
      for i = 0, nnames - 1 do
        local e = p + i * size
        names[i * 2 + 1] = bor(lshift(e[0], 8), e[1])
        names[i * 2 + 2] = ffi_string(e + 2)
      end
    end
  end

  local md = pcre2.pcre2_match_data_create_8(ncap + 1, nil)
  if md == nil then
    return nil, "pcre2_match_data_create() failed: out of memory"
  end
  md = ffi_gc(md, pcre2.pcre2_match_data_free_8)

  return {
    code = code,
    md = md,
    -- PCRE2_UNSET (~0) reads as -1 through this view
    ov = ffi_cast("int64_t *", pcre2.pcre2_get_ovector_pointer_8(md)),
    ncap = ncap,
    names = names,
    nnames = nnames,
    dup = band(f.compile, PCRE2_DUPNAMES) ~= 0,
    mflags = f.match,
    utf8 = f.utf8,
    dfa = f.dfa,
    ws = f.dfa and ffi_new("int[?]", DFA_WORKSPACE) or nil,
  }
end


-- cache[opts][regex] = node; nodes form a doubly linked list, most recently
-- used first, between the `lru` sentinel's next and prev.
local cache = {}
local cached = 0
local lru = {}
lru.next, lru.prev = lru, lru

local function unlink(node)
  node.prev.next = node.next
  node.next.prev = node.prev
end

local function push_front(node)
  node.next = lru.next
  node.prev = lru
  lru.next.prev = node
  lru.next = node
end

-- Returns the compiled regex for (regex, opts), or nil and the error.
local function get_compiled(regex, opts, level)
  if type(regex) ~= "string" then
    error("bad argument #2 (string expected, got " .. type(regex) .. ")",
          level + 1)
  end
  if opts == nil then
    opts = ""
  elseif type(opts) ~= "string" then
    error("bad argument #3 (string expected, got " .. type(opts) .. ")",
          level + 1)
  end

  local by_re = cache[opts]
  local node = by_re and by_re[regex]
  if node then
    if lru.next ~= node then
      unlink(node)
      push_front(node)
    end
    return node.value
  end

  local f = parse_options(opts, level + 1)
  if not pcre2 then
    return nil, "pcre2 library not available: " .. tostring(
                  cdefs.load_errors.pcre2)
  end
  local c, err = compile(regex, f)
  if not c then
    return nil, err
  end

  if not by_re then
    by_re = {}
    cache[opts] = by_re
  end
  node = { value = c, re = regex, opts = opts }
  by_re[regex] = node
  push_front(node)
  cached = cached + 1

  if cached > CACHE_MAX then
    local old = lru.prev
    unlink(old)
    cache[old.opts][old.re] = nil
    cached = cached - 1
  end
  return c
end


-- matching --------------------------------------------------------------------

-- Runs c against subject from 0-based byte offset pos. Returns true on a
-- match (offsets in c.ov), false on no match, or nil and the error.
local function exec(c, subject, len, pos)
  if pos > len then
    return false
  end
  local rc
  if c.dfa then
    rc = pcre2.pcre2_dfa_match_8(c.code, subject, len, pos, c.mflags, c.md,
                                 nil, c.ws, DFA_WORKSPACE)
    if rc == PCRE2_ERROR_NOMATCH then
      return false
    end
    -- rc == 0: more matches than ovector pairs; pair 0 is still the longest
    if rc < 0 then
      return nil, "pcre2_dfa_match() failed: " .. rc
    end
    return true
  end
  rc = pcre2.pcre2_match_8(c.code, subject, len, pos, c.mflags, c.md, nil)
  if rc == PCRE2_ERROR_NOMATCH then
    return false
  end
  if rc < 0 then
    return nil, "pcre2_match() failed: " .. rc
  end
  return true
end


local function collect(c, subject, res)
  local ov = c.ov
  local ncap = c.ncap
  if not res then
    res = new_tab(ncap + 1, c.nnames)
  end
  for i = 0, ncap do
    local s = tonumber(ov[i * 2])
    if s < 0 then
      res[i] = false
    else
      res[i] = sub(subject, s + 1, tonumber(ov[i * 2 + 1]))
    end
  end
  local names = c.names
  if names then
    if c.dup then
      for i = 1, c.nnames * 2, 2 do
        local name = names[i + 1]
        local list = res[name]
        if type(list) ~= "table" then
          list = {}
          res[name] = list
        end
        list[#list + 1] = res[names[i]]
      end
    else
      for i = 1, c.nnames * 2, 2 do
        res[names[i + 1]] = res[names[i]]
      end
    end
  end
  return res
end


local function start_pos(ctx)
  if ctx then
    local p = ctx.pos
    if p and p > 0 then
      return p - 1
    end
  end
  return 0
end


function _M.match(subject, regex, options, ctx, res_table)
  local c, err = get_compiled(regex, options, 2)
  if not c then
    return nil, err
  end
  if type(subject) ~= "string" then
    subject = tostring(subject)
  end
  local ok
  ok, err = exec(c, subject, #subject, start_pos(ctx))
  if not ok then
    return nil, err
  end
  if ctx then
    ctx.pos = tonumber(c.ov[1]) + 1
  end
  return collect(c, subject, res_table)
end


function _M.find(subject, regex, options, ctx, nth)
  local c, err = get_compiled(regex, options, 2)
  if not c then
    return nil, nil, err
  end
  if nth == nil then
    nth = 0
  elseif type(nth) ~= "number" then
    error("bad argument #5 (number expected, got " .. type(nth) .. ")", 2)
  elseif nth < 0 then
    nth = 0
  end
  if nth > c.ncap then
    return nil, nil, "nth out of bound"
  end
  if type(subject) ~= "string" then
    subject = tostring(subject)
  end
  local ok
  ok, err = exec(c, subject, #subject, start_pos(ctx))
  if not ok then
    return nil, nil, err
  end
  local ov = c.ov
  if ctx then
    ctx.pos = tonumber(ov[1]) + 1
  end
  local from = tonumber(ov[nth * 2])
  if from < 0 then
    return nil, nil
  end
  return from + 1, tonumber(ov[nth * 2 + 1])
end


-- Bytes to skip after an empty match at 0-based offset `pos`.
local function advance(utf8, subject, pos)
  if not utf8 then
    return 1
  end
  local b = byte(subject, pos + 1)
  if not b or b < 0xc0 then
    return 1
  elseif b >= 0xf0 then
    return 4
  elseif b >= 0xe0 then
    return 3
  end
  return 2
end


function _M.gmatch(subject, regex, options)
  local c, err = get_compiled(regex, options, 2)
  if not c then
    return nil, err
  end
  if type(subject) ~= "string" then
    subject = tostring(subject)
  end
  local len = #subject
  local pos = 0
  local done = false

  return function()
    if done then
      return nil
    end
    local ok, e = exec(c, subject, len, pos)
    if not ok then
      done = true
      return nil, e
    end
    local ov = c.ov
    local from, to = tonumber(ov[0]), tonumber(ov[1])
    if from == to then
      pos = to + advance(c.utf8, subject, to)
    else
      pos = to
    end
    return collect(c, subject)
  end
end


-- replacement templates -----------------------------------------------------

-- A compiled template is an array of pieces: strings are literals, numbers
-- group indexes, { name } a named group.
local templates = {}
local templates_count = 0

local function compile_template(tpl)
  local t = templates[tpl]
  if t then
    return t
  end
  t = {}
  local lit = buffer.new()
  local i, n = 1, #tpl
  while i <= n do
    local ch = byte(tpl, i)
    if ch ~= 36 then -- "$"
      lit:put(sub(tpl, i, i))
      i = i + 1
    else
      local nx = byte(tpl, i + 1)
      local piece, j
      if nx == 36 then
        lit:put("$")
        i = i + 2
      elseif nx and nx >= 48 and nx <= 57 then
        j = i + 1
        while true do
          local d = byte(tpl, j + 1)
          if not d or d < 48 or d > 57 then
            break
          end
          j = j + 1
        end
        piece = tonumber(sub(tpl, i + 1, j))
      elseif nx == 123 then -- "{"
        local close = find(tpl, "}", i + 2, true)
        if not close then
          return nil, "the closing bracket in \"" .. sub(tpl, i)
                      .. "\" variable is missing"
        end
        local name = sub(tpl, i + 2, close - 1)
        if find(name, "^%d+$") then
          piece = tonumber(name)
        elseif find(name, "^[%a_][%w_]*$") then
          piece = { name }
        else
          return nil, "invalid capturing variable name found in \""
                      .. sub(tpl, i) .. "\""
        end
        j = close
      else
        return nil, "invalid capturing variable name found in \""
                    .. sub(tpl, i) .. "\""
      end
      if piece then
        if #lit > 0 then
          t[#t + 1] = lit:get()
        end
        t[#t + 1] = piece
        i = j + 1
      end
    end
  end
  if #lit > 0 then
    t[#t + 1] = lit:get()
  end

  if templates_count >= TEMPLATE_CACHE_MAX then
    templates = {}
    templates_count = 0
  end
  templates[tpl] = t
  templates_count = templates_count + 1
  return t
end


-- Appends the expansion of template t for the current match of c.
local function expand(buf, t, c, subject)
  local ov = c.ov
  for k = 1, #t do
    local piece = t[k]
    local tp = type(piece)
    if tp == "string" then
      buf:put(piece)
    else
      local idx = piece
      if tp == "table" then
        idx = nil
        local names = c.names
        if names then
          local name = piece[1]
          -- with duplicate names the first group that matched wins
          for i = 1, c.nnames * 2, 2 do
            if names[i + 1] == name then
              idx = names[i]
              if tonumber(ov[idx * 2]) >= 0 then
                break
              end
            end
          end
        end
      end
      if idx and idx <= c.ncap then
        local s = tonumber(ov[idx * 2])
        if s >= 0 then
          buf:put(sub(subject, s + 1, tonumber(ov[idx * 2 + 1])))
        end
      end
    end
  end
end


-- output buffer of template replacements, which never run user code
local tpl_buf = buffer.new()

local function replace(subject, regex, repl, options, global)
  local c, err = get_compiled(regex, options, 3)
  if not c then
    return nil, nil, err
  end
  if type(subject) ~= "string" then
    subject = tostring(subject)
  end

  local tpl, func
  local rt = type(repl)
  if rt == "function" then
    func = repl
  elseif rt == "string" or rt == "number" then
    tpl, err = compile_template(tostring(repl))
    if not tpl then
      return nil, nil, "failed to compile the replacement template: " .. err
    end
  else
    error("bad argument #3 (string, number, or function expected, got "
          .. rt .. ")", 3)
  end

  local len = #subject
  local pos = 0       -- where the next search starts
  local copied = 0    -- subject bytes [0, copied) are in buf already
  local count = 0
  local buf

  while true do
    local ok, e = exec(c, subject, len, pos)
    if ok == nil then
      return nil, nil, e
    end
    if not ok then
      break
    end
    local ov = c.ov
    local from, to = tonumber(ov[0]), tonumber(ov[1])
    count = count + 1
    if not buf then
      -- a replacement function may call gsub again: give it its own buffer
      if func then
        buf = buffer.new()
      else
        buf = tpl_buf
        buf:reset()
      end
    end
    if from > copied then
      buf:put(sub(subject, copied + 1, from))
    end
    if func then
      -- everything needed from c.ov is in locals before the call
      local v = func(collect(c, subject))
      local vt = type(v)
      if vt == "string" then
        buf:put(v)
      elseif vt == "number" then
        buf:put(tostring(v))
      else
        error("attempt to use " .. vt .. " as the replacement value", 3)
      end
    else
      expand(buf, tpl, c, subject)
    end
    copied = to
    if from == to then
      if to >= len then
        break
      end
      local step = advance(c.utf8, subject, to)
      buf:put(sub(subject, to + 1, to + step))
      pos = to + step
      copied = pos
    else
      pos = to
    end
    if not global then
      break
    end
  end

  if count == 0 then
    return subject, 0
  end
  if copied < len then
    buf:put(sub(subject, copied + 1))
  end
  return buf:get(), count
end


function _M.sub(subject, regex, repl, options)
  return replace(subject, regex, repl, options, false)
end


function _M.gsub(subject, regex, repl, options)
  return replace(subject, regex, repl, options, true)
end


-- For specs and the runtime's stats: number of compiled regexes cached.
function _M.cache_size()
  return cached
end


return _M
