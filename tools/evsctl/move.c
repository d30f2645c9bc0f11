/* evsctl's commands that move a log between stores (docs/export-format.md):
 *
 *   evsctl export STORE [FILE]   the whole log in the portable format, to FILE or stdout
 *   evsctl import FILE STORE     an export into an empty store
 *   evsctl copy SRC DST          SRC into DST (directories or postgresql:// URLs), resumable
 *
 * Unlike the other commands, import and copy do not take STORE first, so evsctl.c hands
 * these whole command lines to evsctl_move(). Errors print "evsctl: COMMAND: ..." on
 * stderr; exit 1 for a failure, 2 for a usage error. On a terminal the progress goes to
 * stderr. */
#define _POSIX_C_SOURCE 200809L
#include "move.h"

#include <evstore.h>
#include <inttypes.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

typedef struct {
    const char *name, *args, *summary, *help;
    int nargs_min, nargs_max;
} move_command;

static const move_command k_moves[] = {
    {"export", "STORE [FILE]", "the whole log, portable",
     "Writes the whole log of STORE (a folder or a postgresql:// URL) in evstore's portable export format "
     "(docs/export-format.md: JSON lines, payloads in base64, every event with its position, time, stream, "
     "version, id, type, schema version and metadata, every delete, truncation and retention rule at its place, "
     "a header and an end line with a count and a checksum) to FILE, which must not exist, or to stdout. The "
     "store is opened read-only: a writer may run meanwhile; the export holds the log up to its next position "
     "when it began.",
     1, 2},
    {"import", "FILE STORE", "an export into an empty store",
     "Imports the export FILE into STORE (a folder, created if needed, or a postgresql:// URL), which must be "
     "empty: every event and lifecycle entry at its own position, with its own time, version and id. The file "
     "is checked whole first (a file cut short or changed is refused before anything is written).",
     2, 2},
    {"copy", "SRC DST", "SRC into DST, resumable",
     "Copies the store SRC into DST (each a folder or a postgresql:// URL), as export and import would, without "
     "a file: e.g. a folder to PostgreSQL, or back. SRC is opened read-only. DST must be empty, or an earlier "
     "copy of SRC that was interrupted: the copy then goes on from where it stopped and ends with the same log.",
     2, 2},
};

#define N_MOVES (sizeof k_moves / sizeof k_moves[0])

static const move_command *find_move(const char *name) {
    for (size_t i = 0; i < N_MOVES; i++)
        if (!strcmp(k_moves[i].name, name))
            return &k_moves[i];
    return NULL;
}

static void move_command_usage(FILE *out, const move_command *c) {
    fprintf(out, "usage: evsctl %s %s\n\n%s\n", c->name, c->args, c->help);
}

void evsctl_move_usage(FILE *out) {
    for (size_t i = 0; i < N_MOVES; i++)
        fprintf(out, "  %-9s %-17s %s%s\n", k_moves[i].name, k_moves[i].args, k_moves[i].summary,
                strcmp(k_moves[i].name, "export") ? " (writes)" : "");
}

bool evsctl_move_help(const char *name) {
    const move_command *c = find_move(name);
    if (c != NULL)
        move_command_usage(stdout, c);
    return c != NULL;
}

static int move_fail(const char *cmd, const char *what, evs_status s) {
    fprintf(stderr, "evsctl: %s: %s: %s (%s)\n", cmd, what, evs_last_error_message(), evs_status_name(s));
    return 1;
}

/* Progress on stderr, when it is a terminal. */
static void progress(void *user_data, uint64_t position, uint64_t end) {
    const char *cmd = user_data;
    unsigned pct = end > 0 ? (unsigned)(position * 100 / end) : 100;
    fprintf(stderr, "\revsctl: %s: position %" PRIu64 " of %" PRIu64 " (%u%%)\033[K", cmd, position, end, pct);
    if (position >= end)
        fputc('\n', stderr);
}

/* evs_export_to's writer: stdout. */
static int32_t to_stdout(void *user_data, const uint8_t *bytes, size_t len) {
    (void)user_data;
    return fwrite(bytes, 1, len, stdout) == len ? 0 : 1;
}

static void summary(FILE *out, const char *done, const evs_copy_info *info) {
    fprintf(out,
            "%s %" PRIu64 " event%s and %" PRIu64 " lifecycle entr%s (positions %" PRIu64 " to %" PRIu64
            ", exclusive)",
            done, info->events, info->events == 1 ? "" : "s", info->entries, info->entries == 1 ? "y" : "ies",
            info->first_position, info->next_position);
    if (info->bytes > 0)
        fprintf(out, ", %" PRIu64 " bytes", info->bytes);
    fputc('\n', out);
}

static int run_export(const char *cmd, const char *store, const char *file, const evs_copy_options *o) {
    evs_options *opts = evs_options_new();
    if (opts == NULL)
        return move_fail(cmd, "out of memory", EVS_ERR_INTERNAL);
    evs_store *s = NULL;
    evs_status st = evs_options_set_read_only(opts, true);
    if (st == EVS_OK)
        st = evs_open(store, opts, &s, NULL);
    evs_options_free(opts);
    if (st != EVS_OK)
        return move_fail(cmd, "opening read-only", st);
    evs_copy_info info = EVS_STRUCT_INIT(evs_copy_info);
    if (file != NULL)
        st = evs_export(s, file, o, &info);
    else
        st = evs_export_to(s, to_stdout, NULL, o, &info);
    int rc = 0;
    if (st != EVS_OK)
        rc = move_fail(cmd, file != NULL ? file : "stdout", st);
    else if (file == NULL && fflush(stdout) != 0)
        rc = move_fail(cmd, "writing stdout", EVS_ERR_IO);
    evs_status closed = evs_close(s);
    if (rc == 0 && closed != EVS_OK)
        rc = move_fail(cmd, "close", closed);
    if (rc == 0)
        summary(file != NULL ? stdout : stderr, "exported", &info);
    return rc;
}

static int run_import(const char *cmd, const char *file, const char *store, const evs_copy_options *o) {
    evs_store *s = NULL;
    evs_status st = evs_open(store, NULL, &s, NULL);
    if (st != EVS_OK)
        return move_fail(cmd, "opening for writing", st);
    evs_copy_info info = EVS_STRUCT_INIT(evs_copy_info);
    st = evs_import(s, file, o, &info);
    int rc = st == EVS_OK ? 0 : move_fail(cmd, file, st);
    evs_status closed = evs_close(s);
    if (rc == 0 && closed != EVS_OK)
        rc = move_fail(cmd, "close", closed);
    if (rc == 0)
        summary(stdout, "imported", &info);
    return rc;
}

bool evsctl_move(int argc, char **argv, int *rc) {
    if (argc < 2)
        return false;
    const move_command *c = find_move(argv[1]);
    if (c == NULL)
        return false;
    const char *args[3];
    int n = 0;
    for (int k = 2; k < argc; k++) {
        if (!strcmp(argv[k], "--help") || !strcmp(argv[k], "-h")) {
            move_command_usage(stdout, c);
            *rc = 0;
            return true;
        }
        if (argv[k][0] == '-' && argv[k][1] != '\0') {
            fprintf(stderr, "evsctl: %s: unknown option '%s'\n", c->name, argv[k]);
            move_command_usage(stderr, c);
            *rc = 2;
            return true;
        }
        if (n == c->nargs_max) {
            n++;
            break;
        }
        args[n++] = argv[k];
    }
    if (n < c->nargs_min || n > c->nargs_max) {
        fprintf(stderr, "evsctl: %s: wrong number of arguments\n", c->name);
        move_command_usage(stderr, c);
        *rc = 2;
        return true;
    }
    evs_copy_options o = EVS_STRUCT_INIT(evs_copy_options);
    if (isatty(STDERR_FILENO)) {
        o.progress = progress;
        o.progress_user_data = (void *)c->name;
    }
    if (!strcmp(c->name, "export")) {
        *rc = run_export(c->name, args[0], n > 1 ? args[1] : NULL, &o);
    } else if (!strcmp(c->name, "import")) {
        *rc = run_import(c->name, args[0], args[1], &o);
    } else {
        evs_copy_info info = EVS_STRUCT_INIT(evs_copy_info);
        evs_status st = evs_copy(args[0], args[1], &o, &info);
        *rc = st == EVS_OK ? 0 : move_fail(c->name, "copying", st);
        if (*rc == 0)
            summary(stdout, "copied", &info);
    }
    return true;
}
