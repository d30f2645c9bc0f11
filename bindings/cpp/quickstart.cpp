// The C++ quick start of README.md (tests/bindings/readme_quickstarts.sh keeps the two
// identical; tests/bindings/cmake_consumer.sh builds it with find_package and runs it).
#include <evstore.hpp>
#include <iostream>

int main(int argc, char **argv) try {
    evstore::Store store(argc > 1 ? argv[1] : "my-store");  // created if missing
    store.append("greetings", evstore::kExpectAny, {{"Greeted", "hello"}});
    for (const evstore::Event &e : store.read_stream("greetings"))
        std::cout << e.stream_version << ' ' << e.type << ' ' << e.payload << '\n';
} catch (const evstore::Error &e) {
    std::cerr << e.name() << ": " << e.what() << '\n';
    return 1;
}
