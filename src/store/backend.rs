//! The backend seam: what a place that holds events (the file engine, PostgreSQL) must do
//! for the store's public behaviour. `Store` (see `handle`) forwards every call to one
//! `Backend`; nothing above `store` knows which one it talks to.
//!
//! Every implementation keeps the same promises: positions from 0, dense, and a reader
//! never skips one; expected versions checked atomically with the append; an append is all
//! of its events or none; a retry with the same event ids returns the stored positions.

use super::consumer::{ConsumerClaim, ConsumerOp, StoredConsumer};
use super::file::backup::{BackupInfo, BackupOptions, BackupProgress};
use super::import::{Item, LogEntry};
use super::lifecycle::{CompactInfo, LifecycleRequest, Rule};
use super::{AppendResult, Event, EventRef, StoreOptions, StoreStats, StreamAppend, StreamInfo};
use crate::error::Result;
use std::sync::Arc;
use std::time::Duration;

/// A metric of one backend: name, Prometheus type (`counter`, `gauge`), help, value.
pub type BackendMetric = (&'static str, &'static str, &'static str, u64);

/// A cursor over events, in whatever order it was opened for. Each event borrows the
/// cursor until its next call. `None` means "no more now" (tailing cursors may return
/// more later).
pub trait EventCursor: Send {
    fn next(&mut self) -> Result<Option<EventRef<'_>>>;

    /// A batch without copies: up to `max` next events handed to `sink`, whose bytes all
    /// stay where they are until the next call on the cursor. `None` when this cursor
    /// cannot promise that (its caller then copies each event `next` returns).
    fn next_views(
        &mut self,
        max: usize,
        sink: &mut dyn FnMut(&EventRef<'_>),
    ) -> Option<EventViews> {
        let _ = (max, sink);
        None
    }
}

/// What `EventCursor::next_views` handed out: how many events, and the error met after
/// them (none handed out: the call's error), which the next call would not report again.
#[derive(Debug, Default)]
pub struct EventViews {
    pub count: usize,
    pub error: Option<crate::error::Error>,
}

/// A cursor in position order that tails the log: it knows where it stands.
pub trait TailCursor: EventCursor {
    /// The position from which it looks for its next event.
    fn position(&self) -> u64;
}

/// One place that holds events. The methods mirror `Store`'s (documented there); cursors
/// are opened through an `Arc` because they keep the backend alive while they read.
pub trait Backend: Send + Sync {
    /// Where the events are (a directory, or a URL without its password), for messages.
    fn location(&self) -> String;
    fn options(&self) -> &StoreOptions;
    /// Refuses calls from a process other than the one that opened the store.
    fn check_owner(&self) -> Result<()>;

    fn append_event(&self, event_type: &str, payload: &[u8]) -> Result<u64>;
    fn append_multi(&self, appends: &[StreamAppend<'_>]) -> Result<AppendResult>;
    /// `append_multi` of one part, returning its first position and the stream's version
    /// after it (what `evs_append` hands out): a backend that can spares the vector of an
    /// `AppendResult`.
    fn append_one(&self, part: &StreamAppend<'_>) -> Result<(u64, u64)> {
        let r = self.append_multi(std::slice::from_ref(part))?;
        Ok((r.first_position, r.stream_versions[0]))
    }

    fn next_position(&self) -> Result<u64>;
    fn stream_version(&self, stream: &str) -> Result<Option<u64>>;
    fn position_after(&self, timestamp_us: u64) -> Result<u64>;
    fn read_event(&self, position: u64) -> Result<Event>;
    fn list_streams(&self) -> Result<Vec<StreamInfo>>;

    fn read_all(self: Arc<Self>, from: u64) -> Result<Box<dyn TailCursor>>;
    fn poll(self: Arc<Self>, from: u64, max: u64) -> Result<Box<dyn TailCursor>>;
    fn read_all_backward(self: Arc<Self>, from: u64) -> Result<Box<dyn EventCursor>>;
    fn read_stream(
        self: Arc<Self>,
        stream: &str,
        from_version: u64,
    ) -> Result<Box<dyn EventCursor>>;
    fn read_stream_backward(
        self: Arc<Self>,
        stream: &str,
        from_version: u64,
    ) -> Result<Box<dyn EventCursor>>;
    fn read_category(self: Arc<Self>, prefix: &str, from: u64) -> Result<Box<dyn TailCursor>>;

    /// Takes in what other processes appended (projections included).
    fn refresh(&self) -> Result<()>;
    /// Waits until more than `seen` events exist or `timeout` passes; returns the count
    /// known then (errors show on the next read).
    fn wait_for_events(&self, seen: u64, timeout: Duration) -> u64;
    fn wake_waiters(&self);

    /// Appends a lifecycle operation (docs/lifecycle.md), after `lifecycle::guard`, its
    /// checks atomic with the append; returns its position. A retry with the same id
    /// returns the first one's position.
    fn apply_lifecycle(&self, req: &LifecycleRequest<'_>, id: Option<[u8; 16]>) -> Result<u64>;
    /// The retention rule in force for stream `name`, or (`category`) the rule set on
    /// exactly the prefix `name`.
    fn retention(&self, name: &str, category: bool) -> Result<Option<Rule>>;
    /// Reclaims the storage of removed events now.
    fn compact(&self) -> Result<CompactInfo>;
    /// The store is about to close: long work in progress (a compaction) stops soon,
    /// leaving the store consistent. Nothing by default.
    fn interrupt(&self) {}
    /// Takes an online backup into directory `dest` (docs/backup.md). Only the file
    /// engine has one: a PostgreSQL store is backed up with PostgreSQL's own tools.
    fn backup(
        &self,
        dest: &std::path::Path,
        options: &BackupOptions,
        progress: &mut dyn FnMut(&BackupProgress),
    ) -> Result<BackupInfo> {
        let _ = (dest, options, progress);
        Err(crate::error::Error::invalid(
            "evs_backup backs up a file store; back up a PostgreSQL store with PostgreSQL's own tools (a base backup and archived WAL, docs/postgres.md)",
        ))
    }

    /// Forgets data subject `subject` (`subjects`): an entry in the log (every process
    /// and follower obeys it), durable, then its key destroyed; returns the entry's
    /// position (a forgotten subject: the first entry's).
    fn forget_subject(&self, subject: &str) -> Result<u64>;
    /// The data subjects with their event counts, forgotten or not (never keys).
    fn subjects(&self) -> Result<Vec<super::subjects::SubjectInfo>>;
    /// Whether this engine seals events naming subjects, appended and imported (an
    /// import or copy of personal data into one that does not is refused before it
    /// writes anything). Both engines do: PostgreSQL's import seals as its appends do.
    fn supports_subjects(&self) -> bool {
        true
    }

    /// Durable consumers (docs/consumers.md). Opens consumer `name` for the caller
    /// alone (`Locked` while it is open elsewhere), with its stored state. `lease`: how
    /// long a holder that stops renewing keeps it (PostgreSQL; the file engine's lock
    /// goes with its process).
    fn consumer_claim(&self, name: &str, lease: Duration) -> Result<ConsumerClaim>;
    /// Stores a consumer's record (its claim held by the caller).
    /// Returns the record's position when it went to the log (`None`: elsewhere).
    fn consumer_write(&self, op: &ConsumerOp) -> Result<Option<u64>>;
    /// Appends `appends` and stores the checkpoint `op` in one atomic step.
    fn consumer_append(
        &self,
        appends: &[StreamAppend<'_>],
        op: &ConsumerOp,
    ) -> Result<AppendResult>;
    /// Every consumer that exists, with its state and whether it is open now.
    fn consumer_list(&self) -> Result<Vec<StoredConsumer>>;

    /// Consumer groups (docs/consumers.md "Consumer groups"): joins group `name` of
    /// `partitions` partitions as a new member (a new group starts at `start`). Its
    /// records (`consumer_write`) then go to the partitions it owns. Only PostgreSQL
    /// has groups: the file engine is one process's.
    fn group_join(
        &self,
        name: &str,
        partitions: u32,
        start: u64,
        lease: Duration,
    ) -> Result<ConsumerClaim> {
        let _ = (start, lease);
        Err(crate::error::Error::invalid(format!(
            "consumer '{name}' with {partitions} partitions: consumer groups need the \
             PostgreSQL engine (a file store is written by one process: open the consumer \
             with partitions = 0)"
        )))
    }
    /// The member's share: renews its lease, stores `acked` (every position before it
    /// handled) for the partitions it owns, takes or gives partitions to reach its fair
    /// share, and returns those it owns now with their checkpoints.
    fn group_balance(&self, name: &str, acked: Option<u64>) -> Result<Vec<(u32, u64)>> {
        let _ = acked;
        Err(crate::error::Error::invalid(format!(
            "consumer '{name}': consumer groups need the PostgreSQL engine"
        )))
    }
    /// The atomic step of a member: `appends` and checkpoint `next` of its partitions in
    /// one transaction, refused unless it owns partition `part` (the acknowledged
    /// event's); `seq` tells a step sent again from a new one.
    fn group_append(
        &self,
        name: &str,
        appends: &[StreamAppend<'_>],
        seq: u64,
        part: u32,
        next: u64,
    ) -> Result<AppendResult> {
        let _ = (appends, seq, part, next);
        Err(crate::error::Error::invalid(format!(
            "consumer '{name}': consumer groups need the PostgreSQL engine"
        )))
    }
    /// The lifecycle entries (deletes, truncations, retention rules; not consumers'
    /// records) at positions `from .. to`, in position order (exports and copies).
    fn entries(&self, from: u64, to: u64) -> Result<Vec<LogEntry>>;
    /// Writes `items` at their own positions, with their own times and ids (imports and
    /// copies, `store::import`), and makes `end` the next position (the positions
    /// between stay empty). The items must come at or after the next position, in
    /// order (`NotEmpty` otherwise, writing nothing: see `import::check_batch`); each
    /// lifecycle entry takes effect at its place. Durable when it returns.
    fn import(&self, items: &[Item], end: u64) -> Result<()>;

    /// Counters only this backend has, for the metrics (PostgreSQL: its committer and
    /// connections); none by default.
    fn metrics(&self) -> Vec<BackendMetric> {
        Vec::new()
    }

    fn sync(&self) -> Result<()>;
    fn snapshot(&self) -> Result<u64>;
    fn stats(&self) -> Result<StoreStats>;
    fn close(&self) -> Result<()>;
    fn is_closed(&self) -> bool;
}
