//! Reads of the C API version 1: one stream backward, a category, one event by position,
//! and the list of streams.

use super::args::{handle_mut, out_arg, str_arg, write_out};
use super::extensible::{extensible, out_struct};
use super::status::*;
use super::store::{evs_cursor, evs_event, evs_store, open_cursor, store_arg, CursorKind};
use crate::store::{Event, StreamInfo};
use std::ffi::c_char;

/// Opens a cursor over one stream from `from_version` (inclusive; UINT64_MAX or past
/// its end: its last event) down to version 0: "the last N events of a stream" is this
/// cursor read N times. It does not see later appends.
///
/// Ownership: free `*out` with `evs_cursor_free`. Returns EVS_OK;
/// EVS_ERR_INVALID_ARGUMENT (NULL, bad UTF-8, empty or > 1024-byte name);
/// EVS_ERR_NOT_FOUND (no such stream, or no event of it left); EVS_ERR_STREAM_DELETED
/// (hard-deleted); EVS_ERR_IO or EVS_ERR_CORRUPT (a read-only store failed to take in a
/// writer's new events); EVS_ERR_STALE (its log changed below what it read: reopen).
/// Thread safety: any thread; the cursor itself is single-thread.
#[no_mangle]
pub unsafe extern "C" fn evs_read_stream_backward(
    s: *mut evs_store,
    stream: *const c_char,
    from_version: u64,
    out: *mut *mut evs_cursor,
) -> evs_status {
    let make = |st: &std::sync::Arc<crate::store::Store>| {
        // SAFETY: `stream` is NULL or a NUL-terminated string (C API contract).
        let stream = unsafe { str_arg(stream, "stream") }?;
        Ok(CursorKind(st.read_stream_backward(stream, from_version)?))
    };
    // SAFETY: forwarded C API contract.
    unsafe { open_cursor(s, out, make) }
}

/// Opens a cursor over the events of every stream whose name starts with `stream_prefix`
/// (a category, e.g. "account-"), from global position `from_position` on, in position
/// order (the positions are those of the global log, so they have gaps). It sees events
/// appended while it runs, also to streams created after it was opened: EVS_END means
/// "no more now". Events with no stream are never in a category.
///
/// Ownership: free `*out` with `evs_cursor_free`. Returns EVS_OK;
/// EVS_ERR_INVALID_ARGUMENT (NULL, bad UTF-8, empty or > 1024-byte prefix);
/// EVS_ERR_NOT_FOUND (`from_position` past the next position). Thread safety: any
/// thread; the cursor itself is single-thread.
#[no_mangle]
pub unsafe extern "C" fn evs_read_category(
    s: *mut evs_store,
    stream_prefix: *const c_char,
    from_position: u64,
    out: *mut *mut evs_cursor,
) -> evs_status {
    let make = |st: &std::sync::Arc<crate::store::Store>| {
        // SAFETY: `stream_prefix` is NULL or a NUL-terminated string (C API contract).
        let prefix = unsafe { str_arg(stream_prefix, "stream_prefix") }?;
        Ok(CursorKind(st.read_category(prefix, from_position)?))
    };
    // SAFETY: forwarded C API contract.
    unsafe { open_cursor(s, out, make) }
}

/// One event read by `evs_read_event` (opaque): it owns the bytes its view points to.
pub struct evs_event_data {
    event: Event,
}

/// Reads the event at `position`. `*out` (the caller's struct; set its `struct_size`) is
/// filled with a view of it whose pointers stay valid until `*out_data` is freed.
///
/// Ownership: `*out_data` belongs to the caller, who frees it with
/// `evs_event_data_free`; both outputs are written only on success. Thread safety: any
/// thread. Returns EVS_OK; EVS_ERR_INVALID_ARGUMENT (NULL, bad `out->struct_size`);
/// EVS_ERR_NOT_FOUND (no event at `position`: past the end, removed, or a lifecycle
/// entry, the message says which); EVS_ERR_CORRUPT; EVS_ERR_IO.
#[no_mangle]
pub unsafe extern "C" fn evs_read_event(
    s: *mut evs_store,
    position: u64,
    out: *mut evs_event,
    out_data: *mut *mut evs_event_data,
) -> evs_status {
    boundary(|| {
        // SAFETY: C API contract for each pointer.
        let store = unsafe { store_arg(s) }?;
        let out = unsafe { out_struct(out, "out") }?;
        let out_data = out_arg(out_data, "out_data")?;
        let st = store.bank.store();
        if st.options().read_only {
            st.refresh()?;
        }
        let data = Box::new(evs_event_data {
            event: st.read_event(position)?,
        });
        // The view points into the box, which does not move until it is freed.
        out.write(evs_event::view(&data.event.as_ref()));
        write_out(out_data, Box::into_raw(data));
        Ok(EVS_OK)
    })
}

/// Frees an event read by `evs_read_event`; views of it become invalid. NULL is a no-op.
/// Ownership: takes `data`. Thread safety: not while another thread uses its view.
/// Returns nothing.
#[no_mangle]
pub unsafe extern "C" fn evs_event_data_free(data: *mut evs_event_data) {
    if !data.is_null() {
        // Like every export: cancellation held off, panics caught (`cancel::quietly`).
        super::cancel::quietly(|| {
            // SAFETY: `data` came from Box::into_raw in evs_read_event and is freed once.
            drop(unsafe { Box::from_raw(data) });
        });
    }
}

/// A stream as `evs_stream_list_next` reports it: a view valid until the next call on
/// the list (caller-allocated: set `struct_size`, see `EVS_STRUCT_INIT`).
#[repr(C)]
pub struct evs_stream_info {
    /// sizeof(evs_stream_info) as the caller's header has it; never changed.
    pub struct_size: usize,
    /// Not NUL-terminated: use `name_len`.
    pub name: *const c_char,
    pub name_len: usize,
    /// The version of its last event (its event count minus one).
    pub version: u64,
    /// The global position of its first event (streams are listed in that order).
    pub first_position: u64,
}

extensible!(evs_stream_info, name);

/// The streams of a store (opaque), from `evs_list_streams`. Single-thread.
pub struct evs_stream_list {
    streams: Vec<StreamInfo>,
    next: usize,
}

/// Lists every stream of the store that has an event left, as it is now, in creation
/// order (the order of their first events), with its version and the position of its
/// first event left. The list is a copy: streams created later are not in
/// it; its memory is proportional to the number of streams.
///
/// Ownership: free `*out` with `evs_stream_list_free`. Returns EVS_OK;
/// EVS_ERR_INVALID_ARGUMENT (NULL); EVS_ERR_IO or EVS_ERR_CORRUPT (a read-only store
/// failed to take in a writer's new events); EVS_ERR_STALE (its log changed below what
/// it read: reopen). Thread safety: any thread; the list itself
/// is single-thread.
#[no_mangle]
pub unsafe extern "C" fn evs_list_streams(
    s: *mut evs_store,
    out: *mut *mut evs_stream_list,
) -> evs_status {
    boundary(|| {
        // SAFETY: `s` is NULL or a live store.
        let store = unsafe { store_arg(s) }?;
        let out = out_arg(out, "out")?;
        let streams = store.bank.store().list_streams()?;
        write_out(
            out,
            Box::into_raw(Box::new(evs_stream_list { streams, next: 0 })),
        );
        Ok(EVS_OK)
    })
}

/// The next stream of the list: EVS_OK with `*out` filled (a view valid until the next
/// call on `list` or its free), or EVS_END after the last one.
///
/// Ownership: `*out` is the caller's struct; the name it points to is the list's.
/// Thread safety: one thread at a time per list. Returns EVS_OK, EVS_END, or
/// EVS_ERR_INVALID_ARGUMENT (NULL, bad `out->struct_size`).
#[no_mangle]
pub unsafe extern "C" fn evs_stream_list_next(
    list: *mut evs_stream_list,
    out: *mut evs_stream_info,
) -> evs_status {
    boundary(|| {
        // SAFETY: `list` is NULL or a live list used by this thread only.
        let list = unsafe { handle_mut(list, "list") }?;
        // SAFETY: NULL or the caller's struct, starting with its size.
        let out = unsafe { out_struct(out, "out") }?;
        let Some(info) = list.streams.get(list.next) else {
            return Ok(EVS_END);
        };
        list.next += 1;
        out.write(evs_stream_info {
            struct_size: std::mem::size_of::<evs_stream_info>(),
            name: info.name.as_ptr().cast(),
            name_len: info.name.len(),
            version: info.version,
            first_position: info.first_position,
        });
        Ok(EVS_OK)
    })
}

/// Frees a stream list. NULL is a no-op. Ownership: takes `list`.
/// Thread safety: not while another thread uses `list`. Returns nothing.
#[no_mangle]
pub unsafe extern "C" fn evs_stream_list_free(list: *mut evs_stream_list) {
    if !list.is_null() {
        // Like every export: cancellation held off, panics caught (`cancel::quietly`).
        super::cancel::quietly(|| {
            // SAFETY: `list` came from Box::into_raw in evs_list_streams and is freed once.
            drop(unsafe { Box::from_raw(list) });
        });
    }
}
