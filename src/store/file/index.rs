//! The in-memory index. Events of sealed segments are found through their index files
//! (`segindex`); only the events after them (the active segment) are held here, 20 bytes
//! each. Every stream keeps a small entry: its name, event count, first and last
//! position, and its positions among the in-memory events. So memory grows with the
//! number of streams and segments, not with the number of events.

use super::lifecycle::LifeState;
use super::segindex::{Builder, Sealed, SegmentFiles};
use crate::error::{Error, Result};
use crate::store::lifecycle::LifecycleOp;
use crate::store::FastMap;
use crate::wal::Position;
use std::sync::Arc;

/// Offsets are kept in the low 40 bits, the segment id in the high 24.
const OFFSET_BITS: u32 = 40;

/// `tail_stream` of an event without a stream.
const NO_STREAM: u32 = u32::MAX;

/// The offset of an in-memory position that holds no record (a compaction erased it:
/// replayed from a rewritten segment). Its entry keeps the segment it lies in.
const GAP_OFFSET: u64 = (1 << OFFSET_BITS) - 1;

/// Whether a packed in-memory entry is an empty position.
fn is_gap(packed: u64) -> bool {
    packed & GAP_OFFSET == GAP_OFFSET
}

pub fn pack(p: Position) -> u64 {
    (p.segment_id << OFFSET_BITS) | p.offset
}

pub fn unpack(v: u64) -> Position {
    Position {
        segment_id: v >> OFFSET_BITS,
        offset: v & ((1 << OFFSET_BITS) - 1),
    }
}

/// An event located in the log: its position, where its record starts, and where it
/// ends when known.
pub type Loc = (u64, Position, Option<u64>);

/// One stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StreamEntry {
    pub name: Box<str>,
    /// Its events (its version is one less).
    pub count: u64,
    pub first: u64,
    pub last: u64,
    /// Its events' positions at or after the index's `base`, in version order.
    pub tail: Vec<u64>,
}

#[derive(Default, Debug, Clone)]
pub struct Index {
    /// Sealed segments with index files, in order: positions `[0, base)`.
    pub(crate) sealed: Vec<Sealed>,
    /// The first position held in memory.
    pub(crate) base: u64,
    /// Events indexed so far.
    len: u64,
    /// From `base`: the packed WAL position of each event's record.
    wal: Vec<u64>,
    /// From `base`: each event's timestamp, never decreasing (a legacy event older than
    /// the one before it is indexed at that one's time).
    timestamps: Vec<u64>,
    /// From `base`: each event's stream id.
    tail_stream: Vec<u32>,
    pub(crate) stream_ids: FastMap<Box<str>, u32>,
    /// By stream id.
    pub(crate) streams: Vec<StreamEntry>,
    pub(crate) type_counts: FastMap<Box<str>, u64>,
    last_timestamp: u64,
    /// The record of the last event.
    last_wal: Option<Position>,
    pub(crate) files: Option<Arc<SegmentFiles>>,
    /// What lifecycle entries removed, in log order (docs/lifecycle.md): under the
    /// index's lock, so that a reader sees events and removals as of one moment.
    pub(crate) life: LifeState,
}

impl PartialEq for Index {
    fn eq(&self, o: &Self) -> bool {
        self.sealed == o.sealed
            && self.base == o.base
            && self.len == o.len
            && self.wal == o.wal
            && self.timestamps == o.timestamps
            && self.streams == o.streams
            && self.stream_ids == o.stream_ids
            && self.type_counts == o.type_counts
            && self.last_timestamp == o.last_timestamp
            && self.last_wal == o.last_wal
            && self.life == o.life
    }
}

impl Index {
    pub fn len(&self) -> u64 {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    pub fn last_timestamp(&self) -> u64 {
        self.last_timestamp
    }

    pub fn last_wal(&self) -> Option<Position> {
        self.last_wal
    }

    /// The segment that holds position 0, if any event exists.
    pub fn first_segment(&self) -> Option<u64> {
        match self.sealed.first() {
            Some(s) => Some(s.segment_id),
            None => self.wal.first().map(|&w| unpack(w).segment_id),
        }
    }

    /// Adds the next event (its position is `len()`; `version` its stream version). Below
    /// `base` (events an index file has, replayed at open) only the counts change. A
    /// stream's count is taken from its events' versions (at least `version + 1`), not
    /// from how many records were found, so that it stays right when records before it
    /// are gone (a compaction erases removed events).
    pub fn push(
        &mut self,
        wal: Position,
        timestamp_us: u64,
        stream: &str,
        version: u64,
        event_type: &str,
    ) {
        self.push_uncounted(wal, timestamp_us, stream, version);
        self.count_type(event_type, 1);
    }

    /// `push` without counting the event's type: the caller counts it with `count_type`
    /// (replay counts a run of events of one type with one lookup instead of one an
    /// event). The counts are wrong until it does.
    pub fn push_uncounted(&mut self, wal: Position, timestamp_us: u64, stream: &str, version: u64) {
        self.push_uncounted_as(wal, timestamp_us, stream, version, None);
    }

    /// `push_uncounted` of an event whose stream's id the caller knows, if it does: the
    /// id `stream_id` gave under the lock held now, or one `is_stream_id` confirmed (an
    /// append looks its stream up once, not once more for each event it indexes).
    /// Returns the stream's id (`NO_STREAM` for an event with none).
    pub fn push_uncounted_as(
        &mut self,
        wal: Position,
        timestamp_us: u64,
        stream: &str,
        version: u64,
        known: Option<u32>,
    ) -> u32 {
        let position = self.len;
        let mut sid = NO_STREAM;
        if !stream.is_empty() {
            let id = match known.or_else(|| self.stream_ids.get(stream).copied()) {
                Some(id) => id,
                None => {
                    let id = self.streams.len() as u32;
                    self.stream_ids.insert(stream.into(), id);
                    self.streams.push(StreamEntry {
                        name: stream.into(),
                        count: 0,
                        first: position,
                        last: position,
                        tail: Vec::new(),
                    });
                    id
                }
            };
            let e = &mut self.streams[id as usize];
            e.count = e.count.max(version + 1);
            e.last = position;
            sid = id;
        }
        self.push_record(wal, timestamp_us, sid);
        sid
    }

    /// Adds `n` events of type `event_type` to the type counts.
    pub fn count_type(&mut self, event_type: &str, n: u64) {
        match self.type_counts.get_mut(event_type) {
            Some(c) => *c += n,
            None => {
                self.type_counts.insert(event_type.into(), n);
            }
        }
    }

    /// Adds the next position as a lifecycle entry: it holds no event (no stream, no
    /// type), and `apply_lifecycle` takes in what it does.
    pub fn push_entry(&mut self, wal: Position, timestamp_us: u64) {
        self.push_record(wal, timestamp_us, NO_STREAM);
    }

    /// Adds the next position as an empty one (its record was erased by a compaction),
    /// in segment `segment_id`.
    pub fn push_gap(&mut self, segment_id: u64) {
        let position = self.len;
        self.len += 1;
        if position >= self.base {
            self.wal.push(pack(Position {
                segment_id,
                offset: GAP_OFFSET,
            }));
            self.timestamps.push(self.last_timestamp);
            self.tail_stream.push(NO_STREAM);
        }
    }

    /// Whether the first `n` in-memory positions include an empty one.
    pub fn has_gaps(&self, n: usize) -> bool {
        self.wal[..n.min(self.wal.len())].iter().any(|&w| is_gap(w))
    }

    fn push_record(&mut self, wal: Position, timestamp_us: u64, sid: u32) {
        let position = self.len;
        self.len += 1;
        let ts = timestamp_us.max(self.last_timestamp);
        self.last_timestamp = ts;
        self.last_wal = Some(wal);
        if position >= self.base {
            self.wal.push(pack(wal));
            self.timestamps.push(ts);
            self.tail_stream.push(sid);
            if sid != NO_STREAM {
                self.streams[sid as usize].tail.push(position);
            }
        }
    }

    /// Takes in the lifecycle entry at `position` (pushed already), made at
    /// `timestamp_us`. A stream operation carries the stream's version when it was
    /// appended: the stream's count becomes at least that version + 1, so that a stream
    /// whose events a compaction erased still knows where its versions continue. A rule
    /// entry is taken in with the streams' versions at this point of the log (what the
    /// rule it replaces removed stays removed: `Removals::apply_in_log`).
    pub fn apply_lifecycle(&mut self, op: &LifecycleOp, position: u64, timestamp_us: u64) {
        if let (Some(stream), Some(version)) = (op.stream(), op.version()) {
            match self.stream_ids.get(stream) {
                Some(&id) => {
                    let e = &mut self.streams[id as usize];
                    e.count = e.count.max(version + 1);
                }
                None => {
                    self.stream_ids
                        .insert(stream.into(), self.streams.len() as u32);
                    self.streams.push(StreamEntry {
                        name: stream.into(),
                        count: version + 1,
                        first: position,
                        last: position,
                        tail: Vec::new(),
                    });
                }
            }
        }
        let streams = &self.streams;
        let named = |id: &u32| {
            let s = &streams[*id as usize];
            (&*s.name, s.count.checked_sub(1))
        };
        match op {
            LifecycleOp::Retention {
                target,
                category: false,
                ..
            } => {
                let one = self.stream_ids.get(target.as_str()).map(named);
                self.life.apply(op, timestamp_us, one);
            }
            LifecycleOp::Retention { .. } => {
                let all = streams.iter().map(|s| (&*s.name, s.count.checked_sub(1)));
                self.life.apply(op, timestamp_us, all);
            }
            _ => self.life.apply(op, timestamp_us, None),
        }
    }

    /// Drops what memory holds before `base` (an index file has it now).
    pub fn drop_tail_before(&mut self, base: u64) {
        if base <= self.base {
            return;
        }
        let n = ((base - self.base) as usize).min(self.wal.len());
        for &sid in &self.tail_stream[..n] {
            if sid != NO_STREAM {
                let tail = &mut self.streams[sid as usize].tail;
                let cut = tail.partition_point(|&p| p < base);
                // The capacity stays: the stream will likely have events in the next
                // segment too (freeing and reallocating a million small lists at every
                // seal cost the appending process about 85 MB of fragmentation).
                tail.drain(..cut);
            }
        }
        self.wal.drain(..n);
        self.timestamps.drain(..n);
        self.tail_stream.drain(..n);
        if n > 0 && self.wal.capacity() > 2 * self.wal.len() + 1024 {
            self.wal.shrink_to_fit();
            self.timestamps.shrink_to_fit();
            self.tail_stream.shrink_to_fit();
        }
        self.base = base;
    }

    /// Takes the sealed segments whose index files checked out (positions `[0, end)`),
    /// dropping the events they hold from memory.
    pub fn set_sealed(&mut self, sealed: Vec<Sealed>, files: Arc<SegmentFiles>) {
        let end = sealed.last().map_or(0, |s| s.end());
        self.sealed = sealed;
        self.files = Some(files);
        self.drop_tail_before(end);
        self.base = end;
    }

    /// The oldest in-memory segment when a later one has begun (it is complete and can
    /// get its index file): its id and how many events it has.
    pub fn sealable(&self) -> Option<(u64, usize)> {
        let first = unpack(*self.wal.first()?).segment_id;
        if unpack(*self.wal.last()?).segment_id == first {
            return None;
        }
        let n = self.wal.partition_point(|&w| unpack(w).segment_id == first);
        Some((first, n))
    }

    /// The oldest in-memory segment if it is before segment `active` (the log's active
    /// one: a segment ended without a later event, as a compaction ends one): its id
    /// and how many positions it has.
    pub fn sealable_before(&self, active: u64) -> Option<(u64, usize)> {
        let first = unpack(*self.wal.first()?).segment_id;
        if first >= active {
            return None;
        }
        let n = self.wal.partition_point(|&w| unpack(w).segment_id == first);
        Some((first, n))
    }

    /// Puts a rewritten segment's summary in place of the old one (same positions); the
    /// last record is now at `last` if it was in that segment.
    pub fn replace_sealed(&mut self, s: Sealed, last: Option<Position>) {
        if let Some(old) = self
            .sealed
            .iter_mut()
            .find(|o| o.segment_id == s.segment_id)
        {
            *old = s;
        }
        if let (Some(l), Some(new)) = (self.last_wal, last) {
            if l.segment_id == s.segment_id {
                self.last_wal = Some(new);
            }
        }
    }

    /// The index file of the oldest in-memory segment (see `sealable`), `segment_len`
    /// bytes long with last stored CRC `last_crc`.
    pub fn build_sealed(&self, n: usize, segment_len: u64, last_crc: u32) -> (Sealed, Vec<u8>) {
        let seg = unpack(self.wal[0]).segment_id;
        let mut b = Builder::new(seg, self.base);
        // Global stream id -> the builder's: no name is hashed or copied.
        let mut local = vec![u32::MAX; self.streams.len()];
        for i in 0..n {
            if is_gap(self.wal[i]) {
                // (`seal` builds a segment with empty positions from the segment itself.)
                b.push_gap(self.timestamps[i]);
                continue;
            }
            let at = unpack(self.wal[i]).offset;
            let end = match self.wal[i + 1..n].iter().find(|&&w| !is_gap(w)) {
                Some(&w) => unpack(w).offset,
                None => segment_len,
            };
            let stream = match self.tail_stream[i] {
                NO_STREAM => None,
                sid => {
                    let l = &mut local[sid as usize];
                    if *l == u32::MAX {
                        let e = &self.streams[sid as usize];
                        // Its first event in memory is its first in this segment.
                        *l = b.add_stream(&e.name, e.count - e.tail.len() as u64);
                    }
                    Some(*l)
                }
            };
            b.push_local(stream, at, end - at, self.timestamps[i]);
        }
        b.finish(segment_len, last_crc)
    }

    /// Adds a segment whose index file is written: it must be the oldest in memory.
    pub fn apply_sealed(&mut self, s: Sealed) -> Result<()> {
        if s.first != self.base || s.end() > self.len {
            return Err(Error::corrupt(format!(
                "the index of segment {} does not follow the in-memory events",
                s.segment_id
            )));
        }
        self.sealed.push(s);
        self.drop_tail_before(s.end());
        Ok(())
    }

    fn files(&self) -> Result<&SegmentFiles> {
        self.files
            .as_deref()
            .ok_or_else(|| Error::corrupt("sealed segments without index files"))
    }

    /// The sealed segment that holds `position` (which must be below `base`).
    fn sealed_at(&self, position: u64) -> &Sealed {
        let i = self.sealed.partition_point(|s| s.end() <= position);
        &self.sealed[i.min(self.sealed.len() - 1)]
    }

    /// Whether an event replayed at open, at `position` in record `wal`, is where the
    /// index files put it (always true for events held in memory).
    pub fn replayed_where_filed(&self, position: u64, wal: Position) -> bool {
        if position >= self.base {
            return true;
        }
        let s = self.sealed_at(position);
        s.segment_id == wal.segment_id && wal.offset < s.segment_len
    }

    /// Where the event at `position` is, and where its record ends when known.
    pub fn locate(&self, position: u64) -> Result<Option<Loc>> {
        if position >= self.len {
            return Ok(None);
        }
        if position < self.base {
            let found = self.files()?.locate(self.sealed_at(position), position)?;
            return Ok(found.map(|(at, end)| (position, at, Some(end))));
        }
        Ok(self.locate_tail(position))
    }

    /// Whether `position` (below `len()`) holds no record: a compaction erased it.
    pub fn is_empty_position(&self, position: u64) -> Result<bool> {
        Ok(position < self.len && self.locate(position)?.is_none())
    }

    /// The first position at or after `position` (below `len()`) that holds a record.
    pub fn next_record(&self, position: u64) -> Result<Option<u64>> {
        if position < self.base {
            let files = self.files()?;
            let mut i = self.sealed.partition_point(|s| s.end() <= position);
            while let Some(s) = self.sealed.get(i) {
                if let Some(p) = files.next_record(s, position.max(s.first))? {
                    return Ok(Some(p));
                }
                i += 1;
            }
        }
        let from = position.max(self.base) - self.base;
        Ok(self
            .wal
            .iter()
            .skip(from as usize)
            .position(|&w| !is_gap(w))
            .map(|i| self.base + from + i as u64))
    }

    fn locate_tail(&self, position: u64) -> Option<Loc> {
        let i = (position.checked_sub(self.base)?) as usize;
        let w = *self.wal.get(i)?;
        if is_gap(w) {
            return None;
        }
        let at = unpack(w);
        let next = self.wal[i + 1..]
            .iter()
            .find(|&&w| !is_gap(w))
            .map(|&w| unpack(w))
            .filter(|n| n.segment_id == at.segment_id);
        Some((position, at, next.map(|n| n.offset)))
    }

    /// The first position whose timestamp is after `timestamp_us` (len() if none).
    pub fn position_after(&self, timestamp_us: u64) -> Result<u64> {
        let i = self.sealed.partition_point(|s| s.last_ts <= timestamp_us);
        if let Some(s) = self.sealed.get(i) {
            return self.files()?.position_after(s, timestamp_us);
        }
        Ok(self.base + self.timestamps.partition_point(|&t| t <= timestamp_us) as u64)
    }

    /// The stream's event count (0 for a stream that does not exist).
    pub fn stream_len(&self, name: &str) -> u64 {
        self.stream_id(name).map_or(0, |id| self.stream_count(id))
    }

    /// The id of stream `name`, if it exists (what `push_uncounted_as` takes).
    #[inline]
    pub fn stream_id(&self, name: &str) -> Option<u32> {
        self.stream_ids.get(name).copied()
    }

    /// The event count of the stream with id `id` (from `stream_id`).
    #[inline]
    pub fn stream_count(&self, id: u32) -> u64 {
        self.streams[id as usize].count
    }

    /// Whether `id` is stream `name`'s: an id looked up before the index's lock was let
    /// go is checked with this before `push_uncounted_as` takes it.
    pub fn is_stream_id(&self, id: u32, name: &str) -> bool {
        self.streams
            .get(id as usize)
            .is_some_and(|e| *e.name == *name)
    }

    /// The first event of stream `id` with version >= `from_version` and position >=
    /// `from_position`: its version and position.
    pub fn stream_first(
        &self,
        id: u32,
        from_version: u64,
        from_position: u64,
    ) -> Result<Option<(u64, u64)>> {
        let e = &self.streams[id as usize];
        let tail_version = e.count - e.tail.len() as u64;
        let from_position = from_position.max(e.first);
        if from_version < tail_version && from_position < self.base {
            let files = self.files()?;
            let mut i = self.sealed.partition_point(|s| s.end() <= from_position);
            while i < self.sealed.len() && self.sealed[i].first <= e.last {
                let s = &self.sealed[i];
                i += 1;
                let Some((first_version, events)) = files.stream(s, &e.name)? else {
                    continue;
                };
                let found = events.iter().enumerate().find(|&(j, &(p, _, _))| {
                    first_version + j as u64 >= from_version && p >= from_position
                });
                if let Some((j, &(p, _, _))) = found {
                    return Ok(Some((first_version + j as u64, p)));
                }
            }
        }
        let skip = from_version.saturating_sub(tail_version) as usize;
        let k = e.tail.partition_point(|&p| p < from_position).max(skip);
        Ok(e.tail.get(k).map(|&p| (tail_version + k as u64, p)))
    }

    /// Up to `max` events of stream `id` with version >= `from_version` and position >=
    /// `from_position`, in order.
    pub fn stream_forward(
        &self,
        id: u32,
        from_version: u64,
        from_position: u64,
        max: usize,
    ) -> Result<Vec<Loc>> {
        let e = &self.streams[id as usize];
        let tail_version = e.count - e.tail.len() as u64;
        let mut out = Vec::new();
        let from_position = from_position.max(e.first);
        if from_version < tail_version && from_position < self.base {
            let files = self.files()?;
            let mut i = self.sealed.partition_point(|s| s.end() <= from_position);
            while out.len() < max && i < self.sealed.len() && self.sealed[i].first <= e.last {
                let s = &self.sealed[i];
                i += 1;
                let Some((first_version, events)) = files.stream(s, &e.name)? else {
                    continue;
                };
                for (j, &(p, at, end)) in events.iter().enumerate() {
                    if first_version + j as u64 >= from_version && p >= from_position {
                        out.push((p, pos(s.segment_id, at), Some(end)));
                        if out.len() == max {
                            break;
                        }
                    }
                }
            }
        }
        let skip = from_version.saturating_sub(tail_version) as usize;
        for &p in e.tail.iter().skip(skip) {
            if out.len() >= max {
                break;
            }
            if p >= from_position {
                out.extend(self.locate_tail(p));
            }
        }
        Ok(out)
    }

    /// Up to `max` events of stream `id` with version <= `to_version`, newest first.
    pub fn stream_backward(&self, id: u32, to_version: u64, max: usize) -> Result<Vec<Loc>> {
        let e = &self.streams[id as usize];
        let tail_version = e.count - e.tail.len() as u64;
        let mut out = Vec::new();
        if to_version >= tail_version && !e.tail.is_empty() {
            let hi = (to_version - tail_version).min(e.tail.len() as u64 - 1) as usize;
            for &p in e.tail[..=hi].iter().rev().take(max) {
                out.extend(self.locate_tail(p));
            }
        }
        // (No sealed segment: a stream whose count a lifecycle entry set has nothing
        // before its in-memory events.)
        if out.len() >= max || tail_version == 0 || self.base == 0 {
            return Ok(out);
        }
        let to_version = to_version.min(tail_version - 1);
        let files = self.files()?;
        let mut i = self
            .sealed
            .partition_point(|s| s.end() <= e.last.min(self.base - 1));
        while let Some(s) = self.sealed.get(i) {
            if s.end() <= e.first {
                break;
            }
            if let Some((first_version, events)) = files.stream(s, &e.name)? {
                for (j, &(p, at, end)) in events.iter().enumerate().rev() {
                    if first_version + j as u64 <= to_version {
                        out.push((p, pos(s.segment_id, at), Some(end)));
                        if out.len() == max {
                            return Ok(out);
                        }
                    }
                }
                if first_version == 0 {
                    break;
                }
            }
            match i.checked_sub(1) {
                Some(j) => i = j,
                None => break,
            }
        }
        Ok(out)
    }

    /// The next events of the streams `ids` (a category) from position `from` on, in
    /// position order: all of them in the first sealed segment that has any (a sealed
    /// segment does not change, so the caller may hand them all out), or else the first
    /// `max` of those in memory.
    pub fn category_batch(&self, ids: &[u32], from: u64, max: usize) -> Result<Vec<Loc>> {
        let mut found = Vec::new();
        if from < self.base {
            let files = self.files()?;
            let mut i = self.sealed.partition_point(|s| s.end() <= from);
            while let Some(s) = self.sealed.get(i) {
                for &id in ids {
                    let e = &self.streams[id as usize];
                    if e.first >= s.end() || e.last < s.first.max(from) {
                        continue;
                    }
                    if let Some((_, events)) = files.stream(s, &e.name)? {
                        let events = events.into_iter().filter(|ev| ev.0 >= from);
                        found.extend(
                            events.map(|(p, at, end)| (p, pos(s.segment_id, at), Some(end))),
                        );
                    }
                }
                if !found.is_empty() {
                    found.sort_unstable_by_key(|l| l.0);
                    return Ok(found);
                }
                i += 1;
            }
        }
        for &id in ids {
            let tail = &self.streams[id as usize].tail;
            let start = tail.partition_point(|&p| p < from);
            found.extend(
                tail[start..]
                    .iter()
                    .take(max)
                    .filter_map(|&p| self.locate_tail(p)),
            );
        }
        found.sort_unstable_by_key(|l| l.0);
        found.truncate(max);
        Ok(found)
    }

    /// Bytes the index holds, roughly, not counting spare capacity.
    pub fn approx_bytes(&self) -> u64 {
        let streams: usize = self
            .streams
            .iter()
            .map(|s| 2 * s.name.len() + 96 + s.tail.len() * 8)
            .sum();
        (self.wal.len() * 20 + streams + self.sealed.len() * std::mem::size_of::<Sealed>()) as u64
    }

    /// The in-memory events, for a snapshot: (packed WAL position, timestamp, stream id
    /// or `u32::MAX`).
    pub fn tail_events(&self) -> impl Iterator<Item = (u64, u64, u32)> + '_ {
        (0..self.wal.len()).map(|i| (self.wal[i], self.timestamps[i], self.tail_stream[i]))
    }

    /// An index as a snapshot describes it: `len` events, of which those from `base` on
    /// are in memory.
    pub fn from_parts(
        base: u64,
        streams: Vec<StreamEntry>,
        type_counts: FastMap<Box<str>, u64>,
        tail: Vec<(u64, u64, u32)>,
        last_timestamp: u64,
        last_wal: Option<Position>,
    ) -> Result<Index> {
        let mut ix = Index {
            base,
            len: base + tail.len() as u64,
            type_counts,
            last_timestamp,
            last_wal,
            ..Index::default()
        };
        ix.stream_ids.reserve(streams.len());
        // Each stream's in-memory events, counted from the events' side.
        let mut tails = vec![0u32; streams.len()];
        ix.wal.reserve(tail.len());
        ix.timestamps.reserve(tail.len());
        ix.tail_stream.reserve(tail.len());
        for (w, t, sid) in tail {
            if sid != NO_STREAM {
                let c = tails
                    .get_mut(sid as usize)
                    .ok_or_else(|| Error::corrupt("a snapshot event names no known stream"))?;
                *c += 1;
            }
            ix.wal.push(w);
            ix.timestamps.push(t);
            ix.tail_stream.push(sid);
        }
        for (id, s) in streams.into_iter().enumerate() {
            if ix.stream_ids.insert(s.name.clone(), id as u32).is_some() {
                return Err(Error::corrupt("a snapshot names a stream twice"));
            }
            let tail_ok = s.tail.len() == tails[id] as usize
                && s.tail.len() as u64 <= s.count
                && s.tail.first().is_none_or(|&p| p >= base)
                && s.tail.windows(2).all(|w| w[0] < w[1])
                && s.tail.last().is_none_or(|&p| {
                    p < ix.len && ix.tail_stream[(p - base) as usize] == id as u32
                });
            if s.count == 0 || s.first > s.last || s.last >= ix.len || !tail_ok {
                return Err(Error::corrupt("a snapshot stream has impossible positions"));
            }
            ix.streams.push(s);
        }
        let records: Vec<u64> = ix.wal.iter().copied().filter(|&w| !is_gap(w)).collect();
        if records.windows(2).any(|w| w[0] >= w[1]) {
            return Err(Error::corrupt(
                "the snapshot's log positions are not increasing",
            ));
        }
        if ix.timestamps.windows(2).any(|t| t[0] > t[1])
            || ix.timestamps.last().is_some_and(|&t| t > last_timestamp)
        {
            return Err(Error::corrupt("the snapshot's timestamps decrease"));
        }
        if let (Some(&w), Some(l)) = (records.last(), last_wal) {
            if w != pack(l) {
                return Err(Error::corrupt(
                    "the snapshot's last event is not its last record",
                ));
            }
        }
        if ix.len > 0 && last_wal.is_none() {
            return Err(Error::corrupt(
                "the snapshot does not say where its last event is",
            ));
        }
        Ok(ix)
    }
}

fn pos(segment_id: u64, offset: u64) -> Position {
    Position { segment_id, offset }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn packing_round_trips() {
        for p in [(0, 0), (1, 5), (12345, (1 << 40) - 1)] {
            let pos = Position {
                segment_id: p.0,
                offset: p.1,
            };
            assert_eq!(unpack(pack(pos)), pos);
        }
    }

    #[test]
    fn streams_and_times_are_indexed() {
        let mut ix = Index::default();
        ix.push(pos(0, 0), 10, "a", 0, "T");
        ix.push(pos(0, 9), 20, "", 0, "T");
        ix.push(pos(0, 19), 15, "a", 1, "U");
        let a = ix.stream_ids["a"];
        let got: Vec<u64> = ix
            .stream_forward(a, 0, 0, 10)
            .unwrap()
            .iter()
            .map(|l| l.0)
            .collect();
        assert_eq!(got, vec![0, 2]);
        let back: Vec<u64> = ix
            .stream_backward(a, 5, 10)
            .unwrap()
            .iter()
            .map(|l| l.0)
            .collect();
        assert_eq!(back, vec![2, 0]);
        assert_eq!(ix.stream_len("b"), 0);
        assert_eq!(ix.timestamps, vec![10, 20, 20]);
        assert_eq!(ix.position_after(9).unwrap(), 0);
        assert_eq!(ix.position_after(10).unwrap(), 1);
        assert_eq!(ix.position_after(20).unwrap(), 3);
        assert_eq!(ix.type_counts["T"], 2);
        assert_eq!(ix.locate(1).unwrap(), Some((1, pos(0, 9), Some(19))));
        assert_eq!(ix.locate(2).unwrap(), Some((2, pos(0, 19), None)));
    }

    #[test]
    fn a_streams_count_comes_from_its_versions_not_from_its_records() {
        // A log whose earlier records of "a" are gone (a compaction erased removed
        // events): the stream still continues after its last version.
        let mut ix = Index::default();
        ix.push(pos(0, 0), 1, "a", 7, "T");
        ix.push(pos(0, 10), 2, "b", 0, "T");
        ix.push(pos(0, 20), 3, "a", 9, "T");
        assert_eq!((ix.stream_len("a"), ix.stream_len("b")), (10, 1));
        // A lifecycle entry's version counts the same way.
        ix.push_entry(pos(0, 30), 4);
        let op = LifecycleOp::Delete {
            stream: "b".into(),
            hard: false,
            version: 4,
        };
        ix.apply_lifecycle(&op, 3, 4);
        assert_eq!(ix.stream_len("b"), 5);
    }

    #[test]
    fn a_new_segment_makes_the_old_one_sealable() {
        let mut ix = Index::default();
        ix.push(pos(0, 0), 1, "a", 0, "T");
        ix.push(pos(0, 10), 2, "b", 0, "T");
        assert_eq!(ix.sealable(), None);
        ix.push(pos(1, 0), 3, "a", 1, "T");
        assert_eq!(ix.sealable(), Some((0, 2)));
        let (s, _) = ix.build_sealed(2, 25, 7);
        assert_eq!((s.first, s.count, s.first_ts, s.last_ts), (0, 2, 1, 2));
        ix.apply_sealed(s).unwrap();
        assert_eq!(ix.base, 2);
        assert_eq!(ix.streams[0].tail, vec![2]);
        assert!(ix.streams[1].tail.is_empty());
        assert_eq!(ix.streams[0].count, 2);
    }
}
