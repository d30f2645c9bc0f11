#!/bin/sh
# Builds the C++ wrapper's GoogleTest tests into build/cpp/ and runs them against
# build/lib (run it from anywhere; paths are taken from the repository root).
# Needs `make lib` first. With a system libgtest (libgtest-dev) it compiles with g++;
# otherwise it builds GoogleTest from /usr/src/googletest with cmake (CMakeLists.txt).
# The test binary is rebuilt only when the wrapper, the test or evstore.h changed.
# Prints GoogleTest's summary; exits non-zero on failure.

cd "$(dirname "$0")/../.." || exit 2

CXX=${CXX:-g++}
OUT=build/cpp
LIBDIR=build/lib
CXXFLAGS="-std=c++17 -Wall -Wextra -Wpedantic -Werror -g -O1"
BIN=$OUT/test_evstore
SOURCES="bindings/cpp/evstore.hpp bindings/cpp/test_evstore.cpp include/evstore.h"

if [ ! -f include/evstore.h ] || [ ! -f "$LIBDIR/libevstore.so" ]; then
    echo "include/evstore.h and $LIBDIR/libevstore.so are needed: run 'make lib' first"
    exit 1
fi
mkdir -p "$OUT" || exit 2

stale=0
[ -x "$BIN" ] || stale=1
for f in $SOURCES; do
    [ "$f" -nt "$BIN" ] && stale=1
done

if [ "$stale" = 1 ]; then
    # The header compiles alone.
    echo '#include "evstore.hpp"' > "$OUT/header_alone.cpp"
    $CXX $CXXFLAGS -Iinclude -Ibindings/cpp -fsyntax-only "$OUT/header_alone.cpp" || exit 1

    system_gtest=0
    for f in /usr/lib/*/libgtest.a /usr/lib/libgtest.a /usr/local/lib/libgtest.a; do
        [ -f "$f" ] && system_gtest=1
    done
    if [ "$system_gtest" = 1 ]; then
        echo "== build $BIN"
        # shellcheck disable=SC2086
        $CXX $CXXFLAGS -Iinclude -Ibindings/cpp bindings/cpp/test_evstore.cpp \
            -L"$LIBDIR" -levstore -lgtest_main -lgtest -pthread -o "$BIN" || exit 1
    elif [ -d /usr/src/googletest ]; then
        echo "== build $BIN (GoogleTest from /usr/src/googletest, with cmake)"
        cmake -S bindings/cpp -B "$OUT/cmake" -DCMAKE_BUILD_TYPE=RelWithDebInfo -DCMAKE_CXX_COMPILER="$CXX" >/dev/null &&
            cmake --build "$OUT/cmake" --target test_evstore -j 4 >/dev/null &&
            cp "$OUT/cmake/test_evstore" "$BIN" || exit 1
    else
        echo "GoogleTest is not installed (libgtest-dev or /usr/src/googletest)"
        exit 1
    fi
fi

echo "== run $BIN"
LD_LIBRARY_PATH="$LIBDIR${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}" "$BIN" --gtest_brief=1
