#!/usr/bin/env bash
# The backup benchmark (issue 23): bench/backup/backup.c against build/lib (make lib).
#   bench/backup/run.sh [EVENTS]   (default 1000000)
# Stores go to build/bench/backup-data, on the repository's disk, removed afterwards.
# The table goes to stdout and to bench/results/backup-latest.md.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
cd "$root"
if [ ! -f include/evstore.h ] || [ ! -e build/lib/libevstore.so ]; then
  echo "bench/backup/run.sh: run 'make lib' first" >&2
  exit 1
fi
mkdir -p build/bench
cc -std=c11 -O2 -Wall -Wextra -Werror -Iinclude bench/backup/backup.c -Lbuild/lib -levstore -lpthread \
  -Wl,-rpath,"$root/build/lib" -o build/bench/backup
data="$root/build/bench/backup-data"
rm -rf "$data"
mkdir -p "$data"
trap 'rm -rf "$data"' EXIT
out=$(build/bench/backup "$data" "${1:-1000000}")
{
  echo "# Backup benchmark ($(date -u +%Y-%m-%d), $(nproc) cores, $(df -T "$data" | awk 'NR==2 {print $2}'))"
  echo
  echo "$out"
} | tee bench/results/backup-latest.md
