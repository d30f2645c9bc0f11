# evstore: `make demo` builds the library and runs the C example; `make test` runs every
# test (Rust, C under valgrind, Go, C++, the bindings and evsctl used from outside the
# tree against an installed copy). Both first check the machine (tools/setup.sh): as root
# they install what is missing, otherwise they name it in one line and stop.
# `make bench` measures; `make install PREFIX=...` installs the library, its headers (C
# and C++), pkg-config and CMake files, and evsctl.

PREFIX   ?= /usr/local
# The library version is the crate's (Cargo.toml), which the header's EVS_VERSION_* macros match.
VERSION  := $(shell sed -n 's/^version = "\(.*\)"$$/\1/p' Cargo.toml | head -n 1)
SONAME   := libevstore.so.1
CARGO    ?= cargo
BUILD    := build
LIBDIR   := $(BUILD)/lib
CC       ?= cc
CFLAGS   ?= -std=c99 -O2 -Wall -Wextra -Wpedantic -Werror
TARGET   := target/release

# Go from go.dev's archive lives in /usr/local/go/bin and cargo from rustup in
# ~/.cargo/bin; a shell that never read a profile may lack them on its PATH.
ifneq ($(wildcard /usr/local/go/bin/go),)
export PATH := $(PATH):/usr/local/go/bin
endif
ifneq ($(wildcard $(HOME)/.cargo/bin/cargo),)
export PATH := $(PATH):$(HOME)/.cargo/bin
endif

# `make test` builds the library, evsctl, the demo and the installed copy once, then runs
# the suites (some at the same time) with PREBUILT=1: then no target rebuilds or
# reinstalls them, so that no suite replaces a file another one is using.
ifeq ($(PREBUILT),1)
NEEDS_LIB :=
NEEDS_INSTALLED :=
else
NEEDS_LIB := lib
NEEDS_INSTALLED := installed
endif

.PHONY: all lib header demo installed test test-build test-rust-build test-rust test-bench-build test-c test-go test-go-consumer test-cpp test-cmake-consumer test-swift-modulemap test-evsctl test-readme test-setup test-pkgconfig test-examples test-reliability test-c-pg bench bench-backup bench-instr bench-pg bench-pg-copy bench-scale stress install clean lint

all: lib

lib:
	$(CARGO) build --release --lib
	mkdir -p $(LIBDIR)/pkgconfig $(LIBDIR)/.debug
	# Replace, never overwrite in place: a running program may have the old one mapped.
	cp $(TARGET)/libevstore.so $(LIBDIR)/.libevstore.so.tmp && mv -f $(LIBDIR)/.libevstore.so.tmp $(LIBDIR)/libevstore.so.$(VERSION)
	# The debug info of the installed (stripped) library stays here, in the build tree.
	objcopy --only-keep-debug $(LIBDIR)/libevstore.so.$(VERSION) $(LIBDIR)/.debug/libevstore.so.$(VERSION).debug
	ln -sf libevstore.so.$(VERSION) $(LIBDIR)/$(SONAME)
	ln -sf $(SONAME) $(LIBDIR)/libevstore.so
	cp $(TARGET)/libevstore.a $(LIBDIR)/.libevstore.a.tmp && mv -f $(LIBDIR)/.libevstore.a.tmp $(LIBDIR)/libevstore.a
	sed -e 's|@PREFIX@|$(abspath $(BUILD))|' -e 's|@HEADERDIR@|$(abspath include)|' \
	    -e 's|@VERSION@|$(VERSION)|' evstore.pc.in > $(LIBDIR)/pkgconfig/evstore.pc

# Regenerates include/evstore.h from src/ffi (commit the result).
header:
	EVSTORE_WRITE_HEADER=1 $(CARGO) build --release --lib

$(BUILD)/bank: examples-c/bank.c $(NEEDS_LIB)
	$(CC) $(CFLAGS) -Iinclude $< -L$(LIBDIR) -levstore -o $@

# evsctl finds the library in ../lib beside its bin/: build/lib here, $(PREFIX)/lib once
# installed (a runpath of $ORIGIN/../lib, so the install is relocatable).
EVSCTL := $(BUILD)/bin/evsctl
$(EVSCTL): tools/evsctl/evsctl.c tools/evsctl/backup.c tools/evsctl/backup.h tools/evsctl/move.c tools/evsctl/move.h $(NEEDS_LIB)
	mkdir -p $(BUILD)/bin
	$(CC) $(CFLAGS) -Iinclude $(filter %.c,$^) -L$(LIBDIR) -levstore -pthread -Wl,-rpath,'$$ORIGIN/../lib' -o $@

# The demo needs cargo and a C compiler (tools/setup.sh demo checks, installing gcc as
# root), nothing else.
demo:
	@bash tools/setup.sh demo
	@$(MAKE) --no-print-directory $(BUILD)/bank
	rm -rf $(BUILD)/demo-store
	LD_LIBRARY_PATH=$(LIBDIR) ./$(BUILD)/bank $(BUILD)/demo-store

# Every suite: first what the machine lacks (tools/setup.sh), then tests/suites.sh, which
# builds once, runs the suites below (names as they start, times as they end) and ends
# with a table and `total: N passed, N failed`. `bash tests/suites.sh c go` runs some.
test:
	@bash tools/setup.sh test
	@bash tests/suites.sh

# What the suites share, built once by tests/suites.sh before them.
test-build: lib $(EVSCTL) $(BUILD)/bank installed

# The Rust tests: built once; then the PostgreSQL ones (tests/pg_*.rs, which mostly wait
# on their servers) run beside the others (the globs: every other tests/*.rs), their
# output after the others'; the doc tests last. The examples (the benchmark bench/pg)
# are built by test-bench-build, beside the tests rather than before them.
RUST_NOT_PG := --lib --test '[!p]*' --test 'p[!g]*'
test-rust-build:
	$(CARGO) test --release --no-run --lib --tests

test-rust: test-rust-build
	@mkdir -p $(BUILD); \
	$(CARGO) test --release --no-fail-fast --test 'pg_*' > $(BUILD)/test-rust-pg.log 2>&1 & pg=$$!; \
	$(CARGO) test --release --no-fail-fast $(RUST_NOT_PG); others=$$?; \
	wait $$pg; pg=$$?; cat $(BUILD)/test-rust-pg.log; \
	[ $$others = 0 ] && [ $$pg = 0 ]
	$(CARGO) test --release --doc

test-c: $(NEEDS_LIB)
	bash tests/c/run.sh

# The benchmarks compile (they are not run: make bench, make bench-pg).
test-bench-build:
	$(CARGO) build --release --examples
	@echo "bench build: 1 passed, 0 failed"

# The C test programs against a private PostgreSQL server (file-specific parts skipped).
test-c-pg: $(NEEDS_LIB)
	bash tests/c/run_pg.sh

# The Go binding in the tree, against build/lib through its pkg-config file (as a user's
# build finds an installed library): vet, the tests (never cached: the library is linked
# from outside the module), and again under the race detector. -v: tests/suites.sh counts
# the `--- PASS` lines. Under a PostgreSQL server of its own (EVS_PG_URL): the binding's
# PostgreSQL tests (postgres_test.go) run against it.
GOENV := CGO_ENABLED=1 PKG_CONFIG_PATH=$(abspath $(LIBDIR))/pkgconfig LD_LIBRARY_PATH=$(abspath $(LIBDIR))
test-go: $(NEEDS_LIB)
	bash tests/pg/pg_server.sh run sh -c 'cd bindings/go && $(GOENV) go vet ./... && $(GOENV) go test -v -count=1 ./... && $(GOENV) go test -v -race -count=1 ./...'

# The library installed into build/installed, for the tests that use it as an outsider.
INSTALLED := $(abspath $(BUILD))/installed
installed: lib
	rm -rf $(INSTALLED)
	$(MAKE) --no-print-directory install PREFIX=$(INSTALLED) > /dev/null

# A CMake project in a temporary folder finds the installed package (find_package) and
# builds the C++ and C quick starts.
test-cmake-consumer: $(NEEDS_INSTALLED)
	sh tests/bindings/cmake_consumer.sh $(INSTALLED)

# A module in a temporary folder outside the tree requires the Go binding and builds
# against the installed library.
test-go-consumer: $(NEEDS_INSTALLED)
	sh tests/bindings/go_consumer.sh $(INSTALLED)

test-cpp: $(NEEDS_LIB)
	@if [ -f bindings/cpp/run.sh ]; then bash bindings/cpp/run.sh; else echo "no C++ binding yet"; fi

# The examples build and run: the demo twice (the second run recovers), evsctl on its store.
test-examples: $(BUILD)/bank $(EVSCTL)
	rm -rf $(BUILD)/examples-store
	LD_LIBRARY_PATH=$(LIBDIR) ./$(BUILD)/bank $(BUILD)/examples-store > /dev/null
	LD_LIBRARY_PATH=$(LIBDIR) ./$(BUILD)/bank $(BUILD)/examples-store | grep -q "balance is 1600"
	./$(EVSCTL) account $(BUILD)/examples-store alice | grep -q "alice	1600 USD"
	./$(EVSCTL) append $(BUILD)/examples-store notes Noted hello > /dev/null
	./$(EVSCTL) tail -n 1 $(BUILD)/examples-store | grep -q "Noted"
	@echo "examples: 4 passed, 0 failed"

# tools/setup.sh on pretended fresh machines (tools hidden from PATH, not root).
test-setup:
	bash tests/setup_check.sh

# README.md's quick starts are the files the tests build and run.
test-readme:
	sh tests/bindings/readme_quickstarts.sh

# The Swift binding's module map, through clang -fmodules (no Swift toolchain here).
test-swift-modulemap: $(NEEDS_INSTALLED)
	sh tests/bindings/swift_modulemap.sh $(INSTALLED)

# Every evsctl command, the installed one, against real stores (one damaged).
test-evsctl: $(NEEDS_INSTALLED) $(BUILD)/bank
	# Under a PostgreSQL server of its own: the commands run on both backends.
	bash tests/pg/pg_server.sh run sh tests/bindings/evsctl.sh $(INSTALLED)/bin/evsctl $(BUILD)/bank

# The short reliability suite (crashes, power loss, full disk, bad input, fuzzing, stress).
test-reliability: $(NEEDS_LIB)
	@if [ -f tests/reliability/run.sh ]; then bash tests/reliability/run.sh --quick; else echo "no reliability suite yet"; fi

# The long version: minutes. The fault and power-cut loops run whole (every fault kind
# and power-cut variant at every operation, reads failed too).
stress: lib
	EVS_FAULT_LOOPS=full $(CARGO) test --release --test fault_loops --test lifecycle_loops -- --nocapture
	bash tests/reliability/run.sh --full
	EVS_VALGRIND_SCALE=1 bash tests/c/run.sh

# The installed pkg-config file links a program, dynamically and statically.
test-pkgconfig: $(NEEDS_LIB)
	rm -rf $(BUILD)/pkgtest
	$(MAKE) --no-print-directory install PREFIX=$(abspath $(BUILD))/pkgtest
	PKG_CONFIG_PATH=$(BUILD)/pkgtest/lib/pkgconfig $(CC) $(CFLAGS) examples-c/bank.c \
	    $$(PKG_CONFIG_PATH=$(BUILD)/pkgtest/lib/pkgconfig pkg-config --cflags --libs evstore) -o $(BUILD)/pkgtest/bank
	rm -rf $(BUILD)/pkgtest/store && LD_LIBRARY_PATH=$(BUILD)/pkgtest/lib $(BUILD)/pkgtest/bank $(BUILD)/pkgtest/store > /dev/null
	PKG_CONFIG_PATH=$(BUILD)/pkgtest/lib/pkgconfig $(CC) $(CFLAGS) examples-c/bank.c \
	    $$(PKG_CONFIG_PATH=$(BUILD)/pkgtest/lib/pkgconfig pkg-config --cflags evstore) $(BUILD)/pkgtest/lib/libevstore.a \
	    $$(PKG_CONFIG_PATH=$(BUILD)/pkgtest/lib/pkgconfig pkg-config --static --libs evstore | sed 's/-levstore//; s/-L[^ ]*//') -o $(BUILD)/pkgtest/bank-static
	rm -rf $(BUILD)/pkgtest/store && $(BUILD)/pkgtest/bank-static $(BUILD)/pkgtest/store > /dev/null
	# With the library's folder as an rpath (README, Linking), it runs with no LD_LIBRARY_PATH.
	PKG_CONFIG_PATH=$(BUILD)/pkgtest/lib/pkgconfig $(CC) $(CFLAGS) examples-c/bank.c \
	    $$(PKG_CONFIG_PATH=$(BUILD)/pkgtest/lib/pkgconfig pkg-config --cflags --libs evstore) \
	    -Wl,-rpath,$$(PKG_CONFIG_PATH=$(BUILD)/pkgtest/lib/pkgconfig pkg-config --variable=libdir evstore) -o $(BUILD)/pkgtest/bank-rpath
	rm -rf $(BUILD)/pkgtest/store && env -u LD_LIBRARY_PATH $(BUILD)/pkgtest/bank-rpath $(BUILD)/pkgtest/store | grep -q "balance is"
	bash tests/install_layout.sh $(BUILD)/pkgtest $(LIBDIR) $(VERSION) $(SONAME)
	@echo "pkg-config: 4 passed, 0 failed"

# Benchmarks (not tests): the engine's figures through Rust, then evstore beside SQLite,
# then the instruction rows.
bench: lib
	$(CARGO) bench --bench engine
	bash bench/percall/run.sh
	bash bench/run.sh
	bash bench/instr/run.sh
	bash bench/backup/run.sh

# The backup rows alone (issue 23): backup of a 1M-event store in MB/s, and a durable
# appender's p99 during the backup against without (bench/results/backup-latest.md).
bench-backup: lib
	bash bench/backup/run.sh

# The instruction rows alone (issue 25): callgrind counts an event of evstore's hot paths
# beside our minimal reader and appender of the same segment files (bench/minimal,
# checked first to agree with evstore byte for byte) and SQLite, and futex calls an
# append; about 3 minutes. Needs valgrind, strace, libsqlite3-dev.
# The table goes to bench/results/instr-latest.md (bench/README.md).
bench-instr: lib
	bash bench/instr/run.sh

# The scale benchmark (issue 13): 100M events over 1M streams through the C API (about
# 15 GB; refuses with less than 40 GB free), open time, memory, read latency. Not part of
# `make test` or `make bench`. SCALE_EVENTS / SCALE_STREAMS / SCALE_DIR change it.
bench-scale: lib
	bash bench/scale/run.sh

# The PostgreSQL designs benchmark (issue 14, docs/postgres.md): starts a throwaway server
# (tests/pg/pg_server.sh), runs bench/pg against it, prints the tables, stops the server.
# Not part of `make test`. PG_BENCH_ARGS: e.g. --secs 6 --writers 8 --tasks 8 --designs gc,late
# The evstore row's writers and reader are $(BUILD)/pg_bench_c (bench/pg/writer.c, through
# the C API, linked with the library built here).
PG_BENCH_ARGS ?=
$(BUILD)/pg_bench_c: bench/pg/writer.c lib
	$(CC) $(CFLAGS) -Iinclude $< -L$(LIBDIR) -levstore -lpthread -Wl,-rpath,$(abspath $(LIBDIR)) -o $@

# The copy of a 1M-event file store to PostgreSQL and back, events/s (PG_COPY_ARGS).
bench-pg-copy:
	$(CARGO) build --release --example pg_copy_bench
	bash tests/pg/pg_server.sh run ./$(TARGET)/examples/pg_copy_bench $(PG_COPY_ARGS)

bench-pg: $(BUILD)/pg_bench_c
	$(CARGO) build --release --example pg_bench
	EVS_PG_BENCH_C=$(abspath $(BUILD)/pg_bench_c) bash tests/pg/pg_server.sh run ./$(TARGET)/examples/pg_bench $(PG_BENCH_ARGS)

lint:
	$(CARGO) fmt --check
	$(CARGO) clippy --all-targets -- -D warnings

# The header, its module map and the conventions go to include/evstore/ (not into the
# shared include directory); evstore.pc's -I points there, so #include <evstore.h> works.
# The shared library is installed stripped, with a .gnu_debuglink to the debug info that
# stays in $(LIBDIR)/.debug; the static library without its debug sections.
install: $(NEEDS_LIB) $(EVSCTL)
	install -d $(PREFIX)/lib/pkgconfig $(PREFIX)/include/evstore $(PREFIX)/bin
	install -m 0755 $(EVSCTL) $(PREFIX)/bin/evsctl
	install -m 0644 include/evstore.h include/module.modulemap docs/conventions.md $(PREFIX)/include/evstore/
	strip --strip-unneeded -o $(PREFIX)/lib/.libevstore.so.tmp $(LIBDIR)/libevstore.so.$(VERSION)
	cd $(LIBDIR)/.debug && objcopy --add-gnu-debuglink=libevstore.so.$(VERSION).debug $(abspath $(PREFIX))/lib/.libevstore.so.tmp
	chmod 0755 $(PREFIX)/lib/.libevstore.so.tmp && mv -f $(PREFIX)/lib/.libevstore.so.tmp $(PREFIX)/lib/libevstore.so.$(VERSION)
	ln -sf libevstore.so.$(VERSION) $(PREFIX)/lib/$(SONAME)
	ln -sf $(SONAME) $(PREFIX)/lib/libevstore.so
	strip --strip-debug -o $(PREFIX)/lib/libevstore.a $(LIBDIR)/libevstore.a
	chmod 0644 $(PREFIX)/lib/libevstore.a
	sed -e 's|@PREFIX@|$(PREFIX)|' -e 's|@HEADERDIR@|$(PREFIX)/include/evstore|' \
	    -e 's|@VERSION@|$(VERSION)|' evstore.pc.in > $(PREFIX)/lib/pkgconfig/evstore.pc
	install -m 0644 bindings/cpp/evstore.hpp $(PREFIX)/include/evstore/
	# The Go module, for a `replace` directive (it cannot be fetched by its import path).
	install -d $(PREFIX)/share/evstore/go/quickstart
	install -m 0644 bindings/go/go.mod bindings/go/evstore.h $(filter-out %_test.go,$(wildcard bindings/go/*.go)) \
	    $(PREFIX)/share/evstore/go/
	install -m 0644 bindings/go/quickstart/main.go $(PREFIX)/share/evstore/go/quickstart/
	install -d $(PREFIX)/lib/cmake/evstore
	for f in evstoreConfig evstoreConfigVersion; do \
	    sed -e 's|@VERSION@|$(VERSION)|g' -e 's|@VERSION_MAJOR@|$(firstword $(subst ., ,$(VERSION)))|g' \
	        -e 's|@SONAME@|$(SONAME)|g' bindings/cpp/cmake/$$f.cmake.in > $(PREFIX)/lib/cmake/evstore/$$f.cmake || exit 1; \
	done

clean:
	rm -rf $(BUILD)
	$(CARGO) clean
