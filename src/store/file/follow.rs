//! A read-only store beside a writer in another process (a follower): it takes in the
//! writer's new events as they come, only as far as they can no longer be refused, takes
//! up the index files the writer writes as segments seal, and notices when the log below
//! what it counted changed.
//!
//! What a follower sees: under `EVS_FSYNC_ALWAYS`, the events whose group commit's
//! fdatasync succeeded (the writer's durable mark, `wal::mark`), never one whose append
//! may still be refused; under `EVS_FSYNC_BATCH` and `EVS_FSYNC_OS`, every event written
//! to the OS (acknowledged), durable or not. Whole batches only. A writer that dies leaves
//! what it acknowledged; the next writer's recovery cuts a torn tail, and the follower
//! goes on with what that writer appends. If the log below the follower's count changed
//! all the same (its last counted record gone or different: pages a failed writeback lost,
//! a store restored under it), every later call fails with `wal::changed`: reopen.

use super::lifecycle::entry_in_batch;
use super::{check_plain, decode_record, is_marker, Decoded, FileStore, Writer};
use crate::error::{Error, Result};
use crate::store::Event;
use crate::wal::vfs::FileRef;
use crate::wal::{changed, is_changed, Position, SegmentCursor, Wal};
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

/// How long a follower looks again at an index file it could not take up (a writer
/// between a compaction's two renames) before it keeps the segment's events in memory.
const TAKE_UP_PATIENCE: Duration = Duration::from_secs(2);

/// A follower's view of the writer it follows.
pub(super) struct Follow {
    /// Where the writer's next record is read from: the end of the last whole batch taken
    /// in.
    tail: SegmentCursor,
    /// The writer generation of the durable mark last read (`None`: no mark).
    generation: Option<u64>,
    /// That mark's bound: no record at or past it is read.
    bound: Option<Position>,
    /// The last record counted: its position in the store, where it is in the log, its
    /// length and stored CRC.
    last: Option<Counted>,
    /// The log changed under the store: every later call fails with this.
    changed: Option<Error>,
}

/// A counted record: its position in the store, where it is in the log, its length and
/// stored CRC.
type Counted = (u64, Position, u64, u32);

/// The record of `position` at `at` now, as `Counted`, if the log holds a whole one there.
fn counted(wal: &Wal, position: u64, at: Position) -> Result<Option<Counted>> {
    Ok(wal
        .record_tail(at)?
        .map(|(len, crc)| (position, at, len, crc)))
}

impl Follow {
    /// A follower of `wal`, opened read-only, whose last counted record (of position
    /// `count - 1`) is at `last`.
    pub(super) fn new(wal: &Wal, last: Option<Position>, count: u64) -> Result<Follow> {
        let mark = wal.opened_mark();
        let bound = mark.and_then(|m| m.bound);
        // The open's offset is one of the file it read: read on in that file (a
        // compaction may have put a shorter copy of the segment at its name since).
        let mut tail = match wal.opened_tail() {
            Some((at, file)) => SegmentCursor::in_file(wal.inner.clone(), at, file),
            None => SegmentCursor::new(wal.inner.clone(), wal.current_position()),
        };
        tail.set_bound(bound);
        let last = match (last, count.checked_sub(1)) {
            (Some(at), Some(p)) => counted(wal, p, at)?,
            _ => None,
        };
        Ok(Follow {
            tail,
            generation: mark.map(|m| m.generation),
            bound,
            last,
            changed: None,
        })
    }
}

impl FileStore {
    /// A read-only store: takes in the events another process appended since we looked
    /// (see the module's comment for which). Fails from then on, naming the change, once
    /// the log changed below what the store counted.
    pub fn refresh(&self) -> Result<()> {
        if !self.options.read_only {
            return Ok(());
        }
        let mut w = self.lock_writer();
        let Writer { follow, .. } = &mut *w;
        let Some(f) = follow.as_mut() else {
            return Ok(());
        };
        if let Some(e) = &f.changed {
            return Err(e.clone());
        }
        // Named as the follower's own reading of the log (a cursor's errors are not).
        let followed = self
            .follow(f)
            .map_err(|e| e.prefixed("following the writer's log: "));
        if let Err(e) = &followed {
            if is_changed(e) {
                f.changed = Some(e.clone());
            }
        }
        followed
    }

    /// A read-only store's instant for a backup: after one more look at the writer, its
    /// count, where its counted records end in the log (a batch not whole yet, at the
    /// end of the active segment, is not counted and lies past that end), and the file
    /// they were read from in that segment (if one is open): the bytes counted, even
    /// when a compaction has since put a shorter copy of a sealed segment at its name.
    pub(super) fn followed_end(&self) -> Result<(u64, Position, Option<FileRef>)> {
        self.refresh()?;
        let w = self.lock_writer();
        let f = w
            .follow
            .as_ref()
            .ok_or_else(|| Error::invalid("the store follows no writer"))?;
        Ok((self.committed(), f.tail.position(), f.tail.file()))
    }

    /// One look at the writer: its mark, its new whole batches, its index files.
    fn follow(&self, f: &mut Follow) -> Result<()> {
        let mark = self.wal.current_mark();
        let generation = mark.map(|m| m.generation);
        if generation != f.generation {
            // A writer opened since: its recovery may have cut the log.
            self.check_counted(f)?;
            f.generation = generation;
        }
        f.bound = mark.and_then(|m| m.bound);
        f.tail.set_bound(f.bound);
        let taken = self.take_in_batches(f)?;
        // Segments sealed since (also one a compaction ended without a later event) get
        // their index files, so that their events are read where they are now.
        self.take_up_index_files();
        if taken == 0 {
            // Nothing new: is what we counted still there?
            return self.check_counted(f);
        }
        Ok(())
    }

    /// Reads the writer's records from the tail on and counts every whole batch; returns
    /// the positions counted. A batch not whole yet is read again from its start next
    /// time: if its writer died half-way, the next writer's recovery removes it and
    /// appends in its place. Positions that a compaction emptied before the follower read
    /// their segment (keys skipped, marker records) count as empty positions.
    fn take_in_batches(&self, f: &mut Follow) -> Result<u64> {
        // `None`: an empty position.
        let mut batch: Vec<(Position, Option<Event>)> = Vec::new();
        let mut taken = 0;
        let mut last = None;
        while let Some((at, d)) = f.tail.next()? {
            check_plain(&d.record, at)?;
            let marker = is_marker(&d.record);
            let expected = self.committed() + batch.len() as u64;
            if let (Ok(k), false) = (
                <[u8; 8]>::try_from(d.record.key),
                d.record.value.first() == Some(&b'{'),
            ) {
                let k = u64::from_le_bytes(k);
                let upto = k + u64::from(marker);
                if upto > expected && upto - expected > 1 << 32 {
                    return Err(Error::corrupt(format!(
                        "{} offset {}: the record has the key of position {k}, far past position {expected}",
                        crate::wal::segment::file_name(at.segment_id),
                        at.offset
                    )));
                }
                for _ in expected..upto {
                    batch.push((at, None));
                }
            }
            let continues = d.record.batch_continues();
            if marker {
                if !continues {
                    taken += batch.len() as u64;
                    self.count_followed(&mut batch);
                }
                continue;
            }
            let position = self.committed() + batch.len() as u64;
            // (Projections never see a subject's personal data: nothing to open.)
            let mut owned = super::Owned::default();
            let ev = match decode_record(position, d.record.key, d.record.value, &mut owned, None)?
            {
                Decoded::Event(ev) => ev,
                // A lifecycle entry is a batch of its own, or (a consumer's checkpoint in
                // an atomic step, docs/consumers.md) the last record of one: it counts
                // with the batch's events (empty positions of a compaction count too).
                Decoded::Entry(entry)
                    if !continues
                        && (batch.iter().all(|b| b.1.is_none()) || !entry.op.removes()) =>
                {
                    taken += batch.len() as u64 + 1;
                    self.count_followed(&mut batch);
                    self.take_in_entry(at, position, &entry);
                    last = Some((position, at));
                    continue;
                }
                Decoded::Entry(_) => return Err(entry_in_batch(position)),
            };
            batch.push((at, Some(ev.to_owned())));
            if continues {
                continue;
            }
            taken += batch.len() as u64;
            last = Some((position, at));
            self.count_followed(&mut batch);
        }
        if let Some(&(start, _)) = batch.first() {
            // In the file the tail read it from: the writer's compaction may rewrite the
            // segment before the batch is whole (tests/compaction.rs
            // a_follower_that_saw_a_batch_in_part_...).
            f.tail.rewind(start);
        }
        if let Some((position, at)) = last {
            f.last = counted(&self.wal, position, at)?;
        }
        Ok(taken)
    }

    /// Indexes, projects and counts a whole batch of the writer's.
    fn count_followed(&self, batch: &mut Vec<(Position, Option<Event>)>) {
        if batch.is_empty() {
            return;
        }
        let mut index = self.index.write().unwrap_or_else(|e| e.into_inner());
        for (p, e) in batch.drain(..) {
            let Some(e) = e else {
                index.push_gap(p.segment_id);
                continue;
            };
            index.push(
                p,
                e.timestamp_us,
                &e.stream,
                e.stream_version,
                &e.event_type,
            );
            self.projections.iter().for_each(|pr| pr.apply(&e.as_ref()));
        }
        let n = index.len();
        self.committed.store(n, Ordering::Release);
        drop(index);
        self.publish(n);
    }

    /// Fails with `changed` unless the last counted event's record is still in the log,
    /// where it was, as it was.
    fn check_counted(&self, f: &mut Follow) -> Result<()> {
        let Some((position, at, len, crc)) = f.last else {
            return Ok(());
        };
        if self.wal.record_tail(at)? == Some((len, crc)) {
            return Ok(());
        }
        // A compaction may have rewritten its segment since: the record moved, or (a
        // removed event's) left its position empty.
        if let Some(now) = self.find_compacted(position, at.segment_id, len, crc)? {
            f.last = now;
            return Ok(());
        }
        Err(changed(format_args!(
            "the record of position {} (segment {} offset {}) is no longer the one it read",
            self.committed().saturating_sub(1),
            crate::wal::segment::file_name(at.segment_id),
            at.offset
        )))
    }

    /// Where the counted record of `position` (length `len`, stored CRC `crc`) is in
    /// sealed segment `id` after a compaction rewrote it: `Some(Some(..))` when found
    /// there unchanged, `Some(x)` with the segment's last record before `position` when
    /// the segment's positions still reach past `position` but its record is gone (the
    /// event was removed and erased), `None` when the segment is not sealed or does not
    /// hold `position` as a rewrite would (the log changed in another way).
    fn find_compacted(
        &self,
        position: u64,
        id: u64,
        len: u64,
        crc: u32,
    ) -> Result<Option<Option<Counted>>> {
        let vfs = &*self.options.vfs;
        let dir = &self.wal.config().dir;
        if !self.segment_ended(id) {
            return Ok(None);
        }
        let Ok(bytes) = crate::wal::vfs::read_file(vfs, &crate::wal::segment::path(dir, id)) else {
            return Ok(None);
        };
        let (mut off, mut before) = (0usize, None);
        while off < bytes.len() {
            let Ok(d) = crate::wal::record::decode(&bytes[off..]) else {
                break;
            };
            let at = Position {
                segment_id: id,
                offset: off as u64,
            };
            let key = <[u8; 8]>::try_from(d.record.key).map(u64::from_le_bytes);
            let here = d.len as u64;
            let stored = u32::from_le_bytes(
                bytes[off + d.len - 4..off + d.len]
                    .try_into()
                    .expect("four bytes"),
            );
            off += d.len;
            let Ok(k) = key else { continue };
            if d.record.value.first() == Some(&b'{') {
                continue; // a legacy record: its key is not its position
            }
            if is_marker(&d.record) {
                return Ok((k >= position).then_some(before));
            }
            if k == position {
                return Ok(((here, stored) == (len, crc)).then_some(Some((k, at, here, stored))));
            }
            if k > position {
                return Ok(Some(before));
            }
            before = Some((k, at, here, stored));
        }
        Ok(None)
    }

    /// Whether the writer began the segment after `id` (so `id` is complete).
    fn segment_ended(&self, id: u64) -> bool {
        let dir = &self.wal.config().dir;
        self.options
            .vfs
            .stat(&crate::wal::segment::path(dir, id + 1))
            .is_ok()
    }

    /// Whether a follower gives up taking up segment `seg`'s index file, which failed its
    /// check again: once it has failed for `TAKE_UP_PATIENCE`.
    fn take_up_given_up(&self, seg: u64) -> bool {
        let mut failing = self
            .take_up_failing
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        match *failing {
            Some((s, since)) if s == seg => since.elapsed() > TAKE_UP_PATIENCE,
            _ => {
                *failing = Some((seg, Instant::now()));
                false
            }
        }
    }

    /// Takes up the index files the writer wrote for the segments it sealed, as an open
    /// does, so that memory holds only the active segment's events. A file not written
    /// yet is looked for again after the next new events; one that does not check out
    /// leaves its segment's events in memory.
    fn take_up_index_files(&self) {
        loop {
            let (seg, n, first, ended) = {
                let index = self.index.read().unwrap_or_else(|e| e.into_inner());
                match index.sealable() {
                    Some((seg, n)) => (seg, n as u64, index.base, false),
                    // The oldest in-memory segment has no later event counted: sealed
                    // all the same once the writer began the next segment.
                    None => match index.sealable_before(u64::MAX) {
                        Some((seg, n)) if self.segment_ended(seg) => {
                            (seg, n as u64, index.base, true)
                        }
                        _ => return,
                    },
                }
            };
            if self.seal_failed.load(Ordering::Relaxed) == seg + 1 {
                return;
            }
            let sealed = match self.files.take_up(seg, first) {
                Ok(Some(s)) => s,
                Ok(None) => return,
                // The writer may be between a compaction's two renames (the segment
                // rewritten, its index file not yet): looked at again at the next looks,
                // for a while (tests/compaction.rs
                // a_follower_takes_up_a_rewritten_segments_index_file_after_the_second_rename).
                Err(_) if !self.take_up_given_up(seg) => return,
                Err(_) => {
                    self.seal_failed.store(seg + 1, Ordering::Relaxed);
                    return;
                }
            };
            if ended && sealed.count > n {
                return; // not all of its events are counted yet
            }
            let mut index = self.index.write().unwrap_or_else(|e| e.into_inner());
            if sealed.count != n || index.apply_sealed(sealed).is_err() {
                self.seal_failed.store(seg + 1, Ordering::Relaxed);
                return;
            }
        }
    }
}
