#!/usr/bin/env bash
# Runs the C test programs of tests/c against PostgreSQL instead of the file store.
#
#   bash tests/c/run_pg.sh       (needs `make lib` first)
#
# Without EVS_PG_URL it starts a private server with tests/pg/pg_server.sh and runs itself
# under it (a server that cannot start fails the run). Each program runs natively with
# EVS_TEST_PG_URL set: tests/c/test_util.h then gives every store of a program its own
# schema (tu_store_location), and the file-specific parts of the programs are skipped
# with a printed reason (tu_skip_on_pg), counted as skipped, never as passed. The
# skipped parts, all about what only the file store has (its files and folders; the
# operation a removed position's message names):
#   test_api      evs_open of bad paths (non-UTF-8, missing parent, a regular file); the
#                 folder an open creates or a read-only open leaves uncreated; an existing
#                 empty folder; EVS_ERR_LOCKED for a second handle and for another
#                 process; records and segments scanned on reopen; many segments; a batch
#                 larger than a segment; torn and zeroed tails, damaged segments, a legacy
#                 store folder
#   test_account  snapshot files: damaged or ahead of the log, the snapshot a reopen
#                 starts from (twice)
#   test_subscribe  the fsync, segment, index and snapshot counters of evs_stats and the
#                 metrics; how far a sleeping subscriber falls behind (appends are server
#                 round trips, slower than its sleeps)
#   test_abi_v1   ids older than the dedupe window forgotten (the file store's id index is
#                 bounded; PostgreSQL keeps every id in a unique index); a subscription
#                 ended by a damaged record (the test damages a segment file). Its forked
#                 child expects evs_open to succeed there (no LOCK), EVS_ERR_LOCKED on files
#   test_lifecycle  evs_read_event's message naming the operation that removed an event
#                 (PostgreSQL deleted the row: it knows the position was emptied, not by
#                 what); the search of the store's files for the markers of events
#                 evs_compact erased
#   test_consumers  a read-only handle's consumer journals, a file where the consumers'
#                 folder goes, a damaged segment (PostgreSQL keeps consumers in tables)
#   test_subjects  that a store whose keys a provider keeps has no key file
# (each program prints `SKIP (PostgreSQL) what: why` for each, and `N skipped`).
#
# Environment: CC, EVS_TEST_OUT (default build/tests/c-pg), EVS_PG_ACCOUNT_SCALE (the
# EVS_TEST_SCALE of test_account, default 0.05), EVS_PG_SUBSCRIBE_SCALE (that of
# test_subscribe, default 0.05); the others run at 1.
#
# Prints each program's output and a final line `N passed, N failed, N skipped`: tests
# passed and failed (tests/c/test_util.h counts them), parts skipped; exits non-zero if
# anything failed.

set -u
cd "$(dirname "$0")/../.." || exit 2

if [ -z "${EVS_PG_URL:-}" ]; then
    exec bash tests/pg/pg_server.sh run bash tests/c/run_pg.sh
fi

CC=${CC:-cc}
OUT=${EVS_TEST_OUT:-build/tests/c-pg}
CFLAGS="-std=c99 -Wall -Wextra -Wpedantic -Werror -D_POSIX_C_SOURCE=200809L -g -O1 -Iinclude"
LIBDIR=build/lib
ACCOUNT_SCALE=${EVS_PG_ACCOUNT_SCALE:-0.05}
SUBSCRIBE_SCALE=${EVS_PG_SUBSCRIBE_SCALE:-0.05}

total_passed=0
total_failed=0
failures=""
total_skipped=0

fail() {
    echo "FAILED: $*"
    failures="${failures}FAILED: $*
"
    total_failed=$((total_failed + 1))
}

if [ ! -f include/evstore.h ] || [ ! -f "$LIBDIR/libevstore.so" ]; then
    echo "include/evstore.h and $LIBDIR/libevstore.so are needed: run 'make lib' first"
    echo "0 passed, 1 failed, 0 skipped"
    exit 1
fi
mkdir -p "$OUT" || exit 2

# build NAME: compiles tests/c/NAME.c into $OUT/NAME against the shared library
build() {
    echo "== build $1"
    if ! $CC $CFLAGS -o "$OUT/$1" "tests/c/$1.c" -L"$LIBDIR" -levstore -lpthread; then
        fail "build $1"
        return 1
    fi
}

# run LABEL SCALE CMD...: runs a program against the server, adds its counts
run() {
    label=$1
    scale=$2
    shift 2
    log="$OUT/$label.log"
    echo "== run $label"
    start=$(date +%s)
    EVS_TEST_PG_URL=$EVS_PG_URL EVS_TEST_SCALE=$scale \
        LD_LIBRARY_PATH="$LIBDIR${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}" "$@" >"$log" 2>&1
    rc=$?
    end=$(date +%s)
    cat "$log"
    line=$(grep -E '^[0-9]+ passed, [0-9]+ failed$' "$log" | tail -n 1)
    if [ -z "$line" ]; then
        fail "$label: no summary line (exit status $rc)"
    else
        p=$(echo "$line" | sed -E 's/^([0-9]+) passed, ([0-9]+) failed$/\1/')
        f=$(echo "$line" | sed -E 's/^([0-9]+) passed, ([0-9]+) failed$/\2/')
        total_passed=$((total_passed + p))
        total_failed=$((total_failed + f))
        if [ "$rc" -ne 0 ] && [ "$f" -eq 0 ]; then
            fail "$label: exit status $rc"
        fi
    fi
    s=$(grep -E '^[0-9]+ skipped$' "$log" | tail -n 1 | sed -E 's/ skipped$//')
    total_skipped=$((total_skipped + ${s:-0}))
    echo "   ($label: exit status $rc, $((end - start)) s)"
}

build test_api && run test_api 1 "$OUT/test_api"
build test_threads && run test_threads 1 "$OUT/test_threads"
# The account test's concurrency part at 5,000 operations (100,000 on files): each of
# them is a round trip to the server, which would take minutes here.
build test_account && run test_account "$ACCOUNT_SCALE" "$OUT/test_account"
build test_fork && run test_fork 1 "$OUT/test_fork"
# The subscription test's long parts at 5,000 appends (100,000 on files): a sleeping
# subscriber, catch-up and resume append one event per round trip to the server.
build test_subscribe && run test_subscribe "$SUBSCRIBE_SCALE" "$OUT/test_subscribe"
build test_abi_v1 && run test_abi_v1 1 "$OUT/test_abi_v1"
build test_lifecycle && run test_lifecycle 1 "$OUT/test_lifecycle"
build test_consumers && run test_consumers 1 "$OUT/test_consumers"
build test_subjects && run test_subjects 1 "$OUT/test_subjects"

# The failures again at the end, where a CI log's last lines show them.
if [ "$total_failed" -ne 0 ]; then
    echo "== failures"
    printf '%b' "$failures"
    grep -h -E 'CHECK failed' "$OUT"/*.log 2>/dev/null | head -n 40
fi
echo "$total_passed passed, $total_failed failed, $total_skipped skipped"
[ "$total_failed" -eq 0 ]
