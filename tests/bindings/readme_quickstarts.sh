#!/bin/sh
# The quick starts shown in README.md (and bindings/swift/README.md) are the files that
# make test builds and runs: each fenced block after a `<!-- quickstart: PATH -->` line
# must be PATH as it is, without its leading comment lines.
#   tests/bindings/readme_quickstarts.sh
set -eu
cd "$(dirname "$0")/../.."
work=$(mktemp -d "${TMPDIR:-/tmp}/evstore-readme.XXXXXX")
trap 'rm -rf "$work"' EXIT
passed=0
failed=0

# The block after the marker of $2 in $1.
block() {
    awk -v marker="<!-- quickstart: $2 -->" '
        $0 == marker { found = 1; next }
        found == 1 && /^```/ { found = 2; next }
        found == 2 && /^```$/ { exit }
        found == 2 { print }' "$1"
}
# The file without its leading comment lines (// ..., /* ..., * ...).
code() {
    awk 'started || !/^(\/\/|\/\*| \*)/ { started = 1; print }' "$1"
}

check() { # check README FILE
    block "$1" "$2" > "$work/shown"
    code "$2" > "$work/file"
    if [ ! -s "$work/shown" ]; then
        echo "readme: $1 shows no quick start from $2"
        failed=$((failed + 1))
    elif cmp -s "$work/shown" "$work/file"; then
        passed=$((passed + 1))
    else
        echo "readme: $1's quick start differs from $2:"
        diff "$work/file" "$work/shown" | head -20
        failed=$((failed + 1))
    fi
}

for f in examples-c/quickstart.c bindings/cpp/quickstart.cpp bindings/go/quickstart/main.go bindings/swift/Examples/quickstart.swift; do
    check README.md "$f"
done
check bindings/swift/README.md bindings/swift/Examples/quickstart.swift
echo "readme quick starts: $passed passed, $failed failed"
[ "$failed" = 0 ]
