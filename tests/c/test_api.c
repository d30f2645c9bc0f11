/*
 * test_api.c: the Conventions, Status codes, Opening, Appending and Reading
 * parts of the evstore C API (docs/c-api.md, docs/api-decisions.md,
 * include/evstore.h), each function on its success path and on each of its
 * error paths; then recovery: torn and zero-filled tails, damage before the
 * tail, a legacy nori-wal store, a read-only store beside a writer, another
 * process holding the lock, and writers killed with SIGKILL under each fsync
 * policy (this program runs itself as the child: `test_api --child ...`).
 */
#include "test_util.h"

/* "MAJOR.MINOR.PATCH" from the header's macros: what evs_version() must say. */
#define VERSION_STR(x) #x
#define VERSION_XSTR(x) VERSION_STR(x)
#define VERSION_TEXT                                                                   \
    VERSION_XSTR(EVS_VERSION_MAJOR) "." VERSION_XSTR(EVS_VERSION_MINOR) "." VERSION_XSTR( \
        EVS_VERSION_PATCH)

#include <poll.h>
#include <signal.h>
#include <sys/types.h>
#include <sys/wait.h>

#define SENTINEL_U64 UINT64_C(0xDEADBEEFCAFEF00D)
#define SENTINEL_I64 INT64_C(-777777)
#define MiB ((size_t)1024 * 1024)
#define BAD_UTF8 "\xff\xfe"

static char g_root[1024];

static void store_path(char *out, size_t cap, const char *name)
{
    tu_store_location(out, cap, g_root, name);
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
    evs_event_input in = EVS_STRUCT_INIT(evs_event_input);
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
    CHECK_I64(EVS_EXPECT_ANY, -1);
    CHECK_I64(EVS_EXPECT_NO_STREAM, -2);
    CHECK_I64(EVS_EXPECT_EXISTS, -3);
    CHECK_I64(EVS_FSYNC_ALWAYS, 0);
    CHECK_I64(EVS_FSYNC_BATCH, 1);
    CHECK_I64(EVS_FSYNC_OS, 2);

    /* codes the library does not know still get a (static) string */
    CHECK(evs_status_name(42) != NULL);
    CHECK(evs_status_name(-50) != NULL);
    CHECK(evs_status_name(INT32_MIN) != NULL);

    CHECK_STR(evs_version(), VERSION_TEXT);
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
    evs_recovery_info info = EVS_STRUCT_INIT(evs_recovery_info), info2 = EVS_STRUCT_INIT(evs_recovery_info);
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

    if (!tu_skip_on_pg("evs_open of bad paths",
                       "a non-UTF-8 path, a missing parent folder, a regular file")) {
        /* a path that is not UTF-8 */
        snprintf(bad, sizeof bad, "%s/" BAD_UTF8, g_root);
        s = sentinel_store;
        CHECK_STATUS(evs_open(bad, NULL, &s, NULL), EVS_ERR_INVALID_ARGUMENT);
        CHECK(s == sentinel_store);

        /* the parent must exist */
        snprintf(bad, sizeof bad, "%s/no-such-parent/store", g_root);
        s = sentinel_store;
        memset(&info, 0xAB, sizeof info);
        info.struct_size = sizeof info;
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
        info.struct_size = sizeof info;
        info2 = info;
        CHECK_STATUS(evs_open(file_path, NULL, &s, &info), EVS_ERR_IO);
        CHECK(s == sentinel_store);
        CHECK(memcmp(&info, &info2, sizeof info) == 0);
    }

    /* read-only open of a missing store */
    ro = evs_options_new();
    CHECK(ro != NULL);
    CHECK_OK(evs_options_set_read_only(ro, true));
    s = sentinel_store;
    CHECK_STATUS(evs_open(path, ro, &s, NULL), EVS_ERR_NOT_FOUND);
    CHECK(s == sentinel_store);
    if (!tu_skip_on_pg("the folder a read-only open leaves uncreated", "no folder"))
        CHECK(stat(path, &st) != 0); /* and it did not create it */

    /* success: creates the directory, fills in the recovery info */
    s = NULL;
    memset(&info, 0xAB, sizeof info);
    info.struct_size = sizeof info;
    CHECK_OK(evs_open(path, NULL, &s, &info));
    CHECK(s != NULL);
    if (!tu_skip_on_pg("the folder evs_open creates", "no folder"))
        CHECK(stat(path, &st) == 0 && S_ISDIR(st.st_mode));
    check_fresh_info(&info);

    /* a second open of the same path in the same process */
    if (!tu_skip_on_pg("EVS_ERR_LOCKED for a second open",
                       "any number of handles may write to one PostgreSQL schema")) {
        s2 = sentinel_store;
        CHECK_STATUS(evs_open(path, NULL, &s2, NULL), EVS_ERR_LOCKED);
        CHECK(s2 == sentinel_store);
    }

    CHECK_STATUS(evs_sync(NULL), EVS_ERR_INVALID_ARGUMENT);
    CHECK_OK(evs_sync(s));
    CHECK_OK(evs_close(s));

    /* after the close, the lock is free again; info may be NULL */
    s2 = NULL;
    CHECK_OK(evs_open(path, NULL, &s2, NULL));
    CHECK(s2 != NULL);
    CHECK_OK(evs_close(s2));

    /* an existing empty directory opens as a new store */
    if (!tu_skip_on_pg("an existing empty folder opens as a new store", "no folder")) {
        store_path(path, sizeof path, "existing-empty-dir");
        CHECK(mkdir(path, 0700) == 0);
        s = NULL;
        memset(&info, 0xAB, sizeof info);
        info.struct_size = sizeof info;
        CHECK_OK(evs_open(path, NULL, &s, &info));
        check_fresh_info(&info);
        CHECK_OK(evs_close(s));
    }

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
    /* out_position is optional (ABI version 1) */
    CHECK_OK(evs_append_event(s, "E", pl, 3, NULL));
    before++;
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
    evs_event_input ev[3], bad = EVS_STRUCT_INIT(evs_event_input);
    { /* every entry starts with its size */
        size_t i_;
        for (i_ = 0; i_ < sizeof ev / sizeof ev[0]; i_++)
            ev[i_] = (evs_event_input)EVS_STRUCT_INIT(evs_event_input);
    }
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
        CHECK_STATUS(evs_append(NULL, "x", EVS_EXPECT_ANY, ev, 1, &f, &v),
                     EVS_ERR_INVALID_ARGUMENT);
        CHECK_U64(f, SENTINEL_U64);
        CHECK_U64(v, SENTINEL_U64);
    }
    APPEND_FAILS(NULL, EVS_EXPECT_ANY, ev, 1, EVS_ERR_INVALID_ARGUMENT);
    APPEND_FAILS("", EVS_EXPECT_ANY, ev, 1, EVS_ERR_INVALID_ARGUMENT);
    APPEND_FAILS(BAD_UTF8, EVS_EXPECT_ANY, ev, 1, EVS_ERR_INVALID_ARGUMENT);
    APPEND_FAILS("stream-" BAD_UTF8, EVS_EXPECT_ANY, ev, 1, EVS_ERR_INVALID_ARGUMENT);
    APPEND_FAILS(long_stream, EVS_EXPECT_ANY, ev, 1, EVS_ERR_INVALID_ARGUMENT);
    APPEND_FAILS("x", EVS_EXPECT_ANY, NULL, 1, EVS_ERR_INVALID_ARGUMENT);
    APPEND_FAILS("x", EVS_EXPECT_ANY, ev, 0, EVS_ERR_INVALID_ARGUMENT);
    APPEND_FAILS("x", EVS_EXPECT_ANY, NULL, 0, EVS_ERR_INVALID_ARGUMENT);
    APPEND_FAILS("x", -4, ev, 1, EVS_ERR_INVALID_ARGUMENT);
    APPEND_FAILS("x", INT64_MIN, ev, 1, EVS_ERR_INVALID_ARGUMENT);

    bad = input(NULL, "p", NULL, 1);
    APPEND_FAILS("x", EVS_EXPECT_ANY, &bad, 1, EVS_ERR_INVALID_ARGUMENT);
    bad = input("", "p", NULL, 1);
    APPEND_FAILS("x", EVS_EXPECT_ANY, &bad, 1, EVS_ERR_INVALID_ARGUMENT);
    bad = input(BAD_UTF8, "p", NULL, 1);
    APPEND_FAILS("x", EVS_EXPECT_ANY, &bad, 1, EVS_ERR_INVALID_ARGUMENT);
    bad = input(long_type, "p", NULL, 1);
    APPEND_FAILS("x", EVS_EXPECT_ANY, &bad, 1, EVS_ERR_INVALID_ARGUMENT);
    bad = input("T", NULL, NULL, 1);
    bad.payload_len = 4; /* NULL payload with a length */
    APPEND_FAILS("x", EVS_EXPECT_ANY, &bad, 1, EVS_ERR_INVALID_ARGUMENT);
    bad = input("T", "p", NULL, 1);
    bad.metadata_len = 4; /* NULL metadata with a length */
    APPEND_FAILS("x", EVS_EXPECT_ANY, &bad, 1, EVS_ERR_INVALID_ARGUMENT);

    /* one bad event in a batch: nothing of the batch is appended */
    {
        evs_event_input mixed[3];
        { /* every entry starts with its size */
            size_t i_;
            for (i_ = 0; i_ < sizeof mixed / sizeof mixed[0]; i_++)
                mixed[i_] = (evs_event_input)EVS_STRUCT_INIT(evs_event_input);
        }
        mixed[0] = ev[0];
        mixed[1] = input(BAD_UTF8, "p", NULL, 1);
        mixed[2] = ev[2];
        APPEND_FAILS("x", EVS_EXPECT_ANY, mixed, 3, EVS_ERR_INVALID_ARGUMENT);
        mixed[1] = input(NULL, "p", NULL, 1);
        APPEND_FAILS("x", EVS_EXPECT_NO_STREAM, mixed, 3, EVS_ERR_INVALID_ARGUMENT);
    }

    CHECK_U64(next_position(s), before);
    ver = SENTINEL_I64;
    CHECK_OK(evs_stream_version(s, "x", &ver));
    CHECK_I64(ver, -1);

    /* the limits themselves; both out-pointers may be NULL */
    CHECK_OK(evs_append(s, max_stream, EVS_EXPECT_NO_STREAM, ev, 3, NULL, NULL));
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
    { /* every entry starts with its size */
        size_t i_;
        for (i_ = 0; i_ < sizeof ev / sizeof ev[0]; i_++)
            ev[i_] = (evs_event_input)EVS_STRUCT_INIT(evs_event_input);
    }
    uint64_t first, v, before;
    int64_t ver;
    int i;
    const char *msg;

    TU_SECTION("expected versions");
    ev[0] = input("Created", "{\"n\":0}", NULL, 1);
    ev[1] = input("Changed", "{\"n\":1}", NULL, 1);
    ev[2] = input("Changed", "{\"n\":2}", NULL, 1);

    /* EVS_EXPECT_EXISTS on a missing stream */
    first = v = SENTINEL_U64;
    CHECK_STATUS(evs_append(s, "ev-stream", EVS_EXPECT_EXISTS, ev, 1, &first, &v),
                 EVS_ERR_WRONG_EXPECTED_VERSION);
    CHECK_U64(first, SENTINEL_U64);
    CHECK_U64(v, SENTINEL_U64);
    /* a version >= 0 on a missing stream */
    CHECK_STATUS(evs_append(s, "ev-stream", 0, ev, 1, &first, &v),
                 EVS_ERR_WRONG_EXPECTED_VERSION);
    CHECK_U64(first, SENTINEL_U64);

    /* EVS_EXPECT_NO_STREAM on a missing stream */
    before = next_position(s);
    CHECK_OK(evs_append(s, "ev-stream", EVS_EXPECT_NO_STREAM, ev, 1, &first, &v));
    CHECK_U64(first, before);
    CHECK_U64(v, 0);

    /* EVS_EXPECT_NO_STREAM on an existing stream */
    first = v = SENTINEL_U64;
    CHECK_STATUS(evs_append(s, "ev-stream", EVS_EXPECT_NO_STREAM, ev, 1, &first, &v),
                 EVS_ERR_WRONG_EXPECTED_VERSION);
    CHECK_U64(first, SENTINEL_U64);
    CHECK_U64(v, SENTINEL_U64);

    /* EVS_EXPECT_EXISTS on an existing stream */
    CHECK_OK(evs_append(s, "ev-stream", EVS_EXPECT_EXISTS, ev + 1, 2, &first, &v));
    CHECK_U64(first, before + 1);
    CHECK_U64(v, 2);

    /* EVS_EXPECT_ANY always */
    CHECK_OK(evs_append(s, "ev-stream", EVS_EXPECT_ANY, ev, 1, &first, &v));
    CHECK_U64(v, 3);
    CHECK_OK(evs_append(s, "ev-any-new", EVS_EXPECT_ANY, ev, 1, &first, &v));
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
    evs_event_input in = EVS_STRUCT_INIT(evs_event_input), batch[5];
    evs_cursor *c = NULL;
    evs_event e = EVS_STRUCT_INIT(evs_event);
    evs_recovery_info info = EVS_STRUCT_INIT(evs_recovery_info);

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
    CHECK_STATUS(evs_append(s, "big", EVS_EXPECT_ANY, &in, 1, &pos, &v), EVS_ERR_TOO_LARGE);
    CHECK_U64(pos, SENTINEL_U64);
    CHECK_U64(v, SENTINEL_U64);
    in.payload_len = limit - 10;
    in.metadata = big;
    in.metadata_len = 11;
    CHECK_STATUS(evs_append(s, "big", EVS_EXPECT_ANY, &in, 1, &pos, &v), EVS_ERR_TOO_LARGE);
    CHECK_U64(pos, SENTINEL_U64);

    /* a batch at most 64 MiB: 5 x 15 MiB is too large even though each event fits */
    {
        int i;
        for (i = 0; i < 5; i++) {
            batch[i] = (evs_event_input)EVS_STRUCT_INIT(evs_event_input);
            batch[i].event_type = "Chunk";
            batch[i].payload = big;
            batch[i].payload_len = 15 * MiB;
            batch[i].metadata = NULL;
            batch[i].metadata_len = 0;
            batch[i].schema_version = 1;
        }
        CHECK_STATUS(evs_append(s, "big", EVS_EXPECT_ANY, batch, 5, &pos, &v),
                     EVS_ERR_TOO_LARGE);
        CHECK_U64(pos, SENTINEL_U64);
    }
    CHECK_U64(next_position(s), before);

    /* exactly at the limit */
    CHECK_OK(evs_append_event(s, "Big", big, limit, &pos));
    CHECK_U64(pos, before);
    in.payload_len = limit - 100;
    in.metadata_len = 100;
    CHECK_OK(evs_append(s, "big", EVS_EXPECT_NO_STREAM, &in, 1, &pos, &v));
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
    if (tu_skip_on_pg("a batch must fit in one segment", "no segment files")) {
        free(big);
        return;
    }
    o = evs_options_new();
    CHECK_OK(evs_options_set_max_segment_size(o, 65536));
    store_path(path, sizeof path, "small-segment-batch");
    s = open_store(path, o, NULL);
    if (s != NULL) {
        int i;
        for (i = 0; i < 2; i++) {
            batch[i] = (evs_event_input)EVS_STRUCT_INIT(evs_event_input);
            batch[i].event_type = "Chunk";
            batch[i].payload = big;
            batch[i].payload_len = 40000;
            batch[i].metadata = NULL;
            batch[i].metadata_len = 0;
            batch[i].schema_version = 1;
        }
        pos = SENTINEL_U64;
        CHECK_STATUS(evs_append(s, "chunks", EVS_EXPECT_ANY, batch, 2, &pos, NULL),
                     EVS_ERR_TOO_LARGE);
        CHECK_U64(pos, SENTINEL_U64);
        batch[0].payload_len = 70000;
        CHECK_STATUS(evs_append(s, "chunks", EVS_EXPECT_ANY, batch, 1, &pos, NULL),
                     EVS_ERR_TOO_LARGE);
        CHECK_STATUS(evs_append_event(s, "Chunk", big, 70000, &pos), EVS_ERR_TOO_LARGE);
        CHECK_U64(pos, SENTINEL_U64);
        CHECK_U64(next_position(s), 0);
        batch[0].payload_len = 40000;
        CHECK_OK(evs_append(s, "chunks", EVS_EXPECT_ANY, batch, 1, &pos, NULL));
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
    evs_recovery_info info = EVS_STRUCT_INIT(evs_recovery_info);
    uint8_t buf[10000];
    int i, n = 40;
    uint64_t pos;
    evs_cursor *c = NULL;
    evs_event e = EVS_STRUCT_INIT(evs_event);

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
    info.struct_size = sizeof info;
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
        /* backward across the segments */
        c = NULL;
        if (CHECK_OK(evs_read_all_backward(s, (uint64_t)n - 5, &c))) {
            for (i = n - 5; i >= 0; i--) {
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
    evs_event e = EVS_STRUCT_INIT(evs_event);
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
    { /* every entry starts with its size */
        size_t i_;
        for (i_ = 0; i_ < sizeof in / sizeof in[0]; i_++)
            in[i_] = (evs_event_input)EVS_STRUCT_INIT(evs_event_input);
    }
    uint64_t pos, v;

    pos = v = SENTINEL_U64;
    CHECK_OK(evs_append_event(s, "Started", (const uint8_t *)"hello", 5, &pos));
    CHECK_U64(pos, 0);
    expect("", -1, "Started", 1, "hello", 5, "", 0);
    tu_sleep_ms(2);

    in[0] = input("OrderPlaced", "p1", "m1", 0);
    in[1] = input("OrderPaid", "p2", NULL, 3);
    in[2] = input("OrderShipped", NULL, "m3", 1);
    CHECK_OK(evs_append(s, "orders-1", EVS_EXPECT_NO_STREAM, in, 3, &pos, &v));
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
    CHECK_OK(evs_append(s, "orders-2", EVS_EXPECT_ANY, in, 2, &pos, &v));
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
    evs_event e = EVS_STRUCT_INIT(evs_event);
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
    evs_event e = EVS_STRUCT_INIT(evs_event);
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
    evs_event e = EVS_STRUCT_INIT(evs_event);
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
    CHECK_STATUS(evs_read_stream(s, "", 0, &c), EVS_ERR_INVALID_ARGUMENT);
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
    CHECK_STATUS(evs_stream_version(s, "", &v), EVS_ERR_INVALID_ARGUMENT);
    CHECK_I64(v, SENTINEL_I64);
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
    evs_event e = EVS_STRUCT_INIT(evs_event);
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
    evs_event e = EVS_STRUCT_INIT(evs_event);
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
    evs_recovery_info info = EVS_STRUCT_INIT(evs_recovery_info);
    int64_t v;
    uint64_t pos, ver;
    evs_event_input in = EVS_STRUCT_INIT(evs_event_input);

    TU_SECTION("persistence across close and reopen");
    CHECK_OK(evs_close(s));
    o = evs_options_new();
    CHECK_OK(evs_options_set_snapshot_every(o, 0));
    memset(&info, 0xAB, sizeof info);
    info.struct_size = sizeof info;
    s = open_store(path, o, &info);
    evs_options_free(o);
    if (s == NULL)
        return NULL;
    CHECK_U64(info.next_position, g_nexp);
    if (!tu_skip_on_pg("records and segments scanned on reopen",
                       "the recovery scan of segment files")) {
        CHECK(info.valid_records >= 1);
        CHECK(info.segments_scanned >= 1);
    }
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
    CHECK_STATUS(evs_append(s, "orders-1", EVS_EXPECT_NO_STREAM, &in, 1, &pos, &ver),
                 EVS_ERR_WRONG_EXPECTED_VERSION);
    CHECK_OK(evs_append(s, "orders-1", 3, &in, 1, &pos, &ver));
    CHECK_U64(pos, g_nexp);
    CHECK_U64(ver, 4);
    expect("orders-1", 4, "OrderArchived", 1, "z", 1, "", 0);
    {
        evs_cursor *c = NULL;
        evs_event e = EVS_STRUCT_INIT(evs_event);
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
    evs_recovery_info info = EVS_STRUCT_INIT(evs_recovery_info);
    uint64_t pos, ver;
    int64_t v;
    evs_event_input in = EVS_STRUCT_INIT(evs_event_input);

    TU_SECTION("read-only store");
    o = evs_options_new();
    CHECK_OK(evs_options_set_read_only(o, true));
    memset(&info, 0xAB, sizeof info);
    info.struct_size = sizeof info;
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
    CHECK_STATUS(evs_append(s, "orders-1", EVS_EXPECT_ANY, &in, 1, &pos, &ver),
                 EVS_ERR_READ_ONLY);
    CHECK_U64(pos, SENTINEL_U64);
    CHECK_U64(ver, SENTINEL_U64);
    CHECK_STATUS(evs_append(s, "new-stream", EVS_EXPECT_NO_STREAM, &in, 1, &pos, &ver),
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

/* ------------------------------------------------------------------------ */
/* Readers beside a writer; stream cursors tail their stream                */
/* ------------------------------------------------------------------------ */

static void test_stream_cursor_tails(void)
{
    char path[2048];
    evs_store *s;
    evs_cursor *c = NULL;
    evs_event e = EVS_STRUCT_INIT(evs_event);
    evs_event_input in = EVS_STRUCT_INIT(evs_event_input);
    uint64_t pos;

    TU_SECTION("a stream cursor sees later appends to its stream only");
    store_path(path, sizeof path, "stream-tail");
    s = open_store(path, NULL, NULL);
    if (s == NULL)
        return;
    in = input("A", "a0", NULL, 1);
    CHECK_OK(evs_append(s, "tail-me", EVS_EXPECT_NO_STREAM, &in, 1, NULL, NULL));
    if (CHECK_OK(evs_read_stream(s, "tail-me", 0, &c))) {
        CHECK_OK(evs_cursor_next(c, &e));
        CHECK_STATUS(evs_cursor_next(c, &e), EVS_END);
        in = input("B", "other", NULL, 1);
        CHECK_OK(evs_append(s, "not-me", EVS_EXPECT_ANY, &in, 1, NULL, NULL));
        CHECK_OK(evs_append_event(s, "C", (const uint8_t *)"x", 1, &pos));
        CHECK_STATUS(evs_cursor_next(c, &e), EVS_END);
        in = input("A", "a1", NULL, 1);
        CHECK_OK(evs_append(s, "tail-me", 0, &in, 1, &pos, NULL));
        if (CHECK_OK(evs_cursor_next(c, &e))) {
            CHECK_U64(e.position, pos);
            CHECK_U64(e.stream_version, 1);
            CHECK_VIEW((const char *)e.payload, e.payload_len, "a1");
        }
        CHECK_STATUS(evs_cursor_next(c, &e), EVS_END);
        evs_cursor_free(c);
    }
    CHECK_OK(evs_close(s));
}

static void test_read_only_beside_writer(bool preallocate)
{
    char path[2048];
    evs_store *w, *r = NULL;
    evs_options *o, *wo;
    evs_cursor *c = NULL;
    evs_event e = EVS_STRUCT_INIT(evs_event);
    uint64_t pos, p;

    printf("-- a read-only store beside a writer (preallocate %s)\n", preallocate ? "on" : "off");
    store_path(path, sizeof path, preallocate ? "beside-prealloc" : "beside-no-prealloc");
    wo = evs_options_new();
    CHECK_OK(evs_options_set_preallocate(wo, preallocate));
    w = open_store(path, wo, NULL);
    evs_options_free(wo);
    if (w == NULL)
        return;
    CHECK_OK(evs_append_event(w, "First", (const uint8_t *)"1", 1, &pos));
    CHECK_OK(evs_sync(w));
    o = evs_options_new();
    CHECK_OK(evs_options_set_read_only(o, true));
    /* read-only takes no lock (evstore.h): it opens while the writer has the store */
    if (CHECK_OK(evs_open(path, o, &r, NULL))) {
        CHECK_U64(next_position(r), 1);
        CHECK_OK(evs_append_event(w, "Second", (const uint8_t *)"2", 1, &pos));
        CHECK_U64(pos, 1);
        CHECK_OK(evs_sync(w));
        /* "new events of a writing process appear on later reads" */
        if (CHECK_OK(evs_read_all(r, 0, &c))) {
            CHECK_OK(evs_cursor_next(c, &e));
            CHECK_U64(e.position, 0);
            if (CHECK_OK(evs_cursor_next(c, &e))) {
                CHECK_U64(e.position, 1);
                CHECK_VIEW(e.event_type, e.event_type_len, "Second");
            }
            CHECK_STATUS(evs_cursor_next(c, &e), EVS_END);
            evs_cursor_free(c);
        }
        p = SENTINEL_U64;
        CHECK_OK(evs_position_at(r, UINT64_MAX, &p));
        CHECK_U64(p, 2);
        CHECK_STATUS(evs_append_event(r, "E", (const uint8_t *)"x", 1, &pos), EVS_ERR_READ_ONLY);
        CHECK_OK(evs_close(r));
    }
    evs_options_free(o);
    CHECK_OK(evs_close(w));
}

/* "Cursors still open keep working on what they can read but should be freed first." */
static void test_cursor_outlives_store(void)
{
    char path[2048];
    evs_store *s;
    evs_cursor *c = NULL;
    evs_event e = EVS_STRUCT_INIT(evs_event);
    uint64_t pos;
    int i;
    evs_status st;

    TU_SECTION("a cursor still open when its store is closed");
    store_path(path, sizeof path, "cursor-after-close");
    s = open_store(path, NULL, NULL);
    if (s == NULL)
        return;
    for (i = 0; i < 3; i++)
        CHECK_OK(evs_append_event(s, "E", (const uint8_t *)"abc", 3, &pos));
    if (!CHECK_OK(evs_read_all(s, 0, &c))) {
        CHECK_OK(evs_close(s));
        return;
    }
    CHECK_OK(evs_cursor_next(c, &e));
    CHECK_OK(evs_close(s));
    /* no crash, no invalid memory access (valgrind): events, the end, or an error */
    for (i = 0; i < 4; i++) {
        st = evs_cursor_next(c, &e);
        if (st == EVS_OK) {
            CHECK_MEM(e.payload, e.payload_len, "abc", 3);
        } else {
            CHECK(st == EVS_END || st < 0);
            break;
        }
    }
    evs_cursor_free(c);
    /* the store is closed for real: it opens again */
    s = open_store(path, NULL, NULL);
    if (s != NULL)
        CHECK_OK(evs_close(s));
}

/* ------------------------------------------------------------------------ */
/* Recovery: torn tails, zero tails, damage, legacy stores                  */
/* ------------------------------------------------------------------------ */

/* The path of the segment with the highest id in <store>/events (first: the lowest). */
static int segment_path(char *out, size_t cap, const char *store, int first)
{
    char dir[2048];
    DIR *d;
    struct dirent *de;
    long best = -1;
    tu_join(dir, sizeof dir, store, "events");
    d = opendir(dir);
    if (d == NULL)
        return 0;
    while ((de = readdir(d)) != NULL) {
        size_t n = strlen(de->d_name);
        char *end;
        long id;
        if (n < 5 || strcmp(de->d_name + n - 4, ".wal") != 0)
            continue;
        id = strtol(de->d_name, &end, 10);
        if (end != de->d_name + n - 4)
            continue;
        if (best < 0 || (first ? id < best : id > best))
            best = id;
    }
    closedir(d);
    if (best < 0)
        return 0;
    snprintf(out, cap, "%s/%06ld.wal", dir, best);
    return 1;
}

static int append_bytes(const char *file, const void *bytes, size_t n)
{
    FILE *f = fopen(file, "ab");
    size_t w;
    if (f == NULL)
        return 0;
    w = fwrite(bytes, 1, n, f);
    return fclose(f) == 0 && w == n;
}

static void test_torn_and_zero_tails(void)
{
    char path[2048], seg[2200];
    evs_store *s;
    evs_recovery_info info = EVS_STRUCT_INIT(evs_recovery_info);
    uint64_t pos;
    int i;
    /* the start of a record (klen 8, vlen 64, flags 0, part of a key) cut off by a crash;
       it does not end in zero bytes, which could pass for preallocated space */
    static const uint8_t torn[] = {0x08, 0x40, 0x00, 0x05, 0x01, 0x02, 0x03};
    static const uint8_t zeros[4096] = {0};

    TU_SECTION("a torn tail is truncated and reported");
    store_path(path, sizeof path, "torn");
    s = open_store(path, NULL, NULL);
    if (s == NULL)
        return;
    for (i = 0; i < 5; i++)
        CHECK_OK(evs_append_event(s, "E", (const uint8_t *)"abc", 3, &pos));
    CHECK_OK(evs_close(s));
    if (!CHECK(segment_path(seg, sizeof seg, path, 0)))
        return;
    CHECK(append_bytes(seg, torn, sizeof torn));
    {
        /* a read-only open modifies no file: it reads past the torn tail */
        evs_options *ro = evs_options_new();
        struct stat before, after;
        CHECK(stat(seg, &before) == 0);
        CHECK_OK(evs_options_set_read_only(ro, true));
        s = open_store(path, ro, &info);
        if (s != NULL) {
            CHECK_U64(info.next_position, 5);
            CHECK_U64(next_position(s), 5);
            CHECK_OK(evs_close(s));
        }
        CHECK(stat(seg, &after) == 0 && after.st_size == before.st_size);
        evs_options_free(ro);
    }
    memset(&info, 0xAB, sizeof info);
    info.struct_size = sizeof info;
    s = open_store(path, NULL, &info);
    if (s == NULL)
        return;
    CHECK(info.corruption_detected);
    CHECK_U64(info.bytes_truncated, sizeof torn);
    CHECK_U64(info.next_position, 5);
    CHECK_U64(info.valid_records, 5);
    CHECK_U64(next_position(s), 5);
    CHECK_OK(evs_append_event(s, "E", (const uint8_t *)"def", 3, &pos));
    CHECK_U64(pos, 5);
    CHECK_OK(evs_close(s));
    memset(&info, 0xAB, sizeof info);
    info.struct_size = sizeof info;
    s = open_store(path, NULL, &info);
    if (s == NULL)
        return;
    CHECK(!info.corruption_detected);
    CHECK_U64(info.bytes_truncated, 0);
    CHECK_U64(info.next_position, 6);
    CHECK_OK(evs_close(s));

    TU_SECTION("a zero-filled tail is the end of the log");
    if (!CHECK(segment_path(seg, sizeof seg, path, 0)))
        return;
    CHECK(append_bytes(seg, zeros, sizeof zeros));
    memset(&info, 0xAB, sizeof info);
    info.struct_size = sizeof info;
    s = open_store(path, NULL, &info);
    if (s == NULL)
        return;
    CHECK_U64(info.next_position, 6);
    CHECK_U64(next_position(s), 6);
    {
        evs_cursor *c = NULL;
        evs_event e = EVS_STRUCT_INIT(evs_event);
        uint64_t n = 0;
        if (CHECK_OK(evs_read_all(s, 0, &c))) {
            while (evs_cursor_next(c, &e) == EVS_OK)
                n++;
            evs_cursor_free(c);
        }
        CHECK_U64(n, 6);
    }
    CHECK_OK(evs_append_event(s, "E", (const uint8_t *)"ghi", 3, &pos));
    CHECK_U64(pos, 6);
    CHECK_OK(evs_close(s));
    s = open_store(path, NULL, &info);
    if (s != NULL) {
        CHECK_U64(info.next_position, 7);
        CHECK_OK(evs_close(s));
    }
}

/* Damage in a segment that is not the last: EVS_ERR_CORRUPT, never silently dropped. */
static void test_damage_is_corruption(void)
{
    char path[2048], seg[2200];
    evs_store *s, *sentinel_store = (evs_store *)&s;
    FILE *f;
    int ch;

    TU_SECTION("damage before the tail is EVS_ERR_CORRUPT");
    store_path(path, sizeof path, "segments"); /* from test_small_segments: many segments */
    if (!CHECK(segment_path(seg, sizeof seg, path, 1)))
        return;
    f = fopen(seg, "r+b");
    if (!CHECK(f != NULL))
        return;
    /* flip a byte inside the first event's payload */
    CHECK(fseek(f, 5000, SEEK_SET) == 0);
    ch = fgetc(f);
    CHECK(ch != EOF);
    CHECK(fseek(f, 5000, SEEK_SET) == 0);
    fputc(ch ^ 0x5A, f);
    CHECK(fclose(f) == 0);
    s = sentinel_store;
    CHECK_STATUS(evs_open(path, NULL, &s, NULL), EVS_ERR_CORRUPT);
    CHECK(s == sentinel_store);
    /* and it did not "repair" the log by cutting it: still corrupt */
    CHECK_STATUS(evs_open(path, NULL, &s, NULL), EVS_ERR_CORRUPT);
    CHECK(s == sentinel_store);
}

static uint32_t crc32c(const uint8_t *p, size_t n)
{
    uint32_t c = 0xFFFFFFFFu;
    size_t i;
    int k;
    for (i = 0; i < n; i++) {
        c ^= p[i];
        for (k = 0; k < 8; k++)
            c = (c >> 1) ^ (0x82F63B78u & (0u - (c & 1u)));
    }
    return c ^ 0xFFFFFFFFu;
}

static size_t put_varint(uint8_t *out, uint64_t v)
{
    size_t n = 0;
    do {
        uint8_t b = (uint8_t)(v & 0x7F);
        v >>= 7;
        out[n++] = (uint8_t)(b | (v ? 0x80 : 0));
    } while (v);
    return n;
}

/* Appends one nori-wal record (key = id as u64 LE, value = the legacy JSON envelope). */
static int write_legacy_record(FILE *f, uint64_t id, const char *type, uint64_t secs,
                               const char *payload)
{
    char value[4096];
    uint8_t rec[4200];
    size_t n = 0, vlen, i;
    int len;
    uint32_t crc;
    len = snprintf(value, sizeof value,
                   "{\"event_id\":%" PRIu64 ",\"event_type\":\"%s\",\"timestamp\":%" PRIu64
                   ",\"payload\":[",
                   id, type, secs);
    for (i = 0; payload[i] != '\0'; i++)
        len += snprintf(value + len, sizeof value - (size_t)len, "%s%u", i ? "," : "",
                        (unsigned)(unsigned char)payload[i]);
    len += snprintf(value + len, sizeof value - (size_t)len, "]}");
    vlen = (size_t)len;
    n += put_varint(rec + n, 8);
    n += put_varint(rec + n, vlen);
    rec[n++] = 0; /* flags */
    for (i = 0; i < 8; i++)
        rec[n++] = (uint8_t)(id >> (8 * i));
    memcpy(rec + n, value, vlen);
    n += vlen;
    crc = crc32c(rec, n);
    for (i = 0; i < 4; i++)
        rec[n++] = (uint8_t)(crc >> (8 * i));
    return fwrite(rec, 1, n, f) == n;
}

static void test_legacy_store(void)
{
    char path[2048], events[2100], seg[2200];
    static const char opened[] = "{\"AccountOpened\":{\"account_id\":\"alice\",\"initial_balance\":1000}}";
    static const char deposited[] = "{\"MoneyDeposited\":{\"account_id\":\"alice\",\"amount\":500}}";
    static const uint8_t check_rec[] = {0x01, 0x02, 0x00, 0x01, 0x68, 0x69};
    evs_store *s;
    evs_recovery_info info = EVS_STRUCT_INIT(evs_recovery_info);
    evs_cursor *c = NULL;
    evs_event e = EVS_STRUCT_INIT(evs_event);
    evs_account a = EVS_STRUCT_INIT(evs_account);
    uint64_t pos;
    FILE *f;

    TU_SECTION("a store written by the reference nori-wal program opens as it is");
    /* the check values of nori-wal-format.md for this test's own CRC */
    CHECK_U64(crc32c((const uint8_t *)"123456789", 9), 0xE3069283u);
    CHECK_U64(crc32c(check_rec, sizeof check_rec), 0x6985f4a5u);

    store_path(path, sizeof path, "legacy");
    tu_join(events, sizeof events, path, "events");
    CHECK(mkdir(path, 0700) == 0);
    CHECK(mkdir(events, 0700) == 0);
    tu_join(seg, sizeof seg, events, "000000.wal");
    f = fopen(seg, "wb");
    if (!CHECK(f != NULL))
        return;
    CHECK(write_legacy_record(f, 0, "AccountOpened", 1700000000, opened));
    CHECK(write_legacy_record(f, 1, "MoneyDeposited", 1700000001, deposited));
    CHECK(write_legacy_record(f, 2, "Note", 1700000002, "hi"));
    CHECK(fclose(f) == 0);

    memset(&info, 0xAB, sizeof info);

    info.struct_size = sizeof info;
    s = open_store(path, NULL, &info);
    if (s == NULL)
        return;
    CHECK_U64(info.next_position, 3);
    CHECK_U64(info.valid_records, 3);
    CHECK(!info.corruption_detected);
    CHECK_U64(info.bytes_truncated, 0);
    if (CHECK_OK(evs_read_all(s, 0, &c))) {
        if (CHECK_OK(evs_cursor_next(c, &e))) {
            CHECK_U64(e.position, 0);
            CHECK_U64(e.timestamp_us, UINT64_C(1700000000) * 1000000u);
            CHECK_VIEW(e.event_type, e.event_type_len, "AccountOpened");
            CHECK_VIEW((const char *)e.payload, e.payload_len, opened);
            CHECK_U64(e.metadata_len, 0);
        }
        if (CHECK_OK(evs_cursor_next(c, &e))) {
            CHECK_U64(e.position, 1);
            CHECK_U64(e.timestamp_us, UINT64_C(1700000001) * 1000000u);
            CHECK_VIEW((const char *)e.payload, e.payload_len, deposited);
        }
        if (CHECK_OK(evs_cursor_next(c, &e))) {
            CHECK_U64(e.position, 2);
            CHECK_VIEW(e.event_type, e.event_type_len, "Note");
            CHECK_U64(e.stream_len, 0);
            CHECK_VIEW((const char *)e.payload, e.payload_len, "hi");
        }
        CHECK_STATUS(evs_cursor_next(c, &e), EVS_END);
        evs_cursor_free(c);
    }
    /* the legacy account events count (AccountOpened v1 is upcast to "USD") */
    memset(&a, 0, sizeof a);
    a.struct_size = sizeof a;
    if (CHECK_OK(evs_account_get(s, "alice", &a))) {
        CHECK_I64(a.balance, 1500);
        CHECK_STR(a.currency, "USD");
        CHECK_U64(a.version, 2);
        CHECK_U64(a.last_position, 1);
    }
    if (CHECK_OK(evs_account_get_at(s, "alice", UINT64_C(1700000000) * 1000000u + 500000u, &a)))
        CHECK_I64(a.balance, 1000);
    /* new events follow the legacy ones */
    CHECK_OK(evs_account_deposit(s, "alice", 1, &pos));
    CHECK_U64(pos, 3);
    CHECK_OK(evs_append_event(s, "Note", (const uint8_t *)"new", 3, &pos));
    CHECK_U64(pos, 4);
    CHECK_OK(evs_close(s));
    s = open_store(path, NULL, &info);
    if (s != NULL) {
        CHECK_U64(info.next_position, 5);
        memset(&a, 0, sizeof a);
        a.struct_size = sizeof a;
        if (CHECK_OK(evs_account_get(s, "alice", &a))) {
            CHECK_I64(a.balance, 1501);
            CHECK_U64(a.version, 3);
        }
        {
            uint64_t n = 0;
            c = NULL;
            if (CHECK_OK(evs_read_all(s, 0, &c))) {
                while (evs_cursor_next(c, &e) == EVS_OK) {
                    CHECK_U64(e.position, n);
                    n++;
                }
                evs_cursor_free(c);
            }
            CHECK_U64(n, 5);
        }
        CHECK_OK(evs_close(s));
    }
}

/* ------------------------------------------------------------------------ */
/* Other processes: the lock, and a writer killed mid-flight                */
/* ------------------------------------------------------------------------ */

static const char *g_self; /* argv[0]: this program, run again as a child */

static long count_fds(void)
{
    DIR *d = opendir("/proc/self/fd");
    struct dirent *e;
    long n = 0;
    if (d == NULL)
        return -1;
    while ((e = readdir(d)) != NULL)
        if (e->d_name[0] != '.')
            n++;
    closedir(d);
    return n;
}

static void test_no_fd_leak(void)
{
    char path[2048];
    long before, after;
    int i;
    uint64_t pos;

    TU_SECTION("opening and closing does not leak file descriptors");
    store_path(path, sizeof path, "fds");
    {
        evs_store *s = open_store(path, NULL, NULL); /* warm up the runtime */
        if (s == NULL)
            return;
        CHECK_OK(evs_append_event(s, "E", (const uint8_t *)"x", 1, &pos));
        CHECK_OK(evs_close(s));
    }
    before = count_fds();
    for (i = 0; i < 50; i++) {
        evs_store *s = open_store(path, NULL, NULL);
        evs_cursor *c = NULL;
        if (s == NULL)
            break;
        CHECK_OK(evs_append_event(s, "E", (const uint8_t *)"x", 1, &pos));
        if (CHECK_OK(evs_read_all(s, 0, &c)))
            evs_cursor_free(c);
        CHECK_OK(evs_close(s));
    }
    after = count_fds();
    if (!CHECK(after <= before))
        printf("    open file descriptors: %ld before 50 open/close rounds, %ld after\n", before,
               after);
}

/* read() that gives up after timeout_ms without data (a child that hangs must not hang us) */
static ssize_t read_timeout(int fd, void *buf, size_t n, int timeout_ms)
{
    struct pollfd p;
    p.fd = fd;
    p.events = POLLIN;
    p.revents = 0;
    if (poll(&p, 1, timeout_ms) <= 0)
        return -1;
    return read(fd, buf, n);
}

/* Child modes, run as `test_api --child MODE STORE WFD RFD`. */
static int child_main(int argc, char **argv)
{
    const char *mode, *path;
    int wfd, rfd;
    evs_store *s = NULL;
    evs_status st;
    if (argc != 6)
        return 2;
    mode = argv[2];
    path = argv[3];
    wfd = atoi(argv[4]);
    rfd = atoi(argv[5]);
    if (strcmp(mode, "hold") == 0) {
        /* open the store, say so, and hold it until the parent closes its pipe */
        char b;
        st = evs_open(path, NULL, &s, NULL);
        b = st == EVS_OK ? 'y' : 'n';
        if (write(wfd, &b, 1) != 1)
            return 3;
        while (read(rfd, &b, 1) > 0) {
        }
        if (evs_close(s) != EVS_OK)
            return 5;
        return st == EVS_OK ? 0 : 4;
    }
    if (strncmp(mode, "crash-", 6) == 0) {
        /* append batches of 3 and report each acknowledged batch until killed */
        evs_event_input in[3];
        { /* every entry starts with its size */
            size_t i_;
            for (i_ = 0; i_ < sizeof in / sizeof in[0]; i_++)
                in[i_] = (evs_event_input)EVS_STRUCT_INIT(evs_event_input);
        }
        uint64_t first;
        int64_t version = -1;
        long k;
        evs_options *o = evs_options_new();
        if (strcmp(mode, "crash-ALWAYS") == 0)
            st = evs_options_set_fsync(o, EVS_FSYNC_ALWAYS, 0);
        else if (strcmp(mode, "crash-OS") == 0)
            st = evs_options_set_fsync(o, EVS_FSYNC_OS, 0);
        else
            st = evs_options_set_fsync(o, EVS_FSYNC_BATCH, 5);
        if (st != EVS_OK)
            return 4;
        st = evs_open(path, o, &s, NULL);
        evs_options_free(o);
        if (st != EVS_OK)
            return 4;
        for (k = 0;; k++) {
            int j;
            char payloads[3][32];
            for (j = 0; j < 3; j++) {
                snprintf(payloads[j], sizeof payloads[j], "batch-%ld-%d", k, j);
                in[j].event_type = "Crash";
                in[j].payload = (const uint8_t *)payloads[j];
                in[j].payload_len = strlen(payloads[j]);
                in[j].metadata = NULL;
                in[j].metadata_len = 0;
                in[j].schema_version = 1;
            }
            st = evs_append(s, "crash", version < 0 ? EVS_EXPECT_NO_STREAM : version, in, 3,
                            &first, NULL);
            if (st != EVS_OK)
                return 5;
            version += 3;
            if (write(wfd, &first, sizeof first) != (ssize_t)sizeof first)
                return 6;
        }
    }
    return 2;
}

/* Runs this program again as a child; close_in_child: the parent's pipe ends. */
static pid_t spawn_child(const char *mode, const char *path, int wfd, int rfd,
                         int close_a, int close_b)
{
    pid_t pid = fork();
    if (pid == 0) {
        char w[16], r[16];
        char *args[7];
        if (close_a >= 0)
            close(close_a);
        if (close_b >= 0)
            close(close_b);
        snprintf(w, sizeof w, "%d", wfd);
        snprintf(r, sizeof r, "%d", rfd);
        args[0] = (char *)g_self;
        args[1] = (char *)"--child";
        args[2] = (char *)mode;
        args[3] = (char *)path;
        args[4] = w;
        args[5] = r;
        args[6] = NULL;
        execv(g_self, args);
        _exit(127);
    }
    return pid;
}

static void test_other_process_lock(void)
{
    char path[2048];
    int up[2], down[2];
    pid_t pid;
    char b = 0;
    int status = 0;
    evs_store *s, *sentinel_store = (evs_store *)&s;
    evs_options *ro;

    TU_SECTION("another process holding the store: EVS_ERR_LOCKED");
    store_path(path, sizeof path, "other-process");
    if (!CHECK(pipe(up) == 0 && pipe(down) == 0))
        return;
    /* the child writes on up[1] and reads down[0] */
    pid = spawn_child("hold", path, up[1], down[0], up[0], down[1]);
    close(up[1]);
    close(down[0]);
    if (!CHECK(pid > 0))
        return;
    CHECK(read_timeout(up[0], &b, 1, 30000) == 1);
    CHECK(b == 'y');
    s = sentinel_store;
    CHECK_STATUS(evs_open(path, NULL, &s, NULL), EVS_ERR_LOCKED);
    CHECK(s == sentinel_store);
    /* a read-only open takes no lock */
    ro = evs_options_new();
    CHECK_OK(evs_options_set_read_only(ro, true));
    s = NULL;
    if (CHECK_OK(evs_open(path, ro, &s, NULL)))
        CHECK_OK(evs_close(s));
    evs_options_free(ro);
    close(down[1]); /* the child closes its store and exits */
    CHECK(waitpid(pid, &status, 0) == pid);
    CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 0);
    close(up[0]);
    /* now it is free */
    s = NULL;
    if (CHECK_OK(evs_open(path, NULL, &s, NULL)))
        CHECK_OK(evs_close(s));
}

static void test_killed_writer(const char *policy)
{
    char path[2048], mode[64];
    int p[2];
    pid_t pid;
    uint64_t first, last_acked = UINT64_MAX, n = 0;
    long acked = 0;
    int status = 0;
    evs_store *s;
    evs_recovery_info info = EVS_STRUCT_INIT(evs_recovery_info);
    evs_cursor *c = NULL;
    evs_event e = EVS_STRUCT_INIT(evs_event);
    int64_t v = -5;

    snprintf(mode, sizeof mode, "crash-%s", policy);
    printf("-- a writer (EVS_FSYNC_%s) killed with SIGKILL: every acknowledged batch is "
           "there, whole\n", policy);
    snprintf(mode, sizeof mode, "killed-%s", policy);
    store_path(path, sizeof path, mode);
    snprintf(mode, sizeof mode, "crash-%s", policy);
    if (!CHECK(pipe(p) == 0))
        return;
    pid = spawn_child(mode, path, p[1], -1, p[0], -1);
    close(p[1]);
    if (!CHECK(pid > 0)) {
        close(p[0]);
        return;
    }
    while (acked < 300 &&
           read_timeout(p[0], &first, sizeof first, 30000) == (ssize_t)sizeof first) {
        last_acked = first;
        acked++;
    }
    CHECK(kill(pid, SIGKILL) == 0);
    CHECK(waitpid(pid, &status, 0) == pid);
    CHECK(WIFSIGNALED(status));
    /* drain what it acknowledged before it died */
    while (read_timeout(p[0], &first, sizeof first, 1000) == (ssize_t)sizeof first) {
        last_acked = first;
        acked++;
    }
    close(p[0]);
    CHECK(acked >= 300);

    memset(&info, 0xAB, sizeof info);

    info.struct_size = sizeof info;
    s = open_store(path, NULL, &info);
    if (s == NULL)
        return;
    /* every acknowledged batch survived a process crash (its bytes were written to the OS) */
    if (!CHECK(info.next_position >= last_acked + 3))
        printf("    EVS_FSYNC_%s: %ld batches acknowledged, the last at position %" PRIu64
               "; the reopened log has %" PRIu64 " events\n",
               policy, acked, last_acked, info.next_position);
    /* batches are atomic: the stream holds whole batches of 3 */
    CHECK_OK(evs_stream_version(s, "crash", &v));
    CHECK((v + 1) % 3 == 0);
    CHECK_U64((uint64_t)(v + 1), info.next_position);
    if (CHECK_OK(evs_read_all(s, 0, &c))) {
        long bad = 0;
        while (evs_cursor_next(c, &e) == EVS_OK) {
            char want[32];
            snprintf(want, sizeof want, "batch-%ld-%d", (long)(n / 3), (int)(n % 3));
            if (e.position != n || e.payload_len != strlen(want) ||
                memcmp(e.payload, want, e.payload_len) != 0)
                bad++;
            n++;
        }
        CHECK_I64(bad, 0);
        evs_cursor_free(c);
    }
    CHECK_U64(n, info.next_position);
    /* and the store goes on */
    CHECK_OK(evs_append_event(s, "After", (const uint8_t *)"x", 1, &first));
    CHECK_U64(first, n);
    CHECK_OK(evs_close(s));
}

int main(int argc, char **argv)
{
    if (argc > 1 && strcmp(argv[1], "--child") == 0)
        return child_main(argc, argv);
    g_self = argv[0];
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
    if (!tu_skip_on_pg("many segments", "no segment files"))
        test_small_segments();
    test_too_large();
    test_stream_cursor_tails();
    test_cursor_outlives_store();
    test_read_only_beside_writer(true);
    test_read_only_beside_writer(false);
    if (!tu_skip_on_pg("torn and zeroed tails, damaged segments, a legacy store folder",
                       "segment files written and damaged by the test")) {
        test_torn_and_zero_tails();
        test_damage_is_corruption(); /* after test_small_segments */
        test_legacy_store();
    }
    test_no_fd_leak();
    if (!tu_skip_on_pg("EVS_ERR_LOCKED while another process writes",
                       "any number of processes may write to one PostgreSQL schema"))
        test_other_process_lock();
    test_killed_writer("ALWAYS");
    test_killed_writer("BATCH");
    test_killed_writer("OS");

    tu_cleanup_dir(g_root);
    return tu_finish();
}
