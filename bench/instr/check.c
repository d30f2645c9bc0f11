/* Before anything is counted, the reference must be honest: the minimal reader reads
 * what evstore wrote, evstore opens what the minimal appender wrote, both see the same
 * events field for field (a hash over every field of every event), and the minimal
 * programs refuse what they must (damage, a cut-short tail, bad names, stale versions).
 * Each failed check prints what differed; run_checks returns the number failed. */
#define _GNU_SOURCE
#include "instr.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

static int failed, passed;

#define CHECK(cond, ...)                          \
    do {                                          \
        if (cond) {                               \
            passed++;                             \
        } else {                                  \
            failed++;                             \
            printf("FAILED (%s:%d): ", __FILE__, __LINE__); \
            printf(__VA_ARGS__);                  \
            printf("\n");                         \
        }                                         \
    } while (0)

static void rm_rf(const char *path)
{
    char cmd[4200];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", path);
    if (system(cmd) != 0)
        die("could not remove %s", path);
}

/* ---- the minimal programs' own parts ---- */
static void check_crc(void)
{
    static const uint8_t example[6] = {0x01, 0x02, 0x00, 0x01, 0x68, 0x69};
    uint8_t buf[300];
    for (size_t i = 0; i < sizeof buf; i++)
        buf[i] = (uint8_t)(i * 131 + 7);
    for (int table = 1; table >= 0; table--) {
        const char *name = min_crc32c_init(table);
        CHECK(min_crc32c((const uint8_t *)"123456789", 9) == 0xE3069283u, "CRC-32C check value (%s)", name);
        CHECK(min_crc32c(example, 6) == 0x6985f4a5u, "CRC-32C of the format's example record (%s)", name);
    }
    /* the instruction and the table agree on every length and alignment */
    int same = 1;
    for (size_t off = 0; off < 8; off++)
        for (size_t n = 0; n + off <= sizeof buf; n += 7) {
            min_crc32c_init(1);
            uint32_t t = min_crc32c(buf + off, n);
            min_crc32c_init(0);
            same &= t == min_crc32c(buf + off, n);
        }
    CHECK(same, "the CRC instruction and the table disagree");
}

static void check_utf8_and_varints(void)
{
    static const char *valid[] = {"", "a", "stream-0001", "BenchEvent", "\xc3\xa9", "\xe6\x97\xa5\xe6\x9c\xac",
                                  "\xf0\x9d\x84\x9e", "stream-\xc3\xa9-0001", "12345678", "1234567\xc3\xa9"};
    static const char *invalid[] = {"\x80", "\xc0\x80", "\xc1\xbf", "\xed\xa0\x80", "\xf4\x90\x80\x80",
                                    "\xf5\x80\x80\x80", "\xe6\x97", "abcdefgh\xff", "abcdefghij\x80",
                                    "abcdefgh12345678\xc3", "stream-\xe0\x80\xaf",
                                    "\xff" "abcdefghijklmnopq", "a\xc3" "bcdefghijklmnopqrstuvw",
                                    "abcdefghijklmnopqrstuvwxyz012345\x80" "6789"};
    for (size_t i = 0; i < sizeof valid / sizeof *valid; i++)
        CHECK(min_utf8_valid((const uint8_t *)valid[i], strlen(valid[i])), "UTF-8 refused: valid[%zu]", i);
    for (size_t i = 0; i < sizeof invalid / sizeof *invalid; i++)
        CHECK(!min_utf8_valid((const uint8_t *)invalid[i], strlen(invalid[i])), "UTF-8 accepted: invalid[%zu]", i);

    uint8_t b[24], *e;
    const uint8_t *p;
    uint64_t v;
    /* every length, read from a word with continuation bytes after it and byte by byte */
    int round_trips = 1;
    for (int bits = 0; bits < 64; bits++)
        for (uint64_t low = 0; low < 3; low++) {
            uint64_t x = (1ULL << bits) | (low * 0x5555555555555555ULL >> (63 - bits));
            memset(b, 0xff, sizeof b);
            e = min_put_varint(b, x);
            p = b;
            round_trips &= min_varint(&p, b + sizeof b, &v) && v == x && p == e;
            p = b;
            round_trips &= min_varint(&p, e, &v) && v == x && p == e;
        }
    CHECK(round_trips, "a varint does not read back as written");
    e = min_put_varint(b, UINT64_MAX);
    p = b;
    CHECK(e - b == 10 && min_varint(&p, e, &v) && v == UINT64_MAX && p == e, "varint of 2^64-1");
    b[9] = 0x02; /* a tenth byte past 64 bits */
    p = b;
    CHECK(!min_varint(&p, e, &v) && p == b, "varint past 64 bits accepted");
    memset(b, 0x80, 11);
    b[11] = 0;
    p = b;
    CHECK(!min_varint(&p, b + 12, &v), "an 11-byte varint accepted");
    e = min_put_varint(b, 300);
    p = b;
    CHECK(!min_varint(&p, e - 1, &v), "a cut-short varint accepted");
}

/* ---- evstore writes, the minimal reader reads ---- */
static int count_segments(const char *dir)
{
    ev_hash x = hash_store_minimal(dir);
    return x.segments;
}

static void name_for(char *out, size_t n, int i)
{
    /* non-ASCII names take the full UTF-8 check */
    if (i % 5 == 1)
        snprintf(out, n, "stream-\xc3\xa9-%d", i);
    else if (i % 5 == 3)
        snprintf(out, n, "\xe6\x97\xa5\xe6\x9c\xac-%d", i);
    else
        snprintf(out, n, "stream-%04d", i);
}

/* Event `seq` of the checks: sizes, types (one non-ASCII), metadata and schema versions
 * (0 is stored as 1) vary with it. */
static void varied_event(min_input *e, uint8_t *payload, size_t size, char meta[32], int seq)
{
    memset(e, 0, sizeof *e);
    make_payload(payload, size, seq);
    snprintf(meta, 32, "{\"m\":%d}", seq);
    e->event_type = seq % 2 ? EVENT_TYPE : "\xc3\x89v\xc3\xa9nement";
    e->payload = payload;
    e->payload_len = size;
    e->metadata = seq % 3 ? NULL : (const uint8_t *)meta;
    e->metadata_len = seq % 3 ? 0 : strlen(meta);
    e->schema_version = (uint32_t)(seq % 4);
}

static evs_event_input evs_input(const min_input *in)
{
    evs_event_input e = EVS_STRUCT_INIT(evs_event_input);
    e.event_type = in->event_type;
    e.payload = in->payload;
    e.payload_len = in->payload_len;
    e.metadata = in->metadata;
    e.metadata_len = in->metadata_len;
    e.schema_version = in->schema_version;
    return e;
}

static void evstore_writes(const char *dir)
{
    static uint8_t payload[2100 * 1024]; /* 100 events of 20,000 bytes */
    char stream[64], meta[32];
    evs_event_input in[PER_CALL];
    evs_store *s;
    rm_rf(dir);
    s = open_store(dir, 2 << 20, NULL);
    for (int i = 0; i < 3000; i++) {
        min_input m;
        varied_event(&m, payload, 40 + (size_t)(i % 260), meta, i);
        evs_event_input e = evs_input(&m);
        if (i % 7 == 0) { /* an id: envelope format 0x02 */
            for (int k = 0; k < 16; k++)
                e.id[k] = (uint8_t)(i >> (k % 4 * 8)) ^ (uint8_t)k;
            e.id[15] |= 1;
        }
        name_for(stream, sizeof stream, i % 40);
        evs_ok(evs_append(s, stream, EVS_EXPECT_ANY, &e, 1, NULL, NULL), "evs_append");
    }
    /* batches; one of 100 events of 20 KB (2 MB: past the reader's 1 MiB buffer) */
    for (int k = 0; k < 100; k++) {
        size_t size = k == 50 ? 20000 : 100;
        for (int i = 0; i < PER_CALL; i++) {
            in[i] = (evs_event_input)EVS_STRUCT_INIT(evs_event_input);
            in[i].event_type = EVENT_TYPE;
            make_payload(payload + (size_t)i * size, size, k * PER_CALL + i);
            in[i].payload = payload + (size_t)i * size;
            in[i].payload_len = size;
        }
        name_for(stream, sizeof stream, k % 10);
        evs_ok(evs_append(s, stream, EVS_EXPECT_ANY, in, PER_CALL, NULL, NULL), "evs_append 100");
    }
    for (int i = 0; i < 500; i++) {
        make_payload(payload, 100, i);
        evs_ok(evs_append_event(s, EVENT_TYPE, payload, 100, NULL), "evs_append_event");
    }
    /* two records larger than the reader's buffer */
    for (int i = 0; i < 2; i++) {
        make_payload(payload, 1600 * 1024, i);
        evs_event_input e = EVS_STRUCT_INIT(evs_event_input);
        e.event_type = EVENT_TYPE;
        e.payload = payload;
        e.payload_len = 1600 * 1024;
        evs_ok(evs_append(s, "big", EVS_EXPECT_ANY, &e, 1, NULL, NULL), "evs_append big");
    }
    evs_ok(evs_close(s), "evs_close");
}

static void check_evstore_to_minimal(const char *root)
{
    char dir[4096];
    snprintf(dir, sizeof dir, "%s/by-evstore", root);
    evstore_writes(dir);
    evs_store *s = open_store(dir, 2 << 20, NULL);
    ev_hash e = hash_store_evstore(s);
    evs_ok(evs_close(s), "evs_close");
    ev_hash m = hash_store_minimal(dir);
    CHECK(e.events == 13502 && m.events == e.events && m.h == e.h && m.payload_bytes == e.payload_bytes,
          "evstore's store: evstore read %" PRIu64 " events (hash %016" PRIx64 "), the minimal reader %"
          PRIu64 " (hash %016" PRIx64 ")", e.events, e.h, m.events, m.h);
    CHECK(m.segments >= 3, "evstore's store has %d segments, the check wants several", m.segments);
    min_crc32c_init(1);
    ev_hash t = hash_store_minimal(dir);
    min_crc32c_init(0);
    CHECK(t.h == e.h && t.events == e.events, "the minimal reader with the table CRC read otherwise");

    /* damage: a flipped payload byte fails its CRC; a cut-short last record is a torn tail */
    char seg[4200];
    char err[600];
    min_read_result rr;
    ev_hash x = {0, 0, 0, 0};
    uint8_t byte, tail[3];
    snprintf(seg, sizeof seg, "%s/events/000000.wal", dir);
    int fd = open(seg, O_RDWR);
    CHECK(fd >= 0 && pread(fd, &byte, 1, 5000) == 1, "reading %s", seg);
    byte ^= 0x20;
    CHECK(pwrite(fd, &byte, 1, 5000) == 1, "damaging %s", seg);
    min_status st = min_read_all(dir, hash_min_event, &x, &rr, err, sizeof err);
    CHECK(st == MIN_ERR_CORRUPT, "a flipped byte: status %d: %s", (int)st, err);
    byte ^= 0x20;
    CHECK(pwrite(fd, &byte, 1, 5000) == 1, "repairing %s", seg);
    close(fd);

    snprintf(seg, sizeof seg, "%s/events/%06d.wal", dir, m.segments - 1);
    fd = open(seg, O_RDWR);
    struct stat sb;
    CHECK(fd >= 0 && fstat(fd, &sb) == 0 && pread(fd, tail, 3, sb.st_size - 3) == 3, "reading %s", seg);
    CHECK(ftruncate(fd, sb.st_size - 3) == 0, "cutting %s", seg);
    st = min_read_all(dir, hash_min_event, &x, &rr, err, sizeof err);
    CHECK(st == MIN_ERR_TORN, "a cut-short last record: status %d: %s", (int)st, err);
    CHECK(pwrite(fd, tail, 3, sb.st_size - 3) == 3, "repairing %s", seg);
    close(fd);
    m = hash_store_minimal(dir);
    CHECK(m.h == e.h, "the repaired store reads otherwise");
}

/* A writer that stops without closing (as if killed): a preallocated segment with a
 * zero tail, which the minimal reader must take as the end. */
static void check_zero_tail(const char *root)
{
    char dir[4096], seg[4200];
    struct stat sb;
    snprintf(dir, sizeof dir, "%s/abandoned", root);
    rm_rf(dir);
    pid_t pid = fork();
    if (pid == 0) {
        evs_store *s = open_store(dir, 4 << 20, NULL);
        uint8_t payload[100];
        evs_event_input e = EVS_STRUCT_INIT(evs_event_input);
        e.event_type = EVENT_TYPE;
        e.payload = payload;
        e.payload_len = sizeof payload;
        for (int i = 0; i < 1000; i++) {
            make_payload(payload, sizeof payload, i);
            evs_ok(evs_append(s, "s", EVS_EXPECT_ANY, &e, 1, NULL, NULL), "evs_append");
        }
        _exit(0);
    }
    int status = 0;
    CHECK(pid > 0 && waitpid(pid, &status, 0) == pid && WIFEXITED(status) && WEXITSTATUS(status) == 0,
          "the abandoning writer failed");
    snprintf(seg, sizeof seg, "%s/events/000000.wal", dir);
    CHECK(stat(seg, &sb) == 0 && sb.st_size == 4 << 20, "the abandoned segment is not preallocated (%lld bytes)",
          (long long)sb.st_size);
    ev_hash m = hash_store_minimal(dir);
    evs_store *s = open_store(dir, 4 << 20, NULL);
    ev_hash e = hash_store_evstore(s);
    evs_ok(evs_close(s), "evs_close");
    CHECK(m.events == 1000 && m.h == e.h, "zero tail: the minimal reader read %" PRIu64 " events, evstore %"
          PRIu64, m.events, e.events);
}

/* ---- the minimal appender writes, evstore reads ---- */
#define B_STREAMS 40
static int64_t model[B_STREAMS];
static uint64_t model_events;

static min_status min_one(min_appender *a, int stream, int64_t expected, int i)
{
    char name[64], meta[32];
    static uint8_t payload[400];
    min_input e;
    name_for(name, sizeof name, stream);
    varied_event(&e, payload, 30 + (size_t)(i % 300), meta, i);
    uint64_t first = 0, version = 0;
    min_status st = min_append(a, name, 0, expected, &e, 1, &first, &version);
    if (st == MIN_OK) {
        CHECK(first == model_events && (int64_t)version == model[stream] + 1,
              "min_append gave position %" PRIu64 " version %" PRIu64, first, version);
        model[stream]++;
        model_events++;
    }
    return st;
}

static void minimal_writes(min_appender *a, int round)
{
    static uint8_t payload[PER_CALL * 100];
    min_input in[PER_CALL];
    char name[64];
    for (int i = 0; i < 3000; i++) {
        int k = i % B_STREAMS;
        /* every fourth names the version it expects */
        int64_t expected = i % 4 ? MIN_EXPECT_ANY : model[k] < 0 ? MIN_EXPECT_NO_STREAM : model[k];
        min_status st = min_one(a, k, expected, round * 10000 + i);
        CHECK(st == MIN_OK, "min_append: %s", min_appender_error(a));
    }
    for (int k = 0; k < 50; k++) {
        for (int i = 0; i < PER_CALL; i++) {
            memset(&in[i], 0, sizeof in[i]);
            in[i].event_type = EVENT_TYPE;
            make_payload(payload + i * 100, 100, k * PER_CALL + i);
            in[i].payload = payload + i * 100;
            in[i].payload_len = 100;
        }
        int s = k % B_STREAMS;
        uint64_t first = 0, version = 0;
        name_for(name, sizeof name, s);
        CHECK(min_append(a, name, 0, model[s], in, PER_CALL, &first, &version) == MIN_OK,
              "min_append 100: %s", min_appender_error(a));
        CHECK(first == model_events && (int64_t)version == model[s] + PER_CALL, "min_append 100 outputs");
        model[s] += PER_CALL;
        model_events += PER_CALL;
    }
    for (int i = 0; i < 500; i++) {
        uint64_t first = 0;
        CHECK(min_append(a, "", 1, MIN_EXPECT_ANY, in, 1, &first, NULL) == MIN_OK && first == model_events,
              "min_append with no stream: %s", min_appender_error(a));
        model_events++;
    }
}

static void check_minimal_refuses(min_appender *a)
{
    char long_name[1100];
    min_input e = {0};
    uint64_t before = min_appender_next_position(a);
    memset(long_name, 'x', 1025);
    long_name[1025] = 0;
    e.event_type = EVENT_TYPE;
    CHECK(min_one(a, 0, model[0] + 5, 1) == MIN_ERR_WRONG_VERSION, "a stale expected version was taken");
    CHECK(min_one(a, 0, MIN_EXPECT_NO_STREAM, 1) == MIN_ERR_WRONG_VERSION, "NO_STREAM of an existing stream");
    CHECK(min_append(a, "", 0, MIN_EXPECT_ANY, &e, 1, NULL, NULL) == MIN_ERR_INVALID, "an empty stream name");
    CHECK(min_append(a, long_name, 0, MIN_EXPECT_ANY, &e, 1, NULL, NULL) == MIN_ERR_INVALID, "a 1025-byte name");
    CHECK(min_append(a, "\xc0\x80", 0, MIN_EXPECT_ANY, &e, 1, NULL, NULL) == MIN_ERR_INVALID, "a non-UTF-8 name");
    CHECK(min_append(a, "s", 0, -4, &e, 1, NULL, NULL) == MIN_ERR_INVALID, "expected version -4");
    CHECK(min_append(a, "s", 0, MIN_EXPECT_ANY, &e, 0, NULL, NULL) == MIN_ERR_INVALID, "count 0");
    e.event_type = NULL;
    CHECK(min_append(a, "s", 0, MIN_EXPECT_ANY, &e, 1, NULL, NULL) == MIN_ERR_INVALID, "a NULL type");
    e.event_type = "";
    CHECK(min_append(a, "s", 0, MIN_EXPECT_ANY, &e, 1, NULL, NULL) == MIN_ERR_INVALID, "an empty type");
    e.event_type = EVENT_TYPE;
    e.payload_len = 5; /* NULL payload with a length */
    CHECK(min_append(a, "s", 0, MIN_EXPECT_ANY, &e, 1, NULL, NULL) == MIN_ERR_INVALID, "a NULL payload");
    CHECK(min_appender_next_position(a) == before, "a refused append wrote events");
}

/* evstore opens the store: every event as the minimal reader reads it, the stream
 * versions of the model, a stream read in order. */
static evs_store *evstore_agrees(const char *dir, const char *when)
{
    evs_recovery_info info = EVS_STRUCT_INIT(evs_recovery_info);
    char name[64];
    evs_store *s = open_store(dir, 512 << 10, &info);
    CHECK(!info.corruption_detected && info.bytes_truncated == 0 && info.next_position == model_events,
          "%s: evstore's recovery: next %" PRIu64 " (want %" PRIu64 "), %" PRIu64 " bytes cut", when,
          info.next_position, model_events, info.bytes_truncated);
    ev_hash e = hash_store_evstore(s);
    ev_hash m = hash_store_minimal(dir);
    CHECK(e.events == model_events && m.events == e.events && m.h == e.h,
          "%s: evstore read %" PRIu64 " events (hash %016" PRIx64 "), the minimal reader %" PRIu64
          " (hash %016" PRIx64 "), the appender wrote %" PRIu64, when, e.events, e.h, m.events, m.h,
          model_events);
    int versions_ok = 1;
    for (int k = 0; k < B_STREAMS; k++) {
        int64_t v = -2;
        name_for(name, sizeof name, k);
        evs_ok(evs_stream_version(s, name, &v), "evs_stream_version");
        versions_ok &= v == model[k];
    }
    CHECK(versions_ok, "%s: evstore's stream versions differ from the appender's", when);
    evs_cursor *c = NULL;
    evs_event ev = EVS_STRUCT_INIT(evs_event);
    int64_t next = 0;
    name_for(name, sizeof name, 1);
    evs_ok(evs_read_stream(s, name, 0, &c), "evs_read_stream");
    while (evs_cursor_next(c, &ev) == EVS_OK && (int64_t)ev.stream_version == next)
        next++;
    evs_cursor_free(c);
    CHECK(next == model[1] + 1, "%s: evs_read_stream gave versions up to %" PRId64 ", want %" PRId64, when,
          next - 1, model[1]);
    return s;
}

static void check_minimal_to_evstore(const char *root)
{
    char dir[4096], err[600], name[64];
    min_appender *a = NULL, *b = NULL;
    snprintf(dir, sizeof dir, "%s/by-minimal", root);
    rm_rf(dir);
    for (int k = 0; k < B_STREAMS; k++)
        model[k] = -1;
    model_events = 0;
    CHECK(min_appender_open(dir, 512 << 10, &a, err, sizeof err) == MIN_OK, "min_appender_open: %s", err);
    if (!a)
        return;
    minimal_writes(a, 0);
    check_minimal_refuses(a);
    /* the lock: evstore may not open it meanwhile */
    evs_store *s = NULL;
    evs_status st = evs_open(dir, NULL, &s, NULL);
    CHECK(st == EVS_ERR_LOCKED, "evs_open of a store the minimal appender holds: %s", evs_status_name(st));
    min_appender_close(a);
    CHECK(count_segments(dir) >= 3, "the appender wrote %d segments, the check wants several", count_segments(dir));

    s = evstore_agrees(dir, "after the minimal appender");
    CHECK(min_appender_open(dir, 512 << 10, &b, err, sizeof err) == MIN_ERR_LOCKED, "the appender opened a store evstore holds");
    /* evstore appends on, then the appender again, on the same files */
    evs_event_input e = EVS_STRUCT_INIT(evs_event_input);
    e.event_type = EVENT_TYPE;
    e.payload = (const uint8_t *)"{}";
    e.payload_len = 2;
    name_for(name, sizeof name, 1);
    evs_ok(evs_append(s, name, model[1], &e, 1, NULL, NULL), "evs_append after the appender");
    model[1]++;
    evs_ok(evs_append_event(s, EVENT_TYPE, e.payload, 2, NULL), "evs_append_event");
    model_events += 2;
    evs_ok(evs_close(s), "evs_close");

    CHECK(min_appender_open(dir, 512 << 10, &a, err, sizeof err) == MIN_OK, "reopening: %s", err);
    if (!a)
        return;
    CHECK(min_appender_next_position(a) == model_events && min_appender_stream_version(a, name) == model[1],
          "the appender replayed to %" PRIu64 " (want %" PRIu64 ")", min_appender_next_position(a), model_events);
    minimal_writes(a, 1);
    min_appender_close(a);
    s = evstore_agrees(dir, "after evstore and the appender again");
    evs_ok(evs_close(s), "evs_close");
}

/* ---- the same appends through evstore and through the minimal appender: the same
 * files, byte for byte, apart from each envelope's timestamp (the clock's) and so the
 * CRC ---- */
typedef struct writer {
    evs_store *evs;
    min_appender *min;
} writer;

static void both_append(writer *w, const char *stream, int64_t expected, const min_input *in, size_t n)
{
    static evs_event_input ev[PER_CALL];
    if (w->min) {
        min_status st = min_append(w->min, stream, !*stream, expected, in, n, NULL, NULL);
        if (st != MIN_OK)
            die("min_append: %s", min_appender_error(w->min));
        return;
    }
    if (!*stream) { /* evs_append_event: no metadata, schema 1 */
        evs_ok(evs_append_event(w->evs, in->event_type, in->payload, in->payload_len, NULL), "evs_append_event");
        return;
    }
    for (size_t i = 0; i < n; i++)
        ev[i] = evs_input(&in[i]);
    evs_ok(evs_append(w->evs, stream, expected, ev, n, NULL, NULL), "evs_append");
}

static void same_sequence(writer *w)
{
    static uint8_t payload[PER_CALL][400];
    static char meta[PER_CALL][32];
    min_input in[PER_CALL];
    char name[64];
    int64_t version[40];
    for (int k = 0; k < 40; k++)
        version[k] = -1;
    for (int i = 0; i < 2000 + 30 + 300; i++) {
        int batch = i >= 2000 && i < 2030, none = i >= 2030;
        size_t n = batch ? PER_CALL : 1;
        int k = i % 40;
        for (size_t j = 0; j < n; j++) {
            int seq = i * PER_CALL + (int)j;
            varied_event(&in[j], payload[j], none ? 100 : 30 + (size_t)(seq % 300), meta[j], seq);
            if (none) { /* as evs_append_event stores it */
                in[j].metadata = NULL;
                in[j].metadata_len = 0;
                in[j].schema_version = 1;
            }
        }
        name_for(name, sizeof name, k);
        both_append(w, none ? "" : name, none || i % 3 ? MIN_EXPECT_ANY : version[k], in, n);
        if (!none)
            version[k] += (int64_t)n;
    }
}

typedef struct located {
    uint64_t *seg, *off;
    size_t n, cap;
} located;

static int locate_event(void *user, const min_event *e)
{
    located *l = user;
    if (l->n == l->cap) {
        l->cap = l->cap ? 2 * l->cap : 4096;
        l->seg = realloc(l->seg, l->cap * sizeof *l->seg);
        l->off = realloc(l->off, l->cap * sizeof *l->off);
        if (!l->seg || !l->off)
            die("out of memory");
    }
    l->seg[l->n] = e->segment_id;
    l->off[l->n++] = e->offset;
    return 0;
}

static located locate_all(const char *dir)
{
    located l = {NULL, NULL, 0, 0};
    min_read_result rr;
    char err[600];
    if (min_read_all(dir, locate_event, &l, &rr, err, sizeof err) != MIN_OK)
        die("reading %s: %s", dir, err);
    return l;
}

/* [*from, *to): the envelope's timestamp varint in the record r[0..n). */
static int timestamp_bytes(const uint8_t *r, size_t n, size_t *from, size_t *to)
{
    const uint8_t *p = r, *end = r + n;
    uint64_t klen, vlen, v;
    if (!min_varint(&p, end, &klen) || !min_varint(&p, end, &vlen) || p >= end)
        return 0;
    uint8_t flags = *p++;
    if ((flags & MIN_FLAG_TTL) && !min_varint(&p, end, &v))
        return 0;
    if ((size_t)(end - p) < klen + 18)
        return 0;
    p += klen;
    p += *p == MIN_FORMAT_V2 ? 17 : 1;
    *from = (size_t)(p - r);
    if (!min_varint(&p, end, &v))
        return 0;
    *to = (size_t)(p - r);
    return 1;
}

static uint8_t *slurp(const char *dir, uint64_t id, size_t *len)
{
    char path[4200];
    struct stat sb;
    snprintf(path, sizeof path, "%s/events/%06" PRIu64 ".wal", dir, id);
    int fd = open(path, O_RDONLY);
    if (fd < 0 || fstat(fd, &sb) != 0)
        die("opening %s", path);
    uint8_t *b = malloc((size_t)sb.st_size + 1);
    if (!b || pread(fd, b, (size_t)sb.st_size, 0) != sb.st_size)
        die("reading %s", path);
    close(fd);
    *len = (size_t)sb.st_size;
    return b;
}

static void check_byte_for_byte(const char *root)
{
    char de[4096], dm[4096], err[600];
    writer w = {NULL, NULL};
    snprintf(de, sizeof de, "%s/same-by-evstore", root);
    snprintf(dm, sizeof dm, "%s/same-by-minimal", root);
    rm_rf(de);
    rm_rf(dm);
    w.evs = open_store(de, 512 << 10, NULL);
    same_sequence(&w);
    evs_ok(evs_close(w.evs), "evs_close");
    w.evs = NULL;
    if (min_appender_open(dm, 512 << 10, &w.min, err, sizeof err) != MIN_OK)
        die("min_appender_open: %s", err);
    same_sequence(&w);
    min_appender_close(w.min);

    located e = locate_all(de), m = locate_all(dm);
    int placed = e.n == m.n && e.n == 2000 + 30 * PER_CALL + 300;
    for (size_t i = 0; placed && i < e.n; i++)
        placed = e.seg[i] == m.seg[i] && e.off[i] == m.off[i];
    CHECK(placed, "the same appends: evstore placed %zu events, the minimal appender %zu, not all at the "
          "same segment and offset", e.n, m.n);
    size_t differ = 0, compared = 0;
    for (size_t i = 0; placed && i < e.n;) {
        size_t le, lm, j = i;
        uint8_t *be = slurp(de, e.seg[i], &le), *bm = slurp(dm, m.seg[i], &lm);
        CHECK(le == lm, "segment %" PRIu64 ": %zu bytes by evstore, %zu by the minimal appender", e.seg[i], le, lm);
        for (; j < e.n && e.seg[j] == e.seg[i]; j++) {
            size_t end = j + 1 < e.n && e.seg[j + 1] == e.seg[i] ? e.off[j + 1] : le;
            size_t at = e.off[j], n = end - at, f1, t1, f2, t2;
            if (end > lm || !timestamp_bytes(be + at, n, &f1, &t1) || !timestamp_bytes(bm + at, n, &f2, &t2) ||
                f1 != f2 || t1 != t2 || memcmp(be + at, bm + at, f1) != 0 ||
                memcmp(be + at + t1, bm + at + t1, n - 4 - t1) != 0)
                differ++;
            compared++;
        }
        free(be);
        free(bm);
        i = j;
    }
    CHECK(placed && differ == 0 && compared == e.n,
          "the same appends: %zu of %zu records differ beyond the timestamp", differ, compared);
    free(e.seg);
    free(e.off);
    free(m.seg);
    free(m.off);
}

/* A batch cut short at the end of the log: none of its events is handed out, by the
 * minimal reader or by evstore (whose recovery cuts it off). */
static void check_torn_batch(const char *root)
{
    char dir[4096], err[600], seg[4200];
    min_appender *a = NULL;
    min_input in[PER_CALL];
    uint8_t payload[100];
    uint64_t sid, off;
    memset(in, 0, sizeof in);
    make_payload(payload, sizeof payload, 1);
    for (int i = 0; i < PER_CALL; i++) {
        in[i].event_type = EVENT_TYPE;
        in[i].payload = payload;
        in[i].payload_len = sizeof payload;
    }
    snprintf(dir, sizeof dir, "%s/torn-batch", root);
    rm_rf(dir);
    if (min_appender_open(dir, 0, &a, err, sizeof err) != MIN_OK)
        die("min_appender_open: %s", err);
    for (int i = 0; i < 10; i++)
        CHECK(min_append(a, "s", 0, MIN_EXPECT_ANY, in, 1, NULL, NULL) == MIN_OK, "%s", min_appender_error(a));
    CHECK(min_append(a, "s", 0, MIN_EXPECT_ANY, in, PER_CALL, NULL, NULL) == MIN_OK, "%s", min_appender_error(a));
    CHECK(min_appender_locate(a, 60, &sid, &off), "locating position 60");
    min_appender_close(a);
    snprintf(seg, sizeof seg, "%s/events/%06" PRIu64 ".wal", dir, sid);
    CHECK(truncate(seg, (off_t)off + 5) == 0, "cutting %s", seg);

    ev_hash x = {0, 0, 0, 0};
    min_read_result rr;
    min_status st = min_read_all(dir, hash_min_event, &x, &rr, err, sizeof err);
    CHECK(st == MIN_ERR_TORN && x.events == 10, "a torn batch: status %d, %" PRIu64 " events handed out: %s",
          (int)st, x.events, err);
    evs_recovery_info info = EVS_STRUCT_INIT(evs_recovery_info);
    evs_store *s = open_store(dir, 0, &info);
    ev_hash e = hash_store_evstore(s);
    evs_ok(evs_close(s), "evs_close");
    CHECK(info.next_position == 10 && info.bytes_truncated > 0 && e.events == 10,
          "evstore's recovery of the torn batch: next position %" PRIu64, info.next_position);
    ev_hash m = hash_store_minimal(dir);
    CHECK(m.events == 10 && m.h == e.h, "after evstore's recovery the minimal reader reads %" PRIu64, m.events);
}

/* A record of position 3 changed and its CRC made right again: what only the checks
 * behind the CRC can catch. `at` names the byte: 0 the flags, 1 the key's first byte, 2
 * the envelope's format byte, 3 the stream's first byte. */
static min_status read_with_change(const char *dir, int at, uint8_t value, char *err, size_t errlen)
{
    located l = locate_all(dir);
    char seg[4200];
    size_t len, from, to;
    if (l.n < 5)
        die("%s: %zu events", dir, l.n);
    uint8_t *b = slurp(dir, l.seg[3], &len);
    uint64_t start = l.off[3], end = l.seg[4] == l.seg[3] ? l.off[4] : len;
    uint8_t *r = b + start, saved[4096];
    size_t n = (size_t)(end - start);
    if (n > sizeof saved || !timestamp_bytes(r, n, &from, &to))
        die("%s: record 3 does not parse", dir);
    memcpy(saved, r, n);
    size_t where[4] = {from - 10, from - 9, from - 1, to + 1}; /* format 0x01: 1 byte before ts */
    r[where[at]] = value;
    uint32_t crc = min_crc32c(r, n - 4);
    memcpy(r + n - 4, &crc, 4);
    snprintf(seg, sizeof seg, "%s/events/%06" PRIu64 ".wal", dir, l.seg[3]);
    int fd = open(seg, O_WRONLY);
    if (fd < 0 || pwrite(fd, r, n, (off_t)start) != (ssize_t)n)
        die("changing %s", seg);
    ev_hash x = {0, 0, 0, 0};
    min_read_result rr;
    min_status st = min_read_all(dir, hash_min_event, &x, &rr, err, errlen);
    if (pwrite(fd, saved, n, (off_t)start) != (ssize_t)n)
        die("restoring %s", seg);
    close(fd);
    free(b);
    free(l.seg);
    free(l.off);
    return st;
}

static void check_refusals(const char *root)
{
    char dir[4096], err[600];
    min_appender *a = NULL;
    min_input in = {0};
    snprintf(dir, sizeof dir, "%s/refusals", root);
    rm_rf(dir);
    if (min_appender_open(dir, 0, &a, err, sizeof err) != MIN_OK)
        die("min_appender_open: %s", err);
    in.event_type = EVENT_TYPE;
    in.payload = (const uint8_t *)"{}";
    in.payload_len = 2;
    for (int i = 0; i < 8; i++)
        CHECK(min_append(a, "stream-a", 0, MIN_EXPECT_ANY, &in, 1, NULL, NULL) == MIN_OK, "%s", min_appender_error(a));
    min_appender_close(a);
    min_status st = read_with_change(dir, 0, MIN_FLAG_BATCH_CONTINUES, err, sizeof err);
    CHECK(st == MIN_OK, "a batch flag on record 3 (a batch of records 3 and 4): status %d: %s", (int)st, err);
    st = read_with_change(dir, 0, 1u << 2, err, sizeof err);
    CHECK(st == MIN_ERR_UNSUPPORTED, "an lz4 record: status %d: %s", (int)st, err);
    st = read_with_change(dir, 0, 3u << 2, err, sizeof err);
    CHECK(st == MIN_ERR_CORRUPT, "compression bits 3: status %d: %s", (int)st, err);
    st = read_with_change(dir, 1, 4, err, sizeof err);
    CHECK(st == MIN_ERR_CORRUPT && strstr(err, "key"), "the key of position 4 at position 3: status %d: %s",
          (int)st, err);
    st = read_with_change(dir, 2, 0x03, err, sizeof err);
    CHECK(st == MIN_ERR_UNSUPPORTED, "envelope format 0x03: status %d: %s", (int)st, err);
    st = read_with_change(dir, 2, '{', err, sizeof err);
    CHECK(st == MIN_ERR_UNSUPPORTED, "a legacy JSON envelope: status %d: %s", (int)st, err);
    st = read_with_change(dir, 3, 0xff, err, sizeof err);
    CHECK(st == MIN_ERR_CORRUPT && strstr(err, "UTF-8"), "a stream that is not UTF-8: status %d: %s", (int)st, err);
}

int run_checks(const char *root)
{
    if (mkdir(root, 0755) != 0 && errno != EEXIST)
        die("creating %s: %s", root, strerror(errno));
    check_crc();
    check_utf8_and_varints();
    min_crc32c_init(0);
    check_evstore_to_minimal(root);
    check_zero_tail(root);
    check_minimal_to_evstore(root);
    check_byte_for_byte(root);
    check_torn_batch(root);
    check_refusals(root);
    if (failed)
        printf("agreement checks: %d of %d conditions FAILED\n", failed, passed + failed);
    else
        printf("agreement checks: all %d conditions hold\n", passed);
    return failed != 0;
}
