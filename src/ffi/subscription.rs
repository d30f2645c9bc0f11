//! Catch-up subscriptions: a library thread (never a runtime worker) delivers every event
//! from a position on, history first and then live, in order, to a C callback.

use super::args::{bytes_arg, handle, out_arg, str_arg};
use super::status::*;
use super::store::{evs_event, evs_store};
use crate::error::Error;
use crate::store::{EventRef, Store};
use std::ffi::{c_char, c_void};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::{JoinHandle, ThreadId};
use std::time::Duration;

/// Called with each event, on the subscription's own thread; the event view is valid only
/// during the call. Return 0 to go on, non-zero to stop the subscription.
pub type evs_event_fn =
    Option<unsafe extern "C" fn(user_data: *mut c_void, event: *const evs_event) -> i32>;

/// A running subscription (opaque). Free it with `evs_subscription_close`.
pub struct evs_subscription {
    shared: Arc<Shared>,
    thread: Option<JoinHandle<()>>,
}

/// What the store handle and the subscription thread share.
pub(crate) struct Shared {
    store: Arc<Store>,
    stop: AtomicBool,
    done: Mutex<bool>,
    done_cv: Condvar,
    thread_id: Mutex<Option<ThreadId>>,
}

impl Shared {
    fn is_done(&self) -> bool {
        *self.done.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn on_own_thread(&self) -> bool {
        *self.thread_id.lock().unwrap_or_else(|e| e.into_inner())
            == Some(std::thread::current().id())
    }

    /// Asks the thread to stop and waits until it has (unless we are that thread).
    fn stop_and_wait(&self) {
        self.stop.store(true, Ordering::Release);
        self.store.wake_waiters();
        if self.on_own_thread() {
            return;
        }
        let mut done = self.done.lock().unwrap_or_else(|e| e.into_inner());
        while !*done {
            done = self
                .done_cv
                .wait_timeout(done, Duration::from_millis(20))
                .unwrap_or_else(|e| e.into_inner())
                .0;
            self.store.wake_waiters();
        }
    }
}

/// Which events a subscription delivers.
struct Filter {
    stream_prefix: Option<String>,
    types: Vec<String>,
}

impl Filter {
    fn matches(&self, e: &EventRef<'_>) -> bool {
        self.stream_prefix
            .as_deref()
            .is_none_or(|p| e.stream.starts_with(p))
            && (self.types.is_empty() || self.types.iter().any(|t| t == e.event_type))
    }
}

/// The C caller's context pointer, handed to the callback thread.
struct UserData(*mut c_void);
// SAFETY: evs_subscribe's contract makes the caller responsible for `user_data` being
// usable from the subscription thread; the library only passes it back to the callback.
unsafe impl Send for UserData {}

fn run(
    store: Arc<Store>,
    from: u64,
    f: unsafe extern "C" fn(*mut c_void, *const evs_event) -> i32,
    ud: UserData,
    filter: Filter,
    shared: Arc<Shared>,
) {
    *shared.thread_id.lock().unwrap_or_else(|e| e.into_inner()) = Some(std::thread::current().id());
    if let Ok(mut cursor) = store.read_all(from) {
        'deliver: while !shared.stop.load(Ordering::Acquire) && !store.is_closed() {
            loop {
                if shared.stop.load(Ordering::Acquire) {
                    break 'deliver;
                }
                let view = match cursor.next() {
                    Ok(Some(e)) if filter.matches(&e) => evs_event::view(&e),
                    Ok(Some(_)) => continue,
                    Ok(None) => break,
                    Err(e) => {
                        set_last_error(&e.message);
                        break 'deliver;
                    }
                };
                // SAFETY: `f` is the caller's callback; `view` points into the cursor's
                // buffer, which stays untouched until the next cursor call.
                if unsafe { f(ud.0, &view) } != 0 {
                    break 'deliver;
                }
            }
            store.wait_for_events(cursor.position(), Duration::from_millis(100));
        }
    }
    *shared.done.lock().unwrap_or_else(|e| e.into_inner()) = true;
    shared.done_cv.notify_all();
}

/// Starts a subscription that calls `fn(user_data, event)` for every event from
/// `from_position` on (history first, then live events as they are appended), in
/// position order, each exactly once, on a library thread. The callback may call any
/// other evstore function, including `evs_subscription_close` on its own subscription.
///
/// Ownership: `*out` belongs to the caller, who frees it with `evs_subscription_close`;
/// `user_data` stays the caller's and must be usable from another thread.
/// Returns EVS_OK; EVS_ERR_INVALID_ARGUMENT (NULL store/fn/out); EVS_ERR_NOT_FOUND
/// (`from_position` past the next position); EVS_ERR_IO (no thread could be started).
#[no_mangle]
pub unsafe extern "C" fn evs_subscribe(
    s: *mut evs_store,
    from_position: u64,
    f: evs_event_fn,
    user_data: *mut c_void,
    out: *mut *mut evs_subscription,
) -> evs_status {
    // SAFETY: forwarded C API contract.
    unsafe {
        evs_subscribe_filtered(
            s,
            from_position,
            std::ptr::null(),
            std::ptr::null(),
            0,
            f,
            user_data,
            out,
        )
    }
}

/// Like `evs_subscribe`, delivering only events whose stream starts with `stream_prefix`
/// (NULL: any) and whose type is one of `types[0..types_count]` (0: any). Positions
/// delivered still only go up.
///
/// Returns as `evs_subscribe`, and EVS_ERR_INVALID_ARGUMENT for a non-UTF-8 prefix or
/// type, or NULL `types` with a count.
/// Ownership: as `evs_subscribe`; the prefix and types are copied. Thread safety: any
/// thread.
#[no_mangle]
#[allow(clippy::too_many_arguments)]
pub unsafe extern "C" fn evs_subscribe_filtered(
    s: *mut evs_store,
    from_position: u64,
    stream_prefix: *const c_char,
    types: *const *const c_char,
    types_count: usize,
    f: evs_event_fn,
    user_data: *mut c_void,
    out: *mut *mut evs_subscription,
) -> evs_status {
    boundary(|| {
        // SAFETY: C API contract for each pointer.
        let handle_ = unsafe { handle(s, "store") }?;
        let f = f.ok_or_else(|| Error::invalid("fn is NULL"))?;
        let out = out_arg(out, "out")?;
        let stream_prefix = if stream_prefix.is_null() {
            None
        } else {
            // SAFETY: a NUL-terminated string per the contract.
            Some(unsafe { str_arg(stream_prefix, "stream_prefix") }?.to_owned())
        };
        // SAFETY: `types` points to `types_count` string pointers per the contract.
        let raw = unsafe {
            bytes_arg(
                types.cast::<u8>(),
                types_count
                    .checked_mul(std::mem::size_of::<*const c_char>())
                    .ok_or_else(|| {
                        Error::invalid(format!("types_count {types_count} is impossible"))
                    })?,
                "types",
            )
        }?;
        let mut names = Vec::with_capacity(types_count);
        for i in 0..types_count {
            // SAFETY: `raw` holds `types_count` pointers (checked above).
            let p = unsafe { *raw.as_ptr().cast::<*const c_char>().add(i) };
            // SAFETY: each entry is a NUL-terminated string per the contract.
            names.push(unsafe { str_arg(p, &format!("types[{i}]")) }?.to_owned());
        }
        let store = handle_.bank.store().clone();
        let next = store.next_position();
        if from_position > next {
            return Err(Error::new(
                crate::error::ErrorKind::NotFound,
                format!("position {from_position} is past the end of the log (the next position is {next})"),
            ));
        }
        let shared = Arc::new(Shared {
            store: store.clone(),
            stop: AtomicBool::new(false),
            done: Mutex::new(false),
            done_cv: Condvar::new(),
            thread_id: Mutex::new(None),
        });
        let filter = Filter {
            stream_prefix,
            types: names,
        };
        let ud = UserData(user_data);
        let sh = shared.clone();
        let thread = std::thread::Builder::new()
            .name("evstore-subscription".into())
            .spawn(move || run(store, from_position, f, ud, filter, sh))
            .map_err(|e| Error::io("starting the subscription thread", e))?;
        let mut subs = handle_
            .subscriptions
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        // Finished subscriptions need no stopping: keep the list to the live ones.
        subs.retain(|s| !s.is_done());
        subs.push(shared.clone());
        drop(subs);
        super::args::write_out(
            out,
            Box::into_raw(Box::new(evs_subscription {
                shared,
                thread: Some(thread),
            })),
        );
        Ok(EVS_OK)
    })
}

/// Stops a subscription and frees it. Returns only after the callback thread has
/// finished (when called from inside the subscription's own callback, it returns at once
/// and the callback is not called again after it returns). NULL is a no-op.
///
/// Ownership: takes `sub`. Thread safety: any thread, once per subscription.
/// Returns EVS_OK.
#[no_mangle]
pub unsafe extern "C" fn evs_subscription_close(sub: *mut evs_subscription) -> evs_status {
    if sub.is_null() {
        return EVS_OK;
    }
    boundary(|| {
        // SAFETY: `sub` came from Box::into_raw in evs_subscribe and is freed once.
        let mut sub = unsafe { Box::from_raw(sub) };
        sub.shared.stop_and_wait();
        if let Some(t) = sub.thread.take() {
            if !sub.shared.on_own_thread() {
                let _ = t.join();
            }
        }
        Ok(EVS_OK)
    })
}

/// Stops every subscription of a store that is closing, and waits for their threads.
pub(crate) fn stop_all(store: &evs_store) {
    let subs = std::mem::take(
        &mut *store
            .subscriptions
            .lock()
            .unwrap_or_else(|e| e.into_inner()),
    );
    for s in subs {
        s.stop_and_wait();
    }
}

/// Subscriptions of a store that are still delivering.
pub(crate) fn live_count(store: &evs_store) -> u64 {
    let subs = store
        .subscriptions
        .lock()
        .unwrap_or_else(|e| e.into_inner());
    subs.iter().filter(|s| !s.is_done()).count() as u64
}
