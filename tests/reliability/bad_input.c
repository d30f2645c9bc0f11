/*
 * bad_input.c: every exported function of evstore.h called with each kind of bad argument,
 * from one table: NULL for each pointer, invalid UTF-8, embedded NUL bytes where lengths
 * exist, empty strings, oversize names and values, negative numbers, INT64_MIN/MAX,
 * UINT64_MAX / SIZE_MAX, impossible counts, a read-only handle, and handles that outlive
 * their store's close (where that is detectable: a closed store's own handle is freed
 * memory, so it is not).
 *
 *   bad_input                 runs the table (run it under valgrind too)
 *   bad_input --case NAME     runs one case in a fresh process (used for the cases that
 *                             may crash the process; the parent reports a signal as a
 *                             failure instead of dying)
 *
 * For each case: the status must be the documented one; an error must come with a
 * non-empty evs_last_error_message() (naming the argument where the table says so); a
 * failed call must change nothing (the store's next position stays). Then the store must
 * still be consistent (rel_check_store) and hold exactly the events of the calls that
 * succeeded. Prints `FIGURE bad_inputs N` and `N passed, N failed`.
 */
#include "rel_common.h"

/* "MAJOR.MINOR.PATCH" from the header's macros: what evs_version() must say. */
#define VERSION_STR(x) #x
#define VERSION_XSTR(x) VERSION_STR(x)
#define VERSION_TEXT                                                                   \
    VERSION_XSTR(EVS_VERSION_MAJOR) "." VERSION_XSTR(EVS_VERSION_MINOR) "." VERSION_XSTR( \
        EVS_VERSION_PATCH)

#include <fcntl.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/types.h>
#include <sys/wait.h>

#define BAD_UTF8 "\xff\xfe\xfd"
#define MiB ((size_t)1024 * 1024)
#define NOALT 12345       /* no alternative status */
#define ANY_ERROR (-1000) /* any error status (with a message) */
#define ANY_STATUS (-1001) /* anything, as long as the process survives */

/* ---- the fixture ---- */

static char g_root[1024];
static char g_dir[1200];        /* the store */
static char g_file[1200];       /* a regular file */
static char g_missing[1200];    /* a path whose parent does not exist */
static char g_absent[1200];     /* a store that does not exist */
static char g_long_path[6000];  /* a path with a 5000-byte component */
static char g_other[1200];      /* a second store, for handles outliving its close */
static evs_store *g_s;          /* read-write */
static evs_store *g_ro;         /* read-only view of the same store */
static evs_options *g_o;        /* options to set */
static evs_options *g_ro_opts;  /* read_only = true */
static char *g_type_1024, *g_type_1025, *g_id_256, *g_id_257;
static uint8_t *g_big;          /* 16 MiB + 1 bytes */
static evs_event_input g_ev1[1];
static evs_event_input g_big_batch[5];

/* Outputs of the cases (freed after each case). */
static evs_store *g_tmp;
static evs_cursor *g_cur;
static evs_subscription *g_sub;
static char *g_text;
static uint64_t g_u64;
static int64_t g_i64;
static evs_account g_acct;
static evs_stats g_stats;
static evs_event g_event;
static evs_recovery_info g_info;

static int32_t on_event(void *ud, const evs_event *e)
{
    (void)ud;
    (void)e;
    return 0;
}

static char *repeat(char c, size_t n)
{
    char *s = (char *)rel_xmalloc(n + 1);
    memset(s, c, n);
    s[n] = '\0';
    return s;
}

static evs_event_input ev(const char *type, const void *payload, size_t len, const void *meta,
                          size_t meta_len)
{
    evs_event_input e = EVS_STRUCT_INIT(evs_event_input);
    e.event_type = type;
    e.payload = (const uint8_t *)payload;
    e.payload_len = len;
    e.metadata = (const uint8_t *)meta;
    e.metadata_len = meta_len;
    e.schema_version = 1;
    return e;
}

/* ---- cases that need more than one expression ---- */

static evs_status append_events(const char *stream, int64_t expected, evs_event_input *e,
                                size_t n)
{
    return evs_append(g_s, stream, expected, e, n, &g_u64, NULL);
}

static evs_status append_one(evs_event_input e)
{
    return evs_append(g_s, "s1", EVS_EXPECT_ANY, &e, 1, NULL, NULL);
}

static evs_status append_schema_max(void)
{
    evs_event_input e = ev("T", "x", 1, NULL, 0);
    e.schema_version = UINT32_MAX;
    return evs_append(g_s, "s1", EVS_EXPECT_ANY, &e, 1, NULL, NULL);
}

static evs_status append_second_bad(const char *type2)
{
    evs_event_input e[2];
    { /* every entry starts with its size */
        size_t i_;
        for (i_ = 0; i_ < sizeof e / sizeof e[0]; i_++)
            e[i_] = (evs_event_input)EVS_STRUCT_INIT(evs_event_input);
    }
    e[0] = ev("Good", "x", 1, NULL, 0);
    e[1] = ev(type2, "y", 1, NULL, 0);
    return evs_append(g_s, "s1", EVS_EXPECT_ANY, e, 2, NULL, NULL);
}

/* A payload with NUL bytes inside, stored and read back byte for byte. */
static evs_status embedded_nul_payload(void)
{
    static const uint8_t p[] = {'a', 0, 'b', 0, 0, 'c', 0};
    static const uint8_t m[] = {0, 0, 'm', 0};
    evs_event_input e = ev("Nul\xc3\xa9", p, sizeof p, m, sizeof m);
    uint64_t pos = 0;
    evs_cursor *c = NULL;
    evs_event got = EVS_STRUCT_INIT(evs_event);
    evs_status st = evs_append(g_s, "nul-stream", EVS_EXPECT_ANY, &e, 1, &pos, NULL);
    if (st != EVS_OK)
        return st;
    st = evs_read_all(g_s, pos, &c);
    if (st != EVS_OK)
        return st;
    st = evs_cursor_next(c, &got);
    if (st == EVS_OK &&
        (got.payload_len != sizeof p || memcmp(got.payload, p, sizeof p) != 0 ||
         got.metadata_len != sizeof m || memcmp(got.metadata, m, sizeof m) != 0 ||
         got.event_type_len != 5 || memcmp(got.event_type, "Nul\xc3\xa9", 5) != 0))
        st = -5000; /* a distinct code: the bytes did not round-trip */
    evs_cursor_free(c);
    return st;
}

static evs_status append_event_nul_payload(void)
{
    static const uint8_t p[] = {0, 0, 0};
    return evs_append_event(g_s, "T", p, sizeof p, &g_u64);
}

static evs_status read_all_at_end(void)
{
    uint64_t next = 0;
    evs_status st;
    evs_position_at(g_s, UINT64_MAX, &next);
    st = evs_read_all(g_s, next, &g_cur);
    if (st != EVS_OK)
        return st;
    return evs_cursor_next(g_cur, &g_event); /* EVS_END */
}

static evs_status read_all_past_end(void)
{
    uint64_t next = 0;
    evs_position_at(g_s, UINT64_MAX, &next);
    return evs_read_all(g_s, next + 1, &g_cur);
}

static evs_status cursor_next_null_out(void)
{
    evs_status st = evs_read_all(g_s, 0, &g_cur);
    if (st != EVS_OK)
        return st;
    return evs_cursor_next(g_cur, NULL);
}

static evs_status stream_version_unknown(void)
{
    evs_status st;
    g_i64 = 12345;
    st = evs_stream_version(g_s, "no-such-stream", &g_i64);
    if (st == EVS_OK && g_i64 != -1)
        return -5001;
    return st;
}

/* A store opened, a cursor and a subscription taken, the store closed: the handles must
 * still be safe to use (cursors and subscriptions hold the store's insides) and free. */
static evs_status cursor_after_close(void)
{
    evs_store *s = NULL;
    evs_cursor *c = NULL;
    evs_event e = EVS_STRUCT_INIT(evs_event);
    evs_status st = evs_open(g_other, NULL, &s, NULL);
    uint64_t p;
    if (st != EVS_OK)
        return st;
    evs_append_event(s, "T", (const uint8_t *)"x", 1, &p);
    st = evs_read_all(s, 0, &c);
    if (st != EVS_OK) {
        evs_close(s);
        return st;
    }
    evs_close(s);
    st = evs_cursor_next(c, &e);
    evs_cursor_free(c);
    return st;
}

static evs_status backward_cursor_after_close(void)
{
    evs_store *s = NULL;
    evs_cursor *c = NULL;
    evs_event e = EVS_STRUCT_INIT(evs_event);
    evs_status st = evs_open(g_other, NULL, &s, NULL);
    if (st != EVS_OK)
        return st;
    st = evs_read_all_backward(s, UINT64_MAX, &c);
    evs_close(s);
    if (st != EVS_OK)
        return st;
    st = evs_cursor_next(c, &e);
    evs_cursor_free(c);
    return st;
}

static evs_status subscription_after_close(void)
{
    evs_store *s = NULL;
    evs_subscription *sub = NULL;
    evs_status st = evs_open(g_other, NULL, &s, NULL);
    if (st != EVS_OK)
        return st;
    st = evs_subscribe(s, 0, on_event, NULL, &sub);
    evs_close(s);
    if (st != EVS_OK)
        return st;
    return evs_subscription_close(sub);
}

static evs_status open_read_only_missing(void)
{
    return evs_open(g_absent, g_ro_opts, &g_tmp, NULL);
}

static evs_status open_second_writer(void) { return evs_open(g_dir, NULL, &g_tmp, &g_info); }

/* evs_compact with an evs_compact_info whose struct_size was never set. */
static evs_status compact_size0(void)
{
    evs_compact_info info;
    memset(&info, 0, sizeof info);
    return evs_compact(g_s, &info);
}

/* evs_compact with a struct_size past any real size (garbage). */
static evs_status compact_size_garbage(void)
{
    evs_compact_info info = EVS_STRUCT_INIT(evs_compact_info);
    info.struct_size = (size_t)1 << 40;
    return evs_compact(g_s, &info);
}

/* evs_event_input arrays that end exactly at an inaccessible page: reading past the
 * count the caller gave would fault instead of reading garbage. */
static void *guarded(size_t size)
{
    long pg = sysconf(_SC_PAGESIZE);
    int fd = open("/dev/zero", O_RDWR);
    char *m;
    if (fd < 0)
        return NULL;
    m = (char *)mmap(NULL, (size_t)pg * 2, PROT_READ | PROT_WRITE, MAP_PRIVATE, fd, 0);
    close(fd);
    if (m == (char *)MAP_FAILED)
        return NULL;
    mprotect(m + pg, (size_t)pg, PROT_NONE);
    return m + pg - size;
}

static evs_status append_count(size_t count)
{
    evs_event_input *e = (evs_event_input *)guarded(sizeof(evs_event_input));
    if (e == NULL)
        return -5002;
    *e = ev("T", "x", 1, NULL, 0);
    return evs_append(g_s, "s1", EVS_EXPECT_ANY, e, count, NULL, NULL);
}

static evs_status subscribe_types_count(size_t count)
{
    const char **t = (const char **)guarded(sizeof(const char *));
    if (t == NULL)
        return -5002;
    t[0] = "T";
    return evs_subscribe_filtered(g_s, 0, NULL, t, count, on_event, NULL, &g_sub);
}

static evs_status subscribe_types(const char *t0, const char *t1, size_t n)
{
    const char *t[2];
    t[0] = t0;
    t[1] = t1;
    return evs_subscribe_filtered(g_s, 0, NULL, t, n, on_event, NULL, &g_sub);
}

/* ---- the table ----
 * X(id, expected status, alternative status or NOALT, substring of the message or NULL,
 *   expression, isolate in a child process) */
#define BAD_CASES(X)                                                                          \
    /* options */                                                                             \
    X(opt_fsync_null, EVS_ERR_INVALID_ARGUMENT, NOALT, "options", evs_options_set_fsync(NULL, 0, 5), 0) \
    X(opt_fsync_neg, EVS_ERR_INVALID_ARGUMENT, NOALT, "-1", evs_options_set_fsync(g_o, -1, 5), 0) \
    X(opt_fsync_3, EVS_ERR_INVALID_ARGUMENT, NOALT, "3", evs_options_set_fsync(g_o, 3, 5), 0) \
    X(opt_fsync_min, EVS_ERR_INVALID_ARGUMENT, NOALT, NULL, evs_options_set_fsync(g_o, INT32_MIN, 5), 0) \
    X(opt_fsync_max, EVS_ERR_INVALID_ARGUMENT, NOALT, NULL, evs_options_set_fsync(g_o, INT32_MAX, 5), 0) \
    X(opt_window_0, EVS_ERR_INVALID_ARGUMENT, NOALT, NULL, evs_options_set_fsync(g_o, EVS_FSYNC_BATCH, 0), 0) \
    X(opt_window_10001, EVS_ERR_INVALID_ARGUMENT, NOALT, NULL, evs_options_set_fsync(g_o, EVS_FSYNC_BATCH, 10001), 0) \
    X(opt_window_u32max, EVS_ERR_INVALID_ARGUMENT, NOALT, NULL, evs_options_set_fsync(g_o, EVS_FSYNC_BATCH, UINT32_MAX), 0) \
    X(opt_window_ignored_always, EVS_OK, NOALT, NULL, evs_options_set_fsync(g_o, EVS_FSYNC_ALWAYS, 0), 0) \
    X(opt_window_ignored_os, EVS_OK, NOALT, NULL, evs_options_set_fsync(g_o, EVS_FSYNC_OS, UINT32_MAX), 0) \
    X(opt_seg_null, EVS_ERR_INVALID_ARGUMENT, NOALT, "options", evs_options_set_max_segment_size(NULL, 1 << 20), 0) \
    X(opt_seg_0, EVS_ERR_INVALID_ARGUMENT, NOALT, NULL, evs_options_set_max_segment_size(g_o, 0), 0) \
    X(opt_seg_64k_minus_1, EVS_ERR_INVALID_ARGUMENT, NOALT, NULL, evs_options_set_max_segment_size(g_o, 65535), 0) \
    X(opt_seg_64k, EVS_OK, NOALT, NULL, evs_options_set_max_segment_size(g_o, 65536), 0) \
    X(opt_seg_1t, EVS_OK, NOALT, NULL, evs_options_set_max_segment_size(g_o, UINT64_C(1) << 40), 0) \
    X(opt_seg_1t_plus_1, EVS_ERR_INVALID_ARGUMENT, NOALT, NULL, evs_options_set_max_segment_size(g_o, (UINT64_C(1) << 40) + 1), 0) \
    X(opt_seg_u64max, EVS_ERR_INVALID_ARGUMENT, NOALT, NULL, evs_options_set_max_segment_size(g_o, UINT64_MAX), 0) \
    X(opt_prealloc_null, EVS_ERR_INVALID_ARGUMENT, NOALT, "options", evs_options_set_preallocate(NULL, true), 0) \
    X(opt_read_only_null, EVS_ERR_INVALID_ARGUMENT, NOALT, "options", evs_options_set_read_only(NULL, true), 0) \
    X(opt_snap_null, EVS_ERR_INVALID_ARGUMENT, NOALT, "options", evs_options_set_snapshot_every(NULL, 1), 0) \
    X(opt_snap_u64max, EVS_OK, NOALT, NULL, evs_options_set_snapshot_every(g_o, UINT64_MAX), 0) \
    X(opt_compaction_null, EVS_ERR_INVALID_ARGUMENT, NOALT, "options", evs_options_set_compaction(NULL, 0, 25), 0) \
    X(opt_compaction_101, EVS_ERR_INVALID_ARGUMENT, NOALT, "101", evs_options_set_compaction(g_o, 1 << 20, 101), 0) \
    X(opt_compaction_u32max, EVS_ERR_INVALID_ARGUMENT, NOALT, "4294967295", evs_options_set_compaction(g_o, 0, UINT32_MAX), 0) \
    X(opt_compaction_100, EVS_OK, NOALT, NULL, evs_options_set_compaction(g_o, UINT64_MAX, 100), 0) \
    X(opt_compaction_off, EVS_OK, NOALT, NULL, evs_options_set_compaction(g_o, 0, 0), 0) \
    X(opt_free_null, EVS_OK, NOALT, NULL, (evs_options_free(NULL), EVS_OK), 0) \
    /* open, sync, close */                                                                   \
    X(open_null_path, EVS_ERR_INVALID_ARGUMENT, NOALT, "path", evs_open(NULL, NULL, &g_tmp, NULL), 0) \
    X(open_null_out, EVS_ERR_INVALID_ARGUMENT, NOALT, "out_store", evs_open(g_dir, NULL, NULL, NULL), 0) \
    X(open_bad_utf8, EVS_ERR_INVALID_ARGUMENT, NOALT, "UTF-8", evs_open(BAD_UTF8, NULL, &g_tmp, NULL), 0) \
    X(open_empty, EVS_ERR_INVALID_ARGUMENT, NOALT, NULL, evs_open("", NULL, &g_tmp, NULL), 0) \
    X(open_regular_file, EVS_ERR_IO, NOALT, NULL, evs_open(g_file, NULL, &g_tmp, NULL), 0) \
    X(open_missing_parent, EVS_ERR_IO, NOALT, NULL, evs_open(g_missing, NULL, &g_tmp, NULL), 0) \
    X(open_long_name, EVS_ERR_IO, NOALT, NULL, evs_open(g_long_path, NULL, &g_tmp, NULL), 0) \
    X(open_ro_missing, EVS_ERR_NOT_FOUND, NOALT, NULL, open_read_only_missing(), 0) \
    X(open_second_writer, EVS_ERR_LOCKED, NOALT, NULL, open_second_writer(), 0) \
    X(sync_null, EVS_ERR_INVALID_ARGUMENT, NOALT, "store", evs_sync(NULL), 0) \
    X(sync_read_only, EVS_OK, NOALT, NULL, evs_sync(g_ro), 0) \
    X(close_null, EVS_OK, NOALT, NULL, evs_close(NULL), 0) \
    /* evs_append_event */                                                                    \
    X(ae_null_store, EVS_ERR_INVALID_ARGUMENT, NOALT, "store", evs_append_event(NULL, "T", (const uint8_t *)"x", 1, &g_u64), 0) \
    X(ae_null_type, EVS_ERR_INVALID_ARGUMENT, NOALT, "event_type", evs_append_event(g_s, NULL, (const uint8_t *)"x", 1, &g_u64), 0) \
    X(ae_bad_utf8_type, EVS_ERR_INVALID_ARGUMENT, NOALT, "UTF-8", evs_append_event(g_s, BAD_UTF8, (const uint8_t *)"x", 1, &g_u64), 0) \
    X(ae_empty_type, EVS_ERR_INVALID_ARGUMENT, NOALT, NULL, evs_append_event(g_s, "", (const uint8_t *)"x", 1, &g_u64), 0) \
    X(ae_type_1025, EVS_ERR_INVALID_ARGUMENT, NOALT, "1024", evs_append_event(g_s, g_type_1025, (const uint8_t *)"x", 1, &g_u64), 0) \
    X(ae_type_1024, EVS_OK, NOALT, NULL, evs_append_event(g_s, g_type_1024, (const uint8_t *)"x", 1, &g_u64), 0) \
    X(ae_null_payload_len, EVS_ERR_INVALID_ARGUMENT, NOALT, "payload", evs_append_event(g_s, "T", NULL, 5, &g_u64), 0) \
    X(ae_null_payload_0, EVS_OK, NOALT, NULL, evs_append_event(g_s, "T", NULL, 0, &g_u64), 0) \
    X(ae_nul_payload, EVS_OK, NOALT, NULL, append_event_nul_payload(), 0) \
    X(ae_null_out, EVS_OK, NOALT, NULL, evs_append_event(g_s, "T", (const uint8_t *)"x", 1, NULL), 0) \
    X(ae_16mib_plus_1, EVS_ERR_TOO_LARGE, NOALT, NULL, evs_append_event(g_s, "T", g_big, 16 * MiB + 1, &g_u64), 0) \
    X(ae_16mib, EVS_OK, NOALT, NULL, evs_append_event(g_s, "T", g_big, 16 * MiB, &g_u64), 0) \
    X(ae_len_size_max, EVS_ERR_INVALID_ARGUMENT, EVS_ERR_TOO_LARGE, NULL, evs_append_event(g_s, "T", g_big, SIZE_MAX, &g_u64), 0) \
    X(ae_read_only, EVS_ERR_READ_ONLY, NOALT, NULL, evs_append_event(g_ro, "T", (const uint8_t *)"x", 1, &g_u64), 0) \
    /* evs_append */                                                                          \
    X(ap_null_store, EVS_ERR_INVALID_ARGUMENT, NOALT, "store", evs_append(NULL, "s1", EVS_EXPECT_ANY, g_ev1, 1, NULL, NULL), 0) \
    X(ap_null_stream, EVS_ERR_INVALID_ARGUMENT, NOALT, "stream", evs_append(g_s, NULL, EVS_EXPECT_ANY, g_ev1, 1, NULL, NULL), 0) \
    X(ap_bad_utf8_stream, EVS_ERR_INVALID_ARGUMENT, NOALT, "UTF-8", evs_append(g_s, BAD_UTF8, EVS_EXPECT_ANY, g_ev1, 1, NULL, NULL), 0) \
    X(ap_empty_stream, EVS_ERR_INVALID_ARGUMENT, NOALT, NULL, evs_append(g_s, "", EVS_EXPECT_ANY, g_ev1, 1, NULL, NULL), 0) \
    X(ap_stream_1025, EVS_ERR_INVALID_ARGUMENT, NOALT, "1024", evs_append(g_s, g_type_1025, EVS_EXPECT_ANY, g_ev1, 1, NULL, NULL), 0) \
    X(ap_stream_1024, EVS_OK, NOALT, NULL, evs_append(g_s, g_type_1024, EVS_EXPECT_ANY, g_ev1, 1, NULL, NULL), 0) \
    X(ap_null_events, EVS_ERR_INVALID_ARGUMENT, NOALT, "events", evs_append(g_s, "s1", EVS_EXPECT_ANY, NULL, 1, NULL, NULL), 0) \
    X(ap_count_0, EVS_ERR_INVALID_ARGUMENT, NOALT, "count", evs_append(g_s, "s1", EVS_EXPECT_ANY, g_ev1, 0, NULL, NULL), 0) \
    X(ap_expected_minus_4, EVS_ERR_INVALID_ARGUMENT, NOALT, "-4", evs_append(g_s, "s1", -4, g_ev1, 1, NULL, NULL), 0) \
    X(ap_expected_int64_min, EVS_ERR_INVALID_ARGUMENT, NOALT, NULL, evs_append(g_s, "s1", INT64_MIN, g_ev1, 1, NULL, NULL), 0) \
    X(ap_expected_int64_max, EVS_ERR_WRONG_EXPECTED_VERSION, NOALT, NULL, evs_append(g_s, "s1", INT64_MAX, g_ev1, 1, NULL, NULL), 0) \
    X(ap_expected_no_stream_exists, EVS_ERR_WRONG_EXPECTED_VERSION, NOALT, "version", evs_append(g_s, "s1", EVS_EXPECT_NO_STREAM, g_ev1, 1, NULL, NULL), 0) \
    X(ap_expected_exists_missing, EVS_ERR_WRONG_EXPECTED_VERSION, NOALT, NULL, evs_append(g_s, "nope", EVS_EXPECT_EXISTS, g_ev1, 1, NULL, NULL), 0) \
    X(ap_type_null, EVS_ERR_INVALID_ARGUMENT, NOALT, "event_type", append_one(ev(NULL, "x", 1, NULL, 0)), 0) \
    X(ap_type_empty, EVS_ERR_INVALID_ARGUMENT, NOALT, NULL, append_one(ev("", "x", 1, NULL, 0)), 0) \
    X(ap_type_bad_utf8_second, EVS_ERR_INVALID_ARGUMENT, NOALT, "events[1]", append_second_bad(BAD_UTF8), 0) \
    X(ap_type_null_second, EVS_ERR_INVALID_ARGUMENT, NOALT, "events[1]", append_second_bad(NULL), 0) \
    X(ap_type_1025_second, EVS_ERR_INVALID_ARGUMENT, NOALT, NULL, append_second_bad(g_type_1025), 0) \
    X(ap_payload_null_len, EVS_ERR_INVALID_ARGUMENT, NOALT, "payload", append_one(ev("T", NULL, 3, NULL, 0)), 0) \
    X(ap_metadata_null_len, EVS_ERR_INVALID_ARGUMENT, NOALT, "metadata", append_one(ev("T", "x", 1, NULL, 3)), 0) \
    X(ap_payload_size_max, EVS_ERR_INVALID_ARGUMENT, EVS_ERR_TOO_LARGE, NULL, append_one(ev("T", g_big, SIZE_MAX, NULL, 0)), 0) \
    X(ap_metadata_size_max, EVS_ERR_INVALID_ARGUMENT, EVS_ERR_TOO_LARGE, NULL, append_one(ev("T", "x", 1, g_big, SIZE_MAX)), 0) \
    X(ap_event_16mib_plus_1, EVS_ERR_TOO_LARGE, NOALT, NULL, append_one(ev("T", g_big, 16 * MiB + 1, NULL, 0)), 0) \
    X(ap_event_16mib_and_meta, EVS_ERR_TOO_LARGE, NOALT, NULL, append_one(ev("T", g_big, 16 * MiB, "m", 1)), 0) \
    X(ap_batch_80mib, EVS_ERR_TOO_LARGE, NOALT, NULL, append_events("s1", EVS_EXPECT_ANY, g_big_batch, 5), 0) \
    X(ap_embedded_nul_round_trip, EVS_OK, NOALT, NULL, embedded_nul_payload(), 0) \
    X(ap_schema_u32max, EVS_OK, NOALT, NULL, append_schema_max(), 0) \
    X(ap_read_only, EVS_ERR_READ_ONLY, NOALT, NULL, evs_append(g_ro, "s1", EVS_EXPECT_ANY, g_ev1, 1, NULL, NULL), 0) \
    X(ap_count_size_max, EVS_ERR_INVALID_ARGUMENT, EVS_ERR_TOO_LARGE, NULL, append_count(SIZE_MAX), 1) \
    X(ap_count_overflowing, EVS_ERR_INVALID_ARGUMENT, EVS_ERR_TOO_LARGE, NULL, append_count(SIZE_MAX / sizeof(evs_event_input) + 2), 1) \
    /* reading */                                                                             \
    X(ra_null_store, EVS_ERR_INVALID_ARGUMENT, NOALT, "store", evs_read_all(NULL, 0, &g_cur), 0) \
    X(ra_null_out, EVS_ERR_INVALID_ARGUMENT, NOALT, "out", evs_read_all(g_s, 0, NULL), 0) \
    X(ra_u64max, EVS_ERR_NOT_FOUND, NOALT, NULL, evs_read_all(g_s, UINT64_MAX, &g_cur), 0) \
    X(ra_past_end, EVS_ERR_NOT_FOUND, NOALT, NULL, read_all_past_end(), 0) \
    X(ra_at_end, EVS_END, NOALT, NULL, read_all_at_end(), 0) \
    X(rb_null_store, EVS_ERR_INVALID_ARGUMENT, NOALT, "store", evs_read_all_backward(NULL, 0, &g_cur), 0) \
    X(rb_null_out, EVS_ERR_INVALID_ARGUMENT, NOALT, "out", evs_read_all_backward(g_s, 0, NULL), 0) \
    X(rb_u64max, EVS_OK, NOALT, NULL, evs_read_all_backward(g_s, UINT64_MAX, &g_cur), 0) \
    X(rs_null_store, EVS_ERR_INVALID_ARGUMENT, NOALT, "store", evs_read_stream(NULL, "s1", 0, &g_cur), 0) \
    X(rs_null_stream, EVS_ERR_INVALID_ARGUMENT, NOALT, "stream", evs_read_stream(g_s, NULL, 0, &g_cur), 0) \
    X(rs_bad_utf8, EVS_ERR_INVALID_ARGUMENT, NOALT, "UTF-8", evs_read_stream(g_s, BAD_UTF8, 0, &g_cur), 0) \
    X(rs_empty, EVS_ERR_INVALID_ARGUMENT, NOALT, NULL, evs_read_stream(g_s, "", 0, &g_cur), 0) \
    X(rs_1025, EVS_ERR_INVALID_ARGUMENT, NOALT, "1024", evs_read_stream(g_s, g_type_1025, 0, &g_cur), 0) \
    X(rs_unknown, EVS_ERR_NOT_FOUND, NOALT, "nope", evs_read_stream(g_s, "nope", 0, &g_cur), 0) \
    X(rs_u64max, EVS_ERR_NOT_FOUND, NOALT, NULL, evs_read_stream(g_s, "s1", UINT64_MAX, &g_cur), 0) \
    X(rs_null_out, EVS_ERR_INVALID_ARGUMENT, NOALT, "out", evs_read_stream(g_s, "s1", 0, NULL), 0) \
    X(po_null_store, EVS_ERR_INVALID_ARGUMENT, NOALT, "store", evs_poll(NULL, 0, 10, &g_cur), 0) \
    X(po_null_out, EVS_ERR_INVALID_ARGUMENT, NOALT, "out", evs_poll(g_s, 0, 10, NULL), 0) \
    X(po_u64max, EVS_ERR_NOT_FOUND, NOALT, NULL, evs_poll(g_s, UINT64_MAX, 10, &g_cur), 0) \
    X(po_max_0, EVS_OK, NOALT, NULL, evs_poll(g_s, 0, 0, &g_cur), 0) \
    X(po_max_size_max, EVS_OK, NOALT, NULL, evs_poll(g_s, 0, SIZE_MAX, &g_cur), 0) \
    X(cn_null_cursor, EVS_ERR_INVALID_ARGUMENT, NOALT, "cursor", evs_cursor_next(NULL, &g_event), 0) \
    X(cn_null_out, EVS_ERR_INVALID_ARGUMENT, NOALT, "out", cursor_next_null_out(), 0) \
    X(cf_null, EVS_OK, NOALT, NULL, (evs_cursor_free(NULL), EVS_OK), 0) \
    X(cn_after_close, ANY_STATUS, NOALT, NULL, cursor_after_close(), 0) \
    X(cn_backward_after_close, ANY_STATUS, NOALT, NULL, backward_cursor_after_close(), 0) \
    X(pa_null_store, EVS_ERR_INVALID_ARGUMENT, NOALT, "store", evs_position_at(NULL, 0, &g_u64), 0) \
    X(pa_null_out, EVS_ERR_INVALID_ARGUMENT, NOALT, "out_position", evs_position_at(g_s, 0, NULL), 0) \
    X(pa_zero, EVS_OK, NOALT, NULL, evs_position_at(g_s, 0, &g_u64), 0) \
    X(pa_u64max, EVS_OK, NOALT, NULL, evs_position_at(g_s, UINT64_MAX, &g_u64), 0) \
    X(sv_null_store, EVS_ERR_INVALID_ARGUMENT, NOALT, "store", evs_stream_version(NULL, "s1", &g_i64), 0) \
    X(sv_null_stream, EVS_ERR_INVALID_ARGUMENT, NOALT, "stream", evs_stream_version(g_s, NULL, &g_i64), 0) \
    X(sv_bad_utf8, EVS_ERR_INVALID_ARGUMENT, NOALT, "UTF-8", evs_stream_version(g_s, BAD_UTF8, &g_i64), 0) \
    X(sv_empty, EVS_ERR_INVALID_ARGUMENT, NOALT, NULL, evs_stream_version(g_s, "", &g_i64), 0) \
    X(sv_1025, EVS_ERR_INVALID_ARGUMENT, NOALT, "1024", evs_stream_version(g_s, g_type_1025, &g_i64), 0) \
    X(sv_null_out, EVS_ERR_INVALID_ARGUMENT, NOALT, "out_version", evs_stream_version(g_s, "s1", NULL), 0) \
    X(sv_unknown, EVS_OK, NOALT, NULL, stream_version_unknown(), 0) \
    /* snapshots, stats, metrics, strings */                                                  \
    X(sn_null_store, EVS_ERR_INVALID_ARGUMENT, NOALT, "store", evs_snapshot(NULL, &g_u64), 0) \
    X(sn_read_only, EVS_ERR_READ_ONLY, NOALT, NULL, evs_snapshot(g_ro, &g_u64), 0) \
    X(sn_null_out, EVS_OK, NOALT, NULL, evs_snapshot(g_s, NULL), 0) \
    X(st_null_store, EVS_ERR_INVALID_ARGUMENT, NOALT, "store", evs_stats_get(NULL, &g_stats), 0) \
    X(st_null_out, EVS_ERR_INVALID_ARGUMENT, NOALT, "out", evs_stats_get(g_s, NULL), 0) \
    X(cp_null_store, EVS_ERR_INVALID_ARGUMENT, NOALT, "store", evs_compact(NULL, NULL), 0) \
    X(cp_size_0, EVS_ERR_INVALID_ARGUMENT, NOALT, "struct_size is 0", compact_size0(), 0) \
    X(cp_size_garbage, EVS_ERR_INVALID_ARGUMENT, NOALT, "struct_size", compact_size_garbage(), 0) \
    X(cp_read_only, EVS_ERR_READ_ONLY, NOALT, NULL, evs_compact(g_ro, NULL), 0) \
    X(cp_null_info, EVS_OK, NOALT, NULL, evs_compact(g_s, NULL), 0) \
    X(mt_null_store, EVS_ERR_INVALID_ARGUMENT, NOALT, "store", evs_metrics_text(NULL, &g_text), 0) \
    X(mt_null_out, EVS_ERR_INVALID_ARGUMENT, NOALT, "out", evs_metrics_text(g_s, NULL), 0) \
    X(sq_null_url, EVS_ERR_INVALID_ARGUMENT, NOALT, "url", evs_schema_sql(NULL, &g_text), 0) \
    X(sq_null_out, EVS_ERR_INVALID_ARGUMENT, NOALT, "out_sql", evs_schema_sql("postgresql://u@h/d", NULL), 0) \
    X(sq_bad_utf8, EVS_ERR_INVALID_ARGUMENT, NOALT, "UTF-8", evs_schema_sql(BAD_UTF8, &g_text), 0) \
    X(sq_folder, EVS_ERR_INVALID_ARGUMENT, NOALT, "postgresql:// URL", evs_schema_sql("/tmp/a-store", &g_text), 0) \
    X(sq_no_host, EVS_ERR_INVALID_ARGUMENT, NOALT, "names no host", evs_schema_sql("postgresql://", &g_text), 0) \
    X(sq_bad_param, EVS_ERR_INVALID_ARGUMENT, NOALT, "timeout=0", evs_schema_sql("postgresql://u@127.0.0.1:1/d?timeout=0", &g_text), 0) \
    X(sf_null, EVS_OK, NOALT, NULL, (evs_string_free(NULL), EVS_OK), 0) \
    /* subscriptions */                                                                       \
    X(sb_null_store, EVS_ERR_INVALID_ARGUMENT, NOALT, "store", evs_subscribe(NULL, 0, on_event, NULL, &g_sub), 0) \
    X(sb_null_fn, EVS_ERR_INVALID_ARGUMENT, NOALT, "fn", evs_subscribe(g_s, 0, NULL, NULL, &g_sub), 0) \
    X(sb_null_out, EVS_ERR_INVALID_ARGUMENT, NOALT, "out", evs_subscribe(g_s, 0, on_event, NULL, NULL), 0) \
    X(sb_u64max, EVS_ERR_NOT_FOUND, NOALT, NULL, evs_subscribe(g_s, UINT64_MAX, on_event, NULL, &g_sub), 0) \
    X(sbf_bad_prefix, EVS_ERR_INVALID_ARGUMENT, NOALT, "UTF-8", evs_subscribe_filtered(g_s, 0, BAD_UTF8, NULL, 0, on_event, NULL, &g_sub), 0) \
    X(sbf_empty_prefix, EVS_OK, NOALT, NULL, evs_subscribe_filtered(g_s, 0, "", NULL, 0, on_event, NULL, &g_sub), 0) \
    X(sbf_null_types_count, EVS_ERR_INVALID_ARGUMENT, NOALT, "types", evs_subscribe_filtered(g_s, 0, NULL, NULL, 2, on_event, NULL, &g_sub), 0) \
    X(sbf_null_type_entry, EVS_ERR_INVALID_ARGUMENT, NOALT, "types[1]", subscribe_types("T", NULL, 2), 0) \
    X(sbf_bad_utf8_type, EVS_ERR_INVALID_ARGUMENT, NOALT, "UTF-8", subscribe_types(BAD_UTF8, "T", 2), 0) \
    X(sbf_empty_type, EVS_OK, NOALT, NULL, subscribe_types("", NULL, 1), 0) \
    X(sbf_null_fn, EVS_ERR_INVALID_ARGUMENT, NOALT, "fn", evs_subscribe_filtered(g_s, 0, NULL, NULL, 0, NULL, NULL, &g_sub), 0) \
    X(sbf_types_count_size_max, EVS_ERR_INVALID_ARGUMENT, NOALT, NULL, subscribe_types_count(SIZE_MAX), 1) \
    X(sbf_types_count_overflowing, EVS_ERR_INVALID_ARGUMENT, NOALT, NULL, subscribe_types_count((SIZE_MAX / sizeof(char *)) + 1), 1) \
    X(sc_null, EVS_OK, NOALT, NULL, evs_subscription_close(NULL), 0) \
    X(sc_after_store_close, EVS_OK, NOALT, NULL, subscription_after_close(), 0) \
    /* accounts: open */                                                                      \
    X(ao_null_store, EVS_ERR_INVALID_ARGUMENT, NOALT, "store", evs_account_open(NULL, "x", 1, NULL, &g_u64), 0) \
    X(ao_null_id, EVS_ERR_INVALID_ARGUMENT, NOALT, "account_id", evs_account_open(g_s, NULL, 1, NULL, &g_u64), 0) \
    X(ao_bad_utf8_id, EVS_ERR_INVALID_ARGUMENT, NOALT, "UTF-8", evs_account_open(g_s, BAD_UTF8, 1, NULL, &g_u64), 0) \
    X(ao_empty_id, EVS_ERR_INVALID_ARGUMENT, NOALT, NULL, evs_account_open(g_s, "", 1, NULL, &g_u64), 0) \
    X(ao_id_257, EVS_ERR_INVALID_ARGUMENT, NOALT, "256", evs_account_open(g_s, g_id_257, 1, NULL, &g_u64), 0) \
    X(ao_id_256, EVS_OK, NOALT, NULL, evs_account_open(g_s, g_id_256, 1, NULL, &g_u64), 0) \
    X(ao_balance_neg, EVS_ERR_INVALID_ARGUMENT, NOALT, "-1", evs_account_open(g_s, "neg", -1, NULL, &g_u64), 0) \
    X(ao_balance_int64_min, EVS_ERR_INVALID_ARGUMENT, NOALT, NULL, evs_account_open(g_s, "neg", INT64_MIN, NULL, &g_u64), 0) \
    X(ao_balance_int64_max, EVS_OK, NOALT, NULL, evs_account_open(g_s, "max", INT64_MAX, NULL, &g_u64), 0) \
    X(ao_currency_empty, EVS_ERR_INVALID_ARGUMENT, NOALT, NULL, evs_account_open(g_s, "c1", 1, "", &g_u64), 0) \
    X(ao_currency_lower, EVS_ERR_INVALID_ARGUMENT, NOALT, "usd", evs_account_open(g_s, "c1", 1, "usd", &g_u64), 0) \
    X(ao_currency_short, EVS_ERR_INVALID_ARGUMENT, NOALT, NULL, evs_account_open(g_s, "c1", 1, "US", &g_u64), 0) \
    X(ao_currency_long, EVS_ERR_INVALID_ARGUMENT, NOALT, NULL, evs_account_open(g_s, "c1", 1, "USDX", &g_u64), 0) \
    X(ao_currency_bad_utf8, EVS_ERR_INVALID_ARGUMENT, NOALT, NULL, evs_account_open(g_s, "c1", 1, BAD_UTF8, &g_u64), 0) \
    X(ao_currency_non_ascii, EVS_ERR_INVALID_ARGUMENT, NOALT, NULL, evs_account_open(g_s, "c1", 1, "\xc3\x89UR", &g_u64), 0) \
    X(ao_exists, EVS_ERR_ALREADY_EXISTS, NOALT, "alice", evs_account_open(g_s, "alice", 1, NULL, &g_u64), 0) \
    X(ao_read_only, EVS_ERR_READ_ONLY, NOALT, NULL, evs_account_open(g_ro, "ro", 1, NULL, &g_u64), 0) \
    X(ao_null_out, EVS_OK, NOALT, NULL, evs_account_open(g_s, "noout", 1, NULL, NULL), 0) \
    /* deposit */                                                                             \
    X(ad_null_store, EVS_ERR_INVALID_ARGUMENT, NOALT, "store", evs_account_deposit(NULL, "alice", 1, NULL), 0) \
    X(ad_null_id, EVS_ERR_INVALID_ARGUMENT, NOALT, "account_id", evs_account_deposit(g_s, NULL, 1, NULL), 0) \
    X(ad_bad_utf8, EVS_ERR_INVALID_ARGUMENT, NOALT, "UTF-8", evs_account_deposit(g_s, BAD_UTF8, 1, NULL), 0) \
    X(ad_empty, EVS_ERR_INVALID_ARGUMENT, NOALT, NULL, evs_account_deposit(g_s, "", 1, NULL), 0) \
    X(ad_id_257, EVS_ERR_INVALID_ARGUMENT, NOALT, NULL, evs_account_deposit(g_s, g_id_257, 1, NULL), 0) \
    X(ad_zero, EVS_ERR_INVALID_ARGUMENT, NOALT, "0", evs_account_deposit(g_s, "alice", 0, NULL), 0) \
    X(ad_neg, EVS_ERR_INVALID_ARGUMENT, NOALT, "-1", evs_account_deposit(g_s, "alice", -1, NULL), 0) \
    X(ad_int64_min, EVS_ERR_INVALID_ARGUMENT, NOALT, NULL, evs_account_deposit(g_s, "alice", INT64_MIN, NULL), 0) \
    X(ad_int64_max_overflow, EVS_ERR_OVERFLOW, NOALT, NULL, evs_account_deposit(g_s, "alice", INT64_MAX, NULL), 0) \
    X(ad_zero_to_int64_max, EVS_OK, NOALT, NULL, evs_account_deposit(g_s, "zero", INT64_MAX, NULL), 0) \
    X(ad_int64_max_plus_one, EVS_ERR_OVERFLOW, NOALT, "overflow", evs_account_deposit(g_s, "zero", 1, NULL), 0) \
    X(ad_unknown, EVS_ERR_NOT_FOUND, NOALT, "nobody", evs_account_deposit(g_s, "nobody", 1, NULL), 0) \
    X(ad_closed, EVS_ERR_ACCOUNT_CLOSED, NOALT, "closed", evs_account_deposit(g_s, "closed", 1, NULL), 0) \
    X(ad_read_only, EVS_ERR_READ_ONLY, NOALT, NULL, evs_account_deposit(g_ro, "alice", 1, NULL), 0) \
    /* withdraw */                                                                            \
    X(aw_null_store, EVS_ERR_INVALID_ARGUMENT, NOALT, "store", evs_account_withdraw(NULL, "alice", 1, NULL), 0) \
    X(aw_null_id, EVS_ERR_INVALID_ARGUMENT, NOALT, "account_id", evs_account_withdraw(g_s, NULL, 1, NULL), 0) \
    X(aw_bad_utf8, EVS_ERR_INVALID_ARGUMENT, NOALT, "UTF-8", evs_account_withdraw(g_s, BAD_UTF8, 1, NULL), 0) \
    X(aw_empty, EVS_ERR_INVALID_ARGUMENT, NOALT, NULL, evs_account_withdraw(g_s, "", 1, NULL), 0) \
    X(aw_zero, EVS_ERR_INVALID_ARGUMENT, NOALT, NULL, evs_account_withdraw(g_s, "alice", 0, NULL), 0) \
    X(aw_neg, EVS_ERR_INVALID_ARGUMENT, NOALT, NULL, evs_account_withdraw(g_s, "alice", -5, NULL), 0) \
    X(aw_int64_min, EVS_ERR_INVALID_ARGUMENT, NOALT, NULL, evs_account_withdraw(g_s, "alice", INT64_MIN, NULL), 0) \
    X(aw_int64_max, EVS_ERR_INSUFFICIENT_FUNDS, NOALT, NULL, evs_account_withdraw(g_s, "alice", INT64_MAX, NULL), 0) \
    X(aw_unknown, EVS_ERR_NOT_FOUND, NOALT, NULL, evs_account_withdraw(g_s, "nobody", 1, NULL), 0) \
    X(aw_closed, EVS_ERR_ACCOUNT_CLOSED, NOALT, NULL, evs_account_withdraw(g_s, "closed", 1, NULL), 0) \
    X(aw_read_only, EVS_ERR_READ_ONLY, NOALT, NULL, evs_account_withdraw(g_ro, "alice", 1, NULL), 0) \
    /* transfer */                                                                            \
    X(at_null_store, EVS_ERR_INVALID_ARGUMENT, NOALT, "store", evs_account_transfer(NULL, "alice", "bob", 1, NULL), 0) \
    X(at_null_from, EVS_ERR_INVALID_ARGUMENT, NOALT, "from_id", evs_account_transfer(g_s, NULL, "bob", 1, NULL), 0) \
    X(at_null_to, EVS_ERR_INVALID_ARGUMENT, NOALT, "to_id", evs_account_transfer(g_s, "alice", NULL, 1, NULL), 0) \
    X(at_bad_utf8_from, EVS_ERR_INVALID_ARGUMENT, NOALT, "UTF-8", evs_account_transfer(g_s, BAD_UTF8, "bob", 1, NULL), 0) \
    X(at_bad_utf8_to, EVS_ERR_INVALID_ARGUMENT, NOALT, "UTF-8", evs_account_transfer(g_s, "alice", BAD_UTF8, 1, NULL), 0) \
    X(at_empty_from, EVS_ERR_INVALID_ARGUMENT, NOALT, NULL, evs_account_transfer(g_s, "", "bob", 1, NULL), 0) \
    X(at_empty_to, EVS_ERR_INVALID_ARGUMENT, NOALT, NULL, evs_account_transfer(g_s, "alice", "", 1, NULL), 0) \
    X(at_to_257, EVS_ERR_INVALID_ARGUMENT, NOALT, NULL, evs_account_transfer(g_s, "alice", g_id_257, 1, NULL), 0) \
    X(at_self, EVS_ERR_INVALID_ARGUMENT, NOALT, "alice", evs_account_transfer(g_s, "alice", "alice", 1, NULL), 0) \
    X(at_zero, EVS_ERR_INVALID_ARGUMENT, NOALT, NULL, evs_account_transfer(g_s, "alice", "bob", 0, NULL), 0) \
    X(at_neg, EVS_ERR_INVALID_ARGUMENT, NOALT, NULL, evs_account_transfer(g_s, "alice", "bob", -1, NULL), 0) \
    X(at_int64_min, EVS_ERR_INVALID_ARGUMENT, NOALT, NULL, evs_account_transfer(g_s, "alice", "bob", INT64_MIN, NULL), 0) \
    X(at_int64_max, EVS_ERR_INSUFFICIENT_FUNDS, NOALT, NULL, evs_account_transfer(g_s, "alice", "bob", INT64_MAX, NULL), 0) \
    X(at_unknown_from, EVS_ERR_NOT_FOUND, NOALT, "nobody", evs_account_transfer(g_s, "nobody", "bob", 1, NULL), 0) \
    X(at_unknown_to, EVS_ERR_NOT_FOUND, NOALT, "nobody", evs_account_transfer(g_s, "alice", "nobody", 1, NULL), 0) \
    X(at_closed_from, EVS_ERR_ACCOUNT_CLOSED, NOALT, "closed", evs_account_transfer(g_s, "closed", "bob", 1, NULL), 0) \
    X(at_closed_to, EVS_ERR_ACCOUNT_CLOSED, NOALT, "closed", evs_account_transfer(g_s, "alice", "closed", 1, NULL), 0) \
    X(at_currency, EVS_ERR_CURRENCY_MISMATCH, NOALT, NULL, evs_account_transfer(g_s, "alice", "eur", 1, NULL), 0) \
    X(at_overflow, EVS_ERR_OVERFLOW, NOALT, NULL, evs_account_transfer(g_s, "alice", "max", 1, NULL), 0) \
    X(at_read_only, EVS_ERR_READ_ONLY, NOALT, NULL, evs_account_transfer(g_ro, "alice", "bob", 1, NULL), 0) \
    /* close */                                                                               \
    X(ac_null_store, EVS_ERR_INVALID_ARGUMENT, NOALT, "store", evs_account_close(NULL, "alice", NULL), 0) \
    X(ac_null_id, EVS_ERR_INVALID_ARGUMENT, NOALT, "account_id", evs_account_close(g_s, NULL, NULL), 0) \
    X(ac_bad_utf8, EVS_ERR_INVALID_ARGUMENT, NOALT, "UTF-8", evs_account_close(g_s, BAD_UTF8, NULL), 0) \
    X(ac_empty, EVS_ERR_INVALID_ARGUMENT, NOALT, NULL, evs_account_close(g_s, "", NULL), 0) \
    X(ac_unknown, EVS_ERR_NOT_FOUND, NOALT, NULL, evs_account_close(g_s, "nobody", NULL), 0) \
    X(ac_closed, EVS_ERR_ACCOUNT_CLOSED, NOALT, NULL, evs_account_close(g_s, "closed", NULL), 0) \
    X(ac_read_only, EVS_ERR_READ_ONLY, NOALT, NULL, evs_account_close(g_ro, "alice", NULL), 0) \
    /* get, get_at */                                                                         \
    X(ag_null_store, EVS_ERR_INVALID_ARGUMENT, NOALT, "store", evs_account_get(NULL, "alice", &g_acct), 0) \
    X(ag_null_id, EVS_ERR_INVALID_ARGUMENT, NOALT, "account_id", evs_account_get(g_s, NULL, &g_acct), 0) \
    X(ag_bad_utf8, EVS_ERR_INVALID_ARGUMENT, NOALT, "UTF-8", evs_account_get(g_s, BAD_UTF8, &g_acct), 0) \
    X(ag_empty, EVS_ERR_INVALID_ARGUMENT, NOALT, NULL, evs_account_get(g_s, "", &g_acct), 0) \
    X(ag_id_257, EVS_ERR_INVALID_ARGUMENT, NOALT, NULL, evs_account_get(g_s, g_id_257, &g_acct), 0) \
    X(ag_null_out, EVS_ERR_INVALID_ARGUMENT, NOALT, "out", evs_account_get(g_s, "alice", NULL), 0) \
    X(ag_unknown, EVS_ERR_NOT_FOUND, NOALT, "nobody", evs_account_get(g_s, "nobody", &g_acct), 0) \
    X(aga_null_store, EVS_ERR_INVALID_ARGUMENT, NOALT, "store", evs_account_get_at(NULL, "alice", 0, &g_acct), 0) \
    X(aga_null_id, EVS_ERR_INVALID_ARGUMENT, NOALT, "account_id", evs_account_get_at(g_s, NULL, 0, &g_acct), 0) \
    X(aga_bad_utf8, EVS_ERR_INVALID_ARGUMENT, NOALT, "UTF-8", evs_account_get_at(g_s, BAD_UTF8, 0, &g_acct), 0) \
    X(aga_empty, EVS_ERR_INVALID_ARGUMENT, NOALT, NULL, evs_account_get_at(g_s, "", UINT64_MAX, &g_acct), 0) \
    X(aga_null_out, EVS_ERR_INVALID_ARGUMENT, NOALT, "out", evs_account_get_at(g_s, "alice", UINT64_MAX, NULL), 0) \
    X(aga_ts_0, EVS_ERR_NOT_FOUND, NOALT, NULL, evs_account_get_at(g_s, "alice", 0, &g_acct), 0) \
    X(aga_ts_u64max, EVS_OK, NOALT, NULL, evs_account_get_at(g_s, "alice", UINT64_MAX, &g_acct), 0) \
    X(aga_unknown, EVS_ERR_NOT_FOUND, NOALT, NULL, evs_account_get_at(g_s, "nobody", UINT64_MAX, &g_acct), 0)

#define X_FN(id, want, alt, msg, expr, isolate) \
    static evs_status case_##id(void) { return (expr); }
BAD_CASES(X_FN)
#undef X_FN

typedef struct {
    const char *name;
    evs_status (*run)(void);
    evs_status want, alt;
    const char *msg_has;
    const char *expr;
    int isolate;
} bad_case;

#define X_ROW(id, want, alt, msg, expr, isolate) {#id, case_##id, want, alt, msg, #expr, isolate},
static const bad_case TABLE[] = {BAD_CASES(X_ROW)};
#undef X_ROW

#define N_CASES (sizeof TABLE / sizeof TABLE[0])

/* ---- setup ---- */

static int setup(void)
{
    uint64_t p;
    evs_event_input two[2];
    { /* every entry starts with its size */
        size_t i_;
        for (i_ = 0; i_ < sizeof two / sizeof two[0]; i_++)
            two[i_] = (evs_event_input)EVS_STRUCT_INIT(evs_event_input);
    }
    int fd;
    size_t i;

    if (!tu_make_temp_dir(g_root, sizeof g_root))
        return 0;
    snprintf(g_dir, sizeof g_dir, "%s/store", g_root);
    snprintf(g_file, sizeof g_file, "%s/a-file", g_root);
    snprintf(g_missing, sizeof g_missing, "%s/no/such/parent/store", g_root);
    snprintf(g_absent, sizeof g_absent, "%s/absent", g_root);
    snprintf(g_other, sizeof g_other, "%s/other", g_root);
    {
        char *comp = repeat('n', 5000);
        snprintf(g_long_path, sizeof g_long_path, "%s/%s", g_root, comp);
        free(comp);
    }
    fd = open(g_file, O_CREAT | O_WRONLY, 0644);
    if (fd >= 0) {
        if (write(fd, "not a store\n", 12) != 12)
            printf("short write to %s\n", g_file);
        close(fd);
    }
    g_type_1024 = repeat('t', 1024);
    g_type_1025 = repeat('t', 1025);
    g_id_256 = repeat('i', 256);
    g_id_257 = repeat('i', 257);
    g_big = (uint8_t *)rel_xmalloc(16 * MiB + 1);
    memset(g_big, 'b', 16 * MiB + 1);
    g_acct.struct_size = sizeof g_acct;
    g_stats.struct_size = sizeof g_stats;
    g_event.struct_size = sizeof g_event;
    g_info.struct_size = sizeof g_info;
    g_ev1[0] = ev("T", "one", 3, NULL, 0);
    for (i = 0; i < 5; i++)
        g_big_batch[i] = ev("Big", g_big, 16 * MiB, NULL, 0);

    g_o = evs_options_new();
    g_ro_opts = evs_options_new();
    evs_options_set_read_only(g_ro_opts, true);
    {
        evs_options *o = evs_options_new();
        evs_options_set_fsync(o, EVS_FSYNC_OS, 5);
        evs_options_set_preallocate(o, false);
        if (!CHECK_OK(evs_open(g_dir, o, &g_s, NULL))) {
            evs_options_free(o);
            return 0;
        }
        evs_options_free(o);
    }
    CHECK_OK(evs_account_open(g_s, "alice", 100, NULL, &p));
    CHECK_OK(evs_account_open(g_s, "bob", 50, "USD", &p));
    CHECK_OK(evs_account_open(g_s, "eur", 10, "EUR", &p));
    CHECK_OK(evs_account_open(g_s, "zero", 0, NULL, &p));
    CHECK_OK(evs_account_open(g_s, "closed", 5, NULL, &p));
    CHECK_OK(evs_account_close(g_s, "closed", &p));
    two[0] = ev("A", "1", 1, NULL, 0);
    two[1] = ev("B", "2", 1, NULL, 0);
    CHECK_OK(evs_append(g_s, "s1", EVS_EXPECT_NO_STREAM, two, 2, NULL, NULL));
    CHECK_OK(evs_sync(g_s));
    if (!CHECK_OK(evs_open(g_dir, g_ro_opts, &g_ro, NULL)))
        return 0;
    return 1;
}

static void teardown(void)
{
    evs_close(g_ro);
    evs_close(g_s);
    evs_options_free(g_o);
    evs_options_free(g_ro_opts);
    free(g_type_1024);
    free(g_type_1025);
    free(g_id_256);
    free(g_id_257);
    free(g_big);
    tu_cleanup_dir(g_root);
}

static void release_outputs(void)
{
    if (g_cur != NULL)
        evs_cursor_free(g_cur);
    if (g_sub != NULL)
        evs_subscription_close(g_sub);
    if (g_text != NULL)
        evs_string_free(g_text);
    if (g_tmp != NULL)
        evs_close(g_tmp);
    g_cur = NULL;
    g_sub = NULL;
    g_text = NULL;
    g_tmp = NULL;
}

static uint64_t next_position(void)
{
    uint64_t n = 0;
    evs_position_at(g_s, UINT64_MAX, &n);
    return n;
}

/* Runs one case in this process and checks it. */
static void run_case(const bad_case *c, unsigned long *appended)
{
    uint64_t before = next_position(), after;
    evs_status st;
    const char *msg;
    int ok;
    char what[512];

    st = c->run();
    msg = evs_last_error_message();
    if (c->want == ANY_STATUS)
        ok = 1;
    else if (c->want == ANY_ERROR)
        ok = st < 0;
    else
        ok = st == c->want || (c->alt != NOALT && st == c->alt);
    if (ok && st < 0 && c->want != ANY_STATUS) {
        ok = msg != NULL && msg[0] != '\0';
        if (ok && c->msg_has != NULL && strstr(msg, c->msg_has) == NULL) {
            printf("%s: the message \"%s\" does not mention \"%s\"\n", c->name, msg, c->msg_has);
            ok = 0;
        }
    }
    if (!ok)
        printf("%s: %s returned %s (%d), expected %s%s%s; message: \"%s\"\n", c->name, c->expr,
               tu_name(st), (int)st,
               c->want == ANY_ERROR ? "an error" : tu_name(c->want),
               c->alt != NOALT ? " or " : "", c->alt != NOALT ? tu_name(c->alt) : "",
               msg ? msg : "(NULL)");
    snprintf(what, sizeof what, "%s: %s", c->name, c->expr);
    tu_check(ok, what, __FILE__, __LINE__);
    release_outputs();
    after = next_position();
    if (st < 0) {
        snprintf(what, sizeof what, "%s: a failed call appends nothing", c->name);
        if (after != before)
            printf("%s: failed with %s but the log grew from %" PRIu64 " to %" PRIu64 "\n",
                   c->name, tu_name(st), before, after);
        tu_check(after == before, what, __FILE__, __LINE__);
    }
    *appended += (unsigned long)(after - before);
}

/* Runs one case in a child process (this program again), reporting a signal. */
static void run_isolated(const char *self, const bad_case *c)
{
    pid_t pid;
    int status = 0;
    char what[512];
    fflush(stdout);
    pid = fork();
    if (pid == 0) {
        char *args[4];
        args[0] = (char *)self;
        args[1] = (char *)"--case";
        args[2] = (char *)c->name;
        args[3] = NULL;
        execv(self, args);
        _exit(127);
    }
    waitpid(pid, &status, 0);
    (void)what;
    if (WIFSIGNALED(status)) {
        printf("%s: %s killed the process with signal %d (%s)\n", c->name, c->expr,
               WTERMSIG(status), WTERMSIG(status) == SIGSEGV ? "SIGSEGV" :
               WTERMSIG(status) == SIGABRT ? "SIGABRT" : "signal");
        tu_count(0);
    } else {
        if (WEXITSTATUS(status) != 0)
            printf("%s: failed in its child process (exit status %d; see above)\n", c->name,
                   WEXITSTATUS(status));
        tu_count(WEXITSTATUS(status) == 0);
    }
}

int main(int argc, char **argv)
{
    size_t i;
    unsigned long appended = 0, tried = 0, isolated = 0;
    uint64_t base;
    rel_state st;

    if (argc == 3 && strcmp(argv[1], "--case") == 0) {
        /* one case in a fresh process: exit 0 when it passed */
        unsigned long before;
        if (!setup())
            return 2;
        before = tu_failures();
        for (i = 0; i < N_CASES; i++)
            if (strcmp(TABLE[i].name, argv[2]) == 0)
                run_case(&TABLE[i], &appended);
        teardown();
        printf("case %s in a child process: %s\n", argv[2],
               tu_failures() == before ? "passed" : "FAILED");
        return tu_failures() == before ? 0 : 1;
    }

    if (!setup())
        return tu_finish();
    base = next_position();
    TU_SECTION("the table");
    for (i = 0; i < N_CASES; i++) {
        if (TABLE[i].isolate) {
            run_isolated(argv[0], &TABLE[i]);
            isolated++;
        }
        else
            run_case(&TABLE[i], &appended);
        tried++;
    }

    TU_SECTION("status names, messages and versions of odd values");
    {
        static const evs_status odd[] = {INT32_MIN, INT32_MAX, 2, -21, -98, -100, 99};
        for (i = 0; i < sizeof odd / sizeof odd[0]; i++) {
            CHECK_STR(evs_status_name(odd[i]), "EVS_UNKNOWN_STATUS");
            tried++;
        }
        CHECK_STR(evs_status_name(EVS_ERR_INTERNAL), "EVS_ERR_INTERNAL");
        CHECK(evs_last_error_message() != NULL);
        CHECK_STR(evs_version(), VERSION_TEXT);
        tried += 3;
    }

    TU_SECTION("the store after every bad call");
    rel_state_init(&st);
    rel_check_store(g_s, &st, NULL, NULL, "after the table");
    CHECK_U64(st.events, base + appended);
    {
        evs_account a = EVS_STRUCT_INIT(evs_account);
        /* balances untouched by every refused call */
        CHECK_OK(evs_account_get(g_s, "alice", &a));
        CHECK_I64(a.balance, 100);
        CHECK_OK(evs_account_get(g_s, "bob", &a));
        CHECK_I64(a.balance, 50);
        CHECK_OK(evs_account_get(g_s, "zero", &a));
        CHECK_I64(a.balance, INT64_MAX);
        CHECK_OK(evs_account_get(g_s, "max", &a));
        CHECK_I64(a.balance, INT64_MAX);
    }
    rel_state_free(&st);
    /* and after a reopen */
    {
        evs_store *s2 = NULL;
        CHECK_OK(evs_close(g_s));
        g_s = NULL;
        if (CHECK_OK(evs_open(g_dir, NULL, &s2, NULL))) {
            rel_state_init(&st);
            rel_check_store(s2, &st, NULL, NULL, "after the table, reopened");
            CHECK_U64(st.events, base + appended);
            rel_state_free(&st);
            g_s = s2;
        }
    }
    printf("bad inputs: %lu cases tried (%zu table rows, %lu isolated in a child process)\n",
           tried, N_CASES, isolated);
    rel_figure("bad_inputs", tried);
    teardown();
    return tu_finish();
}
