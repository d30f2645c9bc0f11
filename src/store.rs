//! The event store: global positions, streams and expected versions, atomic (multi-stream)
//! appends, event ids, cursors, subscriptions' waiting, snapshots, stats; the same
//! behaviour over a backend seam (`backend`) with two implementations: `file`, the
//! embedded engine on top of `wal/`, and `postgres`.
//!
//! (The module root is `src/store.rs` rather than `src/store/mod.rs` so that the file
//! engine's history follows its move to `src/store/file/mod.rs`.)

mod backend;
pub mod consumer;
pub mod consumer_run;
mod event;
pub mod export;
mod file;
mod handle;
pub mod ids;
pub mod import;
pub mod lifecycle;
mod postgres;
pub mod subjects;

pub use backend::{Backend, EventCursor, TailCursor};
pub use event::{
    AppendResult, Event, EventInput, EventRef, ExpectedVersion, Projection, StreamAppend,
    StreamInfo,
};
pub use file::backup::{
    read_marker as read_backup_marker, BackupInfo, BackupOptions, BackupProgress, MarkerState,
    SegmentChange, SegmentHook,
};
pub use file::restore::{restore, verify_backup, RestoreInfo, RestorePoint, VerifyInfo};
pub use file::{envelope, snapshot};
pub use handle::Store;

use crate::error::{Error, ErrorKind, Result};
use crate::wal::vfs::{self, Vfs};
use crate::wal::{FsyncPolicy, RecoveryInfo};
use std::sync::Arc;
use std::time::Duration;

/// The maps on hot paths (a lookup per append and per stream read): foldhash, seeded per
/// process, instead of SipHash, which cost about 400 instructions an append.
pub(crate) type FastMap<K, V> = std::collections::HashMap<K, V, foldhash::fast::RandomState>;

/// Stream names and event types: at most this many bytes.
pub const MAX_NAME_LEN: usize = 1024;
/// One event's payload plus metadata: at most 16 MiB.
pub const MAX_EVENT_SIZE: usize = 16 << 20;
/// One append, all events together: at most 64 MiB.
pub const MAX_BATCH_SIZE: usize = 64 << 20;
/// One append: at most this many events.
pub const MAX_BATCH_EVENTS: usize = 1 << 20;

/// How to open a store.
#[derive(Debug, Clone)]
pub struct StoreOptions {
    pub fsync: FsyncPolicy,
    pub max_segment_size: u64,
    pub preallocate: bool,
    pub read_only: bool,
    /// Take a snapshot automatically every this many events (0: never by count; the file
    /// store still checkpoints itself at close and when a segment seals, see
    /// docs/index-files.md).
    pub snapshot_every: u64,
    /// The file system underneath (the real one unless a test puts another there).
    pub vfs: Arc<dyn Vfs>,
    /// One event's payload plus metadata: at most this many bytes (<= MAX_EVENT_SIZE).
    pub max_event_size: usize,
    /// The ids of at least this many of the last events are remembered (idempotent
    /// appends); see `ids`.
    pub dedupe_window: u64,
    /// The store's clock: event timestamps and the age of retention rules by age
    /// (docs/lifecycle.md). The system clock unless a test puts another there.
    pub clock: Clock,
    /// Compaction's budget, bytes read and written per second (0: unthrottled).
    pub compaction_bytes_per_second: u64,
    /// A sealed segment with more than this percent of its bytes removed is compacted by
    /// a library thread of the store (0: no automatic compaction; at most 100).
    pub compaction_trigger_percent: u32,
    /// Continuous archiving (file engine): told of every segment that seals or that a
    /// compaction rewrites (docs/backup.md).
    pub on_segment: Option<SegmentHook>,
    /// Where the keys of data subjects come from (`subjects`).
    pub keys: subjects::KeyOptions,
}

/// Compaction's default budget: 64 MiB/s.
pub const DEFAULT_COMPACTION_BYTES_PER_SECOND: u64 = 64 << 20;
/// Compaction's default trigger: a sealed segment more than 25% removed.
pub const DEFAULT_COMPACTION_TRIGGER_PERCENT: u32 = 25;

/// A clock giving microseconds since the Unix epoch: the system clock, or a function a
/// test gives (`None` is the system clock, read without a call through a pointer: every
/// append reads it).
#[derive(Clone)]
pub struct Clock(Option<Arc<dyn Fn() -> u64 + Send + Sync>>);

impl Clock {
    /// The system clock.
    pub fn system() -> Clock {
        Clock(None)
    }

    /// A clock that reads `f` (tests move time with it).
    pub fn new(f: impl Fn() -> u64 + Send + Sync + 'static) -> Clock {
        Clock(Some(Arc::new(f)))
    }

    /// Now, in microseconds since the Unix epoch (0 for a system clock set before it).
    pub fn now_us(&self) -> u64 {
        match &self.0 {
            None => system_now_us(),
            Some(f) => f(),
        }
    }
}

/// The time on the kernel's clock `id` (`clock_gettime`, served by the vDSO for the
/// clocks used here: no system call), `None` if it is refused or before the epoch. The
/// one place the crate reads a clock this way: the append's timestamps and the
/// consumers' coarse clock, where `SystemTime`/`Instant` cost measurably more.
#[inline(always)]
pub(crate) fn clock_now(id: libc::clockid_t) -> Option<(u64, u32)> {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes the one timespec passed, which lives on this stack.
    let r = unsafe { libc::clock_gettime(id, &mut ts) };
    match r == 0 && ts.tv_sec >= 0 {
        true => Some((ts.tv_sec as u64, ts.tv_nsec as u32)),
        false => None,
    }
}

/// The system clock in microseconds since the Unix epoch (0 before it), without
/// `SystemTime`'s checked subtraction and 128-bit arithmetic.
fn system_now_us() -> u64 {
    clock_now(libc::CLOCK_REALTIME).map_or(0, |(s, ns)| s * 1_000_000 + ns as u64 / 1_000)
}

impl Default for Clock {
    fn default() -> Self {
        Clock::system()
    }
}

impl std::fmt::Debug for Clock {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Clock(now: {} us)", self.now_us())
    }
}

impl Default for StoreOptions {
    fn default() -> Self {
        StoreOptions {
            fsync: FsyncPolicy::Batch(Duration::from_millis(5)),
            max_segment_size: crate::wal::DEFAULT_SEGMENT_SIZE,
            preallocate: true,
            read_only: false,
            snapshot_every: 0,
            vfs: vfs::os(),
            max_event_size: MAX_EVENT_SIZE,
            dedupe_window: ids::DEFAULT_DEDUPE_WINDOW,
            clock: Clock::system(),
            compaction_bytes_per_second: DEFAULT_COMPACTION_BYTES_PER_SECOND,
            compaction_trigger_percent: DEFAULT_COMPACTION_TRIGGER_PERCENT,
            on_segment: None,
            keys: subjects::KeyOptions::default(),
        }
    }
}

/// What opening found and did.
#[derive(Debug, Clone, Default)]
pub struct OpenReport {
    pub wal: RecoveryInfo,
    /// The position the next event will get.
    pub next_position: u64,
    /// Events covered by the snapshot that was used, if one was.
    pub snapshot_position: Option<u64>,
    /// Why snapshots that were found were not used.
    pub snapshot_ignored: Vec<String>,
    /// Index files of sealed segments that were missing, damaged or did not match the log
    /// (each rebuilt from its segment), or segments that could not be indexed.
    pub index_files_rebuilt: Vec<String>,
    /// Events of the log's tail that were replayed.
    pub events_replayed: u64,
    pub open_time: Duration,
}

/// Counters for stats and metrics.
#[derive(Debug, Clone, Default)]
pub struct StoreStats {
    pub events: u64,
    pub streams: u64,
    pub bytes_on_disk: u64,
    pub segments: u64,
    pub appends: u64,
    pub fsyncs: u64,
    pub writes: u64,
    pub fsync_p50_us: u64,
    pub fsync_p99_us: u64,
    pub open_time_us: u64,
    pub snapshots: u64,
    pub index_bytes: u64,
    /// Event ids remembered for idempotent appends.
    pub event_ids: u64,
    /// Events removed by deletes, truncations and retention rules (docs/lifecycle.md).
    pub removed_events: u64,
    /// Lifecycle entries in the log.
    pub lifecycle_entries: u64,
    /// Bytes of the file engine's segments a compaction would free now.
    pub reclaimable_bytes: u64,
    pub events_by_type: Vec<(String, u64)>,
}

/// Refuses a write to a store opened read-only or already closed (every backend).
pub(crate) fn check_open_for_writes(
    read_only: bool,
    closed: bool,
    location: &dyn std::fmt::Display,
) -> Result<()> {
    if read_only {
        return Err(Error::new(
            ErrorKind::ReadOnly,
            format!("{location} is open read-only"),
        ));
    }
    if closed {
        return Err(Error::invalid("the store is closed"));
    }
    Ok(())
}

/// The error for a stream that does not exist (every backend).
pub(crate) fn no_such_stream(stream: &str) -> Error {
    Error::new(
        ErrorKind::NotFound,
        format!("stream '{stream}' does not exist"),
    )
}

/// The error of append part `part` whose expected version does not hold: the stream is
/// at `actual` (`None`: it does not exist). Every backend says the same.
pub(crate) fn wrong_expected_version(
    part: usize,
    a: &StreamAppend<'_>,
    actual: Option<u64>,
) -> Error {
    let have = match actual {
        Some(v) => format!("is at version {v}"),
        None => "does not exist".to_string(),
    };
    let wanted = match a.expected {
        ExpectedVersion::NoStream => "no stream".to_string(),
        ExpectedVersion::Exists => "an existing stream".to_string(),
        ExpectedVersion::Exact(v) => format!("version {v}"),
        ExpectedVersion::Any => "any version".to_string(),
    };
    Error::new(
        ErrorKind::WrongExpectedVersion,
        format!("stream '{}' {have}, expected {wanted}", a.stream),
    )
    .with_actual_version(actual)
    .in_part(part)
}

/// A forward stream read may start at most one past the stream's last version `v`.
pub(crate) fn check_from_version(stream: &str, v: u64, from_version: u64) -> Result<()> {
    if from_version > v + 1 {
        return Err(Error::new(
            ErrorKind::NotFound,
            format!("stream '{stream}' is at version {v}; version {from_version} is past its end"),
        ));
    }
    Ok(())
}

/// `b` as text if it is UTF-8. Names (streams, event types) are short and nearly always
/// ASCII: a word-at-a-time test of the top bits settles those (about 10 instructions
/// against ~90 for `str::from_utf8` on an 11-byte name); any other byte string gets the
/// full check. The read path (every event's names) and the C arguments use it.
#[inline(always)]
pub(crate) fn as_text(b: &[u8]) -> Option<&str> {
    if is_ascii(b) {
        // SAFETY: every byte of `b` is below 0x80 (just checked): ASCII, which is UTF-8.
        return Some(unsafe { std::str::from_utf8_unchecked(b) });
    }
    std::str::from_utf8(b).ok()
}

/// Whether every byte of `b` is ASCII: the top bits of 8 bytes at a time, the last 8
/// (or 4) read overlapping what was read before.
#[inline(always)]
fn is_ascii(b: &[u8]) -> bool {
    const HIGH: u64 = 0x8080_8080_8080_8080;
    let word = |i: usize| u64::from_le_bytes(b[i..i + 8].try_into().expect("8 bytes"));
    let half = |i: usize| u64::from(u32::from_le_bytes(b[i..i + 4].try_into().expect("4 bytes")));
    let n = b.len();
    let any = if n >= 8 {
        let mut any = word(n - 8);
        let mut i = 0;
        while i + 8 < n {
            any |= word(i);
            i += 8;
        }
        any
    } else if n >= 4 {
        half(0) | half(n - 4)
    } else {
        b.iter().fold(0, |a, &x| a | u64::from(x))
    };
    any & HIGH == 0
}

/// Checks a name (stream, event type, subject): not empty unless `allow_empty`, at most
/// `MAX_NAME_LEN` bytes.
#[inline(always)]
pub(crate) fn check_name(what: &str, name: &str, allow_empty: bool) -> Result<()> {
    if (name.is_empty() && !allow_empty) || name.len() > MAX_NAME_LEN {
        return Err(bad_name(what, name));
    }
    Ok(())
}

/// `check_name`'s error, out of line: the check is inlined into every append's loop.
#[cold]
#[inline(never)]
fn bad_name(what: &str, name: &str) -> Error {
    if name.is_empty() {
        return Error::invalid(format!("the {what} is empty"));
    }
    Error::invalid(format!(
        "the {what} is {} bytes long; the limit is {MAX_NAME_LEN}",
        name.len()
    ))
}

/// Checks an append's shape and sizes the same way on every backend: streams and event
/// types named, no stream without events, each event and the whole append within the
/// limits. Returns the number of events.
pub(crate) fn validate_append(
    appends: &[StreamAppend<'_>],
    allow_empty_stream: bool,
    max_event_size: usize,
) -> Result<usize> {
    if appends.is_empty() {
        return Err(Error::invalid("an append needs at least one stream"));
    }
    let mut total = 0usize;
    let mut count = 0usize;
    for a in appends {
        check_name("stream name", a.stream, allow_empty_stream)?;
        if a.events.is_empty() {
            return Err(Error::invalid(format!(
                "the append to stream '{}' has no events",
                a.stream
            )));
        }
        for e in a.events {
            check_name("event type", e.event_type, false)?;
            if let Some(s) = e.subject {
                check_name("subject", s, false)?;
            }
            let size = e.payload.len() + e.metadata.len();
            if size > max_event_size {
                return Err(Error::new(
                    ErrorKind::TooLarge,
                    format!("an event of {size} bytes is past the limit of {max_event_size}"),
                ));
            }
            total += size + e.event_type.len() + a.stream.len();
            count += 1;
        }
    }
    if count > MAX_BATCH_EVENTS {
        return Err(Error::new(
            ErrorKind::TooLarge,
            format!("an append of {count} events is past the limit of {MAX_BATCH_EVENTS}"),
        ));
    }
    if total > MAX_BATCH_SIZE {
        return Err(Error::new(
            ErrorKind::TooLarge,
            format!("an append of {total} bytes is past the limit of {MAX_BATCH_SIZE}"),
        ));
    }
    Ok(count)
}

/// Whether `location` is a PostgreSQL store's URL (`postgresql://` or `postgres://`).
pub fn is_postgres_url(location: &str) -> bool {
    postgres::conn::is_url(location)
}

/// The SQL that creates or migrates the schema of the PostgreSQL store at `url` to this
/// library's version, for a DBA to run (nothing is executed; docs/postgres.md "DBAs").
pub fn schema_sql(url: &str) -> crate::error::Result<String> {
    postgres::schema_sql(url)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_high_bit_anywhere_in_a_name_of_any_length_is_seen() {
        for n in 0..40 {
            let plain = vec![b'a'; n];
            assert_eq!(as_text(&plain), Some(&*"a".repeat(n)), "{n}");
            for i in 0..n {
                let mut b = plain.clone();
                b[i] = 0xC3;
                assert!(!is_ascii(&b), "length {n}, byte {i}");
                // Not UTF-8 alone; with a continuation byte after it, UTF-8 that is not ASCII.
                assert_eq!(as_text(&b), None, "length {n}, byte {i}");
                if i + 1 < n {
                    b[i + 1] = 0xA9;
                    assert_eq!(as_text(&b), std::str::from_utf8(&b).ok());
                    assert!(as_text(&b).is_some());
                }
            }
        }
    }

    #[test]
    fn the_system_clock_reads_what_system_time_reads() {
        let micros = || {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .expect("after 1970")
                .as_micros() as u64
        };
        let before = micros();
        let t = Clock::system().now_us();
        let after = micros();
        assert!(before <= t && t <= after, "{before} <= {t} <= {after}");
        assert_eq!(Clock::new(|| 42).now_us(), 42);
    }
}
