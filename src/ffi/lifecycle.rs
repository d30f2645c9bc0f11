//! Data that leaves, for C callers (docs/lifecycle.md): deleting a stream (soft or hard),
//! truncating one, and retention rules by count and by age on a stream or a category.
//! Each operation is an entry of the log with its own position, durable under the
//! store's fsync policy, idempotent with an id; every read obeys it once the call returns.

use super::args::{str_arg, write_opt};
use super::extensible::{extensible, input_array, opt_out_struct, out_struct};
use super::status::*;
use super::store::{evs_store, parse_expected, store_arg};
use crate::error::{Error, Result};
use crate::store::lifecycle::Rule;
use std::ffi::c_char;

/// `evs_delete_stream` flag: the stream does not exist (for readers and writers) until
/// it is appended to again; that append continues after its kept version.
pub const EVS_DELETE_SOFT: u32 = 0;
/// `evs_delete_stream` flag: a tombstone; every later read or write of the name is
/// EVS_ERR_STREAM_DELETED.
pub const EVS_DELETE_HARD: u32 = 1;
/// `evs_set_retention` / `evs_get_retention` flag: `target` is a category prefix (every
/// stream whose name starts with it; "" is every stream) rather than one stream.
pub const EVS_RETENTION_CATEGORY: u32 = 1;

/// A retention rule (caller-allocated: set `struct_size`, see `EVS_STRUCT_INIT`). 0 is
/// "no limit of that kind"; both 0 is no rule.
#[repr(C)]
pub struct evs_retention {
    /// sizeof(evs_retention) as the caller's header has it; the library never changes it.
    pub struct_size: usize,
    /// Keep the stream's last `max_count` versions: with version v, the events with a
    /// version <= v - max_count are removed.
    pub max_count: u64,
    /// Remove the events whose timestamp is older than now - max_age_us (now: the
    /// store's clock when a read runs, so events leave by age without any call).
    pub max_age_us: u64,
}

extensible!(evs_retention, max_count);

/// An optional 16-byte id from C: NULL or all zero is none.
///
/// # Safety
/// `id` is NULL or points to 16 readable bytes.
unsafe fn opt_id(id: *const u8) -> Option<[u8; 16]> {
    if id.is_null() {
        return None;
    }
    let mut v = [0u8; 16];
    // SAFETY: the caller passes 16 readable bytes (C API contract).
    unsafe { std::ptr::copy_nonoverlapping(id, v.as_mut_ptr(), 16) };
    (v != [0u8; 16]).then_some(v)
}

/// Refuses flag bits this library does not know.
fn check_flags(flags: u32, known: u32, name: &str) -> Result<()> {
    if flags & !known != 0 {
        return Err(Error::invalid(format!(
            "flags 0x{flags:x}: bits 0x{:x} are not {name} flags",
            flags & !known
        )));
    }
    Ok(())
}

/// Deletes `stream`: every event it has so far leaves every read now. `flags`:
/// EVS_DELETE_SOFT (the stream does not exist until it is appended to again:
/// evs_stream_version gives -1, an append expecting EVS_EXPECT_NO_STREAM or
/// EVS_EXPECT_ANY continues its versions after the kept one, EVS_EXPECT_EXISTS and the
/// old version fail) or EVS_DELETE_HARD (a tombstone: the name is refused from then on;
/// also of a soft-deleted stream, with EVS_EXPECT_ANY). `expected_version` as for appends
/// (EVS_EXPECT_ANY, EVS_EXPECT_EXISTS or the stream's version; EVS_EXPECT_NO_STREAM is
/// invalid). Checked in this order: hard-deleted, no such stream, expected version.
/// `id`: NULL or 16 bytes (all zero: none); a retry with the same id and the same delete
/// writes nothing and returns the first one's position. `*out_position` (may be NULL)
/// gets the position of the operation's entry in the log (it holds no event). Deleting
/// an account's stream (`account-<id>`) is refused while the account's balance is not
/// zero; afterwards the account is not found.
///
/// Returns EVS_OK; EVS_ERR_INVALID_ARGUMENT (NULL store or stream, bad UTF-8, an empty
/// or over 1024-byte name, bad expected_version or EVS_EXPECT_NO_STREAM, unknown flags,
/// a closed store); EVS_ERR_NOT_FOUND (the stream never had an event; for a soft delete
/// also: it is soft-deleted and not appended to since); EVS_ERR_WRONG_EXPECTED_VERSION
/// (the message and evs_last_error_detail name the actual version, -1 for none);
/// EVS_ERR_STREAM_DELETED (hard-deleted already); EVS_ERR_BALANCE_NOT_ZERO;
/// EVS_ERR_ALREADY_EXISTS (the id was given to another operation or an event; nothing
/// written); EVS_ERR_BUSY (a write with this id is still being made durable under
/// EVS_FSYNC_ALWAYS: retry); EVS_ERR_READ_ONLY; EVS_ERR_IO (nothing counts: a retry with
/// the id is safe). Thread safety: any thread. Ownership: `stream` and `id` stay the
/// caller's.
#[no_mangle]
pub unsafe extern "C" fn evs_delete_stream(
    s: *mut evs_store,
    stream: *const c_char,
    expected_version: i64,
    flags: u32,
    id: *const u8,
    out_position: *mut u64,
) -> evs_status {
    boundary(|| {
        // SAFETY: C API contract for each pointer.
        let store = unsafe { store_arg(s) }?;
        let stream = unsafe { str_arg(stream, "stream") }?;
        let expected = parse_expected(expected_version)?;
        check_flags(flags, EVS_DELETE_HARD, "EVS_DELETE_*")?;
        // SAFETY: NULL or 16 readable bytes (C API contract).
        let id = unsafe { opt_id(id) };
        let hard = flags & EVS_DELETE_HARD != 0;
        // Through the account domain (its projection caught up first).
        let p = store.bank.delete_stream(stream, expected, hard, id)?;
        write_opt(out_position, p);
        Ok(EVS_OK)
    })
}

/// Truncates `stream`: its events with a version below `before_version` leave every read
/// now; the rest read as before, versions unchanged. `before_version` is at most the
/// stream's version + 1 (which removes every event, as a soft delete does); truncating
/// below an earlier truncation removes nothing more and brings nothing back. `id` and
/// `*out_position` as for `evs_delete_stream`. Account streams cannot be truncated.
///
/// Returns EVS_OK; EVS_ERR_INVALID_ARGUMENT (NULL store or stream, bad UTF-8, an empty
/// or over 1024-byte name, `before_version` past the stream's version + 1, an account's
/// stream, a closed store); EVS_ERR_NOT_FOUND (the stream never had an event, or it is
/// soft-deleted and not appended to since); EVS_ERR_STREAM_DELETED;
/// EVS_ERR_ALREADY_EXISTS (the id was given to something else);
/// EVS_ERR_BUSY; EVS_ERR_READ_ONLY; EVS_ERR_IO. Thread safety: any thread. Ownership:
/// `stream` and `id` stay the caller's.
#[no_mangle]
pub unsafe extern "C" fn evs_truncate_stream(
    s: *mut evs_store,
    stream: *const c_char,
    before_version: u64,
    id: *const u8,
    out_position: *mut u64,
) -> evs_status {
    boundary(|| {
        // SAFETY: C API contract for each pointer.
        let store = unsafe { store_arg(s) }?;
        let stream = unsafe { str_arg(stream, "stream") }?;
        // SAFETY: NULL or 16 readable bytes (C API contract).
        let id = unsafe { opt_id(id) };
        let p = store
            .bank
            .store()
            .truncate_stream(stream, before_version, id)?;
        write_opt(out_position, p);
        Ok(EVS_OK)
    })
}

/// Sets the retention rule of stream `target` (`flags` 0) or of the category prefix
/// `target` (EVS_RETENTION_CATEGORY; "" is every stream); `rule` NULL or with both limits
/// 0 clears it. A stream's own rule wins over its categories', and the longest matching
/// prefix over shorter ones. The rule applies to the streams' past and future events at
/// once. Rules are entries of the log: a store and its copies carry them. `id` and
/// `*out_position` as for `evs_delete_stream`. A rule that would apply to account streams
/// (`account-...`, or a prefix of "account-") is refused.
///
/// Returns EVS_OK; EVS_ERR_INVALID_ARGUMENT (NULL store or target, bad UTF-8, an empty
/// stream name or a > 1024-byte target, unknown flags, a bad `rule->struct_size`, a
/// rule on account streams, a closed store); EVS_ERR_ALREADY_EXISTS (the id was given to
/// something else); EVS_ERR_BUSY; EVS_ERR_READ_ONLY; EVS_ERR_IO. Thread safety: any
/// thread. Ownership: `target`, `rule` and `id` stay the caller's.
#[no_mangle]
pub unsafe extern "C" fn evs_set_retention(
    s: *mut evs_store,
    target: *const c_char,
    flags: u32,
    rule: *const evs_retention,
    id: *const u8,
    out_position: *mut u64,
) -> evs_status {
    boundary(|| {
        // SAFETY: C API contract for each pointer.
        let store = unsafe { store_arg(s) }?;
        let target = unsafe { str_arg(target, "target") }?;
        check_flags(flags, EVS_RETENTION_CATEGORY, "EVS_RETENTION_*")?;
        let rule = if rule.is_null() {
            Rule::default()
        } else {
            // SAFETY: one caller struct starting with its struct_size (C API contract).
            let r = unsafe { input_array(rule, 1, 1, "rule") }?;
            Rule {
                max_count: r[0].max_count,
                max_age_us: r[0].max_age_us,
            }
        };
        // SAFETY: NULL or 16 readable bytes (C API contract).
        let id = unsafe { opt_id(id) };
        let category = flags & EVS_RETENTION_CATEGORY != 0;
        let p = store
            .bank
            .store()
            .set_retention(target, category, rule, id)?;
        write_opt(out_position, p);
        Ok(EVS_OK)
    })
}

/// Reads a retention rule into `*out`: with `flags` 0 the rule in force for stream
/// `name` (its own, else its longest matching category's); with EVS_RETENTION_CATEGORY
/// the rule set on exactly the prefix `name`. Zeros when there is none.
///
/// Returns EVS_OK; EVS_ERR_INVALID_ARGUMENT (NULL store, name or out, bad UTF-8, an
/// empty stream name or a name over 1024 bytes, unknown flags, a bad
/// `out->struct_size`); on a read-only store, EVS_ERR_IO or EVS_ERR_CORRUPT (it failed to
/// take in a writer's new entries) and EVS_ERR_STALE (its log changed below what it
/// read: reopen).
/// Thread safety: any thread. Ownership: `*out` is the caller's struct, filled only on
/// success.
#[no_mangle]
pub unsafe extern "C" fn evs_get_retention(
    s: *mut evs_store,
    name: *const c_char,
    flags: u32,
    out: *mut evs_retention,
) -> evs_status {
    boundary(|| {
        // SAFETY: C API contract for each pointer.
        let store = unsafe { store_arg(s) }?;
        let name = unsafe { str_arg(name, "name") }?;
        check_flags(flags, EVS_RETENTION_CATEGORY, "EVS_RETENTION_*")?;
        // SAFETY: NULL or the caller's struct, starting with its size.
        let out = unsafe { out_struct(out, "out") }?;
        let category = flags & EVS_RETENTION_CATEGORY != 0;
        let rule = store
            .bank
            .store()
            .retention(name, category)?
            .unwrap_or_default();
        out.write(evs_retention {
            struct_size: std::mem::size_of::<evs_retention>(),
            max_count: rule.max_count,
            max_age_us: rule.max_age_us,
        });
        Ok(EVS_OK)
    })
}

/// What `evs_compact` did (caller-allocated: set `struct_size`, see `EVS_STRUCT_INIT`).
#[repr(C)]
pub struct evs_compact_info {
    /// sizeof(evs_compact_info) as the caller's header has it; the library never changes it.
    pub struct_size: usize,
    /// File engine: sealed segments rewritten; PostgreSQL: rows of events (chunks)
    /// deleted or rewritten.
    pub segments_rewritten: u64,
    /// Their bytes before the compaction...
    pub bytes_before: u64,
    /// ... and after it.
    pub bytes_after: u64,
    /// Removed events whose bytes (records, rows) are gone now.
    pub events_erased: u64,
    /// How long it took, microseconds.
    pub duration_us: u64,
}

extensible!(evs_compact_info, segments_rewritten);

/// Compacts now, blocking until done. File engine: every segment holding a removed
/// event's record is rewritten without it (the active segment is sealed first when it
/// holds one, so that once this returns no segment file holds a removed event; the
/// segments' index files are rebuilt and a snapshot is written), throttled by
/// `evs_options_set_compaction`'s budget. PostgreSQL: deletes the rows of the events
/// that retention rules by age have removed (deletes and truncations delete theirs at
/// once). Nothing to do is EVS_OK with zeros. Appends, reads and open cursors go on
/// meanwhile; a second `evs_compact` waits for the first. An `evs_close` begun meanwhile
/// stops it at its next record (file engine) and waits only for that: it returns EVS_OK
/// with what it did, each segment left whole as it was or as rewritten.
/// `info` (may be NULL) gets what was done.
///
/// Returns EVS_OK; EVS_ERR_INVALID_ARGUMENT (NULL store, a bad `info->struct_size`, a
/// closed store); EVS_ERR_READ_ONLY (a read-only handle); EVS_ERR_CORRUPT (a record of a
/// segment to rewrite failed its checksum: that segment is left as it was); EVS_ERR_IO
/// (a system call failed, or the PostgreSQL server refused a query: what was compacted
/// before stays compacted, the rest is as it was; the next call resumes);
/// EVS_ERR_UNAVAILABLE (PostgreSQL: the connection was lost). Thread safety: any
/// thread. Ownership: `*info` is the caller's struct, filled only on success.
#[no_mangle]
pub unsafe extern "C" fn evs_compact(s: *mut evs_store, info: *mut evs_compact_info) -> evs_status {
    boundary(|| {
        // SAFETY: `s` is NULL or a live store (C API contract).
        let store = unsafe { store_arg(s) }?;
        // SAFETY: NULL or the caller's struct, starting with its size.
        let out = unsafe { opt_out_struct(info, "info") }?;
        let done = store.bank.store().compact()?;
        if let Some(out) = out {
            out.write(evs_compact_info {
                struct_size: std::mem::size_of::<evs_compact_info>(),
                segments_rewritten: done.segments_rewritten,
                bytes_before: done.bytes_before,
                bytes_after: done.bytes_after,
                events_erased: done.events_erased,
                duration_us: done.duration.as_micros().min(u64::MAX as u128) as u64,
            });
        }
        Ok(EVS_OK)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_flag_bits_are_named() {
        let e = check_flags(6, EVS_DELETE_HARD, "EVS_DELETE_*").unwrap_err();
        assert!(e.message.contains("0x6"), "{}", e.message);
        check_flags(1, EVS_DELETE_HARD, "EVS_DELETE_*").unwrap();
    }

    #[test]
    fn a_null_or_zero_id_is_none() {
        // SAFETY: NULL, or 16 readable bytes.
        unsafe {
            assert_eq!(opt_id(std::ptr::null()), None);
            assert_eq!(opt_id([0u8; 16].as_ptr()), None);
            assert_eq!(opt_id([3u8; 16].as_ptr()), Some([3u8; 16]));
        }
    }
}
