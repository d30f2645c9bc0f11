//! Online backup of a file store (docs/backup.md): while appends go on, a copy of the
//! store that opens with exactly the events before a position, taken at one instant.
//!
//! The instant: with the writer's lock held the log is synced and every durable event
//! counted; that count is the backup's position and the log's end then is where its copy
//! of the active segment ends. The compaction lock is held from that instant until every
//! sealed segment (and its index file) is placed in the destination: a compaction, which
//! replaces a segment by rename and never writes one in place, cannot change what the
//! backup takes. Placing a sealed segment is a hard link when the destination is on the
//! same file system (the link keeps the inode the backup saw even after a compaction
//! renames a new file over the name; nothing ever writes a sealed segment in place),
//! otherwise a copy made while the lock is held. The backup's last segment is always a
//! copy (a store opened on the backup writes in place into its last segment), read from
//! a handle opened at the instant. The newest snapshot is copied (from a handle opened
//! at the instant, so a newer one replacing it does not matter).
//!
//! `<dest>/BACKUP` says what the directory is. It is written (atomically: a synced
//! temporary renamed, the directory synced) as "incomplete" before anything else is
//! touched and as "complete, position N" after everything else is synced; `evs_open`,
//! restore and verify refuse a directory whose marker is not "complete".

use super::segindex;
use super::snapshot;
use super::FileStore;
use crate::error::{Error, ErrorKind, Result};
use crate::wal::segment;
use crate::wal::vfs::{self, FileRef, Kind, OpenMode, Vfs};
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

/// What happened to a segment that an archiving hook (`StoreOptions::on_segment`) is
/// told about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SegmentChange {
    /// The log moved on to the next segment: this one is complete, synced, and never
    /// written again except by a compaction's rename.
    Sealed,
    /// A compaction renamed a rewritten copy (without removed events) over it.
    Rewritten,
}

/// Continuous archiving: called with a segment's id and path when it seals (on the
/// appending thread, after its append) and when a compaction rewrites it (on the
/// compacting thread). The application copies the file elsewhere; a restore takes a
/// directory of such copies after a backup (`restore`'s `archive`).
#[derive(Clone)]
pub struct SegmentHook(pub std::sync::Arc<SegmentFn>);

/// The function of a `SegmentHook`: the segment's id, its path, what happened.
pub type SegmentFn = dyn Fn(u64, &Path, SegmentChange) + Send + Sync;

impl std::fmt::Debug for SegmentHook {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SegmentHook")
    }
}

/// The marker file of a backup (and of a restore in progress).
pub const MARKER: &str = "BACKUP";
const MARKER_TMP: &str = "BACKUP.tmp";
const MAGIC_LINE: &str = "evstore backup 1";
/// The suffix of a file being placed in a backup (a copy being written, a fresh link).
const PART: &str = ".part";
/// The bytes copied between two looks at the progress callback and the store's state.
const CHUNK: usize = 1 << 20;
/// A copy is synced every this many bytes (a multiple of `CHUNK`).
const SYNC_EVERY: u64 = 4 << 20;

/// How long a compaction or a read-only backup waits before it looks again at the log
/// directory's lock the other holds.
const LOCK_RETRY: Duration = Duration::from_millis(5);
/// How long a read-only open waits for the log directory's lock a writer's compaction
/// holds (`hold_log_for_open`) before it opens without it.
const LOG_OPEN_WAIT: Duration = Duration::from_secs(10);
/// How many times a backup reads the key file again while it fails its checks (a forget
/// or a writer process changing it meanwhile) before it reports the damage.
const KEY_FILE_TRIES: u32 = 200;

/// A hold on the log directory's lock (`FileStore::lock_log`), let go when dropped.
pub(super) type LogLock = Box<dyn std::any::Any + Send + Sync>;

/// What a directory's marker says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MarkerState {
    /// Being written (or interrupted): `what` names the operation ("backup", "restore").
    Incomplete { what: String },
    /// A complete backup of the events before `position`.
    Complete { position: u64 },
}

/// How to take a backup.
#[derive(Debug, Clone)]
pub struct BackupOptions {
    /// Hard-link sealed segments when the destination is on the same file system.
    pub hard_links: bool,
}

impl Default for BackupOptions {
    fn default() -> Self {
        BackupOptions { hard_links: true }
    }
}

/// How far a backup is, for a progress display.
#[derive(Debug, Clone, Copy, Default)]
pub struct BackupProgress {
    pub bytes_done: u64,
    pub bytes_total: u64,
    pub files_done: u64,
    pub files_total: u64,
}

/// What a backup did.
#[derive(Debug, Clone, Copy, Default)]
pub struct BackupInfo {
    /// The backup holds exactly the events (and lifecycle entries) before this position.
    pub position: u64,
    pub files_linked: u64,
    pub files_copied: u64,
    /// Files an earlier backup into the same directory placed and that had not changed.
    pub files_unchanged: u64,
    pub bytes_copied: u64,
    pub bytes_linked: u64,
    pub duration: Duration,
}

fn marker_text(state: &MarkerState) -> String {
    let body = match state {
        MarkerState::Incomplete { what } => format!("{MAGIC_LINE}\nstate: incomplete {what}\n"),
        MarkerState::Complete { position } => {
            format!("{MAGIC_LINE}\nstate: complete\nposition: {position}\n")
        }
    };
    let crc = crc32c::crc32c(body.as_bytes());
    format!("{body}crc32c: {crc:08x}\n")
}

/// Parses a marker's text; `None` when it is damaged (not whole, or a byte changed).
fn parse_marker(text: &str) -> Option<MarkerState> {
    let at = text.rfind("crc32c: ")?;
    let (body, crc) = text.split_at(at);
    let crc = u32::from_str_radix(crc.strip_prefix("crc32c: ")?.trim_end(), 16).ok()?;
    if crc32c::crc32c(body.as_bytes()) != crc {
        return None;
    }
    let mut lines = body.lines();
    if lines.next()? != MAGIC_LINE {
        return None;
    }
    let state = lines.next()?.strip_prefix("state: ")?;
    if let Some(what) = state.strip_prefix("incomplete ") {
        return Some(MarkerState::Incomplete {
            what: what.to_owned(),
        });
    }
    if state != "complete" {
        return None;
    }
    let position = lines.next()?.strip_prefix("position: ")?.parse().ok()?;
    Some(MarkerState::Complete { position })
}

/// The marker of directory `dir`: `None` when it has none; an `Incomplete` error when it
/// is damaged.
pub fn read_marker(vfs: &dyn Vfs, dir: &Path) -> Result<Option<MarkerState>> {
    let path = dir.join(MARKER);
    let bytes = match vfs::read_file(vfs, &path) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(Error::io(format!("reading {}", path.display()), e)),
    };
    match std::str::from_utf8(&bytes).ok().and_then(parse_marker) {
        Some(state) => Ok(Some(state)),
        None => Err(Error::new(
            ErrorKind::Incomplete,
            format!(
                "{} is damaged: {} cannot be trusted as a backup; take the backup again",
                path.display(),
                dir.display()
            ),
        )),
    }
}

/// Refuses a directory whose marker says a backup or restore did not finish (for
/// `evs_open`): such a directory may lack segments or hold a half-copied one.
pub fn refuse_incomplete(vfs: &dyn Vfs, dir: &Path) -> Result<()> {
    match read_marker(vfs, dir)? {
        Some(MarkerState::Incomplete { what }) => Err(incomplete(dir, &what)),
        _ => Ok(()),
    }
}

/// The error for a directory whose `what` (backup, restore) did not finish.
pub(super) fn incomplete(dir: &Path, what: &str) -> Error {
    Error::new(
        ErrorKind::Incomplete,
        format!(
            "{} is an incomplete {what} ({MARKER} says it did not finish): take the {what} again",
            dir.display()
        ),
    )
}

/// Writes `dir`'s marker atomically: a synced temporary file renamed over it, the
/// directory synced.
pub fn write_marker(vfs: &dyn Vfs, dir: &Path, state: &MarkerState) -> Result<()> {
    let tmp = dir.join(MARKER_TMP);
    let io = |what: &str, e| Error::io(format!("{what} {}", tmp.display()), e);
    match vfs.remove_file(&tmp) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(io("removing", e)),
    }
    let f = vfs
        .open(&tmp, OpenMode::CreateNew)
        .map_err(|e| io("creating", e))?;
    vfs::write_all_at(&*f, marker_text(state).as_bytes(), 0).map_err(|e| io("writing", e))?;
    f.sync_all().map_err(|e| io("syncing", e))?;
    drop(f);
    vfs.rename(&tmp, &dir.join(MARKER))
        .map_err(|e| io("renaming", e))?;
    vfs.sync_dir(dir)
        .map_err(|e| Error::io(format!("syncing {}", dir.display()), e))
}

/// Makes `dest` ready to receive a backup: created if missing; if it holds anything, it
/// must be a backup (complete or not: a backup into it is incremental). Marks it
/// incomplete and creates its folders.
fn prepare_dest(vfs: &dyn Vfs, source: &Path, dest: &Path) -> Result<()> {
    if dest.starts_with(source) || source.starts_with(dest) {
        return Err(Error::invalid(format!(
            "the backup destination {} and the store {} must not contain each other",
            dest.display(),
            source.display()
        )));
    }
    if let Some(names) = dest_names(vfs, dest, "backup")? {
        let marked = names.iter().any(|n| n == MARKER);
        // Only a marker's temporary file: a backup that failed before its first
        // marker was in place.
        let ours = names.iter().all(|n| n == MARKER_TMP);
        if !ours && !marked {
            return Err(Error::new(
                ErrorKind::AlreadyExists,
                format!(
                    "the backup destination {} is not empty and holds no backup (no {MARKER} file): choose a new or empty directory",
                    dest.display()
                ),
            ));
        }
        if marked {
            // Damaged or not, it was a backup: taking one again repairs it.
            let _ = read_marker(vfs, dest);
        }
    }
    create_marked(vfs, dest, "backup")
}

/// The names in directory `dest`, the destination of a `what` (a backup, a restore);
/// `None` when it does not exist.
pub(super) fn dest_names(vfs: &dyn Vfs, dest: &Path, what: &str) -> Result<Option<Vec<String>>> {
    match vfs.stat(dest) {
        Ok(s) if s.kind != Kind::Dir => Err(Error::invalid(format!(
            "the {what} destination {} is not a directory",
            dest.display()
        ))),
        Ok(_) => vfs
            .list_dir(dest)
            .map(Some)
            .map_err(|e| Error::io(format!("reading {}", dest.display()), e)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(Error::io(format!("reading {}", dest.display()), e)),
    }
}

/// Creates `dest` (durably) marked as an incomplete `what`, with the store's folders.
pub(super) fn create_marked(vfs: &dyn Vfs, dest: &Path, what: &str) -> Result<()> {
    vfs::create_dir_all_durable(vfs, dest)
        .map_err(|e| Error::io(format!("creating {}", dest.display()), e))?;
    write_marker(vfs, dest, &MarkerState::Incomplete { what: what.into() })?;
    for sub in ["events", "index", "snapshots"] {
        let d = dest.join(sub);
        vfs::create_dir_durable(vfs, &d)
            .map_err(|e| Error::io(format!("creating {}", d.display()), e))?;
    }
    Ok(())
}

/// The store at the backup's instant.
struct Point {
    position: u64,
    /// Sealed segments the backup shares or copies whole: id and length.
    sealed: Vec<(u64, u64)>,
    /// The backup's last segment: id, the length it gets, and a handle opened at the
    /// instant (`None`: the store has no event yet).
    last: Option<(u64, u64, FileRef)>,
    /// The newest snapshot then: its name and a handle.
    snapshot: Option<(String, FileRef)>,
    /// The subjects' key file then (read whole under the writer's lock: a forget
    /// overwrites keys in place, so a handle read later could miss keys of events
    /// before the position), if the store has one.
    keys: Option<Vec<u8>>,
}

/// Copies and links files into a backup, counting for the progress display.
struct Placer<'a> {
    vfs: &'a dyn Vfs,
    progress: &'a mut dyn FnMut(&BackupProgress),
    state: BackupProgress,
    info: BackupInfo,
    /// Hard links are tried until one fails (another file system, or none).
    links: bool,
    stop: &'a dyn Fn() -> bool,
}

impl Placer<'_> {
    fn report(&mut self) {
        (self.progress)(&self.state);
    }

    fn done_file(&mut self) {
        self.state.files_done += 1;
        self.report();
    }

    /// Copies the first `len` bytes of `src` to `to` (via `to.part`, synced, renamed).
    fn copy(&mut self, src: &FileRef, len: u64, to: &Path) -> Result<()> {
        let part = part_path(to);
        let io = |what: &str, e| Error::io(format!("{what} {}", part.display()), e);
        remove_if_there(self.vfs, &part)?;
        let out = self
            .vfs
            .open(&part, OpenMode::CreateNew)
            .map_err(|e| io("creating", e))?;
        let mut buf = vec![0u8; CHUNK.min(len as usize)];
        let mut at = 0u64;
        while at < len {
            if (self.stop)() {
                return Err(closing());
            }
            let want = (len - at).min(CHUNK as u64) as usize;
            let got = vfs::read_at_most(&**src, &mut buf[..want], at)
                .map_err(|e| Error::io(format!("reading the source of {}", to.display()), e))?;
            if got < want {
                return Err(Error::corrupt(format!(
                    "the source of {} ends at {} before the {len} bytes the backup takes",
                    to.display(),
                    at + got as u64
                )));
            }
            vfs::write_all_at(&*out, &buf[..want], at).map_err(|e| io("writing", e))?;
            at += want as u64;
            if at.is_multiple_of(SYNC_EVERY) {
                // A little at a time: one flush of a whole segment at the end would hold
                // the disk (and the store's appenders' fdatasyncs) for its whole length.
                out.sync_data().map_err(|e| io("syncing", e))?;
            }
            self.state.bytes_done += want as u64;
            self.report();
        }
        out.sync_all().map_err(|e| io("syncing", e))?;
        drop(out);
        self.vfs.rename(&part, to).map_err(|e| io("renaming", e))?;
        self.info.files_copied += 1;
        self.info.bytes_copied += len;
        self.done_file();
        Ok(())
    }

    /// Places the whole file `from` (`len` bytes) at `to`: unchanged if `to` is it (a
    /// link an earlier backup made), else a hard link when allowed and possible, else a
    /// copy.
    fn place(&mut self, from: &Path, len: u64, to: &Path) -> Result<()> {
        let vfs = self.vfs;
        if vfs.same_file(from, to).unwrap_or(false) {
            self.info.files_unchanged += 1;
            self.state.bytes_done += len;
            self.done_file();
            return Ok(());
        }
        if self.links && vfs.stat(from).is_ok_and(|s| s.len == len) {
            let part = part_path(to);
            remove_if_there(vfs, &part)?;
            match vfs.hard_link(from, &part) {
                Ok(()) => {
                    vfs.rename(&part, to)
                        .map_err(|e| Error::io(format!("renaming {}", part.display()), e))?;
                    self.info.files_linked += 1;
                    self.info.bytes_linked += len;
                    self.state.bytes_done += len;
                    self.done_file();
                    return Ok(());
                }
                // Another file system, or one without links: copy from here on.
                Err(_) => self.links = false,
            }
        }
        let src = vfs
            .open(from, OpenMode::Read)
            .map_err(|e| Error::io(format!("opening {}", from.display()), e))?;
        self.copy(&src, len, to)
    }
}

/// The error of a backup stopped by the store's close.
fn closing() -> Error {
    Error::invalid(
        "the store is closing: the backup stopped (the destination stays marked incomplete)",
    )
}

fn part_path(p: &Path) -> PathBuf {
    let mut s = p.as_os_str().to_owned();
    s.push(PART);
    PathBuf::from(s)
}

fn remove_if_there(vfs: &dyn Vfs, p: &Path) -> Result<()> {
    match vfs.remove_file(p) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(Error::io(format!("removing {}", p.display()), e)),
    }
}

/// Whether an earlier backup's copy `to` of index file `from` has the same bytes (so
/// its segment, whose length and records the file describes, is that one too).
fn same_bytes(vfs: &dyn Vfs, from: &Path, to: &Path) -> bool {
    match (vfs::read_file(vfs, from), vfs::read_file(vfs, to)) {
        (Ok(a), Ok(b)) => a == b,
        _ => false,
    }
}

impl FileStore {
    /// Tells the archiving hook (if any) of every segment sealed since it was last
    /// called, each once, oldest first from each caller.
    pub(super) fn report_sealed(&self) {
        let Some(hook) = &self.options.on_segment else {
            return;
        };
        let active = self.wal.current_position().segment_id;
        let log_dir = self.dir.join("events");
        loop {
            let next = self.archived.load(Ordering::Acquire);
            if next >= active {
                return;
            }
            let took =
                self.archived
                    .compare_exchange(next, next + 1, Ordering::AcqRel, Ordering::Acquire);
            if took.is_ok() {
                (hook.0)(next, &segment::path(&log_dir, next), SegmentChange::Sealed);
            }
        }
    }

    /// Tells the archiving hook (if any) that a compaction rewrote segment `id`.
    pub(super) fn report_rewritten(&self, id: u64) {
        if let Some(hook) = &self.options.on_segment {
            let path = segment::path(&self.dir.join("events"), id);
            (hook.0)(id, &path, SegmentChange::Rewritten);
        }
    }

    /// Takes a backup of the store into `dest` while appends go on (see the module's
    /// comment); a backup into an earlier backup places only what changed. `progress`
    /// is called as files and bytes are placed. Returns the backup's position.
    pub fn backup(
        &self,
        dest: &Path,
        options: &BackupOptions,
        progress: &mut dyn FnMut(&BackupProgress),
    ) -> Result<BackupInfo> {
        let started = Instant::now();
        self.check_owner()?;
        if self.closed.load(Ordering::Acquire) {
            return Err(Error::invalid("the store is closed"));
        }
        let vfs = &*self.options.vfs;
        prepare_dest(vfs, &self.dir, dest)?;
        let stop = || self.stopping();
        let mut placer = Placer {
            vfs,
            progress,
            state: BackupProgress::default(),
            info: BackupInfo::default(),
            links: options.hard_links,
            stop: &stop,
        };
        // Compactions wait from the instant until the sealed segments are placed: the
        // writer's own through its compaction lock, another process's (a read-only handle
        // follows a writer) through the log directory's lock.
        let (mut compacting, mut across) = (None, None);
        let point = if self.options.read_only {
            across = Some(self.lock_log(false, &stop)?.ok_or_else(closing)?);
            self.fix_point_followed()?
        } else {
            compacting = Some(self.compact_lock.lock().unwrap_or_else(|e| e.into_inner()));
            self.fix_point()?
        };
        placer.state = self.totals(&point);
        placer.report();
        self.place_sealed(&mut placer, dest, &point.sealed)?;
        drop(compacting);
        drop(across);
        if let Some((id, len, file)) = &point.last {
            let to = segment::path(&dest.join("events"), *id);
            placer.copy(file, *len, &to)?;
        }
        if let Some((name, file)) = &point.snapshot {
            let len = file
                .len()
                .map_err(|e| Error::io(format!("reading snapshot {name}"), e))?;
            placer.copy(file, len, &dest.join("snapshots").join(name))?;
        }
        place_keys(vfs, dest, point.keys.as_deref())?;
        remove_stale(vfs, dest, &point)?;
        for sub in ["events", "index", "snapshots"] {
            let d = dest.join(sub);
            vfs.sync_dir(&d)
                .map_err(|e| Error::io(format!("syncing {}", d.display()), e))?;
        }
        write_marker(
            vfs,
            dest,
            &MarkerState::Complete {
                position: point.position,
            },
        )?;
        let mut info = placer.info;
        info.position = point.position;
        info.duration = started.elapsed();
        Ok(info)
    }

    /// Fixes the backup's instant: with the writer's lock held, syncs the log, counts
    /// every durable event and opens what the backup copies from later.
    fn fix_point(&self) -> Result<Point> {
        let mut w = self.lock_writer();
        self.wal.sync()?;
        self.commit_durable(&mut w);
        let point = self.point_at(self.committed(), self.wal.segments(), None);
        drop(w);
        point
    }

    /// A read-only handle's instant (the log directory's lock is held: no segment is
    /// replaced): one more look at the writer, then its count and where the counted
    /// records end in the log. Every segment before that end's is sealed (the writer
    /// cuts a segment to its length before it creates the next) and taken whole.
    fn fix_point_followed(&self) -> Result<Point> {
        let (position, end, read) = self.followed_end()?;
        let vfs = &*self.options.vfs;
        let log_dir = self.dir.join("events");
        let names = vfs
            .list_dir(&log_dir)
            .map_err(|e| Error::io(format!("reading {}", log_dir.display()), e))?;
        let mut ids: Vec<u64> = names
            .iter()
            .filter_map(|n| segment::parse_name(n))
            .filter(|&id| id < end.segment_id)
            .collect();
        ids.sort_unstable();
        let mut segments = Vec::with_capacity(ids.len() + 1);
        for (i, &id) in ids.iter().enumerate() {
            if id + (ids.len() - i) as u64 != end.segment_id {
                return Err(Error::corrupt(format!(
                    "{} has no segment between {} and {}",
                    log_dir.display(),
                    segment::file_name(id),
                    segment::file_name(end.segment_id)
                )));
            }
            let path = segment::path(&log_dir, id);
            let len = vfs
                .stat(&path)
                .map_err(|e| Error::io(format!("reading {}", path.display()), e))?
                .len;
            segments.push((id, len));
        }
        segments.push((end.segment_id, end.offset));
        self.point_at(position, segments, read)
    }

    /// The backup of the events before `position`, whose log is `segments` (id and the
    /// length taken, the last one's where those events end): opens the last segment
    /// (unless `read`, the file the last one's events were read from, is given) and the
    /// newest snapshot at or before `position`.
    fn point_at(
        &self,
        position: u64,
        mut segments: Vec<(u64, u64)>,
        mut read: Option<FileRef>,
    ) -> Result<Point> {
        // An empty active segment after sealed ones: the last sealed one is the
        // backup's last segment (copied, not shared).
        if segments.len() > 1 && segments.last().is_some_and(|s| s.1 == 0) {
            segments.pop();
            read = None;
        }
        let log_dir = self.dir.join("events");
        let last = match segments.pop() {
            Some((id, len)) if len > 0 => {
                let file = match read {
                    Some(file) => file,
                    None => segment::open(&*self.options.vfs, &log_dir, id, false)
                        .map_err(|e| Error::io(format!("opening {}", segment::file_name(id)), e))?,
                };
                Some((id, len, file))
            }
            _ => None,
        };
        let snapshot = snapshot::list(&*self.options.vfs, &self.dir.join("snapshots"))
            .into_iter()
            .filter(|(n, _)| *n <= position)
            .find_map(|(_, path)| {
                let file = self.options.vfs.open(&path, OpenMode::Read).ok()?;
                let name = path.file_name()?.to_str()?.to_owned();
                Some((name, file))
            });
        let keys = self.keys_then()?;
        Ok(Point {
            position,
            sealed: segments,
            last,
            snapshot,
            keys,
        })
    }

    /// The subjects' key file as it is now, if the store has one. Every key of an event
    /// counted so far is in it (keys are made durably before their events are appended).
    /// A read that meets a forget overwriting a key in place, or a writer process
    /// appending one, fails the file's checks: it is read again, for a while.
    fn keys_then(&self) -> Result<Option<Vec<u8>>> {
        let path = super::keys::path(&self.dir);
        let mut tries = 0;
        loop {
            let bytes = match vfs::read_file(&*self.options.vfs, &path) {
                Ok(b) => b,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
                Err(e) => return Err(Error::io(format!("reading {}", path.display()), e)),
            };
            match super::keys::check(&bytes) {
                Ok(_) => return Ok(Some(bytes)),
                Err(e) if tries >= KEY_FILE_TRIES => return Err(e),
                Err(_) => {
                    tries += 1;
                    std::thread::sleep(LOCK_RETRY);
                }
            }
        }
    }

    /// Takes the log directory's lock, which orders backups through read-only handles
    /// (shared, from the instant until the sealed segments are placed) against the
    /// writer's segment replacements (exclusive, each around its renames), across
    /// processes. Waits while the other side holds it; `None` when `stop` says so
    /// meanwhile. A file system without such locks: a replacement goes on (no backup
    /// through another process can hold it back), a read-only backup is refused.
    pub(super) fn lock_log(
        &self,
        exclusive: bool,
        stop: &dyn Fn() -> bool,
    ) -> Result<Option<LogLock>> {
        let dir = self.dir.join("events");
        loop {
            match self.options.vfs.lock_dir(&dir, exclusive) {
                Ok(held) => return Ok(Some(held)),
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                    if stop() {
                        return Ok(None);
                    }
                    std::thread::sleep(LOCK_RETRY);
                }
                Err(e) if e.kind() == std::io::ErrorKind::Unsupported && exclusive => {
                    return Ok(Some(Box::new(())))
                }
                Err(e) if e.kind() == std::io::ErrorKind::Unsupported => {
                    return Err(Error::io(
                        format!(
                            "the file system of {} cannot lock it between processes, so a read-only handle cannot hold the writer's compactions back: back up through the writer's handle",
                            dir.display()
                        ),
                        e,
                    ))
                }
                Err(e) => return Err(Error::io(format!("locking {}", dir.display()), e)),
            }
        }
    }

    /// The files and bytes a backup of `point` places (before it knows which are
    /// unchanged).
    fn totals(&self, point: &Point) -> BackupProgress {
        let vfs = &*self.options.vfs;
        let idx_dir = self.dir.join("index");
        let idx: u64 = point
            .sealed
            .iter()
            .filter_map(|s| vfs.stat(&idx_dir.join(segindex::file_name(s.0))).ok())
            .map(|s| s.len)
            .sum();
        let snap = point.snapshot.as_ref().and_then(|s| s.1.len().ok());
        BackupProgress {
            bytes_done: 0,
            bytes_total: point.sealed.iter().map(|s| s.1).sum::<u64>()
                + idx
                + point.last.as_ref().map_or(0, |l| l.1)
                + snap.unwrap_or(0),
            files_done: 0,
            files_total: 2 * point.sealed.len() as u64
                + u64::from(point.last.is_some())
                + u64::from(snap.is_some()),
        }
    }

    /// Places every sealed segment the backup shares, and its index file (the
    /// compaction lock is held).
    fn place_sealed(
        &self,
        placer: &mut Placer<'_>,
        dest: &Path,
        sealed: &[(u64, u64)],
    ) -> Result<()> {
        let vfs = placer.vfs;
        let (log_dir, idx_dir) = (self.dir.join("events"), self.dir.join("index"));
        let (to_log, to_idx) = (dest.join("events"), dest.join("index"));
        for &(id, len) in sealed {
            let (from_idx, idx_to) = (
                idx_dir.join(segindex::file_name(id)),
                to_idx.join(segindex::file_name(id)),
            );
            let (from, to) = (segment::path(&log_dir, id), segment::path(&to_log, id));
            let idx_len = matching_index(vfs, &from_idx, id, len);
            // Copied before, on another file system: the same index file says the same
            // segment is there.
            let kept = idx_len.is_some()
                && !vfs.same_file(&from, &to).unwrap_or(false)
                && vfs.stat(&to).is_ok_and(|s| s.len == len)
                && same_bytes(vfs, &from_idx, &idx_to);
            if kept {
                placer.info.files_unchanged += 2;
                placer.state.files_done += 2;
                placer.state.bytes_done += len + idx_len.unwrap_or(0);
                placer.report();
                continue;
            }
            placer.place(&from, len, &to)?;
            match idx_len {
                Some(l) => placer.place(&from_idx, l, &idx_to)?,
                None => {
                    // Not written yet, or not this segment's: the backup's open builds it
                    // from the segment.
                    remove_if_there(vfs, &idx_to)?;
                    placer.done_file();
                }
            }
        }
        Ok(())
    }
}

/// The length of index file `path` when it is whole and describes segment `id` as
/// `len` bytes long. A writer that died between a compaction's two renames leaves the
/// old index file beside the rewritten (shorter) segment; the next open builds a new one.
fn matching_index(vfs: &dyn Vfs, path: &Path, id: u64, len: u64) -> Option<u64> {
    let bytes = vfs::read_file(vfs, path).ok()?;
    let (s, _) = segindex::check_file(id, &bytes).ok()?;
    (s.segment_len == len).then_some(bytes.len() as u64)
}

/// Writes the key file the backup took (`Point::keys`) into `dest` as a new file
/// (synced, renamed over an earlier backup's), or removes an earlier one if the store
/// has none.
fn place_keys(vfs: &dyn Vfs, dest: &Path, keys: Option<&[u8]>) -> Result<()> {
    let to = super::keys::path(dest);
    let Some(bytes) = keys else {
        return remove_if_there(vfs, &to);
    };
    let part = part_path(&to);
    let io = |what: &str, e| Error::io(format!("{what} {}", part.display()), e);
    remove_if_there(vfs, &part)?;
    let out = vfs
        .open(&part, OpenMode::CreateNew)
        .map_err(|e| io("creating", e))?;
    vfs::write_all_at(&*out, bytes, 0).map_err(|e| io("writing", e))?;
    out.sync_all().map_err(|e| io("syncing", e))?;
    drop(out);
    vfs.rename(&part, &to).map_err(|e| io("renaming", e))?;
    vfs.sync_dir(dest)
        .map_err(|e| Error::io(format!("syncing {}", dest.display()), e))
}

/// Removes what an earlier backup into `dest` left that this one does not have:
/// segments after its last, index files of segments it does not share, other
/// snapshots, files half placed.
fn remove_stale(vfs: &dyn Vfs, dest: &Path, point: &Point) -> Result<()> {
    let last_id = point.last.as_ref().map(|l| l.0);
    let shared: std::collections::HashSet<u64> = point.sealed.iter().map(|s| s.0).collect();
    let keep_segment = |id: u64| shared.contains(&id) || Some(id) == last_id;
    let snapshot = point.snapshot.as_ref().map(|s| s.0.as_str());
    for sub in ["events", "index", "snapshots"] {
        let dir = dest.join(sub);
        let names = vfs
            .list_dir(&dir)
            .map_err(|e| Error::io(format!("reading {}", dir.display()), e))?;
        for name in names {
            let stale = name.ends_with(PART)
                || match sub {
                    "events" => segment::parse_name(&name).is_some_and(|id| !keep_segment(id)),
                    "index" => name
                        .strip_suffix(".idx")
                        .and_then(|d| d.parse::<u64>().ok())
                        .is_some_and(|id| !shared.contains(&id)),
                    _ => Some(name.as_str()) != snapshot,
                };
            if stale {
                remove_if_there(vfs, &dir.join(&name))?;
            }
        }
    }
    Ok(())
}

/// The log directory's lock of store `dir`, shared, for a read-only open: it reads the
/// index files and then the log, and a writer's compaction replaces a segment and its
/// index file only under the lock held exclusively (`FileStore::lock_log`), so both reads
/// see the same segments. Waits while the writer holds it (a replacement is brief), for at
/// most `LOG_OPEN_WAIT`; `None` when it cannot be had (a file system without such locks):
/// the open goes on as before.
pub(super) fn hold_log_for_open(vfs: &dyn Vfs, dir: &Path) -> Option<LogLock> {
    let events = dir.join("events");
    let until = std::time::Instant::now() + LOG_OPEN_WAIT;
    loop {
        match vfs.lock_dir(&events, false) {
            Ok(held) => return Some(held),
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                if std::time::Instant::now() > until {
                    return None;
                }
                std::thread::sleep(LOCK_RETRY);
            }
            Err(_) => return None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_marker_reads_back_and_a_changed_byte_is_found() {
        for state in [
            MarkerState::Incomplete {
                what: "backup".into(),
            },
            MarkerState::Complete { position: 12345 },
        ] {
            let text = marker_text(&state);
            assert_eq!(parse_marker(&text), Some(state));
            let bad = text.replace("1", "2");
            assert_eq!(parse_marker(&bad), None, "{bad}");
            assert_eq!(parse_marker(&text[..text.len() - 3]), None);
        }
    }
}
