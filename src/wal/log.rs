//! The log itself: appends with group commit, the fsync policies, rotation, and the
//! background flusher that keeps the batch policy's promise.

use super::reader::WalReader;
use super::record::{RecordRef, FLAG_BATCH_CONTINUES};
use super::recovery::{self, RecoveryInfo};
use super::segment;
use super::stats::{WalStats, WalStatsSnapshot};
use super::{FsyncPolicy, Position, WalConfig};
use crate::error::{Error, ErrorKind, Result};
use std::fs::File;
use std::os::unix::fs::FileExt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// Appended bytes past which an appender writes the buffer out itself, without waiting
/// for the flusher (bounds memory, keeps writes large).
const WRITE_THRESHOLD: usize = 4 << 20;

/// A log sequence number: bytes appended since the log was opened, across segments.
pub type Lsn = u64;

/// The write-ahead log. Thread-safe: share it behind an `Arc`.
pub struct Wal {
    pub(crate) inner: Arc<Inner>,
    flusher: Mutex<Option<JoinHandle<()>>>,
}

pub(crate) struct Inner {
    pub(crate) config: WalConfig,
    /// Held by whoever writes to or syncs the segment files. Taken before `state`.
    io: Mutex<()>,
    pub(crate) state: Mutex<State>,
    /// Signalled when `durable`/`written` move, a flush ends, or the log closes.
    progress: Condvar,
    /// Wakes the batch flusher when there is something to flush, or on close.
    flusher_wake: Condvar,
    pub(crate) stats: WalStats,
    /// Open read handles of segments, for random-access reads.
    read_files: Mutex<Vec<(u64, Arc<File>)>>,
    /// The active segment's id and written end, packed (id << 40 | offset), so a reader
    /// can tell without a lock whether the bytes it wants are with the OS yet.
    visible: AtomicU64,
}

fn pack_visible(id: u64, offset: u64) -> u64 {
    (id << 40) | offset
}

pub(crate) struct State {
    pub(crate) active_id: u64,
    active: Arc<File>,
    /// Every segment, ascending: id and logical end (for the active one, what is written).
    pub(crate) segments: Vec<(u64, u64)>,
    /// Appended bytes not yet handed to the OS; they go at `active` offset `written_off`
    /// (plus `inflight` while a flush is writing).
    buf: Vec<u8>,
    written_off: u64,
    inflight: u64,
    /// Where the next record goes in the active segment.
    end_off: u64,
    /// Offset in the active segment up to which everything is durable.
    durable_off: u64,
    appended: Lsn,
    written: Lsn,
    durable: Lsn,
    /// A leader is writing (set before it takes `io`).
    flushing: bool,
    /// When the oldest appended-but-not-durable byte was appended.
    dirty_since: Option<Instant>,
    /// Under `Always`: a write or sync failed; what was not durable was discarded and
    /// appends are refused until `clear_failure`.
    failed: Option<Error>,
    /// Bumped by every such failure: a waiter from an earlier epoch lost its records.
    epoch: u64,
    last_failure: Option<Error>,
    /// Under `Batch`/`Os`: a write failed; the bytes are kept and retried, appends refused.
    stalled: Option<Error>,
    closed: bool,
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
        Self::open_from(config, Position::default(), visit)
    }

    /// Like `open_visiting`, but trusts everything before `start` (the end of the records
    /// a checkpoint covers) and scans only from there.
    pub fn open_from(
        config: WalConfig,
        start: Position,
        visit: &mut dyn FnMut(Position, &RecordRef<'_>) -> Result<()>,
    ) -> Result<(Wal, RecoveryInfo)> {
        config.validate()?;
        let dir = &config.dir;
        if !config.read_only {
            std::fs::create_dir_all(dir)
                .map_err(|e| Error::io(format!("creating {}", dir.display()), e))?;
        } else if !dir.is_dir() {
            return Err(Error::new(
                ErrorKind::NotFound,
                format!("no log directory at {}", dir.display()),
            ));
        }
        let recovered = recovery::recover(dir, !config.read_only, start, visit)?;
        let mut segments = recovered.segments;
        let prealloc = config.preallocate.then_some(config.max_segment_size);
        let (active_id, active, end_off) = if config.read_only {
            let (id, end) = segments.last().copied().unwrap_or((0, 0));
            let file = match segment::open(dir, id, false) {
                Ok(f) => f,
                // An empty read-only log: a placeholder that is never written.
                Err(_) => File::open(dir).map_err(|e| Error::io("opening the log", e))?,
            };
            (id, file, end)
        } else if let Some(&(id, end)) = segments.last() {
            let file = segment::open(dir, id, true)
                .map_err(|e| Error::io(format!("opening segment {id}"), e))?;
            if let Some(len) = prealloc {
                if file.metadata().map(|m| m.len()).unwrap_or(0) < len {
                    segment::preallocate(&file, len)
                        .map_err(|e| Error::io(format!("preallocating segment {id}"), e))?;
                }
            }
            (id, file, end)
        } else {
            let file = segment::create(dir, 0, prealloc)
                .map_err(|e| Error::io("creating segment 000000.wal", e))?;
            segments.push((0, 0));
            (0, file, 0)
        };
        let state = State {
            active_id,
            active: Arc::new(active),
            segments,
            buf: Vec::new(),
            written_off: end_off,
            inflight: 0,
            end_off,
            durable_off: end_off,
            appended: 0,
            written: 0,
            durable: 0,
            flushing: false,
            dirty_since: None,
            failed: None,
            epoch: 0,
            last_failure: None,
            stalled: None,
            closed: false,
        };
        let inner = Arc::new(Inner {
            config,
            io: Mutex::new(()),
            state: Mutex::new(state),
            progress: Condvar::new(),
            flusher_wake: Condvar::new(),
            stats: WalStats::default(),
            read_files: Mutex::new(Vec::new()),
            visible: AtomicU64::new(0),
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

    pub fn config(&self) -> &WalConfig {
        &self.inner.config
    }

    /// Appends one record; under `Always` returns once it is on disk. Under `Batch` and
    /// `Os` it returns once the record is in the log's buffer (readable, written to the OS
    /// within the window or when the buffer fills); call `flush` to hand it to the OS now.
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
    /// records are readable at once; `wait_durable(lsn)` makes them durable.
    pub fn append_batch_nowait(&self, records: &[RecordRef<'_>]) -> Result<Appended> {
        self.inner.append(records)
    }

    /// Waits until everything up to `lsn` is on disk (group commit: one leader writes and
    /// syncs for everyone waiting).
    pub fn wait_durable(&self, appended: &Appended) -> Result<()> {
        self.inner.flush_until(appended.lsn, appended.epoch, true)
    }

    /// Makes everything appended so far durable, under any policy.
    pub fn sync(&self) -> Result<()> {
        let (lsn, epoch) = self.inner.now();
        self.inner.flush_until(lsn, epoch, true)
    }

    /// Hands everything appended so far to the OS (no fsync).
    pub fn flush(&self) -> Result<()> {
        let (lsn, epoch) = self.inner.now();
        self.inner.flush_until(lsn, epoch, false)
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

    /// The LSN of everything appended so far, and of what is durable.
    pub fn lsns(&self) -> (Lsn, Lsn) {
        let st = self.inner.lock_state();
        (st.appended, st.durable)
    }

    /// Reads records in order from `from` (a position an append returned, or the start
    /// of a segment), crossing segments, seeing records appended while it runs.
    pub fn read_from(&self, from: Position) -> Result<WalReader> {
        WalReader::new(self.inner.clone(), from)
    }

    /// Deletes whole segments that lie entirely before `pos`; never the active segment.
    /// Returns how many were deleted.
    pub fn delete_segments_before(&self, pos: Position) -> Result<usize> {
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
        for &id in &doomed {
            std::fs::remove_file(segment::path(dir, id))
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
            segment::sync_dir(dir).map_err(|e| Error::io("syncing the log directory", e))?;
        }
        Ok(doomed.len())
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
        cache: &mut Option<(u64, Arc<File>)>,
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
        let got = segment::read_at_most(&file, buf, pos.offset).map_err(|e| {
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
            return std::fs::metadata(segment::path(&self.inner.config.dir, id))
                .ok()
                .map(|m| m.len());
        }
        let st = self.inner.lock_state();
        if id == st.active_id {
            return Some(st.end_off);
        }
        st.segments.iter().find(|s| s.0 == id).map(|s| s.1)
    }

    /// Forgets every appended record that has not reached the OS, zeroing whatever part
    /// of them a failed write left in the file. For a caller that appends and flushes
    /// under its own lock, so that the discarded records are exactly its own.
    pub fn discard_unwritten(&self) {
        let _io = self.inner.io.lock().unwrap_or_else(|e| e.into_inner());
        let mut st = self.inner.lock_state();
        st.buf.clear();
        let written_off = st.written_off;
        st.end_off = written_off;
        st.appended = st.written;
        if st.durable >= st.appended {
            st.dirty_since = None;
        }
        st.stalled = None;
        let file = st.active.clone();
        self.inner.publish_visible(&st);
        drop(st);
        let len = file.metadata().map(|m| m.len()).unwrap_or(0);
        if len > written_off {
            let _ = file.set_len(written_off);
            if self.inner.config.preallocate {
                let _ = segment::preallocate(&file, len);
            }
        }
    }

    /// After a failed write under `Always` (the caller has rewound its own state to
    /// `current_position()`), lets appends through again.
    pub fn clear_failure(&self) {
        self.inner.lock_state().failed = None;
    }

    /// The failure that currently refuses appends, if any.
    pub fn health(&self) -> Result<()> {
        let st = self.inner.lock_state();
        match st.failed.as_ref().or(st.stalled.as_ref()) {
            Some(e) => Err(e.clone()),
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
    /// stops the flusher. Appends after this fail. Calling it twice is harmless.
    pub fn close(&self) -> Result<()> {
        let result = if self.inner.config.read_only {
            Ok(())
        } else {
            self.sync().and_then(|_| self.inner.finalize_active())
        };
        self.inner.lock_state().closed = true;
        self.inner.flusher_wake.notify_all();
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

impl Inner {
    pub(crate) fn lock_state(&self) -> MutexGuard<'_, State> {
        // A panic while holding the lock leaves plain data behind; keep going.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn append(&self, records: &[RecordRef<'_>]) -> Result<Appended> {
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
        let mut st = self.lock_state();
        check_open(&st)?;
        if st.end_off + size > self.config.max_segment_size && st.end_off > 0 {
            drop(st);
            self.rotate(size)?;
            st = self.lock_state();
            check_open(&st)?;
        }
        let mut positions = Vec::with_capacity(records.len());
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
        let lsn = st.appended;
        let epoch = st.epoch;
        if st.dirty_since.is_none() {
            st.dirty_since = Some(Instant::now());
            self.flusher_wake.notify_one();
        }
        let big = st.buf.len() >= WRITE_THRESHOLD && !st.flushing;
        drop(st);
        self.stats.record_append(records.len() as u64, size);
        if big && self.config.fsync_policy != FsyncPolicy::Always {
            // Write the buffer out now; an error stays in `stalled` and is retried.
            let _ = self.flush_until(lsn, epoch, false);
        }
        Ok(Appended {
            positions,
            lsn,
            epoch,
        })
    }

    /// Writes (and with `sync`, fdatasyncs) until `lsn` is written (durable). One thread
    /// at a time does the I/O for everyone; the others wait for it.
    fn flush_until(&self, lsn: Lsn, epoch: u64, sync: bool) -> Result<()> {
        let mut st = self.lock_state();
        loop {
            if st.epoch != epoch {
                let e = st.last_failure.clone();
                return Err(e.unwrap_or_else(|| Error::new(ErrorKind::Io, "a write failed")));
            }
            let done = if sync { st.durable } else { st.written };
            if done >= lsn {
                return Ok(());
            }
            if let Some(e) = &st.failed {
                return Err(e.clone());
            }
            if !st.flushing {
                break;
            }
            st = self.progress.wait(st).unwrap_or_else(|e| e.into_inner());
        }
        st.flushing = true;
        drop(st);
        let io = self.io.lock().unwrap_or_else(|e| e.into_inner());
        let result = self.flush_locked(sync);
        drop(io);
        let mut st = self.lock_state();
        st.flushing = false;
        drop(st);
        self.progress.notify_all();
        result?;
        // Someone else's bytes may have been all we wrote; go round once more if needed.
        self.flush_until(lsn, epoch, sync)
    }

    /// The LSN appended so far and the current failure epoch.
    fn now(&self) -> (Lsn, u64) {
        let st = self.lock_state();
        (st.appended, st.epoch)
    }

    /// Writes out the buffer (and syncs) with `io` held: the body of a flush.
    fn flush_locked(&self, sync: bool) -> Result<()> {
        let mut st = self.lock_state();
        let chunk = std::mem::take(&mut st.buf);
        let file = st.active.clone();
        let at = st.written_off;
        let target = st.appended;
        st.inflight = chunk.len() as u64;
        drop(st);

        let mut outcome = Ok(());
        if !chunk.is_empty() {
            outcome = file
                .write_all_at(&chunk, at)
                .map_err(|e| Error::io(format!("writing segment at offset {at}"), e));
            self.stats.record_write();
        }
        let wrote = outcome.is_ok();
        if wrote && sync {
            let started = Instant::now();
            outcome = file
                .sync_data()
                .map_err(|e| Error::io("fdatasync of the active segment", e));
            self.stats.record_fsync(started.elapsed());
        }

        let mut st = self.lock_state();
        st.inflight = 0;
        match outcome {
            Ok(()) => {
                st.written_off = at + chunk.len() as u64;
                st.written = target;
                let written_off = st.written_off;
                if let Some(seg) = st.segments.last_mut() {
                    seg.1 = written_off;
                }
                self.publish_visible(&st);
                if sync {
                    st.durable = target;
                    st.durable_off = st.written_off;
                }
                let policy_done = sync || self.config.fsync_policy == FsyncPolicy::Os;
                if policy_done && st.appended == target {
                    st.dirty_since = None;
                }
                st.stalled = None;
                // Keep the bigger allocation for the next round.
                if st.buf.is_empty() {
                    let mut chunk = chunk;
                    chunk.clear();
                    st.buf = chunk;
                }
                Ok(())
            }
            Err(e) => {
                if self.config.fsync_policy == FsyncPolicy::Always {
                    // Nothing past the durable point was acknowledged: drop it all, so
                    // the log continues exactly after the last durable record.
                    st.buf.clear();
                    let durable_off = st.durable_off;
                    st.end_off = durable_off;
                    st.written_off = durable_off;
                    st.appended = st.durable;
                    st.written = st.durable;
                    st.dirty_since = None;
                    if let Some(seg) = st.segments.last_mut() {
                        seg.1 = durable_off;
                    }
                    self.publish_visible(&st);
                    st.failed = Some(e.clone());
                    st.last_failure = Some(e.clone());
                    st.epoch += 1;
                    drop(st);
                    // Zero what may have reached the file, so recovery cannot see it.
                    let len = file.metadata().map(|m| m.len()).unwrap_or(0);
                    let _ = file.set_len(durable_off);
                    if self.config.preallocate && len > durable_off {
                        let _ = segment::preallocate(&file, len);
                    }
                } else if wrote {
                    // Written but not synced: the bytes are with the OS; retry the sync.
                    st.written_off = at + chunk.len() as u64;
                    st.written = target;
                    let written_off = st.written_off;
                    if let Some(seg) = st.segments.last_mut() {
                        seg.1 = written_off;
                    }
                    self.publish_visible(&st);
                    st.stalled = Some(e.clone());
                } else {
                    // Keep the acknowledged bytes, in order, to write again later.
                    let mut back = chunk;
                    back.extend_from_slice(&st.buf);
                    st.buf = back;
                    st.stalled = Some(e.clone());
                }
                Err(e)
            }
        }
    }

    /// Starts a new segment because `size` more bytes do not fit in the active one: the
    /// old one is written, synced and cut to its length before the new one exists, so a
    /// segment that is not the last is always complete.
    fn rotate(&self, size: u64) -> Result<()> {
        let io = self.io.lock().unwrap_or_else(|e| e.into_inner());
        let st = self.lock_state();
        check_open(&st)?;
        if st.end_off + size <= self.config.max_segment_size || st.end_off == 0 {
            return Ok(()); // someone else rotated meanwhile
        }
        drop(st);
        self.flush_locked(true)?;
        let mut st = self.lock_state();
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
        segment::finalize(&old_file, old_end).map_err(|e| fail("finalizing the old segment", e))?;
        let file = match segment::create(dir, new_id, prealloc) {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                // A file left by a failed earlier attempt that never received a record.
                std::fs::remove_file(segment::path(dir, new_id))
                    .and_then(|_| segment::create(dir, new_id, prealloc))
                    .map_err(|e| fail("creating the new segment", e))?
            }
            Err(e) => return Err(fail("creating the new segment", e)),
        };
        st = self.lock_state();
        st.active_id = new_id;
        st.active = Arc::new(file);
        st.segments.push((new_id, 0));
        st.end_off = 0;
        st.written_off = 0;
        st.durable_off = 0;
        self.publish_visible(&st);
        drop(st);
        drop(io);
        self.stats.record_rotation();
        Ok(())
    }

    /// Cuts the active segment to its logical length (clean close).
    fn finalize_active(&self) -> Result<()> {
        let _io = self.io.lock().unwrap_or_else(|e| e.into_inner());
        let st = self.lock_state();
        if st.closed || !st.buf.is_empty() {
            return Ok(());
        }
        let (file, end) = (st.active.clone(), st.end_off);
        drop(st);
        segment::finalize(&file, end).map_err(|e| Error::io("finalizing the active segment", e))
    }

    /// The batch flusher: whenever something is appended, writes and syncs it within the
    /// window, whether or not more appends follow. Under `Os` it only writes.
    fn flusher_loop(&self) {
        let (window, sync) = match self.config.fsync_policy {
            FsyncPolicy::Batch(w) => (w, true),
            _ => (Duration::from_millis(200), false),
        };
        // Wake at half the window so a record's sync completes inside the window.
        let nap = (window / 2).max(Duration::from_micros(500));
        let mut st = self.lock_state();
        loop {
            if st.closed {
                return;
            }
            let retry = st.stalled.is_some();
            match st.dirty_since {
                None if !retry => {
                    st = self
                        .flusher_wake
                        .wait(st)
                        .unwrap_or_else(|e| e.into_inner());
                    continue;
                }
                _ => {}
            }
            let (guard, _) = self
                .flusher_wake
                .wait_timeout(st, nap)
                .unwrap_or_else(|e| e.into_inner());
            st = guard;
            if st.closed {
                return;
            }
            let (lsn, epoch) = (st.appended, st.epoch);
            drop(st);
            let _ = self.flush_until(lsn, epoch, sync);
            if retry {
                std::thread::sleep(nap);
            }
            st = self.lock_state();
        }
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
    fn read_file(&self, id: u64) -> Result<Arc<File>> {
        let mut files = self.read_files.lock().unwrap_or_else(|e| e.into_inner());
        if let Some((_, f)) = files.iter().find(|(s, _)| *s == id) {
            return Ok(f.clone());
        }
        let f = Arc::new(
            segment::open(&self.config.dir, id, false)
                .map_err(|e| Error::io(format!("opening {}", segment::file_name(id)), e))?,
        );
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
            (st.appended, st.epoch)
        };
        self.flush_until(lsn, epoch, false)
    }
}

fn check_open(st: &State) -> Result<()> {
    if st.closed {
        return Err(Error::invalid("the log is closed"));
    }
    if let Some(e) = st.failed.as_ref().or(st.stalled.as_ref()) {
        return Err(Error::new(
            e.kind,
            format!(
                "the log refuses appends after an earlier failure: {}",
                e.message
            ),
        ));
    }
    Ok(())
}
