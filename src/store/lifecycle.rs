//! Data that leaves: soft and hard deletion of a stream, truncation, retention rules
//! (docs/lifecycle.md). Shared by both engines: the requests a caller makes, the operations
//! the log stores (each an entry with a position), their encoding, and the state that says
//! which events are removed (`Removals`).
//!
//! A removed event leaves every read at once; the bytes go later (compaction, or a DELETE
//! on PostgreSQL). Nothing here reads or writes storage.

use super::ids::{hex, EventId};
use super::{ExpectedVersion, FastMap, Projection};
use crate::error::{Error, ErrorKind, Result};
use crate::wal::record::{get_varint, put_varint};

/// A retention rule: 0 means no limit of that kind; both 0 means no rule.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Rule {
    /// Keep the stream's last `max_count` versions.
    pub max_count: u64,
    /// Keep events whose timestamp is at most this old (microseconds).
    pub max_age_us: u64,
}

impl Rule {
    pub fn is_none(&self) -> bool {
        self.max_count == 0 && self.max_age_us == 0
    }
}

/// What a caller asks for. Stream operations carry an expected version like appends
/// (truncation from the C API passes `Any`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LifecycleRequest<'a> {
    Delete {
        stream: &'a str,
        expected: ExpectedVersion,
        hard: bool,
    },
    Truncate {
        stream: &'a str,
        expected: ExpectedVersion,
        before_version: u64,
    },
    Retention {
        target: &'a str,
        /// `target` is a category prefix (every stream whose name starts with it).
        category: bool,
        rule: Rule,
    },
}

impl<'a> LifecycleRequest<'a> {
    /// The stream a stream operation is about.
    pub fn stream(&self) -> Option<&'a str> {
        match *self {
            LifecycleRequest::Delete { stream, .. } | LifecycleRequest::Truncate { stream, .. } => {
                Some(stream)
            }
            LifecycleRequest::Retention { .. } => None,
        }
    }

    /// The same request with another expected version (stream operations only).
    pub fn with_expected(self, e: ExpectedVersion) -> Self {
        match self {
            LifecycleRequest::Delete { stream, hard, .. } => LifecycleRequest::Delete {
                stream,
                expected: e,
                hard,
            },
            LifecycleRequest::Truncate {
                stream,
                before_version,
                ..
            } => LifecycleRequest::Truncate {
                stream,
                expected: e,
                before_version,
            },
            r => r,
        }
    }

    /// Checks what can be checked without the store: names and values. The stream's
    /// state (exists, tombstone, version bounds) is the backend's to check, atomically
    /// with the append of the operation.
    pub fn validate(&self) -> Result<()> {
        match *self {
            LifecycleRequest::Delete {
                stream, expected, ..
            } => {
                super::check_name("stream name", stream, false)?;
                if expected == ExpectedVersion::NoStream {
                    return Err(Error::invalid(format!(
                        "deleting stream '{stream}' with expected version 'no stream': a delete needs a stream (use ANY, EXISTS or its version)"
                    )));
                }
                Ok(())
            }
            LifecycleRequest::Truncate { stream, .. } => {
                super::check_name("stream name", stream, false)
            }
            LifecycleRequest::Retention {
                target, category, ..
            } => super::check_name(
                if category {
                    "category prefix"
                } else {
                    "stream name"
                },
                target,
                category,
            ),
        }
    }

    /// The expected version a stream operation carries (`Any` for a rule).
    pub fn expected(&self) -> ExpectedVersion {
        match *self {
            LifecycleRequest::Delete { expected, .. }
            | LifecycleRequest::Truncate { expected, .. } => expected,
            LifecycleRequest::Retention { .. } => ExpectedVersion::Any,
        }
    }

    /// The operation to store, given the stream as the writer sees it when the operation
    /// is appended (atomically with the checks). Checked in this order on every engine
    /// (docs/lifecycle.md): a hard-deleted stream (`StreamDeleted`), no such stream
    /// (`NotFound`: never written; for a soft delete or a truncation also soft-deleted and
    /// not appended to since), the expected version (`WrongExpectedVersion`, with the
    /// actual one), then the operation's own bounds.
    pub fn to_op(&self, view: &WriterView) -> Result<LifecycleOp> {
        let (stream, hard) = match *self {
            LifecycleRequest::Retention {
                target,
                category,
                rule,
            } => {
                return Ok(LifecycleOp::Retention {
                    target: target.to_owned(),
                    category,
                    rule,
                })
            }
            LifecycleRequest::Delete { stream, hard, .. } => (stream, hard),
            LifecycleRequest::Truncate { stream, .. } => (stream, false),
        };
        if view.tombstone {
            return Err(stream_deleted(stream));
        }
        // A hard delete also tombstones a soft-deleted stream (at its kept version).
        let exists = if hard {
            view.last_version
        } else {
            view.version()
        };
        let Some(version) = exists else {
            return Err(match view.last_version {
                Some(v) => Error::new(
                    ErrorKind::NotFound,
                    format!(
                        "stream '{stream}' was soft-deleted (at version {v}) and not appended to since: it does not exist"
                    ),
                ),
                None => super::no_such_stream(stream),
            });
        };
        let expected = self.expected();
        if !expected.holds(view.version()) {
            return Err(wrong_expected(stream, expected, view.version()));
        }
        let stream = stream.to_owned();
        match *self {
            LifecycleRequest::Truncate { before_version, .. } => {
                if before_version > version + 1 {
                    return Err(Error::invalid(format!(
                        "truncating stream '{stream}' before version {before_version}: it is at version {version}, so at most {} (which removes every event)",
                        version + 1
                    )));
                }
                Ok(LifecycleOp::Truncate {
                    stream,
                    before_version,
                    version,
                })
            }
            _ => Ok(LifecycleOp::Delete {
                stream,
                hard,
                version,
            }),
        }
    }
}

/// A stream as a writer sees it when an operation on it (an append, a lifecycle entry)
/// is checked: what expected versions are checked against (docs/lifecycle.md).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct WriterView {
    /// Its last version ever (`None`: it never had an event): versions continue after it,
    /// a soft delete's and a truncation's included.
    pub last_version: Option<u64>,
    /// Soft-deleted and not appended to since: for writers there is no such stream.
    pub deleted: bool,
    /// Hard-deleted.
    pub tombstone: bool,
}

impl WriterView {
    /// The version an expected version is checked against: `None` when there is no
    /// stream (never written, or soft-deleted and not appended to since).
    pub fn version(&self) -> Option<u64> {
        self.last_version.filter(|_| !self.deleted)
    }
}

/// The error for a stream operation whose expected version does not hold: worded as for
/// an append to the stream, with the actual version in the detail.
pub fn wrong_expected(stream: &str, expected: ExpectedVersion, actual: Option<u64>) -> Error {
    let part = super::StreamAppend {
        stream,
        expected,
        events: &[],
    };
    super::wrong_expected_version(0, &part, actual).without_part()
}

impl LifecycleRequest<'_> {
    /// Whether a stored operation is what this request asks for: a retry with the same id
    /// must ask for the same thing (its expected version aside: the stream has moved on).
    pub fn is_retry_of(&self, op: &LifecycleOp) -> bool {
        match (*self, op) {
            (
                LifecycleRequest::Delete { stream, hard, .. },
                LifecycleOp::Delete {
                    stream: s, hard: h, ..
                },
            ) => stream == s && hard == *h,
            (
                LifecycleRequest::Truncate {
                    stream,
                    before_version,
                    ..
                },
                LifecycleOp::Truncate {
                    stream: s,
                    before_version: b,
                    ..
                },
            ) => stream == s && before_version == *b,
            (
                LifecycleRequest::Retention {
                    target,
                    category,
                    rule,
                },
                LifecycleOp::Retention {
                    target: t,
                    category: c,
                    rule: r,
                },
            ) => target == t && category == *c && rule == *r,
            _ => false,
        }
    }

    /// The request in words, for messages ("soft delete of stream 'x'").
    pub fn describe(&self) -> String {
        match *self {
            LifecycleRequest::Delete { stream, hard, .. } => format!(
                "{} delete of stream '{stream}'",
                if hard { "hard" } else { "soft" }
            ),
            LifecycleRequest::Truncate {
                stream,
                before_version,
                ..
            } => format!("truncation of stream '{stream}' before version {before_version}"),
            LifecycleRequest::Retention {
                target, category, ..
            } => format!(
                "retention rule of {} '{target}'",
                if category { "category" } else { "stream" }
            ),
        }
    }
}

/// The error for an event's id that the lifecycle entry at `position` holds.
pub fn id_of_entry(id: &EventId, position: u64, op: &LifecycleOp) -> Error {
    Error::new(
        ErrorKind::AlreadyExists,
        format!(
            "id {} was given to the lifecycle entry at position {position} ({}); nothing was written",
            hex(id),
            op.describe()
        ),
    )
    .at_position(position)
}

/// The error for a lifecycle request whose id `holder` (at `position`; `what` it is)
/// has: another operation, or an event.
pub fn id_taken(
    id: &EventId,
    req: &LifecycleRequest<'_>,
    position: u64,
    holder: &str,
    what: &str,
) -> Error {
    Error::new(
        ErrorKind::AlreadyExists,
        format!(
            "id {} was given to {holder} at position {position} ({what}), not to a {}; nothing was written",
            hex(id),
            req.describe()
        ),
    )
    .at_position(position)
}

/// Asks every projection whether `req` may go ahead (the account domain guards its
/// streams); a projection that answers with a version makes the operation's expected
/// version exactly that one, so that its check and the append are one step on every
/// engine. Backends call it before they apply the request.
pub fn guard<'a>(
    projections: &[std::sync::Arc<dyn Projection>],
    req: LifecycleRequest<'a>,
) -> Result<LifecycleRequest<'a>> {
    let mut req = req;
    for p in projections {
        let Some(v) = p.check_lifecycle(&req)? else {
            continue;
        };
        let stream = req.stream().unwrap_or("");
        match req.expected() {
            ExpectedVersion::Exact(x) if x != v => {
                return Err(wrong_expected(stream, ExpectedVersion::Exact(x), Some(v)))
            }
            _ => req = req.with_expected(ExpectedVersion::Exact(v)),
        }
    }
    Ok(req)
}

/// A store handle's clock (`StoreOptions::clock`), never going back: rules by age are
/// judged by it, and a clock that jumps back must not bring removed events back.
pub struct HandleClock {
    clock: super::Clock,
    /// The latest time read.
    floor: std::sync::atomic::AtomicU64,
}

impl HandleClock {
    pub fn new(clock: super::Clock) -> HandleClock {
        HandleClock {
            clock,
            floor: std::sync::atomic::AtomicU64::new(0),
        }
    }

    /// Now, in microseconds since the Unix epoch: the clock, or the latest time read
    /// before if the clock is behind it.
    pub fn now_us(&self) -> u64 {
        let t = self.clock.now_us();
        let before = self.floor.fetch_max(t, std::sync::atomic::Ordering::AcqRel);
        before.max(t)
    }
}

/// What a compaction did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CompactInfo {
    /// Segments rewritten (file engine) or tables cleaned (PostgreSQL).
    pub segments_rewritten: u64,
    /// Their bytes before and after.
    pub bytes_before: u64,
    pub bytes_after: u64,
    /// Removed events whose bytes (records, rows) are gone now.
    pub events_erased: u64,
    pub duration: std::time::Duration,
}

/// An operation as the log stores it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LifecycleOp {
    /// Removes every event of `stream` up to `version` (its version when deleted);
    /// `hard` also refuses the name from then on.
    Delete {
        stream: String,
        hard: bool,
        version: u64,
    },
    /// Removes the events of `stream` with a version below `before_version`; `version`
    /// is the stream's version when it was appended.
    Truncate {
        stream: String,
        before_version: u64,
        version: u64,
    },
    /// Sets (or, with an empty rule, clears) the rule of a stream or a category prefix.
    Retention {
        target: String,
        category: bool,
        rule: Rule,
    },
    /// A durable consumer's record where the log keeps it (docs/consumers.md): it removes
    /// nothing.
    Consumer(super::consumer::ConsumerOp),
    /// A data subject forgotten (`subjects`): its key is destroyed; its events stay, read
    /// as erased. It removes no position.
    Forget { subject: String },
}

const KIND_DELETE_SOFT: u8 = 1;
const KIND_DELETE_HARD: u8 = 2;
const KIND_TRUNCATE: u8 = 3;
const KIND_RETENTION_STREAM: u8 = 4;
const KIND_RETENTION_CATEGORY: u8 = 5;
const KIND_CONSUMER: u8 = 6;
const KIND_FORGET: u8 = 7;

impl LifecycleOp {
    /// The stream a stream operation is about.
    pub fn stream(&self) -> Option<&str> {
        match self {
            LifecycleOp::Delete { stream, .. } | LifecycleOp::Truncate { stream, .. } => {
                Some(stream)
            }
            LifecycleOp::Retention { .. }
            | LifecycleOp::Consumer(_)
            | LifecycleOp::Forget { .. } => None,
        }
    }

    /// Whether it takes events out of reads (every operation but a consumer's record and
    /// a forgotten subject, whose events stay, erased).
    pub fn removes(&self) -> bool {
        !matches!(self, LifecycleOp::Consumer(_) | LifecycleOp::Forget { .. })
    }

    /// The stream's version when the operation was appended (stream operations).
    pub fn version(&self) -> Option<u64> {
        match self {
            LifecycleOp::Delete { version, .. } | LifecycleOp::Truncate { version, .. } => {
                Some(*version)
            }
            LifecycleOp::Retention { .. }
            | LifecycleOp::Consumer(_)
            | LifecycleOp::Forget { .. } => None,
        }
    }

    /// Appends the operation's portable encoding (the same bytes on both engines): a kind
    /// byte, then varints and the name (a consumer's record: its own encoding).
    pub fn encode_into(&self, out: &mut Vec<u8>) {
        let (kind, name, a, b) = match self {
            LifecycleOp::Consumer(c) => {
                out.push(KIND_CONSUMER);
                c.encode_into(out);
                return;
            }
            LifecycleOp::Delete {
                stream,
                hard,
                version,
            } => (
                if *hard {
                    KIND_DELETE_HARD
                } else {
                    KIND_DELETE_SOFT
                },
                stream,
                *version,
                0,
            ),
            LifecycleOp::Truncate {
                stream,
                before_version,
                version,
            } => (KIND_TRUNCATE, stream, *version, *before_version),
            LifecycleOp::Retention {
                target,
                category,
                rule,
            } => (
                if *category {
                    KIND_RETENTION_CATEGORY
                } else {
                    KIND_RETENTION_STREAM
                },
                target,
                rule.max_count,
                rule.max_age_us,
            ),
            LifecycleOp::Forget { subject } => (KIND_FORGET, subject, 0, 0),
        };
        out.push(kind);
        put_varint(out, a);
        put_varint(out, b);
        put_varint(out, name.len() as u64);
        out.extend_from_slice(name.as_bytes());
    }

    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::new();
        self.encode_into(&mut out);
        out
    }

    /// Decodes `encode`'s bytes; the whole of `buf` must be the operation.
    pub fn decode(buf: &[u8]) -> Result<LifecycleOp> {
        let bad = |what: &str| Error::corrupt(format!("lifecycle entry: {what}"));
        let (&kind, rest) = buf.split_first().ok_or_else(|| bad("empty"))?;
        if kind == KIND_CONSUMER {
            return super::consumer::ConsumerOp::decode(rest).map(LifecycleOp::Consumer);
        }
        let (a, at) = get_varint(buf, 1).map_err(|_| bad("bad varint"))?;
        let (b, at) = get_varint(buf, at).map_err(|_| bad("bad varint"))?;
        let (n, at) = get_varint(buf, at).map_err(|_| bad("bad varint"))?;
        let name = usize::try_from(n)
            .ok()
            .and_then(|n| at.checked_add(n))
            .filter(|&end| end == buf.len())
            .map(|end| &buf[at..end])
            .ok_or_else(|| bad("the name does not end the entry"))?;
        let name = std::str::from_utf8(name)
            .map_err(|_| bad("the name is not UTF-8"))?
            .to_owned();
        Ok(match kind {
            KIND_DELETE_SOFT | KIND_DELETE_HARD => LifecycleOp::Delete {
                stream: name,
                hard: kind == KIND_DELETE_HARD,
                version: a,
            },
            KIND_TRUNCATE => LifecycleOp::Truncate {
                stream: name,
                before_version: b,
                version: a,
            },
            KIND_RETENTION_STREAM | KIND_RETENTION_CATEGORY => LifecycleOp::Retention {
                target: name,
                category: kind == KIND_RETENTION_CATEGORY,
                rule: Rule {
                    max_count: a,
                    max_age_us: b,
                },
            },
            KIND_FORGET => LifecycleOp::Forget { subject: name },
            k => return Err(bad(&format!("unknown kind {k}"))),
        })
    }

    /// Words for messages ("delete of stream 'x'").
    pub fn describe(&self) -> String {
        match self {
            LifecycleOp::Delete { stream, hard, .. } => format!(
                "{} delete of stream '{stream}'",
                if *hard { "hard" } else { "soft" }
            ),
            LifecycleOp::Truncate {
                stream,
                before_version,
                ..
            } => format!("truncation of stream '{stream}' before version {before_version}"),
            LifecycleOp::Retention {
                target, category, ..
            } => format!(
                "retention rule of {} '{target}'",
                if *category { "category" } else { "stream" }
            ),
            LifecycleOp::Consumer(c) => c.describe(),
            LifecycleOp::Forget { subject } => format!("forget of subject '{subject}'"),
        }
    }
}

/// The error for any read or write of a hard-deleted stream.
pub fn stream_deleted(stream: &str) -> Error {
    Error::new(
        ErrorKind::StreamDeleted,
        format!("stream '{stream}' was hard-deleted: its name can never be used again"),
    )
}

/// What deletions, truncations and rules no longer in force did to one stream.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct StreamState {
    /// Versions below this are removed (deletes and truncations).
    pub removed_before: u64,
    pub tombstone: bool,
    /// Versions below this were removed by a rule in force before the stream's rule
    /// changed (by count), so they stay removed.
    pub ruled_before: u64,
    /// Events stamped before this (microseconds) were removed by a rule in force before
    /// the stream's rule changed (by age, at the change's time), so they stay removed.
    pub ruled_before_us: u64,
}

/// How one stream's events are judged, resolved once (a cursor keeps it while it reads
/// the same stream).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct StreamView {
    pub tombstone: bool,
    /// Versions below this are removed (deletes, truncations, the count rule).
    pub first_kept: u64,
    /// Events older than this (microseconds since the epoch) are removed; 0: none by age.
    pub min_timestamp: u64,
}

impl StreamView {
    pub fn removes(&self, version: u64, timestamp_us: u64) -> bool {
        self.tombstone || version < self.first_kept || timestamp_us < self.min_timestamp
    }

    /// Whether this view removes nothing at all (the fast path of readers).
    pub fn keeps_all(&self) -> bool {
        !self.tombstone && self.first_kept == 0 && self.min_timestamp == 0
    }
}

/// Which events are removed: the state every lifecycle entry so far has built, in log
/// order. Events without a stream are never removed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Removals {
    streams: FastMap<Box<str>, StreamState>,
    stream_rules: FastMap<Box<str>, Rule>,
    /// Longest prefix first.
    prefix_rules: Vec<(Box<str>, Rule)>,
    /// Lifecycle entries applied.
    entries: u64,
}

impl Removals {
    /// No entry yet: nothing is removed (readers skip every check).
    pub fn is_empty(&self) -> bool {
        self.entries == 0
    }

    pub fn entries(&self) -> u64 {
        self.entries
    }

    /// Takes in the next lifecycle entry of the log, made at `at_us`, the file engine's
    /// way: `streams` are the streams of the log so far (name and version at this point
    /// of the log) that a rule entry may apply to (every stream whose name the target is,
    /// or starts with, may be more). For each whose rule in force changes, what the rule
    /// until then removed by this time is folded into its state first: changing or
    /// clearing a rule never brings an event back (docs/lifecycle.md). PostgreSQL deletes
    /// those rows instead (`set_rule`), and takes its rules in with `apply`.
    pub fn apply_in_log<'s>(
        &mut self,
        op: &LifecycleOp,
        at_us: u64,
        streams: impl IntoIterator<Item = (&'s str, Option<u64>)>,
    ) {
        let LifecycleOp::Retention {
            target, category, ..
        } = op
        else {
            self.apply(op);
            return;
        };
        let before: Vec<(&str, Option<u64>, Rule)> = streams
            .into_iter()
            .filter(|(name, _)| match category {
                true => name.starts_with(target.as_str()),
                false => *name == target.as_str(),
            })
            .filter_map(|(name, last)| Some((name, last, self.rule_for(name)?)))
            .collect();
        self.apply(op);
        for (name, last, old) in before {
            if self.rule_for(name) == Some(old) {
                continue;
            }
            let s = self.streams.entry(name.into()).or_default();
            if let (true, Some(last)) = (old.max_count > 0, last) {
                s.ruled_before = s.ruled_before.max((last + 1).saturating_sub(old.max_count));
            }
            if old.max_age_us > 0 {
                s.ruled_before_us = s.ruled_before_us.max(at_us.saturating_sub(old.max_age_us));
            }
        }
    }

    /// Takes in the next lifecycle entry of the log (rules replace rules as they are:
    /// `apply_in_log` keeps what a changed rule removed).
    pub fn apply(&mut self, op: &LifecycleOp) {
        if !op.removes() {
            return;
        }
        self.entries += 1;
        match op {
            LifecycleOp::Consumer(_) | LifecycleOp::Forget { .. } => {}
            LifecycleOp::Delete {
                stream,
                hard,
                version,
            } => {
                let s = self.streams.entry(stream.as_str().into()).or_default();
                s.removed_before = s.removed_before.max(version + 1);
                s.tombstone |= *hard;
            }
            LifecycleOp::Truncate {
                stream,
                before_version,
                ..
            } => {
                let s = self.streams.entry(stream.as_str().into()).or_default();
                s.removed_before = s.removed_before.max(*before_version);
            }
            LifecycleOp::Retention {
                target,
                category: false,
                rule,
            } => {
                if rule.is_none() {
                    self.stream_rules.remove(target.as_str());
                } else {
                    self.stream_rules.insert(target.as_str().into(), *rule);
                }
            }
            LifecycleOp::Retention {
                target,
                category: true,
                rule,
            } => {
                self.prefix_rules.retain(|(p, _)| **p != **target);
                if !rule.is_none() {
                    self.prefix_rules.push((target.as_str().into(), *rule));
                    self.prefix_rules
                        .sort_by(|a, b| b.0.len().cmp(&a.0.len()).then(a.0.cmp(&b.0)));
                }
            }
        }
    }

    /// What deletes and truncations did to `stream`.
    pub fn stream(&self, stream: &str) -> Option<&StreamState> {
        if self.streams.is_empty() {
            return None;
        }
        self.streams.get(stream)
    }

    pub fn is_tombstoned(&self, stream: &str) -> bool {
        self.stream(stream).is_some_and(|s| s.tombstone)
    }

    /// The rule in force for `stream`: its own, else the longest matching prefix's.
    pub fn rule_for(&self, stream: &str) -> Option<Rule> {
        if let Some(r) = self.stream_rules.get(stream) {
            return Some(*r);
        }
        self.prefix_rules
            .iter()
            .find(|(p, _)| stream.starts_with(&**p))
            .map(|(_, r)| *r)
    }

    /// The rule set on exactly this target.
    pub fn rule_of(&self, target: &str, category: bool) -> Option<Rule> {
        if category {
            self.prefix_rules
                .iter()
                .find(|(p, _)| **p == *target)
                .map(|(_, r)| *r)
        } else {
            self.stream_rules.get(target).copied()
        }
    }

    /// Every rule: (target, category, rule), streams' first, in name order.
    pub fn rules(&self) -> Vec<(String, bool, Rule)> {
        let mut v: Vec<(String, bool, Rule)> = self
            .stream_rules
            .iter()
            .map(|(k, r)| (k.to_string(), false, *r))
            .collect();
        v.sort();
        let mut p: Vec<(String, bool, Rule)> = self
            .prefix_rules
            .iter()
            .map(|(k, r)| (k.to_string(), true, *r))
            .collect();
        p.sort();
        v.extend(p);
        v
    }

    /// How `stream`'s events are judged now: `last_version` is the stream's version (its
    /// last event's), `now_us` the store's clock.
    pub fn view(&self, stream: &str, last_version: Option<u64>, now_us: u64) -> StreamView {
        let mut v = StreamView::default();
        if stream.is_empty() || self.is_empty() {
            return v;
        }
        if let Some(s) = self.stream(stream) {
            v.tombstone = s.tombstone;
            v.first_kept = s.removed_before.max(s.ruled_before);
            v.min_timestamp = s.ruled_before_us;
        }
        if let Some(rule) = self.rule_for(stream) {
            if let (Some(last), true) = (last_version, rule.max_count > 0) {
                v.first_kept = v.first_kept.max((last + 1).saturating_sub(rule.max_count));
            }
            if rule.max_age_us > 0 {
                v.min_timestamp = v.min_timestamp.max(now_us.saturating_sub(rule.max_age_us));
            }
        }
        v
    }

    /// Whether one event is removed (see `view` for a stream's many events).
    pub fn is_removed(
        &self,
        stream: &str,
        version: u64,
        timestamp_us: u64,
        last_version: Option<u64>,
        now_us: u64,
    ) -> bool {
        !stream.is_empty()
            && !self.is_empty()
            && self
                .view(stream, last_version, now_us)
                .removes(version, timestamp_us)
    }

    /// The state for a snapshot: entries, streams, stream rules, prefix rules.
    pub fn encode_into(&self, out: &mut Vec<u8>) {
        put_varint(out, self.entries);
        let mut streams: Vec<_> = self.streams.iter().collect();
        streams.sort_by(|a, b| a.0.cmp(b.0));
        put_varint(out, streams.len() as u64);
        for (name, s) in streams {
            put_name(out, name);
            put_varint(out, s.removed_before);
            out.push(s.tombstone as u8);
            put_varint(out, s.ruled_before);
            put_varint(out, s.ruled_before_us);
        }
        let rules = self.rules();
        put_varint(out, rules.len() as u64);
        for (target, category, r) in rules {
            put_name(out, &target);
            out.push(category as u8);
            put_varint(out, r.max_count);
            put_varint(out, r.max_age_us);
        }
    }

    /// Decodes `encode_into`'s bytes from `buf[*at..]`, advancing `at`.
    pub fn decode(buf: &[u8], at: &mut usize) -> Result<Removals> {
        let mut r = Removals {
            entries: varint(buf, at)?,
            ..Removals::default()
        };
        for _ in 0..varint(buf, at)? {
            let name = name(buf, at)?;
            let removed_before = varint(buf, at)?;
            let tombstone = byte(buf, at)? != 0;
            r.streams.insert(
                name.into(),
                StreamState {
                    removed_before,
                    tombstone,
                    ruled_before: varint(buf, at)?,
                    ruled_before_us: varint(buf, at)?,
                },
            );
        }
        let entries = r.entries;
        for _ in 0..varint(buf, at)? {
            let target = name(buf, at)?;
            let category = byte(buf, at)? != 0;
            let rule = Rule {
                max_count: varint(buf, at)?,
                max_age_us: varint(buf, at)?,
            };
            r.apply(&LifecycleOp::Retention {
                target,
                category,
                rule,
            });
        }
        r.entries = entries;
        Ok(r)
    }
}

fn put_name(out: &mut Vec<u8>, name: &str) {
    put_varint(out, name.len() as u64);
    out.extend_from_slice(name.as_bytes());
}

fn varint(buf: &[u8], at: &mut usize) -> Result<u64> {
    let (v, n) = get_varint(buf, *at).map_err(|_| Error::corrupt("lifecycle state: bad varint"))?;
    *at = n;
    Ok(v)
}

fn byte(buf: &[u8], at: &mut usize) -> Result<u8> {
    let b = *buf
        .get(*at)
        .ok_or_else(|| Error::corrupt("lifecycle state: cut short"))?;
    *at += 1;
    Ok(b)
}

fn name(buf: &[u8], at: &mut usize) -> Result<String> {
    let n = varint(buf, at)?;
    let end = usize::try_from(n)
        .ok()
        .and_then(|n| at.checked_add(n))
        .filter(|&e| e <= buf.len())
        .ok_or_else(|| Error::corrupt("lifecycle state: a name runs past the end"))?;
    let s = std::str::from_utf8(&buf[*at..end])
        .map_err(|_| Error::corrupt("lifecycle state: a name is not UTF-8"))?;
    *at = end;
    Ok(s.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn del(stream: &str, hard: bool, version: u64) -> LifecycleOp {
        LifecycleOp::Delete {
            stream: stream.into(),
            hard,
            version,
        }
    }

    #[test]
    fn operations_round_trip_through_their_encoding() {
        let ops = [
            del("a", false, 0),
            del("ü-stream", true, u64::MAX - 1),
            LifecycleOp::Truncate {
                stream: "t".into(),
                before_version: 5,
                version: 9,
            },
            LifecycleOp::Retention {
                target: "".into(),
                category: true,
                rule: Rule {
                    max_count: 3,
                    max_age_us: 7_000_000,
                },
            },
            LifecycleOp::Retention {
                target: "s".into(),
                category: false,
                rule: Rule::default(),
            },
        ];
        for op in ops {
            let bytes = op.encode();
            assert_eq!(LifecycleOp::decode(&bytes).unwrap(), op);
            // Cut anywhere, or with a byte more, it is refused, never misread.
            for cut in 0..bytes.len() {
                assert!(
                    LifecycleOp::decode(&bytes[..cut]).is_err(),
                    "{op:?} cut at {cut}"
                );
            }
            let mut longer = bytes.clone();
            longer.push(0);
            assert!(LifecycleOp::decode(&longer).is_err());
        }
        assert!(LifecycleOp::decode(&[9, 0, 0, 0]).is_err());
    }

    #[test]
    fn deletes_and_truncations_remove_versions_and_never_bring_events_back() {
        let mut r = Removals::default();
        assert!(r.is_empty());
        assert!(!r.is_removed("s", 0, 0, Some(9), 0));
        r.apply(&LifecycleOp::Truncate {
            stream: "s".into(),
            before_version: 4,
            version: 9,
        });
        assert!(r.is_removed("s", 3, 0, Some(9), 0));
        assert!(!r.is_removed("s", 4, 0, Some(9), 0));
        // A lower truncation later removes nothing more and restores nothing.
        r.apply(&LifecycleOp::Truncate {
            stream: "s".into(),
            before_version: 2,
            version: 9,
        });
        assert!(r.is_removed("s", 3, 0, Some(9), 0));
        r.apply(&del("s", false, 9));
        assert!(r.is_removed("s", 9, 0, Some(9), 0));
        // Events appended after a soft delete are kept.
        assert!(!r.is_removed("s", 10, 0, Some(10), 0));
        assert!(!r.is_tombstoned("s"));
        r.apply(&del("s", true, 10));
        assert!(r.is_tombstoned("s"));
        assert!(r.is_removed("s", 11, 0, Some(11), 0));
        // Other streams and stream-less events are untouched.
        assert!(!r.is_removed("s2", 0, 0, Some(0), 0));
        assert!(!r.is_removed("", 0, 0, None, 0));
    }

    #[test]
    fn the_rule_in_force_is_the_streams_own_else_the_longest_prefix() {
        let mut r = Removals::default();
        let rule = |c| Rule {
            max_count: c,
            max_age_us: 0,
        };
        let set = |r: &mut Removals, t: &str, cat: bool, rule: Rule| {
            r.apply(&LifecycleOp::Retention {
                target: t.into(),
                category: cat,
                rule,
            })
        };
        set(&mut r, "tele", true, rule(5));
        set(&mut r, "telemetry-", true, rule(3));
        set(&mut r, "telemetry-x", false, rule(1));
        assert_eq!(r.rule_for("telemetry-x"), Some(rule(1)));
        assert_eq!(r.rule_for("telemetry-y"), Some(rule(3)));
        assert_eq!(r.rule_for("telex"), Some(rule(5)));
        assert_eq!(r.rule_for("other"), None);
        // Count: the last 3 versions of a stream at version 9 are 7, 8, 9.
        assert!(r.is_removed("telemetry-y", 6, 0, Some(9), 0));
        assert!(!r.is_removed("telemetry-y", 7, 0, Some(9), 0));
        // Clearing the longer prefix lets the shorter one apply.
        set(&mut r, "telemetry-", true, Rule::default());
        assert_eq!(r.rule_for("telemetry-y"), Some(rule(5)));
        assert_eq!(r.rule_of("telemetry-", true), None);
        assert_eq!(r.rule_of("tele", true), Some(rule(5)));
        set(&mut r, "telemetry-x", false, Rule::default());
        assert_eq!(r.rule_for("telemetry-x"), Some(rule(5)));
    }

    #[test]
    fn age_rules_remove_by_the_clock_of_the_read() {
        let mut r = Removals::default();
        r.apply(&LifecycleOp::Retention {
            target: "m-".into(),
            category: true,
            rule: Rule {
                max_count: 0,
                max_age_us: 1_000,
            },
        });
        assert!(!r.is_removed("m-1", 0, 5_000, Some(0), 5_500));
        assert!(!r.is_removed("m-1", 0, 5_000, Some(0), 6_000));
        assert!(r.is_removed("m-1", 0, 5_000, Some(0), 6_001));
        // A clock before the epoch's first millisecond removes nothing.
        assert!(!r.is_removed("m-1", 0, 0, Some(0), 500));
    }

    #[test]
    fn the_state_round_trips_through_its_snapshot_encoding() {
        let mut r = Removals::default();
        r.apply(&del("a", true, 3));
        r.apply(&LifecycleOp::Truncate {
            stream: "b".into(),
            before_version: 2,
            version: 5,
        });
        r.apply(&LifecycleOp::Retention {
            target: "c-".into(),
            category: true,
            rule: Rule {
                max_count: 1,
                max_age_us: 2,
            },
        });
        r.apply(&LifecycleOp::Retention {
            target: "d".into(),
            category: false,
            rule: Rule {
                max_count: 4,
                max_age_us: 0,
            },
        });
        let mut buf = vec![0xEE];
        r.encode_into(&mut buf);
        let mut at = 1;
        let back = Removals::decode(&buf, &mut at).unwrap();
        assert_eq!(at, buf.len());
        assert_eq!(back, r);
        for cut in 1..buf.len() {
            let mut at = 1;
            assert!(
                Removals::decode(&buf[..cut], &mut at).is_err(),
                "cut at {cut}"
            );
        }
    }

    #[test]
    fn checks_go_tombstone_then_no_stream_then_expected_version_then_bounds() {
        use ExpectedVersion::{Any, Exact, Exists};
        let kind = |r: &LifecycleRequest<'_>, v: &WriterView| r.to_op(v).map_err(|e| e.kind);
        let truncate = |expected, before_version| LifecycleRequest::Truncate {
            stream: "s",
            expected,
            before_version,
        };
        let delete = |expected, hard| LifecycleRequest::Delete {
            stream: "s",
            expected,
            hard,
        };
        let at9 = WriterView {
            last_version: Some(9),
            ..WriterView::default()
        };
        // A wrong expected version before the bounds; its detail has the version.
        let e = truncate(Exact(3), 99).to_op(&at9).unwrap_err();
        assert_eq!(e.kind, ErrorKind::WrongExpectedVersion);
        assert_eq!(e.detail().actual_version, Some(Some(9)));
        assert_eq!(
            kind(&truncate(Exact(9), 99), &at9).unwrap_err(),
            ErrorKind::InvalidArgument
        );
        // No stream before the expected version; a tombstone before both.
        let never = WriterView::default();
        assert_eq!(
            kind(&truncate(Exact(3), 99), &never),
            Err(ErrorKind::NotFound)
        );
        let tomb = WriterView {
            tombstone: true,
            ..never
        };
        assert_eq!(
            kind(&delete(Exact(3), true), &tomb),
            Err(ErrorKind::StreamDeleted)
        );
        // Soft-deleted and not appended to since: no stream for a soft delete and a
        // truncation; a hard delete with ANY tombstones it at its kept version, with
        // EXISTS or the old version it fails (actual: none).
        let deleted = WriterView {
            deleted: true,
            ..at9
        };
        assert_eq!(deleted.version(), None);
        assert_eq!(
            kind(&delete(Exact(9), false), &deleted),
            Err(ErrorKind::NotFound)
        );
        assert_eq!(kind(&truncate(Any, 1), &deleted), Err(ErrorKind::NotFound));
        assert_eq!(
            delete(Any, true).to_op(&deleted).unwrap(),
            del("s", true, 9)
        );
        for expected in [Exists, Exact(9)] {
            let e = delete(expected, true).to_op(&deleted).unwrap_err();
            assert_eq!(e.kind, ErrorKind::WrongExpectedVersion, "{expected:?}");
            assert_eq!(e.detail().actual_version, Some(None));
        }
    }

    #[test]
    fn a_changed_rule_keeps_removed_what_the_rule_before_it_removed() {
        let rule = |max_count, max_age_us| Rule {
            max_count,
            max_age_us,
        };
        let set = |target: &str, category, r| LifecycleOp::Retention {
            target: target.into(),
            category,
            rule: r,
        };
        let mut r = Removals::default();
        // t-1 at version 9 under "t-" keeping 2 (versions 8, 9) and 1 s of events.
        r.apply_in_log(&set("t-", true, rule(2, 1_000_000)), 5_000_000, []);
        assert!(r.is_removed("t-1", 7, 9_000_000, Some(9), 9_000_000));
        assert!(r.is_removed("t-1", 9, 3_000_000, Some(9), 5_000_000));
        // Cleared at 6 s: t-1 keeps what was left then; t-2 (no version) and a stream of
        // another prefix are untouched; a stream with its own rule keeps its own.
        r.apply_in_log(&set("u", false, rule(1, 0)), 5_500_000, [("u", Some(3))]);
        r.apply_in_log(
            &set("t-", true, Rule::default()),
            6_000_000,
            [("t-1", Some(9)), ("t-2", None), ("other", Some(4))],
        );
        assert_eq!(r.rule_for("t-1"), None);
        assert!(r.is_removed("t-1", 7, 9_000_000, Some(20), 9_000_000));
        assert!(!r.is_removed("t-1", 8, 5_000_000, Some(20), 9_000_000));
        assert!(r.is_removed("t-1", 8, 4_999_999, Some(20), 9_000_000));
        assert!(!r.is_removed("other", 0, 0, Some(4), 9_000_000));
        // A stream rule replaced by a looser one: the same.
        r.apply_in_log(&set("u", false, rule(3, 0)), 7_000_000, [("u", Some(3))]);
        assert!(r.is_removed("u", 2, 0, Some(3), 0));
        assert!(!r.is_removed("u", 3, 0, Some(3), 0));
        // An unchanged rule folds nothing more.
        r.apply_in_log(&set("u", false, rule(3, 0)), 8_000_000, [("u", Some(9))]);
        assert_eq!(r.stream("u").unwrap().ruled_before, 3);
        // What was folded is in the snapshot's encoding.
        let mut buf = Vec::new();
        r.encode_into(&mut buf);
        let mut at = 0;
        assert_eq!(Removals::decode(&buf, &mut at).unwrap(), r);
    }

    #[test]
    fn requests_are_checked_before_they_become_operations() {
        let d = LifecycleRequest::Delete {
            stream: "s",
            expected: ExpectedVersion::NoStream,
            hard: false,
        };
        assert_eq!(d.validate().unwrap_err().kind, ErrorKind::InvalidArgument);
        let d = d.with_expected(ExpectedVersion::Any);
        d.validate().unwrap();
        let never = WriterView::default();
        assert_eq!(d.to_op(&never).unwrap_err().kind, ErrorKind::NotFound);
        let at4 = WriterView {
            last_version: Some(4),
            ..WriterView::default()
        };
        assert_eq!(d.to_op(&at4).unwrap(), del("s", false, 4));
        let gone = WriterView {
            tombstone: true,
            ..at4
        };
        assert_eq!(d.to_op(&gone).unwrap_err().kind, ErrorKind::StreamDeleted);
        let t = LifecycleRequest::Truncate {
            stream: "s",
            expected: ExpectedVersion::Any,
            before_version: 6,
        };
        assert_eq!(t.to_op(&at4).unwrap_err().kind, ErrorKind::InvalidArgument);
        let at5 = WriterView {
            last_version: Some(5),
            ..at4
        };
        assert!(t.to_op(&at5).is_ok());
        let c = LifecycleRequest::Retention {
            target: "",
            category: true,
            rule: Rule::default(),
        };
        c.validate().unwrap();
        let s = LifecycleRequest::Retention {
            target: "",
            category: false,
            rule: Rule::default(),
        };
        assert_eq!(s.validate().unwrap_err().kind, ErrorKind::InvalidArgument);
    }
}
