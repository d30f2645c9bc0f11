#!/usr/bin/env bash
# What `make demo` and `make test` need on a fresh machine, checked before anything runs.
#
#   tools/setup.sh demo       cargo (Rust 1.88 or later) and a C compiler
#   tools/setup.sh test       all that the test suites use (below)
#   tools/setup.sh --check test   only check: never install
#
# Run as root, it installs what is missing from Debian's packages (`apt-get update`, then
# one `apt-get install`) and checks again. Run as another user, or with --check, it prints
# ONE line naming what is missing (the apt package names, and what apt cannot give) and
# exits 2, having changed nothing. Prints nothing when all is there.
#
# What `test` needs, and the Debian package of each:
#   cargo, Rust >= 1.88   (not from apt: Debian 12's Rust is older; rustup)
#   cc, make, objcopy     gcc, make, binutils          (the library, the C tests, the demo)
#   valgrind              valgrind                     (the C tests run under it)
#   pkg-config            pkg-config                   (the installed evstore.pc is used)
#   g++, GoogleTest       g++, libgtest-dev            (the C++ binding's tests)
#   cmake                 cmake                        (the CMake package is used)
#   Go >= 1.23            golang-go when apt's is new enough, else not from apt (go.dev)
#   clang                 clang                        (the Swift module map, clang -fmodules)
#   openssl               openssl                      (tests/pg_tls.rs makes its certificates)
#   pgbouncer             pgbouncer                    (tests/pg_pooler.rs: transaction pooling)
#   PostgreSQL server     postgresql                   (initdb, pg_ctl: tests/pg/pg_server.sh)
#   a `postgres` OS user  (made by the postgresql package; created here when root lacks it:
#                          the server refuses to run as root, so pg_server.sh runs it as that user)
#   script, runuser       bsdutils, util-linux         (evsctl's terminal checks; pg_server.sh)
# and then the Go binding's modules (`go mod download`, nothing to fetch today).
#
# Environment: EVS_SETUP_DRY_RUN=1 prints the apt-get commands instead of running them
# (for tests of this script); PATH decides what counts as installed.
set -u
cd "$(dirname "$0")/.." || exit 2

check_only=0
if [ "${1:-}" = "--check" ]; then
    check_only=1
    shift
fi
what=${1:-test}
case $what in
demo | test) ;;
*)
    echo "usage: tools/setup.sh [--check] demo|test" >&2
    exit 2
    ;;
esac

have() { command -v "$1" >/dev/null 2>&1; }

# version_at_least HAVE WANT: HAVE >= WANT, both dotted numbers.
version_at_least() {
    [ "$(printf '%s\n%s\n' "$2" "$1" | sort -V | head -n 1)" = "$2" ]
}

# The Go on PATH, else the one go.dev's archive puts in /usr/local/go (the Makefile adds
# that folder to PATH).
go_cmd() {
    if have go; then
        echo go
    elif [ -x /usr/local/go/bin/go ]; then
        echo /usr/local/go/bin/go
    fi
}

# apt's candidate version of a package ("" when apt does not know it).
apt_candidate() {
    apt-cache policy "$1" 2>/dev/null | sed -n 's/^ *Candidate: *//p' | grep -v '(none)' | head -n 1
}

pkgs=()   # apt packages missing
other=()  # missing things apt cannot install
root_fixes=()  # things only root needs (the postgres user)

collect() {
    pkgs=()
    other=()
    root_fixes=()
    if have cargo; then
        v=$(cargo --version 2>/dev/null | awk '{print $2}' | sed 's/-.*//')
        version_at_least "${v:-0}" 1.88 || other+=("Rust >= 1.88 (cargo $v found; rustup update)")
    else
        other+=("Rust >= 1.88 with cargo (rustup; Debian's is older)")
    fi
    have cc || pkgs+=(gcc)
    have make || pkgs+=(make)
    have objcopy || pkgs+=(binutils)
    [ "$what" = demo ] && return 0

    have valgrind || pkgs+=(valgrind)
    have pkg-config || pkgs+=(pkg-config)
    have g++ || pkgs+=(g++)
    if ! ls /usr/lib/*/libgtest.a /usr/lib/libgtest.a /usr/local/lib/libgtest.a >/dev/null 2>&1 &&
        [ ! -d /usr/src/googletest ]; then
        pkgs+=(libgtest-dev)
    fi
    have cmake || pkgs+=(cmake)
    have clang || pkgs+=(clang)
    have openssl || pkgs+=(openssl)
    have pgbouncer || [ -x /usr/sbin/pgbouncer ] || pkgs+=(pgbouncer)
    have script || pkgs+=(bsdutils)
    # runuser starts the PostgreSQL server as its user when the suite runs as root.
    if [ "$(id -u)" = 0 ]; then have runuser || pkgs+=(util-linux); fi
    local pgbin=""
    if [ -n "${EVS_PG_BIN:-}" ]; then
        [ -x "$EVS_PG_BIN/pg_ctl" ] && pgbin=$EVS_PG_BIN
    else
        ls /usr/lib/postgresql/*/bin/pg_ctl >/dev/null 2>&1 && pgbin=yes
        have pg_ctl && have initdb && pgbin=yes
    fi
    if [ -z "$pgbin" ]; then
        pkgs+=(postgresql)
    elif [ "$(id -u)" = 0 ] && ! id "${EVS_PG_USER:-postgres}" >/dev/null 2>&1; then
        root_fixes+=("an OS user '${EVS_PG_USER:-postgres}' to run the PostgreSQL server")
    fi
    local g
    g=$(go_cmd)
    if [ -z "$g" ]; then
        add_go "no Go found"
    else
        local gv
        gv=$("$g" env GOVERSION 2>/dev/null | sed 's/^go//; s/[^0-9.].*//')
        version_at_least "${gv:-0}" 1.23 || add_go "Go $gv found"
    fi
}

# Go 1.23 or later: golang-go when apt's candidate is new enough (Debian 13), else by hand.
add_go() {
    local cand
    cand=$(apt_candidate golang-go | sed 's/^[0-9]*://; s/[~+-].*//')
    if [ -n "$cand" ] && version_at_least "$cand" 1.23; then
        pkgs+=(golang-go)
    else
        other+=("Go >= 1.23 ($1; apt's golang-go is ${cand:-unknown}: install Go from go.dev into /usr/local/go)")
    fi
}

# One line: what is missing.
report() {
    local line="" part
    [ ${#pkgs[@]} -gt 0 ] && line="apt packages: ${pkgs[*]} (as root: apt-get install ${pkgs[*]}, or run make $what as root)"
    for part in "${root_fixes[@]}" "${other[@]}"; do
        line="${line:+$line; }$part"
    done
    echo "make $what cannot start: missing $line"
}

missing() { [ ${#pkgs[@]} -gt 0 ] || [ ${#other[@]} -gt 0 ] || [ ${#root_fixes[@]} -gt 0 ]; }
dry() { [ "${EVS_SETUP_DRY_RUN:-0}" = 1 ]; }

collect
if missing; then
    if [ "$check_only" = 1 ] || [ "$(id -u)" != 0 ]; then
        report >&2
        exit 2
    fi
    # Root: install what apt can, make the server's user, then check again.
    if [ ${#pkgs[@]} -gt 0 ]; then
        echo "setup: apt-get install ${pkgs[*]}"
        export DEBIAN_FRONTEND=noninteractive
        if dry; then
            echo "would run: apt-get update -qq; apt-get install -y -qq --no-install-recommends ${pkgs[*]}"
        else
            apt-get update -qq || { echo "setup: apt-get update failed" >&2; exit 1; }
            apt-get install -y -qq --no-install-recommends "${pkgs[@]}" >/dev/null ||
                { echo "setup: apt-get install ${pkgs[*]} failed" >&2; exit 1; }
        fi
    fi
    pg_user=${EVS_PG_USER:-postgres}
    if [ "$what" = test ] && ! id "$pg_user" >/dev/null 2>&1; then
        echo "setup: creating the OS user $pg_user (runs the test PostgreSQL servers)"
        if dry; then
            echo "would run: useradd --system --user-group --home-dir /var/lib/postgresql --shell /bin/sh $pg_user"
        else
            useradd --system --user-group --home-dir /var/lib/postgresql --shell /bin/sh "$pg_user" ||
                { echo "setup: could not create the OS user $pg_user" >&2; exit 1; }
        fi
    fi
    dry && exit 0
    collect
    if missing; then
        report >&2
        exit 2
    fi
fi

if [ "$what" = test ] && [ "$check_only" = 0 ] && grep -q '^require' bindings/go/go.mod 2>/dev/null; then
    # The binding's modules (it has none today).
    (cd bindings/go && "$(go_cmd)" mod download) || {
        echo "setup: go mod download in bindings/go failed" >&2
        exit 1
    }
fi
exit 0
