/*
 * rel_common.h: shared pieces of the reliability suite's C programs (crash.c, stress.c,
 * full_disk.c, bad_input.c), on top of the tests/c/test_util.h harness:
 *
 *   - violation counting (a check that runs once per event counts one failure the first
 *     few times it fails, with a line each, instead of one pass per event);
 *   - a small string-keyed hash map;
 *   - hashing of event bytes (two independent 64-bit hashes);
 *   - parsing of the account events' JSON payloads ({"MoneyDeposited":{...}});
 *   - rel_check_store(): a whole-store consistency check that reads every event with
 *     evs_read_all and checks gapless positions, never-decreasing timestamps, gapless
 *     stream versions, the stream versions evs_stream_version reports, and that every
 *     account's balance, closed flag, version and last position (evs_account_get) equal
 *     the fold of its events read back from the log.
 *
 * Compile with -std=c99 -D_POSIX_C_SOURCE=200809L.
 */
#ifndef EVS_REL_COMMON_H
#define EVS_REL_COMMON_H

#include "../c/test_util.h"

#include <stdarg.h>

/* ---- violations ---- */

static unsigned long rel_violations_printed = 0;

/* Prints one violation (the first 40 of a run), returns 1 so callers can count it. */
static inline int rel_violation(const char *fmt, ...)
{
    va_list ap;
    pthread_mutex_lock(&tu_lock);
    if (rel_violations_printed < 40) {
        printf("VIOLATION: ");
        va_start(ap, fmt);
        vprintf(fmt, ap);
        va_end(ap);
        printf("\n");
        fflush(stdout);
    } else if (rel_violations_printed == 40) {
        printf("VIOLATION: (more violations not shown)\n");
        fflush(stdout);
    }
    rel_violations_printed++;
    pthread_mutex_unlock(&tu_lock);
    return 1;
}

/* ---- hashing ---- */

static inline uint64_t rel_fnv(uint64_t h, const void *data, size_t len)
{
    const unsigned char *p = (const unsigned char *)data;
    size_t i;
    for (i = 0; i < len; i++) {
        h ^= p[i];
        h *= UINT64_C(0x100000001b3);
    }
    return h;
}

/* A second, independent hash (a multiply-rotate mix over the bytes and the length). */
static inline uint64_t rel_mix(uint64_t h, const void *data, size_t len)
{
    const unsigned char *p = (const unsigned char *)data;
    size_t i;
    h ^= (uint64_t)len * UINT64_C(0x9E3779B97F4A7C15);
    for (i = 0; i < len; i++) {
        h = (h ^ p[i]) * UINT64_C(0xff51afd7ed558ccd);
        h = (h << 29) | (h >> 35);
    }
    return h ^ (h >> 31);
}

typedef struct {
    uint64_t a, b;
} rel_hash;

static inline void rel_hash_add(rel_hash *h, const void *data, size_t len)
{
    uint64_t n = (uint64_t)len;
    h->a = rel_fnv(h->a, &n, sizeof n);
    h->a = rel_fnv(h->a, data, len);
    h->b = rel_mix(h->b, data, len);
}

static inline rel_hash rel_hash_new(void)
{
    rel_hash h;
    h.a = UINT64_C(0xcbf29ce484222325);
    h.b = UINT64_C(0x243F6A8885A308D3);
    return h;
}

/* ---- a string-keyed hash map (open addressing, grows at 1/2 full) ---- */

typedef struct {
    char *key; /* NUL-terminated copy; keys may hold any byte but NUL */
    size_t len;
    uint64_t hash;
    void *val;
} rel_entry;

typedef struct {
    rel_entry *slots;
    size_t cap;
    size_t count;
    size_t val_size;
} rel_map;

static inline void *rel_xmalloc(size_t n)
{
    void *p = malloc(n ? n : 1);
    if (p == NULL) {
        fprintf(stderr, "out of memory (%zu bytes)\n", n);
        exit(2);
    }
    return p;
}

static inline void *rel_xcalloc(size_t n, size_t size)
{
    void *p = calloc(n ? n : 1, size ? size : 1);
    if (p == NULL) {
        fprintf(stderr, "out of memory\n");
        exit(2);
    }
    return p;
}

static inline void rel_map_init(rel_map *m, size_t val_size)
{
    m->cap = 64;
    m->count = 0;
    m->val_size = val_size;
    m->slots = (rel_entry *)rel_xcalloc(m->cap, sizeof(rel_entry));
}

static inline void rel_map_free(rel_map *m)
{
    size_t i;
    for (i = 0; i < m->cap; i++) {
        free(m->slots[i].key);
        free(m->slots[i].val);
    }
    free(m->slots);
    m->slots = NULL;
    m->cap = m->count = 0;
}

static inline rel_entry *rel_map_slot(rel_entry *slots, size_t cap, const char *key, size_t len,
                               uint64_t hash)
{
    size_t i = (size_t)(hash & (cap - 1));
    for (;;) {
        rel_entry *e = &slots[i];
        if (e->key == NULL)
            return e;
        if (e->hash == hash && e->len == len && memcmp(e->key, key, len) == 0)
            return e;
        i = (i + 1) & (cap - 1);
    }
}

/* The value for key, or NULL. */
static inline void *rel_map_get(const rel_map *m, const char *key, size_t len)
{
    uint64_t h = rel_fnv(UINT64_C(0xcbf29ce484222325), key, len);
    rel_entry *e = rel_map_slot(m->slots, m->cap, key, len, h);
    return e->key ? e->val : NULL;
}

/* The value for key, created zero-filled when missing. */
static inline void *rel_map_put(rel_map *m, const char *key, size_t len)
{
    uint64_t h = rel_fnv(UINT64_C(0xcbf29ce484222325), key, len);
    rel_entry *e;
    if ((m->count + 1) * 2 > m->cap) {
        size_t ncap = m->cap * 2, i;
        rel_entry *ns = (rel_entry *)rel_xcalloc(ncap, sizeof(rel_entry));
        for (i = 0; i < m->cap; i++) {
            rel_entry *o = &m->slots[i];
            if (o->key != NULL)
                *rel_map_slot(ns, ncap, o->key, o->len, o->hash) = *o;
        }
        free(m->slots);
        m->slots = ns;
        m->cap = ncap;
    }
    e = rel_map_slot(m->slots, m->cap, key, len, h);
    if (e->key == NULL) {
        e->key = (char *)rel_xmalloc(len + 1);
        memcpy(e->key, key, len);
        e->key[len] = '\0';
        e->len = len;
        e->hash = h;
        e->val = rel_xcalloc(1, m->val_size);
        m->count++;
    }
    return e->val;
}

/* Copies every entry of src into dst (which must be empty, same value size). */
static inline void rel_map_copy(rel_map *dst, const rel_map *src)
{
    size_t i;
    rel_map_init(dst, src->val_size);
    for (i = 0; i < src->cap; i++) {
        const rel_entry *e = &src->slots[i];
        if (e->key != NULL)
            memcpy(rel_map_put(dst, e->key, e->len), e->val, src->val_size);
    }
}

/* ---- account events ---- */

enum { REL_OPENED = 1, REL_DEPOSITED, REL_WITHDRAWN, REL_CLOSED };

typedef struct {
    int kind; /* REL_* */
    char account_id[300];
    int64_t amount; /* amount, or the initial balance of an opening */
    char currency[4];
} rel_account_event;

/* Skips spaces. */
static inline const char *rel_ws(const char *p, const char *end)
{
    while (p < end && (*p == ' ' || *p == '\n' || *p == '\t' || *p == '\r'))
        p++;
    return p;
}

/* Reads a JSON string (no escapes other than \" and \\) into out (cap bytes). */
static inline const char *rel_json_string(const char *p, const char *end, char *out, size_t cap)
{
    size_t n = 0;
    if (p >= end || *p != '"')
        return NULL;
    p++;
    while (p < end && *p != '"') {
        char c = *p++;
        if (c == '\\') {
            if (p >= end)
                return NULL;
            c = *p++;
        }
        if (n + 1 >= cap)
            return NULL;
        out[n++] = c;
    }
    if (p >= end)
        return NULL;
    out[n] = '\0';
    return p + 1;
}

static inline const char *rel_json_int(const char *p, const char *end, int64_t *out)
{
    int neg = 0;
    uint64_t v = 0;
    if (p < end && *p == '-') {
        neg = 1;
        p++;
    }
    if (p >= end || *p < '0' || *p > '9')
        return NULL;
    while (p < end && *p >= '0' && *p <= '9') {
        v = v * 10 + (uint64_t)(*p - '0');
        p++;
    }
    *out = neg ? (int64_t)(0 - v) : (int64_t)v;
    return p;
}

/* Parses {"Tag":{"k":v,...}} as the library writes account events. 1 on success. */
static inline int rel_parse_account_event(const uint8_t *payload, size_t len, rel_account_event *out)
{
    const char *p = (const char *)payload, *end = p + len;
    char tag[64], key[64];
    int have_id = 0, have_amount = 0;
    memset(out, 0, sizeof *out);
    strcpy(out->currency, "USD");
    p = rel_ws(p, end);
    if (p >= end || *p++ != '{')
        return 0;
    p = rel_ws(p, end);
    if ((p = rel_json_string(p, end, tag, sizeof tag)) == NULL)
        return 0;
    p = rel_ws(p, end);
    if (p >= end || *p++ != ':')
        return 0;
    p = rel_ws(p, end);
    if (p >= end || *p++ != '{')
        return 0;
    if (strcmp(tag, "AccountOpened") == 0)
        out->kind = REL_OPENED;
    else if (strcmp(tag, "MoneyDeposited") == 0)
        out->kind = REL_DEPOSITED;
    else if (strcmp(tag, "MoneyWithdrawn") == 0)
        out->kind = REL_WITHDRAWN;
    else if (strcmp(tag, "AccountClosed") == 0)
        out->kind = REL_CLOSED;
    else
        return 0;
    for (;;) {
        p = rel_ws(p, end);
        if (p < end && *p == '}')
            break;
        if ((p = rel_json_string(p, end, key, sizeof key)) == NULL)
            return 0;
        p = rel_ws(p, end);
        if (p >= end || *p++ != ':')
            return 0;
        p = rel_ws(p, end);
        if (strcmp(key, "account_id") == 0) {
            if ((p = rel_json_string(p, end, out->account_id, sizeof out->account_id)) == NULL)
                return 0;
            have_id = 1;
        } else if (strcmp(key, "amount") == 0 || strcmp(key, "initial_balance") == 0) {
            if ((p = rel_json_int(p, end, &out->amount)) == NULL)
                return 0;
            have_amount = 1;
        } else if (strcmp(key, "currency") == 0) {
            char cur[16];
            if (p < end && *p == 'n') { /* null */
                p += 4;
            } else {
                if ((p = rel_json_string(p, end, cur, sizeof cur)) == NULL || strlen(cur) != 3)
                    return 0;
                memcpy(out->currency, cur, 4);
            }
        } else {
            return 0;
        }
        p = rel_ws(p, end);
        if (p < end && *p == ',')
            p++;
    }
    if (!have_id)
        return 0;
    if ((out->kind == REL_DEPOSITED || out->kind == REL_WITHDRAWN || out->kind == REL_OPENED) &&
        !have_amount)
        return 0;
    return 1;
}

/* ---- the whole-store consistency check ---- */

typedef struct {
    int64_t last_version; /* -1: no events yet (never stored: entries exist once seen) */
    uint64_t events;
} rel_stream;

typedef struct {
    int exists;
    int64_t balance;
    int closed;
    uint64_t version;
    uint64_t last_position;
    char currency[4];
} rel_account;

typedef struct {
    uint64_t events;       /* events read: positions 0..events-1 */
    uint64_t last_ts;      /* timestamp of the last event */
    rel_map streams;       /* name -> rel_stream */
    rel_map accounts;      /* id -> rel_account, folded from the account events */
    unsigned long violations;
} rel_state;

static inline void rel_state_init(rel_state *st)
{
    memset(st, 0, sizeof *st);
    rel_map_init(&st->streams, sizeof(rel_stream));
    rel_map_init(&st->accounts, sizeof(rel_account));
}

static inline void rel_state_free(rel_state *st)
{
    rel_map_free(&st->streams);
    rel_map_free(&st->accounts);
}

/* Applies an account event to a folded account. Returns 0 when the event is not
 * possible in that state (which the library's own checks should have refused). */
static inline int rel_fold(rel_account *a, const rel_account_event *ev, uint64_t position,
                    const char **why)
{
    *why = NULL;
    switch (ev->kind) {
    case REL_OPENED:
        if (a->exists) {
            *why = "opened twice";
            return 0;
        }
        a->exists = 1;
        a->balance = ev->amount;
        memcpy(a->currency, ev->currency, 4);
        a->version = 1;
        a->last_position = position;
        if (ev->amount < 0) {
            *why = "opened with a negative balance";
            return 0;
        }
        return 1;
    case REL_DEPOSITED:
    case REL_WITHDRAWN:
    case REL_CLOSED:
        if (!a->exists) {
            *why = "an event before the account was opened";
            return 0;
        }
        if (a->closed) {
            *why = "an event after the account was closed";
        }
        if (ev->kind == REL_DEPOSITED) {
            if (ev->amount <= 0 || a->balance > INT64_MAX - ev->amount)
                *why = "a deposit that is not positive or overflows";
            else
                a->balance += ev->amount;
        } else if (ev->kind == REL_WITHDRAWN) {
            if (ev->amount <= 0 || ev->amount > a->balance)
                *why = "a withdrawal past the balance (or not positive)";
            else
                a->balance -= ev->amount;
        } else {
            a->closed = 1;
        }
        a->version++;
        a->last_position = position;
        return *why == NULL;
    }
    *why = "unknown account event";
    return 0;
}

/* Called for each event read by rel_check_store, after the built-in checks. */
typedef void (*rel_event_fn)(void *ud, const evs_event *e);

/*
 * Reads every event of s from position 0 (evs_read_all) and checks:
 *   positions gapless from 0; timestamps never decreasing; per stream, versions gapless
 *   from 0 ("" events: version 0); account events parse and fold without an impossible
 *   step; and then, for every stream, evs_stream_version() equals the last version read;
 *   for every account, evs_account_get() equals the fold (balance, closed, version, last
 *   position, currency); evs_position_at(UINT64_MAX) equals the number of events.
 * Fills st (which the caller initialised with rel_state_init). Counts one CHECK per
 * property; returns the number of violations found.
 */
static inline unsigned long rel_check_store(evs_store *s, rel_state *st, rel_event_fn fn, void *ud,
                                     const char *label)
{
    evs_cursor *c = NULL;
    evs_event e = EVS_STRUCT_INIT(evs_event);
    evs_status rc;
    unsigned long v_gap = 0, v_ts = 0, v_ver = 0, v_acct = 0, v_parse = 0, v_get = 0,
                  v_sv = 0, v_end = 0;
    uint64_t next = 0;
    size_t i;

    if (!CHECK_OK(evs_read_all(s, 0, &c))) {
        st->violations++;
        return 1;
    }
    while ((rc = evs_cursor_next(c, &e)) == EVS_OK) {
        rel_stream *sm;
        if (e.position != st->events)
            v_gap += rel_violation("%s: event %" PRIu64 " read where position %" PRIu64
                                   " was expected",
                                   label, e.position, st->events);
        if (e.timestamp_us < st->last_ts)
            v_ts += rel_violation("%s: position %" PRIu64 " has timestamp %" PRIu64
                                  " before the previous %" PRIu64,
                                  label, e.position, e.timestamp_us, st->last_ts);
        st->last_ts = e.timestamp_us;
        st->events++;
        if (e.stream_len == 0) {
            if (e.stream_version != 0)
                v_ver += rel_violation("%s: position %" PRIu64
                                       " (no stream) has version %" PRIu64,
                                       label, e.position, e.stream_version);
        } else {
            int fresh = rel_map_get(&st->streams, e.stream, e.stream_len) == NULL;
            sm = (rel_stream *)rel_map_put(&st->streams, e.stream, e.stream_len);
            if (fresh)
                sm->last_version = -1;
            if ((int64_t)e.stream_version != sm->last_version + 1)
                v_ver += rel_violation("%s: stream '%.*s' has version %" PRIu64
                                       " at position %" PRIu64 " after version %" PRId64,
                                       label, (int)e.stream_len, e.stream, e.stream_version,
                                       e.position, sm->last_version);
            sm->last_version = (int64_t)e.stream_version;
            sm->events++;
            if (e.stream_len > 8 && memcmp(e.stream, "account-", 8) == 0) {
                rel_account_event ae;
                if (!rel_parse_account_event(e.payload, e.payload_len, &ae)) {
                    v_parse += rel_violation("%s: position %" PRIu64
                                             " in '%.*s' is not an account event: %.*s",
                                             label, e.position, (int)e.stream_len, e.stream,
                                             (int)(e.payload_len > 200 ? 200 : e.payload_len),
                                             (const char *)e.payload);
                } else if (strlen(ae.account_id) != e.stream_len - 8 ||
                           memcmp(ae.account_id, e.stream + 8, e.stream_len - 8) != 0) {
                    v_parse += rel_violation("%s: position %" PRIu64
                                             ": account '%s' in stream '%.*s'",
                                             label, e.position, ae.account_id,
                                             (int)e.stream_len, e.stream);
                } else {
                    const char *why;
                    rel_account *a = (rel_account *)rel_map_put(
                        &st->accounts, ae.account_id, strlen(ae.account_id));
                    if (!rel_fold(a, &ae, e.position, &why))
                        v_acct += rel_violation("%s: account '%s' at position %" PRIu64
                                                ": %s",
                                                label, ae.account_id, e.position, why);
                }
            }
        }
        if (fn != NULL)
            fn(ud, &e);
    }
    if (!CHECK_STATUS(rc, EVS_END))
        v_end++;
    evs_cursor_free(c);
    next = UINT64_MAX;
    if (!CHECK_OK(evs_position_at(s, UINT64_MAX, &next)) || next != st->events)
        v_end += rel_violation("%s: evs_position_at(UINT64_MAX) = %" PRIu64 " but %" PRIu64
                               " events were read",
                               label, next, st->events);

    for (i = 0; i < st->streams.cap; i++) {
        rel_entry *en = &st->streams.slots[i];
        int64_t v = -7;
        if (en->key == NULL)
            continue;
        rc = evs_stream_version(s, en->key, &v);
        if (rc != EVS_OK || v != ((rel_stream *)en->val)->last_version)
            v_sv += rel_violation("%s: evs_stream_version('%s') = %" PRId64 " (status %s); the "
                                  "log's last version is %" PRId64,
                                  label, en->key, v, tu_name(rc),
                                  ((rel_stream *)en->val)->last_version);
    }
    for (i = 0; i < st->accounts.cap; i++) {
        rel_entry *en = &st->accounts.slots[i];
        rel_account *a;
        evs_account got = EVS_STRUCT_INIT(evs_account);
        if (en->key == NULL)
            continue;
        a = (rel_account *)en->val;
        memset(&got, 0, sizeof got);
        got.struct_size = sizeof got;
        rc = evs_account_get(s, en->key, &got);
        if (rc != EVS_OK || got.balance != a->balance || (int)got.is_closed != a->closed ||
            got.version != a->version || got.last_position != a->last_position ||
            strcmp(got.currency, a->currency) != 0)
            v_get += rel_violation(
                "%s: evs_account_get('%s') = {balance %" PRId64 ", closed %d, version %" PRIu64
                ", last %" PRIu64 ", %s} (status %s); the replay of its events gives {balance "
                "%" PRId64 ", closed %d, version %" PRIu64 ", last %" PRIu64 ", %s}",
                label, en->key, got.balance, (int)got.is_closed, got.version, got.last_position,
                got.currency, tu_name(rc), a->balance, a->closed, a->version, a->last_position,
                a->currency);
    }
    {
        char what[256];
#define REL_PROP(var, text)                                                         \
    do {                                                                            \
        snprintf(what, sizeof what, "%s: %s", label, text);                         \
        tu_check((var) == 0, what, __FILE__, __LINE__);                              \
    } while (0)
        REL_PROP(v_gap, "positions are gapless from 0");
        REL_PROP(v_ts, "timestamps never decrease");
        REL_PROP(v_ver, "stream versions are gapless from 0");
        REL_PROP(v_parse, "account events parse and belong to their stream");
        REL_PROP(v_acct, "the account events replay without an impossible step");
        REL_PROP(v_sv, "evs_stream_version equals the log's last version of each stream");
        REL_PROP(v_get, "evs_account_get equals the replay of each account's events");
        REL_PROP(v_end, "the cursor ends where evs_position_at says the log ends");
#undef REL_PROP
    }
    st->violations += v_gap + v_ts + v_ver + v_acct + v_parse + v_get + v_sv + v_end;
    return v_gap + v_ts + v_ver + v_acct + v_parse + v_get + v_sv + v_end;
}

/* Prints a figure line that run.sh collects: "FIGURE name value". */
static inline void rel_figure(const char *name, unsigned long long value)
{
    pthread_mutex_lock(&tu_lock);
    printf("FIGURE %s %llu\n", name, value);
    fflush(stdout);
    pthread_mutex_unlock(&tu_lock);
}

#endif /* EVS_REL_COMMON_H */
