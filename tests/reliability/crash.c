/*
 * crash.c: kill -9 a writer at random moments and check what survives.
 *
 *   crash [KILLS] [SEED]        (default 20 kills, seed from the clock)
 *
 * Each round starts this program again as a child (`crash --child ...`, through
 * /proc/self/exe) that opens the store and appends without end: single events
 * (evs_append_event), batches of 1..8 events to a few streams with expected versions
 * (mostly right, sometimes deliberately wrong), account operations (open, deposit,
 * withdraw, transfers between a few accounts, close) and now and then a snapshot. Before
 * each call it sends the parent its intent (the operation and every byte of its events)
 * and after it the result (status, position, stream version), over a pipe. The parent
 * SIGKILLs it after a random delay (0..1 s, most under 0.4 s), reopens the store and
 * checks:
 *   - the child's open found exactly the events acknowledged so far;
 *   - every acknowledged result was the right one: the parent keeps a model of the store
 *     (next position, stream versions, account balances) and knows which appends must
 *     succeed at which position and which must fail with which status;
 *   - every acknowledged event is present at its position with its exact bytes (stream,
 *     type, payload, metadata, version, schema); events of earlier rounds by hash;
 *   - the operation in flight at the kill is all there or not at all (no batch or
 *     transfer partly visible) and if there, it is byte for byte what was asked;
 *   - positions and stream versions are gapless, and every account's balance equals the
 *     replay of the surviving account events (rel_check_store) and the model.
 * The store grows across rounds; now and then a fresh one is started, with another
 * segment size and preallocation. Every fifth round runs the child under
 * EVS_FSYNC_BATCH, where "acknowledged" means written to the OS: a SIGKILL (unlike a
 * power loss) must lose nothing of it either.
 *
 * Prints FIGURE lines (kills, kills under batch, events acknowledged, events lost, torn
 * tails truncated, in-flight operations found complete) and `N passed, N failed`.
 */
#include "rel_common.h"

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/types.h>
#include <sys/wait.h>

/* ---- byte buffers for the pipe protocol ---- */

typedef struct {
    uint8_t *p;
    size_t len, cap;
} buf_t;

static void buf_put(buf_t *b, const void *d, size_t n)
{
    if (b->len + n > b->cap) {
        size_t nc = b->cap ? b->cap * 2 : 4096;
        while (nc < b->len + n)
            nc *= 2;
        b->p = (uint8_t *)realloc(b->p, nc);
        if (b->p == NULL) {
            fprintf(stderr, "out of memory\n");
            exit(2);
        }
        b->cap = nc;
    }
    if (n)
        memcpy(b->p + b->len, d, n);
    b->len += n;
}
static void put_u8(buf_t *b, uint8_t v) { buf_put(b, &v, 1); }
static void put_u32(buf_t *b, uint32_t v) { buf_put(b, &v, 4); }
static void put_u64(buf_t *b, uint64_t v) { buf_put(b, &v, 8); }
static void put_i64(buf_t *b, int64_t v) { buf_put(b, &v, 8); }
static void put_bytes(buf_t *b, const void *d, size_t n)
{
    put_u32(b, (uint32_t)n);
    buf_put(b, d, n);
}
static void put_str(buf_t *b, const char *s) { put_bytes(b, s, strlen(s)); }

typedef struct {
    const uint8_t *p;
    size_t len, at;
    int bad;
} rd_t;

static const uint8_t *rd_take(rd_t *r, size_t n)
{
    const uint8_t *q;
    if (r->bad || r->len - r->at < n) {
        r->bad = 1;
        return NULL;
    }
    q = r->p + r->at;
    r->at += n;
    return q;
}
static uint8_t get_u8(rd_t *r)
{
    const uint8_t *q = rd_take(r, 1);
    return q ? *q : 0;
}
static uint32_t get_u32(rd_t *r)
{
    uint32_t v = 0;
    const uint8_t *q = rd_take(r, 4);
    if (q)
        memcpy(&v, q, 4);
    return v;
}
static uint64_t get_u64(rd_t *r)
{
    uint64_t v = 0;
    const uint8_t *q = rd_take(r, 8);
    if (q)
        memcpy(&v, q, 8);
    return v;
}
static int64_t get_i64(rd_t *r) { return (int64_t)get_u64(r); }
static const uint8_t *get_bytes(rd_t *r, size_t *n)
{
    *n = get_u32(r);
    return rd_take(r, *n);
}

/* ---- the protocol ---- */

enum { M_OPENED = 1, M_OPEN_FAILED, M_INTENT, M_RESULT };
enum {
    OP_EVENT = 1, /* evs_append_event */
    OP_BATCH,     /* evs_append */
    OP_ACC_OPEN,
    OP_DEPOSIT,
    OP_WITHDRAW,
    OP_TRANSFER,
    OP_CLOSE,
    OP_SNAPSHOT
};

static const char *op_name(int op)
{
    static const char *names[] = {"?",        "append_event", "append",   "account_open",
                                  "deposit",  "withdraw",     "transfer", "account_close",
                                  "snapshot"};
    return op >= 1 && op <= 8 ? names[op] : "?";
}

#define N_STREAMS 6
#define N_ACCOUNTS 5
#define INITIAL_BALANCE INT64_C(1000000)

/* ======================================================================================
 * The child: appends until it is killed.
 * ==================================================================================== */

static int g_fd = -1;

static void send_frame(uint8_t type, const buf_t *body)
{
    buf_t f = {NULL, 0, 0};
    size_t off = 0;
    put_u32(&f, (uint32_t)(1 + (body ? body->len : 0)));
    put_u8(&f, type);
    if (body)
        buf_put(&f, body->p, body->len);
    while (off < f.len) {
        ssize_t w = write(g_fd, f.p + off, f.len - off);
        if (w < 0) {
            if (errno == EINTR)
                continue;
            _exit(4); /* the parent is gone */
        }
        off += (size_t)w;
    }
    free(f.p);
}

static void send_result(evs_status st, uint64_t pos, uint64_t ver)
{
    buf_t b = {NULL, 0, 0};
    put_u32(&b, (uint32_t)st);
    put_u64(&b, pos);
    put_u64(&b, ver);
    put_str(&b, st < 0 ? evs_last_error_message() : "");
    send_frame(M_RESULT, &b);
    free(b.p);
}

static const char *const TYPES[] = {"OrderPlaced", "OrderShipped", "ItemAdded", "Ping",
                                    "Ünïcode-Typé"};

static void fill_random(uint64_t *rng, uint8_t *p, size_t n)
{
    size_t i;
    for (i = 0; i < n; i++)
        p[i] = (uint8_t)(tu_rand(rng) >> 24);
}

static size_t rand_payload_len(uint64_t *rng, size_t max_large)
{
    uint64_t r = tu_rand(rng) % 100;
    if (r < 3 && max_large > 0)
        return (size_t)(tu_rand(rng) % max_large);
    if (r < 10)
        return 0;
    return (size_t)(tu_rand(rng) % 600);
}

static int child_main(int argc, char **argv)
{
    const char *dir;
    uint64_t rng;
    int policy, prealloc;
    uint64_t segsize, snap_every;
    size_t max_large;
    evs_options *o;
    evs_store *s = NULL;
    evs_status st;
    evs_recovery_info info = EVS_STRUCT_INIT(evs_recovery_info);
    int64_t versions[N_STREAMS];
    char stream_names[N_STREAMS][32];
    char acc[N_ACCOUNTS][16];
    char temp_acc[64][48];
    int n_temp = 0;
    uint8_t *payload_buf;
    unsigned long op_no = 0;
    int i;
    buf_t b = {NULL, 0, 0};

    if (argc < 10)
        return 2;
    dir = argv[2];
    rng = strtoull(argv[3], NULL, 10) | 1;
    g_fd = atoi(argv[4]);
    policy = atoi(argv[5]);
    segsize = strtoull(argv[6], NULL, 10);
    prealloc = atoi(argv[7]);
    snap_every = strtoull(argv[8], NULL, 10);
    max_large = (size_t)strtoull(argv[9], NULL, 10);
    payload_buf = (uint8_t *)rel_xmalloc(max_large + 8 * 600 + 16);

    o = evs_options_new();
    evs_options_set_fsync(o, policy, 5);
    evs_options_set_max_segment_size(o, segsize);
    evs_options_set_preallocate(o, prealloc != 0);
    evs_options_set_snapshot_every(o, snap_every);
    st = evs_open(dir, o, &s, &info);
    evs_options_free(o);
    if (st != EVS_OK) {
        put_u32(&b, (uint32_t)st);
        put_str(&b, evs_last_error_message());
        send_frame(M_OPEN_FAILED, &b);
        return 3;
    }
    b.len = 0;
    put_u64(&b, info.next_position);
    send_frame(M_OPENED, &b);

    for (i = 0; i < N_STREAMS; i++) {
        snprintf(stream_names[i], sizeof stream_names[i], "stream-%d", i);
        versions[i] = -1;
        evs_stream_version(s, stream_names[i], &versions[i]);
    }
    for (i = 0; i < N_ACCOUNTS; i++) {
        evs_account a = EVS_STRUCT_INIT(evs_account);
        uint64_t pos = 0;
        snprintf(acc[i], sizeof acc[i], "acct%d", i);
        if (evs_account_get(s, acc[i], &a) != EVS_ERR_NOT_FOUND)
            continue;
        b.len = 0;
        put_u8(&b, OP_ACC_OPEN);
        put_str(&b, acc[i]);
        put_i64(&b, INITIAL_BALANCE);
        send_frame(M_INTENT, &b);
        st = evs_account_open(s, acc[i], INITIAL_BALANCE, NULL, &pos);
        send_result(st, pos, 0);
    }
    for (;;) {
        uint64_t r = tu_rand(&rng) % 1000;
        uint64_t pos = 0, ver = 0;
        b.len = 0;
        op_no++;
        if (r < 250) {
            /* one event, no stream */
            const char *type = TYPES[tu_rand(&rng) % 5];
            size_t n = rand_payload_len(&rng, max_large);
            fill_random(&rng, payload_buf, n);
            put_u8(&b, OP_EVENT);
            put_str(&b, type);
            put_bytes(&b, payload_buf, n);
            send_frame(M_INTENT, &b);
            st = evs_append_event(s, type, n ? payload_buf : NULL, n, &pos);
            send_result(st, pos, 0);
        } else if (r < 600) {
            /* a batch to one stream with an expected version */
            int k = (int)(tu_rand(&rng) % N_STREAMS);
            uint32_t n = 1 + (uint32_t)(tu_rand(&rng) % 8), j;
            evs_event_input in[8];
            { /* every entry starts with its size */
                size_t i_;
                for (i_ = 0; i_ < sizeof in / sizeof in[0]; i_++)
                    in[i_] = (evs_event_input)EVS_STRUCT_INIT(evs_event_input);
            }
            uint8_t *meta[8];
            size_t off = 0;
            uint64_t e = tu_rand(&rng) % 100;
            int64_t expected;
            if (e < 80)
                expected = versions[k] < 0 ? EVS_EXPECT_NO_STREAM : versions[k];
            else if (e < 88)
                expected = EVS_EXPECT_ANY;
            else if (e < 92)
                expected = EVS_EXPECT_EXISTS;
            else if (e < 96)
                expected = versions[k] + 1; /* wrong */
            else
                expected = versions[k] < 0 ? 0 : EVS_EXPECT_NO_STREAM; /* wrong */
            put_u8(&b, OP_BATCH);
            put_str(&b, stream_names[k]);
            put_i64(&b, expected);
            put_u32(&b, n);
            for (j = 0; j < n; j++) {
                size_t pl = rand_payload_len(&rng, j == 0 ? max_large : 0);
                size_t ml = (size_t)(tu_rand(&rng) % 3 == 0 ? tu_rand(&rng) % 64 : 0);
                uint8_t *p;
                if (off + pl > max_large + 8 * 600)
                    pl = 0;
                p = payload_buf + off;
                off += pl;
                fill_random(&rng, p, pl);
                meta[j] = (uint8_t *)rel_xmalloc(ml + 1);
                fill_random(&rng, meta[j], ml);
                in[j].event_type = TYPES[tu_rand(&rng) % 5];
                in[j].payload = pl ? p : NULL;
                in[j].payload_len = pl;
                in[j].metadata = ml ? meta[j] : NULL;
                in[j].metadata_len = ml;
                in[j].schema_version = (uint32_t)(tu_rand(&rng) % 4);
                put_str(&b, in[j].event_type);
                put_bytes(&b, p, pl);
                put_bytes(&b, meta[j], ml);
                put_u32(&b, in[j].schema_version);
            }
            send_frame(M_INTENT, &b);
            st = evs_append(s, stream_names[k], expected, in, n, &pos, &ver);
            send_result(st, pos, ver);
            if (st == EVS_OK)
                versions[k] = (int64_t)ver;
            for (j = 0; j < n; j++)
                free(meta[j]);
        } else if (r < 990) {
            /* account operations */
            uint64_t a = tu_rand(&rng) % 100;
            int x = (int)(tu_rand(&rng) % N_ACCOUNTS), y = (int)(tu_rand(&rng) % N_ACCOUNTS);
            int64_t amount = 1 + (int64_t)(tu_rand(&rng) % 400000);
            const char *id = acc[x];
            if (n_temp > 0 && tu_rand(&rng) % 10 == 0)
                id = temp_acc[tu_rand(&rng) % (uint64_t)n_temp];
            if (a < 6) {
                /* open one of the fixed accounts (ALREADY_EXISTS once it is), or a new
                 * temporary one */
                if (a < 3 || n_temp >= 64) {
                    id = acc[x];
                } else {
                    snprintf(temp_acc[n_temp], sizeof temp_acc[n_temp], "tmp-%s-%lu",
                             argv[3], op_no);
                    id = temp_acc[n_temp++];
                }
                put_u8(&b, OP_ACC_OPEN);
                put_str(&b, id);
                put_i64(&b, INITIAL_BALANCE);
                send_frame(M_INTENT, &b);
                st = evs_account_open(s, id, INITIAL_BALANCE, NULL, &pos);
                send_result(st, pos, 0);
            } else if (a < 8 && n_temp > 0) {
                id = temp_acc[tu_rand(&rng) % (uint64_t)n_temp];
                put_u8(&b, OP_CLOSE);
                put_str(&b, id);
                send_frame(M_INTENT, &b);
                st = evs_account_close(s, id, &pos);
                send_result(st, pos, 0);
            } else if (a < 25) {
                put_u8(&b, OP_DEPOSIT);
                put_str(&b, id);
                put_i64(&b, amount);
                send_frame(M_INTENT, &b);
                st = evs_account_deposit(s, id, amount, &pos);
                send_result(st, pos, 0);
            } else if (a < 40) {
                put_u8(&b, OP_WITHDRAW);
                put_str(&b, id);
                put_i64(&b, amount);
                send_frame(M_INTENT, &b);
                st = evs_account_withdraw(s, id, amount, &pos);
                send_result(st, pos, 0);
            } else {
                if (y == x)
                    y = (x + 1) % N_ACCOUNTS;
                put_u8(&b, OP_TRANSFER);
                put_str(&b, id);
                put_str(&b, acc[y]);
                put_i64(&b, amount);
                send_frame(M_INTENT, &b);
                st = evs_account_transfer(s, id, acc[y], amount, &pos);
                send_result(st, pos, 0);
            }
        } else {
            put_u8(&b, OP_SNAPSHOT);
            send_frame(M_INTENT, &b);
            st = evs_snapshot(s, &pos);
            send_result(st, pos, 0);
        }
    }
    /* not reached: the parent kills us */
}

/* ======================================================================================
 * The parent: the model, the ledger, the checks.
 * ==================================================================================== */

/* One expected event (pointers into the round's message buffer or the round arena). */
typedef struct {
    const char *stream;
    size_t stream_len;
    const char *type;
    size_t type_len;
    const uint8_t *payload;
    size_t payload_len;
    const uint8_t *meta;
    size_t meta_len;
    int check_meta;
    uint32_t schema;
    uint64_t version;
} xevent;

typedef struct {
    rel_hash h;
    uint8_t check_meta;
} ledger_entry;

typedef struct {
    /* the model of the store */
    uint64_t next;
    rel_map streams;  /* rel_stream (last_version) */
    rel_map accounts; /* rel_account */
    /* every event known to be in the store, by position */
    ledger_entry *ledger;
    size_t ledger_cap;
    /* this round's events (positions round_base..next-1), exact */
    uint64_t round_base;
    xevent *rx;
    size_t rx_cap;
    /* memory to free at the end of the round */
    void **arena;
    size_t arena_len, arena_cap;
} model_t;

static void *arena_keep(model_t *m, void *p)
{
    if (m->arena_len == m->arena_cap) {
        m->arena_cap = m->arena_cap ? m->arena_cap * 2 : 64;
        m->arena = (void **)realloc(m->arena, m->arena_cap * sizeof(void *));
        if (m->arena == NULL)
            exit(2);
    }
    m->arena[m->arena_len++] = p;
    return p;
}

static void arena_free(model_t *m)
{
    size_t i;
    for (i = 0; i < m->arena_len; i++)
        free(m->arena[i]);
    m->arena_len = 0;
}

static void model_init(model_t *m)
{
    memset(m, 0, sizeof *m);
    rel_map_init(&m->streams, sizeof(rel_stream));
    rel_map_init(&m->accounts, sizeof(rel_account));
}

static void model_free(model_t *m)
{
    rel_map_free(&m->streams);
    rel_map_free(&m->accounts);
    free(m->ledger);
    free(m->rx);
    arena_free(m);
    free(m->arena);
    memset(m, 0, sizeof *m);
}

static rel_hash xevent_hash(const xevent *x)
{
    rel_hash h = rel_hash_new();
    uint64_t v = x->version;
    uint32_t sc = x->schema;
    rel_hash_add(&h, x->stream, x->stream_len);
    rel_hash_add(&h, x->type, x->type_len);
    rel_hash_add(&h, x->payload, x->payload_len);
    if (x->check_meta)
        rel_hash_add(&h, x->meta, x->meta_len);
    rel_hash_add(&h, &v, sizeof v);
    rel_hash_add(&h, &sc, sizeof sc);
    return h;
}

static rel_hash event_hash(const evs_event *e, int check_meta)
{
    xevent x;
    x.stream = e->stream;
    x.stream_len = e->stream_len;
    x.type = e->event_type;
    x.type_len = e->event_type_len;
    x.payload = e->payload;
    x.payload_len = e->payload_len;
    x.meta = e->metadata;
    x.meta_len = e->metadata_len;
    x.check_meta = check_meta;
    x.schema = e->schema_version;
    x.version = e->stream_version;
    return xevent_hash(&x);
}

/* Adds an event at position m->next. */
static void model_push(model_t *m, const xevent *x)
{
    uint64_t p = m->next;
    size_t ri;
    if (p >= m->ledger_cap) {
        m->ledger_cap = m->ledger_cap ? m->ledger_cap * 2 : 4096;
        m->ledger = (ledger_entry *)realloc(m->ledger, m->ledger_cap * sizeof(ledger_entry));
        if (m->ledger == NULL)
            exit(2);
    }
    m->ledger[p].h = xevent_hash(x);
    m->ledger[p].check_meta = (uint8_t)x->check_meta;
    ri = (size_t)(p - m->round_base);
    if (ri >= m->rx_cap) {
        m->rx_cap = m->rx_cap ? m->rx_cap * 2 : 1024;
        m->rx = (xevent *)realloc(m->rx, m->rx_cap * sizeof(xevent));
        if (m->rx == NULL)
            exit(2);
    }
    m->rx[ri] = *x;
    m->next++;
    if (x->stream_len > 0) {
        int fresh = rel_map_get(&m->streams, x->stream, x->stream_len) == NULL;
        rel_stream *s = (rel_stream *)rel_map_put(&m->streams, x->stream, x->stream_len);
        if (fresh)
            s->last_version = -1;
        s->last_version = (int64_t)x->version;
        s->events++;
    }
}

/* A decoded operation. */
typedef struct {
    int op;
    const char *a; /* stream, account id, or transfer source (NUL-terminated copies) */
    const char *b; /* transfer target */
    int64_t num;   /* expected version or amount */
    uint32_t n;
    xevent ev[8]; /* OP_EVENT / OP_BATCH: the events as given (stream, version unset) */
} op_t;

static char *dup_n(model_t *m, const uint8_t *p, size_t n)
{
    char *s = (char *)arena_keep(m, rel_xmalloc(n + 1));
    if (n)
        memcpy(s, p, n);
    s[n] = '\0';
    return s;
}

static int decode_intent(model_t *m, rd_t *r, op_t *op)
{
    size_t n;
    const uint8_t *p;
    uint32_t i;
    memset(op, 0, sizeof *op);
    op->op = get_u8(r);
    switch (op->op) {
    case OP_EVENT:
        op->n = 1;
        p = get_bytes(r, &n);
        op->ev[0].type = dup_n(m, p, n);
        op->ev[0].type_len = n;
        op->ev[0].payload = get_bytes(r, &op->ev[0].payload_len);
        op->ev[0].schema = 1;
        op->ev[0].check_meta = 1;
        break;
    case OP_BATCH:
        p = get_bytes(r, &n);
        op->a = dup_n(m, p, n);
        op->num = get_i64(r);
        op->n = get_u32(r);
        if (op->n < 1 || op->n > 8)
            return 0;
        for (i = 0; i < op->n; i++) {
            p = get_bytes(r, &n);
            op->ev[i].type = dup_n(m, p, n);
            op->ev[i].type_len = n;
            op->ev[i].payload = get_bytes(r, &op->ev[i].payload_len);
            op->ev[i].meta = get_bytes(r, &op->ev[i].meta_len);
            op->ev[i].schema = get_u32(r);
            if (op->ev[i].schema == 0)
                op->ev[i].schema = 1;
            op->ev[i].check_meta = 1;
        }
        break;
    case OP_ACC_OPEN:
    case OP_DEPOSIT:
    case OP_WITHDRAW:
        p = get_bytes(r, &n);
        op->a = dup_n(m, p, n);
        op->num = get_i64(r);
        break;
    case OP_TRANSFER:
        p = get_bytes(r, &n);
        op->a = dup_n(m, p, n);
        p = get_bytes(r, &n);
        op->b = dup_n(m, p, n);
        op->num = get_i64(r);
        break;
    case OP_CLOSE:
        p = get_bytes(r, &n);
        op->a = dup_n(m, p, n);
        break;
    case OP_SNAPSHOT:
        break;
    default:
        return 0;
    }
    return !r->bad;
}

/* An account event as the library writes it. */
static void account_xevent(model_t *m, xevent *x, int kind, const char *id, int64_t amount)
{
    char buf[512];
    char *stream = (char *)arena_keep(m, rel_xmalloc(strlen(id) + 16));
    rel_stream *sm;
    sprintf(stream, "account-%s", id);
    switch (kind) {
    case REL_OPENED:
        snprintf(buf, sizeof buf,
                 "{\"AccountOpened\":{\"account_id\":\"%s\",\"initial_balance\":%" PRId64
                 ",\"currency\":\"USD\"}}",
                 id, amount);
        x->type = "AccountOpened";
        x->schema = 2;
        break;
    case REL_DEPOSITED:
        snprintf(buf, sizeof buf, "{\"MoneyDeposited\":{\"account_id\":\"%s\",\"amount\":%" PRId64
                                  "}}",
                 id, amount);
        x->type = "MoneyDeposited";
        x->schema = 1;
        break;
    case REL_WITHDRAWN:
        snprintf(buf, sizeof buf, "{\"MoneyWithdrawn\":{\"account_id\":\"%s\",\"amount\":%" PRId64
                                  "}}",
                 id, amount);
        x->type = "MoneyWithdrawn";
        x->schema = 1;
        break;
    default:
        snprintf(buf, sizeof buf, "{\"AccountClosed\":{\"account_id\":\"%s\"}}", id);
        x->type = "AccountClosed";
        x->schema = 1;
        break;
    }
    x->type_len = strlen(x->type);
    x->stream = stream;
    x->stream_len = strlen(stream);
    x->payload = (const uint8_t *)dup_n(m, (const uint8_t *)buf, strlen(buf));
    x->payload_len = strlen(buf);
    x->meta = NULL;
    x->meta_len = 0;
    x->check_meta = 0;
    sm = (rel_stream *)rel_map_get(&m->streams, stream, x->stream_len);
    x->version = sm ? (uint64_t)(sm->last_version + 1) : 0;
}

/* What the operation must do in the model's current state: the status, and on success
 * its events (with streams and versions) in out[]. Returns the number of events. */
static uint32_t plan(model_t *m, const op_t *op, evs_status *want, xevent out[8])
{
    rel_account *a, *b;
    uint32_t i;
    *want = EVS_OK;
    switch (op->op) {
    case OP_EVENT:
        out[0] = op->ev[0];
        out[0].stream = "";
        out[0].stream_len = 0;
        out[0].version = 0;
        return 1;
    case OP_BATCH: {
        rel_stream *s = (rel_stream *)rel_map_get(&m->streams, op->a, strlen(op->a));
        int64_t cur = s ? s->last_version : -1;
        int ok;
        if (op->num == EVS_EXPECT_ANY)
            ok = 1;
        else if (op->num == EVS_EXPECT_NO_STREAM)
            ok = cur < 0;
        else if (op->num == EVS_EXPECT_EXISTS)
            ok = cur >= 0;
        else
            ok = op->num == cur;
        if (!ok) {
            *want = EVS_ERR_WRONG_EXPECTED_VERSION;
            return 0;
        }
        for (i = 0; i < op->n; i++) {
            out[i] = op->ev[i];
            out[i].stream = op->a;
            out[i].stream_len = strlen(op->a);
            out[i].version = (uint64_t)(cur + 1 + (int64_t)i);
        }
        return op->n;
    }
    case OP_ACC_OPEN:
        a = (rel_account *)rel_map_get(&m->accounts, op->a, strlen(op->a));
        if (a && a->exists) {
            *want = EVS_ERR_ALREADY_EXISTS;
            return 0;
        }
        account_xevent(m, &out[0], REL_OPENED, op->a, op->num);
        return 1;
    case OP_DEPOSIT:
    case OP_WITHDRAW:
    case OP_CLOSE:
        a = (rel_account *)rel_map_get(&m->accounts, op->a, strlen(op->a));
        if (!a || !a->exists)
            *want = EVS_ERR_NOT_FOUND;
        else if (a->closed)
            *want = EVS_ERR_ACCOUNT_CLOSED;
        else if (op->op == OP_DEPOSIT && a->balance > INT64_MAX - op->num)
            *want = EVS_ERR_OVERFLOW;
        else if (op->op == OP_WITHDRAW && a->balance < op->num)
            *want = EVS_ERR_INSUFFICIENT_FUNDS;
        if (*want != EVS_OK)
            return 0;
        account_xevent(m, &out[0],
                       op->op == OP_DEPOSIT    ? REL_DEPOSITED
                       : op->op == OP_WITHDRAW ? REL_WITHDRAWN
                                               : REL_CLOSED,
                       op->a, op->num);
        return 1;
    case OP_TRANSFER:
        a = (rel_account *)rel_map_get(&m->accounts, op->a, strlen(op->a));
        b = (rel_account *)rel_map_get(&m->accounts, op->b, strlen(op->b));
        /* the library checks the source, then the target */
        if (!a || !a->exists)
            *want = EVS_ERR_NOT_FOUND;
        else if (a->closed)
            *want = EVS_ERR_ACCOUNT_CLOSED;
        else if (!b || !b->exists)
            *want = EVS_ERR_NOT_FOUND;
        else if (b->closed)
            *want = EVS_ERR_ACCOUNT_CLOSED;
        else if (a->balance < op->num)
            *want = EVS_ERR_INSUFFICIENT_FUNDS;
        else if (b->balance > INT64_MAX - op->num)
            *want = EVS_ERR_OVERFLOW;
        if (*want != EVS_OK)
            return 0;
        account_xevent(m, &out[0], REL_WITHDRAWN, op->a, op->num);
        account_xevent(m, &out[1], REL_DEPOSITED, op->b, op->num);
        out[0].check_meta = out[1].check_meta = 0;
        return 2;
    case OP_SNAPSHOT:
        return 0;
    }
    *want = EVS_ERR_INTERNAL;
    return 0;
}

/* Applies planned events to the model (ledger, streams, accounts). */
static void apply(model_t *m, const op_t *op, const xevent *ev, uint32_t n)
{
    uint32_t i;
    for (i = 0; i < n; i++)
        model_push(m, &ev[i]);
    switch (op->op) {
    case OP_ACC_OPEN: {
        rel_account *a = (rel_account *)rel_map_put(&m->accounts, op->a, strlen(op->a));
        a->exists = 1;
        a->balance = op->num;
        strcpy(a->currency, "USD");
        break;
    }
    case OP_DEPOSIT:
        ((rel_account *)rel_map_get(&m->accounts, op->a, strlen(op->a)))->balance += op->num;
        break;
    case OP_WITHDRAW:
        ((rel_account *)rel_map_get(&m->accounts, op->a, strlen(op->a)))->balance -= op->num;
        break;
    case OP_TRANSFER:
        ((rel_account *)rel_map_get(&m->accounts, op->a, strlen(op->a)))->balance -= op->num;
        ((rel_account *)rel_map_get(&m->accounts, op->b, strlen(op->b)))->balance += op->num;
        break;
    case OP_CLOSE:
        ((rel_account *)rel_map_get(&m->accounts, op->a, strlen(op->a)))->closed = 1;
        break;
    default:
        break;
    }
}

/* ---- figures ---- */

static unsigned long long f_survived, f_kills, f_kills_batch, f_acked_events, f_acked_ops, f_lost,
    f_torn, f_inflight_complete, f_inflight_absent, f_nacks, f_fresh, f_open_killed;

/* ---- the check of the reopened store against the model ---- */

typedef struct {
    model_t *m;
    unsigned long v_bytes, v_hash;
    /* events past the model's end (the operation in flight) */
    evs_event extra[8];
    uint8_t *extra_copy[8];
    uint32_t n_extra;
    unsigned long more_extra;
} verify_t;

static void copy_extra(verify_t *v, const evs_event *e)
{
    size_t total = e->stream_len + e->event_type_len + e->payload_len + e->metadata_len + 1;
    uint8_t *buf, *q;
    evs_event *x;
    if (v->n_extra >= 8) {
        v->more_extra++;
        return;
    }
    buf = (uint8_t *)rel_xmalloc(total);
    q = buf;
    x = &v->extra[v->n_extra];
    *x = *e;
    memcpy(q, e->stream, e->stream_len);
    x->stream = (const char *)q;
    q += e->stream_len;
    memcpy(q, e->event_type, e->event_type_len);
    x->event_type = (const char *)q;
    q += e->event_type_len;
    if (e->payload_len)
        memcpy(q, e->payload, e->payload_len);
    x->payload = q;
    q += e->payload_len;
    if (e->metadata_len)
        memcpy(q, e->metadata, e->metadata_len);
    x->metadata = q;
    v->extra_copy[v->n_extra++] = buf;
}

static int same_event(const evs_event *e, const xevent *x)
{
    return e->stream_len == x->stream_len && memcmp(e->stream, x->stream, x->stream_len) == 0 &&
           e->event_type_len == x->type_len &&
           memcmp(e->event_type, x->type, x->type_len) == 0 &&
           e->payload_len == x->payload_len &&
           (x->payload_len == 0 || memcmp(e->payload, x->payload, x->payload_len) == 0) &&
           (!x->check_meta ||
            (e->metadata_len == x->meta_len &&
             (x->meta_len == 0 || memcmp(e->metadata, x->meta, x->meta_len) == 0))) &&
           e->stream_version == x->version && e->schema_version == x->schema;
}

static void verify_event(void *ud, const evs_event *e)
{
    verify_t *v = (verify_t *)ud;
    model_t *m = v->m;
    if (e->position >= m->next) {
        copy_extra(v, e);
        return;
    }
    if (e->position >= m->round_base) {
        const xevent *x = &m->rx[e->position - m->round_base];
        if (!same_event(e, x))
            v->v_bytes += rel_violation(
                "position %" PRIu64 " is not the acknowledged event: read stream '%.*s' v%" PRIu64
                " type '%.*s' %zu payload bytes %zu metadata bytes schema %u; acknowledged "
                "stream '%.*s' v%" PRIu64 " type '%.*s' %zu payload bytes %zu metadata bytes "
                "schema %u",
                e->position, (int)e->stream_len, e->stream, e->stream_version,
                (int)e->event_type_len, e->event_type, e->payload_len, e->metadata_len,
                e->schema_version, (int)x->stream_len, x->stream, x->version, (int)x->type_len,
                x->type, x->payload_len, x->meta_len, x->schema);
    } else {
        const ledger_entry *l = &m->ledger[e->position];
        rel_hash h = event_hash(e, l->check_meta);
        if (h.a != l->h.a || h.b != l->h.b)
            v->v_hash += rel_violation("position %" PRIu64
                                       " (from an earlier round) changed: its bytes no longer "
                                       "hash to what was acknowledged",
                                       e->position);
    }
}

typedef struct {
    const char *dir;
    uint64_t segsize;
    int prealloc;
    uint64_t snap_every;
    size_t max_large;
} store_cfg;

static evs_store *open_for_check(const store_cfg *cfg, evs_recovery_info *info)
{
    evs_store *s = NULL;
    evs_options *o = evs_options_new();
    evs_status st;
    evs_options_set_fsync(o, EVS_FSYNC_ALWAYS, 5);
    evs_options_set_max_segment_size(o, cfg->segsize);
    evs_options_set_preallocate(o, cfg->prealloc != 0);
    st = evs_open(cfg->dir, o, &s, info);
    evs_options_free(o);
    if (!CHECK_OK(st)) {
        printf("  reopening %s failed: %s: %s\n", cfg->dir, tu_name(st), tu_msg());
        return NULL;
    }
    return s;
}

/* Compares the model's streams and accounts with what the store reports. */
static unsigned long compare_model(evs_store *s, model_t *m, const rel_state *st)
{
    unsigned long bad = 0;
    size_t i;
    for (i = 0; i < m->streams.cap; i++) {
        rel_entry *en = &m->streams.slots[i];
        int64_t v = -7;
        if (en->key == NULL)
            continue;
        evs_stream_version(s, en->key, &v);
        if (v != ((rel_stream *)en->val)->last_version)
            bad += rel_violation("stream '%s' is at version %" PRId64 "; acknowledged: %" PRId64,
                                 en->key, v, ((rel_stream *)en->val)->last_version);
    }
    for (i = 0; i < m->accounts.cap; i++) {
        rel_entry *en = &m->accounts.slots[i];
        rel_account *want = (rel_account *)en->val, *folded;
        evs_account got = EVS_STRUCT_INIT(evs_account);
        evs_status rc;
        if (en->key == NULL || !want->exists)
            continue;
        rc = evs_account_get(s, en->key, &got);
        folded = (rel_account *)rel_map_get(&st->accounts, en->key, en->len);
        if (rc != EVS_OK || got.balance != want->balance || (int)got.is_closed != want->closed)
            bad += rel_violation("account '%s': evs_account_get gives %s balance %" PRId64
                                 " closed %d; the acknowledged operations give %" PRId64
                                 " closed %d",
                                 en->key, tu_name(rc), got.balance, (int)got.is_closed,
                                 want->balance, want->closed);
        if (folded == NULL || folded->balance != want->balance)
            bad += rel_violation("account '%s': the replay of its events gives %" PRId64
                                 "; the acknowledged operations give %" PRId64,
                                 en->key, folded ? folded->balance : -1, want->balance);
    }
    return bad;
}

/* ---- one round ---- */

static char g_self[4096];

static pid_t spawn_child(const store_cfg *cfg, uint64_t seed, int policy, int *rfd)
{
    int fds[2];
    pid_t pid;
    char a_seed[32], a_fd[16], a_pol[16], a_seg[32], a_pre[8], a_snap[32], a_large[32];
    if (pipe(fds) != 0) {
        perror("pipe");
        exit(2);
    }
    fcntl(fds[0], F_SETFD, FD_CLOEXEC);
    snprintf(a_seed, sizeof a_seed, "%" PRIu64, seed);
    snprintf(a_fd, sizeof a_fd, "%d", fds[1]);
    snprintf(a_pol, sizeof a_pol, "%d", policy);
    snprintf(a_seg, sizeof a_seg, "%" PRIu64, cfg->segsize);
    snprintf(a_pre, sizeof a_pre, "%d", cfg->prealloc);
    snprintf(a_snap, sizeof a_snap, "%" PRIu64, cfg->snap_every);
    snprintf(a_large, sizeof a_large, "%zu", cfg->max_large);
    fflush(stdout);
    pid = fork();
    if (pid < 0) {
        perror("fork");
        exit(2);
    }
    if (pid == 0) {
        char *args[11];
        args[0] = g_self;
        args[1] = (char *)"--child";
        args[2] = (char *)cfg->dir;
        args[3] = a_seed;
        args[4] = a_fd;
        args[5] = a_pol;
        args[6] = a_seg;
        args[7] = a_pre;
        args[8] = a_snap;
        args[9] = a_large;
        args[10] = NULL;
        execv(g_self, args);
        _exit(127);
    }
    close(fds[1]);
    *rfd = fds[0];
    return pid;
}

/* Reads from fd into b until the deadline (ms from now), then kills pid and reads to EOF. */
static void run_and_kill(pid_t pid, int fd, long delay_ms, buf_t *b, int *status)
{
    uint64_t deadline = tu_now_us() + (uint64_t)delay_ms * 1000u;
    uint8_t chunk[65536];
    int killed = 0;
    fcntl(fd, F_SETFL, O_NONBLOCK);
    for (;;) {
        struct pollfd pfd;
        uint64_t now = tu_now_us();
        int to;
        ssize_t n;
        if (!killed && now >= deadline) {
            kill(pid, SIGKILL);
            killed = 1;
        }
        to = killed ? 1000 : (int)((deadline - now) / 1000u) + 1;
        pfd.fd = fd;
        pfd.events = POLLIN;
        pfd.revents = 0;
        if (poll(&pfd, 1, to) < 0 && errno != EINTR)
            break;
        n = read(fd, chunk, sizeof chunk);
        if (n > 0) {
            buf_put(b, chunk, (size_t)n);
            continue;
        }
        if (n == 0)
            break; /* EOF: the child is gone */
        if (errno != EAGAIN && errno != EINTR)
            break;
    }
    if (!killed)
        kill(pid, SIGKILL);
    close(fd);
    waitpid(pid, status, 0);
}

static void round_once(const store_cfg *cfg, model_t *m, uint64_t seed, int policy, long delay,
                       int round)
{
    buf_t msgs = {NULL, 0, 0};
    int status = 0, rfd;
    pid_t pid;
    size_t at = 0;
    op_t inflight, cur;
    int have_inflight = 0, opened = 0;
    unsigned long v_proto = 0, v_result = 0, v_lost = 0, v_partial = 0, v_model = 0;
    evs_store *s;
    evs_recovery_info info = EVS_STRUCT_INIT(evs_recovery_info);
    rel_state st;
    verify_t v;
    char label[64];
    uint32_t i;

    unsigned long failures_before = tu_failures();

    m->round_base = m->next;
    pid = spawn_child(cfg, seed, policy, &rfd);
    run_and_kill(pid, rfd, delay, &msgs, &status);
    f_kills++;
    if (policy == EVS_FSYNC_BATCH)
        f_kills_batch++;
    snprintf(label, sizeof label, "round %d (seed %" PRIu64 ")", round, seed);
    if (!(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL)) {
        rel_violation("%s: the child did not die of our SIGKILL (status 0x%x: %s %d)", label,
                      status, WIFSIGNALED(status) ? "signal" : "exit",
                      WIFSIGNALED(status) ? WTERMSIG(status) : WEXITSTATUS(status));
        v_proto++;
    }

    /* Replay the messages against the model. */
    while (msgs.len - at >= 5) {
        uint32_t len;
        rd_t r;
        uint8_t type;
        memcpy(&len, msgs.p + at, 4);
        if (msgs.len - at - 4 < len)
            break; /* cut by the kill */
        r.p = msgs.p + at + 4;
        r.len = len;
        r.at = 0;
        r.bad = 0;
        at += 4 + len;
        type = get_u8(&r);
        if (type == M_OPENED) {
            uint64_t next = get_u64(&r);
            opened = 1;
            if (next != m->next)
                v_result += rel_violation("%s: the child's evs_open found %" PRIu64
                                          " events; %" PRIu64 " were acknowledged",
                                          label, next, m->next);
        } else if (type == M_OPEN_FAILED) {
            size_t n;
            evs_status st2 = (evs_status)get_u32(&r);
            const uint8_t *msg = get_bytes(&r, &n);
            v_result += rel_violation("%s: the child's evs_open failed: %s: %.*s", label,
                                      tu_name(st2), (int)n, msg ? (const char *)msg : "");
        } else if (type == M_INTENT) {
            if (!decode_intent(m, &r, &cur)) {
                v_proto += rel_violation("%s: undecodable intent", label);
                break;
            }
            inflight = cur;
            have_inflight = 1;
        } else if (type == M_RESULT) {
            evs_status got = (evs_status)get_u32(&r), want;
            uint64_t pos = get_u64(&r), ver = get_u64(&r);
            size_t mlen;
            const uint8_t *msg = get_bytes(&r, &mlen);
            xevent ev[8];
            uint32_t n;
            if (!have_inflight) {
                v_proto += rel_violation("%s: a result without an intent", label);
                break;
            }
            n = plan(m, &inflight, &want, ev);
            f_acked_ops++;
            if (got != want) {
                v_result += rel_violation("%s: %s %s%s%s (%" PRId64 ") returned %s (%.*s); "
                                          "the model says %s",
                                          label, op_name(inflight.op),
                                          inflight.a ? inflight.a : "",
                                          inflight.b ? " -> " : "",
                                          inflight.b ? inflight.b : "", inflight.num,
                                          tu_name(got), (int)mlen,
                                          msg ? (const char *)msg : "", tu_name(want));
            } else if (got < 0 && mlen == 0) {
                v_result += rel_violation("%s: %s failed with %s and an empty message", label,
                                          op_name(inflight.op), tu_name(got));
            }
            if (got == EVS_OK && want == EVS_OK) {
                if (n > 0 && pos != m->next)
                    v_result += rel_violation("%s: %s returned position %" PRIu64
                                              "; the next position was %" PRIu64,
                                              label, op_name(inflight.op), pos, m->next);
                if (inflight.op == OP_SNAPSHOT && pos != m->next)
                    v_result += rel_violation("%s: evs_snapshot covers %" PRIu64
                                              " events; %" PRIu64 " were acknowledged",
                                              label, pos, m->next);
                if (inflight.op == OP_BATCH && ver != ev[n - 1].version)
                    v_result += rel_violation("%s: append returned stream version %" PRIu64
                                              "; expected %" PRIu64,
                                              label, ver, ev[n - 1].version);
                apply(m, &inflight, ev, n);
                f_acked_events += n;
            } else if (got < 0) {
                f_nacks++;
            }
            have_inflight = 0;
        } else {
            v_proto += rel_violation("%s: unknown message type %d", label, type);
            break;
        }
    }
    if (!opened)
        f_open_killed++;

    /* Reopen and compare. */
    memset(&info, 0, sizeof info);
    info.struct_size = sizeof info;
    s = open_for_check(cfg, &info);
    if (s == NULL) {
        tu_check(0, "the store reopens after the kill", __FILE__, __LINE__);
        free(msgs.p);
        arena_free(m);
        return;
    }
    if (info.corruption_detected)
        f_torn++;
    memset(&v, 0, sizeof v);
    v.m = m;
    rel_state_init(&st);
    rel_check_store(s, &st, verify_event, &v, label);
    if (st.events < m->next) {
        v_lost += rel_violation("%s: %" PRIu64 " acknowledged events are missing: the log "
                                "has %" PRIu64 ", %" PRIu64 " were acknowledged",
                                label, m->next - st.events, st.events, m->next);
        f_lost += m->next - st.events;
    } else if (st.events > m->next) {
        xevent ev[8];
        evs_status want;
        uint32_t n = have_inflight ? plan(m, &inflight, &want, ev) : 0;
        uint64_t extra = st.events - m->next;
        if (!have_inflight || want != EVS_OK || extra != n || v.more_extra) {
            v_partial += rel_violation(
                "%s: %" PRIu64 " events past the acknowledged ones; the operation in flight "
                "(%s) would have added %u: a partial batch or phantom events",
                label, extra, have_inflight ? op_name(inflight.op) : "none", n);
        } else {
            for (i = 0; i < n; i++)
                if (!same_event(&v.extra[i], &ev[i]))
                    v_partial += rel_violation("%s: event %u of the %s in flight is not what "
                                               "was asked",
                                               label, i, op_name(inflight.op));
            apply(m, &inflight, ev, n);
            f_inflight_complete++;
        }
    } else if (have_inflight) {
        f_inflight_absent++;
    }
    if (info.next_position != st.events)
        v_lost += rel_violation("%s: evs_recovery_info.next_position %" PRIu64
                                " but %" PRIu64 " events were read",
                                label, info.next_position, st.events);
    v_model = compare_model(s, m, &st);
    for (i = 0; i < v.n_extra; i++)
        free(v.extra_copy[i]);

    tu_check(v_proto == 0, "the child died of SIGKILL and spoke the protocol", __FILE__,
             __LINE__);
    tu_check(v_result == 0, "every acknowledged result is the one the model predicts",
             __FILE__, __LINE__);
    tu_check(v.v_bytes == 0, "every event acknowledged this round is there with its exact bytes",
             __FILE__, __LINE__);
    tu_check(v.v_hash == 0, "every event of earlier rounds is unchanged", __FILE__, __LINE__);
    tu_check(v_lost == 0, "no acknowledged event is lost", __FILE__, __LINE__);
    tu_check(v_partial == 0, "the operation in flight is all there or not at all", __FILE__,
             __LINE__);
    tu_check(v_model == 0, "stream versions and balances equal the acknowledged operations",
             __FILE__, __LINE__);

    /* Every fifth round: a second reopen must find the same log and nothing to repair. */
    if (round % 5 == 0) {
        evs_recovery_info info2 = EVS_STRUCT_INIT(evs_recovery_info);
        CHECK_OK(evs_close(s));
        s = open_for_check(cfg, &info2);
        if (s != NULL) {
            CHECK_U64(info2.next_position, st.events);
            CHECK(!info2.corruption_detected);
        }
    }
    if (s != NULL)
        CHECK_OK(evs_close(s));
    rel_state_free(&st);
    free(msgs.p);
    arena_free(m);
    m->round_base = m->next; /* rx entries refer to freed memory from here on */
    if (tu_failures() == failures_before)
        f_survived++;
    if (tu_failures() > 0 && getenv("EVS_CRASH_STOP_ON_FAILURE") != NULL)
        exit(1);
}

int main(int argc, char **argv)
{
    long kills = 20, r;
    uint64_t seed, rng;
    char root[1024], dir[1200];
    model_t m;
    store_cfg cfg;
    int gen = 0;
    uint64_t t0 = tu_now_us();

    if (argc >= 2 && strcmp(argv[1], "--child") == 0)
        return child_main(argc, argv);
    signal(SIGPIPE, SIG_IGN);
    if (argc >= 2)
        kills = atol(argv[1]);
    seed = argc >= 3 ? strtoull(argv[2], NULL, 10) : (tu_now_us() ^ (uint64_t)getpid());
    rng = seed | 1;
    {
        ssize_t n = readlink("/proc/self/exe", g_self, sizeof g_self - 1);
        if (n <= 0) {
            printf("cannot find /proc/self/exe\n");
            return 2;
        }
        g_self[n] = '\0';
    }
    printf("crash: %ld kills, seed %" PRIu64 " (rerun: crash %ld %" PRIu64 ")\n", kills, seed,
           kills, seed);
    if (!tu_make_temp_dir(root, sizeof root))
        return tu_finish();
    model_init(&m);
    memset(&cfg, 0, sizeof cfg);
    for (r = 0; r < kills; r++) {
        uint64_t x = tu_rand(&rng);
        long delay;
        int policy = (r % 5 == 4) ? EVS_FSYNC_BATCH : EVS_FSYNC_ALWAYS;
        if (r == 0 || x % 15 == 0 || m.next > 150000) {
            static const uint64_t sizes[] = {64 << 10, 256 << 10, 1 << 20, 128 << 20};
            int k = (int)(tu_rand(&rng) % 4);
            if (r > 0)
                tu_remove_tree(dir);
            snprintf(dir, sizeof dir, "%s/store-%d", root, gen++);
            model_free(&m);
            model_init(&m);
            cfg.dir = dir;
            cfg.segsize = sizes[k];
            cfg.prealloc = (int)(tu_rand(&rng) % 2);
            cfg.snap_every = tu_rand(&rng) % 3 == 0 ? 40 + tu_rand(&rng) % 200 : 0;
            cfg.max_large = cfg.segsize <= (64 << 10) ? 8 << 10
                            : cfg.segsize <= (1 << 20) ? 100 << 10
                                                       : 600 << 10;
            f_fresh++;
            printf("round %ld: fresh store %s (segments of %" PRIu64 " bytes, preallocate %d, "
                   "snapshot every %" PRIu64 ")\n",
                   r, dir, cfg.segsize, cfg.prealloc, cfg.snap_every);
        }
        x = tu_rand(&rng) % 100;
        if (x < 10)
            delay = (long)(tu_rand(&rng) % 20);
        else if (x < 50)
            delay = 20 + (long)(tu_rand(&rng) % 130);
        else if (x < 92)
            delay = 150 + (long)(tu_rand(&rng) % 250);
        else
            delay = 400 + (long)(tu_rand(&rng) % 600);
        round_once(&cfg, &m, tu_rand(&rng), policy, delay, (int)r);
        if ((r + 1) % 50 == 0)
            printf("  %ld kills, %llu events acknowledged, %llu lost so far\n", r + 1,
                   f_acked_events, f_lost);
    }
    model_free(&m);
    tu_cleanup_dir(root);
    printf("crash: %llu kills (%llu under EVS_FSYNC_BATCH, %llu before the child's open "
           "finished), %llu fresh stores, %llu operations acknowledged (%llu refused as the "
           "model predicted or not), %llu events acknowledged, %llu lost, %llu recoveries "
           "truncated a torn tail, in-flight operation found complete %llu times and absent "
           "%llu times, %.1f s\n",
           f_kills, f_kills_batch, f_open_killed, f_fresh, f_acked_ops, f_nacks, f_acked_events,
           f_lost, f_torn, f_inflight_complete, f_inflight_absent,
           (double)(tu_now_us() - t0) / 1e6);
    rel_figure("kills", f_kills);
    rel_figure("kills_batch", f_kills_batch);
    rel_figure("kills_survived", f_survived);
    rel_figure("crash_events_acknowledged", f_acked_events);
    rel_figure("crash_events_lost", f_lost);
    rel_figure("crash_torn_tails", f_torn);
    return tu_finish();
}
