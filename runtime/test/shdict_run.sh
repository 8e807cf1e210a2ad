#!/bin/sh
# Builds and runs the shared dictionary C test (TAP), and builds
# build/test/libgwshdict.so, the library spec/01-unit/20-shdict_spec.lua
# loads. Run from anywhere: the script moves to the repository root.
#   SANITIZER=address,undefined runtime/test/shdict_run.sh   instrumented
#   runtime/test/shdict_run.sh --lib                          only the .so
set -e
cd "$(dirname "$0")/../.."
mkdir -p build/test
CFLAGS="-std=c11 -g -O1 -Wall -Wextra -Werror -D_GNU_SOURCE -Iruntime/include"
cc $CFLAGS -fPIC -shared -o build/test/libgwshdict.so runtime/src/shdict.c -lpthread
if [ "$1" = "--lib" ]; then
    exit 0
fi
SAN=""
if [ -n "$SANITIZER" ]; then
    SAN="-fsanitize=$SANITIZER -fno-omit-frame-pointer -fno-sanitize-recover=all"
fi
cc $CFLAGS $SAN -o build/test/shdict_test runtime/test/shdict_test.c -lpthread
./build/test/shdict_test
