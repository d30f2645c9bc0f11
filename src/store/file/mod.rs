//! The file engine: the embedded store on top of `wal/`, with its indexes, the process
//! lock and snapshots. One writing process; readers in other processes open it read-only.

pub mod backup;
mod compact;
mod consumers;
mod cursor;
mod dedupe;
pub mod envelope;
mod follow;
mod import;
mod index;
mod keys;
mod lifecycle;
mod lock;
mod reads;
pub mod restore;
mod seam;
mod segindex;
pub mod snapshot;

use super::lifecycle::stream_deleted;
use super::subjects::{self, DataKey, KeyRing};
use super::{check_name, ids};
use super::{
    AppendResult, Event, EventInput, EventRef, ExpectedVersion, OpenReport, Projection,
    StoreOptions, StoreStats, StreamAppend, MAX_EVENT_SIZE, MAX_NAME_LEN,
};
use crate::error::{Error, ErrorKind, Result};
use crate::wal::vfs::{self, Kind, OpenMode};
use crate::wal::{record, Appended, FsyncPolicy, Position, RecordRef, Wal, WalConfig};
use cursor::{BackwardCursor, ForwardCursor, StreamCursor};
use envelope::{Envelope, EnvelopeRef};
use index::Index;
use lock::StoreLock;
use segindex::{BuildEvent, Builder, Sealed, SegmentFiles};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, RwLock};
use std::time::{Duration, Instant};

/// The longest record an event can have: its envelope, key and record framing.
const MAX_RECORD_LEN: u64 = (MAX_EVENT_SIZE + 2 * MAX_NAME_LEN + 1024) as u64;

/// Events (or one lifecycle entry) appended under `Always` that wait for their group's
/// fdatasync before they count.
pub(super) struct Pending {
    lsn: u64,
    pub(super) events: Vec<(Position, Event)>,
    /// A lifecycle entry (then `events` is empty) and its record.
    pub(super) entry: Option<(Position, lifecycle::Entry)>,
}

impl Pending {
    /// Where its first record is.
    fn first_record(&self) -> Option<Position> {
        self.events
            .first()
            .map(|e| e.0)
            .or(self.entry.as_ref().map(|e| e.0))
    }
}

/// The writer's side: what the next append sees. Guarded by one mutex: appends are
/// ordered by it, and the (cheap) work under it is only checks, encoding and buffering.
pub(super) struct Writer {
    next_position: u64,
    last_timestamp: u64,
    /// Under `Always`: events buffered in the log but not yet durable, in order.
    pub(super) pending: Vec<Pending>,
    /// Events per stream among `pending`.
    pending_streams: HashMap<String, u64>,
    /// Lifecycle entries among `pending`.
    pending_entries: usize,
    /// Scratch space for encoding.
    scratch: Vec<u8>,
    /// The vectors of an append, kept empty between appends for their allocations (see
    /// `recycle`): its parts' streams before it, its encoded events, its records.
    versions: Vec<PartBefore>,
    spans: Vec<EncodedSpan<'static, 'static>>,
    records: Vec<RecordRef<'static>>,
    /// Where the log put an append's records, kept between appends for its allocation.
    positions: Vec<Position>,
    /// Read-only stores: the writer they follow (see `follow`).
    follow: Option<follow::Follow>,
    /// The log's failure epoch this writer state matches (see `catch_up_epoch`).
    epoch: u64,
}

/// The file engine's store: one directory, one writing process.
pub struct FileStore {
    dir: PathBuf,
    pub(super) options: StoreOptions,
    /// `options.clock`, never going back (timestamps, rules by age).
    clock: super::lifecycle::HandleClock,
    wal: Wal,
    /// Released by `close`, even while cursors still hold the store.
    lock: Mutex<Option<StoreLock>>,
    writer: Mutex<Writer>,
    pub(crate) index: RwLock<Index>,
    /// Events that count (durable under `Always`, appended otherwise).
    committed: AtomicU64,
    /// Signalled with `committed_lock` after a commit while `waiters` is not zero
    /// (subscriptions, tailing cursors).
    committed_lock: Mutex<()>,
    committed_cv: Condvar,
    /// Threads in `wait_for_events`: an append with none makes no futex call (a condition
    /// variable's notify is a system call even when nobody waits).
    waiters: AtomicUsize,
    projections: Vec<Arc<dyn Projection>>,
    snapshotting: AtomicBool,
    /// One snapshot written at a time.
    snapshot_lock: Mutex<()>,
    last_snapshot: AtomicU64,
    snapshots: AtomicU64,
    open_time: Duration,
    closed: AtomicBool,
    /// Set when the store is about to close (`interrupt`): a compaction stops at its next
    /// record, so that a close never waits for a whole one.
    closing: AtomicBool,
    /// The process that opened the store: a forked child must not use it.
    owner_pid: u32,
    /// Also one of `projections`.
    pub(super) ids: Arc<ids::IdIndex>,
    /// The sealed segments' index files.
    files: Arc<SegmentFiles>,
    /// One segment sealed at a time.
    seal_lock: Mutex<()>,
    /// A segment whose index file could not be written (id + 1): not tried again until
    /// the store is reopened; its events stay in memory.
    seal_failed: AtomicU64,
    /// A follower's segment whose index file it could not take up, and since when: looked
    /// at again for `TAKE_UP_PATIENCE` (the writer may be between a compaction's two
    /// renames) before its events stay in memory (`seal_failed`).
    take_up_failing: Mutex<Option<(u64, Instant)>>,
    /// Set once a lifecycle entry (or a consumer's record) counts: until then readers
    /// check nothing per event.
    removing: AtomicBool,
    /// Set once an entry that removes events counts (a delete, truncation or rule; not
    /// a consumer's record or a forget): until then readers judge no event's stream.
    removals: AtomicBool,
    /// The consumers' records of the log (docs/consumers.md); also one of `projections`.
    consumers: Arc<crate::store::consumer::ConsumerTable>,
    /// The data subjects' keys (`store::subjects`); also one of `projections`.
    pub(crate) keys: Arc<KeyRing>,
    /// One compaction at a time.
    compact_lock: Mutex<()>,
    /// The compaction thread (`start_compactor`), and what wakes it.
    compactor: Mutex<Option<std::thread::JoinHandle<()>>>,
    compactor_wake: Arc<compact::Wake>,
    /// The next segment the archiving hook is told has sealed (`report_sealed`).
    archived: AtomicU64,
}

/// How many times a read-only store reads a position again that a compaction of its
/// writer moved (about a millisecond apart) before it reports the damage it read.
const STALE_READS_READ_ONLY: u32 = 2000;

/// Events since the last snapshot after which sealing a segment also writes one: at
/// least this many, and four times the number of streams (a snapshot holds the stream
/// table), so that its cost per event stays small.
const CHECKPOINT_EVENTS: u64 = 1_000_000;
/// Events since the last snapshot after which closing the store writes one, so that the
/// next open replays little.
const CLOSE_CHECKPOINT_EVENTS: u64 = 100_000;

/// Builds the index file of segment `id` (its first event at position `first`, its
/// timestamps indexed at `floor_ts` or later) from the segment itself: its first `limit`
/// bytes when given (a rebuild of a file that said so), else all of it. Bytes after the
/// last record that are not a record (what a snapshot let recovery pass over) end the
/// index only when segment `next` starts with the next position, proving that no event
/// is among them; otherwise they are an error.
pub(crate) fn index_segment(
    vfs: &dyn crate::wal::vfs::Vfs,
    log_dir: &Path,
    id: u64,
    first: u64,
    floor_ts: u64,
    limit: Option<u64>,
    next: Option<u64>,
) -> Result<(Sealed, Vec<u8>)> {
    let name = crate::wal::segment::file_name(id);
    let mut bytes = vfs::read_file(vfs, &crate::wal::segment::path(log_dir, id))
        .map_err(|e| Error::io(format!("reading {name}"), e))?;
    if let Some(l) = limit {
        if (bytes.len() as u64) < l {
            return Err(Error::corrupt(format!(
                "{name} is shorter than its index says"
            )));
        }
        bytes.truncate(l as usize);
    }
    let next_key = || next.and_then(|n| first_key(vfs, log_dir, n));
    index_bytes(&mut bytes, id, first, floor_ts, None, next_key)
}

/// Whether a record is an empty-position marker: a nori-wal tombstone (flag bit 0) with
/// an 8-byte key and no value, which a compaction writes for the last position of a
/// segment whose record it erased, so that the segment still says where its positions
/// end (docs/log-format.md).
pub(crate) fn is_marker(rec: &RecordRef<'_>) -> bool {
    rec.tombstone && rec.key.len() == 8 && rec.value.is_empty()
}

/// Builds the index file of segment `id` (its bytes, first position `first`) as
/// `index_segment` does; `timestamps`: every position's timestamp when known (a
/// compaction keeps those of the positions it empties), else the floor and the records'
/// own. Positions a compaction emptied (keys skipped, or a marker record) are indexed as
/// holding no record.
pub(crate) fn index_bytes(
    bytes: &mut Vec<u8>,
    id: u64,
    first: u64,
    floor_ts: u64,
    timestamps: Option<&[u64]>,
    next_key: impl Fn() -> Option<u64>,
) -> Result<(Sealed, Vec<u8>)> {
    let name = crate::wal::segment::file_name(id);
    if !Builder::fits(bytes.len() as u64) {
        return Err(Error::invalid(format!(
            "{name} is too long for an index file"
        )));
    }
    let mut b = Builder::new(id, first);
    let (mut at, mut position, mut ts) = (0usize, first, floor_ts);
    let stamp = |p: u64, own: u64| {
        timestamps
            .and_then(|t| t.get((p - first) as usize).copied())
            .unwrap_or(own)
    };
    let mut records = 0u64;
    while at < bytes.len() {
        let here = Position {
            segment_id: id,
            offset: at as u64,
        };
        let d = match record::decode(&bytes[at..]) {
            Ok(d) => d,
            Err(e) if at > 0 && next_key() == Some(position) => {
                let _ = e;
                bytes.truncate(at);
                break;
            }
            Err(e) => {
                return Err(Error::corrupt(format!(
                    "{name} offset {at}: {}",
                    e.describe()
                )))
            }
        };
        check_plain(&d.record, here)?;
        let len = d.len;
        // Keys skipped before this record are empty positions.
        let key = match <[u8; 8]>::try_from(d.record.key) {
            Ok(k) if d.record.value.first() != Some(&b'{') => Some(u64::from_le_bytes(k)),
            _ => None,
        };
        if let Some(k) = key {
            if k < position {
                return Err(Error::corrupt(format!(
                    "{name} offset {at}: the record has the key of position {k}, which comes before position {position}"
                )));
            }
            let upto = if is_marker(&d.record) { k + 1 } else { k };
            while position < upto {
                ts = ts.max(stamp(position, ts));
                b.push_gap(ts);
                position += 1;
            }
            if is_marker(&d.record) {
                b.set_records_end(at as u64);
                at += len;
                if at < bytes.len() {
                    return Err(Error::corrupt(format!(
                        "{name} offset {at}: records follow its end marker"
                    )));
                }
                break;
            }
        }
        let mut owned = Owned::default();
        let rec = decode_record(position, d.record.key, d.record.value, &mut owned, None).map_err(
            |e| {
                e.damage_at(position)
                    .prefixed(format!("{name} offset {at}: "))
            },
        )?;
        let (own, stream) = match &rec {
            Decoded::Event(ev) => (
                ev.timestamp_us,
                (!ev.stream.is_empty()).then_some((ev.stream, ev.stream_version)),
            ),
            Decoded::Entry(e) => (e.timestamp_us, None),
        };
        ts = ts.max(stamp(position, own));
        b.push(BuildEvent {
            offset: at as u64,
            len: len as u64,
            timestamp_us: ts,
            stream,
        });
        records += 1;
        at += len;
        position += 1;
    }
    if position == first {
        return Err(Error::corrupt(format!("{name} has no events")));
    }
    let _ = records;
    let crc = record_crc(bytes);
    Ok(b.finish(bytes.len() as u64, crc))
}

/// The position the first record of segment `id` says it has (its 8-byte key), if it
/// has a whole, checked one in its first MiB.
fn first_key(vfs: &dyn crate::wal::vfs::Vfs, log_dir: &Path, id: u64) -> Option<u64> {
    let file = vfs
        .open(&crate::wal::segment::path(log_dir, id), OpenMode::Read)
        .ok()?;
    let mut buf = vec![0u8; 1 << 20];
    let got = vfs::read_at_most(&*file, &mut buf, 0).ok()?;
    let d = record::decode(&buf[..got]).ok()?;
    let key: [u8; 8] = d.record.key.try_into().ok()?;
    (d.record.value.first() != Some(&b'{')).then_some(u64::from_le_bytes(key))
}

/// A record of the log: an event, or a lifecycle entry (which holds no event).
pub(crate) enum Decoded<'a> {
    Event(EventRef<'a>),
    Entry(lifecycle::Entry),
}

/// Decodes a record (its key and value) as the event at `position`; a lifecycle entry
/// there is `NotFound`, saying so. (The readers' hot path: no `Decoded` in between.)
pub(crate) fn decode_event<'a>(
    position: u64,
    key: &[u8],
    value: &'a [u8],
    owned: &'a mut Owned,
    keys: Option<&KeyRing>,
) -> Result<EventRef<'a>> {
    check_key(position, key, value)?;
    match envelope::decode(value)? {
        Envelope::Binary(e) if e.subject.is_some() => sealed_event(position, value, e, owned, keys),
        Envelope::Binary(e) => Ok(binary_event(position, e)),
        Envelope::Legacy(l) => Ok(legacy_event(position, l, &mut owned.legacy)),
        Envelope::Lifecycle { op, .. } => Err(entry_is_no_event(position, &op)),
    }
}

/// `decode_event` for a record whose key was found to be `position` (or that is a
/// legacy record, whose key does not count): the forward cursor's, which compared them.
/// The usual envelope (format 1) is decoded inline; damage is reported at `position`.
#[inline(always)]
pub(crate) fn decode_at_key<'a>(
    position: u64,
    value: &'a [u8],
    owned: &'a mut Owned,
    keys: &KeyRing,
) -> Result<EventRef<'a>> {
    if value.first() == Some(&envelope::FORMAT_BINARY_V1) {
        if let Some(e) = envelope::decode_binary_fast(value, 1, None) {
            return Ok(binary_event(position, e));
        }
    }
    decode_other(position, value, owned, keys)
}

/// `decode_at_key` for any envelope but a whole format-1 one (which it reports).
#[inline(never)]
fn decode_other<'a>(
    position: u64,
    value: &'a [u8],
    owned: &'a mut Owned,
    keys: &KeyRing,
) -> Result<EventRef<'a>> {
    let e = match envelope::decode(value).map_err(|e| e.damage_at(position))? {
        Envelope::Binary(e) if e.subject.is_some() => {
            sealed_event(position, value, e, owned, Some(keys))
                .map_err(|e| e.damage_at(position))?
        }
        Envelope::Binary(e) => binary_event(position, e),
        Envelope::Legacy(l) => legacy_event(position, l, &mut owned.legacy),
        Envelope::Lifecycle { op, .. } => return Err(entry_is_no_event(position, &op)),
    };
    Ok(e)
}

impl FileStore {
    /// The event of a record (its key and value) at `position`, a sealed one opened with
    /// the subjects' keys; damage is reported with the position.
    #[inline]
    pub(crate) fn event_of<'a>(
        &self,
        position: u64,
        key: &[u8],
        value: &'a [u8],
        owned: &'a mut Owned,
    ) -> Result<EventRef<'a>> {
        decode_event(position, key, value, owned, Some(&self.keys))
            .map_err(|e| e.damage_at(position))
    }
}

/// Decodes a record (its key and value) at `position`. A sealed event is opened with
/// `keys`; without them its payload and metadata are left empty (enough to index it).
pub(crate) fn decode_record<'a>(
    position: u64,
    key: &[u8],
    value: &'a [u8],
    owned: &'a mut Owned,
    keys: Option<&KeyRing>,
) -> Result<Decoded<'a>> {
    check_key(position, key, value)?;
    Ok(match envelope::decode(value)? {
        Envelope::Binary(e) if e.subject.is_some() => {
            Decoded::Event(sealed_event(position, value, e, owned, keys)?)
        }
        Envelope::Binary(e) => Decoded::Event(binary_event(position, e)),
        Envelope::Legacy(l) => Decoded::Event(legacy_event(position, l, &mut owned.legacy)),
        Envelope::Lifecycle {
            id,
            timestamp_us,
            op,
        } => Decoded::Entry(lifecycle::Entry {
            id,
            timestamp_us,
            op,
        }),
    })
}

/// The error for a read of a position that holds a lifecycle entry.
fn entry_is_no_event(position: u64, op: &crate::store::lifecycle::LifecycleOp) -> Error {
    Error::new(
        ErrorKind::NotFound,
        format!(
            "no event at position {position}: it holds a lifecycle entry ({})",
            op.describe()
        ),
    )
}

/// A record's key must be its position (legacy logs may have reused ids: the reference
/// program did; order wins there).
#[inline]
fn check_key(position: u64, key: &[u8], value: &[u8]) -> Result<()> {
    if key.len() == 8
        && u64::from_le_bytes(key.try_into().unwrap()) != position
        && value.first() != Some(&b'{')
    {
        return Err(Error::corrupt(format!(
            "the record at position {position} has the key of position {}",
            u64::from_le_bytes(key.try_into().unwrap())
        )));
    }
    Ok(())
}

#[inline(always)]
fn binary_event(position: u64, e: envelope::EnvelopeRef<'_>) -> EventRef<'_> {
    EventRef {
        position,
        timestamp_us: e.timestamp_us,
        stream: e.stream,
        stream_version: e.stream_version,
        event_type: e.event_type,
        schema_version: e.schema_version,
        metadata: e.metadata,
        payload: e.payload,
        id: e.id,
        subject: None,
        erased: false,
    }
}

/// What a read owns of the event it hands out: a legacy event decoded, or a sealed
/// event's opened bytes (and the associated data it was opened with).
#[derive(Default)]
pub(crate) struct Owned {
    legacy: Option<Event>,
    plain: Vec<u8>,
    aad: Vec<u8>,
}

impl Owned {
    /// Forgets the event it held (keeps the memory).
    pub(crate) fn reset(&mut self) {
        self.legacy = None;
        self.plain.clear();
    }

    /// Whether an event handed out since `reset` borrows this (a legacy or an opened
    /// sealed one): the next decode would overwrite it.
    pub(crate) fn holds(&self) -> bool {
        self.legacy.is_some() || !self.plain.is_empty()
    }
}

/// A sealed event (`value`, decoded as `e`), opened with its subject's key into `owned`;
/// erased when the subject is forgotten; payload and metadata empty without `keys`.
fn sealed_event<'a>(
    position: u64,
    value: &'a [u8],
    e: envelope::EnvelopeRef<'a>,
    owned: &'a mut Owned,
    keys: Option<&KeyRing>,
) -> Result<EventRef<'a>> {
    let subject = e.subject.expect("a sealed envelope names its subject");
    let (sealed, header) = (e.payload, &value[..e.sealed_at]);
    let mut ev = binary_event(position, e);
    ev.payload = &[];
    ev.subject = Some(subject);
    let Some(keys) = keys else {
        return Ok(ev);
    };
    let Owned { plain, aad, .. } = owned;
    subjects::bind(position, header, aad);
    if !keys.open_event(subject, position, aad, sealed, plain)? {
        ev.erased = true;
        return Ok(ev);
    }
    let plain: &'a Vec<u8> = plain;
    let (metadata, payload) = envelope::split_opened(plain)?;
    ev.metadata = metadata;
    ev.payload = payload;
    Ok(ev)
}

fn legacy_event(
    position: u64,
    l: envelope::LegacyEnvelope,
    legacy: &mut Option<Event>,
) -> EventRef<'_> {
    legacy
        .insert(Event {
            position,
            timestamp_us: l.timestamp.saturating_mul(1_000_000),
            stream: String::new(),
            stream_version: 0,
            event_type: l.event_type,
            schema_version: 1,
            metadata: Vec::new(),
            payload: l.payload,
            id: None,
            subject: None,
            erased: false,
        })
        .as_ref()
}

/// Whether the record at the start of `buf` is the record of `position` (its key; a
/// legacy record's key says nothing). Its CRC is checked by whoever decodes it.
pub(crate) fn holds(position: u64, buf: &[u8]) -> bool {
    match record::decode_verified(buf) {
        Ok(d) if d.record.value.first() == Some(&b'{') => true,
        Ok(d) => {
            !is_marker(&d.record)
                && <[u8; 8]>::try_from(d.record.key)
                    .map(u64::from_le_bytes)
                    .ok()
                    == Some(position)
        }
        Err(_) => false,
    }
}

/// The stored CRC of the record that fills `buf` (its last four bytes).
fn record_crc(buf: &[u8]) -> u32 {
    buf.len()
        .checked_sub(4)
        .map_or(0, |i| u32::from_le_bytes(buf[i..].try_into().unwrap()))
}

/// Refuses a WAL record with a compression evstore does not read.
pub(crate) fn check_plain(rec: &RecordRef<'_>, at: Position) -> Result<()> {
    if rec.compression != record::Compression::None {
        return Err(Error::corrupt(format!(
            "the record at segment {} offset {} is compressed ({:?}), which evstore does not read",
            at.segment_id, at.offset, rec.compression
        )));
    }
    Ok(())
}

/// Decodes the record that starts `buf` (read from `at` by `fetch_located`) as the
/// record at `position`.
pub(crate) fn decode_fetched<'a>(
    position: u64,
    at: Position,
    buf: &'a [u8],
    owned: &'a mut Owned,
    keys: Option<&KeyRing>,
) -> Result<Decoded<'a>> {
    // Damage is reported with the position (`evs_last_error_detail`).
    let d = record::decode(buf).map_err(|e| {
        Error::corrupt(format!(
            "the record of position {position} (segment {} offset {}): {}",
            at.segment_id,
            at.offset,
            e.describe()
        ))
        .at_position(position)
    })?;
    check_plain(&d.record, at).map_err(|e| e.damage_at(position))?;
    decode_record(position, d.record.key, d.record.value, owned, keys)
        .map_err(|e| e.damage_at(position))
}

/// A part of an append's stream as `check_expected_versions` found it.
#[derive(Debug, Clone, Copy)]
struct PartBefore {
    /// The stream's last version, after which the part's versions continue.
    current: Option<u64>,
    /// Its id in the index, when it was looked up there.
    sid: Option<u32>,
}

/// One event of an append, encoded: its record (8-byte key, then envelope) is
/// `scratch[start..end]`.
struct EncodedSpan<'s, 'e> {
    start: usize,
    end: usize,
    stream: &'s str,
    version: u64,
    /// Its stream's id as looked up before the append (`PartBefore`).
    sid: Option<u32>,
    input: &'e EventInput<'e>,
}

/// `v` emptied, as a vector of another lifetime with the same allocation (collecting an
/// emptied vector's iterator into one of the same layout reuses its memory): how the
/// writer keeps an append's vectors of borrowed parts between appends.
fn recycle<'a, 'b, T: Recyclable<'a, 'b>>(mut v: Vec<T>) -> Vec<T::Other> {
    v.clear();
    v.into_iter().map(|_| unreachable!("emptied")).collect()
}

/// A type with borrowed parts, the same type with other lifetimes (`recycle`).
trait Recyclable<'a, 'b> {
    type Other;
}

impl<'a, 'b> Recyclable<'a, 'b> for RecordRef<'a> {
    type Other = RecordRef<'b>;
}

impl<'s, 'e, 'b> Recyclable<'s, 'b> for EncodedSpan<'s, 'e> {
    type Other = EncodedSpan<'b, 'b>;
}

/// Whether two strings are equal, at once when they are the same one (the events of a
/// batch often share one type string).
fn same_text(a: &str, b: &str) -> bool {
    std::ptr::eq(a, b) || a == b
}

/// Each part's stream version after an append: one held inline (an append to one stream
/// allocates nothing for it), or a vector.
enum PartVersions {
    One(u64),
    Many(Vec<u64>),
}

impl PartVersions {
    fn with_parts(n: usize) -> PartVersions {
        match n {
            1 => PartVersions::One(0),
            _ => PartVersions::Many(Vec::with_capacity(n)),
        }
    }

    /// Sets the next part's version (the only one's, for `One`).
    fn push(&mut self, v: u64) {
        match self {
            PartVersions::One(one) => *one = v,
            PartVersions::Many(vs) => vs.push(v),
        }
    }

    /// The first part's version.
    fn first(&self) -> u64 {
        match self {
            PartVersions::One(one) => *one,
            PartVersions::Many(vs) => vs[0],
        }
    }

    fn into_vec(self) -> Vec<u64> {
        match self {
            PartVersions::One(one) => vec![one],
            PartVersions::Many(vs) => vs,
        }
    }
}

/// An append encoded into the writer's scratch buffer.
struct EncodedBatch<'s, 'e> {
    first: u64,
    timestamp: u64,
    spans: Vec<EncodedSpan<'s, 'e>>,
    /// Each part's stream version after the append.
    stream_versions: PartVersions,
}

/// Encodes keys and envelopes of an append's events into `scratch` (cleared first), from
/// position `first` on, each part after its stream's version `versions[i].current`.
fn encode_batch<'s, 'e>(
    appends: &'e [StreamAppend<'s>],
    versions: &[PartBefore],
    first: u64,
    timestamp: u64,
    mut spans: Vec<EncodedSpan<'s, 'e>>,
    keys: &[Option<Arc<DataKey>>],
    scratch: &mut Vec<u8>,
) -> Result<EncodedBatch<'s, 'e>> {
    scratch.clear();
    // The subjects' keys, one per event that names a subject, in order.
    let mut keys = keys.iter();
    let mut aad = Vec::new();
    let mut stream_versions = PartVersions::with_parts(appends.len());
    let mut position = first;
    for (a, before) in appends.iter().zip(versions) {
        let mut version = if a.stream.is_empty() {
            0
        } else {
            before.current.map_or(0, |v| v + 1)
        };
        for e in a.events {
            let start = scratch.len();
            scratch.extend_from_slice(&position.to_le_bytes());
            let sealed_at = EnvelopeRef {
                timestamp_us: timestamp,
                stream: a.stream,
                stream_version: version,
                event_type: e.event_type,
                schema_version: e.schema_version.max(1),
                metadata: e.metadata,
                payload: e.payload,
                id: e.id,
                subject: e.subject,
                sealed_at: 0,
            }
            .encode_into(scratch);
            if let Some(at) = sealed_at {
                // Bound in: the record's key (the position) and the envelope up to the nonce.
                aad.clear();
                aad.extend_from_slice(&scratch[start..at]);
                // (Every subject was checked appendable under the writer's lock: it has one.)
                let key = keys.next().and_then(Option::as_ref).ok_or_else(|| {
                    Error::new(ErrorKind::Internal, "no key for an event's subject")
                })?;
                key.seal(&aad, scratch, at)?;
            }
            spans.push(EncodedSpan {
                start,
                end: scratch.len(),
                stream: a.stream,
                version,
                sid: before.sid,
                input: e,
            });
            position += 1;
            version += 1;
        }
        stream_versions.push(version.saturating_sub(1));
    }
    Ok(EncodedBatch {
        first,
        timestamp,
        spans,
        stream_versions,
    })
}

/// Refuses an event replayed from a sealed segment other than the one its index file
/// files it in.
#[inline(always)]
fn check_filed(index: &Index, position: u64, pos: Position) -> Result<()> {
    match index.replayed_where_filed(position, pos) {
        true => Ok(()),
        false => Err(not_filed(position, pos)),
    }
}

#[cold]
fn not_filed(position: u64, pos: Position) -> Error {
    Error::corrupt(format!(
        "{} offset {}: the log has events its index files do not (position {position}); remove the index directory and reopen",
        crate::wal::segment::file_name(pos.segment_id),
        pos.offset
    ))
}

/// What replay takes each decoded event and entry into, besides the index: the event
/// types a run at a time, and the projections.
struct Taken<'p> {
    /// The type of the events replayed last and how many in a row: counted into the
    /// index when the type changes and at the end, one lookup a run.
    run_type: String,
    run_len: u64,
    /// Every projection but the id index, which is told of an event without an id only
    /// once before it is used otherwise (an event with an id, an entry) and at the end:
    /// its `apply` takes a lock for each (10% of a replay's time).
    others: Vec<&'p Arc<dyn Projection>>,
    projections: &'p [Arc<dyn Projection>],
    ids: &'p ids::IdIndex,
    /// The id index is one of the projections.
    ids_listed: bool,
    /// The last position of events without an id that the id index was not told of.
    ids_due: Option<u64>,
}

impl<'p> Taken<'p> {
    fn new(projections: &'p [Arc<dyn Projection>], ids: &'p ids::IdIndex) -> Self {
        let is_ids = |p: &&Arc<dyn Projection>| std::ptr::addr_eq(Arc::as_ptr(p), ids);
        Taken {
            run_type: String::new(),
            run_len: 0,
            others: projections.iter().filter(|p| !is_ids(p)).collect(),
            projections,
            ids,
            ids_listed: projections.iter().any(|p| is_ids(&p)),
            ids_due: None,
        }
    }

    /// The event `ev`, whose record is at `pos`.
    #[inline(always)]
    fn event(&mut self, index: &mut Index, pos: Position, ev: &EventRef<'_>) {
        index.push_uncounted(pos, ev.timestamp_us, ev.stream, ev.stream_version);
        if self.run_type != ev.event_type {
            if self.run_len > 0 {
                index.count_type(&self.run_type, self.run_len);
            }
            self.run_type.clear();
            self.run_type.push_str(ev.event_type);
            self.run_len = 0;
        }
        self.run_len += 1;
        self.others.iter().for_each(|pr| pr.apply(ev));
        match ev.id {
            Some(_) if self.ids_listed => {
                self.tell_ids();
                self.ids.apply(ev);
            }
            None if self.ids_listed => self.ids_due = Some(ev.position),
            _ => {}
        }
    }

    /// The lifecycle entry `e` at `position`, whose record is at `pos`.
    fn entry(&mut self, index: &mut Index, pos: Position, position: u64, e: &lifecycle::Entry) {
        self.tell_ids();
        lifecycle::apply_entry(index, self.projections, self.ids, pos, position, e)
    }

    /// Tells the id index of the events without an id it was not told of.
    fn tell_ids(&mut self) {
        if let Some(due) = self.ids_due.take() {
            self.ids.used_through(due);
        }
    }

    /// After the last record: the type counts and the id index are complete.
    fn finish(mut self, index: &mut Index) {
        self.tell_ids();
        if self.run_len > 0 {
            index.count_type(&self.run_type, self.run_len);
        }
    }
}

impl FileStore {
    /// Opens (creating if needed) the store in `dir`. `projections` are rebuilt from the
    /// newest valid snapshot plus the log's tail, and kept up to date from then on.
    pub fn open(
        dir: impl AsRef<Path>,
        options: StoreOptions,
        projections: Vec<Arc<dyn Projection>>,
    ) -> Result<(FileStore, OpenReport)> {
        let started = Instant::now();
        let ids = Arc::new(ids::IdIndex::new(options.dedupe_window));
        let consumers = Arc::new(crate::store::consumer::ConsumerTable::new());
        let mut projections = projections;
        projections.push(ids.clone());
        projections.push(consumers.clone());
        let dir = dir.as_ref().to_path_buf();
        let vfs = options.vfs.clone();
        backup::refuse_incomplete(&*vfs, &dir)?;
        let lock = Self::take_directory(&dir, &options)?;
        let config = Self::wal_config(&dir, &options)?;
        let source = options.keys.source(|| {
            let file = keys::KeyFile::open(vfs.clone(), &dir, !options.read_only)?;
            Ok(Box::new(file))
        })?;
        let keys = Arc::new(KeyRing::new(source));
        projections.push(keys.clone());

        let mut report = OpenReport::default();
        // A read-only store reads the index files and the log as of one instant: the
        // writer's compaction cannot replace a segment meanwhile (tests/followers.rs's
        // compacting writer: "the index file of 000000.wal disagrees with the recovered
        // log" at a follower's open, once).
        let log_held = match options.read_only {
            true => backup::hold_log_for_open(&*vfs, &dir),
            false => None,
        };
        let files = Arc::new(SegmentFiles::new(vfs.clone(), &dir, !options.read_only));
        if !options.read_only {
            files.remove_leftovers();
            compact::remove_leftovers(&*vfs, &dir.join("events"));
        }
        let mut sealed = files.load(&mut report.index_files_rebuilt);
        Self::index_unsealed(&files, &config, &mut sealed, &mut report);
        let sealed_end = sealed.last().map_or(0, |s| s.end());
        let (mut index, start) =
            Self::load_snapshot(&dir, &config, &projections, &mut report, sealed_end);
        index.set_sealed(sealed, files.clone());
        let (wal, info, replayed) = Self::replay(config, start, &mut index, &projections, &ids)?;
        keys.settle(options.read_only)?;
        Self::check_sealed_against_log(&wal, &index, &files)?;
        drop(log_held);
        {
            let (vfs, log_dir) = (vfs.clone(), dir.join("events"));
            files.set_rebuild(Box::new(move |s: &Sealed| {
                let limit = Some(s.segment_len);
                index_segment(
                    &*vfs,
                    &log_dir,
                    s.segment_id,
                    s.first,
                    s.first_ts,
                    limit,
                    None,
                )
            }));
        }
        report.wal = info;
        report.events_replayed = replayed;
        report.next_position = index.len();
        report.open_time = started.elapsed();
        let committed = index.len();
        let last_timestamp = index.last_timestamp();
        // Readers pass over entries once one exists: removals, consumers' records, forgets.
        let removing =
            !index.life.is_empty() || !consumers.all().is_empty() || keys.any_forgotten();
        let removals = !index.life.is_empty();
        let follow = match options.read_only {
            true => Some(follow::Follow::new(&wal, index.last_wal(), index.len())?),
            false => None,
        };
        let store = FileStore {
            dir,
            clock: super::lifecycle::HandleClock::new(options.clock.clone()),
            wal,
            lock: Mutex::new(lock),
            writer: Mutex::new(Writer {
                next_position: committed,
                last_timestamp,
                pending: Vec::new(),
                pending_streams: HashMap::new(),
                pending_entries: 0,
                scratch: Vec::new(),
                versions: Vec::new(),
                spans: Vec::new(),
                records: Vec::new(),
                positions: Vec::new(),
                follow,
                epoch: 0,
            }),
            index: RwLock::new(index),
            committed: AtomicU64::new(committed),
            committed_lock: Mutex::new(()),
            committed_cv: Condvar::new(),
            waiters: AtomicUsize::new(0),
            projections,
            snapshotting: AtomicBool::new(false),
            snapshot_lock: Mutex::new(()),
            last_snapshot: AtomicU64::new(report.snapshot_position.unwrap_or(0)),
            snapshots: AtomicU64::new(0),
            open_time: report.open_time,
            closed: AtomicBool::new(false),
            closing: AtomicBool::new(false),
            owner_pid: crate::wal::process::id(),
            options,
            ids,
            files,
            seal_lock: Mutex::new(()),
            seal_failed: AtomicU64::new(0),
            take_up_failing: Mutex::new(None),
            removing: AtomicBool::new(removing),
            removals: AtomicBool::new(removals),
            consumers,
            keys,
            compact_lock: Mutex::new(()),
            compactor: Mutex::new(None),
            compactor_wake: Arc::default(),
            archived: AtomicU64::new(0),
        };
        // Segments sealed before this open are not reported again.
        store
            .archived
            .store(store.wal.current_position().segment_id, Ordering::Release);
        // Segments replayed into memory that are complete get their index files now.
        store.maybe_seal();
        Ok((store, report))
    }

    /// Checks that `dir` is a store directory (or may become one); a writable open
    /// creates it durably and takes the process lock.
    fn take_directory(dir: &Path, options: &StoreOptions) -> Result<Option<StoreLock>> {
        let vfs = &*options.vfs;
        match vfs.stat(dir) {
            Ok(st) if st.kind != Kind::Dir => {
                return Err(Error::new(
                    ErrorKind::Io,
                    format!("{} exists and is not a directory", dir.display()),
                ))
            }
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(Error::io(format!("reading {}", dir.display()), e)),
        }
        if options.read_only {
            if !matches!(vfs.stat(dir), Ok(st) if st.kind == Kind::Dir) {
                return Err(Error::new(
                    ErrorKind::NotFound,
                    format!("no store at {}", dir.display()),
                ));
            }
            return Ok(None);
        }
        // Durable before anything is put in it: a store that exists after open still
        // exists after a power cut.
        vfs::create_dir_durable(vfs, dir)
            .map_err(|e| Error::io(format!("creating {}", dir.display()), e))?;
        let lock = StoreLock::acquire(vfs, dir)?;
        snapshot::remove_leftovers(vfs, &dir.join("snapshots"));
        Ok(Some(lock))
    }

    /// The log's configuration from the store's options; a read-only open needs the log.
    fn wal_config(dir: &Path, options: &StoreOptions) -> Result<WalConfig> {
        let mut config = WalConfig::new(dir.join("events"));
        config.fsync_policy = options.fsync;
        config.max_segment_size = options.max_segment_size;
        config.preallocate = options.preallocate;
        config.read_only = options.read_only;
        config.vfs = options.vfs.clone();
        if options.read_only
            && !matches!(options.vfs.stat(&config.dir), Ok(st) if st.kind == Kind::Dir)
        {
            return Err(Error::new(
                ErrorKind::NotFound,
                format!("no event log at {}", config.dir.display()),
            ));
        }
        Ok(config)
    }

    /// Opens the log from `start` (after what a snapshot covers), indexing and projecting
    /// every event of its tail; returns the log, its recovery report and the events
    /// replayed. Recovery hands over only the records of complete batches (it holds back
    /// a batch until its last record is seen), so each event counts at once. File names
    /// are formatted only for an error.
    fn replay(
        config: WalConfig,
        start: Position,
        index: &mut Index,
        projections: &[Arc<dyn Projection>],
        ids: &ids::IdIndex,
    ) -> Result<(Wal, crate::wal::RecoveryInfo, u64)> {
        let mut replayed = 0u64;
        // The key (position) of the first record replayed: damage right there is judged
        // with it, in time linear in the damage.
        let start_key = index.len();
        let mut taken = Taken::new(projections, ids);
        let mut visit = |pos: Position, rec: &RecordRef<'_>| -> Result<()> {
            check_plain(rec, pos)?;
            let mut owned = Owned::default();
            let file = || crate::wal::segment::file_name(pos.segment_id);
            // Positions a compaction emptied: keys skipped (from segment 0 on, whose
            // first events may be erased) and marker records.
            if !index.is_empty() || pos.segment_id == 0 {
                if let Ok(k) = <[u8; 8]>::try_from(rec.key) {
                    let k = u64::from_le_bytes(k);
                    let upto = if is_marker(rec) { k + 1 } else { k };
                    if rec.value.first() != Some(&b'{') && upto > index.len() {
                        if upto - index.len() > 1 << 32 {
                            return Err(Error::corrupt(format!(
                                "{} offset {}: the record has the key of position {k}, far past position {}",
                                file(),
                                pos.offset,
                                index.len()
                            )));
                        }
                        while index.len() < upto {
                            index.push_gap(pos.segment_id);
                        }
                    }
                }
            }
            if is_marker(rec) {
                return Ok(());
            }
            let position = index.len();
            if position == 0
                && pos.segment_id != 0
                && rec.key.len() == 8
                && rec.key != [0u8; 8]
                && rec.value.first() != Some(&b'{')
            {
                let k = u64::from_le_bytes(rec.key.try_into().unwrap());
                return Err(Error::corrupt(match pos.segment_id {
                    0 => format!("{} starts at position {k} instead of 0", file()),
                    s => format!(
                        "{} starts at position {k}: segments {} to {} are missing",
                        file(),
                        crate::wal::segment::file_name(0),
                        crate::wal::segment::file_name(s - 1)
                    ),
                }));
            }
            let damaged = |e: Error| {
                e.damage_at(position)
                    .prefixed(format!("{} offset {}: ", file(), pos.offset))
            };
            // The usual envelope (format 1) decoded in one pass and taken in where it was
            // decoded: moved on as a value, the event cost store-forwarding stalls.
            if rec.value.first() == Some(&envelope::FORMAT_BINARY_V1) {
                if let Some(e) = envelope::decode_binary_fast(rec.value, 1, None) {
                    check_key(position, rec.key, rec.value).map_err(damaged)?;
                    replayed += 1;
                    check_filed(index, position, pos)?;
                    taken.event(index, pos, &binary_event(position, e));
                    return Ok(());
                }
            }
            // Anything else, and a format-1 envelope that does not decode (for the
            // message of what is wrong in it).
            let decoded =
                decode_record(position, rec.key, rec.value, &mut owned, None).map_err(damaged)?;
            replayed += 1;
            check_filed(index, position, pos)?;
            match decoded {
                Decoded::Event(ev) => taken.event(index, pos, &ev),
                Decoded::Entry(e) => taken.entry(index, pos, position, &e),
            }
            Ok(())
        };
        let (wal, info) = Wal::open_from(config, start, Some(start_key), &mut visit)?;
        taken.finish(index);
        Ok((wal, info, replayed))
    }

    /// After recovery: the segments a snapshot let it skip must still be there, and every
    /// index file must describe a sealed segment as long as it says (recovery changes only
    /// the last segment, which is never sealed).
    fn check_sealed_against_log(wal: &Wal, index: &Index, files: &SegmentFiles) -> Result<()> {
        // The log starts in segment 0 for good: a compaction rewrites segments and never
        // removes one (a segment whose events all left keeps a marker record), so a log
        // with events that lacks it lost it.
        if !index.is_empty() && wal.first_segment_id() != 0 {
            return Err(Error::corrupt(format!(
                "segment {} is missing from the log (it holds position 0; the first segment found is {})",
                crate::wal::segment::file_name(0),
                crate::wal::segment::file_name(wal.first_segment_id())
            )));
        }
        if let Some(first) = index.first_segment() {
            if wal.first_segment_id() > first {
                return Err(Error::corrupt(format!(
                    "segment {} is missing from the log (it holds position 0)",
                    crate::wal::segment::file_name(first)
                )));
            }
        }
        let active = wal.current_position().segment_id;
        // A read-only store's log ends at its writer's durable mark, which may be the end
        // of a sealed segment (a compaction seals the active segment): that segment is
        // then its active one, whole.
        let read_only = wal.config().read_only;
        for s in &index.sealed {
            if s.segment_id > active
                || (s.segment_id == active && !read_only)
                || wal
                    .segment_end(s.segment_id)
                    .is_none_or(|end| end < s.segment_len)
            {
                return Err(Error::corrupt(format!(
                    "the index file of {} disagrees with the recovered log; remove {} and reopen",
                    crate::wal::segment::file_name(s.segment_id),
                    files.dir().display()
                )));
            }
        }
        Ok(())
    }

    /// Builds the indexes of the log's complete segments after those that have a file
    /// (the last segment stays in memory), as far as they can be built: written to their
    /// files when the store is writable, kept in memory when it is read-only (or the
    /// write fails).
    fn index_unsealed(
        files: &SegmentFiles,
        config: &WalConfig,
        sealed: &mut Vec<Sealed>,
        report: &mut OpenReport,
    ) {
        let vfs = &*config.vfs;
        let Ok(ids) = crate::wal::segment::list(vfs, &config.dir) else {
            return;
        };
        let after = sealed.last().map(|s| s.segment_id);
        for (i, &id) in ids.iter().enumerate().take(ids.len().saturating_sub(1)) {
            if after.is_some_and(|a| id <= a) {
                continue;
            }
            let next = ids.get(i + 1).copied();
            let path = crate::wal::segment::path(&config.dir, id);
            if matches!(vfs.stat(&path), Ok(st) if st.len == 0) {
                continue;
            }
            let first = sealed.last().map_or(0, |s| s.end());
            let floor = sealed.last().map_or(0, |s| s.last_ts);
            let built = index_segment(vfs, &config.dir, id, first, floor, None, next);
            let built = built.and_then(|(s, bytes)| {
                if config.read_only || files.write(id, &bytes).is_err() {
                    files.keep_in_memory(&s, &bytes)?;
                }
                Ok(s)
            });
            match built {
                Ok(s) => sealed.push(s),
                Err(e) => {
                    report.index_files_rebuilt.push(format!(
                        "{}: not indexed: {}",
                        path.display(),
                        e.message
                    ));
                    break;
                }
            }
        }
    }

    /// The newest snapshot that checks out against the log, loaded into the projections;
    /// or an empty index (and projections reset) to rebuild from the start.
    fn load_snapshot(
        dir: &Path,
        config: &WalConfig,
        projections: &[Arc<dyn Projection>],
        report: &mut OpenReport,
        sealed_end: u64,
    ) -> (Index, Position) {
        let vfs = &*config.vfs;
        for (n, path) in snapshot::list(vfs, &dir.join("snapshots")) {
            let name = path.display();
            let checked = vfs::read_file(vfs, &path)
                .map_err(|e| Error::io(format!("reading {name}"), e))
                .and_then(|bytes| snapshot::decode(&bytes))
                .and_then(|snap| {
                    if snap.index.len() != n {
                        return Err(Error::corrupt("its name and contents disagree"));
                    }
                    if snap.index.base > sealed_end {
                        return Err(Error::new(
                            ErrorKind::NotFound,
                            format!(
                                "the index files of its events before position {} are missing or damaged",
                                snap.index.base
                            ),
                        ));
                    }
                    Self::check_snapshot_against_log(config, &snap)?;
                    for p in projections {
                        p.reset();
                        match snap.projections.get(p.name()) {
                            Some(bytes) => p.restore(bytes)?,
                            None => {
                                return Err(Error::corrupt(format!(
                                    "it lacks projection {}",
                                    p.name()
                                )))
                            }
                        }
                    }
                    Ok(snap)
                });
            match checked {
                Ok(snap) => {
                    report.snapshot_position = Some(n);
                    return (snap.index, snap.wal_end);
                }
                Err(e) => {
                    report
                        .snapshot_ignored
                        .push(format!("{name}: {}", e.message));
                    // A snapshot that does not fit the log never will; keep it from
                    // matching a log that later regrows to the same length.
                    if !config.read_only && e.kind == ErrorKind::Corrupt {
                        let _ = vfs.remove_file(&path);
                    }
                }
            }
        }
        projections.iter().for_each(|p| p.reset());
        (Index::default(), Position::default())
    }

    /// A snapshot may be used only if the log still has the last event it covers, where
    /// it says, ending where it says.
    fn check_snapshot_against_log(config: &WalConfig, snap: &snapshot::Snapshot) -> Result<()> {
        let n = snap.index.len();
        let Some(last) = snap.index.last_wal() else {
            return Ok(());
        };
        let path = crate::wal::segment::path(&config.dir, last.segment_id);
        let file = config
            .vfs
            .open(&path, OpenMode::Read)
            .map_err(|_| Error::corrupt(format!("the log has no segment {}", path.display())))?;
        let len = (snap.wal_end.offset.saturating_sub(last.offset)) as usize;
        if snap.wal_end.segment_id != last.segment_id || len == 0 || len as u64 > MAX_RECORD_LEN {
            return Err(Error::corrupt("its end position is inconsistent"));
        }
        let mut buf = vec![0u8; len];
        let got = vfs::read_at_most(&*file, &mut buf, last.offset)
            .map_err(|e| Error::io(format!("reading {}", path.display()), e))?;
        let ahead = || Error::corrupt(format!("it covers {n} events but the log has fewer"));
        if got < len {
            return Err(ahead());
        }
        match record::decode(&buf) {
            Ok(d) if d.len == len && record_crc(&buf) == snap.last_record_crc => Ok(()),
            Ok(d) if d.len == len => Err(Error::corrupt(format!(
                "the log's record at position {} is not the one it covered",
                n - 1
            ))),
            _ => Err(ahead()),
        }
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    pub fn options(&self) -> &StoreOptions {
        &self.options
    }

    fn lock_writer(&self) -> MutexGuard<'_, Writer> {
        self.writer.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Refuses calls from a process other than the one that opened the store: a forked
    /// child shares the parent's files and lock but not its threads, buffers or indexes,
    /// so anything it wrote would overwrite the parent's events.
    pub fn check_owner(&self) -> Result<()> {
        let me = crate::wal::process::id();
        if me != self.owner_pid {
            return Err(Error::invalid(format!(
                "store {} was opened by process {}, used from process {me}; a child process must open stores of its own",
                self.dir.display(),
                self.owner_pid
            )));
        }
        Ok(())
    }

    fn check_writable(&self) -> Result<()> {
        self.check_owner()?;
        super::check_open_for_writes(
            self.options.read_only,
            self.closed.load(Ordering::Acquire),
            &self.dir.display(),
        )
    }

    /// Appends an event with no stream (the reference program's `append_event`).
    pub fn append_event(&self, event_type: &str, payload: &[u8]) -> Result<u64> {
        let input = [EventInput::new(event_type, payload)];
        let a = [StreamAppend {
            stream: "",
            expected: ExpectedVersion::Any,
            events: &input,
        }];
        Ok(self.append_parts(&a, true, None)?.0)
    }

    /// Appends to several streams at once: all of it or nothing, on disk as in memory.
    pub fn append_multi(&self, appends: &[StreamAppend<'_>]) -> Result<AppendResult> {
        self.append_multi_inner(appends, false, None)
    }

    /// Appends to one stream: its first position and the stream's version after it.
    pub fn append_one(&self, part: &StreamAppend<'_>) -> Result<(u64, u64)> {
        let (first, versions) = self.append_parts(std::slice::from_ref(part), false, None)?;
        Ok((first, versions.first()))
    }

    /// `append_parts` with its result as an `AppendResult`.
    fn append_multi_inner(
        &self,
        appends: &[StreamAppend<'_>],
        allow_empty: bool,
        ack: Option<&crate::store::consumer::ConsumerOp>,
    ) -> Result<AppendResult> {
        let (first, versions) = self.append_parts(appends, allow_empty, ack)?;
        Ok(AppendResult {
            first_position: first,
            stream_versions: versions.into_vec(),
        })
    }

    /// The stream's current version as the writer sees it (pending events included):
    /// `None` when it does not exist.
    fn writer_version(&self, w: &Writer, index: &Index, stream: &str) -> Option<u64> {
        self.writer_version_id(w, index, stream).0
    }

    /// `writer_version`, and the stream's id in `index` if it is there.
    fn writer_version_id(
        &self,
        w: &Writer,
        index: &Index,
        stream: &str,
    ) -> (Option<u64>, Option<u32>) {
        let sid = index.stream_id(stream);
        let indexed = sid.map_or(0, |id| index.stream_count(id));
        // (No hashing of the name while nothing is pending: always so but under `Always`.)
        let pending = match w.pending_streams.is_empty() {
            true => 0,
            false => w.pending_streams.get(stream).copied().unwrap_or(0),
        };
        ((indexed + pending).checked_sub(1), sid)
    }

    /// Appends `appends`, and with `ack` a consumer's checkpoint as the last record of
    /// the same batch (docs/consumers.md: the atomic step). Returns the first position
    /// and each part's stream version after it.
    fn append_parts(
        &self,
        appends: &[StreamAppend<'_>],
        allow_empty: bool,
        ack: Option<&crate::store::consumer::ConsumerOp>,
    ) -> Result<(u64, PartVersions)> {
        self.check_writable()?;
        let count = super::validate_append(appends, allow_empty, self.options.max_event_size)?;
        // What of the optional parts any event has: an append with no ids and no
        // subjects (nearly all) looks none up.
        let (mut has_ids, mut names_subject) = (false, false);
        for e in appends.iter().flat_map(|a| a.events) {
            has_ids |= e.id.is_some();
            names_subject |= e.subject.is_some();
        }
        // Subjects' keys are made (durably) before the writer's lock is taken.
        let keys = match names_subject {
            true => self.subject_keys(appends)?,
            false => Vec::new(),
        };
        let always = self.options.fsync == FsyncPolicy::Always;
        let mut w = self.lock_writer();
        if always {
            self.catch_up_epoch(&mut w);
        }
        // A poisoned log refuses before anything is checked or encoded.
        self.wal.health()?;
        // A retry of an append that was stored already: its events, not new ones.
        if has_ids {
            if let Some(done) = self.find_retry(&w, appends)? {
                return Ok((
                    done.first_position,
                    PartVersions::Many(done.stream_versions),
                ));
            }
        }
        let mut versions = std::mem::take(&mut w.versions);
        self.check_expected_versions(&w, appends, &mut versions)?;
        if !keys.is_empty() {
            self.check_subjects(appends)?;
        }
        let timestamp = self.now().max(w.last_timestamp);
        let first = w.next_position;
        let mut scratch = std::mem::take(&mut w.scratch);
        let spans = recycle(std::mem::take(&mut w.spans));
        let batch = match encode_batch(
            appends,
            &versions,
            first,
            timestamp,
            spans,
            &keys,
            &mut scratch,
        ) {
            Ok(b) => b,
            Err(e) => {
                w.scratch = scratch;
                w.versions = versions;
                return Err(e);
            }
        };
        // The checkpoint after the events: its record starts at `start` in `scratch`.
        let entry = ack.map(|op| {
            let position = first + count as u64;
            let start = scratch.len();
            scratch.extend_from_slice(&position.to_le_bytes());
            let op = consumers::settle(op, position);
            envelope::encode_lifecycle(&mut scratch, None, timestamp, &op);
            let entry = lifecycle::Entry {
                id: None,
                timestamp_us: timestamp,
                op,
            };
            (start, entry)
        });
        let total = count + usize::from(entry.is_some());
        // Under `Always` the records wait in the log's buffer for a group commit; under
        // the other policies they are with the OS before the append is acknowledged (it
        // survives a crash of this process), and a failed write leaves nothing of them.
        let mut records = recycle(std::mem::take(&mut w.records));
        let appended = {
            records.reserve(batch.spans.len() + 1);
            for sp in &batch.spans {
                let (key, value) = scratch[sp.start..sp.end].split_at(8);
                records.push(RecordRef::put(key, value));
            }
            if let Some((start, _)) = &entry {
                records.push(RecordRef::put(
                    &scratch[*start..*start + 8],
                    &scratch[*start + 8..],
                ));
            }
            let positions = std::mem::take(&mut w.positions);
            if always {
                // Numbered from this writer's epoch: if a failed write took back records
                // meanwhile, the log refuses these rather than leave a gap.
                self.wal
                    .append_in_epoch_reusing(&records, w.epoch, positions)
            } else {
                self.wal.append_written_reusing(&records, positions)
            }
        };
        w.records = recycle(records);
        let appended = match appended {
            Ok(a) => a,
            Err(e) => {
                w.scratch = scratch;
                return Err(e);
            }
        };
        w.next_position = first + total as u64;
        w.last_timestamp = timestamp;
        let entry = entry.map(|(_, e)| (appended.positions[count], e));
        if always {
            self.queue_until_durable(&mut w, &batch, &appended);
            if let (Some(e), Some(p)) = (entry, w.pending.last_mut()) {
                p.entry = Some(e);
                w.pending_entries += 1;
            }
            w.scratch = scratch;
            versions.clear();
            w.versions = versions;
            w.spans = recycle(batch.spans);
            drop(w);
            let durable = self.wal.wait_durable(&appended);
            let mut w = self.lock_writer();
            w.positions = appended.positions;
            self.catch_up_epoch(&mut w);
            durable?;
            self.commit_durable(&mut w);
        } else {
            self.commit_written(&batch, &appended.positions, entry);
            w.positions = appended.positions;
            w.scratch = scratch;
            versions.clear();
            w.versions = versions;
            w.spans = recycle(batch.spans);
            self.publish(first + total as u64);
            drop(w);
        }
        self.maybe_seal();
        self.maybe_snapshot();
        Ok((first, batch.stream_versions))
    }

    /// Checks every expected version of an append before anything is written (nothing is
    /// unless all hold); returns each part's stream version before it.
    fn check_expected_versions(
        &self,
        w: &Writer,
        appends: &[StreamAppend<'_>],
        versions: &mut Vec<PartBefore>,
    ) -> Result<()> {
        let index = self.index.read().unwrap_or_else(|e| e.into_inner());
        let removing = !index.life.is_empty();
        // Streams named earlier in this append, with their version after it: a short
        // list (appends name one or two streams), so no map is built per append.
        let mut seen: Vec<(&str, Option<u64>)> = Vec::new();
        for (part, a) in appends.iter().enumerate() {
            // `current`: the stream's last version, after which its versions continue;
            // `exists`: the version its expected version is checked against (none for a
            // stream soft-deleted and not appended to since, docs/lifecycle.md).
            let (current, exists, sid) = match seen.iter().find(|s| s.0 == a.stream) {
                Some(&(_, v)) => (v, v, None),
                None if a.stream.is_empty() => (None, None, None),
                // Deletes are looked at only once any lifecycle entry exists or waits.
                None if removing || w.pending_entries > 0 => {
                    let view = self.writer_view(w, &index, a.stream);
                    if view.tombstone {
                        return Err(stream_deleted(a.stream).in_part(part));
                    }
                    (view.last_version, view.version(), None)
                }
                None => {
                    let (v, sid) = self.writer_version_id(w, &index, a.stream);
                    (v, v, sid)
                }
            };
            if !a.expected.holds(exists) {
                return Err(super::wrong_expected_version(part, a, exists));
            }
            versions.push(PartBefore { current, sid });
            // (An append to one stream has no later part to look it up.)
            if !a.stream.is_empty() && appends.len() > 1 {
                let last = current.map_or(a.events.len() as u64 - 1, |v| v + a.events.len() as u64);
                match seen.iter_mut().find(|s| s.0 == a.stream) {
                    Some(s) => s.1 = Some(last),
                    None => seen.push((a.stream, Some(last))),
                }
            }
        }
        Ok(())
    }

    /// Not `Always`: the written events count at once (indexed, projected, counted), and
    /// the consumer's checkpoint after them (the atomic step) with them.
    fn commit_written(
        &self,
        batch: &EncodedBatch<'_, '_>,
        at: &[Position],
        entry: Option<(Position, lifecycle::Entry)>,
    ) {
        let mut index = self.index.write().unwrap_or_else(|e| e.into_inner());
        // The stream of the event before and its id: a part's events share them.
        let mut part: Option<(&str, u32)> = None;
        // A run of events of one type, counted with one lookup.
        let mut run: Option<(&str, u64)> = None;
        for (i, sp) in batch.spans.iter().enumerate() {
            let e = sp.input;
            // Projections never see a subject's personal data (`Projection`).
            let personal = e.subject.is_some();
            let ev = EventRef {
                position: batch.first + i as u64,
                timestamp_us: batch.timestamp,
                stream: sp.stream,
                stream_version: sp.version,
                event_type: e.event_type,
                schema_version: e.schema_version.max(1),
                metadata: if personal { &[] } else { e.metadata },
                payload: if personal { &[] } else { e.payload },
                id: e.id,
                subject: e.subject,
                erased: false,
            };
            let known = match part {
                Some((stream, id)) if std::ptr::eq(stream, sp.stream) => Some(id),
                // Looked up before this lock was taken: taken if it is still the stream's.
                _ => sp.sid.filter(|&id| index.is_stream_id(id, sp.stream)),
            };
            let id = index.push_uncounted_as(at[i], batch.timestamp, sp.stream, sp.version, known);
            part = Some((sp.stream, id));
            match &mut run {
                Some((t, n)) if same_text(t, e.event_type) => *n += 1,
                _ => {
                    if let Some((t, n)) = run.replace((e.event_type, 1)) {
                        index.count_type(t, n);
                    }
                }
            }
            self.projections.iter().for_each(|p| p.apply(&ev));
        }
        if let Some((t, n)) = run {
            index.count_type(t, n);
        }
        if let Some((wal, e)) = entry {
            let position = index.len();
            lifecycle::apply_entry(&mut index, &self.projections, &self.ids, wal, position, &e);
            self.entry_counts(&index);
        }
        // Counted before the index is let go: whoever sees the event in the index
        // (evs_position_at) must find it counted too (evs_read_all).
        self.committed.store(index.len(), Ordering::Release);
    }

    /// Under `Always`: the written events wait, owned, until their group's fdatasync.
    fn queue_until_durable(
        &self,
        w: &mut Writer,
        batch: &EncodedBatch<'_, '_>,
        appended: &Appended,
    ) {
        let events = batch
            .spans
            .iter()
            .enumerate()
            .map(|(i, sp)| {
                let e = sp.input;
                // Projections never see a subject's personal data (`Projection`).
                let personal = e.subject.is_some();
                let ev = Event {
                    position: batch.first + i as u64,
                    timestamp_us: batch.timestamp,
                    stream: sp.stream.to_owned(),
                    stream_version: sp.version,
                    event_type: e.event_type.to_owned(),
                    schema_version: e.schema_version.max(1),
                    metadata: if personal {
                        Vec::new()
                    } else {
                        e.metadata.to_vec()
                    },
                    payload: if personal {
                        Vec::new()
                    } else {
                        e.payload.to_vec()
                    },
                    id: e.id,
                    subject: e.subject.map(str::to_owned),
                    erased: false,
                };
                (appended.positions[i], ev)
            })
            .collect();
        for sp in batch.spans.iter().filter(|sp| !sp.stream.is_empty()) {
            *w.pending_streams.entry(sp.stream.to_owned()).or_default() += 1;
        }
        w.pending.push(Pending {
            lsn: appended.lsn,
            events,
            entry: None,
        });
    }

    /// Under `Always`: moves every pending batch that is now durable into the indexes.
    fn commit_durable(&self, w: &mut Writer) {
        let (_, durable) = self.wal.lsns();
        let ready = w.pending.iter().take_while(|p| p.lsn <= durable).count();
        if ready == 0 {
            return;
        }
        let mut index = self.index.write().unwrap_or_else(|e| e.into_inner());
        for p in w.pending.drain(..ready) {
            for (pos, ev) in &p.events {
                index.push(
                    *pos,
                    ev.timestamp_us,
                    &ev.stream,
                    ev.stream_version,
                    &ev.event_type,
                );
                self.projections
                    .iter()
                    .for_each(|pr| pr.apply(&ev.as_ref()));
                if !ev.stream.is_empty() {
                    if let Some(c) = w.pending_streams.get_mut(&ev.stream) {
                        *c -= 1;
                        if *c == 0 {
                            w.pending_streams.remove(&ev.stream);
                        }
                    }
                }
            }
            // An entry after the events of its batch (alone, or an atomic step's
            // checkpoint).
            if let Some((at, entry)) = &p.entry {
                let position = index.len();
                lifecycle::apply_entry(
                    &mut index,
                    &self.projections,
                    &self.ids,
                    *at,
                    position,
                    entry,
                );
                self.entry_counts(&index);
                w.pending_entries -= 1;
            }
        }
        let n = index.len();
        self.committed.store(n, Ordering::Release);
        drop(index);
        self.publish(n);
    }

    /// Under `Always`, after a failed write took back every record the log had not made
    /// durable: keeps the pending batches that made it, forgets the rest (their appenders
    /// are told), and continues positions after the last durable event. Runs before any
    /// append of the new epoch, so no position is handed out twice or skipped.
    fn catch_up_epoch(&self, w: &mut Writer) {
        let epoch = self.wal.epoch();
        if epoch == w.epoch {
            return;
        }
        self.commit_durable(w);
        w.pending.clear();
        w.pending_streams.clear();
        w.pending_entries = 0;
        let index = self.index.read().unwrap_or_else(|e| e.into_inner());
        w.next_position = index.len();
        w.last_timestamp = w.last_timestamp.max(index.last_timestamp());
        drop(index);
        w.epoch = epoch;
    }

    /// Tells waiters (subscriptions, tailing cursors) that events were committed.
    ///
    /// Lost wake-ups are ruled out by one total order (SeqCst) over `committed` and
    /// `waiters`: a waiter counts itself before it reads `committed`, this stores
    /// `committed` before it reads `waiters`; so either the waiter reads the new count,
    /// or this sees the waiter and notifies under the lock, which the waiter holds until
    /// it sleeps.
    fn publish(&self, committed: u64) {
        self.committed.store(committed, Ordering::SeqCst);
        if self.waiters.load(Ordering::SeqCst) == 0 {
            return;
        }
        let _g = self
            .committed_lock
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        self.committed_cv.notify_all();
    }

    /// Waits until more than `seen` events exist or `timeout` passes; returns the count.
    pub fn wait_for_events(&self, seen: u64, timeout: Duration) -> u64 {
        if self.options.read_only {
            let _ = self.refresh();
        }
        let g = self
            .committed_lock
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        self.waiters.fetch_add(1, Ordering::SeqCst);
        let n = self.committed.load(Ordering::SeqCst);
        if n <= seen && !self.closed.load(Ordering::Acquire) {
            let _ = self.committed_cv.wait_timeout(g, timeout);
        }
        self.waiters.fetch_sub(1, Ordering::SeqCst);
        self.committed.load(Ordering::Acquire)
    }

    /// Wakes everyone in `wait_for_events` (used when closing).
    pub fn wake_waiters(&self) {
        let _g = self
            .committed_lock
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        self.committed_cv.notify_all();
    }

    /// The events counted so far, without looking for a writer's new ones.
    pub(crate) fn committed(&self) -> u64 {
        self.committed.load(Ordering::Acquire)
    }

    /// The number of events, which is also the position the next one gets. A read-only
    /// store looks for its writer's new events first (and fails if it cannot follow it).
    pub fn next_position(&self) -> Result<u64> {
        if self.options.read_only && self.check_owner().is_ok() {
            self.refresh()?;
        }
        Ok(self.committed.load(Ordering::Acquire))
    }

    /// The stream's current version (`None`: no such stream).
    pub fn stream_version(&self, stream: &str) -> Result<Option<u64>> {
        self.check_owner()?;
        check_name("stream name", stream, false)?;
        if self.options.read_only {
            self.refresh()?;
        }
        let index = self.index.read().unwrap_or_else(|e| e.into_inner());
        self.writers_version(&index, stream)
    }

    /// The first position whose timestamp is after `timestamp_us`; the next position if none.
    pub fn position_after(&self, timestamp_us: u64) -> Result<u64> {
        if self.options.read_only {
            self.refresh()?;
        }
        let index = self.index.read().unwrap_or_else(|e| e.into_inner());
        index.position_after(timestamp_us)
    }

    /// All events from `from` on, in order; sees events appended while it runs.
    pub fn read_all(self: &Arc<Self>, from: u64) -> Result<ForwardCursor> {
        self.check_owner()?;
        let next = self.next_position()?;
        if from > next {
            return Err(Error::new(
                ErrorKind::NotFound,
                format!("position {from} is past the end of the log (the next position is {next})"),
            ));
        }
        ForwardCursor::new(self.clone(), from, u64::MAX)
    }

    /// At most `max` events from `from` on (the seed's `poll_new_events`).
    pub fn poll(self: &Arc<Self>, from: u64, max: u64) -> Result<ForwardCursor> {
        self.check_owner()?;
        let next = self.next_position()?;
        if from > next {
            return Err(Error::new(
                ErrorKind::NotFound,
                format!("position {from} is past the end of the log (the next position is {next})"),
            ));
        }
        ForwardCursor::new(self.clone(), from, from.saturating_add(max))
    }

    /// Events from `from` (inclusive; past the end means the last event) down to 0.
    pub fn read_all_backward(self: &Arc<Self>, from: u64) -> Result<BackwardCursor> {
        self.check_owner()?;
        let next = self.next_position()?;
        Ok(BackwardCursor::new(
            self.clone(),
            from.min(next.saturating_sub(1)),
            next > 0,
        ))
    }

    /// One stream's events from `from_version` on.
    pub fn read_stream(self: &Arc<Self>, stream: &str, from_version: u64) -> Result<StreamCursor> {
        self.check_owner()?;
        check_name("stream name", stream, false)?;
        if self.options.read_only {
            self.refresh()?;
        }
        let v = self.readable_version(stream)?;
        super::check_from_version(stream, v, from_version)?;
        Ok(StreamCursor::new(
            self.clone(),
            stream.to_owned(),
            from_version,
        ))
    }

    /// Reads the event at `position` (random access). A position that holds a lifecycle
    /// entry or a removed event is `NotFound`, saying which.
    pub fn read_event(&self, position: u64) -> Result<Event> {
        self.check_owner()?;
        let mut buf = Vec::new();
        let at = self.fetch_at(position, &mut buf)?;
        let mut owned = Owned::default();
        let ev = match decode_fetched(position, at, &buf, &mut owned, Some(&self.keys))? {
            Decoded::Event(e) => e,
            Decoded::Entry(e) => return Err(entry_is_no_event(position, &e.op)),
        };
        if let Some(why) = self.why_removed(ev.stream, ev.stream_version, ev.timestamp_us) {
            return Err(Error::new(
                ErrorKind::NotFound,
                format!(
                    "the event at position {position} (stream '{}' version {}) is removed: {why}",
                    ev.stream, ev.stream_version
                ),
            ));
        }
        Ok(ev.to_owned())
    }

    /// Reads the record at `position` into `buf` (from its start; maybe more bytes after
    /// it); returns where it is in the log.
    pub(crate) fn fetch_at(&self, position: u64, buf: &mut Vec<u8>) -> Result<Position> {
        if let Some(at) = self.fetch_if_any(position, buf)? {
            return Ok(at);
        }
        let index = self.index.read().unwrap_or_else(|e| e.into_inner());
        if position < index.len() {
            return Err(Error::new(
                ErrorKind::NotFound,
                format!(
                    "no event at position {position}: the event there was removed and a compaction erased it"
                ),
            ));
        }
        Err(Error::new(
            ErrorKind::NotFound,
            format!("no event at position {position}"),
        ))
    }

    /// `fetch_at`, with `None` for a position that holds no record (past the end, or
    /// emptied by a compaction).
    pub(crate) fn fetch_if_any(
        &self,
        position: u64,
        buf: &mut Vec<u8>,
    ) -> Result<Option<Position>> {
        let index = self.index.read().unwrap_or_else(|e| e.into_inner());
        let found = index.locate(position)?;
        drop(index);
        match found {
            Some((_, at, end)) => self.fetch_checked(position, at, end, &mut None, buf),
            None => Ok(None),
        }
    }

    /// Reads the record of `position`, located at `at` (ending at `end`), into `buf` as
    /// `fetch_located` does, and checks that it is that position's record: a compaction
    /// may have put a rewritten copy of the segment in place since the location was
    /// taken (a reader that opens the new file with an old offset). Then the segment's
    /// cached handles are dropped and the position is located again. `None`: the
    /// position holds no record any more (its removed event was erased).
    pub(crate) fn fetch_checked(
        &self,
        position: u64,
        mut at: Position,
        mut end: Option<u64>,
        files: &mut Option<(u64, crate::wal::vfs::FileRef)>,
        buf: &mut Vec<u8>,
    ) -> Result<Option<Position>> {
        let mut attempt = 0;
        loop {
            let read = self.fetch_located(position, at, end, files, buf);
            if read.is_ok() && holds(position, buf) {
                return Ok(Some(at));
            }
            attempt += 1;
            if !self.retry_stale(attempt) {
                read?;
                return Err(Error::corrupt(format!(
                    "the record read for position {position} (segment {} offset {}) is another position's",
                    at.segment_id, at.offset
                ))
                .at_position(position));
            }
            *files = None;
            self.reload_segment(at.segment_id);
            let index = self.index.read().unwrap_or_else(|e| e.into_inner());
            match index.locate(position) {
                Ok(None) => return Ok(None),
                Ok(Some((_, a, e))) => (at, end) = (a, e),
                // (A follower: the index file may be caught mid-replacement; looked at again.)
                Err(_) if self.options.read_only => {}
                Err(e) => return Err(e),
            }
        }
    }

    /// A read found a segment rewritten under it (a compaction) and is about to read
    /// again, looked up afresh, for the `attempt`-th time: whether it may. The writer's
    /// own compaction puts a segment and its index file in place under the index's write
    /// lock, so one more look finds both new. A follower may look between the writer's
    /// two renames, or before it took up the segment's index file: it takes in what the
    /// writer did, waits a moment, and looks again, for a while.
    pub(crate) fn retry_stale(&self, attempt: u32) -> bool {
        if !self.options.read_only {
            return attempt < 3;
        }
        if attempt >= STALE_READS_READ_ONLY {
            return false;
        }
        let _ = self.refresh();
        if attempt > 1 {
            std::thread::sleep(Duration::from_millis(1));
        }
        true
    }

    /// Whether a reader at position `due` that read the record of `position` (a marker
    /// record when `marker`) passed over empty positions only, as the index has them.
    pub(crate) fn gap_holds(&self, due: u64, position: u64, marker: bool) -> Result<bool> {
        let index = self.index.read().unwrap_or_else(|e| e.into_inner());
        let next = index.next_record(due)?;
        Ok(match marker {
            true => next.is_none_or(|n| n > position),
            false => next == Some(position),
        })
    }

    /// Drops every cached handle of segment `id` (its file or its index file was
    /// replaced by a compaction): the next read opens what is at their names now.
    pub(crate) fn reload_segment(&self, id: u64) {
        self.files.reload(id);
        self.wal.forget_read_file(id);
    }

    /// Gives the oldest in-memory segment its index file once a later one has begun
    /// (and again while more are complete). A failure leaves the events in memory.
    fn maybe_seal(&self) {
        if self.options.read_only {
            return;
        }
        self.report_sealed();
        let sealable = |s: &Self| {
            let index = s.index.read().unwrap_or_else(|e| e.into_inner());
            index
                .sealable()
                .filter(|&(seg, _)| s.seal_failed.load(Ordering::Relaxed) != seg + 1)
        };
        if sealable(self).is_none() {
            return;
        }
        let Ok(_one) = self.seal_lock.try_lock() else {
            return;
        };
        let mut sealed_any = false;
        while let Some((seg, n)) = sealable(self) {
            if self.seal(seg, n).is_err() {
                self.seal_failed.store(seg + 1, Ordering::Relaxed);
                break;
            }
            sealed_any = true;
        }
        if sealed_any {
            let streams = self
                .index
                .read()
                .unwrap_or_else(|e| e.into_inner())
                .streams
                .len();
            let since = self.committed() - self.last_snapshot.load(Ordering::Acquire);
            if since >= CHECKPOINT_EVENTS.max(4 * streams as u64) {
                let _ = self.snapshot();
            }
        }
    }

    /// Writes the index file of segment `seg`, the oldest in memory, with its `n` events.
    fn seal(&self, seg: u64, n: usize) -> Result<()> {
        let len = self
            .wal
            .segment_end(seg)
            .ok_or_else(|| Error::corrupt(format!("segment {seg} is gone")))?;
        if !Builder::fits(len) {
            return Err(Error::invalid("the segment is too long for an index file"));
        }
        let crc = self.files.segment_last_crc(seg, len)?;
        let index = self.index.read().unwrap_or_else(|e| e.into_inner());
        let (sealed, bytes) = if index.has_gaps(n) {
            // Replayed from a segment a compaction rewrote: its file says where its
            // empty positions and records are.
            let (first, floor) = (index.base, index.sealed.last().map_or(0, |s| s.last_ts));
            drop(index);
            let log_dir = self.dir.join("events");
            index_segment(
                &*self.options.vfs,
                &log_dir,
                seg,
                first,
                floor,
                Some(len),
                None,
            )?
        } else {
            let built = index.build_sealed(n, len, crc);
            drop(index);
            built
        };
        self.files.write(seg, &bytes)?;
        self.index
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .apply_sealed(sealed)?;
        // A sealed segment may be compacted now.
        if self.removing() {
            self.compactor_wake.wake();
        }
        Ok(())
    }

    /// Reads the record of `position` at `at` (ending at `end`, if known) into `buf`,
    /// from its start (maybe more bytes after it); see `decode_fetched`.
    pub(crate) fn fetch_located(
        &self,
        position: u64,
        at: Position,
        end: Option<u64>,
        files: &mut Option<(u64, crate::wal::vfs::FileRef)>,
        buf: &mut Vec<u8>,
    ) -> Result<()> {
        // Damage found on the way is reported with the position (`evs_last_error_detail`).
        let damaged = move |e: Error| e.damage_at(position);
        let end = match end {
            Some(e) => e,
            None => self.record_end_guess(at).map_err(damaged)?,
        };
        let len = end.checked_sub(at.offset).filter(|&l| l > 0);
        let Some(len) = len else {
            return Err(damaged(Error::corrupt(format!(
                "the index puts position {position} at segment {} offset {} with no room",
                at.segment_id, at.offset
            ))));
        };
        // The next record may be far away only past the end of a segment: read at most
        // the longest record there can be.
        let len = len.min(MAX_RECORD_LEN);
        self.wal
            .read_exact_cached(files, at, len as usize, buf)
            .map_err(damaged)
    }

    /// How far to read for the last record of a segment whose successor we do not know.
    fn record_end_guess(&self, at: Position) -> Result<u64> {
        let end = self.wal.segment_end(at.segment_id).unwrap_or(at.offset);
        if end <= at.offset {
            return Err(Error::corrupt(format!(
                "segment {} ends before offset {}",
                at.segment_id, at.offset
            )));
        }
        // The record is first in what is left; bound the read to the largest record.
        Ok(end.min(at.offset + MAX_RECORD_LEN))
    }

    /// Makes everything appended durable, under any policy.
    pub fn sync(&self) -> Result<()> {
        self.check_owner()?;
        if self.options.read_only {
            return Ok(());
        }
        self.wal.sync()
    }

    /// Writes a snapshot of the indexes and projections now; returns the events covered.
    pub fn snapshot(&self) -> Result<u64> {
        self.check_owner()?;
        self.check_writable()?;
        let _one = self.snapshot_lock.lock().unwrap_or_else(|e| e.into_inner());
        let w = self.lock_writer();
        self.wal.sync()?;
        let index = self.index.read().unwrap_or_else(|e| e.into_inner());
        let n = index.len();
        let wal_end = match index.last_wal() {
            Some(last) => {
                // Where the records after the covered events start: the first pending one
                // (under ALWAYS) or the log's end.
                let end = w
                    .pending
                    .first()
                    .and_then(Pending::first_record)
                    .unwrap_or_else(|| self.wal.current_position());
                if end.segment_id == last.segment_id {
                    end
                } else {
                    Position {
                        segment_id: last.segment_id,
                        offset: self.wal.segment_end(last.segment_id).unwrap_or(0),
                    }
                }
            }
            None => Position::default(),
        };
        let projections: Vec<(String, Vec<u8>)> = self
            .projections
            .iter()
            .map(|p| (p.name().to_owned(), p.snapshot()))
            .collect();
        let last_crc = match index.last_wal() {
            Some(last) => {
                let mut buf = Vec::new();
                self.wal
                    .read_exact_at(last, (wal_end.offset - last.offset) as usize, &mut buf)?;
                record_crc(&buf)
            }
            None => 0,
        };
        // Written while the state holds still, made durable after it is let go.
        let written = snapshot::begin(&*self.options.vfs, &self.dir.join("snapshots"), n, |sink| {
            snapshot::encode_into(&index, wal_end, last_crc, &projections, sink)
        });
        drop(index);
        drop(w);
        written?.finish()?;
        self.last_snapshot.store(n, Ordering::Release);
        self.snapshots.fetch_add(1, Ordering::Relaxed);
        Ok(n)
    }

    fn maybe_snapshot(&self) {
        let every = self.options.snapshot_every;
        if every == 0 {
            return;
        }
        let n = self.committed.load(Ordering::Acquire);
        if n < self.last_snapshot.load(Ordering::Acquire) + every {
            return;
        }
        if self.snapshotting.swap(true, Ordering::AcqRel) {
            return;
        }
        let _ = self.snapshot();
        self.snapshotting.store(false, Ordering::Release);
    }

    pub fn stats(&self) -> StoreStats {
        let reclaimable_bytes = self.reclaimable_bytes();
        let wal = self.wal.stats();
        let index = self.index.read().unwrap_or_else(|e| e.into_inner());
        let mut events_by_type: Vec<(String, u64)> = index
            .type_counts
            .iter()
            .map(|(k, &v)| (k.to_string(), v))
            .collect();
        events_by_type.sort();
        // Stats answer even when an index file cannot be read: its removed events then
        // count as kept. `streams` counts those a reader sees (listed: an event left), as
        // on PostgreSQL.
        let (removed_events, streams) = self
            .removal_counts(&index)
            .unwrap_or((0, index.streams.len() as u64));
        StoreStats {
            events: index.len(),
            streams,
            bytes_on_disk: wal.bytes_on_disk,
            segments: wal.segments,
            appends: wal.batches,
            fsyncs: wal.fsyncs,
            writes: wal.writes,
            fsync_p50_us: wal.fsync_p50_us,
            fsync_p99_us: wal.fsync_p99_us,
            open_time_us: self.open_time.as_micros() as u64,
            snapshots: self.snapshots.load(Ordering::Relaxed),
            index_bytes: index.approx_bytes() + self.ids.approx_bytes(),
            event_ids: self.ids.len(),
            events_by_type,
            removed_events,
            lifecycle_entries: index.life.removals.entries(),
            reclaimable_bytes,
        }
    }

    /// Syncs and closes the log, stops and joins the compaction thread, releases the
    /// lock; later appends fail. `Store`'s drop does it on the dropping thread; the
    /// store's own drop (its last reference gone) does it if nothing did before.
    /// From a forked child it touches nothing (the parent owns the files and the lock)
    /// and says so.
    pub fn close(&self) -> Result<()> {
        if let Err(e) = self.check_owner() {
            self.closed.store(true, Ordering::Release);
            let _ = self.wal.close();
            return Err(e);
        }
        if !self.options.read_only
            && !self.closed.load(Ordering::Acquire)
            && self.wal.health().is_ok()
            && self.committed()
                >= self.last_snapshot.load(Ordering::Acquire) + CLOSE_CHECKPOINT_EVENTS
        {
            let _ = self.snapshot();
        }
        if self.closed.swap(true, Ordering::AcqRel) {
            return Ok(());
        }
        // The compaction thread stops between two records before the log closes.
        self.stop_compactor();
        let r = self.wal.close();
        self.lock.lock().unwrap_or_else(|e| e.into_inner()).take();
        self.wake_waiters();
        r
    }

    pub fn is_closed(&self) -> bool {
        self.closed.load(Ordering::Acquire)
    }

    pub(crate) fn wal(&self) -> &Wal {
        &self.wal
    }
}

impl Drop for FileStore {
    fn drop(&mut self) {
        let _ = self.close();
    }
}
