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
use super::{check_plain, decode_record, Decoded, FileStore, Writer};
use crate::error::{Error, Result};
use crate::store::Event;
use crate::wal::{changed, is_changed, Position, SegmentCursor, Wal};
use std::sync::atomic::Ordering;

/// A follower's view of the writer it follows.
pub(super) struct Follow {
    /// Where the writer's next record is read from: the end of the last whole batch taken
    /// in.
    tail: SegmentCursor,
    /// The writer generation of the durable mark last read (`None`: no mark).
    generation: Option<u64>,
    /// That mark's bound: no record at or past it is read.
    bound: Option<Position>,
    /// The last event counted: its record's position, length and stored CRC.
    last: Option<(Position, u64, u32)>,
    /// The log changed under the store: every later call fails with this.
    changed: Option<Error>,
}

impl Follow {
    /// A follower of `wal`, opened read-only, whose last counted record is at `last`.
    pub(super) fn new(wal: &Wal, last: Option<Position>) -> Result<Follow> {
        let mark = wal.opened_mark();
        let bound = mark.and_then(|m| m.bound);
        let mut tail = SegmentCursor::new(wal.inner.clone(), wal.current_position());
        tail.set_bound(bound);
        let last = match last {
            Some(at) => wal.record_tail(at)?.map(|(len, crc)| (at, len, crc)),
            None => None,
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
        let followed = self.follow(f);
        if let Err(e) = &followed {
            if is_changed(e) {
                f.changed = Some(e.clone());
            }
        }
        followed
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
        if self.take_in_batches(f)? == 0 {
            // Nothing new: is what we counted still there?
            return self.check_counted(f);
        }
        self.take_up_index_files();
        Ok(())
    }

    /// Reads the writer's records from the tail on and counts every whole batch; returns
    /// the events counted. A batch not whole yet is read again from its start next time:
    /// if its writer died half-way, the next writer's recovery removes it and appends in
    /// its place.
    fn take_in_batches(&self, f: &mut Follow) -> Result<u64> {
        let mut batch: Vec<(Position, Event)> = Vec::new();
        let mut taken = 0;
        let mut last = None;
        loop {
            let position = self.committed() + batch.len() as u64;
            let Some((at, d)) = f.tail.next()? else {
                break;
            };
            check_plain(&d.record, at)?;
            let mut legacy = None;
            let ev = match decode_record(position, d.record.key, d.record.value, &mut legacy)? {
                Decoded::Event(ev) => ev,
                // A lifecycle entry is a batch of its own, or (a consumer's checkpoint in
                // an atomic step, docs/consumers.md) the last record of one: it counts
                // with the batch's events.
                Decoded::Entry(entry)
                    if !d.record.batch_continues() && (batch.is_empty() || !entry.op.removes()) =>
                {
                    taken += batch.len() as u64 + 1;
                    if !batch.is_empty() {
                        self.count_followed(&mut batch);
                    }
                    self.take_in_entry(at, position, &entry);
                    last = Some(at);
                    continue;
                }
                Decoded::Entry(_) => return Err(entry_in_batch(position)),
            };
            let continues = d.record.batch_continues();
            batch.push((at, ev.to_owned()));
            if continues {
                continue;
            }
            taken += batch.len() as u64;
            last = Some(at);
            self.count_followed(&mut batch);
        }
        if let Some(&(start, _)) = batch.first() {
            let mut tail = SegmentCursor::new(self.wal.inner.clone(), start);
            tail.set_bound(f.bound);
            f.tail = tail;
        }
        if let Some(at) = last {
            f.last = self.wal.record_tail(at)?.map(|(len, crc)| (at, len, crc));
        }
        Ok(taken)
    }

    /// Indexes, projects and counts a whole batch of the writer's.
    fn count_followed(&self, batch: &mut Vec<(Position, Event)>) {
        let mut index = self.index.write().unwrap_or_else(|e| e.into_inner());
        for (p, e) in batch.drain(..) {
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
    fn check_counted(&self, f: &Follow) -> Result<()> {
        let Some((at, len, crc)) = f.last else {
            return Ok(());
        };
        if self.wal.record_tail(at)? == Some((len, crc)) {
            return Ok(());
        }
        Err(changed(format_args!(
            "the record of position {} (segment {} offset {}) is no longer the one it read",
            self.committed().saturating_sub(1),
            crate::wal::segment::file_name(at.segment_id),
            at.offset
        )))
    }

    /// Takes up the index files the writer wrote for the segments it sealed, as an open
    /// does, so that memory holds only the active segment's events. A file not written
    /// yet is looked for again after the next new events; one that does not check out
    /// leaves its segment's events in memory.
    fn take_up_index_files(&self) {
        loop {
            let (seg, n, first) = {
                let index = self.index.read().unwrap_or_else(|e| e.into_inner());
                let Some((seg, n)) = index.sealable() else {
                    return;
                };
                (seg, n as u64, index.base)
            };
            if self.seal_failed.load(Ordering::Relaxed) == seg + 1 {
                return;
            }
            let sealed = match self.files.take_up(seg, first) {
                Ok(Some(s)) => s,
                Ok(None) => return,
                Err(_) => {
                    self.seal_failed.store(seg + 1, Ordering::Relaxed);
                    return;
                }
            };
            let mut index = self.index.write().unwrap_or_else(|e| e.into_inner());
            if sealed.count != n || index.apply_sealed(sealed).is_err() {
                self.seal_failed.store(seg + 1, Ordering::Relaxed);
                return;
            }
        }
    }
}
