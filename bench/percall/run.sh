#!/usr/bin/env bash
# What one C API call costs, before and after the C ABI version 1 stopped running every
# call through the tokio runtime (issue 12). Builds bench/percall/percall.c against
# include/ and build/lib (make lib), runs it, and prints a Markdown table beside the
# figures of the pre-1.0 library kept in bench/results/percall-before.txt; the table also
# goes to bench/results/percall.md.
#
#   bench/percall/run.sh [EVENTS]
#   bench/percall/run.sh --before OLD_INCLUDE_DIR OLD_LIB_DIR [EVENTS]
#       measures a pre-1.0 library (a build of commit c5de31b, say) and rewrites
#       bench/results/percall-before.txt
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
cd "$root"
mkdir -p build/bench
before_file=bench/results/percall-before.txt

# The machine is shared: each figure is the least of three runs (each itself the best of
# several rounds).
measure() { # INCLUDE LIBDIR OUT EVENTS
  local inc=$1 lib=$2 out=$3 events=$4 data run
  cc -std=c99 -O2 -Wall -D_POSIX_C_SOURCE=200809L -I"$inc" bench/percall/percall.c \
    -L"$lib" -levstore -o "$out"
  for run in 1 2 3; do
    data=$(mktemp -d "$root/build/bench/percall-XXXXXX")
    LD_LIBRARY_PATH="$lib" "$out" "$data/s" "$events"
    rm -rf "$data"
  done | awk '!($1 in best) || $2 < best[$1] { best[$1] = $2; n[$1] = $3; if (!($1 in seen)) { seen[$1] = 1; order[++k] = $1 } }
              END { for (i = 1; i <= k; i++) print order[i], best[order[i]], n[order[i]] }'
}

if [ "${1:-}" = "--before" ]; then
  events=${4:-1000000}
  measure "$2" "$3" build/bench/percall-before "$events" > "$before_file"
  cat "$before_file"
  exit 0
fi
events=${1:-1000000}
measure include build/lib build/bench/percall "$events" > build/bench/percall.txt

{
  echo "| call | pre-1.0 (block_on per call) ns | 1.0 ns | saved ns | saved % |"
  echo "|---|---:|---:|---:|---:|"
  while read -r name ns _; do
    old=$(awk -v n="$name" '$1 == n { print $2 }' "$before_file" 2>/dev/null || true)
    if [ -n "$old" ]; then
      awk -v n="$name" -v o="$old" -v c="$ns" \
        'BEGIN { printf "| %s | %.1f | %.1f | %.1f | %.0f%% |\n", n, o, c, o - c, 100 * (o - c) / o }'
    else
      echo "| $name | - | $ns | - | - |"
    fi
  done < build/bench/percall.txt
  echo
  echo "Least of 3 runs of the best of 3 (cursor) or 5 (1M calls) rounds, $events events of"
  echo "100 bytes, EVS_FSYNC_OS,"
  echo "$(nproc) CPUs, $(uname -sr). evs_status_name does no work behind the boundary: the control."
} | tee bench/results/percall.md
