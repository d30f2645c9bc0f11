/* evsctl's backup, restore and backup-verify commands (tools/evsctl/backup.c). Each
 * prints what it did on stdout, its failure as "evsctl: COMMAND: ..." on stderr, and
 * returns the exit code: 0, or 1 for a failure. */
#ifndef EVSCTL_BACKUP_H
#define EVSCTL_BACKUP_H

#include <evstore.h>
#include <stdbool.h>
#include <stdint.h>

/* Backs up open store `s` into `dest`; `progress`: show progress on stderr. */
int evsctl_backup(evs_store *s, const char *dest, bool no_links, bool progress);

/* Restores backup `backup` into the new store `dest`: everything, or to `position`
 * (`to_position`), or to `time_us` (`to_time`), continued by `archive` (may be NULL). */
int evsctl_restore(const char *backup, const char *dest, bool to_position, uint64_t position, bool to_time,
                   uint64_t time_us, const char *archive);

/* Whether `dir` is a backup (it has a BACKUP marker): verify checks it as one. */
bool evsctl_is_backup(const char *dir);

/* Checks every record and index page of backup `dir`; exit 1 at the first damage. */
int evsctl_verify_backup(const char *dir);

#endif
