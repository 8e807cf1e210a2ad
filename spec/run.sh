#!/usr/bin/env bash
# The whole test suite, as `make test` runs it (after `make deps build`).
#
#   spec/run.sh                 C unit tests + every busted spec directory
#   spec/run.sh FILE_OR_DIR...  only those busted specs (no C tests)
#
# Runners: runtime/test/run.sh (TAP) when it exists, then busted under
# LuaJIT over spec/01-unit, spec/02-integration, spec/03-plugins,
# spec/04-compat and examples/plugins/*/spec (those that exist). Specs start
# what they need (mock upstream, redis, luagate) through spec/helpers.lua;
# anything left over is killed at the end.
#
# Prints every failure with its message and ends with exactly
# "N passed, N failed". Exits 1 if anything failed or nothing ran.
set -u
cd "$(dirname "$0")/.."
ROOT=$PWD
export LUAGATE_ROOT=$ROOT
export PWD=$ROOT

BUSTED_TIMEOUT=${BUSTED_TIMEOUT:-1500}   # seconds per busted run
TMP=${LUAGATE_SPEC_TMP:-$ROOT/spec/.tmp}
export LUAGATE_SPEC_TMP=$TMP
rm -rf "$TMP"
mkdir -p "$TMP"
# 10k connections in some specs and the benchmark
ulimit -n 65536 2>/dev/null || ulimit -n "$(ulimit -Hn)" 2>/dev/null || true

passed=0
failed=0
FAILURES=$TMP/failures.txt
: >"$FAILURES"

# Kills every process a helper started and that still runs (their pids are
# in spec/.tmp/*/*.bgpid), and its children.
cleanup() {
  local f pid kid
  for f in "$TMP"/*/*.bgpid; do
    [ -f "$f" ] || continue
    pid=$(cat "$f" 2>/dev/null)
    [ -n "$pid" ] || continue
    if kill -0 "$pid" 2>/dev/null; then
      for kid in $(pgrep -P "$pid"); do kill -9 "$kid" 2>/dev/null; done
      kill -9 "$pid" 2>/dev/null
    fi
  done
}
trap cleanup EXIT

# count_tap FILE LABEL: adds a TAP log's ok / not ok lines to the totals and
# records each failure with the "#" lines that follow it.
count_tap() {
  local file=$1 label=$2 p f
  p=$(grep -cE '^ok [0-9]+' "$file")
  f=$(grep -cE '^not ok [0-9]+' "$file")
  passed=$((passed + p))
  failed=$((failed + f))
  awk -v label="$label" '
    /^not ok [0-9]+/ { if (inf) print ""; inf = 1; print "[" label "] " $0; next }
    /^(ok|not ok) [0-9]+/ { if (inf) print ""; inf = 0; next }
    /^#/ && inf { print "    " $0; next }
    /^1\.\.[0-9]+/ { if (inf) print ""; inf = 0 }
  ' "$file" >>"$FAILURES"
  RUN_COUNT=$((p + f))
}

# Busted output handler: TAP-like lines as tests end (live progress), then
# errors outside tests (a file that does not load, a failing lazy_setup).
HANDLER=$TMP/tap_handler.lua
cat >"$HANDLER" <<'EOF'
return function(options)
  local busted = require "busted"
  local handler = require("busted.outputHandlers.base")()
  local n = 0
  local function message_lines(fmtd)
    local msg = tostring(fmtd and fmtd.message or "")
    local out = {}
    local trace = fmtd and fmtd.trace
    if trace and trace.short_src then
      out[#out + 1] = "# " .. trace.short_src .. ":" ..
                      tostring(trace.currentline or "?")
    end
    for line in (msg .. "\n"):gmatch("(.-)\n") do
      out[#out + 1] = "# " .. line
    end
    return table.concat(out, "\n")
  end
  local function find(list, element)
    for i = #list, 1, -1 do
      if list[i].element == element or
         list[i].name == handler.getFullName(element) then
        return list[i]
      end
    end
  end
  handler.testEnd = function(element, parent, status, debug)
    local name = handler.getFullName(element)
    if status == "pending" then
      return nil, true
    end
    n = n + 1
    if status == "success" then
      io.write(("ok %d - %s\n"):format(n, name))
    else
      io.write(("not ok %d - %s\n"):format(n, name))
      local f = find(handler.failures, element) or find(handler.errors, element)
      io.write(message_lines(f), "\n")
    end
    io.flush()
    return nil, true
  end
  handler.suiteEnd = function()
    for _, e in ipairs(handler.errors) do
      if e.element and e.element.descriptor ~= "it" then
        n = n + 1
        io.write(("not ok %d - %s (%s)\n"):format(n,
          e.name or "?", e.element.descriptor or "error"))
        io.write(message_lines(e), "\n")
      end
    end
    io.write(("1..%d\n"):format(n))
    io.flush()
    return nil, true
  end
  busted.subscribe({ "test", "end" }, handler.testEnd, { predicate = handler.cancelOnPending })
  busted.subscribe({ "suite", "end" }, handler.suiteEnd)
  return handler
end
EOF

# 1. C unit tests
if [ $# -eq 0 ] && [ -f runtime/test/run.sh ]; then
  echo "=== runtime/test/run.sh"
  log=$TMP/c_tests.log
  timeout 600 bash runtime/test/run.sh 2>&1 | tee "$log"
  rc=${PIPESTATUS[0]}
  count_tap "$log" "C"
  if [ "$rc" -ne 0 ] && ! grep -qE '^not ok' "$log"; then
    failed=$((failed + 1))
    echo "[C] runtime/test/run.sh exited with status $rc" >>"$FAILURES"
  fi
fi

# 2. busted
targets=()
if [ $# -gt 0 ]; then
  targets=("$@")
else
  for d in spec/01-unit spec/02-integration spec/03-plugins spec/04-compat \
           examples/plugins/*/spec; do
    [ -d "$d" ] || continue
    find "$d" -name '*_spec.lua' | grep -q . || continue
    targets+=("$d")
  done
fi

for t in "${targets[@]}"; do
  echo "=== busted $t"
  log=$TMP/busted_$(echo "$t" | tr '/' '_').log
  : >"$log"
  (
    timeout -k 5 "$BUSTED_TIMEOUT" luajit /usr/bin/busted -o "$HANDLER" "$t" 2>&1 |
      tee "$log"
    exit "${PIPESTATUS[0]}"
  ) &
  bpid=$!
  # A busted that printed its summary has nothing left to report: if it is
  # still running SUMMARY_GRACE seconds later (seen once: spinning in
  # lua_close after the last spec), it is stopped and the run goes on.
  since=
  while kill -0 "$bpid" 2>/dev/null; do
    if [ -z "$since" ] && grep -qE '^1\.\.[0-9]+' "$log"; then
      since=$SECONDS
    fi
    if [ -n "$since" ] && [ $((SECONDS - since)) -ge "${SUMMARY_GRACE:-30}" ]; then
      echo "=== busted $t still running ${SUMMARY_GRACE:-30} s after its summary: stopped"
      pkill -TERM -P "$bpid" -x timeout 2>/dev/null
      break
    fi
    sleep 1
  done
  wait "$bpid"
  rc=$?
  count_tap "$log" "$t"
  if ! grep -qE '^1\.\.[0-9]+' "$log"; then
    # busted died before its summary (crash, timeout)
    failed=$((failed + 1))
    echo "[$t] busted did not finish (exit status $rc); see $log" >>"$FAILURES"
  fi
  cleanup
done

echo
if [ -s "$FAILURES" ]; then
  echo "=== failures"
  cat "$FAILURES"
  echo
fi
echo "$passed passed, $failed failed"
if [ "$failed" -gt 0 ] || [ $((passed + failed)) -eq 0 ]; then
  exit 1
fi
exit 0
