#!/bin/sh
# Builds the end-to-end request-path fuzzer (libFuzzer + ASan + UBSan; the
# real runtime, a fake upstream in the same loop) into build/fuzz/ and runs
# it on a copy of the seed corpus for FUZZ_SECONDS (default 600).
# FUZZ_TARGET=h2up builds and runs the upstream HTTP/2 codec's target
# instead (runtime/fuzz/h2up_fuzzer.c: a scripted HTTP/2 server).
# Exits non-zero when the fuzzer finds a crash, a leak or a failed check;
# reproducers are left in build/fuzz/artifacts/ (crash-*, leak-*, timeout-*).
#
#   FUZZ_SECONDS=30 ./runtime/fuzz/run.sh      # CI smoke run
#   FUZZ_JOBS=4 ./runtime/fuzz/run.sh          # parallel workers (-fork)
#   FUZZ_KEEP_GOING=1 ./runtime/fuzz/run.sh    # save crashes and go on (-fork=1)
#   FUZZ_SKIP_CHECKS=name,name ./runtime/fuzz/run.sh   # past known bugs
#   ./runtime/fuzz/run.sh build/fuzz/artifacts/crash-xyz  # build, replay one input
#
# Run from anywhere: the script moves to the repository root, which the
# fuzzer uses as the prefix (lua/, runtime/fuzz/plugins, spec/fixtures/plugins).
set -eu
cd "$(dirname "$0")/../.."

CC=${CC:-clang}
OUT=build/fuzz
TARGET=${FUZZ_TARGET:-request}
BIN=$OUT/${TARGET}_fuzzer
LLHTTP_DIR=/usr/share/llhttp
mkdir -p "$OUT"

SAN="-fsanitize=fuzzer,address,undefined -fno-sanitize-recover=undefined"
CFLAGS="-g -O1 -fno-omit-frame-pointer $SAN -D_GNU_SOURCE -Iruntime/include \
-I/usr/share/include/llhttp $(pkg-config --cflags luajit)"

# llhttp is generated code: no warnings for it, same sanitizers.
for f in api http llhttp; do
    $CC $CFLAGS -w -c -o "$OUT/llhttp_$f.o" "$LLHTTP_DIR/$f.c"
done
if [ "$TARGET" = h2up ]; then
    # the codec and what it uses: no runtime, no Lua
    $CC $CFLAGS -std=c11 -Wall -Wextra -Wno-unused-parameter -o "$BIN" \
        runtime/fuzz/h2up_fuzzer.c runtime/src/h2_up.c runtime/src/buf.c runtime/src/http.c \
        "$OUT/llhttp_api.o" "$OUT/llhttp_http.o" "$OUT/llhttp_llhttp.o" -lnghttp2
elif [ "$TARGET" != request ]; then
    echo "run.sh: FUZZ_TARGET is request or h2up" >&2
    exit 2
else
# the whole runtime but main.c (the harness defines gw_settings); -Wl,-E so
# that LuaJIT's FFI finds the gw_ffi_* and gw_shdict_* symbols
SRC=$(ls runtime/src/*.c | grep -v '/main\.c$')
# the libraries are the Makefile's LDLIBS (read, not copied, so that a new
# runtime dependency needs no change here)
LIBS=$(printf 'fuzz-print-ldlibs:\n\t@echo $(LDLIBS)\n' |
       make -s --no-print-directory -f Makefile -f - fuzz-print-ldlibs 2>/dev/null) ||
    LIBS="-lev $(pkg-config --libs luajit) -lpcre2-8 -lhiredis -lssl -lcrypto -lz -lm -ldl \
-lpthread -lanl"
# shellcheck disable=SC2086
$CC $CFLAGS -std=c11 -Wall -Wextra -Wno-unused-parameter -o "$BIN" \
    runtime/fuzz/request_fuzzer.c $SRC \
    "$OUT/llhttp_api.o" "$OUT/llhttp_http.o" "$OUT/llhttp_llhttp.o" \
    $LIBS -Wl,-E
fi

if [ $# -gt 0 ]; then
    exec "$BIN" "$@"
fi

# the fuzzer adds inputs to its corpus directory: keep the seeds clean
CORPUS=$OUT/corpus-$TARGET
mkdir -p "$CORPUS"
cp runtime/fuzz/corpus/"$TARGET"/* "$CORPUS"/

ART=$OUT/artifacts
rm -rf "$ART"
mkdir -p "$ART"
JOBS=${FUZZ_JOBS:-1}
MODE=""
if [ "$JOBS" -gt 1 ] || [ -n "${FUZZ_KEEP_GOING:-}" ]; then
    # workers in child processes; a crash is saved and fuzzing goes on
    MODE="-fork=$JOBS -ignore_crashes=1 -ignore_timeouts=1 -ignore_ooms=1"
fi
export FUZZ_SKIP_CHECKS="${FUZZ_SKIP_CHECKS:-}"
# detect_leaks stays on: the request path must not leak per request.
rc=0
# shellcheck disable=SC2086
"$BIN" $MODE -max_total_time="${FUZZ_SECONDS:-600}" -max_len=65536 -timeout=10 \
    -rss_limit_mb=2048 -print_final_stats=1 -artifact_prefix="$ART/" \
    "$CORPUS" || rc=$?
if [ -n "$(ls -A "$ART")" ]; then
    echo "run.sh: the fuzzer found problems; reproducers:" >&2
    ls -l "$ART" >&2
    echo "replay one with: ./runtime/fuzz/run.sh $ART/<file>" >&2
    [ "$rc" -ne 0 ] || rc=1
fi
exit "$rc"
