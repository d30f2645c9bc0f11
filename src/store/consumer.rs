//! Durable consumers' records and state (docs/consumers.md), shared by the engines: a
//! consumer's every change is a record (`ConsumerOp`) with a sequence number, and its
//! state (`ConsumerState`) is its records folded in sequence order, kept as registers
//! that remember their sequence numbers so that records from two places (the log and a
//! read-only process's journal) merge in any order to the same state.

use super::FastMap;
use crate::error::{Error, Result};
use crate::wal::record::{get_varint, put_varint};
use std::collections::BTreeMap;
use std::sync::Mutex;

/// A consumer's name: at most this many bytes (its file names hold it in hex).
pub const MAX_CONSUMER_NAME: usize = 100;
/// A park's reason: at most this many bytes (longer ones are cut at a character).
pub const MAX_REASON: usize = 1024;

/// Checks a consumer's name.
pub fn check_consumer_name(name: &str) -> Result<()> {
    if name.is_empty() {
        return Err(Error::invalid("the consumer name is empty"));
    }
    if name.len() > MAX_CONSUMER_NAME {
        return Err(Error::invalid(format!(
            "the consumer name is {} bytes long; the limit is {MAX_CONSUMER_NAME}",
            name.len()
        )));
    }
    Ok(())
}

/// A reason cut to `MAX_REASON` bytes at a character boundary.
pub fn bounded_reason(reason: &str) -> String {
    let mut end = reason.len().min(MAX_REASON);
    while !reason.is_char_boundary(end) {
        end -= 1;
    }
    reason[..end].to_owned()
}

/// What one record does.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ConsumerChange {
    /// Everything before `next` is handled (also a reset, which may move back).
    Checkpoint { next: u64 },
    /// Forgets the consumer: its checkpoint and parked events.
    Delete,
    /// The event at `position` is parked, with why.
    Park {
        position: u64,
        reason: String,
        at_us: u64,
    },
    /// The event at `position` is parked no more (handled on a replay).
    Unpark { position: u64 },
}

/// One change of a consumer, numbered: one more than the highest the consumer had.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConsumerOp {
    pub name: String,
    pub seq: u64,
    pub change: ConsumerChange,
}

const CHANGE_CHECKPOINT: u8 = 1;
const CHANGE_DELETE: u8 = 2;
const CHANGE_PARK: u8 = 3;
const CHANGE_UNPARK: u8 = 4;

impl ConsumerOp {
    /// Appends the record's encoding: change byte, seq, number, time, name, reason.
    pub fn encode_into(&self, out: &mut Vec<u8>) {
        let (kind, n, at, reason) = match &self.change {
            ConsumerChange::Checkpoint { next } => (CHANGE_CHECKPOINT, *next, 0, ""),
            ConsumerChange::Delete => (CHANGE_DELETE, 0, 0, ""),
            ConsumerChange::Park {
                position,
                reason,
                at_us,
            } => (CHANGE_PARK, *position, *at_us, reason.as_str()),
            ConsumerChange::Unpark { position } => (CHANGE_UNPARK, *position, 0, ""),
        };
        out.push(kind);
        put_varint(out, self.seq);
        put_varint(out, n);
        put_varint(out, at);
        put_varint(out, self.name.len() as u64);
        out.extend_from_slice(self.name.as_bytes());
        put_varint(out, reason.len() as u64);
        out.extend_from_slice(reason.as_bytes());
    }

    /// Decodes `encode_into`'s bytes, which must be all of `buf`.
    pub fn decode(buf: &[u8]) -> Result<ConsumerOp> {
        let bad = |what: &str| Error::corrupt(format!("consumer record: {what}"));
        let (&kind, _) = buf.split_first().ok_or_else(|| bad("empty"))?;
        let mut at = 1;
        let num = |at: &mut usize| -> Result<u64> {
            let (v, n) = get_varint(buf, *at).map_err(|_| bad("bad varint"))?;
            *at = n;
            Ok(v)
        };
        let seq = num(&mut at)?;
        let n = num(&mut at)?;
        let time = num(&mut at)?;
        let text = |at: &mut usize, what: &str| -> Result<String> {
            let (len, from) = get_varint(buf, *at).map_err(|_| bad("bad varint"))?;
            let end = usize::try_from(len)
                .ok()
                .and_then(|l| from.checked_add(l))
                .filter(|&e| e <= buf.len())
                .ok_or_else(|| bad(&format!("the {what} runs past the record")))?;
            *at = end;
            std::str::from_utf8(&buf[from..end])
                .map(str::to_owned)
                .map_err(|_| bad(&format!("the {what} is not UTF-8")))
        };
        let name = text(&mut at, "name")?;
        let reason = text(&mut at, "reason")?;
        if at != buf.len() {
            return Err(bad("bytes after its end"));
        }
        let change = match kind {
            CHANGE_CHECKPOINT => ConsumerChange::Checkpoint { next: n },
            CHANGE_DELETE => ConsumerChange::Delete,
            CHANGE_PARK => ConsumerChange::Park {
                position: n,
                reason,
                at_us: time,
            },
            CHANGE_UNPARK => ConsumerChange::Unpark { position: n },
            k => return Err(bad(&format!("unknown change {k}"))),
        };
        Ok(ConsumerOp { name, seq, change })
    }

    /// Words for messages.
    pub fn describe(&self) -> String {
        match &self.change {
            ConsumerChange::Checkpoint { next } => {
                format!("checkpoint of consumer '{}' at position {next}", self.name)
            }
            ConsumerChange::Delete => format!("deletion of consumer '{}'", self.name),
            ConsumerChange::Park { position, .. } => {
                format!("park of position {position} by consumer '{}'", self.name)
            }
            ConsumerChange::Unpark { position } => {
                format!("unpark of position {position} by consumer '{}'", self.name)
            }
        }
    }
}

/// A parked event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Parked {
    pub position: u64,
    pub reason: String,
    /// When it was parked (microseconds since the epoch).
    pub at_us: u64,
}

/// A consumer's folded records: each register with the sequence number that set it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ConsumerState {
    /// The highest sequence number of any record.
    pub max_seq: u64,
    /// The last checkpoint: (seq, next).
    checkpoint: Option<(u64, u64)>,
    /// The highest delete's sequence number (0: none).
    deleted: u64,
    /// Per position: (seq, Some(park) | None for an unpark).
    parked: BTreeMap<u64, (u64, Option<(String, u64)>)>,
}

impl ConsumerState {
    /// Takes in one record (in any order).
    pub fn apply(&mut self, op: &ConsumerOp) {
        self.max_seq = self.max_seq.max(op.seq);
        match &op.change {
            ConsumerChange::Checkpoint { next } => {
                if self.checkpoint.is_none_or(|(s, _)| op.seq > s) {
                    self.checkpoint = Some((op.seq, *next));
                }
            }
            ConsumerChange::Delete => {
                self.deleted = self.deleted.max(op.seq);
                // What a delete forgets can never come back: drop it now.
                let d = self.deleted;
                self.parked.retain(|_, (s, _)| *s > d);
                if self.checkpoint.is_some_and(|(s, _)| s < d) {
                    self.checkpoint = None;
                }
            }
            ConsumerChange::Park {
                position,
                reason,
                at_us,
            } => self.set_parked(*position, op.seq, Some((reason.clone(), *at_us))),
            ConsumerChange::Unpark { position } => self.set_parked(*position, op.seq, None),
        }
    }

    fn set_parked(&mut self, position: u64, seq: u64, v: Option<(String, u64)>) {
        if seq <= self.deleted {
            return;
        }
        match self.parked.get(&position) {
            Some((s, _)) if *s >= seq => {}
            _ => {
                self.parked.insert(position, (seq, v));
            }
        }
    }

    /// The state of both (records from two places).
    pub fn merge(&mut self, other: &ConsumerState) {
        self.max_seq = self.max_seq.max(other.max_seq);
        if let Some((s, next)) = other.checkpoint {
            if self.checkpoint.is_none_or(|(m, _)| s > m) {
                self.checkpoint = Some((s, next));
            }
        }
        for (&p, (s, v)) in &other.parked {
            self.set_parked(p, *s, v.clone());
        }
        if other.deleted > self.deleted {
            self.apply(&ConsumerOp {
                name: String::new(),
                seq: other.deleted,
                change: ConsumerChange::Delete,
            });
        }
    }

    /// The state whose registers are these (an engine that keeps the registers rather
    /// than the records: PostgreSQL's `consumers` row): the highest record number, the
    /// checkpoint with the number that set it, the last delete's number (0: none) and the
    /// parked events with their records' numbers.
    pub fn from_registers(
        max_seq: u64,
        checkpoint: Option<(u64, u64)>,
        deleted: u64,
        parked: impl IntoIterator<Item = (u64, Parked)>,
    ) -> ConsumerState {
        let mut s = ConsumerState {
            max_seq,
            checkpoint: None,
            deleted,
            parked: BTreeMap::new(),
        };
        if let Some((seq, next)) = checkpoint.filter(|&(seq, _)| seq > deleted) {
            s.checkpoint = Some((seq, next));
        }
        for (seq, p) in parked {
            s.set_parked(p.position, seq, Some((p.reason, p.at_us)));
        }
        s
    }

    /// Whether any record after the last delete exists: the consumer exists.
    pub fn exists(&self) -> bool {
        self.max_seq > self.deleted
    }

    /// The stored checkpoint (the next position to deliver), if any since the last delete.
    pub fn next(&self) -> Option<u64> {
        self.checkpoint.map(|(_, n)| n)
    }

    /// The events parked now, in position order.
    pub fn parked(&self) -> Vec<Parked> {
        self.parked
            .iter()
            .filter_map(|(&position, (_, v))| {
                v.as_ref().map(|(reason, at_us)| Parked {
                    position,
                    reason: reason.clone(),
                    at_us: *at_us,
                })
            })
            .collect()
    }

    /// The records that rebuild this state (a journal's rewrite), in sequence order.
    pub fn records(&self, name: &str) -> Vec<ConsumerOp> {
        let mut out = Vec::new();
        let op = |seq, change| ConsumerOp {
            name: name.to_owned(),
            seq,
            change,
        };
        if self.deleted > 0 {
            out.push(op(self.deleted, ConsumerChange::Delete));
        }
        if let Some((s, next)) = self.checkpoint {
            out.push(op(s, ConsumerChange::Checkpoint { next }));
        }
        for (&position, (s, v)) in &self.parked {
            out.push(op(
                *s,
                match v {
                    Some((reason, at_us)) => ConsumerChange::Park {
                        position,
                        reason: reason.clone(),
                        at_us: *at_us,
                    },
                    None => ConsumerChange::Unpark { position },
                },
            ));
        }
        // Every register keeps the number that set it, and the highest number set one:
        // the rewrite keeps `max_seq`.
        out.sort_by_key(|o| o.seq);
        out
    }
}

/// The consumers' state as the log has it: a projection of the file engine's log (its
/// consumer records), kept in snapshots.
#[derive(Default)]
pub struct ConsumerTable {
    table: Mutex<FastMap<String, ConsumerState>>,
}

impl ConsumerTable {
    pub fn new() -> ConsumerTable {
        ConsumerTable::default()
    }

    /// The state the log has for `name` (default: none).
    pub fn get(&self, name: &str) -> ConsumerState {
        let t = self.table.lock().unwrap_or_else(|e| e.into_inner());
        t.get(name).cloned().unwrap_or_default()
    }

    /// Every consumer the log names, with its state.
    pub fn all(&self) -> Vec<(String, ConsumerState)> {
        let t = self.table.lock().unwrap_or_else(|e| e.into_inner());
        t.iter().map(|(k, v)| (k.clone(), v.clone())).collect()
    }

    pub fn apply_op(&self, op: &ConsumerOp) {
        let mut t = self.table.lock().unwrap_or_else(|e| e.into_inner());
        t.entry(op.name.clone()).or_default().apply(op);
    }
}

impl super::Projection for ConsumerTable {
    fn name(&self) -> &str {
        "consumers"
    }

    fn apply(&self, _event: &super::EventRef<'_>) {}

    fn apply_lifecycle(&self, op: &super::lifecycle::LifecycleOp, _position: u64) {
        if let super::lifecycle::LifecycleOp::Consumer(c) = op {
            self.apply_op(c);
        }
    }

    fn snapshot(&self) -> Vec<u8> {
        let t = self.table.lock().unwrap_or_else(|e| e.into_inner());
        let mut names: Vec<&String> = t.keys().collect();
        names.sort();
        let mut out = Vec::new();
        let mut records = Vec::new();
        for n in names {
            records.extend(t[n].records(n));
        }
        put_varint(&mut out, records.len() as u64);
        let mut one = Vec::new();
        for r in records {
            one.clear();
            r.encode_into(&mut one);
            put_varint(&mut out, one.len() as u64);
            out.extend_from_slice(&one);
        }
        out
    }

    fn restore(&self, bytes: &[u8]) -> Result<()> {
        let bad = || Error::corrupt("the consumers' snapshot is malformed");
        let (count, mut at) = get_varint(bytes, 0).map_err(|_| bad())?;
        let mut t = FastMap::default();
        for _ in 0..count {
            let (len, from) = get_varint(bytes, at).map_err(|_| bad())?;
            let end = usize::try_from(len)
                .ok()
                .and_then(|l| from.checked_add(l))
                .filter(|&e| e <= bytes.len())
                .ok_or_else(bad)?;
            let op = ConsumerOp::decode(&bytes[from..end])?;
            t.entry(op.name.clone())
                .or_insert_with(ConsumerState::default)
                .apply(&op);
            at = end;
        }
        if at != bytes.len() {
            return Err(bad());
        }
        *self.table.lock().unwrap_or_else(|e| e.into_inner()) = t;
        Ok(())
    }

    fn reset(&self) {
        self.table.lock().unwrap_or_else(|e| e.into_inner()).clear();
    }
}

/// Which events a consumer (or a subscription) is given.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Filter {
    /// Only streams whose name starts with it (`None`: any).
    pub stream_prefix: Option<String>,
    /// Only these event types (empty: any).
    pub types: Vec<String>,
}

impl Filter {
    pub fn matches(&self, e: &super::EventRef<'_>) -> bool {
        self.stream_prefix
            .as_deref()
            .is_none_or(|p| e.stream.starts_with(p))
            && (self.types.is_empty() || self.types.iter().any(|t| t == e.event_type))
    }
}

/// A consumer held open: its state when it was taken, and whatever keeps others from
/// opening it (the file engine's lock, PostgreSQL's lease) until dropped.
pub struct ConsumerClaim {
    pub name: String,
    pub state: ConsumerState,
    pub hold: Box<dyn std::any::Any + Send + Sync>,
    /// The consumer is a group of this many partitions (0: one holder at a time).
    pub partitions: u32,
}

/// The partition of a consumer group that the events of `stream` belong to: FNV-1a
/// (64 bits) of the stream's name, modulo `partitions`; the same in every process and
/// version, so that every member agrees (docs/consumers.md "Consumer groups").
pub fn partition_of(stream: &str, partitions: u32) -> u32 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in stream.bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    (h % u64::from(partitions.max(1))) as u32
}

/// A consumer as the backend knows it: its state and whether it is open now.
#[derive(Debug, Clone)]
pub struct StoredConsumer {
    pub name: String,
    pub state: ConsumerState,
    pub open: bool,
}

/// A consumer as listed (`evs_list_consumers`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConsumerInfo {
    pub name: String,
    /// Its checkpoint: the next position it will be given (`None`: never checkpointed).
    pub next: Option<u64>,
    /// The log's next position minus the checkpoint.
    pub lag_events: u64,
    /// The store's clock minus the timestamp of the first event after the checkpoint.
    pub lag_us: u64,
    pub parked: u64,
    /// Open now (in this process or another).
    pub open: bool,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn op(seq: u64, change: ConsumerChange) -> ConsumerOp {
        ConsumerOp {
            name: "c".into(),
            seq,
            change,
        }
    }

    fn park(position: u64) -> ConsumerChange {
        ConsumerChange::Park {
            position,
            reason: format!("bad {position}"),
            at_us: 7,
        }
    }

    #[test]
    fn records_round_trip_and_damaged_ones_are_refused() {
        let ops = [
            op(1, ConsumerChange::Checkpoint { next: 42 }),
            op(u64::MAX, ConsumerChange::Delete),
            op(3, park(9)),
            op(4, ConsumerChange::Unpark { position: 9 }),
        ];
        for o in ops {
            let mut b = Vec::new();
            o.encode_into(&mut b);
            assert_eq!(ConsumerOp::decode(&b).unwrap(), o);
            for cut in 0..b.len() {
                assert!(ConsumerOp::decode(&b[..cut]).is_err(), "{o:?} cut at {cut}");
            }
            b.push(0);
            assert!(ConsumerOp::decode(&b).is_err());
        }
    }

    #[test]
    fn records_from_two_places_merge_in_any_order_to_the_state_of_their_sequence() {
        let all = [
            op(1, ConsumerChange::Checkpoint { next: 10 }),
            op(2, park(3)),
            op(3, ConsumerChange::Checkpoint { next: 20 }),
            op(4, ConsumerChange::Delete),
            op(5, park(30)),
            op(6, ConsumerChange::Checkpoint { next: 5 }),
            op(7, park(31)),
            op(8, ConsumerChange::Unpark { position: 30 }),
        ];
        let mut whole = ConsumerState::default();
        all.iter().for_each(|o| whole.apply(o));
        assert_eq!(whole.next(), Some(5));
        assert_eq!(
            whole
                .parked()
                .iter()
                .map(|p| p.position)
                .collect::<Vec<_>>(),
            vec![31]
        );
        // Every split of the records into two places, each folded in reverse order.
        for mask in 0u32..256 {
            let (mut a, mut b) = (ConsumerState::default(), ConsumerState::default());
            for (i, o) in all.iter().enumerate().rev() {
                if mask & (1 << i) != 0 {
                    a.apply(o)
                } else {
                    b.apply(o)
                }
            }
            a.merge(&b);
            assert_eq!(a.next(), whole.next(), "mask {mask}");
            assert_eq!(a.parked(), whole.parked(), "mask {mask}");
            assert_eq!(a.max_seq, 8);
            // Its rewrite rebuilds it.
            let mut again = ConsumerState::default();
            a.records("c").iter().for_each(|o| again.apply(o));
            assert_eq!(again.next(), whole.next());
            assert_eq!(again.parked(), whole.parked());
            assert_eq!(again.max_seq, 8);
        }
        // A delete as the last record: nothing left, and the number goes on.
        let mut d = whole.clone();
        d.apply(&op(9, ConsumerChange::Delete));
        assert!(!d.exists());
        assert_eq!(d.next(), None);
        assert!(d.parked().is_empty());
        let mut again = ConsumerState::default();
        d.records("c").iter().for_each(|o| again.apply(o));
        assert_eq!(again.max_seq, 9);
        assert!(!again.exists());
    }
}
