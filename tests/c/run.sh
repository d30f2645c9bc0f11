#!/bin/sh
# Builds and runs the C tests of the evstore C API against build/lib.
#
#   tests/c/run.sh            (from anywhere; it works from the repository root)
#
# Needs `make lib` first (include/evstore.h, build/lib/libevstore.{so,a}).
# First the header itself: it compiles alone with the strict flags, and every name it
# defines has the evs_/EVS_ prefix. Then each program is compiled with -Wall -Wextra
# -Wpedantic -Werror against the shared library and run under valgrind, with the long
# loops at a quarter of their counts (EVS_VALGRIND_SCALE): their repetitions reach no code
# that the first ones did not, and valgrind runs them some 30 times slower. Every program
# with such loops also runs natively at full size: test_threads, test_account (with its
# 100,000-operation concurrency test) and test_subscribe (with its resident-memory
# check); test_api is also linked statically against libevstore.a and run natively.
# About 40 s on 2 cores (`make stress` runs the valgrind runs at full size too).
#
# Environment:
#   CC                  the C compiler (default cc)
#   EVS_VALGRIND_SCALE  EVS_TEST_SCALE for the runs under valgrind (default 0.25; 1: full size)
#   EVS_NO_VALGRIND=1   run those programs natively instead (not a full run)
#   EVS_TEST_KEEP=1     keep the temporary stores
#   EVS_TEST_OUT        where the programs and logs go (default build/tests/c)
#
# Prints each program's output and a final line `N passed, N failed` counting tests: the
# sum of the programs' lines (each counts its tests, the checks of one function under one
# section heading: tests/c/test_util.h; a program run twice, e.g. under valgrind and
# natively, counts twice), the header's three checks, and one more failure for a program
# that fails to build, crashes, or reports a valgrind error. Exits non-zero if anything
# failed.

cd "$(dirname "$0")/../.." || exit 2

CC=${CC:-cc}
OUT=${EVS_TEST_OUT:-build/tests/c}
VG_SCALE=${EVS_VALGRIND_SCALE:-0.25}
CFLAGS="-std=c99 -Wall -Wextra -Wpedantic -Werror -D_POSIX_C_SOURCE=200809L -g -O1 -Iinclude"
LIBDIR=build/lib

total_passed=0
total_failed=0
failures=""

fail() {
    echo "FAILED: $*"
    failures="${failures}FAILED: $*
"
    total_failed=$((total_failed + 1))
}

if [ ! -f include/evstore.h ] || [ ! -f "$LIBDIR/libevstore.so" ] || [ ! -f "$LIBDIR/libevstore.a" ]; then
    echo "include/evstore.h and $LIBDIR/libevstore.{so,a} are needed: run 'make lib' first"
    echo "0 passed, 1 failed"
    exit 1
fi

mkdir -p "$OUT" || exit 2

VALGRIND="valgrind --error-exitcode=99 --leak-check=full --errors-for-leak-kinds=definite --show-leak-kinds=definite --quiet"
if [ "${EVS_NO_VALGRIND:-0}" = "1" ]; then
    VALGRIND=""
    echo "note: EVS_NO_VALGRIND=1, running without valgrind"
elif ! command -v valgrind >/dev/null 2>&1; then
    echo "valgrind is not installed (set EVS_NO_VALGRIND=1 to run without it)"
    echo "0 passed, 1 failed"
    exit 1
fi

# build NAME SOURCE LINK...: compiles one program into $OUT/NAME
build() {
    name=$1
    src=$2
    shift 2
    echo "== build $name"
    # shellcheck disable=SC2086
    if ! $CC $CFLAGS -o "$OUT/$name" "$src" "$@"; then
        fail "build $name"
        return 1
    fi
    return 0
}

# run LABEL SCALE CMD...: runs a test program, adds its `N passed, N failed` line
run() {
    label=$1
    scale=$2
    shift 2
    log="$OUT/$label.log"
    echo "== run $label"
    start=$(date +%s)
    EVS_TEST_SCALE=$scale LD_LIBRARY_PATH="$LIBDIR${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}" \
        "$@" >"$log" 2>&1
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
            if [ "$rc" -eq 99 ]; then
                fail "$label: valgrind reported errors"
            else
                fail "$label: exit status $rc"
            fi
        fi
    fi
    echo "   ($label: exit status $rc, $((end - start)) s)"
}

# The public header: compiles alone; defines only evs_/EVS_ names (docs/c-api.md).
check_header() {
    echo "== header include/evstore.h"
    printf '#include "evstore.h"\nint main(void) { return 0; }\n' >"$OUT/header_alone.c"
    # shellcheck disable=SC2086
    if $CC $CFLAGS -o "$OUT/header_alone" "$OUT/header_alone.c"; then
        total_passed=$((total_passed + 1))
    else
        fail "include/evstore.h does not compile alone with $CFLAGS"
    fi
    bad=$(grep -E '^[[:space:]]*#[[:space:]]*define[[:space:]]' include/evstore.h |
        sed -E 's/^[[:space:]]*#[[:space:]]*define[[:space:]]+([A-Za-z_][A-Za-z0-9_]*).*/\1/' |
        grep -vE '^(EVS_|evs_|EVSTORE_H$)' | tr '\n' ' ')
    if [ -z "$bad" ]; then
        total_passed=$((total_passed + 1))
    else
        fail "include/evstore.h defines macros without the EVS_ prefix: $bad"
    fi
    bad=$(grep -E '^[A-Za-z].*[^A-Za-z0-9_]([A-Za-z_][A-Za-z0-9_]*)\(' include/evstore.h |
        grep -vE '^(#|typedef)' |
        sed -E 's/^[^(]*[^A-Za-z0-9_(]([A-Za-z_][A-Za-z0-9_]*)\(.*/\1/' |
        grep -vE '^evs_' | tr '\n' ' ')
    if [ -z "$bad" ]; then
        total_passed=$((total_passed + 1))
    else
        fail "include/evstore.h declares functions without the evs_ prefix: $bad"
    fi
}

DYN="-L$LIBDIR -levstore -lpthread"

check_header

if build test_api tests/c/test_api.c $DYN; then
    run test_api-valgrind "$VG_SCALE" $VALGRIND "$OUT/test_api"
fi
if build test_api_static tests/c/test_api.c "$LIBDIR/libevstore.a" -lpthread -ldl -lm; then
    run test_api-static 1 "$OUT/test_api_static"
fi
if build test_threads tests/c/test_threads.c $DYN; then
    run test_threads-valgrind "$VG_SCALE" $VALGRIND "$OUT/test_threads"
    run test_threads-native 1 "$OUT/test_threads"
fi
if build test_account tests/c/test_account.c $DYN; then
    run test_account-valgrind "$VG_SCALE" $VALGRIND "$OUT/test_account"
    run test_account-native 1 "$OUT/test_account"
fi
# The harness itself counts tests, not checks (a child with known checks; natively).
if build test_harness tests/c/test_harness.c $DYN; then
    run test_harness-native 1 "$OUT/test_harness"
fi
# Natively only: the forked child leaks its copy of the parent's handle by design (its
# threads and files are the parent's), which valgrind would report in the child.
if build test_fork tests/c/test_fork.c $DYN; then
    run test_fork-native 1 "$OUT/test_fork"
fi
if build test_subscribe tests/c/test_subscribe.c $DYN; then
    run test_subscribe-valgrind "$VG_SCALE" $VALGRIND "$OUT/test_subscribe"
    run test_subscribe-native 1 "$OUT/test_subscribe" native
fi

if build test_lifecycle tests/c/test_lifecycle.c $DYN; then
    run test_lifecycle-valgrind "$VG_SCALE" $VALGRIND "$OUT/test_lifecycle"
fi

if build test_consumers tests/c/test_consumers.c $DYN; then
    run test_consumers-valgrind "$VG_SCALE" $VALGRIND "$OUT/test_consumers"
fi

if build test_subjects tests/c/test_subjects.c $DYN; then
    run test_subjects-valgrind "$VG_SCALE" $VALGRIND "$OUT/test_subjects"
fi

if build test_abi_v1 tests/c/test_abi_v1.c $DYN; then
    # Its fork test's child lacks the parent's threads, whose memory valgrind would report
    # as lost there; the child reports its checks through a pipe instead.
    vg_child=""
    [ -n "$VALGRIND" ] && vg_child="--child-silent-after-fork=yes"
    run test_abi_v1-valgrind "$VG_SCALE" $VALGRIND $vg_child "$OUT/test_abi_v1"
fi

# The failures again at the end, where a CI log's last lines show them.
if [ "$total_failed" -ne 0 ]; then
    echo "== failures"
    printf '%b' "$failures"
    grep -h -E 'CHECK failed' "$OUT"/*.log 2>/dev/null | head -n 40
fi
echo "$total_passed passed, $total_failed failed"
[ "$total_failed" -eq 0 ]
