//! Cursors over the log: windows of positions (or of a stream's versions) read from the
//! `chunks` table by its primary key (or its stream index), each chunk's arrays cut by
//! the server to the window, unpacked into events here, held in memory and handed out one
//! by one. Forward position cursors check that what they get is dense: a gap is
//! reported, never stepped over.

use super::uuid::StoredUuid;
use super::PgStore;
use crate::error::{Error, Result};
use crate::store::backend::{EventCursor, TailCursor};
use crate::store::{Event, EventRef};
use std::collections::VecDeque;
use std::sync::{Arc, LazyLock};

/// Positions (or versions) in one window of the backward, stream and category kinds.
const PAGE: u64 = 1000;

/// Positions in one window reading the log forward (read-all, subscriptions catching up):
/// large windows, the next one read ahead while the caller goes through the current one.
const FORWARD_PAGE: u64 = 10_000;

/// The chunks holding positions in [$1, $2), their arrays cut to those positions, in
/// position order (`extra` narrows them further). Backward reads reverse the window.
fn positions_sql(extra: &str) -> String {
    format!(
        "select {CHUNK_COLUMNS} from chunks c \
         cross join lateral (select greatest(1, $1 - c.first_pos + 1) as lo, \
                                    least(c.n::int8, $2 - c.first_pos) as hi) b \
         where c.first_pos >= (select coalesce(max(first_pos), 0) from chunks where first_pos <= $1) \
           and c.first_pos < $2 and b.lo <= b.hi {extra} \
         order by c.first_pos"
    )
}

/// The forward window query: positions in [$1, $2).
pub static FORWARD_SQL: LazyLock<String> = LazyLock::new(|| positions_sql(""));

/// The category window query: positions in [$1, $2) of streams starting with $3.
static CATEGORY_SQL: LazyLock<String> =
    LazyLock::new(|| positions_sql("and starts_with(c.stream, $3)"));

/// The stream window query: versions in [$1, $2) of stream $3.
static VERSIONS_SQL: LazyLock<String> = LazyLock::new(versions_sql);

/// The chunks of stream $3 holding versions in [$1, $2), cut to those versions, in
/// version order.
fn versions_sql() -> String {
    format!(
        "select {CHUNK_COLUMNS} from chunks c \
         cross join lateral (select greatest(1, $1 - c.first_version + 1) as lo, \
                                    least(c.n::int8, $2 - c.first_version) as hi) b \
         where c.stream = $3 and c.stream <> '' \
           and c.first_version >= (select coalesce(max(first_version), 0) from chunks \
                                   where stream = $3 and stream <> '' and first_version <= $1) \
           and c.first_version < $2 and b.lo <= b.hi \
         order by c.first_version"
    )
}

/// A forward window being read ahead: its first position and the query's task.
type Ahead = (
    u64,
    tokio::task::JoinHandle<Result<Vec<tokio_postgres::Row>>>,
);

/// The columns of a chunk every read selects, in `unpack`'s order: the arrays from the
/// chunk's `b.lo`-th event (1-based) to its `b.hi`-th.
pub const CHUNK_COLUMNS: &str = "c.first_pos, c.ts, c.stream, c.first_version, b.lo, \
     c.types[b.lo:b.hi], c.schema_versions[b.lo:b.hi], c.metadata[b.lo:b.hi], \
     c.data[b.lo:b.hi], c.ids[b.lo:b.hi]";

/// What a cursor reads.
pub enum Kind {
    /// Positions from `next` on, up to `until` (exclusive).
    Forward { until: u64 },
    /// Positions from `next` down to 0 (`more` false: done).
    Backward { more: bool },
    /// A stream's versions from `next` on.
    Stream { stream: String },
    /// A stream's versions from `next` down to 0.
    StreamBackward { stream: String, more: bool },
    /// Positions from `next` on, of streams starting with the prefix.
    Category { prefix: String },
}

pub struct PgCursor {
    store: Arc<PgStore>,
    kind: Kind,
    /// The position (or version, for stream kinds) to read next.
    next: u64,
    page: VecDeque<Event>,
    current: Option<Event>,
    ahead: Option<Ahead>,
}

/// The events of a chunk row selected with `CHUNK_COLUMNS`, in position order.
pub fn unpack(row: &tokio_postgres::Row, out: &mut Vec<Event>) -> Result<()> {
    let first_pos = row.get::<_, i64>(0) as u64;
    let ts = row.get::<_, i64>(1) as u64;
    let stream: &str = row.get(2);
    let first_version = row.get::<_, i64>(3) as u64;
    let skip = row.get::<_, i64>(4) as u64 - 1;
    let types: Vec<String> = row.get(5);
    let svs: Vec<i32> = row.get(6);
    let metas: Vec<Vec<u8>> = row.get(7);
    let datas: Vec<Vec<u8>> = row.get(8);
    let ids: Vec<Option<StoredUuid>> = row.get(9);
    let n = types.len();
    if svs.len() != n || metas.len() != n || datas.len() != n || ids.len() != n {
        return Err(Error::corrupt(format!(
            "the chunk at position {first_pos} has arrays of different lengths"
        ))
        .at_position(first_pos + skip));
    }
    let events = types.into_iter().zip(svs).zip(metas).zip(datas).zip(ids);
    for (k, ((((event_type, sv), metadata), payload), id)) in events.enumerate() {
        let k = skip + k as u64;
        out.push(Event {
            position: first_pos + k,
            timestamp_us: ts,
            stream: stream.to_owned(),
            stream_version: if stream.is_empty() {
                0
            } else {
                first_version + k
            },
            event_type,
            schema_version: sv as u32,
            metadata,
            payload,
            id: id.map(|i| i.0),
        });
    }
    Ok(())
}

/// The events of chunk rows, in the rows' order (each chunk's in position order).
pub fn unpack_all(rows: &[tokio_postgres::Row]) -> Result<Vec<Event>> {
    let mut out = Vec::new();
    for row in rows {
        unpack(row, &mut out)?;
    }
    Ok(out)
}

impl PgCursor {
    pub fn new(store: Arc<PgStore>, kind: Kind, next: u64) -> Self {
        PgCursor {
            store,
            kind,
            next,
            page: VecDeque::new(),
            current: None,
            ahead: None,
        }
    }

    /// Reads the next window into `page`.
    fn fetch(&mut self) -> Result<()> {
        let next = self.next;
        match &self.kind {
            Kind::Forward { until } => {
                if next >= *until {
                    return Ok(());
                }
                let until = *until;
                let end = until.min(next.saturating_add(FORWARD_PAGE));
                // A window read ahead is used if it found something; an empty one may be
                // older than events committed since, so the window is read again then.
                let mut rows = match self.ahead.take() {
                    Some((from, started)) if from == next => self.store.rows_ahead(started)?,
                    _ => Vec::new(),
                };
                if rows.is_empty() {
                    rows = self.store.query(
                        &FORWARD_SQL,
                        &[&(next as i64), &(end as i64)],
                        "reading the log",
                    )?;
                }
                self.take_dense(unpack_all(&rows)?)?;
                if self.next == end && self.next < until {
                    let to = until.min(self.next.saturating_add(FORWARD_PAGE));
                    let started = self.store.query_ahead(
                        FORWARD_SQL.as_str(),
                        self.next as i64,
                        to as i64,
                        "reading the log",
                    );
                    self.ahead = Some((self.next, started));
                }
            }
            Kind::Category { prefix } => {
                // Windows of positions below the head read before them (all committed and
                // visible, so a window is complete), until one has events of the category.
                let prefix = prefix.clone();
                let head = self.store.head()?;
                while self.page.is_empty() && self.next < head {
                    let end = head.min(self.next.saturating_add(FORWARD_PAGE));
                    let rows = self.store.query(
                        &CATEGORY_SQL,
                        &[&(self.next as i64), &(end as i64), &prefix],
                        "reading a category",
                    )?;
                    self.page.extend(unpack_all(&rows)?);
                    self.next = end;
                }
            }
            Kind::Backward { more: false } | Kind::StreamBackward { more: false, .. } => {}
            Kind::Backward { .. } => {
                let lo = (next + 1).saturating_sub(PAGE);
                let rows = self.store.query(
                    &FORWARD_SQL,
                    &[&(lo as i64), &((next + 1) as i64)],
                    "reading the log backward",
                )?;
                self.page.extend(unpack_all(&rows)?.into_iter().rev());
                self.step_down(lo);
            }
            Kind::Stream { stream } => {
                let end = next.saturating_add(PAGE);
                let rows = self.store.query(
                    &VERSIONS_SQL,
                    &[&(next as i64), &(end as i64), stream],
                    "reading a stream",
                )?;
                self.page.extend(unpack_all(&rows)?);
                if let Some(last) = self.page.back() {
                    self.next = last.stream_version + 1;
                }
            }
            Kind::StreamBackward { stream, .. } => {
                let lo = (next + 1).saturating_sub(PAGE);
                let rows = self.store.query(
                    &VERSIONS_SQL,
                    &[&(lo as i64), &((next + 1) as i64), stream],
                    "reading a stream backward",
                )?;
                self.page.extend(unpack_all(&rows)?.into_iter().rev());
                self.step_down(lo);
            }
        }
        Ok(())
    }

    /// After a backward window from `lo` up: the next one ends below it (none below 0,
    /// and none after an empty window).
    fn step_down(&mut self, lo: u64) {
        match lo.checked_sub(1) {
            Some(n) if !self.page.is_empty() => self.next = n,
            _ => self.set_done(),
        }
    }

    /// Takes a forward window's events, refusing a gap (which would be a skipped event).
    fn take_dense(&mut self, events: Vec<Event>) -> Result<()> {
        for e in events {
            let want = self.next + self.page.len() as u64;
            if e.position != want {
                return Err(Error::corrupt(format!(
                    "the log has position {} where {want} was expected: positions are not dense",
                    e.position
                ))
                .at_position(want));
            }
            self.page.push_back(e);
        }
        self.next += self.page.len() as u64;
        Ok(())
    }

    fn set_done(&mut self) {
        match &mut self.kind {
            Kind::Backward { more } | Kind::StreamBackward { more, .. } => *more = false,
            _ => {}
        }
    }
}

impl EventCursor for PgCursor {
    fn next(&mut self) -> Result<Option<EventRef<'_>>> {
        if self.page.is_empty() {
            self.fetch()?;
        }
        self.current = self.page.pop_front();
        Ok(self.current.as_ref().map(Event::as_ref))
    }
}

impl TailCursor for PgCursor {
    fn position(&self) -> u64 {
        match self.page.front() {
            Some(e) => e.position,
            None => self.next,
        }
    }
}
