//! The file engine's side of moving a log (`store::import`, docs/export-format.md):
//! reading the lifecycle entries between events, and writing items at their own
//! positions and times. An imported log is a log as a compaction leaves it: positions
//! that hold nothing are keys the records skip (and, at the very end, a marker record
//! followed by a new segment, so that no record ever follows a marker in its segment),
//! which recovery, the index files and followers read as empty positions already.

use super::envelope::{self, EnvelopeRef};
use super::lifecycle::{apply_entry, Entry};
use super::{decode_fetched, Decoded, FileStore, Owned};
use crate::error::{Error, ErrorKind, Result};
use crate::store::import::{
    check_batch, check_forgotten, check_versions, forgotten_here, Item, LogEntry,
};
use crate::store::lifecycle::LifecycleOp;
use crate::store::subjects::{DataKey, KeyBytes};
use crate::store::{MAX_BATCH_EVENTS, MAX_BATCH_SIZE};
use crate::wal::record::RecordRef;
use crate::wal::Position;
use std::sync::atomic::Ordering;
use std::sync::Arc;

impl FileStore {
    /// The lifecycle entries at positions `from .. to` (consumers' records left out):
    /// each position is looked up and its record read, so this costs a read per
    /// position; exports call it only for the positions between the events they read.
    pub fn entries(&self, from: u64, to: u64) -> Result<Vec<LogEntry>> {
        self.check_owner()?;
        let to = to.min(self.committed());
        let mut out = Vec::new();
        let mut buf = Vec::new();
        for position in from..to {
            let Some(at) = self.fetch_if_any(position, &mut buf)? else {
                continue;
            };
            let mut owned = Owned::default();
            if let Decoded::Entry(e) = decode_fetched(position, at, &buf, &mut owned, None)? {
                if !matches!(e.op, LifecycleOp::Consumer(_)) {
                    out.push(LogEntry {
                        position,
                        timestamp_us: e.timestamp_us,
                        id: e.id,
                        op: e.op,
                    });
                }
            }
        }
        Ok(out)
    }

    /// Writes `items` at their positions (`Backend::import`). Under the writer's lock:
    /// what waits for a group commit is made durable and counted first, the batch is
    /// checked against the store (`check_batch`, stream versions), then each run of
    /// events is one atomic batch of the log and each entry one of its own (as the writer
    /// writes them), the log is synced, and only then do the items count (indexes,
    /// projections, readers). A failure of the log leaves the store as it was before the
    /// run that failed.
    ///
    /// An event that names a subject is sealed with this store's key for it (made, as an
    /// append makes it, before the writer's lock); an erased one (its subject forgotten
    /// in the source) holds nothing and is sealed under a key of this call that is never
    /// stored, so it reads as erased once its forget entry (later in the log) counts,
    /// and no key of a forgotten subject is ever written here. An imported forget entry
    /// destroys this store's key of its subject, as `forget_subject` does.
    pub fn import(&self, items: &[Item], end: u64) -> Result<()> {
        self.check_writable()?;
        let sealing = self.import_keys(items)?;
        let mut w = self.lock_writer();
        self.catch_up_epoch(&mut w);
        self.wal.health()?;
        if !w.pending.is_empty() {
            self.wal.sync()?;
            self.commit_durable(&mut w);
        }
        let location = self.dir.display().to_string();
        check_batch(
            &location,
            items,
            end,
            w.next_position,
            w.last_timestamp,
            self.options.max_event_size,
        )?;
        {
            let index = self.index.read().unwrap_or_else(|e| e.into_inner());
            check_versions(items, |stream| {
                let view = self.writer_view(&w, &index, stream);
                Ok((view.last_version, view.tombstone))
            })?;
        }
        self.check_import_subjects(items)?;
        let mut scratch = std::mem::take(&mut w.scratch);
        let mut keys = sealing.keys.iter();
        let mut aad = Vec::new();
        // Each run's records and where the log put them, counted after the sync.
        let mut written: Vec<(std::ops::Range<usize>, Vec<Position>)> = Vec::new();
        let mut failed = None;
        let mut i = 0;
        while i < items.len() {
            let run = i..run_end(items, i, self.options.max_segment_size / 2);
            scratch.clear();
            let mut spans = Vec::with_capacity(run.len());
            for item in &items[run.clone()] {
                let start = scratch.len();
                scratch.extend_from_slice(&item.position().to_le_bytes());
                match item {
                    Item::Event(e) => {
                        let sealed_at = EnvelopeRef {
                            timestamp_us: e.timestamp_us,
                            stream: &e.stream,
                            stream_version: if e.stream.is_empty() {
                                0
                            } else {
                                e.stream_version
                            },
                            event_type: &e.event_type,
                            schema_version: e.schema_version.max(1),
                            metadata: &e.metadata,
                            payload: &e.payload,
                            id: e.id,
                            subject: e.subject.as_deref(),
                            sealed_at: 0,
                        }
                        .encode_into(&mut scratch);
                        if let Some(at) = sealed_at {
                            // Bound in as an append binds it: the key and the clear fields.
                            aad.clear();
                            aad.extend_from_slice(&scratch[start..at]);
                            let key = match e.erased {
                                true => sealing.erased.as_ref(),
                                false => keys.next().map(|k| &**k),
                            };
                            let key = key.ok_or_else(|| {
                                Error::new(ErrorKind::Internal, "no key for an imported event")
                            })?;
                            if let Err(err) = key.seal(&aad, &mut scratch, at) {
                                failed = Some(err);
                                break;
                            }
                        }
                    }
                    Item::Entry(e) => envelope::encode_lifecycle(
                        &mut scratch,
                        e.id.as_ref(),
                        e.timestamp_us,
                        &e.op,
                    ),
                }
                spans.push(start..scratch.len());
            }
            if failed.is_some() {
                break;
            }
            let records: Vec<RecordRef<'_>> = spans
                .iter()
                .map(|s| {
                    RecordRef::put(&scratch[s.start..s.start + 8], &scratch[s.start + 8..s.end])
                })
                .collect();
            match self.wal.append_written(&records) {
                Ok(a) => written.push((run.clone(), a.positions)),
                Err(e) => {
                    failed = Some(e);
                    break;
                }
            }
            i = run.end;
        }
        w.scratch = scratch;
        // The positions after the items stay empty: a marker record says where they end,
        // and a new segment begins after it (no record may follow a marker in a segment).
        let last = written.last().map(|(r, _)| items[r.end - 1].position() + 1);
        let marker_at = match (failed.is_none(), last) {
            (true, l) if end > l.unwrap_or(w.next_position) => Some(end - 1),
            _ => None,
        };
        let mut marker_segment = None;
        if let Some(m) = marker_at {
            let key = m.to_le_bytes();
            let mut rec = RecordRef::put(&key, &[]);
            rec.tombstone = true;
            match self.wal.append_written(&[rec]) {
                Ok(a) => marker_segment = Some(a.positions[0].segment_id),
                Err(e) => failed = Some(e),
            }
        }
        if written.is_empty() && marker_segment.is_none() {
            return failed.map_or(Ok(()), Err);
        }
        // Durable before anything counts; a failed sync poisons the log (nothing counts,
        // the handle refuses every write until reopened).
        self.wal.sync()?;
        let mut index = self.index.write().unwrap_or_else(|e| e.into_inner());
        let mut entries = false;
        let mut forgets = Vec::new();
        for (run, at) in &written {
            for (item, &pos) in items[run.clone()].iter().zip(at) {
                while index.len() < item.position() {
                    index.push_gap(pos.segment_id);
                }
                match item {
                    Item::Event(e) => {
                        index.push(
                            pos,
                            e.timestamp_us,
                            &e.stream,
                            e.stream_version,
                            &e.event_type,
                        );
                        let mut ev = e.as_ref();
                        // Projections never see a subject's personal data (`Projection`).
                        if e.subject.is_some() {
                            (ev.metadata, ev.payload) = (&[], &[]);
                        }
                        self.projections.iter().for_each(|p| p.apply(&ev));
                    }
                    Item::Entry(e) => {
                        let entry = Entry {
                            id: e.id,
                            timestamp_us: e.timestamp_us,
                            op: e.op.clone(),
                        };
                        if let LifecycleOp::Forget { subject } = &e.op {
                            forgets.push(subject);
                        }
                        let position = index.len();
                        apply_entry(
                            &mut index,
                            &self.projections,
                            &self.ids,
                            pos,
                            position,
                            &entry,
                        );
                        entries = true;
                    }
                }
                w.last_timestamp = w.last_timestamp.max(item.timestamp_us());
            }
        }
        if let Some(seg) = marker_segment {
            while index.len() < end {
                index.push_gap(seg);
            }
        }
        let n = index.len();
        w.next_position = n;
        if entries {
            self.entry_counts(&index);
        }
        self.committed.store(n, Ordering::Release);
        drop(index);
        self.publish(n);
        if marker_segment.is_some() {
            self.wal.seal_active()?;
        }
        drop(w);
        // The forget entries are durable: their subjects' keys go (a failure here is
        // finished by the next writable open, `KeyRing::settle`).
        for subject in forgets {
            self.keys.destroy(subject)?;
        }
        self.maybe_seal();
        self.maybe_snapshot();
        failed.map_or(Ok(()), Err)
    }

    /// The keys that seal `items`' events: this store's key of each event's subject in
    /// order (erased events left out), and a key for the erased ones that is never
    /// stored. A subject this store has forgotten takes no new event.
    fn import_keys(&self, items: &[Item]) -> Result<Sealing> {
        // Refused before any key is made for a subject the batch itself forgets.
        self.check_import_subjects(items)?;
        let mut sealing = Sealing {
            keys: Vec::new(),
            erased: None,
        };
        for item in items {
            let Item::Event(e) = item else { continue };
            let Some(subject) = &e.subject else { continue };
            if e.erased {
                if sealing.erased.is_none() {
                    sealing.erased = Some(DataKey::new(&KeyBytes::random()?));
                }
                continue;
            }
            match self.keys.key_for_append(subject)? {
                Some(k) => sealing.keys.push(k),
                None => {
                    let at = self.keys.forgotten_at(subject);
                    return Err(forgotten_here(e.position, subject, at));
                }
            }
        }
        Ok(sealing)
    }

    /// Refuses items whose (not erased) events name a subject forgotten here, or by a
    /// forget entry before them in `items` (`check_forgotten`).
    fn check_import_subjects(&self, items: &[Item]) -> Result<()> {
        check_forgotten(items, |s| {
            self.keys
                .check_appendable(s)
                .is_err()
                .then(|| self.keys.forgotten_at(s))
        })
    }
}

/// The keys an import seals with (`FileStore::import_keys`).
struct Sealing {
    keys: Vec<Arc<DataKey>>,
    erased: Option<DataKey>,
}

/// The end of the run of items that starts at `i`: an entry alone, or events up to the
/// next entry within one batch's limits (a batch of the log fits in one segment: at most
/// `max_bytes` of events, but always one).
fn run_end(items: &[Item], i: usize, max_bytes: u64) -> usize {
    let max_bytes = (max_bytes as usize).min(MAX_BATCH_SIZE);
    if matches!(items[i], Item::Entry(_)) {
        return i + 1;
    }
    let mut bytes = 0usize;
    let mut j = i;
    while j < items.len() && j - i < MAX_BATCH_EVENTS {
        let Item::Event(e) = &items[j] else { break };
        bytes += e.payload.len() + e.metadata.len() + e.stream.len() + e.event_type.len() + 64;
        if j > i && bytes > max_bytes {
            break;
        }
        j += 1;
    }
    j
}
