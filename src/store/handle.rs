//! `Store`, the handle everything above `store` uses: it opens the backend its location
//! names and forwards every call to it.

use super::backend::{Backend, EventCursor, TailCursor};
use super::consumer::{ConsumerClaim, ConsumerOp, StoredConsumer};
use super::file::FileStore;
use super::lifecycle::{CompactInfo, LifecycleRequest, Rule};
use super::postgres::{conn::is_url, PgStore};
use super::EventInput;
use super::{
    AppendResult, Event, ExpectedVersion, OpenReport, Projection, StoreOptions, StoreStats,
    StreamAppend, StreamInfo,
};
use crate::error::Result;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

/// An open store. Thread-safe; cheap to share behind an `Arc`.
///
/// Dropping it closes a file store on the dropping thread before the drop returns (the
/// log synced and closed, the compaction thread stopped and joined, the lock released),
/// even while the compaction thread or a cursor still holds the store: the one that let
/// go last would otherwise close it later, on its own thread, and a reopen meanwhile
/// would find the store `Locked`. A cursor that outlives its store reads on, ends, or
/// says what failed (as after `evs_close`).
pub struct Store {
    backend: Arc<dyn Backend>,
    /// A file store: closed when this handle is dropped. (A PostgreSQL store holds no
    /// lock and no library thread of its own holds it: it closes when the last of this
    /// handle and its cursors goes.)
    close_on_drop: bool,
}

impl Store {
    /// Opens (creating if needed) the store at `location`: a `postgresql://` (or
    /// `postgres://`) URL for PostgreSQL, anything else is a directory for the file
    /// engine. `projections` are rebuilt from the stored events and kept up to date.
    pub fn open(
        location: impl AsRef<Path>,
        options: StoreOptions,
        projections: Vec<Arc<dyn Projection>>,
    ) -> Result<(Store, OpenReport)> {
        if let Some(url) = location.as_ref().to_str().filter(|l| is_url(l)) {
            let (pg, report) = PgStore::open(url, options, projections)?;
            return Ok((
                Store {
                    backend: Arc::new(pg),
                    close_on_drop: false,
                },
                report,
            ));
        }
        let (file, report) = FileStore::open(location, options, projections)?;
        let file = Arc::new(file);
        file.start_compactor()?;
        Ok((
            Store {
                backend: file,
                close_on_drop: true,
            },
            report,
        ))
    }

    /// Where the events are (a directory, or a URL without its password).
    pub fn location(&self) -> String {
        self.backend.location()
    }

    pub fn options(&self) -> &StoreOptions {
        self.backend.options()
    }

    /// Refuses calls from a process other than the one that opened the store: a forked
    /// child shares the parent's files or connections but not its threads and buffers.
    pub fn check_owner(&self) -> Result<()> {
        self.backend.check_owner()
    }

    /// Appends an event with no stream (the reference program's `append_event`).
    pub fn append_event(&self, event_type: &str, payload: &[u8]) -> Result<u64> {
        self.backend.append_event(event_type, payload)
    }

    /// Appends events to one stream, atomically, if the stream is at `expected`.
    pub fn append(
        &self,
        stream: &str,
        expected: ExpectedVersion,
        events: &[EventInput<'_>],
    ) -> Result<AppendResult> {
        // One stream, no parts: an error names none (`ErrorDetail::part_index`).
        self.append_multi(&[StreamAppend {
            stream,
            expected,
            events,
        }])
        .map_err(crate::error::Error::without_part)
    }

    /// `append`, returning the first position and the stream's version after the append
    /// (the C API's `evs_append`): no `AppendResult` is built.
    pub(crate) fn append_one(
        &self,
        stream: &str,
        expected: ExpectedVersion,
        events: &[EventInput<'_>],
    ) -> Result<(u64, u64)> {
        let part = StreamAppend {
            stream,
            expected,
            events,
        };
        // One stream, no parts: an error names none (`ErrorDetail::part_index`).
        self.backend
            .append_one(&part)
            .map_err(crate::error::Error::without_part)
    }

    /// Appends to several streams at once: all of it or nothing.
    pub fn append_multi(&self, appends: &[StreamAppend<'_>]) -> Result<AppendResult> {
        self.backend.append_multi(appends)
    }

    /// The number of events, which is also the position the next one gets.
    pub fn next_position(&self) -> Result<u64> {
        self.backend.next_position()
    }

    /// The stream's current version (`None`: no such stream).
    pub fn stream_version(&self, stream: &str) -> Result<Option<u64>> {
        self.backend.stream_version(stream)
    }

    /// The first position whose timestamp is after `timestamp_us`; the next position if none.
    pub fn position_after(&self, timestamp_us: u64) -> Result<u64> {
        self.backend.position_after(timestamp_us)
    }

    /// Reads the event at `position` (random access).
    pub fn read_event(&self, position: u64) -> Result<Event> {
        self.backend.read_event(position)
    }

    /// Every stream with its version and first position, in creation order.
    pub fn list_streams(&self) -> Result<Vec<StreamInfo>> {
        self.backend.list_streams()
    }

    /// All events from `from` on, in order; sees events appended while it runs.
    pub fn read_all(&self, from: u64) -> Result<Box<dyn TailCursor>> {
        self.backend.clone().read_all(from)
    }

    /// At most `max` events from `from` on (the seed's `poll_new_events`).
    pub fn poll(&self, from: u64, max: u64) -> Result<Box<dyn TailCursor>> {
        self.backend.clone().poll(from, max)
    }

    /// Events from `from` (inclusive; past the end means the last event) down to 0.
    pub fn read_all_backward(&self, from: u64) -> Result<Box<dyn EventCursor>> {
        self.backend.clone().read_all_backward(from)
    }

    /// One stream's events from `from_version` on.
    pub fn read_stream(&self, stream: &str, from_version: u64) -> Result<Box<dyn EventCursor>> {
        self.backend.clone().read_stream(stream, from_version)
    }

    /// One stream's events from `from_version` (inclusive; past its end: the last event)
    /// down to version 0.
    pub fn read_stream_backward(
        &self,
        stream: &str,
        from_version: u64,
    ) -> Result<Box<dyn EventCursor>> {
        self.backend
            .clone()
            .read_stream_backward(stream, from_version)
    }

    /// Events of every stream whose name starts with `prefix` (non-empty), from position
    /// `from` on.
    pub fn read_category(&self, prefix: &str, from: u64) -> Result<Box<dyn TailCursor>> {
        self.backend.clone().read_category(prefix, from)
    }

    /// Takes in the events other processes appended since we looked (a read-only file
    /// store, or any PostgreSQL store), projections included.
    pub fn refresh(&self) -> Result<()> {
        self.backend.refresh()
    }

    /// Waits until more than `seen` events exist or `timeout` passes; returns the count.
    pub fn wait_for_events(&self, seen: u64, timeout: Duration) -> u64 {
        self.backend.wait_for_events(seen, timeout)
    }

    /// Wakes everyone in `wait_for_events` (used when closing).
    pub fn wake_waiters(&self) {
        self.backend.wake_waiters()
    }

    /// Deletes `stream` (soft: its events leave every read and its version is kept; hard:
    /// a tombstone, its name refused from then on); returns the entry's position.
    pub fn delete_stream(
        &self,
        stream: &str,
        expected: ExpectedVersion,
        hard: bool,
        id: Option<[u8; 16]>,
    ) -> Result<u64> {
        self.lifecycle(
            LifecycleRequest::Delete {
                stream,
                expected,
                hard,
            },
            id,
        )
    }

    /// Removes `stream`'s events with a version below `before_version`.
    pub fn truncate_stream(
        &self,
        stream: &str,
        before_version: u64,
        id: Option<[u8; 16]>,
    ) -> Result<u64> {
        self.lifecycle(
            LifecycleRequest::Truncate {
                stream,
                expected: ExpectedVersion::Any,
                before_version,
            },
            id,
        )
    }

    /// Sets (an empty rule: clears) the retention rule of a stream or a category prefix.
    pub fn set_retention(
        &self,
        target: &str,
        category: bool,
        rule: Rule,
        id: Option<[u8; 16]>,
    ) -> Result<u64> {
        self.lifecycle(
            LifecycleRequest::Retention {
                target,
                category,
                rule,
            },
            id,
        )
    }

    /// Any lifecycle request (docs/lifecycle.md); returns its entry's position.
    pub fn lifecycle(&self, req: LifecycleRequest<'_>, id: Option<[u8; 16]>) -> Result<u64> {
        req.validate()?;
        self.backend.apply_lifecycle(&req, id)
    }

    /// Forgets a data subject: its events read as erased from when this returns, in every
    /// process; its key is destroyed. Returns the forget entry's position.
    pub fn forget_subject(&self, subject: &str) -> Result<u64> {
        self.backend.forget_subject(subject)
    }

    /// The data subjects with their event counts, forgotten or not (never keys).
    pub fn subjects(&self) -> Result<Vec<super::subjects::SubjectInfo>> {
        self.backend.subjects()
    }

    /// Whether this store's engine seals events naming subjects (`evs_forget_subject`).
    pub fn supports_subjects(&self) -> bool {
        self.backend.supports_subjects()
    }

    /// The rule in force for stream `name`, or (`category`) the rule set on that prefix.
    pub fn retention(&self, name: &str, category: bool) -> Result<Option<Rule>> {
        self.backend.retention(name, category)
    }

    /// Reclaims the storage of removed events now (docs/lifecycle.md).
    pub fn compact(&self) -> Result<CompactInfo> {
        self.backend.compact()
    }

    /// Takes an online backup into directory `dest` while appends go on (file engine;
    /// docs/backup.md); into an earlier backup it places only what changed.
    pub fn backup(
        &self,
        dest: &Path,
        options: &super::BackupOptions,
        progress: &mut dyn FnMut(&super::BackupProgress),
    ) -> Result<super::BackupInfo> {
        self.backend.backup(dest, options, progress)
    }

    /// Tells the store that it is about to close: a running compaction stops at its next
    /// record (and returns what it did), so that the close need not wait for all of it.
    pub fn interrupt(&self) {
        self.backend.interrupt()
    }

    /// The lifecycle entries at positions `from .. to` (see `Backend::entries`).
    pub fn entries(&self, from: u64, to: u64) -> Result<Vec<super::import::LogEntry>> {
        self.backend.entries(from, to)
    }

    /// Writes items at their own positions (see `Backend::import`; `store::import` has
    /// the whole moves: export, import, copy).
    pub fn import(&self, items: &[super::import::Item], end: u64) -> Result<()> {
        self.backend.import(items, end)
    }

    /// Opens durable consumer `name` for the caller alone (docs/consumers.md); `lease`:
    /// how long a holder that stopped renewing keeps it (PostgreSQL).
    pub fn consumer_claim(&self, name: &str, lease: std::time::Duration) -> Result<ConsumerClaim> {
        super::consumer::check_consumer_name(name)?;
        self.backend.consumer_claim(name, lease)
    }

    /// Stores a consumer's record (the caller holds its claim).
    pub fn consumer_write(&self, op: &ConsumerOp) -> Result<Option<u64>> {
        self.backend.consumer_write(op)
    }

    /// Appends and stores a consumer's checkpoint in one atomic step.
    pub fn consumer_append(
        &self,
        appends: &[StreamAppend<'_>],
        op: &ConsumerOp,
    ) -> Result<AppendResult> {
        self.backend.consumer_append(appends, op)
    }

    /// Every consumer that exists, with its state and whether it is open now.
    pub fn consumer_list(&self) -> Result<Vec<StoredConsumer>> {
        self.backend.consumer_list()
    }

    /// Joins consumer group `name` (PostgreSQL; see `Backend::group_join`).
    pub fn group_join(
        &self,
        name: &str,
        partitions: u32,
        start: u64,
        lease: std::time::Duration,
    ) -> Result<ConsumerClaim> {
        super::consumer::check_consumer_name(name)?;
        self.backend.group_join(name, partitions, start, lease)
    }

    /// A group member's share now (see `Backend::group_balance`).
    pub fn group_balance(&self, name: &str, acked: Option<u64>) -> Result<Vec<(u32, u64)>> {
        self.backend.group_balance(name, acked)
    }

    /// A group member's atomic step (see `Backend::group_append`).
    pub fn group_append(
        &self,
        name: &str,
        appends: &[StreamAppend<'_>],
        seq: u64,
        part: u32,
        next: u64,
    ) -> Result<AppendResult> {
        self.backend.group_append(name, appends, seq, part, next)
    }

    /// Makes everything appended durable, under any policy.
    pub fn sync(&self) -> Result<()> {
        self.backend.sync()
    }

    /// Writes a snapshot of the indexes and projections now; returns the events covered.
    pub fn snapshot(&self) -> Result<u64> {
        self.backend.snapshot()
    }

    /// Counters only this store's backend has (`Backend::metrics`).
    pub fn backend_metrics(&self) -> Vec<super::backend::BackendMetric> {
        self.backend.metrics()
    }

    pub fn stats(&self) -> Result<StoreStats> {
        self.backend.stats()
    }

    /// Makes everything durable and lets go of the store; later appends fail.
    pub fn close(&self) -> Result<()> {
        self.backend.close()
    }

    pub fn is_closed(&self) -> bool {
        self.backend.is_closed()
    }
}

impl Drop for Store {
    fn drop(&mut self) {
        if self.close_on_drop {
            let _ = self.backend.close();
        }
    }
}
