# luagate build. `make` builds bin/luagate; `make test` and `make run` install
# what is missing first. SANITIZER=address|undefined builds an instrumented
# binary into the same place (objects go to build/<sanitizer>/).

DEPS := build-essential pkg-config libev-dev libssl-dev libhiredis-dev \
        node-llhttp libluajit2-5.1-dev luajit2 lua-cjson lua-yaml lua-busted \
        lua-socket lua-penlight lua-expat libpcre2-dev zlib1g-dev \
        libbrotli-dev libnghttp2-dev redis-server nginx libnginx-mod-http-lua \
        wrk nghttp2-client valgrind lua-check clang libclang-rt-14-dev libyaml-dev python3 chromium \
        curl python3-grpcio strace

LLHTTP_DIR := /usr/share/llhttp
LLHTTP_INC := /usr/share/include/llhttp

SANITIZER ?=
CC ?= cc
OPT ?= -O2
CFLAGS_BASE := -std=c11 $(OPT) -g -Wall -Wextra -Wno-unused-parameter \
               -D_GNU_SOURCE -Iruntime/include -I$(LLHTTP_INC) \
               $(shell pkg-config --cflags luajit 2>/dev/null)
LDLIBS := -lev $(shell pkg-config --libs luajit 2>/dev/null) -lpcre2-8 \
          -lhiredis -lnghttp2 -lssl -lcrypto -lz -lbrotlienc -lyaml -lresolv -lm -ldl -lpthread -lanl

# SANITIZER builds go to build/<sanitizer>/luagate unless BIN says otherwise,
# so that they never replace the binary a running suite uses:
#   make SANITIZER=address && LUAGATE_BIN=build/address/luagate ./spec/run.sh
ifeq ($(SANITIZER),)
  OBJDIR := build/obj
  BIN ?= bin/luagate
else
  OBJDIR := build/$(SANITIZER)
  BIN ?= build/$(SANITIZER)/luagate
  CFLAGS_BASE += -fsanitize=$(SANITIZER) -fno-omit-frame-pointer
  LDFLAGS += -fsanitize=$(SANITIZER)
endif
CFLAGS += $(CFLAGS_BASE)

SRC := $(wildcard runtime/src/*.c)
OBJ := $(SRC:runtime/src/%.c=$(OBJDIR)/%.o)
LLHTTP_OBJ := $(OBJDIR)/llhttp/api.o $(OBJDIR)/llhttp/http.o $(OBJDIR)/llhttp/llhttp.o

.PHONY: all deps build run test test-sanitizers bench lint fuzz clean

all: build

deps:
	@missing=""; for p in $(DEPS); do \
	  dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then \
	  echo "installing:$$missing"; \
	  apt-get update -q && DEBIAN_FRONTEND=noninteractive \
	    apt-get install -y -q --no-install-recommends $$missing; \
	fi

build: $(BIN)

$(BIN): $(OBJ) $(LLHTTP_OBJ)
	@mkdir -p $(dir $@)
	$(CC) $(LDFLAGS) -o $@ $^ $(LDLIBS) -Wl,-E

$(OBJDIR)/%.o: runtime/src/%.c $(wildcard runtime/include/gw/*.h)
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -c -o $@ $<

$(OBJDIR)/llhttp/%.o: $(LLHTTP_DIR)/%.c
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS_BASE) -w -c -o $@ $<

run: deps build
	./examples/run.sh

test: deps build
	./spec/run.sh

# The whole suite against sanitizer builds (slow; not part of make test).
test-sanitizers: deps
	$(MAKE) SANITIZER=address build
	LUAGATE_BIN=$(CURDIR)/build/address/luagate SANITIZER=address \
	  ASAN_OPTIONS=detect_leaks=0:abort_on_error=1 ./spec/run.sh
	$(MAKE) SANITIZER=undefined build
	LUAGATE_BIN=$(CURDIR)/build/undefined/luagate SANITIZER=undefined \
	  UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1 ./spec/run.sh

bench: deps build
	./spec/bench/run.sh

lint:
	luacheck lua plugins spec

fuzz:
	./runtime/fuzz/run.sh

clean:
	rm -rf build bin
