#!/usr/bin/env bash
# `make run`: the demo. Starts the mock upstream on 127.0.0.1:15555 and
# luagate in the foreground with examples/kong.yml and 2 workers (proxy on
# :8000, admin on 127.0.0.1:8001). Ctrl-C stops both. No network needed.
# Extra arguments go to `luagate run`.
set -euo pipefail
cd "$(dirname "$0")/.."

MOCK_PORT=15555
/usr/bin/python3 spec/fixtures/mock_upstream.py --port "$MOCK_PORT" >/dev/null &
MOCK_PID=$!
trap 'kill "$MOCK_PID" 2>/dev/null || true' EXIT

for _ in $(seq 50); do
  if (exec 3<>"/dev/tcp/127.0.0.1/$MOCK_PORT") 2>/dev/null; then break; fi
  if ! kill -0 "$MOCK_PID" 2>/dev/null; then
    echo "mock upstream failed to start on port $MOCK_PORT" >&2
    exit 1
  fi
  sleep 0.1
done
if ! kill -0 "$MOCK_PID" 2>/dev/null; then
  echo "note: port $MOCK_PORT was already taken; using what listens there" >&2
fi

cat <<MSG
mock upstream on 127.0.0.1:$MOCK_PORT (pid $MOCK_PID)
try:
  curl -i http://127.0.0.1:8000/demo/anything?hello=world
  curl -i http://127.0.0.1:8000/items/42
  curl -i -X POST http://127.0.0.1:8000/api/v1/echo -d '{"a":1}'
  curl -s http://127.0.0.1:8001/status
MSG

# not exec: the trap must stop the mock upstream when luagate exits
./bin/luagate run -c examples/kong.yml --workers 2 --access-log stdout "$@" &
GW_PID=$!
trap 'kill -TERM "$GW_PID" 2>/dev/null || true' INT TERM
set +e
wait "$GW_PID"
rc=$?
# after a signal, wait for luagate's own exit
if kill -0 "$GW_PID" 2>/dev/null; then wait "$GW_PID"; rc=$?; fi
exit "$rc"
