/* The instruction benchmark (issue 25): shared parts of instr.c (the measured modes)
 * and check.c (the agreement checks run before counting). */
#ifndef EVSTORE_BENCH_INSTR_H
#define EVSTORE_BENCH_INSTR_H

#include <stddef.h>
#include <stdint.h>

#include "evstore.h"
#include "minimal.h"

#define EVENT_TYPE "BenchEvent" /* bench/bench.h's */
#define PAYLOAD_SIZE 100
#define STREAMS 1000
#define PER_CALL 100

void die(const char *fmt, ...) __attribute__((format(printf, 1, 2), noreturn));
/* An evstore call that must succeed; dies with the status name and the library's message. */
void evs_ok(evs_status st, const char *what);
/* Opens (creating) a store with EVS_FSYNC_BATCH 5 ms (the bench's non-durable policy);
 * max_segment 0 keeps the default. */
evs_store *open_store(const char *dir, uint64_t max_segment, evs_recovery_info *info);
/* The payload of event `seq`: JSON of exactly `size` bytes, as bench/bench.c makes it. */
void make_payload(uint8_t *buf, size_t size, long seq);
/* The stream of event i in the bench's layout: round-robin over STREAMS. */
void stream_name(char *out, size_t outlen, long i);

/* FNV-1a over every field of an event, chained: the same value from evstore's cursor
 * and from the minimal reader means they read the same events. */
typedef struct ev_hash {
    uint64_t h;
    uint64_t events;
    uint64_t payload_bytes;
    int segments; /* hash_store_minimal only */
} ev_hash;
void hash_fields(ev_hash *x, uint64_t position, uint64_t ts, const char *stream, size_t stream_len,
                 uint64_t version, const char *type, size_t type_len, uint32_t schema,
                 const uint8_t *meta, size_t meta_len, const uint8_t *payload, size_t payload_len,
                 const uint8_t *id);
void hash_evs_event(ev_hash *x, const evs_event *e);
int hash_min_event(void *user, const min_event *e); /* a min_event_fn */
/* Every event of the store through evs_read_all + evs_cursor_next. */
ev_hash hash_store_evstore(evs_store *s);
/* Every event of the (closed) store through the minimal reader; dies on an error. */
ev_hash hash_store_minimal(const char *dir);

int run_checks(const char *dir); /* check.c: 0 when all agree */

#endif
