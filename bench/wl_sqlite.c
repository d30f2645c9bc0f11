/* The SQLite side of each workload: the system's libsqlite3, WAL journal mode, the
 * table of issue 8, prepared statements reused for the whole run. */
#define _GNU_SOURCE
#include "bench.h"

#include <pthread.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define CREATE_EVENTS                                                                   \
    "CREATE TABLE IF NOT EXISTS events(pos INTEGER PRIMARY KEY, stream TEXT, "          \
    "version INTEGER, type TEXT, ts INTEGER, payload BLOB, UNIQUE(stream, version))"
#define CREATE_ACCOUNTS                                                                 \
    "CREATE TABLE IF NOT EXISTS accounts(id TEXT PRIMARY KEY, balance INTEGER, "       \
    "currency TEXT, closed INTEGER)"
/* "append to a stream with no version check": the next version is assigned inside
 * the statement, as evstore assigns it inside evs_append. */
#define INSERT_ANY                                                                      \
    "INSERT INTO events(stream, version, type, ts, payload) VALUES(?1, "               \
    "(SELECT coalesce(max(version), -1) + 1 FROM events WHERE stream = ?1), ?2, ?3, ?4)"
#define INSERT_AT                                                                       \
    "INSERT INTO events(stream, version, type, ts, payload) VALUES(?1, ?2, ?3, ?4, ?5)"
#define SELECT_COLUMNS "SELECT pos, stream, version, type, ts, payload FROM events "

const char *sq_lib_version(void) { return sqlite3_libversion(); }

static void sq_die(sqlite3 *db, const char *what) {
    fatal("SQLite: %s: %s", what, db ? sqlite3_errmsg(db) : "(no connection)");
}

static void sq_exec(sqlite3 *db, const char *sql) {
    char *err = NULL;
    if (sqlite3_exec(db, sql, NULL, NULL, &err) != SQLITE_OK) fatal("SQLite: %s: %s", sql, err);
}

static sqlite3_stmt *sq_prepare(sqlite3 *db, const char *sql) {
    sqlite3_stmt *st = NULL;
    if (sqlite3_prepare_v2(db, sql, -1, &st, NULL) != SQLITE_OK) sq_die(db, sql);
    return st;
}

static int64_t sq_int(sqlite3 *db, const char *sql) {
    sqlite3_stmt *st = sq_prepare(db, sql);
    if (sqlite3_step(st) != SQLITE_ROW) sq_die(db, sql);
    int64_t v = sqlite3_column_int64(st, 0);
    sqlite3_finalize(st);
    return v;
}

/* Runs a statement that returns no row (or whose row is ignored) and resets it. */
static int sq_step_done(sqlite3 *db, sqlite3_stmt *st, const char *what) {
    int rc = sqlite3_step(st);
    sqlite3_reset(st);
    if (rc != SQLITE_DONE && rc != SQLITE_ROW) {
        if (rc == SQLITE_BUSY) return rc;
        sq_die(db, what);
    }
    return SQLITE_OK;
}

/* Opens (and with fresh != 0 first deletes) a database in the bench directory. */
static sqlite3 *sq_open_db(const char *name, const char *synchronous, int fresh) {
    char path[4096];
    path_in_dir(path, sizeof path, name);
    if (fresh) remove_tree(path);
    sqlite3 *db = NULL;
    int flags = SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX;
    if (sqlite3_open_v2(path, &db, flags, NULL) != SQLITE_OK) sq_die(db, path);
    sqlite3_busy_timeout(db, 30000); /* matters only where connections share a file (2) */
    sqlite3_stmt *st = sq_prepare(db, "PRAGMA journal_mode=WAL");
    if (sqlite3_step(st) != SQLITE_ROW || strcmp((const char *)sqlite3_column_text(st, 0), "wal"))
        sq_die(db, "PRAGMA journal_mode=WAL did not give wal");
    sqlite3_finalize(st);
    char sql[64];
    snprintf(sql, sizeof sql, "PRAGMA synchronous=%s", synchronous);
    sq_exec(db, sql);
    if (fresh) sq_exec(db, CREATE_EVENTS);
    return db;
}

static void bind_event(sqlite3_stmt *st, const char *stream, const uint8_t *payload) {
    sqlite3_bind_text(st, 1, stream, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 2, EVENT_TYPE, -1, SQLITE_STATIC);
    sqlite3_bind_int64(st, 3, wall_us());
    sqlite3_bind_blob(st, 4, payload, cfg.payload_size, SQLITE_STATIC);
}

/* The events of one stream are versions 0..n-1 and nothing else. */
static int sq_check_stream(sqlite3 *db, const char *stream, long n, const char *wl) {
    sqlite3_stmt *st = sq_prepare(db, "SELECT count(*), coalesce(max(version), -1) FROM events WHERE stream = ?1");
    sqlite3_bind_text(st, 1, stream, -1, SQLITE_STATIC);
    if (sqlite3_step(st) != SQLITE_ROW) sq_die(db, "count stream");
    long cnt = (long)sqlite3_column_int64(st, 0), maxv = (long)sqlite3_column_int64(st, 1);
    sqlite3_finalize(st);
    if (cnt != n || maxv != n - 1) {
        problem("%s SQLite: stream %s has %ld events up to version %ld, expected %ld", wl, stream, cnt, maxv, n);
        return -1;
    }
    return 0;
}

/* ---------- 1: durable single appends, synchronous=FULL, a transaction per event ---------- */
int sq_single(double *m) {
    sqlite3 *db = sq_open_db("w1-sqlite.db", "FULL", 1);
    sqlite3_stmt *ins = sq_prepare(db, INSERT_ANY);
    uint8_t *payload = malloc(cfg.payload_size);
    long n = 0;
    double t0 = now_s(), deadline = t0 + cfg.durable_budget_s;
    for (; n < cfg.single_events && (n & 15 || now_s() < deadline); n++) {
        make_payload(payload, n);
        bind_event(ins, "single", payload);
        sq_step_done(db, ins, "insert");
    }
    double el = now_s() - t0;
    m[0] = n / el;
    int rc = sq_check_stream(db, "single", n, "1");
    sqlite3_finalize(ins);
    sqlite3_close(db);
    free(payload);
    note("  SQLite FULL: %ld events in %.2f s", n, el);
    return rc;
}

/* ---------- 2: durable appends from several threads, a connection each ---------- */
typedef struct {
    int idx;
    pthread_barrier_t *bar;
    long done, busy_retries;
} sq_thread_arg;

static void *sq_thread_main(void *p) {
    sq_thread_arg *a = p;
    sqlite3 *db = sq_open_db("w2-sqlite.db", "FULL", 0);
    sqlite3_stmt *begin = sq_prepare(db, "BEGIN IMMEDIATE");
    sqlite3_stmt *commit = sq_prepare(db, "COMMIT");
    sqlite3_stmt *ins = sq_prepare(db, INSERT_ANY);
    uint8_t *payload = malloc(cfg.payload_size);
    char stream[32];
    snprintf(stream, sizeof stream, "writer-%d", a->idx);
    pthread_barrier_wait(a->bar);
    double deadline = now_s() + cfg.durable_budget_s;
    for (long i = 0; i < cfg.thread_events && ((i & 7) || now_s() < deadline); i++) {
        make_payload(payload, a->idx * 1000000L + i);
        while (sq_step_done(db, begin, "BEGIN IMMEDIATE") == SQLITE_BUSY) a->busy_retries++;
        bind_event(ins, stream, payload);
        if (sq_step_done(db, ins, "insert") == SQLITE_BUSY) sq_die(db, "insert busy inside a write transaction");
        while (sq_step_done(db, commit, "COMMIT") == SQLITE_BUSY) a->busy_retries++;
        a->done++;
    }
    sqlite3_finalize(begin);
    sqlite3_finalize(commit);
    sqlite3_finalize(ins);
    sqlite3_close(db);
    free(payload);
    return NULL;
}

int sq_threads(double *m) {
    sqlite3 *setup = sq_open_db("w2-sqlite.db", "FULL", 1);
    pthread_barrier_t bar;
    pthread_barrier_init(&bar, NULL, cfg.threads + 1);
    pthread_t th[64];
    sq_thread_arg args[64];
    for (int i = 0; i < cfg.threads; i++) {
        args[i] = (sq_thread_arg){.idx = i, .bar = &bar};
        pthread_create(&th[i], NULL, sq_thread_main, &args[i]);
    }
    pthread_barrier_wait(&bar);
    double t0 = now_s();
    long total = 0, retries = 0;
    for (int i = 0; i < cfg.threads; i++) {
        pthread_join(th[i], NULL);
        total += args[i].done;
        retries += args[i].busy_retries;
    }
    double el = now_s() - t0;
    pthread_barrier_destroy(&bar);
    m[0] = total / el;
    int rc = 0;
    for (int i = 0; i < cfg.threads && rc == 0; i++) {
        char stream[32];
        snprintf(stream, sizeof stream, "writer-%d", i);
        rc = sq_check_stream(setup, stream, args[i].done, "2");
    }
    sqlite3_close(setup);
    note("  SQLite FULL, %d connections: %ld events in %.2f s (%ld busy retries past the timeout)",
         cfg.threads, total, el, retries);
    return rc;
}

/* ---------- 3: non-durable appends, synchronous=NORMAL ---------- */
static int sq_nondurable_run(const char *name, int batch, double *m) {
    sqlite3 *db = sq_open_db(name, "NORMAL", 1);
    sqlite3_stmt *ins = sq_prepare(db, INSERT_ANY);
    uint8_t *payload = malloc(cfg.payload_size);
    char stream[32];
    double t0 = now_s();
    for (long i = 0; i < cfg.nd_events; i++) {
        if (batch > 1 && i % batch == 0) sq_exec(db, "BEGIN");
        make_payload(payload, i);
        nd_stream_name(stream, sizeof stream, i);
        bind_event(ins, stream, payload);
        sq_step_done(db, ins, "insert");
        if (batch > 1 && (i % batch == batch - 1 || i == cfg.nd_events - 1)) sq_exec(db, "COMMIT");
    }
    double el = now_s() - t0;
    m[0] = cfg.nd_events / el;
    sqlite3_finalize(ins);
    int rc = 0;
    int64_t cnt = sq_int(db, "SELECT count(*) FROM events");
    if (cnt != cfg.nd_events) {
        problem("3 SQLite: %lld events in the table, expected %ld", (long long)cnt, cfg.nd_events);
        rc = -1;
    }
    if (rc == 0) {
        nd_stream_name(stream, sizeof stream, cfg.nd_events - 1);
        rc = sq_check_stream(db, stream, cfg.events_per_stream, "3");
    }
    sqlite3_close(db);
    free(payload);
    /* after the close (which checkpoints the WAL into the database): the file, and a
     * -wal file if one is left */
    char path[4096], wal[4200];
    path_in_dir(path, sizeof path, name);
    snprintf(wal, sizeof wal, "%s-wal", path);
    long long wal_bytes = tree_bytes(wal);
    m[1] = (double)(tree_bytes(path) + (wal_bytes > 0 ? wal_bytes : 0)) / cfg.nd_events;
    note("  SQLite NORMAL%s: %ld events in %.2f s, %.1f bytes on disk an event", batch > 1 ? ", batched" : "",
         cfg.nd_events, el, m[1]);
    return rc;
}

int sq_nondurable(double *m) { return sq_nondurable_run(W3_SQ, 1, m); }

int sq_nondurable_batched(double *m) {
    int rc = sq_nondurable_run("w3-sqlite-batched.db", cfg.sqlite_batch, m);
    char path[4096];
    path_in_dir(path, sizeof path, "w3-sqlite-batched.db");
    remove_tree(path);
    return rc;
}

/* ---------- 4: expected-version appends: select max(version), compare, insert +1 ---------- */
/* Returns 1 when appended, 0 on a version conflict (rolled back). */
static int sq_append_expected(sqlite3 *db, sqlite3_stmt **s, const char *stream, long expected,
                              const uint8_t *payload) {
    sq_step_done(db, s[0], "BEGIN IMMEDIATE");
    sqlite3_bind_text(s[1], 1, stream, -1, SQLITE_STATIC);
    if (sqlite3_step(s[1]) != SQLITE_ROW) sq_die(db, "select max(version)");
    long actual = sqlite3_column_type(s[1], 0) == SQLITE_NULL ? -1 : (long)sqlite3_column_int64(s[1], 0);
    sqlite3_reset(s[1]);
    if (actual != expected) {
        sq_step_done(db, s[4], "ROLLBACK");
        return 0;
    }
    sqlite3_bind_text(s[2], 1, stream, -1, SQLITE_STATIC);
    sqlite3_bind_int64(s[2], 2, actual + 1);
    sqlite3_bind_text(s[2], 3, EVENT_TYPE, -1, SQLITE_STATIC);
    sqlite3_bind_int64(s[2], 4, wall_us());
    sqlite3_bind_blob(s[2], 5, payload, cfg.payload_size, SQLITE_STATIC);
    sq_step_done(db, s[2], "insert");
    sq_step_done(db, s[3], "COMMIT");
    return 1;
}

int sq_expected(double *m) {
    sqlite3 *db = sq_open_db("w4-sqlite.db", "NORMAL", 1);
    sqlite3_stmt *s[5] = {
        sq_prepare(db, "BEGIN IMMEDIATE"),
        sq_prepare(db, "SELECT max(version) FROM events WHERE stream = ?1"),
        sq_prepare(db, INSERT_AT),
        sq_prepare(db, "COMMIT"),
        sq_prepare(db, "ROLLBACK"),
    };
    long *cur = malloc(sizeof(long) * cfg.ev_streams);
    for (int k = 0; k < cfg.ev_streams; k++) cur[k] = -1;
    uint8_t *payload = malloc(cfg.payload_size);
    rng r = {4444};
    long probes = 0, conflicts = 0, unexpected = 0;
    char stream[32];
    double t0 = now_s();
    for (long i = 0; i < cfg.ev_events; i++) {
        int k = (int)rng_below(&r, cfg.ev_streams);
        snprintf(stream, sizeof stream, "stream-%04d", k);
        make_payload(payload, i);
        if (i % 1000 == 999) { /* a stale writer: must be refused */
            probes++;
            if (sq_append_expected(db, s, stream, cur[k] + 1, payload) == 0) conflicts++;
        }
        if (sq_append_expected(db, s, stream, cur[k], payload)) cur[k]++;
        else unexpected++;
    }
    double el = now_s() - t0;
    m[0] = cfg.ev_events / el;
    int rc = 0;
    if (conflicts != probes || unexpected) {
        problem("4 SQLite: %ld of %ld stale appends refused, %ld correct ones refused", conflicts, probes, unexpected);
        rc = -1;
    }
    for (int i = 0; i < 5; i++) sqlite3_finalize(s[i]);
    int64_t cnt = sq_int(db, "SELECT count(*) FROM events");
    if (rc == 0 && cnt != cfg.ev_events) {
        problem("4 SQLite: %lld events, expected %ld", (long long)cnt, cfg.ev_events);
        rc = -1;
    }
    sqlite3_close(db);
    free(cur);
    free(payload);
    note("  SQLite NORMAL: %ld checked appends in %.2f s (%ld stale ones refused)", cfg.ev_events, el, conflicts);
    return rc;
}

/* ---------- 5: reads of the workload-3 table ---------- */
static long touch_row(sqlite3_stmt *st) {
    long sum = sqlite3_column_int64(st, 0) + sqlite3_column_int64(st, 2) + sqlite3_column_int64(st, 4);
    const unsigned char *stream = sqlite3_column_text(st, 1);
    const unsigned char *type = sqlite3_column_text(st, 3);
    const uint8_t *payload = sqlite3_column_blob(st, 5);
    int plen = sqlite3_column_bytes(st, 5);
    sum += stream[0] + type[0] + plen + (plen ? payload[plen - 1] : 0);
    return sum;
}

/* Reads cfg.stream_reads streams through `one` (a different one each time, or with
 * `same` the same one each time) and returns the mean microseconds a read; *rc becomes
 * -1 if a read does not give versions 0..events_per_stream-1. */
static double sq_time_stream_reads(sqlite3_stmt *one, int same, volatile long *sink, int *rc) {
    char stream[32];
    long nstreams = nd_stream_count();
    double t0 = now_s();
    for (int rep = 0; rep < cfg.stream_reads; rep++) {
        snprintf(stream, sizeof stream, "stream-%04ld", (same ? 17 : rep * 7919L) % nstreams);
        sqlite3_bind_text(one, 1, stream, -1, SQLITE_STATIC);
        long v = 0;
        while (sqlite3_step(one) == SQLITE_ROW) {
            if (sqlite3_column_int64(one, 2) != v) *rc = -1;
            *sink += touch_row(one);
            v++;
        }
        sqlite3_reset(one);
        if (v != cfg.events_per_stream) *rc = -1;
    }
    return (now_s() - t0) / cfg.stream_reads * 1e6;
}

int sq_reads(double *m) {
    sqlite3 *db = sq_open_db(W3_SQ, "NORMAL", 0);
    sqlite3_stmt *all = sq_prepare(db, SELECT_COLUMNS "ORDER BY pos");
    sqlite3_stmt *one = sq_prepare(db, SELECT_COLUMNS "WHERE stream = ?1 ORDER BY version");
    sqlite3_stmt *last = sq_prepare(db, SELECT_COLUMNS "ORDER BY pos DESC LIMIT 10");
    int rc = 0;
    volatile long sink = 0;

    long n = 0, plen = 0;
    double t0 = now_s();
    while (sqlite3_step(all) == SQLITE_ROW) {
        sink += touch_row(all);
        plen += sqlite3_column_bytes(all, 5);
        n++;
    }
    double el = now_s() - t0;
    sqlite3_reset(all);
    m[0] = n / el;
    if (n != cfg.nd_events || plen != (long)cfg.nd_events * cfg.payload_size) {
        problem("5 SQLite: read all gave %ld events, %ld payload bytes", n, plen);
        rc = -1;
    }

    /* cold: a different stream each time; warm: the same one again and again */
    m[1] = sq_time_stream_reads(one, 0, &sink, &rc);
    m[4] = sq_time_stream_reads(one, 1, &sink, &rc);
    if (rc) problem("5 SQLite: a stream read did not give versions 0..%ld", cfg.events_per_stream - 1);
    /* SQLite has no batch interface: its read-all row is compared with both cursors */
    m[3] = m[0];

    t0 = now_s();
    for (int rep = 0; rep < cfg.last10_reads; rep++) {
        int k = 0;
        int64_t prev = INT64_MAX;
        while (sqlite3_step(last) == SQLITE_ROW) {
            int64_t pos = sqlite3_column_int64(last, 0);
            if (pos >= prev) rc = -1;
            prev = pos;
            sink += touch_row(last);
            k++;
        }
        sqlite3_reset(last);
        if (k != 10) rc = -1;
    }
    m[2] = (now_s() - t0) / cfg.last10_reads * 1e6;
    if (rc) problem("5 SQLite: reads gave wrong results");
    sqlite3_finalize(all);
    sqlite3_finalize(one);
    sqlite3_finalize(last);
    sqlite3_close(db);
    note("  SQLite: read all %ld events in %.2f s; one stream %.0f us; last 10 %.1f us", n, el, m[1], m[2]);
    return rc;
}

/* ---------- 6: the account workload ---------- */
typedef struct {
    sqlite3 *db;
    sqlite3_stmt *begin, *commit, *rollback, *get, *set, *ins;
} sq_bank;

static void sq_bank_event(sq_bank *b, const char *id, const char *type, const char *payload) {
    char stream[300];
    snprintf(stream, sizeof stream, "account-%s", id);
    sqlite3_bind_text(b->ins, 1, stream, -1, SQLITE_TRANSIENT);
    sqlite3_bind_text(b->ins, 2, type, -1, SQLITE_STATIC);
    sqlite3_bind_int64(b->ins, 3, wall_us());
    sqlite3_bind_blob(b->ins, 4, payload, (int)strlen(payload), SQLITE_TRANSIENT);
    sq_step_done(b->db, b->ins, "insert account event");
}

/* Reads an open account's balance; returns 0 if missing or closed. */
static int sq_bank_get(sq_bank *b, const char *id, int64_t *balance, char currency[4]) {
    sqlite3_bind_text(b->get, 1, id, -1, SQLITE_STATIC);
    int ok = 0;
    if (sqlite3_step(b->get) == SQLITE_ROW && sqlite3_column_int(b->get, 2) == 0) {
        *balance = sqlite3_column_int64(b->get, 0);
        snprintf(currency, 4, "%s", (const char *)sqlite3_column_text(b->get, 1));
        ok = 1;
    }
    sqlite3_reset(b->get);
    return ok;
}

static void sq_bank_set(sq_bank *b, const char *id, int64_t balance) {
    sqlite3_bind_int64(b->set, 1, balance);
    sqlite3_bind_text(b->set, 2, id, -1, SQLITE_STATIC);
    sq_step_done(b->db, b->set, "update balance");
}

/* One operation in one transaction; returns OUT_OK or OUT_INSUFFICIENT, -1 if refused otherwise. */
static int sq_bank_op(sq_bank *b, const acct_op *op) {
    char a[32], c[32], json[160], cur_a[4], cur_c[4];
    int64_t bal_a, bal_c;
    account_id(a, sizeof a, op->from);
    sq_step_done(b->db, b->begin, "BEGIN IMMEDIATE");
    if (!sq_bank_get(b, a, &bal_a, cur_a)) goto refused;
    if (op->kind == OP_DEPOSIT) {
        sq_bank_set(b, a, bal_a + op->amount);
        snprintf(json, sizeof json, "{\"MoneyDeposited\":{\"account_id\":\"%s\",\"amount\":%lld}}", a, (long long)op->amount);
        sq_bank_event(b, a, "MoneyDeposited", json);
    } else {
        if (bal_a < op->amount) {
            sq_step_done(b->db, b->rollback, "ROLLBACK");
            return OUT_INSUFFICIENT;
        }
        if (op->kind == OP_TRANSFER) {
            account_id(c, sizeof c, op->to);
            if (!sq_bank_get(b, c, &bal_c, cur_c) || strcmp(cur_a, cur_c)) goto refused;
        }
        sq_bank_set(b, a, bal_a - op->amount);
        snprintf(json, sizeof json, "{\"MoneyWithdrawn\":{\"account_id\":\"%s\",\"amount\":%lld}}", a, (long long)op->amount);
        sq_bank_event(b, a, "MoneyWithdrawn", json);
        if (op->kind == OP_TRANSFER) {
            sq_bank_set(b, c, bal_c + op->amount);
            snprintf(json, sizeof json, "{\"MoneyDeposited\":{\"account_id\":\"%s\",\"amount\":%lld}}", c, (long long)op->amount);
            sq_bank_event(b, c, "MoneyDeposited", json);
        }
    }
    sq_step_done(b->db, b->commit, "COMMIT");
    return OUT_OK;
refused:
    sq_step_done(b->db, b->rollback, "ROLLBACK");
    return -1;
}

int sq_accounts(double *m) {
    sq_bank b;
    b.db = sq_open_db("w6-sqlite.db", "NORMAL", 1);
    sq_exec(b.db, CREATE_ACCOUNTS);
    b.begin = sq_prepare(b.db, "BEGIN IMMEDIATE");
    b.commit = sq_prepare(b.db, "COMMIT");
    b.rollback = sq_prepare(b.db, "ROLLBACK");
    b.get = sq_prepare(b.db, "SELECT balance, currency, closed FROM accounts WHERE id = ?1");
    b.set = sq_prepare(b.db, "UPDATE accounts SET balance = ?1 WHERE id = ?2");
    b.ins = sq_prepare(b.db, INSERT_ANY);
    sqlite3_stmt *open = sq_prepare(b.db, "INSERT INTO accounts(id, balance, currency, closed) VALUES(?1, ?2, 'USD', 0)");

    /* untimed: open every account, each with its AccountOpened event */
    char id[32], json[200];
    sq_exec(b.db, "BEGIN");
    for (int i = 0; i < cfg.accounts; i++) {
        account_id(id, sizeof id, i);
        sqlite3_bind_text(open, 1, id, -1, SQLITE_STATIC);
        sqlite3_bind_int64(open, 2, plan.initial_balance);
        sq_step_done(b.db, open, "open account");
        snprintf(json, sizeof json, "{\"AccountOpened\":{\"account_id\":\"%s\",\"initial_balance\":%lld,\"currency\":\"USD\"}}",
                 id, (long long)plan.initial_balance);
        sq_bank_event(&b, id, "AccountOpened", json);
    }
    sq_exec(b.db, "COMMIT");
    sqlite3_finalize(open);

    int rc = 0;
    long wrong = 0, first_wrong = -1;
    double t0 = now_s();
    for (long i = 0; i < plan.nops; i++) {
        int out = sq_bank_op(&b, &plan.ops[i]);
        if (out != plan.ops[i].outcome && wrong++ == 0) first_wrong = i;
    }
    double el = now_s() - t0;
    m[0] = plan.nops / el;
    if (wrong) {
        problem("6 SQLite: %ld operations did not end as the model says (first: #%ld)", wrong, first_wrong);
        rc = -1;
    }

    long bad = 0;
    t0 = now_s();
    for (long q = 0; q < plan.nqueries; q++) {
        int idx = plan.queries[q];
        int64_t bal;
        char cur[4];
        account_id(id, sizeof id, idx);
        if (!sq_bank_get(&b, id, &bal, cur) || bal != plan.final_balance[idx]) bad++;
    }
    m[1] = (now_s() - t0) / plan.nqueries * 1e6;
    if (bad) {
        problem("6 SQLite: %ld balance queries disagree with the model", bad);
        rc = -1;
    }
    sqlite3_finalize(b.begin);
    sqlite3_finalize(b.commit);
    sqlite3_finalize(b.rollback);
    sqlite3_finalize(b.get);
    sqlite3_finalize(b.set);
    sqlite3_finalize(b.ins);
    sqlite3_close(b.db);
    note("  SQLite NORMAL: %ld operations in %.2f s; balance query %.2f us", plan.nops, el, m[1]);
    return rc;
}

/* ---------- 7: open the workload-3 database and count its events ---------- */
int sq_open(double *m) {
    char path[4096];
    path_in_dir(path, sizeof path, W3_SQ);
    double t[64];
    int rc = 0;
    for (int k = 0; k < cfg.opens; k++) {
        double t0 = now_s();
        sqlite3 *db = NULL;
        if (sqlite3_open_v2(path, &db, SQLITE_OPEN_READWRITE, NULL) != SQLITE_OK) sq_die(db, path);
        int64_t cnt = sq_int(db, "SELECT count(*) FROM events");
        t[k] = (now_s() - t0) * 1e3;
        sqlite3_close(db);
        if (cnt != cfg.nd_events) {
            problem("7 SQLite: count(*) gave %lld, expected %ld", (long long)cnt, cfg.nd_events);
            rc = -1;
        }
    }
    m[0] = median_of(t, cfg.opens);
    note("  SQLite: open + count %.2f ms", m[0]);
    return rc;
}
