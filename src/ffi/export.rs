//! Moving a log, for C callers (docs/export-format.md): exporting a store to the
//! portable format (a file, or the caller's writer), importing such a file into an empty
//! store, and copying one store into another (a directory or a `postgresql://` URL each
//! side), resumable after an interruption.

use super::args::str_arg;
use super::extensible::{extensible, input_array, opt_out_struct};
use super::status::*;
use super::store::{evs_store, store_arg};
use crate::account::Bank;
use crate::error::{Error, Result};
use crate::store::import::{self, MoveInfo};
use crate::store::StoreOptions;
use std::ffi::{c_char, c_void};
use std::path::Path;

/// Called now and then during an export, import or copy, on the calling thread, with
/// the position reached and the end (the source's next position); it must return
/// normally.
pub type evs_progress_fn =
    Option<unsafe extern "C" fn(user_data: *mut c_void, position: u64, end: u64)>;

/// Takes the next `len` bytes of an export (`evs_export_to`), on the calling thread.
/// Returns 0 when it took them all; anything else stops the export (EVS_ERR_IO).
pub type evs_write_fn =
    Option<unsafe extern "C" fn(user_data: *mut c_void, bytes: *const u8, len: usize) -> i32>;

/// Options of `evs_export`, `evs_export_to`, `evs_import`, `evs_copy` and
/// `evs_copy_stores` (caller-allocated: set `struct_size`, see `EVS_STRUCT_INIT`; NULL: none).
#[repr(C)]
pub struct evs_copy_options {
    /// sizeof(evs_copy_options) as the caller's header has it; never changed.
    pub struct_size: usize,
    /// NULL: no progress reports.
    pub progress: evs_progress_fn,
    /// Passed to `progress` as it is.
    pub progress_user_data: *mut c_void,
}

extensible!(evs_copy_options, progress);

/// What an export, import or copy did (caller-allocated: set `struct_size`).
#[repr(C)]
pub struct evs_copy_info {
    /// sizeof(evs_copy_info) as the caller's header has it; never changed.
    pub struct_size: usize,
    /// Events and lifecycle entries moved.
    pub events: u64,
    pub entries: u64,
    /// The positions covered: `first_position .. next_position` (a copy that went on
    /// from an earlier one starts where that one stopped).
    pub first_position: u64,
    pub next_position: u64,
    /// Bytes of the export written or read (0 for a copy).
    pub bytes: u64,
}

extensible!(evs_copy_info, events);

impl From<&MoveInfo> for evs_copy_info {
    fn from(m: &MoveInfo) -> Self {
        evs_copy_info {
            struct_size: std::mem::size_of::<evs_copy_info>(),
            events: m.events,
            entries: m.entries,
            first_position: m.first,
            next_position: m.next,
            bytes: m.bytes,
        }
    }
}

/// The caller's progress function and its user data (may be NULL).
struct Progress(evs_progress_fn, *mut c_void);

impl Progress {
    /// # Safety
    /// `o` is NULL or one `evs_copy_options` of its own `struct_size`.
    unsafe fn of(o: *const evs_copy_options) -> Result<Progress> {
        if o.is_null() {
            return Ok(Progress(None, std::ptr::null_mut()));
        }
        // SAFETY: one struct of its own struct_size (C API contract).
        let raw = unsafe { input_array(o, 1, 1, "opts") }?;
        Ok(Progress(raw[0].progress, raw[0].progress_user_data))
    }

    fn report(&self, at: u64, end: u64) {
        if let Some(f) = self.0 {
            // SAFETY: the caller's function and its own user data (C API contract).
            unsafe { f(self.1, at, end) };
        }
    }
}

/// Runs `f` with the caller's options and writes its result to `out_info`.
///
/// # Safety
/// `opts` and `out_info` as the exported functions' contracts say.
unsafe fn moving(
    opts: *const evs_copy_options,
    out_info: *mut evs_copy_info,
    f: impl FnOnce(&mut dyn FnMut(u64, u64)) -> Result<MoveInfo>,
) -> Result<evs_status> {
    // SAFETY: forwarded contract.
    let progress = unsafe { Progress::of(opts) }?;
    // SAFETY: NULL or the caller's struct, starting with its size.
    let out = unsafe { opt_out_struct(out_info, "out_info") }?;
    let info = f(&mut |at, end| progress.report(at, end))?;
    if let Some(o) = out {
        o.write(evs_copy_info::from(&info));
    }
    Ok(EVS_OK)
}

/// `evs_export` and `evs_import`: `f` on the store and the path.
///
/// # Safety
/// The exported functions' contracts for each pointer.
unsafe fn with_path(
    s: *mut evs_store,
    path: *const c_char,
    opts: *const evs_copy_options,
    out_info: *mut evs_copy_info,
    f: fn(&crate::store::Store, &Path, import::Progress<'_>) -> Result<MoveInfo>,
) -> evs_status {
    boundary(|| {
        // SAFETY: C API contract for each pointer.
        let store = unsafe { store_arg(s) }?;
        let path = unsafe { str_arg(path, "path") }?;
        if path.is_empty() {
            return Err(Error::invalid("path is empty"));
        }
        let store = store.bank.store().clone();
        // SAFETY: forwarded contract.
        unsafe { moving(opts, out_info, |p| f(&store, Path::new(path), p)) }
    })
}

/// Writes the whole log of `s` (positions 0 up to its next position when the call began:
/// every event a reader sees, with its position, time, stream, version, id, type, schema
/// version, metadata and payload, and every delete, truncation and retention rule at its
/// place) to a new file at `path`, in the portable export format
/// (docs/export-format.md), synced before it returns. Appends made meanwhile go on and
/// are not in it. `opts` (may be NULL): a progress function. `*out_info` (may be NULL):
/// what was written.
///
/// Returns EVS_OK; EVS_ERR_INVALID_ARGUMENT (NULL store or path, bad UTF-8, a bad
/// `struct_size`, a closed store); EVS_ERR_IO (`path` exists, or cannot be written;
/// a partial file may be left: delete it); EVS_ERR_CORRUPT (the store's log is
/// damaged). Thread safety: any thread; appends may run meanwhile. Ownership: every
/// argument stays the caller's.
#[no_mangle]
pub unsafe extern "C" fn evs_export(
    s: *mut evs_store,
    path: *const c_char,
    opts: *const evs_copy_options,
    out_info: *mut evs_copy_info,
) -> evs_status {
    // SAFETY: forwarded contract.
    unsafe { with_path(s, path, opts, out_info, import::export_file) }
}

/// `evs_export`, handing the bytes to `write` (with `user_data`) instead of a file: for
/// a pipe, a socket, object storage. `write` gets the export in order, in pieces of any
/// size; a non-zero return stops it (EVS_ERR_IO). Nothing is synced.
///
/// Returns EVS_OK; EVS_ERR_INVALID_ARGUMENT (NULL store or `write`, a bad `struct_size`,
/// a closed store); EVS_ERR_IO (`write` returned non-zero); EVS_ERR_CORRUPT. Thread
/// safety: any thread; `write` runs on the calling thread. Ownership: every argument
/// stays the caller's.
#[no_mangle]
pub unsafe extern "C" fn evs_export_to(
    s: *mut evs_store,
    write: evs_write_fn,
    user_data: *mut c_void,
    opts: *const evs_copy_options,
    out_info: *mut evs_copy_info,
) -> evs_status {
    boundary(|| {
        // SAFETY: C API contract for each pointer.
        let store = unsafe { store_arg(s) }?;
        let write = write.ok_or_else(|| Error::invalid("write is NULL"))?;
        let store = store.bank.store().clone();
        let mut out = CallerWriter { write, user_data };
        let mut buffered = std::io::BufWriter::with_capacity(1 << 16, &mut out);
        // SAFETY: forwarded contract.
        unsafe { moving(opts, out_info, |p| import::export(&store, &mut buffered, p)) }
    })
}

/// The caller's `evs_write_fn` as a writer.
struct CallerWriter {
    write: unsafe extern "C" fn(*mut c_void, *const u8, usize) -> i32,
    user_data: *mut c_void,
}

impl std::io::Write for CallerWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        // SAFETY: the caller's function with its own user data and our bytes, which stay
        // valid for the call (C API contract: it copies what it keeps).
        let r = unsafe { (self.write)(self.user_data, buf.as_ptr(), buf.len()) };
        match r {
            0 => Ok(buf.len()),
            r => Err(std::io::Error::other(format!(
                "the write function returned {r}"
            ))),
        }
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Imports the export file at `path` into `s`, which must be empty: every event and
/// lifecycle entry at its own position, with its own time, version and id; positions
/// the export does not hold stay empty, and the store's next position becomes the
/// export's. The file is read twice: first checked whole (a file cut short, changed or
/// out of order is refused before anything is written), then imported in batches, each
/// durable when the next starts. An import that fails midway leaves a prefix of the
/// export in the store; `evs_copy` from the original store finishes it.
///
/// Returns EVS_OK; EVS_ERR_INVALID_ARGUMENT (NULL store or path, bad UTF-8, a bad
/// `struct_size`, a closed store, an item out of the limits); EVS_ERR_NOT_EMPTY (the
/// store is not empty); EVS_ERR_CORRUPT (the file is not a whole export: the message
/// names the line); EVS_ERR_IO; EVS_ERR_READ_ONLY; EVS_ERR_ALREADY_EXISTS (PostgreSQL:
/// an id stored already). Thread safety: any thread; other writers of the store make it
/// fail with EVS_ERR_NOT_EMPTY. Ownership: every argument stays the caller's.
#[no_mangle]
pub unsafe extern "C" fn evs_import(
    s: *mut evs_store,
    path: *const c_char,
    opts: *const evs_copy_options,
    out_info: *mut evs_copy_info,
) -> evs_status {
    // SAFETY: forwarded contract.
    unsafe { with_path(s, path, opts, out_info, import::import_file) }
}

/// Copies the store at `from` into the store at `to` (each a directory or a
/// `postgresql://` URL), without a file: every event and lifecycle entry at its own
/// position, as `evs_export` and `evs_import` would. `from` is opened read-only (a file
/// store may be open for writing elsewhere meanwhile; the copy takes its log up to its
/// next position when the copy began). `to` is created if needed and must be empty, or
/// hold an earlier copy of `from` that stopped (killed, a lost connection, a full disk):
/// the copy then goes on from `to`'s next position and ends with the same log. `to` is
/// synced before it returns. The stores are opened with default options: a store that
/// needs others (a master key, a key provider) is copied with `evs_copy_stores`.
///
/// Returns EVS_OK; EVS_ERR_INVALID_ARGUMENT (NULL or empty `from` or `to`, bad UTF-8,
/// a bad `struct_size`); EVS_ERR_NOT_EMPTY (`to` holds other events than `from`);
/// EVS_ERR_LOCKED (`to` is a file store open for writing elsewhere); EVS_ERR_IO,
/// EVS_ERR_UNAVAILABLE, EVS_ERR_CORRUPT (either side). Thread safety: any thread.
/// Ownership: every argument stays the caller's.
#[no_mangle]
pub unsafe extern "C" fn evs_copy(
    from: *const c_char,
    to: *const c_char,
    opts: *const evs_copy_options,
    out_info: *mut evs_copy_info,
) -> evs_status {
    boundary(|| {
        // SAFETY: C API contract for each pointer.
        let from = unsafe { str_arg(from, "from") }?;
        let to = unsafe { str_arg(to, "to") }?;
        if from.is_empty() || to.is_empty() {
            return Err(Error::invalid("from or to is empty"));
        }
        let (src, _) = Bank::open(
            from,
            StoreOptions {
                read_only: true,
                ..StoreOptions::default()
            },
        )
        .map_err(|e| e.prefixed("opening the source: "))?;
        let (dst, _) = Bank::open(to, StoreOptions::default())
            .map_err(|e| e.prefixed("opening the destination: "))?;
        // SAFETY: forwarded contract.
        let done = unsafe {
            moving(opts, out_info, |p| {
                import::copy(src.store(), dst.store(), p)
            })
        };
        let closed = dst.store().close().and(src.store().close());
        let status = done?;
        closed?;
        Ok(status)
    })
}

/// `evs_copy` between two stores the caller opened, with whatever options each needs (a
/// master key or a key provider for its subjects' keys, a URL's parameters): every event
/// and lifecycle entry of `from` up to its next position when the call began, at its own
/// position, into `to`, which must be writable and empty, or hold an earlier copy of
/// `from` that stopped (the copy then goes on from `to`'s next position). Appends to
/// `from` meanwhile go on and are not copied. `to` is synced before it returns. `opts`
/// (may be NULL): a progress function. `*out_info` (may be NULL): what was copied.
///
/// Returns EVS_OK; EVS_ERR_INVALID_ARGUMENT (a NULL or closed store, `from` and `to` the
/// same store, a bad `struct_size`); EVS_ERR_NOT_EMPTY (`to` holds other events than
/// `from`); EVS_ERR_READ_ONLY (`to` was opened read-only); EVS_ERR_IO,
/// EVS_ERR_UNAVAILABLE, EVS_ERR_CORRUPT (either side). Thread safety: any thread; other
/// calls on both stores may run meanwhile (another writer of `to` makes it fail with
/// EVS_ERR_NOT_EMPTY). Ownership: both stores stay the caller's, open.
#[no_mangle]
pub unsafe extern "C" fn evs_copy_stores(
    from: *mut evs_store,
    to: *mut evs_store,
    opts: *const evs_copy_options,
    out_info: *mut evs_copy_info,
) -> evs_status {
    boundary(|| {
        if !from.is_null() && std::ptr::eq(from, to) {
            return Err(Error::invalid(
                "from and to are the same store: a store cannot be copied into itself",
            ));
        }
        // SAFETY: C API contract for each pointer.
        let src = unsafe { store_arg(from) }.map_err(|e| e.prefixed("from: "))?;
        // SAFETY: as above.
        let dst = unsafe { store_arg(to) }.map_err(|e| e.prefixed("to: "))?;
        let (src, dst) = (src.bank.store().clone(), dst.bank.store().clone());
        // SAFETY: forwarded contract.
        let status = unsafe { moving(opts, out_info, |p| import::copy(&src, &dst, p)) }?;
        dst.sync()?;
        Ok(status)
    })
}
