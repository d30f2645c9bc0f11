/* The minimal reader of evstore's log: see minimal.h for what it checks. One buffer of
 * 1 MiB (grown only for a record or a batch that does not fit), refilled with pread. */
#define _GNU_SOURCE
#include "minimal.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

#define BLOCK ((size_t)1 << 20)
/* klen, vlen and ttl varints (10 bytes each at most) and the flags byte */
#define MAX_HEADER 31
/* No length in a record can be this large: a segment is far smaller. */
#define MAX_LEN ((uint64_t)1 << 40)

typedef struct reader {
    min_event_fn fn;
    void *user;
    char *err;
    size_t errlen;
    uint64_t next_position;
    uint64_t last_ts;
    uint64_t delivered;
    /* the segment being read */
    int fd;
    uint64_t id;
    uint64_t file_len;
    int last; /* the highest segment: a cut-short tail there is torn, not damage */
    uint64_t seg_end; /* where its records end (before a zero tail) */
    /* buf[at..len) is unread; buf[0] is at file offset buf_off */
    uint8_t *buf;
    size_t cap, at, len;
    uint64_t buf_off;
    /* events of a batch whose last record is not read yet; buf keeps them from batch_at */
    min_event *pend;
    size_t npend, pend_cap, batch_at;
} reader;

static min_status fail(reader *r, min_status st, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static min_status fail(reader *r, min_status st, const char *fmt, ...)
{
    va_list ap;
    int n = snprintf(r->err, r->errlen, "segment %06" PRIu64 ": ", r->id);
    va_start(ap, fmt);
    if (n >= 0 && (size_t)n < r->errlen)
        vsnprintf(r->err + n, r->errlen - (size_t)n, fmt, ap);
    va_end(ap);
    return st;
}

/* Moves the pending views by `delta` bytes (the buffer's bytes moved that far). */
static void shift_pending(reader *r, const uint8_t *from, uint8_t *to)
{
    for (size_t i = 0; i < r->npend; i++) {
        min_event *e = &r->pend[i];
        e->stream = (const char *)to + (e->stream - (const char *)from);
        e->event_type = (const char *)to + (e->event_type - (const char *)from);
        e->metadata = to + (e->metadata - from);
        e->payload = to + (e->payload - from);
        if (e->id)
            e->id = to + (e->id - from);
    }
}

/* Refills so that `need` unread bytes are buffered, or every byte up to the file's end. */
static min_status fill(reader *r, size_t need)
{
    size_t keep = r->npend ? r->batch_at : r->at;
    if (keep > 0) {
        shift_pending(r, r->buf + keep, r->buf);
        memmove(r->buf, r->buf + keep, r->len - keep);
        r->len -= keep;
        r->at -= keep;
        r->batch_at -= keep;
        r->buf_off += keep;
    }
    if (r->at + need > r->cap) {
        size_t cap = r->at + need > BLOCK ? r->at + need : BLOCK;
        uint8_t *nb = malloc(cap);
        if (!nb)
            return fail(r, MIN_ERR_IO, "out of memory for a buffer of %zu bytes", cap);
        memcpy(nb, r->buf, r->len);
        shift_pending(r, r->buf, nb);
        free(r->buf);
        r->buf = nb;
        r->cap = cap;
    }
    while (r->len < r->cap && r->buf_off + r->len < r->file_len && r->len - r->at < need) {
        uint64_t left = r->file_len - (r->buf_off + r->len);
        size_t want = r->cap - r->len < left ? r->cap - r->len : (size_t)left;
        ssize_t got = pread(r->fd, r->buf + r->len, want, (off_t)(r->buf_off + r->len));
        if (got < 0 && errno == EINTR)
            continue;
        if (got < 0)
            return fail(r, MIN_ERR_IO, "pread at %" PRIu64 ": %s", r->buf_off + r->len,
                        strerror(errno));
        if (got == 0) {
            r->file_len = r->buf_off + r->len; /* cut short since fstat */
            break;
        }
        r->len += (size_t)got;
    }
    return MIN_OK;
}

static int at_file_end(const reader *r) { return r->buf_off + r->len >= r->file_len; }

/* Bytes at `at` that are not a whole record and no more can be read: the torn tail of the
 * last segment, damage anywhere else. */
static min_status cut_short(reader *r)
{
    uint64_t off = r->buf_off + r->at;
    if (r->last)
        return fail(r, MIN_ERR_TORN, "the log ends inside a record at offset %" PRIu64, off);
    return fail(r, MIN_ERR_CORRUPT, "a record cut short at offset %" PRIu64 " in a sealed segment",
                off);
}

/* A record starting with a zero byte (klen 0: evstore's keys are 8 bytes): the zero tail
 * of preallocation if every byte to the file's end is zero, damage otherwise. */
static min_status zero_tail(reader *r)
{
    uint64_t start = r->buf_off + r->at;
    for (;;) {
        for (size_t i = r->at; i < r->len; i++)
            if (r->buf[i])
                return fail(r, MIN_ERR_CORRUPT,
                            "a damaged record at offset %" PRIu64 " (non-zero bytes after zeros)",
                            start);
        if (at_file_end(r))
            return MIN_OK;
        r->at = r->len;
        min_status st = fill(r, BLOCK);
        if (st)
            return st;
    }
}

/* Decodes the binary envelope of `v[0..n)` into e's views; 0, or the error's status with
 * *what naming the field. */
static min_status envelope(const uint8_t *v, size_t n, min_event *e, const char **what)
{
    const uint8_t *q = v + 1, *end = v + n;
    uint64_t len, schema;
    if (n == 0)
        return *what = "the envelope is empty", MIN_ERR_CORRUPT;
    if (v[0] == MIN_FORMAT_V2) {
        if (n < 17)
            return *what = "the event id runs past the record", MIN_ERR_CORRUPT;
        e->id = v + 1;
        q = v + 17;
    } else if (v[0] == MIN_FORMAT_V1) {
        e->id = NULL;
    } else {
        return *what = "the envelope's format byte is not 0x01 or 0x02", MIN_ERR_UNSUPPORTED;
    }
    if (!min_varint(&q, end, &e->timestamp_us))
        return *what = "a bad varint for the timestamp", MIN_ERR_CORRUPT;
    if (!min_varint(&q, end, &len) || len > (uint64_t)(end - q))
        return *what = "the stream runs past the record", MIN_ERR_CORRUPT;
    e->stream = (const char *)q;
    e->stream_len = (size_t)len;
    q += len;
    if (!min_varint(&q, end, &e->stream_version))
        return *what = "a bad varint for the stream version", MIN_ERR_CORRUPT;
    if (!min_varint(&q, end, &len) || len > (uint64_t)(end - q))
        return *what = "the event type runs past the record", MIN_ERR_CORRUPT;
    e->event_type = (const char *)q;
    e->event_type_len = (size_t)len;
    q += len;
    if (!min_varint(&q, end, &schema) || schema > UINT32_MAX)
        return *what = "a bad schema version", MIN_ERR_CORRUPT;
    e->schema_version = (uint32_t)schema;
    if (!min_varint(&q, end, &len) || len > (uint64_t)(end - q))
        return *what = "the metadata runs past the record", MIN_ERR_CORRUPT;
    e->metadata = q;
    e->metadata_len = (size_t)len;
    q += len;
    e->payload = q;
    e->payload_len = (size_t)(end - q);
    if (!min_utf8_valid((const uint8_t *)e->stream, e->stream_len))
        return *what = "the stream is not UTF-8", MIN_ERR_CORRUPT;
    if (!min_utf8_valid((const uint8_t *)e->event_type, e->event_type_len))
        return *what = "the event type is not UTF-8", MIN_ERR_CORRUPT;
    return MIN_OK;
}

static min_status deliver(reader *r, const min_event *e)
{
    r->delivered++;
    r->last_ts = e->timestamp_us;
    return r->fn(r->user, e) ? MIN_STOPPED : MIN_OK;
}

static min_status hold(reader *r, const min_event *e)
{
    if (r->npend == r->pend_cap) {
        size_t cap = r->pend_cap ? 2 * r->pend_cap : 128;
        min_event *p = realloc(r->pend, cap * sizeof *p);
        if (!p)
            return fail(r, MIN_ERR_IO, "out of memory for a batch of %zu events", cap);
        r->pend = p;
        r->pend_cap = cap;
    }
    r->pend[r->npend++] = *e;
    return MIN_OK;
}

/* The record at buf[at], whole and buffered, `hlen` header bytes: checked, decoded,
 * handed out (or held while its batch continues). */
static min_status record(reader *r, size_t hlen, uint64_t klen, uint64_t vlen, uint8_t flags)
{
    const uint8_t *p = r->buf + r->at;
    size_t body = hlen + (size_t)klen + (size_t)vlen;
    uint32_t stored;
    uint64_t key;
    const char *what = NULL;
    min_event e;
    min_status st;

    memcpy(&stored, p + body, 4);
    if (min_crc32c(p, body) != stored)
        return fail(r, MIN_ERR_CORRUPT, "the CRC-32C of the record at offset %" PRIu64
                    " does not match", r->buf_off + r->at);
    if (klen != 8)
        return fail(r, MIN_ERR_CORRUPT, "the record at offset %" PRIu64 " has a key of %" PRIu64
                    " bytes, not a position", r->buf_off + r->at, klen);
    memcpy(&key, p + hlen, 8);
    if (key != r->next_position)
        return fail(r, MIN_ERR_CORRUPT, "the record at offset %" PRIu64 " has the key of position %"
                    PRIu64 ", not %" PRIu64, r->buf_off + r->at, key, r->next_position);
    st = envelope(p + hlen + 8, (size_t)vlen, &e, &what);
    if (st)
        return fail(r, st, "the record of position %" PRIu64 " at offset %" PRIu64 ": %s", key,
                    r->buf_off + r->at, what);
    e.position = key;
    e.segment_id = r->id;
    e.offset = r->buf_off + r->at;
    r->next_position++;
    if (flags & MIN_FLAG_BATCH_CONTINUES) {
        if (!r->npend)
            r->batch_at = r->at;
        r->at += body + 4;
        return hold(r, &e);
    }
    r->at += body + 4;
    for (size_t i = 0; i < r->npend; i++) {
        st = deliver(r, &r->pend[i]);
        if (st) {
            r->npend = 0;
            return st;
        }
    }
    r->npend = 0;
    return deliver(r, &e);
}

/* Reads every record of the open segment. */
static min_status segment(reader *r)
{
    size_t open_batch;
    uint64_t batch_off;
    for (;;) {
        if (r->len - r->at < MAX_HEADER && !at_file_end(r)) {
            min_status st = fill(r, MAX_HEADER);
            if (st)
                return st;
        }
        const uint8_t *p = r->buf + r->at, *end = r->buf + r->len, *q = p;
        uint64_t klen, vlen, ttl;
        uint8_t flags;
        if (p == end)
            break;
        if (*p == 0) {
            r->seg_end = r->buf_off + r->at;
            open_batch = r->npend;
            batch_off = open_batch ? r->pend[0].offset : 0;
            r->npend = 0; /* not kept while the zeros are read */
            min_status st = zero_tail(r);
            if (st)
                return st;
            goto done;
        }
        if (!min_varint(&q, end, &klen) || !min_varint(&q, end, &vlen) || q == end) {
            if (end - p < MAX_HEADER && at_file_end(r))
                return cut_short(r);
            return fail(r, MIN_ERR_CORRUPT, "a bad length varint at offset %" PRIu64,
                        r->buf_off + r->at);
        }
        flags = *q++;
        if (flags & MIN_COMPRESSION_MASK)
            return fail(r, (flags & MIN_COMPRESSION_MASK) == MIN_COMPRESSION_MASK
                               ? MIN_ERR_CORRUPT : MIN_ERR_UNSUPPORTED,
                        "the record at offset %" PRIu64 " is compressed (bits %u), which is not read",
                        r->buf_off + r->at, (flags & MIN_COMPRESSION_MASK) >> 2);
        if ((flags & MIN_FLAG_TTL) && !min_varint(&q, end, &ttl)) {
            if (end - p < MAX_HEADER && at_file_end(r))
                return cut_short(r);
            return fail(r, MIN_ERR_CORRUPT, "a bad ttl varint at offset %" PRIu64,
                        r->buf_off + r->at);
        }
        if (klen >= MAX_LEN || vlen >= MAX_LEN)
            return fail(r, MIN_ERR_CORRUPT, "a record at offset %" PRIu64 " longer than any segment",
                        r->buf_off + r->at);
        size_t hlen = (size_t)(q - p), total = hlen + (size_t)klen + (size_t)vlen + 4;
        if (total > (size_t)(end - p)) {
            if (at_file_end(r))
                return cut_short(r);
            min_status st = fill(r, total);
            if (st)
                return st;
            continue;
        }
        min_status st = record(r, hlen, klen, vlen, flags);
        if (st)
            return st;
    }
    r->seg_end = r->buf_off + r->at;
    open_batch = r->npend;
    batch_off = open_batch ? r->pend[0].offset : 0;
    r->npend = 0;
done:
    if (open_batch) {
        if (r->last)
            return fail(r, MIN_ERR_TORN, "the log ends inside the batch at offset %" PRIu64
                        " (%zu records, not handed out)", batch_off, open_batch);
        return fail(r, MIN_ERR_CORRUPT, "the segment ends inside the batch at offset %" PRIu64,
                    batch_off);
    }
    return MIN_OK;
}

static int cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

/* The ids of <dir>/events/NNNNNN.wal, ascending; *n of them (0 when there is no log). */
static min_status list_segments(const char *events, uint64_t **ids, size_t *n, reader *r)
{
    DIR *d = opendir(events);
    struct dirent *de;
    size_t cap = 0;
    *ids = NULL;
    *n = 0;
    if (!d)
        return errno == ENOENT ? MIN_OK : fail(r, MIN_ERR_IO, "%s: %s", events, strerror(errno));
    while ((de = readdir(d))) {
        const char *s = de->d_name;
        size_t digits = strspn(s, "0123456789");
        if (digits < 6 || digits > 19 || strcmp(s + digits, ".wal") != 0)
            continue;
        if (*n == cap) {
            cap = cap ? 2 * cap : 16;
            uint64_t *p = realloc(*ids, cap * sizeof *p);
            if (!p) {
                closedir(d);
                return fail(r, MIN_ERR_IO, "out of memory listing %s", events);
            }
            *ids = p;
        }
        (*ids)[(*n)++] = strtoull(s, NULL, 10);
    }
    closedir(d);
    qsort(*ids, *n, sizeof **ids, cmp_u64);
    return MIN_OK;
}

min_status min_read_all(const char *store_dir, min_event_fn fn, void *user, min_read_result *out,
                        char *err, size_t errlen)
{
    reader r;
    char path[4096];
    uint64_t *ids = NULL;
    size_t n = 0, i;
    min_status st;

    memset(&r, 0, sizeof r);
    memset(out, 0, sizeof *out);
    r.fn = fn;
    r.user = user;
    r.err = err;
    r.errlen = errlen;
    r.fd = -1;
    if (errlen)
        err[0] = 0;
    snprintf(path, sizeof path, "%s/events", store_dir);
    st = list_segments(path, &ids, &n, &r);
    for (i = 0; st == MIN_OK && i < n; i++) {
        struct stat sb;
        r.id = ids[i];
        r.last = i + 1 == n;
        snprintf(path, sizeof path, "%s/events/%06" PRIu64 ".wal", store_dir, ids[i]);
        r.fd = open(path, O_RDONLY | O_CLOEXEC);
        if (r.fd < 0 || fstat(r.fd, &sb) != 0) {
            st = fail(&r, MIN_ERR_IO, "%s: %s", path, strerror(errno));
            break;
        }
        r.file_len = (uint64_t)sb.st_size;
        r.buf_off = 0;
        r.at = r.len = 0;
        r.seg_end = 0;
        st = segment(&r);
        out->last_segment_id = r.id;
        out->end_offset = r.seg_end;
        close(r.fd);
        r.fd = -1;
    }
    out->segments = (int)i;
    out->events = r.delivered;
    out->next_position = r.next_position;
    out->last_timestamp_us = r.last_ts;
    if (r.fd >= 0)
        close(r.fd);
    free(ids);
    free(r.buf);
    free(r.pend);
    return st;
}
