//! Lifecycle entries on PostgreSQL (docs/lifecycle.md; docs/postgres.md "Lifecycle"): a
//! delete, truncation or retention rule is one transaction on a connection of its own.
//! Its id (if any) is written to `ids` first, before the head lock, as an append's ids
//! are; then the head row is locked, the stream's state read and checked
//! (`LifecycleRequest::to_op`), and `apply_entry` deletes or rewrites the removed events'
//! rows, writes the entry at the next position, moves the head and notifies. Every writer
//! takes the head lock first, so the checks and the removal are one step for all of them.
//!
//! Also here: the retention rules as readers hold them (`Rules`), the store's clock, and
//! compaction (deleting the rows that rules by age have removed).

use super::conn::{pg_error, typed, Conn};
use super::uuid::Uuid;
use super::{block, listener, PgStore};
use crate::error::{Error, ErrorKind, Result};
use crate::store::backend::Backend;
use crate::store::check_name;
use crate::store::lifecycle::{
    self, id_taken, CompactInfo, LifecycleOp, LifecycleRequest, Removals, Rule, WriterView,
};
use std::sync::Arc;
use std::time::Instant;
use tokio_postgres::Client;

/// The retention rules in force after a number of lifecycle entries (rules change only
/// with an entry), for readers: rules by count delete rows at once, so readers only judge
/// events by age.
pub struct Rules {
    pub entries: u64,
    removals: Removals,
    has_age: bool,
}

impl Rules {
    /// No rule (a store with no lifecycle entry).
    pub fn none() -> Rules {
        Rules {
            entries: 0,
            removals: Removals::default(),
            has_age: false,
        }
    }

    /// Whether the rule in force for `stream` removes an event of time `ts` at `now_us`.
    pub fn removes_by_age(&self, stream: &str, ts: u64, now_us: u64) -> bool {
        ts < self.min_timestamp(stream, now_us)
    }

    /// The time before which the rule in force for `stream` removes events at `now_us`
    /// (0: none by age).
    pub fn min_timestamp(&self, stream: &str, now_us: u64) -> u64 {
        if !self.has_age || stream.is_empty() {
            return 0;
        }
        self.removals
            .rule_for(stream)
            .filter(|r| r.max_age_us > 0)
            .map_or(0, |r| now_us.saturating_sub(r.max_age_us))
    }

    pub fn has_age(&self) -> bool {
        self.has_age
    }
}

/// How an entry's transaction ended.
enum Done {
    /// Written at this position; the head's count of removing commits after it.
    Applied { position: u64, changes: u64 },
    /// Its id is stored already: an earlier entry's (a retry) or an event's.
    IdStored,
}

/// Why an entry's transaction failed.
struct Failure {
    error: Error,
    /// The connection failed (not the server's answer): connect again.
    connection: bool,
    /// It failed at the commit: the entry may or may not be written.
    in_doubt: bool,
}

impl From<Error> for Failure {
    fn from(error: Error) -> Self {
        Failure {
            error,
            connection: false,
            in_doubt: false,
        }
    }
}

/// A failed statement of an entry's transaction.
fn failed(what: &str, e: tokio_postgres::Error) -> Failure {
    Failure {
        connection: e.as_db_error().is_none(),
        in_doubt: false,
        error: pg_error(what, e),
    }
}

/// How often an entry is tried: a lost connection with an id is tried again (the id then
/// tells whether the first try was written), and so is an id that vanished between being
/// refused and being looked up.
const TRIES: usize = 3;

impl PgStore {
    /// The store's clock (`StoreOptions::clock`), against which rules by age are judged
    /// (reads, compaction, a rule's change), never going back within this handle.
    pub fn now(&self) -> u64 {
        self.clock.now_us()
    }

    /// Appends a lifecycle entry (`Backend::apply_lifecycle`): the projections catch up
    /// and may refuse or pin the stream's version (`lifecycle::guard`), then one
    /// transaction checks and applies it.
    pub(super) fn lifecycle_entry(
        &self,
        req: &LifecycleRequest<'_>,
        id: Option<[u8; 16]>,
    ) -> Result<u64> {
        self.check_writable()?;
        req.validate()?;
        self.catch_up()?;
        let req = lifecycle::guard(&self.projections, *req)?;
        let (position, changes) = block(&self.runtime, self.entry_tries(&req, id))?;
        self.wake.saw_changes(changes);
        self.saw(position + 1);
        if matches!(req, LifecycleRequest::Delete { .. }) {
            self.checkpoint_now();
        }
        Ok(position)
    }

    async fn entry_tries(
        &self,
        req: &LifecycleRequest<'_>,
        id: Option<[u8; 16]>,
    ) -> Result<(u64, u64)> {
        let mut slot = self.lifecycle_client.lock().await;
        let channel = listener::channel(self.conn.schema());
        let mut last = None;
        for _ in 0..TRIES {
            if slot.as_ref().is_none_or(Client::is_closed) {
                if slot.is_some() {
                    self.conn.counters.reconnected();
                }
                *slot = Some(self.conn.fresh().await?);
            }
            let client = slot.as_mut().expect("connected above");
            // Within `timeout`; one that passes it may have reached its commit.
            let bounded = tokio::time::timeout(
                self.conn.timeout(),
                entry_transaction(&self.conn, client, &channel, req, id, self.now()),
            );
            let tried = bounded.await.unwrap_or_else(|_| {
                Err(Failure {
                    error: self.conn.timed_out("applying a lifecycle entry"),
                    connection: true,
                    in_doubt: true,
                })
            });
            match tried {
                Ok(Done::Applied { position, changes }) => return Ok((position, changes)),
                Ok(Done::IdStored) => match self
                    .conn
                    .within(
                        "looking up the lifecycle entry's id",
                        stored_entry(&self.conn, client, req, id),
                    )
                    .await?
                {
                    Some(position) => return Ok((position, 0)),
                    None => continue,
                },
                Err(f) => {
                    if f.connection {
                        *slot = None;
                    }
                    if !(f.connection && id.is_some()) {
                        return Err(match f.in_doubt {
                            true => Error::new(
                                ErrorKind::Io,
                                format!(
                                    "{}; the operation may or may not be applied: give it an \
                                     id to retry it safely",
                                    f.error.message
                                ),
                            ),
                            false => f.error,
                        });
                    }
                    last = Some(f.error);
                }
            }
        }
        Err(last.unwrap_or_else(|| {
            Error::new(
                ErrorKind::Internal,
                format!("the lifecycle entry's id was refused and not found, {TRIES} times"),
            )
        }))
    }

    /// The rule in force for stream `name`, or the rule set on exactly the prefix `name`.
    pub(super) fn rule(&self, name: &str, category: bool) -> Result<Option<Rule>> {
        self.check_owner()?;
        check_name(
            if category {
                "category prefix"
            } else {
                "stream name"
            },
            name,
            category,
        )?;
        let sql = if category {
            "select max_count, max_age_us from @.rules where category and target = $1"
        } else {
            "select max_count, max_age_us from @.rule_for($1)"
        };
        let rows = self.query(sql, &[&name], "reading a retention rule")?;
        Ok(rows.first().map(|r| Rule {
            max_count: r.get::<_, i64>(0) as u64,
            max_age_us: r.get::<_, i64>(1) as u64,
        }))
    }

    /// Deletes the rows of the events that rules by age have removed by now (reads pass
    /// over them already), one stream per statement (its own transaction: appends to
    /// other streams go on). What it counts: chunk rows deleted or rewritten, their events
    /// and their bytes as stored before and after; PostgreSQL's files do not shrink
    /// (docs/postgres.md "What PostgreSQL keeps after a DELETE").
    pub(super) fn compact_rows(&self) -> Result<CompactInfo> {
        self.check_writable()?;
        let started = Instant::now();
        let now = self.now().min(i64::MAX as u64) as i64;
        let streams = self.query(
            "select s.name from @.streams s where not s.tombstone and exists (\
               select 1 from @.rules r where r.max_age_us > 0 \
                 and ((not r.category and r.target = s.name) \
                      or (r.category and starts_with(s.name, r.target)))) \
             order by s.name",
            &[],
            "finding the streams that rules by age apply to",
        )?;
        let mut info = CompactInfo::default();
        for s in &streams {
            let name: &str = s.get(0);
            let rows = self.query(
                "select * from @.remove_aged($1, $2)",
                &[&name, &now],
                "deleting the rows a rule by age removed",
            )?;
            if let Some(r) = rows.first() {
                info.events_erased += r.get::<_, i64>(0) as u64;
                info.segments_rewritten += r.get::<_, i64>(1) as u64;
                info.bytes_before += r.get::<_, i64>(2) as u64;
                info.bytes_after += r.get::<_, i64>(3) as u64;
            }
        }
        info.duration = started.elapsed();
        Ok(info)
    }

    /// The rules after `entries` lifecycle entries, read again if the ones held are of
    /// another count; `None` if the store has moved past `entries` meanwhile (the caller
    /// reads again).
    pub(super) fn rules_at(&self, entries: u64) -> Result<Option<Arc<Rules>>> {
        {
            let held = self.rules.lock().unwrap_or_else(|e| e.into_inner());
            if held.entries == entries {
                return Ok(Some(held.clone()));
            }
        }
        let rows = self.query(
            "select h.entries, h.changes, r.category, r.target, r.max_count, r.max_age_us \
             from @.head h left join @.rules r on true",
            &[],
            "reading the retention rules",
        )?;
        let mut removals = Removals::default();
        let mut has_age = false;
        let mut read = None;
        for row in &rows {
            read = Some(row.get::<_, i64>(0) as u64);
            self.wake.saw_changes(row.get::<_, i64>(1) as u64);
            let Some(category) = row.get::<_, Option<bool>>(2) else {
                continue;
            };
            let rule = Rule {
                max_count: row.get::<_, i64>(4) as u64,
                max_age_us: row.get::<_, i64>(5) as u64,
            };
            has_age |= rule.max_age_us > 0;
            removals.apply(&LifecycleOp::Retention {
                target: row.get(3),
                category,
                rule,
            });
        }
        let entries_read = read.ok_or_else(|| Error::corrupt("the head table is empty"))?;
        let rules = Arc::new(Rules {
            entries: entries_read,
            removals,
            has_age,
        });
        let mut held = self.rules.lock().unwrap_or_else(|e| e.into_inner());
        if entries_read > held.entries {
            *held = rules.clone();
        }
        Ok((entries_read == entries).then_some(rules))
    }
}

/// One try of an entry: its id, the head lock, the checks, the writes, the commit.
async fn entry_transaction(
    conn: &Conn,
    client: &mut Client,
    channel: &str,
    req: &LifecycleRequest<'_>,
    id: Option<[u8; 16]>,
    now: u64,
) -> std::result::Result<Done, Failure> {
    let tx = client
        .transaction()
        .await
        .map_err(|e| failed("starting a lifecycle entry", e))?;
    // The entry's chunk key (its id's row points at it), and its id before the head lock,
    // as an append's: a conflict with a batch holding the same id waits for that batch,
    // which does not wait for this transaction.
    let key: i64 = match id {
        Some(id) => {
            let row = tx
                .query_typed_opt(
                    &conn.qualify(
                        "insert into @.ids (id, chunk, idx) select $1, nextval('@.chunk_keys'), 0 \
                         on conflict (id) do nothing returning chunk",
                    ),
                    &typed(&[&Uuid(&id)]),
                )
                .await
                .map_err(|e| failed("storing the lifecycle entry's id", e))?;
            match row {
                Some(r) => r.get(0),
                None => return Ok(Done::IdStored),
            }
        }
        None => tx
            .query_typed_one(&conn.qualify("select nextval('@.chunk_keys')"), &[])
            .await
            .map_err(|e| failed("taking a chunk key", e))?
            .get(0),
    };
    let name: &str = match req {
        LifecycleRequest::Retention { target, .. } => target,
        r => r.stream().unwrap_or(""),
    };
    // The lock first, then the stream's state in a statement of its own: a statement that
    // waited for the lock still reads the rows of other tables as they were when it began
    // (READ COMMITTED re-reads only the locked row), so a state read with the lock could
    // miss the appends committed while it waited.
    tx.query_typed(&conn.qualify("select 1 from @.head for update"), &[])
        .await
        .map_err(|e| failed("locking the head", e))?;
    let row = tx
        .query_typed_one(
            &conn.qualify(
                "select s.version, s.tombstone, s.deleted from (select 1) one \
                 left join @.streams s on s.name = $1",
            ),
            &typed(&[&name]),
        )
        .await
        .map_err(|e| failed("reading the stream's state", e))?;
    let view = WriterView {
        last_version: row.get::<_, Option<i64>>(0).map(|v| v as u64),
        tombstone: row.get::<_, Option<bool>>(1).unwrap_or(false),
        deleted: row.get::<_, Option<bool>>(2).unwrap_or(false),
    };
    let op = req.to_op(&view)?;
    let (kind, a, b) = entry_args(&op);
    let encoded = op.encode();
    let now = now.min(i64::MAX as u64) as i64;
    let channel = channel.to_owned();
    let row = tx
        .query_typed_one(
            &conn.qualify(
                "select entry_pos, new_changes from @.apply_entry($1, $2, $3, $4, $5, $6, $7, $8)",
            ),
            &typed(&[&kind, &name, &a, &b, &encoded, &key, &now, &channel]),
        )
        .await
        .map_err(|e| failed(&format!("applying the {}", op.describe()), e))?;
    let (position, changes) = (row.get::<_, i64>(0) as u64, row.get::<_, i64>(1) as u64);
    tx.commit().await.map_err(|e| {
        let mut f = failed(&format!("committing the {}", op.describe()), e);
        f.in_doubt = f.connection;
        f
    })?;
    Ok(Done::Applied { position, changes })
}

/// `apply_entry`'s kind (the entry encoding's first byte) and numbers.
fn entry_args(op: &LifecycleOp) -> (i32, i64, i64) {
    let kind = i32::from(op.encode()[0]);
    let (a, b) = match op {
        LifecycleOp::Delete { version, .. } => (*version, 0),
        LifecycleOp::Truncate { before_version, .. } => (0, *before_version),
        LifecycleOp::Retention { rule, .. } => (rule.max_count, rule.max_age_us),
        // Never stored as an entry here: consumers keep their own table.
        LifecycleOp::Consumer(_) | LifecycleOp::Forget { .. } => (0, 0),
    };
    let big = |v: u64| v.min(i64::MAX as u64) as i64;
    (kind, big(a), big(b))
}

/// What an id that an entry could not store belongs to: the same operation stored before
/// (its position: a retry), another entry or an event (`AlreadyExists`, with its
/// position), or nothing any more (`None`: try again).
async fn stored_entry(
    conn: &Conn,
    client: &Client,
    req: &LifecycleRequest<'_>,
    id: Option<[u8; 16]>,
) -> Result<Option<u64>> {
    let Some(id) = id else {
        return Ok(None);
    };
    let rows = client
        .query_typed(
            &conn.qualify(
                "select p.pos, e.op, p.stream, p.version from @.id_positions p \
                 left join @.entries e on p.stream is null and e.pos = p.pos where p.id = $1",
            ),
            &typed(&[&Uuid(&id)]),
        )
        .await
        .map_err(|e| pg_error("looking up the lifecycle entry's id", e))?;
    let Some(r) = rows.first() else {
        return Ok(None);
    };
    let position = r.get::<_, i64>(0) as u64;
    if let Some(op) = r.get::<_, Option<&[u8]>>(1) {
        let op = LifecycleOp::decode(op)?;
        if req.is_retry_of(&op) {
            return Ok(Some(position));
        }
        return Err(id_taken(
            &id,
            req,
            position,
            "the lifecycle entry",
            &op.describe(),
        ));
    }
    let stream: Option<&str> = r.get(2);
    let version: Option<i64> = r.get(3);
    Err(id_taken(
        &id,
        req,
        position,
        "the event",
        &format!(
            "stream '{}' version {}",
            stream.unwrap_or(""),
            version.unwrap_or(0)
        ),
    ))
}
