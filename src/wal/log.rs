//! The log itself: appends with group commit, the fsync policies, rotation, and the
//! background flusher that keeps the batch policy's promise.
//!
//! Failures follow two rules. A write that fails takes back only records nobody was told
//! about (they are erased from the file, durably, and their waiters fail); the log goes
//! on. An fdatasync that fails poisons the log for good: the kernel may already have
//! dropped the pages it could not write, so no later sync can vouch for them; every
//! later append, flush and sync fails with the original error until the log is reopened
//! and recovery decides from what is on disk.

use super::mark::{self, Mark, MarkWriter};
use super::reader::WalReader;
use super::record::{RecordRef, FLAG_BATCH_CONTINUES};
use super::recovery::{self, RecoveryInfo};
use super::segment;
use super::signal::{lock_quietly, Doorbell, Signal};
use super::stats::{WalStats, WalStatsSnapshot};
use super::vfs::{self, FileRef, Kind, OpenMode};
use super::{FsyncPolicy, Position, WalConfig};
use crate::error::{Error, ErrorKind, Result};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// Appended bytes past which an appender writes the buffer out itself, without waiting
/// for the flusher (bounds memory, keeps writes large).
const WRITE_THRESHOLD: usize = 4 << 20;

/// Attempts of the flusher to take a lock without parking on it (`lock_quietly`) before
/// it waits as anyone would: the appenders hold the locks for a few hundred instructions.
const QUIET_TRIES: u32 = 1000;

/// What an fdatasync covers: the active segment (its file and id), its written end and
/// the LSN written when the sync started.
struct Covered {
    file: FileRef,
    segment_id: u64,
    offset: u64,
    lsn: Lsn,
}

/// A log sequence number: bytes appended since the log was opened, across segments.
pub type Lsn = u64;

/// The write-ahead log. Thread-safe: share it behind an `Arc`; any number of threads
/// may append, sync and read at once.
pub struct Wal {
    pub(crate) inner: Arc<Inner>,
    flusher: Mutex<Option<JoinHandle<()>>>,
}

pub(crate) struct Inner {
    pub(crate) config: WalConfig,
    /// The process that opened the log: a forked child must not write through it.
    pid: u32,
    /// Held by whoever writes to or syncs the segment files, or rotates. Taken before
    /// `state`.
    io: Mutex<()>,
    pub(crate) state: Mutex<State>,
    /// Signalled when `durable`/`written` move, a flush or rotation ends, or the log
    /// closes.
    progress: Signal,
    /// Wakes the batch flusher when it sleeps without a limit and there is something to
    /// flush, or on close.
    flusher_bell: Doorbell,
    pub(crate) stats: WalStats,
    /// Open read handles of segments, for random-access reads.
    read_files: Mutex<Vec<(u64, FileRef)>>,
    /// The active segment's id and written end, packed (id << 40 | offset), so a reader
    /// can tell without a lock whether the bytes it wants are with the OS yet.
    visible: AtomicU64,
    /// Set with `State::poisoned` (never cleared): `health` reads it without the lock.
    poisoned: AtomicBool,
    /// A writer's durable mark, for readers in other processes (see `mark`).
    mark: Option<MarkWriter>,
    /// A reader's: the mark in force when the log was opened.
    opened_mark: Option<Mark>,
    /// A reader's handle of the mark file, once it exists.
    mark_file: Mutex<Option<FileRef>>,
}

fn pack_visible(id: u64, offset: u64) -> u64 {
    (id << 40) | offset
}

pub(crate) struct State {
    pub(crate) active_id: u64,
    active: FileRef,
    /// Every segment, ascending: id and logical end (for the active one, what is written).
    pub(crate) segments: Vec<(u64, u64)>,
    /// Appended bytes not yet handed to the OS; they go at `active` offset `written_off`.
    buf: Vec<u8>,
    written_off: u64,
    /// Where the next record goes in the active segment.
    end_off: u64,
    /// Offset in the active segment up to which everything is durable.
    durable_off: u64,
    appended: Lsn,
    written: Lsn,
    durable: Lsn,
    /// A leader is writing (set before it takes `io`).
    flushing: bool,
    /// A rotation is under way: appends wait, so no record is placed in a segment that
    /// is being sealed.
    rotating: bool,
    /// When the oldest appended-but-not-durable byte was appended.
    dirty_since: Option<Instant>,
    /// The flusher sleeps until its bell rings (nothing was dirty when it looked): the
    /// append that makes the log dirty rings it.
    flusher_idle: bool,
    /// For each ended epoch (index), the LSN up to which its records survived the write
    /// failure that ended it, and that failure. A waiter from an ended epoch whose LSN is
    /// past it lost its records (LSNs after it are reused by the next epoch).
    epochs: Vec<(Lsn, Error)>,
    /// A failed fdatasync (or a failure that could not be cleaned up): set once, never
    /// cleared while the log is open.
    poisoned: Option<Error>,
    closed: bool,
}

impl State {
    fn epoch(&self) -> u64 {
        self.epochs.len() as u64
    }
}

/// What an append hands back: where each record went, and the LSN to wait for.
#[derive(Debug, Clone)]
pub struct Appended {
    pub positions: Vec<Position>,
    pub lsn: Lsn,
    /// The failure epoch the records were appended in (see `wait_durable`).
    pub epoch: u64,
}

impl Wal {
    /// Opens (creating if needed) the log in `config.dir` and recovers it.
    pub fn open(config: WalConfig) -> Result<(Wal, RecoveryInfo)> {
        Self::open_visiting(config, &mut |_, _| Ok(()))
    }

    /// Opens the log, calling `visit` for every valid record in order during recovery, so
    /// a caller can rebuild its state in the same pass.
    pub fn open_visiting(
        config: WalConfig,
        visit: &mut dyn FnMut(Position, &RecordRef<'_>) -> Result<()>,
    ) -> Result<(Wal, RecoveryInfo)> {
        Self::open_from(config, Position::default(), None, visit)
    }

    /// Like `open_visiting`, but trusts everything before `start` (the end of the records
    /// a checkpoint covers) and scans only from there. `start_key`: the key the record at
    /// `start` has, when keys are positions (damage right at `start` is then judged in
    /// time linear in its length; see `recovery::Range`).
    ///
    /// Opened read-only, the log reads no further than the writer's durable mark: under
    /// `Always` only what is durable, under the other policies all that is written.
    pub fn open_from(
        config: WalConfig,
        start: Position,
        start_key: Option<u64>,
        visit: &mut dyn FnMut(Position, &RecordRef<'_>) -> Result<()>,
    ) -> Result<(Wal, RecoveryInfo)> {
        config.validate()?;
        let vfs = config.vfs.clone();
        let dir = &config.dir;
        if !config.read_only {
            vfs::create_dir_all_durable(&*vfs, dir)
                .map_err(|e| Error::io(format!("creating {}", dir.display()), e))?;
        } else if !matches!(vfs.stat(dir), Ok(s) if s.kind == Kind::Dir) {
            return Err(Error::new(
                ErrorKind::NotFound,
                format!("no log directory at {}", dir.display()),
            ));
        }
        let opened_mark = config.read_only.then(|| mark::read(&*vfs, dir)).flatten();
        let range = recovery::Range {
            start,
            start_key,
            until: opened_mark.and_then(|m| m.bound),
        };
        let recovered = recovery::recover(&*vfs, dir, !config.read_only, range, visit)?;
        let mut segments = recovered.segments;
        let (active_id, active, end_off) = if config.read_only {
            Self::reader_tail(&config, &segments)
        } else {
            Self::writer_tail(&config, &mut segments)?
        };
        let mark = match config.read_only {
            true => None,
            false => Some(Self::first_mark(&config, &active, active_id, end_off)?),
        };
        let state = State {
            active_id,
            active,
            segments,
            buf: Vec::new(),
            written_off: end_off,
            end_off,
            durable_off: end_off,
            appended: 0,
            written: 0,
            durable: 0,
            flushing: false,
            rotating: false,
            dirty_since: None,
            flusher_idle: false,
            epochs: Vec::new(),
            poisoned: None,
            closed: false,
        };
        let inner = Arc::new(Inner {
            config,
            pid: crate::wal::process::id(),
            io: Mutex::new(()),
            state: Mutex::new(state),
            progress: Signal::default(),
            flusher_bell: Doorbell::default(),
            stats: WalStats::default(),
            read_files: Mutex::new(Vec::new()),
            visible: AtomicU64::new(0),
            poisoned: AtomicBool::new(false),
            mark,
            opened_mark,
            mark_file: Mutex::new(None),
        });
        {
            let st = inner.lock_state();
            inner.publish_visible(&st);
        }
        let flusher = match inner.config.fsync_policy {
            FsyncPolicy::Batch(_) | FsyncPolicy::Os if !inner.config.read_only => {
                let inner = inner.clone();
                let handle = std::thread::Builder::new()
                    .name("evstore-flusher".into())
                    .spawn(move || inner.flusher_loop())
                    .map_err(|e| Error::io("starting the flusher thread", e))?;
                Some(handle)
            }
            _ => None,
        };
        Ok((
            Wal {
                inner,
                flusher: Mutex::new(flusher),
            },
            recovered.info,
        ))
    }

    /// A reader's active segment: where the recovered records end (or a placeholder file
    /// when the log has no segment yet).
    fn reader_tail(config: &WalConfig, segments: &[(u64, u64)]) -> (u64, FileRef, u64) {
        let (id, end) = segments.last().copied().unwrap_or((0, 0));
        let file = match segment::open(&*config.vfs, &config.dir, id, false) {
            Ok(f) => f,
            // An empty read-only log: a placeholder that is never written or read.
            Err(_) => Arc::new(EmptyFile),
        };
        (id, file, end)
    }

    /// A writer's active segment, opened for appends (preallocated), or the first segment
    /// of a new log.
    fn writer_tail(
        config: &WalConfig,
        segments: &mut Vec<(u64, u64)>,
    ) -> Result<(u64, FileRef, u64)> {
        let (vfs, dir) = (&*config.vfs, &config.dir);
        let prealloc = config.preallocate.then_some(config.max_segment_size);
        let Some(&(id, end)) = segments.last() else {
            let file = segment::create(vfs, dir, 0, prealloc)
                .map_err(|e| Error::io("creating segment 000000.wal", e))?;
            segments.push((0, 0));
            return Ok((0, file, 0));
        };
        let file = segment::open(vfs, dir, id, true)
            .map_err(|e| Error::io(format!("opening segment {id}"), e))?;
        if let Some(len) = prealloc {
            let have = file
                .len()
                .map_err(|e| Error::io(format!("reading segment {id}"), e))?;
            if have < len {
                file.allocate(len)
                    .map_err(|e| Error::io(format!("preallocating segment {id}"), e))?;
            }
        }
        Ok((id, file, end))
    }

    /// A new writer's durable mark. Under `Always` it bounds readers at the recovered end,
    /// made durable first (a crashed writer may have left records written but never
    /// synced); under the other policies it sets no bound.
    fn first_mark(config: &WalConfig, active: &FileRef, id: u64, end: u64) -> Result<MarkWriter> {
        let bound = match config.fsync_policy {
            FsyncPolicy::Always => {
                if end > 0 {
                    active
                        .sync_data()
                        .map_err(|e| Error::io("fdatasync of the recovered segment", e))?;
                }
                Some(Position {
                    segment_id: id,
                    offset: end,
                })
            }
            _ => None,
        };
        MarkWriter::open(&*config.vfs, &config.dir, bound)
            .map_err(|e| Error::io(format!("writing {}", mark::path(&config.dir).display()), e))
    }

    /// The writer's durable mark as it is now (read from its file); `None` when no
    /// writer of this version has published one. For a read-only log.
    pub fn current_mark(&self) -> Option<Mark> {
        let mut file = self
            .inner
            .mark_file
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        if file.is_none() {
            let path = mark::path(&self.inner.config.dir);
            *file = self.inner.config.vfs.open(&path, OpenMode::Read).ok();
        }
        mark::read_file(&**file.as_ref()?)
    }

    /// The mark a read-only log was opened with.
    pub fn opened_mark(&self) -> Option<Mark> {
        self.inner.opened_mark
    }

    /// The record at `pos`: its length and stored CRC (what tells one record from
    /// another), or `None` when the log holds no whole record there now.
    pub fn record_tail(&self, pos: Position) -> Result<Option<(u64, u32)>> {
        let file = match self.inner.read_file(pos.segment_id) {
            Ok(f) => f,
            Err(_) => return Ok(None),
        };
        let io = |e| Error::io(format!("reading {}", segment::file_name(pos.segment_id)), e);
        let mut head = [0u8; super::record::MAX_OVERHEAD];
        let got = vfs::read_at_most(&*file, &mut head, pos.offset).map_err(io)?;
        let Some(len) = super::record::peek_len(&head[..got]) else {
            return Ok(None);
        };
        let mut crc = [0u8; 4];
        let end = pos.offset + len as u64;
        if len < 4 || vfs::read_at_most(&*file, &mut crc, end - 4).map_err(io)? < 4 {
            return Ok(None);
        }
        Ok(Some((len as u64, u32::from_le_bytes(crc))))
    }

    pub fn config(&self) -> &WalConfig {
        &self.inner.config
    }

    /// Appends one record; under `Always` returns once it is on disk. Under `Batch` and
    /// `Os` it returns once the record is in the log's buffer (readable, written to the OS
    /// within the window or when the buffer fills); call `flush` to hand it to the OS now.
    /// If writing a buffered record out fails later, the log is poisoned and says so on
    /// every later call: use `append_written` to learn of a failed write from the append.
    pub fn append(&self, record: &RecordRef<'_>) -> Result<Position> {
        let a = self.append_batch(std::slice::from_ref(record))?;
        Ok(a.positions[0])
    }

    /// Appends records as one atomic batch, written with one write; under `Always`
    /// returns once they are on disk. After a crash either all of them are in the log or
    /// none is.
    pub fn append_batch(&self, records: &[RecordRef<'_>]) -> Result<Appended> {
        let a = self.append_batch_nowait(records)?;
        if self.inner.config.fsync_policy == FsyncPolicy::Always {
            self.wait_durable(&a)?;
        }
        Ok(a)
    }

    /// Puts a batch into the log's buffer without waiting for any write or sync. The
    /// records are readable at once; `wait_durable` makes them durable (and says whether
    /// they made it).
    pub fn append_batch_nowait(&self, records: &[RecordRef<'_>]) -> Result<Appended> {
        self.inner.check_process()?;
        self.inner.append(records, None, Vec::new())
    }

    /// `append_batch_nowait` for a caller that numbered its records from what it knew
    /// in failure epoch `epoch`: refused, placing nothing, if a failed write has taken
    /// back records since (the numbering would then leave a gap).
    pub fn append_in_epoch(&self, records: &[RecordRef<'_>], epoch: u64) -> Result<Appended> {
        self.append_in_epoch_reusing(records, epoch, Vec::new())
    }

    /// `append_in_epoch` handing back the records' positions in `positions` (emptied
    /// first): a caller that appends often keeps one vector instead of allocating one a
    /// call (it gets it back as `Appended::positions`).
    pub fn append_in_epoch_reusing(
        &self,
        records: &[RecordRef<'_>],
        epoch: u64,
        positions: Vec<Position>,
    ) -> Result<Appended> {
        self.inner.check_process()?;
        self.inner.append(records, Some(epoch), positions)
    }

    /// Appends a batch and hands it to the OS before returning (no fsync): when it
    /// returns `Ok` the records survive a crash of this process; when it fails, none of
    /// them is in the log (a partly written batch is erased) and the log goes on.
    pub fn append_written(&self, records: &[RecordRef<'_>]) -> Result<Appended> {
        self.append_written_reusing(records, Vec::new())
    }

    /// `append_written` handing back the records' positions in `positions` (emptied
    /// first), as `append_in_epoch_reusing`.
    pub fn append_written_reusing(
        &self,
        records: &[RecordRef<'_>],
        positions: Vec<Position>,
    ) -> Result<Appended> {
        self.inner.check_process()?;
        self.inner.append_written(records, positions)
    }

    /// Waits until everything up to `appended.lsn` is on disk (group commit: one leader
    /// writes and syncs for everyone waiting). An error means the records are not in the
    /// log and never will be (a failed write took them back), or the log is poisoned.
    pub fn wait_durable(&self, appended: &Appended) -> Result<()> {
        self.inner.check_process()?;
        self.inner.flush_until(appended.lsn, appended.epoch, true)
    }

    /// Makes everything appended so far durable, under any policy.
    pub fn sync(&self) -> Result<()> {
        self.inner.check_process()?;
        let (lsn, epoch) = self.inner.now();
        self.inner.flush_until(lsn, epoch, true)
    }

    /// Hands everything appended so far to the OS (no fsync).
    pub fn flush(&self) -> Result<()> {
        self.inner.check_process()?;
        let (lsn, epoch) = self.inner.now();
        self.inner.flush_until(lsn, epoch, false)
    }

    /// Every segment, ascending: its id and logical end (for the active one, where the
    /// next record goes).
    pub fn segments(&self) -> Vec<(u64, u64)> {
        let st = self.inner.lock_state();
        let mut all = st.segments.clone();
        if let Some(last) = all.last_mut().filter(|l| l.0 == st.active_id) {
            last.1 = st.end_off;
        }
        all
    }

    /// The id of the oldest segment the log has.
    pub fn first_segment_id(&self) -> u64 {
        let st = self.inner.lock_state();
        st.segments.first().map_or(st.active_id, |s| s.0)
    }

    /// Where the next record will go.
    pub fn current_position(&self) -> Position {
        let st = self.inner.lock_state();
        Position {
            segment_id: st.active_id,
            offset: st.end_off,
        }
    }

    /// A read-only log's `current_position`, where its open's reading of the log ended,
    /// with the file of that segment the open read (opened while the open held the log
    /// directory): that offset is an offset of this file. A writer's compaction may put
    /// a shorter copy of the segment at its name afterwards, where the offset is
    /// meaningless. `None` at offset 0 (no segment yet, or nothing read of it), which
    /// every copy of the segment shares, and for a writable log.
    pub(crate) fn opened_tail(&self) -> Option<(Position, FileRef)> {
        if !self.inner.config.read_only {
            return None;
        }
        let st = self.inner.lock_state();
        (st.end_off > 0).then(|| {
            let at = Position {
                segment_id: st.active_id,
                offset: st.end_off,
            };
            (at, st.active.clone())
        })
    }

    /// The LSN of everything appended so far, and of what is durable.
    pub fn lsns(&self) -> (Lsn, Lsn) {
        let st = self.inner.lock_state();
        (st.appended, st.durable)
    }

    /// The current failure epoch: it moves each time a failed write takes back records
    /// that were appended but not yet acknowledged.
    pub fn epoch(&self) -> u64 {
        self.inner.lock_state().epoch()
    }

    /// Reads records in order from `from` (a position an append returned, or the start
    /// of a segment), crossing segments, seeing records appended while it runs.
    pub fn read_from(&self, from: Position) -> Result<WalReader> {
        WalReader::new(self.inner.clone(), from)
    }

    /// Deletes whole segments that lie entirely before `pos`; never the active segment.
    /// Returns how many were deleted.
    pub fn delete_segments_before(&self, pos: Position) -> Result<usize> {
        self.inner.check_process()?;
        if self.inner.config.read_only {
            return Err(Error::new(ErrorKind::ReadOnly, "the log is open read-only"));
        }
        let doomed: Vec<u64> = {
            let st = self.inner.lock_state();
            st.segments
                .iter()
                .map(|&(id, _)| id)
                .filter(|&id| id < pos.segment_id && id != st.active_id)
                .collect()
        };
        let dir = &self.inner.config.dir;
        let vfs = &*self.inner.config.vfs;
        // Oldest first, so that a failure or crash part way leaves no hole.
        for &id in &doomed {
            vfs.remove_file(&segment::path(dir, id))
                .map_err(|e| Error::io(format!("deleting {}", segment::file_name(id)), e))?;
            let mut files = self
                .inner
                .read_files
                .lock()
                .unwrap_or_else(|e| e.into_inner());
            files.retain(|(s, _)| *s != id);
            drop(files);
            self.inner.lock_state().segments.retain(|&(s, _)| s != id);
        }
        if !doomed.is_empty() {
            vfs.sync_dir(dir)
                .map_err(|e| Error::io("syncing the log directory", e))?;
        }
        Ok(doomed.len())
    }

    /// Starts a new segment now if the active one holds any record (a compaction seals
    /// it so that it can be rewritten); returns whether it did. Everything appended is
    /// written and synced first, as for any rotation.
    pub fn seal_active(&self) -> Result<bool> {
        self.inner.check_process()?;
        if self.inner.config.read_only {
            return Err(Error::new(ErrorKind::ReadOnly, "the log is open read-only"));
        }
        let inner = &self.inner;
        let io = inner.lock_io();
        let mut st = inner.lock_state();
        check_open(&st)?;
        if st.end_off == 0 {
            return Ok(false);
        }
        st.rotating = true;
        drop(st);
        let result = inner.rotate_body();
        inner.lock_state().rotating = false;
        inner.progress.notify_all();
        drop(io);
        if result.is_ok() {
            inner.stats.record_rotation();
        }
        result.map(|_| true)
    }

    /// Puts the file `tmp` (a rewritten copy of sealed segment `id`, `len` bytes, synced)
    /// in place of the segment: a rename, so that a reader holding the old file reads it
    /// on, and a new read opens the new one. The directory is not synced here.
    pub fn replace_sealed(&self, id: u64, tmp: &std::path::Path, len: u64) -> Result<()> {
        self.inner.check_process()?;
        let dir = &self.inner.config.dir;
        let st = self.inner.lock_state();
        if id >= st.active_id || !st.segments.iter().any(|&(s, _)| s == id) {
            return Err(Error::invalid(format!(
                "segment {} is not a sealed segment of the log",
                segment::file_name(id)
            )));
        }
        drop(st);
        self.inner
            .config
            .vfs
            .rename(tmp, &segment::path(dir, id))
            .map_err(|e| Error::io(format!("renaming over {}", segment::file_name(id)), e))?;
        let mut st = self.inner.lock_state();
        if let Some(s) = st.segments.iter_mut().find(|s| s.0 == id) {
            s.1 = len;
        }
        drop(st);
        self.forget_read_file(id);
        Ok(())
    }

    /// Drops the cached read handle of segment `id` (the segment was replaced: the next
    /// read opens the file now at its name).
    pub fn forget_read_file(&self, id: u64) {
        let mut files = self
            .inner
            .read_files
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        files.retain(|(s, _)| *s != id);
    }

    /// Reads exactly `len` bytes at `pos` into `buf` (replacing its contents): random
    /// access for a caller that knows where a record is and how long.
    pub fn read_exact_at(&self, pos: Position, len: usize, buf: &mut Vec<u8>) -> Result<()> {
        self.read_exact_cached(&mut None, pos, len, buf)
    }

    /// `read_exact_at` for a caller that reads many records: `cache` keeps the last
    /// segment's handle between calls.
    pub fn read_exact_cached(
        &self,
        cache: &mut Option<(u64, FileRef)>,
        pos: Position,
        len: usize,
        buf: &mut Vec<u8>,
    ) -> Result<()> {
        let file = match cache {
            Some((id, f)) if *id == pos.segment_id => f.clone(),
            _ => {
                let f = self.inner.read_file(pos.segment_id)?;
                *cache = Some((pos.segment_id, f.clone()));
                f
            }
        };
        let end = pos.offset + len as u64;
        if !self.inner.config.read_only {
            let v = self.inner.visible.load(Ordering::Acquire);
            let (id, off) = (v >> 40, v & ((1 << 40) - 1));
            if pos.segment_id > id || (pos.segment_id == id && end > off) {
                self.inner.make_visible()?;
            }
        }
        buf.resize(len, 0);
        let got = vfs::read_at_most(&*file, buf, pos.offset).map_err(|e| {
            Error::io(
                format!(
                    "reading {} at {}",
                    segment::file_name(pos.segment_id),
                    pos.offset
                ),
                e,
            )
        })?;
        if got < len {
            return Err(Error::corrupt(format!(
                "{} ends at {} before the record at {} does",
                segment::file_name(pos.segment_id),
                pos.offset + got as u64,
                pos.offset
            )));
        }
        Ok(())
    }

    /// The logical end of segment `id` (what has been written of the active one).
    pub fn segment_end(&self, id: u64) -> Option<u64> {
        if self.inner.config.read_only {
            let p = segment::path(&self.inner.config.dir, id);
            return self.inner.config.vfs.stat(&p).ok().map(|s| s.len);
        }
        let st = self.inner.lock_state();
        if id == st.active_id {
            return Some(st.end_off);
        }
        st.segments.iter().find(|s| s.0 == id).map(|s| s.1)
    }

    /// The failure that poisoned the log, if one did.
    pub fn health(&self) -> Result<()> {
        // Every append asks: a healthy log answers without its lock.
        if !self.inner.poisoned.load(Ordering::Acquire) {
            return Ok(());
        }
        let st = self.inner.lock_state();
        match &st.poisoned {
            Some(e) => Err(poisoned_error(e)),
            None => Ok(()),
        }
    }

    pub fn stats(&self) -> WalStatsSnapshot {
        let st = self.inner.lock_state();
        let sealed: u64 = st.segments.iter().rev().skip(1).map(|&(_, end)| end).sum();
        let bytes = sealed + st.end_off;
        let segments = st.segments.len() as u64;
        drop(st);
        self.inner.stats.snapshot(bytes, segments)
    }

    /// Writes and syncs everything, finalizes the active segment to its real length and
    /// stops the flusher. Appends after this fail. Calling it twice is harmless. A
    /// poisoned log reports its failure here too (and still closes).
    ///
    /// In a forked child it touches nothing (the parent owns the files, and the
    /// flusher thread does not exist there) and says so.
    pub fn close(&self) -> Result<()> {
        if let Err(e) = self.inner.check_process() {
            // Threads do not survive fork: joining the parent's flusher would never end.
            if let Some(h) = self
                .flusher
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .take()
            {
                std::mem::forget(h);
            }
            return Err(e);
        }
        let result = if self.inner.config.read_only {
            Ok(())
        } else {
            self.sync().and_then(|_| self.inner.finalize_active())
        };
        self.inner.lock_state().closed = true;
        self.inner.flusher_bell.ring();
        self.inner.progress.notify_all();
        if let Some(h) = self
            .flusher
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take()
        {
            let _ = h.join();
        }
        result
    }
}

impl Drop for Wal {
    fn drop(&mut self) {
        let _ = self.close();
    }
}

/// The error every call returns once the log is poisoned.
fn poisoned_error(e: &Error) -> Error {
    Error::new(
        ErrorKind::Io,
        format!(
            "the log refuses writes after an earlier failure (reopen the store to recover): {}",
            e.message
        ),
    )
}

/// The placeholder file of a read-only log that has no segment yet.
#[derive(Debug)]
struct EmptyFile;

impl vfs::VfsFile for EmptyFile {
    fn read_at(&self, _: &mut [u8], _: u64) -> std::io::Result<usize> {
        Ok(0)
    }
    fn write_at(&self, _: &[u8], _: u64) -> std::io::Result<usize> {
        Err(std::io::Error::from(std::io::ErrorKind::PermissionDenied))
    }
    fn sync_data(&self) -> std::io::Result<()> {
        Ok(())
    }
    fn sync_all(&self) -> std::io::Result<()> {
        Ok(())
    }
    fn set_len(&self, _: u64) -> std::io::Result<()> {
        Err(std::io::Error::from(std::io::ErrorKind::PermissionDenied))
    }
    fn allocate(&self, _: u64) -> std::io::Result<()> {
        Err(std::io::Error::from(std::io::ErrorKind::PermissionDenied))
    }
    fn len(&self) -> std::io::Result<u64> {
        Ok(0)
    }
}

impl Inner {
    pub(crate) fn lock_state(&self) -> MutexGuard<'_, State> {
        // A panic while holding the lock leaves plain data behind; keep going.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub(crate) fn lock_io(&self) -> MutexGuard<'_, ()> {
        self.io.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Refuses a call from a process other than the one that opened the log (a fork
    /// child shares the parent's files and lock, but not its threads or its buffer).
    pub(crate) fn check_process(&self) -> Result<()> {
        let me = crate::wal::process::id();
        if me != self.pid {
            return Err(Error::invalid(format!(
                "the log {} was opened by process {}, used from process {me}; a child process must open stores of its own",
                self.config.dir.display(),
                self.pid
            )));
        }
        Ok(())
    }

    /// Poisons the log for good with `failure` (see the module's comment).
    fn poison(&self, st: &mut State, failure: Error) {
        st.poisoned = Some(failure);
        self.poisoned.store(true, Ordering::Release);
    }

    /// Checks an append's size before any lock is taken.
    fn check_append(&self, records: &[RecordRef<'_>]) -> Result<u64> {
        if self.config.read_only {
            return Err(Error::new(ErrorKind::ReadOnly, "the log is open read-only"));
        }
        if records.is_empty() {
            return Err(Error::invalid("an append needs at least one record"));
        }
        let size: u64 = records.iter().map(|r| r.encoded_len() as u64).sum();
        if size > self.config.max_segment_size {
            return Err(Error::new(
                ErrorKind::TooLarge,
                format!(
                    "{size} bytes of records do not fit in one segment of {} bytes",
                    self.config.max_segment_size
                ),
            ));
        }
        Ok(size)
    }

    /// Encodes `records` into the buffer at the end of the active segment (which has
    /// room: the caller rotated if needed). Batch records but the last carry the
    /// "batch continues" flag. Their positions go into `positions` (emptied first).
    fn place(
        &self,
        st: &mut State,
        records: &[RecordRef<'_>],
        size: u64,
        mut positions: Vec<Position>,
    ) -> Appended {
        positions.clear();
        positions.reserve(records.len());
        let last = records.len() - 1;
        for (i, r) in records.iter().enumerate() {
            positions.push(Position {
                segment_id: st.active_id,
                offset: st.end_off,
            });
            let mut r = *r;
            r.reserved &= !FLAG_BATCH_CONTINUES;
            if i < last {
                r.reserved |= FLAG_BATCH_CONTINUES;
            }
            let before = st.buf.len();
            r.encode_into(&mut st.buf);
            st.end_off += (st.buf.len() - before) as u64;
        }
        st.appended += size;
        if st.dirty_since.is_none() {
            st.dirty_since = Some(Instant::now());
            // Rung only when the flusher sleeps without a limit: while appends go on it
            // naps with one, and finds this by itself (no wake-up system call).
            if std::mem::take(&mut st.flusher_idle) {
                self.flusher_bell.ring();
            }
        }
        self.stats.record_append(records.len() as u64, size);
        Appended {
            positions,
            lsn: st.appended,
            epoch: st.epoch(),
        }
    }

    /// The state lock, once no rotation is under way and the active segment has room
    /// for `size` more bytes (rotating if it has not).
    fn lock_with_room(&self, size: u64, epoch: Option<u64>) -> Result<MutexGuard<'_, State>> {
        loop {
            let mut st = self.lock_state();
            check_open(&st)?;
            while st.rotating {
                st = self.progress.wait(st);
                check_open(&st)?;
            }
            if let Some(e) = epoch.and_then(|e| st.epochs.get(e as usize)) {
                return Err(e.1.clone());
            }
            if st.end_off + size <= self.config.max_segment_size || st.end_off == 0 {
                return Ok(st);
            }
            drop(st);
            let io = self.lock_io();
            self.rotate_locked(size, &io)?;
        }
    }

    fn append(
        &self,
        records: &[RecordRef<'_>],
        epoch: Option<u64>,
        positions: Vec<Position>,
    ) -> Result<Appended> {
        let size = self.check_append(records)?;
        let mut st = self.lock_with_room(size, epoch)?;
        let a = self.place(&mut st, records, size, positions);
        let big = st.buf.len() >= WRITE_THRESHOLD && !st.flushing;
        drop(st);
        if big && self.config.fsync_policy != FsyncPolicy::Always {
            self.flush_until(a.lsn, a.epoch, false)?;
        }
        Ok(a)
    }

    fn append_written(
        &self,
        records: &[RecordRef<'_>],
        positions: Vec<Position>,
    ) -> Result<Appended> {
        let size = self.check_append(records)?;
        let io = self.lock_io();
        let mut st = self.lock_state();
        check_open(&st)?;
        if !st.buf.is_empty() {
            // Someone else's buffered records go first, on their own terms.
            drop(st);
            self.flush_locked(false, false)?;
            st = self.lock_state();
        }
        if st.end_off + size > self.config.max_segment_size && st.end_off > 0 {
            drop(st);
            self.rotate_locked(size, &io)?;
            st = self.lock_state();
            check_open(&st)?;
        }
        let a = self.place(&mut st, records, size, positions);
        self.flush_held(st, false, true)?;
        drop(io);
        self.progress.notify_all();
        Ok(a)
    }

    /// Writes (and with `sync`, fdatasyncs) until `lsn` is written (durable). One thread
    /// at a time does the I/O for everyone; the others wait for it.
    fn flush_until(&self, lsn: Lsn, epoch: u64, sync: bool) -> Result<()> {
        let mut st = self.lock_state();
        loop {
            // Records of an ended epoch past what survived its failure were taken back.
            if let Some((kept, e)) = st.epochs.get(epoch as usize) {
                if lsn > *kept {
                    return Err(e.clone());
                }
            }
            let done = if sync { st.durable } else { st.written };
            if done >= lsn {
                return Ok(());
            }
            if let Some(e) = &st.poisoned {
                return Err(poisoned_error(e));
            }
            if st.closed {
                return Err(Error::invalid("the log is closed"));
            }
            if !st.flushing {
                break;
            }
            st = self.progress.wait(st);
        }
        st.flushing = true;
        drop(st);
        let io = self.lock_io();
        // Under `Always` nobody was told about buffered records yet; under the other
        // policies they were acknowledged when buffered.
        let unacked = self.config.fsync_policy == FsyncPolicy::Always;
        let result = self.flush_locked(sync, unacked);
        drop(io);
        self.lock_state().flushing = false;
        self.progress.notify_all();
        result?;
        // Someone else's bytes may have been all we wrote; go round once more if needed.
        self.flush_until(lsn, epoch, sync)
    }

    /// The LSN appended so far and the current failure epoch.
    fn now(&self) -> (Lsn, u64) {
        let st = self.lock_state();
        (st.appended, st.epoch())
    }

    /// Writes out the buffer (and syncs) with `io` held: the body of a flush. With
    /// `unacked`, nobody has been told about the buffered records yet, so a failed write
    /// takes them back instead of poisoning the log.
    fn flush_locked(&self, sync: bool, unacked: bool) -> Result<()> {
        self.flush_held(self.lock_state(), sync, unacked)
    }

    /// `flush_locked` for a caller that holds the state lock already (`st`, let go here).
    fn flush_held(&self, mut st: MutexGuard<'_, State>, sync: bool, unacked: bool) -> Result<()> {
        if let Some(e) = &st.poisoned {
            return Err(poisoned_error(e));
        }
        let chunk = std::mem::take(&mut st.buf);
        let file = st.active.clone();
        let segment_id = st.active_id;
        let at = st.written_off;
        let target = st.appended;
        drop(st);
        let written_end = at + chunk.len() as u64;

        if !chunk.is_empty() {
            let wrote = vfs::write_all_at(&*file, &chunk, at)
                .map_err(|e| Error::io(format!("writing segment at offset {at}"), e));
            self.stats.record_write();
            if let Err(e) = wrote {
                return Err(self.write_failed(e, &file, at, chunk, unacked));
            }
            let mut st = self.lock_state();
            st.written_off = at + chunk.len() as u64;
            st.written = target;
            let written_off = st.written_off;
            if let Some(seg) = st.segments.last_mut() {
                seg.1 = written_off;
            }
            self.publish_visible(&st);
            if !sync && self.config.fsync_policy == FsyncPolicy::Os && st.appended == target {
                st.dirty_since = None;
            }
            // Keep the bigger allocation for the next round.
            if st.buf.is_empty() {
                let mut chunk = chunk;
                chunk.clear();
                st.buf = chunk;
            }
        }
        if !sync {
            return Ok(());
        }
        let covered = Covered {
            file,
            segment_id,
            offset: written_end,
            lsn: target,
        };
        self.sync_covered(&covered, true)
    }

    /// fdatasyncs `c.file` and counts what it covers as durable. `io_held`: the caller
    /// holds `io` (nothing was written since `c` was taken); else (the flusher) others
    /// may have synced further or rotated meanwhile, and a failed sync under `Always`
    /// (never the flusher's) is not cleaned up here.
    fn sync_covered(&self, c: &Covered, io_held: bool) -> Result<()> {
        let started = Instant::now();
        let synced = c
            .file
            .sync_data()
            .map_err(|e| Error::io("fdatasync of the active segment", e));
        self.stats.record_fsync(started.elapsed());
        let mut st = match io_held {
            true => self.lock_state(),
            false => lock_quietly(&self.state, QUIET_TRIES),
        };
        match synced {
            Ok(()) => {
                st.durable = st.durable.max(c.lsn);
                if st.active_id == c.segment_id {
                    st.durable_off = st.durable_off.max(c.offset);
                }
                if st.appended == c.lsn {
                    st.dirty_since = None;
                }
                let bound = Position {
                    segment_id: c.segment_id,
                    offset: st.durable_off,
                };
                let same = st.active_id == c.segment_id;
                drop(st);
                if same {
                    self.publish_durable(bound);
                }
                Ok(())
            }
            Err(e) => {
                let mut why = e.message.clone();
                if io_held && self.config.fsync_policy == FsyncPolicy::Always {
                    // Nobody was told about what is not durable: erase it, so a refused
                    // append is never found in the log.
                    let durable_off = st.durable_off;
                    let len = c.file.len().unwrap_or(0);
                    drop(st);
                    if let Err(e2) = self.erase(&c.file, durable_off, len) {
                        why = format!("{why}; then erasing the unsynced records failed: {e2}");
                    }
                    st = self.lock_state();
                    st.buf.clear();
                    st.end_off = durable_off;
                    st.written_off = durable_off;
                    st.appended = st.durable;
                    st.written = st.durable;
                    st.dirty_since = None;
                    if let Some(seg) = st.segments.last_mut() {
                        seg.1 = durable_off;
                    }
                    self.publish_visible(&st);
                }
                let failure = Error::new(e.kind, why);
                self.poison(&mut st, failure.clone());
                drop(st);
                self.progress.notify_all();
                Err(failure)
            }
        }
    }

    /// Under `Always`, tells readers in other processes that the records before `bound`
    /// are durable. A failure is not the append's: its records are durable; readers see
    /// them with the next mark that is written.
    fn publish_durable(&self, bound: Position) {
        if self.config.fsync_policy != FsyncPolicy::Always {
            return;
        }
        if let Some(m) = &self.mark {
            let _ = m.publish(bound);
        }
    }

    /// A write of `chunk` at `at` failed: take the records back (erasing whatever part
    /// reached the file) when nobody was told about them, or poison the log when they
    /// were acknowledged. Returns the error for the caller.
    fn write_failed(
        &self,
        e: Error,
        file: &FileRef,
        at: u64,
        chunk: Vec<u8>,
        unacked: bool,
    ) -> Error {
        let mut st = self.lock_state();
        if !unacked {
            let failure = Error::new(
                e.kind,
                format!("{} (acknowledged records could not be written)", e.message),
            );
            // Put the bytes back so the state stays consistent for readers; nothing
            // writes them again.
            let mut back = chunk;
            back.extend_from_slice(&st.buf);
            st.buf = back;
            self.poison(&mut st, failure.clone());
            drop(st);
            self.progress.notify_all();
            return failure;
        }
        // Under `Always` everything past the durable point goes (written-but-unsynced
        // records too: none was acknowledged); otherwise only what this write carried.
        let always = self.config.fsync_policy == FsyncPolicy::Always;
        let keep_off = if always { st.durable_off } else { at };
        let keep_lsn = if always { st.durable } else { st.written };
        let len = file.len().unwrap_or(0).max(at + chunk.len() as u64);
        drop(st);
        let erased = self.erase(file, keep_off, len);
        let mut st = self.lock_state();
        st.buf.clear();
        st.end_off = keep_off;
        st.written_off = keep_off;
        st.appended = keep_lsn;
        st.written = keep_lsn;
        if st.durable >= st.appended {
            st.dirty_since = None;
        }
        if let Some(seg) = st.segments.last_mut() {
            seg.1 = keep_off;
        }
        self.publish_visible(&st);
        let failure = match erased {
            Ok(()) => e,
            Err(e2) => {
                let f = Error::new(
                    e.kind,
                    format!(
                        "{}; then erasing the partly written records failed: {e2}",
                        e.message
                    ),
                );
                self.poison(&mut st, f.clone());
                f
            }
        };
        st.epochs.push((keep_lsn, failure.clone()));
        drop(st);
        self.progress.notify_all();
        failure
    }

    /// Cuts the active segment back to `keep` bytes (keeping its preallocated size) and
    /// makes that durable, so records that were taken back cannot reappear after a crash.
    fn erase(&self, file: &FileRef, keep: u64, len: u64) -> std::io::Result<()> {
        file.set_len(keep)?;
        if self.config.preallocate && len > keep {
            file.allocate(len)?;
        }
        file.sync_all()
    }

    /// Starts a new segment because `size` more bytes do not fit in the active one: the
    /// old one is written, synced and cut to its length before the new one exists, so a
    /// segment that is not the last is always complete. Appends wait meanwhile. Needs
    /// `io` held (the guard proves it).
    fn rotate_locked(&self, size: u64, _io: &MutexGuard<'_, ()>) -> Result<()> {
        let mut st = self.lock_state();
        check_open(&st)?;
        if st.end_off + size <= self.config.max_segment_size || st.end_off == 0 {
            return Ok(()); // someone else rotated meanwhile
        }
        st.rotating = true;
        drop(st);
        let result = self.rotate_body();
        self.lock_state().rotating = false;
        self.progress.notify_all();
        if result.is_ok() {
            self.stats.record_rotation();
        }
        result
    }

    fn rotate_body(&self) -> Result<()> {
        let unacked = self.config.fsync_policy == FsyncPolicy::Always;
        self.flush_locked(true, unacked)?;
        let st = self.lock_state();
        let (old_id, old_file, old_end) = (st.active_id, st.active.clone(), st.end_off);
        drop(st);
        let new_id = old_id + 1;
        let dir = &self.config.dir;
        let prealloc = self
            .config
            .preallocate
            .then_some(self.config.max_segment_size);
        // Nothing appended is lost when this fails (the old segment is complete and
        // durable): the append that needed the new segment fails, and the next one tries
        // again.
        let fail =
            |what: &str, e| Error::io(format!("{what} during rotation to segment {new_id}"), e);
        if let Err(e) = segment::finalize(&*old_file, old_end) {
            let failure = fail("finalizing the old segment", e);
            // A failed fsync of the old segment: its data may not be on disk.
            let mut st = self.lock_state();
            self.poison(&mut st, failure.clone());
            return Err(failure);
        }
        let vfs = &*self.config.vfs;
        let file = match segment::create(vfs, dir, new_id, prealloc) {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                // A file left by a crash in an earlier rotation that never received a
                // record (recovery removes those; a writer beside us cannot exist).
                vfs.remove_file(&segment::path(dir, new_id))
                    .and_then(|_| segment::create(vfs, dir, new_id, prealloc))
                    .map_err(|e| fail("creating the new segment", e))?
            }
            Err(e) => return Err(fail("creating the new segment", e)),
        };
        let mut st = self.lock_state();
        st.active_id = new_id;
        st.active = file;
        st.segments.push((new_id, 0));
        st.end_off = 0;
        st.written_off = 0;
        st.durable_off = 0;
        self.publish_visible(&st);
        Ok(())
    }

    /// Cuts the active segment to its logical length (clean close).
    fn finalize_active(&self) -> Result<()> {
        let _io = self.lock_io();
        let st = self.lock_state();
        if st.closed || !st.buf.is_empty() || st.poisoned.is_some() {
            return Ok(());
        }
        let (file, end) = (st.active.clone(), st.end_off);
        drop(st);
        segment::finalize(&*file, end).map_err(|e| {
            let failure = Error::io("finalizing the active segment", e);
            self.poison(&mut self.lock_state(), failure.clone());
            failure
        })
    }

    /// The batch flusher: whenever something is appended, writes and syncs it within the
    /// window, whether or not more appends follow. Under `Os` it only writes. It stops
    /// working (but not waiting for close) once the log is poisoned.
    ///
    /// It keeps out of the appenders' way: it sleeps on a bell of its own, takes the
    /// locks without parking on them (`lock_quietly`), and does not hold `io` during the
    /// fdatasync (`flush_quietly`), so an append makes no `futex` call on its account.
    fn flusher_loop(&self) {
        let (window, sync) = match self.config.fsync_policy {
            FsyncPolicy::Batch(w) => (w, true),
            _ => (Duration::from_millis(200), false),
        };
        // Wake at half the window so a record's sync completes inside the window.
        let nap = (window / 2).max(Duration::from_micros(500));
        // After a flush it naps once more before it sleeps without a limit: appends that
        // go on meanwhile find it awake and need not ring.
        let mut just_flushed = false;
        loop {
            let mut st = lock_quietly(&self.state, QUIET_TRIES);
            st.flusher_idle = false;
            if st.closed {
                return;
            }
            let dirty = match st.dirty_since {
                Some(t) if st.poisoned.is_none() => t,
                _ => {
                    let limit = std::mem::take(&mut just_flushed).then_some(nap);
                    st.flusher_idle = limit.is_none();
                    drop(st);
                    self.flusher_bell.wait(limit);
                    continue;
                }
            };
            // Sleep until the oldest unsynced byte is due, whatever wakes us before:
            // one sync then covers everything appended meanwhile.
            let due = dirty + nap;
            let now = Instant::now();
            drop(st);
            if now < due {
                self.flusher_bell.wait(Some(due - now));
                continue;
            }
            // A failure poisons the log (reported to every later caller); nothing to do
            // with it here.
            let _ = self.flush_quietly(sync);
            just_flushed = true;
        }
    }

    /// The flusher's flush (not under `Always`, where appenders wait for their group's
    /// sync): writes what is buffered under `io`, then fdatasyncs what was written with
    /// `io` let go, so appenders go on writing meanwhile; what the sync covers is what
    /// was written when it started.
    ///
    /// Records appended during the sync are not covered, and were all appended after
    /// this flush began (everything appended before was written by it): so they are
    /// dirty since then, not since the first record this sync covered. Without that the
    /// next sync would be due at once, and appends that never pause (a catching-up
    /// consumer's checkpoints) would get one fdatasync after another instead of one a
    /// nap, each holding up the appends that meet it in the file system.
    fn flush_quietly(&self, sync: bool) -> Result<()> {
        let began = Instant::now();
        let io = lock_quietly(&self.io, QUIET_TRIES);
        self.flush_locked(false, false)?;
        if !sync {
            return Ok(());
        }
        let st = lock_quietly(&self.state, QUIET_TRIES);
        let covered = Covered {
            file: st.active.clone(),
            segment_id: st.active_id,
            offset: st.written_off,
            lsn: st.written,
        };
        drop(st);
        drop(io);
        let result = self.sync_covered(&covered, false);
        if result.is_ok() {
            let mut st = lock_quietly(&self.state, QUIET_TRIES);
            if st.appended > st.durable {
                st.dirty_since = Some(began);
            }
        }
        self.progress.notify_all();
        result
    }

    /// The logical end of segment `id` as far as readers may go, and whether a later
    /// segment exists. `None` when the segment is gone.
    pub(crate) fn segment_bounds(&self, id: u64) -> Option<(u64, bool)> {
        let st = self.lock_state();
        let i = st.segments.iter().position(|&(s, _)| s == id)?;
        Some((st.segments[i].1, i + 1 < st.segments.len()))
    }

    fn publish_visible(&self, st: &State) {
        self.visible.store(
            pack_visible(st.active_id, st.written_off),
            Ordering::Release,
        );
    }

    /// A cached read handle for segment `id`.
    fn read_file(&self, id: u64) -> Result<FileRef> {
        let mut files = self.read_files.lock().unwrap_or_else(|e| e.into_inner());
        if let Some((_, f)) = files.iter().find(|(s, _)| *s == id) {
            return Ok(f.clone());
        }
        let f = self
            .config
            .vfs
            .open(&segment::path(&self.config.dir, id), OpenMode::Read)
            .map_err(|e| Error::io(format!("opening {}", segment::file_name(id)), e))?;
        if files.len() >= 16 {
            files.remove(0);
        }
        files.push((id, f.clone()));
        Ok(f)
    }

    /// The first segment id after `id`, if there is one.
    pub(crate) fn next_segment(&self, id: u64) -> Option<u64> {
        let st = self.lock_state();
        st.segments.iter().map(|&(s, _)| s).find(|&s| s > id)
    }

    /// Writes out buffered records so readers can see them.
    pub(crate) fn make_visible(&self) -> Result<()> {
        let (lsn, epoch) = {
            let st = self.lock_state();
            // Also wait for a flush in flight: its bytes are not in `buf` any more.
            if st.written >= st.appended {
                return Ok(());
            }
            (st.appended, st.epoch())
        };
        self.flush_until(lsn, epoch, false)
    }
}

fn check_open(st: &State) -> Result<()> {
    if st.closed {
        return Err(Error::invalid("the log is closed"));
    }
    if let Some(e) = &st.poisoned {
        return Err(poisoned_error(e));
    }
    Ok(())
}
