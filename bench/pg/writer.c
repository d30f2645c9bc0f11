/*
 * pg_bench_c: the `evstore` row's writer and reader processes of bench/pg, through the
 * C API (libevstore), as an application would use the PostgreSQL backend.
 *
 *   pg_bench_c writer URL ID TASKS BATCH START_AT_MS SECS
 *     opens the store, starts TASKS threads at START_AT_MS (Unix ms); each appends BATCH
 *     events at a time with evs_append to a stream of its own ("w<ID>-<task>-b<BATCH>"),
 *     with exact expected versions and event ids, for SECS seconds. Prints
 *     "RESULT events=N appends=N elapsed=S p50_us=N p99_us=N".
 *   pg_bench_c reader URL
 *     reads the whole log from position 0 with evs_read_all and evs_cursor_next_batch,
 *     checking positions. Prints "RESULT events=N out_of_order=N bytes=N elapsed=S".
 *
 * Events are 100 bytes; the first 8 are the append's start time (Unix µs, little
 * endian), from which the bench's subscriber measures delivery latency. Event ids are
 * (ID << 32 | task + 1000 * BATCH) and the task's serial number, little endian.
 * Exit status 1, with the library's message on stderr, on any failure.
 */
#define _POSIX_C_SOURCE 200809L

#include <evstore.h>

#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static uint64_t now_us(void) {
    struct timespec t;
    clock_gettime(CLOCK_REALTIME, &t);
    return (uint64_t)t.tv_sec * 1000000u + (uint64_t)t.tv_nsec / 1000u;
}

static uint64_t mono_us(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (uint64_t)t.tv_sec * 1000000u + (uint64_t)t.tv_nsec / 1000u;
}

static void put_le64(uint8_t *p, uint64_t v) {
    for (int i = 0; i < 8; i++) {
        p[i] = (uint8_t)(v >> (8 * i));
    }
}

static void fail(const char *what, evs_status st) {
    fprintf(stderr, "pg_bench_c: %s: %s: %s\n", what, evs_status_name(st),
            evs_last_error_message());
    exit(1);
}

static uint64_t number(const char *s, const char *what) {
    char *end = NULL;
    unsigned long long v = strtoull(s, &end, 10);
    if (end == s || *end != '\0') {
        fprintf(stderr, "pg_bench_c: %s: '%s' is not a number\n", what, s);
        exit(2);
    }
    return (uint64_t)v;
}

static evs_store *open_store(const char *url) {
    evs_store *s = NULL;
    evs_status st = evs_open(url, NULL, &s, NULL);
    if (st != EVS_OK) {
        fail("evs_open", st);
    }
    return s;
}

struct task {
    evs_store *store;
    uint64_t proc_id, task, batch;
    uint64_t deadline_us; /* monotonic */
    uint64_t events;
    uint64_t *lat; /* append latencies, µs */
    size_t n_lat, cap_lat;
    evs_status error;
    char message[512];
};

static void *append_loop(void *arg) {
    struct task *t = arg;
    char stream[64];
    snprintf(stream, sizeof stream, "w%llu-%llu-b%llu", (unsigned long long)t->proc_id,
             (unsigned long long)t->task, (unsigned long long)t->batch);
    size_t n = (size_t)t->batch;
    evs_event_input *in = calloc(n, sizeof *in);
    uint8_t *data = calloc(n, 100);
    if (in == NULL || data == NULL) {
        t->error = EVS_ERR_INTERNAL;
        snprintf(t->message, sizeof t->message, "out of memory");
        return NULL;
    }
    int64_t expected = EVS_EXPECT_NO_STREAM;
    uint64_t serial = 0;
    uint64_t id_hi = (t->proc_id << 32) | (t->task + 1000 * t->batch);
    while (mono_us() < t->deadline_us) {
        uint64_t t0 = mono_us();
        uint64_t sent = now_us();
        for (size_t i = 0; i < n; i++) {
            uint8_t *d = data + 100 * i;
            put_le64(d, sent);
            uint64_t x = (serial ^ (t->proc_id << 40) ^ (t->task << 20)) | 1;
            for (size_t k = 8; k < 100; k++) {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                d[k] = (uint8_t)x;
            }
            in[i] = (evs_event_input)EVS_STRUCT_INIT(evs_event_input);
            in[i].event_type = "E";
            in[i].payload = d;
            in[i].payload_len = 100;
            put_le64(in[i].id, id_hi);
            put_le64(in[i].id + 8, serial);
            serial++;
        }
        uint64_t first = 0, version = 0;
        evs_status st = evs_append(t->store, stream, expected, in, n, &first, &version);
        if (st != EVS_OK) {
            t->error = st;
            snprintf(t->message, sizeof t->message, "evs_append to %s: %s", stream,
                     evs_last_error_message());
            break;
        }
        if (t->n_lat == t->cap_lat) {
            size_t cap = t->cap_lat ? 2 * t->cap_lat : 4096;
            uint64_t *grown = realloc(t->lat, cap * sizeof *grown);
            if (grown == NULL) {
                t->error = EVS_ERR_INTERNAL;
                snprintf(t->message, sizeof t->message, "out of memory");
                break;
            }
            t->lat = grown;
            t->cap_lat = cap;
        }
        t->lat[t->n_lat++] = mono_us() - t0;
        expected = (int64_t)version;
        t->events += n;
    }
    free(in);
    free(data);
    return NULL;
}

static int by_value(const void *a, const void *b) {
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return (x > y) - (x < y);
}

static uint64_t percentile(const uint64_t *sorted, size_t n, double p) {
    if (n == 0) {
        return 0;
    }
    size_t i = (size_t)(((double)n - 1.0) * p + 0.5);
    return sorted[i];
}

static int writer(const char *url, uint64_t proc_id, uint64_t tasks, uint64_t batch,
                  uint64_t start_at_ms, uint64_t secs) {
    if (tasks == 0 || batch == 0) {
        fprintf(stderr, "pg_bench_c: TASKS and BATCH must be at least 1\n");
        return 2;
    }
    evs_store *store = open_store(url);
    uint64_t now_ms = now_us() / 1000;
    if (start_at_ms > now_ms) {
        uint64_t wait = start_at_ms - now_ms;
        struct timespec d = {(time_t)(wait / 1000), (long)(wait % 1000) * 1000000L};
        nanosleep(&d, NULL);
    }
    uint64_t began = mono_us();
    struct task *t = calloc(tasks, sizeof *t);
    pthread_t *th = calloc(tasks, sizeof *th);
    if (t == NULL || th == NULL) {
        fprintf(stderr, "pg_bench_c: out of memory\n");
        return 1;
    }
    for (uint64_t i = 0; i < tasks; i++) {
        t[i].store = store;
        t[i].proc_id = proc_id;
        t[i].task = i;
        t[i].batch = batch;
        t[i].deadline_us = began + secs * 1000000u;
        if (pthread_create(&th[i], NULL, append_loop, &t[i]) != 0) {
            fprintf(stderr, "pg_bench_c: pthread_create failed\n");
            return 1;
        }
    }
    uint64_t events = 0;
    size_t appends = 0;
    int failed = 0;
    for (uint64_t i = 0; i < tasks; i++) {
        pthread_join(th[i], NULL);
        events += t[i].events;
        appends += t[i].n_lat;
        if (t[i].error != EVS_OK) {
            fprintf(stderr, "pg_bench_c: %s: %s\n", evs_status_name(t[i].error), t[i].message);
            failed = 1;
        }
    }
    double elapsed = (double)(mono_us() - began) / 1e6;
    uint64_t *lat = malloc((appends ? appends : 1) * sizeof *lat);
    if (lat == NULL) {
        fprintf(stderr, "pg_bench_c: out of memory\n");
        return 1;
    }
    size_t k = 0;
    for (uint64_t i = 0; i < tasks; i++) {
        memcpy(lat + k, t[i].lat, t[i].n_lat * sizeof *lat);
        k += t[i].n_lat;
        free(t[i].lat);
    }
    qsort(lat, appends, sizeof *lat, by_value);
    evs_status st = evs_close(store);
    if (st != EVS_OK) {
        fail("evs_close", st);
    }
    if (failed) {
        return 1;
    }
    printf("RESULT events=%llu appends=%llu elapsed=%.3f p50_us=%llu p99_us=%llu\n",
           (unsigned long long)events, (unsigned long long)appends, elapsed,
           (unsigned long long)percentile(lat, appends, 0.5),
           (unsigned long long)percentile(lat, appends, 0.99));
    free(lat);
    free(t);
    free(th);
    return 0;
}

static int reader(const char *url) {
    evs_store *store = open_store(url);
    uint64_t t0 = mono_us();
    evs_cursor *c = NULL;
    evs_status st = evs_read_all(store, 0, &c);
    if (st != EVS_OK) {
        fail("evs_read_all", st);
    }
    enum { CAP = 1024 };
    static evs_event out[CAP];
    out[0] = (evs_event)EVS_STRUCT_INIT(evs_event);
    uint64_t next = 0, n = 0, bytes = 0, out_of_order = 0;
    for (;;) {
        size_t got = 0;
        st = evs_cursor_next_batch(c, out, CAP, &got);
        if (st == EVS_END) {
            break;
        }
        if (st != EVS_OK) {
            fail("evs_cursor_next_batch", st);
        }
        for (size_t i = 0; i < got; i++) {
            const evs_event *e = &out[i];
            if (e->position != next) {
                out_of_order++;
            }
            bytes += e->payload_len + e->metadata_len + e->stream_len + e->event_type_len;
            next = e->position + 1;
            n++;
        }
    }
    double elapsed = (double)(mono_us() - t0) / 1e6;
    evs_cursor_free(c);
    st = evs_close(store);
    if (st != EVS_OK) {
        fail("evs_close", st);
    }
    printf("RESULT events=%llu out_of_order=%llu bytes=%llu elapsed=%.3f\n",
           (unsigned long long)n, (unsigned long long)out_of_order, (unsigned long long)bytes,
           elapsed);
    return 0;
}

int main(int argc, char **argv) {
    if (argc == 8 && strcmp(argv[1], "writer") == 0) {
        return writer(argv[2], number(argv[3], "ID"), number(argv[4], "TASKS"),
                      number(argv[5], "BATCH"), number(argv[6], "START_AT_MS"),
                      number(argv[7], "SECS"));
    }
    if (argc == 3 && strcmp(argv[1], "reader") == 0) {
        return reader(argv[2]);
    }
    fprintf(stderr,
            "usage: pg_bench_c writer URL ID TASKS BATCH START_AT_MS SECS\n"
            "       pg_bench_c reader URL\n");
    return 2;
}
