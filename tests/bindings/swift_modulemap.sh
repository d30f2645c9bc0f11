#!/bin/sh
# What can be checked of the Swift binding without a Swift toolchain (none is installed
# here; the Swift layer itself is not compiled by CI):
#  1. Objective-C imports module CEvstore through the binding's module map (its shim
#     finds evstore.h through pkg-config's -I, as SwiftPM's .systemLibrary does) and
#     through the module map installed beside the header;
#  2. C imports the module, and the program links against the installed library and runs;
#  3. every evs_ function and EVS_ constant the Swift layer names is declared by the
#     header (the layer is kept in step with evstore.h by hand);
#  4. every status code of the header is named by the layer.
#   tests/bindings/swift_modulemap.sh PREFIX
set -eu
prefix=$(cd "$1" && pwd)
repo=$(cd "$(dirname "$0")/../.." && pwd)
swift=$repo/bindings/swift
work=$(mktemp -d "${TMPDIR:-/tmp}/evstore-swift-check.XXXXXX")
trap 'rm -rf "$work"' EXIT
fail() { echo "swift module map: $*"; exit 1; }
command -v clang > /dev/null || fail "clang is not installed (Debian: apt-get install clang)"
cflags=$(PKG_CONFIG_PATH="$prefix/lib/pkgconfig" pkg-config --cflags evstore)
passed=0

cat > "$work/check.m" <<'OBJC'
@import CEvstore;
int main(void) {
    evs_event e = EVS_STRUCT_INIT(evs_event);
    evs_store *s = 0;
    return (int)(e.struct_size != sizeof(evs_event)) + (evs_open(0, 0, &s, 0) == EVS_OK);
}
OBJC
# shellcheck disable=SC2086
clang -fmodules -fsyntax-only -Werror -fmodules-cache-path="$work/mc1" $cflags \
    -fmodule-map-file="$swift/Sources/CEvstore/module.modulemap" "$work/check.m" ||
    fail "Objective-C cannot import CEvstore through bindings/swift/Sources/CEvstore/module.modulemap"
passed=$((passed + 1))
clang -fmodules -fsyntax-only -Werror -fmodules-cache-path="$work/mc2" \
    -fmodule-map-file="$prefix/include/evstore/module.modulemap" "$work/check.m" ||
    fail "Objective-C cannot import CEvstore through the installed include/evstore/module.modulemap"
passed=$((passed + 1))

# 3: the names the Swift layer uses, each referenced from C through the module.
# (code only: comments are left out)
names=$(sed 's|//.*||' "$swift/Sources/Evstore/Evstore.swift" | grep -o '\b\(evs\|EVS\)_[A-Za-z0-9_]*' | sort -u)
header=$prefix/include/evstore/evstore.h
[ -n "$names" ] || fail "no evs_ names found in Evstore.swift"
{
    echo '#pragma clang module import CEvstore'
    echo '#include <stdio.h>'
    echo 'int main(int argc, char **argv) {'
    for n in $names; do
        case $n in
        EVS_*) echo "    (void)($n);" ;;
        *)  # a type (typedef) or a function
            if grep -q "^typedef .*[ *]$n;\|^} $n;\|(\*$n)" "$header"; then
                echo "    (void)sizeof($n);"
            else
                echo "    (void)&$n;"
            fi ;;
        esac
    done
    cat <<'C'
    evs_store *s = NULL;
    if (argc < 2 || evs_open(argv[1], NULL, &s, NULL) != EVS_OK) return 1;
    evs_event_input in = EVS_STRUCT_INIT(evs_event_input);
    in.event_type = "Checked";
    if (evs_append(s, "swift", EVS_EXPECT_ANY, &in, 1, NULL, NULL) != EVS_OK) return 1;
    printf("%s %d\n", evs_version(), EVS_ABI_VERSION);
    return evs_close(s) == EVS_OK ? 0 : 1;
}
C
} > "$work/names.c"
# shellcheck disable=SC2086
clang -fmodules -Werror -Wall -fmodules-cache-path="$work/mc3" $cflags \
    -fmodule-map-file="$swift/Sources/CEvstore/module.modulemap" "$work/names.c" \
    -L"$prefix/lib" -levstore -o "$work/names" 2> "$work/names.err" ||
    { cat "$work/names.err"; fail "a name the Swift layer uses is not declared by evstore.h (above)"; }
passed=$((passed + 1))
out=$(LD_LIBRARY_PATH="$prefix/lib" "$work/names" "$work/store") || fail "the C program over CEvstore failed"
[ "$out" = "1.1.0 1" ] || fail "the C program over CEvstore printed: $out"
passed=$((passed + 1))
# 4: every status code of the header has its EvstoreError.Code (the layer names each by
# its EVS_ERR_ macro).
for code in $(sed -n 's/^#define \(EVS_ERR_[A-Z_]*\) -[0-9]*$/\1/p' "$header"); do
    echo "$names" | grep -qx "$code" || fail "Evstore.swift has no EvstoreError.Code for $code of evstore.h"
done
passed=$((passed + 1))
echo "swift module map: $passed passed, 0 failed ($(echo "$names" | wc -l) evs_/EVS_ names of Evstore.swift are in evstore.h; Swift itself is not compiled here)"
