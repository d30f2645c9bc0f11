//! Backup, point-in-time restore, verification of a backup and continuous archiving of a
//! file store (docs/backup.md).

use super::args::{opt_str_arg, str_arg};
use super::extensible::{extensible, input_array, opt_out_struct};
use super::status::{boundary, evs_status, EVS_OK};
use super::store::{evs_options, evs_store, store_arg};
use crate::error::Error;
use crate::store::{
    restore, verify_backup, BackupOptions, BackupProgress, RestorePoint, SegmentChange, SegmentHook,
};
use std::ffi::{c_char, c_void, CString};
use std::path::Path;
use std::sync::Arc;

/// `evs_backup_options.flags`: never hard-link; copy every file.
pub const EVS_BACKUP_NO_LINKS: u64 = 1;
/// `evs_restore_options.flags`: stop at `position` (the events before it).
pub const EVS_RESTORE_TO_POSITION: u64 = 1;
/// `evs_restore_options.flags`: stop at `time_us` (the events at or before it).
pub const EVS_RESTORE_TO_TIME: u64 = 2;
/// `evs_segment_fn`'s `change`: the segment sealed (the log moved on to the next one).
pub const EVS_SEGMENT_SEALED: i32 = 1;
/// `evs_segment_fn`'s `change`: a compaction renamed a rewritten copy over the segment.
pub const EVS_SEGMENT_REWRITTEN: i32 = 2;

/// How to take a backup (caller-allocated: set `struct_size`, see `EVS_STRUCT_INIT`;
/// NULL for the defaults).
#[repr(C)]
pub struct evs_backup_options {
    /// sizeof(evs_backup_options) as the caller's header has it.
    pub struct_size: usize,
    /// EVS_BACKUP_* bits (0: hard links where the destination's file system allows).
    pub flags: u64,
}

extensible!(evs_backup_options, flags);

/// How far a backup is (handed to an `evs_backup_progress_fn`; valid during the call).
#[repr(C)]
pub struct evs_backup_progress {
    /// sizeof(evs_backup_progress) as this library has it.
    pub struct_size: usize,
    /// Bytes placed (copied, linked or found unchanged) so far, of `bytes_total`.
    pub bytes_done: u64,
    pub bytes_total: u64,
    /// Files placed so far, of `files_total`.
    pub files_done: u64,
    pub files_total: u64,
}

/// Called by `evs_backup` on its calling thread as files and bytes are placed (at most
/// about once a MiB). It must not call `evs_close` on the store being backed up.
pub type evs_backup_progress_fn =
    Option<unsafe extern "C" fn(user_data: *mut c_void, progress: *const evs_backup_progress)>;

/// What `evs_backup` did (caller-allocated: set `struct_size`).
#[repr(C)]
pub struct evs_backup_info {
    /// sizeof(evs_backup_info) as the caller's header has it; never changed.
    pub struct_size: usize,
    /// The backup holds exactly the events (and lifecycle entries) before this position.
    pub position: u64,
    /// Files hard-linked, copied, and found unchanged (an earlier backup placed them).
    pub files_linked: u64,
    pub files_copied: u64,
    pub files_unchanged: u64,
    pub bytes_copied: u64,
    pub bytes_linked: u64,
    /// How long it took, microseconds.
    pub duration_us: u64,
}

extensible!(evs_backup_info, position);

/// Takes an online backup of file store `s` into directory `dest_dir` while other
/// threads, or (through a read-only handle) another process, go on appending and
/// compacting. The backup is a store directory that opens
/// (read-only or writable) with exactly the events before `out->position`: the log is
/// synced and counted at one instant; sealed segments are hard-linked when `dest_dir` is
/// on the same file system (they are never written in place again) or copied; the active
/// segment is copied up to that instant's end; index files and the newest snapshot are
/// linked or copied. Compactions wait while sealed segments are linked (or, across file
/// systems, copied); appends wait only for the instant. Through a read-only handle the
/// instant is the writer's events as the handle can see them then (under
/// EVS_FSYNC_ALWAYS the durable ones, else those written), whole appends only, and the
/// writing process's compactions wait through a lock on the store's `events` directory
/// (the writer must be of this version or later). Into an earlier backup (a
/// directory with a `BACKUP` marker) it places only what changed since: new segments,
/// segments a compaction rewrote, the active segment. `dest_dir/BACKUP` is written first
/// as "incomplete" and last, after every file and directory is synced, as "complete"
/// with the position; a backup that fails or is killed leaves it "incomplete", and
/// `evs_open`, `evs_restore` and `evs_verify_backup` refuse such a directory with
/// EVS_ERR_INCOMPLETE. `progress` (may be NULL) is called with `user_data` on the calling
/// thread. `opts` may be NULL (defaults); `out` may be NULL.
///
/// Returns EVS_OK; EVS_ERR_INVALID_ARGUMENT (NULL store or `dest_dir`, bad UTF-8, unknown
/// flags, a bad `struct_size`, `dest_dir` inside the store or the store inside it, a
/// PostgreSQL store: back it up with PostgreSQL's tools, docs/postgres.md; also when the
/// store is closed meanwhile: the backup stops, incomplete); EVS_ERR_ALREADY_EXISTS
/// (`dest_dir` holds files and no backup); EVS_ERR_STALE (a read-only handle whose
/// writer's log changed under it: reopen it); EVS_ERR_IO (a system call failed, e.g. the
/// destination's disk is full, or the file system cannot lock the `events` directory
/// between processes for a read-only handle: the store is untouched and the
/// destination stays marked incomplete; take the backup again into it); EVS_ERR_CORRUPT
/// (a source file ended before the length the log records).
///
/// Ownership: every argument stays the caller's. Thread safety: any thread; one backup
/// into one directory at a time.
#[no_mangle]
pub unsafe extern "C" fn evs_backup(
    s: *mut evs_store,
    dest_dir: *const c_char,
    opts: *const evs_backup_options,
    progress: evs_backup_progress_fn,
    user_data: *mut c_void,
    out: *mut evs_backup_info,
) -> evs_status {
    boundary(|| {
        // SAFETY: `s` is NULL or a live store (C API contract).
        let store = unsafe { store_arg(s) }?;
        // SAFETY: NULL or a NUL-terminated string (C API contract).
        let dest = unsafe { str_arg(dest_dir, "dest_dir") }?;
        // SAFETY: NULL or the caller's struct, starting with its size.
        let opts = unsafe { input_array(opts, usize::from(!opts.is_null()), 1, "opts") }?;
        let flags = opts.first().map_or(0, |o| o.flags);
        if flags & !EVS_BACKUP_NO_LINKS != 0 {
            return Err(Error::invalid(format!(
                "opts->flags {flags:#x} has bits no EVS_BACKUP_* value has"
            )));
        }
        // SAFETY: NULL or the caller's struct, starting with its size.
        let out = unsafe { opt_out_struct(out, "out") }?;
        let options = BackupOptions {
            hard_links: flags & EVS_BACKUP_NO_LINKS == 0,
        };
        let mut report = |p: &BackupProgress| {
            let view = evs_backup_progress {
                struct_size: std::mem::size_of::<evs_backup_progress>(),
                bytes_done: p.bytes_done,
                bytes_total: p.bytes_total,
                files_done: p.files_done,
                files_total: p.files_total,
            };
            if let Some(f) = progress {
                // SAFETY: the caller's callback, called as its contract says, with a
                // struct that lives for the call.
                unsafe { f(user_data, &view) };
            }
        };
        let done = store
            .bank
            .store()
            .backup(Path::new(dest), &options, &mut report)?;
        if let Some(out) = out {
            out.write(evs_backup_info {
                struct_size: std::mem::size_of::<evs_backup_info>(),
                position: done.position,
                files_linked: done.files_linked,
                files_copied: done.files_copied,
                files_unchanged: done.files_unchanged,
                bytes_copied: done.bytes_copied,
                bytes_linked: done.bytes_linked,
                duration_us: done.duration.as_micros().min(u64::MAX as u128) as u64,
            });
        }
        Ok(EVS_OK)
    })
}

/// Where a restore stops, and where archived segments are (caller-allocated: set
/// `struct_size`; NULL restores everything the backup holds).
#[repr(C)]
pub struct evs_restore_options {
    /// sizeof(evs_restore_options) as the caller's header has it.
    pub struct_size: usize,
    /// At most one of EVS_RESTORE_TO_POSITION, EVS_RESTORE_TO_TIME (0: everything).
    pub flags: u64,
    /// EVS_RESTORE_TO_POSITION: the restored store holds the events before it.
    pub position: u64,
    /// EVS_RESTORE_TO_TIME: the restored store holds the events whose timestamp
    /// (microseconds since the Unix epoch) is at or before it.
    pub time_us: u64,
    /// NULL, or a directory of segments archived by an `evs_options_set_archive`
    /// callback (named as in the store: `NNNNNN.wal`), which continue the backup.
    pub archive_dir: *const c_char,
}

extensible!(evs_restore_options, flags);

/// What `evs_restore` did (caller-allocated: set `struct_size`).
#[repr(C)]
pub struct evs_restore_info {
    /// sizeof(evs_restore_info) as the caller's header has it; never changed.
    pub struct_size: usize,
    /// The restored store holds exactly the positions before this one; its next event
    /// gets it.
    pub position: u64,
    /// The position the backup holds the events before.
    pub backup_position: u64,
    /// Segments taken from `archive_dir`.
    pub archived_segments: u64,
    /// Segments written to the restored store.
    pub segments: u64,
    /// 1 when the point fell inside a multi-event append, which is atomic: the restore
    /// stopped where that append begins (`position` says where), else 0.
    pub moved_to_append_start: u32,
}

extensible!(evs_restore_info, position);

/// Restores the complete backup in `backup_dir` (continued by the archived segments of
/// `opts->archive_dir`, if given) into `dest_dir`, a new directory (missing or empty),
/// as a store holding exactly the events before the point `opts` names: its log cut at
/// that point (never inside a multi-event append: a point inside one moves back to the
/// append's start), so lifecycle entries after the point are gone with their events;
/// index files of the segments restored whole copied, the others built at the first
/// writable open; the backup's snapshot kept when it covers no event after the point.
/// Events a compaction erased before the backup was taken stay erased (their positions
/// empty), even before the point that removed them. `dest_dir` is marked incomplete
/// until everything is synced (`evs_open` refuses it meanwhile). `opts` and `out` may
/// be NULL.
///
/// Returns EVS_OK; EVS_ERR_INVALID_ARGUMENT (NULL or bad UTF-8 paths, both or unknown
/// flags, a bad `struct_size`, `dest_dir` not a directory); EVS_ERR_NOT_FOUND
/// (`backup_dir` is not a backup, `archive_dir` is missing, or the position is past what
/// can be restored); EVS_ERR_INCOMPLETE (the backup did not finish);
/// EVS_ERR_ALREADY_EXISTS (`dest_dir` is not empty); EVS_ERR_CORRUPT (a record of the
/// backup or archive fails its checksum: the file and offset are named); EVS_ERR_IO.
///
/// Ownership: every argument stays the caller's. Thread safety: any thread; no store
/// needs to be open.
#[no_mangle]
pub unsafe extern "C" fn evs_restore(
    backup_dir: *const c_char,
    dest_dir: *const c_char,
    opts: *const evs_restore_options,
    out: *mut evs_restore_info,
) -> evs_status {
    boundary(|| {
        // SAFETY: NULL or NUL-terminated strings (C API contract).
        let backup = unsafe { str_arg(backup_dir, "backup_dir") }?;
        // SAFETY: as above.
        let dest = unsafe { str_arg(dest_dir, "dest_dir") }?;
        // SAFETY: NULL or the caller's struct, starting with its size.
        let opts = unsafe { input_array(opts, usize::from(!opts.is_null()), 1, "opts") }?;
        // SAFETY: NULL or the caller's struct, starting with its size.
        let out = unsafe { opt_out_struct(out, "out") }?;
        let (point, archive) = match opts.first() {
            None => (RestorePoint::End, None),
            Some(o) => {
                let point = match o.flags {
                    0 => RestorePoint::End,
                    EVS_RESTORE_TO_POSITION => RestorePoint::Position(o.position),
                    EVS_RESTORE_TO_TIME => RestorePoint::Time(o.time_us),
                    f => {
                        return Err(Error::invalid(format!(
                            "opts->flags {f:#x} is not 0, EVS_RESTORE_TO_POSITION or EVS_RESTORE_TO_TIME"
                        )))
                    }
                };
                // SAFETY: NULL or a NUL-terminated string (C API contract).
                let archive = unsafe { opt_str_arg(o.archive_dir, "opts->archive_dir") }?;
                (point, archive)
            }
        };
        let vfs = crate::wal::vfs::os();
        let done = restore(
            &*vfs,
            Path::new(backup),
            archive.map(Path::new),
            Path::new(dest),
            point,
        )?;
        if let Some(out) = out {
            out.write(evs_restore_info {
                struct_size: std::mem::size_of::<evs_restore_info>(),
                position: done.position,
                backup_position: done.backup_position,
                archived_segments: done.archived_segments,
                segments: done.segments,
                moved_to_append_start: u32::from(done.moved_to_append_start),
            });
        }
        Ok(EVS_OK)
    })
}

/// What `evs_verify_backup` checked (caller-allocated: set `struct_size`).
#[repr(C)]
pub struct evs_verify_info {
    /// sizeof(evs_verify_info) as the caller's header has it; never changed.
    pub struct_size: usize,
    /// The backup is consistent at this position: it holds exactly the positions before.
    pub position: u64,
    /// Records, segments and index pages checked.
    pub records: u64,
    pub segments: u64,
    pub index_pages: u64,
}

extensible!(evs_verify_info, position);

/// Checks every byte of the complete backup in `backup_dir` that can be checked: every
/// record's framing and CRC and envelope, positions in order up to the marker's
/// position, no append left open at the end, every index file's pages (CRC) and header
/// against its segment, the snapshot's checksum. `out` (may be NULL) gets the position
/// the backup is consistent at.
///
/// Returns EVS_OK; EVS_ERR_INVALID_ARGUMENT (NULL or bad UTF-8 path, a bad
/// `struct_size`); EVS_ERR_NOT_FOUND (not a backup: no `BACKUP` marker);
/// EVS_ERR_INCOMPLETE (the backup did not finish, or its marker is damaged);
/// EVS_ERR_CORRUPT (the first damage: the message names the file and the offset or index
/// page, and the position the log is whole up to; `evs_last_error_detail` gives that
/// position); EVS_ERR_IO.
///
/// Ownership: the path stays the caller's. Thread safety: any thread.
#[no_mangle]
pub unsafe extern "C" fn evs_verify_backup(
    backup_dir: *const c_char,
    out: *mut evs_verify_info,
) -> evs_status {
    boundary(|| {
        // SAFETY: NULL or a NUL-terminated string (C API contract).
        let dir = unsafe { str_arg(backup_dir, "backup_dir") }?;
        // SAFETY: NULL or the caller's struct, starting with its size.
        let out = unsafe { opt_out_struct(out, "out") }?;
        let done = verify_backup(&*crate::wal::vfs::os(), Path::new(dir))?;
        if let Some(out) = out {
            out.write(evs_verify_info {
                struct_size: std::mem::size_of::<evs_verify_info>(),
                position: done.position,
                records: done.records,
                segments: done.segments,
                index_pages: done.index_pages,
            });
        }
        Ok(EVS_OK)
    })
}

/// Continuous archiving's callback: `segment_id` and `path` (valid during the call) of
/// a segment that sealed (`change` EVS_SEGMENT_SEALED) or that a compaction rewrote
/// (EVS_SEGMENT_REWRITTEN). Called on the thread whose append started the next segment
/// (before that append returns) or on the compacting thread; it must return soon and
/// must not close the store. Copy the file elsewhere under its name.
pub type evs_segment_fn = Option<
    unsafe extern "C" fn(user_data: *mut c_void, segment_id: u64, path: *const c_char, change: i32),
>;

/// The user data of an archiving callback.
struct ArchiveData(*mut c_void);
// SAFETY: evs_options_set_archive's contract makes the caller responsible for
// `user_data` being usable from any thread; the library only passes it back.
unsafe impl Send for ArchiveData {}
// SAFETY: as above.
unsafe impl Sync for ArchiveData {}

/// Sets continuous archiving on file stores opened with `o`: `fn` (NULL turns it off) is
/// called with `user_data` for every segment that seals while the store is open, once
/// each, in order from each thread, and for every segment a compaction rewrites (an
/// archive that must keep removed events' bytes for a restore before their removal keeps
/// the sealed copy; one that must forget them replaces it). The active segment is in no
/// archive: a backup has it; segments that sealed before the open, or between a seal and
/// a crash, are not reported (copy missing ones when the program starts). A restore
/// takes a backup plus the archived segments that follow it (`evs_restore_options.
/// archive_dir`). Ignored by PostgreSQL stores.
///
/// Returns EVS_OK, or EVS_ERR_INVALID_ARGUMENT for a NULL `o`. Ownership: `o` stays the
/// caller's; `user_data` must stay valid while a store opened with `o` is open. Thread
/// safety: not while another thread uses `o`; the callback may run on any thread.
#[no_mangle]
pub unsafe extern "C" fn evs_options_set_archive(
    o: *mut evs_options,
    callback: evs_segment_fn,
    user_data: *mut c_void,
) -> evs_status {
    boundary(|| {
        // SAFETY: `o` is NULL or a live options object (C API contract).
        let o = unsafe { super::args::handle_mut(o, "options") }?;
        let Some(f) = callback else {
            o.inner.on_segment = None;
            return Ok(EVS_OK);
        };
        let data = ArchiveData(user_data);
        o.inner.on_segment = Some(SegmentHook(Arc::new(move |id, path: &Path, change| {
            let Ok(c) = CString::new(path.to_string_lossy().into_owned()) else {
                return;
            };
            let change = match change {
                SegmentChange::Sealed => EVS_SEGMENT_SEALED,
                SegmentChange::Rewritten => EVS_SEGMENT_REWRITTEN,
            };
            let data = &data;
            // SAFETY: the caller's callback, called as its contract says, with a string
            // that lives for the call.
            unsafe { f(data.0, id, c.as_ptr(), change) };
        })));
        Ok(EVS_OK)
    })
}
