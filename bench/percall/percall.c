/*
 * percall.c: what one call of the C API costs, in nanoseconds, for the calls whose work
 * is small (so that the boundary's own cost shows): evs_cursor_next over 1M events,
 * evs_account_get, evs_stream_version, evs_position_at; and, with the version-1 header,
 * evs_cursor_next_batch per event.
 *
 * It builds against the header of version 1 and against the pre-1.0 one (no
 * EVS_ABI_VERSION, no struct_size), so that bench/percall/run.sh can run it on both
 * libraries and show what removing the per-call block_on saved.
 *
 *   percall DIR [EVENTS]      (DIR: an empty directory for the store)
 * Prints one line per call: "name ns_per_call calls".
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "evstore.h"

#ifdef EVS_ABI_VERSION
#define INIT(type, var) var = (type)EVS_STRUCT_INIT(type)
#define ANY EVS_EXPECT_ANY
#else
#define INIT(type, var) memset(&var, 0, sizeof var)
#define ANY EVS_VERSION_ANY
#endif

static double now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e9 + (double)ts.tv_nsec;
}

static void die(const char *what, evs_status st)
{
    fprintf(stderr, "percall: %s: %s: %s\n", what, evs_status_name(st), evs_last_error_message());
    exit(1);
}

#define OK(call, what)                    \
    do {                                  \
        evs_status st_ = (call);          \
        if (st_ != EVS_OK)                \
            die((what), st_);             \
    } while (0)

/* The best of `rounds` timings of `n` calls of body, in ns per call. */
#define BEST_OF(rounds, n, result, body)                        \
    do {                                                        \
        int r_;                                                 \
        (result) = 1e300;                                       \
        for (r_ = 0; r_ < (rounds); r_++) {                     \
            long i_;                                            \
            double t0_ = now_ns(), dt_;                         \
            for (i_ = 0; i_ < (n); i_++) {                      \
                body;                                           \
            }                                                   \
            dt_ = (now_ns() - t0_) / (double)(n);               \
            if (dt_ < (result))                                 \
                (result) = dt_;                                 \
        }                                                       \
    } while (0)

/* The best of 3 passes over every event, in ns per event: one evs_cursor_next a call
 * (batch 0) or evs_cursor_next_batch with `batch` views a call. */
static double time_cursor(evs_store *s, size_t batch, uint64_t *sum, long *seen)
{
    static evs_event views[256];
    evs_cursor *c = NULL;
    double best = 1e300;
    int round;
    INIT(evs_event, views[0]);
    for (round = 0; round < 3; round++) {
        double t0, dt;
        long n = 0;
        OK(evs_read_all(s, 0, &c), "evs_read_all");
        t0 = now_ns();
        if (batch == 0) {
            while (evs_cursor_next(c, &views[0]) == EVS_OK) {
                *sum += views[0].payload_len;
                n++;
            }
        }
#ifdef EVS_ABI_VERSION
        else {
            size_t got = 0, k;
            while (evs_cursor_next_batch(c, views, batch, &got) == EVS_OK) {
                for (k = 0; k < got; k++)
                    *sum += views[k].payload_len;
                n += (long)got;
            }
        }
#endif
        dt = (now_ns() - t0) / (double)n;
        if (dt < best)
            best = dt;
        *seen = n;
        evs_cursor_free(c);
    }
    return best;
}

int main(int argc, char **argv)
{
    evs_store *s = NULL;
    evs_options *o;
    evs_account a;
    evs_event_input in;
    long events = argc > 2 ? atol(argv[2]) : 1000000;
    long i, batch = 1000, seen = 0;
    uint64_t sum = 0, p = 0;
    int64_t v = 0;
    double ns;
    static const char payload[100] = "{\"amount\":100}";
    evs_event_input *ev;

    if (argc < 2) {
        fprintf(stderr, "usage: percall DIR [EVENTS]\n");
        return 2;
    }
    o = evs_options_new();
    OK(evs_options_set_fsync(o, EVS_FSYNC_OS, 0), "evs_options_set_fsync");
    OK(evs_open(argv[1], o, &s, NULL), "evs_open");
    evs_options_free(o);

    ev = (evs_event_input *)calloc((size_t)batch, sizeof *ev);
    for (i = 0; i < batch; i++) {
        INIT(evs_event_input, in);
        in.event_type = "Ev";
        in.payload = (const uint8_t *)payload;
        in.payload_len = sizeof payload;
        in.schema_version = 1;
        ev[i] = in;
    }
    for (i = 0; i < events; i += batch)
        OK(evs_append(s, "stream-0", ANY, ev, (size_t)batch, NULL, NULL), "evs_append");
    free(ev);
    OK(evs_account_open(s, "alice", 100, NULL, &p), "evs_account_open");

    ns = time_cursor(s, 0, &sum, &seen);
    printf("evs_cursor_next %.1f %ld\n", ns, seen);
#ifdef EVS_ABI_VERSION
    ns = time_cursor(s, 256, &sum, &seen);
    printf("evs_cursor_next_batch/event %.1f %ld\n", ns, seen);
#endif

    INIT(evs_account, a);
    BEST_OF(5, 1000000, ns, OK(evs_account_get(s, "alice", &a), "evs_account_get"));
    printf("evs_account_get %.1f %d\n", ns, 1000000);
    BEST_OF(5, 1000000, ns, OK(evs_stream_version(s, "stream-0", &v), "evs_stream_version"));
    printf("evs_stream_version %.1f %d\n", ns, 1000000);
    BEST_OF(5, 1000000, ns, OK(evs_position_at(s, 0, &p), "evs_position_at"));
    printf("evs_position_at %.1f %d\n", ns, 1000000);
    BEST_OF(5, 1000000, ns, (void)evs_status_name(EVS_ERR_IO));
    printf("evs_status_name %.1f %d\n", ns, 1000000);

    OK(evs_close(s), "evs_close");
    return sum == 0;
}
