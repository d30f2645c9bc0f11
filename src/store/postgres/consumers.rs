//! Durable consumers on PostgreSQL (docs/consumers.md, schema version 6): each consumer's
//! registers in a `consumers` row and its parked events in `consumer_parked`; one holder
//! at a time under a lease on the server's clock, renewed by a task of the holder's
//! handle; every record and atomic step fenced by the holder's token in the statement
//! that writes it.
//!
//! Why a lease and not an advisory lock: a lock belongs to a connection, so it works
//! neither through a pooler in transaction mode nor across a lost connection (the lock
//! goes with it while the handle still thinks it holds the consumer, and nothing stops
//! its next write). The lease's token is checked by the same statement that writes, so a
//! holder whose lease ran out and was taken over writes nothing; and a holder that died
//! (SIGKILL, a machine lost) lets go when its lease ends, `ConsumerOptions::lease`.

use super::committer::{self, Arrays, Outcome};
use super::conn::{Conn, Param};
use super::uuid::{StoredUuid, Uuid};
use super::{block, owned, PgStore};
use crate::error::{Error, ErrorKind, Result};
use crate::store::backend::Backend;
use crate::store::consumer::{
    check_consumer_name, ConsumerChange, ConsumerClaim, ConsumerOp, ConsumerState, Parked,
    StoredConsumer,
};
use crate::store::{AppendResult, StreamAppend};
use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::runtime::Runtime;
use tokio_postgres::Row;

/// The most partitions a consumer group has.
const MAX_PARTITIONS: u32 = 4096;

/// One consumer a handle holds.
struct Held {
    /// The holder's token (a group member's: its member id).
    token: [u8; 16],
    /// The task that renews the lease.
    renewer: tokio::task::AbortHandle,
    group: bool,
    lease_us: i64,
}

/// The consumers a handle holds, by name.
#[derive(Default)]
pub(super) struct Holders(Mutex<HashMap<String, Held>>);

impl Holders {
    fn map(&self) -> std::sync::MutexGuard<'_, HashMap<String, Held>> {
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn get(&self, name: &str) -> Option<([u8; 16], bool)> {
        self.map().get(name).map(|h| (h.token, h.group))
    }

    fn lease_us(&self, name: &str) -> i64 {
        self.map().get(name).map_or(0, |h| h.lease_us)
    }

    /// Forgets `name` and stops renewing its lease; true if it was held with `token`.
    fn forget(&self, name: &str, token: &[u8; 16]) -> bool {
        let mut m = self.map();
        match m.get(name) {
            Some(h) if h.token == *token => {
                h.renewer.abort();
                m.remove(name);
                true
            }
            _ => false,
        }
    }

    /// Forgets every one (the store closes); returns their names, tokens and kinds.
    pub(super) fn drain(&self) -> Vec<(String, [u8; 16], bool)> {
        self.map()
            .drain()
            .map(|(name, h)| {
                h.renewer.abort();
                (name, h.token, h.group)
            })
            .collect()
    }
}

/// Lets consumer `name` go (holder `token`; a group member leaves its group, giving its
/// partitions up), so that the next open need not wait for the lease to end.
pub(super) async fn release(conn: &Conn, name: &str, token: &[u8; 16], group: bool) -> Result<()> {
    let sql = match group {
        true => "select @.group_leave($1, $2, -1)",
        false => {
            "update @.consumers set owner = null, lease_until = 0 where name = $1 and owner = $2"
        }
    };
    conn.query(sql, &[&name, &Uuid(token)], "letting a consumer go")
        .await
        .map(|_| ())
}

/// How often a step or record is sent again after its call failed on the connection or
/// met another transaction's uncommitted copy of an event id.
const TRIES: usize = 3;

/// A held consumer (its lease renewed while the handle holds it): lets it go when
/// dropped, unless the store's close did already.
struct Lease {
    name: String,
    token: [u8; 16],
    conn: Arc<Conn>,
    runtime: Arc<Runtime>,
    holders: Arc<Holders>,
    group: bool,
}

impl Drop for Lease {
    fn drop(&mut self) {
        if self.holders.forget(&self.name, &self.token) {
            // If the server cannot be asked now, the lease ends by itself.
            let _ = block(
                &self.runtime,
                release(&self.conn, &self.name, &self.token, self.group),
            );
        }
    }
}

/// Renews holder `token`'s lease of consumer `name` every third of `lease` until it is
/// aborted or the consumer was taken over (then the fenced writes refuse, saying so).
/// A group member's (`group`) renews its member row and its partitions' leases.
async fn renew(conn: Arc<Conn>, name: String, token: [u8; 16], lease: Duration, group: bool) {
    let every = (lease / 3).max(Duration::from_millis(10));
    let lease_us = lease.as_micros().min(i64::MAX as u128) as i64;
    let sql = match group {
        true => "select 1 from (select @.group_renew($1, $2, $3)) x",
        false => {
            "update @.consumers set lease_until = @.consumer_now() + $3 \
             where name = $1 and owner = $2 returning 1"
        }
    };
    loop {
        tokio::time::sleep(every).await;
        let renewed = conn
            .query(
                sql,
                &[&name, &Uuid(&token), &lease_us],
                "renewing a consumer's lease",
            )
            .await;
        match renewed {
            Ok(rows) if rows.is_empty() => return,
            // A lost connection: tried again at the next turn (the lease is longer).
            _ => {}
        }
    }
}

/// A record's kind, position, reason and time as the functions take them.
fn record_of(change: &ConsumerChange) -> (i32, i64, &str, i64) {
    let n = |v: u64| v.min(i64::MAX as u64) as i64;
    match change {
        ConsumerChange::Checkpoint { next } => (1, n(*next), "", 0),
        ConsumerChange::Delete => (2, 0, "", 0),
        ConsumerChange::Park {
            position,
            reason,
            at_us,
        } => (3, n(*position), reason.as_str(), n(*at_us)),
        ConsumerChange::Unpark { position } => (4, n(*position), "", 0),
    }
}

fn taken_over(name: &str) -> Error {
    Error::new(
        ErrorKind::Locked,
        format!(
            "consumer '{name}' was taken by another opener: this handle's lease ran out (it \
             could not renew it in time: its connection was lost, or the process stalled); \
             nothing was written: close it, and open it again when the other lets go"
        ),
    )
}

fn number_used(name: &str, seq: u64) -> Error {
    Error::new(
        ErrorKind::Stale,
        format!(
            "consumer '{name}': its record {seq} was written by another call (an atomic step \
             whose commit was in doubt was stored, then another change was asked in its \
             place): close the consumer and open it again"
        ),
    )
}

impl PgStore {
    fn holder(&self, name: &str) -> Result<([u8; 16], bool)> {
        self.consumer_holders.get(name).ok_or_else(|| {
            Error::new(
                ErrorKind::Internal,
                format!("consumer '{name}' is written without being held by this handle"),
            )
        })
    }

    /// Takes consumer `name` for this caller: its lease (refused while another holder's
    /// runs), then its state.
    pub(super) fn consumer_claim(&self, name: &str, lease: Duration) -> Result<ConsumerClaim> {
        self.check_owner()?;
        check_consumer_name(name)?;
        if self.closed.load(Ordering::Acquire) {
            return Err(Error::invalid("the store is closed"));
        }
        let lease = lease.max(Duration::from_millis(30));
        let lease_us = lease.as_micros().min(i64::MAX as u128) as i64;
        let rows = self.query(
            "select token, left_us, parts from @.consumer_claim($1, $2)",
            &[&name, &lease_us],
            "taking a consumer",
        )?;
        let row = rows
            .first()
            .ok_or_else(|| Error::new(ErrorKind::Internal, "consumer_claim answered nothing"))?;
        let partitions = row.get::<_, Option<i32>>(2).unwrap_or(0).max(0) as u32;
        let Some(StoredUuid(token)) = row.get::<_, Option<StoredUuid>>(0) else {
            let left = row.get::<_, Option<i64>>(1).unwrap_or(0).max(0) as u64;
            if partitions > 0 {
                return Err(Error::new(
                    ErrorKind::Locked,
                    format!(
                        "consumer '{name}' is a group of {partitions} partitions with members \
                         open (their leases run {} ms more at most): wait for them to leave",
                        left.div_ceil(1000)
                    ),
                ));
            }
            return Err(Error::new(
                ErrorKind::Locked,
                format!(
                    "consumer '{name}' is open already (in this process or another: its \
                     holder's lease runs {} ms more; a holder that died lets go when its \
                     lease ends)",
                    left.div_ceil(1000)
                ),
            ));
        };
        self.hold(name, token, lease, false, partitions)
    }

    /// The claim of `name` by holder (or member) `token`, held from here (a failure
    /// below lets it go: the lease's drop): its renewer started, its state read.
    fn hold(
        &self,
        name: &str,
        token: [u8; 16],
        lease: Duration,
        group: bool,
        partitions: u32,
    ) -> Result<ConsumerClaim> {
        let renewer = self.runtime.spawn(renew(
            self.conn.clone(),
            name.to_owned(),
            token,
            lease,
            group,
        ));
        let held = Held {
            token,
            renewer: renewer.abort_handle(),
            group,
            lease_us: lease.as_micros().min(i64::MAX as u128) as i64,
        };
        self.consumer_holders.map().insert(name.to_owned(), held);
        let hold = Lease {
            name: name.to_owned(),
            token,
            conn: self.conn.clone(),
            runtime: self.runtime.clone(),
            holders: self.consumer_holders.clone(),
            group,
        };
        let state = self
            .consumer_states(Some(name))?
            .pop()
            .map(|(_, s, _)| s)
            .unwrap_or_default();
        Ok(ConsumerClaim {
            name: name.to_owned(),
            state,
            hold: Box::new(hold),
            partitions,
        })
    }

    /// Joins group `name` of `partitions` partitions as a new member (the group made at
    /// `start` if new); refused for a consumer of one holder, or another partition count.
    pub(super) fn group_join(
        &self,
        name: &str,
        partitions: u32,
        start: u64,
        lease: Duration,
    ) -> Result<ConsumerClaim> {
        self.check_owner()?;
        check_consumer_name(name)?;
        if self.closed.load(Ordering::Acquire) {
            return Err(Error::invalid("the store is closed"));
        }
        if partitions == 0 || partitions > MAX_PARTITIONS {
            return Err(Error::invalid(format!(
                "consumer '{name}': {partitions} partitions; a group has 1 to {MAX_PARTITIONS}"
            )));
        }
        if self.consumer_holders.get(name).is_some() {
            return Err(Error::new(
                ErrorKind::Locked,
                format!("consumer '{name}' is open already in this handle (one member per handle)"),
            ));
        }
        let lease = lease.max(Duration::from_millis(30));
        let lease_us = lease.as_micros().min(i64::MAX as u128) as i64;
        let start = start.min(self.head()?).min(i64::MAX as u64) as i64;
        let rows = self.query(
            "select member, parts from @.group_join($1, $2, $3, $4)",
            &[&name, &(partitions as i32), &start, &lease_us],
            "joining a consumer group",
        )?;
        let row = rows
            .first()
            .ok_or_else(|| Error::new(ErrorKind::Internal, "group_join answered nothing"))?;
        let parts: i32 = row.get(1);
        let Some(StoredUuid(member)) = row.get::<_, Option<StoredUuid>>(0) else {
            return Err(Error::invalid(match parts {
                -1 => format!(
                    "consumer '{name}' is a consumer of one holder, not a group: open it with \
                     partitions = 0 (or delete it first)"
                ),
                p => format!(
                    "consumer '{name}' is a group of {p} partitions, not {partitions}: every \
                     member opens it with the same count (delete it to change the count)"
                ),
            }));
        };
        self.hold(name, member, lease, true, partitions)
    }

    /// A member's share now (`Backend::group_balance`).
    pub(super) fn group_balance(&self, name: &str, acked: Option<u64>) -> Result<Vec<(u32, u64)>> {
        self.check_owner()?;
        let (member, group) = self.holder(name)?;
        if !group {
            return Err(Error::new(
                ErrorKind::Internal,
                format!("consumer '{name}' is not a group member here"),
            ));
        }
        let acked = acked.map_or(-1, |a| a.min(i64::MAX as u64) as i64);
        let lease_us = self.consumer_holders.lease_us(name);
        let rows = self.query(
            "select part, next from @.group_balance($1, $2, $3, $4)",
            &[&name, &Uuid(&member), &lease_us, &acked],
            "balancing a consumer group",
        )?;
        Ok(rows
            .iter()
            .map(|r| {
                (
                    r.get::<_, i32>(0).max(0) as u32,
                    r.get::<_, i64>(1).max(0) as u64,
                )
            })
            .collect())
    }

    /// The state of consumer `only` (or of every one), with whether a lease runs (a
    /// group's: its checkpoint the lowest of its partitions', open while a member lives).
    fn consumer_states(&self, only: Option<&str>) -> Result<Vec<(String, ConsumerState, bool)>> {
        let rows = self.query(
            "select c.name, c.max_seq, c.ck_seq, \
               case when c.parts > 0 then (select min(q.next) from @.consumer_parts q \
                 where q.name = c.name) else c.next end, c.deleted_seq, \
               (c.owner is not null and c.lease_until > @.consumer_now()) \
                 or exists (select 1 from @.consumer_members m where m.name = c.name \
                   and m.lease_until > @.consumer_now()), \
               coalesce(array_agg(p.position order by p.position) \
                 filter (where p.position is not null), '{}'), \
               coalesce(array_agg(p.seq order by p.position) \
                 filter (where p.position is not null), '{}'), \
               coalesce(array_agg(p.reason order by p.position) \
                 filter (where p.position is not null), '{}'), \
               coalesce(array_agg(p.at_us order by p.position) \
                 filter (where p.position is not null), '{}') \
             from @.consumers c left join @.consumer_parked p on p.name = c.name \
             where $1::text is null or c.name = $1 \
             group by c.name order by c.name",
            &[&only],
            "reading consumers",
        )?;
        let mut out = Vec::with_capacity(rows.len());
        for r in &rows {
            let u = |i: usize| r.get::<_, i64>(i).max(0) as u64;
            let checkpoint = r
                .get::<_, Option<i64>>(3)
                .map(|next| (u(2), next.max(0) as u64));
            let (positions, seqs, reasons, times): (Vec<i64>, Vec<i64>, Vec<String>, Vec<i64>) =
                (r.get(6), r.get(7), r.get(8), r.get(9));
            let parked = positions
                .into_iter()
                .zip(seqs)
                .zip(reasons.into_iter().zip(times))
                .map(|((position, seq), (reason, at_us))| {
                    (
                        seq.max(0) as u64,
                        Parked {
                            position: position.max(0) as u64,
                            reason,
                            at_us: at_us.max(0) as u64,
                        },
                    )
                });
            let state = ConsumerState::from_registers(u(1), checkpoint, u(4), parked);
            out.push((r.get::<_, String>(0), state, r.get::<_, bool>(5)));
        }
        Ok(out)
    }

    /// Sends `sql` (one statement, `what` for messages), again after a failure on the
    /// connection or an id conflict (`TRIES` in all): each caller's statement is one whose
    /// second sending finds what the first stored. After the last try, a failure on the
    /// connection is `Unavailable` saying the write is in doubt and the same call again
    /// settles it.
    fn send_again(&self, sql: &str, params: &[&dyn Param], what: &str) -> Result<Vec<Row>> {
        let mut tries = 0;
        loop {
            tries += 1;
            let sent = block(&self.runtime, async {
                Ok(self.conn.query_raw(sql, params, what).await)
            })?;
            match sent {
                Ok(rows) => return Ok(rows),
                Err((_, true)) if tries < TRIES => continue,
                Err((e, true)) if e.kind == ErrorKind::Unavailable => {
                    return Err(Error::new(
                        ErrorKind::Unavailable,
                        format!(
                            "{}; it is in doubt: the same call again (the consumer still \
                             open) settles it: it finds what the first stored, or stores it",
                            e.message
                        ),
                    ))
                }
                Err((e, _)) => return Err(e),
            }
        }
    }

    /// Stores one record of a consumer this handle holds (fenced by its token). A record
    /// whose call failed on the connection is sent again: its number tells whether the
    /// first was stored. A group member's checkpoint goes to the partitions it owns, its
    /// parks to the group's parked events.
    pub(super) fn consumer_write(&self, op: &ConsumerOp) -> Result<Option<u64>> {
        self.check_owner()?;
        if self.closed.load(Ordering::Acquire) {
            return Err(Error::invalid("the store is closed"));
        }
        let (token, group) = self.holder(&op.name)?;
        let (kind, pos, reason, at_us) = record_of(&op.change);
        let seq = op.seq.min(i64::MAX as u64) as i64;
        let what = format!("writing the {}", op.describe());
        let name = op.name.as_str();
        if group {
            match kind {
                // Partitions taken over meanwhile keep the other member's checkpoint;
                // the member finds out at its next balance.
                1 => self.send_again(
                    "select @.group_checkpoint($1, $2, $3)",
                    &[&name, &Uuid(&token), &pos],
                    &what,
                )?,
                3 | 4 => self.send_again(
                    "select 1 from (select @.group_record($1, $2, $3, $4, $5)) x",
                    &[&name, &kind, &pos, &reason, &at_us],
                    &what,
                )?,
                _ => {
                    return Err(Error::invalid(format!(
                        "consumer '{name}' is a group: a member cannot delete it (close every \
                         member, then delete it)"
                    )))
                }
            };
            return Ok(None);
        }
        let rows = self.send_again(
            "select @.consumer_write($1, $2, $3, $4, $5, $6, $7)",
            &[&name, &Uuid(&token), &seq, &kind, &pos, &reason, &at_us],
            &what,
        )?;
        match rows.first().map_or(-3, |r| r.get::<_, i32>(0)) {
            0 | 1 => Ok(None),
            -1 => Err(taken_over(name)),
            -2 => Err(number_used(name, op.seq)),
            n => Err(Error::new(
                ErrorKind::Internal,
                format!("consumer_write answered {n}"),
            )),
        }
    }

    /// The atomic step: `appends` and the record `op` in one statement (one transaction),
    /// fenced by the holder's token. Sent again after a failure on the connection (its
    /// commit in doubt) or an id conflict: the record's number tells whether the first
    /// was stored, and then its answer is the first's.
    pub(super) fn consumer_append(
        &self,
        appends: &[StreamAppend<'_>],
        op: &ConsumerOp,
    ) -> Result<AppendResult> {
        let (token, group) = self.holder(&op.name)?;
        if group {
            return Err(Error::new(
                ErrorKind::Internal,
                format!(
                    "consumer '{}' is a group: its steps are group_append's",
                    op.name
                ),
            ));
        }
        let (kind, pos, _, _) = record_of(&op.change);
        let head = [
            &op.name.as_str() as &dyn Param,
            &Uuid(&token),
            &(op.seq.min(i64::MAX as u64) as i64),
            &kind,
            &pos,
        ];
        self.step("consumer_step", &head, &op.name, op.seq, appends)
    }

    /// A group member's atomic step (`Backend::group_append`), fenced by its ownership of
    /// partition `part`; sent again as `consumer_append` is, `seq` telling a step sent
    /// again from a new one.
    pub(super) fn group_append(
        &self,
        name: &str,
        appends: &[StreamAppend<'_>],
        seq: u64,
        part: u32,
        next: u64,
    ) -> Result<AppendResult> {
        let (member, group) = self.holder(name)?;
        if !group {
            return Err(Error::new(
                ErrorKind::Internal,
                format!("consumer '{name}' is not a group member here"),
            ));
        }
        let next = next.min(i64::MAX as u64) as i64;
        let head = [
            &name as &dyn Param,
            &Uuid(&member),
            &(seq.min(i64::MAX as u64) as i64),
            &(part as i32),
            &next,
        ];
        self.step("group_step", &head, name, seq, appends)
    }

    /// Calls step function `function` with its five leading arguments `head` and the
    /// append's; the answer as `append_multi`'s (or the first's, for a step sent again).
    fn step(
        &self,
        function: &str,
        head: &[&dyn Param; 5],
        name: &str,
        seq: u64,
        appends: &[StreamAppend<'_>],
    ) -> Result<AppendResult> {
        self.check_writable()?;
        self.validate(appends, false)?;
        // As an append: an id made for each event that names a subject and has none (its
        // ciphertext is bound to it); a step sent again is answered by its number.
        let filled = super::subjects::with_ids(appends)?;
        let rebuilt: Vec<StreamAppend<'_>>;
        let appends = match &filled {
            Some(f) => {
                rebuilt = super::subjects::refilled(appends, f);
                &rebuilt[..]
            }
            None => appends,
        };
        let elements = super::subjects::elements(&self.keys, appends)?;
        let (entries, events) = owned(appends, elements);
        let a = Arrays::new(std::iter::once((&entries[..], &events[..])));
        let channel = super::listener::channel(self.conn.schema());
        let sql = format!(
            "select res, entry, actual, versions, changes from @.{function}($1, $2, $3, $4, \
             $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18)"
        );
        let channel = channel.as_str();
        let params = [&head[..], &a.params()[..], &[&channel]].concat();
        let mut rows = self.send_again(&sql, &params, "the atomic append and checkpoint")?;
        if rows.len() != 1 {
            return Err(Error::new(
                ErrorKind::Internal,
                format!("{function} answered {} rows for one append", rows.len()),
            ));
        }
        let row = rows.remove(0);
        let outcome = match row.get::<_, i64>(0) {
            -5 => return Err(taken_over(name)),
            -7 => return Err(number_used(name, seq)),
            -6 => Outcome::Written {
                first: row.get::<_, i64>(2).max(0) as u64,
                versions: row
                    .get::<_, Option<Vec<i64>>>(3)
                    .unwrap_or_default()
                    .into_iter()
                    .map(|v| v as u64)
                    .collect(),
            },
            _ => committer::outcome(&row),
        };
        if let Some(changes) = row.get::<_, Option<i64>>(4) {
            self.wake.saw_changes(changes.max(0) as u64);
        }
        let result = self.result_of(appends, outcome)?;
        self.appended.fetch_add(1, Ordering::Relaxed);
        self.saw(result.first_position + events.len() as u64);
        Ok(result)
    }

    /// Every consumer that exists, with its state and whether a holder's lease runs.
    pub(super) fn consumer_list(&self) -> Result<Vec<StoredConsumer>> {
        self.check_owner()?;
        Ok(self
            .consumer_states(None)?
            .into_iter()
            .filter(|(_, s, _)| s.exists())
            .map(|(name, state, open)| StoredConsumer { name, state, open })
            .collect())
    }
}
