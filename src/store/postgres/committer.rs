//! Client-side group commit: every append of a store handle goes to one task on the
//! runtime with its own connection, which sends everything waiting as one call of the
//! `append` function (one transaction, one commit) and answers each caller with its own
//! result. While a call runs, new appends queue up and form the next batch.
//!
//! The call's commit lets the head lock go without waiting for the WAL flush (schema
//! version 8, `append_async`): the next writer of any process takes the lock while this
//! commit's WAL is still being written, so commits of different processes are flushed
//! together instead of one after the other. Two more statements go with the call, in the
//! same round trip, each its own transaction: `FLUSH` records the head in this
//! connection's `flushed` row and commits durably, which flushes the WAL up to and past
//! the append's commit; only then is a caller answered. `NOTIFY` then tells the
//! listeners (`listener`) the durable head; its commit is asynchronous, because the
//! server holds one lock per database from a notifying transaction's commit until its
//! flush. Readers read only below the durable head (`cursor::DURABLE_NEXT`).
//!
//! Every request has a deadline (the URL's `timeout` after its call): its caller stops
//! waiting then, and says whether the request was sent (its commit is in doubt) or not
//! (nothing was stored): a request is marked sent just before its call goes out, and one
//! whose caller gave up first is never sent. No call outlives every deadline of its batch.

use super::conn::{pg_error, typed, Conn, Param};
use super::listener::{self, Wakeup};
use super::uuid::Uuid;
use crate::error::{Error, ErrorKind, Result};

use std::future::{poll_fn, Future};
use std::pin::pin;
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::Arc;
use std::task::Poll;
use std::time::{Duration, Instant};
use tokio::sync::mpsc;
use tokio_postgres::error::SqlState;
use tokio_postgres::Client;

/// At most this many events go into one call (more wait for the next).
const MAX_BATCH_EVENTS: usize = 20_000;

/// How many recent batches' sizes tell how many callers to wait for.
const RECENT: usize = 8;

/// How long a batch waits for the callers of recent batches to come back (only while
/// fewer are waiting than the largest of the last `RECENT` batches held).
const LINGER: std::time::Duration = std::time::Duration::from_millis(1);

/// One stream's part of a request.
pub struct Entry {
    pub stream: String,
    /// >= 0 exact, -1 any, -2 no stream, -3 exists (the function's encoding).
    pub expected: i64,
    pub count: i32,
}

/// One event, owned: it crosses to the runtime.
pub struct OwnedEvent {
    pub id: Option<[u8; 16]>,
    pub event_type: String,
    pub schema_version: i32,
    /// `None` for a sealed event (its `payload` the sealed element: `subjects.rs`).
    pub metadata: Option<Vec<u8>>,
    pub payload: Vec<u8>,
}

/// What the function said about one request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Written from this position on; each entry's stream version after it (0 for events
    /// without a stream).
    Written { first: u64, versions: Vec<u64> },
    /// Refused: the entry (0-based) whose stream had this version (-1: none).
    WrongVersion { entry: usize, actual: i64 },
    /// Every event's id is stored: a retry.
    Retry,
    /// Some of its ids are stored, not all.
    PartlyStored { position: u64 },
    /// Refused: the entry (0-based) whose stream was hard-deleted.
    Deleted { entry: usize },
    /// Refused: an event names a forgotten subject (schema 7, `subjects.rs`).
    Forgotten,
}

/// Where a request is: in the queue, sent to the server, or given up by its caller.
const QUEUED: u8 = 0;
const SENT: u8 = 1;
const ABANDONED: u8 = 2;

/// One append (one `evs_append`/`evs_append_multi` call) waiting for its commit.
pub struct Request {
    entries: Vec<Entry>,
    events: Vec<OwnedEvent>,
    reply: std::sync::mpsc::SyncSender<Result<Outcome>>,
    /// When its caller stops waiting.
    deadline: Instant,
    /// QUEUED, SENT or ABANDONED, shared with the caller's `Pending`.
    state: Arc<AtomicU8>,
}

/// The caller's side of a request.
pub struct Pending {
    answer: std::sync::mpsc::Receiver<Result<Outcome>>,
    state: Arc<AtomicU8>,
    deadline: Instant,
    timeout: Duration,
    ids: bool,
}

impl Pending {
    /// Whether the caller gave every event its id (ids the library made for sealed
    /// events are not the caller's to retry with): what a commit in doubt tells it.
    pub fn ids_given(mut self, given: bool) -> Pending {
        self.ids = given;
        self
    }
}

impl Request {
    /// A request whose caller waits at most `timeout` for its answer.
    pub fn new(
        entries: Vec<Entry>,
        events: Vec<OwnedEvent>,
        timeout: Duration,
    ) -> (Request, Pending) {
        let (reply, answer) = std::sync::mpsc::sync_channel(1);
        let state = Arc::new(AtomicU8::new(QUEUED));
        let deadline = Instant::now() + timeout;
        let ids = events.iter().all(|e| e.id.is_some());
        let request = Request {
            entries,
            events,
            reply,
            deadline,
            state: state.clone(),
        };
        let pending = Pending {
            answer,
            state,
            deadline,
            timeout,
            ids,
        };
        (request, pending)
    }

    fn all_have_ids(&self) -> bool {
        self.events.iter().all(|e| e.id.is_some())
    }

    /// Marks it sent, unless its caller gave up on it first (false: leave it out).
    fn claim(&self) -> bool {
        match self
            .state
            .compare_exchange(QUEUED, SENT, Ordering::AcqRel, Ordering::Acquire)
        {
            Ok(_) => true,
            Err(now) => now == SENT,
        }
    }

    /// Whether its caller still waits for an answer.
    fn waited_for(&self) -> bool {
        self.state.load(Ordering::Acquire) != ABANDONED && Instant::now() < self.deadline
    }
}

impl Pending {
    /// The request's answer, or at its deadline an error saying whether it was sent:
    /// `Unavailable` if it was not (nothing stored), or if it was and all its events have
    /// ids (a retry with them resolves it); `Io` saying the commit is in doubt if it was
    /// sent and some event has no id.
    pub fn wait(self) -> Result<Outcome> {
        let left = self.deadline.saturating_duration_since(Instant::now());
        let stopped = || {
            Error::new(
                ErrorKind::Internal,
                "the PostgreSQL committer stopped without answering",
            )
        };
        match self.answer.recv_timeout(left) {
            Ok(answer) => return answer,
            Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => return Err(stopped()),
            Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {}
        }
        if self
            .state
            .compare_exchange(QUEUED, ABANDONED, Ordering::AcqRel, Ordering::Acquire)
            .is_ok()
        {
            return Err(not_taken(self.timeout));
        }
        // Sent: its answer may have come just now.
        if let Ok(answer) = self.answer.try_recv() {
            return answer;
        }
        let late = Error::new(
            ErrorKind::Unavailable,
            format!(
                "appending: PostgreSQL did not answer within {} ms (the URL's timeout=)",
                self.timeout.as_millis()
            ),
        );
        Err(match self.ids {
            true => in_doubt_with_ids(&late),
            false => in_doubt(&late),
        })
    }
}

/// The error for a request that was never sent: its deadline passed while it waited.
fn not_taken(timeout: Duration) -> Error {
    Error::new(
        ErrorKind::Unavailable,
        format!(
            "appending: PostgreSQL did not take the append within {} ms (the URL's timeout=); \
             it was not sent and nothing was stored",
            timeout.as_millis()
        ),
    )
}

/// Runs until every sender is dropped (the store closed): takes what is waiting, commits
/// it in one call, answers, repeats.
pub async fn run(conn: Arc<Conn>, wake: Arc<Wakeup>, mut rx: mpsc::UnboundedReceiver<Request>) {
    let mut client: Option<Prepared> = None;
    // Requests in the last batches: the callers answered there come back with their next
    // append within moments (most of them).
    let mut recent = std::collections::VecDeque::from([0; RECENT]);
    while let Some(first) = rx.recv().await {
        let mut batch = vec![first];
        let mut events = batch[0].events.len();
        take_waiting(&mut rx, &mut batch, &mut events);
        // Fewer waiting than in a recent batch: the others are on their way back (a thread
        // being woken, its next append being built). Sending now would make this batch and
        // the next one each pay a commit for part of them; wait for them a little.
        let expected = recent.iter().copied().max().unwrap_or(0);
        let linger = tokio::time::Instant::now() + LINGER;
        while batch.len() < expected && events < MAX_BATCH_EVENTS {
            match tokio::time::timeout_at(linger, rx.recv()).await {
                Ok(Some(r)) => {
                    events += r.events.len();
                    batch.push(r);
                    take_waiting(&mut rx, &mut batch, &mut events);
                }
                _ => break,
            }
        }
        recent.pop_front();
        recent.push_back(batch.len());
        let c = &conn.counters;
        c.queued.fetch_sub(batch.len() as u64, Ordering::Relaxed);
        c.batch(batch.len() as u64, events as u64);
        // Those whose callers gave up (or do now) are not sent: told so, if still there.
        batch.retain(|r| {
            let waited = r.waited_for();
            if !waited {
                let _ = r.reply.send(Err(not_taken(conn.timeout())));
            }
            waited
        });
        if batch.is_empty() {
            continue;
        }
        let (batch, result) = round(&conn, &wake, &mut client, batch, false).await;
        match result {
            Ok(outcomes) => answer(&batch, outcomes),
            Err(failure) => {
                client = None;
                settle(&conn, &wake, &mut client, batch, failure).await;
            }
        }
    }
}

/// Answers each request with its outcome.
fn answer(batch: &[Request], outcomes: Vec<Outcome>) {
    for (r, o) in batch.iter().zip(outcomes) {
        let _ = r.reply.send(Ok(o));
    }
}

/// How often a request sent alone is sent again when it met another transaction's
/// uncommitted copy of one of its ids (or a deadlock over them): by then that transaction
/// has ended, and the lookup finds what it stored.
const CONFLICT_TRIES: usize = 3;

/// Answers the requests of a batch whose call failed: nothing of it was written, or its
/// commit is in doubt. A batch that was never sent (no connection) or that the server
/// refused as read-only gets that error. Otherwise, on a fresh connection, the batch
/// again with its ids looked up first (a request of an earlier append, whose stored id
/// the `ids` key refused, is then answered as a retry; with event ids, what an in-doubt
/// commit stored is found the same way); if that fails on the connection too, every
/// request gets that error; if the server refused it, each request alone. A request
/// without ids after an in-doubt commit cannot be repeated safely: its caller is told.
/// Requests whose callers stopped waiting are dropped.
async fn settle(
    conn: &Conn,
    wake: &Wakeup,
    client: &mut Option<Prepared>,
    batch: Vec<Request>,
    failure: Failure,
) {
    if !failure.sent || failure.error.kind == ErrorKind::ReadOnly {
        for r in &batch {
            let _ = r.reply.send(Err(failure.error.clone()));
        }
        return;
    }
    let (again, doubtful): (Vec<Request>, Vec<Request>) = batch
        .into_iter()
        .partition(|r| !failure.in_doubt || r.all_have_ids());
    for r in doubtful {
        let _ = r.reply.send(Err(in_doubt(&failure.error)));
    }
    // Those whose callers stopped waiting are in doubt: told so, if still there.
    let (again, late): (Vec<Request>, Vec<Request>) =
        again.into_iter().partition(Request::waited_for);
    for r in late {
        let _ = r.reply.send(Err(match failure.in_doubt {
            true => in_doubt_with_ids(&failure.error),
            false => failure.error.clone(),
        }));
    }
    if again.is_empty() {
        return;
    }
    conn.counters
        .retries
        .fetch_add(again.len() as u64, Ordering::Relaxed);
    let (again, result) = round(conn, wake, client, again, true).await;
    let f = match result {
        Ok(outcomes) => return answer(&again, outcomes),
        Err(f) => f,
    };
    *client = None;
    if matches!(f.error.kind, ErrorKind::Unavailable | ErrorKind::ReadOnly) {
        // The server cannot be reached (or takes no writes): alone, each would fail too.
        // After a first try in doubt, these still are (a retry with the ids settles them).
        let error = match failure.in_doubt {
            true => in_doubt_with_ids(&f.error),
            false => f.error,
        };
        for r in &again {
            let _ = r.reply.send(Err(error.clone()));
        }
        return;
    }
    for r in again {
        let mut tries = 0;
        let mut one = vec![r];
        let result = loop {
            tries += 1;
            conn.counters.retries.fetch_add(1, Ordering::Relaxed);
            let (back, result) = round(conn, wake, client, one, true).await;
            one = back;
            match result {
                Ok(mut o) if !o.is_empty() => break Ok(o.remove(0)),
                Ok(_) => break Err(f.error.clone()),
                Err(f) if f.conflict && tries < CONFLICT_TRIES => continue,
                Err(f) => {
                    *client = None;
                    match f.in_doubt && !one.first().is_some_and(Request::all_have_ids) {
                        true => break Err(in_doubt(&f.error)),
                        false => break Err(f.error),
                    }
                }
            }
        };
        if let Some(r) = one.first() {
            let _ = r.reply.send(result);
        }
    }
}

/// One call of `append` for `batch`, connecting first if needed, within the batch's last
/// deadline. Requests whose callers gave up before the call went out are left out of it
/// (and of the batch returned, whose order the outcomes follow).
async fn round(
    conn: &Conn,
    wake: &Wakeup,
    client: &mut Option<Prepared>,
    mut batch: Vec<Request>,
    check_ids: bool,
) -> (Vec<Request>, std::result::Result<Vec<Outcome>, Failure>) {
    let Some(deadline) = batch.iter().map(|r| r.deadline).max() else {
        return (batch, Ok(Vec::new()));
    };
    let deadline = tokio::time::Instant::from_std(deadline);
    let unsent = |e: Error| Failure {
        error: Error::new(
            e.kind,
            format!(
                "{}; the append was not sent and nothing was stored",
                e.message
            ),
        ),
        in_doubt: false,
        conflict: false,
        sent: false,
    };
    match tokio::time::timeout_at(deadline, connect(conn, client)).await {
        Ok(Ok(())) => {}
        Ok(Err(e)) => return (batch, Err(unsent(e))),
        Err(_) => {
            return (
                batch,
                Err(unsent(conn.timed_out("connecting for an append"))),
            )
        }
    }
    batch.retain(Request::claim);
    if batch.is_empty() {
        return (batch, Ok(Vec::new()));
    }
    let prepared = client.as_ref().expect("connected above");
    let result =
        match tokio::time::timeout_at(deadline, call(wake, prepared, &batch, check_ids)).await {
            Ok(r) => r,
            Err(_) => Err(Failure {
                error: conn.timed_out("appending"),
                in_doubt: true,
                conflict: false,
                sent: true,
            }),
        };
    (batch, result)
}

/// Moves the requests waiting in the queue into the batch, up to `MAX_BATCH_EVENTS`.
fn take_waiting(
    rx: &mut mpsc::UnboundedReceiver<Request>,
    batch: &mut Vec<Request>,
    events: &mut usize,
) {
    while *events < MAX_BATCH_EVENTS {
        match rx.try_recv() {
            Ok(r) => {
                *events += r.events.len();
                batch.push(r);
            }
            Err(_) => break,
        }
    }
}

/// Why a call failed, and whether its commit may have happened anyway.
struct Failure {
    error: Error,
    /// The call was sent (false: the connection could not be made; nothing was stored).
    sent: bool,
    in_doubt: bool,
    /// Another transaction's copy of one of the ids (a unique violation) or a deadlock
    /// over them: sending the same call again can succeed.
    conflict: bool,
}

impl From<Error> for Failure {
    fn from(error: Error) -> Self {
        Failure {
            error,
            sent: true,
            in_doubt: false,
            conflict: false,
        }
    }
}

/// The error for an append some of whose events have no id, whose commit may or may not
/// have happened: `Io`, since repeating it may store it twice.
fn in_doubt(e: &Error) -> Error {
    Error::new(
        ErrorKind::Io,
        format!(
            "{}; the append's commit is in doubt, it may or may not be stored: give its events \
             ids to retry it safely",
            e.message
        ),
    )
}

/// The error for an append whose events all have ids, whose commit is in doubt and
/// could not be settled now: `Unavailable`, since repeating it is safe.
fn in_doubt_with_ids(e: &Error) -> Error {
    Error::new(
        ErrorKind::Unavailable,
        format!(
            "{}; the append's commit is in doubt: retrying it with the same event ids \
             settles it (it returns the positions it was stored at, or stores it)",
            e.message
        ),
    )
}

/// The committer's connection and its statements (each batch is one round trip: three
/// unnamed statements parsed, bound and executed, one after the other).
struct Prepared {
    client: Client,
    /// `APPEND_CALL`, `FLUSH` and `NOTIFY` qualified with the store's schema.
    append: String,
    flush: String,
    notify: String,
    /// The channel the function notifies.
    channel: String,
    /// This connection's row of `flushed` (a `chunk_keys` number: unique in the schema).
    writer: i64,
}

/// The call the committer prepares.
const APPEND_CALL: &str = "select res, entry, actual, versions, changes \
     from @.append_async($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14)";

/// After the call: the head now (every position below it is committed, the call's
/// included) in this connection's row of `flushed`, committed durably. The server flushes
/// the WAL up to this commit, which comes after the call's: once it returns, the call's
/// commit is durable, and so is every position below the row's `next`.
const FLUSH: &str = "insert into @.flushed as f (writer, next) select $1, h.next from @.head h \
     on conflict (writer) do update set next = greatest(f.next, excluded.next)";

/// After `FLUSH`: the durable head and the count of removing commits to the listeners,
/// committed asynchronously (a notification is only a wake-up; waiters also poll).
const NOTIFY: &str = "select set_config('synchronous_commit', 'off', true), \
     pg_notify($1, (select max(f.next) from @.flushed f)::text || ' ' || h.changes::text) \
     from @.head h";

/// At each connection: a number for this connection's row of `flushed`, and the rows
/// behind the highest deleted (the highest, which readers read, stays; a live
/// connection's row comes back at its next append).
/// Rows another transaction holds are passed over (no wait: two connecting at once
/// would otherwise lock rows in different orders).
const WRITER: &str = "with gone as (delete from @.flushed where writer in \
       (select writer from @.flushed where writer <> 0 \
        and next < (select max(next) from @.flushed) for update skip locked)) \
     select nextval('@.chunk_keys')";

/// Connects if there is no connection.
async fn connect(conn: &Conn, client: &mut Option<Prepared>) -> Result<()> {
    if client.as_ref().is_some_and(|c| !c.client.is_closed()) {
        return Ok(());
    }
    *client = None;
    let c = conn.fresh().await?;
    // Its first connection is made at the first append; any later one replaces a lost one.
    if conn
        .counters
        .committer_connected
        .swap(true, Ordering::AcqRel)
    {
        conn.counters.reconnected();
    }
    // Unnamed, as every statement (a pooler may give the next one another connection).
    let rows = c
        .query_typed(&conn.qualify(WRITER), &[])
        .await
        .map_err(|e| pg_error("preparing the appends' connection", e))?;
    let writer: i64 = rows
        .first()
        .map(|r| r.get(0))
        .ok_or_else(|| Error::new(ErrorKind::Internal, "nextval returned no row"))?;
    *client = Some(Prepared {
        client: c,
        append: conn.qualify(APPEND_CALL),
        flush: conn.qualify(FLUSH),
        notify: conn.qualify(NOTIFY),
        channel: listener::channel(conn.schema()),
        writer,
    });
    Ok(())
}

/// One call of `append` for these requests on the committer's connection.
/// `check_ids`: look the ids up before writing them (a retry is then an answer, not a
/// failed call). The count of removing commits the answer carries goes to `wake`, so that
/// cursors of this handle holding events that the batch's count limits removed read again.
async fn call(
    wake: &Wakeup,
    c: &Prepared,
    batch: &[Request],
    check_ids: bool,
) -> std::result::Result<Vec<Outcome>, Failure> {
    let a = Arrays::new(batch.iter().map(|r| (&r.entries[..], &r.events[..])));
    let params = [&a.params()[..], &[&check_ids, &c.channel]].concat();
    let (writer, channel): ([&dyn Param; 1], [&dyn Param; 1]) = ([&c.writer], [&c.channel]);
    let (params, writer, channel) = (typed(&params), typed(&writer), typed(&channel));
    // Sent together (joined futures are pipelined), run in this order by the server.
    let (rows, flushed, _) = join3(
        c.client.query_typed(&c.append, &params),
        c.client.query_typed(&c.flush, &writer),
        // A lost notification only delays waiters until they poll: its error is not the
        // caller's (a lost connection shows at the next call).
        c.client.query_typed(&c.notify, &channel),
    )
    .await;
    let rows = rows.map_err(|e| Failure {
        sent: true,
        in_doubt: e.as_db_error().is_none(),
        conflict: e.code() == Some(&SqlState::UNIQUE_VIOLATION)
            || e.code() == Some(&SqlState::T_R_DEADLOCK_DETECTED),
        error: pg_error("appending", e),
    })?;
    // Committed, but durable only once `FLUSH` committed: otherwise in doubt (a retry
    // with the same ids finds what was stored, and flushes it before answering).
    flushed.map_err(|e| {
        let mut error = pg_error("making the append durable", e);
        // A server that turned read-only between the two took the append's commit:
        // that is in doubt, not "refused, nothing stored" (what `ReadOnly` tells).
        if error.kind == ErrorKind::ReadOnly {
            error.kind = ErrorKind::Unavailable;
        }
        Failure {
            sent: true,
            in_doubt: true,
            conflict: false,
            error,
        }
    })?;
    if rows.len() != batch.len() {
        return Err(Failure::from(Error::new(
            ErrorKind::Internal,
            format!(
                "the append function answered {} requests of {}",
                rows.len(),
                batch.len()
            ),
        )));
    }
    if let Some(changes) = rows.first().map(|r| r.get::<_, i64>(4)) {
        wake.saw_changes(changes as u64);
    }
    Ok(rows.iter().map(outcome).collect())
}

/// Runs three futures together and waits for all of them. Each is first polled in
/// order, so the client sends their statements in that order, one after the other
/// (tokio-postgres pipelines statements whose futures are polled before answers come).
async fn join3<A: Future, B: Future, C: Future>(
    a: A,
    b: B,
    c: C,
) -> (A::Output, B::Output, C::Output) {
    let (mut a, mut b, mut c) = (pin!(a), pin!(b), pin!(c));
    let (mut ra, mut rb, mut rc) = (None, None, None);
    poll_fn(|cx| {
        if ra.is_none() {
            if let Poll::Ready(v) = a.as_mut().poll(cx) {
                ra = Some(v);
            }
        }
        if rb.is_none() {
            if let Poll::Ready(v) = b.as_mut().poll(cx) {
                rb = Some(v);
            }
        }
        if rc.is_none() {
            if let Poll::Ready(v) = c.as_mut().poll(cx) {
                rc = Some(v);
            }
        }
        match ra.is_some() && rb.is_some() && rc.is_some() {
            true => Poll::Ready(()),
            false => Poll::Pending,
        }
    })
    .await;
    match (ra, rb, rc) {
        (Some(a), Some(b), Some(c)) => (a, b, c),
        _ => unreachable!("poll_fn returned only once all three were ready"),
    }
}

/// One answer row of `append` (res, entry, actual, versions) as an outcome.
pub fn outcome(row: &tokio_postgres::Row) -> Outcome {
    let (res, entry, actual): (i64, i32, i64) = (row.get(0), row.get(1), row.get(2));
    match res {
        p if p >= 0 => Outcome::Written {
            first: p as u64,
            versions: row
                .get::<_, Option<Vec<i64>>>(3)
                .unwrap_or_default()
                .into_iter()
                .map(|v| v as u64)
                .collect(),
        },
        -1 => Outcome::WrongVersion {
            entry: (entry.max(1) - 1) as usize,
            actual,
        },
        -2 => Outcome::Retry,
        -4 => Outcome::Deleted {
            entry: (entry.max(1) - 1) as usize,
        },
        -8 => Outcome::Forgotten,
        _ => Outcome::PartlyStored {
            position: actual.max(0) as u64,
        },
    }
}

/// The arguments of `append` for some requests (each its entries and events), in the
/// function's order: per request its entry count; per entry its stream, expected version
/// and event count; per event its id, type, schema version, metadata and payload; per
/// event with an id, once more: the id, its entry (1-based) and its index there.
pub struct Arrays<'a> {
    pub r_entries: Vec<i32>,
    pub s_stream: Vec<&'a str>,
    pub s_expected: Vec<i64>,
    pub s_count: Vec<i32>,
    pub e_id: Vec<Option<Uuid<'a>>>,
    pub e_type: Vec<&'a str>,
    pub e_sv: Vec<i32>,
    pub e_meta: Vec<Option<&'a [u8]>>,
    pub e_data: Vec<&'a [u8]>,
    pub i_id: Vec<Uuid<'a>>,
    pub i_entry: Vec<i32>,
    pub i_idx: Vec<i32>,
}

impl<'a> Arrays<'a> {
    /// The arrays as the function's parameters, in its order.
    pub fn params(&self) -> [&dyn Param; 12] {
        [
            &self.r_entries,
            &self.s_stream,
            &self.s_expected,
            &self.s_count,
            &self.e_id,
            &self.e_type,
            &self.e_sv,
            &self.e_meta,
            &self.e_data,
            &self.i_id,
            &self.i_entry,
            &self.i_idx,
        ]
    }

    pub fn new(requests: impl Iterator<Item = (&'a [Entry], &'a [OwnedEvent])>) -> Arrays<'a> {
        let mut a = Arrays {
            r_entries: Vec::new(),
            s_stream: Vec::new(),
            s_expected: Vec::new(),
            s_count: Vec::new(),
            e_id: Vec::new(),
            e_type: Vec::new(),
            e_sv: Vec::new(),
            e_meta: Vec::new(),
            e_data: Vec::new(),
            i_id: Vec::new(),
            i_entry: Vec::new(),
            i_idx: Vec::new(),
        };
        for (entries, events) in requests {
            a.r_entries.push(entries.len() as i32);
            let mut evs = events.iter();
            for e in entries {
                a.s_stream.push(e.stream.as_str());
                a.s_expected.push(e.expected);
                a.s_count.push(e.count);
                let entry = a.s_stream.len() as i32;
                for (idx, ev) in evs.by_ref().take(e.count as usize).enumerate() {
                    if let Some(id) = &ev.id {
                        a.i_id.push(Uuid(id));
                        a.i_entry.push(entry);
                        a.i_idx.push(idx as i32);
                    }
                }
            }
            for e in events {
                a.e_id.push(e.id.as_ref().map(Uuid));
                a.e_type.push(e.event_type.as_str());
                a.e_sv.push(e.schema_version);
                a.e_meta.push(e.metadata.as_deref());
                a.e_data.push(&e.payload[..]);
            }
        }
        a
    }
}
