/*
 * test_abi_v1.c: the promises of the C ABI version 1 (issue 12): subscriptions say how
 * they ended, nothing aborts during thread exit, lengths are checked before use, and the
 * rest of the version-1 surface; and version 1.1's evs_last_error_detail, with event ids
 * that name one event (issue 19). (evs_close against racing calls: src/ffi/gate.rs's
 * tests and test_subscribe's "evs_close with subscriptions open".)
 *
 * Usage: test_abi_v1            (run by tests/c/run.sh, under valgrind)
 */
#include "test_util.h"

#include <sys/wait.h>

static char g_root[1024];
static uint64_t g_pos;

static void store_path(char *out, size_t cap, const char *name)
{
    tu_store_location(out, cap, g_root, name);
}

static evs_store *open_store(const char *path, const evs_options *opts)
{
    evs_store *s = NULL;
    if (!CHECK_OK(evs_open(path, opts, &s, NULL)))
        return NULL;
    CHECK(s != NULL);
    return s;
}

static evs_store *open_store_always(const char *path)
{
    evs_options *o = evs_options_new();
    evs_store *s;
    CHECK(o != NULL);
    CHECK_OK(evs_options_set_fsync(o, EVS_FSYNC_ALWAYS, 0));
    s = open_store(path, o);
    evs_options_free(o);
    return s;
}

static void sleep_ms(long ms)
{
    struct timespec ts;
    ts.tv_sec = ms / 1000;
    ts.tv_nsec = (ms % 1000) * 1000000L;
    nanosleep(&ts, NULL);
}

static evs_event_input input(const char *type, const char *payload)
{
    evs_event_input in = EVS_STRUCT_INIT(evs_event_input);
    in.event_type = type;
    in.payload = (const uint8_t *)payload;
    in.payload_len = payload ? strlen(payload) : 0;
    in.schema_version = 1;
    return in;
}

/* ---- subscriptions say how they ended ---- */

static int32_t count_cb(void *user_data, const evs_event *e)
{
    long *n = (long *)user_data;
    (void)e;
    __atomic_add_fetch(n, 1, __ATOMIC_SEQ_CST);
    return 0;
}

static int32_t stop_at_once_cb(void *user_data, const evs_event *e)
{
    (void)user_data;
    (void)e;
    return 1;
}

/* Waits up to 10 s for the subscription to end; its status then. */
static evs_status wait_ended(evs_subscription *sub, evs_status *how)
{
    evs_status st = EVS_OK;
    int i;
    for (i = 0; i < 10000; i++) {
        st = evs_subscription_status(sub, how);
        if (st != EVS_OK)
            break;
        sleep_ms(1);
    }
    return st;
}

/* Overwrites a byte inside the payload `marker` in the store's first segment. */
static int corrupt_marker(const char *store, const char *marker)
{
    char dir[1200], file[1500];
    DIR *d;
    struct dirent *e;
    FILE *f;
    long size, i;
    char *buf;
    size_t mlen = strlen(marker);
    int done = 0;

    snprintf(dir, sizeof dir, "%s/events", store);
    d = opendir(dir);
    if (d == NULL)
        return 0;
    file[0] = '\0';
    while ((e = readdir(d)) != NULL)
        if (strstr(e->d_name, ".wal") != NULL)
            snprintf(file, sizeof file, "%s/%s", dir, e->d_name);
    closedir(d);
    if (file[0] == '\0' || (f = fopen(file, "r+b")) == NULL)
        return 0;
    fseek(f, 0, SEEK_END);
    size = ftell(f);
    fseek(f, 0, SEEK_SET);
    buf = (char *)malloc((size_t)size);
    if (buf != NULL && fread(buf, 1, (size_t)size, f) == (size_t)size) {
        for (i = 0; i + (long)mlen <= size; i++) {
            if (memcmp(buf + i, marker, mlen) == 0) {
                fseek(f, i, SEEK_SET);
                fputc('#', f);
                done = 1;
                break;
            }
        }
    }
    free(buf);
    fclose(f);
    return done;
}

static void test_subscription_status(void)
{
    char path[1100];
    evs_store *s;
    evs_subscription *sub = NULL;
    evs_status how = 42;
    long n = 0;
    int i;

    TU_SECTION("subscriptions say how they ended");
    store_path(path, sizeof path, "sub-status");
    s = open_store_always(path);
    if (s == NULL)
        return;
    CHECK_STATUS(evs_subscription_status(NULL, &how), EVS_ERR_INVALID_ARGUMENT);
    CHECK_STR(evs_subscription_error_message(NULL), "");

    /* running: EVS_OK, status EVS_OK, no message; NULL out_status is allowed */
    CHECK_OK(evs_subscribe(s, 0, count_cb, &n, &sub));
    CHECK_OK(evs_subscription_status(sub, &how));
    CHECK_STATUS(how, EVS_OK);
    CHECK_OK(evs_subscription_status(sub, NULL));
    CHECK_STR(evs_subscription_error_message(sub), "");
    CHECK_OK(evs_subscription_close(sub));

    /* stopped by its callback: ended, with EVS_OK */
    CHECK_OK(evs_append_event(s, "One", (const uint8_t *)"1", 1, &g_pos));
    CHECK_OK(evs_subscribe(s, 0, stop_at_once_cb, NULL, &sub));
    CHECK_STATUS(wait_ended(sub, &how), EVS_END);
    CHECK_STATUS(how, EVS_OK);
    CHECK_STR(evs_subscription_error_message(sub), "");
    CHECK_OK(evs_subscription_close(sub));

    /* ended by a damaged record: the status and the message say so, and close returns it */
    if (tu_skip_on_pg("a subscription ended by a damaged record",
                      "the test damages a segment file; PostgreSQL has none")) {
        CHECK_OK(evs_close(s));
        return;
    }
    for (i = 0; i < 20; i++) {
        char payload[64];
        snprintf(payload, sizeof payload, "payload-MARK-%02d-of-the-test", i);
        CHECK_OK(evs_append_event(s, "Filler", (const uint8_t *)payload, strlen(payload), &g_pos));
    }
    CHECK(corrupt_marker(path, "MARK-10"));
    n = 0;
    CHECK_OK(evs_subscribe(s, 0, count_cb, &n, &sub));
    CHECK_STATUS(wait_ended(sub, &how), EVS_END);
    CHECK_STATUS(how, EVS_ERR_CORRUPT);
    CHECK(strlen(evs_subscription_error_message(sub)) > 0);
    CHECK_I64(__atomic_load_n(&n, __ATOMIC_SEQ_CST), 11); /* "One" and MARK-00..09 */
    CHECK_STATUS(evs_subscription_close(sub), EVS_ERR_CORRUPT);
    CHECK(strstr(evs_last_error_message(), "damaged record") != NULL);
    {
        /* the detail names the damaged event: "One" is 0, MARK-00..09 are 1..10 */
        evs_error_detail d = EVS_STRUCT_INIT(evs_error_detail);
        CHECK_OK(evs_last_error_detail(&d));
        CHECK_STATUS(d.code, EVS_ERR_CORRUPT);
        CHECK_U64(d.position, 11);
        CHECK_I64(d.part_index, -1);
        CHECK_I64(d.actual_version, -1);
    }
    CHECK_OK(evs_close(s));
}

/* ---- calls during thread exit ---- */

static pthread_key_t g_exit_key;
static evs_status g_exit_failing = 42;
static evs_status g_exit_ok = 42;
static int g_exit_msg_ok = 0;

/* Runs after the thread's Rust thread-locals are gone: must neither abort nor fail. */
static void at_thread_exit(void *arg)
{
    evs_store *s = (evs_store *)arg;
    int64_t v = -5;
    const char *m;
    g_exit_failing = evs_open(NULL, NULL, NULL, NULL);
    m = evs_last_error_message();
    g_exit_msg_ok = m != NULL;
    g_exit_ok = evs_stream_version(s, "exit-stream", &v);
}

static void *exiting_thread(void *arg)
{
    evs_event_input in = input("Exit", "e");
    CHECK_OK(evs_append(arg, "exit-stream", EVS_EXPECT_ANY, &in, 1, NULL, NULL));
    pthread_setspecific(g_exit_key, arg);
    return NULL;
}

static void test_calls_during_thread_exit(void)
{
    char path[1100];
    evs_store *s;
    pthread_t t;

    TU_SECTION("calls during thread exit do not abort");
    store_path(path, sizeof path, "thread-exit");
    s = open_store(path, NULL);
    if (s == NULL)
        return;
    CHECK(pthread_key_create(&g_exit_key, at_thread_exit) == 0);
    CHECK(pthread_create(&t, NULL, exiting_thread, s) == 0);
    pthread_join(t, NULL);
    CHECK_I64(g_exit_failing, EVS_ERR_INVALID_ARGUMENT);
    CHECK(g_exit_msg_ok);
    CHECK_I64(g_exit_ok, EVS_OK);
    pthread_key_delete(g_exit_key);
    CHECK_OK(evs_close(s));
}

/* ---- lengths are checked before they are used ---- */

static void test_lengths_checked_first(void)
{
    char path[1100];
    evs_store *s;
    evs_event_input in = input("Big", "x");

    TU_SECTION("lengths are checked before the bytes are touched");
    store_path(path, sizeof path, "lengths");
    s = open_store(path, NULL);
    if (s == NULL)
        return;
    /* a length far past the one-byte buffer: refused on the length alone */
    in.payload_len = (size_t)1 << 40;
    CHECK_STATUS(evs_append(s, "big", EVS_EXPECT_ANY, &in, 1, NULL, NULL), EVS_ERR_TOO_LARGE);
    CHECK(strstr(evs_last_error_message(), "events[0].payload") != NULL);
    CHECK_STATUS(evs_append_event(s, "Big", (const uint8_t *)"x", SIZE_MAX, &g_pos),
                 EVS_ERR_TOO_LARGE);
    in.payload_len = 1;
    in.metadata = (const uint8_t *)"m";
    in.metadata_len = SIZE_MAX / 2;
    CHECK_STATUS(evs_append(s, "big", EVS_EXPECT_ANY, &in, 1, NULL, NULL), EVS_ERR_TOO_LARGE);
    CHECK(strstr(evs_last_error_message(), "events[0].metadata") != NULL);
    CHECK_OK(evs_close(s));
}

/* ---- caller-allocated structs can grow ---- */

/* evs_event_input as a program built against a header without schema_version has it */
struct old_input {
    size_t struct_size;
    const char *event_type;
    const uint8_t *payload;
    size_t payload_len;
    const uint8_t *metadata;
    size_t metadata_len;
};

/* A cursor's first event, read into a fresh, fully initialised struct. */
static int read_first(evs_store *s, const char *stream, evs_event *out, evs_cursor **c)
{
    if (!CHECK_OK(evs_read_stream(s, stream, 0, c)))
        return 0;
    return CHECK_OK(evs_cursor_next(*c, out));
}

static void test_extendable_structs(void)
{
    char path[1100];
    evs_store *s;
    evs_cursor *c = NULL;
    evs_event e = EVS_STRUCT_INIT(evs_event);
    union {
        evs_stats st;
        unsigned char bytes[sizeof(evs_stats) + 32];
    } old_stats;
    union {
        evs_event ev;
        unsigned char bytes[sizeof(evs_event) + 32];
    } old_event;
    struct old_input olds[3];
    union {
        evs_event_input in;
        unsigned char bytes[sizeof(evs_event_input) + 16];
    } newer;
    evs_event_input in = input("T", "x"), pair[2];
    evs_account acct;
    size_t i, cut;
    int untouched;
    uint64_t pos = 0;

    TU_SECTION("caller-allocated structs: struct_size, old and new programs");
    store_path(path, sizeof path, "structs");
    s = open_store(path, NULL);
    if (s == NULL)
        return;

    /* an output struct of an older, smaller program: only its fields are written */
    memset(&old_stats, 0xCD, sizeof old_stats);
    cut = offsetof(evs_stats, subscriptions);
    old_stats.st.struct_size = cut;
    CHECK_OK(evs_append_event(s, "T", (const uint8_t *)"x", 1, NULL)); /* out_position optional */
    CHECK_OK(evs_stats_get(s, &old_stats.st));
    CHECK_U64(old_stats.st.struct_size, cut);
    CHECK_U64(old_stats.st.events, 1);
    untouched = 1;
    for (i = cut; i < sizeof old_stats.bytes; i++)
        untouched &= old_stats.bytes[i] == 0xCD;
    CHECK(untouched);

    /* input structs of an older program, in an array whose stride is their size */
    for (i = 0; i < 3; i++) {
        memset(&olds[i], 0, sizeof olds[i]);
        olds[i].struct_size = sizeof olds[i];
        olds[i].event_type = "Old";
        olds[i].payload = (const uint8_t *)(i == 0 ? "p0" : i == 1 ? "p1" : "p2");
        olds[i].payload_len = 2;
    }
    CHECK(sizeof(struct old_input) < sizeof(evs_event_input));
    CHECK_OK(evs_append(s, "old", EVS_EXPECT_NO_STREAM, (const evs_event_input *)(const void *)olds,
                        3, &pos, NULL));
    if (read_first(s, "old", &e, &c)) {
        CHECK_VIEW(e.payload, e.payload_len, "p0");
        CHECK_U64(e.schema_version, 1); /* missing field: zero, stored as 1 */
        CHECK_OK(evs_cursor_next(c, &e));
        CHECK_VIEW(e.payload, e.payload_len, "p1");
        CHECK_OK(evs_cursor_next(c, &e));
        CHECK_VIEW(e.payload, e.payload_len, "p2");
        CHECK_VIEW(e.event_type, e.event_type_len, "Old");
    }
    evs_cursor_free(c);
    c = NULL;

    /* an output evs_event of an older program: the fields past it are not written */
    memset(&old_event, 0xCD, sizeof old_event);
    cut = offsetof(evs_event, metadata);
    old_event.ev.struct_size = cut;
    CHECK_OK(evs_read_stream(s, "old", 0, &c));
    CHECK_OK(evs_cursor_next(c, &old_event.ev));
    CHECK_VIEW(old_event.ev.payload, old_event.ev.payload_len, "p0");
    untouched = 1;
    for (i = cut; i < sizeof old_event.bytes; i++)
        untouched &= old_event.bytes[i] == 0xCD;
    CHECK(untouched);
    evs_cursor_free(c);
    c = NULL;

    /* a newer program's struct: unknown fields must be zero */
    memset(&newer, 0, sizeof newer);
    newer.in = input("New", "n");
    newer.in.struct_size = sizeof newer.bytes;
    CHECK_OK(evs_append(s, "new", EVS_EXPECT_ANY, &newer.in, 1, NULL, NULL));
    newer.bytes[sizeof(evs_event_input) + 3] = 1;
    CHECK_STATUS(evs_append(s, "new", EVS_EXPECT_ANY, &newer.in, 1, NULL, NULL),
                 EVS_ERR_INVALID_ARGUMENT);
    CHECK(strstr(evs_last_error_message(), "newer library") != NULL);

    /* a struct whose size was never set, or entries of different sizes */
    in.struct_size = 0;
    CHECK_STATUS(evs_append(s, "x", EVS_EXPECT_ANY, &in, 1, NULL, NULL), EVS_ERR_INVALID_ARGUMENT);
    CHECK(strstr(evs_last_error_message(), "EVS_STRUCT_INIT(evs_event_input)") != NULL);
    in.struct_size = 3;
    CHECK_STATUS(evs_append(s, "x", EVS_EXPECT_ANY, &in, 1, NULL, NULL), EVS_ERR_INVALID_ARGUMENT);
    pair[0] = input("A", "a");
    pair[1] = input("B", "b");
    pair[1].struct_size = sizeof(struct old_input);
    CHECK_STATUS(evs_append(s, "x", EVS_EXPECT_ANY, pair, 2, NULL, NULL), EVS_ERR_INVALID_ARGUMENT);
    CHECK(strstr(evs_last_error_message(), "events[1].struct_size") != NULL);
    memset(&acct, 0, sizeof acct);
    CHECK_OK(evs_account_open(s, "a1", 5, NULL, NULL));
    CHECK_STATUS(evs_account_get(s, "a1", &acct), EVS_ERR_INVALID_ARGUMENT);
    CHECK(strstr(evs_last_error_message(), "out->struct_size is 0") != NULL);
    acct.struct_size = sizeof acct;
    CHECK_OK(evs_account_get(s, "a1", &acct));
    CHECK_I64(acct.balance, 5);
    CHECK_U64(acct.struct_size, sizeof acct);
    e.struct_size = 0;
    CHECK_OK(evs_read_all(s, 0, &c));
    CHECK_STATUS(evs_cursor_next(c, &e), EVS_ERR_INVALID_ARGUMENT);
    evs_cursor_free(c);
    CHECK_OK(evs_close(s));
}

/* ---- event ids and idempotent appends ---- */

static evs_event_input with_id(const char *type, const char *payload, uint8_t tag)
{
    evs_event_input in = input(type, payload);
    memset(in.id, tag, sizeof in.id);
    in.id[0] = 0xE0;
    return in;
}

static uint64_t next_pos(evs_store *s)
{
    uint64_t p = UINT64_MAX;
    CHECK_OK(evs_position_at(s, UINT64_MAX, &p));
    return p;
}

static void check_retry(evs_store *s, const char *stream, const evs_event_input *ev, size_t n,
                        uint64_t want_first, uint64_t want_version)
{
    uint64_t first = UINT64_MAX, version = UINT64_MAX, before = next_pos(s);
    CHECK_OK(evs_append(s, stream, EVS_EXPECT_NO_STREAM, ev, n, &first, &version));
    CHECK_U64(first, want_first);
    CHECK_U64(version, want_version);
    CHECK_U64(next_pos(s), before); /* nothing written */
}

static void test_idempotent_appends(void)
{
    char path[1100];
    evs_store *s;
    evs_options *o;
    evs_event_input abc[3], ad[2], dup[2], plain;
    evs_cursor *c = NULL;
    evs_event e = EVS_STRUCT_INIT(evs_event);
    evs_stats st = EVS_STRUCT_INIT(evs_stats);
    uint8_t zero[16];
    uint64_t first = 0, version = 0, before, x_pos = 0;
    int i;
    union {
        evs_event_input in;
        unsigned char bytes[sizeof(evs_event_input)];
    } old;

    TU_SECTION("event ids: a retried append stores nothing twice");
    store_path(path, sizeof path, "ids");
    s = open_store(path, NULL);
    if (s == NULL)
        return;
    memset(zero, 0, sizeof zero);
    abc[0] = with_id("Placed", "a", 0xA1);
    abc[1] = with_id("Paid", "b", 0xB2);
    abc[2] = with_id("Shipped", "c", 0xC3);
    CHECK_OK(evs_append_event(s, "Before", (const uint8_t *)"x", 1, NULL));
    CHECK_OK(evs_append(s, "order-1", EVS_EXPECT_NO_STREAM, abc, 3, &first, &version));
    CHECK_U64(first, 1);
    CHECK_U64(version, 2);

    /* the same append again (after a timeout, say): the original positions, no write,
       although its expected version no longer holds */
    check_retry(s, "order-1", abc, 3, 1, 2);

    /* some ids stored, some not: refused, nothing written */
    ad[0] = abc[0];
    ad[1] = with_id("Other", "d", 0xD4);
    before = next_pos(s);
    CHECK_STATUS(evs_append(s, "order-1", EVS_EXPECT_ANY, ad, 2, NULL, NULL),
                 EVS_ERR_ALREADY_EXISTS);
    CHECK(strstr(evs_last_error_message(), "events[1]") != NULL);
    ad[1] = input("NoId", "n");
    CHECK_STATUS(evs_append(s, "order-1", EVS_EXPECT_ANY, ad, 2, NULL, NULL),
                 EVS_ERR_ALREADY_EXISTS);
    CHECK(strstr(evs_last_error_message(), "has no id") != NULL);
    /* stored ids named for another stream: refused */
    CHECK_STATUS(evs_append(s, "order-2", EVS_EXPECT_ANY, abc, 3, NULL, NULL),
                 EVS_ERR_ALREADY_EXISTS);
    /* one id twice in an append */
    dup[0] = with_id("T", "1", 0x77);
    dup[1] = dup[0];
    CHECK_STATUS(evs_append(s, "order-3", EVS_EXPECT_ANY, dup, 2, NULL, NULL),
                 EVS_ERR_INVALID_ARGUMENT);
    CHECK(strstr(evs_last_error_message(), "twice") != NULL);
    CHECK_U64(next_pos(s), before);

    /* the id is readable; an event without one reads all zero */
    CHECK_OK(evs_read_all(s, 0, &c));
    CHECK_OK(evs_cursor_next(c, &e));
    CHECK(memcmp(e.id, zero, 16) == 0);
    CHECK_OK(evs_cursor_next(c, &e));
    CHECK(memcmp(e.id, abc[0].id, 16) == 0);
    CHECK_OK(evs_cursor_next(c, &e));
    CHECK(memcmp(e.id, abc[1].id, 16) == 0);
    evs_cursor_free(c);
    c = NULL;
    CHECK_OK(evs_stats_get(s, &st));
    CHECK_U64(st.event_ids, 3);

    /* an older program's struct without the id field: no id, whatever lies past it */
    memset(&old, 0x5A, sizeof old);
    old.in = input("Old", "o");
    memset(old.in.id, 0x5A, sizeof old.in.id);
    old.in.struct_size = offsetof(evs_event_input, id);
    CHECK_OK(evs_append(s, "old-program", EVS_EXPECT_ANY, &old.in, 1, NULL, NULL));
    CHECK_OK(evs_append(s, "old-program", EVS_EXPECT_ANY, &old.in, 1, NULL, &version));
    CHECK_U64(version, 1);

    /* the index survives a restart, with and without a snapshot */
    CHECK_OK(evs_close(s));
    s = open_store(path, NULL);
    if (s == NULL)
        return;
    check_retry(s, "order-1", abc, 3, 1, 2);
    CHECK_OK(evs_snapshot(s, NULL));
    plain = with_id("After", "z", 0x99);
    CHECK_OK(evs_append(s, "after-snapshot", EVS_EXPECT_ANY, &plain, 1, &x_pos, NULL));
    CHECK_OK(evs_close(s));
    s = open_store(path, NULL);
    if (s == NULL)
        return;
    check_retry(s, "order-1", abc, 3, 1, 2);
    check_retry(s, "after-snapshot", &plain, 1, x_pos, 0);
    CHECK_OK(evs_close(s));

    /* the window: ids older than it may be forgotten (then a retry appends again) */
    store_path(path, sizeof path, "ids-window");
    o = evs_options_new();
    CHECK_STATUS(evs_options_set_dedupe_window(o, 0), EVS_ERR_INVALID_ARGUMENT);
    CHECK_STATUS(evs_options_set_dedupe_window(o, ((uint64_t)1 << 30) + 1),
                 EVS_ERR_INVALID_ARGUMENT);
    CHECK_OK(evs_options_set_dedupe_window(o, 10));
    s = open_store(path, o);
    evs_options_free(o);
    if (s == NULL)
        return;
    plain = with_id("Early", "e", 0x42);
    CHECK_OK(evs_append(s, "early", EVS_EXPECT_ANY, &plain, 1, &first, NULL));
    for (i = 0; i < 9; i++)
        CHECK_OK(evs_append_event(s, "Filler", (const uint8_t *)"f", 1, NULL));
    check_retry(s, "early", &plain, 1, first, 0); /* within the last 10: found */
    for (i = 0; i < 30; i++) {
        evs_event_input f = with_id("Filler", "f", (uint8_t)i);
        CHECK_OK(evs_append(s, "fillers", EVS_EXPECT_ANY, &f, 1, NULL, NULL));
    }
    if (!tu_skip_on_pg("ids older than the dedupe window are forgotten",
                       "the file store's id index is bounded by the window; PostgreSQL "
                       "keeps every id (a unique index), so a retry is always found")) {
        CHECK_OK(evs_append(s, "early", EVS_EXPECT_ANY, &plain, 1, &x_pos, &version));
        CHECK(x_pos > first); /* forgotten: appended again */
        CHECK_U64(version, 1);
        CHECK_OK(evs_stats_get(s, &st));
        CHECK(st.event_ids <= 20);
    }
    CHECK_OK(evs_close(s));
}

/* ---- atomic appends to several streams ---- */

static void test_append_multi(void)
{
    char path[1100];
    evs_store *s;
    evs_event_input a[2], b[1];
    evs_stream_append parts[2];
    uint64_t first = 0, versions[2] = {0, 0}, before;
    int64_t v = 0;

    TU_SECTION("evs_append_multi: several streams, all or nothing");
    store_path(path, sizeof path, "multi");
    s = open_store(path, NULL);
    if (s == NULL)
        return;
    a[0] = with_id("Withdrawn", "10", 0x11);
    a[1] = with_id("Fee", "1", 0x12);
    b[0] = with_id("Deposited", "10", 0x13);
    parts[0] = (evs_stream_append)EVS_STRUCT_INIT(evs_stream_append);
    parts[0].stream = "acct-a";
    parts[0].expected_version = EVS_EXPECT_NO_STREAM;
    parts[0].events = a;
    parts[0].count = 2;
    parts[1] = (evs_stream_append)EVS_STRUCT_INIT(evs_stream_append);
    parts[1].stream = "acct-b";
    parts[1].expected_version = EVS_EXPECT_NO_STREAM;
    parts[1].events = b;
    parts[1].count = 1;
    CHECK_OK(evs_append_multi(s, parts, 2, &first, versions));
    CHECK_U64(first, 0);
    CHECK_U64(versions[0], 1);
    CHECK_U64(versions[1], 0);
    /* a retry: the same positions, nothing written */
    versions[0] = versions[1] = 99;
    CHECK_OK(evs_append_multi(s, parts, 2, &first, versions));
    CHECK_U64(first, 0);
    CHECK_U64(versions[0], 1);
    CHECK_U64(versions[1], 0);
    CHECK_U64(next_pos(s), 3);

    /* the second part's expected version fails: nothing of the first is written */
    a[0] = input("Withdrawn", "5");
    a[1] = input("Fee", "1");
    b[0] = input("Deposited", "5");
    parts[0].expected_version = 1;
    parts[1].expected_version = 7;
    before = next_pos(s);
    CHECK_STATUS(evs_append_multi(s, parts, 2, NULL, NULL), EVS_ERR_WRONG_EXPECTED_VERSION);
    CHECK(strstr(evs_last_error_message(), "acct-b") != NULL);
    CHECK_U64(next_pos(s), before);
    CHECK_OK(evs_stream_version(s, "acct-a", &v));
    CHECK_I64(v, 1);
    parts[1].expected_version = 0;
    CHECK_OK(evs_append_multi(s, parts, 2, NULL, NULL)); /* outputs are optional */
    CHECK_U64(next_pos(s), before + 3);

    /* bad input */
    CHECK_STATUS(evs_append_multi(NULL, parts, 2, NULL, NULL), EVS_ERR_INVALID_ARGUMENT);
    CHECK_STATUS(evs_append_multi(s, NULL, 2, NULL, NULL), EVS_ERR_INVALID_ARGUMENT);
    CHECK_STATUS(evs_append_multi(s, parts, 0, NULL, NULL), EVS_ERR_INVALID_ARGUMENT);
    parts[1].count = 0;
    CHECK_STATUS(evs_append_multi(s, parts, 2, NULL, NULL), EVS_ERR_INVALID_ARGUMENT);
    CHECK(strstr(evs_last_error_message(), "appends[1].events") != NULL);
    parts[1].count = 1;
    parts[1].stream = NULL;
    CHECK_STATUS(evs_append_multi(s, parts, 2, NULL, NULL), EVS_ERR_INVALID_ARGUMENT);
    CHECK(strstr(evs_last_error_message(), "appends[1].stream") != NULL);
    parts[1].stream = "acct-b";
    parts[1].expected_version = -9;
    CHECK_STATUS(evs_append_multi(s, parts, 2, NULL, NULL), EVS_ERR_INVALID_ARGUMENT);
    parts[1].expected_version = EVS_EXPECT_ANY;
    parts[1].struct_size = 0;
    CHECK_STATUS(evs_append_multi(s, parts, 2, NULL, NULL), EVS_ERR_INVALID_ARGUMENT);
    CHECK_U64(next_pos(s), before + 3);
    CHECK_OK(evs_close(s));
}

/* ---- reads ---- */

static void append_to(evs_store *s, const char *stream, int n)
{
    int i;
    char buf[32];
    for (i = 0; i < n; i++) {
        evs_event_input in;
        snprintf(buf, sizeof buf, "%s#%d", stream, i);
        in = input("Ev", buf);
        CHECK_OK(evs_append(s, stream, EVS_EXPECT_ANY, &in, 1, NULL, NULL));
    }
}

static void test_reads(void)
{
    char path[1100], want[64];
    evs_store *s;
    evs_cursor *c = NULL;
    evs_event e = EVS_STRUCT_INIT(evs_event);
    evs_event_data *data = NULL;
    evs_stream_list *list = NULL;
    evs_stream_info info = EVS_STRUCT_INIT(evs_stream_info);
    uint64_t last = 0, n;
    int i, ok;

    TU_SECTION("reads: a stream backward, one event, the streams, a category");
    store_path(path, sizeof path, "reads");
    s = open_store(path, NULL);
    if (s == NULL)
        return;
    append_to(s, "cat-1", 2);  /* 0 1 */
    append_to(s, "dog-1", 1);  /* 2 */
    append_to(s, "cat-2", 1);  /* 3 */
    CHECK_OK(evs_append_event(s, "NoStream", (const uint8_t *)"-", 1, NULL)); /* 4 */
    append_to(s, "cat-1", 1);  /* 5 */
    append_to(s, "long", 150); /* 6..155 */

    /* backward: the last events of a stream, newest first, across batches */
    CHECK_OK(evs_read_stream_backward(s, "long", UINT64_MAX, &c));
    ok = 1;
    for (i = 149; i >= 0; i--) {
        snprintf(want, sizeof want, "long#%d", i);
        if (evs_cursor_next(c, &e) != EVS_OK || e.stream_version != (uint64_t)i ||
            e.payload_len != strlen(want) || memcmp(e.payload, want, e.payload_len) != 0)
            ok = 0;
    }
    CHECK(ok);
    CHECK_STATUS(evs_cursor_next(c, &e), EVS_END);
    evs_cursor_free(c);
    CHECK_OK(evs_read_stream_backward(s, "cat-1", 1, &c));
    CHECK_OK(evs_cursor_next(c, &e));
    CHECK_U64(e.position, 1);
    CHECK_OK(evs_cursor_next(c, &e));
    CHECK_U64(e.position, 0);
    CHECK_STATUS(evs_cursor_next(c, &e), EVS_END);
    evs_cursor_free(c);
    CHECK_STATUS(evs_read_stream_backward(s, "nope", UINT64_MAX, &c), EVS_ERR_NOT_FOUND);
    CHECK_STATUS(evs_read_stream_backward(s, NULL, 0, &c), EVS_ERR_INVALID_ARGUMENT);

    /* one event by position, owned by its data handle */
    CHECK_OK(evs_read_event(s, 3, &e, &data));
    CHECK_VIEW(e.stream, e.stream_len, "cat-2");
    CHECK_VIEW(e.payload, e.payload_len, "cat-2#0");
    CHECK_U64(e.position, 3);
    evs_event_data_free(data);
    data = NULL;
    CHECK_STATUS(evs_read_event(s, 156, &e, &data), EVS_ERR_NOT_FOUND);
    CHECK(data == NULL);
    CHECK_STATUS(evs_read_event(s, 3, &e, NULL), EVS_ERR_INVALID_ARGUMENT);
    CHECK_STATUS(evs_read_event(s, 3, NULL, &data), EVS_ERR_INVALID_ARGUMENT);
    evs_event_data_free(NULL);

    /* the streams, in creation order, with versions */
    CHECK_OK(evs_list_streams(s, &list));
    CHECK_OK(evs_stream_list_next(list, &info));
    CHECK_VIEW(info.name, info.name_len, "cat-1");
    CHECK_U64(info.version, 2);
    CHECK_U64(info.first_position, 0);
    CHECK_OK(evs_stream_list_next(list, &info));
    CHECK_VIEW(info.name, info.name_len, "dog-1");
    CHECK_OK(evs_stream_list_next(list, &info));
    CHECK_VIEW(info.name, info.name_len, "cat-2");
    CHECK_U64(info.first_position, 3);
    CHECK_OK(evs_stream_list_next(list, &info));
    CHECK_VIEW(info.name, info.name_len, "long");
    CHECK_U64(info.version, 149);
    CHECK_STATUS(evs_stream_list_next(list, &info), EVS_END);
    info.struct_size = 0;
    CHECK_STATUS(evs_stream_list_next(list, &info), EVS_ERR_INVALID_ARGUMENT);
    evs_stream_list_free(list);
    evs_stream_list_free(NULL);
    CHECK_STATUS(evs_list_streams(NULL, &list), EVS_ERR_INVALID_ARGUMENT);

    /* a category: the events of "cat-*" in position order, and new ones as they come */
    CHECK_OK(evs_read_category(s, "cat-", 0, &c));
    {
        static const uint64_t want_pos[] = {0, 1, 3, 5};
        ok = 1;
        for (i = 0; i < 4; i++)
            if (evs_cursor_next(c, &e) != EVS_OK || e.position != want_pos[i] ||
                e.stream_len < 4 || memcmp(e.stream, "cat-", 4) != 0)
                ok = 0;
        CHECK(ok);
    }
    CHECK_STATUS(evs_cursor_next(c, &e), EVS_END);
    append_to(s, "cat-3", 1); /* a new stream of the category: 156 */
    append_to(s, "dog-1", 1); /* 157 */
    append_to(s, "cat-1", 1); /* 158 */
    CHECK_OK(evs_cursor_next(c, &e));
    CHECK_U64(e.position, 156);
    CHECK_OK(evs_cursor_next(c, &e));
    CHECK_U64(e.position, 158);
    CHECK_STATUS(evs_cursor_next(c, &e), EVS_END);
    evs_cursor_free(c);
    CHECK_OK(evs_read_category(s, "cat-", 4, &c));
    n = 0;
    while (evs_cursor_next(c, &e) == EVS_OK) {
        n++;
        last = e.position;
    }
    CHECK_U64(n, 3);
    CHECK_U64(last, 158);
    evs_cursor_free(c);
    CHECK_STATUS(evs_read_category(s, "", 0, &c), EVS_ERR_INVALID_ARGUMENT);
    CHECK_STATUS(evs_read_category(s, "cat-", 10000, &c), EVS_ERR_NOT_FOUND);
    CHECK_OK(evs_close(s));
}

/* ---- options ---- */

static void test_options(void)
{
    char path[1100], big[101];
    evs_store *s;
    evs_options *o;
    evs_store_options eo = EVS_STRUCT_INIT(evs_store_options);
    evs_event_input in;

    TU_SECTION("options: the event size limit, and the options a store runs with");
    store_path(path, sizeof path, "options");
    o = evs_options_new();
    CHECK_STATUS(evs_options_set_max_event_size(o, 0), EVS_ERR_INVALID_ARGUMENT);
    CHECK_STATUS(evs_options_set_max_event_size(o, (16u << 20) + 1), EVS_ERR_INVALID_ARGUMENT);
    CHECK_STATUS(evs_options_set_max_event_size(NULL, 10), EVS_ERR_INVALID_ARGUMENT);
    CHECK_OK(evs_options_set_max_event_size(o, 100));
    CHECK_OK(evs_options_set_fsync(o, EVS_FSYNC_BATCH, 7));
    s = open_store(path, o);
    evs_options_free(o);
    if (s == NULL)
        return;
    memset(big, 'b', sizeof big);
    big[100] = '\0';
    in = input("Big", big);
    CHECK_OK(evs_append(s, "sized", EVS_EXPECT_ANY, &in, 1, NULL, NULL));
    in.payload_len = 101;
    CHECK_STATUS(evs_append(s, "sized", EVS_EXPECT_ANY, &in, 1, NULL, NULL), EVS_ERR_TOO_LARGE);
    in.payload_len = 60;
    in.metadata = (const uint8_t *)big;
    in.metadata_len = 41;
    CHECK_STATUS(evs_append(s, "sized", EVS_EXPECT_ANY, &in, 1, NULL, NULL), EVS_ERR_TOO_LARGE);
    CHECK_STATUS(evs_append_event(s, "Big", (const uint8_t *)big, 101, NULL), EVS_ERR_TOO_LARGE);

    CHECK_OK(evs_store_options_get(s, &eo));
    CHECK_U64(eo.max_event_size, 100);
    CHECK_I64(eo.fsync_policy, EVS_FSYNC_BATCH);
    CHECK_U64(eo.batch_window_ms, 7);
    CHECK_U64(eo.dedupe_window, 1048576);
    CHECK_U64(eo.snapshot_every, 0);
    CHECK(eo.preallocate);
    CHECK(!eo.read_only);
    CHECK_U64(eo.max_segment_size, 128u << 20);
    CHECK_STATUS(evs_store_options_get(s, NULL), EVS_ERR_INVALID_ARGUMENT);
    CHECK_STATUS(evs_store_options_get(NULL, &eo), EVS_ERR_INVALID_ARGUMENT);
    CHECK_OK(evs_close(s));
}

/* ---- many events a call ---- */

static void test_next_batch(void)
{
    char path[1100], want[32];
    evs_store *s;
    evs_cursor *c = NULL;
    evs_event batch[64];
    size_t n = 99, i, total = 0;
    int ok = 1, b;
    union {
        evs_event first;
        unsigned char bytes[8 * sizeof(evs_event)];
    } old;
    size_t stride = offsetof(evs_event, id);
    uint8_t *big;

    TU_SECTION("evs_cursor_next_batch: many views a call");
    store_path(path, sizeof path, "batch");
    s = open_store(path, NULL);
    if (s == NULL)
        return;
    for (i = 0; i < 300; i++) {
        evs_event_input in;
        snprintf(want, sizeof want, "e%zu", i);
        in = input("B", want);
        in.id[0] = 0xB0;
        in.id[1] = (uint8_t)(i & 0xff);
        in.id[2] = (uint8_t)(i >> 8);
        CHECK_OK(evs_append(s, i % 2 ? "odd" : "even", EVS_EXPECT_ANY, &in, 1, NULL, NULL));
    }
    batch[0] = (evs_event)EVS_STRUCT_INIT(evs_event);
    CHECK_OK(evs_read_all(s, 0, &c));
    for (b = 0; b < 5; b++) {
        CHECK_OK(evs_cursor_next_batch(c, batch, 64, &n));
        CHECK_U64(n, b < 4 ? 64 : 300 - 256);
        /* every view of the batch is valid at once */
        for (i = 0; i < n; i++) {
            snprintf(want, sizeof want, "e%zu", total + i);
            ok &= batch[i].position == total + i;
            ok &= batch[i].payload_len == strlen(want) &&
                  memcmp(batch[i].payload, want, batch[i].payload_len) == 0;
            ok &= batch[i].stream_len == ((total + i) % 2 ? 3u : 4u);
            ok &= batch[i].id[0] == 0xB0 && batch[i].id[1] == (uint8_t)((total + i) & 0xff) &&
                  batch[i].id[2] == (uint8_t)((total + i) >> 8);
        }
        total += n;
    }
    CHECK(ok);
    CHECK_STATUS(evs_cursor_next_batch(c, batch, 64, &n), EVS_END);
    CHECK_U64(n, 0);
    /* a forward cursor tails: new events come in the next batch */
    CHECK_OK(evs_append_event(s, "Late", (const uint8_t *)"late", 4, NULL));
    CHECK_OK(evs_cursor_next_batch(c, batch, 64, &n));
    CHECK_U64(n, 1);
    CHECK_VIEW(batch[0].payload, batch[0].payload_len, "late");
    /* bad input */
    CHECK_STATUS(evs_cursor_next_batch(c, batch, 0, &n), EVS_ERR_INVALID_ARGUMENT);
    CHECK_STATUS(evs_cursor_next_batch(c, batch, 64, NULL), EVS_ERR_INVALID_ARGUMENT);
    CHECK_STATUS(evs_cursor_next_batch(NULL, batch, 64, &n), EVS_ERR_INVALID_ARGUMENT);
    CHECK_STATUS(evs_cursor_next_batch(c, NULL, 64, &n), EVS_ERR_INVALID_ARGUMENT);
    batch[0].struct_size = 0;
    CHECK_STATUS(evs_cursor_next_batch(c, batch, 64, &n), EVS_ERR_INVALID_ARGUMENT);
    batch[0].struct_size = sizeof batch[0];
    evs_cursor_free(c);
    c = NULL;

    /* an older program's smaller evs_event: the array's stride is its struct_size */
    memset(&old, 0xCD, sizeof old);
    old.first.struct_size = stride;
    CHECK_OK(evs_read_stream(s, "odd", 0, &c));
    CHECK_OK(evs_cursor_next_batch(c, &old.first, 8, &n));
    CHECK_U64(n, 8);
    ok = 1;
    for (i = 0; i < 8; i++) {
        evs_event e;
        memcpy(&e, old.bytes + i * stride, stride);
        snprintf(want, sizeof want, "e%zu", 2 * i + 1);
        ok &= e.position == 2 * i + 1 && e.payload_len == strlen(want) &&
              memcmp(e.payload, want, e.payload_len) == 0;
    }
    CHECK(ok);
    ok = 1;
    for (i = 8 * stride; i < sizeof old.bytes; i++)
        ok &= old.bytes[i] == 0xCD;
    CHECK(ok); /* nothing written past the 8 entries of the caller's size */
    evs_cursor_free(c);
    c = NULL;

    /* a batch's bytes are bounded: 1 MiB events come a few at a time */
    big = (uint8_t *)calloc(1, 1 << 20);
    for (i = 0; i < 10 && big != NULL; i++)
        CHECK_OK(evs_append_event(s, "Big", big, 1 << 20, NULL));
    free(big);
    CHECK_OK(evs_read_all(s, 301, &c));
    CHECK_OK(evs_cursor_next_batch(c, batch, 64, &n));
    CHECK(n >= 1 && n <= 5);
    total = n;
    while (evs_cursor_next_batch(c, batch, 64, &n) == EVS_OK)
        total += n;
    CHECK_U64(total, 10);
    evs_cursor_free(c);
    CHECK_OK(evs_close(s));
}

/* ---- zero-copy batches: every view of a batch stays valid until the next call ---- */

/* Event i's payload: 1 to 700 bytes of a pattern of i; its stream alternates between an
 * ASCII name and one with non-ASCII UTF-8 (the full check's path), its type likewise. */
static size_t view_payload(size_t i, uint8_t *buf)
{
    size_t n = 1 + (i * 7919) % 700, j;
    for (j = 0; j < n; j++)
        buf[j] = (uint8_t)(i * 31 + j);
    return n;
}

static void view_stream(size_t i, char *out, size_t cap)
{
    snprintf(out, cap, i % 3 ? "acc-%zu" : "str\xc3\xb6m-%zu", i % 17);
}

static const char *view_type(size_t i) { return i % 5 ? "Deposited" : "D\xc3\xa9pos\xc3\xa9"; }

static void read_in_batches(const char *name, uint64_t max_segment, size_t events)
{
    char path[1100], stream[32], want_stream[32];
    uint8_t payload[700];
    evs_options *o = evs_options_new();
    evs_store *s;
    evs_cursor *c = NULL;
    static evs_event batch[256];
    size_t i, n, total = 0, calls = 0;
    int ok = 1;

    store_path(path, sizeof path, name);
    CHECK(o != NULL);
    if (max_segment)
        CHECK_OK(evs_options_set_max_segment_size(o, max_segment));
    s = open_store(path, o);
    evs_options_free(o);
    if (s == NULL)
        return;
    for (i = 0; i < events; i++) {
        evs_event_input in = EVS_STRUCT_INIT(evs_event_input);
        in.event_type = view_type(i);
        in.payload = payload;
        in.payload_len = view_payload(i, payload);
        view_stream(i, stream, sizeof stream);
        if (!CHECK_OK(evs_append(s, stream, EVS_EXPECT_ANY, &in, 1, NULL, NULL)))
            break;
    }
    batch[0] = (evs_event)EVS_STRUCT_INIT(evs_event);
    CHECK_OK(evs_read_all(s, 0, &c));
    while (evs_cursor_next_batch(c, batch, 256, &n) == EVS_OK) {
        calls++;
        /* checked only once the whole batch is out: no view may have moved */
        for (i = 0; i < n; i++) {
            size_t at = total + i, len = view_payload(at, payload);
            view_stream(at, want_stream, sizeof want_stream);
            ok &= batch[i].position == at;
            ok &= batch[i].payload_len == len && memcmp(batch[i].payload, payload, len) == 0;
            ok &= batch[i].stream_len == strlen(want_stream) &&
                  memcmp(batch[i].stream, want_stream, batch[i].stream_len) == 0;
            ok &= batch[i].event_type_len == strlen(view_type(at)) &&
                  memcmp(batch[i].event_type, view_type(at), batch[i].event_type_len) == 0;
        }
        total += n;
    }
    CHECK(ok);
    CHECK_U64(total, events);
    CHECK(calls >= events / 256);
    evs_cursor_free(c);
    CHECK_OK(evs_close(s));
}

static void test_batch_views_in_place(void)
{
    size_t events = (size_t)(20000 * tu_scale());
    TU_SECTION("evs_cursor_next_batch: views into the read buffer stay put for the whole batch");
    /* ~7 MB in one segment: batches meet the 1 MiB read buffer's refills */
    read_in_batches("views-one-segment", 0, events);
    /* 64 KiB segments: batches meet the ends of segments */
    read_in_batches("views-small-segments", 64 << 10, events / 4);
}

/* ---- handles do not survive fork ---- */

static int32_t idle_cb(void *user_data, const evs_event *e)
{
    (void)user_data;
    (void)e;
    return 0;
}

/* What a forked child leaves behind, reachable. */
static evs_store *g_child_store;
static evs_subscription *g_child_sub;

static void test_fork(void)
{
    char path[1100];
    evs_store *s;
    evs_subscription *sub = NULL;
    pid_t pid;
    int status = 0, fds[2];
    ssize_t got;
    char report[80];
    uint64_t before;

    TU_SECTION("a forked child cannot use or close its parent's handles");
    store_path(path, sizeof path, "fork");
    s = open_store(path, NULL);
    if (s == NULL)
        return;
    CHECK_OK(evs_append_event(s, "Parent", (const uint8_t *)"p", 1, NULL));
    CHECK_OK(evs_subscribe(s, 0, idle_cb, NULL, &sub));
    before = next_pos(s);
    fflush(stdout);
    CHECK(pipe(fds) == 0);
    pid = fork();
    if (pid == 0) {
        /* the child: every use refused, nothing written, nothing waited for. It reports
           through the pipe: under valgrind its exit status is valgrind's (the parent's
           threads, which it lacks, own memory it cannot free). */
        char bad[64] = "";
        evs_store *again = NULL;
        g_child_store = s;
        g_child_sub = sub;
        if (evs_append_event(s, "Child", (const uint8_t *)"c", 1, NULL) != EVS_ERR_INVALID_ARGUMENT)
            strcat(bad, " append");
        if (strstr(evs_last_error_message(), "fork") == NULL)
            strcat(bad, " message");
        if (evs_sync(s) != EVS_ERR_INVALID_ARGUMENT)
            strcat(bad, " sync");
        if (evs_subscription_close(sub) != EVS_ERR_INVALID_ARGUMENT)
            strcat(bad, " subscription_close");
        if (evs_close(s) != EVS_ERR_INVALID_ARGUMENT)
            strcat(bad, " close");
        if (!tu_pg()) {
            if (evs_open(path, NULL, &again, NULL) != EVS_ERR_LOCKED) /* the parent's lock */
                strcat(bad, " open");
        } else if (evs_open(path, NULL, &again, NULL) != EVS_OK || evs_close(again) != EVS_OK) {
            /* no lock on PostgreSQL: the child opens the store as any process may */
            strcat(bad, " open");
        }
        if (write(fds[1], bad[0] ? bad : "ok", bad[0] ? strlen(bad) : 2) < 0)
            _exit(4);
        _exit(0);
    }
    CHECK(pid > 0);
    close(fds[1]);
    got = read(fds[0], report, sizeof report - 1);
    report[got > 0 ? got : 0] = '\0';
    close(fds[0]);
    CHECK(waitpid(pid, &status, 0) == pid);
    CHECK(WIFEXITED(status));
    CHECK_STR(report, "ok");
    /* the parent's store is as it was, and works */
    CHECK_U64(next_pos(s), before);
    CHECK_OK(evs_append_event(s, "Parent", (const uint8_t *)"p", 1, NULL));
    CHECK_OK(evs_subscription_close(sub));
    CHECK_OK(evs_close(s));
    s = open_store(path, NULL);
    if (s != NULL) {
        CHECK_U64(next_pos(s), before + 1);
        CHECK_OK(evs_close(s));
    }
}

/* ---- versions ---- */

static void test_versions(void)
{
    char text[32];
    TU_SECTION("versions: header and library agree");
    CHECK_I64(EVS_ABI_VERSION, 1);
    CHECK_I64(EVS_VERSION_MAJOR, EVS_ABI_VERSION);
    CHECK_I64(EVS_VERSION_NUMBER,
              1000000 * EVS_VERSION_MAJOR + 1000 * EVS_VERSION_MINOR + EVS_VERSION_PATCH);
    CHECK_I64(evs_version_number(), EVS_VERSION_NUMBER);
    CHECK_I64(evs_version_number() / 1000000, EVS_VERSION_MAJOR);
    snprintf(text, sizeof text, "%d.%d.%d", EVS_VERSION_MAJOR, EVS_VERSION_MINOR,
             EVS_VERSION_PATCH);
    CHECK_STR(evs_version(), text);
    CHECK_I64(EVS_EXPECT_ANY, -1);
    CHECK_I64(EVS_EXPECT_NO_STREAM, -2);
    CHECK_I64(EVS_EXPECT_EXISTS, -3);
    CHECK_I64(EVS_ERR_BUSY, -14);
    CHECK_STR(evs_status_name(EVS_ERR_BUSY), "EVS_ERR_BUSY");
    CHECK_I64(EVS_ERR_UNAVAILABLE, -15);
    CHECK_STR(evs_status_name(EVS_ERR_UNAVAILABLE), "EVS_ERR_UNAVAILABLE");
}

/* ---- structured errors (version 1.1) ---- */

static evs_error_detail detail_now(void)
{
    evs_error_detail d = EVS_STRUCT_INIT(evs_error_detail);
    CHECK_OK(evs_last_error_detail(&d));
    return d;
}

static void *fresh_thread_detail(void *arg)
{
    evs_error_detail *d = (evs_error_detail *)arg;
    d->struct_size = sizeof *d;
    if (evs_last_error_detail(d) != EVS_OK)
        d->code = 12345;
    return NULL;
}

static void test_error_detail(void)
{
    char path[1100];
    evs_store *s;
    evs_error_detail d;
    evs_event_input placed, other, one;
    evs_stream_append parts[2];
    evs_stream_append *many;
    pthread_t t;
    uint64_t first = 0, before;
    size_t i;
    union {
        evs_error_detail d;
        unsigned char bytes[sizeof(evs_error_detail)];
    } old;

    TU_SECTION("evs_last_error_detail: the numbers of the last error, per thread");
    /* a thread that has had no failing call: code EVS_OK, every field "none" */
    memset(&d, 0x5A, sizeof d);
    CHECK(pthread_create(&t, NULL, fresh_thread_detail, &d) == 0);
    CHECK(pthread_join(t, NULL) == 0);
    CHECK_I64(d.code, EVS_OK);
    CHECK_I64(d.actual_version, -1);
    CHECK_I64(d.part_index, -1);
    CHECK_U64(d.position, UINT64_MAX);
    /* bad arguments are refused, and become the last error themselves */
    CHECK_STATUS(evs_last_error_detail(NULL), EVS_ERR_INVALID_ARGUMENT);
    memset(&d, 0, sizeof d);
    CHECK_STATUS(evs_last_error_detail(&d), EVS_ERR_INVALID_ARGUMENT);
    CHECK(strstr(evs_last_error_message(), "EVS_STRUCT_INIT") != NULL);
    d = detail_now();
    CHECK_STATUS(d.code, EVS_ERR_INVALID_ARGUMENT);

    store_path(path, sizeof path, "detail");
    s = open_store(path, NULL);
    if (s == NULL)
        return;
    one = input("T", "1");
    CHECK_OK(evs_append(s, "acct-a", EVS_EXPECT_NO_STREAM, &one, 1, NULL, NULL));
    CHECK_OK(evs_append(s, "acct-a", 0, &one, 1, NULL, NULL));

    /* a wrong expected version: the stream's version; evs_append names no part */
    CHECK_STATUS(evs_append(s, "acct-a", 5, &one, 1, NULL, NULL), EVS_ERR_WRONG_EXPECTED_VERSION);
    d = detail_now();
    CHECK_STATUS(d.code, EVS_ERR_WRONG_EXPECTED_VERSION);
    CHECK_I64(d.actual_version, 1);
    CHECK_I64(d.part_index, -1);
    CHECK_U64(d.position, UINT64_MAX);
    /* a later successful call leaves it as it was */
    CHECK_OK(evs_append(s, "acct-b", EVS_EXPECT_ANY, &one, 1, NULL, NULL));
    CHECK_I64(detail_now().actual_version, 1);
    CHECK_STATUS(evs_append(s, "acct-none", EVS_EXPECT_EXISTS, &one, 1, NULL, NULL),
                 EVS_ERR_WRONG_EXPECTED_VERSION);
    CHECK_I64(detail_now().actual_version, -1); /* no such stream */

    /* evs_append_multi: the failing part and its stream's version */
    parts[0] = (evs_stream_append)EVS_STRUCT_INIT(evs_stream_append);
    parts[0].stream = "acct-c";
    parts[0].expected_version = EVS_EXPECT_NO_STREAM;
    parts[0].events = &one;
    parts[0].count = 1;
    parts[1] = parts[0];
    parts[1].stream = "acct-b";
    parts[1].expected_version = 3;
    CHECK_STATUS(evs_append_multi(s, parts, 2, NULL, NULL), EVS_ERR_WRONG_EXPECTED_VERSION);
    d = detail_now();
    CHECK_I64(d.part_index, 1);
    CHECK_I64(d.actual_version, 0);

    /* an id reused for other content: refused, naming the stored event */
    placed = with_id("Placed", "order 1", 0x61);
    CHECK_OK(evs_append(s, "order-1", EVS_EXPECT_ANY, &placed, 1, &first, NULL));
    CHECK_OK(evs_append(s, "order-1", EVS_EXPECT_ANY, &placed, 1, NULL, NULL)); /* a retry */
    before = next_pos(s);
    other = with_id("Placed", "order 2", 0x61);
    CHECK_STATUS(evs_append(s, "order-1", EVS_EXPECT_ANY, &other, 1, NULL, NULL),
                 EVS_ERR_ALREADY_EXISTS);
    CHECK(strstr(evs_last_error_message(), "other content") != NULL);
    CHECK(strstr(evs_last_error_message(), "payload") != NULL);
    d = detail_now();
    CHECK_STATUS(d.code, EVS_ERR_ALREADY_EXISTS);
    CHECK_U64(d.position, first);
    CHECK_I64(d.part_index, -1);
    other = with_id("Shipped", "order 1", 0x61);
    parts[0].events = &one;
    parts[0].expected_version = EVS_EXPECT_ANY;
    parts[1].stream = "order-1";
    parts[1].expected_version = EVS_EXPECT_ANY;
    parts[1].events = &other;
    CHECK_STATUS(evs_append_multi(s, parts, 2, NULL, NULL), EVS_ERR_ALREADY_EXISTS);
    CHECK(strstr(evs_last_error_message(), "type") != NULL);
    d = detail_now();
    CHECK_I64(d.part_index, 1);
    CHECK_U64(d.position, first);
    other = placed;
    other.metadata = (const uint8_t *)"m";
    other.metadata_len = 1;
    CHECK_STATUS(evs_append(s, "order-1", EVS_EXPECT_ANY, &other, 1, NULL, NULL),
                 EVS_ERR_ALREADY_EXISTS);
    other = placed;
    other.schema_version = 3;
    CHECK_STATUS(evs_append(s, "order-1", EVS_EXPECT_ANY, &other, 1, NULL, NULL),
                 EVS_ERR_ALREADY_EXISTS);
    CHECK_STATUS(evs_append(s, "order-2", EVS_EXPECT_ANY, &placed, 1, NULL, NULL),
                 EVS_ERR_ALREADY_EXISTS);
    CHECK(strstr(evs_last_error_message(), "stream 'order-1'") != NULL);
    CHECK_U64(next_pos(s), before);

    /* an older program's smaller struct: only the fields it has are written */
    CHECK_STATUS(evs_append(s, "acct-a", 9, &one, 1, NULL, NULL), EVS_ERR_WRONG_EXPECTED_VERSION);
    memset(&old, 0x77, sizeof old);
    old.d.struct_size = offsetof(evs_error_detail, part_index);
    CHECK_OK(evs_last_error_detail(&old.d));
    CHECK_U64(old.d.struct_size, offsetof(evs_error_detail, part_index));
    CHECK_STATUS(old.d.code, EVS_ERR_WRONG_EXPECTED_VERSION);
    CHECK_I64(old.d.actual_version, 1);
    for (i = offsetof(evs_error_detail, part_index); i < sizeof old; i++)
        if (old.bytes[i] != 0x77)
            break;
    CHECK_U64(i, sizeof old);

    /* more than 1024 parts: EVS_ERR_TOO_LARGE, as the other limits on an append's size */
    many = (evs_stream_append *)calloc(1025, sizeof *many);
    if (many != NULL) {
        for (i = 0; i < 1025; i++) {
            many[i] = parts[0];
            many[i].stream = "many";
        }
        CHECK_OK(evs_append_multi(s, many, 1024, NULL, NULL));
        CHECK_STATUS(evs_append_multi(s, many, 1025, NULL, NULL), EVS_ERR_TOO_LARGE);
        CHECK(strstr(evs_last_error_message(), "1024") != NULL);
        free(many);
    }
    CHECK_OK(evs_close(s));
}

/* ---- evs_shutdown ---- */

static void test_shutdown(void)
{
    char path[1100];
    evs_store *s;
    TU_SECTION("evs_shutdown: refused while a store is open, then stops the threads");
    store_path(path, sizeof path, "shutdown");
    s = open_store(path, NULL);
    if (s == NULL)
        return;
    CHECK_STATUS(evs_shutdown(), EVS_ERR_BUSY);
    CHECK(strstr(evs_last_error_message(), "still open") != NULL);
    CHECK_OK(evs_close(s));
    CHECK_OK(evs_shutdown());
    CHECK_OK(evs_shutdown());
    /* the library works after it */
    s = open_store(path, NULL);
    if (s != NULL)
        CHECK_OK(evs_close(s));
    CHECK_OK(evs_shutdown());
}

int main(void)
{
    if (!tu_make_temp_dir(g_root, sizeof g_root))
        return tu_finish();
    test_versions();
    test_extendable_structs();
    test_idempotent_appends();
    test_error_detail();
    test_append_multi();
    test_reads();
    test_options();
    test_next_batch();
    test_batch_views_in_place();
    test_fork();
    test_subscription_status();
    test_calls_during_thread_exit();
    test_lengths_checked_first();
    test_shutdown();
    tu_cleanup_dir(g_root);
    return tu_finish();
}
