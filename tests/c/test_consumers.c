/*
 * test_consumers.c: durable consumers through the C API (docs/consumers.md): the pull
 * form (next, ack, the checkpoint interval, resuming after a reopen), the callback form
 * (evs_subscribe_durable: a retry, a park and the atomic step from inside the callback,
 * a stop that says why), the atomic append and checkpoint (both stored or neither),
 * retry, park and replay, the operations (list, reset to a position and to a time,
 * delete, parked events), a read-only handle's consumers, and each status code a
 * consumer call can return that a C program can bring about: bad arguments, a consumer
 * open twice, a store closed under a consumer, a regular file where the consumers'
 * folder goes (EVS_ERR_IO), a damaged journal and a damaged segment (EVS_ERR_CORRUPT),
 * atomic steps refused as appends are (EVS_ERR_WRONG_EXPECTED_VERSION,
 * EVS_ERR_ALREADY_EXISTS: neither the events nor the checkpoint stored), and the
 * per-consumer series of evs_metrics_text. Not brought about from C: EVS_ERR_IO from a
 * write failing mid-run (ack, checkpoint, park, close), which needs a fault layer.
 * Consumer groups (opts.partitions): refused on files; on PostgreSQL two members (two
 * handles) share the log, each event given once, the wrong count or none refused.
 * On PostgreSQL (EVS_TEST_PG_URL, tests/c/run_pg.sh) the same, but for what only the
 * file engine has (a read-only handle's journals, the consumers' folder, segments).
 */
#include "test_util.h"

#define SENTINEL UINT64_C(0xDEADBEEFCAFEF00D)
#define BAD_UTF8 "\xff\xfe"

static char g_root[1024];

/* Appends one event of type `type`; returns its position (SENTINEL on failure, checked). */
static uint64_t append1(evs_store *s, const char *stream, const char *type, const char *payload)
{
    evs_event_input in = EVS_STRUCT_INIT(evs_event_input);
    uint64_t p = SENTINEL;
    in.event_type = type;
    in.payload = (const uint8_t *)payload;
    in.payload_len = strlen(payload);
    CHECK_OK(evs_append(s, stream, EVS_EXPECT_ANY, &in, 1, &p, NULL));
    return p;
}

static uint64_t head_of(evs_store *s)
{
    uint64_t p = SENTINEL;
    CHECK_OK(evs_position_at(s, UINT64_MAX, &p));
    return p;
}

static evs_store *open_at(const char *path, int read_only)
{
    evs_store *s = NULL;
    evs_options *o = evs_options_new();
    CHECK(o != NULL);
    CHECK_OK(evs_options_set_read_only(o, read_only != 0));
    CHECK_OK(evs_open(path, o, &s, NULL));
    evs_options_free(o);
    return s;
}

/* The consumer `name` as listed; 0 if it is not listed. */
static int info_of(evs_store *s, const char *name, evs_consumer_info *out)
{
    evs_consumer_list *l = NULL;
    size_t i, n;
    int found = 0;
    if (!CHECK_OK(evs_list_consumers(s, &l)))
        return 0;
    n = evs_consumer_list_count(l);
    for (i = 0; i < n; i++) {
        evs_consumer_info info = EVS_STRUCT_INIT(evs_consumer_info);
        CHECK_OK(evs_consumer_list_get(l, i, &info));
        if (info.name != NULL && strcmp(info.name, name) == 0) {
            *out = info;
            out->name = NULL; /* owned by the list, freed below */
            found = 1;
        }
    }
    evs_consumer_list_free(l);
    return found;
}

/* The positions (and reasons, copied into reasons[i], cap 64 bytes) of the parked events
 * of `name`; -1 when the list cannot be had. */
static long parked_of(evs_store *s, const char *name, uint64_t *pos, char (*reasons)[64], size_t cap)
{
    evs_parked_list *l = NULL;
    size_t i, n;
    if (!CHECK_OK(evs_list_parked(s, name, &l)))
        return -1;
    n = evs_parked_list_count(l);
    for (i = 0; i < n && i < cap; i++) {
        evs_parked_event p = EVS_STRUCT_INIT(evs_parked_event);
        CHECK_OK(evs_parked_list_get(l, i, &p));
        pos[i] = p.position;
        CHECK(p.parked_at_us > 0);
        snprintf(reasons[i], 64, "%s", p.reason ? p.reason : "(NULL)");
    }
    evs_parked_list_free(l);
    return (long)n;
}

/* The next event's position (SENTINEL when none came within `ms`). */
static uint64_t next_pos(evs_consumer *c, int32_t ms)
{
    evs_event e = EVS_STRUCT_INIT(evs_event);
    evs_status st = evs_consumer_next(c, &e, ms);
    if (st == EVS_END)
        return SENTINEL;
    CHECK_OK(st);
    return st == EVS_OK ? e.position : SENTINEL;
}

/* ---- the pull form ---- */

static void pull_form(const char *path, evs_store *s)
{
    uint64_t a[6], next = SENTINEL, stored = SENTINEL;
    evs_consumer *c = NULL;
    evs_consumer_options o = EVS_STRUCT_INIT(evs_consumer_options);
    const char *types[] = {"Deposited"};
    evs_event e = EVS_STRUCT_INIT(evs_event);
    int i;
    TU_SECTION("the pull form");
    for (i = 0; i < 6; i++)
        a[i] = append1(s, i % 2 ? "acct-2" : "acct-1", i == 4 ? "Withdrawn" : "Deposited", "10");
    append1(s, "other", "Deposited", "x");
    o.stream_prefix = "acct-";
    o.types = types;
    o.types_count = 1;
    o.checkpoint_every = 2;
    o.checkpoint_interval_ms = 60000;
    CHECK_OK(evs_consumer_open(s, "pull", &o, &c));
    if (c == NULL)
        return;
    /* the view: the event's fields */
    CHECK_OK(evs_consumer_next(c, &e, 0));
    CHECK_U64(e.position, a[0]);
    CHECK_VIEW(e.stream, e.stream_len, "acct-1");
    CHECK_VIEW(e.event_type, e.event_type_len, "Deposited");
    CHECK_VIEW((const char *)e.payload, e.payload_len, "10");
    CHECK_OK(evs_consumer_ack(c, a[0]));
    CHECK_OK(evs_consumer_position(c, &next, &stored));
    CHECK_U64(next, a[0] + 1);
    /* one acknowledgement of two: the checkpoint has not moved */
    CHECK(stored <= a[0]);
    CHECK_U64(next_pos(c, 0), a[1]);
    CHECK_OK(evs_consumer_ack(c, a[1]));
    /* the second: a checkpoint (checkpoint_every = 2) */
    CHECK_OK(evs_consumer_position(c, &next, NULL));
    CHECK_OK(evs_consumer_position(c, &next, &stored));
    CHECK_U64(stored, a[1] + 1);
    CHECK_U64(next_pos(c, 0), a[2]);
    CHECK_U64(next_pos(c, 0), a[3]);
    /* the filter passes over a[4] (Withdrawn) and "other" */
    CHECK_U64(next_pos(c, 0), a[5]);
    CHECK_U64(next_pos(c, 0), SENTINEL);
    CHECK_STATUS(evs_consumer_next(c, &e, 20), EVS_END);
    /* an acknowledgement of a[3] acknowledges a[2]; never back */
    CHECK_OK(evs_consumer_ack(c, a[3]));
    CHECK_OK(evs_consumer_ack(c, a[2]));
    CHECK_OK(evs_consumer_position(c, &next, NULL));
    CHECK_U64(next, a[3] + 1);
    CHECK_STATUS(evs_consumer_ack(c, a[5] + 1000), EVS_ERR_INVALID_ARGUMENT);
    CHECK(strstr(evs_last_error_message(), "deliver") != NULL);
    CHECK_OK(evs_consumer_checkpoint(c));
    CHECK_OK(evs_consumer_position(c, &next, &stored));
    CHECK_U64(stored, a[3] + 1);
    /* open twice: refused while it is open */
    {
        evs_consumer *twice = NULL;
        CHECK_STATUS(evs_consumer_open(s, "pull", &o, &twice), EVS_ERR_LOCKED);
        CHECK(twice == NULL);
    }
    CHECK_OK(evs_consumer_close(c));
    /* A new event arrives while a waiting next waits: it is given out. Then the store is
     * reopened: the consumer resumes after its checkpoint (a[5] was never acknowledged). */
    CHECK_OK(evs_close(s));
    s = open_at(path, 0);
    if (s == NULL)
        return;
    c = NULL;
    CHECK_OK(evs_consumer_open(s, "pull", &o, &c));
    if (c != NULL) {
        uint64_t late;
        CHECK_U64(next_pos(c, 0), a[5]);
        CHECK_OK(evs_consumer_ack(c, a[5]));
        CHECK_U64(next_pos(c, 0), SENTINEL);
        late = append1(s, "acct-3", "Deposited", "5");
        CHECK_U64(next_pos(c, -1), late);
        CHECK_OK(evs_consumer_close(c));
    }
    CHECK_OK(evs_close(s));
}

/* A checkpoint once checkpoint_interval_ms passed with acknowledgements unwritten (the
 * consumer looks at the time on its calls; here the next call after the wait). */
static void checkpoint_interval(evs_store *s)
{
    evs_consumer *c = NULL;
    evs_consumer_options o = EVS_STRUCT_INIT(evs_consumer_options);
    uint64_t p[2], next = SENTINEL, stored = SENTINEL;
    TU_SECTION("the checkpoint interval");
    p[0] = append1(s, "interval", "T", "x");
    p[1] = append1(s, "interval", "T", "y");
    o.stream_prefix = "interval";
    o.start_position = p[0];
    o.checkpoint_every = 1000;
    o.checkpoint_interval_ms = 20;
    CHECK_OK(evs_consumer_open(s, "interval", &o, &c));
    if (c == NULL)
        return;
    CHECK_U64(next_pos(c, 0), p[0]);
    CHECK_OK(evs_consumer_ack(c, p[0]));
    CHECK_OK(evs_consumer_position(c, &next, &stored));
    CHECK(stored <= p[0]);
    tu_sleep_ms(80);
    CHECK_U64(next_pos(c, 0), p[1]);
    CHECK_OK(evs_consumer_position(c, &next, &stored));
    CHECK_U64(stored, p[0] + 1);
    CHECK_OK(evs_consumer_close(c));
}

/* ---- the callback form ---- */

typedef struct {
    uint64_t seen[64];
    int n;
    uint64_t retry_at, park_at, effect_at, stop_at;
    int retried;
    evs_status close_own, park_rc, append_rc;
} cb_state;

static int32_t on_event(void *user, evs_consumer *c, const evs_event *e)
{
    cb_state *st = (cb_state *)user;
    if (st->n < 64)
        st->seen[st->n++] = e->position;
    if (e->position == st->retry_at && !st->retried) {
        st->retried = 1;
        return EVS_CONSUMER_RETRY;
    }
    if (e->position == st->park_at) {
        st->park_rc = evs_consumer_park(c, e->position, "no handler for it");
        st->close_own = evs_consumer_close(c);
        return EVS_CONSUMER_ACK;
    }
    if (e->position == st->effect_at) {
        evs_event_input in = EVS_STRUCT_INIT(evs_event_input);
        evs_stream_append a = EVS_STRUCT_INIT(evs_stream_append);
        in.event_type = "Effect";
        in.payload = (const uint8_t *)"from the callback";
        in.payload_len = strlen("from the callback");
        a.stream = "effects";
        a.expected_version = EVS_EXPECT_NO_STREAM;
        a.events = &in;
        a.count = 1;
        st->append_rc = evs_consumer_append(c, &a, 1, e->position, NULL, NULL);
        return EVS_CONSUMER_ACK;
    }
    if (e->position == st->stop_at)
        return 7;
    return EVS_CONSUMER_ACK;
}

static int32_t never_called(void *user, evs_consumer *c, const evs_event *e)
{
    (void)user, (void)c, (void)e;
    return 1;
}

static void callback_form(const char *path)
{
    evs_store *s = open_at(path, 0);
    evs_subscription *sub = NULL;
    evs_consumer_options o = EVS_STRUCT_INIT(evs_consumer_options);
    cb_state st;
    uint64_t p[6], pos[4];
    char reasons[4][64];
    evs_status how = EVS_ERR_INTERNAL;
    evs_consumer *c = NULL;
    int i, spins = 0;
    TU_SECTION("the callback form");
    if (s == NULL)
        return;
    for (i = 0; i < 6; i++)
        p[i] = append1(s, "cb-stream", "T", "x");
    memset(&st, 0, sizeof st);
    st.retry_at = p[1];
    st.park_at = p[2];
    st.effect_at = p[3];
    st.stop_at = p[5];
    st.close_own = st.park_rc = st.append_rc = EVS_ERR_INTERNAL;
    o.stream_prefix = "cb-";
    o.start_position = p[0];
    o.retry_backoff_ms = 1;
    o.retry_backoff_max_ms = 2;
    CHECK_STATUS(evs_subscribe_durable(s, "cb", &o, NULL, &st, &sub), EVS_ERR_INVALID_ARGUMENT);
    CHECK_STATUS(evs_subscribe_durable(s, "cb", &o, on_event, &st, NULL), EVS_ERR_INVALID_ARGUMENT);
    CHECK_STATUS(evs_subscribe_durable(s, "", &o, on_event, &st, &sub), EVS_ERR_INVALID_ARGUMENT);
    CHECK_OK(evs_subscribe_durable(s, "cb", &o, on_event, &st, &sub));
    if (sub == NULL) {
        evs_close(s);
        return;
    }
    /* the same name elsewhere while it runs: refused, with either form */
    CHECK_STATUS(evs_consumer_open(s, "cb", NULL, &c), EVS_ERR_LOCKED);
    {
        evs_subscription *again = NULL;
        CHECK_STATUS(evs_subscribe_durable(s, "cb", &o, never_called, NULL, &again), EVS_ERR_LOCKED);
    }
    while (evs_subscription_status(sub, &how) == EVS_OK && spins++ < 6000)
        tu_sleep_ms(5);
    CHECK_STATUS(evs_subscription_status(sub, &how), EVS_END);
    CHECK_STATUS(how, EVS_OK);
    CHECK_STR(evs_subscription_error_message(sub), "stopped by its callback, which returned 7");
    CHECK_OK(evs_subscription_close(sub));
    /* what it saw: p1 twice (the retry), then on, and p5 where it stopped */
    CHECK_I64(st.n, 7);
    if (st.n == 7) {
        CHECK_U64(st.seen[0], p[0]);
        CHECK_U64(st.seen[1], p[1]);
        CHECK_U64(st.seen[2], p[1]);
        CHECK_U64(st.seen[3], p[2]);
        CHECK_U64(st.seen[4], p[3]);
        CHECK_U64(st.seen[5], p[4]);
        CHECK_U64(st.seen[6], p[5]);
    }
    CHECK_STATUS(st.park_rc, EVS_OK);
    CHECK_STATUS(st.close_own, EVS_ERR_INVALID_ARGUMENT);
    CHECK_STATUS(st.append_rc, EVS_OK);
    CHECK_I64(parked_of(s, "cb", pos, reasons, 4), 1);
    CHECK_U64(pos[0], p[2]);
    CHECK_STR(reasons[0], "no handler for it");
    /* the effect is in the log once */
    {
        int64_t v = -9;
        CHECK_OK(evs_stream_version(s, "effects", &v));
        CHECK_I64(v, 0);
    }
    /* the pull form resumes where the callback stopped: p5 (not acknowledged) */
    CHECK_OK(evs_consumer_open(s, "cb", &o, &c));
    if (c != NULL) {
        CHECK_U64(next_pos(c, 1000), p[5]);
        CHECK_OK(evs_consumer_close(c));
    }
    /* a store closed under a running durable subscription ends it with a reason */
    sub = NULL;
    memset(&st, 0, sizeof st);
    st.retry_at = st.park_at = st.effect_at = st.stop_at = SENTINEL;
    CHECK_OK(evs_subscribe_durable(s, "cb", &o, on_event, &st, &sub));
    CHECK_OK(evs_close(s));
    if (sub != NULL) {
        CHECK_STATUS(evs_subscription_status(sub, &how), EVS_END);
        CHECK_STATUS(how, EVS_OK);
        CHECK(strstr(evs_subscription_error_message(sub), "close") != NULL);
        CHECK_OK(evs_subscription_close(sub));
    }
}

/* ---- the atomic step ---- */

static void atomic_step(const char *path)
{
    evs_store *s = open_at(path, 0);
    evs_consumer *c = NULL;
    evs_consumer_options o = EVS_STRUCT_INIT(evs_consumer_options);
    evs_event_input in = EVS_STRUCT_INIT(evs_event_input);
    evs_stream_append ap[2];
    uint64_t src, src2, first = SENTINEL, versions[2] = {SENTINEL, SENTINEL}, next, stored, head;
    int64_t v = -9;
    TU_SECTION("the atomic append and checkpoint");
    if (s == NULL)
        return;
    src = append1(s, "dep-1", "Deposited", "7");
    src2 = append1(s, "dep-1", "Deposited", "8");
    o.stream_prefix = "dep-";
    o.start_position = src;
    o.checkpoint_every = 1000; /* only the atomic step and close write checkpoints */
    o.checkpoint_interval_ms = 600000;
    CHECK_OK(evs_consumer_open(s, "proj", &o, &c));
    if (c == NULL) {
        evs_close(s);
        return;
    }
    in.event_type = "TotalChanged";
    in.payload = (const uint8_t *)"7";
    in.payload_len = 1;
    ap[0] = (evs_stream_append)EVS_STRUCT_INIT(evs_stream_append);
    ap[0].stream = "totals-1";
    ap[0].expected_version = EVS_EXPECT_NO_STREAM;
    ap[0].events = &in;
    ap[0].count = 1;
    ap[1] = ap[0];
    ap[1].stream = "audit";
    ap[1].expected_version = EVS_EXPECT_ANY;
    CHECK_U64(next_pos(c, 0), src);
    /* not delivered yet: refused, nothing stored */
    head = head_of(s);
    CHECK_STATUS(evs_consumer_append(c, ap, 2, src2, &first, versions), EVS_ERR_INVALID_ARGUMENT);
    CHECK_U64(head_of(s), head);
    /* the append refused (wrong version): the checkpoint is not stored either */
    ap[0].expected_version = 5;
    CHECK_STATUS(evs_consumer_append(c, ap, 2, src, &first, versions), EVS_ERR_WRONG_EXPECTED_VERSION);
    CHECK_U64(first, SENTINEL);
    CHECK_U64(head_of(s), head);
    CHECK_OK(evs_consumer_position(c, &next, &stored));
    CHECK(stored <= src);
    CHECK_OK(evs_stream_version(s, "totals-1", &v));
    CHECK_I64(v, -1);
    /* bad appends as evs_append_multi has them */
    CHECK_STATUS(evs_consumer_append(c, NULL, 1, src, NULL, NULL), EVS_ERR_INVALID_ARGUMENT);
    CHECK_STATUS(evs_consumer_append(c, ap, 0, src, NULL, NULL), EVS_ERR_INVALID_ARGUMENT);
    ap[0].expected_version = EVS_EXPECT_NO_STREAM;
    ap[1].stream = BAD_UTF8;
    CHECK_STATUS(evs_consumer_append(c, ap, 2, src, NULL, NULL), EVS_ERR_INVALID_ARGUMENT);
    ap[1].stream = "audit";
    CHECK_U64(head_of(s), head);
    /* an event id stored already with other content: EVS_ERR_ALREADY_EXISTS, nothing
     * stored, the checkpoint neither */
    {
        evs_event_input dup = in;
        uint64_t before_stored = SENTINEL;
        memset(dup.id, 0x7a, sizeof dup.id);
        dup.payload = (const uint8_t *)"other";
        dup.payload_len = 5;
        CHECK_OK(evs_append(s, "ids", EVS_EXPECT_ANY, &dup, 1, NULL, NULL));
        head = head_of(s);
        CHECK_OK(evs_consumer_position(c, &next, &before_stored));
        dup.payload = (const uint8_t *)"7";
        dup.payload_len = 1;
        ap[1].events = &dup;
        CHECK_STATUS(evs_consumer_append(c, ap, 2, src, NULL, NULL), EVS_ERR_ALREADY_EXISTS);
        ap[1].events = &in;
        CHECK_U64(head_of(s), head);
        CHECK_OK(evs_consumer_position(c, &next, &stored));
        CHECK_U64(stored, before_stored);
    }
    /* the step: both appended, the checkpoint stored after src */
    CHECK_OK(evs_consumer_append(c, ap, 2, src, &first, versions));
    CHECK_U64(first, head);
    CHECK_U64(versions[0], 0);
    CHECK_U64(versions[1], 0);
    CHECK_OK(evs_consumer_position(c, &next, &stored));
    CHECK_U64(stored, src + 1);
    CHECK_OK(evs_stream_version(s, "totals-1", &v));
    CHECK_I64(v, 0);
    /* src2 acknowledged, not yet checkpointed; the store is closed under the consumer,
     * whose close then says its last checkpoint could not be written: src is not given
     * again (the atomic step stored its checkpoint), src2 is. */
    CHECK_U64(next_pos(c, 0), src2);
    CHECK_OK(evs_consumer_ack(c, src2));
    CHECK_OK(evs_close(s));
    CHECK_STATUS(evs_consumer_close(c), EVS_ERR_INVALID_ARGUMENT);
    s = open_at(path, 0);
    if (s == NULL)
        return;
    c = NULL;
    CHECK_OK(evs_consumer_open(s, "proj", &o, &c));
    if (c != NULL) {
        CHECK_U64(next_pos(c, 0), src2);
        CHECK_OK(evs_consumer_close(c));
    }
    CHECK_OK(evs_close(s));
}

/* ---- retry, park, replay ---- */

static void retry_park_replay(evs_store *s)
{
    evs_consumer *c = NULL;
    evs_consumer_options o = EVS_STRUCT_INIT(evs_consumer_options);
    uint64_t p[5], pos[4], n = SENTINEL;
    char reasons[4][64];
    bool parked = true;
    int i;
    TU_SECTION("retry, park and replay");
    for (i = 0; i < 5; i++)
        p[i] = append1(s, "rp", "T", "x");
    o.stream_prefix = "rp";
    o.start_position = p[0];
    o.max_retries = 2;
    o.retry_backoff_ms = 1;
    o.retry_backoff_max_ms = 1;
    CHECK_OK(evs_consumer_open(s, "rp", &o, &c));
    if (c == NULL)
        return;
    CHECK_U64(next_pos(c, 0), p[0]);
    /* p0 fails: it comes again after the backoff (a waiting next waits it out) */
    CHECK_OK(evs_consumer_retry(c, p[0], &parked));
    CHECK(!parked);
    CHECK_U64(next_pos(c, 1000), p[0]);
    CHECK_OK(evs_consumer_retry(c, p[0], &parked));
    CHECK(!parked);
    CHECK_U64(next_pos(c, 1000), p[0]);
    /* it failed after its 2 retries (max_retries = 2): parked, and delivery goes on */
    CHECK_OK(evs_consumer_retry(c, p[0], &parked));
    CHECK(parked);
    CHECK_U64(next_pos(c, 1000), p[1]);
    CHECK_OK(evs_consumer_retry(c, p[1], NULL));
    CHECK_U64(next_pos(c, 1000), p[1]);
    CHECK_OK(evs_consumer_ack(c, p[1]));
    CHECK_STATUS(evs_consumer_retry(c, p[1], NULL), EVS_ERR_INVALID_ARGUMENT);
    CHECK_STATUS(evs_consumer_retry(c, p[4], NULL), EVS_ERR_INVALID_ARGUMENT);
    /* a park of p2, with a reason */
    CHECK_U64(next_pos(c, 0), p[2]);
    CHECK_STATUS(evs_consumer_park(c, p[2], BAD_UTF8), EVS_ERR_INVALID_ARGUMENT);
    CHECK_STATUS(evs_consumer_park(c, p[2], NULL), EVS_ERR_INVALID_ARGUMENT);
    CHECK_STATUS(evs_consumer_park(c, p[4], "not yet delivered"), EVS_ERR_INVALID_ARGUMENT);
    CHECK_OK(evs_consumer_park(c, p[2], "bad amount"));
    CHECK_U64(next_pos(c, 0), p[3]);
    CHECK_OK(evs_consumer_ack(c, p[3]));
    CHECK_I64(parked_of(s, "rp", pos, reasons, 4), 2);
    CHECK_U64(pos[0], p[0]);
    CHECK_STR(reasons[0], "gave up after 2 retries");
    CHECK_U64(pos[1], p[2]);
    CHECK_STR(reasons[1], "bad amount");
    /* replays: one not parked; the one at p2; then all */
    CHECK_STATUS(evs_consumer_replay_parked(c, p[3], &n), EVS_ERR_NOT_FOUND);
    CHECK_OK(evs_consumer_replay_parked(c, p[2], &n));
    CHECK_U64(n, 1);
    CHECK_U64(next_pos(c, 0), p[2]);
    /* acknowledged: parked no more */
    CHECK_OK(evs_consumer_ack(c, p[2]));
    CHECK_OK(evs_consumer_replay_parked(c, UINT64_MAX, &n));
    CHECK_U64(n, 1);
    CHECK_U64(next_pos(c, 0), p[0]);
    /* parked again: its reason replaced */
    CHECK_OK(evs_consumer_park(c, p[0], "still bad"));
    /* then the log goes on where it was */
    CHECK_U64(next_pos(c, 0), p[4]);
    CHECK_OK(evs_consumer_ack(c, p[4]));
    CHECK_OK(evs_consumer_replay_parked(c, UINT64_MAX, NULL));
    CHECK_OK(evs_consumer_close(c));
    CHECK_I64(parked_of(s, "rp", pos, reasons, 4), 1);
    CHECK_U64(pos[0], p[0]);
    CHECK_STR(reasons[0], "still bad");
}

/* ---- list, reset, delete ---- */

static void operations(evs_store *s)
{
    evs_consumer *c = NULL;
    evs_consumer_info info = EVS_STRUCT_INIT(evs_consumer_info);
    evs_consumer_list *l = NULL;
    evs_consumer_options o = EVS_STRUCT_INIT(evs_consumer_options);
    uint64_t p[4], at, pos[2];
    char reasons[2][64];
    int i;
    TU_SECTION("list, reset and delete");
    o.stream_prefix = "ops";
    o.start_position = EVS_CONSUMER_START_END;
    CHECK_OK(evs_consumer_open(s, "ops", &o, &c));
    if (c == NULL)
        return;
    CHECK_U64(next_pos(c, 0), SENTINEL);
    CHECK(info_of(s, "ops", &info));
    CHECK(info.open);
    CHECK_U64(info.lag_events, 0);
    CHECK_U64(info.lag_us, 0);
    /* while it is open: no reset, no delete */
    CHECK_STATUS(evs_consumer_reset(s, "ops", 0), EVS_ERR_LOCKED);
    CHECK_STATUS(evs_consumer_delete(s, "ops"), EVS_ERR_LOCKED);
    CHECK_OK(evs_consumer_close(c));
    for (i = 0; i < 4; i++)
        p[i] = append1(s, "ops", "T", "x");
    tu_sleep_ms(3);
    CHECK(info_of(s, "ops", &info));
    CHECK(!info.open);
    CHECK_U64(info.next_position, p[0]);
    CHECK_U64(info.lag_events, head_of(s) - p[0]);
    CHECK(info.lag_us >= 3000);
    CHECK_U64(info.parked, 0);
    /* the list's own refusals */
    CHECK_OK(evs_list_consumers(s, &l));
    CHECK(evs_consumer_list_count(l) >= 1);
    CHECK_STATUS(evs_consumer_list_get(l, evs_consumer_list_count(l), &info), EVS_ERR_NOT_FOUND);
    CHECK_STATUS(evs_consumer_list_get(l, 0, NULL), EVS_ERR_INVALID_ARGUMENT);
    CHECK_STATUS(evs_consumer_list_get(NULL, 0, &info), EVS_ERR_INVALID_ARGUMENT);
    info.struct_size = 3;
    CHECK_STATUS(evs_consumer_list_get(l, 0, &info), EVS_ERR_INVALID_ARGUMENT);
    info.struct_size = sizeof info;
    evs_consumer_list_free(l);
    CHECK_U64(evs_consumer_list_count(NULL), 0);
    evs_consumer_list_free(NULL);
    CHECK_STATUS(evs_list_consumers(s, NULL), EVS_ERR_INVALID_ARGUMENT);
    CHECK_STATUS(evs_list_consumers(NULL, &l), EVS_ERR_INVALID_ARGUMENT);
    /* reset to a position: given from there */
    CHECK_OK(evs_consumer_reset(s, "ops", p[2]));
    CHECK(info_of(s, "ops", &info));
    CHECK_U64(info.next_position, p[2]);
    CHECK_STATUS(evs_consumer_reset(s, "ops", head_of(s) + 1), EVS_ERR_NOT_FOUND);
    CHECK_OK(evs_consumer_open(s, "ops", &o, &c));
    if (c != NULL) {
        CHECK_U64(next_pos(c, 0), p[2]);
        CHECK_OK(evs_consumer_park(c, p[2], "for the delete"));
        CHECK_OK(evs_consumer_close(c));
    }
    /* reset to a time: the first position after it (evs_position_at) */
    {
        evs_cursor *cur = NULL;
        evs_event e = EVS_STRUCT_INIT(evs_event);
        CHECK_OK(evs_read_all(s, p[0], &cur));
        CHECK_OK(evs_cursor_next(cur, &e));
        CHECK_OK(evs_position_at(s, e.timestamp_us - 1, &at));
        evs_cursor_free(cur);
    }
    CHECK(at <= p[0]);
    CHECK_OK(evs_consumer_reset(s, "ops", at));
    CHECK(info_of(s, "ops", &info));
    CHECK_U64(info.next_position, at);
    CHECK_U64(info.parked, 1);
    /* a reset of a new name makes it */
    CHECK_OK(evs_consumer_reset(s, "made-by-reset", p[1]));
    CHECK(info_of(s, "made-by-reset", &info));
    CHECK_U64(info.next_position, p[1]);
    /* the metrics have each consumer's figures */
    {
        char *text = NULL, want[160];
        CHECK_OK(evs_metrics_text(s, &text));
        if (text != NULL) {
            snprintf(want, sizeof want, "\nevstore_consumer_next_position{consumer=\"made-by-reset\"} %" PRIu64 "\n",
                     p[1]);
            CHECK(strstr(text, want) != NULL);
            snprintf(want, sizeof want, "\nevstore_consumer_lag_events{consumer=\"made-by-reset\"} %" PRIu64 "\n",
                     head_of(s) - p[1]);
            CHECK(strstr(text, want) != NULL);
            CHECK(strstr(text, "\nevstore_consumer_parked{consumer=\"ops\"} 1\n") != NULL);
            CHECK(strstr(text, "\nevstore_consumer_open{consumer=\"ops\"} 0\n") != NULL);
            CHECK(strstr(text, "\nevstore_consumer_lag_seconds{consumer=\"ops\"} ") != NULL);
            CHECK(strstr(text, "# TYPE evstore_consumer_lag_seconds gauge\n") != NULL);
        }
        evs_string_free(text);
    }
    /* delete: gone from the list, its parked events too; the name starts afresh */
    CHECK_OK(evs_consumer_delete(s, "ops"));
    CHECK(!info_of(s, "ops", &info));
    {
        evs_parked_list *pl = NULL;
        CHECK_STATUS(evs_list_parked(s, "ops", &pl), EVS_ERR_NOT_FOUND);
        CHECK(pl == NULL);
    }
    CHECK_STATUS(evs_consumer_delete(s, "ops"), EVS_ERR_NOT_FOUND);
    CHECK_STATUS(evs_consumer_delete(s, "never-was"), EVS_ERR_NOT_FOUND);
    o.start_position = p[3];
    CHECK_OK(evs_consumer_open(s, "ops", &o, &c));
    if (c != NULL) {
        CHECK_U64(next_pos(c, 0), p[3]);
        CHECK_OK(evs_consumer_close(c));
    }
    CHECK_I64(parked_of(s, "ops", pos, reasons, 2), 0);
}

/* ---- arguments ---- */

static void arguments(evs_store *s)
{
    evs_consumer *c = NULL;
    evs_consumer_options o = EVS_STRUCT_INIT(evs_consumer_options);
    evs_event e = EVS_STRUCT_INIT(evs_event);
    evs_parked_list *pl = NULL;
    evs_parked_event pe = EVS_STRUCT_INIT(evs_parked_event);
    char long_name[102];
    uint64_t next = SENTINEL, n = SENTINEL;
    const char *types[] = {"A", NULL};
    bool parked = false;
    TU_SECTION("bad arguments");
    memset(long_name, 'n', 101);
    long_name[101] = '\0';
    CHECK_STATUS(evs_consumer_open(NULL, "x", NULL, &c), EVS_ERR_INVALID_ARGUMENT);
    CHECK_STATUS(evs_consumer_open(s, NULL, NULL, &c), EVS_ERR_INVALID_ARGUMENT);
    CHECK_STATUS(evs_consumer_open(s, "x", NULL, NULL), EVS_ERR_INVALID_ARGUMENT);
    CHECK_STATUS(evs_consumer_open(s, "", NULL, &c), EVS_ERR_INVALID_ARGUMENT);
    CHECK(strstr(evs_last_error_message(), "empty") != NULL);
    CHECK_STATUS(evs_consumer_open(s, long_name, NULL, &c), EVS_ERR_INVALID_ARGUMENT);
    CHECK(strstr(evs_last_error_message(), "101") != NULL);
    CHECK_STATUS(evs_consumer_open(s, BAD_UTF8, NULL, &c), EVS_ERR_INVALID_ARGUMENT);
    o.struct_size = 3;
    CHECK_STATUS(evs_consumer_open(s, "x", &o, &c), EVS_ERR_INVALID_ARGUMENT);
    o.struct_size = sizeof o;
    o.retry_backoff_ms = 500;
    o.retry_backoff_max_ms = 100;
    CHECK_STATUS(evs_consumer_open(s, "x", &o, &c), EVS_ERR_INVALID_ARGUMENT);
    CHECK(strstr(evs_last_error_message(), "retry_backoff_max_ms") != NULL);
    o.retry_backoff_ms = o.retry_backoff_max_ms = 0;
    o.types = types;
    o.types_count = 2; /* a NULL type */
    CHECK_STATUS(evs_consumer_open(s, "x", &o, &c), EVS_ERR_INVALID_ARGUMENT);
    o.types_count = 4097;
    CHECK_STATUS(evs_consumer_open(s, "x", &o, &c), EVS_ERR_INVALID_ARGUMENT);
    o.types = NULL;
    o.types_count = 0;
    o.stream_prefix = BAD_UTF8;
    CHECK_STATUS(evs_consumer_open(s, "x", &o, &c), EVS_ERR_INVALID_ARGUMENT);
    CHECK(c == NULL);
    /* no consumer was made by the refusals */
    {
        evs_consumer_info info;
        CHECK(!info_of(s, "x", &info));
    }
    /* NULL handles */
    CHECK_STATUS(evs_consumer_next(NULL, &e, 0), EVS_ERR_INVALID_ARGUMENT);
    CHECK_STATUS(evs_consumer_ack(NULL, 0), EVS_ERR_INVALID_ARGUMENT);
    CHECK_STATUS(evs_consumer_retry(NULL, 0, &parked), EVS_ERR_INVALID_ARGUMENT);
    CHECK_STATUS(evs_consumer_park(NULL, 0, "r"), EVS_ERR_INVALID_ARGUMENT);
    CHECK_STATUS(evs_consumer_replay_parked(NULL, UINT64_MAX, &n), EVS_ERR_INVALID_ARGUMENT);
    CHECK_STATUS(evs_consumer_checkpoint(NULL), EVS_ERR_INVALID_ARGUMENT);
    CHECK_STATUS(evs_consumer_position(NULL, &next, NULL), EVS_ERR_INVALID_ARGUMENT);
    CHECK_STATUS(evs_consumer_append(NULL, NULL, 0, 0, NULL, NULL), EVS_ERR_INVALID_ARGUMENT);
    CHECK_OK(evs_consumer_close(NULL));
    CHECK_STATUS(evs_consumer_reset(NULL, "x", 0), EVS_ERR_INVALID_ARGUMENT);
    CHECK_STATUS(evs_consumer_reset(s, NULL, 0), EVS_ERR_INVALID_ARGUMENT);
    CHECK_STATUS(evs_consumer_reset(s, long_name, 0), EVS_ERR_INVALID_ARGUMENT);
    CHECK_STATUS(evs_consumer_delete(NULL, "x"), EVS_ERR_INVALID_ARGUMENT);
    CHECK_STATUS(evs_consumer_delete(s, ""), EVS_ERR_INVALID_ARGUMENT);
    CHECK_STATUS(evs_list_parked(NULL, "x", &pl), EVS_ERR_INVALID_ARGUMENT);
    CHECK_STATUS(evs_list_parked(s, "x", NULL), EVS_ERR_INVALID_ARGUMENT);
    CHECK_STATUS(evs_list_parked(s, "", &pl), EVS_ERR_INVALID_ARGUMENT);
    CHECK_STATUS(evs_list_parked(s, "x", &pl), EVS_ERR_NOT_FOUND);
    CHECK_STATUS(evs_parked_list_get(NULL, 0, &pe), EVS_ERR_INVALID_ARGUMENT);
    CHECK_U64(evs_parked_list_count(NULL), 0);
    evs_parked_list_free(NULL);
    /* an open consumer's own refusals */
    CHECK_OK(evs_consumer_open(s, "args", NULL, &c));
    if (c == NULL)
        return;
    CHECK_STATUS(evs_consumer_next(c, NULL, 0), EVS_ERR_INVALID_ARGUMENT);
    e.struct_size = 3;
    CHECK_STATUS(evs_consumer_next(c, &e, 0), EVS_ERR_INVALID_ARGUMENT);
    e.struct_size = sizeof e;
    CHECK_STATUS(evs_consumer_position(c, NULL, NULL), EVS_ERR_INVALID_ARGUMENT);
    CHECK_OK(evs_consumer_position(c, &next, NULL));
    CHECK_STATUS(evs_consumer_replay_parked(c, 0, &n), EVS_ERR_NOT_FOUND);
    CHECK_OK(evs_consumer_replay_parked(c, UINT64_MAX, &n));
    CHECK_U64(n, 0);
    /* a parked list's entry past its end, and a bad struct_size */
    CHECK_OK(evs_list_parked(s, "args", &pl));
    CHECK_U64(evs_parked_list_count(pl), 0);
    CHECK_STATUS(evs_parked_list_get(pl, 0, &pe), EVS_ERR_NOT_FOUND);
    pe.struct_size = 3;
    CHECK_STATUS(evs_parked_list_get(pl, 0, &pe), EVS_ERR_INVALID_ARGUMENT);
    CHECK_STATUS(evs_parked_list_get(pl, 0, NULL), EVS_ERR_INVALID_ARGUMENT);
    evs_parked_list_free(pl);
    CHECK_OK(evs_consumer_close(c));
}

/* ---- read-only handles, damaged journals, the folder a file ---- */

static void read_only(const char *path)
{
    evs_store *w = open_at(path, 0), *ro;
    evs_consumer *c = NULL;
    evs_consumer_info info = EVS_STRUCT_INIT(evs_consumer_info);
    evs_event_input in = EVS_STRUCT_INIT(evs_event_input);
    evs_stream_append a = EVS_STRUCT_INIT(evs_stream_append);
    evs_consumer_options o = EVS_STRUCT_INIT(evs_consumer_options);
    uint64_t p[3], next, stored;
    char journal[1400], hex[64];
    FILE *f;
    int i;
    TU_SECTION("a read-only handle's consumers");
    if (w == NULL)
        return;
    for (i = 0; i < 3; i++)
        p[i] = append1(w, "ro-s", "T", "x");
    ro = open_at(path, 1);
    if (ro == NULL) {
        evs_close(w);
        return;
    }
    o.stream_prefix = "ro-";
    o.start_position = p[0];
    CHECK_OK(evs_consumer_open(ro, "reader", &o, &c));
    if (c != NULL) {
        CHECK_U64(next_pos(c, 0), p[0]);
        in.event_type = "T";
        a.stream = "ro-effects";
        a.expected_version = EVS_EXPECT_ANY;
        a.events = &in;
        a.count = 1;
        CHECK_STATUS(evs_consumer_append(c, &a, 1, p[0], NULL, NULL), EVS_ERR_READ_ONLY);
        CHECK_OK(evs_consumer_ack(c, p[0]));
        CHECK_OK(evs_consumer_checkpoint(c));
        CHECK_OK(evs_consumer_position(c, &next, &stored));
        CHECK_U64(stored, p[0] + 1);
        CHECK_U64(next_pos(c, 0), p[1]);
        CHECK_OK(evs_consumer_park(c, p[1], "parked by a reader"));
        CHECK_OK(evs_consumer_close(c));
    }
    /* the writer sees the reader's consumer, and obeys it */
    CHECK(info_of(w, "reader", &info));
    CHECK_U64(info.next_position, p[1] + 1);
    CHECK_U64(info.parked, 1);
    CHECK_OK(evs_consumer_open(w, "reader", &o, &c));
    if (c != NULL) {
        CHECK_U64(next_pos(c, 0), p[2]);
        CHECK_OK(evs_consumer_close(c));
    }
    CHECK_OK(evs_close(ro));
    CHECK_OK(evs_close(w));

    /* A record damaged before the journal's last one: EVS_ERR_CORRUPT for every call
     * that reads the consumers (a torn last record would be cut instead). */
    for (i = 0; i < 6; i++)
        snprintf(hex + 2 * i, 3, "%02x", (unsigned char)"reader"[i]);
    snprintf(journal, sizeof journal, "%s/consumers/%s.journal", path, hex);
    f = fopen(journal, "r+b");
    CHECK(f != NULL);
    if (f != NULL) {
        int ch;
        CHECK(fseek(f, 12, SEEK_SET) == 0);
        ch = fgetc(f);
        CHECK(fseek(f, 12, SEEK_SET) == 0);
        CHECK(fputc(ch ^ 0x5a, f) != EOF);
        CHECK(fclose(f) == 0);
    }
    w = open_at(path, 0);
    if (w == NULL)
        return;
    {
        evs_consumer_list *l = NULL;
        evs_parked_list *pl = NULL;
        c = NULL;
        CHECK_STATUS(evs_consumer_open(w, "reader", &o, &c), EVS_ERR_CORRUPT);
        CHECK(strstr(evs_last_error_message(), "journal") != NULL);
        CHECK(c == NULL);
        CHECK_STATUS(evs_list_consumers(w, &l), EVS_ERR_CORRUPT);
        CHECK_STATUS(evs_list_parked(w, "reader", &pl), EVS_ERR_CORRUPT);
    }
    CHECK_OK(evs_close(w));
    CHECK(remove(journal) == 0);
}

/* A regular file where the consumers' folder goes: the calls that need it say EVS_ERR_IO. */
static void folder_is_a_file(void)
{
    char path[1200], dir[1300];
    evs_store *s;
    evs_consumer *c = NULL;
    evs_subscription *sub = NULL;
    FILE *f;
    TU_SECTION("the consumers' folder cannot be made");
    tu_store_location(path, sizeof path, g_root, "nofolder");
    s = open_at(path, 0);
    if (s == NULL)
        return;
    append1(s, "a", "T", "x");
    snprintf(dir, sizeof dir, "%s/consumers", path);
    f = fopen(dir, "wb");
    CHECK(f != NULL);
    if (f != NULL)
        CHECK(fclose(f) == 0);
    CHECK_STATUS(evs_consumer_open(s, "c", NULL, &c), EVS_ERR_IO);
    CHECK(strstr(evs_last_error_message(), "consumers") != NULL);
    CHECK(c == NULL);
    CHECK_STATUS(evs_subscribe_durable(s, "c", NULL, never_called, NULL, &sub), EVS_ERR_IO);
    CHECK(sub == NULL);
    CHECK_STATUS(evs_consumer_reset(s, "c", 0), EVS_ERR_IO);
    CHECK_STATUS(evs_consumer_delete(s, "c"), EVS_ERR_IO);
    CHECK_OK(evs_close(s));
}

/* A damaged event the consumer reaches (the writer's open, starting from a snapshot
 * after it, never read it): evs_consumer_next says EVS_ERR_CORRUPT. */
static void damaged_segment(void)
{
    char path[1200], seg[1600];
    evs_store *s;
    evs_consumer *c = NULL;
    evs_event e = EVS_STRUCT_INIT(evs_event);
    DIR *d;
    struct dirent *de;
    uint64_t first = SENTINEL;
    int i;
    TU_SECTION("a damaged event");
    tu_store_location(path, sizeof path, g_root, "damaged");
    s = open_at(path, 0);
    if (s == NULL)
        return;
    for (i = 0; i < 5; i++) {
        char payload[32];
        snprintf(payload, sizeof payload, "payload-MARK-%d-x", i);
        if (i == 0)
            first = append1(s, "d", "T", payload);
        else
            append1(s, "d", "T", payload);
    }
    CHECK_OK(evs_snapshot(s, NULL));
    CHECK_OK(evs_close(s));
    seg[0] = '\0';
    snprintf(seg, sizeof seg, "%s/events", path);
    d = opendir(seg);
    CHECK(d != NULL);
    seg[0] = '\0';
    while (d != NULL && (de = readdir(d)) != NULL) {
        size_t len = strlen(de->d_name);
        if (len > 4 && strcmp(de->d_name + len - 4, ".wal") == 0)
            snprintf(seg, sizeof seg, "%s/events/%s", path, de->d_name);
    }
    if (d != NULL)
        closedir(d);
    CHECK(seg[0] != '\0');
    if (seg[0] != '\0') {
        /* overwrite the M of "MARK-2-" */
        FILE *f = fopen(seg, "r+b");
        char buf[8192];
        size_t n = f ? fread(buf, 1, sizeof buf, f) : 0, k;
        long at = -1;
        for (k = 0; k + 7 <= n; k++)
            if (memcmp(buf + k, "MARK-2-", 7) == 0)
                at = (long)k;
        CHECK(at >= 0);
        if (f != NULL && at >= 0) {
            CHECK(fseek(f, at, SEEK_SET) == 0);
            CHECK(fputc('#', f) != EOF);
        }
        if (f != NULL)
            CHECK(fclose(f) == 0);
    }
    s = open_at(path, 0);
    if (s == NULL)
        return;
    CHECK_OK(evs_consumer_open(s, "hits-damage", NULL, &c));
    if (c != NULL) {
        CHECK_U64(next_pos(c, 0), first);
        CHECK_U64(next_pos(c, 0), first + 1);
        CHECK_STATUS(evs_consumer_next(c, &e, 0), EVS_ERR_CORRUPT);
        CHECK_OK(evs_consumer_close(c));
    }
    CHECK_OK(evs_close(s));
}

/* ---- consumer groups: refused by the file engine; two members on PostgreSQL ---- */

static void groups(void)
{
    char path[1200];
    evs_store *s, *s2;
    evs_consumer *a = NULL, *b = NULL, *x = NULL;
    evs_consumer_options o = EVS_STRUCT_INIT(evs_consumer_options);
    evs_consumer_info info = EVS_STRUCT_INIT(evs_consumer_info);
    uint64_t seen[64] = {0}, p, end;
    int i, got_a = 0, got_b = 0, idle;
    TU_SECTION("consumer groups");
    tu_store_location(path, sizeof path, g_root, "groups");
    s = open_at(path, 0);
    if (s == NULL)
        return;
    o.partitions = 4;
    o.lease_ms = 600;
    if (!tu_pg()) {
        CHECK_STATUS(evs_consumer_open(s, "g", &o, &a), EVS_ERR_INVALID_ARGUMENT);
        CHECK(strstr(evs_last_error_message(), "PostgreSQL") != NULL);
        CHECK(a == NULL);
        CHECK_OK(evs_close(s));
        return;
    }
    s2 = open_at(path, 0);
    if (s2 == NULL) {
        CHECK_OK(evs_close(s));
        return;
    }
    for (i = 0; i < 40; i++) {
        char stream[16];
        snprintf(stream, sizeof stream, "s-%d", i % 6);
        append1(s, stream, "T", "x");
    }
    end = head_of(s);
    CHECK_OK(evs_consumer_open(s, "grp", &o, &a));
    /* another count, or none: refused while the group lives */
    o.partitions = 5;
    CHECK_STATUS(evs_consumer_open(s2, "grp", &o, &x), EVS_ERR_INVALID_ARGUMENT);
    CHECK(strstr(evs_last_error_message(), "group of 4 partitions") != NULL);
    CHECK_STATUS(evs_consumer_open(s2, "grp", NULL, &x), EVS_ERR_LOCKED);
    CHECK(strstr(evs_last_error_message(), "group of 4 partitions") != NULL);
    CHECK(x == NULL);
    o.partitions = 4;
    CHECK_OK(evs_consumer_open(s2, "grp", &o, &b));
    /* turn by turn until neither is given anything for a while: every event once */
    for (idle = 0; idle < 20 && a != NULL && b != NULL;) {
        int any = 0;
        if ((p = next_pos(a, 100)) != SENTINEL) {
            CHECK(p < 64);
            if (p < 64)
                seen[p]++;
            CHECK_OK(evs_consumer_ack(a, p));
            got_a++;
            any = 1;
        }
        if ((p = next_pos(b, 100)) != SENTINEL) {
            CHECK(p < 64);
            if (p < 64)
                seen[p]++;
            CHECK_OK(evs_consumer_ack(b, p));
            got_b++;
            any = 1;
        }
        idle = any ? 0 : idle + 1;
    }
    for (p = 0; p < end && p < 64; p++)
        CHECK_U64(seen[p], 1);
    CHECK(got_a > 0);
    CHECK(got_b > 0);
    CHECK(info_of(s, "grp", &info));
    CHECK(info.open);
    CHECK_OK(evs_consumer_close(a));
    CHECK_OK(evs_consumer_close(b));
    CHECK(info_of(s, "grp", &info));
    CHECK(!info.open);
    CHECK_U64(info.next_position, end);
    CHECK_OK(evs_close(s2));
    CHECK_OK(evs_close(s));
}

int main(void)
{
    char path[1200];
    evs_store *s;
    if (!tu_make_temp_dir(g_root, sizeof g_root))
        return tu_finish();
    tu_store_location(path, sizeof path, g_root, "store");
    s = open_at(path, 0);
    if (s == NULL)
        return tu_finish();
    pull_form(path, s); /* closes s */
    callback_form(path);
    atomic_step(path);
    s = open_at(path, 0);
    if (s != NULL) {
        checkpoint_interval(s);
        retry_park_replay(s);
        operations(s);
        arguments(s);
        CHECK_OK(evs_close(s));
    }
    groups();
    if (tu_pg()) {
        tu_skip_on_pg("read-only handles' journals, the consumers' folder, a damaged segment",
                      "files of the file engine (PostgreSQL keeps consumers in tables)");
    } else {
        read_only(path);
        folder_is_a_file();
        damaged_segment();
    }
    tu_cleanup_dir(g_root);
    return tu_finish();
}
