//! Checking what comes in from C: pointers, strings, byte ranges. Every check fails with
//! `EVS_ERR_INVALID_ARGUMENT` and a message naming the argument.

use crate::error::{Error, ErrorKind, Result};
use std::ffi::{c_char, CStr};

/// A required NUL-terminated UTF-8 string.
///
/// # Safety
/// `p` is NULL or points to a NUL-terminated string that outlives `'a`.
#[inline(always)]
pub(crate) unsafe fn str_arg<'a>(p: *const c_char, name: &str) -> Result<&'a str> {
    if p.is_null() {
        return Err(refused(name, "is NULL"));
    }
    // SAFETY: the caller guarantees a NUL-terminated string (the C API contract).
    let c = unsafe { CStr::from_ptr(p) };
    // ASCII names (nearly all) without `str::from_utf8`: see `as_text`.
    crate::store::as_text(c.to_bytes()).ok_or_else(|| refused(name, "is not valid UTF-8"))
}

/// The error for argument `name` that `what`. Out of line and cold: the checks above are
/// inlined into every call of the C API, their messages are not.
#[cold]
#[inline(never)]
fn refused(name: &str, what: &str) -> Error {
    Error::invalid(format!("{name} {what}"))
}

/// `bytes_arg`'s errors, out of line as `refused`'s.
#[cold]
#[inline(never)]
fn bytes_refused(name: &str, len: usize, max: usize, null: bool) -> Error {
    if null {
        Error::invalid(format!("{name} is NULL but its length is {len}"))
    } else if len > max {
        Error::new(
            ErrorKind::TooLarge,
            format!("{name} is {len} bytes long; the limit is {max}"),
        )
    } else {
        Error::invalid(format!("{name}'s length {len} is impossible"))
    }
}

/// An optional string: NULL gives `None`.
///
/// # Safety
/// As for `str_arg`.
#[inline(always)]
pub(crate) unsafe fn opt_str_arg<'a>(p: *const c_char, name: &str) -> Result<Option<&'a str>> {
    if p.is_null() {
        return Ok(None);
    }
    // SAFETY: forwarded contract.
    unsafe { str_arg(p, name) }.map(Some)
}

/// A byte range of at most `max` bytes; the pointer may be NULL only when the length is
/// 0. The length is checked before any slice is made: a caller's wrong length must give
/// an error, never a slice over memory that is not there.
///
/// # Safety
/// `p` is NULL or points to `len` readable bytes that outlive `'a`.
#[inline(always)]
pub(crate) unsafe fn bytes_arg<'a>(
    p: *const u8,
    len: usize,
    max: usize,
    name: &str,
) -> Result<&'a [u8]> {
    if len == 0 {
        return Ok(&[]);
    }
    if p.is_null() || len > max || len > isize::MAX as usize {
        return Err(bytes_refused(name, len, max, p.is_null()));
    }
    // SAFETY: the caller guarantees `len` readable bytes at `p`; `len` is within the
    // limits just checked.
    Ok(unsafe { std::slice::from_raw_parts(p, len) })
}

/// An array of `count` (at most `max`) `T`s; NULL only when `count` is 0. The count is
/// checked before any slice is made.
///
/// # Safety
/// `p` is NULL or points to `count` readable, initialised `T`s that outlive `'a`.
pub(crate) unsafe fn array_arg<'a, T>(
    p: *const T,
    count: usize,
    max: usize,
    name: &str,
) -> Result<&'a [T]> {
    if count == 0 {
        return Ok(&[]);
    }
    if p.is_null() {
        return Err(Error::invalid(format!(
            "{name} is NULL but its count is {count}"
        )));
    }
    if count > max {
        return Err(Error::invalid(format!(
            "{name} has {count} entries; the limit is {max}"
        )));
    }
    if count
        .checked_mul(std::mem::size_of::<T>())
        .is_none_or(|b| b > isize::MAX as usize)
    {
        return Err(Error::invalid(format!(
            "{name}'s count {count} is impossible"
        )));
    }
    // SAFETY: the caller guarantees `count` readable T at `p`; the size was just checked.
    Ok(unsafe { std::slice::from_raw_parts(p, count) })
}

/// A required out-pointer.
pub(crate) fn out_arg<T>(p: *mut T, name: &str) -> Result<*mut T> {
    if p.is_null() {
        return Err(Error::invalid(format!("{name} is NULL")));
    }
    Ok(p)
}

/// A required handle.
///
/// # Safety
/// `p` is NULL or a live handle of this type, which outlives `'a`.
pub(crate) unsafe fn handle<'a, T>(p: *const T, name: &str) -> Result<&'a T> {
    // SAFETY: the caller guarantees a live handle or NULL.
    unsafe { p.as_ref() }.ok_or_else(|| Error::invalid(format!("{name} is NULL")))
}

/// A required mutable handle (single-thread objects like cursors).
///
/// # Safety
/// `p` is NULL or a live handle of this type, used by one thread at a time.
pub(crate) unsafe fn handle_mut<'a, T>(p: *mut T, name: &str) -> Result<&'a mut T> {
    // SAFETY: the caller guarantees a live handle or NULL, not shared across threads.
    unsafe { p.as_mut() }.ok_or_else(|| Error::invalid(format!("{name} is NULL")))
}

/// Writes `v` through an out-pointer that was checked non-NULL.
pub(crate) fn write_out<T>(p: *mut T, v: T) {
    // SAFETY: every caller passes a pointer checked by `out_arg`, which the C caller
    // promises points to writable memory of type T.
    unsafe { p.write(v) }
}

/// Writes through an optional out-pointer (NULL means "not wanted").
pub(crate) fn write_opt<T>(p: *mut T, v: T) {
    if !p.is_null() {
        write_out(p, v);
    }
}
