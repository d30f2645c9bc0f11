/* instr: the programs bench/instr/run.sh counts with callgrind (issue 25). Each measured
 * mode sets up untimed, runs its loop between CALLGRIND_START_INSTRUMENTATION and
 * CALLGRIND_STOP_INSTRUMENTATION (run under --instr-atstart=no, so that only the loop is
 * counted), checks what it got, and prints what it measured. Natively the macros do
 * nothing, and the calling thread's CPU time over the loop (cpu_ns_per_event) is the
 * figure.
 *
 *   instr check DIR            the minimal programs agree with evstore (check.c)
 *   instr prep DIR N           DIR/evs: N events, one evs_append each, round-robin over
 *                              1,000 streams; DIR/sq.db and DIR/sq-full.db: the same events
 *   instr MODE DIR N           one measured loop over N events:
 *     evs-next evs-batch min-read sq-read sq-read-full          (reads of DIR/evs, DIR/sq*.db)
 *     evs-append1 evs-append100 evs-append-event                (into a fresh DIR/MODE)
 *     min-append1 min-append100 min-append-event
 * Environment: MIN_CRC=table makes the minimal programs use the table CRC. */
#define _GNU_SOURCE
#include "instr.h"

#include <errno.h>
#include <inttypes.h>
#include <sqlite3.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>
#include <valgrind/callgrind.h>

/* Issue 8's table, as bench/wl_sqlite.c creates it: the fields the bench's events use. */
#define SQ_SCHEMA                                                                           \
    "CREATE TABLE events(pos INTEGER PRIMARY KEY, stream TEXT, version INTEGER, type TEXT, " \
    "ts INTEGER, payload BLOB, UNIQUE(stream, version))"
#define SQ_SELECT "SELECT pos, stream, version, type, ts, payload FROM events ORDER BY pos"
/* Every field of an evstore event. */
#define SQ_FULL_SCHEMA                                                                       \
    "CREATE TABLE events(pos INTEGER PRIMARY KEY, ts INTEGER, stream TEXT, version INTEGER, " \
    "type TEXT, schema INTEGER, metadata BLOB, payload BLOB, id BLOB, UNIQUE(stream, version))"
#define SQ_FULL_SELECT                                                                     \
    "SELECT pos, ts, stream, version, type, schema, metadata, payload, id FROM events " \
    "ORDER BY pos"

void die(const char *fmt, ...)
{
    va_list ap;
    fprintf(stderr, "instr: ");
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
    exit(1);
}

void evs_ok(evs_status st, const char *what)
{
    if (st != EVS_OK)
        die("%s: %s: %s", what, evs_status_name(st), evs_last_error_message());
}

evs_store *open_store(const char *dir, uint64_t max_segment, evs_recovery_info *info)
{
    evs_store *s = NULL;
    evs_options *o = evs_options_new();
    if (!o)
        die("evs_options_new returned NULL");
    evs_ok(evs_options_set_fsync(o, EVS_FSYNC_BATCH, 5), "evs_options_set_fsync");
    if (max_segment)
        evs_ok(evs_options_set_max_segment_size(o, max_segment), "evs_options_set_max_segment_size");
    evs_ok(evs_open(dir, o, &s, info), dir);
    evs_options_free(o);
    return s;
}

void make_payload(uint8_t *buf, size_t size, long seq)
{
    int n = snprintf((char *)buf, size, "{\"seq\":%ld,\"pad\":\"", seq);
    for (size_t i = (size_t)n; i < size - 2; i++)
        buf[i] = (uint8_t)('a' + (seq + (long)i) % 26);
    buf[size - 2] = '"';
    buf[size - 1] = '}';
}

void stream_name(char *out, size_t outlen, long i) { snprintf(out, outlen, "stream-%04ld", i % STREAMS); }

/* ---- hashing (check.c and prep use it) ---- */
static void fnv(uint64_t *h, const void *p, size_t n)
{
    const uint8_t *b = p;
    for (size_t i = 0; i < n; i++)
        *h = (*h ^ b[i]) * 0x100000001b3ULL;
}

void hash_fields(ev_hash *x, uint64_t position, uint64_t ts, const char *stream, size_t stream_len,
                 uint64_t version, const char *type, size_t type_len, uint32_t schema,
                 const uint8_t *meta, size_t meta_len, const uint8_t *payload, size_t payload_len,
                 const uint8_t *id)
{
    static const uint8_t none[16];
    uint64_t n[6] = {position, ts, stream_len, version, type_len, schema};
    fnv(&x->h, n, sizeof n);
    fnv(&x->h, stream, stream_len);
    fnv(&x->h, type, type_len);
    fnv(&x->h, &meta_len, sizeof meta_len);
    fnv(&x->h, meta, meta_len);
    fnv(&x->h, &payload_len, sizeof payload_len);
    fnv(&x->h, payload, payload_len);
    fnv(&x->h, id ? id : none, 16);
    x->events++;
    x->payload_bytes += payload_len;
}

void hash_evs_event(ev_hash *x, const evs_event *e)
{
    static const uint8_t zero[16];
    hash_fields(x, e->position, e->timestamp_us, e->stream, e->stream_len, e->stream_version,
                e->event_type, e->event_type_len, e->schema_version, e->metadata, e->metadata_len,
                e->payload, e->payload_len, memcmp(e->id, zero, 16) ? e->id : NULL);
}

int hash_min_event(void *user, const min_event *e)
{
    hash_fields(user, e->position, e->timestamp_us, e->stream, e->stream_len, e->stream_version,
                e->event_type, e->event_type_len, e->schema_version, e->metadata, e->metadata_len,
                e->payload, e->payload_len, e->id);
    return 0;
}

ev_hash hash_store_evstore(evs_store *s)
{
    ev_hash x = {0xcbf29ce484222325ULL, 0, 0, 0};
    evs_event e = EVS_STRUCT_INIT(evs_event);
    evs_cursor *c = NULL;
    evs_status st;
    evs_ok(evs_read_all(s, 0, &c), "evs_read_all");
    while ((st = evs_cursor_next(c, &e)) == EVS_OK)
        hash_evs_event(&x, &e);
    if (st != EVS_END)
        evs_ok(st, "evs_cursor_next");
    evs_cursor_free(c);
    return x;
}

ev_hash hash_store_minimal(const char *dir)
{
    ev_hash x = {0xcbf29ce484222325ULL, 0, 0, 0};
    min_read_result rr;
    char err[600];
    min_status st = min_read_all(dir, hash_min_event, &x, &rr, err, sizeof err);
    if (st != MIN_OK)
        die("the minimal reader on %s: status %d: %s", dir, (int)st, err);
    if (rr.events != x.events)
        die("the minimal reader counted %" PRIu64 " events, handed out %" PRIu64, rr.events, x.events);
    x.segments = rr.segments;
    return x;
}

/* ---- the calling thread's CPU time over the measured loop (for the native runs) ---- */
static double cpu_start;

static double thread_cpu_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
    return (double)ts.tv_sec * 1e9 + (double)ts.tv_nsec;
}

#define MEASURE_START                     \
    do {                                  \
        cpu_start = thread_cpu_ns();      \
        CALLGRIND_START_INSTRUMENTATION;  \
    } while (0)
#define MEASURE_STOP                                                             \
    do {                                                                         \
        CALLGRIND_STOP_INSTRUMENTATION;                                          \
        printf("cpu_ns_per_event %.1f\n", (thread_cpu_ns() - cpu_start) / (double)N); \
    } while (0)

/* ---- the inputs of the measured loops, made before them ---- */
static long N;
static uint8_t *payloads;
static char names[STREAMS][16];

static void make_inputs(void)
{
    payloads = malloc((size_t)N * PAYLOAD_SIZE);
    if (!payloads)
        die("out of memory");
    for (long i = 0; i < N; i++)
        make_payload(payloads + (size_t)i * PAYLOAD_SIZE, PAYLOAD_SIZE, i);
    for (long i = 0; i < STREAMS; i++)
        stream_name(names[i], sizeof names[i], i);
}

static evs_event_input *evs_inputs(void)
{
    evs_event_input *in = malloc((size_t)N * sizeof *in);
    if (!in)
        die("out of memory");
    for (long i = 0; i < N; i++) {
        in[i] = (evs_event_input)EVS_STRUCT_INIT(evs_event_input);
        in[i].event_type = EVENT_TYPE;
        in[i].payload = payloads + (size_t)i * PAYLOAD_SIZE;
        in[i].payload_len = PAYLOAD_SIZE;
        in[i].schema_version = 1;
    }
    return in;
}

static min_input *min_inputs(void)
{
    min_input *in = calloc((size_t)N, sizeof *in);
    if (!in)
        die("out of memory");
    for (long i = 0; i < N; i++) {
        in[i].event_type = EVENT_TYPE;
        in[i].payload = payloads + (size_t)i * PAYLOAD_SIZE;
        in[i].payload_len = PAYLOAD_SIZE;
        in[i].schema_version = 1;
    }
    return in;
}

static void path_of(char *out, size_t n, const char *dir, const char *name)
{
    snprintf(out, n, "%s/%s", dir, name);
}

static void result(const char *mode, long events, uint64_t payload_bytes)
{
    if (events != N || payload_bytes != (uint64_t)N * PAYLOAD_SIZE)
        die("%s: %ld events with %" PRIu64 " payload bytes, expected %ld and %ld", mode, events,
            payload_bytes, N, N * PAYLOAD_SIZE);
    printf("ok %s %ld events\n", mode, events);
}

/* ---- prep ---- */
static void sq_exec(sqlite3 *db, const char *sql)
{
    char *msg = NULL;
    if (sqlite3_exec(db, sql, NULL, NULL, &msg) != SQLITE_OK)
        die("SQLite: %s: %s", sql, msg ? msg : "?");
}

static sqlite3 *sq_create(const char *path, const char *schema)
{
    sqlite3 *db = NULL;
    remove(path);
    if (sqlite3_open(path, &db) != SQLITE_OK)
        die("SQLite: opening %s: %s", path, sqlite3_errmsg(db));
    sq_exec(db, "PRAGMA journal_mode=WAL");
    sq_exec(db, schema);
    sq_exec(db, "BEGIN");
    return db;
}

static sqlite3_stmt *sq_prepare(sqlite3 *db, const char *sql)
{
    sqlite3_stmt *st = NULL;
    if (sqlite3_prepare_v2(db, sql, -1, &st, NULL) != SQLITE_OK)
        die("SQLite: %s: %s", sql, sqlite3_errmsg(db));
    return st;
}

static void sq_step_done(sqlite3 *db, sqlite3_stmt *st)
{
    if (sqlite3_step(st) != SQLITE_DONE)
        die("SQLite: insert: %s", sqlite3_errmsg(db));
    sqlite3_reset(st);
}

static void mode_prep(const char *dir)
{
    char path[4096];
    evs_event_input *in = evs_inputs();
    path_of(path, sizeof path, dir, "evs");
    evs_store *s = open_store(path, 0, NULL);
    for (long i = 0; i < N; i++) {
        uint64_t pos;
        evs_ok(evs_append(s, names[i % STREAMS], EVS_EXPECT_ANY, &in[i], 1, &pos, NULL), "evs_append");
    }
    /* the SQLite tables get the events as evstore stored them (timestamps, versions) */
    path_of(path, sizeof path, dir, "sq.db");
    sqlite3 *db = sq_create(path, SQ_SCHEMA);
    path_of(path, sizeof path, dir, "sq-full.db");
    sqlite3 *full = sq_create(path, SQ_FULL_SCHEMA);
    sqlite3_stmt *ins = sq_prepare(db, "INSERT INTO events VALUES(?1, ?2, ?3, ?4, ?5, ?6)");
    sqlite3_stmt *fins = sq_prepare(full, "INSERT INTO events VALUES(?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)");
    evs_event e = EVS_STRUCT_INIT(evs_event);
    evs_cursor *c = NULL;
    evs_status st;
    long n = 0;
    static const uint8_t zero[16];
    evs_ok(evs_read_all(s, 0, &c), "evs_read_all");
    while ((st = evs_cursor_next(c, &e)) == EVS_OK) {
        sqlite3_bind_int64(ins, 1, (sqlite3_int64)e.position);
        sqlite3_bind_text(ins, 2, e.stream, (int)e.stream_len, SQLITE_STATIC);
        sqlite3_bind_int64(ins, 3, (sqlite3_int64)e.stream_version);
        sqlite3_bind_text(ins, 4, e.event_type, (int)e.event_type_len, SQLITE_STATIC);
        sqlite3_bind_int64(ins, 5, (sqlite3_int64)e.timestamp_us);
        sqlite3_bind_blob(ins, 6, e.payload, (int)e.payload_len, SQLITE_STATIC);
        sq_step_done(db, ins);
        sqlite3_bind_int64(fins, 1, (sqlite3_int64)e.position);
        sqlite3_bind_int64(fins, 2, (sqlite3_int64)e.timestamp_us);
        sqlite3_bind_text(fins, 3, e.stream, (int)e.stream_len, SQLITE_STATIC);
        sqlite3_bind_int64(fins, 4, (sqlite3_int64)e.stream_version);
        sqlite3_bind_text(fins, 5, e.event_type, (int)e.event_type_len, SQLITE_STATIC);
        sqlite3_bind_int64(fins, 6, e.schema_version);
        sqlite3_bind_blob(fins, 7, e.metadata_len ? (const void *)e.metadata : "", (int)e.metadata_len,
                          SQLITE_STATIC);
        sqlite3_bind_blob(fins, 8, e.payload, (int)e.payload_len, SQLITE_STATIC);
        if (memcmp(e.id, zero, 16))
            sqlite3_bind_blob(fins, 9, e.id, 16, SQLITE_STATIC);
        else
            sqlite3_bind_null(fins, 9);
        sq_step_done(full, fins);
        n++;
    }
    if (st != EVS_END)
        evs_ok(st, "evs_cursor_next");
    evs_cursor_free(c);
    sqlite3_finalize(ins);
    sqlite3_finalize(fins);
    sq_exec(db, "COMMIT");
    sq_exec(full, "COMMIT");
    sq_exec(db, "PRAGMA wal_checkpoint(TRUNCATE)");
    sq_exec(full, "PRAGMA wal_checkpoint(TRUNCATE)");
    sqlite3_close(db);
    sqlite3_close(full);
    evs_ok(evs_close(s), "evs_close");
    if (n != N)
        die("prep: read back %ld events, appended %ld", n, N);
    printf("ok prep %ld events\n", n);
}

/* ---- reads ---- */
static void mode_evs_read(const char *dir, int batch)
{
    char path[4096];
    path_of(path, sizeof path, dir, "evs");
    evs_store *s = open_store(path, 0, NULL);
    static evs_event views[256];
    for (int i = 0; i < 256; i++)
        views[i] = (evs_event)EVS_STRUCT_INIT(evs_event);
    evs_cursor *c = NULL;
    evs_status st;
    long n = 0;
    uint64_t bytes = 0;
    MEASURE_START;
    evs_ok(evs_read_all(s, 0, &c), "evs_read_all");
    if (!batch) {
        while ((st = evs_cursor_next(c, &views[0])) == EVS_OK) {
            bytes += views[0].payload_len;
            n++;
        }
    } else {
        size_t got = 0;
        while ((st = evs_cursor_next_batch(c, views, 256, &got)) == EVS_OK) {
            for (size_t k = 0; k < got; k++)
                bytes += views[k].payload_len;
            n += (long)got;
        }
    }
    evs_cursor_free(c);
    MEASURE_STOP;
    if (st != EVS_END)
        evs_ok(st, batch ? "evs_cursor_next_batch" : "evs_cursor_next");
    evs_ok(evs_close(s), "evs_close");
    result(batch ? "evs-batch" : "evs-next", n, bytes);
}

typedef struct counted {
    long n;
    uint64_t bytes;
} counted;

static int count_event(void *user, const min_event *e)
{
    counted *c = user;
    c->bytes += e->payload_len;
    c->n++;
    return 0;
}

static void mode_min_read(const char *dir)
{
    char path[4096], err[600];
    counted c = {0, 0};
    min_read_result rr;
    path_of(path, sizeof path, dir, "evs");
    MEASURE_START;
    min_status st = min_read_all(path, count_event, &c, &rr, err, sizeof err);
    MEASURE_STOP;
    if (st != MIN_OK)
        die("min-read: status %d: %s", (int)st, err);
    result("min-read", c.n, c.bytes);
}

static void mode_sq_read(const char *dir, int full)
{
    char path[4096];
    sqlite3 *db = NULL;
    path_of(path, sizeof path, dir, full ? "sq-full.db" : "sq.db");
    if (sqlite3_open_v2(path, &db, SQLITE_OPEN_READONLY | SQLITE_OPEN_NOMUTEX, NULL) != SQLITE_OK)
        die("SQLite: opening %s: %s", path, sqlite3_errmsg(db));
    sqlite3_stmt *st = sq_prepare(db, full ? SQ_FULL_SELECT : SQ_SELECT);
    long n = 0;
    uint64_t bytes = 0, sink = 0;
    int rc;
    /* each column as a view (pointer and length) or a number, as evstore's cursor fills
     * its evs_event */
    MEASURE_START;
    if (!full) {
        while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
            sink += (uint64_t)sqlite3_column_int64(st, 0);
            sink += (uintptr_t)sqlite3_column_text(st, 1) + (uint64_t)sqlite3_column_bytes(st, 1);
            sink += (uint64_t)sqlite3_column_int64(st, 2);
            sink += (uintptr_t)sqlite3_column_text(st, 3) + (uint64_t)sqlite3_column_bytes(st, 3);
            sink += (uint64_t)sqlite3_column_int64(st, 4);
            sink += (uintptr_t)sqlite3_column_blob(st, 5);
            bytes += (uint64_t)sqlite3_column_bytes(st, 5);
            n++;
        }
    } else {
        while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
            sink += (uint64_t)sqlite3_column_int64(st, 0) + (uint64_t)sqlite3_column_int64(st, 1);
            sink += (uintptr_t)sqlite3_column_text(st, 2) + (uint64_t)sqlite3_column_bytes(st, 2);
            sink += (uint64_t)sqlite3_column_int64(st, 3);
            sink += (uintptr_t)sqlite3_column_text(st, 4) + (uint64_t)sqlite3_column_bytes(st, 4);
            sink += (uint64_t)sqlite3_column_int64(st, 5);
            sink += (uintptr_t)sqlite3_column_blob(st, 6) + (uint64_t)sqlite3_column_bytes(st, 6);
            sink += (uintptr_t)sqlite3_column_blob(st, 7);
            bytes += (uint64_t)sqlite3_column_bytes(st, 7);
            sink += (uintptr_t)sqlite3_column_blob(st, 8) + (uint64_t)sqlite3_column_bytes(st, 8);
            n++;
        }
    }
    MEASURE_STOP;
    if (rc != SQLITE_DONE)
        die("SQLite: step: %s", sqlite3_errmsg(db));
    sqlite3_finalize(st);
    sqlite3_close(db);
    volatile uint64_t keep = sink; /* the column calls' results are used */
    (void)keep;
    result(full ? "sq-read-full" : "sq-read", n, bytes);
}

/* ---- appends ---- */
static void fresh_dir(char *path, size_t n, const char *dir, const char *mode)
{
    char cmd[8300];
    path_of(path, n, dir, mode);
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", path);
    if (system(cmd) != 0)
        die("could not remove %s", path);
}

static void mode_evs_append(const char *dir, const char *mode, int per_call, int no_stream)
{
    char path[4096];
    evs_event_input *in = evs_inputs();
    uint64_t pos = 0;
    long calls = N / per_call;
    evs_stats stats = EVS_STRUCT_INIT(evs_stats);
    fresh_dir(path, sizeof path, dir, mode);
    evs_store *s = open_store(path, 0, NULL);
    MEASURE_START;
    for (long k = 0; k < calls; k++) {
        evs_status st;
        if (no_stream)
            st = evs_append_event(s, EVENT_TYPE, in[k].payload, in[k].payload_len, &pos);
        else
            st = evs_append(s, names[k % STREAMS], EVS_EXPECT_ANY, &in[k * per_call],
                            (size_t)per_call, &pos, NULL);
        if (st != EVS_OK || pos != (uint64_t)(k * per_call))
            evs_ok(st != EVS_OK ? st : EVS_ERR_INTERNAL, mode);
    }
    MEASURE_STOP;
    evs_ok(evs_stats_get(s, &stats), "evs_stats_get");
    evs_ok(evs_close(s), "evs_close");
    result(mode, (long)stats.events, stats.events == (uint64_t)N ? (uint64_t)N * PAYLOAD_SIZE : 0);
}

static void mode_min_append(const char *dir, const char *mode, int per_call, int no_stream)
{
    char path[4096], err[600];
    min_input *in = min_inputs();
    min_appender *a = NULL;
    uint64_t pos = 0;
    long calls = N / per_call;
    fresh_dir(path, sizeof path, dir, mode);
    if (min_appender_open(path, 0, &a, err, sizeof err) != MIN_OK)
        die("%s: opening %s: %s", mode, path, err);
    MEASURE_START;
    for (long k = 0; k < calls; k++) {
        min_status st = min_append(a, no_stream ? "" : names[k % STREAMS], no_stream, MIN_EXPECT_ANY,
                                   &in[k * per_call], (size_t)per_call, &pos, NULL);
        if (st != MIN_OK || pos != (uint64_t)(k * per_call))
            die("%s: call %ld: status %d: %s", mode, k, (int)st, min_appender_error(a));
    }
    MEASURE_STOP;
    long appended = (long)min_appender_next_position(a);
    min_appender_close(a);
    /* what it wrote reads back */
    ev_hash x = hash_store_minimal(path);
    if ((long)x.events != appended)
        die("%s: appended %ld events, read back %" PRIu64, mode, appended, x.events);
    result(mode, (long)x.events, x.payload_bytes);
}

int main(int argc, char **argv)
{
    setvbuf(stdout, NULL, _IOLBF, 0);
    const char *crc = min_crc32c_init(getenv("MIN_CRC") && strcmp(getenv("MIN_CRC"), "table") == 0);
    if (argc == 3 && strcmp(argv[1], "check") == 0) {
        printf("minimal CRC-32C: %s\n", crc);
        return run_checks(argv[2]);
    }
    if (argc != 4)
        die("usage: instr check DIR | instr prep DIR N | instr MODE DIR N");
    const char *mode = argv[1], *dir = argv[2];
    N = atol(argv[3]);
    if (N <= 0 || N % PER_CALL)
        die("N must be a positive multiple of %d", PER_CALL);
    if (mkdir(dir, 0755) != 0 && errno != EEXIST)
        die("creating %s: %s", dir, strerror(errno));
    make_inputs();
    printf("pid %d\nevstore %s\nsqlite %s\n", (int)getpid(), evs_version(), sqlite3_libversion());
    if (strcmp(mode, "prep") == 0)
        mode_prep(dir);
    else if (strcmp(mode, "evs-next") == 0)
        mode_evs_read(dir, 0);
    else if (strcmp(mode, "evs-batch") == 0)
        mode_evs_read(dir, 1);
    else if (strcmp(mode, "min-read") == 0)
        mode_min_read(dir);
    else if (strcmp(mode, "sq-read") == 0)
        mode_sq_read(dir, 0);
    else if (strcmp(mode, "sq-read-full") == 0)
        mode_sq_read(dir, 1);
    else if (strcmp(mode, "evs-append1") == 0)
        mode_evs_append(dir, mode, 1, 0);
    else if (strcmp(mode, "evs-append100") == 0)
        mode_evs_append(dir, mode, PER_CALL, 0);
    else if (strcmp(mode, "evs-append-event") == 0)
        mode_evs_append(dir, mode, 1, 1);
    else if (strcmp(mode, "min-append1") == 0)
        mode_min_append(dir, mode, 1, 0);
    else if (strcmp(mode, "min-append100") == 0)
        mode_min_append(dir, mode, PER_CALL, 0);
    else if (strcmp(mode, "min-append-event") == 0)
        mode_min_append(dir, mode, 1, 1);
    else
        die("unknown mode %s", mode);
    printf("crc %s\n", crc);
    return 0;
}
