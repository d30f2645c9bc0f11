//! Shared by the tests of exports, imports and copies (tests/export.rs, tests/pg_copy.rs):
//! a log with every kind of item (events with and without ids, metadata, schema versions
//! and streams; soft and hard deletes, a truncation, rules by count and by age, empty
//! positions), and everything a reader and a writer can see of a store, to compare two.

use evstore::store::lifecycle::Rule;
use evstore::store::{EventInput, ExpectedVersion, Store};
use evstore::{ErrorKind, Result};

/// Fills `s` (empty) with `rounds` rounds of events over a few streams, then the
/// lifecycle operations, then more events; leaves removed positions and, at the end, an
/// empty position (an event a rule by age removes at once).
pub fn fill(s: &Store, rounds: u64) {
    let meta = b"{\"m\":1}".as_slice();
    for r in 0..rounds {
        let id = |k: u64| {
            let mut id = [0u8; 16];
            id[..8].copy_from_slice(&(r * 10 + k + 1).to_le_bytes());
            id[15] = 0xA5;
            id
        };
        let (i0, i1) = (id(0), id(1));
        let payload = format!("order {r} \u{e9}\0\u{1}{}", "p".repeat(200)).into_bytes();
        let evs = [
            EventInput {
                event_type: "Placed",
                payload: &payload,
                metadata: meta,
                schema_version: 2,
                id: Some(i0),
                subject: None,
            },
            EventInput {
                event_type: "Paid",
                payload: &[0, 255, 10, 13],
                metadata: &[],
                schema_version: 1,
                id: Some(i1),
                subject: None,
            },
        ];
        s.append(&format!("order-{}", r % 5), ExpectedVersion::Any, &evs)
            .unwrap();
        s.append(
            "tele-a",
            ExpectedVersion::Any,
            &[EventInput::new("Tick", format!("t{r}").as_bytes())],
        )
        .unwrap();
        if r % 7 == 0 {
            s.append_event("Legacy", format!("plain {r}").as_bytes())
                .unwrap();
        }
    }
    s.delete_stream("order-1", ExpectedVersion::Any, false, None)
        .unwrap();
    s.delete_stream("order-2", ExpectedVersion::Any, true, Some([7; 16]))
        .unwrap();
    s.truncate_stream("order-3", 3, None).unwrap();
    let keep2 = Rule {
        max_count: 2,
        max_age_us: 0,
    };
    s.set_retention("tele-", true, keep2, None).unwrap();
    // order-1 again after its soft delete: its versions go on.
    s.append(
        "order-1",
        ExpectedVersion::NoStream,
        &[EventInput::new("Reopened", b"again")],
    )
    .unwrap();
    s.append(
        "tele-a",
        ExpectedVersion::Any,
        &[EventInput::new("Tick", b"late")],
    )
    .unwrap();
    // A rule by age of 1 us: the event after it is removed at once, so the log ends with
    // an empty position.
    let aged = Rule {
        max_count: 0,
        max_age_us: 1,
    };
    s.set_retention("gone-", true, aged, None).unwrap();
    s.append(
        "gone-1",
        ExpectedVersion::Any,
        &[EventInput::new("Soon", b"gone")],
    )
    .unwrap();
    std::thread::sleep(std::time::Duration::from_millis(2));
}

/// What readers and writers see of a store.
#[derive(Debug, PartialEq)]
pub struct Seen {
    pub next: u64,
    pub events: Vec<evstore::store::Event>,
    pub entries: Vec<evstore::store::import::LogEntry>,
    /// Per stream named by an event or entry: what writers see, what a stream read gives.
    pub streams: Vec<(
        String,
        std::result::Result<Option<u64>, ErrorKind>,
        StreamRead,
    )>,
    pub listed: Vec<(String, u64, u64)>,
    pub rules: Vec<(String, bool, Option<Rule>)>,
}

pub type StreamRead = std::result::Result<Vec<u64>, ErrorKind>;

fn kind<T>(r: Result<T>) -> std::result::Result<T, ErrorKind> {
    r.map_err(|e| e.kind)
}

/// Everything `seen` compares, read from `s`.
pub fn seen(s: &Store) -> Seen {
    let next = s.next_position().unwrap();
    let mut events = Vec::new();
    let mut c = s.read_all(0).unwrap();
    while let Some(e) = c.next().unwrap() {
        events.push(e.to_owned());
    }
    let entries = s.entries(0, next).unwrap();
    let mut names: Vec<String> = events
        .iter()
        .map(|e| e.stream.clone())
        .chain(
            entries
                .iter()
                .filter_map(|e| e.op.stream().map(str::to_owned)),
        )
        .filter(|n| !n.is_empty())
        .collect();
    // Not "gone-1": every event of it was removed by a rule and no entry names it, so it
    // moves without its version (docs/export-format.md "What does not move").
    names.extend(["order-0", "order-1", "order-2", "order-3", "tele-a"].map(String::from));
    names.sort();
    names.dedup();
    let streams = names
        .iter()
        .map(|n| {
            let read = kind(s.read_stream(n, 0)).and_then(|mut c| {
                let mut v = Vec::new();
                while let Some(e) = kind(c.next())? {
                    v.push(e.stream_version);
                }
                Ok(v)
            });
            (n.clone(), kind(s.stream_version(n)), read)
        })
        .collect();
    let mut listed: Vec<(String, u64, u64)> = s
        .list_streams()
        .unwrap()
        .into_iter()
        .map(|i| (i.name, i.version, i.first_position))
        .collect();
    listed.sort();
    let rules = ["tele-", "gone-", "order-"]
        .iter()
        .flat_map(|t| [(t.to_string(), true), (format!("{t}a"), false)])
        .map(|(t, cat)| {
            let r = s.retention(&t, cat).unwrap();
            (t, cat, r)
        })
        .collect();
    Seen {
        next,
        events,
        entries,
        streams,
        listed,
        rules,
    }
}

/// Asserts that two stores look the same, field by field, saying where they differ.
pub fn assert_same(a: &Seen, b: &Seen, what: &str) {
    assert_eq!(a.next, b.next, "{what}: next position");
    assert_eq!(a.events.len(), b.events.len(), "{what}: number of events");
    for (x, y) in a.events.iter().zip(&b.events) {
        assert_eq!(x, y, "{what}: event at position {}", x.position);
    }
    assert_eq!(a.entries, b.entries, "{what}: lifecycle entries");
    assert_eq!(a.streams, b.streams, "{what}: streams");
    assert_eq!(a.listed, b.listed, "{what}: listed streams");
    assert_eq!(a.rules, b.rules, "{what}: rules");
    assert_eq!(a, b, "{what}");
}

/// Appends the same events to both stores and checks they land alike (positions,
/// versions, expected-version answers): writers go on after a move as before it.
pub fn assert_writers_go_on_alike(a: &Store, b: &Store) {
    for s in ["order-0", "order-1", "tele-a", "fresh"] {
        let one = [EventInput::new("After", b"x")];
        let ra = kind(a.append(s, ExpectedVersion::Any, &one));
        let rb = kind(b.append(s, ExpectedVersion::Any, &one));
        assert_eq!(ra, rb, "appending to {s} after the move");
    }
    let one = [EventInput::new("After", b"x")];
    assert_eq!(
        kind(a.append("order-2", ExpectedVersion::Any, &one)),
        Err(ErrorKind::StreamDeleted)
    );
    assert_eq!(
        kind(b.append("order-2", ExpectedVersion::Any, &one)),
        Err(ErrorKind::StreamDeleted)
    );
    // A retry of a moved event's id is answered as a retry, with its old position.
    let mut id = [0u8; 16];
    id[..8].copy_from_slice(&1u64.to_le_bytes());
    id[15] = 0xA5;
    let payload = format!("order 0 \u{e9}\0\u{1}{}", "p".repeat(200)).into_bytes();
    let payload = payload.as_slice();
    let ev = [
        EventInput {
            event_type: "Placed",
            payload,
            metadata: b"{\"m\":1}",
            schema_version: 2,
            id: Some(id),
            subject: None,
        },
        EventInput {
            event_type: "Paid",
            payload: &[0, 255, 10, 13],
            metadata: &[],
            schema_version: 1,
            id: Some({
                let mut i = id;
                i[..8].copy_from_slice(&2u64.to_le_bytes());
                i
            }),
            subject: None,
        },
    ];
    let ra = kind(a.append("order-0", ExpectedVersion::Any, &ev));
    let rb = kind(b.append("order-0", ExpectedVersion::Any, &ev));
    assert_eq!(ra, rb, "a retry of a moved append");
    assert_eq!(ra.map(|r| r.first_position), Ok(0));
}

/// `seen` with the times of the events at or after `from` left out (appended after a
/// move, on each store by its own clock).
pub fn seen_but_times_from(s: &Store, from: u64) -> Seen {
    let mut v = seen(s);
    v.events
        .iter_mut()
        .filter(|e| e.position >= from)
        .for_each(|e| e.timestamp_us = 0);
    v
}

/// The child of the tests that kill a copy: copies `EVS_TEST_SRC` into `EVS_TEST_DST`
/// (opened by `open`), reporting "copying" first; as "copying" it also reports "at P" at
/// its first progress report and waits there for the parent (who kills it), as
/// "copying-on" it goes on until killed wherever it is.
pub fn copying_child(role: &str, open: impl Fn(&str) -> Store) {
    use super::procs;
    let src = open(&std::env::var("EVS_TEST_SRC").unwrap());
    let dst = open(&std::env::var("EVS_TEST_DST").unwrap());
    let wait = role == "copying";
    procs::report("copying");
    let mut progress = |at: u64, _end: u64| {
        if wait {
            procs::report(&format!("at {at}"));
            procs::wait_for_parent();
        }
    };
    evstore::store::import::copy(&src, &dst, &mut progress).unwrap();
    // Not killed in time: the parent kills it here.
    std::thread::sleep(std::time::Duration::from_secs(600));
}

/// Opens (creating) the store at `at` with small segments (a log spans several, so a
/// compaction leaves gaps in sealed ones) and no automatic compaction.
pub fn open_at(at: impl AsRef<std::path::Path>) -> Store {
    let opts = evstore::store::StoreOptions {
        fsync: evstore::wal::FsyncPolicy::Os,
        max_segment_size: 64 << 10,
        compaction_trigger_percent: 0,
        ..Default::default()
    };
    Store::open(at, opts, Vec::new()).unwrap().0
}

/// Fills `s` (empty) with `subject_events`, then `forget_subjects`.
pub fn fill_subjects(s: &Store) {
    subject_events(s);
    forget_subjects(s);
}

/// Appends events of 8 data subjects `user-<i>`, two each, with `PII-<subject>-<k>` in
/// payload and metadata (an id given for even subjects, none for odd ones), each
/// followed by a public event (`PUBLIC-<i>-<k>`).
pub fn subject_events(s: &Store) {
    for k in 0..2u8 {
        for i in 0..8u8 {
            let subject = format!("user-{i}");
            let pii = format!("PII-{subject}-{k}");
            let mut e = EventInput::new("ProfileSet", pii.as_bytes());
            e.metadata = pii.as_bytes();
            e.subject = Some(&subject);
            if i % 2 == 0 {
                e.id = Some([i + 1, k + 1, 0x5B, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1]);
            }
            s.append(&format!("profile-{i}"), ExpectedVersion::Any, &[e])
                .unwrap();
            s.append_event("Public", format!("PUBLIC-{i}-{k}").as_bytes())
                .unwrap();
        }
    }
}

/// Forgets subjects 0 to 2, then appends one more event of `user-7` (no id), the log's
/// last.
pub fn forget_subjects(s: &Store) {
    for i in 0..3 {
        s.forget_subject(&format!("user-{i}")).unwrap();
    }
    let mut e = EventInput::new("ProfileSet", b"PII-user-7-2");
    e.subject = Some("user-7");
    s.append("profile-7", ExpectedVersion::Any, &[e]).unwrap();
}

/// `want` (a source's `seen`) as a move into `got`'s store keeps it: each event that
/// names a subject and has no id gets the one `got` holds at its position (PostgreSQL
/// binds a sealed event to its id and makes one where none was given, as its appends
/// do), after checking that there is one.
pub fn with_made_ids(mut want: Seen, got: &Seen) -> Seen {
    for (w, g) in want.events.iter_mut().zip(&got.events) {
        if w.subject.is_some() && w.id.is_none() && w.position == g.position {
            assert!(g.id.is_some(), "no id made for {g:?}");
            w.id = g.id;
        }
    }
    want
}
