//! The file engine's side of data that leaves (docs/lifecycle.md): lifecycle entries in
//! the log (appended like events, under the writer's lock, durable under every fsync
//! policy, idempotent by id), the removal state kept beside the index, and how readers
//! pass over lifecycle entries and removed events.
//!
//! Readers pay nothing per event while no lifecycle entry exists (`FileStore::removing`
//! is one load and one branch); after that, each reader keeps the streams' views it
//! resolved (`Views`) until the store commits anything new.

use super::envelope::{self, FORMAT_LIFECYCLE};
use super::index::Index;
use super::{FileStore, Pending, Writer};
use crate::error::{Error, ErrorKind, Result};
use crate::store::ids::{EventId, IdIndex};
use crate::store::lifecycle::{
    guard, id_taken, stream_deleted, LifecycleOp, LifecycleRequest, Removals, Rule, StreamView,
    WriterView,
};
use crate::store::{FastMap, Projection, StreamInfo};
use crate::wal::record::{get_varint, put_varint};
use crate::wal::{FsyncPolicy, Position, RecordRef};
use std::sync::atomic::Ordering;
use std::sync::Arc;

/// A lifecycle entry as decoded from the log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Entry {
    pub id: Option<EventId>,
    pub timestamp_us: u64,
    pub op: LifecycleOp,
}

/// The removal state, kept in the index (under its lock) and in snapshots.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LifeState {
    pub removals: Removals,
    /// Per stream: its versions below this were removed by deletes (so that a message
    /// can say whether a delete or a truncation removed an event).
    deleted_before: FastMap<Box<str>, u64>,
}

impl LifeState {
    pub fn is_empty(&self) -> bool {
        self.removals.is_empty()
    }

    /// Takes in the next lifecycle entry of the log, made at `at_us`; `streams`: those a
    /// rule entry may apply to, with their versions at this point of the log
    /// (`Removals::apply_in_log`).
    pub fn apply<'s>(
        &mut self,
        op: &LifecycleOp,
        at_us: u64,
        streams: impl IntoIterator<Item = (&'s str, Option<u64>)>,
    ) {
        if let LifecycleOp::Delete {
            stream, version, ..
        } = op
        {
            let d = self
                .deleted_before
                .entry(stream.as_str().into())
                .or_default();
            *d = (*d).max(version + 1);
        }
        self.removals.apply_in_log(op, at_us, streams);
    }

    /// Versions of `stream` below this were removed by deletes: a stream whose version
    /// is below it is soft-deleted and not appended to since.
    pub fn deleted_before(&self, stream: &str) -> u64 {
        if self.deleted_before.is_empty() {
            return 0;
        }
        self.deleted_before.get(stream).copied().unwrap_or(0)
    }

    /// How `stream`'s events are judged now (`last_version`: its version), and the age
    /// limit of its rule (0: none), with which a reader moves the view to a later clock.
    pub fn view(&self, stream: &str, last_version: Option<u64>, now: u64) -> (StreamView, u64) {
        let view = self.removals.view(stream, last_version, now);
        let age = self.removals.rule_for(stream).map_or(0, |r| r.max_age_us);
        (view, age)
    }

    /// Why the event of `stream` at `version` (stamped `timestamp_us`) is removed, if it
    /// is: the operation that removed it, in words.
    pub fn why_removed(
        &self,
        stream: &str,
        version: u64,
        timestamp_us: u64,
        last_version: Option<u64>,
        now: u64,
    ) -> Option<String> {
        let (view, _) = self.view(stream, last_version, now);
        if !view.removes(version, timestamp_us) {
            return None;
        }
        if view.tombstone {
            return Some(format!("stream '{stream}' was hard-deleted"));
        }
        let deleted = self.deleted_before.get(stream).copied().unwrap_or(0);
        if version < deleted {
            return Some(format!(
                "it was removed by a soft delete of stream '{stream}' (at version {})",
                deleted - 1
            ));
        }
        let state = self.removals.stream(stream).copied().unwrap_or_default();
        let truncated = state.removed_before;
        if version < truncated {
            return Some(format!(
                "it was removed by a truncation of stream '{stream}' before version {truncated}"
            ));
        }
        if version < state.ruled_before || timestamp_us < state.ruled_before_us {
            return Some(format!(
                "it was removed by the retention rule in force for stream '{stream}' before that rule changed"
            ));
        }
        let rule = self.removals.rule_for(stream).unwrap_or_default();
        let target = match self.removals.rule_of(stream, false) {
            Some(_) => format!("stream '{stream}'"),
            None => self
                .removals
                .rules()
                .into_iter()
                .filter(|(p, category, _)| *category && stream.starts_with(p.as_str()))
                .max_by_key(|(p, _, _)| p.len())
                .map_or_else(String::new, |(p, _, _)| format!("category '{p}'")),
        };
        Some(if version < view.first_kept {
            format!(
                "it was removed by the retention rule of {target} (it keeps the last {} versions)",
                rule.max_count
            )
        } else {
            format!(
                "it was removed by the retention rule of {target} (it keeps {} us of events)",
                rule.max_age_us
            )
        })
    }

    /// The state for a snapshot: the removals, then the deletes' bounds.
    pub fn encode_into(&self, out: &mut Vec<u8>) {
        self.removals.encode_into(out);
        let mut deleted: Vec<_> = self.deleted_before.iter().collect();
        deleted.sort();
        put_varint(out, deleted.len() as u64);
        for (name, &before) in deleted {
            put_varint(out, name.len() as u64);
            out.extend_from_slice(name.as_bytes());
            put_varint(out, before);
        }
    }

    /// Decodes `encode_into`'s bytes, which must be all of `buf`.
    pub fn decode(buf: &[u8]) -> Result<LifeState> {
        let bad = || Error::corrupt("the snapshot's lifecycle state is malformed");
        let mut at = 0;
        let removals = Removals::decode(buf, &mut at)?;
        let varint = |at: &mut usize| -> Result<u64> {
            let (v, n) = get_varint(buf, *at).map_err(|_| bad())?;
            *at = n;
            Ok(v)
        };
        let mut deleted_before = FastMap::default();
        for _ in 0..varint(&mut at)? {
            let n = varint(&mut at)?;
            let end = usize::try_from(n)
                .ok()
                .and_then(|n| at.checked_add(n))
                .filter(|&e| e <= buf.len())
                .ok_or_else(bad)?;
            let name = std::str::from_utf8(&buf[at..end]).map_err(|_| bad())?;
            at = end;
            deleted_before.insert(name.into(), varint(&mut at)?);
        }
        if at != buf.len() {
            return Err(bad());
        }
        Ok(LifeState {
            removals,
            deleted_before,
        })
    }
}

/// Takes the lifecycle entry at `position` (its record at `wal`) into the index, the
/// projections and the id index: at recovery, at commit, and in a read-only follower.
pub(super) fn apply_entry(
    index: &mut Index,
    projections: &[Arc<dyn Projection>],
    ids: &IdIndex,
    wal: Position,
    position: u64,
    entry: &Entry,
) {
    index.push_entry(wal, entry.timestamp_us);
    index.apply_lifecycle(&entry.op, position, entry.timestamp_us);
    projections
        .iter()
        .for_each(|p| p.apply_lifecycle(&entry.op, position));
    if let Some(id) = &entry.id {
        ids.remember(id, position);
    }
}

/// The error for a lifecycle entry that a batch's record says continues, or that is in a
/// batch: the writer never writes one so.
pub(super) fn entry_in_batch(position: u64) -> Error {
    Error::corrupt(format!(
        "a lifecycle entry at position {position} inside a batch"
    ))
    .at_position(position)
}

/// What the record stored under an id is.
pub(crate) enum StoredId {
    /// An event (it has an id).
    Event(crate::store::Event),
    /// A lifecycle entry: its id and operation.
    Entry(EventId, LifecycleOp),
}

/// A stream's view without its age limit, and that limit (0: none).
type Judged = (StreamView, u64);

/// Per-reader cache of how streams' events are judged, valid while the store commits
/// nothing new (a commit may remove events: a lifecycle entry, or an append that moves
/// a stream's count rule on). Rules by age are moved to the clock of each call.
pub(crate) struct Views {
    /// `FileStore::committed` when the cache was filled.
    generation: u64,
    /// The clock of this call, read when a rule by age first needs it.
    now: Option<u64>,
    /// By stream name: the view (without its age limit) and the age limit (0: none).
    cache: FastMap<Box<[u8]>, Judged>,
    /// The stream asked last and its entry (a run of one stream's events hashes nothing).
    last: Option<(Box<[u8]>, Judged)>,
}

/// Streams a reader's cache holds at most (it starts over past that).
const VIEWS_CACHED: usize = 4096;

impl Views {
    pub fn new() -> Views {
        Views {
            generation: u64::MAX,
            now: None,
            cache: FastMap::default(),
            last: None,
        }
    }

    /// Called at the start of each read call: the clock is read afresh.
    pub fn begin(&mut self) {
        self.now = None;
    }

    /// How the events of `stream` (its name's bytes) are judged now.
    pub fn view_of(&mut self, store: &FileStore, stream: &[u8]) -> StreamView {
        let g = store.committed();
        if g != self.generation || self.cache.len() >= VIEWS_CACHED {
            self.cache.clear();
            self.last = None;
            self.generation = g;
        }
        let (mut view, age) = match &self.last {
            Some((name, v)) if **name == *stream => *v,
            _ => {
                let v = match self.cache.get(stream) {
                    Some(&v) => v,
                    None => {
                        let v = resolve(store, stream);
                        self.cache.insert(stream.into(), v);
                        v
                    }
                };
                self.last = Some((stream.into(), v));
                v
            }
        };
        if age > 0 {
            let now = *self.now.get_or_insert_with(|| store.now());
            // At least what a rule before it removed (`resolve` has that, at clock 0).
            view.min_timestamp = view.min_timestamp.max(now.saturating_sub(age));
        }
        view
    }

    /// How `stream`'s events are judged now.
    pub fn view(&mut self, store: &FileStore, stream: &str) -> StreamView {
        self.view_of(store, stream.as_bytes())
    }
}

/// A stream's view without its age limit (the clock is not read), and that limit.
fn resolve(store: &FileStore, stream: &[u8]) -> Judged {
    // A name that is not UTF-8 is no stream's: its record fails its full decode.
    let Ok(stream) = std::str::from_utf8(stream) else {
        return (StreamView::default(), 0);
    };
    let index = store.index.read().unwrap_or_else(|e| e.into_inner());
    let last = index.stream_len(stream).checked_sub(1);
    index.life.view(stream, last, 0)
}

/// Whether a reader passes over the record whose value is `value`: a lifecycle entry,
/// or, once anything is removed, a removed event.
pub(crate) fn passes_over(store: &FileStore, views: &mut Views, value: &[u8]) -> Result<bool> {
    if value.first() == Some(&FORMAT_LIFECYCLE) {
        return Ok(true);
    }
    if !store.removals() {
        return Ok(false);
    }
    // Legacy events (no stream) are never removed.
    Ok(match envelope::peek_stream(value)? {
        Some((timestamp_us, stream, version)) if !stream.is_empty() => {
            views.view_of(store, stream).removes(version, timestamp_us)
        }
        _ => false,
    })
}

/// The first event of stream `id` that is not removed (its version and position),
/// judged by `view`; `None` when every event of it is.
pub(super) fn first_kept(index: &Index, id: u32, view: &StreamView) -> Result<Option<(u64, u64)>> {
    if view.tombstone {
        return Ok(None);
    }
    // Timestamps never decrease along positions (an event's is its index entry's), so
    // the events a rule by age removes are those before the first position stamped
    // `min_timestamp` or later.
    let from_position = match view.min_timestamp {
        0 => 0,
        t => index.position_after(t - 1)?,
    };
    index.stream_first(id, view.first_kept, from_position)
}

impl FileStore {
    /// The store's clock (microseconds since the Unix epoch), never going back within
    /// this handle: a clock that jumps back brings no event removed by age back.
    pub(super) fn now(&self) -> u64 {
        self.clock.now_us()
    }

    /// Whether any lifecycle entry exists: until one does, readers check nothing.
    pub(crate) fn removing(&self) -> bool {
        self.removing.load(Ordering::Acquire)
    }

    /// Whether an entry that removes events exists: until one does, readers pass over
    /// entries (consumers' records, forgets) but judge no event.
    pub(crate) fn removals(&self) -> bool {
        self.removals.load(Ordering::Acquire)
    }

    /// Notes that a lifecycle entry counts (`index` holds it), before it is counted as
    /// committed: readers pass over entries from now on, and judge every event once one
    /// removes events; the compaction thread looks then (an entry that removes nothing,
    /// a consumer's checkpoint or a forget, leaves it asleep: nothing to reclaim).
    pub(crate) fn entry_counts(&self, index: &Index) {
        if !index.life.is_empty() {
            self.removals.store(true, Ordering::Release);
            self.compactor_wake.wake();
        }
        self.removing.store(true, Ordering::Release);
    }

    /// Appends a lifecycle operation (docs/lifecycle.md); returns its position. Its
    /// checks (the projections' guard, the expected version, the stream's state) and
    /// the append are one step under the writer's lock; it counts (readers obey it) once
    /// it is durable under `Always`, at once under the other policies, as appends do.
    pub fn apply_lifecycle(&self, req: &LifecycleRequest<'_>, id: Option<EventId>) -> Result<u64> {
        self.check_writable()?;
        req.validate()?;
        // As for events: an id of all zero bytes is no id.
        let id = id.filter(|i| *i != [0u8; 16]);
        let always = self.options.fsync == FsyncPolicy::Always;
        let mut w = self.lock_writer();
        if always {
            self.catch_up_epoch(&mut w);
        }
        self.wal.health()?;
        if let Some(id) = &id {
            if let Some(first) = self.find_lifecycle_retry(&w, id, req)? {
                return Ok(first);
            }
        }
        let req = guard(&self.projections, *req)?;
        let op = self.lifecycle_op(&w, &req)?;
        self.append_entry(w, id, op)
    }

    /// Appends `op` as an entry of its own, under the writer's lock `w` (taken, checked
    /// and with the epoch caught up by the caller); returns its position once it counts.
    pub(super) fn append_entry(
        &self,
        mut w: std::sync::MutexGuard<'_, Writer>,
        id: Option<EventId>,
        op: LifecycleOp,
    ) -> Result<u64> {
        let always = self.options.fsync == FsyncPolicy::Always;
        let timestamp = self.now().max(w.last_timestamp);
        let position = w.next_position;
        let mut scratch = std::mem::take(&mut w.scratch);
        scratch.clear();
        scratch.extend_from_slice(&position.to_le_bytes());
        envelope::encode_lifecycle(&mut scratch, id.as_ref(), timestamp, &op);
        let appended = {
            let record = [RecordRef::put(&scratch[..8], &scratch[8..])];
            if always {
                self.wal.append_in_epoch(&record, w.epoch)
            } else {
                self.wal.append_written(&record)
            }
        };
        w.scratch = scratch;
        let appended = appended?;
        w.next_position = position + 1;
        w.last_timestamp = timestamp;
        let entry = Entry {
            id,
            timestamp_us: timestamp,
            op,
        };
        if always {
            w.pending_entries += 1;
            w.pending.push(Pending {
                lsn: appended.lsn,
                events: Vec::new(),
                entry: Some((appended.positions[0], entry)),
            });
            drop(w);
            let durable = self.wal.wait_durable(&appended);
            let mut w = self.lock_writer();
            self.catch_up_epoch(&mut w);
            durable?;
            self.commit_durable(&mut w);
        } else {
            let mut index = self.index.write().unwrap_or_else(|e| e.into_inner());
            apply_entry(
                &mut index,
                &self.projections,
                &self.ids,
                appended.positions[0],
                position,
                &entry,
            );
            self.entry_counts(&index);
            self.committed.store(position + 1, Ordering::Release);
            drop(index);
            self.publish(position + 1);
            drop(w);
        }
        self.maybe_seal();
        self.maybe_snapshot();
        Ok(position)
    }

    /// A retry of a lifecycle operation stored already under `id`: its position. The id
    /// on anything else is refused.
    fn find_lifecycle_retry(
        &self,
        w: &Writer,
        id: &EventId,
        req: &LifecycleRequest<'_>,
    ) -> Result<Option<u64>> {
        self.refuse_pending_id(w, id)?;
        match self.find_stored(id)? {
            None => Ok(None),
            Some((p, StoredId::Entry(_, op))) if req.is_retry_of(&op) => Ok(Some(p)),
            Some((p, StoredId::Entry(_, op))) => {
                Err(id_taken(id, req, p, "the lifecycle entry", &op.describe()))
            }
            Some((p, StoredId::Event(e))) => Err(id_taken(
                id,
                req,
                p,
                "the event",
                &format!("stream '{}' version {}", e.stream, e.stream_version),
            )),
        }
    }

    /// Checks a stream operation against the stream as the writer sees it (pending
    /// events and entries included) and makes the operation to store.
    fn lifecycle_op(&self, w: &Writer, req: &LifecycleRequest<'_>) -> Result<LifecycleOp> {
        let view = match req.stream() {
            Some(stream) => {
                let index = self.index.read().unwrap_or_else(|e| e.into_inner());
                self.writer_view(w, &index, stream)
            }
            None => WriterView::default(),
        };
        req.to_op(&view)
    }

    /// `stream` as the writer sees it (pending events and entries included): its last
    /// version, whether it is soft-deleted and not appended to since, its tombstone.
    pub(super) fn writer_view(&self, w: &Writer, index: &Index, stream: &str) -> WriterView {
        let last_version = self.writer_version(w, index, stream);
        let mut deleted_before = index.life.deleted_before(stream);
        let mut tombstone = index.life.removals.is_tombstoned(stream);
        if w.pending_entries > 0 {
            for p in &w.pending {
                if let Some((_, e)) = &p.entry {
                    if let LifecycleOp::Delete {
                        stream: s,
                        hard,
                        version,
                    } = &e.op
                    {
                        if s == stream {
                            deleted_before = deleted_before.max(version + 1);
                            tombstone |= *hard;
                        }
                    }
                }
            }
        }
        WriterView {
            last_version,
            deleted: last_version.is_some_and(|v| v < deleted_before),
            tombstone,
        }
    }

    /// A read-only store: takes in the writer's lifecycle entry at `position` (its
    /// record at `at`), a batch of its own.
    pub(super) fn take_in_entry(&self, at: Position, position: u64, entry: &Entry) {
        let mut index = self.index.write().unwrap_or_else(|e| e.into_inner());
        apply_entry(
            &mut index,
            &self.projections,
            &self.ids,
            at,
            position,
            entry,
        );
        self.entry_counts(&index);
        let n = index.len();
        self.committed.store(n, Ordering::Release);
        drop(index);
        self.publish(n);
    }

    /// The retention rule in force for stream `name`, or (`category`) the rule set on
    /// exactly the prefix `name`.
    pub fn retention(&self, name: &str, category: bool) -> Result<Option<Rule>> {
        self.check_owner()?;
        crate::store::check_name(
            if category {
                "category prefix"
            } else {
                "stream name"
            },
            name,
            category,
        )?;
        if self.options.read_only {
            self.refresh()?;
        }
        let index = self.index.read().unwrap_or_else(|e| e.into_inner());
        let r = &index.life.removals;
        Ok(if category {
            r.rule_of(name, true)
        } else {
            r.rule_for(name)
        })
    }

    /// The stream's version as writers see it (`evs_stream_version`): a hard-deleted
    /// stream is refused; one soft-deleted and not appended to since does not exist; one
    /// whose events a truncation or a rule removed keeps its version.
    pub(super) fn writers_version(&self, index: &Index, stream: &str) -> Result<Option<u64>> {
        if index.life.removals.is_tombstoned(stream) {
            return Err(stream_deleted(stream));
        }
        let deleted_before = index.life.deleted_before(stream);
        Ok(index
            .stream_len(stream)
            .checked_sub(1)
            .filter(|&v| v >= deleted_before))
    }

    /// For a stream read: the stream's version, or why it cannot be read (it does not
    /// exist, every event of it is removed, it was hard-deleted).
    pub(super) fn readable_version(&self, stream: &str) -> Result<u64> {
        let index = self.index.read().unwrap_or_else(|e| e.into_inner());
        if index.life.removals.is_tombstoned(stream) {
            return Err(stream_deleted(stream));
        }
        let Some(version) = index.stream_len(stream).checked_sub(1) else {
            return Err(crate::store::no_such_stream(stream));
        };
        if index.life.is_empty() {
            return Ok(version);
        }
        let id = index.stream_ids[stream];
        let now = self.now();
        let (view, _) = index.life.view(stream, Some(version), now);
        if first_kept(&index, id, &view)?.is_none() {
            let why = index
                .life
                .why_removed(stream, version, 0, Some(version), now)
                .unwrap_or_default();
            return Err(Error::new(
                ErrorKind::NotFound,
                format!("stream '{stream}' has no events left (version {version}): {why}"),
            ));
        }
        Ok(version)
    }

    /// The streams that have an event left, each with its version and the position of
    /// its first event left.
    pub(super) fn live_streams(&self, index: &Index) -> Result<Vec<StreamInfo>> {
        let now = self.now();
        let mut out = Vec::with_capacity(index.streams.len());
        for (id, s) in index.streams.iter().enumerate() {
            let Some(version) = s.count.checked_sub(1) else {
                continue;
            };
            let (view, _) = index.life.view(&s.name, Some(version), now);
            let first = if view.keeps_all() {
                Some(s.first)
            } else {
                first_kept(index, id as u32, &view)?.map(|(_, p)| p)
            };
            if let Some(first_position) = first {
                out.push(StreamInfo {
                    name: s.name.to_string(),
                    version,
                    first_position,
                });
            }
        }
        Ok(out)
    }

    /// For stats: the events removed now (per stream, the events before its first kept
    /// one) and the streams a reader sees (those with an event left, as listed).
    pub(super) fn removal_counts(&self, index: &Index) -> Result<(u64, u64)> {
        let all = index.streams.len() as u64;
        if index.life.is_empty() {
            return Ok((0, all));
        }
        let now = self.now();
        let (mut removed, mut gone) = (0, 0);
        for (id, s) in index.streams.iter().enumerate() {
            let (view, _) = index.life.view(&s.name, s.count.checked_sub(1), now);
            if view.keeps_all() {
                continue;
            }
            removed += match first_kept(index, id as u32, &view)? {
                Some((version, _)) => version,
                None => {
                    gone += 1;
                    s.count
                }
            };
        }
        Ok((removed, all - gone))
    }

    /// Why the event of `stream` at `version` (stamped `timestamp_us`) is removed now,
    /// if it is.
    pub(super) fn why_removed(
        &self,
        stream: &str,
        version: u64,
        timestamp_us: u64,
    ) -> Option<String> {
        if stream.is_empty() || !self.removing() {
            return None;
        }
        let index = self.index.read().unwrap_or_else(|e| e.into_inner());
        let last = index.stream_len(stream).checked_sub(1);
        index
            .life
            .why_removed(stream, version, timestamp_us, last, self.now())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_state_round_trips_and_says_which_operation_removed_an_event() {
        let mut s = LifeState::default();
        s.apply(
            &LifecycleOp::Truncate {
                stream: "a".into(),
                before_version: 2,
                version: 5,
            },
            1,
            None,
        );
        s.apply(
            &LifecycleOp::Delete {
                stream: "b".into(),
                hard: false,
                version: 3,
            },
            2,
            None,
        );
        s.apply(
            &LifecycleOp::Retention {
                target: "c-".into(),
                category: true,
                rule: Rule {
                    max_count: 2,
                    max_age_us: 0,
                },
            },
            3,
            None,
        );
        let mut buf = Vec::new();
        s.encode_into(&mut buf);
        assert_eq!(LifeState::decode(&buf).unwrap(), s);
        for cut in 0..buf.len() {
            assert!(LifeState::decode(&buf[..cut]).is_err(), "cut at {cut}");
        }
        let why = |st: &str, v, last| s.why_removed(st, v, 0, Some(last), 0);
        assert!(why("a", 1, 5).unwrap().contains("truncation"));
        assert_eq!(why("a", 2, 5), None);
        assert!(why("b", 3, 3).unwrap().contains("soft delete"));
        assert_eq!(why("b", 4, 4), None);
        let rule = why("c-1", 0, 2).unwrap();
        assert!(
            rule.contains("category 'c-'") && rule.contains("last 2"),
            "{rule}"
        );
        assert_eq!(why("c-1", 1, 2), None);
    }
}
