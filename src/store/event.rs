//! What the store hands out and takes in: events, appends, expected versions, and the
//! projection trait through which a domain (like the bank accounts) follows the log.

use super::lifecycle::{LifecycleOp, LifecycleRequest};
use crate::error::Result;

/// A stored event, borrowing its bytes (from a cursor's buffer, until its next call).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EventRef<'a> {
    /// Global, gapless, from 0.
    pub position: u64,
    /// Microseconds since the Unix epoch, never decreasing along positions.
    pub timestamp_us: u64,
    /// "" for an event appended without a stream.
    pub stream: &'a str,
    pub stream_version: u64,
    pub event_type: &'a str,
    pub schema_version: u32,
    pub metadata: &'a [u8],
    pub payload: &'a [u8],
    /// The id the appender gave it (idempotent appends), if any.
    pub id: Option<[u8; 16]>,
    /// The data subject it names (its payload and metadata are stored encrypted with the
    /// subject's key; see `subjects`).
    pub subject: Option<&'a str>,
    /// Its subject was forgotten: payload and metadata are empty, the rest is as stored.
    pub erased: bool,
}

/// An event that owns its bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Event {
    pub position: u64,
    pub timestamp_us: u64,
    pub stream: String,
    pub stream_version: u64,
    pub event_type: String,
    pub schema_version: u32,
    pub metadata: Vec<u8>,
    pub payload: Vec<u8>,
    pub id: Option<[u8; 16]>,
    pub subject: Option<String>,
    pub erased: bool,
}

impl EventRef<'_> {
    pub fn to_owned(&self) -> Event {
        Event {
            position: self.position,
            timestamp_us: self.timestamp_us,
            stream: self.stream.to_owned(),
            stream_version: self.stream_version,
            event_type: self.event_type.to_owned(),
            schema_version: self.schema_version,
            metadata: self.metadata.to_vec(),
            payload: self.payload.to_vec(),
            id: self.id,
            subject: self.subject.map(str::to_owned),
            erased: self.erased,
        }
    }
}

impl Event {
    pub fn as_ref(&self) -> EventRef<'_> {
        EventRef {
            position: self.position,
            timestamp_us: self.timestamp_us,
            stream: &self.stream,
            stream_version: self.stream_version,
            event_type: &self.event_type,
            schema_version: self.schema_version,
            metadata: &self.metadata,
            payload: &self.payload,
            id: self.id,
            subject: self.subject.as_deref(),
            erased: self.erased,
        }
    }
}

/// One event to append.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EventInput<'a> {
    pub event_type: &'a str,
    pub payload: &'a [u8],
    pub metadata: &'a [u8],
    /// 0 is stored as 1.
    pub schema_version: u32,
    /// A unique id (not all zero): an append whose events' ids are all stored already
    /// returns the stored positions and writes nothing.
    pub id: Option<[u8; 16]>,
    /// The data subject (e.g. a user id) whose personal data the payload and metadata
    /// are: stored encrypted with the subject's key, erased when it is forgotten. The
    /// name itself is stored in the clear: use a pseudonymous id.
    pub subject: Option<&'a str>,
}

impl<'a> EventInput<'a> {
    pub fn new(event_type: &'a str, payload: &'a [u8]) -> Self {
        EventInput {
            event_type,
            payload,
            metadata: &[],
            schema_version: 1,
            id: None,
            subject: None,
        }
    }
}

/// What a stream must look like for an append to it to go ahead.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExpectedVersion {
    Any,
    NoStream,
    Exists,
    /// The version of the stream's last event.
    Exact(u64),
}

impl ExpectedVersion {
    /// Whether it holds for a stream at `version` (`None`: no stream, for writers).
    pub fn holds(self, version: Option<u64>) -> bool {
        match self {
            ExpectedVersion::Any => true,
            ExpectedVersion::NoStream => version.is_none(),
            ExpectedVersion::Exists => version.is_some(),
            ExpectedVersion::Exact(v) => version == Some(v),
        }
    }
}

/// Events for one stream, as part of an (atomic) append.
#[derive(Debug, Clone, Copy)]
pub struct StreamAppend<'a> {
    pub stream: &'a str,
    pub expected: ExpectedVersion,
    pub events: &'a [EventInput<'a>],
}

/// Where an append went.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AppendResult {
    pub first_position: u64,
    /// For each stream append, in order: the version of its last event.
    pub stream_versions: Vec<u64>,
}

/// A domain's view of the log, kept up to date by the store and saved in its snapshots.
/// `apply` is called once for every event, in position order, also during recovery. An
/// event that names a data subject comes with its payload and metadata empty, always:
/// personal data never reaches a projection, so no snapshot holds it in the clear.
pub trait Projection: Send + Sync {
    /// A stable name that identifies its part of a snapshot.
    fn name(&self) -> &str;
    fn apply(&self, event: &EventRef<'_>);
    fn snapshot(&self) -> Vec<u8>;
    /// Replaces the state with a snapshot's; an error makes the store rebuild from the log.
    fn restore(&self, bytes: &[u8]) -> Result<()>;
    /// Back to the empty state (before a rebuild from the log).
    fn reset(&self);
    /// Called for every lifecycle entry (docs/lifecycle.md), in log order with the
    /// events, during recovery too.
    fn apply_lifecycle(&self, _op: &LifecycleOp, _position: u64) {}
    /// Asked before a lifecycle request is appended: an error refuses it; `Some(v)` says
    /// the request's stream must be at version `v` (see `lifecycle::guard`).
    fn check_lifecycle(&self, _req: &LifecycleRequest<'_>) -> Result<Option<u64>> {
        Ok(None)
    }
}

/// A stream, as `list_streams` reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StreamInfo {
    pub name: String,
    /// The version of its last event.
    pub version: u64,
    /// The position of its first event.
    pub first_position: u64,
}
