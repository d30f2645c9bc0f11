//! Cursors: forward over the whole log (sequential, large reads), backward, and over one
//! stream (random access through the index). Each holds bounded memory and hands out
//! events that borrow its buffer until its next call.

use super::envelope::{FORMAT_BINARY_V1, FORMAT_LIFECYCLE};
use super::lifecycle::{passes_over, Views};
use super::{check_plain, decode_at_key, FileStore, Owned};
use crate::error::{Error, Result};
use crate::store::backend::EventViews;
use crate::store::EventRef;
use crate::wal::{is_changed, record, Position, SegmentCursor};
use std::sync::Arc;

/// All events from a position on, in order. `None` from `next` means "no more now": a
/// later call returns events appended since. Lifecycle entries and removed events are
/// passed over.
pub struct ForwardCursor {
    store: Arc<FileStore>,
    next: u64,
    /// Stop before this position (for `poll`).
    until: u64,
    segments: Option<SegmentCursor>,
    /// The segment cursor read past `next` (a record not to be read yet): look the
    /// position up again.
    relocate: bool,
    /// Where the segment cursor was last set, from the index.
    located: Option<Position>,
    owned: Owned,
    views: Views,
}

impl ForwardCursor {
    pub(crate) fn new(store: Arc<FileStore>, from: u64, until: u64) -> Result<Self> {
        Ok(ForwardCursor {
            store,
            next: from,
            until,
            segments: None,
            relocate: false,
            located: None,
            owned: Owned::default(),
            views: Views::new(),
        })
    }

    /// The position the next event will have, at the earliest.
    pub fn position(&self) -> u64 {
        self.next
    }

    /// Looks for the record of position `self.next` or a later one: `None` when there
    /// is none to read now, else the segment cursor is set to read it.
    #[inline]
    fn ready(&mut self) -> Result<Option<u64>> {
        if self.next >= self.until {
            return Ok(None);
        }
        // A read-only store looks for a writer's new events only at the end of what it
        // has, not for every event.
        let mut committed = self.store.committed();
        if self.next >= committed {
            committed = self.store.next_position()?;
            if self.next >= committed {
                return Ok(None);
            }
        }
        if std::mem::take(&mut self.relocate) {
            self.segments = None;
        }
        if self.segments.is_none() {
            let index = self.store.index.read().unwrap_or_else(|e| e.into_inner());
            // A position a compaction emptied: read on from the next record.
            let found = match index.locate(self.next)? {
                Some(l) => Some(l),
                None => match index.next_record(self.next)? {
                    Some(p) => index.locate(p)?,
                    None if self.next < index.len() => {
                        // Nothing but empty positions up to the end.
                        self.next = index.len().min(committed).min(self.until);
                        return Ok(None);
                    }
                    None => None,
                },
            };
            let (_, at, _) = found.ok_or_else(|| {
                Error::corrupt(format!("position {} is not in the index", self.next))
            })?;
            drop(index);
            self.segments = Some(SegmentCursor::new(self.store.wal().inner.clone(), at));
            self.located = Some(at);
        }
        Ok(Some(committed))
    }

    // Not an Iterator: each event borrows the cursor's buffer until the next call.
    #[allow(clippy::should_implement_trait)]
    pub fn next(&mut self) -> Result<Option<EventRef<'_>>> {
        // Reads that found the log changed under a follower, each answered by reading
        // the position again (`read_on`, `moved_on`).
        let mut stale = 0;
        let (due, position) = loop {
            let Some(committed) = self.ready()? else {
                return Ok(None);
            };
            // Until an entry that removes events exists, every record is an event or an
            // entry passed over (a consumer's checkpoint, a forget): no event is judged.
            // (Asked after `committed` was read: an entry below it has set the flag.)
            if self.store.removals() {
                return self.next_kept();
            }
            let due = self.next;
            let seg = self.segments.as_mut().expect("set by ready");
            if !seg.next_buffered() && !self.read_on(due, &mut stale)? {
                continue;
            }
            // Damage found on the way is reported with the position (`evs_last_error_detail`).
            let seg = self.segments.as_ref().expect("read from above");
            let (at, d) = seg.last().expect("just read");
            let (key, value) = (d.record.key, d.record.value);
            check_plain(&d.record, at).map_err(|e| e.damage_at(due))?;
            // An entry is passed over; so is a compaction's marker where the index has
            // the position empty (`moved_on`). (The usual record, a format-1 event at the
            // position due, is told by its first byte alone.)
            match position_at(&mut self.next, self.until, key, value, at, committed) {
                Ok(Some(position))
                    if position == due && value.first() == Some(&FORMAT_BINARY_V1) =>
                {
                    break (due, position)
                }
                Ok(Some(position))
                    if position == due && value.first() == Some(&FORMAT_LIFECYCLE) =>
                {
                    continue
                }
                Ok(Some(position)) if position == due && !super::is_marker(&d.record) => {
                    break (due, position)
                }
                Ok(Some(position)) => {
                    let entry = value.first() == Some(&FORMAT_LIFECYCLE);
                    let marker = super::is_marker(&d.record);
                    if self.moved_on(due, position, at.segment_id, marker, &mut stale)? {
                        continue;
                    }
                    if entry || marker {
                        continue;
                    }
                    break (due, position);
                }
                Ok(None) => {
                    if self.stopped_short(due, at.segment_id, &mut stale)? {
                        continue;
                    }
                    self.relocate = true;
                    return Ok(None);
                }
                Err(e) => return Err(e.damage_at(due)),
            }
        };
        let seg = self.segments.as_ref().expect("read from above");
        let (_, d) = seg.last().expect("just read");
        decode_at_key(position, d.record.value, &mut self.owned, &self.store.keys)
            .map_err(|e| e.damage_at(due))
            .map(Some)
    }

    /// Up to `max` next events handed to `sink`, whose bytes all stay where they are
    /// until the next call on this cursor: the records of the scanner's buffer, which is
    /// not refilled or moved meanwhile (the batch stops where a read would be needed, and
    /// after an event decoded into the cursor's own memory: a legacy or a sealed one). `None` once
    /// an entry that removes events exists (`next` judges every event, one at a time);
    /// other entries (consumers' checkpoints, forgets) are passed over.
    pub fn next_views(
        &mut self,
        max: usize,
        sink: &mut dyn FnMut(&EventRef<'_>),
    ) -> Option<EventViews> {
        if self.store.removals() {
            return None;
        }
        let mut views = EventViews::default();
        if max == 0 {
            return Some(views);
        }
        // Legacy and sealed events are decoded into `self.owned`, which the next one
        // would overwrite: one ends the batch. (The previous batch's views are done with.)
        self.owned.reset();
        // The first event as `next` reads it: a read of the file, the segment's bounds.
        match self.next() {
            Ok(Some(e)) => sink(&e),
            Ok(None) => return Some(views),
            Err(e) => {
                views.error = Some(e);
                return Some(views);
            }
        }
        views.count = 1;
        // Below what `next` saw committed: the next events are read without looking again.
        let committed = self.store.committed();
        // (Asked after `committed`, as `next` does: an entry below it has set the flag.)
        if self.store.removals() {
            return Some(views);
        }
        while views.count < max && !self.owned.holds() {
            let n = self.next;
            if n >= self.until || n >= committed {
                break;
            }
            // Only records whole in the buffer: no read moves the ones handed out.
            let seg = self.segments.as_mut().expect("read from by next");
            if !seg.next_buffered() {
                break;
            }
            let (at, d) = seg.last().expect("just read");
            let (key, value) = (d.record.key, d.record.value);
            let event = check_plain(&d.record, at)
                .and_then(|_| position_at(&mut self.next, self.until, key, value, at, committed));
            match event {
                // Anything but a format-1 event at the position due (told apart out of
                // line): an entry is passed over; a gap or a compaction's marker ends the
                // batch, `n` to be read again located afresh (`next` judges them).
                Ok(Some(position))
                    if (position != n || value.first() != Some(&FORMAT_BINARY_V1))
                        && !ordinary(position == n, &d.record) =>
                {
                    if position == n && value.first() == Some(&FORMAT_LIFECYCLE) {
                        continue;
                    }
                    self.next = n;
                    self.relocate = true;
                    break;
                }
                Ok(Some(position)) => {
                    match decode_at_key(position, value, &mut self.owned, &self.store.keys) {
                        Ok(e) => {
                            sink(&e);
                            views.count += 1;
                        }
                        Err(e) => {
                            views.error = Some(e);
                            break;
                        }
                    }
                }
                Ok(None) => {
                    self.relocate = true;
                    break;
                }
                Err(e) => {
                    views.error = Some(e.damage_at(n));
                    break;
                }
            }
        }
        Some(views)
    }

    /// `next` once anything is removed: passes over lifecycle entries and removed events.
    /// (Not inlined: `next` stays as small as it was before anything could be removed.)
    #[inline(never)]
    fn next_kept(&mut self) -> Result<Option<EventRef<'_>>> {
        self.views.begin();
        // Reads that found the segment rewritten under this cursor (a compaction), each
        // answered by reading the position again from what is at the segment's name.
        let mut stale = 0;
        let position = loop {
            let Some(committed) = self.ready()? else {
                return Ok(None);
            };
            let due = self.next;
            let damaged = move |e: Error| e.damage_at(due);
            let seg = self.segments.as_mut().expect("set by ready");
            let segment_id = seg.position().segment_id;
            // (A log that ends before a counted position: this cursor opened a segment
            // that was rewritten, at an old offset.)
            let read = match seg.next() {
                Ok(Some((at, d))) => check_plain(&d.record, at).map(|_| (at, d)),
                Ok(None) => Err(log_ends(due)),
                Err(e) => Err(e),
            };
            let (at, d) = match read {
                Ok(r) => r,
                Err(e) => {
                    stale += 1;
                    if !self.store.retry_stale(stale) {
                        return Err(damaged(e));
                    }
                    self.again(due, segment_id);
                    continue;
                }
            };
            let (key, value) = (d.record.key, d.record.value);
            let marker = super::is_marker(&d.record);
            let Some(position) = position_at(&mut self.next, self.until, key, value, at, committed)
                .map_err(damaged)?
            else {
                if self.stopped_short(due, at.segment_id, &mut stale)? {
                    continue;
                }
                self.relocate = true;
                return Ok(None);
            };
            if position != due || marker {
                // Positions skipped are empty only if the index says so; else this cursor
                // read a rewritten segment at an old offset.
                if !self.store.gap_holds(due, position, marker)? {
                    stale += 1;
                    if !self.store.retry_stale(stale) {
                        return Err(damaged(Error::corrupt(format!(
                            "the log skips from position {due} to {position}, which the index does not"
                        ))));
                    }
                    self.again(due, at.segment_id);
                    continue;
                }
                if marker {
                    continue;
                }
            }
            if !passes_over(&self.store, &mut self.views, value).map_err(damaged)? {
                break position;
            }
        };
        // Read again from the segment cursor's buffer (the loop above could not hand out
        // what it borrowed).
        let seg = self.segments.as_ref().expect("read from above");
        let (_, d) = seg
            .last()
            .ok_or_else(|| Error::corrupt(format!("position {position} cannot be read again")))?;
        self.store
            .event_of(position, d.record.key, d.record.value, &mut self.owned)
            .map(Some)
    }

    /// `next`'s read of a record not whole in the segment cursor's buffer: true when it
    /// read one (`last` has it). On a follower, a read that failed may have met the
    /// writer's compaction: a shorter copy of a sealed segment put at its name since this
    /// cursor located `due` at an offset of the old one. A failure that says so (the
    /// file is shorter than the offset: `EVS_ERR_STALE`), or any failure at the offset
    /// just located, is answered as `next_kept` answers it: false, with the segment's
    /// handles dropped and `due` to be located afresh, while `retry_stale` allows
    /// (`stale` counts the tries). Any other failure (damage met reading on, as a
    /// writer's reader meets it) is reported at once.
    #[cold]
    #[inline(never)]
    fn read_on(&mut self, due: u64, stale: &mut u32) -> Result<bool> {
        let seg = self.segments.as_mut().expect("set by ready");
        let e = match seg.next() {
            Ok(Some(_)) => return Ok(true),
            Ok(None) => log_ends(due),
            Err(e) => e,
        };
        let at = seg.position();
        let moved = is_changed(&e) || self.located == Some(at);
        *stale += 1;
        if !self.store.options.read_only || !moved || !self.store.retry_stale(*stale) {
            return Err(e.damage_at(due));
        }
        self.again(due, at.segment_id);
        Ok(false)
    }

    /// `next` (nothing removed, as this store knew when it began) read the record of
    /// `position` where `due` was expected, in segment `segment_id`: true when it is to
    /// read `due` again, located afresh. A writer's log that nothing was ever removed
    /// from has empty positions only where an import put them. Otherwise the gap may be
    /// one the index does not have: a follower's writer compacted since the follower
    /// last looked, or this store's compaction (of events removed since `next` began)
    /// rewrote the segment between this cursor's look at the index and its open of the
    /// segment, which it read at an offset of the old one. It looks again (and then
    /// reads as `next_kept` does) while `retry_stale` allows; then the gap is damage.
    #[cold]
    #[inline(never)]
    fn moved_on(
        &mut self,
        due: u64,
        position: u64,
        segment_id: u64,
        marker: bool,
        stale: &mut u32,
    ) -> Result<bool> {
        let never_removed = !self.store.options.read_only && !self.store.removing();
        if never_removed || self.store.gap_holds(due, position, marker)? {
            return Ok(false);
        }
        self.stale_gap(due, segment_id, stale, || {
            format!("the log skips from position {due} to {position}, which the index does not")
        })
    }

    /// `position_at` read, where `due` was expected (in segment `segment_id`), the
    /// record of a later position not to be read now (past the window of a poll, or not
    /// yet committed), and stopped this cursor at `self.next`, past `due`: true when it
    /// is to read `due` again, located afresh, because the index has a record before
    /// `self.next`. The positions passed over are empty only if the index says so; else
    /// the segment was rewritten by a compaction between this cursor's look at the
    /// index and its open of the segment, and the record is the one that starts at the
    /// old offset in the shorter copy (a poll gave nothing where a kept event was).
    /// While `retry_stale` allows (`stale` counts the tries); then it is damage.
    #[cold]
    #[inline(never)]
    fn stopped_short(&mut self, due: u64, segment_id: u64, stale: &mut u32) -> Result<bool> {
        let stop = self.next;
        let index = self.store.index.read().unwrap_or_else(|e| e.into_inner());
        let found = index.next_record(due)?;
        drop(index);
        let Some(found) = found.filter(|&p| p < stop) else {
            return Ok(false);
        };
        self.stale_gap(due, segment_id, stale, || {
            format!("the log skips from position {due} to {stop} or later, but the index has a record at {found}")
        })
    }

    /// A gap read at `due` (in segment `segment_id`) that the index does not have: true,
    /// `due` to be read again, located afresh, while `retry_stale` allows (`stale`
    /// counts the tries); then the damage `gap` describes.
    #[cold]
    fn stale_gap(
        &mut self,
        due: u64,
        segment_id: u64,
        stale: &mut u32,
        gap: impl FnOnce() -> String,
    ) -> Result<bool> {
        *stale += 1;
        if !self.store.retry_stale(*stale) {
            return Err(Error::corrupt(gap()).damage_at(due));
        }
        self.again(due, segment_id);
        Ok(true)
    }

    /// Reads from position `due` again, looked up afresh, segment `segment_id`'s cached
    /// handles dropped.
    #[cold]
    fn again(&mut self, due: u64, segment_id: u64) {
        self.next = due;
        self.segments = None;
        self.store.reload_segment(segment_id);
    }
}

/// The error for a log that ends before `position`, which the index has.
fn log_ends(position: u64) -> Error {
    Error::corrupt(format!(
        "the log ends before position {position}, which the index has"
    ))
}

/// The position of the record just read (`key`, `value`, from `at`) by a cursor at
/// `*next` that reads below `until` and `committed`; moves `*next` past it. `None` when
/// it is not to be read now: `*next` then stops before it (the caller looks it up again
/// next time).
///
/// The position is the record's key, not a count of the records read: a compacted
/// segment lacks the records of removed events (its keys have gaps), and the positions
/// before the key are empty. Legacy JSON records (the reference program reused keys)
/// are counted.
#[inline(always)]
fn position_at(
    next: &mut u64,
    until: u64,
    key: &[u8],
    value: &[u8],
    at: Position,
    committed: u64,
) -> Result<Option<u64>> {
    let n = *next;
    match <[u8; 8]>::try_from(key) {
        // The usual case: the key is the position due, to be read now.
        Ok(k) if u64::from_le_bytes(k) == n && n < until && n < committed => {
            *next = n + 1;
            Ok(Some(n))
        }
        _ => position_elsewhere(next, until, key, value, at, committed),
    }
}

/// `position_at` for a key other than the position due: a legacy record, a gap, a
/// position not to be read now, or damage.
#[cold]
fn position_elsewhere(
    next: &mut u64,
    until: u64,
    key: &[u8],
    value: &[u8],
    at: Position,
    committed: u64,
) -> Result<Option<u64>> {
    let position = match <[u8; 8]>::try_from(key) {
        Ok(k) if value.first() != Some(&b'{') => u64::from_le_bytes(k),
        _ => *next,
    };
    if position < *next {
        return Err(Error::corrupt(format!(
            "the record read for position {} (segment {} offset {}) has the key of position {position}",
            *next, at.segment_id, at.offset
        )));
    }
    if position >= until || position >= committed {
        *next = position.min(until).min(committed);
        return Ok(None);
    }
    *next = position + 1;
    Ok(Some(position))
}

/// Events from a position down to 0. Sees no events appended after it was opened.
pub struct BackwardCursor {
    store: Arc<FileStore>,
    /// The position of the next event to return, while `more`.
    next: u64,
    more: bool,
    buf: Vec<u8>,
    owned: Owned,
    views: Views,
}

impl BackwardCursor {
    pub(crate) fn new(store: Arc<FileStore>, from: u64, more: bool) -> Self {
        BackwardCursor {
            store,
            next: from,
            more,
            buf: Vec::new(),
            owned: Owned::default(),
            views: Views::new(),
        }
    }

    // Not an Iterator: each event borrows the cursor's buffer until the next call.
    #[allow(clippy::should_implement_trait)]
    pub fn next(&mut self) -> Result<Option<EventRef<'_>>> {
        self.views.begin();
        let (position, at) = loop {
            if !self.more {
                return Ok(None);
            }
            let position = self.next;
            match position.checked_sub(1) {
                Some(p) => self.next = p,
                None => self.more = false,
            }
            // (A position a compaction emptied is passed over.)
            let Some(at) = self.store.fetch_if_any(position, &mut self.buf)? else {
                continue;
            };
            let d = record::decode(&self.buf).map_err(|e| damaged(position, at, e.describe()))?;
            check_plain(&d.record, at).map_err(|e| e.damage_at(position))?;
            if !passes_over(&self.store, &mut self.views, d.record.value)
                .map_err(|e| e.damage_at(position))?
            {
                break (position, at);
            }
        };
        // Checked just above.
        let d =
            record::decode_verified(&self.buf).map_err(|e| damaged(position, at, e.describe()))?;
        self.store
            .event_of(position, d.record.key, d.record.value, &mut self.owned)
            .map(Some)
    }
}

/// Whether a record at the position due (`due`) that is not a format-1 event is still
/// an event `decode_at_key` reads (a sealed or legacy one), not an entry, a marker or a
/// record past a gap.
#[cold]
#[inline(never)]
fn ordinary(due: bool, rec: &record::RecordRef<'_>) -> bool {
    due && rec.value.first() != Some(&FORMAT_LIFECYCLE) && !super::is_marker(rec)
}

/// The error for a record that does not decode.
fn damaged(position: u64, at: Position, what: &str) -> Error {
    Error::corrupt(format!(
        "the record of position {position} (segment {} offset {}): {what}",
        at.segment_id, at.offset
    ))
    .at_position(position)
}

/// Events of a stream located at once, to read one by one.
const STREAM_BATCH: usize = 64;

/// One stream's events from a version on; sees events appended to it while it runs.
/// Removed events are passed over (those removed by version without being read).
pub struct StreamCursor {
    store: Arc<FileStore>,
    stream: String,
    next_version: u64,
    /// No event before this position is still to come (the last one read, plus one).
    from_position: u64,
    /// Located events not yet read: position, record position, record end if known.
    ahead: std::collections::VecDeque<super::index::Loc>,
    files: Option<(u64, crate::wal::vfs::FileRef)>,
    buf: Vec<u8>,
    /// What `buf` holds when it holds a run of adjacent records: their segment and the
    /// byte range `[start, end)` of it.
    span: Option<(u64, u64, u64)>,
    owned: Owned,
    views: Views,
}

/// A run of adjacent records read at once is at most this long.
const SPAN_MAX: u64 = 1 << 20;

impl StreamCursor {
    pub(crate) fn new(store: Arc<FileStore>, stream: String, from_version: u64) -> Self {
        StreamCursor {
            store,
            stream,
            next_version: from_version,
            from_position: 0,
            ahead: Default::default(),
            files: None,
            buf: Vec::new(),
            span: None,
            owned: Owned::default(),
            views: Views::new(),
        }
    }

    /// Reads the run of adjacent records that starts with the one at `at` (ending at
    /// `end`) and continues with the located events after it, in one read: a stream
    /// appended in batches has its events side by side in the log.
    fn read_span(&mut self, at: Position, end: u64) -> Result<()> {
        let mut span_end = end;
        for &(_, next, next_end) in &self.ahead {
            match next_end {
                Some(e)
                    if next.segment_id == at.segment_id
                        && next.offset == span_end
                        && e - at.offset <= SPAN_MAX =>
                {
                    span_end = e
                }
                _ => break,
            }
        }
        self.span = None;
        self.store.wal().read_exact_cached(
            &mut self.files,
            at,
            (span_end - at.offset) as usize,
            &mut self.buf,
        )?;
        self.span = Some((at.segment_id, at.offset, span_end));
        Ok(())
    }

    /// Reads the record of `loc` into `buf`; returns where it is there and whether it
    /// ends exactly there (else more bytes may follow it).
    fn load(&mut self, (position, at, end): super::index::Loc) -> Result<(usize, usize, bool)> {
        if let Some(end) = end.filter(|&e| e > at.offset && e - at.offset <= SPAN_MAX) {
            let inside = |&(seg, start, stop): &(u64, u64, u64)| {
                seg == at.segment_id && start <= at.offset && end <= stop
            };
            if !self.span.as_ref().is_some_and(inside) {
                self.read_span(at, end)?;
            }
            let (_, start, _) = self.span.expect("read_span sets it");
            return Ok(((at.offset - start) as usize, (end - start) as usize, true));
        }
        self.span = None;
        self.store
            .fetch_located(position, at, end, &mut self.files, &mut self.buf)?;
        Ok((0, self.buf.len(), false))
    }

    // Not an Iterator: each event borrows the cursor's buffer until the next call.
    #[allow(clippy::should_implement_trait)]
    pub fn next(&mut self) -> Result<Option<EventRef<'_>>> {
        self.views.begin();
        let removing = self.store.removing();
        let (position, at, range) = loop {
            if self.ahead.is_empty() {
                if self.store.options.read_only {
                    self.store.refresh()?;
                }
                if removing {
                    // Versions the stream's deletes, truncations and count rule removed
                    // are not even read.
                    let view = self.views.view(&self.store, &self.stream);
                    if view.tombstone {
                        return Ok(None);
                    }
                    self.next_version = self.next_version.max(view.first_kept);
                }
                let index = self.store.index.read().unwrap_or_else(|e| e.into_inner());
                if let Some(&id) = index.stream_ids.get(self.stream.as_str()) {
                    self.ahead.extend(index.stream_forward(
                        id,
                        self.next_version,
                        self.from_position,
                        STREAM_BATCH,
                    )?);
                }
            }
            let Some(loc) = self.ahead.pop_front() else {
                return Ok(None);
            };
            self.next_version += 1;
            self.from_position = loc.0 + 1;
            // (Removed versions are judged by the record read: a compaction may have
            // erased versions the cursor counted on, so its count can lag.)
            if removing && self.views.view(&self.store, &self.stream).tombstone {
                continue;
            }
            let mut range = self.load(loc)?;
            if !super::holds(loc.0, &self.buf[range.0..range.1]) {
                // The segment was rewritten by a compaction since `loc` was taken: read
                // the position afresh (and locate the ones after it again).
                self.ahead.clear();
                self.span = None;
                let got = self.store.fetch_checked(
                    loc.0,
                    loc.1,
                    loc.2,
                    &mut self.files,
                    &mut self.buf,
                )?;
                let Some(at) = got else {
                    continue;
                };
                let loc: super::index::Loc = (loc.0, at, None);
                range = (0, self.buf.len(), false);
                if !removing {
                    break (loc.0, loc.1, range);
                }
                let d = decode_span(loc.0, loc.1, &self.buf, range, true)?;
                if !passes_over(&self.store, &mut self.views, d.value)
                    .map_err(|e| e.damage_at(loc.0))?
                {
                    break (loc.0, loc.1, range);
                }
                continue;
            }
            if !removing {
                break (loc.0, loc.1, range);
            }
            let d = decode_span(loc.0, loc.1, &self.buf, range, true)?;
            if !passes_over(&self.store, &mut self.views, d.value)
                .map_err(|e| e.damage_at(loc.0))?
            {
                break (loc.0, loc.1, range);
            }
        };
        let d = decode_span(position, at, &self.buf, range, !removing)?;
        let ev = self
            .store
            .event_of(position, d.key, d.value, &mut self.owned)?;
        // Versions go on from the event read (a compaction may have erased the ones the
        // cursor counted on).
        self.next_version = self.next_version.max(ev.stream_version + 1);
        Ok(Some(ev))
    }
}

/// Decodes the record at `buf[range.0..range.1]` (read from `at`): all of it when
/// `range.2` says the record ends there. `check`: verify its CRC (else it was checked
/// already).
fn decode_span(
    position: u64,
    at: Position,
    buf: &[u8],
    range: (usize, usize, bool),
    check: bool,
) -> Result<record::RecordRef<'_>> {
    let bytes = &buf[range.0..range.1];
    let d = if check {
        record::decode(bytes)
    } else {
        record::decode_verified(bytes)
    }
    .map_err(|e| damaged(position, at, e.describe()))?;
    if range.2 && d.len != bytes.len() {
        return Err(damaged(
            position,
            at,
            "it does not end where the next record starts",
        ));
    }
    check_plain(&d.record, at).map_err(|e| e.damage_at(position))?;
    Ok(d.record)
}
