//! Personal data (README "Personal data"): forgetting a data subject, listing subjects,
//! and where subjects' keys come from (a master key, or the application's key provider).

use super::args::{handle_mut, out_arg, str_arg, write_opt, write_out};
use super::extensible::{extensible, input_array, out_struct};
use super::status::*;
use super::store::{evs_options, evs_store, store_arg};
use crate::error::{Error, ErrorKind, Result};
use crate::store::subjects::{KeyBytes, KeySource, SubjectInfo, KEY_LEN};
use std::ffi::{c_char, c_void};
use std::sync::Arc;

/// Forgets data subject `subject` (crypto-shredding): an entry is appended to the log
/// (it gets a position, like a lifecycle entry, so every process and follower obeys it),
/// made durable whatever the fsync policy, and then the subject's key is destroyed where
/// it is kept (the store's key file: overwritten in place, then the file rewritten
/// without it; a key provider: its `destroy`). From when this returns, every read
/// (cursors, subscriptions, consumers, `evs_read_event`, in every process) returns the
/// subject's events with payload and metadata empty and `EVS_EVENT_ERASED` in
/// `evs_event.flags`; their stream, type, position, version and timestamp stay. No new
/// event may name the subject afterwards (EVS_ERR_INVALID_ARGUMENT). Forgetting a
/// forgotten subject returns the first forget's position (and finishes destroying its
/// key if a failure stopped that). If this fails after the entry is durable (EVS_ERR_IO
/// while destroying the key), the subject is forgotten all the same and the next
/// writable open finishes destroying its key. `*out_position` (may be NULL): the entry's
/// position.
///
/// On PostgreSQL the forget entry, the subject's record as forgotten and the deletion of
/// its key row are one transaction (then the key table is rewritten: docs/postgres.md
/// "Personal data"); other handles see it at their next read.
///
/// Returns EVS_OK; EVS_ERR_INVALID_ARGUMENT (NULL store or subject, bad UTF-8, an empty
/// or over 1024-byte subject, a closed store); EVS_ERR_BUSY; EVS_ERR_READ_ONLY;
/// EVS_ERR_IO (the log or the key file; a key provider's failure; PostgreSQL: the server
/// gone, the forget in doubt: forget again); EVS_ERR_UNAVAILABLE (PostgreSQL: no server). Thread safety: any thread. Ownership: `subject` stays the
/// caller's.
#[no_mangle]
pub unsafe extern "C" fn evs_forget_subject(
    s: *mut evs_store,
    subject: *const c_char,
    out_position: *mut u64,
) -> evs_status {
    boundary(|| {
        // SAFETY: C API contract for each pointer.
        let store = unsafe { store_arg(s) }?;
        let subject = unsafe { str_arg(subject, "subject") }?;
        let p = store.bank.store().forget_subject(subject)?;
        write_opt(out_position, p);
        Ok(EVS_OK)
    })
}

/// A data subject as `evs_subject_list_next` reports it: counts, never keys.
#[repr(C)]
pub struct evs_subject_info {
    /// sizeof(evs_subject_info) (see `EVS_STRUCT_INIT`).
    pub struct_size: usize,
    /// Not NUL-terminated.
    pub name: *const c_char,
    pub name_len: usize,
    /// Events that name it.
    pub events: u64,
    /// Whether it was forgotten (`evs_forget_subject`).
    pub forgotten: bool,
    /// The position of its forget entry; UINT64_MAX when not forgotten.
    pub forgotten_at: u64,
}

extensible!(evs_subject_info, name);

/// The data subjects of a store (opaque), from `evs_list_subjects`. Single-thread.
pub struct evs_subject_list {
    subjects: Vec<SubjectInfo>,
    next: usize,
}

/// Lists the data subjects that events named or that were forgotten, in name order, with
/// their event counts (a copy, as the store is now).
///
/// Ownership: free `*out` with `evs_subject_list_free`. Returns EVS_OK;
/// EVS_ERR_INVALID_ARGUMENT (NULL); EVS_ERR_IO or EVS_ERR_UNAVAILABLE (PostgreSQL: the
/// server). On PostgreSQL `events` counts the events left (not deleted). Thread safety: any thread; the list itself is single-thread.
#[no_mangle]
pub unsafe extern "C" fn evs_list_subjects(
    s: *mut evs_store,
    out: *mut *mut evs_subject_list,
) -> evs_status {
    boundary(|| {
        // SAFETY: `s` is NULL or a live store.
        let store = unsafe { store_arg(s) }?;
        let out = out_arg(out, "out")?;
        let subjects = store.bank.store().subjects()?;
        let list = evs_subject_list { subjects, next: 0 };
        write_out(out, Box::into_raw(Box::new(list)));
        Ok(EVS_OK)
    })
}

/// The next subject of the list: EVS_OK with `*out` filled (a view valid until the next
/// call on `list` or its free), or EVS_END after the last one.
///
/// Ownership: `*out` is the caller's struct; the name it points to is the list's.
/// Thread safety: one thread at a time per list. Returns EVS_OK, EVS_END, or
/// EVS_ERR_INVALID_ARGUMENT (NULL, bad `out->struct_size`).
#[no_mangle]
pub unsafe extern "C" fn evs_subject_list_next(
    list: *mut evs_subject_list,
    out: *mut evs_subject_info,
) -> evs_status {
    boundary(|| {
        // SAFETY: `list` is NULL or a live list used by this thread only.
        let list = unsafe { handle_mut(list, "list") }?;
        // SAFETY: NULL or the caller's struct, starting with its size.
        let out = unsafe { out_struct(out, "out") }?;
        let Some(info) = list.subjects.get(list.next) else {
            return Ok(EVS_END);
        };
        list.next += 1;
        out.write(evs_subject_info {
            struct_size: std::mem::size_of::<evs_subject_info>(),
            name: info.name.as_ptr().cast(),
            name_len: info.name.len(),
            events: info.events,
            forgotten: info.forgotten_at.is_some(),
            forgotten_at: info.forgotten_at.unwrap_or(u64::MAX),
        });
        Ok(EVS_OK)
    })
}

/// Frees a subject list. NULL is a no-op. Ownership: takes `list`.
/// Thread safety: not while another thread uses `list`. Returns nothing.
#[no_mangle]
pub unsafe extern "C" fn evs_subject_list_free(list: *mut evs_subject_list) {
    if !list.is_null() {
        // Like every export: cancellation held off, panics caught (`cancel::quietly`).
        super::cancel::quietly(|| {
            // SAFETY: `list` came from Box::into_raw in evs_list_subjects, freed once.
            drop(unsafe { Box::from_raw(list) });
        });
    }
}

/// Gives the 32-byte master key (AES-256) that wraps the subjects' keys the store keeps
/// in its key file (`<store>/keys`). Without one the keys are kept unwrapped: forgetting
/// still erases (the key is destroyed), but whoever can read the store's files can read
/// every subject's personal data. A store whose keys were wrapped opens only with the
/// same master key (and one whose keys are unwrapped only without one):
/// EVS_ERR_INVALID_ARGUMENT from `evs_open` otherwise. `key` NULL (with `len` 0) clears
/// it. The options keep a copy, overwritten when they are freed.
///
/// Returns EVS_OK, or EVS_ERR_INVALID_ARGUMENT (NULL `o`; a length other than 32; both
/// a master key and a key provider). Ownership: `key` stays the caller's. Thread safety:
/// not while another thread uses `o`.
#[no_mangle]
pub unsafe extern "C" fn evs_options_set_master_key(
    o: *mut evs_options,
    key: *const u8,
    len: usize,
) -> evs_status {
    boundary(|| {
        // SAFETY: `o` is NULL or a live options object (C API contract).
        let o = unsafe { handle_mut(o, "options") }?;
        if key.is_null() && len == 0 {
            o.inner.keys.master = None;
            return Ok(EVS_OK);
        }
        if key.is_null() || len != KEY_LEN {
            return Err(Error::invalid(format!(
                "the master key is {len} bytes long{}; it must be {KEY_LEN} (AES-256)",
                if key.is_null() { " and NULL" } else { "" }
            )));
        }
        if o.inner.keys.provider.is_some() {
            return Err(both());
        }
        let mut k = [0u8; KEY_LEN];
        // SAFETY: `key` points to `len` == 32 readable bytes (C API contract).
        k.copy_from_slice(unsafe { std::slice::from_raw_parts(key, KEY_LEN) });
        o.inner.keys.master = Some(Arc::new(KeyBytes::new(k)));
        k.iter_mut().for_each(|b| *b = 0);
        Ok(EVS_OK)
    })
}

fn both() -> Error {
    Error::invalid(
        "a master key and a key provider were both given: the provider keeps the keys, so give one or the other",
    )
}

/// A key provider's callback about one subject (`subject`, not NUL-terminated, of
/// `subject_len` bytes). `get` and `create` write the 32-byte key into `out_key`.
pub type evs_key_fn = Option<
    unsafe extern "C" fn(
        user_data: *mut c_void,
        subject: *const c_char,
        subject_len: usize,
        out_key: *mut u8,
    ) -> i32,
>;

/// The application keeps the subjects' keys (a KMS or an HSM): the store keeps none.
/// Every callback is required, is called on the thread of the store call that needs it
/// (an append naming a new subject, the first read of a subject's event, a forget), and
/// may be called from several threads at once: it must be thread-safe. Each returns 0
/// on success, EVS_END (1) from `get` when the subject has no key, or a negative value
/// on failure (the store call then fails with EVS_ERR_IO, naming the status). A key the
/// provider no longer has (`get` returns EVS_END) reads as erased.
#[repr(C)]
pub struct evs_key_provider {
    /// sizeof(evs_key_provider) (see `EVS_STRUCT_INIT`).
    pub struct_size: usize,
    /// The subject's key into `out_key` (32 bytes), or EVS_END if it has none.
    pub get: evs_key_fn,
    /// Makes a new key for the subject (which has none), durably, into `out_key`.
    pub create: evs_key_fn,
    /// Destroys the subject's key durably (`out_key` is NULL). Also called again for a
    /// subject destroyed already (after a crash): it must then return 0.
    pub destroy: evs_key_fn,
    /// Passed to every callback.
    pub user_data: *mut c_void,
}

extensible!(evs_key_provider, get);

/// The provider's callbacks as a `KeySource`.
struct Provider {
    get: unsafe extern "C" fn(*mut c_void, *const c_char, usize, *mut u8) -> i32,
    create: unsafe extern "C" fn(*mut c_void, *const c_char, usize, *mut u8) -> i32,
    destroy: unsafe extern "C" fn(*mut c_void, *const c_char, usize, *mut u8) -> i32,
    user_data: *mut c_void,
}

// SAFETY: the provider's contract (`evs_key_provider`) makes its callbacks and user
// data usable from any thread, at once.
unsafe impl Send for Provider {}
// SAFETY: as above.
unsafe impl Sync for Provider {}

impl Provider {
    fn call(
        &self,
        f: unsafe extern "C" fn(*mut c_void, *const c_char, usize, *mut u8) -> i32,
        what: &str,
        subject: &str,
        out: Option<&mut [u8; KEY_LEN]>,
    ) -> Result<i32> {
        let out = out.map_or(std::ptr::null_mut(), |k| k.as_mut_ptr());
        // SAFETY: the provider's callback (C API contract), with the subject's bytes and
        // 32 writable bytes (or NULL for destroy).
        let r = unsafe { f(self.user_data, subject.as_ptr().cast(), subject.len(), out) };
        if r < 0 || (r == EVS_END && what != "get") || r > EVS_END {
            return Err(Error::new(
                ErrorKind::Io,
                format!("the key provider's {what} failed for subject '{subject}' (status {r})"),
            ));
        }
        Ok(r)
    }
}

impl KeySource for Provider {
    fn get(&self, subject: &str) -> Result<Option<KeyBytes>> {
        let mut buf = [0u8; KEY_LEN];
        let r = self.call(self.get, "get", subject, Some(&mut buf))?;
        if r == EVS_END {
            return Ok(None);
        }
        let k = KeyBytes::new(buf);
        buf.iter_mut().for_each(|b| *b = 0);
        Ok(Some(k))
    }

    fn create(&self, subject: &str) -> Result<KeyBytes> {
        let mut buf = [0u8; KEY_LEN];
        self.call(self.create, "create", subject, Some(&mut buf))?;
        let k = KeyBytes::new(buf);
        buf.iter_mut().for_each(|b| *b = 0);
        Ok(k)
    }

    fn destroy(&self, subject: &str) -> Result<()> {
        self.call(self.destroy, "destroy", subject, None)
            .map(|_| ())
    }
}

/// Gives the key provider that keeps the subjects' keys instead of the store (see
/// `evs_key_provider`); `p` NULL clears it. The options keep a copy of `*p`.
///
/// Returns EVS_OK, or EVS_ERR_INVALID_ARGUMENT (NULL `o`, a bad `p->struct_size`, a NULL
/// callback, a master key given too). Ownership: `p` stays the caller's; `user_data` must
/// stay valid while a store opened with these options is open. Thread safety: not while
/// another thread uses `o`.
#[no_mangle]
pub unsafe extern "C" fn evs_options_set_key_provider(
    o: *mut evs_options,
    p: *const evs_key_provider,
) -> evs_status {
    boundary(|| {
        // SAFETY: `o` is NULL or a live options object (C API contract).
        let o = unsafe { handle_mut(o, "options") }?;
        if p.is_null() {
            o.inner.keys.provider = None;
            return Ok(EVS_OK);
        }
        // SAFETY: `p` points to the caller's struct, starting with its size.
        let p = unsafe { input_array(p, 1, 1, "provider") }?.remove(0);
        let (Some(get), Some(create), Some(destroy)) = (p.get, p.create, p.destroy) else {
            return Err(Error::invalid(
                "provider: get, create and destroy are all required",
            ));
        };
        if o.inner.keys.master.is_some() {
            return Err(both());
        }
        o.inner.keys.provider = Some(Arc::new(Provider {
            get,
            create,
            destroy,
            user_data: p.user_data,
        }));
        Ok(EVS_OK)
    })
}
