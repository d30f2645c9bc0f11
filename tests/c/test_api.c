/*
 * test_api.c: the Conventions, Status codes, Opening, Appending and Reading
 * parts of the evstore C API (shared/design/c-api.md, docs/api-decisions.md),
 * each function on its success path and on each of its error paths.
 */
#include "test_util.h"

#define SENTINEL_U64 UINT64_C(0xDEADBEEFCAFEF00D)
#define SENTINEL_I64 INT64_C(-777777)
#define MiB ((size_t)1024 * 1024)
#define BAD_UTF8 "\xff\xfe"

static char g_root[1024];

static void store_path(char *out, size_t cap, const char *name)
{
    tu_join(out, cap, g_root, name);
}

/* A string of n copies of c (caller frees). */
static char *repeat(char c, size_t n)
{
    char *s = (char *)malloc(n + 1);
    if (s == NULL) {
        fprintf(stderr, "out of memory\n");
        exit(2);
    }
    memset(s, c, n);
    s[n] = '\0';
    return s;
}

/* The position the next event will get (evs_position_at past every timestamp). */
static uint64_t next_position(evs_store *s)
{
    uint64_t p = SENTINEL_U64;
    CHECK_OK(evs_position_at(s, UINT64_MAX, &p));
    return p;
}

static evs_store *open_store(const char *path, const evs_options *opts, evs_recovery_info *info)
{
    evs_store *s = NULL;
    if (!CHECK_OK(evs_open(path, opts, &s, info)))
        return NULL;
    CHECK(s != NULL);
    return s;
}

/* Whether msg contains n as a whole decimal number. */
static int contains_number(const char *msg, int64_t n)
{
    char num[32];
    const char *p = msg;
    size_t len;
    snprintf(num, sizeof num, "%" PRId64, n);
    len = strlen(num);
    while ((p = strstr(p, num)) != NULL) {
        int before_ok = p == msg || p[-1] < '0' || p[-1] > '9';
        int after_ok = p[len] < '0' || p[len] > '9';
        if (before_ok && after_ok)
            return 1;
        p++;
    }
    return 0;
}

static evs_event_input input(const char *type, const char *payload, const char *metadata,
                             uint32_t schema_version)
{
    evs_event_input in;
    in.event_type = type;
    in.payload = (const uint8_t *)payload;
    in.payload_len = payload ? strlen(payload) : 0;
    in.metadata = (const uint8_t *)metadata;
    in.metadata_len = metadata ? strlen(metadata) : 0;
    in.schema_version = schema_version;
    return in;
}

/* ------------------------------------------------------------------------ */
/* Conventions and status codes                                             */
/* ------------------------------------------------------------------------ */

static void test_status_names(void)
{
    TU_SECTION("status names and version");
    CHECK_STR(evs_status_name(EVS_OK), "EVS_OK");
    CHECK_STR(evs_status_name(EVS_END), "EVS_END");
    CHECK_STR(evs_status_name(EVS_ERR_INVALID_ARGUMENT), "EVS_ERR_INVALID_ARGUMENT");
    CHECK_STR(evs_status_name(EVS_ERR_NOT_FOUND), "EVS_ERR_NOT_FOUND");
    CHECK_STR(evs_status_name(EVS_ERR_ALREADY_EXISTS), "EVS_ERR_ALREADY_EXISTS");
    CHECK_STR(evs_status_name(EVS_ERR_WRONG_EXPECTED_VERSION), "EVS_ERR_WRONG_EXPECTED_VERSION");
    CHECK_STR(evs_status_name(EVS_ERR_INSUFFICIENT_FUNDS), "EVS_ERR_INSUFFICIENT_FUNDS");
    CHECK_STR(evs_status_name(EVS_ERR_ACCOUNT_CLOSED), "EVS_ERR_ACCOUNT_CLOSED");
    CHECK_STR(evs_status_name(EVS_ERR_OVERFLOW), "EVS_ERR_OVERFLOW");
    CHECK_STR(evs_status_name(EVS_ERR_LOCKED), "EVS_ERR_LOCKED");
    CHECK_STR(evs_status_name(EVS_ERR_CORRUPT), "EVS_ERR_CORRUPT");
    CHECK_STR(evs_status_name(EVS_ERR_IO), "EVS_ERR_IO");
    CHECK_STR(evs_status_name(EVS_ERR_TOO_LARGE), "EVS_ERR_TOO_LARGE");
    CHECK_STR(evs_status_name(EVS_ERR_READ_ONLY), "EVS_ERR_READ_ONLY");
    CHECK_STR(evs_status_name(EVS_ERR_CURRENCY_MISMATCH), "EVS_ERR_CURRENCY_MISMATCH");
    CHECK_STR(evs_status_name(EVS_ERR_INTERNAL), "EVS_ERR_INTERNAL");

    /* the numeric values are the contract too */
    CHECK_I64(EVS_OK, 0);
    CHECK_I64(EVS_END, 1);
    CHECK_I64(EVS_ERR_INVALID_ARGUMENT, -1);
    CHECK_I64(EVS_ERR_NOT_FOUND, -2);
    CHECK_I64(EVS_ERR_ALREADY_EXISTS, -3);
    CHECK_I64(EVS_ERR_WRONG_EXPECTED_VERSION, -4);
    CHECK_I64(EVS_ERR_INSUFFICIENT_FUNDS, -5);
    CHECK_I64(EVS_ERR_ACCOUNT_CLOSED, -6);
    CHECK_I64(EVS_ERR_OVERFLOW, -7);
    CHECK_I64(EVS_ERR_LOCKED, -8);
    CHECK_I64(EVS_ERR_CORRUPT, -9);
    CHECK_I64(EVS_ERR_IO, -10);
    CHECK_I64(EVS_ERR_TOO_LARGE, -11);
    CHECK_I64(EVS_ERR_READ_ONLY, -12);
    CHECK_I64(EVS_ERR_CURRENCY_MISMATCH, -13);
    CHECK_I64(EVS_ERR_INTERNAL, -99);
    CHECK_I64(EVS_VERSION_ANY, -1);
    CHECK_I64(EVS_VERSION_NO_STREAM, -2);
    CHECK_I64(EVS_VERSION_EXISTS, -3);
    CHECK_I64(EVS_FSYNC_ALWAYS, 0);
    CHECK_I64(EVS_FSYNC_BATCH, 1);
    CHECK_I64(EVS_FSYNC_OS, 2);

    /* codes the library does not know still get a (static) string */
    CHECK(evs_status_name(42) != NULL);
    CHECK(evs_status_name(-50) != NULL);
    CHECK(evs_status_name(INT32_MIN) != NULL);

    CHECK_STR(evs_version(), "0.1.0");
    CHECK(evs_version() == evs_version());
    CHECK(evs_status_name(EVS_ERR_IO) == evs_status_name(EVS_ERR_IO));
}

struct thread_msg {
    int fresh_was_empty;
    int own_error_ok;
    char own_message[512];
};

static void *thread_message_probe(void *arg)
{
    struct thread_msg *r = (struct thread_msg *)arg;
    const char *m = evs_last_error_message();
    evs_status st;
    r->fresh_was_empty = m != NULL && m[0] == '\0';
    st = evs_options_set_read_only(NULL, true);
    m = evs_last_error_message();
    r->own_error_ok = st == EVS_ERR_INVALID_ARGUMENT && m != NULL && m[0] != '\0';
    snprintf(r->own_message, sizeof r->own_message, "%s", m ? m : "");
    return NULL;
}

static void test_last_error_message(void)
{
    char mine[512];
    pthread_t t;
    struct thread_msg r;
    const char *m;

    TU_SECTION("evs_last_error_message");
    /* nothing has failed on this thread yet (this runs first in main) */
    m = evs_last_error_message();
    CHECK(m != NULL);
    CHECK(m != NULL && m[0] == '\0');

    CHECK_STATUS(evs_sync(NULL), EVS_ERR_INVALID_ARGUMENT);
    m = evs_last_error_message();
    CHECK(m != NULL && m[0] != '\0');
    snprintf(mine, sizeof mine, "%s", m ? m : "");

    /* the message is per thread */
    memset(&r, 0, sizeof r);
    CHECK(pthread_create(&t, NULL, thread_message_probe, &r) == 0);
    CHECK(pthread_join(t, NULL) == 0);
    CHECK(r.fresh_was_empty);
    CHECK(r.own_error_ok);
    CHECK_STR(evs_last_error_message(), mine);
}

static void test_null_free_close(void)
{
    TU_SECTION("NULL to every _free/close is a no-op");
    evs_options_free(NULL);
    evs_cursor_free(NULL);
    evs_string_free(NULL);
    CHECK_OK(evs_close(NULL));
}

/* ------------------------------------------------------------------------ */
/* Opening                                                                   */
/* ------------------------------------------------------------------------ */

static void test_options(void)
{
    evs_options *o;
    char path[2048];
    evs_store *s;
    uint64_t pos = SENTINEL_U64;

    TU_SECTION("options");
    o = evs_options_new();
    CHECK(o != NULL);
    if (o == NULL)
        return;

    /* fsync: policy 0..2; the window is used only for BATCH and is 1..=10000 ms there */
    CHECK_STATUS(evs_options_set_fsync(NULL, EVS_FSYNC_BATCH, 5), EVS_ERR_INVALID_ARGUMENT);
    CHECK_STATUS(evs_options_set_fsync(o, (evs_fsync_policy)3, 5), EVS_ERR_INVALID_ARGUMENT);
    CHECK_STATUS(evs_options_set_fsync(o, (evs_fsync_policy)99, 0), EVS_ERR_INVALID_ARGUMENT);
    CHECK_STATUS(evs_options_set_fsync(o, EVS_FSYNC_BATCH, 0), EVS_ERR_INVALID_ARGUMENT);
    CHECK_STATUS(evs_options_set_fsync(o, EVS_FSYNC_BATCH, 10001), EVS_ERR_INVALID_ARGUMENT);
    CHECK_STATUS(evs_options_set_fsync(o, EVS_FSYNC_BATCH, UINT32_MAX), EVS_ERR_INVALID_ARGUMENT);
    CHECK_OK(evs_options_set_fsync(o, EVS_FSYNC_BATCH, 1));
    CHECK_OK(evs_options_set_fsync(o, EVS_FSYNC_BATCH, 10000));
    CHECK_OK(evs_options_set_fsync(o, EVS_FSYNC_OS, 0));
    CHECK_OK(evs_options_set_fsync(o, EVS_FSYNC_OS, 99999));
    CHECK_OK(evs_options_set_fsync(o, EVS_FSYNC_ALWAYS, 99999));
    CHECK_OK(evs_options_set_fsync(o, EVS_FSYNC_ALWAYS, 0));

    /* segment size: 64 KiB ..= 1 TiB */
    CHECK_STATUS(evs_options_set_max_segment_size(NULL, 1 << 20), EVS_ERR_INVALID_ARGUMENT);
    CHECK_STATUS(evs_options_set_max_segment_size(o, 0), EVS_ERR_INVALID_ARGUMENT);
    CHECK_STATUS(evs_options_set_max_segment_size(o, 65535), EVS_ERR_INVALID_ARGUMENT);
    CHECK_STATUS(evs_options_set_max_segment_size(o, (UINT64_C(1) << 40) + 1),
                 EVS_ERR_INVALID_ARGUMENT);
    CHECK_STATUS(evs_options_set_max_segment_size(o, UINT64_MAX), EVS_ERR_INVALID_ARGUMENT);
    CHECK_OK(evs_options_set_max_segment_size(o, UINT64_C(1) << 40));
    CHECK_OK(evs_options_set_max_segment_size(o, 65536));

    CHECK_STATUS(evs_options_set_preallocate(NULL, true), EVS_ERR_INVALID_ARGUMENT);
    CHECK_OK(evs_options_set_preallocate(o, true));
    CHECK_OK(evs_options_set_preallocate(o, false));

    CHECK_STATUS(evs_options_set_read_only(NULL, true), EVS_ERR_INVALID_ARGUMENT);
    CHECK_OK(evs_options_set_read_only(o, true));
    CHECK_OK(evs_options_set_read_only(o, false));

    CHECK_STATUS(evs_options_set_snapshot_every(NULL, 10), EVS_ERR_INVALID_ARGUMENT);
    CHECK_OK(evs_options_set_snapshot_every(o, 1000));
    CHECK_OK(evs_options_set_snapshot_every(o, 0));

    /* the failed calls left the options usable with the values last set */
    store_path(path, sizeof path, "options");
    s = open_store(path, o, NULL);
    if (s != NULL) {
        CHECK_OK(evs_append_event(s, "Configured", (const uint8_t *)"x", 1, &pos));
        CHECK_U64(pos, 0);
        CHECK_OK(evs_sync(s));
        CHECK_OK(evs_close(s));
    }
    /* the options are not consumed by evs_open: they can be used again */
    s = open_store(path, o, NULL);
    if (s != NULL) {
        CHECK_U64(next_position(s), 1);
        CHECK_OK(evs_close(s));
    }
    evs_options_free(o);

    /* every policy opens and appends */
    {
        int p;
        for (p = 0; p <= 2; p++) {
            char name[64];
            evs_options *po = evs_options_new();
            CHECK(po != NULL);
            if (po == NULL)
                continue;
            CHECK_OK(evs_options_set_fsync(po, (evs_fsync_policy)p, 3));
            snprintf(name, sizeof name, "policy-%d", p);
            store_path(path, sizeof path, name);
            s = open_store(path, po, NULL);
            if (s != NULL) {
                pos = SENTINEL_U64;
                CHECK_OK(evs_append_event(s, "E", (const uint8_t *)"abc", 3, &pos));
                CHECK_U64(pos, 0);
                CHECK_OK(evs_sync(s));
                CHECK_OK(evs_close(s));
            }
            s = open_store(path, NULL, NULL);
            if (s != NULL) {
                CHECK_U64(next_position(s), 1);
                CHECK_OK(evs_close(s));
            }
            evs_options_free(po);
        }
    }
}

static void check_fresh_info(const evs_recovery_info *info)
{
    CHECK_U64(info->valid_records, 0);
    CHECK_U64(info->bytes_truncated, 0);
    CHECK(!info->corruption_detected);
    CHECK_U64(info->next_position, 0);
    CHECK_U64(info->snapshot_position, UINT64_MAX);
}

static void test_open(void)
{
    char path[2048], file_path[2048], bad[2048];
    evs_store *s, *s2, *sentinel_store = (evs_store *)&s;
    evs_recovery_info info, info2;
    struct stat st;
    evs_options *ro;
    FILE *f;

    TU_SECTION("evs_open / evs_sync / evs_close");
    store_path(path, sizeof path, "open");

    /* NULL arguments */
    s = sentinel_store;
    CHECK_STATUS(evs_open(NULL, NULL, &s, NULL), EVS_ERR_INVALID_ARGUMENT);
    CHECK(s == sentinel_store);
    CHECK_STATUS(evs_open(path, NULL, NULL, NULL), EVS_ERR_INVALID_ARGUMENT);
    CHECK_STATUS(evs_open(path, NULL, NULL, &info), EVS_ERR_INVALID_ARGUMENT);

    /* a path that is not UTF-8 */
    snprintf(bad, sizeof bad, "%s/" BAD_UTF8, g_root);
    s = sentinel_store;
    CHECK_STATUS(evs_open(bad, NULL, &s, NULL), EVS_ERR_INVALID_ARGUMENT);
    CHECK(s == sentinel_store);

    /* the parent must exist */
    snprintf(bad, sizeof bad, "%s/no-such-parent/store", g_root);
    s = sentinel_store;
    memset(&info, 0xAB, sizeof info);
    info2 = info;
    CHECK_STATUS(evs_open(bad, NULL, &s, &info), EVS_ERR_IO);
    CHECK(s == sentinel_store);
    CHECK(memcmp(&info, &info2, sizeof info) == 0);

    /* a regular file */
    store_path(file_path, sizeof file_path, "regular-file");
    f = fopen(file_path, "w");
    CHECK(f != NULL);
    if (f != NULL) {
        fputs("not a store\n", f);
        fclose(f);
    }
    s = sentinel_store;
    memset(&info, 0xAB, sizeof info);
    info2 = info;
    CHECK_STATUS(evs_open(file_path, NULL, &s, &info), EVS_ERR_IO);
    CHECK(s == sentinel_store);
    CHECK(memcmp(&info, &info2, sizeof info) == 0);

    /* read-only open of a missing store */
    ro = evs_options_new();
    CHECK(ro != NULL);
    CHECK_OK(evs_options_set_read_only(ro, true));
    s = sentinel_store;
    CHECK_STATUS(evs_open(path, ro, &s, NULL), EVS_ERR_NOT_FOUND);
    CHECK(s == sentinel_store);
    CHECK(stat(path, &st) != 0); /* and it did not create it */

    /* success: creates the directory, fills in the recovery info */
    s = NULL;
    memset(&info, 0xAB, sizeof info);
    CHECK_OK(evs_open(path, NULL, &s, &info));
    CHECK(s != NULL);
    CHECK(stat(path, &st) == 0 && S_ISDIR(st.st_mode));
    check_fresh_info(&info);

    /* a second open of the same path in the same process */
    s2 = sentinel_store;
    CHECK_STATUS(evs_open(path, NULL, &s2, NULL), EVS_ERR_LOCKED);
    CHECK(s2 == sentinel_store);

    CHECK_STATUS(evs_sync(NULL), EVS_ERR_INVALID_ARGUMENT);
    CHECK_OK(evs_sync(s));
    CHECK_OK(evs_close(s));

    /* after the close, the lock is free again; info may be NULL */
    s2 = NULL;
    CHECK_OK(evs_open(path, NULL, &s2, NULL));
    CHECK(s2 != NULL);
    CHECK_OK(evs_close(s2));

    /* an existing empty directory opens as a new store */
    store_path(path, sizeof path, "existing-empty-dir");
    CHECK(mkdir(path, 0700) == 0);
    s = NULL;
    memset(&info, 0xAB, sizeof info);
    CHECK_OK(evs_open(path, NULL, &s, &info));
    check_fresh_info(&info);
    CHECK_OK(evs_close(s));

    evs_options_free(ro);
}

/* ------------------------------------------------------------------------ */
/* Appending                                                                 */
/* ------------------------------------------------------------------------ */

static void test_append_event_errors(evs_store *s)
{
    uint64_t pos, before;
    char *long_type = repeat('t', 1025), *max_type = repeat('t', 1024);
    const uint8_t pl[] = {1, 2, 3};

    TU_SECTION("evs_append_event errors");
    before = next_position(s);

    pos = SENTINEL_U64;
    CHECK_STATUS(evs_append_event(NULL, "E", pl, 3, &pos), EVS_ERR_INVALID_ARGUMENT);
    CHECK_U64(pos, SENTINEL_U64);
    CHECK_STATUS(evs_append_event(s, NULL, pl, 3, &pos), EVS_ERR_INVALID_ARGUMENT);
    CHECK_U64(pos, SENTINEL_U64);
    CHECK_STATUS(evs_append_event(s, "E", NULL, 3, &pos), EVS_ERR_INVALID_ARGUMENT);
    CHECK_U64(pos, SENTINEL_U64);
    CHECK_STATUS(evs_append_event(s, "E", pl, 3, NULL), EVS_ERR_INVALID_ARGUMENT);
    CHECK_STATUS(evs_append_event(s, "", pl, 3, &pos), EVS_ERR_INVALID_ARGUMENT);
    CHECK_U64(pos, SENTINEL_U64);
    CHECK_STATUS(evs_append_event(s, BAD_UTF8, pl, 3, &pos), EVS_ERR_INVALID_ARGUMENT);
    CHECK_U64(pos, SENTINEL_U64);
    CHECK_STATUS(evs_append_event(s, "ok" BAD_UTF8 "ok", pl, 3, &pos), EVS_ERR_INVALID_ARGUMENT);
    CHECK_U64(pos, SENTINEL_U64);
    CHECK_STATUS(evs_append_event(s, long_type, pl, 3, &pos), EVS_ERR_INVALID_ARGUMENT);
    CHECK_U64(pos, SENTINEL_U64);
    /* none of them appended anything */
    CHECK_U64(next_position(s), before);

    /* the limits themselves are fine; NULL payload with length 0 is fine */
    CHECK_OK(evs_append_event(s, max_type, pl, 3, &pos));
    CHECK_U64(pos, before);
    pos = SENTINEL_U64;
    CHECK_OK(evs_append_event(s, "Empty", NULL, 0, &pos));
    CHECK_U64(pos, before + 1);
    CHECK_OK(evs_append_event(s, "caf\xc3\xa9 \xe2\x82\xac", pl, 3, &pos)); /* UTF-8 is fine */
    CHECK_U64(pos, before + 2);

    free(long_type);
    free(max_type);
}

static void test_append_errors(evs_store *s)
{
    uint64_t first, before;
    int64_t ver;
    evs_event_input ev[3], bad;
    char *long_stream = repeat('s', 1025), *max_stream = repeat('s', 1024);
    char *long_type = repeat('t', 1025);

    TU_SECTION("evs_append errors");
    before = next_position(s);
    ev[0] = input("A", "pa", "ma", 1);
    ev[1] = input("B", "pb", NULL, 0);
    ev[2] = input("C", "pc", NULL, 2);

#define APPEND_FAILS(stream, expected, events, count, want)                                   \
    do {                                                                                      \
        uint64_t f_ = SENTINEL_U64, v_ = SENTINEL_U64;                                        \
        CHECK_STATUS(evs_append(s, (stream), (expected), (events), (count), &f_, &v_), want); \
        CHECK_U64(f_, SENTINEL_U64);                                                          \
        CHECK_U64(v_, SENTINEL_U64);                                                          \
    } while (0)

    {
        uint64_t f = SENTINEL_U64, v = SENTINEL_U64;
        CHECK_STATUS(evs_append(NULL, "x", EVS_VERSION_ANY, ev, 1, &f, &v),
                     EVS_ERR_INVALID_ARGUMENT);
        CHECK_U64(f, SENTINEL_U64);
        CHECK_U64(v, SENTINEL_U64);
    }
    APPEND_FAILS(NULL, EVS_VERSION_ANY, ev, 1, EVS_ERR_INVALID_ARGUMENT);
    APPEND_FAILS("", EVS_VERSION_ANY, ev, 1, EVS_ERR_INVALID_ARGUMENT);
    APPEND_FAILS(BAD_UTF8, EVS_VERSION_ANY, ev, 1, EVS_ERR_INVALID_ARGUMENT);
    APPEND_FAILS("stream-" BAD_UTF8, EVS_VERSION_ANY, ev, 1, EVS_ERR_INVALID_ARGUMENT);
    APPEND_FAILS(long_stream, EVS_VERSION_ANY, ev, 1, EVS_ERR_INVALID_ARGUMENT);
    APPEND_FAILS("x", EVS_VERSION_ANY, NULL, 1, EVS_ERR_INVALID_ARGUMENT);
    APPEND_FAILS("x", EVS_VERSION_ANY, ev, 0, EVS_ERR_INVALID_ARGUMENT);
    APPEND_FAILS("x", EVS_VERSION_ANY, NULL, 0, EVS_ERR_INVALID_ARGUMENT);
    APPEND_FAILS("x", -4, ev, 1, EVS_ERR_INVALID_ARGUMENT);
    APPEND_FAILS("x", INT64_MIN, ev, 1, EVS_ERR_INVALID_ARGUMENT);

    bad = input(NULL, "p", NULL, 1);
    APPEND_FAILS("x", EVS_VERSION_ANY, &bad, 1, EVS_ERR_INVALID_ARGUMENT);
    bad = input("", "p", NULL, 1);
    APPEND_FAILS("x", EVS_VERSION_ANY, &bad, 1, EVS_ERR_INVALID_ARGUMENT);
    bad = input(BAD_UTF8, "p", NULL, 1);
    APPEND_FAILS("x", EVS_VERSION_ANY, &bad, 1, EVS_ERR_INVALID_ARGUMENT);
    bad = input(long_type, "p", NULL, 1);
    APPEND_FAILS("x", EVS_VERSION_ANY, &bad, 1, EVS_ERR_INVALID_ARGUMENT);
    bad = input("T", NULL, NULL, 1);
    bad.payload_len = 4; /* NULL payload with a length */
    APPEND_FAILS("x", EVS_VERSION_ANY, &bad, 1, EVS_ERR_INVALID_ARGUMENT);
    bad = input("T", "p", NULL, 1);
    bad.metadata_len = 4; /* NULL metadata with a length */
    APPEND_FAILS("x", EVS_VERSION_ANY, &bad, 1, EVS_ERR_INVALID_ARGUMENT);

    /* one bad event in a batch: nothing of the batch is appended */
    {
        evs_event_input mixed[3];
        mixed[0] = ev[0];
        mixed[1] = input(BAD_UTF8, "p", NULL, 1);
        mixed[2] = ev[2];
        APPEND_FAILS("x", EVS_VERSION_ANY, mixed, 3, EVS_ERR_INVALID_ARGUMENT);
        mixed[1] = input(NULL, "p", NULL, 1);
        APPEND_FAILS("x", EVS_VERSION_NO_STREAM, mixed, 3, EVS_ERR_INVALID_ARGUMENT);
    }

    CHECK_U64(next_position(s), before);
    ver = SENTINEL_I64;
    CHECK_OK(evs_stream_version(s, "x", &ver));
    CHECK_I64(ver, -1);

    /* the limits themselves; both out-pointers may be NULL */
    CHECK_OK(evs_append(s, max_stream, EVS_VERSION_NO_STREAM, ev, 3, NULL, NULL));
    CHECK_U64(next_position(s), before + 3);
    ver = SENTINEL_I64;
    CHECK_OK(evs_stream_version(s, max_stream, &ver));
    CHECK_I64(ver, 2);
    first = SENTINEL_U64;
    CHECK_OK(evs_append(s, max_stream, 2, ev, 1, &first, NULL));
    CHECK_U64(first, before + 3);
    {
        uint64_t v = SENTINEL_U64;
        CHECK_OK(evs_append(s, max_stream, 3, ev, 2, NULL, &v));
        CHECK_U64(v, 5);
    }
#undef APPEND_FAILS
    free(long_stream);
    free(max_stream);
    free(long_type);
}

static void test_expected_versions(evs_store *s)
{
    evs_event_input ev[3];
    uint64_t first, v, before;
    int64_t ver;
    int i;
    const char *msg;

    TU_SECTION("expected versions");
    ev[0] = input("Created", "{\"n\":0}", NULL, 1);
    ev[1] = input("Changed", "{\"n\":1}", NULL, 1);
    ev[2] = input("Changed", "{\"n\":2}", NULL, 1);

    /* EVS_VERSION_EXISTS on a missing stream */
    first = v = SENTINEL_U64;
    CHECK_STATUS(evs_append(s, "ev-stream", EVS_VERSION_EXISTS, ev, 1, &first, &v),
                 EVS_ERR_WRONG_EXPECTED_VERSION);
    CHECK_U64(first, SENTINEL_U64);
    CHECK_U64(v, SENTINEL_U64);
    /* a version >= 0 on a missing stream */
    CHECK_STATUS(evs_append(s, "ev-stream", 0, ev, 1, &first, &v),
                 EVS_ERR_WRONG_EXPECTED_VERSION);
    CHECK_U64(first, SENTINEL_U64);

    /* EVS_VERSION_NO_STREAM on a missing stream */
    before = next_position(s);
    CHECK_OK(evs_append(s, "ev-stream", EVS_VERSION_NO_STREAM, ev, 1, &first, &v));
    CHECK_U64(first, before);
    CHECK_U64(v, 0);

    /* EVS_VERSION_NO_STREAM on an existing stream */
    first = v = SENTINEL_U64;
    CHECK_STATUS(evs_append(s, "ev-stream", EVS_VERSION_NO_STREAM, ev, 1, &first, &v),
                 EVS_ERR_WRONG_EXPECTED_VERSION);
    CHECK_U64(first, SENTINEL_U64);
    CHECK_U64(v, SENTINEL_U64);

    /* EVS_VERSION_EXISTS on an existing stream */
    CHECK_OK(evs_append(s, "ev-stream", EVS_VERSION_EXISTS, ev + 1, 2, &first, &v));
    CHECK_U64(first, before + 1);
    CHECK_U64(v, 2);

    /* EVS_VERSION_ANY always */
    CHECK_OK(evs_append(s, "ev-stream", EVS_VERSION_ANY, ev, 1, &first, &v));
    CHECK_U64(v, 3);
    CHECK_OK(evs_append(s, "ev-any-new", EVS_VERSION_ANY, ev, 1, &first, &v));
    CHECK_U64(v, 0);

    /* exact versions, up to version 12 */
    for (i = 3; i < 12; i++) {
        CHECK_OK(evs_append(s, "ev-stream", i, ev, 1, NULL, &v));
        CHECK_U64(v, (uint64_t)i + 1);
    }
    ver = SENTINEL_I64;
    CHECK_OK(evs_stream_version(s, "ev-stream", &ver));
    CHECK_I64(ver, 12);

    /* a wrong version: the message names the actual one */
    before = next_position(s);
    first = v = SENTINEL_U64;
    CHECK_STATUS(evs_append(s, "ev-stream", 5, ev, 3, &first, &v),
                 EVS_ERR_WRONG_EXPECTED_VERSION);
    msg = evs_last_error_message();
    if (!CHECK(contains_number(msg, 12)))
        printf("    message was: \"%s\" (expected it to name the actual version 12)\n", msg);
    CHECK_U64(first, SENTINEL_U64);
    CHECK_U64(v, SENTINEL_U64);
    CHECK_STATUS(evs_append(s, "ev-stream", 13, ev, 1, &first, &v),
                 EVS_ERR_WRONG_EXPECTED_VERSION);
    CHECK(contains_number(evs_last_error_message(), 12));
    CHECK_STATUS(evs_append(s, "ev-stream", 11, ev, 1, &first, &v),
                 EVS_ERR_WRONG_EXPECTED_VERSION);
    CHECK(contains_number(evs_last_error_message(), 12));
    CHECK_STATUS(evs_append(s, "ev-stream", INT64_MAX, ev, 1, &first, &v),
                 EVS_ERR_WRONG_EXPECTED_VERSION);
    CHECK_U64(next_position(s), before);
    ver = SENTINEL_I64;
    CHECK_OK(evs_stream_version(s, "ev-stream", &ver));
    CHECK_I64(ver, 12);

    /* the right one */
    CHECK_OK(evs_append(s, "ev-stream", 12, ev, 3, &first, &v));
    CHECK_U64(first, before);
    CHECK_U64(v, 15);
}

static void test_too_large(void)
{
    char path[2048];
    evs_store *s;
    evs_options *o;
    uint8_t *big;
    size_t limit = 16 * MiB;
    uint64_t pos, v, before;
    evs_event_input in, batch[5];
    evs_cursor *c = NULL;
    evs_event e;
    evs_recovery_info info;

    TU_SECTION("size limits");
    big = (uint8_t *)malloc(limit + 1);
    if (!CHECK(big != NULL))
        return;
    {
        size_t i;
        for (i = 0; i < limit + 1; i++)
            big[i] = (uint8_t)(i * 31u + 7u);
    }
    store_path(path, sizeof path, "large");
    s = open_store(path, NULL, NULL);
    if (s == NULL) {
        free(big);
        return;
    }
    before = next_position(s);

    /* one event: payload + metadata at most 16 MiB */
    pos = SENTINEL_U64;
    CHECK_STATUS(evs_append_event(s, "Big", big, limit + 1, &pos), EVS_ERR_TOO_LARGE);
    CHECK_U64(pos, SENTINEL_U64);
    in.event_type = "Big";
    in.payload = big;
    in.payload_len = limit + 1;
    in.metadata = NULL;
    in.metadata_len = 0;
    in.schema_version = 1;
    pos = v = SENTINEL_U64;
    CHECK_STATUS(evs_append(s, "big", EVS_VERSION_ANY, &in, 1, &pos, &v), EVS_ERR_TOO_LARGE);
    CHECK_U64(pos, SENTINEL_U64);
    CHECK_U64(v, SENTINEL_U64);
    in.payload_len = limit - 10;
    in.metadata = big;
    in.metadata_len = 11;
    CHECK_STATUS(evs_append(s, "big", EVS_VERSION_ANY, &in, 1, &pos, &v), EVS_ERR_TOO_LARGE);
    CHECK_U64(pos, SENTINEL_U64);

    /* a batch at most 64 MiB: 5 x 15 MiB is too large even though each event fits */
    {
        int i;
        for (i = 0; i < 5; i++) {
            batch[i].event_type = "Chunk";
            batch[i].payload = big;
            batch[i].payload_len = 15 * MiB;
            batch[i].metadata = NULL;
            batch[i].metadata_len = 0;
            batch[i].schema_version = 1;
        }
        CHECK_STATUS(evs_append(s, "big", EVS_VERSION_ANY, batch, 5, &pos, &v),
                     EVS_ERR_TOO_LARGE);
        CHECK_U64(pos, SENTINEL_U64);
    }
    CHECK_U64(next_position(s), before);

    /* exactly at the limit */
    CHECK_OK(evs_append_event(s, "Big", big, limit, &pos));
    CHECK_U64(pos, before);
    in.payload_len = limit - 100;
    in.metadata_len = 100;
    CHECK_OK(evs_append(s, "big", EVS_VERSION_NO_STREAM, &in, 1, &pos, &v));
    CHECK_U64(pos, before + 1);
    CHECK_U64(v, 0);
    CHECK_OK(evs_close(s));

    /* read back after reopening */
    s = open_store(path, NULL, &info);
    if (s != NULL) {
        CHECK_U64(info.next_position, before + 2);
        CHECK(!info.corruption_detected);
        if (CHECK_OK(evs_read_all(s, before, &c))) {
            CHECK_OK(evs_cursor_next(c, &e));
            CHECK_U64(e.position, before);
            CHECK_MEM(e.payload, e.payload_len, big, limit);
            CHECK_U64(e.metadata_len, 0);
            CHECK_OK(evs_cursor_next(c, &e));
            CHECK_U64(e.position, before + 1);
            CHECK_MEM(e.payload, e.payload_len, big, limit - 100);
            CHECK_MEM(e.metadata, e.metadata_len, big, 100);
            CHECK_STATUS(evs_cursor_next(c, &e), EVS_END);
            evs_cursor_free(c);
        }
        CHECK_OK(evs_close(s));
    }

    /* a batch must fit in one segment */
    o = evs_options_new();
    CHECK_OK(evs_options_set_max_segment_size(o, 65536));
    store_path(path, sizeof path, "small-segment-batch");
    s = open_store(path, o, NULL);
    if (s != NULL) {
        int i;
        for (i = 0; i < 2; i++) {
            batch[i].event_type = "Chunk";
            batch[i].payload = big;
            batch[i].payload_len = 40000;
            batch[i].metadata = NULL;
            batch[i].metadata_len = 0;
            batch[i].schema_version = 1;
        }
        pos = SENTINEL_U64;
        CHECK_STATUS(evs_append(s, "chunks", EVS_VERSION_ANY, batch, 2, &pos, NULL),
                     EVS_ERR_TOO_LARGE);
        CHECK_U64(pos, SENTINEL_U64);
        batch[0].payload_len = 70000;
        CHECK_STATUS(evs_append(s, "chunks", EVS_VERSION_ANY, batch, 1, &pos, NULL),
                     EVS_ERR_TOO_LARGE);
        CHECK_STATUS(evs_append_event(s, "Chunk", big, 70000, &pos), EVS_ERR_TOO_LARGE);
        CHECK_U64(pos, SENTINEL_U64);
        CHECK_U64(next_position(s), 0);
        batch[0].payload_len = 40000;
        CHECK_OK(evs_append(s, "chunks", EVS_VERSION_ANY, batch, 1, &pos, NULL));
        CHECK_U64(pos, 0);
        CHECK_OK(evs_close(s));
    }
    evs_options_free(o);
    free(big);
}

/* Many events over many small segments survive a reopen. */
static void test_small_segments(void)
{
    char path[2048];
    evs_store *s;
    evs_options *o;
    evs_recovery_info info;
    uint8_t buf[10000];
    int i, n = 40;
    uint64_t pos;
    evs_cursor *c = NULL;
    evs_event e;

    TU_SECTION("many segments");
    o = evs_options_new();
    CHECK_OK(evs_options_set_max_segment_size(o, 65536));
    CHECK_OK(evs_options_set_preallocate(o, true));
    CHECK_OK(evs_options_set_snapshot_every(o, 0));
    store_path(path, sizeof path, "segments");
    s = open_store(path, o, NULL);
    if (s == NULL) {
        evs_options_free(o);
        return;
    }
    for (i = 0; i < n; i++) {
        memset(buf, i, sizeof buf);
        pos = SENTINEL_U64;
        CHECK_OK(evs_append_event(s, "Block", buf, sizeof buf, &pos));
        CHECK_U64(pos, (uint64_t)i);
    }
    CHECK_OK(evs_close(s));
    memset(&info, 0xAB, sizeof info);
    s = open_store(path, o, &info);
    if (s != NULL) {
        CHECK_U64(info.next_position, (uint64_t)n);
        CHECK(info.segments_scanned >= 2); /* 400 KB in 64 KiB segments */
        CHECK(info.valid_records >= (uint64_t)n);
        CHECK_U64(info.bytes_truncated, 0);
        CHECK(!info.corruption_detected);
        CHECK_U64(info.snapshot_position, UINT64_MAX);
        if (CHECK_OK(evs_read_all(s, 0, &c))) {
            for (i = 0; i < n; i++) {
                if (!CHECK_OK(evs_cursor_next(c, &e)))
                    break;
                memset(buf, i, sizeof buf);
                CHECK_U64(e.position, (uint64_t)i);
                CHECK_MEM(e.payload, e.payload_len, buf, sizeof buf);
            }
            CHECK_STATUS(evs_cursor_next(c, &e), EVS_END);
            evs_cursor_free(c);
        }
        /* appending continues where it stopped */
        CHECK_OK(evs_append_event(s, "Block", buf, 10, &pos));
        CHECK_U64(pos, (uint64_t)n);
        CHECK_OK(evs_close(s));
    }
    evs_options_free(o);
}

/* ------------------------------------------------------------------------ */
/* Reading                                                                   */
/* ------------------------------------------------------------------------ */

struct expected_event {
    const char *stream; /* "" for none */
    int64_t stream_version; /* -1: not checked (events with no stream) */
    const char *type;
    uint32_t schema_version;
    const uint8_t *payload;
    size_t payload_len;
    const uint8_t *metadata;
    size_t metadata_len;
    uint64_t timestamp_us; /* filled in from the first read */
};

#define MAX_EXPECTED 32
static struct expected_event g_exp[MAX_EXPECTED];
static uint64_t g_nexp = 0;
static const uint8_t g_binary[] = {0x00, 0xff, 0x10, 0x00, 0x7f, 0x80};

static void expect(const char *stream, int64_t version, const char *type, uint32_t schema,
                   const void *payload, size_t payload_len, const void *metadata,
                   size_t metadata_len)
{
    struct expected_event *x = &g_exp[g_nexp++];
    x->stream = stream;
    x->stream_version = version;
    x->type = type;
    x->schema_version = schema;
    x->payload = (const uint8_t *)payload;
    x->payload_len = payload_len;
    x->metadata = (const uint8_t *)metadata;
    x->metadata_len = metadata_len;
    x->timestamp_us = 0;
}

/* Checks every field of e against the expected event at e->position. */
static void check_event(const evs_event *e, int check_timestamp)
{
    const struct expected_event *x;
    if (!CHECK(e->position < g_nexp))
        return;
    x = &g_exp[e->position];
    CHECK_VIEW(e->stream, e->stream_len, x->stream);
    if (x->stream_version >= 0)
        CHECK_U64(e->stream_version, x->stream_version);
    CHECK_VIEW(e->event_type, e->event_type_len, x->type);
    CHECK_U64(e->schema_version, x->schema_version);
    CHECK_MEM(e->payload, e->payload_len, x->payload, x->payload_len);
    CHECK_MEM(e->metadata, e->metadata_len, x->metadata, x->metadata_len);
    if (check_timestamp)
        CHECK_U64(e->timestamp_us, x->timestamp_us);
}

/* Reads everything forward from 0 and checks it against the table. */
static void check_all_forward(evs_store *s, int check_timestamps)
{
    evs_cursor *c = NULL;
    evs_event e;
    uint64_t i;
    if (!CHECK_OK(evs_read_all(s, 0, &c)))
        return;
    for (i = 0; i < g_nexp; i++) {
        if (!CHECK_OK(evs_cursor_next(c, &e)))
            break;
        CHECK_U64(e.position, i);
        check_event(&e, check_timestamps);
    }
    CHECK_STATUS(evs_cursor_next(c, &e), EVS_END);
    evs_cursor_free(c);
}

static void build_reading_store(evs_store *s)
{
    evs_event_input in[3];
    uint64_t pos, v;

    pos = v = SENTINEL_U64;
    CHECK_OK(evs_append_event(s, "Started", (const uint8_t *)"hello", 5, &pos));
    CHECK_U64(pos, 0);
    expect("", -1, "Started", 1, "hello", 5, "", 0);
    tu_sleep_ms(2);

    in[0] = input("OrderPlaced", "p1", "m1", 0);
    in[1] = input("OrderPaid", "p2", NULL, 3);
    in[2] = input("OrderShipped", NULL, "m3", 1);
    CHECK_OK(evs_append(s, "orders-1", EVS_VERSION_NO_STREAM, in, 3, &pos, &v));
    CHECK_U64(pos, 1);
    CHECK_U64(v, 2);
    expect("orders-1", 0, "OrderPlaced", 1, "p1", 2, "m1", 2);
    expect("orders-1", 1, "OrderPaid", 3, "p2", 2, "", 0);
    expect("orders-1", 2, "OrderShipped", 1, "", 0, "m3", 2);
    tu_sleep_ms(2);

    CHECK_OK(evs_append_event(s, "Tick", g_binary, sizeof g_binary, &pos));
    CHECK_U64(pos, 4);
    expect("", -1, "Tick", 1, g_binary, sizeof g_binary, "", 0);
    tu_sleep_ms(2);

    in[0] = input("OrderPlaced", "q1", NULL, 7);
    in[1] = input("OrderCancelled", "q2", "why", 2);
    in[0].metadata = g_binary; /* a non-NULL pointer with length 0 */
    CHECK_OK(evs_append(s, "orders-2", EVS_VERSION_ANY, in, 2, &pos, &v));
    CHECK_U64(pos, 5);
    CHECK_U64(v, 1);
    expect("orders-2", 0, "OrderPlaced", 7, "q1", 2, "", 0);
    expect("orders-2", 1, "OrderCancelled", 2, "q2", 2, "why", 3);
    tu_sleep_ms(2);

    in[0] = input("OrderReturned", "r", NULL, 0);
    CHECK_OK(evs_append(s, "orders-1", 2, in, 1, &pos, &v));
    CHECK_U64(pos, 7);
    CHECK_U64(v, 3);
    expect("orders-1", 3, "OrderReturned", 1, "r", 1, "", 0);
}

static void test_read_forward(evs_store *s, uint64_t t_before, uint64_t t_after)
{
    evs_cursor *c, *sentinel_cursor = (evs_cursor *)&c;
    evs_event e;
    uint64_t i, prev_ts = 0;

    TU_SECTION("evs_read_all / evs_cursor_next");
    /* argument errors */
    c = sentinel_cursor;
    CHECK_STATUS(evs_read_all(NULL, 0, &c), EVS_ERR_INVALID_ARGUMENT);
    CHECK(c == sentinel_cursor);
    CHECK_STATUS(evs_read_all(s, 0, NULL), EVS_ERR_INVALID_ARGUMENT);
    CHECK_STATUS(evs_cursor_next(NULL, &e), EVS_ERR_INVALID_ARGUMENT);

    /* every field of every event; timestamps never decrease */
    c = NULL;
    if (CHECK_OK(evs_read_all(s, 0, &c))) {
        CHECK(c != NULL);
        /* a NULL out-event is refused and consumes nothing */
        CHECK_STATUS(evs_cursor_next(c, NULL), EVS_ERR_INVALID_ARGUMENT);
        for (i = 0; i < g_nexp; i++) {
            if (!CHECK_OK(evs_cursor_next(c, &e)))
                break;
            CHECK_U64(e.position, i);
            check_event(&e, 0);
            g_exp[i].timestamp_us = e.timestamp_us;
            CHECK(e.timestamp_us >= prev_ts);
            /* a plausible wall-clock time (with a second of slack for a coarse clock) */
            CHECK(e.timestamp_us + 1000000u >= t_before);
            CHECK(e.timestamp_us <= t_after + 1000000u);
            prev_ts = e.timestamp_us;
        }
        CHECK_STATUS(evs_cursor_next(c, &e), EVS_END);
        CHECK_STATUS(evs_cursor_next(c, &e), EVS_END); /* and again */
        evs_cursor_free(c);
    }
    /* the events were appended with 2 ms between the appends */
    CHECK(g_exp[1].timestamp_us > g_exp[0].timestamp_us);
    CHECK(g_exp[7].timestamp_us > g_exp[6].timestamp_us);

    /* from the middle */
    c = NULL;
    if (CHECK_OK(evs_read_all(s, 5, &c))) {
        for (i = 5; i < g_nexp; i++) {
            if (!CHECK_OK(evs_cursor_next(c, &e)))
                break;
            CHECK_U64(e.position, i);
            check_event(&e, 1);
        }
        CHECK_STATUS(evs_cursor_next(c, &e), EVS_END);
        evs_cursor_free(c);
    }

    /* from the next position: an empty cursor; past it: NOT_FOUND */
    c = NULL;
    if (CHECK_OK(evs_read_all(s, g_nexp, &c))) {
        CHECK_STATUS(evs_cursor_next(c, &e), EVS_END);
        evs_cursor_free(c);
    }
    c = sentinel_cursor;
    CHECK_STATUS(evs_read_all(s, g_nexp + 1, &c), EVS_ERR_NOT_FOUND);
    CHECK(c == sentinel_cursor);
    CHECK_STATUS(evs_read_all(s, UINT64_MAX, &c), EVS_ERR_NOT_FOUND);
    CHECK(c == sentinel_cursor);
}

static void test_read_backward(evs_store *s)
{
    evs_cursor *c, *sentinel_cursor = (evs_cursor *)&c;
    evs_event e;
    uint64_t i, n = g_nexp;

    TU_SECTION("evs_read_all_backward");
    c = sentinel_cursor;
    CHECK_STATUS(evs_read_all_backward(NULL, UINT64_MAX, &c), EVS_ERR_INVALID_ARGUMENT);
    CHECK(c == sentinel_cursor);
    CHECK_STATUS(evs_read_all_backward(s, UINT64_MAX, NULL), EVS_ERR_INVALID_ARGUMENT);

    /* UINT64_MAX, next_position and beyond all mean "from the last event" */
    {
        uint64_t froms[3];
        int k;
        froms[0] = UINT64_MAX;
        froms[1] = n;
        froms[2] = n + 100;
        for (k = 0; k < 3; k++) {
            c = NULL;
            if (!CHECK_OK(evs_read_all_backward(s, froms[k], &c)))
                continue;
            for (i = n; i-- > 0;) {
                if (!CHECK_OK(evs_cursor_next(c, &e)))
                    break;
                CHECK_U64(e.position, i);
                check_event(&e, 1);
            }
            CHECK_STATUS(evs_cursor_next(c, &e), EVS_END);
            evs_cursor_free(c);
        }
    }

    /* from the middle, inclusive */
    c = NULL;
    if (CHECK_OK(evs_read_all_backward(s, 3, &c))) {
        for (i = 4; i-- > 0;) {
            if (!CHECK_OK(evs_cursor_next(c, &e)))
                break;
            CHECK_U64(e.position, i);
            check_event(&e, 1);
        }
        CHECK_STATUS(evs_cursor_next(c, &e), EVS_END);
        evs_cursor_free(c);
    }
    c = NULL;
    if (CHECK_OK(evs_read_all_backward(s, 0, &c))) {
        CHECK_OK(evs_cursor_next(c, &e));
        CHECK_U64(e.position, 0);
        CHECK_STATUS(evs_cursor_next(c, &e), EVS_END);
        evs_cursor_free(c);
    }
}

static void test_read_stream(evs_store *s)
{
    evs_cursor *c, *sentinel_cursor = (evs_cursor *)&c;
    evs_event e;
    static const uint64_t orders1[] = {1, 2, 3, 7};
    uint64_t i;
    char *long_stream = repeat('s', 1025);

    TU_SECTION("evs_read_stream");
    c = sentinel_cursor;
    CHECK_STATUS(evs_read_stream(NULL, "orders-1", 0, &c), EVS_ERR_INVALID_ARGUMENT);
    CHECK(c == sentinel_cursor);
    CHECK_STATUS(evs_read_stream(s, NULL, 0, &c), EVS_ERR_INVALID_ARGUMENT);
    CHECK(c == sentinel_cursor);
    CHECK_STATUS(evs_read_stream(s, "orders-1", 0, NULL), EVS_ERR_INVALID_ARGUMENT);
    CHECK_STATUS(evs_read_stream(s, BAD_UTF8, 0, &c), EVS_ERR_INVALID_ARGUMENT);
    CHECK(c == sentinel_cursor);
    CHECK_STATUS(evs_read_stream(s, long_stream, 0, &c), EVS_ERR_INVALID_ARGUMENT);
    CHECK(c == sentinel_cursor);
    CHECK_STATUS(evs_read_stream(s, "no-such-stream", 0, &c), EVS_ERR_NOT_FOUND);
    CHECK(c == sentinel_cursor);

    /* the whole stream */
    c = NULL;
    if (CHECK_OK(evs_read_stream(s, "orders-1", 0, &c))) {
        for (i = 0; i < 4; i++) {
            if (!CHECK_OK(evs_cursor_next(c, &e)))
                break;
            CHECK_U64(e.position, orders1[i]);
            CHECK_U64(e.stream_version, i);
            check_event(&e, 1);
        }
        CHECK_STATUS(evs_cursor_next(c, &e), EVS_END);
        evs_cursor_free(c);
    }
    /* from a version */
    c = NULL;
    if (CHECK_OK(evs_read_stream(s, "orders-1", 2, &c))) {
        for (i = 2; i < 4; i++) {
            if (!CHECK_OK(evs_cursor_next(c, &e)))
                break;
            CHECK_U64(e.position, orders1[i]);
            CHECK_U64(e.stream_version, i);
        }
        CHECK_STATUS(evs_cursor_next(c, &e), EVS_END);
        evs_cursor_free(c);
    }
    c = NULL;
    if (CHECK_OK(evs_read_stream(s, "orders-2", 0, &c))) {
        CHECK_OK(evs_cursor_next(c, &e));
        CHECK_U64(e.position, 5);
        check_event(&e, 1);
        CHECK_OK(evs_cursor_next(c, &e));
        CHECK_U64(e.position, 6);
        check_event(&e, 1);
        CHECK_STATUS(evs_cursor_next(c, &e), EVS_END);
        evs_cursor_free(c);
    }
    /* current version + 1: empty; beyond: NOT_FOUND */
    c = NULL;
    if (CHECK_OK(evs_read_stream(s, "orders-1", 4, &c))) {
        CHECK_STATUS(evs_cursor_next(c, &e), EVS_END);
        evs_cursor_free(c);
    }
    c = sentinel_cursor;
    CHECK_STATUS(evs_read_stream(s, "orders-1", 5, &c), EVS_ERR_NOT_FOUND);
    CHECK(c == sentinel_cursor);
    CHECK_STATUS(evs_read_stream(s, "orders-1", UINT64_MAX, &c), EVS_ERR_NOT_FOUND);
    CHECK(c == sentinel_cursor);
    free(long_stream);
}

static void test_stream_version(evs_store *s)
{
    int64_t v;

    TU_SECTION("evs_stream_version");
    v = SENTINEL_I64;
    CHECK_OK(evs_stream_version(s, "orders-1", &v));
    CHECK_I64(v, 3);
    CHECK_OK(evs_stream_version(s, "orders-2", &v));
    CHECK_I64(v, 1);
    v = SENTINEL_I64;
    CHECK_OK(evs_stream_version(s, "no-such-stream", &v));
    CHECK_I64(v, -1);

    v = SENTINEL_I64;
    CHECK_STATUS(evs_stream_version(NULL, "orders-1", &v), EVS_ERR_INVALID_ARGUMENT);
    CHECK_I64(v, SENTINEL_I64);
    CHECK_STATUS(evs_stream_version(s, NULL, &v), EVS_ERR_INVALID_ARGUMENT);
    CHECK_I64(v, SENTINEL_I64);
    CHECK_STATUS(evs_stream_version(s, "orders-1", NULL), EVS_ERR_INVALID_ARGUMENT);
    CHECK_STATUS(evs_stream_version(s, BAD_UTF8, &v), EVS_ERR_INVALID_ARGUMENT);
    CHECK_I64(v, SENTINEL_I64);
}

static void test_position_at(evs_store *s)
{
    uint64_t p, i, j, want;

    TU_SECTION("evs_position_at");
    p = SENTINEL_U64;
    CHECK_STATUS(evs_position_at(NULL, 0, &p), EVS_ERR_INVALID_ARGUMENT);
    CHECK_U64(p, SENTINEL_U64);
    CHECK_STATUS(evs_position_at(s, 0, NULL), EVS_ERR_INVALID_ARGUMENT);

    CHECK_OK(evs_position_at(s, 0, &p));
    CHECK_U64(p, 0);
    CHECK_OK(evs_position_at(s, g_exp[0].timestamp_us - 1, &p));
    CHECK_U64(p, 0);
    CHECK_OK(evs_position_at(s, UINT64_MAX, &p));
    CHECK_U64(p, g_nexp);
    CHECK_OK(evs_position_at(s, g_exp[g_nexp - 1].timestamp_us, &p));
    CHECK_U64(p, g_nexp);
    /* at each event's timestamp: the first position with a later timestamp */
    for (i = 0; i < g_nexp; i++) {
        want = g_nexp;
        for (j = 0; j < g_nexp; j++) {
            if (g_exp[j].timestamp_us > g_exp[i].timestamp_us) {
                want = j;
                break;
            }
        }
        p = SENTINEL_U64;
        CHECK_OK(evs_position_at(s, g_exp[i].timestamp_us, &p));
        CHECK_U64(p, want);
        /* just before it: the first event with that timestamp or an earlier later one */
        want = g_nexp;
        for (j = 0; j < g_nexp; j++) {
            if (g_exp[j].timestamp_us > g_exp[i].timestamp_us - 1) {
                want = j;
                break;
            }
        }
        CHECK_OK(evs_position_at(s, g_exp[i].timestamp_us - 1, &p));
        CHECK_U64(p, want);
    }
}

/* A forward cursor tails the log; a backward one never sees new events. */
static void test_tailing(evs_store *s)
{
    evs_cursor *fwd = NULL, *back = NULL;
    evs_event e;
    uint64_t pos, i;
    static const char tail_payload[] = "tail";

    TU_SECTION("cursors and new events");
    if (!CHECK_OK(evs_read_all(s, 0, &fwd)))
        return;
    if (!CHECK_OK(evs_read_all_backward(s, UINT64_MAX, &back))) {
        evs_cursor_free(fwd);
        return;
    }
    for (i = 0; i < g_nexp; i++)
        CHECK_OK(evs_cursor_next(fwd, &e));
    CHECK_STATUS(evs_cursor_next(fwd, &e), EVS_END);
    CHECK_OK(evs_cursor_next(back, &e));
    CHECK_U64(e.position, g_nexp - 1);

    pos = SENTINEL_U64;
    CHECK_OK(evs_append_event(s, "Tail", (const uint8_t *)tail_payload, 4, &pos));
    CHECK_U64(pos, g_nexp);
    expect("", -1, "Tail", 1, tail_payload, 4, "", 0);

    if (CHECK_OK(evs_cursor_next(fwd, &e))) {
        CHECK_U64(e.position, g_nexp - 1);
        check_event(&e, 0);
        g_exp[g_nexp - 1].timestamp_us = e.timestamp_us;
        CHECK(e.timestamp_us >= g_exp[g_nexp - 2].timestamp_us);
    }
    CHECK_STATUS(evs_cursor_next(fwd, &e), EVS_END);

    for (i = g_nexp - 2; i-- > 0;) {
        if (!CHECK_OK(evs_cursor_next(back, &e)))
            break;
        CHECK_U64(e.position, i);
    }
    CHECK_STATUS(evs_cursor_next(back, &e), EVS_END);
    CHECK_STATUS(evs_cursor_next(back, &e), EVS_END);
    evs_cursor_free(fwd);
    evs_cursor_free(back);
}

static void test_empty_store_reads(void)
{
    char path[2048];
    evs_store *s;
    evs_cursor *c = NULL;
    evs_event e;
    uint64_t p;

    TU_SECTION("reading an empty store");
    store_path(path, sizeof path, "empty");
    s = open_store(path, NULL, NULL);
    if (s == NULL)
        return;
    if (CHECK_OK(evs_read_all_backward(s, UINT64_MAX, &c))) {
        CHECK_STATUS(evs_cursor_next(c, &e), EVS_END);
        evs_cursor_free(c);
    }
    c = NULL;
    if (CHECK_OK(evs_read_all_backward(s, 0, &c))) {
        CHECK_STATUS(evs_cursor_next(c, &e), EVS_END);
        evs_cursor_free(c);
    }
    c = NULL;
    if (CHECK_OK(evs_read_all(s, 0, &c))) {
        CHECK_STATUS(evs_cursor_next(c, &e), EVS_END);
        evs_cursor_free(c);
    }
    c = (evs_cursor *)&c;
    CHECK_STATUS(evs_read_all(s, 1, &c), EVS_ERR_NOT_FOUND);
    p = SENTINEL_U64;
    CHECK_OK(evs_position_at(s, 0, &p));
    CHECK_U64(p, 0);
    CHECK_OK(evs_position_at(s, UINT64_MAX, &p));
    CHECK_U64(p, 0);
    CHECK_OK(evs_close(s));
}

/* Closes and reopens the reading store: everything is as it was. */
static evs_store *test_persistence(evs_store *s, const char *path)
{
    evs_options *o;
    evs_recovery_info info;
    int64_t v;
    uint64_t pos, ver;
    evs_event_input in;

    TU_SECTION("persistence across close and reopen");
    CHECK_OK(evs_close(s));
    o = evs_options_new();
    CHECK_OK(evs_options_set_snapshot_every(o, 0));
    memset(&info, 0xAB, sizeof info);
    s = open_store(path, o, &info);
    evs_options_free(o);
    if (s == NULL)
        return NULL;
    CHECK_U64(info.next_position, g_nexp);
    CHECK(info.valid_records >= 1);
    CHECK(info.segments_scanned >= 1);
    CHECK_U64(info.bytes_truncated, 0);
    CHECK(!info.corruption_detected);
    CHECK_U64(info.snapshot_position, UINT64_MAX);

    check_all_forward(s, 1);
    CHECK_U64(next_position(s), g_nexp);
    v = SENTINEL_I64;
    CHECK_OK(evs_stream_version(s, "orders-1", &v));
    CHECK_I64(v, 3);
    CHECK_OK(evs_stream_version(s, "orders-2", &v));
    CHECK_I64(v, 1);

    /* appends continue: positions and stream versions pick up where they were */
    in = input("OrderArchived", "z", NULL, 0);
    pos = ver = SENTINEL_U64;
    CHECK_STATUS(evs_append(s, "orders-1", EVS_VERSION_NO_STREAM, &in, 1, &pos, &ver),
                 EVS_ERR_WRONG_EXPECTED_VERSION);
    CHECK_OK(evs_append(s, "orders-1", 3, &in, 1, &pos, &ver));
    CHECK_U64(pos, g_nexp);
    CHECK_U64(ver, 4);
    expect("orders-1", 4, "OrderArchived", 1, "z", 1, "", 0);
    {
        evs_cursor *c = NULL;
        evs_event e;
        if (CHECK_OK(evs_read_all(s, g_nexp - 1, &c))) {
            if (CHECK_OK(evs_cursor_next(c, &e))) {
                check_event(&e, 0);
                g_exp[g_nexp - 1].timestamp_us = e.timestamp_us;
                CHECK(e.timestamp_us >= g_exp[g_nexp - 2].timestamp_us);
            }
            evs_cursor_free(c);
        }
    }
    return s;
}

static void test_read_only(const char *path)
{
    evs_options *o;
    evs_store *s;
    evs_recovery_info info;
    uint64_t pos, ver;
    int64_t v;
    evs_event_input in;

    TU_SECTION("read-only store");
    o = evs_options_new();
    CHECK_OK(evs_options_set_read_only(o, true));
    memset(&info, 0xAB, sizeof info);
    s = open_store(path, o, &info);
    evs_options_free(o);
    if (s == NULL)
        return;
    CHECK_U64(info.next_position, g_nexp);
    CHECK(!info.corruption_detected);

    /* reads work */
    check_all_forward(s, 1);
    v = SENTINEL_I64;
    CHECK_OK(evs_stream_version(s, "orders-1", &v));
    CHECK_I64(v, 4);

    /* writes do not */
    pos = SENTINEL_U64;
    CHECK_STATUS(evs_append_event(s, "E", (const uint8_t *)"x", 1, &pos), EVS_ERR_READ_ONLY);
    CHECK_U64(pos, SENTINEL_U64);
    in = input("E", "x", NULL, 1);
    pos = ver = SENTINEL_U64;
    CHECK_STATUS(evs_append(s, "orders-1", EVS_VERSION_ANY, &in, 1, &pos, &ver),
                 EVS_ERR_READ_ONLY);
    CHECK_U64(pos, SENTINEL_U64);
    CHECK_U64(ver, SENTINEL_U64);
    CHECK_STATUS(evs_append(s, "new-stream", EVS_VERSION_NO_STREAM, &in, 1, &pos, &ver),
                 EVS_ERR_READ_ONLY);
    CHECK_OK(evs_sync(s));
    CHECK_U64(next_position(s), g_nexp);
    CHECK_OK(evs_close(s));
}

static void test_reading(void)
{
    char path[2048];
    evs_store *s;
    uint64_t t_before, t_after;

    store_path(path, sizeof path, "reading");
    s = open_store(path, NULL, NULL);
    if (s == NULL)
        return;
    TU_SECTION("building the reading store");
    t_before = tu_now_us();
    build_reading_store(s);
    t_after = tu_now_us();
    test_read_forward(s, t_before, t_after);
    test_read_backward(s);
    test_read_stream(s);
    test_stream_version(s);
    test_position_at(s);
    test_tailing(s);
    s = test_persistence(s, path);
    if (s != NULL) {
        check_all_forward(s, 1);
        CHECK_OK(evs_close(s));
    }
    test_read_only(path);
}

static void test_appending(void)
{
    char path[2048];
    evs_store *s;

    store_path(path, sizeof path, "appending");
    s = open_store(path, NULL, NULL);
    if (s == NULL)
        return;
    test_append_event_errors(s);
    test_append_errors(s);
    test_expected_versions(s);
    CHECK_OK(evs_close(s));
}

int main(void)
{
    test_last_error_message(); /* first: nothing has failed on this thread yet */
    test_status_names();
    test_null_free_close();

    if (!tu_make_temp_dir(g_root, sizeof g_root))
        return tu_finish();
    test_options();
    test_open();
    test_appending();
    test_reading();
    test_empty_store_reads();
    test_small_segments();
    test_too_large();

    tu_cleanup_dir(g_root);
    return tu_finish();
}
