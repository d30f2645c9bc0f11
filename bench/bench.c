/* evstore beside SQLite and the disk's own limit, in one run (issue 8).
 *
 *   bench [--runs N] [--quick] [--only 1,3,5] [--dir DIR] [--results DIR]
 *
 * Each workload runs its sides in alternation (A, B, A, B, ... for --runs rounds); every
 * row of the table gives the median, min and max of each side and the median over the
 * rounds of the per-round ratio, written so that a ratio above 1 means evstore is faster
 * (rates: evstore / other; latencies: other / evstore). bench/run.sh builds and runs it. */
#define _GNU_SOURCE
#include "bench.h"

#include <dirent.h>
#include <errno.h>
#include <ftw.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <sys/utsname.h>
#include <time.h>
#include <unistd.h>

#define MAX_RUNS 25
#define MAX_SIDES 5

bench_config cfg;
acct_plan plan;

/* ---------------------------------------------------------------- helpers */

double now_s(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec + t.tv_nsec * 1e-9;
}

int64_t wall_us(void) {
    struct timespec t;
    clock_gettime(CLOCK_REALTIME, &t);
    return (int64_t)t.tv_sec * 1000000 + t.tv_nsec / 1000;
}

static char problems[64][512];
static int nproblems;

void problem(const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    char buf[512];
    vsnprintf(buf, sizeof buf, fmt, ap);
    va_end(ap);
    fprintf(stderr, "PROBLEM: %s\n", buf);
    if (nproblems < 64) snprintf(problems[nproblems++], sizeof problems[0], "%s", buf);
}

void note(const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
}

void fatal(const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    fputs("bench: fatal: ", stderr);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
    exit(2);
}

void path_in_dir(char *out, size_t outlen, const char *name) { snprintf(out, outlen, "%s/%s", cfg.dir, name); }

static int rm_entry(const char *p, const struct stat *sb, int flag, struct FTW *ftw) {
    (void)sb, (void)flag, (void)ftw;
    if (remove(p) != 0 && errno != ENOENT) fatal("cannot remove %s: %s", p, strerror(errno));
    return 0;
}

void remove_tree(const char *path) {
    char side[4200];
    nftw(path, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
    snprintf(side, sizeof side, "%s-wal", path);
    remove(side);
    snprintf(side, sizeof side, "%s-shm", path);
    remove(side);
}

/* Zero blocks become holes in the copy: a store's preallocated, never written segment
 * tail is unwritten extents (read as a hole by SEEK_DATA) in the original, and must not
 * turn into 100 MiB of written zeros that an open would then read. */
int copy_tree(const char *from, const char *to) {
    char cmd[9000];
    snprintf(cmd, sizeof cmd, "cp -a --sparse=always '%s' '%s'", from, to);
    return system(cmd) == 0 ? 0 : -1;
}

long evs_record_bytes;

long long dir_bytes(const char *dir, const char *suffix) {
    DIR *d = opendir(dir);
    if (!d) return -1;
    long long total = 0;
    size_t sl = strlen(suffix);
    struct dirent *e;
    while ((e = readdir(d))) {
        size_t l = strlen(e->d_name);
        if (l < sl || strcmp(e->d_name + l - sl, suffix)) continue;
        char p[4400];
        struct stat st;
        snprintf(p, sizeof p, "%s/%s", dir, e->d_name);
        if (stat(p, &st) == 0) total += st.st_size;
    }
    closedir(d);
    return total;
}

static long long tree_total;

static int add_entry(const char *p, const struct stat *sb, int flag, struct FTW *ftw) {
    (void)p, (void)ftw;
    if (flag == FTW_F && S_ISREG(sb->st_mode)) tree_total += sb->st_size;
    return 0;
}

long long tree_bytes(const char *path) {
    tree_total = 0;
    if (nftw(path, add_entry, 16, FTW_PHYS) != 0) return -1;
    return tree_total;
}

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

double median_of(const double *v, int n) {
    double t[64];
    if (n <= 0) return 0;
    if (n > 64) n = 64;
    memcpy(t, v, sizeof(double) * n);
    qsort(t, n, sizeof(double), cmp_double);
    return n % 2 ? t[n / 2] : (t[n / 2 - 1] + t[n / 2]) / 2;
}

void make_payload(uint8_t *buf, long seq) {
    int n = snprintf((char *)buf, cfg.payload_size, "{\"seq\":%ld,\"pad\":\"", seq);
    for (int i = n; i < cfg.payload_size - 2; i++) buf[i] = (uint8_t)('a' + (seq + i) % 26);
    buf[cfg.payload_size - 2] = '"';
    buf[cfg.payload_size - 1] = '}';
}

long nd_stream_count(void) { return cfg.nd_events / cfg.events_per_stream; }

void nd_stream_name(char *out, size_t outlen, long i) { snprintf(out, outlen, "stream-%04ld", i % nd_stream_count()); }

void account_id(char *out, size_t outlen, int idx) { snprintf(out, outlen, "acc-%05d", idx); }

/* The account operations and, from a plain in-memory model, how each must end and the
 * balances they leave: both sides are checked against it. */
static void make_plan(void) {
    rng r = {6666};
    plan.nops = cfg.acct_ops;
    plan.initial_balance = 1000;
    plan.ops = calloc(plan.nops, sizeof(acct_op));
    plan.final_balance = calloc(cfg.accounts, sizeof(int64_t));
    for (int i = 0; i < cfg.accounts; i++) plan.final_balance[i] = plan.initial_balance;
    for (long i = 0; i < plan.nops; i++) {
        acct_op *op = &plan.ops[i];
        int p = (int)rng_below(&r, 100);
        op->kind = p < 45 ? OP_DEPOSIT : p < 80 ? OP_WITHDRAW : OP_TRANSFER;
        op->from = (int32_t)rng_below(&r, cfg.accounts);
        if (op->kind == OP_TRANSFER) {
            op->to = (int32_t)rng_below(&r, cfg.accounts - 1);
            if (op->to >= op->from) op->to++;
        }
        op->amount = 1 + (int64_t)rng_below(&r, op->kind == OP_DEPOSIT ? 500 : 600);
        int64_t *from = &plan.final_balance[op->from];
        if (op->kind == OP_DEPOSIT) {
            *from += op->amount;
        } else if (*from < op->amount) {
            op->outcome = OUT_INSUFFICIENT;
            plan.insufficient++;
        } else {
            *from -= op->amount;
            if (op->kind == OP_TRANSFER) plan.final_balance[op->to] += op->amount;
        }
    }
    plan.nqueries = cfg.balance_queries;
    plan.queries = calloc(plan.nqueries, sizeof(int32_t));
    for (long q = 0; q < plan.nqueries; q++) plan.queries[q] = (int32_t)rng_below(&r, cfg.accounts);
}

/* ---------------------------------------------------------------- workloads and rows */

typedef int (*side_fn)(double *m);
typedef struct {
    const char *name;
    side_fn fn;
    int evstore; /* an evstore side: skipped when the workload-3 store it reads is missing */
} side;

typedef struct {
    int id;
    const char *title;
    int nsides;
    side sides[MAX_SIDES];
    int (*prepare)(void); /* untimed, before the first round; on failure prepare_side is skipped */
    int prepare_side;
    int needs_w3;
    /* results */
    int selected, failed[MAX_SIDES], n[MAX_SIDES];
    double sample[MAX_SIDES][MAX_METRICS][MAX_RUNS];
    double seconds;
} workload;

static workload W[] = {
    {.id = 1, .title = "durable single appends, 1 thread", .nsides = 4,
     .sides = {{"evstore ALWAYS", evs_single, 1}, {"SQLite FULL", sq_single, 0},
               {"raw fdatasync, preallocated", disk_single_prealloc, 0},
               {"raw fdatasync, growing", disk_single_growing, 0}}},
    {.id = 2, .title = "durable appends, threads", .nsides = 2,
     .sides = {{"evstore ALWAYS", evs_threads, 1}, {"SQLite FULL", sq_threads, 0}}},
    {.id = 3, .title = "non-durable appends", .nsides = 5,
     .sides = {{"evstore BATCH", evs_nondurable, 1}, {"SQLite NORMAL", sq_nondurable, 0},
               {"SQLite NORMAL, batched", sq_nondurable_batched, 0},
               {"evstore BATCH, 100 per call", evs_nondurable_multi, 1},
               {"raw pwrite per event", disk_nondurable_pwrite, 0}}},
    {.id = 4, .title = "expected-version appends", .nsides = 2,
     .sides = {{"evstore BATCH", evs_expected, 1}, {"SQLite NORMAL", sq_expected, 0}}},
    {.id = 5, .title = "reads", .nsides = 2, .sides = {{"evstore", evs_reads, 1}, {"SQLite", sq_reads, 0}},
     .needs_w3 = 1},
    {.id = 6, .title = "accounts", .nsides = 2,
     .sides = {{"evstore BATCH", evs_accounts, 1}, {"SQLite NORMAL", sq_accounts, 0}}},
    {.id = 7, .title = "open", .nsides = 4,
     .sides = {{"evstore, no snapshot", evs_open_nosnap, 1}, {"evstore, snapshot", evs_open_snap, 1},
               {"SQLite", sq_open, 0}, {"evstore, after SIGKILL", evs_open_killed, 1}},
     .prepare = evs_prepare_open, .prepare_side = 1, .needs_w3 = 1},
    {.id = 8, .title = "compaction", .nsides = 2,
     .sides = {{"evstore, half the streams deleted, compacted", evs_compact_half, 1},
               {"evstore, a store that never held them", evs_compact_never, 1}}},
    {.id = 9, .title = "durable consumers", .nsides = 3,
     .sides = {{"evstore consumer", evs_consumer_catchup, 1}, {"evstore read all", evs_consumer_readall, 1},
               {"evstore live consumer", evs_consumer_live, 1}},
     .prepare = evs_prepare_consumers, .prepare_side = 0, .needs_w3 = 1},
    {.id = 10, .title = "personal data", .nsides = 2,
     .sides = {{"evstore, events naming a subject", evs_subjects_sealed, 1},
               {"evstore, the same events without", evs_subjects_plain, 1}}},
};
#define NW ((int)(sizeof W / sizeof W[0]))

typedef struct {
    int wl, metric, a, b, metric_b; /* side a's metric against side b's metric_b */
    char label[160];
    char other[96];
    const char *unit;
    int higher_better;
    double target;     /* the ratio a target asks for; 0: none */
    double abs_target; /* evstore's own figure a target asks for (at least, or at most for
                          lower-is-better units); 0: none */
    int issue;         /* the issue that set the target(s) */
} row;

static row rows[32];
static int nrows;

static void add_row(int wl, int metric, int a, int b, const char *unit, int higher, double target, const char *other,
                    const char *fmt, ...) {
    row *r = &rows[nrows++];
    r->wl = wl, r->metric = metric, r->a = a, r->b = b, r->metric_b = metric, r->unit = unit, r->higher_better = higher;
    r->target = target;
    r->issue = target > 0 ? 8 : 0;
    snprintf(r->other, sizeof r->other, "%s", other);
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(r->label, sizeof r->label, fmt, ap);
    va_end(ap);
}

/* The last row added gets issue 20's target: a ratio against the other side. */
static void issue20(double ratio) {
    row *r = &rows[nrows - 1];
    r->target = ratio;
    r->issue = 20;
}

/* The last row added gets issue 13's targets (a ratio and/or evstore's own figure). */
static void issue13(double ratio, double absolute) {
    row *r = &rows[nrows - 1];
    r->target = ratio;
    r->abs_target = absolute;
    r->issue = 13;
}

/* The last row added gets issue 22's targets (durable consumers). */
static void issue22(double ratio, double absolute) {
    issue13(ratio, absolute);
    rows[nrows - 1].issue = 22;
}

/* The last row added gets issue 24's target: a ratio against the other side. */
static void issue24(double ratio) {
    row *r = &rows[nrows - 1];
    r->target = ratio;
    r->issue = 24;
}

static const char *count_str(long n) {
    static char buf[8][32];
    static int k;
    char *b = buf[k++ % 8];
    char raw[32];
    snprintf(raw, sizeof raw, "%ld", n);
    int len = (int)strlen(raw), j = 0;
    for (int i = 0; i < len; i++) {
        if (i && (len - i) % 3 == 0) b[j++] = ',';
        b[j++] = raw[i];
    }
    b[j] = 0;
    return b;
}

static void make_rows(void) {
    int P = cfg.payload_size;
    add_row(0, 0, 0, 1, "events/s", 1, 0, "SQLite synchronous=FULL, a transaction per event",
            "1. Durable appends, 1 thread, %d B (up to %s events or %.0f s)", P, count_str(cfg.single_events),
            cfg.durable_budget_s);
    add_row(0, 0, 0, 2, "events/s", 1, 0, "raw write+fdatasync, preallocated file",
            "1. Durable appends, 1 thread: evstore vs the disk");
    issue13(0.9, 0);
    add_row(0, 0, 0, 3, "events/s", 1, 0, "raw write+fdatasync, growing file",
            "1. Durable appends, 1 thread: evstore vs the disk");
    add_row(1, 0, 0, 1, "events/s", 1, 3, "SQLite FULL, a connection per thread, busy timeout",
            "2. Durable appends, %d threads (up to %s each or %.0f s)", cfg.threads, count_str(cfg.thread_events),
            cfg.durable_budget_s);
    add_row(2, 0, 0, 1, "events/s", 1, 0, "SQLite NORMAL, a transaction per event",
            "3. Non-durable appends, %s events, %d B, one per evs_append", count_str(cfg.nd_events), P);
    issue13(10, 1000000);
    add_row(2, 0, 0, 2, "events/s", 1, 0, "SQLite NORMAL, 1,000 events per transaction (extra)",
            "3. Non-durable appends (evstore still one event per call)");
    add_row(2, 0, 0, 4, "events/s", 1, 0, "raw pwrite of one record per event, no fdatasync (the floor)",
            "3. Non-durable appends, one per call: evstore vs the system call each costs");
    add_row(2, 0, 3, 2, "events/s", 1, 0, "SQLite NORMAL, 1,000 events per transaction",
            "3. Non-durable appends, 100 events per evs_append");
    issue13(0, 5000000);
    add_row(2, 1, 0, 1, "bytes/event", 0, 0, "SQLite, its database file after close",
            "3. Bytes on disk per %d-byte event (the whole store after close)", P);
    issue13(0, 150);
    add_row(3, 0, 0, 1, "events/s", 1, 0, "SQLite NORMAL, select max(version) + insert in a transaction",
            "4. Expected-version appends, %s events over %s streams", count_str(cfg.ev_events), count_str(cfg.ev_streams));
    add_row(4, 0, 0, 1, "events/s", 1, 0, "SQLite, SELECT ... ORDER BY pos", "5. Read all %s events, evs_cursor_next",
            count_str(cfg.nd_events));
    issue13(2, 0);
    add_row(4, 3, 0, 1, "events/s", 1, 0, "SQLite, SELECT ... ORDER BY pos",
            "5. Read all %s events, evs_cursor_next_batch (256)", count_str(cfg.nd_events));
    issue13(5, 0);
    add_row(4, 1, 0, 1, "us/read", 0, 0, "SQLite, WHERE stream = ? ORDER BY version",
            "5. Read one %s-event stream, first read of it (cold)", count_str(cfg.events_per_stream));
    issue13(2, 0);
    add_row(4, 4, 0, 1, "us/read", 0, 0, "SQLite, the same stream again",
            "5. Read one %s-event stream again (warm)", count_str(cfg.events_per_stream));
    issue13(2, 0);
    add_row(4, 4, 0, 0, "us/read", 1, 0, "evstore, the cold read (ratio: warm time / cold time)",
            "5. One stream: evstore warm vs evstore cold");
    rows[nrows - 1].metric_b = 1;
    issue13(1 / 1.5, 0);
    add_row(4, 2, 0, 1, "us/read", 0, 0, "SQLite, ORDER BY pos DESC LIMIT 10", "5. Read the last 10 by position");
    add_row(5, 0, 0, 1, "ops/s", 1, 10, "SQLite NORMAL, accounts row + events in a transaction per op",
            "6. Accounts: %s ops over %s accounts", count_str(cfg.acct_ops), count_str(cfg.accounts));
    add_row(5, 1, 0, 1, "us/query", 0, 0, "SQLite, SELECT balance by id", "6. Balance query");
    add_row(6, 0, 0, 2, "ms", 0, 0, "SQLite open + count(*)", "7. Open a %s-event store, no snapshot, after close",
            count_str(cfg.nd_events));
    add_row(6, 0, 3, 2, "ms", 0, 0, "SQLite open + count(*)",
            "7. Open a %s-event store after its writer was SIGKILLed, no snapshot", count_str(cfg.nd_events));
    issue13(0, 100);
    add_row(6, 0, 1, 2, "ms", 0, 0, "SQLite open + count(*)", "7. Open a %s-event store, with a snapshot",
            count_str(cfg.nd_events));
    add_row(7, 0, 0, -1, "MB/s", 1, 0, "-",
            "8. Compaction: segment bytes rewritten per second, %s-event store, half its streams deleted, "
            "unthrottled", count_str(cfg.nd_events));
    add_row(7, 1, 0, 1, "us p99", 0, 0, "the same appends to a store with no compaction running",
            "8. p99 latency of single evs_append (BATCH) while evs_compact runs at 64 MiB/s");
    issue20(0.5);
    add_row(7, 2, 0, 1, "bytes", 0, 0, "a store that never held the deleted streams",
            "8. Bytes on disk: %s events, half the streams deleted, compacted", count_str(cfg.nd_events));
    issue20(1 / 1.1);
    add_row(7, 3, 0, 1, "bytes", 0, 0, "the segment files of the store that never held them",
            "8. The same, its segment files alone (without index files and snapshots)");
    add_row(8, 0, 0, 1, "events/s", 1, 0, "evstore read all, evs_cursor_next (the same store)",
            "9. Durable consumer catching up on %s events, acking each, checkpoint every 100",
            count_str(cfg.nd_events));
    issue22(0.5, 0);
    add_row(8, 0, 2, 2, "ms", 0, 0, "evstore, the median (ratio: median / p99)",
            "9. Durable consumer, p99 delivery latency from commit (%s events at ~5,000/s, BATCH)",
            count_str(cfg.consumer_live_events));
    rows[nrows - 1].metric_b = 1;
    issue22(0, 5);
    add_row(9, 0, 0, 1, "events/s", 1, 0, "the same appends naming no subject",
            "10. Appends naming one of 1,000 subjects (sealed, AES-256-GCM), %s events, %d B, BATCH, one per call",
            count_str(cfg.nd_events), P);
    issue24(0.8);
    add_row(9, 1, 0, 1, "events/s", 1, 0, "the same read of events naming no subject",
            "10. Read all of them, evs_cursor_next (each event opened)");
    issue24(0.7);
}

/* ---------------------------------------------------------------- running */

static void run_workload(workload *w) {
    double t0 = now_s();
    note("== workload %d: %s", w->id, w->title);
    if (w->needs_w3 && W[2].failed[0]) {
        for (int s = 0; s < w->nsides; s++)
            if (w->sides[s].evstore) {
                w->failed[s] = 1;
                problem("%d %s: not run, the workload-3 evstore store it needs failed", w->id, w->sides[s].name);
            }
    }
    if (w->prepare && !w->failed[w->prepare_side] && w->prepare() != 0) w->failed[w->prepare_side] = 1;
    for (int r = 0; r < cfg.runs; r++) {
        for (int s = 0; s < w->nsides; s++) {
            if (w->failed[s]) continue;
            note(" round %d/%d, %s", r + 1, cfg.runs, w->sides[s].name);
            double m[MAX_METRICS] = {0};
            if (w->sides[s].fn(m) != 0) {
                w->failed[s] = 1;
                continue;
            }
            for (int k = 0; k < MAX_METRICS; k++) w->sample[s][k][w->n[s]] = m[k];
            w->n[s]++;
        }
    }
    w->seconds = now_s() - t0;
    note(" workload %d took %.0f s", w->id, w->seconds);
}

/* ---------------------------------------------------------------- the report */

static const char *fmt_val(double v) {
    static char buf[16][48];
    static int k;
    char *b = buf[k++ % 16];
    if (v >= 10000) snprintf(b, 48, "%s", count_str((long)(v + 0.5)));
    else if (v >= 100) snprintf(b, 48, "%.0f", v);
    else if (v >= 10) snprintf(b, 48, "%.1f", v);
    else if (v >= 1) snprintf(b, 48, "%.2f", v);
    else snprintf(b, 48, "%.3f", v);
    return b;
}

static double vmin(const double *v, int n) {
    double x = v[0];
    for (int i = 1; i < n; i++) x = v[i] < x ? v[i] : x;
    return x;
}

static double vmax(const double *v, int n) {
    double x = v[0];
    for (int i = 1; i < n; i++) x = v[i] > x ? v[i] : x;
    return x;
}

static const char *fs_name(long type) {
    switch ((unsigned long)type) {
    case 0xEF53: return "ext4 (ext2/3/4)";
    case 0x58465342: return "xfs";
    case 0x9123683E: return "btrfs";
    case 0x01021994: return "tmpfs";
    case 0x794C7630: return "overlayfs";
    case 0x2FC12FC1: return "zfs";
    case 0xF2F52010: return "f2fs";
    case 0x6969: return "nfs";
    case 0x65735546: return "fuse";
    case 0x858458F6: return "ramfs";
    case 0x5346544E: return "ntfs";
    case 0x4D44: return "vfat";
    default: return "unknown";
    }
}

static void cpu_model(char *out, size_t len) {
    snprintf(out, len, "unknown CPU");
    FILE *f = fopen("/proc/cpuinfo", "r");
    if (!f) return;
    char line[512];
    while (fgets(line, sizeof line, f)) {
        if (!strncmp(line, "model name", 10)) {
            char *p = strchr(line, ':');
            if (p) {
                p += 2;
                p[strcspn(p, "\n")] = 0;
                snprintf(out, len, "%s", p);
            }
            break;
        }
    }
    fclose(f);
}

static void report(FILE *o, const char *date) {
    struct utsname u;
    uname(&u);
    struct statfs sf;
    char fs[64] = "unknown";
    if (statfs(cfg.dir, &sf) == 0) snprintf(fs, sizeof fs, "%s, magic 0x%lX", fs_name(sf.f_type), (unsigned long)sf.f_type);
    char cpu[256];
    cpu_model(cpu, sizeof cpu);
    long mem_mib = sysconf(_SC_PHYS_PAGES) / 1024 * sysconf(_SC_PAGESIZE) / 1024;

    fprintf(o, "## evstore beside SQLite and the disk%s\n\n", cfg.quick ? " (--quick smoke run: small counts, 1 round; not a result)" : "");
    fprintf(o, "- Date: %s\n", date);
    fprintf(o, "- Machine: %ld cores (sysconf), %s, %ld MiB memory; %s %s %s\n", sysconf(_SC_NPROCESSORS_ONLN), cpu,
            mem_mib, u.sysname, u.release, u.machine);
    fprintf(o, "- Bench directory filesystem (statfs): %s\n", fs);
    fprintf(o, "- evstore %s (C API, shared library); SQLite %s (system libsqlite3, WAL journal mode)\n",
            evs_lib_version(), sq_lib_version());
    fprintf(o, "- %d round%s per workload, sides alternating within each round; payloads %d bytes, identical on both "
               "sides\n\n",
            cfg.runs, cfg.runs == 1 ? "" : "s", cfg.payload_size);

    fprintf(o, "| Workload | Unit | evstore median | evstore min-max | Compared with | its median | its min-max | "
               "Ratio (median) | Target (issue) | Met |\n");
    fprintf(o, "|---|---|--:|--:|---|--:|--:|--:|--:|:-:|\n");
    char missed[32][320];
    int nmet = 0, nmissed = 0;
    for (int i = 0; i < nrows; i++) {
        row *r = &rows[i];
        workload *w = &W[r->wl];
        if (!w->selected) continue;
        char a_med[48] = "FAILED", a_mm[96] = "", b_med[48] = "-", b_mm[96] = "", ratio[48] = "-",
             target[48] = "-", met[96] = "-";
        /* b < 0: evstore's own figure, compared with nothing */
        int na = w->failed[r->a] ? 0 : w->n[r->a], nb = r->b < 0 || w->failed[r->b] ? 0 : w->n[r->b];
        const double *A = w->sample[r->a][r->metric], *B = r->b < 0 ? A : w->sample[r->b][r->metric_b];
        if (na) {
            snprintf(a_med, sizeof a_med, "%s", fmt_val(median_of(A, na)));
            snprintf(a_mm, sizeof a_mm, "%s-%s", fmt_val(vmin(A, na)), fmt_val(vmax(A, na)));
        }
        if (r->b >= 0 && !nb) snprintf(b_med, sizeof b_med, "FAILED");
        if (nb) {
            snprintf(b_med, sizeof b_med, "%s", fmt_val(median_of(B, nb)));
            snprintf(b_mm, sizeof b_mm, "%s-%s", fmt_val(vmin(B, nb)), fmt_val(vmax(B, nb)));
        }
        {
            char t1[48] = "", t2[64] = "";
            if (r->target > 0) snprintf(t1, sizeof t1, ">= %.2gx", r->target);
            if (r->abs_target > 0)
                snprintf(t2, sizeof t2, "%s%s %s %s", t1[0] ? ", " : "", r->higher_better ? ">=" : "<=",
                         fmt_val(r->abs_target), r->unit);
            if (t1[0] || t2[0]) snprintf(target, sizeof target, "%s%s (issue %d)", t1, t2, r->issue);
        }
        /* the ratio, and each target the row has: met only when every one is */
        int has_ratio = na && nb, ratio_ok = 1, abs_ok = 1;
        double med = 0;
        if (has_ratio) {
            double q[MAX_RUNS];
            int n = na < nb ? na : nb;
            for (int k = 0; k < n; k++) q[k] = r->higher_better ? A[k] / B[k] : B[k] / A[k];
            med = median_of(q, n);
            snprintf(ratio, sizeof ratio, "%.2fx", med);
            ratio_ok = r->target <= 0 || med >= r->target;
        }
        if (r->abs_target > 0 && na) {
            double own = median_of(A, na);
            abs_ok = r->higher_better ? own >= r->abs_target : own <= r->abs_target;
        }
        if (r->target > 0 || r->abs_target > 0) {
            int measured = na && (r->target <= 0 || nb);
            if (!measured) {
                snprintf(met, sizeof met, "**not measured**");
                snprintf(missed[nmissed++], sizeof missed[0], "%s vs %s: not measured", r->label, r->other);
            } else if (ratio_ok && abs_ok) {
                snprintf(met, sizeof met, "yes");
                nmet++;
            } else {
                if (!ratio_ok)
                    /* rounded down: 99.6% of a target is not "100%" */
                    snprintf(met, sizeof met, "**no** (%d%% of the ratio)", (int)(100 * med / r->target));
                else
                    snprintf(met, sizeof met, "**no** (own figure)");
                snprintf(missed[nmissed++], sizeof missed[0], "%s: %s %s, %s; target %s", r->label,
                         fmt_val(median_of(A, na)), r->unit, ratio, target);
            }
        }
        fprintf(o, "| %s | %s | %s | %s | %s | %s | %s | %s | %s | %s |\n", r->label, r->unit, a_med, a_mm, r->other,
                b_med, b_mm, ratio, target, met);
    }
    fprintf(o, "\nTargets (issues 8, 13, 20 and 22): %d of %d met.", nmet, nmet + nmissed);
    for (int i = 0; i < nmissed; i++) fprintf(o, "%s %s", i ? ";" : " Missed:", missed[i]);
    fprintf(o, "\n");
    fprintf(o, "\nRatio: the median over rounds of (evstore rate / other rate), or (other time / evstore time) for "
               "us and ms rows; above 1 means evstore is faster.\n");
    fprintf(o, "Durable rows stop at their count or their time budget, whichever comes first. Reads, queries and "
               "opens run on a warm page cache, with the stores workload 3 wrote; opens are the median of %d per "
               "round, closes untimed.\n",
            cfg.opens);
    fprintf(o, "Compaction (8): the workload-3 events, 100 per evs_append; the odd-numbered half of the streams "
               "soft-deleted, then evs_compact (checked: every deleted event erased). Latency: single appends "
               "timed while evs_compact runs at its default budget, against as many on a store with none running. "
               "Bytes: every file of the store after close, against a store given only the kept streams' events.\n");
    fprintf(o, "Account workload: %s of the %s operations are refused for insufficient funds, on both sides, as a "
               "plain model predicts; every balance query is checked against it.\n",
            count_str(plan.insufficient), count_str(plan.nops));
    if (nproblems) {
        fprintf(o, "\n### Problems\n\n");
        for (int i = 0; i < nproblems; i++) fprintf(o, "- %s\n", problems[i]);
    }
}

/* ---------------------------------------------------------------- main */

static void usage(void) {
    fprintf(stderr, "usage: bench [--runs N] [--quick] [--only 1,2,...] [--dir DIR] [--results DIR]\n"
                    "  --runs N       rounds per workload, sides alternating (default 3)\n"
                    "  --quick        small counts and 1 round: a smoke run (writes quick.md, not latest.md)\n"
                    "  --only LIST    only these workloads (5 and 7 also run 3, whose stores they read);\n"
                    "                 writes partial.md, not latest.md\n"
                    "  --dir DIR      where stores are created (default .); must be on the disk measured\n"
                    "  --results DIR  where the table is written (default bench/results)\n");
    exit(2);
}

int main(int argc, char **argv) {
    const char *results = "bench/results", *only = NULL;
    int runs = -1;
    cfg.dir = ".";
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--quick")) cfg.quick = 1;
        else if (!strcmp(argv[i], "--runs") && i + 1 < argc) runs = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--only") && i + 1 < argc) only = argv[++i];
        else if (!strcmp(argv[i], "--dir") && i + 1 < argc) cfg.dir = argv[++i];
        else if (!strcmp(argv[i], "--results") && i + 1 < argc) results = argv[++i];
        else usage();
    }
    cfg.payload_size = 100;
    cfg.threads = 8;
    cfg.sqlite_batch = 1000;
    cfg.events_per_stream = 1000;
    cfg.ev_streams = 1000;
    cfg.accounts = 10000;
    if (!cfg.quick) {
        cfg.runs = 3;
        cfg.single_events = 10000;
        cfg.durable_budget_s = 5;
        cfg.thread_events = 2000;
        cfg.nd_events = 1000000;
        cfg.ev_events = 200000;
        cfg.stream_reads = 200;
        cfg.last10_reads = 20000;
        cfg.acct_ops = 1000000;
        cfg.balance_queries = 200000;
        cfg.opens = 5;
        cfg.consumer_live_events = 20000;
    } else {
        cfg.runs = 1;
        cfg.single_events = 300;
        cfg.durable_budget_s = 1;
        cfg.thread_events = 50;
        cfg.nd_events = 20000;
        cfg.ev_events = 5000;
        cfg.ev_streams = 100;
        cfg.stream_reads = 20;
        cfg.last10_reads = 1000;
        cfg.accounts = 500;
        cfg.acct_ops = 20000;
        cfg.balance_queries = 5000;
        cfg.opens = 3;
        cfg.consumer_live_events = 2000;
    }
    if (runs > 0) cfg.runs = runs > MAX_RUNS ? MAX_RUNS : runs;

    for (int i = 0; i < NW; i++) W[i].selected = only == NULL;
    if (only) {
        /* workload numbers separated by commas (10 has two digits) */
        for (const char *p = only; *p;) {
            char *end;
            long id = strtol(p, &end, 10);
            if (end == p) {
                p++;
                continue;
            }
            if (id >= 1 && id <= NW) W[id - 1].selected = 1;
            p = end;
        }
        if (W[4].selected || W[6].selected || W[8].selected) W[2].selected = 1;
    }

    make_rows();
    make_plan();
    char date[64];
    time_t t = time(NULL);
    strftime(date, sizeof date, "%Y-%m-%d %H:%M UTC", gmtime(&t));
    note("evstore %s vs SQLite %s in %s, %d round(s)%s", evs_lib_version(), sq_lib_version(), cfg.dir, cfg.runs,
         cfg.quick ? ", quick" : "");

    double t0 = now_s();
    for (int i = 0; i < NW; i++)
        if (W[i].selected) run_workload(&W[i]);
    note("all workloads took %.0f s", now_s() - t0);

    report(stdout, date);
    mkdir(results, 0755);
    char out[4096];
    /* only a full run (all workloads, not --quick) replaces the table the README quotes */
    snprintf(out, sizeof out, "%s/%s", results, cfg.quick ? "quick.md" : only ? "partial.md" : "latest.md");
    FILE *f = fopen(out, "w");
    if (!f) fatal("cannot write %s: %s", out, strerror(errno));
    report(f, date);
    fclose(f);
    note("table written to %s", out);
    return nproblems ? 1 : 0;
}
