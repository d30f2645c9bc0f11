/* The evstore side of each workload, through the public C API only (include/evstore.h).
 * Built with -DBENCH_NO_EVSTORE, every evstore side reports that it was left out, so the
 * SQLite and disk halves can run before the library exists. */
#define _GNU_SOURCE
#include "bench.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#ifdef BENCH_NO_EVSTORE

static int left_out(const char *wl) {
    problem("%s evstore: not measured (bench built with -DBENCH_NO_EVSTORE)", wl);
    return -1;
}
const char *evs_lib_version(void) { return "(not built in)"; }
int evs_single(double *m) { (void)m; return left_out("1"); }
int evs_threads(double *m) { (void)m; return left_out("2"); }
int evs_nondurable(double *m) { (void)m; return left_out("3"); }
int evs_nondurable_multi(double *m) { (void)m; return left_out("3"); }
int evs_expected(double *m) { (void)m; return left_out("4"); }
int evs_reads(double *m) { (void)m; return left_out("5"); }
int evs_accounts(double *m) { (void)m; return left_out("6"); }
int evs_open_nosnap(double *m) { (void)m; return left_out("7"); }
int evs_open_snap(double *m) { (void)m; return left_out("7"); }
int evs_open_killed(double *m) { (void)m; return left_out("7"); }
int evs_prepare_open(void) { return -1; }
int evs_compact_half(double *m) { (void)m; return left_out("8"); }
int evs_compact_never(double *m) { (void)m; return left_out("8"); }
int evs_consumer_catchup(double *m) { (void)m; return left_out("9"); }
int evs_consumer_readall(double *m) { (void)m; return left_out("9"); }
int evs_consumer_live(double *m) { (void)m; return left_out("9"); }
int evs_prepare_consumers(void) { return -1; }
int evs_subjects_sealed(double *m) { (void)m; return left_out("10"); }
int evs_subjects_plain(double *m) { (void)m; return left_out("10"); }

#else

#include <pthread.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include "evstore.h"

const char *evs_lib_version(void) { return evs_version(); }

/* Every evstore call is checked; a failure is reported with the status name and the
 * library's own message, and the side stops (the row shows FAILED). */
static int evs_failed(const char *wl, const char *call, evs_status rc, const char *ctx) {
    problem("%s evstore: %s returned %s (%d): \"%s\"%s%s", wl, call, evs_status_name(rc), (int)rc,
            evs_last_error_message(), ctx && *ctx ? " " : "", ctx ? ctx : "");
    return -1;
}
#define EVS_TRY(wl, call, ctx)                                                         \
    do {                                                                               \
        evs_status rc_ = (call);                                                       \
        if (rc_ != EVS_OK) {                                                           \
            evs_failed(wl, #call, rc_, ctx);                                           \
            goto fail;                                                                 \
        }                                                                              \
    } while (0)

/* Opens store `name` (`fresh`: removed first). `compaction_bps`: NULL for the default
 * compaction options, else the budget in bytes/s with automatic compaction off. */
static evs_store *store_open_with(const char *wl, const char *name, evs_fsync_policy policy, int fresh,
                                  evs_recovery_info *info, const uint64_t *compaction_bps) {
    char path[4096];
    path_in_dir(path, sizeof path, name);
    if (fresh) remove_tree(path);
    evs_store *s = NULL;
    evs_options *o = evs_options_new();
    if (!o) {
        problem("%s evstore: evs_options_new returned NULL", wl);
        return NULL;
    }
    /* the window is used only by BATCH (docs/api-decisions.md) */
    EVS_TRY(wl, evs_options_set_fsync(o, policy, policy == EVS_FSYNC_BATCH ? 5 : 0), "");
    /* no automatic snapshots: the open workload takes its own */
    EVS_TRY(wl, evs_options_set_snapshot_every(o, 0), "");
    if (compaction_bps) EVS_TRY(wl, evs_options_set_compaction(o, *compaction_bps, 0), "");
    EVS_TRY(wl, evs_open(path, o, &s, info), path);
fail:
    evs_options_free(o);
    return s;
}

static evs_store *store_open(const char *wl, const char *name, evs_fsync_policy policy, int fresh,
                             evs_recovery_info *info) {
    return store_open_with(wl, name, policy, fresh, info, NULL);
}

static void store_close(const char *wl, evs_store *s) {
    evs_status rc = evs_close(s);
    if (rc != EVS_OK) evs_failed(wl, "evs_close", rc, "");
}

static evs_event_input bench_event(const uint8_t *payload) {
    evs_event_input ev = EVS_STRUCT_INIT(evs_event_input);
    ev.event_type = EVENT_TYPE;
    ev.payload = payload;
    ev.payload_len = (size_t)cfg.payload_size;
    ev.schema_version = 1;
    return ev;
}

static int check_stream(const char *wl, evs_store *s, const char *stream, long n) {
    int64_t v = -2;
    EVS_TRY(wl, evs_stream_version(s, stream, &v), stream);
    if (v != n - 1) {
        problem("%s evstore: evs_stream_version(%s) = %lld after %ld appends (expected %ld)", wl, stream,
                (long long)v, n, n - 1);
        return -1;
    }
    return 0;
fail:
    return -1;
}

/* Bytes of every file of store `name` (its log, and whatever else it keeps). */
static long long store_bytes(const char *name) {
    char path[4096];
    path_in_dir(path, sizeof path, name);
    return tree_bytes(path);
}

/* ---------- 1: durable single appends, EVS_FSYNC_ALWAYS ---------- */
int evs_single(double *m) {
    const char *wl = "1";
    char ctx[64];
    int rc = -1;
    uint8_t *payload = malloc(cfg.payload_size);
    evs_store *s = store_open(wl, "w1-evstore", EVS_FSYNC_ALWAYS, 1, NULL);
    if (!s) goto fail;
    long n = 0;
    double t0 = now_s(), deadline = t0 + cfg.durable_budget_s;
    for (; n < cfg.single_events && (n & 15 || now_s() < deadline); n++) {
        make_payload(payload, n);
        evs_event_input ev = bench_event(payload);
        uint64_t pos = 0, ver = 0;
        snprintf(ctx, sizeof ctx, "(append #%ld)", n);
        EVS_TRY(wl, evs_append(s, "single", EVS_EXPECT_ANY, &ev, 1, &pos, &ver), ctx);
        if (pos != (uint64_t)n || ver != (uint64_t)n) {
            problem("1 evstore: append #%ld got position %llu, stream version %llu", n, (unsigned long long)pos,
                    (unsigned long long)ver);
            goto fail;
        }
    }
    double el = now_s() - t0;
    m[0] = n / el;
    if (check_stream(wl, s, "single", n)) goto fail;
    evs_stats st = EVS_STRUCT_INIT(evs_stats);
    memset(&st, 0, sizeof st);
    st.struct_size = sizeof st;
    EVS_TRY(wl, evs_stats_get(s, &st), "");
    note("  evstore ALWAYS: %ld events in %.2f s (stats: %llu appends, %llu fsyncs)", n, el,
         (unsigned long long)st.appends, (unsigned long long)st.fsyncs);
    if (st.fsyncs < (uint64_t)n)
        problem("1 evstore: EVS_FSYNC_ALWAYS, one thread: %ld appends returned but evs_stats_get counts only %llu fsyncs",
                n, (unsigned long long)st.fsyncs);
    store_close(wl, s);
    s = NULL;
    char events_dir[4200];
    path_in_dir(events_dir, sizeof events_dir, "w1-evstore/events");
    long long bytes = dir_bytes(events_dir, ".wal");
    if (n > 0 && bytes > 0 && bytes / n < 4096) {
        evs_record_bytes = (long)(bytes / n);
        note("  evstore's log: %lld bytes for %ld events after close, %ld bytes an event", bytes, n, evs_record_bytes);
    } else {
        note("  NOTE: evstore's log is %lld bytes for %ld events after a clean close (segments not truncated to "
             "their logical size?); the raw disk sides use an estimated record size", bytes, n);
    }
    rc = 0;
fail:
    if (s) store_close(wl, s);
    free(payload);
    return rc;
}

/* ---------- 2: durable appends from several threads (group commit) ---------- */
typedef struct {
    evs_store *s;
    int idx;
    pthread_barrier_t *bar;
    long done;
    int failed;
} evs_thread_arg;

static void *evs_thread_main(void *p) {
    evs_thread_arg *a = p;
    const char *wl = "2";
    char stream[32], ctx[64];
    uint8_t *payload = malloc(cfg.payload_size);
    snprintf(stream, sizeof stream, "writer-%d", a->idx);
    pthread_barrier_wait(a->bar);
    double deadline = now_s() + cfg.durable_budget_s;
    for (long i = 0; i < cfg.thread_events && ((i & 7) || now_s() < deadline); i++) {
        make_payload(payload, a->idx * 1000000L + i);
        evs_event_input ev = bench_event(payload);
        uint64_t ver = 0;
        snprintf(ctx, sizeof ctx, "(thread %d, append #%ld)", a->idx, i);
        EVS_TRY(wl, evs_append(a->s, stream, EVS_EXPECT_ANY, &ev, 1, NULL, &ver), ctx);
        if (ver != (uint64_t)i) {
            problem("2 evstore: thread %d append #%ld got stream version %llu", a->idx, i, (unsigned long long)ver);
            goto fail;
        }
        a->done++;
    }
    free(payload);
    return NULL;
fail:
    a->failed = 1;
    free(payload);
    return NULL;
}

int evs_threads(double *m) {
    const char *wl = "2";
    int rc = -1;
    evs_store *s = store_open(wl, "w2-evstore", EVS_FSYNC_ALWAYS, 1, NULL);
    if (!s) return -1;
    pthread_barrier_t bar;
    pthread_barrier_init(&bar, NULL, cfg.threads + 1);
    pthread_t th[64];
    evs_thread_arg args[64];
    for (int i = 0; i < cfg.threads; i++) {
        args[i] = (evs_thread_arg){.s = s, .idx = i, .bar = &bar};
        pthread_create(&th[i], NULL, evs_thread_main, &args[i]);
    }
    pthread_barrier_wait(&bar);
    double t0 = now_s();
    long total = 0;
    int failed = 0;
    for (int i = 0; i < cfg.threads; i++) {
        pthread_join(th[i], NULL);
        total += args[i].done;
        failed |= args[i].failed;
    }
    double el = now_s() - t0;
    pthread_barrier_destroy(&bar);
    m[0] = total / el;
    if (failed) goto fail;
    for (int i = 0; i < cfg.threads; i++) {
        char stream[32];
        snprintf(stream, sizeof stream, "writer-%d", i);
        if (check_stream(wl, s, stream, args[i].done)) goto fail;
    }
    evs_stats st = EVS_STRUCT_INIT(evs_stats);
    memset(&st, 0, sizeof st);
    st.struct_size = sizeof st;
    EVS_TRY(wl, evs_stats_get(s, &st), "");
    if (st.events != (uint64_t)total) {
        problem("2 evstore: evs_stats_get counts %llu events after %ld appends", (unsigned long long)st.events, total);
        goto fail;
    }
    note("  evstore ALWAYS, %d threads: %ld events in %.2f s (stats: %llu appends, %llu fsyncs)", cfg.threads, total,
         el, (unsigned long long)st.appends, (unsigned long long)st.fsyncs);
    rc = 0;
fail:
    store_close(wl, s);
    return rc;
}

/* ---------- 3: non-durable appends, EVS_FSYNC_BATCH (5 ms) ---------- */
int evs_nondurable(double *m) {
    const char *wl = "3";
    int rc = -1;
    char stream[32], ctx[64];
    uint8_t *payload = malloc(cfg.payload_size);
    evs_store *s = store_open(wl, W3_EVS, EVS_FSYNC_BATCH, 1, NULL);
    if (!s) goto fail;
    long nstreams = nd_stream_count();
    double t0 = now_s();
    for (long i = 0; i < cfg.nd_events; i++) {
        make_payload(payload, i);
        nd_stream_name(stream, sizeof stream, i);
        evs_event_input ev = bench_event(payload);
        uint64_t pos = 0, ver = 0;
        snprintf(ctx, sizeof ctx, "(append #%ld)", i);
        EVS_TRY(wl, evs_append(s, stream, EVS_EXPECT_ANY, &ev, 1, &pos, &ver), ctx);
        if (pos != (uint64_t)i || ver != (uint64_t)(i / nstreams)) {
            problem("3 evstore: append #%ld to %s got position %llu, version %llu (expected %ld, %ld)", i, stream,
                    (unsigned long long)pos, (unsigned long long)ver, i, i / nstreams);
            goto fail;
        }
    }
    double el = now_s() - t0;
    m[0] = cfg.nd_events / el;
    nd_stream_name(stream, sizeof stream, cfg.nd_events - 1);
    if (check_stream(wl, s, stream, cfg.events_per_stream)) goto fail;
    store_close(wl, s);
    s = NULL;
    m[1] = (double)store_bytes(W3_EVS) / cfg.nd_events;
    note("  evstore BATCH: %ld events in %.2f s, %.1f bytes on disk an event", cfg.nd_events, el, m[1]);
    rc = 0;
fail:
    if (s) store_close(wl, s);
    free(payload);
    return rc;
}

/* The same events, 100 per evs_append (one stream per call, round-robin over the same
 * streams), into a store of its own that is removed afterwards. */
int evs_nondurable_multi(double *m) {
    const char *wl = "3";
    enum { PER_CALL = 100 };
    int rc = -1;
    char stream[32], ctx[64];
    uint8_t *payloads = malloc((size_t)cfg.payload_size * PER_CALL);
    evs_event_input ev[PER_CALL];
    evs_store *s = store_open(wl, "w3-evstore-multi", EVS_FSYNC_BATCH, 1, NULL);
    if (!s) goto fail;
    double t0 = now_s();
    for (long i = 0; i < cfg.nd_events; i += PER_CALL) {
        long n = cfg.nd_events - i < PER_CALL ? cfg.nd_events - i : PER_CALL;
        for (long k = 0; k < n; k++) {
            make_payload(payloads + k * cfg.payload_size, i + k);
            ev[k] = bench_event(payloads + k * cfg.payload_size);
        }
        nd_stream_name(stream, sizeof stream, i / PER_CALL);
        uint64_t pos = 0, ver = 0;
        snprintf(ctx, sizeof ctx, "(append of events #%ld..)", i);
        EVS_TRY(wl, evs_append(s, stream, EVS_EXPECT_ANY, ev, (size_t)n, &pos, &ver), ctx);
        if (pos != (uint64_t)i) {
            problem("3 evstore: the append of events #%ld.. got position %llu", i, (unsigned long long)pos);
            goto fail;
        }
    }
    double el = now_s() - t0;
    m[0] = cfg.nd_events / el;
    note("  evstore BATCH, %d per call: %ld events in %.2f s", PER_CALL, cfg.nd_events, el);
    rc = 0;
fail:
    if (s) store_close(wl, s);
    free(payloads);
    char path[4096];
    path_in_dir(path, sizeof path, "w3-evstore-multi");
    remove_tree(path);
    return rc;
}

/* ---------- 4: appends with an expected-version check ---------- */
int evs_expected(double *m) {
    const char *wl = "4";
    int rc = -1;
    char stream[32], ctx[96];
    uint8_t *payload = malloc(cfg.payload_size);
    long *cur = malloc(sizeof(long) * cfg.ev_streams);
    for (int k = 0; k < cfg.ev_streams; k++) cur[k] = -1;
    evs_store *s = store_open(wl, "w4-evstore", EVS_FSYNC_BATCH, 1, NULL);
    if (!s) goto fail;
    rng r = {4444};
    long probes = 0, conflicts = 0;
    double t0 = now_s();
    for (long i = 0; i < cfg.ev_events; i++) {
        int k = (int)rng_below(&r, cfg.ev_streams);
        snprintf(stream, sizeof stream, "stream-%04d", k);
        make_payload(payload, i);
        evs_event_input ev = bench_event(payload);
        if (i % 1000 == 999) { /* a stale writer: must be refused */
            probes++;
            evs_status st = evs_append(s, stream, cur[k] + 1, &ev, 1, NULL, NULL);
            if (st == EVS_ERR_WRONG_EXPECTED_VERSION) conflicts++;
            else {
                snprintf(ctx, sizeof ctx, "(expected version %ld on %s whose version is %ld)", cur[k] + 1, stream, cur[k]);
                evs_failed(wl, "evs_append", st, ctx);
                goto fail;
            }
        }
        int64_t expected = cur[k] < 0 ? EVS_EXPECT_NO_STREAM : cur[k];
        uint64_t ver = 0;
        snprintf(ctx, sizeof ctx, "(append #%ld to %s expecting %lld)", i, stream, (long long)expected);
        EVS_TRY(wl, evs_append(s, stream, expected, &ev, 1, NULL, &ver), ctx);
        if (ver != (uint64_t)(cur[k] + 1)) {
            problem("4 evstore: %s got version %llu, expected %ld", ctx, (unsigned long long)ver, cur[k] + 1);
            goto fail;
        }
        cur[k]++;
    }
    double el = now_s() - t0;
    m[0] = cfg.ev_events / el;
    evs_stats st = EVS_STRUCT_INIT(evs_stats);
    memset(&st, 0, sizeof st);
    st.struct_size = sizeof st;
    EVS_TRY(wl, evs_stats_get(s, &st), "");
    if (st.events != (uint64_t)cfg.ev_events) {
        problem("4 evstore: evs_stats_get counts %llu events, expected %ld", (unsigned long long)st.events, cfg.ev_events);
        goto fail;
    }
    note("  evstore BATCH: %ld checked appends in %.2f s (%ld of %ld stale ones refused)", cfg.ev_events, el, conflicts,
         probes);
    rc = 0;
fail:
    if (s) store_close(wl, s);
    free(payload);
    free(cur);
    return rc;
}

/* ---------- 5: reads of the workload-3 store ---------- */
static long touch_event(const evs_event *e) {
    return (long)(e->position + e->stream_version + e->timestamp_us + e->stream_len + e->event_type_len +
                  e->payload_len + (e->payload_len ? e->payload[e->payload_len - 1] : 0) +
                  (e->stream_len ? (uint8_t)e->stream[0] : 0) + (uint8_t)e->event_type[0]);
}

/* Reads cfg.stream_reads streams (a different one each time, or with `same` the same
 * one each time), checking each event's stream and version; the mean microseconds a read,
 * or -1 after calling problem(). */
static double evs_time_stream_reads(evs_store *s, int same, volatile long *sink) {
    const char *wl = "5";
    char stream[32];
    long nstreams = nd_stream_count();
    evs_cursor *c = NULL;
    evs_event e = EVS_STRUCT_INIT(evs_event);
    evs_status st;
    double t0 = now_s();
    for (int rep = 0; rep < cfg.stream_reads; rep++) {
        snprintf(stream, sizeof stream, "stream-%04ld", (same ? 17 : rep * 7919L) % nstreams);
        EVS_TRY(wl, evs_read_stream(s, stream, 0, &c), stream);
        long v = 0;
        while ((st = evs_cursor_next(c, &e)) == EVS_OK) {
            if (e.stream_version != (uint64_t)v || e.stream_len != strlen(stream) ||
                memcmp(e.stream, stream, e.stream_len)) {
                problem("5 evstore: reading %s gave version %llu of stream %.*s as event #%ld", stream,
                        (unsigned long long)e.stream_version, (int)e.stream_len, e.stream, v);
                goto fail;
            }
            *sink += touch_event(&e);
            v++;
        }
        if (st != EVS_END) {
            evs_failed(wl, "evs_cursor_next", st, stream);
            goto fail;
        }
        evs_cursor_free(c);
        c = NULL;
        if (v != cfg.events_per_stream) {
            problem("5 evstore: reading %s gave %ld events, expected %ld", stream, v, cfg.events_per_stream);
            goto fail;
        }
    }
    return (now_s() - t0) / cfg.stream_reads * 1e6;
fail:
    evs_cursor_free(c);
    return -1;
}

int evs_reads(double *m) {
    const char *wl = "5";
    int rc = -1;
    volatile long sink = 0;
    evs_cursor *c = NULL;
    evs_event e = EVS_STRUCT_INIT(evs_event);
    evs_status st;
    evs_store *s = store_open(wl, W3_EVS, EVS_FSYNC_BATCH, 0, NULL);
    if (!s) return -1;

    long n = 0, plen = 0;
    double t0 = now_s();
    EVS_TRY(wl, evs_read_all(s, 0, &c), "");
    while ((st = evs_cursor_next(c, &e)) == EVS_OK) {
        if (e.position != (uint64_t)n) {
            problem("5 evstore: read all gave position %llu as event #%ld", (unsigned long long)e.position, n);
            goto fail;
        }
        sink += touch_event(&e);
        plen += e.payload_len;
        n++;
    }
    double el = now_s() - t0;
    if (st != EVS_END) {
        evs_failed(wl, "evs_cursor_next", st, "(read all)");
        goto fail;
    }
    evs_cursor_free(c);
    c = NULL;
    m[0] = n / el;
    if (n != cfg.nd_events || plen != (long)cfg.nd_events * cfg.payload_size) {
        problem("5 evstore: read all gave %ld events, %ld payload bytes (expected %ld, %ld)", n, plen, cfg.nd_events,
                (long)cfg.nd_events * cfg.payload_size);
        goto fail;
    }

    /* cold: a different stream each time, its first read since the open; warm: the
     * same one again and again */
    if ((m[1] = evs_time_stream_reads(s, 0, &sink)) < 0) goto fail;
    if ((m[4] = evs_time_stream_reads(s, 1, &sink)) < 0) goto fail;

    /* read all through the batch cursor: views into the cursor's buffer, 256 a call */
    {
        enum { CAP = 256 };
        static evs_event batch[CAP];
        for (int k = 0; k < CAP; k++) batch[k] = (evs_event)EVS_STRUCT_INIT(evs_event);
        size_t got = 0;
        long nb = 0;
        t0 = now_s();
        EVS_TRY(wl, evs_read_all(s, 0, &c), "(batch)");
        while ((st = evs_cursor_next_batch(c, batch, CAP, &got)) == EVS_OK) {
            for (size_t k = 0; k < got; k++) {
                if (batch[k].position != (uint64_t)nb) {
                    problem("5 evstore: the batch cursor gave position %llu as event #%ld",
                            (unsigned long long)batch[k].position, nb);
                    goto fail;
                }
                sink += touch_event(&batch[k]);
                nb++;
            }
        }
        double elb = now_s() - t0;
        if (st != EVS_END || nb != cfg.nd_events) {
            problem("5 evstore: the batch cursor ended with %s after %ld events", evs_status_name(st), nb);
            goto fail;
        }
        evs_cursor_free(c);
        c = NULL;
        m[3] = nb / elb;
    }

    t0 = now_s();
    for (int rep = 0; rep < cfg.last10_reads; rep++) {
        EVS_TRY(wl, evs_read_all_backward(s, UINT64_MAX, &c), "");
        for (int k = 0; k < 10; k++) {
            st = evs_cursor_next(c, &e);
            if (st != EVS_OK) {
                evs_failed(wl, "evs_cursor_next", st, "(backward)");
                goto fail;
            }
            if (e.position != (uint64_t)(cfg.nd_events - 1 - k)) {
                problem("5 evstore: backward read gave position %llu as the %d-th last", (unsigned long long)e.position,
                        k + 1);
                goto fail;
            }
            sink += touch_event(&e);
        }
        evs_cursor_free(c);
        c = NULL;
    }
    m[2] = (now_s() - t0) / cfg.last10_reads * 1e6;
    note("  evstore: read all %ld events in %.2f s (batch cursor %.0f events/s); one stream %.0f us (again: %.0f us); "
         "last 10 %.1f us",
         n, el, m[3], m[1], m[4], m[2]);
    rc = 0;
fail:
    evs_cursor_free(c);
    store_close(wl, s);
    return rc;
}

/* ---------- 6: the account workload ---------- */
int evs_accounts(double *m) {
    const char *wl = "6";
    int rc = -1;
    char a[32], b[32], ctx[128];
    evs_store *s = store_open(wl, "w6-evstore", EVS_FSYNC_BATCH, 1, NULL);
    if (!s) return -1;
    for (int i = 0; i < cfg.accounts; i++) { /* untimed */
        account_id(a, sizeof a, i);
        EVS_TRY(wl, evs_account_open(s, a, plan.initial_balance, NULL, NULL), a);
    }
    long wrong = 0;
    double t0 = now_s();
    for (long i = 0; i < plan.nops; i++) {
        const acct_op *op = &plan.ops[i];
        uint64_t pos;
        evs_status st;
        account_id(a, sizeof a, op->from);
        if (op->kind == OP_DEPOSIT) st = evs_account_deposit(s, a, op->amount, &pos);
        else if (op->kind == OP_WITHDRAW) st = evs_account_withdraw(s, a, op->amount, &pos);
        else {
            account_id(b, sizeof b, op->to);
            st = evs_account_transfer(s, a, b, op->amount, &pos);
        }
        int out = st == EVS_OK ? OUT_OK : st == EVS_ERR_INSUFFICIENT_FUNDS ? OUT_INSUFFICIENT : -1;
        if (out < 0) {
            snprintf(ctx, sizeof ctx, "(operation #%ld: %s %lld from %s%s%s)", i,
                     op->kind == OP_DEPOSIT ? "deposit" : op->kind == OP_WITHDRAW ? "withdraw" : "transfer",
                     (long long)op->amount, a, op->kind == OP_TRANSFER ? " to " : "", op->kind == OP_TRANSFER ? b : "");
            evs_failed(wl, "evs_account_*", st, ctx);
            goto fail;
        }
        if (out != op->outcome && wrong++ < 3)
            problem("6 evstore: operation #%ld (%s %lld, account %s) returned %s; the model says %s", i,
                    op->kind == OP_DEPOSIT ? "deposit" : op->kind == OP_WITHDRAW ? "withdraw" : "transfer",
                    (long long)op->amount, a, evs_status_name(st),
                    op->outcome == OUT_OK ? "EVS_OK" : "EVS_ERR_INSUFFICIENT_FUNDS");
    }
    double el = now_s() - t0;
    m[0] = plan.nops / el;
    if (wrong) {
        problem("6 evstore: %ld operations ended otherwise than the model says", wrong);
        goto fail;
    }

    long bad = 0;
    t0 = now_s();
    for (long q = 0; q < plan.nqueries; q++) {
        int idx = plan.queries[q];
        evs_account acc = EVS_STRUCT_INIT(evs_account);
        account_id(a, sizeof a, idx);
        EVS_TRY(wl, evs_account_get(s, a, &acc), a);
        if (acc.balance != plan.final_balance[idx] || acc.is_closed || strcmp(acc.currency, "USD")) {
            if (bad++ < 3)
                problem("6 evstore: evs_account_get(%s) = balance %lld, closed %d, currency %.4s; the model says %lld, "
                        "open, USD",
                        a, (long long)acc.balance, (int)acc.is_closed, acc.currency,
                        (long long)plan.final_balance[idx]);
        }
    }
    m[1] = (now_s() - t0) / plan.nqueries * 1e6;
    if (bad) {
        problem("6 evstore: %ld of %ld balance queries disagree with the model", bad, plan.nqueries);
        goto fail;
    }
    note("  evstore BATCH: %ld operations in %.2f s; balance query %.2f us", plan.nops, el, m[1]);
    rc = 0;
fail:
    store_close(wl, s);
    return rc;
}

/* ---------- 7: opening the workload-3 store, with and without a snapshot ---------- */
/* A child process appends the workload-3 events into a fresh store and kills itself
 * with SIGKILL right after the last append returned: no close, no snapshot. */
static int make_killed_store(void) {
    const char *wl = "7";
    fflush(NULL);
    pid_t pid = fork();
    if (pid < 0) {
        problem("7 evstore: fork failed");
        return -1;
    }
    if (pid == 0) {
        char stream[32];
        uint8_t *payload = malloc(cfg.payload_size);
        evs_store *s = store_open(wl, W7_EVS_KILLED, EVS_FSYNC_BATCH, 1, NULL);
        if (!s) _exit(3);
        for (long i = 0; i < cfg.nd_events; i++) {
            make_payload(payload, i);
            nd_stream_name(stream, sizeof stream, i);
            evs_event_input ev = bench_event(payload);
            uint64_t pos = 0, ver = 0;
            if (evs_append(s, stream, EVS_EXPECT_ANY, &ev, 1, &pos, &ver) != EVS_OK) _exit(4);
        }
        kill(getpid(), SIGKILL);
        _exit(5);
    }
    int status = 0;
    if (waitpid(pid, &status, 0) != pid || !WIFSIGNALED(status) || WTERMSIG(status) != SIGKILL) {
        problem("7 evstore: the writer that was to be killed ended otherwise (wait status %d)", status);
        return -1;
    }
    note("  evstore: a writer appended %ld events and was killed", cfg.nd_events);
    return 0;
}

int evs_prepare_open(void) {
    const char *wl = "7";
    char from[4096], to[4096];
    if (make_killed_store() != 0) return -1;
    path_in_dir(from, sizeof from, W3_EVS);
    path_in_dir(to, sizeof to, W7_EVS_SNAP);
    remove_tree(to);
    if (copy_tree(from, to)) {
        problem("7 evstore: could not copy %s to %s", from, to);
        return -1;
    }
    evs_store *s = store_open(wl, W7_EVS_SNAP, EVS_FSYNC_BATCH, 0, NULL);
    if (!s) return -1;
    uint64_t pos = 0;
    int rc = -1;
    EVS_TRY(wl, evs_snapshot(s, &pos), "");
    note("  evstore: snapshot of the copy taken at position %llu", (unsigned long long)pos);
    rc = 0;
fail:
    store_close(wl, s);
    return rc;
}

static int evs_open_timed(const char *name, int want_snapshot, double *m) {
    const char *wl = "7";
    double t[64];
    for (int k = 0; k < cfg.opens; k++) {
        if (!want_snapshot) {
            /* the checkpoint the store wrote at its last close goes (untimed): this row is
             * the open that replays the whole log */
            char snaps[4200];
            path_in_dir(snaps, sizeof snaps, name);
            strncat(snaps, "/snapshots", sizeof snaps - strlen(snaps) - 1);
            remove_tree(snaps);
        }
        evs_recovery_info info = EVS_STRUCT_INIT(evs_recovery_info);
        memset(&info, 0, sizeof info);
        info.struct_size = sizeof info;
        double t0 = now_s();
        evs_store *s = store_open(wl, name, EVS_FSYNC_BATCH, 0, &info);
        t[k] = (now_s() - t0) * 1e3;
        if (!s) return -1;
        store_close(wl, s);
        if (info.next_position != (uint64_t)cfg.nd_events) {
            problem("7 evstore: opening %s gave next_position %llu, expected %ld", name,
                    (unsigned long long)info.next_position, cfg.nd_events);
            return -1;
        }
        if (want_snapshot != (info.snapshot_position != UINT64_MAX)) {
            problem("7 evstore: opening %s: snapshot_position %llu (%s)", name, (unsigned long long)info.snapshot_position,
                    want_snapshot ? "the snapshot taken was not used" : "a snapshot was used, none was taken");
            return -1;
        }
        if (info.corruption_detected || info.bytes_truncated) {
            problem("7 evstore: opening %s after a clean close reports corruption_detected=%d, bytes_truncated=%llu", name,
                    (int)info.corruption_detected, (unsigned long long)info.bytes_truncated);
            return -1;
        }
    }
    m[0] = median_of(t, cfg.opens);
    note("  evstore %s snapshot: open %.2f ms", want_snapshot ? "with" : "without", m[0]);
    return 0;
}

int evs_open_nosnap(double *m) { return evs_open_timed(W3_EVS, 0, m); }
int evs_open_snap(double *m) { return evs_open_timed(W7_EVS_SNAP, 1, m); }

/* Each open is of a fresh copy of the killed store (copied untimed): the first open of
 * a store after a crash is the one measured, not one after recovery has run. */
int evs_open_killed(double *m) {
    const char *wl = "7";
    char from[4096], to[4096];
    double t[64];
    path_in_dir(from, sizeof from, W7_EVS_KILLED);
    path_in_dir(to, sizeof to, "w7-evstore-killed-copy");
    for (int k = 0; k < cfg.opens; k++) {
        remove_tree(to);
        if (copy_tree(from, to)) {
            problem("7 evstore: could not copy %s to %s", from, to);
            return -1;
        }
        evs_recovery_info info = EVS_STRUCT_INIT(evs_recovery_info);
        double t0 = now_s();
        evs_store *s = store_open(wl, "w7-evstore-killed-copy", EVS_FSYNC_BATCH, 0, &info);
        t[k] = (now_s() - t0) * 1e3;
        if (!s) return -1;
        store_close(wl, s);
        if (info.next_position != (uint64_t)cfg.nd_events) {
            problem("7 evstore: opening the killed store gave next_position %llu, expected %ld (acknowledged)",
                    (unsigned long long)info.next_position, cfg.nd_events);
            return -1;
        }
        if (info.snapshot_position != UINT64_MAX) {
            problem("7 evstore: the killed store had a snapshot at %llu: the row is for %ld events since the last",
                    (unsigned long long)info.snapshot_position, cfg.nd_events);
            return -1;
        }
    }
    remove_tree(to);
    m[0] = median_of(t, cfg.opens);
    note("  evstore after SIGKILL: open %.2f ms", m[0]);
    return 0;
}


/* ---------- 8: compaction (issue 20) ---------- */
/* The workload-3 events (nd_events, 100-byte payloads) appended 100 per call, call c to
 * stream c % streams; "half the streams" are the odd-numbered ones. */
enum { W8_PER_CALL = 100 };

static int w8_odd(long call) { return (call % nd_stream_count()) % 2 == 1; }

/* Appends the events, or (`even_only`) only those of the even-numbered streams, as the
 * full store holds them (same payloads). Returns the events of odd streams, or -1. */
static long w8_fill(const char *wl, evs_store *s, int even_only) {
    char stream[32], ctx[64];
    uint8_t *payloads = malloc((size_t)cfg.payload_size * W8_PER_CALL);
    evs_event_input ev[W8_PER_CALL];
    long odd = 0;
    if (!payloads) {
        problem("%s evstore: out of memory", wl);
        return -1;
    }
    for (long i = 0; i < cfg.nd_events; i += W8_PER_CALL) {
        long call = i / W8_PER_CALL, n = cfg.nd_events - i < W8_PER_CALL ? cfg.nd_events - i : W8_PER_CALL;
        if (w8_odd(call)) {
            odd += n;
            if (even_only) continue;
        }
        for (long k = 0; k < n; k++) {
            make_payload(payloads + k * cfg.payload_size, i + k);
            ev[k] = bench_event(payloads + k * cfg.payload_size);
        }
        nd_stream_name(stream, sizeof stream, call);
        snprintf(ctx, sizeof ctx, "(append of events #%ld..)", i);
        EVS_TRY(wl, evs_append(s, stream, EVS_EXPECT_ANY, ev, (size_t)n, NULL, NULL), ctx);
    }
    free(payloads);
    return odd;
fail:
    free(payloads);
    return -1;
}

/* Deletes the odd-numbered streams. */
static int w8_delete_half(const char *wl, evs_store *s) {
    char stream[32];
    for (long k = 1; k < nd_stream_count(); k += 2) {
        nd_stream_name(stream, sizeof stream, k);
        EVS_TRY(wl, evs_delete_stream(s, stream, EVS_EXPECT_ANY, EVS_DELETE_SOFT, NULL, NULL), stream);
    }
    return 0;
fail:
    return -1;
}

static int w8_check_erased(const char *wl, const evs_compact_info *info, long odd) {
    if (info->events_erased != (uint64_t)odd || info->segments_rewritten == 0 ||
        info->bytes_after >= info->bytes_before) {
        problem("%s evstore: evs_compact erased %llu events in %llu segments (%llu -> %llu bytes); the deleted "
                "streams held %ld",
                wl, (unsigned long long)info->events_erased, (unsigned long long)info->segments_rewritten,
                (unsigned long long)info->bytes_before, (unsigned long long)info->bytes_after, odd);
        return -1;
    }
    return 0;
}

/* Single appends to stream "live" (BATCH: no fsync waited for): each one's latency in us
 * into lat[], until *stop (when stop is not NULL) or `count` of them. Returns how many. */
static long w8_appends(const char *wl, evs_store *s, double *lat, long cap, const int *stop, long count) {
    uint8_t payload[4096];
    long n = 0;
    while (n < cap && (stop ? !__atomic_load_n(stop, __ATOMIC_ACQUIRE) : n < count)) {
        make_payload(payload, cfg.nd_events + n);
        evs_event_input ev = bench_event(payload);
        double t0 = now_s();
        EVS_TRY(wl, evs_append(s, "live", EVS_EXPECT_ANY, &ev, 1, NULL, NULL), "(live append)");
        lat[n++] = (now_s() - t0) * 1e6;
    }
    return n;
fail:
    return -1;
}

static int cmp_lat(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static double p99_of(double *lat, long n) {
    qsort(lat, (size_t)n, sizeof *lat, cmp_lat);
    return lat[(long)((double)(n - 1) * 0.99)];
}

/* Bytes of store `name`'s segment files alone (its log, without index files and snapshots). */
static long long w8_log_bytes(const char *name) {
    char path[4096];
    path_in_dir(path, sizeof path, name);
    strncat(path, "/events", sizeof path - strlen(path) - 1);
    return dir_bytes(path, ".wal");
}

/* How many appends the last compacting side timed: the other side times as many. */
static long w8_appended;

typedef struct {
    evs_store *s;
    evs_compact_info info;
    evs_status rc;
    int done;
} w8_compaction;

static void *w8_compact_main(void *p) {
    w8_compaction *c = p;
    c->rc = evs_compact(c->s, &c->info);
    __atomic_store_n(&c->done, 1, __ATOMIC_RELEASE);
    return NULL;
}

enum { W8_LAT_CAP = 20 * 1000 * 1000 };

/* Side 0: the full store, half its streams deleted. Unthrottled, evs_compact's rate of
 * segment bytes rewritten (m[0], MB/s) and the store's bytes after it (m[2]); on a second
 * such store, the p99 of single appends made while evs_compact runs at its default budget
 * of 64 MiB/s (m[1], us). */
int evs_compact_half(double *m) {
    const char *wl = "8";
    int rc = -1;
    uint64_t unthrottled = 0, budget = 64u << 20;
    double *lat = malloc(sizeof *lat * W8_LAT_CAP);
    w8_compaction c = {0};
    c.info = (evs_compact_info)EVS_STRUCT_INIT(evs_compact_info);
    evs_store *s = store_open_with(wl, "w8-evstore-compacted", EVS_FSYNC_BATCH, 1, NULL, &unthrottled);
    if (!s || !lat) goto fail;
    long odd = w8_fill(wl, s, 0);
    if (odd < 0 || w8_delete_half(wl, s) != 0) goto fail;
    EVS_TRY(wl, evs_sync(s), "");
    EVS_TRY(wl, evs_compact(s, &c.info), "(unthrottled)");
    if (w8_check_erased(wl, &c.info, odd) != 0) goto fail;
    m[0] = (double)c.info.bytes_before / (double)(c.info.duration_us ? c.info.duration_us : 1);
    store_close(wl, s);
    s = NULL;
    m[2] = (double)store_bytes("w8-evstore-compacted");
    m[3] = (double)w8_log_bytes("w8-evstore-compacted");
    note("  compacted %llu segments, %llu -> %llu bytes, %llu events erased in %.2f s; store %.0f bytes",
         (unsigned long long)c.info.segments_rewritten, (unsigned long long)c.info.bytes_before,
         (unsigned long long)c.info.bytes_after, (unsigned long long)c.info.events_erased,
         (double)c.info.duration_us / 1e6, m[2]);

    s = store_open_with(wl, "w8-evstore-during", EVS_FSYNC_BATCH, 1, NULL, &budget);
    if (!s || (odd = w8_fill(wl, s, 0)) < 0 || w8_delete_half(wl, s) != 0) goto fail;
    EVS_TRY(wl, evs_sync(s), "");
    c.s = s;
    c.done = 0;
    c.info = (evs_compact_info)EVS_STRUCT_INIT(evs_compact_info);
    pthread_t t;
    if (pthread_create(&t, NULL, w8_compact_main, &c) != 0) {
        problem("8 evstore: pthread_create failed");
        goto fail;
    }
    long n = w8_appends(wl, s, lat, W8_LAT_CAP, &c.done, 0);
    pthread_join(t, NULL);
    if (c.rc != EVS_OK) {
        evs_failed(wl, "evs_compact", c.rc, "(while appending)");
        goto fail;
    }
    if (n <= 0 || w8_check_erased(wl, &c.info, odd) != 0) goto fail;
    w8_appended = n;
    m[1] = p99_of(lat, n);
    note("  %ld appends during a %.2f s compaction at 64 MiB/s: p99 %.1f us", n, (double)c.info.duration_us / 1e6,
         m[1]);
    rc = 0;
fail:
    if (s) store_close(wl, s);
    free(lat);
    char path[4096];
    path_in_dir(path, sizeof path, "w8-evstore-compacted");
    remove_tree(path);
    path_in_dir(path, sizeof path, "w8-evstore-during");
    remove_tree(path);
    return rc;
}

/* Side 1: a store that never held the deleted streams: its bytes after close (m[2]), then
 * the p99 of as many single appends as side 0 timed, with no compaction running (m[1]). */
int evs_compact_never(double *m) {
    const char *wl = "8";
    int rc = -1;
    long count = w8_appended > 1000 ? w8_appended : 1000;
    double *lat = malloc(sizeof *lat * (size_t)count);
    evs_store *s = store_open(wl, "w8-evstore-never", EVS_FSYNC_BATCH, 1, NULL);
    if (!s || !lat || w8_fill(wl, s, 1) < 0) goto fail;
    store_close(wl, s);
    m[2] = (double)store_bytes("w8-evstore-never");
    m[3] = (double)w8_log_bytes("w8-evstore-never");
    s = store_open(wl, "w8-evstore-never", EVS_FSYNC_BATCH, 0, NULL);
    if (!s) goto fail;
    long n = w8_appends(wl, s, lat, count, NULL, count);
    if (n <= 0) goto fail;
    m[1] = p99_of(lat, n);
    note("  store %.0f bytes (segments %.0f); %ld appends without a compaction: p99 %.1f us", m[2], m[3], n, m[1]);
    rc = 0;
fail:
    if (s) store_close(wl, s);
    free(lat);
    char path[4096];
    path_in_dir(path, sizeof path, "w8-evstore-never");
    remove_tree(path);
    return rc;
}

/* ---------- 9: durable consumers (issue 22) ---------- */

/* Untimed: a copy of the workload-3 store for the consumer rows, whose consumer records
 * (a checkpoint every 100 events) must not change the store the other workloads read. */
int evs_prepare_consumers(void) {
    char from[4096], to[4096];
    path_in_dir(from, sizeof from, W3_EVS);
    path_in_dir(to, sizeof to, W9_EVS);
    remove_tree(to);
    if (copy_tree(from, to)) {
        problem("9 evstore: could not copy %s to %s", from, to);
        return -1;
    }
    return 0;
}

/* A new consumer (its own name each round) from position 0 of the copy, the library's
 * default checkpoint interval (every 100 acknowledgements), each event acknowledged:
 * m[0] events/s delivered until it is caught up. */
int evs_consumer_catchup(double *m) {
    const char *wl = "9";
    static int round;
    char name[32];
    volatile long sink = 0;
    long n = 0;
    evs_consumer *c = NULL;
    evs_event e = EVS_STRUCT_INIT(evs_event);
    evs_status st;
    evs_store *s = store_open(wl, W9_EVS, EVS_FSYNC_BATCH, 0, NULL);
    if (!s) return -1;
    snprintf(name, sizeof name, "bench-%d", round++);
    double t0 = now_s();
    EVS_TRY(wl, evs_consumer_open(s, name, NULL, &c), name);
    while ((st = evs_consumer_next(c, &e, 0)) == EVS_OK) {
        sink += touch_event(&e);
        n++;
        EVS_TRY(wl, evs_consumer_ack(c, e.position), "");
    }
    if (st != EVS_END) {
        evs_failed(wl, "evs_consumer_next", st, name);
        goto fail;
    }
    EVS_TRY(wl, evs_consumer_close(c), name);
    c = NULL;
    double el = now_s() - t0;
    if (n != cfg.nd_events) {
        problem("9 evstore: the consumer was given %ld events, expected %ld", n, cfg.nd_events);
        goto fail;
    }
    m[0] = n / el;
    note("  evstore consumer: %ld events in %.2f s (%.0f/s), checkpointing every 100", n, el, m[0]);
    store_close(wl, s);
    return 0;
fail:
    evs_consumer_close(c);
    store_close(wl, s);
    return -1;
}

/* The reference: read all of the same copy with evs_cursor_next (m[0] events/s). */
int evs_consumer_readall(double *m) {
    const char *wl = "9";
    volatile long sink = 0;
    long n = 0;
    evs_cursor *c = NULL;
    evs_event e = EVS_STRUCT_INIT(evs_event);
    evs_status st;
    evs_store *s = store_open(wl, W9_EVS, EVS_FSYNC_BATCH, 0, NULL);
    if (!s) return -1;
    double t0 = now_s();
    EVS_TRY(wl, evs_read_all(s, 0, &c), "");
    while ((st = evs_cursor_next(c, &e)) == EVS_OK) {
        sink += touch_event(&e);
        n++;
    }
    double el = now_s() - t0;
    if (st != EVS_END) {
        evs_failed(wl, "evs_cursor_next", st, "(read all)");
        goto fail;
    }
    evs_cursor_free(c);
    c = NULL;
    if (n != cfg.nd_events) {
        problem("9 evstore: read all gave %ld events, expected %ld", n, cfg.nd_events);
        goto fail;
    }
    m[0] = n / el;
    store_close(wl, s);
    return 0;
fail:
    evs_cursor_free(c);
    store_close(wl, s);
    return -1;
}

typedef struct {
    evs_store *s;
    long n;
    int failed;
} live_writer;

/* Appends n events, one every 200 us (about 5,000 a second): a steady stream that a
 * consumer keeps up with, so that its latency is delivery, not a backlog. */
static void *live_writer_main(void *arg) {
    live_writer *w = arg;
    uint8_t payload[4096];
    char stream[32];
    for (long i = 0; i < w->n; i++) {
        make_payload(payload, i);
        nd_stream_name(stream, sizeof stream, i);
        evs_event_input in = bench_event(payload);
        evs_status rc = evs_append(w->s, stream, EVS_EXPECT_ANY, &in, 1, NULL, NULL);
        if (rc != EVS_OK) {
            evs_failed("9", "evs_append", rc, "(the live writer)");
            w->failed = 1;
            return NULL;
        }
        struct timespec ts = {0, 200000};
        nanosleep(&ts, NULL);
    }
    return NULL;
}

static int cmp_i64(const void *a, const void *b) {
    int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
    return (x > y) - (x < y);
}

/* A consumer waiting for events (evs_consumer_next with a timeout) while a writer thread
 * appends (BATCH): each event's delay from its commit (the store's timestamp of it) to
 * its delivery. m[0] the 99th percentile, m[1] the median, in ms. */
int evs_consumer_live(double *m) {
    const char *wl = "9";
    long want = cfg.consumer_live_events, n = 0;
    int64_t *lat = malloc(sizeof(int64_t) * (size_t)want);
    evs_consumer *c = NULL;
    evs_event e = EVS_STRUCT_INIT(evs_event);
    pthread_t writer;
    int started = 0;
    if (!lat) {
        problem("9 evstore: out of memory");
        return -1;
    }
    evs_store *s = store_open(wl, "w9-live", EVS_FSYNC_BATCH, 1, NULL);
    if (!s) {
        free(lat);
        return -1;
    }
    live_writer w = {s, want, 0};
    EVS_TRY(wl, evs_consumer_open(s, "live", NULL, &c), "");
    if (pthread_create(&writer, NULL, live_writer_main, &w) != 0) {
        problem("9 evstore: no writer thread");
        goto fail;
    }
    started = 1;
    while (n < want) {
        evs_status st = evs_consumer_next(c, &e, 5000);
        if (st == EVS_END) {
            problem("9 evstore: no event for 5 s after %ld of %ld", n, want);
            goto fail;
        }
        EVS_TRY(wl, st, "(evs_consumer_next)");
        int64_t d = wall_us() - (int64_t)e.timestamp_us;
        lat[n++] = d < 0 ? 0 : d;
        EVS_TRY(wl, evs_consumer_ack(c, e.position), "");
    }
    pthread_join(writer, NULL);
    started = 0;
    if (w.failed) goto fail;
    EVS_TRY(wl, evs_consumer_close(c), "");
    c = NULL;
    qsort(lat, (size_t)n, sizeof lat[0], cmp_i64);
    m[0] = lat[n * 99 / 100] / 1e3;
    m[1] = lat[n / 2] / 1e3;
    note("  evstore live consumer: %ld events, delivery after commit p50 %.3f ms, p99 %.3f ms, max %.3f ms", n,
         m[1], m[0], lat[n - 1] / 1e3);
    store_close(wl, s);
    free(lat);
    return 0;
fail:
    if (started) pthread_join(writer, NULL);
    evs_consumer_close(c);
    store_close(wl, s);
    free(lat);
    return -1;
}

/* ---------- 10: personal data (issue 24) ---------- */

/* cfg.nd_events events (BATCH, one per evs_append, round-robin over the workload-3
 * streams), each naming one of 1,000 subjects (`sealed`: encrypted with the subject's key)
 * or none; then read all of them back with evs_cursor_next, every payload checked.
 * Untimed first: one event per subject (its key made durably: one fdatasync of the key
 * file each, reported apart), on both sides. m[0] appends/s, m[1] read-all events/s. */
static int subjects_side(double *m, int sealed) {
    const char *wl = "10";
    char stream[32], subject[32];
    volatile long sink = 0;
    long n = 0;
    uint8_t *payload = malloc(cfg.payload_size), *want = malloc(cfg.payload_size);
    evs_cursor *c = NULL;
    evs_event e = EVS_STRUCT_INIT(evs_event);
    evs_status st;
    evs_store *s = store_open(wl, sealed ? "w10-sealed" : "w10-plain", EVS_FSYNC_BATCH, 1, NULL);
    if (!s || !payload || !want) goto fail;
    double t0 = now_s();
    for (long i = 0; i < 1000; i++) {
        make_payload(payload, i);
        snprintf(subject, sizeof subject, "user-%ld", i);
        evs_event_input in = bench_event(payload);
        in.subject = sealed ? subject : NULL;
        EVS_TRY(wl, evs_append(s, "first-events", EVS_EXPECT_ANY, &in, 1, NULL, NULL), subject);
    }
    note("  evstore %s: each subject's first event (its key made) %.1f us", sealed ? "sealed" : "plain",
         (now_s() - t0) * 1e3);
    t0 = now_s();
    for (long i = 0; i < cfg.nd_events; i++) {
        make_payload(payload, i);
        nd_stream_name(stream, sizeof stream, i);
        snprintf(subject, sizeof subject, "user-%ld", i % 1000);
        evs_event_input in = bench_event(payload);
        in.subject = sealed ? subject : NULL;
        EVS_TRY(wl, evs_append(s, stream, EVS_EXPECT_ANY, &in, 1, NULL, NULL), stream);
    }
    m[0] = cfg.nd_events / (now_s() - t0);
    t0 = now_s();
    EVS_TRY(wl, evs_read_all(s, 1000, &c), "");
    while ((st = evs_cursor_next(c, &e)) == EVS_OK) {
        sink += touch_event(&e);
        if (n % 997 == 0) {
            make_payload(want, n);
            if (e.payload_len != (size_t)cfg.payload_size || memcmp(e.payload, want, e.payload_len) != 0 ||
                (e.subject_len != 0) != sealed || e.flags != 0) {
                problem("10 evstore: event %ld read back wrong", n);
                goto fail;
            }
        }
        n++;
    }
    double el = now_s() - t0;
    if (st != EVS_END) {
        evs_failed(wl, "evs_cursor_next", st, "(read all)");
        goto fail;
    }
    if (n != cfg.nd_events) {
        problem("10 evstore: read all gave %ld events, expected %ld", n, cfg.nd_events);
        goto fail;
    }
    m[1] = n / el;
    note("  evstore %s: %.0f appends/s, read all %.0f events/s", sealed ? "sealed" : "plain", m[0], m[1]);
    evs_cursor_free(c);
    store_close(wl, s);
    free(payload);
    free(want);
    return 0;
fail:
    evs_cursor_free(c);
    if (s) store_close(wl, s);
    free(payload);
    free(want);
    return -1;
}

int evs_subjects_sealed(double *m) { return subjects_side(m, 1); }
int evs_subjects_plain(double *m) { return subjects_side(m, 0); }

#endif
