//! Cursors over the log: windows of positions (or of a stream's versions) read from the
//! `chunks` table by its primary key (or its stream index), each chunk's arrays cut by
//! the server to the window, unpacked into events here, held in memory and handed out one
//! by one.
//!
//! Positions may be empty (a lifecycle entry, or a removed event), so a reader cannot
//! tell a missing row from one not yet committed by looking at rows: every window
//! statement also reads the durable head (`DURABLE_NEXT`), in the same snapshot. Every
//! position below it is committed (positions are handed out under the head's row lock,
//! held to the commit) and flushed, so a position there without a row is empty for good,
//! and a cursor passes over it; at and above it, nothing is read, not even an append
//! committed but not yet flushed (a server crash could take it back). A window starts at the first position (or version) at or after
//! the cursor's that still holds an event, so long removed ranges cost one statement.
//!
//! What a window holds is checked again as it is handed out: events that a rule by age
//! removes by then are dropped, and when the handle has learnt of a removing commit
//! (`head.changes`) after the window was read, the rest of the window is read again.

use super::lifecycle::Rules;
use super::uuid::StoredUuid;
use super::PgStore;
use crate::error::{Error, ErrorKind, Result};
use crate::store::backend::{EventCursor, TailCursor};
use crate::store::{Event, EventRef};
use std::collections::VecDeque;
use std::sync::{Arc, LazyLock};

/// Positions (or versions) in one window of the backward and stream kinds.
const PAGE: u64 = 1000;

/// Positions in one window reading the log forward (read-all, subscriptions catching up,
/// categories, projections): large windows, the next one read ahead while the caller goes
/// through the current one.
const FORWARD_PAGE: u64 = 10_000;

/// The highest position bound a window statement is given (its end is computed in
/// `bigint` by the server, which must not overflow).
pub const MAX_BOUND: u64 = (i64::MAX / 2) as u64;

/// How often a window is read again because the retention rules changed in between.
const RULE_TRIES: usize = 20;

/// The columns of a chunk every read selects, in `unpack`'s order: the chunk's events
/// from its `b.lo`-th to its `b.hi`-th (1-based, counting the `skip` removed ones, which
/// are not in the arrays), then the entry's operation (null for a chunk).
pub const CHUNK_COLUMNS: &str = "c.first_pos, c.ts, c.stream, c.first_version, b.lo, \
     c.types[b.lo - c.skip : b.hi - c.skip], c.schema_versions[b.lo - c.skip : b.hi - c.skip], \
     c.metadata[b.lo - c.skip : b.hi - c.skip], c.data[b.lo - c.skip : b.hi - c.skip], \
     c.ids[b.lo - c.skip : b.hi - c.skip], null::bytea as op";

/// The durable head, an expression over the head row `hd`: the first position that may
/// not be durable yet. An append's commit lets the head lock go before its WAL is flushed
/// (schema version 8, `flushed`), so the head may be ahead of what a server crash keeps.
/// Below the highest `flushed.next` every position is durable (it never decreases: rows
/// only grow, and only rows below the highest are deleted); so is everything a hot standby
/// sees (it is sent only flushed WAL). An append whose writer died between its commit and
/// its flush statement is read once another append, or a writable open, flushed past it.
pub const DURABLE_NEXT: &str = "case when pg_is_in_recovery() then hd.next \
     else least(hd.next, coalesce((select max(f.next) from @.flushed f), hd.next)) end";

/// The durable head and the head's counts (`h`), read first by every window statement.
/// (Its `limit` and the materialized steps below keep the planner's estimates at one row:
/// without them a window was estimated at hundreds of thousands of rows and compiled by
/// JIT, 20 ms a statement.)
static HEAD: LazyLock<String> = LazyLock::new(|| {
    format!(
        "with h as (select {DURABLE_NEXT} as next, hd.changes, hd.entries from @.head hd limit 1)"
    )
});

/// What every window statement returns: the head, its counts, the window [lo, hi) (null:
/// nothing to read), then the rows of `x` (in no promised order: `Window::parse` sorts
/// them; an ORDER BY over the lateral join was a sort of every window on the server, a
/// third of its time, where the rows come from the primary key's order anyway).
const SELECT: &str = "select h.next, h.changes, h.entries, w.lo, w.hi, x.* \
     from h cross join w left join lateral";

/// The chunk rows holding positions in [w.lo, w.hi) (with `extra`), cut to them.
fn chunks_by_position(extra: &str) -> String {
    format!(
        "select {CHUNK_COLUMNS} from @.chunks c \
         cross join lateral (select greatest(c.skip + 1, w.lo - c.first_pos + 1) as lo, \
                                    least(c.n::int8, w.hi - c.first_pos) as hi) b \
         where c.first_pos >= (select coalesce(max(first_pos), 0) from @.chunks \
                               where first_pos <= w.lo) \
           and c.first_pos < w.hi and b.lo <= b.hi {extra}"
    )
}

/// Forward from position $1, below $2: the window starts at the first position from $1
/// on that holds an event (with `extra`) or, with `entries`, a lifecycle entry, else at
/// the head (or $2); the entries' rows follow the chunks' (`op` set).
fn forward_sql(extra: &str, entries: bool) -> String {
    let (entry_start, entry_rows) = if entries {
        (
            "(select min(e.pos) from @.entries e where e.pos >= $1 and e.pos < $2), ",
            " union all select e.pos, e.ts, e.target, 0::int8, 1::int8, null::text[], \
              null::int[], null::bytea[], null::bytea[], null::uuid[], e.op \
              from @.entries e where e.pos >= w.lo and e.pos < w.hi",
        )
    } else {
        ("", "")
    };
    format!(
        "{}, s as materialized (select greatest($1, least(\
            (select c.first_pos + greatest(c.skip, $1 - c.first_pos) from @.chunks c \
             where c.first_pos >= (select coalesce(max(first_pos), 0) from @.chunks \
                                   where first_pos <= $1) \
               and c.first_pos < $2 and c.first_pos + c.n > $1 {extra} \
             order by c.first_pos limit 1), \
            {entry_start}(select next from h), $2)) as lo), \
         w as materialized (select s.lo, greatest(s.lo, least($2, (select next from h), \
            s.lo + {FORWARD_PAGE})) as hi from s) \
         {SELECT} ({}{entry_rows}) x on true",
        *HEAD,
        chunks_by_position(extra)
    )
}

/// Backward from position $1: the window ends at the last position at or below $1 that
/// holds an event (none: null bounds).
fn backward_sql() -> String {
    format!(
        "{}, t as materialized (select (select c.first_pos + least(c.n - 1, $1 - c.first_pos) \
            from @.chunks c where c.first_pos <= $1 and c.first_pos + c.skip <= $1 \
              and c.first_pos < (select next from h) \
            order by c.first_pos desc limit 1) as top), \
         w as materialized (select greatest(0, t.top + 1 - {PAGE}) as lo, t.top + 1 as hi from t) \
         {SELECT} ({}) x on true",
        *HEAD,
        chunks_by_position("")
    )
}

/// The chunk rows of stream $2 holding versions in [w.lo, w.hi), cut to them.
fn chunks_by_version() -> String {
    format!(
        "select {CHUNK_COLUMNS} from @.chunks c \
         cross join lateral (select greatest(c.skip + 1, w.lo - c.first_version + 1) as lo, \
                                    least(c.n::int8, w.hi - c.first_version) as hi) b \
         where c.stream = $2 and c.stream <> '' \
           and c.first_version >= (select coalesce(max(first_version), 0) from @.chunks \
                                   where stream = $2 and stream <> '' and first_version <= w.lo) \
           and c.first_version < w.hi and b.lo <= b.hi and c.first_pos < (select next from h)"
    )
}

/// Stream $2 forward from version $1: the window starts at its first version from $1 on
/// that holds an event (none: null bounds).
fn stream_sql() -> String {
    format!(
        "{}, s as materialized (select (select c.first_version + greatest(c.skip, $1 - c.first_version) \
            from @.chunks c where c.stream = $2 and c.stream <> '' \
              and c.first_version >= (select coalesce(max(first_version), 0) from @.chunks \
                                      where stream = $2 and stream <> '' and first_version <= $1) \
              and c.first_version + c.n > $1 and c.first_pos < (select next from h) \
            order by c.first_version limit 1) as lo), \
         w as materialized (select s.lo, s.lo + {PAGE} as hi from s) \
         {SELECT} ({}) x on true",
        *HEAD,
        chunks_by_version()
    )
}

/// Stream $2 backward from version $1: the window ends at its last version at or below $1
/// that holds an event (none: null bounds).
fn stream_backward_sql() -> String {
    format!(
        "{}, t as materialized (select (select c.first_version + least(c.n - 1, $1 - c.first_version) \
            from @.chunks c where c.stream = $2 and c.stream <> '' and c.first_version <= $1 \
              and c.first_version + c.skip <= $1 and c.first_pos < (select next from h) \
            order by c.first_version desc limit 1) as top), \
         w as materialized (select greatest(0, t.top + 1 - {PAGE}) as lo, t.top + 1 as hi from t) \
         {SELECT} ({}) x on true",
        *HEAD,
        chunks_by_version()
    )
}

/// Positions from $1, below $2.
pub static FORWARD_SQL: LazyLock<String> = LazyLock::new(|| forward_sql("", false));

/// Positions from $1, below $2, with the lifecycle entries (projections, `read_event`).
pub static LOG_SQL: LazyLock<String> = LazyLock::new(|| forward_sql("", true));

/// Positions from $1, below $2, of streams starting with $3.
static CATEGORY_SQL: LazyLock<String> =
    LazyLock::new(|| forward_sql("and starts_with(c.stream, $3)", false));

static BACKWARD_SQL: LazyLock<String> = LazyLock::new(backward_sql);
static STREAM_SQL: LazyLock<String> = LazyLock::new(stream_sql);
static STREAM_BACKWARD_SQL: LazyLock<String> = LazyLock::new(stream_backward_sql);

/// One window statement's answer.
pub struct Window {
    /// The durable head in the statement's snapshot: every position below it is committed
    /// and flushed.
    pub next: u64,
    /// The head's count of removing commits then.
    pub changes: u64,
    /// The lifecycle entries then (the retention rules change only with them).
    pub entries: u64,
    /// The window read, [lo, hi) (positions, or a stream's versions); `None`: nothing.
    pub bounds: Option<(u64, u64)>,
    /// Its events, in position order (those a rule by age removes included).
    pub events: Vec<Event>,
    /// Its lifecycle entries (`LOG_SQL` only): position and encoded operation.
    pub log_entries: Vec<(u64, Vec<u8>)>,
}

impl Window {
    /// Reads a window statement's rows (at least one: the head's).
    pub fn parse(rows: &[tokio_postgres::Row]) -> Result<Window> {
        let first = rows
            .first()
            .ok_or_else(|| Error::corrupt("a window of the log came back without the head"))?;
        let bound = |i| first.get::<_, Option<i64>>(i).map(|v| v.max(0) as u64);
        let mut w = Window {
            next: first.get::<_, i64>(0) as u64,
            changes: first.get::<_, i64>(1) as u64,
            entries: first.get::<_, i64>(2) as u64,
            bounds: bound(3).zip(bound(4)),
            events: Vec::new(),
            log_entries: Vec::new(),
        };
        for row in rows {
            let Some(pos) = row.get::<_, Option<i64>>(5) else {
                continue;
            };
            match row.get::<_, Option<Vec<u8>>>(15) {
                Some(op) => w.log_entries.push((pos as u64, op)),
                None => unpack(row, &mut w.events)?,
            }
        }
        // Nearly always in order already (one pass then).
        w.events.sort_by_key(|e| e.position);
        w.log_entries.sort_by_key(|e| e.0);
        Ok(w)
    }

    /// Positions below this are settled by a forward window: read, or empty for good.
    pub fn settled(&self) -> u64 {
        match self.bounds {
            Some((_, hi)) => hi.min(self.next),
            None => self.next,
        }
    }

    /// Checks that a forward window's events and entries lie in [from, settled), each
    /// position once, in order: anything else is a damaged store or a bug, never skipped.
    pub fn check_forward(&self, from: u64) -> Result<()> {
        let end = self.settled();
        let mut last = None;
        let mut positions: Vec<u64> = self.events.iter().map(|e| e.position).collect();
        positions.extend(self.log_entries.iter().map(|(p, _)| *p));
        positions.sort_unstable();
        for p in positions {
            if p < from || p >= end || last == Some(p) {
                return Err(Error::corrupt(format!(
                    "the log has position {p} where positions {from}..{end} were read, \
                     each once"
                ))
                .at_position(p));
            }
            last = Some(p);
        }
        Ok(())
    }
}

/// The events of a chunk row selected with `CHUNK_COLUMNS` (from column 5 on), in
/// position order.
pub fn unpack(row: &tokio_postgres::Row, out: &mut Vec<Event>) -> Result<()> {
    let first_pos = row.get::<_, i64>(5) as u64;
    let ts = row.get::<_, i64>(6) as u64;
    let stream: &str = row.get(7);
    let first_version = row.get::<_, i64>(8) as u64;
    let skip = row.get::<_, i64>(9) as u64 - 1;
    let types: Vec<String> = row.get(10);
    let svs: Vec<i32> = row.get(11);
    // A null element: a sealed event (`subjects.rs`), opened by `PgStore::open_events`.
    let metas: Vec<Option<Vec<u8>>> = row.get(12);
    let datas: Vec<Vec<u8>> = row.get(13);
    let ids: Vec<Option<StoredUuid>> = row.get(14);
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
        let (metadata, payload, subject) = match metadata {
            Some(m) => (m, payload, None),
            None => {
                let (subject, at) = super::subjects::sealed_subject(&payload)
                    .map_err(|e| e.at_position(first_pos + k))?;
                (Vec::new(), payload[at..].to_vec(), Some(subject.to_owned()))
            }
        };
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
            subject,
            erased: false,
        });
    }
    Ok(())
}

impl PgStore {
    /// Runs `read` (which returns the count of lifecycle entries its statement saw) until
    /// the retention rules of that count are known, and returns both: rules read after
    /// the statement may be newer than what it read, and rules made looser since would
    /// let through events that were removed when it read them.
    pub fn with_rules<T>(
        &self,
        mut read: impl FnMut() -> Result<(u64, T)>,
    ) -> Result<(T, Arc<Rules>)> {
        for _ in 0..RULE_TRIES {
            let (entries, t) = read()?;
            if let Some(rules) = self.rules_at(entries)? {
                return Ok((t, rules));
            }
        }
        Err(Error::new(
            ErrorKind::Io,
            format!(
                "the retention rules changed during each of {RULE_TRIES} reads of the log; \
                 try again"
            ),
        ))
    }

    /// One window statement, with the rules it was read under, its sealed events opened
    /// (or erased); the handle learns the head and the count of removing commits it saw.
    pub fn window(
        &self,
        sql: &str,
        params: &[&dyn super::conn::Param],
        what: &str,
    ) -> Result<(Window, Arc<Rules>)> {
        self.window_of(sql, params, what, true)
    }

    /// `window`; with `open` false, sealed events keep their payload and metadata empty
    /// (the projections' replay: they never see personal data, so nothing is opened).
    pub fn window_of(
        &self,
        sql: &str,
        params: &[&dyn super::conn::Param],
        what: &str,
        open: bool,
    ) -> Result<(Window, Arc<Rules>)> {
        self.with_rules(|| {
            let mut w = Window::parse(&self.query(sql, params, what)?)?;
            if open {
                self.open_events(&mut w.events, w.entries)?;
            } else {
                w.events
                    .iter_mut()
                    .filter(|e| e.subject.is_some())
                    .for_each(|e| e.payload.clear());
            }
            self.saw_window(&w);
            Ok((w.entries, w))
        })
    }

    fn saw_window(&self, w: &Window) {
        self.wake.saw_changes(w.changes);
        self.saw(w.next);
    }
}

/// A forward window being read ahead: its first position and the query's task.
type Ahead = (
    u64,
    tokio::task::JoinHandle<Result<Vec<tokio_postgres::Row>>>,
);

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
    /// The count of removing commits the page was read under, and its rules.
    page_changes: u64,
    rules: Arc<Rules>,
    /// The page's first event was read just now and is not handed out yet.
    fresh: bool,
    current: Option<Event>,
    ahead: Option<Ahead>,
}

impl PgCursor {
    pub fn new(store: Arc<PgStore>, kind: Kind, next: u64) -> Self {
        PgCursor {
            store,
            kind,
            next,
            page: VecDeque::new(),
            page_changes: 0,
            rules: Arc::new(Rules::none()),
            fresh: false,
            current: None,
            ahead: None,
        }
    }

    /// Reads windows until one holds an event that is not removed, or there is nothing
    /// more now.
    fn fetch(&mut self) -> Result<()> {
        match &self.kind {
            Kind::Forward { .. } | Kind::Category { .. } => self.fetch_forward(),
            Kind::Backward { more: false } | Kind::StreamBackward { more: false, .. } => Ok(()),
            Kind::Backward { .. } | Kind::StreamBackward { .. } => self.fetch_backward(),
            Kind::Stream { stream } => {
                let stream = stream.clone();
                while self.page.is_empty() {
                    let (w, rules) = self.store.window(
                        &STREAM_SQL,
                        &[&(self.next.min(MAX_BOUND) as i64), &stream],
                        "reading a stream",
                    )?;
                    let (Some(first), Some(last)) = (w.events.first(), w.events.last()) else {
                        return Ok(());
                    };
                    let (at, first, last) =
                        (first.position, first.stream_version, last.stream_version);
                    if first < self.next || w.events.iter().any(|e| e.stream != stream) {
                        return Err(Error::corrupt(format!(
                            "reading stream '{stream}' from version {} returned version {first}",
                            self.next
                        ))
                        .at_position(at));
                    }
                    self.next = last + 1;
                    self.take(w.events, w.changes, rules);
                }
                Ok(())
            }
        }
    }

    /// Forward positions (read-all, polls, categories): windows until one has an event
    /// that is not removed, or the cursor has reached the head (or its end).
    fn fetch_forward(&mut self) -> Result<()> {
        let (until, prefix) = match &self.kind {
            Kind::Forward { until } => (*until, None),
            Kind::Category { prefix } => (u64::MAX, Some(prefix.clone())),
            _ => unreachable!("fetch_forward is called for the forward kinds"),
        };
        let until = until.min(MAX_BOUND);
        while self.page.is_empty() && self.next < until {
            let from = self.next;
            let (w, rules) = match self.take_ahead()? {
                Some(read) => read,
                None => {
                    let (f, u) = (from as i64, until as i64);
                    match &prefix {
                        Some(p) => {
                            self.store
                                .window(&CATEGORY_SQL, &[&f, &u, p], "reading a category")?
                        }
                        None => self
                            .store
                            .window(&FORWARD_SQL, &[&f, &u], "reading the log")?,
                    }
                }
            };
            w.check_forward(from)?;
            let settled = w.settled();
            self.next = settled;
            self.take(w.events, w.changes, rules);
            if settled >= until.min(w.next) {
                break;
            }
            if prefix.is_none() && settled < until {
                // A full window: the next one is likely wanted; read it meanwhile.
                let started = self.store.query_ahead(
                    FORWARD_SQL.as_str(),
                    settled as i64,
                    until as i64,
                    "reading the log",
                );
                self.ahead = Some((settled, started));
            }
        }
        Ok(())
    }

    /// The window read ahead, if it starts where the cursor is, holds an event, and was
    /// read under every removing commit the handle knows of (else it is read again).
    fn take_ahead(&mut self) -> Result<Option<(Window, Arc<Rules>)>> {
        let Some((from, started)) = self.ahead.take() else {
            return Ok(None);
        };
        let rows = self.store.rows_ahead(started)?;
        if from != self.next {
            return Ok(None);
        }
        let mut w = Window::parse(&rows)?;
        if w.events.is_empty() || w.changes < self.store.wake.changes() {
            return Ok(None);
        }
        self.store.open_events(&mut w.events, w.entries)?;
        Ok(self.store.rules_at(w.entries)?.map(|r| (w, r)))
    }

    /// Backward kinds: windows down from `next` until one has an event that is not
    /// removed, or none is left.
    fn fetch_backward(&mut self) -> Result<()> {
        loop {
            let (w, rules) = match &self.kind {
                Kind::Backward { more: true } => self.store.window(
                    &BACKWARD_SQL,
                    &[&(self.next.min(MAX_BOUND) as i64)],
                    "reading the log backward",
                )?,
                Kind::StreamBackward { stream, more: true } => self.store.window(
                    &STREAM_BACKWARD_SQL,
                    &[&(self.next.min(MAX_BOUND) as i64), stream],
                    "reading a stream backward",
                )?,
                _ => return Ok(()),
            };
            let Some((lo, _)) = w.bounds else {
                self.set_done();
                return Ok(());
            };
            let changes = w.changes;
            self.take(w.events.into_iter().rev().collect(), changes, rules);
            match lo.checked_sub(1) {
                Some(n) => self.next = n,
                None => self.set_done(),
            }
            if !self.page.is_empty() {
                return Ok(());
            }
        }
    }

    /// Makes a window's events the page, without those a rule by age removes now.
    fn take(&mut self, events: Vec<Event>, changes: u64, rules: Arc<Rules>) {
        let now = self.store.now();
        self.page.extend(
            events
                .into_iter()
                .filter(|e| !rules.removes_by_age(&e.stream, e.timestamp_us, now)),
        );
        self.page_changes = changes;
        self.rules = rules;
    }

    /// Forgets the page (events removed since it was read may be in it): the next fetch
    /// reads again from its first event not handed out.
    fn rewind(&mut self) {
        if let Some(front) = self.page.front() {
            self.next = match &mut self.kind {
                Kind::Forward { .. } | Kind::Category { .. } => front.position,
                Kind::Backward { more } => {
                    *more = true;
                    front.position
                }
                Kind::Stream { .. } => front.stream_version,
                Kind::StreamBackward { more, .. } => {
                    *more = true;
                    front.stream_version
                }
            };
        }
        self.page.clear();
        self.ahead = None;
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
        loop {
            if self.page.is_empty() {
                self.fetch()?;
                if self.page.is_empty() {
                    self.current = None;
                    return Ok(None);
                }
                self.fresh = true;
            } else if !self.fresh && self.store.wake.changes() > self.page_changes {
                // Something was removed since the page was read: read it again.
                self.rewind();
                continue;
            }
            self.fresh = false;
            let event = self.page.pop_front();
            if event.as_ref().is_some_and(|e| {
                self.rules
                    .removes_by_age(&e.stream, e.timestamp_us, self.store.now())
            }) {
                continue;
            }
            self.current = event;
            return Ok(self.current.as_ref().map(Event::as_ref));
        }
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
