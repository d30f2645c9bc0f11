/*
 * test_backup.c: backup, restore, verify and archiving through the C API
 * (docs/backup.md): evs_backup (progress, info, an incremental backup, each status),
 * evs_verify_backup, evs_restore to a position, a time and through an archive,
 * evs_options_set_archive's callback, and EVS_ERR_INCOMPLETE for a backup whose marker
 * says it did not finish. File engine only.
 */
#include "test_util.h"

static char g_root[1024];

static void path_in(char *out, size_t cap, const char *name)
{
    snprintf(out, cap, "%s/%s", g_root, name);
}

static void append_n(evs_store *s, const char *stream, int n)
{
    char payload[200];
    evs_event_input in = EVS_STRUCT_INIT(evs_event_input);
    int i;
    for (i = 0; i < n; i++) {
        snprintf(payload, sizeof payload, "%s-%d-%0150d", stream, i, i);
        in.event_type = "T";
        in.payload = (const uint8_t *)payload;
        in.payload_len = strlen(payload);
        CHECK_OK(evs_append(s, stream, EVS_EXPECT_ANY, &in, 1, NULL, NULL));
    }
}

/* The number of events a store reads, and its next position. */
static uint64_t count_events(const char *dir, uint64_t *next)
{
    evs_options *o = evs_options_new();
    evs_store *s = NULL;
    evs_cursor *c = NULL;
    evs_event e = EVS_STRUCT_INIT(evs_event);
    uint64_t n = 0;
    CHECK_OK(evs_options_set_read_only(o, true));
    CHECK_OK(evs_open(dir, o, &s, NULL));
    evs_options_free(o);
    if (s == NULL)
        return UINT64_MAX;
    CHECK_OK(evs_position_at(s, UINT64_MAX, next));
    CHECK_OK(evs_read_all(s, 0, &c));
    while (c != NULL && evs_cursor_next(c, &e) == EVS_OK)
        n++;
    evs_cursor_free(c);
    CHECK_OK(evs_close(s));
    return n;
}

typedef struct {
    uint64_t calls, last_done, last_total;
    int decreasing;
} progress_seen;

static void on_progress(void *user_data, const evs_backup_progress *p)
{
    progress_seen *seen = user_data;
    if (p->bytes_done < seen->last_done)
        seen->decreasing = 1;
    seen->calls++;
    seen->last_done = p->bytes_done;
    seen->last_total = p->bytes_total;
}

typedef struct {
    uint64_t sealed, rewritten, next_id;
    int out_of_order;
    char archive[1100];
} archive_seen;

/* Copies each sealed segment into the archive directory under its name. */
static void on_segment(void *user_data, uint64_t id, const char *path, int32_t change)
{
    archive_seen *a = user_data;
    char to[1300], buf[65536];
    const char *name = strrchr(path, '/');
    FILE *in, *out;
    size_t got;
    if (change == EVS_SEGMENT_REWRITTEN) {
        a->rewritten++;
        return;
    }
    if (change != EVS_SEGMENT_SEALED || id != a->next_id)
        a->out_of_order = 1;
    a->next_id = id + 1;
    a->sealed++;
    snprintf(to, sizeof to, "%s%s", a->archive, name);
    in = fopen(path, "rb");
    out = fopen(to, "wb");
    if (in == NULL || out == NULL) {
        a->out_of_order = 1;
    } else {
        while ((got = fread(buf, 1, sizeof buf, in)) > 0)
            fwrite(buf, 1, got, out);
    }
    if (in != NULL)
        fclose(in);
    if (out != NULL)
        fclose(out);
}

static void test_backup_and_verify(evs_store *s)
{
    char dest[1200], other[1200], note[1300];
    evs_backup_info info = EVS_STRUCT_INIT(evs_backup_info);
    evs_backup_options bo = EVS_STRUCT_INIT(evs_backup_options);
    evs_verify_info v = EVS_STRUCT_INIT(evs_verify_info);
    progress_seen seen = {0, 0, 0, 0};
    uint64_t next = 0, first;
    FILE *f;

    TU_SECTION("evs_backup: a backup and an incremental one, verified");
    path_in(dest, sizeof dest, "backup");
    bo.flags = EVS_BACKUP_NO_LINKS;
    CHECK_OK(evs_backup(s, dest, &bo, on_progress, &seen, &info));
    CHECK(info.position > 0);
    CHECK(info.files_copied > 0 && info.files_linked == 0);
    CHECK(seen.calls > 0 && !seen.decreasing && seen.last_done == seen.last_total);
    CHECK_OK(evs_verify_backup(dest, &v));
    CHECK_U64(v.position, info.position);
    CHECK_U64(count_events(dest, &next), info.position);
    CHECK_U64(next, info.position);
    first = info.position;
    append_n(s, "more", 50);
    CHECK_OK(evs_backup(s, dest, NULL, NULL, NULL, &info));
    CHECK_U64(info.position, first + 50);
    CHECK(info.files_unchanged > 0);
    CHECK_OK(evs_verify_backup(dest, NULL));

    TU_SECTION("evs_backup: each status");
    CHECK_STATUS(evs_backup(NULL, dest, NULL, NULL, NULL, NULL), EVS_ERR_INVALID_ARGUMENT);
    CHECK_STATUS(evs_backup(s, NULL, NULL, NULL, NULL, NULL), EVS_ERR_INVALID_ARGUMENT);
    bo.flags = 4;
    CHECK_STATUS(evs_backup(s, dest, &bo, NULL, NULL, NULL), EVS_ERR_INVALID_ARGUMENT);
    CHECK(strstr(evs_last_error_message(), "0x4") != NULL);
    info.struct_size = 3;
    CHECK_STATUS(evs_backup(s, dest, NULL, NULL, NULL, &info), EVS_ERR_INVALID_ARGUMENT);
    path_in(other, sizeof other, "other");
    mkdir(other, 0755);
    snprintf(note, sizeof note, "%s/notes.txt", other);
    f = fopen(note, "w");
    if (f != NULL) {
        fputs("mine", f);
        fclose(f);
    }
    CHECK_STATUS(evs_backup(s, other, NULL, NULL, NULL, NULL), EVS_ERR_ALREADY_EXISTS);

    TU_SECTION("evs_verify_backup: not a backup, a changed byte");
    CHECK_STATUS(evs_verify_backup(other, NULL), EVS_ERR_NOT_FOUND);
    CHECK_STATUS(evs_verify_backup(NULL, NULL), EVS_ERR_INVALID_ARGUMENT);
    snprintf(note, sizeof note, "%s/events/000000.wal", dest);
    f = fopen(note, "r+b");
    CHECK(f != NULL);
    if (f != NULL) {
        int c;
        fseek(f, 300, SEEK_SET);
        c = fgetc(f);
        fseek(f, 300, SEEK_SET);
        fputc(c ^ 0x20, f);
        fclose(f);
    }
    CHECK_STATUS(evs_verify_backup(dest, NULL), EVS_ERR_CORRUPT);
    CHECK(strstr(evs_last_error_message(), "000000.wal offset") != NULL);
}

static void test_read_only_handle(evs_store *s, const char *store_dir)
{
    char dest[1200];
    evs_options *o = evs_options_new();
    evs_store *ro = NULL;
    evs_backup_info info = EVS_STRUCT_INIT(evs_backup_info);
    uint64_t next = 0, writer_next = 0;
    TU_SECTION("evs_backup through a read-only handle beside the writer");
    CHECK_OK(evs_options_set_read_only(o, true));
    CHECK_OK(evs_open(store_dir, o, &ro, NULL));
    evs_options_free(o);
    if (ro == NULL)
        return;
    append_n(s, "beside", 20);
    CHECK_OK(evs_position_at(s, UINT64_MAX, &writer_next));
    path_in(dest, sizeof dest, "from-read-only");
    CHECK_OK(evs_backup(ro, dest, NULL, NULL, NULL, &info));
    /* The handle looks at the writer first: its durable events are all in. */
    CHECK_U64(info.position, writer_next);
    CHECK_OK(evs_verify_backup(dest, NULL));
    CHECK_U64(count_events(dest, &next), info.position);
    CHECK_U64(next, info.position);
    CHECK_OK(evs_close(ro));
}

static void test_incomplete(evs_store *s)
{
    char dest[1200], marker[1300], restored[1200];
    evs_store *b = NULL;
    FILE *f;
    TU_SECTION("EVS_ERR_INCOMPLETE: open, verify and restore refuse an unfinished backup");
    path_in(dest, sizeof dest, "unfinished");
    CHECK_OK(evs_backup(s, dest, NULL, NULL, NULL, NULL));
    snprintf(marker, sizeof marker, "%s/BACKUP", dest);
    f = fopen(marker, "w");
    if (f != NULL) {
        fputs("evstore backup 1\nstate: incomplete backup\ncrc32c: 00000000\n", f);
        fclose(f);
    }
    CHECK_STATUS(evs_open(dest, NULL, &b, NULL), EVS_ERR_INCOMPLETE);
    CHECK(b == NULL);
    CHECK_STATUS(evs_verify_backup(dest, NULL), EVS_ERR_INCOMPLETE);
    path_in(restored, sizeof restored, "from-unfinished");
    CHECK_STATUS(evs_restore(dest, restored, NULL, NULL), EVS_ERR_INCOMPLETE);
    CHECK_STR(evs_status_name(EVS_ERR_INCOMPLETE), "EVS_ERR_INCOMPLETE");
}

static void test_restore(void)
{
    char src[1200], dest[1200], r[1200];
    evs_store *s = NULL;
    evs_options *o = evs_options_new();
    evs_restore_options ro = EVS_STRUCT_INIT(evs_restore_options);
    evs_restore_info ri = EVS_STRUCT_INIT(evs_restore_info);
    archive_seen a;
    uint64_t next = 0;
    memset(&a, 0, sizeof a);
    path_in(a.archive, sizeof a.archive, "archive");
    mkdir(a.archive, 0755);

    TU_SECTION("evs_options_set_archive and evs_restore");
    CHECK_OK(evs_options_set_max_segment_size(o, 65536));
    CHECK_OK(evs_options_set_archive(o, on_segment, &a));
    CHECK_STATUS(evs_options_set_archive(NULL, on_segment, &a), EVS_ERR_INVALID_ARGUMENT);
    path_in(src, sizeof src, "archived");
    CHECK_OK(evs_open(src, o, &s, NULL));
    evs_options_free(o);
    if (s == NULL)
        return;
    append_n(s, "x", 300);
    path_in(dest, sizeof dest, "archived-backup");
    CHECK_OK(evs_backup(s, dest, NULL, NULL, NULL, NULL));
    append_n(s, "y", 1500);
    CHECK(a.sealed > 2 && !a.out_of_order);

    path_in(r, sizeof r, "r-position");
    ro.flags = EVS_RESTORE_TO_POSITION;
    ro.position = 123;
    CHECK_OK(evs_restore(dest, r, &ro, &ri));
    CHECK_U64(ri.position, 123);
    CHECK_U64(ri.backup_position, 300);
    CHECK_U64(count_events(r, &next), 123);

    path_in(r, sizeof r, "r-time");
    ro.flags = EVS_RESTORE_TO_TIME;
    ro.time_us = 1; /* before every event */
    CHECK_OK(evs_restore(dest, r, &ro, &ri));
    CHECK_U64(ri.position, 0);

    path_in(r, sizeof r, "r-archive");
    ro.flags = 0;
    ro.archive_dir = a.archive;
    CHECK_OK(evs_restore(dest, r, &ro, &ri));
    CHECK(ri.archived_segments > 0 && ri.position > 300);
    CHECK_U64(count_events(r, &next), ri.position);

    ro.flags = 3;
    CHECK_STATUS(evs_restore(dest, r, &ro, NULL), EVS_ERR_INVALID_ARGUMENT);
    ro.flags = EVS_RESTORE_TO_POSITION;
    ro.position = 1u << 30;
    ro.archive_dir = NULL;
    path_in(r, sizeof r, "r-past");
    CHECK_STATUS(evs_restore(dest, r, &ro, NULL), EVS_ERR_NOT_FOUND);
    CHECK_STATUS(evs_restore(NULL, r, NULL, NULL), EVS_ERR_INVALID_ARGUMENT);
    CHECK_OK(evs_close(s));
}

int main(void)
{
    char path[1200];
    evs_store *s = NULL;
    evs_options *o;
    if (!tu_make_temp_dir(g_root, sizeof g_root))
        return tu_finish();
    o = evs_options_new();
    path_in(path, sizeof path, "store");
    /* Small segments: sealed ones, which an incremental backup finds unchanged. */
    CHECK_OK(evs_options_set_max_segment_size(o, 65536));
    CHECK_OK(evs_open(path, o, &s, NULL));
    evs_options_free(o);
    if (s == NULL)
        return tu_finish();
    append_n(s, "a", 1000);
    test_backup_and_verify(s);
    test_read_only_handle(s, path);
    test_incomplete(s);
    CHECK_OK(evs_close(s));
    test_restore();
    if (getenv("EVS_TEST_KEEP") == NULL)
        tu_remove_tree(g_root);
    return tu_finish();
}
