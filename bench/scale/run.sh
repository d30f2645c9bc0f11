#!/usr/bin/env bash
# The scale benchmark (issue 13, `make bench-scale`; not part of `make test` or `make bench`).
# Builds a store of SCALE_EVENTS events (default 100,000,000) over SCALE_STREAMS streams
# (default 1,000,000), 100-byte payloads, through the C API (evs_append, EVS_FSYNC_BATCH);
# then, each in a fresh process: opens it after the clean close and reads; appends
# SCALE_KILL_EVENTS more (default 1,000,000) and SIGKILLs itself; opens it again and reads.
# The store goes in SCALE_DIR (default: a new directory under ${TMPDIR:-/tmp}), never in
# the repository, and is deleted at the end. It refuses to start with less free disk than
# 400 bytes an event (40 GB for the full size).
# Results: stdout and bench/results/scale-latest.md (machine and date included).
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
cd "$root"

events="${SCALE_EVENTS:-100000000}"
streams="${SCALE_STREAMS:-1000000}"
kill_events="${SCALE_KILL_EVENTS:-1000000}"
parent="${SCALE_DIR:-${TMPDIR:-/tmp}}"
mkdir -p "$parent"
need_kb=$(( events * 400 / 1024 ))
free_kb=$(df -Pk "$parent" | awk 'NR==2 {print $4}')
if [ "$free_kb" -lt "$need_kb" ]; then
  echo "bench-scale: $parent has $((free_kb / 1048576)) GiB free; $events events need $((need_kb / 1048576)) GiB: refusing" >&2
  exit 1
fi
if [ ! -f include/evstore.h ] || [ ! -e build/lib/libevstore.so ]; then
  echo "bench-scale: include/evstore.h or build/lib/libevstore.so is missing: run 'make lib' first" >&2
  exit 1
fi
version="$(git describe --always --dirty 2>/dev/null || echo unknown)"
mkdir -p build/bench
cc -O2 -Wall -Iinclude bench/scale/scale.c -Lbuild/lib -levstore -o build/bench/scale

work="$(mktemp -d "$parent/evstore-bench-scale.XXXXXX")"
trap 'rm -rf "$work"' EXIT
store="$work/store"
out="$work/results.txt"
run() { LD_LIBRARY_PATH="$root/build/lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}" "$root/build/bench/scale" "$@"; }

echo "bench-scale: building $events events over $streams streams in $store" >&2
run build "$store" "$events" "$streams" | tee -a "$out"
du_events=$(du -sb "$store/events" | cut -f1)
du_index=$(du -sb "$store/index" 2>/dev/null | cut -f1 || echo 0)
du_snap=$(du -sb "$store/snapshots" 2>/dev/null | cut -f1 || echo 0)
echo "RESULT log_bytes_per_event $(( du_events / events ))" | tee -a "$out"
echo "RESULT index_file_bytes_per_event $(( du_index / events ))" | tee -a "$out"
echo "RESULT snapshot_bytes $du_snap" | tee -a "$out"
# The page cache holds much of the store now; the opens below are warm-cache figures.
run open "$store" "$streams" clean | tee -a "$out"
set +e
run kill "$store" "$streams" "$kill_events"
status=$?
set -e
if [ "$status" -ne 137 ]; then
  echo "bench-scale: the kill step ended with status $status instead of SIGKILL" >&2
  exit 1
fi
run open "$store" "$streams" sigkill | tee -a "$out"

val() { awk -v k="$1" '$1 == "RESULT" && $2 == k {print $3}' "$out"; }
mib() { awk -v kb="$1" 'BEGIN {printf "%.0f MiB", kb / 1024}'; }
rate_rows=""
for m in 1000000 10000000 100000000; do
  r=$(val "append_rate_at_$m")
  [ -n "$r" ] && rate_rows+="| append rate, the million events before $m | $r events/s |"$'\n'
done
r1=$(val append_rate_at_1000000)
r10=$(val append_rate_at_10000000)
ratio=""
if [ -n "$r1" ] && [ -n "$r10" ]; then
  ratio=$(awk -v a="$r10" -v b="$r1" 'BEGIN {printf "%.2f", a / b}')
fi
mkdir -p bench/results
{
  echo "# bench-scale: $events events, $streams streams, 100-byte payloads"
  echo
  echo "Date: $(date -u '+%Y-%m-%d %H:%M UTC'). Machine: $(uname -srm), $(nproc) cores, $(awk -F': ' '/model name/ {print $2; exit}' /proc/cpuinfo), $(awk '/MemTotal/ {printf "%.0f GiB", $2 / 1048576}' /proc/meminfo) RAM. evstore $version (at the start of the run)."
  echo "Appends one event per evs_append under EVS_FSYNC_BATCH (5 ms), one thread; stream of each event pseudo-random."
  echo "Opens and reads in fresh processes, with whatever the page cache holds after the build (warm)."
  echo
  echo "| figure | value |"
  echo "|---|---|"
  printf "%s" "$rate_rows"
  [ -n "$ratio" ] && echo "| append rate at 10M / at 1M | $ratio |"
  echo "| build time | $(val build_seconds) s (close $(val close_seconds) s), peak RSS $(mib "$(val build_peak_rss_kb)") |"
  echo "| log on disk | $(val log_bytes_per_event) bytes an event |"
  echo "| index files on disk | $(val index_file_bytes_per_event) bytes an event; snapshots $(( $(val snapshot_bytes) / 1048576 )) MiB |"
  echo "| open after clean close | $(val open_ms_clean) ms ($(val open_records_replayed_clean) records replayed) |"
  echo "| RSS after open | $(mib "$(val rss_after_open_kb_clean)") |"
  echo "| RSS after reading 1,000 random streams | $(mib "$(val rss_after_1000_streams_kb_clean)") (peak $(mib "$(val peak_rss_kb_clean)")) |"
  echo "| one whole stream ($(val stream_read_mean_events_clean) events), mean of 1,000 random | $(val stream_read_us_clean) us |"
  echo "| last 10 events of a stream, mean of 1,000 random | $(val last10_us_clean) us |"
  echo "| open after SIGKILL, $kill_events events after the clean close | $(val open_ms_sigkill) ms ($(val open_records_replayed_sigkill) records replayed) |"
  echo "| RSS after that open / after reading 1,000 streams | $(mib "$(val rss_after_open_kb_sigkill)") / $(mib "$(val rss_after_1000_streams_kb_sigkill)") |"
  echo "| one whole stream / last 10, after SIGKILL open | $(val stream_read_us_sigkill) us / $(val last10_us_sigkill) us |"
} > bench/results/scale-latest.md
cat bench/results/scale-latest.md
