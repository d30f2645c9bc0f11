/*
 * test_threads.c: one store shared by 8 appending threads and 2 reading
 * threads. Each writer appends EVENTS_PER_WRITER events (2,000; scaled by
 * EVS_TEST_SCALE), mixing evs_append_event with single- and multi-event
 * evs_append calls to its own streams. Afterwards positions are gapless from 0,
 * every appended event is at the position it was given with its exact payload,
 * and every stream's versions are gapless. The scenario runs twice: with the
 * default options, and with 64 KiB segments and EVS_FSYNC_ALWAYS (many segment
 * rotations under the readers, group commit). Last, 8 threads append to one
 * stream with expected versions: every success gets its own version. And threads
 * cancelled (pthread_cancel) inside calls: the process survives, the calls complete, the
 * cancel takes effect after them, and the store goes on working.
 */
#include "test_util.h"

#include <sched.h>

#define WRITERS 8
#define STREAMS_PER_WRITER 4
#define MAX_BATCH 5

struct record {
    uint64_t position;
    int stream;              /* -1: evs_append_event (no stream) */
    int64_t stream_version;  /* only for stream >= 0 */
};

struct writer {
    int id;
    evs_store *store;
    long count;
    struct record *recs;
    long stream_events[STREAMS_PER_WRITER];
};

struct seen {
    char payload[32];
    char stream[24];
    uint64_t stream_version;
    size_t metadata_len;
};

static evs_store *g_store;
static pthread_mutex_t g_done_lock = PTHREAD_MUTEX_INITIALIZER;
static int g_writers_done = 0;
static long g_per_writer;

static int writers_done(void)
{
    int d;
    pthread_mutex_lock(&g_done_lock);
    d = g_writers_done;
    pthread_mutex_unlock(&g_done_lock);
    return d;
}

static void payload_of(char *buf, size_t cap, int writer, long seq)
{
    snprintf(buf, cap, "w%d-e%ld", writer, seq);
}

static void stream_of(char *buf, size_t cap, int writer, int k)
{
    snprintf(buf, cap, "w%d-s%d", writer, k);
}

static void *writer_main(void *arg)
{
    struct writer *w = (struct writer *)arg;
    uint64_t rng = 0x9E3779B97F4A7C15ull * (uint64_t)(w->id + 1);
    int64_t version[STREAMS_PER_WRITER];
    long seq = 0;
    int k;
    char payloads[MAX_BATCH][32], metas[MAX_BATCH][40], stream[24];

    for (k = 0; k < STREAMS_PER_WRITER; k++)
        version[k] = -1;

    while (seq < w->count) {
        unsigned kind = (unsigned)(tu_rand(&rng) % 10);
        if (kind < 3) {
            /* an event with no stream */
            uint64_t pos = UINT64_MAX;
            payload_of(payloads[0], sizeof payloads[0], w->id, seq);
            if (!CHECK_OK(evs_append_event(w->store, "Tick", (const uint8_t *)payloads[0],
                                           strlen(payloads[0]), &pos)))
                return NULL;
            w->recs[seq].position = pos;
            w->recs[seq].stream = -1;
            w->recs[seq].stream_version = -1;
            seq++;
        } else {
            /* one event (kind 3..6) or a batch of 2..5 (kind 7..9) to one of its streams */
            evs_event_input in[MAX_BATCH];
            { /* every entry starts with its size */
                size_t i_;
                for (i_ = 0; i_ < sizeof in / sizeof in[0]; i_++)
                    in[i_] = (evs_event_input)EVS_STRUCT_INIT(evs_event_input);
            }
            long n = kind < 7 ? 1 : 2 + (long)(tu_rand(&rng) % (MAX_BATCH - 1));
            int64_t expected;
            uint64_t first = UINT64_MAX, last_version = UINT64_MAX;
            long j;
            if (n > w->count - seq)
                n = w->count - seq;
            k = (int)(tu_rand(&rng) % STREAMS_PER_WRITER);
            stream_of(stream, sizeof stream, w->id, k);
            for (j = 0; j < n; j++) {
                payload_of(payloads[j], sizeof payloads[j], w->id, seq + j);
                snprintf(metas[j], sizeof metas[j], "meta-%ld", seq + j);
                in[j].event_type = "Item";
                in[j].payload = (const uint8_t *)payloads[j];
                in[j].payload_len = strlen(payloads[j]);
                in[j].metadata = (j % 2) ? (const uint8_t *)metas[j] : NULL;
                in[j].metadata_len = (j % 2) ? strlen(metas[j]) : 0;
                in[j].schema_version = 1;
            }
            /* exact versions mostly; sometimes ANY / NO_STREAM / EXISTS */
            if (version[k] < 0)
                expected = (tu_rand(&rng) % 2) ? EVS_EXPECT_NO_STREAM : EVS_EXPECT_ANY;
            else if (tu_rand(&rng) % 4 == 0)
                expected = (tu_rand(&rng) % 2) ? EVS_EXPECT_EXISTS : EVS_EXPECT_ANY;
            else
                expected = version[k];
            if (!CHECK_OK(evs_append(w->store, stream, expected, in, (size_t)n, &first,
                                     &last_version)))
                return NULL;
            CHECK_U64(last_version, (uint64_t)(version[k] + n));
            for (j = 0; j < n; j++) {
                /* a batch's events get consecutive positions */
                w->recs[seq + j].position = first + (uint64_t)j;
                w->recs[seq + j].stream = k;
                w->recs[seq + j].stream_version = version[k] + 1 + j;
            }
            version[k] += n;
            w->stream_events[k] += n;
            seq += n;
        }
    }
    return NULL;
}

/* Tails the whole log with one forward cursor until the writers are done. */
static void *tail_reader_main(void *arg)
{
    long *seen_out = (long *)arg;
    evs_cursor *c = NULL;
    evs_event e = EVS_STRUCT_INIT(evs_event);
    uint64_t expect = 0, prev_ts = 0;
    int done_seen = 0;

    if (!CHECK_OK(evs_read_all(g_store, 0, &c)))
        return NULL;
    for (;;) {
        evs_status st = evs_cursor_next(c, &e);
        if (st == EVS_OK) {
            if (!CHECK_U64(e.position, expect))
                break;
            if (!CHECK(e.timestamp_us >= prev_ts))
                break;
            if (!CHECK(e.payload_len > 1 && e.payload != NULL && e.payload[0] == 'w'))
                break;
            prev_ts = e.timestamp_us;
            expect++;
        } else if (st == EVS_END) {
            /* an END after the writers finished means everything has been read */
            if (done_seen)
                break;
            done_seen = writers_done();
            if (!done_seen)
                tu_sleep_ms(1);
        } else {
            CHECK_OK(st);
            break;
        }
    }
    evs_cursor_free(c);
    *seen_out = (long)expect;
    return NULL;
}

/* Opens many short-lived cursors: a writer's stream forward, the log backward. */
static void *probe_reader_main(void *arg)
{
    uint64_t rng = 12345;
    long *rounds = (long *)arg;
    while (!writers_done()) {
        evs_cursor *c = NULL;
        evs_event e = EVS_STRUCT_INIT(evs_event);
        evs_status st;
        char stream[24], prefix[8];
        int w = (int)(tu_rand(&rng) % WRITERS), k = (int)(tu_rand(&rng) % STREAMS_PER_WRITER);
        uint64_t expect_version = 0, prev_pos = 0;
        int n;

        stream_of(stream, sizeof stream, w, k);
        snprintf(prefix, sizeof prefix, "w%d-", w);
        st = evs_read_stream(g_store, stream, 0, &c);
        if (st == EVS_OK) {
            while ((st = evs_cursor_next(c, &e)) == EVS_OK) {
                if (!CHECK_U64(e.stream_version, expect_version))
                    break;
                if (expect_version > 0 && !CHECK(e.position > prev_pos))
                    break;
                if (!CHECK(e.payload_len > strlen(prefix) &&
                           memcmp(e.payload, prefix, strlen(prefix)) == 0))
                    break;
                CHECK_VIEW(e.stream, e.stream_len, stream);
                prev_pos = e.position;
                expect_version++;
            }
            if (st != EVS_OK)
                CHECK_STATUS(st, EVS_END);
            evs_cursor_free(c);
        } else if (st != EVS_ERR_NOT_FOUND) {
            CHECK_OK(st); /* NOT_FOUND: the stream does not exist yet */
        }

        c = NULL;
        if (CHECK_OK(evs_read_all_backward(g_store, UINT64_MAX, &c))) {
            uint64_t prev = 0;
            for (n = 0; n < 20; n++) {
                st = evs_cursor_next(c, &e);
                if (st != EVS_OK) {
                    CHECK_STATUS(st, EVS_END);
                    CHECK_U64(n > 0 ? prev : 0, 0); /* END only after position 0 */
                    break;
                }
                if (n > 0 && !CHECK_U64(e.position, prev - 1))
                    break;
                prev = e.position;
            }
            evs_cursor_free(c);
        }
        (*rounds)++;
        tu_sleep_ms(1);
    }
    return NULL;
}

static void verify(evs_store *s, struct writer *writers, long total)
{
    struct seen *by_pos = (struct seen *)calloc((size_t)total, sizeof *by_pos);
    evs_cursor *c = NULL;
    evs_event e = EVS_STRUCT_INIT(evs_event);
    long i, n = 0, mismatches = 0;
    int w, k;
    evs_status st;
    uint64_t next = UINT64_MAX, prev_ts = 0;

    TU_SECTION("verify: gapless positions, exact payloads, gapless stream versions");
    if (!CHECK(by_pos != NULL))
        return;
    CHECK_OK(evs_position_at(s, UINT64_MAX, &next));
    CHECK_U64(next, (uint64_t)total);

    if (CHECK_OK(evs_read_all(s, 0, &c))) {
        while ((st = evs_cursor_next(c, &e)) == EVS_OK) {
            if (!CHECK_U64(e.position, (uint64_t)n) || !CHECK(n < total))
                break;
            if (!CHECK(e.timestamp_us >= prev_ts))
                break;
            prev_ts = e.timestamp_us;
            if (CHECK(e.payload_len < sizeof by_pos[n].payload &&
                      e.stream_len < sizeof by_pos[n].stream)) {
                memcpy(by_pos[n].payload, e.payload, e.payload_len);
                if (e.stream_len > 0)
                    memcpy(by_pos[n].stream, e.stream, e.stream_len);
            }
            by_pos[n].stream_version = e.stream_version;
            by_pos[n].metadata_len = e.metadata_len;
            n++;
        }
        if (st != EVS_OK)
            CHECK_STATUS(st, EVS_END);
        evs_cursor_free(c);
    }
    CHECK_I64(n, total);

    /* every appended event is at its position with its payload and stream */
    for (w = 0; w < WRITERS; w++) {
        for (i = 0; i < writers[w].count; i++) {
            const struct record *r = &writers[w].recs[i];
            char payload[32], stream[24];
            int ok;
            if (r->position >= (uint64_t)n) {
                mismatches++;
                continue;
            }
            payload_of(payload, sizeof payload, w, i);
            ok = strcmp(by_pos[r->position].payload, payload) == 0;
            if (r->stream >= 0) {
                stream_of(stream, sizeof stream, w, r->stream);
                ok = ok && strcmp(by_pos[r->position].stream, stream) == 0 &&
                     by_pos[r->position].stream_version == (uint64_t)r->stream_version;
            } else {
                ok = ok && by_pos[r->position].stream[0] == '\0';
            }
            if (!ok) {
                if (mismatches < 5)
                    printf("  writer %d event %ld: position %" PRIu64
                           " holds payload \"%s\" stream \"%s\" v%" PRIu64 "\n",
                           w, i, r->position, by_pos[r->position].payload,
                           by_pos[r->position].stream, by_pos[r->position].stream_version);
                mismatches++;
            }
        }
    }
    CHECK_I64(mismatches, 0);

    /* every stream's versions are gapless and its length is what was appended */
    for (w = 0; w < WRITERS; w++) {
        for (k = 0; k < STREAMS_PER_WRITER; k++) {
            char stream[24];
            int64_t version = INT64_MIN;
            uint64_t expect = 0, prev_pos = 0;
            stream_of(stream, sizeof stream, w, k);
            CHECK_OK(evs_stream_version(s, stream, &version));
            CHECK_I64(version, writers[w].stream_events[k] - 1);
            if (writers[w].stream_events[k] == 0)
                continue;
            c = NULL;
            if (!CHECK_OK(evs_read_stream(s, stream, 0, &c)))
                continue;
            while ((st = evs_cursor_next(c, &e)) == EVS_OK) {
                if (!CHECK_U64(e.stream_version, expect))
                    break;
                if (expect > 0 && !CHECK(e.position > prev_pos))
                    break;
                prev_pos = e.position;
                expect++;
            }
            if (st != EVS_OK)
                CHECK_STATUS(st, EVS_END);
            CHECK_I64((int64_t)expect, writers[w].stream_events[k]);
            evs_cursor_free(c);
        }
    }
    free(by_pos);
}

/* ---- many threads, one stream: optimistic concurrency ---- */

#define HOT_THREADS 8

struct hot {
    evs_store *store;
    int id;
    long target;    /* wins wanted */
    long wins, conflicts;
    uint64_t *versions; /* the version each win got */
};

static void *hot_main(void *arg)
{
    struct hot *h = (struct hot *)arg;
    while (h->wins < h->target) {
        int64_t v = INT64_MIN;
        char payload[32];
        evs_event_input in = EVS_STRUCT_INIT(evs_event_input);
        uint64_t got = UINT64_MAX;
        evs_status st;
        if (!CHECK_OK(evs_stream_version(h->store, "hot", &v)))
            return NULL;
        snprintf(payload, sizeof payload, "h%d-%ld", h->id, h->wins);
        in.event_type = "Hot";
        in.payload = (const uint8_t *)payload;
        in.payload_len = strlen(payload);
        in.metadata = NULL;
        in.metadata_len = 0;
        in.schema_version = 1;
        /* -1 would mean EVS_EXPECT_ANY: a missing stream is EVS_EXPECT_NO_STREAM */
        st = evs_append(h->store, "hot", v < 0 ? EVS_EXPECT_NO_STREAM : v, &in, 1, NULL, &got);
        if (st == EVS_OK) {
            if (!CHECK_U64(got, (uint64_t)(v + 1)))
                return NULL;
            h->versions[h->wins++] = got;
        } else if (st == EVS_ERR_WRONG_EXPECTED_VERSION) {
            h->conflicts++;
        } else {
            CHECK_OK(st);
            return NULL;
        }
    }
    return NULL;
}

static void test_hot_stream(const char *root)
{
    char path[1100];
    evs_store *s = NULL;
    struct hot hs[HOT_THREADS];
    pthread_t t[HOT_THREADS];
    long per = tu_scaled(200), total = per * HOT_THREADS, conflicts = 0, n = 0;
    unsigned char *seen;
    int i;
    int64_t v = INT64_MIN;
    evs_cursor *c = NULL;
    evs_event e = EVS_STRUCT_INIT(evs_event);
    evs_status st;

    TU_SECTION("8 threads appending to one stream with expected versions");
    tu_store_location(path, sizeof path, root, "hot");
    if (!CHECK_OK(evs_open(path, NULL, &s, NULL)))
        return;
    seen = (unsigned char *)calloc((size_t)total, 1);
    for (i = 0; i < HOT_THREADS; i++) {
        hs[i].store = s;
        hs[i].id = i;
        hs[i].target = per;
        hs[i].wins = hs[i].conflicts = 0;
        hs[i].versions = (uint64_t *)calloc((size_t)per, sizeof(uint64_t));
    }
    for (i = 0; i < HOT_THREADS; i++)
        CHECK(pthread_create(&t[i], NULL, hot_main, &hs[i]) == 0);
    for (i = 0; i < HOT_THREADS; i++)
        CHECK(pthread_join(t[i], NULL) == 0);

    /* every win got its own version: together exactly 0..total-1 */
    {
        long dup = 0, out_of_range = 0, k;
        for (i = 0; i < HOT_THREADS; i++) {
            conflicts += hs[i].conflicts;
            for (k = 0; k < hs[i].wins; k++) {
                uint64_t ver = hs[i].versions[k];
                if (ver >= (uint64_t)total)
                    out_of_range++;
                else if (seen[ver]++)
                    dup++;
            }
        }
        CHECK_I64(dup, 0);
        CHECK_I64(out_of_range, 0);
    }
    printf("%ld appends won, %ld refused with EVS_ERR_WRONG_EXPECTED_VERSION\n", total, conflicts);
    CHECK_OK(evs_stream_version(s, "hot", &v));
    CHECK_I64(v, total - 1);
    if (CHECK_OK(evs_read_stream(s, "hot", 0, &c))) {
        long bad = 0;
        while ((st = evs_cursor_next(c, &e)) == EVS_OK) {
            char want[32];
            int id;
            long k;
            if (e.stream_version != (uint64_t)n)
                bad++;
            /* the payload is the one of the win that got this version */
            for (id = 0; id < HOT_THREADS; id++)
                for (k = 0; k < hs[id].wins; k++)
                    if (hs[id].versions[k] == e.stream_version) {
                        snprintf(want, sizeof want, "h%d-%ld", id, k);
                        if (e.payload_len != strlen(want) ||
                            memcmp(e.payload, want, e.payload_len) != 0)
                            bad++;
                    }
            n++;
        }
        CHECK_STATUS(st, EVS_END);
        CHECK_I64(bad, 0);
        evs_cursor_free(c);
    }
    CHECK_I64(n, total);
    CHECK_OK(evs_close(s));
    for (i = 0; i < HOT_THREADS; i++)
        free(hs[i].versions);
    free(seen);
}

/* ---- pthread_cancel of a thread inside an evstore call ---- */

struct cancelled {
    evs_store *store;
    evs_subscription *sub;
    int go;          /* set by main once the cancel is requested (or to start) */
    int finished;    /* 1: every call returned (set just before pthread_testcancel) */
    int after;       /* 1: pthread_testcancel returned: the cancel was lost */
    evs_status st[6];
    uint64_t read;
};

static void spin_until(int *flag)
{
    /* No cancellation point here: the pending cancel must meet the library first. */
    while (!__atomic_load_n(flag, __ATOMIC_ACQUIRE))
        sched_yield();
}

/* Calls that reach cancellation points inside (write, fdatasync, close, pthread_join)
 * with a cancel already pending, then lets it act at pthread_testcancel. */
static void *cancelled_caller(void *arg)
{
    struct cancelled *c = (struct cancelled *)arg;
    evs_event_input in = EVS_STRUCT_INIT(evs_event_input);
    evs_cursor *cur = NULL;
    evs_event e = EVS_STRUCT_INIT(evs_event);
    spin_until(&c->go);
    in.event_type = "Cancelled";
    in.payload = (const uint8_t *)"p";
    in.payload_len = 1;
    c->st[0] = evs_append(c->store, "cancel", EVS_EXPECT_ANY, &in, 1, NULL, NULL);
    c->st[1] = evs_sync(c->store);
    c->st[2] = evs_read_all(c->store, 0, &cur);
    if (c->st[2] == EVS_OK) {
        while ((c->st[3] = evs_cursor_next(cur, &e)) == EVS_OK)
            c->read++;
        evs_cursor_free(cur);
    }
    c->st[4] = evs_close(c->store);
    __atomic_store_n(&c->finished, 1, __ATOMIC_RELEASE);
    pthread_testcancel();
    __atomic_store_n(&c->after, 1, __ATOMIC_RELEASE);
    return NULL;
}

struct blocking_cb {
    int in_cb;
    int release;
};

static int32_t block_until_released(void *user_data, const evs_event *e)
{
    struct blocking_cb *b = (struct blocking_cb *)user_data;
    (void)e;
    __atomic_store_n(&b->in_cb, 1, __ATOMIC_RELEASE);
    while (!__atomic_load_n(&b->release, __ATOMIC_ACQUIRE))
        tu_sleep_ms(1);
    return 0;
}

/* Blocked in evs_close (waiting for a subscription's callback) when the cancel comes;
 * after the wait, close syncs and closes its files: cancellation points. */
static void *cancelled_closer(void *arg)
{
    struct cancelled *c = (struct cancelled *)arg;
    spin_until(&c->go);
    c->st[5] = evs_close(c->store);
    __atomic_store_n(&c->finished, 1, __ATOMIC_RELEASE);
    pthread_testcancel();
    __atomic_store_n(&c->after, 1, __ATOMIC_RELEASE);
    return NULL;
}

static void test_cancelled_threads(const char *root)
{
    char path[1100];
    evs_options *o = evs_options_new();
    struct cancelled c;
    struct blocking_cb b = {0, 0};
    pthread_t t;
    void *ret = NULL;
    evs_event_input in = EVS_STRUCT_INIT(evs_event_input);
    int64_t v = -9;
    int i;

    TU_SECTION("pthread_cancel of a thread inside calls: held off until they return");
    tu_store_location(path, sizeof path, root, "cancel");
    CHECK_OK(evs_options_set_fsync(o, EVS_FSYNC_ALWAYS, 0));
    memset(&c, 0, sizeof c);
    if (!CHECK_OK(evs_open(path, o, &c.store, NULL)))
        goto out;
    CHECK(pthread_create(&t, NULL, cancelled_caller, &c) == 0);
    CHECK(pthread_cancel(t) == 0);
    __atomic_store_n(&c.go, 1, __ATOMIC_RELEASE);
    CHECK(pthread_join(t, &ret) == 0);
    CHECK(ret == PTHREAD_CANCELED);
    CHECK(__atomic_load_n(&c.finished, __ATOMIC_ACQUIRE) == 1);
    CHECK(__atomic_load_n(&c.after, __ATOMIC_ACQUIRE) == 0);
    for (i = 0; i < 5; i++)
        CHECK_STATUS(c.st[i], i == 3 ? EVS_END : EVS_OK);
    CHECK_U64(c.read, 1);

    /* the store, reopened by this thread, has the event and takes more */
    c.store = NULL;
    if (!CHECK_OK(evs_open(path, o, &c.store, NULL)))
        goto out;
    in.event_type = "After";
    in.payload = (const uint8_t *)"a";
    in.payload_len = 1;
    CHECK_OK(evs_append(c.store, "cancel", 0, &in, 1, NULL, NULL));
    CHECK_OK(evs_stream_version(c.store, "cancel", &v));
    CHECK_I64(v, 1);

    /* blocked in a waiting call (evs_close waits for a callback) when cancelled */
    CHECK_OK(evs_subscribe(c.store, 0, block_until_released, &b, &c.sub));
    while (!__atomic_load_n(&b.in_cb, __ATOMIC_ACQUIRE))
        tu_sleep_ms(1);
    c.go = c.finished = c.after = 0;
    CHECK(pthread_create(&t, NULL, cancelled_closer, &c) == 0);
    __atomic_store_n(&c.go, 1, __ATOMIC_RELEASE);
    tu_sleep_ms(100); /* let it block in the close (the cancel is pending either way) */
    CHECK(pthread_cancel(t) == 0);
    tu_sleep_ms(20);
    __atomic_store_n(&b.release, 1, __ATOMIC_RELEASE);
    CHECK(pthread_join(t, &ret) == 0);
    CHECK(ret == PTHREAD_CANCELED);
    CHECK(__atomic_load_n(&c.finished, __ATOMIC_ACQUIRE) == 1);
    CHECK(__atomic_load_n(&c.after, __ATOMIC_ACQUIRE) == 0);
    CHECK_OK(c.st[5]);
    CHECK_OK(evs_subscription_close(c.sub));
    c.store = NULL;
    if (CHECK_OK(evs_open(path, o, &c.store, NULL))) {
        CHECK_OK(evs_append(c.store, "cancel", 1, &in, 1, NULL, NULL));
        CHECK_OK(evs_close(c.store));
    }
out:
    evs_options_free(o);
}

/* The whole scenario on one store opened with opts. */
static void run_scenario(const char *root, const char *name, const evs_options *opts)
{
    char path[1100];
    struct writer writers[WRITERS];
    pthread_t wt[WRITERS], tail_thread, probe_thread;
    long tail_seen = -1, probe_rounds = 0, total;
    evs_recovery_info info = EVS_STRUCT_INIT(evs_recovery_info);
    int i;

    total = g_per_writer * WRITERS;
    printf("-- %s: %d writers x %ld events, 2 readers\n", name, WRITERS, g_per_writer);
    tu_store_location(path, sizeof path, root, name);
    g_store = NULL;
    g_writers_done = 0;
    if (!CHECK_OK(evs_open(path, opts, &g_store, NULL)))
        return;

    memset(writers, 0, sizeof writers);
    for (i = 0; i < WRITERS; i++) {
        writers[i].id = i;
        writers[i].store = g_store;
        writers[i].count = g_per_writer;
        writers[i].recs = (struct record *)calloc((size_t)g_per_writer, sizeof(struct record));
        if (writers[i].recs == NULL) {
            fprintf(stderr, "out of memory\n");
            exit(2);
        }
    }
    CHECK(pthread_create(&tail_thread, NULL, tail_reader_main, &tail_seen) == 0);
    CHECK(pthread_create(&probe_thread, NULL, probe_reader_main, &probe_rounds) == 0);
    for (i = 0; i < WRITERS; i++)
        CHECK(pthread_create(&wt[i], NULL, writer_main, &writers[i]) == 0);
    for (i = 0; i < WRITERS; i++)
        CHECK(pthread_join(wt[i], NULL) == 0);
    pthread_mutex_lock(&g_done_lock);
    g_writers_done = 1;
    pthread_mutex_unlock(&g_done_lock);
    CHECK(pthread_join(tail_thread, NULL) == 0);
    CHECK(pthread_join(probe_thread, NULL) == 0);
    CHECK_I64(tail_seen, total);
    CHECK(probe_rounds > 0);

    verify(g_store, writers, total);
    CHECK_OK(evs_close(g_store));

    TU_SECTION("the same after close and reopen");
    g_store = NULL;
    memset(&info, 0xAB, sizeof info);
    info.struct_size = sizeof info;
    if (CHECK_OK(evs_open(path, opts, &g_store, &info))) {
        CHECK_U64(info.next_position, (uint64_t)total);
        CHECK(!info.corruption_detected);
        CHECK_U64(info.bytes_truncated, 0);
        verify(g_store, writers, total);
        CHECK_OK(evs_close(g_store));
    }
    for (i = 0; i < WRITERS; i++)
        free(writers[i].recs);
}

int main(void)
{
    char root[1024];
    evs_options *o;

    g_per_writer = tu_scaled(2000);
    if (!tu_make_temp_dir(root, sizeof root))
        return tu_finish();

    run_scenario(root, "default-options", NULL);

    /* 64 KiB segments: the readers cross many segment rotations; group commit */
    o = evs_options_new();
    CHECK_OK(evs_options_set_max_segment_size(o, 65536));
    CHECK_OK(evs_options_set_fsync(o, EVS_FSYNC_ALWAYS, 0));
    run_scenario(root, "small-segments-fsync-always", o);
    evs_options_free(o);

    test_hot_stream(root);
    test_cancelled_threads(root);
    tu_cleanup_dir(root);
    return tu_finish();
}
