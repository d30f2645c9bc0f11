/* The minimal appender of evstore's log: see minimal.h for what it does. Per call: the
 * arguments checked, one stream table lookup, the records encoded into a reused buffer,
 * one pwrite, then the index and the stream table updated. No allocation per call once
 * its buffers have grown to the largest append. */
#define _GNU_SOURCE
#include "minimal.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

typedef struct slot {
    char *name; /* NULL: free */
    size_t len;
    uint64_t hash;
    uint64_t version; /* of the stream's last event */
} slot;

typedef struct loc {
    uint64_t segment_id;
    uint64_t offset;
} loc;

struct min_appender {
    pthread_mutex_t mu;
    char dir[4096];
    int lock_fd;
    int fd; /* the active segment */
    uint64_t segment_id, end, max_segment_size;
    uint64_t next_position, last_ts;
    slot *slots; /* open addressing, linear probing, a power of two, at most half full */
    size_t nslots, used;
    loc *index; /* index[position] */
    size_t index_cap;
    uint8_t *buf; /* the records of one call */
    size_t buf_cap;
    struct lens { size_t type, envelope; } *lens; /* per event of one call */
    size_t lens_cap;
    char err[600];
};

static min_status fail(min_appender *a, min_status st, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static min_status fail(min_appender *a, min_status st, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(a->err, sizeof a->err, fmt, ap);
    va_end(ap);
    return st;
}

const char *min_appender_error(const min_appender *a) { return a->err; }

/* ---- the stream table ---- */
static uint64_t name_hash(const char *s, size_t n)
{
    uint64_t h = 0x243F6A8885A308D3ULL ^ n, w = 0;
    size_t i = 0;
    for (; i + 8 <= n; i += 8) {
        memcpy(&w, s + i, 8);
        h = (h ^ w) * 0x9E3779B97F4A7C15ULL;
        h ^= h >> 29;
    }
    if (n >= 8) { /* the last 8 bytes, overlapping */
        memcpy(&w, s + n - 8, 8);
    } else {
        w = 0;
        for (; i < n; i++)
            w = w << 8 | (uint8_t)s[i];
    }
    h = (h ^ w) * 0x9E3779B97F4A7C15ULL;
    h = (h ^ (h >> 32)) * 0x9E3779B97F4A7C15ULL; /* the high bits down to the slot index */
    return h ^ (h >> 29);
}

/* The slot of the stream, or the free slot where it would go. */
static slot *find(const min_appender *a, const char *name, size_t len, uint64_t h)
{
    size_t mask = a->nslots - 1, i = (size_t)h & mask;
    for (;; i = (i + 1) & mask) {
        slot *s = &a->slots[i];
        if (!s->name || (s->hash == h && s->len == len && memcmp(s->name, name, len) == 0))
            return s;
    }
}

/* Room for one more stream (so that a slot found free stays valid until filled). */
static int reserve_stream(min_appender *a)
{
    if (2 * (a->used + 1) <= a->nslots)
        return 0;
    size_t n = a->nslots ? 2 * a->nslots : 1024;
    slot *old = a->slots;
    size_t oldn = a->nslots;
    a->slots = calloc(n, sizeof *a->slots);
    if (!a->slots) {
        a->slots = old;
        return -1;
    }
    a->nslots = n;
    for (size_t i = 0; i < oldn; i++)
        if (old[i].name)
            *find(a, old[i].name, old[i].len, old[i].hash) = old[i];
    free(old);
    return 0;
}

static int fill_slot(min_appender *a, slot *s, const char *name, size_t len, uint64_t h,
                     uint64_t version)
{
    if (!s->name) {
        s->name = malloc(len);
        if (!s->name)
            return -1;
        memcpy(s->name, name, len);
        s->len = len;
        s->hash = h;
        a->used++;
    }
    s->version = version;
    return 0;
}

int64_t min_appender_stream_version(min_appender *a, const char *stream)
{
    size_t len = strlen(stream);
    pthread_mutex_lock(&a->mu);
    slot *s = find(a, stream, len, name_hash(stream, len));
    int64_t v = s->name ? (int64_t)s->version : -1;
    pthread_mutex_unlock(&a->mu);
    return v;
}

/* ---- the index ---- */
static int reserve_index(min_appender *a, size_t n)
{
    if (a->next_position + n <= a->index_cap)
        return 0;
    size_t cap = a->index_cap ? a->index_cap : 1 << 16;
    while (cap < a->next_position + n)
        cap *= 2;
    loc *p = realloc(a->index, cap * sizeof *p);
    if (!p)
        return -1;
    a->index = p;
    a->index_cap = cap;
    return 0;
}

int min_appender_locate(const min_appender *a, uint64_t position, uint64_t *segment_id,
                        uint64_t *offset)
{
    if (position >= a->next_position)
        return 0;
    *segment_id = a->index[position].segment_id;
    *offset = a->index[position].offset;
    return 1;
}

uint64_t min_appender_next_position(const min_appender *a) { return a->next_position; }

/* ---- segments ---- */
static min_status open_segment(min_appender *a, uint64_t id, int create)
{
    char path[4200];
    snprintf(path, sizeof path, "%s/events/%06" PRIu64 ".wal", a->dir, id);
    int fd = open(path, O_WRONLY | O_CLOEXEC | (create ? O_CREAT | O_EXCL : 0), 0644);
    if (fd < 0)
        return fail(a, MIN_ERR_IO, "opening %s: %s", path, strerror(errno));
    if (a->fd >= 0)
        close(a->fd);
    a->fd = fd;
    a->segment_id = id;
    return MIN_OK;
}

/* ---- open: the lock, then the state replayed from the log ---- */
static int replay(void *user, const min_event *e)
{
    min_appender *a = user;
    if (reserve_index(a, 1))
        return 1;
    a->index[e->position] = (loc){e->segment_id, e->offset};
    a->next_position = e->position + 1;
    if (e->stream_len == 0)
        return 0;
    uint64_t h = name_hash(e->stream, e->stream_len);
    if (reserve_stream(a))
        return 1;
    return fill_slot(a, find(a, e->stream, e->stream_len, h), e->stream, e->stream_len, h,
                     e->stream_version) != 0;
}

min_status min_appender_open(const char *dir, uint64_t max_segment_size, min_appender **out,
                             char *err, size_t errlen)
{
    min_appender *a = calloc(1, sizeof *a);
    char path[4200];
    min_read_result rr;
    min_status st;
    *out = NULL;
    if (!a) {
        snprintf(err, errlen, "out of memory");
        return MIN_ERR_IO;
    }
    pthread_mutex_init(&a->mu, NULL);
    a->fd = a->lock_fd = -1;
    a->max_segment_size = max_segment_size ? max_segment_size : MIN_MAX_SEGMENT_SIZE;
    snprintf(a->dir, sizeof a->dir, "%s", dir);
    snprintf(path, sizeof path, "%s/events", dir);
    if ((mkdir(dir, 0755) != 0 && errno != EEXIST) || (mkdir(path, 0755) != 0 && errno != EEXIST)) {
        st = fail(a, MIN_ERR_IO, "creating %s: %s", path, strerror(errno));
        goto out;
    }
    snprintf(path, sizeof path, "%s/LOCK", dir);
    a->lock_fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0644);
    if (a->lock_fd < 0) {
        st = fail(a, MIN_ERR_IO, "opening %s: %s", path, strerror(errno));
        goto out;
    }
    if (flock(a->lock_fd, LOCK_EX | LOCK_NB) != 0) {
        st = fail(a, errno == EWOULDBLOCK ? MIN_ERR_LOCKED : MIN_ERR_IO, "locking %s: %s", path,
                  strerror(errno));
        goto out;
    }
    if (reserve_stream(a) || reserve_index(a, 1)) {
        st = fail(a, MIN_ERR_IO, "out of memory");
        goto out;
    }
    st = min_read_all(dir, replay, a, &rr, a->err, sizeof a->err);
    if (st == MIN_STOPPED)
        st = fail(a, MIN_ERR_IO, "out of memory replaying the log");
    if (st)
        goto out;
    a->last_ts = rr.last_timestamp_us;
    a->end = rr.end_offset;
    st = open_segment(a, rr.segments ? rr.last_segment_id : 0, rr.segments == 0);
out:
    if (st) {
        snprintf(err, errlen, "%s", a->err);
        min_appender_close(a);
        return st;
    }
    *out = a;
    return MIN_OK;
}

void min_appender_close(min_appender *a)
{
    if (!a)
        return;
    if (a->fd >= 0)
        close(a->fd);
    if (a->lock_fd >= 0)
        close(a->lock_fd);
    for (size_t i = 0; i < a->nslots; i++)
        free(a->slots[i].name);
    free(a->slots);
    free(a->index);
    free(a->buf);
    free(a->lens);
    pthread_mutex_destroy(&a->mu);
    free(a);
}

/* ---- append ---- */
static uint64_t now_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u;
}

/* A name argument: NULL, empty (unless allowed), longer than 1024 bytes, not UTF-8. */
static min_status check_name(min_appender *a, const char *what, const char *s, int allow_empty,
                             size_t *len)
{
    if (!s)
        return fail(a, MIN_ERR_INVALID, "%s is NULL", what);
    *len = strnlen(s, MIN_MAX_NAME_LEN + 1);
    if (*len == 0 && !allow_empty)
        return fail(a, MIN_ERR_INVALID, "the %s is empty", what);
    if (*len > MIN_MAX_NAME_LEN)
        return fail(a, MIN_ERR_INVALID, "the %s is longer than %d bytes", what, MIN_MAX_NAME_LEN);
    if (!min_utf8_valid((const uint8_t *)s, *len))
        return fail(a, MIN_ERR_INVALID, "the %s is not valid UTF-8", what);
    return MIN_OK;
}

/* What every record of one call shares: the timestamp (encoded once) and the stream. */
typedef struct call {
    uint8_t ts[16]; /* the timestamp's varint, then slack for a fixed-size copy */
    size_t ts_len;
    const char *stream;
    size_t slen;
} call;

/* The envelope's length: format byte, fields, payload. */
static size_t envelope_len(const call *c, uint64_t version, size_t tlen, const min_input *e)
{
    uint32_t schema = e->schema_version ? e->schema_version : 1;
    return 1 + c->ts_len + min_varint_len(c->slen) + c->slen + min_varint_len(version) +
           min_varint_len(tlen) + tlen + min_varint_len(schema) + min_varint_len(e->metadata_len) +
           e->metadata_len + e->payload_len;
}

/* Checks every event; returns the bytes their records take, exactly (0 after a failure).
 * Event i gets stream version version + i. */
static size_t check_events(min_appender *a, const min_input *ev, size_t count, const call *c,
                           uint64_t version, min_status *st)
{
    size_t need = 0, total = 0;
    for (size_t i = 0; i < count; i++) {
        const min_input *e = &ev[i];
        size_t tlen;
        if ((*st = check_name(a, "event type", e->event_type, 0, &tlen)))
            return 0;
        if ((!e->payload && e->payload_len) || (!e->metadata && e->metadata_len)) {
            *st = fail(a, MIN_ERR_INVALID, "event %zu: payload or metadata is NULL with a length", i);
            return 0;
        }
        if (e->payload_len > MIN_MAX_EVENT_SIZE || e->metadata_len > MIN_MAX_EVENT_SIZE - e->payload_len) {
            *st = fail(a, MIN_ERR_INVALID, "event %zu is past the limit of %u bytes", i,
                       MIN_MAX_EVENT_SIZE);
            return 0;
        }
        total += e->payload_len + e->metadata_len + tlen + c->slen;
        if (total > MIN_MAX_BATCH_SIZE) {
            *st = fail(a, MIN_ERR_INVALID, "the append is past the limit of %u bytes", MIN_MAX_BATCH_SIZE);
            return 0;
        }
        size_t env = envelope_len(c, version + i, tlen, e);
        a->lens[i].type = tlen;
        a->lens[i].envelope = env;
        need += 1 + min_varint_len(env) + 1 + 8 + env + 4;
    }
    return need;
}

/* One record: key = the position, value = the envelope; returns the end. Writes up to 16
 * bytes past it (the buffer has the room). */
static uint8_t *encode(uint8_t *p, uint64_t position, const call *c, uint64_t version,
                       const min_input *e, const struct lens *len, uint8_t flags)
{
    uint8_t *rec = p;
    uint32_t schema = e->schema_version ? e->schema_version : 1, crc;
    size_t tlen = len->type;
    *p++ = 8;
    p = min_put_varint(p, len->envelope);
    *p++ = flags;
    memcpy(p, &position, 8); /* little-endian, as the key is defined */
    p += 8;
    *p++ = MIN_FORMAT_V1;
    memcpy(p, c->ts, sizeof c->ts);
    p += c->ts_len;
    p = min_put_varint(p, c->slen);
    memcpy(p, c->stream, c->slen);
    p += c->slen;
    p = min_put_varint(p, version);
    p = min_put_varint(p, tlen);
    memcpy(p, e->event_type, tlen);
    p += tlen;
    p = min_put_varint(p, schema);
    p = min_put_varint(p, e->metadata_len);
    if (e->metadata_len)
        memcpy(p, e->metadata, e->metadata_len);
    p += e->metadata_len;
    if (e->payload_len)
        memcpy(p, e->payload, e->payload_len);
    p += e->payload_len;
    crc = min_crc32c(rec, (size_t)(p - rec));
    memcpy(p, &crc, 4);
    return p + 4;
}

static min_status write_all(min_appender *a, const uint8_t *p, size_t n, uint64_t at)
{
    while (n) {
        ssize_t w = pwrite(a->fd, p, n, (off_t)at);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0)
            return fail(a, MIN_ERR_IO, "pwrite to segment %06" PRIu64 " at %" PRIu64 ": %s",
                        a->segment_id, at, w < 0 ? strerror(errno) : "wrote nothing");
        p += w;
        n -= (size_t)w;
        at += (uint64_t)w;
    }
    return MIN_OK;
}

/* Room for `need` bytes of records (and the 16 encode may write past them) and `count`
 * events' lengths. */
static min_status grow(min_appender *a, size_t need, size_t count)
{
    if (need + 16 > a->buf_cap) {
        free(a->buf);
        a->buf_cap = need + 16 > 65536 ? need + 16 : 65536;
        a->buf = malloc(a->buf_cap);
        if (!a->buf) {
            a->buf_cap = 0;
            return fail(a, MIN_ERR_IO, "out of memory for %zu bytes of records", need);
        }
    }
    if (count > a->lens_cap) {
        free(a->lens);
        a->lens_cap = count > 1024 ? count : 1024;
        a->lens = malloc(a->lens_cap * sizeof *a->lens);
        if (!a->lens) {
            a->lens_cap = 0;
            return fail(a, MIN_ERR_IO, "out of memory for %zu events", count);
        }
    }
    return MIN_OK;
}

static min_status append_locked(min_appender *a, const char *stream, int allow_no_stream,
                                int64_t expected, const min_input *events, size_t count,
                                uint64_t *out_first, uint64_t *out_version)
{
    size_t slen, need, i;
    min_status st;
    if ((st = check_name(a, "stream", stream, allow_no_stream, &slen)))
        return st;
    if (expected < MIN_EXPECT_EXISTS)
        return fail(a, MIN_ERR_INVALID, "expected version %" PRId64 " is not a version", expected);
    if (count == 0 || count > MIN_MAX_BATCH_EVENTS || !events)
        return fail(a, MIN_ERR_INVALID, "count is %zu: 1..%u events with a non-NULL array", count,
                    MIN_MAX_BATCH_EVENTS);
    if (count > a->lens_cap && (st = grow(a, 0, count)))
        return st;
    if (reserve_stream(a) || reserve_index(a, count))
        return fail(a, MIN_ERR_IO, "out of memory");
    uint64_t h = slen ? name_hash(stream, slen) : 0;
    slot *s = slen ? find(a, stream, slen, h) : NULL;
    int exists = s && s->name;
    uint64_t version = exists ? s->version + 1 : 0;
    uint64_t ts = now_us();
    if (ts < a->last_ts)
        ts = a->last_ts;
    call c;
    c.ts_len = (size_t)(min_put_varint(c.ts, ts) - c.ts);
    c.stream = stream;
    c.slen = slen;
    if (!(need = check_events(a, events, count, &c, version, &st)))
        return st;
    if (need > a->max_segment_size)
        return fail(a, MIN_ERR_INVALID, "%zu bytes of records do not fit in a segment of %" PRIu64,
                    need, a->max_segment_size);
    if ((expected == MIN_EXPECT_NO_STREAM && exists) || (expected == MIN_EXPECT_EXISTS && !exists) ||
        (expected >= 0 && (!exists || s->version != (uint64_t)expected)))
        return exists ? fail(a, MIN_ERR_WRONG_VERSION, "stream '%s' is at version %" PRIu64
                             ", expected %" PRId64, stream, s->version, expected)
                      : fail(a, MIN_ERR_WRONG_VERSION, "stream '%s' does not exist, expected %"
                             PRId64, stream, expected);
    if (need + 16 > a->buf_cap && (st = grow(a, need, count)))
        return st;
    if (a->end + need > a->max_segment_size && a->end > 0) {
        if ((st = open_segment(a, a->segment_id + 1, 1)))
            return st;
        a->end = 0;
    }
    uint8_t *p = a->buf;
    for (i = 0; i < count; i++) {
        a->index[a->next_position + i] = (loc){a->segment_id, a->end + (uint64_t)(p - a->buf)};
        p = encode(p, a->next_position + i, &c, version + i, &events[i], &a->lens[i],
                   i + 1 < count ? MIN_FLAG_BATCH_CONTINUES : 0);
    }
    if ((size_t)(p - a->buf) != need)
        abort(); /* the sizes above and the encoding disagree: a bug here */
    if ((st = write_all(a, a->buf, need, a->end)))
        return st;
    /* written: the index entries above count now, and the stream's new version */
    if (s && fill_slot(a, s, stream, slen, h, version + count - 1))
        return fail(a, MIN_ERR_IO, "out of memory (the events are written)");
    if (out_first)
        *out_first = a->next_position;
    if (out_version)
        *out_version = version + count - 1;
    a->next_position += count;
    a->end += (uint64_t)(p - a->buf);
    a->last_ts = ts;
    return MIN_OK;
}

min_status min_append(min_appender *a, const char *stream, int allow_no_stream, int64_t expected,
                      const min_input *events, size_t count, uint64_t *out_first_position,
                      uint64_t *out_stream_version)
{
    pthread_mutex_lock(&a->mu);
    min_status st = append_locked(a, stream, allow_no_stream, expected, events, count,
                                  out_first_position, out_stream_version);
    pthread_mutex_unlock(&a->mu);
    return st;
}
