//! Catch-up subscriptions: a library thread (never a runtime worker) delivers every event
//! from a position on, history first and then live, in order, to a C callback.

use super::args::{array_arg, handle, out_arg, str_arg, write_opt};
use super::status::*;
use super::store::{evs_event, evs_store, store_arg};
use crate::error::{Error, ErrorDetail, Result};
use crate::store::consumer::Filter;
use crate::store::Store;
use std::ffi::{c_char, c_void, CString};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::{JoinHandle, ThreadId};
use std::time::{Duration, Instant};

/// The first wait before a subscription that lost its server reads again; it doubles
/// after each failed attempt, up to `MAX_BACKOFF`.
pub(super) const FIRST_BACKOFF: Duration = Duration::from_millis(50);

/// The longest wait between two attempts of a reconnecting subscription.
const MAX_BACKOFF: Duration = Duration::from_secs(2);

/// Called with each event, on the subscription's own thread; the event view is valid only
/// during the call. Return 0 to go on, non-zero to stop the subscription.
///
/// The callback must return normally: it must not unwind (a C++ exception, a Rust panic)
/// or jump (`longjmp`) out through the library, which would corrupt its state or abort
/// the process. Catch everything inside the callback and return non-zero to stop (the
/// C++ binding's trampoline does this).
pub type evs_event_fn =
    Option<unsafe extern "C" fn(user_data: *mut c_void, event: *const evs_event) -> i32>;

/// A running subscription (opaque). Free it with `evs_subscription_close`.
pub struct evs_subscription {
    shared: Arc<Shared>,
    thread: Option<JoinHandle<()>>,
    /// The process that started it (see `fork`).
    owner: super::fork::Owner,
}

/// How a subscription ended: its status, and the message and detail of an error.
struct Outcome {
    status: evs_status,
    message: CString,
    detail: ErrorDetail,
}

/// What the store handle and the subscription thread share.
pub(crate) struct Shared {
    store: Arc<Store>,
    stop: AtomicBool,
    /// `Some` once the thread has finished delivering, however it finished.
    done: Mutex<Option<Outcome>>,
    done_cv: Condvar,
    thread_id: Mutex<Option<ThreadId>>,
    /// True while the subscription cannot read (its PostgreSQL server cannot be reached)
    /// and tries again (`evs_subscription_status` says EVS_ERR_UNAVAILABLE then).
    reconnecting: AtomicBool,
    /// How often it lost its server and started to reconnect.
    reconnects: AtomicU64,
    /// The position after the last event it read (delivered or filtered out): where it
    /// resumes, and what its lag is counted from.
    next: AtomicU64,
}

impl Shared {
    pub(crate) fn store(&self) -> &Arc<Store> {
        &self.store
    }

    /// Records that the events before `next` were read (for its lag in the metrics).
    pub(crate) fn read_up_to(&self, next: u64) {
        self.next.fetch_max(next, Ordering::AcqRel);
    }

    fn new(store: Arc<Store>, from: u64) -> Shared {
        Shared {
            store,
            stop: AtomicBool::new(false),
            done: Mutex::new(None),
            done_cv: Condvar::new(),
            thread_id: Mutex::new(None),
            reconnecting: AtomicBool::new(false),
            reconnects: AtomicU64::new(0),
            next: AtomicU64::new(from),
        }
    }

    /// Whether it should stop delivering: closed, or its store is.
    pub(crate) fn stopping(&self) -> bool {
        self.stop.load(Ordering::Acquire) || self.store.is_closed()
    }

    /// Marks it reconnecting after `e` (counted once per outage) and waits `backoff`,
    /// or less if it is stopped meanwhile; returns the next wait.
    pub(super) fn back_off(&self, backoff: Duration) -> Duration {
        if !self.reconnecting.swap(true, Ordering::AcqRel) {
            self.reconnects.fetch_add(1, Ordering::Relaxed);
        }
        let until = Instant::now() + backoff;
        while !self.stopping() {
            let left = until.saturating_duration_since(Instant::now());
            if left.is_zero() {
                break;
            }
            std::thread::sleep(left.min(Duration::from_millis(20)));
        }
        (backoff * 2).min(MAX_BACKOFF)
    }

    /// It reads again after an outage: no longer reconnecting (true if it was).
    pub(super) fn reconnected(&self) -> bool {
        self.reconnecting.swap(false, Ordering::AcqRel)
    }

    fn is_done(&self) -> bool {
        self.done
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .is_some()
    }

    fn on_own_thread(&self) -> bool {
        *self.thread_id.lock().unwrap_or_else(|e| e.into_inner())
            == Some(std::thread::current().id())
    }

    /// Records how the subscription ended and wakes whoever waits for that; only the
    /// first outcome counts.
    fn finish(&self, status: evs_status, message: &str, detail: ErrorDetail) {
        let mut done = self.done.lock().unwrap_or_else(|e| e.into_inner());
        if done.is_none() {
            *done = Some(Outcome {
                status,
                message: CString::new(message.replace('\0', "\\0")).unwrap_or_default(),
                detail,
            });
        }
        drop(done);
        self.done_cv.notify_all();
    }

    /// Asks the thread to stop and waits until it has (unless we are that thread).
    fn stop_and_wait(&self) {
        self.stop.store(true, Ordering::Release);
        self.store.wake_waiters();
        if self.on_own_thread() {
            return;
        }
        let mut done = self.done.lock().unwrap_or_else(|e| e.into_inner());
        while done.is_none() {
            done = self
                .done_cv
                .wait_timeout(done, Duration::from_millis(20))
                .unwrap_or_else(|e| e.into_inner())
                .0;
            self.store.wake_waiters();
        }
    }
}

/// A store's subscriptions, for `evs_close` to stop. Once close has begun (`closing`),
/// no subscription is added: it would never be stopped, and its callback would run on
/// after the store is freed.
#[derive(Default)]
pub(crate) struct Registry {
    live: Vec<Arc<Shared>>,
    closing: bool,
}

/// Marks the subscription finished even if its thread unwinds past the point where it
/// would have said how it ended: `stop_and_wait` must never wait forever.
struct FinishOnDrop(Arc<Shared>);

impl Drop for FinishOnDrop {
    fn drop(&mut self) {
        self.0.finish(
            EVS_ERR_INTERNAL,
            "internal error in evstore (please report): the subscription thread stopped unexpectedly",
            ErrorDetail::default(),
        );
    }
}

/// Event types a filtered subscription may name.
const MAX_FILTER_TYPES: usize = 4096;

/// The filter of a subscription or a consumer from its C arguments (copied).
///
/// # Safety
/// `stream_prefix` is NULL or a NUL-terminated string; `types` points to `types_count`
/// string pointers (or is NULL with a count of 0).
pub(crate) unsafe fn filter_arg(
    stream_prefix: *const c_char,
    types: *const *const c_char,
    types_count: usize,
) -> Result<Filter> {
    let stream_prefix = if stream_prefix.is_null() {
        None
    } else {
        // SAFETY: a NUL-terminated string per the contract.
        Some(unsafe { str_arg(stream_prefix, "stream_prefix") }?.to_owned())
    };
    // SAFETY: `types` points to `types_count` string pointers per the contract.
    let raw = unsafe { array_arg(types, types_count, MAX_FILTER_TYPES, "types") }?;
    let mut names = Vec::with_capacity(raw.len());
    for (i, &p) in raw.iter().enumerate() {
        // SAFETY: each entry is a NUL-terminated string per the contract.
        names.push(unsafe { str_arg(p, &format!("types[{i}]")) }?.to_owned());
    }
    Ok(Filter {
        stream_prefix,
        types: names,
    })
}

/// The C caller's context pointer, handed to the callback thread.
pub(crate) struct UserData(pub(crate) *mut c_void);
// SAFETY: evs_subscribe's contract makes the caller responsible for `user_data` being
// usable from the subscription thread; the library only passes it back to the callback.
unsafe impl Send for UserData {}

/// The subscription thread's body: runs `deliver`, catching any panic, and records how
/// it ended (a normal end: EVS_OK with the message `deliver` returns). Whatever happens
/// inside, the subscription ends with a status.
fn run_guarded(shared: Arc<Shared>, deliver: impl FnOnce(&Shared) -> Result<String>) {
    // A library thread: a cancel aimed at it (from the callback's pthread_self) must not
    // unwind through delivery; it stays pending for good.
    let _held = super::cancel::hold();
    let guard = FinishOnDrop(shared.clone());
    *shared.thread_id.lock().unwrap_or_else(|e| e.into_inner()) = Some(std::thread::current().id());
    match catch_unwind(AssertUnwindSafe(|| deliver(&shared))) {
        Ok(Ok(why)) => shared.finish(EVS_OK, &why, ErrorDetail::default()),
        Ok(Err(e)) => shared.finish(status_of(e.kind), &e.message, e.detail()),
        Err(panic) => {
            let what = panic_message(panic);
            shared.finish(
                EVS_ERR_INTERNAL,
                &format!("internal error in evstore (please report): {what}"),
                ErrorDetail::default(),
            );
        }
    }
    drop(guard);
}

/// Delivers events to `f` until it asks to stop, the subscription is closed, the store
/// closes, or reading fails with an error that waiting does not cure.
///
/// An error saying the server cannot be reached now (`EVS_ERR_UNAVAILABLE`: a PostgreSQL
/// connection lost, a server restarting or not answering; the file engine never says it)
/// does not end it: it reconnects, waiting `FIRST_BACKOFF`, doubling to `MAX_BACKOFF`
/// between attempts, and resumes with a new cursor at the position after the last event
/// it read, so that no event is skipped or delivered twice. The store reconnects by
/// itself on its next call; the cursor's own state is not trusted after an error.
fn deliver(
    shared: &Shared,
    f: unsafe extern "C" fn(*mut c_void, *const evs_event) -> i32,
    ud: UserData,
    filter: Filter,
) -> Result<String> {
    let store = &shared.store;
    let mut backoff = FIRST_BACKOFF;
    let retry = |e: crate::error::Error, backoff: &mut Duration| -> Result<()> {
        if e.kind != crate::error::ErrorKind::Unavailable {
            return Err(e);
        }
        *backoff = shared.back_off(*backoff);
        Ok(())
    };
    'connect: while !shared.stopping() {
        let from = shared.next.load(Ordering::Acquire);
        let mut cursor = match store.read_all(from) {
            Ok(c) => c,
            Err(e) => {
                retry(e, &mut backoff)?;
                continue;
            }
        };
        while !shared.stopping() {
            let event = match cursor.next() {
                Ok(e) => e,
                Err(e) => {
                    retry(e, &mut backoff)?;
                    continue 'connect;
                }
            };
            if shared.reconnecting.swap(false, Ordering::AcqRel) {
                backoff = FIRST_BACKOFF;
            }
            let Some(e) = event else {
                let at = cursor.position();
                shared.next.fetch_max(at, Ordering::AcqRel);
                store.wait_for_events(at, Duration::from_millis(100));
                continue;
            };
            shared.next.store(e.position + 1, Ordering::Release);
            if !filter.matches(&e) {
                continue;
            }
            let view = evs_event::view(&e);
            // SAFETY: `f` is the caller's callback; `view` points into the cursor's
            // buffer, which stays untouched until the next cursor call.
            if unsafe { f(ud.0, &view) } != 0 {
                return Ok(String::new());
            }
        }
    }
    Ok(String::new())
}

/// Starts a subscription that calls `fn(user_data, event)` for every event from
/// `from_position` on (history first, then live events as they are appended), in
/// position order, each exactly once, on a library thread. The callback may call any
/// other evstore function, including `evs_subscription_close` on its own subscription.
///
/// Ownership: `*out` belongs to the caller, who frees it with `evs_subscription_close`;
/// `user_data` stays the caller's and must be usable from another thread.
/// Thread safety: any thread, also a callback. Once `evs_close` has begun on `s` it is
/// refused (from another thread or from a callback still finishing), so that no
/// subscription outlives the store.
/// Returns EVS_OK; EVS_ERR_INVALID_ARGUMENT (NULL store/fn/out, or `evs_close` has begun
/// on `s`: "store is closed or being closed"); EVS_ERR_NOT_FOUND (`from_position` past
/// the next position); EVS_ERR_IO (no thread could be started; on PostgreSQL also the
/// server could not be reached).
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
/// type, NULL `types` with a count, or more than 4096 types.
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
        let handle_ = unsafe { store_arg(s) }?;
        let f = f.ok_or_else(|| Error::invalid("fn is NULL"))?;
        let out = out_arg(out, "out")?;
        // SAFETY: forwarded C API contract.
        let filter = unsafe { filter_arg(stream_prefix, types, types_count) }?;
        let store = handle_.bank.store().clone();
        let next = store.next_position()?;
        if from_position > next {
            return Err(Error::new(
                crate::error::ErrorKind::NotFound,
                format!("position {from_position} is past the end of the log (the next position is {next})"),
            ));
        }
        let ud = UserData(user_data);
        let sub = spawn(&handle_, store, from_position, move |shared| {
            deliver(shared, f, ud, filter)
        })?;
        super::args::write_out(out, sub);
        Ok(EVS_OK)
    })
}

/// Starts a subscription thread running `body` on `store` (the handle `s`'s; `from`: the
/// position it reads from, for its lag), registered
/// with `s` so that `evs_close` stops it; returns the subscription for the caller.
pub(crate) fn spawn(
    s: &evs_store,
    store: Arc<Store>,
    from: u64,
    body: impl FnOnce(&Shared) -> Result<String> + Send + 'static,
) -> Result<*mut evs_subscription> {
    let shared = Arc::new(Shared::new(store, from));
    let sh = shared.clone();
    // Registered under the lock that `stop_all` takes: either close stops this one, or
    // it refuses it, never neither.
    let mut subs = s.subscriptions.lock().unwrap_or_else(|e| e.into_inner());
    if subs.closing {
        return Err(super::gate::closing());
    }
    let thread = std::thread::Builder::new()
        .name("evstore-subscription".into())
        .spawn(move || run_guarded(sh, body))
        .map_err(|e| Error::io("starting the subscription thread", e))?;
    // Finished subscriptions need no stopping: keep the list to the live ones.
    subs.live.retain(|s| !s.is_done());
    subs.live.push(shared.clone());
    drop(subs);
    Ok(Box::into_raw(Box::new(evs_subscription {
        shared,
        thread: Some(thread),
        owner: s.owner,
    })))
}

/// How the subscription stands: returns EVS_OK while it is still running, writing to
/// `*out_status` (which may be NULL) EVS_OK while it delivers, or EVS_ERR_UNAVAILABLE
/// while it is reconnecting (its PostgreSQL server cannot be reached now: it tries again
/// with a backoff of 50 ms doubling to 2 s, and resumes after the last event it read,
/// none skipped or repeated; it does not end for that). Returns EVS_END once it has
/// ended, with `*out_status` set to how it ended: EVS_OK when it was stopped (its
/// callback returned non-zero, `evs_subscription_close`, or its store closed), or the
/// error that ended it (e.g. EVS_ERR_CORRUPT, EVS_ERR_IO, EVS_ERR_INTERNAL), explained
/// by `evs_subscription_error_message`.
///
/// Ownership: `sub` stays the caller's. Thread safety: any thread, until
/// `evs_subscription_close`. Returns EVS_OK, EVS_END, or EVS_ERR_INVALID_ARGUMENT (NULL
/// `sub`).
#[no_mangle]
pub unsafe extern "C" fn evs_subscription_status(
    sub: *mut evs_subscription,
    out_status: *mut evs_status,
) -> evs_status {
    boundary(|| {
        // SAFETY: `sub` is NULL or a live subscription (C API contract).
        let sub = unsafe { handle(sub, "subscription") }?;
        let done = sub.shared.done.lock().unwrap_or_else(|e| e.into_inner());
        match &*done {
            None => {
                let now = match sub.shared.reconnecting.load(Ordering::Acquire) {
                    true => EVS_ERR_UNAVAILABLE,
                    false => EVS_OK,
                };
                write_opt(out_status, now);
                Ok(EVS_OK)
            }
            Some(o) => {
                write_opt(out_status, o.status);
                Ok(EVS_END)
            }
        }
    })
}

/// Why the subscription ended with an error: a sentence, or "" while it runs or when it
/// ended without one (and for NULL `sub`).
///
/// Ownership: the string belongs to `sub`: valid until `evs_subscription_close`; never
/// NULL; do not free. Thread safety: any thread, until `evs_subscription_close`.
/// Returns a string (never NULL).
#[no_mangle]
pub unsafe extern "C" fn evs_subscription_error_message(
    sub: *mut evs_subscription,
) -> *const c_char {
    let empty: *const c_char = c"".as_ptr();
    let found = catch_unwind(AssertUnwindSafe(|| {
        // SAFETY: `sub` is NULL or a live subscription (C API contract).
        let Some(sub) = (unsafe { sub.as_ref() }) else {
            return empty;
        };
        let done = sub.shared.done.lock().unwrap_or_else(|e| e.into_inner());
        // The CString lives in `shared` until evs_subscription_close drops it.
        done.as_ref().map_or(empty, |o| o.message.as_ptr())
    }));
    found.unwrap_or(empty)
}

/// Stops a subscription and frees it. Returns only after the callback thread has
/// finished (when called from inside the subscription's own callback, it returns at once
/// and the callback is not called again after it returns). NULL is a no-op.
///
/// Ownership: takes `sub`. Thread safety: any thread, once per subscription.
/// Returns the status the subscription ended with (see `evs_subscription_status`):
/// EVS_OK when it was stopped (by this call, its callback or its store's close), or the
/// error that had ended it, with its message as this thread's `evs_last_error_message`.
/// When called from its own callback: EVS_OK. In a process forked after
/// `evs_subscribe`: EVS_ERR_INVALID_ARGUMENT (the handle is left alone, its memory leaked).
#[no_mangle]
pub unsafe extern "C" fn evs_subscription_close(sub: *mut evs_subscription) -> evs_status {
    if sub.is_null() {
        return EVS_OK;
    }
    boundary(|| {
        // SAFETY: `sub` came from Box::into_raw in evs_subscribe and is freed once.
        let mut sub = unsafe { Box::from_raw(sub) };
        if let Err(e) = sub.owner.check("subscription") {
            // Its thread is the parent's: there is none here to wait for. Leaked.
            std::mem::forget(sub);
            return Err(e);
        }
        sub.shared.stop_and_wait();
        if sub.shared.on_own_thread() {
            return Ok(EVS_OK);
        }
        if let Some(t) = sub.thread.take() {
            let _ = t.join();
        }
        let done = sub.shared.done.lock().unwrap_or_else(|e| e.into_inner());
        match &*done {
            Some(o) if o.status != EVS_OK => {
                record_error(o.status, &o.message.to_string_lossy(), o.detail);
                Ok(o.status)
            }
            _ => Ok(EVS_OK),
        }
    })
}

/// Stops every subscription of a store that is closing, and waits for their threads;
/// from here on `evs_subscribe` on the store is refused (also from the callbacks that
/// are still finishing).
pub(crate) fn stop_all(store: &evs_store) {
    let subs = {
        let mut r = store
            .subscriptions
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        r.closing = true;
        std::mem::take(&mut r.live)
    };
    for s in subs {
        s.stop_and_wait();
    }
}

/// Each running subscription's lag and reconnection counters, in the Prometheus text
/// format, labelled by its number among the store's running subscriptions (in the order
/// they were started): `evstore_subscription_lag_events` (positions from the one after
/// the last event it read to `next`, the store's next position), whether it is
/// reconnecting, and how often it started to.
pub(crate) fn write_metrics(store: &evs_store, next: u64, out: &mut String) {
    use std::fmt::Write;
    let subs = store
        .subscriptions
        .lock()
        .unwrap_or_else(|e| e.into_inner());
    let live: Vec<&Arc<Shared>> = subs.live.iter().filter(|s| !s.is_done()).collect();
    let families = [
        (
            "evstore_subscription_lag_events",
            "gauge",
            "Positions between a subscription's next and the store's next position.",
        ),
        (
            "evstore_subscription_reconnecting",
            "gauge",
            "1 while a subscription cannot reach its server and tries again.",
        ),
        (
            "evstore_subscription_reconnects_total",
            "counter",
            "Times a subscription lost its server and started to reconnect.",
        ),
    ];
    for (k, (name, kind, help)) in families.iter().enumerate() {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
        for (i, s) in live.iter().enumerate() {
            let value = match k {
                0 => next.saturating_sub(s.next.load(Ordering::Acquire)),
                1 => u64::from(s.reconnecting.load(Ordering::Acquire)),
                _ => s.reconnects.load(Ordering::Relaxed),
            };
            let _ = writeln!(out, "{name}{{subscription=\"{i}\"}} {value}");
        }
    }
}

/// Subscriptions of a store that are still delivering.
pub(crate) fn live_count(store: &evs_store) -> u64 {
    let subs = store
        .subscriptions
        .lock()
        .unwrap_or_else(|e| e.into_inner());
    subs.live.iter().filter(|s| !s.is_done()).count() as u64
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shared(dir: &std::path::Path) -> Arc<Shared> {
        let (store, _) =
            Store::open(dir.join("s"), Default::default(), Vec::new()).expect("store opens");
        Arc::new(Shared::new(Arc::new(store), 0))
    }

    fn outcome(sh: &Shared) -> (evs_status, String) {
        let done = sh.done.lock().unwrap();
        let o = done.as_ref().expect("the subscription has ended");
        (o.status, o.message.to_string_lossy().into_owned())
    }

    #[test]
    fn a_panic_on_the_subscription_thread_ends_it_with_a_status_and_close_returns() {
        let dir = tempfile::tempdir().unwrap();
        let sh = shared(dir.path());
        let t = {
            let sh = sh.clone();
            std::thread::spawn(move || run_guarded(sh, |_| panic!("boom in delivery")))
        };
        sh.stop_and_wait();
        t.join().unwrap();
        let (status, message) = outcome(&sh);
        assert_eq!(status, EVS_ERR_INTERNAL);
        assert!(message.contains("boom in delivery"), "{message}");
    }

    #[test]
    fn an_error_ends_the_subscription_with_its_status_and_message() {
        let dir = tempfile::tempdir().unwrap();
        let sh = shared(dir.path());
        run_guarded(sh.clone(), |_| {
            Err(Error::corrupt("the record at position 3 is damaged"))
        });
        assert_eq!(
            outcome(&sh),
            (
                EVS_ERR_CORRUPT,
                "the record at position 3 is damaged".into()
            )
        );
        sh.stop_and_wait();
    }
}
