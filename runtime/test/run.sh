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
# hops.c checks names and values with http.c's helpers (http.c needs llhttp)
for f in api http llhttp; do
    cc -std=c11 -O1 -w -I/usr/share/include/llhttp -c -o build/test/llhttp_$f.o \
        /usr/share/llhttp/$f.c
done
cc -std=c11 -g -O1 -Wall -Wextra -D_GNU_SOURCE $SAN -Iruntime/include \
    -I/usr/share/include/llhttp -o build/test/hops_test runtime/test/hops_test.c \
    runtime/src/http.c runtime/src/buf.c build/test/llhttp_api.o build/test/llhttp_http.o \
    build/test/llhttp_llhttp.o
./build/test/hops_test
./runtime/test/shdict_run.sh
