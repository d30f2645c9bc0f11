/*
 * stress.c: 16 threads on one store for N seconds, then a consistency check of it all.
 *
 *   stress [SECONDS] [always|batch]     (default 3 s, EVS_FSYNC_ALWAYS)
 *
 * Threads (16):
 *   0-3   batches of 1..10 events to their own streams with exact expected versions
 *         (must never conflict), each event's payload naming its thread and version;
 *   4-5   single events (evs_append_event) and batches to three shared streams with the
 *         version they just read (they race: conflicts are expected and counted);
 *   6-9   account operations on 8 shared accounts: transfers, deposits, withdrawals,
 *         temporary accounts opened and closed (refusals as the rules say are counted);
 *   10-11 readers: forward from random positions (positions consecutive, timestamps never
 *         decreasing), backward, by stream (versions consecutive), polls, stream versions
 *         that never go back, balances that are never negative;
 *   12-13 subscribers (evs_subscribe) from random positions, closed and restarted now and
 *         then from where they stopped: every position delivered once, in order; the
 *         callback calls back into the API now and then;
 *   14    snapshots (evs_snapshot) every 250 ms, stats, metrics, balances as of a time;
 *   15    evs_sync, evs_position_at and single events.
 * The store also takes automatic snapshots (snapshot_every). At the end the subscribers
 * must catch up with the whole log; the store is closed and reopened, and checked:
 * positions gapless, stream versions gapless, every account's balance equal to the replay
 * of its events (rel_check_store); every acknowledged event counted (the log holds exactly
 * as many events as the appends that succeeded); each own stream at the version its
 * writer reached, with its payloads; money conserved (the sum of all balances equals the
 * opening balances plus the deposits minus the withdrawals that succeeded).
 *
 * Prints FIGURE lines and `N passed, N failed`.
 */
#include "rel_common.h"

#define THREADS 16
#define OWN_STREAMS 4
#define SHARED_STREAMS 3
#define ACCOUNTS 8
#define OPENING INT64_C(1000000)

static evs_store *g_s;
static volatile int g_stop = 0;
static long g_seconds = 3;

static pthread_mutex_t g_mu = PTHREAD_MUTEX_INITIALIZER;
/* totals, under g_mu */
static uint64_t g_events_acked, g_appends, g_conflicts, g_refusals, g_reads, g_read_events,
    g_snapshots, g_subs_started, g_delivered, g_account_ops;
static int64_t g_money_in, g_money_out; /* opening balances + deposits, withdrawals */
static unsigned long g_violations;

/* own streams: the version each writer reached (written by its thread only) */
static int64_t g_own_version[4][OWN_STREAMS];

static void add(uint64_t *counter, uint64_t n)
{
    pthread_mutex_lock(&g_mu);
    *counter += n;
    pthread_mutex_unlock(&g_mu);
}

static void violation(const char *fmt, const char *a, long long x, long long y)
{
    pthread_mutex_lock(&g_mu);
    g_violations++;
    pthread_mutex_unlock(&g_mu);
    rel_violation(fmt, a, x, y);
}

static int unexpected(const char *what, evs_status st)
{
    const char *msg = tu_msg();
    pthread_mutex_lock(&g_mu);
    g_violations++;
    pthread_mutex_unlock(&g_mu);
    rel_violation("%s: unexpected %s: %s", what, tu_name(st), msg);
    return 1;
}

static void fill(uint64_t *rng, uint8_t *p, size_t n)
{
    size_t i;
    for (i = 0; i < n; i++)
        p[i] = (uint8_t)(tu_rand(rng) >> 24);
}

/* ---- writers to their own streams ---- */

static void *own_writer(void *arg)
{
    int t = (int)(intptr_t)arg;
    uint64_t rng = (uint64_t)t * 7919 + 13;
    uint8_t payloads[10][300];
    char name[OWN_STREAMS][32];
    int k;
    for (k = 0; k < OWN_STREAMS; k++) {
        snprintf(name[k], sizeof name[k], "own-%d-%d", t, k);
        g_own_version[t][k] = -1;
    }
    while (!g_stop) {
        evs_event_input in[10];
        { /* every entry starts with its size */
            size_t i_;
            for (i_ = 0; i_ < sizeof in / sizeof in[0]; i_++)
                in[i_] = (evs_event_input)EVS_STRUCT_INIT(evs_event_input);
        }
        uint32_t n = 1 + (uint32_t)(tu_rand(&rng) % 10), j;
        uint64_t first = 0, ver = 0;
        evs_status st;
        int64_t v;
        k = (int)(tu_rand(&rng) % OWN_STREAMS);
        v = g_own_version[t][k];
        for (j = 0; j < n; j++) {
            size_t len = 16 + (size_t)(tu_rand(&rng) % 280);
            int64_t version = v + 1 + (int64_t)j;
            fill(&rng, payloads[j], len);
            memcpy(payloads[j], &t, sizeof t);
            memcpy(payloads[j] + 4, &version, 8);
            in[j].event_type = "OwnEvent";
            in[j].payload = payloads[j];
            in[j].payload_len = len;
            in[j].metadata = NULL;
            in[j].metadata_len = 0;
            in[j].schema_version = 1;
        }
        st = evs_append(g_s, name[k], v < 0 ? EVS_EXPECT_NO_STREAM : v, in, n, &first, &ver);
        if (st != EVS_OK) {
            unexpected("append to an own stream", st);
            continue;
        }
        if ((int64_t)ver != v + (int64_t)n)
            violation("%s: version %lld after the append, expected %lld", name[k],
                      (long long)ver, (long long)(v + (int64_t)n));
        g_own_version[t][k] = (int64_t)ver;
        pthread_mutex_lock(&g_mu);
        g_events_acked += n;
        g_appends++;
        pthread_mutex_unlock(&g_mu);
    }
    return NULL;
}

/* ---- racing writers on shared streams ---- */

static void *shared_writer(void *arg)
{
    int t = (int)(intptr_t)arg;
    uint64_t rng = (uint64_t)t * 104729 + 7;
    uint8_t p[200];
    while (!g_stop) {
        evs_status st;
        uint64_t pos;
        if (tu_rand(&rng) % 3 == 0) {
            size_t len = (size_t)(tu_rand(&rng) % 200);
            fill(&rng, p, len);
            st = evs_append_event(g_s, "Loose", p, len, &pos);
            if (st != EVS_OK) {
                unexpected("evs_append_event", st);
                continue;
            }
            add(&g_events_acked, 1);
            add(&g_appends, 1);
        } else {
            char name[32];
            int64_t v = -7;
            evs_event_input in[3];
            { /* every entry starts with its size */
                size_t i_;
                for (i_ = 0; i_ < sizeof in / sizeof in[0]; i_++)
                    in[i_] = (evs_event_input)EVS_STRUCT_INIT(evs_event_input);
            }
            uint32_t n = 1 + (uint32_t)(tu_rand(&rng) % 3), j;
            int64_t expected;
            snprintf(name, sizeof name, "shared-%d", (int)(tu_rand(&rng) % SHARED_STREAMS));
            st = evs_stream_version(g_s, name, &v);
            if (st != EVS_OK) {
                unexpected("evs_stream_version", st);
                continue;
            }
            expected = tu_rand(&rng) % 5 == 0 ? EVS_EXPECT_ANY
                       : v < 0                ? EVS_EXPECT_NO_STREAM
                                              : v;
            for (j = 0; j < n; j++) {
                in[j].event_type = "Shared";
                in[j].payload = p;
                in[j].payload_len = 20;
                in[j].metadata = (const uint8_t *)"meta";
                in[j].metadata_len = 4;
                in[j].schema_version = 2;
            }
            fill(&rng, p, 20);
            st = evs_append(g_s, name, expected, in, n, &pos, NULL);
            if (st == EVS_ERR_WRONG_EXPECTED_VERSION) {
                add(&g_conflicts, 1);
            } else if (st != EVS_OK) {
                unexpected("append to a shared stream", st);
            } else {
                add(&g_events_acked, n);
                add(&g_appends, 1);
            }
        }
    }
    return NULL;
}

/* ---- accounts ---- */

static void *accountant(void *arg)
{
    int t = (int)(intptr_t)arg;
    uint64_t rng = (uint64_t)t * 15485863 + 3;
    char temp[8][64];
    int n_temp = 0, tick = 0;
    while (!g_stop) {
        char a[16], b[16];
        int64_t amount = 1 + (int64_t)(tu_rand(&rng) % 50000);
        uint64_t r = tu_rand(&rng) % 100;
        evs_status st;
        snprintf(a, sizeof a, "acc-%d", (int)(tu_rand(&rng) % ACCOUNTS));
        snprintf(b, sizeof b, "acc-%d", (int)(tu_rand(&rng) % ACCOUNTS));
        tick++;
        if (r < 55) {
            if (strcmp(a, b) == 0)
                continue;
            st = evs_account_transfer(g_s, a, b, amount, NULL);
            if (st == EVS_OK)
                add(&g_events_acked, 2);
            else if (st == EVS_ERR_INSUFFICIENT_FUNDS)
                add(&g_refusals, 1);
            else
                unexpected("transfer", st);
        } else if (r < 75) {
            st = evs_account_deposit(g_s, a, amount, NULL);
            if (st == EVS_OK) {
                pthread_mutex_lock(&g_mu);
                g_money_in += amount;
                g_events_acked++;
                pthread_mutex_unlock(&g_mu);
            } else {
                unexpected("deposit", st);
            }
        } else if (r < 95) {
            st = evs_account_withdraw(g_s, a, amount, NULL);
            if (st == EVS_OK) {
                pthread_mutex_lock(&g_mu);
                g_money_out += amount;
                g_events_acked++;
                pthread_mutex_unlock(&g_mu);
            } else if (st == EVS_ERR_INSUFFICIENT_FUNDS) {
                add(&g_refusals, 1);
            } else {
                unexpected("withdraw", st);
            }
        } else if (n_temp < 8 && r < 98) {
            snprintf(temp[n_temp], sizeof temp[n_temp], "temp-%d-%d", t, tick);
            st = evs_account_open(g_s, temp[n_temp], 500, NULL, NULL);
            if (st == EVS_OK) {
                pthread_mutex_lock(&g_mu);
                g_money_in += 500;
                g_events_acked++;
                pthread_mutex_unlock(&g_mu);
                n_temp++;
            } else {
                unexpected("account open", st);
            }
        } else if (n_temp > 0) {
            /* pay the temporary account out to a shared one, then close it */
            const char *id = temp[--n_temp];
            st = evs_account_transfer(g_s, id, a, 500, NULL);
            if (st == EVS_OK)
                add(&g_events_acked, 2);
            else
                unexpected("transfer out of a temporary account", st);
            st = evs_account_close(g_s, id, NULL);
            if (st == EVS_OK)
                add(&g_events_acked, 1);
            else
                unexpected("account close", st);
            st = evs_account_deposit(g_s, id, 1, NULL);
            if (st != EVS_ERR_ACCOUNT_CLOSED)
                unexpected("deposit into a closed account (expected EVS_ERR_ACCOUNT_CLOSED)", st);
        }
        add(&g_account_ops, 1);
    }
    return NULL;
}

/* ---- readers ---- */

static void *reader(void *arg)
{
    int t = (int)(intptr_t)arg;
    uint64_t rng = (uint64_t)t * 32452843 + 11;
    int64_t seen_version[4][OWN_STREAMS];
    int i, k;
    for (i = 0; i < 4; i++)
        for (k = 0; k < OWN_STREAMS; k++)
            seen_version[i][k] = -1;
    while (!g_stop) {
        uint64_t next = 0, r = tu_rand(&rng) % 5, n = 0;
        evs_cursor *c = NULL;
        evs_event e = EVS_STRUCT_INIT(evs_event);
        evs_status st;
        evs_position_at(g_s, UINT64_MAX, &next);
        if (r == 0 || r == 1) {
            uint64_t from = next ? tu_rand(&rng) % next : 0, expect = from, last_ts = 0;
            st = r == 0 ? evs_read_all(g_s, from, &c)
                        : evs_poll(g_s, from, 1 + (size_t)(tu_rand(&rng) % 500), &c);
            if (st != EVS_OK) {
                unexpected("evs_read_all / evs_poll", st);
                continue;
            }
            while (n < 500 && (st = evs_cursor_next(c, &e)) == EVS_OK) {
                if (e.position != expect)
                    violation("a forward cursor gave position %s%lld after %lld", "",
                              (long long)e.position, (long long)expect - 1);
                if (e.timestamp_us < last_ts)
                    violation("%stimestamps went back at %lld", "", (long long)e.position, 0);
                last_ts = e.timestamp_us;
                expect++;
                n++;
            }
            if (st < 0)
                unexpected("forward cursor", st);
        } else if (r == 2) {
            uint64_t from = tu_rand(&rng) % (next + 10), expect;
            st = evs_read_all_backward(g_s, from, &c);
            if (st != EVS_OK) {
                unexpected("evs_read_all_backward", st);
                continue;
            }
            expect = from >= next ? next - 1 : from;
            while (n < 300 && (st = evs_cursor_next(c, &e)) == EVS_OK) {
                /* past the end (as last seen) means the last event, which may be later
                 * than the one seen when more were appended meanwhile */
                if (n == 0 && from >= next && e.position >= next - 1 && e.position <= from)
                    expect = e.position;
                if (e.position != expect)
                    violation("a backward cursor gave position %s%lld, expected %lld", "",
                              (long long)e.position, (long long)expect);
                expect--;
                n++;
            }
            if (st < 0)
                unexpected("backward cursor", st);
        } else if (r == 3) {
            char name[32];
            int w = (int)(tu_rand(&rng) % 4);
            int64_t v = -1;
            k = (int)(tu_rand(&rng) % OWN_STREAMS);
            snprintf(name, sizeof name, "own-%d-%d", w, k);
            st = evs_stream_version(g_s, name, &v);
            if (st != EVS_OK) {
                unexpected("evs_stream_version", st);
                continue;
            }
            if (v < seen_version[w][k])
                violation("stream %s went back from version %lld to %lld", name,
                          (long long)seen_version[w][k], (long long)v);
            seen_version[w][k] = v;
            if (v >= 0) {
                uint64_t from = tu_rand(&rng) % (uint64_t)(v + 1), expect = from;
                st = evs_read_stream(g_s, name, from, &c);
                if (st != EVS_OK) {
                    unexpected("evs_read_stream", st);
                    continue;
                }
                while (n < 300 && (st = evs_cursor_next(c, &e)) == EVS_OK) {
                    int64_t pv;
                    if (e.stream_version != expect || e.stream_len != strlen(name) ||
                        memcmp(e.stream, name, e.stream_len) != 0)
                        violation("stream %s: read version %lld, expected %lld", name,
                                  (long long)e.stream_version, (long long)expect);
                    pv = -1;
                    if (e.payload_len >= 12)
                        memcpy(&pv, e.payload + 4, 8);
                    if (pv != (int64_t)e.stream_version)
                        violation("stream %s: the payload of version %lld says %lld", name,
                                  (long long)e.stream_version, (long long)pv);
                    expect++;
                    n++;
                }
                if (st < 0)
                    unexpected("stream cursor", st);
            }
        } else {
            char a[16];
            evs_account acc = EVS_STRUCT_INIT(evs_account);
            snprintf(a, sizeof a, "acc-%d", (int)(tu_rand(&rng) % ACCOUNTS));
            st = evs_account_get(g_s, a, &acc);
            if (st != EVS_OK)
                unexpected("evs_account_get", st);
            else if (acc.balance < 0)
                violation("account %s has a negative balance %lld (%lld)", a,
                          (long long)acc.balance, 0);
        }
        if (c != NULL)
            evs_cursor_free(c);
        pthread_mutex_lock(&g_mu);
        g_reads++;
        g_read_events += n;
        pthread_mutex_unlock(&g_mu);
    }
    return NULL;
}

/* ---- subscribers ---- */

typedef struct {
    pthread_mutex_t mu;
    uint64_t next;      /* the position the next callback must have */
    uint64_t delivered; /* this subscription */
    unsigned long bad;
    uint64_t calls_back;
} sub_state;

static int32_t on_event(void *ud, const evs_event *e)
{
    sub_state *s = (sub_state *)ud;
    pthread_mutex_lock(&s->mu);
    if (e->position != s->next) {
        s->bad++;
        if (s->bad < 5)
            rel_violation("a subscription delivered position %" PRIu64 ", expected %" PRIu64,
                          e->position, s->next);
    }
    s->next = e->position + 1;
    s->delivered++;
    pthread_mutex_unlock(&s->mu);
    if (e->position % 997 == 0) {
        /* call back into the library from the callback */
        uint64_t p;
        evs_position_at(g_s, UINT64_MAX, &p);
        s->calls_back++;
    }
    return 0;
}

static void *subscriber(void *arg)
{
    int t = (int)(intptr_t)arg;
    uint64_t rng = (uint64_t)t * 49979687 + 5;
    sub_state s;
    evs_subscription *sub = NULL;
    uint64_t next = 0, deadline, t0;
    evs_status st;
    pthread_mutex_init(&s.mu, NULL);
    s.delivered = 0;
    s.bad = 0;
    s.calls_back = 0;
    evs_position_at(g_s, UINT64_MAX, &next);
    s.next = next ? tu_rand(&rng) % next : 0;
    while (!g_stop) {
        st = evs_subscribe(g_s, s.next, on_event, &s, &sub);
        if (st != EVS_OK) {
            unexpected("evs_subscribe", st);
            break;
        }
        add(&g_subs_started, 1);
        tu_sleep_ms(100 + (long)(tu_rand(&rng) % 700));
        if (g_stop)
            break;
        evs_subscription_close(sub); /* restart from where it stopped */
        sub = NULL;
    }
    /* Catch up with the whole log (written by now: the writers have stopped). */
    if (sub == NULL) {
        st = evs_subscribe(g_s, s.next, on_event, &s, &sub);
        if (st != EVS_OK)
            unexpected("evs_subscribe", st);
    }
    t0 = tu_now_us();
    deadline = t0 + 30000000u;
    for (;;) {
        uint64_t end = 0, at;
        evs_position_at(g_s, UINT64_MAX, &end);
        pthread_mutex_lock(&s.mu);
        at = s.next;
        pthread_mutex_unlock(&s.mu);
        if (at >= end && g_stop >= 2)
            break;
        if (tu_now_us() > deadline) {
            rel_violation("a subscription did not catch up within 30 s (at %" PRIu64 " of %" PRIu64
                          ")",
                          at, end);
            pthread_mutex_lock(&g_mu);
            g_violations++;
            pthread_mutex_unlock(&g_mu);
            break;
        }
        tu_sleep_ms(10);
    }
    if (sub != NULL)
        evs_subscription_close(sub);
    pthread_mutex_lock(&g_mu);
    g_delivered += s.delivered;
    g_violations += s.bad;
    pthread_mutex_unlock(&g_mu);
    pthread_mutex_destroy(&s.mu);
    return NULL;
}

/* ---- snapshots, stats, metrics ---- */

static void *snapshotter(void *arg)
{
    uint64_t rng = 99;
    (void)arg;
    while (!g_stop) {
        evs_status st = evs_snapshot(g_s, NULL);
        evs_stats stats = EVS_STRUCT_INIT(evs_stats);
        char *text = NULL;
        evs_account acc = EVS_STRUCT_INIT(evs_account);
        if (st != EVS_OK)
            unexpected("evs_snapshot", st);
        else
            add(&g_snapshots, 1);
        if (evs_stats_get(g_s, &stats) != EVS_OK)
            unexpected("evs_stats_get", -1);
        if (evs_metrics_text(g_s, &text) == EVS_OK)
            evs_string_free(text);
        else
            unexpected("evs_metrics_text", -1);
        st = evs_account_get_at(g_s, "acc-0", tu_now_us() - tu_rand(&rng) % 2000000u, &acc);
        if (st != EVS_OK && st != EVS_ERR_NOT_FOUND)
            unexpected("evs_account_get_at", st);
        else if (st == EVS_OK && acc.balance < 0)
            violation("acc-0 had a negative balance %s%lld as of a time", "",
                      (long long)acc.balance, 0);
        tu_sleep_ms(250);
    }
    return NULL;
}

static void *syncer(void *arg)
{
    uint64_t last = 0;
    (void)arg;
    while (!g_stop) {
        uint64_t p = 0, pos;
        evs_status st = evs_sync(g_s);
        if (st != EVS_OK)
            unexpected("evs_sync", st);
        evs_position_at(g_s, UINT64_MAX, &p);
        if (p < last)
            violation("the log's end went back from %s%lld to %lld", "", (long long)last,
                      (long long)p);
        last = p;
        st = evs_append_event(g_s, "Synced", (const uint8_t *)"s", 1, &pos);
        if (st != EVS_OK)
            unexpected("evs_append_event", st);
        else
            add(&g_events_acked, 1), add(&g_appends, 1);
        tu_sleep_ms(5);
    }
    return NULL;
}

/* ---- a snapshot storm: several threads snapshot the same quiet store at once ---- */

static void *snapshot_storm(void *arg)
{
    int i;
    unsigned long *bad = (unsigned long *)arg;
    for (i = 0; i < 25; i++) {
        evs_status st = evs_snapshot(g_s, NULL);
        if (st != EVS_OK) {
            pthread_mutex_lock(&g_mu);
            if (*bad < 3)
                printf("concurrent evs_snapshot of an unchanged store: %s: %s\n", tu_name(st),
                       tu_msg());
            (*bad)++;
            pthread_mutex_unlock(&g_mu);
        }
    }
    return NULL;
}

/* ---- the final check ---- */

typedef struct {
    unsigned long bad_payload;
} final_ctx;

static void check_own_payload(void *ud, const evs_event *e)
{
    final_ctx *f = (final_ctx *)ud;
    int t;
    int64_t v;
    if (e->stream_len < 4 || memcmp(e->stream, "own-", 4) != 0)
        return;
    if (e->payload_len < 12) {
        f->bad_payload++;
        return;
    }
    memcpy(&t, e->payload, sizeof t);
    memcpy(&v, e->payload + 4, 8);
    if (v != (int64_t)e->stream_version || t != e->stream[4] - '0')
        f->bad_payload += rel_violation("own stream %.*s v%" PRIu64 ": payload says thread %d "
                                        "version %" PRId64,
                                        (int)e->stream_len, e->stream, e->stream_version, t, v);
}

int main(int argc, char **argv)
{
    char root[1024], dir[1100];
    pthread_t th[THREADS];
    evs_options *o;
    int policy = EVS_FSYNC_ALWAYS, i, k;
    uint64_t t0;
    rel_state st;
    final_ctx fc;

    if (argc >= 2)
        g_seconds = atol(argv[1]);
    if (argc >= 3 && strcmp(argv[2], "batch") == 0)
        policy = EVS_FSYNC_BATCH;
    if (!tu_make_temp_dir(root, sizeof root))
        return tu_finish();
    snprintf(dir, sizeof dir, "%s/store", root);
    o = evs_options_new();
    evs_options_set_fsync(o, policy, 2);
    evs_options_set_max_segment_size(o, 4 << 20);
    evs_options_set_snapshot_every(o, 20000);
    if (!CHECK_OK(evs_open(dir, o, &g_s, NULL)))
        return tu_finish();
    for (i = 0; i < ACCOUNTS; i++) {
        char a[16];
        snprintf(a, sizeof a, "acc-%d", i);
        CHECK_OK(evs_account_open(g_s, a, OPENING, NULL, NULL));
        g_money_in += OPENING;
        g_events_acked++;
    }
    printf("stress: %d threads for %ld s under %s\n", THREADS, g_seconds,
           policy == EVS_FSYNC_ALWAYS ? "EVS_FSYNC_ALWAYS" : "EVS_FSYNC_BATCH");
    fflush(stdout);
    t0 = tu_now_us();
    for (i = 0; i < THREADS; i++) {
        void *(*fn)(void *) = i < 4    ? own_writer
                              : i < 6  ? shared_writer
                              : i < 10 ? accountant
                              : i < 12 ? reader
                              : i < 14 ? subscriber
                              : i < 15 ? snapshotter
                                       : syncer;
        if (pthread_create(&th[i], NULL, fn, (void *)(intptr_t)i) != 0) {
            printf("pthread_create failed\n");
            return 2;
        }
    }
    while (tu_now_us() - t0 < (uint64_t)g_seconds * 1000000u)
        tu_sleep_ms(50);
    g_stop = 1;
    /* writers and readers first, then let the subscribers catch up with the final log */
    for (i = 0; i < THREADS; i++)
        if (i < 12 || i >= 14)
            pthread_join(th[i], NULL);
    g_stop = 2;
    for (i = 12; i < 14; i++)
        pthread_join(th[i], NULL);
    printf("stress: %.1f s of load; %" PRIu64 " events acknowledged in %" PRIu64
           " appends and %" PRIu64 " account operations; %" PRIu64 " conflicts and %" PRIu64
           " refusals as expected; %" PRIu64 " reads of %" PRIu64 " events; %" PRIu64
           " subscriptions delivered %" PRIu64 " events; %" PRIu64 " snapshots\n",
           (double)(tu_now_us() - t0) / 1e6, g_events_acked, g_appends, g_account_ops,
           g_conflicts, g_refusals, g_reads, g_read_events, g_subs_started, g_delivered,
           g_snapshots);
    tu_check(g_violations == 0, "no thread saw a violation during the run", __FILE__, __LINE__);
    {
        /* Four threads take snapshots of the same (unchanging) state at once: each must
         * succeed (they cover the same number of events, so they write the same file). */
        pthread_t storm[4];
        unsigned long bad = 0;
        for (i = 0; i < 4; i++)
            pthread_create(&storm[i], NULL, snapshot_storm, &bad);
        for (i = 0; i < 4; i++)
            pthread_join(storm[i], NULL);
        if (bad)
            printf("%lu of 100 concurrent snapshots failed\n", bad);
        tu_check(bad == 0, "concurrent evs_snapshot calls on an unchanged store all succeed",
                 __FILE__, __LINE__);
    }
    CHECK_OK(evs_close(g_s));
    g_s = NULL;

    /* Reopen and check the whole store. */
    o = evs_options_new();
    evs_options_set_max_segment_size(o, 4 << 20);
    if (CHECK_OK(evs_open(dir, o, &g_s, NULL))) {
        int64_t total = 0;
        size_t j;
        memset(&fc, 0, sizeof fc);
        rel_state_init(&st);
        rel_check_store(g_s, &st, check_own_payload, &fc, "the store after the stress run");
        CHECK_U64(st.events, g_events_acked);
        CHECK(fc.bad_payload == 0);
        for (i = 0; i < 4; i++)
            for (k = 0; k < OWN_STREAMS; k++) {
                char name[32];
                int64_t v = -7;
                snprintf(name, sizeof name, "own-%d-%d", i, k);
                evs_stream_version(g_s, name, &v);
                CHECK_I64(v, g_own_version[i][k]);
            }
        for (j = 0; j < st.accounts.cap; j++) {
            rel_entry *en = &st.accounts.slots[j];
            if (en->key != NULL)
                total += ((rel_account *)en->val)->balance;
        }
        if (total != g_money_in - g_money_out)
            printf("money: the balances sum to %" PRId64 "; openings and deposits %" PRId64
                   " minus withdrawals %" PRId64 " = %" PRId64 "\n",
                   total, g_money_in, g_money_out, g_money_in - g_money_out);
        tu_check(total == g_money_in - g_money_out,
                 "money is conserved: sum of balances = opening + deposits - withdrawals",
                 __FILE__, __LINE__);
        rel_state_free(&st);
        CHECK_OK(evs_close(g_s));
    }
    evs_options_free(o);
    tu_cleanup_dir(root);
    rel_figure("stress_seconds", (unsigned long long)g_seconds);
    rel_figure("stress_events", g_events_acked);
    rel_figure("stress_reads", g_reads);
    rel_figure("stress_delivered", g_delivered);
    rel_figure("stress_snapshots", g_snapshots);
    rel_figure("stress_violations", g_violations);
    return tu_finish();
}
