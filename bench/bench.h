/* The side-by-side benchmark (issue 8): evstore through its C API, SQLite, and the
 * disk's own fdatasync limit, on the same payloads with the same durability per pair.
 *
 * bench.c drives the workloads, times them in alternation and writes the table;
 * wl_evstore.c, wl_sqlite.c and wl_disk.c hold one side each. Every side function
 * sets up untimed, times only the work itself, checks what it got back, and returns
 * 0, or -1 after calling problem() with what went wrong. */
#ifndef EVSTORE_BENCH_H
#define EVSTORE_BENCH_H

#include <stddef.h>
#include <stdint.h>

#define EVENT_TYPE "BenchEvent"
#define MAX_METRICS 6

typedef struct bench_config {
    int runs;
    int quick;
    const char *dir; /* where stores are created: must be on the disk being measured */

    int payload_size; /* bytes, every appended event */

    /* 1: durable single-thread appends (each side stops at the count or the budget) */
    long single_events;
    double durable_budget_s;
    /* 2: durable appends from several threads, each to its own stream */
    int threads;
    long thread_events; /* per thread */
    /* 3: non-durable appends into nd_events / events_per_stream streams */
    long nd_events;
    long events_per_stream;
    int sqlite_batch; /* the extra "SQLite batched" row */
    /* 4: appends with an expected-version check */
    long ev_events;
    int ev_streams;
    /* 5: reads of the workload-3 store */
    int stream_reads;  /* repetitions of "read one stream" per run */
    int last10_reads;  /* repetitions of "last 10 by position" per run */
    /* 6: the account workload */
    int accounts;
    long acct_ops;
    long balance_queries;
    /* 7: opens of the workload-3 store */
    int opens; /* opens per run (the median open time is reported) */
    /* 9: durable consumers: catch-up over a copy of the workload-3 store; a live one */
    long consumer_live_events;
} bench_config;

extern bench_config cfg;

/* ---- helpers (bench.c) ---- */
double now_s(void);               /* CLOCK_MONOTONIC, seconds */
int64_t wall_us(void);            /* CLOCK_REALTIME, microseconds since the epoch */
void problem(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
void note(const char *fmt, ...) __attribute__((format(printf, 1, 2)));     /* progress, stderr */
void fatal(const char *fmt, ...) __attribute__((format(printf, 1, 2), noreturn));
void path_in_dir(char *out, size_t outlen, const char *name);
void remove_tree(const char *path);  /* rm -rf; also removes path-wal and path-shm */
int copy_tree(const char *from, const char *to);
long long dir_bytes(const char *dir, const char *suffix); /* total size of dir's files ending so */
long long tree_bytes(const char *path); /* total size of the regular files under path (or of path) */
/* bytes one event took in evstore's log in workload 1 (0 until measured): the raw disk
 * sides write records of this size */
extern long evs_record_bytes;
double median_of(const double *v, int n);

/* The payload of event `seq`: JSON text of exactly cfg.payload_size bytes (>= 32). */
void make_payload(uint8_t *buf, long seq);
/* The stream of event i in workloads 3 and 5: events round-robin over the streams. */
void nd_stream_name(char *out, size_t outlen, long i);
long nd_stream_count(void);

/* Deterministic pseudo-random numbers: both sides of a pair see the same sequence. */
typedef struct { uint64_t s; } rng;
static inline uint64_t rng_next(rng *r) {
    uint64_t z = (r->s += 0x9E3779B97F4A7C15ULL);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
    return z ^ (z >> 31);
}
static inline uint64_t rng_below(rng *r, uint64_t n) { return rng_next(r) % n; }

/* ---- the account workload's operations, generated once, with expected outcomes ---- */
enum { OP_DEPOSIT = 0, OP_WITHDRAW = 1, OP_TRANSFER = 2 };
enum { OUT_OK = 0, OUT_INSUFFICIENT = 1 };
typedef struct acct_op {
    uint8_t kind, outcome;
    int32_t from, to; /* account indexes (to: transfers only) */
    int64_t amount;
} acct_op;
typedef struct acct_plan {
    acct_op *ops;
    long nops;
    int64_t initial_balance;
    int64_t *final_balance; /* per account, from the model */
    long insufficient;      /* ops the model rejects */
    int32_t *queries;       /* account indexes for the balance queries */
    long nqueries;
} acct_plan;
extern acct_plan plan;
void account_id(char *out, size_t outlen, int idx);

/* ---- the sides. metrics[] is filled per workload as documented in bench.c ---- */
/* 1 */
int evs_single(double *m);
int sq_single(double *m);
int disk_single_prealloc(double *m);
int disk_single_growing(double *m);
/* 2 */
int evs_threads(double *m);
int sq_threads(double *m);
/* 3 (m[0] events/s; m[1] bytes on disk per event after close) */
int evs_nondurable(double *m);
int evs_nondurable_multi(double *m); /* 100 events per evs_append */
int disk_nondurable_pwrite(double *m); /* a pwrite per event, no fdatasync */
int sq_nondurable(double *m);
int sq_nondurable_batched(double *m);
/* 4 */
int evs_expected(double *m);
int sq_expected(double *m);
/* 5 (m[0] read all events/s, m[1] one stream us (first read after open), m[2] last 10 us,
 * m[3] read all through the batch cursor events/s (SQLite: as m[0]), m[4] one stream read
 * again (warm) us) */
int evs_reads(double *m);
int sq_reads(double *m);
/* 6 */
int evs_accounts(double *m);
int sq_accounts(double *m);
/* 7 */
int evs_open_nosnap(double *m);
int evs_open_snap(double *m);
int evs_open_killed(double *m); /* a copy of a store whose writer was SIGKILLed, no snapshot */
int sq_open(double *m);
int evs_prepare_open(void); /* untimed: the snapshot copy of the workload-3 store */
/* 8 (issue 20; m[0] compaction MB/s of segments rewritten, m[1] p99 append us, m[2] bytes
 * of the store after close, m[3] those of its segment files alone) */
int evs_compact_half(double *m);  /* half the streams deleted, compacted; appends while compacting */
int evs_compact_never(double *m); /* a store that never held them; appends without a compaction */

/* 8 (catch-up and read-all: m[0] events/s; live: m[0] p99 and m[1] median delivery
 * latency from commit, ms) */
int evs_consumer_catchup(double *m);
int evs_consumer_readall(double *m);
int evs_consumer_live(double *m);
int evs_prepare_consumers(void); /* untimed: the copy of the workload-3 store it reads */

/* 10 (issue 24; m[0] appends/s naming one of 1,000 subjects or none, m[1] read all of
 * them, events/s) */
int evs_subjects_sealed(double *m);
int evs_subjects_plain(double *m);

/* which library and version each side is */
const char *evs_lib_version(void);
const char *sq_lib_version(void);

/* names of the stores workloads 3 -> 5, 7 hand on */
#define W3_EVS "w3-evstore"
#define W3_SQ "w3-sqlite.db"
#define W7_EVS_SNAP "w7-evstore-snap"
#define W7_EVS_KILLED "w7-evstore-killed"
#define W9_EVS "w9-evstore"

#endif
