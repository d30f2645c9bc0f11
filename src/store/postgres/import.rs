//! PostgreSQL's side of moving a log (`store::import`, docs/export-format.md): reading
//! the lifecycle entries between events, and writing items at their own positions and
//! times. A batch is one transaction under the head lock (as an append or an entry), on
//! the handle's own connection for entries: the checks against the head and the streams,
//! one `chunks` row per run of one stream's events of one time, their ids, the streams'
//! rows, each entry through `apply_entry` at its own position (its time put back after),
//! and the head moved to the batch's end. Positions without a row are empty, as a
//! removal leaves them: nothing else marks a gap.

use super::conn::{pg_error, typed, Conn, Param};
use super::lifecycle::entry_args;
use super::subjects::{self, Imported};
use super::uuid::Uuid;
use super::{block, listener, PgStore};
use crate::error::{Error, ErrorKind, Result};
use crate::store::backend::Backend;
use crate::store::import::{check_batch, check_forgotten, check_versions, Item, LogEntry};
use crate::store::lifecycle::LifecycleOp;
use crate::store::Event;
use std::collections::HashMap;
use tokio_postgres::{Client, Transaction};

/// Writes a run of events as chunk rows and their ids (arrays, one statement).
const INSERT_CHUNKS: &str = "
with c as (
  insert into @.chunks (first_pos, chunk, stream, first_version, n, ts, types, schema_versions,
                        ids, metadata, data)
  select x.p, nextval('@.chunk_keys'), x.s, case when x.s = '' then 0 else x.v end, x.c, x.t,
         $7[x.e : x.e + x.c - 1], $8[x.e : x.e + x.c - 1], $9[x.e : x.e + x.c - 1],
         $10[x.e : x.e + x.c - 1], $11[x.e : x.e + x.c - 1]
  from unnest($1::int8[], $2::text[], $3::int8[], $4::int4[], $5::int8[], $6::int4[])
    as x(p, s, v, c, t, e)
  returning chunk, n, ids
), i as (
  insert into @.ids (id, chunk, idx)
  select c.ids[k + 1], c.chunk, k from c cross join lateral generate_series(0, c.n - 1) k
  where c.ids[k + 1] is not null
  returning 1
)
select (select count(*) from c), (select count(*) from i)";

/// The streams a run of events wrote: created, or moved to their new last version (and
/// no longer soft-deleted, as an append does).
const UPSERT_STREAMS: &str = "
insert into @.streams as s (name, version, first_pos)
  select x.s, x.v, x.p from unnest($1::text[], $2::int8[], $3::int8[]) as x(s, v, p)
  on conflict (name) do update set version = greatest(s.version, excluded.version),
    deleted = false";

/// A stream an entry names: it may have no row yet (every event it had before the entry
/// was removed in the source, so none was imported).
const ENSURE_STREAM: &str = "
insert into @.streams as s (name, version, first_pos) values ($1, $2, $3)
  on conflict (name) do update set version = greatest(s.version, excluded.version)";

/// One chunk row to be: its first event's index in the run's arrays (1-based), count.
struct Chunk<'a> {
    first: &'a Event,
    e: i32,
    n: i32,
}

fn failed(what: &str) -> impl Fn(tokio_postgres::Error) -> Error + '_ {
    move |e| {
        let unique = e
            .as_db_error()
            .is_some_and(|d| *d.code() == tokio_postgres::error::SqlState::UNIQUE_VIOLATION);
        let err = pg_error(what, e);
        match unique {
            true => Error::new(ErrorKind::AlreadyExists, err.message),
            false => err,
        }
    }
}

impl PgStore {
    /// The lifecycle entries at positions `from .. to`, with their ids.
    pub(super) fn log_entries(&self, from: u64, to: u64) -> Result<Vec<LogEntry>> {
        self.check_owner()?;
        let big = |v: u64| v.min(i64::MAX as u64) as i64;
        let rows = self.query(
            "select e.pos, e.ts, e.op, uuid_send(i.id) from @.entries e \
             left join @.ids i on i.chunk = e.chunk \
             where e.pos >= $1 and e.pos < $2 order by e.pos",
            &[&big(from), &big(to)],
            "reading the lifecycle entries",
        )?;
        rows.iter()
            .map(|r| {
                let position = r.get::<_, i64>(0) as u64;
                let op = LifecycleOp::decode(r.get::<_, &[u8]>(2)).map_err(|e| {
                    Error::corrupt(format!(
                        "the lifecycle entry at position {position}: {}",
                        e.message
                    ))
                })?;
                let id = match r.get::<_, Option<&[u8]>>(3) {
                    Some(b) => Some(<[u8; 16]>::try_from(b).map_err(|_| {
                        Error::corrupt(format!(
                            "the id of the lifecycle entry at position {position} is not 16 bytes"
                        ))
                    })?),
                    None => None,
                };
                Ok(LogEntry {
                    position,
                    timestamp_us: r.get::<_, i64>(1) as u64,
                    id,
                    op,
                })
            })
            .collect()
    }

    /// Writes `items` at their positions (`Backend::import`) in one transaction, the
    /// events that name a subject sealed first (`subjects::import_elements`). A forget
    /// entry does in the transaction what `forget_subject` does (the entry, the subject
    /// recorded as forgotten, its key row deleted); after the commit this handle forgets
    /// the subject and the key table is vacuumed, as after `forget_subject`.
    pub(super) fn import_items(&self, items: &[Item], end: u64) -> Result<()> {
        self.check_writable()?;
        let imported = subjects::import_elements(&self.keys, items)?;
        let changes = block(
            &self.runtime,
            self.import_on_own_connection(items, &imported, end),
        )?;
        self.wake.saw_changes(changes);
        self.saw(end);
        // Each forget's key destroyed where a key provider keeps it, even if one fails
        // (the batch is committed: its forgets are recorded; forgetting the subject
        // again destroys a key left).
        let (mut forgot, mut failed) = (false, None);
        for item in items {
            if let Item::Entry(LogEntry {
                position,
                op: LifecycleOp::Forget { subject },
                ..
            }) = item
            {
                if let Err(e) = self.forgotten(subject, *position) {
                    failed.get_or_insert(e);
                }
                forgot = true;
            }
        }
        if forgot {
            self.vacuum_keys();
        }
        self.catch_up()?;
        failed.map_or(Ok(()), Err)
    }

    async fn import_on_own_connection(
        &self,
        items: &[Item],
        imported: &[Imported],
        end: u64,
    ) -> Result<u64> {
        let mut slot = self.lifecycle_client.lock().await;
        if slot.as_ref().is_none_or(Client::is_closed) {
            *slot = Some(self.conn.fresh().await?);
        }
        let client = slot.as_mut().expect("connected above");
        let channel = listener::channel(self.conn.schema());
        let max = self.options.max_event_size;
        let batch = Batch {
            items,
            imported,
            end,
        };
        let done = import_transaction(&self.conn, client, &channel, &batch, max).await;
        if done.is_err() && slot.as_ref().is_some_and(Client::is_closed) {
            *slot = None;
        }
        done
    }
}

/// An import batch: its items, its events as they are stored (`import_elements`, one
/// per event in order), and the next position after it.
struct Batch<'a> {
    items: &'a [Item],
    imported: &'a [Imported],
    end: u64,
}

/// One batch: checks, chunks, ids, streams, entries, the head; returns the head's
/// `changes` after it.
async fn import_transaction(
    conn: &Conn,
    client: &mut Client,
    channel: &str,
    batch: &Batch<'_>,
    max_event_size: usize,
) -> Result<u64> {
    let (items, end) = (batch.items, batch.end);
    let tx = client
        .transaction()
        .await
        .map_err(failed("starting an import"))?;
    let head = tx
        .query_typed_one(
            &conn.qualify("select next, last_ts from @.head for update"),
            &[],
        )
        .await
        .map_err(failed("locking the head"))?;
    let (next, last_ts) = (head.get::<_, i64>(0) as u64, head.get::<_, i64>(1) as u64);
    check_batch(conn.location(), items, end, next, last_ts, max_event_size)?;
    let mut names: Vec<&str> = items
        .iter()
        .filter_map(|i| match i {
            Item::Event(e) if !e.stream.is_empty() => Some(e.stream.as_str()),
            Item::Entry(e) => e.op.stream(),
            _ => None,
        })
        .collect();
    names.sort_unstable();
    names.dedup();
    let rows = tx
        .query_typed(
            &conn.qualify("select name, version, tombstone from @.streams where name = any($1)"),
            &typed(&[&names]),
        )
        .await
        .map_err(failed("reading the streams' versions"))?;
    let state: HashMap<String, (u64, bool)> = rows
        .iter()
        .map(|r| {
            (
                r.get::<_, String>(0),
                (r.get::<_, i64>(1) as u64, r.get::<_, bool>(2)),
            )
        })
        .collect();
    check_versions(items, |s| {
        Ok(state.get(s).map_or((None, false), |&(v, t)| (Some(v), t)))
    })?;
    check_not_forgotten(conn, &tx, items).await?;
    let (mut i, mut ev) = (0, 0);
    while i < items.len() {
        match &items[i] {
            Item::Entry(e) => {
                write_entry(conn, &tx, channel, e).await?;
                i += 1;
            }
            Item::Event(_) => {
                let j = items[i..]
                    .iter()
                    .position(|x| matches!(x, Item::Entry(_)))
                    .map_or(items.len(), |k| i + k);
                let events: Vec<&Event> = items[i..j]
                    .iter()
                    .filter_map(|x| match x {
                        Item::Event(e) => Some(e),
                        Item::Entry(_) => None,
                    })
                    .collect();
                let imported = &batch.imported[ev..ev + events.len()];
                write_events(conn, &tx, &events, imported).await?;
                ev += events.len();
                i = j;
            }
        }
    }
    let last_ts = items
        .last()
        .map_or(last_ts, |i| i.timestamp_us().max(last_ts));
    let big = |v: u64| v.min(i64::MAX as u64) as i64;
    let row = tx
        .query_typed_one(
            &conn.qualify(
                "update @.head h set next = $1, last_ts = $2, changes = h.changes + 1 \
                 returning h.changes",
            ),
            &typed(&[&big(end), &big(last_ts)]),
        )
        .await
        .map_err(failed("moving the head"))?;
    let changes = row.get::<_, i64>(0) as u64;
    let note = format!("{end} {changes}");
    tx.query_typed(
        "select pg_notify($1, $2)",
        &typed(&[&channel, &note.as_str()]),
    )
    .await
    .map_err(failed("notifying the store's waiters"))?;
    tx.commit()
        .await
        .map_err(failed("committing an import batch (it may or may not be written: a copy run again goes on from where the store is)"))?;
    Ok(changes)
}

/// Refuses, under the head lock, an event not erased whose subject this store forgot:
/// by a forget committed by any handle (`forgotten_subjects`), or earlier in the batch.
async fn check_not_forgotten(conn: &Conn, tx: &Transaction<'_>, items: &[Item]) -> Result<()> {
    let mut named: Vec<&str> = items
        .iter()
        .filter_map(|i| match i {
            Item::Event(e) if !e.erased => e.subject.as_deref(),
            _ => None,
        })
        .collect();
    if named.is_empty() {
        return Ok(());
    }
    named.sort_unstable();
    named.dedup();
    let rows = tx
        .query_typed(
            &conn.qualify("select subject, pos from @.forgotten_subjects where subject = any($1)"),
            &typed(&[&named]),
        )
        .await
        .map_err(failed("reading the forgotten subjects"))?;
    let gone: HashMap<String, u64> = rows
        .iter()
        .map(|r| (r.get::<_, String>(0), r.get::<_, i64>(1) as u64))
        .collect();
    check_forgotten(items, |s| gone.get(s).map(|&at| Some(at)))
}

/// Writes events (all of one run, in position order) as chunk rows with their ids, and
/// their streams' rows; `imported`: each one's id and sealed element (`import_elements`).
async fn write_events(
    conn: &Conn,
    tx: &Transaction<'_>,
    events: &[&Event],
    imported: &[Imported],
) -> Result<()> {
    let mut chunks: Vec<Chunk<'_>> = Vec::new();
    for (k, e) in events.iter().enumerate() {
        let joins = chunks.last().is_some_and(|c| {
            let prev = events[(c.e + c.n - 2) as usize];
            prev.stream == e.stream
                && prev.position + 1 == e.position
                && prev.timestamp_us == e.timestamp_us
                && (e.stream.is_empty() || prev.stream_version + 1 == e.stream_version)
        });
        match (joins, chunks.last_mut()) {
            (true, Some(c)) => c.n += 1,
            _ => chunks.push(Chunk {
                first: e,
                e: k as i32 + 1,
                n: 1,
            }),
        }
    }
    let big = |v: u64| v.min(i64::MAX as u64) as i64;
    let c_pos: Vec<i64> = chunks.iter().map(|c| big(c.first.position)).collect();
    let c_stream: Vec<&str> = chunks.iter().map(|c| c.first.stream.as_str()).collect();
    let c_version: Vec<i64> = chunks.iter().map(|c| big(c.first.stream_version)).collect();
    let c_n: Vec<i32> = chunks.iter().map(|c| c.n).collect();
    let c_ts: Vec<i64> = chunks.iter().map(|c| big(c.first.timestamp_us)).collect();
    let c_e: Vec<i32> = chunks.iter().map(|c| c.e).collect();
    let e_type: Vec<&str> = events.iter().map(|e| e.event_type.as_str()).collect();
    let e_sv: Vec<i32> = events
        .iter()
        .map(|e| e.schema_version.max(1).min(i32::MAX as u32) as i32)
        .collect();
    let e_id: Vec<Option<Uuid<'_>>> = imported.iter().map(|x| x.id.as_ref().map(Uuid)).collect();
    // A sealed event's metadata element is null, its data element the sealed bytes.
    let e_meta: Vec<Option<&[u8]>> = events
        .iter()
        .zip(imported)
        .map(|(e, x)| x.sealed.is_none().then_some(e.metadata.as_slice()))
        .collect();
    let e_data: Vec<&[u8]> = events
        .iter()
        .zip(imported)
        .map(|(e, x)| x.sealed.as_deref().unwrap_or(&e.payload))
        .collect();
    let params: [&dyn Param; 11] = [
        &c_pos, &c_stream, &c_version, &c_n, &c_ts, &c_e, &e_type, &e_sv, &e_id, &e_meta, &e_data,
    ];
    tx.query_typed(&conn.qualify(INSERT_CHUNKS), &typed(&params))
        .await
        .map_err(failed("writing the imported events"))?;
    // Each stream's last version in the run and its first position.
    let mut streams: Vec<(&str, i64, i64)> = Vec::new();
    for e in events.iter().filter(|e| !e.stream.is_empty()) {
        match streams.iter_mut().find(|s| s.0 == e.stream) {
            Some(s) => s.1 = s.1.max(big(e.stream_version)),
            None => streams.push((&e.stream, big(e.stream_version), big(e.position))),
        }
    }
    if !streams.is_empty() {
        let names: Vec<&str> = streams.iter().map(|s| s.0).collect();
        let versions: Vec<i64> = streams.iter().map(|s| s.1).collect();
        let firsts: Vec<i64> = streams.iter().map(|s| s.2).collect();
        tx.query_typed(
            &conn.qualify(UPSERT_STREAMS),
            &typed(&[&names, &versions, &firsts]),
        )
        .await
        .map_err(failed("writing the imported streams"))?;
    }
    Ok(())
}

/// Writes one lifecycle entry at its own position and time: the head is put at its
/// position, `apply_entry` removes what it removes and writes it there (a forget:
/// `forget_subject` writes it, records the subject as forgotten and deletes its key),
/// then its time and chunk key (its id's) are set to the entry's own (both functions
/// stamp the server's clock and take a key of their own).
async fn write_entry(conn: &Conn, tx: &Transaction<'_>, channel: &str, e: &LogEntry) -> Result<()> {
    let big = |v: u64| v.min(i64::MAX as u64) as i64;
    let (pos, ts) = (big(e.position), big(e.timestamp_us));
    let name: &str = match &e.op {
        LifecycleOp::Retention { target, .. } => target,
        op => op.stream().unwrap_or(""),
    };
    if let (Some(stream), Some(version)) = (e.op.stream(), e.op.version()) {
        tx.query_typed(
            &conn.qualify(ENSURE_STREAM),
            &typed(&[&stream, &big(version), &pos]),
        )
        .await
        .map_err(failed("writing the stream of an imported entry"))?;
    }
    let key: i64 = match &e.id {
        Some(id) => tx
            .query_typed_one(
                &conn.qualify(
                    "insert into @.ids (id, chunk, idx) select $1, nextval('@.chunk_keys'), 0 \
                     returning chunk",
                ),
                &typed(&[&Uuid(id)]),
            )
            .await
            .map_err(failed("storing the id of an imported entry"))?
            .get(0),
        None => tx
            .query_typed_one(&conn.qualify("select nextval('@.chunk_keys')"), &[])
            .await
            .map_err(failed("taking a chunk key"))?
            .get(0),
    };
    tx.query_typed(
        &conn.qualify("update @.head set next = $1, last_ts = $2"),
        &typed(&[&pos, &ts]),
    )
    .await
    .map_err(failed("placing the head at an imported entry"))?;
    let (kind, a, b) = entry_args(&e.op);
    let encoded = e.op.encode();
    let channel = channel.to_owned();
    let (sql, params): (&str, Vec<&dyn Param>) = match &e.op {
        LifecycleOp::Forget { subject } => (
            "select @.forget_subject($1, $2, $3)",
            vec![subject, &encoded, &channel],
        ),
        _ => (
            "select entry_pos from @.apply_entry($1, $2, $3, $4, $5, $6, $7, $8)",
            vec![&kind, &name, &a, &b, &encoded, &key, &ts, &channel],
        ),
    };
    let row = tx
        .query_typed_one(&conn.qualify(sql), &typed(&params))
        .await
        .map_err(failed(&format!(
            "applying the imported {}",
            e.op.describe()
        )))?;
    if let (LifecycleOp::Forget { subject }, at) = (&e.op, row.get::<_, i64>(0)) {
        if at != pos {
            // (Written nothing: the subject was forgotten here before.)
            return Err(Error::invalid(format!(
                "the forget of subject '{subject}' at position {pos}: this store forgot it at \
                 position {at} already"
            )));
        }
    }
    if row.get::<_, i64>(0) != pos {
        return Err(Error::new(
            ErrorKind::Internal,
            format!(
                "an imported entry went to position {} instead of {pos}",
                row.get::<_, i64>(0)
            ),
        ));
    }
    tx.query_typed(
        &conn.qualify("update @.entries set ts = $2, chunk = $3 where pos = $1"),
        &typed(&[&pos, &ts, &key]),
    )
    .await
    .map_err(failed("stamping an imported entry"))?;
    tx.query_typed(
        &conn.qualify("update @.head set last_ts = $1"),
        &typed(&[&ts]),
    )
    .await
    .map_err(failed("stamping the head"))?;
    Ok(())
}
