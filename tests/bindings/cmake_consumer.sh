#!/bin/sh
# evstore's CMake package used the way a project outside this repository uses it: a tiny
# project in a temporary folder calls find_package(evstore CONFIG REQUIRED) against the
# installed PREFIX, builds the C++ and C quick starts against evstore::evstore (and the
# C one against evstore::evstore_static), and runs them.
#   tests/bindings/cmake_consumer.sh PREFIX
set -eu
prefix=$(cd "$1" && pwd)
repo=$(cd "$(dirname "$0")/../.." && pwd)
work=$(mktemp -d "${TMPDIR:-/tmp}/evstore-cmake-consumer.XXXXXX")
trap 'rm -rf "$work"' EXIT
passed=0
fail() { echo "cmake consumer: $*"; exit 1; }

mkdir "$work/src" "$work/stores"
cp "$repo/bindings/cpp/quickstart.cpp" "$repo/examples-c/quickstart.c" "$work/src/"
cat > "$work/src/CMakeLists.txt" <<'CMAKE'
cmake_minimum_required(VERSION 3.16)
project(evstore_consumer C CXX)
set(CMAKE_CXX_STANDARD 17)
set(CMAKE_CXX_STANDARD_REQUIRED ON)
find_package(evstore 1.1 CONFIG REQUIRED)
add_executable(quickstart_cpp quickstart.cpp)
target_compile_options(quickstart_cpp PRIVATE -Wall -Wextra -Wpedantic -Werror)
target_link_libraries(quickstart_cpp PRIVATE evstore::evstore)
add_executable(quickstart_c quickstart.c)
set_property(TARGET quickstart_c PROPERTY C_STANDARD 99)
target_compile_options(quickstart_c PRIVATE -Wall -Wextra -Wpedantic -Werror)
target_link_libraries(quickstart_c PRIVATE evstore::evstore)
add_executable(quickstart_c_static quickstart.c)
set_property(TARGET quickstart_c_static PROPERTY C_STANDARD 99)
target_link_libraries(quickstart_c_static PRIVATE evstore::evstore_static)
CMAKE
cmake -S "$work/src" -B "$work/build" -DCMAKE_PREFIX_PATH="$prefix" -DCMAKE_BUILD_TYPE=Release > "$work/configure.log" 2>&1 ||
    { cat "$work/configure.log"; fail "configure failed"; }
cmake --build "$work/build" -j 2 > "$work/build.log" 2>&1 || { cat "$work/build.log"; fail "build failed"; }
grep -q "$prefix/lib/cmake/evstore" "$work/build/CMakeCache.txt" || fail "evstore_DIR is not under $prefix"
passed=$((passed + 1))

# CMake's build tree carries an rpath to the imported library; run them as installed
# programs do, without it being needed, from the stores' folder.
want1="0 Greeted hello"
for prog in quickstart_cpp quickstart_c quickstart_c_static; do
    out=$(LD_LIBRARY_PATH="$prefix/lib" "$work/build/$prog" "$work/stores/$prog") || fail "$prog failed: $out"
    [ "$out" = "$want1" ] || fail "$prog printed: $out"
    out=$(LD_LIBRARY_PATH="$prefix/lib" "$work/build/$prog" "$work/stores/$prog")
    [ "$out" = "$(printf '%s\n1 Greeted hello' "$want1")" ] || fail "$prog (second run) printed: $out"
    passed=$((passed + 1))
done
readelf -d "$work/build/quickstart_c_static" | grep -q 'libevstore' && fail "the static build links libevstore.so"

# A request for another major version is refused.
mkdir "$work/v2"
printf 'cmake_minimum_required(VERSION 3.16)\nproject(v2 CXX)\nfind_package(evstore 2.0 CONFIG REQUIRED)\n' > "$work/v2/CMakeLists.txt"
if cmake -S "$work/v2" -B "$work/v2/build" -DCMAKE_PREFIX_PATH="$prefix" > "$work/v2.log" 2>&1; then
    fail "find_package(evstore 2.0) succeeded against 1.x"
fi
grep -q "1.1.0" "$work/v2.log" || { cat "$work/v2.log"; fail "the refusal does not name the installed version"; }
passed=$((passed + 1))
echo "cmake consumer: $passed passed, 0 failed (find_package(evstore) against $prefix)"
