//! The store's C surface: options, open/close/sync, appends, reads and cursors.

use super::args::{
    bytes_arg, handle, handle_mut, opt_str_arg, out_arg, str_arg, write_opt, write_out,
};
use super::extensible::{each_input, extensible, input_array, opt_out_struct, out_struct};
use super::gate::CallGate;
use super::status::*;
use crate::account::Bank;
use crate::error::{Error, Result};
use crate::store::{
    EventCursor, EventInput, EventRef, ExpectedVersion, Store, StoreOptions, StreamAppend,
};
use crate::wal::FsyncPolicy;
use std::ffi::c_char;
use std::sync::Arc;
use std::time::Duration;

/// Fsync policy: an append returns after its bytes are on disk (group commit).
pub const EVS_FSYNC_ALWAYS: evs_fsync_policy = 0;
/// Fsync policy: every acknowledged event is on disk within the batch window.
pub const EVS_FSYNC_BATCH: evs_fsync_policy = 1;
/// Fsync policy: the OS decides; `evs_sync` and `evs_close` make everything durable.
pub const EVS_FSYNC_OS: evs_fsync_policy = 2;
/// One of the `EVS_FSYNC_*` values.
pub type evs_fsync_policy = i32;

/// Expected version: no check. (A value >= 0: the stream's last event has that version.)
pub const EVS_EXPECT_ANY: i64 = -1;
/// Expected version: the stream must not exist yet (or be soft-deleted and not appended
/// to since: its versions then continue after the kept one).
pub const EVS_EXPECT_NO_STREAM: i64 = -2;
/// Expected version: the stream must exist.
pub const EVS_EXPECT_EXISTS: i64 = -3;

/// Options for `evs_open` (opaque). Not thread-safe; free with `evs_options_free`.
pub struct evs_options {
    pub(crate) inner: StoreOptions,
}

/// An open store (opaque). Thread-safe: any number of threads may use one at once.
/// Every function taking a store also returns EVS_ERR_INVALID_ARGUMENT, writing nothing,
/// once `evs_close` has begun refusing calls on it, and in a forked child for a store
/// its parent opened. On a PostgreSQL store every function taking a store may also
/// return EVS_ERR_IO: the server could not be reached or refused a query (the message
/// says which; the next call connects again).
pub struct evs_store {
    pub(crate) bank: Bank,
    pub(crate) subscriptions: std::sync::Mutex<super::subscription::Registry>,
    calls: CallGate,
    /// The process that opened it (see `fork`).
    pub(crate) owner: super::fork::Owner,
}

/// A store handle with a call counted in through its gate; counts it out when dropped.
pub(crate) struct StoreRef<'a>(&'a evs_store);

impl std::ops::Deref for StoreRef<'_> {
    type Target = evs_store;
    fn deref(&self) -> &evs_store {
        self.0
    }
}

impl Drop for StoreRef<'_> {
    fn drop(&mut self) {
        self.0.calls.leave();
    }
}

/// A required store handle, counted in for the length of the call (see `CallGate`).
///
/// # Safety
/// `s` is NULL or a store from `evs_open` that `evs_close` has not finished freeing.
pub(crate) unsafe fn store_arg<'a>(s: *const evs_store) -> Result<StoreRef<'a>> {
    // SAFETY: forwarded contract: NULL or a live handle.
    let store = unsafe { handle(s, "store") }?;
    store.owner.check("store")?;
    store.calls.enter()?;
    Ok(StoreRef(store))
}

/// A cursor over events (opaque). Single-thread: use it from one thread at a time.
pub struct evs_cursor {
    pub(crate) kind: CursorKind,
    /// `evs_cursor_next_batch`'s copies of the events it hands out.
    pub(crate) batch: super::batch::Batch,
}

impl CursorKind {
    /// Reads the next event and hands it to `f` while it is borrowed.
    pub(crate) fn next_with<R>(&mut self, f: impl FnOnce(&EventRef<'_>) -> R) -> Result<Option<R>> {
        Ok(self.0.next()?.map(|e| f(&e)))
    }
}

/// Whatever cursor the store's backend opened.
pub(crate) struct CursorKind(pub(crate) Box<dyn EventCursor>);

/// What `evs_open` found and did (caller-allocated: set `struct_size`, see
/// `EVS_STRUCT_INIT`).
#[repr(C)]
pub struct evs_recovery_info {
    /// sizeof(evs_recovery_info) as the caller's header has it; the library never changes it.
    pub struct_size: usize,
    /// Records that passed their checksum during recovery (the tail after a snapshot).
    pub valid_records: u64,
    pub segments_scanned: u64,
    /// Bytes of a torn tail that were cut off.
    pub bytes_truncated: u64,
    /// A torn tail was truncated.
    pub corruption_detected: bool,
    /// The position the next event will get.
    pub next_position: u64,
    /// Events covered by the snapshot used; UINT64_MAX when none was used.
    pub snapshot_position: u64,
}

/// One event to append (caller-owned; set `struct_size`, see `EVS_STRUCT_INIT`).
#[repr(C)]
pub struct evs_event_input {
    /// sizeof(evs_event_input) as the caller's header has it. In an array, every entry
    /// has the same one.
    pub struct_size: usize,
    /// NUL-terminated UTF-8, 1..=1024 bytes.
    pub event_type: *const c_char,
    pub payload: *const u8,
    pub payload_len: usize,
    /// May be NULL when metadata_len is 0.
    pub metadata: *const u8,
    pub metadata_len: usize,
    /// 0 is stored as 1.
    pub schema_version: u32,
    /// The event's unique id (e.g. a UUID), or all zero for none. An append whose events
    /// all have ids that are stored already writes nothing and returns the stored
    /// positions (a retry after a timeout or EVS_ERR_IO cannot duplicate); one where only
    /// some are stored fails with EVS_ERR_ALREADY_EXISTS. Ids are remembered for the
    /// last `evs_options_set_dedupe_window` events (default 1,048,576).
    pub id: [u8; 16],
    /// The data subject whose personal data the payload and metadata are (e.g. a user
    /// id; NUL-terminated UTF-8, 1..=1024 bytes), or NULL for none. The payload and
    /// metadata are then stored encrypted with the subject's key and read back as
    /// erased once `evs_forget_subject` forgot it (README "Personal data"). The subject
    /// itself is stored in the clear: use a pseudonymous id. Added in 1.1: a caller whose
    /// `struct_size` ends before it names no subject.
    pub subject: *const c_char,
}

/// A borrowed view of a stored event: valid until the next call on the same cursor (or
/// until the callback returns). `stream` and `event_type` are not NUL-terminated.
/// The caller's struct (`evs_cursor_next`): set `struct_size` (see `EVS_STRUCT_INIT`);
/// one the library passes to a callback has the library's `struct_size`: a field exists
/// only if it lies within it.
#[repr(C)]
pub struct evs_event {
    /// sizeof(evs_event) (see above).
    pub struct_size: usize,
    /// Global, gapless, from 0.
    pub position: u64,
    /// Microseconds since the Unix epoch; never decreasing along positions.
    pub timestamp_us: u64,
    /// "" (length 0) for events with no stream.
    pub stream: *const c_char,
    pub stream_len: usize,
    pub stream_version: u64,
    pub event_type: *const c_char,
    pub event_type_len: usize,
    pub schema_version: u32,
    pub payload: *const u8,
    pub payload_len: usize,
    pub metadata: *const u8,
    pub metadata_len: usize,
    /// The id it was appended with; all zero for none.
    pub id: [u8; 16],
    /// The data subject it names (not NUL-terminated; NULL and 0 for none). Added in 1.1.
    pub subject: *const c_char,
    pub subject_len: usize,
    /// `EVS_EVENT_ERASED`: its subject was forgotten; payload and metadata are empty
    /// (the other fields are as stored). Added in 1.1.
    pub flags: u32,
}

/// `evs_event.flags`: the event's subject was forgotten (`evs_forget_subject`): its
/// payload and metadata are erased.
pub const EVS_EVENT_ERASED: u32 = 1;

extensible!(evs_recovery_info, valid_records);
extensible!(evs_event_input, event_type);
extensible!(evs_event, position);

impl evs_event {
    pub(crate) fn view(e: &EventRef<'_>) -> evs_event {
        evs_event {
            struct_size: std::mem::size_of::<evs_event>(),
            position: e.position,
            timestamp_us: e.timestamp_us,
            stream: e.stream.as_ptr().cast(),
            stream_len: e.stream.len(),
            stream_version: e.stream_version,
            event_type: e.event_type.as_ptr().cast(),
            event_type_len: e.event_type.len(),
            schema_version: e.schema_version,
            payload: e.payload.as_ptr(),
            payload_len: e.payload.len(),
            metadata: e.metadata.as_ptr(),
            metadata_len: e.metadata.len(),
            id: e.id.unwrap_or([0; 16]),
            subject: e.subject.map_or(std::ptr::null(), |s| s.as_ptr().cast()),
            subject_len: e.subject.map_or(0, str::len),
            flags: if e.erased { EVS_EVENT_ERASED } else { 0 },
        }
    }
}

/// Creates options with the defaults: EVS_FSYNC_BATCH with a 5 ms window, 128 MiB
/// segments, preallocation on, read-write, no snapshots by count (the store's own
/// checkpoints only: see `evs_options_set_snapshot_every`), compaction at 64 MiB/s and
/// automatically past 25% removed (`evs_options_set_compaction`).
///
/// Ownership: the caller owns the result and frees it with `evs_options_free`.
/// Returns NULL only if memory runs out. Thread safety: any thread.
#[no_mangle]
pub extern "C" fn evs_options_new() -> *mut evs_options {
    Box::into_raw(Box::new(evs_options {
        inner: StoreOptions::default(),
    }))
}

/// Frees options. NULL is a no-op.
///
/// Ownership: takes `o`, which was returned by `evs_options_new`. Thread safety: not
/// while another thread uses `o`.
#[no_mangle]
pub unsafe extern "C" fn evs_options_free(o: *mut evs_options) {
    if !o.is_null() {
        // Like every export: cancellation held off, panics caught (`cancel::quietly`).
        super::cancel::quietly(|| {
            // SAFETY: `o` came from Box::into_raw in evs_options_new and is freed once.
            drop(unsafe { Box::from_raw(o) });
        });
    }
}

/// Sets the fsync policy; `batch_window_ms` (1..=10000) is used only with EVS_FSYNC_BATCH.
///
/// Returns EVS_OK, or EVS_ERR_INVALID_ARGUMENT for a NULL `o`, an unknown policy or a
/// window out of range. Thread safety: not while another thread uses `o`.
/// Ownership: `o` stays the caller's.
#[no_mangle]
pub unsafe extern "C" fn evs_options_set_fsync(
    o: *mut evs_options,
    p: evs_fsync_policy,
    batch_window_ms: u32,
) -> evs_status {
    boundary(|| {
        // SAFETY: `o` is NULL or a live options object (C API contract).
        let o = unsafe { handle_mut(o, "options") }?;
        o.inner.fsync = match p {
            EVS_FSYNC_ALWAYS => FsyncPolicy::Always,
            EVS_FSYNC_BATCH => {
                if !(1..=10_000).contains(&batch_window_ms) {
                    return Err(Error::invalid(format!(
                        "batch_window_ms {batch_window_ms} is outside 1..=10000"
                    )));
                }
                FsyncPolicy::Batch(Duration::from_millis(batch_window_ms as u64))
            }
            EVS_FSYNC_OS => FsyncPolicy::Os,
            other => return Err(Error::invalid(format!("unknown fsync policy {other}"))),
        };
        Ok(EVS_OK)
    })
}

/// Sets the segment size at which the log starts a new file (64 KiB ..= 1 TiB).
///
/// Returns EVS_OK, or EVS_ERR_INVALID_ARGUMENT for a NULL `o` or a size out of range.
/// Thread safety: not while another thread uses `o`.
/// Ownership: `o` stays the caller's.
#[no_mangle]
pub unsafe extern "C" fn evs_options_set_max_segment_size(
    o: *mut evs_options,
    bytes: u64,
) -> evs_status {
    boundary(|| {
        // SAFETY: `o` is NULL or a live options object (C API contract).
        let o = unsafe { handle_mut(o, "options") }?;
        let range = crate::wal::MIN_SEGMENT_SIZE..=crate::wal::MAX_SEGMENT_SIZE;
        if !range.contains(&bytes) {
            return Err(Error::invalid(format!(
                "max segment size {bytes} is outside {}..={}",
                range.start(),
                range.end()
            )));
        }
        o.inner.max_segment_size = bytes;
        Ok(EVS_OK)
    })
}

/// Turns preallocation of new segments (fallocate) on or off.
///
/// Returns EVS_OK, or EVS_ERR_INVALID_ARGUMENT for a NULL `o`.
/// Ownership: `o` stays the caller's. Thread safety: not while another thread uses `o`.
#[no_mangle]
pub unsafe extern "C" fn evs_options_set_preallocate(o: *mut evs_options, on: bool) -> evs_status {
    boundary(|| {
        // SAFETY: `o` is NULL or a live options object (C API contract).
        unsafe { handle_mut(o, "options") }?.inner.preallocate = on;
        Ok(EVS_OK)
    })
}

/// Opens read-only: no lock, no file modified, writes refused with EVS_ERR_READ_ONLY.
/// Beside a writing process it follows the writer: new events appear on later reads,
/// whole appends only; under the writer's EVS_FSYNC_ALWAYS only events whose fdatasync
/// succeeded (never one whose append may still be refused), under EVS_FSYNC_BATCH and
/// EVS_FSYNC_OS every acknowledged event. It goes on after its writer dies and the next
/// writer recovers. If the log below what it read changed all the same (events it read
/// lost by a failed writeback, the store replaced), every later call fails with
/// EVS_ERR_STALE: close it and open it again. Damage that valid records follow fails the
/// open with EVS_ERR_CORRUPT, as for a writable open.
///
/// Returns EVS_OK, or EVS_ERR_INVALID_ARGUMENT for a NULL `o`.
/// Ownership: `o` stays the caller's. Thread safety: not while another thread uses `o`.
#[no_mangle]
pub unsafe extern "C" fn evs_options_set_read_only(o: *mut evs_options, on: bool) -> evs_status {
    boundary(|| {
        // SAFETY: `o` is NULL or a live options object (C API contract).
        unsafe { handle_mut(o, "options") }?.inner.read_only = on;
        Ok(EVS_OK)
    })
}

/// Takes a snapshot automatically every `events` events (0 = never by count). Whatever
/// this says, the file store also checkpoints itself (a snapshot of its stream table and
/// projections) when it closes with 100,000 or more events since the last snapshot, and
/// when a segment seals with 1,000,000 or more (and four times its stream count) since
/// the last, so that an open never replays the whole history (docs/index-files.md).
///
/// Returns EVS_OK, or EVS_ERR_INVALID_ARGUMENT for a NULL `o`.
/// Ownership: `o` stays the caller's. Thread safety: not while another thread uses `o`.
#[no_mangle]
pub unsafe extern "C" fn evs_options_set_snapshot_every(
    o: *mut evs_options,
    events: u64,
) -> evs_status {
    boundary(|| {
        // SAFETY: `o` is NULL or a live options object (C API contract).
        unsafe { handle_mut(o, "options") }?.inner.snapshot_every = events;
        Ok(EVS_OK)
    })
}

/// Sets the largest event (payload plus metadata) an append accepts: 1 ..= 16 MiB
/// (the default, 16 MiB). Appends of larger events fail with EVS_ERR_TOO_LARGE before
/// their bytes are read. Events already stored are read whatever their size.
///
/// Returns EVS_OK, or EVS_ERR_INVALID_ARGUMENT for a NULL `o` or a size out of range.
/// Ownership: `o` stays the caller's. Thread safety: not while another thread uses `o`.
#[no_mangle]
pub unsafe extern "C" fn evs_options_set_max_event_size(
    o: *mut evs_options,
    bytes: u64,
) -> evs_status {
    boundary(|| {
        // SAFETY: `o` is NULL or a live options object (C API contract).
        let o = unsafe { handle_mut(o, "options") }?;
        let max = crate::store::MAX_EVENT_SIZE as u64;
        if !(1..=max).contains(&bytes) {
            return Err(Error::invalid(format!(
                "max event size {bytes} is outside 1..={max}"
            )));
        }
        o.inner.max_event_size = bytes as usize;
        Ok(EVS_OK)
    })
}

/// Sets how many of the last events' ids are remembered for idempotent appends (see
/// `evs_event_input.id`): 1 ..= 1,073,741,824 events; the default is 1,048,576. The ids
/// of at least the last `events` events are found; older ones may be forgotten (then a
/// retry appends again). Memory: under 24 bytes per remembered event that has an id, and
/// nothing for events without one.
///
/// Returns EVS_OK, or EVS_ERR_INVALID_ARGUMENT for a NULL `o` or a count out of range.
/// Ownership: `o` stays the caller's. Thread safety: not while another thread uses `o`.
#[no_mangle]
pub unsafe extern "C" fn evs_options_set_dedupe_window(
    o: *mut evs_options,
    events: u64,
) -> evs_status {
    boundary(|| {
        // SAFETY: `o` is NULL or a live options object (C API contract).
        let o = unsafe { handle_mut(o, "options") }?;
        let max = crate::store::ids::MAX_DEDUPE_WINDOW;
        if !(1..=max).contains(&events) {
            return Err(Error::invalid(format!(
                "dedupe window {events} is outside 1..={max}"
            )));
        }
        o.inner.dedupe_window = events;
        Ok(EVS_OK)
    })
}

/// Sets compaction's budget and trigger (docs/lifecycle.md). `bytes_per_second`: at most
/// this many bytes read and written per second by a compaction, automatic or
/// `evs_compact` (default 67108864, 64 MiB/s; 0: unthrottled). `trigger_percent`: a
/// library thread of the store compacts a sealed segment once more than this percent of
/// its bytes belong to removed events (default 25; 0: no automatic compaction, only
/// `evs_compact`). The file engine's; a PostgreSQL store keeps them and has no segments.
///
/// Returns EVS_OK, or EVS_ERR_INVALID_ARGUMENT for a NULL `o` or a `trigger_percent`
/// over 100. Ownership: `o` stays the caller's. Thread safety: not while another thread
/// uses `o`.
#[no_mangle]
pub unsafe extern "C" fn evs_options_set_compaction(
    o: *mut evs_options,
    bytes_per_second: u64,
    trigger_percent: u32,
) -> evs_status {
    boundary(|| {
        // SAFETY: `o` is NULL or a live options object (C API contract).
        let o = unsafe { handle_mut(o, "options") }?;
        if trigger_percent > 100 {
            return Err(Error::invalid(format!(
                "compaction trigger {trigger_percent}% is over 100% (0 turns automatic \
                 compaction off)"
            )));
        }
        o.inner.compaction_bytes_per_second = bytes_per_second;
        o.inner.compaction_trigger_percent = trigger_percent;
        Ok(EVS_OK)
    })
}

/// The options an open store runs with (caller-allocated: set `struct_size`, see
/// `EVS_STRUCT_INIT`).
#[repr(C)]
pub struct evs_store_options {
    /// sizeof(evs_store_options) as the caller's header has it; never changed.
    pub struct_size: usize,
    /// One of the EVS_FSYNC_* values.
    pub fsync_policy: evs_fsync_policy,
    /// The batch window under EVS_FSYNC_BATCH; 0 otherwise.
    pub batch_window_ms: u32,
    pub max_segment_size: u64,
    pub preallocate: bool,
    pub read_only: bool,
    /// 0: no snapshots by count (the store's own checkpoints still happen).
    pub snapshot_every: u64,
    pub max_event_size: u64,
    pub dedupe_window: u64,
    /// Compaction's budget in bytes per second (0: unthrottled); added in 1.1, as is the
    /// field after it.
    pub compaction_bytes_per_second: u64,
    /// The percent of a sealed segment's bytes removed past which it is compacted
    /// automatically (0: never).
    pub compaction_trigger_percent: u32,
}

extensible!(evs_store_options, fsync_policy);

/// Fills `*out` with the options `s` was opened with, defaults filled in.
///
/// Returns EVS_OK, or EVS_ERR_INVALID_ARGUMENT (NULL, or a bad `out->struct_size`).
/// Ownership: `*out` is the caller's struct, written only on success. Thread safety: any
/// thread.
#[no_mangle]
pub unsafe extern "C" fn evs_store_options_get(
    s: *mut evs_store,
    out: *mut evs_store_options,
) -> evs_status {
    boundary(|| {
        // SAFETY: C API contract for each pointer.
        let store = unsafe { store_arg(s) }?;
        let out = unsafe { out_struct(out, "out") }?;
        let o = store.bank.store().options();
        let (fsync_policy, batch_window_ms) = match o.fsync {
            FsyncPolicy::Always => (EVS_FSYNC_ALWAYS, 0),
            FsyncPolicy::Batch(w) => (EVS_FSYNC_BATCH, w.as_millis() as u32),
            FsyncPolicy::Os => (EVS_FSYNC_OS, 0),
        };
        out.write(evs_store_options {
            struct_size: std::mem::size_of::<evs_store_options>(),
            fsync_policy,
            batch_window_ms,
            max_segment_size: o.max_segment_size,
            preallocate: o.preallocate,
            read_only: o.read_only,
            snapshot_every: o.snapshot_every,
            max_event_size: o.max_event_size as u64,
            dedupe_window: o.dedupe_window,
            compaction_bytes_per_second: o.compaction_bytes_per_second,
            compaction_trigger_percent: o.compaction_trigger_percent,
        });
        Ok(EVS_OK)
    })
}

/// Opens (creating if needed; the parent directory must exist) the store at `path`,
/// recovering its log, and reports what recovery did in `out_info` (may be NULL).
///
/// Ownership: `*out_store` belongs to the caller, who closes it with `evs_close`; `opts`
/// stays the caller's (NULL: defaults). Thread safety: any thread.
/// Returns EVS_OK; EVS_ERR_INVALID_ARGUMENT (NULL path/out_store, bad UTF-8, an empty
/// path, a `postgresql://` URL that does not parse, a bad `out_info->struct_size`);
/// EVS_ERR_LOCKED (another writer has it open); EVS_ERR_NOT_FOUND (read-only open of a
/// missing store); EVS_ERR_CORRUPT (damage beyond a torn tail; a PostgreSQL schema of a
/// newer library); EVS_ERR_READ_ONLY (a read-only open of a PostgreSQL schema an older
/// version wrote: open it once for writing); EVS_ERR_IO (the OS refused: permissions, a
/// path that is a file, ...; the PostgreSQL server could not be reached);
/// EVS_ERR_INTERNAL.
///
/// A store belongs to the process that opened it: in a child made by `fork()` (without
/// exec) every call on the inherited handle returns EVS_ERR_INVALID_ARGUMENT naming both
/// process ids and writes nothing; the child may open stores of its own.
#[no_mangle]
pub unsafe extern "C" fn evs_open(
    path: *const c_char,
    opts: *const evs_options,
    out_store: *mut *mut evs_store,
    out_info: *mut evs_recovery_info,
) -> evs_status {
    boundary(|| {
        // SAFETY: C API contract: a NUL-terminated path, live options or NULL.
        let path = unsafe { str_arg(path, "path") }?;
        let out_store = out_arg(out_store, "out_store")?;
        // SAFETY: NULL or the caller's struct, starting with its size.
        let out_info = unsafe { opt_out_struct(out_info, "out_info") }?;
        if path.is_empty() {
            return Err(Error::invalid("path is empty"));
        }
        // SAFETY: `opts` is NULL or a live options object.
        let options = unsafe { opts.as_ref() }
            .map(|o| o.inner.clone())
            .unwrap_or_default();
        let owner = super::fork::Owner::current();
        let (bank, report) = Bank::open(path, options)?;
        let info = evs_recovery_info {
            struct_size: std::mem::size_of::<evs_recovery_info>(),
            valid_records: report.wal.valid_records,
            segments_scanned: report.wal.segments_scanned,
            bytes_truncated: report.wal.bytes_truncated,
            corruption_detected: report.wal.corruption_detected,
            next_position: report.next_position,
            snapshot_position: report.snapshot_position.unwrap_or(u64::MAX),
        };
        if let Some(o) = out_info {
            o.write(info);
        }
        super::runtime::store_opened();
        write_out(
            out_store,
            Box::into_raw(Box::new(evs_store {
                bank,
                subscriptions: Default::default(),
                calls: CallGate::default(),
                owner,
            })),
        );
        Ok(EVS_OK)
    })
}

/// Makes every appended event durable (fdatasync), under any policy.
///
/// Returns EVS_OK (also for a read-only store), EVS_ERR_INVALID_ARGUMENT (NULL `s`),
/// EVS_ERR_IO. Thread safety: any thread.
/// Ownership: `s` stays the caller's.
#[no_mangle]
pub unsafe extern "C" fn evs_sync(s: *mut evs_store) -> evs_status {
    boundary(|| {
        // SAFETY: `s` is NULL or a live store.
        unsafe { store_arg(s) }?.bank.store().sync()?;
        Ok(EVS_OK)
    })
}

/// Closes the store: stops its subscriptions (waiting for their callbacks to return; calls
/// they make until then work, except `evs_subscribe`, refused from the moment close
/// begins; their handles must still be freed with `evs_subscription_close`), then
/// refuses calls that start from then on (they fail with
/// EVS_ERR_INVALID_ARGUMENT, "store is closed or being closed") and waits for the calls
/// other threads are running on `s` to return (a running `evs_compact` stops at its next
/// record), syncs, releases the lock and frees the store. NULL is a no-op.
/// Cursors still open keep working on their own (reads only) until freed.
///
/// Ownership: takes `s`. Thread safety: any thread, also while other threads are inside
/// calls on `s` (close waits for them; it never returns EVS_ERR_BUSY). Once it has
/// returned, `s` is freed: a call that starts after that is a use-after-free, as with
/// any freed pointer. A subscription callback may close its own store.
/// Returns EVS_OK; EVS_ERR_IO (the final sync failed, or an earlier fdatasync failed and
/// the store refused writes since: the message names that failure; the store is freed
/// anyway); EVS_ERR_INVALID_ARGUMENT (another thread is already closing `s`: that call
/// frees it, this one does nothing; or `s` was opened by the parent of this forked
/// process: it is left alone, its memory leaked, the parent's store untouched).
#[no_mangle]
pub unsafe extern "C" fn evs_close(s: *mut evs_store) -> evs_status {
    if s.is_null() {
        return EVS_OK;
    }
    boundary(|| {
        // SAFETY: `s` is a live handle from evs_open (C API contract); only the close
        // that wins the gate goes on to free it.
        let store = unsafe { handle(s, "store") }?;
        if let Err(e) = store.owner.check("store") {
            // The parent's store: no flush, no unlock, no thread to stop. Leaked.
            super::runtime::store_closed();
            return Err(e);
        }
        if !store.calls.begin_close() {
            return Err(Error::invalid(
                "store is already being closed by another call to evs_close",
            ));
        }
        // Subscriptions first: their callbacks may be inside calls on `s`, and the calls
        // they make until they return still work.
        super::subscription::stop_all(store);
        // A running evs_compact stops at its next record rather than being waited for.
        store.bank.store().interrupt();
        store.calls.refuse_and_wait();
        // SAFETY: `s` came from Box::into_raw in evs_open; the gate let exactly this call
        // through, and no other call is running on it.
        let store = unsafe { Box::from_raw(s) };
        super::runtime::store_closed();
        store.bank.store().close()?;
        Ok(EVS_OK)
    })
}

/// Appends one event with no stream (the reference program's `append_event`).
///
/// `*out_position` (may be NULL) gets its position. Thread safety: any thread.
/// Returns EVS_OK; EVS_ERR_INVALID_ARGUMENT (NULL or non-UTF-8 type, NULL payload with a
/// length, type of 0 or > 1024 bytes); EVS_ERR_TOO_LARGE (past the store's event size
/// limit, 16 MiB by default, or longer than a segment); EVS_ERR_READ_ONLY; EVS_ERR_IO.
/// Ownership: the type and payload stay the caller's (copied before return).
#[no_mangle]
pub unsafe extern "C" fn evs_append_event(
    s: *mut evs_store,
    event_type: *const c_char,
    payload: *const u8,
    payload_len: usize,
    out_position: *mut u64,
) -> evs_status {
    boundary(|| {
        // SAFETY: C API contract for each pointer.
        let store = unsafe { store_arg(s) }?;
        let ty = unsafe { str_arg(event_type, "event_type") }?;
        let payload = unsafe {
            bytes_arg(
                payload,
                payload_len,
                store.bank.store().options().max_event_size,
                "payload",
            )
        }?;
        let p = store.bank.store().append_event(ty, payload)?;
        write_opt(out_position, p);
        Ok(EVS_OK)
    })
}

/// Checks an id from C: all zero means "no id".
fn id_arg(id: &[u8; 16]) -> Option<[u8; 16]> {
    (*id != [0u8; 16]).then_some(*id)
}

/// The events of an append, checked: `count` (> 0) evs_event_input structs of the
/// caller's struct_size, each with a type, bytes within the store's event size limit and
/// an optional id.
///
/// # Safety
/// `events` is NULL or points to `count` evs_event_input structs whose pointers follow
/// the C API contract and outlive `'a`.
unsafe fn events_arg<'a>(
    store: &Store,
    events: *const evs_event_input,
    count: usize,
    name: &str,
) -> Result<Inputs<'a>> {
    if count == 0 {
        return Err(Error::invalid(format!(
            "{name}: the count is 0: an append needs at least one event"
        )));
    }
    let max = store.options().max_event_size;
    // (`count` is checked against the limit by `each_input`: no room is taken for more.)
    let mut inputs = match count {
        1 => Inputs::One(None),
        _ => Inputs::Many(Vec::with_capacity(
            count.min(crate::store::MAX_BATCH_EVENTS),
        )),
    };
    let check = |i: usize, e: evs_event_input| {
        // Argument names for messages are built only when a field is refused: the happy
        // path of every append would otherwise format three strings an event.
        let named = |err: Error| err.prefixed(format_args!("{name}[{i}]."));
        // SAFETY: each field follows the C API contract; lengths are checked before use.
        let event_type = unsafe { str_arg(e.event_type, "event_type") }.map_err(named)?;
        // SAFETY: as above.
        let payload =
            unsafe { bytes_arg(e.payload, e.payload_len, max, "payload") }.map_err(named)?;
        // SAFETY: as above.
        let metadata =
            unsafe { bytes_arg(e.metadata, e.metadata_len, max, "metadata") }.map_err(named)?;
        // SAFETY: as above (NULL: no subject; a caller's older, smaller struct reads
        // it as NULL).
        let subject = unsafe { opt_str_arg(e.subject, "subject") }.map_err(named)?;
        inputs.push(EventInput {
            event_type,
            payload,
            metadata,
            schema_version: e.schema_version,
            id: id_arg(&e.id),
            subject,
        });
        Ok(())
    };
    // SAFETY: forwarded contract.
    unsafe { each_input(events, count, crate::store::MAX_BATCH_EVENTS, name, check) }?;
    Ok(inputs)
}

/// An append's events, checked: one held inline (a single-event append allocates nothing
/// for it), or a vector.
enum Inputs<'a> {
    One(Option<EventInput<'a>>),
    Many(Vec<EventInput<'a>>),
}

impl<'a> Inputs<'a> {
    fn push(&mut self, e: EventInput<'a>) {
        match self {
            Inputs::One(one) => *one = Some(e),
            Inputs::Many(v) => v.push(e),
        }
    }
}

impl<'a> std::ops::Deref for Inputs<'a> {
    type Target = [EventInput<'a>];
    fn deref(&self) -> &[EventInput<'a>] {
        match self {
            Inputs::One(one) => one.as_slice(),
            Inputs::Many(v) => v,
        }
    }
}

pub(crate) fn parse_expected(v: i64) -> Result<ExpectedVersion> {
    Ok(match v {
        EVS_EXPECT_ANY => ExpectedVersion::Any,
        EVS_EXPECT_NO_STREAM => ExpectedVersion::NoStream,
        EVS_EXPECT_EXISTS => ExpectedVersion::Exists,
        v if v >= 0 => ExpectedVersion::Exact(v as u64),
        v => {
            return Err(Error::invalid(format!(
                "expected_version {v} is not -1, -2, -3 or >= 0"
            )))
        }
    })
}

/// Appends `count` events to `stream` atomically, if the stream is at `expected_version`
/// (EVS_EXPECT_ANY, EVS_EXPECT_NO_STREAM, EVS_EXPECT_EXISTS, or the version of its
/// last event; a soft-deleted stream does not exist until appended to again, and its
/// versions continue after the kept one). Optional outputs: the first event's position
/// and the last one's version.
/// `events` is an array of `count` evs_event_input of the caller's `struct_size`. When
/// every event has an id (`id` not all zero) and all of them are stored already, nothing
/// is written and the outputs are those of the stored events (a retry): the expected
/// version is not checked then.
///
/// Thread safety: any thread. Returns EVS_OK; EVS_ERR_INVALID_ARGUMENT (NULL, non-UTF-8,
/// empty or > 1024-byte names, count 0, bad expected_version, a bad struct_size, an id
/// twice in the append); EVS_ERR_WRONG_EXPECTED_VERSION (the message names the actual
/// version, `evs_last_error_detail` gives it); EVS_ERR_STREAM_DELETED (the stream was
/// hard-deleted); EVS_ERR_ALREADY_EXISTS (an id stored already with other content:
/// another stream, type, schema version, payload or metadata, or a lifecycle entry's; or
/// some but not all of the ids stored: nothing written, the detail's `position` is the
/// stored record's); EVS_ERR_BUSY (an append with one of the ids is
/// still being made durable under EVS_FSYNC_ALWAYS: retry); EVS_ERR_TOO_LARGE (an event
/// past the store's limit, 16 MiB by default; more than 1,048,576 events; a batch over
/// 64 MiB or longer than a segment); EVS_ERR_READ_ONLY; EVS_ERR_IO.
/// Ownership: `stream` and `events` stay the caller's (copied before return).
#[no_mangle]
pub unsafe extern "C" fn evs_append(
    s: *mut evs_store,
    stream: *const c_char,
    expected_version: i64,
    events: *const evs_event_input,
    count: usize,
    out_first_position: *mut u64,
    out_stream_version: *mut u64,
) -> evs_status {
    boundary(|| {
        // SAFETY: C API contract for each pointer.
        let store = unsafe { store_arg(s) }?;
        let stream = unsafe { str_arg(stream, "stream") }?;
        let expected = parse_expected(expected_version)?;
        if count == 0 {
            return Err(Error::invalid(
                "count is 0: an append needs at least one event",
            ));
        }
        // SAFETY: the caller passes `count` evs_event_input structs of their struct_size.
        let inputs = unsafe { events_arg(store.bank.store(), events, count, "events") }?;
        let (first, version) = store.bank.store().append_one(stream, expected, &inputs)?;
        write_opt(out_first_position, first);
        write_opt(out_stream_version, version);
        Ok(EVS_OK)
    })
}

/// One stream's part of `evs_append_multi` (caller-allocated: set `struct_size`, see
/// `EVS_STRUCT_INIT`).
#[repr(C)]
pub struct evs_stream_append {
    /// sizeof(evs_stream_append) as the caller's header has it; the same in every entry.
    pub struct_size: usize,
    /// NUL-terminated UTF-8, 1..=1024 bytes.
    pub stream: *const c_char,
    /// EVS_EXPECT_ANY, EVS_EXPECT_NO_STREAM, EVS_EXPECT_EXISTS, or the version of the
    /// stream's last event.
    pub expected_version: i64,
    /// `count` (> 0) events for this stream.
    pub events: *const evs_event_input,
    pub count: usize,
}

extensible!(evs_stream_append, stream);

/// Appends to several streams in one atomic step: `count` (1..=1024) parts, each with its
/// stream, expected version and events. All of it is stored, or nothing: every expected
/// version is checked before anything is written (a stream named twice is checked the
/// second time against its version after the first part). Events get consecutive
/// positions in the order of the parts. Event ids work as in `evs_append`, over the
/// whole call. Optional outputs: the first event's position, and for each part the
/// version of its last event (`out_stream_versions` has `count` entries).
///
/// Thread safety: any thread. Returns EVS_OK; EVS_ERR_INVALID_ARGUMENT (NULL store or
/// appends, count 0, a bad struct_size, a part with no events, names or expected
/// versions as for `evs_append`); EVS_ERR_WRONG_EXPECTED_VERSION (the message names the
/// stream and its actual version; `evs_last_error_detail` gives the version and the
/// failing part's index); EVS_ERR_STREAM_DELETED (a part's stream was hard-deleted);
/// EVS_ERR_ALREADY_EXISTS (as for `evs_append`, over the whole call; the detail's
/// `part_index` is the part of the event concerned); EVS_ERR_BUSY (an append with one of
/// its ids is still being made durable); EVS_ERR_TOO_LARGE (more than 1024 parts, as for
/// the other limits of an append's size; an event past the store's limit; more than
/// 1,048,576 events or 64 MiB in all, or more than a segment holds); EVS_ERR_READ_ONLY;
/// EVS_ERR_IO.
/// Ownership: everything passed in stays the caller's (copied before return); the
/// outputs are written only on success.
#[no_mangle]
pub unsafe extern "C" fn evs_append_multi(
    s: *mut evs_store,
    appends: *const evs_stream_append,
    count: usize,
    out_first_position: *mut u64,
    out_stream_versions: *mut u64,
) -> evs_status {
    boundary(|| {
        // SAFETY: C API contract for each pointer.
        let store = unsafe { store_arg(s) }?;
        let st = store.bank.store();
        // SAFETY: forwarded C API contract.
        let r = unsafe { with_appends(st, appends, count, |plan| st.append_multi(plan)) }?;
        // SAFETY: as above.
        unsafe { write_append_result(&r, out_first_position, out_stream_versions) };
        Ok(EVS_OK)
    })
}

/// Reads the caller's `count` parts of a multi-stream append, checked, and hands them
/// to `f`.
///
/// # Safety
/// `appends` is NULL or points to `count` evs_stream_append structs whose pointers follow
/// the C API contract.
pub(crate) unsafe fn with_appends<R>(
    store: &Store,
    appends: *const evs_stream_append,
    count: usize,
    f: impl FnOnce(&[StreamAppend<'_>]) -> Result<R>,
) -> Result<R> {
    if count == 0 {
        return Err(Error::invalid(
            "count is 0: an append needs at least one stream",
        ));
    }
    // SAFETY: `count` evs_stream_append structs of their struct_size.
    let parts = unsafe { input_array(appends, count, MAX_MULTI_STREAMS, "appends") }?;
    let mut events = Vec::with_capacity(parts.len());
    let mut streams = Vec::with_capacity(parts.len());
    for (i, p) in parts.iter().enumerate() {
        // SAFETY: each part's pointers follow the C API contract.
        streams.push(unsafe { str_arg(p.stream, &format!("appends[{i}].stream")) }?);
        let name = format!("appends[{i}].events");
        // SAFETY: as above.
        events.push(unsafe { events_arg(store, p.events, p.count, &name) }?);
    }
    let mut plan = Vec::with_capacity(parts.len());
    for (i, p) in parts.iter().enumerate() {
        plan.push(StreamAppend {
            stream: streams[i],
            expected: parse_expected(p.expected_version)?,
            events: &events[i],
        });
    }
    f(&plan)
}

/// Writes a multi-stream append's optional outputs.
///
/// # Safety
/// `out_stream_versions` is NULL or has room for one version per part.
pub(crate) unsafe fn write_append_result(
    r: &crate::store::AppendResult,
    out_first_position: *mut u64,
    out_stream_versions: *mut u64,
) {
    write_opt(out_first_position, r.first_position);
    if !out_stream_versions.is_null() {
        for (i, v) in r.stream_versions.iter().enumerate() {
            // SAFETY: the caller passes room for one version per part when non-NULL.
            unsafe { out_stream_versions.add(i).write(*v) };
        }
    }
}

/// Streams one `evs_append_multi` may name.
const MAX_MULTI_STREAMS: usize = 1024;

/// The body of every cursor constructor: check the store and `out`, make the cursor,
/// hand it out.
///
/// # Safety
/// `s` is NULL or a live store; `out` is NULL or writable.
pub(crate) unsafe fn open_cursor(
    s: *mut evs_store,
    out: *mut *mut evs_cursor,
    make: impl FnOnce(&Arc<Store>) -> Result<CursorKind>,
) -> evs_status {
    boundary(|| {
        // SAFETY: forwarded from the caller's contract.
        let store = unsafe { store_arg(s) }?;
        let out = out_arg(out, "out")?;
        let kind = make(store.bank.store())?;
        write_out(
            out,
            Box::into_raw(Box::new(evs_cursor {
                kind,
                batch: Default::default(),
            })),
        );
        Ok(EVS_OK)
    })
}

/// Opens a cursor over all events from `from_position` on. It sees events appended while
/// it runs: EVS_END means "no more now". Positions that hold no event (removed events,
/// lifecycle entries: docs/lifecycle.md) are passed over.
///
/// Ownership: free `*out` with `evs_cursor_free`. Returns EVS_OK;
/// EVS_ERR_INVALID_ARGUMENT (NULL); EVS_ERR_NOT_FOUND (`from_position` past the next
/// position). Thread safety: any thread; the cursor itself is single-thread.
#[no_mangle]
pub unsafe extern "C" fn evs_read_all(
    s: *mut evs_store,
    from_position: u64,
    out: *mut *mut evs_cursor,
) -> evs_status {
    // SAFETY: forwarded C API contract.
    unsafe { open_cursor(s, out, |st| Ok(CursorKind(st.read_all(from_position)?))) }
}

/// Opens a cursor from `from_position` (inclusive; UINT64_MAX or past the end: the last
/// event) down to position 0. It does not see later appends.
///
/// Ownership: free `*out` with `evs_cursor_free`. Returns EVS_OK or
/// EVS_ERR_INVALID_ARGUMENT (NULL). Thread safety: any thread.
#[no_mangle]
pub unsafe extern "C" fn evs_read_all_backward(
    s: *mut evs_store,
    from_position: u64,
    out: *mut *mut evs_cursor,
) -> evs_status {
    // SAFETY: forwarded C API contract.
    unsafe {
        open_cursor(s, out, |st| {
            Ok(CursorKind(st.read_all_backward(from_position)?))
        })
    }
}

/// Opens a cursor over one stream from `from_version` on; it sees events appended to the
/// stream while it runs.
///
/// Ownership: free `*out` with `evs_cursor_free`. Returns EVS_OK;
/// EVS_ERR_INVALID_ARGUMENT (NULL, bad UTF-8, empty or > 1024-byte name);
/// EVS_ERR_NOT_FOUND (no such stream, no event of it left, or `from_version` past its
/// version + 1); EVS_ERR_STREAM_DELETED (hard-deleted); EVS_ERR_IO or EVS_ERR_CORRUPT (a
/// read-only store failed to take in a writer's new events); EVS_ERR_STALE (its log
/// changed below what it read: reopen). Removed events are passed over.
/// Thread safety: any thread; the cursor itself is single-thread.
#[no_mangle]
pub unsafe extern "C" fn evs_read_stream(
    s: *mut evs_store,
    stream: *const c_char,
    from_version: u64,
    out: *mut *mut evs_cursor,
) -> evs_status {
    let make = |st: &Arc<Store>| {
        // SAFETY: `stream` is NULL or a NUL-terminated string (C API contract).
        let stream = unsafe { str_arg(stream, "stream") }?;
        Ok(CursorKind(st.read_stream(stream, from_version)?))
    };
    // SAFETY: forwarded C API contract.
    unsafe { open_cursor(s, out, make) }
}

/// Opens a cursor over the events at positions `from_position .. from_position +
/// max_events` (the reference program's `poll_new_events`): positions that hold no event
/// count towards the window, so it may return fewer events while more follow.
///
/// Ownership: free `*out` with `evs_cursor_free`. Returns EVS_OK;
/// EVS_ERR_INVALID_ARGUMENT (NULL); EVS_ERR_NOT_FOUND (`from_position` past the end).
/// Thread safety: any thread; the cursor itself is single-thread.
#[no_mangle]
pub unsafe extern "C" fn evs_poll(
    s: *mut evs_store,
    from_position: u64,
    max_events: usize,
    out: *mut *mut evs_cursor,
) -> evs_status {
    // SAFETY: forwarded C API contract.
    unsafe {
        open_cursor(s, out, |st| {
            Ok(CursorKind(st.poll(from_position, max_events as u64)?))
        })
    }
}

/// The next event: EVS_OK with `*out` filled (a view valid until the next call on this
/// cursor or its free), EVS_END when there is none (now), or an error
/// (EVS_ERR_INVALID_ARGUMENT for NULL, EVS_ERR_CORRUPT, EVS_ERR_IO).
///
/// Thread safety: one thread at a time per cursor.
/// Ownership: `*out` is the caller's struct; the bytes it points to are the cursor's.
/// Returns EVS_OK, EVS_END or an error as above.
#[no_mangle]
pub unsafe extern "C" fn evs_cursor_next(c: *mut evs_cursor, out: *mut evs_event) -> evs_status {
    boundary(|| {
        // SAFETY: `c` is NULL or a live cursor used by this thread only.
        let c = unsafe { handle_mut(c, "cursor") }?;
        // SAFETY: NULL or the caller's struct, starting with its size.
        let out = unsafe { out_struct(out, "out") }?;
        if let Some(e) = c.batch.pending.take() {
            return Err(e);
        }
        match c.kind.next_with(evs_event::view)? {
            Some(v) => {
                out.write(v);
                Ok(EVS_OK)
            }
            None => Ok(EVS_END),
        }
    })
}

/// Frees a cursor. NULL is a no-op. Ownership: takes `c`.
/// Thread safety: not while another thread uses `c`. Returns nothing.
#[no_mangle]
pub unsafe extern "C" fn evs_cursor_free(c: *mut evs_cursor) {
    if !c.is_null() {
        // Cancellation held off and panics caught: the drop may close files (a cursor
        // holding the last reference to a closed store).
        super::cancel::quietly(|| {
            // SAFETY: `c` came from Box::into_raw in a cursor constructor and is freed once.
            drop(unsafe { Box::from_raw(c) });
        });
    }
}

/// The first position whose timestamp is after `timestamp_us`; the next position if none.
///
/// Returns EVS_OK or EVS_ERR_INVALID_ARGUMENT (NULL). Thread safety: any thread.
/// Ownership: `*out_position` is written only on success.
#[no_mangle]
pub unsafe extern "C" fn evs_position_at(
    s: *mut evs_store,
    timestamp_us: u64,
    out_position: *mut u64,
) -> evs_status {
    boundary(|| {
        // SAFETY: `s` is NULL or a live store.
        let store = unsafe { store_arg(s) }?;
        let out = out_arg(out_position, "out_position")?;
        write_out(out, store.bank.store().position_after(timestamp_us)?);
        Ok(EVS_OK)
    })
}

/// The stream's current version (that of its last event), or -1 when it does not exist,
/// as writers see it: a soft-deleted stream does not exist (-1) until it is appended to
/// again; a truncated stream, or one whose events a retention rule removed, keeps its
/// version.
///
/// Returns EVS_OK; EVS_ERR_INVALID_ARGUMENT (NULL, bad UTF-8, empty or > 1024 bytes);
/// EVS_ERR_STREAM_DELETED (hard-deleted); EVS_ERR_IO or EVS_ERR_CORRUPT (a read-only
/// store failed to take in a writer's new events); EVS_ERR_STALE (its log changed below
/// what it read: reopen). Ownership: `stream` stays the caller's. Thread safety: any
/// thread.
#[no_mangle]
pub unsafe extern "C" fn evs_stream_version(
    s: *mut evs_store,
    stream: *const c_char,
    out_version: *mut i64,
) -> evs_status {
    boundary(|| {
        // SAFETY: C API contract for each pointer.
        let store = unsafe { store_arg(s) }?;
        let stream = unsafe { str_arg(stream, "stream") }?;
        let out = out_arg(out_version, "out_version")?;
        let v = store.bank.store().stream_version(stream)?;
        write_out(out, v.map_or(-1, |v| v as i64));
        Ok(EVS_OK)
    })
}

/// Writes a snapshot of the indexes and the account projection now; `*out_position`
/// (may be NULL) gets the number of events it covers.
///
/// Returns EVS_OK; EVS_ERR_INVALID_ARGUMENT (NULL store); EVS_ERR_READ_ONLY; EVS_ERR_IO.
/// Ownership: `s` stays the caller's. Thread safety: any thread (appends wait while
/// the indexes are copied).
#[no_mangle]
pub unsafe extern "C" fn evs_snapshot(s: *mut evs_store, out_position: *mut u64) -> evs_status {
    boundary(|| {
        // SAFETY: `s` is NULL or a live store.
        let store = unsafe { store_arg(s) }?;
        let n = store.bank.store().snapshot()?;
        write_opt(out_position, n);
        Ok(EVS_OK)
    })
}
