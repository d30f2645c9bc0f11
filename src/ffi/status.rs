//! Status codes, their names, the thread-local last-error message, and the boundary
//! every exported function passes through (panic catching, runtime, error recording).

use crate::error::{Error, ErrorKind};
use once_cell::sync::Lazy;
use std::cell::RefCell;
use std::ffi::{c_char, CString};
use std::panic::{catch_unwind, AssertUnwindSafe};

/// The result of every fallible function: `EVS_OK` (0), `EVS_END` (1), or a negative error.
pub type evs_status = i32;

/// Success.
pub const EVS_OK: evs_status = 0;
/// A cursor or poll has no more events (not an error).
pub const EVS_END: evs_status = 1;
/// NULL, bad UTF-8, empty id, out-of-range value.
pub const EVS_ERR_INVALID_ARGUMENT: evs_status = -1;
/// No such account / stream / position.
pub const EVS_ERR_NOT_FOUND: evs_status = -2;
/// The account already exists.
pub const EVS_ERR_ALREADY_EXISTS: evs_status = -3;
/// A stream is not at the version the append expected.
pub const EVS_ERR_WRONG_EXPECTED_VERSION: evs_status = -4;
/// A withdrawal or transfer past the balance.
pub const EVS_ERR_INSUFFICIENT_FUNDS: evs_status = -5;
/// An operation on a closed account.
pub const EVS_ERR_ACCOUNT_CLOSED: evs_status = -6;
/// A balance would leave the int64 range.
pub const EVS_ERR_OVERFLOW: evs_status = -7;
/// Another writer has the store open.
pub const EVS_ERR_LOCKED: evs_status = -8;
/// The log is damaged beyond a torn tail.
pub const EVS_ERR_CORRUPT: evs_status = -9;
/// The OS said no (disk full, permission, ...).
pub const EVS_ERR_IO: evs_status = -10;
/// An event or batch past the size limit.
pub const EVS_ERR_TOO_LARGE: evs_status = -11;
/// A write on a store opened read-only.
pub const EVS_ERR_READ_ONLY: evs_status = -12;
/// A transfer between accounts of different currencies.
pub const EVS_ERR_CURRENCY_MISMATCH: evs_status = -13;
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
        ErrorKind::Internal => EVS_ERR_INTERNAL,
    }
}

/// The global runtime every exported function runs on.
static RUNTIME: Lazy<tokio::runtime::Runtime> = Lazy::new(|| {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .thread_name("evstore-rt")
        .enable_time()
        .build()
        .expect("the evstore runtime starts")
});

thread_local! {
    static LAST_ERROR: RefCell<CString> = RefCell::new(CString::default());
}

pub(crate) fn set_last_error(message: &str) {
    let c = CString::new(message.replace('\0', "\\0")).unwrap_or_default();
    LAST_ERROR.with(|l| *l.borrow_mut() = c);
}

/// Runs an exported function's body: on the runtime, with panics caught, errors recorded.
pub(crate) fn boundary(f: impl FnOnce() -> Result<evs_status, Error>) -> evs_status {
    let outcome = catch_unwind(AssertUnwindSafe(|| {
        let rt = Lazy::force(&RUNTIME);
        rt.block_on(async move { f() })
    }));
    match outcome {
        Ok(Ok(status)) => status,
        Ok(Err(e)) => {
            set_last_error(&e.message);
            status_of(e.kind)
        }
        Err(panic) => {
            let what = panic
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| panic.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "unknown panic".into());
            set_last_error(&format!(
                "internal error in evstore (please report): {what}"
            ));
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
    LAST_ERROR.with(|l| l.borrow().as_ptr())
}

/// The library version, "0.1.0".
///
/// Ownership: static; do not free. Thread safety: any thread.
/// Returns a string (never NULL).
#[no_mangle]
pub extern "C" fn evs_version() -> *const c_char {
    concat!(env!("CARGO_PKG_VERSION"), "\0").as_ptr().cast()
}
