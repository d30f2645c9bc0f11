/* The backup benchmark (issue 23): a store of 1M events (EVS_FSYNC_ALWAYS), then
 *   1. append latency of one durable appender alone (p50, p99),
 *   2. the same while evs_backup copies the store (--no-links: every byte copied) into
 *      a new directory: the backup's MB/s, and the appender's p99 against (1),
 *   3. an incremental backup into that backup, and one with hard links.
 *   build/bench/backup DIR [EVENTS]          (DIR: where the stores go; removed by run.sh) */
#define _POSIX_C_SOURCE 200809L
#include <evstore.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define MAX_SAMPLES 2000000

static double now_s(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + (double)t.tv_nsec / 1e9;
}

static void check(const char *what, evs_status st) {
    if (st != EVS_OK) {
        fprintf(stderr, "bench/backup: %s: %s: %s\n", what, evs_status_name(st), evs_last_error_message());
        exit(1);
    }
}

typedef struct {
    evs_store *s;
    atomic_bool stop;
    double *lat_us;
    size_t n;
} appender;

/* Appends one 100-byte event at a time until told to stop, timing each. */
static void *append_loop(void *arg) {
    appender *a = arg;
    uint8_t payload[100];
    memset(payload, 'p', sizeof payload);
    evs_event_input e = EVS_STRUCT_INIT(evs_event_input);
    e.event_type = "Timed";
    e.payload = payload;
    e.payload_len = sizeof payload;
    while (!atomic_load(&a->stop) && a->n < MAX_SAMPLES) {
        double t0 = now_s();
        check("append", evs_append(a->s, "timed", EVS_EXPECT_ANY, &e, 1, NULL, NULL));
        a->lat_us[a->n++] = (now_s() - t0) * 1e6;
    }
    return NULL;
}

static int cmp_double(const void *x, const void *y) {
    double a = *(const double *)x, b = *(const double *)y;
    return (a > b) - (a < b);
}

static double pct(double *v, size_t n, double p) {
    if (n == 0)
        return 0;
    qsort(v, n, sizeof *v, cmp_double);
    return v[(size_t)(p * (double)(n - 1))];
}

/* Starts the appender; returns after `secs`, or after `work` (if not NULL) returns. */
static void timed(appender *a, double secs, void (*work)(void *), void *arg) {
    pthread_t th;
    a->n = 0;
    atomic_store(&a->stop, false);
    pthread_create(&th, NULL, append_loop, a);
    if (work != NULL) {
        work(arg);
    } else {
        struct timespec d = {(time_t)secs, (long)((secs - (double)(time_t)secs) * 1e9)};
        nanosleep(&d, NULL);
    }
    atomic_store(&a->stop, true);
    pthread_join(th, NULL);
}

typedef struct {
    evs_store *s;
    char dest[4096];
    uint64_t flags;
    evs_backup_info info;
} backup_job;

static void run_backup(void *arg) {
    backup_job *j = arg;
    evs_backup_options o = EVS_STRUCT_INIT(evs_backup_options);
    o.flags = j->flags;
    j->info = (evs_backup_info)EVS_STRUCT_INIT(evs_backup_info);
    check("evs_backup", evs_backup(j->s, j->dest, &o, NULL, NULL, &j->info));
}

int main(int argc, char **argv) {
    if (argc < 2) {
        fprintf(stderr, "usage: backup DIR [EVENTS]\n");
        return 2;
    }
    const char *dir = argv[1];
    uint64_t events = argc > 2 ? strtoull(argv[2], NULL, 10) : 1000000;
    char store[4096];
    snprintf(store, sizeof store, "%s/store", dir);
    evs_options *o = evs_options_new();
    check("fsync", evs_options_set_fsync(o, EVS_FSYNC_ALWAYS, 0));
    evs_store *s = NULL;
    check("open", evs_open(store, o, &s, NULL));
    evs_options_free(o);

    /* Fill: 1000-event appends of 100-byte payloads over 1000 streams. */
    enum { BATCH = 1000 };
    static evs_event_input batch[BATCH];
    static uint8_t payload[100];
    memset(payload, 'f', sizeof payload);
    for (int i = 0; i < BATCH; i++) {
        batch[i] = (evs_event_input)EVS_STRUCT_INIT(evs_event_input);
        batch[i].event_type = "Filled";
        batch[i].payload = payload;
        batch[i].payload_len = sizeof payload;
    }
    double t0 = now_s();
    for (uint64_t done = 0; done < events; done += BATCH) {
        char stream[32];
        snprintf(stream, sizeof stream, "s-%" PRIu64, (done / BATCH) % 1000);
        check("fill", evs_append(s, stream, EVS_EXPECT_ANY, batch, BATCH, NULL, NULL));
    }
    double fill_s = now_s() - t0;

    appender a = {s, false, malloc(MAX_SAMPLES * sizeof(double)), 0};
    if (a.lat_us == NULL)
        return 1;
    timed(&a, 3.0, NULL, NULL);
    size_t n_alone = a.n;
    double p50_alone = pct(a.lat_us, a.n, 0.50), p99_alone = pct(a.lat_us, a.n, 0.99);

    backup_job copy = {s, "", EVS_BACKUP_NO_LINKS, {0}};
    snprintf(copy.dest, sizeof copy.dest, "%s/backup-copy", dir);
    timed(&a, 0, run_backup, &copy);
    size_t n_during = a.n;
    double p50_during = pct(a.lat_us, a.n, 0.50), p99_during = pct(a.lat_us, a.n, 0.99);
    double copy_s = (double)copy.info.duration_us / 1e6;

    backup_job incr = {s, "", EVS_BACKUP_NO_LINKS, {0}};
    snprintf(incr.dest, sizeof incr.dest, "%s", copy.dest);
    run_backup(&incr);
    backup_job link = {s, "", 0, {0}};
    snprintf(link.dest, sizeof link.dest, "%s/backup-link", dir);
    run_backup(&link);

    printf("| measure | value |\n|---|---|\n");
    printf("| store | %" PRIu64 " events of 100 B, filled in %.1f s, EVS_FSYNC_ALWAYS |\n", events, fill_s);
    printf("| backup, every file copied | %.1f MiB in %.2f s = **%.0f MB/s**, position %" PRIu64 " |\n",
           (double)copy.info.bytes_copied / (1 << 20), copy_s, (double)copy.info.bytes_copied / 1e6 / copy_s,
           copy.info.position);
    printf("| append p50 / p99 alone (%zu appends) | %.0f / %.0f µs |\n", n_alone, p50_alone, p99_alone);
    printf("| append p50 / p99 during the backup (%zu appends) | %.0f / %.0f µs (p99 %.2fx) |\n", n_during,
           p50_during, p99_during, p99_during / p99_alone);
    printf("| incremental backup right after | %" PRIu64 " files unchanged, %" PRIu64 " copied (%.1f MiB), %.3f s |\n",
           incr.info.files_unchanged, incr.info.files_copied, (double)incr.info.bytes_copied / (1 << 20),
           (double)incr.info.duration_us / 1e6);
    printf("| backup with hard links | %" PRIu64 " files linked, %" PRIu64 " copied (%.1f MiB), %.3f s |\n",
           link.info.files_linked, link.info.files_copied, (double)link.info.bytes_copied / (1 << 20),
           (double)link.info.duration_us / 1e6);
    free(a.lat_us);
    check("close", evs_close(s));
    return 0;
}
