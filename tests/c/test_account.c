/*
 * test_account.c: the bank-account functions of the evstore C API.
 *
 *   test_account               every test; the concurrency test does
 *                              100,000 operations scaled by EVS_TEST_SCALE
 *   test_account concurrency   only the concurrency test, always 100,000 operations
 *
 * The seed's three tests, every rule of c-api.md / api-decisions.md, read-only
 * stores, time travel, transfers among 3 hot accounts, ids that need JSON
 * escaping, snapshots (used; ignored when damaged or ahead of the log;
 * automatic), and 8 threads doing random operations over 50 accounts.
 */
#include "test_util.h"

#define SENTINEL_U64 UINT64_C(0xDEADBEEFCAFEF00D)
#define BAD_UTF8 "\xff\xfe"

static char g_root[1024];

/* why the snapshot checks are skipped on PostgreSQL (tu_skip_on_pg) */
#define SNAP_FILES "account snapshots are files of the file store; PostgreSQL keeps none"

static void store_path(char *out, size_t cap, const char *name)
{
    tu_store_location(out, cap, g_root, name);
}

static evs_store *open_store(const char *path, const evs_options *opts, evs_recovery_info *info)
{
    evs_store *s = NULL;
    if (!CHECK_OK(evs_open(path, opts, &s, info)))
        return NULL;
    CHECK(s != NULL);
    return s;
}

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

static uint64_t next_position(evs_store *s)
{
    uint64_t p = SENTINEL_U64;
    CHECK_OK(evs_position_at(s, UINT64_MAX, &p));
    return p;
}

/* The account's balance, or INT64_MIN when it cannot be read. */
static int64_t balance_of(evs_store *s, const char *id)
{
    evs_account a = EVS_STRUCT_INIT(evs_account);
    if (!CHECK_OK(evs_account_get(s, id, &a)))
        return INT64_MIN;
    return a.balance;
}

static void sentinel_account(evs_account *a)
{
    memset(a, 0xAB, sizeof *a);
    a->struct_size = sizeof *a;
}

static int is_sentinel_account(const evs_account *a)
{
    evs_account b = EVS_STRUCT_INIT(evs_account);
    sentinel_account(&b);
    return memcmp(a, &b, sizeof b) == 0;
}

/* Checks every field of an account. */
#define CHECK_ACCOUNT(s, id, bal, closed, cur, ver)                   \
    do {                                                              \
        evs_account a_;                                               \
        memset(&a_, 0, sizeof a_);                                    \
        a_.struct_size = sizeof a_;                                   \
        if (CHECK_OK(evs_account_get((s), (id), &a_))) {              \
            CHECK_I64(a_.balance, (bal));                             \
            CHECK(a_.is_closed == (closed));                          \
            CHECK_STR(a_.currency, (cur));                            \
            CHECK_U64(a_.version, (ver));                             \
        }                                                             \
    } while (0)

/* ------------------------------------------------------------------------ */
/* The seed's three tests                                                    */
/* ------------------------------------------------------------------------ */

static void test_seed(void)
{
    char path[2048];
    evs_store *s;
    uint64_t pos, open_pos, dep_pos, before;
    evs_account a = EVS_STRUCT_INIT(evs_account);

    TU_SECTION("seed: open and deposit");
    store_path(path, sizeof path, "seed1");
    s = open_store(path, NULL, NULL);
    if (s != NULL) {
        open_pos = dep_pos = SENTINEL_U64;
        CHECK_OK(evs_account_open(s, "alice", 1000, NULL, &open_pos));
        CHECK_U64(open_pos, 0);
        CHECK_OK(evs_account_deposit(s, "alice", 500, &dep_pos));
        CHECK_U64(dep_pos, 1);
        memset(&a, 0, sizeof a);
        a.struct_size = sizeof a;
        if (CHECK_OK(evs_account_get(s, "alice", &a))) {
            CHECK_I64(a.balance, 1500);
            CHECK(!a.is_closed);
            CHECK_STR(a.currency, "USD");
            CHECK_U64(a.version, 2);
            CHECK_U64(a.last_position, dep_pos);
        }

        /* the events: stream "account-alice", the legacy JSON payloads */
        TU_SECTION("account events in stream account-<id>");
        {
            evs_cursor *c = NULL;
            evs_event e = EVS_STRUCT_INIT(evs_event);
            static const char deposited[] = "{\"MoneyDeposited\":{\"account_id\":\"alice\",\"amount\":500}}";
            if (CHECK_OK(evs_read_stream(s, "account-alice", 0, &c))) {
                if (CHECK_OK(evs_cursor_next(c, &e))) {
                    char buf[512];
                    size_t n = e.payload_len < sizeof buf - 1 ? e.payload_len : sizeof buf - 1;
                    memcpy(buf, e.payload, n);
                    buf[n] = '\0';
                    CHECK_U64(e.position, open_pos);
                    CHECK_U64(e.stream_version, 0);
                    CHECK_VIEW(e.stream, e.stream_len, "account-alice");
                    /* currency was added to AccountOpened at schema version 2 */
                    CHECK_U64(e.schema_version, 2);
                    if (!(CHECK(strstr(buf, "{\"AccountOpened\":{") == buf) &
                          CHECK(strstr(buf, "\"account_id\":\"alice\"") != NULL) &
                          CHECK(strstr(buf, "\"initial_balance\":1000") != NULL) &
                          CHECK(strstr(buf, "\"currency\":\"USD\"") != NULL)))
                        printf("    AccountOpened payload: %s\n", buf);
                }
                if (CHECK_OK(evs_cursor_next(c, &e))) {
                    CHECK_U64(e.position, dep_pos);
                    CHECK_U64(e.stream_version, 1);
                    CHECK_VIEW((const char *)e.payload, e.payload_len, deposited);
                }
                CHECK_STATUS(evs_cursor_next(c, &e), EVS_END);
                evs_cursor_free(c);
            }
            /* the same event through the global log */
            c = NULL;
            if (CHECK_OK(evs_read_all(s, dep_pos, &c))) {
                if (CHECK_OK(evs_cursor_next(c, &e)))
                    CHECK_VIEW((const char *)e.payload, e.payload_len, deposited);
                evs_cursor_free(c);
            }
        }
        CHECK_OK(evs_close(s));
    }

    TU_SECTION("seed: deposit and withdraw survive close and reopen");
    store_path(path, sizeof path, "seed2");
    s = open_store(path, NULL, NULL);
    if (s != NULL) {
        CHECK_OK(evs_account_open(s, "bob", 2000, "USD", &pos));
        CHECK_OK(evs_account_deposit(s, "bob", 1000, &pos));
        CHECK_OK(evs_account_withdraw(s, "bob", 500, &pos));
        CHECK_I64(balance_of(s, "bob"), 2500);
        CHECK_OK(evs_account_open(s, "bob2", 10, NULL, &pos)); /* for the read-only test */
        CHECK_OK(evs_close(s));
    }
    s = open_store(path, NULL, NULL);
    if (s != NULL) {
        CHECK_ACCOUNT(s, "bob", 2500, false, "USD", 3);
        CHECK_OK(evs_close(s));
    }

    TU_SECTION("seed: a withdrawal past the balance is refused");
    store_path(path, sizeof path, "seed3");
    s = open_store(path, NULL, NULL);
    if (s != NULL) {
        CHECK_OK(evs_account_open(s, "carol", 100, NULL, &pos));
        before = next_position(s);
        pos = SENTINEL_U64;
        CHECK_STATUS(evs_account_withdraw(s, "carol", 150, &pos), EVS_ERR_INSUFFICIENT_FUNDS);
        CHECK_U64(pos, SENTINEL_U64);
        CHECK_STATUS(evs_account_withdraw(s, "carol", 101, &pos), EVS_ERR_INSUFFICIENT_FUNDS);
        CHECK_U64(next_position(s), before);
        CHECK_ACCOUNT(s, "carol", 100, false, "USD", 1);
        /* the whole balance can go */
        CHECK_OK(evs_account_withdraw(s, "carol", 100, &pos));
        CHECK_ACCOUNT(s, "carol", 0, false, "USD", 2);
        CHECK_STATUS(evs_account_withdraw(s, "carol", 1, &pos), EVS_ERR_INSUFFICIENT_FUNDS);
        CHECK_OK(evs_close(s));
    }
}

/* ------------------------------------------------------------------------ */
/* Every rule                                                                */
/* ------------------------------------------------------------------------ */

static void test_null_arguments(evs_store *s)
{
    uint64_t pos, before;
    evs_account a = EVS_STRUCT_INIT(evs_account);

    TU_SECTION("NULL arguments");
    before = next_position(s);
    pos = SENTINEL_U64;
    CHECK_STATUS(evs_account_open(NULL, "n1", 10, NULL, &pos), EVS_ERR_INVALID_ARGUMENT);
    CHECK_STATUS(evs_account_open(s, NULL, 10, NULL, &pos), EVS_ERR_INVALID_ARGUMENT);
    CHECK_STATUS(evs_account_deposit(NULL, "base", 10, &pos), EVS_ERR_INVALID_ARGUMENT);
    CHECK_STATUS(evs_account_deposit(s, NULL, 10, &pos), EVS_ERR_INVALID_ARGUMENT);
    CHECK_STATUS(evs_account_withdraw(NULL, "base", 10, &pos), EVS_ERR_INVALID_ARGUMENT);
    CHECK_STATUS(evs_account_withdraw(s, NULL, 10, &pos), EVS_ERR_INVALID_ARGUMENT);
    CHECK_STATUS(evs_account_transfer(NULL, "base", "base2", 10, &pos), EVS_ERR_INVALID_ARGUMENT);
    CHECK_STATUS(evs_account_transfer(s, NULL, "base2", 10, &pos), EVS_ERR_INVALID_ARGUMENT);
    CHECK_STATUS(evs_account_transfer(s, "base", NULL, 10, &pos), EVS_ERR_INVALID_ARGUMENT);
    CHECK_STATUS(evs_account_close(NULL, "base", &pos), EVS_ERR_INVALID_ARGUMENT);
    CHECK_STATUS(evs_account_close(s, NULL, &pos), EVS_ERR_INVALID_ARGUMENT);
    CHECK_U64(pos, SENTINEL_U64);
    CHECK_U64(next_position(s), before);

    sentinel_account(&a);
    CHECK_STATUS(evs_account_get(NULL, "base", &a), EVS_ERR_INVALID_ARGUMENT);
    CHECK_STATUS(evs_account_get(s, NULL, &a), EVS_ERR_INVALID_ARGUMENT);
    CHECK_STATUS(evs_account_get(s, "base", NULL), EVS_ERR_INVALID_ARGUMENT);
    CHECK_STATUS(evs_account_get_at(NULL, "base", UINT64_MAX, &a), EVS_ERR_INVALID_ARGUMENT);
    CHECK_STATUS(evs_account_get_at(s, NULL, UINT64_MAX, &a), EVS_ERR_INVALID_ARGUMENT);
    CHECK_STATUS(evs_account_get_at(s, "base", UINT64_MAX, NULL), EVS_ERR_INVALID_ARGUMENT);
    CHECK(is_sentinel_account(&a));

    pos = SENTINEL_U64;
    CHECK_STATUS(evs_snapshot(NULL, &pos), EVS_ERR_INVALID_ARGUMENT);
    CHECK_U64(pos, SENTINEL_U64);

    /* nothing changed */
    CHECK_U64(next_position(s), before);
    CHECK_ACCOUNT(s, "base", 1000, false, "USD", 1);
    CHECK_ACCOUNT(s, "base2", 1000, false, "USD", 1);
    CHECK_STATUS(evs_account_get(s, "n1", &a), EVS_ERR_NOT_FOUND);

    /* out_position may be NULL (evstore.h) for every account write and evs_snapshot */
    TU_SECTION("NULL out_position is allowed");
    CHECK_OK(evs_account_open(s, "nullout", 100, NULL, NULL));
    CHECK_OK(evs_account_open(s, "nullout2", 0, "USD", NULL));
    CHECK_OK(evs_account_deposit(s, "nullout", 10, NULL));
    CHECK_OK(evs_account_withdraw(s, "nullout", 5, NULL));
    CHECK_OK(evs_account_transfer(s, "nullout", "nullout2", 30, NULL));
    CHECK_OK(evs_account_close(s, "nullout2", NULL));
    CHECK_U64(next_position(s), before + 7);
    CHECK_ACCOUNT(s, "nullout", 75, false, "USD", 4);
    CHECK_ACCOUNT(s, "nullout2", 30, true, "USD", 3);
    /* and the errors are still reported */
    CHECK_STATUS(evs_account_withdraw(s, "nullout", 1000, NULL), EVS_ERR_INSUFFICIENT_FUNDS);
    CHECK_STATUS(evs_account_deposit(s, "nullout2", 1, NULL), EVS_ERR_ACCOUNT_CLOSED);
    CHECK_OK(evs_snapshot(s, NULL));
    CHECK_U64(next_position(s), before + 7);
}

static void test_amounts(evs_store *s)
{
    uint64_t pos = SENTINEL_U64, before;
    evs_account a = EVS_STRUCT_INIT(evs_account);

    TU_SECTION("amounts > 0, initial balance >= 0");
    before = next_position(s);
    CHECK_STATUS(evs_account_deposit(s, "base", 0, &pos), EVS_ERR_INVALID_ARGUMENT);
    CHECK_STATUS(evs_account_deposit(s, "base", -5, &pos), EVS_ERR_INVALID_ARGUMENT);
    CHECK_STATUS(evs_account_deposit(s, "base", INT64_MIN, &pos), EVS_ERR_INVALID_ARGUMENT);
    CHECK_STATUS(evs_account_withdraw(s, "base", 0, &pos), EVS_ERR_INVALID_ARGUMENT);
    CHECK_STATUS(evs_account_withdraw(s, "base", -1, &pos), EVS_ERR_INVALID_ARGUMENT);
    CHECK_STATUS(evs_account_withdraw(s, "base", INT64_MIN, &pos), EVS_ERR_INVALID_ARGUMENT);
    CHECK_STATUS(evs_account_transfer(s, "base", "base2", 0, &pos), EVS_ERR_INVALID_ARGUMENT);
    CHECK_STATUS(evs_account_transfer(s, "base", "base2", -1, &pos), EVS_ERR_INVALID_ARGUMENT);
    CHECK_STATUS(evs_account_transfer(s, "base", "base2", INT64_MIN, &pos),
                 EVS_ERR_INVALID_ARGUMENT);
    CHECK_STATUS(evs_account_open(s, "negative", -1, NULL, &pos), EVS_ERR_INVALID_ARGUMENT);
    CHECK_STATUS(evs_account_open(s, "negative", INT64_MIN, NULL, &pos),
                 EVS_ERR_INVALID_ARGUMENT);
    CHECK_U64(pos, SENTINEL_U64);
    CHECK_U64(next_position(s), before);
    CHECK_STATUS(evs_account_get(s, "negative", &a), EVS_ERR_NOT_FOUND);
    CHECK_ACCOUNT(s, "base", 1000, false, "USD", 1);
    CHECK_ACCOUNT(s, "base2", 1000, false, "USD", 1);

    /* zero is a fine initial balance */
    CHECK_OK(evs_account_open(s, "zero", 0, NULL, &pos));
    CHECK_ACCOUNT(s, "zero", 0, false, "USD", 1);
    CHECK_STATUS(evs_account_withdraw(s, "zero", 1, &pos), EVS_ERR_INSUFFICIENT_FUNDS);
    CHECK_OK(evs_account_deposit(s, "zero", 1, &pos));
    CHECK_ACCOUNT(s, "zero", 1, false, "USD", 2);
}

static void test_already_exists(evs_store *s)
{
    uint64_t pos = SENTINEL_U64, before;

    TU_SECTION("opening twice");
    CHECK_OK(evs_account_open(s, "dup", 300, "USD", &pos));
    before = next_position(s);
    pos = SENTINEL_U64;
    CHECK_STATUS(evs_account_open(s, "dup", 300, "USD", &pos), EVS_ERR_ALREADY_EXISTS);
    CHECK_STATUS(evs_account_open(s, "dup", 999, "EUR", &pos), EVS_ERR_ALREADY_EXISTS);
    CHECK_STATUS(evs_account_open(s, "dup", 0, NULL, &pos), EVS_ERR_ALREADY_EXISTS);
    CHECK_U64(pos, SENTINEL_U64);
    CHECK_U64(next_position(s), before);
    CHECK_ACCOUNT(s, "dup", 300, false, "USD", 1);
}

static void test_not_found(evs_store *s)
{
    uint64_t pos = SENTINEL_U64, before;
    evs_account a = EVS_STRUCT_INIT(evs_account);

    TU_SECTION("unknown accounts");
    before = next_position(s);
    CHECK_STATUS(evs_account_deposit(s, "ghost", 10, &pos), EVS_ERR_NOT_FOUND);
    CHECK_STATUS(evs_account_withdraw(s, "ghost", 10, &pos), EVS_ERR_NOT_FOUND);
    CHECK_STATUS(evs_account_transfer(s, "ghost", "base", 10, &pos), EVS_ERR_NOT_FOUND);
    CHECK_STATUS(evs_account_transfer(s, "base", "ghost", 10, &pos), EVS_ERR_NOT_FOUND);
    CHECK_STATUS(evs_account_transfer(s, "ghost", "ghost2", 10, &pos), EVS_ERR_NOT_FOUND);
    CHECK_STATUS(evs_account_close(s, "ghost", &pos), EVS_ERR_NOT_FOUND);
    CHECK_U64(pos, SENTINEL_U64);
    sentinel_account(&a);
    CHECK_STATUS(evs_account_get(s, "ghost", &a), EVS_ERR_NOT_FOUND);
    CHECK_STATUS(evs_account_get_at(s, "ghost", UINT64_MAX, &a), EVS_ERR_NOT_FOUND);
    CHECK(is_sentinel_account(&a));
    CHECK_U64(next_position(s), before);
    CHECK_ACCOUNT(s, "base", 1000, false, "USD", 1);
    /* ids are case-sensitive: "BASE" is another account */
    CHECK_STATUS(evs_account_get(s, "BASE", &a), EVS_ERR_NOT_FOUND);
}

static void test_closed(evs_store *s)
{
    uint64_t pos = SENTINEL_U64, close_pos = SENTINEL_U64, before;
    evs_account a = EVS_STRUCT_INIT(evs_account);

    TU_SECTION("closed accounts");
    CHECK_OK(evs_account_open(s, "shut", 50, NULL, &pos));
    /* closing requires nothing of the balance */
    CHECK_OK(evs_account_close(s, "shut", &close_pos));
    CHECK(close_pos != SENTINEL_U64);
    before = next_position(s);
    pos = SENTINEL_U64;
    CHECK_STATUS(evs_account_deposit(s, "shut", 10, &pos), EVS_ERR_ACCOUNT_CLOSED);
    CHECK_STATUS(evs_account_withdraw(s, "shut", 10, &pos), EVS_ERR_ACCOUNT_CLOSED);
    CHECK_STATUS(evs_account_transfer(s, "shut", "base", 10, &pos), EVS_ERR_ACCOUNT_CLOSED);
    CHECK_STATUS(evs_account_transfer(s, "base", "shut", 10, &pos), EVS_ERR_ACCOUNT_CLOSED);
    CHECK_STATUS(evs_account_close(s, "shut", &pos), EVS_ERR_ACCOUNT_CLOSED);
    CHECK_U64(pos, SENTINEL_U64);
    CHECK_U64(next_position(s), before);
    /* it can still be read */
    memset(&a, 0, sizeof a);
    a.struct_size = sizeof a;
    if (CHECK_OK(evs_account_get(s, "shut", &a))) {
        CHECK(a.is_closed);
        CHECK_I64(a.balance, 50);
        CHECK_U64(a.version, 2);
        CHECK_U64(a.last_position, close_pos);
        CHECK_STR(a.currency, "USD");
    }
    CHECK_ACCOUNT(s, "base", 1000, false, "USD", 1);
    /* a closed account cannot be opened again */
    CHECK_STATUS(evs_account_open(s, "shut", 10, NULL, &pos), EVS_ERR_ALREADY_EXISTS);
}

static void test_overflow(evs_store *s)
{
    uint64_t pos = SENTINEL_U64, before;

    TU_SECTION("balances stay in the int64 range");
    CHECK_OK(evs_account_open(s, "rich", INT64_MAX - 10, NULL, &pos));
    before = next_position(s);
    pos = SENTINEL_U64;
    CHECK_STATUS(evs_account_deposit(s, "rich", 11, &pos), EVS_ERR_OVERFLOW);
    CHECK_STATUS(evs_account_deposit(s, "rich", INT64_MAX, &pos), EVS_ERR_OVERFLOW);
    CHECK_U64(pos, SENTINEL_U64);
    CHECK_U64(next_position(s), before);
    CHECK_ACCOUNT(s, "rich", INT64_MAX - 10, false, "USD", 1);
    CHECK_OK(evs_account_deposit(s, "rich", 10, &pos));
    CHECK_ACCOUNT(s, "rich", INT64_MAX, false, "USD", 2);
    CHECK_STATUS(evs_account_deposit(s, "rich", 1, &pos), EVS_ERR_OVERFLOW);

    CHECK_OK(evs_account_open(s, "max", INT64_MAX, NULL, &pos));
    CHECK_ACCOUNT(s, "max", INT64_MAX, false, "USD", 1);
    CHECK_OK(evs_account_open(s, "one", 1, NULL, &pos));
    CHECK_STATUS(evs_account_deposit(s, "one", INT64_MAX, &pos), EVS_ERR_OVERFLOW);
    CHECK_OK(evs_account_deposit(s, "one", INT64_MAX - 1, &pos));
    CHECK_ACCOUNT(s, "one", INT64_MAX, false, "USD", 2);

    /* a transfer that would overflow the receiver changes neither account */
    CHECK_OK(evs_account_open(s, "donor", 1000, NULL, &pos));
    before = next_position(s);
    pos = SENTINEL_U64;
    CHECK_STATUS(evs_account_transfer(s, "donor", "rich", 5, &pos), EVS_ERR_OVERFLOW);
    CHECK_U64(pos, SENTINEL_U64);
    CHECK_U64(next_position(s), before);
    CHECK_ACCOUNT(s, "donor", 1000, false, "USD", 1);
    CHECK_ACCOUNT(s, "rich", INT64_MAX, false, "USD", 2);
    /* the whole int64 range works by withdrawal too */
    CHECK_OK(evs_account_withdraw(s, "max", INT64_MAX, &pos));
    CHECK_ACCOUNT(s, "max", 0, false, "USD", 2);
}

static void test_currencies(evs_store *s)
{
    uint64_t pos = SENTINEL_U64, before;
    evs_account a = EVS_STRUCT_INIT(evs_account);
    static const char *const bad[] = {"usd", "US", "USDX", "", "U$D", "U D", "Usd",
                                      BAD_UTF8 "X", "\xc3\x89UR"};
    size_t i;

    TU_SECTION("currencies");
    CHECK_OK(evs_account_open(s, "usd1", 100, "USD", &pos));
    CHECK_OK(evs_account_open(s, "usd2", 100, NULL, &pos));
    CHECK_OK(evs_account_open(s, "eur1", 100, "EUR", &pos));
    CHECK_ACCOUNT(s, "usd2", 100, false, "USD", 1);
    CHECK_ACCOUNT(s, "eur1", 100, false, "EUR", 1);

    before = next_position(s);
    pos = SENTINEL_U64;
    CHECK_STATUS(evs_account_transfer(s, "usd1", "eur1", 50, &pos), EVS_ERR_CURRENCY_MISMATCH);
    CHECK_STATUS(evs_account_transfer(s, "eur1", "usd1", 50, &pos), EVS_ERR_CURRENCY_MISMATCH);
    CHECK_U64(pos, SENTINEL_U64);
    CHECK_U64(next_position(s), before);
    CHECK_ACCOUNT(s, "usd1", 100, false, "USD", 1);
    CHECK_ACCOUNT(s, "eur1", 100, false, "EUR", 1);

    for (i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        char id[32];
        snprintf(id, sizeof id, "badcur-%u", (unsigned)i);
        pos = SENTINEL_U64;
        if (!CHECK_STATUS(evs_account_open(s, id, 100, bad[i], &pos), EVS_ERR_INVALID_ARGUMENT))
            printf("    currency #%u was accepted\n", (unsigned)i);
        CHECK_U64(pos, SENTINEL_U64);
        CHECK_STATUS(evs_account_get(s, id, &a), EVS_ERR_NOT_FOUND);
    }
    CHECK_U64(next_position(s), before);
}

static void test_transfers(evs_store *s)
{
    uint64_t pos = SENTINEL_U64, before, tpos = SENTINEL_U64;
    evs_account a = EVS_STRUCT_INIT(evs_account), b = EVS_STRUCT_INIT(evs_account);

    TU_SECTION("transfers");
    CHECK_OK(evs_account_open(s, "tx-a", 500, NULL, &pos));
    CHECK_OK(evs_account_open(s, "tx-b", 100, NULL, &pos));

    /* to itself */
    before = next_position(s);
    pos = SENTINEL_U64;
    CHECK_STATUS(evs_account_transfer(s, "tx-a", "tx-a", 10, &pos), EVS_ERR_INVALID_ARGUMENT);
    CHECK_U64(pos, SENTINEL_U64);
    /* past the balance: neither changes */
    CHECK_STATUS(evs_account_transfer(s, "tx-a", "tx-b", 501, &pos),
                 EVS_ERR_INSUFFICIENT_FUNDS);
    CHECK_U64(pos, SENTINEL_U64);
    CHECK_U64(next_position(s), before);
    CHECK_ACCOUNT(s, "tx-a", 500, false, "USD", 1);
    CHECK_ACCOUNT(s, "tx-b", 100, false, "USD", 1);

    /* a good one: both change; out_position is the withdrawal side's event */
    CHECK_OK(evs_account_transfer(s, "tx-a", "tx-b", 200, &tpos));
    CHECK_U64(tpos, before);
    CHECK_U64(next_position(s), before + 2);
    memset(&a, 0, sizeof a);
    a.struct_size = sizeof a;
    memset(&b, 0, sizeof b);
    b.struct_size = sizeof b;
    if (CHECK_OK(evs_account_get(s, "tx-a", &a)) && CHECK_OK(evs_account_get(s, "tx-b", &b))) {
        CHECK_I64(a.balance, 300);
        CHECK_I64(b.balance, 300);
        CHECK_U64(a.version, 2);
        CHECK_U64(b.version, 2);
        CHECK_U64(a.last_position, tpos);
        CHECK(b.last_position > tpos);
    }
    {
        evs_cursor *c = NULL;
        evs_event e = EVS_STRUCT_INIT(evs_event);
        if (CHECK_OK(evs_read_stream(s, "account-tx-a", 1, &c))) {
            if (CHECK_OK(evs_cursor_next(c, &e)))
                CHECK_U64(e.position, tpos);
            CHECK_STATUS(evs_cursor_next(c, &e), EVS_END);
            evs_cursor_free(c);
        }
        c = NULL;
        if (CHECK_OK(evs_read_stream(s, "account-tx-b", 1, &c))) {
            if (CHECK_OK(evs_cursor_next(c, &e)))
                CHECK_U64(e.position, b.last_position);
            CHECK_STATUS(evs_cursor_next(c, &e), EVS_END);
            evs_cursor_free(c);
        }
    }
    /* the whole balance */
    CHECK_OK(evs_account_transfer(s, "tx-b", "tx-a", 300, &pos));
    CHECK_ACCOUNT(s, "tx-a", 600, false, "USD", 3);
    CHECK_ACCOUNT(s, "tx-b", 0, false, "USD", 3);
}

static void test_ids(evs_store *s)
{
    char *id256 = repeat('i', 256), *id257 = repeat('i', 257);
    const char *bad[3];
    uint64_t pos = SENTINEL_U64, before;
    evs_account a = EVS_STRUCT_INIT(evs_account);
    int i;

    TU_SECTION("account ids");
    bad[0] = "";
    bad[1] = id257;
    bad[2] = "id-" BAD_UTF8;
    before = next_position(s);
    for (i = 0; i < 3; i++) {
        pos = SENTINEL_U64;
        CHECK_STATUS(evs_account_open(s, bad[i], 10, NULL, &pos), EVS_ERR_INVALID_ARGUMENT);
        CHECK_STATUS(evs_account_deposit(s, bad[i], 10, &pos), EVS_ERR_INVALID_ARGUMENT);
        CHECK_STATUS(evs_account_withdraw(s, bad[i], 10, &pos), EVS_ERR_INVALID_ARGUMENT);
        CHECK_STATUS(evs_account_transfer(s, bad[i], "base", 10, &pos),
                     EVS_ERR_INVALID_ARGUMENT);
        CHECK_STATUS(evs_account_transfer(s, "base", bad[i], 10, &pos),
                     EVS_ERR_INVALID_ARGUMENT);
        CHECK_STATUS(evs_account_close(s, bad[i], &pos), EVS_ERR_INVALID_ARGUMENT);
        CHECK_U64(pos, SENTINEL_U64);
        sentinel_account(&a);
        CHECK_STATUS(evs_account_get(s, bad[i], &a), EVS_ERR_INVALID_ARGUMENT);
        CHECK_STATUS(evs_account_get_at(s, bad[i], UINT64_MAX, &a), EVS_ERR_INVALID_ARGUMENT);
        CHECK(is_sentinel_account(&a));
    }
    CHECK_U64(next_position(s), before);
    CHECK_ACCOUNT(s, "base", 1000, false, "USD", 1);

    /* 256 bytes and non-ASCII UTF-8 are fine */
    CHECK_OK(evs_account_open(s, id256, 10, NULL, &pos));
    CHECK_OK(evs_account_deposit(s, id256, 5, &pos));
    CHECK_ACCOUNT(s, id256, 15, false, "USD", 2);
    CHECK_OK(evs_account_open(s, "j\xc3\xb6rg", 7, "SEK", &pos));
    CHECK_ACCOUNT(s, "j\xc3\xb6rg", 7, false, "SEK", 1);
    free(id256);
    free(id257);
}

static void test_rules(void)
{
    char path[2048];
    evs_store *s;
    uint64_t pos;

    store_path(path, sizeof path, "rules");
    s = open_store(path, NULL, NULL);
    if (s == NULL)
        return;
    CHECK_OK(evs_account_open(s, "base", 1000, NULL, &pos));
    CHECK_OK(evs_account_open(s, "base2", 1000, NULL, &pos));
    test_null_arguments(s);
    test_amounts(s);
    test_already_exists(s);
    test_not_found(s);
    test_closed(s);
    test_overflow(s);
    test_currencies(s);
    test_transfers(s);
    test_ids(s);
    CHECK_OK(evs_close(s));

    /* all of it survives a reopen */
    TU_SECTION("rules store after reopen");
    s = open_store(path, NULL, NULL);
    if (s != NULL) {
        CHECK_ACCOUNT(s, "base", 1000, false, "USD", 1);
        CHECK_ACCOUNT(s, "shut", 50, true, "USD", 2);
        CHECK_ACCOUNT(s, "rich", INT64_MAX, false, "USD", 2);
        CHECK_ACCOUNT(s, "eur1", 100, false, "EUR", 1);
        CHECK_ACCOUNT(s, "tx-a", 600, false, "USD", 3);
        CHECK_ACCOUNT(s, "tx-b", 0, false, "USD", 3);
        CHECK_ACCOUNT(s, "j\xc3\xb6rg", 7, false, "SEK", 1);
        CHECK_OK(evs_close(s));
    }
}

/* ------------------------------------------------------------------------ */
/* Read-only stores                                                          */
/* ------------------------------------------------------------------------ */

static void test_read_only(void)
{
    char path[2048];
    evs_options *o;
    evs_store *s;
    uint64_t pos = SENTINEL_U64, before;

    TU_SECTION("account operations on a read-only store");
    store_path(path, sizeof path, "seed2");
    o = evs_options_new();
    CHECK_OK(evs_options_set_read_only(o, true));
    s = open_store(path, o, NULL);
    evs_options_free(o);
    if (s == NULL)
        return;
    before = next_position(s);
    CHECK_ACCOUNT(s, "bob", 2500, false, "USD", 3);
    CHECK_STATUS(evs_account_open(s, "newbie", 10, NULL, &pos), EVS_ERR_READ_ONLY);
    CHECK_STATUS(evs_account_deposit(s, "bob", 10, &pos), EVS_ERR_READ_ONLY);
    CHECK_STATUS(evs_account_withdraw(s, "bob", 10, &pos), EVS_ERR_READ_ONLY);
    CHECK_STATUS(evs_account_transfer(s, "bob", "bob2", 10, &pos), EVS_ERR_READ_ONLY);
    CHECK_STATUS(evs_account_close(s, "bob", &pos), EVS_ERR_READ_ONLY);
    CHECK_STATUS(evs_snapshot(s, &pos), EVS_ERR_READ_ONLY);
    CHECK_U64(pos, SENTINEL_U64);
    CHECK_U64(next_position(s), before);
    CHECK_ACCOUNT(s, "bob", 2500, false, "USD", 3);
    CHECK_ACCOUNT(s, "bob2", 10, false, "USD", 1);
    {
        evs_account a = EVS_STRUCT_INIT(evs_account);
        CHECK_STATUS(evs_account_get(s, "newbie", &a), EVS_ERR_NOT_FOUND);
    }
    CHECK_OK(evs_close(s));
}

/* ------------------------------------------------------------------------ */
/* Time travel                                                               */
/* ------------------------------------------------------------------------ */

#define TT_EVENTS 6

static void test_time_travel(void)
{
    char path[2048];
    evs_store *s;
    /* open 100, deposit 50, withdraw 30, deposit 5, transfer 25 out, close */
    static const int64_t delta[TT_EVENTS] = {100, 50, -30, 5, -25, 0};
    uint64_t ts[TT_EVENTS], positions[TT_EVENTS], pos;
    evs_cursor *c = NULL;
    evs_event e = EVS_STRUCT_INIT(evs_event);
    int i, n = 0;

    TU_SECTION("time travel with evs_account_get_at");
    store_path(path, sizeof path, "timetravel");
    s = open_store(path, NULL, NULL);
    if (s == NULL)
        return;
    CHECK_OK(evs_account_open(s, "other", 0, NULL, &pos));
    tu_sleep_ms(3);
    CHECK_OK(evs_account_open(s, "tt", 100, NULL, &pos));
    tu_sleep_ms(3);
    CHECK_OK(evs_account_deposit(s, "tt", 50, &pos));
    tu_sleep_ms(3);
    CHECK_OK(evs_account_withdraw(s, "tt", 30, &pos));
    tu_sleep_ms(3);
    CHECK_OK(evs_account_deposit(s, "tt", 5, &pos));
    tu_sleep_ms(3);
    CHECK_OK(evs_account_transfer(s, "tt", "other", 25, &pos));
    tu_sleep_ms(3);
    CHECK_OK(evs_account_close(s, "tt", &pos));
    tu_sleep_ms(3);
    CHECK_OK(evs_account_open(s, "late", 1, NULL, &pos));

    /* the real event timestamps */
    if (!CHECK_OK(evs_read_stream(s, "account-tt", 0, &c))) {
        CHECK_OK(evs_close(s));
        return;
    }
    while (n < TT_EVENTS && evs_cursor_next(c, &e) == EVS_OK) {
        ts[n] = e.timestamp_us;
        positions[n] = e.position;
        n++;
    }
    CHECK_STATUS(evs_cursor_next(c, &e), EVS_END);
    evs_cursor_free(c);
    if (!CHECK(n == TT_EVENTS)) {
        CHECK_OK(evs_close(s));
        return;
    }

    /* at each event, between events, and after the last */
    for (i = 0; i < TT_EVENTS; i++) {
        uint64_t queries[2];
        int q, nq = 1;
        queries[0] = ts[i];
        if (i + 1 < TT_EVENTS && ts[i + 1] > ts[i] + 1)
            queries[nq++] = ts[i] + (ts[i + 1] - ts[i]) / 2;
        for (q = 0; q < nq; q++) {
            int64_t want_balance = 0;
            uint64_t want_version = 0, want_last = 0;
            int j;
            evs_account a = EVS_STRUCT_INIT(evs_account);
            /* the state from the events at or before the time */
            for (j = 0; j < TT_EVENTS; j++) {
                if (ts[j] <= queries[q]) {
                    want_balance += delta[j];
                    want_version++;
                    want_last = positions[j];
                }
            }
            memset(&a, 0, sizeof a);
            a.struct_size = sizeof a;
            if (CHECK_OK(evs_account_get_at(s, "tt", queries[q], &a))) {
                CHECK_I64(a.balance, want_balance);
                CHECK_U64(a.version, want_version);
                CHECK_U64(a.last_position, want_last);
                CHECK(a.is_closed == (want_version == TT_EVENTS));
                CHECK_STR(a.currency, "USD");
            }
        }
    }
    {
        evs_account a = EVS_STRUCT_INIT(evs_account), now = EVS_STRUCT_INIT(evs_account);
        /* far in the future: the current state */
        memset(&a, 0, sizeof a);
        a.struct_size = sizeof a;
        memset(&now, 0, sizeof now);
        now.struct_size = sizeof now;
        if (CHECK_OK(evs_account_get_at(s, "tt", UINT64_MAX, &a)) &&
            CHECK_OK(evs_account_get(s, "tt", &now))) {
            CHECK_I64(a.balance, 100);
            CHECK(a.is_closed);
            CHECK_I64(a.balance, now.balance);
            CHECK_U64(a.version, now.version);
            CHECK_U64(a.last_position, now.last_position);
            CHECK(a.is_closed == now.is_closed);
            CHECK_STR(a.currency, now.currency);
        }
        /* before the open: NOT_FOUND, out untouched */
        sentinel_account(&a);
        CHECK_STATUS(evs_account_get_at(s, "tt", ts[0] - 1, &a), EVS_ERR_NOT_FOUND);
        CHECK_STATUS(evs_account_get_at(s, "tt", 0, &a), EVS_ERR_NOT_FOUND);
        CHECK(is_sentinel_account(&a));
        /* an account opened after the time */
        CHECK_STATUS(evs_account_get_at(s, "late", ts[TT_EVENTS - 1], &a), EVS_ERR_NOT_FOUND);
        CHECK(is_sentinel_account(&a));
        /* the other side of the transfer, at and just before its event's time */
        c = NULL;
        if (CHECK_OK(evs_read_stream(s, "account-other", 1, &c))) {
            if (CHECK_OK(evs_cursor_next(c, &e))) {
                uint64_t t_in = e.timestamp_us;
                CHECK(t_in >= ts[4]);
                memset(&a, 0, sizeof a);
                a.struct_size = sizeof a;
                if (CHECK_OK(evs_account_get_at(s, "other", t_in, &a))) {
                    CHECK_I64(a.balance, 25);
                    CHECK_U64(a.version, 2);
                }
                if (CHECK_OK(evs_account_get_at(s, "other", t_in - 1, &a))) {
                    CHECK_I64(a.balance, 0);
                    CHECK_U64(a.version, 1);
                }
            }
            evs_cursor_free(c);
        }
    }
    CHECK_OK(evs_close(s));

    /* the same after reopening */
    s = open_store(path, NULL, NULL);
    if (s != NULL) {
        evs_account a = EVS_STRUCT_INIT(evs_account);
        memset(&a, 0, sizeof a);
        a.struct_size = sizeof a;
        if (CHECK_OK(evs_account_get_at(s, "tt", ts[2], &a))) {
            CHECK_I64(a.balance, 120);
            CHECK_U64(a.version, 3);
        }
        CHECK_OK(evs_close(s));
    }
}

/* ------------------------------------------------------------------------ */
/* Concurrency                                                               */
/* ------------------------------------------------------------------------ */

#define CONC_THREADS 8
#define CONC_ACCOUNTS 50

struct conc_thread {
    int id;
    evs_store *store;
    long ops;
    int64_t delta[CONC_ACCOUNTS];   /* sum of the accepted operations */
    uint64_t events[CONC_ACCOUNTS]; /* accepted operations touching the account */
    long accepted, refused, unexpected;
};

static int64_t conc_initial(int i)
{
    return 1000 + 10 * (int64_t)i;
}

static void conc_id(char *buf, size_t cap, int i)
{
    snprintf(buf, cap, "acct-%02d", i);
}

static void *conc_main(void *arg)
{
    struct conc_thread *t = (struct conc_thread *)arg;
    uint64_t rng = 0xA5A5A5A5DEADBEEFull ^ ((uint64_t)(t->id + 1) * 0x9E3779B97F4A7C15ull);
    long k;
    for (k = 0; k < t->ops; k++) {
        int a = (int)(tu_rand(&rng) % CONC_ACCOUNTS);
        int op = (int)(tu_rand(&rng) % 3);
        char ida[16], idb[16];
        uint64_t pos = SENTINEL_U64;
        evs_status st;
        int64_t amount;
        conc_id(ida, sizeof ida, a);
        if (op == 0) {
            amount = 1 + (int64_t)(tu_rand(&rng) % 100);
            st = evs_account_deposit(t->store, ida, amount, &pos);
            if (st == EVS_OK) {
                t->delta[a] += amount;
                t->events[a]++;
            }
        } else if (op == 1) {
            amount = 1 + (int64_t)(tu_rand(&rng) % 200);
            st = evs_account_withdraw(t->store, ida, amount, &pos);
            if (st == EVS_OK) {
                t->delta[a] -= amount;
                t->events[a]++;
            }
        } else {
            int b = (int)(tu_rand(&rng) % (CONC_ACCOUNTS - 1));
            if (b >= a)
                b++;
            conc_id(idb, sizeof idb, b);
            amount = 1 + (int64_t)(tu_rand(&rng) % 200);
            st = evs_account_transfer(t->store, ida, idb, amount, &pos);
            if (st == EVS_OK) {
                t->delta[a] -= amount;
                t->delta[b] += amount;
                t->events[a]++;
                t->events[b]++;
            }
        }
        if (st == EVS_OK) {
            t->accepted++;
            if (pos == SENTINEL_U64)
                t->unexpected++;
        } else if (st == EVS_ERR_INSUFFICIENT_FUNDS) {
            t->refused++;
            if (pos != SENTINEL_U64)
                t->unexpected++;
        } else {
            if (t->unexpected < 5)
                CHECK_OK(st); /* prints the unexpected status */
            t->unexpected++;
        }
    }
    return NULL;
}

static void conc_check_balances(evs_store *s, const int64_t *expected, const uint64_t *versions)
{
    int i;
    long wrong = 0, negative = 0;
    int64_t total = 0, want_total = 0;
    for (i = 0; i < CONC_ACCOUNTS; i++) {
        char id[16];
        evs_account a = EVS_STRUCT_INIT(evs_account);
        conc_id(id, sizeof id, i);
        memset(&a, 0, sizeof a);
        a.struct_size = sizeof a;
        if (!CHECK_OK(evs_account_get(s, id, &a))) {
            wrong++;
            continue;
        }
        if (a.balance != expected[i] || a.version != versions[i] || a.is_closed) {
            if (wrong < 5)
                printf("    %s: balance %" PRId64 " (expected %" PRId64 "), version %" PRIu64
                       " (expected %" PRIu64 ")%s\n",
                       id, a.balance, expected[i], a.version, versions[i],
                       a.is_closed ? ", closed" : "");
            wrong++;
        }
        if (a.balance < 0)
            negative++;
        total += a.balance;
        want_total += expected[i];
    }
    CHECK_I64(wrong, 0);
    CHECK_I64(negative, 0);
    CHECK_I64(total, want_total);
}

static void test_concurrency(long total_ops)
{
    char path[2048];
    evs_store *s;
    evs_options *o;
    evs_recovery_info info = EVS_STRUCT_INIT(evs_recovery_info);
    struct conc_thread *th;
    pthread_t tids[CONC_THREADS];
    int64_t expected[CONC_ACCOUNTS];
    uint64_t versions[CONC_ACCOUNTS], events_total = CONC_ACCOUNTS, snap_pos = SENTINEL_U64;
    long accepted = 0, refused = 0, unexpected = 0;
    int i, j;
    uint64_t pos;

    TU_SECTION("concurrency: 8 threads, random operations over 50 accounts");
    printf("%d threads, %ld operations over %d accounts\n", CONC_THREADS, total_ops,
           CONC_ACCOUNTS);
    th = (struct conc_thread *)calloc(CONC_THREADS, sizeof *th);
    if (!CHECK(th != NULL))
        return;
    store_path(path, sizeof path, "concurrency");
    o = evs_options_new();
    CHECK_OK(evs_options_set_snapshot_every(o, 0));
    s = open_store(path, o, NULL);
    if (s == NULL) {
        evs_options_free(o);
        free(th);
        return;
    }
    for (i = 0; i < CONC_ACCOUNTS; i++) {
        char id[16];
        conc_id(id, sizeof id, i);
        CHECK_OK(evs_account_open(s, id, conc_initial(i), NULL, &pos));
    }
    for (i = 0; i < CONC_THREADS; i++) {
        th[i].id = i;
        th[i].store = s;
        th[i].ops = total_ops / CONC_THREADS + (i == 0 ? total_ops % CONC_THREADS : 0);
    }
    for (i = 0; i < CONC_THREADS; i++)
        CHECK(pthread_create(&tids[i], NULL, conc_main, &th[i]) == 0);
    for (i = 0; i < CONC_THREADS; i++)
        CHECK(pthread_join(tids[i], NULL) == 0);

    for (i = 0; i < CONC_ACCOUNTS; i++) {
        expected[i] = conc_initial(i);
        versions[i] = 1;
    }
    for (j = 0; j < CONC_THREADS; j++) {
        accepted += th[j].accepted;
        refused += th[j].refused;
        unexpected += th[j].unexpected;
        for (i = 0; i < CONC_ACCOUNTS; i++) {
            expected[i] += th[j].delta[i];
            versions[i] += th[j].events[i];
            events_total += th[j].events[i];
        }
    }
    printf("accepted %ld, refused (insufficient funds) %ld\n", accepted, refused);
    CHECK_I64(unexpected, 0);
    CHECK_I64(accepted + refused, total_ops);
    CHECK(accepted > 0);
    conc_check_balances(s, expected, versions);
    /* each accepted deposit/withdrawal is one event, each transfer two */
    CHECK_U64(next_position(s), events_total);
    CHECK_OK(evs_close(s));

    TU_SECTION("concurrency: the same after reopening without a snapshot");
    memset(&info, 0xAB, sizeof info);
    info.struct_size = sizeof info;
    s = open_store(path, o, &info);
    if (s != NULL) {
        /* PostgreSQL starts from the projections' checkpoint (docs/postgres.md) */
        if (tu_pg())
            CHECK(info.snapshot_position <= events_total);
        else
            CHECK_U64(info.snapshot_position, UINT64_MAX);
        CHECK_U64(info.next_position, events_total);
        CHECK(!info.corruption_detected);
        conc_check_balances(s, expected, versions);
        CHECK_OK(evs_snapshot(s, &snap_pos));
        CHECK(snap_pos != SENTINEL_U64);
        CHECK(snap_pos <= events_total);
        CHECK_OK(evs_close(s));
    }

    TU_SECTION("concurrency: the same after reopening from the snapshot");
    memset(&info, 0xAB, sizeof info);
    info.struct_size = sizeof info;
    s = open_store(path, NULL, &info);
    if (s != NULL) {
        if (!tu_skip_on_pg("the snapshot a reopen starts from", SNAP_FILES)) {
            CHECK(info.snapshot_position != UINT64_MAX);
            CHECK_U64(info.snapshot_position, snap_pos);
        }
        CHECK_U64(info.next_position, events_total);
        CHECK(!info.corruption_detected);
        conc_check_balances(s, expected, versions);
        /* and it goes on from there */
        CHECK_OK(evs_account_deposit(s, "acct-00", 1, &pos));
        CHECK_U64(pos, events_total);
        expected[0] += 1;
        versions[0] += 1;
        conc_check_balances(s, expected, versions);
        {
            evs_account a = EVS_STRUCT_INIT(evs_account);
            evs_cursor *c = NULL;
            evs_event e = EVS_STRUCT_INIT(evs_event);
            memset(&a, 0, sizeof a);
            a.struct_size = sizeof a;
            if (CHECK_OK(evs_account_get_at(s, "acct-01", UINT64_MAX, &a))) {
                CHECK_I64(a.balance, expected[1]);
                CHECK_U64(a.version, versions[1]);
            }
            /* time travel reaches back before the snapshot */
            if (CHECK_OK(evs_read_stream(s, "account-acct-02", 0, &c))) {
                if (CHECK_OK(evs_cursor_next(c, &e))) {
                    memset(&a, 0, sizeof a);
                    a.struct_size = sizeof a;
                    if (CHECK_OK(evs_account_get_at(s, "acct-02", e.timestamp_us, &a))) {
                        CHECK(a.version >= 1);
                        if (a.version == 1)
                            CHECK_I64(a.balance, conc_initial(2));
                    }
                }
                evs_cursor_free(c);
            }
        }
        CHECK_OK(evs_close(s));
    }
    evs_options_free(o);
    free(th);
}

/* Transfers in both directions between three accounts from 8 threads: no deadlock, no
   lost update, money is conserved. */
struct hot_acc {
    evs_store *store;
    int id;
    long ops;
    int64_t delta[3];
    uint64_t events[3];
    long accepted;
    long unexpected;
};

static void *hot_acc_main(void *arg)
{
    struct hot_acc *h = (struct hot_acc *)arg;
    static const char *const ids[3] = {"hot-a", "hot-b", "hot-c"};
    uint64_t rng = 777u + (uint64_t)h->id * 0x9E3779B97F4A7C15ull;
    long k;
    for (k = 0; k < h->ops; k++) {
        int a = (int)(tu_rand(&rng) % 3), b = (a + 1 + (int)(tu_rand(&rng) % 2)) % 3;
        int64_t amount = 1 + (int64_t)(tu_rand(&rng) % 50);
        evs_status st = evs_account_transfer(h->store, ids[a], ids[b], amount, NULL);
        if (st == EVS_OK) {
            h->delta[a] -= amount;
            h->delta[b] += amount;
            h->events[a]++;
            h->events[b]++;
            h->accepted++;
        } else if (st != EVS_ERR_INSUFFICIENT_FUNDS) {
            if (h->unexpected++ < 3)
                CHECK_OK(st);
        }
    }
    return NULL;
}

static void test_hot_accounts(void)
{
    char path[2048];
    evs_store *s;
    struct hot_acc h[8];
    pthread_t t[8];
    static const char *const ids[3] = {"hot-a", "hot-b", "hot-c"};
    int64_t want[3] = {300, 300, 300};
    uint64_t events[3] = {1, 1, 1};
    long accepted = 0, unexpected = 0;
    int i, j;

    TU_SECTION("8 threads transferring among 3 accounts");
    store_path(path, sizeof path, "hot-accounts");
    s = open_store(path, NULL, NULL);
    if (s == NULL)
        return;
    for (i = 0; i < 3; i++)
        CHECK_OK(evs_account_open(s, ids[i], 300, NULL, NULL));
    memset(h, 0, sizeof h);
    for (i = 0; i < 8; i++) {
        h[i].store = s;
        h[i].id = i;
        h[i].ops = tu_scaled(1000);
        CHECK(pthread_create(&t[i], NULL, hot_acc_main, &h[i]) == 0);
    }
    for (i = 0; i < 8; i++)
        CHECK(pthread_join(t[i], NULL) == 0);
    for (i = 0; i < 8; i++) {
        accepted += h[i].accepted;
        unexpected += h[i].unexpected;
        for (j = 0; j < 3; j++) {
            want[j] += h[i].delta[j];
            events[j] += h[i].events[j];
        }
    }
    CHECK_I64(unexpected, 0);
    CHECK(accepted > 0);
    for (j = 0; j < 3; j++)
        CHECK_ACCOUNT(s, ids[j], want[j], false, "USD", events[j]);
    CHECK_I64(want[0] + want[1] + want[2], 900);
    CHECK_OK(evs_close(s));
}

/* ------------------------------------------------------------------------ */
/* Ids that need JSON escaping; snapshots that must not be trusted          */
/* ------------------------------------------------------------------------ */

static void test_json_ids(void)
{
    static const char *const ids[] = {"quo\"te", "back\\slash", "new\nline", "tab\tand\x01",
                                      "{\"AccountOpened\":{}}", "caf\xc3\xa9 \xf0\x9f\x92\xb0"};
    const size_t n = sizeof ids / sizeof ids[0];
    char path[2048];
    evs_store *s;
    size_t i;

    TU_SECTION("ids that need escaping in the JSON payloads");
    store_path(path, sizeof path, "json-ids");
    s = open_store(path, NULL, NULL);
    if (s == NULL)
        return;
    for (i = 0; i < n; i++) {
        CHECK_OK(evs_account_open(s, ids[i], 10, NULL, NULL));
        CHECK_OK(evs_account_deposit(s, ids[i], 5, NULL));
    }
    CHECK_OK(evs_account_transfer(s, ids[0], ids[1], 3, NULL));
    {
        /* the deposit's payload escapes the quote */
        evs_cursor *c = NULL;
        evs_event e = EVS_STRUCT_INIT(evs_event);
        static const char want[] = "{\"MoneyDeposited\":{\"account_id\":\"quo\\\"te\",\"amount\":5}}";
        if (CHECK_OK(evs_read_stream(s, "account-quo\"te", 1, &c))) {
            if (CHECK_OK(evs_cursor_next(c, &e)))
                CHECK_VIEW((const char *)e.payload, e.payload_len, want);
            evs_cursor_free(c);
        }
    }
    CHECK_OK(evs_close(s));
    s = open_store(path, NULL, NULL);
    if (s == NULL)
        return;
    for (i = 0; i < n; i++) {
        int64_t want = i == 0 ? 12 : i == 1 ? 18 : 15;
        uint64_t version = i < 2 ? 3 : 2;
        CHECK_ACCOUNT(s, ids[i], want, false, "USD", version);
    }
    CHECK_OK(evs_close(s));
}

/* Applies fn to every regular file directly in dir. */
static int for_each_file(const char *dir, int (*fn)(const char *file, void *arg), void *arg)
{
    DIR *d = opendir(dir);
    struct dirent *e;
    int n = 0;
    if (d == NULL)
        return -1;
    while ((e = readdir(d)) != NULL) {
        char file[4096];
        struct stat st;
        snprintf(file, sizeof file, "%s/%s", dir, e->d_name);
        if (stat(file, &st) == 0 && S_ISREG(st.st_mode) && fn(file, arg))
            n++;
    }
    closedir(d);
    return n;
}

/* Flips one byte in the middle of the file. */
static int damage_file(const char *file, void *arg)
{
    struct stat st;
    FILE *f;
    int ch;
    (void)arg;
    if (stat(file, &st) != 0 || st.st_size == 0)
        return 0;
    f = fopen(file, "r+b");
    if (f == NULL)
        return 0;
    fseek(f, (long)(st.st_size / 2), SEEK_SET);
    ch = fgetc(f);
    fseek(f, (long)(st.st_size / 2), SEEK_SET);
    fputc(ch ^ 0xFF, f);
    fclose(f);
    return 1;
}

/* Copies the file into the directory given as arg. */
static int copy_file_into(const char *file, void *arg)
{
    const char *dir = (const char *)arg;
    const char *base = strrchr(file, '/');
    char to[4096], buf[65536];
    FILE *in, *out;
    size_t n;
    int ok = 1;
    snprintf(to, sizeof to, "%s/%s", dir, base ? base + 1 : file);
    in = fopen(file, "rb");
    out = fopen(to, "wb");
    if (in == NULL || out == NULL) {
        if (in)
            fclose(in);
        if (out)
            fclose(out);
        return 0;
    }
    while ((n = fread(buf, 1, sizeof buf, in)) > 0)
        if (fwrite(buf, 1, n, out) != n)
            ok = 0;
    fclose(in);
    if (fclose(out) != 0)
        ok = 0;
    return ok;
}

static void test_snapshot_safety(void)
{
    char path[2048], events[2100], backup[2100], snaps[2100];
    evs_store *s;
    evs_recovery_info info = EVS_STRUCT_INIT(evs_recovery_info);
    uint64_t sp = SENTINEL_U64;

    TU_SECTION("a snapshot is used, and ignored when damaged or ahead of the log");
    store_path(path, sizeof path, "snapshot-safety");
    tu_join(events, sizeof events, path, "events");
    tu_join(backup, sizeof backup, path, "events-backup");
    tu_join(snaps, sizeof snaps, path, "snapshots");
    s = open_store(path, NULL, NULL);
    if (s == NULL)
        return;
    CHECK_OK(evs_account_open(s, "s1", 100, NULL, NULL));
    CHECK_OK(evs_account_open(s, "s2", 50, NULL, NULL));
    CHECK_OK(evs_account_deposit(s, "s1", 10, NULL));
    CHECK_OK(evs_close(s));
    /* the log as it is now, 3 events */
    CHECK(mkdir(backup, 0700) == 0);
    CHECK(for_each_file(events, copy_file_into, backup) >= 1);

    s = open_store(path, NULL, NULL);
    if (s == NULL)
        return;
    CHECK_OK(evs_account_deposit(s, "s1", 5, NULL));
    CHECK_OK(evs_account_withdraw(s, "s2", 20, NULL));
    CHECK_OK(evs_snapshot(s, &sp));
    CHECK_U64(sp, 5);
    CHECK_OK(evs_close(s));

    /* used */
    memset(&info, 0xAB, sizeof info);
    info.struct_size = sizeof info;
    s = open_store(path, NULL, &info);
    if (s == NULL)
        return;
    CHECK_U64(info.snapshot_position, 5);
    CHECK_U64(info.next_position, 5);
    CHECK_ACCOUNT(s, "s1", 115, false, "USD", 3);
    CHECK_ACCOUNT(s, "s2", 30, false, "USD", 2);
    CHECK_OK(evs_close(s));

    /* damaged: ignored, the state is rebuilt from the log */
    CHECK(for_each_file(snaps, damage_file, NULL) >= 1);
    memset(&info, 0xAB, sizeof info);
    info.struct_size = sizeof info;
    s = open_store(path, NULL, &info);
    if (s == NULL)
        return;
    CHECK_U64(info.snapshot_position, UINT64_MAX);
    CHECK_U64(info.next_position, 5);
    CHECK_ACCOUNT(s, "s1", 115, false, "USD", 3);
    CHECK_ACCOUNT(s, "s2", 30, false, "USD", 2);
    CHECK_OK(evs_snapshot(s, &sp)); /* a good one again */
    CHECK_U64(sp, 5);
    CHECK_OK(evs_close(s));

    /* ahead of the log (the log is back to its first 3 events): ignored */
    CHECK(tu_remove_tree(events) == 0);
    CHECK(rename(backup, events) == 0);
    memset(&info, 0xAB, sizeof info);
    info.struct_size = sizeof info;
    s = open_store(path, NULL, &info);
    if (s == NULL)
        return;
    CHECK_U64(info.snapshot_position, UINT64_MAX);
    CHECK_U64(info.next_position, 3);
    CHECK_ACCOUNT(s, "s1", 110, false, "USD", 2);
    CHECK_ACCOUNT(s, "s2", 50, false, "USD", 1);
    {
        uint64_t pos = SENTINEL_U64;
        int64_t v = -5;
        CHECK_OK(evs_account_withdraw(s, "s2", 1, &pos));
        CHECK_U64(pos, 3);
        CHECK_OK(evs_stream_version(s, "account-s2", &v));
        CHECK_I64(v, 1);
    }
    CHECK_OK(evs_close(s));
}

static void test_snapshot_of_empty_store(void)
{
    char path[2048];
    evs_store *s;
    evs_recovery_info info = EVS_STRUCT_INIT(evs_recovery_info);
    uint64_t sp = SENTINEL_U64, pos = SENTINEL_U64;

    TU_SECTION("a snapshot of an empty store");
    store_path(path, sizeof path, "snapshot-empty");
    s = open_store(path, NULL, NULL);
    if (s == NULL)
        return;
    CHECK_OK(evs_snapshot(s, &sp));
    CHECK_U64(sp, 0);
    CHECK_OK(evs_close(s));
    memset(&info, 0xAB, sizeof info);
    info.struct_size = sizeof info;
    s = open_store(path, NULL, &info);
    if (s == NULL)
        return;
    CHECK_U64(info.next_position, 0);
    CHECK(info.snapshot_position == 0 || info.snapshot_position == UINT64_MAX);
    CHECK_OK(evs_account_open(s, "first", 1, NULL, &pos));
    CHECK_U64(pos, 0);
    CHECK_ACCOUNT(s, "first", 1, false, "USD", 1);
    CHECK_OK(evs_close(s));
}

static void test_automatic_snapshots(void)
{
    char path[2048];
    evs_store *s;
    evs_options *o;
    evs_recovery_info info = EVS_STRUCT_INIT(evs_recovery_info);
    int i;

    TU_SECTION("automatic snapshots (evs_options_set_snapshot_every)");
    store_path(path, sizeof path, "auto-snapshot");
    o = evs_options_new();
    CHECK_OK(evs_options_set_snapshot_every(o, 10));
    s = open_store(path, o, NULL);
    evs_options_free(o);
    if (s == NULL)
        return;
    CHECK_OK(evs_account_open(s, "auto", 0, NULL, NULL));
    for (i = 1; i <= 34; i++)
        CHECK_OK(evs_account_deposit(s, "auto", i, NULL));
    CHECK_OK(evs_close(s));
    memset(&info, 0xAB, sizeof info);
    info.struct_size = sizeof info;
    s = open_store(path, NULL, &info);
    if (s == NULL)
        return;
    if (!tu_skip_on_pg("the automatic snapshot a reopen starts from", SNAP_FILES)) {
        CHECK(info.snapshot_position != UINT64_MAX);
        CHECK(info.snapshot_position >= 10 && info.snapshot_position <= 35);
    }
    CHECK_U64(info.next_position, 35);
    CHECK_ACCOUNT(s, "auto", 34 * 35 / 2, false, "USD", 35);
    {
        /* time travel still reaches back before the snapshot */
        evs_cursor *c = NULL;
        evs_event e = EVS_STRUCT_INIT(evs_event);
        evs_account a = EVS_STRUCT_INIT(evs_account);
        if (CHECK_OK(evs_read_stream(s, "account-auto", 2, &c))) {
            if (CHECK_OK(evs_cursor_next(c, &e))) {
                memset(&a, 0, sizeof a);
                a.struct_size = sizeof a;
                if (CHECK_OK(evs_account_get_at(s, "auto", e.timestamp_us, &a))) {
                    /* at least the open and two deposits, and whatever shares the time */
                    CHECK(a.version >= 3);
                    CHECK_I64(a.balance, (int64_t)(a.version - 1) * (int64_t)a.version / 2);
                }
            }
            evs_cursor_free(c);
        }
    }
    CHECK_OK(evs_close(s));
}

int main(int argc, char **argv)
{
    int only_concurrency = argc > 1 && strcmp(argv[1], "concurrency") == 0;
    if (argc > 1 && !only_concurrency) {
        fprintf(stderr, "usage: %s [concurrency]\n", argv[0]);
        return 2;
    }
    if (!tu_make_temp_dir(g_root, sizeof g_root))
        return tu_finish();
    if (only_concurrency) {
        test_concurrency(100000);
    } else {
        test_seed();
        test_rules();
        test_read_only();
        test_time_travel();
        test_hot_accounts();
        test_json_ids();
        if (!tu_skip_on_pg("snapshots damaged or ahead of the log", SNAP_FILES))
            test_snapshot_safety();
        test_snapshot_of_empty_store();
        test_automatic_snapshots();
        test_concurrency(tu_scaled(100000));
    }
    tu_cleanup_dir(g_root);
    return tu_finish();
}
