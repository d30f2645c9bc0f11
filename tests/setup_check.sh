#!/usr/bin/env bash
# tools/setup.sh on machines that lack things, as well as one machine can pretend:
# a PATH made of links to every program on the real PATH except the ones a case hides
# (and stand-ins that report an old Go or Rust), EVS_PG_BIN pointing nowhere for a
# machine without the PostgreSQL server, and a user that is not root (nobody, through
# setpriv, when this runs as root). What cannot be pretended this way: files found by
# path rather than on PATH (GoogleTest's libgtest.a), a missing `postgres` user, and a
# real apt-get install (EVS_SETUP_DRY_RUN=1 shows the commands instead; `make test`
# itself installs for real on a fresh machine).
#   tests/setup_check.sh
set -u
cd "$(dirname "$0")/.." || exit 2
repo=$(pwd)
work=$(mktemp -d "${TMPDIR:-/tmp}/evstore-setup-check.XXXXXX")
trap 'rm -rf "$work"' EXIT
chmod 0755 "$work"
passed=0
failed=0
ok() { passed=$((passed + 1)); }
no() { echo "setup check: FAIL: $*"; failed=$((failed + 1)); }

# Links to every program on PATH (the first of each name), made once.
all=$work/all
mkdir "$all"
IFS=: read -r -a path_dirs <<< "$PATH"
seen=" "
for d in "${path_dirs[@]}"; do
    r=$(readlink -f "$d") || continue
    case $seen in *" $r "*) continue ;; esac # /bin is /usr/bin on most systems
    seen="$seen$r "
    # one ln per folder; a name already linked from an earlier folder stays (ln refuses)
    [ -d "$d" ] && ln -s "$d"/* "$all"/ 2> /dev/null
done

# fakepath NAME HIDDEN...: a copy of those links without HIDDEN; prints its folder.
fakepath() {
    local dir=$work/$1 h
    shift
    cp -a "$all" "$dir"
    for h in "$@"; do rm -f "$dir/$h"; done
    chmod 0755 "$dir"
    echo "$dir"
}

# setup WANT_STATUS ENV... -- ARGS: runs tools/setup.sh with that environment; keeps
# stdout in $out, stderr in $err.
setup() {
    local want=$1 status
    shift
    local envs=()
    while [ "$1" != -- ]; do envs+=("$1"); shift; done
    shift
    env "${envs[@]}" bash "$repo/tools/setup.sh" "$@" > "$work/out" 2> "$work/err"
    status=$?
    out=$(cat "$work/out")
    err=$(cat "$work/err")
    [ "$status" = "$want" ] || { no "setup.sh $* exited $status, want $want (stdout: $out; stderr: $err)"; return 1; }
}
lines() { [ -z "$1" ] && echo 0 || printf '%s\n' "$1" | wc -l; }

# 1. Everything there (make test has just set this machine up): silent, status 0.
setup 0 -- --check test && [ -z "$out$err" ] && ok || no "a complete machine: $out $err"
setup 0 -- --check demo && [ -z "$out$err" ] && ok || no "a complete machine, demo: $out $err"

# 2. No clang, cmake, valgrind, g++ nor PostgreSQL server: one line naming exactly their
# apt packages, status 2, nothing done.
bare=$(fakepath bare clang cmake valgrind g++)
want="make test cannot start: missing apt packages: valgrind g++ cmake clang postgresql (as root: apt-get install valgrind g++ cmake clang postgresql, or run make test as root)"
setup 2 PATH="$bare" EVS_PG_BIN=/nonexistent -- --check test && [ -z "$out" ] && [ "$err" = "$want" ] && ok ||
    no "a machine without clang, cmake, valgrind, g++, PostgreSQL: $err"
# the demo needs none of them
setup 0 PATH="$bare" EVS_PG_BIN=/nonexistent -- --check demo && [ -z "$out$err" ] && ok ||
    no "the demo asked for more than cargo and a C compiler: $err"

# 3. Not root: the same one line (also without --check), and nothing installed.
if [ "$(id -u)" = 0 ]; then
    if command -v setpriv > /dev/null 2>&1 && id nobody > /dev/null 2>&1; then
        env PATH="$bare" EVS_PG_BIN=/nonexistent setpriv --reuid=nobody --regid="$(id -g nobody)" --clear-groups \
            bash "$repo/tools/setup.sh" test > "$work/out" 2> "$work/err"
        status=$?
        out=$(cat "$work/out")
        err=$(cat "$work/err")
        # nobody cannot see root's cargo: the line may name Rust too
        [ "$status" = 2 ] && [ -z "$out" ] && [ "$(lines "$err")" = 1 ] &&
            printf '%s' "$err" | grep -q "^make test cannot start: missing apt packages: valgrind g++ cmake clang postgresql (" &&
            ok || no "as nobody (status $status): stdout: $out; stderr: $err"
    else
        no "setpriv or the user nobody is missing: the non-root case is not checked"
    fi
else
    setup 2 PATH="$bare" EVS_PG_BIN=/nonexistent -- test && [ -z "$out" ] && [ "$(lines "$err")" = 1 ] &&
        printf '%s' "$err" | grep -q "^make test cannot start: missing apt packages: valgrind g++ cmake clang postgresql (" &&
        ok || no "not root: $out $err"
fi

# 4. Root installs: the apt-get commands (shown, not run: EVS_SETUP_DRY_RUN).
if [ "$(id -u)" = 0 ]; then
    setup 0 PATH="$bare" EVS_PG_BIN=/nonexistent EVS_SETUP_DRY_RUN=1 -- test &&
        printf '%s\n' "$out" | grep -qxF "would run: apt-get update -qq; apt-get install -y -qq --no-install-recommends valgrind g++ cmake clang postgresql" &&
        [ -z "$err" ] && ok || no "root's install: $out $err"
fi

# 5. A demo machine without a C compiler: gcc.
nocc=$(fakepath nocc cc gcc)
setup 2 PATH="$nocc" -- --check demo && [ "$err" = "make demo cannot start: missing apt packages: gcc (as root: apt-get install gcc, or run make demo as root)" ] &&
    ok || no "no C compiler: $err"

# 6. An old Go and an old Rust (Debian 12's): named, with what to do, in the same one line.
old=$(fakepath old go cargo)
printf '#!/bin/sh\n[ "$1 $2" = "env GOVERSION" ] && echo go1.19.8\n' > "$old/go"
printf '#!/bin/sh\necho "cargo 1.65.0"\n' > "$old/cargo"
chmod 0755 "$old/go" "$old/cargo"
setup 2 PATH="$old" -- --check test && [ "$(lines "$err")" = 1 ] &&
    printf '%s' "$err" | grep -q "Rust >= 1.88 (cargo 1.65.0 found" &&
    { printf '%s' "$err" | grep -q "Go >= 1.23 (Go 1.19.8 found" || printf '%s' "$err" | grep -q "golang-go"; } &&
    ok || no "an old Go and Rust: $err"

echo "setup check: $passed passed, $failed failed"
[ "$failed" = 0 ]
