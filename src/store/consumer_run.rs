//! The durable consumer itself, the same over every engine (docs/consumers.md): it reads
//! the log from its checkpoint through its filter, takes acknowledgements, writes
//! checkpoints at its interval, retries with a bounded backoff, parks and replays.

use super::consumer::{
    bounded_reason, ConsumerChange, ConsumerClaim, ConsumerInfo, ConsumerOp, ConsumerState, Filter,
    Parked,
};
use super::{AppendResult, Event, EventRef, Store, StreamAppend, TailCursor};
use crate::error::{Error, ErrorKind, Result};
use std::collections::{BTreeSet, VecDeque};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// How a consumer runs; `Default` has the documented defaults.
#[derive(Debug, Clone)]
pub struct ConsumerOptions {
    /// Where a consumer without a checkpoint starts; past the log's end: at its end.
    pub start_position: u64,
    pub filter: Filter,
    /// A checkpoint after this many acknowledgements (at least 1).
    pub checkpoint_every: u64,
    /// A checkpoint once this much time passed with acknowledgements not yet written.
    pub checkpoint_interval: Duration,
    /// Attempts of one event before it is parked (0: no limit).
    pub max_retries: u32,
    pub retry_backoff: Duration,
    pub retry_backoff_max: Duration,
    /// PostgreSQL: how long the consumer stays taken after its holder stopped renewing
    /// its lease (a process that died); renewed every third of it.
    pub lease: Duration,
    /// PostgreSQL: a consumer group of this many partitions (0: one holder at a time).
    /// Every member opens it with the same count; each owns some partitions under
    /// `lease` (docs/consumers.md "Consumer groups").
    pub partitions: u32,
}

/// The lease of a claim that only resets or deletes a consumer (given up at once).
const BRIEF_LEASE: Duration = Duration::from_secs(30);

impl Default for ConsumerOptions {
    fn default() -> Self {
        ConsumerOptions {
            start_position: 0,
            filter: Filter::default(),
            checkpoint_every: 100,
            checkpoint_interval: Duration::from_millis(1000),
            max_retries: 5,
            retry_backoff: Duration::from_millis(100),
            retry_backoff_max: Duration::from_millis(10_000),
            lease: Duration::from_millis(10_000),
            partitions: 0,
        }
    }
}

/// Monotonic time from the kernel's coarse clock (`CLOCK_MONOTONIC_COARSE`: a tick's
/// resolution, a few ms, enough for checkpoint intervals of milliseconds). The consumer
/// looks at the time on every call (the checkpoint interval); the precise clock would
/// cost a fifth of a catching-up consumer's time per event (bench workload 8).
#[inline(always)]
fn coarse_now() -> Duration {
    // CLOCK_MONOTONIC_COARSE is a Linux clock id (the engine is Linux-only: fallocate).
    match crate::store::clock_now(libc::CLOCK_MONOTONIC_COARSE) {
        Some((s, ns)) => Duration::new(s, ns),
        None => precise_now(),
    }
}

/// `coarse_now` where the coarse clock fails (not expected on Linux): the precise clock,
/// since the process began.
#[cold]
fn precise_now() -> Duration {
    static START: std::sync::OnceLock<Instant> = std::sync::OnceLock::new();
    START.get_or_init(Instant::now).elapsed()
}

/// What a retry came to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Retried {
    /// The event comes again after this backoff.
    After(Duration),
    /// It had its attempts: it is parked now, and delivery goes on.
    Parked,
}

/// A durable consumer, open (its claim held) until dropped or closed.
pub struct Consumer {
    store: Arc<Store>,
    claim: ConsumerClaim,
    opts: ConsumerOptions,
    cursor: Box<dyn TailCursor>,
    /// The state as this consumer wrote it (starting from the stored one).
    state: ConsumerState,
    /// The checkpoint stored last.
    stored_next: u64,
    /// Every position before this is handled (acknowledged, or passed by the filter
    /// while nothing was outstanding).
    acked_next: u64,
    /// The position after the last one the cursor gave out.
    delivered_next: u64,
    /// Acknowledgements, and positions passed over, since the last checkpoint.
    unwritten_acks: u64,
    unwritten_passed: u64,
    /// When the checkpoint interval since the last checkpoint ends, on the coarse clock
    /// (`coarse_now`): the time each call compares, without arithmetic of its own.
    checkpoint_due: Duration,
    /// Parked events queued for a replay, and those replayed but not yet acknowledged.
    replay: VecDeque<u64>,
    replayed: BTreeSet<u64>,
    /// The replayed event handed out last (its view borrows it).
    held: Option<Event>,
    /// A retry's wait: no event before then.
    retry_due: Option<Instant>,
    /// The event being retried and its attempts so far.
    attempts: (u64, u32),
    /// A group member's partitions (`None`: a consumer of one holder).
    group: Option<Group>,
    /// No filter and no group: every event is this consumer's (asked once, not per event).
    every_event: bool,
}

/// Whether the event is this member's to handle (always, outside a group): its stream's
/// partition is owned, and the event is not before that partition's start.
fn mine(group: &Option<Group>, e: &EventRef<'_>) -> bool {
    match group {
        None => true,
        Some(g) => {
            let p = super::consumer::partition_of(e.stream, g.partitions);
            g.owned.get(&p).is_some_and(|&from| e.position >= from)
        }
    }
}

/// What a group member owns: its partitions, each with the position its events are
/// handled from (its checkpoint when taken), and when it balances next.
struct Group {
    partitions: u32,
    owned: std::collections::BTreeMap<u32, u64>,
    /// On the coarse clock (`coarse_now`).
    due: Duration,
    /// The partition of the event delivered last: (its position, its partition).
    last: Option<(u64, u32)>,
}

impl Consumer {
    /// Opens consumer `name` of `store` (refused while it is open elsewhere); with
    /// `opts.partitions`, joins it as a member of its group.
    pub fn open(store: Arc<Store>, name: &str, opts: ConsumerOptions) -> Result<Consumer> {
        if opts.partitions > 0 {
            return Consumer::join(store, name, opts);
        }
        let claim = store.consumer_claim(name, opts.lease)?;
        if claim.partitions > 0 {
            return Err(Error::invalid(format!(
                "consumer '{name}' is a group of {} partitions: open it with partitions = {} \
                 (or delete it first)",
                claim.partitions, claim.partitions
            )));
        }
        Consumer::start(store, claim, opts, None)
    }

    /// Joins group `name` and takes its first share of partitions.
    fn join(store: Arc<Store>, name: &str, opts: ConsumerOptions) -> Result<Consumer> {
        let claim = store.group_join(name, opts.partitions, opts.start_position, opts.lease)?;
        let group = Group {
            partitions: opts.partitions,
            owned: Default::default(),
            due: Duration::ZERO,
            last: None,
        };
        let mut c = Consumer::start(store, claim, opts, Some(group))?;
        c.balance()?;
        Ok(c)
    }

    /// The consumer over `claim`, reading from its checkpoint.
    fn start(
        store: Arc<Store>,
        claim: ConsumerClaim,
        opts: ConsumerOptions,
        group: Option<Group>,
    ) -> Result<Consumer> {
        let head = store.next_position()?;
        let next = claim.state.next().unwrap_or(opts.start_position).min(head);
        let cursor = store.read_all(next)?;
        let state = claim.state.clone();
        let opts = ConsumerOptions {
            checkpoint_every: opts.checkpoint_every.max(1),
            ..opts
        };
        let mut c = Consumer {
            store,
            claim,
            opts,
            cursor,
            stored_next: state.next().unwrap_or(next),
            state,
            acked_next: next,
            delivered_next: next,
            unwritten_acks: 0,
            unwritten_passed: 0,
            checkpoint_due: Duration::ZERO,
            replay: VecDeque::new(),
            replayed: BTreeSet::new(),
            held: None,
            retry_due: None,
            attempts: (u64::MAX, 0),
            group,
            every_event: false,
        };
        c.checkpoint_due = c.interval_from(coarse_now());
        c.every_event = c.opts.filter == Filter::default() && c.group.is_none();
        if !c.state.exists() && c.group.is_none() {
            // A new consumer: its start is stored at once (it is listed from now on, and
            // a start at the log's end stays where the end was).
            let at = c.write_op(ConsumerChange::Checkpoint { next })?;
            c.note_stored(next, at);
        }
        Ok(c)
    }

    /// A group member's balance (`Store::group_balance`): stores its progress for the
    /// partitions it owns, takes its fair share, and when what it owns changed reads
    /// again from the lowest checkpoint of its partitions (the events of each partition
    /// from that partition's own). Only while nothing delivered is unacknowledged.
    fn balance(&mut self) -> Result<()> {
        let Some(g) = &self.group else {
            return Ok(());
        };
        let every = (self.opts.lease / 3).max(Duration::from_millis(10));
        let acked = (self.acked_next > self.stored_next).then_some(self.acked_next);
        let now = self.store.group_balance(&self.claim.name, acked)?;
        let owned: std::collections::BTreeMap<u32, u64> = now.into_iter().collect();
        let same = owned.keys().eq(g.owned.keys());
        if acked.is_some() {
            self.note_stored(self.acked_next, None);
        }
        let from = match owned.values().min() {
            Some(&m) => m,
            None => self.store.next_position()?,
        };
        let g = self.group.as_mut().expect("a group member");
        g.due = coarse_now() + every;
        if same && !g.owned.is_empty() {
            // The same partitions: their checkpoints moved to where this member is.
            g.owned = owned;
            return Ok(());
        }
        g.owned = owned;
        self.cursor = self.store.read_all(from)?;
        self.acked_next = from;
        self.delivered_next = from;
        self.stored_next = from;
        self.unwritten_acks = 0;
        self.unwritten_passed = 0;
        Ok(())
    }

    /// Balances a group member when it is due and nothing delivered is unacknowledged.
    #[inline(always)]
    fn maybe_balance(&mut self) -> Result<()> {
        match &self.group {
            Some(g)
                if coarse_now() >= g.due
                    && self.acked_next >= self.delivered_next
                    && self.replayed.is_empty() =>
            {
                self.balance()
            }
            _ => Ok(()),
        }
    }

    pub fn name(&self) -> &str {
        &self.claim.name
    }

    /// Every position before this is handled.
    pub fn position(&self) -> u64 {
        self.acked_next
    }

    /// The checkpoint stored last.
    pub fn stored(&self) -> u64 {
        self.stored_next
    }

    pub fn store(&self) -> &Arc<Store> {
        &self.store
    }

    /// Hands the next event to `f` (a replayed parked event first, then the log's next
    /// matching one), waiting up to `timeout` (`None`: until one comes or the store
    /// closes). `Ok(None)`: nothing within the timeout.
    pub fn next_with<R>(
        &mut self,
        timeout: Option<Duration>,
        f: impl FnOnce(&EventRef<'_>) -> R,
    ) -> Result<Option<R>> {
        // The deadline is taken when it is first needed (a retry's wait, or no event
        // now): a call that finds its event at once reads no clock for it.
        let mut taken: Option<Option<Instant>> = None;
        let mut deadline = || *taken.get_or_insert_with(|| timeout.map(|t| Instant::now() + t));
        let left = |d: Option<Instant>| d.map(|d| d.saturating_duration_since(Instant::now()));
        self.maybe_checkpoint()?;
        self.maybe_balance()?;
        if let Some(due) = self.retry_due {
            let deadline = deadline();
            let wait = due.saturating_duration_since(Instant::now());
            if left(deadline).is_some_and(|l| l < wait) {
                std::thread::sleep(left(deadline).unwrap_or_default());
                return Ok(None);
            }
            std::thread::sleep(wait);
            self.retry_due = None;
        }
        while let Some(p) = self.replay.pop_front() {
            match self.store.read_event(p) {
                Ok(e) => {
                    self.replayed.insert(p);
                    let e = self.held.insert(e);
                    return Ok(Some(f(&e.as_ref())));
                }
                // Removed since it was parked: nothing to replay, parked no more.
                Err(e) if e.kind == ErrorKind::NotFound => {
                    self.write(ConsumerChange::Unpark { position: p })?
                }
                Err(e) => return Err(e),
            }
        }
        loop {
            if self.store.is_closed() {
                return Err(Error::invalid("the store is closed"));
            }
            let outstanding = self.acked_next < self.delivered_next;
            match self.cursor.next()? {
                Some(e)
                    if self.every_event
                        || (self.opts.filter.matches(&e) && mine(&self.group, &e)) =>
                {
                    self.delivered_next = e.position + 1;
                    if let Some(g) = &mut self.group {
                        g.last = Some((
                            e.position,
                            super::consumer::partition_of(e.stream, g.partitions),
                        ));
                    }
                    return Ok(Some(f(&e)));
                }
                Some(e) => {
                    let after = e.position + 1;
                    self.delivered_next = after;
                    if !outstanding {
                        self.pass_to(after);
                    }
                    continue;
                }
                None => {}
            }
            // Positions with no event (entries, removed events) count as passed too.
            let at = self.cursor.position();
            self.delivered_next = self.delivered_next.max(at);
            if !outstanding {
                self.pass_to(at);
            }
            self.maybe_checkpoint()?;
            if self.group.is_some() {
                let before = self.delivered_next;
                self.maybe_balance()?;
                if self.delivered_next != before {
                    // It reads from elsewhere now (its partitions changed).
                    continue;
                }
            }
            let wait = match left(deadline()) {
                Some(l) if l.is_zero() => return Ok(None),
                Some(l) => l.min(Duration::from_millis(100)),
                None => Duration::from_millis(100),
            };
            let wait = wait.min(self.opts.checkpoint_interval.max(Duration::from_millis(1)));
            self.store.wait_for_events(at, wait);
        }
    }

    /// Everything before `next` is handled though nothing was acknowledged: positions the
    /// filter passed over while nothing was outstanding.
    fn pass_to(&mut self, next: u64) {
        if next > self.acked_next {
            self.unwritten_passed += next - self.acked_next;
            self.acked_next = next;
        }
    }

    /// Checks that `position` was handed out and is not handled yet (or is a replayed
    /// event): what ack, retry, park and the atomic step may name.
    #[inline]
    fn check_delivered(&self, position: u64, what: &str) -> Result<()> {
        if position < self.delivered_next || self.replayed.contains(&position) {
            return Ok(());
        }
        Err(self.not_delivered(position, what))
    }

    #[cold]
    fn not_delivered(&self, position: u64, what: &str) -> Error {
        Error::invalid(format!(
            "{what} position {position}: it was not delivered to consumer '{}' yet (the next to deliver is {})",
            self.claim.name, self.delivered_next
        ))
    }

    /// Everything up to and including `position` is handled; a replayed event is parked
    /// no more.
    pub fn ack(&mut self, position: u64) -> Result<()> {
        self.check_delivered(position, "acknowledging")?;
        if !self.replayed.is_empty() && self.replayed.remove(&position) {
            return self.write(ConsumerChange::Unpark { position });
        }
        if position + 1 > self.acked_next {
            self.acked_next = position + 1;
            self.unwritten_acks += 1;
        }
        if self.attempts.0 <= position {
            self.attempts = (u64::MAX, 0);
        }
        self.maybe_checkpoint()
    }

    /// Writes a checkpoint if the interval says so. Every call of the consumer asks, so
    /// the question is kept to two comparisons and a coarse clock read; the write is
    /// out of line.
    #[inline(always)]
    fn maybe_checkpoint(&mut self) -> Result<()> {
        if self.acked_next <= self.stored_next {
            return Ok(());
        }
        let by_count = self.unwritten_acks + self.unwritten_passed >= self.opts.checkpoint_every;
        if by_count || (self.unwritten_acks > 0 && coarse_now() >= self.checkpoint_due) {
            return self.checkpoint_due_now();
        }
        Ok(())
    }

    #[cold]
    #[inline(never)]
    fn checkpoint_due_now(&mut self) -> Result<()> {
        self.checkpoint()
    }

    /// The end of a checkpoint interval that starts at `start` (coarse clock).
    fn interval_from(&self, start: Duration) -> Duration {
        start
            .checked_add(self.opts.checkpoint_interval)
            .unwrap_or(Duration::MAX)
    }

    /// Writes the checkpoint now (if it moved).
    pub fn checkpoint(&mut self) -> Result<()> {
        if self.acked_next <= self.stored_next {
            return Ok(());
        }
        let next = self.acked_next;
        let at = self.write_op(ConsumerChange::Checkpoint { next })?;
        self.note_stored(next, at);
        Ok(())
    }

    /// Notes checkpoint `next` as stored; `at`: its record's position in the log (a
    /// record at `next` counts itself as handled, see the file engine's `settle`).
    fn note_stored(&mut self, next: u64, at: Option<u64>) {
        let next = if at == Some(next) { next + 1 } else { next };
        self.stored_next = self.stored_next.max(next);
        self.acked_next = self.acked_next.max(next);
        self.unwritten_acks = 0;
        self.unwritten_passed = 0;
        self.checkpoint_due = self.interval_from(coarse_now());
    }

    fn next_op(&self, change: ConsumerChange) -> ConsumerOp {
        ConsumerOp {
            name: self.claim.name.clone(),
            seq: self.state.max_seq + 1,
            change,
        }
    }

    fn write_op(&mut self, change: ConsumerChange) -> Result<Option<u64>> {
        let op = self.next_op(change);
        let at = self.store.consumer_write(&op)?;
        self.state.apply(&op);
        Ok(at)
    }

    fn write(&mut self, change: ConsumerChange) -> Result<()> {
        self.write_op(change).map(|_| ())
    }

    /// Delivers `position` (and the events after it) again after the backoff; after
    /// `max_retries` attempts parks it instead.
    pub fn retry(&mut self, position: u64) -> Result<Retried> {
        self.check_delivered(position, "retrying")?;
        if !self.replayed.contains(&position) && position < self.acked_next {
            return Err(Error::invalid(format!(
                "retrying position {position}: consumer '{}' has acknowledged it",
                self.claim.name
            )));
        }
        let tries = if self.attempts.0 == position {
            self.attempts.1 + 1
        } else {
            1
        };
        if self.opts.max_retries > 0 && tries > self.opts.max_retries {
            self.attempts = (u64::MAX, 0);
            self.park(
                position,
                &format!("gave up after {} retries", self.opts.max_retries),
            )?;
            return Ok(Retried::Parked);
        }
        self.attempts = (position, tries);
        let factor = 1u32.checked_shl(tries - 1).unwrap_or(u32::MAX);
        let backoff = self
            .opts
            .retry_backoff
            .saturating_mul(factor)
            .min(self.opts.retry_backoff_max);
        if self.replayed.remove(&position) {
            self.replay.push_front(position);
        } else {
            self.cursor = self.store.read_all(position)?;
            self.delivered_next = position;
        }
        self.retry_due = Some(Instant::now() + backoff);
        Ok(Retried::After(backoff))
    }

    /// Parks `position` with `reason` (durably) and acknowledges it.
    pub fn park(&mut self, position: u64, reason: &str) -> Result<()> {
        self.check_delivered(position, "parking")?;
        let at_us = self.store.options().clock.now_us();
        self.write(ConsumerChange::Park {
            position,
            reason: bounded_reason(reason),
            at_us,
        })?;
        if self.replayed.remove(&position) {
            return Ok(());
        }
        if self.attempts.0 == position {
            self.attempts = (u64::MAX, 0);
        }
        self.ack(position)
    }

    /// The events parked now.
    pub fn parked(&self) -> Vec<Parked> {
        self.state.parked()
    }

    /// Queues parked events for delivery before new ones: the one at `position`, or
    /// every one (`None`). Returns how many were queued.
    pub fn replay_parked(&mut self, position: Option<u64>) -> Result<u64> {
        let parked = self.state.parked();
        let chosen: Vec<u64> = parked
            .iter()
            .map(|p| p.position)
            .filter(|p| position.is_none_or(|q| q == *p))
            .filter(|p| !self.replay.contains(p) && !self.replayed.contains(p))
            .collect();
        if let (Some(p), true) = (
            position,
            parked.iter().all(|x| Some(x.position) != position),
        ) {
            return Err(Error::new(
                ErrorKind::NotFound,
                format!(
                    "consumer '{}' has no parked event at position {p}",
                    self.claim.name
                ),
            ));
        }
        self.replay.extend(chosen.iter().copied());
        let mut v: Vec<u64> = self.replay.drain(..).collect();
        v.sort_unstable();
        self.replay = v.into();
        Ok(chosen.len() as u64)
    }

    /// The atomic step: appends `appends` and stores this consumer's progress through
    /// `position` (or, for a replayed event, its unpark) in one step.
    pub fn append_ack(
        &mut self,
        appends: &[StreamAppend<'_>],
        position: u64,
    ) -> Result<AppendResult> {
        self.check_delivered(position, "acknowledging")?;
        let replayed = self.replayed.contains(&position);
        let next = self.acked_next.max(position + 1);
        if let Some(g) = &self.group {
            if replayed {
                return Err(Error::invalid(format!(
                    "consumer '{}' is a group: the atomic step of a replayed parked event is \
                     not available there (append with event ids, then acknowledge it)",
                    self.claim.name
                )));
            }
            let (partitions, last) = (g.partitions, g.last);
            let part = match last {
                Some((p, part)) if p == position => part,
                _ => super::consumer::partition_of(
                    &self.store.read_event(position)?.stream,
                    partitions,
                ),
            };
            let op = self.next_op(ConsumerChange::Checkpoint { next });
            let r = self
                .store
                .group_append(&self.claim.name, appends, op.seq, part, next)?;
            self.state.apply(&op);
            self.acked_next = next;
            self.note_stored(next, None);
            if self.attempts.0 <= position {
                self.attempts = (u64::MAX, 0);
            }
            return Ok(r);
        }
        let change = match replayed {
            true => ConsumerChange::Unpark { position },
            false => ConsumerChange::Checkpoint { next },
        };
        let op = self.next_op(change);
        let events: u64 = appends.iter().map(|a| a.events.len() as u64).sum();
        let r = self.store.consumer_append(appends, &op)?;
        self.state.apply(&op);
        if replayed {
            self.replayed.remove(&position);
        } else {
            self.acked_next = next;
            self.note_stored(next, Some(r.first_position + events));
            if self.attempts.0 <= position {
                self.attempts = (u64::MAX, 0);
            }
        }
        Ok(r)
    }

    /// Writes the last checkpoint and lets the consumer go.
    pub fn close(mut self) -> Result<()> {
        self.checkpoint()
    }
}

/// Resets consumer `name` (not open anywhere) to `next`; returns the position set.
pub fn reset(store: &Store, name: &str, next: u64) -> Result<u64> {
    let head = store.next_position()?;
    if next > head {
        return Err(Error::new(
            ErrorKind::NotFound,
            format!("position {next} is past the end of the log (the next position is {head})"),
        ));
    }
    let claim = store.consumer_claim(name, BRIEF_LEASE)?;
    store.consumer_write(&ConsumerOp {
        name: name.to_owned(),
        seq: claim.state.max_seq + 1,
        change: ConsumerChange::Checkpoint { next },
    })?;
    Ok(next)
}

/// Deletes consumer `name` (not open anywhere): its checkpoint and parked events.
pub fn delete(store: &Store, name: &str) -> Result<()> {
    let claim = store.consumer_claim(name, BRIEF_LEASE)?;
    if !claim.state.exists() {
        return Err(Error::new(
            ErrorKind::NotFound,
            format!("there is no consumer '{name}'"),
        ));
    }
    store
        .consumer_write(&ConsumerOp {
            name: name.to_owned(),
            seq: claim.state.max_seq + 1,
            change: ConsumerChange::Delete,
        })
        .map(|_| ())
}

/// Every consumer with its checkpoint and lag (positions and time behind the head).
pub fn list(store: &Store) -> Result<Vec<ConsumerInfo>> {
    let head = store.next_position()?;
    let now = store.options().clock.now_us();
    let mut out = Vec::new();
    for c in store.consumer_list()? {
        let next = c.state.next();
        let from = next.unwrap_or(0).min(head);
        let lag_events = head - from;
        let mut lag_us = 0;
        if lag_events > 0 {
            let mut cursor = store.read_all(from)?;
            if let Some(e) = cursor.next()? {
                lag_us = now.saturating_sub(e.timestamp_us);
            }
        }
        out.push(ConsumerInfo {
            name: c.name,
            next,
            lag_events,
            lag_us,
            parked: c.state.parked().len() as u64,
            open: c.open,
        });
    }
    Ok(out)
}

/// The parked events of consumer `name` (open or not).
pub fn parked_of(store: &Store, name: &str) -> Result<Vec<Parked>> {
    super::consumer::check_consumer_name(name)?;
    let found = store.consumer_list()?.into_iter().find(|c| c.name == name);
    match found {
        Some(c) => Ok(c.state.parked()),
        None => Err(Error::new(
            ErrorKind::NotFound,
            format!("there is no consumer '{name}'"),
        )),
    }
}
