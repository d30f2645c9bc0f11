/* evsctl: the command-line shell of evstore, a client of its public C API only.
 *
 *   evsctl COMMAND [OPTIONS] STORE [ARGS]      evsctl help [COMMAND]
 *
 * Reading commands open the store read-only (no lock), so they work beside a running
 * writer. Every error prints "evsctl: COMMAND: ..." on stderr and exits non-zero:
 * 1 for a failure, 2 for a usage error; `verify` exits 1 when it finds damage. */
#define _POSIX_C_SOURCE 200809L
#include <errno.h>
#include <evstore.h>
#include <inttypes.h>
#include <pthread.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

typedef struct command command;
typedef int (*command_fn)(const command *cmd, evs_store *s, int argc, char **argv);

struct command {
    const char *name;
    const char *args;     /* after STORE */
    const char *summary;  /* one line for evsctl --help */
    const char *help;     /* one paragraph for evsctl COMMAND --help */
    bool writes;        /* opens the store read-write (takes the writer's lock) */
    int min_args, max_args;
    command_fn run;
};

static void command_usage(FILE *out, const command *c);

/* Options shared by the commands that print events. */
static bool g_json = false;
static bool g_follow = false;
static bool g_read_only = false;   /* verify --read-only */
static bool g_shared = false;      /* verify fell back to read-only: a writer has the store */
static bool g_sql = false;         /* schema --sql */
static const char *g_store = NULL; /* STORE as given (schema opens no store) */
static uint64_t g_count = 10;
static const char *g_cmd = "evsctl";
static bool g_pg = false;          /* STORE is a PostgreSQL URL: no segments, fsync or snapshots */
static bool g_progress = false;    /* stderr is a terminal: long steps show their progress there */
/* The lifecycle commands' options (delete, truncate, retention). */
static bool g_hard = false;             /* delete --hard */
static int64_t g_expected = EVS_EXPECT_ANY; /* delete --expected N */
static const char *g_category = NULL;   /* retention --category PREFIX */
static bool g_rule_given = false;       /* retention: --max-count, --max-age or --clear */
static bool g_clear = false;            /* retention --clear */
static const char *g_subject = NULL;    /* append --subject */
static uint64_t g_max_count = 0, g_max_age_s = 0;

/* The plural ending of a count: "1 event", "2 events". */
static const char *plural(uint64_t n) {
    return n == 1 ? "" : "s";
}

static int fail(const char *what, evs_status s) {
    fprintf(stderr, "evsctl: %s: %s: %s: %s\n", g_cmd, what, evs_status_name(s), evs_last_error_message());
    return 1;
}

static int fail_write(void) {
    fprintf(stderr, "evsctl: %s: writing the output failed: %s\n", g_cmd, strerror(errno));
    return 1;
}

/* A whole decimal number, or false. */
static bool parse_u64(const char *text, uint64_t *out) {
    char *end = NULL;
    if (text[0] < '0' || text[0] > '9')
        return false;
    errno = 0;
    unsigned long long v = strtoull(text, &end, 10);
    if (errno != 0 || *end != '\0')
        return false;
    *out = (uint64_t)v;
    return true;
}

static int bad_number(const char *name, const char *text) {
    fprintf(stderr, "evsctl: %s: %s must be a whole number >= 0, not '%s'\n", g_cmd, name, text);
    return 2;
}

/* ---- progress on a terminal ----
 * Only when stderr is a terminal (g_progress): one line, rewritten in place ("\r", then
 * "erase to the end of the line") and erased when the step ends, so that nothing of it
 * stays on the screen or reaches a file or a pipe. */

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static bool g_progress_shown = false;

/* The progress of a read: `n` events so far, of `total` (0: not known). Shown at once,
 * then at most four times a second. */
static void progress_events(uint64_t n, uint64_t total) {
    static double last = 0;
    double t = now_s();
    if (!g_progress || (g_progress_shown && t - last < 0.25))
        return;
    last = t;
    if (total > 0)
        fprintf(stderr, "\revsctl: %s: %" PRIu64 " of %" PRIu64 " event%s read (%d%%)\033[K", g_cmd, n, total,
                plural(total), (int)(n >= total ? 100 : n * 100 / total));
    else
        fprintf(stderr, "\revsctl: %s: %" PRIu64 " event%s read\033[K", g_cmd, n, plural(n));
    fflush(stderr);
    g_progress_shown = true;
}

/* Erases the progress line, if one was shown. */
static void progress_done(void) {
    if (g_progress_shown) {
        fputs("\r\033[K", stderr);
        fflush(stderr);
        g_progress_shown = false;
    }
}

/* While evs_open runs (a long recovery, a slow server), a thread shows the seconds it has
 * taken, from the first second on. */
typedef struct {
    pthread_mutex_t lock;
    pthread_cond_t cv;
    bool done;
    bool shown;
} open_watch;

/* Waits (w->lock held) up to `wait` seconds or until w->done; returns w->done. */
static bool watch_sleep(open_watch *w, double wait) {
    struct timespec until;
    clock_gettime(CLOCK_REALTIME, &until);
    until.tv_sec += (time_t)wait;
    until.tv_nsec += (long)((wait - (double)(long)wait) * 1e9);
    if (until.tv_nsec >= 1000000000L) {
        until.tv_sec++;
        until.tv_nsec -= 1000000000L;
    }
    pthread_cond_timedwait(&w->cv, &w->lock, &until);
    return w->done;
}

/* Ends a watch thread and erases its line if it showed one. */
static void watch_stop(open_watch *w, pthread_t thread) {
    pthread_mutex_lock(&w->lock);
    w->done = true;
    pthread_cond_signal(&w->cv);
    pthread_mutex_unlock(&w->lock);
    pthread_join(thread, NULL);
    if (w->shown) {
        fputs("\r\033[K", stderr);
        fflush(stderr);
    }
}

static void *open_watch_main(void *arg) {
    open_watch *w = arg;
    double start = now_s();
    pthread_mutex_lock(&w->lock);
    while (!w->done) {
        double elapsed = now_s() - start;
        /* wake at the next whole second of the open */
        if (watch_sleep(w, (double)((long)elapsed + 1) - elapsed))
            break;
        elapsed = now_s() - start;
        if (elapsed >= 1.0) {
            fprintf(stderr, "\revsctl: %s: opening the store: %ld s\033[K", g_cmd, (long)elapsed);
            fflush(stderr);
            w->shown = true;
        }
    }
    pthread_mutex_unlock(&w->lock);
    return NULL;
}

/* ---- printing events ---- */

static bool is_utf8(const uint8_t *p, size_t n) {
    size_t i = 0;
    while (i < n) {
        uint8_t c = p[i];
        size_t len;
        uint32_t cp;
        if (c < 0x80) {
            i++;
            continue;
        } else if ((c & 0xE0) == 0xC0) {
            len = 2, cp = c & 0x1F;
        } else if ((c & 0xF0) == 0xE0) {
            len = 3, cp = c & 0x0F;
        } else if ((c & 0xF8) == 0xF0) {
            len = 4, cp = c & 0x07;
        } else {
            return false;
        }
        if (i + len > n)
            return false;
        for (size_t k = 1; k < len; k++) {
            if ((p[i + k] & 0xC0) != 0x80)
                return false;
            cp = (cp << 6) | (p[i + k] & 0x3F);
        }
        /* overlong forms, surrogates, past U+10FFFF */
        if ((len == 2 && cp < 0x80) || (len == 3 && cp < 0x800) || (len == 4 && cp < 0x10000) ||
            (cp >= 0xD800 && cp <= 0xDFFF) || cp > 0x10FFFF)
            return false;
        i += len;
    }
    return true;
}

/* A JSON string of UTF-8 text. */
static void json_string(const char *p, size_t n) {
    putchar('"');
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)p[i];
        if (c == '"' || c == '\\')
            printf("\\%c", c);
        else if (c == '\n')
            fputs("\\n", stdout);
        else if (c == '\t')
            fputs("\\t", stdout);
        else if (c < 0x20 || c == 0x7F)
            printf("\\u%04x", c);
        else
            putchar(c);
    }
    putchar('"');
}

static void base64(const uint8_t *p, size_t n) {
    static const char abc[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    putchar('"');
    for (size_t i = 0; i < n; i += 3) {
        uint32_t v = (uint32_t)p[i] << 16;
        if (i + 1 < n)
            v |= (uint32_t)p[i + 1] << 8;
        if (i + 2 < n)
            v |= p[i + 2];
        putchar(abc[(v >> 18) & 63]);
        putchar(abc[(v >> 12) & 63]);
        putchar(i + 1 < n ? abc[(v >> 6) & 63] : '=');
        putchar(i + 2 < n ? abc[v & 63] : '=');
    }
    putchar('"');
}

/* "name":"text","name_encoding":"utf-8", or base64 when the bytes are not UTF-8. */
static void json_bytes(const char *name, const uint8_t *p, size_t n) {
    printf(",\"%s\":", name);
    bool text = is_utf8(p, n);
    if (text)
        json_string((const char *)p, n);
    else
        base64(p, n);
    printf(",\"%s_encoding\":\"%s\"", name, text ? "utf-8" : "base64");
}

static bool has_id(const evs_event *e) {
    for (size_t i = 0; i < sizeof e->id; i++)
        if (e->id[i] != 0)
            return true;
    return false;
}

static void print_event(const evs_event *e) {
    if (g_json) {
        printf("{\"position\":%" PRIu64 ",\"timestamp_us\":%" PRIu64 ",\"stream\":", e->position, e->timestamp_us);
        json_string(e->stream, e->stream_len);
        printf(",\"stream_version\":%" PRIu64 ",\"type\":", e->stream_version);
        json_string(e->event_type, e->event_type_len);
        printf(",\"schema_version\":%" PRIu32 ",\"id\":", e->schema_version);
        if (has_id(e)) {
            putchar('"');
            for (size_t i = 0; i < sizeof e->id; i++)
                printf("%02x", e->id[i]);
            putchar('"');
        } else {
            fputs("null", stdout);
        }
        json_bytes("payload", e->payload, e->payload_len);
        json_bytes("metadata", e->metadata, e->metadata_len);
        fputs(",\"subject\":", stdout);
        if (e->subject != NULL)
            json_string(e->subject, e->subject_len);
        else
            fputs("null", stdout);
        printf(",\"erased\":%s}\n", e->flags & EVS_EVENT_ERASED ? "true" : "false");
        return;
    }
    /* position, stream@version, type, payload (text, or <N bytes>); a subject's event
       also names it, and an erased one says so instead of its (empty) payload */
    printf("%" PRIu64 "\t%.*s@%" PRIu64 "\t%.*s\t", e->position, (int)e->stream_len, e->stream, e->stream_version,
           (int)e->event_type_len, e->event_type);
    if (e->subject != NULL)
        printf("[subject %.*s] ", (int)e->subject_len, e->subject);
    if (e->flags & EVS_EVENT_ERASED)
        printf("<erased: its subject was forgotten>\n");
    else if (is_utf8(e->payload, e->payload_len))
        printf("%.*s\n", (int)e->payload_len, (const char *)e->payload);
    else
        printf("<%zu bytes>\n", e->payload_len);
}

/* Prints up to `max` events of a cursor (to its end now) and frees it. With `progress`,
 * the count read so far goes to the terminal on stderr (`total`: the events expected,
 * 0 when not known). */
static int print_cursor(evs_cursor *c, uint64_t max, bool progress, uint64_t total) {
    evs_event e = EVS_STRUCT_INIT(evs_event);
    evs_status st = EVS_OK;
    uint64_t n = 0;
    if (progress)
        progress_events(0, total);
    for (; n < max && (st = evs_cursor_next(c, &e)) == EVS_OK; n++) {
        print_event(&e);
        if (progress && (n & 1023) == 1023)
            progress_events(n + 1, total);
    }
    evs_cursor_free(c);
    progress_done();
    if (st < 0)
        return fail("reading", st);
    return fflush(stdout) == 0 ? 0 : fail_write();
}

/* ---- the commands ---- */

static evs_recovery_info g_info;

static int cmd_info(const command *cmd, evs_store *s, int argc, char **argv) {
    (void)cmd, (void)argc, (void)argv;
    evs_stats x = EVS_STRUCT_INIT(evs_stats);
    evs_store_options o = EVS_STRUCT_INIT(evs_store_options);
    evs_status st;
    if ((st = evs_stats_get(s, &x)) != EVS_OK)
        return fail("stats", st);
    if ((st = evs_store_options_get(s, &o)) != EVS_OK)
        return fail("options", st);
    printf("library %s\nbackend %s\nevents %" PRIu64 "\nstreams %" PRIu64 "\naccounts %" PRIu64
           "\nevent_ids %" PRIu64 "\nbytes_on_disk %" PRIu64 "\n",
           evs_version(), g_pg ? "postgresql" : "file", x.events, x.streams, x.accounts, x.event_ids,
           x.bytes_on_disk);
    /* What deletes, truncations and retention rules removed, and what a compaction would
     * free now (evsctl compact). */
    printf("removed_events %" PRIu64 "\nlifecycle_entries %" PRIu64 "\nreclaimable_bytes %" PRIu64 "\n",
           x.removed_events, x.lifecycle_entries, x.reclaimable_bytes);
    if (g_pg) {
        /* Segments, snapshots, recovery, fsync and the dedupe window are the file store's:
         * a PostgreSQL store has none of them (its bytes are its tables'). */
        printf("max_event_size %" PRIu64 "\n", o.max_event_size);
        return fflush(stdout) == 0 ? 0 : fail_write();
    }
    static const char *const policies[] = {"always", "batch", "os"};
    printf("segments %" PRIu64 "\nsnapshots %" PRIu64 "\nindex_bytes %" PRIu64 "\n", x.segments, x.snapshots,
           x.index_bytes);
    printf("recovered_records %" PRIu64 "\nsegments_scanned %" PRIu64 "\ntorn_tail_bytes %" PRIu64 "\n",
           g_info.valid_records, g_info.segments_scanned, g_info.bytes_truncated);
    if (g_info.snapshot_position == UINT64_MAX)
        printf("snapshot_used none\n");
    else
        printf("snapshot_used %" PRIu64 " event%s\n", g_info.snapshot_position, plural(g_info.snapshot_position));
    printf("max_segment_size %" PRIu64 "\nmax_event_size %" PRIu64 "\ndedupe_window %" PRIu64 "\n",
           o.max_segment_size, o.max_event_size, o.dedupe_window);
    printf("compaction_bytes_per_second %" PRIu64 "\ncompaction_trigger_percent %" PRIu32 "\n",
           o.compaction_bytes_per_second, o.compaction_trigger_percent);
    if (o.fsync_policy >= 0 && o.fsync_policy <= 2)
        printf("fsync %s\n", policies[o.fsync_policy]);
    return fflush(stdout) == 0 ? 0 : fail_write();
}

/* Opening the store for writing runs the recovery a writer runs: it checks every record
 * of the log's tail after the newest snapshot and refuses damage that is followed by
 * valid records (EVS_ERR_CORRUPT naming the segment and offset); a torn tail of an
 * interrupted, never acknowledged write is cut off, as the next writer would. Then
 * every event is read from position 0 (the library checks each record's CRC as it reads
 * it, and reports damage as EVS_ERR_CORRUPT with the segment and offset), checking what
 * the log promises: positions growing from 0, timestamps never decreasing, and every
 * position the store counts either an event read or an empty one (a removed event, a
 * lifecycle entry: evs_stats' removed_events and lifecycle_entries), so a lost event is
 * still found. With --read-only, or when a writer has the store open, the
 * store is opened read-only and nothing is modified; a read-only open takes for the end
 * of the log only damage at the very end of the newest segment with no valid record after
 * it (it may be a write in progress), so damage there is not seen, and beside a writer
 * under EVS_FSYNC_ALWAYS it reads only up to the writer's durable mark. A PostgreSQL store has no log files, so no
 * recovery and no checksums: verify reads it read-only and checks positions, timestamps
 * and the count. On a terminal, the events read so far show on stderr. */
static int cmd_verify(const command *cmd, evs_store *s, int argc, char **argv) {
    (void)cmd, (void)argc, (void)argv;
    evs_stats x = EVS_STRUCT_INIT(evs_stats);
    evs_status st;
    if ((st = evs_stats_get(s, &x)) != EVS_OK)
        return fail("stats", st);
    evs_cursor *c = NULL;
    if ((st = evs_read_all(s, 0, &c)) != EVS_OK)
        return fail("read", st);
    evs_event e = EVS_STRUCT_INIT(evs_event);
    uint64_t n = 0, last_ts = 0, next = 0;
    int rc = 0;
    progress_events(0, x.events);
    while ((st = evs_cursor_next(c, &e)) == EVS_OK) {
        if ((n & 1023) == 1023)
            progress_events(n + 1, x.events);
        /* Positions only grow; a removed event or a lifecycle entry leaves its position
         * empty (counted below). */
        if (e.position < next) {
            progress_done();
            fprintf(stderr, "evsctl: verify: damage: event %" PRIu64 " has position %" PRIu64 ", after position %" PRIu64
                    "\n", n, e.position, next - 1);
            rc = 1;
            break;
        }
        next = e.position + 1;
        if (e.timestamp_us < last_ts) {
            progress_done();
            fprintf(stderr, "evsctl: verify: damage: the timestamp of position %" PRIu64 " goes back in time\n",
                    e.position);
            rc = 1;
            break;
        }
        last_ts = e.timestamp_us;
        n++;
    }
    evs_cursor_free(c);
    progress_done();
    if (rc != 0)
        return rc;
    if (st < 0) {
        fprintf(stderr, "evsctl: verify: damage after %" PRIu64 " good event%s: %s: %s\n", n, plural(n),
                evs_status_name(st), evs_last_error_message());
        return 1;
    }
    /* Every position the store used before the read is an event read or an empty one: a
     * removed event or a lifecycle entry, as counted after the read (events a rule by age
     * removed while it ran are counted there). A lost event is neither. */
    evs_stats y = EVS_STRUCT_INIT(evs_stats);
    if ((st = evs_stats_get(s, &y)) != EVS_OK)
        return fail("stats", st);
    uint64_t empty = y.removed_events + y.lifecycle_entries;
    if (n + empty < x.events) {
        fprintf(stderr,
                "evsctl: verify: damage: %" PRIu64 " event%s read and %" PRIu64 " empty position%s (removed events, "
                "lifecycle entries), the store has %" PRIu64 " position%s\n",
                n, plural(n), empty, plural(empty), x.events, plural(x.events));
        return 1;
    }
    if (g_pg) {
        if (empty == 0)
            printf("ok: %" PRIu64 " event%s, positions gapless from 0, timestamps in order (a PostgreSQL store: no "
                   "segments or checksums to check)\n",
                   n, plural(n));
        else
            printf("ok: %" PRIu64 " event%s, positions in order from 0 with %" PRIu64 " empty (removed events, "
                   "lifecycle entries), timestamps in order (a PostgreSQL store: no segments or checksums to check)\n",
                   n, plural(n), empty);
        return fflush(stdout) == 0 ? 0 : fail_write();
    }
    printf("ok: %" PRIu64 " event%s in %" PRIu64 " segment%s (%" PRIu64 " bytes), every checksum good\n", n,
           plural(n), x.segments, plural(x.segments), x.bytes_on_disk);
    if (empty > 0)
        printf("note: %" PRIu64 " empty position%s: %" PRIu64 " removed event%s, %" PRIu64 " lifecycle entr%s\n", empty,
               plural(empty), y.removed_events, plural(y.removed_events), y.lifecycle_entries,
               y.lifecycle_entries == 1 ? "y" : "ies");
    if (g_info.bytes_truncated > 0)
        printf("note: a torn tail of %" PRIu64 " bytes after the last event (an interrupted write, never "
               "acknowledged) %s\n",
               g_info.bytes_truncated, g_read_only || g_shared ? "is there: the next writer's open cuts it off"
                                                             : "was cut off");
    if (g_shared)
        printf("note: a writer has the store open, so it was checked read-only: damage at the end of its newest "
               "segment cannot be told from a write in progress\n");
    else if (g_read_only)
        printf("note: checked read-only: damage at the end of the newest segment cannot be told from an "
               "interrupted write (run verify without --read-only, with no writer, to check that too)\n");
    return fflush(stdout) == 0 ? 0 : fail_write();
}

static volatile sig_atomic_t g_stop = 0;
static void on_signal(int sig) {
    (void)sig;
    g_stop = 1;
}

static int cmd_tail(const command *cmd, evs_store *s, int argc, char **argv) {
    (void)cmd, (void)argc, (void)argv;
    evs_cursor *c = NULL;
    evs_status st;
    uint64_t next = 0;
    if ((st = evs_position_at(s, UINT64_MAX, &next)) != EVS_OK)
        return fail("position", st);
    uint64_t from = next > g_count ? next - g_count : 0;
    if ((st = evs_read_all(s, from, &c)) != EVS_OK)
        return fail("read", st);
    if (!g_follow)
        return print_cursor(c, g_count, false, 0);

    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_signal;
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
    /* A forward cursor tails the log: EVS_END is "no more now". A read-only store takes
     * in a writer's new events on later reads; poll every 100 ms. */
    evs_event e = EVS_STRUCT_INIT(evs_event);
    while (!g_stop) {
        st = evs_cursor_next(c, &e);
        if (st == EVS_OK) {
            print_event(&e);
            continue;
        }
        if (st < 0) {
            evs_cursor_free(c);
            return fail("reading", st);
        }
        if (fflush(stdout) != 0) {
            evs_cursor_free(c);
            return fail_write();
        }
        struct timespec ts = {0, 100 * 1000 * 1000};
        nanosleep(&ts, NULL);
    }
    evs_cursor_free(c);
    return fflush(stdout) == 0 ? 0 : fail_write();
}

/* dump [FROM] (every event) and stream NAME [FROM] (one stream's). The progress shows
 * only while the events go elsewhere than the terminal (stdout redirected): on the
 * terminal they show themselves. */
static int cmd_read(const command *cmd, evs_store *s, int argc, char **argv) {
    bool one_stream = !strcmp(cmd->name, "stream");
    int at = one_stream ? 1 : 0;
    uint64_t from = 0;
    if (argc > at && !parse_u64(argv[at], &from))
        return bad_number("FROM", argv[at]);
    bool progress = g_progress && !isatty(STDOUT_FILENO);
    uint64_t total = 0;
    evs_stats x = EVS_STRUCT_INIT(evs_stats);
    if (progress && !one_stream && evs_stats_get(s, &x) == EVS_OK && x.events > from)
        total = x.events - from;
    evs_cursor *c = NULL;
    evs_status st = one_stream ? evs_read_stream(s, argv[0], from, &c) : evs_read_all(s, from, &c);
    return st != EVS_OK ? fail("read", st) : print_cursor(c, UINT64_MAX, progress, total);
}

/* Calls f for each stream whose name starts with prefix ("" for all). */
static int each_stream(evs_store *s, const char *prefix, int (*f)(evs_store *, const evs_stream_info *)) {
    evs_stream_list *list = NULL;
    evs_status st = evs_list_streams(s, &list);
    if (st != EVS_OK)
        return fail("list streams", st);
    evs_stream_info info = EVS_STRUCT_INIT(evs_stream_info);
    size_t plen = strlen(prefix);
    int rc = 0;
    while (rc == 0 && (st = evs_stream_list_next(list, &info)) == EVS_OK)
        if (info.name_len >= plen && memcmp(info.name, prefix, plen) == 0)
            rc = f(s, &info);
    evs_stream_list_free(list);
    if (rc != 0)
        return rc;
    if (st < 0)
        return fail("list streams", st);
    return fflush(stdout) == 0 ? 0 : fail_write();
}

static int print_stream(evs_store *s, const evs_stream_info *info) {
    (void)s;
    if (g_json) {
        fputs("{\"name\":", stdout);
        json_string(info->name, info->name_len);
        printf(",\"version\":%" PRIu64 ",\"events\":%" PRIu64 ",\"first_position\":%" PRIu64 "}\n", info->version,
               info->version + 1, info->first_position);
    } else {
        printf("%.*s\t%" PRIu64 " event%s\tfrom position %" PRIu64 "\n", (int)info->name_len, info->name,
               info->version + 1, plural(info->version + 1), info->first_position);
    }
    return 0;
}

static int cmd_streams(const command *cmd, evs_store *s, int argc, char **argv) {
    (void)cmd, (void)argc, (void)argv;
    return each_stream(s, "", print_stream);
}

static void print_account(const char *id, size_t id_len, const evs_account *a) {
    if (g_json) {
        fputs("{\"id\":", stdout);
        json_string(id, id_len);
        printf(",\"balance\":%" PRId64 ",\"currency\":\"%s\",\"closed\":%s,\"events\":%" PRIu64
               ",\"last_position\":%" PRIu64 "}\n",
               a->balance, a->currency, a->is_closed ? "true" : "false", a->version, a->last_position);
    } else {
        printf("%.*s\t%" PRId64 " %s%s\t%" PRIu64 " event%s\n", (int)id_len, id, a->balance, a->currency,
               a->is_closed ? " (closed)" : "", a->version, plural(a->version));
    }
}

/* The account domain keeps account ID's events in the stream "account-ID". */
static const char k_account_prefix[] = "account-";

static int print_account_stream(evs_store *s, const evs_stream_info *info) {
    size_t skip = sizeof k_account_prefix - 1;
    char *id = malloc(info->name_len - skip + 1);
    if (id == NULL) {
        fprintf(stderr, "evsctl: %s: out of memory\n", g_cmd);
        return 1;
    }
    memcpy(id, info->name + skip, info->name_len - skip);
    id[info->name_len - skip] = '\0';
    evs_account a = EVS_STRUCT_INIT(evs_account);
    evs_status st = evs_account_get(s, id, &a);
    int rc = 0;
    if (st == EVS_OK)
        print_account(id, info->name_len - skip, &a);
    else if (st != EVS_ERR_NOT_FOUND) /* a stream named account-... that is no account */
        rc = fail("account", st);
    free(id);
    return rc;
}

static int cmd_accounts(const command *cmd, evs_store *s, int argc, char **argv) {
    (void)cmd, (void)argc, (void)argv;
    return each_stream(s, k_account_prefix, print_account_stream);
}

static int cmd_account(const command *cmd, evs_store *s, int argc, char **argv) {
    (void)cmd, (void)argc;
    evs_account a = EVS_STRUCT_INIT(evs_account);
    evs_status st = evs_account_get(s, argv[0], &a);
    if (st != EVS_OK)
        return fail("account", st);
    print_account(argv[0], strlen(argv[0]), &a);
    return fflush(stdout) == 0 ? 0 : fail_write();
}

/* Prints a string the library returned (st: its status) and frees it. */
static int print_string(const char *what, evs_status st, char *text) {
    if (st != EVS_OK)
        return fail(what, st);
    int ok = fputs(text, stdout) >= 0 && fflush(stdout) == 0;
    evs_string_free(text);
    return ok ? 0 : fail_write();
}

static int cmd_metrics(const command *cmd, evs_store *s, int argc, char **argv) {
    (void)cmd, (void)argc, (void)argv;
    char *text = NULL;
    evs_status st = evs_metrics_text(s, &text);
    return print_string("metrics", st, text);
}

static int cmd_snapshot(const command *cmd, evs_store *s, int argc, char **argv) {
    (void)cmd, (void)argc, (void)argv;
    uint64_t n = 0;
    evs_status st = evs_snapshot(s, &n);
    if (st != EVS_OK)
        return fail("snapshot", st);
    printf("snapshot of %" PRIu64 " event%s written\n", n, plural(n));
    return fflush(stdout) == 0 ? 0 : fail_write();
}

static int cmd_append(const command *cmd, evs_store *s, int argc, char **argv) {
    (void)cmd, (void)argc;
    evs_event_input in = EVS_STRUCT_INIT(evs_event_input);
    in.event_type = argv[1];
    in.payload = (const uint8_t *)argv[2];
    in.payload_len = strlen(argv[2]);
    in.subject = g_subject;
    uint64_t pos = 0;
    evs_status st = evs_append(s, argv[0], EVS_EXPECT_ANY, &in, 1, &pos, NULL);
    if (st != EVS_OK)
        return fail("append", st);
    printf("%" PRIu64 "\n", pos);
    return fflush(stdout) == 0 ? 0 : fail_write();
}

/* ---- lifecycle: delete, truncate, retention, compact (docs/lifecycle.md) ---- */

/* delete STREAM [--hard] [--expected N]: the stream's events leave every read now. */
static int cmd_delete(const command *cmd, evs_store *s, int argc, char **argv) {
    (void)cmd, (void)argc;
    uint64_t pos = 0;
    evs_status st = evs_delete_stream(s, argv[0], g_expected, g_hard ? EVS_DELETE_HARD : EVS_DELETE_SOFT, NULL, &pos);
    if (st != EVS_OK)
        return fail("delete", st);
    printf("deleted stream '%s' (%s) at position %" PRIu64 "\n", argv[0],
           g_hard ? "hard: the name is refused from now on" : "soft: appending to it again continues its versions",
           pos);
    return fflush(stdout) == 0 ? 0 : fail_write();
}

/* forget SUBJECT: the subject's key is destroyed; its events read as erased. */
static int cmd_forget(const command *cmd, evs_store *s, int argc, char **argv) {
    (void)cmd, (void)argc;
    uint64_t pos = 0;
    evs_status st = evs_forget_subject(s, argv[0], &pos);
    if (st != EVS_OK)
        return fail("forget", st);
    printf("forgot subject '%s' at position %" PRIu64 ": its key is destroyed and its events read as erased\n",
           argv[0], pos);
    return fflush(stdout) == 0 ? 0 : fail_write();
}

/* subjects: every data subject with its event count (never a key). */
static int cmd_subjects(const command *cmd, evs_store *s, int argc, char **argv) {
    (void)cmd, (void)argc, (void)argv;
    evs_subject_list *l = NULL;
    evs_subject_info i = EVS_STRUCT_INIT(evs_subject_info);
    evs_status st = evs_list_subjects(s, &l);
    if (st != EVS_OK)
        return fail("subjects", st);
    while ((st = evs_subject_list_next(l, &i)) == EVS_OK) {
        if (g_json) {
            fputs("{\"subject\":", stdout);
            json_string(i.name, i.name_len);
            printf(",\"events\":%" PRIu64 ",\"forgotten_at\":", i.events);
            if (i.forgotten)
                printf("%" PRIu64 "}\n", i.forgotten_at);
            else
                fputs("null}\n", stdout);
        } else if (i.forgotten) {
            printf("%.*s\t%" PRIu64 " event%s\tforgotten at position %" PRIu64 "\n", (int)i.name_len, i.name,
                   i.events, plural(i.events), i.forgotten_at);
        } else {
            printf("%.*s\t%" PRIu64 " event%s\n", (int)i.name_len, i.name, i.events, plural(i.events));
        }
    }
    evs_subject_list_free(l);
    if (st != EVS_END)
        return fail("subjects", st);
    return fflush(stdout) == 0 ? 0 : fail_write();
}

/* truncate STREAM VERSION: the stream's events with a version below VERSION leave. */
static int cmd_truncate(const command *cmd, evs_store *s, int argc, char **argv) {
    (void)cmd, (void)argc;
    uint64_t before = 0, pos = 0;
    if (!parse_u64(argv[1], &before))
        return bad_number("VERSION", argv[1]);
    evs_status st = evs_truncate_stream(s, argv[0], before, NULL, &pos);
    if (st != EVS_OK)
        return fail("truncate", st);
    printf("truncated stream '%s' before version %" PRIu64 " at position %" PRIu64 "\n", argv[0], before, pos);
    return fflush(stdout) == 0 ? 0 : fail_write();
}

static void print_rule(const char *what, const char *name, const evs_retention *r) {
    printf("%s '%s': ", what, name);
    if (r->max_count == 0 && r->max_age_us == 0) {
        puts("no rule");
        return;
    }
    if (r->max_count > 0)
        printf("max_count %" PRIu64 "%s", r->max_count, r->max_age_us > 0 ? ", " : "");
    if (r->max_age_us > 0) {
        if (r->max_age_us % 1000000 == 0)
            printf("max_age %" PRIu64 " s", r->max_age_us / 1000000);
        else
            printf("max_age %" PRIu64 " us", r->max_age_us);
    }
    putchar('\n');
}

/* retention STREAM | --category PREFIX [--max-count N] [--max-age SECONDS] [--clear]:
 * sets or clears the rule; with none of those options, shows the rule in force for
 * STREAM (or the one set on PREFIX) read-only. */
static int cmd_retention(const command *cmd, evs_store *s, int argc, char **argv) {
    (void)cmd;
    const char *target = g_category != NULL ? g_category : argv[0];
    uint32_t flags = g_category != NULL ? EVS_RETENTION_CATEGORY : 0;
    const char *what = g_category != NULL ? "category" : "stream";
    (void)argc;
    evs_retention r = EVS_STRUCT_INIT(evs_retention);
    evs_status st;
    if (!g_rule_given) {
        if ((st = evs_get_retention(s, target, flags, &r)) != EVS_OK)
            return fail("retention", st);
        print_rule(what, target, &r);
        return fflush(stdout) == 0 ? 0 : fail_write();
    }
    r.max_count = g_max_count;
    r.max_age_us = g_max_age_s * UINT64_C(1000000);
    uint64_t pos = 0;
    if ((st = evs_set_retention(s, target, flags, g_clear ? NULL : &r, NULL, &pos)) != EVS_OK)
        return fail("retention", st);
    if (g_clear)
        printf("%s '%s': rule cleared at position %" PRIu64 "\n", what, target, pos);
    else {
        print_rule(what, target, &r);
        printf("set at position %" PRIu64 "\n", pos);
    }
    return fflush(stdout) == 0 ? 0 : fail_write();
}

/* While evs_compact runs on a terminal, a thread shows how much of what was reclaimable
 * when it began is freed (evs_stats' reclaimable_bytes), at once and then four times a
 * second. */
typedef struct {
    open_watch w;
    evs_store *s;
    uint64_t total;
} compact_watch;

/* The progress line: `left` of what was reclaimable at the start still to free. */
static void compact_progress(const compact_watch *cw, uint64_t left, long elapsed) {
    if (left > cw->total)
        left = cw->total;
    if (cw->total > 0)
        fprintf(stderr, "\revsctl: compact: %" PRIu64 " of %" PRIu64 " reclaimable bytes freed (%d%%), %ld s\033[K",
                cw->total - left, cw->total, (int)((cw->total - left) * 100 / cw->total), elapsed);
    else
        fprintf(stderr, "\revsctl: compact: compacting, %ld s\033[K", elapsed);
    fflush(stderr);
}

static void *compact_watch_main(void *arg) {
    compact_watch *cw = arg;
    double start = now_s();
    pthread_mutex_lock(&cw->w.lock);
    while (!watch_sleep(&cw->w, 0.25)) {
        evs_stats x = EVS_STRUCT_INIT(evs_stats);
        if (evs_stats_get(cw->s, &x) == EVS_OK)
            compact_progress(cw, x.reclaimable_bytes, (long)(now_s() - start));
    }
    pthread_mutex_unlock(&cw->w.lock);
    return NULL;
}

/* compact: evs_compact, then what it did. */
static int cmd_compact(const command *cmd, evs_store *s, int argc, char **argv) {
    (void)cmd, (void)argc, (void)argv;
    compact_watch cw = {{PTHREAD_MUTEX_INITIALIZER, PTHREAD_COND_INITIALIZER, false, false}, s, 0};
    evs_stats x = EVS_STRUCT_INIT(evs_stats);
    evs_compact_info info = EVS_STRUCT_INIT(evs_compact_info);
    pthread_t watcher;
    bool watching = false;
    if (g_progress) {
        if (evs_stats_get(s, &x) == EVS_OK)
            cw.total = x.reclaimable_bytes;
        /* shown at once, before the compaction starts; then by the thread */
        compact_progress(&cw, cw.total, 0);
        cw.w.shown = true;
        watching = pthread_create(&watcher, NULL, compact_watch_main, &cw) == 0;
    }
    evs_status st = evs_compact(s, &info);
    if (watching) {
        watch_stop(&cw.w, watcher);
    } else if (cw.w.shown) {
        fputs("\r\033[K", stderr);
        fflush(stderr);
    }
    if (st != EVS_OK)
        return fail("compact", st);
    /* PostgreSQL counts the rows (chunks of events) it deleted or rewrote. */
    const char *unit = g_pg ? "row" : "segment";
    printf("compacted: %" PRIu64 " %s%s %s, %" PRIu64 " bytes before, %" PRIu64 " after, %" PRIu64
           " removed event%s erased, in %" PRIu64 " ms\n",
           info.segments_rewritten, unit, plural(info.segments_rewritten), g_pg ? "deleted or rewritten" : "rewritten",
           info.bytes_before, info.bytes_after, info.events_erased, plural(info.events_erased),
           info.duration_us / 1000);
    return fflush(stdout) == 0 ? 0 : fail_write();
}

/* ---- consumers ---- */

/* The seconds of `us` microseconds, as "12.345". */
static void print_seconds(uint64_t us) {
    printf("%" PRIu64 ".%03" PRIu64, us / 1000000u, us % 1000000u / 1000u);
}

/* `us` microseconds since the Unix epoch as ISO 8601 UTC with microseconds. */
static void print_time(uint64_t us) {
    time_t t = (time_t)(us / 1000000u);
    struct tm tm;
    char buf[32];
    if (gmtime_r(&t, &tm) == NULL || strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%S", &tm) == 0)
        printf("@%" PRIu64 "us", us);
    else
        printf("%s.%06" PRIuMAX "Z", buf, (uintmax_t)(us % 1000000u));
}

/* Days from 1970-01-01 to the civil date y-m-d (proleptic Gregorian). */
static int64_t days_from_civil(int64_t y, int64_t m, int64_t d) {
    y -= m <= 2;
    int64_t era = (y >= 0 ? y : y - 399) / 400;
    int64_t yoe = y - era * 400;
    int64_t doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1;
    int64_t doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    return era * 146097 + doe - 719468;
}

/* A time for --to-time: ISO 8601 in UTC (2026-12-07T09:30:00Z, with an optional fraction
 * of a second) or @SECONDS since the Unix epoch; microseconds since the epoch, or false. */
static bool parse_time(const char *text, uint64_t *out_us) {
    if (text[0] == '@') {
        uint64_t secs;
        if (!parse_u64(text + 1, &secs) || secs > UINT64_MAX / 1000000u)
            return false;
        *out_us = secs * 1000000u;
        return true;
    }
    int y, mo, d, h, mi, sec, n = 0;
    if (sscanf(text, "%4d-%2d-%2dT%2d:%2d:%2d%n", &y, &mo, &d, &h, &mi, &sec, &n) != 6 || n != 19)
        return false;
    if (y < 1970 || mo < 1 || mo > 12 || d < 1 || d > 31 || h > 23 || mi > 59 || sec > 60)
        return false;
    const char *p = text + n;
    uint64_t frac = 0, scale = 1000000u;
    if (*p == '.') {
        p++;
        if (*p < '0' || *p > '9')
            return false;
        for (; *p >= '0' && *p <= '9'; p++) {
            if (scale > 1) {
                scale /= 10;
                frac += (uint64_t)(*p - '0') * scale;
            }
        }
    }
    if (strcmp(p, "Z") != 0)
        return false;
    int64_t secs = days_from_civil(y, mo, d) * 86400 + h * 3600 + mi * 60 + sec;
    *out_us = (uint64_t)secs * 1000000u + frac;
    return true;
}

static int consumers_list(evs_store *s) {
    evs_consumer_list *l = NULL;
    evs_status st = evs_list_consumers(s, &l);
    if (st != EVS_OK)
        return fail("listing the consumers", st);
    size_t n = evs_consumer_list_count(l);
    for (size_t i = 0; i < n; i++) {
        evs_consumer_info c = EVS_STRUCT_INIT(evs_consumer_info);
        st = evs_consumer_list_get(l, i, &c);
        if (st != EVS_OK) {
            evs_consumer_list_free(l);
            return fail("listing the consumers", st);
        }
        if (g_json) {
            fputs("{\"name\":", stdout);
            json_string(c.name, strlen(c.name));
            printf(",\"next_position\":%" PRIu64 ",\"lag_events\":%" PRIu64 ",\"lag_seconds\":", c.next_position,
                   c.lag_events);
            print_seconds(c.lag_us);
            printf(",\"parked\":%" PRIu64 ",\"open\":%s}\n", c.parked, c.open ? "true" : "false");
        } else {
            printf("%s\tnext %" PRIu64 "\tlag %" PRIu64 " event%s, ", c.name, c.next_position, c.lag_events,
                   plural(c.lag_events));
            print_seconds(c.lag_us);
            printf(" s\t%" PRIu64 " parked\t%s\n", c.parked, c.open ? "open" : "closed");
        }
    }
    evs_consumer_list_free(l);
    return fflush(stdout) == 0 ? 0 : fail_write();
}

static int consumers_parked(evs_store *s, const char *name) {
    evs_parked_list *l = NULL;
    evs_status st = evs_list_parked(s, name, &l);
    if (st != EVS_OK)
        return fail("listing the parked events", st);
    size_t n = evs_parked_list_count(l);
    for (size_t i = 0; i < n; i++) {
        evs_parked_event p = EVS_STRUCT_INIT(evs_parked_event);
        st = evs_parked_list_get(l, i, &p);
        if (st != EVS_OK) {
            evs_parked_list_free(l);
            return fail("listing the parked events", st);
        }
        if (g_json) {
            printf("{\"position\":%" PRIu64 ",\"parked_at_us\":%" PRIu64 ",\"reason\":", p.position, p.parked_at_us);
            json_string(p.reason, strlen(p.reason));
            fputs("}\n", stdout);
        } else {
            printf("%" PRIu64 "\t", p.position);
            print_time(p.parked_at_us);
            printf("\t%s\n", p.reason);
        }
    }
    evs_parked_list_free(l);
    return fflush(stdout) == 0 ? 0 : fail_write();
}

static int consumers_usage(const command *cmd, const char *why) {
    fprintf(stderr, "evsctl: consumers: %s\n", why);
    command_usage(stderr, cmd);
    return 2;
}

/* consumers STORE [list | parked NAME | delete NAME | reset NAME --to-position N | --to-time T] */
static int cmd_consumers(const command *cmd, evs_store *s, int argc, char **argv) {
    const char *sub = argc > 0 ? argv[0] : "list";
    if (!strcmp(sub, "list")) {
        if (argc > 1)
            return consumers_usage(cmd, "list takes no arguments");
        return consumers_list(s);
    }
    if (strcmp(sub, "parked") && strcmp(sub, "delete") && strcmp(sub, "reset")) {
        fprintf(stderr, "evsctl: consumers: no subcommand '%s' (list, parked, delete, reset)\n", sub);
        return 2;
    }
    if (argc < 2)
        return consumers_usage(cmd, "NAME is missing");
    const char *name = argv[1];
    if (!strcmp(sub, "parked"))
        return argc == 2 ? consumers_parked(s, name) : consumers_usage(cmd, "parked takes one NAME");
    if (!strcmp(sub, "delete")) {
        if (argc != 2)
            return consumers_usage(cmd, "delete takes one NAME");
        evs_status st = evs_consumer_delete(s, name);
        if (st != EVS_OK)
            return fail("delete", st);
        printf("consumer %s deleted\n", name);
        return fflush(stdout) == 0 ? 0 : fail_write();
    }
    /* reset NAME --to-position N | --to-time T */
    if (argc != 4 || (strcmp(argv[2], "--to-position") && strcmp(argv[2], "--to-time")))
        return consumers_usage(cmd, "reset needs NAME and --to-position N or --to-time T");
    uint64_t position = 0;
    if (!strcmp(argv[2], "--to-position")) {
        if (!parse_u64(argv[3], &position))
            return bad_number("N", argv[3]);
    } else {
        uint64_t us = 0;
        if (!parse_time(argv[3], &us)) {
            fprintf(stderr,
                    "evsctl: consumers: T must be a time in UTC as 2026-12-07T09:30:00Z (a fraction of a second "
                    "may follow the seconds) or @SECONDS since the Unix epoch, not '%s'\n",
                    argv[3]);
            return 2;
        }
        evs_status st = evs_position_at(s, us, &position);
        if (st != EVS_OK)
            return fail("finding the position of the time", st);
    }
    evs_status st = evs_consumer_reset(s, name, position);
    if (st != EVS_OK)
        return fail("reset", st);
    printf("consumer %s reset: next position %" PRIu64 "\n", name, position);
    return fflush(stdout) == 0 ? 0 : fail_write();
}

/* schema --sql URL: the SQL that creates or migrates a PostgreSQL store's schema to the
 * library's version (evs_schema_sql); nothing is executed and no store is opened. */
static int cmd_schema(const command *cmd, evs_store *s, int argc, char **argv) {
    (void)cmd, (void)s, (void)argc, (void)argv;
    if (!g_sql) {
        fprintf(stderr, "evsctl: schema: --sql is needed (it prints the SQL; evsctl runs none)\n");
        return 2;
    }
    char *sql = NULL;
    evs_status st = evs_schema_sql(g_store, &sql);
    return print_string("schema", st, sql);
}

static const command k_commands[] = {
    {"info", "", "counters, options and what opening found",
     "Counters, options, and what opening the store found (records recovered, a torn tail, the snapshot used). "
     "A PostgreSQL store shows its counters and event size limit only: segments, snapshots, recovery and fsync "
     "belong to the file store.",
     false, 0, 0, cmd_info},
    {"verify", "", "check every record's CRC; exit 1 at the first damage",
     "Runs a writer's recovery (unless --read-only, or a writer has the store open), then reads every record from "
     "the first, checking each one's CRC, and checks that positions grow, timestamps never go back and every "
     "position is an event or an empty one (a removed event or a lifecycle entry, as the store counts them). "
     "Prints the first damage (its segment and offset) on stderr and exits 1; prints a summary and exits 0 when "
     "the log is whole. A torn tail (an interrupted write, never acknowledged) is not damage: it is reported, and "
     "cut off as the next writer's open would. A PostgreSQL store is read (never opened for writing) and its "
     "positions, timestamps and count checked: it has no log files or checksums. On a terminal, the events read "
     "so far show on stderr.",
     false, 0, 0, cmd_verify},
    {"tail", "", "the last events; -f: follow the log",
     "The last N events (-n N, default 10); with -f, then follows the log, printing events as a writer appends "
     "them, until interrupted (SIGINT or SIGTERM: exit 0).",
     false, 0, 0, cmd_tail},
    {"dump", "[FROM]", "every event from a position",
     "Every event from position FROM (default 0), one a line: position, stream@version, type, payload (as text "
     "when it is UTF-8, else its size). With --json: one JSON object per line; payload and metadata as text when "
     "they are UTF-8, else base64 (payload_encoding and metadata_encoding say which), the id as hex or null. "
     "When stdout is not the terminal but stderr is, the events written so far show on stderr.",
     false, 0, 1, cmd_read},
    {"streams", "", "every stream with its size",
     "Every stream, in creation order, with its number of events and first position.", false, 0, 0, cmd_streams},
    {"stream", "NAME [FROM]", "one stream's events", "The events of stream NAME from version FROM (default 0).",
     false, 1, 2, cmd_read},
    {"accounts", "", "every account with its balance",
     "Every account (the streams account-ID) with its balance, currency and number of events.", false, 0, 0,
     cmd_accounts},
    {"account", "ID", "one account", "One account: balance, currency, number of events.", false, 1, 1, cmd_account},
    {"metrics", "", "Prometheus text", "The store's counters in the Prometheus text exposition format.", false, 0,
     0, cmd_metrics},
    {"consumers", "[SUBCOMMAND]", "durable consumers: list, parked, reset, delete",
     "Durable consumers (docs/consumers.md). With no subcommand or 'list': every consumer, one a line: name, next "
     "position (its checkpoint), lag in events and in seconds (the age of the first event after its checkpoint), "
     "events parked, and whether it is open now (in any process). 'parked NAME': the consumer's parked events: "
     "position, when it was parked (UTC), reason. 'reset NAME --to-position N' or 'reset NAME --to-time T' (T in "
     "UTC as 2026-12-07T09:30:00Z, or @SECONDS since the Unix epoch): the consumer is next given the events from "
     "N, or from the first event after T. 'delete NAME': forgets its checkpoint and parked events. Reset and "
     "delete refuse a consumer that is open (EVS_ERR_LOCKED). The store is opened read-only, so these work beside "
     "a running writer: a reset or delete is kept in the consumer's journal in STORE/consumers/, which the writer "
     "obeys. --json: one JSON object per line.",
     false, 0, 4, cmd_consumers},
    {"snapshot", "", "write a snapshot now",
     "Writes a snapshot of the indexes and accounts now. Opens the store for writing: no other writer may have "
     "it open.",
     true, 0, 0, cmd_snapshot},
    {"append", "STREAM TYPE TEXT", "append one event",
     "Appends one event of type TYPE to STREAM with TEXT as its payload, and prints its position. --subject S: "
     "the event names data subject S (its payload is stored encrypted with S's key; see forget). Opens the store "
     "for writing.",
     true, 3, 3, cmd_append},
    {"delete", "STREAM", "delete a stream (soft, or --hard)",
     "Deletes STREAM: its events leave every read now (their bytes at the next compaction). Soft by default: the "
     "stream does not exist until it is appended to again, and then continues its versions. --hard: a tombstone, "
     "the name is refused from then on. --expected N: only if the stream's version is N. Prints the position of "
     "the delete's entry in the log. Opens the store for writing.",
     true, 1, 1, cmd_delete},
    {"truncate", "STREAM VERSION", "remove a stream's events below VERSION",
     "Removes STREAM's events with a version below VERSION (at most its version + 1); the rest read as before. "
     "Prints the position of the entry in the log. Opens the store for writing.",
     true, 2, 2, cmd_truncate},
    {"retention", "STREAM", "show or set a retention rule",
     "With --max-count N (keep the last N events) and/or --max-age SECONDS (remove events older than that), sets "
     "the retention rule of STREAM, or with --category PREFIX (and no STREAM) of every stream whose name starts "
     "with PREFIX; --clear removes the rule. These open the store for writing. With none of them, shows the rule "
     "in force for STREAM (its own, else its longest matching category's), or the one set on PREFIX, read-only.",
     false, 0, 1, cmd_retention},
    {"forget", "SUBJECT", "forget a data subject (crypto-shredding)",
     "Forgets data subject SUBJECT (README \"Personal data\"): its key is destroyed, so its events read as erased "
     "(payload and metadata empty; stream, type, position and version stay) in every process from now on, and "
     "no new event may name it. Prints the position of the forget's entry in the log. Opens the store for "
     "writing.",
     true, 1, 1, cmd_forget},
    {"subjects", "", "every data subject with its event count",
     "Every data subject that events named, in name order, with its number of events and, if it was forgotten, "
     "the position of its forget (never a key). --json: one JSON object per line.",
     false, 0, 0, cmd_subjects},
    {"compact", "", "erase removed events' bytes now",
     "Compacts now: on a file store every segment holding a removed event is rewritten without it (the active "
     "segment sealed first if it holds one), so that afterwards no file holds a removed event; on PostgreSQL the "
     "rows that retention rules by age removed are deleted. Prints what was done: segments rewritten (rows on "
     "PostgreSQL) and their bytes before and after, events erased, time. On a terminal, the reclaimable bytes freed so far show on "
     "stderr. Opens the store for writing.",
     true, 0, 0, cmd_compact},
    {"schema", "", "the SQL for a PostgreSQL schema (--sql)",
     "Prints the SQL that creates the PostgreSQL schema of the store at URL (a postgresql:// URL), or migrates it "
     "to this library's version: the statements a writable open would run, in one transaction, with the grants the "
     "URL's user needs. Nothing is executed: review it, run it as a role that may create schemas (psql -v "
     "ON_ERROR_STOP=1 -f FILE), and let the application open the store with migrate=false in its URL. Only "
     "comments when the schema is current.",
     false, 0, 0, cmd_schema},
};
#define N_COMMANDS (sizeof k_commands / sizeof k_commands[0])

static const char *options_of(const command *c) {
    if (!strcmp(c->name, "tail"))
        return " [-n N] [-f] [--json]";
    if (!strcmp(c->name, "verify"))
        return " [--read-only]";
    if (!strcmp(c->name, "schema"))
        return " --sql";
    if (!strcmp(c->name, "delete"))
        return " [--hard] [--expected N]";
    if (!strcmp(c->name, "append"))
        return " [--subject S]";
    if (!strcmp(c->name, "retention"))
        return " [--category PREFIX] [--max-count N] [--max-age SECONDS] [--clear]";
    if (!strcmp(c->name, "dump") || !strcmp(c->name, "stream") || !strcmp(c->name, "streams") ||
        !strcmp(c->name, "accounts") || !strcmp(c->name, "account") || !strcmp(c->name, "consumers") ||
        !strcmp(c->name, "subjects"))
        return " [--json]";
    return "";
}

static void command_usage(FILE *out, const command *c) {
    fprintf(out, "usage: evsctl %s%s STORE%s%s\n\n%s\n", c->name, options_of(c), c->args[0] ? " " : "", c->args,
            c->help);
}

static void usage(FILE *out) {
    fprintf(out, "usage: evsctl COMMAND [OPTIONS] STORE [ARGS]\n"
                 "       evsctl help [COMMAND]     (or evsctl COMMAND --help)\n\n"
                 "evstore %s's shell. Commands:\n",
            evs_version());
    for (size_t i = 0; i < N_COMMANDS; i++)
        fprintf(out, "  %-9s %-17s %s%s\n", k_commands[i].name, k_commands[i].args, k_commands[i].summary,
                k_commands[i].writes ? " (writes)" : "");
    fprintf(out, "\nReading commands open the store read-only, beside a running writer. STORE is a folder, or a\n"
                 "postgresql:// URL. On a terminal, an open that takes more than a second, verify, dump and\n"
                 "compact show their progress on stderr.\n");
}

static evs_status open_store(const char *path, bool writes, evs_store **out) {
    evs_options *o = evs_options_new();
    if (o == NULL) {
        fprintf(stderr, "evsctl: %s: out of memory\n", g_cmd);
        exit(1);
    }
    open_watch w = {PTHREAD_MUTEX_INITIALIZER, PTHREAD_COND_INITIALIZER, false, false};
    pthread_t watcher;
    bool watching = g_progress && pthread_create(&watcher, NULL, open_watch_main, &w) == 0;
    evs_status st = evs_options_set_read_only(o, !writes);
    if (st == EVS_OK) {
        g_info = (evs_recovery_info)EVS_STRUCT_INIT(evs_recovery_info);
        st = evs_open(path, o, out, &g_info);
    }
    evs_options_free(o);
    if (watching)
        watch_stop(&w, watcher);
    return st;
}

static const command *find_command(const char *name) {
    for (size_t i = 0; i < N_COMMANDS; i++)
        if (!strcmp(k_commands[i].name, name))
            return &k_commands[i];
    return NULL;
}

int main(int argc, char **argv) {
    if (argc < 2) {
        fprintf(stderr, "evsctl: a COMMAND is needed\n");
        usage(stderr);
        return 2;
    }
    if (!strcmp(argv[1], "--help") || !strcmp(argv[1], "-h") || !strcmp(argv[1], "help")) {
        if (argc > 2 && strcmp(argv[1], "help") == 0) {
            const command *c = find_command(argv[2]);
            if (c == NULL) {
                fprintf(stderr, "evsctl: help: no command '%s'\n", argv[2]);
                return 2;
            }
            command_usage(stdout, c);
        } else {
            usage(stdout);
        }
        return 0;
    }
    if (!strcmp(argv[1], "--version")) {
        printf("evsctl %s\n", evs_version());
        return 0;
    }
    const command *cmd = find_command(argv[1]);
    if (cmd == NULL) {
        fprintf(stderr, "evsctl: no command '%s' (evsctl --help lists them)\n", argv[1]);
        return 2;
    }
    g_cmd = cmd->name;

    /* Options, then STORE and the command's arguments; the lifecycle commands (no free
     * text among their arguments) also take options after them. "--" ends the options. */
    const char *opts = options_of(cmd);
    bool anywhere = cmd->run == cmd_delete || cmd->run == cmd_truncate || cmd->run == cmd_retention ||
                    cmd->run == cmd_compact;
    char **args = calloc((size_t)argc, sizeof *args);
    int nargs = -1; /* positionals after STORE */
    if (args == NULL) {
        fprintf(stderr, "evsctl: %s: out of memory\n", g_cmd);
        return 1;
    }
    bool options_end = false;
    for (int k = 2; k < argc; k++) {
        const char *a = argv[k];
        if (options_end || a[0] != '-' || a[1] == '\0' || (nargs >= 0 && !anywhere)) {
            if (!anywhere)
                options_end = true;
            args[++nargs] = argv[k];
            continue;
        }
        /* the value of an option that takes one */
        const char *value = NULL;
        bool valued = (!strcmp(a, "-n") && strstr(opts, "-n")) || (!strcmp(a, "--expected") && strstr(opts, a)) ||
                      (!strcmp(a, "--category") && strstr(opts, a)) || (!strcmp(a, "--max-count") && strstr(opts, a)) ||
                      (!strcmp(a, "--max-age") && strstr(opts, a)) || (!strcmp(a, "--subject") && strstr(opts, a));
        if (valued) {
            if (k + 1 >= argc) {
                fprintf(stderr, "evsctl: %s: %s needs a value\n", g_cmd, a);
                return 2;
            }
            value = argv[++k];
        }
        if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
            command_usage(stdout, cmd);
            return 0;
        } else if (!strcmp(a, "--")) {
            options_end = true;
        } else if (!strcmp(a, "--json") && strstr(opts, "--json")) {
            g_json = true;
        } else if (!strcmp(a, "--sql") && strstr(opts, "--sql")) {
            g_sql = true;
        } else if (!strcmp(a, "--read-only") && strstr(opts, "--read-only")) {
            g_read_only = true;
        } else if (!strcmp(a, "-f") && strstr(opts, "-f")) {
            g_follow = true;
        } else if (!strcmp(a, "--hard") && strstr(opts, "--hard")) {
            g_hard = true;
        } else if (!strcmp(a, "--clear") && strstr(opts, "--clear")) {
            g_clear = g_rule_given = true;
        } else if (!strcmp(a, "-n") && value != NULL) {
            if (!parse_u64(value, &g_count))
                return bad_number("N", value);
        } else if (!strcmp(a, "--expected") && value != NULL) {
            uint64_t v = 0;
            if (!parse_u64(value, &v) || v > (uint64_t)INT64_MAX)
                return bad_number("--expected", value);
            g_expected = (int64_t)v;
        } else if (!strcmp(a, "--subject") && value != NULL) {
            g_subject = value;
        } else if (!strcmp(a, "--category") && value != NULL) {
            g_category = value;
        } else if (!strcmp(a, "--max-count") && value != NULL) {
            if (!parse_u64(value, &g_max_count))
                return bad_number("--max-count", value);
            g_rule_given = true;
        } else if (!strcmp(a, "--max-age") && value != NULL) {
            if (!parse_u64(value, &g_max_age_s))
                return bad_number("--max-age", value);
            if (g_max_age_s > UINT64_MAX / 1000000) {
                fprintf(stderr, "evsctl: %s: --max-age %s is more seconds than a rule can hold (%" PRIu64 ")\n", g_cmd,
                        value, UINT64_MAX / 1000000);
                return 2;
            }
            g_rule_given = true;
        } else {
            fprintf(stderr, "evsctl: %s: unknown option '%s'\n", g_cmd, a);
            command_usage(stderr, cmd);
            return 2;
        }
    }
    /* --help anywhere on the line wins. */
    for (int k = 0; k <= nargs; k++) {
        if (!strcmp(args[k], "--help")) {
            command_usage(stdout, cmd);
            return 0;
        }
    }
    if (nargs < 0) {
        fprintf(stderr, "evsctl: %s: STORE is missing\n", g_cmd);
        command_usage(stderr, cmd);
        return 2;
    }
    /* retention: STREAM, or --category PREFIX without one. */
    int min_args = cmd->min_args, max_args = cmd->max_args;
    if (cmd->run == cmd_retention)
        min_args = max_args = g_category != NULL ? 0 : 1;
    if (nargs < min_args || nargs > max_args) {
        fprintf(stderr, "evsctl: %s: %s\n", g_cmd,
                cmd->run == cmd_retention ? "give a STREAM or --category PREFIX (one of them)"
                                          : "wrong number of arguments");
        command_usage(stderr, cmd);
        return 2;
    }
    if (g_clear && (g_max_count > 0 || g_max_age_s > 0)) {
        fprintf(stderr, "evsctl: %s: --clear cannot go with --max-count or --max-age\n", g_cmd);
        return 2;
    }
    if (cmd->run == cmd_retention && g_rule_given && !g_clear && g_max_count == 0 && g_max_age_s == 0) {
        fprintf(stderr, "evsctl: %s: a rule of --max-count 0 and --max-age 0 keeps everything: use --clear\n", g_cmd);
        return 2;
    }
    const char *path = args[0];
    g_pg = !strncmp(path, "postgresql://", 13) || !strncmp(path, "postgres://", 11);
    g_progress = isatty(STDERR_FILENO);
    g_store = path;
    if (cmd->run == cmd_schema)
        return cmd->run(cmd, NULL, nargs, args + 1);

    /* verify runs a writer's recovery on a file store; a PostgreSQL store has none to run,
     * and a writable open could migrate its schema: verify only reads it. */
    bool writes = cmd->writes || (cmd->run == cmd_verify && !g_read_only && !g_pg) ||
                  (cmd->run == cmd_retention && g_rule_given);
    evs_store *s = NULL;
    evs_status st = open_store(path, writes, &s);
    if (st == EVS_ERR_LOCKED && cmd->run == cmd_verify && writes) {
        g_shared = true;
        st = open_store(path, false, &s);
        writes = false;
    }
    if (st == EVS_ERR_CORRUPT && cmd->run == cmd_verify)
        return fail("damage found opening the store", st);
    if (st != EVS_OK)
        return fail(writes ? "opening for writing" : "opening read-only", st);
    int rc = cmd->run(cmd, s, nargs, args + 1);
    st = evs_close(s);
    if (st != EVS_OK && rc == 0)
        rc = fail("close", st);
    return rc;
}
