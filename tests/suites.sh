#!/usr/bin/env bash
# `make test`'s driver: builds once, then runs every suite, some at the same time, and
# ends with a table (suite, result, seconds, tests) and the line `total: N passed, N failed`.
#
#   tests/suites.sh [SUITE...]      (default: every suite; `make test` runs it after
#                                   tools/setup.sh has checked the machine)
#
# Each suite is a `make test-NAME` target, run with PREBUILT=1 (it uses the library,
# evsctl, the demo and the installed copy that the build step made, and rebuilds none of
# them, so that suites running at the same time never replace files another one uses).
# A suite's output goes to build/test-logs/NAME.log; its name is printed when it starts,
# its result, time and test count when it ends, the end of its log when it fails, and
# every minute the suites still running. All suites run even when one fails; the exit
# status is non-zero when any failed.
#
# Tests are counted per suite from its own summary: cargo's `test result:` lines (Rust),
# GoogleTest's `[  PASSED  ]`/`[  FAILED  ]` (C++), go test -v's top-level `--- PASS`/
# `--- FAIL` lines (Go, plain and under -race), and otherwise the suite's last
# `N passed, N failed` line (the C programs count test functions per section, not
# checks: tests/c/test_util.h).
#
# Environment: EVS_SUITE_SLOTS, how many suites may run at once (default 3; 1 runs them
# one after another, in the order below).
set -u
cd "$(dirname "$0")/.." || exit 2

LOGS=build/test-logs
mkdir -p "$LOGS" || exit 2
MAKE=${MAKE:-make}
SLOTS=${EVS_SUITE_SLOTS:-3}

# name:cost[:after]. The order is the start order: the longest first. A suite starts when
# the ones running leave room for its cost (at most SLOTS at once, their costs adding up
# to at most 3, one more than the cores) and the suite it comes after has ended. Cost 2
# marks what keeps both cores busy for minutes: compiling the Rust tests (rust-build,
# which rust and reliability, running Rust tests, wait for); the rest use one core or
# mostly wait (valgrind's single thread, PostgreSQL servers, sleeps, fsyncs; Go compiles,
# but briefly).
ALL="rust-build:2 c:1 rust:1:rust-build go:1 c-pg:1 reliability:1:rust-build bench-build:1:rust-build cpp:1
     evsctl:1 go-consumer:1 cmake-consumer:1 swift-modulemap:1 pkgconfig:1 examples:1 readme:1 setup:1"
BUDGET=3

want=("$@")
selected() {
    [ ${#want[@]} -eq 0 ] && return 0
    local w
    for w in "${want[@]}"; do [ "$w" = "$1" ] && return 0; done
    return 1
}

now() { date +%s; }
t_start=$(now)
names=()
declare -A result=() seconds=() tests=() started=() pid_of=() cost=() after=()

# count NAME: the tests a finished suite's log reports, as "passed failed" ("" if none).
count() {
    local log=$LOGS/$1.log
    case $1 in
    rust)
        awk '/^test result: / {
                for (i = 1; i <= NF; i++) { if ($(i+1) ~ /^passed;?/) p += $i; if ($(i+1) ~ /^failed;?/) f += $i }
                seen = 1 }
             END { if (seen) print p + 0, f + 0 }' "$log"
        ;;
    cpp)
        awk '/^\[  PASSED  \] [0-9]+ test/ { p = $4; seen = 1 }
             /^\[  FAILED  \] [0-9]+ test/ { f = $4; seen = 1 }
             END { if (seen) print p + 0, f + 0 }' "$log"
        ;;
    go)
        awk '/^--- PASS: / { p++ } /^--- FAIL: / { f++ } /^(ok|FAIL|---) / { seen = 1 }
             END { if (seen) print p + 0, f + 0 }' "$log"
        ;;
    *)
        grep -oE '[0-9]+ passed, [0-9]+ failed' "$log" | tail -n 1 | awk '{ print $1, $3 }'
        ;;
    esac
}

start() {
    local name=$1
    names+=("$name")
    echo "== $name: started ($LOGS/$name.log)"
    started[$name]=$(now)
    "$MAKE" --no-print-directory "test-$name" PREBUILT=1 > "$LOGS/$name.log" 2>&1 &
    pid_of[$name]=$!
}

finish() { # finish NAME STATUS
    local name=$1 status=$2 c p f
    seconds[$name]=$(($(now) - ${started[$name]}))
    c=$(count "$name")
    p=${c% *}
    f=${c#* }
    if [ -z "$c" ]; then
        tests[$name]="-"
    else
        tests[$name]=$((p + f))
    fi
    if [ "$status" = 0 ] && { [ -z "$c" ] || [ "$f" = 0 ]; }; then
        result[$name]=passed
        echo "== $name: passed in ${seconds[$name]} s (${tests[$name]} tests)"
    else
        result[$name]=FAILED
        echo "== $name: FAILED in ${seconds[$name]} s (exit status $status; ${f:-?} failed of ${tests[$name]} tests); the end of $LOGS/$name.log:"
        tail -n 40 "$LOGS/$name.log" | sed 's/^/   | /'
    fi
    unset "pid_of[$name]"
}

# The build: the library, evsctl, the demo program and the installed copy, once.
echo "== build: started ($LOGS/build.log)"
t0=$(now)
if ! "$MAKE" --no-print-directory test-build > "$LOGS/build.log" 2>&1; then
    echo "== build: FAILED in $(($(now) - t0)) s; the end of $LOGS/build.log:"
    tail -n 40 "$LOGS/build.log" | sed 's/^/   | /'
    echo "total: 0 passed, 1 failed"
    exit 1
fi
build_s=$(($(now) - t0))
echo "== build: done in $build_s s"

queue=()
for entry in $ALL; do
    IFS=: read -r name c a <<< "$entry"
    cost[$name]=$c
    after[$name]=${a:-}
    selected "$name" && queue+=("$name")
done
for w in "${want[@]}"; do
    [ -n "${cost[$w]:-}" ] || { echo "tests/suites.sh: no suite '$w' (suites: $ALL)"; exit 2; }
done

# Start suites while the running ones leave room (see ALL).
running_cost() {
    local n c=0
    for n in "${!pid_of[@]}"; do c=$((c + cost[$n])); done
    echo "$c"
}
last_note=$(now)
while [ ${#queue[@]} -gt 0 ] || [ ${#pid_of[@]} -gt 0 ]; do
    while [ ${#queue[@]} -gt 0 ] && [ ${#pid_of[@]} -lt "$SLOTS" ]; do
        # the first waiting suite that fits and whose predecessor (if selected) has ended
        pick=-1
        for i in "${!queue[@]}"; do
            n=${queue[$i]}
            a=${after[$n]}
            if [ -n "$a" ] && selected "$a" && [ -z "${result[$a]:-}" ]; then
                continue
            fi
            if [ ${#pid_of[@]} -eq 0 ] || [ $(( $(running_cost) + cost[$n] )) -le "$BUDGET" ]; then
                pick=$i
                break
            fi
        done
        if [ "$pick" -lt 0 ]; then
            [ ${#pid_of[@]} -gt 0 ] && break
            echo "tests/suites.sh: nothing can start (${queue[*]} wait for suites that never ran)"
            exit 2
        fi
        start "${queue[$pick]}"
        unset "queue[$pick]"
        queue=("${queue[@]}")
    done
    # wait for the next suite to end (checking every second; a note every minute)
    ended=""
    while [ -z "$ended" ]; do
        for n in "${!pid_of[@]}"; do
            if ! kill -0 "${pid_of[$n]}" 2>/dev/null; then
                ended=$n
                break
            fi
        done
        [ -n "$ended" ] && break
        sleep 1
        if [ $(($(now) - last_note)) -ge 60 ]; then
            last_note=$(now)
            line=""
            for n in "${!pid_of[@]}"; do line="$line $n ($(($(now) - ${started[$n]})) s)"; done
            echo "   ... running:$line"
        fi
    done
    wait "${pid_of[$ended]}"
    finish "$ended" $?
done

if [ ${#names[@]} -eq 0 ] || [ ${#queue[@]} -gt 0 ]; then
    echo "tests/suites.sh: the suites did not run (a bug of this script)"
    echo "total: 0 passed, 1 failed"
    exit 1
fi

# The table, in the order the suites started.
total_p=0
total_f=0
failed_suites=0
echo
printf '%-16s %-7s %8s %7s\n' suite result seconds tests
printf '%-16s %-7s %8s %7s\n' build done "$build_s" -
for n in "${names[@]}"; do
    printf '%-16s %-7s %8s %7s\n' "$n" "${result[$n]}" "${seconds[$n]}" "${tests[$n]}"
    c=$(count "$n")
    if [ -n "$c" ]; then
        total_p=$((total_p + ${c% *}))
        total_f=$((total_f + ${c#* }))
    fi
    if [ "${result[$n]}" != passed ]; then
        failed_suites=$((failed_suites + 1))
        # a suite that failed without a failed test (it crashed, did not build) counts one
        [ -z "$c" ] || [ "${c#* }" = 0 ] && total_f=$((total_f + 1))
    fi
done
elapsed=$(($(now) - t_start))
printf '%-16s %-7s %8s %7s\n' "all ($(nproc 2>/dev/null || echo ?) cores)" \
    "$([ "$failed_suites" = 0 ] && echo passed || echo FAILED)" "$elapsed" $((total_p + total_f))
echo "make test: $((elapsed / 60)) min $((elapsed % 60)) s; $failed_suites of ${#names[@]} suites failed; logs in $LOGS/"
echo "total: $total_p passed, $total_f failed"
[ "$failed_suites" = 0 ]
