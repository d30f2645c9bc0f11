//! Deletion, truncation and retention on PostgreSQL (docs/lifecycle.md, docs/postgres.md
//! "Lifecycle"), against a real server started for the run (a server that cannot start
//! fails these tests). Several `Store` handles on one schema stand for several processes:
//! each has its own connections, committer and listener.

mod common;

use common::pg::{sql, PgServer};
use common::writers::{self, TestClock};
use evstore::account::Bank;
use evstore::store::lifecycle::{LifecycleOp, LifecycleRequest, Removals, Rule};
use evstore::store::{
    EventCursor, EventInput, EventRef, ExpectedVersion, Projection, Store, StoreOptions,
    StreamAppend,
};
use evstore::ErrorKind;
use std::collections::BTreeMap;
use std::sync::{Arc, Barrier, Mutex};
use std::time::Duration;

fn open(url: &str) -> Store {
    open_with(url, Vec::new())
}

fn open_with(url: &str, projections: Vec<Arc<dyn Projection>>) -> Store {
    Store::open(url, StoreOptions::default(), projections)
        .expect("the PostgreSQL store opens")
        .0
}

fn open_read_only(url: &str) -> Store {
    let options = StoreOptions {
        read_only: true,
        ..StoreOptions::default()
    };
    Store::open(url, options, Vec::new())
        .expect("a read-only open")
        .0
}

fn id(n: u32) -> [u8; 16] {
    let mut id = [0x5a; 16];
    id[..4].copy_from_slice(&n.to_be_bytes());
    id
}

/// An event as the tests compare it: position, stream, version, payload.
type Seen = (u64, String, u64, Vec<u8>);

fn seen(e: &EventRef<'_>) -> Seen {
    (
        e.position,
        e.stream.to_owned(),
        e.stream_version,
        e.payload.to_vec(),
    )
}

/// Everything a cursor returns now.
fn drain<C: EventCursor + ?Sized>(c: &mut C) -> Vec<Seen> {
    let mut out = Vec::new();
    while let Some(e) = c.next().unwrap() {
        out.push(seen(&e));
    }
    out
}

/// A cursor's events, or the error kind of its opening.
fn collect<C: EventCursor + ?Sized>(
    c: evstore::Result<Box<C>>,
) -> std::result::Result<Vec<Seen>, ErrorKind> {
    c.map(|mut c| drain(&mut *c)).map_err(|e| e.kind)
}

fn kind<T>(r: evstore::Result<T>) -> ErrorKind {
    match r {
        Ok(_) => panic!("an error was expected"),
        Err(e) => e.kind,
    }
}

/// Runs SQL in the store's schema; returns the first column of the first row.
fn sql_in(url: &str, schema: &str, statement: &str) -> Option<String> {
    sql(url, &format!("set search_path to {schema}; {statement}"))
}

/// A projection that records what it is given, in order: events (position and payload)
/// and lifecycle entries (position and description).
#[derive(Default)]
struct Recorder {
    seen: Mutex<Vec<(u64, String)>>,
}

impl Projection for Recorder {
    fn name(&self) -> &str {
        "recorder"
    }
    fn apply(&self, e: &EventRef<'_>) {
        let what = format!("event {}", String::from_utf8_lossy(e.payload));
        self.seen.lock().unwrap().push((e.position, what));
    }
    fn apply_lifecycle(&self, op: &LifecycleOp, position: u64) {
        self.seen
            .lock()
            .unwrap()
            .push((position, format!("entry {}", op.describe())));
    }
    fn snapshot(&self) -> Vec<u8> {
        Vec::new()
    }
    fn restore(&self, _: &[u8]) -> evstore::Result<()> {
        Ok(())
    }
    fn reset(&self) {
        self.seen.lock().unwrap().clear();
    }
}

/// What the store should hold: every event appended and every entry, and which events
/// are removed. `Removals` (the seam's state) says what the entries remove; `floor` keeps
/// what a rule by count removed even after the rule is made looser (removal never brings
/// an event back: on PostgreSQL the rows are gone).
#[derive(Default)]
struct Model {
    events: Vec<Seen>,
    entries: Vec<(u64, LifecycleOp)>,
    removals: Removals,
    versions: BTreeMap<String, u64>,
    first_pos: BTreeMap<String, u64>,
    floor: BTreeMap<String, u64>,
    /// Soft-deleted and not appended to since: no stream for writers.
    deleted: std::collections::BTreeSet<String>,
    next: u64,
}

impl Model {
    fn appended(&mut self, first: u64, appends: &[(&str, Vec<Vec<u8>>)]) {
        assert_eq!(first, self.next, "an append's first position");
        for (stream, payloads) in appends {
            for p in payloads {
                let version = match stream.is_empty() {
                    true => 0,
                    false => self.versions.get(*stream).map_or(0, |v| v + 1),
                };
                if !stream.is_empty() {
                    self.versions.insert(stream.to_string(), version);
                    self.deleted.remove(*stream);
                    self.first_pos
                        .entry(stream.to_string())
                        .or_insert(self.next);
                }
                self.events
                    .push((self.next, stream.to_string(), version, p.clone()));
                self.next += 1;
            }
        }
        self.settle();
    }

    fn entry(&mut self, position: u64, op: LifecycleOp) {
        assert_eq!(position, self.next, "an entry's position");
        if let LifecycleOp::Delete { stream, .. } = &op {
            self.deleted.insert(stream.clone());
        }
        self.removals.apply(&op);
        self.entries.push((position, op));
        self.next += 1;
        self.settle();
    }

    /// What rules by count remove now stays removed.
    fn settle(&mut self) {
        for (s, v) in &self.versions {
            let first_kept = self.removals.view(s, Some(*v), 0).first_kept;
            let f = self.floor.entry(s.clone()).or_default();
            *f = (*f).max(first_kept);
        }
    }

    fn is_live(&self, e: &Seen) -> bool {
        e.1.is_empty()
            || !(self
                .removals
                .is_removed(&e.1, e.2, 0, self.versions.get(&e.1).copied(), 0)
                || e.2 < self.floor.get(&e.1).copied().unwrap_or(0))
    }

    fn live(&self) -> Vec<Seen> {
        self.events
            .iter()
            .filter(|e| self.is_live(e))
            .cloned()
            .collect()
    }

    fn stream(&self, name: &str) -> std::result::Result<Vec<Seen>, ErrorKind> {
        if self.removals.is_tombstoned(name) {
            return Err(ErrorKind::StreamDeleted);
        }
        let live: Vec<Seen> = self.live().into_iter().filter(|e| e.1 == name).collect();
        if live.is_empty() {
            return Err(ErrorKind::NotFound);
        }
        Ok(live)
    }

    /// The version writers see (`stream_version`): none once soft-deleted, until
    /// appended to again.
    fn version(&self, name: &str) -> std::result::Result<Option<u64>, ErrorKind> {
        if self.removals.is_tombstoned(name) {
            return Err(ErrorKind::StreamDeleted);
        }
        if self.deleted.contains(name) {
            return Ok(None);
        }
        Ok(self.versions.get(name).copied())
    }

    /// What `list_streams` shows: streams not hard-deleted with an event left, in
    /// creation order, each with its version and its first event left.
    fn listed(&self) -> Vec<(String, u64, u64)> {
        let mut names: Vec<(u64, String, u64, u64)> = self
            .first_pos
            .iter()
            .filter_map(|(n, p)| {
                let first = self.stream(n).ok()?.first()?.0;
                Some((*p, n.clone(), self.versions[n], first))
            })
            .collect();
        names.sort();
        names.into_iter().map(|(_, n, v, f)| (n, v, f)).collect()
    }

    fn removed(&self) -> u64 {
        (self.events.len() - self.live().len()) as u64
    }
}

/// Two writable handles (the second as another process) and a read-only one, the model,
/// a tailing cursor of the second handle and a recording projection on it.
struct World {
    server: String,
    url: String,
    schema: String,
    handles: Vec<Store>,
    model: Model,
    tail: Box<dyn evstore::store::TailCursor>,
    tailed: Vec<Seen>,
    recorder: Arc<Recorder>,
}

impl World {
    fn new(pg: &PgServer, schema: &str) -> World {
        let url = format!("{}?schema={schema}", pg.url());
        let a = open(&url);
        let recorder = Arc::new(Recorder::default());
        let b = open_with(&url, vec![recorder.clone()]);
        let r = open_read_only(&url);
        let tail = b.read_all(0).unwrap();
        World {
            server: pg.url().to_owned(),
            url,
            schema: schema.to_owned(),
            handles: vec![a, b, r],
            model: Model::default(),
            tail,
            tailed: Vec::new(),
            recorder,
        }
    }

    /// Appends through handle `h` (0 or 1); records it in the model.
    fn append(&mut self, h: usize, appends: &[(&str, ExpectedVersion, &[&str])]) {
        let inputs: Vec<Vec<EventInput>> = appends
            .iter()
            .map(|(_, _, ps)| {
                ps.iter()
                    .map(|p| EventInput::new("E", p.as_bytes()))
                    .collect()
            })
            .collect();
        let sa: Vec<StreamAppend> = appends
            .iter()
            .zip(&inputs)
            .map(|((s, e, _), events)| StreamAppend {
                stream: s,
                expected: *e,
                events,
            })
            .collect();
        let first = match appends {
            [("", _, [p])] => self.handles[h].append_event("E", p.as_bytes()),
            _ => self.handles[h].append_multi(&sa).map(|r| r.first_position),
        };
        let first = first.expect("an append");
        let recorded: Vec<(&str, Vec<Vec<u8>>)> = appends
            .iter()
            .map(|(s, _, ps)| (*s, ps.iter().map(|p| p.as_bytes().to_vec()).collect()))
            .collect();
        self.model.appended(first, &recorded);
    }

    /// Applies `op` through handle `h`, as the request that makes it (with `expected`),
    /// and records it in the model at the position it got.
    fn apply(&mut self, h: usize, op: LifecycleOp, expected: ExpectedVersion) -> u64 {
        let req = match &op {
            LifecycleOp::Delete { stream, hard, .. } => LifecycleRequest::Delete {
                stream,
                expected,
                hard: *hard,
            },
            LifecycleOp::Truncate {
                stream,
                before_version,
                ..
            } => LifecycleRequest::Truncate {
                stream,
                expected,
                before_version: *before_version,
            },
            LifecycleOp::Retention {
                target,
                category,
                rule,
            } => LifecycleRequest::Retention {
                target,
                category: *category,
                rule: *rule,
            },
            LifecycleOp::Consumer(_) | LifecycleOp::Forget { .. } => {
                panic!("the model makes no consumer records or forgets")
            }
        };
        let p = self.handles[h]
            .lifecycle(req, None)
            .unwrap_or_else(|e| panic!("the {}: {e:?}", op.describe()));
        self.model.entry(p, op);
        p
    }

    fn delete(&mut self, h: usize, stream: &str, expected: ExpectedVersion, hard: bool) -> u64 {
        let version = self.model.versions[stream];
        let (stream, hard) = (stream.into(), hard);
        self.apply(
            h,
            LifecycleOp::Delete {
                stream,
                hard,
                version,
            },
            expected,
        )
    }

    fn truncate(&mut self, h: usize, stream: &str, before_version: u64) -> u64 {
        let version = self.model.versions[stream];
        let stream = stream.into();
        let op = LifecycleOp::Truncate {
            stream,
            before_version,
            version,
        };
        self.apply(h, op, ExpectedVersion::Any)
    }

    fn rule(&mut self, h: usize, target: &str, category: bool, max_count: u64) -> u64 {
        let rule = Rule {
            max_count,
            max_age_us: 0,
        };
        let target = target.into();
        let op = LifecycleOp::Retention {
            target,
            category,
            rule,
        };
        self.apply(h, op, ExpectedVersion::Any)
    }

    /// Every read path of every handle against the model; the tail and the projection.
    fn check(&mut self, tag: &str) {
        let names: Vec<String> = self
            .model
            .versions
            .keys()
            .cloned()
            .chain(["never".to_owned()])
            .collect();
        for (i, s) in self.handles.iter().enumerate() {
            check_handle(s, &self.model, &names, &format!("{tag}, handle {i}"));
        }
        // The tail returns events in position order, each live when it is returned.
        for e in drain(&mut *self.tail) {
            assert!(self.model.is_live(&e), "{tag}: the tail returned {e:?}");
            if let Some(last) = self.tailed.last() {
                assert!(e.0 > last.0, "{tag}: the tail went back to {}", e.0);
            }
            self.tailed.push(e);
        }
        assert_eq!(
            self.tail.position(),
            self.model.next,
            "{tag}: the tail's position"
        );
        // The projection sees every entry, in log order with the events it was given.
        self.handles[1].refresh().unwrap();
        let got = self.recorder.seen.lock().unwrap().clone();
        assert!(
            got.windows(2).all(|w| w[0].0 < w[1].0),
            "{tag}: the projection's positions go up: {got:?}"
        );
        let entries: Vec<(u64, String)> = got
            .iter()
            .filter(|(_, w)| w.starts_with("entry"))
            .cloned()
            .collect();
        let want: Vec<(u64, String)> = self
            .model
            .entries
            .iter()
            .map(|(p, op)| (*p, format!("entry {}", op.describe())))
            .collect();
        assert_eq!(entries, want, "{tag}: the projection's entries");
    }
}

/// Every read path of one handle against the model.
fn check_handle(s: &Store, m: &Model, names: &[String], tag: &str) {
    let live = m.live();
    assert_eq!(s.next_position().unwrap(), m.next, "{tag}: next position");
    assert_eq!(drain(&mut *s.read_all(0).unwrap()), live, "{tag}: read_all");
    let back: Vec<Seen> = live.iter().rev().cloned().collect();
    assert_eq!(
        drain(&mut *s.read_all_backward(u64::MAX).unwrap()),
        back,
        "{tag}: read_all_backward"
    );
    // Polls: every window of 3 positions; empty positions count towards it.
    for from in 0..=m.next {
        let want: Vec<Seen> = live
            .iter()
            .filter(|e| e.0 >= from && e.0 < from + 3)
            .cloned()
            .collect();
        assert_eq!(
            drain(&mut *s.poll(from, 3).unwrap()),
            want,
            "{tag}: poll({from}, 3)"
        );
    }
    for p in 0..=m.next {
        match (s.read_event(p), live.iter().find(|e| e.0 == p)) {
            (Ok(e), Some(w)) => assert_eq!(&seen(&e.as_ref()), w, "{tag}: read_event({p})"),
            (Err(e), None) => {
                assert_eq!(e.kind, ErrorKind::NotFound, "{tag}: read_event({p}): {e:?}");
                let why = if p == m.next {
                    "no event"
                } else if m.entries.iter().any(|(q, _)| *q == p) {
                    "lifecycle entry"
                } else {
                    "was removed"
                };
                assert!(e.message.contains(why), "{tag}: read_event({p}): {e:?}");
            }
            (got, want) => panic!("{tag}: read_event({p}) is {got:?}, the model has {want:?}"),
        }
    }
    for name in names {
        let want = m.stream(name);
        let want = if !m.versions.contains_key(name) {
            Err(ErrorKind::NotFound)
        } else {
            want
        };
        assert_eq!(
            collect(s.read_stream(name, 0)),
            want,
            "{tag}: read_stream({name})"
        );
        let back = want
            .clone()
            .map(|v| v.into_iter().rev().collect::<Vec<_>>());
        assert_eq!(
            collect(s.read_stream_backward(name, u64::MAX)),
            back,
            "{tag}: read_stream_backward({name})"
        );
        assert_eq!(
            s.stream_version(name).map_err(|e| e.kind),
            m.version(name),
            "{tag}: stream_version({name})"
        );
    }
    for prefix in ["s-", "cat-", "s-1"] {
        let want: Vec<Seen> = live
            .iter()
            .filter(|e| e.1.starts_with(prefix))
            .cloned()
            .collect();
        assert_eq!(
            drain(&mut *s.read_category(prefix, 0).unwrap()),
            want,
            "{tag}: read_category({prefix})"
        );
    }
    let listed: Vec<(String, u64, u64)> = s
        .list_streams()
        .unwrap()
        .into_iter()
        .map(|i| (i.name, i.version, i.first_position))
        .collect();
    assert_eq!(listed, m.listed(), "{tag}: list_streams");
    let stats = s.stats().unwrap();
    assert_eq!(stats.streams, listed.len() as u64, "{tag}: stats.streams");
    assert_eq!(
        (
            stats.events,
            stats.removed_events,
            stats.lifecycle_entries,
            stats.reclaimable_bytes
        ),
        (m.next, m.removed(), m.entries.len() as u64, 0),
        "{tag}: stats"
    );
}

#[test]
fn every_read_path_obeys_each_operation_on_every_handle() {
    let pg = PgServer::start();
    let mut w = World::new(&pg, "reads");
    use ExpectedVersion::{Any, Exact, NoStream};
    w.append(0, &[("s-1", NoStream, &["s1-a", "s1-b", "s1-c"])]);
    w.append(1, &[("s-2", Any, &["s2-a", "s2-b"])]);
    w.append(0, &[("", Any, &["loose"])]);
    w.append(0, &[("s-3", Any, &["s3-a"])]);
    w.append(
        1,
        &[
            ("s-1", Exact(2), &["s1-d"]),
            ("s-4", NoStream, &["s4-a", "s4-b"]),
        ],
    );
    w.append(0, &[("cat-a", Any, &["ca-a", "ca-b", "ca-c"])]);
    w.append(1, &[("cat-b", Any, &["cb-a", "cb-b"])]);
    w.append(0, &[("s-4", Any, &["s4-c"])]);
    w.check("appended");

    // A truncation in the middle of a chunk (s-1's first three events are one row).
    w.truncate(0, "s-1", 2);
    w.check("s-1 truncated before 2");
    w.truncate(1, "s-1", 1);
    w.check("s-1 truncated before 1: nothing more, nothing back");

    // A soft delete: no stream for writers (its old version refused, actual none) until
    // appended to again; "no stream" continues its versions.
    w.delete(1, "s-2", Exact(1), false);
    w.check("s-2 soft-deleted");
    for s in &w.handles[..2] {
        let e = s
            .append("s-2", Exact(1), &[EventInput::new("E", b"x")])
            .unwrap_err();
        assert_eq!(e.kind, ErrorKind::WrongExpectedVersion, "{e:?}");
        assert!(e.message.contains("does not exist"), "{e:?}");
        assert_eq!(e.detail().actual_version, Some(None), "{e:?}");
    }
    w.append(0, &[("s-2", NoStream, &["s2-c"])]);
    w.check("s-2 continued after its soft delete");

    // A hard delete: every read and write of the name is refused.
    w.delete(0, "s-3", Any, true);
    w.check("s-3 hard-deleted");
    for s in &w.handles[..2] {
        let e = s.append("s-3", Any, &[EventInput::new("E", b"x")]);
        assert_eq!(kind(e), ErrorKind::StreamDeleted);
        assert_eq!(
            kind(s.delete_stream("s-3", Any, false, None)),
            ErrorKind::StreamDeleted
        );
        assert_eq!(
            kind(s.truncate_stream("s-3", 0, None)),
            ErrorKind::StreamDeleted
        );
    }

    // Rules by count remove at once, and again at each later append.
    w.rule(1, "s-4", false, 2);
    w.check("s-4 keeps 2");
    w.append(0, &[("s-4", Any, &["s4-d", "s4-e"])]);
    w.check("s-4 appended past its rule");
    w.rule(0, "cat-", true, 1);
    w.check("cat- keeps 1");
    w.append(1, &[("cat-a", Any, &["ca-d"]), ("cat-b", Any, &["cb-c"])]);
    w.check("cat- streams appended past their rule");
    // A stream's own rule wins over its prefix's; a looser rule brings nothing back.
    w.rule(1, "cat-b", false, 3);
    w.append(0, &[("cat-b", Any, &["cb-d"])]);
    w.check("cat-b keeps 3");
    assert_eq!(
        w.handles[1].retention("cat-b", false).unwrap(),
        Some(Rule {
            max_count: 3,
            max_age_us: 0
        })
    );
    assert_eq!(
        w.handles[2].retention("cat-a", false).unwrap(),
        Some(Rule {
            max_count: 1,
            max_age_us: 0
        })
    );
    assert_eq!(w.handles[0].retention("cat", true).unwrap(), None);
    w.rule(0, "cat-", true, 0);
    w.check("cat- rule cleared");
    assert_eq!(w.handles[1].retention("cat-a", false).unwrap(), None);

    w.delete(0, "s-4", Exact(4), false);
    w.check("s-4 soft-deleted");

    // Refusals that write nothing.
    let s = &w.handles[0];
    assert_eq!(
        kind(s.delete_stream("never", Any, false, None)),
        ErrorKind::NotFound
    );
    assert_eq!(
        kind(s.delete_stream("s-1", NoStream, false, None)),
        ErrorKind::InvalidArgument
    );
    let e = s.delete_stream("s-1", Exact(9), false, None).unwrap_err();
    assert_eq!(e.kind, ErrorKind::WrongExpectedVersion);
    assert!(e.message.contains("is at version 3"), "{e:?}");
    assert_eq!(
        kind(s.truncate_stream("s-1", 5, None)),
        ErrorKind::InvalidArgument
    );
    assert_eq!(
        kind(w.handles[2].delete_stream("s-1", Any, false, None)),
        ErrorKind::ReadOnly
    );
    w.check("refusals wrote nothing");

    // A handle opened now rebuilds its projection from the log: the events left and
    // every entry, in position order.
    let fresh = Arc::new(Recorder::default());
    let _c = open_with(&w.url, vec![fresh.clone()]);
    let mut want: Vec<(u64, String)> = w
        .model
        .live()
        .iter()
        .map(|e| (e.0, format!("event {}", String::from_utf8_lossy(&e.3))))
        .collect();
    want.extend(
        w.model
            .entries
            .iter()
            .map(|(p, op)| (*p, format!("entry {}", op.describe()))),
    );
    want.sort();
    assert_eq!(*fresh.seen.lock().unwrap(), want);
    let entries = sql_in(&w.server, &w.schema, "select count(*) from entries");
    assert_eq!(
        entries.as_deref(),
        Some(w.model.entries.len().to_string().as_str())
    );
}

/// Appends one event per payload to `stream`, each its own append (its own chunk row).
fn append_each(s: &Store, stream: &str, payloads: &[&str]) {
    for p in payloads {
        s.append(
            stream,
            ExpectedVersion::Any,
            &[EventInput::new("E", p.as_bytes())],
        )
        .unwrap();
    }
}

fn payloads(events: &[Seen]) -> Vec<String> {
    events
        .iter()
        .map(|e| String::from_utf8_lossy(&e.3).into_owned())
        .collect()
}

#[test]
fn cursors_already_open_stop_returning_events_once_they_are_removed() {
    let pg = PgServer::start();
    let url = format!("{}?schema=open_cursors", pg.url());
    let (a, b) = (open(&url), open(&url));
    for i in 0..4 {
        append_each(&a, "keep", &[&format!("k{i}")]);
        append_each(&a, "drop-1", &[&format!("d{i}")]);
        append_each(&a, "drop-2", &[&format!("e{i}")]);
    }
    // Cursors of the handle that removes: each has read one event, and holds the rest of
    // its window in memory.
    let mut fwd = a.read_all(0).unwrap();
    let mut back = a.read_all_backward(u64::MAX).unwrap();
    let mut stream = a.read_stream("drop-1", 0).unwrap();
    let mut category = a.read_category("drop-", 0).unwrap();
    assert_eq!(payloads(&[seen(&fwd.next().unwrap().unwrap())]), ["k0"]);
    assert_eq!(payloads(&[seen(&back.next().unwrap().unwrap())]), ["e3"]);
    assert_eq!(payloads(&[seen(&stream.next().unwrap().unwrap())]), ["d0"]);
    assert_eq!(
        payloads(&[seen(&category.next().unwrap().unwrap())]),
        ["d0"]
    );
    // Cursors of another handle ("another process"), in the same state.
    let mut other = b.read_all(0).unwrap();
    assert_eq!(payloads(&[seen(&other.next().unwrap().unwrap())]), ["k0"]);

    a.delete_stream("drop-1", ExpectedVersion::Any, false, None)
        .unwrap();
    assert_eq!(
        payloads(&drain(&mut *fwd)),
        ["e0", "k1", "e1", "k2", "e2", "k3", "e3"]
    );
    assert_eq!(
        payloads(&drain(&mut *back)),
        ["k3", "e2", "k2", "e1", "k1", "e0", "k0"]
    );
    assert_eq!(payloads(&drain(&mut *stream)), Vec::<String>::new());
    assert_eq!(payloads(&drain(&mut *category)), ["e0", "e1", "e2", "e3"]);
    // The other handle's cursor drops them once its handle has heard of the delete (any
    // call that reads the head, a read, or a notification while it waits).
    b.next_position().unwrap();
    assert_eq!(
        payloads(&drain(&mut *other)),
        ["e0", "k1", "e1", "k2", "e2", "k3", "e3"]
    );

    // A truncation in the middle of what a cursor holds.
    let mut fwd = b.read_all(0).unwrap();
    assert_eq!(payloads(&[seen(&fwd.next().unwrap().unwrap())]), ["k0"]);
    b.truncate_stream("drop-2", 2, None).unwrap();
    assert_eq!(payloads(&drain(&mut *fwd)), ["k1", "k2", "e2", "k3", "e3"]);
}

#[test]
fn a_tailing_reader_never_gets_an_event_removed_before_it_reached_it() {
    let pg = PgServer::start();
    let url = format!("{}?schema=tailing", pg.url());
    let (a, b) = (open(&url), open(&url));
    append_each(&a, "t", &["t0"]);
    let mut tail = b.read_all(0).unwrap();
    assert_eq!(payloads(&drain(&mut *tail)), ["t0"]);
    // Appended and deleted before the reader reads on: never seen; the reader passes
    // over the removed events' positions and the entry's.
    append_each(&a, "x", &["x0", "x1", "x2"]);
    let entry = a
        .delete_stream("x", ExpectedVersion::Exact(2), true, None)
        .unwrap();
    assert_eq!(entry, 4);
    assert_eq!(payloads(&drain(&mut *tail)), Vec::<String>::new());
    assert_eq!(tail.position(), 5);
    // A waiting reader is woken by an entry (the head moved), passes over it, and is
    // woken again by an append.
    append_each(&a, "w", &["w0"]);
    assert_eq!(payloads(&drain(&mut *tail)), ["w0"]);
    let (step_tx, step_rx) = std::sync::mpsc::channel::<()>();
    let (seen_tx, seen_rx) = std::sync::mpsc::channel();
    let waiter = std::thread::spawn(move || {
        for _ in 0..2 {
            step_rx.recv().unwrap();
            let before = tail.position();
            let head = b.wait_for_events(before, Duration::from_secs(60));
            assert!(head > before, "the waiter woke without anything new");
            seen_tx
                .send((payloads(&drain(&mut *tail)), tail.position()))
                .unwrap();
        }
    });
    step_tx.send(()).unwrap();
    let entry = a
        .delete_stream("w", ExpectedVersion::Exact(0), false, None)
        .unwrap();
    assert_eq!(seen_rx.recv().unwrap(), (vec![], entry + 1));
    step_tx.send(()).unwrap();
    append_each(&a, "z", &["z0"]);
    assert_eq!(seen_rx.recv().unwrap(), (vec!["z0".to_owned()], entry + 2));
    waiter.join().unwrap();
}

/// Makes everything stored so far `days` days older (events, entries and the head's
/// last time), keeping times non-decreasing along positions: the tests' way to age
/// events without a clock of their own.
fn age_everything(server: &str, schema: &str, days: i64) {
    let us = days * 86_400_000_000;
    sql_in(
        server,
        schema,
        &format!(
            "update chunks set ts = ts - {us}; update entries set ts = ts - {us}; \
             update head set last_ts = last_ts - {us};"
        ),
    );
}

const DAY_US: u64 = 86_400_000_000;

#[test]
fn retention_by_age_removes_at_once_and_compaction_deletes_the_rows() {
    let pg = PgServer::start();
    let schema = "by_age";
    let url = format!("{}?schema={schema}", pg.url());
    let (a, b) = (open(&url), open(&url));
    append_each(&a, "m-1", &["m1-old-0", "m1-old-1"]);
    a.append(
        "m-2",
        ExpectedVersion::Any,
        &[
            EventInput::new("E", b"m2-old-0"),
            EventInput::new("E", b"m2-old-1"),
            EventInput::new("E", b"m2-old-2"),
        ],
    )
    .unwrap();
    append_each(&a, "other", &["other-old"]);
    age_everything(pg.url(), schema, 10);
    append_each(&b, "m-1", &["m1-new"]);
    let rule = Rule {
        max_count: 0,
        max_age_us: DAY_US,
    };
    let entry = b.set_retention("m-", true, rule, None).unwrap();
    assert_eq!(entry, 7);
    for (h, s) in [&a, &b].into_iter().enumerate() {
        let all: Vec<String> = payloads(&drain(&mut *s.read_all(0).unwrap()));
        assert_eq!(all, ["other-old", "m1-new"], "handle {h}");
        assert_eq!(
            payloads(&collect(s.read_stream("m-1", 0)).unwrap()),
            ["m1-new"]
        );
        assert_eq!(kind(s.read_stream("m-2", 0)), ErrorKind::NotFound);
        assert_eq!(kind(s.read_stream_backward("m-2", 9)), ErrorKind::NotFound);
        assert_eq!(s.stream_version("m-2").unwrap(), Some(2));
        let e = s.read_event(2).unwrap_err();
        assert!(e.message.contains("retention rule"), "{e:?}");
        let listed: Vec<String> = s
            .list_streams()
            .unwrap()
            .into_iter()
            .map(|i| i.name)
            .collect();
        assert_eq!(listed, ["m-1", "other"]);
        assert_eq!(
            payloads(&drain(&mut *s.read_category("m-", 0).unwrap())),
            ["m1-new"]
        );
        assert_eq!(s.retention("m-9", false).unwrap(), Some(rule));
        let stats = s.stats().unwrap();
        assert_eq!((stats.removed_events, stats.lifecycle_entries), (5, 1));
        assert!(stats.reclaimable_bytes > 0, "{stats:?}");
        assert_eq!(stats.events_by_type, [("E".to_owned(), 2)]);
    }
    let rows = || sql_in(pg.url(), schema, "select count(*) from chunks").unwrap();
    assert_eq!(rows(), "5", "rules by age remove from reads, not rows");

    let info = a.compact().unwrap();
    assert_eq!(
        (
            info.events_erased,
            info.segments_rewritten,
            info.bytes_after
        ),
        (5, 3, 0),
        "{info:?}"
    );
    assert!(info.bytes_before > 0);
    assert_eq!(rows(), "2");
    assert_eq!(a.compact().unwrap().events_erased, 0);
    let stats = b.stats().unwrap();
    assert_eq!((stats.removed_events, stats.reclaimable_bytes), (5, 0));

    // A looser rule (here: none) brings nothing back, compacted or not: the rows the old
    // rule removed by age go when the rule changes.
    append_each(&a, "m-3", &["m3-old"]);
    age_everything(pg.url(), schema, 10);
    append_each(&a, "m-3", &["m3-new"]);
    assert_eq!(
        payloads(&collect(b.read_stream("m-3", 0)).unwrap()),
        ["m3-new"]
    );
    b.set_retention("m-", true, Rule::default(), None).unwrap();
    for s in [&a, &b] {
        assert_eq!(
            payloads(&collect(s.read_stream("m-3", 0)).unwrap()),
            ["m3-new"]
        );
        assert_eq!(kind(s.read_stream("m-2", 0)), ErrorKind::NotFound);
        assert_eq!(s.retention("m-", true).unwrap(), None);
    }
    // m1-new was made old too before the rule was cleared: removed then, gone for good.
    assert_eq!(
        payloads(&drain(&mut *a.read_all(0).unwrap())),
        ["other-old", "m3-new"]
    );
}

#[test]
fn retention_by_count_follows_the_rule_in_force_and_removes_at_each_append() {
    let pg = PgServer::start();
    let url = format!("{}?schema=by_count", pg.url());
    let (a, b) = (open(&url), open(&url));
    let count = |n| Rule {
        max_count: n,
        max_age_us: 0,
    };
    a.set_retention("tele", true, count(3), None).unwrap();
    a.set_retention("telemetry-", true, count(2), None).unwrap();
    a.set_retention("telemetry-x", false, count(1), None)
        .unwrap();
    let all: Vec<String> = (0..5).map(|i| format!("v{i}")).collect();
    let all: Vec<&str> = all.iter().map(String::as_str).collect();
    for stream in ["telemetry-x", "telemetry-y", "telex", "other"] {
        // One append of five events (one chunk row, rewritten) and five single ones.
        let events: Vec<EventInput> = all
            .iter()
            .map(|p| EventInput::new("E", p.as_bytes()))
            .collect();
        b.append(stream, ExpectedVersion::Any, &events).unwrap();
        append_each(&a, stream, &all);
    }
    for s in [&a, &b] {
        let versions = |stream| -> Vec<u64> {
            collect(s.read_stream(stream, 0))
                .unwrap()
                .iter()
                .map(|e| e.2)
                .collect()
        };
        assert_eq!(versions("telemetry-x"), [9]);
        assert_eq!(versions("telemetry-y"), [8, 9]);
        assert_eq!(versions("telex"), [7, 8, 9]);
        assert_eq!(versions("other"), (0..10).collect::<Vec<_>>());
        assert_eq!(s.retention("telemetry-y", false).unwrap(), Some(count(2)));
        assert_eq!(s.retention("tele", true).unwrap(), Some(count(3)));
        assert_eq!(s.retention("telemetry", true).unwrap(), None);
        assert_eq!(s.stats().unwrap().removed_events, 9 + 8 + 7);
    }
    // Rows are gone, not only hidden: one chunk row left for each ruled stream.
    let left = sql_in(
        pg.url(),
        "by_count",
        "select string_agg(stream || ':' || (n - skip), ',' order by stream) from chunks \
         where stream like 'tele%'",
    );
    assert_eq!(
        left.as_deref(),
        Some("telemetry-x:1,telemetry-y:1,telemetry-y:1,telex:1,telex:1,telex:1")
    );
}

fn with_id<'a>(ty: &'a str, payload: &'a [u8], n: u32) -> EventInput<'a> {
    let mut e = EventInput::new(ty, payload);
    e.id = Some(id(n));
    e
}

#[test]
fn hard_deleted_names_are_refused_for_every_read_and_write() {
    use ExpectedVersion::{Any, Exact, Exists, NoStream};
    let pg = PgServer::start();
    let url = format!("{}?schema=tombstones", pg.url());
    let (a, b) = (open(&url), open(&url));
    append_each(&a, "dead", &["d0", "d1"]);
    append_each(&a, "alive", &["a0"]);
    assert_eq!(b.delete_stream("dead", Exact(1), true, None).unwrap(), 3);
    let x = [EventInput::new("E", b"x")];
    for s in [&a, &b] {
        for expected in [Any, NoStream, Exists, Exact(1), Exact(2)] {
            let e = s.append("dead", expected, &x).unwrap_err();
            assert_eq!(e.kind, ErrorKind::StreamDeleted, "{expected:?}: {e:?}");
            assert!(e.message.contains("'dead' was hard-deleted"), "{e:?}");
        }
        // An atomic append over it and another stream writes nothing of either.
        let both = [
            StreamAppend {
                stream: "alive",
                expected: Any,
                events: &x,
            },
            StreamAppend {
                stream: "dead",
                expected: Any,
                events: &x,
            },
        ];
        assert_eq!(kind(s.append_multi(&both)), ErrorKind::StreamDeleted);
        for hard in [false, true] {
            assert_eq!(
                kind(s.delete_stream("dead", Any, hard, None)),
                ErrorKind::StreamDeleted
            );
        }
        assert_eq!(
            kind(s.truncate_stream("dead", 0, None)),
            ErrorKind::StreamDeleted
        );
        assert_eq!(kind(s.read_stream("dead", 0)), ErrorKind::StreamDeleted);
        assert_eq!(
            kind(s.read_stream_backward("dead", 0)),
            ErrorKind::StreamDeleted
        );
        assert_eq!(kind(s.stream_version("dead")), ErrorKind::StreamDeleted);
        assert_eq!(s.stream_version("alive").unwrap(), Some(0));
        assert_eq!(s.next_position().unwrap(), 4);
    }
    // Appends to the name that the committer sends in one batch with others: only they
    // are refused.
    let a = Arc::new(a);
    let threads: Vec<_> = (0..12)
        .map(|t| {
            let a = a.clone();
            std::thread::spawn(move || {
                let stream = if t % 2 == 0 {
                    "dead".to_owned()
                } else {
                    format!("alive-{t}")
                };
                (0..20)
                    .map(|i| {
                        let payload = format!("{t}-{i}");
                        let e = [EventInput::new("E", payload.as_bytes())];
                        a.append(&stream, Any, &e).map_err(|e| e.kind)
                    })
                    .collect::<Vec<_>>()
            })
        })
        .collect();
    for (t, h) in threads.into_iter().enumerate() {
        for r in h.join().unwrap() {
            match t % 2 {
                0 => assert_eq!(r.map(|_| ()), Err(ErrorKind::StreamDeleted)),
                _ => assert!(r.is_ok(), "{r:?}"),
            }
        }
    }
    assert_eq!(a.next_position().unwrap(), 4 + 6 * 20);
    assert_eq!(b.stream_version("alive-11").unwrap(), Some(19));
}

#[test]
fn lifecycle_entries_with_ids_are_idempotent_and_removed_events_ids_still_answer_retries() {
    use ExpectedVersion::{Any, Exact, NoStream};
    let pg = PgServer::start();
    let url = format!("{}?schema=retries", pg.url());
    let (a, b) = (open(&url), open(&url));
    let count = |n| Rule {
        max_count: n,
        max_age_us: 0,
    };
    // One append of three events with ids: one chunk row.
    let evs = [
        with_id("E", b"r0", 1),
        with_id("E", b"r1", 2),
        with_id("E", b"r2", 3),
    ];
    let r = a.append("r", NoStream, &evs).unwrap();
    assert_eq!((r.first_position, r.stream_versions), (0, vec![2]));
    // A truncation that rewrites the row, with an id; its retries write nothing.
    assert_eq!(a.truncate_stream("r", 2, Some(id(100))).unwrap(), 3);
    for s in [&a, &b] {
        assert_eq!(s.truncate_stream("r", 2, Some(id(100))).unwrap(), 3);
        assert_eq!(s.next_position().unwrap(), 4);
    }
    // The same id with anything else; an event's id for an entry; an entry's for an event.
    assert_eq!(
        kind(a.truncate_stream("r", 1, Some(id(100)))),
        ErrorKind::AlreadyExists
    );
    assert_eq!(
        kind(b.delete_stream("r", Any, false, Some(id(100)))),
        ErrorKind::AlreadyExists
    );
    assert_eq!(
        kind(a.set_retention("r", false, count(1), Some(id(100)))),
        ErrorKind::AlreadyExists
    );
    let e = a.delete_stream("r", Any, false, Some(id(2))).unwrap_err();
    assert_eq!(e.kind, ErrorKind::AlreadyExists);
    assert!(e.message.contains("event at position 1"), "{e:?}");
    assert_eq!(e.detail().position, Some(1), "{e:?}");
    let e = a.delete_stream("r", Any, false, Some(id(3))).unwrap_err();
    assert_eq!(e.detail().position, Some(2), "an event still held: {e:?}");
    let e = b.append("r", Any, &[with_id("E", b"x", 100)]).unwrap_err();
    assert_eq!(e.kind, ErrorKind::AlreadyExists);
    assert!(e.message.contains("lifecycle entry at position 3"), "{e:?}");
    assert_eq!(e.detail().position, Some(3), "{e:?}");
    // The removed events' ids answer a retry of their append with its positions.
    for s in [&a, &b] {
        let r = s.append("r", NoStream, &evs).unwrap();
        assert_eq!((r.first_position, r.stream_versions), (0, vec![2]));
        let r = s.append("r", Any, &evs[..2]).unwrap();
        assert_eq!((r.first_position, r.stream_versions), (0, vec![1]));
        // Their bytes are gone: the id alone answers (docs/lifecycle.md "What stays")...
        let r = s.append("r", Any, &[with_id("F", b"other", 1)]).unwrap();
        assert_eq!((r.first_position, r.stream_versions), (0, vec![0]));
        // ...in their stream only; the kept event's content is still compared.
        let e = s.append("q", Any, &[with_id("E", b"r0", 1)]).unwrap_err();
        assert_eq!(e.kind, ErrorKind::AlreadyExists, "{e:?}");
        assert_eq!(e.detail().position, Some(0), "{e:?}");
        let e = s
            .append("r", Any, &[with_id("E", b"r2-other", 3)])
            .unwrap_err();
        assert_eq!(e.kind, ErrorKind::AlreadyExists, "{e:?}");
        assert!(e.message.contains("payload differs"), "{e:?}");
        assert_eq!(e.detail().position, Some(2), "{e:?}");
        // Some stored, one new: refused, naming the stored one's position.
        let e = s
            .append("r", Any, &[with_id("E", b"r0", 1), with_id("E", b"n", 99)])
            .unwrap_err();
        assert_eq!(e.kind, ErrorKind::AlreadyExists, "{e:?}");
        assert_eq!(e.detail().position, Some(0), "{e:?}");
        assert_eq!(s.next_position().unwrap(), 4, "nothing written");
    }
    // Also once the row is deleted; and a delete's retry after the stream moved on.
    assert_eq!(
        b.delete_stream("r", Exact(2), false, Some(id(101)))
            .unwrap(),
        4
    );
    append_each(&a, "r", &["r3"]);
    assert_eq!(
        a.delete_stream("r", Exact(2), false, Some(id(101)))
            .unwrap(),
        4
    );
    for s in [&a, &b] {
        let r = s.append("r", NoStream, &evs).unwrap();
        assert_eq!((r.first_position, r.stream_versions), (0, vec![2]));
    }
    let p = a
        .set_retention("q-", true, count(5), Some(id(102)))
        .unwrap();
    assert_eq!(p, 6);
    assert_eq!(
        b.set_retention("q-", true, count(5), Some(id(102)))
            .unwrap(),
        6
    );
    let stats = a.stats().unwrap();
    assert_eq!(
        (
            stats.events,
            stats.event_ids,
            stats.lifecycle_entries,
            stats.removed_events
        ),
        (7, 6, 3, 3)
    );
    assert_eq!(payloads(&drain(&mut *b.read_all(0).unwrap())), ["r3"]);
}

/// The stored lifecycle entries, read with SQL: position and operation.
fn stored_entries(server: &str, schema: &str) -> Vec<(u64, LifecycleOp)> {
    let text = sql_in(
        server,
        schema,
        "select coalesce(string_agg(pos || ':' || encode(op, 'hex'), ',' order by pos), '') \
         from entries",
    )
    .unwrap();
    text.split(',')
        .filter(|t| !t.is_empty())
        .map(|t| {
            let (pos, hex) = t.split_once(':').unwrap();
            let bytes: Vec<u8> = (0..hex.len())
                .step_by(2)
                .map(|i| u8::from_str_radix(&hex[i..i + 2], 16).unwrap())
                .collect();
            (pos.parse().unwrap(), LifecycleOp::decode(&bytes).unwrap())
        })
        .collect()
}

#[test]
fn deletes_racing_appends_from_two_handles_are_checked_atomically() {
    use ExpectedVersion::{Any, Exact};
    let pg = PgServer::start();
    let schema = "races";
    let url = format!("{}?schema={schema}", pg.url());
    let (a, b) = (Arc::new(open(&url)), Arc::new(open(&url)));
    append_each(&a, "race", &["first"]);
    // Appenders on both handles; a deleter deletes with the version it has just read.
    let done = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let appenders: Vec<_> = (0..4)
        .map(|t| {
            let s = if t % 2 == 0 { a.clone() } else { b.clone() };
            std::thread::spawn(move || {
                (0..150)
                    .map(|i| {
                        // A pause now and then, so that some deletes find the version
                        // they read still current.
                        std::thread::sleep(Duration::from_millis(i % 3));
                        let payload = format!("{t}-{i}");
                        let r = s
                            .append("race", Any, &[EventInput::new("E", payload.as_bytes())])
                            .unwrap();
                        (r.first_position, r.stream_versions[0])
                    })
                    .collect::<Vec<_>>()
            })
        })
        .collect();
    let deleter = {
        let (b, done) = (b.clone(), done.clone());
        std::thread::spawn(move || {
            let (mut ok, mut refused) = (Vec::new(), 0);
            while !done.load(std::sync::atomic::Ordering::Acquire) || ok.is_empty() {
                // None: deleted, and not appended to since.
                let Some(v) = b.stream_version("race").unwrap() else {
                    std::thread::yield_now();
                    continue;
                };
                match b.delete_stream("race", Exact(v), false, None) {
                    Ok(p) => ok.push((p, v)),
                    Err(e) if e.kind == ErrorKind::WrongExpectedVersion => refused += 1,
                    Err(e) => panic!("{e:?}"),
                }
            }
            (ok, refused)
        })
    };
    let mut acked: Vec<(u64, u64)> = vec![(0, 0)];
    for h in appenders {
        acked.extend(h.join().unwrap());
    }
    done.store(true, std::sync::atomic::Ordering::Release);
    let (deletes, refused) = deleter.join().unwrap();
    eprintln!("{} deletes, {refused} refused by a version", deletes.len());
    // Each delete removed exactly the versions up to the one it was checked against, at
    // its position: every event at or below it came before, every later one after.
    let stored = stored_entries(pg.url(), schema);
    assert_eq!(stored.len(), deletes.len());
    for ((p, v), (q, op)) in deletes.iter().zip(&stored) {
        assert_eq!(p, q);
        assert_eq!(op.version(), Some(*v), "{op:?}");
        for (pos, version) in &acked {
            assert_eq!(
                version <= v,
                pos < p,
                "event {pos} (version {version}), delete {p} of {v}"
            );
        }
    }
    let last = deletes.iter().map(|d| d.1).max().unwrap();
    let mut left: Vec<u64> = acked.iter().filter(|e| e.1 > last).map(|e| e.0).collect();
    left.sort();
    for s in [&a, &b] {
        let got: Vec<u64> = match collect(s.read_stream("race", 0)) {
            Ok(v) => v.iter().map(|e| e.0).collect(),
            Err(k) => {
                assert_eq!(k, ErrorKind::NotFound);
                Vec::new()
            }
        };
        assert_eq!(got, left);
        assert_eq!(s.next_position().unwrap(), 601 + deletes.len() as u64);
    }

    // Two handles hard-delete one stream at once: one succeeds, the other finds a tombstone.
    for round in 0..8 {
        let stream = format!("h-{round}");
        append_each(&a, &stream, &["x"]);
        let barrier = Arc::new(Barrier::new(2));
        let threads: Vec<_> = [a.clone(), b.clone()]
            .into_iter()
            .map(|s| {
                let (stream, barrier) = (stream.clone(), barrier.clone());
                std::thread::spawn(move || {
                    barrier.wait();
                    s.delete_stream(&stream, Any, true, None)
                        .map_err(|e| e.kind)
                })
            })
            .collect();
        let results: Vec<_> = threads.into_iter().map(|h| h.join().unwrap()).collect();
        let ok = results.iter().filter(|r| r.is_ok()).count();
        assert_eq!(ok, 1, "{results:?}");
        assert!(
            results.contains(&Err(ErrorKind::StreamDeleted)),
            "{results:?}"
        );
    }

    // Appends racing a hard delete: each acknowledged one is before it, each later one
    // refused.
    let appenders: Vec<_> = (0..4)
        .map(|t| {
            let s = if t % 2 == 0 { a.clone() } else { b.clone() };
            std::thread::spawn(move || {
                (0..40)
                    .map(|_| {
                        s.append("doomed", Any, &[EventInput::new("E", b"d")])
                            .map(|r| r.first_position)
                            .map_err(|e| e.kind)
                    })
                    .collect::<Vec<_>>()
            })
        })
        .collect();
    std::thread::sleep(Duration::from_millis(50));
    let killed = loop {
        match a.delete_stream("doomed", Any, true, None) {
            Ok(p) => break p,
            Err(e) if e.kind == ErrorKind::NotFound => std::thread::yield_now(),
            Err(e) => panic!("{e:?}"),
        }
    };
    for h in appenders {
        for r in h.join().unwrap() {
            match r {
                Ok(p) => assert!(p < killed, "an append at {p} after the delete at {killed}"),
                Err(k) => assert_eq!(k, ErrorKind::StreamDeleted),
            }
        }
    }
    assert_eq!(kind(b.read_stream("doomed", 0)), ErrorKind::StreamDeleted);
    assert!(drain(&mut *b.read_all(0).unwrap())
        .iter()
        .all(|e| e.1 != "doomed"));
}

/// A store as a library of schema version 3 made it: `chunks` without `skip`, `ids`, the
/// version-3 view, no lifecycle tables, and an `append` with version 3's arguments (this
/// one refuses every call, so a store still calling it after the migration fails). Its
/// events: one chunk of three of stream 'order-1' (ids on the first two, metadata on the
/// first), one without a stream, one of 'order-2' with an id; times 1000, 2000, 3000.
fn make_v3_store(server: &str, schema: &str) {
    sql(
        server,
        &format!(
            "create schema {schema}; set search_path to {schema};
             create table meta (key text primary key, value text not null);
             insert into meta values ('schema_version', '3');
             create table head (next bigint not null, last_ts bigint not null);
             insert into head values (5, 3000);
             create table streams (name text primary key, version bigint not null,
               first_pos bigint not null);
             insert into streams values ('order-1', 2, 0), ('order-2', 0, 4);
             create sequence chunk_keys cache 100;
             create table chunks (first_pos bigint primary key, chunk bigint not null unique,
               stream text not null, first_version bigint not null, n int not null,
               ts bigint not null, types text[] not null, schema_versions int[] not null,
               ids uuid[] not null, metadata bytea[] not null, data bytea[] not null);
             create unique index chunks_stream_version on chunks (stream, first_version)
               where stream <> '';
             create index chunks_ts on chunks using brin (ts);
             create table ids (id uuid primary key, chunk bigint not null, idx int not null);
             create view id_positions as
               select i.id, c.first_pos + i.idx as pos, c.stream,
                      case when c.stream = '' then 0 else c.first_version + i.idx end as version
               from ids i join chunks c on c.chunk = i.chunk;
             insert into chunks values
               (0, 1, 'order-1', 0, 3, 1000, array['Created', 'Paid', 'Shipped'],
                array[2, 1, 1],
                array['01010101-0101-0101-0101-010101010101'::uuid,
                      '02020202-0202-0202-0202-020202020202'::uuid, null],
                array['m1'::bytea, ''::bytea, ''::bytea], array['a'::bytea, 'b', 'c']),
               (3, 2, '', 0, 1, 2000, array['Tick'], array[1], array[null::uuid],
                array[''::bytea], array['t'::bytea]),
               (4, 3, 'order-2', 0, 1, 3000, array['Created'], array[1],
                array['03030303-0303-0303-0303-030303030303'::uuid], array[''::bytea],
                array['o2'::bytea]);
             select setval('chunk_keys', 3);
             insert into ids values ('01010101-0101-0101-0101-010101010101', 1, 0),
               ('02020202-0202-0202-0202-020202020202', 1, 1),
               ('03030303-0303-0303-0303-030303030303', 3, 0);
             create function append(r_entries int[], s_stream text[], s_expected bigint[],
               s_count int[], e_id uuid[], e_type text[], e_sv int[], e_meta bytea[],
               e_data bytea[], i_id uuid[], i_entry int[], i_idx int[], check_ids boolean,
               channel text)
             returns table (res bigint, entry int, actual bigint, versions bigint[])
             language plpgsql as $$ begin raise exception 'the old append was called'; end $$;"
        ),
    );
}

/// Every event of a store, read forward: position, stream, version, time, type, schema
/// version, id, metadata, payload.
type Full = (
    u64,
    String,
    u64,
    u64,
    String,
    u32,
    Option<[u8; 16]>,
    Vec<u8>,
    Vec<u8>,
);

fn full_events(s: &Store) -> Vec<Full> {
    let mut c = s.read_all(0).unwrap();
    let mut out = Vec::new();
    while let Some(e) = c.next().unwrap() {
        out.push((
            e.position,
            e.stream.to_owned(),
            e.stream_version,
            e.timestamp_us,
            e.event_type.to_owned(),
            e.schema_version,
            e.id,
            e.metadata.to_vec(),
            e.payload.to_vec(),
        ));
    }
    out
}

#[test]
fn a_version_3_schema_is_migrated_by_a_writable_open_and_refused_by_a_read_only_one() {
    let pg = PgServer::start();
    make_v3_store(pg.url(), "old3");
    let url = format!("{}?schema=old3", pg.url());
    let version = || sql_in(pg.url(), "old3", "select value from meta").unwrap();
    let options = StoreOptions {
        read_only: true,
        ..StoreOptions::default()
    };
    let e = Store::open(&url, options.clone(), Vec::new())
        .err()
        .unwrap();
    assert_eq!(e.kind, ErrorKind::ReadOnly, "{e:?}");
    assert!(e.message.contains("version 3, older"), "{e:?}");
    assert_eq!(version(), "3");

    // Two writable opens at once: one migrates, the other finds version 8.
    let stores = common::pg::open_at_once(&url, 2);
    assert_eq!(version(), "8");
    let want: Vec<Full> = vec![
        (
            0,
            "order-1".into(),
            0,
            1000,
            "Created".into(),
            2,
            Some([1; 16]),
            b"m1".to_vec(),
            b"a".to_vec(),
        ),
        (
            1,
            "order-1".into(),
            1,
            1000,
            "Paid".into(),
            1,
            Some([2; 16]),
            vec![],
            b"b".to_vec(),
        ),
        (
            2,
            "order-1".into(),
            2,
            1000,
            "Shipped".into(),
            1,
            None,
            vec![],
            b"c".to_vec(),
        ),
        (
            3,
            "".into(),
            0,
            2000,
            "Tick".into(),
            1,
            None,
            vec![],
            b"t".to_vec(),
        ),
        (
            4,
            "order-2".into(),
            0,
            3000,
            "Created".into(),
            1,
            Some([3; 16]),
            vec![],
            b"o2".to_vec(),
        ),
    ];
    for s in &stores {
        assert_eq!(full_events(s), want);
    }
    // Migrated ids answer retries; a truncation rewrites a migrated chunk; the ids in its
    // removed part still answer.
    let retry = |s: &Store| {
        let mut e = [EventInput::new("Created", b"o2")];
        e[0].id = Some([3; 16]);
        let r = s.append("order-2", ExpectedVersion::NoStream, &e).unwrap();
        assert_eq!((r.first_position, r.stream_versions), (4, vec![0]));
        let mut e = [
            EventInput::new("Created", b"a"),
            EventInput::new("Paid", b"b"),
        ];
        // A retry repeats the stored content (main's 1.1: ids are compared by content).
        e[0].id = Some([1; 16]);
        e[0].schema_version = 2;
        e[0].metadata = b"m1";
        e[1].id = Some([2; 16]);
        let r = s.append("order-1", ExpectedVersion::NoStream, &e).unwrap();
        assert_eq!((r.first_position, r.stream_versions), (0, vec![1]));
    };
    retry(&stores[0]);
    assert_eq!(stores[1].truncate_stream("order-1", 2, None).unwrap(), 5);
    retry(&stores[0]);
    assert_eq!(
        payloads(&collect(stores[0].read_stream("order-1", 0)).unwrap()),
        ["c"]
    );
    let r = stores[0]
        .append(
            "order-1",
            ExpectedVersion::Exact(2),
            &[EventInput::new("Delivered", b"d")],
        )
        .unwrap();
    assert_eq!((r.first_position, r.stream_versions), (6, vec![3]));
    let r = open_read_only(&url);
    assert_eq!(
        payloads(&drain(&mut *r.read_all(0).unwrap())),
        ["c", "t", "o2", "d"]
    );
    assert_eq!(r.stats().unwrap().lifecycle_entries, 1);
}

#[test]
fn a_migration_to_version_4_waits_for_a_version_3_append_still_in_flight() {
    let pg = PgServer::start();
    make_v3_store(pg.url(), "inflight3");
    // As a version-3 append does it: its ids first (then the open starts), then the head,
    // the stream, the chunk. A migration that locked the head before the ids would wait
    // for the ids while the append waited for the head.
    let s = common::pg::open_while_in_flight(
        pg.url(),
        &format!("{}?schema=inflight3", pg.url()),
        "set local search_path to inflight3;
         insert into ids values ('04040404-0404-0404-0404-040404040404', 4, 0);",
        "select * from head for update;
         insert into streams values ('order-3', 0, 5);
         insert into chunks values (5, 4, 'order-3', 0, 1, 4000, array['Late'], array[1],
           array['04040404-0404-0404-0404-040404040404'::uuid], array[''::bytea],
           array['late'::bytea]);
         update head set next = 6, last_ts = 4000",
    );
    assert_eq!(
        payloads(&drain(&mut *s.read_all(0).unwrap())),
        ["a", "b", "c", "t", "o2", "late"]
    );
    assert_eq!(s.stream_version("order-3").unwrap(), Some(0));
    s.delete_stream("order-3", ExpectedVersion::Exact(0), false, None)
        .unwrap();
    assert_eq!(kind(s.read_stream("order-3", 0)), ErrorKind::NotFound);
}

/// Every file under `dir` (recursively) whose bytes contain `needle`.
fn files_holding(dir: &std::path::Path, needle: &[u8]) -> Vec<String> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                stack.push(path);
            } else if let Ok(bytes) = std::fs::read(&path) {
                if bytes.windows(needle.len()).any(|w| w == needle) {
                    out.push(path.display().to_string());
                }
            }
        }
    }
    out
}

#[test]
fn the_bytes_of_removed_events_are_gone_from_every_table() {
    use ExpectedVersion::Any;
    let pg = PgServer::start();
    let schema = "erasure";
    let url = format!("{}?schema={schema}", pg.url());
    let (a, b) = (open(&url), open(&url));
    let marked = |ty: &'static str, payload: &'static str, meta: &'static str| {
        let mut e = EventInput::new(ty, payload.as_bytes());
        e.metadata = meta.as_bytes();
        e
    };
    // A whole chunk row (soft delete): type, payload and metadata markers.
    a.append(
        "pii-1",
        Any,
        &[
            marked("GONE-TYPE-1", "GONE-PAYLOAD-1", "GONE-META-1"),
            with_id("E", b"GONE-PAYLOAD-2", 1),
        ],
    )
    .unwrap();
    // Half of a chunk row (truncation): the row is rewritten with the kept half.
    a.append(
        "pii-2",
        Any,
        &[
            marked("GONE-TYPE-3", "GONE-PAYLOAD-3", "GONE-META-3"),
            with_id("E", b"GONE-PAYLOAD-4", 4),
            marked("KEEP-TYPE-5", "KEEP-PAYLOAD-5", "KEEP-META-5"),
            with_id("E", b"KEEP-PAYLOAD-6", 6),
        ],
    )
    .unwrap();
    // Beyond a rule by count, at the append; a hard delete; a rule by age and compaction.
    b.set_retention(
        "pii-3",
        false,
        Rule {
            max_count: 1,
            max_age_us: 0,
        },
        None,
    )
    .unwrap();
    append_each(&a, "pii-3", &["GONE-PAYLOAD-7", "KEEP-PAYLOAD-8"]);
    append_each(&a, "pii-4", &["GONE-PAYLOAD-9"]);
    append_each(&a, "pii-5", &["GONE-PAYLOAD-10"]);
    age_everything(pg.url(), schema, 10);
    append_each(&a, "pii-4", &["KEEP-PAYLOAD-11"]);
    b.set_retention(
        "pii-4",
        false,
        Rule {
            max_count: 0,
            max_age_us: DAY_US,
        },
        None,
    )
    .unwrap();
    a.delete_stream("pii-1", Any, false, None).unwrap();
    b.truncate_stream("pii-2", 2, None).unwrap();
    a.delete_stream("pii-5", Any, true, None).unwrap();
    assert_eq!(b.compact().unwrap().events_erased, 1);

    let gone: Vec<String> = [
        "GONE-TYPE-1",
        "GONE-PAYLOAD-1",
        "GONE-META-1",
        "GONE-PAYLOAD-2",
        "GONE-TYPE-3",
        "GONE-PAYLOAD-3",
        "GONE-META-3",
        "GONE-PAYLOAD-4",
        "GONE-PAYLOAD-7",
        "GONE-PAYLOAD-9",
        "GONE-PAYLOAD-10",
    ]
    .map(String::from)
    .into();
    let kept: Vec<String> = [
        "KEEP-TYPE-5",
        "KEEP-PAYLOAD-5",
        "KEEP-META-5",
        "KEEP-PAYLOAD-6",
        "KEEP-PAYLOAD-8",
        "KEEP-PAYLOAD-11",
    ]
    .map(String::from)
    .into();
    // Every row of every table of the schema, as text (bytea shows as hex).
    let tables = sql(
        pg.url(),
        &format!("select string_agg(tablename, ',') from pg_tables where schemaname = '{schema}'"),
    )
    .unwrap();
    let rows_holding = |marker: &str| -> u64 {
        let hex: String = marker.bytes().map(|b| format!("{b:02x}")).collect();
        tables
            .split(',')
            .map(|t| {
                sql(
                    pg.url(),
                    &format!(
                        "select count(*) from {schema}.{t} x where strpos(x::text, '{marker}') > 0 \
                         or strpos(x::text, '{hex}') > 0"
                    ),
                )
                .unwrap()
                .parse::<u64>()
                .unwrap()
            })
            .sum()
    };
    for m in &gone {
        assert_eq!(rows_holding(m), 0, "{m} is still in a row");
    }
    for m in &kept {
        assert_eq!(rows_holding(m), 1, "{m} (kept) is not in exactly one row");
    }
    assert_eq!(
        payloads(&drain(&mut *a.read_all(0).unwrap())),
        [
            "KEEP-PAYLOAD-5",
            "KEEP-PAYLOAD-6",
            "KEEP-PAYLOAD-8",
            "KEEP-PAYLOAD-11"
        ]
    );

    // What the operator does to erase the files too (docs/postgres.md): VACUUM FULL of
    // the tables and a checkpoint. After them no file of the database holds a removed
    // event's bytes; the WAL still does until it is recycled (and backups, replicas).
    for t in tables.split(',') {
        sql(pg.url(), &format!("vacuum full {schema}.{t}"));
    }
    sql(pg.url(), "checkpoint");
    let db = sql(
        pg.url(),
        "select oid from pg_database where datname = current_database()",
    )
    .unwrap();
    let base = pg.dir().join("data/base").join(db);
    for m in &gone {
        assert_eq!(
            files_holding(&base, m.as_bytes()),
            Vec::<String>::new(),
            "{m}"
        );
    }
    for m in &kept {
        assert!(!files_holding(&base, m.as_bytes()).is_empty(), "{m} (kept)");
    }
    let wal = pg.dir().join("data/pg_wal");
    assert!(
        !files_holding(&wal, b"GONE-PAYLOAD-3").is_empty(),
        "the WAL holds what was written until it is recycled"
    );
}

#[test]
fn closing_a_handle_that_wrote_entries_closes_every_connection_it_made() {
    let pg = PgServer::start();
    let url = format!("{}?schema=closing&application_name=lc_close", pg.url());
    let s = open(&url);
    append_each(&s, "x", &["x0"]);
    s.delete_stream("x", ExpectedVersion::Any, false, None)
        .unwrap();
    s.close().unwrap();
    // The handle is still alive: only its close can have ended the entries' connection.
    let open_connections = || {
        sql(
            pg.url(),
            "select count(*) from pg_stat_activity where application_name = 'lc_close'",
        )
        .unwrap()
    };
    let mut left = open_connections();
    for _ in 0..100 {
        if left == "0" {
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
        left = open_connections();
    }
    assert_eq!(left, "0", "connections of a closed handle");
    drop(s);
}

// ---------------------------------------------------------------------------------------
// What writers see, as on the file engine (tests/common/writers.rs)
// ---------------------------------------------------------------------------------------

/// Each call opens another handle on the schema (with the test's clock); those before
/// stay open, as other writers of the store would.
fn handles(url: String, clock: &TestClock) -> impl FnMut() -> Arc<Store> {
    let clock = clock.clock();
    let mut open: Vec<Arc<Store>> = Vec::new();
    move || {
        let options = StoreOptions {
            clock: clock.clone(),
            ..StoreOptions::default()
        };
        let s = Arc::new(Store::open(&url, options, Vec::new()).unwrap().0);
        open.push(s.clone());
        s
    }
}

#[test]
fn writers_see_the_same_lifecycle_semantics_as_on_the_file_engine() {
    let pg = PgServer::start();
    let clock = TestClock::new(1_700_000_000_000_000);
    let url = |schema: &str| format!("{}?schema={schema}", pg.url());
    writers::a_soft_deleted_stream_is_no_stream_until_appended_to_again(&mut handles(
        url("w_soft"),
        &clock,
    ));
    writers::a_truncation_changes_only_what_readers_see(&mut handles(url("w_trunc"), &clock));
    writers::a_stream_operation_checks_tombstone_then_existence_then_version_then_bounds(
        &mut handles(url("w_order"), &clock),
    );
    writers::a_rule_changed_or_cleared_brings_no_event_back(&mut handles(url("w_rules"), &clock));
    writers::a_rule_by_age_cleared_or_a_clock_set_back_brings_no_event_back(
        &mut handles(url("w_age"), &clock),
        &clock,
    );
}

#[test]
fn a_delete_racing_deposits_from_another_handle_never_leaves_money_in_a_deleted_account() {
    let pg = PgServer::start();
    let url = format!("{}?schema=bank_race", pg.url());
    let bank = || Arc::new(Bank::open(&url, StoreOptions::default()).unwrap().0);
    let (mover, deleter) = (bank(), bank());
    writers::a_stale_account_delete_names_the_actual_version(&deleter);
    let raced = writers::a_delete_racing_deposits_never_leaves_money_in_a_deleted_account(
        &mover, &deleter, 30,
    );
    eprintln!("deletes refused while the balance moved: {raced}");
}
