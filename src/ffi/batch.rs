//! `evs_cursor_next_batch`: many events a call, for callers to whom the cost of one call
//! per event matters. The views point into the reader's own buffer where the cursor keeps
//! its events' bytes in place until its next call (the forward cursor over the whole
//! log), else into one buffer of the cursor, filled per batch with copies.

use super::args::{handle_mut, out_arg, write_out};
use super::extensible::out_struct_at;
use super::status::*;
use super::store::{evs_cursor, evs_event, EVS_EVENT_ERASED};
use crate::error::Error;
use crate::store::EventRef;
use std::ops::Range;

/// A batch stops growing once its bytes pass this (after its first event), so that a
/// cursor's memory stays bounded whatever the capacity.
const BATCH_BYTES: usize = 4 << 20;

/// The fields of one event of a batch, its bytes as ranges of the batch's buffer.
struct Span {
    position: u64,
    timestamp_us: u64,
    stream_version: u64,
    schema_version: u32,
    id: Option<[u8; 16]>,
    stream: Range<usize>,
    event_type: Range<usize>,
    payload: Range<usize>,
    metadata: Range<usize>,
    subject: Option<Range<usize>>,
    erased: bool,
}

#[derive(Default)]
pub(crate) struct Batch {
    bytes: Vec<u8>,
    spans: Vec<Span>,
    /// An error met after some events of a batch: returned by the next call.
    pub(crate) pending: Option<Error>,
}

impl Batch {
    fn keep(&mut self, e: &EventRef<'_>) {
        let mut put = |b: &[u8]| {
            let start = self.bytes.len();
            self.bytes.extend_from_slice(b);
            start..self.bytes.len()
        };
        let stream = put(e.stream.as_bytes());
        let event_type = put(e.event_type.as_bytes());
        let payload = put(e.payload);
        let metadata = put(e.metadata);
        let subject = e.subject.map(|s| put(s.as_bytes()));
        self.spans.push(Span {
            position: e.position,
            timestamp_us: e.timestamp_us,
            stream_version: e.stream_version,
            schema_version: e.schema_version,
            id: e.id,
            stream,
            event_type,
            payload,
            metadata,
            subject,
            erased: e.erased,
        });
    }

    /// The view of event `i` (pointers into `bytes`, which does not change until the
    /// next batch).
    fn view(&self, i: usize) -> evs_event {
        let s = &self.spans[i];
        let at = |r: &Range<usize>| self.bytes[r.clone()].as_ptr();
        evs_event {
            struct_size: std::mem::size_of::<evs_event>(),
            position: s.position,
            timestamp_us: s.timestamp_us,
            stream: at(&s.stream).cast(),
            stream_len: s.stream.len(),
            stream_version: s.stream_version,
            event_type: at(&s.event_type).cast(),
            event_type_len: s.event_type.len(),
            schema_version: s.schema_version,
            payload: at(&s.payload),
            payload_len: s.payload.len(),
            metadata: at(&s.metadata),
            metadata_len: s.metadata.len(),
            id: s.id.unwrap_or([0; 16]),
            subject: s
                .subject
                .as_ref()
                .map_or(std::ptr::null(), |r| at(r).cast()),
            subject_len: s.subject.as_ref().map_or(0, Range::len),
            flags: if s.erased { EVS_EVENT_ERASED } else { 0 },
        }
    }
}

/// Up to `capacity` next events: EVS_OK with `*out_count` (>= 1) views in `out[0..]`, or
/// EVS_END with `*out_count` 0 when there is none (now). The views stay valid until the
/// next call on the cursor or its free. A batch holds fewer than `capacity` events when
/// the cursor has no more now, once its bytes pass 4 MiB, or after an event whose bytes
/// the cursor made itself (a sealed event it decrypted, a legacy one it converted): only
/// EVS_END says there is no more now. `out` is an array of the
/// caller's `evs_event`; `out[0].struct_size` (see `EVS_STRUCT_INIT`) is the size of
/// every entry, and the array's stride. An error met after some events is returned by
/// the next call, after those events.
///
/// Ownership: `out` and `*out_count` are the caller's; the bytes the views point to are
/// the cursor's. Thread safety: one thread at a time per cursor. Returns EVS_OK, EVS_END,
/// EVS_ERR_INVALID_ARGUMENT (NULL, capacity 0, a bad `out[0].struct_size`),
/// EVS_ERR_CORRUPT, EVS_ERR_IO.
#[no_mangle]
pub unsafe extern "C" fn evs_cursor_next_batch(
    c: *mut evs_cursor,
    out: *mut evs_event,
    capacity: usize,
    out_count: *mut usize,
) -> evs_status {
    boundary(|| {
        // SAFETY: `c` is NULL or a live cursor used by this thread only.
        let c = unsafe { handle_mut(c, "cursor") }?;
        let out_count = out_arg(out_count, "out_count")?;
        if capacity == 0 {
            return Err(Error::invalid(
                "capacity is 0: a batch needs room for an event",
            ));
        }
        // SAFETY: NULL or the caller's array, whose first entry starts with its size.
        let stride = unsafe { out_struct_at(out, 0, None, "out") }?.size();
        if let Some(e) = c.batch.pending.take() {
            return Err(e);
        }
        let evs_cursor { kind, batch } = c;
        batch.bytes.clear();
        batch.spans.clear();
        // A cursor that keeps its events' bytes in place: views straight into them.
        let mut written = 0;
        let mut bad_entry = None;
        let mut sink = |e: &EventRef<'_>| {
            // SAFETY: the caller's array has `capacity` entries of the first's size, and
            // `next_views` hands out at most `capacity` events.
            match unsafe { out_struct_at(out, written, Some(stride), "out") } {
                Ok(o) => o.write(evs_event::view(e)),
                Err(e) => bad_entry = bad_entry.take().or(Some(e)),
            }
            written += 1;
        };
        if let Some(views) = kind.0.next_views(capacity, &mut sink) {
            if let Some(e) = bad_entry {
                return Err(e);
            }
            debug_assert_eq!(views.count, written);
            match views.error {
                Some(e) if views.count == 0 => return Err(e),
                e => batch.pending = e,
            }
            write_out(out_count, views.count);
            return Ok(if views.count == 0 { EVS_END } else { EVS_OK });
        }
        while batch.spans.len() < capacity
            && (batch.spans.is_empty() || batch.bytes.len() < BATCH_BYTES)
        {
            match kind.next_with(|e| batch.keep(e)) {
                Ok(Some(())) => {}
                Ok(None) => break,
                Err(e) if batch.spans.is_empty() => return Err(e),
                Err(e) => {
                    batch.pending = Some(e);
                    break;
                }
            }
        }
        let n = batch.spans.len();
        for i in 0..n {
            // SAFETY: the caller's array has `capacity` entries of the first's size.
            unsafe { out_struct_at(out, i, Some(stride), "out") }?.write(batch.view(i));
        }
        write_out(out_count, n);
        Ok(if n == 0 { EVS_END } else { EVS_OK })
    })
}
