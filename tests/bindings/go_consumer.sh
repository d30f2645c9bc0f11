#!/bin/sh
# The Go binding used the way a programmer outside this repository uses it (README, Quick
# start (Go)): a throwaway module in a temporary folder outside the tree requires the
# binding, which cannot be fetched by its import path, through a `replace` directive:
# first to this checkout, then to the copy `make install` put in PREFIX/share/evstore/go.
# Each build finds the library installed in PREFIX through pkg-config (as
# `#cgo pkg-config: evstore` does) and runs.
#   tests/bindings/go_consumer.sh PREFIX
set -eu
prefix=$(cd "$1" && pwd)
repo=$(cd "$(dirname "$0")/../.." && pwd)
binding=$repo/bindings/go
work=$(mktemp -d "${TMPDIR:-/tmp}/evstore-go-consumer.XXXXXX")
trap 'rm -rf "$work"' EXIT
case "$work" in "$repo"/*) echo "go consumer: $work is inside the repository"; exit 1 ;; esac

export PKG_CONFIG_PATH="$prefix/lib/pkgconfig"
# Nothing from the network, and no go.work of an enclosing folder.
export GOPROXY=off GOFLAGS=-mod=mod GOWORK=off

passed=0
# consumer NAME BINDING: a module that replaces the binding's path with BINDING, built,
# vetted and run twice (the second run reopens the store).
consumer() {
    app=$work/$1
    mkdir "$app" "$app/store-parent"
    cat > "$app/go.mod" <<MOD
module example.com/evstore-consumer

go 1.23

require github.com/evstore/evstore/bindings/go v0.0.0

replace github.com/evstore/evstore/bindings/go => $2
MOD
    cp "$binding/quickstart/main.go" "$app/main.go"
    (cd "$app" && go vet . && go build -o "$app/quickstart" .)

    # The binary carries no path into this repository.
    if readelf -d "$app/quickstart" | grep -q "$repo"; then
        echo "go consumer ($1): the binary has an rpath or runpath into $repo"; exit 1
    fi
    out=$(LD_LIBRARY_PATH="$prefix/lib" "$app/quickstart" "$app/store-parent/store")
    [ "$out" = "0 Greeted hello" ] || { echo "go consumer ($1): first run printed: $out"; exit 1; }
    out=$(LD_LIBRARY_PATH="$prefix/lib" "$app/quickstart" "$app/store-parent/store")
    [ "$out" = "$(printf '0 Greeted hello\n1 Greeted hello')" ] || { echo "go consumer ($1): second run printed: $out"; exit 1; }
    LD_LIBRARY_PATH="$prefix/lib" ldd "$app/quickstart" | grep -q "$prefix/lib/libevstore.so.1" ||
        { echo "go consumer ($1): not linked to $prefix/lib"; exit 1; }
    passed=$((passed + 1))
}
consumer checkout "$binding"
[ -f "$prefix/share/evstore/go/go.mod" ] || { echo "go consumer: make install put no Go module in $prefix/share/evstore/go"; exit 1; }
consumer installed "$prefix/share/evstore/go"

# The binding's copy of the header is the installed one.
(cd "$binding" && LD_LIBRARY_PATH="$prefix/lib" go test -count=1 -run 'TestHeaderIsTheLibraryOne' . >/dev/null) ||
    { echo "go consumer: bindings/go/evstore.h differs from $prefix/include/evstore/evstore.h"; exit 1; }
passed=$((passed + 1))
echo "go consumer: $passed passed, 0 failed (out-of-tree modules built against $prefix and ran, with the binding from the checkout and from the installed copy)"
