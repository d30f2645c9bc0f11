//! The PostgreSQL backend: the store's events in one schema of a PostgreSQL database
//! (design D of docs/postgres.md), written by any number of processes at once. Its I/O
//! runs on the global tokio runtime; the synchronous calls of the seam wait for it.
//! Deletes, truncations and retention rules (`lifecycle`) delete their rows at once;
//! readers pass over the positions left empty.

mod checkpoint;
mod committer;
pub mod conn;
mod consumers;
mod cursor;
mod import;
mod lifecycle;
mod listener;
mod schema;
mod subjects;
mod tls;
mod url;
mod uuid;

pub use schema::schema_sql;

use uuid::Uuid;

use super::backend::{Backend, EventCursor, TailCursor};
use super::consumer::{ConsumerClaim, ConsumerOp, StoredConsumer};
use super::ids::Stored;
use super::lifecycle::{
    id_of_entry, stream_deleted, CompactInfo, LifecycleOp, LifecycleRequest, Rule,
};
use super::subjects::KeyRing;
use super::{
    check_name, AppendResult, Event, ExpectedVersion, OpenReport, Projection, StoreOptions,
    StoreStats, StreamAppend, StreamInfo,
};
use crate::error::{Error, ErrorKind, Result};
use committer::{Entry, Outcome, OwnedEvent, Request};
use conn::{Conn, Param};
use cursor::{Kind, PgCursor, MAX_BOUND};
use lifecycle::Rules;
use listener::Wakeup;
use std::future::Future;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, LazyLock, Mutex};
use std::time::{Duration, Instant};
use tokio::runtime::Runtime;

/// How often a waiting subscriber reads the head when no listener wakes it (a standby,
/// or while the listener reconnects). While one does, the URL's `poll_ms` (default 1 s).
const POLL: Duration = Duration::from_millis(20);

pub struct PgStore {
    conn: Arc<Conn>,
    runtime: Arc<Runtime>,
    options: StoreOptions,
    /// `options.clock`, never going back (rules by age).
    clock: super::lifecycle::HandleClock,
    /// The committer's queue; `None` once closed (and for read-only stores).
    appends: Mutex<Option<tokio::sync::mpsc::UnboundedSender<Request>>>,
    projections: Vec<Arc<dyn Projection>>,
    /// Positions applied to the projections (events and lifecycle entries): below this.
    applied: Mutex<u64>,
    /// The newest checkpoint of the projections this handle knows of (`checkpoint`), and
    /// the size of its states.
    checkpointed: AtomicU64,
    checkpoint_bytes: AtomicU64,
    /// Checkpoints this handle could not write (the server refused or was gone).
    checkpoint_failures: AtomicU64,
    /// The log's end when an append last brought the projections up for a checkpoint.
    checkpoint_tried: AtomicU64,
    /// The retention rules as of the last count of lifecycle entries read.
    rules: Mutex<Arc<Rules>>,
    /// The connection lifecycle entries are written on (a transaction of their own,
    /// which the shared connection, used by every read at once, cannot hold).
    lifecycle_client: tokio::sync::Mutex<Option<tokio_postgres::Client>>,
    /// The highest head seen (for waiters), their wake-up, and the listener.
    wake: Arc<Wakeup>,
    /// Started the listener (at the first wait).
    listen: std::sync::Once,
    /// When the head was last read from the server.
    head_read: Mutex<Instant>,
    appended: AtomicU64,
    open_time: Duration,
    closed: AtomicBool,
    owner_pid: u32,
    /// The consumers this handle holds and their holders' tokens (`consumers`).
    consumer_holders: Arc<consumers::Holders>,
    /// The data subjects' keys (`subjects`): sealing appends, opening reads.
    keys: Arc<KeyRing>,
    /// The count of lifecycle entries up to which this handle knows the forgotten
    /// subjects (`learn_forgets`).
    forgets_known: AtomicU64,
}

impl PgStore {
    /// Connects, creates or checks the schema, and brings the projections up to date.
    pub fn open(
        url: &str,
        options: StoreOptions,
        projections: Vec<Arc<dyn Projection>>,
    ) -> Result<(PgStore, OpenReport)> {
        let started = Instant::now();
        let conn = Arc::new(Conn::parse(url)?);
        let runtime = crate::runtime::runtime()?;
        block(&runtime, schema::prepare(&conn, options.read_only))?;
        let vault = subjects::PgVault {
            conn: conn.clone(),
            runtime: runtime.clone(),
        };
        let keys = Arc::new(KeyRing::new(options.keys.source(|| Ok(Box::new(vault)))?));
        // The listener starts with the first wait (`listen`): a handle that only appends
        // or reads never has its backend signalled by every commit of every writer.
        let wake = Wakeup::new();
        let appends = if options.read_only {
            None
        } else {
            let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
            runtime.spawn(committer::run(conn.clone(), wake.clone(), rx));
            Some(tx)
        };
        projections.iter().for_each(|p| p.reset());
        let mut store = PgStore {
            conn,
            runtime,
            clock: super::lifecycle::HandleClock::new(options.clock.clone()),
            options,
            appends: Mutex::new(appends),
            projections,
            applied: Mutex::new(0),
            checkpointed: AtomicU64::new(0),
            checkpoint_bytes: AtomicU64::new(0),
            checkpoint_failures: AtomicU64::new(0),
            checkpoint_tried: AtomicU64::new(0),
            rules: Mutex::new(Arc::new(Rules::none())),
            lifecycle_client: tokio::sync::Mutex::new(None),
            wake,
            listen: std::sync::Once::new(),
            head_read: Mutex::new(started),
            appended: AtomicU64::new(0),
            open_time: Duration::ZERO,
            closed: AtomicBool::new(false),
            owner_pid: std::process::id(),
            consumer_holders: Default::default(),
            keys,
            forgets_known: AtomicU64::new(0),
        };
        // The head first: the projections start from the newest checkpoint when it is
        // an interval or more ahead of them (always, but for a young store).
        let next = store.head()?;
        let caught = store.catch_up_from_checkpoint()?;
        let open_time = started.elapsed();
        store.open_time = open_time;
        store.conn.set_opened();
        let report = OpenReport {
            next_position: next.max(caught.applied),
            events_replayed: caught.replayed,
            snapshot_position: caught.restored,
            snapshot_ignored: caught.refused.into_iter().collect(),
            open_time,
            ..OpenReport::default()
        };
        Ok((store, report))
    }

    /// Runs a query on the shared connection; a lost connection is forgotten, so the next
    /// call connects again.
    fn query(
        &self,
        sql: &str,
        params: &[&dyn Param],
        what: &str,
    ) -> Result<Vec<tokio_postgres::Row>> {
        block(&self.runtime, self.conn.query(sql, params, what))
    }

    /// Starts `sql` (two bigint parameters) on the shared connection without waiting for
    /// it: a cursor reads its next page while the caller goes through the current one.
    fn query_ahead(
        &self,
        sql: &'static str,
        from: i64,
        to: i64,
        what: &'static str,
    ) -> tokio::task::JoinHandle<Result<Vec<tokio_postgres::Row>>> {
        let conn = self.conn.clone();
        self.runtime
            .spawn(async move { conn.query(sql, &[&from, &to], what).await })
    }

    /// The rows of a query started by `query_ahead`.
    fn rows_ahead(
        &self,
        started: tokio::task::JoinHandle<Result<Vec<tokio_postgres::Row>>>,
    ) -> Result<Vec<tokio_postgres::Row>> {
        block(&self.runtime, async {
            started.await.map_err(|e| {
                Error::new(
                    ErrorKind::Internal,
                    format!("a read ahead on the runtime failed: {e}"),
                )
            })?
        })
    }

    /// The durable head as the server has it now: the position the next event gets, or
    /// below it an append's that is committed but not yet flushed (`cursor::DURABLE_NEXT`);
    /// the handle also learns the count of removing commits.
    fn head(&self) -> Result<u64> {
        static SQL: LazyLock<String> =
            LazyLock::new(|| format!("select {}, hd.changes from @.head hd", cursor::DURABLE_NEXT));
        let rows = self.query(&SQL, &[], "reading the head")?;
        let row = rows
            .first()
            .ok_or_else(|| Error::corrupt("the head table is empty"))?;
        let next = row.get::<_, i64>(0) as u64;
        *self.head_read.lock().unwrap_or_else(|e| e.into_inner()) = Instant::now();
        self.wake.saw_changes(row.get::<_, i64>(1) as u64);
        self.saw(next);
        Ok(next)
    }

    /// Records a head seen and wakes waiters if it moved.
    fn saw(&self, next: u64) {
        self.wake.saw(next);
    }

    /// Applies every event and lifecycle entry not yet applied to the projections, in
    /// position order (events removed by then are not seen); returns how many positions
    /// it passed.
    fn catch_up(&self) -> Result<u64> {
        self.catch_up_from_checkpoint().map(|c| c.replayed)
    }

    /// `catch_up`, starting from the newest checkpoint when the projections are an
    /// interval or more behind it (`checkpoint`), and writing one when they have taken
    /// in an interval past the newest this handle knows (a writable handle).
    fn catch_up_from_checkpoint(&self) -> Result<CaughtUp> {
        let mut caught = CaughtUp::default();
        if self.projections.is_empty() {
            return Ok(caught);
        }
        let mut applied = self.applied.lock().unwrap_or_else(|e| e.into_inner());
        let every = self.checkpoint_interval();
        if self.wake.seen() >= applied.saturating_add(every) {
            match self.restore_checkpoint(*applied + every)? {
                checkpoint::Restored::No => {}
                checkpoint::Restored::At(pos) => {
                    *applied = pos;
                    caught.restored = Some(pos);
                }
                checkpoint::Restored::Refused(why) => {
                    *applied = 0;
                    caught.refused = Some(why);
                }
            }
        }
        let start = *applied;
        self.replay(&mut applied)?;
        caught.replayed = *applied - start;
        caught.applied = *applied;
        let known = self.checkpointed.load(Ordering::Acquire);
        if !self.options.read_only && *applied >= known.saturating_add(self.checkpoint_interval()) {
            // Not the caller's failure: the next open reads more of the log.
            if let Err(e) = self.write_checkpoint(*applied) {
                // Tried again an interval later, not at every call meanwhile.
                self.checkpointed.fetch_max(*applied, Ordering::AcqRel);
                self.checkpoint_failures.fetch_add(1, Ordering::Relaxed);
                caught
                    .refused
                    .get_or_insert_with(|| checkpoint::unwritten(&e));
            }
        }
        Ok(caught)
    }

    /// Applies the log from `*applied` to the head to the projections.
    fn replay(&self, applied: &mut u64) -> Result<()> {
        loop {
            let from = *applied;
            let (w, rules) = self.window_of(
                &cursor::LOG_SQL,
                &[&(from as i64), &(MAX_BOUND as i64)],
                "reading the log for the projections",
                false,
            )?;
            w.check_forward(from)?;
            let now = self.now();
            let mut entries = w.log_entries.iter().peekable();
            for e in &w.events {
                while let Some((p, op)) = entries.next_if(|(p, _)| *p < e.position) {
                    self.apply_entry(*p, op)?;
                }
                if !rules.removes_by_age(&e.stream, e.timestamp_us, now) {
                    // (Sealed events come unopened: projections never see a subject's
                    // personal data, `Projection`.)
                    self.projections.iter().for_each(|p| p.apply(&e.as_ref()));
                }
            }
            for (p, op) in entries {
                self.apply_entry(*p, op)?;
            }
            *applied = w.settled();
            if *applied >= w.next {
                return Ok(());
            }
        }
    }

    /// Hands a lifecycle entry to the projections.
    fn apply_entry(&self, position: u64, op: &[u8]) -> Result<()> {
        let op = LifecycleOp::decode(op).map_err(|e| {
            Error::corrupt(format!(
                "the lifecycle entry at position {position}: {}",
                e.message
            ))
        })?;
        self.projections
            .iter()
            .for_each(|p| p.apply_lifecycle(&op, position));
        Ok(())
    }

    /// This backend's own counters (docs/postgres.md "Operations").
    fn pg_metrics(&self) -> Vec<super::backend::BackendMetric> {
        let c = &self.conn.counters;
        let get = |a: &AtomicU64| a.load(Ordering::Relaxed);
        vec![
            (
                "evstore_pg_append_queue",
                "gauge",
                "Appends waiting for the committer to take them into a batch.",
                get(&c.queued),
            ),
            (
                "evstore_pg_batches_total",
                "counter",
                "Calls of the append function (batches of appends, one transaction each).",
                get(&c.batches),
            ),
            (
                "evstore_pg_batch_appends_total",
                "counter",
                "Appends sent in batches (divided by batches: the mean batch size).",
                get(&c.batch_requests),
            ),
            (
                "evstore_pg_batch_events_total",
                "counter",
                "Events sent in batches.",
                get(&c.batch_events),
            ),
            (
                "evstore_pg_batch_appends_max",
                "gauge",
                "Appends in the largest batch since open.",
                get(&c.max_batch),
            ),
            (
                "evstore_pg_batch_appends_last",
                "gauge",
                "Appends in the last batch.",
                get(&c.last_batch),
            ),
            (
                "evstore_pg_retries_total",
                "counter",
                "Appends sent again after their batch's call failed (ids looked up first).",
                get(&c.retries),
            ),
            (
                "evstore_pg_reconnects_total",
                "counter",
                "Connections made to replace one that was lost.",
                get(&c.reconnects),
            ),
            (
                "evstore_pg_connections",
                "gauge",
                "Connections of this handle open now (reads, committer, lifecycle entries, \
                 listener).",
                self.conn.connections_open() + u64::from(self.wake.listening()),
            ),
            (
                "evstore_pg_read_connections",
                "gauge",
                "Read connections open now (at most the URL's read_connections).",
                self.conn.read_connections_open(),
            ),
            (
                "evstore_pg_checkpoint_position",
                "gauge",
                "Positions the newest projections' checkpoint this handle knows covers.",
                get(&self.checkpointed),
            ),
            (
                "evstore_pg_checkpoint_failures_total",
                "counter",
                "Checkpoints of the projections this handle could not write.",
                get(&self.checkpoint_failures),
            ),
        ]
    }

    fn check_writable(&self) -> Result<()> {
        self.check_owner()?;
        super::check_open_for_writes(
            self.options.read_only,
            self.closed.load(Ordering::Acquire),
            &self.conn.location(),
        )
    }

    /// Checks an append as the file engine does (names, sizes), and that no id is in it
    /// twice.
    fn validate(&self, appends: &[StreamAppend<'_>], allow_empty: bool) -> Result<()> {
        super::validate_append(appends, allow_empty, self.options.max_event_size)?;
        let mut ids: Vec<[u8; 16]> = appends
            .iter()
            .flat_map(|a| a.events.iter().filter_map(|e| e.id))
            .collect();
        ids.sort_unstable();
        if let Some(twice) = ids.windows(2).find(|w| w[0] == w[1]) {
            return Err(super::ids::id_twice(&twice[0]));
        }
        Ok(())
    }

    fn append_inner(
        &self,
        appends: &[StreamAppend<'_>],
        allow_empty: bool,
    ) -> Result<AppendResult> {
        self.check_writable()?;
        self.validate(appends, allow_empty)?;
        // Ids made for events that name a subject (what their ciphertext is bound to):
        // the append is judged with them from here on (a retry in doubt is the same).
        let given_ids = appends
            .iter()
            .flat_map(|a| a.events)
            .all(|e| e.id.is_some());
        let filled = subjects::with_ids(appends)?;
        let rebuilt: Vec<StreamAppend<'_>>;
        let appends = match &filled {
            Some(f) => {
                rebuilt = subjects::refilled(appends, f);
                &rebuilt[..]
            }
            None => appends,
        };
        let elements = subjects::elements(&self.keys, appends)?;
        let (entries, events) = owned(appends, elements);
        let (request, pending) = Request::new(entries, events, self.conn.timeout());
        let pending = pending.ids_given(given_ids);
        let sent = match self
            .appends
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .as_ref()
        {
            Some(tx) => {
                // Counted before it is sent: the committer counts it out when it takes it.
                self.conn.counters.queued.fetch_add(1, Ordering::Relaxed);
                let sent = tx.send(request).is_ok();
                if !sent {
                    self.conn.counters.queued.fetch_sub(1, Ordering::Relaxed);
                }
                sent
            }
            None => false,
        };
        if !sent {
            return Err(Error::invalid("the store is closed"));
        }
        let outcome = pending.wait().map_err(|e| self.conn.later(e))?;
        let result = self.result_of(appends, outcome)?;
        self.appended.fetch_add(1, Ordering::Relaxed);
        let last =
            result.first_position + appends.iter().map(|a| a.events.len() as u64).sum::<u64>();
        self.saw(last);
        // The projections catch up when they are read (`refresh`, which every account
        // operation calls first, and `stats`), not here: an append would otherwise wait
        // for a read of every event that every other process appended meanwhile. Only
        // once the log has passed an interval beyond the newest checkpoint this handle
        // knows: then this append's caller brings the projections up (from a newer
        // checkpoint if another process wrote one) and checkpoints them, so that an
        // open never reads more than about an interval of the log. Its failure is not
        // the append's (it was committed): the next read retries.
        // One append per interval tries (the others of its threads do not wait for it).
        let every = self.checkpoint_interval();
        let tried = self.checkpoint_tried.load(Ordering::Acquire);
        // Another process's checkpoint that is recent enough spares it the work (only the
        // newest checkpoint's position is read then, not the log).
        if !self.projections.is_empty()
            && last
                >= self
                    .checkpointed
                    .load(Ordering::Acquire)
                    .saturating_add(every)
            && last >= tried.saturating_add(every)
            && self
                .checkpoint_tried
                .compare_exchange(tried, last, Ordering::AcqRel, Ordering::Acquire)
                .is_ok()
        {
            match self.newest_checkpoint() {
                Ok(pos) if last < pos.saturating_add(every) => {
                    self.checkpointed.fetch_max(pos, Ordering::AcqRel);
                }
                _ => {
                    let _ = self.catch_up();
                }
            }
        }
        Ok(result)
    }

    /// The append's result from the function's outcome.
    fn result_of(&self, appends: &[StreamAppend<'_>], outcome: Outcome) -> Result<AppendResult> {
        match outcome {
            Outcome::Written { first, versions } if versions.len() == appends.len() => {
                Ok(AppendResult {
                    first_position: first,
                    stream_versions: versions,
                })
            }
            Outcome::Written { versions, .. } => Err(Error::new(
                ErrorKind::Internal,
                format!(
                    "the append function returned {} stream versions for {} streams",
                    versions.len(),
                    appends.len()
                ),
            )),
            Outcome::WrongVersion { entry, actual } => {
                let part = entry.min(appends.len() - 1);
                let actual = u64::try_from(actual).ok();
                Err(super::wrong_expected_version(part, &appends[part], actual))
            }
            Outcome::PartlyStored { position } => Err(self.partly_stored(appends, position)),
            Outcome::Forgotten => Err(self.forgotten_in(appends)),
            Outcome::Deleted { entry } => {
                let part = entry.min(appends.len() - 1);
                Err(stream_deleted(appends[part].stream).in_part(part))
            }
            Outcome::Retry => match self.judge_stored(appends)? {
                Some(result) => Ok(result),
                None => Err(Error::new(
                    ErrorKind::Internal,
                    "the append's event ids were found stored, then not",
                )),
            },
        }
    }

    /// What holds the ids of the append's events, read in one query: `stored[k]` for its
    /// `k`-th event (in the order of its parts). An id a lifecycle entry holds is refused
    /// here (with the entry's position); an event's is the whole event while its row
    /// holds it, else (removed: its row deleted, or cut by `skip`) its place only.
    fn stored_events(&self, appends: &[StreamAppend<'_>]) -> Result<Vec<Option<Stored>>> {
        let events = || appends.iter().flat_map(|a| a.events.iter());
        let ids: Vec<Uuid> = events().filter_map(|e| e.id.as_ref().map(Uuid)).collect();
        let rows = self.query(
            &STORED_BY_ID_SQL,
            &[&ids],
            "reading what holds the append's event ids",
        )?;
        let mut found = std::collections::HashMap::with_capacity(rows.len());
        for row in &rows {
            let id: [u8; 16] = row
                .get::<_, &[u8]>(0)
                .try_into()
                .map_err(|_| Error::corrupt("an event id that is not 16 bytes"))?;
            found.insert(id, row);
        }
        let mut stored = Vec::with_capacity(ids.len());
        for e in events() {
            let Some(row) = e.id.and_then(|id| found.get(&id)) else {
                stored.push(None);
                continue;
            };
            let position = row.get::<_, i64>(1) as u64;
            if let Some(op) = row.get::<_, Option<&[u8]>>(4) {
                let id = e.id.expect("found by its id");
                return Err(id_of_entry(&id, position, &LifecycleOp::decode(op)?));
            }
            let mut whole = Vec::with_capacity(1);
            if row.get::<_, Option<i64>>(5).is_some() {
                cursor::unpack(row, &mut whole)?;
                self.open_events(&mut whole, 0)?;
            }
            stored.push(Some(match whole.pop() {
                Some(event) => Stored::Event(event),
                None => Stored::Erased {
                    position,
                    stream: row.get::<_, Option<String>>(2).unwrap_or_default(),
                    stream_version: row.get::<_, Option<i64>>(3).unwrap_or(0) as u64,
                },
            }));
        }
        Ok(stored)
    }

    /// An append the function found ids of stored: decided from the stored events as the
    /// file store decides (`ids::judge_retry`: a retry, other content, or only some).
    fn judge_stored(&self, appends: &[StreamAppend<'_>]) -> Result<Option<AppendResult>> {
        let stored = self.stored_events(appends)?;
        super::ids::judge_retry(appends, &stored)
    }

    /// The error for an append some of whose ids are stored (or stored with other
    /// content), naming the events as the file store does. `position` (the lowest stored
    /// one, the function's word) stands in if the stored events cannot be read.
    fn partly_stored(&self, appends: &[StreamAppend<'_>], position: u64) -> Error {
        match self.judge_stored(appends) {
            Err(e) if e.kind == ErrorKind::AlreadyExists => e,
            _ => Error::new(
                ErrorKind::AlreadyExists,
                format!(
                    "some of the append's event ids were appended before (at position \
                     {position}) but not all: a retry must repeat the whole append; nothing \
                     was written"
                ),
            )
            .at_position(position),
        }
    }

    /// A stream's version, tombstone, soft delete, and whether an event of it is left
    /// (its last event's row is there and no rule by age removes it).
    fn stream_now(&self, stream: &str) -> Result<StreamNow> {
        let (row, rules) = self.with_rules(|| {
            let rows = self.query(
                "select h.entries, s.version, s.tombstone, s.deleted, (select c.ts from @.chunks c \
                   where c.stream = s.name and c.stream <> '' \
                   order by c.first_version desc limit 1) \
                 from (select entries from @.head limit 1) h left join @.streams s on s.name = $1",
                &[&stream],
                "reading a stream's state",
            )?;
            let row = rows
                .into_iter()
                .next()
                .ok_or_else(|| Error::corrupt("the head table is empty"))?;
            Ok((row.get::<_, i64>(0) as u64, row))
        })?;
        let last_ts: Option<i64> = row.get(4);
        let now = self.now();
        Ok(StreamNow {
            version: row.get::<_, Option<i64>>(1).map(|v| v as u64),
            tombstone: row.get::<_, Option<bool>>(2).unwrap_or(false),
            deleted: row.get::<_, Option<bool>>(3).unwrap_or(false),
            live: last_ts.is_some_and(|ts| !rules.removes_by_age(stream, ts as u64, now)),
        })
    }

    /// The version of a stream that reads can open: not hard-deleted, existing, with an
    /// event left.
    fn readable_stream(&self, stream: &str) -> Result<u64> {
        let s = self.stream_now(stream)?;
        if s.tombstone {
            return Err(stream_deleted(stream));
        }
        let Some(v) = s.version else {
            return Err(super::no_such_stream(stream));
        };
        if !s.live {
            return Err(Error::new(
                ErrorKind::NotFound,
                format!(
                    "stream '{stream}' has no event left (deleted, truncated or removed by a \
                     retention rule); its version is {v}"
                ),
            ));
        }
        Ok(v)
    }

    fn past_end(&self, from: u64) -> Result<()> {
        let next = self.head()?;
        if from > next {
            return Err(Error::new(
                ErrorKind::NotFound,
                format!("position {from} is past the end of the log (the next position is {next})"),
            ));
        }
        Ok(())
    }
}

/// An append's entries and events as the committer (and the atomic step) send them,
/// each event's metadata and data elements from `elements` (`subjects::elements`).
fn owned(
    appends: &[StreamAppend<'_>],
    elements: Vec<subjects::Elements>,
) -> (Vec<Entry>, Vec<OwnedEvent>) {
    let entries = appends
        .iter()
        .map(|a| Entry {
            stream: a.stream.to_owned(),
            expected: match a.expected {
                ExpectedVersion::Any => -1,
                ExpectedVersion::NoStream => -2,
                ExpectedVersion::Exists => -3,
                ExpectedVersion::Exact(v) => v as i64,
            },
            count: a.events.len() as i32,
        })
        .collect();
    let events = appends
        .iter()
        .flat_map(|a| a.events.iter())
        .zip(elements)
        .map(|(e, (metadata, payload))| OwnedEvent {
            id: e.id,
            event_type: e.event_type.to_owned(),
            schema_version: e.schema_version.max(1) as i32,
            metadata,
            payload,
        })
        .collect();
    (entries, events)
}

/// What `catch_up_from_checkpoint` did.
#[derive(Default)]
struct CaughtUp {
    /// Positions the projections took in from the log.
    replayed: u64,
    /// Positions below this are applied.
    applied: u64,
    /// The checkpoint the projections started from.
    restored: Option<u64>,
    /// A checkpoint a projection refused (they were rebuilt from the log), or one that
    /// could not be written.
    refused: Option<String>,
}

/// What `stream_now` reads.
struct StreamNow {
    version: Option<u64>,
    tombstone: bool,
    /// Soft-deleted and not appended to since: no stream for writers.
    deleted: bool,
    /// Some event of the stream is left.
    live: bool,
}

/// What holds each id in $1: its position, stream and version (`id_positions`: an event,
/// kept or removed, or a lifecycle entry), the entry's operation (null for an event),
/// then the event's chunk cut to it (`cursor::CHUNK_COLUMNS`, from column 5): null when
/// the row was deleted, no event when `skip` cut it.
static STORED_BY_ID_SQL: LazyLock<String> = LazyLock::new(|| {
    format!(
        "select uuid_send(p.id), p.pos, p.stream, p.version, e.op, {} \
         from @.id_positions p join @.ids i on i.id = p.id \
         left join @.entries e on e.chunk = i.chunk \
         left join @.chunks c on c.chunk = i.chunk \
         cross join lateral (select (i.idx + 1)::int8 as lo, (i.idx + 1)::int8 as hi) b \
         where p.id = any($1)",
        cursor::CHUNK_COLUMNS
    )
});

/// Waits for `f` on the runtime from a thread outside it.
/// A call made while the calling thread exits (from a thread-local or `pthread_key`
/// destructor, after the runtime's thread-locals are gone) cannot enter the runtime from
/// that thread: it waits for `f` on a short-lived thread of its own instead.
fn block<T: Send>(runtime: &Runtime, f: impl Future<Output = Result<T>> + Send) -> Result<T> {
    match tokio::runtime::Handle::try_current() {
        Ok(_) => Err(Error::new(
            ErrorKind::Internal,
            "a PostgreSQL store was called from inside the evstore runtime",
        )),
        Err(e) if e.is_thread_local_destroyed() => std::thread::scope(|scope| {
            std::thread::Builder::new()
                .name("evstore-exiting".to_owned())
                .spawn_scoped(scope, || runtime.block_on(f))
                .map_err(|e| Error::io("starting a thread for a call during thread exit", e))?
                .join()
                .unwrap_or_else(|_| {
                    Err(Error::new(
                        ErrorKind::Internal,
                        "a call made during thread exit panicked",
                    ))
                })
        }),
        Err(_) => runtime.block_on(f),
    }
}

impl Backend for PgStore {
    fn consumer_claim(&self, name: &str, lease: Duration) -> Result<ConsumerClaim> {
        PgStore::consumer_claim(self, name, lease)
    }

    fn consumer_write(&self, op: &ConsumerOp) -> Result<Option<u64>> {
        PgStore::consumer_write(self, op)
    }

    fn consumer_append(
        &self,
        appends: &[StreamAppend<'_>],
        op: &ConsumerOp,
    ) -> Result<AppendResult> {
        PgStore::consumer_append(self, appends, op)
    }

    fn consumer_list(&self) -> Result<Vec<StoredConsumer>> {
        PgStore::consumer_list(self)
    }

    fn group_join(
        &self,
        name: &str,
        partitions: u32,
        start: u64,
        lease: Duration,
    ) -> Result<ConsumerClaim> {
        PgStore::group_join(self, name, partitions, start, lease)
    }

    fn group_balance(&self, name: &str, acked: Option<u64>) -> Result<Vec<(u32, u64)>> {
        PgStore::group_balance(self, name, acked)
    }

    fn group_append(
        &self,
        name: &str,
        appends: &[StreamAppend<'_>],
        seq: u64,
        part: u32,
        next: u64,
    ) -> Result<AppendResult> {
        PgStore::group_append(self, name, appends, seq, part, next)
    }

    fn apply_lifecycle(&self, req: &LifecycleRequest<'_>, id: Option<[u8; 16]>) -> Result<u64> {
        self.lifecycle_entry(req, id)
    }

    fn entries(&self, from: u64, to: u64) -> Result<Vec<super::import::LogEntry>> {
        self.log_entries(from, to)
    }

    fn import(&self, items: &[super::import::Item], end: u64) -> Result<()> {
        self.import_items(items, end)
    }

    fn retention(&self, name: &str, category: bool) -> Result<Option<Rule>> {
        self.rule(name, category)
    }

    fn compact(&self) -> Result<CompactInfo> {
        self.compact_rows()
    }

    fn location(&self) -> String {
        self.conn.location().to_owned()
    }

    fn options(&self) -> &StoreOptions {
        &self.options
    }

    fn check_owner(&self) -> Result<()> {
        let me = std::process::id();
        if me != self.owner_pid {
            return Err(Error::invalid(format!(
                "store {} was opened by process {}, used from process {me}; a child process must open stores of its own",
                self.conn.location(),
                self.owner_pid
            )));
        }
        Ok(())
    }

    fn append_event(&self, event_type: &str, payload: &[u8]) -> Result<u64> {
        let input = [super::EventInput::new(event_type, payload)];
        let a = [StreamAppend {
            stream: "",
            expected: ExpectedVersion::Any,
            events: &input,
        }];
        Ok(self.append_inner(&a, true)?.first_position)
    }

    fn append_multi(&self, appends: &[StreamAppend<'_>]) -> Result<AppendResult> {
        self.append_inner(appends, false)
    }

    fn forget_subject(&self, subject: &str) -> Result<u64> {
        self.forget(subject)
    }

    fn subjects(&self) -> Result<Vec<super::subjects::SubjectInfo>> {
        self.check_owner()?;
        self.subject_counts()
    }

    fn next_position(&self) -> Result<u64> {
        self.check_owner()?;
        self.head()
    }

    fn stream_version(&self, stream: &str) -> Result<Option<u64>> {
        self.check_owner()?;
        check_name("stream name", stream, false)?;
        let s = self.stream_now(stream)?;
        if s.tombstone {
            return Err(stream_deleted(stream));
        }
        // As writers see it (docs/lifecycle.md): a soft-deleted stream does not exist
        // until it is appended to again; a truncated one keeps its version.
        Ok(s.version.filter(|_| !s.deleted))
    }

    fn position_after(&self, timestamp_us: u64) -> Result<u64> {
        self.check_owner()?;
        let ts = timestamp_us.min(i64::MAX as u64) as i64;
        // Every event of a chunk has its chunk's time; none at or past the durable head.
        static SQL: LazyLock<String> = LazyLock::new(|| {
            format!(
                "select least(coalesce((select min(first_pos) from @.chunks where ts > $1), d.n), \
                 d.n) from (select {} as n from @.head hd) d",
                cursor::DURABLE_NEXT
            )
        });
        let rows = self.query(&SQL, &[&ts], "finding a position by time")?;
        Ok(rows.first().map_or(0, |r| r.get::<_, i64>(0) as u64))
    }

    fn read_event(&self, position: u64) -> Result<Event> {
        self.check_owner()?;
        let p = position.min(MAX_BOUND - 1);
        let (w, rules) = self.window(
            &cursor::LOG_SQL,
            &[&(p as i64), &(p as i64 + 1)],
            "reading an event",
        )?;
        let gone = |why: &str| {
            Error::new(
                ErrorKind::NotFound,
                format!("the event at position {position} was removed ({why})"),
            )
        };
        if let Some(e) = w.events.into_iter().find(|e| e.position == position) {
            if rules.removes_by_age(&e.stream, e.timestamp_us, self.now()) {
                return Err(gone("by its stream's retention rule by age"));
            }
            return Ok(e);
        }
        if let Some((_, op)) = w.log_entries.iter().find(|(p, _)| *p == position) {
            let what = LifecycleOp::decode(op).map_or_else(|e| e.message, |op| op.describe());
            return Err(Error::new(
                ErrorKind::NotFound,
                format!("position {position} holds a lifecycle entry ({what}), not an event"),
            ));
        }
        if position >= w.next {
            return Err(Error::new(
                ErrorKind::NotFound,
                format!("no event at position {position}"),
            ));
        }
        Err(gone("deleted, truncated or removed by a retention rule"))
    }

    fn list_streams(&self) -> Result<Vec<StreamInfo>> {
        self.check_owner()?;
        // Each stream's last event's time, and where its first event left is (its first
        // row's first kept event) with that row's time.
        let (rows, rules) = self.with_rules(|| {
            let rows = self.query(
                "select h.entries, s.name, s.version, f.pos, f.ts, (select c.ts from @.chunks c \
                   where c.stream = s.name and c.stream <> '' \
                   order by c.first_version desc limit 1) \
                 from (select entries from @.head limit 1) h \
                 left join @.streams s on not s.tombstone \
                 left join lateral (select c.first_pos + c.skip as pos, c.ts from @.chunks c \
                   where c.stream = s.name and c.stream <> '' \
                   order by c.first_version limit 1) f on true \
                 order by s.first_pos",
                &[],
                "listing the streams",
            )?;
            let entries = rows.first().map_or(0, |r| r.get::<_, i64>(0) as u64);
            Ok((entries, rows))
        })?;
        let now = self.now();
        let mut out = Vec::with_capacity(rows.len());
        for r in &rows {
            let Some(name) = r.get::<_, Option<String>>(1) else {
                continue;
            };
            // A stream with no event left is not listed.
            let Some(last_ts) = r.get::<_, Option<i64>>(5) else {
                continue;
            };
            let cut = rules.min_timestamp(&name, now);
            if (last_ts as u64) < cut {
                continue;
            }
            let mut first_position = r.get::<_, i64>(3) as u64;
            if (r.get::<_, i64>(4) as u64) < cut {
                // A rule by age removed its first rows (not deleted until compacted): its
                // first event left is in its first row stamped at or after the cut.
                let found = self.query(
                    "select c.first_pos + c.skip from @.chunks c \
                     where c.stream = $1 and c.stream <> '' and c.ts >= $2 \
                     order by c.first_version limit 1",
                    &[&name, &(cut.min(i64::MAX as u64) as i64)],
                    "finding a stream's first event left",
                )?;
                let Some(f) = found.first() else {
                    continue;
                };
                first_position = f.get::<_, i64>(0) as u64;
            }
            out.push(StreamInfo {
                name,
                version: r.get::<_, i64>(2) as u64,
                first_position,
            });
        }
        Ok(out)
    }

    fn read_all(self: Arc<Self>, from: u64) -> Result<Box<dyn TailCursor>> {
        self.check_owner()?;
        self.past_end(from)?;
        Ok(Box::new(PgCursor::new(
            self,
            Kind::Forward { until: u64::MAX },
            from,
        )))
    }

    fn poll(self: Arc<Self>, from: u64, max: u64) -> Result<Box<dyn TailCursor>> {
        self.check_owner()?;
        self.past_end(from)?;
        let until = from.saturating_add(max);
        Ok(Box::new(PgCursor::new(self, Kind::Forward { until }, from)))
    }

    fn read_all_backward(self: Arc<Self>, from: u64) -> Result<Box<dyn EventCursor>> {
        self.check_owner()?;
        let next = self.head()?;
        let start = from.min(next.saturating_sub(1));
        Ok(Box::new(PgCursor::new(
            self,
            Kind::Backward { more: next > 0 },
            start,
        )))
    }

    fn read_stream(
        self: Arc<Self>,
        stream: &str,
        from_version: u64,
    ) -> Result<Box<dyn EventCursor>> {
        self.check_owner()?;
        check_name("stream name", stream, false)?;
        let v = self.readable_stream(stream)?;
        super::check_from_version(stream, v, from_version)?;
        let kind = Kind::Stream {
            stream: stream.to_owned(),
        };
        Ok(Box::new(PgCursor::new(self, kind, from_version)))
    }

    fn read_stream_backward(
        self: Arc<Self>,
        stream: &str,
        from_version: u64,
    ) -> Result<Box<dyn EventCursor>> {
        self.check_owner()?;
        check_name("stream name", stream, false)?;
        let v = self.readable_stream(stream)?;
        let kind = Kind::StreamBackward {
            stream: stream.to_owned(),
            more: true,
        };
        Ok(Box::new(PgCursor::new(self, kind, from_version.min(v))))
    }

    fn read_category(self: Arc<Self>, prefix: &str, from: u64) -> Result<Box<dyn TailCursor>> {
        self.check_owner()?;
        check_name("stream prefix", prefix, false)?;
        self.past_end(from)?;
        let kind = Kind::Category {
            prefix: prefix.to_owned(),
        };
        Ok(Box::new(PgCursor::new(self, kind, from)))
    }

    fn refresh(&self) -> Result<()> {
        self.check_owner()?;
        self.catch_up().map(|_| ())
    }

    fn wait_for_events(&self, seen: u64, timeout: Duration) -> u64 {
        let deadline = Instant::now() + timeout;
        if self.closed.load(Ordering::Acquire) {
            return seen;
        }
        // The listener connects on the runtime, not in this call (whose timeout may be
        // shorter than a connection); until it listens, waiters poll the head every POLL,
        // and once it listens it reads the head, so nothing committed meanwhile is missed.
        // Through a pooler in transaction mode LISTEN does not work (its notifications
        // go to whichever client has the server connection next): waiters poll.
        if !self.conn.pooled() {
            self.listen.call_once(|| {
                self.wake.driver_started();
                self.runtime
                    .spawn(listener::start(self.conn.clone(), self.wake.clone()));
            });
        }
        loop {
            if self.closed.load(Ordering::Acquire) {
                return seen;
            }
            // While the listener listens, the head seen is current and the server is only
            // asked every `poll_ms`, in case a notification was lost; otherwise every POLL.
            let interval = if self.wake.listening() {
                self.conn.listen_poll()
            } else {
                POLL
            };
            let since = self
                .head_read
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .elapsed();
            if since >= interval || self.wake.take_stale() {
                match self.head() {
                    Ok(n) if n > seen => return n,
                    Ok(_) => {}
                    Err(_) => return seen,
                }
            }
            let now = Instant::now();
            if now >= deadline {
                return seen;
            }
            let left = interval.saturating_sub(since).max(Duration::from_millis(1));
            let n = self.wake.wait(seen, left.min(deadline - now));
            if n > seen {
                return n;
            }
        }
    }

    fn wake_waiters(&self) {
        self.wake.wake_all();
    }

    fn metrics(&self) -> Vec<super::backend::BackendMetric> {
        self.pg_metrics()
    }

    fn sync(&self) -> Result<()> {
        // Every acknowledged append is committed (durable as PostgreSQL's commit is).
        self.check_owner()
    }

    fn snapshot(&self) -> Result<u64> {
        self.check_writable()?;
        // The database keeps its own indexes: nothing to write; report what is covered.
        self.head()
    }

    fn stats(&self) -> Result<StoreStats> {
        self.check_owner()?;
        // The caller reads the projections' sizes next (the accounts count).
        self.catch_up()?;
        // The events below the durable head (as reads see them).
        static SQL: LazyLock<String> = LazyLock::new(|| {
            format!(
                "select h.next, h.entries, pg_total_relation_size('@.chunks') \
                 + pg_total_relation_size('@.ids') + pg_total_relation_size('@.streams') \
                 + pg_total_relation_size('@.removed_chunks') + pg_total_relation_size('@.entries') \
                 + pg_total_relation_size('@.rules'), \
                 (select coalesce(sum(n - skip), 0)::int8 from @.chunks where first_pos < h.next), \
                 (select count(*) from @.ids) \
                 from (select {} as next, hd.entries from @.head hd) h",
                cursor::DURABLE_NEXT
            )
        });
        let rows = self.query(&SQL, &[], "reading the store's stats")?;
        let r = rows
            .first()
            .ok_or_else(|| Error::new(ErrorKind::Internal, "the stats query returned nothing"))?;
        let (next, entries) = (r.get::<_, i64>(0) as u64, r.get::<_, i64>(1) as u64);
        let stored = r.get::<_, i64>(3) as u64;
        let now = self.now().min(i64::MAX as u64) as i64;
        // Rows that rules by age removed and `compact` has not deleted yet: their events
        // are removed, their bytes reclaimable.
        let by_age = self.rules_at(entries)?.is_none_or(|rules| rules.has_age());
        let (aged, aged_bytes, types) = if by_age {
            let aged = self.query(
                "select coalesce(sum(c.n - c.skip), 0)::int8, coalesce(sum(\
                   pg_column_size(c.types) + pg_column_size(c.schema_versions) \
                   + pg_column_size(c.ids) + pg_column_size(c.metadata) \
                   + pg_column_size(c.data)), 0)::int8 \
                 from @.chunks c cross join lateral @.rule_for(c.stream) r \
                 where c.stream <> '' and r.max_age_us > 0 and c.ts < $1 - r.max_age_us",
                &[&now],
                "counting the events rules by age removed",
            )?;
            let types = self.query(
                "select t, count(*) from @.chunks c \
                 left join lateral @.rule_for(c.stream) r on c.stream <> '', unnest(c.types) t \
                 where not coalesce(r.max_age_us > 0 and c.ts < $1 - r.max_age_us, false) \
                 group by t order by t",
                &[&now],
                "counting event types",
            )?;
            let a = aged.first();
            (
                a.map_or(0, |a| a.get::<_, i64>(0) as u64),
                a.map_or(0, |a| a.get::<_, i64>(1) as u64),
                types,
            )
        } else {
            let types = self.query(
                "select t, count(*) from @.chunks, unnest(types) t group by t order by t",
                &[],
                "counting event types",
            )?;
            (0, 0, types)
        };
        let live = stored.saturating_sub(aged);
        Ok(StoreStats {
            events: next,
            streams: self.list_streams()?.len() as u64,
            bytes_on_disk: r.get::<_, i64>(2) as u64,
            appends: self.appended.load(Ordering::Relaxed),
            open_time_us: self.open_time.as_micros() as u64,
            event_ids: r.get::<_, i64>(4) as u64,
            removed_events: next.saturating_sub(entries).saturating_sub(live),
            lifecycle_entries: entries,
            reclaimable_bytes: aged_bytes,
            events_by_type: types
                .iter()
                .map(|r| (r.get::<_, String>(0), r.get::<_, i64>(1) as u64))
                .collect(),
            ..StoreStats::default()
        })
    }

    fn close(&self) -> Result<()> {
        if self.closed.swap(true, Ordering::AcqRel) {
            return Ok(());
        }
        // The consumers this handle holds are let go (their leases renewed no more).
        for (name, token, group) in self.consumer_holders.drain() {
            let release = consumers::release(&self.conn, &name, &token, group);
            let _ = block(&self.runtime, release);
        }
        // The committer ends once its queue is empty and the sender is gone.
        self.appends
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take();
        self.conn.forget();
        // The lifecycle entries' connection (one in use now is dropped when its entry ends).
        if let Ok(mut client) = self.lifecycle_client.try_lock() {
            client.take();
        }
        self.wake.close();
        // The committer's and the shared client's sockets, closed by their tasks (a forked
        // child has neither: they are the parent's).
        if std::process::id() == self.owner_pid {
            self.conn.wait_closed(Duration::from_secs(2));
        }
        self.check_owner()
    }

    fn is_closed(&self) -> bool {
        self.closed.load(Ordering::Acquire)
    }
}

impl Drop for PgStore {
    fn drop(&mut self) {
        let _ = Backend::close(self);
    }
}
