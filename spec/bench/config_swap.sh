#!/usr/bin/env bash
# Config changes: how long a big config takes to load, and what requests in
# flight see while it is swapped in (`make bench` runs it as its last
# section; docs/performance.md, "Config changes").
#
# 1. load time of a config of SERVICES x ROUTES routes and CONSUMERS
#    consumers with a key-auth credential each (spec/bench/config_swap_gen.lua),
#    JSON and YAML: `bin/luagate check` wall time (a whole process: start,
#    validation, plugin plans, router ranking, C router) and luagate.runtime.load
#    alone (median and min of LOAD_RUNS).
# 2. luagate (1 worker) serving the JSON config, proxying to nginx; CLIENTS
#    client processes of 2 keepalive connections each send GET / without
#    pause; STEADY_S seconds without reloads, then RELOADS SIGHUPs, one every
#    RELOAD_EVERY_S seconds. Reports p50/p99/p99.9/max of both periods, the
#    p99 ratio and failed requests.
#
#    Every reload changes the file as an operator's edit would: one route's
#    path differs from one reload to the next (a worker reuses what did not
#    change: docs/architecture.md); SAME_FILE=1 reloads the file unchanged.
#
# Environment: SERVICES (100), ROUTES (100), CONSUMERS (1000), LOAD_RUNS (7),
# RELOADS (20), RELOAD_EVERY_S (1), STEADY_S (10), CLIENTS (2), SKIP_LOAD
# (1: skip part 1), SAME_FILE, FORMAT (json, or yml: part 2 serves and edits the
# YAML file), KEEP_DIR (copy the latencies, the reload
# times and the error log there, for a closer look).
set -uo pipefail
cd "$(dirname "$0")/../.."
ROOT=$PWD
export LUAGATE_ROOT=$ROOT
BENCH=$ROOT/spec/bench
LUAGATE=${LUAGATE_BIN:-$ROOT/bin/luagate}
NGINX=${NGINX:-/usr/sbin/nginx}
SERVICES=${SERVICES:-100}
ROUTES=${ROUTES:-100}
CONSUMERS=${CONSUMERS:-1000}
LOAD_RUNS=${LOAD_RUNS:-7}
RELOADS=${RELOADS:-20}
RELOAD_EVERY_S=${RELOAD_EVERY_S:-1}
STEADY_S=${STEADY_S:-10}
CLIENTS=${CLIENTS:-2}

[ -x "$LUAGATE" ] || { echo "bin/luagate missing: run make build" >&2; exit 1; }
DIR=$(mktemp -d "${TMPDIR:-/tmp}/luagate-swap.XXXXXX")
chmod 755 "$DIR"
# shellcheck source=spec/bench/lib.sh
. "$BENCH/lib.sh"

UP_PORT=$(free_port)
LG_PORT=$(free_port)
for ext in json yml; do
  luajit "$BENCH/config_swap_gen.lua" "$DIR/big.$ext" "$SERVICES" "$ROUTES" \
    "$CONSUMERS" "127.0.0.1:$UP_PORT"
done
NROUTES=$((SERVICES * ROUTES + 1))

[ -n "${SKIP_LOAD:-}" ] || {
# the workers read YAML with the C reader the binary links (runtime/src/
# yaml.c, module luagate.yaml_c): build it for the plain LuaJIT that times
# runtime.load, so that both load the same way
mkdir -p "$DIR/cmod/luagate"
cc -O2 -shared -fPIC -I"$ROOT/runtime/include" $(pkg-config --cflags luajit) \
  -o "$DIR/cmod/luagate/yaml_c.so" "$ROOT/runtime/src/yaml.c" -lyaml ||
  { echo "could not build runtime/src/yaml.c" >&2; exit 1; }
export LUA_CPATH="$DIR/cmod/?.so;;"
echo "== config load: $NROUTES routes, $CONSUMERS consumers with key-auth credentials"
for ext in json yml; do
  times=()
  for ((i = 0; i < LOAD_RUNS; i++)); do
    s=$(date +%s.%N)
    "$LUAGATE" check -c "$DIR/big.$ext" >/dev/null || { echo "check failed" >&2; exit 1; }
    e=$(date +%s.%N)
    times+=("$(awk -v s="$s" -v e="$e" 'BEGIN{printf "%.1f", (e-s)*1000}')")
  done
  check_ms=$(printf '%s\n' "${times[@]}" | median)
  read -r load_med load_min < <(luajit "$BENCH/config_swap.lua" load "$DIR/big.$ext" "$LOAD_RUNS")
  printf '%-5s luagate check: median %s ms of %d runs | runtime.load: median %s ms, min %s ms\n' \
    "$ext" "$check_ms" "$LOAD_RUNS" "$load_med" "$load_min"
done
}

[ -x "$NGINX" ] || { echo "nginx missing: skipping the swap latency part" >&2; exit 0; }
echo
echo "== requests during $RELOADS reloads (SIGHUP every ${RELOAD_EVERY_S}s) vs ${STEADY_S}s steady," \
  "$([ -n "${SAME_FILE:-}" ] && echo "the file unchanged" || echo "one route edited per reload")"
mkdir -p "$DIR/up/logs"
USER_LINE=""
[ "$(id -u)" = 0 ] && USER_LINE="user root;"
cat >"$DIR/up/nginx.conf" <<NGX
$USER_LINE
worker_processes 1;
daemon off;
pid $DIR/up/nginx.pid;
error_log $DIR/up/logs/error.log error;
events { worker_connections 1024; }
http {
  access_log off;
  client_body_temp_path $DIR/up/body;
  proxy_temp_path $DIR/up/proxy;
  fastcgi_temp_path $DIR/up/fastcgi;
  uwsgi_temp_path $DIR/up/uwsgi;
  scgi_temp_path $DIR/up/scgi;
  keepalive_requests 1000000;
  server { listen 127.0.0.1:$UP_PORT; location / { return 200 "ok"; } }
}
NGX
"$NGINX" -p "$DIR/up" -c "$DIR/up/nginx.conf" >"$DIR/up/logs/out" 2>&1 &
PIDS+=("$!")
wait_port "$UP_PORT" 10 || exit 1

FMT=${FORMAT:-json}
cp "$DIR/big.$FMT" "$DIR/base.$FMT"
"$LUAGATE" run -c "$DIR/big.$FMT" --listen "127.0.0.1:$LG_PORT" \
  --admin-listen off --workers 1 --access-log off \
  --error-log "$DIR/luagate-error.log" --log-level notice >"$DIR/luagate.out" 2>&1 &
LG_PID=$!
PIDS+=("$LG_PID")
wait_port "$LG_PORT" 30 || exit 1

CPIDS=()
for ((c = 0; c < CLIENTS; c++)); do
  luajit "$BENCH/config_swap.lua" client "$LG_PORT" 2 "$DIR/stop" "$DIR/lat.$c" &
  CPIDS+=("$!")
  PIDS+=("$!")
done
sleep "$STEADY_S"
T0=$(date +%s.%N)
for ((i = 0; i < RELOADS; i++)); do
  if [ -z "${SAME_FILE:-}" ]; then
    # route 3 of service 1 (not the clients' "/") gets a new path
    sed "s#\"/s1/r3\"#\"/s1/r3-edit$i\"#" "$DIR/base.$FMT" >"$DIR/edit.$FMT" &&
      mv "$DIR/edit.$FMT" "$DIR/big.$FMT"
  fi
  date +%s.%N >>"$DIR/hups"
  kill -HUP "$LG_PID"
  sleep "$RELOAD_EVERY_S"
done
T1=$(date +%s.%N)
touch "$DIR/stop"
for p in "${CPIDS[@]}"; do wait "$p"; done
loaded=$(grep -c "configuration .* loaded" "$DIR/luagate-error.log")
echo "worker reloads logged: $loaded of $RELOADS"
# "loaded (generation N) in M ms, K slices": wall time from the order to the swap
grep -o "in [0-9]* ms, [0-9]* slices" "$DIR/luagate-error.log" | awk '{print $2, $4}' | sort -n |
  awk '{ms[NR]=$1; sl[NR]=$2} END { if (NR) printf "reload wall time: median %d ms, max %d ms (slices: median %d)\n",
        ms[int((NR+1)/2)], ms[NR], sl[int((NR+1)/2)] }' 
cat "$DIR"/lat.* >"$DIR/lat"
luajit "$BENCH/config_swap.lua" report "$DIR/lat" "$T0" "$T1"
if [ -n "${KEEP_DIR:-}" ]; then
  mkdir -p "$KEEP_DIR"
  cp "$DIR/lat" "$DIR/hups" "$DIR/luagate-error.log" "$KEEP_DIR/"
  echo "$T0 $T1" >"$KEEP_DIR/window"
fi
