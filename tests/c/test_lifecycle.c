/*
 * test_lifecycle.c: data that leaves, through the C API (docs/lifecycle.md):
 * evs_delete_stream (soft and hard), evs_truncate_stream, evs_set_retention and
 * evs_get_retention, each on its success path and each of its status codes (NULL,
 * bad UTF-8, struct_size, flags, expected versions, ids), what every read returns
 * afterwards (cursors, evs_read_event, evs_list_streams, evs_stream_version, a
 * subscription, evs_stats), the account domain's rules, a read-only handle, and
 * all of it again after a reopen; then evs_compact and evs_options_set_compaction: what a
 * compaction reports, that the removed events' bytes leave every file of the store (file
 * engine) or their rows go (PostgreSQL: rows a rule by age removed), and the reads before
 * and after it and after a reopen.
 */
#include "test_util.h"

#define SENTINEL UINT64_C(0xDEADBEEFCAFEF00D)
#define BAD_UTF8 "\xff\xfe"

static char g_root[1024];

static evs_event_input input(const char *payload)
{
    evs_event_input in = EVS_STRUCT_INIT(evs_event_input);
    in.event_type = "T";
    in.payload = (const uint8_t *)payload;
    in.payload_len = strlen(payload);
    return in;
}

/* Appends one event; returns its position (SENTINEL on failure, which is checked). */
static uint64_t append1(evs_store *s, const char *stream, int64_t expected, const char *payload)
{
    evs_event_input in = input(payload);
    uint64_t p = SENTINEL;
    CHECK_OK(evs_append(s, stream, expected, &in, 1, &p, NULL));
    return p;
}

static uint64_t next_position(evs_store *s)
{
    uint64_t p = SENTINEL;
    CHECK_OK(evs_position_at(s, UINT64_MAX, &p));
    return p;
}

/* Events a cursor gives (its positions into out, at most cap); -1 if it fails. */
static long drain(evs_cursor *c, uint64_t *out, size_t cap)
{
    long n = 0;
    evs_event e = EVS_STRUCT_INIT(evs_event);
    evs_status st;
    while ((st = evs_cursor_next(c, &e)) == EVS_OK) {
        if ((size_t)n < cap)
            out[n] = e.position;
        n++;
    }
    CHECK_STATUS(st, EVS_END);
    evs_cursor_free(c);
    return n;
}

/* The versions of a stream's events, forward; -1 with the open's status in *st. */
static long stream_versions(evs_store *s, const char *stream, uint64_t *out, size_t cap,
                            evs_status *st)
{
    evs_cursor *c = NULL;
    evs_event e = EVS_STRUCT_INIT(evs_event);
    long n = 0;
    *st = evs_read_stream(s, stream, 0, &c);
    if (*st != EVS_OK)
        return -1;
    while (evs_cursor_next(c, &e) == EVS_OK) {
        if ((size_t)n < cap)
            out[n] = e.stream_version;
        n++;
    }
    evs_cursor_free(c);
    return n;
}

static int listed(evs_store *s, const char *name, uint64_t *version, uint64_t *first)
{
    evs_stream_list *l = NULL;
    evs_stream_info info = EVS_STRUCT_INIT(evs_stream_info);
    int found = 0;
    if (!CHECK_OK(evs_list_streams(s, &l)))
        return 0;
    while (evs_stream_list_next(l, &info) == EVS_OK) {
        if (info.name_len == strlen(name) && memcmp(info.name, name, info.name_len) == 0) {
            found = 1;
            *version = info.version;
            *first = info.first_position;
        }
    }
    evs_stream_list_free(l);
    return found;
}

/* Every argument check of the four functions: nothing is written on a refusal. */
static void bad_arguments(evs_store *s)
{
    uint64_t p = SENTINEL;
    evs_retention r = EVS_STRUCT_INIT(evs_retention);
    uint8_t big[sizeof(evs_retention) + 16];
    evs_retention *bigr = (evs_retention *)(void *)big;
    uint64_t before = next_position(s);
    TU_SECTION("bad arguments");
    CHECK_STATUS(evs_delete_stream(NULL, "a", EVS_EXPECT_ANY, 0, NULL, &p),
                 EVS_ERR_INVALID_ARGUMENT);
    CHECK_STATUS(evs_delete_stream(s, NULL, EVS_EXPECT_ANY, 0, NULL, &p),
                 EVS_ERR_INVALID_ARGUMENT);
    CHECK_STATUS(evs_delete_stream(s, BAD_UTF8, EVS_EXPECT_ANY, 0, NULL, &p),
                 EVS_ERR_INVALID_ARGUMENT);
    CHECK_STATUS(evs_delete_stream(s, "", EVS_EXPECT_ANY, 0, NULL, &p),
                 EVS_ERR_INVALID_ARGUMENT);
    CHECK_STATUS(evs_delete_stream(s, "a", EVS_EXPECT_ANY, 2, NULL, &p),
                 EVS_ERR_INVALID_ARGUMENT);
    CHECK(strstr(evs_last_error_message(), "0x2") != NULL);
    CHECK_STATUS(evs_delete_stream(s, "a", EVS_EXPECT_NO_STREAM, 0, NULL, &p),
                 EVS_ERR_INVALID_ARGUMENT);
    CHECK_STATUS(evs_delete_stream(s, "a", -7, 0, NULL, &p), EVS_ERR_INVALID_ARGUMENT);
    CHECK_STATUS(evs_delete_stream(s, "nope", EVS_EXPECT_ANY, 0, NULL, &p), EVS_ERR_NOT_FOUND);
    CHECK_STATUS(evs_delete_stream(s, "a", 0, 0, NULL, &p), EVS_ERR_WRONG_EXPECTED_VERSION);
    CHECK(strstr(evs_last_error_message(), "version 3") != NULL);

    CHECK_STATUS(evs_truncate_stream(NULL, "a", 1, NULL, &p), EVS_ERR_INVALID_ARGUMENT);
    CHECK_STATUS(evs_truncate_stream(s, NULL, 1, NULL, &p), EVS_ERR_INVALID_ARGUMENT);
    CHECK_STATUS(evs_truncate_stream(s, BAD_UTF8, 1, NULL, &p), EVS_ERR_INVALID_ARGUMENT);
    CHECK_STATUS(evs_truncate_stream(s, "a", 5, NULL, &p), EVS_ERR_INVALID_ARGUMENT);
    CHECK(strstr(evs_last_error_message(), "at most 4") != NULL);
    CHECK_STATUS(evs_truncate_stream(s, "nope", 0, NULL, &p), EVS_ERR_NOT_FOUND);

    r.max_count = 1;
    CHECK_STATUS(evs_set_retention(NULL, "t-", EVS_RETENTION_CATEGORY, &r, NULL, &p),
                 EVS_ERR_INVALID_ARGUMENT);
    CHECK_STATUS(evs_set_retention(s, NULL, EVS_RETENTION_CATEGORY, &r, NULL, &p),
                 EVS_ERR_INVALID_ARGUMENT);
    CHECK_STATUS(evs_set_retention(s, BAD_UTF8, EVS_RETENTION_CATEGORY, &r, NULL, &p),
                 EVS_ERR_INVALID_ARGUMENT);
    CHECK_STATUS(evs_set_retention(s, "t-", 4, &r, NULL, &p), EVS_ERR_INVALID_ARGUMENT);
    CHECK_STATUS(evs_set_retention(s, "", 0, &r, NULL, &p), EVS_ERR_INVALID_ARGUMENT);
    r.struct_size = 0;
    CHECK_STATUS(evs_set_retention(s, "t-", EVS_RETENTION_CATEGORY, &r, NULL, &p),
                 EVS_ERR_INVALID_ARGUMENT);
    CHECK(strstr(evs_last_error_message(), "struct_size") != NULL);
    r.struct_size = 1u << 20;
    CHECK_STATUS(evs_set_retention(s, "t-", EVS_RETENTION_CATEGORY, &r, NULL, &p),
                 EVS_ERR_INVALID_ARGUMENT);
    /* A newer program's struct with a field this library does not know, set. */
    memset(big, 0, sizeof big);
    bigr->struct_size = sizeof big;
    bigr->max_count = 1;
    big[sizeof(evs_retention) + 3] = 1;
    CHECK_STATUS(evs_set_retention(s, "t-", EVS_RETENTION_CATEGORY, bigr, NULL, &p),
                 EVS_ERR_INVALID_ARGUMENT);
    r.struct_size = sizeof r;

    CHECK_STATUS(evs_get_retention(NULL, "t-", 0, &r), EVS_ERR_INVALID_ARGUMENT);
    CHECK_STATUS(evs_get_retention(s, NULL, 0, &r), EVS_ERR_INVALID_ARGUMENT);
    CHECK_STATUS(evs_get_retention(s, BAD_UTF8, 0, &r), EVS_ERR_INVALID_ARGUMENT);
    CHECK_STATUS(evs_get_retention(s, "", 0, &r), EVS_ERR_INVALID_ARGUMENT);
    CHECK_STATUS(evs_get_retention(s, "t-", 8, &r), EVS_ERR_INVALID_ARGUMENT);
    CHECK_STATUS(evs_get_retention(s, "t-", 0, NULL), EVS_ERR_INVALID_ARGUMENT);
    r.struct_size = 0;
    CHECK_STATUS(evs_get_retention(s, "t-", 0, &r), EVS_ERR_INVALID_ARGUMENT);
    r.struct_size = sizeof r;

    CHECK_U64(p, SENTINEL);
    CHECK_U64(next_position(s), before);
}

/* Truncation, soft and hard deletes, rules; what each read says afterwards. */
static void operations(evs_store *s, uint64_t *entries)
{
    uint64_t p = SENTINEL, q = SENTINEL, v[16], ver = 0, first = 0;
    evs_status st;
    int64_t version = -9;
    evs_event e = EVS_STRUCT_INIT(evs_event);
    evs_event_data *data = NULL;
    evs_retention r = EVS_STRUCT_INIT(evs_retention);
    evs_cursor *c = NULL;
    uint64_t pos[64];
    evs_event_input in = input("more");
    uint8_t id[16];
    evs_error_detail detail = EVS_STRUCT_INIT(evs_error_detail);

    TU_SECTION("truncate");
    CHECK_OK(evs_truncate_stream(s, "a", 2, NULL, &p));
    CHECK_U64(p, next_position(s) - 1);
    entries[0] = p;
    CHECK_I64(stream_versions(s, "a", v, 16, &st), 2);
    CHECK_U64(v[0], 2);
    CHECK_STATUS(evs_read_event(s, 0, &e, &data), EVS_ERR_NOT_FOUND);
    CHECK(strstr(evs_last_error_message(), "removed") != NULL);
    if (!tu_skip_on_pg("evs_read_event names the operation that removed an event",
                       "PostgreSQL deleted the row: it knows the position was emptied, not by what"))
        CHECK(strstr(evs_last_error_message(), "truncation") != NULL);
    CHECK_STATUS(evs_read_event(s, p, &e, &data), EVS_ERR_NOT_FOUND);
    CHECK(strstr(evs_last_error_message(), "lifecycle entry") != NULL);
    CHECK(data == NULL);

    TU_SECTION("soft delete");
    CHECK_OK(evs_delete_stream(s, "b", 2, EVS_DELETE_SOFT, NULL, &p));
    entries[1] = p;
    /* No stream, for writers too, until it is appended to again. */
    CHECK_OK(evs_stream_version(s, "b", &version));
    CHECK_I64(version, -1);
    CHECK_I64(stream_versions(s, "b", v, 16, &st), -1);
    CHECK_STATUS(st, EVS_ERR_NOT_FOUND);
    CHECK_STATUS(evs_read_stream_backward(s, "b", UINT64_MAX, &c), EVS_ERR_NOT_FOUND);
    CHECK(!listed(s, "b", &ver, &first));
    CHECK_STATUS(evs_append(s, "b", 2, &in, 1, &q, NULL), EVS_ERR_WRONG_EXPECTED_VERSION);
    CHECK_OK(evs_last_error_detail(&detail));
    CHECK_I64(detail.actual_version, -1);
    CHECK_STATUS(evs_append(s, "b", EVS_EXPECT_EXISTS, &in, 1, &q, NULL),
                 EVS_ERR_WRONG_EXPECTED_VERSION);
    CHECK_STATUS(evs_delete_stream(s, "b", EVS_EXPECT_ANY, EVS_DELETE_SOFT, NULL, NULL),
                 EVS_ERR_NOT_FOUND);
    CHECK_STATUS(evs_truncate_stream(s, "b", 0, NULL, NULL), EVS_ERR_NOT_FOUND);
    CHECK_STATUS(evs_delete_stream(s, "b", 2, EVS_DELETE_HARD, NULL, NULL),
                 EVS_ERR_WRONG_EXPECTED_VERSION);
    q = SENTINEL;
    /* NO_STREAM continues its versions after the kept one. */
    CHECK_OK(evs_append(s, "b", EVS_EXPECT_NO_STREAM, &in, 1, &q, &ver));
    CHECK_U64(ver, 3);
    CHECK(listed(s, "b", &ver, &first));
    CHECK_U64(first, q);
    CHECK_U64(ver, 3);

    TU_SECTION("hard delete");
    CHECK_OK(evs_delete_stream(s, "c", EVS_EXPECT_EXISTS, EVS_DELETE_HARD, NULL, &p));
    entries[2] = p;
    CHECK_STATUS(evs_stream_version(s, "c", &version), EVS_ERR_STREAM_DELETED);
    CHECK_STATUS(evs_append(s, "c", EVS_EXPECT_ANY, &in, 1, NULL, NULL), EVS_ERR_STREAM_DELETED);
    CHECK_STATUS(evs_read_stream(s, "c", 0, &c), EVS_ERR_STREAM_DELETED);
    CHECK_STATUS(evs_read_stream_backward(s, "c", 0, &c), EVS_ERR_STREAM_DELETED);
    CHECK_STATUS(evs_delete_stream(s, "c", EVS_EXPECT_ANY, EVS_DELETE_SOFT, NULL, NULL),
                 EVS_ERR_STREAM_DELETED);
    CHECK_STATUS(evs_truncate_stream(s, "c", 0, NULL, NULL), EVS_ERR_STREAM_DELETED);
    CHECK(!listed(s, "c", &ver, &first));

    TU_SECTION("retention rules");
    r.max_count = 1;
    CHECK_OK(evs_set_retention(s, "t-", EVS_RETENTION_CATEGORY, &r, NULL, &p));
    entries[3] = p;
    memset(&r, 0xAB, sizeof r);
    r.struct_size = sizeof r;
    CHECK_OK(evs_get_retention(s, "t-1", 0, &r));
    CHECK_U64(r.max_count, 1);
    CHECK_U64(r.max_age_us, 0);
    CHECK_OK(evs_get_retention(s, "t-", EVS_RETENTION_CATEGORY, &r));
    CHECK_U64(r.max_count, 1);
    CHECK_OK(evs_get_retention(s, "t", EVS_RETENTION_CATEGORY, &r));
    CHECK_U64(r.max_count, 0);
    /* No rule is set on the prefix "t-1" itself (the stream t-1 has its category's). */
    CHECK_OK(evs_get_retention(s, "t-1", EVS_RETENTION_CATEGORY, &r));
    CHECK_U64(r.max_count, 0);
    CHECK_OK(evs_read_category(s, "t-", 0, &c));
    CHECK_I64(drain(c, pos, 64), 2);
    /* NULL clears; what the rule removed stays removed. */
    CHECK_OK(evs_set_retention(s, "t-", EVS_RETENTION_CATEGORY, NULL, NULL, &p));
    entries[4] = p;
    CHECK_OK(evs_get_retention(s, "t-2", 0, &r));
    CHECK_U64(r.max_count, 0);
    CHECK_OK(evs_read_category(s, "t-", 0, &c));
    CHECK_I64(drain(c, pos, 64), 2);
    /* A stream's own rule; an age rule keeps events younger than a day. */
    r.max_count = 0;
    r.max_age_us = UINT64_C(86400000000);
    CHECK_OK(evs_set_retention(s, "t-2", 0, &r, NULL, &p));
    entries[5] = p;
    CHECK_OK(evs_get_retention(s, "t-2", 0, &r));
    CHECK_U64(r.max_age_us, UINT64_C(86400000000));
    CHECK_I64(stream_versions(s, "t-2", v, 16, &st), 1);

    TU_SECTION("ids");
    memset(id, 0x5A, sizeof id);
    p = q = SENTINEL;
    CHECK_OK(evs_delete_stream(s, "a", EVS_EXPECT_ANY, EVS_DELETE_SOFT, id, &p));
    entries[6] = p;
    CHECK_OK(evs_delete_stream(s, "a", EVS_EXPECT_ANY, EVS_DELETE_SOFT, id, &q));
    CHECK_U64(q, p);
    CHECK_U64(next_position(s), p + 1);
    CHECK_STATUS(evs_truncate_stream(s, "a", 0, id, NULL), EVS_ERR_ALREADY_EXISTS);
    CHECK_STATUS(evs_delete_stream(s, "a", EVS_EXPECT_ANY, EVS_DELETE_HARD, id, NULL),
                 EVS_ERR_ALREADY_EXISTS);
    /* All zero is no id: two entries. */
    memset(id, 0, sizeof id);
    CHECK_OK(evs_truncate_stream(s, "t-1", 1, id, &p));
    entries[7] = p;
    CHECK_OK(evs_truncate_stream(s, "t-1", 1, id, &q));
    entries[8] = q;
    CHECK_U64(q, p + 1);
}

struct seen {
    pthread_mutex_t lock;
    uint64_t positions[64];
    size_t n;
};

static int32_t on_event(void *user, const evs_event *e)
{
    struct seen *s = (struct seen *)user;
    pthread_mutex_lock(&s->lock);
    if (s->n < 64)
        s->positions[s->n] = e->position;
    s->n++;
    pthread_mutex_unlock(&s->lock);
    return 0;
}

/* What every read gives after `operations`: live events only. */
static void reads_after(evs_store *s, const uint64_t *entries, const char *when)
{
    uint64_t pos[64], fwd[64], v[16];
    evs_cursor *c = NULL;
    evs_stats st = EVS_STRUCT_INIT(evs_stats);
    evs_status status;
    struct seen seen;
    evs_subscription *sub = NULL;
    int64_t version = 0;
    long n, i;
    evs_retention r = EVS_STRUCT_INIT(evs_retention);
    TU_SECTION(when);
    /* Left: t-1 v2 and t-2 v2 (the cleared count rule removed the others for good), the
     * stream-less event and b's new one; every event of a and c is gone, and b's first
     * three. */
    CHECK_OK(evs_read_all(s, 0, &c));
    n = drain(c, fwd, 64);
    CHECK_I64(n, 4);
    for (i = 0; i < n && i < 64; i++) {
        size_t k;
        for (k = 0; k < 9; k++)
            CHECK(fwd[i] != entries[k]);
    }
    CHECK_OK(evs_read_all_backward(s, UINT64_MAX, &c));
    CHECK_I64(drain(c, pos, 64), 4);
    for (i = 0; i < 4; i++)
        CHECK_U64(pos[i], fwd[3 - i]);
    /* A poll window counts the empty positions: from 0, the first 4 positions hold only
     * the removed events of a. */
    CHECK_OK(evs_poll(s, 0, 4, &c));
    CHECK_I64(drain(c, pos, 64), 0);
    CHECK_STATUS(evs_stream_version(s, "c", &version), EVS_ERR_STREAM_DELETED);
    /* a was soft-deleted last: no stream for writers. */
    CHECK_OK(evs_stream_version(s, "a", &version));
    CHECK_I64(version, -1);
    CHECK_I64(stream_versions(s, "a", v, 16, &status), -1);
    CHECK_STATUS(status, EVS_ERR_NOT_FOUND);
    CHECK_I64(stream_versions(s, "t-1", v, 16, &status), 1);
    CHECK_U64(v[0], 2);
    CHECK_OK(evs_get_retention(s, "t-2", 0, &r));
    CHECK_U64(r.max_age_us, UINT64_C(86400000000));
    CHECK_OK(evs_stats_get(s, &st));
    CHECK_U64(st.lifecycle_entries, 9);
    /* a 4, b 3, c 2, t-1 2, t-2 2 */
    CHECK_U64(st.removed_events, 13);
    /* b, t-1, t-2: the streams a reader sees. */
    CHECK_U64(st.streams, 3);
    CHECK_U64(st.reclaimable_bytes, 0);
    /* A subscription from 0 delivers the events left, none of the removed ones. */
    memset(&seen, 0, sizeof seen);
    pthread_mutex_init(&seen.lock, NULL);
    CHECK_OK(evs_subscribe(s, 0, on_event, &seen, &sub));
    for (i = 0; i < 500; i++) {
        size_t got;
        pthread_mutex_lock(&seen.lock);
        got = seen.n;
        pthread_mutex_unlock(&seen.lock);
        if (got >= 4)
            break;
        tu_sleep_ms(10);
    }
    tu_sleep_ms(50);
    CHECK_OK(evs_subscription_close(sub));
    CHECK_U64(seen.n, 4);
    for (i = 0; i < (long)seen.n && i < 4; i++)
        CHECK_U64(seen.positions[i], fwd[i]);
    pthread_mutex_destroy(&seen.lock);
}

/* An older program's evs_stats (without the fields of 1.1) is left alone past its size. */
static void old_stats(evs_store *s)
{
    unsigned char buf[sizeof(evs_stats)];
    evs_stats *old = (evs_stats *)(void *)buf;
    size_t old_size = offsetof(evs_stats, removed_events);
    TU_SECTION("an older evs_stats");
    memset(buf, 0x77, sizeof buf);
    old->struct_size = old_size;
    CHECK_OK(evs_stats_get(s, old));
    CHECK(buf[old_size] == 0x77 && buf[sizeof buf - 1] == 0x77);
    CHECK_U64(old->struct_size, old_size);
}

static void accounts(evs_store *s)
{
    evs_account a = EVS_STRUCT_INIT(evs_account);
    evs_retention r = EVS_STRUCT_INIT(evs_retention);
    TU_SECTION("the account domain");
    CHECK_OK(evs_account_open(s, "acc1", 10, NULL, NULL));
    CHECK_STATUS(evs_delete_stream(s, "account-acc1", EVS_EXPECT_ANY, 0, NULL, NULL),
                 EVS_ERR_BALANCE_NOT_ZERO);
    CHECK(strstr(evs_last_error_message(), "10") != NULL);
    CHECK_STATUS(evs_truncate_stream(s, "account-acc1", 1, NULL, NULL), EVS_ERR_INVALID_ARGUMENT);
    r.max_count = 5;
    CHECK_STATUS(evs_set_retention(s, "account-", EVS_RETENTION_CATEGORY, &r, NULL, NULL),
                 EVS_ERR_INVALID_ARGUMENT);
    CHECK_STATUS(evs_set_retention(s, "", EVS_RETENTION_CATEGORY, &r, NULL, NULL),
                 EVS_ERR_INVALID_ARGUMENT);
    CHECK_OK(evs_account_withdraw(s, "acc1", 10, NULL));
    CHECK_OK(evs_delete_stream(s, "account-acc1", EVS_EXPECT_ANY, 0, NULL, NULL));
    CHECK_STATUS(evs_account_get(s, "acc1", &a), EVS_ERR_NOT_FOUND);
    CHECK_STATUS(evs_account_deposit(s, "acc1", 1, NULL), EVS_ERR_NOT_FOUND);
    /* A new account of the id continues the stream. */
    CHECK_OK(evs_account_open(s, "acc1", 0, NULL, NULL));
    CHECK_OK(evs_account_get(s, "acc1", &a));
    CHECK_I64(a.balance, 0);
    CHECK_OK(evs_delete_stream(s, "account-acc1", EVS_EXPECT_ANY, EVS_DELETE_HARD, NULL, NULL));
    CHECK_STATUS(evs_account_open(s, "acc1", 0, NULL, NULL), EVS_ERR_STREAM_DELETED);
}

/* What writers see: a hard delete of a soft-deleted stream, a truncated stream's version,
 * the order of the checks. */
static void writers(evs_store *s)
{
    int64_t version = -9;
    evs_error_detail detail = EVS_STRUCT_INIT(evs_error_detail);
    TU_SECTION("what writers see");
    append1(s, "z", EVS_EXPECT_NO_STREAM, "z0");
    append1(s, "z", EVS_EXPECT_ANY, "z1");
    CHECK_OK(evs_delete_stream(s, "z", EVS_EXPECT_ANY, EVS_DELETE_SOFT, NULL, NULL));
    CHECK_STATUS(evs_delete_stream(s, "z", EVS_EXPECT_EXISTS, EVS_DELETE_HARD, NULL, NULL),
                 EVS_ERR_WRONG_EXPECTED_VERSION);
    CHECK_OK(evs_delete_stream(s, "z", EVS_EXPECT_ANY, EVS_DELETE_HARD, NULL, NULL));
    CHECK_STATUS(evs_stream_version(s, "z", &version), EVS_ERR_STREAM_DELETED);
    /* A tombstone before a wrong version; no stream before a wrong version. */
    CHECK_STATUS(evs_delete_stream(s, "z", 7, EVS_DELETE_SOFT, NULL, NULL),
                 EVS_ERR_STREAM_DELETED);
    CHECK_STATUS(evs_delete_stream(s, "never", 7, EVS_DELETE_HARD, NULL, NULL),
                 EVS_ERR_NOT_FOUND);
    /* Truncated to its end, a stream keeps its version for writers. */
    append1(s, "y", EVS_EXPECT_ANY, "y0");
    CHECK_OK(evs_truncate_stream(s, "y", 1, NULL, NULL));
    CHECK_OK(evs_stream_version(s, "y", &version));
    CHECK_I64(version, 0);
    {
        evs_event_input in = input("y1");
        CHECK_STATUS(evs_append(s, "y", EVS_EXPECT_NO_STREAM, &in, 1, NULL, NULL),
                     EVS_ERR_WRONG_EXPECTED_VERSION);
        CHECK_OK(evs_last_error_detail(&detail));
        CHECK_I64(detail.actual_version, 0);
    }
    append1(s, "y", 0, "y1");
}

/* ---- compaction ---- */

#define CP_EVENTS 40
#define CP_PAYLOAD 2000

/* A payload of CP_PAYLOAD bytes starting with a marker ("KEEP-7-"), the rest filler. */
static evs_event_input marked(char *buf, const char *kind, int i)
{
    evs_event_input in = EVS_STRUCT_INIT(evs_event_input);
    int n = snprintf(buf, CP_PAYLOAD, "%s-%d-", kind, i);
    memset(buf + n, 'f', (size_t)(CP_PAYLOAD - n));
    in.event_type = "Marked";
    in.payload = (const uint8_t *)buf;
    in.payload_len = CP_PAYLOAD;
    return in;
}

/* Whether `needle` occurs in any file below `path` (file store); -1 if one cannot be read. */
static int found_in_files(const char *path, const char *needle)
{
    struct stat st;
    size_t nlen = strlen(needle);
    int found = 0;
    if (lstat(path, &st) != 0)
        return -1;
    if (S_ISDIR(st.st_mode)) {
        DIR *d = opendir(path);
        struct dirent *e;
        char child[2048];
        if (d == NULL)
            return -1;
        while (found == 0 && (e = readdir(d)) != NULL) {
            if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0)
                continue;
            tu_join(child, sizeof child, path, e->d_name);
            found = found_in_files(child, needle);
        }
        closedir(d);
        return found;
    }
    if (S_ISREG(st.st_mode) && st.st_size > 0) {
        FILE *f = fopen(path, "rb");
        char *buf = (char *)malloc((size_t)st.st_size);
        size_t n = 0, i;
        if (f == NULL || buf == NULL) {
            if (f != NULL)
                fclose(f);
            free(buf);
            return -1;
        }
        n = fread(buf, 1, (size_t)st.st_size, f);
        fclose(f);
        for (i = 0; found == 0 && i + nlen <= n; i++)
            if (memcmp(buf + i, needle, nlen) == 0)
                found = 1;
        free(buf);
    }
    return found;
}

/* The kept stream reads whole, in order, and nothing else is left: forward and backward,
 * the stream, and evs_read_event at a removed position. */
static void compacted_reads(evs_store *s, uint64_t gone_position)
{
    evs_cursor *c = NULL;
    evs_event e = EVS_STRUCT_INIT(evs_event);
    evs_event_data *data = NULL;
    evs_status st;
    char want[32];
    uint64_t n = 0, last = 0;
    CHECK_OK(evs_read_all(s, 0, &c));
    while ((st = evs_cursor_next(c, &e)) == EVS_OK) {
        snprintf(want, sizeof want, "KEEP-%" PRIu64 "-", n);
        CHECK(e.payload_len == CP_PAYLOAD && memcmp(e.payload, want, strlen(want)) == 0);
        CHECK(n == 0 || e.position > last);
        CHECK_U64(e.stream_version, n);
        last = e.position;
        n++;
    }
    CHECK_STATUS(st, EVS_END);
    evs_cursor_free(c);
    CHECK_U64(n, CP_EVENTS);
    CHECK_OK(evs_read_all_backward(s, UINT64_MAX, &c));
    CHECK_I64(drain(c, NULL, 0), CP_EVENTS);
    CHECK_OK(evs_read_stream(s, "keep", 0, &c));
    CHECK_I64(drain(c, NULL, 0), CP_EVENTS);
    CHECK_STATUS(evs_read_stream(s, "gone", 0, &c), EVS_ERR_NOT_FOUND);
    CHECK_STATUS(evs_read_event(s, gone_position, &e, &data), EVS_ERR_NOT_FOUND);
}

/* evs_options_set_compaction's values as evs_store_options_get gives them back, and the
 * defaults. */
static void compaction_options(void)
{
    char path[1200];
    evs_store *s = NULL;
    evs_options *o = evs_options_new();
    evs_store_options got = EVS_STRUCT_INIT(evs_store_options);
    TU_SECTION("compaction options");
    tu_store_location(path, sizeof path, g_root, "options");
    CHECK_OK(evs_open(path, NULL, &s, NULL));
    if (s != NULL) {
        CHECK_OK(evs_store_options_get(s, &got));
        CHECK_U64(got.compaction_bytes_per_second, UINT64_C(67108864));
        CHECK_U64(got.compaction_trigger_percent, 25);
        CHECK_OK(evs_close(s));
    }
    CHECK_STATUS(evs_options_set_compaction(o, 1, 101), EVS_ERR_INVALID_ARGUMENT);
    CHECK(strstr(evs_last_error_message(), "101") != NULL);
    CHECK_OK(evs_options_set_compaction(o, 12345, 100));
    CHECK_OK(evs_open(path, o, &s, NULL));
    if (s != NULL) {
        CHECK_OK(evs_store_options_get(s, &got));
        CHECK_U64(got.compaction_bytes_per_second, 12345);
        CHECK_U64(got.compaction_trigger_percent, 100);
        CHECK_OK(evs_close(s));
    }
    evs_options_free(o);
}

/* Three streams of CP_EVENTS events of 2,000 bytes over several 64 KiB segments: "keep"
 * stays, "gone" is deleted, "old" leaves by a rule by age of 1 us. evs_compact erases the
 * bytes of both removed kinds on the file store; on PostgreSQL it deletes the rows of
 * "old" (the delete removed the rows of "gone" at once). */
static void compaction(void)
{
    char path[1200], buf[CP_PAYLOAD], marker[32];
    evs_store *s = NULL, *ro = NULL;
    evs_options *o = evs_options_new();
    evs_options *ro_opts = evs_options_new();
    evs_stats st = EVS_STRUCT_INIT(evs_stats);
    evs_compact_info info = EVS_STRUCT_INIT(evs_compact_info);
    evs_retention r = EVS_STRUCT_INIT(evs_retention);
    evs_event_input in;
    uint64_t gone_position = SENTINEL, erased;
    int i;
    TU_SECTION("evs_compact");
    tu_store_location(path, sizeof path, g_root, "compact");
    CHECK_OK(evs_options_set_max_segment_size(o, 65536));
    /* No automatic compaction: this test compacts when it means to. */
    CHECK_OK(evs_options_set_compaction(o, 0, 0));
    CHECK_OK(evs_open(path, o, &s, NULL));
    if (s == NULL)
        goto out;
    for (i = 0; i < CP_EVENTS; i++) {
        in = marked(buf, "KEEP", i);
        CHECK_OK(evs_append(s, "keep", EVS_EXPECT_ANY, &in, 1, NULL, NULL));
        in = marked(buf, "GONE", i);
        CHECK_OK(evs_append(s, "gone", EVS_EXPECT_ANY, &in, 1, i == 0 ? &gone_position : NULL, NULL));
        in = marked(buf, "OLD", i);
        CHECK_OK(evs_append(s, "old", EVS_EXPECT_ANY, &in, 1, NULL, NULL));
    }
    tu_sleep_ms(5);
    CHECK_OK(evs_delete_stream(s, "gone", EVS_EXPECT_ANY, EVS_DELETE_SOFT, NULL, NULL));
    r.max_age_us = 1;
    CHECK_OK(evs_set_retention(s, "old", 0, &r, NULL, NULL));
    CHECK_OK(evs_stats_get(s, &st));
    CHECK_U64(st.removed_events, 2 * CP_EVENTS);
    /* Sealed segments (file) or rows by age (PostgreSQL) hold removed bytes. */
    CHECK(st.reclaimable_bytes > 0);
    compacted_reads(s, gone_position);

    /* A read-only handle may not compact. */
    CHECK_OK(evs_options_set_read_only(ro_opts, true));
    CHECK_OK(evs_open(path, ro_opts, &ro, NULL));
    if (ro != NULL) {
        CHECK_STATUS(evs_compact(ro, &info), EVS_ERR_READ_ONLY);
        CHECK_OK(evs_close(ro));
    }

    CHECK_OK(evs_compact(s, &info));
    CHECK_U64(info.struct_size, sizeof info);
    erased = tu_pg() ? CP_EVENTS : 2 * CP_EVENTS;
    CHECK_U64(info.events_erased, erased);
    CHECK(info.segments_rewritten >= 1);
    CHECK(info.bytes_after < info.bytes_before);
    /* At least the erased payloads' bytes went. */
    CHECK(info.bytes_before - info.bytes_after >= erased * CP_PAYLOAD);
    CHECK_OK(evs_stats_get(s, &st));
    CHECK_U64(st.reclaimable_bytes, 0);
    CHECK_U64(st.removed_events, 2 * CP_EVENTS);
    compacted_reads(s, gone_position);
    if (!tu_skip_on_pg("evs_compact", "the search of the store's files for the erased events' "
                                      "markers (a server has no store folder)")) {
        /* No file of the store holds a removed event's marker; the kept ones stay. */
        for (i = 0; i < CP_EVENTS; i++) {
            snprintf(marker, sizeof marker, "GONE-%d-", i);
            CHECK_I64(found_in_files(path, marker), 0);
            snprintf(marker, sizeof marker, "OLD-%d-", i);
            CHECK_I64(found_in_files(path, marker), 0);
            snprintf(marker, sizeof marker, "KEEP-%d-", i);
            CHECK_I64(found_in_files(path, marker), 1);
        }
    }
    /* Nothing left to do: zeros; info may be NULL. */
    memset(&info, 0x55, sizeof info);
    info.struct_size = sizeof info;
    CHECK_OK(evs_compact(s, &info));
    CHECK_U64(info.segments_rewritten, 0);
    CHECK_U64(info.events_erased, 0);
    CHECK_U64(info.bytes_before, 0);
    CHECK_U64(info.bytes_after, 0);
    CHECK_OK(evs_compact(s, NULL));
    /* An older, smaller evs_compact_info is written only within its size. */
    {
        unsigned char raw[sizeof(evs_compact_info)];
        evs_compact_info *old = (evs_compact_info *)(void *)raw;
        memset(raw, 0x77, sizeof raw);
        old->struct_size = offsetof(evs_compact_info, events_erased);
        CHECK_OK(evs_compact(s, old));
        CHECK(raw[offsetof(evs_compact_info, events_erased)] == 0x77 && raw[sizeof raw - 1] == 0x77);
        CHECK_U64(old->segments_rewritten, 0);
        info.struct_size = 0;
        CHECK_STATUS(evs_compact(s, &info), EVS_ERR_INVALID_ARGUMENT);
        CHECK(strstr(evs_last_error_message(), "struct_size") != NULL);
    }
    /* The soft-deleted stream stays deleted for writers; all of it holds after a reopen. */
    in = marked(buf, "GONE", CP_EVENTS);
    CHECK_STATUS(evs_append(s, "gone", (int64_t)CP_EVENTS - 1, &in, 1, NULL, NULL), EVS_ERR_WRONG_EXPECTED_VERSION);
    CHECK_OK(evs_close(s));
    s = NULL;
    CHECK_OK(evs_open(path, o, &s, NULL));
    if (s != NULL) {
        TU_SECTION("evs_compact, then a reopen");
        compacted_reads(s, gone_position);
        CHECK_OK(evs_stats_get(s, &st));
        CHECK_U64(st.reclaimable_bytes, 0);
        CHECK_OK(evs_close(s));
    }
out:
    evs_options_free(o);
    evs_options_free(ro_opts);
}

int main(void)
{
    char path[1200];
    evs_store *s = NULL, *ro = NULL;
    evs_options *opts = NULL;
    uint64_t entries[9];
    evs_account a = EVS_STRUCT_INIT(evs_account);
    evs_retention r = EVS_STRUCT_INIT(evs_retention);
    int i;
    if (!tu_make_temp_dir(g_root, sizeof g_root))
        return tu_finish();
    tu_store_location(path, sizeof path, g_root, "store");
    CHECK_OK(evs_open(path, NULL, &s, NULL));
    if (s == NULL)
        return tu_finish();
    for (i = 0; i < 4; i++)
        append1(s, "a", EVS_EXPECT_ANY, "a");
    for (i = 0; i < 3; i++)
        append1(s, "b", EVS_EXPECT_ANY, "b");
    for (i = 0; i < 2; i++)
        append1(s, "c", EVS_EXPECT_ANY, "c");
    for (i = 0; i < 3; i++) {
        append1(s, "t-1", EVS_EXPECT_ANY, "t1");
        append1(s, "t-2", EVS_EXPECT_ANY, "t2");
    }
    CHECK_OK(evs_append_event(s, "Single", (const uint8_t *)"x", 1, NULL));
    bad_arguments(s);
    operations(s, entries);
    reads_after(s, entries, "reads after the operations");
    old_stats(s);

    /* A read-only handle sees them all and refuses to make any. */
    opts = evs_options_new();
    CHECK_OK(evs_options_set_read_only(opts, true));
    CHECK_OK(evs_open(path, opts, &ro, NULL));
    if (ro != NULL) {
        CHECK_STATUS(evs_delete_stream(ro, "b", EVS_EXPECT_ANY, 0, NULL, NULL), EVS_ERR_READ_ONLY);
        CHECK_STATUS(evs_truncate_stream(ro, "b", 0, NULL, NULL), EVS_ERR_READ_ONLY);
        CHECK_STATUS(evs_set_retention(ro, "b", 0, NULL, NULL, NULL), EVS_ERR_READ_ONLY);
        reads_after(ro, entries, "reads of a read-only handle");
        CHECK_OK(evs_close(ro));
    }
    evs_options_free(opts);

    CHECK_OK(evs_close(s));
    s = NULL;
    CHECK_OK(evs_open(path, NULL, &s, NULL));
    if (s != NULL) {
        reads_after(s, entries, "reads after a reopen");
        accounts(s);
        writers(s);
        CHECK_OK(evs_close(s));
        s = NULL;
        CHECK_OK(evs_open(path, NULL, &s, NULL));
        TU_SECTION("accounts after a reopen");
        CHECK_STATUS(evs_account_get(s, "acc1", &a), EVS_ERR_NOT_FOUND);
        CHECK_STATUS(evs_account_open(s, "acc1", 0, NULL, NULL), EVS_ERR_STREAM_DELETED);
        CHECK_OK(evs_get_retention(s, "t-2", 0, &r));
        CHECK_U64(r.max_age_us, UINT64_C(86400000000));
        CHECK_OK(evs_close(s));
    }
    compaction_options();
    compaction();
    tu_cleanup_dir(g_root);
    return tu_finish();
}
