#!/bin/sh
# Checks what `make install` laid out (run by `make test-pkgconfig`):
#   tests/install_layout.sh PREFIX LIBDIR VERSION SONAME
# the header, module map, conventions and the C++ wrapper under include/evstore/, the
# CMake package under lib/cmake/evstore/, and nothing of ours
# directly in include/; the installed shared library stripped, with its soname and a
# .gnu_debuglink to the debug info kept in LIBDIR/.debug, which has the symbols.
prefix=$1
libdir=$2
version=$3
soname=$4
fail=0
no() { echo "install layout: $*"; fail=1; }

for f in evstore.h module.modulemap conventions.md; do
    [ -f "$prefix/include/evstore/$f" ] || no "include/evstore/$f is missing"
    [ -e "$prefix/include/$f" ] && no "include/$f is in the shared include directory"
done
[ -f "$prefix/include/evstore/evstore.hpp" ] || no "include/evstore/evstore.hpp (the C++ wrapper) is missing"
for f in evstoreConfig.cmake evstoreConfigVersion.cmake; do
    [ -f "$prefix/lib/cmake/evstore/$f" ] || no "lib/cmake/evstore/$f is missing"
done
grep -q '@' "$prefix/lib/cmake/evstore/evstoreConfig.cmake" "$prefix/lib/cmake/evstore/evstoreConfigVersion.cmake" 2>/dev/null &&
    no "a @PLACEHOLDER@ is left in the CMake package"
[ -x "$prefix/bin/evsctl" ] || no "bin/evsctl is missing"
"$prefix/bin/evsctl" --version 2>&1 | grep -q "evsctl $version" || no "bin/evsctl does not run from the prefix (without LD_LIBRARY_PATH)"
grep -q 'header "evstore.h"' "$prefix/include/evstore/module.modulemap" || no "the module map does not name evstore.h"
so="$prefix/lib/libevstore.so.$version"
[ -f "$so" ] || no "lib/libevstore.so.$version is missing"
[ "$(readlink "$prefix/lib/$soname")" = "libevstore.so.$version" ] || no "lib/$soname does not point to the library"
readelf -d "$so" | grep -q "SONAME.*\[$soname\]" || no "the library's soname is not $soname"
readelf -S "$so" | grep -q '\.debug_info' && no "the installed library is not stripped"
readelf -S "$so" | grep -q '\.symtab' && no "the installed library still has its symbol table"
readelf -x .gnu_debuglink "$so" 2>/dev/null | grep -q 'libevstore' || no "the installed library has no .gnu_debuglink"
dbg="$libdir/.debug/libevstore.so.$version.debug"
[ -f "$dbg" ] || no "the debug info $dbg is missing"
readelf -S "$dbg" | grep -q '\.debug_info' || no "$dbg has no .debug_info"
nm -D "$so" | grep -q ' T evs_open$' || no "the installed library does not export evs_open"
size_installed=$(stat -c %s "$so")
size_built=$(stat -c %s "$libdir/libevstore.so.$version")
echo "install layout: installed library $size_installed bytes (built: $size_built with debug info)"
[ "$fail" = 0 ]
