//! Cursors: forward over the whole log (sequential, large reads), backward, and over one
//! stream (random access through the index). Each holds bounded memory and hands out
//! events that borrow its buffer until its next call.

use super::{check_plain, decode_event, FileStore};
use crate::error::{Error, Result};
use crate::store::{Event, EventRef};
use crate::wal::{Position, SegmentCursor};
use std::sync::Arc;

/// All events from a position on, in order. `None` from `next` means "no more now": a
/// later call returns events appended since.
pub struct ForwardCursor {
    store: Arc<FileStore>,
    next: u64,
    /// Stop before this position (for `poll`).
    until: u64,
    segments: Option<SegmentCursor>,
    legacy: Option<Event>,
}

impl ForwardCursor {
    pub(crate) fn new(store: Arc<FileStore>, from: u64, until: u64) -> Result<Self> {
        Ok(ForwardCursor {
            store,
            next: from,
            until,
            segments: None,
            legacy: None,
        })
    }

    /// The position the next event will have.
    pub fn position(&self) -> u64 {
        self.next
    }

    // Not an Iterator: each event borrows the cursor's buffer until the next call.
    #[allow(clippy::should_implement_trait)]
    pub fn next(&mut self) -> Result<Option<EventRef<'_>>> {
        if self.next >= self.until {
            return Ok(None);
        }
        // A read-only store looks for a writer's new events only at the end of what it
        // has, not for every event.
        if self.next >= self.store.committed() && self.next >= self.store.next_position()? {
            return Ok(None);
        }
        if self.segments.is_none() {
            let index = self.store.index.read().unwrap_or_else(|e| e.into_inner());
            let (_, at, _) = index.locate(self.next)?.ok_or_else(|| {
                Error::corrupt(format!("position {} is not in the index", self.next))
            })?;
            drop(index);
            self.segments = Some(SegmentCursor::new(self.store.wal().inner.clone(), at));
        }
        let position = self.next;
        // Damage found on the way is reported with the position (`evs_last_error_detail`).
        let damaged = move |e: Error| e.damage_at(position);
        let seg = self.segments.as_mut().expect("set above");
        let Some((at, d)) = seg.next().map_err(damaged)? else {
            return Err(damaged(Error::corrupt(format!(
                "the log ends before position {position}, which the index has"
            ))));
        };
        check_plain(&d.record, at).map_err(damaged)?;
        self.next += 1;
        decode_event(position, d.record.key, d.record.value, &mut self.legacy)
            .map(Some)
            .map_err(damaged)
    }
}

/// Events from a position down to 0. Sees no events appended after it was opened.
pub struct BackwardCursor {
    store: Arc<FileStore>,
    /// The position of the next event to return, while `more`.
    next: u64,
    more: bool,
    buf: Vec<u8>,
    legacy: Option<Event>,
}

impl BackwardCursor {
    pub(crate) fn new(store: Arc<FileStore>, from: u64, more: bool) -> Self {
        BackwardCursor {
            store,
            next: from,
            more,
            buf: Vec::new(),
            legacy: None,
        }
    }

    // Not an Iterator: each event borrows the cursor's buffer until the next call.
    #[allow(clippy::should_implement_trait)]
    pub fn next(&mut self) -> Result<Option<EventRef<'_>>> {
        if !self.more {
            return Ok(None);
        }
        let position = self.next;
        match position.checked_sub(1) {
            Some(p) => self.next = p,
            None => self.more = false,
        }
        self.store
            .read_at(position, &mut self.buf, &mut self.legacy)
            .map(Some)
    }
}

/// Events of a stream located at once, to read one by one.
const STREAM_BATCH: usize = 64;

/// One stream's events from a version on; sees events appended to it while it runs.
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
    legacy: Option<Event>,
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
            legacy: None,
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

    // Not an Iterator: each event borrows the cursor's buffer until the next call.
    #[allow(clippy::should_implement_trait)]
    pub fn next(&mut self) -> Result<Option<EventRef<'_>>> {
        if self.ahead.is_empty() {
            if self.store.options.read_only {
                self.store.refresh()?;
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
        let Some((position, at, end)) = self.ahead.pop_front() else {
            return Ok(None);
        };
        self.next_version += 1;
        self.from_position = position + 1;
        if let Some(end) = end.filter(|&e| e > at.offset && e - at.offset <= SPAN_MAX) {
            let inside = |&(seg, start, stop): &(u64, u64, u64)| {
                seg == at.segment_id && start <= at.offset && end <= stop
            };
            if !self.span.as_ref().is_some_and(inside) {
                self.read_span(at, end)?;
            }
            let (_, start, _) = self.span.expect("read_span sets it");
            let bytes = &self.buf[(at.offset - start) as usize..(end - start) as usize];
            return decode_record(position, at, bytes, &mut self.legacy).map(Some);
        }
        self.span = None;
        self.store
            .read_located(
                position,
                at,
                end,
                &mut self.files,
                &mut self.buf,
                &mut self.legacy,
            )
            .map(Some)
    }
}

/// Decodes the whole record `bytes` (read from `at`) as the event at `position`.
fn decode_record<'a>(
    position: u64,
    at: Position,
    bytes: &'a [u8],
    legacy: &'a mut Option<Event>,
) -> Result<EventRef<'a>> {
    let damaged = |what: &str| {
        Error::corrupt(format!(
            "the record of position {position} (segment {} offset {}): {what}",
            at.segment_id, at.offset
        ))
        .at_position(position)
    };
    let d = crate::wal::record::decode(bytes).map_err(|e| damaged(e.describe()))?;
    if d.len != bytes.len() {
        return Err(damaged("it does not end where the next record starts"));
    }
    check_plain(&d.record, at).map_err(|e| e.damage_at(position))?;
    decode_event(position, d.record.key, d.record.value, legacy).map_err(|e| e.damage_at(position))
}
