/* The C quick start of README.md (tests/bindings/readme_quickstarts.sh keeps the two
 * identical; make test-pkgconfig and tests/bindings/cmake_consumer.sh build and run it). */
#include <evstore.h>
#include <stdio.h>

int main(int argc, char **argv) {
    evs_store *s = NULL;
    if (evs_open(argc > 1 ? argv[1] : "my-store", NULL, &s, NULL) != EVS_OK) {
        fprintf(stderr, "open: %s\n", evs_last_error_message());
        return 1;
    }
    evs_event_input ev = EVS_STRUCT_INIT(evs_event_input); /* sets struct_size, zeroes the rest */
    ev.event_type = "Greeted";
    ev.payload = (const uint8_t *)"hello";
    ev.payload_len = 5;
    if (evs_append(s, "greetings", EVS_EXPECT_ANY, &ev, 1, NULL, NULL) != EVS_OK) {
        fprintf(stderr, "append: %s\n", evs_last_error_message());
        return 1;
    }
    evs_cursor *c = NULL;
    evs_read_stream(s, "greetings", 0, &c);
    evs_event e = EVS_STRUCT_INIT(evs_event);
    while (evs_cursor_next(c, &e) == EVS_OK)
        printf("%llu %.*s %.*s\n", (unsigned long long)e.stream_version, (int)e.event_type_len, e.event_type,
               (int)e.payload_len, (const char *)e.payload);
    evs_cursor_free(c);
    return evs_close(s) == EVS_OK ? 0 : 1;
}
