//! Cursors over the `events` table: pages of rows by primary key (positions) or by the
//! stream index, held in memory and handed out one by one. Forward position cursors
//! check that what they get is dense: a gap is reported, never stepped over.

use super::PgStore;
use crate::error::{Error, Result};
use crate::store::backend::{EventCursor, TailCursor};
use crate::store::{Event, EventRef};
use std::collections::VecDeque;
use std::sync::Arc;

/// Rows fetched at once.
const PAGE: i64 = 1000;

/// Rows fetched at once reading the log forward (read-all, subscriptions catching up):
/// large pages, the next one read ahead while the caller goes through the current one.
const FORWARD_PAGE: u64 = 10_000;

/// The forward page query: positions in [$1, $2).
fn forward_sql() -> String {
    format!("select {COLUMNS} from events where pos >= $1 and pos < $2 order by pos")
}

/// A forward page being read ahead: its first position and the query's task.
type Ahead = (
    u64,
    tokio::task::JoinHandle<Result<Vec<tokio_postgres::Row>>>,
);

/// The columns every read selects, in `event_from_row`'s order.
pub const COLUMNS: &str =
    "pos, ts, stream, version, type, schema_version, metadata, data, event_id";

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

/// An event from a row selected with `COLUMNS`.
pub fn event_from_row(row: &tokio_postgres::Row) -> Result<Event> {
    let id: Option<Vec<u8>> = row.get(8);
    let id = match id {
        None => None,
        Some(v) => Some(<[u8; 16]>::try_from(&v[..]).map_err(|_| {
            Error::corrupt(format!(
                "the event id at position {} is not 16 bytes",
                row.get::<_, i64>(0)
            ))
        })?),
    };
    Ok(Event {
        position: row.get::<_, i64>(0) as u64,
        timestamp_us: row.get::<_, i64>(1) as u64,
        stream: row.get(2),
        stream_version: row.get::<_, i64>(3) as u64,
        event_type: row.get(4),
        schema_version: row.get::<_, i32>(5) as u32,
        metadata: row.get(6),
        payload: row.get(7),
        id,
    })
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

    /// Reads the next page into `page`.
    fn fetch(&mut self) -> Result<()> {
        let next = self.next as i64;
        let (sql, what) = match &self.kind {
            Kind::Forward { until } => {
                if self.next >= *until {
                    return Ok(());
                }
                let until = *until;
                let end = until.min(self.next.saturating_add(FORWARD_PAGE));
                // A page read ahead is used if it found something; an empty one may be
                // older than events committed since, so the page is read again then.
                let mut rows = match self.ahead.take() {
                    Some((from, started)) if from == self.next => self.store.rows_ahead(started)?,
                    _ => Vec::new(),
                };
                if rows.is_empty() {
                    rows = self.store.query(
                        &forward_sql(),
                        &[&next, &(end as i64)],
                        "reading the log",
                    )?;
                }
                let full = rows.len() as u64 == end - self.next;
                self.take_dense(rows)?;
                if full && self.next < until {
                    let to = until.min(self.next.saturating_add(FORWARD_PAGE));
                    let started = self.store.query_ahead(
                        forward_sql(),
                        self.next as i64,
                        to as i64,
                        "reading the log",
                    );
                    self.ahead = Some((self.next, started));
                }
                return Ok(());
            }
            Kind::Category { prefix } => {
                let rows = self.store.query(
                    &format!(
                        "select {COLUMNS} from events where pos >= $1 and starts_with(stream, $2) \
                         order by pos limit {PAGE}"
                    ),
                    &[&next, prefix],
                    "reading a category",
                )?;
                for row in &rows {
                    self.page.push_back(event_from_row(row)?);
                }
                if let Some(last) = self.page.back() {
                    self.next = last.position + 1;
                }
                return Ok(());
            }
            Kind::Backward { more: false } | Kind::StreamBackward { more: false, .. } => {
                return Ok(())
            }
            Kind::Backward { .. } => (
                format!("select {COLUMNS} from events where pos <= $1 order by pos desc limit {PAGE}"),
                "reading the log backward",
            ),
            Kind::Stream { .. } => (
                format!(
                    "select {COLUMNS} from events where stream = $2 and stream <> '' and version >= $1 \
                     order by version limit {PAGE}"
                ),
                "reading a stream",
            ),
            Kind::StreamBackward { .. } => (
                format!(
                    "select {COLUMNS} from events where stream = $2 and stream <> '' and version <= $1 \
                     order by version desc limit {PAGE}"
                ),
                "reading a stream backward",
            ),
        };
        let rows = match &self.kind {
            Kind::Stream { stream } | Kind::StreamBackward { stream, .. } => {
                self.store.query(&sql, &[&next, stream], what)?
            }
            _ => self.store.query(&sql, &[&next], what)?,
        };
        for row in &rows {
            self.page.push_back(event_from_row(row)?);
        }
        let Some(last) = self.page.back() else {
            self.set_done();
            return Ok(());
        };
        let last = match self.kind {
            Kind::Stream { .. } | Kind::StreamBackward { .. } => last.stream_version,
            _ => last.position,
        };
        match self.kind {
            Kind::Stream { .. } => self.next = last + 1,
            _ => match last.checked_sub(1) {
                Some(n) => self.next = n,
                None => self.set_done(),
            },
        }
        Ok(())
    }

    /// Takes a forward page, refusing a gap (which would be a skipped event).
    fn take_dense(&mut self, rows: Vec<tokio_postgres::Row>) -> Result<()> {
        for row in &rows {
            let e = event_from_row(row)?;
            let want = self.next + self.page.len() as u64;
            if e.position != want {
                return Err(Error::corrupt(format!(
                    "the log has position {} where {want} was expected: positions are not dense",
                    e.position
                )));
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
