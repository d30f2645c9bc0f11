#!/usr/bin/env bash
# Builds and runs the side-by-side benchmark (issue 8): evstore vs SQLite vs the disk.
#   bench/run.sh [--quick] [--runs N] [--only 1,3,5]     (arguments go to the program)
# Needs build/lib/libevstore.so and include/evstore.h (make lib) and libsqlite3-dev.
# BENCH_NO_EVSTORE=1 builds and runs only the SQLite and disk halves.
# Stores are created in build/bench/data, on the repository's disk, and removed afterwards.
# The table goes to stdout and to bench/results/latest.md (--quick: quick.md, --only: partial.md).
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"

if [ ! -f /usr/include/sqlite3.h ] && ! echo '#include <sqlite3.h>' | cc -E -x c - >/dev/null 2>&1; then
  echo "bench/run.sh: sqlite3.h not found: install libsqlite3-dev" >&2
  exit 1
fi
mkdir -p build/bench
if [ "${BENCH_NO_EVSTORE:-0}" = 1 ]; then
  cc -O2 -Wall -DBENCH_NO_EVSTORE -Iinclude bench/*.c -lsqlite3 -lpthread -o build/bench/bench
else
  if [ ! -f include/evstore.h ] || [ ! -e build/lib/libevstore.so ]; then
    echo "bench/run.sh: include/evstore.h or build/lib/libevstore.so is missing: run 'make lib' first" >&2
    exit 1
  fi
  cc -O2 -Wall -Iinclude bench/*.c -Lbuild/lib -levstore -lsqlite3 -lpthread -o build/bench/bench
fi

data="$root/build/bench/data"
rm -rf "$data"
mkdir -p "$data"
trap 'rm -rf "$data"' EXIT
cd "$data"
LD_LIBRARY_PATH="$root/build/lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}" \
  "$root/build/bench/bench" --dir "$data" --results "$root/bench/results" "$@"
