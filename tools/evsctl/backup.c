/* evsctl backup, restore, and verify of a backup (docs/backup.md): thin shells over
 * evs_backup, evs_restore and evs_verify_backup. */
#define _POSIX_C_SOURCE 200809L
#include "backup.h"

#include <inttypes.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>

static int backup_fail(const char *cmd, const char *what, evs_status s) {
    fprintf(stderr, "evsctl: %s: %s: %s: %s\n", cmd, what, evs_status_name(s), evs_last_error_message());
    return 1;
}

/* The progress line on the terminal: bytes and files placed of the totals. */
static void show_progress(void *user_data, const evs_backup_progress *p) {
    int *last = user_data;
    int pct = p->bytes_total > 0 ? (int)(p->bytes_done * 100 / p->bytes_total) : 100;
    if (pct == *last && p->files_done < p->files_total)
        return;
    *last = pct;
    fprintf(stderr, "\revsctl: backup: %" PRIu64 " of %" PRIu64 " MiB, %" PRIu64 " of %" PRIu64 " files (%d%%)\033[K",
            p->bytes_done >> 20, p->bytes_total >> 20, p->files_done, p->files_total, pct);
}

int evsctl_backup(evs_store *s, const char *dest, bool no_links, bool progress) {
    evs_backup_options o = EVS_STRUCT_INIT(evs_backup_options);
    o.flags = no_links ? EVS_BACKUP_NO_LINKS : 0;
    evs_backup_info info = EVS_STRUCT_INIT(evs_backup_info);
    int last = -1;
    evs_status st = evs_backup(s, dest, &o, progress ? show_progress : NULL, &last, &info);
    if (progress)
        fprintf(stderr, "\r\033[K");
    if (st != EVS_OK)
        return backup_fail("backup", dest, st);
    printf("backup %s complete at position %" PRIu64 ": %" PRIu64 " files linked, %" PRIu64 " copied (%" PRIu64
           " bytes), %" PRIu64 " unchanged, %.3f s\n",
           dest, info.position, info.files_linked, info.files_copied, info.bytes_copied, info.files_unchanged,
           (double)info.duration_us / 1e6);
    return 0;
}

int evsctl_restore(const char *backup, const char *dest, bool to_position, uint64_t position, bool to_time,
                   uint64_t time_us, const char *archive) {
    evs_restore_options o = EVS_STRUCT_INIT(evs_restore_options);
    o.flags = to_position ? EVS_RESTORE_TO_POSITION : to_time ? EVS_RESTORE_TO_TIME : 0;
    o.position = position;
    o.time_us = time_us;
    o.archive_dir = archive;
    evs_restore_info info = EVS_STRUCT_INIT(evs_restore_info);
    evs_status st = evs_restore(backup, dest, &o, &info);
    if (st != EVS_OK)
        return backup_fail("restore", backup, st);
    printf("restored %s into %s: the positions before %" PRIu64 " (the backup holds those before %" PRIu64 "), %" PRIu64
           " segment%s, %" PRIu64 " from the archive\n",
           backup, dest, info.position, info.backup_position, info.segments, info.segments == 1 ? "" : "s",
           info.archived_segments);
    if (info.moved_to_append_start)
        printf("the point fell inside an atomic append: the restore stops where it begins, at position %" PRIu64
               "\n",
               info.position);
    return 0;
}

bool evsctl_is_backup(const char *dir) {
    char path[4096];
    struct stat sb;
    int n = snprintf(path, sizeof path, "%s/BACKUP", dir);
    return n > 0 && (size_t)n < sizeof path && stat(path, &sb) == 0;
}

int evsctl_verify_backup(const char *dir) {
    evs_verify_info info = EVS_STRUCT_INIT(evs_verify_info);
    evs_status st = evs_verify_backup(dir, &info);
    if (st != EVS_OK) {
        evs_error_detail d = EVS_STRUCT_INIT(evs_error_detail);
        if (st == EVS_ERR_CORRUPT && evs_last_error_detail(&d) == EVS_OK && d.position != UINT64_MAX)
            fprintf(stderr, "evsctl: verify: damage in backup %s (whole before position %" PRIu64 "): %s\n", dir,
                    d.position, evs_last_error_message());
        else
            backup_fail("verify", dir, st);
        return 1;
    }
    printf("backup %s is whole: consistent at position %" PRIu64 "; %" PRIu64 " records in %" PRIu64
           " segment%s, %" PRIu64 " index pages checked\n",
           dir, info.position, info.records, info.segments, info.segments == 1 ? "" : "s", info.index_pages);
    return 0;
}
