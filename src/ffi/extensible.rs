//! Caller-allocated structs that can grow without breaking old programs. Each starts with
//! `size_t struct_size`, which the caller sets to the `sizeof` its header gave it
//! (`EVS_STRUCT_INIT(type)`). The library reads and writes only the first `struct_size`
//! bytes: a field an older program does not have reads as zero and is never written; a
//! newer program's fields that this library does not know must be zero in what it passes
//! in (they would be ignored otherwise) and are left untouched in what it gets back.

use crate::error::{Error, Result};
use std::fmt::Display;
use std::mem::{size_of, MaybeUninit};

/// The largest `struct_size` accepted: far past any struct of this API, and small enough
/// that a garbage value is refused instead of read through.
const MAX_STRUCT_SIZE: usize = 4096;

/// A `#[repr(C)]` struct that starts with `struct_size: usize`, for which all-zero bytes
/// are a valid value (pointers, integers, arrays of them).
///
/// # Safety
/// Implementors must be `#[repr(C)]`, start with a `usize` field, and be valid when
/// zeroed or when any prefix of their bytes comes from a valid value.
pub(crate) unsafe trait Extensible: Sized {
    /// The C type's name, for messages.
    const NAME: &'static str;
    /// The smallest `struct_size` accepted: `struct_size` and the first field after it.
    const MIN_SIZE: usize;
}

/// `name[i]`, formatted only when an error message needs it.
struct Entry<'a>(&'a str, usize);

impl Display for Entry<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}[{}]", self.0, self.1)
    }
}

fn check_size<T: Extensible>(size: usize, name: &dyn Display) -> Result<usize> {
    if size == 0 {
        return Err(Error::invalid(format!(
            "{name}->struct_size is 0: set it to sizeof({t}), e.g. with EVS_STRUCT_INIT({t})",
            t = T::NAME
        )));
    }
    if size < T::MIN_SIZE || size > MAX_STRUCT_SIZE {
        return Err(Error::invalid(format!(
            "{name}->struct_size {size} is not a size of {t} (from {} to {MAX_STRUCT_SIZE}; \
             this library's is {})",
            T::MIN_SIZE,
            size_of::<T>(),
            t = T::NAME
        )));
    }
    Ok(size)
}

/// Reads the caller's struct at `p` (of its own `struct_size`) into this library's
/// layout: missing fields zero, unknown trailing fields required to be zero.
///
/// # Safety
/// `p` is non-NULL and points to at least `struct_size` readable bytes, where
/// `struct_size` is the first `usize` there.
unsafe fn read_at<T: Extensible>(p: *const u8, name: &dyn Display) -> Result<(T, usize)> {
    // SAFETY: the caller's struct starts with its size (C API contract); it may sit at
    // any alignment inside an array of the caller's stride.
    let size = check_size::<T>(unsafe { p.cast::<usize>().read_unaligned() }, name)?;
    let mut v = MaybeUninit::<T>::zeroed();
    let n = size.min(size_of::<T>());
    // SAFETY: `n` bytes are readable at `p` (n <= struct_size) and fit in `v`; T is valid
    // zeroed with any prefix from a valid value (trait contract).
    unsafe { std::ptr::copy_nonoverlapping(p, v.as_mut_ptr().cast::<u8>(), n) };
    if size > size_of::<T>() {
        // SAFETY: the bytes past our struct up to struct_size are the caller's.
        let extra =
            unsafe { std::slice::from_raw_parts(p.add(size_of::<T>()), size - size_of::<T>()) };
        if extra.iter().any(|&b| b != 0) {
            return Err(Error::invalid(format!(
                "{name} sets fields past the {} bytes of {} this library (evstore {}) knows: \
                 the program needs a newer library",
                size_of::<T>(),
                T::NAME,
                env!("CARGO_PKG_VERSION")
            )));
        }
    }
    // SAFETY: zeroed, then a prefix copied from the caller's valid struct.
    let mut v = unsafe { v.assume_init() };
    // SAFETY: T starts with its usize size field (trait contract).
    unsafe { (&mut v as *mut T).cast::<usize>().write(size_of::<T>()) };
    Ok((v, size))
}

/// An array of `count` caller structs whose stride is their `struct_size` (the same in
/// every entry: one array, one type). NULL only when `count` is 0.
///
/// # Safety
/// `p` is NULL or points to `count` structs of `struct_size` bytes each.
pub(crate) unsafe fn input_array<T: Extensible>(
    p: *const T,
    count: usize,
    max: usize,
    name: &str,
) -> Result<Vec<T>> {
    let mut out = Vec::with_capacity(count);
    // SAFETY: forwarded contract.
    unsafe {
        each_input(p, count, max, name, |_, v| {
            out.push(v);
            Ok(())
        })
    }?;
    Ok(out)
}

/// `input_array` without the vector: each entry, read and checked, handed to `f` with
/// its index, in one pass (the events of an append go straight into their checked form).
///
/// # Safety
/// As `input_array`.
pub(crate) unsafe fn each_input<T: Extensible>(
    p: *const T,
    count: usize,
    max: usize,
    name: &str,
    mut f: impl FnMut(usize, T) -> Result<()>,
) -> Result<()> {
    if count == 0 {
        return Ok(());
    }
    if p.is_null() {
        return Err(Error::invalid(format!(
            "{name} is NULL but its count is {count}"
        )));
    }
    if count > max {
        return Err(Error::new(
            crate::error::ErrorKind::TooLarge,
            format!("{name} has {count} entries; the limit is {max}"),
        ));
    }
    let base = p.cast::<u8>();
    // SAFETY: the first entry starts with its size (C API contract).
    let stride = check_size::<T>(
        unsafe { base.cast::<usize>().read_unaligned() },
        &Entry(name, 0),
    )?;
    if stride
        .checked_mul(count)
        .is_none_or(|b| b > isize::MAX as usize)
    {
        return Err(Error::invalid(format!(
            "{name}'s count {count} is impossible"
        )));
    }
    for i in 0..count {
        // Named for a message only if one is needed: no string built per entry.
        let entry = Entry(name, i);
        // SAFETY: entry i starts i strides in, inside the caller's array (size checked).
        let at = unsafe { base.add(i * stride) };
        // SAFETY: as above; each entry starts with its size.
        let size = unsafe { at.cast::<usize>().read_unaligned() };
        if size != stride {
            return Err(Error::invalid(format!(
                "{entry}.struct_size is {size} but {name}[0].struct_size is {stride}: the \
                 entries of one array have one size"
            )));
        }
        // SAFETY: `stride` readable bytes at `at`, starting with the size.
        f(i, unsafe { read_at::<T>(at, &entry) }?.0)?;
    }
    Ok(())
}

/// A caller struct to fill, checked before any work is done; written only on success.
pub(crate) struct OutStruct<T> {
    p: *mut T,
    size: usize,
}

impl<T: Extensible> OutStruct<T> {
    /// The caller's `struct_size`.
    pub(crate) fn size(&self) -> usize {
        self.size
    }

    /// Writes the fields that fit in the caller's `struct_size`, leaving the caller's
    /// `struct_size` as it was.
    pub(crate) fn write(&self, v: T) {
        let n = self.size.min(size_of::<T>());
        let skip = size_of::<usize>();
        // SAFETY: `p` was checked to hold `size` writable bytes by `out_struct` (C API
        // contract); bytes skip..n of `v` exist and fit.
        unsafe {
            std::ptr::copy_nonoverlapping(
                (&v as *const T).cast::<u8>().add(skip),
                self.p.cast::<u8>().add(skip),
                n - skip,
            )
        };
    }
}

/// A required struct out-pointer.
///
/// # Safety
/// `p` is NULL or points to a writable struct whose first `usize` is its size.
pub(crate) unsafe fn out_struct<T: Extensible>(p: *mut T, name: &str) -> Result<OutStruct<T>> {
    if p.is_null() {
        return Err(Error::invalid(format!("{name} is NULL")));
    }
    // SAFETY: the caller's struct starts with its size (C API contract).
    let size = check_size::<T>(unsafe { p.cast::<usize>().read_unaligned() }, &name)?;
    Ok(OutStruct { p, size })
}

/// Entry `i` of the caller's array of structs to fill, whose stride is `stride` (or, for
/// the first entry, its own `struct_size`, which the caller sets).
///
/// # Safety
/// `p` is NULL or points to an array of at least `i + 1` entries of the stride, the first
/// starting with its size.
pub(crate) unsafe fn out_struct_at<T: Extensible>(
    p: *mut T,
    i: usize,
    stride: Option<usize>,
    name: &str,
) -> Result<OutStruct<T>> {
    match stride {
        // SAFETY: forwarded contract.
        None => unsafe { out_struct(p, &format!("{name}[0]")) },
        Some(size) => Ok(OutStruct {
            // SAFETY: entry i lies i strides into the caller's array (contract).
            p: unsafe { p.cast::<u8>().add(i * size) }.cast(),
            size,
        }),
    }
}

/// An optional struct out-pointer (NULL: not wanted).
///
/// # Safety
/// As `out_struct`.
pub(crate) unsafe fn opt_out_struct<T: Extensible>(
    p: *mut T,
    name: &str,
) -> Result<Option<OutStruct<T>>> {
    if p.is_null() {
        return Ok(None);
    }
    // SAFETY: forwarded contract.
    unsafe { out_struct(p, name) }.map(Some)
}

/// Implements `Extensible` for a struct of this API.
macro_rules! extensible {
    ($t:ty, $second:ident) => {
        // SAFETY: the struct is #[repr(C)], starts with `struct_size: usize`, and holds
        // only integers, bools written by the library, pointers and arrays of them.
        unsafe impl $crate::ffi::extensible::Extensible for $t {
            const NAME: &'static str = stringify!($t);
            const MIN_SIZE: usize = std::mem::offset_of!($t, $second) + 8;
        }
    };
}
pub(crate) use extensible;
