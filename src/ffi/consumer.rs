//! Durable consumers through C (docs/consumers.md): the pull form (`evs_consumer_*`),
//! the callback form (`evs_subscribe_durable`, on a subscription thread), the atomic
//! append and checkpoint, and the operations (list, reset, delete, parked events).

use super::args::{handle, handle_mut, out_arg, str_arg, write_opt, write_out};
use super::extensible::{extensible, out_struct};
use super::status::*;
use super::store::{evs_event, evs_store, evs_stream_append, store_arg};
use super::subscription::{evs_subscription, filter_arg, UserData};
use crate::error::{Error, ErrorKind, Result};
use crate::store::consumer::{ConsumerInfo, Parked};
use crate::store::consumer_run::{self, Consumer, ConsumerOptions, Retried};
use std::ffi::{c_char, c_void, CString};
use std::time::Duration;

/// `evs_consumer_options.start_position`: a new consumer starts at the log's end.
pub const EVS_CONSUMER_START_END: u64 = u64::MAX;
/// `evs_consumer_options.max_retries`: retry an event without limit.
pub const EVS_CONSUMER_RETRIES_UNLIMITED: u32 = u32::MAX;
/// A durable subscription's callback: the event is handled (acknowledged on return).
pub const EVS_CONSUMER_ACK: i32 = 0;
/// A durable subscription's callback: deliver the event again after the backoff.
pub const EVS_CONSUMER_RETRY: i32 = -1;

/// How a consumer runs (caller-allocated: set `struct_size`, see `EVS_STRUCT_INIT`; a
/// zero field means its default). Pass NULL for every default.
#[repr(C)]
pub struct evs_consumer_options {
    /// sizeof(evs_consumer_options) as the caller's header has it; never changed.
    pub struct_size: usize,
    /// Where a consumer without a checkpoint starts (default 0; past the log's end, e.g.
    /// EVS_CONSUMER_START_END: at the end when it is first opened).
    pub start_position: u64,
    /// Only events of streams whose name starts with it (NULL: any stream).
    pub stream_prefix: *const c_char,
    /// Only events of these types (`types_count` of them; 0: any type; at most 4096).
    pub types: *const *const c_char,
    pub types_count: usize,
    /// A checkpoint after this many acknowledgements (default 100).
    pub checkpoint_every: u64,
    /// A checkpoint once this long passed with acknowledgements unwritten (default 1000).
    pub checkpoint_interval_ms: u32,
    /// Attempts of one event before it is parked (default 5;
    /// EVS_CONSUMER_RETRIES_UNLIMITED: no limit).
    pub max_retries: u32,
    /// The first retry's backoff (default 100), doubled per attempt up to
    /// `retry_backoff_max_ms` (default 10000).
    pub retry_backoff_ms: u32,
    pub retry_backoff_max_ms: u32,
    /// PostgreSQL: the holder's lease in ms (default 10000): the consumer is taken while
    /// it runs, renewed every third of it by the holder; a holder that died (or lost its
    /// server for longer) lets go when it ends. The file engine ignores it (its lock goes
    /// with the process). Added at the end: a caller built against an older header leaves it
    /// out (its default).
    pub lease_ms: u32,
    /// PostgreSQL: a consumer group of this many partitions (default 0: one holder at a
    /// time; at most 4096). Every member (any process, any machine) opens the same name
    /// with the same count; the events are partitioned by a hash of their stream's name
    /// (FNV-1a 64 modulo the count), each partition owned by one member at a time under
    /// `lease_ms`, so that a stream's events go to one member in order; a member that
    /// dies loses its partitions when its lease ends, and another takes each up from its
    /// own checkpoint (docs/consumers.md "Consumer groups"). The file engine refuses a
    /// group (EVS_ERR_INVALID_ARGUMENT). Added at the end, as `lease_ms`.
    pub partitions: u32,
}

extensible!(evs_consumer_options, start_position);

/// An open durable consumer (opaque). One thread at a time; free it with
/// `evs_consumer_close`.
pub struct evs_consumer {
    consumer: Option<Consumer>,
    owner: super::fork::Owner,
    /// Inside a durable subscription's callback: not the caller's to close.
    borrowed: bool,
}

impl evs_consumer {
    fn get(&mut self) -> Result<&mut Consumer> {
        self.owner.check("consumer")?;
        self.consumer
            .as_mut()
            .ok_or_else(|| Error::invalid("the consumer is closed"))
    }
}

/// The options from C (NULL: defaults).
///
/// # Safety
/// `o` is NULL or the caller's struct, its pointers following the C API contract.
unsafe fn options_arg(o: *const evs_consumer_options) -> Result<ConsumerOptions> {
    let mut opts = ConsumerOptions::default();
    if o.is_null() {
        return Ok(opts);
    }
    // SAFETY: one struct of its own struct_size (C API contract).
    let raw = unsafe { super::extensible::input_array(o, 1, 1, "opts") }?;
    let o = &raw[0];
    // SAFETY: forwarded contract for the filter's pointers.
    opts.filter = unsafe { filter_arg(o.stream_prefix, o.types, o.types_count) }?;
    opts.start_position = o.start_position;
    if o.checkpoint_every > 0 {
        opts.checkpoint_every = o.checkpoint_every;
    }
    if o.checkpoint_interval_ms > 0 {
        opts.checkpoint_interval = Duration::from_millis(o.checkpoint_interval_ms.into());
    }
    match o.max_retries {
        0 => {}
        EVS_CONSUMER_RETRIES_UNLIMITED => opts.max_retries = 0,
        n => opts.max_retries = n,
    }
    if o.retry_backoff_ms > 0 {
        opts.retry_backoff = Duration::from_millis(o.retry_backoff_ms.into());
    }
    if o.retry_backoff_max_ms > 0 {
        opts.retry_backoff_max = Duration::from_millis(o.retry_backoff_max_ms.into());
    }
    if o.lease_ms > 0 {
        opts.lease = Duration::from_millis(o.lease_ms.into());
    }
    opts.partitions = o.partitions;
    if opts.retry_backoff_max < opts.retry_backoff {
        return Err(Error::invalid(format!(
            "opts->retry_backoff_max_ms ({} ms) is below opts->retry_backoff_ms ({} ms)",
            opts.retry_backoff_max.as_millis(),
            opts.retry_backoff.as_millis()
        )));
    }
    Ok(opts)
}

/// Opens durable consumer `name` (1..=100 bytes of UTF-8) of `s`: it resumes after its
/// stored checkpoint, or (new) starts at `opts->start_position`. See docs/consumers.md
/// for the contract (at-least-once, checkpoints, where they live).
///
/// Ownership: `*out` is the caller's, freed with `evs_consumer_close`; `opts` and its
/// strings are copied. Thread safety: any thread; the consumer is then used by one
/// thread at a time. Returns EVS_OK; EVS_ERR_INVALID_ARGUMENT (NULL store, name or out;
/// a bad name, options or struct_size; `opts->partitions` on a file store, or not the
/// count of the group, or for a consumer of one holder; a group opened without it);
/// EVS_ERR_LOCKED (the consumer is open already, here or in another process; on
/// PostgreSQL while its holder's lease runs, after the holder died too);
/// EVS_ERR_READ_ONLY never on files (a read-only store keeps its consumers' records in
/// `<store>/consumers/`), on PostgreSQL when the server takes no writes (a standby);
/// EVS_ERR_UNAVAILABLE (PostgreSQL cannot be reached now); EVS_ERR_IO (that directory or
/// a file in it cannot be made or written); EVS_ERR_CORRUPT (a damaged consumer journal).
#[no_mangle]
pub unsafe extern "C" fn evs_consumer_open(
    s: *mut evs_store,
    name: *const c_char,
    opts: *const evs_consumer_options,
    out: *mut *mut evs_consumer,
) -> evs_status {
    boundary(|| {
        // SAFETY: C API contract for each pointer.
        let store = unsafe { store_arg(s) }?;
        // SAFETY: as above.
        let name = unsafe { str_arg(name, "name") }?;
        // SAFETY: as above.
        let opts = unsafe { options_arg(opts) }?;
        let out = out_arg(out, "out")?;
        let c = Consumer::open(store.bank.store().clone(), name, opts)?;
        write_out(
            out,
            Box::into_raw(Box::new(evs_consumer {
                consumer: Some(c),
                owner: store.owner,
                borrowed: false,
            })),
        );
        Ok(EVS_OK)
    })
}

/// Hands out the consumer's next event: a replayed parked event first, then the log's
/// next event that matches the filter, waiting up to `timeout_ms` (0: not at all; < 0:
/// until one comes or the store closes). `*out` is a borrowed view, valid until the next
/// call on `c`.
///
/// Thread safety: the consumer's one thread. Returns EVS_OK (`*out` written); EVS_END
/// (nothing within the timeout); EVS_ERR_INVALID_ARGUMENT (NULL, a bad struct_size, a
/// closed store); EVS_ERR_CORRUPT / EVS_ERR_IO (reading failed; writing a due checkpoint
/// failed).
#[no_mangle]
pub unsafe extern "C" fn evs_consumer_next(
    c: *mut evs_consumer,
    out: *mut evs_event,
    timeout_ms: i32,
) -> evs_status {
    boundary(|| {
        // SAFETY: NULL or a live consumer used by this thread only.
        let c = unsafe { handle_mut(c, "consumer") }?.get()?;
        // SAFETY: NULL or the caller's struct, starting with its size.
        let out = unsafe { out_struct(out, "out") }?;
        let timeout = (timeout_ms >= 0).then(|| Duration::from_millis(timeout_ms as u64));
        match c.next_with(timeout, evs_event::view)? {
            Some(v) => {
                out.write(v);
                Ok(EVS_OK)
            }
            None => Ok(EVS_END),
        }
    })
}

/// Acknowledges every event up to and including `position` (a replayed parked event:
/// that one, which is parked no more). The checkpoint follows at the consumer's interval.
///
/// Thread safety: the consumer's one thread. Returns EVS_OK; EVS_ERR_INVALID_ARGUMENT
/// (NULL; `position` not delivered yet); EVS_ERR_IO, EVS_ERR_UNAVAILABLE (PostgreSQL
/// cannot be reached now) (a due checkpoint could not be written: the acknowledgement
/// stays, to be written by the next one); EVS_ERR_LOCKED (PostgreSQL: another opener
/// took the consumer after this one's lease ran out: nothing is written any more).
#[no_mangle]
pub unsafe extern "C" fn evs_consumer_ack(c: *mut evs_consumer, position: u64) -> evs_status {
    boundary(|| {
        // SAFETY: NULL or a live consumer used by this thread only.
        unsafe { handle_mut(c, "consumer") }?.get()?.ack(position)?;
        Ok(EVS_OK)
    })
}

/// Asks for the event at `position` (delivered, not acknowledged) and the ones after it
/// again, after the backoff; once it had `max_retries` attempts it is parked instead
/// ("gave up after N retries") and delivery goes on. `*out_parked` (may be NULL) says
/// which.
///
/// Thread safety: the consumer's one thread. Returns EVS_OK; EVS_ERR_INVALID_ARGUMENT
/// (NULL; `position` not delivered, or acknowledged); EVS_ERR_IO (parking failed).
#[no_mangle]
pub unsafe extern "C" fn evs_consumer_retry(
    c: *mut evs_consumer,
    position: u64,
    out_parked: *mut bool,
) -> evs_status {
    boundary(|| {
        // SAFETY: NULL or a live consumer used by this thread only.
        let r = unsafe { handle_mut(c, "consumer") }?
            .get()?
            .retry(position)?;
        write_opt(out_parked, r == Retried::Parked);
        Ok(EVS_OK)
    })
}

/// Parks the event at `position` (delivered) with `reason` (UTF-8, cut to 1024 bytes),
/// durably, and acknowledges it: delivery goes on.
///
/// Thread safety: the consumer's one thread. Returns EVS_OK; EVS_ERR_INVALID_ARGUMENT
/// (NULL; a reason not UTF-8; `position` not delivered); EVS_ERR_IO.
#[no_mangle]
pub unsafe extern "C" fn evs_consumer_park(
    c: *mut evs_consumer,
    position: u64,
    reason: *const c_char,
) -> evs_status {
    boundary(|| {
        // SAFETY: NULL or a live consumer used by this thread only.
        let c = unsafe { handle_mut(c, "consumer") }?.get()?;
        // SAFETY: a NUL-terminated string per the contract.
        let reason = unsafe { str_arg(reason, "reason") }?;
        c.park(position, reason)?;
        Ok(EVS_OK)
    })
}

/// Queues parked events for delivery before new ones: the one at `position`, or every
/// one (`UINT64_MAX`). `*out_count` (may be NULL): how many were queued.
///
/// Thread safety: the consumer's one thread. Returns EVS_OK; EVS_ERR_INVALID_ARGUMENT
/// (NULL); EVS_ERR_NOT_FOUND (no parked event at `position`).
#[no_mangle]
pub unsafe extern "C" fn evs_consumer_replay_parked(
    c: *mut evs_consumer,
    position: u64,
    out_count: *mut u64,
) -> evs_status {
    boundary(|| {
        // SAFETY: NULL or a live consumer used by this thread only.
        let c = unsafe { handle_mut(c, "consumer") }?.get()?;
        let n = c.replay_parked((position != u64::MAX).then_some(position))?;
        write_opt(out_count, n);
        Ok(EVS_OK)
    })
}

/// Writes the consumer's checkpoint now (if it moved since the last one).
///
/// Thread safety: the consumer's one thread. Returns EVS_OK; EVS_ERR_INVALID_ARGUMENT
/// (NULL, a closed store); EVS_ERR_IO.
#[no_mangle]
pub unsafe extern "C" fn evs_consumer_checkpoint(c: *mut evs_consumer) -> evs_status {
    boundary(|| {
        // SAFETY: NULL or a live consumer used by this thread only.
        unsafe { handle_mut(c, "consumer") }?.get()?.checkpoint()?;
        Ok(EVS_OK)
    })
}

/// Where the consumer stands: `*out_next` every position before it is handled;
/// `*out_stored` (may be NULL) the checkpoint stored last.
///
/// Thread safety: the consumer's one thread. Returns EVS_OK or EVS_ERR_INVALID_ARGUMENT.
#[no_mangle]
pub unsafe extern "C" fn evs_consumer_position(
    c: *mut evs_consumer,
    out_next: *mut u64,
    out_stored: *mut u64,
) -> evs_status {
    boundary(|| {
        // SAFETY: NULL or a live consumer used by this thread only.
        let c = unsafe { handle_mut(c, "consumer") }?.get()?;
        let out_next = out_arg(out_next, "out_next")?;
        write_out(out_next, c.position());
        write_opt(out_stored, c.stored());
        Ok(EVS_OK)
    })
}

/// The atomic step (exactly-once effects): appends `appends` as `evs_append_multi` does
/// and, in the same step, stores the consumer's checkpoint after `ack_position` (a
/// replayed parked event: its unpark). After any crash both are stored or neither is.
///
/// Thread safety: the consumer's one thread (also its durable subscription's callback).
/// Returns as `evs_append_multi` (nothing is stored on an error, the checkpoint neither),
/// and EVS_ERR_INVALID_ARGUMENT (`ack_position` not delivered; in a group, a replayed
/// parked event), EVS_ERR_READ_ONLY (a read-only store cannot append),
/// EVS_ERR_UNAVAILABLE (PostgreSQL: the step is in doubt; the same call again settles
/// it, storing it once), EVS_ERR_LOCKED (PostgreSQL: the consumer, or a group member's
/// partition of the event, was taken by another after this one's lease ran out:
/// nothing stored), EVS_ERR_STALE (PostgreSQL: a step in doubt was stored, then another
/// change was asked in its place: reopen the consumer).
/// Ownership: as `evs_append_multi`.
#[no_mangle]
pub unsafe extern "C" fn evs_consumer_append(
    c: *mut evs_consumer,
    appends: *const evs_stream_append,
    count: usize,
    ack_position: u64,
    out_first_position: *mut u64,
    out_stream_versions: *mut u64,
) -> evs_status {
    boundary(|| {
        // SAFETY: NULL or a live consumer used by this thread only.
        let c = unsafe { handle_mut(c, "consumer") }?.get()?;
        let store = c.store().clone();
        // SAFETY: forwarded C API contract.
        let r = unsafe {
            super::store::with_appends(&store, appends, count, |plan| {
                c.append_ack(plan, ack_position)
            })
        }?;
        // SAFETY: as above.
        unsafe { super::store::write_append_result(&r, out_first_position, out_stream_versions) };
        Ok(EVS_OK)
    })
}

/// Writes the last checkpoint and closes the consumer (others may open it then). NULL is
/// a no-op. The consumer handed to a durable subscription's callback is not the caller's:
/// closing it is EVS_ERR_INVALID_ARGUMENT.
///
/// Ownership: takes `c` (freed even on an error). Thread safety: the consumer's one
/// thread. Returns EVS_OK; EVS_ERR_INVALID_ARGUMENT (a callback's consumer; a handle
/// from before a fork; the store was closed first: the acknowledgements since the last
/// checkpoint are not stored, and those events come again); EVS_ERR_IO.
#[no_mangle]
pub unsafe extern "C" fn evs_consumer_close(c: *mut evs_consumer) -> evs_status {
    if c.is_null() {
        return EVS_OK;
    }
    boundary(|| {
        // SAFETY: `c` is a live consumer (C API contract).
        if unsafe { &*c }.borrowed {
            return Err(Error::invalid(
                "this consumer belongs to its durable subscription: close the subscription",
            ));
        }
        // SAFETY: `c` came from Box::into_raw in evs_consumer_open and is freed once.
        let mut c = unsafe { Box::from_raw(c) };
        if let Err(e) = c.owner.check("consumer") {
            std::mem::forget(c);
            return Err(e);
        }
        if let Some(consumer) = c.consumer.take() {
            consumer.close()?;
        }
        Ok(EVS_OK)
    })
}

/// A durable subscription's callback: `consumer` is the subscription's (use it for
/// `evs_consumer_park`, `evs_consumer_append`, `evs_consumer_position`; never close it),
/// `event` a view valid during the call. Return EVS_CONSUMER_ACK (handled),
/// EVS_CONSUMER_RETRY (deliver it again after the backoff), or any other value to stop
/// the subscription. It must return normally (see `evs_event_fn`).
pub type evs_consumer_fn = Option<
    unsafe extern "C" fn(
        user_data: *mut c_void,
        consumer: *mut evs_consumer,
        event: *const evs_event,
    ) -> i32,
>;

/// Runs durable consumer `name` on a library thread, calling `fn` with each event (as
/// `evs_consumer_next` hands them out) and acknowledging it when `fn` returns
/// EVS_CONSUMER_ACK. The subscription ends, with its reason in
/// `evs_subscription_error_message` and its status in `evs_subscription_status` (EVS_OK
/// for a stop: by the callback, with the value it returned; by `evs_subscription_close`;
/// by the store's close), writing its last checkpoint first.
///
/// Ownership: `*out` is the caller's, freed with `evs_subscription_close`; `user_data`
/// stays the caller's and must be usable from another thread. Thread safety: any thread.
/// Returns as `evs_consumer_open`, and EVS_ERR_INVALID_ARGUMENT (NULL fn, or `evs_close`
/// has begun), EVS_ERR_IO (no thread could be started).
#[no_mangle]
pub unsafe extern "C" fn evs_subscribe_durable(
    s: *mut evs_store,
    name: *const c_char,
    opts: *const evs_consumer_options,
    f: evs_consumer_fn,
    user_data: *mut c_void,
    out: *mut *mut evs_subscription,
) -> evs_status {
    boundary(|| {
        // SAFETY: C API contract for each pointer.
        let store = unsafe { store_arg(s) }?;
        // SAFETY: as above.
        let name = unsafe { str_arg(name, "name") }?;
        // SAFETY: as above.
        let opts = unsafe { options_arg(opts) }?;
        let f = f.ok_or_else(|| Error::invalid("fn is NULL"))?;
        let out = out_arg(out, "out")?;
        let c = Consumer::open(store.bank.store().clone(), name, opts)?;
        let from = c.position();
        let handle = evs_consumer {
            consumer: Some(c),
            owner: store.owner,
            borrowed: true,
        };
        let ud = UserData(user_data);
        let sub =
            super::subscription::spawn(&store, store.bank.store().clone(), from, move |sh| {
                run_durable(sh, handle, f, ud)
            })?;
        write_out(out, sub);
        Ok(EVS_OK)
    })
}

/// The body of a durable subscription's thread: delivers until told to stop, then
/// writes the last checkpoint. Returns why it stopped.
fn run_durable(
    sh: &super::subscription::Shared,
    mut handle: evs_consumer,
    f: unsafe extern "C" fn(*mut c_void, *mut evs_consumer, *const evs_event) -> i32,
    ud: UserData,
) -> Result<String> {
    let why = deliver_durable(sh, &mut handle, f, &ud);
    let last = handle.consumer.take().map_or(Ok(()), |c| c.close());
    match (why, last) {
        (Err(e), _) => Err(e),
        (Ok(_), Err(e)) if sh.store().is_closed() => Ok(format!(
            "the store closed; the last acknowledgements were not checkpointed ({})",
            e.message
        )),
        (Ok(_), Err(e)) => Err(e.prefixed("writing the last checkpoint: ")),
        (Ok(why), Ok(())) => Ok(why),
    }
}

fn deliver_durable(
    sh: &super::subscription::Shared,
    handle: &mut evs_consumer,
    f: unsafe extern "C" fn(*mut c_void, *mut evs_consumer, *const evs_event) -> i32,
    ud: &UserData,
) -> Result<String> {
    let me: *mut evs_consumer = handle;
    let mut backoff = super::subscription::FIRST_BACKOFF;
    loop {
        if sh.stopping() {
            return Ok("closed by evs_subscription_close (or the store's close)".into());
        }
        if sh.store().is_closed() {
            return Ok("the store closed".into());
        }
        let c = handle.get()?;
        let got = c.next_with(Some(Duration::from_millis(100)), |e| {
            let view = evs_event::view(e);
            // SAFETY: `f` is the caller's callback; `view` points into the consumer's
            // buffer, untouched until the next call on it; `me` is this thread's consumer,
            // which the callback may use (not close) during the call.
            (e.position, unsafe { f(ud.0, me, &view) })
        });
        let (position, verdict) = match got {
            Ok(x) => {
                if sh.reconnected() {
                    backoff = super::subscription::FIRST_BACKOFF;
                }
                match x {
                    Some(x) => x,
                    None => continue,
                }
            }
            Err(e) if sh.store().is_closed() || sh.stopping() => {
                let _ = e;
                continue;
            }
            // The server cannot be reached now (PostgreSQL): waited out as a plain
            // subscription does; the consumer reads on from where it was.
            Err(e) if e.kind == ErrorKind::Unavailable => {
                backoff = sh.back_off(backoff);
                continue;
            }
            Err(e) => return Err(e),
        };
        sh.read_up_to(position + 1);
        match verdict {
            // Acknowledged again if the callback did already (the atomic step, a park):
            // that changes nothing. A checkpoint it made due that the server could not
            // take now stays due (the acknowledgement is kept): waited out.
            EVS_CONSUMER_ACK => match handle.get()?.ack(position) {
                Err(e) if e.kind == ErrorKind::Unavailable => backoff = sh.back_off(backoff),
                r => r?,
            },
            EVS_CONSUMER_RETRY => {
                // A retry that parks the event writes: asked again until the server
                // takes it (or the subscription stops), so that the event is not passed.
                let retried = loop {
                    match handle.get()?.retry(position) {
                        Err(e) if e.kind == ErrorKind::Unavailable && !sh.stopping() => {
                            backoff = sh.back_off(backoff)
                        }
                        r => break r?,
                    }
                };
                if let Retried::After(d) = retried {
                    // Waited here, where a stop is seen: `next_with` then finds it due.
                    let until = std::time::Instant::now() + d;
                    while std::time::Instant::now() < until && !sh.stopping() {
                        std::thread::sleep(Duration::from_millis(10).min(d));
                    }
                }
            }
            v => return Ok(format!("stopped by its callback, which returned {v}")),
        }
    }
}

/// One consumer as listed (caller-allocated: set `struct_size`).
#[repr(C)]
pub struct evs_consumer_info {
    /// sizeof(evs_consumer_info) as the caller's header has it; never changed.
    pub struct_size: usize,
    /// Its name: NUL-terminated, owned by the list (valid until `evs_consumer_list_free`).
    pub name: *const c_char,
    /// Its checkpoint: the next position it will be given.
    pub next_position: u64,
    /// The store's next position minus the checkpoint.
    pub lag_events: u64,
    /// The store's clock minus the timestamp of the first event after the checkpoint (0
    /// when none).
    pub lag_us: u64,
    /// Events parked now.
    pub parked: u64,
    /// Open now, in this process or another.
    pub open: bool,
}

extensible!(evs_consumer_info, name);

/// The consumers of a store (opaque), from `evs_list_consumers`.
pub struct evs_consumer_list {
    items: Vec<(CString, ConsumerInfo)>,
}

/// Lists every consumer of `s` with its checkpoint, lag and parked count, by name.
///
/// Ownership: `*out` is the caller's, freed with `evs_consumer_list_free`. Thread
/// safety: any thread. Returns EVS_OK; EVS_ERR_INVALID_ARGUMENT (NULL); EVS_ERR_IO;
/// EVS_ERR_CORRUPT (a damaged consumer journal); EVS_ERR_UNAVAILABLE (PostgreSQL). A
/// group is listed with the lowest checkpoint of its partitions, open while a member
/// lives.
#[no_mangle]
pub unsafe extern "C" fn evs_list_consumers(
    s: *mut evs_store,
    out: *mut *mut evs_consumer_list,
) -> evs_status {
    boundary(|| {
        // SAFETY: C API contract for each pointer.
        let store = unsafe { store_arg(s) }?;
        let out = out_arg(out, "out")?;
        let items = consumer_run::list(store.bank.store())?
            .into_iter()
            .map(|i| (CString::new(i.name.clone()).unwrap_or_default(), i))
            .collect();
        write_out(out, Box::into_raw(Box::new(evs_consumer_list { items })));
        Ok(EVS_OK)
    })
}

/// The number of consumers in `list` (0 for NULL). Thread safety: any thread.
#[no_mangle]
pub unsafe extern "C" fn evs_consumer_list_count(list: *const evs_consumer_list) -> usize {
    // SAFETY: NULL or a live list (C API contract).
    unsafe { list.as_ref() }.map_or(0, |l| l.items.len())
}

/// Fills `*out` with consumer `i` of `list`.
///
/// Thread safety: any thread. Returns EVS_OK; EVS_ERR_INVALID_ARGUMENT (NULL, a bad
/// struct_size); EVS_ERR_NOT_FOUND (`i` past the end).
#[no_mangle]
pub unsafe extern "C" fn evs_consumer_list_get(
    list: *const evs_consumer_list,
    i: usize,
    out: *mut evs_consumer_info,
) -> evs_status {
    boundary(|| {
        // SAFETY: NULL or a live list (C API contract).
        let list = unsafe { handle(list, "list") }?;
        // SAFETY: NULL or the caller's struct, starting with its size.
        let out = unsafe { out_struct(out, "out") }?;
        let (name, info) = list.items.get(i).ok_or_else(|| {
            Error::new(
                ErrorKind::NotFound,
                format!(
                    "the list has {} consumers; there is no {i}",
                    list.items.len()
                ),
            )
        })?;
        out.write(evs_consumer_info {
            struct_size: std::mem::size_of::<evs_consumer_info>(),
            name: name.as_ptr(),
            next_position: info.next.unwrap_or(0),
            lag_events: info.lag_events,
            lag_us: info.lag_us,
            parked: info.parked,
            open: info.open,
        });
        Ok(EVS_OK)
    })
}

/// Frees a list from `evs_list_consumers` or `evs_list_parked`'s. NULL is a no-op.
/// Ownership: takes `list`.
#[no_mangle]
pub unsafe extern "C" fn evs_consumer_list_free(list: *mut evs_consumer_list) {
    if !list.is_null() {
        // SAFETY: from Box::into_raw in evs_list_consumers, freed once.
        drop(unsafe { Box::from_raw(list) });
    }
}

/// A parked event (caller-allocated: set `struct_size`).
#[repr(C)]
pub struct evs_parked_event {
    /// sizeof(evs_parked_event) as the caller's header has it; never changed.
    pub struct_size: usize,
    pub position: u64,
    /// When it was parked (microseconds since the Unix epoch).
    pub parked_at_us: u64,
    /// Why: NUL-terminated, owned by the list (valid until `evs_parked_list_free`).
    pub reason: *const c_char,
}

extensible!(evs_parked_event, position);

/// The parked events of a consumer (opaque), from `evs_list_parked`.
pub struct evs_parked_list {
    items: Vec<(CString, Parked)>,
}

/// Lists the parked events of consumer `name` (open or not), by position.
///
/// Ownership: `*out` is the caller's, freed with `evs_parked_list_free`. Thread safety:
/// any thread. Returns EVS_OK; EVS_ERR_INVALID_ARGUMENT (NULL, a bad name);
/// EVS_ERR_NOT_FOUND (no such consumer); EVS_ERR_IO; EVS_ERR_CORRUPT.
#[no_mangle]
pub unsafe extern "C" fn evs_list_parked(
    s: *mut evs_store,
    name: *const c_char,
    out: *mut *mut evs_parked_list,
) -> evs_status {
    boundary(|| {
        // SAFETY: C API contract for each pointer.
        let store = unsafe { store_arg(s) }?;
        // SAFETY: as above.
        let name = unsafe { str_arg(name, "name") }?;
        let out = out_arg(out, "out")?;
        let items = consumer_run::parked_of(store.bank.store(), name)?
            .into_iter()
            .map(|p| {
                (
                    CString::new(p.reason.replace('\0', " ")).unwrap_or_default(),
                    p,
                )
            })
            .collect();
        write_out(out, Box::into_raw(Box::new(evs_parked_list { items })));
        Ok(EVS_OK)
    })
}

/// The number of events in `list` (0 for NULL). Thread safety: any thread.
#[no_mangle]
pub unsafe extern "C" fn evs_parked_list_count(list: *const evs_parked_list) -> usize {
    // SAFETY: NULL or a live list (C API contract).
    unsafe { list.as_ref() }.map_or(0, |l| l.items.len())
}

/// Fills `*out` with parked event `i` of `list`.
///
/// Thread safety: any thread. Returns EVS_OK; EVS_ERR_INVALID_ARGUMENT (NULL, a bad
/// struct_size); EVS_ERR_NOT_FOUND (`i` past the end).
#[no_mangle]
pub unsafe extern "C" fn evs_parked_list_get(
    list: *const evs_parked_list,
    i: usize,
    out: *mut evs_parked_event,
) -> evs_status {
    boundary(|| {
        // SAFETY: NULL or a live list (C API contract).
        let list = unsafe { handle(list, "list") }?;
        // SAFETY: NULL or the caller's struct, starting with its size.
        let out = unsafe { out_struct(out, "out") }?;
        let (reason, p) = list.items.get(i).ok_or_else(|| {
            Error::new(
                ErrorKind::NotFound,
                format!(
                    "the list has {} parked events; there is no {i}",
                    list.items.len()
                ),
            )
        })?;
        out.write(evs_parked_event {
            struct_size: std::mem::size_of::<evs_parked_event>(),
            position: p.position,
            parked_at_us: p.at_us,
            reason: reason.as_ptr(),
        });
        Ok(EVS_OK)
    })
}

/// Frees a list from `evs_list_parked`. NULL is a no-op. Ownership: takes `list`.
#[no_mangle]
pub unsafe extern "C" fn evs_parked_list_free(list: *mut evs_parked_list) {
    if !list.is_null() {
        // SAFETY: from Box::into_raw in evs_list_parked, freed once.
        drop(unsafe { Box::from_raw(list) });
    }
}

/// Resets consumer `name` (created if new) so that it is next given the events from
/// `position` on. The consumer must not be open.
///
/// Thread safety: any thread. Returns EVS_OK; EVS_ERR_INVALID_ARGUMENT (NULL, a bad
/// name); EVS_ERR_NOT_FOUND (`position` past the next position); EVS_ERR_LOCKED (the
/// consumer is open, here or elsewhere); EVS_ERR_IO.
#[no_mangle]
pub unsafe extern "C" fn evs_consumer_reset(
    s: *mut evs_store,
    name: *const c_char,
    position: u64,
) -> evs_status {
    boundary(|| {
        // SAFETY: C API contract for each pointer.
        let store = unsafe { store_arg(s) }?;
        // SAFETY: as above.
        let name = unsafe { str_arg(name, "name") }?;
        consumer_run::reset(store.bank.store(), name, position)?;
        Ok(EVS_OK)
    })
}

/// Deletes consumer `name`: its checkpoint and parked events (the name starts afresh).
/// The consumer must not be open.
///
/// Thread safety: any thread. Returns EVS_OK; EVS_ERR_INVALID_ARGUMENT (NULL, a bad
/// name); EVS_ERR_NOT_FOUND (no such consumer); EVS_ERR_LOCKED (it is open); EVS_ERR_IO.
#[no_mangle]
pub unsafe extern "C" fn evs_consumer_delete(s: *mut evs_store, name: *const c_char) -> evs_status {
    boundary(|| {
        // SAFETY: C API contract for each pointer.
        let store = unsafe { store_arg(s) }?;
        // SAFETY: as above.
        let name = unsafe { str_arg(name, "name") }?;
        consumer_run::delete(store.bank.store(), name)?;
        Ok(EVS_OK)
    })
}
