/* The disk's own limit for durable single appends: write one record, fdatasync, repeat.
 * The record is as large as evstore's for the same event: measured from the size of the
 * log evstore wrote in the same workload (its segments are truncated to their logical
 * size on close), or before that is known, estimated as the payload, the stream name and
 * the event type plus RECORD_OVERHEAD bytes for the WAL record (two length varints, flags,
 * the 8-byte key, the CRC) and the envelope's fixed fields. */
#define _GNU_SOURCE
#include "bench.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define RECORD_OVERHEAD 48

static size_t record_size(void) {
    if (evs_record_bytes > 0) return (size_t)evs_record_bytes;
    return cfg.payload_size + strlen("single") + strlen(EVENT_TYPE) + RECORD_OVERHEAD;
}

static int disk_loop(int fd, off_t start, double *m, const char *what) {
    size_t rs = record_size();
    uint8_t *rec = calloc(1, rs);
    long n = 0;
    double t0 = now_s(), deadline = t0 + cfg.durable_budget_s;
    for (; n < cfg.single_events && (n & 15 || now_s() < deadline); n++) {
        make_payload(rec, n);
        if (pwrite(fd, rec, rs, start + (off_t)n * rs) != (ssize_t)rs) fatal("%s: pwrite: %s", what, strerror(errno));
        if (fdatasync(fd) != 0) fatal("%s: fdatasync: %s", what, strerror(errno));
    }
    double el = now_s() - t0;
    m[0] = n / el;
    free(rec);
    note("  raw %s: %ld records of %zu bytes (%s) in %.2f s", what, n, rs,
         evs_record_bytes > 0 ? "evstore's, measured" : "estimated", el);
    return 0;
}

/* A file written full of zeros and synced first: overwrites change no metadata, so each
 * fdatasync flushes just the data (the best any log on this disk can do). */
int disk_single_prealloc(double *m) {
    char path[4096];
    path_in_dir(path, sizeof path, "w1-raw-prealloc.dat");
    remove_tree(path);
    int fd = open(path, O_CREAT | O_TRUNC | O_RDWR, 0644);
    if (fd < 0) fatal("%s: %s", path, strerror(errno));
    size_t total = record_size() * (size_t)cfg.single_events + (1 << 20);
    static uint8_t zeros[1 << 16];
    for (size_t off = 0; off < total; off += sizeof zeros)
        if (write(fd, zeros, sizeof zeros) != (ssize_t)sizeof zeros) fatal("%s: write: %s", path, strerror(errno));
    if (fsync(fd) != 0) fatal("%s: fsync: %s", path, strerror(errno));
    int rc = disk_loop(fd, 0, m, "fdatasync, preallocated file");
    close(fd);
    remove_tree(path);
    return rc;
}

/* An empty file that grows with every record: each fdatasync also flushes the new size. */
int disk_single_growing(double *m) {
    char path[4096];
    path_in_dir(path, sizeof path, "w1-raw-growing.dat");
    remove_tree(path);
    int fd = open(path, O_CREAT | O_TRUNC | O_RDWR, 0644);
    if (fd < 0) fatal("%s: %s", path, strerror(errno));
    int rc = disk_loop(fd, 0, m, "fdatasync, growing file");
    close(fd);
    remove_tree(path);
    return rc;
}

/* The floor of a non-durable append that is with the OS when it returns (so that a
 * SIGKILL loses nothing): one pwrite of an evstore-sized record per event into a
 * preallocated file, no fdatasync. Any log that writes each append before returning pays
 * at least this system call. */
int disk_nondurable_pwrite(double *m) {
    char path[4096];
    path_in_dir(path, sizeof path, "w3-raw-pwrite.dat");
    remove_tree(path);
    int fd = open(path, O_CREAT | O_TRUNC | O_RDWR, 0644);
    if (fd < 0) fatal("%s: %s", path, strerror(errno));
    size_t rs = record_size();
    if (posix_fallocate(fd, 0, (off_t)(rs * (size_t)cfg.nd_events)) != 0) fatal("%s: posix_fallocate failed", path);
    uint8_t *rec = calloc(1, rs);
    double t0 = now_s();
    for (long n = 0; n < cfg.nd_events; n++) {
        make_payload(rec, n);
        if (pwrite(fd, rec, rs, (off_t)n * rs) != (ssize_t)rs) fatal("%s: pwrite: %s", path, strerror(errno));
    }
    double el = now_s() - t0;
    m[0] = cfg.nd_events / el;
    free(rec);
    close(fd);
    remove_tree(path);
    note("  raw pwrite per event: %ld records of %zu bytes in %.2f s", cfg.nd_events, rs, el);
    return 0;
}
