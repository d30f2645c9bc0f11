/* The scale benchmark (`make bench-scale`, issue 13): a store of N events over S streams
 * (100-byte payloads) built through the public C API, then opened and read in fresh
 * processes. One program, three steps (bench/scale/run.sh runs them in order):
 *
 *   scale build DIR N S      appends N events (one per evs_append, EVS_FSYNC_BATCH) to S
 *                            streams in a fixed pseudo-random order; prints the append
 *                            rate over the million events before 1M, 10M, 100M, and N
 *   scale open DIR S         opens the store; prints the open time, the resident memory
 *                            after open and after reading 1,000 random streams whole, and
 *                            the mean latency of a stream's last 10 events and of one
 *                            whole stream
 *   scale kill DIR S K       opens the store, appends K more events, and SIGKILLs itself
 *
 * Every line of results starts with "RESULT key value". */
#define _GNU_SOURCE
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "evstore.h"

static double now_s(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + (double)t.tv_nsec / 1e9;
}

static void die(const char *call, evs_status rc) {
    fprintf(stderr, "scale: %s returned %s (%d): %s\n", call, evs_status_name(rc), (int)rc,
            evs_last_error_message());
    exit(1);
}

#define TRY(call)                              \
    do {                                       \
        evs_status rc_ = (call);               \
        if (rc_ != EVS_OK) die(#call, rc_);    \
    } while (0)

/* Resident memory of this process, from /proc/self/status (kB). */
static long rss_kb(const char *field) {
    FILE *f = fopen("/proc/self/status", "r");
    char line[256];
    long v = -1;
    size_t n = strlen(field);
    if (!f) return -1;
    while (fgets(line, sizeof line, f)) {
        if (strncmp(line, field, n) == 0 && line[n] == ':') {
            v = strtol(line + n + 1, NULL, 10);
            break;
        }
    }
    fclose(f);
    return v;
}

/* xorshift64*: the stream of each event, and the streams read. */
static uint64_t rng_state = 0x9E3779B97F4A7C15ull;
static uint64_t rng(void) {
    rng_state ^= rng_state >> 12;
    rng_state ^= rng_state << 25;
    rng_state ^= rng_state >> 27;
    return rng_state * 0x2545F4914F6CDD1Dull;
}

static void stream_name(char *out, size_t cap, uint64_t i) { snprintf(out, cap, "stream-%07llu", (unsigned long long)i); }

static evs_store *open_store(const char *dir, evs_recovery_info *info) {
    evs_options *o = evs_options_new();
    if (!o) {
        fprintf(stderr, "scale: evs_options_new returned NULL\n");
        exit(1);
    }
    TRY(evs_options_set_fsync(o, EVS_FSYNC_BATCH, 5));
    evs_store *s = NULL;
    TRY(evs_open(dir, o, &s, info));
    evs_options_free(o);
    return s;
}

static void append_one(evs_store *s, uint64_t streams, const uint8_t *payload) {
    char name[32];
    stream_name(name, sizeof name, rng() % streams);
    evs_event_input ev = EVS_STRUCT_INIT(evs_event_input);
    ev.event_type = "Deposited";
    ev.payload = payload;
    ev.payload_len = 100;
    TRY(evs_append(s, name, EVS_EXPECT_ANY, &ev, 1, NULL, NULL));
}

static int build(const char *dir, uint64_t n, uint64_t streams) {
    uint8_t payload[100];
    for (int i = 0; i < 100; i++) payload[i] = (uint8_t)('a' + i % 26);
    evs_store *s = open_store(dir, NULL);
    const uint64_t window = 1000000;
    double start = now_s(), win_start = start;
    for (uint64_t i = 0; i < n; i++) {
        append_one(s, streams, payload);
        uint64_t done = i + 1;
        if (done % window == 0 || done == n) {
            double t = now_s();
            uint64_t in_window = done % window == 0 ? window : done % window;
            double rate = (double)in_window / (t - win_start);
            if (done == 1000000 || done == 10000000 || done == 100000000 || done == n)
                printf("RESULT append_rate_at_%llu %.0f\n", (unsigned long long)done, rate);
            if (done % 10000000 == 0 || done == n) {
                fprintf(stderr, "scale: %llu events, last million at %.0f/s, rss %ld kB\n",
                        (unsigned long long)done, rate, rss_kb("VmRSS"));
                fflush(stdout);
            }
            win_start = t;
        }
    }
    printf("RESULT build_seconds %.1f\n", now_s() - start);
    printf("RESULT build_peak_rss_kb %ld\n", rss_kb("VmHWM"));
    double c0 = now_s();
    TRY(evs_close(s));
    printf("RESULT close_seconds %.2f\n", now_s() - c0);
    return 0;
}

static uint64_t read_stream(evs_store *s, const char *name, int backward_max) {
    evs_cursor *c = NULL;
    if (backward_max)
        TRY(evs_read_stream_backward(s, name, UINT64_MAX, &c));
    else
        TRY(evs_read_stream(s, name, 0, &c));
    evs_event e = EVS_STRUCT_INIT(evs_event);
    uint64_t n = 0;
    for (;;) {
        if (backward_max && n == (uint64_t)backward_max) break;
        evs_status rc = evs_cursor_next(c, &e);
        if (rc == EVS_END) break;
        if (rc != EVS_OK) die("evs_cursor_next", rc);
        if (e.stream_len != strlen(name) || memcmp(e.stream, name, e.stream_len) != 0) {
            fprintf(stderr, "scale: stream %s gave an event of another stream\n", name);
            exit(1);
        }
        n++;
    }
    evs_cursor_free(c);
    return n;
}

static int open_and_read(const char *dir, uint64_t streams, const char *label) {
    evs_recovery_info info = EVS_STRUCT_INIT(evs_recovery_info);
    double t0 = now_s();
    evs_store *s = open_store(dir, &info);
    double opened = now_s() - t0;
    printf("RESULT open_ms_%s %.1f\n", label, opened * 1e3);
    printf("RESULT open_events_%s %llu\n", label, (unsigned long long)info.next_position);
    printf("RESULT open_records_replayed_%s %llu\n", label, (unsigned long long)info.valid_records);
    printf("RESULT rss_after_open_kb_%s %ld\n", label, rss_kb("VmRSS"));
    rng_state = 0x1234567887654321ull;
    char name[32];
    const int reads = 1000;
    uint64_t events = 0;
    double r0 = now_s();
    for (int i = 0; i < reads; i++) {
        stream_name(name, sizeof name, rng() % streams);
        events += read_stream(s, name, 0);
    }
    double whole = (now_s() - r0) / reads;
    printf("RESULT rss_after_1000_streams_kb_%s %ld\n", label, rss_kb("VmRSS"));
    printf("RESULT stream_read_us_%s %.1f\n", label, whole * 1e6);
    printf("RESULT stream_read_mean_events_%s %.1f\n", label, (double)events / reads);
    rng_state = 0x0F0F0F0F12345678ull;
    double l0 = now_s();
    for (int i = 0; i < reads; i++) {
        stream_name(name, sizeof name, rng() % streams);
        read_stream(s, name, 10);
    }
    printf("RESULT last10_us_%s %.1f\n", label, (now_s() - l0) / reads * 1e6);
    printf("RESULT peak_rss_kb_%s %ld\n", label, rss_kb("VmHWM"));
    TRY(evs_close(s));
    return 0;
}

static int append_and_kill(const char *dir, uint64_t streams, uint64_t k) {
    uint8_t payload[100];
    memset(payload, 'k', sizeof payload);
    evs_store *s = open_store(dir, NULL);
    rng_state = 0xDEADBEEFCAFEF00Dull;
    for (uint64_t i = 0; i < k; i++) append_one(s, streams, payload);
    fflush(stdout);
    raise(SIGKILL);
    return 1;
}

int main(int argc, char **argv) {
    if (argc >= 5 && strcmp(argv[1], "build") == 0)
        return build(argv[2], strtoull(argv[3], NULL, 10), strtoull(argv[4], NULL, 10));
    if (argc >= 5 && strcmp(argv[1], "open") == 0)
        return open_and_read(argv[2], strtoull(argv[3], NULL, 10), argv[4]);
    if (argc >= 5 && strcmp(argv[1], "kill") == 0)
        return append_and_kill(argv[2], strtoull(argv[3], NULL, 10), strtoull(argv[4], NULL, 10));
    fprintf(stderr,
            "usage: scale build DIR EVENTS STREAMS | scale open DIR STREAMS LABEL | scale kill DIR STREAMS EVENTS\n");
    return 2;
}
