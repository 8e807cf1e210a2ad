#!/usr/bin/env bash
# TLS: luagate against nginx, both terminating TLS with the same ECDSA
# P-256 certificate and proxying to the same plain upstream (`make bench`
# runs it after the main sections; docs/performance.md, "TLS").
#
#   upstream  nginx, 1 worker, `return 200 "ok"`
#   luagate   1 worker, --listen "ADDR ssl", route / -> upstream
#   nginx     1 worker, listen ssl (TLSv1.2 TLSv1.3, tickets on),
#             proxy_pass to the upstream with `keepalive 32`
#
# 1. HTTPS keepalive throughput: wrk -t1 -c$CONNS, ROUNDS interleaved
#    rounds of DURATION.
# 2. new connections with session resumption: wrk -H "Connection: close"
#    (wrk resumes sessions: each request is a TCP connect, an abbreviated
#    handshake and one request), interleaved rounds.
# 3. full handshakes: h2load --h1, one request per connection (h2load does
#    not resume), HS_BATCH connections at once, HS_RUNS batches per side per
#    round; handshakes per second = connections / wall time. The client
#    works as hard as the server here (it makes the same ECDHE and checks
#    the signature), so the worker's CPU time per handshake (utime + stime
#    from /proc, the server's own cost) is reported beside the rate.
# 4. HTTP/2 over TLS: h2load -c$H2_CONNS -m$H2_STREAMS, H2_REQS requests,
#    interleaved rounds; both listeners have http2 (`listen ... ssl http2`,
#    `--listen "ADDR ssl http2"`).
#
# Environment: ROUNDS (3), DURATION (10s), CONNS (50), HS_BATCH (500),
# HS_RUNS (4), H2_CONNS (10), H2_STREAMS (10), H2_REQS (100000).
set -uo pipefail
cd "$(dirname "$0")/../.."
ROOT=$PWD
LUAGATE=${LUAGATE_BIN:-$ROOT/bin/luagate}
NGINX=${NGINX:-/usr/sbin/nginx}
ROUNDS=${ROUNDS:-3}
DURATION=${DURATION:-10s}
CONNS=${CONNS:-50}
HS_BATCH=${HS_BATCH:-500}
HS_RUNS=${HS_RUNS:-4}
H2_CONNS=${H2_CONNS:-10}
H2_STREAMS=${H2_STREAMS:-10}
H2_REQS=${H2_REQS:-100000}

[ -x "$LUAGATE" ] || { echo "bin/luagate missing: run make build" >&2; exit 1; }
for tool in wrk h2load openssl luajit "$NGINX"; do
  command -v "$tool" >/dev/null || { echo "$tool missing (make deps)" >&2; exit 1; }
done
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true

DIR=$(mktemp -d "${TMPDIR:-/tmp}/luagate-tls.XXXXXX")
chmod 755 "$DIR"
# shellcheck source=spec/bench/lib.sh
. "$ROOT/spec/bench/lib.sh"
rps() { awk '/Requests\/sec:/ {print $2}'; }

openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 30 \
  -subj /CN=localhost -addext subjectAltName=DNS:localhost,IP:127.0.0.1 \
  -keyout "$DIR/key.pem" -out "$DIR/cert.pem" 2>/dev/null || exit 1

UP_PORT=$(free_port)
LG_PORT=$(free_port)
NG_PORT=$(free_port)
[ "$(id -u)" = 0 ] && USER_LINE="user root;"

nginx_conf() { # name server-block-body
  mkdir -p "$DIR/$1/logs"
  cat >"$DIR/$1/nginx.conf" <<EOF
${USER_LINE:-}
worker_processes 1;
daemon off;
pid $DIR/$1/nginx.pid;
error_log $DIR/$1/logs/error.log error;
worker_rlimit_nofile 65536;
events { worker_connections 30000; multi_accept on; }
http {
  access_log off;
  client_body_temp_path $DIR/$1/body;
  proxy_temp_path $DIR/$1/proxy;
  fastcgi_temp_path $DIR/$1/fastcgi;
  uwsgi_temp_path $DIR/$1/uwsgi;
  scgi_temp_path $DIR/$1/scgi;
  keepalive_requests 1000000;
  upstream up { server 127.0.0.1:$UP_PORT; keepalive 32; }
  server { $2 }
}
EOF
}
nginx_conf upstream "listen 127.0.0.1:$UP_PORT; location / { return 200 \"ok\"; }"
nginx_conf proxy "listen 127.0.0.1:$NG_PORT ssl http2;
    ssl_certificate $DIR/cert.pem; ssl_certificate_key $DIR/key.pem;
    ssl_protocols TLSv1.2 TLSv1.3; ssl_session_tickets on;
    location / { proxy_pass http://up; proxy_http_version 1.1;
                 proxy_set_header Connection \"\"; }"
cat >"$DIR/luagate.yml" <<EOF
_format_version: "3.0"
services:
- name: up
  url: http://127.0.0.1:$UP_PORT
  routes:
  - name: all
    paths: ["/"]
EOF

"$NGINX" -p "$DIR/upstream" -c "$DIR/upstream/nginx.conf" >"$DIR/upstream.out" 2>&1 &
PIDS+=($!)
"$NGINX" -p "$DIR/proxy" -c "$DIR/proxy/nginx.conf" >"$DIR/proxy.out" 2>&1 &
NG_PID=$!
PIDS+=($NG_PID)
"$LUAGATE" run -c "$DIR/luagate.yml" --listen "127.0.0.1:$LG_PORT ssl http2" \
  --ssl-cert "$DIR/cert.pem" --ssl-key "$DIR/key.pem" --admin-listen off \
  --workers 1 --access-log off --error-log "$DIR/luagate-error.log" \
  --log-level error >"$DIR/luagate.out" 2>&1 &
LG_PID=$!
PIDS+=($LG_PID)
wait_port "$UP_PORT" 10 && wait_port "$NG_PORT" 10 && wait_port "$LG_PORT" 15 || exit 1
LG_WORKER=$(pgrep -P "$LG_PID" | head -1)
NG_WORKER=$(pgrep -P "$NG_PID" | head -1)
cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
CLK_TCK=$(getconf CLK_TCK)
LG_URL=https://127.0.0.1:$LG_PORT/
NG_URL=https://127.0.0.1:$NG_PORT/
for u in "$LG_URL" "$NG_URL"; do
  body=$(curl -sk "$u")
  [ "$body" = ok ] || { echo "$u answered '$body', not ok" >&2; exit 1; }
done

# rounds name [header] -> prints the rounds, leaves the median in $DIR/name.median
rounds() {
  local name=$1 r a b x
  local hdr=()
  [ -n "${2:-}" ] && hdr=(-H "$2")
  wrk -t1 -c"$CONNS" -d2s "${hdr[@]}" "$LG_URL" >/dev/null
  wrk -t1 -c"$CONNS" -d2s "${hdr[@]}" "$NG_URL" >/dev/null
  printf '%-6s %14s %14s %8s\n' round "luagate r/s" "nginx r/s" ratio
  : >"$DIR/$name.txt"
  for ((r = 1; r <= ROUNDS; r++)); do
    a=$(wrk -t1 -c"$CONNS" -d"$DURATION" "${hdr[@]}" "$LG_URL" | rps)
    b=$(wrk -t1 -c"$CONNS" -d"$DURATION" "${hdr[@]}" "$NG_URL" | rps)
    x=$(ratio "$a" "$b" 3)
    printf '%-6s %14s %14s %8s\n' "$r" "$a" "$b" "$x"
    echo "$x" >>"$DIR/$name.txt"
  done
  median <"$DIR/$name.txt" >"$DIR/$name.median"
  echo "median luagate/nginx: $(cat "$DIR/$name.median")"
}

# full handshakes per second against url (served by worker pid $2):
# HS_RUNS batches of HS_BATCH; prints "rate cpu_us_per_handshake"
handshakes() {
  local url=$1 i t0 t1 ok=0 out c0 c1
  c0=$(cpu_ticks "$2")
  t0=$(date +%s.%N)
  for ((i = 0; i < HS_RUNS; i++)); do
    out=$(h2load --h1 -n "$HS_BATCH" -c "$HS_BATCH" "$url" 2>&1)
    ok=$((ok + $(echo "$out" | awk '/^requests:/ {print $8}')))
  done
  t1=$(date +%s.%N)
  c1=$(cpu_ticks "$2")
  awk -v n="$ok" -v a="$t0" -v b="$t1" -v want=$((HS_RUNS * HS_BATCH)) \
      -v c=$((c1 - c0)) -v hz="$CLK_TCK" \
    'BEGIN { if (n < want) printf "%d-of-%d-failed ", want - n, want;
             printf "%.0f %.0f\n", n / (b - a), (n > 0 ? c * 1e6 / hz / n : 0) }'
}

echo "== TLS: luagate :$LG_PORT vs nginx :$NG_PORT (same ECDSA P-256 certificate)"
echo
echo "-- HTTPS keepalive throughput (wrk -t1 -c$CONNS)"
rounds keepalive
echo
echo "-- new connection per request, session resumed (wrk -H 'Connection: close')"
rounds resumed "Connection: close"
echo
echo "-- full handshakes per second (h2load --h1, one request per connection, $HS_RUNS x $HS_BATCH)"
printf '%-6s %14s %14s %8s %14s %14s %8s\n' round "luagate hs/s" "nginx hs/s" ratio \
  "luagate us/hs" "nginx us/hs" ratio
: >"$DIR/full.txt"
: >"$DIR/fullcpu.txt"
handshakes "$LG_URL" "$LG_WORKER" >/dev/null
handshakes "$NG_URL" "$NG_WORKER" >/dev/null
for ((r = 1; r <= ROUNDS; r++)); do
  read -r a ac < <(handshakes "$LG_URL" "$LG_WORKER")
  read -r b bc < <(handshakes "$NG_URL" "$NG_WORKER")
  x=$(ratio "${a##* }" "${b##* }" 3)
  y=$(ratio "$ac" "$bc" 3)
  printf '%-6s %14s %14s %8s %14s %14s %8s\n' "$r" "$a" "$b" "$x" "$ac" "$bc" "$y"
  echo "$x" >>"$DIR/full.txt"
  echo "$y" >>"$DIR/fullcpu.txt"
done
echo "median luagate/nginx: $(median <"$DIR/full.txt") (rate), $(median <"$DIR/fullcpu.txt") (worker CPU per handshake)"
echo
echo "-- HTTP/2 over TLS (h2load -c$H2_CONNS -m$H2_STREAMS -n$H2_REQS)"
h2rps() { h2load -c "$H2_CONNS" -m "$H2_STREAMS" -n "$1" "$2" 2>&1 |
          awk '/^finished in/ {gsub(",", "", $4); print $4}'; }
h2rps 5000 "$LG_URL" >/dev/null
h2rps 5000 "$NG_URL" >/dev/null
printf '%-6s %14s %14s %8s\n' round "luagate r/s" "nginx r/s" ratio
: >"$DIR/h2.txt"
for ((r = 1; r <= ROUNDS; r++)); do
  a=$(h2rps "$H2_REQS" "$LG_URL")
  b=$(h2rps "$H2_REQS" "$NG_URL")
  x=$(ratio "$a" "$b" 3)
  printf '%-6s %14s %14s %8s\n' "$r" "$a" "$b" "$x"
  echo "$x" >>"$DIR/h2.txt"
done
echo "median luagate/nginx: $(median <"$DIR/h2.txt")"
echo
echo "== TLS summary (luagate/nginx, medians)"
echo "HTTPS keepalive r/s            $(cat "$DIR/keepalive.median")"
echo "resumed connections/s          $(cat "$DIR/resumed.median")"
echo "full handshakes/s              $(median <"$DIR/full.txt")"
echo "worker CPU per full handshake  $(median <"$DIR/fullcpu.txt") (lower is better)"
echo "HTTP/2 r/s                     $(median <"$DIR/h2.txt")"
