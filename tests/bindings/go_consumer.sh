#!/bin/sh
# The Go binding used the way a programmer outside this repository uses it: a throwaway
# module in a temporary folder outside the tree requires the binding (a `replace` to
# this checkout stands in for the module proxy), builds against the library installed in
# PREFIX (found through pkg-config, as `#cgo pkg-config: evstore` does), and runs.
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

mkdir "$work/app" "$work/store-parent"
cat > "$work/app/go.mod" <<MOD
module example.com/evstore-consumer

go 1.23

require github.com/evstore/evstore/bindings/go v0.0.0

replace github.com/evstore/evstore/bindings/go => $binding
MOD
cp "$binding/quickstart/main.go" "$work/app/main.go"
(cd "$work/app" && go vet . && go build -o "$work/quickstart" .)

# The binary carries no path into this repository.
if readelf -d "$work/quickstart" | grep -q "$repo"; then
    echo "go consumer: the binary has an rpath or runpath into $repo"; exit 1
fi
out=$(LD_LIBRARY_PATH="$prefix/lib" "$work/quickstart" "$work/store-parent/store")
[ "$out" = "0 Greeted hello" ] || { echo "go consumer: first run printed: $out"; exit 1; }
out=$(LD_LIBRARY_PATH="$prefix/lib" "$work/quickstart" "$work/store-parent/store")
[ "$out" = "$(printf '0 Greeted hello\n1 Greeted hello')" ] || { echo "go consumer: second run printed: $out"; exit 1; }
LD_LIBRARY_PATH="$prefix/lib" ldd "$work/quickstart" | grep -q "$prefix/lib/libevstore.so.1" || { echo "go consumer: not linked to $prefix/lib"; exit 1; }

# The binding's copy of the header is the installed one.
(cd "$binding" && LD_LIBRARY_PATH="$prefix/lib" go test -count=1 -run 'TestHeaderIsTheLibraryOne' . >/dev/null) ||
    { echo "go consumer: bindings/go/evstore.h differs from $prefix/include/evstore/evstore.h"; exit 1; }
echo "go consumer: 3 passed, 0 failed (an out-of-tree module built against $prefix and ran)"
