#!/bin/sh
# The reliability suite: crashes, power loss, full disks, bad input, fuzzing, stress.
#
#   tests/reliability/run.sh --quick     (make test; about 30 s)
#   tests/reliability/run.sh --full      (make stress; about 8 minutes on 2 cores)
#
# Needs `make lib` first (include/evstore.h, build/lib/libevstore.so), a C compiler,
# cargo, and valgrind (EVS_NO_VALGRIND=1 runs bad_input natively only). Mounting tmpfs
# for the full-disk test needs root; without it that part is skipped with a reason.
#
#                       --quick      --full        environment override
#   kills (crash.c)     20           500           EVS_REL_KILLS
#   power-loss images   300          5,000         EVS_POWER_LOSS_IMAGES
#   fuzz cases/decoder  2,000        1,000,000     EVS_FUZZ_CASES (per property)
#   fuzz directories    150          20,000        EVS_FUZZ_RECOVERY_CASES
#   forged snapshots    20           2,000         EVS_FUZZ_FORGED_CASES
#   stress seconds      3 (x2)       60 (x2)       EVS_REL_STRESS_SECONDS
# (stress runs once under EVS_FSYNC_ALWAYS and once under EVS_FSYNC_BATCH.)
# EVS_REL_SEED fixes the crash test's seed; EVS_REL_RANDOM=1 draws new fuzz and power-loss
# cases (the default of --full; --quick draws the same ones every run);
# EVS_TEST_KEEP=1 keeps temporary stores.
#
# Prints every program's output, then the figures (kills survived, images recovered,
# cases fuzzed, bad inputs tried, events lost) and a last line `N passed, N failed`
# counting tests: the sum of the C programs' lines (tests/c/test_util.h counts tests, not
# checks) and of the cargo tests'; a program that fails to build, crashes, times out or
# reports a valgrind error counts one more failure. Exits non-zero if anything failed.

cd "$(dirname "$0")/../.." || exit 2

MODE=quick
case "${1:-}" in
--quick | "") MODE=quick ;;
--full) MODE=full ;;
*)
    echo "usage: $0 --quick|--full"
    exit 2
    ;;
esac

if [ "$MODE" = quick ]; then
    KILLS=${EVS_REL_KILLS:-20}
    IMAGES=${EVS_POWER_LOSS_IMAGES:-300}
    FUZZ=${EVS_FUZZ_CASES:-2000}
    FUZZ_DIRS=${EVS_FUZZ_RECOVERY_CASES:-150}
    FORGED=${EVS_FUZZ_FORGED_CASES:-20}
    STRESS=${EVS_REL_STRESS_SECONDS:-3}
    LIMIT=600
else
    KILLS=${EVS_REL_KILLS:-500}
    IMAGES=${EVS_POWER_LOSS_IMAGES:-5000}
    FUZZ=${EVS_FUZZ_CASES:-1000000}
    FUZZ_DIRS=${EVS_FUZZ_RECOVERY_CASES:-20000}
    FORGED=${EVS_FUZZ_FORGED_CASES:-2000}
    STRESS=${EVS_REL_STRESS_SECONDS:-60}
    LIMIT=7200
    # new random cases each full run (the quick run draws the same ones every time)
    EVS_REL_RANDOM=${EVS_REL_RANDOM:-1}
    export EVS_REL_RANDOM
fi

CC=${CC:-cc}
CARGO=${CARGO:-cargo}
OUT=${EVS_REL_OUT:-build/tests/reliability}
LIBDIR=build/lib
CFLAGS="-std=c99 -Wall -Wextra -Wpedantic -Werror -D_POSIX_C_SOURCE=200809L -g -O1 -Iinclude"
LIBS="-L$LIBDIR -levstore -lpthread"
VALGRIND="valgrind --error-exitcode=99 --leak-check=full --errors-for-leak-kinds=definite --show-leak-kinds=definite --quiet"

export EVS_POWER_LOSS_IMAGES="$IMAGES" EVS_FUZZ_CASES="$FUZZ" EVS_FUZZ_RECOVERY_CASES="$FUZZ_DIRS"
export EVS_FUZZ_FORGED_CASES="$FORGED" RUST_BACKTRACE=0
export LD_LIBRARY_PATH="$LIBDIR${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"

total_passed=0
total_failed=0
started=$(date +%s)

fail() {
    echo "FAILED: $*"
    total_failed=$((total_failed + 1))
}

if [ ! -f include/evstore.h ] || [ ! -f "$LIBDIR/libevstore.so" ]; then
    echo "include/evstore.h and $LIBDIR/libevstore.so are needed: run 'make lib' first"
    echo "0 passed, 1 failed"
    exit 1
fi
mkdir -p "$OUT" || exit 2
: >"$OUT/figures"

if [ "${EVS_NO_VALGRIND:-0}" != "1" ] && ! command -v valgrind >/dev/null 2>&1; then
    echo "valgrind is not installed (set EVS_NO_VALGRIND=1 to run bad_input natively only)"
    echo "0 passed, 1 failed"
    exit 1
fi

# with a time limit when `timeout` exists
limited() {
    if command -v timeout >/dev/null 2>&1; then
        timeout -k 10 "$LIMIT" "$@"
    else
        "$@"
    fi
}

build() {
    name=$1
    echo "== build $name"
    # shellcheck disable=SC2086
    if ! $CC $CFLAGS -o "$OUT/$name" "tests/reliability/$name.c" $LIBS; then
        fail "build $name"
        return 1
    fi
    return 0
}

# collect LOG: FIGURE lines into the figures file
collect() {
    grep -E '^FIGURE [a-z_]+ [0-9]+$' "$1" | sed 's/^FIGURE //' >>"$OUT/figures"
}

# run LABEL CMD...: a C program; adds its `N passed, N failed` line
run() {
    label=$1
    shift
    log="$OUT/$label.log"
    echo "== run $label"
    t0=$(date +%s)
    limited "$@" >"$log" 2>&1
    rc=$?
    t1=$(date +%s)
    cat "$log"
    collect "$log"
    line=$(grep -E '^[0-9]+ passed, [0-9]+ failed$' "$log" | tail -n 1)
    if [ -z "$line" ]; then
        fail "$label: no summary line (exit status $rc)"
    else
        p=${line%% passed*}
        f=${line#*passed, }
        f=${f%% failed}
        total_passed=$((total_passed + p))
        total_failed=$((total_failed + f))
        if [ "$rc" -ne 0 ] && [ "$f" -eq 0 ]; then
            case $rc in
            99) fail "$label: valgrind reported errors" ;;
            124 | 137) fail "$label: timed out after $LIMIT s" ;;
            *) fail "$label: exit status $rc" ;;
            esac
        fi
    fi
    echo "   ($label: exit status $rc, $((t1 - t0)) s)"
}

# cargo_run LABEL TEST: a Rust integration test target; adds its `test result` counts
cargo_run() {
    label=$1
    target=$2
    log="$OUT/$label.log"
    echo "== cargo test --release --test $target"
    t0=$(date +%s)
    limited "$CARGO" test --release --test "$target" -- --nocapture >"$log" 2>&1
    rc=$?
    t1=$(date +%s)
    grep -vE '^\s+(at |[0-9]+: )|^stack backtrace:|^note: Some details' "$log"
    collect "$log"
    line=$(grep -E '^test result: ' "$log" | tail -n 1)
    if [ -z "$line" ]; then
        fail "$label: cargo test did not run (exit status $rc; see $log)"
    else
        p=$(echo "$line" | sed -E 's/.* ([0-9]+) passed.*/\1/')
        f=$(echo "$line" | sed -E 's/.* ([0-9]+) failed.*/\1/')
        total_passed=$((total_passed + p))
        total_failed=$((total_failed + f))
        if [ "$rc" -ne 0 ] && [ "$f" -eq 0 ]; then
            fail "$label: exit status $rc"
        fi
    fi
    echo "   ($label: exit status $rc, $((t1 - t0)) s)"
}

echo "reliability suite, $MODE: $KILLS kills, $IMAGES power-loss images, $FUZZ fuzz cases per decoder property, $FUZZ_DIRS + $FORGED fuzzed directories, ${STRESS} s stress per policy"

for prog in crash bad_input full_disk stress; do
    build "$prog"
done

# 1. crashes
if [ -x "$OUT/crash" ]; then
    run crash "$OUT/crash" "$KILLS" ${EVS_REL_SEED:+"$EVS_REL_SEED"}
fi

# 2. power loss
cargo_run power_loss power_loss

# 3. full disk and other refusals of the OS
if [ -x "$OUT/full_disk" ]; then
    run full_disk "$OUT/full_disk"
fi

# 4. bad input, natively and under valgrind
if [ -x "$OUT/bad_input" ]; then
    run bad_input "$OUT/bad_input"
    if [ "${EVS_NO_VALGRIND:-0}" = "1" ]; then
        echo "note: EVS_NO_VALGRIND=1, bad_input not run under valgrind"
    else
        # shellcheck disable=SC2086
        run bad_input-valgrind $VALGRIND "$OUT/bad_input"
    fi
fi

# 5. fuzzing
cargo_run fuzz fuzz

# 6. stress
if [ -x "$OUT/stress" ]; then
    run stress-always "$OUT/stress" "$STRESS" always
    run stress-batch "$OUT/stress" "$STRESS" batch
fi

# The figures.
fig() {
    # sum of the values of a figure (0 when absent)
    awk -v n="$1" '$1 == n { s += $2 } END { print s + 0 }' "$OUT/figures"
}
figmax() {
    awk -v n="$1" '$1 == n && $2 > m { m = $2 } END { print m + 0 }' "$OUT/figures"
}
kills=$(fig kills)
survived=$(fig kills_survived)
lost=$(fig crash_events_lost)
images=$(fig power_loss_images)
recovered=$(fig power_loss_images_recovered)
record=$(($(fig fuzz_record_arbitrary) + $(fig fuzz_record_mutated) + $(fig fuzz_record_valid)))
envelope=$(($(fig fuzz_envelope_arbitrary) + $(fig fuzz_envelope_binary) + $(fig fuzz_envelope_legacy) + $(fig fuzz_envelope_legacy_valid)))
dirs=$(($(fig fuzz_recovery) + $(fig fuzz_recovery_forged)))
dirs_failed=$(($(fig fuzz_recovery_failed) + $(fig fuzz_recovery_forged_failed)))
skipped=$(fig skipped)
ended=$(date +%s)

echo
echo "== figures ($MODE run, $((ended - started)) s)"
echo "kills survived:            $survived of $kills ($(fig kills_batch) under EVS_FSYNC_BATCH; $(fig crash_events_acknowledged) events acknowledged)"
echo "power-loss images:         $recovered of $images recovered as required"
echo "cases fuzzed:              $record record decoder, $envelope envelope decoder, $dirs directories ($dirs_failed failed) (a decoder property's count is shown only when it passed)"
echo "bad inputs tried:          $(figmax bad_inputs) (each run natively and under valgrind)"
echo "full disk:                 $(fig full_disk_failures_seen) appends met a full disk; $skipped parts skipped"
echo "stress:                    $(fig stress_events) events in $(fig stress_seconds) s, $(fig stress_delivered) delivered to subscribers, $(fig stress_violations) violations seen"
echo "events lost:               $lost"
if [ "$skipped" -gt 0 ]; then
    echo "$skipped skipped (see the SKIP lines above)"
fi
echo "$total_passed passed, $total_failed failed"
[ "$total_failed" -eq 0 ]
