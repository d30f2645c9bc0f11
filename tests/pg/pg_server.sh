#!/usr/bin/env bash
# A throwaway PostgreSQL server for evstore's tests and benchmarks.
#
#   tests/pg/pg_server.sh start          starts one; prints its URL (one line on stdout)
#   tests/pg/pg_server.sh stop URL|DIR   stops that server and removes its folder
#   tests/pg/pg_server.sh run CMD ARGS   starts one, runs CMD with EVS_PG_URL and EVS_PG_DIR
#                                        set, stops it; exits with CMD's status
#
# `start` runs initdb into a fresh folder under /tmp (or $EVS_PG_TMP), as the `postgres`
# OS user when run as root (PostgreSQL refuses to run as root), picks a free port on
# 127.0.0.1, puts the Unix socket in that folder and starts the server with durable
# settings (fsync, synchronous_commit, full_page_writes on). The URL it prints is
#   postgresql://postgres@127.0.0.1:PORT/postgres
# (trust authentication, local connections only). The folder holds data/, server.log,
# the socket, and `url`; its path goes to stderr as `EVS_PG_DIR=...`.
#
# A server that cannot be started is an error (exit status 1, the server log on stderr),
# never a skip. Environment:
#   EVS_PG_BIN   the folder of initdb/pg_ctl/postgres (default: the newest
#                /usr/lib/postgresql/*/bin, else the folder of `pg_ctl` on PATH)
#   EVS_PG_TMP   where the server folders go (default /tmp; must be reachable by `postgres`)
#   EVS_PG_USER  the OS user that runs the server when run as root (default postgres)
#   EVS_PG_CONF  extra postgresql.conf lines (e.g. "shared_buffers = 256MB")

set -euo pipefail

die() { echo "pg_server.sh: $*" >&2; exit 1; }

find_bin() {
  if [ -n "${EVS_PG_BIN:-}" ]; then
    [ -x "$EVS_PG_BIN/pg_ctl" ] || die "EVS_PG_BIN=$EVS_PG_BIN has no pg_ctl"
    echo "$EVS_PG_BIN"; return
  fi
  local d best
  # The glob sorts 10 before 9: pick the highest major version by number.
  best=$(for d in /usr/lib/postgresql/*/bin; do [ -x "$d/pg_ctl" ] && echo "$d"; done \
         | sort -t/ -k5,5n | tail -n 1)
  if [ -z "$best" ] && command -v pg_ctl >/dev/null 2>&1; then
    best=$(dirname "$(command -v pg_ctl)")
  fi
  [ -n "$best" ] || die "no PostgreSQL server found (install the postgresql package, or set EVS_PG_BIN)"
  echo "$best"
}

# Runs a command as the server's OS user (root cannot run PostgreSQL).
as_pg() {
  if [ "$(id -u)" = 0 ]; then
    runuser -u "$PG_USER" -- "$@"
  else
    "$@"
  fi
}

cmd_start() {
  local bin tmp dir port log tries
  bin=$(find_bin)
  tmp=${EVS_PG_TMP:-/tmp}
  PG_USER=${EVS_PG_USER:-postgres}
  if [ "$(id -u)" = 0 ]; then
    id "$PG_USER" >/dev/null 2>&1 || die "running as root but there is no '$PG_USER' OS user to run the server"
  fi
  dir=$(mktemp -d "$tmp/evstore-pg.XXXXXXXX")
  chmod 0700 "$dir"
  if [ "$(id -u)" = 0 ]; then
    chown "$PG_USER" "$dir"
  fi
  log=$dir/server.log
  # initdb need not sync its own files: a crash during initdb only loses this throwaway
  # cluster. The server itself runs with every durability setting on (below).
  if ! as_pg "$bin/initdb" -D "$dir/data" -U postgres -A trust -E UTF8 --locale=C.UTF-8 \
        --no-sync >"$dir/initdb.log" 2>&1; then
    cat "$dir/initdb.log" >&2
    rm -rf "$dir"
    die "initdb failed"
  fi
  {
    echo "# evstore test server"
    echo "listen_addresses = '127.0.0.1'"
    echo "unix_socket_directories = '$dir'"
    echo "fsync = on"
    echo "synchronous_commit = on"
    echo "full_page_writes = on"
    echo "max_connections = 200"
    echo "wal_level = replica"
    echo "max_wal_senders = 4"
    echo "log_min_messages = warning"
    if [ -n "${EVS_PG_CONF:-}" ]; then printf '%s\n' "$EVS_PG_CONF"; fi
  } | as_pg tee -a "$dir/data/postgresql.conf" >/dev/null
  # Free port: try random ones; the server itself says whether the port was free, so
  # there is no window between checking and binding.
  for tries in 1 2 3 4 5 6 7 8 9 10; do
    port=$(( 20000 + (RANDOM * 32768 + RANDOM) % 40000 ))
    if as_pg "$bin/pg_ctl" -D "$dir/data" -l "$log" -w -t 60 -o "-p $port" start >/dev/null 2>&1; then
      echo "$port" > "$dir/port"
      echo "postgresql://postgres@127.0.0.1:$port/postgres" > "$dir/url"
      echo "EVS_PG_DIR=$dir" >&2
      cat "$dir/url"
      return 0
    fi
    if grep -q -e "could not bind" -e "Address already in use" -e "could not create lock file" "$log" 2>/dev/null; then
      as_pg "$bin/pg_ctl" -D "$dir/data" -m immediate stop >/dev/null 2>&1 || true
      : > "$log"
      continue
    fi
    break
  done
  echo "pg_server.sh: the server did not start; its log:" >&2
  cat "$log" >&2 2>/dev/null || true
  as_pg "$bin/pg_ctl" -D "$dir/data" -m immediate stop >/dev/null 2>&1 || true
  rm -rf "$dir"
  exit 1
}

# Finds the folder of a server from its folder or its URL (by port).
resolve_dir() {
  local arg=$1 port f
  if [ -d "$arg" ] && [ -f "$arg/port" ]; then echo "$arg"; return; fi
  port=$(printf '%s' "$arg" | sed -n 's|.*:\([0-9][0-9]*\)/.*|\1|p')
  [ -n "$port" ] || die "stop: '$arg' is neither a server folder nor a URL with a port"
  for f in "${EVS_PG_TMP:-/tmp}"/evstore-pg.*/port; do
    [ -f "$f" ] && [ "$(cat "$f")" = "$port" ] && { dirname "$f"; return; }
  done
  die "stop: no server folder for port $port under ${EVS_PG_TMP:-/tmp}"
}

cmd_stop() {
  [ $# -ge 1 ] || die "usage: pg_server.sh stop URL|DIR"
  local dir bin
  dir=$(resolve_dir "$1")
  bin=$(find_bin)
  PG_USER=${EVS_PG_USER:-postgres}
  if [ -f "$dir/data/postmaster.pid" ]; then
    as_pg "$bin/pg_ctl" -D "$dir/data" -m fast -w -t 30 stop >/dev/null 2>&1 \
      || as_pg "$bin/pg_ctl" -D "$dir/data" -m immediate -w -t 30 stop >/dev/null 2>&1 \
      || die "stop: the server in $dir does not stop"
  fi
  case "$dir" in
    */evstore-pg.*) rm -rf "$dir" ;;
    *) die "stop: refusing to remove '$dir' (not a pg_server.sh folder)" ;;
  esac
}

cmd_run() {
  [ $# -ge 1 ] || die "usage: pg_server.sh run CMD [ARGS...]"
  local url status
  url=$(cmd_start 2>"${TMPDIR:-/tmp}/.evs-pg-start.$$") || { cat "${TMPDIR:-/tmp}/.evs-pg-start.$$" >&2; rm -f "${TMPDIR:-/tmp}/.evs-pg-start.$$"; exit 1; }
  RUN_DIR=$(sed -n 's/^EVS_PG_DIR=//p' "${TMPDIR:-/tmp}/.evs-pg-start.$$")
  rm -f "${TMPDIR:-/tmp}/.evs-pg-start.$$"
  # Stop the server whatever happens to the command (also on Ctrl-C or a kill).
  trap 'trap - INT TERM; cmd_stop "$RUN_DIR"; exit 130' INT TERM
  set +e
  EVS_PG_URL=$url EVS_PG_DIR=$RUN_DIR "$@"
  status=$?
  set -e
  trap - INT TERM
  cmd_stop "$RUN_DIR"
  exit "$status"
}

case "${1:-}" in
  start) shift; cmd_start "$@" ;;
  stop) shift; cmd_stop "$@" ;;
  run) shift; cmd_run "$@" ;;
  *) echo "usage: $0 start | stop URL|DIR | run CMD [ARGS...]" >&2; exit 2 ;;
esac
