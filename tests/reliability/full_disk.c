/*
 * full_disk.c: what the OS refuses, and damage a person (not a crash) does to a store.
 *
 *   full_disk                 (as root: mounts small tmpfs file systems of its own)
 *
 * 1. Full disk, on a 4 MiB tmpfs this program mounts (mount(2), size=4m): a ballast file
 *    takes part of it, a store appends 4 KiB events until an append fails, and then:
 *    the failure is EVS_ERR_IO with a message that says why (no space); every event
 *    acknowledged before stays readable with its exact bytes; appends still fail while the
 *    disk is full; once the ballast is deleted appends work again (within 3 s); after
 *    close and reopen every acknowledged event is there, and under EVS_FSYNC_ALWAYS none
 *    of the refused ones is. Four variants: ALWAYS and BATCH, preallocation off (the
 *    write itself fails) and on (starting the next segment fails).
 * 2. A read-only file system (the tmpfs remounted read-only, which binds root too): a
 *    writable open fails with EVS_ERR_IO and a message; a read-only open reads every event.
 * 3. A read-only directory for a user who is not root (root ignores permission bits): this
 *    program runs itself as uid/gid 65534: opening the store for writing and creating a
 *    store in a read-only directory fail with EVS_ERR_IO; a read-only open works.
 * 4. A deleted segment: 000001.wal of four removed -> EVS_ERR_CORRUPT naming 000001.wal
 *    (with and without a snapshot, read-write and read-only); 000000.wal removed -> the
 *    same, naming 000000.wal.
 * 5. A segment replaced by a directory (a middle one, the last one): open fails with
 *    EVS_ERR_IO or EVS_ERR_CORRUPT and a message naming it.
 * 6. A store path that is a regular file: EVS_ERR_IO.
 * Where mounting or dropping privileges is not permitted, the part is skipped with a
 * printed reason (`SKIP: ...`), counted as skipped, not passed.
 *
 * Prints FIGURE lines and `N passed, N failed`.
 */
#include "rel_common.h"

#include <fcntl.h>
#include <sys/mount.h>
#include <sys/types.h>
#include <sys/wait.h>

static char g_root[1024];
static unsigned long g_skipped = 0;
static unsigned long long g_full_failures_seen = 0, g_full_acked = 0;

static void skip(const char *what, const char *why)
{
    printf("SKIP: %s: %s\n", what, why);
    fflush(stdout);
    g_skipped++;
}

static int write_file(const char *path, size_t size)
{
    int fd = open(path, O_CREAT | O_TRUNC | O_WRONLY, 0644);
    static uint8_t chunk[65536];
    size_t done = 0;
    if (fd < 0)
        return -1;
    memset(chunk, 0xA5, sizeof chunk);
    while (done < size) {
        size_t n = size - done < sizeof chunk ? size - done : sizeof chunk;
        ssize_t w = write(fd, chunk, n);
        if (w <= 0) {
            close(fd);
            return -1;
        }
        done += (size_t)w;
    }
    close(fd);
    return 0;
}

static int copy_file(const char *from, const char *to)
{
    int in = open(from, O_RDONLY), out;
    char buf[65536];
    ssize_t n;
    if (in < 0)
        return -1;
    out = open(to, O_CREAT | O_TRUNC | O_WRONLY, 0644);
    if (out < 0) {
        close(in);
        return -1;
    }
    while ((n = read(in, buf, sizeof buf)) > 0)
        if (write(out, buf, (size_t)n) != n) {
            n = -1;
            break;
        }
    close(in);
    close(out);
    return n < 0 ? -1 : 0;
}

/* Copies a directory tree (regular files and directories). */
static int copy_tree(const char *from, const char *to)
{
    DIR *d = opendir(from);
    struct dirent *e;
    int rc = 0;
    if (d == NULL)
        return -1;
    mkdir(to, 0755);
    while ((e = readdir(d)) != NULL) {
        char a[2048], b[2048];
        struct stat st;
        if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0)
            continue;
        snprintf(a, sizeof a, "%s/%s", from, e->d_name);
        snprintf(b, sizeof b, "%s/%s", to, e->d_name);
        if (lstat(a, &st) != 0)
            continue;
        if (S_ISDIR(st.st_mode))
            rc |= copy_tree(a, b);
        else if (S_ISREG(st.st_mode))
            rc |= copy_file(a, b);
    }
    closedir(d);
    return rc;
}

static evs_options *opts(int policy, int prealloc, uint64_t segsize, int read_only)
{
    evs_options *o = evs_options_new();
    evs_options_set_fsync(o, policy, 5);
    evs_options_set_preallocate(o, prealloc != 0);
    evs_options_set_max_segment_size(o, segsize);
    evs_options_set_read_only(o, read_only != 0);
    return o;
}

static evs_status open_with(const char *dir, int policy, int prealloc, uint64_t segsize,
                            int read_only, evs_store **s)
{
    evs_options *o = opts(policy, prealloc, segsize, read_only);
    evs_status st = evs_open(dir, o, s, NULL);
    evs_options_free(o);
    return st;
}

static uint64_t count_events(evs_store *s)
{
    uint64_t n = 0;
    evs_position_at(s, UINT64_MAX, &n);
    return n;
}

/* ---- full disk ---- */

#define PAYLOAD 4096
#define MAX_ATTEMPTS 20000

/* The payload of attempt n: its number, then bytes derived from it. */
static void gen_payload(uint64_t n, uint8_t *p)
{
    uint64_t r = n * UINT64_C(0x9E3779B97F4A7C15) + 1;
    size_t i;
    memcpy(p, &n, 8);
    for (i = 8; i < PAYLOAD; i++)
        p[i] = (uint8_t)(tu_rand(&r) >> 40);
}

typedef struct {
    uint64_t *pos_of; /* by attempt: its position, or UINT64_MAX when refused */
    uint64_t attempts;
    unsigned long v_missing, v_bytes, v_phantom, ambiguous;
} fill_log;

typedef struct {
    fill_log *log;
    uint8_t buf[PAYLOAD];
} check_ctx;

static void check_fill_event(void *ud, const evs_event *e)
{
    check_ctx *c = (check_ctx *)ud;
    fill_log *l = c->log;
    uint64_t n;
    if (e->stream_len != 4 || memcmp(e->stream, "fill", 4) != 0)
        return;
    if (e->payload_len != PAYLOAD) {
        l->v_bytes += rel_violation("position %" PRIu64 ": %zu payload bytes", e->position,
                                    e->payload_len);
        return;
    }
    memcpy(&n, e->payload, 8);
    if (n >= l->attempts) {
        l->v_phantom += rel_violation("position %" PRIu64 " holds attempt %" PRIu64
                                      ", which was never made",
                                      e->position, n);
        return;
    }
    gen_payload(n, c->buf);
    if (memcmp(c->buf, e->payload, PAYLOAD) != 0)
        l->v_bytes += rel_violation("position %" PRIu64 ": the bytes of attempt %" PRIu64
                                    " changed",
                                    e->position, n);
    if (l->pos_of[n] == UINT64_MAX)
        l->ambiguous++; /* an append that reported failure, found in the log */
    else if (l->pos_of[n] != e->position)
        l->v_bytes += rel_violation("attempt %" PRIu64 " was acknowledged at %" PRIu64
                                    " but is at %" PRIu64,
                                    n, l->pos_of[n], e->position);
}

/* Checks the whole store and the acknowledged appends; returns the events found. */
static uint64_t check_fill(evs_store *s, fill_log *l, const char *label, int refused_absent)
{
    check_ctx *c = (check_ctx *)rel_xmalloc(sizeof *c);
    rel_state st;
    uint64_t i, acked = 0, found;
    char what[256];
    c->log = l;
    l->v_missing = l->v_bytes = l->v_phantom = l->ambiguous = 0;
    rel_state_init(&st);
    rel_check_store(s, &st, check_fill_event, c, label);
    found = st.events;
    {
        rel_stream *fs = (rel_stream *)rel_map_get(&st.streams, "fill", 4);
        uint64_t in_stream = fs ? fs->events : 0;
        for (i = 0; i < l->attempts; i++)
            if (l->pos_of[i] != UINT64_MAX)
                acked++;
        if (in_stream < acked)
            l->v_missing += rel_violation("%s: %" PRIu64 " acknowledged events, %" PRIu64
                                          " in the log",
                                          label, acked, in_stream);
        if (in_stream != acked + l->ambiguous)
            l->v_missing += rel_violation("%s: %" PRIu64 " events in the stream, %" PRIu64
                                          " acknowledged + %lu refused-but-present",
                                          label, in_stream, acked, l->ambiguous);
    }
    snprintf(what, sizeof what, "%s: every acknowledged event is there", label);
    tu_check(l->v_missing == 0, what, __FILE__, __LINE__);
    snprintf(what, sizeof what, "%s: with its exact bytes at its position", label);
    tu_check(l->v_bytes == 0 && l->v_phantom == 0, what, __FILE__, __LINE__);
    if (refused_absent) {
        snprintf(what, sizeof what, "%s: no refused append is in the log (EVS_FSYNC_ALWAYS)",
                 label);
        if (l->ambiguous)
            printf("%s: %lu appends that returned an error are in the log\n", label,
                   l->ambiguous);
        tu_check(l->ambiguous == 0, what, __FILE__, __LINE__);
    }
    rel_state_free(&st);
    free(c);
    return found;
}

static evs_status append_attempt(evs_store *s, fill_log *l, uint8_t *buf)
{
    evs_event_input e = EVS_STRUCT_INIT(evs_event_input);
    uint64_t pos = UINT64_MAX;
    evs_status st;
    uint64_t n = l->attempts++;
    gen_payload(n, buf);
    e.event_type = "Fill";
    e.payload = buf;
    e.payload_len = PAYLOAD;
    e.metadata = NULL;
    e.metadata_len = 0;
    e.schema_version = 1;
    st = evs_append(s, "fill", EVS_EXPECT_ANY, &e, 1, &pos, NULL);
    l->pos_of[n] = st == EVS_OK ? pos : UINT64_MAX;
    return st;
}

static void full_disk_variant(const char *mnt, const char *label, int policy, int prealloc,
                              uint64_t segsize, size_t ballast)
{
    char store[1400], bal[1400], what[300];
    evs_store *s = NULL;
    fill_log l;
    uint8_t *buf = (uint8_t *)rel_xmalloc(PAYLOAD);
    evs_status st = EVS_OK;
    const char *msg;
    char msgcopy[512];
    uint64_t i, before_fail = 0;
    int recovered = 0;
    uint64_t t0;

    printf("-- full disk: %s\n", label);
    snprintf(store, sizeof store, "%s/store-%s", mnt, label);
    snprintf(bal, sizeof bal, "%s/ballast", mnt);
    memset(&l, 0, sizeof l);
    l.pos_of = (uint64_t *)rel_xcalloc(MAX_ATTEMPTS, sizeof(uint64_t));
    if (!CHECK(write_file(bal, ballast) == 0)) {
        printf("could not write the ballast file %s: %s\n", bal, strerror(errno));
        goto out;
    }
    st = open_with(store, policy, prealloc, segsize, 0, &s);
    if (!CHECK_OK(st))
        goto out;
    for (i = 0; i < MAX_ATTEMPTS - 100; i++) {
        st = append_attempt(s, &l, buf);
        if (st != EVS_OK)
            break;
        before_fail++;
    }
    msg = evs_last_error_message();
    snprintf(msgcopy, sizeof msgcopy, "%s", msg ? msg : "(NULL)");
    g_full_acked += before_fail;
    printf("%s: %" PRIu64 " appends acknowledged, then %s: \"%s\"\n", label, before_fail,
           tu_name(st), msgcopy);
    snprintf(what, sizeof what, "%s: the append that meets a full disk fails with EVS_ERR_IO",
             label);
    tu_check(st == EVS_ERR_IO, what, __FILE__, __LINE__);
    snprintf(what, sizeof what, "%s: ... and a message that says the disk is full", label);
    tu_check(strstr(msgcopy, "space") != NULL || strstr(msgcopy, "ENOSPC") != NULL, what,
             __FILE__, __LINE__);
    tu_check(before_fail > 10, "some appends fit before the disk is full", __FILE__, __LINE__);
    if (st == EVS_ERR_IO)
        g_full_failures_seen++;

    /* While full: what was acknowledged reads back; appends still fail. */
    check_fill(s, &l, "while the disk is full", 0);
    st = append_attempt(s, &l, buf);
    snprintf(what, sizeof what, "%s: an append while the disk is still full fails with EVS_ERR_IO",
             label);
    if (st != EVS_ERR_IO)
        printf("%s: got %s: %s\n", label, tu_name(st), tu_msg());
    tu_check(st == EVS_ERR_IO, what, __FILE__, __LINE__);

    /* Free the space: appends work again. */
    CHECK(unlink(bal) == 0);
    t0 = tu_now_us();
    while (tu_now_us() - t0 < 3000000u) {
        st = append_attempt(s, &l, buf);
        if (st == EVS_OK) {
            recovered = 1;
            break;
        }
        tu_sleep_ms(20);
    }
    if (!recovered)
        printf("%s: appends still fail 3 s after space was freed: %s: %s\n", label,
               tu_name(st), tu_msg());
    else
        printf("%s: appends work again %.0f ms after space was freed\n", label,
               (double)(tu_now_us() - t0) / 1000.0);
    snprintf(what, sizeof what, "%s: after space is freed, appends work again", label);
    tu_check(recovered, what, __FILE__, __LINE__);
    if (recovered)
        for (i = 0; i < 20; i++)
            CHECK_OK(append_attempt(s, &l, buf));
    CHECK_OK(evs_close(s));
    s = NULL;

    /* Reopen: nothing acknowledged lost. */
    st = open_with(store, policy, prealloc, segsize, 0, &s);
    if (CHECK_OK(st)) {
        check_fill(s, &l, label, policy == EVS_FSYNC_ALWAYS);
        if (l.ambiguous)
            printf("%s: %lu appends that reported EVS_ERR_IO were written later (their outcome "
                   "was unknown to the caller)\n",
                   label, l.ambiguous);
        CHECK_OK(evs_close(s));
        s = NULL;
    }
out:
    if (s != NULL)
        evs_close(s);
    unlink(bal);
    tu_remove_tree(store);
    free(l.pos_of);
    free(buf);
}

/* The tmpfs remounted read-only: root cannot write either. */
static void read_only_fs(const char *mnt)
{
    char store[1400];
    evs_store *s = NULL;
    evs_status st;
    uint64_t i, p;
    printf("-- a read-only file system\n");
    snprintf(store, sizeof store, "%s/ro-store", mnt);
    if (!CHECK_OK(open_with(store, EVS_FSYNC_ALWAYS, 0, 1 << 20, 0, &s)))
        return;
    for (i = 0; i < 50; i++)
        CHECK_OK(evs_append_event(s, "Before", (const uint8_t *)"data", 4, &p));
    CHECK_OK(evs_close(s));
    s = NULL;
    if (mount("tmpfs", mnt, "tmpfs", MS_REMOUNT | MS_RDONLY, "size=4m") != 0) {
        skip("read-only file system", strerror(errno));
        return;
    }
    st = open_with(store, EVS_FSYNC_ALWAYS, 0, 1 << 20, 0, &s);
    CHECK_STATUS(st, EVS_ERR_IO);
    printf("writable open on a read-only file system: %s: %s\n", tu_name(st), tu_msg());
    if (st == EVS_OK)
        evs_close(s);
    s = NULL;
    {
        char fresh[1400];
        snprintf(fresh, sizeof fresh, "%s/new-store", mnt);
        st = open_with(fresh, EVS_FSYNC_ALWAYS, 0, 1 << 20, 0, &s);
        CHECK_STATUS(st, EVS_ERR_IO);
        if (st == EVS_OK)
            evs_close(s);
        s = NULL;
    }
    st = open_with(store, EVS_FSYNC_ALWAYS, 0, 1 << 20, 1, &s);
    if (CHECK_OK(st)) {
        rel_state rs;
        rel_state_init(&rs);
        rel_check_store(s, &rs, NULL, NULL, "read-only open on a read-only file system");
        CHECK_U64(rs.events, 50);
        rel_state_free(&rs);
        CHECK_STATUS(evs_append_event(s, "T", (const uint8_t *)"x", 1, &p), EVS_ERR_READ_ONLY);
        CHECK_OK(evs_close(s));
    }
    if (mount("tmpfs", mnt, "tmpfs", MS_REMOUNT, "size=4m") != 0)
        printf("could not remount %s read-write: %s\n", mnt, strerror(errno));
    tu_remove_tree(store);
}

/* ---- a read-only directory, as a user who is not root ---- */

static int nobody_main(int argc, char **argv)
{
    /* argv: --nobody <existing store> <read-only parent> <events expected> */
    evs_store *s = NULL;
    evs_status st;
    char fresh[1300];
    uint64_t want;
    if (argc < 5)
        return 2;
    want = strtoull(argv[4], NULL, 10);
    if (setgid(65534) != 0 || setuid(65534) != 0) {
        printf("SKIP-CHILD: cannot become uid 65534: %s\n", strerror(errno));
        return 3;
    }
    if (getuid() == 0 || geteuid() == 0) {
        printf("SKIP-CHILD: still root\n");
        return 3;
    }
    st = open_with(argv[2], EVS_FSYNC_ALWAYS, 0, 1 << 20, 0, &s);
    printf("as uid 65534, writable open of a store in a read-only directory: %s: %s\n",
           tu_name(st), tu_msg());
    CHECK_STATUS(st, EVS_ERR_IO);
    if (st == EVS_OK)
        evs_close(s);
    s = NULL;
    snprintf(fresh, sizeof fresh, "%s/new-store", argv[3]);
    st = open_with(fresh, EVS_FSYNC_ALWAYS, 0, 1 << 20, 0, &s);
    printf("as uid 65534, creating a store in a read-only directory: %s: %s\n", tu_name(st),
           tu_msg());
    CHECK_STATUS(st, EVS_ERR_IO);
    if (st == EVS_OK)
        evs_close(s);
    s = NULL;
    st = open_with(argv[2], EVS_FSYNC_ALWAYS, 0, 1 << 20, 1, &s);
    if (CHECK_OK(st)) {
        CHECK_U64(count_events(s), want);
        evs_close(s);
    }
    return tu_finish();
}

static void read_only_dir(const char *self)
{
    char parent[1200], store[1300], events[1400];
    evs_store *s = NULL;
    uint64_t i, p;
    pid_t pid;
    int status = 0;
    printf("-- a read-only directory (as uid 65534)\n");
    snprintf(parent, sizeof parent, "%s/ro-parent", g_root);
    snprintf(store, sizeof store, "%s/store", parent);
    snprintf(events, sizeof events, "%s/events", store);
    mkdir(parent, 0755);
    if (!CHECK_OK(open_with(store, EVS_FSYNC_ALWAYS, 0, 1 << 20, 0, &s)))
        return;
    for (i = 0; i < 30; i++)
        CHECK_OK(evs_append_event(s, "Before", (const uint8_t *)"data", 4, &p));
    CHECK_OK(evs_close(s));
    chmod(g_root, 0755);
    chmod(events, 0555);
    chmod(store, 0555);
    chmod(parent, 0555);
    fflush(stdout);
    pid = fork();
    if (pid == 0) {
        char *args[6];
        args[0] = (char *)self;
        args[1] = (char *)"--nobody";
        args[2] = store;
        args[3] = parent;
        args[4] = (char *)"30";
        args[5] = NULL;
        execv(self, args);
        _exit(127);
    }
    waitpid(pid, &status, 0);
    chmod(parent, 0755);
    chmod(store, 0755);
    chmod(events, 0755);
    chmod(g_root, 0700);
    if (WIFEXITED(status) && WEXITSTATUS(status) == 3)
        skip("read-only directory as a user who is not root", "cannot drop privileges");
    else
        tu_check(WIFEXITED(status) && WEXITSTATUS(status) == 0,
                 "as uid 65534: writes to a read-only directory fail with EVS_ERR_IO, reads "
                 "work (see the child's lines above)",
                 __FILE__, __LINE__);
}

/* ---- damage by hand: deleted segments, directories, files ---- */

static void build_base(const char *dir, int snapshot, uint64_t *events)
{
    evs_store *s = NULL;
    uint8_t payload[300];
    uint64_t i, p;
    if (!CHECK_OK(open_with(dir, EVS_FSYNC_OS, 0, 64 << 10, 0, &s)))
        return;
    for (i = 0; i < 800; i++) {
        memset(payload, (int)('a' + i % 26), sizeof payload);
        CHECK_OK(evs_append_event(s, "E", payload, sizeof payload, &p));
    }
    if (snapshot)
        CHECK_OK(evs_snapshot(s, NULL));
    *events = count_events(s);
    CHECK_OK(evs_close(s));
}

static void expect_open_fails(const char *dir, int read_only, evs_status want1,
                              evs_status want2, const char *must_name, const char *label)
{
    evs_store *s = NULL;
    evs_status st = open_with(dir, EVS_FSYNC_OS, 0, 64 << 10, read_only, &s);
    const char *msg = evs_last_error_message();
    char what[400];
    int ok = (st == want1 || st == want2) && msg != NULL && msg[0] != '\0' &&
             (must_name == NULL || strstr(msg, must_name) != NULL);
    printf("%s: %s: \"%s\"\n", label, tu_name(st), st == EVS_OK ? "" : msg);
    if (st == EVS_OK) {
        uint64_t n = count_events(s);
        evs_cursor *c = NULL;
        evs_event e = EVS_STRUCT_INIT(evs_event);
        evs_status rs = evs_read_all(s, 0, &c);
        if (rs == EVS_OK) {
            while ((rs = evs_cursor_next(c, &e)) == EVS_OK) {
            }
            evs_cursor_free(c);
        }
        printf("%s: the store opened with %" PRIu64 " events; reading it from 0 ends with %s: "
               "%s\n",
               label, n, tu_name(rs), rs < 0 ? tu_msg() : "");
        evs_close(s);
    }
    snprintf(what, sizeof what, "%s: open fails with %s%s%s, naming %s", label, tu_name(want1),
             want2 != want1 ? " or " : "", want2 != want1 ? tu_name(want2) : "",
             must_name ? must_name : "(anything)");
    tu_check(ok, what, __FILE__, __LINE__);
}

static void damaged_stores(void)
{
    char base[1200], snap[1200], d[1300], f[1400];
    uint64_t n1 = 0, n2 = 0;
    struct stat st;
    printf("-- deleted segments, segments that are directories, a store that is a file\n");
    snprintf(base, sizeof base, "%s/base", g_root);
    snprintf(snap, sizeof snap, "%s/base-snap", g_root);
    build_base(base, 0, &n1);
    build_base(snap, 1, &n2);
    snprintf(f, sizeof f, "%s/events/000003.wal", base);
    if (!CHECK(stat(f, &st) == 0)) {
        printf("the base store has fewer than four segments\n");
        return;
    }

    /* the middle segment deleted */
    snprintf(d, sizeof d, "%s/mid", g_root);
    copy_tree(base, d);
    snprintf(f, sizeof f, "%s/events/000001.wal", d);
    CHECK(unlink(f) == 0);
    expect_open_fails(d, 0, EVS_ERR_CORRUPT, EVS_ERR_CORRUPT, "000001.wal",
                      "000001.wal deleted");
    expect_open_fails(d, 1, EVS_ERR_CORRUPT, EVS_ERR_CORRUPT, "000001.wal",
                      "000001.wal deleted, read-only open");
    tu_remove_tree(d);

    snprintf(d, sizeof d, "%s/mid-snap", g_root);
    copy_tree(snap, d);
    snprintf(f, sizeof f, "%s/events/000001.wal", d);
    CHECK(unlink(f) == 0);
    expect_open_fails(d, 0, EVS_ERR_CORRUPT, EVS_ERR_CORRUPT, "000001.wal",
                      "000001.wal deleted, with a snapshot");
    tu_remove_tree(d);

    /* the first segment deleted */
    snprintf(d, sizeof d, "%s/first", g_root);
    copy_tree(base, d);
    snprintf(f, sizeof f, "%s/events/000000.wal", d);
    CHECK(unlink(f) == 0);
    expect_open_fails(d, 0, EVS_ERR_CORRUPT, EVS_ERR_CORRUPT, "000000.wal",
                      "000000.wal deleted");
    tu_remove_tree(d);

    snprintf(d, sizeof d, "%s/first-snap", g_root);
    copy_tree(snap, d);
    snprintf(f, sizeof f, "%s/events/000000.wal", d);
    CHECK(unlink(f) == 0);
    expect_open_fails(d, 0, EVS_ERR_CORRUPT, EVS_ERR_CORRUPT, "000000.wal",
                      "000000.wal deleted, with a snapshot");
    tu_remove_tree(d);

    /* segments replaced by directories */
    snprintf(d, sizeof d, "%s/dir-mid", g_root);
    copy_tree(base, d);
    snprintf(f, sizeof f, "%s/events/000001.wal", d);
    CHECK(unlink(f) == 0 && mkdir(f, 0755) == 0);
    expect_open_fails(d, 0, EVS_ERR_IO, EVS_ERR_CORRUPT, "000001.wal",
                      "000001.wal is a directory");
    expect_open_fails(d, 1, EVS_ERR_IO, EVS_ERR_CORRUPT, "000001.wal",
                      "000001.wal is a directory, read-only open");
    tu_remove_tree(d);

    snprintf(d, sizeof d, "%s/dir-last", g_root);
    copy_tree(base, d);
    snprintf(f, sizeof f, "%s/events/000003.wal", d);
    CHECK(unlink(f) == 0 && mkdir(f, 0755) == 0);
    expect_open_fails(d, 0, EVS_ERR_IO, EVS_ERR_CORRUPT, "000003.wal",
                      "000003.wal (the last segment) is a directory");
    tu_remove_tree(d);

    snprintf(d, sizeof d, "%s/dir-snap", g_root);
    copy_tree(snap, d);
    snprintf(f, sizeof f, "%s/events/000001.wal", d);
    CHECK(unlink(f) == 0 && mkdir(f, 0755) == 0);
    expect_open_fails(d, 0, EVS_ERR_IO, EVS_ERR_CORRUPT, "000001.wal",
                      "000001.wal is a directory, with a snapshot");
    tu_remove_tree(d);

    /* the events directory is a file */
    snprintf(d, sizeof d, "%s/events-file", g_root);
    copy_tree(base, d);
    snprintf(f, sizeof f, "%s/events", d);
    tu_remove_tree(f);
    CHECK(write_file(f, 100) == 0);
    expect_open_fails(d, 0, EVS_ERR_IO, EVS_ERR_CORRUPT, NULL, "<store>/events is a file");
    tu_remove_tree(d);

    /* the store path is a regular file */
    snprintf(f, sizeof f, "%s/a-file", g_root);
    CHECK(write_file(f, 10) == 0);
    expect_open_fails(f, 0, EVS_ERR_IO, EVS_ERR_IO, NULL, "the store path is a regular file");
    expect_open_fails(f, 1, EVS_ERR_IO, EVS_ERR_NOT_FOUND, NULL,
                      "the store path is a regular file, read-only open");
    unlink(f);

    /* the untouched copies still open with every event */
    {
        evs_store *s = NULL;
        if (CHECK_OK(open_with(base, EVS_FSYNC_OS, 0, 64 << 10, 0, &s))) {
            CHECK_U64(count_events(s), n1);
            evs_close(s);
        }
        if (CHECK_OK(open_with(snap, EVS_FSYNC_OS, 0, 64 << 10, 0, &s))) {
            CHECK_U64(count_events(s), n2);
            evs_close(s);
        }
    }
    tu_remove_tree(base);
    tu_remove_tree(snap);
}

int main(int argc, char **argv)
{
    char mnt[1100];
    int mounted = 0;

    if (argc >= 2 && strcmp(argv[1], "--nobody") == 0)
        return nobody_main(argc, argv);
    if (!tu_make_temp_dir(g_root, sizeof g_root))
        return tu_finish();

    damaged_stores();
    read_only_dir(argv[0]);

    snprintf(mnt, sizeof mnt, "%s/mnt", g_root);
    mkdir(mnt, 0755);
    if (mount("tmpfs", mnt, "tmpfs", 0, "size=4m") != 0) {
        char why[1500];
        snprintf(why, sizeof why, "mount -t tmpfs -o size=4m tmpfs %s: %s%s", mnt,
                 strerror(errno), geteuid() != 0 ? " (not root)" : "");
        skip("full disk (4 variants)", why);
        skip("read-only file system", why);
    } else {
        mounted = 1;
        full_disk_variant(mnt, "always-no-prealloc", EVS_FSYNC_ALWAYS, 0, 1 << 20, 512 << 10);
        full_disk_variant(mnt, "always-prealloc", EVS_FSYNC_ALWAYS, 1, 1 << 20, 1536 << 10);
        full_disk_variant(mnt, "batch-no-prealloc", EVS_FSYNC_BATCH, 0, 1 << 20, 512 << 10);
        full_disk_variant(mnt, "batch-prealloc", EVS_FSYNC_BATCH, 1, 1 << 20, 1536 << 10);
        read_only_fs(mnt);
    }
    if (mounted && umount(mnt) != 0 && umount2(mnt, MNT_DETACH) != 0)
        printf("could not unmount %s: %s\n", mnt, strerror(errno));
    tu_cleanup_dir(g_root);
    printf("full disk: %llu appends met a full disk, %llu acknowledged before, %lu parts "
           "skipped\n",
           g_full_failures_seen, g_full_acked, g_skipped);
    rel_figure("full_disk_failures_seen", g_full_failures_seen);
    rel_figure("skipped", g_skipped);
    return tu_finish();
}
