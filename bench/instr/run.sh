#!/usr/bin/env bash
# The instruction rows of `make bench` (issue 25): user-space instructions an event,
# counted with callgrind, of evstore's hot paths beside our minimal reader and appender of
# the same segment files (bench/minimal) and SQLite reading the same events, all built
# and counted in this run; and futex system calls per non-durable append (strace).
#
#   bench/instr/run.sh [EVENTS]       (default 200000; a multiple of 100)
#
# Needs build/lib/libevstore.so and include/evstore.h (make lib), valgrind (callgrind,
# valgrind/callgrind.h), strace, libsqlite3-dev. First the agreement checks (instr check):
# if the minimal programs and evstore do not read and write the same files byte for
# byte, nothing is counted and the script fails. Then each row's program runs under
# `valgrind --tool=callgrind --instr-atstart=no`: only its measured loop is instrumented
# (CALLGRIND_START/STOP_INSTRUMENTATION around it), setup is not counted; the figure is the
# calling thread's (--separate-threads=yes; other threads' instructions are listed apart).
# Beside the counts, each row's loop runs natively three times and the least CPU time of
# its thread is shown (that figure moves with the machine's load; the counts do not).
# The table goes to stdout and bench/results/instr-latest.md; the callgrind files stay in
# build/bench/instr/ for callgrind_annotate.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
cd "$root"
events=${1:-200000}

for tool in valgrind strace cc; do
  command -v "$tool" >/dev/null || { echo "bench/instr/run.sh: $tool not found" >&2; exit 1; }
done
if ! echo '#include <valgrind/callgrind.h>' | cc -E -x c - >/dev/null 2>&1; then
  echo "bench/instr/run.sh: valgrind/callgrind.h not found: install valgrind" >&2
  exit 1
fi
if ! echo '#include <sqlite3.h>' | cc -E -x c - >/dev/null 2>&1; then
  echo "bench/instr/run.sh: sqlite3.h not found: install libsqlite3-dev" >&2
  exit 1
fi
if [ ! -f include/evstore.h ] || [ ! -e build/lib/libevstore.so ]; then
  echo "bench/instr/run.sh: include/evstore.h or build/lib/libevstore.so is missing: run 'make lib' first" >&2
  exit 1
fi

out=build/bench/instr
data="$root/build/bench/instr-data"
rm -rf "$out" "$data"
mkdir -p "$out" "$data"
trap 'rm -rf "$data"' EXIT
# -O2 as bench/run.sh builds the side-by-side benchmark; the library is the release build.
cc -std=gnu11 -O2 -Wall -Wextra -Werror -Iinclude -Ibench/minimal bench/instr/*.c bench/minimal/*.c \
  -Lbuild/lib -levstore -lsqlite3 -lpthread -Wl,-rpath,"$root/build/lib" -o "$out/instr"

echo "== agreement: the minimal programs and evstore on the same files" >&2
"$out/instr" check "$data/check" | tee "$out/check.txt" >&2
rm -rf "$data/check"
echo "== setup: $events events into evstore, the same into SQLite" >&2
"$out/instr" prep "$data" "$events" >&2

# count MODE [ENV...]: the calling thread's instructions, and the other threads', of the
# measured loop of `instr MODE`.
count() {
  local mode=$1 name=$1 main others
  shift
  if [ $# -gt 0 ]; then name="$mode-$(echo "$*" | tr -c 'a-zA-Z0-9\n' '-')"; fi
  echo "   callgrind: $name" >&2
  env "$@" valgrind --tool=callgrind --instr-atstart=no --separate-threads=yes \
    --callgrind-out-file="$out/$name.out" "$out/instr" "$mode" "$data" "$events" \
    > "$out/$name.log" 2> "$out/$name.valgrind" ||
    { cat "$out/$name.log" "$out/$name.valgrind" >&2; echo "bench/instr/run.sh: $name failed" >&2; exit 1; }
  grep -q "^ok $mode $events events" "$out/$name.log" ||
    { cat "$out/$name.log" >&2; echo "bench/instr/run.sh: $name did not check out" >&2; exit 1; }
  main=$(awk '/^totals:/ { print $2 }' "$out/$name.out-01")
  others=$(cat "$out/$name.out"-* | awk '/^totals:/ { n++; if (n > 1) s += $2 } END { print s + 0 }')
  echo "$name $main $others" >> "$out/counts.txt"
}

echo "== callgrind, $events events a row" >&2
: > "$out/counts.txt"
for mode in evs-next evs-batch min-read sq-read sq-read-full evs-append1 evs-append100 \
            evs-append-event min-append1 min-append100 min-append-event; do
  count "$mode"
done
count min-read MIN_CRC=table

echo "== native: the calling thread's CPU time of each loop, least of 3 runs" >&2
for mode in evs-next evs-batch min-read sq-read evs-append1 min-append1 evs-append100 \
            min-append100 evs-append-event min-append-event; do
  best=""
  for run in 1 2 3; do
    ns=$("$out/instr" "$mode" "$data" "$events" | awk '/^cpu_ns_per_event / { print $2 }')
    best=$(awk -v a="$best" -v b="$ns" 'BEGIN { print (a == "" || b + 0 < a + 0) ? b : a }')
  done
  echo "cpu-$mode $best 0" >> "$out/counts.txt"
done

echo "== strace: futex calls of $events non-durable appends (EVS_FSYNC_BATCH, no waiter)" >&2
strace -f -qq -e trace=futex -o "$out/futex.strace" "$out/instr" evs-append1 "$data" "$events" > "$out/futex.log"
# Lines of finished calls (a call interrupted by a switch of threads is printed in two
# parts, "<unfinished ...>" and "<... futex resumed>": counted once). Each line starts
# with the thread id; the calling thread's is the process id.
futex_pid=$(awk '/^pid / { print $2 }' "$out/futex.log")
futex_all=$(grep -vc 'resumed>' "$out/futex.strace" || true)
futex_main=$(awk -v p="$futex_pid" '$1 == p && !/resumed>/' "$out/futex.strace" | wc -l)
echo "futex $futex_all $futex_main" >> "$out/counts.txt"

field() { awk -v k="$1" '$1 == k { sub(/^[^ ]+ /, ""); print; exit }' "$out/min-read.log"; }
awk -v n="$events" -v crc="$(field crc)" -v sqlite="$(field sqlite)" \
    -v libv="$(field evstore) (commit $(git -C "$root" rev-parse --short HEAD 2>/dev/null || echo unknown))" \
    -v machine="$(nproc) CPUs, $(uname -sr), $(awk -F': ' '/model name/ { print $2; exit }' /proc/cpuinfo)" \
    -f bench/instr/table.awk "$out/counts.txt" | tee bench/results/instr-latest.md
