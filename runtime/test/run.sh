#!/bin/sh
# Builds and runs the C unit tests of the runtime (TAP output). Run from the
# repository root or anywhere: the script moves to the root itself.
# SANITIZER=address|undefined adds -fsanitize.
set -e
cd "$(dirname "$0")/../.."
mkdir -p build/test
SAN=""
if [ -n "$SANITIZER" ]; then
    SAN="-fsanitize=$SANITIZER -fno-omit-frame-pointer"
fi
cc -std=c11 -g -O1 -Wall -Wextra -D_GNU_SOURCE $SAN -Iruntime/include \
    -o build/test/router_test runtime/test/router_test.c \
    $(pkg-config --cflags --libs luajit) -lpcre2-8
./build/test/router_test
./runtime/test/shdict_run.sh
