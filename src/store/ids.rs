//! The event-id index: which recent events carry which id, so that an append retried
//! after a timeout or an I/O error finds its events instead of writing them twice.
//!
//! It is a projection of the log (kept by the store like the account projection): rebuilt
//! on open from the newest snapshot plus the log's tail, saved in snapshots. Bounded by a
//! window: the ids of at least the last `window` events (by position) are remembered;
//! older ones are forgotten in sweeps, once the index spans two windows.
//!
//! Cost: one 8-byte slot (a 32-bit fingerprint of the id, the position as a 32-bit
//! offset) in a hash table kept at least 7/16 full, so under 21 bytes per event with an
//! id. A fingerprint can be shared by two ids: a hit is only a candidate, which the store
//! confirms by reading the event's id from the log; an id whose fingerprint is taken by
//! another goes to a small map of full ids. The event read for that is also what a retry
//! is compared with (`judge_retry`): an id stored with other content is refused, so no
//! fingerprint of the content is kept here (nor in snapshots).

use super::{AppendResult, Event, EventInput, EventRef, Projection, StreamAppend};
use crate::error::{Error, ErrorKind, Result};
use std::collections::HashMap;
use std::sync::Mutex;

/// The projection's name in snapshots.
pub const IDS_PROJECTION: &str = "evstore.event-ids";
/// The default window: the ids of the last 1,048,576 events are remembered.
pub const DEFAULT_DEDUPE_WINDOW: u64 = 1 << 20;
/// The largest window (positions are kept as 32-bit offsets spanning two windows).
pub const MAX_DEDUPE_WINDOW: u64 = 1 << 30;

/// An event id: 16 bytes, never all zero.
pub type EventId = [u8; 16];

/// An id in hex, for messages.
pub(super) fn hex(id: &EventId) -> String {
    id.iter().map(|b| format!("{b:02x}")).collect()
}

/// The error for an append that carries one id twice (every backend says the same).
pub(super) fn id_twice(id: &EventId) -> Error {
    Error::invalid(format!("event id {} appears twice in one append", hex(id)))
}

/// The error for an append of which some events' ids are stored and some not: `old` (in
/// the append's order of events, in part `part`) was stored at `at`, `new` was not or
/// `has_no_id`.
pub(super) fn partly_stored(
    old: usize,
    part: usize,
    at: u64,
    new: usize,
    has_no_id: bool,
) -> Error {
    let why = if has_no_id { "has no id" } else { "was not" };
    Error::new(
        ErrorKind::AlreadyExists,
        format!(
            "events[{old}]'s id was appended before (at position {at}) but events[{new}]'s \
             {why}: a retry must repeat the whole append; nothing was written"
        ),
    )
    .at_position(at)
    .in_part(part)
}

/// What an append's event id was found stored with.
#[derive(Debug)]
pub(super) enum Stored {
    /// An event, whole: a retry is compared with it.
    Event(Event),
    /// An event whose bytes are gone (removed, and its data erased): only where it was.
    /// The id alone answers for it (docs/lifecycle.md "What stays"), in its stream.
    Erased {
        position: u64,
        stream: String,
        stream_version: u64,
    },
}

impl Stored {
    fn position(&self) -> u64 {
        match self {
            Stored::Event(e) => e.position,
            Stored::Erased { position, .. } => *position,
        }
    }

    fn stream_version(&self) -> u64 {
        match self {
            Stored::Event(e) => e.stream_version,
            Stored::Erased { stream_version, .. } => *stream_version,
        }
    }
}

/// What differs between `stored` and the event an append carries with the same id in
/// `stream`: `None` when they are one event (stream, type, schema version, payload and
/// metadata all equal: the append is a retry; of an erased event, or one whose subject
/// was forgotten, the stream (and subject) only).
fn difference(stored: &Stored, stream: &str, input: &EventInput<'_>) -> Option<String> {
    let stored = match stored {
        Stored::Erased { stream: s, .. } if s != stream => {
            return Some(format!("it is in stream '{s}', not '{stream}'"));
        }
        Stored::Erased { .. } => return None,
        Stored::Event(e) => e,
    };
    if stored.stream != stream {
        return Some(format!(
            "it is in stream '{}', not '{stream}'",
            stored.stream
        ));
    }
    // A forgotten subject's event: its payload and metadata are gone, as an erased
    // event's are (the stream alone answers).
    if stored.erased && stored.subject.as_deref() == input.subject {
        return None;
    }
    let field = if stored.event_type != input.event_type {
        "type"
    } else if stored.subject.as_deref() != input.subject {
        "subject"
    } else if stored.schema_version != input.schema_version.max(1) {
        "schema version"
    } else if stored.payload != input.payload {
        "payload"
    } else if stored.metadata != input.metadata {
        "metadata"
    } else {
        return None;
    };
    Some(format!("its {field} differs"))
}

/// Decides an append whose ids were looked up: `stored[k]` is the stored event that has
/// the id of the append's `k`-th event (in the order of its parts), `None` when that
/// event has no id or its id is not stored. Every backend decides the same way:
/// - no id stored: `Ok(None)`, a new append;
/// - an id stored with other content (another stream, type, schema version, payload or
///   metadata; of an erased event: another stream): `AlreadyExists`, whatever else
///   holds: an id names one event, and a caller reusing one must not be told its new
///   event was stored;
/// - some ids stored, not all: `AlreadyExists` (a retry must repeat the whole append);
/// - all stored, each the same event: `Ok(Some(..))` with the stored positions (a retry).
pub(super) fn judge_retry(
    appends: &[StreamAppend<'_>],
    stored: &[Option<Stored>],
) -> Result<Option<AppendResult>> {
    let events = || {
        appends
            .iter()
            .enumerate()
            .flat_map(|(part, a)| a.events.iter().map(move |e| (part, a.stream, e)))
    };
    for (k, ((part, stream, input), found)) in events().zip(stored).enumerate() {
        let Some(old) = found else { continue };
        if let Some(what) = difference(old, stream, input) {
            let id = input.id.as_ref().map_or_else(String::new, hex);
            return Err(Error::new(
                ErrorKind::AlreadyExists,
                format!(
                    "events[{k}]'s id {id} was used before for other content: the event at \
                     position {} has it, and {what}; an event id names one event, so \
                     nothing was written",
                    old.position()
                ),
            )
            .at_position(old.position())
            .in_part(part));
        }
    }
    let Some(old) = stored.iter().position(Option::is_some) else {
        return Ok(None);
    };
    if let Some(new) = stored.iter().position(Option::is_none) {
        let (part, _, _) = events().nth(old).expect("one per event");
        let at = stored[old].as_ref().map_or(0, Stored::position);
        let no_id = events().nth(new).is_some_and(|(_, _, e)| e.id.is_none());
        return Err(partly_stored(old, part, at, new, no_id));
    }
    let mut stored = stored.iter().flatten();
    let mut first = None;
    let mut stream_versions = Vec::with_capacity(appends.len());
    for a in appends {
        let mut last = 0;
        for _ in a.events {
            let e = stored.next().expect("one per event");
            first.get_or_insert(e.position());
            last = e.stream_version();
        }
        stream_versions.push(last);
    }
    Ok(Some(AppendResult {
        first_position: first.unwrap_or(0),
        stream_versions,
    }))
}

#[derive(Default)]
struct Table {
    /// Positions are stored as `position - base`.
    base: u64,
    /// The position after the last event applied.
    next: u64,
    by_fingerprint: super::FastMap<u32, u32>,
    /// Ids whose fingerprint another id holds (rare), with their positions.
    spilled: HashMap<EventId, u64>,
    /// Ids of events a compaction erased (their records are gone, so the log cannot
    /// confirm them): where each was, its stream and version.
    erased: HashMap<EventId, (u64, Box<str>, u64)>,
}

pub struct IdIndex {
    window: u64,
    table: Mutex<Table>,
}

fn fingerprint(id: &EventId) -> u32 {
    // Ids are meant to be random (UUIDs); fold all 16 bytes so that ids which differ in
    // one place only still differ here.
    let mut h: u32 = 0x811c_9dc5;
    for &b in id {
        h = (h ^ b as u32).wrapping_mul(0x0100_0193);
    }
    h
}

impl IdIndex {
    pub fn new(window: u64) -> Self {
        IdIndex {
            window: window.clamp(1, MAX_DEDUPE_WINDOW),
            table: Mutex::default(),
        }
    }

    pub fn window(&self) -> u64 {
        self.window
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Table> {
        self.table.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Positions that may hold `id`: the exact one from the spill map, and a candidate by
    /// fingerprint that the caller must confirm.
    pub fn candidates(&self, id: &EventId) -> (Option<u64>, Option<u64>) {
        let t = self.lock();
        let exact = t.spilled.get(id).copied();
        let maybe = t
            .by_fingerprint
            .get(&fingerprint(id))
            .map(|&off| t.base + off as u64);
        (exact, maybe)
    }

    /// Remembers that the record at `position` (a lifecycle entry: events come through
    /// `apply`) has `id`.
    pub fn remember(&self, id: &EventId, position: u64) {
        self.insert(id, position);
    }

    /// Takes in that the positions up to `position` are used by events without an id:
    /// what `apply` does for each of them, in one lock (replay tells only the last of a
    /// run of them).
    pub fn used_through(&self, position: u64) {
        let mut t = self.lock();
        t.next = t.next.max(position + 1);
    }

    /// Remembers that the event at `position` has `id`.
    fn insert(&self, id: &EventId, position: u64) {
        let mut t = self.lock();
        if t.next == 0 && t.by_fingerprint.is_empty() && t.spilled.is_empty() {
            t.base = position;
        }
        t.next = t.next.max(position + 1);
        if t.next - t.base > 2 * self.window {
            self.sweep(&mut t);
        }
        let off = (position - t.base) as u32;
        match t.by_fingerprint.get(&fingerprint(id)) {
            Some(&o) if o != off => {
                t.spilled.insert(*id, position);
            }
            _ => {
                t.by_fingerprint.insert(fingerprint(id), off);
            }
        }
    }

    /// Forgets ids older than the window and rebases the offsets on its start.
    fn sweep(&self, t: &mut Table) {
        let cutoff = t.next.saturating_sub(self.window);
        let base = t.base;
        t.by_fingerprint
            .retain(|_, off| base + *off as u64 >= cutoff);
        for off in t.by_fingerprint.values_mut() {
            *off = (base + *off as u64 - cutoff) as u32;
        }
        t.by_fingerprint.shrink_to_fit();
        t.spilled.retain(|_, p| *p >= cutoff);
        t.erased.retain(|_, e| e.0 >= cutoff);
        t.base = cutoff;
    }

    /// Remembers the id of an event at `position` (stream `stream`, version `version`)
    /// whose record a compaction is about to erase, if the window still holds it: a
    /// retry of its append is answered from this alone (docs/lifecycle.md "What stays").
    pub fn remember_erased(&self, id: &EventId, position: u64, stream: &str, version: u64) {
        let mut t = self.lock();
        if position >= t.next.saturating_sub(self.window) {
            t.erased.insert(*id, (position, stream.into(), version));
        }
    }

    /// Where the event with `id` was, its stream and version, if a compaction erased it
    /// while the window held it.
    pub fn erased(&self, id: &EventId) -> Option<(u64, String, u64)> {
        let t = self.lock();
        t.erased.get(id).map(|(p, s, v)| (*p, s.to_string(), *v))
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Ids remembered now.
    pub fn len(&self) -> u64 {
        let t = self.lock();
        (t.by_fingerprint.len() + t.spilled.len()) as u64
    }

    /// Bytes held, for stats.
    pub fn approx_bytes(&self) -> u64 {
        let t = self.lock();
        // hashbrown: a table of buckets (capacity is 7/8 of them), each holding the slot
        // and one control byte.
        let buckets = |cap: usize| cap.div_ceil(7) * 8;
        let erased: usize = t.erased.values().map(|e| 48 + e.1.len()).sum();
        (buckets(t.by_fingerprint.capacity()) * 9 + buckets(t.spilled.capacity()) * 25 + erased)
            as u64
    }
}

impl Projection for IdIndex {
    fn name(&self) -> &str {
        IDS_PROJECTION
    }

    fn apply(&self, event: &EventRef<'_>) {
        match &event.id {
            Some(id) => self.insert(id, event.position),
            None => self.used_through(event.position),
        }
    }

    fn apply_lifecycle(&self, _op: &super::lifecycle::LifecycleOp, position: u64) {
        // The position is used (the window counts it); its id, if any, comes through
        // `remember`.
        let mut t = self.lock();
        t.next = t.next.max(position + 1);
    }

    fn snapshot(&self) -> Vec<u8> {
        let t = self.lock();
        let mut out = Vec::with_capacity(32 + t.by_fingerprint.len() * 8 + t.spilled.len() * 24);
        for v in [
            t.base,
            t.next,
            t.by_fingerprint.len() as u64,
            t.spilled.len() as u64,
        ] {
            out.extend_from_slice(&v.to_le_bytes());
        }
        for (&fp, &off) in &t.by_fingerprint {
            out.extend_from_slice(&fp.to_le_bytes());
            out.extend_from_slice(&off.to_le_bytes());
        }
        for (id, &p) in &t.spilled {
            out.extend_from_slice(id);
            out.extend_from_slice(&p.to_le_bytes());
        }
        // Erased ids: a section after the others (absent when there are none, so that a
        // snapshot without any reads as before): their count, then each id, position,
        // version, stream name length (u32) and name.
        if !t.erased.is_empty() {
            out.extend_from_slice(&(t.erased.len() as u64).to_le_bytes());
            for (id, (p, stream, v)) in &t.erased {
                out.extend_from_slice(id);
                out.extend_from_slice(&p.to_le_bytes());
                out.extend_from_slice(&v.to_le_bytes());
                out.extend_from_slice(&(stream.len() as u32).to_le_bytes());
                out.extend_from_slice(stream.as_bytes());
            }
        }
        out
    }

    fn restore(&self, bytes: &[u8]) -> Result<()> {
        let bad = || Error::corrupt("the event-id index in the snapshot is malformed");
        let u64_at = |at: usize| -> Result<u64> {
            bytes
                .get(at..at + 8)
                .map(|b| u64::from_le_bytes(b.try_into().unwrap()))
                .ok_or_else(bad)
        };
        let (base, next) = (u64_at(0)?, u64_at(8)?);
        let (n, m) = (u64_at(16)? as usize, u64_at(24)? as usize);
        let want = n
            .checked_mul(8)
            .and_then(|a| m.checked_mul(24).and_then(|b| a.checked_add(b)))
            .and_then(|s| s.checked_add(32))
            .ok_or_else(bad)?;
        if bytes.len() < want || next < base {
            return Err(bad());
        }
        let mut t = Table {
            base,
            next,
            by_fingerprint: super::FastMap::with_capacity_and_hasher(n, Default::default()),
            spilled: HashMap::with_capacity(m),
            erased: HashMap::new(),
        };
        let mut at = 32;
        for _ in 0..n {
            let fp = u32::from_le_bytes(bytes[at..at + 4].try_into().unwrap());
            let off = u32::from_le_bytes(bytes[at + 4..at + 8].try_into().unwrap());
            t.by_fingerprint.insert(fp, off);
            at += 8;
        }
        for _ in 0..m {
            let id: EventId = bytes[at..at + 16].try_into().unwrap();
            t.spilled.insert(id, u64_at(at + 16)?);
            at += 24;
        }
        if at < bytes.len() {
            let k = u64_at(at)?;
            at += 8;
            for _ in 0..k {
                let id: EventId = bytes.get(at..at + 16).ok_or_else(bad)?.try_into().unwrap();
                let (p, v) = (u64_at(at + 16)?, u64_at(at + 24)?);
                let n = bytes
                    .get(at + 32..at + 36)
                    .map(|b| u32::from_le_bytes(b.try_into().unwrap()) as usize)
                    .ok_or_else(bad)?;
                let name = bytes.get(at + 36..at + 36 + n).ok_or_else(bad)?;
                let name = std::str::from_utf8(name).map_err(|_| bad())?;
                t.erased.insert(id, (p, name.into(), v));
                at += 36 + n;
            }
            if at != bytes.len() {
                return Err(bad());
            }
        }
        *self.lock() = t;
        Ok(())
    }

    fn reset(&self) {
        *self.lock() = Table::default();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(n: u64) -> EventId {
        let mut b = [0u8; 16];
        b[..8].copy_from_slice(&n.wrapping_mul(0x9e37_79b9_7f4a_7c15).to_le_bytes());
        b[8..].copy_from_slice(&n.to_le_bytes());
        b
    }

    fn apply(ix: &IdIndex, position: u64, id: Option<EventId>) {
        let ev = EventRef {
            position,
            timestamp_us: 0,
            stream: "s",
            stream_version: position,
            event_type: "T",
            schema_version: 1,
            metadata: &[],
            payload: &[],
            id,
            subject: None,
            erased: false,
        };
        ix.apply(&ev);
    }

    fn found(ix: &IdIndex, i: &EventId) -> Option<u64> {
        let (exact, maybe) = ix.candidates(i);
        exact.or(maybe)
    }

    #[test]
    fn ids_are_found_within_the_window_and_forgotten_after_two() {
        let ix = IdIndex::new(100);
        for p in 0..1000 {
            apply(&ix, p, (p % 2 == 0).then(|| id(p)));
        }
        for p in (900..1000).step_by(2) {
            assert_eq!(found(&ix, &id(p)), Some(p), "position {p}");
        }
        assert_eq!(found(&ix, &id(2)), None);
        assert!(ix.len() <= 100, "{} ids kept for a window of 100", ix.len());
    }

    #[test]
    fn a_shared_fingerprint_keeps_both_ids() {
        // Two ids with one fingerprint (a birthday search over 32 bits).
        let mut seen = HashMap::new();
        let (a, b) = (0u64..)
            .find_map(|n| seen.insert(fingerprint(&id(n)), n).map(|m| (id(m), id(n))))
            .unwrap();
        assert_ne!(a, b);
        let ix = IdIndex::new(1000);
        apply(&ix, 0, Some(a));
        apply(&ix, 1, Some(b));
        assert_eq!(ix.candidates(&a), (None, Some(0)));
        // b's fingerprint points at a (the store's check rejects it); b itself is exact.
        assert_eq!(ix.candidates(&b), (Some(1), Some(0)));
    }

    #[test]
    fn the_index_survives_a_snapshot_round_trip() {
        let ix = IdIndex::new(50);
        for p in 0..300 {
            apply(&ix, p, Some(id(p)));
        }
        let bytes = ix.snapshot();
        let back = IdIndex::new(50);
        back.restore(&bytes).unwrap();
        for p in 250..300 {
            assert_eq!(found(&back, &id(p)), Some(p));
        }
        assert!(back.restore(&bytes[..bytes.len() - 1]).is_err());
        back.reset();
        assert_eq!(back.len(), 0);
    }

    #[test]
    fn memory_stays_under_24_bytes_per_id() {
        let ix = IdIndex::new(1 << 20);
        for p in 0..200_000 {
            apply(&ix, p, Some(id(p)));
        }
        let per_id = ix.approx_bytes() as f64 / ix.len() as f64;
        assert!(per_id <= 24.0, "{per_id} bytes per id");
    }
}
