#!/usr/bin/env bash
# A worker's CPU per reload, without clients (docs/performance.md, "Config
# changes"): luagate with 1 worker on config_swap_gen.lua's file (100 x 100
# routes, 1,000 consumers), one route's path edited before every SIGHUP,
# RELOADS reloads GAP_S seconds apart after a first one (the start-up load
# is not a sliced reload: it leaves nothing to reuse). Prints the worker's
# utime + stime (/proc) per reload, the worker's "loaded ... in M ms" (from
# the order to the swap) and its last reuse count.
#
#   spec/bench/reload_cpu.sh [json|yml]        # ~20 s
#   LUAGATE_BIN=/path/to/other/bin/luagate RELOADS=10 spec/bench/reload_cpu.sh yml
set -uo pipefail
cd "$(dirname "$0")/../.."
ROOT=$PWD
BENCH=$ROOT/spec/bench
LUAGATE=${LUAGATE_BIN:-$ROOT/bin/luagate}
FMT=${1:-json}
RELOADS=${RELOADS:-10}
GAP_S=${GAP_S:-1.5}

[ -x "$LUAGATE" ] || { echo "bin/luagate missing: run make build" >&2; exit 1; }
DIR=$(mktemp -d "${TMPDIR:-/tmp}/luagate-rcpu.XXXXXX")
# shellcheck source=spec/bench/lib.sh
. "$BENCH/lib.sh"

luajit "$BENCH/config_swap_gen.lua" "$DIR/base.$FMT" 100 100 1000 127.0.0.1:1
cp "$DIR/base.$FMT" "$DIR/big.$FMT"
PORT=$(free_port)
"$LUAGATE" run -c "$DIR/big.$FMT" --listen "127.0.0.1:$PORT" --admin-listen off \
  --workers 1 --access-log off --error-log "$DIR/error.log" --log-level info \
  >"$DIR/out" 2>&1 &
MASTER=$!
PIDS+=("$MASTER")
wait_port "$PORT" 30 || exit 1
WORKER=$(pgrep -P "$MASTER" | head -1)
[ -n "$WORKER" ] || { echo "no worker" >&2; exit 1; }
ticks() { awk '{print $14 + $15}' "/proc/$WORKER/stat"; }
edit() { # the path of route 3 of service 1 becomes /s1/r3-$1
  sed "s#\"/s1/r3\"#\"/s1/r3-$1\"#" "$DIR/base.$FMT" >"$DIR/edit.$FMT" &&
    mv "$DIR/edit.$FMT" "$DIR/big.$FMT"
}
edit first
kill -HUP "$MASTER"
sleep 2
T0=$(ticks)
L0=$(grep -c "loaded (generation" "$DIR/error.log")
for ((i = 0; i < RELOADS; i++)); do
  edit "$i"
  kill -HUP "$MASTER"
  sleep "$GAP_S"
done
T1=$(ticks)
L1=$(grep -c "loaded (generation" "$DIR/error.log")
HZ=$(getconf CLK_TCK)
echo "$FMT: $((L1 - L0)) of $RELOADS reloads; worker CPU per reload:" \
  "$(((T1 - T0) * 1000 / HZ / RELOADS)) ms"
grep -o "loaded (generation [0-9]*) in [0-9]* ms" "$DIR/error.log" |
  tail -n "$((L1 - L0))" | awk '{print $5}' | sort -n |
  awk '{a[NR]=$1} END { if (NR) printf "from the order to the swap: median %d ms, min %d, max %d\n",
        a[int((NR+1)/2)], a[1], a[NR] }'
grep "entities validated by the last reload" "$DIR/error.log" | tail -1 | sed 's/.*: //'
