/* evsctl: a small command-line tool over evstore's public C API.
 *
 *   evsctl STORE info                     counters and recovery report
 *   evsctl STORE append STREAM TYPE TEXT  append one event (TEXT as payload)
 *   evsctl STORE read [FROM [MAX]]        events from a position
 *   evsctl STORE last [N]                 the last N events, newest first
 *   evsctl STORE stream NAME [FROM]       one stream's events
 *   evsctl STORE account ID               an account's balance
 *   evsctl STORE snapshot                 write a snapshot now
 *   evsctl STORE metrics                  Prometheus text
 *
 * Reading commands open the store read-only, so they work beside a running writer. */
#include <evstore.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int fail(const char *what, evs_status s) {
    fprintf(stderr, "evsctl: %s: %s: %s\n", what, evs_status_name(s), evs_last_error_message());
    return 1;
}

static void print_event(const evs_event *e) {
    printf("%" PRIu64 "\t%" PRIu64 "\t%.*s@%" PRIu64 "\t%.*s\t%.*s\n", e->position, e->timestamp_us,
           (int)e->stream_len, e->stream, e->stream_version, (int)e->event_type_len, e->event_type,
           (int)e->payload_len, (const char *)e->payload);
}

static int drain(evs_cursor *c, uint64_t max) {
    evs_event e = EVS_STRUCT_INIT(evs_event);
    evs_status s;
    uint64_t n = 0;
    while (n < max && (s = evs_cursor_next(c, &e)) == EVS_OK) {
        print_event(&e);
        n++;
    }
    evs_cursor_free(c);
    return (n < max && s != EVS_END) ? fail("reading", s) : 0;
}

static int usage(void) {
    fprintf(stderr, "usage: evsctl STORE info|append STREAM TYPE TEXT|read [FROM [MAX]]|last [N]|"
                    "stream NAME [FROM]|account ID|snapshot|metrics\n");
    return 2;
}

int main(int argc, char **argv) {
    if (argc < 3) return usage();
    const char *cmd = argv[2];
    int writes = !strcmp(cmd, "append") || !strcmp(cmd, "snapshot");
    evs_options *o = evs_options_new();
    if (o == NULL) return 1;
    if (!writes) evs_options_set_read_only(o, true);
    evs_store *s = NULL;
    evs_recovery_info info = EVS_STRUCT_INIT(evs_recovery_info);
    evs_status st = evs_open(argv[1], o, &s, &info);
    evs_options_free(o);
    if (st != EVS_OK) return fail("open", st);
    int rc = 0;
    evs_cursor *c = NULL;
    if (!strcmp(cmd, "info")) {
        evs_stats x = EVS_STRUCT_INIT(evs_stats);
        if ((st = evs_stats_get(s, &x)) != EVS_OK) rc = fail("stats", st);
        else
            printf("events %" PRIu64 "\nstreams %" PRIu64 "\nbytes_on_disk %" PRIu64 "\nsegments %" PRIu64
                   "\naccounts %" PRIu64 "\nrecovered_records %" PRIu64 "\nbytes_truncated %" PRIu64
                   "\nsnapshot_position %" PRId64 "\n",
                   x.events, x.streams, x.bytes_on_disk, x.segments, x.accounts, info.valid_records,
                   info.bytes_truncated,
                   info.snapshot_position == UINT64_MAX ? (int64_t)-1 : (int64_t)info.snapshot_position);
    } else if (!strcmp(cmd, "append") && argc == 6) {
        evs_event_input in = EVS_STRUCT_INIT(evs_event_input);
        in.event_type = argv[4];
        in.payload = (const uint8_t *)argv[5];
        in.payload_len = strlen(argv[5]);
        in.schema_version = 1;
        uint64_t pos;
        if ((st = evs_append(s, argv[3], EVS_EXPECT_ANY, &in, 1, &pos, NULL)) != EVS_OK) rc = fail("append", st);
        else printf("%" PRIu64 "\n", pos);
    } else if (!strcmp(cmd, "read")) {
        uint64_t from = argc > 3 ? strtoull(argv[3], NULL, 10) : 0;
        uint64_t max = argc > 4 ? strtoull(argv[4], NULL, 10) : UINT64_MAX;
        rc = (st = evs_read_all(s, from, &c)) != EVS_OK ? fail("read", st) : drain(c, max);
    } else if (!strcmp(cmd, "last")) {
        uint64_t n = argc > 3 ? strtoull(argv[3], NULL, 10) : 10;
        rc = (st = evs_read_all_backward(s, UINT64_MAX, &c)) != EVS_OK ? fail("read", st) : drain(c, n);
    } else if (!strcmp(cmd, "stream") && argc >= 4) {
        uint64_t from = argc > 4 ? strtoull(argv[4], NULL, 10) : 0;
        rc = (st = evs_read_stream(s, argv[3], from, &c)) != EVS_OK ? fail("stream", st) : drain(c, UINT64_MAX);
    } else if (!strcmp(cmd, "account") && argc == 4) {
        evs_account a = EVS_STRUCT_INIT(evs_account);
        if ((st = evs_account_get(s, argv[3], &a)) != EVS_OK) rc = fail("account", st);
        else
            printf("%s %" PRId64 " %s%s (%" PRIu64 " events)\n", argv[3], a.balance, a.currency,
                   a.is_closed ? " closed" : "", a.version);
    } else if (!strcmp(cmd, "snapshot")) {
        uint64_t n;
        if ((st = evs_snapshot(s, &n)) != EVS_OK) rc = fail("snapshot", st);
        else printf("snapshot of %" PRIu64 " events\n", n);
    } else if (!strcmp(cmd, "metrics")) {
        char *text = NULL;
        if ((st = evs_metrics_text(s, &text)) != EVS_OK) rc = fail("metrics", st);
        else fputs(text, stdout);
        evs_string_free(text);
    } else {
        rc = usage();
    }
    st = evs_close(s);
    return rc ? rc : (st == EVS_OK ? 0 : fail("close", st));
}
