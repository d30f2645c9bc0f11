/*
 * test_subjects.c: personal data through the C API (README "Personal data"):
 * evs_event_input.subject (and a caller whose struct ends before it), evs_event.subject
 * and flags (and a caller whose evs_event ends before them), evs_forget_subject and its
 * status codes, what every read returns afterwards (a cursor, a batch, evs_read_event, a
 * subscription, a consumer, after a reopen), evs_list_subjects, the master key
 * (evs_options_set_master_key) and a key provider (evs_options_set_key_provider) whose
 * keys live in this program. Also run on PostgreSQL by tests/c/run_pg.sh (each store in a
 * schema of its own); there the check that the store keeps no key file is skipped.
 */
#include "test_util.h"

#include <stddef.h>

#define SENTINEL UINT64_C(0xDEADBEEFCAFEF00D)

static char g_root[1024];

static evs_event_input input(const char *subject, const char *payload, const char *meta)
{
    evs_event_input in = EVS_STRUCT_INIT(evs_event_input);
    in.event_type = "T";
    in.payload = (const uint8_t *)payload;
    in.payload_len = strlen(payload);
    in.metadata = (const uint8_t *)meta;
    in.metadata_len = strlen(meta);
    in.subject = subject;
    return in;
}

static uint64_t append1(evs_store *s, const char *stream, const char *subject, const char *payload)
{
    evs_event_input in = input(subject, payload, "meta");
    uint64_t p = SENTINEL;
    CHECK_OK(evs_append(s, stream, EVS_EXPECT_ANY, &in, 1, &p, NULL));
    return p;
}

/* Checks an event read back: alice's erased (when `forgotten`), everyone else's intact. */
static void check_event(const evs_event *e, int forgotten)
{
    int alice = e->subject_len == 5 && memcmp(e->subject, "alice", 5) == 0;
    if (alice && forgotten) {
        CHECK_U64(e->flags, EVS_EVENT_ERASED);
        CHECK_U64(e->payload_len, 0);
        CHECK_U64(e->metadata_len, 0);
        CHECK_VIEW(e->stream, e->stream_len, "people");
        CHECK_VIEW(e->event_type, e->event_type_len, "T");
    } else {
        CHECK_U64(e->flags, 0);
        CHECK_VIEW(e->metadata, e->metadata_len, "meta");
        CHECK(e->payload_len > 0);
    }
}

/* Every event of a forward cursor checked; returns how many were erased. */
static int read_all_checked(evs_store *s, int forgotten)
{
    evs_cursor *c = NULL;
    evs_event e = EVS_STRUCT_INIT(evs_event);
    evs_status st;
    int erased = 0, n = 0;
    CHECK_OK(evs_read_all(s, 0, &c));
    while ((st = evs_cursor_next(c, &e)) == EVS_OK) {
        check_event(&e, forgotten);
        erased += (e.flags & EVS_EVENT_ERASED) != 0;
        n++;
    }
    CHECK_STATUS(st, EVS_END);
    CHECK_I64(n, 5);
    evs_cursor_free(c);
    return erased;
}

typedef struct seen {
    int events, erased;
} seen;

static int32_t on_event(void *user, const evs_event *e)
{
    seen *sn = user;
    check_event(e, 1);
    sn->events++;
    sn->erased += (e->flags & EVS_EVENT_ERASED) != 0;
    return 0;
}

static void test_reads_after_forget(evs_store *s)
{
    evs_event e = EVS_STRUCT_INIT(evs_event);
    evs_event batch[8];
    evs_event_data *data = NULL;
    evs_cursor *c = NULL;
    evs_subscription *sub = NULL;
    evs_consumer *con = NULL;
    seen sn = {0, 0};
    size_t n = 0, i, got = 0;
    int erased = 0, k;
    evs_status st;
    TU_SECTION("reads after evs_forget_subject");
    CHECK_I64(read_all_checked(s, 1), 2);
    /* batches: one may hold fewer than its capacity (it ends after an event the cursor
     * decrypted); only EVS_END says there is no more */
    batch[0] = (evs_event)EVS_STRUCT_INIT(evs_event);
    CHECK_OK(evs_read_all(s, 0, &c));
    while ((st = evs_cursor_next_batch(c, batch, 8, &n)) == EVS_OK) {
        CHECK(n >= 1 && n <= 8);
        for (i = 0; i < n; i++) {
            check_event(&batch[i], 1);
            erased += (batch[i].flags & EVS_EVENT_ERASED) != 0;
        }
        got += n;
    }
    CHECK_I64(st, EVS_END);
    CHECK_U64(got, 5);
    CHECK_I64(erased, 2);
    evs_cursor_free(c);
    /* one event */
    CHECK_OK(evs_read_event(s, 0, &e, &data));
    CHECK_U64(e.flags, EVS_EVENT_ERASED);
    CHECK_VIEW(e.subject, e.subject_len, "alice");
    evs_event_data_free(data);
    /* a subscription */
    CHECK_OK(evs_subscribe(s, 0, on_event, &sn, &sub));
    for (k = 0; k < 500 && sn.events < 5; k++)
        tu_sleep_ms(10);
    CHECK_OK(evs_subscription_close(sub));
    CHECK_I64(sn.events, 5);
    CHECK_I64(sn.erased, 2);
    /* a consumer */
    CHECK_OK(evs_consumer_open(s, "reader", NULL, &con));
    if (con != NULL) {
        erased = 0;
        for (k = 0; k < 5; k++) {
            CHECK_OK(evs_consumer_next(con, &e, 1000));
            check_event(&e, 1);
            erased += (e.flags & EVS_EVENT_ERASED) != 0;
        }
        CHECK_I64(erased, 2);
        CHECK_OK(evs_consumer_close(con));
    }
}

static void test_append_and_forget(evs_store *s)
{
    evs_event_input old = input("bob", "old-caller", "meta");
    evs_event e;
    evs_cursor *c = NULL;
    uint64_t p = SENTINEL, again = SENTINEL;
    TU_SECTION("evs_event_input.subject / evs_forget_subject");
    append1(s, "people", "alice", "alice-1");
    append1(s, "people", "bob", "bob-1");
    append1(s, "people", "alice", "alice-2");
    append1(s, "people", NULL, "nobody");
    /* a caller built against 1.0: its struct ends before `subject`, which reads as NULL
       (the pointer past its struct is garbage, never read) */
    old.struct_size = offsetof(evs_event_input, subject);
    old.subject = (const char *)1;
    CHECK_OK(evs_append(s, "people", EVS_EXPECT_ANY, &old, 1, NULL, NULL));
    /* a subject that is no valid name */
    {
        evs_event_input bad = input("\xff", "x", "");
        CHECK_STATUS(evs_append(s, "people", EVS_EXPECT_ANY, &bad, 1, NULL, NULL), EVS_ERR_INVALID_ARGUMENT);
        bad.subject = "";
        CHECK_STATUS(evs_append(s, "people", EVS_EXPECT_ANY, &bad, 1, NULL, NULL), EVS_ERR_INVALID_ARGUMENT);
    }
    CHECK_I64(read_all_checked(s, 0), 0);
    /* batches before anything is forgotten (views into the log): an opened sealed event
       stays valid while the rest of its batch is read */
    {
        static const char *const want[] = {"alice-1", "bob-1", "alice-2", "nobody", "old-caller"};
        evs_event batch[8];
        evs_cursor *bc = NULL;
        size_t n = 0, got = 0, i;
        batch[0] = (evs_event)EVS_STRUCT_INIT(evs_event);
        CHECK_OK(evs_read_all(s, 0, &bc));
        while (evs_cursor_next_batch(bc, batch, 8, &n) == EVS_OK && got + n <= 5) {
            for (i = 0; i < n; i++)
                CHECK_VIEW(batch[i].payload, batch[i].payload_len, want[got + i]);
            got += n;
        }
        CHECK_U64(got, 5);
        evs_cursor_free(bc);
    }
    /* a reader of 1.0's evs_event: nothing past its struct is written */
    memset(&e, 0xAB, sizeof e);
    e.struct_size = offsetof(evs_event, subject);
    CHECK_OK(evs_read_all(s, 0, &c));
    CHECK_OK(evs_cursor_next(c, &e));
    CHECK_U64(e.flags, 0xABABABABu);
    CHECK_VIEW(e.payload, e.payload_len, "alice-1");
    evs_cursor_free(c);

    CHECK_STATUS(evs_forget_subject(NULL, "alice", NULL), EVS_ERR_INVALID_ARGUMENT);
    CHECK_STATUS(evs_forget_subject(s, NULL, NULL), EVS_ERR_INVALID_ARGUMENT);
    CHECK_STATUS(evs_forget_subject(s, "", NULL), EVS_ERR_INVALID_ARGUMENT);
    CHECK_STATUS(evs_forget_subject(s, "\xff", NULL), EVS_ERR_INVALID_ARGUMENT);
    CHECK_OK(evs_forget_subject(s, "alice", &p));
    CHECK_U64(p, 5);
    CHECK_OK(evs_forget_subject(s, "alice", &again));
    CHECK_U64(again, p);
    /* no new event for a forgotten subject */
    {
        evs_event_input in = input("alice", "alice-3", "meta");
        CHECK_STATUS(evs_append(s, "people", EVS_EXPECT_ANY, &in, 1, NULL, NULL), EVS_ERR_INVALID_ARGUMENT);
        CHECK(strstr(evs_last_error_message(), "forgotten") != NULL);
    }
}

static void test_list_subjects(evs_store *s)
{
    evs_subject_list *l = NULL;
    evs_subject_info i = EVS_STRUCT_INIT(evs_subject_info);
    TU_SECTION("evs_list_subjects");
    CHECK_STATUS(evs_list_subjects(NULL, &l), EVS_ERR_INVALID_ARGUMENT);
    CHECK_STATUS(evs_list_subjects(s, NULL), EVS_ERR_INVALID_ARGUMENT);
    CHECK_OK(evs_list_subjects(s, &l));
    CHECK_OK(evs_subject_list_next(l, &i));
    CHECK_VIEW(i.name, i.name_len, "alice");
    CHECK_U64(i.events, 2);
    CHECK(i.forgotten);
    CHECK_U64(i.forgotten_at, 5);
    CHECK_OK(evs_subject_list_next(l, &i));
    CHECK_VIEW(i.name, i.name_len, "bob");
    CHECK_U64(i.events, 1);
    CHECK(!i.forgotten);
    CHECK_U64(i.forgotten_at, UINT64_MAX);
    CHECK_STATUS(evs_subject_list_next(l, &i), EVS_END);
    evs_subject_list_free(l);
    evs_subject_list_free(NULL);
}

static void test_master_key(void)
{
    char path[1200];
    uint8_t key[32], other[32];
    evs_options *o = evs_options_new();
    evs_store *s = NULL;
    TU_SECTION("evs_options_set_master_key");
    memset(key, 7, sizeof key);
    memset(other, 8, sizeof other);
    tu_store_location(path, sizeof path, g_root, "wrapped");
    CHECK_STATUS(evs_options_set_master_key(NULL, key, 32), EVS_ERR_INVALID_ARGUMENT);
    CHECK_STATUS(evs_options_set_master_key(o, key, 16), EVS_ERR_INVALID_ARGUMENT);
    CHECK_STATUS(evs_options_set_master_key(o, NULL, 32), EVS_ERR_INVALID_ARGUMENT);
    CHECK_OK(evs_options_set_master_key(o, key, 32));
    CHECK_OK(evs_open(path, o, &s, NULL));
    append1(s, "people", "carol", "carol-1");
    CHECK_OK(evs_close(s));
    s = NULL;
    /* with another key, or none: refused at open */
    CHECK_OK(evs_options_set_master_key(o, other, 32));
    CHECK_STATUS(evs_open(path, o, &s, NULL), EVS_ERR_INVALID_ARGUMENT);
    CHECK_OK(evs_options_set_master_key(o, NULL, 0));
    CHECK_STATUS(evs_open(path, o, &s, NULL), EVS_ERR_INVALID_ARGUMENT);
    CHECK(strstr(evs_last_error_message(), "master key") != NULL);
    CHECK_OK(evs_options_set_master_key(o, key, 32));
    CHECK_OK(evs_open(path, o, &s, NULL));
    if (s != NULL) {
        evs_cursor *c = NULL;
        evs_event e = EVS_STRUCT_INIT(evs_event);
        CHECK_OK(evs_read_all(s, 0, &c));
        CHECK_OK(evs_cursor_next(c, &e));
        CHECK_VIEW(e.payload, e.payload_len, "carol-1");
        evs_cursor_free(c);
        CHECK_OK(evs_close(s));
    }
    evs_options_free(o);
}

/* A key provider whose keys live in this table. */
typedef struct kms {
    char subject[8][32];
    uint8_t key[8][32];
    int used[8];
    int n, gets, creates, destroys;
} kms;

static int kms_find(kms *k, const char *subject, size_t len)
{
    int i;
    for (i = 0; i < k->n; i++)
        if (k->used[i] && strlen(k->subject[i]) == len && memcmp(k->subject[i], subject, len) == 0)
            return i;
    return -1;
}

static int32_t kms_get(void *user, const char *subject, size_t len, uint8_t *out)
{
    kms *k = user;
    int i = kms_find(k, subject, len);
    k->gets++;
    if (i < 0)
        return EVS_END;
    memcpy(out, k->key[i], 32);
    return 0;
}

static int32_t kms_create(void *user, const char *subject, size_t len, uint8_t *out)
{
    kms *k = user;
    int i = k->n;
    k->creates++;
    if (i == 8 || len >= 32)
        return -1;
    memcpy(k->subject[i], subject, len);
    k->subject[i][len] = 0;
    memset(k->key[i], 0x30 + i, 32);
    k->used[i] = 1;
    k->n++;
    memcpy(out, k->key[i], 32);
    return 0;
}

static int32_t kms_destroy(void *user, const char *subject, size_t len, uint8_t *out)
{
    kms *k = user;
    int i = kms_find(k, subject, len);
    (void)out;
    k->destroys++;
    if (i >= 0) {
        memset(k->key[i], 0, 32);
        k->used[i] = 0;
    }
    return 0;
}

static void test_key_provider(void)
{
    char path[1200];
    kms k;
    evs_key_provider p = EVS_STRUCT_INIT(evs_key_provider);
    evs_options *o = evs_options_new();
    evs_store *s = NULL;
    uint8_t key[32];
    struct stat st;
    TU_SECTION("evs_options_set_key_provider");
    memset(&k, 0, sizeof k);
    memset(key, 7, sizeof key);
    tu_store_location(path, sizeof path, g_root, "provided");
    p.user_data = &k;
    p.get = kms_get;
    p.create = kms_create;
    CHECK_STATUS(evs_options_set_key_provider(o, &p), EVS_ERR_INVALID_ARGUMENT);
    p.destroy = kms_destroy;
    CHECK_STATUS(evs_options_set_key_provider(NULL, &p), EVS_ERR_INVALID_ARGUMENT);
    CHECK_OK(evs_options_set_master_key(o, key, 32));
    CHECK_STATUS(evs_options_set_key_provider(o, &p), EVS_ERR_INVALID_ARGUMENT);
    CHECK_OK(evs_options_set_master_key(o, NULL, 0));
    CHECK_OK(evs_options_set_key_provider(o, &p));
    CHECK_OK(evs_open(path, o, &s, NULL));
    if (s == NULL) {
        evs_options_free(o);
        return;
    }
    append1(s, "people", "alice", "alice-1");
    append1(s, "people", "bob", "bob-1");
    append1(s, "people", "alice", "alice-2");
    append1(s, "people", NULL, "nobody");
    append1(s, "people", "bob", "bob-2");
    CHECK_I64(k.creates, 2);
    /* the store keeps no key file of its own */
    if (!tu_skip_on_pg("the key file a provider leaves uncreated", "PostgreSQL keeps no files")) {
        char keys[1300];
        tu_join(keys, sizeof keys, path, "keys");
        CHECK(stat(keys, &st) != 0);
    }
    CHECK_I64(read_all_checked(s, 0), 0);
    CHECK_OK(evs_forget_subject(s, "alice", NULL));
    CHECK_I64(k.destroys, 1);
    CHECK_I64(read_all_checked(s, 1), 2);
    CHECK_OK(evs_close(s));
    s = NULL;
    CHECK_OK(evs_open(path, o, &s, NULL));
    CHECK_I64(read_all_checked(s, 1), 2);
    CHECK_OK(evs_close(s));
    CHECK_OK(evs_options_set_key_provider(o, NULL));
    evs_options_free(o);
}

int main(void)
{
    char path[1200];
    evs_store *s = NULL;
    if (!tu_make_temp_dir(g_root, sizeof g_root))
        return tu_finish();
    tu_store_location(path, sizeof path, g_root, "store");
    CHECK_OK(evs_open(path, NULL, &s, NULL));
    if (s == NULL)
        return tu_finish();
    test_append_and_forget(s);
    test_list_subjects(s);
    test_reads_after_forget(s);
    CHECK_OK(evs_close(s));
    s = NULL;
    TU_SECTION("after a reopen");
    CHECK_OK(evs_open(path, NULL, &s, NULL));
    if (s != NULL) {
        CHECK_I64(read_all_checked(s, 1), 2);
        CHECK_OK(evs_close(s));
    }
    test_master_key();
    test_key_provider();
    tu_cleanup_dir(g_root);
    return tu_finish();
}
