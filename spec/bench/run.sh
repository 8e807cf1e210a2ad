#!/usr/bin/env bash
# `make bench`: luagate against nginx, both proxying to the same upstream.
#
#   upstream  nginx, 1 worker, `return 200 "ok"`
#   luagate   1 worker, route / -> upstream
#   nginx     1 worker, proxy_pass to the upstream with `keepalive 32`
#
# 1. wrk, interleaved: ROUNDS x (luagate DURATION, nginx DURATION), -t1 -c50,
#    req/s, p99 and the luagate/nginx ratio per round, then medians.
# 2. callgrind: instructions per request = (Ir after 2,200 requests - Ir
#    after 200) / 2000, summed over every process of the proxy.
# 3. memory: worker RSS per idle keepalive connection, 10,000 connections.
#
# Environment: ROUNDS (3), DURATION (10s), CONNS (50), IDLE_CONNS (10000),
# SKIP_WRK=1, SKIP_CALLGRIND=1, SKIP_RSS=1; per section: SKIP_PLUGIN (2b),
# SKIP_LB (2c), SKIP_METRICS (2e), SKIP_AGG (2f), SKIP_PLUGINS_BENCH (2d),
# SKIP_SWAP, SKIP_TLS.
set -uo pipefail
cd "$(dirname "$0")/../.."
ROOT=$PWD
BENCH=$ROOT/spec/bench
LUAGATE=${LUAGATE_BIN:-$ROOT/bin/luagate}
ROUNDS=${ROUNDS:-3}
DURATION=${DURATION:-10s}
CONNS=${CONNS:-50}
IDLE_CONNS=${IDLE_CONNS:-10000}
NGINX=${NGINX:-/usr/sbin/nginx}

ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
if [ "$(ulimit -n)" != unlimited ] && [ "$(ulimit -n)" -lt $((IDLE_CONNS + 1000)) ]; then
  IDLE_CONNS=$(( $(ulimit -n) - 1000 ))
  echo "note: open files limited to $(ulimit -n); IDLE_CONNS=$IDLE_CONNS"
fi

[ -x "$LUAGATE" ] || { echo "bin/luagate missing: run make build" >&2; exit 1; }
for tool in wrk valgrind luajit "$NGINX"; do
  command -v "$tool" >/dev/null || { echo "$tool missing" >&2; exit 1; }
done

DIR=$(mktemp -d "${TMPDIR:-/tmp}/luagate-bench.XXXXXX")
chmod 755 "$DIR"
# shellcheck source=spec/bench/lib.sh
. "$BENCH/lib.sh"

stop_pid() { # pid signal timeout_s
  local pid=$1 i
  kill -"$2" "$pid" 2>/dev/null || return 0
  for ((i = 0; i < $3 * 10; i++)); do
    kill -0 "$pid" 2>/dev/null || { wait "$pid" 2>/dev/null; return 0; }
    sleep 0.1
  done
  for kid in $(pgrep -P "$pid"); do kill -9 "$kid" 2>/dev/null; done
  kill -9 "$pid" 2>/dev/null
  wait "$pid" 2>/dev/null
}


UP_PORT=$(free_port)
LG_PORT=$(free_port)
NG_PORT=$(free_port)
USER_LINE=""
[ "$(id -u)" = 0 ] && USER_LINE="user root;"

# nginx config: name port body-of-location
nginx_conf() {
  local name=$1 port=$2 location=$3 upstream=${4:-}
  mkdir -p "$DIR/$name/logs"
  cat >"$DIR/$name/nginx.conf" <<EOF
$USER_LINE
worker_processes 1;
daemon off;
master_process on;
pid $DIR/$name/nginx.pid;
error_log $DIR/$name/logs/error.log error;
worker_rlimit_nofile 65536;
events { worker_connections 30000; multi_accept on; }
http {
  access_log off;
  client_body_temp_path $DIR/$name/body;
  proxy_temp_path $DIR/$name/proxy;
  fastcgi_temp_path $DIR/$name/fastcgi;
  uwsgi_temp_path $DIR/$name/uwsgi;
  scgi_temp_path $DIR/$name/scgi;
  keepalive_requests 1000000;
  $upstream
  server {
    listen 127.0.0.1:$port;
    location / { $location }
  }
}
EOF
}

nginx_conf upstream "$UP_PORT" 'return 200 "ok";'
# the upstream answers on every loopback address: the balancing benchmark
# spreads over 10 targets 127.0.0.2..11 of the same server
sed -i "s/listen 127.0.0.1:$UP_PORT;/listen $UP_PORT;/" "$DIR/upstream/nginx.conf"
REDIS_PORT=$(free_port)
NL_PORT=$(free_port)
MOCK_PORT=$(free_port) # the specs' mock upstream (/delay/S), for the aggregator
# nginx + lua doing what the /auth route does: a key check against a table
# and a shared-dict counter in access_by_lua, then proxy_pass
nginx_conf proxylua "$NL_PORT" \
  'access_by_lua_block {
      local key = ngx.var.http_apikey
      if not key or not keys[key] then return ngx.exit(401) end
      local n = ngx.shared.counters:incr("rl:" .. key .. ":" .. math.floor(ngx.time() / 60), 1, 0, 60)
      if n and n > 1000000000 then return ngx.exit(429) end
      ngx.req.set_header("X-Consumer-Username", keys[key])
      ngx.req.set_header("X-Bench", "1")
    }
    proxy_pass http://backend; proxy_http_version 1.1; proxy_set_header Connection "";' \
  "upstream backend { server 127.0.0.1:$UP_PORT; keepalive 32; }
  lua_shared_dict counters 12m;
  init_by_lua_block { keys = { benchkey = \"bench\" } }"
sed -i '1i load_module /usr/lib/nginx/modules/ndk_http_module.so;\nload_module /usr/lib/nginx/modules/ngx_http_lua_module.so;' \
  "$DIR/proxylua/nginx.conf"
nginx_conf proxy "$NG_PORT" \
  'proxy_pass http://backend; proxy_http_version 1.1; proxy_set_header Connection "";' \
  "upstream backend { server 127.0.0.1:$UP_PORT; keepalive 32; }"
cat >"$DIR/luagate.yml" <<EOF
_format_version: "3.0"
services:
- name: upstream
  url: http://127.0.0.1:$UP_PORT
  routes:
  - name: all
    paths:
    - /
  - name: plugin
    paths:
    - /plugin
    plugins:
    - name: bench-header
  - name: auth
    paths:
    - /auth
    plugins:
    - name: key-auth
    - name: rate-limiting
      config: {minute: 1000000000, policy: local}
    - name: request-transformer
      config: {add: {headers: ["X-Bench:1"]}}
  - name: auth-redis
    paths:
    - /auth-redis
    plugins:
    - name: key-auth
    - name: rate-limiting
      config: {minute: 1000000000, policy: redis, redis: {host: 127.0.0.1, port: $REDIS_PORT}}
    - name: request-transformer
      config: {add: {headers: ["X-Bench:1"]}}
  - name: cb
    paths:
    - /cb
    plugins:
    - name: circuit-breaker
  - name: cache
    paths:
    - /cache
    plugins:
    - name: proxy-cache
      config: {strategy: memory, content_type: ["text/plain", "application/octet-stream"]}
- name: mock
  url: http://127.0.0.1:$MOCK_PORT
  routes:
  - name: slowest
    paths:
    - /slowest
    strip_path: true
  - name: agg
    paths:
    - /agg
    plugins:
    - name: aggregator
      config:
        calls:
        - {name: a, url: "http://127.0.0.1:$MOCK_PORT/delay/0.05"}
        - {name: b, url: "http://127.0.0.1:$MOCK_PORT/delay/0.1"}
        - {name: c, url: "http://127.0.0.1:$MOCK_PORT/delay/0.2"}
- name: balanced
  host: pool
  routes:
  - name: lb
    paths:
    - /lb
- name: single
  host: one
  routes:
  - name: l1
    paths:
    - /l1
consumers:
- username: bench
  keyauth_credentials:
  - key: benchkey
upstreams:
- name: pool
  targets:
$(for i in 2 3 4 5 6 7 8 9 10 11; do echo "  - target: 127.0.0.$i:$UP_PORT"; done)
- name: one
  targets:
  - target: 127.0.0.2:$UP_PORT
EOF

# Background starters; each sets STARTED_PID. $1 = command prefix (valgrind).
start_upstream() {
  "$NGINX" -p "$DIR/upstream" -c "$DIR/upstream/nginx.conf" \
    >"$DIR/upstream/logs/out" 2>&1 &
  STARTED_PID=$!
  PIDS+=("$STARTED_PID")
  wait_port "$UP_PORT" 10
}
# LG_LISTEN (a port, default $LG_PORT) and LG_EXTRA (more flags) vary it.
start_luagate() {
  local port=${LG_LISTEN:-$LG_PORT}
  # shellcheck disable=SC2086
  $1 "$LUAGATE" run -c "$DIR/luagate.yml" --listen "127.0.0.1:$port" \
    --admin-listen off --workers 1 --access-log off \
    --plugins-dir "$BENCH/plugins" ${LG_EXTRA:-} \
    --error-log "$DIR/luagate-error.log" --log-level error \
    >>"$DIR/luagate.out" 2>&1 &
  STARTED_PID=$!
  PIDS+=("$STARTED_PID")
  wait_port "$port" "${2:-15}"
}
start_nginx() {
  $1 "$NGINX" -p "$DIR/proxy" -c "$DIR/proxy/nginx.conf" \
    >>"$DIR/proxy/logs/out" 2>&1 &
  STARTED_PID=$!
  PIDS+=("$STARTED_PID")
  wait_port "$NG_PORT" "${2:-15}"
}



# wrk output -> "req/s p99_ms"
parse_wrk() {
  awk '/Requests\/sec:/ {rps=$2}
       /^ +99%/ {v=$2; u=v; sub(/[0-9.]+/, "", u); sub(/[a-z]+$/, "", v);
                 if (u=="us") v=v/1000; else if (u=="s") v=v*1000; p99=v}
       / Non-2xx or 3xx responses:/ {bad=$NF}
       END {printf "%s %s %s\n", rps, p99, (bad==""?0:bad)}'
}

start_upstream || exit 1
UP_PID=$STARTED_PID
echo "upstream nginx on :$UP_PORT, luagate on :$LG_PORT, nginx proxy on :$NG_PORT"
echo "work dir $DIR"

SUMMARY=()
add_summary() { SUMMARY+=("$(printf '%-38s %14s %14s %10s' "$@")"); }

# ---------------------------------------------------------------- 1. wrk
if [ -z "${SKIP_WRK:-}" ]; then
  start_luagate "" || { cat "$DIR/luagate.out" "$DIR/luagate-error.log"; exit 1; }
  LG_PID=$STARTED_PID
  start_nginx "" || exit 1
  NG_PID=$STARTED_PID
  # warm up both
  wrk -t1 -c"$CONNS" -d2s "http://127.0.0.1:$LG_PORT/" >/dev/null
  wrk -t1 -c"$CONNS" -d2s "http://127.0.0.1:$NG_PORT/" >/dev/null
  echo
  echo "== wrk -t1 -c$CONNS -d$DURATION --latency, interleaved"
  printf '%-6s %12s %10s %12s %10s %8s\n' round "luagate r/s" "p99 ms" \
    "nginx r/s" "p99 ms" ratio
  : >"$DIR/wrk.txt"
  for ((r = 1; r <= ROUNDS; r++)); do
    read -r lr lp lbad < <(wrk -t1 -c"$CONNS" -d"$DURATION" --latency \
      "http://127.0.0.1:$LG_PORT/" | parse_wrk)
    read -r nr np nbad < <(wrk -t1 -c"$CONNS" -d"$DURATION" --latency \
      "http://127.0.0.1:$NG_PORT/" | parse_wrk)
    ratio=$(ratio "$lr" "$nr")
    printf '%-6s %12s %10s %12s %10s %8s\n' "$r" "$lr" "$lp" "$nr" "$np" "$ratio"
    [ "${lbad:-0}" != 0 ] && echo "  luagate: $lbad non-2xx responses"
    [ "${nbad:-0}" != 0 ] && echo "  nginx: $nbad non-2xx responses"
    echo "$lr $lp $nr $np $ratio" >>"$DIR/wrk.txt"
  done
  m_lr=$(awk '{print $1}' "$DIR/wrk.txt" | median)
  m_lp=$(awk '{print $2}' "$DIR/wrk.txt" | median)
  m_nr=$(awk '{print $3}' "$DIR/wrk.txt" | median)
  m_np=$(awk '{print $4}' "$DIR/wrk.txt" | median)
  m_ratio=$(awk '{print $5}' "$DIR/wrk.txt" | median)
  printf '%-6s %12s %10s %12s %10s %8s\n' median "$m_lr" "$m_lp" "$m_nr" \
    "$m_np" "$m_ratio"
  add_summary "requests/s (median of $ROUNDS)" "$m_lr" "$m_nr" "$m_ratio"
  add_summary "p99 latency ms (median)" "$m_lp" "$m_np" \
    "$(ratio "$m_lp" "$m_np")"
  stop_pid "$LG_PID" TERM 10
  stop_pid "$NG_PID" QUIT 10
fi

# ---------------------------------------------------------- 2. callgrind
# Ir summed over all callgrind outputs in a directory.
sum_ir() {
  cat "$1"/cg.* 2>/dev/null | awk '/^summary:/ {s += $2} END {print s+0}'
}

# callgrind_run name starter signal requests -> prints total Ir
callgrind_run() {
  local name=$1 starter=$2 sig=$3 n=$4 port=$5
  local out="$DIR/cg-$name-$n${CG_RUN:+-$CG_RUN}"
  rm -rf "$out"
  mkdir -p "$out"
  chmod 777 "$out"
  "$starter" "valgrind --tool=callgrind --trace-children=yes --callgrind-out-file=$out/cg.%p" 120 ||
    return 1
  local pid=$STARTED_PID
  if ! luajit "$BENCH/client.lua" seq "$port" "$n"; then
    echo "callgrind $name: requests failed" >&2
  fi
  stop_pid "$pid" "$sig" 60
  sum_ir "$out"
}

# callgrind_per_request name starter signal port -> "median min max" of
# CG_REPEAT (default 3) pairs of runs, each (Ir@2200 - Ir@200) / 2000. One
# pair is not enough where LuaJIT runs at start-up (luagate's master and
# worker load the config, nginx+lua its init code): its instruction count
# moves by several million from one start to the next (hash seeds,
# addresses, GC and JIT timing), which is thousands per request over 2,000.
callgrind_per_request() {
  local name=$1 starter=$2 sig=$3 port=$4 i ir1 ir2
  local vals=()
  for ((i = 1; i <= ${CG_REPEAT:-3}; i++)); do
    ir1=$(CG_RUN=$i callgrind_run "$name" "$starter" "$sig" 200 "$port")
    ir2=$(CG_RUN=$i callgrind_run "$name" "$starter" "$sig" 2200 "$port")
    vals+=("$(awk -v a="$ir1" -v b="$ir2" 'BEGIN{ if (a>0 && b>a) printf "%d", (b-a)/2000; else print "n/a"}')")
  done
  printf '%s\n' "${vals[@]}" | grep -v n/a | sort -n |
    awk '{a[NR]=$1} END {if (NR==0) {print "n/a n/a n/a"; exit}
      printf "%d %d %d\n", a[int((NR+1)/2)], a[1], a[NR]}'
}

# callgrind_loop path n -> instructions per request inside luagate's event
# loop only (--toggle-collect=ev_run: no start-up, no config load, no
# master), n sequential keepalive requests to path. For comparing luagate
# routes with each other; the nginx comparison uses the difference method.
# With CG_WARM=w, w requests go first and the counters are zeroed after
# them (callgrind_control -z): the JIT's recording and compiling of the
# first requests is left out (steady state).
callgrind_loop() {
  local path=$1 n=$2
  local out="$DIR/cgl-${path//\//_}${LG_EXTRA:+-${LG_EXTRA// /_}}"
  rm -rf "$out" # one run's files only: the same path is measured in several sections
  mkdir -p "$out"
  chmod 777 "$out"
  start_luagate "valgrind --tool=callgrind --trace-children=yes --collect-atstart=no --toggle-collect=ev_run --callgrind-out-file=$out/cg.%p" 120 ||
    return 1
  local pid=$STARTED_PID w
  if [ "${CG_WARM:-0}" -gt 0 ]; then
    BENCH_PATH=$path luajit "$BENCH/client.lua" seq "$LG_PORT" "$CG_WARM" >/dev/null ||
      echo "callgrind $path: warm-up requests failed" >&2
    for w in $(pgrep -P "$pid"); do callgrind_control -z "$w" >/dev/null 2>&1; done
  fi
  BENCH_PATH=$path luajit "$BENCH/client.lua" seq "$LG_PORT" "$n" >/dev/null ||
    echo "callgrind $path: requests failed" >&2
  stop_pid "$pid" TERM 60
  awk -v n="$n" '/^summary:/ {s += $2} END {printf "%d", s / n}' "$out"/cg.*
}

if [ -z "${SKIP_CALLGRIND:-}" ]; then
  echo
  echo "== callgrind: instructions per request ((Ir@2200 - Ir@200) / 2000, median of ${CG_REPEAT:-3} pairs)"
  for target in luagate nginx; do
    if [ "$target" = luagate ]; then
      starter=start_luagate sig=TERM port=$LG_PORT
    else
      starter=start_nginx sig=QUIT port=$NG_PORT
    fi
    read -r per lo hi < <(callgrind_per_request "$target" "$starter" "$sig" "$port")
    printf '%-8s per request: median %s (min %s, max %s)\n' "$target" "$per" "$lo" "$hi"
    eval "IR_$target=\$per"
  done
  add_summary "instructions per request (callgrind)" "$IR_luagate" "$IR_nginx" \
    "$(ratio "$IR_luagate" "$IR_nginx")"
fi

# interleaved_rounds name "label A" urlA "label B" urlB -> the rounds'
# table on stdout; the median A/B r/s ratio in $DIR/<name>.median
interleaved_rounds() {
  local name=$1 la=$2 ua=$3 lb=$4 ub=$5 r ar br abad ratio
  wrk -t1 -c"$CONNS" -d2s "$ua" >/dev/null
  wrk -t1 -c"$CONNS" -d2s "$ub" >/dev/null
  printf '%-6s %14s %14s %8s\n' round "$la r/s" "$lb r/s" ratio
  : >"$DIR/$name.txt"
  for ((r = 1; r <= ROUNDS; r++)); do
    read -r ar _ abad < <(wrk -t1 -c"$CONNS" -d"$DURATION" --latency "$ua" | parse_wrk)
    read -r br _ _ < <(wrk -t1 -c"$CONNS" -d"$DURATION" --latency "$ub" | parse_wrk)
    ratio=$(ratio "$ar" "$br" 3)
    printf '%-6s %14s %14s %8s\n' "$r" "$ar" "$br" "$ratio"
    [ "${abad:-0}" != 0 ] && echo "  $la: $abad non-2xx responses"
    echo "$ratio" >>"$DIR/$name.txt"
  done
  median <"$DIR/$name.txt" >"$DIR/$name.median"
  echo "median $la/$lb ratio: $(cat "$DIR/$name.median")"
}

# ------------------------------------------------- 2b. one plugin vs none
# The same luagate, route /plugin (bench-header: reads a header, sets an
# upstream header) against route / (no plugin), wrk rounds interleaved.
if [ -z "${SKIP_PLUGIN:-}" ]; then
  start_luagate "" || exit 1
  LG_PID=$STARTED_PID
  echo
  echo "== one plugin (read a header, set an upstream header) vs no plugin, luagate"
  interleaved_rounds plugin plugin "http://127.0.0.1:$LG_PORT/plugin" \
    "no plugin" "http://127.0.0.1:$LG_PORT/"
  m_pratio=$(cat "$DIR/plugin.median")
  stop_pid "$LG_PID" TERM 10
  add_summary "one plugin / no plugin (r/s ratio)" "$m_pratio" "-" "-"
  if [ -z "${SKIP_CALLGRIND:-}" ]; then
    base=$(callgrind_loop / 2000)
    per=$(callgrind_loop /plugin 2000)
    echo "event-loop instructions per request: one plugin $per, no plugin $base"
    add_summary "loop instructions/request, one plugin" "$per" "-" \
      "$(ratio "$per" "$base")"
    add_summary "loop instructions/request, no plugin" "$base" "-" "-"
  fi
fi

# --------------------------------------------- 2c. 10 targets vs a single one
# Route /lb: upstream `pool`, 10 targets (127.0.0.2..11); route /l1 (same
# path length, same router cost): upstream `one`, 1 target. Both go through
# the balancer; the difference is the number of targets alone.
if [ -z "${SKIP_LB:-}" ]; then
  start_luagate "" || exit 1
  LG_PID=$STARTED_PID
  echo
  echo "== balancing over 10 targets (round-robin) vs one target, luagate"
  interleaved_rounds lb "10 targets" "http://127.0.0.1:$LG_PORT/lb" \
    "1 target" "http://127.0.0.1:$LG_PORT/l1"
  m_lbratio=$(cat "$DIR/lb.median")
  stop_pid "$LG_PID" TERM 10
  add_summary "10 targets / 1 target (r/s ratio)" "$m_lbratio" "-" "-"
  if [ -z "${SKIP_CALLGRIND:-}" ]; then
    per=$(callgrind_loop /lb 2000)
    one=$(callgrind_loop /l1 2000)
    echo "event-loop instructions per request: 10 targets $per, 1 target $one"
    add_summary "loop instructions/request, 10 targets" "$per" "-" "$(ratio "$per" "$one" 3)"
    add_summary "loop instructions/request, 1 target" "$one" "-" "-"
  fi
fi

# ------------------------------------------- 2e. metrics on vs --metrics off
# Two luagate processes on two ports, the plain route, wrk rounds
# interleaved; then event-loop instructions per request of each.
if [ -z "${SKIP_METRICS:-}" ]; then
  MOFF_PORT=$(free_port)
  start_luagate "" || exit 1
  MON_PID=$STARTED_PID
  LG_LISTEN=$MOFF_PORT LG_EXTRA="--metrics off" start_luagate "" || exit 1
  MOFF_PID=$STARTED_PID
  echo
  echo "== metrics on vs --metrics off, luagate, plain route"
  interleaved_rounds metrics "metrics on" "http://127.0.0.1:$LG_PORT/" \
    "metrics off" "http://127.0.0.1:$MOFF_PORT/"
  m_mratio=$(cat "$DIR/metrics.median")
  stop_pid "$MON_PID" TERM 10
  stop_pid "$MOFF_PID" TERM 10
  add_summary "metrics on / off (r/s ratio)" "$m_mratio" "-" "-"
  if [ -z "${SKIP_CALLGRIND:-}" ]; then
    mon=$(callgrind_loop / 2000)
    moff=$(LG_EXTRA="--metrics off" callgrind_loop / 2000)
    echo "event-loop instructions per request: metrics on $mon, off $moff"
    add_summary "loop instructions/request, metrics on/off" "$mon" "$moff" \
      "$(ratio "$mon" "$moff" 3)"
  fi
fi

# ------------------------------------------------- 2f. aggregator (BFF)
# /agg makes 3 calls in parallel to the mock upstream (/delay/0.05, 0.1,
# 0.2); /slowest proxies /delay/0.2 alone. Median wall time of AGG_N
# sequential requests each (curl), and the ratio (goal: at most 1.10).
if [ -z "${SKIP_AGG:-}" ]; then
  python3 "$ROOT/spec/fixtures/mock_upstream.py" --port "$MOCK_PORT" \
    >"$DIR/mock.out" 2>&1 &
  MOCK_PID=$!
  PIDS+=("$MOCK_PID")
  wait_port "$MOCK_PORT" 10 || exit 1
  start_luagate "" || exit 1
  LG_PID=$STARTED_PID
  echo
  echo "== aggregator: 3 parallel calls (50, 100, 200 ms) vs the slowest call alone"
  agg_median() { # path -> median seconds of AGG_N requests
    local i t
    for ((i = 0; i < ${AGG_N:-21}; i++)); do
      t=$(curl -s -o /dev/null -w '%{http_code} %{time_total}' "http://127.0.0.1:$LG_PORT$1")
      [ "${t%% *}" = 200 ] || { echo "  $1 answered ${t%% *}" >&2; continue; }
      echo "${t#* }"
    done | median
  }
  agg_median /slowest/delay/0.2 >/dev/null # warm the pools
  ts=$(agg_median /slowest/delay/0.2)
  ta=$(agg_median /agg)
  ar=$(ratio "$ta" "$ts" 3)
  echo "median: aggregated $ta s, slowest call alone $ts s, ratio $ar"
  stop_pid "$LG_PID" TERM 10
  stop_pid "$MOCK_PID" TERM 5
  add_summary "aggregator (3 calls) / slowest call" "$ar" "-" "-"
fi

# ------------------------- 2d. key-auth + rate-limiting + request-transformer
# luagate's /auth route against nginx proxy_pass alone and against nginx +
# lua doing the same key check and shared-dict counter; then the redis
# policy against the local one; circuit breaker (closed) and proxy-cache
# hits against the plain route.
start_nginx_lua() {
  $1 "$NGINX" -p "$DIR/proxylua" -c "$DIR/proxylua/nginx.conf" \
    >>"$DIR/proxylua/logs/out" 2>&1 &
  STARTED_PID=$!
  PIDS+=("$STARTED_PID")
  wait_port "$NL_PORT" "${2:-15}"
}
wrk_rps() { # url [header] -> req/s
  if [ -n "${2:-}" ]; then
    wrk -t1 -c"$CONNS" -d"$DURATION" -H "$2" "$1" | parse_wrk | awk '{print $1}'
  else
    wrk -t1 -c"$CONNS" -d"$DURATION" "$1" | parse_wrk | awk '{print $1}'
  fi
}

HZ=$(getconf CLK_TCK)
worker_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
wrk_rps_cpu() { # url worker_pid -> "req/s cpu_µs_per_request"
  local t0 t1 out n
  t0=$(worker_ticks "$2")
  out=$(wrk -t1 -c"$CONNS" -d"$DURATION" "$1")
  t1=$(worker_ticks "$2")
  n=$(echo "$out" | awk '/requests in/ {print $1}')
  echo "$(echo "$out" | parse_wrk | awk '{print $1}')" \
    "$(awk -v a="$t0" -v b="$t1" -v n="$n" -v hz="$HZ" \
       'BEGIN { if (n > 0) printf "%.2f", (b - a) * 1e6 / hz / n; else print "n/a" }')"
}

if [ -z "${SKIP_PLUGINS_BENCH:-}" ]; then
  redis-server --port "$REDIS_PORT" --bind 127.0.0.1 --save '' --appendonly no \
    --daemonize no >"$DIR/redis.out" 2>&1 &
  PIDS+=("$!")
  REDIS_PID=$!
  wait_port "$REDIS_PORT" 10
  start_luagate "" || exit 1
  LG_PID=$STARTED_PID
  start_nginx "" || exit 1
  NG_PID=$STARTED_PID
  start_nginx_lua "" || { cat "$DIR/proxylua/logs/error.log"; exit 1; }
  NL_PID=$STARTED_PID
  H="apikey: benchkey"
  for u in "http://127.0.0.1:$LG_PORT/auth" "http://127.0.0.1:$NL_PORT/"; do
    wrk -t1 -c"$CONNS" -d2s -H "$H" "$u" >/dev/null
  done
  echo
  echo "== key-auth + rate-limiting (local) + request-transformer"
  printf '%-6s %12s %12s %12s %12s %10s %10s\n' round "luagate r/s" "nginx r/s" \
    "nginx+lua" "lg redis" "vs nginx" "vs ng+lua"
  : >"$DIR/auth.txt"
  for ((r = 1; r <= ROUNDS; r++)); do
    la=$(wrk_rps "http://127.0.0.1:$LG_PORT/auth" "$H")
    np=$(wrk_rps "http://127.0.0.1:$NG_PORT/")
    nl=$(wrk_rps "http://127.0.0.1:$NL_PORT/" "$H")
    lr=$(wrk_rps "http://127.0.0.1:$LG_PORT/auth-redis" "$H")
    printf '%-6s %12s %12s %12s %12s %10s %10s\n' "$r" "$la" "$np" "$nl" "$lr" \
      "$(ratio "$la" "$np")" "$(ratio "$la" "$nl")"
    echo "$(ratio "$la" "$np") $(ratio "$la" "$nl") $(ratio "$lr" "$la")" >>"$DIR/auth.txt"
  done
  add_summary "auth+rl+rt / nginx proxy_pass (r/s)" "$(awk '{print $1}' "$DIR/auth.txt" | median)" "-" "-"
  add_summary "auth+rl+rt / nginx+lua (r/s)" "$(awk '{print $2}' "$DIR/auth.txt" | median)" "-" "-"
  add_summary "rate-limiting redis / local (r/s)" "$(awk '{print $3}' "$DIR/auth.txt" | median)" "-" "-"

  echo
  echo "== circuit breaker (closed) and proxy-cache hits, against the plain route"
  echo "   (cpu: the worker's user + system time per request, µs, from /proc)"
  echo "   (cb cpu ratio: plain / cb CPU per request, the breaker's cost as throughput)"
  printf '%-6s %11s %11s %11s %9s %11s %9s %9s %9s %9s %9s\n' round "plain r/s" "cb r/s" \
    "cache r/s" "cb/plain" "cache/plain" "plain cpu" "cb cpu" "cache cpu" "cb ratio" "cpu ratio"
  : >"$DIR/cbcache.txt"
  wrk -t1 -c"$CONNS" -d2s "http://127.0.0.1:$LG_PORT/cache" >/dev/null
  LG_WORKER=$(pgrep -P "$LG_PID" | head -1)
  for ((r = 1; r <= ROUNDS; r++)); do
    read -r pl plc < <(wrk_rps_cpu "http://127.0.0.1:$LG_PORT/" "$LG_WORKER")
    read -r cb cbc < <(wrk_rps_cpu "http://127.0.0.1:$LG_PORT/cb" "$LG_WORKER")
    read -r ca cac < <(wrk_rps_cpu "http://127.0.0.1:$LG_PORT/cache" "$LG_WORKER")
    printf '%-6s %11s %11s %11s %9s %11s %9s %9s %9s %9s %9s\n' "$r" "$pl" "$cb" "$ca" \
      "$(ratio "$cb" "$pl")" "$(ratio "$ca" "$pl")" "$plc" "$cbc" "$cac" \
      "$(ratio "$plc" "$cbc")" "$(ratio "$plc" "$cac")"
    echo "$(ratio "$cb" "$pl") $(ratio "$ca" "$pl") $(ratio "$plc" "$cac") $(ratio "$plc" "$cbc")" \
      >>"$DIR/cbcache.txt"
  done
  add_summary "circuit breaker closed / plain (r/s)" "$(awk '{print $1}' "$DIR/cbcache.txt" | median)" "-" "-"
  add_summary "plain / circuit breaker closed, worker CPU per request" \
    "$(awk '{print $4}' "$DIR/cbcache.txt" | median)" "-" "-"
  add_summary "proxy-cache hits / plain proxy (r/s)" "$(awk '{print $2}' "$DIR/cbcache.txt" | median)" "-" "-"
  add_summary "plain proxy / proxy-cache hit, worker CPU per request" \
    "$(awk '{print $3}' "$DIR/cbcache.txt" | median)" "-" "-"
  stop_pid "$LG_PID" TERM 10
  stop_pid "$NG_PID" QUIT 10
  stop_pid "$NL_PID" QUIT 10

  if [ -z "${SKIP_CALLGRIND:-}" ]; then
    echo
    echo "== callgrind: /auth route against nginx+lua ((Ir@2200 - Ir@200) / 2000)"
    read -r pa alo ahi < <(BENCH_HEADER="$H" BENCH_PATH=/auth \
      callgrind_per_request luagate-auth start_luagate TERM "$LG_PORT")
    read -r pn nlo nhi < <(BENCH_HEADER="$H" \
      callgrind_per_request nginx-lua start_nginx_lua QUIT "$NL_PORT")
    echo "luagate /auth $pa (min $alo, max $ahi), nginx+lua $pn (min $nlo, max $nhi) instructions per request"
    add_summary "instructions/request, auth+rl+rt" "$pa" "$pn" "$(ratio "$pa" "$pn")"
    # the worker's event loop only (as 2b): the same route, the same route
    # refused by key-auth (no key: 401 through kong.response.error), and a
    # proxy-cache hit (kong.response.exit_packed from the cache), against /
    ia=$(BENCH_HEADER="$H" callgrind_loop /auth 2000)
    ir=$(BENCH_STATUS=401 callgrind_loop /auth 2000)
    ic=$(callgrind_loop /cache 2000)
    ip=$(callgrind_loop / 2000)
    echo "event-loop instructions per request: /auth $ia, /auth refused $ir, proxy-cache hit $ic, plain proxy $ip"
    # the same after 5,000 requests (the JIT's compiling left out)
    iaw=$(CG_WARM=5000 BENCH_HEADER="$H" callgrind_loop /auth 3000)
    irw=$(CG_WARM=5000 BENCH_HEADER="$H" callgrind_loop /auth-redis 3000)
    icw=$(CG_WARM=5000 callgrind_loop /cache 3000)
    ibw=$(CG_WARM=5000 callgrind_loop /cb 3000)
    ipw=$(CG_WARM=5000 callgrind_loop / 3000)
    echo "after 5,000 requests: /auth $iaw, /auth-redis $irw, proxy-cache hit $icw," \
      "circuit breaker closed $ibw, plain proxy $ipw"
    add_summary "loop instructions/request, /auth warm" "$iaw" "-" "$(ratio "$iaw" "$ipw")"
    add_summary "loop instructions/request, cache hit warm" "$icw" "-" "$(ratio "$icw" "$ipw")"
    add_summary "loop instructions/request, /cb warm" "$ibw" "-" "$(ratio "$ibw" "$ipw")"
    add_summary "loop instructions/request, /auth" "$ia" "-" "$(ratio "$ia" "$ip")"
    add_summary "loop instructions/request, /auth 401" "$ir" "-" "$(ratio "$ir" "$ip")"
    add_summary "loop instructions/request, cache hit" "$ic" "-" "$(ratio "$ic" "$ip")"
  fi
  kill "$REDIS_PID" 2>/dev/null
fi

# ---------------------------------------------------------------- 3. RSS
worker_rss_kb() { # master pid -> VmRSS of its first child, kB
  local w
  w=$(pgrep -P "$1" | head -1)
  awk '/^VmRSS:/ {print $2}' "/proc/$w/status" 2>/dev/null
}

rss_run() { # name starter signal port
  local name=$1 starter=$2 sig=$3 port=$4
  "$starter" "" || return 1
  local pid=$STARTED_PID
  sleep 0.5
  luajit "$BENCH/client.lua" seq "$port" 100 >/dev/null
  local before after ready="$DIR/ready-$name" stop="$DIR/stop-$name"
  before=$(worker_rss_kb "$pid")
  luajit "$BENCH/client.lua" hold "$port" "$IDLE_CONNS" "$ready" "$stop" &
  local cpid=$!
  PIDS+=("$cpid")
  while [ ! -f "$ready" ] && kill -0 "$cpid" 2>/dev/null; do sleep 0.2; done
  sleep 1
  after=$(worker_rss_kb "$pid")
  read -r held failed <"$ready"
  touch "$stop"
  wait "$cpid" 2>/dev/null
  stop_pid "$pid" "$sig" 15
  local per
  per=$(awk -v a="$before" -v b="$after" -v n="$held" \
    'BEGIN{ if (n>0) printf "%d", (b-a)*1024/n; else print "n/a"}')
  printf '%-8s connections=%s (failed %s) worker RSS %s kB -> %s kB: %s bytes/conn\n' \
    "$name" "$held" "$failed" "$before" "$after" "$per" >&2
  echo "$per"
}

if [ -z "${SKIP_RSS:-}" ]; then
  echo
  echo "== memory: worker RSS per idle keepalive connection ($IDLE_CONNS connections)"
  RSS_luagate=$(rss_run luagate start_luagate TERM "$LG_PORT")
  RSS_nginx=$(rss_run nginx start_nginx QUIT "$NG_PORT")
  add_summary "RSS bytes per idle connection" "$RSS_luagate" "$RSS_nginx" \
    "$(ratio "$RSS_luagate" "$RSS_nginx")"
fi

stop_pid "$UP_PID" QUIT 10

echo
echo "== summary"
printf '%-38s %14s %14s %10s\n' metric luagate nginx ratio
for line in "${SUMMARY[@]}"; do echo "$line"; done

# ---- config changes (spec/bench/config_swap.sh) ------------------------------
# Load time of a 10,000-route / 1,000-consumer config and the latency of
# requests during 20 SIGHUP reloads against steady state; its own processes.
# SKIP_SWAP=1 skips it. docs/performance.md, "Config changes".
if [ -z "${SKIP_SWAP:-}" ]; then
  echo
  echo "== config changes"
  "$BENCH/config_swap.sh"
fi

# ---- end of config changes ---------------------------------------------------

# ---- TLS (spec/bench/tls.sh) --------------------------------------------------
# HTTPS keepalive throughput, resumed and full handshakes against nginx with
# the same certificate; its own processes. SKIP_TLS=1 skips it.
if [ -z "${SKIP_TLS:-}" ]; then
  echo
  "$BENCH/tls.sh"
fi
