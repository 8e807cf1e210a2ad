# Shell helpers shared by the benchmark scripts (run.sh, config_swap.sh,
# tls.sh). Source it after setting DIR (the work directory cleanup removes);
# started processes go in PIDS, killed (with their children) at exit.
PIDS=()

cleanup() {
  local p
  for p in "${PIDS[@]}"; do
    for kid in $(pgrep -P "$p" 2>/dev/null); do kill -9 "$kid" 2>/dev/null; done
    kill -9 "$p" 2>/dev/null
    wait "$p" 2>/dev/null
  done
  rm -rf "$DIR"
}
trap cleanup EXIT

free_port() {
  luajit -e 'local s=require("socket").bind("127.0.0.1",0)
             local _,p=s:getsockname() print(p) s:close()'
}

wait_port() { # port timeout_s
  local i
  for ((i = 0; i < $2 * 10; i++)); do
    if (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; then return 0; fi
    sleep 0.1
  done
  echo "nothing listens on port $1 after $2 s" >&2
  return 1
}

# ratio a b [decimals (2)] -> a/b, or n/a
ratio() { awk -v a="$1" -v b="$2" -v d="${3:-2}" 'BEGIN{ if (b>0) printf "%.*f", d, a/b; else print "n/a"}'; }

# median of the numbers on stdin (decimals: 3 for the mean of the middle two)
median() { sort -g | awk '{a[NR]=$1} END {if (NR==0) {print "n/a"; exit}
  if (NR%2) print a[(NR+1)/2]; else printf "%.3f\n", (a[NR/2]+a[NR/2+1])/2}'; }
