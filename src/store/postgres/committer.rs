//! Client-side group commit: every append of a store handle goes to one task on the
//! runtime with its own connection, which sends everything waiting as one call of the
//! `append` function (one transaction, one commit) and answers each caller with its own
//! result. While a call runs, new appends queue up and form the next batch. The function
//! notifies the schema's channel with the new head when it wrote events (see `listener`):
//! the server delivers it at the commit.

use super::conn::{pg_error, Conn};
use super::listener::{self, Wakeup};
use super::uuid::Uuid;
use crate::error::{Error, ErrorKind, Result};

use std::sync::Arc;
use tokio::sync::mpsc;
use tokio_postgres::error::SqlState;
use tokio_postgres::{Client, Statement};

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
    pub metadata: Vec<u8>,
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
}

/// One append (one `evs_append`/`evs_append_multi` call) waiting for its commit.
pub struct Request {
    pub entries: Vec<Entry>,
    pub events: Vec<OwnedEvent>,
    pub reply: std::sync::mpsc::SyncSender<Result<Outcome>>,
}

impl Request {
    fn all_have_ids(&self) -> bool {
        self.events.iter().all(|e| e.id.is_some())
    }
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
        match commit(&conn, &wake, &mut client, &batch, false).await {
            Ok(outcomes) => {
                for (r, o) in batch.iter().zip(outcomes) {
                    let _ = r.reply.send(Ok(o));
                }
            }
            Err(failure) => {
                client = None;
                settle(&conn, &wake, &mut client, batch, failure).await;
            }
        }
    }
}

/// How often a request sent alone is sent again when it met another transaction's
/// uncommitted copy of one of its ids (or a deadlock over them): by then that transaction
/// has ended, and the lookup finds what it stored.
const CONFLICT_TRIES: usize = 3;

/// Answers the requests of a batch whose call failed: nothing of it was written, or its
/// commit is in doubt. On a fresh connection, the batch again with its ids looked up
/// first (a request of an earlier append, whose stored id the `ids` key refused, is then
/// answered as a retry; with event ids, what an in-doubt commit stored is found the same
/// way); if that fails too, each request alone. A request without ids after an in-doubt
/// commit cannot be repeated safely: its caller is told.
async fn settle(
    conn: &Conn,
    wake: &Wakeup,
    client: &mut Option<Prepared>,
    batch: Vec<Request>,
    failure: Failure,
) {
    let (again, doubtful): (Vec<Request>, Vec<Request>) = batch
        .into_iter()
        .partition(|r| !failure.in_doubt || r.all_have_ids());
    for r in doubtful {
        let _ = r.reply.send(Err(in_doubt(&failure.error)));
    }
    if again.is_empty() {
        return;
    }
    if let Ok(outcomes) = commit(conn, wake, client, &again, true).await {
        for (r, o) in again.iter().zip(outcomes) {
            let _ = r.reply.send(Ok(o));
        }
        return;
    }
    *client = None;
    for r in &again {
        let mut tries = 0;
        let result = loop {
            tries += 1;
            match commit(conn, wake, client, std::slice::from_ref(r), true).await {
                Ok(mut o) => break Ok(o.remove(0)),
                Err(f) if f.conflict && tries < CONFLICT_TRIES => continue,
                Err(f) if f.in_doubt && !r.all_have_ids() => break Err(in_doubt(&f.error)),
                Err(f) => break Err(f.error),
            }
        };
        let _ = r.reply.send(result);
    }
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
    in_doubt: bool,
    /// Another transaction's copy of one of the ids (a unique violation) or a deadlock
    /// over them: sending the same call again can succeed.
    conflict: bool,
}

impl From<Error> for Failure {
    fn from(error: Error) -> Self {
        Failure {
            error,
            in_doubt: false,
            conflict: false,
        }
    }
}

/// The error for an append whose commit may or may not have happened.
fn in_doubt(e: &Error) -> Error {
    Error::new(
        ErrorKind::Io,
        format!(
            "{}; the append may or may not be stored: give its events ids to retry it safely",
            e.message
        ),
    )
}

/// The committer's connection and its `append` call, prepared once per connection (each
/// batch is then one round trip: bind and execute).
struct Prepared {
    client: Client,
    append: Statement,
    /// The channel the function notifies.
    channel: String,
}

/// The call the committer prepares.
const APPEND_CALL: &str = "select res, entry, actual, versions, changes \
     from append($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14)";

/// One call of `append` for these requests, connecting (and preparing) first if needed.
/// `check_ids`: look the ids up before writing them (a retry is then an answer, not a
/// failed call). The count of removing commits the answer carries goes to `wake`, so that
/// cursors of this handle holding events that the batch's count limits removed read again.
async fn commit(
    conn: &Conn,
    wake: &Wakeup,
    client: &mut Option<Prepared>,
    batch: &[Request],
    check_ids: bool,
) -> std::result::Result<Vec<Outcome>, Failure> {
    if client.as_ref().is_none_or(|c| c.client.is_closed()) {
        *client = None;
        let c = conn.fresh().await?;
        let append = c
            .prepare(APPEND_CALL)
            .await
            .map_err(|e| pg_error("preparing the append call", e))?;
        *client = Some(Prepared {
            client: c,
            append,
            channel: listener::channel(conn.schema()),
        });
    }
    let c = client.as_ref().expect("connected above");
    let mut r_entries = Vec::with_capacity(batch.len());
    let (mut s_stream, mut s_expected, mut s_count) = (Vec::new(), Vec::new(), Vec::new());
    let (mut e_id, mut e_type, mut e_sv, mut e_meta, mut e_data) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new(), Vec::new());
    // The events that have ids, once more: id, entry (1-based in the batch), index in it.
    let (mut i_id, mut i_entry, mut i_idx) = (Vec::new(), Vec::new(), Vec::new());
    for r in batch {
        r_entries.push(r.entries.len() as i32);
        let mut events = r.events.iter();
        for e in &r.entries {
            s_stream.push(e.stream.as_str());
            s_expected.push(e.expected);
            s_count.push(e.count);
            let entry = s_stream.len() as i32;
            for (idx, ev) in events.by_ref().take(e.count as usize).enumerate() {
                if let Some(id) = &ev.id {
                    i_id.push(Uuid(id));
                    i_entry.push(entry);
                    i_idx.push(idx as i32);
                }
            }
        }
        for e in &r.events {
            e_id.push(e.id.as_ref().map(Uuid));
            e_type.push(e.event_type.as_str());
            e_sv.push(e.schema_version);
            e_meta.push(&e.metadata[..]);
            e_data.push(&e.payload[..]);
        }
    }
    let rows = c
        .client
        .query(
            &c.append,
            &[
                &r_entries,
                &s_stream,
                &s_expected,
                &s_count,
                &e_id,
                &e_type,
                &e_sv,
                &e_meta,
                &e_data,
                &i_id,
                &i_entry,
                &i_idx,
                &check_ids,
                &c.channel,
            ],
        )
        .await
        .map_err(|e| Failure {
            in_doubt: e.as_db_error().is_none(),
            conflict: e.code() == Some(&SqlState::UNIQUE_VIOLATION)
                || e.code() == Some(&SqlState::T_R_DEADLOCK_DETECTED),
            error: pg_error("appending", e),
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
    Ok(rows
        .iter()
        .map(|row| {
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
                _ => Outcome::PartlyStored {
                    position: actual.max(0) as u64,
                },
            }
        })
        .collect())
}
