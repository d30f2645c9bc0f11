/* The minimal reader and appender of evstore's segment files (issue 25): the reference
 * that bench/instr measures evstore against, instruction for instruction.
 *
 * They read and write the SAME files evstore does (<store>/events/NNNNNN.wal, nori-wal's
 * record format, evstore's binary envelope; /work/shared/design/nori-wal-format.md and
 * src/store/file/envelope.rs), and do everything a correct reader or appender of them
 * must, nothing more:
 * - reader: the segments in id order, pread in 1 MiB blocks; per record the header
 *   varints (bounded), compression refused, the CRC-32C of every record, key = the
 *   expected position, the envelope (formats 0x01 and 0x02 only) decoded into
 *   pointer+length views with every length bounds-checked, UTF-8 of stream and type
 *   (ASCII fast path), the events of a multi-record batch handed out only once its last
 *   record is read, a zero-filled segment tail taken as the end, a callback per event;
 * - appender: names checked (NULL, length 1..1024, UTF-8), sizes checked, expected
 *   versions against a stream table (a hash map name -> version), the envelope and the
 *   record with its CRC encoded into a reused buffer, one pwrite a call (no fsync), an
 *   index push (position -> segment and offset) per event; the LOCK file held.
 * Our own code, written for this benchmark; bench/instr/run.sh checks before counting
 * that each agrees with evstore byte for byte (bench/instr/instr.c, mode "check"). */
#ifndef EVSTORE_BENCH_MINIMAL_H
#define EVSTORE_BENCH_MINIMAL_H

#include <stddef.h>
#include <stdint.h>
#include <string.h>

/* ---- results ---- */
typedef enum {
    MIN_OK = 0,
    MIN_ERR_INVALID = -1,  /* a bad argument (names, sizes, counts) */
    MIN_ERR_WRONG_VERSION = -2,
    MIN_ERR_IO = -3,
    MIN_ERR_CORRUPT = -4,  /* a damaged record, a wrong key, a bad envelope */
    MIN_ERR_UNSUPPORTED = -5, /* a compressed record, an envelope format other than 1, 2 */
    MIN_ERR_TORN = -6,     /* the last segment ends inside a record or a batch */
    MIN_ERR_LOCKED = -7,
    MIN_STOPPED = 1,       /* the callback asked to stop */
} min_status;

/* ---- CRC-32C (crc32c.c): the SSE4.2 instruction when the CPU has it, else a table ---- */
/* Chooses the implementation (the CPU's, unless force_table); returns its name. */
const char *min_crc32c_init(int force_table);
/* The chosen one (set by min_crc32c_init): one indirect call a record. */
extern uint32_t (*min_crc32c)(const uint8_t *p, size_t n);

/* ---- varints: unsigned LEB128, at most 10 bytes ---- */
/* Decodes at *p (not past end); returns 0 and leaves *p when cut short or too long.
 * Inline: one byte; with 8 bytes to read, one load, where the first byte without the top
 * bit ends the varint and the 7-bit groups are packed by three shift-and-merge steps
 * (pairs, fours, eights). Out of line (codec.c): the rest, a byte at a time. */
int min_varint_bytewise(const uint8_t **p, const uint8_t *end, uint64_t *v);
static inline int min_varint(const uint8_t **p, const uint8_t *end, uint64_t *v)
{
    const uint8_t *q = *p;
    if (q < end && *q < 0x80) {
        *v = *q;
        *p = q + 1;
        return 1;
    }
    if (end - q >= 8) {
        uint64_t w, x;
        memcpy(&w, q, 8);
        uint64_t stops = ~w & 0x8080808080808080ULL;
        if (stops) {
            unsigned len = (unsigned)__builtin_ctzll(stops) / 8 + 1;
            x = (len == 8 ? w : w & ((1ULL << (8 * len)) - 1)) & 0x7f7f7f7f7f7f7f7fULL;
            x = (x & 0x00ff00ff00ff00ffULL) | ((x & 0xff00ff00ff00ff00ULL) >> 1);
            x = (x & 0x0000ffff0000ffffULL) | ((x & 0xffff0000ffff0000ULL) >> 2);
            x = (x & 0x00000000ffffffffULL) | ((x & 0xffffffff00000000ULL) >> 4);
            *v = x;
            *p = q + len;
            return 1;
        }
    }
    return min_varint_bytewise(p, end, v);
}
static inline size_t min_varint_len(uint64_t v)
{
    return v < 0x80 ? 1 : (size_t)(64 - __builtin_clzll(v) + 6) / 7;
}
static inline uint8_t *min_put_varint(uint8_t *p, uint64_t v)
{
    while (v >= 0x80) {
        *p++ = (uint8_t)(v | 0x80);
        v >>= 7;
    }
    *p++ = (uint8_t)v;
    return p;
}

/* ---- UTF-8 (codec.c): ASCII 8 bytes at a time, the full check only past a high bit ---- */
int min_utf8_check(const uint8_t *s, size_t n);
static inline int min_utf8_valid(const uint8_t *s, size_t n)
{
    uint64_t a, b;
    if (n >= 8) {
        size_t i;
        for (i = 0; i + 8 < n; i += 8) {
            memcpy(&a, s + i, 8);
            if (a & 0x8080808080808080ULL)
                return min_utf8_check(s, n);
        }
        memcpy(&b, s + n - 8, 8); /* the last 8, overlapping what was checked */
        return (b & 0x8080808080808080ULL) ? min_utf8_check(s, n) : 1;
    }
    a = 0;
    for (size_t i = 0; i < n; i++)
        a |= s[i];
    return (a & 0x80) ? min_utf8_check(s, n) : 1;
}

/* ---- the format's constants (as evstore writes them) ---- */
#define MIN_FLAG_TTL 0x02u
#define MIN_COMPRESSION_MASK 0x0cu
#define MIN_FLAG_BATCH_CONTINUES 0x10u
#define MIN_FORMAT_V1 0x01u
#define MIN_FORMAT_V2 0x02u /* v1 with a 16-byte event id after the format byte */
#define MIN_MAX_NAME_LEN 1024
#define MIN_MAX_EVENT_SIZE (16u << 20)
#define MIN_MAX_BATCH_SIZE (64u << 20)
#define MIN_MAX_BATCH_EVENTS (1u << 20)
#define MIN_MAX_SEGMENT_SIZE (128ull << 20)
#define MIN_EXPECT_ANY (-1)
#define MIN_EXPECT_NO_STREAM (-2)
#define MIN_EXPECT_EXISTS (-3)

/* ---- the reader (reader.c) ---- */
typedef struct min_event {
    uint64_t position;
    uint64_t timestamp_us;
    const char *stream; /* views into the reader's buffer, valid during the callback */
    size_t stream_len;
    uint64_t stream_version;
    const char *event_type;
    size_t event_type_len;
    uint32_t schema_version;
    const uint8_t *metadata;
    size_t metadata_len;
    const uint8_t *payload;
    size_t payload_len;
    const uint8_t *id; /* 16 bytes, or NULL (format 0x01) */
    uint64_t segment_id; /* where the record is */
    uint64_t offset;
} min_event;

/* Return 0 to go on, non-zero to stop. */
typedef int (*min_event_fn)(void *user, const min_event *ev);

typedef struct min_read_result {
    uint64_t events;        /* handed to the callback */
    uint64_t next_position; /* the position after the last event */
    uint64_t last_timestamp_us;
    uint64_t last_segment_id; /* of the highest segment (0 when there is none) */
    uint64_t end_offset;      /* where that segment's records end */
    int segments;
} min_read_result;

/* Reads every event of the store at `store_dir` in order, calling fn with each. On an
 * error, `err` holds a message naming the segment and offset. */
min_status min_read_all(const char *store_dir, min_event_fn fn, void *user, min_read_result *out,
                        char *err, size_t errlen);

/* ---- the appender (appender.c) ---- */
typedef struct min_input {
    const char *event_type; /* NUL-terminated UTF-8, 1..1024 bytes */
    const uint8_t *payload;
    size_t payload_len;
    const uint8_t *metadata;
    size_t metadata_len;
    uint32_t schema_version; /* 0 is stored as 1 */
} min_input;

typedef struct min_appender min_appender;

/* Opens (creating) the store at `dir` for appending: takes <dir>/LOCK, and rebuilds the
 * stream table and the index from the log with the reader (a store with a torn tail is
 * refused: evstore's recovery repairs it). max_segment_size 0 means nori-wal's default. */
min_status min_appender_open(const char *dir, uint64_t max_segment_size, min_appender **out,
                             char *err, size_t errlen);
/* Appends `count` events to `stream` atomically if it is at `expected` (a version, or
 * MIN_EXPECT_*); stream "" (length 0) is allowed only with allow_no_stream (the
 * equivalent of evs_append_event). Outputs may be NULL. Thread-safe. */
min_status min_append(min_appender *a, const char *stream, int allow_no_stream, int64_t expected,
                      const min_input *events, size_t count, uint64_t *out_first_position,
                      uint64_t *out_stream_version);
/* The message of the last failed call on `a`. */
const char *min_appender_error(const min_appender *a);
uint64_t min_appender_next_position(const min_appender *a);
/* The stream's version, or -1 when it has no events. */
int64_t min_appender_stream_version(min_appender *a, const char *stream);
/* Where the event at `position` is; returns 0 when there is no such event. */
int min_appender_locate(const min_appender *a, uint64_t position, uint64_t *segment_id,
                        uint64_t *offset);
void min_appender_close(min_appender *a);

#endif
