//! Compaction (docs/lifecycle.md): sealed segments that hold removed events are rewritten
//! without them. Per segment: the records kept (byte for byte; the last kept record of a
//! batch whose end was erased gets its "batch continues" flag cleared, so recovery still
//! sees the batch whole) go to `<id>.wal.compact`, which is synced; the segment's index
//! file is built from it (keeping every position's timestamp) and synced as a temporary;
//! then both are renamed into place under the index's write lock and the directories are
//! synced. A segment whose last position is emptied ends with a marker record (a
//! tombstone with that position's key), so its positions still end where they did.
//!
//! The replacement holds the log directory's lock (exclusive, across processes) so that a
//! backup through a read-only handle, which holds it shared, sees no segment replaced
//! while it places them (`FileStore::lock_log`, docs/backup.md).
//!
//! Readers go on: one holding the old file reads it on (every record it hands out is
//! judged by the removal state, which does not change here); one that opens the new
//! file with an old offset finds a record of another position and reads the position
//! again, looked up afresh (`FileStore::fetch_checked`, `ForwardCursor`).

use super::index::Index;
use super::lifecycle::first_kept;
use super::segindex::Sealed;
use super::{check_plain, index_bytes, is_marker, FileStore};
use crate::error::{Error, Result};
use crate::store::lifecycle::{CompactInfo, StreamView};
use crate::store::FastMap;
use crate::wal::record::{self, RecordRef, FLAG_BATCH_CONTINUES};
use crate::wal::vfs::{self, OpenMode, Vfs};
use crate::wal::{segment, Position};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

/// The suffix of a segment being rewritten (not a segment name: listings pass over it).
pub(super) const TMP_SUFFIX: &str = ".wal.compact";

/// Removed events' records per sealed segment: bytes and count.
pub(super) type RemovedBySegment = BTreeMap<u64, (u64, u64)>;

/// The path of segment `id`'s rewrite in progress.
fn tmp_path(log_dir: &Path, id: u64) -> PathBuf {
    log_dir.join(format!(
        "{}{TMP_SUFFIX}",
        segment::file_name(id).trim_end_matches(".wal")
    ))
}

/// Deletes rewrites a crash or a failure left half written (at a writable open).
pub(super) fn remove_leftovers(vfs: &dyn Vfs, log_dir: &Path) {
    let Ok(names) = vfs.list_dir(log_dir) else {
        return;
    };
    for name in names.iter().filter(|n| n.ends_with(TMP_SUFFIX)) {
        let _ = vfs.remove_file(&log_dir.join(name));
    }
}

/// Spends a bytes-per-second budget: sleeps so that `done` bytes take at least
/// `done / per_second` seconds from `started`, in short naps that end early when `stop`
/// says so (a close never waits for the budget).
struct Throttle<'a> {
    per_second: u64,
    started: Instant,
    done: u64,
    stop: &'a dyn Fn() -> bool,
}

/// The longest nap of a throttled compaction between two looks at `stop`.
const NAP: Duration = Duration::from_millis(10);

impl Throttle<'_> {
    fn spend(&mut self, bytes: u64) {
        self.done += bytes;
        if self.per_second == 0 {
            return;
        }
        let due = Duration::from_secs_f64(self.done as f64 / self.per_second as f64);
        loop {
            let spent = self.started.elapsed();
            if due <= spent || (self.stop)() {
                return;
            }
            std::thread::sleep((due - spent).min(NAP));
        }
    }
}

/// How often the compaction thread looks for segments past the trigger without being
/// woken (rules by age remove events as time passes).
const LOOK_EVERY: Duration = Duration::from_secs(5);

/// Wakes the compaction thread: set, with a notification, after a lifecycle entry or a
/// segment sealed, and when the store closes.
#[derive(Default)]
pub(super) struct Wake {
    flag: std::sync::Mutex<bool>,
    cv: std::sync::Condvar,
}

impl Wake {
    pub(super) fn wake(&self) {
        *self.flag.lock().unwrap_or_else(|e| e.into_inner()) = true;
        self.cv.notify_all();
    }

    /// Waits until woken or `timeout` passed.
    fn wait(&self, timeout: Duration) {
        let flag = self.flag.lock().unwrap_or_else(|e| e.into_inner());
        let (mut flag, _) = self
            .cv
            .wait_timeout_while(flag, timeout, |woken| !*woken)
            .unwrap_or_else(|e| e.into_inner());
        *flag = false;
    }
}

/// The compaction thread's body: compacts the segments past the trigger, then waits to be
/// woken (or `LOOK_EVERY`), until the store closes. It holds the store only while it
/// works, and that reference is not the last one: the user's handle (`Store`) closes the
/// store when it is dropped, before it lets go of its own, and the close stops and joins
/// this thread. So the close never runs here, unless a segment hook (called here) asks
/// for it.
fn compactor(store: Weak<FileStore>, wake: Arc<Wake>) {
    loop {
        {
            let Some(s) = store.upgrade() else {
                return;
            };
            let stop = || s.stopping();
            if stop() {
                return;
            }
            // A failure (an I/O error) is tried again at the next look; the store's
            // data stays as it was (each segment's step is whole or not done).
            let _ = s.compact_triggered(&stop);
            if stop() {
                return;
            }
        }
        wake.wait(LOOK_EVERY);
    }
}

/// What one segment's rewrite did.
struct Rewritten {
    before: u64,
    after: u64,
    erased: u64,
}

impl FileStore {
    /// Starts the store's compaction thread (a writable store whose
    /// `compaction_trigger_percent` is not 0); `close` stops it.
    pub fn start_compactor(self: &Arc<Self>) -> Result<()> {
        if self.options.read_only || self.options.compaction_trigger_percent == 0 {
            return Ok(());
        }
        let (store, wake) = (Arc::downgrade(self), self.compactor_wake.clone());
        let handle = std::thread::Builder::new()
            .name("evstore-compactor".into())
            .spawn(move || compactor(store, wake))
            .map_err(|e| Error::io("starting the compaction thread", e))?;
        *self.compactor.lock().unwrap_or_else(|e| e.into_inner()) = Some(handle);
        Ok(())
    }

    /// The store is about to close: compactions (the thread's, and a running `compact`)
    /// stop at their next record, each segment left whole as it was or as rewritten.
    pub fn interrupt(&self) {
        self.closing.store(true, Ordering::Release);
        self.compactor_wake.wake();
    }

    /// Whether compactions should stop now: the store closed or is closing.
    pub(super) fn stopping(&self) -> bool {
        self.closed.load(Ordering::Acquire) || self.closing.load(Ordering::Acquire)
    }

    /// Stops the compaction thread (the store is closing) and waits for it: it stops
    /// between two records, its segment left as it was, and lets go of the store before
    /// this returns. Not joined from the thread itself (a segment hook, which runs there,
    /// may close the store or drop its last handle).
    pub(super) fn stop_compactor(&self) {
        self.compactor_wake.wake();
        let handle = self
            .compactor
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take();
        if let Some(h) = handle {
            if h.thread().id() != std::thread::current().id() {
                let _ = h.join();
            }
        }
    }

    /// Compacts the sealed segments more than `compaction_trigger_percent` of whose bytes
    /// are removed events' (the automatic compaction); a snapshot after. Stops between
    /// records when `stop` says so. Returns the segments rewritten.
    fn compact_triggered(&self, stop: &dyn Fn() -> bool) -> Result<u64> {
        let _one = self.compact_lock.lock().unwrap_or_else(|e| e.into_inner());
        if !self.removing() {
            return Ok(0);
        }
        let trigger = u64::from(self.options.compaction_trigger_percent.min(100));
        let (_, removed) = self.removed_by_segment(false)?;
        let mut rewritten = 0;
        for (&id, &(bytes, _)) in removed.iter() {
            if stop() {
                break;
            }
            let Some(s) = self.sealed_segment(id) else {
                continue;
            };
            if bytes.saturating_mul(100) <= trigger.saturating_mul(s.segment_len) {
                continue;
            }
            if self.rewrite_segment(&s, stop)?.is_some() {
                rewritten += 1;
            }
        }
        if rewritten > 0 && !stop() {
            self.snapshot()?;
        }
        Ok(rewritten)
    }

    /// Compacts every sealed segment that holds a removed event, first sealing the
    /// active segment if it holds one (so that afterwards no segment holds a removed
    /// event's record); then writes a snapshot. Stops between records when the store
    /// closes.
    pub fn compact(&self) -> Result<CompactInfo> {
        self.check_writable()?;
        let started = Instant::now();
        let _one = self.compact_lock.lock().unwrap_or_else(|e| e.into_inner());
        let mut info = CompactInfo::default();
        if self.removing() {
            if self.removed_by_segment(true)?.0 {
                self.seal_active_segment()?;
            }
            let (_, removed) = self.removed_by_segment(false)?;
            for (&id, _) in removed.iter() {
                if self.stopping() {
                    break;
                }
                let Some(s) = self.sealed_segment(id) else {
                    continue;
                };
                if let Some(r) = self.rewrite_segment(&s, &|| self.stopping())? {
                    info.segments_rewritten += 1;
                    info.bytes_before += r.before;
                    info.bytes_after += r.after;
                    info.events_erased += r.erased;
                }
            }
            if info.segments_rewritten > 0 && !self.stopping() {
                self.snapshot()?;
            }
        }
        info.duration = started.elapsed();
        Ok(info)
    }

    /// The sealed segment `id` as the index has it now.
    fn sealed_segment(&self, id: u64) -> Option<Sealed> {
        let index = self.index.read().unwrap_or_else(|e| e.into_inner());
        index.sealed.iter().find(|s| s.segment_id == id).copied()
    }

    /// Ends the active segment (the next append starts a new one) and gives it its
    /// index file, with every event appended so far counted first.
    fn seal_active_segment(&self) -> Result<()> {
        let mut w = self.lock_writer();
        self.wal.sync()?;
        self.commit_durable(&mut w);
        self.wal.seal_active()?;
        drop(w);
        self.report_sealed();
        let _one = self.seal_lock.lock().unwrap_or_else(|e| e.into_inner());
        loop {
            let active = self.wal.current_position().segment_id;
            let next = {
                let index = self.index.read().unwrap_or_else(|e| e.into_inner());
                index.sealable_before(active)
            };
            let Some((seg, n)) = next else {
                return Ok(());
            };
            self.seal(seg, n)?;
        }
    }

    /// Per sealed segment, the bytes and number of records of removed events in it;
    /// and whether the active (in-memory) part holds a removed event. With `active_only`
    /// only the latter is looked at.
    pub(super) fn removed_by_segment(&self, active_only: bool) -> Result<(bool, RemovedBySegment)> {
        let index = self.index.read().unwrap_or_else(|e| e.into_inner());
        let mut out = RemovedBySegment::new();
        let mut active = false;
        if index.life.is_empty() {
            return Ok((false, out));
        }
        let now = self.now();
        let files = index.files.clone();
        for (id, s) in index.streams.iter().enumerate() {
            let (view, _) = index.life.view(&s.name, s.count.checked_sub(1), now);
            if view.keeps_all() {
                continue;
            }
            let kept_from = first_kept(&index, id as u32, &view)?.map_or(u64::MAX, |k| k.1);
            if s.tail.first().is_some_and(|&p| p < kept_from) {
                active = true;
            }
            if active_only || s.first >= index.base || s.first >= kept_from {
                continue;
            }
            let Some(files) = files.as_deref() else {
                continue;
            };
            let mut i = index.sealed.partition_point(|x| x.end() <= s.first);
            while let Some(seg) = index.sealed.get(i) {
                if seg.first >= kept_from || seg.first > s.last {
                    break;
                }
                if let Some((_, events)) = files.stream(seg, &s.name)? {
                    for (p, at, end) in events {
                        if p < kept_from {
                            let e = out.entry(seg.segment_id).or_default();
                            e.0 += end - at;
                            e.1 += 1;
                        }
                    }
                }
                i += 1;
            }
        }
        Ok((active, out))
    }

    /// The bytes of sealed segments' records that a compaction would free now.
    pub(super) fn reclaimable_bytes(&self) -> u64 {
        self.removed_by_segment(false)
            .map_or(0, |(_, r)| r.values().map(|v| v.0).sum())
    }

    /// Rewrites sealed segment `s` without its removed events' records; `None` when it
    /// has none (or `stop` said so between two records: nothing of it is in place).
    fn rewrite_segment(&self, s: &Sealed, stop: &dyn Fn() -> bool) -> Result<Option<Rewritten>> {
        let vfs = &*self.options.vfs;
        let log_dir = self.dir.join("events");
        let id = s.segment_id;
        let name = segment::file_name(id);
        let mut old = vfs::read_file(vfs, &segment::path(&log_dir, id))
            .map_err(|e| Error::io(format!("reading {name}"), e))?;
        if (old.len() as u64) < s.segment_len {
            return Err(Error::corrupt(format!(
                "{name} is shorter than its index says"
            )));
        }
        old.truncate(s.segment_len as usize);
        let timestamps = self.files.timestamps(s)?;
        let mut throttle = Throttle {
            per_second: self.options.compaction_bytes_per_second,
            started: Instant::now(),
            done: 0,
            stop,
        };
        let mut out = Vec::with_capacity(old.len());
        let mut views: FastMap<Box<str>, (StreamView, bool)> = FastMap::default();
        // The current batch's kept records: (start, end) in `old`, and whether the
        // record's flags must lose "batch continues" (its batch's end was erased).
        let mut batch: Vec<(usize, usize)> = Vec::new();
        // The ids of the events erased: their position, stream and version.
        let mut erased_ids: Vec<([u8; 16], u64, String, u64)> = Vec::new();
        let (mut at, mut position, mut erased, mut last_kept) = (0usize, s.first, 0u64, None);
        while at < old.len() {
            if stop() {
                return Ok(None);
            }
            let here = Position {
                segment_id: id,
                offset: at as u64,
            };
            let d = record::decode(&old[at..])
                .map_err(|e| Error::corrupt(format!("{name} offset {at}: {}", e.describe())))?;
            check_plain(&d.record, here)?;
            let len = d.len;
            let rec = d.record;
            if is_marker(&rec) {
                at += len;
                continue;
            }
            if let (Ok(k), false) = (
                <[u8; 8]>::try_from(rec.key),
                rec.value.first() == Some(&b'{'),
            ) {
                position = u64::from_le_bytes(k);
            }
            let mut judged = None;
            let keep = match super::envelope::peek_stream(rec.value) {
                Ok(Some((ts, stream, version))) if !stream.is_empty() => {
                    let stream = std::str::from_utf8(stream).map_err(|_| {
                        Error::corrupt(format!("{name} offset {at}: a stream name is not UTF-8"))
                    })?;
                    let entry = match views.get_mut(stream) {
                        Some(v) => v,
                        None => {
                            let index = self.index.read().unwrap_or_else(|e| e.into_inner());
                            let view = stream_view(&index, stream, self.now());
                            drop(index);
                            views.entry(stream.into()).or_insert((view, false))
                        }
                    };
                    // Only a stream's removed prefix goes: once one of its events is kept,
                    // every later one is (its versions stay dense in the segment).
                    let removed = !entry.1 && entry.0.removes(version, ts);
                    entry.1 |= !removed;
                    judged = Some((stream, version));
                    !removed
                }
                _ => true,
            };
            if keep {
                batch.push((at, at + len));
                last_kept = Some(position);
            } else {
                erased += 1;
                if let (Some(eid), Some((stream, version))) =
                    (super::envelope::peek_id(rec.value), judged)
                {
                    erased_ids.push((eid, position, stream.to_owned(), version));
                }
            }
            if !rec.batch_continues() {
                flush_batch(&old, &mut batch, keep, &mut out);
            }
            at += len;
            position += 1;
            throttle.spend(len as u64);
        }
        flush_batch(&old, &mut batch, true, &mut out);
        if erased == 0 {
            return Ok(None);
        }
        if last_kept != Some(s.end() - 1) {
            let key = (s.end() - 1).to_le_bytes();
            RecordRef {
                tombstone: true,
                ..RecordRef::put(&key, &[])
            }
            .encode_into(&mut out);
        }
        let (fresh, idx) =
            index_bytes(&mut out.clone(), id, s.first, 0, Some(&timestamps), || None)?;
        if !fresh.same_range(s) {
            return Err(Error::corrupt(format!(
                "the rewrite of {name} does not cover its positions"
            )));
        }
        let tmp = tmp_path(&log_dir, id);
        let written = write_synced(vfs, &tmp, &out);
        throttle.spend(out.len() as u64);
        if stop() {
            let _ = vfs.remove_file(&tmp);
            return Ok(None);
        }
        if let Err(e) = written {
            let _ = vfs.remove_file(&tmp);
            return Err(e);
        }
        let idx_tmp = match self.files.prepare(id, &idx) {
            Ok(p) => p,
            Err(e) => {
                let _ = vfs.remove_file(&tmp);
                return Err(e);
            }
        };
        // The lifecycle entries that removed what this rewrite leaves out must outlive a
        // crash before their events' records are gone: under BATCH and OS they may
        // still be in the page cache (judged by, but not durable). Every entry the scan
        // above judged by was appended before this sync.
        if let Err(e) = self.wal.sync() {
            let _ = vfs.remove_file(&tmp);
            let _ = vfs.remove_file(&idx_tmp);
            return Err(e);
        }
        // The ids of erased events stay (a retry of their append is answered from them):
        // in memory, and in a snapshot written before the segment loses their records,
        // so that a crash after the rename still finds them.
        for (eid, p, stream, version) in &erased_ids {
            self.ids.remember_erased(eid, *p, stream, *version);
        }
        if !erased_ids.is_empty() {
            if let Err(e) = self.snapshot() {
                let _ = vfs.remove_file(&tmp);
                let _ = vfs.remove_file(&idx_tmp);
                return Err(e);
            }
        }
        // A backup through a read-only handle (another process) holds the log directory's
        // lock shared while it places sealed segments: the replacement waits for it, so
        // the backup never takes a segment without events whose removal comes after its
        // position (docs/backup.md). Taken before the index's lock: readers go on.
        let held = match self.lock_log(true, stop) {
            Ok(Some(held)) => held,
            stopped_or_failed => {
                let _ = vfs.remove_file(&tmp);
                let _ = vfs.remove_file(&idx_tmp);
                return stopped_or_failed.map(|_| None);
            }
        };
        {
            let mut index = self.index.write().unwrap_or_else(|e| e.into_inner());
            if let Err(e) = self.wal.replace_sealed(id, &tmp, out.len() as u64) {
                let _ = vfs.remove_file(&tmp);
                let _ = vfs.remove_file(&idx_tmp);
                return Err(e);
            }
            // The segment is replaced: from here on its old index file does not match it
            // (an index file that fails to go in place is rebuilt from the segment).
            let installed = self.files.install(id, &idx_tmp);
            if installed.is_err() {
                let _ = vfs.remove_file(&idx_tmp);
                self.files.reload(id);
            }
            index.replace_sealed(fresh, last_physical(&out, id));
            drop(index);
            drop(held);
            installed?;
        }
        vfs.sync_dir(&log_dir)
            .map_err(|e| Error::io("syncing the log directory", e))?;
        self.files.sync_dir()?;
        self.report_rewritten(id);
        Ok(Some(Rewritten {
            before: old.len() as u64,
            after: out.len() as u64,
            erased,
        }))
    }
}

/// How `stream`'s events are judged now (its view in the removal state).
fn stream_view(index: &Index, stream: &str, now: u64) -> StreamView {
    let last = index.stream_len(stream).checked_sub(1);
    index.life.view(stream, last, now).0
}

/// Appends a batch's kept records to `out`: byte for byte, except that when the batch's
/// last record was erased (`end_kept` false) its last kept record ends the batch now.
fn flush_batch(old: &[u8], batch: &mut Vec<(usize, usize)>, end_kept: bool, out: &mut Vec<u8>) {
    let n = batch.len();
    for (i, &(from, to)) in batch.iter().enumerate() {
        let bytes = &old[from..to];
        if i + 1 == n && !end_kept {
            let d = record::decode_verified(bytes).expect("decoded before");
            let rec = RecordRef {
                reserved: d.record.reserved & !FLAG_BATCH_CONTINUES,
                ..d.record
            };
            rec.encode_into(out);
        } else {
            out.extend_from_slice(bytes);
        }
    }
    batch.clear();
}

/// Where the last record of a rewritten segment starts (the index's last record, when
/// it was in this segment).
fn last_physical(bytes: &[u8], id: u64) -> Option<Position> {
    let mut at = 0usize;
    let mut last = None;
    while at < bytes.len() {
        let len = record::peek_len(&bytes[at..])?;
        last = Some(Position {
            segment_id: id,
            offset: at as u64,
        });
        at += len;
    }
    last
}

/// Writes `bytes` to a new file at `path` and syncs it.
fn write_synced(vfs: &dyn Vfs, path: &Path, bytes: &[u8]) -> Result<()> {
    let io = |what: &str, e| Error::io(format!("{what} {}", path.display()), e);
    let _ = vfs.remove_file(path);
    let f = vfs
        .open(path, OpenMode::CreateNew)
        .map_err(|e| io("creating", e))?;
    vfs::write_all_at(&*f, bytes, 0).map_err(|e| io("writing", e))?;
    f.sync_all().map_err(|e| io("syncing", e))
}
