//! Moving a log between stores (docs/export-format.md): exporting it to the portable
//! format, importing such a file into an empty store of either engine, and copying one
//! store into another directly (resumable). What moves is what a reader of the source
//! sees, at its positions: every event not removed, with its position, timestamp, stream,
//! version, id, type, schema version, metadata and payload, and every lifecycle entry
//! (delete, truncation, retention rule) at its place. Positions that hold neither (removed
//! events, consumers' records) stay empty in the destination.
//!
//! The engines take items through `Backend::import`, which writes them at their own
//! positions and times and refuses anything below the store's next position
//! (`ErrorKind::NotEmpty`): an import can never land in the middle of a log or go back.

use super::export::{ExportReader, ExportWriter, Header};
use super::lifecycle::LifecycleOp;
use super::{check_name, Event, Store};
use crate::error::{Error, ErrorKind, Result};
use std::io::{BufReader, Write};
use std::path::Path;

/// A lifecycle entry of the log, as it moves: its position, time, id and operation
/// (never a consumer's record).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogEntry {
    pub position: u64,
    pub timestamp_us: u64,
    pub id: Option<[u8; 16]>,
    pub op: LifecycleOp,
}

/// One thing of the log that moves: an event or a lifecycle entry, at its position.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Item {
    Event(Event),
    Entry(LogEntry),
}

impl Item {
    pub fn position(&self) -> u64 {
        match self {
            Item::Event(e) => e.position,
            Item::Entry(e) => e.position,
        }
    }

    pub fn timestamp_us(&self) -> u64 {
        match self {
            Item::Event(e) => e.timestamp_us,
            Item::Entry(e) => e.timestamp_us,
        }
    }

    /// Bytes it takes, roughly (batching).
    fn size(&self) -> usize {
        match self {
            Item::Event(e) => e.payload.len() + e.metadata.len() + e.stream.len() + 64,
            Item::Entry(_) => 64,
        }
    }
}

/// What an export, an import or a copy did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MoveInfo {
    pub events: u64,
    pub entries: u64,
    /// The positions covered: `first .. next` (a copy: from where it started or resumed).
    pub first: u64,
    pub next: u64,
    /// Bytes of the export written or read (0 for a copy).
    pub bytes: u64,
}

impl MoveInfo {
    fn count(&mut self, item: &Item) {
        match item {
            Item::Event(_) => self.events += 1,
            Item::Entry(_) => self.entries += 1,
        }
    }
}

/// Called now and then with the position reached and the end (`next`).
pub type Progress<'a> = &'a mut dyn FnMut(u64, u64);

/// Items per call of `Backend::import`, and bytes.
const BATCH_ITEMS: usize = 2000;
const BATCH_BYTES: usize = 8 << 20;

/// The error for an item at or below the store's next position (every engine).
pub(crate) fn not_empty(location: &str, next: u64, position: u64) -> Error {
    Error::new(
        ErrorKind::NotEmpty,
        format!(
            "{location} already holds positions up to {next} (exclusive); an import writes only \
             after them, in position order, and the item at position {position} is not after them"
        ),
    )
}

/// Checks a batch for `Backend::import` against a store whose next position is `next`
/// and whose last timestamp is `last_ts`, the same way on every engine: positions
/// increasing from `next` on, `end` past the last, times never going back, names and
/// sizes within the limits, an erased event naming its subject and holding no bytes,
/// only deletes, truncations, rules and forgets as entries.
pub(crate) fn check_batch(
    location: &str,
    items: &[Item],
    end: u64,
    next: u64,
    last_ts: u64,
    max_event_size: usize,
) -> Result<()> {
    let (mut at, mut ts) = (next, last_ts);
    for item in items {
        let p = item.position();
        if p < at {
            return Err(not_empty(location, at, p));
        }
        if item.timestamp_us() < ts {
            return Err(Error::invalid(format!(
                "the item at position {p} has timestamp {} us, before the {ts} us of the one \
                 before it: timestamps never decrease along positions",
                item.timestamp_us()
            )));
        }
        match item {
            Item::Event(e) => {
                check_name("stream name", &e.stream, true)?;
                check_name("event type", &e.event_type, false)?;
                let size = e.payload.len() + e.metadata.len();
                if size > max_event_size {
                    return Err(Error::new(
                        ErrorKind::TooLarge,
                        format!("the event at position {p} has {size} bytes, past the limit of {max_event_size}"),
                    ));
                }
                if e.id == Some([0; 16]) {
                    return Err(Error::invalid(format!(
                        "the event at position {p} has an id of all zeros"
                    )));
                }
                if let Some(s) = &e.subject {
                    check_name("subject", s, false)?;
                }
                if e.erased && (e.subject.is_none() || size > 0) {
                    return Err(Error::invalid(format!(
                        "the event at position {p} is erased but names no subject or holds \
                         {size} bytes of metadata and payload"
                    )));
                }
            }
            Item::Entry(e) => {
                if matches!(e.op, LifecycleOp::Consumer(_)) {
                    return Err(Error::invalid(format!(
                        "the entry at position {p} is a consumer's record, which is not imported"
                    )));
                }
                match &e.op {
                    LifecycleOp::Retention {
                        target, category, ..
                    } => check_name("category prefix", target, *category)?,
                    LifecycleOp::Forget { subject } => check_name("subject", subject, false)?,
                    op => check_name("stream name", op.stream().unwrap_or(""), false)?,
                }
            }
        }
        at = p + 1;
        ts = item.timestamp_us();
    }
    if end < at {
        return Err(Error::invalid(format!(
            "an import's end position {end} is below its items' (up to {at}, exclusive)"
        )));
    }
    if end - next > 1 << 32 {
        return Err(Error::invalid(format!(
            "an import batch that spans positions {next} to {end}: at most 2^32 at once"
        )));
    }
    Ok(())
}

/// Refuses an event (not erased) that names a subject the destination forgot (`gone`:
/// `Some` with the forget's position when known) or that a forget entry before it in
/// `items` forgets: a subject's events after its forget can only come erased.
pub(crate) fn check_forgotten(
    items: &[Item],
    mut gone: impl FnMut(&str) -> Option<Option<u64>>,
) -> Result<()> {
    let mut in_batch: std::collections::HashMap<&str, u64> = Default::default();
    for item in items {
        match item {
            Item::Entry(LogEntry {
                position,
                op: LifecycleOp::Forget { subject },
                ..
            }) => {
                in_batch.entry(subject.as_str()).or_insert(*position);
            }
            Item::Event(e) if !e.erased => {
                let Some(s) = e.subject.as_deref() else {
                    continue;
                };
                if let Some(&at) = in_batch.get(s) {
                    return Err(forgotten_here(e.position, s, Some(at)));
                }
                if let Some(at) = gone(s) {
                    return Err(forgotten_here(e.position, s, at));
                }
            }
            _ => {}
        }
    }
    Ok(())
}

/// The error for an imported event (not erased) whose subject the destination forgot
/// (at position `at`, if known): a subject's events after its forget can only come
/// erased.
pub(crate) fn forgotten_here(position: u64, subject: &str, at: Option<u64>) -> Error {
    let at = at.map_or("now".to_owned(), |p| format!("at position {p}"));
    Error::invalid(format!(
        "the event at position {position} names subject '{subject}', which this store forgot \
         ({at}): its events can only come erased"
    ))
}

/// Checks each event's stream version against the stream as the destination has it
/// (`version_of`: its last version, and whether it is hard-deleted) and the batch's
/// items before it: versions only go up (after a delete too), and a hard-deleted stream
/// takes no event.
pub(crate) fn check_versions(
    items: &[Item],
    mut version_of: impl FnMut(&str) -> Result<(Option<u64>, bool)>,
) -> Result<()> {
    let mut seen: std::collections::HashMap<&str, (Option<u64>, bool)> = Default::default();
    for item in items {
        let (stream, version) = match item {
            Item::Event(e) if !e.stream.is_empty() => (e.stream.as_str(), e.stream_version),
            Item::Entry(LogEntry {
                op: LifecycleOp::Delete {
                    stream, version, ..
                },
                ..
            }) => (stream.as_str(), *version),
            _ => continue,
        };
        let (last, tombstone) = match seen.get(stream) {
            Some(&s) => s,
            None => version_of(stream)?,
        };
        match item {
            Item::Event(e) => {
                if tombstone {
                    return Err(super::lifecycle::stream_deleted(stream));
                }
                if let Some(v) = last.filter(|&v| version <= v) {
                    return Err(Error::invalid(format!(
                        "the event at position {} is version {version} of stream '{stream}', \
                         which is at version {v} already: versions only go up",
                        e.position
                    )));
                }
                seen.insert(stream, (Some(version), false));
            }
            Item::Entry(LogEntry {
                op: LifecycleOp::Delete { hard, .. },
                ..
            }) => {
                let v = last.map_or(version, |l| l.max(version));
                seen.insert(stream, (Some(v), tombstone || *hard));
            }
            Item::Entry(_) => {}
        }
    }
    Ok(())
}

/// Reads a store's items in position order, from `from` up to `end` (its next position
/// when the move began): the events a reader sees, and the lifecycle entries found at
/// the positions between them.
struct Source<'s> {
    store: &'s Store,
    cursor: Box<dyn super::TailCursor>,
    /// Items before this are taken.
    at: u64,
    end: u64,
    /// An event read past the entries before it, waiting for them.
    held: Option<Event>,
    queued: std::collections::VecDeque<Item>,
}

impl<'s> Source<'s> {
    fn new(store: &'s Store, from: u64, end: u64) -> Result<Self> {
        Ok(Source {
            store,
            cursor: store.read_all(from)?,
            at: from,
            end,
            held: None,
            queued: Default::default(),
        })
    }

    fn next(&mut self) -> Result<Option<Item>> {
        loop {
            if let Some(i) = self.queued.pop_front() {
                return Ok(Some(i));
            }
            if let Some(e) = self.held.take() {
                self.at = e.position + 1;
                return Ok(Some(Item::Event(e)));
            }
            if self.at >= self.end {
                return Ok(None);
            }
            let ev = match self.cursor.next()? {
                Some(e) if e.position < self.end => Some(e.to_owned()),
                _ => None,
            };
            let upto = ev.as_ref().map_or(self.end, |e| e.position);
            if upto > self.at {
                let entries = self.store.entries(self.at, upto)?;
                self.queued.extend(entries.into_iter().map(Item::Entry));
            }
            self.at = upto;
            self.held = ev;
        }
    }
}

/// Moves every item `next` gives into `take`, counting them in `info` and telling
/// `progress` every 10,000 items.
fn pump(
    info: &mut MoveInfo,
    mut next: impl FnMut() -> Result<Option<Item>>,
    mut take: impl FnMut(Item) -> Result<()>,
    progress: Progress<'_>,
) -> Result<()> {
    let mut n = 0u64;
    while let Some(item) = next()? {
        info.count(&item);
        let p = item.position();
        take(item)?;
        n += 1;
        if n.is_multiple_of(10_000) {
            progress(p, info.next);
        }
    }
    Ok(())
}

/// The engine's name, for the header.
fn engine(store: &Store) -> &'static str {
    if super::is_postgres_url(&store.location()) {
        "postgresql"
    } else {
        "file"
    }
}

/// Writes the whole log of `store` (positions 0 up to its next position when the call
/// began) to `out` in the export format.
pub fn export(store: &Store, out: &mut dyn Write, progress: Progress<'_>) -> Result<MoveInfo> {
    store.check_owner()?;
    let end = store.next_position()?;
    let header = Header {
        engine: engine(store).to_owned(),
        first: 0,
        next: end,
        exported_at_us: store.options().clock.now_us(),
    };
    let mut w = ExportWriter::new(out, &header)?;
    let mut info = MoveInfo {
        first: 0,
        next: end,
        ..MoveInfo::default()
    };
    let mut source = Source::new(store, 0, end)?;
    pump(&mut info, || source.next(), |i| w.item(&i), progress)?;
    info.bytes = w.finish()?;
    progress(end, end);
    Ok(info)
}

/// `export` into a new file at `path` (refused if it exists), synced before it returns.
pub fn export_file(store: &Store, path: &Path, progress: Progress<'_>) -> Result<MoveInfo> {
    let name = path.display();
    let file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(path)
        .map_err(|e| Error::io(format!("creating {name}"), e))?;
    let mut out = std::io::BufWriter::with_capacity(1 << 20, file);
    let info = export(store, &mut out, progress)?;
    let file = out
        .into_inner()
        .map_err(|e| Error::io(format!("writing {name}"), e.into_error()))?;
    file.sync_all()
        .map_err(|e| Error::io(format!("syncing {name}"), e))?;
    Ok(info)
}

/// Writes `items` and what comes after them up to `end` into `store`, batch by batch.
struct Sink<'s> {
    store: &'s Store,
    batch: Vec<Item>,
    bytes: usize,
}

impl Sink<'_> {
    fn push(&mut self, item: Item) -> Result<()> {
        self.bytes += item.size();
        self.batch.push(item);
        if self.batch.len() >= BATCH_ITEMS || self.bytes >= BATCH_BYTES {
            let end = self.batch.last().map_or(0, |i| i.position() + 1);
            self.flush(end)?;
        }
        Ok(())
    }

    fn flush(&mut self, end: u64) -> Result<()> {
        self.store.import(&self.batch, end)?;
        self.batch.clear();
        self.bytes = 0;
        Ok(())
    }
}

/// Imports the export file at `path` into `store`, which must be empty (`NotEmpty`
/// otherwise). The file is read twice: once to check all of it (a file cut short or
/// changed is refused before anything is written), then to import it. Every position,
/// version, id and timestamp is kept, and the store's next position becomes the
/// export's.
pub fn import_file(store: &Store, path: &Path, progress: Progress<'_>) -> Result<MoveInfo> {
    store.check_owner()?;
    let name = path.display();
    let open = || -> Result<ExportReader<BufReader<std::fs::File>>> {
        let f = std::fs::File::open(path).map_err(|e| Error::io(format!("opening {name}"), e))?;
        ExportReader::new(BufReader::with_capacity(1 << 20, f))
            .map_err(|e| e.prefixed(format!("{name}: ")))
    };
    let mut check = open()?;
    let mut personal = None;
    while let Some(item) = check
        .next_item()
        .map_err(|e| e.prefixed(format!("{name}: ")))?
    {
        if personal.is_none() && names_subject(&item) {
            personal = Some(item.position());
        }
    }
    if let Some(p) = personal {
        takes_subjects(store, p)?;
    }
    let next = store.next_position()?;
    if next > 0 {
        return Err(Error::new(
            ErrorKind::NotEmpty,
            format!(
                "{} is not empty (its next position is {next}): an import needs an empty store",
                store.location()
            ),
        ));
    }
    let mut r = open()?;
    let header = r.header().clone();
    let mut info = MoveInfo {
        first: header.first,
        next: header.next,
        bytes: std::fs::metadata(path).map(|m| m.len()).unwrap_or(0),
        ..MoveInfo::default()
    };
    let mut sink = Sink {
        store,
        batch: Vec::new(),
        bytes: 0,
    };
    let items = || r.next_item().map_err(|e| e.prefixed(format!("{name}: ")));
    pump(&mut info, items, |i| sink.push(i), progress)?;
    sink.flush(header.next)?;
    progress(header.next, header.next);
    Ok(info)
}

/// Whether an item is personal data: an event naming a subject, or a forget.
fn names_subject(item: &Item) -> bool {
    match item {
        Item::Event(e) => e.subject.is_some(),
        Item::Entry(e) => matches!(e.op, LifecycleOp::Forget { .. }),
    }
}

/// Whether `store` holds events naming subjects, or forgets: asked of the store whatever
/// its engine (what it can seal is the destination's question, `takes_subjects`).
fn has_subjects(store: &Store) -> Result<bool> {
    Ok(!store.subjects()?.is_empty())
}

/// Refuses, before anything is written, a move of personal data (the first at
/// `position`) into a store whose engine cannot seal it: it would be stored in the clear.
fn takes_subjects(dst: &Store, position: u64) -> Result<()> {
    if dst.supports_subjects() {
        return Ok(());
    }
    Err(Error::invalid(format!(
        "the log moved holds personal data (events naming data subjects, from position \
         {position} on), which {} cannot keep sealed: its engine does not support subjects in \
         this version; nothing was written",
        dst.location()
    )))
}

/// Checks that `dst`, whose next position is `from`, holds what `src` holds below it (an
/// earlier copy that stopped): its last event is the source's at that position (unless
/// the source removed that event since: the entry that removed it comes later and is
/// copied), and its entries are the source's.
fn check_resumable(src: &Store, dst: &Store, from: u64) -> Result<()> {
    let differ = |what: String| {
        Error::new(
            ErrorKind::NotEmpty,
            format!(
                "{} is not empty and is not an earlier copy of {}: {what}",
                dst.location(),
                src.location()
            ),
        )
    };
    let src_next = src.next_position()?;
    if from > src_next {
        return Err(differ(format!(
            "it has positions up to {from}, the source up to {src_next}"
        )));
    }
    let mut back = dst.read_all_backward(u64::MAX)?;
    if let Some(last) = back.next()? {
        match src.read_event(last.position) {
            Ok(e) if moved_as(&e, &last) => {}
            Ok(e) => {
                return Err(differ(format!(
                    "position {} holds stream '{}' version {} there and stream '{}' version {} \
                     (or other bytes) in the source",
                    last.position, last.stream, last.stream_version, e.stream, e.stream_version
                )))
            }
            Err(e) if e.kind == ErrorKind::NotFound => {}
            Err(e) => return Err(e),
        }
    }
    let start = from.saturating_sub(100_000);
    if dst.entries(start, from)? != src.entries(start, from)? {
        return Err(differ(format!(
            "its lifecycle entries between positions {start} and {from} are not the source's"
        )));
    }
    Ok(())
}

/// Whether `dst` is what a move made of `src`'s event `e`: equal, but for what a move
/// may change of an event that names a subject: the id PostgreSQL made where it had none
/// (sealed events are bound to one), and its bytes if the source has forgotten its
/// subject since (erased there; the forget entry comes later and is copied).
fn moved_as(e: &Event, dst: &super::EventRef<'_>) -> bool {
    let mut want = e.as_ref();
    if e.subject.is_some() && e.subject.as_deref() == dst.subject {
        if want.id.is_none() {
            want.id = dst.id;
        }
        if want.erased {
            (want.erased, want.metadata, want.payload) = (dst.erased, dst.metadata, dst.payload);
        }
    }
    want == *dst
}

/// Copies `src` into `dst` (either engine each) without a file: every item from `dst`'s
/// next position up to `src`'s next position when the call began. `dst` must be empty,
/// or an earlier copy of `src` that stopped (killed, a lost connection): the copy then
/// goes on from where that one stopped and ends with the same log.
pub fn copy(src: &Store, dst: &Store, progress: Progress<'_>) -> Result<MoveInfo> {
    src.check_owner()?;
    dst.check_owner()?;
    let end = src.next_position()?;
    let from = dst.next_position()?;
    if from > 0 {
        check_resumable(src, dst, from)?;
    }
    // (Asked only where it matters: a PostgreSQL source counts them with a scan.)
    if !dst.supports_subjects() && has_subjects(src)? {
        takes_subjects(dst, from)?;
    }
    let mut info = MoveInfo {
        first: from,
        next: end,
        ..MoveInfo::default()
    };
    let mut source = Source::new(src, from, end)?;
    let mut sink = Sink {
        store: dst,
        batch: Vec::new(),
        bytes: 0,
    };
    pump(&mut info, || source.next(), |i| sink.push(i), progress)?;
    sink.flush(end)?;
    dst.sync()?;
    progress(end, end);
    Ok(info)
}
