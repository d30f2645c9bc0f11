//! Status codes, their names, the thread-local last-error message, and the boundary
//! every exported function passes through (panic catching, error recording).

use super::extensible::{extensible, out_struct};
use crate::error::{Error, ErrorDetail, ErrorKind};
use std::cell::{Cell, RefCell};
use std::ffi::{c_char, CString};
use std::panic::{catch_unwind, AssertUnwindSafe};

/// The ABI version: it changes only with a deliberate break, and the soname
/// (`libevstore.so.<EVS_ABI_VERSION>`) with it; every change within one ABI version is
/// additive.
pub const EVS_ABI_VERSION: i32 = 1;
/// The library version this header belongs to: major (= the ABI version), minor (new
/// functions), patch (fixes).
pub const EVS_VERSION_MAJOR: i32 = 1;
pub const EVS_VERSION_MINOR: i32 = 1;
pub const EVS_VERSION_PATCH: i32 = 0;
/// 1000000 * EVS_VERSION_MAJOR + 1000 * EVS_VERSION_MINOR + EVS_VERSION_PATCH; compare it
/// with `evs_version_number()` (sqlite3.h's scheme).
pub const EVS_VERSION_NUMBER: i32 = 1001000;

/// The result of every fallible function: `EVS_OK` (0), `EVS_END` (1), or a negative error.
pub type evs_status = i32;

/// Success.
pub const EVS_OK: evs_status = 0;
/// A cursor or poll has no more events (not an error).
pub const EVS_END: evs_status = 1;
/// NULL, bad UTF-8, empty id, out-of-range value; also any call on a store once
/// `evs_close` has begun, and on a parent's handle in a forked child.
pub const EVS_ERR_INVALID_ARGUMENT: evs_status = -1;
/// No such account / stream / position; a read-only open of a missing store.
pub const EVS_ERR_NOT_FOUND: evs_status = -2;
/// Something is there already. `evs_account_open`: the account exists. An append
/// (`evs_append`, `evs_append_multi`): an event id it carries is stored already with
/// other content (another stream, type, schema version, payload or metadata: an id names
/// one event), or some of its ids are stored and some not (a retry must repeat the whole
/// append). Nothing is written; `evs_last_error_detail` gives the stored event's position.
pub const EVS_ERR_ALREADY_EXISTS: evs_status = -3;
/// A stream is not at the version the append expected (also an account operation whose
/// stream another writer appended to meanwhile); `evs_last_error_detail` gives the
/// stream's actual version.
pub const EVS_ERR_WRONG_EXPECTED_VERSION: evs_status = -4;
/// A withdrawal or transfer past the balance.
pub const EVS_ERR_INSUFFICIENT_FUNDS: evs_status = -5;
/// An operation on a closed account.
pub const EVS_ERR_ACCOUNT_CLOSED: evs_status = -6;
/// A balance would leave the int64 range.
pub const EVS_ERR_OVERFLOW: evs_status = -7;
/// Another writer has the store open.
pub const EVS_ERR_LOCKED: evs_status = -8;
/// The log is damaged beyond a torn tail (`evs_last_error_detail` gives the damaged
/// event's position where it is known); on PostgreSQL, the store's tables are not what
/// this library wrote or reads (a schema of a newer library, positions not dense).
pub const EVS_ERR_CORRUPT: evs_status = -9;
/// The OS said no (disk full, permission, ...); on PostgreSQL, the server could not be
/// reached or refused a query.
pub const EVS_ERR_IO: evs_status = -10;
/// An event or an append past a size limit: its bytes, its number of events, its number
/// of streams (`evs_append_multi`), or more than one segment holds.
pub const EVS_ERR_TOO_LARGE: evs_status = -11;
/// A write on a store opened read-only; a read-only open of a PostgreSQL store whose
/// schema an older version wrote (one writable open migrates it).
pub const EVS_ERR_READ_ONLY: evs_status = -12;
/// A transfer between accounts of different currencies.
pub const EVS_ERR_CURRENCY_MISMATCH: evs_status = -13;
/// In use; try again later: `evs_shutdown` while a store is open (or being opened or
/// closed), or an append with an event id whose first append is still waiting for its
/// fdatasync.
pub const EVS_ERR_BUSY: evs_status = -14;
/// A server cannot be reached now, or did not answer within its bound (a PostgreSQL
/// store: `connect_timeout`, `timeout`; docs/postgres.md "Timeouts"); retrying may
/// succeed. Any call of a PostgreSQL store that talks to the server can return it.
pub const EVS_ERR_UNAVAILABLE: evs_status = -15;
/// A hard-deleted (tombstoned) stream: every read and write of its name (version 1.1).
pub const EVS_ERR_STREAM_DELETED: evs_status = -16;
/// Deleting an account's stream while the account's balance is not zero (version 1.1).
pub const EVS_ERR_BALANCE_NOT_ZERO: evs_status = -17;
/// A read-only store's log changed below what it had read (records it handed out or
/// counted are gone or different, as when the writer's fdatasync failed and its recovery
/// dropped them): every later call on it fails; close it and open it again (version 1.1).
pub const EVS_ERR_STALE: evs_status = -18;
/// A directory that an `evs_backup` or `evs_restore` began writing and did not finish
/// (its `BACKUP` marker says so, or is damaged): `evs_open`, `evs_restore` and
/// `evs_verify_backup` refuse it; take the backup (or the restore) again (version 1.1).
pub const EVS_ERR_INCOMPLETE: evs_status = -19;
/// A bug in evstore (a caught panic).
pub const EVS_ERR_INTERNAL: evs_status = -99;

pub(crate) fn status_of(kind: ErrorKind) -> evs_status {
    match kind {
        ErrorKind::InvalidArgument => EVS_ERR_INVALID_ARGUMENT,
        ErrorKind::NotFound => EVS_ERR_NOT_FOUND,
        ErrorKind::AlreadyExists => EVS_ERR_ALREADY_EXISTS,
        ErrorKind::WrongExpectedVersion => EVS_ERR_WRONG_EXPECTED_VERSION,
        ErrorKind::InsufficientFunds => EVS_ERR_INSUFFICIENT_FUNDS,
        ErrorKind::AccountClosed => EVS_ERR_ACCOUNT_CLOSED,
        ErrorKind::Overflow => EVS_ERR_OVERFLOW,
        ErrorKind::Locked => EVS_ERR_LOCKED,
        ErrorKind::Corrupt => EVS_ERR_CORRUPT,
        ErrorKind::Io => EVS_ERR_IO,
        ErrorKind::TooLarge => EVS_ERR_TOO_LARGE,
        ErrorKind::ReadOnly => EVS_ERR_READ_ONLY,
        ErrorKind::CurrencyMismatch => EVS_ERR_CURRENCY_MISMATCH,
        ErrorKind::Busy => EVS_ERR_BUSY,
        ErrorKind::Unavailable => EVS_ERR_UNAVAILABLE,
        ErrorKind::StreamDeleted => EVS_ERR_STREAM_DELETED,
        ErrorKind::BalanceNotZero => EVS_ERR_BALANCE_NOT_ZERO,
        ErrorKind::Stale => EVS_ERR_STALE,
        ErrorKind::Incomplete => EVS_ERR_INCOMPLETE,
        ErrorKind::Internal => EVS_ERR_INTERNAL,
    }
}

thread_local! {
    static LAST_ERROR: RefCell<CString> = RefCell::new(CString::default());
    static LAST_DETAIL: Cell<(evs_status, ErrorDetail)> = Cell::new((EVS_OK, ErrorDetail::default()));
}

/// Records the calling thread's last error: its status, message and detail. During
/// thread exit (a C caller's pthread key destructor, after Rust's thread-locals are gone)
/// there is nowhere to put them: they are dropped, the status still says what happened.
/// Never panics.
pub(crate) fn record_error(code: evs_status, message: &str, detail: ErrorDetail) {
    let c = CString::new(message.replace('\0', "\\0")).unwrap_or_default();
    let _ = LAST_ERROR.try_with(|l| {
        if let Ok(mut slot) = l.try_borrow_mut() {
            *slot = c;
        }
    });
    let _ = LAST_DETAIL.try_with(|d| d.set((code, detail)));
}

/// Records an error the library raised (see `record_error`); returns its status.
pub(crate) fn record(e: &Error) -> evs_status {
    let code = status_of(e.kind);
    record_error(code, &e.message, e.detail());
    code
}

/// Where the last failing call on a thread points, beside its message
/// (`evs_last_error_detail`; caller-allocated: set `struct_size`, see `EVS_STRUCT_INIT`).
/// Each field has a "none" value for errors it does not apply to.
#[repr(C)]
pub struct evs_error_detail {
    /// sizeof(evs_error_detail) as the caller's header has it; never changed.
    pub struct_size: usize,
    /// The status the call returned; EVS_OK when no call on this thread has failed.
    pub code: evs_status,
    /// EVS_ERR_WRONG_EXPECTED_VERSION: the version of the stream's last event when the
    /// append (or `evs_delete_stream`) was refused, or -1 when the stream did not exist
    /// (never written, or soft-deleted and not appended to since). -1 for other errors.
    pub actual_version: i64,
    /// `evs_append_multi`: the index in `appends` of the part the error is about (the
    /// stream whose expected version failed, the part of an event id stored before).
    /// -1 for every other call and error.
    pub part_index: i64,
    /// EVS_ERR_CORRUPT: the position of the damaged event, where the call knows it
    /// (reads, cursors, subscriptions; an open decoding a record). EVS_ERR_ALREADY_EXISTS
    /// from an append or a lifecycle call (`evs_delete_stream`...): the position of the
    /// stored event or lifecycle entry whose id the call carries. UINT64_MAX otherwise.
    pub position: u64,
}

extensible!(evs_error_detail, code);

/// Fills `*out` with the detail of the last failing call on the calling thread (the one
/// `evs_last_error_message` describes): its status and, where they apply, the stream's
/// actual version, the failing part of `evs_append_multi` and the position of the event
/// concerned (see `evs_error_detail`). When no call on this thread has failed: `code`
/// EVS_OK and every other field "none". Added in version 1.1 (check
/// `evs_version_number() >= 1001000` before calling it from a program built against an
/// older library).
///
/// Ownership: `*out` is the caller's struct, written only on success. Thread safety: any
/// thread; each thread has its own detail. Returns EVS_OK, or EVS_ERR_INVALID_ARGUMENT
/// (NULL `out`, a bad `out->struct_size`), which, as any failing call, replaces the
/// detail asked for with its own.
#[no_mangle]
pub unsafe extern "C" fn evs_last_error_detail(out: *mut evs_error_detail) -> evs_status {
    boundary(|| {
        // SAFETY: NULL or the caller's struct, starting with its size.
        let out = unsafe { out_struct(out, "out") }?;
        let (code, d) = LAST_DETAIL
            .try_with(Cell::get)
            .unwrap_or((EVS_OK, ErrorDetail::default()));
        let actual_version = match d.actual_version {
            Some(Some(v)) => i64::try_from(v).unwrap_or(i64::MAX),
            Some(None) | None => -1,
        };
        out.write(evs_error_detail {
            struct_size: std::mem::size_of::<evs_error_detail>(),
            code,
            actual_version,
            part_index: d.part_index.map_or(-1, |p| p as i64),
            position: d.position.unwrap_or(u64::MAX),
        });
        Ok(EVS_OK)
    })
}

/// A panic's payload as text, dropping the payload without letting a panic in its
/// `Drop` escape.
pub(crate) fn panic_message(panic: Box<dyn std::any::Any + Send>) -> String {
    let what = panic
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| panic.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "unknown panic".into());
    if let Err(again) = catch_unwind(AssertUnwindSafe(move || drop(panic))) {
        std::mem::forget(again);
    }
    what
}

/// Runs an exported function's body with panics caught and errors recorded, all inside
/// the boundary: nothing it does can unwind into C or abort the process, and a
/// `pthread_cancel` of the calling thread waits until it has returned (see `cancel`).
pub(crate) fn boundary(f: impl FnOnce() -> Result<evs_status, Error>) -> evs_status {
    let _held = super::cancel::hold();
    let outcome = catch_unwind(AssertUnwindSafe(|| match f() {
        Ok(status) => status,
        Err(e) => record(&e),
    }));
    match outcome {
        Ok(status) => status,
        Err(panic) => {
            let recorded = catch_unwind(AssertUnwindSafe(|| {
                let what = panic_message(panic);
                record_error(
                    EVS_ERR_INTERNAL,
                    &format!("internal error in evstore (please report): {what}"),
                    ErrorDetail::default(),
                );
            }));
            if let Err(again) = recorded {
                std::mem::forget(again);
            }
            EVS_ERR_INTERNAL
        }
    }
}

/// The name of a status code, e.g. "EVS_ERR_IO"; "EVS_UNKNOWN_STATUS" for other values.
///
/// Ownership: the string is static; do not free it. Thread safety: any thread.
/// Returns a name for every value (never NULL).
#[no_mangle]
pub extern "C" fn evs_status_name(s: evs_status) -> *const c_char {
    let name: &'static [u8] = match s {
        EVS_OK => b"EVS_OK\0",
        EVS_END => b"EVS_END\0",
        EVS_ERR_INVALID_ARGUMENT => b"EVS_ERR_INVALID_ARGUMENT\0",
        EVS_ERR_NOT_FOUND => b"EVS_ERR_NOT_FOUND\0",
        EVS_ERR_ALREADY_EXISTS => b"EVS_ERR_ALREADY_EXISTS\0",
        EVS_ERR_WRONG_EXPECTED_VERSION => b"EVS_ERR_WRONG_EXPECTED_VERSION\0",
        EVS_ERR_INSUFFICIENT_FUNDS => b"EVS_ERR_INSUFFICIENT_FUNDS\0",
        EVS_ERR_ACCOUNT_CLOSED => b"EVS_ERR_ACCOUNT_CLOSED\0",
        EVS_ERR_OVERFLOW => b"EVS_ERR_OVERFLOW\0",
        EVS_ERR_LOCKED => b"EVS_ERR_LOCKED\0",
        EVS_ERR_CORRUPT => b"EVS_ERR_CORRUPT\0",
        EVS_ERR_IO => b"EVS_ERR_IO\0",
        EVS_ERR_TOO_LARGE => b"EVS_ERR_TOO_LARGE\0",
        EVS_ERR_READ_ONLY => b"EVS_ERR_READ_ONLY\0",
        EVS_ERR_CURRENCY_MISMATCH => b"EVS_ERR_CURRENCY_MISMATCH\0",
        EVS_ERR_BUSY => b"EVS_ERR_BUSY\0",
        EVS_ERR_UNAVAILABLE => b"EVS_ERR_UNAVAILABLE\0",
        EVS_ERR_STREAM_DELETED => b"EVS_ERR_STREAM_DELETED\0",
        EVS_ERR_BALANCE_NOT_ZERO => b"EVS_ERR_BALANCE_NOT_ZERO\0",
        EVS_ERR_STALE => b"EVS_ERR_STALE\0",
        EVS_ERR_INCOMPLETE => b"EVS_ERR_INCOMPLETE\0",
        EVS_ERR_INTERNAL => b"EVS_ERR_INTERNAL\0",
        _ => b"EVS_UNKNOWN_STATUS\0",
    };
    name.as_ptr().cast()
}

/// A sentence about the last failing call on the calling thread; "" when none has failed.
///
/// Ownership: owned by the library, valid until the next failing call on this thread;
/// never NULL; do not free. Thread safety: each thread has its own message.
/// Returns a string (never NULL).
#[no_mangle]
pub extern "C" fn evs_last_error_message() -> *const c_char {
    let empty: *const c_char = c"".as_ptr();
    LAST_ERROR
        .try_with(|l| l.try_borrow().map_or(empty, |m| m.as_ptr()))
        .unwrap_or(empty)
}

/// The library version as text, e.g. "1.1.0" (`EVS_VERSION_MAJOR.MINOR.PATCH`).
///
/// Ownership: static; do not free. Thread safety: any thread.
/// Returns a string (never NULL).
#[no_mangle]
pub extern "C" fn evs_version() -> *const c_char {
    concat!(env!("CARGO_PKG_VERSION"), "\0").as_ptr().cast()
}

/// The library's `EVS_VERSION_NUMBER` (1000000 * major + 1000 * minor + patch), to detect
/// skew between the header a program was compiled with and the library it runs with:
/// `evs_version_number() / 1000000 == EVS_VERSION_MAJOR` must hold, and
/// `evs_version_number() >= EVS_VERSION_NUMBER` when the program uses functions added in
/// its header's minor version.
///
/// Ownership: none. Thread safety: any thread. Returns the number (never fails).
#[no_mangle]
pub extern "C" fn evs_version_number() -> i32 {
    EVS_VERSION_NUMBER
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_version_macros_are_the_crate_version() {
        let part = |s: &str| s.parse::<i32>().unwrap();
        assert_eq!(EVS_VERSION_MAJOR, part(env!("CARGO_PKG_VERSION_MAJOR")));
        assert_eq!(EVS_VERSION_MINOR, part(env!("CARGO_PKG_VERSION_MINOR")));
        assert_eq!(EVS_VERSION_PATCH, part(env!("CARGO_PKG_VERSION_PATCH")));
        assert_eq!(
            EVS_VERSION_NUMBER,
            EVS_VERSION_MAJOR * 1_000_000 + EVS_VERSION_MINOR * 1000 + EVS_VERSION_PATCH
        );
        assert_eq!(EVS_ABI_VERSION, EVS_VERSION_MAJOR);
    }

    #[test]
    fn the_last_error_survives_no_thread_local_and_is_never_null() {
        record_error(
            EVS_ERR_IO,
            "a message with a \0 inside",
            ErrorDetail::default(),
        );
        // SAFETY: evs_last_error_message returns a NUL-terminated string.
        let m = unsafe { std::ffi::CStr::from_ptr(evs_last_error_message()) };
        assert_eq!(m.to_str().unwrap(), "a message with a \\0 inside");
    }
}
